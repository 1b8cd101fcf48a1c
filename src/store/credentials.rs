//! CWMP credentials of devices: finding the device a username belongs to (its own
//! credentials, or the ones ferroacs issued and the device has not used yet), and the
//! lifecycle of issued credentials (`issued_credentials`: issued → confirmed, or given up).
//! The issued HA1 is stored sealed; sealing and the decisions are the domain's.

use diesel::prelude::*;

use super::schema::{devices, issued_credentials};
use super::{Store, WriteTxn};
use crate::error::Result;
use crate::with_conn;

/// Issued, not yet used by the device.
pub const ISSUED: &str = "issued";
/// The device logged in with them; they are its own credentials now.
pub const CONFIRMED: &str = "confirmed";
/// The device refused or ignored them too often; it keeps the shared credentials.
pub const GAVE_UP: &str = "gave_up";

/// A row of `issued_credentials`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = issued_credentials)]
pub struct IssuedRow {
    pub device_id: String,
    pub username: String,
    /// Sealed HA1, while `state` is [`ISSUED`].
    pub ha1: Option<String>,
    pub state: String,
    pub attempts: i32,
    pub reason: String,
    pub issued_at: i64,
    pub confirmed_at: Option<i64>,
}

/// Whose credentials a username opens.
#[derive(Debug, Clone, PartialEq)]
pub enum UsernameOwner {
    /// The device's own credentials (sealed HA1, as `devices.cwmp_ha1`).
    Own {
        device_id: String,
        sealed_ha1: String,
    },
    /// Credentials ferroacs issued to the device, not confirmed yet (sealed HA1).
    Issued {
        device_id: String,
        sealed_ha1: String,
    },
}

impl Store {
    /// The device whose own credentials use `username`, or else the device ferroacs issued
    /// credentials with that username to and that has not used them yet.
    pub fn username_owner(&self, username: &str) -> Result<Option<UsernameOwner>> {
        use devices::dsl as d;
        use issued_credentials::dsl as i;
        with_conn!(self, |c| {
            let own = d::devices
                .filter(d::cwmp_username.eq(username))
                .filter(d::cwmp_ha1.is_not_null())
                .select((d::id, d::cwmp_ha1.assume_not_null()))
                .first::<(String, String)>(c)
                .optional()?;
            if let Some((device_id, sealed_ha1)) = own {
                return Ok(Some(UsernameOwner::Own {
                    device_id,
                    sealed_ha1,
                }));
            }
            let issued = i::issued_credentials
                .filter(i::username.eq(username))
                .filter(i::state.eq(ISSUED))
                .filter(i::ha1.is_not_null())
                .order(i::issued_at.desc())
                .select((i::device_id, i::ha1.assume_not_null()))
                .first::<(String, String)>(c)
                .optional()?;
            Ok(issued.map(|(device_id, sealed_ha1)| UsernameOwner::Issued {
                device_id,
                sealed_ha1,
            }))
        })
    }

    /// What ferroacs issued to a device, if anything.
    pub fn issued_credentials(&self, device_id: &str) -> Result<Option<IssuedRow>> {
        use issued_credentials::dsl as i;
        with_conn!(self, |c| {
            Ok(i::issued_credentials
                .filter(i::device_id.eq(device_id))
                .select(IssuedRow::as_select())
                .first(c)
                .optional()?)
        })
    }

    /// Record credentials about to be sent to a device (replacing earlier unconfirmed
    /// ones). Returns the number of attempts so far, this one included.
    pub fn record_issued(
        &self,
        device_id: &str,
        username: &str,
        sealed_ha1: &str,
        now: i64,
    ) -> Result<i32> {
        let statement = RecordIssued {
            device_id,
            username,
            sealed_ha1,
            now,
        };
        with_conn!(self, |c| { Ok(statement.get_result::<i32>(c)?) })
    }

    /// The device logged in with its issued credentials: they become its own (`sealed_ha1`,
    /// sealed for `devices.cwmp_ha1` like every device's own HA1), and the shared ones no
    /// longer open it. Returns false when nothing was pending (already confirmed, or reset
    /// meanwhile).
    pub fn confirm_issued(&self, device_id: &str, sealed_ha1: &str, now: i64) -> Result<bool> {
        use devices::dsl as d;
        use issued_credentials::dsl as i;
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let row = i::issued_credentials
                    .filter(i::device_id.eq(device_id))
                    .filter(i::state.eq(ISSUED))
                    .select(i::username)
                    .first::<String>(c)
                    .optional()?;
                let Some(username) = row else {
                    return Ok(false);
                };
                let n = diesel::update(
                    d::devices
                        .filter(d::id.eq(device_id))
                        .filter(d::cwmp_username.is_null()),
                )
                .set((
                    d::cwmp_username.eq(Some(&username)),
                    d::cwmp_ha1.eq(Some(sealed_ha1)),
                    d::updated_at.eq(now),
                ))
                .execute(c)?;
                diesel::update(i::issued_credentials.filter(i::device_id.eq(device_id)))
                    .set((
                        i::state.eq(CONFIRMED),
                        i::ha1.eq(None::<String>),
                        i::confirmed_at.eq(Some(now)),
                    ))
                    .execute(c)?;
                Ok(n == 1)
            })
        })
    }

    /// Stop issuing credentials to a device (it refused or ignored them); `reason` says why.
    pub fn give_up_issuing(&self, device_id: &str, reason: &str) -> Result<()> {
        use issued_credentials::dsl as i;
        with_conn!(self, |c| {
            diesel::update(i::issued_credentials.filter(i::device_id.eq(device_id)))
                .set((
                    i::state.eq(GAVE_UP),
                    i::ha1.eq(None::<String>),
                    i::reason.eq(reason),
                ))
                .execute(c)?;
            Ok(())
        })
    }

    /// Forget a device's own and issued CWMP credentials, so the shared ones open it again
    /// (a factory-reset device) and new ones are issued. Returns the usernames that were in
    /// use (to forget cached lookups), or `None` when the device does not exist.
    pub fn reset_cwmp_credentials(&self, device_id: &str, now: i64) -> Result<Option<Vec<String>>> {
        use devices::dsl as d;
        use issued_credentials::dsl as i;
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let own = d::devices
                    .filter(d::id.eq(device_id))
                    .select(d::cwmp_username)
                    .first::<Option<String>>(c)
                    .optional()?;
                let Some(own) = own else {
                    return Ok(None);
                };
                let issued = i::issued_credentials
                    .filter(i::device_id.eq(device_id))
                    .select(i::username)
                    .first::<String>(c)
                    .optional()?;
                diesel::update(d::devices.filter(d::id.eq(device_id)))
                    .set((
                        d::cwmp_username.eq(None::<String>),
                        d::cwmp_ha1.eq(None::<String>),
                        d::updated_at.eq(now),
                    ))
                    .execute(c)?;
                diesel::delete(i::issued_credentials.filter(i::device_id.eq(device_id)))
                    .execute(c)?;
                Ok(Some(own.into_iter().chain(issued).collect()))
            })
        })
    }
}

/// Insert or replace the credentials issued to a device, returning the attempts so far: fixed
/// SQL, prepared once per connection (diesel's insert builder is never cached).
struct RecordIssued<'a> {
    device_id: &'a str,
    username: &'a str,
    sealed_ha1: &'a str,
    now: i64,
}

struct RecordIssuedId;

impl diesel::query_builder::QueryId for RecordIssued<'_> {
    type QueryId = RecordIssuedId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for RecordIssued<'_> {
    type SqlType = diesel::sql_types::Integer;
}

impl<Conn> RunQueryDsl<Conn> for RecordIssued<'_> {}

macro_rules! credential_statements {
    ($db:ty) => {
        impl diesel::query_builder::QueryFragment<$db> for RecordIssued<'_> {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, $db>,
            ) -> QueryResult<()> {
                use diesel::sql_types::{BigInt, Text};
                out.push_sql(
                    "INSERT INTO issued_credentials (device_id, username, ha1, state, attempts, \
                     reason, issued_at, confirmed_at) VALUES (",
                );
                out.push_bind_param::<Text, _>(self.device_id)?;
                out.push_sql(", ");
                out.push_bind_param::<Text, _>(self.username)?;
                out.push_sql(", ");
                out.push_bind_param::<Text, _>(self.sealed_ha1)?;
                out.push_sql(", 'issued', 1, '', ");
                out.push_bind_param::<BigInt, _>(&self.now)?;
                out.push_sql(
                    ", NULL) ON CONFLICT (device_id) DO UPDATE SET username = excluded.username, \
                     ha1 = excluded.ha1, state = 'issued', \
                     attempts = issued_credentials.attempts + 1, reason = '', \
                     issued_at = excluded.issued_at, confirmed_at = NULL RETURNING attempts",
                );
                Ok(())
            }
        }
    };
}

credential_statements!(diesel::sqlite::Sqlite);
credential_statements!(diesel::pg::Pg);
