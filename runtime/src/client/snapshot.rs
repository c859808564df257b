//! Client calls for snapshots, clones, export and import of slices.
use super::{encode, Client, Result};
use crate::proto::snapshot::{
    CloneRequest, ExportRequest, ExportResult, RestoreRequest, SliceImportRequest, SnapshotInfo,
    SnapshotRequest,
};
use crate::proto::SliceInfo;
use hyper::Method;

impl Client {
    pub async fn snapshot(&self, name: &str, snap: Option<&str>) -> Result<SnapshotInfo> {
        let req = SnapshotRequest {
            name: snap.map(str::to_string),
        };
        self.call_json(
            Method::POST,
            &format!("/v1/slices/{}/snapshots", encode(name)),
            &req,
        )
        .await
    }
    pub async fn snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>> {
        self.call(
            Method::GET,
            &format!("/v1/slices/{}/snapshots", encode(name)),
            None,
        )
        .await
    }
    pub async fn restore(&self, name: &str, snap: &str) -> Result<SliceInfo> {
        let req = RestoreRequest {
            snapshot: snap.to_string(),
        };
        self.call_json(
            Method::POST,
            &format!("/v1/slices/{}/restore", encode(name)),
            &req,
        )
        .await
    }
    pub async fn clone_slice(&self, src: &str, dst: &str) -> Result<SliceInfo> {
        let req = CloneRequest {
            name: dst.to_string(),
        };
        self.call_json(
            Method::POST,
            &format!("/v1/slices/{}/clone", encode(src)),
            &req,
        )
        .await
    }
    pub async fn export(&self, name: &str, path: &str) -> Result<ExportResult> {
        let req = ExportRequest {
            path: path.to_string(),
        };
        self.call_json(
            Method::POST,
            &format!("/v1/slices/{}/export", encode(name)),
            &req,
        )
        .await
    }
    pub async fn import_slice(&self, name: &str, path: &str) -> Result<SliceInfo> {
        let req = SliceImportRequest {
            path: path.to_string(),
        };
        self.call_json(
            Method::POST,
            &format!("/v1/slices/{}/import", encode(name)),
            &req,
        )
        .await
    }
}
