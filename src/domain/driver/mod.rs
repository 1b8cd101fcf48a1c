//! The session driver: everything a CWMP session needs between two HTTP requests, with no
//! HTTP in it.
//!
//! It owns the live-session registry (by session id and by TCP connection), opens a session
//! from an Inform (including taking over a session of this node whose CPE went away),
//! continues one step at a time, resumes a session saved by a connection that closed (from
//! memory or from the database, on any node), reaps idle sessions, and batches the
//! session-log rows. `http::cwmp` turns requests into calls of this module and its answers
//! back into responses (status codes, cookies, headers, body limits, CPE authentication).
//!
//! The protocol state machine is [`crate::cwmp::Session`]; the business rules of a session
//! are [`crate::domain::session`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

use crate::config::Config;
use crate::cwmp::{self, CwmpFault, Envelope, Inform, Outgoing, Step};
use crate::domain::services::Services;
use crate::domain::session::{self as dsession, Begin, CpeLogin, DeviceSession, Env, Outcome};
use crate::domain::Clock;
use crate::error::{Error, Result};
use crate::store::sessions::NewSessionLog;
use crate::store::Store;

/// A session whose CPE was heard from this recently is not taken over by a new Inform of
/// the same device (it is more likely a clone than the CPE starting over).
const TAKEOVER_IDLE_MS: i64 = 5_000;

/// Session-log rows written in one batch once this many wait (otherwise every second): a
/// short transaction, run with the sessions' own statements, that delays them little.
const LOG_BATCH: usize = 64;

/// A live session: the protocol state and the business state.
pub struct Live {
    pub id: String,
    pub engine: cwmp::Session,
    pub dev: DeviceSession,
    pub conn_id: Option<u64>,
    pub connected: bool,
    pub last_seen: i64,
    pub ended: bool,
    /// A copy is saved in the database (its connection closed mid-session, or after every
    /// exchange with `cwmp.save_every_exchange`): when that copy expires, which tells it
    /// apart from a copy another node saved since.
    pub saved: Option<i64>,
}

/// A live session as the registry hands it out; lock it for one step.
pub type LiveRef = Arc<tokio::sync::Mutex<Live>>;

/// Counters for /metrics.
#[derive(Default)]
pub struct CwmpMetrics {
    pub informs: AtomicU64,
    pub sessions_completed: AtomicU64,
    pub sessions_timed_out: AtomicU64,
    pub sessions_failed: AtomicU64,
    pub sessions_resumed: AtomicU64,
    pub refused_busy: AtomicU64,
    pub refused_overload: AtomicU64,
    pub bad_requests: AtomicU64,
    pub db_time_us: AtomicU64,
}

/// The session driver of one node.
pub struct Driver {
    store: Store,
    config: Arc<Config>,
    clock: Clock,
    /// Names this node in session locks.
    node_id: String,
    services: Arc<Services>,
    live: DashMap<String, LiveRef>,
    by_conn: DashMap<u64, String>,
    log_buf: Mutex<Vec<NewSessionLog>>,
    log_notify: tokio::sync::Notify,
    /// How many closed connections that carried a session were handled (saved, ended or
    /// found finished): an event to await, e.g. before continuing on another connection.
    closed: tokio::sync::watch::Sender<u64>,
    pub metrics: CwmpMetrics,
}

/// An Inform accepted by the protocol state machine, before the device is recorded.
pub struct Opening {
    engine: cwmp::Session,
    inform: Inform,
    pub device_id: String,
}

/// Why a session-opening message was not turned into an [`Opening`].
pub enum OpenError {
    /// The protocol state machine refused the message; answer as it says.
    Protocol(cwmp::CwmpNs, cwmp::ProtocolError),
    /// The first message of a session was not an Inform.
    NotInform,
}

/// A session that started: the InformResponse to send and the cookie to set.
pub struct Started {
    pub sid: String,
    pub ns: cwmp::CwmpNs,
    pub out: Outgoing,
    /// The session is already over (version negotiation failed): close the connection.
    pub done: bool,
}

/// Why an Inform did not start a session.
pub enum Refused {
    /// The device is in a session that cannot be taken over.
    Busy,
    /// The device's own credentials do not match the ones presented.
    WrongCredentials(String),
    /// The device may not use this ACS (e.g. a CPE user name of another device).
    Rejected(String),
    /// A field of the Inform is unusable.
    Invalid { field: String, message: String },
    /// The database failed.
    Unavailable,
    /// The session state machine refused to answer the Inform.
    Internal,
}

/// What to answer to a message inside a session.
pub enum Answer {
    /// Send this; the session is over when `done`.
    Send { out: Outgoing, done: bool },
    /// The CPE broke the protocol: answer as the error says (the session may have ended).
    Protocol(cwmp::ProtocolError),
    /// The server failed; the session has ended.
    Failed(Error),
}

impl Driver {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        clock: Clock,
        node_id: String,
        services: Arc<Services>,
    ) -> Driver {
        Driver {
            store,
            config,
            clock,
            node_id,
            services,
            live: DashMap::new(),
            by_conn: DashMap::new(),
            log_buf: Mutex::new(Vec::new()),
            log_notify: tokio::sync::Notify::new(),
            closed: tokio::sync::watch::Sender::new(0),
            metrics: CwmpMetrics::default(),
        }
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    fn env(&self, files_base_url: String) -> Env<'_> {
        Env {
            store: &self.store,
            config: &self.config,
            now: self.now(),
            files_base_url,
            services: Some(&self.services),
        }
    }

    /// Sessions in memory.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// The session a TCP connection authenticated, if any.
    pub fn bound_to(&self, conn_id: u64) -> Option<String> {
        self.by_conn.get(&conn_id).map(|s| s.value().clone())
    }

    /// A live session of this node.
    pub fn live(&self, sid: &str) -> Option<LiveRef> {
        self.live.get(sid).map(|l| l.value().clone())
    }

    fn log(&self, row: NewSessionLog) {
        if let Ok(mut b) = self.log_buf.lock() {
            b.push(row);
            if b.len() >= LOG_BATCH {
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

    /// The device of a session named by a cookie and whether it was opened with the default
    /// credentials: from memory, or from the database when it was saved (by any node).
    /// `None`: no such session, or it has ended.
    pub async fn owner(&self, sid: &str, live: Option<&LiveRef>) -> Result<Option<(String, bool)>> {
        if let Some(live) = live {
            let l = live.lock().await;
            return Ok((!l.ended).then(|| (l.dev.device_id.clone(), l.dev.opened_with_default)));
        }
        let now = self.now();
        let id = sid.to_string();
        let saved = self
            .store
            .run(move |s| s.peek_cwmp_session(&id, now))
            .await?;
        let Some((device, json)) = saved else {
            return Ok(None);
        };
        let saved = SavedSession::open(&self.store, &json)?;
        Ok(Some((device, saved.dev.opened_with_default)))
    }

    /// Take a session saved by a connection that closed (on any node) into memory, bound
    /// to `conn_id`. `None`: it is not saved (any more).
    pub async fn resume_saved(&self, sid: &str, conn_id: Option<u64>) -> Result<Option<LiveRef>> {
        let now = self.now();
        let Some(saved) = self.take_saved(sid, now).await? else {
            return Ok(None);
        };
        let live = Arc::new(tokio::sync::Mutex::new(Live {
            id: sid.to_string(),
            engine: saved.engine,
            dev: saved.dev,
            conn_id,
            connected: true,
            last_seen: now,
            ended: false,
            saved: None,
        }));
        self.live.insert(sid.to_string(), live.clone());
        if let Some(c) = conn_id {
            self.by_conn.insert(c, sid.to_string());
        }
        self.metrics
            .sessions_resumed
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(session = %sid, "resumed a session saved after its connection closed");
        Ok(Some(live))
    }

    /// Whether a new session would exceed `cwmp.max_sessions` (counted as refused).
    pub fn overloaded(&self) -> bool {
        if self.live.len() >= self.config.cwmp.max_sessions {
            self.metrics
                .refused_overload
                .fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Feed the first message of a session to a new protocol state machine; it must be an
    /// Inform.
    pub fn open(&self, envelope: Envelope) -> std::result::Result<Opening, OpenError> {
        let now = self.now();
        let mut engine = cwmp::Session::new(now);
        let step = match engine.receive(Some(envelope), now) {
            Ok(s) => s,
            Err(e) => return Err(OpenError::Protocol(engine.ns(), e)),
        };
        let inform = match step {
            Step::Inform(inform, _header) => inform,
            _ => return Err(OpenError::NotInform),
        };
        self.metrics.informs.fetch_add(1, Ordering::Relaxed);
        let device_id = cwmp::device_id(
            &inform.device_id.oui,
            &inform.device_id.product_class,
            &inform.device_id.serial_number,
        );
        Ok(Opening {
            engine,
            inform,
            device_id,
        })
    }

    /// Record the Inform of an authenticated and authorized CPE and start its session:
    /// takes the device's session lock (taking over a session of this node whose CPE went
    /// away), registers the session under a new id bound to `conn_id`.
    pub async fn start(
        &self,
        opening: Opening,
        ip: &str,
        login: CpeLogin,
        conn_id: Option<u64>,
        files_base_url: String,
    ) -> std::result::Result<Started, Refused> {
        let Opening {
            mut engine,
            inform,
            device_id,
        } = opening;
        let now = self.now();
        let sid = new_id() + &new_id();
        let owner = format!("{}/{}", self.node_id, sid);
        let e = self.env(files_base_url);
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
            ip,
            owner.clone(),
            None,
            login.clone(),
        )
        .await;
        if let Ok(Begin::Busy { owner: other }) = &begun {
            // A session of this node whose CPE went away (e.g. rebooted) may be replaced; so
            // may one of any node (alive or dead) that is saved between two exchanges.
            let replaced = match other.strip_prefix(&format!("{}/", self.node_id)) {
                Some(old_sid) => {
                    tracing::debug!(device = %device_id, old = %old_sid, "device busy with a session of this node; trying to take over");
                    self.take_over_local(old_sid).await
                }
                None => self.take_over_saved(other).await,
            };
            if replaced {
                begun = dsession::begin(
                    &e,
                    &inform,
                    &version,
                    ip,
                    owner.clone(),
                    Some(other.clone()),
                    login,
                )
                .await;
            }
        }
        self.metrics
            .db_time_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let dev = match begun {
            Ok(Begin::Started(dev)) => dev,
            Ok(Begin::Busy { .. }) => {
                self.metrics.refused_busy.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(device = %device_id, "Inform refused: the device is already in a session");
                return Err(Refused::Busy);
            }
            Ok(Begin::WrongCredentials(why)) => return Err(Refused::WrongCredentials(why)),
            Ok(Begin::Rejected(why)) => {
                tracing::warn!(device = %device_id, %ip, "Inform rejected: {why}");
                return Err(Refused::Rejected(why));
            }
            Err(Error::Invalid { field, message }) => {
                return Err(Refused::Invalid { field, message })
            }
            Err(e) => {
                tracing::error!(device = %device_id, error = %e, "cannot record the Inform");
                return Err(Refused::Unavailable);
            }
        };
        let hold = self.config.cwmp.hold_requests && !dev.queue.is_empty();
        let out = match engine.inform_response(hold) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "session state machine refused the InformResponse");
                return Err(Refused::Internal);
            }
        };
        let ns = engine.ns();
        let mut live = Live {
            id: sid.clone(),
            engine,
            dev: *dev,
            conn_id,
            connected: true,
            last_seen: now,
            ended: false,
            saved: None,
        };
        let done = live.engine.is_done();
        if !done && self.config.cwmp.save_every_exchange {
            // The CPE's next request may reach another node, which must find the session
            // (an empty POST there would otherwise end it with 204 at once).
            self.save(&mut live).await;
        }
        if !done {
            self.live
                .insert(sid.clone(), Arc::new(tokio::sync::Mutex::new(live)));
            if let Some(c) = conn_id {
                self.by_conn.insert(c, sid.clone());
            }
        } else {
            // Version negotiation failed: the answer is a fault and the session is over.
            self.finish(&mut live, Outcome::Error, e.files_base_url.clone())
                .await;
        }
        tracing::debug!(device = %device_id, session = %sid, "session started");
        Ok(Started { sid, ns, out, done })
    }

    /// End a session of another node that is saved between two exchanges (no node is in
    /// the middle of it) and idle for [`TAKEOVER_IDLE_MS`]: the CPE started over with a new
    /// Inform and will not continue it, and its node may be gone. Taking the saved copy
    /// makes sure no node continues it.
    async fn take_over_saved(&self, owner: &str) -> bool {
        let Some((_, sid)) = owner.rsplit_once('/') else {
            return false;
        };
        // Saved at least TAKEOVER_IDLE_MS ago: a session that just moved on is left alone.
        let latest =
            self.now() - TAKEOVER_IDLE_MS + self.config.cwmp.session_timeout_secs as i64 * 1000;
        let (id, from) = (sid.to_string(), self.now() - 3_600_000);
        let taken = self
            .store
            .run(move |s| s.take_cwmp_session_expiring(&id, from, latest))
            .await
            .and_then(|t| match t {
                Some((_, json)) => SavedSession::open(&self.store, &json).map(Some),
                None => Ok(None),
            });
        match taken {
            Ok(Some(saved)) => {
                tracing::debug!(session = %sid, "device busy with a saved session of another node; taking it over");
                let mut dev = saved.dev;
                dev.faults
                    .push("replaced by a new session from the device".into());
                self.end_device_session(&mut dev, Outcome::Error, String::new())
                    .await;
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, session = %sid, "cannot read the saved copy of a session of another node");
                false
            }
        }
    }

    /// End a local session whose connection is gone so a new Inform can take its place.
    async fn take_over_local(&self, sid: &str) -> bool {
        let Some(live) = self.live(sid) else {
            // Not live here: its connection closed, it was saved for resumption and later
            // dropped from memory. The device has started over: close the saved session.
            if let Ok(Some(saved)) = self.take_saved(sid, self.now() - 3_600_000).await {
                let mut dev = saved.dev;
                dev.faults
                    .push("replaced by a new session from the device".into());
                self.end_device_session(&mut dev, Outcome::Error, String::new())
                    .await;
            }
            return true;
        };
        // Wait briefly: the session may be finishing right now. Its CPE may have dropped the
        // connection just before this Inform, and a loaded server notices the close a little
        // later than the new connection's request arrives.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut l = loop {
            let Ok(l) = tokio::time::timeout_at(deadline, live.lock()).await else {
                return false;
            };
            if l.ended {
                return true;
            }
            if !(l.connected
                && !l.engine.is_quiescent()
                && self.now() - l.last_seen < TAKEOVER_IDLE_MS)
            {
                break l;
            }
            drop(l);
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        self.live.remove(sid);
        if let Some(c) = l.conn_id {
            self.by_conn.remove(&c);
        }
        l.ended = true;
        if l.saved.take().is_some() {
            self.unsave(sid).await;
        }
        if l.engine.is_quiescent() {
            self.end_device_session(&mut l.dev, Outcome::Completed, String::new())
                .await;
        } else {
            l.dev
                .faults
                .push("replaced by a new session from the device".into());
            self.end_device_session(&mut l.dev, Outcome::Error, String::new())
                .await;
        }
        true
    }

    /// A request of the session arrived (on `conn_id`): note the time, take the session
    /// back from the database if it was saved, follow it to the new connection. `false`:
    /// another node resumed it meanwhile and owns it now (the session ended here).
    pub async fn touch(&self, l: &mut Live, conn_id: Option<u64>) -> bool {
        l.last_seen = self.now();
        if let Some(mine) = l.saved.take() {
            // The database copy is the newest state: another node may have continued the
            // session from it and saved it again (cwmp.save_every_exchange) since this node
            // last touched it. No copy: another node took it and owns the session now.
            let (id, since) = (l.id.clone(), self.now() - 3_600_000);
            let taken = self
                .store
                .run(move |s| s.take_cwmp_session_versioned(&id, since))
                .await
                .and_then(|t| match t {
                    // Still the copy this node saved: memory is just as current.
                    Some((_, _, expires)) if expires == mine => Ok(Some(None)),
                    Some((_, json, _)) => {
                        SavedSession::open(&self.store, &json).map(|s| Some(Some(s)))
                    }
                    None => Ok(None),
                });
            match taken {
                Ok(Some(Some(saved))) => {
                    l.engine = saved.engine;
                    l.dev = saved.dev;
                }
                Ok(Some(None)) => {}
                Ok(None) => {
                    self.moved_away(l);
                    return false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, session = %l.id, "cannot read the saved copy of a session; ending it here");
                    self.moved_away(l);
                    return false;
                }
            }
        }
        if let Some(c) = conn_id {
            if l.conn_id != Some(c) {
                if let Some(old) = l.conn_id {
                    self.by_conn.remove(&old);
                }
                l.conn_id = Some(c);
                self.by_conn.insert(c, l.id.clone());
            }
            l.connected = true;
        }
        true
    }

    /// The CPE sent something unusable inside the session (a refused body, a malformed
    /// message): end the session with `fault` (when given) recorded.
    pub async fn fail(&self, l: &mut Live, fault: Option<&str>, files_base_url: String) {
        if let Some(f) = fault {
            l.dev.faults.push(f.into());
        }
        self.finish(l, Outcome::Error, files_base_url).await;
    }

    /// One message of the CPE inside a session (`None`: an empty POST), to the answer.
    pub async fn step(
        &self,
        l: &mut Live,
        msg: Option<Envelope>,
        files_base_url: String,
    ) -> Answer {
        let now = self.now();
        let e = self.env(files_base_url.clone());
        let step = match l.engine.receive(msg, now) {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(device = %l.dev.device_id, error = %err, "protocol error");
                l.dev.faults.push(format!("protocol error: {err}"));
                if err.ends_session() {
                    l.engine.abort();
                    self.finish(l, Outcome::Error, files_base_url).await;
                }
                return Answer::Protocol(err);
            }
        };
        let result = drive(&e, l, step).await;
        if let Some(until) = dsession::lock_needs_refresh(&l.dev, &self.config, now) {
            let (id, owner) = (l.dev.device_id.clone(), l.dev.owner.clone());
            if let Ok(true) = self
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
                    self.finish(l, Outcome::Completed, files_base_url).await;
                } else if self.config.cwmp.save_every_exchange {
                    // Behind a balancer that spreads each request: the next one may reach
                    // another node, which continues from this copy.
                    self.save(l).await;
                }
                Answer::Send { out, done }
            }
            Err(err) => {
                tracing::error!(device = %l.dev.device_id, error = %err, "session failed");
                l.dev.faults.push(format!("server error: {err}"));
                self.finish(l, Outcome::Error, files_base_url).await;
                Answer::Failed(err)
            }
        }
    }

    /// End a session: release the device, write the log row, forget it.
    async fn finish(&self, l: &mut Live, outcome: Outcome, files_base_url: String) {
        if l.ended {
            return;
        }
        l.ended = true;
        self.end_device_session(&mut l.dev, outcome, files_base_url)
            .await;
        // Only now: a new Inform of the device waits on this session's lock until it is closed.
        self.live.remove(&l.id);
        if let Some(c) = l.conn_id {
            self.by_conn.remove(&c);
        }
    }

    async fn end_device_session(
        &self,
        dev: &mut DeviceSession,
        outcome: Outcome,
        files_base_url: String,
    ) {
        let m = &self.metrics;
        match outcome {
            Outcome::Completed => m.sessions_completed.fetch_add(1, Ordering::Relaxed),
            Outcome::Timeout => m.sessions_timed_out.fetch_add(1, Ordering::Relaxed),
            Outcome::Error => m.sessions_failed.fetch_add(1, Ordering::Relaxed),
        };
        let e = self.env(files_base_url);
        let started = std::time::Instant::now();
        let ended = dsession::end(&e, dev, outcome).await;
        m.db_time_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match ended {
            Ok(row) => self.log(row),
            Err(err) => {
                tracing::error!(device = %dev.device_id, error = %err, "cannot close the session cleanly; its lock expires by itself")
            }
        }
    }

    /// A TCP connection closed: forget its binding and return the session it carried, if
    /// any, to pass to [`Driver::connection_closed`].
    pub fn unbind(&self, conn_id: u64) -> Option<String> {
        self.by_conn.remove(&conn_id).map(|(_, sid)| sid)
    }

    /// A connection closed: if its session has not ended, save it so the CPE can continue
    /// on a new connection (on any node).
    pub async fn connection_closed(&self, sid: String, conn_id: u64) {
        self.save_closed(sid, conn_id).await;
        self.closed.send_modify(|n| *n += 1);
    }

    /// Counts the closed connections handled by [`Driver::connection_closed`]; wait on it
    /// (`wait_for(|n| *n > before)`) to know a closed connection's session was saved.
    pub fn closed_connections(&self) -> tokio::sync::watch::Receiver<u64> {
        self.closed.subscribe()
    }

    async fn save_closed(&self, sid: String, conn_id: u64) {
        let Some(live) = self.live(&sid) else {
            return;
        };
        let mut l = live.lock().await;
        if l.ended || l.conn_id != Some(conn_id) {
            return;
        }
        l.connected = false;
        // Already saved after its last exchange: the copy is in the database, or another
        // node took it and owns the session now; saving again would bring back a stale copy.
        if l.engine.is_done() || l.saved.is_some() {
            return;
        }
        if l.engine.is_quiescent() {
            // The ACS was done and the CPE, released from a hold, had nothing more to say.
            l.ended = true;
            self.end_device_session(&mut l.dev, Outcome::Completed, String::new())
                .await;
            self.live.remove(&sid);
            return;
        }
        // Save it so the CPE can continue on a new connection on any node. It also stays in
        // memory here, so a continuation on this node needs no database read.
        if self.save(&mut l).await {
            tracing::debug!(session = %sid, "connection closed mid-session; session saved for resumption");
        }
    }

    /// Save a session that goes on to the database, so any node can continue it; it also
    /// stays in memory (marked `saved`: the next request here takes the copy back, and finds
    /// out if another node resumed it meanwhile). Returns whether it was saved.
    async fn save(&self, l: &mut Live) -> bool {
        dsession::freeze(&mut l.dev);
        #[derive(serde::Serialize)]
        struct Saved<'a> {
            engine: &'a cwmp::Session,
            dev: &'a DeviceSession,
        }
        let sealed = serde_json::to_string(&Saved {
            engine: &l.engine,
            dev: &l.dev,
        })
        .map_err(Error::from)
        .and_then(|j| {
            self.store
                .keyring()
                .seal(crate::secrets::purpose::SAVED_SESSION, &j)
        });
        let json = match sealed {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "cannot save a session");
                return false;
            }
        };
        let expires = self.now() + self.config.cwmp.session_timeout_secs as i64 * 1000;
        let (id, dev_id) = (l.id.clone(), l.dev.device_id.clone());
        match self
            .store
            .run(move |s| s.save_cwmp_session(&id, &dev_id, &json, expires))
            .await
        {
            Ok(()) => {
                l.saved = Some(expires);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot save an open session; only this node can continue it");
                false
            }
        }
    }

    /// Take the saved copy of a session (not expired before `since`) out of the database
    /// and open it. `None`: it is not saved (any more); of several nodes taking it at once,
    /// one gets it.
    async fn take_saved(&self, sid: &str, since: i64) -> Result<Option<SavedSession>> {
        let id = sid.to_string();
        let taken = self
            .store
            .run(move |s| s.take_cwmp_session(&id, since))
            .await?;
        match taken {
            Some((_device, json)) => Ok(Some(SavedSession::open(&self.store, &json)?)),
            None => Ok(None),
        }
    }

    /// Forget the saved copy of a session that ends here. Returns whether the copy was still
    /// there (false: another node resumed it).
    async fn unsave(&self, sid: &str) -> bool {
        let id = sid.to_string();
        let now = self.now();
        matches!(
            self.store
                .run(move |s| s.take_cwmp_session(&id, now - 3_600_000))
                .await,
            Ok(Some(_))
        )
    }

    /// The session continues (or ended) on another node, which took its saved copy: forget
    /// it here without closing it.
    fn moved_away(&self, l: &mut Live) {
        l.ended = true;
        self.live.remove(&l.id);
        if let Some(c) = l.conn_id.take() {
            self.by_conn.remove(&c);
        }
        self.services
            .connreq
            .session_moved(&l.dev.device_id, &l.dev.owner, self.now());
    }

    /// Writes session-log rows in batches, off the request path; runs forever.
    pub async fn run_log_writer(&self) {
        loop {
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(1000),
                self.log_notify.notified(),
            )
            .await;
            let batch = self.take_logs();
            if batch.is_empty() {
                continue;
            }
            let n = batch.len();
            // With the sessions' own short statements: on SQLite a writer beside them
            // makes their commits wait for the write lock, and SQLite's busy handler
            // sleeps 1, 2, 5, 10 ms… between attempts (the latency's tail).
            if let Err(e) = self
                .store
                .run_short(move |s| s.insert_session_logs(&batch))
                .await
            {
                tracing::warn!(error = %e, rows = n, "session log rows lost");
            }
        }
    }

    /// Ends idle sessions every second; runs forever.
    pub async fn run_reaper(&self) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            self.reap_idle().await;
        }
    }

    async fn reap_idle(&self) {
        let now = self.now();
        let timeout = self.config.cwmp.session_timeout_secs as i64 * 1000;
        let candidates: Vec<_> = self.live.iter().map(|e| e.value().clone()).collect();
        for live in candidates {
            let Ok(mut l) = live.try_lock() else { continue };
            if l.ended || now - l.last_seen < timeout {
                continue;
            }
            // A copy saved by this node that nobody saved again since: the session is
            // abandoned, close it. Another copy (or none): another node continues it (or
            // ended it), so it is only forgotten here.
            if let Some(expires) = l.saved.take() {
                let id = l.id.clone();
                let ours = self
                    .store
                    .run(move |s| s.take_cwmp_session_expiring(&id, expires, expires))
                    .await;
                if !matches!(ours, Ok(Some(_))) {
                    self.moved_away(&mut l);
                    continue;
                }
            }
            l.ended = true;
            {
                if l.engine.is_quiescent() {
                    self.end_device_session(&mut l.dev, Outcome::Completed, String::new())
                        .await;
                } else {
                    tracing::warn!(device = %l.dev.device_id, "session timed out: the CPE went silent");
                    l.dev.faults.push("the CPE went silent".into());
                    self.end_device_session(&mut l.dev, Outcome::Timeout, String::new())
                        .await;
                }
            }
            self.live.remove(&l.id);
            if let Some(c) = l.conn_id {
                self.by_conn.remove(&c);
            }
        }
    }

    /// Write the session-log rows waiting for the background writer now; returns how many.
    /// Tests use it to wait for the log of a session that ended instead of sleeping.
    pub async fn flush_session_logs(&self) -> Result<usize> {
        let batch = self.take_logs();
        let n = batch.len();
        if n > 0 {
            self.store
                .run(move |s| s.insert_session_logs(&batch))
                .await?;
        }
        Ok(n)
    }

    /// After the servers stopped: release the devices of unfinished sessions and flush the
    /// log.
    pub fn shutdown(&self) {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let lives: Vec<_> = self.live.iter().map(|e| e.value().clone()).collect();
            self.live.clear();
            for live in lives {
                let mut l = live.lock().await;
                if l.ended {
                    continue;
                }
                l.ended = true;
                l.dev.faults.push("the ACS shut down".into());
                self.end_device_session(&mut l.dev, Outcome::Error, String::new())
                    .await;
            }
        });
        let batch = self.take_logs();
        if let Err(e) = self.store.insert_session_logs(&batch) {
            tracing::warn!(error = %e, rows = batch.len(), "session log rows lost at shutdown");
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
            dsession::on_result(e, &mut l.dev, request, outcome).await?;
            next(e, l).await
        }
        Step::Resend(out) => {
            tracing::info!(device = %l.dev.device_id, "empty POST while a request was outstanding: its envelope never reached the CPE; sending it again");
            Ok(out)
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

/// A session saved when its connection closed mid-way.
#[derive(serde::Deserialize)]
struct SavedSession {
    engine: cwmp::Session,
    dev: DeviceSession,
}

impl SavedSession {
    /// Saved sessions are sealed at rest: they hold what is about to be sent (passwords
    /// of tasks and lines included).
    fn open(store: &Store, stored: &str) -> Result<SavedSession> {
        let json = store
            .keyring()
            .open(crate::secrets::purpose::SAVED_SESSION, stored)?;
        Ok(serde_json::from_str(&json)?)
    }
}

/// 64 random bits in hex: half of a session id.
fn new_id() -> String {
    let mut b = [0u8; 8];
    rand::fill(&mut b);
    hex::encode(b)
}
