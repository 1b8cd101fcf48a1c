//! VoIP lines: SIP accounts assigned to line N of a device, with what the device last
//! reported about them. The account itself is opaque JSON here (its shape belongs to
//! `domain::voip`); the password sits in its own column so it never travels with the rest.

use diesel::prelude::*;

use super::schema::devices;
use super::schema::voip_lines::{self, dsl as l};
use super::{Store, WriteTxn};
use crate::error::Result;
use crate::with_conn;

/// A line as stored.
#[derive(Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = voip_lines)]
pub struct LineRow {
    pub id: i64,
    pub device_id: String,
    pub line: i32,
    pub account: String,
    pub password: Option<String>,
    pub revision: i64,
    pub applied_revision: i64,
    pub status: String,
    pub device_status: Option<String>,
    pub mapping: Option<String>,
    pub fault: Option<String>,
    pub status_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for LineRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineRow")
            .field("id", &self.id)
            .field("device_id", &self.device_id)
            .field("line", &self.line)
            .field("account", &self.account)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("revision", &self.revision)
            .field("applied_revision", &self.applied_revision)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A line to create or replace.
#[derive(Clone)]
pub struct NewLine {
    pub device_id: String,
    pub line: i32,
    pub account: String,
    /// `None` keeps the stored password (on replace) or stores none (on create).
    pub password: Option<String>,
}

impl std::fmt::Debug for NewLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewLine")
            .field("device_id", &self.device_id)
            .field("line", &self.line)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// A change of what is known about a line; `None` fields are left alone.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = voip_lines)]
pub struct LineUpdate {
    pub applied_revision: Option<i64>,
    pub status: Option<String>,
    pub device_status: Option<Option<String>>,
    pub mapping: Option<Option<String>>,
    pub fault: Option<Option<String>>,
    pub status_at: Option<Option<i64>>,
}

impl Store {
    /// Create or replace the lines, each in its device's slot, and mark the devices as having
    /// new work; all or nothing. A replaced line gets the next revision and is pushed again.
    fn upsert_lines_unbumped(&self, lines: &[NewLine], now: i64) -> Result<Vec<LineRow>> {
        // Passwords are sealed at rest.
        let keyring = self.keyring();
        let lines = lines
            .iter()
            .map(|l| {
                let mut l = l.clone();
                l.password = l
                    .password
                    .map(|p| keyring.seal(crate::secrets::purpose::LINE_PASSWORD, &p))
                    .transpose()?;
                Ok(l)
            })
            .collect::<Result<Vec<_>>>()?;
        let lines = &lines[..];
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let mut out = Vec::with_capacity(lines.len());
                for new in lines {
                    let existing = l::voip_lines
                        .filter(l::device_id.eq(&new.device_id))
                        .filter(l::line.eq(new.line))
                        .select(LineRow::as_select())
                        .first(c)
                        .optional()?;
                    let row = match existing {
                        Some(old) => {
                            let password = new.password.clone().or(old.password.clone());
                            diesel::update(l::voip_lines.filter(l::id.eq(old.id)))
                                .set((
                                    l::account.eq(&new.account),
                                    l::password.eq(password),
                                    l::revision.eq(old.revision + 1),
                                    l::status.eq("pending"),
                                    l::fault.eq(None::<String>),
                                    l::updated_at.eq(now),
                                ))
                                .returning(LineRow::as_returning())
                                .get_result(c)?
                        }
                        None => diesel::insert_into(l::voip_lines)
                            .values((
                                l::device_id.eq(&new.device_id),
                                l::line.eq(new.line),
                                l::account.eq(&new.account),
                                l::password.eq(&new.password),
                                l::revision.eq(1i64),
                                l::applied_revision.eq(0i64),
                                l::status.eq("pending"),
                                l::created_at.eq(now),
                                l::updated_at.eq(now),
                            ))
                            .returning(LineRow::as_returning())
                            .get_result(c)?,
                    };
                    diesel::update(devices::table.filter(devices::id.eq(&new.device_id)))
                        .set(devices::work_epoch.eq(devices::work_epoch + 1))
                        .execute(c)?;
                    out.push(row);
                }
                Ok(out)
            })
        })
    }

    /// The lines of a device, by line number, passwords opened (to send to the device).
    pub fn device_lines(&self, device_id: &str) -> Result<Vec<LineRow>> {
        let rows: Vec<LineRow> = with_conn!(self, |c| {
            Ok::<_, crate::error::Error>(
                l::voip_lines
                    .filter(l::device_id.eq(device_id))
                    .order(l::line.asc())
                    .select(LineRow::as_select())
                    .load(c)?,
            )
        })?;
        let keyring = self.keyring();
        rows.into_iter()
            .map(|mut r| {
                r.password = r
                    .password
                    .map(|p| keyring.open(crate::secrets::purpose::LINE_PASSWORD, &p))
                    .transpose()?;
                Ok(r)
            })
            .collect()
    }

    pub fn get_line(&self, device_id: &str, line: i32) -> Result<Option<LineRow>> {
        with_conn!(self, |c| {
            Ok(l::voip_lines
                .filter(l::device_id.eq(device_id))
                .filter(l::line.eq(line))
                .select(LineRow::as_select())
                .first(c)
                .optional()?)
        })
    }

    /// Forget a line (and mark the device as having new work). Returns whether it existed.
    /// The device keeps its configuration.
    fn delete_line_unbumped(&self, device_id: &str, line: i32) -> Result<bool> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let gone = diesel::delete(
                    l::voip_lines
                        .filter(l::device_id.eq(device_id))
                        .filter(l::line.eq(line)),
                )
                .execute(c)?
                    == 1;
                // A phone's files are keyed by its device's work epoch: a removed account
                // is a change like a replaced one. (A gateway keeps its configuration:
                // nothing to push.)
                if gone && device_id.starts_with("phone:") {
                    diesel::update(devices::table.filter(devices::id.eq(device_id)))
                        .set(devices::work_epoch.eq(devices::work_epoch + 1))
                        .execute(c)?;
                }
                Ok(gone)
            })
        })
    }

    /// Record what happened to a line on the device.
    pub fn update_line(&self, id: i64, update: &LineUpdate, now: i64) -> Result<()> {
        with_conn!(self, |c| {
            diesel::update(l::voip_lines.filter(l::id.eq(id)))
                .set((update, l::updated_at.eq(now)))
                .execute(c)?;
            Ok(())
        })
    }

    /// Number of lines stored (all devices).
    pub fn count_lines(&self) -> Result<i64> {
        with_conn!(self, |c| { Ok(l::voip_lines.count().get_result(c)?) })
    }

    /// Which of these device ids exist.
    pub fn existing_devices(&self, ids: &[String]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        with_conn!(self, |c| {
            let mut out = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(500) {
                out.extend(
                    devices::table
                        .filter(devices::id.eq_any(chunk))
                        .select(devices::id)
                        .load::<String>(c)?,
                );
            }
            Ok(out)
        })
    }
}

impl Store {
    /// `upsert_lines_unbumped`, then the phone generation is bumped
    /// ([`Store::phone_generation`]): what phones are served may have changed.
    pub fn upsert_lines(&self, lines: &[NewLine], now: i64) -> Result<Vec<LineRow>> {
        self.bumped(self.upsert_lines_unbumped(lines, now))
    }
}

impl Store {
    /// `delete_line_unbumped`, then the phone generation is bumped
    /// ([`Store::phone_generation`]): what phones are served may have changed.
    pub fn delete_line(&self, device_id: &str, line: i32) -> Result<bool> {
        self.bumped(self.delete_line_unbumped(device_id, line))
    }
}
