//! Exit statuses and the one-line error message.

use std::process::ExitCode;

use ipam_client::{ClientError, ErrorCode, StatusCode};

/// Success.
pub const OK: u8 = 0;
/// Any other failure (bad input the node refused with 400, an undecodable answer, ...).
pub const OTHER: u8 = 1;
/// Bad command line (clap's own status for usage errors).
pub const USAGE: u8 = 2;
/// 404: unknown pool, allocation or route.
pub const NOT_FOUND: u8 = 3;
/// 409: overlap, address in use, pool exhausted, not empty, generation mismatch, ...
pub const CONFLICT: u8 = 4;
/// The node cannot be reached, timed out, or answered 503 (no leader, overloaded).
pub const UNAVAILABLE: u8 = 5;
/// 401: missing or wrong token.
pub const UNAUTHORIZED: u8 = 6;

/// A command line the CLI itself refuses after parsing (exit [`USAGE`]).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Conflicts the CLI found itself before writing (an import's rows; exit [`CONFLICT`]).
#[derive(Debug)]
pub struct ConflictError(pub String);

impl std::fmt::Display for ConflictError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConflictError {}

/// The exit status for an error of `run`.
pub fn code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<UsageError>().is_some() {
        return USAGE;
    }
    if err.downcast_ref::<ConflictError>().is_some() {
        return CONFLICT;
    }
    let Some(err) = err.downcast_ref::<ClientError>() else {
        return OTHER;
    };
    match err {
        ClientError::InvalidEndpoint { .. } | ClientError::TlsSetup(_) => USAGE,
        ClientError::Api { code, status, .. } => api_code(code, *status),
        _ if err.is_unavailable() => UNAVAILABLE,
        _ => OTHER,
    }
}

/// The exit status of a node's error code; a code this build does not know (from a newer
/// node) is judged by its HTTP status.
fn api_code(code: &ErrorCode, status: StatusCode) -> u8 {
    use ErrorCode as C;
    match code {
        C::PoolNotFound
        | C::AllocationNotFound
        | C::NotFound
        | C::NodeNotFound
        | C::NoMatchingPool => NOT_FOUND,
        C::PoolExists
        | C::PoolOverlap
        | C::AddressInUse
        | C::OwnerConflict
        | C::PoolNotEmpty
        | C::GenerationMismatch
        | C::PoolExhausted
        | C::AlreadyInitialized
        | C::MembershipChangeRefused
        | C::AddressCoolingDown
        | C::RevisionMismatch
        | C::RangeNotEmpty
        | C::PrefixInUse
        | C::PoolFrozen
        | C::PlanStale
        | C::NodeIdInUse
        | C::LearnerNotCaughtUp => CONFLICT,
        C::NoLeader
        | C::Overloaded
        | C::DeadlineExceeded
        | C::ShuttingDown
        | C::FeatureUnavailable => UNAVAILABLE,
        C::Unauthorized => UNAUTHORIZED,
        C::InvalidArgument
        | C::MethodNotAllowed
        | C::PayloadTooLarge
        | C::HistoryTruncated
        | C::IdempotencyKeyReused
        | C::Internal => OTHER,
        _ => match status {
            StatusCode::NOT_FOUND => NOT_FOUND,
            StatusCode::CONFLICT => CONFLICT,
            StatusCode::SERVICE_UNAVAILABLE => UNAVAILABLE,
            StatusCode::UNAUTHORIZED => UNAUTHORIZED,
            _ => OTHER,
        },
    }
}

/// The error as one line for stderr: the node's `code: message` (plus the failing op of a
/// batch), or the transport problem naming the endpoint — never a chain of causes.
pub fn message(err: &anyhow::Error) -> String {
    match err.downcast_ref::<ClientError>() {
        Some(ClientError::Api {
            index: Some(index), ..
        }) => format!("{err} (op {index})"),
        Some(client) => client.to_string(),
        None => format!("{err:#}"),
    }
}

/// Prints `err` on stderr and returns its exit status.
pub fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {}", message(err));
    ExitCode::from(code(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn api(status: u16, code: &str) -> anyhow::Error {
        ClientError::Api {
            status: StatusCode::from_u16(status).unwrap(),
            code: ErrorCode::parse(code),
            message: "msg".into(),
            index: None,
            may_have_committed: false,
            retry_after: Some(Duration::from_secs(1)),
        }
        .into()
    }

    #[test]
    fn statuses_map_to_distinct_exit_codes() {
        assert_eq!(code(&api(404, "pool_not_found")), NOT_FOUND);
        assert_eq!(code(&api(404, "allocation_not_found")), NOT_FOUND);
        assert_eq!(code(&api(409, "pool_overlap")), CONFLICT);
        assert_eq!(code(&api(409, "pool_exhausted")), CONFLICT);
        assert_eq!(code(&api(503, "no_leader")), UNAVAILABLE);
        assert_eq!(code(&api(503, "overloaded")), UNAVAILABLE);
        assert_eq!(code(&api(401, "unauthorized")), UNAUTHORIZED);
        assert_eq!(code(&api(400, "invalid_argument")), OTHER);
        assert_eq!(code(&api(500, "internal")), OTHER);
        assert_eq!(code(&api(409, "pool_frozen")), CONFLICT);
        assert_eq!(code(&api(404, "no_matching_pool")), NOT_FOUND);
        assert_eq!(code(&api(410, "history_truncated")), OTHER);
        // A code from a newer node falls back to its status.
        assert_eq!(code(&api(409, "quota_exceeded")), CONFLICT);
        assert_eq!(code(&api(503, "draining")), UNAVAILABLE);
        assert_eq!(code(&UsageError("x".into()).into()), USAGE);
        assert_eq!(code(&anyhow::anyhow!("io")), OTHER);
        let bad = ClientError::InvalidEndpoint {
            endpoint: "ftp://x".into(),
            reason: "scheme".into(),
        };
        assert_eq!(code(&bad.into()), USAGE);
    }

    #[test]
    fn every_known_code_has_the_exit_status_of_its_http_status() {
        for c in ErrorCode::KNOWN {
            let status = c.status().unwrap();
            assert_eq!(
                api_code(c, status),
                api_code(&ErrorCode::Unknown("x".into()), status),
                "{c}"
            );
        }
    }

    #[test]
    fn messages_are_one_line() {
        assert_eq!(message(&api(404, "pool_not_found")), "pool_not_found: msg");
        let batch: anyhow::Error = ClientError::Api {
            status: StatusCode::CONFLICT,
            code: ErrorCode::PoolExhausted,
            message: "full".into(),
            index: Some(2),
            may_have_committed: false,
            retry_after: None,
        }
        .into();
        assert_eq!(message(&batch), "pool_exhausted: full (op 2)");
    }
}
