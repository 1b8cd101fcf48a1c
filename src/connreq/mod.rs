//! Outbound connection requests: asking a CPE to open a CWMP session now.
//!
//! The rest of the application talks to the [`ConnectionRequester`] trait
//! and gets a [`ConnReqOutcome`] back, so transports can be swapped or
//! combined per device:
//!
//! * [`http::HttpConnReq`]: the TR-069 HTTP GET to `ConnectionRequestURL`,
//!   authenticated with Digest (or Basic when allowed).
//! * [`udp::UdpConnReq`]: the TR-111 (Annex G) UDP message sent to
//!   `UDPConnectionRequestAddress` for CPEs behind NAT. It is fire and
//!   forget: success only means the datagrams left.
//!
//! A successful request only means the CPE agreed to call back; whether it
//! did shows up as an Inform with event `6 CONNECTION REQUEST`.
//!
//! Passwords never appear in logs or in `Debug` output.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub mod http;
pub mod udp;

pub use http::HttpConnReq;
pub use udp::UdpConnReq;

/// Where and how to reach one CPE.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnReqTarget {
    /// `ConnectionRequestURL` for HTTP; `UDPConnectionRequestAddress`
    /// (`host:port`) for UDP.
    pub url: String,
    /// `ConnectionRequestUsername`.
    pub username: String,
    /// `ConnectionRequestPassword`.
    pub password: String,
}

impl fmt::Debug for ConnReqTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnReqTarget")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How a connection request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnReqOutcome {
    /// The CPE accepted (HTTP 200/204), or the UDP datagrams were sent.
    Ok,
    /// The CPE rejected the credentials.
    AuthFailed,
    /// The CPE could not be reached: connection refused or reset, DNS
    /// failure, no route, or the connection was closed without an answer.
    Unreachable(String),
    /// No answer before the deadline.
    Timeout,
    /// The CPE answered 503: it is rate-limiting connection requests.
    Refused503,
    /// The URL cannot be used.
    BadUrl(String),
    /// Anything else: unexpected status, invalid HTTP, TLS failure, no
    /// usable authentication scheme.
    Error(String),
}

impl ConnReqOutcome {
    /// True for [`ConnReqOutcome::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok)
    }
}

impl fmt::Display for ConnReqOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("connection request accepted"),
            Self::AuthFailed => f.write_str(
                "the device rejected the connection request credentials; check \
                 ConnectionRequestUsername/ConnectionRequestPassword",
            ),
            Self::Unreachable(why) => write!(f, "device is unreachable: {why}"),
            Self::Timeout => f.write_str("the device did not answer the connection request in time"),
            Self::Refused503 => f.write_str(
                "the device refused the connection request with 503 (rate limited); try again later",
            ),
            Self::BadUrl(why) => write!(f, "unusable connection request URL: {why}"),
            Self::Error(why) => write!(f, "connection request failed: {why}"),
        }
    }
}

/// The future returned by [`ConnectionRequester::send`].
pub type ConnReqFuture<'a> = Pin<Box<dyn Future<Output = ConnReqOutcome> + Send + 'a>>;

/// A way of sending connection requests. Object safe, so the application can
/// hold an `Arc<dyn ConnectionRequester>` and tests can substitute a fake.
pub trait ConnectionRequester: Send + Sync {
    /// Sends one connection request. Implementations enforce their own
    /// deadline and never panic on bad input.
    fn send<'a>(&'a self, target: &'a ConnReqTarget) -> ConnReqFuture<'a>;
}

/// Connection requests sent, by outcome (for /metrics). Senders call [`ConnReqCounters::record`].
#[derive(Debug, Default)]
pub struct ConnReqCounters {
    ok: std::sync::atomic::AtomicU64,
    auth_failed: std::sync::atomic::AtomicU64,
    unreachable: std::sync::atomic::AtomicU64,
    timeout: std::sync::atomic::AtomicU64,
    refused_503: std::sync::atomic::AtomicU64,
    bad_url: std::sync::atomic::AtomicU64,
    error: std::sync::atomic::AtomicU64,
}

impl ConnReqCounters {
    /// Counts one finished connection request.
    pub fn record(&self, outcome: &ConnReqOutcome) {
        let c = match outcome {
            ConnReqOutcome::Ok => &self.ok,
            ConnReqOutcome::AuthFailed => &self.auth_failed,
            ConnReqOutcome::Unreachable(_) => &self.unreachable,
            ConnReqOutcome::Timeout => &self.timeout,
            ConnReqOutcome::Refused503 => &self.refused_503,
            ConnReqOutcome::BadUrl(_) => &self.bad_url,
            ConnReqOutcome::Error(_) => &self.error,
        };
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// `(outcome label, count)` for every outcome, zeros included.
    pub fn snapshot(&self) -> [(&'static str, u64); 7] {
        let g = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        [
            ("ok", g(&self.ok)),
            ("auth_failed", g(&self.auth_failed)),
            ("unreachable", g(&self.unreachable)),
            ("timeout", g(&self.timeout)),
            ("refused_503", g(&self.refused_503)),
            ("bad_url", g(&self.bad_url)),
            ("error", g(&self.error)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let t = ConnReqTarget {
            url: "http://192.0.2.1:7547/x".into(),
            username: "acs".into(),
            password: "hunter2".into(),
        };
        let shown = format!("{t:?}");
        assert!(shown.contains("acs") && shown.contains("7547"));
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn outcomes_display_distinctly() {
        let all = [
            ConnReqOutcome::Ok,
            ConnReqOutcome::AuthFailed,
            ConnReqOutcome::Unreachable("refused".into()),
            ConnReqOutcome::Timeout,
            ConnReqOutcome::Refused503,
            ConnReqOutcome::BadUrl("no scheme".into()),
            ConnReqOutcome::Error("status 500".into()),
        ];
        let texts: Vec<String> = all.iter().map(ToString::to_string).collect();
        for (i, a) in texts.iter().enumerate() {
            for b in &texts[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(texts[2].contains("refused"));
        assert!(all[0].is_ok() && !all[1].is_ok());
    }
}
