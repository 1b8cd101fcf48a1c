//! CPE authentication on the CWMP endpoint: HTTP Digest (Basic over TLS, or everywhere when
//! allowed), TLS client certificates, per-device or default credentials, and limiting of
//! failed logins per source address. Nothing is stored for an unauthenticated request.

use std::net::IpAddr;
use std::sync::Mutex;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use dashmap::DashMap;

use crate::auth::{
    self, digest, AuthError, Authorization, FailureLimiter, FailureLimiterConfig, NonceCounts,
    NonceIssuer,
};
use crate::config::{Config, CpeAuth};
use crate::error::Result;
use crate::state::AppState;
use crate::state::CachedCreds;
pub use crate::state::CpeAuthenticator;
use crate::store::Store;

/// Who the CPE proved to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No HTTP authentication required (`cwmp.auth = "none"`) or a verified client certificate.
    Unauthenticated,
    /// The shared default credentials.
    Default { username: String },
    /// A device's own credentials.
    Device { device_id: String, username: String },
}

impl Principal {
    /// Whether the device must not have credentials of its own (it logged in with the
    /// default ones, which must not unlock a device that has its own).
    pub fn default_credentials(&self) -> bool {
        matches!(self, Principal::Default { .. })
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
        })
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Seconds to wait when this address is blocked after too many failures.
    pub fn blocked(&self, ip: IpAddr, now: i64) -> Option<u64> {
        self.limiter.lock().ok()?.is_blocked(ip, now.max(0) as u64)
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
        let blocked = self
            .limiter
            .lock()
            .ok()
            .and_then(|mut l| l.record_failure(ip, now.max(0) as u64));
        tracing::warn!(%ip, username, reason = why, "CPE authentication failed");
        if let Some(secs) = blocked {
            tracing::warn!(%ip, seconds = secs, "too many failed logins: address blocked");
        }
        self.challenge(now, false, tls, true)
    }

    async fn lookup(
        &self,
        state: &AppState,
        username: &str,
        now: i64,
    ) -> Result<Option<(String, String)>> {
        if let Some(c) = self.cache.get(username) {
            if c.expires > now {
                return Ok(c.device.clone());
            }
        }
        let user = username.to_string();
        let row = state
            .store
            .run(move |s| s.device_by_cwmp_username(&user))
            .await?;
        let device = row.and_then(|d| d.cwmp_ha1.map(|h| (d.id, h)));
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
        Ok(device)
    }

    /// Check the request's credentials. `Err` is the response to send (a 401 challenge, or
    /// 503 when the database cannot be asked).
    pub async fn authenticate(
        &self,
        state: &AppState,
        req: &HttpRequest,
        tls: bool,
        client_cert: bool,
    ) -> std::result::Result<Principal, HttpResponse> {
        if self.mode == CpeAuth::None || client_cert {
            return Ok(Principal::Unauthenticated);
        }
        let now = state.now();
        let ip = req
            .peer_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let Some(value) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Err(self.challenge(now, false, tls, false));
        };
        let parsed = match digest::parse_authorization(value) {
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
        let device = match self.lookup(state, &username, now).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look up CPE credentials");
                return Err(HttpResponse::ServiceUnavailable()
                    .insert_header((header::RETRY_AFTER, "30"))
                    .body("database unavailable\n"));
            }
        };
        let (principal, ha1) = match device {
            Some((device_id, ha1)) => (
                Principal::Device {
                    device_id,
                    username: username.clone(),
                },
                ha1,
            ),
            None => {
                if self
                    .default_username
                    .as_deref()
                    .is_some_and(|u| u != username)
                {
                    return Err(self.failure(ip, now, &username, "unknown username", tls));
                }
                let Some(pw) = &self.default_password else {
                    return Err(self.failure(
                        ip,
                        now,
                        &username,
                        "no credentials: the device has none of its own and cwmp.default_password is not set",
                        tls,
                    ));
                };
                (
                    Principal::Default {
                        username: username.clone(),
                    },
                    digest::ha1(&username, &self.realm, pw.expose()),
                )
            }
        };
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
                    l.record_success(ip);
                }
                Ok(principal)
            }
            Err(AuthError::Stale) => Err(self.challenge(now, true, tls, false)),
            Err(e) => Err(self.failure(ip, now, &username, &e.to_string(), tls)),
        }
    }

    /// Refuse a login found wrong after the fact (e.g. default credentials for a device
    /// that has its own).
    pub fn reject(&self, ip: IpAddr, now: i64, why: &str, tls: bool) -> HttpResponse {
        self.failure(ip, now, "", why, tls)
    }

    /// A device's own credentials only open that device.
    pub fn authorize_device(
        &self,
        p: &Principal,
        device_id: &str,
        ip: IpAddr,
    ) -> std::result::Result<(), HttpResponse> {
        if let Principal::Device {
            device_id: owner,
            username,
        } = p
        {
            if owner != device_id {
                let now = crate::store::now_ms();
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
