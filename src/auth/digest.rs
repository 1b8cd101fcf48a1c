//! Server-side HTTP Digest (RFC 2617 / RFC 7616, MD5) and Basic checks.
//!
//! # Nonces
//!
//! Nonces are stateless so that any ferroacs node holding the same 32-byte
//! secret can validate a nonce another node issued:
//!
//! ```text
//! nonce = base64url( issued_ms (8 bytes, big endian) || random (12 bytes)
//!                    || HMAC-SHA256(secret, issued_ms || random)[..16] )
//! ```
//!
//! A nonce older than the issuer's TTL is answered with [`AuthError::Stale`],
//! after which the caller re-challenges with `stale=true` and the client
//! retries with the new nonce without treating it as a failed login.
//!
//! # Replay protection
//!
//! With `qop=auth` the client numbers every request made with one nonce
//! (`nc`). [`NonceCounts`] remembers the highest `nc` accepted per nonce and
//! rejects anything not strictly greater. It only records nonces whose
//! request carried a correct response, so clients without credentials cannot
//! grow it. Its size is capped (see [`NonceCounts::new`]); when full it first
//! drops expired nonces, then the oldest ones, and from then on treats any
//! unknown nonce issued no later than the newest forgotten one as stale.
//! A forgotten nonce therefore costs the client one extra round trip but can
//! never be replayed.
//!
//! The counters live in one process. A client that sends the same nonce to
//! two ferroacs nodes is tracked separately on each node; CWMP clients keep
//! one TCP connection per session, so a load balancer with connection
//! affinity keeps them on one node.
//!
//! # Stored credentials
//!
//! Only HA1 = MD5(username:realm:password) is stored per device. Both
//! [`verify`] (Digest) and [`verify_basic`] work from it; the username in the
//! credentials is what the caller uses to look HA1 up, and is not checked
//! again here.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::header;
use super::AuthError;

type HmacSha256 = Hmac<Sha256>;

const TIME_LEN: usize = 8;
const RANDOM_LEN: usize = 12;
const ID_LEN: usize = TIME_LEN + RANDOM_LEN;
const MAC_LEN: usize = 16;
const NONCE_LEN: usize = ID_LEN + MAC_LEN;

/// The part of a nonce that identifies it: issue time and random bytes.
type NonceId = [u8; ID_LEN];

/// Issues and validates stateless Digest nonces.
///
/// All nodes of one deployment must share the secret and should share the
/// TTL. `Debug` output never shows the secret.
#[derive(Clone)]
pub struct NonceIssuer {
    secret: [u8; 32],
    ttl_ms: u64,
    allow_no_qop: bool,
}

impl fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceIssuer")
            .field("secret", &"<redacted>")
            .field("ttl_ms", &self.ttl_ms)
            .field("allow_no_qop", &self.allow_no_qop)
            .finish()
    }
}

impl NonceIssuer {
    /// Creates an issuer whose nonces are valid for `ttl_ms` milliseconds.
    /// Digest without `qop` (RFC 2069) is refused until enabled with
    /// [`NonceIssuer::allow_no_qop`].
    pub fn new(secret: [u8; 32], ttl_ms: u64) -> Self {
        Self {
            secret,
            ttl_ms,
            allow_no_qop: false,
        }
    }

    /// Accepts (or refuses) RFC 2069 Digest, where the client sends no
    /// `qop`, `nc` or `cnonce`. Such requests have no nonce count, so they
    /// can be replayed for as long as the nonce is valid: keep the TTL short
    /// when enabling this for old devices.
    #[must_use]
    pub fn allow_no_qop(mut self, allow: bool) -> Self {
        self.allow_no_qop = allow;
        self
    }

    /// How long a nonce stays valid, in milliseconds.
    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    /// Whether RFC 2069 Digest (no `qop`) is accepted.
    pub fn allows_no_qop(&self) -> bool {
        self.allow_no_qop
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        // HMAC pads keys shorter than the 64-byte SHA-256 block with zeros,
        // so a zero-padded 64-byte key gives exactly HMAC(secret, data) and
        // avoids the fallible variable-length constructor.
        let mut key = [0u8; 64];
        key[..self.secret.len()].copy_from_slice(&self.secret);
        let mut mac = <HmacSha256 as hmac::digest::KeyInit>::new(&key.into());
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Issues a new nonce stamped with `now_ms`.
    pub fn issue(&self, now_ms: u64) -> String {
        let mut raw = [0u8; NONCE_LEN];
        raw[..TIME_LEN].copy_from_slice(&now_ms.to_be_bytes());
        rand::fill(&mut raw[TIME_LEN..ID_LEN]);
        let mac = self.mac(&raw[..ID_LEN]);
        raw[ID_LEN..].copy_from_slice(&mac[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The `opaque` value sent in challenges. It is derived from the secret,
    /// so it is the same on every node; it is not checked on the way back.
    pub fn opaque(&self) -> String {
        let mac = self.mac(b"ferroacs digest opaque");
        URL_SAFE_NO_PAD.encode(&mac[..12])
    }

    /// Builds a `WWW-Authenticate` value with a fresh nonce:
    /// `Digest realm="…", qop="auth", nonce="…", opaque="…", algorithm=MD5`,
    /// followed by `, stale=true` when `stale` is set.
    pub fn challenge(&self, realm: &str, now_ms: u64, stale: bool) -> String {
        let mut out = format!(
            "Digest realm={}, qop=\"auth\", nonce=\"{}\", opaque=\"{}\", algorithm=MD5",
            quote(realm),
            self.issue(now_ms),
            self.opaque()
        );
        if stale {
            out.push_str(", stale=true");
        }
        out
    }

    /// Checks a nonce's MAC and age; returns its issue time.
    ///
    /// Errors: [`AuthError::InvalidNonce`] if it was not issued with this
    /// secret, [`AuthError::Stale`] if it is older than the TTL (or stamped
    /// more than a TTL in the future, as happens with skewed clocks).
    pub fn check_nonce(&self, nonce: &str, now_ms: u64) -> Result<u64, AuthError> {
        self.decode(nonce, now_ms).map(|(_, issued)| issued)
    }

    fn decode(&self, nonce: &str, now_ms: u64) -> Result<(NonceId, u64), AuthError> {
        let raw = URL_SAFE_NO_PAD
            .decode(nonce.as_bytes())
            .map_err(|_| AuthError::InvalidNonce)?;
        let raw: [u8; NONCE_LEN] = raw.try_into().map_err(|_| AuthError::InvalidNonce)?;
        let mac = self.mac(&raw[..ID_LEN]);
        if !bool::from(mac[..MAC_LEN].ct_eq(&raw[ID_LEN..])) {
            return Err(AuthError::InvalidNonce);
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&raw[..ID_LEN]);
        let mut time = [0u8; TIME_LEN];
        time.copy_from_slice(&raw[..TIME_LEN]);
        let issued = u64::from_be_bytes(time);
        let expired = now_ms > issued.saturating_add(self.ttl_ms);
        let from_future = issued > now_ms.saturating_add(self.ttl_ms);
        if expired || from_future {
            return Err(AuthError::Stale);
        }
        Ok((id, issued))
    }
}

/// Quotes a value as an RFC 7230 quoted-string.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Default number of nonces [`NonceCounts::default`] remembers.
pub const DEFAULT_NONCE_COUNTS_CAPACITY: usize = 65_536;

/// The highest nonce count accepted per nonce, with bounded memory.
///
/// Each entry takes about 100 bytes (a 20-byte key stored twice, the issue
/// time, the count, and hash-map and B-tree overhead), so the default
/// capacity of 65,536 entries stays under 8 MiB. Size it to exceed the number
/// of nonces in use within one TTL: roughly the number of CPE sessions
/// started per TTL.
#[derive(Debug, Clone)]
pub struct NonceCounts {
    capacity: usize,
    counts: HashMap<NonceId, (u64, u32)>,
    by_age: BTreeSet<(u64, NonceId)>,
    forgotten_up_to: Option<u64>,
}

impl Default for NonceCounts {
    fn default() -> Self {
        Self::new(DEFAULT_NONCE_COUNTS_CAPACITY)
    }
}

impl NonceCounts {
    /// Creates a table that remembers at most `capacity` nonces (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            counts: HashMap::new(),
            by_age: BTreeSet::new(),
            forgotten_up_to: None,
        }
    }

    /// Number of nonces currently remembered.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// True when no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The maximum number of nonces remembered.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn prune_expired(&mut self, now_ms: u64, ttl_ms: u64) {
        while let Some(&(issued, id)) = self.by_age.first() {
            if issued.saturating_add(ttl_ms) >= now_ms {
                break;
            }
            self.by_age.pop_first();
            self.counts.remove(&id);
        }
    }

    fn record(
        &mut self,
        id: NonceId,
        issued: u64,
        nc: u32,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<(), AuthError> {
        self.prune_expired(now_ms, ttl_ms);
        if let Some(entry) = self.counts.get_mut(&id) {
            if nc <= entry.1 {
                return Err(AuthError::Replay);
            }
            entry.1 = nc;
            return Ok(());
        }
        if self.forgotten_up_to.is_some_and(|floor| issued <= floor) {
            // This nonce may have been used and evicted: make the client
            // fetch a new one rather than risk accepting a replay.
            return Err(AuthError::Stale);
        }
        while self.counts.len() >= self.capacity {
            let Some((old_issued, old_id)) = self.by_age.pop_first() else {
                break;
            };
            self.counts.remove(&old_id);
            self.forgotten_up_to = Some(
                self.forgotten_up_to
                    .map_or(old_issued, |f| f.max(old_issued)),
            );
        }
        self.counts.insert(id, (issued, nc));
        self.by_age.insert((issued, id));
        Ok(())
    }
}

/// The Digest algorithm named in the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DigestAlgorithm {
    /// `MD5` (also what an absent `algorithm` means).
    #[default]
    Md5,
    /// `MD5-sess`: HA1 is rehashed with the nonce and cnonce.
    Md5Sess,
}

impl DigestAlgorithm {
    /// Parses an `algorithm` value, ignoring ASCII case.
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        if value.eq_ignore_ascii_case("MD5") {
            Ok(Self::Md5)
        } else if value.eq_ignore_ascii_case("MD5-sess") {
            Ok(Self::Md5Sess)
        } else {
            Err(AuthError::UnsupportedAlgorithm(value.to_string()))
        }
    }

    /// The value as written in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
        }
    }
}

/// Digest credentials from an `Authorization` header, values unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestResponse {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`, as issued by [`NonceIssuer`].
    pub nonce: String,
    /// `uri`: the request target the client signed.
    pub uri: String,
    /// `response`: 32 hex digits.
    pub response: String,
    /// `qop` (`auth`), absent in RFC 2069 style requests.
    pub qop: Option<String>,
    /// `nc`, exactly as sent (it is hashed verbatim).
    pub nc: Option<String>,
    /// `cnonce`.
    pub cnonce: Option<String>,
    /// `algorithm` (MD5 when absent).
    pub algorithm: DigestAlgorithm,
    /// `opaque`, echoed from the challenge.
    pub opaque: Option<String>,
}

/// Parsed `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub enum Authorization {
    /// `Digest …` credentials.
    Digest(DigestResponse),
    /// `Basic …` credentials.
    Basic {
        /// User name (before the first `:`).
        username: String,
        /// Password (after the first `:`).
        password: String,
    },
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Digest(d) => f.debug_tuple("Digest").field(d).finish(),
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

impl Authorization {
    /// The user name the credentials claim, to look the stored HA1 up.
    pub fn username(&self) -> &str {
        match self {
            Self::Digest(d) => &d.username,
            Self::Basic { username, .. } => username,
        }
    }
}

/// Parses an `Authorization` header value (Digest or Basic).
pub fn parse_authorization(value: &str) -> Result<Authorization, AuthError> {
    let creds = header::parse_credentials(value)?;
    if creds.is_scheme("Digest") {
        parse_digest(creds).map(Authorization::Digest)
    } else if creds.is_scheme("Basic") {
        parse_basic(&creds)
    } else {
        Err(AuthError::UnsupportedScheme(creds.scheme))
    }
}

fn parse_digest(creds: header::Challenge) -> Result<DigestResponse, AuthError> {
    if creds.token68.is_some() {
        return Err(AuthError::Malformed(
            "Digest credentials must be name=value parameters".into(),
        ));
    }
    if let Some(dup) = creds.duplicate_param() {
        return Err(AuthError::DuplicateParameter(dup.to_string()));
    }
    // Its error, if any, comes after those of missing parameters (as the fields below).
    let algorithm = match creds.param("algorithm") {
        Some(a) => DigestAlgorithm::parse(a),
        None => Ok(DigestAlgorithm::Md5),
    };
    // Every name occurs once (checked above): the values move out, none is copied.
    let mut params = creds.params;
    let mut optional = |name: &str| {
        params
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, v)| std::mem::take(v))
    };
    let mut required = |name: &'static str| optional(name).ok_or(AuthError::MissingParameter(name));
    Ok(DigestResponse {
        username: required("username")?,
        realm: required("realm")?,
        nonce: required("nonce")?,
        uri: required("uri")?,
        response: required("response")?,
        qop: optional("qop"),
        nc: optional("nc"),
        cnonce: optional("cnonce"),
        algorithm: algorithm?,
        opaque: optional("opaque"),
    })
}

fn parse_basic(creds: &header::Challenge) -> Result<Authorization, AuthError> {
    let Some(blob) = creds.token68.as_deref() else {
        return Err(AuthError::InvalidBasic(
            "expected 'Basic <base64 of user:password>'".into(),
        ));
    };
    // Some clients drop the '=' padding; accept both forms.
    let engine = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let raw = engine
        .decode(blob.as_bytes())
        .map_err(|e| AuthError::InvalidBasic(format!("not valid base64 ({e})")))?;
    // RFC 7617 leaves the charset open; fall back to ISO-8859-1, which maps
    // every byte to the code point of the same value.
    let text = String::from_utf8(raw)
        .unwrap_or_else(|e| e.into_bytes().iter().map(|&b| char::from(b)).collect());
    let Some((username, password)) = text.split_once(':') else {
        return Err(AuthError::InvalidBasic(
            "no ':' between user name and password".into(),
        ));
    };
    Ok(Authorization::Basic {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// HA1 = MD5(username:realm:password) as 32 lower-case hex digits.
pub fn ha1(username: &str, realm: &str, password: &str) -> String {
    md5_hex(format!("{username}:{realm}:{password}").as_bytes())
}

fn md5_hex(data: &[u8]) -> String {
    format!("{:x}", md5::compute(data))
}

fn normalize_ha1(ha1_hex: &str) -> Result<String, AuthError> {
    if ha1_hex.len() == 32 && ha1_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(ha1_hex.to_ascii_lowercase())
    } else {
        Err(AuthError::InvalidStoredHa1)
    }
}

/// Checks Basic credentials against a stored HA1 for `realm`, in constant
/// time. The caller has already looked HA1 up by `username`.
pub fn verify_basic(
    username: &str,
    password: &str,
    realm: &str,
    ha1_hex: &str,
) -> Result<(), AuthError> {
    let stored = normalize_ha1(ha1_hex)?;
    let computed = ha1(username, realm, password);
    if bool::from(computed.as_bytes().ct_eq(stored.as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::BadCredentials)
    }
}

/// The request target of a URI: the path and query of an absolute URI, or
/// the URI itself; an empty path counts as `/`.
fn request_target(uri: &str) -> String {
    let lower = uri.get(..8).unwrap_or(uri).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &uri[7..]
    } else if lower.starts_with("https://") {
        &uri[8..]
    } else {
        return if uri.is_empty() || uri.starts_with('?') {
            format!("/{uri}")
        } else {
            uri.to_string()
        };
    };
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => format!("/{}", &rest[i..]),
        Some(i) => rest[i..].to_string(),
        None => "/".to_string(),
    }
}

fn uri_matches(digest_uri: &str, request_uri: &str) -> bool {
    digest_uri == request_uri || request_target(digest_uri) == request_target(request_uri)
}

fn parse_nc(nc: &str) -> Result<u32, AuthError> {
    let valid = !nc.is_empty() && nc.len() <= 8 && nc.bytes().all(|b| b.is_ascii_hexdigit());
    match u32::from_str_radix(nc, 16) {
        Ok(n) if valid && n > 0 => Ok(n),
        _ => Err(AuthError::InvalidNonceCount(nc.to_string())),
    }
}

/// The response the client should have sent, given the stored HA1 (lower
/// case). Parameters are hashed exactly as the client sent them.
fn expected_response(
    resp: &DigestResponse,
    method: &str,
    stored_ha1: &str,
) -> Result<String, AuthError> {
    let ha1 = match resp.algorithm {
        DigestAlgorithm::Md5 => stored_ha1.to_string(),
        DigestAlgorithm::Md5Sess => {
            let cnonce = resp
                .cnonce
                .as_deref()
                .ok_or(AuthError::MissingParameter("cnonce"))?;
            md5_hex(format!("{stored_ha1}:{}:{cnonce}", resp.nonce).as_bytes())
        }
    };
    let ha2 = md5_hex(format!("{method}:{}", resp.uri).as_bytes());
    let input = match resp.qop.as_deref() {
        Some(qop) => {
            let nc = resp
                .nc
                .as_deref()
                .ok_or(AuthError::MissingParameter("nc"))?;
            let cnonce = resp
                .cnonce
                .as_deref()
                .ok_or(AuthError::MissingParameter("cnonce"))?;
            format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", resp.nonce)
        }
        None => format!("{ha1}:{}:{ha2}", resp.nonce),
    };
    Ok(md5_hex(input.as_bytes()))
}

/// Verifies Digest credentials for a request.
///
/// * `method` and `request_uri` come from the request line; `request_uri`
///   may be in origin form (`/acs?x`) or absolute form, and so may the
///   credentials' `uri`.
/// * `ha1_hex` is the stored HA1 for `resp.username` in `realm`.
/// * `now_ms` is the current time in milliseconds since the Unix epoch.
///
/// Checks, in order: realm, nonce MAC ([`AuthError::InvalidNonce`]), nonce
/// age ([`AuthError::Stale`]), uri, qop, the response (constant time,
/// [`AuthError::BadCredentials`]) and finally that `nc` is greater than any
/// accepted before with this nonce ([`AuthError::Replay`]).
#[allow(clippy::too_many_arguments)]
pub fn verify(
    resp: &DigestResponse,
    method: &str,
    request_uri: &str,
    ha1_hex: &str,
    now_ms: u64,
    issuer: &NonceIssuer,
    counts: &mut NonceCounts,
    realm: &str,
) -> Result<(), AuthError> {
    if resp.realm != realm {
        return Err(AuthError::RealmMismatch {
            expected: realm.to_string(),
            got: resp.realm.clone(),
        });
    }
    let (id, issued) = issuer.decode(&resp.nonce, now_ms)?;
    if !uri_matches(&resp.uri, request_uri) {
        return Err(AuthError::UriMismatch {
            digest_uri: resp.uri.clone(),
            request_uri: request_uri.to_string(),
        });
    }
    let nc = match resp.qop.as_deref() {
        Some(qop) if qop.eq_ignore_ascii_case("auth") => {
            let nc = resp
                .nc
                .as_deref()
                .ok_or(AuthError::MissingParameter("nc"))?;
            if resp.cnonce.is_none() {
                return Err(AuthError::MissingParameter("cnonce"));
            }
            Some(parse_nc(nc)?)
        }
        Some(other) => return Err(AuthError::UnsupportedQop(other.to_string())),
        None if issuer.allow_no_qop => None,
        None => return Err(AuthError::QopRequired),
    };
    let stored = normalize_ha1(ha1_hex)?;
    let expected = expected_response(resp, method, &stored)?;
    let got = resp.response.to_ascii_lowercase();
    if !bool::from(expected.as_bytes().ct_eq(got.as_bytes())) {
        return Err(AuthError::BadCredentials);
    }
    if let Some(nc) = nc {
        counts.record(id, issued, nc, now_ms, issuer.ttl_ms)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use digest_auth::{AuthContext, HttpMethod};

    const SECRET: [u8; 32] = [7u8; 32];
    const REALM: &str = "ferroacs";
    const NOW: u64 = 1_700_000_000_000;
    const TTL: u64 = 300_000;

    fn issuer() -> NonceIssuer {
        NonceIssuer::new(SECRET, TTL)
    }

    /// Answers `challenge` the way a real client does, with the
    /// independent `digest_auth` implementation. Returns the header value.
    fn client_answer(
        challenge: &str,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc_skip: u32,
    ) -> String {
        let mut prompt = digest_auth::parse(challenge).unwrap();
        prompt.nc += nc_skip;
        let ctx = AuthContext::new_with_method(
            user,
            password,
            uri,
            Option::<&[u8]>::None,
            HttpMethod(method.to_string().into()),
        );
        prompt.respond(&ctx).unwrap().to_string()
    }

    fn digest_of(header: &str) -> DigestResponse {
        match parse_authorization(header).unwrap() {
            Authorization::Digest(d) => d,
            other => panic!("expected Digest, got {other:?}"),
        }
    }

    fn check(
        header: &str,
        method: &str,
        uri: &str,
        password: &str,
        now: u64,
        counts: &mut NonceCounts,
    ) -> Result<(), AuthError> {
        let d = digest_of(header);
        verify(
            &d,
            method,
            uri,
            &ha1(&d.username, REALM, password),
            now,
            &issuer(),
            counts,
            REALM,
        )
    }

    #[test]
    fn hmac_key_padding_matches_plain_hmac() {
        let mut plain = HmacSha256::new_from_slice(&SECRET).unwrap();
        plain.update(b"data");
        let expected: [u8; 32] = plain.finalize().into_bytes().into();
        assert_eq!(issuer().mac(b"data"), expected);
    }

    #[test]
    fn rfc2617_example_vector() {
        let resp = DigestResponse {
            username: "Mufasa".into(),
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            uri: "/dir/index.html".into(),
            response: "6629fae49393a05397450978507c4ef1".into(),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("0a4f113b".into()),
            algorithm: DigestAlgorithm::Md5,
            opaque: Some("5ccc069c403ebaf9f0171e9517f40e41".into()),
        };
        let stored = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert_eq!(
            expected_response(&resp, "GET", &stored).unwrap(),
            resp.response
        );
    }

    #[test]
    fn challenge_format() {
        let c = issuer().challenge("ACS \"main\"", NOW, false);
        assert!(
            c.starts_with(r#"Digest realm="ACS \"main\"", qop="auth", nonce=""#),
            "{c}"
        );
        assert!(c.ends_with("algorithm=MD5"), "{c}");
        assert!(issuer()
            .challenge(REALM, NOW, true)
            .ends_with(", stale=true"));
        let parsed = digest_auth::parse(&issuer().challenge(REALM, NOW, true)).unwrap();
        assert!(parsed.stale);
        assert_eq!(parsed.realm, REALM);
        assert_eq!(parsed.opaque.as_deref(), Some(issuer().opaque().as_str()));
        // Two challenges never share a nonce.
        assert_ne!(
            digest_auth::parse(&issuer().challenge(REALM, NOW, false))
                .unwrap()
                .nonce,
            parsed.nonce
        );
    }

    #[test]
    fn real_client_is_accepted_and_nc_must_increase() {
        let mut counts = NonceCounts::default();
        let challenge = issuer().challenge(REALM, NOW, false);
        let mut prompt = digest_auth::parse(&challenge).unwrap();
        let ctx = AuthContext::new_post("000E50-CPE-123", "s3cret", "/acs", Option::<&[u8]>::None);
        let first = prompt.respond(&ctx).unwrap().to_string();
        let second = prompt.respond(&ctx).unwrap().to_string();
        check(&first, "POST", "/acs", "s3cret", NOW + 10, &mut counts).unwrap();
        check(&second, "POST", "/acs", "s3cret", NOW + 20, &mut counts).unwrap();
        assert_eq!(
            check(&second, "POST", "/acs", "s3cret", NOW + 30, &mut counts),
            Err(AuthError::Replay)
        );
        assert_eq!(
            check(&first, "POST", "/acs", "s3cret", NOW + 30, &mut counts),
            Err(AuthError::Replay)
        );
        assert_eq!(counts.len(), 1);
    }

    #[test]
    fn md5_sess_is_accepted() {
        let challenge = issuer()
            .challenge(REALM, NOW, false)
            .replace("algorithm=MD5", "algorithm=MD5-sess");
        let answer = client_answer(&challenge, "dev", "pw", "POST", "/acs", 0);
        assert!(answer.contains("algorithm=MD5-sess"));
        let mut counts = NonceCounts::default();
        check(&answer, "POST", "/acs", "pw", NOW, &mut counts).unwrap();
        assert_eq!(
            check(
                &answer,
                "POST",
                "/acs",
                "wrong",
                NOW,
                &mut NonceCounts::default()
            ),
            Err(AuthError::BadCredentials)
        );
    }

    #[test]
    fn wrong_password_and_method_are_rejected() {
        let challenge = issuer().challenge(REALM, NOW, false);
        let answer = client_answer(&challenge, "dev", "pw", "POST", "/acs", 0);
        let mut counts = NonceCounts::default();
        assert_eq!(
            check(&answer, "POST", "/acs", "pw2", NOW, &mut counts),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            check(&answer, "GET", "/acs", "pw", NOW, &mut counts),
            Err(AuthError::BadCredentials)
        );
        // Failed attempts are not recorded, so the right answer still works.
        assert!(counts.is_empty());
        check(&answer, "POST", "/acs", "pw", NOW, &mut counts).unwrap();
    }

    #[test]
    fn uri_must_match_request() {
        let challenge = issuer().challenge(REALM, NOW, false);
        let answer = client_answer(&challenge, "dev", "pw", "POST", "/acs", 0);
        let mut counts = NonceCounts::default();
        assert!(matches!(
            check(&answer, "POST", "/other", "pw", NOW, &mut counts),
            Err(AuthError::UriMismatch { .. })
        ));
        // Absolute-form request line against an origin-form digest uri.
        check(
            &answer,
            "POST",
            "http://acs.example:7547/acs",
            "pw",
            NOW,
            &mut counts,
        )
        .unwrap();

        // Absolute-form digest uri against an origin-form request line.
        let abs = client_answer(
            &challenge,
            "dev",
            "pw",
            "POST",
            "https://acs.example/acs?x=1",
            0,
        );
        check(
            &abs,
            "POST",
            "/acs?x=1",
            "pw",
            NOW,
            &mut NonceCounts::default(),
        )
        .unwrap();
        assert!(matches!(
            check(&abs, "POST", "/acs", "pw", NOW, &mut NonceCounts::default()),
            Err(AuthError::UriMismatch { .. })
        ));
    }

    #[test]
    fn request_target_forms() {
        assert_eq!(request_target("/a?b"), "/a?b");
        assert_eq!(request_target("HTTP://h:1/a?b"), "/a?b");
        assert_eq!(request_target("http://h"), "/");
        assert_eq!(request_target("http://h?q=1"), "/?q=1");
        assert_eq!(request_target("https://[::1]:443/x"), "/x");
        assert_eq!(request_target(""), "/");
    }

    #[test]
    fn expired_nonce_is_stale_and_future_nonce_too() {
        let challenge = issuer().challenge(REALM, NOW, false);
        let answer = client_answer(&challenge, "dev", "pw", "POST", "/acs", 0);
        let mut counts = NonceCounts::default();
        assert_eq!(
            check(&answer, "POST", "/acs", "pw", NOW + TTL + 1, &mut counts),
            Err(AuthError::Stale)
        );
        assert_eq!(
            check(&answer, "POST", "/acs", "pw", NOW - TTL - 1, &mut counts),
            Err(AuthError::Stale)
        );
        check(&answer, "POST", "/acs", "pw", NOW + TTL, &mut counts).unwrap();
        // Even with the right password, an expired nonce is stale, not accepted.
        assert_eq!(
            issuer().check_nonce(&digest_of(&answer).nonce, NOW + TTL + 1),
            Err(AuthError::Stale)
        );
    }

    #[test]
    fn forged_and_foreign_nonces_are_invalid() {
        let mut counts = NonceCounts::default();
        let other = NonceIssuer::new([8u8; 32], TTL).challenge(REALM, NOW, false);
        let answer = client_answer(&other, "dev", "pw", "POST", "/acs", 0);
        assert_eq!(
            check(&answer, "POST", "/acs", "pw", NOW, &mut counts),
            Err(AuthError::InvalidNonce)
        );

        // Flip one character of a genuine nonce.
        let nonce = issuer().issue(NOW);
        let mut bytes = nonce.into_bytes();
        bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            issuer().check_nonce(&tampered, NOW),
            Err(AuthError::InvalidNonce)
        );
        assert_eq!(
            issuer().check_nonce("not base64!", NOW),
            Err(AuthError::InvalidNonce)
        );
        assert_eq!(issuer().check_nonce("", NOW), Err(AuthError::InvalidNonce));
        assert_eq!(issuer().check_nonce(&issuer().issue(NOW), NOW), Ok(NOW));
    }

    #[test]
    fn realm_must_match() {
        let challenge = issuer().challenge("other", NOW, false);
        let answer = client_answer(&challenge, "dev", "pw", "POST", "/acs", 0);
        assert!(matches!(
            check(
                &answer,
                "POST",
                "/acs",
                "pw",
                NOW,
                &mut NonceCounts::default()
            ),
            Err(AuthError::RealmMismatch { .. })
        ));
    }

    #[test]
    fn rfc2069_only_when_enabled() {
        let challenge = issuer()
            .challenge(REALM, NOW, false)
            .replace(r#"qop="auth", "#, "");
        let answer = client_answer(&challenge, "dev", "pw", "GET", "/", 0);
        assert!(!answer.contains("qop"));
        let d = digest_of(&answer);
        let stored = ha1("dev", REALM, "pw");
        let mut counts = NonceCounts::default();
        assert_eq!(
            verify(&d, "GET", "/", &stored, NOW, &issuer(), &mut counts, REALM),
            Err(AuthError::QopRequired)
        );
        let legacy = issuer().allow_no_qop(true);
        verify(&d, "GET", "/", &stored, NOW, &legacy, &mut counts, REALM).unwrap();
        assert_eq!(
            verify(
                &d,
                "GET",
                "/",
                &ha1("dev", REALM, "x"),
                NOW,
                &legacy,
                &mut counts,
                REALM
            ),
            Err(AuthError::BadCredentials)
        );
    }

    #[test]
    fn qop_auth_needs_nc_and_cnonce() {
        let challenge = issuer().challenge(REALM, NOW, false);
        let answer = client_answer(&challenge, "dev", "pw", "GET", "/", 0);
        let mut d = digest_of(&answer);
        let stored = ha1("dev", REALM, "pw");
        let mut counts = NonceCounts::default();
        let mut no_nc = d.clone();
        no_nc.nc = None;
        assert_eq!(
            verify(
                &no_nc,
                "GET",
                "/",
                &stored,
                NOW,
                &issuer(),
                &mut counts,
                REALM
            ),
            Err(AuthError::MissingParameter("nc"))
        );
        let mut no_cnonce = d.clone();
        no_cnonce.cnonce = None;
        assert_eq!(
            verify(
                &no_cnonce,
                "GET",
                "/",
                &stored,
                NOW,
                &issuer(),
                &mut counts,
                REALM
            ),
            Err(AuthError::MissingParameter("cnonce"))
        );
        d.nc = Some("zz".into());
        assert_eq!(
            verify(&d, "GET", "/", &stored, NOW, &issuer(), &mut counts, REALM),
            Err(AuthError::InvalidNonceCount("zz".into()))
        );
        d.nc = Some("00000000".into());
        assert!(matches!(
            verify(&d, "GET", "/", &stored, NOW, &issuer(), &mut counts, REALM),
            Err(AuthError::InvalidNonceCount(_))
        ));
        d.qop = Some("auth-int".into());
        assert_eq!(
            verify(&d, "GET", "/", &stored, NOW, &issuer(), &mut counts, REALM),
            Err(AuthError::UnsupportedQop("auth-int".into()))
        );
        assert_eq!(
            verify(
                &digest_of(&answer),
                "GET",
                "/",
                "nothex",
                NOW,
                &issuer(),
                &mut counts,
                REALM
            ),
            Err(AuthError::InvalidStoredHa1)
        );
    }

    #[test]
    fn uppercase_response_and_stored_ha1_are_accepted() {
        let challenge = issuer().challenge(REALM, NOW, false);
        let answer = client_answer(&challenge, "dev", "pw", "GET", "/", 0);
        let mut d = digest_of(&answer);
        d.response = d.response.to_ascii_uppercase();
        let stored = ha1("dev", REALM, "pw").to_ascii_uppercase();
        verify(
            &d,
            "GET",
            "/",
            &stored,
            NOW,
            &issuer(),
            &mut NonceCounts::default(),
            REALM,
        )
        .unwrap();
    }

    #[test]
    fn nonce_counts_stay_bounded_and_never_accept_forgotten_nonces() {
        let iss = issuer();
        let stored = ha1("dev", REALM, "pw");
        let mut counts = NonceCounts::new(4);
        let answers: Vec<String> = (0..6)
            .map(|i| {
                let ch = iss.challenge(REALM, NOW + i, false);
                client_answer(&ch, "dev", "pw", "GET", "/", 0)
            })
            .collect();
        for a in &answers {
            verify(
                &digest_of(a),
                "GET",
                "/",
                &stored,
                NOW + 10,
                &iss,
                &mut counts,
                REALM,
            )
            .unwrap();
            assert!(counts.len() <= 4);
        }
        // The two oldest were evicted: their replay is refused as stale.
        for a in &answers[..2] {
            assert_eq!(
                verify(
                    &digest_of(a),
                    "GET",
                    "/",
                    &stored,
                    NOW + 11,
                    &iss,
                    &mut counts,
                    REALM
                ),
                Err(AuthError::Stale)
            );
        }
        for a in &answers[2..] {
            assert_eq!(
                verify(
                    &digest_of(a),
                    "GET",
                    "/",
                    &stored,
                    NOW + 11,
                    &iss,
                    &mut counts,
                    REALM
                ),
                Err(AuthError::Replay)
            );
        }
        // Once the TTL has passed, expired entries are dropped.
        let fresh = client_answer(
            &iss.challenge(REALM, NOW + TTL + 100, false),
            "dev",
            "pw",
            "GET",
            "/",
            0,
        );
        verify(
            &digest_of(&fresh),
            "GET",
            "/",
            &stored,
            NOW + TTL + 100,
            &iss,
            &mut counts,
            REALM,
        )
        .unwrap();
        assert_eq!(counts.len(), 1);
    }

    #[test]
    fn nc_may_skip_but_not_go_back() {
        let iss = issuer();
        let ch = iss.challenge(REALM, NOW, false);
        let stored = ha1("dev", REALM, "pw");
        let mut counts = NonceCounts::default();
        let fifth = client_answer(&ch, "dev", "pw", "GET", "/", 4);
        let third = client_answer(&ch, "dev", "pw", "GET", "/", 2);
        assert!(fifth.contains("nc=00000005"));
        verify(
            &digest_of(&fifth),
            "GET",
            "/",
            &stored,
            NOW,
            &iss,
            &mut counts,
            REALM,
        )
        .unwrap();
        assert_eq!(
            verify(
                &digest_of(&third),
                "GET",
                "/",
                &stored,
                NOW,
                &iss,
                &mut counts,
                REALM
            ),
            Err(AuthError::Replay)
        );
    }

    #[test]
    fn basic_credentials() {
        let stored = ha1("dev", REALM, "p:w");
        // "dev:p:w"
        let auth = parse_authorization("Basic ZGV2OnA6dw==").unwrap();
        let Authorization::Basic { username, password } = &auth else {
            panic!("expected Basic");
        };
        assert_eq!((username.as_str(), password.as_str()), ("dev", "p:w"));
        assert!(!format!("{auth:?}").contains("p:w"));
        verify_basic(username, password, REALM, &stored).unwrap();
        assert_eq!(
            verify_basic(username, "p:x", REALM, &stored),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            verify_basic(username, password, "other", &stored),
            Err(AuthError::BadCredentials)
        );
        // Missing padding and lower-case scheme.
        assert_eq!(parse_authorization("basic ZGV2OnA6dw").unwrap(), auth);
        // ISO-8859-1 fallback: "d\xe9v:x".
        assert_eq!(
            parse_authorization("Basic ZOl2Ong=").unwrap().username(),
            "d\u{e9}v"
        );
    }

    #[test]
    fn malformed_headers_have_clear_errors() {
        assert!(matches!(
            parse_authorization(""),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            parse_authorization("Bearer abc"),
            Err(AuthError::UnsupportedScheme(s)) if s == "Bearer"
        ));
        assert!(matches!(
            parse_authorization("Basic !!!"),
            Err(AuthError::Malformed(_) | AuthError::InvalidBasic(_))
        ));
        assert!(matches!(
            parse_authorization("Basic bm9jb2xvbg=="), // "nocolon"
            Err(AuthError::InvalidBasic(_))
        ));
        assert!(matches!(
            parse_authorization(r#"Basic realm="x""#),
            Err(AuthError::InvalidBasic(_))
        ));
        assert_eq!(
            parse_authorization(r#"Digest username="a", realm="r", nonce="n", uri="/""#),
            Err(AuthError::MissingParameter("response"))
        );
        assert_eq!(
            parse_authorization(
                r#"Digest username="a", realm="r", nonce="n", uri="/", response="x", algorithm=SHA-256"#
            ),
            Err(AuthError::UnsupportedAlgorithm("SHA-256".into()))
        );
        assert_eq!(
            parse_authorization(
                r#"Digest username="a", USERNAME="b", realm="r", nonce="n", uri="/", response="x""#
            ),
            Err(AuthError::DuplicateParameter("username".into()))
        );
        assert!(matches!(
            parse_authorization(r#"Digest username="a, realm="r""#),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            parse_authorization("Digest abc"),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn digest_parsing_is_tolerant() {
        let d = digest_of(
            "digest  Username = \"000E50-CPE%2D1\",realm=ferroacs ,NONCE=\"n\",  uri=\"/acs?a=1,b=2\", \
             response=\"ABC\", qop=auth, nc=00000001, cnonce=\"c\", algorithm=\"md5-sess\", opaque=\"o\"",
        );
        assert_eq!(d.username, "000E50-CPE%2D1");
        assert_eq!(d.realm, "ferroacs");
        assert_eq!(d.uri, "/acs?a=1,b=2");
        assert_eq!(d.algorithm, DigestAlgorithm::Md5Sess);
        assert_eq!(d.qop.as_deref(), Some("auth"));
        assert_eq!(d.opaque.as_deref(), Some("o"));
    }
}
