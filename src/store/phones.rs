//! Phones that fetch configuration files: the phone rows (each with its `devices` row, so
//! lines and tags are those of any device), profiles, the fetch log and uploaded files.
//! Secrets (the URL token, the file password) are sealed here; the token is found by its
//! SHA-256.

use diesel::prelude::*;
use sha2::Digest;

use super::schema::{device_tags, devices};
use super::{Store, WriteTxn};
use crate::error::{Error, Result};
use crate::secrets::purpose;
use crate::with_conn;

diesel::table! {
    phone_profiles (name) {
        name -> Text,
        settings -> Text,
        revision -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    phones (mac) {
        mac -> Text,
        device_id -> Text,
        vendor -> Text,
        model -> Text,
        profile -> Nullable<Text>,
        settings -> Text,
        token -> Text,
        token_hash -> Text,
        file_password -> Nullable<Text>,
        revision -> BigInt,
        lock_network -> Nullable<Text>,
        contact -> Nullable<Text>,
        last_seen -> Nullable<BigInt>,
        last_source -> Nullable<Text>,
        last_user_agent -> Nullable<Text>,
        firmware -> Nullable<Text>,
        last_file -> Nullable<Text>,
        auto_registered -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
        digest_user -> Nullable<Text>,
        digest_password -> Nullable<Text>,
        activation_hash -> Nullable<Text>,
        activation_expires -> Nullable<BigInt>,
        activation_source -> Nullable<Text>,
    }
}

diesel::table! {
    phone_fetches (id) {
        id -> BigInt,
        mac -> Nullable<Text>,
        file -> Text,
        source -> Text,
        protocol -> Text,
        user_agent -> Text,
        status -> Integer,
        at -> BigInt,
        firmware -> Nullable<Text>,
        bytes -> Nullable<BigInt>,
    }
}

diesel::table! {
    phone_uploads (mac, name) {
        mac -> Text,
        name -> Text,
        data -> Binary,
        updated_at -> BigInt,
    }
}

diesel::table! {
    phone_file_stamps (mac, file) {
        mac -> Text,
        file -> Text,
        digest -> Text,
        stamp -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(phone_model_firmware, phones);

diesel::table! {
    phone_model_firmware (vendor, model) {
        vendor -> Text,
        model -> Text,
        file_id -> Text,
        version -> Text,
        updated_at -> BigInt,
    }
}

/// The firmware of a model: a file of the file store and the version it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFirmwareRow {
    pub vendor: String,
    pub model: String,
    pub file_id: String,
    pub version: String,
    pub updated_at: i64,
}

type ModelFirmwareTuple = (String, String, String, String, i64);

impl From<ModelFirmwareTuple> for ModelFirmwareRow {
    fn from(t: ModelFirmwareTuple) -> ModelFirmwareRow {
        ModelFirmwareRow {
            vendor: t.0,
            model: t.1,
            file_id: t.2,
            version: t.3,
            updated_at: t.4,
        }
    }
}

/// A phone as stored; `token`, `file_password` and `digest_password` are opened (clear) once read through
/// [`Store`].
#[derive(Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = phones)]
pub struct PhoneRow {
    pub mac: String,
    pub device_id: String,
    pub vendor: String,
    pub model: String,
    pub profile: Option<String>,
    pub settings: String,
    pub token: String,
    pub token_hash: String,
    pub file_password: Option<String>,
    pub revision: i64,
    pub lock_network: Option<String>,
    pub contact: Option<String>,
    pub last_seen: Option<i64>,
    pub last_source: Option<String>,
    pub last_user_agent: Option<String>,
    pub firmware: Option<String>,
    pub last_file: Option<String>,
    pub auto_registered: i32,
    pub created_at: i64,
    pub updated_at: i64,
    pub digest_user: Option<String>,
    /// Opened (clear) once read through [`Store`].
    pub digest_password: Option<String>,
    pub activation_hash: Option<String>,
    pub activation_expires: Option<i64>,
    pub activation_source: Option<String>,
}

impl std::fmt::Debug for PhoneRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneRow")
            .field("mac", &self.mac)
            .field("vendor", &self.vendor)
            .field("model", &self.model)
            .field("profile", &self.profile)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = phone_profiles)]
pub struct ProfileRow {
    pub name: String,
    pub settings: String,
    pub revision: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = phone_fetches)]
pub struct FetchRow {
    pub id: i64,
    pub mac: Option<String>,
    pub file: String,
    pub source: String,
    pub protocol: String,
    pub user_agent: String,
    pub status: i32,
    pub at: i64,
    pub firmware: Option<String>,
    /// Bytes delivered (null when nothing was served).
    pub bytes: Option<i64>,
}

/// A phone to create, or the new values of one (`None` = leave alone on update).
#[derive(Clone, Default)]
pub struct NewPhone {
    pub mac: String,
    pub vendor: String,
    pub model: String,
    pub profile: Option<Option<String>>,
    pub settings: Option<String>,
    /// The clear token (created by the caller).
    pub token: String,
    pub file_password: Option<Option<String>>,
    /// HTTP Digest credentials of the phone: (user, password) or none.
    pub digest: Option<Option<(String, String)>>,
    pub contact: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub auto_registered: bool,
}

impl std::fmt::Debug for NewPhone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewPhone")
            .field("mac", &self.mac)
            .field("vendor", &self.vendor)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// A fetch to record.
#[derive(Debug, Clone)]
pub struct NewFetch {
    pub mac: Option<String>,
    pub file: String,
    pub source: String,
    pub protocol: &'static str,
    pub user_agent: String,
    pub status: i32,
    /// The firmware version the User-Agent or query named.
    pub firmware: Option<String>,
    /// Served: update the phone's last-seen fields.
    pub served: bool,
    /// When it happened (UTC milliseconds).
    pub at: i64,
    /// A served fetch that locks the phone to this network (when none is set yet).
    pub lock: Option<String>,
    /// Bytes delivered (the file's size; for a TFTP transfer the bytes acknowledged).
    pub bytes: Option<i64>,
}

#[derive(Insertable)]
#[diesel(table_name = phone_fetches)]
struct FetchInsert<'a> {
    mac: Option<&'a str>,
    file: &'a str,
    source: &'a str,
    protocol: &'a str,
    user_agent: &'a str,
    status: i32,
    at: i64,
    firmware: Option<&'a str>,
    bytes: Option<i64>,
}

impl<'a> From<&'a NewFetch> for FetchInsert<'a> {
    fn from(f: &'a NewFetch) -> FetchInsert<'a> {
        FetchInsert {
            mac: f.mac.as_deref(),
            file: &f.file,
            source: &f.source,
            protocol: f.protocol,
            user_agent: &f.user_agent,
            status: f.status,
            at: f.at,
            firmware: f.firmware.as_deref(),
            bytes: f.bytes,
        }
    }
}

/// Rows per INSERT statement when recording fetches (9 parameters each, far below
/// SQLite's limit of bound parameters).
const FETCH_INSERT_CHUNK: usize = 500;

/// The SHA-256 of a token, as stored for lookups.
pub fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// The `devices` id of a phone: `phone:<mac>` (no CWMP device id contains `:`, so no
/// Inform can claim it).
pub fn device_id(mac: &str) -> String {
    format!("phone:{mac}")
}

const FETCH_LOG_KEEP: i64 = 200;

/// Fetches that named no known phone (unknown names, firmware over TFTP without a token)
/// kept, newest first.
const FETCH_LOG_KEEP_UNMATCHED: i64 = 10_000;

/// Delete the fetch-log entries matching `$cond` but the newest `$keep`.
macro_rules! keep_newest {
    ($c:expr, $cond:expr, $keep:expr) => {
        let cutoff = phone_fetches::table
            .filter($cond)
            .order(phone_fetches::id.desc())
            .offset($keep)
            .select(phone_fetches::id)
            .first::<i64>($c)
            .optional()?;
        if let Some(cut) = cutoff {
            diesel::delete(
                phone_fetches::table
                    .filter($cond)
                    .filter(phone_fetches::id.le(cut)),
            )
            .execute($c)?;
        }
    };
}

impl Store {
    fn open_phone(&self, mut r: PhoneRow) -> Result<PhoneRow> {
        let k = self.keyring();
        r.token = k.open(purpose::PHONE_TOKEN, &r.token)?;
        r.file_password = r
            .file_password
            .map(|p| k.open(purpose::PHONE_FILE_PASSWORD, &p))
            .transpose()?;
        r.digest_password = r
            .digest_password
            .map(|p| k.open(purpose::PHONE_DIGEST_PASSWORD, &p))
            .transpose()?;
        Ok(r)
    }

    /// Create a phone (and its device row), or update it when `update` and it exists.
    /// Returns the row and whether it was created.
    fn upsert_phone_unbumped(
        &self,
        p: &NewPhone,
        update: bool,
        now: i64,
    ) -> Result<(PhoneRow, bool)> {
        let k = self.keyring();
        let sealed_token = k.seal(purpose::PHONE_TOKEN, &p.token)?;
        let hash = token_hash(&p.token);
        let file_password: Option<Option<String>> = match &p.file_password {
            Some(Some(pw)) => Some(Some(k.seal(purpose::PHONE_FILE_PASSWORD, pw)?)),
            Some(None) => Some(None),
            None => None,
        };
        let digest: Option<Option<(String, String)>> = match &p.digest {
            Some(Some((user, pw))) => Some(Some((
                user.clone(),
                k.seal(purpose::PHONE_DIGEST_PASSWORD, pw)?,
            ))),
            Some(None) => Some(None),
            None => None,
        };
        let dev = device_id(&p.mac);
        let row = with_conn!(self, |c| {
            c.write_txn(|c| {
                use phones::dsl as ph;
                let existing = ph::phones
                    .filter(ph::mac.eq(&p.mac))
                    .select(PhoneRow::as_select())
                    .first(c)
                    .optional()?;
                let created = existing.is_none();
                match existing {
                    Some(_) if !update => {
                        return Err(Error::Conflict(format!(
                            "phone {} exists; PUT /api/v1/phones/{} changes it",
                            p.mac, p.mac
                        )))
                    }
                    Some(old) => {
                        diesel::update(ph::phones.filter(ph::mac.eq(&p.mac)))
                            .set((
                                ph::vendor.eq(&p.vendor),
                                ph::model.eq(&p.model),
                                ph::revision.eq(old.revision + 1),
                                ph::updated_at.eq(now),
                            ))
                            .execute(c)?;
                    }
                    None => {
                        diesel::insert_into(devices::table)
                            .values((
                                devices::id.eq(&dev),
                                devices::oui.eq(p.mac[..6].to_ascii_uppercase()),
                                devices::product_class.eq(p.model.to_ascii_uppercase()),
                                devices::serial_number.eq(p.mac.to_ascii_uppercase()),
                                devices::manufacturer.eq(&p.vendor),
                                devices::model_name.eq(&p.model),
                                devices::provisioned.eq(1),
                                devices::created_at.eq(now),
                                devices::updated_at.eq(now),
                            ))
                            .execute(c)?;
                        diesel::insert_into(ph::phones)
                            .values((
                                ph::mac.eq(&p.mac),
                                ph::device_id.eq(&dev),
                                ph::vendor.eq(&p.vendor),
                                ph::model.eq(&p.model),
                                ph::settings.eq("{}"),
                                ph::token.eq(&sealed_token),
                                ph::token_hash.eq(&hash),
                                ph::revision.eq(1i64),
                                ph::auto_registered.eq(i32::from(p.auto_registered)),
                                ph::created_at.eq(now),
                                ph::updated_at.eq(now),
                            ))
                            .execute(c)?;
                    }
                }
                let target = ph::phones.filter(ph::mac.eq(&p.mac));
                if let Some(profile) = &p.profile {
                    diesel::update(target)
                        .set(ph::profile.eq(profile))
                        .execute(c)?;
                }
                if let Some(s) = &p.settings {
                    diesel::update(target).set(ph::settings.eq(s)).execute(c)?;
                }
                if let Some(pw) = &file_password {
                    diesel::update(target)
                        .set(ph::file_password.eq(pw))
                        .execute(c)?;
                }
                if let Some(Some((user, _))) = &digest {
                    let taken = ph::phones
                        .filter(ph::digest_user.eq(user))
                        .filter(ph::mac.ne(&p.mac))
                        .count()
                        .get_result::<i64>(c)?;
                    if taken > 0 {
                        return Err(Error::invalid(
                            "digest_user",
                            format!(
                                "{user:?} is the Digest user of another phone; each phone needs its own"
                            ),
                        ));
                    }
                }
                if let Some(d) = &digest {
                    diesel::update(target)
                        .set((
                            ph::digest_user.eq(d.as_ref().map(|(u, _)| u.clone())),
                            ph::digest_password.eq(d.as_ref().map(|(_, p)| p.clone())),
                        ))
                        .execute(c)?;
                }
                if let Some(contact) = &p.contact {
                    diesel::update(target)
                        .set(ph::contact.eq(contact))
                        .execute(c)?;
                }
                diesel::update(devices::table.filter(devices::id.eq(&dev)))
                    .set((
                        devices::manufacturer.eq(&p.vendor),
                        devices::model_name.eq(&p.model),
                        devices::updated_at.eq(now),
                    ))
                    .execute(c)?;
                if let Some(tags) = &p.tags {
                    diesel::delete(device_tags::table.filter(device_tags::device_id.eq(&dev)))
                        .execute(c)?;
                    let rows: Vec<_> = tags
                        .iter()
                        .map(|t| (device_tags::device_id.eq(&dev), device_tags::tag.eq(t)))
                        .collect();
                    if !rows.is_empty() {
                        diesel::insert_into(device_tags::table)
                            .values(&rows)
                            .execute(c)?;
                    }
                }
                let row = target.select(PhoneRow::as_select()).first(c)?;
                Ok((row, created))
            })
        })?;
        Ok((self.open_phone(row.0)?, row.1))
    }

    /// A phone by MAC (12 lower-case hex digits).
    pub fn get_phone(&self, mac: &str) -> Result<Option<PhoneRow>> {
        let row = with_conn!(self, |c| {
            use phones::dsl as ph;
            Ok::<_, Error>(
                ph::phones
                    .filter(ph::mac.eq(mac))
                    .select(PhoneRow::as_select())
                    .first(c)
                    .optional()?,
            )
        })?;
        row.map(|r| self.open_phone(r)).transpose()
    }

    /// The phone whose URL token this is.
    pub fn phone_by_token(&self, token: &str) -> Result<Option<PhoneRow>> {
        let hash = token_hash(token);
        let row = with_conn!(self, |c| {
            use phones::dsl as ph;
            Ok::<_, Error>(
                ph::phones
                    .filter(ph::token_hash.eq(&hash))
                    .select(PhoneRow::as_select())
                    .first(c)
                    .optional()?,
            )
        })?;
        row.map(|r| self.open_phone(r)).transpose()
    }

    /// The phone whose HTTP Digest user this is.
    pub fn phone_by_digest_user(&self, user: &str) -> Result<Option<PhoneRow>> {
        let row = with_conn!(self, |c| {
            use phones::dsl as ph;
            Ok::<_, Error>(
                ph::phones
                    .filter(ph::digest_user.eq(user))
                    .select(PhoneRow::as_select())
                    .first(c)
                    .optional()?,
            )
        })?;
        row.map(|r| self.open_phone(r)).transpose()
    }

    /// The phone whose activation code this is (whatever its state).
    pub fn phone_by_activation_code(&self, code: &str) -> Result<Option<PhoneRow>> {
        let hash = token_hash(code);
        let row = with_conn!(self, |c| {
            use phones::dsl as ph;
            Ok::<_, Error>(
                ph::phones
                    .filter(ph::activation_hash.eq(&hash))
                    .select(PhoneRow::as_select())
                    .first(c)
                    .optional()?,
            )
        })?;
        row.map(|r| self.open_phone(r)).transpose()
    }

    /// Give a phone a new activation code (replacing an unused or used one), valid until
    /// `expires`. False when the phone does not exist.
    pub fn set_phone_activation(&self, mac: &str, code: &str, expires: i64) -> Result<bool> {
        let hash = token_hash(code);
        with_conn!(self, |c| {
            use phones::dsl as ph;
            Ok(diesel::update(ph::phones.filter(ph::mac.eq(mac)))
                .set((
                    ph::activation_hash.eq(Some(hash)),
                    ph::activation_expires.eq(Some(expires)),
                    ph::activation_source.eq(None::<String>),
                ))
                .execute(c)?
                == 1)
        })
    }

    /// Use a phone's activation code for the first time: bind it to `source` and let it work
    /// until `window_end`. Only one caller wins (the code must still be unused and valid at
    /// `now`); returns whether this one did.
    pub fn start_phone_activation(
        &self,
        mac: &str,
        hash: &str,
        source: &str,
        now: i64,
        window_end: i64,
    ) -> Result<bool> {
        with_conn!(self, |c| {
            use phones::dsl as ph;
            Ok(diesel::update(
                ph::phones
                    .filter(ph::mac.eq(mac))
                    .filter(ph::activation_hash.eq(hash))
                    .filter(ph::activation_source.is_null())
                    .filter(ph::activation_expires.gt(now)),
            )
            .set((
                ph::activation_source.eq(Some(source)),
                ph::activation_expires.eq(Some(window_end)),
            ))
            .execute(c)?
                == 1)
        })
    }

    /// Phones by MAC, after `cursor`.
    pub fn list_phones(&self, cursor: Option<&str>, limit: i64) -> Result<Vec<PhoneRow>> {
        let rows = with_conn!(self, |c| {
            use phones::dsl as ph;
            let mut q = ph::phones.select(PhoneRow::as_select()).into_boxed();
            if let Some(cur) = cursor {
                q = q.filter(ph::mac.gt(cur.to_string()));
            }
            Ok::<_, Error>(q.order(ph::mac.asc()).limit(limit).load(c)?)
        })?;
        rows.into_iter().map(|r| self.open_phone(r)).collect()
    }

    /// Phones whose MAC contains `mac_part`, or whose vendor is `word`, or whose model
    /// contains `word` (any of those given), after `cursor`, by MAC.
    pub fn search_phones(
        &self,
        mac_part: Option<&str>,
        word: Option<&str>,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PhoneRow>> {
        let like = |s: &str| {
            format!(
                "%{}%",
                s.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            )
        };
        let mac_like = mac_part.map(like);
        let word_like = word.map(like);
        let rows = with_conn!(self, |c| {
            use phones::dsl as ph;
            let mut q = ph::phones.select(PhoneRow::as_select()).into_boxed();
            if let Some(cur) = cursor {
                q = q.filter(ph::mac.gt(cur.to_string()));
            }
            match (&mac_like, word, &word_like) {
                (Some(m), Some(w), Some(wl)) => {
                    q = q.filter(
                        ph::mac
                            .like(m.clone())
                            .escape('\\')
                            .or(ph::vendor.eq(w.to_string()))
                            .or(ph::model.like(wl.clone()).escape('\\')),
                    );
                }
                (None, Some(w), Some(wl)) => {
                    q = q.filter(
                        ph::vendor
                            .eq(w.to_string())
                            .or(ph::model.like(wl.clone()).escape('\\')),
                    );
                }
                (Some(m), _, _) => q = q.filter(ph::mac.like(m.clone()).escape('\\')),
                _ => {}
            }
            Ok::<_, Error>(q.order(ph::mac.asc()).limit(limit).load(c)?)
        })?;
        rows.into_iter().map(|r| self.open_phone(r)).collect()
    }

    /// Delete a phone with its device row (lines, tags, uploads, fetch log go with it).
    fn delete_phone_unbumped(&self, mac: &str) -> Result<bool> {
        let dev = device_id(mac);
        with_conn!(self, |c| {
            c.write_txn(|c| {
                diesel::delete(phone_fetches::table.filter(phone_fetches::mac.eq(mac)))
                    .execute(c)?;
                diesel::delete(phone_file_stamps::table.filter(phone_file_stamps::mac.eq(mac)))
                    .execute(c)?;
                let n = diesel::delete(phones::table.filter(phones::mac.eq(mac))).execute(c)?;
                diesel::delete(devices::table.filter(devices::id.eq(&dev))).execute(c)?;
                Ok(n == 1)
            })
        })
    }

    /// Set a model's firmware; true when the model had none.
    fn put_model_firmware_unbumped(&self, r: &ModelFirmwareRow) -> Result<bool> {
        use phone_model_firmware::dsl as mf;
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let n = diesel::delete(
                    mf::phone_model_firmware
                        .filter(mf::vendor.eq(&r.vendor))
                        .filter(mf::model.eq(&r.model)),
                )
                .execute(c)?;
                diesel::insert_into(mf::phone_model_firmware)
                    .values((
                        mf::vendor.eq(&r.vendor),
                        mf::model.eq(&r.model),
                        mf::file_id.eq(&r.file_id),
                        mf::version.eq(&r.version),
                        mf::updated_at.eq(r.updated_at),
                    ))
                    .execute(c)?;
                Ok(n == 0)
            })
        })
    }

    pub fn model_firmware(&self, vendor: &str, model: &str) -> Result<Option<ModelFirmwareRow>> {
        use phone_model_firmware::dsl as mf;
        let row: Option<ModelFirmwareTuple> = with_conn!(self, |c| {
            Ok::<_, Error>(
                mf::phone_model_firmware
                    .filter(mf::vendor.eq(vendor))
                    .filter(mf::model.eq(model))
                    .select((
                        mf::vendor,
                        mf::model,
                        mf::file_id,
                        mf::version,
                        mf::updated_at,
                    ))
                    .first(c)
                    .optional()?,
            )
        })?;
        Ok(row.map(ModelFirmwareRow::from))
    }

    pub fn list_model_firmware(&self) -> Result<Vec<ModelFirmwareRow>> {
        use phone_model_firmware::dsl as mf;
        let rows: Vec<ModelFirmwareTuple> = with_conn!(self, |c| {
            Ok::<_, Error>(
                mf::phone_model_firmware
                    .order((mf::vendor.asc(), mf::model.asc()))
                    .select((
                        mf::vendor,
                        mf::model,
                        mf::file_id,
                        mf::version,
                        mf::updated_at,
                    ))
                    .load(c)?,
            )
        })?;
        Ok(rows.into_iter().map(ModelFirmwareRow::from).collect())
    }

    /// (vendor, model, number of phones) of every model some phone has.
    pub fn phone_model_counts(&self) -> Result<Vec<(String, String, i64)>> {
        with_conn!(self, |c| {
            Ok(phones::table
                .group_by((phones::vendor, phones::model))
                .select((phones::vendor, phones::model, diesel::dsl::count_star()))
                .order((phones::vendor.asc(), phones::model.asc()))
                .load(c)?)
        })
    }

    fn delete_model_firmware_unbumped(&self, vendor: &str, model: &str) -> Result<bool> {
        use phone_model_firmware::dsl as mf;
        with_conn!(self, |c| {
            Ok(diesel::delete(
                mf::phone_model_firmware
                    .filter(mf::vendor.eq(vendor))
                    .filter(mf::model.eq(model)),
            )
            .execute(c)?
                == 1)
        })
    }

    /// The stamp of a phone's file whose content (without the stamp) has SHA-256 `digest`:
    /// the stored one when the content is unchanged; otherwise `candidate` (when the content
    /// last changed) floored to its minute, but at least a minute after the stored stamp, so
    /// stamps of one file only ever grow. One write transaction: nodes agree.
    pub fn phone_file_stamp(
        &self,
        mac: &str,
        file: &str,
        digest: &str,
        candidate: i64,
    ) -> Result<i64> {
        use phone_file_stamps::dsl as st;
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let old: Option<(String, i64)> = st::phone_file_stamps
                    .filter(st::mac.eq(mac))
                    .filter(st::file.eq(file))
                    .select((st::digest, st::stamp))
                    .first(c)
                    .optional()?;
                let minute = |ms: i64| ms - ms.rem_euclid(60_000);
                let stamp = match &old {
                    Some((d, stamp)) if d == digest => return Ok(*stamp),
                    Some((_, stamp)) => minute(candidate).max(stamp.saturating_add(60_000)),
                    None => minute(candidate),
                };
                if old.is_some() {
                    diesel::update(
                        st::phone_file_stamps
                            .filter(st::mac.eq(mac))
                            .filter(st::file.eq(file)),
                    )
                    .set((st::digest.eq(digest), st::stamp.eq(stamp)))
                    .execute(c)?;
                } else {
                    diesel::insert_into(st::phone_file_stamps)
                        .values((
                            st::mac.eq(mac),
                            st::file.eq(file),
                            st::digest.eq(digest),
                            st::stamp.eq(stamp),
                        ))
                        .execute(c)?;
                }
                Ok(stamp)
            })
        })
    }

    /// What a fetch needs in one place: the device's work epoch (bumped by its lines) and
    /// the revision of the phone's profile, for the cache key.
    pub fn phone_epochs(&self, mac: &str, profile: Option<&str>) -> Result<(i64, i64)> {
        let dev = device_id(mac);
        with_conn!(self, |c| {
            // A model firmware change counts as a profile change.
            let fw: i64 = phone_model_firmware::table
                .inner_join(
                    phones::table.on(phones::vendor
                        .eq(phone_model_firmware::vendor)
                        .and(phones::model.eq(phone_model_firmware::model))),
                )
                .filter(phones::mac.eq(mac))
                .select(phone_model_firmware::updated_at)
                .first::<i64>(c)
                .optional()?
                .unwrap_or(0);
            let epoch = devices::table
                .filter(devices::id.eq(&dev))
                .select(devices::work_epoch)
                .first::<i64>(c)
                .optional()?
                .unwrap_or(0);
            let prof = match profile {
                Some(p) => phone_profiles::table
                    .filter(phone_profiles::name.eq(p))
                    .select(phone_profiles::revision)
                    .first::<i64>(c)
                    .optional()?
                    .unwrap_or(0),
                None => 0,
            };
            Ok((epoch, prof.wrapping_mul(1_000_003).wrapping_add(fw)))
        })
    }

    /// Record one fetch (see [`Store::record_phone_fetches`]).
    pub fn record_phone_fetch(&self, f: &NewFetch) -> Result<()> {
        self.record_phone_fetches(std::slice::from_ref(f))
            .map(|_| ())
    }

    /// Record fetches, oldest first, in one write transaction: every row goes to the fetch
    /// log; each phone's last-seen fields (and firmware) come from its newest served fetch
    /// of the batch, its lock network from the first that carries one (only when none is
    /// set yet); each phone's log keeps its newest entries only. Returns the rows written.
    fn record_phone_fetches_unbumped(&self, rows: &[NewFetch]) -> Result<usize> {
        if rows.is_empty() {
            return Ok(0);
        }
        let inserts: Vec<FetchInsert<'_>> = rows.iter().map(FetchInsert::from).collect();
        let mut macs: Vec<&str> = rows.iter().filter_map(|f| f.mac.as_deref()).collect();
        macs.sort_unstable();
        macs.dedup();
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let mut written = 0;
                for chunk in inserts.chunks(FETCH_INSERT_CHUNK) {
                    written += diesel::insert_into(phone_fetches::table)
                        .values(chunk)
                        .execute(c)?;
                }
                for mac in &macs {
                    use phones::dsl as ph;
                    let target = || ph::phones.filter(ph::mac.eq(*mac));
                    let served = || {
                        rows.iter()
                            .filter(|f| f.served && f.mac.as_deref() == Some(*mac))
                    };
                    if let Some(f) = served().next_back() {
                        diesel::update(target())
                            .set((
                                ph::last_seen.eq(f.at),
                                ph::last_source.eq(&f.source),
                                ph::last_user_agent.eq(&f.user_agent),
                                ph::last_file.eq(&f.file),
                            ))
                            .execute(c)?;
                    }
                    if let Some(fw) = served().rev().find_map(|f| f.firmware.as_deref()) {
                        diesel::update(target())
                            .set(ph::firmware.eq(fw))
                            .execute(c)?;
                    }
                    if let Some(net) = served().find_map(|f| f.lock.as_deref()) {
                        diesel::update(target().filter(ph::lock_network.is_null()))
                            .set(ph::lock_network.eq(net))
                            .execute(c)?;
                    }
                    // Keep the newest entries of this phone.
                    keep_newest!(c, phone_fetches::mac.eq(*mac), FETCH_LOG_KEEP);
                }
                if rows.iter().any(|f| f.mac.is_none()) {
                    keep_newest!(c, phone_fetches::mac.is_null(), FETCH_LOG_KEEP_UNMATCHED);
                }
                Ok(written)
            })
        })
    }

    /// Fetches from one source address (any phone or none), newest first.
    pub fn phone_fetches_from(&self, source: &str, limit: i64) -> Result<Vec<FetchRow>> {
        with_conn!(self, |c| {
            Ok(phone_fetches::table
                .filter(phone_fetches::source.eq(source))
                .order(phone_fetches::id.desc())
                .limit(limit)
                .select(FetchRow::as_select())
                .load(c)?)
        })
    }

    /// A phone's fetches, newest first.
    pub fn phone_fetches(&self, mac: &str, limit: i64) -> Result<Vec<FetchRow>> {
        with_conn!(self, |c| {
            Ok(phone_fetches::table
                .filter(phone_fetches::mac.eq(mac))
                .order(phone_fetches::id.desc())
                .limit(limit)
                .select(FetchRow::as_select())
                .load(c)?)
        })
    }

    /// Store a file the phone uploaded (replacing one of the same name).
    pub fn put_phone_upload(&self, mac: &str, name: &str, data: &[u8], now: i64) -> Result<()> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                diesel::delete(
                    phone_uploads::table
                        .filter(phone_uploads::mac.eq(mac))
                        .filter(phone_uploads::name.eq(name)),
                )
                .execute(c)?;
                diesel::insert_into(phone_uploads::table)
                    .values((
                        phone_uploads::mac.eq(mac),
                        phone_uploads::name.eq(name),
                        phone_uploads::data.eq(data),
                        phone_uploads::updated_at.eq(now),
                    ))
                    .execute(c)?;
                Ok(())
            })
        })
    }

    pub fn get_phone_upload(&self, mac: &str, name: &str) -> Result<Option<Vec<u8>>> {
        with_conn!(self, |c| {
            Ok(phone_uploads::table
                .filter(phone_uploads::mac.eq(mac))
                .filter(phone_uploads::name.eq(name))
                .select(phone_uploads::data)
                .first(c)
                .optional()?)
        })
    }

    /// Names and sizes of a phone's uploaded files.
    pub fn phone_uploads(&self, mac: &str) -> Result<Vec<(String, i64, i64)>> {
        let rows: Vec<(String, Vec<u8>, i64)> = with_conn!(self, |c| {
            Ok::<_, Error>(
                phone_uploads::table
                    .filter(phone_uploads::mac.eq(mac))
                    .order(phone_uploads::name.asc())
                    .select((
                        phone_uploads::name,
                        phone_uploads::data,
                        phone_uploads::updated_at,
                    ))
                    .load(c)?,
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|(n, d, at)| (n, d.len() as i64, at))
            .collect())
    }

    /// Create or replace a profile; returns it and whether it was created.
    fn put_phone_profile_unbumped(
        &self,
        name: &str,
        settings: &str,
        now: i64,
    ) -> Result<(ProfileRow, bool)> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                use phone_profiles::dsl as pp;
                let old = pp::phone_profiles
                    .filter(pp::name.eq(name))
                    .select(ProfileRow::as_select())
                    .first(c)
                    .optional()?;
                let created = old.is_none();
                match old {
                    Some(o) => {
                        diesel::update(pp::phone_profiles.filter(pp::name.eq(name)))
                            .set((
                                pp::settings.eq(settings),
                                pp::revision.eq(o.revision + 1),
                                pp::updated_at.eq(now),
                            ))
                            .execute(c)?;
                    }
                    None => {
                        diesel::insert_into(pp::phone_profiles)
                            .values((
                                pp::name.eq(name),
                                pp::settings.eq(settings),
                                pp::revision.eq(1i64),
                                pp::created_at.eq(now),
                                pp::updated_at.eq(now),
                            ))
                            .execute(c)?;
                    }
                }
                let row = pp::phone_profiles
                    .filter(pp::name.eq(name))
                    .select(ProfileRow::as_select())
                    .first(c)?;
                Ok((row, created))
            })
        })
    }

    pub fn get_phone_profile(&self, name: &str) -> Result<Option<ProfileRow>> {
        with_conn!(self, |c| {
            Ok(phone_profiles::table
                .filter(phone_profiles::name.eq(name))
                .select(ProfileRow::as_select())
                .first(c)
                .optional()?)
        })
    }

    pub fn list_phone_profiles(&self) -> Result<Vec<ProfileRow>> {
        with_conn!(self, |c| {
            Ok(phone_profiles::table
                .order(phone_profiles::name.asc())
                .select(ProfileRow::as_select())
                .load(c)?)
        })
    }

    /// Delete a profile; refused while phones use it.
    fn delete_phone_profile_unbumped(&self, name: &str) -> Result<bool> {
        with_conn!(self, |c| {
            c.write_txn(|c| {
                let used: i64 = phones::table
                    .filter(phones::profile.eq(name))
                    .count()
                    .get_result(c)?;
                if used > 0 {
                    return Err(Error::Conflict(format!(
                        "profile {name} is used by {used} phone(s); move them to another profile first"
                    )));
                }
                Ok(diesel::delete(phone_profiles::table.filter(phone_profiles::name.eq(name)))
                    .execute(c)?
                    == 1)
            })
        })
    }
}

/// The writers that change what phones are served: each bumps the phone generation
/// ([`Store::phone_generation`]) once it succeeded, so cached look-ups are read again.
impl Store {
    pub fn upsert_phone(&self, p: &NewPhone, update: bool, now: i64) -> Result<(PhoneRow, bool)> {
        self.bumped(self.upsert_phone_unbumped(p, update, now))
    }

    pub fn delete_phone(&self, mac: &str) -> Result<bool> {
        self.bumped(self.delete_phone_unbumped(mac))
    }

    pub fn put_model_firmware(&self, r: &ModelFirmwareRow) -> Result<bool> {
        self.bumped(self.put_model_firmware_unbumped(r))
    }

    pub fn delete_model_firmware(&self, vendor: &str, model: &str) -> Result<bool> {
        self.bumped(self.delete_model_firmware_unbumped(vendor, model))
    }

    pub fn put_phone_profile(
        &self,
        name: &str,
        settings: &str,
        now: i64,
    ) -> Result<(ProfileRow, bool)> {
        self.bumped(self.put_phone_profile_unbumped(name, settings, now))
    }

    pub fn delete_phone_profile(&self, name: &str) -> Result<bool> {
        self.bumped(self.delete_phone_profile_unbumped(name))
    }
}

impl Store {
    /// `record_phone_fetches_unbumped`, then the phone generation is bumped when a
    /// phone was locked to its network ([`Store::phone_generation`]).
    pub fn record_phone_fetches(&self, rows: &[NewFetch]) -> Result<usize> {
        let r = self.record_phone_fetches_unbumped(rows);
        if r.is_ok() && rows.iter().any(|f| f.lock.is_some()) {
            self.bump_phone_generation();
        }
        r
    }
}
