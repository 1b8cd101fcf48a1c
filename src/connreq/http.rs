//! HTTP connection requests (TR-069 §3.2.2): a GET to `ConnectionRequestURL`.
//!
//! HTTP/1.1 through hyper's client connection API (`hyper::client::conn::http1`)
//! over a tokio `TcpStream`, optionally wrapped in TLS (rustls, ring provider).
//! Connecting, TLS and the decisions stay here, because devices need exact
//! control over the exchange; hyper writes the request and reads the response
//! (status line, headers, Content-Length or chunked bodies), configured to
//! accept what embedded HTTP servers send (obsolete folded header lines,
//! malformed header lines ignored). No redirects are followed.
//!
//! 1. `GET` without credentials.
//! 2. On `401`, answer the `WWW-Authenticate` challenge: Digest (preferred,
//!    `qop=auth` when offered, computed with the `digest_auth` crate) or
//!    Basic when [`HttpConnReq::allow_basic`] is set. The answer goes on the
//!    same connection unless the device asked to close it, sent a body we
//!    cannot delimit, or reset it, in which case we reconnect (at most twice
//!    in all).
//! 3. `2xx` is success, `503` is rate limiting, a second `401` is a credential
//!    failure. A device that binds its nonce to the connection gets one more
//!    answer after a reconnect, and one more for `stale=true`.
//!
//! The whole exchange, DNS and TLS included, runs under one deadline.
//! Response heads are capped at 16 KiB and 100 headers; bodies are only read
//! (up to 1 MiB) when needed to reuse the connection, and never stored.
//! Nothing the target sends (reason phrase, headers, body) reaches the outcome.
//!
//! Before anything is sent, the host is resolved once and every address is
//! checked against the [`TargetPolicy`] (server-side request forgery guard);
//! connections only go to those checked addresses, so a name cannot resolve
//! differently between the check and the connection.

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use digest_auth::{AuthContext, HttpMethod, Qop, WwwAuthenticateHeader};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONNECTION, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::policy::{resolve_checked, TargetPolicy};
use super::{ConnReqFuture, ConnReqOutcome, ConnReqTarget, ConnectionRequester};
use crate::auth::header::{parse_challenges, Challenge};

/// The timeout GenieACS uses by default (`cwmp.connectionRequestTimeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2000);

const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_RECONNECTS: u32 = 2;

/// Sends HTTP(S) connection requests.
#[derive(Clone)]
pub struct HttpConnReq {
    /// Deadline for the whole exchange (connect, TLS, every request).
    pub timeout: Duration,
    /// Answer `Basic` challenges. Off by default in TR-069 practice: Basic
    /// sends the password in clear over plain HTTP.
    pub allow_basic: bool,
    /// TLS settings for `https` URLs.
    pub tls_config: Arc<rustls::ClientConfig>,
    /// Which addresses may be contacted.
    pub policy: Arc<TargetPolicy>,
}

impl std::fmt::Debug for HttpConnReq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConnReq")
            .field("timeout", &self.timeout)
            .field("allow_basic", &self.allow_basic)
            .finish_non_exhaustive()
    }
}

/// A TLS client configuration using the `ring` provider, TLS 1.2 and 1.3,
/// and `roots` as trust anchors.
pub fn tls_config_with_roots(
    roots: rustls::RootCertStore,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

impl HttpConnReq {
    /// Creates a sender with the default [`TargetPolicy`] (loopback, link-local and the
    /// other default networks refused).
    pub fn new(
        timeout: Duration,
        allow_basic: bool,
        tls_config: Arc<rustls::ClientConfig>,
    ) -> Self {
        Self {
            timeout,
            allow_basic,
            tls_config,
            policy: Arc::new(TargetPolicy::default()),
        }
    }

    /// Uses `policy` to decide which addresses may be contacted.
    #[must_use]
    pub fn with_policy(mut self, policy: Arc<TargetPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// Sends one connection request and reports how it ended.
    pub async fn request(&self, target: &ConnReqTarget) -> ConnReqOutcome {
        let url = match parse_url(&target.url) {
            Ok(url) => url,
            Err(why) => return ConnReqOutcome::BadUrl(why),
        };
        let outcome =
            match tokio::time::timeout(self.timeout, self.resolve_and_run(target, &url)).await {
                Ok(outcome) => outcome,
                Err(_) => ConnReqOutcome::Unreachable("no answer before the deadline".into()),
            };
        tracing::debug!(
            host = ?url.host,
            port = url.port,
            tls = url.tls,
            outcome = outcome.code(),
            detail = ?outcome.detail(),
            "connection request finished"
        );
        outcome
    }

    async fn resolve_and_run(&self, target: &ConnReqTarget, url: &Url) -> ConnReqOutcome {
        let addrs = match resolve_checked(&self.policy, &url.host, url.port).await {
            Ok(addrs) => addrs,
            Err(Ok(refusal)) => return ConnReqOutcome::RefusedByPolicy(refusal.to_string()),
            Err(Err(why)) => return ConnReqOutcome::Unreachable(why),
        };
        self.run(target, url, &addrs).await
    }

    async fn connect(&self, url: &Url, addrs: &[SocketAddr]) -> Result<Conn, ConnReqOutcome> {
        let tcp = TcpStream::connect(addrs)
            .await
            .map_err(|e| ConnReqOutcome::Unreachable(format!("cannot connect: {e}")))?;
        // Only affects latency; a failure here is harmless.
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if url.tls {
            let name = ServerName::try_from(url.host.clone())
                .map_err(|e| ConnReqOutcome::BadUrl(format!("invalid TLS server name: {e}")))?;
            let tls = TlsConnector::from(Arc::clone(&self.tls_config))
                .connect(name, tcp)
                .await
                .map_err(|e| ConnReqOutcome::Unreachable(format!("TLS handshake failed: {e}")))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(MAX_HEAD_BYTES)
            .max_headers(MAX_HEADERS)
            .allow_obsolete_multiline_headers_in_responses(true)
            .ignore_invalid_headers_in_responses(true)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| ConnReqOutcome::BadResponse(format!("HTTP set-up failed: {e}")))?;
        // The connection task ends with the exchange (or its deadline): dropping `Conn`
        // aborts it and closes the socket.
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn {
            sender,
            _task: AbortOnDrop(task),
        })
    }

    async fn run(&self, target: &ConnReqTarget, url: &Url, addrs: &[SocketAddr]) -> ConnReqOutcome {
        let mut idle: Option<Conn> = None;
        let mut opened: u32 = 0;
        let mut answer: Option<Answer> = None;
        // Connection number on which the challenge being answered arrived.
        let mut challenged_on: u32 = 0;
        let mut extra_rounds_left: u32 = 1;
        loop {
            let mut conn = match idle.take() {
                Some(c) => c,
                None => {
                    if opened > MAX_RECONNECTS {
                        return ConnReqOutcome::Unreachable(
                            "the device kept closing the connection".into(),
                        );
                    }
                    opened += 1;
                    match self.connect(url, addrs).await {
                        Ok(new) => new,
                        Err(outcome) => return outcome,
                    }
                }
            };
            let authorization = match answer.as_mut() {
                Some(a) => match a.header(target, &url.target) {
                    Ok(h) => Some(h),
                    Err(outcome) => return outcome,
                },
                None => None,
            };
            let request = match build_request(url, authorization.as_deref()) {
                Ok(r) => r,
                Err(outcome) => return outcome,
            };
            let response = match exchange(&mut conn, request).await {
                Ok(r) => r,
                Err(Failure::Closed(why)) => {
                    if answer.is_some() && opened <= MAX_RECONNECTS {
                        tracing::debug!(
                            host = %url.host,
                            "device dropped the connection after the challenge; reconnecting"
                        );
                        continue;
                    }
                    return ConnReqOutcome::Unreachable(format!(
                        "the device closed the connection without answering ({why})"
                    ));
                }
                Err(Failure::Protocol(why)) => {
                    return ConnReqOutcome::BadResponse(format!("invalid HTTP response: {why}"))
                }
            };
            match response.status {
                200..=299 => return ConnReqOutcome::Ok,
                503 => return ConnReqOutcome::Busy,
                401 => {}
                status => {
                    return ConnReqOutcome::BadResponse(format!("unexpected HTTP status {status}"))
                }
            }
            let next = match choose_answer(&response.headers, self.allow_basic) {
                Ok(next) => next,
                // Credentials were refused and nothing usable was offered.
                Err(_) if answer.is_some() => return ConnReqOutcome::AuthFailed,
                Err(outcome) => return outcome,
            };
            if answer.is_some() {
                // A second 401 means wrong credentials, unless the nonce
                // went stale or the device bound it to a connection we lost.
                let reconnected = opened != challenged_on;
                if extra_rounds_left == 0 || !(next.is_stale() || reconnected) {
                    return ConnReqOutcome::AuthFailed;
                }
                extra_rounds_left -= 1;
            }
            answer = Some(next);
            challenged_on = opened;
            if response.reusable
                && hyper::body::Body::size_hint(&response.body).lower() <= MAX_BODY_BYTES as u64
                && Limited::new(response.body, MAX_BODY_BYTES)
                    .collect()
                    .await
                    .is_ok()
                && conn.sender.ready().await.is_ok()
            {
                idle = Some(conn);
            }
        }
    }
}

impl ConnectionRequester for HttpConnReq {
    fn send<'a>(&'a self, target: &'a ConnReqTarget) -> ConnReqFuture<'a> {
        Box::pin(self.request(target))
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One HTTP connection to the device.
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    _task: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The parts of a connection request URL we need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Url {
    pub(super) tls: bool,
    /// Host name or IP literal, without brackets.
    pub(super) host: String,
    pub(super) port: u16,
    /// Origin-form request target: path and query.
    pub(super) target: String,
}

impl Url {
    fn default_port(&self) -> u16 {
        if self.tls {
            443
        } else {
            80
        }
    }

    fn host_for_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// `host:port` for messages.
    fn authority(&self) -> String {
        format!("{}:{}", self.host_for_header(), self.port)
    }

    /// Value of the `Host` header: the port only when not the default.
    pub(super) fn host_header(&self) -> String {
        if self.port == self.default_port() {
            self.host_for_header()
        } else {
            self.authority()
        }
    }
}

pub(super) fn parse_url(raw: &str) -> Result<Url, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("the URL is empty".into());
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("'{raw}' contains spaces or control characters"));
    }
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err(format!("'{raw}' has no scheme (expected http://…)"));
    };
    let tls = if scheme.eq_ignore_ascii_case("http") {
        false
    } else if scheme.eq_ignore_ascii_case("https") {
        true
    } else {
        return Err(format!(
            "unsupported scheme '{scheme}' (expected http or https)"
        ));
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    // Credentials come from the data model, never from the URL.
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let default_port = if tls { 443 } else { 80 };
    let (host, port_text) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Err(format!("unterminated IPv6 literal in '{raw}'"));
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(format!("'{inside}' is not an IPv6 address"));
        }
        let port_text = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err(format!("unexpected text after the IPv6 literal in '{raw}'")),
            },
        };
        (inside.to_string(), port_text)
    } else {
        let (host, port_text) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if port_text.is_some_and(|p| p.contains(':')) {
            return Err(format!(
                "'{authority}' looks like an IPv6 address without brackets; write it as [address]:port"
            ));
        }
        if host.is_empty() {
            return Err(format!("'{raw}' has no host"));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(format!("invalid host name '{host}'"));
        }
        (host.to_string(), port_text)
    };
    let port = match port_text {
        None | Some("") => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return Err(format!("invalid port '{p}'")),
        },
    };
    Ok(Url {
        tls,
        host,
        port,
        target,
    })
}

fn build_request(
    url: &Url,
    authorization: Option<&str>,
) -> Result<hyper::Request<Empty<Bytes>>, ConnReqOutcome> {
    let mut req = hyper::Request::get(url.target.as_str())
        .header(HOST, url.host_header())
        .header(USER_AGENT, concat!("ferroacs/", env!("CARGO_PKG_VERSION")))
        .header(ACCEPT, "*/*");
    if let Some(value) = authorization {
        req = req.header(AUTHORIZATION, value);
    }
    req.body(Empty::new())
        .map_err(|e| ConnReqOutcome::BadUrl(format!("cannot build the request: {e}")))
}

/// How to answer a challenge.
enum Answer {
    Digest(Box<WwwAuthenticateHeader>),
    Basic,
}

impl Answer {
    fn is_stale(&self) -> bool {
        matches!(self, Self::Digest(prompt) if prompt.stale)
    }

    /// The `Authorization` value for the next request. Digest increments
    /// its nonce count each time.
    fn header(&mut self, target: &ConnReqTarget, uri: &str) -> Result<String, ConnReqOutcome> {
        match self {
            Self::Basic => Ok(format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", target.username, target.password))
            )),
            Self::Digest(prompt) => {
                // With auth-int the (empty) body is part of the hash.
                let body: Option<&[u8]> = match &prompt.qop {
                    Some(q) if q.contains(&Qop::AUTH_INT) => Some(&[]),
                    _ => None,
                };
                let ctx = AuthContext::new_with_method(
                    target.username.as_str(),
                    target.password.as_str(),
                    uri,
                    body,
                    HttpMethod::GET,
                );
                prompt
                    .respond(&ctx)
                    .map(|h| h.to_header_string())
                    .map_err(|_| ConnReqOutcome::AuthUnsupported)
            }
        }
    }
}

/// Turns one parsed Digest challenge into a prompt `digest_auth` can answer.
fn digest_prompt(ch: &Challenge) -> Result<WwwAuthenticateHeader, String> {
    let realm = ch.param("realm").ok_or("Digest challenge without realm")?;
    let nonce = ch.param("nonce").ok_or("Digest challenge without nonce")?;
    let algorithm = match ch.param("algorithm") {
        None => digest_auth::Algorithm::default(),
        Some(a) => {
            let canonical = [
                "MD5",
                "MD5-sess",
                "SHA-256",
                "SHA-256-sess",
                "SHA-512-256",
                "SHA-512-256-sess",
            ]
            .into_iter()
            .find(|known| known.eq_ignore_ascii_case(a))
            .ok_or_else(|| format!("unsupported Digest algorithm '{a}'"))?;
            canonical
                .parse()
                .map_err(|e| format!("unsupported Digest algorithm '{a}': {e}"))?
        }
    };
    let qop = match ch.param("qop") {
        None => None,
        Some(list) => {
            let offered: Vec<&str> = list.split(',').map(str::trim).collect();
            if offered.iter().any(|q| q.eq_ignore_ascii_case("auth")) {
                Some(vec![Qop::AUTH])
            } else if offered.iter().any(|q| q.eq_ignore_ascii_case("auth-int")) {
                Some(vec![Qop::AUTH_INT])
            } else {
                return Err(format!("unsupported Digest qop '{list}'"));
            }
        }
    };
    Ok(WwwAuthenticateHeader {
        domain: None,
        realm: realm.to_string(),
        nonce: nonce.to_string(),
        opaque: ch.param("opaque").map(str::to_string),
        stale: ch
            .param("stale")
            .is_some_and(|s| s.eq_ignore_ascii_case("true")),
        algorithm,
        qop,
        userhash: false,
        charset: digest_auth::Charset::ASCII,
        nc: 0,
    })
}

/// Picks the challenge to answer from every `WWW-Authenticate` header.
fn choose_answer(
    headers: &[(String, String)],
    allow_basic: bool,
) -> Result<Answer, ConnReqOutcome> {
    let mut problems = Vec::new();
    let mut basic_offered = false;
    for (_, value) in headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("www-authenticate"))
    {
        let challenges = match parse_challenges(value) {
            Ok(c) => c,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        for ch in challenges {
            if ch.is_scheme("Digest") {
                match digest_prompt(&ch) {
                    Ok(prompt) => return Ok(Answer::Digest(Box::new(prompt))),
                    Err(why) => problems.push(why),
                }
            } else if ch.is_scheme("Basic") {
                basic_offered = true;
            }
        }
    }
    if basic_offered {
        if allow_basic {
            return Ok(Answer::Basic);
        }
        return Err(ConnReqOutcome::AuthUnsupported);
    }
    tracing::debug!(problems = ?problems, "401 without a usable challenge");
    Err(ConnReqOutcome::AuthUnsupported)
}

/// Why an exchange produced no usable response.
#[derive(Debug)]
enum Failure {
    /// The connection was closed or reset before a response arrived.
    Closed(String),
    /// The device sent something that is not HTTP/1.x.
    Protocol(String),
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: hyper::body::Incoming,
    /// The connection can carry another request once the body is read: the
    /// device keeps it open and delimits the body.
    reusable: bool,
}

async fn exchange(
    conn: &mut Conn,
    request: hyper::Request<Empty<Bytes>>,
) -> Result<Response, Failure> {
    let classify = |e: hyper::Error| {
        if e.is_parse() || e.is_parse_status() || e.is_user() {
            Failure::Protocol(e.to_string())
        } else {
            Failure::Closed(e.to_string())
        }
    };
    conn.sender.ready().await.map_err(classify)?;
    let response = conn.sender.send_request(request).await.map_err(classify)?;
    let (parts, body) = response.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let connection: Vec<String> = parts
        .headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v: &HeaderValue| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let keep_alive = if parts.version == hyper::Version::HTTP_10 {
        connection.iter().any(|t| t == "keep-alive")
    } else {
        !connection.iter().any(|t| t == "close")
    };
    let status = parts.status.as_u16();
    let delimited = status == 204
        || status == 304
        || parts.headers.contains_key(hyper::header::CONTENT_LENGTH)
        || parts
            .headers
            .get(hyper::header::TRANSFER_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().to_ascii_lowercase().ends_with("chunked"));
    Ok(Response {
        status,
        headers,
        body,
        reusable: keep_alive && delimited,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    const USER: &str = "acs-user";
    const PASS: &str = "cr-Secret!";
    const REALM: &str = "IGD connection request";

    /// The fake CPEs of these tests listen on loopback, which the default policy refuses.
    fn loopback_allowed() -> Arc<TargetPolicy> {
        Arc::new(TargetPolicy::new("127.0.0.0/8, ::1", super::super::policy::DEFAULT_DENY).unwrap())
    }

    fn sender(timeout_ms: u64, allow_basic: bool) -> HttpConnReq {
        let roots = rustls::RootCertStore::empty();
        HttpConnReq::new(
            Duration::from_millis(timeout_ms),
            allow_basic,
            tls_config_with_roots(roots).unwrap(),
        )
        .with_policy(loopback_allowed())
    }

    #[tokio::test]
    async fn refused_targets_are_never_contacted() {
        let (addr, requests) = canned_cpe("HTTP/1.1 204 No Content\r\n\r\n").await;
        let port = addr.port();
        let default = HttpConnReq::new(
            Duration::from_secs(2),
            false,
            tls_config_with_roots(rustls::RootCertStore::empty()).unwrap(),
        );
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://localhost:{port}/"),
            format!("http://2130706433:{port}/"),
            format!("http://0x7f.1:{port}/"),
            format!("http://017700000001:{port}/"),
            format!("http://127.1:{port}/"),
            format!("http://0.0.0.0:{port}/"),
            format!("http://0:{port}/"),
            format!("http://[::1]:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            format!("http://[::ffff:7f00:1]:{port}/"),
            "http://169.254.169.254/latest/meta-data/".to_string(),
        ] {
            let t = ConnReqTarget {
                url: url.clone(),
                username: USER.into(),
                password: PASS.into(),
            };
            let outcome = default.request(&t).await;
            assert_eq!(outcome.code(), "refused_by_policy", "{url}: {outcome:?}");
        }
        // The ACS's own listener stays refused even where loopback is allowed.
        let own = sender(2000, false).with_policy(Arc::new(
            TargetPolicy::new("127.0.0.0/8", "")
                .unwrap()
                .with_own_listeners(&[addr]),
        ));
        let outcome = own.request(&target(addr, "/", PASS)).await;
        assert_eq!(outcome.code(), "refused_by_policy", "{outcome:?}");
        assert_eq!(
            requests.load(Ordering::SeqCst),
            0,
            "nothing may reach the listener"
        );
        // Allowed explicitly, the same listener is reached.
        assert_eq!(
            sender(2000, false).request(&target(addr, "/", PASS)).await,
            ConnReqOutcome::Ok
        );
        assert_eq!(requests.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (target_addr, hits) = canned_cpe("HTTP/1.1 204 No Content\r\n\r\n").await;
        let redirect: &'static str = Box::leak(
            format!("HTTP/1.1 302 Found\r\nLocation: http://{target_addr}/\r\nContent-Length: 0\r\n\r\n")
                .into_boxed_str(),
        );
        let (addr, _) = canned_cpe(redirect).await;
        let outcome = sender(2000, false)
            .request(&target(addr, "/cr", PASS))
            .await;
        assert_eq!(outcome.code(), "bad_response", "{outcome:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    fn target(addr: SocketAddr, path: &str, password: &str) -> ConnReqTarget {
        ConnReqTarget {
            url: format!("http://{addr}{path}"),
            username: USER.into(),
            password: password.into(),
        }
    }

    /// A request as seen by a fake CPE.
    #[derive(Debug)]
    struct SeenRequest {
        line: String,
        headers: Vec<(String, String)>,
    }

    impl SeenRequest {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<SeenRequest> {
        read_any_request(stream).await
    }

    fn md5_hex(s: &str) -> String {
        format!("{:x}", md5::compute(s.as_bytes()))
    }

    /// Checks Digest credentials the way a CPE does, computing MD5 directly.
    fn digest_ok(req: &SeenRequest, nonce: &str, password: &str) -> bool {
        let Some(value) = req.header("authorization") else {
            return false;
        };
        let creds = crate::auth::header::parse_credentials(value).unwrap();
        assert!(creds.is_scheme("Digest"), "{value}");
        let p = |n: &str| creds.param(n).unwrap_or_default().to_string();
        let request_target = req.line.split(' ').nth(1).unwrap();
        assert_eq!(
            p("uri"),
            request_target,
            "digest uri must be the request target"
        );
        assert_eq!(p("qop"), "auth");
        assert_eq!(p("realm"), REALM);
        if p("nonce") != nonce || p("username") != USER {
            return false;
        }
        let ha1 = md5_hex(&format!("{USER}:{REALM}:{password}"));
        let ha2 = md5_hex(&format!("GET:{}", p("uri")));
        let expected = md5_hex(&format!(
            "{ha1}:{nonce}:{}:{}:auth:{ha2}",
            p("nc"),
            p("cnonce")
        ));
        p("response") == expected
    }

    fn challenge_response(nonce: &str, extra: &str) -> String {
        format!(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"{REALM}\", \
             qop=\"auth,auth-int\", nonce=\"{nonce}\", opaque=\"op\", algorithm=MD5\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        )
    }

    #[derive(Clone, Copy, PartialEq)]
    enum AfterChallenge {
        KeepOpen,
        Reset,
        SayClose,
    }

    /// A CPE that requires Digest. Returns its address and the number of
    /// TCP connections it accepted.
    async fn digest_cpe(
        after: AfterChallenge,
        password: &'static str,
    ) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let n = counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let nonce = format!("nonce-for-connection-{n}");
                    let mut stream = BufReader::new(stream);
                    while let Some(req) = read_request(&mut stream).await {
                        assert!(req.line.starts_with("GET /cr/"), "{}", req.line);
                        assert!(req.header("host").is_some());
                        if req.header("authorization").is_none() {
                            let extra = if after == AfterChallenge::SayClose {
                                "Connection: close\r\n"
                            } else {
                                ""
                            };
                            let out = challenge_response(&nonce, extra);
                            stream.get_mut().write_all(out.as_bytes()).await.unwrap();
                            match after {
                                AfterChallenge::KeepOpen => continue,
                                AfterChallenge::SayClose => return,
                                AfterChallenge::Reset => {
                                    // Wait for the answer, then reset
                                    // instead of replying to it.
                                    let _ = read_request(&mut stream).await;
                                    #[allow(deprecated)]
                                    stream.get_ref().set_linger(Some(Duration::ZERO)).unwrap();
                                    return;
                                }
                            }
                        }
                        let out = if digest_ok(&req, &nonce, password) {
                            "HTTP/1.1 204 No Content\r\n\r\n".to_string()
                        } else {
                            challenge_response(&nonce, "")
                        };
                        stream.get_mut().write_all(out.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        (addr, connections)
    }

    #[tokio::test]
    async fn digest_on_the_same_connection() {
        let (addr, conns) = digest_cpe(AfterChallenge::KeepOpen, PASS).await;
        let outcome = sender(2000, false)
            .request(&target(addr, "/cr/abc?x=1", PASS))
            .await;
        assert_eq!(outcome, ConnReqOutcome::Ok);
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn reconnects_once_after_reset() {
        let (addr, conns) = digest_cpe(AfterChallenge::Reset, PASS).await;
        let outcome = sender(2000, false)
            .request(&target(addr, "/cr/abc", PASS))
            .await;
        // The first nonce was bound to the reset connection; the device
        // challenges again on the new one and the second answer succeeds.
        assert_eq!(outcome, ConnReqOutcome::Ok);
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn reconnects_after_connection_close() {
        let (addr, conns) = digest_cpe(AfterChallenge::SayClose, PASS).await;
        let outcome = sender(2000, false)
            .request(&target(addr, "/cr/abc", PASS))
            .await;
        assert_eq!(outcome, ConnReqOutcome::Ok);
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn wrong_password_is_auth_failed() {
        let (addr, conns) = digest_cpe(AfterChallenge::KeepOpen, PASS).await;
        let outcome = sender(2000, false)
            .request(&target(addr, "/cr/abc", "wrong"))
            .await;
        assert_eq!(outcome, ConnReqOutcome::AuthFailed);
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn wrong_password_after_reset_is_auth_failed() {
        let (addr, _) = digest_cpe(AfterChallenge::Reset, PASS).await;
        let outcome = sender(2000, false)
            .request(&target(addr, "/cr/abc", "wrong"))
            .await;
        assert_eq!(outcome, ConnReqOutcome::AuthFailed);
    }

    /// A CPE that answers every request with `response` and counts them.
    async fn canned_cpe(response: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    while read_request(&mut stream).await.is_some() {
                        counter.fetch_add(1, Ordering::SeqCst);
                        if stream
                            .get_mut()
                            .write_all(response.as_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        (addr, requests)
    }

    #[tokio::test]
    async fn status_503_is_refused() {
        let (addr, _) = canned_cpe(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        let outcome = sender(2000, false)
            .request(&target(addr, "/cr", PASS))
            .await;
        assert_eq!(outcome, ConnReqOutcome::Busy);
    }

    #[tokio::test]
    async fn status_200_without_auth_is_ok() {
        let (addr, requests) = canned_cpe("HTTP/1.0 200 OK\r\n\r\n").await;
        let outcome = sender(2000, false)
            .request(&target(addr, "/cr", PASS))
            .await;
        assert_eq!(outcome, ConnReqOutcome::Ok);
        assert_eq!(requests.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn other_status_is_an_error() {
        let (addr, _) = canned_cpe("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await;
        let outcome = sender(2000, false)
            .request(&target(addr, "/cr", PASS))
            .await;
        assert!(
            matches!(&outcome, ConnReqOutcome::BadResponse(m) if m.contains("404")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn garbage_is_an_error() {
        for (garbage, words) in [
            ("SSH-2.0-OpenSSH_9.6p1 Debian\r\n\r\n", ["SSH", "OpenSSH"]),
            ("root:x:0:0:root:/root:/bin/bash\r\n\r\n", ["root", "bash"]),
            (
                "HTTP/1.1 418 root:x:0:0:secret\r\nContent-Length: 0\r\n\r\n",
                ["root", "secret"],
            ),
            ("HTTP/1.1 2x0 root:x:0:0\r\n\r\n", ["root", "2x0"]),
        ] {
            let (addr, _) = canned_cpe(garbage).await;
            let outcome = sender(2000, false)
                .request(&target(addr, "/cr", PASS))
                .await;
            assert_eq!(outcome.code(), "bad_response", "{outcome:?}");
            // Nothing the target sent is kept, not even for the logs.
            for w in words {
                assert!(!outcome.to_string().contains(w), "{outcome}");
                assert!(!outcome.detail().contains(w), "{outcome:?}");
            }
        }
    }

    #[tokio::test]
    async fn oversized_response_head_is_an_error() {
        let head = format!(
            "HTTP/1.1 401 Unauthorized\r\nX-Padding: {}\r\nContent-Length: 0\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        let (addr, _) = canned_cpe(Box::leak(head.into_boxed_str())).await;
        let outcome = sender(2000, false)
            .request(&target(addr, "/cr", PASS))
            .await;
        assert!(
            matches!(&outcome, ConnReqOutcome::BadResponse(_)),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn folded_and_malformed_header_lines_are_tolerated() {
        let (addr, _) = canned_cpe(
            "HTTP/1.1 200 OK\r\nX-Folded: one\r\n two\r\nnot a header line\r\n\
             Content-Length: 0\r\n\r\n",
        )
        .await;
        let outcome = sender(2000, false)
            .request(&target(addr, "/cr", PASS))
            .await;
        assert_eq!(outcome, ConnReqOutcome::Ok);
    }

    #[tokio::test]
    async fn a_huge_challenge_body_is_not_read() {
        // The body is announced but never sent: reading it would wait for the deadline.
        let (addr, requests) = canned_cpe(
            "HTTP/1.1 401 Unauthorized\r\n\
             WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", qop=\"auth\"\r\n\
             Content-Length: 50000000\r\n\r\n",
        )
        .await;
        let outcome = sender(5000, false)
            .request(&target(addr, "/cr", PASS))
            .await;
        // Answered on new connections, refused again: wrong credentials, well before 5 s.
        assert_eq!(outcome, ConnReqOutcome::AuthFailed);
        assert!(requests.load(Ordering::SeqCst) >= 2);
    }

    #[tokio::test]
    async fn silent_device_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let started = std::time::Instant::now();
        let outcome = sender(300, false).request(&target(addr, "/cr", PASS)).await;
        // Reported like a refused connection: outcomes cannot tell ports apart.
        assert_eq!(outcome.code(), "unreachable");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn closed_port_is_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let outcome = sender(2000, false)
            .request(&target(addr, "/cr", PASS))
            .await;
        assert!(
            matches!(outcome, ConnReqOutcome::Unreachable(_)),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn device_closing_without_answer_is_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut stream = BufReader::new(stream);
                let _ = read_request(&mut stream).await;
            }
        });
        let outcome = sender(2000, false)
            .request(&target(addr, "/cr", PASS))
            .await;
        assert!(
            matches!(outcome, ConnReqOutcome::Unreachable(_)),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn unknown_host_is_unreachable() {
        let t = ConnReqTarget {
            url: "http://no-such-host.invalid:7547/cr".into(),
            username: USER.into(),
            password: PASS.into(),
        };
        let outcome = sender(5000, false).request(&t).await;
        assert!(
            matches!(outcome, ConnReqOutcome::Unreachable(_)),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn bad_url_is_reported() {
        let t = ConnReqTarget {
            url: "ftp://192.0.2.1/".into(),
            username: USER.into(),
            password: PASS.into(),
        };
        let outcome = sender(2000, false).request(&t).await;
        assert!(matches!(outcome, ConnReqOutcome::BadUrl(_)), "{outcome:?}");
    }

    /// A CPE offering only Basic; it checks the credentials it receives.
    async fn basic_cpe() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    let expected = format!("Basic {}", STANDARD.encode(format!("{USER}:{PASS}")));
                    while let Some(req) = read_request(&mut stream).await {
                        let out = if req.header("authorization") == Some(expected.as_str()) {
                            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
                        } else {
                            // A chunked body the client must skip to reuse the connection.
                            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"cpe\"\r\n\
                             Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"
                        };
                        stream.get_mut().write_all(out.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn basic_only_when_allowed() {
        let addr = basic_cpe().await;
        let refused = sender(2000, false)
            .request(&target(addr, "/cr", PASS))
            .await;
        assert!(
            matches!(&refused, ConnReqOutcome::AuthUnsupported),
            "{refused:?}"
        );
        let ok = sender(2000, true).request(&target(addr, "/cr", PASS)).await;
        assert_eq!(ok, ConnReqOutcome::Ok);
        let bad = sender(2000, true)
            .request(&target(addr, "/cr", "nope"))
            .await;
        assert_eq!(bad, ConnReqOutcome::AuthFailed);
    }

    #[tokio::test]
    async fn digest_preferred_over_basic_and_body_is_skipped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&conns);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut stream = BufReader::new(stream);
                while let Some(req) = read_request(&mut stream).await {
                    let out = if digest_ok(&req, "n1", PASS) {
                        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_string()
                    } else {
                        let body = "<html>Unauthorized</html>";
                        format!(
                            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\n\
                             www-authenticate: Digest realm=\"{REALM}\",nonce=\"n1\",qop=auth\r\n\
                             Content-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    };
                    stream.get_mut().write_all(out.as_bytes()).await.unwrap();
                }
            }
        });
        let outcome = sender(2000, true)
            .request(&target(addr, "/cr/x", PASS))
            .await;
        assert_eq!(outcome, ConnReqOutcome::Ok);
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn stale_nonce_gets_one_more_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut stream = BufReader::new(stream);
                while let Some(req) = read_request(&mut stream).await {
                    let out = if digest_ok(&req, "fresh", PASS) {
                        "HTTP/1.1 204 No Content\r\n\r\n".to_string()
                    } else if digest_ok(&req, "old", PASS) {
                        // Right password, expired nonce.
                        format!(
                            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"{REALM}\", \
                             nonce=\"fresh\", qop=\"auth\", stale=true\r\nContent-Length: 0\r\n\r\n"
                        )
                    } else {
                        challenge_response("old", "")
                    };
                    stream.get_mut().write_all(out.as_bytes()).await.unwrap();
                }
            }
        });
        let outcome = sender(2000, false)
            .request(&target(addr, "/cr/s", PASS))
            .await;
        assert_eq!(outcome, ConnReqOutcome::Ok);
    }

    #[tokio::test]
    async fn ipv6_literal_host() {
        let Ok(listener) = TcpListener::bind("[::1]:0").await else {
            // No IPv6 loopback in this environment.
            return;
        };
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut stream = BufReader::new(stream);
                if let Some(req) = read_request(&mut stream).await {
                    let host = req.header("host").unwrap_or_default().to_string();
                    let out = if host == format!("[::1]:{}", addr.port()) {
                        "HTTP/1.1 204 No Content\r\n\r\n"
                    } else {
                        "HTTP/1.1 400 Bad Host\r\nContent-Length: 0\r\n\r\n"
                    };
                    stream.get_mut().write_all(out.as_bytes()).await.unwrap();
                }
            }
        });
        let t = ConnReqTarget {
            url: format!("http://[::1]:{}/cr", addr.port()),
            username: USER.into(),
            password: PASS.into(),
        };
        assert_eq!(sender(2000, false).request(&t).await, ConnReqOutcome::Ok);
    }

    #[tokio::test]
    async fn works_through_the_trait_object() {
        let (addr, _) = digest_cpe(AfterChallenge::KeepOpen, PASS).await;
        let requester: Arc<dyn ConnectionRequester> = Arc::new(sender(2000, false));
        let t = target(addr, "/cr/dyn", PASS);
        assert_eq!(requester.send(&t).await, ConnReqOutcome::Ok);
    }

    /// Self-signed test certificate for `localhost` and 127.0.0.1, valid
    /// 2000–2100; the key below exists only for these tests.
    const TEST_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBfDCCASOgAwIBAgIUa2Tdduj1B2WIHbyWGcDfEIcO3p0wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTAwMDEwMTAwMDAwMFoYDzIxMDAwMTAx
MDAwMDAwWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQ7BLk1vKNtctlCHXLrG+KE8MkUsj3EMAzOI58ozx2aY9nTASRYnvk7
TJN8tKoQVqRa9R8REahHCj2n56H1D+Vzo1EwTzAaBgNVHREEEzARgglsb2NhbGhv
c3SHBH8AAAEwDAYDVR0TAQH/BAIwADAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAww
CgYIKwYBBQUHAwEwCgYIKoZIzj0EAwIDRwAwRAIgF1k/iPozssnAyjiIF5nO0ZDm
uuUmCdYhhVNoSXL7sF0CIDUDTdn0rP4PSg/ZpXSVHGEC4dmsyiY12ftTyD8D7+v+
-----END CERTIFICATE-----
";
    const TEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg6sTvNtmgCCGs1GO3
+aNwFkJNPJi56U8Y6IuOqRjfmRehRANCAAQ7BLk1vKNtctlCHXLrG+KE8MkUsj3E
MAzOI58ozx2aY9nTASRYnvk7TJN8tKoQVqRa9R8REahHCj2n56H1D+Vz
-----END PRIVATE KEY-----
";

    #[tokio::test]
    async fn https_with_digest() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let cert = CertificateDer::from_pem_slice(TEST_CERT_PEM.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(TEST_KEY_PEM.as_bytes()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut stream = BufReader::new(tls);
                while let Some(req) = read_any_request(&mut stream).await {
                    let out = if digest_ok(&req, "tls-nonce", PASS) {
                        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_string()
                    } else {
                        challenge_response("tls-nonce", "")
                    };
                    stream.get_mut().write_all(out.as_bytes()).await.unwrap();
                }
            }
        });

        let t = ConnReqTarget {
            url: format!("https://localhost:{port}/cr/tls"),
            username: USER.into(),
            password: PASS.into(),
        };
        // Untrusted certificate: the handshake fails.
        let untrusted = sender(2000, false).request(&t).await;
        assert!(
            matches!(&untrusted, ConnReqOutcome::Unreachable(m) if m.contains("TLS")),
            "{untrusted:?}"
        );

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let trusting = HttpConnReq::new(
            Duration::from_secs(2),
            false,
            tls_config_with_roots(roots).unwrap(),
        )
        .with_policy(loopback_allowed());
        assert_eq!(trusting.request(&t).await, ConnReqOutcome::Ok);
        let by_ip = ConnReqTarget {
            url: format!("https://127.0.0.1:{port}/cr/tls"),
            ..t
        };
        assert_eq!(trusting.request(&by_ip).await, ConnReqOutcome::Ok);
    }

    async fn read_any_request<S: AsyncRead + Unpin>(
        stream: &mut BufReader<S>,
    ) -> Option<SeenRequest> {
        let mut line = String::new();
        if stream.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if stream.read_line(&mut h).await.ok()? == 0 {
                return None;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').unwrap();
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        Some(SeenRequest {
            line: line.trim_end().to_string(),
            headers,
        })
    }

    #[test]
    fn url_parsing() {
        let u = parse_url("http://192.0.2.1:7547/abc?x=1#frag").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.target.as_str()),
            (false, "192.0.2.1", 7547, "/abc?x=1")
        );
        assert_eq!(u.host_header(), "192.0.2.1:7547");

        let u = parse_url("HTTPS://cpe.example.net").unwrap();
        assert_eq!((u.tls, u.port, u.target.as_str()), (true, 443, "/"));
        assert_eq!(u.host_header(), "cpe.example.net");

        let u = parse_url("http://[2001:db8::1]:30005/cr").unwrap();
        assert_eq!(u.host, "2001:db8::1");
        assert_eq!(u.host_header(), "[2001:db8::1]:30005");
        let u = parse_url("http://[2001:db8::1]/").unwrap();
        assert_eq!((u.port, u.host_header().as_str()), (80, "[2001:db8::1]"));

        let u = parse_url("http://user:pw@host?q").unwrap();
        assert_eq!((u.host.as_str(), u.target.as_str()), ("host", "/?q"));

        for bad in [
            "",
            "192.0.2.1:7547/x",
            "ftp://host/",
            "http:///x",
            "http://2001:db8::1:7547/",
            "http://[2001:db8::1/",
            "http://[not-v6]:80/",
            "http://[::1]x/",
            "http://host:99999/",
            "http://host:0/",
            "http://host:port/",
            "http://ho st/",
            "http://host/a b",
            "http://bad_\u{e9}host/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn request_carries_no_password() {
        let url = parse_url("http://h:1/p").unwrap();
        let t = ConnReqTarget {
            url: "http://h:1/p".into(),
            username: "u".into(),
            password: "very-secret".into(),
        };
        let mut digest = Answer::Digest(Box::new(
            digest_prompt(
                &parse_challenges(r#"Digest realm="r", nonce="n", qop="auth""#).unwrap()[0],
            )
            .unwrap(),
        ));
        let header = digest.header(&t, &url.target).unwrap();
        let req = build_request(&url, Some(&header)).unwrap();
        let all: Vec<String> = req
            .headers()
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        assert!(!all.iter().any(|h| h.contains("very-secret")), "{all:?}");
        assert_eq!(req.method(), hyper::Method::GET);
        assert_eq!(req.uri(), "/p");
        assert_eq!(req.headers()[HOST], "h:1");
        assert!(req.headers()[AUTHORIZATION]
            .to_str()
            .unwrap()
            .contains("nc=00000001"));
        // The next answer to the same challenge counts up.
        assert!(digest
            .header(&t, &url.target)
            .unwrap()
            .contains("nc=00000002"));
    }

    #[test]
    fn digest_prompt_variants() {
        let p = |s: &str| digest_prompt(&parse_challenges(s).unwrap()[0]);
        let md5sess = p(r#"digest realm="r", nonce="n", algorithm=md5-sess, stale=TRUE"#).unwrap();
        assert!(md5sess.algorithm.sess && md5sess.stale && md5sess.qop.is_none());
        let int_only = p(r#"Digest realm="r", nonce="n", qop="auth-int""#).unwrap();
        assert_eq!(int_only.qop, Some(vec![Qop::AUTH_INT]));
        assert!(p(r#"Digest realm="r", nonce="n", algorithm=SHA-1"#).is_err());
        assert!(p(r#"Digest realm="r", nonce="n", qop="weird""#).is_err());
        assert!(p(r#"Digest nonce="n""#).is_err());
        assert!(p(r#"Digest realm="r""#).is_err());
    }
}
