//! The state request handlers and background jobs share: [`AppState`], and the shared
//! state of the CWMP endpoint ([`CwmpState`]: live sessions, the CPE authenticator's nonce,
//! limiter and credential caches, counters).
//!
//! Plain data, no behaviour and no HTTP: `http` imports this module, this module never
//! imports `http` (the layering test checks it). The behaviour on these values lives in
//! `http::cwmp` (the endpoint) and `app` (start-up).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

use crate::auth::{FailureLimiter, NonceCounts, NonceIssuer};
use crate::config::{Config, CpeAuth, Secret};
use crate::cwmp;
use crate::domain::session::DeviceSession;
use crate::store::sessions::NewSessionLog;
use crate::store::Store;

/// A source of "now" in milliseconds; replaceable in tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Everything request handlers and background jobs share.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    /// Unique per process; names this node in session locks.
    pub node_id: String,
    pub clock: Clock,
    pub cwmp: CwmpState,
    /// File signing and storage, connection requests, task notifications.
    pub services: crate::domain::services::Services,
}

impl AppState {
    pub fn now(&self) -> i64 {
        (self.clock)()
    }
}

/// A live session: the protocol state and the business state.
pub struct Live {
    pub id: String,
    pub engine: cwmp::Session,
    pub dev: DeviceSession,
    pub conn_id: Option<u64>,
    pub connected: bool,
    pub last_seen: i64,
    pub ended: bool,
    /// A copy is saved in the database (its connection closed mid-session).
    pub saved: bool,
}

/// Counters for /metrics.
#[derive(Default)]
pub struct CwmpMetrics {
    pub informs: AtomicU64,
    pub sessions_completed: AtomicU64,
    pub sessions_timed_out: AtomicU64,
    pub sessions_failed: AtomicU64,
    pub sessions_resumed: AtomicU64,
    pub auth_failures: AtomicU64,
    pub refused_busy: AtomicU64,
    pub refused_overload: AtomicU64,
    pub bad_requests: AtomicU64,
    pub db_time_us: AtomicU64,
}

/// Shared state of the CWMP endpoint (its behaviour: `http::cwmp`).
pub struct CwmpState {
    pub auth: CpeAuthenticator,
    pub live: DashMap<String, Arc<tokio::sync::Mutex<Live>>>,
    pub by_conn: DashMap<u64, String>,
    pub(crate) next_conn: AtomicU64,
    pub(crate) log_buf: Mutex<Vec<NewSessionLog>>,
    pub(crate) log_notify: tokio::sync::Notify,
    pub metrics: CwmpMetrics,
}

/// A cached credential look-up of the CPE authenticator.
pub(crate) struct CachedCreds {
    /// (device id, HA1) when the username belongs to a device.
    pub(crate) device: Option<(String, String)>,
    pub(crate) expires: i64,
}

/// CPE authentication state: the Digest nonce issuer and nonce-count replay protection, the
/// failed-login limiter, the default credentials and a short cache of per-device ones (its
/// behaviour: `http::cwmp::auth`).
pub struct CpeAuthenticator {
    pub(crate) mode: CpeAuth,
    pub(crate) realm: String,
    pub(crate) allow_basic: bool,
    pub(crate) issuer: NonceIssuer,
    pub(crate) counts: Mutex<NonceCounts>,
    pub(crate) limiter: Mutex<FailureLimiter>,
    pub(crate) default_username: Option<String>,
    pub(crate) default_password: Option<Secret>,
    pub(crate) cache: DashMap<String, CachedCreds>,
}
