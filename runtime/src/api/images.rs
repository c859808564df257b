//! Image handlers: import an OCI image from a path on the node, inspect one image (its stored
//! config and the slices using it), remove an unused image. Operators only; import and
//! removal are audited.
use super::error::{parse_body, ApiError};
use super::slices::{body_args, finish, json, require_operator};
use super::AppState;
use crate::daemon::Caller;
use crate::image::store::{self, StoreError};
use crate::proto::image_import::{ImageDetails, ImportRequest};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let (status, code) = e.status_code();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let err = ApiError::new(status, code, e.to_string());
        match e {
            StoreError::Image(crate::image::ImageError::InvalidName { .. })
            | StoreError::NoName { .. } => err.with_field("name"),
            StoreError::Import { .. } => err.with_field("path"),
            _ => err,
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::from)
}

pub async fn import(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let args = body_args(&body);
    let result = async {
        require_operator(&caller, "import images")?;
        let req: ImportRequest = parse_body(&body)?;
        if req.path.is_empty() || !req.path.starts_with('/') {
            return Err(ApiError::invalid(
                "path",
                "path: an absolute path on the node is required",
            ));
        }
        let images = st.daemon.paths.images_dir();
        let res = blocking(move || {
            store::import(
                &images,
                std::path::Path::new(&req.path),
                req.name.as_deref(),
                &mut |_| {},
            )
        })
        .await?;
        json(StatusCode::CREATED, &res)
    }
    .await;
    finish(&st, &caller, "image_import", None, args, result).await
}

pub async fn inspect(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<ImageDetails>, ApiError> {
    require_operator(&caller, "inspect images")?;
    let (images, slices) = (st.daemon.paths.images_dir(), st.daemon.paths.slices_dir());
    let d = blocking(move || store::details(&images, &slices, &name)).await?;
    Ok(Json(d))
}

pub async fn remove(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let args = serde_json::json!({ "name": name });
    let result = async {
        require_operator(&caller, "remove images")?;
        let p = &st.daemon.paths;
        let (images, slices, lock) = (p.images_dir(), p.slices_dir(), p.lock_file());
        let n = name.clone();
        blocking(move || store::remove(&images, &slices, &lock, &n)).await?;
        Ok((StatusCode::NO_CONTENT, None))
    }
    .await;
    finish(&st, &caller, "image_remove", None, args, result).await
}
