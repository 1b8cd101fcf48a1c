//! What an attacker tries first against the CPE side and the secrets ferroacs keeps:
//! connection requests aimed at the ACS itself (SSRF), a session continued with someone
//! else's cookie, secrets at rest and in API answers, and devices claiming another's id.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::Api;
use crate::battery;
use crate::cpe::{Device, Root};
use crate::support::{Backend, TestApp};

/// A TCP listener that counts accepted connections and answers each with `answer` (then
/// closes), or says nothing when `answer` is empty.
async fn recording_listener(answer: &'static str) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = accepts.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            if answer.is_empty() {
                held.push(s);
                continue;
            }
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, accepts)
}

/// A bootstrapped device that reports `url` as its ConnectionRequestURL from now on.
async fn device_reporting(app: &TestApp, dev: &mut Device, url: &str) {
    let name = dev.ms("ConnectionRequestURL");
    dev.set_value(&name, url);
    let events: &[(&str, &str)] = &[("2 PERIODIC", "")];
    let rep = dev.run_session(&app.cwmp_url(), events).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
}

async fn connection_request(api: &Api, id: &str) -> serde_json::Value {
    let (s, r) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/connection_request"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{r}");
    r
}

async fn connection_requests_never_reach_the_acs_or_loopback(b: Backend) {
    // The default policy: nothing allowed beyond the defaults.
    let app = TestApp::spawn(b, |c| {
        c.api.connection_request_allow_networks = String::new();
        c.api.connection_request_min_interval_ms = 0;
    })
    .await;
    let api = Api::new(&app, "operator").await;
    let (victim, accepts) = recording_listener("HTTP/1.1 204 No Content\r\n\r\n").await;
    let p = victim.port();
    let mut dev =
        Device::synthetic(Root::Device2, "SSRF0001", 40).with_acs_credentials("cpe", "cpe-secret");
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let id = dev.identity.device_id();
    let targets = [
        format!("http://127.0.0.1:{p}/"),
        format!("http://[::1]:{p}/"),
        format!("http://0.0.0.0:{p}/"),
        format!("http://2130706433:{p}/"),
        format!("http://0x7f.1:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://localhost:{p}/"),
        format!("http://{}/healthz", app.cwmp_addr()),
        format!("http://{}/metrics", app.api_addr()),
        "http://169.254.169.254/latest/meta-data/".to_string(),
    ];
    for url in &targets {
        device_reporting(&app, &mut dev, url).await;
        let r = connection_request(&api, &id).await;
        assert_eq!(r["outcome"], "refused_by_policy", "{url}: {r}");
        let msg = r["message"].as_str().unwrap();
        assert!(
            !msg.contains("127.0.0.1") && !msg.contains(&p.to_string()),
            "{msg}"
        );
    }
    assert_eq!(
        accepts.load(Ordering::SeqCst),
        0,
        "no connection may be made"
    );

    // With loopback allowed (as for the simulator), the ACS's own listeners stay refused.
    let app2 = TestApp::spawn(b, |c| {
        c.api.connection_request_allow_networks = "127.0.0.0/8".into();
        c.api.connection_request_min_interval_ms = 0;
    })
    .await;
    let api2 = Api::new(&app2, "operator").await;
    let mut dev2 =
        Device::synthetic(Root::Device2, "SSRF0002", 40).with_acs_credentials("cpe", "cpe-secret");
    let rep = dev2.run_session(&app2.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let id2 = dev2.identity.device_id();
    for url in [
        format!("http://{}/healthz", app2.cwmp_addr()),
        format!("http://{}/metrics", app2.api_addr()),
        format!("http://127.0.0.1:{}/", app2.api_addr().port()),
        format!("http://2130706433:{}/", app2.cwmp_addr().port()),
    ] {
        device_reporting(&app2, &mut dev2, &url).await;
        let r = connection_request(&api2, &id2).await;
        assert_eq!(r["outcome"], "refused_by_policy", "{url}: {r}");
    }
    // ...while an allowed target is reached.
    device_reporting(&app2, &mut dev2, &format!("http://127.0.0.1:{p}/cr")).await;
    let r = connection_request(&api2, &id2).await;
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
}

async fn connection_request_outcomes_show_nothing_the_target_said(b: Backend) {
    let app = TestApp::spawn(b, |c| {
        c.api.connection_request_min_interval_ms = 0;
        c.api.connection_request_timeout_ms = 500;
    })
    .await;
    let operator = Api::new(&app, "operator").await;
    let viewer = Api::new(&app, "viewer").await;
    let mut dev =
        Device::synthetic(Root::Device2, "BANNER01", 40).with_acs_credentials("cpe", "cpe-secret");
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let id = dev.identity.device_id();
    for (answer, outcome) in [
        ("SSH-2.0-OpenSSH_9.6p1 Debian-3\r\n", "bad_response"),
        ("root:x:0:0:root:/root:/bin/bash\r\n\r\n", "bad_response"),
        (
            "HTTP/1.1 500 root:x:0:0:secret-reason\r\nContent-Length: 0\r\n\r\n",
            "bad_response",
        ),
        (
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/root:x:0:0\r\nContent-Length: 0\r\n\r\n",
            "bad_response",
        ),
    ] {
        let (addr, _) = recording_listener(answer).await;
        device_reporting(&app, &mut dev, &format!("http://{addr}/cr")).await;
        let r = connection_request(&operator, &id).await;
        assert_eq!(r["outcome"], outcome, "{answer:?}: {r}");
        for shown in [
            r.to_string(),
            viewer.get(&format!("/api/v1/devices/{id}")).await.to_string(),
            viewer.get("/api/v1/devices").await.to_string(),
        ] {
            for word in ["SSH-", "OpenSSH", "root:x", "/bin/bash", "secret-reason", "Location"] {
                assert!(!shown.contains(word), "{word} shown: {shown}");
            }
        }
    }
    // A closed port and a silent one look the same: no port scanning through outcomes.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (silent, _) = recording_listener("").await;
    let mut seen = Vec::new();
    for addr in [closed, silent] {
        device_reporting(&app, &mut dev, &format!("http://{addr}/cr")).await;
        let r = connection_request(&operator, &id).await;
        seen.push((r["outcome"].clone(), r["message"].clone()));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0].0, "unreachable");
}

/// Sends one raw HTTP request from `source` (another loopback address than the CPE's) and
/// returns the status code and body.
async fn raw_post(
    from: &str,
    to: std::net::SocketAddr,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(to).await.unwrap();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {to}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

async fn a_session_cookie_alone_opens_nothing(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let api = Api::new(&app, "operator").await;
    let mut victim =
        Device::synthetic(Root::Device2, "VICTIM01", 40).with_acs_credentials("cpe", "cpe-secret");
    let rep = victim.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let vid = victim.identity.device_id();
    let secret = "cr-Pass-Never-Leaks-7";
    let (s, task) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{vid}/tasks"),
            Some(json!({"rpc": "SetParameterValues", "values": [
                {"name": "Device.ManagementServer.ConnectionRequestPassword", "value": secret}
            ]})),
        )
        .await;
    assert_eq!(s, 202, "{task}");
    let task_id = task["id"].as_i64().unwrap();

    // An attacker device with credentials of its own.
    let attacker_id = "000000-ATTACK-1";
    let store = app.store();
    tokio::task::spawn_blocking(move || {
        let realm = "ferroacs".to_string();
        let ha1 = move |u: &str, p: &str| ferroacs::auth::digest::ha1(u, &realm, p);
        store
            .provision_device(
                &ferroacs::store::devices::ProvisionDevice {
                    id: attacker_id.into(),
                    oui: "000000".into(),
                    product_class: "ATTACK".into(),
                    serial_number: "1".into(),
                    cwmp_credentials: Some(Some(("attacker".into(), "attacker-pw".into()))),
                    tags: None,
                },
                Some(&ha1),
                1,
            )
            .unwrap();
    })
    .await
    .unwrap();

    // The victim opens its session: Inform, cookie. Its task waits for the empty POST.
    let ev = victim.inform_events(&[("6 CONNECTION REQUEST", "")]);
    let inform = victim.inform_envelope(&ev, "1");
    let mut own = victim.http_client(&app.cwmp_url()).unwrap();
    let resp = own.post_soap(&inform).await.unwrap();
    assert_eq!(resp.status, 200);
    let cookie = resp
        .header_values("set-cookie")
        .find(|c| c.starts_with("ferroacs_session="))
        .map(|c| c.split(';').next().unwrap().to_string())
        .expect("session cookie");
    // The task as the Inform left it (pending, or started with the Inform: not sent).
    let before_attack = api.get(&format!("/api/v1/tasks/{task_id}")).await;
    assert!(before_attack["result"].is_null(), "{before_attack}");

    // The attack: the cookie from another address and connection, no credentials.
    let (status, text) = raw_post(
        "127.0.0.2",
        app.cwmp_addr(),
        &format!("Cookie: {cookie}\r\n"),
        "",
    )
    .await;
    assert_eq!(status, 401, "{text}");
    assert!(
        !text.contains("SetParameterValues") && !text.contains(secret),
        "{text}"
    );
    // With another device's valid credentials: refused too.
    let mut other = Device::synthetic(Root::Device2, "ATTACK-1", 5)
        .with_acs_credentials("attacker", "attacker-pw");
    let mut c = other.http_client(&app.cwmp_url()).unwrap();
    let stolen = c.post_raw(b"", &[("Cookie", cookie.as_str())]).await;
    match stolen {
        Ok(r) => {
            assert_eq!(r.status, 401, "{}", r.body_text());
            assert!(!r.body_text().contains(secret));
        }
        Err(e) => assert!(e.to_string().to_lowercase().contains("auth"), "{e}"),
    }
    let _ = &mut other;
    let t = api.get(&format!("/api/v1/tasks/{task_id}")).await;
    assert_eq!(t, before_attack, "the attack changed nothing of the task");

    // The victim, on its own connection, still gets its task and completes it.
    let spv = own.post_empty().await.unwrap();
    assert_eq!(spv.status, 200);
    assert!(
        spv.body_text().contains("SetParameterValues"),
        "{}",
        spv.body_text()
    );
    let reply = victim.respond_to(&spv.body_text()).unwrap();
    let end = own.post_soap(&reply.xml).await.unwrap();
    assert_eq!(end.status, 204, "{}", end.body_text());
    let t = api.get(&format!("/api/v1/tasks/{task_id}")).await;
    assert_eq!(t["status"], "done", "{t}");
}

/// Every stored byte of the SQLite database (main file, WAL, shared memory).
fn sqlite_bytes(app: &TestApp) -> Vec<u8> {
    let dir = app.db.dir().expect("sqlite dir");
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(b) = std::fs::read(dir.join(format!("ferroacs.db{suffix}"))) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn secrets_rest_sealed_and_reach_no_one(b: Backend) {
    let files = tempfile::tempdir().unwrap();
    let store_dir = files.path().join("store");
    let sd = store_dir.clone();
    let app = TestApp::spawn(b, move |c| {
        c.api.connection_request_min_interval_ms = 0;
        c.files.dir = sd;
    })
    .await;
    let operator = Api::new(&app, "operator").await;
    let viewer = Api::new(&app, "viewer").await;
    let admin = Api::new(&app, "admin").await;
    let (mut dev, mut cr, id) = crate::api::online_device(&app, "SECRET01").await;
    // The connection-request password ferroacs gave the device at bootstrap.
    let cr_password = dev.cr_credentials().password;
    assert!(cr_password.len() >= 16, "{cr_password}");
    // The CWMP password ferroacs issued it (trust on first use).
    let acs_password = dev.get(&dev.ms("Password")).unwrap().to_string();
    assert!(acs_password.len() >= 32, "{acs_password}");
    let (line_pw, task_pw, dl_pw, dl_user) = (
        "Line-Secret-4711",
        "Task-Secret-0815",
        "Dl-Secret-2323",
        "dl-user-9f3c",
    );
    let (s, v) = operator
        .call(
            Method::PUT,
            &format!("/api/v1/devices/{id}/lines/1"),
            Some(json!({"sip_user": "4930123456", "password": line_pw, "registrar": "sip.example.net"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let ms = dev.ms("ConnectionRequestPassword");
    let (s, spv) = operator
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/tasks"),
            Some(json!({"rpc": "SetParameterValues", "values": [{"name": ms, "value": task_pw}]})),
        )
        .await;
    assert_eq!(s, 202, "{spv}");
    let (s, dl) = operator
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/tasks"),
            Some(json!({"rpc": "Download", "url": "http://192.0.2.1/fw.bin", "file_type": "1 Firmware Upgrade Image",
                        "username": dl_user, "password": dl_pw})),
        )
        .await;
    assert_eq!(s, 202, "{dl}");
    let (s, _) = operator
        .call(Method::DELETE, &format!("/api/v1/tasks/{}", dl["id"]), None)
        .await;
    assert!(s < 300, "cancel: {s}");
    // A file upload creates the file store owner-only.
    let up = operator
        .http
        .post(format!(
            "{}/api/v1/files?name=cfg.bin&file_type=3%20Vendor%20Configuration%20File",
            operator.base
        ))
        .bearer_auth(&operator.token)
        .body("x".repeat(100))
        .send()
        .await
        .unwrap();
    assert!(up.status().is_success(), "{}", up.status());

    // The device gets the real value of the task.
    let rep = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(dev.get(&ms), Some(task_pw));
    // Back to the password ferroacs knows, for the connection request below.
    let user = dev.cr_credentials().username;
    dev.set_cr_credentials(crate::cpe::Credentials::new(&user, &cr_password));
    let t = viewer.get(&format!("/api/v1/tasks/{}", spv["id"])).await;
    assert_eq!(t["status"], "done", "{t}");

    // Nobody reads a secret back: every role, tasks, lists, audit, device, lines.
    let secrets = [
        cr_password.as_str(),
        acs_password.as_str(),
        line_pw,
        task_pw,
        dl_pw,
        dl_user,
    ];
    let mut shown = Vec::new();
    for api in [&viewer, &admin] {
        for path in [
            format!("/api/v1/tasks/{}", spv["id"]),
            format!("/api/v1/tasks/{}", dl["id"]),
            "/api/v1/tasks".to_string(),
            format!("/api/v1/devices/{id}/tasks"),
            format!("/api/v1/devices/{id}"),
            format!("/api/v1/devices/{id}/parameters"),
            format!("/api/v1/devices/{id}/lines/1"),
        ] {
            shown.push(api.get(&path).await.to_string());
        }
    }
    shown.push(admin.get("/api/v1/audit").await.to_string());
    shown.push(spv.to_string());
    shown.push(dl.to_string());
    for text in &shown {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
    }
    let t = admin.get(&format!("/api/v1/tasks/{}", dl["id"])).await;
    assert_eq!(t["args"]["password"], "***", "{t}");

    // At rest: sealed columns, nothing in the database files.
    let store = app.store();
    let (dev_id, spv_id) = (id.clone(), spv["id"].as_i64().unwrap());
    let (row, line, task, audit) = tokio::task::spawn_blocking(move || {
        (
            store.get_device(&dev_id).unwrap().unwrap(),
            store.get_line(&dev_id, 1).unwrap().unwrap(),
            store.get_task(spv_id).unwrap().unwrap(),
            store.list_audit(None, 100).unwrap(),
        )
    })
    .await
    .unwrap();
    assert!(row.cr_password.as_deref().unwrap().starts_with("enc1:"));
    assert!(line.password.as_deref().unwrap().starts_with("enc1:"));
    assert!(
        !task.args.contains(task_pw) && task.args.contains("enc1:"),
        "{}",
        task.args
    );
    for a in &audit {
        for secret in secrets {
            assert!(!format!("{a:?}").contains(secret), "{a:?}");
        }
    }
    if b == Backend::Sqlite {
        let bytes = sqlite_bytes(&app);
        assert!(bytes.len() > 10_000);
        for secret in secrets {
            assert!(
                !contains(&bytes, secret),
                "{secret} found in the database files"
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let dir = app.db.dir().unwrap();
            for suffix in ["", "-wal", "-shm"] {
                let p = dir.join(format!("ferroacs.db{suffix}"));
                if let Ok(m) = std::fs::metadata(&p) {
                    assert_eq!(m.permissions().mode() & 0o777, 0o600, "{}", p.display());
                }
            }
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(&store_dir).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o700);
    }

    // Rotate the key: re-seal under a new key, restart with the new key only.
    let old_key = app.db.key.clone();
    let new_key = ferroacs::secrets::generate_key();
    let store = app.store();
    let nk = new_key.clone();
    let resealed = tokio::task::spawn_blocking(move || {
        store.set_keyring(ferroacs::secrets::Keyring::from_hex(&[nk, old_key], "test").unwrap());
        ferroacs::domain::secrets::reencrypt(&store).unwrap()
    })
    .await
    .unwrap();
    assert!(resealed.values >= 3, "{resealed:?}");
    let mut app = app;
    app.stop(true).await;
    let db = app.db.clone();
    let nk = new_key.clone();
    let sd = store_dir.clone();
    let app = TestApp::spawn_on(db, move |c| {
        c.api.connection_request_min_interval_ms = 0;
        c.files.dir = sd;
        c.secrets.key = Some(ferroacs::config::Secret(nk));
    })
    .await;
    let operator = Api::new(&app, "operator").await;
    // The connection request still authenticates with the (re-sealed) password.
    let (s, r) = operator
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/connection_request"),
            None,
        )
        .await;
    assert_eq!((s, r["outcome"].clone()), (200, json!("ok")), "{r}");
    assert!(cr.wait(Duration::from_secs(5)).await.is_some());
    let rep = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    // A wrong key is refused at start with a clear error.
    let mut app = app;
    app.stop(true).await;
    let mut cfg = app.config.clone();
    cfg.secrets.key = Some(ferroacs::config::Secret(ferroacs::secrets::generate_key()));
    cfg.cwmp.listen = "127.0.0.1:0".into();
    cfg.api.listen = "127.0.0.1:0".into();
    let err = tokio::task::spawn_blocking(move || ferroacs::app::start(cfg, None, false).err())
        .await
        .unwrap()
        .expect("a wrong key must be refused");
    assert!(err.to_string().contains("another key"), "{err}");
}

battery!(
    connection_requests_never_reach_the_acs_or_loopback,
    connection_request_outcomes_show_nothing_the_target_said,
    a_session_cookie_alone_opens_nothing,
    secrets_rest_sealed_and_reach_no_one,
    secret_values_are_sealed_and_shown_nowhere,
);

/// `ferroacs secrets rotate-key` and `reencrypt --forget-previous` on a key file, with a
/// connection-request password stored before; `config show` never prints a key.
#[test]
fn cli_rotates_the_key_file_and_never_shows_keys() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ferroacs"));
        for (k, _) in std::env::vars() {
            if k.starts_with("FERROACS_") {
                c.env_remove(k);
            }
        }
        c.current_dir(dir.path()).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    let keys = || -> Vec<String> {
        std::fs::read_to_string(dir.path().join("ferroacs.key"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    run(&["migrate"], &[]);
    assert_eq!(keys().len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["ferroacs.key", "ferroacs.db"] {
            let m = std::fs::metadata(dir.path().join(f)).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
        }
    }
    let mut cfg = ferroacs::config::Config::default();
    cfg.database.url = format!("sqlite://{}", dir.path().join("ferroacs.db").display());
    cfg.secrets.key_file = dir.path().join("ferroacs.key");
    let open = |cfg: &ferroacs::config::Config| {
        let store = ferroacs::store::Store::open(&cfg.database).unwrap();
        ferroacs::domain::secrets::init(&store, &cfg.secrets, false).unwrap();
        store
    };
    let store = open(&cfg);
    store
        .provision_device(
            &ferroacs::store::devices::ProvisionDevice {
                id: "000000-X-1".into(),
                oui: "000000".into(),
                product_class: "X".into(),
                serial_number: "1".into(),
                ..Default::default()
            },
            None,
            1,
        )
        .unwrap();
    let sealed = store
        .keyring()
        .seal(ferroacs::secrets::purpose::CR_PASSWORD, "Cr-Secret-5150")
        .unwrap();
    store
        .set_cr_credentials("000000-X-1", "cr", &sealed)
        .unwrap();
    drop(store);

    let out = run(&["secrets", "rotate-key"], &[]);
    assert!(out.contains("re-encrypted"), "{out}");
    let two = keys();
    assert_eq!(two.len(), 2);
    let store = open(&cfg);
    let row = store.get_device("000000-X-1").unwrap().unwrap();
    let stored = row.cr_password.unwrap();
    assert!(store.keyring().is_current(&stored) && stored != sealed);
    drop(store);
    run(&["secrets", "reencrypt", "--forget-previous"], &[]);
    assert_eq!(keys(), vec![two[0].clone()]);
    let store = open(&cfg);
    let row = store.get_device("000000-X-1").unwrap().unwrap();
    assert_eq!(
        store
            .keyring()
            .open(
                ferroacs::secrets::purpose::CR_PASSWORD,
                &row.cr_password.unwrap()
            )
            .unwrap(),
        "Cr-Secret-5150"
    );
    let db = std::fs::read(dir.path().join("ferroacs.db")).unwrap();
    assert!(!contains(&db, "Cr-Secret-5150"));
    let shown = run(&["config", "show"], &[("FERROACS_SECRETS_KEY", &two[0])]);
    assert!(
        !shown.contains(&two[0]) && shown.contains("[secrets]"),
        "{shown}"
    );
}

/// A `ferroacs serve` process on a test database, its log (at debug level) captured in a
/// file and its CWMP trace in a directory, as an operator runs it.
struct Served {
    child: std::process::Child,
    cwmp: u16,
    api: u16,
    log: std::path::PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn serve(db: &crate::support::TestDb, dir: &std::path::Path, name: &str) -> Served {
    let (cwmp, api) = (free_port(), free_port());
    let log = dir.join(format!("{name}.log"));
    let trace = dir.join("trace");
    std::fs::create_dir_all(&trace).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ferroacs"))
        .arg("serve")
        .current_dir(dir)
        .env_clear()
        .env("FERROACS_DATABASE_URL", &db.url)
        .env("FERROACS_DATABASE_POOL_SIZE", "4")
        .env("FERROACS_SECRETS_KEY", &db.key)
        .env("FERROACS_CWMP_LISTEN", format!("127.0.0.1:{cwmp}"))
        .env("FERROACS_API_LISTEN", format!("127.0.0.1:{api}"))
        .env("FERROACS_CWMP_DEFAULT_PASSWORD", "cpe-secret")
        .env(
            "FERROACS_API_CONNECTION_REQUEST_ALLOW_NETWORKS",
            "127.0.0.1/32",
        )
        .env("FERROACS_API_CONNECTION_REQUEST_MIN_INTERVAL_MS", "0")
        .env("FERROACS_FILES_DIR", dir.join("files"))
        .env("FERROACS_LOG_LEVEL", "debug")
        .env("FERROACS_LOG_CWMP_TRACE_DIR", &trace)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let served = Served {
        child,
        cwmp,
        api,
        log,
    };
    let http = reqwest::Client::new();
    let log = served.log.clone();
    crate::support::wait_until(Duration::from_secs(60), "ferroacs starts", || async {
        let answer = http
            .get(format!("http://127.0.0.1:{api}/healthz"))
            .send()
            .await;
        match answer {
            Ok(r) if r.status() == 200 => Ok(()),
            other => Err(format!(
                "{other:?}; log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )),
        }
    })
    .await;
    served
}

impl Served {
    fn cwmp_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.cwmp)
    }

    fn api(&self, token: &str) -> Api {
        Api {
            base: format!("http://127.0.0.1:{}", self.api),
            token: token.to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// A console session of `user`: the HTML of `paths` (each must answer 200).
    async fn console_pages(&self, user: &str, password: &str, paths: &[String]) -> Vec<String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{}", self.api);
        let res = http
            .post(format!("{base}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                serde_urlencoded::to_string([("username", user), ("password", password)]).unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        let cookie = res
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("ferroacs_session="))
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let mut out = Vec::new();
        for p in paths {
            let r = http
                .get(format!("{base}{p}"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{p}");
            out.push(r.text().await.unwrap());
        }
        out
    }
}

/// Open a store on the test database with its key (for raw rows and test set-up).
fn raw_store(db: &crate::support::TestDb) -> ferroacs::store::Store {
    let mut cfg = ferroacs::config::Config::default();
    cfg.database.url = db.url.clone();
    cfg.database.pool_size = 2;
    let store = ferroacs::store::Store::open(&cfg.database).unwrap();
    store.set_keyring(
        ferroacs::secrets::Keyring::from_hex(std::slice::from_ref(&db.key), "test").unwrap(),
    );
    store
}

/// Preset values, SetParameterValues tasks and CWMP credentials that are secrets, through a
/// served process: the CPE gets the clear values, and no database row, API answer, console
/// page, audit entry, CWMP trace or log line holds one. Rows of older versions (clear preset
/// values, a clear HA1, clear values in what presets did) are sealed at start, by two nodes
/// starting at once.
async fn secret_values_are_sealed_and_shown_nowhere(b: Backend) {
    let db = crate::support::TestDb::new(b);
    let dir = tempfile::tempdir().unwrap();
    let node = serve(&db, dir.path(), "first").await;
    let store = raw_store(&db);
    let mut tokens = std::collections::BTreeMap::new();
    for role in ["viewer", "operator", "admin"] {
        let token = ferroacs::auth::password::generate_token();
        let (st, hash, r) = (
            store.clone(),
            ferroacs::auth::password::hash_token(&token),
            role.to_string(),
        );
        tokio::task::spawn_blocking(move || st.insert_token(&format!("t-{r}"), &hash, &r, 1))
            .await
            .unwrap()
            .unwrap();
        tokens.insert(role, token);
    }
    let st = store.clone();
    tokio::task::spawn_blocking(move || {
        let hash = ferroacs::auth::password::hash_password("console-pass-1").unwrap();
        st.insert_user("eve", &hash, "viewer", 1)
    })
    .await
    .unwrap()
    .unwrap();
    let (viewer, operator, admin) = (
        node.api(&tokens["viewer"]),
        node.api(&tokens["operator"]),
        node.api(&tokens["admin"]),
    );

    // A device bootstraps with the shared password, then logs in with the one issued to it.
    let mut dev =
        Device::synthetic(Root::Igd, "SEALED01", 60).with_acs_credentials("cpe", "cpe-secret");
    let (_, _cr) = crate::cpe::start_cr_listener(&mut dev).await.unwrap();
    let rep = dev.run_session(&node.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let rep = dev
        .run_session(&node.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let id = ferroacs::cwmp::device_id(
        &dev.identity.oui,
        &dev.identity.product_class,
        &dev.identity.serial_number,
    );
    let creds = viewer
        .get(&format!("/api/v1/devices/{id}/credentials"))
        .await;
    assert_eq!(creds["state"], "own", "{creds}");
    let acs_user = dev.get(&dev.ms("Username")).unwrap().to_string();
    let acs_password = dev.get(&dev.ms("Password")).unwrap().to_string();
    let realm = ferroacs::config::Config::default().cwmp.realm;
    let ha1 = ferroacs::auth::digest::ha1(&acs_user, &realm, &acs_password);
    let cr_password = dev.cr_credentials().password;

    // A preset with a SIP password and a WPA passphrase, and a task with another passphrase.
    let sip =
        "InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.Line.1.SIP.AuthPassword";
    let wpa1 = "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.KeyPassphrase";
    let wpa2 = "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.KeyPassphrase";
    let proxy = "InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.SIP.ProxyServer";
    let (sip_pw, wpa_pw, task_pw) = (
        "Sip-Preset-7781",
        "Wpa-Preset-Key-3301",
        "Task-Wpa-Key-6120",
    );
    let (s, p) = operator
        .call(
            Method::PUT,
            "/api/v1/presets/voice",
            Some(json!({"values": [
                {"name": sip, "value": sip_pw},
                {"name": wpa1, "value": wpa_pw},
                {"name": proxy, "value": "sip.example.net"},
            ]})),
        )
        .await;
    assert!(s < 300, "{s} {p}");
    let (s, task) = operator
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/tasks"),
            Some(
                json!({"rpc": "SetParameterValues", "values": [{"name": wpa2, "value": task_pw}]}),
            ),
        )
        .await;
    assert_eq!(s, 202, "{task}");
    let rep = dev
        .run_session(&node.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(dev.get(sip), Some(sip_pw));
    assert_eq!(dev.get(wpa1), Some(wpa_pw));
    assert_eq!(dev.get(wpa2), Some(task_pw));
    assert_eq!(dev.get(proxy), Some("sip.example.net"));
    let t = viewer.get(&format!("/api/v1/tasks/{}", task["id"])).await;
    assert_eq!(t["status"], "done", "{t}");

    // Shown as set, never as the value; given back as shown, it keeps the stored value.
    let shown = operator.get("/api/v1/presets/voice").await;
    let values = shown["values"].as_array().unwrap();
    let of = |n: &str| values.iter().find(|v| v["name"] == n).unwrap()["value"].clone();
    assert_eq!(
        (of(sip), of(wpa1), of(proxy)),
        (json!("***"), json!("***"), json!("sip.example.net"))
    );
    let mut again = shown.clone();
    again["priority"] = json!(5);
    for k in [
        "revision",
        "created_at",
        "updated_at",
        "connection_requests",
    ] {
        again.as_object_mut().unwrap().remove(k);
    }
    let (s, v) = operator
        .call(Method::PUT, "/api/v1/presets/voice", Some(again.clone()))
        .await;
    assert!(s < 300, "{s} {v}");
    // A new revision goes out again: the device gets the stored value, not the mask.
    dev.set_value(sip, "changed-on-the-device");
    let rep = dev
        .run_session(&node.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(dev.get(sip), Some(sip_pw));
    // The mask for a secret nothing stored is refused.
    let mut bad = again.clone();
    bad["values"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": wpa2, "value": "***"}));
    let (s, v) = operator
        .call(Method::PUT, "/api/v1/presets/voice", Some(bad))
        .await;
    assert!((400..500).contains(&s), "{s} {v}");
    assert!(v.to_string().contains("give the secret value"), "{v}");

    let secrets = [
        sip_pw,
        wpa_pw,
        task_pw,
        acs_password.as_str(),
        ha1.as_str(),
        cr_password.as_str(),
    ];
    let check = |what: &str, text: &str| {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} in {what}: {text}");
        }
    };
    // API answers, for every role.
    for api in [&viewer, &operator, &admin] {
        for path in [
            "/api/v1/presets".to_string(),
            "/api/v1/presets/voice".to_string(),
            format!("/api/v1/devices/{id}/presets"),
            format!("/api/v1/devices/{id}"),
            format!("/api/v1/devices/{id}/parameters"),
            format!("/api/v1/devices/{id}/credentials"),
            format!("/api/v1/devices/{id}/tasks"),
            format!("/api/v1/devices/{id}/sessions"),
            format!("/api/v1/tasks/{}", task["id"]),
            "/api/v1/tasks".to_string(),
            "/api/v1/openapi.json".to_string(),
        ] {
            let (s, v) = api.call(Method::GET, &path, None).await;
            assert_eq!(s, 200, "{path}: {v}");
            check(&path, &v.to_string());
        }
    }
    let applied = viewer.get(&format!("/api/v1/devices/{id}/presets")).await;
    assert_eq!(applied["applied"][sip]["value"], "***", "{applied}");
    assert_eq!(
        applied["applied"][proxy]["value"], "sip.example.net",
        "{applied}"
    );
    let audit = admin.get("/api/v1/audit").await;
    assert!(audit.to_string().contains("preset.update"), "{audit}");
    check("audit", &audit.to_string());
    // Console pages.
    let pages = node
        .console_pages(
            "eve",
            "console-pass-1",
            &[
                "/presets".to_string(),
                "/presets/voice".to_string(),
                format!("/devices/{id}"),
                format!("/devices/{id}/params"),
                format!("/devices/{id}/tasks"),
            ],
        )
        .await;
    for page in &pages {
        check("console", page);
    }
    assert!(pages[1].contains("(unchanged)"), "{}", pages[1]);

    // At rest.
    let (st, i, tid) = (store.clone(), id.clone(), task["id"].as_i64().unwrap());
    let (preset, state, task_row, device, audit_rows) = tokio::task::spawn_blocking(move || {
        (
            st.get_preset("voice").unwrap().unwrap(),
            st.preset_state(&i).unwrap().unwrap(),
            st.get_task(tid).unwrap().unwrap(),
            st.get_device(&i).unwrap().unwrap(),
            st.list_audit(None, 100).unwrap(),
        )
    })
    .await
    .unwrap();
    check("presets.spec", &preset.spec);
    assert!(preset.spec.contains("enc1:") && preset.spec.contains("sip.example.net"));
    check("device_preset_state", &format!("{state:?}"));
    check("tasks.args", &task_row.args);
    let sealed_ha1 = device.cwmp_ha1.clone().unwrap();
    assert!(sealed_ha1.starts_with("enc1:"), "{sealed_ha1}");
    check("devices", &format!("{device:?}"));
    check("audit_events", &format!("{audit_rows:?}"));
    if b == Backend::Sqlite {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            if let Ok(b) = std::fs::read(format!(
                "{}{suffix}",
                db.url.trim_start_matches("sqlite://")
            )) {
                bytes.extend(b);
            }
        }
        assert!(bytes.len() > 10_000);
        for secret in secrets {
            assert!(!contains(&bytes, secret), "{secret} in the database files");
        }
    }

    // Older versions stored these in clear: the next start seals them (two nodes at once).
    drop(node);
    let (st, i) = (store.clone(), id.clone());
    let clear_spec = json!({"values": [{"name": sip, "value": "Old-Clear-Sip-4242"}]}).to_string();
    tokio::task::spawn_blocking(move || {
        let new = ferroacs::store::presets::NewPreset {
            name: "legacy".into(),
            filter: String::new(),
            priority: 9,
            events: String::new(),
            spec: clear_spec,
        };
        st.put_preset(&new, 2, |_| ferroacs::store::search::Filter::All)
            .unwrap();
        use ferroacs::store::sealed::SealedColumn;
        let sealed = st.get_device(&i).unwrap().unwrap().cwmp_ha1.unwrap();
        let clear = st
            .keyring()
            .open(ferroacs::secrets::purpose::DEVICE_HA1, &sealed)
            .unwrap();
        assert!(st
            .replace_sealed(SealedColumn::DeviceHa1, &i, &sealed, &clear)
            .unwrap());
        let mut state = st.preset_state(&i).unwrap().unwrap();
        state.applied = state.applied.replace("\"***\"", "\"Old-Applied-5151\"");
        st.save_preset_state(&i, &state, 3).unwrap();
        // An old version left no mark that they are masked.
        st.delete_setting("preset_state_secrets_masked").unwrap();
    })
    .await
    .unwrap();
    let (one, two) = tokio::join!(
        serve(&db, dir.path(), "second"),
        serve(&db, dir.path(), "third")
    );
    let (st, i) = (store.clone(), id.clone());
    let (legacy, device, state) = tokio::task::spawn_blocking(move || {
        (
            st.get_preset("legacy").unwrap().unwrap(),
            st.get_device(&i).unwrap().unwrap(),
            st.preset_state(&i).unwrap().unwrap(),
        )
    })
    .await
    .unwrap();
    assert!(!legacy.spec.contains("Old-Clear-Sip-4242") && legacy.spec.contains("enc1:"));
    assert!(device.cwmp_ha1.unwrap().starts_with("enc1:"));
    assert!(
        !format!("{state:?}").contains("Old-Applied-5151"),
        "{state:?}"
    );
    // The device still logs in with its own credentials, and gets the legacy preset's value.
    let rep = dev
        .run_session(&two.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(dev.get(sip), Some("Old-Clear-Sip-4242"));

    // CWMP traces: the operator reads them; the SetParameterValues sent are there, masked.
    let mut traced = String::new();
    for e in std::fs::read_dir(dir.path().join("trace")).unwrap() {
        traced.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap());
    }
    assert!(
        traced.contains(wpa2) && traced.contains(">***</Value>"),
        "no masked value traced"
    );
    check("CWMP trace", &traced);
    assert!(!traced.contains("Old-Clear-Sip-4242") && !traced.contains("cpe-secret"));
    // The server logs, at debug level.
    drop((one, two));
    for name in ["first", "second", "third"] {
        let log = std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap();
        check("server log", &log);
        assert!(!log.contains("Old-Clear-Sip-4242"), "{log}");
    }
}
