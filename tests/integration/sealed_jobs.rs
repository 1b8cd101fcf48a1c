//! Secrets inside the task a scheduled job or a campaign keeps in its spec: sealed in the
//! stored row, `***` to every role (API, audit log), kept when `***` is given back, opened
//! for the tasks the job queues (the simulated CPE gets the real values), rows of older
//! versions sealed at start, and re-sealed by a key rotation.

use std::sync::{Arc, Mutex};

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::Api;
use crate::battery;
use crate::support::{Backend, TestApp, TestClock, TestDb};

battery!(job_and_campaign_task_secrets_are_sealed_and_reach_only_the_device);

fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

fn fast(c: &mut ferroacs::config::Config) {
    // Ticks are driven by the test; the background loop only ticks once at start.
    c.scheduler.tick_ms = 3_600_000;
    c.api.connection_request_min_interval_ms = 0;
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A file server on loopback that wants HTTP Basic credentials: a request without
/// `Authorization` gets a 401 challenge, one with it gets `body`. Returns the URL of the
/// file and every `Authorization` header received, decoded (`user:password`).
async fn basic_auth_file_server(body: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let end = loop {
                        if let Some(p) = find(&buf, b"\r\n\r\n") {
                            break p + 4;
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end);
                    let auth = head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim()
                            .eq_ignore_ascii_case("authorization")
                            .then(|| v.trim().to_string())
                    });
                    let answer = match auth.as_deref().and_then(|a| a.strip_prefix("Basic ")) {
                        None => "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"files\"\r\nContent-Length: 0\r\n\r\n".to_string(),
                        Some(b64) => {
                            let plain = base64::engine::general_purpose::STANDARD
                                .decode(b64)
                                .map(|b| String::from_utf8_lossy(&b).to_string())
                                .unwrap_or_default();
                            log.lock().unwrap().push(plain);
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            )
                        }
                    };
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}/cfg.xml"), seen)
}

/// Every stored byte of the SQLite database (main file, WAL, shared memory).
fn sqlite_bytes(db: &TestDb) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(b) = std::fs::read(format!(
            "{}{suffix}",
            db.url.trim_start_matches("sqlite://")
        )) {
            all.extend(b);
        }
    }
    all
}

/// The raw stored specs of a schedule and a campaign, as the database holds them.
async fn raw_specs(app: &TestApp, job: i64, camp: i64) -> (String, String) {
    let store = app.store();
    tokio::task::spawn_blocking(move || {
        (
            store.get_schedule(job).unwrap().unwrap().spec,
            store.get_campaign(camp).unwrap().unwrap().spec,
        )
    })
    .await
    .unwrap()
}

/// Wait until the fire of `job` due at `due` queued its one task: the tick of the test, or
/// the one a start runs in the background, fires it (never both).
async fn fired_once(app: &TestApp, job: i64, due: i64) {
    let this_fire = format!("(fire time {due})");
    let what = format!("job {job} records the fire {this_fire}");
    let last = crate::support::wait_until(std::time::Duration::from_secs(10), &what, || async {
        let st = app.store();
        let row = tokio::task::spawn_blocking(move || st.get_schedule(job).unwrap().unwrap())
            .await
            .unwrap();
        match row.last_result {
            Some(r) if r.ends_with(&this_fire) => Ok(r),
            other => Err(other),
        }
    })
    .await;
    assert!(
        last.starts_with("queued 1 tasks") && last.ends_with(&this_fire),
        "{last}"
    );
}

/// A stored spec with its secrets opened with the store's keys.
fn opened(app: &TestApp, purpose: &str, stored: &str) -> Value {
    let k = app.store().keyring();
    serde_json::from_str(&ferroacs::domain::tasks::open_json(&k, purpose, stored).unwrap()).unwrap()
}

async fn job_and_campaign_task_secrets_are_sealed_and_reach_only_the_device(b: Backend) {
    use ferroacs::secrets::purpose::{CAMPAIGN_SPEC, SCHEDULE_SPEC};
    let clock = TestClock::new(ms("2026-06-01T12:00:00Z"));
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db.clone(), None, clock.as_clock(), fast).await;
    let (viewer, operator, admin) = (
        Api::new(&app, "viewer").await,
        Api::new(&app, "operator").await,
        Api::new(&app, "admin").await,
    );
    let (mut dev, _cr, id) = crate::api::online_device(&app, "SEALJOB1").await;
    let (s, v) = operator
        .call(
            Method::PUT,
            &format!("/api/v1/devices/{id}"),
            Some(json!({"tags": ["sealed"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (file_url, seen) = basic_auth_file_server("<config/>").await;
    let (dl_user, dl_pw, cr_pw) = (
        "job-dl-user-5521",
        "Job-Dl-Secret-8842",
        "Camp-Cr-Secret-3307",
    );
    let cr = dev.ms("ConnectionRequestPassword");
    let interval = dev.ms("PeriodicInformInterval");

    // A nightly configuration Download with credentials, and a campaign setting the
    // connection-request password.
    let job_spec = json!({
        "name": "nightly config",
        "query": "tag = sealed",
        "cron": "0 0 3 * * *",
        "action": {"type": "task", "task": {"rpc": "Download", "url": file_url,
            "file_type": "3 Vendor Configuration File", "username": dl_user, "password": dl_pw}},
    });
    let (s, job) = operator
        .call(Method::POST, "/api/v1/schedules", Some(job_spec.clone()))
        .await;
    assert_eq!(s, 201, "{job}");
    let job_id = job["id"].as_i64().unwrap();
    assert_eq!(job["spec"]["action"]["task"]["password"], "***", "{job}");
    assert_eq!(job["spec"]["action"]["task"]["username"], "***", "{job}");
    assert_eq!(job["spec"]["action"]["task"]["url"], file_url.as_str());
    let camp_spec = json!({
        "name": "rotate cr password",
        "target": {"devices": [id]},
        "action": {"type": "task", "task": {"rpc": "SetParameterValues", "values": [
            {"name": cr, "value": cr_pw},
            {"name": interval, "value": "900"},
        ]}},
        "waves": {"success_ratio": 0.0},
    });
    let (s, camp) = operator
        .call(Method::POST, "/api/v1/campaigns", Some(camp_spec.clone()))
        .await;
    assert_eq!(s, 201, "{camp}");
    let camp_id = camp["id"].as_i64().unwrap();
    let values = &camp["spec"]["action"]["task"]["values"];
    assert_eq!(
        (&values[0]["value"], &values[1]["value"]),
        (&json!("***"), &json!("900"))
    );

    // At rest: sealed inside the stored spec, the rest readable.
    let (job_raw, camp_raw) = raw_specs(&app, job_id, camp_id).await;
    for (raw, purpose) in [(&job_raw, SCHEDULE_SPEC), (&camp_raw, CAMPAIGN_SPEC)] {
        for secret in [dl_user, dl_pw, cr_pw] {
            assert!(!raw.contains(secret), "{secret} stored: {raw}");
        }
        assert!(raw.contains("enc1:"), "{raw}");
        let open = opened(&app, purpose, raw);
        assert!(open.to_string().contains(dl_pw) || open.to_string().contains(cr_pw));
    }
    assert!(job_raw.contains(&file_url) && camp_raw.contains("900"));

    // Attackers' first tries: a lower role, no or a wrong token, a mask with nothing
    // behind it, an oversized body.
    let (s, v) = viewer
        .call(Method::POST, "/api/v1/schedules", Some(job_spec.clone()))
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = viewer
        .call(
            Method::PUT,
            &format!("/api/v1/schedules/{job_id}"),
            Some(job["spec"].clone()),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = viewer
        .call(
            Method::PUT,
            &format!("/api/v1/campaigns/{camp_id}/action"),
            Some(camp["spec"]["action"].clone()),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    let stranger = Api {
        base: viewer.base.clone(),
        token: "not-a-token".into(),
        http: reqwest::Client::new(),
    };
    let (s, v) = stranger
        .call(Method::GET, &format!("/api/v1/schedules/{job_id}"), None)
        .await;
    assert_eq!(s, 401, "{v}");
    let mut masked_new = job_spec.clone();
    masked_new["name"] = json!("copied from the screen");
    masked_new["action"]["task"]["password"] = json!("***");
    let (s, v) = operator
        .call(Method::POST, "/api/v1/schedules", Some(masked_new))
        .await;
    assert_eq!(s, 400, "{v}");
    let text = v.to_string();
    assert!(
        text.contains("action.task.password") && text.contains("give the secret value"),
        "{v}"
    );
    let mut masked_camp = camp["spec"].clone();
    masked_camp["name"] = json!("copied campaign");
    let (s, v) = operator
        .call(Method::POST, "/api/v1/campaigns", Some(masked_camp))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains(&cr), "{v}");
    let mut huge = job_spec.clone();
    huge["name"] = json!("x".repeat(5 * 1024 * 1024));
    let (s, v) = operator
        .call(Method::POST, "/api/v1/schedules", Some(huge))
        .await;
    assert!((400..500).contains(&s), "{s} {v}");
    let (s, v) = operator
        .call(
            Method::PUT,
            "/api/v1/schedules/999999",
            Some(job["spec"].clone()),
        )
        .await;
    assert_eq!(s, 404, "{v}");

    // The stored credentials never follow the task to another URL.
    let mut elsewhere = job["spec"].clone();
    elsewhere["action"]["task"]["url"] = json!("http://192.0.2.66/steal");
    let (s, v) = operator
        .call(
            Method::PUT,
            &format!("/api/v1/schedules/{job_id}"),
            Some(elsewhere),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v.to_string().contains("again: *** keeps a stored one only"),
        "{v}"
    );

    // Given back as shown, the secrets keep their stored values.
    let mut back = job["spec"].clone();
    back["max_delay_secs"] = json!(7200);
    let (s, v) = operator
        .call(
            Method::PUT,
            &format!("/api/v1/schedules/{job_id}"),
            Some(back),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["spec"]["max_delay_secs"], 7200, "{v}");
    let mut action = camp["spec"]["action"].clone();
    // Reordered: the secret follows its parameter.
    action["task"]["values"] = json!([
        {"name": interval, "value": "1200"},
        {"name": cr, "value": "***"},
    ]);
    let (s, v) = operator
        .call(
            Method::PUT,
            &format!("/api/v1/campaigns/{camp_id}/action"),
            Some(action),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (job_raw, camp_raw) = raw_specs(&app, job_id, camp_id).await;
    let job_open = opened(&app, SCHEDULE_SPEC, &job_raw);
    assert_eq!(job_open["action"]["task"]["password"], dl_pw);
    assert_eq!(job_open["action"]["task"]["username"], dl_user);
    assert_eq!(job_open["max_delay_secs"], 7200);
    let camp_open = opened(&app, CAMPAIGN_SPEC, &camp_raw);
    assert_eq!(
        camp_open["action"]["task"]["values"],
        json!([{"name": interval, "value": "1200"}, {"name": cr, "value": cr_pw}])
    );
    for secret in [dl_user, dl_pw, cr_pw] {
        assert!(!job_raw.contains(secret) && !camp_raw.contains(secret));
    }

    // The job fires: the device downloads with the real credentials.
    let state = app.state();
    let due = ms("2026-06-02T03:00:00Z");
    clock.set(due);
    ferroacs::scheduler::tick(&state).await.unwrap();
    fired_once(&app, job_id, due).await;
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![format!("{dl_user}:{dl_pw}")]
    );
    assert_eq!(dev.state.downloads.len(), 1);
    // The campaign runs: the device gets the real password.
    let (s, v) = operator
        .call(
            Method::POST,
            &format!("/api/v1/campaigns/{camp_id}/start"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let t = ferroacs::scheduler::tick(&state).await.unwrap();
    assert_eq!(t.started, 1, "{t:?}");
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(dev.get(&cr), Some(cr_pw));
    assert_eq!(dev.get(&interval), Some("1200"));
    ferroacs::scheduler::tick(&state).await.unwrap();
    let c = viewer.get(&format!("/api/v1/campaigns/{camp_id}")).await;
    assert_eq!(c["progress"]["totals"]["succeeded"], 1, "{c}");

    // Nobody reads a secret back: every role, every view of jobs, campaigns, their tasks.
    let secrets = [dl_user, dl_pw, cr_pw];
    let check = |what: &str, text: &str| {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} in {what}: {text}");
        }
    };
    for api in [&viewer, &operator, &admin] {
        for path in [
            "/api/v1/schedules".to_string(),
            format!("/api/v1/schedules/{job_id}"),
            "/api/v1/campaigns".to_string(),
            format!("/api/v1/campaigns/{camp_id}"),
            format!("/api/v1/campaigns/{camp_id}/devices"),
            format!("/api/v1/campaigns/{camp_id}/events"),
            "/api/v1/tasks?limit=1000".to_string(),
            format!("/api/v1/devices/{id}/tasks"),
            format!("/api/v1/devices/{id}/parameters"),
            "/api/v1/openapi.json".to_string(),
        ] {
            let (s, v) = api.call(Method::GET, &path, None).await;
            assert_eq!(s, 200, "{path}: {v}");
            check(&path, &v.to_string());
        }
    }
    // Console pages, as a viewer and an operator.
    for (user, role) in [("eve", "viewer"), ("olga", "operator")] {
        crate::console::add_user(&app, user, role).await;
        let (s, raw) = crate::console::Raw::login(&app, user, crate::console::PASSWORD).await;
        assert_eq!(s, 303);
        for path in [
            "/campaigns".to_string(),
            format!("/campaigns/{camp_id}"),
            format!("/devices/{id}/tasks"),
        ] {
            let (s, page) = raw.get(&path).await;
            assert_eq!(s, 200, "{path}");
            check(&path, &page);
        }
        let (_, page) = raw.get(&format!("/campaigns/{camp_id}")).await;
        assert!(page.contains("***") && page.contains("1200"), "{page}");
    }
    let shown = viewer.get(&format!("/api/v1/schedules/{job_id}")).await;
    assert_eq!(shown["spec"]["action"]["task"]["password"], "***");
    let audit = admin.get("/api/v1/audit?limit=1000").await;
    let audit_text = audit.to_string();
    for a in [
        "schedule.create",
        "schedule.update",
        "campaign.create",
        "campaign.update",
    ] {
        assert!(audit_text.contains(a), "{a} missing: {audit}");
    }
    check("audit", &audit_text);
    let store = app.store();
    let rows = tokio::task::spawn_blocking(move || store.list_audit(None, 1000).unwrap())
        .await
        .unwrap();
    check("audit_events", &format!("{rows:?}"));
    let store = app.store();
    let tasks =
        tokio::task::spawn_blocking(move || store.find_tasks(None, None, None, 1000).unwrap())
            .await
            .unwrap();
    assert!(tasks.len() >= 2);
    for t in &tasks {
        check("tasks.args", &t.args);
    }
    if b == Backend::Sqlite {
        let bytes = sqlite_bytes(&db);
        assert!(bytes.len() > 10_000);
        for secret in secrets {
            assert!(
                find(&bytes, secret.as_bytes()).is_none(),
                "{secret} in the database files"
            );
        }
    }

    // Rows of an older version hold their secrets in clear; two nodes starting at once seal
    // them (each row replaced only if it still holds what was read).
    let old_pw = "Old-Clear-Dl-Secret-6464";
    let (st, jr, cra) = (app.store(), job_raw.clone(), camp_raw.clone());
    let (job_clear, camp_clear) = {
        let k = st.keyring();
        let mut j: Value = serde_json::from_str(
            &ferroacs::domain::tasks::open_json(&k, SCHEDULE_SPEC, &jr).unwrap(),
        )
        .unwrap();
        j["action"]["task"]["password"] = json!(old_pw);
        let c = ferroacs::domain::tasks::open_json(&k, CAMPAIGN_SPEC, &cra).unwrap();
        (j.to_string(), c)
    };
    let (jc, cc) = (job_clear.clone(), camp_clear.clone());
    tokio::task::spawn_blocking(move || {
        use ferroacs::store::sealed::SealedColumn;
        assert!(st
            .replace_sealed(SealedColumn::ScheduleSpec, &job_id.to_string(), &jr, &jc)
            .unwrap());
        assert!(st
            .replace_sealed(SealedColumn::CampaignSpec, &camp_id.to_string(), &cra, &cc)
            .unwrap());
    })
    .await
    .unwrap();
    let (job_raw, camp_raw) = raw_specs(&app, job_id, camp_id).await;
    assert!(job_raw.contains(old_pw) && camp_raw.contains(cr_pw));
    let (one, two) = (app.store(), app.store());
    let (a, b2) = tokio::join!(
        tokio::task::spawn_blocking(move || ferroacs::domain::secrets::reencrypt(&one)),
        tokio::task::spawn_blocking(move || ferroacs::domain::secrets::reencrypt(&two)),
    );
    let (a, b2) = (a.unwrap().unwrap(), b2.unwrap().unwrap());
    // Each clear secret sealed once, by one node or the other.
    assert!(a.values + b2.values >= 2, "{a:?} {b2:?}");
    let (job_raw, camp_raw) = raw_specs(&app, job_id, camp_id).await;
    assert!(
        !job_raw.contains(old_pw) && !job_raw.contains(dl_user),
        "{job_raw}"
    );
    assert!(!camp_raw.contains(cr_pw), "{camp_raw}");
    assert_eq!(
        opened(&app, SCHEDULE_SPEC, &job_raw)["action"]["task"]["password"],
        old_pw
    );
    assert_eq!(
        opened(&app, CAMPAIGN_SPEC, &camp_raw)["action"]["task"]["values"][1]["value"],
        cr_pw
    );

    // Key rotation re-seals both under the new key; a node with only the new key fires the
    // job with the right credentials.
    let old_key = db.key.clone();
    let old_id = app.store().keyring().current_id().to_string();
    let new_key = ferroacs::secrets::generate_key();
    let (st, nk) = (app.store(), new_key.clone());
    let r = tokio::task::spawn_blocking(move || {
        st.set_keyring(ferroacs::secrets::Keyring::from_hex(&[nk, old_key], "test").unwrap());
        ferroacs::domain::secrets::reencrypt(&st).unwrap()
    })
    .await
    .unwrap();
    assert!(r.values >= 2, "{r:?}");
    let new_id = app.store().keyring().current_id().to_string();
    let (job_raw, camp_raw) = raw_specs(&app, job_id, camp_id).await;
    for raw in [&job_raw, &camp_raw] {
        assert!(raw.contains(&format!("enc1:{new_id}:")), "{raw}");
        assert!(!raw.contains(&format!("enc1:{old_id}:")), "{raw}");
    }
    // A row written in clear meanwhile (an older node): the next start seals it.
    let (st, cr2) = (app.store(), camp_raw.clone());
    let camp_clear =
        ferroacs::domain::tasks::open_json(&st.keyring(), CAMPAIGN_SPEC, &cr2).unwrap();
    let cc = camp_clear.clone();
    tokio::task::spawn_blocking(move || {
        use ferroacs::store::sealed::SealedColumn;
        assert!(st
            .replace_sealed(SealedColumn::CampaignSpec, &camp_id.to_string(), &cr2, &cc)
            .unwrap());
    })
    .await
    .unwrap();
    let mut app = app;
    app.config.secrets.key = Some(ferroacs::config::Secret(new_key));
    let app = app.restart().await;
    let (_, camp_raw) = raw_specs(&app, job_id, camp_id).await;
    assert!(!camp_raw.contains(cr_pw), "{camp_raw}");
    assert!(camp_raw.contains(&format!("enc1:{new_id}:")), "{camp_raw}");
    assert_eq!(
        opened(&app, CAMPAIGN_SPEC, &camp_raw).to_string(),
        camp_clear
    );
    let state = app.state();
    let due = ms("2026-06-03T03:00:00Z");
    clock.set(due);
    ferroacs::scheduler::tick(&state).await.unwrap();
    fired_once(&app, job_id, due).await;
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(
        seen.lock().unwrap().last().cloned(),
        Some(format!("{dl_user}:{old_pw}"))
    );
}

/// Job and campaign specs an older version stored in clear are sealed by `ferroacs migrate`
/// (as by every start), and `ferroacs secrets rotate-key` re-seals them under the new key.
#[test]
fn migrate_seals_and_rotate_key_reseals_job_and_campaign_specs() {
    use ferroacs::secrets::purpose::{CAMPAIGN_SPEC, SCHEDULE_SPEC};
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ferroacs"));
        for (k, _) in std::env::vars() {
            if k.starts_with("FERROACS_") {
                c.env_remove(k);
            }
        }
        let out = c.current_dir(dir.path()).args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    run(&["migrate"]);
    let mut cfg = ferroacs::config::Config::default();
    cfg.database.url = format!("sqlite://{}", dir.path().join("ferroacs.db").display());
    cfg.secrets.key_file = dir.path().join("ferroacs.key");
    let open = || {
        let store = ferroacs::store::Store::open(&cfg.database).unwrap();
        ferroacs::domain::secrets::init(&store, &cfg.secrets, false).unwrap();
        store
    };
    let (job_pw, camp_pw) = ("Cli-Job-Secret-1991", "Cli-Camp-Secret-2992");
    let job_clear = json!({"name": "j", "query": "tag = a", "cron": "0 0 3 * * *",
        "action": {"type": "task", "task": {"rpc": "Download", "url": "http://192.0.2.1/c",
            "file_type": "3 Vendor Configuration File", "username": "u", "password": job_pw}}})
    .to_string();
    let camp_clear = json!({"name": "c", "target": {"devices": ["000000-X-1"]},
        "action": {"type": "task", "task": {"rpc": "SetParameterValues", "values": [
            {"name": "Device.ManagementServer.ConnectionRequestPassword", "value": camp_pw}]}}})
    .to_string();
    // Rows as an older version wrote them: the secrets in clear.
    let store = open();
    let job = store
        .insert_schedule(&ferroacs::store::schedules::NewSchedule {
            name: "j".into(),
            spec: job_clear.clone(),
            enabled: 0,
            next_fire_at: None,
            created_by: "old".into(),
            created_at: 1,
            updated_at: 1,
        })
        .unwrap()
        .id;
    let camp = store
        .insert_campaign(
            &ferroacs::store::campaigns::NewCampaign {
                name: "c".into(),
                state: "draft".into(),
                spec: camp_clear.clone(),
                created_by: "old".into(),
                created_at: 1,
                updated_at: 1,
            },
            "created",
        )
        .unwrap()
        .id;
    drop(store);
    let specs = |store: &ferroacs::store::Store| {
        (
            store.get_schedule(job).unwrap().unwrap().spec,
            store.get_campaign(camp).unwrap().unwrap().spec,
        )
    };
    // Sealed under the current key, every secret string; the rest unchanged.
    let sealed_under = |store: &ferroacs::store::Store, raw: &str, purpose: &str, clear: &str| {
        assert!(!raw.contains(job_pw) && !raw.contains(camp_pw), "{raw}");
        let id = store.keyring().current_id().to_string();
        let sealed: Vec<&str> = raw.split("enc1:").skip(1).collect();
        assert!(!sealed.is_empty(), "{raw}");
        assert!(
            sealed.iter().all(|s| s.starts_with(&format!("{id}:"))),
            "{raw}"
        );
        let k = store.keyring();
        let open: Value =
            serde_json::from_str(&ferroacs::domain::tasks::open_json(&k, purpose, raw).unwrap())
                .unwrap();
        assert_eq!(open, serde_json::from_str::<Value>(clear).unwrap());
    };
    run(&["migrate"]);
    let store = open();
    let (j1, c1) = specs(&store);
    sealed_under(&store, &j1, SCHEDULE_SPEC, &job_clear);
    sealed_under(&store, &c1, CAMPAIGN_SPEC, &camp_clear);
    drop(store);
    let out = run(&["secrets", "rotate-key"]);
    assert!(out.contains("re-encrypted"), "{out}");
    let store = open();
    let (j2, c2) = specs(&store);
    assert!(j2 != j1 && c2 != c1);
    sealed_under(&store, &j2, SCHEDULE_SPEC, &job_clear);
    sealed_under(&store, &c2, CAMPAIGN_SPEC, &camp_clear);
}
