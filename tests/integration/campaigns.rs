//! Firmware campaigns end to end: simulated CPEs of three models, the real server on both
//! backends, an injected clock the test advances (the scheduler reads it; nothing sleeps).
//!
//! Each round: the scheduler leader ticks, every device with a queued task runs its sessions
//! (Download, the transfer, the reboot, TransferComplete with the new SoftwareVersion in the
//! Inform), and the clock moves on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::Api;
use crate::battery;
use crate::cpe::{Device, Identity, Root};
use crate::support::{Backend, TestApp, TestClock, TestDb};
use ferroacs::app::AppState;

/// 2026-03-10T01:00:00Z: the nightly window below opens.
const T0: i64 = 1_773_104_400_000;
const HOUR: i64 = 3_600_000;
const MODELS: [(&str, &str); 3] = [("0A0001", "GwA"), ("0A0002", "GwB"), ("0A0003", "GwC")];

fn device_id(d: &Device) -> String {
    ferroacs::cwmp::device_id(
        &d.identity.oui,
        &d.identity.product_class,
        &d.identity.serial_number,
    )
}

fn version(d: &Device) -> String {
    d.get(&d.path("DeviceInfo.SoftwareVersion"))
        .unwrap_or_default()
        .to_string()
}

/// `per_model` devices of each model on SoftwareVersion 1.0, bootstrapped.
async fn fleet(url: &str, per_model: usize) -> Vec<Device> {
    let mut devs = Vec::new();
    for (m, (oui, pc)) in MODELS.iter().enumerate() {
        for i in 0..per_model {
            let ident = Identity {
                manufacturer: "SimCo".into(),
                oui: (*oui).into(),
                product_class: (*pc).into(),
                serial_number: format!("S{m}{i:04}"),
            };
            let mut d = Device::synthetic(Root::Device2, &ident.serial_number, 12)
                .with_identity(ident)
                .with_acs_credentials("cpe", "cpe-secret");
            let p = d.path("DeviceInfo.SoftwareVersion");
            d.set_value(&p, "1.0");
            devs.push(d);
        }
    }
    let mut all: Vec<&mut Device> = devs.iter_mut().collect();
    sessions(url, &mut all, &[]).await;
    devs
}

async fn sessions(url: &str, devs: &mut [&mut Device], events: &[(&str, &str)]) {
    for chunk in devs.chunks_mut(16) {
        let runs = chunk.iter_mut().map(|d| d.run_session(url, events));
        for r in futures_util::future::join_all(runs).await {
            let rep = r.expect("session");
            assert!(rep.ended_cleanly(), "{rep:?}");
        }
    }
}

/// Upload a firmware image that makes the simulator report `reports` after rebooting.
async fn upload_image(api: &Api, name: &str, version: &str, reports: &str) -> String {
    let body = format!("SoftwareVersion={reports}\n{}", "x".repeat(2000));
    let res = api
        .http
        .post(format!(
            "{}/api/v1/files?name={name}&file_type=1%20Firmware%20Upgrade%20Image&version={version}",
            api.base
        ))
        .bearer_auth(&api.token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn images(files: &[String]) -> Value {
    json!({"type": "firmware", "images": MODELS.iter().zip(files).map(|((oui, pc), f)| json!({
        "oui": oui, "product_class": pc, "file_id": f
    })).collect::<Vec<_>>()})
}

/// Devices with a queued task (the ones a connection request would wake).
async fn queued(store: ferroacs::store::Store) -> HashSet<String> {
    tokio::task::spawn_blocking(move || {
        store
            .find_tasks(None, Some("pending"), None, 100_000)
            .unwrap()
            .into_iter()
            .map(|t| t.device_id)
            .collect()
    })
    .await
    .unwrap()
}

/// One round: tick; every device with a queued task runs a session (the Download; the
/// transfer and reboot follow it), and every device with something to report (BOOT,
/// TransferComplete) runs one more; tick again to judge. Returns how many devices the first
/// tick started.
async fn round(state: &AppState, url: &str, devs: &mut [Device]) -> usize {
    let t = ferroacs::scheduler::tick(state).await.unwrap();
    let pending = queued(state.store.clone()).await;
    let mut busy: Vec<&mut Device> = devs
        .iter_mut()
        .filter(|d| pending.contains(&device_id(d)))
        .collect();
    sessions(url, &mut busy, &[("2 PERIODIC", "")]).await;
    let mut reporting: Vec<&mut Device> = devs
        .iter_mut()
        .filter(|d| !d.state.pending_requests.is_empty() || !d.state.pending_events.is_empty())
        .collect();
    sessions(url, &mut reporting, &[]).await;
    ferroacs::scheduler::tick(state).await.unwrap();
    t.started
}

async fn campaign(api: &Api, id: i64) -> Value {
    api.get(&format!("/api/v1/campaigns/{id}")).await
}

async fn members(api: &Api, id: i64) -> Vec<Value> {
    let v = api
        .get(&format!("/api/v1/campaigns/{id}/devices?limit=1000"))
        .await;
    v["items"].as_array().unwrap().clone()
}

/// Largest number of devices in progress at once, from the members' timestamps (a device
/// finishing at t frees its slot before one starting at t takes it).
fn max_in_flight(ms: &[Value]) -> usize {
    let mut ev: Vec<(i64, i32)> = Vec::new();
    for m in ms {
        if let Some(s) = m["started_at"].as_i64() {
            ev.push((s, 1));
            ev.push((m["finished_at"].as_i64().unwrap_or(i64::MAX), -1));
        }
    }
    ev.sort();
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in ev {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

fn fast(c: &mut ferroacs::config::Config) {
    // Ticks are driven by the test; the background loop only ticks once at start.
    c.scheduler.tick_ms = 3_600_000;
    c.api.connection_request_min_interval_ms = 0;
}

battery!(
    firmware_campaign_runs_in_waves_inside_its_window_and_limits,
    failing_image_trips_the_stop_rule_and_resumes_with_a_fixed_one,
    leader_killed_mid_campaign_another_node_takes_over,
    restart_mid_campaign_starts_nobody_twice,
    bad_campaigns_are_refused_naming_the_field,
);

async fn firmware_campaign_runs_in_waves_inside_its_window_and_limits(b: Backend) {
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), fast).await;
    let api = Api::new(&app, "operator").await;
    let url = app.cwmp_url();
    let mut devs = fleet(&url, 100).await;
    // Five devices of the first model already run the new version.
    for d in devs.iter_mut().take(5) {
        let p = d.path("DeviceInfo.SoftwareVersion");
        d.set_value(&p, "2.0");
    }
    let mut first5: Vec<&mut Device> = devs.iter_mut().take(5).collect();
    sessions(&url, &mut first5, &[("2 PERIODIC", "")]).await;
    let mut files = Vec::new();
    for (i, _) in MODELS.iter().enumerate() {
        files.push(upload_image(&api, &format!("fw{i}.bin"), "2.0", "2.0").await);
    }
    let spec = json!({
        "name": "spring upgrade",
        "target": {"query": "manufacturer = \"SimCo\""},
        "action": images(&files),
        "schedule": {"windows": [{"cron": "0 0 1 * * *", "duration_secs": 4 * 3600, "time_zone": "UTC"}]},
        // Devices started just before a clock jump still get their sessions afterwards.
        "pacing": {"max_in_flight": 20, "max_starts_per_minute": 30, "confirm_timeout_secs": 86_400},
        "waves": {"canary": 10, "sizes": [100, "rest"], "success_ratio": 1.0, "soak_secs": 120},
        "stop_rules": [{"scope": "any", "failures": 5, "of_last": 100}],
    });
    // The dry run counts per model.
    let (s, dry) = api
        .call(
            Method::POST,
            "/api/v1/campaigns?dry_run=true",
            Some(spec.clone()),
        )
        .await;
    assert_eq!(s, 200, "{dry}");
    assert_eq!(dry["matching"], 300, "{dry}");
    assert_eq!(dry["compliant"], 5, "{dry}");
    assert_eq!(dry["eligible"], 295, "{dry}");
    assert_eq!(dry["models"]["0A0001/GwA"]["compliant"], 5, "{dry}");
    assert_eq!(dry["models"]["0A0002/GwB"]["eligible"], 100, "{dry}");
    assert_eq!(dry["waves"], json!([10, 100, 185]), "{dry}");
    let (s, created) = api
        .call(Method::POST, "/api/v1/campaigns", Some(spec))
        .await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["state"], "draft");
    let (s, started) = api
        .call(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None)
        .await;
    assert_eq!(s, 200, "{started}");
    assert_eq!(started["state"], "running");

    let state = app.state();
    let mut closed_rounds = 0;
    let mut jumped = false;
    for _ in 0..400 {
        let now = clock.now();
        let n = round(&state, &url, &mut devs).await;
        let hour = (now / HOUR) % 24;
        if !(1..5).contains(&hour) {
            assert_eq!(n, 0, "a device started outside the window at {now}");
            closed_rounds += 1;
        }
        let c = campaign(&api, id).await;
        if c["state"] != "running" {
            break;
        }
        let started = 295 - c["progress"]["totals"]["pending"].as_i64().unwrap();
        if !jumped && started >= 150 {
            // Close the window mid-campaign: 04:59:40, then past 05:00 for a few rounds.
            jumped = true;
            clock.set(T0 + 4 * HOUR - 20_000);
        } else if jumped && closed_rounds >= 3 && !(1..5).contains(&((clock.now() / HOUR) % 24)) {
            // The next night's window.
            clock.set(T0 + 24 * HOUR);
        } else {
            clock.advance_ms(20_000);
        }
    }
    assert!(
        closed_rounds >= 3,
        "the window never closed mid-campaign: {}",
        campaign(&api, id).await
    );
    let c = campaign(&api, id).await;
    assert_eq!(c["state"], "completed", "{c}");
    assert_eq!(c["progress"]["totals"]["succeeded"], 295, "{c}");
    assert_eq!(c["progress"]["totals"]["skipped"], 5, "{c}");
    // Every device now runs 2.0; each eligible one downloaded exactly once.
    for (i, d) in devs.iter().enumerate() {
        assert_eq!(version(d), "2.0", "{}", device_id(d));
        let want = if i < 5 { 0 } else { 1 };
        assert_eq!(d.state.downloads.len(), want, "{}", device_id(d));
    }
    let ms = members(&api, id).await;
    // Waves 10 / 100 / rest, each opened after the previous finished and soaked.
    let mut by_wave: BTreeMap<i64, (usize, i64, i64)> = BTreeMap::new();
    for m in ms.iter().filter(|m| m["state"] != "skipped") {
        let e = by_wave
            .entry(m["wave"].as_i64().unwrap())
            .or_insert((0, i64::MAX, 0));
        e.0 += 1;
        e.1 = e.1.min(m["started_at"].as_i64().unwrap());
        e.2 = e.2.max(m["finished_at"].as_i64().unwrap());
    }
    let sizes: Vec<usize> = by_wave.values().map(|w| w.0).collect();
    assert_eq!(sizes, vec![10, 100, 185]);
    for w in 1..3 {
        assert!(
            by_wave[&w].1 >= by_wave[&(w - 1)].2 + 120_000,
            "wave {w} started before wave {} finished and soaked",
            w - 1
        );
    }
    // In flight never above 20; at most 30 starts in any 60 s; all starts inside windows.
    let peak = max_in_flight(&ms);
    assert!((10..=20).contains(&peak), "peak in flight {peak}");
    let mut starts: Vec<i64> = ms.iter().filter_map(|m| m["started_at"].as_i64()).collect();
    starts.sort();
    for (i, s) in starts.iter().enumerate() {
        let in_minute = starts[i..].iter().take_while(|t| **t < s + 60_000).count();
        assert!(
            in_minute <= 30,
            "{in_minute} starts within a minute from {s}"
        );
        assert!(
            (1..5).contains(&((s / HOUR) % 24)),
            "started at {s}, outside the window"
        );
    }
    // The timeline and the audit log tell the story.
    let ev = api
        .get(&format!("/api/v1/campaigns/{id}/events?limit=1000"))
        .await;
    let kinds: Vec<&str> = ev["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .filter(|k| !k.starts_with("succeeded"))
        .collect();
    assert_eq!(
        kinds,
        vec!["created", "started", "wave", "wave", "complete"],
        "{ev}"
    );
    let admin = Api::new(&app, "admin").await;
    let audit = admin.get("/api/v1/audit?limit=1000").await.to_string();
    for a in ["campaign.create", "campaign.start", "campaign.complete"] {
        assert!(audit.contains(a), "{a} missing from {audit}");
    }
    assert!(audit.contains(&format!("campaign/{id}")));
    // CSV export: a header and one row per device.
    let csv = api
        .http
        .get(format!(
            "{}/api/v1/campaigns/{id}/devices?format=csv",
            api.base
        ))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 301, "{}", &csv[..200.min(csv.len())]);
    // The live stream ends with the final state once nothing is in flight.
    let sse = api
        .http
        .get(format!("{}/api/v1/campaigns/{id}/stream", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        sse.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let text = sse.text().await.unwrap();
    assert!(text.starts_with("event: progress\ndata: {"), "{text}");
    assert!(text.contains("\"state\":\"completed\""), "{text}");
}

async fn failing_image_trips_the_stop_rule_and_resumes_with_a_fixed_one(b: Backend) {
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), fast).await;
    let api = Api::new(&app, "operator").await;
    let url = app.cwmp_url();
    let mut devs = fleet(&url, 30).await;
    let good_a = upload_image(&api, "a.bin", "2.0", "2.0").await;
    let good_b = upload_image(&api, "b.bin", "2.0", "2.0").await;
    // The third model's image boots back into the old version.
    let bad_c = upload_image(&api, "c.bin", "2.0", "1.0").await;
    let spec = json!({
        "name": "with a bad image",
        "target": {"query": "manufacturer = \"SimCo\""},
        "action": images(&[good_a.clone(), good_b.clone(), bad_c]),
        "pacing": {"max_in_flight": 10, "max_starts_per_minute": 1000},
        "stop_rules": [{"scope": "confirmed", "failures": 3, "of_last": 20}],
    });
    let (s, c) = api
        .call(Method::POST, "/api/v1/campaigns", Some(spec))
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_i64().unwrap();
    api.call(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None)
        .await;
    let state = app.state();
    for _ in 0..50 {
        round(&state, &url, &mut devs).await;
        clock.advance_ms(20_000);
        if campaign(&api, id).await["state"] != "running" {
            break;
        }
    }
    let c = campaign(&api, id).await;
    assert_eq!(c["state"], "paused", "{c}");
    let reason = c["reason"].as_str().unwrap();
    assert!(reason.contains("stop rule"), "{reason}");
    let ms = members(&api, id).await;
    let failed: Vec<&Value> = ms
        .iter()
        .filter(|m| m["state"] == "failed_confirmed")
        .collect();
    assert!(failed.len() >= 3, "{ms:?}");
    for m in &failed {
        assert_eq!(m["model"], "0A0003/GwC", "{m}");
        let err = m["last_error"].as_str().unwrap();
        assert!(err.contains("\"1.0\"") && err.contains("\"2.0\""), "{err}");
    }
    assert!(ms.iter().all(|m| m["state"] != "failed_unconfirmed"));
    // Prometheus: the campaign's devices by state, and this node leads.
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!(
        "ferroacs_campaign_devices{{campaign=\"{id}\",name=\"with a bad image\",campaign_state=\"paused\",state=\"failed_confirmed\"}} {}",
        failed.len()
    );
    assert!(metrics.contains(&line), "{line} not in {metrics}");
    assert!(metrics.contains("ferroacs_scheduler_leader 1"), "{metrics}");
    let pending_at_pause = c["progress"]["totals"]["pending"].as_i64().unwrap();
    assert!(pending_at_pause > 0, "{c}");
    // Paused: nothing new starts, whatever the clock does.
    for _ in 0..3 {
        assert_eq!(round(&state, &url, &mut devs).await, 0);
        clock.advance_ms(60_000);
    }
    let c = campaign(&api, id).await;
    assert_eq!(c["progress"]["totals"]["pending"], pending_at_pause);
    assert_eq!(c["progress"]["totals"]["in_progress"], 0);

    // Replacing the image needs a stored file.
    let mut fixed = images(&[good_a.clone(), good_b.clone(), "nosuchfile".into()]);
    let (s, e) = api
        .call(
            Method::PUT,
            &format!("/api/v1/campaigns/{id}/action"),
            Some(fixed.clone()),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("action.images[2].file_id"),
        "{e}"
    );
    let good_c = upload_image(&api, "c2.bin", "2.0", "2.0").await;
    fixed["images"][2]["file_id"] = json!(good_c);
    let (s, e) = api
        .call(
            Method::PUT,
            &format!("/api/v1/campaigns/{id}/action"),
            Some(fixed),
        )
        .await;
    assert_eq!(s, 200, "{e}");
    let (s, e) = api
        .call(
            Method::POST,
            &format!("/api/v1/campaigns/{id}/retry_failed"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["state"], "running");
    for _ in 0..50 {
        round(&state, &url, &mut devs).await;
        clock.advance_ms(20_000);
        if campaign(&api, id).await["state"] != "running" {
            break;
        }
    }
    let c = campaign(&api, id).await;
    assert_eq!(c["state"], "completed", "{c}");
    assert_eq!(c["progress"]["totals"]["succeeded"], 90, "{c}");
    let failed_ids: HashSet<&str> = failed
        .iter()
        .map(|m| m["device_id"].as_str().unwrap())
        .collect();
    for d in &devs {
        let id = device_id(d);
        assert_eq!(version(d), "2.0", "{id}");
        if failed_ids.contains(id.as_str()) {
            assert_eq!(d.state.downloads.len(), 2, "{id}");
            assert!(d.state.downloads[1].url.contains(&good_c), "{id}");
        } else {
            assert_eq!(d.state.downloads.len(), 1, "{id}");
        }
    }
}

/// Two nodes on one database: the leader is killed mid-campaign (after its devices got their
/// Download, before TransferComplete); the other takes over within 30 s of the injected clock
/// and finishes; nobody downloads twice.
async fn leader_killed_mid_campaign_another_node_takes_over(b: Backend) {
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let files = Arc::new(tempfile::tempdir().unwrap());
    let mut a =
        TestApp::spawn_clocked(db.clone(), Some(files.clone()), clock.as_clock(), fast).await;
    assert!(ferroacs::scheduler::tick(&a.state()).await.unwrap().leader);
    let node_b = TestApp::spawn_clocked(db.clone(), Some(files), clock.as_clock(), fast).await;
    let sb = node_b.state();
    assert!(!ferroacs::scheduler::tick(&sb).await.unwrap().leader);
    let api = Api::new(&a, "operator").await;
    let mut devs = fleet(&a.cwmp_url(), 10).await;
    let f = upload_image(&api, "fw.bin", "2.0", "2.0").await;
    let spec = json!({
        "name": "takeover",
        "target": {"query": "manufacturer = \"SimCo\""},
        "action": images(&[f.clone(), f.clone(), f]),
        "pacing": {"max_in_flight": 6, "max_starts_per_minute": 1000},
    });
    let (s, c) = api
        .call(Method::POST, "/api/v1/campaigns", Some(spec))
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_i64().unwrap();
    api.call(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None)
        .await;
    // A leads and starts six devices; B does nothing.
    let sa = a.state();
    let t = ferroacs::scheduler::tick(&sa).await.unwrap();
    assert_eq!((t.leader, t.started), (true, 6));
    assert!(!ferroacs::scheduler::tick(&sb).await.unwrap().leader);
    // The six fetch their image from A, then A dies.
    let url_a = a.cwmp_url();
    let busy_ids = queued(a.store()).await;
    assert_eq!(busy_ids.len(), 6);
    let mut busy: Vec<&mut Device> = devs
        .iter_mut()
        .filter(|d| busy_ids.contains(&device_id(d)))
        .collect();
    sessions(&url_a, &mut busy, &[("2 PERIODIC", "")]).await;
    a.stop(false).await;
    // Its lease still runs: B waits, then takes over within 30 s.
    clock.advance_ms(5_000);
    assert!(!ferroacs::scheduler::tick(&sb).await.unwrap().leader);
    clock.advance_ms(15_000);
    assert!(ferroacs::scheduler::tick(&sb).await.unwrap().leader);
    let api_b = Api::new(&node_b, "operator").await;
    let url_b = node_b.cwmp_url();
    for _ in 0..30 {
        round(&sb, &url_b, &mut devs).await;
        clock.advance_ms(20_000);
        if campaign(&api_b, id).await["state"] != "running" {
            break;
        }
    }
    let c = campaign(&api_b, id).await;
    assert_eq!(c["state"], "completed", "{c}");
    assert_eq!(c["progress"]["totals"]["succeeded"], 30, "{c}");
    for d in &devs {
        assert_eq!(d.state.downloads.len(), 1, "{}", device_id(d));
        assert_eq!(version(d), "2.0");
    }
    // Two leaders racing over the same members still start each once.
    let store = node_b.store();
    let dev0 = device_id(&devs[0]);
    let racing = tokio::task::spawn_blocking(move || {
        use ferroacs::store::campaigns::CampaignUpdate;
        let new = ferroacs::store::campaigns::NewCampaign {
            name: "race".into(),
            state: "draft".into(),
            spec: "{}".into(),
            created_by: "t".into(),
            created_at: T0,
            updated_at: T0,
        };
        let row = store.insert_campaign(&new, "race").unwrap();
        let member = ferroacs::store::campaigns::MemberRow {
            campaign_id: row.id,
            device_id: dev0.clone(),
            model: "m".into(),
            wave: 0,
            seq: 0,
            state: "pending".into(),
            attempts: 0,
            task_id: None,
            from_version: String::new(),
            target_version: String::new(),
            started_at: None,
            finished_at: None,
            last_error: None,
        };
        store
            .start_campaign(
                row.id,
                &[member],
                &CampaignUpdate {
                    state: Some("running".into()),
                    ..CampaignUpdate::default()
                },
                "x",
                T0,
            )
            .unwrap();
        let task = ferroacs::store::tasks::NewTask {
            device_id: dev0,
            rpc: "Reboot".into(),
            args: "{\"rpc\":\"Reboot\"}".into(),
            status: "pending".into(),
            command_key: "k".into(),
            expires_at: None,
            created_by: "t".into(),
            created_at: T0,
            updated_at: T0,
        };
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (s, t) = (store.clone(), task.clone());
                std::thread::spawn(move || s.start_members(row.id, &[t], T0).unwrap().len())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
    })
    .await
    .unwrap();
    assert_eq!(racing, 1);
}

/// The server stops abruptly mid-campaign (devices have their Download, no verdict yet) and
/// starts again on the same database: the campaign continues, nobody downloads twice, nobody
/// is forgotten.
async fn restart_mid_campaign_starts_nobody_twice(b: Backend) {
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let mut app = TestApp::spawn_clocked(db.clone(), None, clock.as_clock(), fast).await;
    let api = Api::new(&app, "operator").await;
    let mut devs = fleet(&app.cwmp_url(), 10).await;
    let f = upload_image(&api, "fw.bin", "2.0", "2.0").await;
    let spec = json!({
        "name": "restart",
        "target": {"query": "manufacturer = \"SimCo\""},
        "action": images(&[f.clone(), f.clone(), f]),
        "pacing": {"max_in_flight": 8, "max_starts_per_minute": 1000},
        "waves": {"canary": 4, "sizes": ["rest"]},
    });
    let (_, c) = api
        .call(Method::POST, "/api/v1/campaigns", Some(spec))
        .await;
    let id = c["id"].as_i64().unwrap();
    api.call(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None)
        .await;
    // Two rounds, then a tick that starts devices which get their Download; then the crash.
    for _ in 0..2 {
        round(&app.state(), &app.cwmp_url(), &mut devs).await;
        clock.advance_ms(20_000);
    }
    ferroacs::scheduler::tick(&app.state()).await.unwrap();
    let url = app.cwmp_url();
    let busy_ids = queued(app.store()).await;
    assert!(!busy_ids.is_empty(), "{}", campaign(&api, id).await);
    let mut busy: Vec<&mut Device> = devs
        .iter_mut()
        .filter(|d| busy_ids.contains(&device_id(d)))
        .collect();
    sessions(&url, &mut busy, &[("2 PERIODIC", "")]).await;
    app.stop(false).await;
    let files = app.files_dir.clone();
    drop(app);
    // The new process has another node id: it takes over when the old lease expires.
    let app = TestApp::spawn_clocked(db, Some(files), clock.as_clock(), fast).await;
    clock.advance_ms(20_000);
    let state = app.state();
    let url = app.cwmp_url();
    let api = Api::new(&app, "viewer").await;
    for _ in 0..30 {
        round(&state, &url, &mut devs).await;
        clock.advance_ms(20_000);
        if campaign(&api, id).await["state"] != "running" {
            break;
        }
    }
    let c = campaign(&api, id).await;
    assert_eq!(c["state"], "completed", "{c}");
    assert_eq!(c["progress"]["totals"]["succeeded"], 30, "{c}");
    let mut downloads: HashMap<String, usize> = HashMap::new();
    for d in &devs {
        downloads.insert(device_id(d), d.state.downloads.len());
        assert_eq!(version(d), "2.0");
    }
    assert!(downloads.values().all(|n| *n == 1), "{downloads:?}");
}

async fn bad_campaigns_are_refused_naming_the_field(b: Backend) {
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), fast).await;
    let api = Api::new(&app, "operator").await;
    let _devs = fleet(&app.cwmp_url(), 1).await;
    let f = upload_image(&api, "fw.bin", "2.0", "2.0").await;
    let good = json!({
        "name": "ok",
        "target": {"query": "manufacturer = \"SimCo\""},
        "action": images(&[f.clone(), f.clone(), f.clone()]),
    });
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut s = good.clone();
                s["action"]["images"][1]["file_id"] = json!("nope");
                s
            },
            "action.images[1].file_id",
        ),
        (
            {
                let mut s = good.clone();
                s["schedule"] = json!({"windows": [{"cron": "0 3 * * *", "duration_secs": 60}]});
                s
            },
            "schedule.windows[0].cron",
        ),
        (
            {
                let mut s = good.clone();
                s["schedule"] = json!({"windows": [{"cron": "0 0 3 * * *", "duration_secs": 60, "time_zone": "Mars/Base"}]});
                s
            },
            "schedule.windows[0].time_zone",
        ),
        (
            {
                let mut s = good.clone();
                s["target"] = json!({});
                s
            },
            "target",
        ),
        (
            {
                let mut s = good.clone();
                s["target"] = json!({"query": "manufacturer = \"Nobody\""});
                s
            },
            "target: matches no device",
        ),
        (
            {
                let mut s = good.clone();
                s["pacing"] = json!({"max_in_flight": 0});
                s
            },
            "pacing.max_in_flight",
        ),
        (
            {
                let mut s = good.clone();
                s["surprise"] = json!(1);
                s
            },
            "surprise",
        ),
    ];
    for (spec, field) in cases {
        let (s, e) = api
            .call(Method::POST, "/api/v1/campaigns", Some(spec.clone()))
            .await;
        assert_eq!(s, 400, "{spec} -> {e}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{field} not named in {msg}");
    }
    // Overlapping campaigns are refused.
    let (s, c) = api
        .call(Method::POST, "/api/v1/campaigns", Some(good.clone()))
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_i64().unwrap();
    let (s, _) = api
        .call(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None)
        .await;
    assert_eq!(s, 200);
    let (s, e) = api
        .call(Method::POST, "/api/v1/campaigns", Some(good.clone()))
        .await;
    assert_eq!(s, 400, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("target") && msg.contains(&format!("campaign {id}")),
        "{msg}"
    );
    // Controls in the wrong state are conflicts; a viewer cannot act.
    let (s, _) = api
        .call(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None)
        .await;
    assert_eq!(s, 409);
    let viewer = Api::new(&app, "viewer").await;
    let (s, _) = viewer
        .call(Method::POST, &format!("/api/v1/campaigns/{id}/pause"), None)
        .await;
    assert_eq!(s, 403);
    assert_eq!(
        viewer.get(&format!("/api/v1/campaigns/{id}")).await["state"],
        "running"
    );
    let (s, p) = api
        .call(
            Method::POST,
            &format!("/api/v1/campaigns/{id}/pause"),
            Some(json!({"reason": "change freeze"})),
        )
        .await;
    assert_eq!((s, p["state"].as_str()), (200, Some("paused")), "{p}");
    assert_eq!(p["reason"], "change freeze");
    let (s, _) = api.call(Method::GET, "/api/v1/campaigns/abc", None).await;
    assert_eq!(s, 400);
    let (s, _) = api.call(Method::GET, "/api/v1/campaigns/999", None).await;
    assert_eq!(s, 404);
}
