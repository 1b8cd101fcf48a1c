//! The domain error type.
//!
//! Error policy: every fallible operation below the HTTP layer returns [`Error`]. Variants say
//! what went wrong in terms an operator or API client can act on; they know nothing of HTTP
//! status codes or SOAP faults. `src/http/error.rs` is the one place that maps them to status
//! codes and JSON bodies. `anyhow` is used only at the edges (CLI commands, start-up).
//! Database errors are classified by kind where they arise, in `store::error`.

use std::fmt;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing asked for does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// Input failed validation; `field` names the offending input.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The request conflicts with the current state (duplicate name, device busy, ...).
    #[error("{0}")]
    Conflict(String),
    /// Missing or wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but the role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The database (or another dependency) cannot be reached right now; retrying later may
    /// work. `message` and `source` are for the log, never for API clients.
    #[error("database unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Source>,
    },
    /// A bug or an unexpected state; details are logged, not shown to clients.
    #[error("internal error: {message}")]
    Internal {
        message: String,
        #[source]
        source: Option<Source>,
    },
}

/// The underlying error of an [`Error::Unavailable`] or [`Error::Internal`].
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

impl Error {
    pub fn not_found(what: impl fmt::Display) -> Self {
        Error::NotFound {
            what: what.to_string(),
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn internal(e: impl fmt::Display) -> Self {
        Error::Internal {
            message: e.to_string(),
            source: None,
        }
    }

    /// An internal error caused by `source`.
    pub fn internal_from(message: impl Into<String>, source: impl Into<Source>) -> Self {
        Error::Internal {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A dependency (the database) that cannot be reached now.
    pub fn unavailable(message: impl Into<String>, source: Option<Source>) -> Self {
        Error::Unavailable {
            message: message.into(),
            source,
        }
    }

    /// The message followed by every source in the chain, for the log.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cur = std::error::Error::source(self);
        while let Some(e) = cur {
            out.push_str(": ");
            out.push_str(&e.to_string());
            cur = e.source();
        }
        out
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::internal_from("JSON", e)
    }
}
