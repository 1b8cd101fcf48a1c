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
pub(crate) const T0: i64 = 1_773_104_400_000;
const HOUR: i64 = 3_600_000;
pub(crate) const MODELS: [(&str, &str); 3] =
    [("0A0001", "GwA"), ("0A0002", "GwB"), ("0A0003", "GwC")];

pub(crate) fn device_id(d: &Device) -> String {
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
pub(crate) async fn fleet(url: &str, per_model: usize) -> Vec<Device> {
    fleet_named(url, [per_model; 3], "S").await
}

/// `counts[m]` devices of model `m` ([`MODELS`]) on SoftwareVersion 1.0, bootstrapped.
async fn fleet_of(url: &str, counts: [usize; 3]) -> Vec<Device> {
    fleet_named(url, counts, "S").await
}

/// Like [`fleet_of`], with serial numbers starting with `prefix`.
async fn fleet_named(url: &str, counts: [usize; 3], prefix: &str) -> Vec<Device> {
    let mut devs = Vec::new();
    for (m, (oui, pc)) in MODELS.iter().enumerate() {
        for i in 0..counts[m] {
            let ident = Identity {
                manufacturer: "SimCo".into(),
                oui: (*oui).into(),
                product_class: (*pc).into(),
                serial_number: format!("{prefix}{m}{i:04}"),
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

/// At most this many simulated CPEs run a session at once (the test server's pool has 4
/// connections); the next starts as soon as one finishes, with no barrier between batches.
const CONCURRENT_SESSIONS: usize = 16;

async fn sessions(url: &str, devs: &mut [&mut Device], events: &[(&str, &str)]) {
    use futures_util::StreamExt;
    let mut runs = futures_util::stream::iter(devs.iter_mut().map(|d| d.run_session(url, events)))
        .buffer_unordered(CONCURRENT_SESSIONS);
    while let Some(r) = runs.next().await {
        let rep = r.expect("session");
        assert!(rep.ended_cleanly(), "{rep:?}");
    }
}

/// Upload a firmware image that makes the simulator report `reports` after rebooting.
pub(crate) async fn upload_image(api: &Api, name: &str, version: &str, reports: &str) -> String {
    let body = format!("SoftwareVersion={reports}\n{}", "x".repeat(2000));
    crate::phones::upload_bytes(api, name, version, body.into_bytes()).await
}

pub(crate) fn images(files: &[String]) -> Value {
    json!({"type": "firmware", "images": MODELS.iter().zip(files).map(|((oui, pc), f)| json!({
        "oui": oui, "product_class": pc, "file_id": f
    })).collect::<Vec<_>>()})
}

/// Devices with a queued task (the ones a connection request would wake).
async fn queued(store: ferroacs::store::Store) -> HashSet<String> {
    tokio::task::spawn_blocking(move || {
        store
            .find_tasks(
                None,
                Some(ferroacs::domain::tasks::TaskStatus::Pending),
                None,
                100_000,
            )
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
pub(crate) async fn round(state: &AppState, url: &str, devs: &mut [Device]) -> usize {
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

pub(crate) fn fast(c: &mut ferroacs::config::Config) {
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
    transient_faults_are_retried_with_backoff_and_permanent_ones_are_not,
    campaign_state_changes_reach_the_webhook,
    a_delivered_campaign_costs_the_webhook_tick_nothing,
    spread_campaign_starts_devices_at_random_over_the_window,
    query_target_is_evaluated_again_when_each_wave_opens,
    upgrade_path_steps_each_device_through_its_intermediate_image,
    bad_upgrade_paths_are_refused_naming_the_step,
    phone_firmware_campaign_is_confirmed_by_the_next_fetch,
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
    // 500 devices: 167, 167 and 166 of the three models.
    let mut devs = fleet_of(&url, [167, 167, 166]).await;
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
    assert_eq!(dry["matching"], 500, "{dry}");
    assert_eq!(dry["compliant"], 5, "{dry}");
    assert_eq!(dry["eligible"], 495, "{dry}");
    assert_eq!(dry["models"]["0A0001/GwA"]["compliant"], 5, "{dry}");
    assert_eq!(dry["models"]["0A0001/GwA"]["eligible"], 162, "{dry}");
    assert_eq!(dry["models"]["0A0002/GwB"]["eligible"], 167, "{dry}");
    assert_eq!(dry["models"]["0A0003/GwC"]["eligible"], 166, "{dry}");
    assert_eq!(dry["waves"], json!([10, 100, 385]), "{dry}");
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
        let started = 495 - c["progress"]["totals"]["pending"].as_i64().unwrap();
        if !jumped && started >= 250 {
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
    assert_eq!(c["progress"]["totals"]["succeeded"], 495, "{c}");
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
    assert_eq!(sizes, vec![10, 100, 385]);
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
    assert_eq!(csv.lines().count(), 501, "{}", &csv[..200.min(csv.len())]);
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
            step: 0,
            steps: 1,
            step_version: String::new(),
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
            status: ferroacs::domain::tasks::TaskStatus::Pending,
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

async fn transient_faults_are_retried_with_backoff_and_permanent_ones_are_not(b: Backend) {
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), fast).await;
    let api = Api::new(&app, "operator").await;
    let url = app.cwmp_url();
    let mut devs = fleet(&url, 2).await;
    let f = upload_image(&api, "fw.bin", "2.0", "2.0").await;
    // Two devices fail their first download with 9010 (transient), one with 9003 (invalid
    // arguments: permanent).
    devs[0].behavior.download_fault = Some(9010);
    devs[1].behavior.download_fault = Some(9010);
    devs[2].behavior.download_fault = Some(9003);
    let spec = json!({
        "name": "with retries",
        "target": {"query": "manufacturer = \"SimCo\""},
        "action": images(&[f.clone(), f.clone(), f]),
        "pacing": {"max_in_flight": 10, "max_starts_per_minute": 1000, "retries": 2},
        "waves": {"success_ratio": 0.0},
    });
    let (s, c) = api
        .call(Method::POST, "/api/v1/campaigns", Some(spec))
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_i64().unwrap();
    api.call(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None)
        .await;
    let state = app.state();
    round(&state, &url, &mut devs).await;
    // After the first attempt: the transient ones wait for their retry, the permanent one
    // failed for good.
    let ms = members(&api, id).await;
    let by_dev: HashMap<String, &Value> = ms
        .iter()
        .map(|m| (m["device_id"].as_str().unwrap().to_string(), m))
        .collect();
    let m0 = by_dev[&device_id(&devs[0])];
    assert_eq!(m0["state"], "pending", "{m0}");
    assert_eq!(m0["attempts"], 1, "{m0}");
    assert!(m0["last_error"].as_str().unwrap().contains("9010"), "{m0}");
    let m2 = by_dev[&device_id(&devs[2])];
    assert_eq!(m2["state"], "failed_confirmed", "{m2}");
    assert_eq!(m2["attempts"], 1, "{m2}");
    // The device recovers; nothing restarts before the one-minute backoff.
    devs[0].behavior.download_fault = None;
    clock.advance_ms(30_000);
    let started = round(&state, &url, &mut devs).await;
    assert_eq!(started, 0);
    clock.advance_ms(31_000);
    round(&state, &url, &mut devs).await;
    // Second attempt: devs[0] succeeds; devs[1] fails again and waits two minutes.
    let ms = members(&api, id).await;
    let state_of = |d: &Device| {
        let id = device_id(d);
        ms.iter()
            .find(|m| m["device_id"] == id.as_str())
            .map(|m| {
                (
                    m["state"].as_str().unwrap().to_string(),
                    m["attempts"].as_i64().unwrap(),
                )
            })
            .unwrap()
    };
    assert_eq!(state_of(&devs[0]), ("succeeded".into(), 2));
    assert_eq!(state_of(&devs[1]), ("pending".into(), 2));
    clock.advance_ms(125_000);
    round(&state, &url, &mut devs).await;
    // Third and last attempt failed: given up.
    let ms = members(&api, id).await;
    let m1 = ms
        .iter()
        .find(|m| m["device_id"] == device_id(&devs[1]).as_str())
        .unwrap();
    assert_eq!(m1["state"], "failed_confirmed", "{m1}");
    assert_eq!(m1["attempts"], 3, "{m1}");
    // Each attempt was one Download on the device, none more.
    assert_eq!(devs[0].state.downloads.len(), 1);
    let ev = api
        .get(&format!("/api/v1/campaigns/{id}/events?limit=1000"))
        .await;
    let retries = ev["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "retry")
        .count();
    assert_eq!(retries, 3, "{ev}");
}

/// A webhook receiver on loopback: answers the n-th POST with `script[n]` (then 204) and
/// keeps each request's head and body.
async fn receiver(
    script: Vec<u16>,
) -> (
    std::net::SocketAddr,
    Arc<std::sync::Mutex<Vec<(String, Value)>>>,
) {
    receiver_on("127.0.0.1:0", script).await
}

/// [`receiver`] on a given address (one that was down until now).
async fn receiver_on(
    at: &str,
    script: Vec<u16>,
) -> (
    std::net::SocketAddr,
    Arc<std::sync::Mutex<Vec<(String, Value)>>>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind(at).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<std::sync::Mutex<Vec<(String, Value)>>> = Arc::default();
    let out = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let mut r = BufReader::new(stream);
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; len];
            r.read_exact(&mut body).await.unwrap();
            let n = {
                let mut s = seen.lock().unwrap();
                s.push((head, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                s.len() - 1
            };
            let status = script.get(n).copied().unwrap_or(204);
            let answer = format!(
                "HTTP/1.1 {status} X\r\nLocation: http://127.0.0.1:9/elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = r.get_mut().write_all(answer.as_bytes()).await;
        }
    });
    (addr, out)
}

async fn timeline(api: &Api, id: i64) -> Vec<Value> {
    api.get(&format!("/api/v1/campaigns/{id}/events?limit=1000"))
        .await["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// A campaign's state changes reach its webhook in timeline order: a redirect is not
/// followed and counts as a failure, failures are retried after a backoff on the injected
/// clock and recorded on the timeline, the payload carries no spec and not the URL's token;
/// a webhook on a denied network is never contacted and its refusal is recorded.
async fn campaign_state_changes_reach_the_webhook(b: Backend) {
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let (addr, seen) = receiver(vec![302, 500]).await;
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), |c| {
        fast(c);
        // Loopback is denied by default: this test allows its receiver explicitly, and
        // denies a private network.
        c.api.connection_request_allow_networks = "127.0.0.1/32".into();
        c.api.connection_request_deny_networks =
            format!("{}, 10.0.0.0/8", ferroacs::connreq::policy::DEFAULT_DENY);
    })
    .await;
    let api = Api::new(&app, "operator").await;
    let url = app.cwmp_url();
    let mut devs = fleet(&url, 2).await;
    let f = upload_image(&api, "fw.bin", "2.0", "2.0").await;
    let hook = format!("http://{addr}/hooks/campaigns?token=s3cret-token");
    let spec = |name: &str, hook: &str| {
        json!({
            "name": name,
            "target": {"query": "manufacturer = \"SimCo\""},
            "action": images(&[f.clone(), f.clone(), f.clone()]),
            "pacing": {"max_in_flight": 10, "max_starts_per_minute": 1000},
            "webhook": {"url": hook},
        })
    };
    // Bad URLs are refused naming the field.
    for bad in [
        "ftp://127.0.0.1/x",
        "http://user:pw@127.0.0.1/x",
        "not a url",
    ] {
        let (s, e) = api
            .call(Method::POST, "/api/v1/campaigns", Some(spec("bad", bad)))
            .await;
        assert_eq!(s, 400, "{bad}: {e}");
        assert!(e.to_string().contains("webhook.url"), "{bad}: {e}");
    }
    let (s, c) = api
        .call(
            Method::POST,
            "/api/v1/campaigns",
            Some(spec("hooked", &hook)),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_i64().unwrap();
    // The URL's secret is sealed where it is stored, and shown to nobody: not to a viewer,
    // not back to the operator, not in the audit log.
    assert!(!c.to_string().contains("s3cret-token"), "{c}");
    let viewer = Api::new(&app, "viewer").await;
    let shown = viewer.get(&format!("/api/v1/campaigns/{id}")).await;
    assert!(!shown.to_string().contains("s3cret-token"), "{shown}");
    assert_eq!(shown["spec"]["webhook"]["url"], "***", "{shown}");
    let stored = {
        let store = app.store();
        tokio::task::spawn_blocking(move || store.get_campaign(id).unwrap().unwrap().spec)
            .await
            .unwrap()
    };
    assert!(
        !stored.contains("s3cret-token"),
        "stored in clear: {stored}"
    );
    let audit = Api::new(&app, "admin").await.get("/api/v1/audit").await;
    assert!(!audit.to_string().contains("s3cret-token"), "{audit}");
    let (s, c) = api
        .call(
            Method::POST,
            "/api/v1/campaigns",
            Some(spec("denied", "http://10.1.2.3:8080/hook")),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let denied = c["id"].as_i64().unwrap();
    let state = app.state();
    let failures = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .filter(|e| e["kind"] == "webhook_failed")
            .map(|e| e["detail"].as_str().unwrap().to_string())
            .collect()
    };
    // First try: a redirect, not followed; recorded; nothing more until the backoff ends.
    assert_eq!(ferroacs::scheduler::tick(&state).await.unwrap().webhooks, 0);
    assert_eq!(seen.lock().unwrap().len(), 1);
    let f1 = failures(&timeline(&api, id).await);
    assert_eq!(f1.len(), 1, "{f1:?}");
    assert!(f1[0].contains("redirects are not followed"), "{f1:?}");
    assert!(f1[0].contains("next try in 30 s"), "{f1:?}");
    let fd = failures(&timeline(&api, denied).await);
    assert_eq!(fd.len(), 1, "{fd:?}");
    assert!(fd[0].contains("refused by the target policy"), "{fd:?}");
    clock.advance_ms(29_000);
    ferroacs::scheduler::tick(&state).await.unwrap();
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "retried before its backoff ended"
    );
    // Second try: 500; then the third goes through.
    clock.advance_ms(1_000);
    ferroacs::scheduler::tick(&state).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2);
    let f2 = failures(&timeline(&api, id).await);
    assert!(
        f2[1].contains("HTTP status 500") && f2[1].contains("next try in 60 s"),
        "{f2:?}"
    );
    clock.advance_ms(60_000);
    assert_eq!(ferroacs::scheduler::tick(&state).await.unwrap().webhooks, 1);
    // Start, pause, resume, run to the end.
    for action in ["start", "pause", "resume"] {
        let (s, e) = api
            .call(
                Method::POST,
                &format!("/api/v1/campaigns/{id}/{action}"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{action}: {e}");
    }
    for _ in 0..20 {
        round(&state, &url, &mut devs).await;
        clock.advance_ms(20_000);
        if campaign(&api, id).await["state"] != "running" {
            break;
        }
    }
    ferroacs::scheduler::tick(&state).await.unwrap();
    assert_eq!(campaign(&api, id).await["state"], "completed");
    // Every state change went out once, in timeline order, after the two failed tries.
    let expected: Vec<(i64, String)> = timeline(&api, id)
        .await
        .iter()
        .filter(|e| e["device_id"].is_null() && e["kind"] != "webhook_failed")
        .map(|e| {
            (
                e["id"].as_i64().unwrap(),
                e["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let kinds: Vec<&str> = expected.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"created"), "{kinds:?}");
    assert!(
        ["started", "pause", "resume", "complete"]
            .iter()
            .all(|k| kinds.contains(k)),
        "{kinds:?}"
    );
    let seen = seen.lock().unwrap().clone();
    let got: Vec<(i64, String)> = seen
        .iter()
        .map(|(_, b)| {
            (
                b["event"]["id"].as_i64().unwrap(),
                b["event"]["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got[0], expected[0]);
    assert_eq!(got[1], expected[0]);
    assert_eq!(got[2..], expected[..], "{seen:?}");
    for (head, body) in &seen {
        assert!(
            head.starts_with("POST /hooks/campaigns?token=s3cret-token HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        assert_eq!(body["campaign"]["id"], id);
        assert_eq!(body["campaign"]["name"], "hooked");
        let text = body.to_string();
        assert!(!text.contains("s3cret") && !text.contains(&f), "{text}");
    }
    let last = &seen.last().unwrap().1;
    assert_eq!(last["event"]["kind"], "complete", "{last}");
    assert_eq!(last["campaign"]["state"], "completed", "{last}");
    assert_eq!(last["counts"]["succeeded"], 6, "{last}");
}

/// With `pacing.spread`, each device starts at its own random time inside the window (drawn
/// from a hash of the campaign and the device): the starts fall over the whole hour instead
/// of at its opening, none before its drawn time, and the limits still hold. A device whose
/// time came too late for this window starts in the next one.
async fn spread_campaign_starts_devices_at_random_over_the_window(b: Backend) {
    use ferroacs::domain::campaigns::plan;
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), fast).await;
    let api = Api::new(&app, "operator").await;
    let url = app.cwmp_url();
    let mut devs = fleet(&url, 20).await;
    let f = upload_image(&api, "fw.bin", "2.0", "2.0").await;
    let spec = json!({
        "name": "spread over the night",
        "target": {"query": "manufacturer = \"SimCo\""},
        "action": images(&[f.clone(), f.clone(), f]),
        "schedule": {"windows": [{"cron": "0 0 1 * * *", "duration_secs": 3600, "time_zone": "UTC"}]},
        "pacing": {"max_in_flight": 8, "max_starts_per_minute": 4, "spread": true},
    });
    let (s, c) = api
        .call(Method::POST, "/api/v1/campaigns", Some(spec))
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_i64().unwrap();
    let (s, e) = api
        .call(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None)
        .await;
    assert_eq!(s, 200, "{e}");
    let state = app.state();
    for _ in 0..400 {
        round(&state, &url, &mut devs).await;
        if campaign(&api, id).await["state"] != "running" {
            break;
        }
        clock.advance_ms(20_000);
        if clock.now() >= T0 + HOUR && clock.now() < T0 + 24 * HOUR {
            // The window closed: the next night's.
            clock.set(T0 + 24 * HOUR);
        }
    }
    let c = campaign(&api, id).await;
    assert_eq!(c["state"], "completed", "{c}");
    assert_eq!(c["progress"]["totals"]["succeeded"], 60, "{c}");
    let ms = members(&api, id).await;
    let mut first_night = Vec::new();
    for m in &ms {
        let dev = m["device_id"].as_str().unwrap();
        let at = m["started_at"].as_i64().unwrap();
        let night = if at < T0 + HOUR { T0 } else { T0 + 24 * HOUR };
        let drawn = plan::jittered_start(plan::jitter_seed(id, dev), (night, night + HOUR));
        assert!(
            at >= drawn,
            "{dev} started at {at}, before its drawn time {drawn}"
        );
        assert!(
            (night..night + HOUR).contains(&at),
            "{dev} started outside the window"
        );
        if night == T0 {
            first_night.push(at);
        }
    }
    // Over the whole hour: each quarter-hour gets its share (15 of 60, give or take), and the
    // first 5 minutes start far fewer than the 20 the per-minute limit would allow.
    assert!(
        first_night.len() >= 55,
        "{} started the first night",
        first_night.len()
    );
    let mut quarters = [0usize; 4];
    for at in &first_night {
        quarters[((at - T0) / 900_000) as usize] += 1;
    }
    assert!(
        quarters.iter().all(|n| (5..=25).contains(n)),
        "{quarters:?}"
    );
    let early = first_night.iter().filter(|at| **at < T0 + 300_000).count();
    assert!(
        early <= 12,
        "{early} started in the window's first 5 minutes"
    );
    // The limits: at most 4 starts in any 60 s, never more than 8 in flight.
    let mut starts: Vec<i64> = ms.iter().filter_map(|m| m["started_at"].as_i64()).collect();
    starts.sort_unstable();
    for (i, s) in starts.iter().enumerate() {
        let in_minute = starts[i..].iter().take_while(|t| **t < s + 60_000).count();
        assert!(
            in_minute <= 4,
            "{in_minute} starts within a minute from {s}"
        );
    }
    assert!(
        max_in_flight(&ms) <= 8,
        "peak in flight {}",
        max_in_flight(&ms)
    );
}

/// A completed campaign's webhook: the state changes made while the receiver was down go
/// out, in order and once each, when it is back (after the backoff, on the injected clock).
/// Once all are delivered, the campaign costs the tick's webhook delivery no statement: the
/// one query that looks for due webhooks is all that runs.
async fn a_delivered_campaign_costs_the_webhook_tick_nothing(b: Backend) {
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    // The receiver is down: its port was taken and let go, so a POST is refused.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), |c| {
        fast(c);
        c.api.connection_request_allow_networks = "127.0.0.1/32".into();
    })
    .await;
    let api = Api::new(&app, "operator").await;
    let url = app.cwmp_url();
    let mut devs = fleet(&url, 1).await;
    let f = upload_image(&api, "fw.bin", "2.0", "2.0").await;
    let spec = json!({
        "name": "hooked while down",
        "target": {"query": "manufacturer = \"SimCo\""},
        "action": images(&[f.clone(), f.clone(), f]),
        "pacing": {"max_in_flight": 10, "max_starts_per_minute": 1000},
        "webhook": {"url": format!("http://{addr}/hook")},
    });
    let (s, c) = api
        .call(Method::POST, "/api/v1/campaigns", Some(spec))
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_i64().unwrap();
    let (s, e) = api
        .call(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None)
        .await;
    assert_eq!(s, 200, "{e}");
    let state = app.state();
    for _ in 0..20 {
        round(&state, &url, &mut devs).await;
        clock.advance_ms(20_000);
        if campaign(&api, id).await["state"] != "running" {
            break;
        }
    }
    ferroacs::scheduler::tick(&state).await.unwrap();
    assert_eq!(campaign(&api, id).await["state"], "completed");
    let items = timeline(&api, id).await;
    let failed: Vec<&str> = items
        .iter()
        .filter(|e| e["kind"] == "webhook_failed")
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(!failed.is_empty(), "{items:?}");
    assert!(failed[0].starts_with("\"created\""), "{failed:?}");
    // The receiver comes back; the held-back entries go out after the backoff.
    let (_, seen) = receiver_on(&addr.to_string(), vec![]).await;
    for _ in 0..30 {
        clock.advance_ms(300_000);
        ferroacs::scheduler::tick(&state).await.unwrap();
        let done = seen
            .lock()
            .unwrap()
            .iter()
            .any(|(_, b)| b["event"]["kind"] == "complete");
        if done {
            break;
        }
    }
    let expected: Vec<(i64, String)> = timeline(&api, id)
        .await
        .iter()
        .filter(|e| e["device_id"].is_null() && e["kind"] != "webhook_failed")
        .map(|e| {
            (
                e["id"].as_i64().unwrap(),
                e["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let kinds: Vec<&str> = expected.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        kinds,
        vec!["created", "started", "complete"],
        "{expected:?}"
    );
    let got: Vec<(i64, String)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| {
            (
                b["event"]["id"].as_i64().unwrap(),
                b["event"]["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, expected, "each state change once, in order");
    // All delivered: a tick sends nothing more, and the webhook delivery costs exactly one
    // statement (the query for due webhooks), nothing for this campaign.
    clock.advance_ms(3_600_000);
    assert_eq!(ferroacs::scheduler::tick(&state).await.unwrap().webhooks, 0);
    let before = state.store.statements_executed();
    let sent = ferroacs::domain::campaigns::notify::deliver_due(
        &state.store,
        &state.services.webhooks,
        clock.now(),
    )
    .await
    .unwrap();
    let statements = state.store.statements_executed() - before;
    assert_eq!(sent, 0);
    assert_eq!(statements, 1, "statements for delivered webhooks");
    assert_eq!(
        seen.lock().unwrap().len(),
        expected.len(),
        "nothing sent twice"
    );
    // A new state change of the campaign makes it due again: cloning does not touch it,
    // but the clone (a draft with the same webhook) has its own "created" to send.
    let (s, c) = api
        .call(Method::POST, &format!("/api/v1/campaigns/{id}/clone"), None)
        .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(ferroacs::scheduler::tick(&state).await.unwrap().webhooks, 1);
    let last = seen.lock().unwrap().last().cloned().unwrap().1;
    assert_eq!(last["campaign"]["id"], c["id"], "{last}");
    assert_eq!(last["event"]["kind"], "created", "{last}");
}

/// With `target.reevaluate`, opening a wave evaluates the query again: devices that match
/// now join the last wave, a pending device that became compliant is skipped; nobody that
/// already started is touched, nobody downloads twice.
async fn query_target_is_evaluated_again_when_each_wave_opens(b: Backend) {
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), fast).await;
    let api = Api::new(&app, "operator").await;
    let url = app.cwmp_url();
    let mut devs = fleet(&url, 3).await;
    let f = upload_image(&api, "fw.bin", "2.0", "2.0").await;
    let mut spec = json!({
        "name": "follows the query",
        "target": {"query": "manufacturer = \"SimCo\"", "reevaluate": true},
        "action": images(&[f.clone(), f.clone(), f.clone()]),
        "pacing": {"max_in_flight": 20, "max_starts_per_minute": 1000},
        "waves": {"canary": 3, "sizes": ["rest"], "success_ratio": 1.0},
    });
    // A fixed list cannot be evaluated again.
    let mut listed = spec.clone();
    listed["target"] = json!({"devices": [device_id(&devs[0])], "reevaluate": true});
    let (s, e) = api
        .call(Method::POST, "/api/v1/campaigns", Some(listed))
        .await;
    assert_eq!(s, 400, "{e}");
    assert!(e.to_string().contains("target.reevaluate"), "{e}");
    let (s, c) = api
        .call(Method::POST, "/api/v1/campaigns", Some(spec.clone()))
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_i64().unwrap();
    let (s, _) = api
        .call(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None)
        .await;
    assert_eq!(s, 200);
    // Before the canary finishes: three new devices appear, and one device of the second
    // wave gets the new version by other means.
    let mut newcomers = fleet_named(&url, [1; 3], "N").await;
    let second: Vec<String> = members(&api, id)
        .await
        .iter()
        .filter(|m| m["wave"] == 1)
        .map(|m| m["device_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(second.len(), 6);
    let upgraded = devs.iter_mut().find(|d| device_id(d) == second[0]).unwrap();
    let p = upgraded.path("DeviceInfo.SoftwareVersion");
    upgraded.set_value(&p, "2.0");
    sessions(&url, &mut [upgraded], &[("2 PERIODIC", "")]).await;
    devs.append(&mut newcomers);
    let state = app.state();
    for _ in 0..20 {
        round(&state, &url, &mut devs).await;
        clock.advance_ms(20_000);
        if campaign(&api, id).await["state"] != "running" {
            break;
        }
    }
    let c = campaign(&api, id).await;
    assert_eq!(c["state"], "completed", "{c}");
    assert_eq!(c["progress"]["totals"]["succeeded"], 11, "{c}");
    assert_eq!(c["progress"]["totals"]["skipped"], 1, "{c}");
    let ms = members(&api, id).await;
    let by_id: HashMap<&str, &Value> = ms
        .iter()
        .map(|m| (m["device_id"].as_str().unwrap(), m))
        .collect();
    let skipped = by_id[second[0].as_str()];
    assert_eq!(skipped["state"], "skipped", "{skipped}");
    assert_eq!(skipped["last_error"], "already compliant", "{skipped}");
    for d in &devs {
        let did = device_id(d);
        assert_eq!(version(d), "2.0", "{did}");
        let want = usize::from(did != second[0]);
        assert_eq!(d.state.downloads.len(), want, "{did}");
        if d.identity.serial_number.starts_with('N') {
            assert_eq!(by_id[did.as_str()]["wave"], 1, "{did}");
        }
    }
    let ev = timeline(&api, id).await;
    let re: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "reevaluated").collect();
    assert_eq!(re.len(), 1, "{ev:?}");
    let detail = re[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("3 device(s) joined wave 1")
            && detail.contains("1 pending device(s) dropped"),
        "{detail}"
    );
    // Frozen (the default): a new device after the start is not taken.
    spec["name"] = json!("frozen");
    spec["target"]["reevaluate"] = json!(false);
    spec["action"] = images(&[
        upload_image(&api, "fw3a.bin", "3.0", "3.0").await,
        upload_image(&api, "fw3b.bin", "3.0", "3.0").await,
        upload_image(&api, "fw3c.bin", "3.0", "3.0").await,
    ]);
    let (_, c) = api
        .call(Method::POST, "/api/v1/campaigns", Some(spec))
        .await;
    let frozen = c["id"].as_i64().unwrap();
    api.call(
        Method::POST,
        &format!("/api/v1/campaigns/{frozen}/start"),
        None,
    )
    .await;
    let mut late = fleet_named(&url, [1; 3], "L").await;
    devs.append(&mut late);
    for _ in 0..20 {
        round(&state, &url, &mut devs).await;
        clock.advance_ms(20_000);
        if campaign(&api, frozen).await["state"] != "running" {
            break;
        }
    }
    let c = campaign(&api, frozen).await;
    assert_eq!(c["state"], "completed", "{c}");
    assert_eq!(c["progress"]["totals"]["succeeded"], 12, "{c}");
    for d in devs
        .iter()
        .filter(|d| d.identity.serial_number.starts_with('L'))
    {
        assert_eq!(version(d), "1.0", "{}", device_id(d));
    }
}

/// The first model goes 1.0 → 1.5 → 2.0 (two devices already on 1.5 get 2.0 only), the
/// second straight to 2.0, the third through 1.5 to a 2.0 that boots back into 1.5: each of
/// its devices fails once, at the second step, and the stop rule counts it once.
async fn upgrade_path_steps_each_device_through_its_intermediate_image(b: Backend) {
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), fast).await;
    let api = Api::new(&app, "operator").await;
    let url = app.cwmp_url();
    let mut devs = fleet(&url, 8).await;
    for d in devs.iter_mut().take(2) {
        let p = d.path("DeviceInfo.SoftwareVersion");
        d.set_value(&p, "1.5");
    }
    let mut first2: Vec<&mut Device> = devs.iter_mut().take(2).collect();
    sessions(&url, &mut first2, &[("2 PERIODIC", "")]).await;
    let stone = upload_image(&api, "stone.bin", "1.5", "1.5").await;
    let good = upload_image(&api, "good.bin", "2.0", "2.0").await;
    let bad = upload_image(&api, "bad.bin", "2.0", "1.5").await;
    let path = |last: &str| {
        json!({"file_id": last, "from_versions": ["1.5"],
               "steps": [{"file_id": stone, "from_versions": ["1.0"]}]})
    };
    let mut action = images(&[good.clone(), good.clone(), bad.clone()]);
    for (i, last) in [(0, &good), (2, &bad)] {
        let mut img = path(last);
        img["oui"] = action["images"][i]["oui"].clone();
        img["product_class"] = action["images"][i]["product_class"].clone();
        action["images"][i] = img;
    }
    let spec = json!({
        "name": "through 1.5",
        "target": {"query": "manufacturer = \"SimCo\""},
        "action": action,
        "pacing": {"max_in_flight": 30, "max_starts_per_minute": 1000, "confirm_timeout_secs": 86_400},
        "waves": {"success_ratio": 0.0},
        // All 8 devices of the third model fail; counted twice (once per step) the rule
        // would trip at the fourth.
        "stop_rules": [{"scope": "confirmed", "failures": 8}],
    });
    let (s, c) = api
        .call(Method::POST, "/api/v1/campaigns", Some(spec))
        .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["dry_run"]["eligible"], 24, "{c}");
    let id = c["id"].as_i64().unwrap();
    // The stored specification names the version each step leads to.
    assert_eq!(
        c["spec"]["action"]["images"][0]["steps"][0]["version"], "1.5",
        "{c}"
    );
    let (s, _) = api
        .call(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None)
        .await;
    assert_eq!(s, 200);
    let state = app.state();
    // Part way: a device of the first model on 1.5 with its second image to come.
    let mut seen_between = false;
    for _ in 0..40 {
        round(&state, &url, &mut devs).await;
        clock.advance_ms(20_000);
        let ms = members(&api, id).await;
        seen_between |= ms.iter().any(|m| {
            m["model"] == "0A0001/GwA"
                && m["steps"] == 2
                && m["step"] == 1
                && m["step_version"] == "2.0"
                && m["state"] != "succeeded"
        });
        if campaign(&api, id).await["state"] != "running" {
            break;
        }
    }
    assert!(seen_between, "no device was seen between its two images");
    let c = campaign(&api, id).await;
    assert_eq!(c["state"], "paused", "{c}");
    let reason = c["reason"].as_str().unwrap();
    assert!(reason.contains("8 devices failed (confirmed)"), "{reason}");
    assert_eq!(c["progress"]["totals"]["failed_confirmed"], 8, "{c}");
    // The failing model: each device took both images, reports 1.5, and failed once, at
    // its second step, with the version it came back on.
    let ms = members(&api, id).await;
    let by_id: HashMap<String, &Value> = ms
        .iter()
        .map(|m| (m["device_id"].as_str().unwrap().to_string(), m))
        .collect();
    for d in devs.iter().filter(|d| d.identity.product_class == "GwC") {
        let m = by_id[&device_id(d)];
        assert_eq!(m["state"], "failed_confirmed", "{m}");
        assert_eq!(
            (m["step"].as_i64(), m["steps"].as_i64()),
            (Some(1), Some(2))
        );
        assert!(m["last_error"].as_str().unwrap().contains("1.5"), "{m}");
        assert_eq!(d.state.downloads.len(), 2, "{}", device_id(d));
        assert_eq!(version(d), "1.5");
    }
    // The rule counts from the resume; the others finish.
    let (s, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/campaigns/{id}/resume"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    for _ in 0..40 {
        round(&state, &url, &mut devs).await;
        clock.advance_ms(20_000);
        if campaign(&api, id).await["state"] != "running" {
            break;
        }
    }
    let c = campaign(&api, id).await;
    assert_eq!(c["state"], "completed", "{c}");
    assert_eq!(c["progress"]["totals"]["succeeded"], 16, "{c}");
    let ms = members(&api, id).await;
    let by_id: HashMap<String, &Value> = ms
        .iter()
        .map(|m| (m["device_id"].as_str().unwrap().to_string(), m))
        .collect();
    for (i, d) in devs.iter().enumerate() {
        let m = by_id[&device_id(d)];
        match d.identity.product_class.as_str() {
            "GwA" if i < 2 => {
                // Already on 1.5: the final image only.
                assert_eq!(d.state.downloads.len(), 1, "{m}");
                assert_eq!(
                    (m["step"].as_i64(), m["steps"].as_i64()),
                    (Some(0), Some(1))
                );
            }
            "GwA" => {
                assert_eq!(d.state.downloads.len(), 2, "{m}");
                assert_eq!(
                    (m["step"].as_i64(), m["steps"].as_i64()),
                    (Some(1), Some(2))
                );
            }
            "GwB" => {
                assert_eq!(d.state.downloads.len(), 1, "{m}");
                assert_eq!(m["steps"], 1, "{m}");
            }
            _ => continue,
        }
        assert_eq!(m["state"], "succeeded", "{m}");
        assert_eq!(m["step_version"], "2.0", "{m}");
        assert_eq!(version(d), "2.0", "{}", device_id(d));
    }
    // The timeline records each step of a device; the CSV and the console show the step.
    let stepped = &devs[2];
    let ev = api
        .get(&format!(
            "/api/v1/campaigns/{id}/events?device_id={}&limit=100",
            device_id(stepped)
        ))
        .await;
    let kinds: Vec<&str> = ev["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["step", "succeeded"], "{ev}");
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
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .ends_with(",step,steps,step_version"));
    let line = csv
        .lines()
        .find(|l| l.starts_with(&format!("\"{}\"", device_id(stepped))))
        .unwrap();
    assert!(line.ends_with(",1,2,\"2.0\""), "{line}");
    crate::console::add_user(&app, "olga", "viewer").await;
    let (_, olga) = crate::console::Raw::login(&app, "olga", crate::console::PASSWORD).await;
    let (s, page) = olga.get(&format!("/campaigns/{id}")).await;
    assert_eq!(s, 200);
    assert!(
        page.contains("2 of 2 steps"),
        "no step progress on the page"
    );
}

async fn bad_upgrade_paths_are_refused_naming_the_step(b: Backend) {
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), fast).await;
    let api = Api::new(&app, "operator").await;
    let _devs = fleet(&app.cwmp_url(), 1).await;
    let f15 = upload_image(&api, "s.bin", "1.5", "1.5").await;
    let f20 = upload_image(&api, "f.bin", "2.0", "2.0").await;
    let with_steps = |steps: Value, from: Value| {
        json!({
            "name": "path",
            "target": {"query": "manufacturer = \"SimCo\""},
            "action": {"type": "firmware", "images": [{
                "oui": "0A0001", "product_class": "GwA", "file_id": f20,
                "from_versions": from, "steps": steps}]},
        })
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            with_steps(
                json!([{"file_id": "nope", "from_versions": ["1.0"]}]),
                json!([]),
            ),
            "action.images[0].steps[0].file_id",
            "no stored file",
        ),
        (
            with_steps(json!([{"file_id": f15, "from_versions": []}]), json!([])),
            "action.images[0].steps[0].from_versions",
            "applies from",
        ),
        (
            with_steps(
                json!([{"file_id": f15, "from_versions": ["1.0"]},
                       {"file_id": f20, "version": "1.0", "from_versions": ["1.5"]}]),
                json!([]),
            ),
            "action.images[0].steps[1].version",
            "loop",
        ),
        (
            with_steps(
                json!([{"file_id": f15, "from_versions": ["1.0"]}]),
                json!(["1.4"]),
            ),
            "action.images[0].steps[0].version",
            "unreachable",
        ),
        (
            with_steps(
                json!([{"file_id": f15, "from_versions": ["1.0"]}]),
                json!(["1.0", "1.5"]),
            ),
            "action.images[0].from_versions",
            "already applies from",
        ),
    ];
    for (spec, field, why) in cases {
        let (s, e) = api
            .call(Method::POST, "/api/v1/campaigns", Some(spec.clone()))
            .await;
        assert_eq!(s, 400, "{spec} -> {e}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(field) && msg.contains(why),
            "{field} / {why} not in {msg}"
        );
    }
    // The good path is accepted; a device on a version no link applies from is skipped.
    let (s, c) = api
        .call(
            Method::POST,
            "/api/v1/campaigns?dry_run=true",
            Some(with_steps(
                json!([{"file_id": f15, "from_versions": ["0.9"]}]),
                json!(["1.5"]),
            )),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    // One device per model on 1.0: two models have no image, the first's path starts at 0.9.
    assert_eq!(
        (c["matching"].as_i64(), c["skipped"].as_i64()),
        (Some(3), Some(3)),
        "{c}"
    );
}

/// A simulated Polycom phone: fetches its master file with a User-Agent naming the firmware
/// it runs, and installs the firmware the file names (a VVX 500 boots back into the old one).
struct Phone {
    mac: String,
    model: &'static str,
    url: String,
    firmware: String,
    fetches: usize,
}

impl Phone {
    async fn fetch(&mut self, http: &reqwest::Client) -> String {
        let ua = format!(
            "FileTransport PolycomVVX-{}-UA/{}",
            self.model.to_uppercase().replace("VVX", "VVX_"),
            self.firmware
        );
        let res = http
            .get(format!("{}/{}.cfg", self.url, self.mac.to_uppercase()))
            .header("User-Agent", ua)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        self.fetches += 1;
        let body = res.text().await.unwrap();
        if body.contains("APP_FILE_PATH=\"fw/vvx-6.4.ld\"") && self.model == "vvx400" {
            self.firmware = "6.4.0.1".into();
        }
        body
    }
}

/// Phones in waves, inside the campaign's limits: each started phone's files name the new
/// firmware, its next boot's fetch confirms it, and the model whose phones come back on the
/// old firmware trips the stop rule.
async fn phone_firmware_campaign_is_confirmed_by_the_next_fetch(b: Backend) {
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), fast).await;
    let api = Api::new(&app, "operator").await;
    let http = reqwest::Client::new();
    let mut phones = Vec::new();
    for i in 0..9 {
        let model = if i < 6 { "vvx400" } else { "vvx500" };
        let mac = format!("0004f2{i:06x}");
        let (s, v) = api
            .call(
                Method::POST,
                "/api/v1/phones",
                Some(json!({"mac": mac, "vendor": "polycom", "model": model})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let url = api.get(&format!("/api/v1/phones/{mac}/url")).await["url"]
            .as_str()
            .unwrap()
            .to_string();
        let mut p = Phone {
            mac,
            model,
            url,
            firmware: "5.9.0.9373".into(),
            fetches: 0,
        };
        let body = p.fetch(&http).await;
        assert!(body.contains("APP_FILE_PATH=\"sip.ld\""), "{body}");
        phones.push(p);
    }
    // A CWMP device in the target is skipped: the campaign upgrades phones only.
    let _cpe = fleet(&app.cwmp_url(), 1).await;
    let image = |model: &str| {
        json!({"vendor": "polycom", "model": model, "firmware_file": "fw/vvx-6.4.ld",
               "version": "6.4.0.1", "from_versions": ["5.9.0.9373"]})
    };
    let spec = json!({
        "name": "phones to 6.4",
        "target": {"query": "id LIKE \"*\""},
        "action": {"type": "phone_firmware", "images": [image("vvx400"), image("VVX500")]},
        "schedule": {"windows": [{"cron": "0 0 1 * * *", "duration_secs": 4 * 3600, "time_zone": "UTC"}]},
        "pacing": {"max_in_flight": 4, "max_starts_per_minute": 100, "confirm_timeout_secs": 3600},
        "waves": {"canary": 3, "sizes": ["rest"], "success_ratio": 0.0},
        "stop_rules": [{"scope": "confirmed", "failures": 3}],
    });
    let (s, dry) = api
        .call(
            Method::POST,
            "/api/v1/campaigns?dry_run=true",
            Some(spec.clone()),
        )
        .await;
    assert_eq!(s, 200, "{dry}");
    assert_eq!(dry["eligible"], 9, "{dry}");
    assert_eq!(dry["models"]["polycom/vvx500"]["eligible"], 3, "{dry}");
    assert_eq!(dry["skipped"], 3, "{dry}");
    let (s, c) = api
        .call(Method::POST, "/api/v1/campaigns", Some(spec))
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_i64().unwrap();
    let (s, _) = api
        .call(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None)
        .await;
    assert_eq!(s, 200);
    let state = app.state();
    for _ in 0..30 {
        ferroacs::scheduler::tick(&state).await.unwrap();
        for p in phones.iter_mut() {
            p.fetch(&http).await;
        }
        clock.advance_ms(6 * 60_000);
        ferroacs::scheduler::tick(&state).await.unwrap();
        if campaign(&api, id).await["state"] != "running" {
            break;
        }
    }
    let c = campaign(&api, id).await;
    assert_eq!(c["state"], "paused", "{c}");
    assert!(
        c["reason"]
            .as_str()
            .unwrap()
            .contains("3 devices failed (confirmed)"),
        "{c}"
    );
    // Resumed, the rest of the phones finish.
    let (s, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/campaigns/{id}/resume"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    for _ in 0..30 {
        if campaign(&api, id).await["state"] != "running" {
            break;
        }
        ferroacs::scheduler::tick(&state).await.unwrap();
        for p in phones.iter_mut() {
            p.fetch(&http).await;
        }
        clock.advance_ms(6 * 60_000);
        ferroacs::scheduler::tick(&state).await.unwrap();
    }
    let c = campaign(&api, id).await;
    assert_eq!(c["state"], "completed", "{c}");
    assert_eq!(c["progress"]["totals"]["succeeded"], 6, "{c}");
    let ms = members(&api, id).await;
    assert!(max_in_flight(&ms) <= 4, "more than 4 phones in flight");
    let by_id: HashMap<String, &Value> = ms
        .iter()
        .map(|m| (m["device_id"].as_str().unwrap().to_string(), m))
        .collect();
    for p in &phones {
        let m = by_id[&format!("phone:{}", p.mac)];
        if p.model == "vvx400" {
            assert_eq!(m["state"], "succeeded", "{m}");
            assert_eq!(p.firmware, "6.4.0.1");
        } else {
            assert_eq!(m["state"], "failed_confirmed", "{m}");
            assert!(
                m["last_error"].as_str().unwrap().contains("5.9.0.9373"),
                "{m}"
            );
        }
        assert_eq!(m["from_version"], "5.9.0.9373", "{m}");
        assert_eq!(m["target_version"], "6.4.0.1", "{m}");
        // The phone's own settings name the firmware; its record shows what it reports.
        let ph = api.get(&format!("/api/v1/phones/{}", p.mac)).await;
        assert_eq!(ph["settings"]["firmware_file"], "fw/vvx-6.4.ld", "{ph}");
        assert_eq!(ph["firmware"], p.firmware.as_str(), "{ph}");
    }
    // The canary went first: its three phones started before any other.
    let mut starts: Vec<(i64, i64)> = ms
        .iter()
        .filter(|m| m["state"] != "skipped")
        .map(|m| {
            (
                m["wave"].as_i64().unwrap(),
                m["started_at"].as_i64().unwrap(),
            )
        })
        .collect();
    starts.sort();
    let canary_last = starts
        .iter()
        .filter(|s| s.0 == 0)
        .map(|s| s.1)
        .max()
        .unwrap();
    assert!(starts
        .iter()
        .filter(|s| s.0 == 1)
        .all(|s| s.1 > canary_last));
}
