//! Test harness: [`TestApp`] boots the real server on ephemeral ports against a fresh
//! database (a temporary SQLite file, or a fresh PostgreSQL database created for the test
//! and dropped afterwards), and [`battery!`] runs one test body on both backends.

#![allow(dead_code)]

pub mod browser;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferroacs::app::{self, Running};
use ferroacs::config::Config;

/// How often [`wait_until`] and [`wait_until_blocking`] look again.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Waits for a condition instead of sleeping a fixed time: runs `check` at once and then
/// every [`POLL`] until it returns `Ok(value)`, and fails the test with `what` and the last
/// `Err(observed)` when `timeout` passes first.
pub async fn wait_until<T, E, F, Fut>(timeout: std::time::Duration, what: &str, mut check: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {timeout:?}; last seen: {last:?}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_until`] for a blocking context (a child process, a synchronous client).
pub fn wait_until_blocking<T, E, F>(timeout: std::time::Duration, what: &str, mut check: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Result<T, E>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) => assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within {timeout:?}; last seen: {last:?}"
            ),
        }
        std::thread::sleep(POLL);
    }
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Run each listed async test body (`async fn name(b: Backend)`) on SQLite and PostgreSQL.
#[macro_export]
macro_rules! battery {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if !$crate::support::postgres_enabled() {
                        return;
                    }
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A database for one test; removed when dropped.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    /// The key for secrets at rest every app on this database uses (hex).
    pub key: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("ferroacs.db").display());
                TestDb {
                    url,
                    backend,
                    key: ferroacs::secrets::generate_key(),
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let admin = pg_admin_url();
                let name = format!("ferroacs_t_{}", random_hex(8));
                pg_exec(&admin, &format!("CREATE DATABASE {name}"));
                let url = replace_db_name(&admin, &name);
                TestDb {
                    url,
                    backend,
                    key: ferroacs::secrets::generate_key(),
                    _dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// The directory holding the SQLite file (for tests that need a scratch place).
    pub fn dir(&self) -> Option<PathBuf> {
        self._dir.as_ref().map(|d| d.path().to_path_buf())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            let admin = pg_admin_url();
            use diesel::Connection;
            if let Ok(mut c) = diesel::PgConnection::establish(&admin) {
                use diesel::connection::SimpleConnection;
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// Whether the PostgreSQL half of a battery runs. Without `FERROACS_TEST_DATABASE_URL` a
/// run by hand (`cargo test`) skips it and says so once; under `CI=true` a missing database
/// is an error, so CI never skips it silently (`scripts/test` always sets the URL).
pub fn postgres_enabled() -> bool {
    static SAID: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("FERROACS_TEST_DATABASE_URL").is_some() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!(
            "CI=true but FERROACS_TEST_DATABASE_URL is not set: the PostgreSQL tests must run in CI \
             (scripts/test starts a throwaway server and sets it)"
        );
    }
    SAID.call_once(|| {
        eprintln!(
            "PostgreSQL tests skipped: FERROACS_TEST_DATABASE_URL is not set (scripts/test sets it)"
        )
    });
    false
}

pub fn pg_admin_url() -> String {
    std::env::var("FERROACS_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "PostgreSQL tests need FERROACS_TEST_DATABASE_URL (e.g. postgres://acs:acs@127.0.0.1:54329/acs, \
             a role allowed to CREATE DATABASE); scripts/test starts a throwaway server and sets it"
        )
    })
}

fn pg_exec(url: &str, sql: &str) {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let mut c = diesel::PgConnection::establish(url)
        .unwrap_or_else(|e| panic!("cannot connect to FERROACS_TEST_DATABASE_URL: {e}"));
    c.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let mut out = match path_start {
        Some(i) => format!("{}/{}", &base[..i], name),
        None => format!("{base}/{name}"),
    };
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::fill(&mut b[..]);
    hex::encode(b)
}

/// A running ferroacs for one test.
pub struct TestApp {
    pub running: Option<Running>,
    pub db: Arc<TestDb>,
    pub config: Config,
    pub files_dir: Arc<tempfile::TempDir>,
    /// Every envelope the server sends is kept here and validated against the BBF schema
    /// when the app is dropped.
    pub trace_dir: tempfile::TempDir,
    /// The injected clock, when the test drives time itself.
    pub clock: Option<app::Clock>,
}

/// A clock the test sets and advances; the server reads it as "now".
#[derive(Clone)]
pub struct TestClock(pub Arc<std::sync::atomic::AtomicI64>);

impl TestClock {
    pub fn new(start_ms: i64) -> TestClock {
        TestClock(Arc::new(std::sync::atomic::AtomicI64::new(start_ms)))
    }
    pub fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn as_clock(&self) -> app::Clock {
        let a = self.0.clone();
        Arc::new(move || a.load(std::sync::atomic::Ordering::SeqCst))
    }
}

impl TestApp {
    /// Start on a fresh database with test-friendly defaults; `tweak` adjusts the config.
    pub async fn spawn(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let db = tokio::task::spawn_blocking(move || TestDb::new(backend))
            .await
            .expect("db");
        Self::spawn_on(Arc::new(db), tweak).await
    }

    /// Start on an existing database (e.g. to restart after a stop).
    pub async fn spawn_on(db: Arc<TestDb>, tweak: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_with(
            db,
            Arc::new(tempfile::tempdir().expect("tempdir")),
            None,
            tweak,
        )
        .await
    }

    /// Start on `db` with an injected clock; `files_dir` shared with other nodes (or a
    /// fresh one).
    pub async fn spawn_clocked(
        db: Arc<TestDb>,
        files_dir: Option<Arc<tempfile::TempDir>>,
        clock: app::Clock,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        let files = files_dir.unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("tempdir")));
        Self::spawn_with(db, files, Some(clock), tweak).await
    }

    async fn spawn_with(
        db: Arc<TestDb>,
        files_dir: Arc<tempfile::TempDir>,
        clock: Option<app::Clock>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        let trace_dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default();
        config.database.url = db.url.clone();
        config.database.pool_size = 4;
        config.secrets.key = Some(ferroacs::config::Secret(db.key.clone()));
        config.cwmp.listen = "127.0.0.1:0".into();
        config.api.listen = "127.0.0.1:0".into();
        config.cwmp.default_password = Some(ferroacs::config::Secret("cpe-secret".into()));
        // The simulated CPEs answer connection requests on loopback, which the default
        // policy refuses; the ACS's own listeners stay refused all the same.
        config.api.connection_request_allow_networks = "127.0.0.1/32".into();
        config.files.dir = files_dir.path().to_path_buf();
        config.log.level = std::env::var("FERROACS_TEST_LOG").unwrap_or_else(|_| "warn".into());
        config.log.cwmp_trace_dir = Some(trace_dir.path().to_path_buf());
        tweak(&mut config);
        install_log_capture(&config.log.level);
        ferroacs::telemetry::init(&config.log);
        let cfg = config.clone();
        let clk = clock.clone();
        let running = tokio::task::spawn_blocking(move || app::start(cfg, clk, false))
            .await
            .expect("join")
            .expect("server starts");
        TestApp {
            running: Some(running),
            db,
            config,
            files_dir,
            trace_dir,
            clock,
        }
    }

    pub fn cwmp_addr(&self) -> SocketAddr {
        self.running.as_ref().expect("running").cwmp_addr
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.running.as_ref().expect("running").api_addr
    }

    pub fn cwmp_url(&self) -> String {
        format!("http://{}/", self.cwmp_addr())
    }

    /// The Prometheus text of `/metrics`, as a scraper reads it.
    pub async fn metrics_text(&self) -> String {
        self.http()
            .get(self.api_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{}", self.api_addr(), path)
    }

    pub fn store(&self) -> ferroacs::store::Store {
        self.running.as_ref().expect("running").state.store.clone()
    }

    /// The number of closed CPE connections whose session the server has handled; pass it
    /// to [`TestApp::wait_closed_connections`] after closing one.
    pub fn closed_connections(&self) -> u64 {
        *self.state().driver.closed_connections().borrow()
    }

    /// Wait until more than `before` closed connections were handled (their sessions saved
    /// for resumption), instead of sleeping.
    pub async fn wait_closed_connections(&self, before: u64) {
        let mut rx = self.state().driver.closed_connections();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            rx.wait_for(|n| *n > before),
        )
        .await
        .expect("the server handles the closed connection within 10 s")
        .expect("the server is running");
    }

    /// Write the session-log rows of sessions that ended (instead of waiting for the
    /// background writer).
    pub async fn flush_session_logs(&self) {
        let state = self.running.as_ref().expect("running").state.clone();
        state
            .driver
            .flush_session_logs()
            .await
            .expect("session log written");
    }

    pub fn state(&self) -> Arc<ferroacs::app::AppState> {
        self.running.as_ref().expect("running").state.clone()
    }

    /// Stop the server (gracefully or not) and keep the database for a restart.
    pub async fn stop(&mut self, graceful: bool) {
        if let Some(r) = self.running.take() {
            tokio::task::spawn_blocking(move || r.stop(graceful))
                .await
                .expect("stop");
        }
    }

    /// Stop and start again on the same database.
    pub async fn restart(mut self) -> TestApp {
        self.stop(true).await;
        let config = self.config.clone();
        let db = self.db.clone();
        // Same database and file store; a fresh trace directory (the old one is validated
        // when this app drops).
        TestApp::spawn_with(db, self.files_dir.clone(), self.clock.clone(), move |c| {
            let trace = c.log.cwmp_trace_dir.clone();
            *c = config;
            c.log.cwmp_trace_dir = trace;
            c.cwmp.listen = "127.0.0.1:0".into();
            c.api.listen = "127.0.0.1:0".into();
        })
        .await
    }

    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder().build().expect("client")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            // Dropping stops the server; do it off any async runtime thread.
            let _ = std::thread::spawn(move || r.stop(false)).join();
        }
        if !std::thread::panicking() {
            validate_envelopes(self.trace_dir.path());
        }
    }
}

pub fn bbf_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datamodel/bbf")
}

/// Validate every envelope the ACS sent (files `*-out-cwmp-1-N.xml`) against the BBF schema
/// of its namespace. The unofficial cwmp-1-3/1-4 namespaces are checked as cwmp-1-2 (the
/// schema the official 1.3/1.4 versions use).
pub fn validate_envelopes(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut by_schema: std::collections::BTreeMap<&str, Vec<PathBuf>> = Default::default();
    let rewritten = dir.join("as-1-2");
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.contains("-out-") {
            continue;
        }
        let schema = if name.ends_with("cwmp-1-0.xml") {
            "cwmp-1-0.xsd"
        } else if name.ends_with("cwmp-1-1.xml") {
            "cwmp-1-1.xsd"
        } else {
            "cwmp-1-4.xsd"
        };
        let mut path = e.path();
        if name.ends_with("cwmp-1-3.xml") || name.ends_with("cwmp-1-4.xml") {
            std::fs::create_dir_all(&rewritten).expect("mkdir");
            let text = std::fs::read_to_string(&path).expect("read trace");
            let fixed = text
                .replace("urn:dslforum-org:cwmp-1-3", "urn:dslforum-org:cwmp-1-2")
                .replace("urn:dslforum-org:cwmp-1-4", "urn:dslforum-org:cwmp-1-2");
            path = rewritten.join(&name);
            std::fs::write(&path, fixed).expect("write");
        }
        by_schema.entry(schema).or_default().push(path);
    }
    let bbf = bbf_dir();
    for (schema, files) in by_schema {
        for chunk in files.chunks(500) {
            let out = std::process::Command::new("xmllint")
                .env("XML_CATALOG_FILES", bbf.join("soap-catalog.xml"))
                .arg("--nonet")
                .arg("--noout")
                .arg("--schema")
                .arg(bbf.join(schema))
                .args(chunk)
                .output()
                .unwrap_or_else(|e| panic!("xmllint is needed to validate CWMP envelopes (apt-get install libxml2-utils): {e}"));
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                let bad: Vec<&str> = err
                    .lines()
                    .filter(|l| !l.ends_with(" validates"))
                    .take(20)
                    .collect();
                let first_bad = bad.iter().find_map(|l| l.split(':').next()).unwrap_or("");
                let body = std::fs::read_to_string(first_bad).unwrap_or_default();
                panic!("an envelope sent by ferroacs does not validate against {schema}:\n{}\n--- {first_bad}:\n{body}", bad.join("\n"));
            }
        }
    }
}

/// What the servers of this process logged at INFO and above (the newest 32 to 64 MiB), for
/// tests that check what never reaches a log.
pub fn captured_logs() -> String {
    let buf = log_buffer().lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&buf).into_owned()
}

fn log_buffer() -> &'static std::sync::Mutex<Vec<u8>> {
    static BUF: std::sync::OnceLock<std::sync::Mutex<Vec<u8>>> = std::sync::OnceLock::new();
    BUF.get_or_init(|| std::sync::Mutex::new(Vec::new()))
}

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let mut v = log_buffer().lock().unwrap_or_else(|p| p.into_inner());
        if v.len() + b.len() > 64 << 20 {
            let cut = v.len() / 2;
            v.drain(..cut);
        }
        v.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process's log subscriber: stderr at the tests' level (`FERROACS_TEST_LOG`, default
/// warn), and everything from INFO on into [`captured_logs`]. The first server of the
/// process installs it; `telemetry::init` then keeps it.
fn install_log_capture(stderr_level: &str) {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{filter::LevelFilter, fmt, EnvFilter};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let stderr_filter =
            EnvFilter::try_new(stderr_level).unwrap_or_else(|_| EnvFilter::new("warn"));
        let _ = tracing_subscriber::registry()
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_writer(std::io::stderr)
                    .with_filter(stderr_filter),
            )
            .with(
                fmt::layer()
                    .with_ansi(false)
                    .with_writer(|| Capture)
                    .with_filter(LevelFilter::INFO),
            )
            .try_init();
    });
}
