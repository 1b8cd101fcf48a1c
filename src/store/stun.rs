//! TR-111 state of devices: the STUN credentials ferroacs gave a device (the password sealed
//! by the caller), the public binding its authenticated Binding Requests showed, and the log
//! of connection-request attempts with their transport and outcome.

use diesel::prelude::*;

use super::Store;
use crate::error::Result;
use crate::with_conn;

diesel::table! {
    device_stun (device_id) {
        device_id -> Text,
        username -> Text,
        password -> Text,
        binding -> Nullable<Text>,
        binding_at -> Nullable<BigInt>,
        seen_at -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    connreq_attempts (id) {
        id -> BigInt,
        device_id -> Text,
        at -> BigInt,
        transport -> Text,
        outcome -> Text,
        message -> Text,
        confirmed_at -> Nullable<BigInt>,
    }
}

/// A device's STUN credentials and binding.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = device_stun)]
pub struct StunRow {
    pub device_id: String,
    pub username: String,
    /// Sealed (`secrets::purpose::STUN_PASSWORD`).
    pub password: String,
    pub binding: Option<String>,
    pub binding_at: Option<i64>,
    pub seen_at: Option<i64>,
    pub created_at: i64,
}

/// One connection-request attempt.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = connreq_attempts)]
pub struct AttemptRow {
    pub id: i64,
    pub device_id: String,
    pub at: i64,
    pub transport: String,
    pub outcome: String,
    pub message: String,
    pub confirmed_at: Option<i64>,
}

/// Attempts kept per device (older ones are deleted when a new one is recorded).
pub const ATTEMPTS_KEPT: i64 = 20;

impl Store {
    /// Give `device_id` STUN credentials (replacing earlier ones); the binding is forgotten.
    pub fn set_stun_credentials(
        &self,
        device_id: &str,
        username: &str,
        sealed_password: &str,
        now: i64,
    ) -> Result<()> {
        use device_stun::dsl as s;
        with_conn!(self, |c| {
            c.transaction(|c| {
                diesel::delete(s::device_stun.filter(s::device_id.eq(device_id))).execute(c)?;
                diesel::insert_into(s::device_stun)
                    .values((
                        s::device_id.eq(device_id),
                        s::username.eq(username),
                        s::password.eq(sealed_password),
                        s::created_at.eq(now),
                    ))
                    .execute(c)?;
                Ok(())
            })
        })
    }

    /// The STUN row of the device whose STUNUsername is `username`.
    pub fn stun_by_username(&self, username: &str) -> Result<Option<StunRow>> {
        use device_stun::dsl as s;
        with_conn!(self, |c| {
            Ok(s::device_stun
                .filter(s::username.eq(username))
                .select(StunRow::as_select())
                .first(c)
                .optional()?)
        })
    }

    /// The STUN row of `device_id`.
    pub fn stun_of(&self, device_id: &str) -> Result<Option<StunRow>> {
        use device_stun::dsl as s;
        with_conn!(self, |c| {
            Ok(s::device_stun
                .filter(s::device_id.eq(device_id))
                .select(StunRow::as_select())
                .first(c)
                .optional()?)
        })
    }

    /// Record that an authenticated Binding Request of `device_id` came from `binding` at
    /// `now`: a new value also moves `binding_at`. Returns true when the binding changed.
    pub fn record_stun_binding(&self, device_id: &str, binding: &str, now: i64) -> Result<bool> {
        use device_stun::dsl as s;
        with_conn!(self, |c| {
            let changed = diesel::update(
                s::device_stun
                    .filter(s::device_id.eq(device_id))
                    .filter(s::binding.is_null().or(s::binding.ne(binding))),
            )
            .set((
                s::binding.eq(binding),
                s::binding_at.eq(now),
                s::seen_at.eq(now),
            ))
            .execute(c)?;
            if changed == 0 {
                diesel::update(s::device_stun.filter(s::device_id.eq(device_id)))
                    .set(s::seen_at.eq(now))
                    .execute(c)?;
            }
            Ok(changed == 1)
        })
    }

    /// Log one connection-request attempt; keeps the newest [`ATTEMPTS_KEPT`] of the device.
    pub fn record_attempt(
        &self,
        device_id: &str,
        at: i64,
        transport: &str,
        outcome: &str,
        message: &str,
    ) -> Result<()> {
        use connreq_attempts::dsl as a;
        with_conn!(self, |c| {
            diesel::insert_into(a::connreq_attempts)
                .values((
                    a::device_id.eq(device_id),
                    a::at.eq(at),
                    a::transport.eq(transport),
                    a::outcome.eq(outcome),
                    a::message.eq(message),
                ))
                .execute(c)?;
            let keep_from: Option<i64> = a::connreq_attempts
                .filter(a::device_id.eq(device_id))
                .order(a::id.desc())
                .offset(ATTEMPTS_KEPT - 1)
                .select(a::id)
                .first(c)
                .optional()?;
            if let Some(first_kept) = keep_from {
                diesel::delete(
                    a::connreq_attempts
                        .filter(a::device_id.eq(device_id))
                        .filter(a::id.lt(first_kept)),
                )
                .execute(c)?;
            }
            Ok(())
        })
    }

    /// The device's Inform with `6 CONNECTION REQUEST` arrived at `now`: the attempts made
    /// since `since` that are not confirmed yet are. Returns how many.
    pub fn confirm_attempts(&self, device_id: &str, since: i64, now: i64) -> Result<usize> {
        use connreq_attempts::dsl as a;
        with_conn!(self, |c| {
            Ok(diesel::update(
                a::connreq_attempts
                    .filter(a::device_id.eq(device_id))
                    .filter(a::at.ge(since))
                    .filter(a::confirmed_at.is_null())
                    .filter(a::outcome.eq("ok")),
            )
            .set(a::confirmed_at.eq(now))
            .execute(c)?)
        })
    }

    /// The device's connection-request attempts, newest first.
    pub fn attempts_of(&self, device_id: &str) -> Result<Vec<AttemptRow>> {
        use connreq_attempts::dsl as a;
        with_conn!(self, |c| {
            Ok(a::connreq_attempts
                .filter(a::device_id.eq(device_id))
                .order(a::id.desc())
                .limit(ATTEMPTS_KEPT)
                .select(AttemptRow::as_select())
                .load(c)?)
        })
    }
}
