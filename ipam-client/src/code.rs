//! [`ErrorCode`]: every error code of the API contract, with the HTTP status it travels with.
//! The node maps its errors to these, the CLI maps them to exit statuses, and the bench and
//! tests compare against them instead of string literals.

use std::fmt;

use reqwest::StatusCode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares the enum's known codes once: variant, wire text, HTTP status.
macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal, $status:ident;)*) => {
        /// An error code of the API contract (`{"error": {"code": ...}}`), snake_case on the
        /// wire. A code this build does not know (from a newer node) decodes as
        /// [`ErrorCode::Unknown`] with its text, so old clients keep working.
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// A code this build does not know, as sent.
            Unknown(String),
        }

        impl ErrorCode {
            /// Every known code (not [`ErrorCode::Unknown`]).
            pub const KNOWN: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The snake_case text of the contract.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                    ErrorCode::Unknown(text) => text,
                }
            }

            /// The HTTP status the contract gives this code; `None` for an unknown code.
            pub fn status(&self) -> Option<StatusCode> {
                match self {
                    $(ErrorCode::$variant => Some(StatusCode::$status),)*
                    ErrorCode::Unknown(_) => None,
                }
            }

            /// The code for `text`; [`ErrorCode::Unknown`] if it is none of the known ones.
            pub fn parse(text: &str) -> ErrorCode {
                match text {
                    $($text => ErrorCode::$variant,)*
                    other => ErrorCode::Unknown(other.to_string()),
                }
            }
        }
    };
}

codes! {
    /// 400: malformed or not allowed input.
    InvalidArgument = "invalid_argument", BAD_REQUEST;
    /// 401: missing or wrong bearer token.
    Unauthorized = "unauthorized", UNAUTHORIZED;
    /// 404: no pool of that name.
    PoolNotFound = "pool_not_found", NOT_FOUND;
    /// 404: the address is not allocated.
    AllocationNotFound = "allocation_not_found", NOT_FOUND;
    /// 404: no route for the path.
    NotFound = "not_found", NOT_FOUND;
    /// 404: the node id is not a member of the cluster.
    NodeNotFound = "node_not_found", NOT_FOUND;
    /// 404: no pool matches an allocation by selector.
    NoMatchingPool = "no_matching_pool", NOT_FOUND;
    /// 405: the route exists, not for this method.
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED;
    /// 409: a pool of that name exists.
    PoolExists = "pool_exists", CONFLICT;
    /// 409: the CIDR overlaps another pool.
    PoolOverlap = "pool_overlap", CONFLICT;
    /// 409: another owner holds the address.
    AddressInUse = "address_in_use", CONFLICT;
    /// 409: the owner holds another address in the pool.
    OwnerConflict = "owner_conflict", CONFLICT;
    /// 409: the pool still has allocations.
    PoolNotEmpty = "pool_not_empty", CONFLICT;
    /// 409: a fenced call named another generation.
    GenerationMismatch = "generation_mismatch", CONFLICT;
    /// 409: no free address left.
    PoolExhausted = "pool_exhausted", CONFLICT;
    /// 409: `init` on a node that is part of a cluster.
    AlreadyInitialized = "already_initialized", CONFLICT;
    /// 409: the membership change would break the cluster (no voter left, ...).
    MembershipChangeRefused = "membership_change_refused", CONFLICT;
    /// 409: the address was released recently and is cooling down.
    AddressCoolingDown = "address_cooling_down", CONFLICT;
    /// 409: a fenced pool update named another revision.
    RevisionMismatch = "revision_mismatch", CONFLICT;
    /// 409: an allocation lies in the range.
    RangeNotEmpty = "range_not_empty", CONFLICT;
    /// 409: a child pool lives in the prefix.
    PrefixInUse = "prefix_in_use", CONFLICT;
    /// 409: the pool is frozen.
    PoolFrozen = "pool_frozen", CONFLICT;
    /// 409: a pool changed after the plan was made.
    PlanStale = "plan_stale", CONFLICT;
    /// 409: another member has that node id.
    NodeIdInUse = "node_id_in_use", CONFLICT;
    /// 409: the learner did not reach the leader's commit index in time.
    LearnerNotCaughtUp = "learner_not_caught_up", CONFLICT;
    /// 410: the event history no longer reaches back that far.
    HistoryTruncated = "history_truncated", GONE;
    /// 413: the body is over the limit.
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE;
    /// 422: an idempotency key was reused with another request.
    IdempotencyKeyReused = "idempotency_key_reused", UNPROCESSABLE_ENTITY;
    /// 500: a bug or a broken disk, never bad input.
    Internal = "internal", INTERNAL_SERVER_ERROR;
    /// 503: no leader is known.
    NoLeader = "no_leader", SERVICE_UNAVAILABLE;
    /// 503: the write queue is full.
    Overloaded = "overloaded", SERVICE_UNAVAILABLE;
    /// 503: the deadline passed; the write may still apply.
    DeadlineExceeded = "deadline_exceeded", SERVICE_UNAVAILABLE;
    /// 503: not every member of the cluster knows the operation yet (rolling upgrade).
    FeatureUnavailable = "feature_unavailable", SERVICE_UNAVAILABLE;
    /// 503: the node is shutting down.
    ShuttingDown = "shutting_down", SERVICE_UNAVAILABLE;
}

impl From<&str> for ErrorCode {
    fn from(text: &str) -> ErrorCode {
        ErrorCode::parse(text)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ErrorCode, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(ErrorCode::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_round_trips_through_its_text_and_json() {
        for code in ErrorCode::KNOWN {
            assert_eq!(&ErrorCode::parse(code.as_str()), code);
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(&serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            assert!(code.status().is_some(), "{code}");
        }
    }

    #[test]
    fn texts_are_distinct_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::KNOWN {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(
                !text.is_empty() && text.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{text}"
            );
        }
    }

    #[test]
    fn an_unknown_code_keeps_its_text() {
        let code: ErrorCode = serde_json::from_str("\"quota_exceeded\"").unwrap();
        assert_eq!(code, ErrorCode::Unknown("quota_exceeded".into()));
        assert_eq!(code.status(), None);
        assert_eq!(serde_json::to_string(&code).unwrap(), "\"quota_exceeded\"");
        assert_eq!(code.to_string(), "quota_exceeded");
    }

    #[test]
    fn contract_statuses() {
        assert_eq!(
            ErrorCode::PoolNotFound.status(),
            Some(StatusCode::NOT_FOUND)
        );
        assert_eq!(
            ErrorCode::PoolExhausted.status(),
            Some(StatusCode::CONFLICT)
        );
        assert_eq!(ErrorCode::HistoryTruncated.status(), Some(StatusCode::GONE));
        assert_eq!(
            ErrorCode::IdempotencyKeyReused.status(),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        assert_eq!(
            ErrorCode::DeadlineExceeded.status(),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
    }
}
