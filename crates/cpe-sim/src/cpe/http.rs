//! A small HTTP/1.1 client written for exact control over what a CPE sends, plus a request
//! reader and response writer for the connection-request server.
//!
//! The client keeps one TCP connection open (or opens one per request when
//! `keep_alive` is off), speaks HTTP/1.1 or HTTP/1.0, keeps a cookie jar, and answers `401`
//! challenges with Basic or Digest (`qop=auth`, MD5 or MD5-sess, own `nc` counter and
//! `cnonce`). After a challenge, every later request carries `Authorization` with the same
//! nonce and the next `nc`, also on new connections; a fresh challenge (or `stale=true`) is
//! answered once more, a second rejection is [`SimError::AuthFailed`].

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::TcpStream;

use super::SimError;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body accepted.
const MAX_BODY: usize = 256 * 1024 * 1024;

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port (80 when absent).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses an `http://host[:port][/path]` URL. Other schemes are rejected.
    pub fn parse(s: &str) -> Result<Url, SimError> {
        let bad = |reason: &str| SimError::BadUrl {
            url: s.to_string(),
            reason: reason.to_string(),
        };
        let rest = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("HTTP://"))
            .ok_or_else(|| bad("only http:// URLs are supported by the simulator"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or_else(|| bad("unterminated IPv6 address"))?;
            let port = match v6[end + 1..].strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                None => 80,
            };
            (v6[..end].to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad("bad port"))?),
                None => (authority.to_string(), 80),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Url { host, port, path })
    }

    /// `host:port` for connecting and for the Host header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// How the `SOAPAction` header is written on POSTs that carry an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapAction {
    /// `SOAPAction:` with no value (TR-069 §3.4.1).
    Empty,
    /// `SOAPAction: ""`.
    QuotedEmpty,
    /// No SOAPAction header.
    Omit,
}

/// Transport behaviour of a simulated CPE.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Honour `Set-Cookie` and send `Cookie:` (false: ignore cookies, rely on the connection).
    pub cookies: bool,
    /// Keep the TCP connection for the whole session (false: `Connection: close` and a new
    /// connection for every POST).
    pub keep_alive: bool,
    /// Send HTTP/1.0 requests.
    pub http10: bool,
    /// Send SOAP bodies with `Transfer-Encoding: chunked` (ignored with `http10`).
    pub chunked: bool,
    /// SOAPAction header style.
    pub soap_action: SoapAction,
    /// Limit for connecting and for each request/response exchange.
    pub timeout: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            cookies: true,
            keep_alive: true,
            http10: false,
            chunked: false,
            soap_action: SoapAction::Empty,
            timeout: Duration::from_secs(30),
            user_agent: "ferroacs-cpe-sim/1.0".to_string(),
        }
    }
}

/// A received HTTP response.
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Headers in order, names as received.
    pub headers: Vec<(String, String)>,
    /// Decoded body (chunked encoding removed).
    pub body: Vec<u8>,
    /// True when the response was HTTP/1.0.
    pub http10: bool,
}

impl HttpResponse {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All values of a header.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// Whether the body holds anything but white space.
    pub fn has_content(&self) -> bool {
        self.body.iter().any(|b| !b.is_ascii_whitespace())
    }

    fn closes(&self) -> bool {
        let conn = self.header("Connection").map(|v| v.to_ascii_lowercase());
        match conn {
            Some(v) if v.contains("close") => true,
            Some(v) if v.contains("keep-alive") => false,
            _ => self.http10,
        }
    }
}

/// Looks a header up by case-insensitive name.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One stored cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    /// Cookie name.
    pub name: String,
    /// Cookie value.
    pub value: String,
    /// Path scope.
    pub path: String,
}

/// Cookies received during a session.
#[derive(Debug, Clone, Default)]
pub struct CookieJar {
    /// Stored cookies.
    pub cookies: Vec<Cookie>,
}

impl CookieJar {
    /// Stores one `Set-Cookie` value received for a request to `request_path`.
    pub fn store(&mut self, set_cookie: &str, request_path: &str) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
            return;
        };
        let name = name.trim().to_string();
        if name.is_empty() {
            return;
        }
        let value = value.trim().trim_matches('"').to_string();
        let mut path = None;
        let mut delete = false;
        for attr in parts {
            let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("path") && v.starts_with('/') {
                path = Some(v.to_string());
            } else if k.eq_ignore_ascii_case("max-age") {
                delete |= v.parse::<i64>().map(|s| s <= 0).unwrap_or(false);
            }
        }
        let path = path.unwrap_or_else(|| default_cookie_path(request_path));
        self.cookies.retain(|c| !(c.name == name && c.path == path));
        if !delete {
            self.cookies.push(Cookie { name, value, path });
        }
    }

    /// The `Cookie` header value for a request to `path`, if any cookie applies.
    pub fn header_for(&self, path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap_or(path);
        let mut out = String::new();
        for c in self.cookies.iter().filter(|c| path_matches(&c.path, path)) {
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(&c.name);
            out.push('=');
            out.push_str(&c.value);
        }
        (!out.is_empty()).then_some(out)
    }
}

fn default_cookie_path(request_path: &str) -> String {
    let p = request_path.split('?').next().unwrap_or(request_path);
    match p.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => p[..i].to_string(),
    }
}

fn path_matches(cookie_path: &str, path: &str) -> bool {
    path == cookie_path
        || (path.starts_with(cookie_path)
            && (cookie_path.ends_with('/')
                || path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=...`.
    Basic {
        /// Realm.
        realm: String,
    },
    /// `Digest ...`.
    Digest(DigestChallenge),
}

/// The parameters of a Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestChallenge {
    /// realm.
    pub realm: String,
    /// nonce.
    pub nonce: String,
    /// opaque, echoed back when present.
    pub opaque: Option<String>,
    /// Whether `qop` offers `auth`.
    pub qop_auth: bool,
    /// `MD5` or `MD5-sess`.
    pub algorithm: String,
    /// `stale=true`.
    pub stale: bool,
}

/// Splits a `WWW-Authenticate`/`Authorization` value into (scheme, parameters) pairs.
pub fn parse_challenges(v: &str) -> Vec<(String, Vec<(String, String)>)> {
    let b = v.as_bytes();
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut i = 0;
    let is_tok = |c: u8| !matches!(c, b' ' | b'\t' | b',' | b'=' | b'"');
    while i < b.len() {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        let start = i;
        while i < b.len() && is_tok(b[i]) {
            i += 1;
        }
        if start == i {
            i += 1;
            continue;
        }
        let token = &v[start..i];
        let mut j = i;
        while j < b.len() && matches!(b[j], b' ' | b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' {
            j += 1;
            while j < b.len() && matches!(b[j], b' ' | b'\t') {
                j += 1;
            }
            let mut val = String::new();
            if j < b.len() && b[j] == b'"' {
                j += 1;
                while j < b.len() && b[j] != b'"' {
                    if b[j] == b'\\' && j + 1 < b.len() {
                        j += 1;
                    }
                    let ch_len = utf8_len(b[j]);
                    val.push_str(&v[j..(j + ch_len).min(b.len())]);
                    j += ch_len;
                }
                j += 1;
            } else {
                let s = j;
                while j < b.len() && !matches!(b[j], b',' | b' ' | b'\t') {
                    j += 1;
                }
                val.push_str(&v[s..j]);
            }
            if let Some(last) = out.last_mut() {
                last.1.push((token.to_ascii_lowercase(), val));
            }
            i = j;
        } else {
            out.push((token.to_string(), Vec::new()));
            i = j;
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Picks the strongest challenge of a 401 response (Digest over Basic).
pub fn pick_challenge(resp: &HttpResponse) -> Option<Challenge> {
    let mut basic = None;
    for v in resp.header_values("WWW-Authenticate") {
        for (scheme, params) in parse_challenges(v) {
            let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if scheme.eq_ignore_ascii_case("digest") {
                let Some(nonce) = get("nonce") else { continue };
                let qop = get("qop").unwrap_or_default();
                return Some(Challenge::Digest(DigestChallenge {
                    realm: get("realm").unwrap_or_default(),
                    nonce,
                    opaque: get("opaque"),
                    qop_auth: qop
                        .split(',')
                        .any(|q| q.trim().eq_ignore_ascii_case("auth")),
                    algorithm: get("algorithm").unwrap_or_else(|| "MD5".to_string()),
                    stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
                }));
            }
            if scheme.eq_ignore_ascii_case("basic") && basic.is_none() {
                basic = Some(Challenge::Basic {
                    realm: get("realm").unwrap_or_default(),
                });
            }
        }
    }
    basic
}

/// Lower-case hex MD5 of a string.
pub fn md5_hex(s: &str) -> String {
    format!("{:x}", md5::compute(s.as_bytes()))
}

/// HA1 of RFC 2617 (`MD5-sess` folds in nonce and cnonce).
pub fn digest_ha1(
    user: &str,
    realm: &str,
    pass: &str,
    algorithm: &str,
    nonce: &str,
    cnonce: &str,
) -> String {
    let ha1 = md5_hex(&format!("{user}:{realm}:{pass}"));
    if algorithm.eq_ignore_ascii_case("MD5-sess") {
        md5_hex(&format!("{ha1}:{nonce}:{cnonce}"))
    } else {
        ha1
    }
}

/// The RFC 2617 `response` value. `qop_nc_cnonce` is `Some((nc, cnonce))` for `qop=auth`.
pub fn digest_response(
    ha1: &str,
    nonce: &str,
    qop_nc_cnonce: Option<(&str, &str)>,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    match qop_nc_cnonce {
        Some((nc, cnonce)) => md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")),
        None => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[derive(Debug, Clone)]
enum AuthState {
    Basic,
    Digest { ch: DigestChallenge, nc: u32 },
}

struct Conn {
    io: BufReader<TcpStream>,
    requests: usize,
}

/// An HTTP client bound to one server (the ACS, or a file server).
pub struct HttpClient {
    /// Target URL; requests go to its path unless another path is given.
    pub url: Url,
    /// Transport behaviour.
    pub opts: ClientOptions,
    /// User name for Basic/Digest.
    pub username: String,
    /// Password for Basic/Digest.
    pub password: String,
    /// Cookies received so far.
    pub jar: CookieJar,
    /// TCP connections opened so far.
    pub connections_opened: usize,
    /// 401 responses received so far.
    pub challenges: usize,
    /// Times a request was re-sent because a kept-alive connection had been closed.
    pub reconnects: usize,
    conn: Option<Conn>,
    auth: Option<AuthState>,
}

impl HttpClient {
    /// A client for `url` with the given options and credentials. No connection is made yet.
    pub fn new(
        url: &str,
        opts: ClientOptions,
        username: &str,
        password: &str,
    ) -> Result<HttpClient, SimError> {
        Ok(HttpClient {
            url: Url::parse(url)?,
            opts,
            username: username.to_string(),
            password: password.to_string(),
            jar: CookieJar::default(),
            connections_opened: 0,
            challenges: 0,
            reconnects: 0,
            conn: None,
            auth: None,
        })
    }

    /// `host:port` of the server.
    pub fn peer(&self) -> String {
        self.url.authority()
    }

    /// Whether a connection is currently open.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Closes the current connection (the next request opens a new one).
    pub fn close(&mut self) {
        self.conn = None;
    }

    /// POSTs a SOAP envelope with `Content-Type: text/xml; charset="utf-8"` and SOAPAction.
    pub async fn post_soap(&mut self, xml: &str) -> Result<HttpResponse, SimError> {
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "text/xml; charset=\"utf-8\"")];
        match self.opts.soap_action {
            SoapAction::Empty => headers.push(("SOAPAction", "")),
            SoapAction::QuotedEmpty => headers.push(("SOAPAction", "\"\"")),
            SoapAction::Omit => {}
        }
        let chunked = self.opts.chunked && !self.opts.http10;
        self.request("POST", None, &headers, Some(xml.as_bytes()), chunked)
            .await
    }

    /// POSTs an empty body (`Content-Length: 0`, no Content-Type, no SOAPAction).
    pub async fn post_empty(&mut self) -> Result<HttpResponse, SimError> {
        self.request("POST", None, &[], Some(&[]), false).await
    }

    /// POSTs arbitrary bytes with exactly the given extra headers (Host, User-Agent, Cookie,
    /// Authorization and Connection are still added; Content-Length too unless the headers
    /// already carry Content-Length or Transfer-Encoding, in which case `body` is sent as is).
    pub async fn post_raw(
        &mut self,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<HttpResponse, SimError> {
        self.request("POST", None, headers, Some(body), false).await
    }

    /// GET of `path` (or the URL path).
    pub async fn get(&mut self, path: Option<&str>) -> Result<HttpResponse, SimError> {
        self.request("GET", path, &[], None, false).await
    }

    /// Sends a request with authentication retries. `body: None` sends no body framing.
    pub async fn request(
        &mut self,
        method: &str,
        path: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        chunked: bool,
    ) -> Result<HttpResponse, SimError> {
        let target = path.unwrap_or(&self.url.path).to_string();
        let mut answered_fresh = false;
        let mut rounds = 0;
        loop {
            let resp = self
                .roundtrip(method, &target, headers, body, chunked, false)
                .await?
                .ok_or_else(|| SimError::Protocol("request was not answered".into()))?;
            if resp.status != 401 {
                return Ok(resp);
            }
            self.challenges += 1;
            let Some(ch) = pick_challenge(&resp) else {
                return Ok(resp);
            };
            let stale = matches!(&ch, Challenge::Digest(d) if d.stale);
            if (answered_fresh && !stale) || rounds >= 4 {
                return Err(SimError::AuthFailed {
                    user: self.username.clone(),
                });
            }
            self.auth = Some(match ch {
                Challenge::Basic { .. } => AuthState::Basic,
                Challenge::Digest(d) => AuthState::Digest { ch: d, nc: 0 },
            });
            answered_fresh = true;
            rounds += 1;
        }
    }

    /// Writes a POST of `body` and closes the connection without reading the answer
    /// (used to simulate a connection lost mid-session).
    pub async fn post_and_drop(&mut self, body: Option<&str>) -> Result<(), SimError> {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if body.is_some() {
            headers.push(("Content-Type", "text/xml; charset=\"utf-8\""));
            headers.push(("SOAPAction", ""));
        }
        let target = self.url.path.clone();
        let bytes = body.map(str::as_bytes).unwrap_or(&[]);
        self.roundtrip("POST", &target, &headers, Some(bytes), false, true)
            .await?;
        self.conn = None;
        Ok(())
    }

    fn authorization(&mut self, method: &str, uri: &str) -> Option<String> {
        match self.auth.as_mut()? {
            AuthState::Basic => {
                let raw = format!("{}:{}", self.username, self.password);
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ))
            }
            AuthState::Digest { ch, nc } => {
                *nc += 1;
                let cnonce = format!("{:016x}", rand::random::<u64>());
                let nc_s = format!("{:08x}", *nc);
                let ha1 = digest_ha1(
                    &self.username,
                    &ch.realm,
                    &self.password,
                    &ch.algorithm,
                    &ch.nonce,
                    &cnonce,
                );
                let qop = ch.qop_auth.then_some((nc_s.as_str(), cnonce.as_str()));
                let resp = digest_response(&ha1, &ch.nonce, qop, method, uri);
                let mut h = format!(
                    "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", algorithm={}, response=\"{}\"",
                    quote(&self.username),
                    quote(&ch.realm),
                    quote(&ch.nonce),
                    quote(uri),
                    ch.algorithm,
                    resp
                );
                if ch.qop_auth {
                    h.push_str(&format!(", qop=auth, nc={nc_s}, cnonce=\"{cnonce}\""));
                }
                if let Some(o) = &ch.opaque {
                    h.push_str(&format!(", opaque=\"{}\"", quote(o)));
                }
                Some(h)
            }
        }
    }

    fn build(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        chunked: bool,
    ) -> Vec<u8> {
        let minor = if self.opts.http10 { 0 } else { 1 };
        let mut head = format!(
            "{method} {target} HTTP/1.{minor}\r\nHost: {}\r\nUser-Agent: {}\r\n",
            self.url.authority(),
            self.opts.user_agent
        );
        if self.opts.http10 {
            if self.opts.keep_alive {
                head.push_str("Connection: keep-alive\r\n");
            }
        } else if !self.opts.keep_alive {
            head.push_str("Connection: close\r\n");
        }
        if let Some(a) = self.authorization(method, target) {
            head.push_str("Authorization: ");
            head.push_str(&a);
            head.push_str("\r\n");
        }
        if self.opts.cookies {
            if let Some(c) = self.jar.header_for(target) {
                head.push_str("Cookie: ");
                head.push_str(&c);
                head.push_str("\r\n");
            }
        }
        let mut framed = false;
        for (k, v) in headers {
            framed |= k.eq_ignore_ascii_case("content-length")
                || k.eq_ignore_ascii_case("transfer-encoding");
            head.push_str(k);
            head.push(':');
            if !v.is_empty() {
                head.push(' ');
                head.push_str(v);
            }
            head.push_str("\r\n");
        }
        let mut out = Vec::with_capacity(head.len() + body.map_or(0, <[u8]>::len) + 32);
        match body {
            Some(b) if framed => {
                head.push_str("\r\n");
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(b);
            }
            Some(b) if chunked => {
                head.push_str("Transfer-Encoding: chunked\r\n\r\n");
                out.extend_from_slice(head.as_bytes());
                if !b.is_empty() {
                    out.extend_from_slice(format!("{:x}\r\n", b.len()).as_bytes());
                    out.extend_from_slice(b);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            Some(b) => {
                head.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(b);
            }
            None => {
                head.push_str("\r\n");
                out.extend_from_slice(head.as_bytes());
            }
        }
        out
    }

    async fn connect(&mut self) -> Result<(), SimError> {
        let peer = self.peer();
        let fut = TcpStream::connect((self.url.host.as_str(), self.url.port));
        let stream = tokio::time::timeout(self.opts.timeout, fut)
            .await
            .map_err(|_| SimError::Timeout(self.opts.timeout, format!("TCP connect to {peer}")))?
            .map_err(|source| SimError::Io { peer, source })?;
        let _ = stream.set_nodelay(true);
        self.connections_opened += 1;
        self.conn = Some(Conn {
            io: BufReader::with_capacity(16 * 1024, stream),
            requests: 0,
        });
        Ok(())
    }

    /// One request/response exchange, re-sent once on a new connection when a kept-alive
    /// connection turns out to be closed before any response byte arrived.
    async fn roundtrip(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        chunked: bool,
        write_only: bool,
    ) -> Result<Option<HttpResponse>, SimError> {
        let peer = self.peer();
        for attempt in 0..2 {
            if self.conn.is_none() {
                self.connect().await?;
            }
            let reused = self.conn.as_ref().is_some_and(|c| c.requests > 0);
            let bytes = self.build(method, target, headers, body, chunked);
            let timeout = self.opts.timeout;
            let Some(conn) = self.conn.as_mut() else {
                return Err(SimError::Protocol("no connection".into()));
            };
            let write = tokio::time::timeout(timeout, async {
                conn.io.get_mut().write_all(&bytes).await?;
                conn.io.get_mut().flush().await
            })
            .await
            .map_err(|_| SimError::Timeout(timeout, format!("sending a request to {peer}")))?;
            if let Err(source) = write {
                self.conn = None;
                if reused && attempt == 0 {
                    self.reconnects += 1;
                    continue;
                }
                return Err(SimError::Io { peer, source });
            }
            if write_only {
                return Ok(None);
            }
            let head_only = method.eq_ignore_ascii_case("HEAD");
            let read = tokio::time::timeout(timeout, read_response(&mut conn.io, head_only))
                .await
                .map_err(|_| SimError::Timeout(timeout, format!("the response of {peer}")))?;
            let resp = match read {
                Ok(r) => r,
                Err(ReadError::Closed) if reused && attempt == 0 => {
                    self.conn = None;
                    self.reconnects += 1;
                    continue;
                }
                Err(ReadError::Closed) => {
                    self.conn = None;
                    return Err(SimError::Io {
                        peer,
                        source: std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "connection closed before a response arrived",
                        ),
                    });
                }
                Err(ReadError::Io(source)) => {
                    self.conn = None;
                    return Err(SimError::Io { peer, source });
                }
                Err(ReadError::Bad(detail)) => {
                    self.conn = None;
                    return Err(SimError::Http { peer, detail });
                }
            };
            conn.requests += 1;
            let close = resp.0 || resp.1.closes() || !self.opts.keep_alive;
            if self.opts.cookies {
                let path = target.to_string();
                for v in resp.1.header_values("Set-Cookie") {
                    self.jar.store(v, &path);
                }
            }
            if close {
                self.conn = None;
            }
            return Ok(Some(resp.1));
        }
        Err(SimError::Io {
            peer,
            source: std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection lost twice",
            ),
        })
    }
}

/// Why reading a message failed.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection before the first byte.
    Closed,
    /// Socket error.
    Io(std::io::Error),
    /// Not HTTP.
    Bad(String),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Reads the start line and headers. Returns `Closed` on EOF before any byte.
async fn read_head<R: AsyncBufRead + Unpin>(
    r: &mut R,
) -> Result<(String, Vec<(String, String)>), ReadError> {
    let mut first = Vec::new();
    // Tolerate blank lines before the start line (RFC 9112 §2.2).
    loop {
        first.clear();
        let n = r.read_until(b'\n', &mut first).await?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        if first.iter().any(|b| !b.is_ascii_whitespace()) {
            break;
        }
    }
    let start = String::from_utf8_lossy(&first).trim_end().to_string();
    let mut headers = Vec::new();
    let mut total = first.len();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Err(ReadError::Bad(
                "connection closed inside the header block".into(),
            ));
        }
        total += n;
        if total > MAX_HEAD {
            return Err(ReadError::Bad("header block larger than 64 KiB".into()));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            break;
        }
        if text.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                let v: &mut String = v;
                v.push(' ');
                v.push_str(text.trim());
            }
            continue;
        }
        let (k, v) = text
            .split_once(':')
            .ok_or_else(|| ReadError::Bad(format!("header line without colon: {text:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok((start, headers))
}

/// Reads a body framed by chunked encoding or Content-Length. With neither, reads until
/// EOF when `to_eof` (then the connection must be closed) or takes an empty body.
async fn read_body<R: AsyncBufRead + Unpin>(
    r: &mut R,
    headers: &[(String, String)],
    to_eof: bool,
) -> Result<(Vec<u8>, bool), ReadError> {
    let te = find_header(headers, "Transfer-Encoding").unwrap_or("");
    if te.to_ascii_lowercase().contains("chunked") {
        let mut body = Vec::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            r.read_until(b'\n', &mut line).await?;
            let s = String::from_utf8_lossy(&line);
            let size_s = s.trim().split(';').next().unwrap_or("").trim().to_string();
            if size_s.is_empty() && line.is_empty() {
                return Err(ReadError::Bad(
                    "connection closed inside chunked body".into(),
                ));
            }
            let size = usize::from_str_radix(&size_s, 16)
                .map_err(|_| ReadError::Bad(format!("bad chunk size {size_s:?}")))?;
            if size == 0 {
                loop {
                    line.clear();
                    let n = r.read_until(b'\n', &mut line).await?;
                    if n == 0 || line.iter().all(|b| b.is_ascii_whitespace()) {
                        break;
                    }
                }
                return Ok((body, false));
            }
            if body.len() + size > MAX_BODY {
                return Err(ReadError::Bad("body too large".into()));
            }
            let at = body.len();
            body.resize(at + size, 0);
            r.read_exact(&mut body[at..]).await?;
            line.clear();
            r.read_until(b'\n', &mut line).await?;
        }
    }
    if let Some(cl) = find_header(headers, "Content-Length") {
        let n: usize = cl
            .trim()
            .parse()
            .map_err(|_| ReadError::Bad(format!("bad Content-Length {cl:?}")))?;
        if n > MAX_BODY {
            return Err(ReadError::Bad("body too large".into()));
        }
        let mut body = vec![0; n];
        r.read_exact(&mut body).await?;
        return Ok((body, false));
    }
    if to_eof {
        let mut body = Vec::new();
        r.read_to_end(&mut body).await?;
        return Ok((body, true));
    }
    Ok((Vec::new(), false))
}

/// Reads one response. The boolean is true when the body was delimited by connection close.
pub async fn read_response<R: AsyncBufRead + Unpin>(
    r: &mut R,
    head_only: bool,
) -> Result<(bool, HttpResponse), ReadError> {
    loop {
        let (start, headers) = read_head(r).await?;
        let mut parts = start.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(ReadError::Bad(format!(
                "not an HTTP/1.x status line: {start:?}"
            )));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ReadError::Bad(format!("bad status line {start:?}")))?;
        let reason = parts.next().unwrap_or("").to_string();
        if (100..200).contains(&status) {
            continue;
        }
        let mut resp = HttpResponse {
            status,
            reason,
            headers,
            body: Vec::new(),
            http10: version == "HTTP/1.0",
        };
        if head_only || status == 204 || status == 304 {
            return Ok((false, resp));
        }
        let (body, closed) = read_body(r, &resp.headers, true).await?;
        resp.body = body;
        return Ok((closed, resp));
    }
}

/// A request received by the connection-request server.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// Method.
    pub method: String,
    /// Request target as sent.
    pub target: String,
    /// True for HTTP/1.0.
    pub http10: bool,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body (usually empty).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Whether the client wants the connection kept open after this request.
    pub fn keep_alive(&self) -> bool {
        match self.header("Connection").map(str::to_ascii_lowercase) {
            Some(v) if v.contains("close") => false,
            Some(v) if v.contains("keep-alive") => true,
            _ => !self.http10,
        }
    }
}

/// Reads one request; `Ok(None)` on a clean close before the first byte.
pub async fn read_request<R: AsyncBufRead + Unpin>(
    r: &mut R,
) -> Result<Option<HttpRequest>, ReadError> {
    let (start, headers) = match read_head(r).await {
        Ok(h) => h,
        Err(ReadError::Closed) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut parts = start.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let version = parts.next().unwrap_or("");
    if method.is_empty() || target.is_empty() || !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad(format!("bad request line {start:?}")));
    }
    let (body, _) = read_body(r, &headers, false).await?;
    Ok(Some(HttpRequest {
        method,
        target,
        http10: version == "HTTP/1.0",
        headers,
        body,
    }))
}

/// Writes a response with a Content-Length body.
pub async fn write_response<W: AsyncWrite + Unpin>(
    w: &mut W,
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    w.write_all(&bytes).await?;
    w.flush().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        let u = Url::parse("http://127.0.0.1:7547/acs?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 7547, "/acs?x=1")
        );
        let u = Url::parse("http://acs.example").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        let u = Url::parse("http://[::1]:99/p").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 99));
        assert_eq!(u.authority(), "[::1]:99");
        assert!(Url::parse("https://x/").is_err());
    }

    #[test]
    fn cookie_jar() {
        let mut j = CookieJar::default();
        j.store("session=abc; Path=/; HttpOnly", "/acs");
        j.store("other=\"q\"", "/acs/in");
        j.store("scoped=1; Path=/admin", "/acs");
        assert_eq!(j.header_for("/").as_deref(), Some("session=abc"));
        assert_eq!(j.header_for("/acsx").as_deref(), Some("session=abc"));
        assert_eq!(
            j.header_for("/acs/x").as_deref(),
            Some("session=abc; other=q")
        );
        j.store("session=; Max-Age=0; Path=/", "/");
        assert_eq!(j.header_for("/"), None);
        assert_eq!(j.header_for("/administrator"), None);
        assert_eq!(j.header_for("/admin/x").as_deref(), Some("scoped=1"));
        assert_eq!(j.header_for("/admin").as_deref(), Some("scoped=1"));
    }

    #[test]
    fn challenge_parsing() {
        let v = parse_challenges(
            "Digest realm=\"GenieACS, x\", qop=\"auth,auth-int\", nonce=\"n\\\"1\", algorithm=MD5, Basic realm=\"b\"",
        );
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].0, "Digest");
        assert!(v[0].1.contains(&("realm".into(), "GenieACS, x".into())));
        assert!(v[0].1.contains(&("nonce".into(), "n\"1".into())));
        assert_eq!(v[1].0, "Basic");
        let resp = HttpResponse {
            status: 401,
            headers: vec![
                ("WWW-Authenticate".into(), "Basic realm=\"b\"".into()),
                (
                    "WWW-Authenticate".into(),
                    "Digest realm=\"r\", nonce=\"abc\", qop=\"auth\", stale=TRUE".into(),
                ),
            ],
            ..HttpResponse::default()
        };
        match pick_challenge(&resp).unwrap() {
            Challenge::Digest(d) => {
                assert!(d.qop_auth && d.stale);
                assert_eq!(d.nonce, "abc");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rfc2617_example() {
        // The worked example of RFC 2617 §3.5.
        let ha1 = digest_ha1(
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "MD5",
            "",
            "",
        );
        let r = digest_response(
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("00000001", "0a4f113b")),
            "GET",
            "/dir/index.html",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[tokio::test]
    async fn response_framing() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let mut r = BufReader::new(&raw[..]);
        let (closed, resp) = read_response(&mut r, false).await.unwrap();
        assert!(!closed);
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"abcde"[..]));
        let raw = b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<x/>";
        let mut r = BufReader::new(&raw[..]);
        let (closed, resp) = read_response(&mut r, false).await.unwrap();
        assert!(closed && resp.http10 && resp.closes());
        assert_eq!(resp.body, b"<x/>");
        let raw = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        let mut r = BufReader::new(&raw[..]);
        let (_, resp) = read_response(&mut r, false).await.unwrap();
        assert!(resp.closes() && resp.body.is_empty());
    }
}
