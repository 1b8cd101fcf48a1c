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
//! * [`xmpp::XmppClient`]: the TR-069 Annex K `connectionRequest` IQ sent to the device's
//!   ConnReqJabberID over ferroacs's own XMPP connection; the device (or its server)
//!   answers.
//!
//! [`webhook::WebhookSender`] is the other request ferroacs makes on its own: a JSON POST to
//! an operator-configured URL (campaign state changes), under the same [`TargetPolicy`].
//!
//! A successful request only means the CPE agreed to call back; whether it
//! did shows up as an Inform with event `6 CONNECTION REQUEST`.
//!
//! Passwords never appear in logs or in `Debug` output.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub mod http;
pub mod policy;
pub mod udp;
pub mod webhook;
pub mod xmpp;

pub use http::HttpConnReq;
pub use policy::TargetPolicy;
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
///
/// What operators see ([`ConnReqOutcome::code`] and the `Display` text) is a fixed
/// vocabulary: nothing the target sent (reason phrases, banners, malformed status lines)
/// ever reaches it, and a refused connection looks the same as a silent port
/// (`unreachable`), so the outcome cannot be used to scan ports. The `String`s carry
/// ferroacs's own wording for debug logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnReqOutcome {
    /// The CPE accepted (HTTP 200/204), or the UDP datagrams were sent.
    Ok,
    /// The CPE rejected the credentials.
    AuthFailed,
    /// The CPE offers only an authentication scheme ferroacs may not use (Basic when it is
    /// disabled) or a challenge it cannot answer.
    AuthUnsupported,
    /// No answer: connection refused or reset, DNS failure, no route, TLS failure, closed
    /// without an answer, or no answer before the deadline.
    Unreachable(String),
    /// The CPE answered 503: it is rate-limiting connection requests.
    Busy,
    /// XMPP: the device is not online at its XMPP server (or refuses requests for now).
    ServiceUnavailable,
    /// The target resolves to an address the connection-request policy refuses.
    RefusedByPolicy(String),
    /// The URL cannot be used.
    BadUrl(String),
    /// The answer was not a usable HTTP answer (invalid HTTP, a redirect, another status).
    BadResponse(String),
}

impl ConnReqOutcome {
    /// True for [`ConnReqOutcome::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok)
    }

    /// The outcome as a fixed code: `ok`, `auth_failed`, `auth_unsupported`, `unreachable`,
    /// `busy`, `service_unavailable`, `refused_by_policy`, `bad_url` or `bad_response`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::AuthFailed => "auth_failed",
            Self::AuthUnsupported => "auth_unsupported",
            Self::Unreachable(_) => "unreachable",
            Self::Busy => "busy",
            Self::ServiceUnavailable => "service_unavailable",
            Self::RefusedByPolicy(_) => "refused_by_policy",
            Self::BadUrl(_) => "bad_url",
            Self::BadResponse(_) => "bad_response",
        }
    }

    /// ferroacs's own explanation, for debug logs only.
    pub fn detail(&self) -> &str {
        match self {
            Self::Unreachable(d)
            | Self::RefusedByPolicy(d)
            | Self::BadUrl(d)
            | Self::BadResponse(d) => d,
            _ => "",
        }
    }
}

impl fmt::Display for ConnReqOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "connection request accepted",
            Self::AuthFailed => {
                "the device rejected the connection request credentials; check \
                 ConnectionRequestUsername/ConnectionRequestPassword"
            }
            Self::AuthUnsupported => {
                "the device offers no authentication ferroacs may use for connection requests \
                 (Basic only answers when api.connection_request_allow_basic is on)"
            }
            Self::Unreachable(_) => {
                "the device did not answer the connection request (offline, filtered or \
                 behind NAT); it will run the task at its next session"
            }
            Self::Busy => {
                "the device refused the connection request with 503 (rate limited); try again later"
            }
            Self::ServiceUnavailable => {
                "the device's XMPP server answered service-unavailable: the device is not \
                 connected to it (or refuses requests for now)"
            }
            Self::RefusedByPolicy(_) => {
                "the device's connection request address is refused by the connection request \
                 policy (api.connection_request_allow_networks / deny_networks)"
            }
            Self::BadUrl(_) => "the device reported a ConnectionRequestURL that cannot be used",
            Self::BadResponse(_) => {
                "the device's answer to the connection request was not a valid HTTP answer"
            }
        })
    }
}

/// A way of reaching a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP GET to ConnectionRequestURL (TR-069 3.2.2).
    Http,
    /// TR-111 UDP datagram to the device's STUN binding or UDPConnectionRequestAddress.
    Udp,
    /// TR-069 Annex K: a `connectionRequest` IQ to the device's ConnReqJabberID.
    Xmpp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Udp => "udp",
            Self::Xmpp => "xmpp",
        }
    }
}

/// Parse `api.connection_request_transports`: a comma-separated order of `xmpp`, `udp` and
/// `http`, each at most once.
pub fn parse_transports(s: &str) -> std::result::Result<Vec<Transport>, String> {
    let mut out = Vec::new();
    for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let t = match t {
            "http" => Transport::Http,
            "udp" => Transport::Udp,
            "xmpp" => Transport::Xmpp,
            other => {
                return Err(format!(
                    "unknown transport `{other}` (known: xmpp, udp, http)"
                ))
            }
        };
        if out.contains(&t) {
            return Err(format!("`{}` is listed twice", t.as_str()));
        }
        out.push(t);
    }
    if out.is_empty() {
        return Err("name at least one transport (xmpp, udp, http)".into());
    }
    Ok(out)
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
    counts: [std::sync::atomic::AtomicU64; OUTCOME_CODES.len()],
}

/// Every [`ConnReqOutcome::code`], in the order /metrics lists them.
pub const OUTCOME_CODES: [&str; 9] = [
    "ok",
    "auth_failed",
    "auth_unsupported",
    "unreachable",
    "busy",
    "service_unavailable",
    "refused_by_policy",
    "bad_url",
    "bad_response",
];

impl ConnReqCounters {
    /// Counts one finished connection request.
    pub fn record(&self, outcome: &ConnReqOutcome) {
        if let Some(i) = OUTCOME_CODES.iter().position(|c| *c == outcome.code()) {
            self.counts[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// `(outcome code, count)` for every outcome, zeros included.
    pub fn snapshot(&self) -> [(&'static str, u64); OUTCOME_CODES.len()] {
        std::array::from_fn(|i| {
            (
                OUTCOME_CODES[i],
                self.counts[i].load(std::sync::atomic::Ordering::Relaxed),
            )
        })
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
    fn outcomes_show_fixed_text_only() {
        let all = [
            ConnReqOutcome::Ok,
            ConnReqOutcome::AuthFailed,
            ConnReqOutcome::AuthUnsupported,
            ConnReqOutcome::Unreachable("SSH-2.0-OpenSSH_9.6".into()),
            ConnReqOutcome::Busy,
            ConnReqOutcome::ServiceUnavailable,
            ConnReqOutcome::RefusedByPolicy("127.0.0.1:22".into()),
            ConnReqOutcome::BadUrl("root:x:0:0".into()),
            ConnReqOutcome::BadResponse("root:x:0:0".into()),
        ];
        let texts: Vec<String> = all.iter().map(ToString::to_string).collect();
        for (i, a) in texts.iter().enumerate() {
            assert!(
                !a.contains("SSH") && !a.contains("root:") && !a.contains("127."),
                "{a}"
            );
            for b in &texts[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let codes: Vec<&str> = all.iter().map(ConnReqOutcome::code).collect();
        assert_eq!(codes, OUTCOME_CODES);
        assert!(all[0].is_ok() && !all[1].is_ok());
        let c = ConnReqCounters::default();
        c.record(&all[6]);
        assert_eq!(c.snapshot()[6], ("refused_by_policy", 1));
    }
}
