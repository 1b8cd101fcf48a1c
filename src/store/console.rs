//! Web console sessions (shared by every node through the database) and the bounded
//! aggregate queries of the console's overview.

use diesel::prelude::*;

use super::schema::{console_sessions, devices, faults, session_log, tasks, users};
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

/// Device counts for the overview.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounts {
    pub total: i64,
    /// Last Inform within the periodic interval.
    pub seen: i64,
    /// Informed before, but not within the periodic interval.
    pub overdue: i64,
    /// Known but never completed discovery (parameter tree not read yet).
    pub never_discovered: i64,
}

/// Most groups one overview chart shows.
pub const CHART_GROUPS: i64 = 40;

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

    /// Device counts: each an index range count (`devices_last_inform`) or a primary-key count.
    pub fn device_counts(&self, seen_since: i64) -> Result<DeviceCounts> {
        use devices::dsl as d;
        with_conn!(self, |c| {
            let total: i64 = d::devices.count().get_result(c)?;
            let seen: i64 = d::devices
                .filter(d::last_inform.ge(seen_since))
                .count()
                .get_result(c)?;
            let overdue: i64 = d::devices
                .filter(d::last_inform.lt(seen_since))
                .count()
                .get_result(c)?;
            let never_discovered: i64 = d::devices
                .filter(d::discovered_at.is_null())
                .count()
                .get_result(c)?;
            Ok(DeviceCounts {
                total,
                seen,
                overdue,
                never_discovered,
            })
        })
    }

    /// Devices per (product class, software version), largest groups first, at most
    /// [`CHART_GROUPS`].
    pub fn versions_by_product_class(&self) -> Result<Vec<(String, String, i64)>> {
        use devices::dsl as d;
        with_conn!(self, |c| {
            let mut rows: Vec<(String, String, i64)> = d::devices
                .group_by((d::product_class, d::software_version))
                .select((
                    d::product_class,
                    d::software_version,
                    diesel::dsl::count_star(),
                ))
                .load(c)?;
            rows.sort_by(|a, b| {
                b.2.cmp(&a.2)
                    .then_with(|| a.0.cmp(&b.0))
                    .then_with(|| a.1.cmp(&b.1))
            });
            rows.truncate(CHART_GROUPS as usize);
            Ok(rows)
        })
    }

    /// Sessions started per minute since `since`: (minute since the epoch, count).
    pub fn sessions_per_minute(&self, since: i64) -> Result<Vec<(i64, i64)>> {
        #[derive(QueryableByName)]
        struct Bucket {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            minute: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        // `since` is an integer: formatting it into the statement is safe.
        let sql = format!(
            "SELECT CAST(started_at / 60000 AS BIGINT) AS minute, CAST(COUNT(*) AS BIGINT) AS n \
             FROM session_log WHERE started_at >= {since} GROUP BY 1 ORDER BY 1"
        );
        let _ = session_log::table;
        with_conn!(self, |c| {
            let rows: Vec<Bucket> = diesel::sql_query(sql.as_str()).load(c)?;
            Ok(rows.into_iter().map(|b| (b.minute, b.n)).collect())
        })
    }

    /// Faults since `since` by code, most frequent first (at most [`CHART_GROUPS`] codes).
    pub fn faults_by_code(&self, since: i64) -> Result<Vec<(i32, i64)>> {
        use faults::dsl as f;
        with_conn!(self, |c| {
            let mut rows: Vec<(i32, i64)> = f::faults
                .filter(f::created_at.ge(since))
                .group_by(f::code)
                .select((f::code, diesel::dsl::count_star()))
                .load(c)?;
            rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            rows.truncate(CHART_GROUPS as usize);
            Ok(rows)
        })
    }

    /// Pending and running tasks (index `tasks_status`).
    pub fn open_task_counts(&self) -> Result<(i64, i64)> {
        use tasks::dsl as t;
        with_conn!(self, |c| {
            let pending: i64 = t::tasks
                .filter(t::status.eq("pending"))
                .count()
                .get_result(c)?;
            let running: i64 = t::tasks
                .filter(t::status.eq("running"))
                .count()
                .get_result(c)?;
            Ok((pending, running))
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
