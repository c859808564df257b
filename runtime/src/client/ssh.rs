//! Client calls of SSH key management (`/v1/slices/{name}/keys`).
use super::{encode, BlockingClient, Client, Result};
use crate::proto::ssh::{KeyAdd, SshKey};
use hyper::Method;

impl Client {
    pub async fn keys(&self, name: &str) -> Result<Vec<SshKey>> {
        self.call(
            Method::GET,
            &format!("/v1/slices/{}/keys", encode(name)),
            None,
        )
        .await
    }

    pub async fn add_key(&self, name: &str, key: &str) -> Result<SshKey> {
        let body = KeyAdd {
            key: key.to_string(),
        };
        self.call_json(
            Method::POST,
            &format!("/v1/slices/{}/keys", encode(name)),
            &body,
        )
        .await
    }

    pub async fn remove_key(&self, name: &str, fingerprint: &str) -> Result<()> {
        let path = format!("/v1/slices/{}/keys/{}", encode(name), encode(fingerprint));
        let (status, bytes) = self.raw(Method::DELETE, &path, None).await?;
        if !status.is_success() {
            return Err(super::api_error(status, &bytes));
        }
        Ok(())
    }
}

impl BlockingClient {
    pub fn keys(&self, name: &str) -> Result<Vec<SshKey>> {
        self.rt.block_on(self.inner.keys(name))
    }
    pub fn add_key(&self, name: &str, key: &str) -> Result<SshKey> {
        self.rt.block_on(self.inner.add_key(name, key))
    }
    pub fn remove_key(&self, name: &str, fingerprint: &str) -> Result<()> {
        self.rt.block_on(self.inner.remove_key(name, fingerprint))
    }
}
