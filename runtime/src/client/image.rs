//! Client calls for image import and removal (`POST /v1/images`,
//! `DELETE /v1/images/{name}`).
use super::{api_error, encode, Client, Result};
use crate::proto::image_import::{ImageDetails, ImportRequest, ImportResult};
use hyper::Method;

impl Client {
    pub async fn image_import(&self, req: &ImportRequest) -> Result<ImportResult> {
        self.call_json(Method::POST, "/v1/images", req).await
    }

    pub async fn image_remove(&self, name: &str) -> Result<()> {
        let (status, bytes) = self
            .raw(
                Method::DELETE,
                &format!("/v1/images/{}", encode(name)),
                None,
            )
            .await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        Ok(())
    }
}

impl Client {
    pub async fn image_inspect(&self, name: &str) -> Result<ImageDetails> {
        self.call(Method::GET, &format!("/v1/images/{}", encode(name)), None)
            .await
    }
}
