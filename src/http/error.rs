//! The one place that maps domain errors to HTTP: status codes and the JSON error body
//! `{"error": {"code": "...", "message": "..."}}`. Internal details are logged, not returned.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::error::Error;

/// A domain error on its way out of an API handler.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What API clients read when the database cannot be reached (never its details).
pub const UNAVAILABLE_MESSAGE: &str =
    "the database is unavailable; retry shortly (the server log has the details)";
/// What API clients read for an internal error.
pub const INTERNAL_MESSAGE: &str = "internal error; the server log has the details";

/// Status and stable machine-readable code for a domain error.
pub fn classify(e: &Error) -> (StatusCode, &'static str) {
    match e {
        Error::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
        Error::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid"),
        Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
        Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        Error::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Error::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// The JSON error response for `status`/`code`/`message`.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    let mut b = HttpResponse::build(status);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        b.insert_header(("Retry-After", "5"));
    }
    if status == StatusCode::UNAUTHORIZED {
        b.insert_header(("WWW-Authenticate", "Bearer realm=\"ferroacs\""));
    }
    b.json(serde_json::json!({ "error": { "code": code, "message": message } }))
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        classify(&self.0).0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = classify(&self.0);
        let message = match &self.0 {
            e @ Error::Internal { .. } => {
                tracing::error!(error = %e.chain(), "internal error");
                INTERNAL_MESSAGE.to_string()
            }
            e @ Error::Unavailable { .. } => {
                tracing::warn!(error = %e.chain(), "database unavailable");
                UNAVAILABLE_MESSAGE.to_string()
            }
            other => other.to_string(),
        };
        json_error(status, code, &message)
    }
}
