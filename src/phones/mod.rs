//! Phones that fetch configuration files instead of speaking TR-069: the pure part.
//!
//! Everything here is a function of values: a phone (MAC, vendor, model), its merged
//! [`Settings`], its [`Line`]s (SIP accounts with their passwords) and a [`Context`] (the
//! base URL the phone used) go in, bytes come out. No I/O, no clock, no database: the HTTP
//! and TFTP servers and the domain layer do those. One module per vendor:
//!
//! - [`polycom`]: `000000000000.cfg` / `<MAC>.cfg` master files, `<MAC>-ferroacs.cfg`;
//! - [`yealink`]: `y0000000000XX.cfg` by model code, `<mac>.cfg`, `*.boot` files;
//! - [`grandstream`]: `cfg<mac>.xml`, `cfg<model>.xml`, `cfg.xml` (`gs_provision` XML with
//!   P-values), optionally encrypted with [`opensslenc`];
//! - [`cisco`]: `SEP<MAC>.cnf.xml`, `XMLDefault.cnf.xml`; CTL/ITL are "file not found";
//! - [`snom`]: `snom<model>-<MAC>.htm` settings XML with `perm` flags;
//! - [`gigaset`]: `<MAC>.xml`, a `ProviderFrame` for the IP-DECT bases (N510, C610, DE410
//!   generation) or a `provisioning` parameter file for the N870 multicell system.
//!
//! [`files::parse`] maps a requested file name to what it is; [`render`] produces it.

pub mod cert;
pub mod cisco;
pub mod files;
pub mod gigaset;
pub mod grandstream;
pub mod models;
pub mod opensslenc;
pub mod polycom;
pub mod sip;
pub mod snom;
pub mod yealink;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use files::FileRequest;
pub use models::ModelInfo;

/// A phone's Ethernet address, the identity of a phone.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac([u8; 6]);

impl Mac {
    /// Parse a MAC in any case, with `:`, `-`, `.` or no separators (`00:04:F2:AA:BB:CC`,
    /// `0004.f2aa.bbcc`, `0004f2aabbcc`). Refused: anything but 12 hex digits, the all-zero
    /// address (Polycom's default file name, no phone's address) and group addresses.
    pub fn parse(s: &str) -> Result<Mac, String> {
        let s = s.trim();
        let mut digits = Vec::with_capacity(12);
        for c in s.chars() {
            match c {
                ':' | '-' | '.' => {}
                c if c.is_ascii_hexdigit() => digits.push(c),
                _ => {
                    return Err(format!(
                        "{s:?} is not a MAC address: {c:?} is neither a hex digit nor a separator (:, -, .)"
                    ))
                }
            }
        }
        if digits.len() != 12 {
            return Err(format!(
                "{s:?} is not a MAC address: it has {} hex digits, a MAC has 12",
                digits.len()
            ));
        }
        let mut b = [0u8; 6];
        for (i, pair) in digits.chunks(2).enumerate() {
            let hi = pair[0].to_digit(16).unwrap_or(0);
            let lo = pair[1].to_digit(16).unwrap_or(0);
            b[i] = (hi * 16 + lo) as u8;
        }
        if b == [0; 6] {
            return Err(
                "000000000000 is no phone's address (it names Polycom's default file)".into(),
            );
        }
        if b[0] & 1 == 1 {
            return Err(format!(
                "{s:?} is a group (multicast or broadcast) address, not a phone's"
            ));
        }
        Ok(Mac(b))
    }

    /// `0004f2aabbcc`: the stored form, Yealink and Grandstream file names.
    pub fn lower(&self) -> String {
        hex::encode(self.0)
    }

    /// `0004F2AABBCC`: Polycom and Cisco file names.
    pub fn upper(&self) -> String {
        hex::encode_upper(self.0)
    }

    /// `00:04:f2:aa:bb:cc`, for people.
    pub fn colons(&self) -> String {
        self.0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    pub fn bytes(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lower())
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({})", self.lower())
    }
}

/// The vendors whose file formats ferroacs writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Polycom,
    Yealink,
    Grandstream,
    Cisco,
    Snom,
    Gigaset,
}

impl Vendor {
    pub const ALL: &'static [Vendor] = &[
        Vendor::Polycom,
        Vendor::Yealink,
        Vendor::Grandstream,
        Vendor::Cisco,
        Vendor::Snom,
        Vendor::Gigaset,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Polycom => "polycom",
            Vendor::Yealink => "yealink",
            Vendor::Grandstream => "grandstream",
            Vendor::Cisco => "cisco",
            Vendor::Snom => "snom",
            Vendor::Gigaset => "gigaset",
        }
    }

    pub fn parse(s: &str) -> Option<Vendor> {
        Vendor::ALL
            .iter()
            .copied()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// The vendor a phone's User-Agent names, if any (for auto-registration).
    pub fn from_user_agent(ua: &str) -> Option<Vendor> {
        let ua = ua.to_ascii_lowercase();
        [
            ("polycom", Vendor::Polycom),
            ("yealink", Vendor::Yealink),
            ("grandstream", Vendor::Grandstream),
            ("cisco", Vendor::Cisco),
            ("snom", Vendor::Snom),
            ("gigaset", Vendor::Gigaset),
        ]
        .into_iter()
        .find(|(k, _)| ua.contains(k))
        .map(|(_, v)| v)
    }

    /// The pattern vendor-specific keys of this vendor must match.
    fn key_ok(self, k: &str) -> bool {
        let first_ok = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        let rest_ok = match self {
            Vendor::Grandstream => {
                k.len() > 1 && k.starts_with('P') && k[1..].chars().all(|c| c.is_ascii_digit())
            }
            Vendor::Polycom | Vendor::Yealink | Vendor::Gigaset => k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.')),
            Vendor::Cisco | Vendor::Snom => {
                k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            }
        };
        first_ok && rest_ok && k.len() <= 128
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the key of an OpenSSL `Salted__` file is derived (EVP_BytesToKey's digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyDigest {
    /// OpenSSL ≥ 1.1.0c's default (`-md sha256`).
    Sha256,
    /// OpenSSL < 1.1.0 (`-md md5`), what older Grandstream firmware expects.
    Md5,
}

/// Settings of a phone: by model (defaults), by profile (a group of phones), by phone; each
/// level overrides the one before field by field ([`Settings::overlay`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// NTP server name or address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ntp_server: Option<String>,
    /// IANA time zone (`Europe/Berlin`); vendors that take an offset get the standard one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Language as an ISO 639-1 code (`en`, `de`, `fr`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Codecs in order of preference: `PCMA`, `PCMU`, `G722`, `G729`, `opus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codecs: Option<Vec<String>>,
    /// The firmware version the phone should run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
    /// The firmware file (a URL, or a name relative to the provisioning URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_file: Option<String>,
    /// Grandstream: derive the encryption key with this digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_digest: Option<KeyDigest>,
    /// Keys of the vendor's own format, written as given (Grandstream `P30`, Yealink
    /// `local_time.date_format`, Polycom `feature.presence.enabled`, Snom `web_language`,
    /// Cisco top-level elements of `<device>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vendor: BTreeMap<String, String>,
}

/// Codec names ferroacs knows how to write for every vendor.
pub const CODECS: &[&str] = &["PCMA", "PCMU", "G722", "G729", "opus"];

impl Settings {
    /// `self` with every field `over` sets replaced; vendor keys merged (`over` wins).
    pub fn overlay(&self, over: &Settings) -> Settings {
        let mut vendor = self.vendor.clone();
        vendor.extend(over.vendor.iter().map(|(k, v)| (k.clone(), v.clone())));
        Settings {
            ntp_server: over.ntp_server.clone().or_else(|| self.ntp_server.clone()),
            time_zone: over.time_zone.clone().or_else(|| self.time_zone.clone()),
            language: over.language.clone().or_else(|| self.language.clone()),
            codecs: over.codecs.clone().or_else(|| self.codecs.clone()),
            firmware_version: over
                .firmware_version
                .clone()
                .or_else(|| self.firmware_version.clone()),
            firmware_file: over
                .firmware_file
                .clone()
                .or_else(|| self.firmware_file.clone()),
            encryption_digest: over.encryption_digest.or(self.encryption_digest),
            vendor,
        }
    }

    /// Check every field; `vendor` (when known) checks the vendor keys' names. The error is
    /// (field, message).
    pub fn validate(&self, vendor: Option<Vendor>) -> Result<(), (String, String)> {
        let text = |field: &str, v: &Option<String>| -> Result<(), (String, String)> {
            if let Some(v) = v {
                check_value(v).map_err(|m| (field.to_string(), m))?;
            }
            Ok(())
        };
        text("ntp_server", &self.ntp_server)?;
        text("language", &self.language)?;
        text("firmware_version", &self.firmware_version)?;
        text("firmware_file", &self.firmware_file)?;
        if let Some(tz) = &self.time_zone {
            if tz.parse::<chrono_tz::Tz>().is_err() {
                return Err((
                    "time_zone".into(),
                    format!(
                        "{tz:?} is not an IANA time zone (e.g. Europe/Berlin, America/New_York)"
                    ),
                ));
            }
        }
        if let Some(lang) = &self.language {
            if !(2..=3).contains(&lang.len()) || !lang.chars().all(|c| c.is_ascii_lowercase()) {
                return Err((
                    "language".into(),
                    format!("{lang:?} is not an ISO 639-1 code such as en, de or fr"),
                ));
            }
        }
        if let Some(codecs) = &self.codecs {
            for c in codecs {
                if codec(c).is_none() {
                    return Err((
                        "codecs".into(),
                        format!("{c:?} is not one of {}", CODECS.join(", ")),
                    ));
                }
            }
        }
        for (k, v) in &self.vendor {
            if let Some(vendor) = vendor {
                if !vendor.key_ok(k) {
                    let hint = match vendor {
                        Vendor::Grandstream => "P followed by digits, e.g. P30",
                        Vendor::Polycom | Vendor::Yealink | Vendor::Gigaset => {
                            "letters, digits, _ and ."
                        }
                        Vendor::Cisco | Vendor::Snom => "letters, digits and _",
                    };
                    return Err((format!("vendor.{k}"), format!("not a {vendor} key: {hint}")));
                }
            }
            check_value(v).map_err(|m| (format!("vendor.{k}"), m))?;
            if vendor_key_holds_password(k) {
                return Err((
                    format!("vendor.{k}"),
                    "a password among the vendor keys would be stored and shown in clear: SIP \
                     passwords go with the lines (write-only), the file password is the phone's \
                     own field"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

/// Whether a vendor key names a password, as vendors spell them: the last segment says so
/// (`account.1.password`, `reg.1.auth.password`, `device.auth.localAdminPassword`,
/// Snom's `user_pass1` and `http_pass`), or it is one of Grandstream's password P-values
/// (the admin's P2, the end user's P196, the SIP accounts' P34, P406, P506 and P606).
fn vendor_key_holds_password(key: &str) -> bool {
    const GRANDSTREAM: &[&str] = &["P2", "P34", "P196", "P406", "P506", "P606"];
    if GRANDSTREAM.contains(&key) {
        return true;
    }
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let lower = leaf.to_ascii_lowercase();
    let base = lower.trim_end_matches(|c: char| c.is_ascii_digit());
    crate::datamodel::is_secret(leaf) || base.ends_with("_pass") || base == "pass"
}

/// A value written into a file: printable, one line, bounded.
fn check_value(v: &str) -> Result<(), String> {
    if v.len() > 1024 {
        return Err("longer than 1024 bytes".into());
    }
    if v.chars().any(|c| c.is_control()) {
        return Err("contains a control character (line break, tab, ...)".into());
    }
    Ok(())
}

/// The canonical name of a codec (case-insensitive; `G711A`/`G.711ALaw` are `PCMA`).
pub fn codec(name: &str) -> Option<&'static str> {
    let n: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    match n.as_str() {
        "pcma" | "g711a" | "g711alaw" => Some("PCMA"),
        "pcmu" | "g711u" | "g711ulaw" | "g711mu" => Some("PCMU"),
        "g722" => Some("G722"),
        "g729" | "g729a" => Some("G729"),
        "opus" => Some("opus"),
        _ => None,
    }
}

/// A SIP account on line `number` of a phone, password included (it goes into the file).
#[derive(Clone, Default, PartialEq)]
pub struct Line {
    pub number: u32,
    pub enabled: bool,
    /// User part of the address of record.
    pub user: String,
    /// Digest user name (default `user`).
    pub auth_user: String,
    pub password: String,
    pub display_name: String,
    /// What the phone shows next to the line key.
    pub label: String,
    pub registrar: String,
    pub registrar_port: Option<u32>,
    pub outbound_proxy: String,
    pub outbound_proxy_port: Option<u32>,
    /// `UDP`, `TCP` or `TLS`.
    pub transport: String,
    pub register_expires: Option<u32>,
    pub voicemail: String,
    /// `InBand`, `RFC2833`/`RFC4733` or `SIPInfo`.
    pub dtmf: String,
    /// Line codecs (override the phone's).
    pub codecs: Vec<String>,
}

impl fmt::Debug for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Line")
            .field("number", &self.number)
            .field("user", &self.user)
            .field("registrar", &self.registrar)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A phone as the renderers see it: identity, merged settings, lines in line order.
#[derive(Debug, Clone)]
pub struct PhoneConfig {
    pub mac: Mac,
    pub vendor: Vendor,
    /// Lower-case model (`t46g`, `vvx400`, `gxp2170`, `cp-8841`, `d785`).
    pub model: String,
    pub settings: Settings,
    pub lines: Vec<Line>,
    /// When the rendered content last changed (UTC ms): Gigaset's `VERSION` stamp. Never
    /// the fetch time, so an unchanged phone gets the same stamp at every fetch.
    pub version_ms: i64,
}

impl PhoneConfig {
    /// The codecs of a line: its own, else the phone's, else the model's.
    pub fn codecs_of(&self, line: &Line) -> Vec<&'static str> {
        let list: &[String] = if !line.codecs.is_empty() {
            &line.codecs
        } else {
            self.settings.codecs.as_deref().unwrap_or(&[])
        };
        let mut out: Vec<&'static str> = Vec::new();
        for c in list.iter().filter_map(|c| codec(c)) {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }
}

/// What a renderer needs to know about the request.
#[derive(Debug, Clone)]
pub struct Context {
    /// The URL of the directory the phone fetched from (`http://acs:7547/prov/TOKEN`), no
    /// trailing slash; relative references (firmware, included files) are made from it.
    pub base_url: String,
    /// The SIP server for phones not known yet (Cisco `XMLDefault.cnf.xml`).
    pub default_sip_server: Option<String>,
    /// Now (UTC ms): the time-zone offset in effect is the one at this instant.
    pub now_ms: i64,
}

impl Context {
    /// A firmware reference: a URL as is, a name relative to the base URL.
    pub fn url_of(&self, file: &str) -> String {
        if file.contains("://") {
            file.to_string()
        } else {
            format!("{}/{}", self.base_url, file.trim_start_matches('/'))
        }
    }
}

/// The UTC offset in seconds of an IANA zone at `now_ms` (0 for an unknown zone).
pub fn utc_offset_secs(tz: &str, now_ms: i64) -> i32 {
    use chrono::{Offset, TimeZone};
    let Ok(tz) = tz.parse::<chrono_tz::Tz>() else {
        return 0;
    };
    let Some(t) = chrono::DateTime::from_timestamp_millis(now_ms) else {
        return 0;
    };
    tz.offset_from_utc_datetime(&t.naive_utc())
        .fix()
        .local_minus_utc()
}

/// The firmware version a request's query string reports (`fw=`, `firmware=` or
/// `version=`, e.g. a provisioning URL template ending in `?fw={firmware}`), if it looks
/// like a version: at most 40 letters, digits, `.`, `-`, `_`.
pub fn firmware_from_query(query: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (matches!(k, "fw" | "firmware" | "version")
            && !v.is_empty()
            && v.len() <= 40
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        .then(|| v.to_string())
    })
}

/// The firmware version a phone's User-Agent names (Polycom `…-UA/5.9.0.9373`, Yealink
/// `Yealink SIP-T46G 28.83.0.50 …`, Grandstream `… SW 1.0.11.3 …`, Snom `snomD785-SIP
/// 10.1.33.33`, Cisco `Cisco-CP8841/12.8.1`).
pub fn firmware_from_user_agent(ua: &str) -> Option<String> {
    let words: Vec<&str> = ua.split_whitespace().collect();
    let version = |s: &str| -> Option<String> {
        let s = s.trim_matches(|c: char| c == ';' || c == ')' || c == '(');
        (s.chars().next().is_some_and(|c| c.is_ascii_digit())
            && s.contains('.')
            && s.len() <= 40
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        .then(|| s.to_string())
    };
    if let Some(i) = ua.find("-UA/") {
        return ua[i + 4..].split_whitespace().next().and_then(version);
    }
    if let Some(i) = words.iter().position(|w| *w == "SW") {
        return words.get(i + 1).and_then(|w| version(w));
    }
    if let Some(w) = words.first() {
        if w.starts_with("Cisco-") {
            return w.split_once('/').and_then(|(_, v)| version(v));
        }
    }
    if let Some(i) = words
        .iter()
        .position(|w| w.starts_with("SIP-T") || w.starts_with("snom") || w.ends_with("-SIP"))
    {
        return words.get(i + 1).and_then(|w| version(w));
    }
    None
}

/// The MAC a User-Agent names as one of its words (`…;7C2F80AABBCC`, `00:15:65:aa:bb:cc`):
/// 12 hex digits, or six pairs separated by `:` or `-`.
pub fn mac_from_user_agent(ua: &str) -> Option<Mac> {
    ua.split(|c: char| c.is_whitespace() || matches!(c, ';' | '/' | '(' | ')' | ','))
        .find_map(|w| {
            let hex = w.len() == 12 && w.chars().all(|c| c.is_ascii_hexdigit());
            let pairs = w.len() == 17
                && w.split([':', '-']).count() == 6
                && w.split([':', '-'])
                    .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
            (hex || pairs).then(|| Mac::parse(w).ok()).flatten()
        })
}

/// A rendered file.
#[derive(Clone, PartialEq)]
pub struct Rendered {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
    /// Holds passwords (never log it, encrypt where the vendor can).
    pub secret: bool,
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered")
            .field("content_type", &self.content_type)
            .field("len", &self.bytes.len())
            .field("secret", &self.secret)
            .finish()
    }
}

impl Rendered {
    fn xml(s: String, secret: bool) -> Rendered {
        Rendered {
            content_type: "application/xml",
            bytes: s.into_bytes(),
            secret,
        }
    }

    fn text(s: String, secret: bool) -> Rendered {
        Rendered {
            content_type: "text/plain; charset=utf-8",
            bytes: s.into_bytes(),
            secret,
        }
    }
}

/// Escape text for XML content and attribute values; control characters become spaces.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A value for a one-line `key = value` format: control characters become spaces.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Render the file `req` names for `phone` (`None` for requests that name no phone:
/// defaults, common files). `Ok(None)` = "file not found" (CTL/ITL, legacy binary files, a
/// file of another vendor), so the phone moves on to its next name.
pub fn render(req: &FileRequest, phone: Option<&PhoneConfig>, ctx: &Context) -> Option<Rendered> {
    use FileRequest as F;
    match (req, phone) {
        (F::PolycomDefaultMaster, _) => Some(polycom::default_master(ctx)),
        (F::MacCfg(_), Some(p)) if p.vendor == Vendor::Polycom => Some(polycom::master(p, ctx)),
        (F::PolycomPhone(_), Some(p)) if p.vendor == Vendor::Polycom => {
            Some(polycom::phone(p, ctx))
        }
        (F::MacCfg(_), Some(p)) if p.vendor == Vendor::Yealink => Some(yealink::mac_cfg(p, ctx)),
        (F::YealinkCommon(code), _) => {
            models::by_yealink_code(code).map(|m| yealink::common(m, ctx))
        }
        (F::YealinkBoot(None), _) => Some(yealink::boot(None, ctx)),
        (F::YealinkBoot(Some(_)), Some(p)) if p.vendor == Vendor::Yealink => {
            Some(yealink::boot(Some(p), ctx))
        }
        (F::GrandstreamMac(_), Some(p)) if p.vendor == Vendor::Grandstream => {
            Some(grandstream::phone(p, ctx))
        }
        (F::GrandstreamModel(model), _) => Some(grandstream::model(model, ctx)),
        (F::GrandstreamGlobal, _) => Some(grandstream::global(ctx)),
        (F::CiscoSep(_), Some(p)) if p.vendor == Vendor::Cisco => Some(cisco::sep(p, ctx)),
        (F::CiscoDefault, _) => cisco::xml_default(ctx),
        (F::SnomPhone(_, _), Some(p)) if p.vendor == Vendor::Snom => Some(snom::phone(p, ctx)),
        (F::GigasetMac(_), Some(p)) if p.vendor == Vendor::Gigaset => Some(gigaset::phone(p, ctx)),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod testutil {
    use super::*;

    /// A phone with two lines, the same in every vendor's golden test.
    pub fn phone(vendor: Vendor, model: &str, mac: &str) -> PhoneConfig {
        let defaults = models::defaults(vendor, model);
        let own = Settings {
            ntp_server: Some("ntp.example.net".into()),
            time_zone: Some("Europe/Berlin".into()),
            language: Some("de".into()),
            ..Settings::default()
        };
        PhoneConfig {
            mac: Mac::parse(mac).unwrap(),
            vendor,
            model: model.into(),
            settings: defaults.overlay(&own),
            lines: vec![
                Line {
                    number: 1,
                    enabled: true,
                    user: "1001".into(),
                    auth_user: "1001".into(),
                    password: "s3cret&<pw>".into(),
                    display_name: "Alice \"A\" Smith".into(),
                    label: "1001".into(),
                    registrar: "sip.example.net".into(),
                    registrar_port: Some(5060),
                    outbound_proxy: "proxy.example.net".into(),
                    outbound_proxy_port: Some(5070),
                    transport: "UDP".into(),
                    register_expires: Some(600),
                    voicemail: "*97".into(),
                    dtmf: "RFC2833".into(),
                    codecs: vec![],
                },
                Line {
                    number: 2,
                    enabled: true,
                    user: "1002".into(),
                    auth_user: "auth1002".into(),
                    password: "pw2".into(),
                    display_name: "Bob".into(),
                    label: "Bob".into(),
                    registrar: "sip.example.net".into(),
                    registrar_port: None,
                    outbound_proxy: String::new(),
                    outbound_proxy_port: None,
                    transport: "TLS".into(),
                    register_expires: None,
                    voicemail: String::new(),
                    dtmf: "SIPInfo".into(),
                    codecs: vec!["G722".into(), "PCMA".into()],
                },
            ],
            version_ms: 1_768_400_100_000,
        }
    }

    /// Winter in Berlin (UTC+1): 2026-01-15.
    pub fn ctx() -> Context {
        Context {
            base_url: "http://acs.example.net:7547/prov/TOKEN".into(),
            default_sip_server: Some("sip.example.net".into()),
            now_ms: 1_768_435_200_000,
        }
    }

    /// Compare with a golden file under `tests/fixtures/phones/`; with
    /// `FERROACS_BLESS=1` the file is (re)written instead.
    pub fn golden(name: &str, got: &[u8]) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/phones")
            .join(name);
        if std::env::var_os("FERROACS_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, got).unwrap();
        }
        let want = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (FERROACS_BLESS=1 writes it)", path.display()));
        assert_eq!(
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(&want),
            "{name} differs from its golden file"
        );
    }

    /// `xmllint --noout` accepts it (skipped when xmllint is not installed and not under CI).
    pub fn xmllint(name: &str, xml: &[u8]) {
        use std::io::Write;
        let child = std::process::Command::new("xmllint")
            .args(["--noout", "--nonet", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(_) if std::env::var_os("CI").is_none() => {
                eprintln!("xmllint not installed: {name} not checked");
                return;
            }
            Err(e) => panic!("xmllint: {e}"),
        };
        child.stdin.take().unwrap().write_all(xml).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "xmllint refuses {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn macs_in_any_spelling_are_one_phone() {
        let want = "0004f2aabbcc";
        for s in [
            "0004f2aabbcc",
            "0004F2AABBCC",
            "00:04:f2:aa:bb:cc",
            "00-04-F2-AA-BB-CC",
            "0004.f2aa.bbcc",
            " 00:04:F2:aa:BB:cc ",
        ] {
            assert_eq!(Mac::parse(s).unwrap().lower(), want, "{s}");
        }
        let m = Mac::parse(want).unwrap();
        assert_eq!(m.upper(), "0004F2AABBCC");
        assert_eq!(m.colons(), "00:04:f2:aa:bb:cc");
    }

    #[test]
    fn malformed_macs_say_what_is_wrong() {
        for (s, part) in [
            ("0004f2aabbc", "11 hex digits"),
            ("0004f2aabbccd", "13 hex digits"),
            ("0004f2aabbcg", "'g'"),
            ("00/04/f2/aa/bb/cc", "'/'"),
            ("../etc/passwd", "'/'"),
            ("000000000000", "default file"),
            ("ffffffffffff", "group"),
            ("", "0 hex digits"),
        ] {
            let e = Mac::parse(s).unwrap_err();
            assert!(e.contains(part), "{s}: {e}");
        }
    }

    #[test]
    fn settings_overlay_field_by_field() {
        let mut base = Settings {
            ntp_server: Some("a".into()),
            language: Some("en".into()),
            ..Settings::default()
        };
        base.vendor.insert("x".into(), "1".into());
        base.vendor.insert("y".into(), "1".into());
        let mut over = Settings {
            language: Some("de".into()),
            ..Settings::default()
        };
        over.vendor.insert("y".into(), "2".into());
        let m = base.overlay(&over);
        assert_eq!(m.ntp_server.as_deref(), Some("a"));
        assert_eq!(m.language.as_deref(), Some("de"));
        assert_eq!(m.vendor["x"], "1");
        assert_eq!(m.vendor["y"], "2");
    }

    #[test]
    fn settings_refuse_what_could_break_a_file() {
        let mut s = Settings::default();
        s.vendor.insert("P30".into(), "x\nP34 = evil".into());
        let (f, m) = s.validate(Some(Vendor::Grandstream)).unwrap_err();
        assert_eq!(f, "vendor.P30");
        assert!(m.contains("control character"), "{m}");
        let mut s = Settings::default();
        s.vendor.insert("account.1.label".into(), "x".into());
        assert_eq!(
            s.validate(Some(Vendor::Grandstream)).unwrap_err().0,
            "vendor.account.1.label"
        );
        assert!(s.validate(Some(Vendor::Yealink)).is_ok());
        // Passwords never go among the vendor keys (stored and shown in clear).
        for (vendor, key) in [
            (Vendor::Yealink, "account.1.password"),
            (Vendor::Polycom, "reg.1.auth.password"),
            (Vendor::Polycom, "device.auth.localAdminPassword"),
            (Vendor::Snom, "user_pass1"),
            (Vendor::Snom, "http_pass"),
            (Vendor::Grandstream, "P34"),
            (Vendor::Grandstream, "P2"),
        ] {
            let mut s = Settings::default();
            s.vendor.insert(key.into(), "secret".into());
            let (field, message) = s.validate(Some(vendor)).unwrap_err();
            assert_eq!(field, format!("vendor.{key}"));
            assert!(message.contains("password"), "{message}");
        }
        for (vendor, key) in [
            (Vendor::Grandstream, "P30"),
            (Vendor::Grandstream, "P3"),
            (Vendor::Snom, "user_pname1"),
            (Vendor::Yealink, "account.1.password_required"),
        ] {
            let mut s = Settings::default();
            s.vendor.insert(key.into(), "x".into());
            assert!(s.validate(Some(vendor)).is_ok(), "{key}");
        }
        let s = Settings {
            time_zone: Some("Mars/Olympus".into()),
            ..Settings::default()
        };
        assert_eq!(s.validate(None).unwrap_err().0, "time_zone");
        let s = Settings {
            codecs: Some(vec!["PCMA".into(), "speex".into()]),
            ..Settings::default()
        };
        assert_eq!(s.validate(None).unwrap_err().0, "codecs");
    }

    #[test]
    fn offsets_follow_daylight_saving() {
        let winter = 1_768_435_200_000; // 2026-01-15
        let summer = 1_784_073_600_000; // 2026-07-15
        assert_eq!(utc_offset_secs("Europe/Berlin", winter), 3600);
        assert_eq!(utc_offset_secs("Europe/Berlin", summer), 7200);
        assert_eq!(utc_offset_secs("America/New_York", winter), -5 * 3600);
        assert_eq!(utc_offset_secs("nowhere", winter), 0);
    }

    #[test]
    fn vendors_from_user_agents() {
        for (ua, v) in [
            (
                "FileTransport PolycomVVX-VVX_400-UA/5.9.0.9373",
                Vendor::Polycom,
            ),
            (
                "Yealink SIP-T46G 28.83.0.50 00:15:65:aa:bb:cc",
                Vendor::Yealink,
            ),
            (
                "Grandstream Model HW GXP2170 SW 1.0.11.3 DevId 000b82aabbcc",
                Vendor::Grandstream,
            ),
        ] {
            assert_eq!(Vendor::from_user_agent(ua), Some(v), "{ua}");
        }
        assert_eq!(Vendor::from_user_agent("curl/8.0"), None);
    }

    #[test]
    fn firmware_versions_from_user_agents() {
        for (ua, v) in [
            (
                "FileTransport PolycomVVX-VVX_400-UA/5.9.0.9373",
                Some("5.9.0.9373"),
            ),
            (
                "Yealink SIP-T46G 28.83.0.50 00:15:65:aa:bb:cc",
                Some("28.83.0.50"),
            ),
            (
                "Grandstream Model HW GXP2170 SW 1.0.11.3 DevId 000b82aabbcc",
                Some("1.0.11.3"),
            ),
            (
                "Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33; snom785 jffs2 v3.36)",
                Some("10.1.33.33"),
            ),
            ("Cisco-CP8841/12.8.1", Some("12.8.1")),
            ("curl/8.5.0", None),
            ("", None),
        ] {
            assert_eq!(firmware_from_user_agent(ua).as_deref(), v, "{ua}");
        }
    }

    #[test]
    fn macs_in_user_agents() {
        let m = |s: &str| mac_from_user_agent(s).map(|m| m.lower());
        assert_eq!(
            m("Gigaset N510 IP PRO/42.250.00.000.000;7C2F80AABBCC").as_deref(),
            Some("7c2f80aabbcc")
        );
        assert_eq!(
            m("Yealink SIP-T46G 28.83.0.50 00:15:65:aa:bb:cc").as_deref(),
            Some("001565aabbcc")
        );
        assert_eq!(m("curl/8.5.0"), None);
        assert_eq!(m("Cisco-CP8841/12.8.1"), None);
    }

    #[test]
    fn firmware_in_query_strings() {
        assert_eq!(
            firmware_from_query("mac=0004f2aabbcc&fw=5.9.1.100").as_deref(),
            Some("5.9.1.100")
        );
        assert_eq!(
            firmware_from_query("version=2.1_b").as_deref(),
            Some("2.1_b")
        );
        assert_eq!(firmware_from_query("fw=").as_deref(), None);
        assert_eq!(firmware_from_query("fw=1.0%0Aevil").as_deref(), None);
        assert_eq!(firmware_from_query("x=1").as_deref(), None);
    }
}
