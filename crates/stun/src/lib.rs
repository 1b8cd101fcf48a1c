//! STUN messages as TR-111 devices send them, without I/O.
//!
//! TR-069 Annex G (TR-111 Part 2) lets an ACS reach a device behind a NAT: the device sends
//! STUN Binding Requests from its UDP connection-request port to the ACS's STUN server, learns
//! its public binding, and the ACS sends UDP connection requests to that binding. Devices speak
//! *classic* STUN (RFC 3489: a 16-byte transaction id, no magic cookie), which current STUN
//! libraries refuse; some speak RFC 5389. This crate reads and writes both:
//!
//! * [`decode`] parses a datagram into a [`Message`] (header, attributes) and never panics:
//!   truncated input, bad lengths and junk are a [`DecodeError`];
//! * [`Message::encode`] writes one, adding MESSAGE-INTEGRITY (HMAC-SHA1) and, for RFC 5389,
//!   FINGERPRINT;
//! * [`check_integrity`] verifies MESSAGE-INTEGRITY over the bytes as received, with the rules
//!   of the message's flavour (RFC 3489 pads the hashed text to 64 bytes, RFC 5389 does not);
//! * [`Message::unknown_required`] lists comprehension-required attributes the server does not
//!   know (answered with 420).
//!
//! The TR-111 attributes are [`Attr::ConnectionRequestBinding`] (0xC001, the value
//! `dslforum.org/TR-111 ` with its trailing space) and [`Attr::BindingChange`] (0xC002, empty).
//!
//! ```
//! use ferroacs_stun::{decode, Attr, Class, Message, BINDING};
//! let req = Message::classic(Class::Request, BINDING, [7; 16])
//!     .with(Attr::ConnectionRequestBinding)
//!     .with(Attr::Username("dev-1".into()));
//! let bytes = req.encode(Some(b"secret"));
//! let back = decode(&bytes).unwrap();
//! assert!(!back.is_rfc5389());
//! assert!(back.has(Attr::CONNECTION_REQUEST_BINDING));
//! assert_eq!(ferroacs_stun::check_integrity(&bytes, b"secret"), ferroacs_stun::Integrity::Valid);
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};

/// The RFC 5389 magic cookie (bytes 4..8 of the header). Classic messages have none there.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// The Binding method.
pub const BINDING: u16 = 0x001;
/// The value of CONNECTION-REQUEST-BINDING (TR-111), trailing space included.
pub const TR111_BINDING_VALUE: &[u8; 20] = b"dslforum.org/TR-111 ";
/// Largest datagram accepted.
pub const MAX_MESSAGE: usize = 1500;
const HEADER: usize = 20;
const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// The class of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// One attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr {
    MappedAddress(SocketAddr),
    /// RFC 3489 only.
    ResponseAddress(SocketAddr),
    /// RFC 3489: change IP (0x4) and/or port (0x2).
    ChangeRequest(u32),
    SourceAddress(SocketAddr),
    ChangedAddress(SocketAddr),
    Username(String),
    /// The HMAC-SHA1 as received; written by [`Message::encode`], never built by hand.
    MessageIntegrity([u8; 20]),
    ErrorCode {
        code: u16,
        reason: String,
    },
    UnknownAttributes(Vec<u16>),
    ReflectedFrom(SocketAddr),
    XorMappedAddress(SocketAddr),
    Software(String),
    /// As received; written by [`Message::encode`] for RFC 5389 messages.
    Fingerprint(u32),
    /// TR-111: the request comes from the device's UDP connection-request socket.
    ConnectionRequestBinding,
    /// TR-111: the binding changed since the last request.
    BindingChange,
    /// Anything else, kept as bytes.
    Other {
        kind: u16,
        value: Vec<u8>,
    },
}

impl Attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const RESPONSE_ADDRESS: u16 = 0x0002;
    pub const CHANGE_REQUEST: u16 = 0x0003;
    pub const SOURCE_ADDRESS: u16 = 0x0004;
    pub const CHANGED_ADDRESS: u16 = 0x0005;
    pub const USERNAME: u16 = 0x0006;
    pub const PASSWORD: u16 = 0x0007;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const REFLECTED_FROM: u16 = 0x000B;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const CONNECTION_REQUEST_BINDING: u16 = 0xC001;
    pub const BINDING_CHANGE: u16 = 0xC002;

    /// The attribute's type number.
    pub fn kind(&self) -> u16 {
        match self {
            Self::MappedAddress(_) => Self::MAPPED_ADDRESS,
            Self::ResponseAddress(_) => Self::RESPONSE_ADDRESS,
            Self::ChangeRequest(_) => Self::CHANGE_REQUEST,
            Self::SourceAddress(_) => Self::SOURCE_ADDRESS,
            Self::ChangedAddress(_) => Self::CHANGED_ADDRESS,
            Self::Username(_) => Self::USERNAME,
            Self::MessageIntegrity(_) => Self::MESSAGE_INTEGRITY,
            Self::ErrorCode { .. } => Self::ERROR_CODE,
            Self::UnknownAttributes(_) => Self::UNKNOWN_ATTRIBUTES,
            Self::ReflectedFrom(_) => Self::REFLECTED_FROM,
            Self::XorMappedAddress(_) => Self::XOR_MAPPED_ADDRESS,
            Self::Software(_) => Self::SOFTWARE,
            Self::Fingerprint(_) => Self::FINGERPRINT,
            Self::ConnectionRequestBinding => Self::CONNECTION_REQUEST_BINDING,
            Self::BindingChange => Self::BINDING_CHANGE,
            Self::Other { kind, .. } => *kind,
        }
    }
}

/// Why a datagram is not a STUN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a header, or than the header's length says.
    Truncated,
    /// Longer than the header's length says, or than [`MAX_MESSAGE`].
    TrailingBytes,
    /// The first two bits are not zero (not STUN), or the length is not a multiple of 4.
    NotStun,
    /// An attribute runs past the end of the message, or has a value of the wrong size.
    BadAttribute(u16),
    /// An attribute follows MESSAGE-INTEGRITY (other than FINGERPRINT), or one follows
    /// FINGERPRINT.
    AttributeAfterIntegrity(u16),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated STUN message"),
            Self::TrailingBytes => f.write_str("bytes after the STUN message"),
            Self::NotStun => f.write_str("not a STUN message"),
            Self::BadAttribute(k) => write!(f, "malformed STUN attribute 0x{k:04x}"),
            Self::AttributeAfterIntegrity(k) => {
                write!(f, "STUN attribute 0x{k:04x} after MESSAGE-INTEGRITY")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// A STUN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub class: Class,
    pub method: u16,
    /// Bytes 4..20 of the header: the classic 128-bit transaction id, or the magic cookie
    /// followed by the 96-bit RFC 5389 transaction id.
    pub transaction: [u8; 16],
    pub attrs: Vec<Attr>,
}

impl Message {
    /// A classic (RFC 3489) message.
    pub fn classic(class: Class, method: u16, transaction: [u8; 16]) -> Message {
        Message {
            class,
            method,
            transaction,
            attrs: Vec::new(),
        }
    }

    /// An RFC 5389 message with the 96-bit transaction id `id`.
    pub fn rfc5389(class: Class, method: u16, id: [u8; 12]) -> Message {
        let mut transaction = [0u8; 16];
        transaction[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        transaction[4..].copy_from_slice(&id);
        Message::classic(class, method, transaction)
    }

    /// A response of `class` to `self`, in its flavour and with its transaction id.
    pub fn response(&self, class: Class) -> Message {
        Message::classic(class, self.method, self.transaction)
    }

    /// Adds an attribute.
    pub fn with(mut self, a: Attr) -> Message {
        self.attrs.push(a);
        self
    }

    /// True when the message carries the magic cookie.
    pub fn is_rfc5389(&self) -> bool {
        self.transaction[..4] == MAGIC_COOKIE.to_be_bytes()
    }

    /// The first attribute of type `kind`.
    pub fn get(&self, kind: u16) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.kind() == kind)
    }

    /// Whether an attribute of type `kind` is present.
    pub fn has(&self, kind: u16) -> bool {
        self.get(kind).is_some()
    }

    /// The USERNAME, if any.
    pub fn username(&self) -> Option<&str> {
        match self.get(Attr::USERNAME) {
            Some(Attr::Username(u)) => Some(u),
            _ => None,
        }
    }

    /// Comprehension-required attributes (type below 0x8000) this codec does not know: a
    /// server answers a request carrying any with 420 and UNKNOWN-ATTRIBUTES.
    pub fn unknown_required(&self) -> Vec<u16> {
        self.attrs
            .iter()
            .filter_map(|a| match a {
                Attr::Other { kind, .. } if *kind < 0x8000 && *kind != Attr::PASSWORD => {
                    Some(*kind)
                }
                _ => None,
            })
            .collect()
    }

    /// The message as bytes. MESSAGE-INTEGRITY and FINGERPRINT attributes in `attrs` are
    /// skipped; with `key`, MESSAGE-INTEGRITY is computed and added last, then (RFC 5389 only)
    /// FINGERPRINT.
    pub fn encode(&self, key: Option<&[u8]>) -> Vec<u8> {
        let rfc5389 = self.is_rfc5389();
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&message_type(self.class, self.method).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.transaction);
        for a in &self.attrs {
            if matches!(a, Attr::MessageIntegrity(_) | Attr::Fingerprint(_)) {
                continue;
            }
            put_attr(&mut out, a, &self.transaction, rfc5389);
        }
        if let Some(key) = key {
            set_length(&mut out, 24);
            let mac = hmac_sha1(key, &integrity_text(&out, out.len(), rfc5389));
            put_raw(&mut out, Attr::MESSAGE_INTEGRITY, &mac, rfc5389);
        }
        if rfc5389 {
            set_length(&mut out, 8);
            let crc = crc32(&out) ^ FINGERPRINT_XOR;
            put_raw(&mut out, Attr::FINGERPRINT, &crc.to_be_bytes(), rfc5389);
        }
        set_length(&mut out, 0);
        out
    }
}

/// The result of [`check_integrity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// No MESSAGE-INTEGRITY attribute.
    Absent,
    Valid,
    Invalid,
}

/// Verifies the MESSAGE-INTEGRITY of `bytes` (a whole datagram) with `key` (the password for
/// short-term credentials; TR-111's STUNPassword). Malformed input is `Invalid` or `Absent`.
pub fn check_integrity(bytes: &[u8], key: &[u8]) -> Integrity {
    let Ok(scan) = scan(bytes) else {
        return Integrity::Absent;
    };
    let Some(at) = scan.integrity_at else {
        return Integrity::Absent;
    };
    let rfc5389 = bytes[4..8] == MAGIC_COOKIE.to_be_bytes();
    let mut head = bytes[..at].to_vec();
    // The length covers the message up to the end of MESSAGE-INTEGRITY.
    let len = (at + 24 - HEADER) as u16;
    head[2..4].copy_from_slice(&len.to_be_bytes());
    let mac = hmac_sha1(key, &integrity_text(&head, head.len(), rfc5389));
    let got = &bytes[at + 4..at + 24];
    if constant_time_eq(&mac, got) {
        Integrity::Valid
    } else {
        Integrity::Invalid
    }
}

/// Verifies the FINGERPRINT of an RFC 5389 message; `None` without one.
pub fn check_fingerprint(bytes: &[u8]) -> Option<bool> {
    let scan = scan(bytes).ok()?;
    let at = scan.fingerprint_at?;
    let got = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().ok()?);
    Some(crc32(&bytes[..at]) ^ FINGERPRINT_XOR == got)
}

/// Parses one datagram.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let scan = scan(bytes)?;
    let mut transaction = [0u8; 16];
    transaction.copy_from_slice(&bytes[4..20]);
    let rfc5389 = transaction[..4] == MAGIC_COOKIE.to_be_bytes();
    let mut attrs = Vec::with_capacity(scan.attrs.len());
    for (kind, start, len) in scan.attrs {
        let v = &bytes[start..start + len];
        attrs.push(parse_attr(kind, v, &transaction, rfc5389)?);
    }
    let t = u16::from_be_bytes([bytes[0], bytes[1]]);
    let (class, method) = split_type(t);
    Ok(Message {
        class,
        method,
        transaction,
        attrs,
    })
}

struct Scan {
    /// (type, value offset, value length)
    attrs: Vec<(u16, usize, usize)>,
    integrity_at: Option<usize>,
    fingerprint_at: Option<usize>,
}

/// Checks the framing and finds the attributes.
fn scan(bytes: &[u8]) -> Result<Scan, DecodeError> {
    if bytes.len() < HEADER {
        return Err(DecodeError::Truncated);
    }
    if bytes.len() > MAX_MESSAGE {
        return Err(DecodeError::TrailingBytes);
    }
    if bytes[0] & 0xC0 != 0 {
        return Err(DecodeError::NotStun);
    }
    let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    if len % 4 != 0 {
        return Err(DecodeError::NotStun);
    }
    match (HEADER + len).cmp(&bytes.len()) {
        std::cmp::Ordering::Greater => return Err(DecodeError::Truncated),
        std::cmp::Ordering::Less => return Err(DecodeError::TrailingBytes),
        std::cmp::Ordering::Equal => {}
    }
    let rfc5389 = bytes[4..8] == MAGIC_COOKIE.to_be_bytes();
    let mut s = Scan {
        attrs: Vec::new(),
        integrity_at: None,
        fingerprint_at: None,
    };
    let mut at = HEADER;
    while at < bytes.len() {
        if at + 4 > bytes.len() {
            return Err(DecodeError::Truncated);
        }
        let kind = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        let vlen = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        // RFC 5389 pads values to 4 bytes; RFC 3489 values are multiples of 4 already (a
        // classic value that is not is read padded, as devices that pad do).
        let padded = (vlen + 3) & !3;
        if at + 4 + vlen > bytes.len() || at + 4 + padded > bytes.len() {
            return Err(DecodeError::BadAttribute(kind));
        }
        if s.fingerprint_at.is_some() {
            return Err(DecodeError::AttributeAfterIntegrity(kind));
        }
        if s.integrity_at.is_some() && !(rfc5389 && kind == Attr::FINGERPRINT) {
            return Err(DecodeError::AttributeAfterIntegrity(kind));
        }
        match kind {
            Attr::MESSAGE_INTEGRITY => {
                if vlen != 20 {
                    return Err(DecodeError::BadAttribute(kind));
                }
                s.integrity_at = Some(at);
            }
            Attr::FINGERPRINT if rfc5389 => {
                if vlen != 4 {
                    return Err(DecodeError::BadAttribute(kind));
                }
                s.fingerprint_at = Some(at);
            }
            _ => {}
        }
        s.attrs.push((kind, at + 4, vlen));
        at += 4 + padded;
    }
    Ok(s)
}

fn parse_attr(kind: u16, v: &[u8], tid: &[u8; 16], rfc5389: bool) -> Result<Attr, DecodeError> {
    let bad = DecodeError::BadAttribute(kind);
    Ok(match kind {
        Attr::MAPPED_ADDRESS => Attr::MappedAddress(address(v).ok_or(bad)?),
        Attr::RESPONSE_ADDRESS => Attr::ResponseAddress(address(v).ok_or(bad)?),
        Attr::SOURCE_ADDRESS => Attr::SourceAddress(address(v).ok_or(bad)?),
        Attr::CHANGED_ADDRESS => Attr::ChangedAddress(address(v).ok_or(bad)?),
        Attr::REFLECTED_FROM => Attr::ReflectedFrom(address(v).ok_or(bad)?),
        Attr::XOR_MAPPED_ADDRESS => {
            let a = address(v).ok_or(bad)?;
            Attr::XorMappedAddress(xor_address(a, tid))
        }
        Attr::CHANGE_REQUEST => {
            let b: [u8; 4] = v.try_into().map_err(|_| bad)?;
            Attr::ChangeRequest(u32::from_be_bytes(b))
        }
        Attr::USERNAME => Attr::Username(text(v, rfc5389)),
        Attr::SOFTWARE => Attr::Software(text(v, true)),
        Attr::MESSAGE_INTEGRITY => Attr::MessageIntegrity(v.try_into().map_err(|_| bad)?),
        Attr::FINGERPRINT if rfc5389 => {
            let b: [u8; 4] = v.try_into().map_err(|_| bad)?;
            Attr::Fingerprint(u32::from_be_bytes(b))
        }
        Attr::ERROR_CODE => {
            if v.len() < 4 {
                return Err(bad);
            }
            let code = u16::from(v[2] & 0x07) * 100 + u16::from(v[3]);
            Attr::ErrorCode {
                code,
                reason: String::from_utf8_lossy(&v[4..]).trim_end().to_string(),
            }
        }
        Attr::UNKNOWN_ATTRIBUTES => {
            if v.len() % 2 != 0 {
                return Err(bad);
            }
            Attr::UnknownAttributes(
                v.chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect(),
            )
        }
        Attr::CONNECTION_REQUEST_BINDING => {
            // Devices differ on the trailing space; the attribute's presence is what counts.
            if v.trim_ascii_end() != TR111_BINDING_VALUE.trim_ascii_end() {
                return Err(bad);
            }
            Attr::ConnectionRequestBinding
        }
        Attr::BINDING_CHANGE => Attr::BindingChange,
        _ => Attr::Other {
            kind,
            value: v.to_vec(),
        },
    })
}

/// A text value; classic messages may pad it with NULs or spaces.
fn text(v: &[u8], exact: bool) -> String {
    let v = if exact {
        v
    } else {
        let end = v.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
        &v[..end]
    };
    String::from_utf8_lossy(v).into_owned()
}

fn address(v: &[u8]) -> Option<SocketAddr> {
    if v.len() < 4 {
        return None;
    }
    let port = u16::from_be_bytes([v[2], v[3]]);
    let ip = match (v[1], v.len()) {
        (0x01, 8) => IpAddr::V4(Ipv4Addr::new(v[4], v[5], v[6], v[7])),
        (0x02, 20) => {
            let b: [u8; 16] = v[4..20].try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// XOR-MAPPED-ADDRESS: the port with the cookie's top half, the address with the cookie (and
/// for IPv6 the transaction id). The operation is its own inverse.
fn xor_address(a: SocketAddr, tid: &[u8; 16]) -> SocketAddr {
    let port = a.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match a.ip() {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) ^ MAGIC_COOKIE)),
        IpAddr::V6(v6) => {
            let mut b = v6.octets();
            for (x, k) in b.iter_mut().zip(tid.iter()) {
                *x ^= k;
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
    };
    SocketAddr::new(ip, port)
}

fn put_address(a: SocketAddr) -> Vec<u8> {
    let mut v = vec![0u8];
    match a.ip() {
        IpAddr::V4(ip) => {
            v.push(0x01);
            v.extend_from_slice(&a.port().to_be_bytes());
            v.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            v.push(0x02);
            v.extend_from_slice(&a.port().to_be_bytes());
            v.extend_from_slice(&ip.octets());
        }
    }
    v
}

fn put_attr(out: &mut Vec<u8>, a: &Attr, tid: &[u8; 16], rfc5389: bool) {
    let value: Vec<u8> = match a {
        Attr::MappedAddress(s)
        | Attr::ResponseAddress(s)
        | Attr::SourceAddress(s)
        | Attr::ChangedAddress(s)
        | Attr::ReflectedFrom(s) => put_address(*s),
        Attr::XorMappedAddress(s) => put_address(xor_address(*s, tid)),
        Attr::ChangeRequest(f) => f.to_be_bytes().to_vec(),
        Attr::Username(u) => {
            let mut v = u.as_bytes().to_vec();
            if !rfc5389 {
                // RFC 3489: a multiple of 4 bytes.
                v.resize((v.len() + 3) & !3, 0);
            }
            v
        }
        Attr::Software(s) => s.as_bytes().to_vec(),
        Attr::ErrorCode { code, reason } => {
            let mut v = vec![0, 0, ((code / 100) & 0x07) as u8, (code % 100) as u8];
            v.extend_from_slice(reason.as_bytes());
            if !rfc5389 {
                v.resize((v.len() + 3) & !3, b' ');
            }
            v
        }
        Attr::UnknownAttributes(list) => {
            let mut v: Vec<u8> = list.iter().flat_map(|k| k.to_be_bytes()).collect();
            if !rfc5389 && list.len() % 2 == 1 {
                // RFC 3489: repeat one to reach a multiple of 4 bytes.
                if let Some(k) = list.first() {
                    v.extend_from_slice(&k.to_be_bytes());
                }
            }
            v
        }
        Attr::ConnectionRequestBinding => TR111_BINDING_VALUE.to_vec(),
        Attr::BindingChange => Vec::new(),
        Attr::Other { value, .. } => value.clone(),
        Attr::MessageIntegrity(m) => m.to_vec(),
        Attr::Fingerprint(f) => f.to_be_bytes().to_vec(),
    };
    put_raw(out, a.kind(), &value, rfc5389);
}

fn put_raw(out: &mut Vec<u8>, kind: u16, value: &[u8], _rfc5389: bool) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(value.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(value);
    out.resize((out.len() + 3) & !3, 0);
}

/// Sets the header's length to the attributes written so far plus `extra`.
fn set_length(out: &mut [u8], extra: usize) {
    let len = (out.len() - HEADER + extra).min(usize::from(u16::MAX)) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
}

/// The text MESSAGE-INTEGRITY covers: the message before the attribute (its length field
/// already covering it); RFC 3489 pads it with zeros to a multiple of 64 bytes.
fn integrity_text(msg: &[u8], upto: usize, rfc5389: bool) -> Vec<u8> {
    let mut t = msg[..upto].to_vec();
    if !rfc5389 {
        t.resize(upto.div_ceil(64) * 64, 0);
    }
    t
}

fn message_type(class: Class, method: u16) -> u16 {
    let c: u16 = match class {
        Class::Request => 0b00,
        Class::Indication => 0b01,
        Class::Success => 0b10,
        Class::Error => 0b11,
    };
    let m = method & 0x0FFF;
    (m & 0x000F) | ((c & 1) << 4) | ((m & 0x0070) << 1) | ((c & 2) << 7) | ((m & 0x0F80) << 2)
}

fn split_type(t: u16) -> (Class, u16) {
    let c = ((t >> 4) & 1) | ((t >> 7) & 2);
    let m = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let class = match c {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    (class, m)
}

fn hmac_sha1(key: &[u8], text: &[u8]) -> [u8; 20] {
    let mut mac = match Hmac::<sha1::Sha1>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length; this branch is unreachable.
        Err(_) => return [0; 20],
    };
    mac.update(text);
    mac.finalize().into_bytes().into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// CRC-32 (IEEE 802.3), as FINGERPRINT uses.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests;
