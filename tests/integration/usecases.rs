//! One implementation per admin operation: the same operation run through the CLI binary and
//! through the API writes the same audit entry (action, target, detail shape).

use reqwest::Method;
use serde_json::json;

use crate::api::Api;
use crate::battery;
use crate::support::{Backend, TestApp};

/// Run the binary against the app's database; panics when the command fails.
fn cli(app: &TestApp, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let dir = app.files_dir.path();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ferroacs"));
    for (k, _) in std::env::vars() {
        if k.starts_with("FERROACS_") {
            c.env_remove(k);
        }
    }
    c.current_dir(dir)
        .env("FERROACS_DATABASE_URL", &app.db.url)
        .env("FERROACS_SECRETS_KEY", &app.db.key)
        .env("FERROACS_FILES_DIR", dir.join("files"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "ferroacs {args:?}: {o}{e}");
    o
}

/// Audit entries after `after` as (actor, action, target, detail), oldest first.
async fn audit_since(app: &TestApp, after: i64) -> Vec<(String, String, String, String)> {
    let store = app.store();
    let mut rows = tokio::task::spawn_blocking(move || store.list_audit(None, 1000).unwrap())
        .await
        .unwrap();
    rows.retain(|r| r.id > after);
    rows.sort_by_key(|r| r.id);
    rows.into_iter()
        .map(|r| (r.actor, r.action, r.target, r.detail.unwrap_or_default()))
        .collect()
}

async fn last_audit_id(app: &TestApp) -> i64 {
    let store = app.store();
    tokio::task::spawn_blocking(move || store.list_audit(None, 1).unwrap())
        .await
        .unwrap()
        .first()
        .map(|r| r.id)
        .unwrap_or(0)
}

/// The shape of a value: the run's marker and every number replaced.
fn shape(s: &str, marker: &str) -> String {
    let s = s.replace(marker, "<M>");
    let mut out = String::new();
    let mut in_num = false;
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            if !in_num {
                out.push('#');
            }
            in_num = true;
        } else {
            in_num = false;
            out.push(ch);
        }
    }
    out
}

async fn cli_and_api_write_the_same_audit_entries(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let api = Api::new(&app, "admin").await;
    let scratch = tempfile::tempdir().unwrap();

    // ---- through the CLI (marker CLIX)
    let m = "CLIX";
    let start = last_audit_id(&app).await;
    let out = cli(
        &app,
        &[
            "token", "create", "--name", "oss-CLIX", "--role", "operator",
        ],
        None,
    );
    let token_id = out
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse::<i64>()
        .unwrap();
    cli(&app, &["token", "revoke", &token_id.to_string()], None);
    cli(
        &app,
        &[
            "user",
            "add",
            "--username",
            "alice-CLIX",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        Some("correct horse\n"),
    );
    cli(
        &app,
        &["user", "password", "alice-CLIX", "--password-stdin"],
        Some("battery staple\n"),
    );
    cli(&app, &["user", "remove", "alice-CLIX"], None);
    cli(
        &app,
        &[
            "device",
            "provision",
            "--oui",
            "00AA00",
            "--product-class",
            "PC",
            "--serial",
            "SCLIX",
            "--username",
            "cpe-CLIX",
            "--password-stdin",
            "--tag",
            "lab",
        ],
        Some("cpe-password\n"),
    );
    let dev = "00AA00-PC-SCLIX";
    let out = cli(&app, &["task", "create", dev, r#"{"rpc":"Reboot"}"#], None);
    let task_id = out.split_whitespace().nth(2).unwrap().to_string();
    cli(&app, &["task", "cancel", &task_id], None);
    cli(&app, &["device", "reset-credentials", dev], None);
    let csv = scratch.path().join("cli.csv");
    std::fs::write(
        &csv,
        format!(
            "device_id,line,sip_user,password,registrar\n{dev},1,bob,pw-secret,sip.example.net\n"
        ),
    )
    .unwrap();
    cli(&app, &["line", "import", csv.to_str().unwrap()], None);
    let preset = scratch.path().join("preset.json");
    let body = |name: &str, priority: i32| {
        json!({"name": name, "filter": "tag = lab", "priority": priority,
               "values": [{"name": "Device.ManagementServer.PeriodicInformInterval", "value": "600"}]})
    };
    std::fs::write(&preset, body("p-CLIX", 1).to_string()).unwrap();
    cli(&app, &["preset", "put", preset.to_str().unwrap()], None);
    std::fs::write(&preset, body("p-CLIX", 2).to_string()).unwrap();
    cli(&app, &["preset", "put", preset.to_str().unwrap()], None);
    cli(&app, &["preset", "delete", "p-CLIX"], None);
    cli(&app, &["device", "delete", dev], None);
    let by_cli = audit_since(&app, start).await;

    // ---- through the API (marker APIX)
    let a = "APIX";
    let start = last_audit_id(&app).await;
    let call = |method: Method, path: String, body: Option<serde_json::Value>| {
        let api = api.clone();
        async move {
            let (s, v) = api.call(method, &path, body).await;
            assert!((200..300).contains(&s), "{path}: {s} {v}");
            v
        }
    };
    let v = call(
        Method::POST,
        "/api/v1/tokens".into(),
        Some(json!({"name": "oss-APIX", "role": "operator"})),
    )
    .await;
    call(Method::DELETE, format!("/api/v1/tokens/{}", v["id"]), None).await;
    call(
        Method::POST,
        "/api/v1/users".into(),
        Some(json!({"username": "alice-APIX", "role": "viewer", "password": "correct horse"})),
    )
    .await;
    call(
        Method::PUT,
        "/api/v1/users/alice-APIX/password".into(),
        Some(json!({"password": "battery staple"})),
    )
    .await;
    call(Method::DELETE, "/api/v1/users/alice-APIX".into(), None).await;
    let dev = "00AA00-PC-SAPIX";
    call(
        Method::PUT,
        format!("/api/v1/devices/{dev}"),
        Some(
            json!({"oui": "00AA00", "product_class": "PC", "serial_number": "SAPIX",
                    "cwmp_username": "cpe-APIX", "cwmp_password": "cpe-password", "tags": ["lab"]}),
        ),
    )
    .await;
    let t = call(
        Method::POST,
        format!("/api/v1/devices/{dev}/tasks"),
        Some(json!({"rpc": "Reboot"})),
    )
    .await;
    call(Method::DELETE, format!("/api/v1/tasks/{}", t["id"]), None).await;
    call(
        Method::DELETE,
        format!("/api/v1/devices/{dev}/credentials"),
        None,
    )
    .await;
    let res = api
        .http
        .post(format!("{}/api/v1/lines/import", api.base))
        .bearer_auth(&api.token)
        .header("content-type", "text/csv")
        .body(format!(
            "device_id,line,sip_user,password,registrar\n{dev},1,bob,pw-secret,sip.example.net\n"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    call(
        Method::POST,
        "/api/v1/presets".into(),
        Some(body("p-APIX", 1)),
    )
    .await;
    call(
        Method::PUT,
        "/api/v1/presets/p-APIX".into(),
        Some(body("p-APIX", 2)),
    )
    .await;
    call(Method::DELETE, "/api/v1/presets/p-APIX".into(), None).await;
    call(Method::DELETE, format!("/api/v1/devices/{dev}"), None).await;
    let by_api = audit_since(&app, start).await;

    let actions: Vec<&str> = by_cli.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        actions,
        [
            "token.create",
            "token.revoke",
            "user.create",
            "user.password",
            "user.delete",
            "device.provision",
            "task.create",
            "task.cancel",
            "device.credentials_reset",
            "line.import",
            "preset.create",
            "preset.update",
            "preset.delete",
            "device.delete",
        ]
    );
    assert_eq!(by_cli.len(), by_api.len(), "{by_cli:#?}\n{by_api:#?}");
    for (c, p) in by_cli.iter().zip(&by_api) {
        assert_eq!(c.0, "cli");
        assert_eq!(p.0, "token:test-admin");
        assert_eq!(c.1, p.1, "action");
        assert_eq!(shape(&c.2, m), shape(&p.2, a), "target of {}", c.1);
        assert_eq!(shape(&c.3, m), shape(&p.3, a), "detail of {}", c.1);
        assert!(!c.3.contains("password") || c.1 == "line.import", "{c:?}");
        assert!(!c.3.contains("pw-secret") && !p.3.contains("pw-secret"));
    }
    // The vocabulary: `noun/ID` targets.
    let targets: Vec<String> = by_api.iter().map(|e| shape(&e.2, a)).collect();
    assert_eq!(
        targets,
        [
            "token/#",
            "token/#",
            "user/alice-<M>",
            "user/alice-<M>",
            "user/alice-<M>",
            "device/#AA#-PC-S<M>",
            "task/#",
            "task/#",
            "device/#AA#-PC-S<M>",
            "lines",
            "preset/p-<M>",
            "preset/p-<M>",
            "preset/p-<M>",
            "device/#AA#-PC-S<M>",
        ]
    );
}

/// A task read back with GET shows what the POST showed: the connection request.
/// A Download that ended in fault no longer shows what it was waiting for, and faults of
/// RPCs other than SetParameterValues carry no per-parameter list.
async fn task_views_are_consistent(b: Backend) {
    let app = TestApp::spawn(b, |c| c.api.connection_request_min_interval_ms = 0).await;
    let api = Api::new(&app, "operator").await;
    let (mut dev, mut cr, id) = crate::api::online_device(&app, "VIEW0001").await;

    dev.behavior.download_fault = Some(9016);
    let t = crate::api::run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "Download", "url": "http://127.0.0.1:9/fw.bin",
               "file_type": "1 Firmware Upgrade Image"}),
        1,
    )
    .await;
    assert_eq!(t["status"], "fault", "{t}");
    let got = api.get(&format!("/api/v1/tasks/{}", t["id"])).await;
    assert_eq!(got["fault"]["code"], 9016, "{got}");
    assert_eq!(got["result"], serde_json::Value::Null, "{got}");
    assert_eq!(got["connection_request"]["outcome"], "ok", "{got}");
    assert_eq!(got["connection_request"], t["connection_request"], "{got}");

    dev.faults.rpc_faults = vec![("GetRPCMethods".into(), 9000)];
    let t = crate::api::run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "GetRPCMethods"}),
        0,
    )
    .await;
    assert_eq!(t["status"], "fault", "{t}");
    assert_eq!(t["fault"]["code"], 9000, "{t}");
    assert!(t["fault"]["detail"].is_object(), "{t}");
    assert!(
        t["fault"]["detail"]
            .get("set_parameter_values_faults")
            .is_none(),
        "{t}"
    );

    // A task created without a connection request shows none.
    let (s, t) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/tasks"),
            Some(json!({"rpc": "GetRPCMethods"})),
        )
        .await;
    assert_eq!(s, 202, "{t}");
    let got = api.get(&format!("/api/v1/tasks/{}", t["id"])).await;
    assert!(got.get("connection_request").is_some(), "{got}");
    assert_eq!(got["connection_request"], serde_json::Value::Null, "{got}");
}

/// `done` means readable: once a task that read a value is done, `/parameters` shows the
/// value, even while the session that ran it goes on.
async fn a_done_task_has_its_values_readable(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let api = Api::new(&app, "operator").await;
    let (mut dev, _cr, id) = crate::api::online_device(&app, "READ0001").await;
    let name = dev.ms("PeriodicInformInterval");
    dev.set_value(&name, "4321");
    let (s, read) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/tasks"),
            Some(json!({"rpc": "GetParameterValues", "names": [name]})),
        )
        .await;
    assert_eq!(s, 202, "{read}");
    let (s, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/tasks"),
            Some(json!({"rpc": "GetRPCMethods"})),
        )
        .await;
    assert_eq!(s, 202);

    // Drive the session by hand and stop after answering the read.
    let events = dev.inform_events(&[("2 PERIODIC", "")]);
    let inform = dev.inform_envelope(&events, "1");
    let mut c = dev.http_client(&app.cwmp_url()).unwrap();
    assert_eq!(c.post_soap(&inform).await.unwrap().status, 200);
    let req = c.post_empty().await.unwrap();
    assert!(
        req.body_text().contains("GetParameterValues"),
        "{}",
        req.body_text()
    );
    let reply = dev.respond_to(&req.body_text()).unwrap();
    let next = c.post_soap(&reply.xml).await.unwrap();
    assert!(
        next.body_text().contains("GetRPCMethods"),
        "{}",
        next.body_text()
    );

    // The session is still open; the task is done and its value readable.
    let t = api.get(&format!("/api/v1/tasks/{}", read["id"])).await;
    assert_eq!(t["status"], "done", "{t}");
    let p = api
        .get(&format!("/api/v1/devices/{id}/parameters?prefix={name}"))
        .await;
    assert_eq!(p["items"][0]["value"], "4321", "{p}");

    let reply = dev.respond_to(&next.body_text()).unwrap();
    let end = c.post_soap(&reply.xml).await.unwrap();
    assert_eq!(end.status, 204, "{}", end.body_text());
}

battery!(
    cli_and_api_write_the_same_audit_entries,
    task_views_are_consistent,
    a_done_task_has_its_values_readable,
);
