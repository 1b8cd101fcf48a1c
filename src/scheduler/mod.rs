//! The scheduler: one leader across nodes runs campaign pacing, scheduled jobs and the
//! housekeeping (task expiry, session-log pruning, keeping the last N config backups). Cron
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
//! killed at any point, or two leaders for a moment, never start a device twice; a
//! scheduled job's fire is claimed by moving its next fire time in one conditional `UPDATE`.
//!
//! **Housekeeping.** Task expiry runs on every tick of the leader. Pruning (old session
//! logs and saved CWMP sessions, surplus backups) runs when its slot — a row of
//! `scheduler_lease` whose expiry is the next due time — is due, claimed by the same kind of
//! conditional `UPDATE`, so it runs once per period across all nodes. A node with
//! `scheduler.enabled = false` runs none of this: at least one node must take part.

use std::sync::Arc;

use crate::domain::campaigns::{self, run};
use crate::domain::schedules;
use crate::error::Result;
use crate::state::AppState;

/// The lease's name in `scheduler_lease`.
pub const LEASE: &str = "scheduler";
/// The housekeeping slot of pruning, and its period.
pub const PRUNE_SLOT: &str = "housekeeping:prune";
pub const PRUNE_EVERY_MS: i64 = 3_600_000;
/// The housekeeping slot of backup retention, and its period.
pub const BACKUPS_SLOT: &str = "housekeeping:backups";
pub const BACKUPS_EVERY_MS: i64 = 600_000;

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tick {
    /// Whether this node held the lease (and did the work).
    pub leader: bool,
    pub campaigns: usize,
    pub started: usize,
    pub finished: usize,
    /// Scheduled jobs fired (skipped late fires included).
    pub fired: Vec<schedules::Fired>,
    /// Tasks expired by housekeeping.
    pub expired: usize,
    /// Session-log rows and saved sessions pruned, surplus backups deleted.
    pub pruned: usize,
    /// Campaign state changes delivered to webhooks.
    pub webhooks: usize,
}

/// One scheduler step at the injected clock's now: take or renew the lease; if this node
/// leads, run the housekeeping that is due, fire the due scheduled jobs, advance every
/// running campaign and judge the started devices of paused and aborted ones, then send
/// the campaigns' state changes to their webhooks.
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
    housekeeping(state, now, &mut out).await;
    match schedules::fire_due(&state.store, &state.services, now).await {
        Ok(f) => out.fired = f,
        Err(e) => tracing::warn!(error = %e, "firing scheduled jobs failed"),
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
    match campaigns::notify::deliver_due(&state.store, &state.services.webhooks, now).await {
        Ok(n) => out.webhooks = n,
        Err(e) => tracing::warn!(error = %e, "delivering campaign webhooks failed"),
    }
    Ok(out)
}

/// Expire overdue tasks (every tick); prune session logs, saved sessions and surplus backups
/// when their slot is due. Failures are logged: the next tick tries again.
async fn housekeeping(state: &AppState, now: i64, out: &mut Tick) {
    match state.store.run(move |s| s.expire_tasks(now)).await {
        Ok(ids) => {
            out.expired = ids.len();
            for id in ids {
                state.services.task_watch.notify(id);
            }
        }
        Err(e) => tracing::warn!(error = %e, "expiring overdue tasks failed"),
    }
    let owner = state.node_id.clone();
    let keep = state.config.cwmp.session_log_retention_days as i64 * 86_400_000;
    let r = state
        .store
        .run(move |s| {
            if !s.claim_slot(PRUNE_SLOT, &owner, now, now + PRUNE_EVERY_MS)? {
                return Ok(0);
            }
            Ok(s.prune_session_logs(now - keep)? + s.prune_cwmp_sessions(now)?)
        })
        .await;
    match r {
        Ok(n) => out.pruned += n,
        Err(e) => tracing::warn!(error = %e, "pruning old session logs failed"),
    }
    let owner = state.node_id.clone();
    let due = state
        .store
        .run(move |s| s.claim_slot(BACKUPS_SLOT, &owner, now, now + BACKUPS_EVERY_MS))
        .await;
    match due {
        Ok(true) => match schedules::prune_backups(&state.store, &state.services).await {
            Ok(n) => out.pruned += n,
            Err(e) => tracing::warn!(error = %e, "pruning old config backups failed"),
        },
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "pruning old config backups failed"),
    }
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
