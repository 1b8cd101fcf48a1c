//! Scheduled jobs end to end: the real server on both backends with an injected clock the
//! test sets (the scheduler reads it; nothing sleeps), simulated CPEs running the tasks the
//! jobs queue, config backups uploaded, pruned, compared and restored.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::Api;
use crate::battery;
use crate::cpe::{Device, Identity, Root};
use crate::support::{Backend, TestApp, TestClock, TestDb};

fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

fn device_id(d: &Device) -> String {
    ferroacs::cwmp::device_id(
        &d.identity.oui,
        &d.identity.product_class,
        &d.identity.serial_number,
    )
}

async fn fleet(url: &str, n: usize) -> Vec<Device> {
    let mut devs = Vec::new();
    for i in 0..n {
        let ident = Identity {
            manufacturer: "SimCo".into(),
            oui: "0B0001".into(),
            product_class: "Kiosk".into(),
            serial_number: format!("K{i:04}"),
        };
        let mut d = Device::synthetic(Root::Device2, &ident.serial_number, 12)
            .with_identity(ident)
            .with_acs_credentials("cpe", "cpe-secret");
        let r = d.run_session(url, &[]).await.expect("session");
        assert!(r.ended_cleanly(), "{r:?}");
        devs.push(d);
    }
    devs
}

fn fast(c: &mut ferroacs::config::Config) {
    // Ticks are driven by the test; the background loop only ticks once at start.
    c.scheduler.tick_ms = 3_600_000;
}

async fn app_at(b: Backend, t: i64) -> (TestApp, TestClock) {
    let clock = TestClock::new(t);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), fast).await;
    (app, clock)
}

/// Tasks of a schedule: (device, rpc, status, expires_at).
async fn tasks_of(api: &Api, schedule: i64) -> Vec<(String, String, String, Option<i64>)> {
    let v = api.get("/api/v1/tasks?limit=1000").await;
    let mut out: Vec<_> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["created_by"] == format!("schedule/{schedule}"))
        .map(|t| {
            (
                t["device_id"].as_str().unwrap().to_string(),
                t["rpc"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
                t["expires_at"].as_i64(),
            )
        })
        .collect();
    out.sort();
    out
}

battery!(
    recurring_reboot_fires_in_its_time_zone_across_the_dst_change,
    config_backups_are_kept_compared_and_restored,
    bad_schedules_are_refused_naming_the_field,
);

async fn recurring_reboot_fires_in_its_time_zone_across_the_dst_change(b: Backend) {
    // Saturday 2026-03-21 noon UTC; Berlin moves to summer time on Sunday 2026-03-29.
    let (app, clock) = app_at(b, ms("2026-03-21T12:00:00Z")).await;
    let api = Api::new(&app, "operator").await;
    let url = app.cwmp_url();
    let mut devs = fleet(&url, 4).await;
    for d in devs.iter().take(3) {
        let (s, v) = api
            .call(
                Method::PUT,
                &format!("/api/v1/devices/{}", device_id(d)),
                Some(json!({"tags": ["kiosk"]})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let kiosks: Vec<String> = devs.iter().take(3).map(device_id).collect();
    let (s, job) = api
        .call(
            Method::POST,
            "/api/v1/schedules",
            Some(json!({
                "name": "kiosk reboot",
                "query": "tag = kiosk",
                "cron": "0 0 3 * * Sun",
                "time_zone": "Europe/Berlin",
                "action": {"type": "task", "task": {"rpc": "Reboot"}},
            })),
        )
        .await;
    assert_eq!(s, 201, "{job}");
    let id = job["id"].as_i64().unwrap();
    // 03:00 CET = 02:00 UTC.
    assert_eq!(job["next_fire_at"], ms("2026-03-22T02:00:00Z"), "{job}");
    let state = app.state();
    let tick = |state: Arc<ferroacs::app::AppState>| async move {
        ferroacs::scheduler::tick(&state).await.unwrap()
    };
    // Nothing before the time.
    clock.set(ms("2026-03-22T01:59:59Z"));
    assert!(tick(state.clone()).await.fired.is_empty());
    assert!(tasks_of(&api, id).await.is_empty());
    // At the time: one Reboot per kiosk, expiring at the next fire, which is 03:00 CEST =
    // 01:00 UTC after the change.
    clock.set(ms("2026-03-22T02:00:00Z"));
    let t = tick(state.clone()).await;
    assert_eq!(t.fired.len(), 1, "{t:?}");
    assert_eq!(t.fired[0].queued, Some(3));
    let next = ms("2026-03-29T01:00:00Z");
    let ts = tasks_of(&api, id).await;
    assert_eq!(
        ts.iter().map(|t| t.0.clone()).collect::<Vec<_>>(),
        kiosks,
        "{ts:?}"
    );
    assert!(ts
        .iter()
        .all(|t| t.1 == "Reboot" && t.2 == "pending" && t.3 == Some(next)));
    let job = api.get(&format!("/api/v1/schedules/{id}")).await;
    assert_eq!(job["next_fire_at"], next, "{job}");
    assert_eq!(job["last_fire_at"], ms("2026-03-22T02:00:00Z"), "{job}");
    // The same time again (a second tick, another leader): no second fire.
    assert!(tick(state.clone()).await.fired.is_empty());
    assert_eq!(tasks_of(&api, id).await.len(), 3);
    // Two kiosks are online and reboot (the Reboot, then the Inform with 1 BOOT); the third
    // stays offline.
    for d in devs.iter_mut().take(2) {
        let r = d.run_session(&url, &[("2 PERIODIC", "")]).await.unwrap();
        assert!(r.ended_cleanly(), "{r:?}");
        let r = d.run_session(&url, &[]).await.unwrap();
        assert!(r.ended_cleanly(), "{r:?}");
    }
    // A week later, in summer time: the offline kiosk's task expired instead of piling up.
    clock.set(next - 1000);
    tick(state.clone()).await;
    clock.set(next);
    let t = tick(state.clone()).await;
    assert_eq!(t.fired.len(), 1, "{t:?}");
    // The old task is past its deadline at the next tick.
    clock.set(next + 1000);
    let t = tick(state.clone()).await;
    assert!(t.fired.is_empty() && t.expired == 1, "{t:?}");
    let ts = tasks_of(&api, id).await;
    let statuses: Vec<&str> = ts.iter().map(|t| t.2.as_str()).collect();
    assert_eq!(ts.len(), 6, "{ts:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == "done").count(),
        2,
        "{ts:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "expired").count(),
        1,
        "{ts:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "pending").count(),
        3,
        "{ts:?}"
    );
    // The untagged device never got anything.
    assert!(ts.iter().all(|t| t.0 != device_id(&devs[3])));
    let job = api.get(&format!("/api/v1/schedules/{id}")).await;
    assert_eq!(job["next_fire_at"], ms("2026-04-05T01:00:00Z"), "{job}");
    // The scheduler was down for a night: a fire hours late is skipped, not run at noon.
    clock.set(ms("2026-04-05T11:00:00Z"));
    let t = tick(state.clone()).await;
    assert_eq!(t.fired.len(), 1, "{t:?}");
    assert_eq!(t.fired[0].queued, None, "{t:?}");
    assert_eq!(tasks_of(&api, id).await.len(), 6);
    let job = api.get(&format!("/api/v1/schedules/{id}")).await;
    assert!(
        job["last_result"].as_str().unwrap().contains("skipped"),
        "{job}"
    );
    assert_eq!(job["next_fire_at"], ms("2026-04-12T01:00:00Z"), "{job}");
    // Disabled: no next fire.
    let mut spec = job["spec"].clone();
    spec["enabled"] = json!(false);
    let (s, job) = api
        .call(Method::PUT, &format!("/api/v1/schedules/{id}"), Some(spec))
        .await;
    assert_eq!(s, 200, "{job}");
    assert_eq!(job["enabled"], false);
    assert_eq!(job["next_fire_at"], Value::Null);
    clock.set(ms("2026-04-12T01:00:00Z"));
    assert!(tick(state.clone()).await.fired.is_empty());
    // The audit log names each change and each skipped fire.
    let admin = Api::new(&app, "admin").await;
    let audit = admin.get("/api/v1/audit?limit=1000").await.to_string();
    for a in [
        "schedule.create",
        "schedule.update",
        "schedule.skip",
        "task.create_bulk",
    ] {
        assert!(audit.contains(a), "{a} missing from {audit}");
    }
    assert!(audit.contains(&format!("schedule/{id}")));
}

async fn config_backups_are_kept_compared_and_restored(b: Backend) {
    let (app, clock) = app_at(b, ms("2026-05-01T12:00:00Z")).await;
    let api = Api::new(&app, "operator").await;
    let url = app.cwmp_url();
    let mut devs = fleet(&url, 2).await;
    let (s, job) = api
        .call(
            Method::POST,
            "/api/v1/schedules",
            Some(json!({
                "name": "nightly backup",
                "query": "product_class = Kiosk",
                "cron": "0 0 2 * * *",
                "action": {"type": "backup", "keep": 2},
            })),
        )
        .await;
    assert_eq!(s, 201, "{job}");
    let state = app.state();
    // Three nights; the configuration changes every day.
    for night in 0..3i64 {
        let t = ms("2026-05-02T02:00:00Z") + night * 86_400_000;
        clock.set(t);
        let tick = ferroacs::scheduler::tick(&state).await.unwrap();
        assert_eq!(tick.fired.len(), 1, "{tick:?}");
        assert_eq!(tick.fired[0].queued, Some(2), "{tick:?}");
        for (i, d) in devs.iter_mut().enumerate() {
            d.behavior.upload_content =
                format!("hostname=kiosk{i}\nntp=ntp{night}.example\nvlan=10\n").into_bytes();
            // The Upload, then TransferComplete.
            let r = d.run_session(&url, &[("2 PERIODIC", "")]).await.unwrap();
            assert!(r.ended_cleanly(), "{r:?}");
            let r = d.run_session(&url, &[]).await.unwrap();
            assert!(r.ended_cleanly(), "{r:?}");
        }
    }
    // Housekeeping keeps the newest two per device.
    clock.set(ms("2026-05-04T02:20:00Z"));
    let tick = ferroacs::scheduler::tick(&state).await.unwrap();
    assert_eq!(tick.pruned, 2, "{tick:?}");
    let dev = device_id(&devs[0]);
    let list = api.get(&format!("/api/v1/devices/{dev}/backups")).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    assert!(items
        .iter()
        .all(|f| f["file_type"] == "1 Vendor Configuration File"));
    let (newest, older) = (
        items[0]["id"].as_str().unwrap().to_string(),
        items[1]["id"].as_str().unwrap().to_string(),
    );
    assert!(items[0]["created_at"].as_i64() > items[1]["created_at"].as_i64());
    // The diff of the two text backups.
    let d = api
        .get(&format!(
            "/api/v1/devices/{dev}/backups/diff?from={older}&to={newest}"
        ))
        .await;
    assert_eq!(d["identical"], false, "{d}");
    let text = d["diff"].as_str().unwrap();
    assert!(
        text.contains("\n-ntp=ntp1.example\n+ntp=ntp2.example\n"),
        "{text}"
    );
    assert!(text.contains(" hostname=kiosk0\n"), "{text}");
    // Another device's backup is not this device's.
    let other = api
        .get(&format!("/api/v1/devices/{}/backups", device_id(&devs[1])))
        .await;
    let theirs = other["items"][0]["id"].as_str().unwrap().to_string();
    let (s, e) = api
        .call(
            Method::GET,
            &format!("/api/v1/devices/{dev}/backups/diff?from={older}&to={theirs}"),
            None,
        )
        .await;
    assert_eq!(s, 400, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("to"),
        "{e}"
    );
    let (s, e) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{dev}/backups/{theirs}/restore"),
            None,
        )
        .await;
    assert_eq!(s, 400, "{e}");
    // Restore the older one: a Download of it, which the device fetches.
    let (s, task) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{dev}/backups/{older}/restore"),
            None,
        )
        .await;
    assert_eq!(s, 201, "{task}");
    assert_eq!(task["rpc"], "Download");
    assert_eq!(task["args"]["file_type"], "3 Vendor Configuration File");
    let r = devs[0]
        .run_session(&url, &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(r.ended_cleanly(), "{r:?}");
    let got = devs[0].state.downloads.last().expect("downloaded");
    assert_eq!(got.bytes, b"hostname=kiosk0\nntp=ntp1.example\nvlan=10\n");
    let admin = Api::new(&app, "admin").await;
    let audit = admin.get("/api/v1/audit?limit=1000").await.to_string();
    assert!(audit.contains("backup.restore"), "{audit}");
}

async fn bad_schedules_are_refused_naming_the_field(b: Backend) {
    let (app, _clock) = app_at(b, ms("2026-05-01T12:00:00Z")).await;
    let api = Api::new(&app, "operator").await;
    let good = json!({
        "name": "ok",
        "query": "tag = kiosk",
        "cron": "0 0 3 * * Sun",
        "time_zone": "Europe/Berlin",
        "action": {"type": "task", "task": {"rpc": "Reboot"}},
    });
    let with = |k: &str, v: Value| {
        let mut s = good.clone();
        s[k] = v;
        s
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("cron", json!("0 3 * * *")), "cron"),
        (with("cron", json!("0 0 25 * * *")), "cron"),
        (with("time_zone", json!("Mars/Base")), "time_zone"),
        (with("query", json!("")), "query"),
        (with("query", json!("tag ==")), "query"),
        (
            with("action", json!({"type": "backup", "keep": 0})),
            "action.keep",
        ),
        (
            with(
                "action",
                json!({"type": "task", "task": {"rpc": "Download", "file_id": "nope", "file_type": "1 Firmware Upgrade Image"}}),
            ),
            "action.task.file_id",
        ),
        (with("surprise", json!(1)), "surprise"),
    ];
    for (spec, field) in cases {
        let (s, e) = api
            .call(Method::POST, "/api/v1/schedules", Some(spec.clone()))
            .await;
        assert_eq!(s, 400, "{spec} -> {e}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{field} not named in {msg}");
    }
    let (s, c) = api
        .call(Method::POST, "/api/v1/schedules", Some(good.clone()))
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_i64().unwrap();
    // The same name twice: 409.
    let (s, e) = api
        .call(Method::POST, "/api/v1/schedules", Some(good.clone()))
        .await;
    assert_eq!(s, 409, "{e}");
    // A viewer reads but cannot change.
    let viewer = Api::new(&app, "viewer").await;
    let (s, _) = viewer
        .call(Method::GET, &format!("/api/v1/schedules/{id}"), None)
        .await;
    assert_eq!(s, 200);
    let (s, _) = viewer
        .call(
            Method::POST,
            "/api/v1/schedules",
            Some(with("name", json!("v"))),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = viewer
        .call(Method::DELETE, &format!("/api/v1/schedules/{id}"), None)
        .await;
    assert_eq!(s, 403);
    let (s, _) = api
        .call(Method::DELETE, &format!("/api/v1/schedules/{id}"), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = api
        .call(Method::GET, &format!("/api/v1/schedules/{id}"), None)
        .await;
    assert_eq!(s, 404);
    // The OpenAPI document lists the routes.
    let doc = api.get("/api/v1/openapi.json").await;
    for p in [
        "/api/v1/schedules",
        "/api/v1/schedules/{id}",
        "/api/v1/devices/{id}/backups",
        "/api/v1/devices/{id}/backups/diff",
        "/api/v1/devices/{id}/backups/{file_id}/restore",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }
}
