//! Metadata of stored files (firmware, configuration files, device uploads). The bytes live
//! on disk under `files.dir`, named by id.

use diesel::prelude::*;

use super::schema::files::{self, dsl as f};
use super::Store;
use crate::error::Result;
use crate::with_conn;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = files)]
pub struct FileRow {
    pub id: String,
    pub name: String,
    pub file_type: String,
    pub version: String,
    pub size: i64,
    pub sha256: String,
    pub device_id: Option<String>,
    pub created_at: i64,
}

impl Store {
    /// Mark a single-use link (`id`, valid until `expires_at`) as used, on every node.
    /// Returns false when it was used already. Links past their expiry are forgotten.
    pub fn claim_link(&self, id: &str, expires_at: i64, now: i64) -> Result<bool> {
        use super::schema::used_links::dsl as u;
        with_conn!(self, |c| {
            diesel::delete(u::used_links.filter(u::expires_at.lt(now))).execute(c)?;
            let n = diesel::insert_into(u::used_links)
                .values((u::id.eq(id), u::expires_at.eq(expires_at)))
                .on_conflict_do_nothing()
                .execute(c)?;
            Ok(n == 1)
        })
    }

    /// Give a claimed link back (its upload failed before anything was stored).
    pub fn release_link(&self, id: &str) -> Result<()> {
        use super::schema::used_links::dsl as u;
        with_conn!(self, |c| {
            diesel::delete(u::used_links.filter(u::id.eq(id))).execute(c)?;
            Ok(())
        })
    }

    pub fn insert_file(&self, row: &FileRow) -> Result<()> {
        with_conn!(self, |c| {
            diesel::insert_into(f::files).values(row).execute(c)?;
            Ok(())
        })
    }

    pub fn get_file(&self, id: &str) -> Result<Option<FileRow>> {
        with_conn!(self, |c| {
            Ok(f::files
                .filter(f::id.eq(id))
                .select(FileRow::as_select())
                .first(c)
                .optional()?)
        })
    }

    /// Files ordered by id after `cursor`.
    pub fn list_files(&self, cursor: Option<&str>, limit: i64) -> Result<Vec<FileRow>> {
        with_conn!(self, |c| {
            let mut q = f::files
                .select(FileRow::as_select())
                .order(f::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(cur) = cursor {
                q = q.filter(f::id.gt(cur.to_string()));
            }
            Ok(q.load(c)?)
        })
    }

    /// Files with exactly this name, newest first.
    pub fn files_named(&self, name: &str) -> Result<Vec<FileRow>> {
        with_conn!(self, |c| {
            Ok(f::files
                .filter(f::name.eq(name))
                .select(FileRow::as_select())
                .order((f::created_at.desc(), f::id.desc()))
                .limit(32)
                .load(c)?)
        })
    }

    pub fn delete_file(&self, id: &str) -> Result<bool> {
        with_conn!(self, |c| {
            Ok(diesel::delete(f::files.filter(f::id.eq(id))).execute(c)? == 1)
        })
    }

    /// Files ordered by id after `cursor`, optionally only those a device uploaded.
    pub fn find_files(
        &self,
        device_id: Option<&str>,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<FileRow>> {
        with_conn!(self, |c| {
            let mut q = f::files
                .select(FileRow::as_select())
                .order(f::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(d) = device_id {
                q = q.filter(f::device_id.eq(d.to_string()));
            }
            if let Some(cur) = cursor {
                q = q.filter(f::id.gt(cur.to_string()));
            }
            Ok(q.load(c)?)
        })
    }
}
