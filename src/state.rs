//! The state request handlers and background jobs share: [`AppState`], and the shared
//! state of the CWMP endpoint ([`CwmpState`]: the CPE authenticator's nonce, limiter and
//! credential caches, connection numbering).
//!
//! Plain data, no behaviour and no HTTP: `http` imports this module, this module never
//! imports `http` (the layering test checks it). The behaviour on these values lives in
//! `http::cwmp` (the endpoint), `domain::driver` (the sessions) and `app` (start-up).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

use crate::auth::{FailureLimiter, NonceCounts, NonceIssuer};
use crate::config::{Config, CpeAuth, Secret};
use crate::domain::driver::Driver;
use crate::store::Store;

pub use crate::domain::Clock;

/// Everything request handlers and background jobs share.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    /// Unique per process; names this node in session locks.
    pub node_id: String,
    pub clock: Clock,
    pub cwmp: CwmpState,
    /// The CWMP session driver: live sessions, resumption, reaper, session log.
    pub driver: Arc<Driver>,
    /// File signing and storage, connection requests, task notifications.
    pub services: Arc<crate::domain::services::Services>,
}

impl AppState {
    pub fn now(&self) -> i64 {
        (self.clock)()
    }
}

/// Shared state of the CWMP endpoint (its behaviour: `http::cwmp`); the sessions themselves
/// are the driver's ([`AppState::driver`]).
pub struct CwmpState {
    pub auth: CpeAuthenticator,
    pub next_conn: AtomicU64,
}

/// A cached credential look-up of the CPE authenticator.
pub(crate) struct CachedCreds {
    /// (device id, HA1, issued) when the username belongs to a device: its own
    /// credentials, or (`issued`) ones ferroacs issued to it and it has not used yet.
    pub(crate) device: Option<(String, String, bool)>,
    pub(crate) expires: i64,
}

/// CPE authentication state: the Digest nonce issuer and nonce-count replay protection, the
/// failed-login limiter, the default credentials and a short cache of per-device ones (its
/// behaviour: `http::cwmp::auth`).
pub struct CpeAuthenticator {
    pub(crate) mode: CpeAuth,
    pub(crate) realm: String,
    pub(crate) allow_basic: bool,
    /// `cwmp.tls_client_ca` is set: a CPE must present a certificate of that CA.
    pub(crate) require_client_cert: bool,
    pub(crate) issuer: NonceIssuer,
    pub(crate) counts: Mutex<NonceCounts>,
    pub(crate) limiter: Mutex<FailureLimiter>,
    pub(crate) default_username: Option<String>,
    pub(crate) default_password: Option<Secret>,
    pub(crate) cache: DashMap<String, CachedCreds>,
    /// Logins refused for wrong or unusable credentials.
    pub failures: std::sync::atomic::AtomicU64,
    /// Logins refused unchecked by the failed-login limiter.
    pub blocked: std::sync::atomic::AtomicU64,
    /// Logins with the shared default credentials refused because the device has its own.
    pub shared_refused: std::sync::atomic::AtomicU64,
    /// Devices whose refused shared login was logged already (logged once per device).
    pub(crate) shared_refused_logged: DashMap<String, ()>,
}
