//! Faults a device returned (or a session ended with), for operators to read.

use diesel::prelude::*;

use super::schema::faults::{self, dsl as f};
use super::Store;
use crate::error::Result;
use crate::with_conn;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = faults)]
pub struct FaultRow {
    pub id: i64,
    pub device_id: String,
    pub task_id: Option<i64>,
    pub code: i32,
    pub message: String,
    pub detail: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = faults)]
pub struct NewFault {
    pub device_id: String,
    pub task_id: Option<i64>,
    pub code: i32,
    pub message: String,
    pub detail: Option<String>,
    pub created_at: i64,
}

impl Store {
    pub fn insert_fault(&self, fault: &NewFault) -> Result<()> {
        with_conn!(self, |c| {
            diesel::insert_into(f::faults).values(fault).execute(c)?;
            Ok(())
        })
    }

    /// Faults, newest first, optionally for one device, before the id `cursor`.
    pub fn list_faults(
        &self,
        device_id: Option<&str>,
        cursor: Option<i64>,
        limit: i64,
    ) -> Result<Vec<FaultRow>> {
        with_conn!(self, |c| {
            let mut q = f::faults
                .select(FaultRow::as_select())
                .order(f::id.desc())
                .limit(limit)
                .into_boxed();
            if let Some(d) = device_id {
                q = q.filter(f::device_id.eq(d.to_string()));
            }
            if let Some(cur) = cursor {
                q = q.filter(f::id.lt(cur));
            }
            Ok(q.load(c)?)
        })
    }

    /// Faults matching `filter`, newest first, before the id `cursor` (a page of `limit`).
    pub fn find_faults(
        &self,
        filter: &FaultFilter,
        cursor: Option<i64>,
        limit: i64,
    ) -> Result<Vec<FaultRow>> {
        with_conn!(self, |c| {
            let mut q = f::faults
                .select(FaultRow::as_select())
                .order(f::id.desc())
                .limit(limit)
                .into_boxed();
            if let Some(d) = &filter.device_id {
                q = q.filter(f::device_id.eq(d.clone()));
            }
            if let Some(code) = filter.code {
                q = q.filter(f::code.eq(code));
            }
            if let Some(t) = filter.since {
                q = q.filter(f::created_at.ge(t));
            }
            if let Some(t) = filter.until {
                q = q.filter(f::created_at.lt(t));
            }
            if let Some(cur) = cursor {
                q = q.filter(f::id.lt(cur));
            }
            Ok(q.load(c)?)
        })
    }

    /// Delete the faults matching `filter`; returns how many.
    pub fn delete_faults(&self, filter: &FaultFilter) -> Result<usize> {
        with_conn!(self, |c| {
            let mut q = diesel::delete(f::faults).into_boxed();
            if let Some(d) = &filter.device_id {
                q = q.filter(f::device_id.eq(d.clone()));
            }
            if let Some(code) = filter.code {
                q = q.filter(f::code.eq(code));
            }
            if let Some(t) = filter.since {
                q = q.filter(f::created_at.ge(t));
            }
            if let Some(t) = filter.until {
                q = q.filter(f::created_at.lt(t));
            }
            Ok(q.execute(c)?)
        })
    }
}

/// Which faults a list or a clear addresses; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultFilter {
    pub device_id: Option<String>,
    pub code: Option<i32>,
    /// From this time (UTC ms, inclusive).
    pub since: Option<i64>,
    /// Before this time (UTC ms).
    pub until: Option<i64>,
}

impl FaultFilter {
    /// How the audit log describes it.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = &self.device_id {
            parts.push(format!("device={d}"));
        }
        if let Some(c) = self.code {
            parts.push(format!("code={c}"));
        }
        if let Some(t) = self.since {
            parts.push(format!("since={t}"));
        }
        if let Some(t) = self.until {
            parts.push(format!("until={t}"));
        }
        if parts.is_empty() {
            "all faults".into()
        } else {
            parts.join(" ")
        }
    }
}
