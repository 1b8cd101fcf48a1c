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
}

impl Services {
    /// `own_listeners`: the addresses this process listens on, never a connection-request
    /// target.
    pub fn new(
        config: &Config,
        store: &Store,
        own_listeners: &[std::net::SocketAddr],
    ) -> Result<Services> {
        let requester = crate::domain::connreq::http_requester(
            config.api.connection_request_timeout_ms,
            config.api.connection_request_allow_basic,
            crate::domain::connreq::target_policy(config, own_listeners)?,
        );
        Ok(Services {
            signer: UrlSigner::load(store)?,
            files: FileStore::new(&config.files.dir, config.files.max_upload_bytes),
            connreq: ConnReqService::new(
                requester,
                config.api.connection_request_concurrency,
                i64::try_from(config.api.connection_request_min_interval_ms).unwrap_or(i64::MAX),
            ),
            task_watch: TaskWatch::default(),
        })
    }
}
