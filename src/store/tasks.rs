//! The persistent per-device task queue.
//!
//! The `status` column is text (`pending`, `running`, `done`, `fault`, `expired`,
//! `cancelled`) and is read and written as [`TaskStatus`]: a value this version does not
//! know is an error naming the task, never a panic.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::prelude::*;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};

use super::schema::devices;
use super::schema::tasks::{self, dsl as t};
use super::{Store, WriteTxn};
use crate::error::Result;
use crate::with_conn;

/// Where a task is in its life. Stored and shown as the lower-case name (`"pending"`, ...);
/// `domain::tasks` re-exports it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression, FromSqlRow,
)]
#[serde(rename_all = "lowercase")]
#[diesel(sql_type = Text)]
pub enum TaskStatus {
    Pending,
    Running,
    Done,
    Fault,
    Expired,
    Cancelled,
}

impl TaskStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Done,
        TaskStatus::Fault,
        TaskStatus::Expired,
        TaskStatus::Cancelled,
    ];

    /// Not final yet: the task may still be sent, or is waiting for its outcome.
    pub const OPEN: [TaskStatus; 2] = [TaskStatus::Pending, TaskStatus::Running];

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Done => "done",
            TaskStatus::Fault => "fault",
            TaskStatus::Expired => "expired",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Read a stored name (exact, lower case).
    pub fn parse(s: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether the task will not change any more.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Done | TaskStatus::Fault | TaskStatus::Expired | TaskStatus::Cancelled
        )
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored status this version does not know (a newer version wrote it, or a hand edit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStatus {
    /// The task, when the whole row was read.
    pub task: Option<i64>,
    pub value: String,
}

impl std::fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known = TaskStatus::ALL.map(TaskStatus::as_str).join(", ");
        match self.task {
            Some(id) => write!(f, "task {id} has status {:?} in the database", self.value)?,
            None => write!(f, "a task has status {:?} in the database", self.value)?,
        }
        write!(
            f,
            ", which this version of ferroacs does not know (known: {known}); \
             run the version that wrote it, or set the row's status to one of these"
        )
    }
}

impl std::error::Error for UnknownStatus {}

impl<DB> ToSql<Text, DB> for TaskStatus
where
    DB: Backend,
    str: ToSql<Text, DB>,
{
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
        <str as ToSql<Text, DB>>::to_sql(self.as_str(), out)
    }
}

impl<DB> FromSql<Text, DB> for TaskStatus
where
    DB: Backend,
    String: FromSql<Text, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        let value = <String as FromSql<Text, DB>>::from_sql(bytes)?;
        TaskStatus::parse(&value).ok_or_else(|| UnknownStatus { task: None, value }.into())
    }
}

/// A task as stored. Read through [`TaskRecord`], so that an unknown status names the task.
#[derive(Debug, Clone, PartialEq, Selectable)]
#[diesel(table_name = tasks)]
pub struct TaskRow {
    pub id: i64,
    pub device_id: String,
    pub rpc: String,
    pub args: String,
    pub status: TaskStatus,
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

/// The columns of a task row as read, the status still as text.
#[derive(Queryable)]
pub struct TaskRecord {
    id: i64,
    device_id: String,
    rpc: String,
    args: String,
    status: String,
    command_key: String,
    result: Option<String>,
    fault_code: Option<i32>,
    fault_string: Option<String>,
    fault_detail: Option<String>,
    attempts: i32,
    not_before: i64,
    expires_at: Option<i64>,
    created_by: String,
    created_at: i64,
    updated_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
}

impl TryFrom<TaskRecord> for TaskRow {
    type Error = UnknownStatus;

    fn try_from(r: TaskRecord) -> std::result::Result<Self, UnknownStatus> {
        let Some(status) = TaskStatus::parse(&r.status) else {
            return Err(UnknownStatus {
                task: Some(r.id),
                value: r.status,
            });
        };
        Ok(TaskRow {
            id: r.id,
            device_id: r.device_id,
            rpc: r.rpc,
            args: r.args,
            status,
            command_key: r.command_key,
            result: r.result,
            fault_code: r.fault_code,
            fault_string: r.fault_string,
            fault_detail: r.fault_detail,
            attempts: r.attempts,
            not_before: r.not_before,
            expires_at: r.expires_at,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        })
    }
}

impl<ST, DB> Queryable<ST, DB> for TaskRow
where
    DB: Backend,
    TaskRecord: Queryable<ST, DB>,
{
    type Row = <TaskRecord as Queryable<ST, DB>>::Row;

    fn build(row: Self::Row) -> deserialize::Result<Self> {
        Ok(TaskRow::try_from(TaskRecord::build(row)?)?)
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = tasks)]
pub struct NewTask {
    pub device_id: String,
    pub rpc: String,
    pub args: String,
    pub status: TaskStatus,
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
    pub status: Option<TaskStatus>,
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
    pub fn device_tasks_in(&self, device_id: &str, states: &[TaskStatus]) -> Result<Vec<TaskRow>> {
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
        from: &[TaskStatus],
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
        status: Option<TaskStatus>,
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
                q = q.filter(t::status.eq(st));
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
                    .filter(t::status.eq_any(TaskStatus::OPEN))
                    .filter(t::expires_at.lt(now)),
            )
            .set((
                t::status.eq(TaskStatus::Expired),
                t::finished_at.eq(Some(now)),
                t::updated_at.eq(now),
            ))
            .returning(t::id)
            .get_results::<i64>(c)?)
        })
    }

    /// Number of tasks in each known status (for /metrics: a status this version does not
    /// know is left out rather than failing the scrape, whose success means "database up").
    pub fn count_tasks_by_status(&self) -> Result<Vec<(TaskStatus, i64)>> {
        let rows = with_conn!(self, |c| {
            Ok::<_, crate::error::Error>(
                t::tasks
                    .group_by(t::status)
                    .select((t::status, diesel::dsl::count_star()))
                    .load::<(String, i64)>(c)?,
            )
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| Some((TaskStatus::parse(&s)?, n)))
            .collect())
    }
}
