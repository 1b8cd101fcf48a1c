//! TR-111 Part 2 on the simulated CPE: one UDP socket that is both the STUN client (Binding
//! Requests with CONNECTION-REQUEST-BINDING, BINDING-CHANGE, USERNAME and
//! MESSAGE-INTEGRITY, as TR-069 Annex G devices send them: classic RFC 3489, no magic
//! cookie) and the UDP connection-request listener (Annex G messages checked like a real
//! agent: `GET … HTTP/1.1`, each of ts/id/un/cn/sig once, `ts` newer and `id` different
//! from the last accepted, `un` the ConnectionRequestUsername, the HMAC-SHA1 right).
//!
//! Its own encoder and decoder, independent of the server's codec, so a mistake on one side
//! shows up as a disagreement.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::device::{Credentials, Device};
use super::model::Param;

/// The value of CONNECTION-REQUEST-BINDING.
const TR111: &[u8; 20] = b"dslforum.org/TR-111 ";

/// A UDP connection request the device accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpCr {
    pub from: SocketAddr,
    pub ts: u64,
    pub id: String,
}

/// What a Binding Request got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingAnswer {
    /// Success: the MAPPED-ADDRESS, and whether the answer's MESSAGE-INTEGRITY checked.
    Mapped { address: SocketAddr, signed: bool },
    /// An error response with this code.
    Error(u16),
}

/// The transaction id a Binding Request waits on, and where its answer goes.
type Waiting = Option<(Vec<u8>, mpsc::UnboundedSender<Vec<u8>>)>;

struct Shared {
    cr: Arc<Mutex<Credentials>>,
    last: Mutex<Option<(u64, String)>>,
    /// Datagrams refused (bad signature, replay, wrong user, junk).
    refused: Mutex<u64>,
    stun_tx: Mutex<Waiting>,
}

/// The device's UDP connection-request socket with its STUN client.
pub struct UdpAgent {
    sock: Arc<UdpSocket>,
    shared: Arc<Shared>,
    /// Accepted connection requests.
    pub rx: mpsc::UnboundedReceiver<UdpCr>,
    task: JoinHandle<()>,
}

impl Drop for UdpAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UdpAgent {
    /// Binds `addr` and checks connection requests against `device`'s current
    /// ConnectionRequestUsername/Password.
    pub async fn bind(addr: &str, device: &Device) -> std::io::Result<UdpAgent> {
        let sock = Arc::new(UdpSocket::bind(addr).await?);
        let shared = Arc::new(Shared {
            cr: device.cr.clone(),
            last: Mutex::new(None),
            refused: Mutex::new(0),
            stun_tx: Mutex::new(None),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let (s, sh) = (sock.clone(), shared.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok((n, from)) = s.recv_from(&mut buf).await else {
                    continue;
                };
                let data = &buf[..n];
                if data.len() >= 20 && data[0] & 0xC0 == 0 && !data.starts_with(b"GET") {
                    let waiting = sh.stun_tx.lock().map(|g| g.clone()).ok().flatten();
                    if let Some((tid, t)) = waiting {
                        if data[4..20] == tid[..] {
                            let _ = t.send(data.to_vec());
                        }
                    }
                    continue;
                }
                match sh.judge(data) {
                    Some((ts, id)) => {
                        let _ = tx.send(UdpCr { from, ts, id });
                    }
                    None => {
                        if let Ok(mut r) = sh.refused.lock() {
                            *r += 1;
                        }
                    }
                }
            }
        });
        Ok(UdpAgent {
            sock,
            shared,
            rx,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.sock
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
    }

    /// Datagrams refused so far.
    pub fn refused(&self) -> u64 {
        self.shared.refused.lock().map(|r| *r).unwrap_or(0)
    }

    /// Waits for the next accepted connection request, at most `limit`.
    pub async fn wait(&mut self, limit: Duration) -> Option<UdpCr> {
        tokio::time::timeout(limit, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Sends one classic Binding Request to `server` (CONNECTION-REQUEST-BINDING, plus
    /// BINDING-CHANGE when `change`; USERNAME and MESSAGE-INTEGRITY with `creds`) and waits
    /// up to `limit` for the answer (retransmitting every 500 ms).
    pub async fn binding_request(
        &self,
        server: SocketAddr,
        change: bool,
        creds: Option<(&str, &str)>,
        limit: Duration,
    ) -> Option<BindingAnswer> {
        let mut tid = [0u8; 16];
        rand::fill(&mut tid[..]);
        let msg = encode_request(&tid, change, creds);
        let (t, mut r) = mpsc::unbounded_channel();
        if let Ok(mut g) = self.shared.stun_tx.lock() {
            *g = Some((tid.to_vec(), t));
        }
        let deadline = tokio::time::Instant::now() + limit;
        let answer = loop {
            if self.sock.send_to(&msg, server).await.is_err() {
                break None;
            }
            let step = (tokio::time::Instant::now() + Duration::from_millis(500)).min(deadline);
            match tokio::time::timeout_at(step, r.recv()).await {
                Ok(Some(bytes)) => break decode_answer(&bytes, creds.map(|c| c.1)),
                Ok(None) => break None,
                Err(_) if tokio::time::Instant::now() >= deadline => break None,
                Err(_) => {}
            }
        };
        if let Ok(mut g) = self.shared.stun_tx.lock() {
            *g = None;
        }
        answer
    }

    /// What a TR-111 device does with its STUN settings (read from `device`): a Binding
    /// Request (with BINDING-CHANGE when `change`) carrying USERNAME and MESSAGE-INTEGRITY
    /// when STUNUsername is set; without one, and answered 401, nothing more can be done.
    /// Returns the answer.
    pub async fn learn_binding(
        &self,
        device: &Device,
        server: SocketAddr,
        change: bool,
    ) -> Option<BindingAnswer> {
        let user = device.get(&device.ms("STUNUsername")).unwrap_or_default();
        let pass = device.get(&device.ms("STUNPassword")).unwrap_or_default();
        let creds = (!user.is_empty()).then_some((user, pass));
        self.binding_request(server, change, creds, Duration::from_secs(5))
            .await
    }
}

impl Shared {
    fn judge(&self, data: &[u8]) -> Option<(u64, String)> {
        let text = std::str::from_utf8(data).ok()?;
        let line = text.split("\r\n").next()?;
        let target = line.strip_prefix("GET ")?.strip_suffix(" HTTP/1.1")?;
        let query = target.split_once('?')?.1;
        let mut fields: std::collections::HashMap<&str, String> = Default::default();
        for kv in query.split('&') {
            let (k, v) = kv.split_once('=')?;
            if fields.insert(k, percent_decode(v)?).is_some() {
                return None;
            }
        }
        let get = |k: &str| fields.get(k).cloned();
        let (ts, id, un, cn, sig) = (get("ts")?, get("id")?, get("un")?, get("cn")?, get("sig")?);
        let ts: u64 = ts.parse().ok()?;
        let creds = self.cr.lock().ok()?.clone();
        if un != creds.username {
            return None;
        }
        let mut last = self.last.lock().ok()?;
        if let Some((lts, lid)) = last.as_ref() {
            if ts <= *lts || id == *lid {
                return None;
            }
        }
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(creds.password.as_bytes()).ok()?;
        mac.update(format!("{ts}{id}{un}{cn}").as_bytes());
        let want = hex::encode(mac.finalize().into_bytes());
        if !want.eq_ignore_ascii_case(&sig) {
            return None;
        }
        *last = Some((ts, id.clone()));
        Some((ts, id))
    }
}

fn percent_decode(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

fn set_len(out: &mut [u8], extra: usize) {
    let len = (out.len() - 20 + extra) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
}

/// RFC 3489 MESSAGE-INTEGRITY: HMAC-SHA1 over the message so far, padded with zeros to a
/// multiple of 64 bytes, the length already counting the attribute.
fn integrity(msg: &[u8], key: &str) -> [u8; 20] {
    let mut text = msg.to_vec();
    text.resize(msg.len().div_ceil(64) * 64, 0);
    let mut out = [0u8; 20];
    if let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()) {
        mac.update(&text);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

fn encode_request(tid: &[u8; 16], change: bool, creds: Option<(&str, &str)>) -> Vec<u8> {
    let mut out = vec![0x00, 0x01, 0, 0];
    out.extend_from_slice(tid);
    attr(&mut out, 0xC001, TR111);
    if change {
        attr(&mut out, 0xC002, &[]);
    }
    if let Some((user, pass)) = creds {
        let mut u = user.as_bytes().to_vec();
        u.resize(u.len().div_ceil(4) * 4, 0);
        attr(&mut out, 0x0006, &u);
        set_len(&mut out, 24);
        let mac = integrity(&out, pass);
        attr(&mut out, 0x0008, &mac);
    }
    set_len(&mut out, 0);
    out
}

fn decode_answer(b: &[u8], key: Option<&str>) -> Option<BindingAnswer> {
    if b.len() < 20 {
        return None;
    }
    let kind = u16::from_be_bytes([b[0], b[1]]);
    let mut at = 20;
    let (mut mapped, mut code, mut signed) = (None, None, false);
    while at + 4 <= b.len() {
        let t = u16::from_be_bytes([b[at], b[at + 1]]);
        let l = usize::from(u16::from_be_bytes([b[at + 2], b[at + 3]]));
        let v = b.get(at + 4..at + 4 + l)?;
        match t {
            0x0001 if l == 8 => {
                let port = u16::from_be_bytes([v[2], v[3]]);
                mapped = Some(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(v[4], v[5], v[6], v[7])),
                    port,
                ));
            }
            0x0009 if l >= 4 => code = Some(u16::from(v[2] & 7) * 100 + u16::from(v[3])),
            0x0008 if l == 20 => {
                if let Some(k) = key {
                    let mut head = b[..at].to_vec();
                    set_len(&mut head, 24);
                    signed = integrity(&head, k)[..] == v[..];
                }
            }
            _ => {}
        }
        at += 4 + l.div_ceil(4) * 4;
    }
    match kind {
        0x0101 => Some(BindingAnswer::Mapped {
            address: mapped?,
            signed,
        }),
        0x0111 => Some(BindingAnswer::Error(code?)),
        _ => None,
    }
}

impl Device {
    /// Adds the TR-111 ManagementServer parameters (STUN settings writable,
    /// UDPConnectionRequestAddress and NATDetected read-only with active notification), as a
    /// device supporting STUN has them.
    pub fn with_stun(mut self) -> Device {
        let params: [(&str, &str, &str, bool, u8); 9] = [
            ("STUNEnable", "false", "xsd:boolean", true, 0),
            ("STUNServerAddress", "", "xsd:string", true, 0),
            ("STUNServerPort", "3478", "xsd:unsignedInt", true, 0),
            ("STUNUsername", "", "xsd:string", true, 0),
            ("STUNPassword", "", "xsd:string", true, 0),
            ("STUNMaximumKeepAlivePeriod", "-1", "xsd:int", true, 0),
            (
                "STUNMinimumKeepAlivePeriod",
                "0",
                "xsd:unsignedInt",
                true,
                0,
            ),
            ("UDPConnectionRequestAddress", "", "xsd:string", false, 2),
            ("NATDetected", "false", "xsd:boolean", false, 2),
        ];
        for (leaf, v, t, w, n) in params {
            let mut p = Param::leaf(v, t, w);
            p.notification = n;
            let name = self.ms(leaf);
            self.model.insert(name, p);
        }
        self.invalidate_caches();
        self
    }

    /// The device learnt `public` as the binding of its UDP connection-request socket at
    /// `local`: UDPConnectionRequestAddress and NATDetected change (active notification, so
    /// the next Inform carries them with `4 VALUE CHANGE`).
    pub fn report_udp_binding(&mut self, public: SocketAddr, local: SocketAddr) {
        let nat = if public == local { "false" } else { "true" };
        self.local_change(&self.ms("UDPConnectionRequestAddress"), &public.to_string());
        self.local_change(&self.ms("NATDetected"), nat);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn request_with_credentials_is_framed_and_signed() {
        let m = encode_request(&[5; 16], true, Some(("dev", "pw")));
        assert_eq!(&m[0..2], &[0, 1]);
        assert_eq!(usize::from(u16::from_be_bytes([m[2], m[3]])), m.len() - 20);
        assert_eq!(&m[24..44], TR111);
        let at = m.len() - 24;
        assert_eq!(&m[at..at + 2], &[0, 8]);
        let mac = integrity(&m[..at], "pw");
        assert_eq!(&m[at + 4..], &mac);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%26").unwrap(), "a b&");
        assert!(percent_decode("%zz").is_none());
    }
}
