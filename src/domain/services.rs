//! Long-lived helpers shared by the CWMP session driver and the admin API: the URL signer of
//! the file server, the file store, connection requests, and in-process notification of
//! finished tasks (so an API call waiting for a task wakes up at once instead of polling).

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::Notify;

use crate::config::Config;
use crate::domain::connreq::ConnReqService;
use crate::domain::files::{FileStore, UrlSigner};
use crate::error::Result;
use crate::store::Store;

/// Wakes the waiters of a task when it finishes on this node.
#[derive(Default)]
pub struct TaskWatch {
    waiters: DashMap<i64, Arc<Notify>>,
}

impl TaskWatch {
    /// A handle to wait on; create it before reading the task so no wake-up is missed.
    pub fn subscribe(&self, id: i64) -> Arc<Notify> {
        self.waiters.entry(id).or_default().clone()
    }

    /// Forget a handle when its waiter is done.
    pub fn unsubscribe(&self, id: i64, handle: Arc<Notify>) {
        drop(handle);
        self.waiters
            .remove_if(&id, |_, n| Arc::strong_count(n) <= 1);
    }

    /// The task changed state: wake whoever waits on it.
    pub fn notify(&self, id: i64) {
        if let Some(n) = self.waiters.get(&id) {
            n.notify_waiters();
        }
    }
}

/// Everything the API and the session driver share besides the store and the config.
pub struct Services {
    pub signer: UrlSigner,
    pub files: FileStore,
    pub connreq: ConnReqService,
    pub task_watch: TaskWatch,
    /// Phones: the rendered-file cache and the failed-fetch counter.
    pub phones: crate::domain::phones::PhoneService,
    /// Where ferroacs may send requests of its own (connection requests, SIP NOTIFY).
    pub connreq_policy: crate::connreq::policy::TargetPolicy,
    /// The STUN server's address and caches (TR-111).
    pub stun: crate::domain::stun::StunService,
    /// Campaign webhooks, under the same policy.
    pub webhooks: crate::connreq::webhook::WebhookSender,
}

impl Services {
    /// `own_listeners`: the addresses this process listens on, never a connection-request
    /// target.
    pub fn new(
        config: &Config,
        store: &Store,
        own_listeners: &[std::net::SocketAddr],
    ) -> Result<Services> {
        let policy = crate::domain::connreq::target_policy(config, own_listeners)?;
        let requester = crate::domain::connreq::http_requester(
            config.api.connection_request_timeout_ms,
            config.api.connection_request_allow_basic,
            policy.clone(),
        );
        let signer = UrlSigner::load(store)?;
        Ok(Services {
            signer: signer.clone(),
            files: FileStore::new(&config.files.dir, config.files.max_upload_bytes),
            connreq: ConnReqService::new(
                requester,
                config.api.connection_request_concurrency,
                i64::try_from(config.api.connection_request_min_interval_ms).unwrap_or(i64::MAX),
            )
            .with_transports(
                crate::domain::connreq::parse_transports(&config.api.connection_request_transports)
                    .unwrap_or_default(),
                i64::try_from(config.api.connection_request_confirm_timeout_ms).unwrap_or(i64::MAX),
                i64::try_from(config.stun.binding_max_age_secs.saturating_mul(1000))
                    .unwrap_or(i64::MAX),
            ),
            task_watch: TaskWatch::default(),
            phones: crate::domain::phones::PhoneService::new(
                own_listeners.first().copied(),
                phone_nonce_secret(store)?,
            )
            .with_fetch_log_buffer(config.phones.fetch_log_buffer)
            .with_signer(signer),
            webhooks: crate::domain::connreq::webhook_sender(
                crate::connreq::webhook::TIMEOUT_MS,
                policy.clone(),
            ),
            connreq_policy: policy,
            stun: Default::default(),
        })
    }
}

/// The secret of the Digest nonces of `/prov/auth/…`, shared by every node through the
/// database.
fn phone_nonce_secret(store: &Store) -> Result<[u8; 32]> {
    let hex_secret = store.setting_or_init("phone_digest_nonce_secret", || {
        let mut b = [0u8; 32];
        rand::fill(&mut b);
        hex::encode(b)
    })?;
    let mut secret = [0u8; 32];
    match hex::decode(hex_secret.trim()) {
        Ok(b) if b.len() == 32 => secret.copy_from_slice(&b),
        _ => {
            return Err(crate::error::Error::internal(
                "stored phone_digest_nonce_secret is not 32 hex bytes",
            ))
        }
    }
    Ok(secret)
}
