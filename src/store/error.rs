//! Database errors classified by kind (diesel's `DatabaseErrorKind`, connection and pool
//! errors), never by message text. The diesel error stays attached as the source, for the
//! log; what reaches API clients is decided by `http::error` from the kind alone.

use diesel::result::{DatabaseErrorKind, Error as D};

use crate::error::Error;

/// What a database error means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The row asked for does not exist.
    NotFound,
    /// A unique key is taken.
    Duplicate,
    /// A reference to a row that does not exist.
    MissingReference,
    /// The connection is gone or the server refuses work now; retrying later may work.
    Unavailable,
    /// Anything else: a bug or an unexpected state.
    Other,
}

/// The kind of a diesel error.
pub fn kind(e: &D) -> Kind {
    match e {
        D::NotFound => Kind::NotFound,
        D::DatabaseError(k, _) => match k {
            DatabaseErrorKind::UniqueViolation => Kind::Duplicate,
            DatabaseErrorKind::ForeignKeyViolation => Kind::MissingReference,
            DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand
            | DatabaseErrorKind::SerializationFailure
            | DatabaseErrorKind::ReadOnlyTransaction => Kind::Unavailable,
            _ => Kind::Other,
        },
        D::BrokenTransactionManager => Kind::Unavailable,
        _ => Kind::Other,
    }
}

impl From<D> for Error {
    fn from(e: D) -> Self {
        match kind(&e) {
            Kind::NotFound => Error::not_found("record"),
            Kind::Duplicate => Error::Conflict("already exists".into()),
            Kind::MissingReference => {
                Error::Conflict("refers to something that does not exist".into())
            }
            Kind::Unavailable => {
                Error::unavailable("the database connection failed", Some(e.into()))
            }
            Kind::Other => Error::internal_from("database error", e),
        }
    }
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Error::unavailable("no database connection could be opened", Some(e.into()))
    }
}

impl From<diesel::ConnectionError> for Error {
    fn from(e: diesel::ConnectionError) -> Self {
        Error::unavailable("cannot connect to the database", Some(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_kind_and_keep_their_source() {
        let unique = D::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new("UNIQUE constraint failed: users.username".to_string()),
        );
        let e = Error::from(unique);
        assert!(
            matches!(e, Error::Conflict(ref m) if m == "already exists"),
            "{e}"
        );
        let closed = D::DatabaseError(
            DatabaseErrorKind::ClosedConnection,
            Box::new("server closed the connection unexpectedly".to_string()),
        );
        let e = Error::from(closed);
        assert!(matches!(e, Error::Unavailable { .. }), "{e}");
        assert!(
            e.chain().contains("server closed the connection"),
            "{}",
            e.chain()
        );
        // The text alone decides nothing: an unknown error mentioning "connection" is internal.
        let odd = D::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("connection terminating: database is locked".to_string()),
        );
        assert!(matches!(Error::from(odd), Error::Internal { .. }));
        assert!(matches!(Error::from(D::NotFound), Error::NotFound { .. }));
    }
}
