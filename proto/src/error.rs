//! [`ApiError`]: the error of every [`WorkerApi`](crate::WorkerApi) and
//! [`GatewayApi`](crate::GatewayApi) call, and its mapping to gRPC status
//! codes (SPEC §5).

use tonic::{Code, Status};

/// Why a call of the worker or gateway API failed.
///
/// Each kind maps to one gRPC status code, so an error raised by a trait
/// implementation on one side of the wire arrives as the same kind, with the
/// same message, on the other side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Unknown session, NPC or other named thing (`NOT_FOUND`). The gateway
    /// treats it on `StopSession` as "already stopped".
    #[error("not found: {0}")]
    NotFound(String),
    /// A missing or malformed argument (`INVALID_ARGUMENT`).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The callee is full, e.g. a worker at capacity (`RESOURCE_EXHAUSTED`).
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// The callee cannot be reached or is temporarily unable to serve; retry
    /// later or elsewhere (`UNAVAILABLE`).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The call's deadline passed before it completed (`DEADLINE_EXCEEDED`).
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// The target is in the wrong state for this call, e.g. speaking through
    /// a muted NPC (`FAILED_PRECONDITION`).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The caller gave up on the call or aborted its stream (`CANCELLED`).
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// A bug or an unexpected failure on the callee's side (`INTERNAL`).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Builds [`ApiError::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    /// Builds [`ApiError::InvalidArgument`].
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }

    /// Builds [`ApiError::ResourceExhausted`].
    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::ResourceExhausted(message.into())
    }

    /// Builds [`ApiError::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into())
    }

    /// Builds [`ApiError::DeadlineExceeded`].
    pub fn deadline_exceeded(message: impl Into<String>) -> Self {
        Self::DeadlineExceeded(message.into())
    }

    /// Builds [`ApiError::FailedPrecondition`].
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::FailedPrecondition(message.into())
    }

    /// Builds [`ApiError::Cancelled`].
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::Cancelled(message.into())
    }

    /// Builds [`ApiError::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// The gRPC status code this error travels as.
    pub fn code(&self) -> Code {
        match self {
            Self::NotFound(_) => Code::NotFound,
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Unavailable(_) => Code::Unavailable,
            Self::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Cancelled(_) => Code::Cancelled,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// The gRPC status code's canonical name (`NOT_FOUND`, …), as metrics
    /// label it (`OK` is the label of a success).
    pub fn code_name(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "NOT_FOUND",
            Self::InvalidArgument(_) => "INVALID_ARGUMENT",
            Self::ResourceExhausted(_) => "RESOURCE_EXHAUSTED",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::DeadlineExceeded(_) => "DEADLINE_EXCEEDED",
            Self::FailedPrecondition(_) => "FAILED_PRECONDITION",
            Self::Cancelled(_) => "CANCELLED",
            Self::Internal(_) => "INTERNAL",
        }
    }

    /// The human-readable message, without the kind prefix of `Display`.
    pub fn message(&self) -> &str {
        match self {
            Self::NotFound(m)
            | Self::InvalidArgument(m)
            | Self::ResourceExhausted(m)
            | Self::Unavailable(m)
            | Self::DeadlineExceeded(m)
            | Self::FailedPrecondition(m)
            | Self::Cancelled(m)
            | Self::Internal(m) => m,
        }
    }

    /// Whether retrying the call (later, or on another worker) may succeed:
    /// true for [`Unavailable`](Self::Unavailable),
    /// [`DeadlineExceeded`](Self::DeadlineExceeded) and
    /// [`ResourceExhausted`](Self::ResourceExhausted).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::DeadlineExceeded(_) | Self::ResourceExhausted(_)
        )
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        let code = error.code();
        let message = match error {
            ApiError::NotFound(m)
            | ApiError::InvalidArgument(m)
            | ApiError::ResourceExhausted(m)
            | ApiError::Unavailable(m)
            | ApiError::DeadlineExceeded(m)
            | ApiError::FailedPrecondition(m)
            | ApiError::Cancelled(m)
            | ApiError::Internal(m) => m,
        };
        Status::new(code, message)
    }
}

impl From<Status> for ApiError {
    /// Maps a gRPC status to the closest kind. The codes of [`ApiError`]
    /// round-trip exactly; other codes are folded in (their name is kept in
    /// the message). tonic reports an expired `grpc-timeout` as `CANCELLED`
    /// "Timeout expired"; that becomes [`ApiError::DeadlineExceeded`].
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        let folded = |code: Code| format!("{code:?}: {message}");
        match status.code() {
            Code::NotFound => Self::NotFound(message),
            Code::InvalidArgument => Self::InvalidArgument(message),
            Code::OutOfRange => Self::InvalidArgument(folded(Code::OutOfRange)),
            Code::ResourceExhausted => Self::ResourceExhausted(message),
            Code::Unavailable => Self::Unavailable(message),
            Code::Aborted => Self::Unavailable(folded(Code::Aborted)),
            Code::DeadlineExceeded => Self::DeadlineExceeded(message),
            Code::Cancelled if message == tonic::TimeoutExpired(()).to_string() => Self::DeadlineExceeded(message),
            Code::Cancelled => Self::Cancelled(message),
            Code::FailedPrecondition => Self::FailedPrecondition(message),
            Code::AlreadyExists => Self::FailedPrecondition(folded(Code::AlreadyExists)),
            Code::PermissionDenied => Self::FailedPrecondition(folded(Code::PermissionDenied)),
            Code::Unauthenticated => Self::FailedPrecondition(folded(Code::Unauthenticated)),
            Code::Internal => Self::Internal(message),
            code @ (Code::Ok | Code::Unknown | Code::Unimplemented | Code::DataLoss) => Self::Internal(folded(code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<ApiError> {
        vec![
            ApiError::not_found("session s1"),
            ApiError::invalid_argument("empty name"),
            ApiError::resource_exhausted("worker full (8/8)"),
            ApiError::unavailable("worker down"),
            ApiError::deadline_exceeded("5s"),
            ApiError::failed_precondition("npc muted"),
            ApiError::cancelled("client went away"),
            ApiError::internal("bug"),
        ]
    }

    #[test]
    fn every_kind_round_trips_through_status() {
        for error in all_kinds() {
            let status = Status::from(error.clone());
            assert_eq!(status.code(), error.code());
            assert_eq!(status.message(), error.message());
            assert_eq!(ApiError::from(status), error);
        }
    }

    #[test]
    fn codes_match_spec() {
        assert_eq!(ApiError::not_found("x").code(), Code::NotFound);
        assert_eq!(ApiError::invalid_argument("x").code(), Code::InvalidArgument);
        assert_eq!(ApiError::resource_exhausted("x").code(), Code::ResourceExhausted);
        assert_eq!(ApiError::deadline_exceeded("x").code(), Code::DeadlineExceeded);
    }

    #[test]
    fn foreign_codes_are_folded_with_their_name() {
        let e = ApiError::from(Status::unimplemented("no such method"));
        assert_eq!(e, ApiError::internal("Unimplemented: no such method"));
        let e = ApiError::from(Status::already_exists("session s1"));
        assert_eq!(e, ApiError::failed_precondition("AlreadyExists: session s1"));
        let e = ApiError::from(Status::aborted("retry"));
        assert!(matches!(e, ApiError::Unavailable(_)));
        assert!(e.is_retryable());
        assert!(!ApiError::not_found("x").is_retryable());
    }

    #[test]
    fn tonic_timeout_becomes_deadline_exceeded() {
        let status = Status::cancelled(tonic::TimeoutExpired(()).to_string());
        assert!(matches!(ApiError::from(status), ApiError::DeadlineExceeded(_)));
        assert!(matches!(
            ApiError::from(Status::cancelled("user hung up")),
            ApiError::Cancelled(_)
        ));
    }

    #[test]
    fn display_names_the_kind() {
        assert_eq!(ApiError::not_found("NPC 'Bob'").to_string(), "not found: NPC 'Bob'");
    }
}
