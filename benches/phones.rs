//! Phone provisioning throughput, against the real server on loopback (SQLite):
//!
//! - rendered-file fetches per second over HTTP: 32 clients fetch one Polycom phone's
//!   `<MAC>-ferroacs.cfg` (with its line and password) through its token URL over
//!   keep-alive connections; after the first fetch the file comes from the per-revision
//!   cache. Reported with the server's CPU time per fetch and fetches per server
//!   CPU-second (one core fully used): the clients run in this process on threads named
//!   `bench-client`, and the server's CPU is the process's (from `/proc/self/stat`, which
//!   keeps the CPU of threads that ended) less those threads' and the main thread's (from
//!   `/proc/self/task/<tid>/stat`). The clients' CPU is printed beside it;
//! - a 50 MB file over TFTP with blksize 1428 (curl's TFTP client), MB/s. The file is a
//!   phone upload held by the server.
//!
//! Run with `cargo bench --bench phones` on a quiet machine; it prints Markdown rows for
//! BENCHMARKS.md. `PHONES_BENCH_FETCHES=3200 cargo test --bench phones` checks it in debug.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use ferroacs::config::{Config, Secret};
use ferroacs::domain::lines::LineInput;
use ferroacs::domain::phones::PhoneInput;
use ferroacs::domain::usecases::{self, Actor};

const CLIENTS: usize = 32;
/// Fetches measured; `PHONES_BENCH_FETCHES` changes it (e.g. for a quick check in debug).
const FETCHES: usize = 100_000;
const TFTP_BYTES: usize = 50 * 1024 * 1024;

/// utime + stime in seconds from a `/proc/.../stat` line (Linux), and the thread's name.
fn stat_cpu(path: &std::path::Path) -> (String, f64) {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let (head, rest) = stat.rsplit_once(')').unwrap_or(("", ""));
    let name = head
        .split_once('(')
        .map(|(_, n)| n)
        .unwrap_or("")
        .to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (name, (ticks(11) + ticks(12)) / 100.0)
}

/// (server CPU seconds, client CPU seconds) of this process so far: the clients are the
/// threads named `bench-client` and the main thread (which only waits for them); the
/// server is everything else, threads that ended included.
fn cpu_split() -> (f64, f64) {
    let (_, total) = stat_cpu(std::path::Path::new("/proc/self/stat"));
    let pid = std::process::id().to_string();
    let mut clients = 0.0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let (name, cpu) = stat_cpu(&t.path().join("stat"));
            if name == CLIENT_THREAD || t.file_name().to_string_lossy() == pid {
                clients += cpu;
            }
        }
    }
    (total - clients, clients)
}

const CLIENT_THREAD: &str = "bench-client";

fn main() {
    let fetches: usize = std::env::var("PHONES_BENCH_FETCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FETCHES);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.database.url = format!("sqlite://{}", dir.path().join("bench.db").display());
    cfg.secrets.key = Some(Secret(ferroacs::secrets::generate_key()));
    cfg.cwmp.listen = "127.0.0.1:0".into();
    cfg.api.listen = "127.0.0.1:0".into();
    cfg.tftp.listen = Some("127.0.0.1:0".into());
    cfg.files.dir = dir.path().join("files");
    cfg.phones.max_upload_bytes = TFTP_BYTES + 1024;
    cfg.log.level = "error".into();
    ferroacs::telemetry::init(&cfg.log);
    let running = ferroacs::app::start(cfg, None, false).unwrap();
    let state = running.state.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(async {
        let ctx = state.ctx();
        let actor = Actor::cli();
        let input = PhoneInput {
            mac: Some("0004f2b0b0b0".into()),
            vendor: "polycom".into(),
            model: "vvx400".into(),
            ..PhoneInput::default()
        };
        usecases::phones::create(&ctx, &actor, input).await.unwrap();
        let line = LineInput::try_from(serde_json::json!({
            "sip_user": "1001", "password": "bench-secret-1", "registrar": "sip.example.net"
        }))
        .unwrap();
        usecases::voip::assign_line(&ctx, &actor, "phone:0004f2b0b0b0", 1, line, false)
            .await
            .unwrap();
        let mac = ferroacs::domain::phones::parse_mac("mac", "0004f2b0b0b0").unwrap();
        ferroacs::domain::phones::urls(&state.store, &state.config, &state.services.phones, mac)
            .await
            .unwrap()
            .url
    });
    let file = format!("{url}/0004F2B0B0B0-ferroacs.cfg");

    // HTTP: warm the cache, then CLIENTS keep-alive clients share FETCHES requests.
    let (elapsed, server_cpu, client_cpu) = rt.block_on(async {
        let http = reqwest::Client::new();
        assert_eq!(http.get(&file).send().await.unwrap().status(), 200);
        let (server0, client0) = cpu_split();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let (http, file) = (http.clone(), file.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..fetches / CLIENTS {
                    let r = http.get(&file).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    r.bytes().await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = start.elapsed().as_secs_f64();
        let (server1, client1) = cpu_split();
        (elapsed, server1 - server0, client1 - client0)
    });
    let n = (fetches / CLIENTS * CLIENTS) as f64;
    println!("| fetches | clients | fetches/s (wall) | server CPU µs per fetch | fetches/s per server core | client CPU µs per fetch |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {CLIENTS} | {:.0} | {:.1} | {:.0} | {:.1} |",
        n,
        n / elapsed,
        server_cpu * 1e6 / n,
        n / server_cpu.max(1e-9),
        client_cpu * 1e6 / n,
    );

    // TFTP: 50 MB held by the server as the phone's upload, fetched with blksize 1428.
    let put = format!("{url}/0004F2B0B0B0-app.log");
    let data = vec![b'x'; TFTP_BYTES];
    rt.block_on(async {
        let r = reqwest::Client::new()
            .put(&put)
            .body(data)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    });
    let tftp = running.tftp_addr.unwrap();
    let out = dir.path().join("out.bin");
    let start = Instant::now();
    let o = std::process::Command::new("curl")
        .args(["-s", "--tftp-blksize", "1428", "-o"])
        .arg(&out)
        .arg(format!("tftp://{tftp}/0004F2B0B0B0-app.log"))
        .output()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::metadata(&out).unwrap().len() as usize, TFTP_BYTES);
    println!();
    println!("| TFTP bytes | blksize | seconds | MB/s |");
    println!("|---|---|---|---|");
    println!(
        "| {TFTP_BYTES} | 1428 | {secs:.2} | {:.1} |",
        TFTP_BYTES as f64 / 1e6 / secs
    );
    running.stop(false);
}
