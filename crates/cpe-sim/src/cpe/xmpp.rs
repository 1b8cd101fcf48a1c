//! TR-069 Annex K on the simulated CPE: an XMPP client session (logged in to a real XMPP
//! server) that answers `connectionRequest` IQs like a device does: from a JID listed in
//! ConnReqAllowedJabberIDs (bare or full) with the right ConnectionRequestUsername/Password →
//! `result`, and the request is handed to the test, which then runs the session with
//! `6 CONNECTION REQUEST`; anything else → `not-authorized`.
//!
//! The stream and login are the server library's (`ferroacs::xmpp`), checked against the
//! real XMPP server on both sides; the connection request itself is read here with its own
//! names, so a mistake in the server's IQ shows up as a refusal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroacs::xmpp::codec::{self, Decoder, Event};
use ferroacs::xmpp::login::{Action, Login};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::device::{Credentials, Device};
use super::model::Param;

const CONNREQ_NS: &str = "urn:broadband-forum-org:cwmp:xmppConnReq-1-0";

/// A connection request the device accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmppCr {
    /// The JID it came from.
    pub from: String,
}

/// The device's XMPP session.
pub struct XmppAgent {
    jid: String,
    allowed: Arc<Mutex<Vec<String>>>,
    refused: Arc<AtomicU64>,
    /// Accepted connection requests.
    pub rx: mpsc::UnboundedReceiver<XmppCr>,
    out: mpsc::UnboundedSender<Vec<u8>>,
    task: JoinHandle<()>,
}

impl Drop for XmppAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl XmppAgent {
    /// Logs in to the XMPP server at `server` (plain TCP: loopback tests) as `jid` and
    /// answers connection requests with `device`'s current ConnectionRequest credentials,
    /// from the JIDs in its ConnReqAllowedJabberIDs now. Returns once bound.
    pub async fn connect(
        server: std::net::SocketAddr,
        jid: &str,
        password: &str,
        device: &Device,
    ) -> Result<XmppAgent, String> {
        let mut io = TcpStream::connect(server)
            .await
            .map_err(|e| e.to_string())?;
        let mut login = Login::new(jid, password, true).ok_or("not a JID")?;
        let mut dec = Decoder::new(64 * 1024);
        io.write_all(&login.start())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 16 * 1024];
        let bound = 'login: loop {
            let n = tokio::time::timeout(Duration::from_secs(10), io.read(&mut buf))
                .await
                .map_err(|_| "login timed out".to_string())?
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed during login".into());
            }
            for ev in dec.feed(&buf[..n]).map_err(|e| e.to_string())? {
                for a in login.on_event(ev).map_err(|e| e.to_string())? {
                    match a {
                        Action::Send(b) => io.write_all(&b).await.map_err(|e| e.to_string())?,
                        Action::Restart => dec.reset(),
                        Action::StartTls => return Err("the simulator speaks no TLS".into()),
                        Action::Bound(j) => break 'login j,
                    }
                }
            }
        };
        io.write_all(&codec::presence())
            .await
            .map_err(|e| e.to_string())?;
        let allowed = Arc::new(Mutex::new(allowed_of(device)));
        let refused = Arc::new(AtomicU64::new(0));
        let cr = device.cr.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let (al, rf) = (allowed.clone(), refused.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = io.read(&mut buf) => {
                        let Ok(n) = r else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        let Ok(events) = dec.feed(&buf[..n]) else {
                            return;
                        };
                        for ev in events {
                            let el = match ev {
                                Event::Element(el) => el,
                                Event::StreamClose => return,
                                Event::StreamOpen(_) => continue,
                            };
                            let Some(answer) = judge(&el, &al, &cr, &rf, &tx) else {
                                continue;
                            };
                            if io.write_all(&answer).await.is_err() {
                                return;
                            }
                        }
                    }
                    m = out_rx.recv() => {
                        let Some(bytes) = m else {
                            return;
                        };
                        if io.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(XmppAgent {
            jid: bound,
            allowed,
            refused,
            rx,
            out,
            task,
        })
    }

    /// The full JID the server bound (what the device reports as ConnReqJabberID).
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// Requests refused so far (wrong credentials or JID).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Reads ConnReqAllowedJabberIDs from `device` again.
    pub fn reload_allowed(&self, device: &Device) {
        if let Ok(mut a) = self.allowed.lock() {
            *a = allowed_of(device);
        }
    }

    /// Sends raw bytes on the stream (tests of what a hostile peer sends).
    pub fn send_raw(&self, bytes: Vec<u8>) {
        let _ = self.out.send(bytes);
    }

    /// Logs out: closes the stream and waits (at most 5 s) until the server closed its side,
    /// so the server knows the device is offline when this returns.
    pub async fn close(mut self) {
        let _ = self.out.send(codec::stream_close());
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }

    /// Waits for the next accepted connection request, at most `limit`.
    pub async fn wait(&mut self, limit: Duration) -> Option<XmppCr> {
        tokio::time::timeout(limit, self.rx.recv())
            .await
            .ok()
            .flatten()
    }
}

fn allowed_of(device: &Device) -> Vec<String> {
    device
        .get(&device.ms("ConnReqAllowedJabberIDs"))
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The answer to one element, if it is a request.
fn judge(
    el: &codec::Element,
    allowed: &Mutex<Vec<String>>,
    cr: &Mutex<Credentials>,
    refused: &AtomicU64,
    tx: &mpsc::UnboundedSender<XmppCr>,
) -> Option<Vec<u8>> {
    if el.name != "iq" || el.attr("type") != Some("get") {
        return None;
    }
    let id = el.attr("id")?;
    let from = el.attr("from")?;
    let req = el
        .children
        .iter()
        .find(|c| c.name == "connectionRequest" && c.ns == CONNREQ_NS)?;
    let text = |name: &str| {
        req.children
            .iter()
            .find(|c| c.name == name && c.ns == CONNREQ_NS)
            .map(|c| c.text.clone())
    };
    let bare = from.split('/').next().unwrap_or_default();
    let from_ok = allowed
        .lock()
        .map(|a| a.iter().any(|j| j == from || j == bare))
        .unwrap_or(false);
    let creds_ok = cr
        .lock()
        .map(|c| {
            text("username").as_deref() == Some(c.username.as_str())
                && text("password").as_deref() == Some(c.password.as_str())
        })
        .unwrap_or(false);
    if from_ok && creds_ok {
        let _ = tx.send(XmppCr {
            from: from.to_string(),
        });
        Some(codec::iq_result(id, from))
    } else {
        refused.fetch_add(1, Ordering::Relaxed);
        Some(codec::iq_error(id, from, "auth", "not-authorized"))
    }
}

impl Device {
    /// Adds what a device supporting XMPP connection requests has: one XMPP connection
    /// object, ManagementServer.ConnReqXMPPConnection, ConnReqAllowedJabberIDs (writable,
    /// empty) and ConnReqJabberID (read-only, active notification, empty until
    /// [`Device::report_jabber_id`]).
    pub fn with_xmpp(mut self) -> Device {
        let conn = self.path("XMPP.Connection.1.");
        for obj in [
            self.path("XMPP."),
            self.path("XMPP.Connection."),
            conn.clone(),
        ] {
            self.model.insert(obj, Param::object(false));
        }
        for (leaf, v, t) in [
            ("Enable", "true", "xsd:boolean"),
            ("Username", "", "xsd:string"),
            ("Domain", "", "xsd:string"),
            ("Resource", "", "xsd:string"),
            ("JabberID", "", "xsd:string"),
            ("Status", "Disabled", "xsd:string"),
        ] {
            let writable = leaf != "JabberID" && leaf != "Status";
            self.model
                .insert(format!("{conn}{leaf}"), Param::leaf(v, t, writable));
        }
        self.model.insert(
            self.path("XMPP.ConnectionNumberOfEntries"),
            Param::leaf("1", "xsd:unsignedInt", false),
        );
        let conn_ref = conn.trim_end_matches('.').to_string();
        let params: [(&str, String, bool, u8); 3] = [
            ("ConnReqXMPPConnection", conn_ref, true, 0),
            ("ConnReqAllowedJabberIDs", String::new(), true, 0),
            ("ConnReqJabberID", String::new(), false, 2),
        ];
        for (leaf, v, w, n) in params {
            let mut p = Param::leaf(v, "xsd:string", w);
            p.notification = n;
            let name = self.ms(leaf);
            self.model.insert(name, p);
        }
        self.invalidate_caches();
        self
    }

    /// The device's XMPP session is up as `jid`: ConnReqJabberID changes (active
    /// notification: the next Inform carries it with `4 VALUE CHANGE`).
    pub fn report_jabber_id(&mut self, jid: &str) {
        self.local_change(&self.ms("ConnReqJabberID"), jid);
        let conn = self.path("XMPP.Connection.1.");
        self.set_value(&format!("{conn}JabberID"), jid);
        self.set_value(&format!("{conn}Status"), "Up");
    }
}
