//! Crash testing under load: simulated CPEs keep running periodic and task sessions while
//! tasks are queued through the admin API and the server is killed and restarted from
//! outside (`scripts/chaos`). The CPEs live in this process, so they survive every server
//! crash with their ledger of executed RPCs; at the end the ledger is checked against every
//! task the server holds.
//!
//! Protocol with the driving script: after the first contact of every device this process
//! creates `ready_file`; the script then kills and restarts the server as often as it wants,
//! leaves it running and creates `stop_file`. No task is queued after that; sessions go on
//! until no task is pending or running (or `drain` has passed), then the check runs.
//!
//! The same run observes a database outage (`scripts/outage`): the script writes
//! `down <unix ms>` and later `up <unix ms>` lines to `outage_file`, and the report says what
//! sessions and API calls got while the database was away and how soon after its return they
//! succeeded again. An API prober calls `GET /api/v1/tasks` every 200 ms for that.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::cpe::{ClientOptions, Device, HttpClient};
use crate::ledger::{self, Execution, ExpectedTask};
use crate::loadgen::{self, Arrival, Expect, FleetSpec, Load};

/// The RPCs a chaos run queues (and checks).
pub const RPCS: &[&str] = &["Reboot", "Download", "SetParameterValues", "FactoryReset"];

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosSpec {
    /// CWMP endpoint URL.
    pub url: String,
    /// Admin API base URL, e.g. `http://127.0.0.1:7557`.
    pub api: String,
    /// Operator or admin API token.
    pub token: String,
    pub fleet: FleetSpec,
    /// Workers running sessions.
    pub concurrency: usize,
    /// Seed of the choice of devices and RPCs.
    pub seed: u64,
    /// Pause between two task creations.
    pub task_every: Duration,
    /// Time a CPE takes to answer a state-changing RPC it executed (see
    /// [`crate::cpe::Behavior::reply_delay`]): widens the window in which a kill interrupts one.
    pub reply_delay: Duration,
    /// Pause of a worker after each session (after a failed one: ten times as long).
    pub pause: Duration,
    pub ready_file: PathBuf,
    pub stop_file: PathBuf,
    /// Longest wait for every task to finish once the kills are over.
    pub drain: Duration,
    /// Where the outage script writes `down <unix ms>` / `up <unix ms>`.
    pub outage_file: Option<PathBuf>,
}

/// Counts for one RPC, or all of them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Tasks the server holds at the end.
    pub created: u64,
    /// Executed exactly once by their CPE.
    pub executed_once: u64,
    /// Executed more than once.
    pub executed_twice: u64,
    /// Silently gone: the server says done but the CPE never executed it, or a task the API
    /// acknowledged is missing, or a CPE executed a key no task carries.
    pub lost: u64,
    /// Never executed and still pending or running (visible).
    pub still_pending: u64,
    /// Never executed and visibly failed (fault, expired, cancelled).
    pub failed_visibly: u64,
    /// Executed once but not `done` on the server (the server still owes an outcome).
    pub executed_not_done: u64,
}

/// One task that broke the rule, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub task_id: Option<i64>,
    pub device: String,
    pub rpc: String,
    pub key: String,
    pub status: String,
    pub executions: usize,
}

/// The outcome of a chaos run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChaosReport {
    pub devices: usize,
    pub sessions_ok: u64,
    pub sessions_failed: u64,
    pub create_requests: u64,
    pub create_acknowledged: u64,
    /// State-changing RPCs a CPE executed whose answer the server never got (killed while
    /// the CPE answered), by RPC: the interrupted cases the run exercised.
    pub interrupted: BTreeMap<String, u64>,
    pub drained: bool,
    pub drain_s: f64,
    pub total: Counts,
    pub by_rpc: BTreeMap<String, Counts>,
    pub duplicates: Vec<Finding>,
    pub lost: Vec<Finding>,
    pub pending: Vec<Finding>,
    /// What the database outage looked like (when an outage file was given).
    pub outage: Option<Outage>,
}

/// Sessions and API calls around a database outage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outage {
    pub down_ms: u64,
    pub up_ms: u64,
    /// Outcomes of the sessions that started while the database was down (`http_503`,
    /// `http_500`, `io`, ...; `ok_after_return` for one that waited for a connection until
    /// the database was back, `ok` for one that succeeded before: impossible).
    pub sessions_during: BTreeMap<String, u64>,
    /// Outcomes of the API calls that started while the database was down.
    pub api_during: BTreeMap<String, u64>,
    /// API answers during the outage whose body was not the fixed "unavailable" error or
    /// named a database internal (at most 5 kept).
    pub api_leaks: Vec<String>,
    /// From the database's return to the end of the first successful session (API call)
    /// that started after it, in ms.
    pub session_recovery_ms: Option<u64>,
    pub api_recovery_ms: Option<u64>,
    /// Sessions and API calls started more than 5 s after the database's return that failed.
    pub sessions_failed_after_5s: u64,
    pub api_failed_after_5s: u64,
    pub sessions_after: u64,
    pub api_after: u64,
    /// How long a session (an API call) took to get its 503 during the outage: median and
    /// slowest, in ms.
    pub session_503_ms: (u64, u64),
    pub api_503_ms: (u64, u64),
}

fn median_max(mut v: Vec<u64>) -> (u64, u64) {
    v.sort_unstable();
    (
        v.get(v.len() / 2).copied().unwrap_or(0),
        v.last().copied().unwrap_or(0),
    )
}

/// One session or API call: when it started and ended (unix ms) and its outcome.
#[derive(Debug, Clone)]
struct Mark {
    start: u64,
    end: u64,
    outcome: String,
    body: String,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn outcome_of(r: &Result<crate::cpe::SessionReport, crate::cpe::SimError>) -> String {
    use crate::cpe::SimError;
    match r {
        Ok(_) => "ok".into(),
        Err(SimError::UnexpectedStatus { status, .. }) => format!("http_{status}"),
        Err(SimError::Io { .. }) => "io".into(),
        Err(SimError::Timeout(..)) => "timeout".into(),
        Err(SimError::Http { .. }) => "http_malformed".into(),
        Err(SimError::AuthFailed { .. }) => "auth_failed".into(),
        Err(_) => "protocol".into(),
    }
}

/// Words an API error body must not contain: database internals.
const LEAKS: &[&str] = &[
    "postgres",
    "sqlite",
    "diesel",
    "connection",
    "127.0.0.1",
    "5432",
    "terminat",
    "sql",
];

/// The outcome of a call started during the outage; a success counts only if it ended after
/// the database's return (it waited for a connection), as `..._after_return`.
fn during(m: &Mark, up: u64) -> String {
    if (m.outcome == "ok" || m.outcome == "http_200") && m.end >= up {
        format!("{}_after_return", m.outcome)
    } else {
        m.outcome.clone()
    }
}

fn observe(down: u64, up: u64, sessions: &[Mark], api: &[Mark]) -> Outage {
    let mut o = Outage {
        down_ms: down,
        up_ms: up,
        ..Outage::default()
    };
    let (mut s503, mut a503) = (Vec::new(), Vec::new());
    for m in sessions {
        if m.start >= down && m.start < up {
            *o.sessions_during.entry(during(m, up)).or_default() += 1;
            if m.outcome == "http_503" {
                s503.push(m.end.saturating_sub(m.start));
            }
        } else if m.start >= up {
            o.sessions_after += 1;
            if m.outcome == "ok" {
                let r = m.end.saturating_sub(up);
                o.session_recovery_ms = Some(o.session_recovery_ms.map_or(r, |x| x.min(r)));
            } else if m.start > up + 5000 {
                o.sessions_failed_after_5s += 1;
            }
        }
    }
    for m in api {
        if m.start >= down && m.start < up {
            *o.api_during.entry(during(m, up)).or_default() += 1;
            if m.outcome == "http_503" {
                a503.push(m.end.saturating_sub(m.start));
            }
            if m.outcome != "http_200" {
                let v: Value = serde_json::from_str(&m.body).unwrap_or(Value::Null);
                let lower = m.body.to_lowercase();
                let fixed = v["error"]["code"] == "unavailable";
                if (!fixed || LEAKS.iter().any(|w| lower.contains(w))) && o.api_leaks.len() < 5 {
                    o.api_leaks.push(format!("{}: {}", m.outcome, m.body));
                }
            }
        } else if m.start >= up {
            o.api_after += 1;
            if m.outcome == "http_200" {
                let r = m.end.saturating_sub(up);
                o.api_recovery_ms = Some(o.api_recovery_ms.map_or(r, |x| x.min(r)));
            } else if m.start > up + 5000 {
                o.api_failed_after_5s += 1;
            }
        }
    }
    o.session_503_ms = median_max(s503);
    o.api_503_ms = median_max(a503);
    o
}

/// Reads `down <ms>` and `up <ms>` from the outage file.
fn outage_window(path: &std::path::Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let at = |word: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(word)
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
    };
    Some((at("down ")?, at("up ")?))
}

impl ChaosReport {
    /// No double execution, nothing lost.
    pub fn is_clean(&self) -> bool {
        self.total.executed_twice == 0 && self.total.lost == 0
    }

    /// The outage went as it must: only 503 while the database was away, bodies without
    /// internals, sessions and API back within 5 s.
    pub fn outage_ok(&self) -> bool {
        let Some(o) = &self.outage else {
            return true;
        };
        let only_503 = |m: &BTreeMap<String, u64>| {
            m.keys()
                .all(|k| k == "http_503" || k.ends_with("_after_return"))
                && m.get("http_503").is_some_and(|n| *n > 0)
        };
        only_503(&o.sessions_during)
            && only_503(&o.api_during)
            && o.api_leaks.is_empty()
            && o.session_recovery_ms.is_some_and(|r| r <= 5000)
            && o.api_recovery_ms.is_some_and(|r| r <= 5000)
            && o.sessions_failed_after_5s == 0
            && o.api_failed_after_5s == 0
    }
}

/// A small deterministic generator (splitmix64): the same seed picks the same devices and
/// RPCs in the same order.
struct Pick(u64);

impl Pick {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// An admin API client (plain HTTP, bearer token, one connection per request).
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: String,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    /// Sends a request; returns the status and the body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
    ) -> Result<(u16, String), String> {
        let opts = ClientOptions {
            keep_alive: false,
            timeout: Duration::from_secs(10),
            ..ClientOptions::default()
        };
        let mut c = HttpClient::new(&format!("{}{path}", self.base), opts, "", "")
            .map_err(|e| e.to_string())?;
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![("Authorization", auth.as_str())];
        if body.is_some() {
            headers.push(("Content-Type", content_type));
        }
        let r = c
            .request(method, None, &headers, body, false)
            .await
            .map_err(|e| e.to_string())?;
        Ok((r.status, r.body_text().into_owned()))
    }

    async fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let (status, text) = self
            .call(method, path, bytes.as_deref(), "application/json")
            .await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Every task, oldest first.
    pub async fn all_tasks(&self) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let path = if cursor.is_empty() {
                "/api/v1/tasks?limit=1000".to_string()
            } else {
                format!("/api/v1/tasks?limit=1000&cursor={cursor}")
            };
            let (status, v) = self.json("GET", &path, None).await?;
            if status != 200 {
                return Err(format!("GET {path}: HTTP {status}"));
            }
            if let Some(items) = v["items"].as_array() {
                out.extend(items.iter().cloned());
            }
            match v["next_cursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = c.to_string(),
                _ => break,
            }
        }
        out.sort_by_key(|t| t["id"].as_i64().unwrap_or(0));
        Ok(out)
    }

    /// Whether any task is pending or running (None when the API did not answer).
    async fn work_left(&self) -> Option<bool> {
        for status in ["pending", "running"] {
            let (code, v) = self
                .json(
                    "GET",
                    &format!("/api/v1/tasks?status={status}&limit=1"),
                    None,
                )
                .await
                .ok()?;
            if code != 200 {
                return None;
            }
            if v["items"].as_array().is_some_and(|a| !a.is_empty()) {
                return Some(true);
            }
        }
        Some(false)
    }
}

/// What the task queuer knows about a device.
struct Target {
    id: String,
    /// A writable string parameter to set.
    spv_name: Option<String>,
    /// Gets one FactoryReset and nothing else.
    reset_only: bool,
    reset_queued: bool,
}

async fn retry<T, F, Fut>(what: &str, within: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let end = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= end => anyhow::bail!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Runs a chaos session (see the module documentation).
pub async fn run(spec: &ChaosSpec) -> anyhow::Result<ChaosReport> {
    let api = Api::new(&spec.api, &spec.token);
    let file_id = retry("uploading the firmware file", Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let body = b"SoftwareVersion=chaos-2\nfirmware image for the crash test\n";
            let (status, text) = api
                .call(
                    "POST",
                    "/api/v1/files?name=chaos.bin&file_type=1%20Firmware%20Upgrade%20Image&version=chaos-2",
                    Some(body),
                    "application/octet-stream",
                )
                .await?;
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            match (status, v["id"].as_str()) {
                (200 | 201, Some(id)) => Ok(id.to_string()),
                _ => Err(format!("HTTP {status}: {text}")),
            }
        }
    })
    .await?;

    let mut fleet = loadgen::fleet(&spec.fleet);
    for d in fleet.iter_mut() {
        d.client.timeout = Duration::from_secs(10);
        d.behavior.reply_delay = spec.reply_delay;
        // Transfers start after their DelaySeconds, as on real CPEs: a session can come
        // between a Download and its TransferComplete.
        d.behavior.honor_delays = true;
    }
    let mut first = Load {
        url: spec.url.clone(),
        arrival: Arrival::Closed(spec.concurrency),
        duration: Duration::from_secs(3600),
        max_sessions: None,
        once: true,
        events: Vec::new(),
        expect: Expect::Discovery,
    };
    let (fleet, p) = loadgen::run_load(fleet, &first).await;
    if p.rec.failed() > 0 {
        anyhow::bail!(
            "{} first-contact sessions failed: {:?}",
            p.rec.failed(),
            p.rec.examples
        );
    }
    first.once = false;
    let mut targets: Vec<Target> = fleet
        .iter()
        .enumerate()
        .map(|(i, d)| Target {
            id: loadgen::device_id(d),
            spv_name: d
                .model
                .iter()
                .find(|(n, p)| {
                    !p.is_object
                        && p.writable
                        && p.xsd_type == "xsd:string"
                        && !n.contains("ManagementServer")
                })
                .map(|(n, _)| n.clone()),
            reset_only: i % 10 == 9,
            reset_queued: false,
        })
        .collect();
    std::fs::write(&spec.ready_file, b"ready\n")?;

    let finished = Arc::new(AtomicBool::new(false));
    let marks: Arc<Mutex<Vec<Mark>>> = Arc::new(Mutex::new(Vec::new()));
    let api_marks: Arc<Mutex<Vec<Mark>>> = Arc::new(Mutex::new(Vec::new()));
    let prober = spec.outage_file.as_ref().map(|_| {
        let (api, finished, api_marks) = (api.clone(), finished.clone(), api_marks.clone());
        tokio::spawn(async move {
            while !finished.load(Ordering::Relaxed) {
                let start = unix_ms();
                let (outcome, body) = match api.call("GET", "/api/v1/tasks?limit=1", None, "").await
                {
                    Ok((status, body)) => (format!("http_{status}"), body),
                    Err(e) => ("io".to_string(), e),
                };
                if let Ok(mut m) = api_marks.lock() {
                    m.push(Mark {
                        start,
                        end: unix_ms(),
                        outcome,
                        body,
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    });
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let c = spec.concurrency.clamp(1, fleet.len().max(1));
    let mut groups: Vec<Vec<Device>> = (0..c).map(|_| Vec::new()).collect();
    for (i, d) in fleet.into_iter().enumerate() {
        groups[i % c].push(d);
    }
    let mut workers = tokio::task::JoinSet::new();
    for mut g in groups {
        let (finished, ok, failed) = (finished.clone(), ok.clone(), failed.clone());
        let (url, pause, marks) = (spec.url.clone(), spec.pause, marks.clone());
        workers.spawn(async move {
            'outer: loop {
                for d in g.iter_mut() {
                    if finished.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    let start = unix_ms();
                    let r = d.run_session(&url, &[("2 PERIODIC", "")]).await;
                    if let Ok(mut m) = marks.lock() {
                        m.push(Mark {
                            start,
                            end: unix_ms(),
                            outcome: outcome_of(&r),
                            body: String::new(),
                        });
                    }
                    match r {
                        Ok(_) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(pause).await;
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(pause * 10).await;
                        }
                    }
                }
            }
            g
        });
    }

    // Queue tasks until the script says the kills are over.
    let mut pick = Pick(spec.seed);
    let mut report = ChaosReport {
        devices: targets.len(),
        ..ChaosReport::default()
    };
    let mut acknowledged: Vec<(i64, String)> = Vec::new();
    let mut n = 0u64;
    while !spec.stop_file.exists() {
        tokio::time::sleep(spec.task_every).await;
        n += 1;
        let i = pick.below(targets.len());
        let t = &mut targets[i];
        let task = if t.reset_only {
            if t.reset_queued {
                continue;
            }
            json!({"rpc": "FactoryReset"})
        } else {
            match pick.below(3) {
                0 => json!({"rpc": "Reboot"}),
                1 => {
                    json!({"rpc": "Download", "file_id": file_id,
                    "file_type": "1 Firmware Upgrade Image", "delay_seconds": 20})
                }
                _ => match &t.spv_name {
                    Some(name) => json!({"rpc": "SetParameterValues",
                        "values": [{"name": name, "value": format!("chaos-{n}")}]}),
                    None => json!({"rpc": "Reboot"}),
                },
            }
        };
        report.create_requests += 1;
        let path = format!("/api/v1/devices/{}/tasks", t.id);
        if let Ok((200..=202, v)) = api.json("POST", &path, Some(&task)).await {
            if let Some(id) = v["id"].as_i64() {
                report.create_acknowledged += 1;
                acknowledged.push((id, t.id.clone()));
                if t.reset_only {
                    t.reset_queued = true;
                }
            }
        } else if t.reset_only {
            // It may have been created before the server died: never queue a second one.
            t.reset_queued = true;
        }
    }

    // Drain: the server stays up; sessions go on until every task has an outcome.
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if api.work_left().await == Some(false) {
            report.drained = true;
            break;
        }
        if start.elapsed() >= spec.drain {
            break;
        }
    }
    report.drain_s = (start.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    finished.store(true, Ordering::Relaxed);
    let mut executed: Vec<Execution> = Vec::new();
    while let Some(g) = workers.join_next().await {
        if let Ok(g) = g {
            for d in g {
                executed.extend(d.state.executed.iter().cloned());
                for rpc in &d.state.interrupted {
                    *report.interrupted.entry(rpc.clone()).or_default() += 1;
                }
            }
        }
    }
    if let Some(p) = prober {
        let _ = p.await;
    }
    if let Some((down, up)) = spec.outage_file.as_deref().and_then(outage_window) {
        let sessions = marks.lock().map(|m| m.clone()).unwrap_or_default();
        let calls = api_marks.lock().map(|m| m.clone()).unwrap_or_default();
        report.outage = Some(observe(down, up, &sessions, &calls));
    }
    report.sessions_ok = ok.load(Ordering::Relaxed);
    report.sessions_failed = failed.load(Ordering::Relaxed);

    let tasks = retry("listing the tasks", Duration::from_secs(30), || {
        api.all_tasks()
    })
    .await?;
    judge(&mut report, &tasks, &acknowledged, &executed);
    Ok(report)
}

/// Classifies every task by its status and how often its CPE executed it.
fn judge(
    report: &mut ChaosReport,
    tasks: &[Value],
    acknowledged: &[(i64, String)],
    executed: &[Execution],
) {
    let mut expected = Vec::new();
    let mut info: BTreeMap<(String, String, String), (i64, String)> = BTreeMap::new();
    for t in tasks {
        let rpc = t["rpc"].as_str().unwrap_or("").to_string();
        if !RPCS.contains(&rpc.as_str()) {
            continue;
        }
        let device = t["device_id"].as_str().unwrap_or("").to_string();
        // A FactoryReset carries no key; a device gets at most one.
        let key = if rpc == "FactoryReset" {
            String::new()
        } else {
            t["command_key"].as_str().unwrap_or("").to_string()
        };
        let status = t["status"].as_str().unwrap_or("").to_string();
        info.insert(
            (device.clone(), rpc.clone(), key.clone()),
            (t["id"].as_i64().unwrap_or(0), status),
        );
        expected.push(ExpectedTask { device, rpc, key });
    }
    let check = ledger::check(&expected, executed, RPCS);
    let mut count: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for e in executed {
        *count
            .entry((e.device.as_str(), e.rpc.as_str(), e.key.as_str()))
            .or_default() += 1;
    }
    for t in &expected {
        let (id, status) = info
            .get(&(t.device.clone(), t.rpc.clone(), t.key.clone()))
            .cloned()
            .unwrap_or_default();
        let times = count
            .get(&(t.device.as_str(), t.rpc.as_str(), t.key.as_str()))
            .copied()
            .unwrap_or(0);
        let finding = Finding {
            task_id: Some(id),
            device: t.device.clone(),
            rpc: t.rpc.clone(),
            key: t.key.clone(),
            status: status.clone(),
            executions: times,
        };
        let c = report.by_rpc.entry(t.rpc.clone()).or_default();
        c.created += 1;
        match (times, status.as_str()) {
            (0, "done") => {
                c.lost += 1;
                report.lost.push(finding);
            }
            (0, "pending" | "running") => {
                c.still_pending += 1;
                report.pending.push(finding);
            }
            (0, _) => c.failed_visibly += 1,
            (1, s) => {
                c.executed_once += 1;
                if s != "done" {
                    c.executed_not_done += 1;
                    report.pending.push(finding);
                }
            }
            _ => {
                c.executed_twice += 1;
                report.duplicates.push(finding);
            }
        }
    }
    // Executions of a key no task carries (SetParameterValues of the server's own bootstrap
    // are not tasks and are left out).
    for e in check
        .unexpected
        .iter()
        .filter(|e| e.rpc != "SetParameterValues")
    {
        report.by_rpc.entry(e.rpc.clone()).or_default().lost += 1;
        report.lost.push(Finding {
            task_id: None,
            device: e.device.clone(),
            rpc: e.rpc.clone(),
            key: e.key.clone(),
            status: "no such task".into(),
            executions: 1,
        });
    }
    // Tasks the API acknowledged must still exist.
    let ids: BTreeSet<i64> = tasks.iter().filter_map(|t| t["id"].as_i64()).collect();
    for (id, device) in acknowledged {
        if !ids.contains(id) {
            report.lost.push(Finding {
                task_id: Some(*id),
                device: device.clone(),
                rpc: String::new(),
                key: String::new(),
                status: "missing".into(),
                executions: 0,
            });
            report.total.lost += 1;
        }
    }
    for c in report.by_rpc.values() {
        let t = &mut report.total;
        t.created += c.created;
        t.executed_once += c.executed_once;
        t.executed_twice += c.executed_twice;
        t.lost += c.lost;
        t.still_pending += c.still_pending;
        t.failed_visibly += c.failed_visibly;
        t.executed_not_done += c.executed_not_done;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn task(id: i64, device: &str, rpc: &str, key: &str, status: &str) -> Value {
        json!({"id": id, "device_id": device, "rpc": rpc, "command_key": key, "status": status})
    }

    fn exec(device: &str, rpc: &str, key: &str) -> Execution {
        Execution {
            device: device.into(),
            rpc: rpc.into(),
            key: key.into(),
        }
    }

    #[test]
    fn the_judge_tells_doubles_losses_and_visible_outcomes_apart() {
        let tasks = [
            task(1, "d1", "Reboot", "k1", "done"),
            task(2, "d1", "Download", "k2", "done"),
            task(3, "d2", "Reboot", "k3", "done"),
            task(4, "d2", "SetParameterValues", "k4", "pending"),
            task(5, "d3", "FactoryReset", "k5", "fault"),
            task(6, "d3", "GetParameterValues", "k6", "done"),
        ];
        let ran = [
            exec("d1", "Reboot", "k1"),
            exec("d1", "Download", "k2"),
            exec("d1", "Download", "k2"),
            exec("d2", "SetParameterValues", "bootstrap"),
            exec("d9", "Reboot", "zz"),
        ];
        let mut r = ChaosReport::default();
        judge(&mut r, &tasks, &[(1, "d1".into()), (7, "d4".into())], &ran);
        assert_eq!(r.total.created, 5);
        assert_eq!(r.total.executed_once, 1);
        assert_eq!(r.total.executed_twice, 1);
        assert_eq!(r.duplicates[0].rpc, "Download");
        // Task 3 done but never run, the Reboot of an unknown key, task 7 gone.
        assert_eq!(r.total.lost, 3);
        assert_eq!((r.total.still_pending, r.total.failed_visibly), (1, 1));
        assert!(!r.is_clean());
    }

    fn mark(start: u64, end: u64, outcome: &str, body: &str) -> Mark {
        Mark {
            start,
            end,
            outcome: outcome.into(),
            body: body.into(),
        }
    }

    #[test]
    fn the_outage_figures_come_from_the_window() {
        let fixed = r#"{"error":{"code":"unavailable","message":"retry shortly"}}"#;
        let sessions = [
            mark(500, 600, "ok", ""),
            mark(1000, 1100, "http_503", ""),
            mark(1500, 1600, "http_503", ""),
            mark(1700, 2050, "ok", ""),
            mark(2100, 2900, "ok", ""),
            mark(8000, 8100, "ok", ""),
        ];
        let api = [
            mark(1200, 1300, "http_503", fixed),
            mark(1900, 1950, "http_200", "{}"),
            mark(2050, 2400, "http_200", "{}"),
            mark(7100, 7200, "http_503", fixed),
        ];
        let o = observe(1000, 2000, &sessions, &api);
        assert_eq!(o.sessions_during.get("http_503"), Some(&2));
        assert_eq!(o.session_503_ms, (100, 100));
        assert_eq!(o.sessions_during.get("ok_after_return"), Some(&1));
        assert_eq!(o.session_recovery_ms, Some(900));
        assert_eq!(o.api_recovery_ms, Some(400));
        assert_eq!((o.sessions_failed_after_5s, o.api_failed_after_5s), (0, 1));
        assert!(o.api_leaks.is_empty());
        let mut r = ChaosReport {
            outage: Some(o),
            ..ChaosReport::default()
        };
        assert!(
            !r.outage_ok(),
            "an API failure 5 s after the return fails the run"
        );
        let leaky = [mark(
            1200,
            1300,
            "http_500",
            r#"{"error":"connection refused to postgres"}"#,
        )];
        let o = observe(1000, 2000, &sessions, &leaky);
        assert_eq!(o.api_leaks.len(), 1);
        r.outage = Some(o);
        assert!(!r.outage_ok());
    }
}
