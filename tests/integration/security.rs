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
