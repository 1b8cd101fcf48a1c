//! TR-111 Part 2 (TR-069 Annex G) decisions of the STUN server: what a Binding Request gets
//! and which binding is recorded ([`answer`], pure, with its unit tests), and the server's
//! shared state ([`StunService`]). The socket loop lives in `crate::stun`; the STUN settings
//! a device gets are `domain::tr111`.
//!
//! Trust: a binding is recorded for a device only from a Binding Request carrying
//! CONNECTION-REQUEST-BINDING, the device's STUNUsername and a MESSAGE-INTEGRITY that checks
//! with its STUNPassword. Requests without them are answered (a device may test its NAT)
//! but never move where connection requests for a known device go.

use std::net::SocketAddr;
use std::sync::OnceLock;

use dashmap::DashMap;
use ferroacs_stun::{check_integrity, Attr, Class, Integrity, Message, BINDING};

use crate::error::Result;
use crate::store::Store;

/// What the server does with one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The datagram to send back to the source, if any.
    pub reply: Option<Vec<u8>>,
    /// A binding to record.
    pub binding: Option<BindingSeen>,
}

/// An authenticated Binding Request from a device's connection-request socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSeen {
    pub device_id: String,
    /// The public address and port the request came from.
    pub binding: SocketAddr,
    /// The device said its binding changed (BINDING-CHANGE).
    pub change: bool,
}

/// The credentials of the USERNAME a request carries, as the store knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub device_id: String,
    pub password: String,
}

/// Decide the answer to `bytes` (a whole datagram, decoded as `msg`) from `from`, received
/// on `local`. `cred` holds the credentials of `msg`'s USERNAME when the store knows it.
///
/// In order: anything but a Binding Request is dropped; comprehension-required attributes
/// this server does not know get 420; a CHANGE-REQUEST asking for another address or port
/// is dropped (this server has one address: no answer is what RFC 3489 clients expect
/// from a server that cannot change); a USERNAME that is unknown, or whose
/// MESSAGE-INTEGRITY is missing or wrong, gets 401; with `require_integrity_on_change`, a
/// BINDING-CHANGE without USERNAME gets 401 too. Everything else gets a success answer
/// with the source address (MAPPED-ADDRESS; XOR-MAPPED-ADDRESS too for RFC 5389), signed
/// with the device's password when the request was. RESPONSE-ADDRESS is ignored: answers
/// go to the source only, so the server cannot be used to reflect traffic.
pub fn answer(
    bytes: &[u8],
    msg: &Message,
    from: SocketAddr,
    local: SocketAddr,
    cred: Option<&Credentials>,
    require_integrity_on_change: bool,
) -> Decision {
    let drop = Decision {
        reply: None,
        binding: None,
    };
    if msg.class != Class::Request || msg.method != BINDING {
        return drop;
    }
    let unknown = msg.unknown_required();
    if !unknown.is_empty() {
        let reply = msg
            .response(Class::Error)
            .with(Attr::ErrorCode {
                code: 420,
                reason: "Unknown Attribute".into(),
            })
            .with(Attr::UnknownAttributes(unknown));
        return Decision {
            reply: Some(reply.encode(None)),
            binding: None,
        };
    }
    if let Some(Attr::ChangeRequest(flags)) = msg.get(Attr::CHANGE_REQUEST) {
        if flags & 0x6 != 0 {
            return drop;
        }
    }
    let unauthorized = || Decision {
        reply: Some(
            msg.response(Class::Error)
                .with(Attr::ErrorCode {
                    code: 401,
                    reason: "Unauthorized".into(),
                })
                .encode(None),
        ),
        binding: None,
    };
    let mut key: Option<&Credentials> = None;
    if msg.username().is_some() {
        match cred {
            Some(c) if check_integrity(bytes, c.password.as_bytes()) == Integrity::Valid => {
                key = Some(c);
            }
            _ => return unauthorized(),
        }
    } else if require_integrity_on_change && msg.has(Attr::BINDING_CHANGE) {
        return unauthorized();
    }
    let mut reply = msg.response(Class::Success).with(Attr::MappedAddress(from));
    if msg.is_rfc5389() {
        reply = reply.with(Attr::XorMappedAddress(from));
    } else {
        reply = reply
            .with(Attr::SourceAddress(local))
            .with(Attr::ChangedAddress(local));
    }
    let binding = match key {
        Some(c) if msg.has(Attr::CONNECTION_REQUEST_BINDING) => Some(BindingSeen {
            device_id: c.device_id.clone(),
            binding: from,
            change: msg.has(Attr::BINDING_CHANGE),
        }),
        _ => None,
    };
    Decision {
        reply: Some(reply.encode(key.map(|c| c.password.as_bytes()))),
        binding,
    }
}

/// How long credentials read from the store are used before being read again.
const CRED_TTL_MS: i64 = 30_000;
/// How often an unchanged binding's `seen_at` is written.
const SEEN_WRITE_MS: i64 = 60_000;
/// Entries kept in each cache before it is cleared.
const CACHE_MAX: usize = 200_000;

/// The STUN server's shared state: its address once it listens, a cache of credentials by
/// USERNAME (unknown ones included, so junk usernames do not reach the database each time)
/// and the bindings last written.
#[derive(Default)]
pub struct StunService {
    addr: OnceLock<SocketAddr>,
    creds: DashMap<String, (Option<Credentials>, i64)>,
    written: DashMap<String, (SocketAddr, i64)>,
}

impl StunService {
    /// The server listens on `addr`.
    pub fn set_addr(&self, addr: SocketAddr) {
        let _ = self.addr.set(addr);
    }

    /// Where the server listens, once it does.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr.get().copied()
    }

    /// The credentials of `username`, from the cache or the store.
    pub async fn credentials(
        &self,
        store: &Store,
        username: &str,
        now: i64,
    ) -> Result<Option<Credentials>> {
        if let Some(e) = self.creds.get(username) {
            if now - e.1 < CRED_TTL_MS && now >= e.1 {
                return Ok(e.0.clone());
            }
        }
        let u = username.to_string();
        let row = store.run(move |s| s.stun_by_username(&u)).await?;
        let cred = match row {
            Some(r) => Some(Credentials {
                password: store
                    .keyring()
                    .open(crate::secrets::purpose::STUN_PASSWORD, &r.password)?,
                device_id: r.device_id,
            }),
            None => None,
        };
        if self.creds.len() > CACHE_MAX {
            self.creds.clear();
        }
        self.creds.insert(username.to_string(), (cred.clone(), now));
        Ok(cred)
    }

    /// Forget the cached credentials of `username` (they were just replaced).
    pub fn forget(&self, username: &str) {
        self.creds.remove(username);
    }

    /// Whether `seen` must be written: a new binding, a change the device announced, or
    /// an unchanged one last written more than a minute ago.
    pub fn needs_write(&self, seen: &BindingSeen, now: i64) -> bool {
        let fresh = self
            .written
            .get(&seen.device_id)
            .is_some_and(|w| w.0 == seen.binding && now - w.1 < SEEN_WRITE_MS && now >= w.1);
        if fresh && !seen.change {
            return false;
        }
        if self.written.len() > CACHE_MAX {
            self.written.clear();
        }
        self.written
            .insert(seen.device_id.clone(), (seen.binding, now));
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ferroacs_stun::decode;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const FROM: &str = "198.51.100.7:40001";
    const LOCAL: &str = "192.0.2.1:3478";

    fn cred() -> Credentials {
        Credentials {
            device_id: "00D09E-CPE-1".into(),
            password: "s3cret".into(),
        }
    }

    fn run(req: &Message, key: Option<&[u8]>, c: Option<&Credentials>, strict: bool) -> Decision {
        let bytes = req.encode(key);
        let msg = decode(&bytes).unwrap();
        answer(&bytes, &msg, addr(FROM), addr(LOCAL), c, strict)
    }

    #[test]
    fn classic_request_gets_mapped_source_and_changed_address() {
        let req = Message::classic(Class::Request, BINDING, [3; 16]);
        let d = run(&req, None, None, true);
        let back = decode(&d.reply.unwrap()).unwrap();
        assert_eq!(back.class, Class::Success);
        assert_eq!(back.transaction, [3; 16]);
        assert!(!back.is_rfc5389());
        assert_eq!(
            back.get(Attr::MAPPED_ADDRESS),
            Some(&Attr::MappedAddress(addr(FROM)))
        );
        assert_eq!(
            back.get(Attr::SOURCE_ADDRESS),
            Some(&Attr::SourceAddress(addr(LOCAL)))
        );
        assert!(d.binding.is_none());
    }

    #[test]
    fn rfc5389_request_gets_xor_mapped_address_and_fingerprint() {
        let req = Message::rfc5389(Class::Request, BINDING, [9; 12]);
        let d = run(&req, None, None, true);
        let bytes = d.reply.unwrap();
        let back = decode(&bytes).unwrap();
        assert!(back.is_rfc5389());
        assert_eq!(
            back.get(Attr::XOR_MAPPED_ADDRESS),
            Some(&Attr::XorMappedAddress(addr(FROM)))
        );
        assert_eq!(ferroacs_stun::check_fingerprint(&bytes), Some(true));
    }

    #[test]
    fn authenticated_connection_request_binding_is_recorded_and_answer_signed() {
        let c = cred();
        for rfc5389 in [false, true] {
            let base = if rfc5389 {
                Message::rfc5389(Class::Request, BINDING, [1; 12])
            } else {
                Message::classic(Class::Request, BINDING, [1; 16])
            };
            let req = base
                .with(Attr::ConnectionRequestBinding)
                .with(Attr::BindingChange)
                .with(Attr::Username(c.device_id.clone()));
            let d = run(&req, Some(b"s3cret"), Some(&c), true);
            let reply = d.reply.unwrap();
            assert_eq!(check_integrity(&reply, b"s3cret"), Integrity::Valid);
            assert_eq!(
                d.binding,
                Some(BindingSeen {
                    device_id: c.device_id.clone(),
                    binding: addr(FROM),
                    change: true
                })
            );
        }
    }

    #[test]
    fn authenticated_request_without_tr111_attribute_records_nothing() {
        let c = cred();
        let req = Message::classic(Class::Request, BINDING, [1; 16])
            .with(Attr::Username(c.device_id.clone()));
        let d = run(&req, Some(b"s3cret"), Some(&c), true);
        assert!(d.reply.is_some());
        assert!(d.binding.is_none());
    }

    fn error_code(d: &Decision) -> Option<u16> {
        let back = decode(d.reply.as_ref()?).ok()?;
        match back.get(Attr::ERROR_CODE) {
            Some(Attr::ErrorCode { code, .. }) => Some(*code),
            _ => None,
        }
    }

    #[test]
    fn wrong_missing_or_unknown_credentials_get_401_and_record_nothing() {
        let c = cred();
        let req = Message::classic(Class::Request, BINDING, [1; 16])
            .with(Attr::ConnectionRequestBinding)
            .with(Attr::Username(c.device_id.clone()));
        // Wrong password.
        let d = run(&req, Some(b"guess"), Some(&c), false);
        assert_eq!((error_code(&d), d.binding), (Some(401), None));
        // No MESSAGE-INTEGRITY at all.
        let d = run(&req, None, Some(&c), false);
        assert_eq!((error_code(&d), d.binding), (Some(401), None));
        // A USERNAME nobody has.
        let d = run(&req, Some(b"s3cret"), None, false);
        assert_eq!((error_code(&d), d.binding), (Some(401), None));
    }

    #[test]
    fn unauthenticated_binding_change_gets_401_only_when_configured() {
        let req = Message::classic(Class::Request, BINDING, [1; 16])
            .with(Attr::ConnectionRequestBinding)
            .with(Attr::BindingChange);
        let d = run(&req, None, None, true);
        assert_eq!((error_code(&d), d.binding), (Some(401), None));
        let d = run(&req, None, None, false);
        assert_eq!(error_code(&d), None);
        assert!(d.reply.is_some() && d.binding.is_none());
    }

    #[test]
    fn unknown_required_attribute_gets_420_and_change_request_is_dropped() {
        let req = Message::classic(Class::Request, BINDING, [1; 16]).with(Attr::Other {
            kind: 0x0031,
            value: vec![0; 4],
        });
        let d = run(&req, None, None, true);
        assert_eq!(error_code(&d), Some(420));
        let req = Message::classic(Class::Request, BINDING, [1; 16]).with(Attr::ChangeRequest(4));
        assert_eq!(run(&req, None, None, true).reply, None);
        let req = Message::classic(Class::Request, BINDING, [1; 16]).with(Attr::ChangeRequest(0));
        assert!(run(&req, None, None, true).reply.is_some());
        // Responses and other methods are not answered.
        let resp = Message::classic(Class::Success, BINDING, [1; 16]);
        assert_eq!(run(&resp, None, None, true).reply, None);
        let other = Message::classic(Class::Request, 0x003, [1; 16]);
        assert_eq!(run(&other, None, None, true).reply, None);
    }

    #[test]
    fn binding_writes_are_throttled_unless_it_changes() {
        let sv = StunService::default();
        let seen = |a: &str, change: bool| BindingSeen {
            device_id: "d".into(),
            binding: addr(a),
            change,
        };
        assert!(sv.needs_write(&seen(FROM, false), 0));
        assert!(!sv.needs_write(&seen(FROM, false), 1_000));
        assert!(sv.needs_write(&seen(FROM, true), 2_000));
        assert!(sv.needs_write(&seen("198.51.100.7:40002", false), 3_000));
        assert!(!sv.needs_write(&seen("198.51.100.7:40002", false), 4_000));
        assert!(sv.needs_write(&seen("198.51.100.7:40002", false), 64_000));
    }
}
