//! Devices: identity, last contact, credentials, tags and the cross-node session lock.
//!
//! The session lock lives in the device row (`session_owner`, `session_expires`), so taking
//! it, recording the Inform and loading the device is one `UPDATE … RETURNING` round trip.

use diesel::prelude::*;

use super::schema::{device_params, device_tags, devices};
use super::{Store, WriteTxn};
use crate::error::{Error, Result};
use crate::with_conn;

/// Computes the stored HA1 of (username, password).
pub type Ha1Fn<'a> = &'a dyn Fn(&str, &str) -> String;

/// A device row as stored.
#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = devices)]
pub struct DeviceRow {
    pub id: String,
    pub oui: String,
    pub product_class: String,
    pub serial_number: String,
    pub manufacturer: String,
    pub model_name: String,
    pub software_version: String,
    pub hardware_version: String,
    pub root_model: String,
    pub cwmp_version: String,
    pub last_inform: Option<i64>,
    pub last_boot: Option<i64>,
    pub last_bootstrap: Option<i64>,
    pub last_source_ip: String,
    pub last_retry_count: i32,
    pub connection_request_url: String,
    pub cr_username: Option<String>,
    pub cr_password: Option<String>,
    pub cwmp_username: Option<String>,
    pub cwmp_ha1: Option<String>,
    pub inform_params: Option<Vec<u8>>,
    pub discovered_at: Option<i64>,
    pub work_epoch: i64,
    pub work_seen_epoch: i64,
    pub session_owner: Option<String>,
    pub session_expires: Option<i64>,
    pub provisioned: i32,
    pub created_at: i64,
    pub updated_at: i64,
    /// Signature of the searchable values last written to `device_search`.
    pub search_sig: i64,
    /// Events at which the presets matching the device apply (`boot,periodic`, ...), as
    /// found at the device's last preset evaluation.
    pub preset_events: String,
    /// What sessions learnt since the whole tree was last written (`device_params`),
    /// encoded like the tree; readers lay it over the tree.
    pub params_delta: Option<Vec<u8>>,
}

impl DeviceRow {
    /// Whether tasks or other work were added since the last session that drained them.
    pub fn has_new_work(&self) -> bool {
        self.work_epoch != self.work_seen_epoch
    }
}

/// What an Inform tells us about a device.
#[derive(Debug, Clone, Default)]
pub struct InformUpdate {
    pub id: String,
    pub oui: String,
    pub product_class: String,
    pub serial_number: String,
    pub manufacturer: String,
    pub model_name: Option<String>,
    pub software_version: Option<String>,
    pub hardware_version: Option<String>,
    pub root_model: String,
    pub cwmp_version: String,
    pub source_ip: String,
    pub retry_count: i32,
    pub connection_request_url: Option<String>,
    pub inform_params: Vec<u8>,
    pub boot: bool,
    pub bootstrap: bool,
}

#[derive(Insertable)]
#[diesel(table_name = devices)]
struct NewDevice<'a> {
    id: &'a str,
    oui: &'a str,
    product_class: &'a str,
    serial_number: &'a str,
    manufacturer: &'a str,
    model_name: &'a str,
    software_version: &'a str,
    hardware_version: &'a str,
    root_model: &'a str,
    cwmp_version: &'a str,
    last_inform: Option<i64>,
    last_boot: Option<i64>,
    last_bootstrap: Option<i64>,
    last_source_ip: &'a str,
    last_retry_count: i32,
    connection_request_url: &'a str,
    inform_params: Option<&'a [u8]>,
    session_owner: Option<&'a str>,
    session_expires: Option<i64>,
    provisioned: i32,
    created_at: i64,
    updated_at: i64,
}

/// Identity columns learnt from the device's own parameters (`DeviceInfo.ModelName`, ...)
/// rather than from the Inform; `None` leaves a column as it is.
#[derive(Debug, Clone, Default, PartialEq, AsChangeset)]
#[diesel(table_name = devices)]
pub struct IdentityUpdate {
    pub manufacturer: Option<String>,
    pub model_name: Option<String>,
    pub software_version: Option<String>,
    pub hardware_version: Option<String>,
}

impl IdentityUpdate {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.manufacturer.is_none()
            && self.model_name.is_none()
            && self.software_version.is_none()
            && self.hardware_version.is_none()
    }
}

/// Outcome of [`Store::begin_session`].
#[derive(Debug)]
pub enum BeginSession {
    /// The lock is ours; the row reflects the Inform just recorded. `created` on first contact.
    Started {
        device: Box<DeviceRow>,
        created: bool,
    },
    /// Another session holds the device until `expires` (ms).
    Busy { owner: String, expires: i64 },
    /// The device is unknown and unknown devices are not admitted.
    Unknown,
    /// The CPE logged in with the default credentials but the device has its own.
    OwnCredentialsRequired,
}

/// Pre-provisioning data for a device that has not contacted us yet (or an update of it).
#[derive(Debug, Clone, Default)]
pub struct ProvisionDevice {
    pub id: String,
    pub oui: String,
    pub product_class: String,
    pub serial_number: String,
    /// `Some(Some(..))` sets, `Some(None)` clears, `None` leaves alone.
    pub cwmp_credentials: Option<Option<(String, String)>>,
    pub tags: Option<Vec<String>>,
}

impl Store {
    /// Record an Inform and take the device's session lock in one round trip.
    ///
    /// `owner` identifies the session; `takeover` names a stale owner we may replace (a
    /// session of this node whose connection is gone). A first contact inserts the device
    /// when `allow_create`.
    #[allow(clippy::too_many_arguments)]
    pub fn begin_session(
        &self,
        u: &InformUpdate,
        owner: &str,
        now: i64,
        lock_until: i64,
        allow_create: bool,
        takeover: Option<&str>,
        default_credentials: bool,
    ) -> Result<BeginSession> {
        use devices::dsl as d;
        let takeover = takeover.unwrap_or(owner);
        let record = RecordInform {
            u,
            owner,
            takeover,
            now,
            lock_until,
            own_credentials: !default_credentials,
        };
        with_conn!(self, |c| {
            if !u.bootstrap {
                if let Some(row) = TouchInform(record).get_result::<DeviceRow>(c).optional()? {
                    return Ok(BeginSession::Started {
                        device: Box::new(row),
                        created: false,
                    });
                }
            }
            // The lock may be released between the UPDATE and the fallback SELECT below (the
            // previous session ending right now): then try again.
            for _ in 0..3 {
                let updated = record.get_result::<DeviceRow>(c).optional()?;
                if let Some(mut row) = updated {
                    if u.bootstrap {
                        // BOOTSTRAP: what we knew of the tree (whole and delta) is stale;
                        // operator config and tasks stay.
                        diesel::delete(
                            device_params::table.filter(device_params::device_id.eq(&u.id)),
                        )
                        .execute(c)?;
                        diesel::update(devices::table.find(&u.id))
                            .set(devices::params_delta.eq(None::<Vec<u8>>))
                            .execute(c)?;
                        row.params_delta = None;
                    }
                    return Ok(BeginSession::Started {
                        device: Box::new(row),
                        created: false,
                    });
                }
                if allow_create {
                    let new = NewDevice {
                        id: &u.id,
                        oui: &u.oui,
                        product_class: &u.product_class,
                        serial_number: &u.serial_number,
                        manufacturer: &u.manufacturer,
                        model_name: u.model_name.as_deref().unwrap_or(""),
                        software_version: u.software_version.as_deref().unwrap_or(""),
                        hardware_version: u.hardware_version.as_deref().unwrap_or(""),
                        root_model: &u.root_model,
                        cwmp_version: &u.cwmp_version,
                        last_inform: Some(now),
                        last_boot: u.boot.then_some(now),
                        last_bootstrap: u.bootstrap.then_some(now),
                        last_source_ip: &u.source_ip,
                        last_retry_count: u.retry_count,
                        connection_request_url: u.connection_request_url.as_deref().unwrap_or(""),
                        inform_params: Some(&u.inform_params),
                        session_owner: Some(owner),
                        session_expires: Some(lock_until),
                        provisioned: 0,
                        created_at: now,
                        updated_at: now,
                    };
                    let inserted = diesel::insert_into(d::devices)
                        .values(&new)
                        .on_conflict_do_nothing()
                        .returning(DeviceRow::as_returning())
                        .get_result::<DeviceRow>(c)
                        .optional()?;
                    if let Some(row) = inserted {
                        return Ok(BeginSession::Started {
                            device: Box::new(row),
                            created: true,
                        });
                    }
                }
                let lock = d::devices
                    .filter(d::id.eq(&u.id))
                    .select((d::session_owner, d::session_expires, d::cwmp_username))
                    .first::<(Option<String>, Option<i64>, Option<String>)>(c)
                    .optional()?;
                return Ok(match lock {
                    Some((_, _, Some(_))) if default_credentials => {
                        BeginSession::OwnCredentialsRequired
                    }
                    Some((Some(owner), Some(expires), _)) if expires >= now => {
                        BeginSession::Busy { owner, expires }
                    }
                    Some(_) => continue,
                    None => BeginSession::Unknown,
                });
            }
            Ok(BeginSession::Busy {
                owner: String::new(),
                expires: now,
            })
        })
    }

    /// Extend the session lock of a long session.
    pub fn refresh_session_lock(&self, device_id: &str, owner: &str, until: i64) -> Result<bool> {
        use devices::dsl as d;
        with_conn!(self, |c| {
            let n = diesel::update(
                d::devices
                    .filter(d::id.eq(device_id))
                    .filter(d::session_owner.eq(owner)),
            )
            .set(d::session_expires.eq(until))
            .execute(c)?;
            Ok(n == 1)
        })
    }

    /// Release the session lock. `work_seen` records the work epoch the session drained, so
    /// the next periodic session knows there is nothing new to do without looking.
    pub fn end_session(&self, device_id: &str, owner: &str, work_seen: Option<i64>) -> Result<()> {
        let release = ReleaseLock {
            id: device_id,
            owner,
            work_seen,
        };
        with_conn!(self, |c| {
            release.execute(c)?;
            Ok(())
        })
    }

    /// Release every session lock held by sessions of `node` (lock owners are
    /// `<node>/<session>`), after that node restarted.
    pub fn release_session_locks(&self, node: &str) -> Result<usize> {
        use devices::dsl as d;
        let pattern = format!(
            "{}/%",
            node.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        with_conn!(self, |c| {
            Ok(
                diesel::update(d::devices.filter(d::session_owner.like(&pattern).escape('\\')))
                    .set((
                        d::session_owner.eq(None::<String>),
                        d::session_expires.eq(None::<i64>),
                    ))
                    .execute(c)?,
            )
        })
    }

    /// The device's work epoch (bumped whenever work is added), if the device exists.
    pub fn work_epoch(&self, device_id: &str) -> Result<Option<i64>> {
        use devices::dsl as d;
        with_conn!(self, |c| {
            Ok(d::devices
                .filter(d::id.eq(device_id))
                .select(d::work_epoch)
                .first::<i64>(c)
                .optional()?)
        })
    }

    /// Note that a device has new work (a task, a changed preset): the next session looks.
    pub fn bump_work_epoch(&self, device_id: &str) -> Result<()> {
        use devices::dsl as d;
        with_conn!(self, |c| {
            diesel::update(d::devices.filter(d::id.eq(device_id)))
                .set(d::work_epoch.eq(d::work_epoch + 1))
                .execute(c)?;
            Ok(())
        })
    }

    pub fn get_device(&self, id: &str) -> Result<Option<DeviceRow>> {
        use devices::dsl as d;
        with_conn!(self, |c| {
            Ok(d::devices
                .filter(d::id.eq(id))
                .select(DeviceRow::as_select())
                .first(c)
                .optional()?)
        })
    }

    /// Find the device whose own CWMP username this is.
    pub fn device_by_cwmp_username(&self, username: &str) -> Result<Option<DeviceRow>> {
        use devices::dsl as d;
        with_conn!(self, |c| {
            Ok(d::devices
                .filter(d::cwmp_username.eq(username))
                .select(DeviceRow::as_select())
                .first(c)
                .optional()?)
        })
    }

    /// Devices ordered by id, after `cursor`, at most `limit`.
    pub fn list_devices(&self, cursor: Option<&str>, limit: i64) -> Result<Vec<DeviceRow>> {
        use devices::dsl as d;
        with_conn!(self, |c| {
            let mut q = d::devices
                .select(DeviceRow::as_select())
                .order(d::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(cur) = cursor {
                q = q.filter(d::id.gt(cur.to_string()));
            }
            Ok(q.load(c)?)
        })
    }

    pub fn count_devices(&self) -> Result<i64> {
        with_conn!(self, |c| { Ok(devices::table.count().get_result(c)?) })
    }

    /// Delete a device and everything attached to it. Returns whether it existed.
    fn delete_device_unbumped(&self, id: &str) -> Result<bool> {
        use devices::dsl as d;
        with_conn!(self, |c| {
            Ok(diesel::delete(d::devices.filter(d::id.eq(id))).execute(c)? == 1)
        })
    }

    /// Create or update a device before (or after) first contact.
    pub fn provision_device(
        &self,
        p: &ProvisionDevice,
        realm_ha1: Option<Ha1Fn<'_>>,
        now: i64,
    ) -> Result<DeviceRow> {
        use devices::dsl as d;
        let creds: Option<Option<(String, String)>> = match (&p.cwmp_credentials, realm_ha1) {
            // The HA1 is password-equivalent: sealed at rest.
            (Some(Some((user, pass))), Some(ha1)) => Some(Some((
                user.clone(),
                self.keyring()
                    .seal(crate::secrets::purpose::DEVICE_HA1, &ha1(user, pass))?,
            ))),
            (Some(Some(_)), None) => {
                return Err(Error::internal(
                    "credentials given without a hashing function",
                ))
            }
            (Some(None), _) => Some(None),
            (None, _) => None,
        };
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let new = NewDevice {
                    id: &p.id,
                    oui: &p.oui,
                    product_class: &p.product_class,
                    serial_number: &p.serial_number,
                    manufacturer: "",
                    model_name: "",
                    software_version: "",
                    hardware_version: "",
                    root_model: "",
                    cwmp_version: "",
                    last_inform: None,
                    last_boot: None,
                    last_bootstrap: None,
                    last_source_ip: "",
                    last_retry_count: 0,
                    connection_request_url: "",
                    inform_params: None,
                    session_owner: None,
                    session_expires: None,
                    provisioned: 1,
                    created_at: now,
                    updated_at: now,
                };
                diesel::insert_into(d::devices)
                    .values(&new)
                    .on_conflict_do_nothing()
                    .execute(c)?;
                diesel::update(d::devices.filter(d::id.eq(&p.id)))
                    .set((d::provisioned.eq(1), d::updated_at.eq(now)))
                    .execute(c)?;
                match &creds {
                    Some(Some((user, ha1))) => {
                        diesel::update(d::devices.filter(d::id.eq(&p.id)))
                            .set((d::cwmp_username.eq(Some(user)), d::cwmp_ha1.eq(Some(ha1))))
                            .execute(c)?;
                    }
                    Some(None) => {
                        diesel::update(d::devices.filter(d::id.eq(&p.id)))
                            .set((
                                d::cwmp_username.eq(None::<String>),
                                d::cwmp_ha1.eq(None::<String>),
                            ))
                            .execute(c)?;
                    }
                    None => {}
                }
                if let Some(tags) = &p.tags {
                    diesel::delete(device_tags::table.filter(device_tags::device_id.eq(&p.id)))
                        .execute(c)?;
                    let rows: Vec<_> = tags
                        .iter()
                        .map(|t| (device_tags::device_id.eq(&p.id), device_tags::tag.eq(t)))
                        .collect();
                    if !rows.is_empty() {
                        diesel::insert_into(device_tags::table)
                            .values(&rows)
                            .execute(c)?;
                    }
                }
                Ok(d::devices
                    .filter(d::id.eq(&p.id))
                    .select(DeviceRow::as_select())
                    .first(c)?)
            })
        })
    }

    /// Store the connection-request credentials ferroacs gave the device.
    pub fn set_cr_credentials(
        &self,
        device_id: &str,
        username: &str,
        password: &str,
    ) -> Result<()> {
        let statement = SetCrCredentials {
            id: device_id,
            username,
            password,
        };
        with_conn!(self, |c| {
            statement.execute(c)?;
            Ok(())
        })
    }

    /// Add (`add`) or remove one tag on each of `ids`, in one transaction, bumping the work
    /// epoch of every device whose tags changed (a preset may select on tags). Returns, per
    /// id in the order given, `None` for a device that does not exist, else whether its tags
    /// changed.
    pub fn set_tag(&self, ids: &[String], tag: &str, add: bool) -> Result<Vec<Option<bool>>> {
        use device_tags::dsl as t;
        use devices::dsl as d;
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    let exists = d::devices
                        .filter(d::id.eq(id))
                        .select(d::id)
                        .first::<String>(c)
                        .optional()?
                        .is_some();
                    if !exists {
                        out.push(None);
                        continue;
                    }
                    let n = if add {
                        diesel::insert_into(t::device_tags)
                            .values((t::device_id.eq(id), t::tag.eq(tag)))
                            .on_conflict_do_nothing()
                            .execute(c)?
                    } else {
                        diesel::delete(
                            t::device_tags.filter(t::device_id.eq(id).and(t::tag.eq(tag))),
                        )
                        .execute(c)?
                    };
                    if n > 0 {
                        diesel::update(d::devices.filter(d::id.eq(id)))
                            .set(d::work_epoch.eq(d::work_epoch + 1))
                            .execute(c)?;
                    }
                    out.push(Some(n > 0));
                }
                Ok(out)
            })
        })
    }

    /// Tags of the given devices, as (device_id, tag) pairs ordered by device then tag.
    pub fn tags_of(&self, ids: &[String]) -> Result<Vec<(String, String)>> {
        use device_tags::dsl as t;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        with_conn!(self, |c| {
            Ok(t::device_tags
                .filter(t::device_id.eq_any(ids))
                .order((t::device_id.asc(), t::tag.asc()))
                .load::<(String, String)>(c)?)
        })
    }
}

// ---------------------------------------------------------------------------------------
// The two statements of every session, written as fixed SQL so that both backends keep them
// prepared per connection. diesel never caches the statements its UPDATE builder produces
// (their SQL may depend on the values), and parsing this UPDATE … RETURNING again for every
// Inform was the largest single cost of a periodic session on SQLite.
// ---------------------------------------------------------------------------------------

/// Columns of [`DeviceRow`], for `RETURNING` (keep in step with the struct: rows are read by
/// column name, and every session fails when one is missing).
const DEVICE_COLUMNS: &str = "id, oui, product_class, serial_number, manufacturer, model_name, \
     software_version, hardware_version, root_model, cwmp_version, last_inform, last_boot, \
     last_bootstrap, last_source_ip, last_retry_count, connection_request_url, cr_username, \
     cr_password, cwmp_username, cwmp_ha1, inform_params, discovered_at, work_epoch, \
     work_seen_epoch, session_owner, session_expires, provisioned, created_at, updated_at, \
     search_sig, preset_events, params_delta";

/// Record an Inform and take the session lock when it is free (or ours, or a stale owner's
/// we may replace). Optional Inform fields leave the stored value alone when absent.
#[derive(Clone, Copy)]
struct RecordInform<'a> {
    u: &'a InformUpdate,
    owner: &'a str,
    takeover: &'a str,
    now: i64,
    lock_until: i64,
    /// The CPE used its own credentials (false: the defaults, which only open devices
    /// without credentials of their own).
    own_credentials: bool,
}

/// The common case of [`RecordInform`]: not a BOOTSTRAP, and the identity the Inform
/// reports is the stored one. It writes no indexed column of `devices`: SQLite rewrites no
/// index entry of the row (every index naming a column of an UPDATE's SET list is
/// rewritten, changed or not: ≈ 11 → ≈ 4 WAL pages per session), and PostgreSQL updates the
/// row in place (HOT), adding no entry to its indexes. The only index entries an Inform
/// writes are `device_last_inform`'s, where the same statement copies `last_inform`
/// ([`push_copy_prefix`]). No row: the identity changed, the lock is held, or the credentials
/// do not open the device — the caller then runs [`RecordInform`], which tells these apart.
#[derive(Clone, Copy)]
struct TouchInform<'a>(RecordInform<'a>);

/// Release the session lock, recording the drained work epoch when given.
pub(super) struct ReleaseLock<'a> {
    pub(super) id: &'a str,
    pub(super) owner: &'a str,
    pub(super) work_seen: Option<i64>,
}

/// Store the connection-request credentials a device accepted (fixed SQL, as above: at the
/// first contact of every device).
struct SetCrCredentials<'a> {
    id: &'a str,
    username: &'a str,
    password: &'a str,
}

/// Static identities of the statements above, for the prepared-statement caches.
struct SetCrCredentialsId;
struct RecordInformId;
struct TouchInformId;
pub(super) struct ReleaseLockId;

impl diesel::query_builder::QueryId for RecordInform<'_> {
    type QueryId = RecordInformId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::QueryId for TouchInform<'_> {
    type QueryId = TouchInformId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::QueryId for ReleaseLock<'_> {
    type QueryId = ReleaseLockId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for RecordInform<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl diesel::query_builder::Query for TouchInform<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl<Conn> RunQueryDsl<Conn> for RecordInform<'_> {}
impl<Conn> RunQueryDsl<Conn> for TouchInform<'_> {}
impl<Conn> RunQueryDsl<Conn> for ReleaseLock<'_> {}
impl<Conn> RunQueryDsl<Conn> for SetCrCredentials<'_> {}

impl diesel::query_builder::QueryId for SetCrCredentials<'_> {
    type QueryId = SetCrCredentialsId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// The columns both forms of recording an Inform write: none is indexed (`last_inform`'s
/// order lives in `device_last_inform`, see [`push_copy_prefix`]).
fn push_inform_columns<'b, DB>(
    r: &'b RecordInform<'_>,
    out: &mut diesel::query_builder::AstPass<'_, 'b, DB>,
) -> QueryResult<()>
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<diesel::sql_types::Text>
        + diesel::sql_types::HasSqlType<diesel::sql_types::BigInt>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Bool>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Integer>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Binary>,
    String: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    Option<String>:
        diesel::serialize::ToSql<diesel::sql_types::Nullable<diesel::sql_types::Text>, DB>,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
    i32: diesel::serialize::ToSql<diesel::sql_types::Integer, DB>,
    bool: diesel::serialize::ToSql<diesel::sql_types::Bool, DB>,
    Vec<u8>: diesel::serialize::ToSql<diesel::sql_types::Binary, DB>,
{
    use diesel::sql_types::{BigInt, Binary, Bool, Integer, Nullable, Text};
    let u = r.u;
    out.push_sql("root_model = ");
    out.push_bind_param::<Text, _>(&u.root_model)?;
    out.push_sql(", cwmp_version = ");
    out.push_bind_param::<Text, _>(&u.cwmp_version)?;
    out.push_sql(", last_inform = ");
    out.push_bind_param::<BigInt, _>(&r.now)?;
    out.push_sql(", last_boot = CASE WHEN ");
    out.push_bind_param::<Bool, _>(&u.boot)?;
    out.push_sql(" THEN ");
    out.push_bind_param::<BigInt, _>(&r.now)?;
    out.push_sql(" ELSE last_boot END, last_source_ip = ");
    out.push_bind_param::<Text, _>(&u.source_ip)?;
    out.push_sql(", last_retry_count = ");
    out.push_bind_param::<Integer, _>(&u.retry_count)?;
    out.push_sql(", connection_request_url = COALESCE(");
    out.push_bind_param::<Nullable<Text>, _>(&u.connection_request_url)?;
    out.push_sql(", connection_request_url), inform_params = ");
    out.push_bind_param::<Binary, _>(&u.inform_params)?;
    out.push_sql(", session_owner = ");
    out.push_bind_param::<Text, _>(r.owner)?;
    out.push_sql(", session_expires = ");
    out.push_bind_param::<BigInt, _>(&r.lock_until)?;
    out.push_sql(", updated_at = ");
    out.push_bind_param::<BigInt, _>(&r.now)?;
    out.push_sql(" WHERE id = ");
    out.push_bind_param::<Text, _>(&u.id)?;
    Ok(())
}

/// The condition both forms put on the lock and the credentials, and what they return.
fn push_lock_condition<'b, DB>(
    r: &'b RecordInform<'_>,
    out: &mut diesel::query_builder::AstPass<'_, 'b, DB>,
) -> QueryResult<()>
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<diesel::sql_types::Text>
        + diesel::sql_types::HasSqlType<diesel::sql_types::BigInt>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Bool>,
    str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
    bool: diesel::serialize::ToSql<diesel::sql_types::Bool, DB>,
{
    use diesel::sql_types::{BigInt, Bool, Text};
    out.push_sql(" AND (session_expires IS NULL OR session_expires < ");
    out.push_bind_param::<BigInt, _>(&r.now)?;
    out.push_sql(" OR session_owner = ");
    out.push_bind_param::<Text, _>(r.owner)?;
    out.push_sql(" OR session_owner = ");
    out.push_bind_param::<Text, _>(r.takeover)?;
    out.push_sql(") AND (");
    out.push_bind_param::<Bool, _>(&r.own_credentials)?;
    out.push_sql(" OR cwmp_username IS NULL) RETURNING ");
    out.push_sql(DEVICE_COLUMNS);
    Ok(())
}

/// How the Inform's statements keep `device_last_inform` (the narrow copy of `last_inform`
/// that the last-inform order and filters read). PostgreSQL: in the statement itself, the
/// device row's UPDATE in a `WITH` whose second part updates the copy (a row trigger did the
/// same for ≈ 18 µs more of PostgreSQL's time per Inform). SQLite, which has no data-modifying
/// `WITH`: the `device_last_inform_update` trigger, compiled into the statement.
fn push_copy_prefix<DB: diesel::backend::Backend>(
    pg: bool,
    out: &mut diesel::query_builder::AstPass<'_, '_, DB>,
) {
    if pg {
        out.push_sql("WITH d AS (");
    }
}

/// The end of what [`push_copy_prefix`] began.
fn push_copy_suffix<DB: diesel::backend::Backend>(
    pg: bool,
    out: &mut diesel::query_builder::AstPass<'_, '_, DB>,
) {
    if pg {
        out.push_sql(
            "), copied AS (UPDATE device_last_inform SET last_inform = d.last_inform FROM d \
             WHERE device_last_inform.device_id = d.id) SELECT ",
        );
        out.push_sql(DEVICE_COLUMNS);
        out.push_sql(" FROM d");
    }
}

macro_rules! session_statements {
    ($db:ty, $pg:expr) => {
        impl diesel::query_builder::QueryFragment<$db> for RecordInform<'_> {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, $db>,
            ) -> QueryResult<()> {
                use diesel::sql_types::{BigInt, Bool, Nullable, Text};
                let u = self.u;
                push_copy_prefix($pg, &mut out);
                out.push_sql("UPDATE devices SET manufacturer = ");
                out.push_bind_param::<Text, _>(&u.manufacturer)?;
                out.push_sql(", model_name = COALESCE(");
                out.push_bind_param::<Nullable<Text>, _>(&u.model_name)?;
                out.push_sql(", model_name), software_version = COALESCE(");
                out.push_bind_param::<Nullable<Text>, _>(&u.software_version)?;
                out.push_sql(", software_version), hardware_version = COALESCE(");
                out.push_bind_param::<Nullable<Text>, _>(&u.hardware_version)?;
                out.push_sql(", hardware_version), last_bootstrap = CASE WHEN ");
                out.push_bind_param::<Bool, _>(&u.bootstrap)?;
                out.push_sql(" THEN ");
                out.push_bind_param::<BigInt, _>(&self.now)?;
                // BOOTSTRAP: what we knew of the tree is stale.
                out.push_sql(" ELSE last_bootstrap END, discovered_at = CASE WHEN ");
                out.push_bind_param::<Bool, _>(&u.bootstrap)?;
                out.push_sql(" THEN NULL ELSE discovered_at END, ");
                push_inform_columns(self, &mut out)?;
                push_lock_condition(self, &mut out)?;
                push_copy_suffix($pg, &mut out);
                Ok(())
            }
        }

        impl diesel::query_builder::QueryFragment<$db> for TouchInform<'_> {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, $db>,
            ) -> QueryResult<()> {
                use diesel::sql_types::{Nullable, Text};
                let r = &self.0;
                let u = r.u;
                push_copy_prefix($pg, &mut out);
                out.push_sql("UPDATE devices SET ");
                push_inform_columns(r, &mut out)?;
                out.push_sql(" AND manufacturer = ");
                out.push_bind_param::<Text, _>(&u.manufacturer)?;
                out.push_sql(" AND model_name = COALESCE(");
                out.push_bind_param::<Nullable<Text>, _>(&u.model_name)?;
                out.push_sql(", model_name) AND software_version = COALESCE(");
                out.push_bind_param::<Nullable<Text>, _>(&u.software_version)?;
                out.push_sql(", software_version) AND hardware_version = COALESCE(");
                out.push_bind_param::<Nullable<Text>, _>(&u.hardware_version)?;
                out.push_sql(", hardware_version)");
                push_lock_condition(r, &mut out)?;
                push_copy_suffix($pg, &mut out);
                Ok(())
            }
        }

        impl diesel::query_builder::QueryFragment<$db> for ReleaseLock<'_> {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, $db>,
            ) -> QueryResult<()> {
                use diesel::sql_types::{BigInt, Nullable, Text};
                out.push_sql(
                    "UPDATE devices SET session_owner = NULL, session_expires = NULL, \
                     work_seen_epoch = COALESCE(",
                );
                out.push_bind_param::<Nullable<BigInt>, _>(&self.work_seen)?;
                out.push_sql(", work_seen_epoch) WHERE id = ");
                out.push_bind_param::<Text, _>(self.id)?;
                out.push_sql(" AND session_owner = ");
                out.push_bind_param::<Text, _>(self.owner)?;
                Ok(())
            }
        }

        impl diesel::query_builder::QueryFragment<$db> for SetCrCredentials<'_> {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, $db>,
            ) -> QueryResult<()> {
                use diesel::sql_types::Text;
                out.push_sql("UPDATE devices SET cr_username = ");
                out.push_bind_param::<Text, _>(self.username)?;
                out.push_sql(", cr_password = ");
                out.push_bind_param::<Text, _>(self.password)?;
                out.push_sql(" WHERE id = ");
                out.push_bind_param::<Text, _>(self.id)?;
                Ok(())
            }
        }
    };
}

session_statements!(diesel::sqlite::Sqlite, false);
session_statements!(diesel::pg::Pg, true);

impl Store {
    /// `delete_device_unbumped`, then the phone generation is bumped
    /// ([`Store::phone_generation`]): what phones are served may have changed.
    pub fn delete_device(&self, id: &str) -> Result<bool> {
        self.bumped(self.delete_device_unbumped(id))
    }
}
