//! Bulk copies of a known device (row, stored tree, search index) and the database's size, for capacity measurements
//! (how many bytes a device costs once its whole parameter tree is stored).

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::devices::DeviceRow;
use super::schema::{device_params, device_search, devices};
use super::{Store, WriteTxn};
use crate::error::{Error, Result};
use crate::with_backend;
use crate::with_conn;

#[derive(QueryableByName)]
struct Size {
    #[diesel(sql_type = BigInt)]
    bytes: i64,
}

impl Store {
    /// Copies device `template` (its row and stored parameter tree) under each
    /// `(device id, serial number)` of `copies`, in one transaction. Copies are released
    /// (no session lock) and keep the template's discovery time. Returns the rows inserted.
    pub fn clone_device(
        &self,
        template: &str,
        copies: &[(String, String)],
        now: i64,
    ) -> Result<usize> {
        let row = self.get_device(template)?.ok_or_else(|| {
            Error::invalid("template", format!("device {template} does not exist"))
        })?;
        // The whole tree is copied; the delta over it comes with the row.
        let params = self.load_params(template)?.base;
        let count: i32 = with_conn!(self, |c| {
            Ok::<_, Error>(
                device_params::table
                    .filter(device_params::device_id.eq(template))
                    .select(device_params::param_count)
                    .first::<i32>(c)
                    .optional()?
                    .unwrap_or(0),
            )
        })?;
        let search: Vec<(String, String)> = with_conn!(self, |c| {
            Ok::<_, Error>(
                device_search::table
                    .filter(device_search::device_id.eq(template))
                    .select((device_search::name, device_search::value))
                    .load(c)?,
            )
        })?;
        let rows: Vec<DeviceRow> = copies
            .iter()
            .map(|(id, serial)| DeviceRow {
                id: id.clone(),
                serial_number: serial.clone(),
                session_owner: None,
                session_expires: None,
                created_at: now,
                updated_at: now,
                ..row.clone()
            })
            .collect();
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let mut n = 0;
                // Stay under the bind-parameter limits of both backends.
                for chunk in rows.chunks(500) {
                    n += diesel::insert_into(devices::table)
                        .values(chunk)
                        .execute(c)?;
                }
                if let Some(data) = &params {
                    let values: Vec<_> = copies
                        .iter()
                        .map(|(id, _)| {
                            (
                                device_params::device_id.eq(id.as_str()),
                                device_params::data.eq(data.as_slice()),
                                device_params::param_count.eq(count),
                                device_params::updated_at.eq(now),
                            )
                        })
                        .collect();
                    for chunk in values.chunks(1000) {
                        diesel::insert_into(device_params::table)
                            .values(chunk)
                            .execute(c)?;
                    }
                }
                let values: Vec<_> = copies
                    .iter()
                    .flat_map(|(id, _)| {
                        search.iter().map(move |(name, value)| {
                            (
                                device_search::device_id.eq(id.as_str()),
                                device_search::name.eq(name.as_str()),
                                device_search::value.eq(value.as_str()),
                            )
                        })
                    })
                    .collect();
                for chunk in values.chunks(1000) {
                    diesel::insert_into(device_search::table)
                        .values(chunk)
                        .execute(c)?;
                }
                Ok(n)
            })
        })
    }

    /// Bytes the database occupies: SQLite pages in use after a WAL checkpoint (free pages
    /// excluded), PostgreSQL `pg_database_size`.
    pub fn database_bytes(&self) -> Result<i64> {
        with_backend!(
            self,
            sqlite | c | {
                c.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")?;
                let s = diesel::sql_query(
                    "SELECT (page_count - freelist_count) * page_size AS bytes \
                     FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()",
                )
                .get_result::<Size>(c)?;
                Ok(s.bytes)
            },
            postgres | c | {
                let s = diesel::sql_query("SELECT pg_database_size(current_database()) AS bytes")
                    .get_result::<Size>(c)?;
                Ok(s.bytes)
            }
        )
    }
}
