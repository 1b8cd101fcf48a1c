//! Scheduled jobs: a task or a config backup queued for every device a query matches, at
//! each fire time of a cron expression in an IANA time zone ("reboot tag = kiosk every
//! Sunday 03:00 Europe/Berlin"; "back up every device's configuration nightly, keep 7").
//!
//! - [`ScheduleSpec`] is what an operator writes; [`validate`] names the field at fault.
//! - The operator actions ([`create`], [`update`], [`delete`]) are audited as
//!   `schedule.<action>` on target `schedule/<id>`; the API and the CLI call them alike.
//! - [`fire_due`] is the scheduler leader's side, called on every tick with the injected
//!   clock: each due schedule is claimed by moving its `next_fire_at` forward in one
//!   conditional `UPDATE` (so no fire happens twice), then its tasks are queued like a bulk
//!   task (`task.create_bulk`, actor `schedule/<id>`). Fire times missed while no node led
//!   are coalesced into one fire, and skipped altogether once later than
//!   `max_delay_secs` (a 03:00 reboot does not happen at noon).
//! - The secrets of a job's task (as [`crate::domain::tasks::for_each_secret`] finds them)
//!   are sealed in the stored spec (`schedules.spec`) and shown as `***`; [`spec_of`] opens
//!   them when the job fires, and the tasks it queues seal them again. Given back as `***`
//!   ([`update`]), they keep the stored values.
//! - A job's tasks expire at its next fire time (or after `expires_in_secs`), so a device
//!   that stays offline never piles up tasks of the same job.
//! - Config backups are the files devices upload (`files` rows with the device id and the
//!   Upload's file type). [`prune_backups`] keeps the newest `keep` per device and type;
//!   [`backups`], [`diff`] and [`restore`] (a Download of a stored backup) serve operators.

use serde::{Deserialize, Serialize};

use crate::domain::campaigns::Wake;
use crate::domain::cron::{self, CronSchedule};
use crate::domain::services::Services;
use crate::domain::taskops::{self, Origin};
use crate::domain::tasks::{keep_stored_secrets, open_json, seal_json, TaskSpec};
use crate::error::{Error, Result};
use crate::secrets::{purpose, Keyring};
use crate::store::files::FileRow;
pub use crate::store::schedules::ScheduleRow;
use crate::store::schedules::{NewSchedule, ScheduleChange};
use crate::store::tasks::TaskRow;
use crate::store::Store;

/// The file type of a configuration backup (TR-069 Upload FileType 1).
pub const CONFIG_FILE: &str = "1 Vendor Configuration File";
/// The file type a restore downloads a backup as (TR-069 Download FileType 3).
pub const RESTORE_FILE: &str = "3 Vendor Configuration File";

/// At most this many devices per fire.
pub const MAX_DEVICES: usize = 1_000_000;
/// The largest backup [`diff`] compares.
pub const MAX_DIFF_BYTES: u64 = 1 << 20;

/// What a scheduled job does to each device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum JobAction {
    /// Any task (Reboot, SetParameterValues, Download, ...).
    Task { task: TaskSpec },
    /// An Upload of the device's configuration file; the newest `keep` per device are kept.
    Backup {
        #[serde(default = "config_file")]
        file_type: String,
        keep: u32,
    },
}

fn config_file() -> String {
    CONFIG_FILE.into()
}

fn utc() -> String {
    "UTC".into()
}

fn yes() -> bool {
    true
}

fn default_max_delay() -> u64 {
    3600
}

/// What an operator writes to create a scheduled job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub name: String,
    /// The devices (the language of `GET /api/v1/devices?q=`), evaluated at each fire.
    pub query: String,
    /// 6 fields, seconds first: "0 0 3 * * Sun".
    pub cron: String,
    #[serde(default = "utc")]
    pub time_zone: String,
    pub action: JobAction,
    #[serde(default)]
    pub wake: Wake,
    /// How long the queued tasks wait for their device; default: until the next fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
    /// A fire later than this (the scheduler was down) is skipped.
    #[serde(default = "default_max_delay")]
    pub max_delay_secs: u64,
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl ScheduleSpec {
    pub fn parse(json: &str) -> Result<ScheduleSpec> {
        serde_json::from_str(json).map_err(|e| Error::invalid("body", e.to_string()))
    }

    /// The task each device gets.
    pub fn task(&self) -> TaskSpec {
        match &self.action {
            JobAction::Task { task } => task.clone(),
            JobAction::Backup { file_type, .. } => TaskSpec::Upload {
                file_type: file_type.clone(),
                url: None,
                username: None,
                password: None,
                delay_seconds: 0,
            },
        }
    }
}

/// Check a spec; every error names the field. Returns the compiled cron schedule.
pub async fn validate(store: &Store, spec: &ScheduleSpec) -> Result<CronSchedule> {
    if spec.name.trim().is_empty() || spec.name.len() > 200 {
        return Err(Error::invalid("name", "give a name of 1 to 200 characters"));
    }
    if spec.query.trim().is_empty() {
        return Err(Error::invalid(
            "query",
            "is empty; to address every device say so: id LIKE \"*\"",
        ));
    }
    crate::domain::devices::parse_query(&spec.query)
        .map_err(|e| Error::invalid("query", e.to_string()))?;
    let schedule =
        cron::parse(&spec.cron, &spec.time_zone).map_err(|(f, m)| Error::invalid(f, m))?;
    if spec.expires_in_secs == Some(0) {
        return Err(Error::invalid("expires_in_secs", "must be at least 1"));
    }
    match &spec.action {
        JobAction::Task { task } => taskops::check_template(store, task).await?,
        JobAction::Backup { file_type, keep } => {
            if *keep == 0 || *keep > 1000 {
                return Err(Error::invalid(
                    "action.keep",
                    "keep between 1 and 1000 backups per device",
                ));
            }
            if file_type.is_empty() || file_type.len() > 64 {
                return Err(Error::invalid(
                    "action.file_type",
                    "give an Upload file type, e.g. \"1 Vendor Configuration File\"",
                ));
            }
        }
    }
    Ok(schedule)
}

/// The stored spec of a schedule, its secrets opened (the tasks it queues carry them).
pub fn spec_of(k: &Keyring, row: &ScheduleRow) -> Result<ScheduleSpec> {
    let clear = open_json(k, purpose::SCHEDULE_SPEC, &row.spec).map_err(|e| {
        Error::internal(format!(
            "schedule {} has a spec that does not open: {e}",
            row.id
        ))
    })?;
    serde_json::from_str(&clear)
        .map_err(|e| Error::internal(format!("schedule {} has an unreadable spec: {e}", row.id)))
}

/// The stored spec of a schedule with its secrets still sealed: for what needs no secret
/// (descriptions, backup settings).
fn sealed_spec_of(row: &ScheduleRow) -> Result<ScheduleSpec> {
    serde_json::from_str(&row.spec)
        .map_err(|e| Error::internal(format!("schedule {} has an unreadable spec: {e}", row.id)))
}

/// A spec as stored: every secret of its task sealed.
fn sealed(k: &Keyring, spec: &ScheduleSpec) -> Result<String> {
    seal_json(k, purpose::SCHEDULE_SPEC, &serde_json::to_string(spec)?)
}

/// A spec given back as shown: every secret given as `***` takes the stored value
/// (`stored`: none when the job is new, so a mask is refused).
fn keep_masked(
    k: &Keyring,
    spec: &ScheduleSpec,
    stored: Option<&ScheduleRow>,
) -> Result<ScheduleSpec> {
    let mut given = serde_json::to_value(spec)?;
    let old = match stored {
        Some(row) => Some(serde_json::from_str::<serde_json::Value>(&open_json(
            k,
            purpose::SCHEDULE_SPEC,
            &row.spec,
        )?)?),
        None => None,
    };
    keep_stored_secrets(&mut given, old.as_ref())?;
    serde_json::from_value(given).map_err(|e| Error::invalid("body", e.to_string()))
}

fn name_taken(e: Error, name: &str) -> Error {
    match e {
        Error::Conflict(_) => Error::Conflict(format!("a schedule named {name:?} exists")),
        other => other,
    }
}

/// Create a scheduled job; it first fires at the cron's next time after `now`.
pub async fn create(
    store: &Store,
    actor: &str,
    now: i64,
    spec: &ScheduleSpec,
) -> Result<ScheduleRow> {
    let k = store.keyring();
    let spec = &keep_masked(&k, spec, None)?;
    let cron = validate(store, spec).await?;
    let new = NewSchedule {
        name: spec.name.trim().to_string(),
        spec: sealed(&k, spec)?,
        enabled: spec.enabled as i32,
        next_fire_at: if spec.enabled {
            cron.next_after(now)
        } else {
            None
        },
        created_by: actor.to_string(),
        created_at: now,
        updated_at: now,
    };
    let (a, name) = (actor.to_string(), new.name.clone());
    store
        .run(move |s| {
            let row = s.insert_schedule(&new)?;
            s.audit(
                now,
                &a,
                "schedule.create",
                &format!("schedule/{}", row.id),
                Some(&describe(&row)),
            )?;
            Ok(row)
        })
        .await
        .map_err(|e| name_taken(e, &name))
}

/// Replace a job's specification (also to enable or disable it); the next fire is
/// computed again from `now`.
pub async fn update(
    store: &Store,
    actor: &str,
    now: i64,
    id: i64,
    spec: &ScheduleSpec,
) -> Result<ScheduleRow> {
    let k = store.keyring();
    let stored = store
        .run(move |s| s.get_schedule(id))
        .await?
        .ok_or_else(|| Error::not_found(format!("schedule {id}")))?;
    let spec = &keep_masked(&k, spec, Some(&stored))?;
    let cron = validate(store, spec).await?;
    let change = ScheduleChange {
        name: spec.name.trim().to_string(),
        spec: sealed(&k, spec)?,
        enabled: spec.enabled as i32,
        next_fire_at: if spec.enabled {
            cron.next_after(now)
        } else {
            None
        },
        updated_at: now,
    };
    let (a, name) = (actor.to_string(), change.name.clone());
    let row = store
        .run(move |s| {
            let row = s.update_schedule(id, &change)?;
            if let Some(r) = &row {
                s.audit(
                    now,
                    &a,
                    "schedule.update",
                    &format!("schedule/{id}"),
                    Some(&describe(r)),
                )?;
            }
            Ok(row)
        })
        .await
        .map_err(|e| name_taken(e, &name))?;
    row.ok_or_else(|| Error::not_found(format!("schedule {id}")))
}

pub async fn delete(store: &Store, actor: &str, now: i64, id: i64) -> Result<()> {
    let a = actor.to_string();
    let gone = store
        .run(move |s| {
            let gone = s.delete_schedule(id)?;
            if gone {
                s.audit(now, &a, "schedule.delete", &format!("schedule/{id}"), None)?;
            }
            Ok(gone)
        })
        .await?;
    if gone {
        Ok(())
    } else {
        Err(Error::not_found(format!("schedule {id}")))
    }
}

pub async fn get(store: &Store, id: i64) -> Result<ScheduleRow> {
    store
        .run(move |s| s.get_schedule(id))
        .await?
        .ok_or_else(|| Error::not_found(format!("schedule {id}")))
}

pub async fn list(store: &Store, cursor: Option<i64>, limit: i64) -> Result<Vec<ScheduleRow>> {
    store.run(move |s| s.list_schedules(cursor, limit)).await
}

/// One line for the audit log: name, when, what, whom (task arguments redacted).
fn describe(row: &ScheduleRow) -> String {
    match sealed_spec_of(row) {
        Ok(s) => {
            let what = match &s.action {
                JobAction::Task { task } => task.rpc().to_string(),
                JobAction::Backup { keep, .. } => format!("backup (keep {keep})"),
            };
            format!(
                "{:?}: {what} for {:?} at {:?} {}{}",
                s.name,
                s.query,
                s.cron,
                s.time_zone,
                if s.enabled { "" } else { " (disabled)" }
            )
        }
        Err(_) => row.name.clone(),
    }
}

/// What one fire did.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub schedule: i64,
    /// The fire time (the cron time, not when the tick ran).
    pub due: i64,
    /// Tasks queued; `None` when the fire was skipped (too late).
    pub queued: Option<usize>,
}

/// Fire every due schedule (scheduler leader, on each tick).
pub async fn fire_due(store: &Store, services: &Services, now: i64) -> Result<Vec<Fired>> {
    let due = store.run(move |s| s.due_schedules(now, 100)).await?;
    let mut out = Vec::new();
    for row in due {
        match fire(store, services, now, &row).await {
            Ok(Some(f)) => out.push(f),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(schedule = row.id, error = %e, "a scheduled job failed");
                let (id, msg) = (row.id, format!("failed: {e}"));
                store.run(move |s| s.set_schedule_result(id, &msg)).await?;
            }
        }
    }
    Ok(out)
}

async fn fire(
    store: &Store,
    services: &Services,
    now: i64,
    row: &ScheduleRow,
) -> Result<Option<Fired>> {
    let Some(due) = row.next_fire_at else {
        return Ok(None);
    };
    let spec = spec_of(&store.keyring(), row)?;
    let cron = cron::parse(&spec.cron, &spec.time_zone)
        .map_err(|(f, m)| Error::internal(format!("schedule {}: {f}: {m}", row.id)))?;
    // Missed fire times (no leader) are coalesced: the next one is after now.
    let next = cron.next_after(now);
    let id = row.id;
    if !store.run(move |s| s.claim_fire(id, due, next, now)).await? {
        return Ok(None);
    }
    let late = now - due;
    if late > (spec.max_delay_secs as i64).saturating_mul(1000) {
        let msg = format!(
            "skipped the fire of {due}: {} s late (max_delay_secs {})",
            late / 1000,
            spec.max_delay_secs
        );
        tracing::warn!(schedule = id, "{msg}");
        let m = msg.clone();
        store
            .run(move |s| {
                s.set_schedule_result(id, &m)?;
                s.audit(
                    now,
                    crate::domain::campaigns::run::ACTOR,
                    "schedule.skip",
                    &format!("schedule/{id}"),
                    Some(&m),
                )
            })
            .await?;
        return Ok(Some(Fired {
            schedule: id,
            due,
            queued: None,
        }));
    }
    let filter = crate::domain::devices::parse_query(&spec.query)
        .map_err(|e| Error::internal(format!("schedule {id}: query: {e}")))?;
    let expires_at = match spec.expires_in_secs {
        Some(s) => Some(now.saturating_add((s as i64).saturating_mul(1000))),
        None => next,
    };
    let actor = format!("schedule/{id}");
    let origin = Origin {
        actor: &actor,
        now,
        expires_at,
    };
    let rows = taskops::create_bulk(store, &filter, &spec.task(), &origin, MAX_DEVICES).await?;
    let n = rows.len();
    let msg = format!("queued {n} tasks at {now} (fire time {due})");
    store.run(move |s| s.set_schedule_result(id, &msg)).await?;
    if spec.wake == Wake::ConnectionRequest {
        wake(store, services, now, &rows).await;
    }
    Ok(Some(Fired {
        schedule: id,
        due,
        queued: Some(n),
    }))
}

async fn wake(store: &Store, services: &Services, now: i64, rows: &[TaskRow]) {
    use futures_util::StreamExt;
    let devices: Vec<String> = rows.iter().map(|r| r.device_id.clone()).collect();
    futures_util::stream::iter(devices)
        .for_each_concurrent(32, |d| async move {
            if let Err(e) = services.connreq.request(store, &d, now).await {
                tracing::debug!(device = %d, error = %e, "connection request failed");
            }
        })
        .await;
}

/// Keep the newest `keep` backups per device for every backup schedule (the largest `keep`
/// when several schedules back up the same file type). Returns how many were deleted.
pub async fn prune_backups(store: &Store, services: &Services) -> Result<usize> {
    let mut keeps: std::collections::BTreeMap<String, u32> = Default::default();
    let mut cursor = None;
    loop {
        let page = store.run(move |s| s.list_schedules(cursor, 500)).await?;
        let Some(last) = page.last() else { break };
        cursor = Some(last.id);
        for row in &page {
            if let Ok(ScheduleSpec {
                action: JobAction::Backup { file_type, keep },
                ..
            }) = sealed_spec_of(row)
            {
                let k = keeps.entry(file_type).or_default();
                *k = (*k).max(keep);
            }
        }
        if page.len() < 500 {
            break;
        }
    }
    let mut deleted = 0;
    for (file_type, keep) in keeps {
        loop {
            let ft = file_type.clone();
            let devices = store
                .run(move |s| s.devices_over_backups(&ft, keep as i64, 500))
                .await?;
            for d in &devices {
                let (dev, ft) = (d.clone(), vec![file_type.clone()]);
                let old: Vec<FileRow> = store
                    .run(move |s| s.device_files_of_type(&dev, &ft, 100_000))
                    .await?
                    .into_iter()
                    .skip(keep as usize)
                    .collect();
                for f in old {
                    let id = f.id.clone();
                    if store.run(move |s| s.delete_file(&id)).await? {
                        services.files.remove(&f.id).await?;
                        deleted += 1;
                    }
                }
            }
            if devices.len() < 500 {
                break;
            }
        }
    }
    Ok(deleted)
}

/// The file types that count as configuration backups.
fn backup_types() -> Vec<String> {
    vec![CONFIG_FILE.into(), RESTORE_FILE.into()]
}

/// A device's configuration backups, newest first.
pub async fn backups(store: &Store, device_id: &str, limit: i64) -> Result<Vec<FileRow>> {
    let d = device_id.to_string();
    if store.run(move |s| s.get_device(&d)).await?.is_none() {
        return Err(Error::not_found(format!("device {device_id}")));
    }
    let d = device_id.to_string();
    store
        .run(move |s| s.device_files_of_type(&d, &backup_types(), limit))
        .await
}

async fn backup_of(store: &Store, device_id: &str, file_id: &str, field: &str) -> Result<FileRow> {
    let f = file_id.to_string();
    let row = store.run(move |s| s.get_file(&f)).await?;
    match row {
        Some(r) if r.device_id.as_deref() == Some(device_id) => Ok(r),
        _ => Err(Error::invalid(
            field,
            format!("device {device_id} has no backup {file_id}; list them with GET /api/v1/devices/{device_id}/backups"),
        )),
    }
}

async fn read_text(services: &Services, f: &FileRow, field: &str) -> Result<String> {
    if f.size as u64 > MAX_DIFF_BYTES {
        return Err(Error::invalid(
            field,
            format!(
                "backup {} has {} bytes; diffs compare files up to {MAX_DIFF_BYTES} bytes",
                f.id, f.size
            ),
        ));
    }
    let path = services.files.path_of(&f.id)?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| Error::internal(format!("reading backup {}: {e}", f.id)))?;
    String::from_utf8(bytes).map_err(|_| {
        Error::invalid(
            field,
            format!(
                "backup {} is not a text configuration (not UTF-8); download it instead",
                f.id
            ),
        )
    })
}

/// A unified diff (3 lines of context) from backup `from` to backup `to` of one device.
pub async fn diff(
    store: &Store,
    services: &Services,
    device_id: &str,
    from: &str,
    to: &str,
) -> Result<String> {
    let a = backup_of(store, device_id, from, "from").await?;
    let b = backup_of(store, device_id, to, "to").await?;
    let (ta, tb) = (
        read_text(services, &a, "from").await?,
        read_text(services, &b, "to").await?,
    );
    Ok(crate::domain::textdiff::unified(
        &format!("{} ({})", a.id, a.created_at),
        &format!("{} ({})", b.id, b.created_at),
        &ta,
        &tb,
        3,
    ))
}

/// Restore = a Download of a stored backup to the device it came from.
pub async fn restore(
    store: &Store,
    actor: &str,
    now: i64,
    device_id: &str,
    file_id: &str,
    expires_at: Option<i64>,
) -> Result<TaskRow> {
    backup_of(store, device_id, file_id, "file_id").await?;
    let spec = TaskSpec::Download {
        file_id: Some(file_id.to_string()),
        url: None,
        file_type: RESTORE_FILE.into(),
        username: None,
        password: None,
        file_size: None,
        target_file_name: None,
        delay_seconds: 0,
    };
    let origin = Origin {
        actor,
        now,
        expires_at,
    };
    let task = taskops::create(store, device_id, &spec, &origin).await?;
    let (a, d, f, t) = (
        actor.to_string(),
        device_id.to_string(),
        file_id.to_string(),
        task.id,
    );
    store
        .run(move |s| {
            s.audit(
                now,
                &a,
                "backup.restore",
                &format!("device/{d}"),
                Some(&format!("backup {f} as task {t}")),
            )
        })
        .await?;
    Ok(task)
}
