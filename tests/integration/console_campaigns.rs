//! Campaigns in the web console, in a real browser against the real server and simulated
//! CPEs (the scheduler ticks on an injected clock the test advances), and the overview's
//! maintained counters checked against full counts on both backends.

use std::sync::Arc;

use serde_json::Value;

use crate::api::{online_device, Api};
use crate::battery;
use crate::campaigns::{device_id, fast, fleet, round, upload_image, MODELS, T0};
use crate::console::{add_user, backend_name, login, Raw, PASSWORD};
use crate::support::browser::Browser;
use crate::support::{Backend, TestApp, TestClock, TestDb};

battery!(
    campaign_created_in_the_console_runs_to_done,
    overview_counters_follow_devices_sessions_and_faults,
);

fn total_of(v: &[(String, String, i64)]) -> i64 {
    v.iter().map(|r| r.2).sum()
}

async fn audit_of(app: &TestApp) -> Vec<(String, String, String)> {
    let store = app.store();
    tokio::task::spawn_blocking(move || store.list_audit(None, 500).unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.actor, a.action, a.target))
        .collect()
}

/// An operator fills the form, reads the dry run, creates and starts the campaign, and
/// watches the detail page until every device succeeded; a viewer sees no control and a
/// forged or token-less POST is refused.
async fn campaign_created_in_the_console_runs_to_done(backend: Backend) {
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(backend))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), fast).await;
    add_user(&app, "olga", "operator").await;
    add_user(&app, "vera", "viewer").await;
    let api = Api::new(&app, "operator").await;
    let url = app.cwmp_url();
    // Three devices of each model on 1.0; one of the first model already runs 2.0.
    let mut devs = fleet(&url, 3).await;
    let p = devs[0].path("DeviceInfo.SoftwareVersion");
    devs[0].set_value(&p, "2.0");
    let rep = devs[0]
        .run_session(&url, &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let mut lines = String::new();
    for (i, (oui, pc)) in MODELS.iter().enumerate() {
        let f = upload_image(&api, &format!("fw{i}.bin"), "2.0", "2.0").await;
        lines.push_str(&format!("{oui}, {pc}, , {f}\n"));
    }

    let b = Browser::start(&format!("campaign-{}", backend_name(backend))).await;
    login(&b, &app, "olga", PASSWORD).await;
    b.goto(&app.api_url("/campaigns")).await;
    b.click_css("#new-campaign").await;
    b.type_into("#name", "console upgrade").await;
    b.type_into("#query", "manufacturer = \"SimCo\"").await;
    b.type_into("#images", &lines).await;
    b.type_into("#wave_sizes", "rest").await;
    b.type_into("#success_percent", "100").await;
    b.type_into("#stop_rules", "any 3/10").await;
    // A bad field is named, and nothing is offered for creation.
    b.type_into("#canary", "a few").await;
    b.click_css("#dry-run").await;
    b.wait_text("#form-error", "canary").await;
    assert!(b.try_find("#create").await.is_none());
    b.screenshot("form-error").await;
    b.type_into("#canary", "2").await;
    b.type_into("#max_in_flight", "5").await;
    b.click_css("#dry-run").await;
    let dry = b.wait_text("#dry-summary", "device(s) match").await;
    assert!(
        dry.contains("9 device(s) match: 8 would get the action, 1 already compliant, 0 skipped"),
        "{dry}"
    );
    assert!(dry.contains("Waves: 2 / 6"), "{dry}");
    let models = b.wait_text("#dry-models", "0A0001/GwA").await;
    assert!(models.contains("0A0003/GwC"), "{models}");
    b.screenshot("dry-run").await;
    // The dry run wrote nothing.
    let list = api.get("/api/v1/campaigns").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");

    b.click_css("#create").await;
    b.wait_text("#campaign-state", "draft").await;
    b.screenshot("draft").await;
    let id: i64 = b
        .url()
        .await
        .rsplit('/')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("the campaign's page");
    b.click_css("#ctl-start").await;
    b.wait_text("#campaign-state", "running").await;

    // The overview lists it among the campaigns in progress.
    b.goto(&app.api_url("/")).await;
    let card = b
        .wait_text("#campaigns-in-progress", "console upgrade")
        .await;
    assert!(card.contains("0 / 8 finished"), "{card}");
    b.screenshot("overview").await;
    b.goto(&app.api_url(&format!("/campaigns/{id}"))).await;
    b.wait_text("#campaign-state", "running").await;

    // The scheduler paces it; the devices run their sessions; the page follows by itself.
    let state = app.state();
    let mut done = false;
    for _ in 0..40 {
        round(&state, &url, &mut devs).await;
        let c = api.get(&format!("/api/v1/campaigns/{id}")).await;
        if c["state"] == "completed" {
            done = true;
            break;
        }
        clock.advance_ms(20_000);
    }
    assert!(done, "the campaign never completed");
    b.wait_text("#campaign-state", "completed").await;
    let summary = b.wait_text("#campaign-summary", "8 succeeded").await;
    assert!(summary.contains("1 skipped"), "{summary}");
    assert!(!summary.contains("failed"), "{summary}");
    assert!(b
        .wait_text("#campaign-progress", "8 / 8 finished (100 %)")
        .await
        .contains("100 %"));
    // Polling stopped once nothing was left in flight.
    let polling = b
        .exec(
            "return document.getElementById('campaign-live').hasAttribute('hx-trigger');",
            vec![],
        )
        .await;
    assert_eq!(polling, Value::Bool(false));
    assert_eq!(b.find_all("#campaign-waves tbody tr").await.len(), 2);
    assert_eq!(b.find_all("#campaign-models tbody tr").await.len(), 3);
    // The device table and the event log (the page as it loads now).
    b.goto(&app.api_url(&format!("/campaigns/{id}"))).await;
    b.wait_text("#campaign-state", "completed").await;
    assert_eq!(b.find_all("#campaign-devices tbody tr").await.len(), 9);
    let table = b.wait_text("#campaign-devices", "1.0 → 2.0").await;
    assert!(table.contains(&device_id(&devs[1])), "{table}");
    b.wait_text("#campaign-events", "complete").await;
    b.screenshot("done").await;
    for d in &devs {
        assert_eq!(
            d.state.downloads.len(),
            usize::from(device_id(d) != device_id(&devs[0]))
        );
    }
    b.goto(&app.api_url("/campaigns")).await;
    let row = b.wait_text("#campaigns", "completed").await;
    assert!(row.contains("8 / 8 finished"), "{row}");
    b.screenshot("list").await;

    // The console's actions are the API's: same audit vocabulary, actor user:olga.
    let audit = audit_of(&app).await;
    for action in ["campaign.create", "campaign.start"] {
        assert!(
            audit.contains(&(
                "user:olga".to_string(),
                action.to_string(),
                format!("campaign/{id}")
            )),
            "{action} missing: {audit:?}"
        );
    }

    // A viewer: pages open, no controls, and every action is refused on the server.
    let (_, vera) = Raw::login(&app, "vera", PASSWORD).await;
    let (s, page) = vera.get(&format!("/campaigns/{id}")).await;
    assert_eq!(s, 200);
    assert!(!page.contains("campaign-controls"), "viewer sees controls");
    let (s, page) = vera.get("/campaigns").await;
    assert_eq!(s, 200);
    assert!(
        !page.contains("new-campaign"),
        "viewer sees the create link"
    );
    let (s, _) = vera.get("/campaigns/new").await;
    assert_eq!(s, 403);
    let vcsrf = vera.csrf().await;
    for action in ["clone", "retry_failed", "reverse", "abort"] {
        let s = vera
            .post(
                &format!("/campaigns/{id}/{action}"),
                &[("_csrf", &vcsrf)],
                None,
            )
            .await;
        assert_eq!(s, 403, "viewer {action}");
    }
    let form = [
        ("_csrf", vcsrf.as_str()),
        ("name", "forged"),
        ("query", "id LIKE \"*\""),
        ("action_kind", "reboot"),
        ("step", "dry_run"),
    ];
    assert_eq!(vera.post("/campaigns/new", &form, None).await, 403);
    // The operator without the CSRF token, or with another session's: 403.
    let (_, olga) = Raw::login(&app, "olga", PASSWORD).await;
    let clone_path = format!("/campaigns/{id}/clone");
    assert_eq!(olga.post(&clone_path, &[], None).await, 403);
    assert_eq!(
        olga.post(&clone_path, &[("_csrf", &vcsrf)], None).await,
        403
    );
    let list = api.get("/api/v1/campaigns").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    // With its token it works, and is audited as the API's clone.
    let csrf = olga.csrf().await;
    assert_eq!(olga.post(&clone_path, &[("_csrf", &csrf)], None).await, 303);
    let list = api.get("/api/v1/campaigns").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    let audit = audit_of(&app).await;
    assert!(
        audit
            .iter()
            .any(|(a, act, _)| a == "user:olga" && act == "campaign.clone"),
        "{audit:?}"
    );
    let vb = Browser::start(&format!("campaign-viewer-{}", backend_name(backend))).await;
    login(&vb, &app, "vera", PASSWORD).await;
    vb.goto(&app.api_url(&format!("/campaigns/{id}"))).await;
    vb.wait_text("#campaign-state", "completed").await;
    assert!(vb.try_find("#campaign-controls").await.is_none());
    assert!(vb.try_find("button[id^=ctl-]").await.is_none());
    vb.screenshot("viewer").await;
}

/// The overview reads maintained counters: they follow device inserts, version changes and
/// deletions, sessions and faults (added and cleared), and agree with full counts.
async fn overview_counters_follow_devices_sessions_and_faults(backend: Backend) {
    let app = TestApp::spawn(backend, |_| {}).await;
    let (mut a, _cra, ida) = online_device(&app, "CNT1").await;
    let (_b, _crb, idb) = online_device(&app, "CNT2").await;
    let (_c, _crc, idc) = online_device(&app, "CNT3").await;
    app.flush_session_logs().await;
    let store = app.store();
    let run = |f: Box<dyn FnOnce(&ferroacs::store::Store) + Send>| {
        let store = store.clone();
        async move {
            tokio::task::spawn_blocking(move || f(&store))
                .await
                .unwrap();
        }
    };
    run(Box::new(move |s| {
        let v = s.versions_by_product_class().unwrap();
        assert_eq!(total_of(&v), s.count_devices().unwrap());
        assert_eq!(total_of(&v), 3);
        let c = s.device_counts(0).unwrap();
        assert_eq!((c.total, c.seen, c.overdue, c.never_informed), (3, 3, 0, 0));
        let sessions: i64 = s.sessions_per_minute(0).unwrap().iter().map(|r| r.1).sum();
        assert!(sessions >= 3, "{sessions}");
    }))
    .await;

    // A new software version moves the device from one bar to another.
    let p = a.path("DeviceInfo.SoftwareVersion");
    a.set_value(&p, "9.9-counted");
    let rep = a
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    app.flush_session_logs().await;
    let (ida2, idb2, idc2) = (ida.clone(), idb.clone(), idc.clone());
    run(Box::new(move |s| {
        let v = s.versions_by_product_class().unwrap();
        assert_eq!(total_of(&v), 3, "{v:?}");
        assert!(v.iter().any(|r| r.1 == "9.9-counted" && r.2 == 1), "{v:?}");
        let sessions: i64 = s.sessions_per_minute(0).unwrap().iter().map(|r| r.1).sum();
        assert!(sessions >= 4, "{sessions}");
        // Faults: two of one code, one of another; clearing one lowers its count.
        let now = ferroacs::store::now_ms();
        for (dev, code) in [(&ida2, 9002), (&idb2, 9002), (&idc2, 9005)] {
            s.insert_fault(&ferroacs::store::faults::NewFault {
                device_id: dev.clone(),
                task_id: None,
                code,
                message: "counted".into(),
                detail: None,
                created_at: now,
            })
            .unwrap();
        }
        assert_eq!(
            s.faults_by_code(now - 60_000).unwrap(),
            vec![(9002, 2), (9005, 1)]
        );
        // Deleting a device drops it from the totals and clears its faults.
        assert!(s.delete_device(&idc2).unwrap());
        assert_eq!(s.faults_by_code(now - 60_000).unwrap(), vec![(9002, 2)]);
        let v = s.versions_by_product_class().unwrap();
        assert_eq!(total_of(&v), s.count_devices().unwrap());
        assert_eq!(s.device_counts(0).unwrap().total, 2);
        // Devices informed before the cut-off are overdue; the rest are seen.
        let c = s.device_counts(now + 3_600_000).unwrap();
        assert_eq!((c.total, c.seen, c.overdue), (2, 0, 2));
        // Old minutes are pruned; the recent ones stay.
        s.prune_overview_counters(now - 86_400_000).unwrap();
        assert_eq!(s.faults_by_code(now - 60_000).unwrap(), vec![(9002, 2)]);
        s.prune_overview_counters(now + 120_000).unwrap();
        assert!(s.faults_by_code(0).unwrap().is_empty());
        assert!(s.sessions_per_minute(0).unwrap().is_empty());
    }))
    .await;
}
