//! Operator accounts and API tokens (only hashes are stored).

use diesel::prelude::*;

use super::schema::{api_tokens, users};
use super::Store;
use crate::error::Result;
use crate::with_conn;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub token_hash: String,
    pub role: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Store {
    pub fn insert_user(
        &self,
        username: &str,
        password_hash: &str,
        role: &str,
        now: i64,
    ) -> Result<UserRow> {
        use users::dsl as u;
        with_conn!(self, |c| {
            Ok(diesel::insert_into(u::users)
                .values((
                    u::username.eq(username),
                    u::password_hash.eq(password_hash),
                    u::role.eq(role),
                    u::created_at.eq(now),
                ))
                .returning(UserRow::as_returning())
                .get_result(c)?)
        })
    }

    pub fn user_by_name(&self, username: &str) -> Result<Option<UserRow>> {
        use users::dsl as u;
        with_conn!(self, |c| {
            Ok(u::users
                .filter(u::username.eq(username))
                .select(UserRow::as_select())
                .first(c)
                .optional()?)
        })
    }

    pub fn list_users(&self) -> Result<Vec<UserRow>> {
        use users::dsl as u;
        with_conn!(self, |c| {
            Ok(u::users
                .select(UserRow::as_select())
                .order(u::id.asc())
                .load(c)?)
        })
    }

    pub fn delete_user(&self, username: &str) -> Result<bool> {
        use users::dsl as u;
        with_conn!(self, |c| {
            Ok(diesel::delete(u::users.filter(u::username.eq(username))).execute(c)? == 1)
        })
    }

    /// Replace an account's password hash; false when there is no such account.
    pub fn set_user_password(&self, username: &str, password_hash: &str) -> Result<bool> {
        use users::dsl as u;
        with_conn!(self, |c| {
            Ok(diesel::update(u::users.filter(u::username.eq(username)))
                .set(u::password_hash.eq(password_hash))
                .execute(c)?
                == 1)
        })
    }

    pub fn insert_token(
        &self,
        name: &str,
        token_hash: &str,
        role: &str,
        now: i64,
    ) -> Result<TokenRow> {
        use api_tokens::dsl as t;
        with_conn!(self, |c| {
            Ok(diesel::insert_into(t::api_tokens)
                .values((
                    t::name.eq(name),
                    t::token_hash.eq(token_hash),
                    t::role.eq(role),
                    t::created_at.eq(now),
                ))
                .returning(TokenRow::as_returning())
                .get_result(c)?)
        })
    }

    /// The live (not revoked) token with this hash.
    pub fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRow>> {
        use api_tokens::dsl as t;
        with_conn!(self, |c| {
            Ok(t::api_tokens
                .filter(t::token_hash.eq(token_hash))
                .filter(t::revoked_at.is_null())
                .select(TokenRow::as_select())
                .first(c)
                .optional()?)
        })
    }

    pub fn list_tokens(&self) -> Result<Vec<TokenRow>> {
        use api_tokens::dsl as t;
        with_conn!(self, |c| {
            Ok(t::api_tokens
                .select(TokenRow::as_select())
                .order(t::id.asc())
                .load(c)?)
        })
    }

    pub fn revoke_token(&self, id: i64, now: i64) -> Result<bool> {
        use api_tokens::dsl as t;
        with_conn!(self, |c| {
            Ok(diesel::update(
                t::api_tokens
                    .filter(t::id.eq(id))
                    .filter(t::revoked_at.is_null()),
            )
            .set(t::revoked_at.eq(Some(now)))
            .execute(c)?
                == 1)
        })
    }

    pub fn touch_token(&self, id: i64, now: i64) -> Result<()> {
        use api_tokens::dsl as t;
        with_conn!(self, |c| {
            diesel::update(t::api_tokens.filter(t::id.eq(id)))
                .set(t::last_used_at.eq(Some(now)))
                .execute(c)?;
            Ok(())
        })
    }
}
