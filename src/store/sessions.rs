//! The session log (one row per CWMP session) and resumable session state.

use diesel::prelude::*;

use super::schema::cwmp_sessions::dsl as cs;
use super::schema::session_log::{self, dsl as sl};
use super::Store;
use crate::error::Result;
use crate::with_conn;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = session_log)]
pub struct SessionLogRow {
    pub id: i64,
    pub device_id: String,
    pub started_at: i64,
    pub ended_at: i64,
    pub source_ip: String,
    pub events: String,
    pub rpcs: String,
    pub faults: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = session_log)]
pub struct NewSessionLog {
    pub device_id: String,
    pub started_at: i64,
    pub ended_at: i64,
    pub source_ip: String,
    pub events: String,
    pub rpcs: String,
    pub faults: String,
    pub outcome: String,
}

impl Store {
    /// Append many session-log rows in one statement.
    pub fn insert_session_logs(&self, rows: &[NewSessionLog]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        with_conn!(self, |c| {
            // Rows of devices deleted meanwhile would violate the foreign key: insert one by one
            // only if the batch fails.
            if diesel::insert_into(sl::session_log)
                .values(rows)
                .execute(c)
                .is_err()
            {
                for r in rows {
                    let _ = diesel::insert_into(sl::session_log).values(r).execute(c);
                }
            }
            Ok(())
        })
    }

    /// A device's sessions, newest first, before the id `cursor`.
    pub fn list_session_logs(
        &self,
        device_id: &str,
        cursor: Option<i64>,
        limit: i64,
    ) -> Result<Vec<SessionLogRow>> {
        with_conn!(self, |c| {
            let mut q = sl::session_log
                .filter(sl::device_id.eq(device_id.to_string()))
                .select(SessionLogRow::as_select())
                .order(sl::id.desc())
                .limit(limit)
                .into_boxed();
            if let Some(cur) = cursor {
                q = q.filter(sl::id.lt(cur));
            }
            Ok(q.load(c)?)
        })
    }

    /// Delete session-log rows that started before `before`.
    pub fn prune_session_logs(&self, before: i64) -> Result<usize> {
        with_conn!(self, |c| {
            Ok(diesel::delete(sl::session_log.filter(sl::started_at.lt(before))).execute(c)?)
        })
    }

    /// Save the state of a session whose connection closed before it ended.
    pub fn save_cwmp_session(
        &self,
        id: &str,
        device_id: &str,
        state: &str,
        expires_at: i64,
    ) -> Result<()> {
        with_conn!(self, |c| {
            diesel::insert_into(cs::cwmp_sessions)
                .values((
                    cs::id.eq(id),
                    cs::device_id.eq(device_id),
                    cs::state.eq(state),
                    cs::expires_at.eq(expires_at),
                ))
                .on_conflict(cs::id)
                .do_update()
                .set((cs::state.eq(state), cs::expires_at.eq(expires_at)))
                .execute(c)?;
            Ok(())
        })
    }

    /// A saved session (device id, state) without taking it.
    pub fn peek_cwmp_session(&self, id: &str, now: i64) -> Result<Option<(String, String)>> {
        with_conn!(self, |c| {
            Ok(cs::cwmp_sessions
                .filter(cs::id.eq(id))
                .filter(cs::expires_at.ge(now))
                .select((cs::device_id, cs::state))
                .first::<(String, String)>(c)
                .optional()?)
        })
    }

    /// Take (load and delete) a saved session, if it has not expired. Of several nodes
    /// taking the same copy at once, exactly one gets it: the copy is returned only to the
    /// taker whose delete removed it.
    pub fn take_cwmp_session(&self, id: &str, now: i64) -> Result<Option<(String, String)>> {
        Ok(self
            .take_cwmp_session_where(id, now, i64::MAX)?
            .map(|(device, state, _)| (device, state)))
    }

    /// [`Store::take_cwmp_session`], with when the copy was to expire: a node that saved
    /// the session itself tells its own copy (memory is current) from another node's.
    pub fn take_cwmp_session_versioned(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<(String, String, i64)>> {
        self.take_cwmp_session_where(id, now, i64::MAX)
    }

    /// Take a saved session only if its copy expires between `from` and `to` (inclusive):
    /// e.g. only the very copy this node saved, or only a copy saved a while ago.
    pub fn take_cwmp_session_expiring(
        &self,
        id: &str,
        from: i64,
        to: i64,
    ) -> Result<Option<(String, String)>> {
        Ok(self
            .take_cwmp_session_where(id, from, to)?
            .map(|(device, state, _)| (device, state)))
    }

    fn take_cwmp_session_where(
        &self,
        id: &str,
        expires_from: i64,
        expires_to: i64,
    ) -> Result<Option<(String, String, i64)>> {
        with_conn!(self, |c| {
            let row = cs::cwmp_sessions
                .filter(cs::id.eq(id))
                .filter(cs::expires_at.ge(expires_from))
                .filter(cs::expires_at.le(expires_to))
                .select((cs::device_id, cs::state, cs::expires_at))
                .first::<(String, String, i64)>(c)
                .optional()?;
            let Some((device, state, expires)) = row else {
                return Ok(None);
            };
            // Another node may have taken (or saved again) the copy since it was read.
            let deleted = diesel::delete(
                cs::cwmp_sessions
                    .filter(cs::id.eq(id))
                    .filter(cs::expires_at.eq(expires)),
            )
            .execute(c)?;
            Ok((deleted == 1).then_some((device, state, expires)))
        })
    }

    pub fn prune_cwmp_sessions(&self, now: i64) -> Result<usize> {
        with_conn!(self, |c| {
            Ok(diesel::delete(cs::cwmp_sessions.filter(cs::expires_at.lt(now))).execute(c)?)
        })
    }
}
