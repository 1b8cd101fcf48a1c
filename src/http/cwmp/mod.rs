//! The CPE-facing CWMP endpoint: POST on any path.
//!
//! This layer only moves bytes and keeps sessions apart: it authenticates the CPE, reads and
//! decompresses bodies under size limits, finds the session (by cookie, or by TCP connection
//! for CPEs that ignore cookies), feeds the protocol state machine ([`crate::cwmp::Session`])
//! and the business rules ([`crate::domain::session`]), and writes the answer.
//!
//! Live sessions are kept in memory. A session whose connection closes before it ends is
//! saved to the database, so the CPE can continue it on a new connection, on this node or
//! another, by presenting its cookie.

pub mod auth;
mod body;

use std::any::Any;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::dev::Extensions;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use dashmap::DashMap;

use crate::config::Config;
use crate::cwmp::{self, CwmpFault, Outgoing, Step};
use crate::domain::session::{self as dsession, Begin, DeviceSession, Env, Outcome};
use crate::error::{Error, Result};
use crate::state::AppState;
pub use crate::state::{CwmpMetrics, CwmpState, Live};
use crate::store::sessions::NewSessionLog;
use crate::store::Store;

/// Name of the session cookie.
pub const COOKIE: &str = "ferroacs_session";

impl CwmpState {
    pub fn new(config: &Config, store: &Store) -> Result<CwmpState> {
        Ok(CwmpState {
            auth: auth::CpeAuthenticator::new(config, store)?,
            live: DashMap::new(),
            by_conn: DashMap::new(),
            next_conn: AtomicU64::new(1),
            log_buf: Mutex::new(Vec::new()),
            log_notify: tokio::sync::Notify::new(),
            metrics: CwmpMetrics::default(),
        })
    }

    fn log(&self, row: NewSessionLog) {
        if let Ok(mut b) = self.log_buf.lock() {
            b.push(row);
            if b.len() >= 500 {
                self.log_notify.notify_one();
            }
        }
    }

    fn take_logs(&self) -> Vec<NewSessionLog> {
        self.log_buf
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default()
    }
}

/// Per-connection data attached by [`on_connect`].
#[derive(Clone)]
pub struct ConnInfo {
    pub id: u64,
    pub tls: bool,
    pub client_cert: bool,
    _guard: Arc<ConnGuard>,
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
        let Some((_, sid)) = state.cwmp.by_conn.remove(&self.id) else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let conn_id = self.id;
        handle.spawn(async move {
            connection_closed(state, sid, conn_id).await;
        });
    }
}

/// Attach connection data (id, TLS, client certificate) to every new connection.
pub fn on_connect(state: &Arc<AppState>, conn: &dyn Any, ext: &mut Extensions) {
    let id = state.cwmp.next_conn.fetch_add(1, Ordering::Relaxed);
    let mut tls = false;
    let mut client_cert = false;
    if let Some(s) = conn
        .downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>>()
    {
        tls = true;
        client_cert = s
            .get_ref()
            .1
            .peer_certificates()
            .is_some_and(|c| !c.is_empty());
    }
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
    cfg.default_service(web::to(endpoint));
}

fn peer_ip(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

fn env<'a>(state: &'a AppState, req: &HttpRequest) -> Env<'a> {
    Env {
        store: &state.store,
        config: &state.config,
        now: state.now(),
        files_base_url: files_base_url(&state.config, req),
        services: Some(&state.services),
    }
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
    let conn = req.conn_data::<ConnInfo>().cloned();
    let cookie = session_cookie(&req);
    let sid = cookie.clone().or_else(|| {
        conn.as_ref()
            .and_then(|c| state.cwmp.by_conn.get(&c.id).map(|s| s.value().clone()))
    });
    if let Some(sid) = sid {
        let live = state.cwmp.live.get(&sid).map(|l| l.value().clone());
        if let Some(live) = live {
            return continue_session(&state, &req, payload, live, conn.as_ref()).await;
        }
        // Not here: maybe saved by a connection that closed (on any node).
        if cookie.is_some() {
            match resume_saved(&state, &sid, conn.as_ref()).await {
                Ok(Some(live)) => {
                    return continue_session(&state, &req, payload, live, conn.as_ref()).await
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look up a saved session");
                    return unavailable(10, "database unavailable");
                }
            }
        }
    }
    new_session(&state, &req, payload, conn.as_ref()).await
}

async fn resume_saved(
    state: &Arc<AppState>,
    sid: &str,
    conn: Option<&ConnInfo>,
) -> Result<Option<Arc<tokio::sync::Mutex<Live>>>> {
    let now = state.now();
    let id = sid.to_string();
    let saved = state
        .store
        .run(move |s| s.take_cwmp_session(&id, now))
        .await?;
    let Some((_device, json)) = saved else {
        return Ok(None);
    };
    let saved: SavedSession = serde_json::from_str(&json)?;
    let live = Arc::new(tokio::sync::Mutex::new(Live {
        id: sid.to_string(),
        engine: saved.engine,
        dev: saved.dev,
        conn_id: conn.map(|c| c.id),
        connected: true,
        last_seen: now,
        ended: false,
        saved: false,
    }));
    state.cwmp.live.insert(sid.to_string(), live.clone());
    if let Some(c) = conn {
        state.cwmp.by_conn.insert(c.id, sid.to_string());
    }
    state
        .cwmp
        .metrics
        .sessions_resumed
        .fetch_add(1, Ordering::Relaxed);
    tracing::info!(session = %sid, "resumed a session saved after its connection closed");
    Ok(Some(live))
}

async fn new_session(
    state: &Arc<AppState>,
    req: &HttpRequest,
    payload: web::Payload,
    conn: Option<&ConnInfo>,
) -> HttpResponse {
    let ip = peer_ip(req);
    let now = state.now();
    if let Some(retry) = state.cwmp.auth.blocked(ip, now) {
        return unavailable(
            retry,
            "too many failed logins from this address; retry later",
        );
    }
    if state.cwmp.live.len() >= state.config.cwmp.max_sessions {
        state
            .cwmp
            .metrics
            .refused_overload
            .fetch_add(1, Ordering::Relaxed);
        return unavailable(60, "too many sessions in progress; retry later");
    }
    // Read the (size-capped) body first even when the request will be challenged: a CPE
    // resends on the same connection after a 401, which needs the body consumed.
    let raw = match body::read(req, payload, state.config.cwmp.max_inform_bytes).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let tls = conn.is_some_and(|c| c.tls);
    let principal = match state
        .cwmp
        .auth
        .authenticate(state, req, tls, conn.is_some_and(|c| c.client_cert))
        .await
    {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let msg = match parse(req, &raw) {
        Ok(m) => m,
        Err(resp) => {
            state
                .cwmp
                .metrics
                .bad_requests
                .fetch_add(1, Ordering::Relaxed);
            return resp;
        }
    };
    let Some(envelope) = msg else {
        // An empty POST outside any session (e.g. after the session ended).
        return no_content();
    };
    let mut engine = cwmp::Session::new(now);
    let step = match engine.receive(Some(envelope), now) {
        Ok(s) => s,
        Err(e) => return protocol_error(state, engine.ns(), &e),
    };
    let (inform, _header) = match step {
        Step::Inform(inform, header) => (inform, header),
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                "Bad session state: a session must start with an Inform",
            )
        }
    };
    state.cwmp.metrics.informs.fetch_add(1, Ordering::Relaxed);
    let device_id = cwmp::device_id(
        &inform.device_id.oui,
        &inform.device_id.product_class,
        &inform.device_id.serial_number,
    );
    if let Err(resp) = state.cwmp.auth.authorize_device(&principal, &device_id, ip) {
        return resp;
    }
    let sid = crate::http::request_id::new_id() + &crate::http::request_id::new_id();
    let owner = format!("{}/{}", state.node_id, sid);
    let e = env(state, req);
    let version = engine
        .ns()
        .as_uri()
        .rsplit(':')
        .next()
        .unwrap_or("")
        .to_string();
    let started = std::time::Instant::now();
    let mut begun = dsession::begin(
        &e,
        &inform,
        &version,
        &ip.to_string(),
        owner.clone(),
        None,
        principal.default_credentials(),
    )
    .await;
    if let Ok(Begin::Busy { owner: other }) = &begun {
        // A session of this node whose CPE went away (e.g. rebooted) may be replaced.
        if let Some(old_sid) = other.strip_prefix(&format!("{}/", state.node_id)) {
            tracing::debug!(device = %device_id, old = %old_sid, "device busy with a session of this node; trying to take over");
            if take_over_local(state, old_sid).await {
                begun = dsession::begin(
                    &e,
                    &inform,
                    &version,
                    &ip.to_string(),
                    owner.clone(),
                    Some(other.clone()),
                    principal.default_credentials(),
                )
                .await;
            }
        }
    }
    state
        .cwmp
        .metrics
        .db_time_us
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    let dev = match begun {
        Ok(Begin::Started(dev)) => dev,
        Ok(Begin::Busy { .. }) => {
            state
                .cwmp
                .metrics
                .refused_busy
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(device = %device_id, "Inform refused: the device is already in a session");
            return unavailable(30, "CPE already in session");
        }
        Ok(Begin::WrongCredentials(why)) => {
            return state.cwmp.auth.reject(ip, state.now(), &why, tls);
        }
        Ok(Begin::Rejected(why)) => {
            tracing::warn!(device = %device_id, %ip, "Inform rejected: {why}");
            return text(StatusCode::FORBIDDEN, &why);
        }
        Err(Error::Invalid { field, message }) => {
            return text(StatusCode::BAD_REQUEST, &format!("{field}: {message}"));
        }
        Err(e) => {
            tracing::error!(device = %device_id, error = %e, "cannot record the Inform");
            return unavailable(30, "database unavailable");
        }
    };
    let hold = state.config.cwmp.hold_requests && !dev.queue.is_empty();
    let out = match engine.inform_response(hold) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "session state machine refused the InformResponse");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let live_ns = engine.ns();
    trace(state, live_ns, "in", &raw);
    let live = Live {
        id: sid.clone(),
        engine,
        dev: *dev,
        conn_id: conn.map(|c| c.id),
        connected: true,
        last_seen: now,
        ended: false,
        saved: false,
    };
    let done = live.engine.is_done();
    if !done {
        state
            .cwmp
            .live
            .insert(sid.clone(), Arc::new(tokio::sync::Mutex::new(live)));
        if let Some(c) = conn {
            state.cwmp.by_conn.insert(c.id, sid.clone());
        }
    } else {
        // Version negotiation failed: the answer is a fault and the session is over.
        let mut live = live;
        finish(state, req, &mut live, Outcome::Error).await;
    }
    tracing::debug!(device = %device_id, session = %sid, "session started");
    let mut resp = write(state, live_ns, out, done);
    let mut cookie = actix_web::cookie::Cookie::new(COOKIE, sid);
    cookie.set_path("/");
    cookie.set_http_only(true);
    if tls {
        cookie.set_secure(true);
    }
    let _ = resp.add_cookie(&cookie);
    resp
}

/// End a local session whose connection is gone so a new Inform can take its place.
async fn take_over_local(state: &Arc<AppState>, sid: &str) -> bool {
    let e = bare_env(state);
    let Some(live) = state.cwmp.live.get(sid).map(|l| l.value().clone()) else {
        // Not live here: its connection closed, it was saved for resumption and later
        // dropped from memory. The device has started over: close the saved session.
        let id = sid.to_string();
        let now = state.now();
        if let Ok(Some((_, json))) = state
            .store
            .run(move |s| s.take_cwmp_session(&id, now - 3_600_000))
            .await
        {
            if let Ok(saved) = serde_json::from_str::<SavedSession>(&json) {
                let mut dev = saved.dev;
                dev.faults
                    .push("replaced by a new session from the device".into());
                end_device_session(state, &e, &mut dev, Outcome::Error).await;
            }
        }
        return true;
    };
    // Wait briefly: the session may be finishing right now (its connection just closed).
    let Ok(mut l) = tokio::time::timeout(std::time::Duration::from_secs(2), live.lock()).await
    else {
        return false;
    };
    if l.ended {
        return true;
    }
    if l.connected && !l.engine.is_quiescent() && state.now() - l.last_seen < 5_000 {
        return false;
    }
    state.cwmp.live.remove(sid);
    if let Some(c) = l.conn_id {
        state.cwmp.by_conn.remove(&c);
    }
    l.ended = true;
    if l.saved {
        unsave(state, sid).await;
    }
    if l.engine.is_quiescent() {
        end_device_session(state, &e, &mut l.dev, Outcome::Completed).await;
    } else {
        l.dev
            .faults
            .push("replaced by a new session from the device".into());
        end_device_session(state, &e, &mut l.dev, Outcome::Error).await;
    }
    true
}

/// A session saved when its connection closed mid-way.
#[derive(serde::Deserialize)]
struct SavedSession {
    engine: cwmp::Session,
    dev: DeviceSession,
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
/// `<seq>-<in|out>-<cwmp namespace suffix>.xml`.
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

async fn continue_session(
    state: &Arc<AppState>,
    req: &HttpRequest,
    payload: web::Payload,
    live: Arc<tokio::sync::Mutex<Live>>,
    conn: Option<&ConnInfo>,
) -> HttpResponse {
    let mut l = live.lock().await;
    if l.ended {
        return no_content();
    }
    let now = state.now();
    l.last_seen = now;
    if l.saved {
        l.saved = false;
        if !unsave(state, &l.id).await {
            // Resumed on another node meanwhile: that node owns the session now.
            l.ended = true;
            state.cwmp.live.remove(&l.id);
            return text(
                StatusCode::CONFLICT,
                "this session continues on another ACS node",
            );
        }
    }
    if let Some(c) = conn {
        if l.conn_id != Some(c.id) {
            if let Some(old) = l.conn_id {
                state.cwmp.by_conn.remove(&old);
            }
            l.conn_id = Some(c.id);
            state.cwmp.by_conn.insert(c.id, l.id.clone());
        }
        l.connected = true;
    }
    let raw = match body::read(req, payload, state.config.cwmp.max_body_bytes).await {
        Ok(b) => b,
        Err(resp) => {
            tracing::warn!(device = %l.dev.device_id, "request body refused; ending the session");
            finish(state, req, &mut l, Outcome::Error).await;
            return resp;
        }
    };
    let msg = match parse(req, &raw) {
        Ok(m) => m,
        Err(resp) => {
            state
                .cwmp
                .metrics
                .bad_requests
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(device = %l.dev.device_id, "malformed message inside a session; ending it");
            l.dev.faults.push("malformed message from the CPE".into());
            finish(state, req, &mut l, Outcome::Error).await;
            return resp;
        }
    };
    let e = env(state, req);
    trace(state, l.engine.ns(), "in", &raw);
    let step = match l.engine.receive(msg, now) {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(device = %l.dev.device_id, error = %err, "protocol error");
            l.dev.faults.push(format!("protocol error: {err}"));
            let resp = protocol_error(state, l.engine.ns(), &err);
            if err.ends_session() {
                l.engine.abort();
                finish(state, req, &mut l, Outcome::Error).await;
            }
            return resp;
        }
    };
    let result = drive(&e, &mut l, step).await;
    if let Some(until) = dsession::lock_needs_refresh(&l.dev, &state.config, now) {
        let (id, owner) = (l.dev.device_id.clone(), l.dev.owner.clone());
        if let Ok(true) = state
            .store
            .run(move |s| s.refresh_session_lock(&id, &owner, until))
            .await
        {
            l.dev.lock_until = until;
        }
    }
    match result {
        Ok(out) => {
            let done = l.engine.is_done();
            if done {
                finish(state, req, &mut l, Outcome::Completed).await;
            }
            write(state, l.engine.ns(), out, done)
        }
        Err(err) => {
            tracing::error!(device = %l.dev.device_id, error = %err, "session failed");
            l.dev.faults.push(format!("server error: {err}"));
            finish(state, req, &mut l, Outcome::Error).await;
            match err {
                Error::Unavailable(_) => unavailable(30, "database unavailable"),
                _ => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; the ACS log has the details",
                ),
            }
        }
    }
}

/// One protocol step through the business rules, to the next outgoing message.
async fn drive(e: &Env<'_>, l: &mut Live, step: Step) -> Result<Outgoing> {
    match step {
        Step::CpeRequest(request) => {
            let out = match dsession::on_cpe_request(e, &mut l.dev, &request).await {
                Ok(resp) => l.engine.respond(resp, false),
                Err(Error::Invalid { message, .. }) => {
                    l.engine.respond_fault(CwmpFault::new(8003, message), false)
                }
                Err(err) => return Err(err),
            };
            out.map_err(Error::internal)
        }
        Step::ReadyForRequest => next(e, l).await,
        Step::Result {
            outcome,
            id_matched,
            request,
        } => {
            if !id_matched {
                tracing::debug!(device = %l.dev.device_id, rpc = request.name(), "response did not echo the request's cwmp:ID");
            }
            dsession::on_result(e, &mut l.dev, outcome).await?;
            next(e, l).await
        }
        Step::SessionOver => Ok(l.engine.finish()),
        Step::Inform(..) => Err(Error::internal(
            "a second Inform reached the session driver",
        )),
    }
}

async fn next(e: &Env<'_>, l: &mut Live) -> Result<Outgoing> {
    match dsession::next_request(e, &mut l.dev).await? {
        Some(req) => l.engine.send_request(req, false).map_err(Error::internal),
        None => Ok(l.engine.finish()),
    }
}

/// End a session: release the device, write the log row, forget it.
async fn finish(state: &Arc<AppState>, req: &HttpRequest, l: &mut Live, outcome: Outcome) {
    if l.ended {
        return;
    }
    l.ended = true;
    let e = env(state, req);
    end_device_session(state, &e, &mut l.dev, outcome).await;
    // Only now: a new Inform of the device waits on this session's lock until it is closed.
    state.cwmp.live.remove(&l.id);
    if let Some(c) = l.conn_id {
        state.cwmp.by_conn.remove(&c);
    }
}

async fn end_device_session(
    state: &AppState,
    e: &Env<'_>,
    dev: &mut DeviceSession,
    outcome: Outcome,
) {
    let m = &state.cwmp.metrics;
    match outcome {
        Outcome::Completed => m.sessions_completed.fetch_add(1, Ordering::Relaxed),
        Outcome::Timeout => m.sessions_timed_out.fetch_add(1, Ordering::Relaxed),
        Outcome::Error => m.sessions_failed.fetch_add(1, Ordering::Relaxed),
    };
    let started = std::time::Instant::now();
    let ended = dsession::end(e, dev, outcome).await;
    m.db_time_us
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    match ended {
        Ok(row) => state.cwmp.log(row),
        Err(err) => {
            tracing::error!(device = %dev.device_id, error = %err, "cannot close the session cleanly; its lock expires by itself")
        }
    }
}

/// A connection closed: if its session has not ended, save it so the CPE can continue on a
/// new connection (on any node).
async fn connection_closed(state: Arc<AppState>, sid: String, conn_id: u64) {
    let Some(live) = state.cwmp.live.get(&sid).map(|l| l.value().clone()) else {
        return;
    };
    let mut l = live.lock().await;
    if l.ended || l.conn_id != Some(conn_id) {
        return;
    }
    l.connected = false;
    if l.engine.is_done() {
        return;
    }
    if l.engine.is_quiescent() {
        // The ACS was done and the CPE, released from a hold, had nothing more to say.
        l.ended = true;
        let e = bare_env(&state);
        end_device_session(&state, &e, &mut l.dev, Outcome::Completed).await;
        state.cwmp.live.remove(&sid);
        return;
    }
    // Save it so the CPE can continue on a new connection on any node. It also stays in
    // memory here, so a continuation on this node needs no database read.
    dsession::freeze(&mut l.dev);
    #[derive(serde::Serialize)]
    struct Saved<'a> {
        engine: &'a cwmp::Session,
        dev: &'a DeviceSession,
    }
    let json = match serde_json::to_string(&Saved {
        engine: &l.engine,
        dev: &l.dev,
    }) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize a session");
            return;
        }
    };
    let expires = state.now() + state.config.cwmp.session_timeout_secs as i64 * 1000;
    let (id, dev_id) = (sid.clone(), l.dev.device_id.clone());
    match state
        .store
        .run(move |s| s.save_cwmp_session(&id, &dev_id, &json, expires))
        .await
    {
        Ok(()) => {
            l.saved = true;
            tracing::debug!(session = %sid, "connection closed mid-session; session saved for resumption");
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot save an interrupted session; it will time out")
        }
    }
}

fn bare_env(state: &AppState) -> Env<'_> {
    Env {
        store: &state.store,
        config: &state.config,
        now: state.now(),
        files_base_url: String::new(),
        services: Some(&state.services),
    }
}

/// Forget the saved copy of a session that goes on (or ends) here. Returns whether the
/// copy was still there (false: another node resumed it).
async fn unsave(state: &AppState, sid: &str) -> bool {
    let id = sid.to_string();
    let now = state.now();
    matches!(
        state
            .store
            .run(move |s| s.take_cwmp_session(&id, now - 3_600_000))
            .await,
        Ok(Some(_))
    )
}

/// Background work of the endpoint: idle-session reaper, session-log writer, pruning.
pub fn spawn_background(state: Arc<AppState>) {
    let st = state.clone();
    actix_web::rt::spawn(async move {
        // Session-log rows are written in batches, off the request path.
        loop {
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(1000),
                st.cwmp.log_notify.notified(),
            )
            .await;
            let batch = st.cwmp.take_logs();
            if batch.is_empty() {
                continue;
            }
            let n = batch.len();
            if let Err(e) = st.store.run(move |s| s.insert_session_logs(&batch)).await {
                tracing::warn!(error = %e, rows = n, "session log rows lost");
            }
        }
    });
    let st = state.clone();
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            reap_idle(&st).await;
        }
    });
    let st = state;
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let now = st.now();
            let keep = st.config.cwmp.session_log_retention_days as i64 * 86_400_000;
            let r = st
                .store
                .run(move |s| {
                    Ok((
                        s.prune_session_logs(now - keep)?,
                        s.prune_cwmp_sessions(now)?,
                    ))
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "pruning old session logs failed");
            }
        }
    });
}

async fn reap_idle(state: &Arc<AppState>) {
    let now = state.now();
    let timeout = state.config.cwmp.session_timeout_secs as i64 * 1000;
    let candidates: Vec<_> = state.cwmp.live.iter().map(|e| e.value().clone()).collect();
    for live in candidates {
        let Ok(mut l) = live.try_lock() else { continue };
        if l.ended || now - l.last_seen < timeout {
            continue;
        }
        l.ended = true;
        // Unless another node resumed it (and owns it now), close it before forgetting it.
        if !l.saved || unsave(state, &l.id).await {
            let e = bare_env(state);
            if l.engine.is_quiescent() {
                end_device_session(state, &e, &mut l.dev, Outcome::Completed).await;
            } else {
                tracing::warn!(device = %l.dev.device_id, "session timed out: the CPE went silent");
                l.dev.faults.push("the CPE went silent".into());
                end_device_session(state, &e, &mut l.dev, Outcome::Timeout).await;
            }
        }
        state.cwmp.live.remove(&l.id);
        if let Some(c) = l.conn_id {
            state.cwmp.by_conn.remove(&c);
        }
    }
}

/// After the servers stopped: release the devices of unfinished sessions and flush the log.
pub fn shutdown(state: &AppState) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let lives: Vec<_> = state.cwmp.live.iter().map(|e| e.value().clone()).collect();
        state.cwmp.live.clear();
        for live in lives {
            let mut l = live.lock().await;
            if l.ended {
                continue;
            }
            l.ended = true;
            l.dev.faults.push("the ACS shut down".into());
            let e = Env {
                store: &state.store,
                config: &state.config,
                now: state.now(),
                files_base_url: String::new(),
                services: Some(&state.services),
            };
            end_device_session(state, &e, &mut l.dev, Outcome::Error).await;
        }
    });
    let batch = state.cwmp.take_logs();
    if let Err(e) = state.store.insert_session_logs(&batch) {
        tracing::warn!(error = %e, rows = batch.len(), "session log rows lost at shutdown");
    }
}
