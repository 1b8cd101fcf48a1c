//! Presets (named desired states) and the per-device record of what they set and what the
//! device refused. The preset's spec is opaque JSON here (its shape belongs to
//! `domain::presets`).
//!
//! Every change of a preset marks the devices it may concern as having new work (one
//! `UPDATE` of their work epoch, narrowed by a device filter the caller derives from the
//! preset's old and new filters), so the next session of each such device evaluates
//! presets again while a session with nothing new stays free of preset queries.

use diesel::prelude::*;

use super::schema::device_preset_state::dsl as ps;
use super::schema::devices;
use super::schema::presets::{self, dsl as p};
use super::search::{BumpWorkEpoch, Filter};
use super::{Store, WriteTxn};
use crate::error::Result;
use crate::with_conn;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = presets)]
pub struct PresetRow {
    pub id: i64,
    pub name: String,
    pub filter: String,
    pub priority: i32,
    pub events: String,
    pub spec: String,
    pub revision: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A preset to create or replace (by name).
#[derive(Debug, Clone)]
pub struct NewPreset {
    pub name: String,
    pub filter: String,
    pub priority: i32,
    pub events: String,
    pub spec: String,
}

/// What presets did on one device: JSON maps kept by `domain::presets`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PresetState {
    pub applied: String,
    pub refused: String,
}

impl Store {
    /// Create or replace a preset by name; returns the row and whether it was created. The
    /// revision is unique and grows (at least the current time in ms). `affected` gives,
    /// from the filter the preset had before (if it existed), the devices to mark as having
    /// new work.
    pub fn put_preset(
        &self,
        new: &NewPreset,
        now: i64,
        affected: impl Fn(Option<&str>) -> Filter,
    ) -> Result<(PresetRow, bool)> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let max: Option<i64> = p::presets.select(diesel::dsl::max(p::revision)).first(c)?;
                let revision = now.max(max.unwrap_or(0) + 1);
                let existing = p::presets
                    .filter(p::name.eq(&new.name))
                    .select((p::id, p::filter))
                    .first::<(i64, String)>(c)
                    .optional()?;
                let scope = affected(existing.as_ref().map(|e| e.1.as_str()));
                let row = match existing.as_ref().map(|e| e.0) {
                    Some(id) => diesel::update(p::presets.filter(p::id.eq(id)))
                        .set((
                            p::filter.eq(&new.filter),
                            p::priority.eq(new.priority),
                            p::events.eq(&new.events),
                            p::spec.eq(&new.spec),
                            p::revision.eq(revision),
                            p::updated_at.eq(now),
                        ))
                        .returning(PresetRow::as_returning())
                        .get_result(c)?,
                    None => diesel::insert_into(p::presets)
                        .values((
                            p::name.eq(&new.name),
                            p::filter.eq(&new.filter),
                            p::priority.eq(new.priority),
                            p::events.eq(&new.events),
                            p::spec.eq(&new.spec),
                            p::revision.eq(revision),
                            p::created_at.eq(now),
                            p::updated_at.eq(now),
                        ))
                        .returning(PresetRow::as_returning())
                        .get_result(c)?,
                };
                c.bump_work_epoch(&scope)?;
                Ok((row, existing.is_none()))
            })
        })
    }

    /// Delete a preset by name; `affected` gives, from its filter, the devices to mark as
    /// having new work. Returns whether it existed.
    pub fn delete_preset(&self, name: &str, affected: impl Fn(&str) -> Filter) -> Result<bool> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let old = p::presets
                    .filter(p::name.eq(name))
                    .select(p::filter)
                    .first::<String>(c)
                    .optional()?;
                let Some(old) = old else {
                    return Ok(false);
                };
                diesel::delete(p::presets.filter(p::name.eq(name))).execute(c)?;
                c.bump_work_epoch(&affected(&old))?;
                Ok(true)
            })
        })
    }

    pub fn get_preset(&self, name: &str) -> Result<Option<PresetRow>> {
        with_conn!(self, |c| {
            Ok(p::presets
                .filter(p::name.eq(name))
                .select(PresetRow::as_select())
                .first(c)
                .optional()?)
        })
    }

    /// Every preset, by name.
    pub fn list_presets(&self) -> Result<Vec<PresetRow>> {
        with_conn!(self, |c| {
            Ok(p::presets
                .order(p::name.asc())
                .select(PresetRow::as_select())
                .load(c)?)
        })
    }

    /// What presets did on a device, if anything yet.
    pub fn preset_state(&self, device_id: &str) -> Result<Option<PresetState>> {
        with_conn!(self, |c| {
            Ok(ps::device_preset_state
                .filter(ps::device_id.eq(device_id))
                .select((ps::applied, ps::refused))
                .first::<(String, String)>(c)
                .optional()?
                .map(|(applied, refused)| PresetState { applied, refused }))
        })
    }

    /// Replace what presets did on a device.
    pub fn save_preset_state(&self, device_id: &str, state: &PresetState, now: i64) -> Result<()> {
        with_conn!(self, |c| {
            diesel::insert_into(ps::device_preset_state)
                .values((
                    ps::device_id.eq(device_id),
                    ps::applied.eq(&state.applied),
                    ps::refused.eq(&state.refused),
                    ps::updated_at.eq(now),
                ))
                .on_conflict(ps::device_id)
                .do_update()
                .set((
                    ps::applied.eq(&state.applied),
                    ps::refused.eq(&state.refused),
                    ps::updated_at.eq(now),
                ))
                .execute(c)?;
            Ok(())
        })
    }

    /// Remember at which events the presets matching a device apply.
    pub fn set_preset_events(&self, device_id: &str, events: &str) -> Result<()> {
        with_conn!(self, |c| {
            diesel::update(devices::table.filter(devices::id.eq(device_id)))
                .set(devices::preset_events.eq(events))
                .execute(c)?;
            Ok(())
        })
    }
}
