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
    assert_eq!(t["status"], "pending", "{t}");

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
    let secrets = [cr_password.as_str(), line_pw, task_pw, dl_pw, dl_user];
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
