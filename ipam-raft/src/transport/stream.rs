//! Peer streams: `/raft/*` calls over long-lived connections upgraded from an HTTP request on
//! the same listener, instead of one HTTP request per call.
//!
//! Why: on the serial path of every write (leader → follower append, follower → leader
//! forward) an HTTP call costs a request build, the client pool's hand-off to its connection
//! task and back, header parsing and the API's middleware stack on the receiver. A stream is
//! owned by the task that calls on it: the call is one write, the answer one read, on the
//! caller's own task.
//!
//! - The client opens a stream with `GET /raft/stream`, `Connection: upgrade`,
//!   `Upgrade: ipam-raft-stream/1`, carrying the same token, cluster id and identity headers
//!   as any `/raft/*` request; the server's guard admits it exactly as it admits a call, so a
//!   stream is authenticated once and encrypted by the connection's TLS like the rest.
//! - One call at a time per stream ([`super::frame`]); a node keeps a few idle streams per
//!   peer ([`Streams`]) and opens another when all are busy, so concurrent calls (replication,
//!   forwarded proposals, read barriers) never queue behind each other.
//! - A peer that does not know the route (an older release: 404/405) is called over HTTP for
//!   [`HTTP_ONLY_FOR`], then asked again, so a rolling upgrade needs no switch.
//! - The server ends a stream when its node shuts down, after [`SERVER_IDLE`] without a call,
//!   or on a malformed or oversized frame; the client drops idle streams older than
//!   [`CLIENT_IDLE`] (below the server's, so it never picks one the server is closing).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::sync::watch;

use super::frame::{self, FrameError, Kind};

/// How long a peer that refused the upgrade is called over HTTP before it is asked again.
pub(crate) const HTTP_ONLY_FOR: Duration = Duration::from_secs(30);
/// Idle streams older than this are dropped by the client rather than reused.
pub(crate) const CLIENT_IDLE: Duration = Duration::from_secs(60);
/// The server closes a stream after this long without a call.
pub(crate) const SERVER_IDLE: Duration = Duration::from_secs(120);
/// Idle streams kept per peer; more are closed when returned.
const MAX_IDLE_PER_PEER: usize = 16;

/// A stream as the client holds it.
pub(crate) type ClientConn = BufReader<reqwest::Upgraded>;

/// The client's idle streams per peer address, and the peers that refused one.
/// Generic over the stream type only so that its rules are unit-tested without sockets.
pub(crate) struct Streams<C = ClientConn> {
    idle: Mutex<HashMap<String, Vec<(C, Instant)>>>,
    http_only: Mutex<HashMap<String, Instant>>,
}

impl<C> Default for Streams<C> {
    fn default() -> Self {
        Streams {
            idle: Mutex::new(HashMap::new()),
            http_only: Mutex::new(HashMap::new()),
        }
    }
}

impl<C> Streams<C> {
    /// Whether calls to `addr` should try a stream (it has not refused one lately).
    pub(crate) fn usable(&self, addr: &str, now: Instant) -> bool {
        let Ok(mut refused) = self.http_only.lock() else {
            return false;
        };
        match refused.get(addr) {
            Some(until) if *until > now => false,
            Some(_) => {
                refused.remove(addr);
                true
            }
            None => true,
        }
    }

    /// Remembers that `addr` refused the upgrade.
    pub(crate) fn refused(&self, addr: &str, now: Instant) {
        if let Ok(mut refused) = self.http_only.lock() {
            refused.insert(addr.to_string(), now + HTTP_ONLY_FOR);
        }
    }

    /// The most recently used idle stream to `addr` that is young enough to reuse.
    pub(crate) fn checkout(&self, addr: &str, now: Instant) -> Option<C> {
        let mut idle = self.idle.lock().ok()?;
        let conns = idle.get_mut(addr)?;
        // Oldest first: anything past the age limit sits at the front.
        conns.retain(|(_, since)| now.saturating_duration_since(*since) < CLIENT_IDLE);
        conns.pop().map(|(c, _)| c)
    }

    /// Gives a stream that answered its call back for the next one.
    pub(crate) fn checkin(&self, addr: &str, conn: C, now: Instant) {
        if let Ok(mut idle) = self.idle.lock() {
            let conns = idle.entry(addr.to_string()).or_default();
            if conns.len() < MAX_IDLE_PER_PEER {
                conns.push((conn, now));
            }
        }
    }
}

/// Whether an upgrade refused with `status` means the peer does not know the route (an
/// older release, or an embedder's server without upgrades), rather than refusing this node.
pub(crate) fn refused_as_unknown(status: u16) -> bool {
    matches!(status, 404 | 405 | 501)
}

/// Why a call on a stream failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The stream failed before the call was written whole, or before any byte of an answer
    /// came back: typically a stream the peer had closed while it sat idle (or the peer
    /// restarted). The peer may still have taken the call if it died while processing it;
    /// every call is safe to repeat (raft's RPCs are idempotent, a forwarded proposal carries
    /// request ids, reads change nothing), which is why such a call is resent once.
    #[error("stream closed before the call was taken: {0}")]
    NotTaken(FrameError),
    /// The call may or may not have been processed.
    #[error("stream failed after the call was sent: {0}")]
    Unknown(FrameError),
}

/// Writes `call` on `conn` and reads its answer.
pub(crate) async fn exchange(
    conn: &mut ClientConn,
    call: &[u8],
) -> Result<(u16, Vec<u8>), CallError> {
    let sent = async {
        conn.write_all(call).await?;
        conn.flush().await
    };
    if let Err(e) = sent.await {
        return Err(CallError::NotTaken(e.into()));
    }
    match frame::read_answer(conn).await {
        Ok(answer) => Ok(answer),
        Err(e @ (FrameError::Closed | FrameError::Gone(_))) => Err(CallError::NotTaken(e)),
        Err(e) => Err(CallError::Unknown(e)),
    }
}

/// What the server does with one call: the route's status and body.
pub(crate) trait Dispatch: Send + Sync + 'static {
    /// `None` while the node refuses every call (fault injection), with the refusal's status
    /// and message.
    fn refusal(&self) -> Option<(u16, &'static str)>;
    fn call(
        &self,
        kind: Kind,
        body: &[u8],
        traceparent: Option<String>,
    ) -> impl std::future::Future<Output = (u16, Vec<u8>)> + Send;
}

/// Serves calls on an upgraded connection until the peer closes it, the node shuts down, it
/// idles for [`SERVER_IDLE`], or a frame is malformed.
pub(crate) async fn serve<D, T>(dispatch: D, io: T, mut shutdown: watch::Receiver<bool>)
where
    D: Dispatch,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut io = BufReader::new(io);
    loop {
        let read = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            read = tokio::time::timeout(SERVER_IDLE, frame::read_call(&mut io)) => read,
        };
        let call = match read {
            Err(_) | Ok(Err(FrameError::Closed | FrameError::Gone(_))) => return,
            Ok(Ok(call)) => call,
            Ok(Err(e)) => {
                // The frame's end is unknown past this point: answer once, then close.
                let status = match e {
                    FrameError::TooLarge(_) => 413,
                    FrameError::Malformed(_) => 400,
                    FrameError::Closed | FrameError::Gone(_) | FrameError::Io(_) => return,
                };
                let _ = write_answer(&mut io, status, e.to_string().as_bytes()).await;
                return;
            }
        };
        let (status, body) = match (dispatch.refusal(), call.kind) {
            (Some((status, message)), _) => (status, message.as_bytes().to_vec()),
            (None, None) => (404, b"unknown call kind".to_vec()),
            (None, Some(kind)) => dispatch.call(kind, &call.body, call.traceparent).await,
        };
        if write_answer(&mut io, status, &body).await.is_err() {
            return;
        }
    }
}

async fn write_answer<T: AsyncWrite + Unpin>(
    io: &mut T,
    status: u16,
    body: &[u8],
) -> std::io::Result<()> {
    io.write_all(&frame::encode_answer(status, body)).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncReadExt as _;

    #[derive(Clone, Default)]
    struct Echo {
        isolated: Arc<AtomicBool>,
    }

    impl Dispatch for Echo {
        fn refusal(&self) -> Option<(u16, &'static str)> {
            self.isolated
                .load(Ordering::SeqCst)
                .then_some((503, "isolated"))
        }
        async fn call(
            &self,
            kind: Kind,
            body: &[u8],
            traceparent: Option<String>,
        ) -> (u16, Vec<u8>) {
            let mut out = vec![kind as u8];
            out.extend(traceparent.unwrap_or_default().into_bytes());
            out.extend_from_slice(body);
            (200, out)
        }
    }

    async fn answer_of<T: tokio::io::AsyncBufRead + AsyncWrite + Unpin>(
        io: &mut T,
        call: &[u8],
    ) -> (u16, Vec<u8>) {
        io.write_all(call).await.expect("write");
        frame::read_answer(io).await.expect("answer")
    }

    #[tokio::test]
    async fn calls_are_answered_in_turn_until_the_peer_closes() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut client = BufReader::new(client);
        let echo = Echo::default();
        let (_stop, shutdown) = watch::channel(false);
        let served = tokio::spawn(serve(echo.clone(), server, shutdown));
        let (status, body) = answer_of(
            &mut client,
            &frame::encode_call(Kind::Vote, Some("tp"), b"x"),
        )
        .await;
        assert_eq!(
            (status, body),
            (200, vec![Kind::Vote as u8, b't', b'p', b'x'])
        );
        echo.isolated.store(true, Ordering::SeqCst);
        let (status, _) =
            answer_of(&mut client, &frame::encode_call(Kind::Append, None, b"")).await;
        assert_eq!(
            status, 503,
            "an isolated node refuses calls on open streams too"
        );
        echo.isolated.store(false, Ordering::SeqCst);
        let unknown = [0, 0, 0, 3, 99, 0, 0];
        assert_eq!(answer_of(&mut client, &unknown).await.0, 404);
        drop(client);
        served.await.expect("serve ends when the peer closes");
    }

    #[tokio::test]
    async fn a_bad_frame_is_answered_then_the_stream_closes() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut client = BufReader::new(client);
        let (_stop, shutdown) = watch::channel(false);
        let served = tokio::spawn(serve(Echo::default(), server, shutdown));
        let huge = ((frame::MAX_FRAME + 1) as u32).to_be_bytes();
        let (status, _) = answer_of(&mut client, &huge).await;
        assert_eq!(status, 413);
        served.await.expect("serve ends");
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.expect("read to end");
        assert!(rest.is_empty(), "nothing follows the refusal");
    }

    #[tokio::test]
    async fn shutdown_ends_an_idle_stream() {
        let (_client, server) = tokio::io::duplex(1 << 16);
        let (stop, shutdown) = watch::channel(false);
        let served = tokio::spawn(serve(Echo::default(), server, shutdown));
        stop.send(true).expect("send");
        served.await.expect("serve ends at shutdown");
    }

    #[test]
    fn idle_streams_are_reused_newest_first_and_dropped_when_old_or_too_many() {
        let streams: Streams<u32> = Streams::default();
        let t0 = Instant::now();
        streams.checkin("a:1", 1, t0);
        streams.checkin("a:1", 2, t0 + Duration::from_secs(1));
        assert_eq!(streams.checkout("b:1", t0), None, "per peer");
        assert_eq!(
            streams.checkout("a:1", t0 + Duration::from_secs(2)),
            Some(2)
        );
        // Stream 1 has idled past the client's limit: never handed out again.
        assert_eq!(streams.checkout("a:1", t0 + CLIENT_IDLE), None);
        for i in 0..(MAX_IDLE_PER_PEER as u32 + 5) {
            streams.checkin("c:1", i, t0);
        }
        let mut kept = 0;
        while streams.checkout("c:1", t0).is_some() {
            kept += 1;
        }
        assert_eq!(kept, MAX_IDLE_PER_PEER);
    }

    #[test]
    fn a_refusing_peer_goes_by_http_until_its_time_is_up() {
        let streams: Streams<u32> = Streams::default();
        let now = Instant::now();
        assert!(streams.usable("a:1", now));
        streams.refused("a:1", now);
        assert!(!streams.usable("a:1", now + HTTP_ONLY_FOR / 2));
        assert!(streams.usable("b:1", now), "other peers are not affected");
        assert!(streams.usable("a:1", now + HTTP_ONLY_FOR));
    }
}
