//! The columns that hold secrets sealed with [`crate::secrets`], read and rewritten as raw
//! stored text for re-encryption (a key rotation, or clear text from before encryption).

use diesel::prelude::*;

use super::phones::phones;
use super::schema::{
    campaigns, cwmp_sessions, device_preset_state, devices, issued_credentials, presets, schedules,
    settings, tasks, voip_lines,
};
use super::stun::device_stun;
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
    /// `phones.token`, keyed by MAC.
    PhoneToken,
    /// `phones.file_password`, keyed by MAC.
    PhoneFilePassword,
    /// `issued_credentials.ha1` (credentials issued to a device, not confirmed yet), keyed
    /// by device id.
    IssuedHa1,
    /// `device_stun.password`, keyed by device id.
    StunPassword,
    /// `phones.digest_password`, keyed by MAC.
    PhoneDigestPassword,
    /// `presets.spec` (JSON with sealed secret values inside), keyed by preset id.
    PresetSpec,
    /// `devices.cwmp_ha1` (a device's own CWMP credentials: confirmed after being issued,
    /// or provisioned), keyed by device id.
    DeviceHa1,
    /// `schedules.spec` (JSON; the secrets of the task a job queues sealed inside), keyed by
    /// schedule id.
    ScheduleSpec,
    /// `campaigns.spec` (JSON; the secrets of a task action sealed inside), keyed by
    /// campaign id.
    CampaignSpec,
}

/// Only a spec with a task can hold a secret (`"task": {...}` in its action).
const HOLDS_TASK: &str = "%\"task\"%";

impl SealedColumn {
    pub const ALL: [SealedColumn; 13] = [
        SealedColumn::CrPassword,
        SealedColumn::LinePassword,
        SealedColumn::TaskArgs,
        SealedColumn::SavedSession,
        SealedColumn::PhoneToken,
        SealedColumn::PhoneFilePassword,
        SealedColumn::IssuedHa1,
        SealedColumn::StunPassword,
        SealedColumn::PhoneDigestPassword,
        SealedColumn::PresetSpec,
        SealedColumn::DeviceHa1,
        SealedColumn::ScheduleSpec,
        SealedColumn::CampaignSpec,
    ];
}

impl Store {
    /// `(key, stored value)` of rows whose value may need re-sealing: every row not sealed
    /// whole with key `current_id` (task arguments, preset specs: every row, their secrets
    /// sit inside; schedule and campaign specs: every row with a task).
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
                SealedColumn::PhoneToken => phones::table
                    .filter(phones::token.not_like(&current))
                    .select((phones::mac, phones::token))
                    .load::<(String, String)>(c)?,
                SealedColumn::PhoneFilePassword => phones::table
                    .filter(phones::file_password.is_not_null())
                    .filter(phones::file_password.not_like(&current))
                    .select((phones::mac, phones::file_password.assume_not_null()))
                    .load::<(String, String)>(c)?,
                SealedColumn::IssuedHa1 => issued_credentials::table
                    .filter(issued_credentials::ha1.is_not_null())
                    .filter(issued_credentials::ha1.not_like(&current))
                    .select((
                        issued_credentials::device_id,
                        issued_credentials::ha1.assume_not_null(),
                    ))
                    .load::<(String, String)>(c)?,
                SealedColumn::StunPassword => device_stun::table
                    .filter(device_stun::password.not_like(&current))
                    .select((device_stun::device_id, device_stun::password))
                    .load::<(String, String)>(c)?,
                SealedColumn::PhoneDigestPassword => phones::table
                    .filter(phones::digest_password.is_not_null())
                    .filter(phones::digest_password.not_like(&current))
                    .select((phones::mac, phones::digest_password.assume_not_null()))
                    .load::<(String, String)>(c)?,
                SealedColumn::PresetSpec => presets::table
                    .select((presets::id, presets::spec))
                    .load::<(i64, String)>(c)?
                    .into_iter()
                    .map(|(id, v)| (id.to_string(), v))
                    .collect(),
                SealedColumn::DeviceHa1 => devices::table
                    .filter(devices::cwmp_ha1.is_not_null())
                    .filter(devices::cwmp_ha1.not_like(&current))
                    .select((devices::id, devices::cwmp_ha1.assume_not_null()))
                    .load::<(String, String)>(c)?,
                SealedColumn::ScheduleSpec => schedules::table
                    .filter(schedules::spec.like(HOLDS_TASK))
                    .select((schedules::id, schedules::spec))
                    .load::<(i64, String)>(c)?
                    .into_iter()
                    .map(|(id, v)| (id.to_string(), v))
                    .collect(),
                SealedColumn::CampaignSpec => campaigns::table
                    .filter(campaigns::spec.like(HOLDS_TASK))
                    .select((campaigns::id, campaigns::spec))
                    .load::<(i64, String)>(c)?
                    .into_iter()
                    .map(|(id, v)| (id.to_string(), v))
                    .collect(),
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
                SealedColumn::PhoneToken => diesel::update(
                    phones::table
                        .filter(phones::mac.eq(key))
                        .filter(phones::token.eq(old)),
                )
                .set(phones::token.eq(new))
                .execute(c)?,
                SealedColumn::PhoneFilePassword => diesel::update(
                    phones::table
                        .filter(phones::mac.eq(key))
                        .filter(phones::file_password.eq(old)),
                )
                .set(phones::file_password.eq(new))
                .execute(c)?,
                SealedColumn::IssuedHa1 => diesel::update(
                    issued_credentials::table
                        .filter(issued_credentials::device_id.eq(key))
                        .filter(issued_credentials::ha1.eq(old)),
                )
                .set(issued_credentials::ha1.eq(new))
                .execute(c)?,
                SealedColumn::StunPassword => diesel::update(
                    device_stun::table
                        .filter(device_stun::device_id.eq(key))
                        .filter(device_stun::password.eq(old)),
                )
                .set(device_stun::password.eq(new))
                .execute(c)?,
                SealedColumn::PhoneDigestPassword => diesel::update(
                    phones::table
                        .filter(phones::mac.eq(key))
                        .filter(phones::digest_password.eq(old)),
                )
                .set(phones::digest_password.eq(new))
                .execute(c)?,
                SealedColumn::PresetSpec => diesel::update(
                    presets::table
                        .filter(presets::id.eq(num))
                        .filter(presets::spec.eq(old)),
                )
                .set(presets::spec.eq(new))
                .execute(c)?,
                SealedColumn::DeviceHa1 => diesel::update(
                    devices::table
                        .filter(devices::id.eq(key))
                        .filter(devices::cwmp_ha1.eq(old)),
                )
                .set(devices::cwmp_ha1.eq(new))
                .execute(c)?,
                SealedColumn::ScheduleSpec => diesel::update(
                    schedules::table
                        .filter(schedules::id.eq(num))
                        .filter(schedules::spec.eq(old)),
                )
                .set(schedules::spec.eq(new))
                .execute(c)?,
                SealedColumn::CampaignSpec => diesel::update(
                    campaigns::table
                        .filter(campaigns::id.eq(num))
                        .filter(campaigns::spec.eq(old)),
                )
                .set(campaigns::spec.eq(new))
                .execute(c)?,
            };
            Ok(n == 1)
        })
    }

    /// A page of what presets did on devices, `(device id, applied, refused)`, in device id
    /// order after `after`.
    pub fn preset_states_page(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, String, String)>> {
        use device_preset_state::dsl as ps;
        with_conn!(self, |c| {
            Ok(ps::device_preset_state
                .filter(ps::device_id.gt(after))
                .order(ps::device_id.asc())
                .limit(limit)
                .select((ps::device_id, ps::applied, ps::refused))
                .load::<(String, String, String)>(c)?)
        })
    }

    /// Replace what presets did on a device, only if it is still `old` (a session may have
    /// written a new one meanwhile). Returns whether it was replaced.
    pub fn replace_preset_state(
        &self,
        device_id: &str,
        old: (&str, &str),
        new: (&str, &str),
    ) -> Result<bool> {
        use device_preset_state::dsl as ps;
        with_conn!(self, |c| {
            Ok(diesel::update(
                ps::device_preset_state
                    .filter(ps::device_id.eq(device_id))
                    .filter(ps::applied.eq(old.0))
                    .filter(ps::refused.eq(old.1)),
            )
            .set((ps::applied.eq(new.0), ps::refused.eq(new.1)))
            .execute(c)?
                == 1)
        })
    }

    /// Remove a setting.
    pub fn delete_setting(&self, key: &str) -> Result<()> {
        with_conn!(self, |c| {
            diesel::delete(settings::table.filter(settings::key.eq(key))).execute(c)?;
            Ok(())
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
