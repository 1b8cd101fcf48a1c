//! Logging in to an XMPP server as a client, as a state machine without I/O: STARTTLS, SASL
//! (SCRAM-SHA-1 or SCRAM-SHA-256; PLAIN only inside TLS), resource binding.
//!
//! The caller owns the socket and the [`Decoder`](super::codec::Decoder): it sends what
//! [`Login::start`] returns, feeds every decoded event to [`Login::on_event`] and carries out
//! the [`Action`]s in order. The order of the checks:
//!
//! 1. the server's features after the first stream header: STARTTLS when offered (always
//!    taken); no STARTTLS and plain not allowed → [`LoginError::TlsUnavailable`];
//! 2. after TLS (or on an allowed plain stream): SCRAM-SHA-256, then SCRAM-SHA-1, then PLAIN
//!    only when TLS is up; none of them → [`LoginError::NoMechanism`];
//! 3. SASL success is accepted only with the server's signature verified (SCRAM);
//! 4. after the restart, resource binding; the JID the server bound is the result.

use sasl::client::mechanisms::{Plain, Scram};
use sasl::client::Mechanism;
use sasl::common::scram::{Sha1, Sha256};
use sasl::common::{ChannelBinding, Credentials};

use super::codec::{self, Event, Sasl};

/// What the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Upgrade the connection to TLS now, then call [`Login::tls_ready`].
    StartTls,
    /// A new stream starts: reset the decoder (the bytes to send follow as `Send`).
    Restart,
    /// Logged in: the bound full JID.
    Bound(String),
}

/// Why logging in failed. Messages name what to check; none holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error(
        "the XMPP server offers no STARTTLS; ferroacs does not log in without TLS unless \
         xmpp.allow_plain is set (loopback tests only)"
    )]
    TlsUnavailable,
    #[error(
        "the XMPP server offers no SASL mechanism ferroacs may use (SCRAM-SHA-1, \
         SCRAM-SHA-256, or PLAIN inside TLS)"
    )]
    NoMechanism,
    #[error("the XMPP server refused the login ({0}); check xmpp.jid and xmpp.password")]
    AuthFailed(String),
    #[error("the XMPP server's SCRAM signature is wrong (not the server the account is on?)")]
    BadServerSignature,
    #[error("the XMPP server did not bind a resource")]
    BindFailed,
    #[error("the XMPP server sent an unexpected element during login: {0}")]
    Unexpected(String),
    #[error("the XMPP server closed the stream during login")]
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Features,
    Proceed,
    Auth,
    Bind,
    Done,
}

/// The login of one account on one connection.
pub struct Login {
    local: String,
    domain: String,
    resource: String,
    password: String,
    allow_plain: bool,
    tls: bool,
    authenticated: bool,
    state: State,
    mechanism: Option<Box<dyn Mechanism + Send>>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("local", &self.local)
            .field("domain", &self.domain)
            .field("resource", &self.resource)
            .field("tls", &self.tls)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Splits `local@domain/resource` (resource optional).
pub fn split_jid(jid: &str) -> Option<(&str, &str, &str)> {
    let (bare, resource) = jid.split_once('/').unwrap_or((jid, ""));
    let (local, domain) = bare.split_once('@')?;
    (!local.is_empty() && !domain.is_empty() && !domain.contains('@'))
        .then_some((local, domain, resource))
}

const BIND_ID: &str = "bind-1";

impl Login {
    /// Logs in as `jid` (`local@domain[/resource]`); `allow_plain` permits a stream without
    /// TLS (loopback tests), never PLAIN on it.
    pub fn new(jid: &str, password: &str, allow_plain: bool) -> Option<Login> {
        let (local, domain, resource) = split_jid(jid)?;
        Some(Login {
            local: local.to_string(),
            domain: domain.to_string(),
            resource: resource.to_string(),
            password: password.to_string(),
            allow_plain,
            tls: false,
            authenticated: false,
            state: State::Header,
            mechanism: None,
        })
    }

    /// The first bytes to send.
    pub fn start(&mut self) -> Vec<u8> {
        self.state = State::Header;
        codec::stream_open(&self.domain)
    }

    /// The connection is now TLS: the stream header to send (reset the decoder first).
    pub fn tls_ready(&mut self) -> Vec<u8> {
        self.tls = true;
        self.start()
    }

    /// True once bound.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds one decoded event.
    pub fn on_event(&mut self, ev: Event) -> Result<Vec<Action>, LoginError> {
        let el = match ev {
            Event::StreamOpen(_) if self.state == State::Header => {
                self.state = State::Features;
                return Ok(Vec::new());
            }
            Event::StreamClose => return Err(LoginError::Closed),
            Event::StreamOpen(_) => return Err(LoginError::Unexpected("stream header".into())),
            Event::Element(el) => el,
        };
        if el.is("error", codec::NS_STREAMS) {
            let cond = el.children.first().map(|c| c.name.clone());
            return Err(LoginError::Unexpected(format!(
                "stream error {}",
                cond.unwrap_or_default()
            )));
        }
        match self.state {
            State::Features => {
                let f =
                    codec::features(&el).ok_or_else(|| LoginError::Unexpected(el.name.clone()))?;
                if self.authenticated {
                    if !f.bind {
                        return Err(LoginError::BindFailed);
                    }
                    self.state = State::Bind;
                    return Ok(vec![Action::Send(codec::bind(BIND_ID, &self.resource))]);
                }
                if !self.tls {
                    if f.starttls {
                        self.state = State::Proceed;
                        return Ok(vec![Action::Send(codec::starttls())]);
                    }
                    if !self.allow_plain {
                        return Err(LoginError::TlsUnavailable);
                    }
                }
                self.begin_auth(&f.mechanisms)
            }
            State::Proceed => {
                if el.is("proceed", codec::NS_TLS) {
                    Ok(vec![Action::StartTls])
                } else {
                    Err(LoginError::TlsUnavailable)
                }
            }
            State::Auth => {
                let Some(s) = codec::sasl(&el) else {
                    return Err(LoginError::Unexpected(el.name.clone()));
                };
                let Some(m) = self.mechanism.as_mut() else {
                    return Err(LoginError::NoMechanism);
                };
                match s {
                    Sasl::Challenge(c) => {
                        let r = m
                            .response(&c)
                            .map_err(|e| LoginError::AuthFailed(e.to_string()))?;
                        Ok(vec![Action::Send(codec::sasl_response(&r))])
                    }
                    Sasl::Success(data) => {
                        m.success(&data)
                            .map_err(|_| LoginError::BadServerSignature)?;
                        self.mechanism = None;
                        self.authenticated = true;
                        self.state = State::Header;
                        Ok(vec![
                            Action::Restart,
                            Action::Send(codec::stream_open(&self.domain)),
                        ])
                    }
                    Sasl::Failure(c) => Err(LoginError::AuthFailed(c)),
                }
            }
            State::Bind => {
                let q = codec::iq(&el).filter(|q| q.id == BIND_ID);
                match q {
                    Some(q) => match q.bound_jid() {
                        Some(jid) => {
                            let jid = jid.to_string();
                            self.state = State::Done;
                            Ok(vec![Action::Bound(jid)])
                        }
                        None => Err(LoginError::BindFailed),
                    },
                    None => Err(LoginError::Unexpected(el.name.clone())),
                }
            }
            State::Header | State::Done => Err(LoginError::Unexpected(el.name.clone())),
        }
    }

    fn begin_auth(&mut self, offered: &[String]) -> Result<Vec<Action>, LoginError> {
        let creds = Credentials::default()
            .with_username(self.local.clone())
            .with_password(self.password.clone())
            .with_channel_binding(ChannelBinding::None);
        let has = |m: &str| offered.iter().any(|o| o == m);
        let mut m: Box<dyn Mechanism + Send> = if has("SCRAM-SHA-256") {
            Box::new(
                Scram::<Sha256>::from_credentials(creds)
                    .map_err(|e| LoginError::AuthFailed(e.to_string()))?,
            )
        } else if has("SCRAM-SHA-1") {
            Box::new(
                Scram::<Sha1>::from_credentials(creds)
                    .map_err(|e| LoginError::AuthFailed(e.to_string()))?,
            )
        } else if has("PLAIN") && self.tls {
            Box::new(
                Plain::from_credentials(creds)
                    .map_err(|e| LoginError::AuthFailed(e.to_string()))?,
            )
        } else {
            return Err(LoginError::NoMechanism);
        };
        let initial = m.initial();
        let name = m.name().to_string();
        self.mechanism = Some(m);
        self.state = State::Auth;
        Ok(vec![Action::Send(codec::auth(&name, &initial))])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::xmpp::codec::{Decoder, NS_SASL, NS_STREAMS, NS_TLS};

    fn el(s: &str) -> Event {
        let mut d = Decoder::new(4096);
        d.feed(
            format!("<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAMS}'>").as_bytes(),
        )
        .unwrap();
        d.feed(s.as_bytes()).unwrap().remove(0)
    }

    fn features(inner: &str) -> Event {
        el(&format!("<stream:features>{inner}</stream:features>"))
    }

    fn sent(a: &[Action]) -> String {
        a.iter()
            .filter_map(|a| match a {
                Action::Send(b) => Some(String::from_utf8_lossy(b).to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn starttls_is_always_taken_and_required_unless_plain_allowed() {
        let mut l = Login::new("acs@example.net/ferroacs", "pw", false).unwrap();
        assert!(String::from_utf8(l.start())
            .unwrap()
            .contains("to='example.net'"));
        l.on_event(Event::StreamOpen(vec![])).unwrap();
        let a = l
            .on_event(features(&format!("<starttls xmlns='{NS_TLS}'/>")))
            .unwrap();
        assert!(sent(&a).contains("<starttls"));
        let a = l
            .on_event(el(&format!("<proceed xmlns='{NS_TLS}'/>")))
            .unwrap();
        assert_eq!(a, vec![Action::StartTls]);

        // No STARTTLS offered: refused, even with PLAIN on offer.
        let mech =
            format!("<mechanisms xmlns='{NS_SASL}'><mechanism>PLAIN</mechanism></mechanisms>");
        let mut l = Login::new("acs@example.net", "pw", false).unwrap();
        l.start();
        l.on_event(Event::StreamOpen(vec![])).unwrap();
        assert_eq!(l.on_event(features(&mech)), Err(LoginError::TlsUnavailable));
        // Plain allowed (tests): still never PLAIN outside TLS.
        let mut l = Login::new("acs@example.net", "pw", true).unwrap();
        l.start();
        l.on_event(Event::StreamOpen(vec![])).unwrap();
        assert_eq!(l.on_event(features(&mech)), Err(LoginError::NoMechanism));
    }

    #[test]
    fn plain_inside_tls_and_scram_preferred() {
        let mut l = Login::new("acs@example.net", "secret-pw", false).unwrap();
        l.tls_ready();
        l.on_event(Event::StreamOpen(vec![])).unwrap();
        let a = l
            .on_event(features(&format!(
                "<mechanisms xmlns='{NS_SASL}'><mechanism>PLAIN</mechanism>\
                 <mechanism>SCRAM-SHA-1</mechanism></mechanisms>"
            )))
            .unwrap();
        let s = sent(&a);
        assert!(s.contains("mechanism='SCRAM-SHA-1'"), "{s}");
        assert!(!s.contains("secret-pw"));
        let mut l = Login::new("acs@example.net", "secret-pw", false).unwrap();
        l.tls_ready();
        l.on_event(Event::StreamOpen(vec![])).unwrap();
        let a = l
            .on_event(features(&format!(
                "<mechanisms xmlns='{NS_SASL}'><mechanism>PLAIN</mechanism></mechanisms>"
            )))
            .unwrap();
        assert!(sent(&a).contains("mechanism='PLAIN'"));
        // A failure names the condition, never the password.
        let e = l
            .on_event(el(&format!(
                "<failure xmlns='{NS_SASL}'><not-authorized/></failure>"
            )))
            .unwrap_err();
        assert_eq!(e, LoginError::AuthFailed("not-authorized".into()));
        assert!(!e.to_string().contains("secret-pw"));
    }

    #[test]
    fn a_forged_scram_success_is_refused() {
        let mut l = Login::new("acs@example.net", "pw", true).unwrap();
        l.start();
        l.on_event(Event::StreamOpen(vec![])).unwrap();
        l.on_event(features(&format!(
            "<mechanisms xmlns='{NS_SASL}'><mechanism>SCRAM-SHA-1</mechanism></mechanisms>"
        )))
        .unwrap();
        // Success without the server's proof of the password.
        assert_eq!(
            l.on_event(el(&format!(
                "<success xmlns='{NS_SASL}'>dj1hYmM=</success>"
            ))),
            Err(LoginError::BadServerSignature)
        );
    }

    #[test]
    fn jids_split() {
        assert_eq!(split_jid("a@b/c"), Some(("a", "b", "c")));
        assert_eq!(split_jid("a@b"), Some(("a", "b", "")));
        assert_eq!(split_jid("b"), None);
        assert_eq!(split_jid("@b"), None);
    }
}
