//! The CPE-facing CWMP endpoint: POST on any path.
//!
//! This layer only turns HTTP into calls of the session driver ([`crate::domain::driver`])
//! and its answers back into HTTP: it authenticates the CPE, reads and decompresses bodies
//! under size limits, finds the session (by cookie, or by TCP connection for CPEs that
//! ignore cookies), and writes status codes, cookies and headers. The sessions themselves
//! (the live registry, resumption, takeover, the reaper, the session log) are the driver's.

pub mod auth;
mod body;

use std::any::Any;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix_web::dev::Extensions;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::config::Config;
use crate::cwmp::{self, Outgoing};
use crate::domain::driver::{Answer, LiveRef, OpenError, Refused};
use crate::error::Error;
use crate::http::tls::ClientCert;
use crate::state::AppState;

/// Name of the session cookie.
pub const COOKIE: &str = "ferroacs_session";

/// Per-connection data attached by [`on_connect`].
#[derive(Clone)]
pub struct ConnInfo {
    pub id: u64,
    pub tls: bool,
    pub client_cert: ClientCert,
    _guard: Arc<ConnGuard>,
}

impl ConnInfo {
    /// The connection presented a CPE certificate (of `cwmp.tls_client_ca`).
    pub fn cpe_cert(&self) -> bool {
        self.client_cert == ClientCert::Cpe
    }
}

/// Dropped with the connection: saves the connection's unfinished session, if any.
struct ConnGuard {
    id: u64,
    state: std::sync::Weak<AppState>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        let Some(sid) = state.driver.unbind(self.id) else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let conn_id = self.id;
        handle.spawn(async move {
            state.driver.connection_closed(sid, conn_id).await;
        });
    }
}

/// Attach connection data (id, TLS, client certificate) to every new connection. The
/// certificate is classified by the CA its chain verifies against (`client_cas`), once per
/// connection.
pub fn on_connect(
    state: &Arc<AppState>,
    client_cas: Option<&crate::http::tls::ClientCas>,
    conn: &dyn Any,
    ext: &mut Extensions,
) {
    use crate::http::tls::ClientCa;
    let id = state.cwmp.next_conn.fetch_add(1, Ordering::Relaxed);
    let mut tls = false;
    let mut client_cert = ClientCert::None;
    if let Some(s) = conn
        .downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>>()
    {
        tls = true;
        if let (Some(cas), Some(chain)) = (client_cas, s.get_ref().1.peer_certificates()) {
            client_cert = match cas.classify(chain) {
                Some(ClientCa::Cpe) => ClientCert::Cpe,
                Some(ClientCa::Phone) => {
                    ClientCert::Phone(crate::phones::cert::mac_of_certificate(chain[0].as_ref()))
                }
                None => ClientCert::None,
            };
        }
    }
    // Also on its own, for the phones' `/prov/cert/` (which does not reach into this module).
    ext.insert(client_cert.clone());
    ext.insert(ConnInfo {
        id,
        tls,
        client_cert,
        _guard: Arc::new(ConnGuard {
            id,
            state: Arc::downgrade(state),
        }),
    });
}

pub fn configure(cfg: &mut web::ServiceConfig, _tls: bool) {
    crate::http::fileserver::configure(cfg);
    crate::http::phones::configure(cfg);
    cfg.default_service(web::to(endpoint));
}

fn peer_ip(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// The client's address: the peer's, or for a request from a proxy in
/// `cwmp.trusted_proxies`, the last address of X-Forwarded-For that is not such a proxy.
/// A trusted proxy's request with an unreadable X-Forwarded-For is the proxy's own.
pub fn client_ip(req: &HttpRequest, cfg: &Config) -> IpAddr {
    let peer = peer_ip(req);
    if cfg.cwmp.trusted_proxies.is_empty() {
        return peer;
    }
    let trusted = crate::config::ip_nets(&cfg.cwmp.trusted_proxies);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut hops = Vec::new();
    for v in req.headers().get_all("x-forwarded-for") {
        let Ok(v) = v.to_str() else { return peer };
        for hop in v.split(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                Err(_) => return peer,
            }
        }
    }
    hops.iter()
        .rev()
        .find(|ip| !is_trusted(**ip))
        .or(hops.first())
        .copied()
        .unwrap_or(peer)
}

/// A request body: still to read, or already read and decoded (an Inform that arrived on a
/// connection carrying a session).
enum Body {
    Unread(web::Payload),
    Decoded(Vec<u8>),
}

/// The base URL devices use for files: configured, or this listener as the device reached it.
pub fn files_base_url(cfg: &Config, req: &HttpRequest) -> String {
    if let Some(u) = &cfg.files.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

fn text(status: StatusCode, msg: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(format!("{msg}\n"))
}

fn soap(body: String, close: bool) -> HttpResponse {
    let mut b = HttpResponse::Ok();
    b.content_type("text/xml; charset=\"utf-8\"");
    if close {
        b.insert_header((header::CONNECTION, "close"));
    }
    b.body(body)
}

fn no_content() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::CONTENT_LENGTH, "0"))
        .finish()
}

fn unavailable(retry_after: u64, msg: &str) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header((header::RETRY_AFTER, retry_after.to_string()))
        .content_type("text/plain; charset=utf-8")
        .body(format!("{msg}\n"))
}

fn session_cookie(req: &HttpRequest) -> Option<String> {
    // Some CPEs separate cookies with ',' instead of ';'.
    for v in req.headers().get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for part in s.split([';', ',']) {
            if let Some((k, val)) = part.trim().split_once('=') {
                if k.trim() == COOKIE {
                    let val = val.trim().trim_matches('"');
                    if !val.is_empty()
                        && val.len() <= 64
                        && val.bytes().all(|b| b.is_ascii_alphanumeric())
                    {
                        return Some(val.to_string());
                    }
                }
            }
        }
    }
    None
}

/// POST on any path.
pub async fn endpoint(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    if req.method() != Method::POST {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "POST"))
            .content_type("text/plain; charset=utf-8")
            .body("CWMP endpoint: only POST is accepted\n");
    }
    let state = state.into_inner();
    let driver = &state.driver;
    let conn = req.conn_data::<ConnInfo>().cloned();
    let conn_id = conn.as_ref().map(|c| c.id);
    let cookie = session_cookie(&req);
    // The session this TCP connection authenticated, if any: it continues without new
    // credentials (cookie-less CPEs are followed this way).
    // A request from another client than the session's (a proxy that carries several
    // clients' requests over one server connection) is not continued this way.
    let mut bound = conn_id
        .and_then(|c| driver.bound_to(c))
        .filter(|b| cookie.as_ref().is_none_or(|c| c == b));
    if let Some(sid) = &bound {
        if let Some(live) = driver.live(sid) {
            let client = client_ip(&req, &state.config).to_string();
            if live.lock().await.dev.source_ip == client {
                return continue_session(&state, &req, payload, live, conn_id, None).await;
            }
            tracing::debug!(session = %sid, %client, "request from another client on a connection carrying a session; not continuing it");
            bound = None;
        }
    }
    // A cookie from another connection (a CPE that reconnected, a session saved by any
    // node): the request must carry fresh credentials of the session's device. A cookie
    // alone is a bearer token anyone on the path could replay.
    if let Some(sid) = cookie.filter(|c| bound.as_ref() != Some(c)) {
        let live = driver.live(&sid);
        let owner = match driver.owner(&sid, live.as_ref()).await {
            Ok(owner) => owner,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look up a saved session");
                return unavailable(10, "database unavailable");
            }
        };
        if let Some((device_id, opened_with_default)) = owner {
            let tls = conn.as_ref().is_some_and(|c| c.tls);
            let principal = match state
                .cwmp
                .auth
                .authenticate(
                    &state,
                    &req,
                    tls,
                    conn.as_ref().is_some_and(|c| c.cpe_cert()),
                )
                .await
            {
                Ok(p) => p,
                // The body is left unread: the connection closes and the CPE retries on a
                // new one with credentials.
                Err(mut resp) => {
                    resp.headers_mut().insert(
                        header::CONNECTION,
                        header::HeaderValue::from_static("close"),
                    );
                    return resp;
                }
            };
            if !principal.may_continue(&device_id, opened_with_default) {
                return state.cwmp.auth.reject(
                    client_ip(&req, &state.config),
                    state.now(),
                    &format!("credentials that do not open {device_id} presented with its session cookie"),
                    tls,
                );
            }
            if let Some(live) = live {
                return continue_session(&state, &req, payload, live, conn_id, Some(principal))
                    .await;
            }
            // Not here: saved by a connection that closed (on any node).
            match driver.resume_saved(&sid, conn_id).await {
                Ok(Some(live)) => {
                    return continue_session(&state, &req, payload, live, conn_id, Some(principal))
                        .await
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look up a saved session");
                    return unavailable(10, "database unavailable");
                }
            }
            return new_session(
                &state,
                &req,
                Body::Unread(payload),
                conn.as_ref(),
                Some(principal),
            )
            .await;
        }
    }
    new_session(&state, &req, Body::Unread(payload), conn.as_ref(), None).await
}

/// `authenticated`: the request's credentials, when they were already checked.
async fn new_session(
    state: &Arc<AppState>,
    req: &HttpRequest,
    incoming: Body,
    conn: Option<&ConnInfo>,
    authenticated: Option<auth::Principal>,
) -> HttpResponse {
    let ip = client_ip(req, &state.config);
    let now = state.now();
    if let Some(retry) = state.cwmp.auth.blocked(req, ip, now) {
        return unavailable(
            retry,
            "too many failed logins with these credentials from this address; retry later",
        );
    }
    if state.driver.overloaded() {
        return unavailable(60, "too many sessions in progress; retry later");
    }
    // Read the raw (size-capped, still compressed) body even when the request will be
    // challenged: a CPE resends on the same connection after a 401, which needs the body
    // consumed. Nothing is inflated before the CPE has authenticated.
    let limit = state.config.cwmp.max_inform_bytes;
    let (raw, encoding) = match incoming {
        Body::Unread(payload) => {
            let encoding = match body::encoding(req) {
                Ok(e) => e,
                Err(resp) => return resp,
            };
            let timeout = std::time::Duration::from_secs(state.config.cwmp.body_timeout_secs);
            match body::read_raw(req, payload, limit, Some(timeout)).await {
                Ok(b) => (b, Some(encoding)),
                Err(resp) => return resp,
            }
        }
        Body::Decoded(raw) if raw.len() > limit => return body::too_large(limit),
        Body::Decoded(raw) => (raw, None),
    };
    // An empty POST outside any session (a CPE with nothing to say, e.g. after its session
    // ended): nothing to authenticate, open or store. 204 at once, without a cookie.
    if raw.is_empty() {
        return no_content();
    }
    let tls = conn.is_some_and(|c| c.tls);
    let principal = match authenticated {
        Some(p) => p,
        None => match state
            .cwmp
            .auth
            .authenticate(state, req, tls, conn.is_some_and(|c| c.cpe_cert()))
            .await
        {
            Ok(p) => p,
            Err(resp) => return resp,
        },
    };
    let raw = match encoding {
        Some(encoding) => match body::decode(raw, encoding, limit).await {
            Ok(b) => b,
            Err(resp) => return resp,
        },
        None => raw,
    };
    let msg = match parse(req, &raw) {
        Ok(m) => m,
        Err(resp) => {
            state
                .driver
                .metrics
                .bad_requests
                .fetch_add(1, Ordering::Relaxed);
            return resp;
        }
    };
    let Some(envelope) = msg else {
        // Nothing in it once decoded (white space, an empty SOAP Body): nothing to say either.
        return no_content();
    };
    let opening = match state.driver.open(envelope) {
        Ok(o) => o,
        Err(OpenError::Protocol(ns, e)) => return protocol_error(state, ns, &e),
        Err(OpenError::NotInform) => {
            return text(
                StatusCode::BAD_REQUEST,
                "Bad session state: a session must start with an Inform",
            )
        }
    };
    if let Err(resp) =
        state
            .cwmp
            .auth
            .authorize_device(&principal, &opening.device_id, ip, state.now())
    {
        return resp;
    }
    let device_id = opening.device_id.clone();
    let started = state
        .driver
        .start(
            opening,
            &ip.to_string(),
            principal.login(),
            conn.map(|c| c.id),
            files_base_url(&state.config, req),
        )
        .await;
    let started = match started {
        Ok(s) => s,
        Err(Refused::Busy) => return unavailable(30, "CPE already in session"),
        Err(Refused::WrongCredentials(why)) => {
            return state
                .cwmp
                .auth
                .reject_shared(ip, state.now(), &device_id, &why, tls);
        }
        Err(Refused::Rejected(why)) => return text(StatusCode::FORBIDDEN, &why),
        Err(Refused::Invalid { field, message }) => {
            return text(StatusCode::BAD_REQUEST, &format!("{field}: {message}"));
        }
        Err(Refused::Unavailable) => return unavailable(30, "database unavailable"),
        Err(Refused::Internal) => {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    trace(state, started.ns, "in", &raw);
    let mut resp = write(state, started.ns, started.out, started.done);
    let mut cookie = actix_web::cookie::Cookie::new(COOKIE, started.sid);
    cookie.set_path("/");
    cookie.set_http_only(true);
    if tls {
        cookie.set_secure(true);
    }
    let _ = resp.add_cookie(&cookie);
    resp
}

fn parse(
    req: &HttpRequest,
    raw: &[u8],
) -> std::result::Result<Option<cwmp::Envelope>, HttpResponse> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let xml =
        cwmp::decode_body(raw, ct).map_err(|e| text(StatusCode::BAD_REQUEST, &e.to_string()))?;
    cwmp::parse_incoming(&xml).map_err(|e| {
        tracing::info!(error = %e, "unparseable CWMP message");
        text(StatusCode::BAD_REQUEST, &e.to_string())
    })
}

fn write(state: &AppState, ns: cwmp::CwmpNs, out: Outgoing, close: bool) -> HttpResponse {
    match out {
        Outgoing::Envelope(xml) => {
            trace(state, ns, "out", xml.as_bytes());
            soap(xml, close)
        }
        Outgoing::Empty => no_content(),
    }
}

static TRACE_SEQ: AtomicU64 = AtomicU64::new(0);

/// With `log.cwmp_trace_dir` set, keep a copy of every envelope, named
/// `<seq>-<in|out>-<cwmp namespace suffix>.xml`, its secrets blanked (`cwmp::redact`: the
/// values of secret parameters, transfer credentials).
fn trace(state: &AppState, ns: cwmp::CwmpNs, dir: &str, body: &[u8]) {
    let Some(path) = &state.config.log.cwmp_trace_dir else {
        return;
    };
    if body.is_empty() {
        return;
    }
    let seq = TRACE_SEQ.fetch_add(1, Ordering::Relaxed);
    let suffix = ns.as_uri().rsplit(':').next().unwrap_or("cwmp");
    let file = path.join(format!("{seq:08}-{dir}-{suffix}.xml"));
    let Some(body) = cwmp::redact::redact(body, &crate::domain::params::is_secret) else {
        tracing::warn!(file = %file.display(), "envelope not traced: it cannot be read to blank its secrets");
        return;
    };
    if let Err(e) = std::fs::write(&file, body) {
        tracing::warn!(error = %e, file = %file.display(), "cannot write the CWMP trace");
    }
}

fn protocol_error(state: &AppState, ns: cwmp::CwmpNs, e: &cwmp::ProtocolError) -> HttpResponse {
    match e.reply() {
        cwmp::ErrorReply::Fault(xml) => {
            trace(state, ns, "out", xml.as_bytes());
            soap(xml.to_string(), false)
        }
        cwmp::ErrorReply::BadRequest => text(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// `authenticated`: the credentials this request carried, already checked (a session named
/// by its cookie on another connection); `None` when the request continues its connection's
/// session without credentials.
async fn continue_session(
    state: &Arc<AppState>,
    req: &HttpRequest,
    payload: web::Payload,
    live: LiveRef,
    conn_id: Option<u64>,
    authenticated: Option<auth::Principal>,
) -> HttpResponse {
    let driver = &state.driver;
    let mut l = live.lock().await;
    if l.ended {
        return no_content();
    }
    if !driver.touch(&mut l, conn_id).await {
        // Resumed on another node meanwhile: that node owns the session now.
        return text(
            StatusCode::CONFLICT,
            "this session continues on another ACS node",
        );
    }
    let raw = match body::read(req, payload, state.config.cwmp.max_body_bytes).await {
        Ok(b) => b,
        Err(resp) => {
            tracing::warn!(device = %l.dev.device_id, "request body refused; ending the session");
            driver
                .fail(&mut l, None, files_base_url(&state.config, req))
                .await;
            return resp;
        }
    };
    let msg = match parse(req, &raw) {
        Ok(m) => m,
        Err(resp) => {
            driver.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(device = %l.dev.device_id, "malformed message inside a session; ending it");
            driver
                .fail(
                    &mut l,
                    Some("malformed message from the CPE"),
                    files_base_url(&state.config, req),
                )
                .await;
            return resp;
        }
    };
    if let Some(cwmp::Envelope {
        body: cwmp::IncomingBody::Request(cwmp::CpeRequest::Inform(_)),
        ..
    }) = &msg
    {
        // An Inform opens (or takes over) a session of the device it names and never
        // continues this one: the CPE started over, or a proxy sent another client's
        // request over this connection. The connection no longer carries this session.
        drop(l);
        if let Some(c) = conn_id {
            if let Some(sid) = driver.unbind(c) {
                driver.connection_closed(sid, c).await;
            }
        }
        // Credentials this request carried were checked once already: a second check of
        // the same Digest response would see its nonce count again, as a replay.
        let conn = req.conn_data::<ConnInfo>().cloned();
        return new_session(state, req, Body::Decoded(raw), conn.as_ref(), authenticated).await;
    }
    trace(state, l.engine.ns(), "in", &raw);
    let answer = driver
        .step(&mut l, msg, files_base_url(&state.config, req))
        .await;
    match answer {
        Answer::Send { out, done } => write(state, l.engine.ns(), out, done),
        Answer::Protocol(err) => protocol_error(state, l.engine.ns(), &err),
        Answer::Failed(Error::Unavailable { .. }) => unavailable(30, "database unavailable"),
        Answer::Failed(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the ACS log has the details",
        ),
    }
}
