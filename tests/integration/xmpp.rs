//! XMPP connection requests (TR-069 Annex K) against a real prosody on loopback: ferroacs and
//! a simulated CPE log in to it; after its discovery the CPE allows ferroacs's JID; a task
//! with a connection request reaches the CPE over XMPP and completes in the session it
//! starts; wrong credentials are recorded as refused, an offline CPE as
//! `service_unavailable` with the next transport tried; an oversized stanza closes
//! ferroacs's stream and it logs in again.
//!
//! Needs `prosody` (scripts/test installs it); without it the test is skipped with a
//! message, unless `CI` is set.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::Api;
use crate::battery;
use crate::cpe::device::Credentials;
use crate::cpe::{start_cr_listener, Device, Root, XmppAgent};
use crate::support::{Backend, TestApp, TestClock, TestDb};

battery!(
    a_cpe_holding_an_xmpp_session_is_reached_refuses_and_goes_offline,
    ferroacs_logs_in_over_starttls_only,
);

const ACS_PASSWORD: &str = "acs-xmpp-secret";
const CPE_PASSWORD: &str = "cpe-xmpp-secret";

/// A prosody of this test: its own configuration and data directory, plain-text accounts,
/// c2s on a free loopback port; killed when dropped.
struct Prosody {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prosody_available() -> bool {
    let found = Command::new("sh")
        .args(["-c", "command -v prosody"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("CI=true but prosody is not installed (scripts/test installs it)");
        }
        eprintln!("XMPP test skipped: prosody is not installed (apt-get install prosody)");
    }
    found
}

/// Whether an XMPP server (not just any listener) answers on `addr`: it opens its stream.
async fn answers_xmpp(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let open = "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' \
                xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
    if s.write_all(open.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).contains("stream"),
        _ => false,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prosody {
    /// `tls`: the PEM certificate and key prosody offers STARTTLS with (and then requires).
    async fn start(accounts: &[(&str, &str)], tls: Option<(String, String)>) -> Prosody {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        // Without a certificate mod_tls is not loaded at all: prosody would offer STARTTLS
        // and then fail the handshake.
        let tls_cfg = match tls {
            Some((cert, key)) => format!(
                "modules_enabled = {{ \"roster\", \"saslauth\", \"tls\", \"disco\", \"ping\" }}\n\
                 ssl = {{ certificate = \"{cert}\"; key = \"{key}\"; }}\n\
                 c2s_require_encryption = true\n"
            ),
            None => "modules_enabled = { \"roster\", \"saslauth\", \"disco\", \"ping\" }\n\
                     c2s_require_encryption = false\n"
                .to_string(),
        };
        let accounts_dir = dir.path().join("data/localhost/accounts");
        std::fs::create_dir_all(&accounts_dir).unwrap();
        std::fs::create_dir_all(dir.path().join("certs")).unwrap();
        for (user, pw) in accounts {
            std::fs::write(
                accounts_dir.join(format!("{user}.dat")),
                format!("return {{\n\t[\"password\"] = \"{pw}\";\n}};\n"),
            )
            .unwrap();
        }
        // The port is free when chosen, but a parallel test may bind it before prosody
        // does: then prosody exits, and something else may even answer on it. Ready means
        // prosody itself answers an XMPP stream; otherwise it starts again on another port.
        for _ in 0..5 {
            let port = free_port();
            let cfg = format!(
                r#"run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
certificates = "{d}/certs"
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{d}/prosody.log" }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_disabled = {{ "s2s", "offline" }}
{tls_cfg}authentication = "internal_plain"
storage = "internal"
VirtualHost "localhost"
"#
            );
            let cfg_path = dir.path().join("prosody.cfg.lua");
            std::fs::write(&cfg_path, cfg).unwrap();
            let child = Command::new("prosody")
                .arg("--config")
                .arg(&cfg_path)
                .arg("-F")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut p = Prosody {
                child,
                port,
                _dir: tempfile::tempdir().unwrap(),
            };
            let addr = p.addr();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while tokio::time::Instant::now() < deadline {
                if matches!(p.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                if answers_xmpp(addr).await {
                    p._dir = dir;
                    return p;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("prosody did not start (five ports tried)");
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

async fn health(app: &TestApp) -> Value {
    app.http()
        .get(app.api_url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until `/healthz` shows the XMPP connection online (with more than `reconnects`
/// connections lost before).
async fn wait_online(app: &TestApp, reconnects: u64) -> Value {
    crate::support::wait_until(Duration::from_secs(20), "XMPP online", || async {
        let h = health(app).await;
        if h["xmpp"]["state"] == "online" {
            let r = reachability_xmpp(app).await;
            if r["reconnects"].as_u64().unwrap_or(0) >= reconnects {
                return Ok(h);
            }
        }
        Err(h)
    })
    .await
}

async fn reachability_xmpp(app: &TestApp) -> Value {
    let st = app.state();
    let s = st.services.connreq.xmpp().unwrap().status();
    serde_json::to_value(s).unwrap()
}

async fn post_task(api: &Api, id: &str) -> Value {
    let (s, t) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/tasks?connection_request=true"),
            Some(json!({"rpc": "GetParameterValues", "names": ["Device.DeviceInfo.UpTime"]})),
        )
        .await;
    assert!(s == 200 || s == 202, "{s} {t}");
    t
}

async fn a_cpe_holding_an_xmpp_session_is_reached_refuses_and_goes_offline(b: Backend) {
    if !prosody_available() {
        return;
    }
    let prosody = Prosody::start(
        &[
            ("acs", ACS_PASSWORD),
            ("cpe1", CPE_PASSWORD),
            ("mallory", "mallory-pw"),
        ],
        None,
    )
    .await;
    let clock = TestClock::new(1_800_000_000_000);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let port = prosody.port;
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), |c| {
        c.xmpp.jid = Some("acs@localhost/ferroacs".into());
        c.xmpp.password = Some(ferroacs::config::Secret(ACS_PASSWORD.into()));
        c.xmpp.server = "127.0.0.1".into();
        c.xmpp.port = port;
        c.xmpp.allow_plain = true;
        c.xmpp.request_timeout_ms = 5_000;
        c.xmpp.max_stanza_bytes = 4096;
    })
    .await;
    let h = wait_online(&app, 0).await;
    assert_eq!(h["status"], "ok", "{h}");
    let api = Api::new(&app, "operator").await;

    let mut dev = Device::synthetic(Root::Device2, "XMPP0001", 120)
        .with_acs_credentials("cpe", "cpe-secret")
        .with_cwmp_version("1.4")
        .with_xmpp();
    let (_, mut http_cr) = start_cr_listener(&mut dev).await.unwrap();
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let id = ferroacs::cwmp::device_id(
        &dev.identity.oui,
        &dev.identity.product_class,
        &dev.identity.serial_number,
    );
    // Discovery saw XMPP support: ferroacs's bare JID is now allowed.
    assert_eq!(
        dev.get(&dev.ms("ConnReqAllowedJabberIDs")),
        Some("acs@localhost")
    );

    // The CPE's XMPP session comes up; its JID reaches ferroacs with the next Inform.
    let agent = XmppAgent::connect(prosody.addr(), "cpe1@localhost/cwmp", CPE_PASSWORD, &dev)
        .await
        .unwrap();
    let mut agent = agent;
    assert_eq!(agent.jid(), "cpe1@localhost/cwmp");
    dev.report_jabber_id(agent.jid());
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let r = api.get(&format!("/api/v1/devices/{id}/reachability")).await;
    assert_eq!(
        r["routes"][0],
        json!({"transport": "xmpp", "target": "cpe1@localhost/cwmp"}),
        "{r}"
    );
    assert_eq!(r["xmpp"]["state"], "online", "{r}");
    assert_eq!(r["xmpp"]["bound_jid"], "acs@localhost/ferroacs", "{r}");

    // 1. A task with a connection request: the IQ reaches the CPE, which answers result and
    //    Informs with 6 CONNECTION REQUEST; the task completes, the attempt is confirmed.
    let t = post_task(&api, &id).await;
    assert_eq!(t["connection_request"]["transport"], "xmpp", "{t}");
    assert_eq!(t["connection_request"]["outcome"], "ok", "{t}");
    let got = agent
        .wait(Duration::from_secs(5))
        .await
        .expect("XMPP connection request");
    assert_eq!(got.from, "acs@localhost/ferroacs");
    let rep = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let task = api.get(&format!("/api/v1/tasks/{}", t["id"])).await;
    assert_eq!(task["status"], "done", "{task}");
    let r = api.get(&format!("/api/v1/devices/{id}/reachability")).await;
    assert_eq!(r["attempts"][0]["transport"], "xmpp", "{r}");
    assert_eq!(r["attempts"][0]["outcome"], "ok", "{r}");
    assert!(r["attempts"][0]["confirmed_at"].is_i64(), "{r}");
    assert!(
        http_cr.wait(Duration::from_millis(200)).await.is_none(),
        "no HTTP request"
    );

    // 2. The CPE's connection-request credentials changed behind ferroacs's back: the CPE
    //    answers not-authorized, recorded as auth_failed for XMPP.
    let cr_password = dev
        .get(&dev.ms("ConnectionRequestPassword"))
        .unwrap()
        .to_string();
    let cr_username = dev
        .get(&dev.ms("ConnectionRequestUsername"))
        .unwrap()
        .to_string();
    assert!(!cr_password.is_empty());
    dev.set_cr_credentials(Credentials::new("someone", "else"));
    clock.advance_ms(60_000);
    let t = post_task(&api, &id).await;
    assert_eq!(t["connection_request"]["state"], "sent", "{t}");
    let r = api.get(&format!("/api/v1/devices/{id}/reachability")).await;
    assert_eq!(agent.refused(), 1, "{t} {r}");
    let attempts = r["attempts"].as_array().unwrap();
    assert!(
        attempts
            .iter()
            .any(|a| a["transport"] == "xmpp" && a["outcome"] == "auth_failed"),
        "{r}"
    );
    dev.set_cr_credentials(Credentials::new(cr_username, cr_password.clone()));
    // Drain the task in a session so the next request has work to announce.
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");

    // 3. A stanza bigger than xmpp.max_stanza_bytes from another account closes ferroacs's
    //    stream; it logs in again by itself.
    let mallory = XmppAgent::connect(prosody.addr(), "mallory@localhost/x", "mallory-pw", &dev)
        .await
        .unwrap();
    mallory.send_raw(
        format!(
            "<message to='acs@localhost/ferroacs' type='chat'><body>{}</body></message>",
            "A".repeat(8192)
        )
        .into_bytes(),
    );
    let h = wait_online(&app, 1).await;
    assert_eq!(h["status"], "ok");
    let x = reachability_xmpp(&app).await;
    assert!(
        x["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("larger"),
        "{x}"
    );
    mallory.close().await;

    // 4. The CPE goes offline: prosody answers service-unavailable, recorded as such, and the
    //    next transport (HTTP) goes out at once.
    agent.close().await;
    clock.advance_ms(60_000);
    let t = post_task(&api, &id).await;
    assert_eq!(t["connection_request"]["transport"], "http", "{t}");
    assert_eq!(t["connection_request"]["outcome"], "ok", "{t}");
    http_cr
        .wait(Duration::from_secs(5))
        .await
        .expect("HTTP connection request");
    let r = api.get(&format!("/api/v1/devices/{id}/reachability")).await;
    let attempts = r["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["transport"], "http", "{r}");
    assert_eq!(attempts[1]["transport"], "xmpp", "{r}");
    assert_eq!(attempts[1]["outcome"], "service_unavailable", "{r}");

    // Neither password is shown anywhere an operator looks.
    let admin = Api::new(&app, "admin").await;
    let audit = admin.get("/api/v1/audit").await.to_string();
    let metrics = app.metrics_text().await;
    assert!(metrics.contains("ferroacs_xmpp_connected 1"), "{metrics}");
    assert!(
        metrics.contains("ferroacs_connection_requests_total{outcome=\"service_unavailable\"} 1")
    );
    for shown in [
        r.to_string(),
        audit,
        metrics,
        health(&app).await.to_string(),
    ] {
        assert!(!shown.contains(&cr_password), "{shown}");
        assert!(!shown.contains(ACS_PASSWORD), "{shown}");
    }
    drop(prosody);
}

/// Waits until the XMPP client's state is `state`; returns its status.
async fn wait_state(app: &TestApp, state: &str) -> Value {
    let what = format!("XMPP {state}");
    crate::support::wait_until(Duration::from_secs(20), &what, || async {
        let x = reachability_xmpp(app).await;
        if x["state"] == state {
            Ok(x)
        } else {
            Err(x)
        }
    })
    .await
}

async fn ferroacs_logs_in_over_starttls_only(b: Backend) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    if !prosody_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("ca.pem"), ca.pem()).unwrap();
    std::fs::write(p("server.crt"), cert.pem()).unwrap();
    std::fs::write(p("server.key"), key.serialize_pem()).unwrap();
    let shown = |n: &str| p(n).display().to_string();

    // A server with STARTTLS and a certificate from the configured authority: online, TLS.
    let tls = Prosody::start(
        &[("acs", ACS_PASSWORD)],
        Some((shown("server.crt"), shown("server.key"))),
    )
    .await;
    let (port, ca_file) = (tls.port, p("ca.pem"));
    let app = TestApp::spawn(b, move |c| {
        c.xmpp.jid = Some("acs@localhost/ferroacs".into());
        c.xmpp.password = Some(ferroacs::config::Secret(ACS_PASSWORD.into()));
        c.xmpp.server = "127.0.0.1".into();
        c.xmpp.port = port;
        c.xmpp.tls_ca_file = Some(ca_file);
    })
    .await;
    let x = wait_state(&app, "online").await;
    assert_eq!(x["tls"], true, "{x}");
    assert_eq!(x["bound_jid"], "acs@localhost/ferroacs", "{x}");
    drop(app);

    // The same server, its certificate not trusted (system authorities only): never online.
    let app = TestApp::spawn(b, move |c| {
        c.xmpp.jid = Some("acs@localhost/ferroacs".into());
        c.xmpp.password = Some(ferroacs::config::Secret(ACS_PASSWORD.into()));
        c.xmpp.server = "127.0.0.1".into();
        c.xmpp.port = port;
    })
    .await;
    let x = wait_state(&app, "offline").await;
    assert!(
        x["last_error"].as_str().unwrap_or_default().contains("TLS"),
        "{x}"
    );
    drop(app);
    drop(tls);

    // A server without STARTTLS: refused unless allow_plain, the password never sent.
    let plain = Prosody::start(&[("acs", ACS_PASSWORD)], None).await;
    let port = plain.port;
    let app = TestApp::spawn(b, move |c| {
        c.xmpp.jid = Some("acs@localhost/ferroacs".into());
        c.xmpp.password = Some(ferroacs::config::Secret(ACS_PASSWORD.into()));
        c.xmpp.server = "127.0.0.1".into();
        c.xmpp.port = port;
    })
    .await;
    let x = wait_state(&app, "offline").await;
    assert!(
        x["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("STARTTLS"),
        "{x}"
    );
    let h = health(&app).await;
    assert_eq!(
        h["status"], "ok",
        "an XMPP server down does not make the node unhealthy"
    );
    assert_eq!(h["xmpp"]["state"], "offline", "{h}");
}
