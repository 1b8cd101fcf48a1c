//! What an attacker tries first against the HTTP layer, each reproduced over real sockets:
//! role checks bypassed by spelling a path differently, compression bombs, request bodies
//! that never arrive, and the smaller leaks of the file server and the login limiter.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::Api;
use crate::battery;
use crate::support::{Backend, TestApp};
use ferroacs::http::api::{Role, ROUTES};

/// An answer read from a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Send one HTTP/1.1 request exactly as written (no client-side path normalisation) and
/// read the answer (head, then `Content-Length` bytes of body).
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        read_response(&mut s, method == "HEAD"),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer to {method} {target}"))
}

/// Read one response from `s`: the head, then as many body bytes as `Content-Length` says
/// (none for a HEAD request), or up to the end of the stream without a length.
pub async fn read_response(s: &mut tokio::net::TcpStream, head_only: bool) -> RawResponse {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut res = parse_response(&buf[..end]);
    res.body = buf[end..].to_vec();
    let len = res
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    if head_only {
        res.body.clear();
        return res;
    }
    match len {
        Some(len) => {
            while res.body.len() < len {
                let n = s.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                res.body.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            let _ = s.read_to_end(&mut res.body).await;
        }
    }
    res
}

pub fn parse_response(head: &[u8]) -> RawResponse {
    let head = String::from_utf8_lossy(head).into_owned();
    let mut lines = head.trim_end().split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    RawResponse {
        status,
        headers,
        body: Vec::new(),
    }
}

/// Percent-encode the first character of `seg` (`tokens` -> `%74okens`).
fn encode_first(seg: &str, upper: bool) -> String {
    let mut chars = seg.chars();
    let Some(c) = chars.next() else {
        return String::new();
    };
    let hex = if upper {
        format!("%{:02X}", c as u32)
    } else {
        format!("%{:02x}", c as u32)
    };
    format!("{hex}{}", chars.as_str())
}

/// Percent-encode every character of `seg`.
fn encode_all(seg: &str, upper: bool) -> String {
    seg.bytes()
        .map(|b| {
            if upper {
                format!("%{b:02X}")
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// Spellings of `/api/v1{rel}` that a router might decode or normalise differently from a
/// naive check of the raw path. `exact` ones decode to the very same route; the others may
/// match nothing, but must never reach a handler with a weaker role.
fn variants(rel: &str) -> Vec<(String, bool)> {
    let segs: Vec<&str> = rel.trim_start_matches('/').split('/').collect();
    let join = |segs: &[String]| format!("/api/v1/{}", segs.join("/"));
    let mut out = Vec::new();
    // Encode each literal segment in turn, first character or all of it, either hex case.
    for (i, s) in segs.iter().enumerate() {
        if s.starts_with('{') || s.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        for upper in [false, true] {
            for all in [false, true] {
                let mut v: Vec<String> = segs.iter().map(|s| s.to_string()).collect();
                v[i] = if all {
                    encode_all(s, upper)
                } else {
                    encode_first(s, upper)
                };
                out.push((join(&v), true));
            }
        }
    }
    let plain: Vec<String> = segs.iter().map(|s| s.to_string()).collect();
    let rest = plain.join("/");
    out.push((format!("/api/%761/{rest}"), true));
    out.push((format!("/%61pi/v1/{rest}"), true));
    out.push((format!("/api/v%31/{rest}"), true));
    // Double encoding: `%2574` is `%74` after one decoding, `t` after two.
    let mut dbl = plain.clone();
    dbl[0] = encode_first(&plain[0], false).replacen('%', "%25", 1);
    out.push((join(&dbl), false));
    // Separators, dot segments, empty segments, trailing slashes.
    out.push((format!("/api/v1/{rest}/"), false));
    out.push((format!("/api/v1//{rest}"), false));
    out.push((format!("//api/v1/{rest}"), false));
    out.push((format!("/api/v1/./{rest}"), false));
    out.push((format!("/api/v1/zz/../{rest}"), false));
    out.push((format!("/api/v1/zz/%2e%2e/{rest}"), false));
    out.push((format!("/api/v1%2F{rest}"), false));
    out.push((format!("/api%2fv1/{rest}"), false));
    out.push((format!("/api/v1/{}", rest.replace('/', "%2F")), false));
    out.push((format!("/api/v1/{}", rest.replace('/', "%2f")), false));
    out
}

/// A body that would do real harm if a weaker role got it through.
fn attack_body(rel: &str) -> Value {
    match rel {
        "/tokens" => json!({"name": "stolen", "role": "admin"}),
        "/users" => {
            json!({"username": "eve", "password": "correct horse battery", "role": "admin"})
        }
        "/devices/{id}/tasks" => json!({"rpc": "Reboot"}),
        "/tasks" => json!({"q": "", "task": {"rpc": "Reboot"}}),
        _ => json!({}),
    }
}

battery!(
    no_spelling_of_a_path_gets_past_its_role,
    unmatched_paths_are_denied_not_waved_through,
    compression_bombs_are_never_inflated_past_the_limit,
    stalled_bodies_are_closed_and_others_still_get_through,
    trickled_bodies_get_408,
    head_tells_the_real_length_and_upload_links_work_once,
    a_valid_cpe_logs_in_from_an_address_blocked_by_an_attacker,
    queries_nested_without_end_are_refused_and_the_server_stays_up,
);

/// Every route, with every role below its own, under every spelling: a 403 from the role
/// check (or 404 from the router when the spelling matches no route), never the handler.
/// Then the damage the original probe did is checked to be absent: no new token or user,
/// no Reboot queued.
async fn no_spelling_of_a_path_gets_past_its_role(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let viewer = Api::new(&app, "viewer").await;
    let operator = Api::new(&app, "operator").await;
    let admin = Api::new(&app, "admin").await;
    let device = "001122-Box-SECROLE";
    let (s, v) = admin
        .call(
            Method::PUT,
            &format!("/api/v1/devices/{device}"),
            Some(json!({"oui": "001122", "product_class": "Box", "serial_number": "SECROLE"})),
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {v}");
    let addr = app.api_addr();
    let mut checked = 0;
    for r in ROUTES {
        let rel = r
            .path
            .replace(
                "{id}",
                if r.path.starts_with("/devices") {
                    device
                } else {
                    "1"
                },
            )
            .replace("{n}", "1")
            .replace("{name}", "p1")
            .replace("{username}", "nobody");
        let weaker: Vec<(&Api, &str)> = match r.role {
            Role::Viewer => vec![],
            Role::Operator => vec![(&viewer, "viewer")],
            Role::Admin => vec![(&viewer, "viewer"), (&operator, "operator")],
        };
        let body = attack_body(r.path).to_string();
        let method = r.method.to_uppercase();
        for (target, exact) in variants(&rel) {
            // Without a token: 401 (or the listener's own 404 outside the API), never more.
            let res = raw_request(
                addr,
                &method,
                &target,
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
            .await;
            assert!(
                res.status == 401 || (!exact && res.status == 404),
                "{method} {target} without a token: {} {}",
                res.status,
                String::from_utf8_lossy(&res.body)
            );
            for (low, name) in &weaker {
                let bearer = format!("Bearer {}", low.token);
                let res = raw_request(
                    addr,
                    &method,
                    &target,
                    &[
                        ("Authorization", &bearer),
                        ("Content-Type", "application/json"),
                    ],
                    body.as_bytes(),
                )
                .await;
                let v = res.json();
                let code = v["error"]["code"].as_str().unwrap_or("");
                let by_role_check = res.status == 403
                    && code == "forbidden"
                    && v["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("this needs the"));
                let unrouted = res.status == 404 && (code == "no_route" || v.is_null());
                assert!(
                    by_role_check || (!exact && unrouted),
                    "{method} {target} with a {name} token (route needs {}): {} {}",
                    r.role.as_str(),
                    res.status,
                    String::from_utf8_lossy(&res.body)
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "only {checked} attempts");
    // The probe's findings, one by one, with a viewer token.
    let bearer = format!("Bearer {}", viewer.token);
    let h = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    for (m, target, body) in [
        ("GET", "/api/v1/%74okens".to_string(), String::new()),
        (
            "POST",
            "/api/v1/%74okens".to_string(),
            json!({"name":"x","role":"admin"}).to_string(),
        ),
        ("GET", "/api/%761/tokens".to_string(), String::new()),
        ("GET", "/api/v1/%61udit".to_string(), String::new()),
        ("GET", "/api/v1/%73ettings".to_string(), String::new()),
        ("GET", "/api/v1/%75sers".to_string(), String::new()),
        (
            "POST",
            format!("/api/v1/%64evices/{device}/tasks"),
            json!({"rpc":"Reboot"}).to_string(),
        ),
    ] {
        let res = raw_request(addr, m, &target, &h, body.as_bytes()).await;
        assert_eq!(
            res.status,
            403,
            "{m} {target}: {}",
            String::from_utf8_lossy(&res.body)
        );
    }
    let tokens = admin.get("/api/v1/tokens").await;
    let names: Vec<&str> = tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names.len(), 3, "a token was created: {names:?}");
    let users = admin.get("/api/v1/users").await;
    assert_eq!(users["items"].as_array().unwrap().len(), 0, "{users}");
    let tasks = admin.get(&format!("/api/v1/devices/{device}/tasks")).await;
    assert_eq!(tasks["items"].as_array().unwrap().len(), 0, "{tasks}");
    // The right role still works under an encoded spelling (it is the same route).
    let bearer = format!("Bearer {}", admin.token);
    let res = raw_request(
        addr,
        "GET",
        "/api/v1/%74okens",
        &[("Authorization", &bearer)],
        b"",
    )
    .await;
    assert_eq!(res.status, 200);
}

/// A path no route matches is refused: 401 without a token, 404 with one, for every method.
async fn unmatched_paths_are_denied_not_waved_through(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let viewer = Api::new(&app, "viewer").await;
    let addr = app.api_addr();
    let bearer = format!("Bearer {}", viewer.token);
    for m in ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
        for target in [
            "/api/v1/nothing",
            "/api/v1/tokens/1/extra",
            "/api/v1/%2574okens",
            "/api/v1/",
            "/api/v1",
        ] {
            let res = raw_request(addr, m, target, &[], b"").await;
            assert_eq!(res.status, 401, "{m} {target} without a token");
            let res = raw_request(addr, m, target, &[("Authorization", &bearer)], b"").await;
            assert!(
                res.status == 404 || res.status == 403,
                "{m} {target} with a viewer token: {}",
                res.status
            );
            if m != "HEAD" && res.status == 404 {
                assert_eq!(res.json()["error"]["code"], "no_route", "{m} {target}");
            }
        }
    }
}

/// A gzip stream of `mib` MiB of zeros, about 1 KiB per MiB, made by repeating one
/// compressed block (cheap to build). The trailer is not valid: nobody should get there.
pub fn gzip_bomb(mib: usize) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0u8; 1 << 20]).unwrap();
    enc.flush().unwrap();
    let block = enc.get_ref().clone();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for _ in 0..mib {
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(&[3, 0]);
    out.extend_from_slice(&[0; 8]);
    out
}

/// Peak resident memory of this process (the server runs in it), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn healthy(app: &TestApp, serial: &str) {
    let res = app
        .http()
        .get(app.api_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut dev = crate::cpe::Device::synthetic(crate::cpe::Root::Igd, serial, 10)
        .with_acs_credentials("cpe", "cpe-secret");
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
}

/// 1 MiB of gzip that inflates to 1 GiB: without credentials 401 (nothing inflated), with
/// credentials 413 (inflated only up to the limit), inside a session 413; 32 at once leave
/// the server's memory and service intact.
async fn compression_bombs_are_never_inflated_past_the_limit(b: Backend) {
    let app = TestApp::spawn(b, |c| c.cwmp.max_inform_bytes = 2 << 20).await;
    let bomb = gzip_bomb(1024);
    assert!(bomb.len() <= (1 << 20) + 64 * 1024, "{}", bomb.len());
    let gz = [("Content-Type", "text/xml"), ("Content-Encoding", "gzip")];
    let before = peak_rss_kib();
    let res = raw_request(app.cwmp_addr(), "POST", "/", &gz, &bomb).await;
    assert_eq!(res.status, 401, "{}", String::from_utf8_lossy(&res.body));
    // With the right credentials: decoded up to 2 MiB, then refused.
    let dev = crate::cpe::Device::synthetic(crate::cpe::Root::Igd, "BOMB", 10)
        .with_acs_credentials("cpe", "cpe-secret");
    let mut c = dev.http_client(&app.cwmp_url()).unwrap();
    let r = c.post_raw(&bomb, &gz).await.unwrap();
    assert_eq!(r.status, 413, "{}", r.body_text());
    // 32 at once, half of them authenticated.
    let mut all = Vec::new();
    for i in 0..32 {
        let (bomb, addr) = (bomb.clone(), app.cwmp_addr());
        let url = app.cwmp_url();
        all.push(tokio::spawn(async move {
            if i % 2 == 0 {
                raw_request(addr, "POST", "/", &gz, &bomb).await.status
            } else {
                let dev = crate::cpe::Device::synthetic(crate::cpe::Root::Igd, "BOMB", 10)
                    .with_acs_credentials("cpe", "cpe-secret");
                let mut c = dev.http_client(&url).unwrap();
                c.post_raw(&bomb, &gz).await.unwrap().status
            }
        }));
    }
    for (i, h) in all.into_iter().enumerate() {
        let status = h.await.unwrap();
        assert_eq!(status, if i % 2 == 0 { 401 } else { 413 }, "bomb {i}");
    }
    // Inside a session.
    let mut dev = crate::cpe::Device::synthetic(crate::cpe::Root::Igd, "INSESSION", 10)
        .with_acs_credentials("cpe", "cpe-secret");
    let ev = dev.inform_events(&[]);
    let inform = dev.inform_envelope(&ev, "1");
    let mut c = dev.http_client(&app.cwmp_url()).unwrap();
    assert_eq!(c.post_soap(&inform).await.unwrap().status, 200);
    let big = gzip_bomb(64);
    let r = c.post_raw(&big, &gz).await.unwrap();
    // 64 MiB decoded is over the 32 MiB in-session limit.
    assert_eq!(r.status, 413, "{}", r.body_text());
    drop(c);
    // Inflating every bomb whole would have cost tens of GiB; bounded decoding costs a few
    // MiB per request.
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 512, "peak memory grew by {grown_mib} MiB");
    // The admin listener inflates nothing: a compressed body is refused as such.
    let admin = Api::new(&app, "admin").await;
    let bearer = format!("Bearer {}", admin.token);
    let res = raw_request(
        app.api_addr(),
        "POST",
        "/api/v1/tokens",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &bomb,
    )
    .await;
    assert_eq!(res.status, 415);
    healthy(&app, "AFTERBOMB").await;
}

/// A TCP connection from `src` (any 127/8 address is local on Linux).
/// A body trickled a byte at a time (each byte within the idle timeout) gets 408 and its
/// connection closed once it is clearly not being sent, instead of holding a connection and
/// its buffer until the whole declared length has dripped in.
async fn trickled_bodies_get_408(b: Backend) {
    let app = TestApp::spawn(b, |c| {
        c.api.body_timeout_secs = 6;
        c.cwmp.body_timeout_secs = 6;
    })
    .await;
    let admin = Api::new(&app, "admin").await;
    let head = format!(
        "POST /api/v1/tokens HTTP/1.1\r\nHost: acs\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{{",
        admin.token
    );
    let mut s = tokio::net::TcpStream::connect(app.api_addr())
        .await
        .unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = None;
    // A byte every two seconds: never idle for the 6 s allowed, 0.5 byte/s on average.
    while started.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if s.write_all(b" ").await.is_err() {
            break;
        }
        let mut b = [0u8; 1];
        match s.try_read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            _ => {
                answer = Some(outcome(s).await);
                break;
            }
        }
    }
    let answer = match answer {
        Some(a) => a,
        None => panic!(
            "still reading a trickled body after {:?}",
            started.elapsed()
        ),
    };
    assert!(
        matches!(answer, Some(408) | None),
        "a trickled body: {answer:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "answered only after {:?}",
        started.elapsed()
    );
    // The listeners still serve.
    healthy(&app, "AFTERTRICKLE").await;
}

async fn connect_from(src: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
    sock.connect(to).await.unwrap()
}

/// Read what the server says on a stalled connection until it closes it: the status of its
/// answer, if any.
async fn outcome(mut s: tokio::net::TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(120), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server never closed a stalled connection");
    (!buf.is_empty()).then(|| {
        parse_response(&buf[..buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4]).status
    })
}

/// Hundreds of requests that declare a body and never send it, from one address: those
/// within the per-source limit are closed after the body timeout, the rest are refused at
/// once; meanwhile a CPE session and /healthz from another address complete.
async fn stalled_bodies_are_closed_and_others_still_get_through(b: Backend) {
    let app = TestApp::spawn(b, |c| {
        c.cwmp.body_timeout_secs = 6;
        c.cwmp.max_connections_per_source = 100;
        c.api.body_timeout_secs = 6;
        c.api.max_connections_per_source = 20;
    })
    .await;
    let admin = Api::new(&app, "admin").await;
    let heads = [
        "POST / HTTP/1.1\r\nHost: acs\r\nContent-Type: text/xml\r\nContent-Length: 200000\r\n\r\n<soap",
        "POST /cwmp HTTP/1.1\r\nHost: acs\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
        "POST / HTTP/1.1\r\nHost: acs\r\nContent-Type: text/xml\r\nContent-Length: 100000000\r\n\r\n",
    ];
    let mut cwmp = Vec::new();
    for i in 0..300 {
        let mut s = connect_from("127.0.0.2", app.cwmp_addr()).await;
        s.write_all(heads[i % 3].as_bytes()).await.unwrap();
        cwmp.push(s);
    }
    let token_post = format!(
        "POST /api/v1/tokens HTTP/1.1\r\nHost: acs\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"name\"",
        admin.token
    );
    let mut api = Vec::new();
    for _ in 0..40 {
        let mut s = connect_from("127.0.0.2", app.api_addr()).await;
        s.write_all(token_post.as_bytes()).await.unwrap();
        api.push(s);
    }
    // While they are held open: a whole CPE session and /healthz from 127.0.0.1.
    healthy(&app, "NEIGHBOUR").await;
    // Still open: the first connections are within the limit and still waiting.
    let mut waiting = 0;
    for s in &cwmp[..50] {
        let mut b = [0u8; 1];
        if matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            waiting += 1;
        }
    }
    assert!(
        waiting >= 20,
        "only {waiting} of the first 50 were still waiting"
    );
    // Then every one of them ends: 408 after the body timeout, 413 for the 100 MB one,
    // 503 beyond the per-source limit; never a hang.
    let mut counts = std::collections::BTreeMap::new();
    let outcomes: Vec<_> = cwmp.into_iter().map(|s| tokio::spawn(outcome(s))).collect();
    for h in outcomes {
        *counts.entry(h.await.unwrap()).or_insert(0) += 1;
    }
    for status in counts.keys() {
        assert!(
            matches!(status, Some(408) | Some(413) | Some(503) | None),
            "{counts:?}"
        );
    }
    assert!(
        counts.get(&Some(503)).copied().unwrap_or(0) >= 150,
        "{counts:?}"
    );
    assert!(
        counts.get(&Some(408)).copied().unwrap_or(0) >= 50,
        "{counts:?}"
    );
    let mut counts = std::collections::BTreeMap::new();
    let outcomes: Vec<_> = api.into_iter().map(|s| tokio::spawn(outcome(s))).collect();
    for h in outcomes {
        *counts.entry(h.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(counts.get(&Some(408)), Some(&20), "{counts:?}");
    assert_eq!(counts.get(&Some(503)), Some(&20), "{counts:?}");
    // No token was created by the half-sent bodies, and the server is still fine.
    let tokens = admin.get("/api/v1/tokens").await;
    assert_eq!(tokens["items"].as_array().unwrap().len(), 1);
    healthy(&app, "AFTERSTALL").await;
}

/// HEAD on a stored file gives the length GET would send (206: the range's); a signed
/// upload link stores one file, and a second use is refused, on any node.
async fn head_tells_the_real_length_and_upload_links_work_once(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let op = Api::new(&app, "operator").await;
    let content: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let res = op
        .http
        .post(format!("{}/api/v1/files?name=fw.bin", op.base))
        .bearer_auth(&op.token)
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let file: Value = res.json().await.unwrap();
    let file_id = file["id"].as_str().unwrap().to_string();
    let state = app.running.as_ref().unwrap().state.clone();
    let base = format!("http://{}", app.cwmp_addr());
    let far = state.now() / 1000 + 3600;
    let url = state
        .services
        .signer
        .download_url(&base, &file_id, "001122-Box-HEAD", far);
    let http = app.http();
    let get = http.get(&url).send().await.unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.bytes().await.unwrap().as_ref(), &content[..]);
    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "5000");
    let head = http
        .head(&url)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 206);
    assert_eq!(head.headers()["content-length"], "100");
    assert_eq!(head.headers()["content-range"], "bytes 100-199/5000");

    // Upload links: a device that exists, one link, two uploads.
    let device = "001122-Box-UPLOAD";
    let admin = Api::new(&app, "admin").await;
    let (s, v) = admin
        .call(
            Method::PUT,
            &format!("/api/v1/devices/{device}"),
            Some(json!({"oui": "001122", "product_class": "Box", "serial_number": "UPLOAD"})),
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {v}");
    let link = state.services.signer.upload_url(&base, device, far);
    let first = http.put(&link).body("config-1").send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = http.put(&link).body("config-2").send().await.unwrap();
    assert_eq!(second.status(), 403);
    let files = admin
        .get(&format!("/api/v1/files?device_id={device}"))
        .await;
    assert_eq!(files["items"].as_array().unwrap().len(), 1, "{files}");
    // Another node on the same database refuses it too; a fresh link still works there.
    let other = TestApp::spawn_on(app.db.clone(), |_| {}).await;
    let there = link.replace(&base, &format!("http://{}", other.cwmp_addr()));
    let res = http.post(&there).body("config-3").send().await.unwrap();
    assert_eq!(res.status(), 403);
    let fresh =
        state
            .services
            .signer
            .upload_url(&format!("http://{}", other.cwmp_addr()), device, far);
    let res = http.post(&fresh).body("config-4").send().await.unwrap();
    assert_eq!(res.status(), 200);
    // A tampered nonce does not pass the signature.
    let forged = fresh.replacen("n=", "n=0", 1);
    let res = http.post(&forged).body("x").send().await.unwrap();
    assert_eq!(res.status(), 403);
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// An attacker guessing one username gets the address blocked for that username, while a
/// CPE behind the same address with its own credentials still logs in; every failure and
/// every refusal shows in /metrics.
async fn a_valid_cpe_logs_in_from_an_address_blocked_by_an_attacker(b: Backend) {
    let app = TestApp::spawn(b, |c| c.cwmp.max_auth_failures = 3).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let mut bad = crate::cpe::Device::synthetic(crate::cpe::Root::Igd, "VICTIM", 5)
            .with_acs_credentials("victim", "guess");
        match bad.run_session(&app.cwmp_url(), &[]).await {
            Err(crate::cpe::SimError::UnexpectedStatus { status, .. }) => statuses.push(status),
            Err(crate::cpe::SimError::AuthFailed { .. }) => statuses.push(401),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(statuses, [401, 401, 401, 503, 503]);
    // Same address, its own username, right password: in.
    let mut good = crate::cpe::Device::synthetic(crate::cpe::Root::Igd, "NEIGHBOUR", 5)
        .with_acs_credentials("neighbour", "cpe-secret");
    let rep = good.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    // The attacker is still refused, even with the right password now.
    let mut late = crate::cpe::Device::synthetic(crate::cpe::Root::Igd, "VICTIM", 5)
        .with_acs_credentials("victim", "cpe-secret");
    match late.run_session(&app.cwmp_url(), &[]).await {
        Err(crate::cpe::SimError::UnexpectedStatus { status, .. }) => assert_eq!(status, 503),
        other => panic!("{other:?}"),
    }
    let text = app.metrics_text().await;
    assert_eq!(
        metric(&text, "ferroacs_cwmp_refused_total{reason=\"auth_failed\"}"),
        3.0
    );
    assert_eq!(
        metric(
            &text,
            "ferroacs_cwmp_refused_total{reason=\"auth_blocked\"}"
        ),
        3.0
    );
}

/// A device query nested thousands of levels deep (`((((…` or `NOT NOT …`), as the query
/// fuzzer found: the parser used to recurse once per level until a worker's stack ran out,
/// which takes the whole process down. Sent by a viewer as a search, by an operator as a
/// preset filter and as the target of a bulk task: each gets a 400 naming the limit, and
/// the server keeps serving CPEs.
async fn queries_nested_without_end_are_refused_and_the_server_stays_up(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let viewer = Api::new(&app, "viewer").await;
    let operator = Api::new(&app, "operator").await;
    let deep = [
        format!("{}serial = 1{}", "(".repeat(6000), ")".repeat(6000)),
        "NOT ".repeat(3000) + "serial = 1",
    ];
    for q in &deep {
        let res = app
            .http()
            .get(app.api_url(&format!(
                "/api/v1/devices?q={}",
                q.replace(' ', "%20").replace('=', "%3D")
            )))
            .bearer_auth(&viewer.token)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body = res.text().await.unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("nested"), "{body}");
        let (status, body) = operator
            .call(
                Method::POST,
                "/api/v1/presets",
                Some(json!({"name": "deep", "filter": q, "values": [
                    {"name": "Device.ManagementServer.PeriodicInformInterval", "value": "600"}]})),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.to_string().contains("nested"), "{body}");
        let (status, body) = operator
            .call(
                Method::POST,
                "/api/v1/tasks",
                Some(json!({"q": q, "task": {"rpc": "Reboot"}})),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.to_string().contains("nested"), "{body}");
    }
    healthy(&app, "DEEPQ01").await;
}
