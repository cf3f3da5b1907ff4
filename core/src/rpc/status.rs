//! The typed status an RPC error carries back to its caller, as an rkyv archive in the body of
//! an error frame.

use std::fmt;

/// Why a call failed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[repr(u8)]
#[non_exhaustive]
pub enum StatusCode {
    /// No service handles the method (unknown, or removed).
    NotFound = 1,
    /// The request's archive did not validate as the method's message.
    InvalidPayload = 2,
    /// The deadline passed before the reply.
    DeadlineExceeded = 3,
    /// The caller cancelled the call.
    Cancelled = 4,
    /// The request carried a timestamp beyond the clock's drift bound; the clock did not move.
    ClockSkew = 5,
    /// The callee cannot serve now (shutting down, too many calls in flight).
    Unavailable = 6,
    /// The handler failed.
    Internal = 7,
}

impl StatusCode {
    /// The code's name in lower case, for logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not found",
            Self::InvalidPayload => "invalid payload",
            Self::DeadlineExceeded => "deadline exceeded",
            Self::Cancelled => "cancelled",
            Self::ClockSkew => "clock skew",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

/// A failed call's status: a code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Status {
    /// What kind of failure.
    pub code: StatusCode,
    /// Details (may be empty).
    pub message: String,
}

impl Status {
    /// A status with `code` and `message`.
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(self.code.as_str())
        } else {
            write!(f, "{}: {}", self.code.as_str(), self.message)
        }
    }
}

impl std::error::Error for Status {}
