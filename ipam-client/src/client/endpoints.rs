//! The nodes a [`Client`] knows and which one its requests go to.
//!
//! A client made with several endpoints (`Client::new("http://a:7470,http://b:7470,...")` or
//! [`Client::with_endpoints`]) sends every request to one of them, its *current* endpoint,
//! shared by all clones:
//!
//! - **Failover.** A connection that cannot be made (refused, unreachable: nothing was sent)
//!   is tried again at once on the next endpoint, whatever the request. A keyed write that
//!   the client retries (`retry.rs`) moves on too when the node was unreachable, timed out or
//!   had no leader (`no_leader`): another node may be on the majority's side.
//! - **The leader first.** Any node accepts any call, but a follower forwards each write to
//!   the leader and asks the leader before a linearizable read: a hop the leader's own clients
//!   do not pay (at 64 concurrent clients +14 % allocations per second on a 2-core machine,
//!   `docs/performance.md`, "Session 15"). So the client looks up which of its endpoints leads —
//!   `GET /api/v1/cluster` on each, in the background, believing only a node that names
//!   *itself* as the leader (a node that can be reached, unlike a leader named by another) —
//!   after its first request, after every move, and every [`REFRESH`] (sooner while none
//!   answers as the leader).
//!
//! A client of one endpoint does none of this: it talks to that node, as before.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;

use crate::error::ClientError;

/// How often a client of several endpoints looks up the leader again while nothing fails.
pub const REFRESH: Duration = Duration::from_secs(5);

/// How soon a lookup that found no leader is tried again.
const RETRY: Duration = Duration::from_millis(250);

/// Time allowed to each endpoint's answer in a lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// One node: its base URL and its normalised text (for messages).
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) base: Url,
    pub(crate) name: String,
}

/// The endpoints of a client and its current one.
#[derive(Debug)]
pub(crate) struct Endpoints {
    list: Vec<Endpoint>,
    current: AtomicUsize,
    /// Milliseconds since `epoch` at which the next lookup is due (0: now).
    next_lookup_ms: AtomicU64,
    /// A lookup is running.
    looking: AtomicBool,
    epoch: Instant,
}

/// Parses one endpoint (`http://127.0.0.1:7470`; a bare `host:port` means `http://host:port`).
fn parse_one(endpoint: &str) -> Result<Endpoint, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = endpoint.trim();
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let base = Url::parse(&with_scheme).map_err(|e| invalid(&e.to_string()))?;
    if base.scheme() != "http" && base.scheme() != "https" {
        return Err(invalid("the scheme must be http or https"));
    }
    if base.cannot_be_a_base() || base.host().is_none() {
        return Err(invalid("no host"));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(invalid("an endpoint has no query or fragment"));
    }
    let name = base.as_str().trim_end_matches('/').to_string();
    Ok(Endpoint { base, name })
}

impl Endpoints {
    /// The endpoints of `list`, each as [`parse_one`] takes it; an entry may itself list
    /// several separated by commas. Empty entries are skipped; none at all is an error, and so
    /// is the same node twice.
    pub(crate) fn parse<S: AsRef<str>>(list: &[S]) -> Result<Endpoints, ClientError> {
        let mut parsed: Vec<Endpoint> = Vec::new();
        for entry in list {
            for one in entry.as_ref().split(',').filter(|s| !s.trim().is_empty()) {
                let e = parse_one(one)?;
                if parsed.iter().any(|p| p.name == e.name) {
                    return Err(ClientError::InvalidEndpoint {
                        endpoint: one.to_string(),
                        reason: "listed twice".into(),
                    });
                }
                parsed.push(e);
            }
        }
        if parsed.is_empty() {
            let all: Vec<&str> = list.iter().map(AsRef::as_ref).collect();
            return Err(ClientError::InvalidEndpoint {
                endpoint: all.join(","),
                reason: "no endpoint".into(),
            });
        }
        Ok(Endpoints {
            list: parsed,
            current: AtomicUsize::new(0),
            next_lookup_ms: AtomicU64::new(0),
            looking: AtomicBool::new(false),
            epoch: Instant::now(),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn all(&self) -> &[Endpoint] {
        &self.list
    }

    /// Index of the endpoint requests go to now.
    pub(crate) fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    pub(crate) fn get(&self, i: usize) -> &Endpoint {
        &self.list[i % self.list.len()]
    }

    /// Moves requests off endpoint `from` to the next one — unless another request already
    /// moved them, so that one failure moves the client one step — and asks for a lookup.
    /// Returns the endpoint to use now.
    pub(crate) fn advance(&self, from: usize) -> usize {
        let next = (from + 1) % self.list.len();
        let now =
            match self
                .current
                .compare_exchange(from, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => next,
                Err(now) => now,
            };
        self.next_lookup_ms.store(0, Ordering::Relaxed);
        now
    }

    /// Makes endpoint `i` the current one (a lookup found it leads).
    fn settle(&self, i: usize) {
        if i < self.list.len() {
            self.current.store(i, Ordering::Relaxed);
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether this caller should run a lookup now: there is more than one endpoint, one is
    /// due and none runs. Claims it: the caller must call [`Endpoints::looked`] when done.
    pub(crate) fn claim_lookup(&self) -> bool {
        self.list.len() > 1
            && self.now_ms() >= self.next_lookup_ms.load(Ordering::Relaxed)
            && self
                .looking
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Ends a lookup: `leader` is the endpoint that named itself the leader, if one did.
    pub(crate) fn looked(&self, leader: Option<usize>) {
        // No node named itself (an election, or the leader too slow to answer in time): ask
        // again soon rather than talk to a follower until the next refresh.
        let wait = match leader {
            Some(i) => {
                self.settle(i);
                REFRESH
            }
            None => RETRY,
        };
        let next = self
            .now_ms()
            .saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        self.next_lookup_ms.store(next, Ordering::Relaxed);
        self.looking.store(false, Ordering::Release);
    }

    /// Which endpoint `url` was built for (the one whose base it extends).
    fn index_of(&self, url: &Url) -> Option<usize> {
        let url = url.as_str();
        self.list.iter().position(|e| {
            url.strip_prefix(e.name.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
        })
    }

    /// `url`, built for any of these endpoints, moved onto endpoint `to`.
    pub(crate) fn aim(&self, url: &Url, to: usize) -> Option<Url> {
        let from = self.index_of(url)?;
        if from == to % self.list.len() {
            return None;
        }
        Some(rebase(url, &self.get(from).base, &self.get(to).base))
    }
}

/// `url` (under `from`) with `from`'s scheme, host, port and path prefix replaced by `to`'s.
pub(crate) fn rebase(url: &Url, from: &Url, to: &Url) -> Url {
    let prefix = from.path().trim_end_matches('/');
    let rest = url.path().strip_prefix(prefix).unwrap_or(url.path());
    let mut out = to.clone();
    out.set_path(&format!("{}{rest}", to.path().trim_end_matches('/')));
    out.set_query(url.query());
    out
}

/// The endpoint that leads, from each endpoint's answer `(its id, the leader it knows)`: only
/// a node that names itself counts.
pub(crate) fn leader_of(answers: &[(usize, u64, Option<u64>)]) -> Option<usize> {
    answers
        .iter()
        .find(|(_, id, leader)| *leader == Some(*id))
        .map(|(i, _, _)| *i)
}

/// A claimed lookup, ended when dropped — also when its task is cancelled mid-way (its
/// runtime shut down), which would otherwise leave the client claimed and never look again.
struct Claim {
    endpoints: Arc<Endpoints>,
    leader: Option<usize>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.endpoints.looked(self.leader);
    }
}

impl crate::Client {
    /// Starts a background lookup of the leader among this client's endpoints when one is due
    /// (see the module docs). Needs a Tokio runtime, as every call of this client does.
    pub(crate) fn look_up_leader_if_due(&self) {
        if !self.endpoints.claim_lookup() {
            return;
        }
        let client = self.clone();
        tokio::spawn(async move {
            let mut claim = Claim {
                endpoints: client.endpoints.clone(),
                leader: None,
            };
            claim.leader = client.find_leader().await;
        });
    }

    /// Asks every endpoint at once who leads (`GET /api/v1/cluster` through a client of that
    /// node alone); the first that names itself wins.
    async fn find_leader(&self) -> Option<usize> {
        let mut set = tokio::task::JoinSet::new();
        for (i, e) in self.endpoints.all().iter().enumerate() {
            let Ok(one) = Endpoints::parse(&[e.name.as_str()]) else {
                continue;
            };
            let node = crate::Client::over(one, self.token.clone(), self.http.clone())
                .with_timeout(LOOKUP_TIMEOUT);
            set.spawn(async move {
                let status = node.cluster_status().await.ok()?;
                Some((i, status.id, status.leader))
            });
        }
        while let Some(done) = set.join_next().await {
            if let Ok(Some(answer)) = done {
                if let Some(i) = leader_of(&[answer]) {
                    return Some(i);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_refuse_repeats_and_nothing() {
        let e = Endpoints::parse(&["127.0.0.1:1, http://127.0.0.1:2/", "https://h:3/p"]).unwrap();
        let names: Vec<&str> = e.all().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["http://127.0.0.1:1", "http://127.0.0.1:2", "https://h:3/p"]
        );
        assert!(matches!(
            Endpoints::parse(&["h:1,http://h:1/"]),
            Err(ClientError::InvalidEndpoint { reason, .. }) if reason == "listed twice"
        ));
        assert!(matches!(
            Endpoints::parse(&[" , "]),
            Err(ClientError::InvalidEndpoint { reason, .. }) if reason == "no endpoint"
        ));
        assert!(Endpoints::parse(&["h:1,ftp://x"]).is_err());
    }

    #[test]
    fn one_failure_moves_the_client_one_step() {
        let e = Endpoints::parse(&["h:1,h:2,h:3"]).unwrap();
        assert_eq!(e.current(), 0);
        // Two requests that both failed on endpoint 0: the second finds the move made.
        assert_eq!(e.advance(0), 1);
        assert_eq!(e.advance(0), 1);
        assert_eq!(e.advance(1), 2);
        assert_eq!(e.advance(2), 0);
    }

    #[test]
    fn lookups_are_claimed_once_and_rescheduled() {
        let e = Endpoints::parse(&["h:1,h:2"]).unwrap();
        assert!(e.claim_lookup());
        assert!(!e.claim_lookup(), "one lookup at a time");
        e.looked(Some(1));
        assert_eq!(e.current(), 1);
        assert!(!e.claim_lookup(), "not due before REFRESH");
        e.advance(1);
        assert!(e.claim_lookup(), "a move asks for one at once");
        e.looked(None);
        assert_eq!(
            e.current(),
            0,
            "no leader found: stays where the move put it"
        );
        let due = e.next_lookup_ms.load(Ordering::Relaxed);
        assert!(
            due <= e.now_ms() + 250,
            "and asks again soon, not after REFRESH"
        );
        let one = Endpoints::parse(&["h:1"]).unwrap();
        assert!(!one.claim_lookup(), "a single endpoint never looks");
    }

    #[test]
    fn a_dropped_claim_ends_its_lookup() {
        let e = Arc::new(Endpoints::parse(&["h:1,h:2"]).unwrap());
        assert!(e.claim_lookup());
        drop(Claim {
            endpoints: e.clone(),
            leader: None,
        });
        assert!(!e.looking.load(Ordering::Relaxed), "free to look again");
    }

    #[test]
    fn urls_move_between_endpoints_with_their_prefixes() {
        let e = Endpoints::parse(&["http://a:1/x/,https://b:2,http://c:3/y/z"]).unwrap();
        let url = Url::parse("http://a:1/x/api/v1/pools/p%2Fq?owner=o&after=1").unwrap();
        assert_eq!(
            e.aim(&url, 1).unwrap().as_str(),
            "https://b:2/api/v1/pools/p%2Fq?owner=o&after=1"
        );
        assert_eq!(
            e.aim(&url, 2).unwrap().as_str(),
            "http://c:3/y/z/api/v1/pools/p%2Fq?owner=o&after=1"
        );
        assert!(e.aim(&url, 0).is_none(), "already there");
        let near = Endpoints::parse(&["http://a:1,http://a:10"]).unwrap();
        let url = Url::parse("http://a:10/healthz").unwrap();
        assert!(near.aim(&url, 1).is_none(), "a:10 is not under a:1");
        assert_eq!(near.aim(&url, 0).unwrap().as_str(), "http://a:1/healthz");
        let back = Url::parse("http://c:3/y/z/metrics").unwrap();
        assert_eq!(e.aim(&back, 0).unwrap().as_str(), "http://a:1/x/metrics");
    }

    #[test]
    fn only_a_node_naming_itself_leads() {
        assert_eq!(leader_of(&[(0, 1, Some(2)), (2, 3, Some(2))]), None);
        assert_eq!(
            leader_of(&[(0, 1, Some(2)), (1, 2, Some(2)), (2, 3, None)]),
            Some(1)
        );
        assert_eq!(leader_of(&[]), None);
    }
}
