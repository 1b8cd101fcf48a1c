//! The phone fetch log, written in batches off the request path.
//!
//! Every fetch (served or refused) becomes a [`NewFetch`] pushed into a bounded buffer;
//! a background writer ([`FetchLog::run_writer`]) records what is waiting in one write
//! transaction every `phones.fetch_log_flush_ms`, or sooner when a batch is full. When the
//! buffer holds `phones.fetch_log_buffer` rows (the database is slower than a flood of
//! fetches), further rows are dropped and counted (`ferroacs_phone_fetch_log_dropped_total`
//! on /metrics): memory stays bounded and serving files never waits for the log.
//!
//! Nothing waiting is lost on a clean shutdown ([`FetchLog::flush_blocking`] after the
//! servers stopped), and the API and console flush before reading a phone, so an operator
//! (or a test) always sees the fetches this node served. A fetch that locks a phone to
//! its network is not batched (see `domain::phones::fetch`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::Result;
use crate::store::phones::NewFetch;
use crate::store::Store;

/// Rows that wake the writer before its period ends (a smaller buffer waits for the
/// period, then drops).
const BATCH: usize = 500;

/// Fetches waiting to be recorded, and what happened to the others.
pub struct FetchLog {
    pending: Mutex<Vec<NewFetch>>,
    capacity: usize,
    /// Held while a batch is written, so batches reach the database in the order taken.
    writing: Mutex<()>,
    wake: tokio::sync::Notify,
    dropped: AtomicU64,
    lost: AtomicU64,
}

impl FetchLog {
    /// A log holding at most `capacity` (at least 1) rows in memory.
    pub fn new(capacity: usize) -> FetchLog {
        FetchLog {
            pending: Mutex::new(Vec::new()),
            capacity: capacity.max(1),
            writing: Mutex::new(()),
            wake: tokio::sync::Notify::new(),
            dropped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        }
    }

    /// Queue a row; `false` when the buffer is full and the row was dropped (counted).
    pub fn push(&self, row: NewFetch) -> bool {
        let mut p = match self.pending.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        if p.len() >= self.capacity {
            drop(p);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        p.push(row);
        let wake = p.len() >= BATCH;
        drop(p);
        if wake {
            self.wake.notify_one();
        }
        true
    }

    /// Rows waiting in memory.
    pub fn pending(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Rows dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Rows the database refused (logged as warnings).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Write everything waiting now, on this thread (a blocking one: a database task or the
    /// shutdown path). Returns the rows written.
    pub fn flush_blocking(&self, store: &Store) -> usize {
        let _order = match self.writing.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let batch = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        if batch.is_empty() {
            return 0;
        }
        match store.record_phone_fetches(&batch) {
            Ok(n) => n,
            Err(e) => {
                // One bad row must not cost the others: record them one by one.
                tracing::warn!(error = %e, rows = batch.len(), "phone fetch log batch refused; recording row by row");
                let mut written = 0;
                for row in &batch {
                    match store.record_phone_fetch(row) {
                        Ok(()) => written += 1,
                        Err(e) => {
                            self.lost.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, file = %row.file, "phone fetch log row lost");
                        }
                    }
                }
                written
            }
        }
    }

    /// Write everything waiting now, on a database thread.
    pub async fn flush(self: &Arc<Self>, store: &Store) -> Result<usize> {
        let me = self.clone();
        store.run(move |s| Ok(me.flush_blocking(s))).await
    }

    /// Writes batches every `period`, or sooner when a batch is full; runs forever.
    pub async fn run_writer(self: Arc<Self>, store: Store, period: Duration) {
        loop {
            let _ = tokio::time::timeout(period, self.wake.notified()).await;
            if self.pending() == 0 {
                continue;
            }
            if let Err(e) = self.flush(&store).await {
                tracing::warn!(error = %e, "phone fetch log not written");
            }
        }
    }
}
