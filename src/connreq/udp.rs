//! UDP connection requests through NAT (TR-111 Part 2, TR-069 Annex G).
//!
//! The CPE learns its public `host:port` with STUN and reports it in
//! `ManagementServer.UDPConnectionRequestAddress`. The ACS sends it one
//! datagram holding an HTTP-like request line:
//!
//! ```text
//! GET http://host:port?ts=<unix s>&id=<random>&un=<user>&cn=<cnonce>&sig=<hex> HTTP/1.1
//! Host: host:port
//! ```
//!
//! where `sig = hex(HMAC-SHA1(ConnectionRequestPassword, ts ‖ id ‖ un ‖ cn))`.
//! CPEs accept a message only if `ts` is newer and `id` differs from the
//! last accepted one. UDP is unreliable and the CPE never answers, so the
//! message is sent several times (three by default) and the ACS learns of
//! success only from the CPE's Inform.
//!
//! The datagrams should leave from the STUN server's own socket: the NAT
//! mapping was opened towards that address and port, and many NATs drop
//! datagrams from anywhere else. [`UdpConnReq`] therefore takes the socket
//! from its caller.
//!
//! The address is checked against the [`TargetPolicy`] like HTTP targets:
//! a device cannot make the ACS send datagrams to loopback, link-local or
//! the ACS's own ports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha1::Sha1;
use tokio::net::UdpSocket;

use super::policy::{resolve_checked, TargetPolicy};
use super::{ConnReqFuture, ConnReqOutcome, ConnReqTarget, ConnectionRequester};

/// Characters left as they are in query values: RFC 3986 unreserved.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The signature: 40 lower-case hex digits of
/// HMAC-SHA1(password, ts ‖ id ‖ username ‖ cnonce).
pub fn udp_signature(password: &str, ts: u64, id: &str, username: &str, cnonce: &str) -> String {
    // HMAC accepts keys of any length; the error branch cannot be reached
    // but is handled rather than unwrapped.
    let mut mac = match Hmac::<Sha1>::new_from_slice(password.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(ts.to_string().as_bytes());
    mac.update(id.as_bytes());
    mac.update(username.as_bytes());
    mac.update(cnonce.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Builds the datagram for `address` (`host:port` as reported by the CPE).
///
/// `username` is percent-encoded in the query if it holds characters outside
/// the RFC 3986 unreserved set; the signature covers the raw value.
pub fn udp_message(
    address: &str,
    username: &str,
    password: &str,
    ts: u64,
    id: &str,
    cnonce: &str,
) -> String {
    let sig = udp_signature(password, ts, id, username, cnonce);
    let enc = |v: &str| utf8_percent_encode(v, QUERY_VALUE).to_string();
    format!(
        "GET http://{address}?ts={ts}&id={}&un={}&cn={}&sig={sig} HTTP/1.1\r\nHost: {address}\r\n\r\n",
        enc(id),
        enc(username),
        enc(cnonce)
    )
}

/// Splits `host:port`, `host` or `[v6]:port` (port 80 when absent, the
/// HTTP default).
fn split_address(address: &str) -> Result<(String, u16), String> {
    let address = address.trim();
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!("unterminated IPv6 literal in '{address}'"));
        };
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("unexpected text after ']' in '{address}'")),
        }
    } else if address.matches(':').count() > 1 {
        return Err(format!(
            "IPv6 address '{address}' must be written as [address]:port"
        ));
    } else {
        match address.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        }
    };
    if host.is_empty() || host.contains(['/', '?', '#', ' ', '@']) {
        return Err(format!("'{address}' is not a host:port address"));
    }
    let port = match port {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return Err(format!("invalid port '{p}' in '{address}'")),
        },
    };
    Ok((host.to_string(), port))
}

/// A source of "now" in UTC milliseconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Sends TR-111 UDP connection requests from a shared socket.
#[derive(Clone)]
pub struct UdpConnReq {
    socket: Arc<UdpSocket>,
    copies: usize,
    gap: Duration,
    policy: Arc<TargetPolicy>,
    /// The message's `ts` (Unix seconds) comes from here.
    clock: Clock,
}

impl std::fmt::Debug for UdpConnReq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpConnReq")
            .field("socket", &self.socket)
            .field("copies", &self.copies)
            .field("gap", &self.gap)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl UdpConnReq {
    /// Sends from `socket` (normally the STUN server's), 3 copies 100 ms
    /// apart, to addresses the default [`TargetPolicy`] allows.
    pub fn new(socket: Arc<UdpSocket>) -> Self {
        Self {
            socket,
            copies: 3,
            gap: Duration::from_millis(100),
            policy: Arc::new(TargetPolicy::default()),
            clock: Arc::new(|| chrono::Utc::now().timestamp_millis()),
        }
    }

    /// Takes the message's timestamp from `clock` (the server's injected clock) instead of
    /// the wall clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Uses `policy` to decide which addresses may be sent to.
    #[must_use]
    pub fn with_policy(mut self, policy: Arc<TargetPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// Changes how many copies are sent (at least 1) and the pause between
    /// them.
    #[must_use]
    pub fn with_copies(mut self, copies: usize, gap: Duration) -> Self {
        self.copies = copies.max(1);
        self.gap = gap;
        self
    }

    /// Sends the request for `target.url` = `UDPConnectionRequestAddress`.
    /// [`ConnReqOutcome::Ok`] means the datagrams were sent, not received.
    pub async fn request(&self, target: &ConnReqTarget) -> ConnReqOutcome {
        let (host, port) = match split_address(&target.url) {
            Ok(hp) => hp,
            Err(why) => return ConnReqOutcome::BadUrl(why),
        };
        let addrs = match resolve_checked(&self.policy, &host, port).await {
            Ok(addrs) => addrs,
            Err(Ok(refusal)) => return ConnReqOutcome::RefusedByPolicy(refusal.to_string()),
            Err(Err(why)) => return ConnReqOutcome::Unreachable(why),
        };
        let dest = prefer_family(&addrs, self.socket.local_addr().ok());
        let ts = u64::try_from((self.clock)() / 1000).unwrap_or(0);
        let id = random_hex(8);
        let cnonce = random_hex(8);
        let message = udp_message(
            target.url.trim(),
            &target.username,
            &target.password,
            ts,
            &id,
            &cnonce,
        );
        for i in 0..self.copies {
            if i > 0 {
                tokio::time::sleep(self.gap).await;
            }
            if let Err(e) = self.socket.send_to(message.as_bytes(), dest).await {
                return ConnReqOutcome::Unreachable(format!("cannot send: {e}"));
            }
        }
        tracing::debug!(%dest, copies = self.copies, "UDP connection request sent");
        ConnReqOutcome::Ok
    }
}

impl ConnectionRequester for UdpConnReq {
    fn send<'a>(&'a self, target: &'a ConnReqTarget) -> ConnReqFuture<'a> {
        Box::pin(self.request(target))
    }
}

/// The first address of the socket's family, else the first one (`addrs` is never empty).
fn prefer_family(addrs: &[SocketAddr], local: Option<SocketAddr>) -> SocketAddr {
    addrs
        .iter()
        .find(|a| local.is_none_or(|l| l.is_ipv4() == a.is_ipv4()))
        .or(addrs.first())
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_reference() {
        // Reference from `printf '1700000000abcdefuserc1' | openssl dgst -sha1 -hmac pw`.
        assert_eq!(
            udp_signature("pw", 1_700_000_000, "abcdef", "user", "c1"),
            "d61166177c66698d26237519f9560b650d985330"
        );
        assert_ne!(
            udp_signature("pw2", 1_700_000_000, "abcdef", "user", "c1"),
            "d61166177c66698d26237519f9560b650d985330"
        );
    }

    #[test]
    fn message_layout() {
        let m = udp_message(
            "198.51.100.7:40001",
            "user name&x",
            "pw",
            1_700_000_000,
            "id1",
            "cn1",
        );
        let sig = udp_signature("pw", 1_700_000_000, "id1", "user name&x", "cn1");
        assert_eq!(
            m,
            format!(
                "GET http://198.51.100.7:40001?ts=1700000000&id=id1&un=user%20name%26x&cn=cn1&sig={sig} HTTP/1.1\r\n\
                 Host: 198.51.100.7:40001\r\n\r\n"
            )
        );
    }

    #[test]
    fn address_forms() {
        assert_eq!(
            split_address("198.51.100.7:40001").unwrap(),
            ("198.51.100.7".into(), 40001)
        );
        assert_eq!(
            split_address("cpe.example").unwrap(),
            ("cpe.example".into(), 80)
        );
        assert_eq!(
            split_address("[2001:db8::5]:7").unwrap(),
            ("2001:db8::5".into(), 7)
        );
        for bad in ["", "2001:db8::5", "host:0", "host:x", "[::1", "http://h:1/"] {
            assert!(split_address(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn sends_three_signed_copies() {
        let cpe = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let cpe_addr = cpe.local_addr().unwrap();
        let acs = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let acs_addr = acs.local_addr().unwrap();
        let sender = UdpConnReq::new(acs)
            .with_clock(Arc::new(|| 1_700_000_123_456))
            .with_copies(3, Duration::from_millis(5))
            .with_policy(Arc::new(
                TargetPolicy::new("127.0.0.1", super::super::policy::DEFAULT_DENY).unwrap(),
            ));
        let target = ConnReqTarget {
            url: cpe_addr.to_string(),
            username: "cr-user".into(),
            password: "cr-pass".into(),
        };
        assert_eq!(sender.request(&target).await, ConnReqOutcome::Ok);

        let mut seen = Vec::new();
        for _ in 0..3 {
            let mut buf = [0u8; 1024];
            let (n, from) = tokio::time::timeout(Duration::from_secs(2), cpe.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            // Sent from the given socket, as NAT traversal requires.
            assert_eq!(from, acs_addr);
            seen.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        assert!(seen.iter().all(|m| m == &seen[0]));

        // Verify like a CPE: split the query and recompute the signature.
        let line = seen[0].lines().next().unwrap();
        let url = line
            .strip_prefix("GET ")
            .and_then(|l| l.strip_suffix(" HTTP/1.1"))
            .unwrap();
        assert!(url.starts_with(&format!("http://{cpe_addr}?")));
        let query = url.split_once('?').unwrap().1;
        let field = |k: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap()
                .to_string()
        };
        let ts: u64 = field("ts").parse().unwrap();
        // The timestamp is the injected clock's, in seconds.
        assert_eq!(ts, 1_700_000_123);
        assert_eq!(field("un"), "cr-user");
        assert_ne!(field("id"), field("cn"));
        assert_eq!(
            field("sig"),
            udp_signature("cr-pass", ts, &field("id"), "cr-user", &field("cn"))
        );
        assert!(seen[0].contains(&format!("\r\nHost: {cpe_addr}\r\n\r\n")));
    }

    #[tokio::test]
    async fn refused_addresses_get_no_datagram() {
        let victim = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = victim.local_addr().unwrap().port();
        let acs = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let own = acs.local_addr().unwrap();
        let sender = UdpConnReq::new(acs.clone()).with_copies(1, Duration::ZERO);
        for url in [
            format!("127.0.0.1:{port}"),
            format!("2130706433:{port}"),
            format!("[::1]:{port}"),
            format!("[::ffff:127.0.0.1]:{port}"),
            format!("0.0.0.0:{port}"),
            format!("localhost:{port}"),
            "169.254.169.254:80".to_string(),
        ] {
            let t = ConnReqTarget {
                url: url.clone(),
                username: "u".into(),
                password: "p".into(),
            };
            let outcome = sender.request(&t).await;
            assert_eq!(outcome.code(), "refused_by_policy", "{url}: {outcome:?}");
        }
        // The ACS's own port, even with loopback allowed.
        let policy = TargetPolicy::new("127.0.0.0/8", "")
            .unwrap()
            .with_own_listeners(&[own]);
        let t = ConnReqTarget {
            url: own.to_string(),
            username: "u".into(),
            password: "p".into(),
        };
        let outcome = UdpConnReq::new(acs)
            .with_policy(Arc::new(policy))
            .request(&t)
            .await;
        assert_eq!(outcome.code(), "refused_by_policy");
        let mut buf = [0u8; 64];
        assert!(
            victim.try_recv_from(&mut buf).is_err(),
            "a datagram was sent"
        );
    }

    #[tokio::test]
    async fn bad_address_is_reported() {
        let acs = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let target = ConnReqTarget {
            url: "not an address:port".into(),
            username: "u".into(),
            password: "p".into(),
        };
        assert!(matches!(
            UdpConnReq::new(acs).request(&target).await,
            ConnReqOutcome::BadUrl(_)
        ));
    }
}
