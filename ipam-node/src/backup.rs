//! `GET /api/v1/backup`: streams this node's backup (`ipam_raft::Ipam::backup`, one read
//! transaction) as `application/octet-stream` while writes continue.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use crate::api::AppState;
use crate::error::ApiError;
use crate::extract::Params;

/// Bytes per body chunk.
const CHUNK: usize = 256 * 1024;
/// Chunks buffered between the writer thread and the connection.
const QUEUED_CHUNKS: usize = 4;

type Chunk = Result<Bytes, std::io::Error>;

/// A blocking `Write` that hands chunks to the response body; fails once the client is gone,
/// which ends the backup (and its read transaction).
struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// `GET /api/v1/backup`.
pub async fn backup(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    params.finish()?;
    let (tx, mut rx) = mpsc::channel::<Chunk>(QUEUED_CHUNKS);
    let failed = tx.clone();
    let ipam = state.ipam.clone();
    tokio::spawn(async move {
        let writer = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        match ipam.backup(writer).await {
            Ok(header) => tracing::info!(applied_index = header.applied_index(), "backup streamed"),
            Err(e) => {
                tracing::warn!(error = %e, "backup failed");
                // Ends the body with an error, so the client sees a cut transfer.
                let _ = failed.send(Err(std::io::Error::other(e.to_string()))).await;
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"ipam.backup\"",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
