//! The connection-request side of the simulated CPE: an HTTP server that answers the
//! ACS's `GET ConnectionRequestURL` (TR-069 §3.2.2).
//!
//! One [`CrListener`] serves any number of devices: each registered device gets a random
//! path (`http://127.0.0.1:<port>/<32 hex digits>`), written to its
//! `ManagementServer.ConnectionRequestURL`. A request is accepted only with valid Digest
//! credentials (realm `cpe`, `qop=auth`, nonces issued by this listener, `nc` strictly
//! increasing per nonce, `uri` equal to the request target) for the device's current
//! ConnectionRequestUsername/Password; Basic is refused unless enabled. Accepted requests
//! get `200` with an empty body and are then signalled on the device's channel; the test or
//! load generator reacts by running a session with `6 CONNECTION REQUEST`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::device::{Credentials, Device};
use super::http::{self, digest_ha1, digest_response, parse_challenges, HttpRequest};

/// Realm of the Digest challenges.
pub const REALM: &str = "cpe";

/// One accepted connection request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrSignal {
    /// Serial number of the device that was asked to connect.
    pub serial: String,
    /// The path the request used.
    pub path: String,
    /// When it was accepted.
    pub at: Instant,
}

/// Counters of a listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrStats {
    /// Requests answered 200.
    pub accepted: u64,
    /// Requests answered 401 without (or with stale) credentials.
    pub challenged: u64,
    /// Requests answered 401 because the credentials were wrong.
    pub rejected: u64,
    /// Requests for an unknown path (404) or with a method other than GET (405).
    pub invalid: u64,
}

struct Route {
    serial: String,
    creds: Arc<Mutex<Credentials>>,
    tx: mpsc::UnboundedSender<CrSignal>,
}

struct NonceInfo {
    created: Instant,
    last_nc: u32,
}

struct Inner {
    routes: Mutex<HashMap<String, Route>>,
    nonces: Mutex<HashMap<String, NonceInfo>>,
    stats: Mutex<CrStats>,
    allow_basic: AtomicBool,
    nonce_ttl: Duration,
}

/// An HTTP connection-request server for many devices.
pub struct CrListener {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Drop for CrListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CrListener {
    /// Listens on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> std::io::Result<CrListener> {
        CrListener::bind("127.0.0.1:0").await
    }

    /// Listens on `addr` (e.g. `127.0.0.1:0`).
    pub async fn bind(addr: &str) -> std::io::Result<CrListener> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            routes: Mutex::new(HashMap::new()),
            nonces: Mutex::new(HashMap::new()),
            stats: Mutex::new(CrStats::default()),
            allow_basic: AtomicBool::new(false),
            nonce_ttl: Duration::from_secs(300),
        });
        let task_inner = Arc::clone(&inner);
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((sock, _)) => {
                        let inner = Arc::clone(&task_inner);
                        tokio::spawn(serve(sock, inner));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        Ok(CrListener { addr, inner, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accept Basic credentials too (off by default, as TR-069 requires Digest).
    pub fn set_allow_basic(&self, allow: bool) {
        self.inner.allow_basic.store(allow, Ordering::Relaxed);
    }

    /// Counters so far.
    pub fn stats(&self) -> CrStats {
        self.inner.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Registers a device with its own channel and sets its ConnectionRequestURL.
    pub fn register(&self, device: &mut Device) -> mpsc::UnboundedReceiver<CrSignal> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.register_with(device, tx);
        rx
    }

    /// Registers a device that reports on a shared channel (e.g. one channel for all
    /// devices of a load test; [`CrSignal::serial`] tells them apart). Returns the path.
    pub fn register_with(
        &self,
        device: &mut Device,
        tx: mpsc::UnboundedSender<CrSignal>,
    ) -> String {
        let path = format!("{:032x}", rand::random::<u128>());
        let ip = if self.addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            self.addr.ip().to_string()
        };
        let url = format!("http://{ip}:{}/{path}", self.addr.port());
        if let Ok(mut routes) = self.inner.routes.lock() {
            routes.insert(
                path.clone(),
                Route {
                    serial: device.identity.serial_number.clone(),
                    creds: Arc::clone(&device.cr),
                    tx,
                },
            );
        }
        let name = device.ms("ConnectionRequestURL");
        let changed = device.get(&name) != Some(url.as_str());
        device.set_value(&name, &url);
        device.cr_url = Some(url);
        if changed && device.state.bootstrapped && !device.state.value_changes.contains(&name) {
            device.state.value_changes.push(name);
        }
        path
    }

    /// Stops serving a path returned by [`CrListener::register_with`].
    pub fn unregister(&self, path: &str) {
        if let Ok(mut routes) = self.inner.routes.lock() {
            routes.remove(path);
        }
    }
}

/// A listener dedicated to one device, with its channel.
pub struct CrHandle {
    /// The listener (stops when dropped).
    pub listener: CrListener,
    /// Signals of accepted connection requests.
    pub rx: mpsc::UnboundedReceiver<CrSignal>,
}

impl CrHandle {
    /// Waits for the next accepted connection request, at most `limit`.
    pub async fn wait(&mut self, limit: Duration) -> Option<CrSignal> {
        tokio::time::timeout(limit, self.rx.recv())
            .await
            .ok()
            .flatten()
    }
}

/// Starts a listener on 127.0.0.1:0 for one device and sets its ConnectionRequestURL.
pub async fn start_cr_listener(device: &mut Device) -> std::io::Result<(SocketAddr, CrHandle)> {
    let listener = CrListener::start().await?;
    let rx = listener.register(device);
    Ok((listener.local_addr(), CrHandle { listener, rx }))
}

enum Verdict {
    Accept(CrSignal, mpsc::UnboundedSender<CrSignal>),
    Challenge { stale: bool, wrong: bool },
    NotFound,
    BadMethod,
}

async fn serve(sock: TcpStream, inner: Arc<Inner>) {
    let _ = sock.set_nodelay(true);
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::new(rd);
    loop {
        let req = match tokio::time::timeout(Duration::from_secs(15), http::read_request(&mut rd))
            .await
        {
            Ok(Ok(Some(r))) => r,
            _ => return,
        };
        let verdict = inner.judge(&req);
        let keep = req.keep_alive();
        let conn = if keep { "keep-alive" } else { "close" };
        let written = match &verdict {
            Verdict::Accept(..) => {
                inner.count(|s| s.accepted += 1);
                http::write_response(&mut wr, 200, "OK", &[("Connection", conn)], b"").await
            }
            Verdict::Challenge { stale, wrong } => {
                inner.count(|s| {
                    if *wrong {
                        s.rejected += 1
                    } else {
                        s.challenged += 1
                    }
                });
                let nonce = inner.new_nonce();
                let opaque = format!("{:016x}", rand::random::<u64>());
                let mut h = format!(
                    "Digest realm=\"{REALM}\", qop=\"auth\", nonce=\"{nonce}\", opaque=\"{opaque}\", algorithm=MD5"
                );
                if *stale {
                    h.push_str(", stale=true");
                }
                let mut headers = vec![("WWW-Authenticate", h.as_str()), ("Connection", conn)];
                let basic = format!("Basic realm=\"{REALM}\"");
                if inner.allow_basic.load(Ordering::Relaxed) {
                    headers.push(("WWW-Authenticate", basic.as_str()));
                }
                http::write_response(&mut wr, 401, "Unauthorized", &headers, b"").await
            }
            Verdict::NotFound => {
                inner.count(|s| s.invalid += 1);
                http::write_response(&mut wr, 404, "Not Found", &[("Connection", conn)], b"").await
            }
            Verdict::BadMethod => {
                inner.count(|s| s.invalid += 1);
                http::write_response(
                    &mut wr,
                    405,
                    "Method Not Allowed",
                    &[("Allow", "GET"), ("Connection", conn)],
                    b"",
                )
                .await
            }
        };
        if let Verdict::Accept(sig, tx) = verdict {
            let _ = tx.send(sig);
        }
        if written.is_err() || !keep {
            return;
        }
    }
}

fn request_path(target: &str) -> &str {
    let t = match target.find("://") {
        Some(i) => {
            let rest = &target[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        None => target,
    };
    let t = t.split('?').next().unwrap_or(t);
    t.trim_start_matches('/')
}

impl Inner {
    fn count(&self, f: impl FnOnce(&mut CrStats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    fn new_nonce(&self) -> String {
        let nonce = format!("{:032x}", rand::random::<u128>());
        if let Ok(mut n) = self.nonces.lock() {
            if n.len() > 50_000 {
                let ttl = self.nonce_ttl;
                n.retain(|_, i| i.created.elapsed() < ttl);
            }
            n.insert(
                nonce.clone(),
                NonceInfo {
                    created: Instant::now(),
                    last_nc: 0,
                },
            );
        }
        nonce
    }

    fn judge(&self, req: &HttpRequest) -> Verdict {
        let path = request_path(&req.target);
        let route = self.routes.lock().ok().and_then(|r| {
            r.get(path)
                .map(|x| (x.serial.clone(), Arc::clone(&x.creds), x.tx.clone()))
        });
        let Some((serial, creds, tx)) = route else {
            return Verdict::NotFound;
        };
        if !req.method.eq_ignore_ascii_case("GET") {
            return Verdict::BadMethod;
        }
        let creds = creds.lock().map(|c| c.clone()).unwrap_or_default();
        let Some(auth) = req.header("Authorization") else {
            return Verdict::Challenge {
                stale: false,
                wrong: false,
            };
        };
        let accept = || {
            Verdict::Accept(
                CrSignal {
                    serial: serial.clone(),
                    path: path.to_string(),
                    at: Instant::now(),
                },
                tx.clone(),
            )
        };
        if let Some(b64) = auth.strip_prefix("Basic ") {
            let ok = self.allow_basic.load(Ordering::Relaxed)
                && base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()
                    .is_some_and(|d| {
                        d == format!("{}:{}", creds.username, creds.password).as_bytes()
                    });
            return if ok {
                accept()
            } else {
                Verdict::Challenge {
                    stale: false,
                    wrong: true,
                }
            };
        }
        let parsed = parse_challenges(auth);
        let Some((scheme, params)) = parsed.first() else {
            return Verdict::Challenge {
                stale: false,
                wrong: true,
            };
        };
        if !scheme.eq_ignore_ascii_case("digest") {
            return Verdict::Challenge {
                stale: false,
                wrong: true,
            };
        }
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let wrong = Verdict::Challenge {
            stale: false,
            wrong: true,
        };
        let (Some(user), Some(realm), Some(nonce), Some(uri), Some(response)) = (
            get("username"),
            get("realm"),
            get("nonce"),
            get("uri"),
            get("response"),
        ) else {
            return wrong;
        };
        if user != creds.username
            || realm != REALM
            || (uri != req.target && request_path(uri) != path)
        {
            return wrong;
        }
        let algorithm = get("algorithm").unwrap_or("MD5");
        if !algorithm.eq_ignore_ascii_case("MD5") && !algorithm.eq_ignore_ascii_case("MD5-sess") {
            return wrong;
        }
        let cnonce = get("cnonce").unwrap_or("");
        let qop = get("qop");
        let nc_s = get("nc").unwrap_or("");
        let qop_parts = match qop {
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                if cnonce.is_empty() || nc_s.is_empty() {
                    return wrong;
                }
                Some((nc_s, cnonce))
            }
            Some(_) => return wrong,
            None => None,
        };
        let ha1 = digest_ha1(
            &creds.username,
            REALM,
            &creds.password,
            algorithm,
            nonce,
            cnonce,
        );
        let expected = digest_response(&ha1, nonce, qop_parts, &req.method, uri);
        if !expected.eq_ignore_ascii_case(response) {
            return wrong;
        }
        // Credentials are right; now the nonce must be ours, fresh, and nc must grow.
        let Ok(mut nonces) = self.nonces.lock() else {
            return wrong;
        };
        let Some(info) = nonces.get_mut(nonce) else {
            return Verdict::Challenge {
                stale: true,
                wrong: false,
            };
        };
        if info.created.elapsed() > self.nonce_ttl {
            return Verdict::Challenge {
                stale: true,
                wrong: false,
            };
        }
        if qop_parts.is_some() {
            let Ok(nc) = u32::from_str_radix(nc_s, 16) else {
                return wrong;
            };
            if nc <= info.last_nc {
                return Verdict::Challenge {
                    stale: true,
                    wrong: false,
                };
            }
            info.last_nc = nc;
        } else if info.last_nc > 0 {
            return Verdict::Challenge {
                stale: true,
                wrong: false,
            };
        } else {
            info.last_nc = 1;
        }
        drop(nonces);
        accept()
    }
}
