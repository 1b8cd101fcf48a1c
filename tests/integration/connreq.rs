//! Connection requests are never dropped: requests inside the per-device interval are
//! deferred and coalesced, and tasks created while the device is in session join it. Time is
//! the injected clock; the simulated CPE answers every connection request with a session.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::api::{online_device, Api};
use crate::battery;
use crate::support::{Backend, TestApp, TestClock, TestDb};

const T0: i64 = 1_800_000_000_000;
const INTERVAL: i64 = 2_000;

battery!(
    back_to_back_tasks_both_finish,
    a_burst_sends_at_most_one_request_per_interval,
    a_task_created_during_a_session_joins_it,
);

async fn clocked_app(b: Backend) -> (TestApp, TestClock) {
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), |c| {
        c.api.connection_request_min_interval_ms = INTERVAL as u64;
    })
    .await;
    (app, clock)
}

/// The device answers every connection request with a session; each session reports the
/// injected time at which its request arrived.
async fn responder(
    app: &TestApp,
    clock: &TestClock,
    serial: &str,
) -> (String, mpsc::UnboundedReceiver<i64>) {
    let (mut dev, cr, id) = online_device(app, serial).await;
    let url = app.cwmp_url();
    let clock = clock.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        // The listener lives as long as this task.
        let mut cr = cr;
        while cr.wait(Duration::from_secs(3600)).await.is_some() {
            let at = clock.now();
            let rep = dev
                .run_session(&url, &[("6 CONNECTION REQUEST", "")])
                .await
                .unwrap();
            assert!(rep.ended_cleanly(), "{rep:?}");
            if tx.send(at).is_err() {
                break;
            }
        }
    });
    (id, rx)
}

async fn post_task(api: &Api, id: &str, name: &str) -> Value {
    let (s, t) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/tasks?connection_request=true"),
            Some(json!({"rpc": "GetParameterValues", "names": [name]})),
        )
        .await;
    assert!(s == 200 || s == 202, "{s} {t}");
    t
}

async fn all_done(api: &Api, tasks: &[i64]) -> bool {
    for t in tasks {
        let v = api.get(&format!("/api/v1/tasks/{t}")).await;
        if v["status"] != "done" {
            return false;
        }
    }
    true
}

/// Run sessions until every task is done: after each session, when tasks remain, the clock
/// moves one interval on (releasing a deferred request). Returns the injected times at which
/// requests reached the device.
async fn drive(
    api: &Api,
    clock: &TestClock,
    rx: &mut mpsc::UnboundedReceiver<i64>,
    tasks: &[i64],
) -> Vec<i64> {
    let mut arrivals = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let next = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("a connection request within seconds")
            .expect("responder alive");
        arrivals.push(next);
        if all_done(api, tasks).await {
            return arrivals;
        }
        clock.advance_ms(INTERVAL);
    }
}

fn ids(tasks: &[Value]) -> Vec<i64> {
    tasks.iter().map(|t| t["id"].as_i64().unwrap()).collect()
}

/// Two tasks posted back to back, each asking for a connection request: the first request is
/// sent, the second is not refused but scheduled (or joins the session), and both tasks finish
/// without any periodic Inform.
async fn back_to_back_tasks_both_finish(b: Backend) {
    let (app, clock) = clocked_app(b).await;
    let api = Api::new(&app, "operator").await;
    let (id, mut rx) = responder(&app, &clock, "CRD0001").await;
    let t1 = post_task(&api, &id, "Device.DeviceInfo.").await;
    let t2 = post_task(&api, &id, "Device.ManagementServer.").await;
    let cr1 = &t1["connection_request"];
    assert_eq!(
        (cr1["state"].as_str(), cr1["outcome"].as_str()),
        (Some("sent"), Some("ok")),
        "{t1}"
    );
    let cr2 = &t2["connection_request"];
    match cr2["state"].as_str() {
        Some("scheduled") => assert_eq!(cr2["scheduled_at"], json!(T0 + INTERVAL), "{t2}"),
        Some("joined_session") => {}
        other => panic!("second request {other:?}: {t2}"),
    }
    assert_ne!(cr2["outcome"], "rate_limited");
    let arrivals = drive(&api, &clock, &mut rx, &ids(&[t1, t2])).await;
    assert!(arrivals.len() <= 2, "{arrivals:?}");
    let d = api.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(d["connection_request"]["outcome"], "ok", "{d}");
}

/// Ten tasks in a burst: every one is answered `scheduled` or `joined_session` after the
/// first, the device gets at most one request per interval, and all ten finish.
async fn a_burst_sends_at_most_one_request_per_interval(b: Backend) {
    let (app, clock) = clocked_app(b).await;
    let api = Api::new(&app, "operator").await;
    let (id, mut rx) = responder(&app, &clock, "CRD0002").await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let name = if i % 2 == 0 {
            "Device.DeviceInfo."
        } else {
            "Device.ManagementServer."
        };
        tasks.push(post_task(&api, &id, name).await);
    }
    let states: Vec<&str> = tasks
        .iter()
        .map(|t| t["connection_request"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states[0], "sent", "{states:?}");
    assert!(
        states[1..]
            .iter()
            .all(|s| *s == "scheduled" || *s == "joined_session"),
        "{states:?}"
    );
    let arrivals = drive(&api, &clock, &mut rx, &ids(&tasks)).await;
    for w in arrivals.windows(2) {
        assert!(
            w[1] - w[0] >= INTERVAL,
            "requests closer than the interval: {arrivals:?}"
        );
    }
    // The first request, at most one released by the clock moving on, and at most one
    // more for work that arrived while a session was already ending.
    assert!(arrivals.len() <= 3, "{arrivals:?}");
}

/// A task created while its device is in session runs in that session (the session looks at
/// its queue again before the final empty response), and no request is sent.
async fn a_task_created_during_a_session_joins_it(b: Backend) {
    let (app, clock) = clocked_app(b).await;
    let api = Api::new(&app, "operator").await;
    let (mut dev, mut cr, id) = online_device(&app, "CRD0003").await;
    let mut client = dev.http_client(&app.cwmp_url()).unwrap();
    let events = dev.inform_events(&[("2 PERIODIC", "")]);
    let inform = dev.inform_envelope(&events, "join-1");
    let r = client.post_soap(&inform).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body_text().contains("InformResponse"));
    // In session now: the task joins it.
    let t = post_task(&api, &id, "Device.DeviceInfo.").await;
    assert_eq!(t["connection_request"]["state"], "joined_session", "{t}");
    assert!(t["connection_request"].get("scheduled_at").is_none(), "{t}");
    let mut resp = client.post_empty().await.unwrap();
    let mut rpcs = 0;
    while resp.status == 200 && resp.has_content() {
        let reply = dev.respond_to(&resp.body_text()).unwrap();
        rpcs += 1;
        resp = client.post_soap(&reply.xml).await.unwrap();
    }
    assert_eq!(resp.status, 204);
    assert_eq!(rpcs, 1);
    let v = api.get(&format!("/api/v1/tasks/{}", t["id"])).await;
    assert_eq!(v["status"], "done", "{v}");
    // The check kept in case the session had moved to another node finds the work taken
    // once the interval has passed, and sends nothing.
    assert!(app.state().services.connreq.deferred_until(&id).is_some());
    clock.advance_ms(10 * INTERVAL);
    let state = app.state();
    crate::support::wait_until(Duration::from_secs(5), "the deferred check ran", || async {
        match state.services.connreq.deferred_until(&id) {
            None => Ok(()),
            Some(until) => Err(until),
        }
    })
    .await;
    assert!(cr.wait(Duration::from_millis(300)).await.is_none());
}
