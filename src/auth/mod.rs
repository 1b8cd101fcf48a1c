//! Authentication primitives, free of I/O and of any web framework.
//!
//! * [`digest`]: server-side HTTP Digest (RFC 2617 / RFC 7616, MD5 and
//!   MD5-sess, `qop="auth"`) and Basic checks for CPEs, with stateless nonces
//!   that every ferroacs node sharing the secret can validate.
//! * [`header`]: the RFC 7235 challenge/credentials grammar shared by the
//!   server side and by outbound connection requests.
//! * [`ratelimit`]: a failed-login limiter per source and per username, with bounded memory.
//! * [`password`]: operator password hashing (argon2id) and API tokens.
//!
//! Credentials for CPEs are stored only as HA1 = MD5(username:realm:password),
//! so both Digest and Basic are checked against HA1 and the plain password
//! never needs to be kept.
//!
//! Nothing here reads a clock or locks: callers pass `now_ms` (milliseconds
//! since the Unix epoch) and wrap the mutable state in their own mutex.

pub mod digest;
pub mod header;
pub mod password;
pub mod ratelimit;

pub use digest::{
    ha1, parse_authorization, verify, verify_basic, Authorization, DigestAlgorithm, DigestResponse,
    NonceCounts, NonceIssuer,
};
pub use password::{
    constant_time_eq, generate_token, hash_password, hash_token, verify_password, verify_token,
};
pub use ratelimit::{FailureLimiter, FailureLimiterConfig, Gate};

/// Why a request could not be authenticated.
///
/// [`AuthError::Stale`] is the only variant after which the client should
/// simply retry: answer it with a fresh challenge carrying `stale=true`.
/// Every other variant is a failed attempt and should be counted by the
/// [`FailureLimiter`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The header does not follow the RFC 7235 grammar.
    #[error("malformed authentication header: {0}")]
    Malformed(String),
    /// A scheme other than Digest or Basic was used.
    #[error("unsupported authentication scheme '{0}'; use Digest or Basic")]
    UnsupportedScheme(String),
    /// A mandatory Digest parameter is absent.
    #[error("the Digest credentials lack the '{0}' parameter")]
    MissingParameter(&'static str),
    /// A Digest parameter was sent more than once.
    #[error("the Digest parameter '{0}' appears more than once")]
    DuplicateParameter(String),
    /// A Digest algorithm other than MD5 or MD5-sess was requested.
    #[error("unsupported Digest algorithm '{0}'; MD5 and MD5-sess are supported")]
    UnsupportedAlgorithm(String),
    /// A quality of protection other than `auth` was used.
    #[error("unsupported Digest qop '{0}'; only qop=auth is supported")]
    UnsupportedQop(String),
    /// The client sent RFC 2069 style Digest (no qop) and that is disabled.
    #[error("Digest without qop (RFC 2069) is disabled; the client must use qop=auth, or enable legacy Digest for such devices")]
    QopRequired,
    /// The nonce count is not 1 to 8 hexadecimal digits, or is zero.
    #[error("invalid Digest nonce count '{0}'")]
    InvalidNonceCount(String),
    /// The Basic credentials are not base64 of `user:password`.
    #[error("invalid Basic credentials: {0}")]
    InvalidBasic(String),
    /// The nonce was not issued by a node holding our secret, or was altered.
    #[error("the Digest nonce was not issued by this server or has been altered")]
    InvalidNonce,
    /// The nonce was valid but has expired (or was forgotten); re-challenge
    /// with `stale=true` and the client retries without asking the user.
    #[error("the Digest nonce has expired; the client should retry with the new nonce")]
    Stale,
    /// The credentials name another realm.
    #[error("the credentials are for realm '{got}', expected '{expected}'")]
    RealmMismatch {
        /// Realm we challenged with.
        expected: String,
        /// Realm the client used.
        got: String,
    },
    /// The Digest `uri` does not name the requested resource.
    #[error("the Digest uri '{digest_uri}' does not match the request URI '{request_uri}'")]
    UriMismatch {
        /// `uri` parameter from the credentials.
        digest_uri: String,
        /// Request target from the request line.
        request_uri: String,
    },
    /// The nonce count did not increase: the request is a replay.
    #[error("the Digest nonce count was already used with this nonce (replayed request)")]
    Replay,
    /// Wrong username or password.
    #[error("wrong username or password")]
    BadCredentials,
    /// The stored HA1 is not 32 hexadecimal digits.
    #[error(
        "the stored HA1 for this device is not a 32-digit hex MD5; reset the device's credentials"
    )]
    InvalidStoredHa1,
    /// Hashing an operator password failed.
    #[error("password hashing failed: {0}")]
    PasswordHashing(String),
    /// A stored operator password hash cannot be parsed.
    #[error(
        "the stored password hash is not a valid PHC string ({0}); reset the operator's password"
    )]
    InvalidPasswordHash(String),
}
