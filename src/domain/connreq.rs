//! Asking a device to start a session now: connection requests with the device's
//! credentials, a bound on how many run at once, a per-device minimum interval, and the
//! outcome recorded for operators.
//!
//! Targets are checked against the configured [`TargetPolicy`] before anything is sent,
//! and the recorded outcome is a fixed code and text: nothing the target answered is
//! stored or shown.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serde::Serialize;

use crate::connreq::{ConnReqOutcome, ConnReqTarget, ConnectionRequester, TargetPolicy};
use crate::error::Result;
use crate::store::search::ConnReqRow;
use crate::store::Store;

/// How a connection request ended, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrResult {
    /// `ok`, `auth_failed`, `auth_unsupported`, `unreachable` (refused, reset or timed
    /// out alike), `busy`, `refused_by_policy`, `bad_url`, `bad_response`, `no_url` (the
    /// device never reported a ConnectionRequestURL) or `rate_limited`.
    pub outcome: &'static str,
    pub message: String,
    pub at: i64,
}

/// The outcome code of a transport result.
pub fn outcome_code(o: &ConnReqOutcome) -> &'static str {
    o.code()
}

/// Sends connection requests for the API and bulk jobs.
pub struct ConnReqService {
    requester: Arc<dyn ConnectionRequester>,
    permits: tokio::sync::Semaphore,
    last: DashMap<String, i64>,
    min_interval_ms: i64,
    /// Outcomes of the requests sent, for /metrics.
    pub counters: crate::connreq::ConnReqCounters,
}

impl ConnReqService {
    pub fn new(
        requester: Arc<dyn ConnectionRequester>,
        concurrency: usize,
        min_interval_ms: i64,
    ) -> ConnReqService {
        ConnReqService {
            requester,
            permits: tokio::sync::Semaphore::new(concurrency.max(1)),
            last: DashMap::new(),
            min_interval_ms,
            counters: Default::default(),
        }
    }

    /// Send one connection request to `device_id` and record its outcome.
    pub async fn request(&self, store: &Store, device_id: &str, now: i64) -> Result<CrResult> {
        if let Some(prev) = self.last.get(device_id).map(|v| *v) {
            if now - prev < self.min_interval_ms {
                return Ok(CrResult {
                    outcome: "rate_limited",
                    message: format!(
                        "a connection request was sent {} ms ago; at most one per {} ms per device",
                        now - prev,
                        self.min_interval_ms
                    ),
                    at: now,
                });
            }
        }
        self.last.insert(device_id.to_string(), now);
        if self.last.len() > 100_000 {
            let horizon = now - self.min_interval_ms;
            self.last.retain(|_, at| *at >= horizon);
        }
        let id = device_id.to_string();
        let dev = store.run(move |s| s.get_device(&id)).await?;
        let Some(dev) = dev else {
            return Err(crate::error::Error::not_found(format!(
                "device {device_id}"
            )));
        };
        let result = if dev.connection_request_url.is_empty() {
            CrResult {
                outcome: "no_url",
                message: "the device has not reported a ConnectionRequestURL; it will run the \
                          task at its next periodic session"
                    .into(),
                at: now,
            }
        } else {
            let password = match &dev.cr_password {
                Some(sealed) => store
                    .keyring()
                    .open(crate::secrets::purpose::CR_PASSWORD, sealed)?,
                None => String::new(),
            };
            let target = ConnReqTarget {
                url: dev.connection_request_url.clone(),
                username: dev.cr_username.clone().unwrap_or_default(),
                password,
            };
            let outcome = match self.permits.acquire().await {
                Ok(_permit) => self.requester.send(&target).await,
                Err(_) => {
                    ConnReqOutcome::Unreachable("connection requests are shutting down".into())
                }
            };
            self.counters.record(&outcome);
            if let ConnReqOutcome::RefusedByPolicy(why) = &outcome {
                tracing::warn!(device = %device_id, reason = %why, "connection request refused by the target policy");
            }
            CrResult {
                outcome: outcome_code(&outcome),
                message: outcome.to_string(),
                at: now,
            }
        };
        let row = ConnReqRow {
            device_id: device_id.to_string(),
            at: now,
            outcome: result.outcome.to_string(),
            message: result.message.clone(),
        };
        store.run(move |s| s.record_connreq(&row)).await?;
        Ok(result)
    }
}

/// The target policy of the configuration, with this process's own listeners refused.
pub fn target_policy(
    config: &crate::config::Config,
    own: &[std::net::SocketAddr],
) -> Result<TargetPolicy> {
    TargetPolicy::new(
        &config.api.connection_request_allow_networks,
        &config.api.connection_request_deny_networks,
    )
    .map(|p| p.with_own_listeners(own))
    .map_err(|e| crate::error::Error::invalid("api.connection_request_allow_networks", e))
}

/// Build the HTTP connection-request client: system trust anchors for `https` URLs.
pub fn http_requester(
    timeout_ms: u64,
    allow_basic: bool,
    policy: TargetPolicy,
) -> Arc<dyn ConnectionRequester> {
    let mut roots = rustls::RootCertStore::empty();
    for path in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        use rustls_pki_types::pem::PemObject;
        if let Ok(iter) = rustls_pki_types::CertificateDer::pem_file_iter(path) {
            for cert in iter.flatten() {
                let _ = roots.add(cert);
            }
            break;
        }
    }
    let tls = match crate::connreq::http::tls_config_with_roots(roots) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "TLS for connection requests unavailable");
            Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                })
                .unwrap_or_else(|_| {
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                }),
            )
        }
    };
    Arc::new(
        crate::connreq::HttpConnReq::new(
            Duration::from_millis(timeout_ms.max(100)),
            allow_basic,
            tls,
        )
        .with_policy(Arc::new(policy)),
    )
}
