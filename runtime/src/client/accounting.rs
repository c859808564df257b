//! Client calls of the accountability routes (`GET /v1/who`, `GET /v1/audit/flows`).
use super::{api_error, query_string, BlockingClient, Client, Result};
use crate::proto::accounting::{KindQuery, WhoAnswer, WhoParams};
use hyper::Method;

impl Client {
    /// Which slice talked to a remote address around a time.
    pub async fn who(&self, p: &WhoParams) -> Result<WhoAnswer> {
        let q = query_string(p)?;
        self.call(Method::GET, &format!("/v1/who{q}"), None).await
    }

    /// Flow records of a window, as stored lines.
    pub async fn audit_flows(&self, q: &KindQuery) -> Result<Vec<String>> {
        self.audit_kind("flows", q).await
    }

    /// Records of `kind` (`flows`, `execs`) of a window, as stored lines.
    pub async fn audit_kind(&self, kind: &str, q: &KindQuery) -> Result<Vec<String>> {
        let p = query_string(q)?;
        let (status, bytes) = self
            .raw(Method::GET, &format!("/v1/audit/{kind}{p}"), None)
            .await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }
}

impl BlockingClient {
    pub fn who(&self, p: &WhoParams) -> Result<WhoAnswer> {
        self.rt.block_on(self.inner.who(p))
    }
    pub fn audit_flows(&self, q: &KindQuery) -> Result<Vec<String>> {
        self.rt.block_on(self.inner.audit_flows(q))
    }
    pub fn audit_kind(&self, kind: &str, q: &KindQuery) -> Result<Vec<String>> {
        self.rt.block_on(self.inner.audit_kind(kind, q))
    }
}
