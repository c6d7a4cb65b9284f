//! Application errors: deterministic outcomes of applying a command (they are part of the
//! replicated result, so they are serializable) and their mapping to gRPC status codes.

use serde::{Deserialize, Serialize};

/// Error classes, mapped one-to-one onto gRPC codes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed input.
    Invalid,
    /// Unknown domain, user, mailbox, message, entry.
    NotFound,
    /// Duplicate.
    AlreadyExists,
    /// Quota or size limit.
    ResourceExhausted,
    /// A precondition did not hold (lease lost, mailbox has children, ...).
    FailedPrecondition,
    /// No quorum, no leader: try again.
    Unavailable,
    /// A bug or storage failure.
    Internal,
}

/// An error with its class and a message for the operator or client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    /// Class.
    pub kind: ErrorKind,
    /// Human-readable text.
    pub message: String,
}

impl AppError {
    /// Constructs an error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    /// Malformed input.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    /// Not found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// Duplicate.
    pub fn exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, message)
    }
    /// Precondition failed.
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::FailedPrecondition, message)
    }
    /// Retry later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// Internal failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl From<AppError> for tonic::Status {
    fn from(e: AppError) -> Self {
        use tonic::Code;
        let code = match e.kind {
            ErrorKind::Invalid => Code::InvalidArgument,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::ResourceExhausted => Code::ResourceExhausted,
            ErrorKind::FailedPrecondition => Code::FailedPrecondition,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Internal => Code::Internal,
        };
        tonic::Status::new(code, e.message)
    }
}

impl From<rocksdb::Error> for AppError {
    fn from(e: rocksdb::Error) -> Self {
        AppError::internal(format!("rocksdb: {e}"))
    }
}

impl From<bincode::Error> for AppError {
    fn from(e: bincode::Error) -> Self {
        AppError::internal(format!("decoding a stored record: {e}"))
    }
}

/// Result alias for application operations.
pub type AppResult<T> = Result<T, AppError>;
