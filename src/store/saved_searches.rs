//! Searches an operator saved on the device list, private to each user.

use diesel::prelude::*;

use super::schema::saved_searches;
use super::{Store, WriteTxn};
use crate::error::Result;
use crate::with_conn;

use saved_searches::dsl as s;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = saved_searches)]
pub struct SavedSearchRow {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    /// The device list's query string (query, columns, order).
    pub query: String,
    pub created_at: i64,
}

impl Store {
    /// A user's saved searches by name (at most `limit`).
    pub fn saved_searches(&self, user_id: i64, limit: i64) -> Result<Vec<SavedSearchRow>> {
        with_conn!(self, |c| {
            Ok(s::saved_searches
                .filter(s::user_id.eq(user_id))
                .order(s::name.asc())
                .limit(limit)
                .select(SavedSearchRow::as_select())
                .load(c)?)
        })
    }

    /// How many searches a user has saved.
    pub fn count_saved_searches(&self, user_id: i64) -> Result<i64> {
        with_conn!(self, |c| {
            Ok(s::saved_searches
                .filter(s::user_id.eq(user_id))
                .count()
                .get_result(c)?)
        })
    }

    /// Save a search under `name`, replacing the user's search of that name.
    pub fn save_search(&self, user_id: i64, name: &str, query: &str, now: i64) -> Result<()> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                diesel::delete(
                    s::saved_searches.filter(s::user_id.eq(user_id).and(s::name.eq(name))),
                )
                .execute(c)?;
                diesel::insert_into(s::saved_searches)
                    .values((
                        s::user_id.eq(user_id),
                        s::name.eq(name),
                        s::query.eq(query),
                        s::created_at.eq(now),
                    ))
                    .execute(c)?;
                Ok(())
            })
        })
    }

    /// Delete one of the user's saved searches; false when the user has none with that id.
    pub fn delete_saved_search(&self, user_id: i64, id: i64) -> Result<bool> {
        with_conn!(self, |c| {
            Ok(
                diesel::delete(s::saved_searches.filter(s::id.eq(id).and(s::user_id.eq(user_id))))
                    .execute(c)?
                    == 1,
            )
        })
    }
}
