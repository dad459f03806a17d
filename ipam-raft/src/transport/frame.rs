//! The framing of a peer stream (see [`super::stream`]): what a call and its answer look like
//! on an upgraded connection. Pure: encoding into buffers and reading from any `AsyncRead`.
//!
//! A call is `len: u32 BE` (bytes after it), `kind: u8`, `traceparent_len: u16 BE`, the
//! W3C `traceparent` (empty when the caller's span is not traced), then the postcard body of
//! the route's request. An answer is `len: u32 BE`, `status: u16 BE` (an HTTP status with the
//! route's meaning), then the body: postcard on 200, a UTF-8 message otherwise. One call at a
//! time per stream, so answers need no id.

use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _};

use super::rpc::{ADMIN, APPEND, HELLO, PROPOSE, RAFT_BODY_LIMIT, READ_INDEX, SNAPSHOT, VOTE};

/// The `Upgrade` token of a peer stream; the `/1` versions this framing.
pub(crate) const PROTOCOL: &str = "ipam-raft-stream/1";

/// Largest frame after its length: a body at the route limit plus the call's header.
pub(crate) const MAX_FRAME: usize = RAFT_BODY_LIMIT + 4096;

/// Which `/raft/*` route a call stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Append = 1,
    Vote = 2,
    Snapshot = 3,
    Propose = 4,
    ReadIndex = 5,
    Admin = 6,
    Hello = 7,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Append,
        Kind::Vote,
        Kind::Snapshot,
        Kind::Propose,
        Kind::ReadIndex,
        Kind::Admin,
        Kind::Hello,
    ];

    /// The kind of the route at `path`; `None` for a path that has no kind (it goes by HTTP).
    pub(crate) fn of_path(path: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.path() == path)
    }

    pub(crate) fn path(self) -> &'static str {
        match self {
            Kind::Append => APPEND,
            Kind::Vote => VOTE,
            Kind::Snapshot => SNAPSHOT,
            Kind::Propose => PROPOSE,
            Kind::ReadIndex => READ_INDEX,
            Kind::Admin => ADMIN,
            Kind::Hello => HELLO,
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == b)
    }
}

/// A call as the server reads it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Call {
    /// `None`: a kind this release does not know (answered 404, the stream stays usable).
    pub(crate) kind: Option<Kind>,
    pub(crate) traceparent: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The peer closed the stream between frames.
    #[error("stream closed")]
    Closed,
    /// The stream failed before the first byte of a frame (a reset: the peer had closed it).
    #[error("stream failed before the frame began: {0}")]
    Gone(std::io::Error),
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    #[error("stream read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The bytes of a call, ready for one write.
pub(crate) fn encode_call(kind: Kind, traceparent: Option<&str>, body: &[u8]) -> Vec<u8> {
    // A traceparent is 55 bytes; anything that does not fit a u16 is dropped, not sent cut.
    let tp = traceparent
        .filter(|t| t.len() <= usize::from(u16::MAX))
        .unwrap_or("");
    let len = 1 + 2 + tp.len() + body.len();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&frame_len(len).to_be_bytes());
    out.push(kind as u8);
    out.extend_from_slice(&(tp.len() as u16).to_be_bytes());
    out.extend_from_slice(tp.as_bytes());
    out.extend_from_slice(body);
    out
}

/// The bytes of an answer, ready for one write.
pub(crate) fn encode_answer(status: u16, body: &[u8]) -> Vec<u8> {
    let len = 2 + body.len();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&frame_len(len).to_be_bytes());
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Lengths are checked against [`MAX_FRAME`] by both ends before anything is sent, so one
/// over `u32` never reaches the wire; saturating keeps this total.
fn frame_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Reads one frame's payload (after its length). `Closed` or `Gone` when the stream ends or
/// fails before the first byte of a frame: then nothing of an answer was received, which is
/// what tells a stale stream from one that failed mid-answer.
async fn read_frame<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    match r.fill_buf().await {
        Ok([]) => return Err(FrameError::Closed),
        Ok(_) => {}
        Err(e) => return Err(FrameError::Gone(e)),
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(payload)
}

/// Reads one call.
pub(crate) async fn read_call<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Call, FrameError> {
    let payload = read_frame(r).await?;
    decode_call(payload)
}

fn decode_call(mut payload: Vec<u8>) -> Result<Call, FrameError> {
    if payload.len() < 3 {
        return Err(FrameError::Malformed("call shorter than its header"));
    }
    let kind = Kind::from_byte(payload[0]);
    let tp_len = usize::from(u16::from_be_bytes([payload[1], payload[2]]));
    let body_at = 3 + tp_len;
    if payload.len() < body_at {
        return Err(FrameError::Malformed("traceparent longer than the call"));
    }
    let traceparent = match std::str::from_utf8(&payload[3..body_at]) {
        Ok("") => None,
        Ok(t) => Some(t.to_string()),
        Err(_) => return Err(FrameError::Malformed("traceparent is not UTF-8")),
    };
    let body = payload.split_off(body_at);
    Ok(Call {
        kind,
        traceparent,
        body,
    })
}

/// Reads one answer: its status and body.
pub(crate) async fn read_answer<R: AsyncBufRead + Unpin>(
    r: &mut R,
) -> Result<(u16, Vec<u8>), FrameError> {
    let mut payload = read_frame(r).await?;
    if payload.len() < 2 {
        return Err(FrameError::Malformed("answer shorter than its status"));
    }
    let status = u16::from_be_bytes([payload[0], payload[1]]);
    Ok((status, payload.split_off(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn call_of(bytes: &[u8]) -> Result<Call, FrameError> {
        let mut r = bytes;
        read_call(&mut r).await
    }

    #[tokio::test]
    async fn a_call_reads_back_as_written() {
        for kind in Kind::ALL {
            for tp in [
                None,
                Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ] {
                let bytes = encode_call(kind, tp, b"body");
                let call = call_of(&bytes).await.expect("call");
                assert_eq!(call.kind, Some(kind));
                assert_eq!(call.traceparent.as_deref(), tp);
                assert_eq!(call.body, b"body");
            }
        }
    }

    #[tokio::test]
    async fn an_answer_reads_back_as_written() {
        let bytes = encode_answer(503, b"node isolated");
        let mut r = &bytes[..];
        let (status, body) = read_answer(&mut r).await.expect("answer");
        assert_eq!((status, body.as_slice()), (503, &b"node isolated"[..]));
    }

    #[tokio::test]
    async fn consecutive_frames_split_where_they_were_joined() {
        let mut bytes = encode_call(Kind::Vote, None, b"one");
        bytes.extend(encode_call(Kind::Append, None, b""));
        let mut r = &bytes[..];
        assert_eq!(read_call(&mut r).await.expect("first").body, b"one");
        let second = read_call(&mut r).await.expect("second");
        assert_eq!((second.kind, second.body.len()), (Some(Kind::Append), 0));
        assert!(matches!(read_call(&mut r).await, Err(FrameError::Closed)));
    }

    #[tokio::test]
    async fn bad_frames_are_errors_not_panics() {
        // Over the limit: refused from the length alone, before any allocation.
        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert!(matches!(call_of(&huge).await, Err(FrameError::TooLarge(_))));
        // Shorter than a call's header.
        let short = [0, 0, 0, 2, 1, 0];
        assert!(matches!(
            call_of(&short).await,
            Err(FrameError::Malformed(_))
        ));
        // A traceparent length past the end.
        let past = [0, 0, 0, 3, 1, 0, 9];
        assert!(matches!(
            call_of(&past).await,
            Err(FrameError::Malformed(_))
        ));
        // Cut inside the payload: an I/O error, not `Closed` (the peer died mid-frame).
        let cut = [0, 0, 0, 9, 1];
        assert!(matches!(call_of(&cut).await, Err(FrameError::Io(_))));
        // An unknown kind is a call the server answers 404, not a broken stream.
        let unknown = [0, 0, 0, 3, 200, 0, 0];
        assert_eq!(call_of(&unknown).await.expect("call").kind, None);
    }

    #[test]
    fn every_kind_has_its_own_path_and_byte() {
        for kind in Kind::ALL {
            assert_eq!(Kind::of_path(kind.path()), Some(kind));
            assert_eq!(Kind::from_byte(kind as u8), Some(kind));
        }
        assert_eq!(Kind::of_path("/raft/nope"), None);
    }
}
