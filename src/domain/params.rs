//! What ferroacs knows of a device's parameters, and its compact stored form.
//!
//! A [`ParamTree`] is a sorted map from full parameter name (objects end in `.`) to what we
//! know of it: value, CWMP type, writability, notification/access attributes and when it was
//! learnt. It is stored as one blob per device: names front-coded (sorted names share long
//! prefixes), types as one byte, timestamps as deltas, then deflate-compressed. A device of a
//! few hundred parameters takes a few kilobytes, and a session reads or writes the whole tree
//! in one round trip.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Read;

use serde::Serialize;

use crate::error::{Error, Result};

/// The most entries a stored delta holds (see [`delta_after`]).
pub const MAX_DELTA_ENTRIES: usize = 64;
/// The most bytes a stored delta takes: it lives in the device row, which every Inform
/// rewrites, and stays well inside one database page (and, on PostgreSQL, inline).
pub const MAX_DELTA_BYTES: usize = 1024;

/// The delta to store after a session that learnt `learnt`, over a stored tree whose delta
/// was `previous`: the two together, uncompressed, when they stay small (at most
/// [`MAX_DELTA_ENTRIES`] entries and [`MAX_DELTA_BYTES`] bytes). `None`: write the whole
/// tree instead (which clears the delta), as when `previous` is unreadable.
pub fn delta_after(previous: Option<&[u8]>, learnt: &ParamTree) -> Option<Vec<u8>> {
    if learnt.len() > MAX_DELTA_ENTRIES {
        return None;
    }
    let mut delta = match previous {
        Some(p) => ParamTree::decode(p).ok()?,
        None => ParamTree::new(),
    };
    delta.overlay(learnt);
    if delta.len() > MAX_DELTA_ENTRIES {
        return None;
    }
    let encoded = delta.encode(false);
    (encoded.len() <= MAX_DELTA_BYTES).then_some(encoded)
}

/// A device's stored tree, its delta laid over the whole tree (see `store::params`), read
/// and decoded on the caller's (blocking) thread.
pub fn read_tree(st: &crate::store::Store, device_id: &str) -> Result<ParamTree> {
    let parts = st.load_params(device_id)?;
    Ok(ParamTree::stored(
        parts.base.as_deref(),
        parts.delta.as_deref(),
    ))
}

/// Whether a parameter holds a secret; the rule belongs to the data model.
pub use crate::datamodel::is_secret;

/// What is known of one parameter or object.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ParamEntry {
    /// `None` for objects and for parameters whose value has not been read yet.
    pub value: Option<String>,
    /// CWMP type as the device reported it (`xsd:string`, `xsd:unsignedInt`, ...); the
    /// types CWMP defines are shared, not copied per parameter.
    pub xsd_type: Cow<'static, str>,
    pub writable: Option<bool>,
    pub object: bool,
    pub notification: Option<u8>,
    pub access_list: Option<Vec<String>>,
    /// When the value (or, for objects, the existence) was last learnt, ms since the epoch.
    pub updated_at: i64,
}

/// The known parameters of one device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParamTree {
    map: BTreeMap<String, ParamEntry>,
}

const FORMAT_V1: u8 = 1;
const FLAG_OBJECT: u8 = 1;
const FLAG_WRITABLE_KNOWN: u8 = 2;
const FLAG_WRITABLE: u8 = 4;
const FLAG_VALUE: u8 = 8;
const FLAG_NOTIFICATION: u8 = 16;
const FLAG_ACCESS: u8 = 32;

const TYPES: &[&str] = &[
    "xsd:string",
    "xsd:int",
    "xsd:unsignedInt",
    "xsd:boolean",
    "xsd:dateTime",
    "xsd:base64",
    "xsd:long",
    "xsd:unsignedLong",
    "xsd:hexBinary",
    "",
];
const TYPE_OTHER: u8 = 255;

impl ParamTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&ParamEntry> {
        self.map.get(name)
    }

    /// The entry of `name` with its stored name.
    pub fn get_key_value(&self, name: &str) -> Option<(&String, &ParamEntry)> {
        self.map.get_key_value(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &ParamEntry)> {
        self.map.iter()
    }

    /// Entries whose name starts with `prefix` (all when empty), in name order.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a ParamEntry)> + 'a {
        self.map
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// The entry of `name` for `f` to change, created (empty) if it is not there; the name is
    /// copied only then.
    fn update(&mut self, name: &str, f: impl FnOnce(&mut ParamEntry)) {
        if let Some(e) = self.map.get_mut(name) {
            f(e);
            return;
        }
        let mut e = ParamEntry::default();
        f(&mut e);
        self.map.insert(name.to_owned(), e);
    }

    /// Record a value read from the device (GetParameterValues, Inform, a successful set).
    pub fn set_value(&mut self, name: &str, value: &str, xsd_type: &str, at: i64) {
        self.update(name, |e| {
            match &mut e.value {
                Some(v) => value.clone_into(v),
                None => e.value = Some(value.to_owned()),
            }
            set_value_fields(e, xsd_type, at);
        });
    }

    /// [`set_value`](Self::set_value) taking the value (and the name, when it is new) as
    /// they come out of a parsed response, without copying them.
    pub fn set_value_owned(&mut self, name: String, value: String, xsd_type: &str, at: i64) {
        match self.map.get_mut(&name) {
            Some(e) => {
                e.value = Some(value);
                set_value_fields(e, xsd_type, at);
            }
            None => {
                let mut e = ParamEntry {
                    value: Some(value),
                    ..ParamEntry::default()
                };
                set_value_fields(&mut e, xsd_type, at);
                self.map.insert(name, e);
            }
        }
    }

    /// Record that a parameter or object exists (GetParameterNames).
    pub fn set_info(&mut self, name: &str, writable: bool, at: i64) {
        self.update(name, |e| {
            set_info_fields(e, name.ends_with('.'), writable, at)
        });
    }

    /// [`set_info`](Self::set_info) taking the name (one look-up, no copy).
    pub fn set_info_owned(&mut self, name: String, writable: bool, at: i64) {
        let object = name.ends_with('.');
        let e = self.map.entry(name).or_default();
        set_info_fields(e, object, writable, at);
    }

    /// Record attributes (GetParameterAttributes / a successful SetParameterAttributes).
    pub fn set_attributes(
        &mut self,
        name: &str,
        notification: Option<u8>,
        access: Option<Vec<String>>,
        at: i64,
    ) {
        self.update(name, |e| {
            if notification.is_some() {
                e.notification = notification;
            }
            if access.is_some() {
                e.access_list = access;
            }
            e.object = name.ends_with('.');
            if e.updated_at == 0 {
                e.updated_at = at;
            }
        });
    }

    /// Forget an object and everything below it (DeleteObject, 9005 on a path).
    pub fn remove_subtree(&mut self, prefix: &str) -> usize {
        let keys: Vec<String> = self.with_prefix(prefix).map(|(k, _)| k.clone()).collect();
        for k in &keys {
            self.map.remove(k);
        }
        keys.len()
    }

    /// Forget the entry `name` alone (not the names that merely start with it).
    pub fn remove(&mut self, name: &str) -> Option<ParamEntry> {
        self.map.remove(name)
    }

    /// Insert an entry as is.
    pub fn insert(&mut self, name: String, entry: ParamEntry) {
        self.map.insert(name, entry);
    }

    /// Names of leaf parameters (not objects) under `prefix`.
    pub fn leaves_under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.with_prefix(prefix)
            .filter(|(_, e)| !e.object)
            .map(|(k, _)| k)
    }

    /// Overlay `other` where its entries are at least as new.
    pub fn overlay(&mut self, other: &ParamTree) {
        for (k, v) in &other.map {
            match self.map.get_mut(k) {
                Some(mine) if mine.updated_at > v.updated_at => {}
                Some(mine) => {
                    if v.value.is_some() {
                        mine.value = v.value.clone();
                    }
                    if !v.xsd_type.is_empty() {
                        mine.xsd_type = v.xsd_type.clone();
                    }
                    if v.writable.is_some() {
                        mine.writable = v.writable;
                    }
                    if v.notification.is_some() {
                        mine.notification = v.notification;
                    }
                    if v.access_list.is_some() {
                        mine.access_list = v.access_list.clone();
                    }
                    mine.updated_at = v.updated_at;
                }
                None => {
                    self.map.insert(k.clone(), v.clone());
                }
            }
        }
    }

    /// A stored tree: the whole tree `base` with the `delta` learnt since laid over it (see
    /// `store::params`). An unreadable part counts as empty: the tree is read again from
    /// the device at its next discovery.
    pub fn stored(base: Option<&[u8]>, delta: Option<&[u8]>) -> ParamTree {
        let mut tree = base
            .and_then(|b| ParamTree::decode(b).ok())
            .unwrap_or_default();
        if let Some(d) = delta.and_then(|d| ParamTree::decode(d).ok()) {
            tree.overlay(&d);
        }
        tree
    }

    /// Encode (uncompressed when `compress` is false, e.g. for the handful of Inform values).
    pub fn encode(&self, compress: bool) -> Vec<u8> {
        let mut raw = Vec::with_capacity(16 + self.map.len() * 24);
        let base = self.map.values().map(|e| e.updated_at).min().unwrap_or(0);
        put_varint(&mut raw, self.map.len() as u64);
        put_varint(&mut raw, zigzag(base));
        let mut prev: &str = "";
        for (name, e) in &self.map {
            let shared = common_prefix(prev, name);
            put_varint(&mut raw, shared as u64);
            put_bytes(&mut raw, &name.as_bytes()[shared..]);
            let mut flags = 0u8;
            if e.object {
                flags |= FLAG_OBJECT;
            }
            if let Some(w) = e.writable {
                flags |= FLAG_WRITABLE_KNOWN;
                if w {
                    flags |= FLAG_WRITABLE;
                }
            }
            if e.value.is_some() {
                flags |= FLAG_VALUE;
            }
            if e.notification.is_some() {
                flags |= FLAG_NOTIFICATION;
            }
            if e.access_list.is_some() {
                flags |= FLAG_ACCESS;
            }
            raw.push(flags);
            match TYPES.iter().position(|t| *t == e.xsd_type) {
                Some(i) => raw.push(i as u8),
                None => {
                    raw.push(TYPE_OTHER);
                    put_bytes(&mut raw, e.xsd_type.as_bytes());
                }
            }
            if let Some(v) = &e.value {
                put_bytes(&mut raw, v.as_bytes());
            }
            if let Some(n) = e.notification {
                raw.push(n);
            }
            if let Some(a) = &e.access_list {
                put_varint(&mut raw, a.len() as u64);
                for s in a {
                    put_bytes(&mut raw, s.as_bytes());
                }
            }
            put_varint(&mut raw, (e.updated_at - base).max(0) as u64);
            prev = name;
        }
        let mut out = Vec::with_capacity(raw.len() / 2 + 8);
        out.push(FORMAT_V1);
        if compress && raw.len() > 256 {
            out.push(1);
            if deflate(&raw, &mut out) {
                return out;
            }
            out.truncate(1);
        }
        out.push(0);
        out.extend_from_slice(&raw);
        out
    }

    /// Decode what [`encode`](Self::encode) produced.
    pub fn decode(data: &[u8]) -> Result<ParamTree> {
        let bad = |what: &str| Error::internal(format!("stored parameter tree is corrupt: {what}"));
        if data.len() < 2 || data[0] != FORMAT_V1 {
            return Err(bad("unknown format"));
        }
        let inflated;
        let raw: &[u8] = match data[1] {
            0 => &data[2..],
            1 => {
                let mut v = Vec::with_capacity(data.len() * 4);
                flate2::read::DeflateDecoder::new(&data[2..])
                    .read_to_end(&mut v)
                    .map_err(|_| bad("compressed data"))?;
                inflated = v;
                &inflated
            }
            _ => return Err(bad("unknown compression")),
        };
        let mut r = Reader { buf: raw, pos: 0 };
        let count = r.varint().ok_or_else(|| bad("count"))? as usize;
        let base = unzigzag(r.varint().ok_or_else(|| bad("base"))?);
        let mut map = BTreeMap::new();
        let mut prev = String::new();
        for _ in 0..count {
            let shared = r.varint().ok_or_else(|| bad("prefix"))? as usize;
            let suffix = r.bytes().ok_or_else(|| bad("name"))?;
            if shared > prev.len() {
                return Err(bad("prefix length"));
            }
            let mut name = Vec::with_capacity(shared + suffix.len());
            name.extend_from_slice(&prev.as_bytes()[..shared]);
            name.extend_from_slice(suffix);
            let name = String::from_utf8(name).map_err(|_| bad("name encoding"))?;
            let flags = r.byte().ok_or_else(|| bad("flags"))?;
            let t = r.byte().ok_or_else(|| bad("type"))?;
            let xsd_type = if t == TYPE_OTHER {
                Cow::Owned(
                    String::from_utf8(r.bytes().ok_or_else(|| bad("type name"))?.to_vec())
                        .map_err(|_| bad("type"))?,
                )
            } else {
                Cow::Borrowed(*TYPES.get(t as usize).ok_or_else(|| bad("type code"))?)
            };
            let value = if flags & FLAG_VALUE != 0 {
                Some(
                    String::from_utf8(r.bytes().ok_or_else(|| bad("value"))?.to_vec())
                        .map_err(|_| bad("value encoding"))?,
                )
            } else {
                None
            };
            let notification = if flags & FLAG_NOTIFICATION != 0 {
                Some(r.byte().ok_or_else(|| bad("notification"))?)
            } else {
                None
            };
            let access_list = if flags & FLAG_ACCESS != 0 {
                let n = r.varint().ok_or_else(|| bad("access count"))? as usize;
                let mut v = Vec::with_capacity(n.min(16));
                for _ in 0..n {
                    v.push(
                        String::from_utf8(r.bytes().ok_or_else(|| bad("access"))?.to_vec())
                            .map_err(|_| bad("access"))?,
                    );
                }
                Some(v)
            } else {
                None
            };
            let delta = r.varint().ok_or_else(|| bad("timestamp"))?;
            let entry = ParamEntry {
                value,
                xsd_type,
                writable: (flags & FLAG_WRITABLE_KNOWN != 0).then_some(flags & FLAG_WRITABLE != 0),
                object: flags & FLAG_OBJECT != 0,
                notification,
                access_list,
                updated_at: base + delta as i64,
            };
            prev.clone_from(&name);
            map.insert(name, entry);
        }
        Ok(ParamTree { map })
    }
}

thread_local! {
    /// One deflate state per thread, reset between trees: setting one up (allocating and
    /// clearing its hash tables) costs more than compressing a tree of a few hundred
    /// parameters.
    static DEFLATE: RefCell<Option<flate2::Compress>> = const { RefCell::new(None) };
}

/// The deflate level of stored trees. Level 1 compresses the 9.4 KB of a 300-parameter tree
/// several times faster but into a blob ≈ 9 % larger, and the A/B of the whole discovery could
/// not tell the two apart (deflate is ≈ 3 % of a first contact's CPU); parsing, learning and
/// encoding a discovery's responses (`codec/discovery_tree_300`) took 0.94× the time for a
/// blob 10 % larger: level 6 is kept.
const DEFLATE_LEVEL: u32 = 6;

/// Raw deflate ([`DEFLATE_LEVEL`]) of `raw`, appended to `out`. False if the compressor failed (then
/// `out` holds a partial stream and the caller stores the tree uncompressed).
fn deflate(raw: &[u8], out: &mut Vec<u8>) -> bool {
    DEFLATE.with(|cell| {
        let mut fresh;
        let mut slot = cell.try_borrow_mut().ok();
        let c = match slot.as_deref_mut() {
            Some(state) => {
                let c = state.get_or_insert_with(|| {
                    flate2::Compress::new(flate2::Compression::new(DEFLATE_LEVEL), false)
                });
                c.reset();
                c
            }
            None => {
                fresh = flate2::Compress::new(flate2::Compression::new(DEFLATE_LEVEL), false);
                &mut fresh
            }
        };
        loop {
            out.reserve(raw.len() / 2 + 64);
            let rest = raw.get(c.total_in() as usize..).unwrap_or_default();
            match c.compress_vec(rest, out, flate2::FlushCompress::Finish) {
                Ok(flate2::Status::StreamEnd) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
}

/// What [`ParamTree::set_info`] sets: the node exists, is an object or not, and is
/// writable or not.
fn set_info_fields(e: &mut ParamEntry, object: bool, writable: bool, at: i64) {
    e.writable = Some(writable);
    e.object = object;
    if e.updated_at == 0 {
        e.updated_at = at;
    }
}

/// What [`ParamTree::set_value`] sets besides the value.
fn set_value_fields(e: &mut ParamEntry, xsd_type: &str, at: i64) {
    if !xsd_type.is_empty() && e.xsd_type != xsd_type {
        e.xsd_type = shared_type(xsd_type);
    }
    e.object = false;
    e.updated_at = at;
}

/// `t` as one of the shared [`TYPES`] when it is one, else a copy.
fn shared_type(t: &str) -> Cow<'static, str> {
    match TYPES.iter().find(|k| **k == t) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(t.to_owned()),
    }
}

fn common_prefix(a: &str, b: &str) -> usize {
    let mut n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !b.is_char_boundary(n) {
        n -= 1;
    }
    n
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.varint()? as usize;
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_taken_or_copied_make_the_same_tree() {
        let names = [
            ("IGD.", false),
            ("IGD.A", true),
            ("IGD.B.", true),
            ("IGD.C", false),
        ];
        let mut copied = ParamTree::new();
        let mut taken = ParamTree::new();
        for t in [&mut copied, &mut taken] {
            // A value learnt before (an Inform's) keeps its value and time.
            t.set_value("IGD.A", "1", "xsd:unsignedInt", 5);
        }
        for (n, w) in names {
            copied.set_info(n, w, 9);
            taken.set_info_owned(n.to_string(), w, 9);
        }
        assert_eq!(copied, taken);
        assert_eq!(
            taken
                .get("IGD.A")
                .map(|e| (e.value.as_deref(), e.updated_at)),
            Some((Some("1"), 5))
        );
        assert!(taken
            .get("IGD.B.")
            .is_some_and(|e| e.object && e.writable == Some(true)));
    }

    #[test]
    fn secrets_by_model_or_name() {
        assert!(is_secret(
            "InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.Line.1.SIP.AuthPassword"
        ));
        assert!(is_secret(
            "Device.ManagementServer.ConnectionRequestPassword"
        ));
        assert!(is_secret(
            "Device.X_TP_Services.VoiceService.1.Line.2.SIP.AuthPassword"
        ));
        assert!(!is_secret("Device.DeviceInfo.ProvisioningCode"));
        assert!(!is_secret(
            "Device.Services.VoiceService.1.SIP.Client.1.AuthUserName"
        ));
        // Vendor spellings, from real devices' parameter dumps.
        for secret in [
            "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.X_TP_WEPKey1",
            "InternetGatewayDevice.X_HW_WLAN.KeyPassphrase2G",
            "InternetGatewayDevice.X_HW_WLAN.KeyPassphrase5G",
            "InternetGatewayDevice.X_Hotspot.UAMSecret",
            "InternetGatewayDevice.X_VPN.VPNClient.1.Pskey",
            "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.X_ZTE-COM_WPAPSK",
            "Device.X_ACME_Admin.AdminPasswd",
            "Device.X_ACME_RADIUS.SharedSecret_1",
        ] {
            assert!(is_secret(secret), "{secret}");
        }
        for plain in [
            "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.WEPKeyIndex",
            "InternetGatewayDevice.X_ACME.PasswordRequired",
            "Device.X_ACME.SecretType",
            "Device.ManagementServer.ParameterKey",
            "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.BeaconType",
            "Device.WiFi.AccessPoint.1.Security.ModeEnabled",
            "Device.X_ACME.PSKFailures",
        ] {
            assert!(!is_secret(plain), "{plain}");
        }
    }

    fn sample(n: usize) -> ParamTree {
        let mut t = ParamTree::new();
        t.set_info("InternetGatewayDevice.", false, 1_700_000_000_000);
        for i in 0..n {
            let name = format!(
                "InternetGatewayDevice.LANDevice.1.Hosts.Host.{}.IPAddress",
                i + 1
            );
            t.set_value(
                &name,
                &format!("192.168.1.{}", i % 250),
                "xsd:string",
                1_700_000_000_000 + i as i64,
            );
            t.set_info(&name, i % 2 == 0, 1);
        }
        t.set_value(
            "InternetGatewayDevice.X_Vendor.Odd",
            "é ü",
            "xsd:vendorType",
            5,
        );
        t.set_attributes(
            "InternetGatewayDevice.X_Vendor.Odd",
            Some(2),
            Some(vec!["Subscriber".into()]),
            5,
        );
        t
    }

    #[test]
    fn round_trips_compressed_and_not() {
        let t = sample(300);
        for compress in [true, false] {
            let enc = t.encode(compress);
            assert_eq!(ParamTree::decode(&enc).unwrap(), t);
        }
        assert_eq!(
            ParamTree::decode(&ParamTree::new().encode(true)).unwrap(),
            ParamTree::new()
        );
    }

    #[test]
    fn compact() {
        let t = sample(300);
        let enc = t.encode(true);
        // 300 host addresses with 60-character names: a few bytes each once front-coded.
        assert!(enc.len() < 2500, "encoded {} bytes", enc.len());
    }

    #[test]
    fn prefix_and_subtree() {
        let mut t = sample(20);
        assert_eq!(
            t.with_prefix("InternetGatewayDevice.LANDevice.1.Hosts.Host.1")
                .count(),
            11
        );
        let removed = t.remove_subtree("InternetGatewayDevice.LANDevice.1.Hosts.Host.1.");
        assert_eq!(removed, 1);
        assert!(t
            .get("InternetGatewayDevice.LANDevice.1.Hosts.Host.1.IPAddress")
            .is_none());
        assert!(t
            .get("InternetGatewayDevice.LANDevice.1.Hosts.Host.10.IPAddress")
            .is_some());
    }

    /// Rows of a CSV text (quoted fields may hold commas, doubled quotes and line breaks).
    fn csv_rows(text: &str) -> Vec<Vec<String>> {
        let (mut rows, mut row, mut cur) = (Vec::new(), Vec::new(), String::new());
        let (mut quoted, mut chars) = (false, text.chars().peekable());
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                '"' => quoted = !quoted,
                ',' if !quoted => row.push(std::mem::take(&mut cur)),
                '\r' if !quoted => {}
                '\n' if !quoted => {
                    row.push(std::mem::take(&mut cur));
                    rows.push(std::mem::take(&mut row));
                }
                c => cur.push(c),
            }
        }
        if !cur.is_empty() || !row.is_empty() {
            row.push(cur);
            rows.push(row);
        }
        rows
    }

    /// The whole tree of each real device dump in tests/fixtures/samples, sent as one
    /// GetParameterNamesResponse and one GetParameterValuesResponse through the codec, then
    /// learnt the way discovery does (names, then values moved out of the parsed response,
    /// the tree stored as built) and the way it did before (values copied, the tree overlaid
    /// onto a new one): both trees, and their stored forms, must be the same, and every
    /// value must be the one in the dump.
    #[test]
    fn discovery_tree_from_real_dumps_is_the_same_built_in_place_or_overlaid() {
        use crate::cwmp::{self, CpeResponse, IncomingBody, ParameterInfo, ParameterValue};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samples");
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("csv") {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            let rows = csv_rows(&text);
            let header = &rows[0];
            let col = |name: &str| header.iter().position(|h| h == name).unwrap();
            let (c_name, c_obj, c_w, c_v, c_t) = (
                col("Parameter"),
                col("Object"),
                col("Writable"),
                col("Value"),
                col("Value type"),
            );
            let mut infos = Vec::new();
            let mut values = Vec::new();
            for r in &rows[1..] {
                let name = &r[c_name];
                if !(name.starts_with("InternetGatewayDevice.") || name.starts_with("Device.")) {
                    continue;
                }
                let object = r[c_obj] == "true";
                let name = if object && !name.ends_with('.') {
                    format!("{name}.")
                } else {
                    name.clone()
                };
                infos.push(ParameterInfo {
                    name: name.clone(),
                    writable: r[c_w] == "true",
                });
                if !object {
                    let t = if r[c_t].is_empty() {
                        "xsd:string"
                    } else {
                        &r[c_t]
                    };
                    values.push(ParameterValue::new(
                        name.clone(),
                        r[c_v].clone(),
                        t.to_owned(),
                    ));
                }
            }
            assert!(
                values.len() > 100,
                "{}: {} values",
                path.display(),
                values.len()
            );
            let round_trip = |resp: CpeResponse| {
                let xml = cwmp::encode::encode_incoming(
                    cwmp::CwmpNs::V1_0,
                    &cwmp::Header::default(),
                    &IncomingBody::Response(resp),
                );
                match cwmp::decode::parse_incoming(&xml).unwrap().unwrap().body {
                    IncomingBody::Response(r) => r,
                    other => panic!("not a response: {other:?}"),
                }
            };
            let CpeResponse::GetParameterNames {
                parameter_list: names,
            } = round_trip(CpeResponse::GetParameterNames {
                parameter_list: infos.clone(),
            })
            else {
                panic!("not a GetParameterNamesResponse")
            };
            assert_eq!(names, infos);
            let CpeResponse::GetParameterValues {
                parameter_list: got,
            } = round_trip(CpeResponse::GetParameterValues {
                parameter_list: values.clone(),
            })
            else {
                panic!("not a GetParameterValuesResponse")
            };
            assert_eq!(got, values, "{}", path.display());

            let (t_names, t_values) = (1_700_000_000_000, 1_700_000_000_500);
            let mut learnt_before = ParamTree::new();
            let mut built = ParamTree::new();
            for i in &names {
                learnt_before.set_info(&i.name, i.writable, t_names);
                built.set_info(&i.name, i.writable, t_names);
            }
            for v in &got {
                learnt_before.set_value(&v.name, &v.value, &v.xsd_type, t_values);
            }
            for v in got {
                built.set_value_owned(v.name, v.value, &v.xsd_type, t_values);
            }
            let mut overlaid = ParamTree::new();
            overlaid.overlay(&learnt_before);
            assert_eq!(built, overlaid, "{}", path.display());
            assert_eq!(built.encode(true), overlaid.encode(true));
            let stored = ParamTree::decode(&built.encode(true)).unwrap();
            assert_eq!(stored, built);
            for v in &values {
                let e = stored.get(&v.name).unwrap();
                assert_eq!(e.value.as_deref(), Some(v.value.as_str()), "{}", v.name);
                assert_eq!(e.xsd_type, v.xsd_type, "{}", v.name);
                assert!(!e.object);
            }
            for i in &infos {
                let e = stored.get(&i.name).unwrap();
                assert_eq!(e.writable, Some(i.writable), "{}", i.name);
                assert_eq!(e.object, i.name.ends_with('.'));
            }
        }
        assert_eq!(files, 5);
    }

    #[test]
    fn deflate_state_is_reused_and_output_inflates() {
        // Several trees on one thread share the compressor; each one must stand alone.
        for n in [10, 300, 50, 2000, 300] {
            let t = sample(n);
            let enc = t.encode(true);
            assert_eq!(enc[1], 1, "compressed");
            assert_eq!(ParamTree::decode(&enc).unwrap(), t);
        }
    }

    #[test]
    fn a_small_delta_is_laid_over_the_whole_tree_and_a_large_one_refused() {
        let whole = sample(20);
        let base = whole.encode(true);
        let name = "InternetGatewayDevice.LANDevice.1.Hosts.Host.3.IPAddress";
        let mut learnt = ParamTree::new();
        learnt.set_value(name, "10.0.0.3", "xsd:string", 1_800_000_000_000);
        let first = delta_after(None, &learnt).expect("one value is a delta");
        assert!(first.len() <= MAX_DELTA_BYTES);
        // A second session's delta includes the first's.
        let mut more = ParamTree::new();
        more.set_value(
            "InternetGatewayDevice.DeviceInfo.X",
            "x",
            "",
            1_800_000_000_001,
        );
        let second = delta_after(Some(&first), &more).expect("two values");
        let tree = ParamTree::stored(Some(&base), Some(&second));
        assert_eq!(
            tree.get(name).and_then(|e| e.value.as_deref()),
            Some("10.0.0.3")
        );
        assert_eq!(
            tree.get("InternetGatewayDevice.DeviceInfo.X")
                .and_then(|e| e.value.as_deref()),
            Some("x")
        );
        assert_eq!(tree.len(), whole.len() + 1);
        // What the whole tree knows besides stays (writability of the overlaid value).
        assert_eq!(
            tree.get(name).and_then(|e| e.writable),
            whole.get(name).and_then(|e| e.writable)
        );
        // Too many entries, too many bytes, or an unreadable previous delta: the whole tree.
        assert_eq!(delta_after(None, &sample(MAX_DELTA_ENTRIES + 1)), None);
        let mut wide = ParamTree::new();
        wide.set_value(name, &"v".repeat(MAX_DELTA_BYTES), "xsd:string", 1);
        assert_eq!(delta_after(None, &wide), None);
        assert_eq!(delta_after(Some(b"\x09junk"), &learnt), None);
        // An unreadable part reads as empty, never as an error.
        assert_eq!(ParamTree::stored(Some(b"junk"), Some(&first)).len(), 1);
        assert_eq!(ParamTree::stored(Some(&base), Some(b"junk")), whole);
        assert!(ParamTree::stored(None, None).is_empty());
    }

    #[test]
    fn corrupt_data_is_an_error_not_a_panic() {
        let enc = sample(50).encode(false);
        for cut in [0, 1, 2, 5, enc.len() / 2, enc.len() - 1] {
            assert!(ParamTree::decode(&enc[..cut]).is_err());
        }
        let mut bad = enc.clone();
        bad[0] = 9;
        assert!(ParamTree::decode(&bad).is_err());
    }
}
