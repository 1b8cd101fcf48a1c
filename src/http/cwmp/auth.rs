//! CPE authentication on the CWMP endpoint: HTTP Digest (Basic over TLS, or everywhere when
//! allowed), TLS client certificates, per-device or default credentials, and limiting of
//! failed logins per source address and per username (`auth::ratelimit`: a correct login
//! gets through an address blocked by someone else's failures). Nothing is stored for an
//! unauthenticated request.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use dashmap::DashMap;

use crate::auth::{
    self, digest, AuthError, Authorization, FailureLimiter, FailureLimiterConfig, Gate,
    NonceCounts, NonceIssuer,
};
use crate::config::{Config, CpeAuth};
use crate::domain::session::CpeLogin;
use crate::error::Result;
use crate::state::AppState;
use crate::state::CachedCreds;
pub use crate::state::CpeAuthenticator;
use crate::store::Store;

/// The request's `Authorization` header, parsed once per request: the failed-login limiter
/// and the check both read it. `None`: no header, or one that is not text (both get the
/// challenge).
fn authorization(req: &HttpRequest) -> Option<Rc<std::result::Result<Authorization, AuthError>>> {
    type Parsed = Rc<std::result::Result<Authorization, AuthError>>;
    if let Some(p) = req.extensions().get::<Parsed>() {
        return Some(p.clone());
    }
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let parsed: Parsed = Rc::new(digest::parse_authorization(value));
    req.extensions_mut().insert(parsed.clone());
    Some(parsed)
}

/// Who the CPE proved to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No HTTP authentication required (`cwmp.auth = "none"`) or a verified client certificate.
    Unauthenticated,
    /// The shared default credentials.
    Default { username: String },
    /// A device's own credentials; `issued`: credentials ferroacs issued to it, used for
    /// the first time (`domain::credentials`).
    Device {
        device_id: String,
        username: String,
        issued: bool,
    },
}

impl Principal {
    /// Whether the device must not have credentials of its own (it logged in with the
    /// default ones, which must not unlock a device that has its own).
    pub fn default_credentials(&self) -> bool {
        matches!(self, Principal::Default { .. })
    }

    /// How the CPE logged in, in the domain's terms.
    pub fn login(&self) -> CpeLogin {
        match self {
            Principal::Unauthenticated => CpeLogin::NotRequired,
            Principal::Default { username } => CpeLogin::Shared {
                username: username.clone(),
            },
            Principal::Device { issued: true, .. } => CpeLogin::Issued,
            Principal::Device { issued: false, .. } => CpeLogin::Own,
        }
    }

    /// Whether these fresh credentials may continue a session of `device_id` on a connection
    /// other than the one that opened it. `opened_with_default`: the session was opened with
    /// the shared default credentials (so the device had none of its own).
    pub fn may_continue(&self, device_id: &str, opened_with_default: bool) -> bool {
        match self {
            Principal::Unauthenticated => true,
            Principal::Device { device_id: d, .. } => d == device_id,
            Principal::Default { .. } => opened_with_default,
        }
    }
}

const CACHE_MS: i64 = 30_000;

impl CpeAuthenticator {
    pub fn new(config: &Config, store: &Store) -> Result<Self> {
        // Nonces must validate on every node: the secret is shared through the database.
        let secret_hex = store.setting_or_init("digest_nonce_secret", || {
            let mut b = [0u8; 32];
            rand::fill(&mut b);
            hex::encode(b)
        })?;
        let mut secret = [0u8; 32];
        let bytes = hex::decode(secret_hex.trim()).unwrap_or_default();
        if bytes.len() == 32 {
            secret.copy_from_slice(&bytes);
        } else {
            return Err(crate::error::Error::internal(
                "stored digest_nonce_secret is not 32 hex bytes",
            ));
        }
        let window_ms = 60_000;
        Ok(CpeAuthenticator {
            mode: config.cwmp.auth,
            realm: config.cwmp.realm.clone(),
            allow_basic: config.cwmp.allow_basic,
            require_client_cert: config.cwmp.tls_client_ca.is_some(),
            issuer: NonceIssuer::new(secret, config.cwmp.nonce_ttl_secs * 1000),
            counts: Mutex::new(NonceCounts::default()),
            limiter: Mutex::new(FailureLimiter::new(FailureLimiterConfig {
                max_failures: config.cwmp.max_auth_failures.max(1),
                window_ms,
                block_ms: 5 * 60_000,
                capacity: 100_000,
            })),
            default_username: config.cwmp.default_username.clone(),
            default_password: config.cwmp.default_password.clone(),
            cache: DashMap::new(),
            failures: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            shared_refused: AtomicU64::new(0),
            shared_refused_logged: DashMap::new(),
        })
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Seconds to wait when this attempt is refused unchecked after too many failures
    /// (of its username from this address, see `auth::ratelimit`). Requests without
    /// credentials are never refused here: they get the challenge.
    pub fn blocked(&self, req: &HttpRequest, ip: IpAddr, now: i64) -> Option<u64> {
        let parsed = authorization(req);
        let username = match parsed.as_deref() {
            Some(Ok(a)) => Some(a.username()),
            _ => None,
        };
        let gate = self
            .limiter
            .lock()
            .ok()?
            .gate(ip, username, now.max(0) as u64);
        match gate {
            Gate::Open => None,
            Gate::Refused(secs) => {
                self.blocked.fetch_add(1, Ordering::Relaxed);
                Some(secs)
            }
        }
    }

    /// Forget cached credentials of `username` (after they changed on this node).
    pub fn invalidate(&self, username: &str) {
        self.cache.remove(username);
    }

    fn challenge(&self, now: i64, stale: bool, tls: bool, close: bool) -> HttpResponse {
        let mut b = HttpResponse::build(StatusCode::UNAUTHORIZED);
        b.insert_header((
            header::WWW_AUTHENTICATE,
            self.issuer.challenge(&self.realm, now.max(0) as u64, stale),
        ));
        if tls || self.allow_basic {
            b.append_header((
                header::WWW_AUTHENTICATE,
                format!("Basic realm=\"{}\"", self.realm),
            ));
        }
        if close {
            b.insert_header((header::CONNECTION, "close"));
        }
        b.content_type("text/plain; charset=utf-8")
            .body("authentication required\n")
    }

    fn failure(&self, ip: IpAddr, now: i64, username: &str, why: &str, tls: bool) -> HttpResponse {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let blocked = self
            .limiter
            .lock()
            .ok()
            .and_then(|mut l| l.record_failure(ip, username, now.max(0) as u64));
        tracing::warn!(%ip, username, reason = why, "CPE authentication failed");
        if let Some(secs) = blocked {
            tracing::warn!(%ip, seconds = secs, "too many failed logins: address blocked");
        }
        self.challenge(now, false, tls, true)
    }

    /// The device `username` belongs to: (device id, HA1, issued). `fresh`: skip the cache.
    /// The second value says whether the answer came from the cache.
    async fn lookup(
        &self,
        state: &AppState,
        username: &str,
        now: i64,
        fresh: bool,
    ) -> Result<(Option<(String, String, bool)>, bool)> {
        if !fresh {
            if let Some(c) = self.cache.get(username) {
                if c.expires > now {
                    return Ok((c.device.clone(), true));
                }
            }
        }
        let device = crate::domain::credentials::username_owner(&state.store, username).await?;
        // Issued credentials are used once before they become the device's own: not cached,
        // so the sessions after the confirming one see them as its own at once.
        if device.as_ref().is_some_and(|d| d.2) {
            self.cache.remove(username);
            return Ok((device, false));
        }
        if self.cache.len() > 100_000 {
            self.cache.retain(|_, v| v.expires > now);
        }
        self.cache.insert(
            username.to_string(),
            CachedCreds {
                device: device.clone(),
                expires: now + CACHE_MS,
            },
        );
        Ok((device, false))
    }

    /// The HA1 of the shared default credentials for `username`, or why there is none.
    fn shared_ha1(&self, username: &str) -> std::result::Result<String, &'static str> {
        if self
            .default_username
            .as_deref()
            .is_some_and(|u| u != username)
        {
            return Err("unknown username");
        }
        match &self.default_password {
            Some(pw) => Ok(digest::ha1(username, &self.realm, pw.expose())),
            None => Err(
                "no credentials: the device has none of its own and cwmp.default_password is not set",
            ),
        }
    }

    /// Check the request's credentials. `Err` is the response to send (a 401 challenge, a
    /// 403 when `cwmp.tls_client_ca` is set and the connection has no CPE certificate, or
    /// 503 when the database cannot be asked). `cpe_cert`: the connection presented a
    /// certificate that verifies against `cwmp.tls_client_ca` (a phone's certificate, of
    /// `phones.client_ca`, is no CPE's).
    pub async fn authenticate(
        &self,
        state: &AppState,
        req: &HttpRequest,
        tls: bool,
        cpe_cert: bool,
    ) -> std::result::Result<Principal, HttpResponse> {
        if cpe_cert {
            return Ok(Principal::Unauthenticated);
        }
        if self.require_client_cert {
            // Only reachable when phones.client_ca made certificates optional in the
            // handshake: a CPE still needs one of cwmp.tls_client_ca.
            let ip = req
                .peer_addr()
                .map(|a| a.ip())
                .unwrap_or(IpAddr::from([0, 0, 0, 0]));
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%ip, "CPE refused: no client certificate of cwmp.tls_client_ca");
            return Err(HttpResponse::Forbidden()
                .insert_header((header::CONNECTION, "close"))
                .content_type("text/plain; charset=utf-8")
                .body("this endpoint needs a client certificate signed by a CA of cwmp.tls_client_ca\n"));
        }
        if self.mode == CpeAuth::None {
            return Ok(Principal::Unauthenticated);
        }
        let now = state.now();
        let ip = req
            .peer_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let Some(parsed) = authorization(req) else {
            return Err(self.challenge(now, false, tls, false));
        };
        let parsed = match parsed.as_ref() {
            Ok(a) => a,
            Err(e) => {
                return Err(self.failure(
                    ip,
                    now,
                    "",
                    &format!("unreadable Authorization header: {e}"),
                    tls,
                ))
            }
        };
        if let Authorization::Basic { .. } = parsed {
            if !tls && !self.allow_basic {
                tracing::info!(%ip, "Basic credentials over plain HTTP refused; asking for Digest");
                return Err(self.challenge(now, false, tls, false));
            }
        }
        let username = parsed.username().to_string();
        // Candidates in order: the device's own credentials, or credentials issued to it and
        // not used yet; then the shared ones (a device that ignored the change keeps
        // working, and a device back from a factory reset logs in with its own username and
        // the shared password: whether they open it is decided once its Inform is known,
        // `domain::credentials::factory_reset_ordered`, and refused otherwise). A cached
        // look-up that no candidate matches is looked up again: the credentials may have
        // changed on another node.
        let mut fresh = false;
        loop {
            let (device, cached) = match self.lookup(state, &username, now, fresh).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look up CPE credentials");
                    return Err(HttpResponse::ServiceUnavailable()
                        .insert_header((header::RETRY_AFTER, "30"))
                        .body("database unavailable\n"));
                }
            };
            let shared = || {
                self.shared_ha1(&username).map(|ha1| {
                    (
                        Principal::Default {
                            username: username.clone(),
                        },
                        ha1,
                    )
                })
            };
            let mut candidates = Vec::with_capacity(2);
            let mut why = "bad credentials";
            match device {
                Some((device_id, ha1, issued)) => {
                    candidates.push((
                        Principal::Device {
                            device_id,
                            username: username.clone(),
                            issued,
                        },
                        ha1,
                    ));
                    if let Ok(c) = shared() {
                        candidates.push(c);
                    }
                }
                None => match shared() {
                    Ok(c) => candidates.push(c),
                    Err(w) => why = w,
                },
            }
            for (principal, ha1) in candidates {
                let verdict = match &parsed {
                    Authorization::Digest(d) => {
                        let uri = req.uri().to_string();
                        let mut counts = match self.counts.lock() {
                            Ok(c) => c,
                            Err(p) => p.into_inner(),
                        };
                        digest::verify(
                            d,
                            "POST",
                            &uri,
                            &ha1,
                            now.max(0) as u64,
                            &self.issuer,
                            &mut counts,
                            &self.realm,
                        )
                    }
                    Authorization::Basic { username, password } => {
                        digest::verify_basic(username, password, &self.realm, &ha1)
                    }
                };
                match verdict {
                    Ok(()) => {
                        if let Ok(mut l) = self.limiter.lock() {
                            l.record_success(ip, &username);
                        }
                        return Ok(principal);
                    }
                    Err(AuthError::BadCredentials) => {}
                    Err(AuthError::Stale) => return Err(self.challenge(now, true, tls, false)),
                    Err(e) => return Err(self.failure(ip, now, &username, &e.to_string(), tls)),
                }
            }
            if !cached {
                return Err(self.failure(ip, now, &username, why, tls));
            }
            fresh = true;
        }
    }

    /// Refuse a login found wrong after the fact (e.g. default credentials for a device
    /// that has its own).
    pub fn reject(&self, ip: IpAddr, now: i64, why: &str, tls: bool) -> HttpResponse {
        self.failure(ip, now, "", why, tls)
    }

    /// Refuse the shared credentials for a device that has its own (issued at first contact
    /// or provisioned): 401, counted as `shared_credentials`, logged once per device.
    pub fn reject_shared(
        &self,
        ip: IpAddr,
        now: i64,
        device_id: &str,
        why: &str,
        tls: bool,
    ) -> HttpResponse {
        self.shared_refused.fetch_add(1, Ordering::Relaxed);
        let first = self.shared_refused_logged.len() < 100_000
            && self
                .shared_refused_logged
                .insert(device_id.to_string(), ())
                .is_none();
        if first {
            tracing::warn!(%ip, device = %device_id, "CPE login refused: {why}");
        } else {
            tracing::debug!(%ip, device = %device_id, "CPE login refused: {why}");
        }
        if let Ok(mut l) = self.limiter.lock() {
            let _ = l.record_failure(ip, "", now.max(0) as u64);
        }
        self.challenge(now, false, tls, true)
    }

    /// A device's own credentials only open that device.
    pub fn authorize_device(
        &self,
        p: &Principal,
        device_id: &str,
        ip: IpAddr,
        now: i64,
    ) -> std::result::Result<(), HttpResponse> {
        if let Principal::Device {
            device_id: owner,
            username,
            ..
        } = p
        {
            if owner != device_id {
                return Err(self.failure(
                    ip,
                    now,
                    username,
                    &format!("credentials of {owner} used by {device_id}"),
                    false,
                ));
            }
        }
        Ok(())
    }
}

/// Hash a device's CWMP password for storage (HA1 of the configured realm).
pub fn device_ha1(config: &Config, username: &str, password: &str) -> String {
    auth::digest::ha1(username, &config.cwmp.realm, password)
}
