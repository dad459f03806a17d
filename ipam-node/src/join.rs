//! `--join URL`: ask a cluster node's admin API, through [`ipam_client::Client`], to add this
//! node as a learner, then to promote it to voter, retrying while that node is unreachable or
//! has no leader, until a deadline.

use std::future::Future;
use std::time::Duration;

use ipam_client::{Client, ClientError, StatusCode};
use tokio::time::Instant;

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The URL is not one a client can call.
    #[error("invalid --join URL: {0}")]
    InvalidUrl(#[source] Box<ClientError>),
    /// The node at the URL answered with an error that retrying will not fix.
    #[error("{url} refused to {what}: {source}")]
    Refused {
        /// The endpoint.
        url: String,
        /// What was asked.
        what: &'static str,
        /// The answer (its code and message).
        #[source]
        source: Box<ClientError>,
    },
    /// The deadline passed while the node was unreachable or busy.
    #[error("gave up joining through {url} after {waited_s} s: {last}")]
    Timeout {
        /// The endpoint.
        url: String,
        /// Seconds waited.
        waited_s: u64,
        /// The last failure.
        last: String,
    },
    /// The HTTP client for the join could not be built (TLS material).
    #[error("cannot set up the join client: {0}")]
    Setup(String),
}

/// Where and how to join.
pub struct Join<'a> {
    /// HTTP client to reach `url` with (TLS roots, client certificate); `None`: a plain one.
    pub http: Option<reqwest::Client>,
    /// Base URL of a cluster node, `http://host:port`.
    pub url: &'a str,
    /// Cluster token.
    pub token: Option<&'a str>,
    /// This node's id.
    pub id: u64,
    /// This node's advertised `host:port`.
    pub addr: &'a str,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Join<'_> {
    /// Adds this node as a learner (returns once it caught up), then promotes it.
    pub async fn run(&self) -> Result<(), JoinError> {
        let deadline = Instant::now() + self.timeout;
        let token = self.token.map(str::to_string);
        let client = match &self.http {
            Some(http) => Client::with_http_client(self.url, token, http.clone()),
            None => Client::new(self.url, token),
        }
        .map_err(|e| JoinError::InvalidUrl(Box::new(e)))?;
        // Every node of a `--join` list, for the log and the errors.
        let url = client.endpoints().join(",");
        until(
            &client,
            deadline,
            "add this node as a learner",
            |c| async move { c.add_learner(self.id, self.addr).await.map(drop) },
        )
        .await?;
        tracing::info!(url, "added as a learner; asking for promotion to voter");
        until(
            &client,
            deadline,
            "promote this node to voter",
            |c| async move { c.promote_voter(self.id).await.map(drop) },
        )
        .await?;
        tracing::info!(url, "joined the cluster as a voter");
        Ok(())
    }
}

/// Calls `call` with a client bounded by what is left of `deadline`, retrying with backoff
/// while the failure may pass (unreachable, timed out, 5xx, 429).
async fn until<F, Fut>(
    client: &Client,
    deadline: Instant,
    what: &'static str,
    call: F,
) -> Result<(), JoinError>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = Result<(), ClientError>>,
{
    let url = client.endpoints().join(",");
    let url = url.as_str();
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let bounded = client
            .clone()
            .with_timeout(remaining.max(Duration::from_millis(1)));
        let last = match call(bounded).await {
            Ok(()) => return Ok(()),
            Err(e) if retryable(&e) => e.to_string(),
            Err(source) => {
                return Err(JoinError::Refused {
                    url: url.to_string(),
                    what,
                    source: Box::new(source),
                })
            }
        };
        tracing::info!(url, error = %last, "join: will retry");
        if Instant::now() + backoff >= deadline {
            return Err(JoinError::Timeout {
                url: url.to_string(),
                waited_s: started.elapsed().as_secs(),
                last,
            });
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// 503 (no leader yet, overloaded, a deadline passed), any 5xx or 429, and transport failures
/// may pass on retry. A 4xx (bad token, refused membership change) will not change.
fn retryable(e: &ClientError) -> bool {
    match e.status() {
        Some(status) => status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
        None => matches!(
            e,
            ClientError::Unreachable { .. } | ClientError::Timeout { .. }
        ),
    }
}
