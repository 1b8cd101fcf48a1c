//! The load generator, briefly and at small N against the real server: every session must
//! end the way it should (204, with exactly the expected ACS requests). Timings are
//! reported by `scripts/bench`, never asserted here.

use std::time::Duration;

use ferroacs::config::Secret;

use crate::battery;
use crate::loadgen::{self, Arrival, Expect, FleetSpec, Load, DEFAULT_PASSWORD};
use crate::support::{Backend, TestApp};

battery!(loadgen_sessions_all_end_with_204);

fn load(url: &str, arrival: Arrival, secs: f64, expect: Expect) -> Load {
    Load {
        url: url.to_string(),
        arrival,
        duration: Duration::from_secs_f64(secs),
        max_sessions: None,
        once: false,
        events: vec![("2 PERIODIC".into(), String::new())],
        expect,
    }
}

async fn metrics(app: &TestApp) -> String {
    let r = app
        .http()
        .get(app.api_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

async fn loadgen_sessions_all_end_with_204(b: Backend) {
    let app = TestApp::spawn(b, |c| {
        c.cwmp.default_password = Some(Secret(DEFAULT_PASSWORD.into()));
    })
    .await;
    let url = app.cwmp_url();
    let n = 12;
    let fleet = loadgen::fleet(&FleetSpec::new("LGT", n, 60));

    // First contact: bootstrap and discovery of every device.
    let mut first = load(&url, Arrival::Closed(4), 60.0, Expect::Discovery);
    first.once = true;
    first.events.clear();
    let (fleet, p) = loadgen::run_load(fleet, &first).await;
    assert_eq!(p.rec.failed(), 0, "{:?}", p.rec.examples);
    assert_eq!(p.rec.ok, n as u64);

    // Periodic sessions, closed loop then open loop: all quiet, all 204.
    let l = load(&url, Arrival::Closed(4), 1.5, Expect::Quiet);
    let (fleet, p) = loadgen::run_load(fleet, &l).await;
    assert_eq!(p.rec.failed(), 0, "{:?}", p.rec.examples);
    assert!(p.rec.ok >= n as u64, "only {} periodic sessions", p.rec.ok);
    let periodic = p.rec.ok;
    // An arrival that finds all 12 devices still in session is the generator's limit (a
    // loaded machine), not the server's: it sends nothing and is left out here.
    let l = load(&url, Arrival::Open(12.0), 2.0, Expect::Quiet);
    let (fleet, p) = loadgen::run_load(fleet, &l).await;
    let busy = p.rec.errors.get("no_idle_device").copied().unwrap_or(0);
    assert_eq!(p.rec.failed() - busy, 0, "{:?}", p.rec.examples);
    assert!(p.rec.ok >= 12, "only {} open-loop sessions", p.rec.ok);
    let periodic = periodic + p.rec.ok;
    assert_eq!(p.rec.latencies_us.len() as u64, p.rec.ok);

    // Sessions with work: GetParameterValues of 20, SetParameterValues of 5, in that order.
    let tasks = loadgen::task_mix(&fleet, loadgen::TaskMix::Gpv20Spv5).unwrap();
    let store = app.store();
    let queued = tokio::task::spawn_blocking(move || store.insert_tasks(&tasks).unwrap().len())
        .await
        .unwrap();
    assert_eq!(queued, 2 * n);
    let mut l = load(
        &url,
        Arrival::Closed(4),
        60.0,
        Expect::Rpcs(loadgen::TaskMix::Gpv20Spv5.rpcs()),
    );
    l.once = true;
    let (fleet, p) = loadgen::run_load(fleet, &l).await;
    assert_eq!(p.rec.failed(), 0, "{:?}", p.rec.examples);
    assert_eq!(p.rec.ok, n as u64);
    for d in &fleet {
        let set = (0..5)
            .filter(|i| d.model.values().any(|p| p.value == format!("bench-{i}")))
            .count();
        assert_eq!(set, 5, "the device holds the 5 values set");
    }

    // Sessions with one SetParameterValues of one parameter: the value is set on the device
    // and readable through the API once the task reads done.
    let tasks = loadgen::task_mix(&fleet, loadgen::TaskMix::Spv1).unwrap();
    assert_eq!(tasks.len(), n, "one task per device");
    let store = app.store();
    let queued = tokio::task::spawn_blocking(move || store.insert_tasks(&tasks).unwrap())
        .await
        .unwrap();
    let mut l = load(
        &url,
        Arrival::Closed(4),
        60.0,
        Expect::Rpcs(loadgen::TaskMix::Spv1.rpcs()),
    );
    l.once = true;
    let (mut fleet, p) = loadgen::run_load(fleet, &l).await;
    assert_eq!(p.rec.failed(), 0, "{:?}", p.rec.examples);
    assert_eq!(p.rec.ok, n as u64);
    for d in &fleet {
        assert!(
            d.model.values().any(|p| p.value == "bench-one"),
            "the device holds the value set"
        );
    }
    let api = crate::api::Api::new(&app, "operator").await;
    for task in &queued {
        let t = api.get(&format!("/api/v1/tasks/{}", task.id)).await;
        assert_eq!(t["status"], "done", "{t}");
        let args: serde_json::Value = serde_json::from_str(&task.args).unwrap();
        let name = args["values"][0]["name"].as_str().unwrap();
        let p = api
            .get(&format!(
                "/api/v1/devices/{}/parameters?prefix={name}",
                task.device_id
            ))
            .await;
        assert_eq!(p["items"][0]["value"], "bench-one", "{name} reads {p}");
    }

    // The server's own account of it.
    let page = metrics(&app).await;
    let completed = loadgen::prom_value(&page, "ferroacs_cwmp_sessions_total").unwrap();
    assert!(
        completed >= (n as u64 * 3 + periodic) as f64,
        "{completed} sessions counted\n{page}"
    );
    assert!(
        page.contains("ferroacs_tasks{status=\"done\"} 36"),
        "{page}"
    );
    assert!(page.contains("ferroacs_connection_requests_total{outcome=\"ok\"} 0"));
    assert!(loadgen::prom_value(&page, "process_resident_memory_bytes").unwrap() > 0.0);
    assert!(loadgen::prom_value(&page, "ferroacs_cwmp_session_db_seconds_total").unwrap() > 0.0);

    // Sessions held open after the InformResponse show up as active.
    let (clients, rec) = loadgen::hold_sessions(&mut fleet[..5], &url, 5).await;
    assert_eq!(rec.failed(), 0, "{:?}", rec.examples);
    assert_eq!(clients.len(), 5);
    let page = metrics(&app).await;
    assert_eq!(
        loadgen::prom_value(&page, "ferroacs_cwmp_sessions_active"),
        Some(5.0),
        "{page}"
    );
    drop(clients);
}

/// The raw ceiling answers the same exchange, so the same runner completes its sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_ceiling_serves_the_session_pattern() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let sys = actix_web::rt::System::new();
        sys.block_on(async move {
            let srv = loadgen::raw_server(l, 300).unwrap();
            tx.send(srv.handle()).unwrap();
            let _ = srv.await;
        });
    });
    let handle = rx.recv().unwrap();
    let mut fleet = loadgen::fleet(&FleetSpec::new("RAW", 4, 20));
    for d in fleet.iter_mut() {
        d.state.bootstrapped = true;
    }
    let l = load(
        &format!("http://{addr}/"),
        Arrival::Closed(2),
        0.5,
        Expect::Quiet,
    );
    let (_, p) = loadgen::run_load(fleet, &l).await;
    assert_eq!(p.rec.failed(), 0, "{:?}", p.rec.examples);
    assert!(p.rec.ok >= 4);

    // A first contact gets the exchange ferroacs has with a new device of 300 parameters
    // (objects and leaves): the bootstrap settings, the names of the whole tree, the
    // leaves' values in batches of 128, and the device answers every request.
    let mut fleet = loadgen::fleet(&FleetSpec::new("RAWD", 2, 300));
    let leaves = fleet[0].model.values().filter(|p| !p.is_object).count();
    let mut want = vec!["SetParameterValues", "GetParameterNames"];
    want.extend(std::iter::repeat_n(
        "GetParameterValues",
        leaves.div_ceil(128),
    ));
    assert!(want.len() >= 4, "{leaves} leaves");
    for d in fleet.iter_mut() {
        let report = d
            .run_session(&format!("http://{addr}/"), &[])
            .await
            .unwrap();
        assert_eq!(report.final_status, 204);
        assert_eq!(report.acs_rpcs(), want);
        assert!(
            report.faults_sent.is_empty(),
            "the device refused a canned request: {:?}",
            report.faults_sent
        );
        assert!(report.notes.is_empty(), "{:?}", report.notes);
        let set: Vec<&str> = report.params_set.iter().map(|(n, _)| n.as_str()).collect();
        assert!(set.contains(&"InternetGatewayDevice.ManagementServer.PeriodicInformInterval"));
    }
    handle.stop(false).await;
}

/// ferroacs's connection-request sender against many simulated devices: every request is
/// accepted with valid Digest credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_request_fanout_reaches_every_device() {
    let r = loadgen::cr_fanout(20, 100, 8, None).await.unwrap();
    assert_eq!(r.requests, 100);
    assert_eq!(r.outcomes.get("ok"), Some(&100), "{:?}", r.outcomes);
    assert_eq!(r.accepted_by_devices, 100);
}
