//! Campaigns, their per-device members and timeline, and the scheduler's leader lease.
//!
//! Member states: `pending`, `in_progress`, `succeeded`, `failed_confirmed`,
//! `failed_unconfirmed`, `skipped`. A member moves from `pending` to `in_progress` only in
//! [`Store::start_members`], in the transaction that queues its task, and only if it still is
//! `pending`: two scheduler nodes, or a node restarted after a crash, can never start a
//! device twice.

use diesel::prelude::*;

use super::schema::campaign_events::{self, dsl as ev};
use super::schema::campaign_members::{self, dsl as m};
use super::schema::campaign_webhooks::{self, dsl as wh};
use super::schema::campaigns::{self, dsl as cp};
use super::schema::devices;
use super::schema::scheduler_lease::dsl as l;
use super::schema::tasks::dsl as t;
use super::tasks::{NewTask, TaskRow};
use super::{Store, WriteTxn};
use crate::error::Result;
use crate::with_conn;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = campaigns)]
pub struct CampaignRow {
    pub id: i64,
    pub name: String,
    pub state: String,
    pub spec: String,
    pub current_wave: i32,
    pub wave_started_at: Option<i64>,
    pub awaiting_approval: i32,
    pub counted_since: i64,
    pub reason: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = campaigns)]
pub struct NewCampaign {
    pub name: String,
    pub state: String,
    pub spec: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A change of a campaign; `None` fields are left alone.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = campaigns)]
pub struct CampaignUpdate {
    pub state: Option<String>,
    pub spec: Option<String>,
    pub current_wave: Option<i32>,
    pub wave_started_at: Option<Option<i64>>,
    pub awaiting_approval: Option<i32>,
    pub counted_since: Option<i64>,
    pub reason: Option<Option<String>>,
    pub updated_at: Option<i64>,
    pub started_at: Option<Option<i64>>,
    pub finished_at: Option<Option<i64>>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = campaign_members)]
pub struct MemberRow {
    pub campaign_id: i64,
    pub device_id: String,
    pub model: String,
    pub wave: i32,
    pub seq: i32,
    pub state: String,
    pub attempts: i32,
    pub task_id: Option<i64>,
    pub from_version: String,
    pub target_version: String,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub last_error: Option<String>,
    /// Images of its upgrade path confirmed so far (intermediate images only).
    pub step: i32,
    /// Images on its upgrade path, the final one included (1 without intermediate images).
    pub steps: i32,
    /// The version the image it runs (or gets next) leads to; empty = `target_version`.
    pub step_version: String,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = campaign_events)]
pub struct EventRow {
    pub id: i64,
    pub campaign_id: i64,
    pub at: i64,
    pub device_id: Option<String>,
    pub kind: String,
    pub detail: String,
}

/// One timeline entry to write.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = campaign_events)]
pub struct NewEvent {
    pub campaign_id: i64,
    pub at: i64,
    pub device_id: Option<String>,
    pub kind: String,
    pub detail: String,
}

/// A finished member: its new state and why.
#[derive(Debug, Clone)]
pub struct MemberFinish {
    pub device_id: String,
    pub state: String,
    pub error: Option<String>,
}

/// Whether a campaign's webhook has a state change after its cursor: a campaign-level entry
/// (no device) that is not the webhook's own record (`webhook_failed`). The same SQL on
/// both backends; it names the outer table of [`Store::webhooks_due`].
const PENDING_STATE_CHANGE: &str = "EXISTS (SELECT 1 FROM campaign_events e \
     WHERE e.campaign_id = campaign_webhooks.campaign_id \
     AND e.id > campaign_webhooks.event_cursor \
     AND e.device_id IS NULL AND e.kind NOT LIKE 'webhook%')";

/// Delivery state of a campaign's webhook.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = campaign_webhooks)]
pub struct WebhookRow {
    pub campaign_id: i64,
    /// Timeline entries up to this id are handled (delivered, skipped or given up).
    pub event_cursor: i64,
    /// Failed tries of the next entry.
    pub attempts: i32,
    pub retry_at: Option<i64>,
    pub delivered: i64,
    pub failures: i64,
    pub last_error: Option<String>,
}

/// Campaign states, as stored.
pub mod campaign_state {
    pub const DRAFT: &str = "draft";
    pub const RUNNING: &str = "running";
    pub const PAUSED: &str = "paused";
    pub const COMPLETED: &str = "completed";
    pub const ABORTED: &str = "aborted";
}

/// Member states, as stored.
pub mod member_state {
    pub const PENDING: &str = "pending";
    pub const IN_PROGRESS: &str = "in_progress";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED_CONFIRMED: &str = "failed_confirmed";
    pub const FAILED_UNCONFIRMED: &str = "failed_unconfirmed";
    pub const SKIPPED: &str = "skipped";
}

use campaign_state as cs;
use member_state as ms;

/// Campaign states in which members may still start or run.
pub const ACTIVE_STATES: [&str; 2] = [cs::RUNNING, cs::PAUSED];
/// Member states that are not final.
pub const OPEN_MEMBER_STATES: [&str; 2] = [ms::PENDING, ms::IN_PROGRESS];

impl Store {
    pub fn insert_campaign(&self, new: &NewCampaign, event: &str) -> Result<CampaignRow> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let row = diesel::insert_into(cp::campaigns)
                    .values(new)
                    .returning(CampaignRow::as_returning())
                    .get_result::<CampaignRow>(c)?;
                diesel::insert_into(ev::campaign_events)
                    .values(&NewEvent {
                        campaign_id: row.id,
                        at: new.created_at,
                        device_id: None,
                        kind: "created".into(),
                        detail: event.to_string(),
                    })
                    .execute(c)?;
                Ok(row)
            })
        })
    }

    /// Give a campaign a webhook delivery state (nothing delivered yet); kept if it has one.
    pub fn add_campaign_webhook(&self, campaign: i64) -> Result<()> {
        with_conn!(self, |c| {
            diesel::insert_into(wh::campaign_webhooks)
                .values((wh::campaign_id.eq(campaign), wh::event_cursor.eq(0i64)))
                .on_conflict_do_nothing()
                .execute(c)?;
            Ok(())
        })
    }

    /// The webhook delivery state of a campaign, if it has a webhook.
    pub fn campaign_webhook(&self, campaign: i64) -> Result<Option<WebhookRow>> {
        with_conn!(self, |c| {
            Ok(wh::campaign_webhooks
                .find(campaign)
                .select(WebhookRow::as_select())
                .first(c)
                .optional()?)
        })
    }

    /// Webhooks that may be tried now (no retry pending after `now`) and have something to
    /// send: a campaign-level timeline entry after their cursor. One statement however many
    /// campaigns have a webhook; a campaign whose entries are all delivered costs nothing
    /// more (the timeline's `(campaign_id, id)` index answers the check).
    pub fn webhooks_due(&self, now: i64) -> Result<Vec<WebhookRow>> {
        with_conn!(self, |c| {
            Ok(wh::campaign_webhooks
                .filter(wh::retry_at.is_null().or(wh::retry_at.le(now)))
                .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
                    PENDING_STATE_CHANGE,
                ))
                .order(wh::campaign_id.asc())
                .select(WebhookRow::as_select())
                .load(c)?)
        })
    }

    /// Record a delivery round: the new state, and a timeline entry for a failure.
    pub fn update_campaign_webhook(
        &self,
        row: &WebhookRow,
        event: Option<&NewEvent>,
    ) -> Result<()> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                diesel::update(wh::campaign_webhooks.find(row.campaign_id))
                    .set((
                        wh::event_cursor.eq(row.event_cursor),
                        wh::attempts.eq(row.attempts),
                        wh::retry_at.eq(row.retry_at),
                        wh::delivered.eq(row.delivered),
                        wh::failures.eq(row.failures),
                        wh::last_error.eq(row.last_error.clone()),
                    ))
                    .execute(c)?;
                if let Some(e) = event {
                    diesel::insert_into(ev::campaign_events)
                        .values(e)
                        .execute(c)?;
                }
                Ok(())
            })
        })
    }

    pub fn get_campaign(&self, id: i64) -> Result<Option<CampaignRow>> {
        with_conn!(self, |c| {
            Ok(cp::campaigns
                .filter(cp::id.eq(id))
                .select(CampaignRow::as_select())
                .first(c)
                .optional()?)
        })
    }

    /// Campaigns newest first, before the id `cursor`.
    pub fn list_campaigns(&self, cursor: Option<i64>, limit: i64) -> Result<Vec<CampaignRow>> {
        with_conn!(self, |c| {
            let mut q = cp::campaigns
                .select(CampaignRow::as_select())
                .order(cp::id.desc())
                .limit(limit)
                .into_boxed();
            if let Some(cur) = cursor {
                q = q.filter(cp::id.lt(cur));
            }
            Ok(q.load(c)?)
        })
    }

    /// Ids of the campaigns in `state`.
    pub fn campaign_ids_in(&self, state: &str) -> Result<Vec<i64>> {
        with_conn!(self, |c| {
            Ok(cp::campaigns
                .filter(cp::state.eq(state))
                .order(cp::id.asc())
                .select(cp::id)
                .load(c)?)
        })
    }

    /// Ids of the campaigns with devices in progress (paused or aborted campaigns still
    /// judge the devices they started).
    pub fn campaign_ids_with_in_progress(&self) -> Result<Vec<i64>> {
        with_conn!(self, |c| {
            Ok(cp::campaigns
                .filter(cp::state.eq_any([cs::PAUSED, cs::ABORTED, cs::COMPLETED]))
                .filter(diesel::dsl::exists(
                    m::campaign_members
                        .filter(m::campaign_id.eq(cp::id))
                        .filter(m::state.eq(ms::IN_PROGRESS)),
                ))
                .select(cp::id)
                .load(c)?)
        })
    }

    /// Apply `update` if the campaign is in one of the `from` states, and record `event` in
    /// the timeline, atomically. Returns the new row when the transition happened.
    pub fn transition_campaign(
        &self,
        id: i64,
        from: &[&str],
        update: &CampaignUpdate,
        event: Option<(&str, &str)>,
        now: i64,
    ) -> Result<Option<CampaignRow>> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let row = diesel::update(
                    cp::campaigns
                        .filter(cp::id.eq(id))
                        .filter(cp::state.eq_any(from)),
                )
                .set(update)
                .returning(CampaignRow::as_returning())
                .get_result::<CampaignRow>(c)
                .optional()?;
                if let (Some(_), Some((kind, detail))) = (&row, event) {
                    diesel::insert_into(ev::campaign_events)
                        .values(&NewEvent {
                            campaign_id: id,
                            at: now,
                            device_id: None,
                            kind: kind.into(),
                            detail: detail.into(),
                        })
                        .execute(c)?;
                }
                Ok(row)
            })
        })
    }

    /// Freeze the members of a draft campaign and set it running, in one transaction.
    /// Returns false (and writes nothing) when the campaign was no longer a draft.
    pub fn start_campaign(
        &self,
        id: i64,
        members: &[MemberRow],
        update: &CampaignUpdate,
        detail: &str,
        now: i64,
    ) -> Result<bool> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let n = diesel::update(
                    cp::campaigns
                        .filter(cp::id.eq(id))
                        .filter(cp::state.eq(cs::DRAFT)),
                )
                .set(update)
                .execute(c)?;
                if n == 0 {
                    return Ok(false);
                }
                for chunk in members.chunks(500) {
                    diesel::insert_into(m::campaign_members)
                        .values(chunk)
                        .execute(c)?;
                }
                diesel::insert_into(ev::campaign_events)
                    .values(&NewEvent {
                        campaign_id: id,
                        at: now,
                        device_id: None,
                        kind: "started".into(),
                        detail: detail.into(),
                    })
                    .execute(c)?;
                Ok(true)
            })
        })
    }

    /// (device id, state, wave, seq) of every member of a campaign.
    pub fn member_index(&self, campaign: i64) -> Result<Vec<(String, String, i32, i32)>> {
        with_conn!(self, |c| {
            Ok(m::campaign_members
                .filter(m::campaign_id.eq(campaign))
                .select((m::device_id, m::state, m::wave, m::seq))
                .load(c)?)
        })
    }

    /// The target of a campaign evaluated again: insert `added` members, skip the pending
    /// members of waves from `from_wave` on listed in `dropped` (device id, why), and record
    /// the timeline entry `reevaluated`; one transaction.
    pub fn rejoin_members(
        &self,
        campaign: i64,
        added: &[MemberRow],
        dropped: &[(String, String)],
        from_wave: i32,
        detail: &str,
        now: i64,
    ) -> Result<()> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                for chunk in added.chunks(500) {
                    diesel::insert_into(m::campaign_members)
                        .values(chunk)
                        .execute(c)?;
                }
                for (device, why) in dropped {
                    diesel::update(
                        m::campaign_members
                            .filter(m::campaign_id.eq(campaign))
                            .filter(m::device_id.eq(device))
                            .filter(m::state.eq(ms::PENDING))
                            .filter(m::wave.ge(from_wave)),
                    )
                    .set((
                        m::state.eq(ms::SKIPPED),
                        m::finished_at.eq(Some(now)),
                        m::last_error.eq(Some(why.clone())),
                    ))
                    .execute(c)?;
                }
                diesel::insert_into(ev::campaign_events)
                    .values(&NewEvent {
                        campaign_id: campaign,
                        at: now,
                        device_id: None,
                        kind: "reevaluated".into(),
                        detail: detail.into(),
                    })
                    .execute(c)?;
                Ok(())
            })
        })
    }

    /// Devices of `ids` that are open members of another active campaign, with that
    /// campaign's id.
    pub fn devices_in_active_campaigns(&self, ids: &[String]) -> Result<Vec<(String, i64)>> {
        let mut out = Vec::new();
        with_conn!(self, |c| {
            for chunk in ids.chunks(500) {
                let rows: Vec<(String, i64)> = m::campaign_members
                    .inner_join(cp::campaigns)
                    .filter(m::device_id.eq_any(chunk))
                    .filter(m::state.eq_any(OPEN_MEMBER_STATES))
                    .filter(cp::state.eq_any(ACTIVE_STATES))
                    .select((m::device_id, m::campaign_id))
                    .load(c)?;
                out.extend(rows);
            }
            Ok(out)
        })
    }

    /// Pending members of waves up to `max_wave`, in start order.
    pub fn pending_members(
        &self,
        campaign: i64,
        max_wave: i32,
        limit: i64,
    ) -> Result<Vec<MemberRow>> {
        with_conn!(self, |c| {
            Ok(m::campaign_members
                .filter(m::campaign_id.eq(campaign))
                .filter(m::state.eq(ms::PENDING))
                .filter(m::wave.le(max_wave))
                .order((m::wave.asc(), m::seq.asc()))
                .limit(limit)
                .select(MemberRow::as_select())
                .load(c)?)
        })
    }

    /// Members in `state`, in start order (at most `limit`).
    pub fn members_in(&self, campaign: i64, state: &str, limit: i64) -> Result<Vec<MemberRow>> {
        with_conn!(self, |c| {
            Ok(m::campaign_members
                .filter(m::campaign_id.eq(campaign))
                .filter(m::state.eq(state))
                .order((m::wave.asc(), m::seq.asc()))
                .limit(limit)
                .select(MemberRow::as_select())
                .load(c)?)
        })
    }

    /// Members of a campaign, in start order, after `cursor` (a seq), optionally one state.
    pub fn list_members(
        &self,
        campaign: i64,
        state: Option<&str>,
        cursor: Option<i32>,
        limit: i64,
    ) -> Result<Vec<MemberRow>> {
        with_conn!(self, |c| {
            let mut q = m::campaign_members
                .filter(m::campaign_id.eq(campaign))
                .order(m::seq.asc())
                .limit(limit)
                .select(MemberRow::as_select())
                .into_boxed();
            if let Some(s) = state {
                q = q.filter(m::state.eq(s.to_string()));
            }
            if let Some(cur) = cursor {
                q = q.filter(m::seq.gt(cur));
            }
            Ok(q.load(c)?)
        })
    }

    pub fn get_member(&self, campaign: i64, device_id: &str) -> Result<Option<MemberRow>> {
        with_conn!(self, |c| {
            Ok(m::campaign_members
                .filter(m::campaign_id.eq(campaign))
                .filter(m::device_id.eq(device_id))
                .select(MemberRow::as_select())
                .first(c)
                .optional()?)
        })
    }

    /// Start devices: for each (device, task) whose member still is `pending`, mark it
    /// `in_progress` and queue its task in the same transaction. Returns the started
    /// (device id, task id) pairs; members that were no longer pending are left alone and
    /// get no task.
    pub fn start_members(
        &self,
        campaign: i64,
        batch: &[NewTask],
        now: i64,
    ) -> Result<Vec<(String, i64)>> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let mut out = Vec::with_capacity(batch.len());
                for task in batch {
                    let n = diesel::update(
                        m::campaign_members
                            .filter(m::campaign_id.eq(campaign))
                            .filter(m::device_id.eq(&task.device_id))
                            .filter(m::state.eq(ms::PENDING)),
                    )
                    .set((
                        m::state.eq(ms::IN_PROGRESS),
                        m::started_at.eq(Some(now)),
                        m::finished_at.eq(None::<i64>),
                        m::attempts.eq(m::attempts + 1),
                    ))
                    .execute(c)?;
                    if n == 0 {
                        continue;
                    }
                    let row = diesel::insert_into(t::tasks)
                        .values(task)
                        .returning(TaskRow::as_returning())
                        .get_result::<TaskRow>(c)?;
                    diesel::update(
                        m::campaign_members
                            .filter(m::campaign_id.eq(campaign))
                            .filter(m::device_id.eq(&task.device_id)),
                    )
                    .set(m::task_id.eq(Some(row.id)))
                    .execute(c)?;
                    diesel::update(devices::table.filter(devices::id.eq(&task.device_id)))
                        .set(devices::work_epoch.eq(devices::work_epoch + 1))
                        .execute(c)?;
                    out.push((task.device_id.clone(), row.id));
                }
                Ok(out)
            })
        })
    }

    /// Record the final state of started members (only those still `in_progress`) and their
    /// timeline entries, in one transaction. Returns how many changed.
    /// Pending members of waves up to `max_wave` whose retry time (if any) has come, in
    /// start order.
    pub fn startable_members(
        &self,
        campaign: i64,
        max_wave: i32,
        now: i64,
        limit: i64,
    ) -> Result<Vec<MemberRow>> {
        with_conn!(self, |c| {
            Ok(m::campaign_members
                .filter(m::campaign_id.eq(campaign))
                .filter(m::state.eq(ms::PENDING))
                .filter(m::wave.le(max_wave))
                .filter(m::retry_at.is_null().or(m::retry_at.le(now)))
                .order((m::wave.asc(), m::seq.asc()))
                .limit(limit)
                .select(MemberRow::as_select())
                .load(c)?)
        })
    }

    /// Put started members back in the queue, each to start again no earlier than its
    /// time: `(device, retry_at, why)`. Returns how many moved.
    pub fn retry_members(
        &self,
        campaign: i64,
        retries: &[(String, i64, String)],
        now: i64,
    ) -> Result<usize> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let mut changed = 0;
                for (device, at, why) in retries {
                    let n = diesel::update(
                        m::campaign_members
                            .filter(m::campaign_id.eq(campaign))
                            .filter(m::device_id.eq(device))
                            .filter(m::state.eq(ms::IN_PROGRESS)),
                    )
                    .set((
                        m::state.eq(ms::PENDING),
                        m::retry_at.eq(Some(*at)),
                        m::last_error.eq(Some(why)),
                    ))
                    .execute(c)?;
                    if n == 0 {
                        continue;
                    }
                    changed += 1;
                    diesel::insert_into(ev::campaign_events)
                        .values(&NewEvent {
                            campaign_id: campaign,
                            at: now,
                            device_id: Some(device.clone()),
                            kind: "retry".into(),
                            detail: format!("{why}; tried again from {at}"),
                        })
                        .execute(c)?;
                }
                Ok(changed)
            })
        })
    }

    pub fn finish_members(&self, campaign: i64, done: &[MemberFinish], now: i64) -> Result<usize> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let mut changed = 0;
                for f in done {
                    let n = diesel::update(
                        m::campaign_members
                            .filter(m::campaign_id.eq(campaign))
                            .filter(m::device_id.eq(&f.device_id))
                            .filter(m::state.eq(ms::IN_PROGRESS)),
                    )
                    .set((
                        m::state.eq(&f.state),
                        m::finished_at.eq(Some(now)),
                        m::last_error.eq(f.error.as_deref()),
                    ))
                    .execute(c)?;
                    if n == 0 {
                        continue;
                    }
                    changed += 1;
                    diesel::insert_into(ev::campaign_events)
                        .values(&NewEvent {
                            campaign_id: campaign,
                            at: now,
                            device_id: Some(f.device_id.clone()),
                            kind: f.state.clone(),
                            detail: f.error.clone().unwrap_or_default(),
                        })
                        .execute(c)?;
                }
                Ok(changed)
            })
        })
    }

    /// Members whose intermediate image is confirmed go back to `pending` (only those still
    /// `in_progress`) to get the next image of their upgrade path at once, with their
    /// attempts counted afresh, each with a `step` timeline entry: `(device, version the
    /// next image leads to, why)`. Returns how many moved.
    pub fn step_members(
        &self,
        campaign: i64,
        steps: &[(String, String, String)],
        now: i64,
    ) -> Result<usize> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let mut changed = 0;
                for (device, next, why) in steps {
                    let n = diesel::update(
                        m::campaign_members
                            .filter(m::campaign_id.eq(campaign))
                            .filter(m::device_id.eq(device))
                            .filter(m::state.eq(ms::IN_PROGRESS)),
                    )
                    .set((
                        m::state.eq(ms::PENDING),
                        m::step.eq(m::step + 1),
                        m::step_version.eq(next),
                        m::attempts.eq(0),
                        m::retry_at.eq(None::<i64>),
                        m::last_error.eq(None::<String>),
                    ))
                    .execute(c)?;
                    if n == 0 {
                        continue;
                    }
                    changed += 1;
                    diesel::insert_into(ev::campaign_events)
                        .values(&NewEvent {
                            campaign_id: campaign,
                            at: now,
                            device_id: Some(device.clone()),
                            kind: "step".into(),
                            detail: why.clone(),
                        })
                        .execute(c)?;
                }
                Ok(changed)
            })
        })
    }

    /// The phones among `device_ids`: (device id, vendor, model, firmware last reported).
    #[allow(clippy::type_complexity)]
    pub fn phones_of_devices(
        &self,
        device_ids: &[String],
    ) -> Result<Vec<(String, String, String, Option<String>)>> {
        use super::phones::phones::dsl as ph;
        with_conn!(self, |c| {
            let mut out = Vec::with_capacity(device_ids.len());
            for chunk in device_ids.chunks(500) {
                out.extend(
                    ph::phones
                        .filter(ph::device_id.eq_any(chunk))
                        .select((ph::device_id, ph::vendor, ph::model, ph::firmware))
                        .load::<(String, String, String, Option<String>)>(c)?,
                );
            }
            Ok(out)
        })
    }

    /// The own settings (JSON) of the phones of `device_ids`: (device id, settings).
    pub fn phone_settings_of(&self, device_ids: &[String]) -> Result<Vec<(String, String)>> {
        use super::phones::phones::dsl as ph;
        with_conn!(self, |c| {
            Ok(ph::phones
                .filter(ph::device_id.eq_any(device_ids))
                .select((ph::device_id, ph::settings))
                .load::<(String, String)>(c)?)
        })
    }

    /// Start phones of a phone firmware campaign: for each `(device id, settings before,
    /// settings after)` whose member still is `pending`, mark it `in_progress` and write the
    /// phone's new settings (its revision bumped, so its next fetch gets files naming the
    /// firmware) in one transaction — only if its settings did not change meanwhile, else
    /// the member stays pending for the next tick. Returns the started device ids.
    fn start_phone_members_unbumped(
        &self,
        campaign: i64,
        batch: &[(String, String, String)],
        now: i64,
    ) -> Result<Vec<String>> {
        use super::phones::phones::dsl as ph;
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let mut out = Vec::with_capacity(batch.len());
                for (device, before, after) in batch {
                    let pending = m::campaign_members
                        .filter(m::campaign_id.eq(campaign))
                        .filter(m::device_id.eq(device))
                        .filter(m::state.eq(ms::PENDING))
                        .count()
                        .get_result::<i64>(c)?;
                    if pending == 0 {
                        continue;
                    }
                    // Two leaders for a moment: the second finds the settings changed.
                    let changed = diesel::update(
                        ph::phones
                            .filter(ph::device_id.eq(device))
                            .filter(ph::settings.eq(before)),
                    )
                    .set((
                        ph::settings.eq(after),
                        ph::revision.eq(ph::revision + 1),
                        ph::updated_at.eq(now),
                    ))
                    .execute(c)?;
                    if changed == 0 {
                        continue;
                    }
                    diesel::update(
                        m::campaign_members
                            .filter(m::campaign_id.eq(campaign))
                            .filter(m::device_id.eq(device))
                            .filter(m::state.eq(ms::PENDING)),
                    )
                    .set((
                        m::state.eq(ms::IN_PROGRESS),
                        m::started_at.eq(Some(now)),
                        m::finished_at.eq(None::<i64>),
                        m::attempts.eq(m::attempts + 1),
                    ))
                    .execute(c)?;
                    out.push(device.clone());
                }
                Ok(out)
            })
        })
    }

    /// What each phone fetched since its start: `(device id, since)` → (device id, served
    /// fetches since, first and last of their times, the firmware the last one reporting
    /// one reported). Reads the phone's fetch log (its newest entries only).
    #[allow(clippy::type_complexity)]
    pub fn phone_fetches_since(
        &self,
        members: &[(String, i64)],
    ) -> Result<Vec<(String, Option<i64>, Option<i64>, Option<String>)>> {
        use super::phones::phone_fetches::dsl as pf;
        with_conn!(self, |c| {
            let mut out = Vec::with_capacity(members.len());
            for (device, since) in members {
                let Some(mac) = device.strip_prefix("phone:") else {
                    continue;
                };
                let rows = pf::phone_fetches
                    .filter(pf::mac.eq(mac))
                    .filter(pf::status.eq(200))
                    .filter(pf::at.ge(since))
                    .order(pf::id.asc())
                    .select((pf::at, pf::firmware))
                    .load::<(i64, Option<String>)>(c)?;
                let first = rows.iter().map(|r| r.0).min();
                let last = rows.iter().map(|r| r.0).max();
                let fw = rows.iter().rev().find_map(|r| r.1.clone());
                out.push((device.clone(), first, last, fw));
            }
            Ok(out)
        })
    }

    /// Put failed members back to `pending` (retry failed), returning how many.
    pub fn reset_failed_members(&self, campaign: i64) -> Result<usize> {
        with_conn!(self, |c| {
            Ok(diesel::update(
                m::campaign_members
                    .filter(m::campaign_id.eq(campaign))
                    .filter(m::state.eq_any([ms::FAILED_CONFIRMED, ms::FAILED_UNCONFIRMED])),
            )
            .set((
                m::state.eq(ms::PENDING),
                m::finished_at.eq(None::<i64>),
                m::task_id.eq(None::<i64>),
                m::retry_at.eq(None::<i64>),
            ))
            .execute(c)?)
        })
    }

    /// (wave, state, count) of every member.
    pub fn member_counts_by_wave(&self, campaign: i64) -> Result<Vec<(i32, String, i64)>> {
        with_conn!(self, |c| {
            Ok(m::campaign_members
                .filter(m::campaign_id.eq(campaign))
                .group_by((m::wave, m::state))
                .select((m::wave, m::state, diesel::dsl::count_star()))
                .load(c)?)
        })
    }

    /// (model, state, count) of every member.
    pub fn member_counts_by_model(&self, campaign: i64) -> Result<Vec<(String, String, i64)>> {
        with_conn!(self, |c| {
            Ok(m::campaign_members
                .filter(m::campaign_id.eq(campaign))
                .group_by((m::model, m::state))
                .select((m::model, m::state, diesel::dsl::count_star()))
                .load(c)?)
        })
    }

    /// (campaign id, campaign name, campaign state, member state, count) for campaigns that
    /// are running or paused (for /metrics), in two queries.
    #[allow(clippy::type_complexity)]
    pub fn active_campaign_counts(&self) -> Result<Vec<(i64, String, String, String, i64)>> {
        with_conn!(self, |c| {
            let active: Vec<(i64, String, String)> = cp::campaigns
                .filter(cp::state.eq_any(ACTIVE_STATES))
                .select((cp::id, cp::name, cp::state))
                .load(c)?;
            if active.is_empty() {
                return Ok(Vec::new());
            }
            let ids: Vec<i64> = active.iter().map(|a| a.0).collect();
            let counts: Vec<(i64, String, i64)> = m::campaign_members
                .filter(m::campaign_id.eq_any(&ids))
                .group_by((m::campaign_id, m::state))
                .select((m::campaign_id, m::state, diesel::dsl::count_star()))
                .load(c)?;
            let by_id: std::collections::HashMap<i64, (String, String)> = active
                .into_iter()
                .map(|(id, name, state)| (id, (name, state)))
                .collect();
            Ok(counts
                .into_iter()
                .filter_map(|(id, ms, n)| {
                    by_id
                        .get(&id)
                        .map(|(name, cs)| (id, name.clone(), cs.clone(), ms, n))
                })
                .collect())
        })
    }

    /// Member counts per state of the given campaigns (a page of the console's list):
    /// (campaign id, member state, count), from the `campaign_members_state` index.
    pub fn member_counts_of(&self, ids: &[i64]) -> Result<Vec<(i64, String, i64)>> {
        with_conn!(self, |c| {
            Ok(m::campaign_members
                .filter(m::campaign_id.eq_any(ids))
                .group_by((m::campaign_id, m::state))
                .select((m::campaign_id, m::state, diesel::dsl::count_star()))
                .load(c)?)
        })
    }

    /// When the last member of `wave` finished.
    pub fn wave_last_finished(&self, campaign: i64, wave: i32) -> Result<Option<i64>> {
        with_conn!(self, |c| {
            Ok(m::campaign_members
                .filter(m::campaign_id.eq(campaign))
                .filter(m::wave.eq(wave))
                .select(diesel::dsl::max(m::finished_at))
                .first::<Option<i64>>(c)?)
        })
    }

    /// Members started at or after `since`.
    pub fn members_started_since(&self, campaign: i64, since: i64) -> Result<i64> {
        with_conn!(self, |c| {
            Ok(m::campaign_members
                .filter(m::campaign_id.eq(campaign))
                .filter(m::started_at.ge(since))
                .count()
                .get_result(c)?)
        })
    }

    /// States of the members finished at or after `since` (not skipped), newest first.
    pub fn recent_outcomes(&self, campaign: i64, since: i64, limit: i64) -> Result<Vec<String>> {
        with_conn!(self, |c| {
            Ok(m::campaign_members
                .filter(m::campaign_id.eq(campaign))
                .filter(m::finished_at.ge(since))
                .filter(m::state.ne(ms::SKIPPED))
                .order(m::finished_at.desc())
                .limit(limit)
                .select(m::state)
                .load(c)?)
        })
    }

    /// (state, count) of members finished at or after `since`.
    pub fn outcome_totals(&self, campaign: i64, since: i64) -> Result<Vec<(String, i64)>> {
        with_conn!(self, |c| {
            Ok(m::campaign_members
                .filter(m::campaign_id.eq(campaign))
                .filter(m::finished_at.ge(since))
                .group_by(m::state)
                .select((m::state, diesel::dsl::count_star()))
                .load(c)?)
        })
    }

    /// Tasks by id.
    pub fn tasks_by_ids(&self, ids: &[i64]) -> Result<Vec<TaskRow>> {
        let mut out = Vec::with_capacity(ids.len());
        with_conn!(self, |c| {
            for chunk in ids.chunks(500) {
                let rows: Vec<TaskRow> = t::tasks
                    .filter(t::id.eq_any(chunk))
                    .select(TaskRow::as_select())
                    .load(c)?;
                out.extend(rows);
            }
            Ok(out)
        })
    }

    /// (id, software_version, last_inform, last_boot) of devices by id.
    #[allow(clippy::type_complexity)]
    pub fn device_versions(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, String, Option<i64>, Option<i64>)>> {
        let mut out = Vec::with_capacity(ids.len());
        with_conn!(self, |c| {
            for chunk in ids.chunks(500) {
                let rows: Vec<(String, String, Option<i64>, Option<i64>)> = devices::table
                    .filter(devices::id.eq_any(chunk))
                    .select((
                        devices::id,
                        devices::software_version,
                        devices::last_inform,
                        devices::last_boot,
                    ))
                    .load(c)?;
                out.extend(rows);
            }
            Ok(out)
        })
    }

    /// Devices by id (those that exist), ordered by id.
    pub fn devices_by_ids(&self, ids: &[String]) -> Result<Vec<super::devices::DeviceRow>> {
        use super::devices::DeviceRow;
        let mut out = Vec::with_capacity(ids.len());
        with_conn!(self, |c| {
            for chunk in ids.chunks(500) {
                let rows: Vec<DeviceRow> = devices::table
                    .filter(devices::id.eq_any(chunk))
                    .select(DeviceRow::as_select())
                    .load(c)?;
                out.extend(rows);
            }
            Ok(out)
        })
    }

    pub fn add_campaign_event(&self, e: &NewEvent) -> Result<()> {
        with_conn!(self, |c| {
            diesel::insert_into(ev::campaign_events)
                .values(e)
                .execute(c)?;
            Ok(())
        })
    }

    /// Timeline entries, oldest first, after the id `cursor`; optionally of one device.
    pub fn campaign_events(
        &self,
        campaign: i64,
        device_id: Option<&str>,
        cursor: Option<i64>,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        with_conn!(self, |c| {
            let mut q = ev::campaign_events
                .filter(ev::campaign_id.eq(campaign))
                .order(ev::id.asc())
                .limit(limit)
                .select(EventRow::as_select())
                .into_boxed();
            if let Some(d) = device_id {
                q = q.filter(ev::device_id.eq(d.to_string()));
            }
            if let Some(cur) = cursor {
                q = q.filter(ev::id.gt(cur));
            }
            Ok(q.load(c)?)
        })
    }

    /// A webhook's work: the campaign-level timeline entries after `cursor` (no device
    /// entries, not the webhook's own `webhook_failed` records), oldest first. Device entries
    /// in between are stepped over by the query, so a long campaign's thousands of them
    /// never delay a state change.
    pub fn campaign_state_changes(
        &self,
        campaign: i64,
        cursor: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        with_conn!(self, |c| {
            Ok(ev::campaign_events
                .filter(ev::campaign_id.eq(campaign))
                .filter(ev::device_id.is_null())
                .filter(ev::kind.not_like("webhook%"))
                .filter(ev::id.gt(cursor))
                .order(ev::id.asc())
                .limit(limit)
                .select(EventRow::as_select())
                .load(c)?)
        })
    }

    /// Take or renew the lease `name` for `owner` until `until`. Succeeds when the lease is
    /// free, expired (`expires_at < now`) or already ours; returns whether `owner` holds it.
    /// One conditional `UPDATE` decides, so of several nodes racing exactly one wins.
    pub fn acquire_lease(&self, name: &str, owner: &str, now: i64, until: i64) -> Result<bool> {
        with_conn!(self, |c| {
            diesel::insert_into(l::scheduler_lease)
                .values((
                    l::name.eq(name),
                    l::owner.eq(owner),
                    l::expires_at.eq(until),
                    l::acquired_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(c)?;
            let renewed = diesel::update(
                l::scheduler_lease
                    .filter(l::name.eq(name))
                    .filter(l::owner.eq(owner)),
            )
            .set(l::expires_at.eq(until))
            .execute(c)?;
            if renewed == 1 {
                return Ok(true);
            }
            let taken = diesel::update(
                l::scheduler_lease
                    .filter(l::name.eq(name))
                    .filter(l::expires_at.lt(now)),
            )
            .set((
                l::owner.eq(owner),
                l::expires_at.eq(until),
                l::acquired_at.eq(now),
            ))
            .execute(c)?;
            Ok(taken == 1)
        })
    }

    /// Give the lease up (a node stopping cleanly), so another takes over at once.
    pub fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
        with_conn!(self, |c| {
            diesel::update(
                l::scheduler_lease
                    .filter(l::name.eq(name))
                    .filter(l::owner.eq(owner)),
            )
            .set(l::expires_at.eq(0i64))
            .execute(c)?;
            Ok(())
        })
    }

    /// (owner, expires_at) of the lease `name`.
    pub fn lease_holder(&self, name: &str) -> Result<Option<(String, i64)>> {
        with_conn!(self, |c| {
            Ok(l::scheduler_lease
                .filter(l::name.eq(name))
                .select((l::owner, l::expires_at))
                .first(c)
                .optional()?)
        })
    }
}

impl Store {
    /// `start_phone_members_unbumped`, then the phone generation is bumped
    /// ([`Store::phone_generation`]): what phones are served may have changed.
    pub fn start_phone_members(
        &self,
        campaign: i64,
        batch: &[(String, String, String)],
        now: i64,
    ) -> Result<Vec<String>> {
        self.bumped(self.start_phone_members_unbumped(campaign, batch, now))
    }
}
