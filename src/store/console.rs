//! Web console sessions (shared by every node through the database) and the bounded
//! aggregate queries of the console's overview.

use diesel::prelude::*;

use super::schema::{
    console_sessions, device_version_counts, devices, fault_minutes, faults, session_log,
    session_minutes, tasks, users,
};
use super::users::UserRow;
use super::Store;
use crate::error::Result;
use crate::with_conn;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = console_sessions)]
pub struct ConsoleSessionRow {
    pub id: i64,
    pub token_hash: String,
    pub user_id: i64,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub source_ip: String,
}

/// Device counts for the overview. Counts that walk an index stop at [`COUNT_CAP`] + 1:
/// a value above [`COUNT_CAP`] means "more than that".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounts {
    /// Exact, from the maintained `device_version_counts`.
    pub total: i64,
    /// Last Inform within the periodic interval: `total - overdue - never_informed`, exact
    /// unless `overdue` reached the cap.
    pub seen: i64,
    /// Informed before, but not within the periodic interval (capped).
    pub overdue: i64,
    /// Known but never informed, e.g. provisioned through the API (capped).
    pub never_informed: i64,
    /// Known but never completed discovery (parameter tree not read yet; capped).
    pub never_discovered: i64,
}

impl DeviceCounts {
    /// Whether `seen` is exact (no count it derives from reached the cap).
    pub fn seen_exact(&self) -> bool {
        self.overdue <= COUNT_CAP && self.never_informed <= COUNT_CAP
    }
}

/// Most groups one overview chart shows.
pub const CHART_GROUPS: i64 = 40;

/// The most rows a count of the overview walks; above it the page says "more than".
pub const COUNT_CAP: i64 = 10_000;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// `SELECT COUNT(*)` over at most `COUNT_CAP + 1` rows of `from_where` (a trusted
/// statement fragment: table, condition, only integers formatted in).
fn capped_count_sql(from_where: &str) -> String {
    format!(
        "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM (SELECT 1 AS one FROM {from_where} LIMIT {}) AS capped",
        COUNT_CAP + 1
    )
}

impl Store {
    pub fn insert_console_session(
        &self,
        token_hash: &str,
        user_id: i64,
        now: i64,
        source_ip: &str,
    ) -> Result<()> {
        use console_sessions::dsl as s;
        with_conn!(self, |c| {
            diesel::insert_into(s::console_sessions)
                .values((
                    s::token_hash.eq(token_hash),
                    s::user_id.eq(user_id),
                    s::created_at.eq(now),
                    s::last_seen_at.eq(now),
                    s::source_ip.eq(source_ip),
                ))
                .execute(c)?;
            Ok(())
        })
    }

    /// The session with this token hash and its user.
    pub fn console_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<(ConsoleSessionRow, UserRow)>> {
        use console_sessions::dsl as s;
        with_conn!(self, |c| {
            Ok(s::console_sessions
                .inner_join(users::table)
                .filter(s::token_hash.eq(token_hash))
                .select((ConsoleSessionRow::as_select(), UserRow::as_select()))
                .first(c)
                .optional()?)
        })
    }

    pub fn touch_console_session(&self, id: i64, now: i64) -> Result<()> {
        use console_sessions::dsl as s;
        with_conn!(self, |c| {
            diesel::update(s::console_sessions.filter(s::id.eq(id)))
                .set(s::last_seen_at.eq(now))
                .execute(c)?;
            Ok(())
        })
    }

    pub fn delete_console_session(&self, token_hash: &str) -> Result<bool> {
        use console_sessions::dsl as s;
        with_conn!(self, |c| {
            Ok(
                diesel::delete(s::console_sessions.filter(s::token_hash.eq(token_hash)))
                    .execute(c)?
                    > 0,
            )
        })
    }

    /// End every session of a user except `keep` (after a password change).
    pub fn delete_user_console_sessions(&self, user_id: i64, keep: Option<i64>) -> Result<usize> {
        use console_sessions::dsl as s;
        with_conn!(self, |c| {
            let q = s::console_sessions.filter(s::user_id.eq(user_id));
            Ok(match keep {
                Some(k) => diesel::delete(q.filter(s::id.ne(k))).execute(c)?,
                None => diesel::delete(q).execute(c)?,
            })
        })
    }

    /// Remove sessions idle since before `idle_before` or created before `created_before`.
    pub fn prune_console_sessions(&self, idle_before: i64, created_before: i64) -> Result<usize> {
        use console_sessions::dsl as s;
        with_conn!(self, |c| {
            Ok(diesel::delete(
                s::console_sessions.filter(
                    s::last_seen_at
                        .lt(idle_before)
                        .or(s::created_at.lt(created_before)),
                ),
            )
            .execute(c)?)
        })
    }

    pub fn set_user_password_by_id(&self, user_id: i64, password_hash: &str) -> Result<bool> {
        use users::dsl as u;
        with_conn!(self, |c| {
            Ok(diesel::update(u::users.filter(u::id.eq(user_id)))
                .set(u::password_hash.eq(password_hash))
                .execute(c)?
                == 1)
        })
    }

    /// Whether any operator account exists (`serve` says how to create one otherwise).
    pub fn has_users(&self) -> Result<bool> {
        use users::dsl as u;
        with_conn!(self, |c| {
            Ok(u::users.select(u::id).first::<i64>(c).optional()?.is_some())
        })
    }

    /// Device counts: the total from the maintained per-version counters, the others from
    /// capped index walks (`device_last_inform_sort` and the partial indexes
    /// `device_last_inform_never`, `devices_undiscovered`).
    pub fn device_counts(&self, seen_since: i64) -> Result<DeviceCounts> {
        let total_sql =
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM device_version_counts";
        // `seen_since` is an integer: formatting it into the statement is safe.
        let overdue_sql = capped_count_sql(&format!(
            "device_last_inform WHERE COALESCE(last_inform, -1) < {seen_since} \
             AND last_inform IS NOT NULL"
        ));
        let never_sql = capped_count_sql("device_last_inform WHERE last_inform IS NULL");
        let undiscovered_sql = capped_count_sql("devices WHERE discovered_at IS NULL");
        let _ = (devices::table, device_version_counts::table);
        with_conn!(self, |c| {
            let one = |c: &mut _, sql: &str| -> Result<i64> {
                Ok(diesel::sql_query(sql).get_result::<Count>(c)?.n)
            };
            let total = one(c, total_sql)?;
            let overdue = one(c, &overdue_sql)?;
            let never_informed = one(c, &never_sql)?;
            let never_discovered = one(c, &undiscovered_sql)?;
            Ok(DeviceCounts {
                total,
                seen: (total - overdue - never_informed).max(0),
                overdue,
                never_informed,
                never_discovered,
            })
        })
    }

    /// Devices per (product class, software version), largest groups first, at most
    /// [`CHART_GROUPS`], from the maintained `device_version_counts`.
    pub fn versions_by_product_class(&self) -> Result<Vec<(String, String, i64)>> {
        use device_version_counts::dsl as v;
        with_conn!(self, |c| {
            Ok(v::device_version_counts
                .filter(v::n.gt(0))
                .order((
                    v::n.desc(),
                    v::product_class.asc(),
                    v::software_version.asc(),
                ))
                .limit(CHART_GROUPS)
                .select((v::product_class, v::software_version, v::n))
                .load(c)?)
        })
    }

    /// Sessions started per minute since `since` (from the minute holding it): (minute since
    /// the epoch, count), from the maintained `session_minutes`.
    pub fn sessions_per_minute(&self, since: i64) -> Result<Vec<(i64, i64)>> {
        use session_minutes::dsl as s;
        let _ = session_log::table;
        with_conn!(self, |c| {
            Ok(s::session_minutes
                .filter(s::minute.ge(since.div_euclid(60_000)))
                .order(s::minute.asc())
                .select((s::minute, s::n))
                .load(c)?)
        })
    }

    /// Faults since `since` (from the minute holding it) by code, most frequent first (at
    /// most [`CHART_GROUPS`] codes), from the maintained `fault_minutes`.
    pub fn faults_by_code(&self, since: i64) -> Result<Vec<(i32, i64)>> {
        use fault_minutes::dsl as f;
        let _ = faults::table;
        with_conn!(self, |c| {
            let rows: Vec<(i32, i64)> = f::fault_minutes
                .filter(f::minute.ge(since.div_euclid(60_000)))
                .filter(f::n.gt(0))
                .select((f::code, f::n))
                .load(c)?;
            let mut by_code: std::collections::BTreeMap<i32, i64> = Default::default();
            for (code, n) in rows {
                *by_code.entry(code).or_default() += n;
            }
            let mut rows: Vec<(i32, i64)> = by_code.into_iter().filter(|r| r.1 > 0).collect();
            rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            rows.truncate(CHART_GROUPS as usize);
            Ok(rows)
        })
    }

    /// Forget the per-minute counters of sessions and faults older than `before` (ms).
    pub fn prune_overview_counters(&self, before: i64) -> Result<usize> {
        let m = before.div_euclid(60_000);
        with_conn!(self, |c| {
            let a = diesel::delete(session_minutes::table.filter(session_minutes::minute.lt(m)))
                .execute(c)?;
            let b = diesel::delete(fault_minutes::table.filter(fault_minutes::minute.lt(m)))
                .execute(c)?;
            Ok(a + b)
        })
    }

    /// Pending and running tasks (capped walks of the index `tasks_status`).
    pub fn open_task_counts(&self) -> Result<(i64, i64)> {
        let _ = tasks::table;
        let pending = capped_count_sql("tasks WHERE status = 'pending'");
        let running = capped_count_sql("tasks WHERE status = 'running'");
        with_conn!(self, |c| {
            let p = diesel::sql_query(pending.as_str())
                .get_result::<Count>(c)?
                .n;
            let r = diesel::sql_query(running.as_str())
                .get_result::<Count>(c)?
                .n;
            Ok((p, r))
        })
    }

    /// Statuses of the given tasks (for the progress of a bulk action).
    pub fn task_statuses(&self, ids: &[i64]) -> Result<Vec<super::tasks::TaskRow>> {
        use tasks::dsl as t;
        with_conn!(self, |c| {
            Ok(t::tasks
                .filter(t::id.eq_any(ids))
                .select(super::tasks::TaskRow::as_select())
                .order(t::id.asc())
                .load(c)?)
        })
    }
}
