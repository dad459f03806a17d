//! Which IPAM errors an orchestrator retries, and the loop that does it.
//!
//! Every write this example makes is safe to repeat: an allocation is idempotent by owner (the
//! owner `vm/<name>/<nic>` gets its existing allocation back) and a release is fenced by the
//! allocation's generation. So an answer that leaves the outcome unknown (a deadline, a leader
//! change) is retried until a deadline, never reported as a failure of the VM.

use std::future::Future;
use std::time::{Duration, Instant};

use ipam_raft::IpamError;

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this pause.
    Retry(Duration),
    /// Give the error to the caller.
    Fail,
}

/// Decides from the error, the attempt number (1-based) and the time left.
///
/// Retried: no leader yet, a full queue, and a deadline after which the write may still have
/// applied (repeating it is safe, see the module docs). Everything else is an answer.
pub fn decide(error: &IpamError, attempt: u32, left: Duration) -> Decision {
    let retryable = matches!(
        error,
        IpamError::NoLeader | IpamError::Overloaded | IpamError::DeadlineExceeded { .. }
    );
    // 25 ms, doubling, at most 400 ms: a leader election takes 0.5–1 s.
    let pause = Duration::from_millis(25u64 << attempt.saturating_sub(1).min(4));
    if retryable && left > pause {
        Decision::Retry(pause)
    } else {
        Decision::Fail
    }
}

/// Runs `attempt` until it succeeds, [`decide`] says fail, or `budget` has passed.
pub async fn retry<T, F, Fut>(budget: Duration, mut attempt: F) -> Result<T, IpamError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, IpamError>>,
{
    let deadline = Instant::now() + budget;
    let mut n = 0u32;
    loop {
        n += 1;
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match decide(&error, n, left) {
                    Decision::Retry(pause) => tokio::time::sleep(pause).await,
                    Decision::Fail => return Err(error),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOTS: Duration = Duration::from_secs(10);

    #[test]
    fn unknown_outcomes_are_retried_with_a_growing_pause() {
        assert_eq!(
            decide(&IpamError::NoLeader, 1, LOTS),
            Decision::Retry(Duration::from_millis(25))
        );
        assert_eq!(
            decide(&IpamError::Overloaded, 3, LOTS),
            Decision::Retry(Duration::from_millis(100))
        );
        let deadline = IpamError::DeadlineExceeded { waited_ms: 5 };
        assert_eq!(
            decide(&deadline, 40, LOTS),
            Decision::Retry(Duration::from_millis(400))
        );
    }

    #[test]
    fn answers_and_spent_budgets_fail() {
        assert_eq!(decide(&IpamError::ShuttingDown, 1, LOTS), Decision::Fail);
        assert_eq!(decide(&IpamError::UnknownNode(7), 1, LOTS), Decision::Fail);
        assert_eq!(
            decide(&IpamError::NoLeader, 1, Duration::from_millis(10)),
            Decision::Fail
        );
    }
}
