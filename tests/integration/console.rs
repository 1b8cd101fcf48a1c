//! The web console in a real browser (headless Chromium through WebDriver) against the real
//! server and simulated CPEs, plus the attacks a browser does not try by itself (forged
//! POSTs, missing CSRF tokens, a viewer calling operator actions), over plain HTTP.
//! Screenshots of every page land in `target/console-screenshots/`.

use std::time::Duration;

use crate::api::online_device;
use crate::battery;
use crate::support::browser::Browser;
use crate::support::{Backend, TestApp};

pub(crate) const PASSWORD: &str = "correct horse battery";

pub(crate) async fn add_user(app: &TestApp, name: &str, role: &str) {
    let (store, name, role) = (app.store(), name.to_string(), role.to_string());
    tokio::task::spawn_blocking(move || {
        let hash = ferroacs::auth::password::hash_password(PASSWORD).unwrap();
        store.insert_user(&name, &hash, &role, 1).unwrap();
    })
    .await
    .unwrap();
}

pub(crate) fn console_config(c: &mut ferroacs::config::Config) {
    c.api.connection_request_min_interval_ms = 0;
    c.console.login_max_failures = 3;
}

pub(crate) async fn login(b: &Browser, app: &TestApp, user: &str, password: &str) {
    b.goto(&app.api_url("/login")).await;
    b.type_into("#username", user).await;
    b.type_into("#password", password).await;
    b.click_css("button#login").await;
    // The form's navigation must be over before the caller navigates: a `goto` racing it
    // ends on the page the login redirects to.
    crate::support::wait_until(
        crate::support::browser::WAIT,
        "the login to finish",
        || async {
            let url = b.url().await;
            if url.contains("/login") {
                Err(url)
            } else {
                Ok(())
            }
        },
    )
    .await;
}

pub(crate) fn backend_name(backend: Backend) -> &'static str {
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
    crate::support::wait_until(
        crate::support::browser::WAIT,
        "the page shows the new value",
        || async {
            let gone = b
                .try_find("#p-Device_DeviceInfo_ProvisioningCode-task")
                .await
                .is_none();
            let v = match b.try_find(input_css).await {
                Some(e) => b.value(&e).await,
                None => String::new(),
            };
            if gone && v == "console-edit" {
                Ok(())
            } else {
                Err((gone, v))
            }
        },
    )
    .await;
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
pub(crate) struct Raw {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Raw {
    pub(crate) async fn login(app: &TestApp, user: &str, password: &str) -> (u16, Raw) {
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

    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
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
    pub(crate) async fn csrf(&self) -> String {
        let (_, page) = self.get("/").await;
        let start = page.find("name=\"csrf-token\" content=\"").unwrap() + 27;
        page[start..start + 43].to_string()
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        csrf_header: Option<&str>,
    ) -> u16 {
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

    /// A form post with the session's CSRF token: (status, page).
    pub(crate) async fn post_page(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let csrf = self.csrf().await;
        let mut form = form.to_vec();
        form.push(("_csrf", &csrf));
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&form).unwrap())
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.text().await.unwrap_or_default())
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

/// Tags in bulk and on the device page, sorting and saved searches, CWMP credentials and a
/// VoIP line edited on the device page, a preset with its live match count, faults filtered
/// and cleared, users and tokens, the audit log filtered.
async fn tags_searches_device_edits_presets_faults_users(backend: Backend) {
    let app = TestApp::spawn(backend, console_config).await;
    add_user(&app, "olga", "operator").await;
    add_user(&app, "ada", "admin").await;
    let mut ids = Vec::new();
    let mut keep = Vec::new();
    for i in 1..=3 {
        let (dev, cr, id) = online_device(&app, &format!("TAGS{i}")).await;
        keep.push((dev, cr));
        ids.push(id);
    }
    let store = app.store();
    let b = Browser::start(&format!("manage-{}", backend_name(backend))).await;
    login(&b, &app, "olga", PASSWORD).await;

    // Tag every device the query matches, in bulk.
    b.goto(&app.api_url("/devices?q=serial%20LIKE%20%22TAGS*%22"))
        .await;
    b.wait_text("#total", "3 device").await;
    b.click_css("input[name=scope][value=query]").await;
    b.type_into("#bulk-tag", "lab").await;
    b.click_css("#bulk-tag-add").await;
    let progress = b.wait_text("#bulk-progress", "tagged: lab").await;
    assert_eq!(progress.matches("tagged: lab").count(), 3, "{progress}");
    b.screenshot("bulk-tag").await;

    // Sorted by serial number, descending: the header says so (not by colour alone).
    b.goto(&app.api_url("/devices?q=tag%20%3D%20lab&col=serial&col=tags&sort=serial&order=desc"))
        .await;
    b.wait_text("#total", "3 device").await;
    let first = b.text(&b.find("table#devices tbody tr").await).await;
    assert!(first.contains("TAGS3"), "{first}");
    b.find("th[aria-sort=descending]").await;
    b.wait_text("#total", "Ordered by serial number").await;
    // Saved under a name, for this user; opening it runs the same search.
    b.type_into("#search-name", "lab devices").await;
    b.click_css("#save-search").await;
    b.wait_text("#saved-searches", "lab devices").await;
    b.goto(&app.api_url("/devices")).await;
    b.click_css("#saved-searches a").await;
    b.wait_text("#total", "3 device").await;
    assert!(b.url().await.contains("sort=serial"), "{}", b.url().await);
    b.screenshot("devices-saved-search").await;

    // The device page: a tag added and one removed.
    let one = ids[0].clone();
    b.goto(&app.api_url(&format!("/devices/{one}"))).await;
    b.wait_text("#tags-card", "lab").await;
    b.type_into("#new-tag", "vip").await;
    b.click_css("#add-tag").await;
    b.wait_text("#tag-list", "vip").await;
    b.click_css("button[aria-label='Remove the tag lab']").await;
    crate::support::wait_until(
        crate::support::browser::WAIT,
        "the tag lab removed from the page",
        || async {
            let text = b.text(&b.find("#tags-card").await).await;
            if text.contains("lab") {
                Err(text)
            } else {
                Ok(())
            }
        },
    )
    .await;
    let tags = tokio::task::spawn_blocking({
        let (store, one) = (store.clone(), one.clone());
        move || store.tags_of(&[one]).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(tags, vec![(one.clone(), "vip".to_string())]);

    // CWMP credentials: set, never shown again.
    b.type_into("#cwmp-username", "cpe-own").await;
    b.type_into("#cwmp-password", "s3cret-pass-word").await;
    b.click_css("#cred-set").await;
    b.wait_text("#cred-result", "Set for user cpe-own").await;
    b.wait_text("#cwmp-user", "cpe-own").await;
    assert!(!b.body_text().await.contains("s3cret-pass-word"));
    let dev = tokio::task::spawn_blocking({
        let (store, one) = (store.clone(), one.clone());
        move || store.get_device(&one).unwrap().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(dev.cwmp_username.as_deref(), Some("cpe-own"));

    // A VoIP line assigned on the page; its password is write-only.
    b.click_css("#line-1 summary").await;
    b.type_into("#line1-sip_user", "4930123").await;
    b.type_into("#line1-registrar", "sip.example.net").await;
    b.type_into("#line1-registrar_port", "5060").await;
    b.type_into("#line1-password", "line-pass-1").await;
    b.click_css("#line-1 input[name=connection_request]").await;
    b.click_css("#line-1-save").await;
    b.wait_text("#line-1-result", "Line 1 saved").await;
    // A port that is no number is refused next to the form.
    b.goto(&app.api_url(&format!("/devices/{one}"))).await;
    b.wait_text("#lines", "4930123").await;
    b.click_css("#line-1 summary").await;
    b.type_into("#line1-registrar_port", "five").await;
    b.click_css("#line-1-save").await;
    b.wait_text("#line-1-result", "registrar_port").await;
    assert!(!b.body_text().await.contains("line-pass-1"));
    b.screenshot("device-edits").await;

    // A preset: the filter's live count, then saved.
    b.goto(&app.api_url("/presets/new")).await;
    b.type_into("#preset-name", "periodic-lab").await;
    b.type_into("#preset-filter", "tag = vip OR serial = TAGS2")
        .await;
    b.wait_text("#preset-matches", "Matches 2 device").await;
    b.type_into("#preset-filter", "tag = (").await;
    b.wait_text("#preset-matches", "Filter error").await;
    b.type_into("#preset-filter", "serial LIKE \"TAGS*\"").await;
    b.wait_text("#preset-matches", "Matches 3 device").await;
    b.screenshot("presets").await;
    b.click_css("#save-preset").await;
    b.wait_text("#preset-notice", "Preset periodic-lab created")
        .await;
    b.wait_text("table#presets", "periodic-lab").await;

    // Faults: filtered by code and time, then cleared.
    let now = app.state().now();
    tokio::task::spawn_blocking({
        let (store, ids) = (store.clone(), ids.clone());
        move || {
            for (i, code) in [(0, 9002), (1, 9002), (2, 9005)] {
                store
                    .insert_fault(&ferroacs::store::faults::NewFault {
                        device_id: ids[i].clone(),
                        task_id: None,
                        code,
                        message: format!("fault {code}"),
                        detail: None,
                        created_at: now,
                    })
                    .unwrap();
            }
        }
    })
    .await
    .unwrap();
    b.goto(&app.api_url("/faults")).await;
    b.type_into("#code", "9002").await;
    b.click_css("#fault-search").await;
    let list = b.wait_text("table#faults", "9002").await;
    assert!(!list.contains("9005"), "{list}");
    assert_eq!(b.find_all("table#faults tbody tr").await.len(), 2);
    b.goto(&app.api_url("/faults?code=9002&since=2001-01-01T00:00&until=2001-01-02T00:00"))
        .await;
    b.find("#no-faults").await;
    b.goto(&app.api_url("/faults?code=9002")).await;
    b.screenshot("faults").await;
    b.click_css("#clear-faults").await;
    b.wait_text("#fault-notice", "2 fault(s) cleared").await;
    b.goto(&app.api_url("/faults")).await;
    let left = b.wait_text("table#faults", "9005").await;
    assert!(!left.contains("9002"), "{left}");

    // Users and tokens, as an admin; the token is shown once.
    let a = Browser::start(&format!("admin-{}", backend_name(backend))).await;
    login(&a, &app, "ada", PASSWORD).await;
    a.goto(&app.api_url("/users")).await;
    a.type_into("#new-username", "neo").await;
    a.type_into("#new-password", "a long password").await;
    a.click_css("#new-role option:nth-child(2)").await;
    a.click_css("#create-user").await;
    a.wait_text("#users-notice", "User neo created with the operator role")
        .await;
    // Disabled, neo cannot log in; enabled again, with the same password.
    let (s, neo) = Raw::login(&app, "neo", "a long password").await;
    assert_eq!(s, 303);
    a.click_css("button[aria-label='Disable neo']").await;
    a.wait_text("#users-notice", "User neo disabled").await;
    a.wait_text("table#users", "disabled").await;
    let (s, _) = neo.get("/devices").await;
    assert_eq!(s, 303, "a disabled user's session still opens pages");
    let (s, _) = Raw::login(&app, "neo", "a long password").await;
    assert_eq!(s, 401);
    a.click_css("button[aria-label='Enable neo']").await;
    a.wait_text("#users-notice", "User neo enabled").await;
    let (s, _) = Raw::login(&app, "neo", "a long password").await;
    assert_eq!(s, 303);
    a.type_into("#token-name", "ci").await;
    a.click_css("#create-token").await;
    let secret = a.value(&a.find("#token-value").await).await;
    assert!(secret.len() > 30, "{secret}");
    a.screenshot("users").await;
    let api = crate::api::Api {
        base: format!("http://{}", app.api_addr()),
        token: secret.clone(),
        http: app.http(),
    };
    let (s, _) = api
        .call(reqwest::Method::GET, "/api/v1/devices", None)
        .await;
    assert_eq!(s, 200, "the new token works");
    a.goto(&app.api_url("/users")).await;
    assert!(
        !a.body_text().await.contains(&secret),
        "a token shown twice"
    );
    a.click_css("button[aria-label='Revoke the token ci']")
        .await;
    a.wait_text("#users-notice", "revoked").await;
    let (s, _) = api
        .call(reqwest::Method::GET, "/api/v1/devices", None)
        .await;
    assert_eq!(s, 401, "a revoked token works");
    // The audit log filtered by action and actor.
    a.goto(&app.api_url("/audit?action=token.&actor=ada")).await;
    let audit = a.wait_text("table#audit", "token.revoke").await;
    assert!(audit.contains("token.create"), "{audit}");
    assert!(!audit.contains("user.create"), "{audit}");
    a.screenshot("audit-filtered").await;
}

/// Every new action refuses a viewer (403, even with the token), an operator where it is
/// admin-only, and anyone without the CSRF token; the viewer's pages show no action.
async fn new_actions_check_role_and_csrf(backend: Backend) {
    let app = TestApp::spawn(backend, console_config).await;
    add_user(&app, "vera", "viewer").await;
    add_user(&app, "otto", "operator").await;
    let (_dev, _cr, id) = online_device(&app, "ROLE1").await;
    let (_, vera) = Raw::login(&app, "vera", PASSWORD).await;
    let (_, otto) = Raw::login(&app, "otto", PASSWORD).await;
    let (vcsrf, ocsrf) = (vera.csrf().await, otto.csrf().await);
    let operator_actions: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/devices/bulk".into(),
            vec![("action", "tag"), ("ids", &id), ("tag", "x")],
        ),
        (
            "/devices/bulk".into(),
            vec![("action", "untag"), ("ids", &id), ("tag", "x")],
        ),
        (
            format!("/devices/{id}/tags"),
            vec![("op", "add"), ("tag", "x")],
        ),
        (
            format!("/devices/{id}/credentials"),
            vec![("username", "u"), ("password", "password1")],
        ),
        (
            format!("/devices/{id}/lines/1"),
            vec![("sip_user", "1"), ("registrar", "r")],
        ),
        ("/faults/clear".into(), vec![]),
        ("/presets/save".into(), vec![("name", "p"), ("spec", "{}")]),
        ("/presets/p/delete".into(), vec![]),
    ];
    let admin_actions: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/users/create".into(),
            vec![
                ("username", "x"),
                ("password", "a long password"),
                ("role", "admin"),
            ],
        ),
        (
            "/users/otto/password".into(),
            vec![("password", "a long password")],
        ),
        ("/users/otto/delete".into(), vec![]),
        ("/users/otto/disable".into(), vec![]),
        ("/users/otto/enable".into(), vec![]),
        (
            "/tokens/create".into(),
            vec![("name", "t"), ("role", "admin")],
        ),
        ("/tokens/1/revoke".into(), vec![]),
    ];
    for (path, form) in operator_actions.iter().chain(admin_actions.iter()) {
        assert_eq!(
            vera.post(path, form, Some(&vcsrf)).await,
            403,
            "viewer: {path}"
        );
        assert_eq!(
            otto.post(path, form, None).await,
            403,
            "no CSRF token: {path}"
        );
    }
    for (path, form) in &admin_actions {
        assert_eq!(
            otto.post(path, form, Some(&ocsrf)).await,
            403,
            "operator: {path}"
        );
    }
    let (s, _) = otto.get("/users").await;
    assert_eq!(s, 403, "users are for admins");
    // Nothing happened.
    let store = app.store();
    let (tags, users, presets, audit) = tokio::task::spawn_blocking({
        let (store, id) = (store.clone(), id.clone());
        move || {
            (
                store.tags_of(&[id]).unwrap(),
                store.list_users().unwrap().len(),
                store.list_presets().unwrap().len(),
                store.list_audit(None, 100).unwrap(),
            )
        }
    })
    .await
    .unwrap();
    assert!(tags.is_empty(), "{tags:?}");
    assert_eq!(users, 2);
    assert_eq!(presets, 0);
    assert!(
        audit.iter().all(|e| e.action.starts_with("console.")),
        "{audit:?}"
    );
    // Saved searches are every user's own, viewers included, and need the token too.
    assert_eq!(
        vera.post(
            "/devices/searches",
            &[("name", "mine"), ("query", "q=")],
            None
        )
        .await,
        403
    );
    assert_eq!(
        vera.post(
            "/devices/searches",
            &[("name", "mine"), ("query", "q=")],
            Some(&vcsrf)
        )
        .await,
        303
    );
    let (_, page) = vera.get("/devices").await;
    assert!(page.contains(">mine</a>"), "the viewer's search");
    let (_, page) = otto.get("/devices").await;
    assert!(!page.contains(">mine</a>"), "another user's search");
    // A saved search cannot smuggle another target.
    assert_eq!(
        vera.post(
            "/devices/searches",
            &[
                ("name", "evil"),
                ("query", "q=\r\nLocation: //evil.example")
            ],
            Some(&vcsrf)
        )
        .await,
        400
    );

    // The viewer's browser: no action on the new parts of the pages.
    let now = app.state().now();
    tokio::task::spawn_blocking({
        let (store, id) = (store.clone(), id.clone());
        move || {
            store
                .insert_fault(&ferroacs::store::faults::NewFault {
                    device_id: id,
                    task_id: None,
                    code: 9002,
                    message: "internal error".into(),
                    detail: None,
                    created_at: now,
                })
                .unwrap()
        }
    })
    .await
    .unwrap();
    let b = Browser::start(&format!("viewer-new-{}", backend_name(backend))).await;
    login(&b, &app, "vera", PASSWORD).await;
    b.goto(&app.api_url(&format!("/devices/{id}"))).await;
    b.find("#tags-card").await;
    for css in [
        "#add-tag",
        "#cred-set",
        "#cred-generate",
        ".line-edit",
        "#line-1-save",
    ] {
        assert!(b.try_find(css).await.is_none(), "viewer sees {css}");
    }
    b.goto(&app.api_url("/presets")).await;
    b.find("#no-presets").await;
    assert!(b.try_find("#new-preset").await.is_none());
    b.goto(&app.api_url("/faults")).await;
    b.wait_text("table#faults", "9002").await;
    assert!(b.try_find("#clear-faults").await.is_none());
    assert!(b.try_find("nav.main a[href='/users']").await.is_none());
}

/// What a page must hold for keyboard and screen-reader users: every visible input labelled,
/// ids unique (labels and aria references point at one element), every status with a word
/// (not colour alone), no positive tabindex (tab order follows the page) and nothing
/// clickable that the keyboard cannot reach (only links, buttons and form fields act).
pub(crate) const A11Y_AUDIT: &str = r#"
var bad = [];
document.querySelectorAll('input, select, textarea').forEach(function (e) {
  if (e.type === 'hidden') { return; }
  var named = (e.labels && e.labels.length > 0) || e.getAttribute('aria-label') ||
    e.getAttribute('aria-labelledby');
  if (!named) { bad.push('unlabelled: ' + e.outerHTML.slice(0, 120)); }
});
var seen = {};
document.querySelectorAll('[id]').forEach(function (e) {
  if (seen[e.id]) { bad.push('duplicate id: ' + e.id); }
  seen[e.id] = true;
});
document.querySelectorAll('.status').forEach(function (e) {
  if (!e.textContent.trim()) { bad.push('status without a word: ' + e.outerHTML.slice(0, 120)); }
});
document.querySelectorAll('[tabindex]').forEach(function (e) {
  if (parseInt(e.getAttribute('tabindex'), 10) > 0) { bad.push('positive tabindex: ' + e.outerHTML.slice(0, 120)); }
});
document.querySelectorAll('[hx-post], [hx-get]').forEach(function (e) {
  var t = e.getAttribute('hx-trigger') || '';
  var acts = /^(a|button|form|input|select|textarea)$/i.test(e.tagName);
  if (!acts && (t === '' || /click/.test(t))) { bad.push('acts on click only: ' + e.outerHTML.slice(0, 120)); }
});
return bad;
"#;

/// Every page of the console passes [`A11Y_AUDIT`], and a form can be used with the
/// keyboard alone (focus it, type, press Enter).
async fn every_page_is_labelled_and_keyboard_usable(backend: Backend) {
    let app = TestApp::spawn(backend, console_config).await;
    add_user(&app, "ada", "admin").await;
    let (_dev, _cr, id) = online_device(&app, "A11Y1").await;
    let b = Browser::start(&format!("a11y-{}", backend_name(backend))).await;
    login(&b, &app, "ada", PASSWORD).await;
    let pages = [
        "/".to_string(),
        "/devices".into(),
        "/devices?q=serial%20%3D%20(".into(),
        format!("/devices/{id}"),
        "/tasks".into(),
        "/faults".into(),
        "/files".into(),
        "/presets".into(),
        "/presets/new".into(),
        "/lines".into(),
        "/users".into(),
        "/audit".into(),
        "/account/password".into(),
    ];
    for page in &pages {
        b.goto(&app.api_url(page)).await;
        b.find("main h1").await;
        if page.starts_with("/devices/") {
            // The tree's first levels and a line form, as a user opens them.
            b.click_css("#p-Device_ > button").await;
            b.click_css("#p-Device_DeviceInfo_ > button").await;
            b.find("#p-Device_DeviceInfo_ProvisioningCode-v").await;
            b.click_css("#line-1 summary").await;
        }
        let bad = b.exec(A11Y_AUDIT, vec![]).await;
        assert_eq!(bad, serde_json::json!([]), "{page}");
    }
    // The keyboard alone: focus the query, type, Enter submits.
    b.goto(&app.api_url("/devices")).await;
    let q = b.find("#q").await;
    b.send_keys(&q, "serial = A11Y1\u{E007}").await;
    b.wait_text("#total", "1 device").await;
    b.screenshot("keyboard-search").await;
}

/// The audit log, oldest first.
async fn audit_log(app: &TestApp) -> Vec<ferroacs::store::audit::AuditRow> {
    let store = app.store();
    let mut rows = tokio::task::spawn_blocking(move || store.list_audit(None, 1000).unwrap())
        .await
        .unwrap();
    rows.reverse();
    rows
}

/// An audit entry without who wrote it and with the ids that differ between two devices
/// and two tasks replaced by placeholders.
fn normalised(e: &ferroacs::store::audit::AuditRow, ids: &[&str]) -> (String, String, String) {
    let norm = |s: &str| {
        let mut s = s.to_string();
        for id in ids {
            s = s.replace(id, "DEV");
        }
        without_task_ids(&s)
    };
    (
        e.action.clone(),
        norm(&e.target),
        norm(e.detail.as_deref().unwrap_or("")),
    )
}

/// Replace every run of digits after `task/` by `N` (task ids differ between two tasks).
fn without_task_ids(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("task/") {
        out.push_str(&rest[..i + 5]);
        rest = &rest[i + 5..];
        let n = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if n > 0 {
            out.push('N');
        }
        rest = &rest[n..];
    }
    out.push_str(rest);
    out
}

/// Every console action goes through the use case the API calls: the console action and
/// the same API call leave the same audit entry, but for the actor.
async fn console_and_api_leave_the_same_audit_entries(backend: Backend) {
    use reqwest::Method;
    let app = TestApp::spawn(backend, console_config).await;
    add_user(&app, "otto", "operator").await;
    let (_d1, _cr1, one) = online_device(&app, "AUDIT1").await;
    let (_d2, _cr2, two) = online_device(&app, "AUDIT2").await;
    let api = crate::api::Api::new(&app, "operator").await;
    let admin = crate::api::Api::new(&app, "admin").await;
    let (_, otto) = Raw::login(&app, "otto", PASSWORD).await;
    let csrf = otto.csrf().await;
    let ids = [one.as_str(), two.as_str()];

    // Each step: the console on device one, then the API on device two.
    let mut compared = 0;
    let mut check = |log: &[ferroacs::store::audit::AuditRow], what: &str| {
        let n = log.len();
        let (console, api_entry) = (&log[n - 2], &log[n - 1]);
        assert_eq!(console.actor, "user:otto", "{what}: {console:?}");
        assert!(
            api_entry.actor.starts_with("token:"),
            "{what}: {api_entry:?}"
        );
        assert_eq!(
            normalised(console, &ids),
            normalised(api_entry, &ids),
            "{what}: the console and the API wrote different entries"
        );
        compared += 1;
    };

    // A task.
    let form = [("rpc", "Reboot"), ("args", ""), ("_csrf", csrf.as_str())];
    assert_eq!(
        otto.post(&format!("/devices/{one}/tasks"), &form, None)
            .await,
        200
    );
    let (s, task) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{two}/tasks"),
            Some(serde_json::json!({"rpc": "Reboot"})),
        )
        .await;
    assert!((200..300).contains(&s), "{s} {task}");
    let log = audit_log(&app).await;
    check(&log, "task.create");
    assert_eq!(log[log.len() - 1].action, "task.create");

    // Its cancellation.
    let store = app.store();
    let console_task = tokio::task::spawn_blocking({
        let (store, one) = (store.clone(), one.clone());
        move || store.find_tasks(Some(&one), None, None, 1).unwrap()[0].id
    })
    .await
    .unwrap();
    assert_eq!(
        otto.post(
            &format!("/tasks/{console_task}/cancel"),
            &[("_csrf", &csrf)],
            None
        )
        .await,
        200
    );
    let api_task = task["id"].as_i64().unwrap();
    let (s, _) = api
        .call(Method::DELETE, &format!("/api/v1/tasks/{api_task}"), None)
        .await;
    assert!((200..300).contains(&s), "{s}");
    check(&audit_log(&app).await, "task.cancel");

    // A tag.
    let form = [
        ("action", "tag"),
        ("ids", one.as_str()),
        ("tag", "lab"),
        ("_csrf", csrf.as_str()),
    ];
    assert_eq!(otto.post("/devices/bulk", &form, None).await, 200);
    let (s, _) = api
        .call(
            Method::PUT,
            &format!("/api/v1/devices/{two}/tags/lab"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let log = audit_log(&app).await;
    check(&log, "device.tag");
    assert_eq!(log[log.len() - 1].detail.as_deref(), Some("tag=lab"));

    // Removing it.
    let form = [
        ("action", "untag"),
        ("ids", one.as_str()),
        ("tag", "lab"),
        ("_csrf", csrf.as_str()),
    ];
    assert_eq!(otto.post("/devices/bulk", &form, None).await, 200);
    let (s, _) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/devices/{two}/tags/lab"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    check(&audit_log(&app).await, "device.untag");

    // A connection request.
    assert_eq!(
        otto.post(
            &format!("/devices/{one}/connection_request"),
            &[("_csrf", &csrf)],
            None
        )
        .await,
        200
    );
    let (s, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{two}/connection_request"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    check(&audit_log(&app).await, "device.connection_request");

    // A password: the user changes their own, an admin sets it through the API.
    let form = [
        ("current", PASSWORD),
        ("new", "another long password"),
        ("confirm", "another long password"),
        ("_csrf", csrf.as_str()),
    ];
    assert_eq!(otto.post("/account/password", &form, None).await, 200);
    let (s, _) = admin
        .call(
            Method::PUT,
            "/api/v1/users/otto/password",
            Some(serde_json::json!({"password": "a third long password"})),
        )
        .await;
    assert!((200..300).contains(&s), "{s}");
    check(&audit_log(&app).await, "user.password");

    // A device deleted (the console confirms first).
    let (_, otto) = Raw::login(&app, "otto", "a third long password").await;
    let csrf = otto.csrf().await;
    let form = [
        ("action", "delete"),
        ("ids", one.as_str()),
        ("confirmed", "1"),
        ("_csrf", csrf.as_str()),
    ];
    assert_eq!(otto.post("/devices/bulk", &form, None).await, 200);
    let (s, _) = api
        .call(Method::DELETE, &format!("/api/v1/devices/{two}"), None)
        .await;
    assert_eq!(s, 204);
    check(&audit_log(&app).await, "device.delete");
    assert_eq!(compared, 7);
}

/// A device's uploads are an operator's to read: configuration backups hold the device's
/// Wi-Fi, PPP and SIP passwords. A viewer sees that they exist (name, type, time), through
/// the API and the console alike, never what they hold or how two of them differ.
async fn device_uploads_are_an_operators_to_read(backend: Backend) {
    let app = TestApp::spawn(backend, console_config).await;
    add_user(&app, "vera", "viewer").await;
    add_user(&app, "otto", "operator").await;
    let (mut dev, mut cr, id) = online_device(&app, "BKP1").await;
    let operator = crate::api::Api::new(&app, "operator").await;
    let viewer = crate::api::Api::new(&app, "viewer").await;
    let secret = "wpa-passphrase-Zq81x";
    for ssid in ["home", "home-5g"] {
        dev.behavior.upload_content = format!("ssid={ssid}\nwpa_key={secret}\n").into_bytes();
        let t = crate::api::run_task(
            &operator,
            &app,
            &mut dev,
            &mut cr,
            &id,
            serde_json::json!({"rpc": "Upload", "file_type": "1 Vendor Configuration File"}),
            1,
        )
        .await;
        assert_eq!(t["status"], "done", "{t}");
    }
    let (s, list) = viewer
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/devices/{id}/backups"),
            None,
        )
        .await;
    assert_eq!(s, 200, "a viewer lists the backups: {list}");
    assert!(!list.to_string().contains(secret), "{list}");
    let items = list["items"].as_array().expect("backups");
    assert_eq!(items.len(), 2, "{list}");
    let (newest, older) = (
        items[0]["id"].as_str().unwrap().to_string(),
        items[1]["id"].as_str().unwrap().to_string(),
    );
    for path in [
        format!("/api/v1/files/{newest}/content"),
        format!("/api/v1/devices/{id}/backups/diff?from={older}&to={newest}"),
    ] {
        let (s, body) = viewer.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(s, 403, "a viewer's {path}: {body}");
        assert!(!body.to_string().contains(secret), "{path}: {body}");
        let (s, body) = operator.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(s, 200, "an operator's {path}: {body}");
        assert!(body.to_string().contains("home-5g"), "{path}: {body}");
    }

    // The console: the viewer's device page names the files without a link to them, and
    // the link an operator has is refused to the viewer.
    let (_, otto) = Raw::login(&app, "otto", PASSWORD).await;
    let (s, page) = otto.get(&format!("/devices/{id}")).await;
    assert_eq!(s, 200);
    let at = page
        .find("/uploads/")
        .expect("an operator's link to the upload");
    let start = page[..at].rfind("href=\"").expect("the link") + 6;
    let end = start + page[start..].find('"').expect("the link's end");
    let link = page[start..end].replace("&amp;", "&");
    let (s, body) = otto.get(&link).await;
    assert_eq!(s, 200, "{link}");
    assert!(body.contains(secret), "the operator downloads the backup");
    let (_, vera) = Raw::login(&app, "vera", PASSWORD).await;
    let (s, page) = vera.get(&format!("/devices/{id}")).await;
    assert_eq!(s, 200);
    assert!(
        page.contains("id=\"uploads\""),
        "the viewer sees the section"
    );
    assert!(
        !page.contains("/uploads/"),
        "the viewer has no link to an upload"
    );
    let (s, body) = vera.get(&link).await;
    assert_eq!(s, 403, "{link}");
    assert!(!body.contains(secret));
}

battery!(
    login_search_open_and_edit,
    bulk_reboot_shows_progress,
    console_refuses_forged_requests,
    upload_push_and_import_lines,
    console_and_api_leave_the_same_audit_entries,
    tags_searches_device_edits_presets_faults_users,
    new_actions_check_role_and_csrf,
    every_page_is_labelled_and_keyboard_usable,
    device_uploads_are_an_operators_to_read,
);
