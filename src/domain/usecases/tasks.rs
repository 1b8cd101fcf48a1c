//! Tasks: create one (optionally with a connection request and a wait), create in bulk for
//! every device a query selects, cancel, and read one (optionally waiting for it to finish).

use std::time::Duration;

use super::{Actor, Ctx, Op};
use crate::domain::connreq::{CrResult, Wake};
use crate::domain::taskops::{self, Origin};
use crate::domain::tasks::TaskSpec;
use crate::error::{Error, Result};
use crate::store::search::ConnReqRow;
use crate::store::search::Filter;
use crate::store::tasks::TaskRow;

/// Default lifetime of a task that has not run: a week.
pub const DEFAULT_EXPIRY_SECS: u64 = 7 * 86_400;
/// Longest lifetime a task may be given: a year.
pub const MAX_EXPIRY_SECS: u64 = 365 * 86_400;
/// Longest wait for a task to finish.
pub const MAX_WAIT_SECS: u64 = 300;
/// Most devices one bulk creation addresses.
pub const MAX_BULK: usize = 100_000;

/// How a task is queued.
#[derive(Debug, Clone, Default)]
pub struct TaskOptions {
    /// Ask the device for a session at once.
    pub connection_request: bool,
    /// Wait this long for the task to finish (capped at [`MAX_WAIT_SECS`]).
    pub wait: Option<Duration>,
    /// Give up a task not run within this many seconds (default a week, at most a year).
    pub expires_in: Option<u64>,
}

/// A task queued, with the connection request's outcome when one was asked for.
#[derive(Debug, Clone)]
pub struct QueuedTask {
    pub task: TaskRow,
    pub connection_request: Option<CrResult>,
}

/// Tasks queued in bulk.
#[derive(Debug, Clone)]
pub struct BulkQueued {
    pub task_ids: Vec<i64>,
    /// The tasks themselves, in device id order.
    pub tasks: Vec<TaskRow>,
    /// The query selected more devices than one bulk creation addresses.
    pub truncated: bool,
}

fn expiry(now: i64, expires_in: Option<u64>) -> Option<i64> {
    let secs = expires_in
        .unwrap_or(DEFAULT_EXPIRY_SECS)
        .min(MAX_EXPIRY_SECS);
    Some(now + secs as i64 * 1000)
}

fn capped(wait: Option<Duration>) -> Option<Duration> {
    wait.filter(|w| !w.is_zero())
        .map(|w| w.min(Duration::from_secs(MAX_WAIT_SECS)))
}

/// Validate and queue one task for a device.
pub async fn create(
    ctx: &Ctx<'_>,
    actor: &Actor,
    device_id: &str,
    spec: &TaskSpec,
    opts: &TaskOptions,
) -> Result<QueuedTask> {
    actor.require(Op::TaskCreate)?;
    let now = ctx.now();
    let origin = Origin {
        actor: &actor.name,
        now,
        expires_at: expiry(now, opts.expires_in),
    };
    let row = taskops::create(ctx.store, device_id, spec, &origin).await?;
    let connection_request = if opts.connection_request {
        Some(super::devices::connection_request_for(ctx, actor, device_id, Wake::Tasks).await?)
    } else {
        None
    };
    let task = match capped(opts.wait) {
        Some(w) => taskops::wait(ctx.store, &ctx.services.task_watch, row.id, w).await?,
        None => row,
    };
    Ok(QueuedTask {
        task,
        connection_request,
    })
}

/// Queue the same task for every device the query selects (at most [`MAX_BULK`]); with
/// `connection_request` the devices are asked for a session in the background.
pub async fn create_bulk(
    ctx: &Ctx<'_>,
    actor: &Actor,
    query: &str,
    spec: &TaskSpec,
    opts: &TaskOptions,
) -> Result<BulkQueued> {
    actor.require(Op::TaskCreateBulk)?;
    if query.trim().is_empty() {
        return Err(Error::invalid(
            "q",
            "give a device query; to address every device say so explicitly: id LIKE \"*\"",
        ));
    }
    let filter = crate::domain::devices::parse_query(query)?;
    create_bulk_matching(ctx, actor, &filter, spec, opts).await
}

/// [`create_bulk`] for a filter already built (the console's selection of devices by id, or
/// its parsed query): the same role, limits and audit entry.
pub async fn create_bulk_matching(
    ctx: &Ctx<'_>,
    actor: &Actor,
    filter: &Filter,
    spec: &TaskSpec,
    opts: &TaskOptions,
) -> Result<BulkQueued> {
    actor.require(Op::TaskCreateBulk)?;
    let now = ctx.now();
    let origin = Origin {
        actor: &actor.name,
        now,
        expires_at: expiry(now, opts.expires_in),
    };
    let rows = taskops::create_bulk(ctx.store, filter, spec, &origin, MAX_BULK).await?;
    let task_ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    if opts.connection_request && !rows.is_empty() {
        ctx.hooks()
            .wake(rows.iter().map(|r| r.device_id.clone()).collect());
    }
    Ok(BulkQueued {
        truncated: task_ids.len() >= MAX_BULK,
        task_ids,
        tasks: rows,
    })
}

/// Cancel a pending or running task.
pub async fn cancel(ctx: &Ctx<'_>, actor: &Actor, id: i64) -> Result<TaskRow> {
    actor.require(Op::TaskCancel)?;
    taskops::cancel(
        ctx.store,
        &ctx.services.task_watch,
        id,
        &actor.name,
        ctx.now(),
    )
    .await
}

/// A task with the device's latest connection request, when it was sent after the task was
/// created.
#[derive(Debug, Clone)]
pub struct TaskView {
    pub task: TaskRow,
    pub connection_request: Option<ConnReqRow>,
}

/// One task, after waiting up to `wait` for it to finish.
pub async fn get(ctx: &Ctx<'_>, id: i64, wait: Option<Duration>) -> Result<TaskView> {
    let task = match capped(wait) {
        Some(w) => taskops::wait(ctx.store, &ctx.services.task_watch, id, w).await?,
        None => ctx
            .store
            .run(move |s| s.get_task(id))
            .await?
            .ok_or_else(|| Error::not_found(format!("task {id}")))?,
    };
    let dev = task.device_id.clone();
    let mut crs = ctx.store.run(move |s| s.connreqs_of(&[dev])).await?;
    let connection_request = crs
        .remove(&task.device_id)
        .filter(|r| r.at >= task.created_at);
    Ok(TaskView {
        task,
        connection_request,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_wait_are_bounded() {
        assert_eq!(expiry(1000, None), Some(1000 + 7 * 86_400_000));
        assert_eq!(expiry(0, Some(u64::MAX)), Some(365 * 86_400_000));
        assert_eq!(capped(Some(Duration::ZERO)), None);
        assert_eq!(
            capped(Some(Duration::from_secs(10_000))),
            Some(Duration::from_secs(MAX_WAIT_SECS))
        );
        assert_eq!(capped(None), None);
    }
}
