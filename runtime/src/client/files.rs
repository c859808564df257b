//! `vslice cp` over the API: `PUT|GET /v1/slices/{name}/files` with tar streams. These use a
//! connection of their own (the shared one carries whole JSON bodies only): the request body
//! of a copy-in and the reply of a copy-out are streamed, never held whole in memory.
use super::{api_error, BlockingClient, Client, ClientError, Result};
use crate::proto::{CopyResult, FilesQuery, LogsQuery};
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::io::{Read, Write};

type Chunk = std::result::Result<Frame<Bytes>, std::io::Error>;
const CHUNK: usize = 256 * 1024;

impl Client {
    fn files_path(name: &str, q: &FilesQuery) -> Result<String> {
        Ok(format!(
            "/v1/slices/{}/files{}",
            super::encode(name),
            super::query_string(q)?
        ))
    }

    /// Send one request with a streamed body on a new connection.
    async fn send_streaming(
        &self,
        method: Method,
        path: &str,
        body: tokio::sync::mpsc::Receiver<Chunk>,
    ) -> Result<hyper::Response<Incoming>> {
        let stream = self.connect_stream().await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, StreamBody<_>>(TokioIo::new(stream))
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let frames = futures_util::stream::unfold(body, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::CONTENT_TYPE, "application/x-tar")
            .body(StreamBody::new(frames.boxed()))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))
    }

    /// Copy-in: the tar stream read from `input` (on a thread of its own) unpacked into the
    /// slice as `q.path`.
    pub async fn copy_in(
        &self,
        name: &str,
        q: &FilesQuery,
        input: impl Read + Send + 'static,
    ) -> Result<CopyResult> {
        let path = Self::files_path(name, q)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(4);
        let feeder = std::thread::spawn(move || -> std::io::Result<()> {
            let mut input = input;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = input.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                if tx.blocking_send(Ok(Frame::data(Bytes::from(buf)))).is_err() {
                    return Ok(()); // the request ended (the daemon answered early)
                }
            }
        });
        let resp = self.send_streaming(Method::PUT, &path, rx).await;
        let fed = feeder.join();
        let resp = resp?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        match fed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ClientError::Transport(format!("reading the input: {e}"))),
            Err(_) => return Err(ClientError::Transport("the input thread panicked".into())),
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("{path}: {e}")))
    }

    /// Copy-out: the tar stream of `q.path` in the slice, written to `out` as it arrives;
    /// returns the number of bytes.
    pub async fn copy_out(&self, name: &str, q: &FilesQuery, out: &mut impl Write) -> Result<u64> {
        let path = Self::files_path(name, q)?;
        let (_tx, rx) = tokio::sync::mpsc::channel::<Chunk>(1);
        drop(_tx);
        let resp = self.send_streaming(Method::GET, &path, rx).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            return Err(api_error(status, &bytes));
        }
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ClientError::Transport(format!("the archive was cut off by the daemon: {e}"))
            })?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data)
                    .map_err(|e| ClientError::Transport(format!("writing the archive: {e}")))?;
                n += data.len() as u64;
            }
        }
        Ok(n)
    }
}

impl Client {
    /// The console log (`q.follow`: and what comes next, until the daemon ends the reply),
    /// written to `out` as it arrives.
    pub async fn logs(&self, name: &str, q: &LogsQuery, out: &mut impl Write) -> Result<u64> {
        let path = format!(
            "/v1/slices/{}/logs{}",
            super::encode(name),
            super::query_string(q)?
        );
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(1);
        drop(tx);
        let resp = self.send_streaming(Method::GET, &path, rx).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            return Err(api_error(status, &bytes));
        }
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Transport(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data)
                    .and_then(|_| out.flush())
                    .map_err(|e| ClientError::Transport(format!("writing the log: {e}")))?;
                n += data.len() as u64;
            }
        }
        Ok(n)
    }
}

impl BlockingClient {
    pub fn logs(&self, name: &str, q: &LogsQuery, out: &mut impl Write) -> Result<u64> {
        self.rt.block_on(self.inner.logs(name, q, out))
    }
    pub fn copy_in(
        &self,
        name: &str,
        q: &FilesQuery,
        input: impl Read + Send + 'static,
    ) -> Result<CopyResult> {
        self.rt.block_on(self.inner.copy_in(name, q, input))
    }
    pub fn copy_out(&self, name: &str, q: &FilesQuery, out: &mut impl Write) -> Result<u64> {
        self.rt.block_on(self.inner.copy_out(name, q, out))
    }
}
