//! Benchmark, not a test (ignored by default): a firmware campaign over
//! `BENCH_CAMPAIGN_DEVICES` (default 100,000) known devices of three models, copies of
//! three discovered simulated CPEs. It prints, per backend: the dry run and the start
//! (classifying every device, freezing the members), the tick that opens a 10 % wave and
//! starts it, and a tick that judges that wave in flight — wall time, this process's CPU time
//! (scheduler, API and, for SQLite, the database engine; PostgreSQL's own CPU is not
//! counted), and on PostgreSQL the rows written (`pg_stat_user_tables`) per device.
//!
//! ```sh
//! cargo test --test integration campaign_bench -- --ignored --nocapture --test-threads=1
//! ```
//! Figures go to BENCHMARKS.md by hand; no assertion here is a performance target.

use std::sync::Arc;
use std::time::Instant;

use reqwest::Method;
use serde_json::json;

use crate::api::Api;
use crate::campaigns::{device_id, fast, fleet, images, upload_image, MODELS, T0};
use crate::support::{Backend, TestApp, TestClock, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn campaign_bench_sqlite() {
    bench(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn campaign_bench_postgres() {
    if !crate::support::postgres_enabled() {
        return;
    }
    bench(Backend::Postgres).await
}

/// User + system CPU time of this process (all threads), in milliseconds, from
/// `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 * 10.0
}

/// Rows inserted, updated and deleted in every table so far (PostgreSQL statistics).
fn pg_rows_written(url: &str) -> i64 {
    use diesel::prelude::*;
    use diesel::sql_types::BigInt;
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut c = diesel::PgConnection::establish(url).unwrap();
    // Statistics reach the views shortly after each transaction ends (PostgreSQL flushes
    // them on its own timer, at most once a second; no event says when): kept.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    diesel::sql_query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut c)
        .unwrap();
    diesel::sql_query(
        "SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0)::BIGINT AS n FROM pg_stat_user_tables",
    )
    .get_result::<N>(&mut c)
    .unwrap()
    .n
}

struct Measure {
    label: &'static str,
    wall: Instant,
    cpu: f64,
    rows: Option<i64>,
}

impl Measure {
    fn start(label: &'static str, db: &TestDb) -> Measure {
        let rows = (db.backend == Backend::Postgres).then(|| pg_rows_written(&db.url));
        Measure {
            label,
            wall: Instant::now(),
            cpu: cpu_ms(),
            rows,
        }
    }

    fn done(self, db: &TestDb, devices: u64) {
        let wall = self.wall.elapsed().as_secs_f64() * 1000.0;
        let cpu = cpu_ms() - self.cpu;
        let rows = self.rows.map(|before| pg_rows_written(&db.url) - before);
        let per = |x: f64| x / devices.max(1) as f64;
        println!(
            "| {:?} | {} | {} | {:.0} ms | {:.0} ms | {:.1} µs | {} |",
            db.backend,
            self.label,
            devices,
            wall,
            cpu,
            per(cpu) * 1000.0,
            rows.map_or("–".to_string(), |r| format!("{:.2}", per(r as f64)))
        );
    }
}

async fn bench(b: Backend) {
    let n: u64 = std::env::var("BENCH_CAMPAIGN_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db.clone(), None, clock.as_clock(), fast).await;
    let api = Api::new(&app, "operator").await;
    let templates = fleet(&app.cwmp_url(), 1).await;
    let store = app.store();
    let seeded = Instant::now();
    for (m, t) in templates.iter().enumerate() {
        let (oui, pc) = MODELS[m];
        let template = device_id(t);
        let per_model = n / 3 + u64::from((m as u64) < n % 3);
        let mut i = 1u64;
        while i < per_model {
            let end = (i + 5000).min(per_model);
            let copies: Vec<(String, String)> = (i..end)
                .map(|k| {
                    let serial = format!("B{m}{k:07}");
                    (ferroacs::cwmp::device_id(oui, pc, &serial), serial)
                })
                .collect();
            let (s, t) = (store.clone(), template.clone());
            tokio::task::spawn_blocking(move || s.clone_device(&t, &copies, T0).unwrap())
                .await
                .unwrap();
            i = end;
        }
    }
    eprintln!(
        "{b:?}: {n} devices seeded in {:.0} s",
        seeded.elapsed().as_secs_f64()
    );
    let mut files = Vec::new();
    for i in 0..3 {
        files.push(upload_image(&api, &format!("fw{i}.bin"), "2.0", "2.0").await);
    }
    let spec = json!({
        "name": "bench",
        "target": {"query": "manufacturer = \"SimCo\""},
        "action": images(&files),
        "pacing": {"max_in_flight": 1_000_000, "max_starts_per_minute": 1_000_000,
                   "confirm_timeout_secs": 86_400},
        "waves": {"sizes": ["10%", "rest"], "success_ratio": 0.0},
    });
    println!("| backend | step | devices | wall | CPU (this process) | CPU per device | rows written per device |");
    println!("|---|---|---|---|---|---|---|");
    let m = Measure::start("dry run", &db);
    let (s, dry) = api
        .call(
            Method::POST,
            "/api/v1/campaigns?dry_run=true",
            Some(spec.clone()),
        )
        .await;
    assert_eq!(s, 200, "{dry}");
    assert_eq!(dry["eligible"].as_u64(), Some(n), "{dry}");
    m.done(&db, n);
    let (s, c) = api
        .call(Method::POST, "/api/v1/campaigns", Some(spec))
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_i64().unwrap();
    let m = Measure::start("start (freeze members)", &db);
    let (s, c) = api
        .call(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None)
        .await;
    assert_eq!(s, 200, "{c}");
    m.done(&db, n);
    let state = app.state();
    let wave = n / 10;
    let m = Measure::start("tick: start a 10 % wave", &db);
    let t = ferroacs::scheduler::tick(&state).await.unwrap();
    assert_eq!(t.started as u64, wave, "{t:?}");
    m.done(&db, wave);
    clock.advance_ms(60_000);
    let m = Measure::start("tick: judge the wave in flight", &db);
    let t = ferroacs::scheduler::tick(&state).await.unwrap();
    assert_eq!(t.started, 0, "{t:?}");
    m.done(&db, wave);
}
