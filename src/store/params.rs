//! The stored parameter tree of each device: one opaque, compactly encoded blob per device
//! (the encoding belongs to `domain::params`), read and written whole.

use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};

use super::devices::{IdentityUpdate, ReleaseLock};
use super::schema::device_params::dsl as p;
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
    /// The device's new encoded tree and its number of entries.
    pub params: Option<(&'a [u8], i32)>,
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

    /// Everything the end of a session writes, in one transaction: the tree, the discovery
    /// time, the identity columns, the searchable values, and the lock released last. The
    /// statements have fixed text, prepared once per connection.
    pub fn close_session(&self, w: &SessionClose<'_>) -> Result<()> {
        let search = w.search;
        let release = ReleaseLock {
            id: w.device_id,
            owner: w.owner,
            work_seen: w.work_seen,
        };
        with_backend!(
            self,
            sqlite | c | {
                c.write_txn(|c| {
                    w.write_device(c)?;
                    if let Some(s) = &search {
                        s.write_sqlite(c, w.device_id)?;
                    }
                    super::tasks::transition_all(c, w.tasks)?;
                    release.execute(c)?;
                    Ok(())
                })
            },
            postgres | c | {
                c.write_txn(|c| {
                    w.write_device(c)?;
                    if let Some(s) = &search {
                        s.write_pg(c, w.device_id)?;
                    }
                    super::tasks::transition_all(c, w.tasks)?;
                    release.execute(c)?;
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

impl SessionClose<'_> {
    /// The tree, then the discovery time and identity columns.
    fn write_device<C>(&self, c: &mut C) -> Result<()>
    where
        C: Connection,
        for<'b> SaveTree<'b>: QueryFragment<C::Backend>,
        for<'b> SetLearnt<'b>: QueryFragment<C::Backend>,
    {
        if let Some((data, count)) = self.params {
            save_tree(c, self.device_id, data, count, self.now)?;
        }
        let id = self.identity;
        if self.discovered || !id.is_empty() {
            SetLearnt {
                device_id: self.device_id,
                discovered_at: self.discovered.then_some(self.now),
                identity: id,
            }
            .execute(c)?;
        }
        Ok(())
    }
}

/// Insert or replace a device's tree on a connection the caller holds (the fixed statement
/// of [`Store::close_session`]).
pub(super) fn save_tree<C>(
    c: &mut C,
    device_id: &str,
    data: &[u8],
    count: i32,
    now: i64,
) -> Result<()>
where
    C: Connection,
    for<'b> SaveTree<'b>: QueryFragment<C::Backend>,
{
    SaveTree {
        device_id,
        data,
        count,
        now,
    }
    .execute(c)?;
    Ok(())
}

/// Insert or replace a device's tree.
pub(super) struct SaveTree<'a> {
    device_id: &'a str,
    data: &'a [u8],
    count: i32,
    now: i64,
}

/// Record a completed discovery and the identity columns learnt: `None` leaves a column as
/// it is, and the manufacturer only fills an empty one (the Inform's DeviceId names it).
struct SetLearnt<'a> {
    device_id: &'a str,
    discovered_at: Option<i64>,
    identity: &'a IdentityUpdate,
}

/// Static identities of the statements above, for the prepared-statement caches.
pub(super) struct SaveTreeId;
struct SetLearntId;

impl QueryId for SaveTree<'_> {
    type QueryId = SaveTreeId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryId for SetLearnt<'_> {
    type QueryId = SetLearntId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Conn> RunQueryDsl<Conn> for SaveTree<'_> {}
impl<Conn> RunQueryDsl<Conn> for SetLearnt<'_> {}

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

        impl QueryFragment<$db> for SetLearnt<'_> {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, $db>) -> QueryResult<()> {
                use diesel::sql_types::{BigInt, Nullable, Text};
                let u = self.identity;
                out.push_sql("UPDATE devices SET discovered_at = COALESCE(");
                out.push_bind_param::<Nullable<BigInt>, _>(&self.discovered_at)?;
                out.push_sql(", discovered_at), model_name = COALESCE(");
                out.push_bind_param::<Nullable<Text>, _>(&u.model_name)?;
                out.push_sql(", model_name), software_version = COALESCE(");
                out.push_bind_param::<Nullable<Text>, _>(&u.software_version)?;
                out.push_sql(", software_version), hardware_version = COALESCE(");
                out.push_bind_param::<Nullable<Text>, _>(&u.hardware_version)?;
                out.push_sql(
                    ", hardware_version), manufacturer = CASE WHEN manufacturer = '' THEN COALESCE(",
                );
                out.push_bind_param::<Nullable<Text>, _>(&u.manufacturer)?;
                out.push_sql(", manufacturer) ELSE manufacturer END WHERE id = ");
                out.push_bind_param::<Text, _>(self.device_id)?;
                Ok(())
            }
        }
    };
}

close_statements!(diesel::sqlite::Sqlite);
close_statements!(diesel::pg::Pg);
