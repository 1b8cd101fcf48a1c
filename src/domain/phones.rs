//! Phones that fetch configuration files: the records (MAC, vendor, model, profile,
//! settings, the lines of their device row) and serving a requested file, whatever the
//! transport (HTTP, HTTPS, TFTP).
//!
//! **Serving** ([`fetch`]), in this order, each refusal recorded in the fetch log:
//! 1. a source over `phones.max_failed_fetches` failures this minute gets 429;
//! 2. the name is checked (`phones::files::parse`): a path or odd bytes 400, an unknown
//!    name, a CTL/ITL trust list or a legacy binary 404;
//! 3. access: a phone's own token finds the phone (a file naming another MAC is 404); the
//!    site token (or TFTP from an allowed network) finds it by the MAC in the name, and an
//!    unknown MAC is registered when `phones.unknown_phones = "accept"`, else 404;
//! 4. with `phones.lock_to_first_network`, a source outside the network of the phone's first
//!    fetch gets 403;
//! 5. the file is rendered from (phone, profile, model defaults, lines with passwords) or
//!    taken from the cache, keyed by the phone's revision, its device's work epoch (bumped
//!    by every line change) and its profile's revision; Grandstream files are encrypted when
//!    a password applies. The cache is memory only: files with passwords are never stored.
//!
//! The phone found by its token and the revisions keying its files are kept in memory too
//! ([`PhoneService`]): a cached fetch reads nothing from the database. A cached read is
//! used while the store's phone generation is unchanged (every write of this process to
//! phones, lines, profiles, model firmware or network locks bumps it, after committing)
//! and for at most a second, the bound for changes other nodes sharing the database make.
//! A phone not yet locked to its network (`phones.lock_to_first_network`) is always read
//! again, so its locking first fetch is told apart exactly.
//!
//! Failed fetches count against the source (step 1); passwords never reach a log: the
//! fetch log holds the file name, source, User-Agent and status only.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::auth::digest::{DigestResponse, NonceCounts, NonceIssuer};
use crate::config::{Config, IpNet, UnknownDevices};
use crate::domain::lines::LineView;
use crate::domain::phone_fetchlog::FetchLog;
use crate::error::{Error, Result};
use crate::phones::{self, FileRequest, Mac, PhoneConfig, Rendered, Settings, Vendor};
use crate::store::phones::{FetchRow, ModelFirmwareRow, NewFetch, NewPhone, PhoneRow, ProfileRow};
use crate::store::Store;

/// The device id of a phone (`phone:<mac>`): its lines are that device's lines.
pub use crate::store::phones::device_id;

/// The path prefix of provisioning URLs on the CWMP listener.
pub const PREFIX: &str = "/prov";

/// The API body of `POST /phones` and `PUT /phones/{mac}`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneInput {
    /// Required on POST (and in the path on PUT).
    #[serde(default)]
    pub mac: Option<String>,
    pub vendor: String,
    pub model: String,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub settings: Option<Settings>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Write-only: the password encrypting its files (Grandstream). Empty clears it.
    #[serde(default)]
    pub file_password: Option<String>,
    /// `host:port` where SIP NOTIFY check-sync goes (default: the source of its last fetch,
    /// port 5060). Empty clears it.
    #[serde(default)]
    pub contact: Option<String>,
    /// HTTP Digest user name of the phone (for `/prov/auth/…`); empty removes its Digest
    /// credentials. Given together with `digest_password`.
    #[serde(default)]
    pub digest_user: Option<String>,
    /// Write-only: the phone's HTTP Digest password (sealed at rest).
    #[serde(default)]
    pub digest_password: Option<String>,
}

impl std::fmt::Debug for PhoneInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneInput")
            .field("mac", &self.mac)
            .field("vendor", &self.vendor)
            .field("model", &self.model)
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// A phone as the API shows it (no token, no password).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhoneView {
    pub mac: String,
    pub device_id: String,
    pub vendor: String,
    pub model: String,
    pub profile: Option<String>,
    pub settings: Settings,
    pub file_password_set: bool,
    /// The phone's HTTP Digest user, when it has Digest credentials (never the password).
    pub digest_user: Option<String>,
    /// An activation code waits for its first use, or is in its activation window.
    pub activation_pending: bool,
    pub contact: Option<String>,
    pub lock_network: Option<String>,
    pub revision: i64,
    pub auto_registered: bool,
    pub last_seen: Option<i64>,
    pub last_source: Option<String>,
    pub last_user_agent: Option<String>,
    pub firmware: Option<String>,
    pub last_file: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl PhoneView {
    pub fn from_row(r: &PhoneRow) -> PhoneView {
        PhoneView {
            mac: r.mac.clone(),
            device_id: r.device_id.clone(),
            vendor: r.vendor.clone(),
            model: r.model.clone(),
            profile: r.profile.clone(),
            settings: serde_json::from_str(&r.settings).unwrap_or_default(),
            file_password_set: r.file_password.as_deref().is_some_and(|p| !p.is_empty()),
            digest_user: r.digest_user.clone(),
            activation_pending: r.activation_hash.is_some() && r.activation_expires.is_some(),
            contact: r.contact.clone(),
            lock_network: r.lock_network.clone(),
            revision: r.revision,
            auto_registered: r.auto_registered != 0,
            last_seen: r.last_seen,
            last_source: r.last_source.clone(),
            last_user_agent: r.last_user_agent.clone(),
            firmware: r.firmware.clone(),
            last_file: r.last_file.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A profile as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileView {
    pub name: String,
    pub settings: Settings,
    pub revision: i64,
    pub updated_at: i64,
}

impl ProfileView {
    pub fn from_row(r: &ProfileRow) -> ProfileView {
        ProfileView {
            name: r.name.clone(),
            settings: serde_json::from_str(&r.settings).unwrap_or_default(),
            revision: r.revision,
            updated_at: r.updated_at,
        }
    }
}

/// One fetch as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FetchView {
    pub at: i64,
    pub file: String,
    pub source: String,
    pub protocol: String,
    pub user_agent: String,
    pub status: i32,
    /// The firmware version the phone reported with this fetch.
    pub firmware: Option<String>,
    /// The phone it concerned (null: the request named no phone ferroacs knows).
    pub mac: Option<String>,
    /// Bytes delivered (the file's size; for a TFTP transfer the bytes the phone
    /// acknowledged); null when nothing was served.
    pub bytes: Option<i64>,
}

impl From<&FetchRow> for FetchView {
    fn from(r: &FetchRow) -> FetchView {
        FetchView {
            at: r.at,
            file: r.file.clone(),
            source: r.source.clone(),
            protocol: r.protocol.clone(),
            user_agent: r.user_agent.clone(),
            status: r.status,
            firmware: r.firmware.clone(),
            mac: r.mac.clone(),
            bytes: r.bytes,
        }
    }
}

/// Parse a MAC given by an operator or in a path: 400 naming the problem.
pub fn parse_mac(field: &str, s: &str) -> Result<Mac> {
    Mac::parse(s).map_err(|e| Error::invalid(field, e))
}

/// A fresh URL token: 128 random bits, hex.
pub fn new_token() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b[..]);
    hex::encode(b)
}

fn check_input(input: &PhoneInput) -> Result<(Vendor, String)> {
    let vendor = Vendor::parse(&input.vendor).ok_or_else(|| {
        Error::invalid(
            "vendor",
            format!(
                "{:?} is not one of {}",
                input.vendor,
                Vendor::ALL
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let model = input.model.trim().to_ascii_lowercase();
    phones::models::check_model(&model).map_err(|e| Error::invalid("model", e))?;
    if let Some(s) = &input.settings {
        s.validate(Some(vendor))
            .map_err(|(f, m)| Error::invalid(format!("settings.{f}"), m))?;
    }
    if let Some(p) = &input.profile {
        check_profile_name(p)?;
    }
    if let Some(c) = input.contact.as_deref().filter(|c| !c.is_empty()) {
        parse_contact(c)?;
    }
    if let Some(pw) = &input.file_password {
        if pw.len() > 64 || pw.chars().any(|c| c.is_control()) {
            return Err(Error::invalid(
                "file_password",
                "at most 64 printable characters",
            ));
        }
    }
    match (
        input.digest_user.as_deref(),
        input.digest_password.as_deref(),
    ) {
        (None, None) | (Some(""), _) => {}
        (Some(u), Some(pw)) => {
            if u.is_empty()
                || u.len() > 64
                || u.chars()
                    .any(|c| c.is_control() || c == '"' || c == ':' || c == '\\')
            {
                return Err(Error::invalid(
                    "digest_user",
                    "1 to 64 printable characters without \", : or \\",
                ));
            }
            if pw.len() < 8 || pw.len() > 64 || pw.chars().any(|c| c.is_control()) {
                return Err(Error::invalid(
                    "digest_password",
                    "8 to 64 printable characters",
                ));
            }
        }
        (Some(_), None) => {
            return Err(Error::invalid(
                "digest_password",
                "a Digest user needs its password (digest_password)",
            ))
        }
        (None, Some(_)) => {
            return Err(Error::invalid(
                "digest_user",
                "a Digest password needs its user (digest_user)",
            ))
        }
    }
    if let Some(tags) = &input.tags {
        for t in tags {
            if t.is_empty() || t.len() > 64 || t.chars().any(|c| c.is_control() || c == ',') {
                return Err(Error::invalid("tags", format!("{t:?} is not a tag")));
            }
        }
    }
    Ok((vendor, model))
}

pub fn check_profile_name(p: &str) -> Result<()> {
    if p.is_empty()
        || p.len() > 64
        || !p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(Error::invalid(
            "profile",
            format!("{p:?}: a profile name has 1 to 64 letters, digits, -, _ and ."),
        ));
    }
    Ok(())
}

/// `host:port` or `host` (port 5060) of a phone's SIP contact.
pub fn parse_contact(c: &str) -> Result<(String, u16)> {
    let bad = || {
        Error::invalid(
            "contact",
            format!("{c:?} is not host:port (e.g. 192.0.2.10:5060 or [2001:db8::10]:5060)"),
        )
    };
    if let Ok(sa) = c.parse::<std::net::SocketAddr>() {
        return Ok((sa.ip().to_string(), sa.port()));
    }
    if let Ok(ip) = c.parse::<IpAddr>() {
        return Ok((ip.to_string(), 5060));
    }
    let (host, port) = match c.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (c, 5060),
    };
    if host.is_empty()
        || host.len() > 253
        || !host
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-'))
    {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Create (`create_only`) or create/replace a phone. Returns it and whether it was created.
pub async fn save(
    store: &Store,
    mac: Mac,
    input: PhoneInput,
    create_only: bool,
    auto_registered: bool,
    now: i64,
) -> Result<(PhoneView, bool)> {
    let (vendor, model) = check_input(&input)?;
    let new = NewPhone {
        mac: mac.lower(),
        vendor: vendor.as_str().to_string(),
        model,
        profile: input.profile.clone().map(Some),
        settings: input
            .settings
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?,
        token: new_token(),
        file_password: input
            .file_password
            .clone()
            .map(|p| Some(p).filter(|p| !p.is_empty())),
        contact: input
            .contact
            .clone()
            .map(|c| Some(c).filter(|c| !c.is_empty())),
        digest: match (&input.digest_user, &input.digest_password) {
            (Some(u), _) if u.is_empty() => Some(None),
            (Some(u), Some(p)) => Some(Some((u.clone(), p.clone()))),
            _ => None,
        },
        tags: input.tags.clone(),
        auto_registered,
    };
    let profile = input.profile.clone();
    let (row, created) = store
        .run(move |s| {
            if let Some(p) = &profile {
                if s.get_phone_profile(p)?.is_none() {
                    return Err(Error::invalid(
                        "profile",
                        format!("no profile {p}; create it with PUT /api/v1/phone_profiles/{p}"),
                    ));
                }
            }
            s.upsert_phone(&new, !create_only, now)
        })
        .await?;
    Ok((PhoneView::from_row(&row), created))
}

pub async fn get(store: &Store, mac: Mac) -> Result<PhoneView> {
    let m = mac.lower();
    store
        .run(move |s| s.get_phone(&m))
        .await?
        .map(|r| PhoneView::from_row(&r))
        .ok_or_else(|| Error::not_found(format!("phone {mac}")))
}

pub async fn list(store: &Store, cursor: Option<String>, limit: i64) -> Result<Vec<PhoneView>> {
    let rows = store
        .run(move |s| s.list_phones(cursor.as_deref(), limit))
        .await?;
    Ok(rows.iter().map(PhoneView::from_row).collect())
}

/// Phones matching what an operator typed: part of a MAC in any spelling (separators
/// dropped), a vendor, or part of a model; everything when `q` is empty. By MAC, after
/// `cursor`.
pub async fn search(
    store: &Store,
    q: &str,
    cursor: Option<String>,
    limit: i64,
) -> Result<Vec<PhoneView>> {
    let q = q.trim().to_ascii_lowercase();
    if q.len() > 64 {
        return Err(Error::invalid("q", "at most 64 characters"));
    }
    let hex: String = q
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    let mac_part = (!hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex);
    let word = (!q.is_empty()).then_some(q);
    let cursor = match cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(parse_mac("cursor", c)?.lower()),
    };
    let rows = store
        .run(move |s| {
            s.search_phones(
                mac_part.as_deref(),
                word.as_deref(),
                cursor.as_deref(),
                limit,
            )
        })
        .await?;
    Ok(rows.iter().map(PhoneView::from_row).collect())
}

/// A phone's tags (those of its device row), sorted.
pub async fn tags(store: &Store, mac: Mac) -> Result<Vec<String>> {
    let dev = device_id(&mac.lower());
    let rows = store.run(move |s| s.tags_of(&[dev])).await?;
    Ok(rows.into_iter().map(|(_, t)| t).collect())
}

pub async fn delete(store: &Store, mac: Mac) -> Result<()> {
    let m = mac.lower();
    if store.run(move |s| s.delete_phone(&m)).await? {
        Ok(())
    } else {
        Err(Error::not_found(format!("phone {mac}")))
    }
}

pub async fn fetches(store: &Store, mac: Mac, limit: i64) -> Result<Vec<FetchView>> {
    let m = mac.lower();
    let rows = store
        .run(move |s| {
            if s.get_phone(&m)?.is_none() {
                return Err(Error::not_found(format!("phone {m}")));
            }
            s.phone_fetches(&m, limit)
        })
        .await?;
    Ok(rows.iter().map(FetchView::from).collect())
}

/// The fetch log of one source address, newest first: every phone's fetches from it and
/// those that named no phone (unknown names, firmware over TFTP without a token).
pub async fn fetches_from(store: &Store, source: &str, limit: i64) -> Result<Vec<FetchView>> {
    let ip: IpAddr = source
        .trim()
        .parse()
        .map_err(|_| Error::invalid("source", format!("{source:?} is not an IP address")))?;
    let src = ip.to_string();
    let rows = store
        .run(move |s| s.phone_fetches_from(&src, limit))
        .await?;
    Ok(rows.iter().map(FetchView::from).collect())
}

/// The base URL phones reach the CWMP listener at: `phones.public_url`, else
/// `files.public_url`, else the listener's own address.
pub fn public_base(cfg: &Config, svc: &PhoneService) -> String {
    if let Some(u) = cfg
        .phones
        .public_url
        .as_ref()
        .or(cfg.files.public_url.as_ref())
    {
        return u.trim_end_matches('/').to_string();
    }
    let scheme = if cfg.cwmp.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    match svc.cwmp_addr {
        Some(a) => format!("{scheme}://{a}"),
        None => format!("{scheme}://{}", cfg.cwmp.listen),
    }
}

/// What to give a phone: the provisioning URL (with its secret token) and, per vendor, the
/// DHCP options and the file it asks for first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhoneUrls {
    pub mac: String,
    pub vendor: String,
    /// The directory URL for DHCP option 66/160 or the phone's provisioning server field.
    pub url: String,
    /// The first file the phone asks for.
    pub first_file: String,
    /// DHCP settings for this vendor.
    pub dhcp: Vec<String>,
    pub tftp: Option<String>,
    /// The URL without a secret, for phones set up with their HTTP Digest credentials.
    pub digest_url: Option<String>,
    /// The URL without a secret for phones presenting their factory client certificate
    /// (when `phones.client_ca` is set).
    pub cert_url: Option<String>,
}

pub async fn urls(store: &Store, cfg: &Config, svc: &PhoneService, mac: Mac) -> Result<PhoneUrls> {
    let m = mac.lower();
    let row = store
        .run(move |s| s.get_phone(&m))
        .await?
        .ok_or_else(|| Error::not_found(format!("phone {mac}")))?;
    let vendor = Vendor::parse(&row.vendor).unwrap_or(Vendor::Polycom);
    let url = format!("{}{PREFIX}/{}", public_base(cfg, svc), row.token);
    let first_file = match vendor {
        Vendor::Polycom => format!("{}.cfg", mac.upper()),
        Vendor::Yealink => format!("{}.boot", mac.lower()),
        Vendor::Grandstream => format!("cfg{}.xml", mac.lower()),
        Vendor::Cisco => format!("SEP{}.cnf.xml", mac.upper()),
        Vendor::Snom => format!("snom{}-{}.htm", row.model.to_ascii_uppercase(), mac.upper()),
        Vendor::Gigaset => format!("{}.xml", mac.upper()),
    };
    let tftp = cfg.tftp.listen.clone();
    let dhcp = match vendor {
        Vendor::Polycom | Vendor::Yealink => vec![
            format!("option 66 (tftp-server-name) = \"{url}\""),
            format!("or option 160 = \"{url}\""),
        ],
        Vendor::Grandstream => vec![
            format!("option 66 (tftp-server-name) = \"{url}\""),
            "or P237 (Config Server Path) on the phone".into(),
        ],
        Vendor::Cisco => vec![format!(
            "option 150 (TFTP server address) = the address of tftp.listen ({})",
            tftp.as_deref().unwrap_or("TFTP is off: set tftp.listen")
        )],
        Vendor::Snom => vec![format!(
            "option 66 = \"{url}/\" (the phone appends {first_file})"
        )],
        Vendor::Gigaset => vec![
            format!("option 114 (url) = \"{url}/%MACD.xml\" (the base puts its MAC for %MACD: {first_file})"),
            format!("or the base's provisioning server field: {url}/%MACD.xml"),
        ],
    };
    Ok(PhoneUrls {
        mac: mac.lower(),
        vendor: vendor.as_str().into(),
        url,
        first_file,
        dhcp,
        tftp,
        digest_url: row
            .digest_user
            .is_some()
            .then(|| format!("{}{PREFIX}/{DIGEST_SEGMENT}", public_base(cfg, svc))),
        cert_url: (!cfg.phones.client_ca.is_empty())
            .then(|| format!("{}{PREFIX}/{CERT_SEGMENT}", public_base(cfg, svc))),
    })
}

/// Create or replace a profile.
pub async fn put_profile(
    store: &Store,
    name: &str,
    settings: Settings,
    now: i64,
) -> Result<(ProfileView, bool)> {
    check_profile_name(name)?;
    settings
        .validate(None)
        .map_err(|(f, m)| Error::invalid(format!("settings.{f}"), m))?;
    let text = serde_json::to_string(&settings)?;
    let n = name.to_string();
    let (row, created) = store
        .run(move |s| s.put_phone_profile(&n, &text, now))
        .await?;
    Ok((ProfileView::from_row(&row), created))
}

pub async fn list_profiles(store: &Store) -> Result<Vec<ProfileView>> {
    let rows = store.run(|s| s.list_phone_profiles()).await?;
    Ok(rows.iter().map(ProfileView::from_row).collect())
}

pub async fn delete_profile(store: &Store, name: &str) -> Result<()> {
    let n = name.to_string();
    if store.run(move |s| s.delete_phone_profile(&n)).await? {
        Ok(())
    } else {
        Err(Error::not_found(format!("profile {name}")))
    }
}

/// The API body of `PUT /phone_models/{vendor}/{model}/firmware`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFirmwareInput {
    /// A file of the file store (`POST /api/v1/files`).
    pub file_id: String,
    /// Default: the file's own version.
    #[serde(default)]
    pub version: Option<String>,
}

/// A model's firmware as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelFirmwareView {
    pub vendor: String,
    pub model: String,
    pub file_id: String,
    /// The file's name in the file store (None when it was deleted since).
    pub file_name: Option<String>,
    pub version: String,
    pub updated_at: i64,
}

fn vendor_model(vendor: &str, model: &str) -> Result<(Vendor, String)> {
    let v = Vendor::parse(vendor).ok_or_else(|| {
        Error::invalid(
            "vendor",
            format!(
                "{vendor:?} is not one of {}",
                Vendor::ALL
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let model = model.trim().to_ascii_lowercase();
    phones::models::check_model(&model).map_err(|e| Error::invalid("model", e))?;
    Ok((v, model))
}

/// Give every phone of a model a firmware file of the file store (its profile and its own
/// settings still override). Returns the view and whether the model had none.
pub async fn put_model_firmware(
    store: &Store,
    vendor: &str,
    model: &str,
    input: ModelFirmwareInput,
    now: i64,
) -> Result<(ModelFirmwareView, bool)> {
    let (vendor, model) = vendor_model(vendor, model)?;
    let id = input.file_id.trim().to_string();
    if id.is_empty() || id.len() > 128 {
        return Err(Error::invalid(
            "file_id",
            "give the id of an uploaded file (POST /api/v1/files)",
        ));
    }
    let id2 = id.clone();
    let file = store.run(move |s| s.get_file(&id2)).await?.ok_or_else(|| {
        Error::invalid(
            "file_id",
            format!("no file {id}; upload it first (POST /api/v1/files)"),
        )
    })?;
    let version = input
        .version
        .clone()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| file.version.clone());
    if version.is_empty() {
        return Err(Error::invalid(
            "version",
            "the file has no version: give one (e.g. \"42.250.00\")",
        ));
    }
    if version.len() > 64 || version.chars().any(|c| c.is_control()) {
        return Err(Error::invalid("version", "at most 64 printable characters"));
    }
    let row = ModelFirmwareRow {
        vendor: vendor.as_str().to_string(),
        model,
        file_id: file.id.clone(),
        version,
        updated_at: now,
    };
    let r2 = row.clone();
    let created = store.run(move |s| s.put_model_firmware(&r2)).await?;
    Ok((
        ModelFirmwareView {
            vendor: row.vendor,
            model: row.model,
            file_id: row.file_id,
            file_name: Some(file.name),
            version: row.version,
            updated_at: row.updated_at,
        },
        created,
    ))
}

pub async fn list_model_firmware(store: &Store) -> Result<Vec<ModelFirmwareView>> {
    store
        .run(|s| {
            let rows = s.list_model_firmware()?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let file_name = s.get_file(&r.file_id)?.map(|f| f.name);
                out.push(ModelFirmwareView {
                    vendor: r.vendor,
                    model: r.model,
                    file_id: r.file_id,
                    file_name,
                    version: r.version,
                    updated_at: r.updated_at,
                });
            }
            Ok(out)
        })
        .await
}

pub async fn delete_model_firmware(store: &Store, vendor: &str, model: &str) -> Result<()> {
    let (vendor, model) = vendor_model(vendor, model)?;
    let (v, m) = (vendor.as_str().to_string(), model.clone());
    if store.run(move |s| s.delete_model_firmware(&v, &m)).await? {
        Ok(())
    } else {
        Err(Error::not_found(format!("firmware of {vendor} {model}")))
    }
}

/// A model some phone has, or that has firmware, with its firmware (console's model page).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelOverview {
    pub vendor: String,
    pub model: String,
    /// Phones of this model.
    pub phones: i64,
    pub firmware: Option<ModelFirmwareView>,
}

/// Every model a phone has or firmware was given to, in vendor and model order.
pub async fn model_overview(store: &Store) -> Result<Vec<ModelOverview>> {
    let firmware = list_model_firmware(store).await?;
    let counts = store.run(|s| s.phone_model_counts()).await?;
    let mut out: std::collections::BTreeMap<(String, String), ModelOverview> = counts
        .into_iter()
        .map(|(vendor, model, phones)| {
            (
                (vendor.clone(), model.clone()),
                ModelOverview {
                    vendor,
                    model,
                    phones,
                    firmware: None,
                },
            )
        })
        .collect();
    for f in firmware {
        let (vendor, model) = (f.vendor.clone(), f.model.clone());
        out.entry((vendor.clone(), model.clone()))
            .or_insert_with(|| ModelOverview {
                vendor,
                model,
                phones: 0,
                firmware: None,
            })
            .firmware = Some(f);
    }
    Ok(out.into_values().collect())
}

/// The firmware a phone is given, and where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedFirmware {
    /// `phone` (its own settings), `profile` (its profile's), `model` (the model's firmware
    /// of the file store), `defaults` (the model's built-in defaults) or `none`.
    pub source: String,
    /// The file: a file-store name (for `model`), else the `firmware_file` setting.
    pub file: Option<String>,
    /// The file-store id (for `model`).
    pub file_id: Option<String>,
    pub version: Option<String>,
}

/// Which firmware a phone's files name: its own `firmware_file` setting, else its
/// profile's, else its model's firmware (when the file still exists), else the model's
/// defaults. The version comes with the file (a profile naming a file but no version
/// still gets the model's version, as the renderers do).
pub async fn applied_firmware(store: &Store, phone: &PhoneView) -> Result<AppliedFirmware> {
    let vendor = Vendor::parse(&phone.vendor).ok_or_else(|| {
        Error::internal(format!("phone {} has vendor {:?}", phone.mac, phone.vendor))
    })?;
    let (v, m, prof) = (
        phone.vendor.clone(),
        phone.model.clone(),
        phone.profile.clone(),
    );
    let (profile, model_fw) = store
        .run(move |s| {
            let profile = match prof {
                Some(p) => s.get_phone_profile(&p)?,
                None => None,
            };
            let fw = match s.model_firmware(&v, &m)? {
                Some(f) => s.get_file(&f.file_id)?.map(|file| (f, file.name)),
                None => None,
            };
            Ok((profile, fw))
        })
        .await?;
    let profile: Settings = profile
        .and_then(|p| serde_json::from_str(&p.settings).ok())
        .unwrap_or_default();
    let defaults = phones::models::defaults(vendor, &phone.model);
    let model_version = model_fw
        .as_ref()
        .map(|(f, _)| f.version.clone())
        .or_else(|| defaults.firmware_version.clone());
    let version = phone
        .settings
        .firmware_version
        .clone()
        .or_else(|| profile.firmware_version.clone())
        .or(model_version);
    let (source, file, file_id) = if let Some(f) = &phone.settings.firmware_file {
        ("phone", Some(f.clone()), None)
    } else if let Some(f) = &profile.firmware_file {
        ("profile", Some(f.clone()), None)
    } else if let Some((f, name)) = &model_fw {
        ("model", Some(name.clone()), Some(f.file_id.clone()))
    } else if let Some(f) = &defaults.firmware_file {
        ("defaults", Some(f.clone()), None)
    } else {
        ("none", None, None)
    };
    Ok(AppliedFirmware {
        source: source.into(),
        file,
        file_id,
        version,
    })
}

/// One rejected CSV row of a phone import.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhoneRowError {
    pub row: usize,
    pub mac: Option<String>,
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhoneImportReport {
    pub imported: usize,
    pub rejected: usize,
    pub errors: Vec<PhoneRowError>,
}

/// Import phones from CSV: header `mac,vendor,model[,profile][,tags]` (tags separated by
/// `;`). Existing phones are updated. Bad rows are reported and skipped whole.
pub async fn import_csv(
    store: &Store,
    text: &str,
    dry_run: bool,
    now: i64,
) -> Result<PhoneImportReport> {
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return Err(Error::invalid(
            "csv",
            "the file is empty; the first line is the header mac,vendor,model[,profile][,tags]",
        ));
    };
    let cols: Vec<String> = header
        .split(',')
        .map(|c| c.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    for want in ["mac", "vendor", "model"] {
        if !cols.iter().any(|c| c == want) {
            return Err(Error::invalid(
                "csv",
                format!("the header lacks column {want}; it is mac,vendor,model[,profile][,tags]"),
            ));
        }
    }
    if let Some(c) = cols
        .iter()
        .find(|c| !matches!(c.as_str(), "mac" | "vendor" | "model" | "profile" | "tags"))
    {
        return Err(Error::invalid(
            "csv",
            format!("unknown column {c}; the columns are mac, vendor, model, profile, tags"),
        ));
    }
    let mut report = PhoneImportReport {
        imported: 0,
        rejected: 0,
        errors: Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    for (i, line) in lines {
        let row = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let vals: Vec<&str> = line.split(',').map(str::trim).collect();
        let get = |name: &str| {
            cols.iter()
                .position(|c| c == name)
                .and_then(|p| vals.get(p).copied())
                .filter(|v| !v.is_empty())
        };
        let mut fail = |mac: Option<String>, field: &str, message: String| {
            report.rejected += 1;
            report.errors.push(PhoneRowError {
                row,
                mac,
                field: field.into(),
                message,
            });
        };
        if vals.len() != cols.len() {
            fail(
                None,
                "row",
                format!("{} values for {} columns", vals.len(), cols.len()),
            );
            continue;
        }
        let mac = match Mac::parse(get("mac").unwrap_or("")) {
            Ok(m) => m,
            Err(e) => {
                fail(None, "mac", e);
                continue;
            }
        };
        if !seen.insert(mac) {
            fail(
                Some(mac.lower()),
                "mac",
                "the same phone twice in one file".into(),
            );
            continue;
        }
        let input = PhoneInput {
            mac: None,
            vendor: get("vendor").unwrap_or("").to_string(),
            model: get("model").unwrap_or("").to_string(),
            profile: get("profile").map(str::to_string),
            settings: None,
            tags: get("tags").map(|t| {
                t.split(';')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect()
            }),
            file_password: None,
            contact: None,
            digest_user: None,
            digest_password: None,
        };
        if let Err(e) = check_input(&input) {
            let (field, message) = match &e {
                Error::Invalid { field, message } => (field.clone(), message.clone()),
                other => ("row".into(), other.to_string()),
            };
            fail(Some(mac.lower()), &field, message);
            continue;
        }
        if dry_run {
            report.imported += 1;
            continue;
        }
        match save(store, mac, input, false, false, now).await {
            Ok(_) => report.imported += 1,
            Err(Error::Invalid { field, message }) => fail(Some(mac.lower()), &field, message),
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

// ---------------------------------------------------------------------------------------
// Serving files.

/// Failed fetches per source address in the current minute.
#[derive(Default)]
struct Failures {
    window_start: i64,
    counts: std::collections::HashMap<IpAddr, u32>,
}

/// What serving phones keeps in memory: the rendered-file cache, the failure counter, the
/// Digest nonces and the fetch log waiting to be written.
pub struct PhoneService {
    cache: DashMap<(String, String), (CacheKey, Arc<Rendered>)>,
    /// Phones by their token, as last read (see [`Looked`]).
    by_token: DashMap<String, Looked<PhoneRow>>,
    /// The revisions keying a phone's files (work epoch; profile and model firmware), by
    /// (MAC, profile), as last read.
    epochs: DashMap<EpochKey, Looked<(i64, i64)>>,
    /// Fetches waiting for the background writer.
    pub fetch_log: Arc<FetchLog>,
    failures: Mutex<Failures>,
    /// The CWMP listener's address (for provisioning URLs when no public URL is set).
    cwmp_addr: Option<std::net::SocketAddr>,
    nonces: NonceIssuer,
    nonce_counts: Mutex<NonceCounts>,
    /// Signs the URLs of model firmware files (None: unsigned `/files/<id>` URLs).
    signer: Option<crate::domain::files::UrlSigner>,
}

/// How long a model firmware URL in a phone's file stays valid after the reference changed.
const FIRMWARE_URL_SECS: i64 = 10 * 365 * 24 * 3600;

impl Default for PhoneService {
    fn default() -> PhoneService {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret[..]);
        PhoneService::new(None, secret)
    }
}

/// The HTTP Digest realm of `/prov/auth/…`.
pub const DIGEST_REALM: &str = "ferroacs-phones";

/// The path segment after `/prov/` that asks for HTTP Digest instead of a token.
pub const DIGEST_SEGMENT: &str = "auth";

/// How long a Digest nonce for phones stays valid.
const NONCE_TTL_MS: u64 = 300_000;

/// What a cached file was rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CacheKey {
    phone_revision: i64,
    work_epoch: i64,
    profile_revision: i64,
    base_url: String,
}

/// A database read kept in memory: used while this process made no change to what phones
/// are served ([`Store::phone_generation`] unchanged since it was read) and for at most
/// [`LOOKUP_TTL`] (changes other nodes sharing the database make are seen within it).
struct Looked<T> {
    value: T,
    generation: u64,
    at: std::time::Instant,
}

impl<T> Looked<T> {
    fn current(&self, store: &Store) -> bool {
        self.generation == store.phone_generation() && self.at.elapsed() < LOOKUP_TTL
    }
}

/// (MAC, profile): what [`Store::phone_epochs`] is asked.
type EpochKey = (String, Option<String>);

/// How long a cached look-up stands for the database at most: the bound on how late a
/// change made on another node is served here (changes made here are served at once).
const LOOKUP_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Fetches held for the fetch log when the config does not say.
const DEFAULT_FETCH_LOG_BUFFER: usize = 10_000;

/// Most cached files (the cache is dropped whole beyond it).
const CACHE_MAX: usize = 100_000;

impl PhoneService {
    /// `nonce_secret` must be the same on every node (nonces issued by one are checked by
    /// another).
    pub fn new(cwmp_addr: Option<std::net::SocketAddr>, nonce_secret: [u8; 32]) -> PhoneService {
        PhoneService {
            cache: DashMap::new(),
            by_token: DashMap::new(),
            epochs: DashMap::new(),
            fetch_log: Arc::new(FetchLog::new(DEFAULT_FETCH_LOG_BUFFER)),
            failures: Mutex::new(Failures::default()),
            cwmp_addr,
            nonces: NonceIssuer::new(nonce_secret, NONCE_TTL_MS),
            nonce_counts: Mutex::new(NonceCounts::default()),
            signer: None,
        }
    }

    /// Sign model firmware URLs with the file server's signer.
    pub fn with_signer(mut self, signer: crate::domain::files::UrlSigner) -> PhoneService {
        self.signer = Some(signer);
        self
    }

    /// Hold at most `rows` fetches in memory for the fetch log (`phones.fetch_log_buffer`).
    pub fn with_fetch_log_buffer(mut self, rows: usize) -> PhoneService {
        self.fetch_log = Arc::new(FetchLog::new(rows));
        self
    }

    /// The `WWW-Authenticate` value of a 401 for `/prov/auth/…`.
    pub fn challenge(&self, now_ms: i64, stale: bool) -> String {
        self.nonces
            .challenge(DIGEST_REALM, u64::try_from(now_ms).unwrap_or(0), stale)
    }

    fn blocked(&self, ip: IpAddr, now: i64, max: u32) -> bool {
        let f = match self.failures.lock() {
            Ok(f) => f,
            Err(p) => p.into_inner(),
        };
        now - f.window_start < 60_000 && f.counts.get(&ip).is_some_and(|n| *n >= max)
    }

    fn fail(&self, ip: IpAddr, now: i64) {
        let mut f = match self.failures.lock() {
            Ok(f) => f,
            Err(p) => p.into_inner(),
        };
        if now - f.window_start >= 60_000 {
            f.window_start = now;
            f.counts.clear();
        }
        *f.counts.entry(ip).or_insert(0) += 1;
    }

    /// Forget what is cached for a phone (it was changed or deleted).
    pub fn invalidate(&self, mac: &str) {
        self.cache.retain(|(m, _), _| m != mac);
        self.by_token.retain(|_, l| l.value.mac != mac);
        self.epochs.retain(|(m, _), _| m != mac);
    }

    /// Forget every cached file (after a bulk change).
    pub fn invalidate_all(&self) {
        self.cache.clear();
        self.by_token.clear();
        self.epochs.clear();
    }

    /// The phone whose token this is: from memory while current ([`Looked`]), else from
    /// the database. With `locking` (`phones.lock_to_first_network`) a phone not locked yet
    /// is always read again, so its first fetch, which locks it, is told apart exactly.
    async fn phone_by_token(
        &self,
        store: &Store,
        token: &str,
        locking: bool,
    ) -> Result<Option<PhoneRow>> {
        if let Some(l) = self.by_token.get(token) {
            if l.current(store) && !(locking && l.value.lock_network.is_none()) {
                return Ok(Some(l.value.clone()));
            }
        }
        // The generation first: a change committed after it makes this read stale.
        let generation = store.phone_generation();
        let t = token.to_string();
        let row = store.run(move |s| s.phone_by_token(&t)).await?;
        match &row {
            Some(r) => {
                if self.by_token.len() >= CACHE_MAX {
                    self.by_token.clear();
                }
                self.by_token.insert(
                    token.to_string(),
                    Looked {
                        value: r.clone(),
                        generation,
                        at: std::time::Instant::now(),
                    },
                );
            }
            None => {
                self.by_token.remove(token);
            }
        }
        Ok(row)
    }

    /// The revisions keying a phone's files ([`Store::phone_epochs`]), from memory while
    /// current ([`Looked`]).
    async fn phone_epochs(
        &self,
        store: &Store,
        mac: &str,
        profile: Option<&str>,
    ) -> Result<(i64, i64)> {
        let key = (mac.to_string(), profile.map(str::to_string));
        if let Some(l) = self.epochs.get(&key) {
            if l.current(store) {
                return Ok(l.value);
            }
        }
        let generation = store.phone_generation();
        let (m, p) = key.clone();
        let value = store.run(move |s| s.phone_epochs(&m, p.as_deref())).await?;
        if self.epochs.len() >= CACHE_MAX {
            self.epochs.clear();
        }
        self.epochs.insert(
            key,
            Looked {
                value,
                generation,
                at: std::time::Instant::now(),
            },
        );
        Ok(value)
    }

    /// Cached files (for metrics and tests).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// How the request reached us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// `/prov/<token>/…`: the phone's token, a one-time activation code, or the site token.
    Token(String),
    /// `/prov/auth/…`: HTTP Digest with the phone's own credentials; `auth` is the Digest
    /// `Authorization` the request carried, `method` and `uri` its request line.
    Digest {
        auth: Option<Box<DigestResponse>>,
        method: String,
        uri: String,
    },
    /// TFTP from an allowed network (no secret: files are found by MAC).
    Network,
    /// `/prov/cert/…`: the phone's TLS client certificate, verified by the TLS layer
    /// against `phones.client_ca` (never `cwmp.tls_client_ca`).
    Certificate(CertIdentity),
}

/// What the connection's client certificate says about the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertIdentity {
    /// No certificate of `phones.client_ca` (none, a CPE's, or plain HTTP).
    Missing,
    /// A phone certificate that names no single MAC (the reason, for the log).
    NoMac(String),
    /// The MAC the phone certificate names.
    Mac(Mac),
}

/// The path segment after `/prov/` that asks for the phone's client certificate.
pub const CERT_SEGMENT: &str = "cert";

/// A file request, whatever the transport.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub access: Access,
    pub file: String,
    pub source: IpAddr,
    pub protocol: &'static str,
    pub user_agent: String,
    /// The firmware version the request's query string reported (else the User-Agent's).
    pub query_firmware: Option<String>,
    /// The directory URL the phone used (relative references are made from it).
    pub base_url: String,
    pub now: i64,
}

/// The answer to a fetch.
#[derive(Debug, Clone)]
pub enum Fetched {
    File(Arc<Rendered>),
    /// A stored upload, read back.
    Upload(Vec<u8>),
    /// 400 with a reason.
    BadName(&'static str),
    NotFound,
    /// Outside the phone's locked network.
    Forbidden,
    TooManyFailures,
    /// HTTP Digest credentials missing or wrong: 401 with a challenge (`stale`: only the
    /// nonce was too old).
    Unauthorized {
        stale: bool,
    },
    /// `/prov/cert/` without a phone certificate that names a MAC: 403.
    CertificateRequired,
}

impl Fetched {
    pub fn status(&self) -> u16 {
        match self {
            Fetched::File(_) | Fetched::Upload(_) => 200,
            Fetched::BadName(_) => 400,
            Fetched::NotFound => 404,
            Fetched::Forbidden | Fetched::CertificateRequired => 403,
            Fetched::TooManyFailures => 429,
            Fetched::Unauthorized { .. } => 401,
        }
    }
}

/// The network a phone is locked to: the /24 (IPv4) or /64 (IPv6) of `ip`.
pub fn network_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network_of(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
    }
}

/// Which phone a request is for, and how it was found.
enum Found {
    Phone(Box<PhoneRow>),
    /// The request names no phone (defaults, common files).
    NoPhone,
    Refused(Fetched),
    /// Ask for Digest credentials; not a failure (a client's first request has none, and a
    /// stale nonce is the server's doing).
    Challenge {
        stale: bool,
    },
}

/// Write the fetches this node still holds, so what is read next shows them (the API and
/// console call it before showing phones).
pub async fn settle_fetch_log(store: &Store, svc: &PhoneService) -> Result<()> {
    svc.fetch_log.flush(store).await.map(|_| ())
}

/// [`settle_fetch_log`] when fetches are waiting, for readers that go on without it: a
/// failure is logged (the writer tries again within `phones.fetch_log_flush_ms`).
pub async fn settle_fetch_log_quietly(store: &Store, svc: &PhoneService) {
    if svc.fetch_log.pending() == 0 {
        return;
    }
    if let Err(e) = settle_fetch_log(store, svc).await {
        tracing::warn!(error = %e, "phone fetch log not written before a campaign read it");
    }
}

/// Serve one file request (see the module documentation for the order of the checks).
pub async fn fetch(
    store: &Store,
    cfg: &Config,
    svc: &PhoneService,
    req: FetchRequest,
) -> Result<Fetched> {
    let max = cfg.phones.max_failed_fetches;
    if max > 0 && svc.blocked(req.source, req.now, max) {
        tracing::warn!(source = %req.source, file = %loggable(&req.file, 128), "phone fetch refused: too many failed fetches from this address");
        return Ok(Fetched::TooManyFailures);
    }
    let mut unlocked = false;
    let (result, mac, counts_as_failure) = serve(store, cfg, svc, &req, &mut unlocked).await?;
    let status = result.status();
    if counts_as_failure {
        svc.fail(req.source, req.now);
        tracing::warn!(
            source = %req.source,
            file = %loggable(&req.file, 128),
            status,
            protocol = req.protocol,
            "phone fetch refused"
        );
    }
    let served = status == 200;
    // The first served fetch of a phone locked to its network is written now: until its
    // network is stored, any network would be served.
    let lock =
        (served && unlocked && cfg.phones.lock_to_first_network).then(|| network_of(req.source));
    let fetch = NewFetch {
        mac,
        file: loggable(&req.file, 128),
        source: req.source.to_string(),
        protocol: req.protocol,
        user_agent: loggable(&req.user_agent, 256),
        status: i32::from(status),
        firmware: req
            .query_firmware
            .clone()
            .or_else(|| phones::firmware_from_user_agent(&req.user_agent))
            .map(|f| loggable(&f, 64)),
        served,
        at: req.now,
        lock,
        bytes: match &result {
            Fetched::File(f) => i64::try_from(f.bytes.len()).ok(),
            Fetched::Upload(d) => i64::try_from(d.len()).ok(),
            _ => None,
        },
    };
    if fetch.lock.is_some() {
        store.run(move |s| s.record_phone_fetch(&fetch)).await?;
    } else {
        svc.fetch_log.push(fetch);
    }
    Ok(result)
}

/// At most `max` characters of what a client sent, control characters (NUL included,
/// which PostgreSQL text refuses) replaced by `?`: the fetch log shows it as text.
fn loggable(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

async fn find_phone(
    store: &Store,
    cfg: &Config,
    svc: &PhoneService,
    req: &FetchRequest,
    file: &FileRequest,
) -> Result<Found> {
    let named = file.mac();
    let by_mac = |mac: Mac| async move {
        let m = mac.lower();
        store.run(move |s| s.get_phone(&m)).await
    };
    let own = |phone: PhoneRow| {
        // The MAC the file names, and the one a Gigaset base's User-Agent names.
        let ua_mac = (phone.vendor == Vendor::Gigaset.as_str())
            .then(|| phones::mac_from_user_agent(&req.user_agent))
            .flatten();
        match named
            .into_iter()
            .chain(ua_mac)
            .find(|m| m.lower() != phone.mac)
        {
            Some(other) => {
                tracing::warn!(
                    phone = %phone.mac,
                    presented_mac = %other,
                    source = %req.source,
                    "another MAC presented this phone's credentials: refused (a phone is bound to its MAC)"
                );
                Found::Refused(Fetched::NotFound)
            }
            None => Found::Phone(Box::new(phone)),
        }
    };
    let site = match &req.access {
        Access::Network => true,
        Access::Certificate(id) => {
            let mac = match id {
                CertIdentity::Mac(m) => *m,
                CertIdentity::Missing => return Ok(Found::Refused(Fetched::CertificateRequired)),
                CertIdentity::NoMac(why) => {
                    tracing::warn!(source = %req.source, reason = %why, "phone certificate refused");
                    return Ok(Found::Refused(Fetched::CertificateRequired));
                }
            };
            if let Some(phone) = by_mac(mac).await? {
                return Ok(own(phone));
            }
            // An unknown phone: the file must be its own before it may register.
            if let Some(other) = named.filter(|n| *n != mac) {
                tracing::warn!(
                    phone = %mac.lower(),
                    presented_mac = %other,
                    source = %req.source,
                    "another MAC presented this phone's credentials: refused (a phone is bound to its MAC)"
                );
                return Ok(Found::Refused(Fetched::NotFound));
            }
            return register(store, cfg, svc, req, file, mac).await;
        }
        Access::Digest { auth, method, uri } => {
            return digest_phone(store, svc, req.now, auth.as_deref(), method, uri)
                .await
                .map(|f| match f {
                    Found::Phone(p) => own(*p),
                    other => other,
                });
        }
        Access::Token(t) => {
            if let Some(phone) = svc
                .phone_by_token(store, t, cfg.phones.lock_to_first_network)
                .await?
            {
                return Ok(own(phone));
            }
            if is_activation_code(t) {
                return Ok(match activated_phone(store, cfg, req, t).await? {
                    Some(phone) => own(phone),
                    None => Found::Refused(Fetched::NotFound),
                });
            }
            if let Some(g) = GigasetCode::parse(t) {
                return Ok(match gigaset_activated_phone(store, cfg, req, &g).await? {
                    Some(phone) => own(phone),
                    None => Found::Refused(Fetched::NotFound),
                });
            }
            cfg.phones.site_token.as_ref().is_some_and(|s| {
                crate::auth::password::constant_time_eq(s.expose().as_bytes(), t.as_bytes())
            })
        }
    };
    if !site {
        return Ok(Found::Refused(Fetched::NotFound));
    }
    let Some(mac) = named else {
        return Ok(Found::NoPhone);
    };
    if let Some(p) = by_mac(mac).await? {
        return Ok(Found::Phone(Box::new(p)));
    }
    register(store, cfg, svc, req, file, mac).await
}

/// A phone ferroacs does not know: registered when `phones.unknown_phones = "accept"` (the
/// vendor from the file name, else the User-Agent), else refused.
async fn register(
    store: &Store,
    cfg: &Config,
    svc: &PhoneService,
    req: &FetchRequest,
    file: &FileRequest,
    mac: Mac,
) -> Result<Found> {
    let by_mac = |mac: Mac| async move {
        let m = mac.lower();
        store.run(move |s| s.get_phone(&m)).await
    };
    if cfg.phones.unknown_phones == UnknownDevices::Reject {
        return Ok(Found::Refused(Fetched::NotFound));
    }
    // Auto-registration: the vendor from the name, else from the User-Agent.
    let Some(vendor) = file
        .vendor()
        .or_else(|| Vendor::from_user_agent(&req.user_agent))
    else {
        return Ok(Found::Refused(Fetched::NotFound));
    };
    let model = match file {
        FileRequest::SnomPhone(model, _) => model.clone(),
        _ => "unknown".into(),
    };
    let input = PhoneInput {
        vendor: vendor.as_str().into(),
        model,
        ..PhoneInput::default()
    };
    let (view, _) = save(store, mac, input, false, true, req.now).await?;
    tracing::info!(mac = %view.mac, vendor = %view.vendor, source = %req.source, "phone registered at its first fetch");
    svc.invalidate(&view.mac);
    Ok(match by_mac(mac).await? {
        Some(p) => Found::Phone(Box::new(p)),
        None => Found::Refused(Fetched::NotFound),
    })
}

/// The phone whose Digest credentials the request carries. Checks, in order: credentials
/// present (else a challenge, not a failure), a phone with that user (else a failure), then
/// `auth::digest::verify` (realm, nonce, uri, qop, response, nonce count): a stale nonce is
/// challenged again without counting as a failure, anything else wrong is a failure.
async fn digest_phone(
    store: &Store,
    svc: &PhoneService,
    now: i64,
    auth: Option<&DigestResponse>,
    method: &str,
    uri: &str,
) -> Result<Found> {
    let Some(d) = auth else {
        return Ok(Found::Challenge { stale: false });
    };
    let user = d.username.clone();
    let Some(phone) = store.run(move |s| s.phone_by_digest_user(&user)).await? else {
        return Ok(Found::Refused(Fetched::Unauthorized { stale: false }));
    };
    let Some(password) = phone.digest_password.as_deref() else {
        return Ok(Found::Refused(Fetched::Unauthorized { stale: false }));
    };
    let ha1 = crate::auth::digest::ha1(&d.username, DIGEST_REALM, password);
    let checked = {
        let mut counts = match svc.nonce_counts.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        crate::auth::digest::verify(
            d,
            method,
            uri,
            &ha1,
            u64::try_from(now).unwrap_or(0),
            &svc.nonces,
            &mut counts,
            DIGEST_REALM,
        )
    };
    Ok(match checked {
        Ok(()) => Found::Phone(Box::new(phone)),
        Err(crate::auth::AuthError::Stale) => Found::Challenge { stale: true },
        Err(e) => {
            tracing::warn!(phone = %phone.mac, reason = %e, "phone Digest authentication failed");
            Found::Refused(Fetched::Unauthorized { stale: false })
        }
    })
}

/// Activation codes: 12 decimal digits (typed on a phone's keypad or web page).
pub const ACTIVATION_CODE_LEN: usize = 12;

fn is_activation_code(s: &str) -> bool {
    s.len() == ACTIVATION_CODE_LEN && s.bytes().all(|b| b.is_ascii_digit())
}

/// The phone an activation code opens, if it does for this request: unused and not expired
/// (this request uses it and starts the activation window for its source address), or in
/// its window and used from the same address. A used or expired code opens nothing.
async fn activated_phone(
    store: &Store,
    cfg: &Config,
    req: &FetchRequest,
    code: &str,
) -> Result<Option<PhoneRow>> {
    let c = code.to_string();
    let Some(phone) = store.run(move |s| s.phone_by_activation_code(&c)).await? else {
        return Ok(None);
    };
    let (Some(hash), Some(expires)) = (phone.activation_hash.clone(), phone.activation_expires)
    else {
        return Ok(None);
    };
    if expires <= req.now {
        return Ok(None);
    }
    let source = req.source.to_string();
    match phone.activation_source.as_deref() {
        Some(first) if first == source => Ok(Some(phone)),
        Some(_) => Ok(None),
        None => {
            let window = i64::try_from(cfg.phones.activation_window_secs)
                .unwrap_or(i64::MAX / 2_000)
                .saturating_mul(1000);
            let (mac, now) = (phone.mac.clone(), req.now);
            let won = store
                .run(move |s| {
                    s.start_phone_activation(&mac, &hash, &source, now, now.saturating_add(window))
                })
                .await?;
            if won {
                tracing::info!(phone = %phone.mac, source = %req.source, "phone activation code used");
            }
            Ok(won.then_some(phone))
        }
    }
}

/// The longest Gigaset activation code.
pub const GIGASET_CODE_MAX: usize = 32;

/// A Gigaset activation code as typed on the base: `<provider id>#<code>[#<password>]`, at
/// most 32 characters; `code` is a ferroacs activation code, `password` the phone's Digest
/// password (required when it has one). `%23` stands for `#` when a client left it encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct GigasetCode {
    pub provider: String,
    pub code: String,
    pub password: Option<String>,
}

impl std::fmt::Debug for GigasetCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GigasetCode")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl GigasetCode {
    /// `None` for anything that is not one (too long, no `#`, not 12 digits after the id).
    pub fn parse(token: &str) -> Option<GigasetCode> {
        let t = token.replace("%23", "#");
        if t.len() > GIGASET_CODE_MAX || !t.contains('#') {
            return None;
        }
        let mut parts = t.splitn(3, '#');
        let provider = parts.next()?.to_string();
        let code = parts.next()?.to_string();
        let password = parts.next().map(str::to_string);
        if provider.is_empty() || !is_activation_code(&code) {
            return None;
        }
        if password.as_deref().is_some_and(str::is_empty) {
            return None;
        }
        Some(GigasetCode {
            provider,
            code,
            password,
        })
    }
}

/// The phone a Gigaset activation code opens: the provider id is `phones.gigaset_provider_id`,
/// the code opens a Gigaset phone (as [`activated_phone`] decides), and the password is that
/// phone's Digest password when it has one (none may be given when it has none).
async fn gigaset_activated_phone(
    store: &Store,
    cfg: &Config,
    req: &FetchRequest,
    g: &GigasetCode,
) -> Result<Option<PhoneRow>> {
    let Some(provider) = cfg.phones.gigaset_provider_id.as_deref() else {
        return Ok(None);
    };
    if !provider.eq_ignore_ascii_case(&g.provider) {
        return Ok(None);
    }
    let c = g.code.clone();
    let Some(phone) = store.run(move |s| s.phone_by_activation_code(&c)).await? else {
        return Ok(None);
    };
    if phone.vendor != Vendor::Gigaset.as_str() {
        return Ok(None);
    }
    let password_ok = match (phone.digest_password.as_deref(), g.password.as_deref()) {
        (None, None) => true,
        (Some(want), Some(got)) => {
            crate::auth::password::constant_time_eq(want.as_bytes(), got.as_bytes())
        }
        _ => false,
    };
    if !password_ok {
        tracing::warn!(phone = %phone.mac, source = %req.source, "Gigaset activation code with a wrong or missing password");
        return Ok(None);
    }
    activated_phone(store, cfg, req, &g.code).await
}

/// A new activation code, shown once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivationCode {
    pub mac: String,
    pub code: String,
    /// The URL to give the phone (its provisioning directory with the code).
    pub url: String,
    /// Until when it can be used the first time (ms since the epoch).
    pub expires_at: i64,
    /// Gigaset phones, with `phones.gigaset_provider_id`: the code to type on the base,
    /// `<provider id>#<code>` (append `#<Digest password>` when the phone has Digest
    /// credentials), and the URL it opens (`#` encoded as `%23`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gigaset_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gigaset_url: Option<String>,
}

/// Give a phone a new one-time activation code (any earlier one stops working).
pub async fn new_activation_code(
    store: &Store,
    cfg: &Config,
    svc: &PhoneService,
    mac: Mac,
    now: i64,
) -> Result<ActivationCode> {
    let mut b = [0u8; 8];
    rand::fill(&mut b[..]);
    let n = u64::from_le_bytes(b) % 10u64.pow(ACTIVATION_CODE_LEN as u32);
    let code = format!("{n:0width$}", width = ACTIVATION_CODE_LEN);
    let expires_at = now.saturating_add(
        i64::try_from(cfg.phones.activation_code_ttl_secs)
            .unwrap_or(i64::MAX / 2_000)
            .saturating_mul(1000),
    );
    let (m, c) = (mac.lower(), code.clone());
    let vendor = store
        .run(move |s| {
            let Some(p) = s.get_phone(&m)? else {
                return Ok(None);
            };
            Ok(s.set_phone_activation(&m, &c, expires_at)?
                .then_some(p.vendor))
        })
        .await?
        .ok_or_else(|| Error::not_found(format!("phone {mac}")))?;
    let base = public_base(cfg, svc);
    let gigaset_code = (vendor == Vendor::Gigaset.as_str())
        .then_some(cfg.phones.gigaset_provider_id.as_deref())
        .flatten()
        .map(|p| format!("{p}#{code}"));
    Ok(ActivationCode {
        mac: mac.lower(),
        url: format!("{base}{PREFIX}/{code}"),
        gigaset_url: gigaset_code
            .as_ref()
            .map(|g| format!("{base}{PREFIX}/{}/%MACD.xml", g.replace('#', "%23"))),
        gigaset_code,
        code,
        expires_at,
    })
}

/// The answer, the phone it concerned, and whether it counts as a failed fetch.
///
/// `unlocked` is set when the request found a phone not yet locked to a network.
async fn serve(
    store: &Store,
    cfg: &Config,
    svc: &PhoneService,
    req: &FetchRequest,
    unlocked: &mut bool,
) -> Result<(Fetched, Option<String>, bool)> {
    let file = match phones::files::parse(&req.file) {
        Err(phones::files::BadName(why)) => return Ok((Fetched::BadName(why), None, true)),
        Ok(None) => return Ok((Fetched::NotFound, None, false)),
        Ok(Some(FileRequest::CiscoTrustList | FileRequest::GrandstreamBinary(_))) => {
            return Ok((Fetched::NotFound, None, false))
        }
        Ok(Some(f)) => f,
    };
    let phone = match find_phone(store, cfg, svc, req, &file).await? {
        Found::Refused(r) => return Ok((r, file.mac().map(|m| m.lower()), true)),
        Found::Challenge { stale } => return Ok((Fetched::Unauthorized { stale }, None, false)),
        Found::NoPhone => None,
        Found::Phone(p) => Some(*p),
    };
    if let (Some(p), true) = (&phone, cfg.phones.lock_to_first_network) {
        *unlocked = p.lock_network.is_none();
        if let Some(net) = &p.lock_network {
            let inside = IpNet::parse(net)
                .map(|n| n.contains(req.source))
                .unwrap_or(false);
            if !inside {
                return Ok((Fetched::Forbidden, Some(p.mac.clone()), true));
            }
        }
    }
    let mac = phone.as_ref().map(|p| p.mac.clone());
    let ctx = phones::Context {
        base_url: req.base_url.clone(),
        default_sip_server: cfg.phones.default_sip_server.clone(),
        now_ms: req.now,
    };
    let Some(phone) = phone else {
        // Files that name no phone hold no account: rendered each time, cheap.
        return Ok((
            phones::render(&file, None, &ctx)
                .map(|r| Fetched::File(Arc::new(r)))
                .unwrap_or(Fetched::NotFound),
            None,
            false,
        ));
    };
    if let FileRequest::PolycomUpload(_, name) = &file {
        let (m, n) = (phone.mac.clone(), name.clone());
        let data = store.run(move |s| s.get_phone_upload(&m, &n)).await?;
        return Ok((
            data.map(Fetched::Upload).unwrap_or(Fetched::NotFound),
            mac,
            false,
        ));
    }
    let (epoch, profile_rev) = svc
        .phone_epochs(store, &phone.mac, phone.profile.as_deref())
        .await?;
    let key = CacheKey {
        phone_revision: phone.revision,
        work_epoch: epoch,
        profile_revision: profile_rev,
        base_url: req.base_url.clone(),
    };
    let ck = (phone.mac.clone(), req.file.to_ascii_lowercase());
    if let Some(hit) = svc.cache.get(&ck) {
        if hit.0 == key {
            return Ok((Fetched::File(hit.1.clone()), mac, false));
        }
    }
    let files_base = cfg
        .files
        .public_url
        .as_ref()
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| match req.base_url.find(PREFIX) {
            Some(i) => req.base_url[..i].to_string(),
            None => req.base_url.clone(),
        });
    let signer = svc.signer.clone();
    let tftp = req.protocol == "tftp";
    let fw_url = move |file_id: &str, name: &str, device: &str, since_ms: i64| -> String {
        if tftp {
            // Over TFTP the phone fetches the firmware by name from the same server
            // ([`tftp_firmware`] serves it).
            return name.to_string();
        }
        match &signer {
            // Valid for ten years from the reference's change: the URL, and so the file's
            // content, stays the same while the reference does.
            Some(sg) => sg.download_url(
                &files_base,
                file_id,
                device,
                since_ms / 1000 + FIRMWARE_URL_SECS,
            ),
            None => format!(
                "{files_base}/files/{}",
                crate::domain::files::url_encode(file_id)
            ),
        }
    };
    let mut config = phone_config(store, &phone, &fw_url).await?;
    if let FileRequest::GigasetMac(_) = &file {
        config.version_ms = gigaset_stamp(store, &config, &file, &ctx).await?;
    }
    let Some(mut rendered) = phones::render(&file, Some(&config), &ctx) else {
        return Ok((Fetched::NotFound, mac, false));
    };
    if matches!(file, FileRequest::GrandstreamMac(_)) {
        let password = phone.file_password.clone().or_else(|| {
            cfg.phones
                .file_password
                .as_ref()
                .map(|s| s.expose().to_string())
        });
        if let Some(pw) = password {
            let digest = config
                .settings
                .encryption_digest
                .unwrap_or(phones::KeyDigest::Sha256);
            let mut salt = [0u8; 8];
            rand::fill(&mut salt[..]);
            rendered = phones::grandstream::encrypt(&rendered, &pw, salt, digest);
        }
    }
    let rendered = Arc::new(rendered);
    if svc.cache.len() >= CACHE_MAX {
        svc.cache.clear();
    }
    svc.cache.insert(ck, (key, rendered.clone()));
    Ok((Fetched::File(rendered), mac, false))
}

/// The `VERSION` stamp of a Gigaset file: the content rendered without a stamp is hashed;
/// unchanged content keeps the stamp stored for it, changed content gets the time the
/// configuration last changed (`config.version_ms`), at least a minute after the previous
/// stamp ([`crate::store::Store::phone_file_stamp`]).
async fn gigaset_stamp(
    store: &Store,
    config: &PhoneConfig,
    file: &FileRequest,
    ctx: &phones::Context,
) -> Result<i64> {
    use sha2::Digest;
    let mut bare = config.clone();
    bare.version_ms = 0;
    let Some(r) = phones::render(file, Some(&bare), ctx) else {
        return Ok(config.version_ms);
    };
    let digest = hex::encode(sha2::Sha256::digest(&r.bytes));
    let (mac, candidate) = (config.mac.lower(), config.version_ms);
    store
        .run(move |s| s.phone_file_stamp(&mac, "gigaset", &digest, candidate))
        .await
}

/// Everything the renderer needs about a phone: settings merged (model defaults, profile,
/// phone) and its lines with their passwords.
///
/// `fw_url(file id, file name, device id, reference time)` makes the reference to the
/// model's firmware file (its URL; its name over TFTP).
pub async fn phone_config(
    store: &Store,
    phone: &PhoneRow,
    fw_url: &(dyn Fn(&str, &str, &str, i64) -> String + Send + Sync),
) -> Result<PhoneConfig> {
    let vendor = Vendor::parse(&phone.vendor).ok_or_else(|| {
        Error::internal(format!("phone {} has vendor {:?}", phone.mac, phone.vendor))
    })?;
    let mac = Mac::parse(&phone.mac).map_err(Error::internal)?;
    let (dev, prof) = (phone.device_id.clone(), phone.profile.clone());
    let (v, m) = (phone.vendor.clone(), phone.model.clone());
    let (lines, profile, firmware) = store
        .run(move |s| {
            let lines = s.device_lines(&dev)?;
            let profile = match prof {
                Some(p) => s.get_phone_profile(&p)?,
                None => None,
            };
            let firmware = match s.model_firmware(&v, &m)? {
                Some(f) => s.get_file(&f.file_id)?.map(|file| (f, file.name)),
                None => None,
            };
            Ok((lines, profile, firmware))
        })
        .await?;
    let mut settings = phones::models::defaults(vendor, &phone.model);
    if let Some((f, name)) = &firmware {
        settings.firmware_file = Some(fw_url(&f.file_id, name, &phone.device_id, f.updated_at));
        settings.firmware_version = Some(f.version.clone());
    }
    let firmware = firmware.map(|(f, _)| f);
    let version_ms = lines
        .iter()
        .map(|l| l.updated_at)
        .chain(profile.as_ref().map(|p| p.updated_at))
        .chain(firmware.as_ref().map(|f| f.updated_at))
        .fold(phone.updated_at, i64::max);
    if let Some(p) = profile {
        let s: Settings = serde_json::from_str(&p.settings).unwrap_or_default();
        settings = settings.overlay(&s);
    }
    let own: Settings = serde_json::from_str(&phone.settings).unwrap_or_default();
    settings = settings.overlay(&own);
    let max = phones::models::info(vendor, &phone.model).lines;
    let lines = lines
        .iter()
        .filter(|r| u32::try_from(r.line).is_ok_and(|n| n <= max))
        .map(|r| {
            let view = LineView::from_row(r);
            let a = view.account;
            let user = a
                .sip_user
                .clone()
                .or_else(|| a.auth_user.clone())
                .unwrap_or_default();
            phones::Line {
                number: u32::try_from(r.line).unwrap_or(1),
                enabled: a.enabled,
                auth_user: a.auth_user.clone().unwrap_or_else(|| user.clone()),
                password: r.password.clone().unwrap_or_default(),
                display_name: a.display_name.clone().unwrap_or_default(),
                label: a
                    .directory_number
                    .clone()
                    .or_else(|| a.display_name.clone())
                    .unwrap_or_else(|| user.clone()),
                registrar: a.registrar.clone().or(a.proxy.clone()).unwrap_or_default(),
                registrar_port: a.registrar_port.or(a.proxy_port),
                outbound_proxy: a.outbound_proxy.clone().unwrap_or_default(),
                outbound_proxy_port: a.outbound_proxy_port,
                transport: a.transport.clone().unwrap_or_else(|| "UDP".into()),
                register_expires: a.register_expires,
                voicemail: a.voicemail_number.clone().unwrap_or_default(),
                dtmf: a.dtmf_mode.clone().unwrap_or_else(|| "RFC2833".into()),
                codecs: a.codecs.clone().unwrap_or_default(),
                user,
            }
        })
        .collect();
    Ok(PhoneConfig {
        mac,
        vendor,
        model: phone.model.clone(),
        settings,
        lines,
        version_ms,
    })
}

/// What [`upload`] did: the HTTP status, and for a 401 whether only the nonce was stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uploaded {
    pub status: u16,
    pub stale: bool,
}

/// Accept a file a phone uploads (Polycom overrides and logs), under its own token, its
/// own HTTP Digest credentials (`/prov/auth/`) or its client certificate (`/prov/cert/`;
/// 403 without one), for its own MAC only. `body` is `None`
/// when it was larger than `phones.max_upload_bytes`. Statuses: 201 stored, 400 bad
/// name, 401 Digest credentials missing (a challenge, not a failure) or wrong, 404 refused
/// (unknown token, another phone's MAC), 405 not an upload, 413 too large, 429 too many
/// failures. Credentials are checked before the size, so a stranger learns nothing.
pub async fn upload<F, Fut>(
    store: &Store,
    cfg: &Config,
    svc: &PhoneService,
    req: &FetchRequest,
    read_body: F,
) -> Result<Uploaded>
where
    F: FnOnce(usize) -> Fut,
    Fut: std::future::Future<Output = UploadBody>,
{
    let mut read_body = Some(read_body);
    let mut stored_bytes = None;
    let max = cfg.phones.max_failed_fetches;
    if max > 0 && svc.blocked(req.source, req.now, max) {
        return Ok(Uploaded {
            status: 429,
            stale: false,
        });
    }
    let mut stale = false;
    let mut challenge = false;
    let (status, mac) = match phones::files::parse(&req.file) {
        Err(_) => (400, None),
        Ok(Some(FileRequest::PolycomUpload(m, name))) => {
            let phone = match &req.access {
                Access::Token(t) => {
                    let token = t.clone();
                    store
                        .run(move |s| s.phone_by_token(&token))
                        .await?
                        .ok_or(404)
                }
                Access::Digest { auth, method, uri } => {
                    match digest_phone(store, svc, req.now, auth.as_deref(), method, uri).await? {
                        Found::Phone(p) => Ok(*p),
                        Found::Challenge { stale: st } => {
                            stale = st;
                            challenge = true;
                            Err(401)
                        }
                        Found::Refused(_) | Found::NoPhone => Err(401),
                    }
                }
                Access::Certificate(CertIdentity::Mac(cm)) => {
                    let m = cm.lower();
                    store.run(move |s| s.get_phone(&m)).await?.ok_or(404)
                }
                Access::Certificate(_) => Err(403),
                Access::Network => Err(404),
            };
            match phone {
                Ok(p) if p.mac == m.lower() => {
                    // The body is read only now, for a phone whose credentials opened it:
                    // nobody else makes the ACS buffer an upload.
                    let max = cfg.phones.max_upload_bytes;
                    let body = match read_body.take() {
                        Some(read) => read(max).await,
                        None => UploadBody::Broken,
                    };
                    match body {
                        UploadBody::Whole(data) if data.len() <= max => {
                            let (mm, now) = (p.mac.clone(), req.now);
                            stored_bytes = i64::try_from(data.len()).ok();
                            store
                                .run(move |s| s.put_phone_upload(&mm, &name, &data, now))
                                .await?;
                            (201, Some(p.mac))
                        }
                        UploadBody::Whole(_) | UploadBody::TooLarge => (413, Some(p.mac)),
                        // The phone stopped sending: nothing stored, nothing to count.
                        UploadBody::Broken => {
                            return Ok(Uploaded {
                                status: 408,
                                stale: false,
                            })
                        }
                    }
                }
                Ok(p) => {
                    tracing::warn!(
                        phone = %p.mac,
                        presented_mac = %m,
                        source = %req.source,
                        "another MAC presented this phone's credentials: upload refused (a phone is bound to its MAC)"
                    );
                    (404, Some(m.lower()))
                }
                Err(status) => (status, Some(m.lower())),
            }
        }
        Ok(_) => (405, None),
    };
    if challenge {
        // A client's first request carries no credentials: nothing to count or log.
        return Ok(Uploaded { status, stale });
    }
    if matches!(status, 400 | 401 | 403 | 404) {
        svc.fail(req.source, req.now);
        tracing::warn!(
            source = %req.source,
            file = %loggable(&req.file, 128),
            status,
            protocol = req.protocol,
            "phone upload refused"
        );
    }
    svc.fetch_log.push(NewFetch {
        mac,
        file: loggable(&req.file, 128),
        source: req.source.to_string(),
        protocol: req.protocol,
        user_agent: loggable(&req.user_agent, 256),
        status: i32::from(status),
        firmware: None,
        served: false,
        at: req.now,
        lock: None,
        bytes: stored_bytes.filter(|_| status == 201),
    });
    Ok(Uploaded { status, stale })
}

/// An upload's body as the listener read it, once the phone was authorized
/// ([`upload`]).
#[derive(Debug)]
pub enum UploadBody {
    Whole(Vec<u8>),
    /// Larger than `phones.max_upload_bytes` (declared or sent): not kept.
    TooLarge,
    /// The connection failed before the body ended.
    Broken,
}

/// A firmware file TFTP may serve: its store row (the bytes are at
/// `FileStore::path_of(row.id)`).
#[derive(Debug, Clone)]
pub struct TftpFirmware {
    pub file: crate::store::files::FileRow,
    /// The model it is the firmware of (`vendor/model`), or `allow-list`.
    pub reason: String,
    /// The phone whose token the name came through (its MAC), if any.
    pub phone: Option<String>,
}

/// Record a firmware transfer over TFTP in the fetch log like any fetch: the phone when
/// the name came through its token (a served transfer then counts as its last fetch),
/// else only the source address; `status` 200 (complete), 408 (the phone stopped
/// answering), 400 (it ended the transfer) or 500 (the store could not read the file);
/// `bytes` the phone acknowledged.
pub fn record_tftp_firmware(
    svc: &PhoneService,
    fw: &TftpFirmware,
    file: &str,
    source: IpAddr,
    status: u16,
    bytes: u64,
    at: i64,
) {
    svc.fetch_log.push(NewFetch {
        mac: fw.phone.clone(),
        file: loggable(file, 128),
        source: source.to_string(),
        protocol: "tftp",
        user_agent: String::new(),
        status: i32::from(status),
        firmware: None,
        served: status == 200,
        at,
        lock: None,
        bytes: i64::try_from(bytes).ok(),
    });
}

/// Whether `name`, asked for over TFTP, is a firmware file TFTP serves: a file of the store
/// with that name that is a phone model's firmware (for a request through a phone's token:
/// that phone's model's), or one named in `tftp.firmware_files`. Any other file of the
/// store is not served over TFTP (`None`: "file not found"), whatever its name or id.
pub async fn tftp_firmware(
    store: &Store,
    cfg: &Config,
    access: &Access,
    name: &str,
) -> Result<Option<TftpFirmware>> {
    if name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || name.chars().any(|c| c.is_control())
    {
        return Ok(None);
    }
    let allowed = cfg
        .tftp
        .firmware_files
        .split(',')
        .map(str::trim)
        .any(|n| !n.is_empty() && n == name);
    let token = match access {
        Access::Token(t) => Some(t.clone()),
        Access::Network => None,
        Access::Digest { .. } | Access::Certificate(_) => return Ok(None),
    };
    let n = name.to_string();
    store
        .run(move |s| {
            // Through a token, only the firmware of that phone's model.
            let only = match token {
                Some(t) => match s.phone_by_token(&t)? {
                    Some(p) => Some((p.vendor, p.model, p.mac)),
                    None => return Ok(None),
                },
                None => None,
            };
            let phone = only.as_ref().map(|(_, _, mac)| mac.clone());
            let files = s.files_named(&n)?;
            if files.is_empty() {
                return Ok(None);
            }
            for m in s.list_model_firmware()? {
                if only
                    .as_ref()
                    .is_some_and(|(v, model, _)| *v != m.vendor || *model != m.model)
                {
                    continue;
                }
                if let Some(f) = files.iter().find(|f| f.id == m.file_id) {
                    return Ok(Some(TftpFirmware {
                        file: f.clone(),
                        reason: format!("{}/{}", m.vendor, m.model),
                        phone,
                    }));
                }
            }
            Ok(allowed.then(|| TftpFirmware {
                file: files[0].clone(),
                reason: "allow-list".into(),
                phone,
            }))
        })
        .await
}

/// What a check-sync NOTIFY did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResyncResult {
    /// Where it went (`address:port`).
    pub target: String,
    /// `answered` (with `status`), `sent` (no answer within the timeout) or `refused` (the
    /// target policy forbids the address).
    pub outcome: String,
    pub status: Option<u16>,
}

/// Send SIP NOTIFY check-sync to a phone and wait up to `timeout` for an answer.
pub async fn resync(
    store: &Store,
    policy: &crate::connreq::policy::TargetPolicy,
    mac: Mac,
    reboot: bool,
    timeout: std::time::Duration,
) -> Result<ResyncResult> {
    let m = mac.lower();
    let (phone, lines) = store
        .run(move |s| {
            let p = s
                .get_phone(&m)?
                .ok_or_else(|| Error::not_found(format!("phone {m}")))?;
            let lines = s.device_lines(&p.device_id)?;
            Ok((p, lines))
        })
        .await?;
    let (host, port) = match (&phone.contact, &phone.last_source) {
        (Some(c), _) => parse_contact(c)?,
        (None, Some(src)) => (src.clone(), 5060),
        (None, None) => {
            return Err(Error::invalid(
                "contact",
                format!(
                    "phone {mac} has never fetched a file and has no contact: set one with PUT /api/v1/phones/{mac} {{\"contact\": \"host:port\"}}"
                ),
            ))
        }
    };
    let addrs = match crate::connreq::policy::resolve_checked(policy, &host, port).await {
        Ok(a) => a,
        Err(Ok(refusal)) => {
            tracing::warn!(phone = %mac, %refusal, "check-sync NOTIFY refused by the target policy");
            return Ok(ResyncResult {
                target: format!("{host}:{port}"),
                outcome: "refused".into(),
                status: None,
            });
        }
        Err(Err(e)) => return Err(Error::invalid("contact", e)),
    };
    let target = addrs[0];
    let bind: std::net::SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| Error::internal(format!("cannot open a UDP socket: {e}")))?;
    sock.connect(target)
        .await
        .map_err(|e| Error::internal(format!("cannot reach {target}: {e}")))?;
    let local = sock
        .local_addr()
        .map_err(|e| Error::internal(format!("UDP socket: {e}")))?;
    let user = lines
        .first()
        .and_then(|l| {
            LineView::from_row(l)
                .account
                .sip_user
                .or(LineView::from_row(l).account.auth_user)
        })
        .unwrap_or_else(|| mac.lower());
    let rnd = new_token();
    let msg = phones::sip::check_sync(&phones::sip::Notify {
        host: &target.ip().to_string(),
        port: target.port(),
        user: &user,
        local,
        branch: &rnd[..16],
        tag: &rnd[16..24],
        call_id: &rnd,
        reboot,
    });
    let mut status = None;
    // UDP: send again once if nothing came back in half the time.
    for _ in 0..2 {
        sock.send(&msg)
            .await
            .map_err(|e| Error::internal(format!("cannot send to {target}: {e}")))?;
        let mut buf = [0u8; 2048];
        if let Ok(Ok(n)) = tokio::time::timeout(timeout / 2, sock.recv(&mut buf)).await {
            status = phones::sip::response_status(&buf[..n]);
            if status.is_some() {
                break;
            }
        }
    }
    Ok(ResyncResult {
        target: target.to_string(),
        outcome: if status.is_some() { "answered" } else { "sent" }.into(),
        status,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn networks_of_sources() {
        assert_eq!(network_of("192.0.2.77".parse().unwrap()), "192.0.2.0/24");
        assert_eq!(
            network_of("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            network_of("::ffff:192.0.2.9".parse().unwrap()),
            "192.0.2.0/24"
        );
    }

    #[test]
    fn contacts() {
        assert_eq!(
            parse_contact("192.0.2.1:5062").unwrap(),
            ("192.0.2.1".into(), 5062)
        );
        assert_eq!(
            parse_contact("192.0.2.1").unwrap(),
            ("192.0.2.1".into(), 5060)
        );
        assert_eq!(
            parse_contact("[2001:db8::1]:5060").unwrap(),
            ("2001:db8::1".into(), 5060)
        );
        assert_eq!(
            parse_contact("phone.example.net").unwrap(),
            ("phone.example.net".into(), 5060)
        );
        assert!(parse_contact("a b:1").is_err());
        assert!(parse_contact("x:99999").is_err());
    }

    #[test]
    fn failures_block_for_the_rest_of_the_minute() {
        let svc = PhoneService::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            svc.fail(ip, 1_000);
        }
        assert!(svc.blocked(ip, 30_000, 3));
        assert!(!svc.blocked("192.0.2.2".parse().unwrap(), 30_000, 3));
        assert!(!svc.blocked(ip, 61_000, 3));
    }
}
