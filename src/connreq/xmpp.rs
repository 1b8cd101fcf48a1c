//! XMPP connection requests (TR-069 Annex K): ferroacs is a client of an XMPP server, logged
//! in once per node, and sends each device's ConnReqJabberID a `connectionRequest` IQ with the
//! device's ConnectionRequestUsername/Password.
//!
//! [`XmppClient::run`] keeps the connection: TCP, STARTTLS (required unless
//! `xmpp.allow_plain`), SASL and binding by the pure [`crate::xmpp::login::Login`], then a
//! reader and a writer; a whitespace keep-alive after `keepalive` without traffic; on any
//! failure the requests in flight end as `unreachable` and it reconnects after 1, 2, 4 ... s
//! (at most 60 s). Its [`XmppStatus`] is shown by `/healthz`, `/metrics` and the
//! reachability view.
//!
//! The answer to a request counts only when it is an IQ `result` or `error` with the
//! request's id **and** from the JID it was sent to: anything else (another JID, an unknown
//! id, messages, presence) is ignored; IQ requests to ferroacs get `service-unavailable`.
//! An element larger than `max_stanza_bytes`, or XML that XMPP forbids, closes the stream.
//! The password (the account's and the devices') is never logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::{ConnReqFuture, ConnReqOutcome, ConnReqTarget, ConnectionRequester};
use crate::xmpp::codec::{self, Decoder, Event, IqType};
use crate::xmpp::login::{split_jid, Action, Login};

/// Settings of the client (from the `[xmpp]` configuration).
#[derive(Clone)]
pub struct XmppSettings {
    pub jid: String,
    pub password: String,
    /// Host to connect to (the JID's domain when empty).
    pub server: String,
    pub port: u16,
    pub allow_plain: bool,
    pub tls: Arc<rustls::ClientConfig>,
    pub request_timeout: Duration,
    /// Zero: no keep-alive.
    pub keepalive: Duration,
    pub max_stanza_bytes: usize,
}

impl std::fmt::Debug for XmppSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmppSettings")
            .field("jid", &self.jid)
            .field("password", &"<redacted>")
            .field("server", &self.server)
            .field("port", &self.port)
            .field("allow_plain", &self.allow_plain)
            .finish_non_exhaustive()
    }
}

/// Where the connection to the XMPP server stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct XmppStatus {
    /// `connecting`, `online` or `offline`.
    pub state: &'static str,
    /// The configured JID, and the full JID the server bound while online.
    pub jid: String,
    pub bound_jid: Option<String>,
    /// Since when (UTC ms) the state holds.
    pub since: i64,
    /// Why the last connection ended (ferroacs's own wording, no secret).
    pub last_error: Option<String>,
    /// Connections lost or refused since the start.
    pub reconnects: u64,
    /// Whether TLS protects the current connection.
    pub tls: bool,
}

type Reply = oneshot::Sender<ConnReqOutcome>;

/// A request waiting for its answer: the JID it went to.
struct Pending {
    to: String,
    reply: Reply,
}

/// The XMPP client: one connection, shared by every connection request of the node.
pub struct XmppClient {
    settings: XmppSettings,
    status: Mutex<XmppStatus>,
    /// The writer of the current connection.
    out: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for XmppClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmppClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How an answer to a connection request reads as an outcome.
pub fn outcome_of(kind: IqType, condition: Option<&str>) -> ConnReqOutcome {
    match (kind, condition) {
        (IqType::Result, _) => ConnReqOutcome::Ok,
        (_, Some("not-authorized" | "forbidden")) => ConnReqOutcome::AuthFailed,
        (
            _,
            Some(
                "service-unavailable"
                | "recipient-unavailable"
                | "item-not-found"
                | "remote-server-not-found"
                | "remote-server-timeout",
            ),
        ) => ConnReqOutcome::ServiceUnavailable,
        (_, c) => ConnReqOutcome::BadResponse(format!(
            "XMPP error {}",
            c.unwrap_or("without a condition")
        )),
    }
}

impl XmppClient {
    pub fn new(settings: XmppSettings) -> Arc<XmppClient> {
        let jid = settings.jid.clone();
        Arc::new(XmppClient {
            settings,
            status: Mutex::new(XmppStatus {
                state: "connecting",
                jid,
                bound_jid: None,
                since: now_ms(),
                last_error: None,
                reconnects: 0,
                tls: false,
            }),
            out: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The connection's state now.
    pub fn status(&self) -> XmppStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The bare JID of ferroacs's account (what devices must allow).
    pub fn bare_jid(&self) -> &str {
        codec::bare_jid(&self.settings.jid)
    }

    fn set_status(&self, f: impl FnOnce(&mut XmppStatus)) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
    }

    /// Keeps the connection until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            self.set_status(|s| {
                if s.state != "connecting" {
                    s.state = "connecting";
                    s.since = now_ms();
                }
            });
            let result = self.connect_once().await;
            *self.out.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let reason = match result {
                Ok(why) => {
                    backoff = Duration::from_secs(1);
                    why
                }
                Err(e) => e,
            };
            // Requests in flight get no answer on this connection any more.
            let gone: Vec<Pending> = self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
                .map(|(_, p)| p)
                .collect();
            for p in gone {
                let _ = p.reply.send(ConnReqOutcome::Unreachable(
                    "the connection to the XMPP server was lost".into(),
                ));
            }
            tracing::warn!(jid = %self.settings.jid, error = %reason, retry_in_s = backoff.as_secs(), "XMPP connection ended");
            self.set_status(|s| {
                s.state = "offline";
                s.since = now_ms();
                s.bound_jid = None;
                s.tls = false;
                s.last_error = Some(reason);
                s.reconnects += 1;
            });
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
    }

    /// One connection: log in, then serve until it ends. `Ok(why it ended)` once it was
    /// online, `Err` when it never got there.
    async fn connect_once(&self) -> Result<String, String> {
        let st = &self.settings;
        let (_, domain, _) =
            split_jid(&st.jid).ok_or_else(|| "xmpp.jid is not a JID".to_string())?;
        let host = if st.server.is_empty() {
            domain.to_string()
        } else {
            st.server.clone()
        };
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect((host.as_str(), st.port)),
        )
        .await
        .map_err(|_| format!("connecting to {host}:{} timed out", st.port))?
        .map_err(|e| format!("cannot connect to {host}:{}: {e}", st.port))?;
        let _ = tcp.set_nodelay(true);
        let mut io: Box<dyn Io> = Box::new(tcp);
        let mut login = Login::new(&st.jid, &st.password, st.allow_plain)
            .ok_or_else(|| "xmpp.jid is not a JID".to_string())?;
        let mut dec = Decoder::new(st.max_stanza_bytes);
        let mut tls = false;
        io.write_all(&login.start())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 16 * 1024];
        let bound = 'login: loop {
            let n = tokio::time::timeout(Duration::from_secs(30), io.read(&mut buf))
                .await
                .map_err(|_| "the XMPP server did not answer during login".to_string())?
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the XMPP server closed the connection during login".into());
            }
            let events = dec.feed(&buf[..n]).map_err(|e| e.to_string())?;
            for ev in events {
                for action in login.on_event(ev).map_err(|e| e.to_string())? {
                    match action {
                        Action::Send(b) => io.write_all(&b).await.map_err(|e| e.to_string())?,
                        Action::Restart => dec.reset(),
                        Action::StartTls => {
                            let name = rustls::pki_types::ServerName::try_from(domain.to_string())
                                .map_err(|_| format!("'{domain}' is not a TLS server name"))?;
                            let connector = tokio_rustls::TlsConnector::from(st.tls.clone());
                            let upgraded = connector
                                .connect(name, io)
                                .await
                                .map_err(|e| format!("TLS with the XMPP server failed: {e}"))?;
                            io = Box::new(upgraded);
                            tls = true;
                            dec.reset();
                            io.write_all(&login.tls_ready())
                                .await
                                .map_err(|e| e.to_string())?;
                            // Nothing the server sent in clear after <proceed/> counts.
                            continue 'login;
                        }
                        Action::Bound(jid) => break 'login jid,
                    }
                }
            }
        };
        tracing::info!(jid = %bound, tls, "XMPP: logged in");
        self.set_status(|s| {
            s.state = "online";
            s.since = now_ms();
            s.bound_jid = Some(bound.clone());
            s.tls = tls;
        });
        let (mut rd, mut wr) = tokio::io::split(io);
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
        *self.out.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx.clone());
        let _ = tx.send(codec::presence()).await;
        let keepalive = st.keepalive;
        let writer = async move {
            loop {
                let next = if keepalive.is_zero() {
                    rx.recv().await
                } else {
                    match tokio::time::timeout(keepalive, rx.recv()).await {
                        Ok(m) => m,
                        // Whitespace keep-alive (RFC 6120 §4.6.1).
                        Err(_) => Some(b" ".to_vec()),
                    }
                };
                let Some(bytes) = next else {
                    return Ok::<(), String>(());
                };
                let close = bytes.ends_with(b"</stream:stream>");
                wr.write_all(&bytes).await.map_err(|e| e.to_string())?;
                if close {
                    let _ = wr.shutdown().await;
                    return Ok(());
                }
            }
        };
        let reader = async {
            loop {
                let n = rd.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err::<(), String>("the XMPP server closed the connection".into());
                }
                let events = match dec.feed(&buf[..n]) {
                    Ok(ev) => ev,
                    Err(e) => {
                        let _ = tx
                            .send(
                                format!(
                                    "<stream:error><policy-violation \
                                     xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
                                     </stream:error>{}",
                                    String::from_utf8_lossy(&codec::stream_close())
                                )
                                .into_bytes(),
                            )
                            .await;
                        return Err(format!("stream closed: {e}"));
                    }
                };
                for ev in events {
                    match ev {
                        Event::StreamClose => {
                            let _ = tx.send(codec::stream_close()).await;
                            return Err("the XMPP server closed the stream".into());
                        }
                        Event::StreamOpen(_) => {}
                        Event::Element(el) => {
                            if el.is("error", codec::NS_STREAMS) {
                                let c = el.children.first().map(|c| c.name.clone());
                                return Err(format!(
                                    "stream error from the XMPP server: {}",
                                    c.unwrap_or_default()
                                ));
                            }
                            if let Some(answer) = self.on_element(&el) {
                                let _ = tx.send(answer).await;
                            }
                        }
                    }
                }
            }
        };
        let ended = tokio::select! {
            r = reader => r.err(),
            r = writer => r.err(),
        };
        Ok(ended.unwrap_or_else(|| "the XMPP connection ended".into()))
    }

    /// Handles one element from the server; returns an answer to send, if any.
    fn on_element(&self, el: &codec::Element) -> Option<Vec<u8>> {
        let q = codec::iq(el)?;
        match q.kind {
            IqType::Result | IqType::Error => {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                let from = q.from.unwrap_or_default();
                match p.get(q.id) {
                    Some(w) if jid_eq(&w.to, from) => {
                        if let Some(w) = p.remove(q.id) {
                            let _ = w.reply.send(outcome_of(q.kind, q.error_condition()));
                        }
                    }
                    _ => {
                        tracing::debug!(from = %from, "XMPP: ignored an answer that matches no request");
                    }
                }
                None
            }
            IqType::Get | IqType::Set => {
                let from = q.from?;
                Some(codec::iq_error(q.id, from, "cancel", "service-unavailable"))
            }
        }
    }

    /// Sends the connection request to `target.url` (the device's ConnReqJabberID) and waits
    /// for its answer.
    pub async fn request(&self, target: &ConnReqTarget) -> ConnReqOutcome {
        let to = target.url.trim();
        if split_jid(to).is_none() || to.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return ConnReqOutcome::BadUrl("the ConnReqJabberID is not a JID".into());
        }
        let Some(out) = self.out.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return ConnReqOutcome::Unreachable(
                "ferroacs is not connected to the XMPP server".into(),
            );
        };
        let mut idb = [0u8; 8];
        rand::fill(&mut idb[..]);
        let id = format!("cr-{}", hex::encode(idb));
        let (reply, answer) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id.clone(),
                Pending {
                    to: to.to_string(),
                    reply,
                },
            );
        let bytes = codec::connection_request(&id, to, &target.username, &target.password);
        if out.send(bytes).await.is_err() {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            return ConnReqOutcome::Unreachable(
                "the connection to the XMPP server was lost".into(),
            );
        }
        match tokio::time::timeout(self.settings.request_timeout, answer).await {
            Ok(Ok(o)) => o,
            Ok(Err(_)) => {
                ConnReqOutcome::Unreachable("the connection to the XMPP server was lost".into())
            }
            Err(_) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                ConnReqOutcome::Unreachable("the device did not answer over XMPP in time".into())
            }
        }
    }
}

/// Whether the answer's `from` is the JID the request went to (domain case-insensitive).
fn jid_eq(sent_to: &str, from: &str) -> bool {
    match (split_jid(sent_to), split_jid(from)) {
        (Some((l1, d1, r1)), Some((l2, d2, r2))) => {
            l1 == l2 && d1.eq_ignore_ascii_case(d2) && r1 == r2
        }
        _ => false,
    }
}

impl ConnectionRequester for XmppClient {
    fn send<'a>(&'a self, target: &'a ConnReqTarget) -> ConnReqFuture<'a> {
        Box::pin(self.request(target))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn client() -> Arc<XmppClient> {
        XmppClient::new(XmppSettings {
            jid: "acs@example.net/n1".into(),
            password: "pw".into(),
            server: String::new(),
            port: 5222,
            allow_plain: true,
            tls: crate::connreq::http::tls_config_with_roots(rustls::RootCertStore::empty())
                .unwrap(),
            request_timeout: Duration::from_secs(1),
            keepalive: Duration::ZERO,
            max_stanza_bytes: 4096,
        })
    }

    fn element(s: &str) -> codec::Element {
        let mut d = Decoder::new(4096);
        d.feed(
            format!(
                "<stream:stream xmlns='jabber:client' xmlns:stream='{}'>",
                codec::NS_STREAMS
            )
            .as_bytes(),
        )
        .unwrap();
        match d.feed(s.as_bytes()).unwrap().remove(0) {
            Event::Element(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answers_count_only_from_the_jid_asked() {
        let c = client();
        let (tx, mut rx) = oneshot::channel();
        c.pending.lock().unwrap().insert(
            "cr-1".into(),
            Pending {
                to: "cpe@example.net/dev".into(),
                reply: tx,
            },
        );
        // Another JID answering with the right id, and the right JID with another id: ignored.
        assert!(c
            .on_element(&element(
                "<iq type='result' id='cr-1' from='evil@example.net/x'/>"
            ))
            .is_none());
        assert!(c
            .on_element(&element(
                "<iq type='result' id='cr-2' from='cpe@example.net/dev'/>"
            ))
            .is_none());
        assert!(rx.try_recv().is_err());
        c.on_element(&element(&format!(
            "<iq type='error' id='cr-1' from='cpe@EXAMPLE.net/dev'><error type='auth'>\
             <not-authorized xmlns='{}'/></error></iq>",
            codec::NS_STANZAS
        )));
        assert_eq!(rx.try_recv().unwrap(), ConnReqOutcome::AuthFailed);
        // A request to ferroacs is refused.
        let a = c
            .on_element(&element(
                "<iq type='get' id='q' from='cpe@example.net/dev'><query xmlns='x'/></iq>",
            ))
            .unwrap();
        assert!(String::from_utf8(a)
            .unwrap()
            .contains("service-unavailable"));
    }

    #[test]
    fn conditions_map_to_outcomes() {
        assert_eq!(outcome_of(IqType::Result, None), ConnReqOutcome::Ok);
        assert_eq!(
            outcome_of(IqType::Error, Some("service-unavailable")),
            ConnReqOutcome::ServiceUnavailable
        );
        assert_eq!(
            outcome_of(IqType::Error, Some("not-authorized")),
            ConnReqOutcome::AuthFailed
        );
        assert_eq!(outcome_of(IqType::Error, None).code(), "bad_response");
    }

    #[tokio::test]
    async fn requests_without_a_connection_or_to_a_bad_jid_fail_at_once() {
        let c = client();
        let t = |url: &str| ConnReqTarget {
            url: url.into(),
            username: "u".into(),
            password: "p".into(),
        };
        assert_eq!(c.request(&t("not a jid")).await.code(), "bad_url");
        assert_eq!(
            c.request(&t("cpe@example.net/x")).await.code(),
            "unreachable"
        );
        assert!(!format!("{:?}", c.settings).contains("\"pw\""));
    }
}
