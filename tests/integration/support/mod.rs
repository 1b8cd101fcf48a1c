//! Test harness: [`TestApp`] boots the real server on ephemeral ports against a fresh
//! database (a temporary SQLite file, or a fresh PostgreSQL database created for the test
//! and dropped afterwards), and [`battery!`] runs one test body on both backends.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferroacs::app::{self, Running};
use ferroacs::config::Config;

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
    pub files_dir: tempfile::TempDir,
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
        let files_dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default();
        config.database.url = db.url.clone();
        config.database.pool_size = 4;
        config.cwmp.listen = "127.0.0.1:0".into();
        config.api.listen = "127.0.0.1:0".into();
        config.cwmp.default_password = Some(ferroacs::config::Secret("cpe-secret".into()));
        config.files.dir = files_dir.path().to_path_buf();
        config.log.level = std::env::var("FERROACS_TEST_LOG").unwrap_or_else(|_| "warn".into());
        tweak(&mut config);
        ferroacs::telemetry::init(&config.log);
        let cfg = config.clone();
        let running = tokio::task::spawn_blocking(move || app::start(cfg, None, false))
            .await
            .expect("join")
            .expect("server starts");
        TestApp {
            running: Some(running),
            db,
            config,
            files_dir,
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

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{}", self.api_addr(), path)
    }

    pub fn store(&self) -> ferroacs::store::Store {
        self.running.as_ref().expect("running").state.store.clone()
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
        TestApp::spawn_on(db, move |c| {
            let (db_url, files) = (c.database.url.clone(), c.files.dir.clone());
            *c = config;
            c.database.url = db_url;
            c.files.dir = files;
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
    }
}
