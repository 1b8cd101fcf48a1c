//! The scheduler: one leader across nodes runs campaign pacing and scheduled jobs. Cron
//! parsing and windows are pure and live in `domain::cron`.
//!
//! **Leader lease.** A row of `scheduler_lease` names the node that leads and until when.
//! Every tick a node tries to take or renew it with one conditional `UPDATE` (free, expired
//! or already ours), so with several nodes on one PostgreSQL exactly one leads; when the
//! leader dies its lease runs out after `scheduler.lease_ttl_secs` and the next tick of
//! another node takes it. A node that stops cleanly releases it at once.
//!
//! **Ticks.** [`spawn`] runs [`tick`] every `scheduler.tick_ms` of real time, but every
//! decision reads the injected clock (`AppState::now`), so tests advance that clock and call
//! [`tick`] themselves instead of sleeping. Nothing a tick decides lives only in memory:
//! a device is marked in progress in the transaction that queues its task, so a leader
//! killed at any point, or two leaders for a moment, never start a device twice.

use std::sync::Arc;

use crate::domain::campaigns::{self, run};
use crate::error::Result;
use crate::state::AppState;

/// The lease's name in `scheduler_lease`.
pub const LEASE: &str = "scheduler";

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tick {
    /// Whether this node held the lease (and did the work).
    pub leader: bool,
    pub campaigns: usize,
    pub started: usize,
    pub finished: usize,
}

/// One scheduler step at the injected clock's now: take or renew the lease; if this node
/// leads, advance every running campaign and judge the started devices of paused and
/// aborted ones.
pub async fn tick(state: &AppState) -> Result<Tick> {
    if !state.config.scheduler.enabled {
        return Ok(Tick::default());
    }
    let now = state.now();
    let ttl = (state.config.scheduler.lease_ttl_secs as i64).saturating_mul(1000);
    let owner = state.node_id.clone();
    let leader = state
        .store
        .run(move |s| s.acquire_lease(LEASE, &owner, now, now + ttl))
        .await?;
    let mut out = Tick {
        leader,
        ..Tick::default()
    };
    if !leader {
        return Ok(out);
    }
    let ids = state
        .store
        .run(|s| {
            let mut ids = s.campaign_ids_in(campaigns::RUNNING)?;
            ids.extend(s.campaign_ids_with_in_progress()?);
            ids.sort_unstable();
            ids.dedup();
            Ok(ids)
        })
        .await?;
    for id in ids {
        match run::advance(&state.store, &state.services, now, id).await {
            Ok(a) => {
                out.campaigns += 1;
                out.started += a.started;
                out.finished += a.finished;
            }
            Err(e) => tracing::warn!(campaign = id, error = %e, "advancing the campaign failed"),
        }
    }
    Ok(out)
}

/// Run [`tick`] every `scheduler.tick_ms` until the runtime stops.
pub fn spawn(state: Arc<AppState>) {
    if !state.config.scheduler.enabled {
        return;
    }
    actix_web::rt::spawn(async move {
        let every = std::time::Duration::from_millis(state.config.scheduler.tick_ms.max(10));
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_leader = false;
        loop {
            interval.tick().await;
            match tick(&state).await {
                Ok(t) => {
                    if t.leader != was_leader {
                        tracing::info!(node = %state.node_id, leader = t.leader, "scheduler leadership changed");
                        was_leader = t.leader;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "scheduler tick failed"),
            }
        }
    });
}

/// Give the lease up if this node holds it (clean shutdown).
pub fn release(state: &AppState) {
    if let Err(e) = state.store.release_lease(LEASE, &state.node_id) {
        tracing::debug!(error = %e, "releasing the scheduler lease failed");
    }
}
