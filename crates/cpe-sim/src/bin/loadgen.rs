//! `loadgen`: load generator and measuring instrument for ferroacs.
//!
//! Simulates many distinct CPEs over real HTTP (fresh TCP connection per session, cookies,
//! Digest authentication) and reports sessions per second, session latency, errors by kind,
//! its own CPU time and the server's CPU time per session (from /proc for `--server-pid`).
//! `scripts/bench` drives it; `loadgen <command> --help` lists the knobs.

use ferroacs_cpe_sim::{cpe, loadgen};

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use loadgen::{Arrival, Expect, FleetSpec, Load, Phase, ProcCpu};

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Load generator for ferroacs: simulated CPEs over real HTTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct Target {
    /// CWMP endpoint URL.
    #[arg(long, default_value = "http://127.0.0.1:7547/")]
    url: String,
    /// Process id of the server, to read its CPU time and memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's Prometheus page, to read its database time per session.
    #[arg(long)]
    metrics: Option<String>,
    /// Name of the target in the output (e.g. `sqlite`, `postgres`, `raw`).
    #[arg(long, default_value = "ferroacs")]
    label: String,
    /// ACS password of the simulated devices (the server's cwmp.default_password).
    #[arg(long, default_value = loadgen::DEFAULT_PASSWORD)]
    password: String,
    /// PostgreSQL database of the server (on this machine): the CPU time of its backend
    /// processes (`postgres: USER DATABASE ...`) over a phase is reported per session.
    #[arg(long)]
    pg_database: Option<String>,
    /// Pin those backend processes to this CPU at the start of every phase (e.g. the
    /// server's, to count PostgreSQL's work on the server's core).
    #[arg(long, requires = "pg_database")]
    pg_pin_cpu: Option<usize>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Periodic sessions (Inform, InformResponse, empty POST, 204) of known devices: first a
    /// bootstrap session per device (not measured), then a closed loop at maximum rate,
    /// then optionally an open loop at a fixed or at half the measured rate.
    Periodic {
        #[command(flatten)]
        target: Target,
        /// Simulated devices.
        #[arg(long, default_value_t = 2000)]
        devices: usize,
        /// Parameters per device.
        #[arg(long, default_value_t = 30)]
        params: usize,
        /// Workers of the closed loop.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Seconds of each measured phase.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Open loop at this many sessions per second instead of the closed loop.
        #[arg(long)]
        rate: Option<f64>,
        /// After the closed loop, an open loop at half its rate (latency at half load).
        #[arg(long)]
        half_rate: bool,
        /// Serial number prefix.
        #[arg(long, default_value = "PER")]
        prefix: String,
        /// The devices are already known (or the target is the raw ceiling): no first
        /// contact before the measured phases.
        #[arg(long)]
        no_bootstrap: bool,
    },
    /// Sessions with pending tasks: each device gets its tasks (`--mix`: by default a
    /// GetParameterValues of 20 parameters and a SetParameterValues of 5; `spv1`: one
    /// SetParameterValues of one parameter) queued directly in the database, then one session
    /// (after its first contact and two quiet sessions, none of them measured).
    Tasks {
        #[command(flatten)]
        target: Target,
        /// The server's database URL (tasks are queued there).
        #[arg(long)]
        database: String,
        /// The tasks of every device: `gpv20-spv5` or `spv1`.
        #[arg(long, default_value = "gpv20-spv5", value_parser = parse_mix)]
        mix: loadgen::TaskMix,
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        #[arg(long, default_value_t = 60)]
        params: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value = "TSK")]
        prefix: String,
    },
    /// First contact of new devices: bootstrap, full discovery of P parameters.
    Discovery {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        #[arg(long, default_value_t = 300)]
        params: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value = "DSC")]
        prefix: String,
        /// Index of the first device (to run again with new devices on the same server).
        #[arg(long, default_value_t = 0)]
        first: usize,
    },
    /// Opens sessions and leaves them open after the InformResponse, then reads the
    /// server's memory.
    Hold {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 10_000)]
        devices: usize,
        #[arg(long, default_value_t = 300)]
        params: usize,
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        #[arg(long, default_value = "SEED")]
        prefix: String,
        #[arg(long, default_value_t = 0)]
        first: usize,
        /// Seconds to keep the sessions open after the last one opened.
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
    },
    /// Connection-request fan-out: ferroacs's HTTP sender against one listener serving many
    /// simulated devices (Digest).
    Cr {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        #[arg(long, default_value_t = 20_000)]
        requests: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// CPU for the sending thread (the listener stays on the others).
        #[arg(long)]
        sender_cpu: Option<usize>,
        /// CPU for the listener's threads.
        #[arg(long)]
        listener_cpu: Option<usize>,
    },
    /// Copies a discovered device N times straight into the database, then reports the
    /// database bytes per device.
    Seed {
        /// Database URL (as ferroacs's database.url).
        #[arg(long)]
        database: String,
        /// Serial prefix and index of the device to copy (discovered by `discovery`).
        #[arg(long, default_value = "DSC")]
        template_prefix: String,
        #[arg(long, default_value_t = 0)]
        template_index: usize,
        /// Serial prefix of the copies.
        #[arg(long, default_value = "SEED")]
        prefix: String,
        #[arg(long, default_value_t = 100_000)]
        devices: usize,
        /// Devices per transaction.
        #[arg(long, default_value_t = 5000)]
        batch: usize,
    },
    /// Crash test: periodic and task sessions while Reboot, Download, SetParameterValues and
    /// FactoryReset tasks are queued through the admin API and the server is killed and
    /// restarted from outside (`scripts/chaos`); then every task is checked against the
    /// CPEs' ledger. Creates --ready-file after the first contact of every device; stops
    /// queuing when --stop-file exists. Exits 2 on a double execution or a lost task.
    Chaos {
        #[command(flatten)]
        target: Target,
        /// Admin API base URL.
        #[arg(long)]
        api: String,
        /// API token (role operator or admin).
        #[arg(long, env = "LOADGEN_API_TOKEN", hide_env_values = true)]
        token: String,
        #[arg(long, default_value_t = 200)]
        devices: usize,
        #[arg(long, default_value_t = 40)]
        params: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Milliseconds between two task creations.
        #[arg(long, default_value_t = 100)]
        task_every_ms: u64,
        /// Milliseconds a worker pauses after a session.
        #[arg(long, default_value_t = 20)]
        pause_ms: u64,
        /// Milliseconds a CPE takes to answer a state-changing RPC it executed: the window in
        /// which a kill leaves the server not knowing whether the RPC ran.
        #[arg(long, default_value_t = 300)]
        reply_delay_ms: u64,
        #[arg(long)]
        ready_file: PathBuf,
        #[arg(long)]
        stop_file: PathBuf,
        /// Longest wait, in seconds, for every task to finish after the kills.
        #[arg(long, default_value_t = 180)]
        drain_secs: u64,
        #[arg(long, default_value = "CHAOS")]
        prefix: String,
        /// A database outage is observed: the caller writes `down <unix ms>` and `up <unix
        /// ms>` lines here; the report gets what sessions and the API saw.
        #[arg(long)]
        outage_file: Option<PathBuf>,
    },
    /// The raw ceiling: a trivial actix-web endpoint answering the same exchanges (periodic
    /// sessions, and first contacts with canned discovery requests).
    RawServer {
        #[arg(long, default_value = "127.0.0.1:7548")]
        listen: String,
        /// Parameters of the devices whose first contact it answers (as `discovery
        /// --params`).
        #[arg(long, default_value_t = 300)]
        params: usize,
    },
    /// Renders BENCHMARKS.md from the JSON results in a directory.
    Report {
        #[arg(long)]
        dir: PathBuf,
        /// Text appended after the figures (analysis of the bounds).
        #[arg(long)]
        notes: Option<PathBuf>,
        /// The previous BENCHMARKS.md: its hand-kept sections (between `<!-- NAME -->` and
        /// `<!-- /NAME -->` lines, written by other scripts or by hand) are carried over,
        /// each in its slot of the new file or, without one, at its end.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Cr {
        listener_cpu: Some(cpu),
        ..
    } = &cli.command
    {
        // Before the runtime starts, so its threads inherit the mask.
        loadgen::pin_thread(*cpu);
    }
    if let Command::RawServer { listen, params } = &cli.command {
        return match raw_server(listen, *params) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen raw-server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Report { dir, notes, keep } = &cli.command {
        let kept = match keep.as_deref().map(std::fs::read_to_string) {
            None => String::new(),
            Some(Ok(t)) => t,
            // A first run has no previous file.
            Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Some(Err(e)) => {
                eprintln!("loadgen report: cannot read the previous file: {e}");
                return ExitCode::FAILURE;
            }
        };
        return match report(dir, notes.as_deref()).map(|md| keep_sections(&md, &kept)) {
            Ok(md) => {
                print!("{md}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("loadgen report: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Chaos { .. } = &cli.command {
        return match rt.block_on(chaos(cli.command)) {
            Ok((v, clean)) => {
                println!("{v}");
                if clean {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(2)
                }
            }
            Err(e) => {
                eprintln!("loadgen chaos: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match rt.block_on(run(cli.command)) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn chaos(cmd: Command) -> anyhow::Result<(Value, bool)> {
    let Command::Chaos {
        target,
        api,
        token,
        devices,
        params,
        concurrency,
        seed,
        task_every_ms,
        pause_ms,
        reply_delay_ms,
        ready_file,
        stop_file,
        drain_secs,
        prefix,
        outage_file,
    } = cmd
    else {
        anyhow::bail!("not the chaos command");
    };
    let spec = ferroacs_cpe_sim::chaos::ChaosSpec {
        url: target.url.clone(),
        api,
        token,
        fleet: FleetSpec {
            password: target.password.clone(),
            ..FleetSpec::new(&prefix, devices, params)
        },
        concurrency,
        seed,
        task_every: Duration::from_millis(task_every_ms),
        pause: Duration::from_millis(pause_ms),
        reply_delay: Duration::from_millis(reply_delay_ms),
        ready_file,
        stop_file,
        drain: Duration::from_secs(drain_secs),
        outage_file,
    };
    let r = ferroacs_cpe_sim::chaos::run(&spec).await?;
    let clean = r.is_clean() && r.outage_ok();
    Ok((serde_json::to_value(&r)?, clean))
}

fn raw_server(listen: &str, params: usize) -> anyhow::Result<()> {
    let l = std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    l.set_nonblocking(true)?;
    eprintln!("raw ceiling endpoint on http://{}/", l.local_addr()?);
    let sys = actix_web::rt::System::new();
    sys.block_on(async move {
        let srv = loadgen::raw_server(l, params)?;
        srv.await
    })?;
    Ok(())
}

/// Server and generator figures around a measured phase.
struct Meter {
    server: Option<ProcCpu>,
    server_cpu0: Option<f64>,
    own_cpu0: Option<f64>,
    db0: Option<f64>,
    metrics: Option<String>,
    pg_database: Option<String>,
    pg0: Vec<(u32, f64)>,
}

impl Meter {
    async fn start(t: &Target) -> Meter {
        let server = t.server_pid.map(ProcCpu::of);
        let db0 = match &t.metrics {
            Some(u) => db_seconds(u).await,
            None => None,
        };
        let pg0 = match &t.pg_database {
            Some(db) => {
                let backends = loadgen::pg_backends(db);
                if let Some(cpu) = t.pg_pin_cpu {
                    for (pid, _) in &backends {
                        if !loadgen::pin_process(*pid, cpu) {
                            eprintln!("cannot pin PostgreSQL backend {pid} to CPU {cpu}");
                        }
                    }
                }
                backends
            }
            None => Vec::new(),
        };
        Meter {
            server,
            server_cpu0: server.and_then(|s| s.seconds()),
            own_cpu0: ProcCpu::this().seconds(),
            db0,
            metrics: t.metrics.clone(),
            pg_database: t.pg_database.clone(),
            pg0,
        }
    }

    /// Fills the CPU, database and memory figures for `sessions` sessions.
    async fn finish(&self, sessions: u64, out: &mut Value) {
        let n = sessions.max(1) as f64;
        if let (Some(a), Some(b)) = (self.own_cpu0, ProcCpu::this().seconds()) {
            out["loadgen_cpu_s"] = json!(round(b - a, 3));
            out["loadgen_cpu_us_per_session"] = json!(round((b - a) * 1e6 / n, 1));
        }
        if let Some(s) = self.server {
            if let (Some(a), Some(b)) = (self.server_cpu0, s.seconds()) {
                out["server_cpu_s"] = json!(round(b - a, 3));
                out["server_cpu_us_per_session"] = json!(round((b - a) * 1e6 / n, 1));
            }
            if let Some(rss) = loadgen::rss_bytes(s.pid) {
                out["server_rss_mb"] = json!(round(rss as f64 / 1048576.0, 1));
            }
        }
        if let (Some(u), Some(a)) = (&self.metrics, self.db0) {
            if let Some(b) = db_seconds(u).await {
                out["server_db_us_per_session"] = json!(round((b - a) * 1e6 / n, 1));
            }
        }
        if let Some(db) = &self.pg_database {
            // Backends that appeared during the phase count from zero; ones that ended
            // during it are lost (the server's pool keeps its connections).
            let now = loadgen::pg_backends(db);
            let used: f64 = now
                .iter()
                .map(|(pid, b)| {
                    let a = self
                        .pg0
                        .iter()
                        .find(|(p, _)| p == pid)
                        .map_or(0.0, |(_, a)| *a);
                    (b - a).max(0.0)
                })
                .sum();
            out["postgres_backends"] = json!(now.len());
            out["postgres_cpu_s"] = json!(round(used, 3));
            out["postgres_cpu_us_per_session"] = json!(round(used * 1e6 / n, 1));
        }
    }
}

async fn db_seconds(url: &str) -> Option<f64> {
    let page = loadgen::fetch_text(url).await?;
    loadgen::prom_value(&page, "ferroacs_cwmp_session_db_seconds_total")
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

fn phase_json(name: &str, t: &Target, devices: usize, arrival: &str, p: &Phase) -> Value {
    let secs = p.elapsed.as_secs_f64().max(1e-9);
    json!({
        "phase": name,
        "target": t.label,
        "devices": devices,
        "arrival": arrival,
        "sessions_ok": p.rec.ok,
        "sessions_failed": p.rec.failed(),
        "errors": p.rec.errors,
        "error_examples": p.rec.examples,
        "elapsed_s": round(secs, 3),
        "sessions_per_s": round(p.rec.ok as f64 / secs, 1),
        "latency": p.rec.latency(),
    })
}

fn summary(v: &Value) {
    eprintln!(
        "{} [{}] {}: {} ok, {} failed, {}/s, p99 {} ms, server {} µs/session, postgres {} µs/session, loadgen {} µs/session",
        v["phase"].as_str().unwrap_or(""),
        v["target"].as_str().unwrap_or(""),
        v["arrival"].as_str().unwrap_or(""),
        v["sessions_ok"],
        v["sessions_failed"],
        v["sessions_per_s"],
        v["latency"]["p99_ms"],
        v["server_cpu_us_per_session"],
        v["postgres_cpu_us_per_session"],
        v["loadgen_cpu_us_per_session"],
    );
    if let Some(ex) = v["error_examples"].as_object() {
        for (k, m) in ex {
            eprintln!("  error {k}: {m}");
        }
    }
}

fn load(url: &str, arrival: Arrival, duration: f64, expect: Expect) -> Load {
    Load {
        url: url.to_string(),
        arrival,
        duration: Duration::from_secs_f64(duration),
        max_sessions: None,
        once: false,
        events: vec![("2 PERIODIC".into(), String::new())],
        expect,
    }
}

fn arrival_name(a: Arrival) -> String {
    match a {
        Arrival::Closed(c) => format!("closed loop, {c} workers"),
        Arrival::Open(r) => format!("open loop, {r:.0}/s"),
    }
}

/// First contact of every device (bootstrap + discovery), `concurrency` at a time, then two
/// quiet sessions per device (not measured either): a device given credentials of its own at
/// first contact confirms them with its first login, a one-time exchange (a transaction and
/// an update of the device's credentials), and the session after it is the first to find
/// them as the device's own (credentials still to be confirmed are never cached, so that
/// session looks them up in the database). Both would otherwise land in the measured phase:
/// in every measured session of a phase of one session per device.
/// The phase returned is the first contacts'.
async fn bootstrap(
    devices: Vec<cpe::Device>,
    url: &str,
    concurrency: usize,
) -> anyhow::Result<(Vec<cpe::Device>, Phase)> {
    let n = devices.len();
    let mut l = load(url, Arrival::Closed(concurrency), 3600.0, Expect::Discovery);
    l.once = true;
    l.events.clear();
    let (devices, p) = loadgen::run_load(devices, &l).await;
    if p.rec.failed() > 0 {
        anyhow::bail!(
            "{} of {n} first-contact sessions failed: {:?}; is the server running at {url} \
             with cwmp.default_password set to the devices' password?",
            p.rec.failed(),
            p.rec.examples
        );
    }
    let mut quiet = load(url, Arrival::Closed(concurrency), 3600.0, Expect::Quiet);
    quiet.once = true;
    let mut devices = devices;
    for _ in 0..2 {
        let (after, q) = loadgen::run_load(devices, &quiet).await;
        if q.rec.failed() > 0 {
            anyhow::bail!(
                "{} of {n} sessions after first contact failed: {:?}",
                q.rec.failed(),
                q.rec.examples
            );
        }
        devices = after;
    }
    Ok((devices, p))
}

async fn run(cmd: Command) -> anyhow::Result<Value> {
    match cmd {
        Command::Periodic {
            target,
            devices,
            params,
            concurrency,
            duration,
            rate,
            half_rate,
            prefix,
            no_bootstrap,
        } => {
            let spec = FleetSpec {
                password: target.password.clone(),
                ..FleetSpec::new(&prefix, devices, params)
            };
            let mut fleet = loadgen::fleet(&spec);
            if no_bootstrap {
                for d in fleet.iter_mut() {
                    d.state.bootstrapped = true;
                }
            } else {
                let (f, warm) = bootstrap(fleet, &target.url, concurrency).await?;
                fleet = f;
                eprintln!(
                    "bootstrap: {} devices in {:.1} s",
                    warm.rec.ok,
                    warm.elapsed.as_secs_f64()
                );
            }
            let mut phases = Vec::new();
            let first = match rate {
                Some(r) => Arrival::Open(r),
                None => Arrival::Closed(concurrency),
            };
            let mut arrivals = vec![first];
            let mut max_rate = None;
            let mut i = 0;
            while i < arrivals.len() {
                let a = arrivals[i];
                i += 1;
                let meter = Meter::start(&target).await;
                let l = load(&target.url, a, duration, Expect::Quiet);
                let (f, p) = loadgen::run_load(fleet, &l).await;
                fleet = f;
                let name = match a {
                    Arrival::Closed(_) => "periodic",
                    Arrival::Open(_) if max_rate.is_some() => "periodic_half_rate",
                    Arrival::Open(_) => "periodic_open",
                };
                let mut v = phase_json(name, &target, devices, &arrival_name(a), &p);
                meter.finish(p.sessions(), &mut v).await;
                summary(&v);
                if let (Arrival::Closed(_), true) = (a, half_rate) {
                    let r = p.rec.ok as f64 / p.elapsed.as_secs_f64().max(1e-9) / 2.0;
                    max_rate = Some(r);
                    arrivals.push(Arrival::Open(r.max(1.0)));
                }
                phases.push(v);
            }
            Ok(json!({ "command": "periodic", "target": target.label, "phases": phases }))
        }
        Command::Tasks {
            target,
            database,
            mix,
            devices,
            params,
            concurrency,
            prefix,
        } => {
            let spec = FleetSpec {
                password: target.password.clone(),
                ..FleetSpec::new(&prefix, devices, params)
            };
            let fleet = loadgen::fleet(&spec);
            // The devices confirmed their credentials in `bootstrap`: the measured session
            // differs from a periodic one only by its task.
            let (fleet, _) = bootstrap(fleet, &target.url, concurrency).await?;
            let queued = queue_tasks(&database, &fleet, mix).await?;
            eprintln!("queued {queued} tasks");
            let meter = Meter::start(&target).await;
            let mut l = load(
                &target.url,
                Arrival::Closed(concurrency),
                3600.0,
                Expect::Rpcs(mix.rpcs()),
            );
            l.once = true;
            let (_, p) = loadgen::run_load(fleet, &l).await;
            let mut v = phase_json(
                "tasks",
                &target,
                devices,
                &arrival_name(Arrival::Closed(concurrency)),
                &p,
            );
            v["workload"] = json!(mix.describe());
            meter.finish(p.sessions(), &mut v).await;
            summary(&v);
            Ok(json!({ "command": "tasks", "target": target.label, "phases": [v] }))
        }
        Command::Discovery {
            target,
            devices,
            params,
            concurrency,
            prefix,
            first,
        } => {
            let spec = FleetSpec {
                password: target.password.clone(),
                first,
                ..FleetSpec::new(&prefix, devices, params)
            };
            let fleet = loadgen::fleet(&spec);
            let meter = Meter::start(&target).await;
            let mut l = load(
                &target.url,
                Arrival::Closed(concurrency),
                3600.0,
                Expect::Discovery,
            );
            l.once = true;
            l.events.clear();
            let (_, p) = loadgen::run_load(fleet, &l).await;
            let mut v = phase_json(
                "discovery",
                &target,
                devices,
                &arrival_name(Arrival::Closed(concurrency)),
                &p,
            );
            v["params"] = json!(params);
            meter.finish(p.sessions(), &mut v).await;
            summary(&v);
            Ok(json!({ "command": "discovery", "target": target.label, "phases": [v] }))
        }
        Command::Hold {
            target,
            devices,
            params,
            concurrency,
            prefix,
            first,
            hold,
        } => {
            let spec = FleetSpec {
                password: target.password.clone(),
                first,
                ..FleetSpec::new(&prefix, devices, params)
            };
            let mut fleet = loadgen::fleet(&spec);
            for d in fleet.iter_mut() {
                // Known devices: no BOOTSTRAP/BOOT events.
                d.state.bootstrapped = true;
            }
            let pid = target.server_pid;
            let rss0 = pid.and_then(loadgen::rss_bytes);
            let started = std::time::Instant::now();
            let (clients, rec) = loadgen::hold_sessions(&mut fleet, &target.url, concurrency).await;
            let opened = started.elapsed();
            tokio::time::sleep(Duration::from_secs_f64(hold)).await;
            let rss1 = pid.and_then(loadgen::rss_bytes);
            let active = match &target.metrics {
                Some(u) => loadgen::fetch_text(u)
                    .await
                    .and_then(|p| loadgen::prom_value(&p, "ferroacs_cwmp_sessions_active")),
                None => None,
            };
            drop(clients);
            let mb = |b: Option<u64>| b.map(|b| round(b as f64 / 1048576.0, 1));
            let per_session_kb = match (rss0, rss1) {
                (Some(a), Some(b)) if rec.ok > 0 => {
                    Some(round((b as f64 - a as f64) / 1024.0 / rec.ok as f64, 2))
                }
                _ => None,
            };
            let v = json!({
                "phase": "hold",
                "target": target.label,
                "devices": devices,
                "sessions_open": rec.ok,
                "sessions_failed": rec.failed(),
                "errors": rec.errors,
                "error_examples": rec.examples,
                "open_s": round(opened.as_secs_f64(), 2),
                "server_sessions_active": active,
                "server_rss_before_mb": mb(rss0),
                "server_rss_open_mb": mb(rss1),
                "server_rss_kb_per_open_session": per_session_kb,
            });
            eprintln!(
                "hold [{}]: {} sessions open ({} failed), server RSS {:?} MB -> {:?} MB",
                target.label,
                rec.ok,
                rec.failed(),
                mb(rss0),
                mb(rss1)
            );
            Ok(json!({ "command": "hold", "target": target.label, "phases": [v] }))
        }
        Command::Cr {
            devices,
            requests,
            concurrency,
            sender_cpu,
            listener_cpu: _,
        } => {
            let r = loadgen::cr_fanout(devices, requests, concurrency, sender_cpu).await?;
            eprintln!(
                "connection requests: {} in {:.2} s = {:.0}/s, {:?}, sender {:.1} µs CPU each",
                r.requests, r.elapsed_s, r.per_second, r.outcomes, r.sender_cpu_us_per_request
            );
            let mut v = serde_json::to_value(&r)?;
            v["phase"] = json!("cr_fanout");
            v["per_second"] = json!(round(r.per_second, 1));
            v["sender_cpu_us_per_request"] = json!(round(r.sender_cpu_us_per_request, 1));
            Ok(json!({ "command": "cr", "phases": [v] }))
        }
        Command::Seed {
            database,
            template_prefix,
            template_index,
            prefix,
            devices,
            batch,
        } => {
            seed(
                &database,
                &template_prefix,
                template_index,
                &prefix,
                devices,
                batch,
            )
            .await
        }
        Command::RawServer { .. } | Command::Report { .. } | Command::Chaos { .. } => {
            anyhow::bail!("handled before the runtime starts")
        }
    }
}

fn parse_mix(s: &str) -> Result<loadgen::TaskMix, String> {
    match s {
        "gpv20-spv5" => Ok(loadgen::TaskMix::Gpv20Spv5),
        "spv1" => Ok(loadgen::TaskMix::Spv1),
        other => Err(format!(
            "unknown task mix {other:?}: use gpv20-spv5 or spv1"
        )),
    }
}

fn open_store(url: &str) -> anyhow::Result<ferroacs::store::Store> {
    let cfg = ferroacs::config::DatabaseConfig {
        url: url.to_string(),
        pool_size: 2,
        ..Default::default()
    };
    ferroacs::store::Store::open(&cfg).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Queues the task mix for every device of `fleet` in the server's database.
async fn queue_tasks(
    database: &str,
    fleet: &[cpe::Device],
    mix: loadgen::TaskMix,
) -> anyhow::Result<usize> {
    let new = loadgen::task_mix(fleet, mix).map_err(|e| anyhow::anyhow!(e))?;
    let database = database.to_string();
    let n = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let store = open_store(&database)?;
        let rows = store
            .insert_tasks(&new)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(rows.len())
    })
    .await??;
    Ok(n)
}

async fn seed(
    database: &str,
    template_prefix: &str,
    template_index: usize,
    prefix: &str,
    devices: usize,
    batch: usize,
) -> anyhow::Result<Value> {
    let tspec = FleetSpec {
        first: template_index,
        ..FleetSpec::new(template_prefix, 1, 1)
    };
    let template = ferroacs::cwmp::device_id("02AC50", "SimGW", &tspec.serial(template_index));
    let spec = FleetSpec::new(prefix, devices, 1);
    let database = database.to_string();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Value> {
        let store = open_store(&database)?;
        let err = |e: ferroacs::error::Error| anyhow::anyhow!("{e}");
        let blob = store.load_params(&template).map_err(err)?.base.ok_or_else(|| {
            anyhow::anyhow!(
                "device {template} has no stored parameters: run `loadgen discovery` first"
            )
        })?;
        let before_devices = store.count_devices().map_err(err)?;
        let before = store.database_bytes().map_err(err)?;
        let started = std::time::Instant::now();
        let now = ferroacs::store::now_ms();
        let mut done = 0;
        while done < devices {
            let end = (done + batch.max(1)).min(devices);
            let copies: Vec<(String, String)> = (done..end)
                .map(|i| {
                    let serial = spec.serial(i);
                    (
                        ferroacs::cwmp::device_id("02AC50", "SimGW", &serial),
                        serial,
                    )
                })
                .collect();
            store
                .clone_device(&template, &copies, now)
                .map_err(err)?;
            done = end;
        }
        let elapsed = started.elapsed();
        let after = store.database_bytes().map_err(err)?;
        let per = (after - before) as f64 / devices.max(1) as f64;
        eprintln!(
            "seeded {devices} devices in {:.1} s; database {:.1} MB -> {:.1} MB, {:.0} bytes per device",
            elapsed.as_secs_f64(),
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            per
        );
        Ok(json!({
            "command": "seed",
            "phases": [{
                "phase": "seed",
                "backend": store.backend_name(),
                "devices": devices,
                "devices_before": before_devices,
                "elapsed_s": round(elapsed.as_secs_f64(), 1),
                "database_bytes_before": before,
                "database_bytes_after": after,
                "bytes_per_device": round(per, 0),
                "params_blob_bytes": blob.len(),
            }]
        }))
    })
    .await?
}

// ---------------------------------------------------------------------------------------
// BENCHMARKS.md
// ---------------------------------------------------------------------------------------

fn report(dir: &std::path::Path, notes: Option<&std::path::Path>) -> anyhow::Result<String> {
    let mut results: Vec<(String, Value)> = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        let text = std::fs::read_to_string(&path)?;
        match serde_json::from_str::<Value>(text.trim()) {
            Ok(v) => results.push((name, v)),
            Err(e) => eprintln!("skipping {}: {e}", path.display()),
        }
    }
    let get = |name: &str| results.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let phase = |name: &str, phase: &str| -> Option<Value> {
        get(name)?["phases"]
            .as_array()?
            .iter()
            .find(|p| p["phase"] == phase)
            .cloned()
    };
    let mut md = String::new();
    let text = |v: Option<&str>| v.unwrap_or("").to_string();
    let meta = std::fs::read_to_string(dir.join("machine.txt")).unwrap_or_default();
    md.push_str("# Benchmarks\n\n");
    md.push_str(
        "Written by `scripts/bench` (do not edit the figures by hand; rerun the script). \
         The analysis below the figures is kept in `scripts/bench-notes.md`.\n\n",
    );
    md.push_str("## Method\n\n");
    md.push_str(
        "- ferroacs (release build) runs pinned to CPU 0 (`taskset -c 0`) on a fresh database; \
         the load generator (`cargo run --release -p ferroacs-cpe-sim --bin loadgen`) runs pinned to CPU 1.\n\
         - Every session is a real CWMP session over HTTP/1.1 on a fresh TCP connection: \
         Inform without credentials, 401 Digest challenge, Inform with credentials, \
         InformResponse with a cookie, empty POST, 204 (plus the ACS's requests when it has \
         work). Devices are distinct (own serial number, own Digest username).\n\
         - Server CPU per session = the server's utime+stime from `/proc/<pid>/stat` over the \
         phase divided by the sessions of the phase. On a 2-core machine the generator \
         saturates first, so CPU per session is the figure that compares; sessions/s per \
         server core = 1e6 / (CPU µs per session).\n\
         - PostgreSQL CPU per session = utime+stime of the PostgreSQL backend processes serving \
         the benchmark's database (found by their process title) over the phase, divided the \
         same way; it is not in the server's figure. In the row \"PostgreSQL on CPU 0\" those \
         backends are pinned to the server's core, so the two share one core.\n\
         - Raw ceiling: `loadgen raw-server`, an actix-web server with the same HTTP settings \
         answering the same requests (same sizes, same connection pattern) with canned \
         answers and no CWMP, authentication or database work, pinned the same way. It also \
         answers a first contact with the requests ferroacs sends a new device (bootstrap \
         SetParameterValues, GetParameterNames, GetParameterValues in batches of 128), \
         without reading the answers: the discovery rows compare with that exchange, the \
         rows of sessions with tasks with its periodic session.\n\
         - Latency: from the session's start (closed loop) or its scheduled arrival (open \
         loop) to the 204, so queueing is counted.\n\
         - The machine is shared and noisy: compare figures of one run (ratios), not across runs.\n\n",
    );
    md.push_str("## Machine\n\n```\n");
    md.push_str(meta.trim());
    md.push_str("\n```\n\n");

    // Periodic.
    md.push_str("## Periodic sessions\n\n");
    md.push_str("| target | arrival | sessions | failed | sessions/s | p50 ms | p90 ms | p99 ms | max ms | server CPU µs/session | ⇒ sessions/s per server core | DB µs/session | PostgreSQL CPU µs/session | loadgen CPU µs/session | ratio to raw CPU |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let raw_cpu =
        phase("raw-periodic", "periodic").and_then(|p| p["server_cpu_us_per_session"].as_f64());
    for file in [
        "raw-periodic",
        "sqlite-periodic",
        "postgres-periodic",
        "postgres-pinned-periodic",
    ] {
        let Some(v) = get(file) else { continue };
        for p in v["phases"].as_array().into_iter().flatten() {
            let cpu = p["server_cpu_us_per_session"].as_f64();
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                text(p["target"].as_str()),
                text(p["arrival"].as_str()),
                p["sessions_ok"],
                p["sessions_failed"],
                p["sessions_per_s"],
                p["latency"]["p50_ms"],
                p["latency"]["p90_ms"],
                p["latency"]["p99_ms"],
                p["latency"]["max_ms"],
                fmt_opt(cpu, 1),
                fmt_opt(cpu.map(|c| 1e6 / c.max(0.001)), 0),
                fmt_opt(p["server_db_us_per_session"].as_f64(), 1),
                fmt_opt(p["postgres_cpu_us_per_session"].as_f64(), 1),
                fmt_opt(p["loadgen_cpu_us_per_session"].as_f64(), 1),
                match (cpu, raw_cpu) {
                    (Some(c), Some(r)) if r > 0.0 => format!("{:.2}×", c / r),
                    _ => "–".into(),
                },
            ));
        }
    }
    md.push('\n');
    errors_section(&mut md, &results);

    // Tasks and discovery.
    md.push_str("## Sessions with work\n\n");
    md.push_str("| target | workload | count | failed | per second | p50 ms | p99 ms | max ms | server CPU µs each | ⇒ per server core per second | DB µs each | PostgreSQL CPU µs each | ratio to raw CPU (same exchange; periodic session for tasks) | ratio to a periodic session's CPU |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let raw_discovery =
        phase("raw-discovery", "discovery").and_then(|p| p["server_cpu_us_per_session"].as_f64());
    for (file, ph, what) in [
        (
            "raw-discovery",
            "discovery",
            "first contact, discovery of 300 parameters",
        ),
        (
            "sqlite-spv1",
            "tasks",
            "session with one SPV of one parameter",
        ),
        (
            "postgres-spv1",
            "tasks",
            "session with one SPV of one parameter",
        ),
        ("sqlite-tasks", "tasks", "session with GPV of 20 + SPV of 5"),
        (
            "postgres-tasks",
            "tasks",
            "session with GPV of 20 + SPV of 5",
        ),
        (
            "sqlite-discovery",
            "discovery",
            "first contact, discovery of 300 parameters",
        ),
        (
            "postgres-discovery",
            "discovery",
            "first contact, discovery of 300 parameters",
        ),
    ] {
        let Some(p) = phase(file, ph) else { continue };
        let cpu = p["server_cpu_us_per_session"].as_f64();
        // The same backend's periodic session (closed loop) of this run.
        let backend = file.split('-').next().unwrap_or("");
        let periodic = phase(&format!("{backend}-periodic"), "periodic")
            .and_then(|p| p["server_cpu_us_per_session"].as_f64());
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            text(p["target"].as_str()),
            what,
            p["sessions_ok"],
            p["sessions_failed"],
            p["sessions_per_s"],
            p["latency"]["p50_ms"],
            p["latency"]["p99_ms"],
            p["latency"]["max_ms"],
            fmt_opt(cpu, 1),
            fmt_opt(cpu.map(|c| 1e6 / c.max(0.001)), 0),
            fmt_opt(p["server_db_us_per_session"].as_f64(), 1),
            fmt_opt(p["postgres_cpu_us_per_session"].as_f64(), 1),
            match (
                cpu,
                if ph == "discovery" {
                    raw_discovery
                } else {
                    raw_cpu
                }
            ) {
                (Some(c), Some(r)) if r > 0.0 => format!("{:.1}×", c / r),
                _ => "–".into(),
            },
            match (cpu, periodic) {
                (Some(c), Some(r)) if r > 0.0 && ph == "tasks" => format!("{:.1}×", c / r),
                _ => "–".into(),
            },
        ));
    }
    md.push('\n');

    // Footprint.
    md.push_str("## Footprint\n\n");
    md.push_str("| backend | known devices added | bytes per device | stored tree blob bytes | seeding time s |\n|---|---|---|---|---|\n");
    for file in ["sqlite-seed", "postgres-seed"] {
        let Some(p) = phase(file, "seed") else {
            continue;
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            text(p["backend"].as_str()),
            p["devices"],
            p["bytes_per_device"],
            p["params_blob_bytes"],
            p["elapsed_s"],
        ));
    }
    md.push('\n');
    md.push_str("| target | sessions held open | failed | server RSS before MB | server RSS with the sessions open MB | KB per open session | sessions active (server) |\n|---|---|---|---|---|---|---|\n");
    for file in ["sqlite-hold", "postgres-hold"] {
        let Some(p) = phase(file, "hold") else {
            continue;
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            text(p["target"].as_str()),
            p["sessions_open"],
            p["sessions_failed"],
            p["server_rss_before_mb"],
            p["server_rss_open_mb"],
            p["server_rss_kb_per_open_session"],
            p["server_sessions_active"],
        ));
    }
    md.push('\n');

    // Connection requests.
    md.push_str("## Connection requests\n\n");
    md.push_str("| devices | requests | per second | outcomes | accepted by devices | sender CPU µs/request | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|---|\n");
    if let Some(p) = phase("cr", "cr_fanout") {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            p["devices"],
            p["requests"],
            p["per_second"],
            p["outcomes"],
            p["accepted_by_devices"],
            p["sender_cpu_us_per_request"],
            p["latency"]["p50_ms"],
            p["latency"]["p99_ms"],
        ));
    }
    md.push('\n');
    // Hand-kept: the campaign benchmark (`tests/integration/campaign_bench.rs`).
    md.push_str("<!-- campaign-bench -->\n<!-- /campaign-bench -->\n\n");

    if let Ok(t) = std::fs::read_to_string(dir.join("microbench.txt")) {
        // Marked, so that the figures of this run take the place of the previous ones.
        md.push_str("<!-- codec-micro -->\n");
        md.push_str("## Codec micro-benchmarks (criterion, `cargo bench --bench codec`)\n\n```\n");
        md.push_str(t.trim());
        md.push_str("\n```\n<!-- /codec-micro -->\n\n");
    } else {
        // Not run (BENCH_MICRO=skip): the previous file's figures stay, marked as such.
        md.push_str("<!-- codec-micro -->\n<!-- /codec-micro -->\n\n");
    }
    if let Ok(t) = std::fs::read_to_string(dir.join("tr111.txt")) {
        md.push_str(
            "## TR-111 from one core (`cargo bench --bench tr111`: STUN Binding Requests answered, \
             UDP connection requests sent, real UDP on loopback)\n\n| figure | per second |\n|---|---|\n",
        );
        for line in t.lines() {
            if let Some((name, value)) = line.split_once(' ') {
                md.push_str(&format!("| {name} | {value} |\n"));
            }
        }
        md.push('\n');
    }
    if let Some(n) = notes {
        md.push_str(&std::fs::read_to_string(n)?);
    }
    Ok(md)
}

/// The `<!-- NAME -->` … `<!-- /NAME -->` blocks of `text`, markers included, in order.
fn marked_blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        let marker = t
            .strip_prefix("<!-- ")
            .and_then(|r| r.strip_suffix(" -->"))
            .filter(|n| !n.is_empty() && !n.contains(' '));
        match (&mut open, marker) {
            (None, Some(name)) if !name.starts_with('/') => {
                open = Some((name.to_string(), line.to_string()));
            }
            (Some((name, body)), Some(end)) if end.strip_prefix('/') == Some(name.as_str()) => {
                body.push_str(line);
                if !body.ends_with('\n') {
                    body.push('\n');
                }
                out.extend(open.take());
            }
            (Some((_, body)), _) => body.push_str(line),
            (None, _) => {}
        }
    }
    out
}

/// `md` with the marked blocks of `previous` in their slots (an empty block of the same
/// name in `md`), or appended at the end when `md` has no slot for them: a regenerated
/// BENCHMARKS.md never drops a section another script or a person wrote. A block `md`
/// fills itself (figures of this run) replaces the previous one.
fn keep_sections(md: &str, previous: &str) -> String {
    let mut md = md.to_string();
    for (name, block) in marked_blocks(previous) {
        let slot = marked_blocks(&md).into_iter().find(|(n, _)| *n == name);
        match slot {
            Some((_, filled)) if filled.lines().count() > 2 => {}
            Some((_, empty)) => md = md.replacen(&empty, &block, 1),
            None => {
                if !md.ends_with("\n\n") {
                    md.push('\n');
                }
                md.push_str(&block);
            }
        }
    }
    md
}

fn errors_section(md: &mut String, results: &[(String, Value)]) {
    let mut lines = Vec::new();
    for (name, v) in results {
        for p in v["phases"].as_array().into_iter().flatten() {
            if let Some(ex) = p["error_examples"].as_object() {
                for (kind, msg) in ex {
                    lines.push(format!(
                        "- {name} / {}: {} × `{kind}`: {}",
                        p["phase"].as_str().unwrap_or(""),
                        p["errors"][kind],
                        msg.as_str().unwrap_or("").replace('\n', " ")
                    ));
                }
            }
        }
    }
    if lines.is_empty() {
        md.push_str("Errors: none (every session ended with 204 as expected).\n\n");
    } else {
        md.push_str("Errors by kind:\n\n");
        md.push_str(&lines.join("\n"));
        md.push_str("\n\n");
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) => format!("{x:.digits$}"),
        None => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_kept_sections_survive_a_new_report() {
        let previous =
            "# Benchmarks\n\nold figures\n\n<!-- campaign-bench -->\n## Campaign\n\nrows\n\
             <!-- /campaign-bench -->\n\nold notes\n\n<!-- console-bench -->\n## Console\n\
             <!-- /console-bench -->\n";
        let new =
            "# Benchmarks\n\nnew figures\n\n<!-- campaign-bench -->\n<!-- /campaign-bench -->\n\n\
             new notes\n";
        let out = keep_sections(new, previous);
        assert_eq!(
            out,
            "# Benchmarks\n\nnew figures\n\n<!-- campaign-bench -->\n## Campaign\n\nrows\n\
             <!-- /campaign-bench -->\n\nnew notes\n\n<!-- console-bench -->\n## Console\n\
             <!-- /console-bench -->\n"
        );
        // Nothing to keep: unchanged.
        assert_eq!(keep_sections(new, ""), new);
    }

    #[test]
    fn a_section_of_this_run_replaces_the_kept_one() {
        let previous = "# B\n\n<!-- codec-micro -->\nold figures\n<!-- /codec-micro -->\n";
        let ran = "# B\n\n<!-- codec-micro -->\nnew figures\n<!-- /codec-micro -->\n";
        assert_eq!(keep_sections(ran, previous), ran, "no second, older copy");
        let skipped = "# B\n\n<!-- codec-micro -->\n<!-- /codec-micro -->\n";
        assert_eq!(
            keep_sections(skipped, previous),
            previous,
            "skipped: the old ones stay"
        );
    }
}
