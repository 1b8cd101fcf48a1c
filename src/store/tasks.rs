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
#[derive(Queryable, QueryableByName)]
#[diesel(table_name = tasks)]
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
        Ok(TaskRow::try_from(
            <TaskRecord as Queryable<ST, DB>>::build(row)?,
        )?)
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
        if let Some(states) = padded_states(states) {
            let q = DeviceTasksIn { device_id, states };
            return with_conn!(self, |c| {
                let rows = q.load::<TaskRecord>(c)?;
                Ok(rows
                    .into_iter()
                    .map(TaskRow::try_from)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?)
            });
        }
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
        if let Some(from) = padded_states(from) {
            let q = TransitionTask { id, from, update };
            return with_conn!(self, |c| { run_transition(c, q) });
        }
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

    /// In one transaction: store the device's tree (when given), move the tasks in
    /// `transitions` (each from `Pending` or `Running`; a task no longer in either is left
    /// alone), then move `start` the same way. The row `start` moved, if it did: `None`
    /// means it was cancelled or finished meanwhile.
    pub fn transition_tasks_with_tree(
        &self,
        device_id: &str,
        tree: Option<super::params::TreeWrite<'_>>,
        now: i64,
        transitions: &[(i64, TaskUpdate)],
        start: Option<(i64, &TaskUpdate)>,
    ) -> Result<Option<TaskRow>> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                if let Some(w) = tree {
                    super::params::write_tree(c, device_id, w, now)?;
                }
                transition_all(c, transitions)?;
                match start {
                    Some((id, u)) => transition_on(c, id, u),
                    None => Ok(None),
                }
            })
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

// ---------------------------------------------------------------------------------------
// The task statements of a session as fixed SQL. Diesel caches no statement with an
// `IN (…)` list or an UPDATE built from optional fields (its SQL depends on the values), so
// these were parsed again at every use: reading a device's tasks and every state transition
// of a session with work. Written out here with a static query id, they stay prepared per
// connection on both backends. `IN` takes three states (a shorter list repeats its first).
// ---------------------------------------------------------------------------------------

/// Columns of [`TaskRecord`], in its order.
const TASK_COLUMNS: &str = "id, device_id, rpc, args, status, command_key, result, fault_code, \
     fault_string, fault_detail, attempts, not_before, expires_at, created_by, created_at, \
     updated_at, started_at, finished_at";

/// `states` as the three of the fixed `IN` list; `None`: empty or longer than three.
fn padded_states(states: &[TaskStatus]) -> Option<[TaskStatus; 3]> {
    match states {
        [a] => Some([*a, *a, *a]),
        [a, b] => Some([*a, *b, *b]),
        [a, b, c] => Some([*a, *b, *c]),
        _ => None,
    }
}

/// A device's tasks in three states, oldest first.
struct DeviceTasksIn<'a> {
    device_id: &'a str,
    states: [TaskStatus; 3],
}

/// [`Store::transition_task`]: each column of the update is written when given (`CASE WHEN
/// given THEN value ELSE column END`), so the SQL is the same for every update.
pub(super) struct TransitionTask<'a> {
    id: i64,
    from: [TaskStatus; 3],
    update: &'a TaskUpdate,
}

struct DeviceTasksInId;
pub(super) struct TransitionTaskId;

impl diesel::query_builder::QueryId for DeviceTasksIn<'_> {
    type QueryId = DeviceTasksInId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::QueryId for TransitionTask<'_> {
    type QueryId = TransitionTaskId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for DeviceTasksIn<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl diesel::query_builder::Query for TransitionTask<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl<Conn> RunQueryDsl<Conn> for DeviceTasksIn<'_> {}
impl<Conn> RunQueryDsl<Conn> for TransitionTask<'_> {}

macro_rules! task_statements {
    ($db:ty) => {
        impl diesel::query_builder::QueryFragment<$db> for DeviceTasksIn<'_> {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, $db>,
            ) -> QueryResult<()> {
                out.push_sql("SELECT ");
                out.push_sql(TASK_COLUMNS);
                out.push_sql(" FROM tasks WHERE device_id = ");
                out.push_bind_param::<Text, _>(self.device_id)?;
                out.push_sql(" AND status IN (");
                out.push_bind_param::<Text, _>(&self.states[0])?;
                out.push_sql(", ");
                out.push_bind_param::<Text, _>(&self.states[1])?;
                out.push_sql(", ");
                out.push_bind_param::<Text, _>(&self.states[2])?;
                out.push_sql(") ORDER BY id");
                Ok(())
            }
        }

        impl diesel::query_builder::QueryFragment<$db> for TransitionTask<'_> {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, $db>,
            ) -> QueryResult<()> {
                use diesel::sql_types::{BigInt, Bool, Integer, Nullable};
                let u = self.update;
                static NO_TEXT: Option<String> = None;
                static NO_TEXT_KEY: String = String::new();
                macro_rules! set {
                    ($sep:literal, $col:literal, $field:expr, $ty:ty, $none:expr) => {
                        out.push_sql(concat!($sep, $col, " = CASE WHEN "));
                        out.push_bind_param::<Bool, _>(if $field.is_some() {
                            &true
                        } else {
                            &false
                        })?;
                        out.push_sql(" THEN ");
                        out.push_bind_param::<$ty, _>($field.as_ref().unwrap_or($none))?;
                        out.push_sql(concat!(" ELSE ", $col, " END"));
                    };
                }
                out.push_sql("UPDATE tasks SET");
                set!(" ", "status", u.status, Text, &TaskStatus::Pending);
                set!(", ", "result", u.result, Nullable<Text>, &NO_TEXT);
                set!(", ", "fault_code", u.fault_code, Nullable<Integer>, &None);
                set!(
                    ", ",
                    "fault_string",
                    u.fault_string,
                    Nullable<Text>,
                    &NO_TEXT
                );
                set!(
                    ", ",
                    "fault_detail",
                    u.fault_detail,
                    Nullable<Text>,
                    &NO_TEXT
                );
                set!(", ", "attempts", u.attempts, Integer, &0);
                set!(", ", "not_before", u.not_before, BigInt, &0);
                set!(", ", "started_at", u.started_at, Nullable<BigInt>, &None);
                set!(", ", "finished_at", u.finished_at, Nullable<BigInt>, &None);
                set!(", ", "command_key", u.command_key, Text, &NO_TEXT_KEY);
                set!(", ", "expires_at", u.expires_at, Nullable<BigInt>, &None);
                set!(", ", "updated_at", u.updated_at, BigInt, &0);
                out.push_sql(" WHERE id = ");
                out.push_bind_param::<BigInt, _>(&self.id)?;
                out.push_sql(" AND status IN (");
                out.push_bind_param::<Text, _>(&self.from[0])?;
                out.push_sql(", ");
                out.push_bind_param::<Text, _>(&self.from[1])?;
                out.push_sql(", ");
                out.push_bind_param::<Text, _>(&self.from[2])?;
                out.push_sql(") RETURNING ");
                out.push_sql(TASK_COLUMNS);
                Ok(())
            }
        }
    };
}

task_statements!(diesel::sqlite::Sqlite);
task_statements!(diesel::pg::Pg);

/// Run a transition on a connection the caller holds: the moved row, `None` when the task
/// was in none of the `from` states.
fn run_transition<C>(c: &mut C, q: TransitionTask<'_>) -> Result<Option<TaskRow>>
where
    C: diesel::connection::LoadConnection,
    for<'b> TransitionTask<'b>: diesel::query_builder::QueryFragment<C::Backend>,
    TaskRecord: QueryableByName<C::Backend>,
    C::Backend: 'static,
{
    let Some(row) = q.get_result::<TaskRecord>(c).optional()? else {
        return Ok(None);
    };
    Ok(Some(TaskRow::try_from(row).map_err(|e| {
        diesel::result::Error::DeserializationError(Box::new(e))
    })?))
}

/// One transition from `Pending` or `Running` on a connection the caller holds, e.g. inside
/// its transaction.
pub(super) fn transition_on<C>(c: &mut C, id: i64, update: &TaskUpdate) -> Result<Option<TaskRow>>
where
    C: diesel::connection::LoadConnection,
    for<'b> TransitionTask<'b>: diesel::query_builder::QueryFragment<C::Backend>,
    TaskRecord: QueryableByName<C::Backend>,
    C::Backend: 'static,
{
    let from = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Running,
    ];
    run_transition(c, TransitionTask { id, from, update })
}

/// [`transition_on`] for every `(id, update)`.
pub(super) fn transition_all<C>(c: &mut C, transitions: &[(i64, TaskUpdate)]) -> Result<()>
where
    C: diesel::connection::LoadConnection,
    for<'b> TransitionTask<'b>: diesel::query_builder::QueryFragment<C::Backend>,
    TaskRecord: QueryableByName<C::Backend>,
    C::Backend: 'static,
{
    for (id, u) in transitions {
        transition_on(c, *id, u)?;
    }
    Ok(())
}
