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
}
