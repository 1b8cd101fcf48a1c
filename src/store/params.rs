//! The stored parameter tree of each device: one opaque, compactly encoded blob per device
//! (the encoding belongs to `domain::params`), read and written whole, and a small delta in
//! the device row (`devices.params_delta`, the same encoding): what sessions learnt since
//! the whole tree was last written. A session that learnt a few values writes only the
//! delta, in the row its end updates anyway; writing the whole tree clears it.

use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};

use super::devices::{IdentityUpdate, ReleaseLock};
use super::schema::device_params::dsl as p;
use super::schema::{device_params, devices};
use super::search::SearchWrite;
use super::tasks::TaskUpdate;
use super::{Store, WriteTxn};
use crate::error::Result;
use crate::{with_backend, with_conn};

/// What the end of a session writes about its device, in one transaction (see
/// [`Store::close_session`]).
pub struct SessionClose<'a> {
    pub device_id: &'a str,
    /// The session's lock owner; the lock is released.
    pub owner: &'a str,
    /// The work epoch the session drained, if it did.
    pub work_seen: Option<i64>,
    pub now: i64,
    /// The device's tree, whole or as a new delta.
    pub params: Option<TreeWrite<'a>>,
    /// A discovery completed: recorded as of `now`.
    pub discovered: bool,
    /// Identity columns learnt: `None` leaves a column as it is; the manufacturer only fills
    /// an empty one (the Inform's DeviceId names it).
    pub identity: &'a IdentityUpdate,
    /// Searchable values to write (as [`Store::write_search_values`] does).
    pub search: Option<SearchWrite<'a>>,
    /// Task transitions made with the tree (tasks whose results the tree makes readable),
    /// each from `Pending` or `Running`, before the lock is released.
    pub tasks: &'a [(i64, TaskUpdate)],
}

/// A device's stored tree as kept: the whole tree and the delta laid over it
/// (`domain::params::read_tree` lays one over the other). Both are `None` for an unknown device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeParts {
    pub base: Option<Vec<u8>>,
    pub delta: Option<Vec<u8>>,
}

/// How a device's tree is written.
#[derive(Debug, Clone, Copy)]
pub enum TreeWrite<'a> {
    /// The whole encoded tree and its number of entries; the delta is cleared when
    /// `had_delta` says the device has one (a session knows: it read the row at its Inform).
    Whole {
        data: &'a [u8],
        count: i32,
        had_delta: bool,
    },
    /// A new delta over the stored whole tree (replacing the previous delta, which it
    /// includes); the whole tree is not touched.
    Delta(&'a [u8]),
}

impl Store {
    /// The stored tree of a device, whole and delta (one read).
    pub fn load_params(&self, device_id: &str) -> Result<TreeParts> {
        with_conn!(self, |c| {
            let row = devices::table
                .left_join(device_params::table)
                .filter(devices::id.eq(device_id))
                .select((device_params::data.nullable(), devices::params_delta))
                .first::<(Option<Vec<u8>>, Option<Vec<u8>>)>(c)
                .optional()?;
            Ok(row
                .map(|(base, delta)| TreeParts { base, delta })
                .unwrap_or_default())
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

    /// Everything the end of a session writes, in one transaction: the tree, the discovery
    /// time, the identity columns, the searchable values, and the lock released last. The
    /// statements have fixed text, prepared once per connection.
    pub fn close_session<'a>(&self, w: &SessionClose<'a>) -> Result<()> {
        let search = w.search;
        let release = ReleaseLock {
            id: w.device_id,
            owner: w.owner,
            work_seen: w.work_seen,
        };
        // The device row is updated once, last: its delta, the searchable values'
        // signature and the lock release in one statement.
        let close = |delta: Option<Option<&'a [u8]>>| CloseDevice {
            release: &release,
            set_delta: delta.is_some(),
            delta: delta.flatten(),
            search_sig: search.as_ref().map(|s| s.sig),
            discovered_at: w.discovered.then_some(w.now),
        };
        with_backend!(
            self,
            sqlite | c | {
                c.write_txn(|c| {
                    let delta = w.write_device(c)?;
                    if let Some(s) = &search {
                        s.write_values_sqlite(c, w.device_id)?;
                    }
                    super::tasks::transition_all(c, w.tasks)?;
                    close(delta).execute(c)?;
                    Ok(())
                })
            },
            postgres | c | {
                c.write_txn(|c| {
                    let delta = w.write_device(c)?;
                    if let Some(s) = &search {
                        s.write_values_pg(c, w.device_id)?;
                    }
                    super::tasks::transition_all(c, w.tasks)?;
                    close(delta).execute(c)?;
                    Ok(())
                })
            }
        )
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

impl<'a> SessionClose<'a> {
    /// The whole tree when it is written, then the identity columns that changed. Returns
    /// what the device's delta becomes (`None`: unchanged), for the statement that closes
    /// the session.
    fn write_device<C>(&self, c: &mut C) -> Result<Option<Option<&'a [u8]>>>
    where
        C: Connection,
        for<'b> SaveTree<'b>: QueryFragment<C::Backend>,
        for<'b> SetIdentity<'b, 0>: QueryFragment<C::Backend>,
        for<'b> SetIdentity<'b, 1>: QueryFragment<C::Backend>,
        for<'b> SetIdentity<'b, 2>: QueryFragment<C::Backend>,
        for<'b> SetIdentity<'b, 3>: QueryFragment<C::Backend>,
    {
        let delta = match self.params {
            Some(w) => write_tree_table(c, self.device_id, w, self.now)?,
            None => None,
        };
        // One statement per column that changes: every column an UPDATE names has its
        // index entries rewritten, same value or not.
        let (id, u) = (self.device_id, self.identity);
        set_identity::<0, C>(c, id, u.manufacturer.as_deref())?;
        set_identity::<1, C>(c, id, u.model_name.as_deref())?;
        set_identity::<2, C>(c, id, u.software_version.as_deref())?;
        set_identity::<3, C>(c, id, u.hardware_version.as_deref())?;
        Ok(delta)
    }
}

/// Write identity column `COL` when a value was learnt for it.
fn set_identity<const COL: usize, C>(c: &mut C, device_id: &str, value: Option<&str>) -> Result<()>
where
    C: Connection,
    for<'b> SetIdentity<'b, COL>: QueryFragment<C::Backend>,
{
    if let Some(value) = value {
        SetIdentity::<COL> { device_id, value }.execute(c)?;
    }
    Ok(())
}

/// Write a device's tree, whole (clearing the delta) or as a delta, on a connection the
/// caller holds (the fixed statements of [`Store::close_session`]).
pub(super) fn write_tree<C>(c: &mut C, device_id: &str, w: TreeWrite<'_>, now: i64) -> Result<()>
where
    C: Connection,
    for<'b> SaveTree<'b>: QueryFragment<C::Backend>,
    for<'b> SetDelta<'b>: QueryFragment<C::Backend>,
{
    if let Some(delta) = write_tree_table(c, device_id, w, now)? {
        SetDelta { device_id, delta }.execute(c)?;
    }
    Ok(())
}

/// The part of [`write_tree`] outside the device row: a whole tree is stored. Returns what
/// the device's delta becomes (`None`: unchanged; `Some(None)`: cleared), for the caller to
/// write.
fn write_tree_table<'a, C>(
    c: &mut C,
    device_id: &str,
    w: TreeWrite<'a>,
    now: i64,
) -> Result<Option<Option<&'a [u8]>>>
where
    C: Connection,
    for<'b> SaveTree<'b>: QueryFragment<C::Backend>,
{
    match w {
        TreeWrite::Whole {
            data,
            count,
            had_delta,
        } => {
            SaveTree {
                device_id,
                data,
                count,
                now,
            }
            .execute(c)?;
            Ok(had_delta.then_some(None))
        }
        TreeWrite::Delta(d) => Ok(Some(Some(d))),
    }
}

/// The last statement of a session's closing transaction, on the device row: its delta
/// (when it changes), the signature of the searchable values written (when they were), the
/// discovery time (when one completed), and the release of the lock with the drained work
/// epoch ([`ReleaseLock`]'s, only while the lock is the session's).
pub(super) struct CloseDevice<'a, 'r> {
    release: &'r ReleaseLock<'a>,
    /// Whether the delta changes (to `delta`).
    set_delta: bool,
    delta: Option<&'a [u8]>,
    search_sig: Option<i64>,
    discovered_at: Option<i64>,
}

pub(super) struct CloseDeviceId;

impl QueryId for CloseDevice<'_, '_> {
    type QueryId = CloseDeviceId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Conn> RunQueryDsl<Conn> for CloseDevice<'_, '_> {}

/// Insert or replace a device's tree.
pub(super) struct SaveTree<'a> {
    device_id: &'a str,
    data: &'a [u8],
    count: i32,
    now: i64,
}

/// Replace (or clear) a device's delta.
pub(super) struct SetDelta<'a> {
    device_id: &'a str,
    delta: Option<&'a [u8]>,
}

/// Record one identity column learnt (`IDENTITY_COLUMNS[COL]`); the manufacturer only
/// fills an empty one (the Inform's DeviceId names it).
pub(super) struct SetIdentity<'a, const COL: usize> {
    device_id: &'a str,
    value: &'a str,
}

/// The identity columns, in the order of [`SetIdentity`]'s `COL`.
const IDENTITY_COLUMNS: [&str; 4] = [
    "manufacturer",
    "model_name",
    "software_version",
    "hardware_version",
];

/// Static identities of the statements above, for the prepared-statement caches.
pub(super) struct SaveTreeId;
pub(super) struct SetDeltaId;
pub(super) struct SetIdentityId<const COL: usize>;

impl QueryId for SaveTree<'_> {
    type QueryId = SaveTreeId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryId for SetDelta<'_> {
    type QueryId = SetDeltaId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<const COL: usize> QueryId for SetIdentity<'_, COL> {
    type QueryId = SetIdentityId<COL>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Conn> RunQueryDsl<Conn> for SaveTree<'_> {}
impl<Conn> RunQueryDsl<Conn> for SetDelta<'_> {}
impl<Conn, const COL: usize> RunQueryDsl<Conn> for SetIdentity<'_, COL> {}

macro_rules! close_statements {
    ($db:ty) => {
        impl QueryFragment<$db> for SaveTree<'_> {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, $db>) -> QueryResult<()> {
                use diesel::sql_types::{BigInt, Binary, Integer, Text};
                out.push_sql(
                    "INSERT INTO device_params (device_id, data, param_count, updated_at) VALUES (",
                );
                out.push_bind_param::<Text, _>(self.device_id)?;
                out.push_sql(", ");
                out.push_bind_param::<Binary, _>(self.data)?;
                out.push_sql(", ");
                out.push_bind_param::<Integer, _>(&self.count)?;
                out.push_sql(", ");
                out.push_bind_param::<BigInt, _>(&self.now)?;
                out.push_sql(
                    ") ON CONFLICT (device_id) DO UPDATE SET data = excluded.data, \
                     param_count = excluded.param_count, updated_at = excluded.updated_at",
                );
                Ok(())
            }
        }

        impl QueryFragment<$db> for SetDelta<'_> {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, $db>) -> QueryResult<()> {
                use diesel::sql_types::{Binary, Nullable, Text};
                out.push_sql("UPDATE devices SET params_delta = ");
                out.push_bind_param::<Nullable<Binary>, _>(&self.delta)?;
                out.push_sql(" WHERE id = ");
                out.push_bind_param::<Text, _>(self.device_id)?;
                Ok(())
            }
        }

        impl<const COL: usize> QueryFragment<$db> for SetIdentity<'_, COL> {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, $db>) -> QueryResult<()> {
                use diesel::sql_types::Text;
                let col = IDENTITY_COLUMNS[COL];
                out.push_sql("UPDATE devices SET ");
                out.push_sql(col);
                if col == "manufacturer" {
                    out.push_sql(" = CASE WHEN manufacturer = '' THEN ");
                    out.push_bind_param::<Text, _>(self.value)?;
                    out.push_sql(" ELSE manufacturer END");
                } else {
                    out.push_sql(" = ");
                    out.push_bind_param::<Text, _>(self.value)?;
                }
                out.push_sql(" WHERE id = ");
                out.push_bind_param::<Text, _>(self.device_id)?;
                Ok(())
            }
        }
    };
}

macro_rules! close_device_statement {
    ($db:ty) => {
        impl QueryFragment<$db> for CloseDevice<'_, '_> {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, $db>) -> QueryResult<()> {
                use diesel::sql_types::{BigInt, Binary, Bool, Nullable, Text};
                let r = self.release;
                // SET reads the row as it was: every `session_owner` below is the old one.
                out.push_sql("UPDATE devices SET params_delta = CASE WHEN ");
                out.push_bind_param::<Bool, _>(&self.set_delta)?;
                out.push_sql(" THEN ");
                out.push_bind_param::<Nullable<Binary>, _>(&self.delta)?;
                out.push_sql(" ELSE params_delta END, search_sig = COALESCE(");
                out.push_bind_param::<Nullable<BigInt>, _>(&self.search_sig)?;
                out.push_sql(", search_sig), discovered_at = COALESCE(");
                out.push_bind_param::<Nullable<BigInt>, _>(&self.discovered_at)?;
                out.push_sql(", discovered_at), work_seen_epoch = CASE WHEN session_owner = ");
                out.push_bind_param::<Text, _>(r.owner)?;
                out.push_sql(" THEN COALESCE(");
                out.push_bind_param::<Nullable<BigInt>, _>(&r.work_seen)?;
                out.push_sql(
                    ", work_seen_epoch) ELSE work_seen_epoch END, \
                     session_expires = CASE WHEN session_owner = ",
                );
                out.push_bind_param::<Text, _>(r.owner)?;
                out.push_sql(
                    " THEN NULL ELSE session_expires END, \
                     session_owner = CASE WHEN session_owner = ",
                );
                out.push_bind_param::<Text, _>(r.owner)?;
                out.push_sql(" THEN NULL ELSE session_owner END WHERE id = ");
                out.push_bind_param::<Text, _>(r.id)?;
                Ok(())
            }
        }
    };
}

close_device_statement!(diesel::sqlite::Sqlite);
close_device_statement!(diesel::pg::Pg);

close_statements!(diesel::sqlite::Sqlite);
close_statements!(diesel::pg::Pg);
