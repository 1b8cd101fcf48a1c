//! The audit log: who did what, when.

use diesel::prelude::*;

use super::schema::audit_events::{self, dsl as a};
use super::Store;
use crate::error::Result;
use crate::with_conn;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Option<String>,
}

impl Store {
    pub fn audit(
        &self,
        at: i64,
        actor: &str,
        action: &str,
        target: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        with_conn!(self, |c| {
            diesel::insert_into(a::audit_events)
                .values((
                    a::at.eq(at),
                    a::actor.eq(actor),
                    a::action.eq(action),
                    a::target.eq(target),
                    a::detail.eq(detail),
                ))
                .execute(c)?;
            Ok(())
        })
    }

    /// Audit events, newest first, before the id `cursor`.
    pub fn list_audit(&self, cursor: Option<i64>, limit: i64) -> Result<Vec<AuditRow>> {
        with_conn!(self, |c| {
            let mut q = a::audit_events
                .select(AuditRow::as_select())
                .order(a::id.desc())
                .limit(limit)
                .into_boxed();
            if let Some(cur) = cursor {
                q = q.filter(a::id.lt(cur));
            }
            Ok(q.load(c)?)
        })
    }

    /// Audit entries newest first, before the id `cursor`: the actor contains `actor`, the
    /// action starts with `action`, `since <= at < until` (each filter optional).
    pub fn find_audit(
        &self,
        filter: &AuditFilter,
        cursor: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>> {
        let like = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        };
        with_conn!(self, |c| {
            let mut q = a::audit_events
                .select(AuditRow::as_select())
                .order(a::id.desc())
                .limit(limit)
                .into_boxed();
            if let Some(x) = &filter.actor {
                q = q.filter(a::actor.like(format!("%{}%", like(x))).escape('\\'));
            }
            if let Some(x) = &filter.action {
                q = q.filter(a::action.like(format!("{}%", like(x))).escape('\\'));
            }
            if let Some(t) = filter.since {
                q = q.filter(a::at.ge(t));
            }
            if let Some(t) = filter.until {
                q = q.filter(a::at.lt(t));
            }
            if let Some(cur) = cursor {
                q = q.filter(a::id.lt(cur));
            }
            Ok(q.load(c)?)
        })
    }
}

/// Which audit entries a list shows; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// A part of the actor (`user:alice`, `token:ci`).
    pub actor: Option<String>,
    /// The start of the action (`device.`, `task.create`).
    pub action: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}
