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
}
