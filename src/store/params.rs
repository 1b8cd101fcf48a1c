//! The stored parameter tree of each device: one opaque, compactly encoded blob per device
//! (the encoding belongs to `domain::params`), read and written whole.

use diesel::prelude::*;

use super::schema::device_params::dsl as p;
use super::Store;
use crate::error::Result;
use crate::with_conn;

impl Store {
    /// The encoded tree, if any was stored.
    pub fn load_params(&self, device_id: &str) -> Result<Option<Vec<u8>>> {
        with_conn!(self, |c| {
            Ok(p::device_params
                .filter(p::device_id.eq(device_id))
                .select(p::data)
                .first::<Vec<u8>>(c)
                .optional()?)
        })
    }

    /// Replace the stored tree.
    pub fn save_params(&self, device_id: &str, data: &[u8], count: i32, now: i64) -> Result<()> {
        with_conn!(self, |c| {
            diesel::insert_into(p::device_params)
                .values((
                    p::device_id.eq(device_id),
                    p::data.eq(data),
                    p::param_count.eq(count),
                    p::updated_at.eq(now),
                ))
                .on_conflict(p::device_id)
                .do_update()
                .set((
                    p::data.eq(data),
                    p::param_count.eq(count),
                    p::updated_at.eq(now),
                ))
                .execute(c)?;
            Ok(())
        })
    }

    /// Total bytes of stored trees and their count (for footprint figures).
    pub fn params_footprint(&self) -> Result<(i64, i64)> {
        with_conn!(self, |c| {
            let rows: Vec<Vec<u8>> = p::device_params.select(p::data).limit(100_000).load(c)?;
            let bytes: i64 = rows.iter().map(|r| r.len() as i64).sum();
            Ok((bytes, rows.len() as i64))
        })
    }
}
