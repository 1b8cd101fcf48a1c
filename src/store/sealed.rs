//! The columns that hold secrets sealed with [`crate::secrets`], read and rewritten as raw
//! stored text for re-encryption (a key rotation, or clear text from before encryption).

use diesel::prelude::*;

use super::schema::{cwmp_sessions, devices, settings, tasks, voip_lines};
use super::Store;
use crate::error::Result;
use crate::with_conn;

/// A column holding sealed values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedColumn {
    /// `devices.cr_password`, keyed by device id.
    CrPassword,
    /// `voip_lines.password`, keyed by line id.
    LinePassword,
    /// `tasks.args` (JSON with sealed strings inside), keyed by task id.
    TaskArgs,
    /// `cwmp_sessions.state`, keyed by session id.
    SavedSession,
}

impl SealedColumn {
    pub const ALL: [SealedColumn; 4] = [
        SealedColumn::CrPassword,
        SealedColumn::LinePassword,
        SealedColumn::TaskArgs,
        SealedColumn::SavedSession,
    ];
}

impl Store {
    /// `(key, stored value)` of rows whose value may need re-sealing: every row not sealed
    /// whole with key `current_id` (task arguments: every row, their secrets sit inside).
    pub fn sealed_candidates(
        &self,
        col: SealedColumn,
        current_id: &str,
    ) -> Result<Vec<(String, String)>> {
        let current = format!("{}{current_id}:%", crate::secrets::PREFIX);
        with_conn!(self, |c| {
            Ok(match col {
                SealedColumn::CrPassword => devices::table
                    .filter(devices::cr_password.is_not_null())
                    .filter(devices::cr_password.not_like(&current))
                    .select((devices::id, devices::cr_password.assume_not_null()))
                    .load::<(String, String)>(c)?,
                SealedColumn::LinePassword => voip_lines::table
                    .filter(voip_lines::password.is_not_null())
                    .filter(voip_lines::password.not_like(&current))
                    .select((voip_lines::id, voip_lines::password.assume_not_null()))
                    .load::<(i64, String)>(c)?
                    .into_iter()
                    .map(|(id, v)| (id.to_string(), v))
                    .collect(),
                SealedColumn::TaskArgs => tasks::table
                    .select((tasks::id, tasks::args))
                    .load::<(i64, String)>(c)?
                    .into_iter()
                    .map(|(id, v)| (id.to_string(), v))
                    .collect(),
                SealedColumn::SavedSession => cwmp_sessions::table
                    .filter(cwmp_sessions::state.not_like(&current))
                    .select((cwmp_sessions::id, cwmp_sessions::state))
                    .load::<(String, String)>(c)?,
            })
        })
    }

    /// Replace a stored value, only if it is still `old` (a running node may have written
    /// a new one meanwhile). Returns whether it was replaced.
    pub fn replace_sealed(
        &self,
        col: SealedColumn,
        key: &str,
        old: &str,
        new: &str,
    ) -> Result<bool> {
        let num = key.parse::<i64>().unwrap_or(-1);
        with_conn!(self, |c| {
            let n = match col {
                SealedColumn::CrPassword => diesel::update(
                    devices::table
                        .filter(devices::id.eq(key))
                        .filter(devices::cr_password.eq(old)),
                )
                .set(devices::cr_password.eq(new))
                .execute(c)?,
                SealedColumn::LinePassword => diesel::update(
                    voip_lines::table
                        .filter(voip_lines::id.eq(num))
                        .filter(voip_lines::password.eq(old)),
                )
                .set(voip_lines::password.eq(new))
                .execute(c)?,
                SealedColumn::TaskArgs => diesel::update(
                    tasks::table
                        .filter(tasks::id.eq(num))
                        .filter(tasks::args.eq(old)),
                )
                .set(tasks::args.eq(new))
                .execute(c)?,
                SealedColumn::SavedSession => diesel::update(
                    cwmp_sessions::table
                        .filter(cwmp_sessions::id.eq(key))
                        .filter(cwmp_sessions::state.eq(old)),
                )
                .set(cwmp_sessions::state.eq(new))
                .execute(c)?,
            };
            Ok(n == 1)
        })
    }

    /// Write a setting (insert or replace).
    pub fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        with_conn!(self, |c| {
            diesel::insert_into(settings::table)
                .values((settings::key.eq(key), settings::value.eq(value)))
                .on_conflict(settings::key)
                .do_update()
                .set(settings::value.eq(value))
                .execute(c)?;
            Ok(())
        })
    }
}
