//! The web console in a real browser (headless Chromium through WebDriver) against the real
//! server and simulated CPEs, plus the attacks a browser does not try by itself (forged
//! POSTs, missing CSRF tokens, a viewer calling operator actions), over plain HTTP.
//! Screenshots of every page land in `target/console-screenshots/`.

use std::time::Duration;

use crate::api::online_device;
use crate::battery;
use crate::support::browser::Browser;
use crate::support::{Backend, TestApp};

const PASSWORD: &str = "correct horse battery";

async fn add_user(app: &TestApp, name: &str, role: &str) {
    let (store, name, role) = (app.store(), name.to_string(), role.to_string());
    tokio::task::spawn_blocking(move || {
        let hash = ferroacs::auth::password::hash_password(PASSWORD).unwrap();
        store.insert_user(&name, &hash, &role, 1).unwrap();
    })
    .await
    .unwrap();
}

fn console_config(c: &mut ferroacs::config::Config) {
    c.api.connection_request_min_interval_ms = 0;
    c.console.login_max_failures = 3;
}

async fn login(b: &Browser, app: &TestApp, user: &str, password: &str) {
    b.goto(&app.api_url("/login")).await;
    b.type_into("#username", user).await;
    b.type_into("#password", password).await;
    b.click_css("button#login").await;
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

/// Log in, find a device with a query, open it, change a writable parameter and watch the
/// simulated CPE receive it and the page show it; a value the data model refuses is shown
/// next to the field.
async fn login_search_open_and_edit(backend: Backend) {
    let app = TestApp::spawn(backend, console_config).await;
    add_user(&app, "alice", "admin").await;
    let (mut dev, mut cr, id) = online_device(&app, "CONSOLE1").await;
    let (_other, _cr2, _) = online_device(&app, "OTHER2").await;
    let b = Browser::start(&format!("edit-{}", backend_name(backend))).await;

    // Not logged in: every page leads to the login form.
    b.goto(&app.api_url("/devices")).await;
    b.find("#username").await;
    assert!(b.url().await.contains("/login?next="), "{}", b.url().await);
    b.screenshot("login").await;

    b.type_into("#username", "alice").await;
    b.type_into("#password", PASSWORD).await;
    b.click_css("button#login").await;
    // Back where we wanted to go, logged in.
    b.find("table#devices").await;
    b.goto(&app.api_url("/")).await;
    let counts = b.wait_text("#device-counts", "Devices").await;
    assert!(counts.contains('2'), "{counts}");
    b.find("svg.chart").await;
    b.screenshot("overview").await;

    // A query with a syntax error is explained at its position.
    b.goto(&app.api_url("/devices")).await;
    b.type_into("#q", "serial = CONSOLE1 AND (tag = x").await;
    b.click_css("#search").await;
    let err = b.wait_text("#q-error", "Query error").await;
    assert!(err.contains("missing `)`"), "{err}");
    assert!(err.contains("at character"), "{err}");
    b.screenshot("query-error").await;

    b.type_into("#q", "serial = CONSOLE1").await;
    b.click_css("#search").await;
    b.wait_text("#total", "1 device").await;
    let rows = b.find_all("table#devices tbody tr").await;
    assert_eq!(rows.len(), 1);
    b.screenshot("devices").await;

    // Open the device and walk the tree to DeviceInfo.
    b.click_css("table#devices tbody a").await;
    b.wait_text("h1", &id).await;
    b.click_css("#p-Device_ > button").await;
    b.click_css("#p-Device_DeviceInfo_ > button").await;
    let input_css = "#p-Device_DeviceInfo_ProvisioningCode-v";
    b.find(input_css).await;

    // A value the data model refuses: the error is next to the field, nothing is queued.
    b.click_css("#p-Device_ManagementServer_ > button").await;
    b.type_into(
        "#p-Device_ManagementServer_PeriodicInformInterval-v",
        "soon",
    )
    .await;
    b.click_css("#p-Device_ManagementServer_PeriodicInformInterval-save")
        .await;
    let err = b
        .wait_text("#p-Device_ManagementServer_PeriodicInformInterval-err", "")
        .await;
    assert!(err.contains("soon"), "{err}");
    b.screenshot("param-refused").await;

    // An accepted value: task queued, connection request sent, the CPE runs its session.
    b.type_into(input_css, "console-edit").await;
    b.click_css("#p-Device_DeviceInfo_ProvisioningCode-save")
        .await;
    b.wait_text("#p-Device_DeviceInfo_ProvisioningCode-task", "task #")
        .await;
    cr.wait(Duration::from_secs(20))
        .await
        .expect("the console sent a connection request");
    let rep = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(
        dev.get("Device.DeviceInfo.ProvisioningCode"),
        Some("console-edit")
    );
    // The row stops showing the task and shows the value the device now has.
    let deadline = std::time::Instant::now() + crate::support::browser::WAIT;
    loop {
        let gone = b
            .try_find("#p-Device_DeviceInfo_ProvisioningCode-task")
            .await
            .is_none();
        let v = match b.try_find(input_css).await {
            Some(e) => b.value(&e).await,
            None => String::new(),
        };
        if gone && v == "console-edit" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page never showed the new value"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.wait_text("#device-tasks", "done").await;
    b.screenshot("device").await;

    // The audit log names the console user.
    b.goto(&app.api_url("/audit")).await;
    let audit = b.wait_text("table#audit", "console.login").await;
    assert!(audit.contains("user:alice"), "{audit}");
    assert!(audit.contains("task.create"), "{audit}");
    b.screenshot("audit").await;

    // Logout ends the session: the old cookie no longer opens a page.
    b.click_css("#logout").await;
    b.wait_text("body", "You are logged out").await;
    b.goto(&app.api_url("/devices")).await;
    b.find("#username").await;
}

/// Bulk reboot of 20 simulated devices: per-device progress until every task is done.
async fn bulk_reboot_shows_progress(backend: Backend) {
    let app = TestApp::spawn(backend, console_config).await;
    add_user(&app, "olga", "operator").await;
    let mut devices = Vec::new();
    for i in 0..20 {
        let (dev, cr, _) = online_device(&app, &format!("BULK{i:02}")).await;
        devices.push((dev, cr));
    }
    let b = Browser::start(&format!("bulk-{}", backend_name(backend))).await;
    login(&b, &app, "olga", PASSWORD).await;
    b.goto(&app.api_url("/devices?q=serial%20LIKE%20%22BULK*%22&limit=50"))
        .await;
    b.wait_text("#total", "20 device").await;
    b.click_css("input[data-select-all]").await;
    b.click_css("#bulk-reboot").await;
    let summary = b.wait_text("#bulk-summary", "0 of 20 finished").await;
    assert!(summary.contains("updating"), "{summary}");
    b.screenshot("bulk-queued").await;
    // Each device gets its connection request and reboots in its session.
    let mut sessions = Vec::new();
    for (mut dev, mut cr) in devices {
        let url = app.cwmp_url();
        sessions.push(tokio::spawn(async move {
            cr.wait(Duration::from_secs(30))
                .await
                .expect("connection request");
            let rep = dev
                .run_session(&url, &[("6 CONNECTION REQUEST", "")])
                .await
                .unwrap();
            assert!(rep.ended_cleanly(), "{rep:?}");
            // The reboot itself: the device comes back with M Reboot.
            let rep = dev.run_session(&url, &[("2 PERIODIC", "")]).await.unwrap();
            assert!(rep.ended_cleanly(), "{rep:?}");
        }));
    }
    for s in sessions {
        s.await.unwrap();
    }
    let done = b.wait_text("#bulk-summary", "20 of 20 finished").await;
    assert!(done.contains("all finished"), "{done}");
    let statuses = b.find_all("#bulk-progress .status.done").await;
    assert_eq!(statuses.len(), 20);
    b.screenshot("bulk-done").await;
}

/// Upload a file with a progress bar, push it to a device from the device list and watch
/// the task finish; import a CSV of lines with one bad row and read the report.
async fn upload_push_and_import_lines(backend: Backend) {
    let app = TestApp::spawn(backend, console_config).await;
    add_user(&app, "olga", "operator").await;
    let (mut dev, mut cr, id) = online_device(&app, "XFRC001").await;
    let firmware: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fw-console.bin");
    std::fs::write(&path, &firmware).unwrap();

    let b = Browser::start(&format!("files-{}", backend_name(backend))).await;
    login(&b, &app, "olga", PASSWORD).await;
    b.goto(&app.api_url("/files")).await;
    let input = b.find("#file").await;
    b.send_keys(&input, &path.display().to_string()).await;
    b.type_into("#version", "2.0").await;
    b.click_css("#upload").await;
    b.wait_text("#upload-status", "Uploaded: 100 %").await;
    let full = b
        .exec(
            "var p = document.getElementById('upload-progress'); return p.value === p.max && p.max > 0;",
            vec![],
        )
        .await;
    assert_eq!(full, serde_json::Value::Bool(true));
    let list = b.wait_text("#file-list", "fw-console.bin").await;
    use sha2::Digest;
    assert!(
        list.contains(&hex::encode(sha2::Sha256::digest(&firmware))),
        "{list}"
    );
    b.screenshot("files").await;

    // Push it from the device list.
    b.goto(&app.api_url("/devices?q=serial%20%3D%20XFRC001"))
        .await;
    b.wait_text("#total", "1 device").await;
    b.click_css("input[name=ids]").await;
    b.click_css("#file_id option:nth-child(2)").await;
    b.click_css("button[value=push]").await;
    b.wait_text("#bulk-summary", "0 of 1 finished").await;
    cr.wait(Duration::from_secs(20))
        .await
        .expect("connection request");
    let rep = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(dev.state.downloads.last().unwrap().bytes, firmware);
    b.wait_text("#bulk-summary", "1 of 1 finished").await;
    b.wait_text("#bulk-progress", "done").await;
    b.screenshot("push-done").await;

    // Lines: a dry run reports the bad row by line and field and stores nothing.
    b.goto(&app.api_url("/lines")).await;
    let csv = format!(
        "device_id,line,password,sip_user,registrar,registrar_port\n\
         {id},1,pw-one-1,alice,sip.example.net,5060\n\
         {id},2,pw-two-2,bob,sip.example.net,abc\n"
    );
    b.type_into("#csv", &csv).await;
    b.click_css("#import").await;
    let summary = b.wait_text("#report-summary", "rejected").await;
    assert!(
        summary.contains("1 row(s) would be imported, 1 rejected"),
        "{summary}"
    );
    let errors = b.wait_text("#report-errors", "registrar_port").await;
    assert!(errors.contains('3'), "the bad row is CSV line 3: {errors}");
    b.screenshot("lines-dry-run").await;
    let store = app.store();
    let n = tokio::task::spawn_blocking({
        let store = store.clone();
        move || store.count_lines().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(n, 0, "a dry run stored lines");
    b.click_css("#dry-run").await;
    b.click_css("#import").await;
    b.wait_text("#report-summary", "1 row(s) imported").await;
    let n = tokio::task::spawn_blocking(move || store.count_lines().unwrap())
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// A raw HTTP client that keeps the session cookie by hand.
struct Raw {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Raw {
    async fn login(app: &TestApp, user: &str, password: &str) -> (u16, Raw) {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let body =
            serde_urlencoded::to_string([("username", user), ("password", password)]).unwrap();
        let res = http
            .post(app.api_url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let cookie = res
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("ferroacs_session="))
            .unwrap_or("")
            .to_string();
        if status == 303 {
            let c = cookie.to_ascii_lowercase();
            assert!(c.contains("httponly"), "{cookie}");
            assert!(c.contains("samesite=strict"), "{cookie}");
        }
        let cookie = cookie.split(';').next().unwrap_or("").to_string();
        (
            status,
            Raw {
                http,
                base: format!("http://{}", app.api_addr()),
                cookie,
            },
        )
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        let s = res.status().as_u16();
        (s, res.text().await.unwrap())
    }

    /// The CSRF token of the session, as the page's meta tag carries it.
    async fn csrf(&self) -> String {
        let (_, page) = self.get("/").await;
        let start = page.find("name=\"csrf-token\" content=\"").unwrap() + 27;
        page[start..start + 43].to_string()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)], csrf_header: Option<&str>) -> u16 {
        let mut rb = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap());
        if let Some(t) = csrf_header {
            rb = rb.header("x-csrf-token", t);
        }
        rb.send().await.unwrap().status().as_u16()
    }
}

/// What an attacker tries first: no CSRF token, a wrong one, a viewer calling an operator
/// action, a stolen cookie after logout, guessing passwords.
async fn console_refuses_forged_requests(backend: Backend) {
    let app = TestApp::spawn(backend, console_config).await;
    add_user(&app, "vera", "viewer").await;
    add_user(&app, "otto", "operator").await;
    let (_dev, _cr, id) = online_device(&app, "SEC1").await;
    let dev_path = format!("/devices/{id}/connection_request");

    // Security headers on pages and on the login form.
    let res = reqwest::get(app.api_url("/login")).await.unwrap();
    let csp = res
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    let login_page = res.text().await.unwrap();
    assert!(!login_page.contains("style="), "no inline style");
    assert!(!login_page.contains("<script>"), "no inline script");

    // The operator without a CSRF token, or with a wrong one: 403, nothing happens.
    let (s, otto) = Raw::login(&app, "otto", PASSWORD).await;
    assert_eq!(s, 303);
    assert_eq!(
        otto.post("/devices/bulk", &[("action", "reboot"), ("ids", &id)], None)
            .await,
        403
    );
    assert_eq!(
        otto.post(
            "/devices/bulk",
            &[("action", "reboot"), ("ids", &id), ("_csrf", "forged")],
            None
        )
        .await,
        403
    );
    assert_eq!(
        otto.post(&dev_path, &[], Some("x".repeat(43).as_str()))
            .await,
        403
    );
    let store = app.store();
    let tasks = tokio::task::spawn_blocking({
        let (store, id) = (store.clone(), id.clone());
        move || store.find_tasks(Some(&id), None, None, 10).unwrap()
    })
    .await
    .unwrap();
    assert!(tasks.is_empty(), "a forged request queued {tasks:?}");
    // With the token (header or form field) it works.
    let csrf = otto.csrf().await;
    assert_eq!(
        otto.post(
            "/devices/bulk",
            &[("action", "reboot"), ("ids", &id), ("_csrf", &csrf)],
            None
        )
        .await,
        200
    );

    // The viewer: pages open, operator actions are refused even with a valid token.
    let (_, vera) = Raw::login(&app, "vera", PASSWORD).await;
    let (s, page) = vera.get(&format!("/devices/{id}")).await;
    assert_eq!(s, 200);
    assert!(
        !page.contains("connection_request\" hx-post"),
        "viewer sees an action"
    );
    let vcsrf = vera.csrf().await;
    assert_ne!(vcsrf, csrf, "CSRF tokens are per session");
    assert_eq!(vera.post(&dev_path, &[], Some(&vcsrf)).await, 403);
    assert_eq!(
        vera.post(
            "/devices/bulk",
            &[("action", "delete"), ("ids", &id), ("confirmed", "1")],
            Some(&vcsrf)
        )
        .await,
        403
    );
    // Another session's token does not work either.
    assert_eq!(vera.post("/logout", &[], Some(&csrf)).await, 403);
    let (s, _) = vera.get("/audit").await;
    assert_eq!(s, 403, "the audit log is for admins");
    // The viewer's browser shows no action buttons.
    let b = Browser::start(&format!("viewer-{}", backend_name(backend))).await;
    login(&b, &app, "vera", PASSWORD).await;
    b.goto(&app.api_url("/devices")).await;
    b.find("table#devices").await;
    assert!(b.try_find("#bulk-actions").await.is_none());
    assert!(b.try_find("input[name=ids]").await.is_none());
    b.goto(&app.api_url(&format!("/devices/{id}"))).await;
    b.find("#tree-root ul").await;
    assert!(b.try_find("#connreq").await.is_none());
    b.click_css("#p-Device_ > button").await;
    b.click_css("#p-Device_DeviceInfo_ > button").await;
    b.find("#p-Device_DeviceInfo_ProvisioningCode-value").await;
    assert!(
        b.try_find("form.edit").await.is_none(),
        "viewer sees an edit form"
    );
    b.screenshot("viewer-device").await;

    // Logout ends the session on the server: the old cookie is refused afterwards.
    assert_eq!(vera.post("/logout", &[], Some(&vcsrf)).await, 303);
    let (s, _) = vera.get("/devices").await;
    assert_eq!(s, 303, "a logged-out cookie still opens pages");
    assert_eq!(vera.post(&dev_path, &[], Some(&vcsrf)).await, 401);

    // Wrong passwords are refused, then the source is blocked (even for the right one).
    for _ in 0..2 {
        let (s, _) = Raw::login(&app, "otto", "wrong password").await;
        assert_eq!(s, 401);
    }
    let (s, _) = Raw::login(&app, "otto", "wrong password").await;
    assert_eq!(s, 429);
    let (s, _) = Raw::login(&app, "otto", PASSWORD).await;
    assert_eq!(s, 429, "a blocked source must not log in");
    // An unknown user is refused like a wrong password.
    let (s, _) = Raw::login(&app, "nobody", PASSWORD).await;
    assert_eq!(s, 429);
}

battery!(
    login_search_open_and_edit,
    bulk_reboot_shows_progress,
    console_refuses_forged_requests,
    upload_push_and_import_lines,
);
