//! `--join URL`: ask a cluster node's admin API to add this node as a learner, then to promote
//! it to voter, retrying while that node is unreachable or has no leader, until a deadline.

use std::time::Duration;

use ipam_client::types::{ErrorBody, NodeAddr};
use reqwest::StatusCode;
use tokio::time::Instant;

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The node at the URL answered with an error that retrying will not fix.
    #[error("{url} refused to {what}: HTTP {status}: {message}")]
    Refused {
        /// The endpoint.
        url: String,
        /// What was asked.
        what: &'static str,
        /// HTTP status.
        status: u16,
        /// The error message from the body, or the body.
        message: String,
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
    /// One shared HTTP client of the node.
    pub http: &'a reqwest::Client,
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
        let base = self.url.trim_end_matches('/');
        let body = NodeAddr {
            id: self.id,
            addr: self.addr.to_string(),
        };
        self.post_until(
            deadline,
            &format!("{base}/api/v1/cluster/learners"),
            Some(&body),
            "add this node as a learner",
        )
        .await?;
        tracing::info!(
            url = base,
            "added as a learner; asking for promotion to voter"
        );
        self.post_until(
            deadline,
            &format!("{base}/api/v1/cluster/voters/{}", self.id),
            None,
            "promote this node to voter",
        )
        .await?;
        tracing::info!(url = base, "joined the cluster as a voter");
        Ok(())
    }

    async fn post_until(
        &self,
        deadline: Instant,
        url: &str,
        body: Option<&NodeAddr>,
        what: &'static str,
    ) -> Result<(), JoinError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let last = match self.post(url, body, remaining).await {
                Ok(()) => return Ok(()),
                Err(Attempt::Fatal { status, message }) => {
                    return Err(JoinError::Refused {
                        url: url.to_string(),
                        what,
                        status,
                        message,
                    })
                }
                Err(Attempt::Retry(last)) => last,
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

    async fn post(
        &self,
        url: &str,
        body: Option<&NodeAddr>,
        timeout: Duration,
    ) -> Result<(), Attempt> {
        let mut req = self
            .http
            .post(url)
            .timeout(timeout.max(Duration::from_millis(1)));
        if let Some(token) = self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let response = req
            .send()
            .await
            .map_err(|e| Attempt::Retry(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| format!("{} ({})", b.error.message, b.error.code))
            .unwrap_or(text);
        // 503: no leader yet, overloaded or a deadline passed; any 5xx or 429 may pass on
        // retry. A 4xx (bad token, refused membership change) will not change.
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Err(Attempt::Retry(format!("HTTP {status}: {message}")))
        } else {
            Err(Attempt::Fatal {
                status: status.as_u16(),
                message,
            })
        }
    }
}

enum Attempt {
    Retry(String),
    Fatal { status: u16, message: String },
}
