//! The persistent per-device task queue.
//!
//! Status values: `pending`, `running`, `done`, `fault`, `expired`, `cancelled`.

use diesel::prelude::*;

use super::schema::devices;
use super::schema::tasks::{self, dsl as t};
use super::{Store, WriteTxn};
use crate::error::Result;
use crate::with_conn;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = tasks)]
pub struct TaskRow {
    pub id: i64,
    pub device_id: String,
    pub rpc: String,
    pub args: String,
    pub status: String,
    pub command_key: String,
    pub result: Option<String>,
    pub fault_code: Option<i32>,
    pub fault_string: Option<String>,
    pub fault_detail: Option<String>,
    pub attempts: i32,
    pub not_before: i64,
    pub expires_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = tasks)]
pub struct NewTask {
    pub device_id: String,
    pub rpc: String,
    pub args: String,
    pub status: String,
    pub command_key: String,
    pub expires_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A change of a task's state; `None` fields are left alone.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = tasks)]
pub struct TaskUpdate {
    pub status: Option<String>,
    pub result: Option<Option<String>>,
    pub fault_code: Option<Option<i32>>,
    pub fault_string: Option<Option<String>>,
    pub fault_detail: Option<Option<String>>,
    pub attempts: Option<i32>,
    pub not_before: Option<i64>,
    pub started_at: Option<Option<i64>>,
    pub finished_at: Option<Option<i64>>,
    pub command_key: Option<String>,
    pub expires_at: Option<Option<i64>>,
    pub updated_at: Option<i64>,
}

impl Store {
    /// Queue tasks and mark their devices as having new work, atomically.
    pub fn insert_tasks(&self, new: &[NewTask]) -> Result<Vec<TaskRow>> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let mut out = Vec::with_capacity(new.len());
                for task in new {
                    let row = diesel::insert_into(t::tasks)
                        .values(task)
                        .returning(TaskRow::as_returning())
                        .get_result::<TaskRow>(c)?;
                    diesel::update(devices::table.filter(devices::id.eq(&task.device_id)))
                        .set(devices::work_epoch.eq(devices::work_epoch + 1))
                        .execute(c)?;
                    out.push(row);
                }
                Ok(out)
            })
        })
    }

    pub fn get_task(&self, id: i64) -> Result<Option<TaskRow>> {
        with_conn!(self, |c| {
            Ok(t::tasks
                .filter(t::id.eq(id))
                .select(TaskRow::as_select())
                .first(c)
                .optional()?)
        })
    }

    /// Tasks of a device in the given states, oldest first.
    pub fn device_tasks_in(&self, device_id: &str, states: &[&str]) -> Result<Vec<TaskRow>> {
        with_conn!(self, |c| {
            Ok(t::tasks
                .filter(t::device_id.eq(device_id))
                .filter(t::status.eq_any(states))
                .order(t::id.asc())
                .select(TaskRow::as_select())
                .load(c)?)
        })
    }

    /// Tasks of a device (or all), newest first, before the id `cursor`.
    pub fn list_tasks(
        &self,
        device_id: Option<&str>,
        cursor: Option<i64>,
        limit: i64,
    ) -> Result<Vec<TaskRow>> {
        with_conn!(self, |c| {
            let mut q = t::tasks
                .select(TaskRow::as_select())
                .order(t::id.desc())
                .limit(limit)
                .into_boxed();
            if let Some(d) = device_id {
                q = q.filter(t::device_id.eq(d.to_string()));
            }
            if let Some(cur) = cursor {
                q = q.filter(t::id.lt(cur));
            }
            Ok(q.load(c)?)
        })
    }

    /// Apply `update` if the task is currently in one of `from` states. Returns the new row
    /// when the transition happened.
    pub fn transition_task(
        &self,
        id: i64,
        from: &[&str],
        update: &TaskUpdate,
    ) -> Result<Option<TaskRow>> {
        with_conn!(self, |c| {
            Ok(
                diesel::update(t::tasks.filter(t::id.eq(id)).filter(t::status.eq_any(from)))
                    .set(update)
                    .returning(TaskRow::as_returning())
                    .get_result::<TaskRow>(c)
                    .optional()?,
            )
        })
    }

    /// Tasks newest first, filtered by device and status, before the id `cursor`.
    pub fn find_tasks(
        &self,
        device_id: Option<&str>,
        status: Option<&str>,
        cursor: Option<i64>,
        limit: i64,
    ) -> Result<Vec<TaskRow>> {
        with_conn!(self, |c| {
            let mut q = t::tasks
                .select(TaskRow::as_select())
                .order(t::id.desc())
                .limit(limit)
                .into_boxed();
            if let Some(d) = device_id {
                q = q.filter(t::device_id.eq(d.to_string()));
            }
            if let Some(st) = status {
                q = q.filter(t::status.eq(st.to_string()));
            }
            if let Some(cur) = cursor {
                q = q.filter(t::id.lt(cur));
            }
            Ok(q.load(c)?)
        })
    }

    /// Expire unfinished tasks whose deadline passed; returns their ids.
    pub fn expire_tasks(&self, now: i64) -> Result<Vec<i64>> {
        with_conn!(self, |c| {
            Ok(diesel::update(
                t::tasks
                    .filter(t::status.eq_any(["pending", "running"]))
                    .filter(t::expires_at.lt(now)),
            )
            .set((
                t::status.eq("expired"),
                t::finished_at.eq(Some(now)),
                t::updated_at.eq(now),
            ))
            .returning(t::id)
            .get_results::<i64>(c)?)
        })
    }

    /// Number of tasks in each status (for /metrics).
    pub fn count_tasks_by_status(&self) -> Result<Vec<(String, i64)>> {
        with_conn!(self, |c| {
            Ok(t::tasks
                .group_by(t::status)
                .select((t::status, diesel::dsl::count_star()))
                .load::<(String, i64)>(c)?)
        })
    }
}
