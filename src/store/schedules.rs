//! Scheduled jobs, the housekeeping slots of the scheduler leader, and the config backups
//! devices uploaded (rows of `files` with a device id).
//!
//! A fire is claimed with one conditional `UPDATE` that moves `next_fire_at` from the due
//! time to the next one: two leaders for a moment, or a leader restarted mid-fire, never
//! fire a schedule twice for the same time.

use diesel::prelude::*;

use super::files::FileRow;
use super::schema::files::dsl as f;
use super::schema::scheduler_lease::dsl as l;
use super::schema::schedules::{self, dsl as s};
use super::Store;
use crate::error::Result;
use crate::with_conn;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = schedules)]
pub struct ScheduleRow {
    pub id: i64,
    pub name: String,
    pub spec: String,
    pub enabled: i32,
    pub next_fire_at: Option<i64>,
    pub last_fire_at: Option<i64>,
    pub last_result: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = schedules)]
pub struct NewSchedule {
    pub name: String,
    pub spec: String,
    pub enabled: i32,
    pub next_fire_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A replacement of a schedule's specification.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = schedules, treat_none_as_null = true)]
pub struct ScheduleChange {
    pub name: String,
    pub spec: String,
    pub enabled: i32,
    pub next_fire_at: Option<i64>,
    pub updated_at: i64,
}

impl Store {
    pub fn insert_schedule(&self, new: &NewSchedule) -> Result<ScheduleRow> {
        with_conn!(self, |c| {
            Ok(diesel::insert_into(s::schedules)
                .values(new)
                .returning(ScheduleRow::as_returning())
                .get_result(c)?)
        })
    }

    pub fn get_schedule(&self, id: i64) -> Result<Option<ScheduleRow>> {
        with_conn!(self, |c| {
            Ok(s::schedules
                .filter(s::id.eq(id))
                .select(ScheduleRow::as_select())
                .first(c)
                .optional()?)
        })
    }

    /// Schedules by id after `cursor`.
    pub fn list_schedules(&self, cursor: Option<i64>, limit: i64) -> Result<Vec<ScheduleRow>> {
        with_conn!(self, |c| {
            let mut q = s::schedules
                .select(ScheduleRow::as_select())
                .order(s::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(cur) = cursor {
                q = q.filter(s::id.gt(cur));
            }
            Ok(q.load(c)?)
        })
    }

    pub fn update_schedule(&self, id: i64, change: &ScheduleChange) -> Result<Option<ScheduleRow>> {
        with_conn!(self, |c| {
            Ok(diesel::update(s::schedules.filter(s::id.eq(id)))
                .set(change)
                .returning(ScheduleRow::as_returning())
                .get_result(c)
                .optional()?)
        })
    }

    pub fn delete_schedule(&self, id: i64) -> Result<bool> {
        with_conn!(self, |c| {
            Ok(diesel::delete(s::schedules.filter(s::id.eq(id))).execute(c)? == 1)
        })
    }

    /// Enabled schedules whose fire time has come, earliest first.
    pub fn due_schedules(&self, now: i64, limit: i64) -> Result<Vec<ScheduleRow>> {
        with_conn!(self, |c| {
            Ok(s::schedules
                .filter(s::enabled.eq(1))
                .filter(s::next_fire_at.le(now))
                .select(ScheduleRow::as_select())
                .order(s::next_fire_at.asc())
                .limit(limit)
                .load(c)?)
        })
    }

    /// Claim the fire of schedule `id` due at `due`: move `next_fire_at` to `next` only if it
    /// still is `due`. False when another leader (or an edit) got there first.
    pub fn claim_fire(&self, id: i64, due: i64, next: Option<i64>, now: i64) -> Result<bool> {
        with_conn!(self, |c| {
            Ok(diesel::update(
                s::schedules
                    .filter(s::id.eq(id))
                    .filter(s::next_fire_at.eq(due)),
            )
            .set((
                s::next_fire_at.eq(next),
                s::last_fire_at.eq(Some(now)),
                s::updated_at.eq(now),
            ))
            .execute(c)?
                == 1)
        })
    }

    pub fn set_schedule_result(&self, id: i64, result: &str) -> Result<()> {
        with_conn!(self, |c| {
            diesel::update(s::schedules.filter(s::id.eq(id)))
                .set(s::last_result.eq(Some(result.to_string())))
                .execute(c)?;
            Ok(())
        })
    }

    /// A housekeeping slot named `name` (a row of `scheduler_lease` whose `expires_at` is
    /// the next due time): true, and the slot moved to `next`, if it was due at `now`.
    /// Whichever node claims it runs the job; nobody else does until `next`.
    pub fn claim_slot(&self, name: &str, owner: &str, now: i64, next: i64) -> Result<bool> {
        with_conn!(self, |c| {
            diesel::insert_into(l::scheduler_lease)
                .values((
                    l::name.eq(name),
                    l::owner.eq(owner),
                    l::expires_at.eq(0i64),
                    l::acquired_at.eq(0i64),
                ))
                .on_conflict_do_nothing()
                .execute(c)?;
            Ok(diesel::update(
                l::scheduler_lease
                    .filter(l::name.eq(name))
                    .filter(l::expires_at.le(now)),
            )
            .set((
                l::owner.eq(owner),
                l::expires_at.eq(next),
                l::acquired_at.eq(now),
            ))
            .execute(c)?
                == 1)
        })
    }

    /// Files of `file_type` a device uploaded, newest first.
    pub fn device_files_of_type(
        &self,
        device_id: &str,
        file_types: &[String],
        limit: i64,
    ) -> Result<Vec<FileRow>> {
        with_conn!(self, |c| {
            Ok(f::files
                .filter(f::device_id.eq(device_id))
                .filter(f::file_type.eq_any(file_types))
                .select(FileRow::as_select())
                .order((f::created_at.desc(), f::id.desc()))
                .limit(limit)
                .load(c)?)
        })
    }

    /// Devices holding more than `keep` uploaded files of `file_type` (at most `limit`).
    pub fn devices_over_backups(
        &self,
        file_type: &str,
        keep: i64,
        limit: i64,
    ) -> Result<Vec<String>> {
        use diesel::dsl::count_star;
        with_conn!(self, |c| {
            let rows: Vec<(Option<String>, i64)> = f::files
                .filter(f::device_id.is_not_null())
                .filter(f::file_type.eq(file_type))
                .group_by(f::device_id)
                .select((f::device_id, count_star()))
                .having(count_star().gt(keep))
                .limit(limit)
                .load(c)?;
            Ok(rows.into_iter().filter_map(|(d, _)| d).collect())
        })
    }
}
