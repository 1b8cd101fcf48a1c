//! Load generation against a CWMP endpoint: many simulated CPEs (the [`crate::cpe`]
//! simulator) over real HTTP, each session on a fresh TCP connection with cookies and
//! Digest authentication, as real CPEs do.
//!
//! Used by the `loadgen` binary and by the integration tests (which run it briefly at small
//! N and check that every session ends with HTTP 204).
//!
//! Pieces:
//! * [`fleet`]: N synthetic devices with distinct serial numbers.
//! * [`run_load`]: sessions in a closed loop (C workers, each starting its next session when
//!   the previous ended) or an open loop (a fixed arrival rate; latency counts from the
//!   scheduled arrival, so a slow server cannot hide its queueing).
//! * [`hold_sessions`]: sessions left open after the InformResponse, to measure the server's
//!   memory per open session.
//! * [`cr_fanout`]: connection requests from ferroacs's sender to one listener serving many
//!   devices.
//! * [`raw_server`]: the raw ceiling, a trivial actix-web endpoint answering the same
//!   exchanges (401 challenge, InformResponse, 204; a first contact's canned requests)
//!   without any CWMP or database work.
//! * [`ProcCpu`], [`rss_bytes`]: CPU time and memory of a process, from /proc.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cpe::{Device, HttpClient, Root, SessionReport, SimError};

/// Password the simulated devices use (the server's `cwmp.default_password`).
pub const DEFAULT_PASSWORD: &str = "bench-secret";

/// Which devices to simulate.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Serial number prefix; serials are `<prefix><8 digits>`.
    pub prefix: String,
    /// Index of the first device.
    pub first: usize,
    /// Number of devices.
    pub count: usize,
    /// Parameters per device (about).
    pub params: usize,
    /// ACS password (the user name is the device's `OUI-ProductClass-Serial`).
    pub password: String,
}

impl FleetSpec {
    pub fn new(prefix: &str, count: usize, params: usize) -> FleetSpec {
        FleetSpec {
            prefix: prefix.to_string(),
            first: 0,
            count,
            params,
            password: DEFAULT_PASSWORD.to_string(),
        }
    }

    /// Serial number of device `i`.
    pub fn serial(&self, i: usize) -> String {
        format!("{}{:08}", self.prefix, i)
    }
}

/// Builds the devices of `spec` (TR-098 gateways, synthetic trees).
pub fn fleet(spec: &FleetSpec) -> Vec<Device> {
    let template = Device::synthetic(Root::Igd, &spec.serial(spec.first), spec.params);
    let user = template.identity.device_id();
    let template = template.with_acs_credentials(&user, &spec.password);
    (spec.first..spec.first + spec.count)
        .map(|i| template.clone_as(&spec.serial(i)))
        .collect()
}

/// What a session must look like to count as successful.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Ended with 204, whatever the ACS asked.
    Ended,
    /// Ended with 204 and the ACS asked nothing (a periodic session with no work).
    Quiet,
    /// Ended with 204 after exactly these ACS requests, in order.
    Rpcs(Vec<String>),
    /// Ended with 204 after a discovery (GetParameterNames then GetParameterValues).
    Discovery,
}

/// Sorts a session's result into success or an error kind (and a message).
pub fn check(r: &Result<SessionReport, SimError>, expect: &Expect) -> Result<(), (String, String)> {
    let report = match r {
        Ok(rep) => rep,
        Err(e) => {
            let kind = match e {
                SimError::Io { .. } => "io".to_string(),
                SimError::Timeout(..) => "timeout".to_string(),
                SimError::Http { .. } => "malformed_http".to_string(),
                SimError::AuthFailed { .. } => "auth_failed".to_string(),
                SimError::UnexpectedStatus { status, .. } => format!("http_{status}"),
                SimError::BadXml(_) => "bad_xml".to_string(),
                SimError::Protocol(_) => "protocol".to_string(),
                SimError::SessionTooLong(_) => "session_too_long".to_string(),
                _ => "other".to_string(),
            };
            return Err((kind, e.to_string()));
        }
    };
    if report.final_status != 204 {
        return Err((
            "not_204".into(),
            format!("session ended with HTTP {}", report.final_status),
        ));
    }
    let rpcs = report.acs_rpcs();
    let ok = match expect {
        Expect::Ended => true,
        Expect::Quiet => rpcs.is_empty(),
        Expect::Rpcs(want) => rpcs.iter().copied().eq(want.iter().map(String::as_str)),
        Expect::Discovery => {
            rpcs.contains(&"GetParameterNames") && rpcs.contains(&"GetParameterValues")
        }
    };
    if !ok {
        return Err((
            "unexpected_rpcs".into(),
            format!("expected {expect:?}, the ACS sent {rpcs:?}"),
        ));
    }
    Ok(())
}

/// Outcomes and latencies of a phase.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    /// Latency of every successful session, µs.
    pub latencies_us: Vec<u64>,
    /// Sessions that ended as expected.
    pub ok: u64,
    /// Failed sessions by kind.
    pub errors: BTreeMap<String, u64>,
    /// One message per error kind (the first seen).
    pub examples: BTreeMap<String, String>,
}

impl Recorder {
    pub fn record(&mut self, latency: Duration, outcome: Result<(), (String, String)>) {
        match outcome {
            Ok(()) => {
                self.ok += 1;
                self.latencies_us.push(latency.as_micros() as u64);
            }
            Err((kind, msg)) => {
                *self.errors.entry(kind.clone()).or_default() += 1;
                self.examples.entry(kind).or_insert(msg);
            }
        }
    }

    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Latency percentiles in ms.
    pub fn latency(&self) -> Latency {
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let pick = |q: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
            v[i] as f64 / 1000.0
        };
        Latency {
            p50_ms: pick(0.50),
            p90_ms: pick(0.90),
            p99_ms: pick(0.99),
            max_ms: v.last().map_or(0.0, |x| *x as f64 / 1000.0),
        }
    }
}

/// Latency percentiles of sessions, ms.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// How sessions arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// `n` workers, each starting its next session as soon as the previous ended.
    Closed(usize),
    /// A fixed rate of session starts per second, whatever the server's speed.
    Open(f64),
}

/// One load phase.
#[derive(Debug, Clone)]
pub struct Load {
    /// CWMP endpoint URL.
    pub url: String,
    pub arrival: Arrival,
    /// Stop starting sessions after this long.
    pub duration: Duration,
    /// Stop after this many sessions in all.
    pub max_sessions: Option<u64>,
    /// Each device runs at most one session (first contact, tasks).
    pub once: bool,
    /// Events added to every Inform, e.g. `2 PERIODIC`.
    pub events: Vec<(String, String)>,
    pub expect: Expect,
}

/// Result of [`run_load`].
#[derive(Debug, Clone)]
pub struct Phase {
    pub rec: Recorder,
    pub elapsed: Duration,
}

impl Phase {
    pub fn sessions(&self) -> u64 {
        self.rec.ok + self.rec.failed()
    }
}

fn claim(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
        .is_ok()
}

/// Runs sessions of `devices` as `load` says; gives the devices back with the results.
pub async fn run_load(devices: Vec<Device>, load: &Load) -> (Vec<Device>, Phase) {
    let rec = Arc::new(Mutex::new(Recorder::default()));
    let budget = Arc::new(AtomicU64::new(load.max_sessions.unwrap_or(u64::MAX)));
    let start = Instant::now();
    let deadline = start + load.duration;
    let load = Arc::new(load.clone());
    let devices = match load.arrival {
        Arrival::Closed(c) => {
            let c = c.clamp(1, devices.len().max(1));
            let mut groups: Vec<Vec<Device>> = (0..c).map(|_| Vec::new()).collect();
            for (i, d) in devices.into_iter().enumerate() {
                groups[i % c].push(d);
            }
            let mut set = tokio::task::JoinSet::new();
            for mut g in groups {
                let (rec, budget, load) = (rec.clone(), budget.clone(), load.clone());
                set.spawn(async move {
                    let events: Vec<(&str, &str)> = load
                        .events
                        .iter()
                        .map(|(a, b)| (a.as_str(), b.as_str()))
                        .collect();
                    'outer: loop {
                        for d in g.iter_mut() {
                            if Instant::now() >= deadline || !claim(&budget) {
                                break 'outer;
                            }
                            let t0 = Instant::now();
                            let r = d.run_session(&load.url, &events).await;
                            let outcome = check(&r, &load.expect);
                            if let Ok(mut rec) = rec.lock() {
                                rec.record(t0.elapsed(), outcome);
                            }
                        }
                        if load.once || g.is_empty() {
                            break;
                        }
                    }
                    g
                });
            }
            let mut out = Vec::new();
            while let Some(g) = set.join_next().await {
                if let Ok(g) = g {
                    out.extend(g);
                }
            }
            out
        }
        Arrival::Open(rate) => {
            let pool = Arc::new(Mutex::new(devices));
            let total = pool.lock().map(|p| p.len()).unwrap_or(0);
            let used = Arc::new(AtomicUsize::new(0));
            let mut set = tokio::task::JoinSet::new();
            let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
            let mut k: u32 = 0;
            loop {
                let due = start + interval * k;
                if due >= deadline || !claim(&budget) {
                    break;
                }
                if load.once && used.load(Ordering::Relaxed) >= total {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                k += 1;
                while set.try_join_next().is_some() {}
                let dev = pool.lock().ok().and_then(|mut p| p.pop());
                let Some(mut d) = dev else {
                    if let Ok(mut rec) = rec.lock() {
                        rec.record(
                            Duration::ZERO,
                            Err((
                                "no_idle_device".into(),
                                "every simulated device was busy at an arrival: use more devices"
                                    .into(),
                            )),
                        );
                    }
                    continue;
                };
                used.fetch_add(1, Ordering::Relaxed);
                let (rec, pool, load) = (rec.clone(), pool.clone(), load.clone());
                set.spawn(async move {
                    let events: Vec<(&str, &str)> = load
                        .events
                        .iter()
                        .map(|(a, b)| (a.as_str(), b.as_str()))
                        .collect();
                    let r = d.run_session(&load.url, &events).await;
                    let outcome = check(&r, &load.expect);
                    if let Ok(mut rec) = rec.lock() {
                        rec.record(due.elapsed(), outcome);
                    }
                    if let Ok(mut p) = pool.lock() {
                        if load.once {
                            p.insert(0, d);
                        } else {
                            p.push(d);
                        }
                    }
                });
            }
            while set.join_next().await.is_some() {}
            Arc::try_unwrap(pool)
                .ok()
                .and_then(|m| m.into_inner().ok())
                .unwrap_or_default()
        }
    };
    let elapsed = start.elapsed();
    let rec = rec.lock().map(|r| r.clone()).unwrap_or_default();
    (devices, Phase { rec, elapsed })
}

/// Opens one session per device and leaves it open after the InformResponse (no empty
/// POST), `concurrency` at a time. Returns the open clients (drop them to close the
/// connections) and the failures.
pub async fn hold_sessions(
    devices: &mut [Device],
    url: &str,
    concurrency: usize,
) -> (Vec<HttpClient>, Recorder) {
    let mut clients = Vec::with_capacity(devices.len());
    let mut rec = Recorder::default();
    for chunk in devices.chunks_mut(concurrency.max(1)) {
        let mut set = tokio::task::JoinSet::new();
        for d in chunk.iter_mut() {
            let events = d.inform_events(&[("2 PERIODIC", "")]);
            let xml = d.inform_envelope(&events, "hold-1");
            let client = d.http_client(url);
            set.spawn(async move {
                let t0 = Instant::now();
                let mut client = match client {
                    Ok(c) => c,
                    Err(e) => return (t0.elapsed(), Err(("bad_url".to_string(), e.to_string()))),
                };
                match client.post_soap(&xml).await {
                    Ok(r) if r.status == 200 && r.body_text().contains("InformResponse") => {
                        (t0.elapsed(), Ok(client))
                    }
                    Ok(r) => (
                        t0.elapsed(),
                        Err((
                            format!("http_{}", r.status),
                            r.body_text().chars().take(200).collect(),
                        )),
                    ),
                    Err(e) => (t0.elapsed(), Err(("io".to_string(), e.to_string()))),
                }
            });
        }
        while let Some(j) = set.join_next().await {
            match j {
                Ok((lat, Ok(c))) => {
                    rec.record(lat, Ok(()));
                    clients.push(c);
                }
                Ok((lat, Err(e))) => rec.record(lat, Err(e)),
                Err(e) => rec.record(Duration::ZERO, Err(("panic".into(), e.to_string()))),
            }
        }
    }
    (clients, rec)
}

/// ferroacs's device id of a simulated device.
pub fn device_id(d: &Device) -> String {
    ferroacs::cwmp::device_id(
        &d.identity.oui,
        &d.identity.product_class,
        &d.identity.serial_number,
    )
}

/// The tasks queued for every device of a session with work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskMix {
    /// A GetParameterValues of 20 parameters, then a SetParameterValues of 5 writable
    /// strings (values `bench-0` … `bench-4`).
    Gpv20Spv5,
    /// One SetParameterValues of one writable string (value `bench-one`).
    Spv1,
}

impl TaskMix {
    /// The ACS requests a session of this mix carries, in order.
    pub fn rpcs(self) -> Vec<String> {
        match self {
            TaskMix::Gpv20Spv5 => vec!["GetParameterValues".into(), "SetParameterValues".into()],
            TaskMix::Spv1 => vec!["SetParameterValues".into()],
        }
    }

    /// What the benchmark report calls it.
    pub fn describe(self) -> &'static str {
        match self {
            TaskMix::Gpv20Spv5 => "session with GPV of 20 + SPV of 5",
            TaskMix::Spv1 => "session with one SPV of one parameter",
        }
    }
}

/// The task mix of a session with work, as rows to queue for every device of `fleet`.
pub fn task_mix(
    fleet: &[Device],
    mix: TaskMix,
) -> Result<Vec<ferroacs::store::tasks::NewTask>, String> {
    use ferroacs::domain::tasks::{SetValue, TaskSpec};
    let now = ferroacs::store::now_ms();
    let mut new = Vec::with_capacity(fleet.len() * 2);
    let (n_get, n_set) = match mix {
        TaskMix::Gpv20Spv5 => (20, 5),
        TaskMix::Spv1 => (0, 1),
    };
    for d in fleet {
        let leaves: Vec<(&String, &crate::cpe::Param)> =
            d.model.iter().filter(|(_, p)| !p.is_object).collect();
        let gpv: Vec<String> = leaves
            .iter()
            .take(n_get)
            .map(|(n, _)| (*n).clone())
            .collect();
        let spv: Vec<SetValue> = leaves
            .iter()
            .filter(|(n, p)| {
                p.writable && p.xsd_type == "xsd:string" && !n.contains("ManagementServer")
            })
            .take(n_set)
            .enumerate()
            .map(|(i, (n, _))| SetValue {
                name: (*n).clone(),
                value: match mix {
                    TaskMix::Gpv20Spv5 => format!("bench-{i}"),
                    TaskMix::Spv1 => "bench-one".into(),
                },
                xsd_type: Some("xsd:string".into()),
            })
            .collect();
        if gpv.len() < n_get || spv.len() < n_set {
            return Err(format!(
                "device model too small for the task mix ({} leaves, {} writable strings): \
                 use more parameters",
                gpv.len(),
                spv.len()
            ));
        }
        let id = device_id(d);
        let mut specs = Vec::with_capacity(2);
        if !gpv.is_empty() {
            specs.push(TaskSpec::GetParameterValues { names: gpv });
        }
        specs.push(TaskSpec::SetParameterValues { values: spv });
        for spec in specs {
            let args = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
            new.push(ferroacs::store::tasks::NewTask {
                device_id: id.clone(),
                rpc: spec.rpc().to_string(),
                args,
                status: ferroacs::domain::tasks::TaskStatus::Pending,
                command_key: ferroacs::domain::tasks::new_key(),
                expires_at: None,
                created_by: "loadgen".into(),
                created_at: now,
                updated_at: now,
            });
        }
    }
    Ok(new)
}

/// CPU time and memory of a process, read from /proc.
#[derive(Debug, Clone, Copy)]
pub struct ProcCpu {
    pub pid: u32,
}

impl ProcCpu {
    pub fn of(pid: u32) -> ProcCpu {
        ProcCpu { pid }
    }

    pub fn this() -> ProcCpu {
        ProcCpu {
            pid: std::process::id(),
        }
    }

    /// User + system CPU time so far, in seconds (all threads, dead ones included).
    pub fn seconds(&self) -> Option<f64> {
        stat_cpu_seconds(&format!("/proc/{}/stat", self.pid))
    }
}

/// utime + stime of a `/proc/.../stat` file, in seconds.
pub fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let s = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may contain spaces: fields are counted after its ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux architecture we run on.
    100.0
}

/// The PostgreSQL backend processes on this machine serving `database` (their title is
/// `postgres: USER DATABASE CLIENT STATE`), with their CPU time so far in seconds.
pub fn pg_backends(database: &str) -> Vec<(u32, f64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        let Some(title) = cmd.strip_prefix("postgres: ") else {
            continue;
        };
        if title.split_whitespace().nth(1) != Some(database) {
            continue;
        }
        if let Some(s) = stat_cpu_seconds(&format!("/proc/{pid}/stat")) {
            out.push((pid, s));
        }
    }
    out
}

/// Pin every thread of process `pid` to `cpu` (PostgreSQL backends are single-threaded).
pub fn pin_process(pid: u32, cpu: usize) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: as in `pin_thread`; sched_setaffinity(pid, ..) applies to that process's
    // main thread, which for a PostgreSQL backend is the whole process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Resident set size of a process, bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Reads one sample (the sum over its label sets) from a Prometheus text page.
pub fn prom_value(page: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in page.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((key, val)) = line.rsplit_once(' ') else {
            continue;
        };
        let metric = key.split('{').next().unwrap_or(key);
        if metric == name {
            if let Ok(v) = val.parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
    }
    found
}

/// GETs a metrics page (plain HTTP).
pub async fn fetch_text(url: &str) -> Option<String> {
    let mut c = HttpClient::new(url, crate::cpe::ClientOptions::default(), "", "").ok()?;
    let r = c.get(None).await.ok()?;
    (r.status == 200).then(|| r.body_text().into_owned())
}

// ---------------------------------------------------------------------------------------
// Connection-request fan-out
// ---------------------------------------------------------------------------------------

/// Result of [`cr_fanout`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct CrFanout {
    pub devices: usize,
    pub requests: u64,
    pub elapsed_s: f64,
    pub per_second: f64,
    /// Outcomes as ferroacs's sender saw them.
    pub outcomes: BTreeMap<String, u64>,
    /// Requests the listener accepted (valid Digest credentials).
    pub accepted_by_devices: u64,
    /// CPU time of the sending thread per request, µs.
    pub sender_cpu_us_per_request: f64,
    pub latency: Latency,
}

/// Pins the calling thread to one CPU (Linux); false when that is not possible.
pub fn pin_thread(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it, and
    // sched_setaffinity(0, ..) applies to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Sends `requests` connection requests with ferroacs's HTTP sender, `concurrency` at a
/// time, to `devices` simulated devices behind one listener (Digest, as TR-069 requires).
/// The sender runs on its own thread and runtime (pinned to `sender_cpu` when given); the
/// listener runs on the caller's runtime.
pub async fn cr_fanout(
    devices: usize,
    requests: u64,
    concurrency: usize,
    sender_cpu: Option<usize>,
) -> std::io::Result<CrFanout> {
    let listener = crate::cpe::CrListener::start().await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let spec = FleetSpec::new("CRFAN", devices, 10);
    let mut targets = Vec::with_capacity(devices);
    for mut d in fleet(&spec) {
        listener.register_with(&mut d, tx.clone());
        let creds = d.cr_credentials();
        targets.push(ferroacs::connreq::ConnReqTarget {
            url: d.connection_request_url().unwrap_or_default(),
            username: creds.username,
            password: creds.password,
        });
    }
    drop(tx);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let targets = Arc::new(targets);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("cr-sender".into())
        .spawn(move || {
            if let Some(cpu) = sender_cpu {
                pin_thread(cpu);
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(rt) = rt else {
                let _ = done_tx.send(None);
                return;
            };
            let out = rt.block_on(send_all(targets, requests, concurrency));
            let _ = done_tx.send(Some(out));
        })?;
    let sent =
        done_rx.await.ok().flatten().ok_or_else(|| {
            std::io::Error::other("the connection-request sender failed to start")
        })?;
    let (outcomes, rec, elapsed, cpu) = sent;
    let stats = listener.stats();
    drop(listener);
    drain.abort();
    let n: u64 = outcomes.values().sum();
    Ok(CrFanout {
        devices,
        requests: n,
        elapsed_s: elapsed.as_secs_f64(),
        per_second: n as f64 / elapsed.as_secs_f64().max(1e-9),
        outcomes,
        accepted_by_devices: stats.accepted,
        sender_cpu_us_per_request: cpu * 1e6 / (n.max(1) as f64),
        latency: rec.latency(),
    })
}

type Sent = (BTreeMap<String, u64>, Recorder, Duration, f64);

async fn send_all(
    targets: Arc<Vec<ferroacs::connreq::ConnReqTarget>>,
    requests: u64,
    concurrency: usize,
) -> Sent {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = ferroacs::connreq::http::tls_config_with_roots(rustls::RootCertStore::empty());
    let Ok(tls) = tls else {
        return (BTreeMap::new(), Recorder::default(), Duration::ZERO, 0.0);
    };
    // The simulated devices listen wherever the load generator runs, loopback included.
    let Ok(anywhere) = ferroacs::connreq::TargetPolicy::new("", "") else {
        return (BTreeMap::new(), Recorder::default(), Duration::ZERO, 0.0);
    };
    let sender = Arc::new(
        ferroacs::connreq::HttpConnReq::new(Duration::from_secs(5), false, tls)
            .with_policy(Arc::new(anywhere)),
    );
    let next = Arc::new(AtomicU64::new(0));
    let outcomes = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let rec = Arc::new(Mutex::new(Recorder::default()));
    let cpu0 = stat_cpu_seconds("/proc/thread-self/stat").unwrap_or(0.0);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (targets, sender, next, outcomes, rec) = (
            targets.clone(),
            sender.clone(),
            next.clone(),
            outcomes.clone(),
            rec.clone(),
        );
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests || targets.is_empty() {
                    break;
                }
                let t = &targets[(i % targets.len() as u64) as usize];
                let t0 = Instant::now();
                let out = sender.request(t).await;
                let kind = out.code();
                if let Ok(mut o) = outcomes.lock() {
                    *o.entry(kind.to_string()).or_default() += 1;
                }
                if let Ok(mut r) = rec.lock() {
                    let res = if out.is_ok() {
                        Ok(())
                    } else {
                        Err((kind.to_string(), out.to_string()))
                    };
                    r.record(t0.elapsed(), res);
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let cpu = stat_cpu_seconds("/proc/thread-self/stat").unwrap_or(0.0) - cpu0;
    let o = outcomes.lock().map(|o| o.clone()).unwrap_or_default();
    let r = rec.lock().map(|r| r.clone()).unwrap_or_default();
    (o, r, elapsed, cpu)
}

// ---------------------------------------------------------------------------------------
// Raw ceiling
// ---------------------------------------------------------------------------------------

/// An InformResponse of the size ferroacs sends (cwmp-1-0, MaxEnvelopes 1).
const RAW_INFORM_RESPONSE: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
    "<soap-env:Envelope xmlns:soap-env=\"http://schemas.xmlsoap.org/soap/envelope/\" ",
    "xmlns:soap-enc=\"http://schemas.xmlsoap.org/soap/encoding/\" ",
    "xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" ",
    "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" ",
    "xmlns:cwmp=\"urn:dslforum-org:cwmp-1-0\">",
    "<soap-env:Header><cwmp:ID soap-env:mustUnderstand=\"1\">cpe-1</cwmp:ID></soap-env:Header>",
    "<soap-env:Body><cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>",
    "</soap-env:Body></soap-env:Envelope>"
);

const RAW_CHALLENGE: &str = "Digest realm=\"ferroacs\", qop=\"auth\", \
     nonce=\"000001940a3b1c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071\", \
     opaque=\"5ccc069c403ebaf9f0171e9517f40e41\", algorithm=MD5";

/// The cookie of the raw ceiling's periodic sessions (one for all: nothing is kept).
const RAW_PERIODIC_COOKIE: &str =
    "ferroacs_session=0123456789abcdef0123456789abcdef; HttpOnly; Path=/";

/// The raw ceiling's answers to a first contact, built once with ferroacs's encoder: the
/// same exchange ferroacs has with a new device (bootstrap SetParameterValues,
/// GetParameterNames of the whole tree, GetParameterValues of its leaves in batches of
/// ferroacs's default size), so a discovery against it costs the HTTP work of those
/// exchanges and nothing else.
struct RawDiscovery {
    /// The bootstrap SetParameterValues, then GetParameterNames, then the batches.
    requests: Vec<String>,
    /// Session number → how many of `requests` went out.
    sessions: Mutex<std::collections::HashMap<u64, usize>>,
    next: AtomicU64,
}

impl RawDiscovery {
    /// The requests for the synthetic TR-098 tree of `params` parameters that [`fleet`]
    /// builds.
    fn new(params: usize) -> RawDiscovery {
        use ferroacs::cwmp::{
            encode_request, AcsRequest, CwmpNs, GetParameterNames, GetParameterValues, Header,
            ParameterValue, SetParameterValues,
        };
        let device = Device::synthetic(Root::Igd, "RAW00000000", params);
        let root = Root::Igd.prefix();
        let ms = |name: &str| format!("{root}ManagementServer.{name}");
        let bootstrap = AcsRequest::SetParameterValues(SetParameterValues {
            parameter_list: vec![
                ParameterValue::new(ms("PeriodicInformEnable"), "true", "xsd:boolean"),
                ParameterValue::new(ms("PeriodicInformInterval"), "86400", "xsd:unsignedInt"),
                ParameterValue::string(ms("ConnectionRequestUsername"), "cr-0f3a9c2b7d41e5a8"),
                ParameterValue::string(ms("ConnectionRequestPassword"), "Zq8vN1xK4mT7pR2sW9yB3cF6"),
                ParameterValue::string(ms("Username"), "02AC50-SimGW-RAW00000000"),
                ParameterValue::string(ms("Password"), "Hx5Lr8Qp2Vw7Ks4Nz9Tb6Jd3"),
            ],
            parameter_key: String::new(),
        });
        let names = AcsRequest::GetParameterNames(GetParameterNames {
            parameter_path: root.to_string(),
            next_level: false,
        });
        let leaves: Vec<String> = device
            .model
            .iter()
            .filter(|(_, p)| !p.is_object)
            .map(|(name, _)| name.clone())
            .collect();
        let batch = ferroacs::config::CwmpConfig::default().gpv_batch_size;
        let values = leaves.chunks(batch).map(|names| {
            AcsRequest::GetParameterValues(GetParameterValues {
                parameter_names: names.to_vec(),
            })
        });
        let requests = [bootstrap, names]
            .into_iter()
            .chain(values)
            .enumerate()
            .map(|(i, r)| encode_request(CwmpNs::V1_0, &Header::with_id(format!("acs-{i}")), &r))
            .collect();
        RawDiscovery {
            requests,
            sessions: Mutex::new(std::collections::HashMap::new()),
            next: AtomicU64::new(1),
        }
    }

    /// A new first-contact session: its number.
    fn open(&self) -> u64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(n, 0);
        }
        n
    }

    /// The next request of session `n`, or `None` when it is over (or unknown).
    fn next_request(&self, n: u64) -> Option<&str> {
        let mut sessions = self.sessions.lock().ok()?;
        let sent = sessions.get_mut(&n)?;
        match self.requests.get(*sent) {
            Some(r) => {
                *sent += 1;
                Some(r)
            }
            None => {
                sessions.remove(&n);
                None
            }
        }
    }
}

/// The raw ceiling's first-contact session named by the request's cookie.
fn raw_session(req: &actix_web::HttpRequest) -> Option<u64> {
    req.headers()
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("raw_discovery="))
        .and_then(|n| n.parse().ok())
}

async fn raw_endpoint(
    req: actix_web::HttpRequest,
    body: actix_web::web::Bytes,
    discovery: actix_web::web::Data<RawDiscovery>,
) -> actix_web::HttpResponse {
    use actix_web::http::header;
    use actix_web::HttpResponse;
    if req.headers().get(header::AUTHORIZATION).is_none() {
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, RAW_CHALLENGE))
            .content_type("text/plain; charset=utf-8")
            .body("authentication required\n");
    }
    let xml = |body: String| {
        HttpResponse::Ok()
            .content_type("text/xml; charset=\"utf-8\"")
            .body(body)
    };
    // A first contact: the CPE's answers are not read, each one gets the next request.
    if let Some(n) = raw_session(&req) {
        return match discovery.next_request(n) {
            Some(r) => xml(r.to_owned()),
            None => HttpResponse::NoContent()
                .insert_header((header::CONTENT_LENGTH, "0"))
                .finish(),
        };
    }
    if body.is_empty() {
        return HttpResponse::NoContent()
            .insert_header((header::CONTENT_LENGTH, "0"))
            .finish();
    }
    let cookie = if is_first_contact(&body) {
        format!("raw_discovery={}; HttpOnly; Path=/", discovery.open())
    } else {
        RAW_PERIODIC_COOKIE.to_owned()
    };
    HttpResponse::Ok()
        .content_type("text/xml; charset=\"utf-8\"")
        .insert_header((header::SET_COOKIE, cookie))
        .body(RAW_INFORM_RESPONSE)
}

/// Whether an Inform carries the `0 BOOTSTRAP` event (a first contact).
fn is_first_contact(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"0 BOOTSTRAP").is_some()
}

/// The raw ceiling: an actix-web server (same HTTP stack and settings as ferroacs's CWMP
/// listener) that answers a request without credentials with a Digest challenge, a POST
/// with a body with a fixed InformResponse and an empty POST with 204. No XML parsing,
/// no credential check, no database. An Inform with `0 BOOTSTRAP` starts the exchange of a
/// first contact with a tree of `discovery_params` parameters instead: canned requests in
/// the order ferroacs sends them, whatever the CPE answers.
pub fn raw_server(
    listener: std::net::TcpListener,
    discovery_params: usize,
) -> std::io::Result<actix_web::dev::Server> {
    let discovery = actix_web::web::Data::new(RawDiscovery::new(discovery_params));
    let srv = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(discovery.clone())
            .default_service(actix_web::web::to(raw_endpoint))
    })
    .keep_alive(Duration::from_secs(30))
    .client_request_timeout(Duration::from_secs(30))
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    Ok(srv)
}
