//! Storage: diesel over SQLite (embedded, the default) or PostgreSQL (several nodes).
//!
//! One code path for both backends: queries are written once inside [`with_conn!`], which
//! expands the same diesel code for each concrete connection type, so upserts and `RETURNING`
//! work on both. Where the SQL really differs (job claiming, `BEGIN IMMEDIATE`) the branch is
//! written with [`with_backend!`] — and only in this module tree. Nothing here knows XML or
//! business rules.
//!
//! Diesel is blocking: async callers go through [`Store::run`], which moves the work to
//! tokio's blocking pool.

pub mod audit;
pub mod campaigns;
mod checkpoint;
mod combine;
pub mod console;
pub mod credentials;
pub mod devices;
pub mod error;
pub mod faults;
pub mod files;
pub mod gateways;
pub mod lines;
pub mod params;
pub mod phones;
pub mod presets;
pub mod saved_searches;
pub mod schedules;
pub mod schema;
pub mod sealed;
pub mod search;
pub mod seed;
pub mod sessions;
pub mod stun;
pub mod tasks;
pub mod users;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::error::{Error, Result};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The connection pool for the configured backend.
#[derive(Clone)]
pub enum Pools {
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
    Postgres(Pool<ConnectionManager<PgConnection>>),
}

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pools: Pools,
    statements: Arc<AtomicU64>,
    /// The key for secrets at rest (none until [`Store::set_keyring`]).
    keyring: Arc<std::sync::RwLock<Arc<crate::secrets::Keyring>>>,
    /// The queue of [`Store::run_short`] (SQLite only).
    combiner: Option<Arc<combine::Combiner>>,
    /// One permit per pooled connection: [`Store::run`] waits for one before it hands the
    /// work to a blocking thread, so at most as many blocking threads as there are
    /// connections wait on the pool (see [`Store::run`]).
    gate: Arc<tokio::sync::Semaphore>,
    /// How long [`Store::run`] waits for a permit: the pool's connection timeout.
    gate_timeout: Duration,
    /// Bumped after every write of this process that can change what a phone is served
    /// (its row, its lines, its profile, its model's firmware, its network lock): caches
    /// of those reads compare it ([`Store::phone_generation`]).
    phone_generation: Arc<AtomicU64>,
    /// The SQLite log's checkpoint thread, which ends with the last clone (see
    /// `store::checkpoint`).
    _checkpointer: Option<Arc<checkpoint::Checkpointer>>,
}

/// Counts the statements every pooled connection executes (for `/metrics` and for tests
/// that hold the session's round trips to their documented number).
struct StatementCounter(Arc<AtomicU64>);

impl diesel::connection::Instrumentation for StatementCounter {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        if let diesel::connection::InstrumentationEvent::FinishQuery { .. } = event {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Run the same diesel code on whichever backend the store uses.
///
/// `with_conn!(store, |c| { ... })` binds `c` to `&mut SqliteConnection` or `&mut PgConnection`
/// and evaluates the block (which must return `crate::error::Result<_>`).
#[macro_export]
macro_rules! with_conn {
    ($store:expr, |$c:ident| $body:block) => {
        match $store.pools() {
            $crate::store::Pools::Sqlite(p) => {
                let mut pooled = p.get()?;
                let $c: &mut ::diesel::SqliteConnection = &mut pooled;
                $body
            }
            $crate::store::Pools::Postgres(p) => {
                let mut pooled = p.get()?;
                let $c: &mut ::diesel::PgConnection = &mut pooled;
                $body
            }
        }
    };
}

/// Like [`with_conn!`], with a different block per backend, for the few queries whose SQL differs.
#[macro_export]
macro_rules! with_backend {
    ($store:expr, sqlite |$c1:ident| $b1:block, postgres |$c2:ident| $b2:block) => {
        match $store.pools() {
            $crate::store::Pools::Sqlite(p) => {
                let mut pooled = p.get()?;
                let $c1: &mut ::diesel::SqliteConnection = &mut pooled;
                $b1
            }
            $crate::store::Pools::Postgres(p) => {
                let mut pooled = p.get()?;
                let $c2: &mut ::diesel::PgConnection = &mut pooled;
                $b2
            }
        }
    };
}

/// A write transaction that takes the write lock up front (SQLite `BEGIN IMMEDIATE`, so two
/// writers never deadlock upgrading a read lock) or a plain transaction (PostgreSQL).
pub trait WriteTxn: Connection {
    fn write_txn<T, F>(&mut self, f: F) -> Result<T>
    where
        F: FnOnce(&mut Self) -> Result<T>;
}

impl WriteTxn for SqliteConnection {
    fn write_txn<T, F>(&mut self, f: F) -> Result<T>
    where
        F: FnOnce(&mut Self) -> Result<T>,
    {
        self.immediate_transaction(f)
    }
}

impl WriteTxn for PgConnection {
    fn write_txn<T, F>(&mut self, f: F) -> Result<T>
    where
        F: FnOnce(&mut Self) -> Result<T>,
    {
        self.transaction(f)
    }
}

#[derive(Debug, Clone)]
struct SqlitePragmas {
    busy_timeout_ms: u64,
    wal_autocheckpoint: u32,
    statements: Arc<AtomicU64>,
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(
        &self,
        conn: &mut SqliteConnection,
    ) -> std::result::Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
             PRAGMA wal_autocheckpoint = {};",
            self.busy_timeout_ms, self.wal_autocheckpoint
        ))
        .map_err(diesel::r2d2::Error::QueryError)?;
        // Counted from here on: opening a connection is not work of a request.
        conn.set_instrumentation(StatementCounter(self.statements.clone()));
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct PgCounting {
    statements: Arc<AtomicU64>,
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for PgCounting {
    fn on_acquire(&self, conn: &mut PgConnection) -> std::result::Result<(), diesel::r2d2::Error> {
        conn.set_instrumentation(StatementCounter(self.statements.clone()));
        Ok(())
    }
}

impl Store {
    /// Open (and for SQLite create) the database and run pending migrations.
    pub fn open(cfg: &DatabaseConfig) -> Result<Store> {
        let statements = Arc::new(AtomicU64::new(0));
        let url = DatabaseUrl::parse(&cfg.url)
            .map_err(|e| Error::invalid("database.url", e.to_string()))?;
        let timeout = Duration::from_millis(cfg.connect_timeout_ms.max(100));
        let pools = match &url {
            DatabaseUrl::Sqlite(path) => {
                check_sqlite_path(path)?;
                let manager = ConnectionManager::<SqliteConnection>::new(path.to_string_lossy());
                let pool = Pool::builder()
                    .max_size(cfg.pool_size)
                    .min_idle(Some(1))
                    .connection_timeout(timeout)
                    // No `SELECT 1` before every use: a connection that breaks is detected
                    // by the failing query and discarded by the pool.
                    .test_on_check_out(false)
                    .connection_customizer(Box::new(SqlitePragmas {
                        busy_timeout_ms: cfg.busy_timeout_ms,
                        // The checkpoint thread copies the log back at the configured size;
                        // a commit does it itself only far above that.
                        wal_autocheckpoint: cfg
                            .sqlite_wal_autocheckpoint
                            .saturating_mul(checkpoint::BACKSTOP_FACTOR),
                        statements: statements.clone(),
                    }))
                    .error_handler(Box::new(diesel::r2d2::NopErrorHandler))
                    .build(manager)
                    .map_err(|e| {
                        Error::unavailable(
                            format!("cannot open SQLite database {}: {e}", path.display()),
                            Some(e.into()),
                        )
                    })?;
                Pools::Sqlite(pool)
            }
            DatabaseUrl::Postgres(u) => {
                let manager = ConnectionManager::<PgConnection>::new(u.clone());
                let pool = Pool::builder()
                    .max_size(cfg.pool_size)
                    .min_idle(Some(1))
                    .connection_timeout(timeout)
                    .test_on_check_out(false)
                    .connection_customizer(Box::new(PgCounting {
                        statements: statements.clone(),
                    }))
                    .error_handler(Box::new(diesel::r2d2::NopErrorHandler))
                    .build(manager)
                    .map_err(|e| {
                        let message = format!(
                            "cannot connect to PostgreSQL at {}: {}",
                            DatabaseUrl::redact(u),
                            pg_hint(&e.to_string())
                        );
                        Error::unavailable(message, Some(e.into()))
                    })?;
                Pools::Postgres(pool)
            }
        };
        // SQLite runs one writer at a time anyway. On PostgreSQL every statement is a round
        // trip to the server: one drainer running them one after another made sessions
        // wait on each other (measured A/B: 0.77× the sessions/s, 1.7× the p99, no CPU
        // saved), so there every statement keeps its own hand-off.
        let combiner = match pools {
            Pools::Sqlite(_) => Some(Arc::new(combine::Combiner::default())),
            Pools::Postgres(_) => None,
        };
        let mut store = Store {
            pools,
            statements,
            keyring: Default::default(),
            combiner,
            gate: Arc::new(tokio::sync::Semaphore::new(cfg.pool_size.max(1) as usize)),
            gate_timeout: timeout,
            phone_generation: Arc::new(AtomicU64::new(0)),
            _checkpointer: None,
        };
        store.migrate()?;
        sqlite_options_checked(&store);
        if let DatabaseUrl::Sqlite(path) = &url {
            store._checkpointer = Some(checkpoint::start(
                &path.to_string_lossy(),
                cfg.sqlite_wal_autocheckpoint,
                cfg.busy_timeout_ms,
            ));
        }
        Ok(store)
    }

    /// The generation of what phones are served from: it changes (after the write
    /// committed) with every write of this process to phones, their lines, profiles, model
    /// firmware or network locks. Read it before reading those, and a cached read is
    /// current while it is unchanged. Writes by other processes sharing the database are
    /// not counted: caches bound their age for those.
    pub fn phone_generation(&self) -> u64 {
        self.phone_generation.load(Ordering::Acquire)
    }

    /// Count a write that can change what a phone is served (after it committed).
    pub(crate) fn bump_phone_generation(&self) {
        self.phone_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// `r`, counted as a write that can change what a phone is served when it succeeded.
    pub(crate) fn bumped<T>(&self, r: Result<T>) -> Result<T> {
        if r.is_ok() {
            self.bump_phone_generation();
        }
        r
    }

    /// Use `keyring` to seal and open secrets at rest (every clone of this store sees it).
    pub fn set_keyring(&self, keyring: crate::secrets::Keyring) {
        let mut k = match self.keyring.write() {
            Ok(k) => k,
            Err(p) => p.into_inner(),
        };
        *k = Arc::new(keyring);
    }

    /// The key for secrets at rest.
    pub fn keyring(&self) -> Arc<crate::secrets::Keyring> {
        match self.keyring.read() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Statements executed by this store's connections since it was opened.
    pub fn statements_executed(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    pub fn backend_name(&self) -> &'static str {
        match self.pools {
            Pools::Sqlite(_) => "sqlite",
            Pools::Postgres(_) => "postgres",
        }
    }

    /// Apply every pending migration.
    pub fn migrate(&self) -> Result<Vec<String>> {
        let map = |e: Box<dyn std::error::Error + Send + Sync>| {
            Error::internal(format!("migration failed: {e}"))
        };
        with_backend!(
            self,
            sqlite | c | {
                let done = c.run_pending_migrations(SQLITE_MIGRATIONS).map_err(map)?;
                Ok(done.iter().map(|v| v.to_string()).collect())
            },
            postgres | c | {
                let done = c.run_pending_migrations(POSTGRES_MIGRATIONS).map_err(map)?;
                Ok(done.iter().map(|v| v.to_string()).collect())
            }
        )
    }

    /// Revert every applied migration (used by tests to prove `down.sql` works).
    pub fn revert_all_migrations(&self) -> Result<usize> {
        let map = |e: Box<dyn std::error::Error + Send + Sync>| {
            Error::internal(format!("migration revert failed: {e}"))
        };
        with_backend!(
            self,
            sqlite | c | {
                Ok(c.revert_all_migrations(SQLITE_MIGRATIONS)
                    .map_err(map)?
                    .len())
            },
            postgres | c | {
                Ok(c.revert_all_migrations(POSTGRES_MIGRATIONS)
                    .map_err(map)?
                    .len())
            }
        )
    }

    /// A trivial query: does the database answer?
    pub fn ping(&self) -> Result<()> {
        with_conn!(self, |c| {
            c.batch_execute("SELECT 1")?;
            Ok(())
        })
    }

    /// Run blocking store work on tokio's blocking pool, once a connection is free.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        // Wait here, on the async side, while every connection is busy: a blocking thread
        // started now would only sleep on the pool and be woken again, two context
        // switches per statement under load.
        let permit = tokio::time::timeout(self.gate_timeout, self.gate.clone().acquire_owned())
            .await
            .ok()
            .and_then(|p| p.ok())
            .ok_or_else(|| {
                Error::unavailable(
                    "no database connection could be opened: every connection stayed busy \
                     (raise database.pool_size, or look for slow statements)",
                    None,
                )
            })?;
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&store)
        })
        .await
        .map_err(|e| Error::internal_from("database task panicked", e))?
    }

    /// Like [`Store::run`], for short work on the request path (one or two statements, no
    /// scans). On SQLite it is queued and run with other requests' short work on one
    /// blocking thread, so many requests share one hand-off to the blocking pool (see
    /// `store::combine`); on PostgreSQL it is [`Store::run`]. Long work would delay every
    /// request queued behind it: use [`Store::run`] for that.
    pub async fn run_short<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        match &self.combiner {
            Some(c) => combine::Combiner::run(c, self, f).await,
            None => self.run(f).await,
        }
    }

    /// Read a setting.
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        use schema::settings::dsl as s;
        with_conn!(self, |c| {
            Ok(s::settings
                .filter(s::key.eq(key))
                .select(s::value)
                .first::<String>(c)
                .optional()?)
        })
    }

    /// Read a setting, creating it with `init()` if absent. Safe when several nodes race:
    /// the first insert wins and everyone reads the winner's value.
    pub fn setting_or_init(&self, key: &str, init: impl FnOnce() -> String) -> Result<String> {
        use schema::settings::dsl as s;
        let value = init();
        with_conn!(self, |c| {
            diesel::insert_into(s::settings)
                .values((s::key.eq(key), s::value.eq(&value)))
                .on_conflict_do_nothing()
                .execute(c)?;
            Ok(s::settings
                .filter(s::key.eq(key))
                .select(s::value)
                .first::<String>(c)?)
        })
    }
}

/// Pooled connection types, for the rare caller that needs one directly.
pub type SqlitePooled = PooledConnection<ConnectionManager<SqliteConnection>>;
pub type PgPooled = PooledConnection<ConnectionManager<PgConnection>>;

fn check_sqlite_path(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let meta = std::fs::metadata(&dir).map_err(|e| {
        Error::invalid(
            "database.url",
            format!("SQLite directory {} cannot be used: {e}", dir.display()),
        )
    })?;
    if !meta.is_dir() {
        return Err(Error::invalid(
            "database.url",
            format!("{} is not a directory", dir.display()),
        ));
    }
    if path.exists() {
        let m = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path);
        if let Err(e) = m {
            return Err(Error::invalid(
                "database.url",
                format!("SQLite database {} is not writable: {e}", path.display()),
            ));
        }
    } else {
        // Create the (empty) database file readable by its owner only: it holds device
        // credentials. SQLite gives the -wal and -shm files it creates next to it the same
        // mode, and needs the directory writable for them.
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Error::invalid(
                    "database.url",
                    format!(
                        "cannot create SQLite database in {}: {e}; choose a writable directory",
                        dir.display()
                    ),
                ))
            }
        }
    }
    Ok(())
}

fn pg_hint(msg: &str) -> String {
    let m = msg.trim().replace('\n', " ");
    if m.contains("Connection refused") {
        format!("{m} (is PostgreSQL running and listening on that host and port?)")
    } else if m.contains("password authentication failed") {
        format!("{m} (check the user and password in database.url)")
    } else if m.contains("does not exist") {
        format!("{m} (create the database first: CREATE DATABASE ...)")
    } else {
        m
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Whether the SQLite library was built with the query planner stability guarantee
/// (`SQLITE_ENABLE_QPSG`, set for the bundled build in `.cargo/config.toml`); `None` on
/// PostgreSQL. Without it every cached query with `LIMIT ?` is prepared again at each run.
pub fn sqlite_qpsg(store: &Store) -> Result<Option<bool>> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    match store.pools() {
        Pools::Sqlite(p) => {
            let mut c = p.get()?;
            let found: Found = diesel::sql_query(
                "SELECT count(*) AS n FROM pragma_compile_options \
                 WHERE compile_options = 'ENABLE_QPSG'",
            )
            .get_result(&mut c)?;
            Ok(Some(found.n > 0))
        }
        Pools::Postgres(_) => Ok(None),
    }
}

/// Warn at start-up when the SQLite library lacks the option (a build against another
/// SQLite): everything works, but cached queries with `LIMIT ?` cost a parse each.
fn sqlite_options_checked(store: &Store) {
    match sqlite_qpsg(store) {
        Ok(Some(false)) => tracing::warn!(
            "this SQLite was built without SQLITE_ENABLE_QPSG: queries are parsed again at \
             every run (build with the repository's .cargo/config.toml, which sets \
             LIBSQLITE3_FLAGS=-DSQLITE_ENABLE_QPSG)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read SQLite's compile options"),
    }
}

#[cfg(test)]
mod sqlite_build_tests {
    /// The bundled SQLite is built with the planner stability guarantee: without it every
    /// cached `.first()` query is prepared again at each run (measured: ≈ 2.5 % of a
    /// first contact's CPU, more of a session with tasks).
    #[test]
    fn the_bundled_sqlite_is_built_with_the_planner_stability_guarantee() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let cfg = crate::config::DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("acs.db").display()),
            ..Default::default()
        };
        let store = super::Store::open(&cfg).expect("open the store");
        assert_eq!(
            super::sqlite_qpsg(&store).expect("compile options"),
            Some(true)
        );
    }
}

#[cfg(test)]
mod migration_tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    fn names(backend: &str) -> Vec<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("migrations directory")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// The small key-ordered tables move to WITHOUT ROWID with what they hold: a database
    /// of the version before keeps its searchable values, issued credentials and counters,
    /// the triggers keep counting, and searches by value still use their index.
    #[test]
    fn sqlite_tables_move_to_without_rowid_with_their_rows() {
        use diesel::connection::SimpleConnection;
        use diesel::prelude::*;
        use diesel::sql_types::{BigInt, Text};
        use diesel_migrations::MigrationHarness;

        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        #[derive(QueryableByName)]
        struct S {
            #[diesel(sql_type = Text)]
            s: String,
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("old.db");
        let mut c = diesel::SqliteConnection::establish(&path.display().to_string())
            .expect("open the database");
        c.batch_execute("PRAGMA foreign_keys = ON")
            .expect("foreign keys");
        let last = "2026-12-10-000000";
        loop {
            let pending = c
                .pending_migrations(super::SQLITE_MIGRATIONS)
                .expect("pending migrations");
            let next = pending
                .first()
                .expect("the migration under test is pending");
            if next.name().version().to_string() == last.replace('-', "") {
                break;
            }
            c.run_next_migration(super::SQLITE_MIGRATIONS)
                .expect("earlier migration");
        }
        c.batch_execute(
            "INSERT INTO devices (id, oui, product_class, serial_number, software_version, \
                 created_at, updated_at) VALUES ('A-B-1', 'A', 'B', '1', 'v1', 0, 0), \
                 ('A-B-2', 'A', 'B', '2', 'v1', 0, 0);
             INSERT INTO device_search (device_id, name, value) VALUES \
                 ('A-B-1', 'DeviceInfo.ModelName', 'BM632w'), ('A-B-2', 'DeviceInfo.ModelName', 'X');
             INSERT INTO issued_credentials (device_id, username, ha1, state, attempts, reason, \
                 issued_at) VALUES ('A-B-1', 'cpe-1', 'sealed', 'issued', 1, '', 5);
             INSERT INTO session_log (device_id, started_at, ended_at, source_ip, events, rpcs, \
                 faults, outcome) VALUES ('A-B-1', 120000, 120001, '', '', '', '[]', 'completed');
             INSERT INTO faults (device_id, code, message, created_at) \
                 VALUES ('A-B-1', 9002, 'internal error', 120000), ('A-B-1', 9002, 'again', 120500);",
        )
        .expect("rows of the version before");
        c.run_next_migration(super::SQLITE_MIGRATIONS)
            .expect("the migration runs on a database with rows");

        let count = |c: &mut diesel::SqliteConnection, sql: &str| -> i64 {
            diesel::sql_query(sql)
                .get_result::<N>(c)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .n
        };
        for table in [
            "device_search",
            "issued_credentials",
            "device_version_counts",
            "session_minutes",
            "fault_minutes",
        ] {
            let sql: S = diesel::sql_query(format!(
                "SELECT sql AS s FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
            ))
            .get_result(&mut c)
            .unwrap_or_else(|e| panic!("{table}: {e}"));
            assert!(sql.s.ends_with("WITHOUT ROWID"), "{table}: {}", sql.s);
        }
        assert_eq!(
            count(
                &mut c,
                "SELECT COUNT(*) AS n FROM device_search WHERE name = 'DeviceInfo.ModelName' \
                 AND value = 'BM632w' AND device_id = 'A-B-1'"
            ),
            1
        );
        assert_eq!(count(&mut c, "SELECT COUNT(*) AS n FROM device_search"), 2);
        assert_eq!(
            count(
                &mut c,
                "SELECT COUNT(*) AS n FROM issued_credentials WHERE username = 'cpe-1' \
                 AND ha1 = 'sealed' AND issued_at = 5"
            ),
            1
        );
        #[derive(QueryableByName)]
        struct Plan {
            #[diesel(sql_type = Text)]
            detail: String,
        }
        let plan: Vec<Plan> = diesel::sql_query(
            "EXPLAIN QUERY PLAN SELECT device_id FROM device_search \
             WHERE name = 'DeviceInfo.ModelName' AND value = 'BM632w'",
        )
        .load(&mut c)
        .expect("query plan");
        assert!(
            plan.iter()
                .any(|p| p.detail.contains("COVERING INDEX device_search_value")),
            "a search by value reads the value index alone: {:?}",
            plan.iter().map(|p| &p.detail).collect::<Vec<_>>()
        );
        let n = |c: &mut diesel::SqliteConnection| {
            (
                count(
                    c,
                    "SELECT COALESCE(SUM(n), 0) AS n FROM device_version_counts",
                ),
                count(c, "SELECT COALESCE(SUM(n), 0) AS n FROM session_minutes"),
                count(c, "SELECT COALESCE(SUM(n), 0) AS n FROM fault_minutes"),
            )
        };
        assert_eq!(n(&mut c), (2, 1, 2), "counters carried over");
        c.batch_execute(
            "INSERT INTO devices (id, oui, product_class, serial_number, software_version, \
                 created_at, updated_at) VALUES ('A-B-3', 'A', 'B', '3', 'v2', 0, 0);
             INSERT INTO session_log (device_id, started_at, ended_at, source_ip, events, rpcs, \
                 faults, outcome) VALUES ('A-B-3', 180000, 180001, '', '', '', '[]', 'completed');
             DELETE FROM devices WHERE id = 'A-B-2';
             DELETE FROM faults WHERE message = 'again';",
        )
        .expect("writes after the migration");
        assert_eq!(n(&mut c), (2, 2, 1), "the triggers count on");
        assert_eq!(
            count(&mut c, "SELECT COUNT(*) AS n FROM device_search"),
            1,
            "the searchable values of a deleted device go with it"
        );
        c.revert_last_migration(super::SQLITE_MIGRATIONS)
            .expect("the migration reverts");
        assert_eq!(count(&mut c, "SELECT COUNT(*) AS n FROM device_search"), 1);
        assert_eq!(n(&mut c), (2, 2, 1));
    }

    /// diesel keys applied migrations by the version before the first `_`: two migrations
    /// with one version would let the second be taken as applied and silently skipped.
    #[test]
    fn migration_versions_are_unique_and_both_backends_have_the_same_ones() {
        let sqlite = names("sqlite");
        assert!(!sqlite.is_empty());
        assert_eq!(
            sqlite,
            names("postgres"),
            "migrations/sqlite and migrations/postgres differ"
        );
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for n in &sqlite {
            let version = n.split('_').next().unwrap_or(n);
            if let Some(other) = seen.insert(version, n) {
                panic!("migrations {other} and {n} share the version {version}");
            }
        }
    }
}
