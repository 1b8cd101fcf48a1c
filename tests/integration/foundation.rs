//! The foundation: storage on both backends, health, restarts, CLI and start-up errors.

use std::process::Command;

use crate::battery;
use crate::support::{Backend, TestApp, TestDb};

battery!(
    healthz_and_restart_keep_data,
    migrations_run_up_and_down,
    a_restarted_node_releases_its_own_locks_only,
    a_session_close_writes_the_device_row_and_releases_only_its_own_lock,
    a_discovery_close_records_its_time_and_only_the_identity_that_changed
);

async fn healthz_and_restart_keep_data(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let res = app
        .http()
        .get(app.api_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-request-id"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(
        body["database"],
        if b == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );

    // Data written before a restart is there after it.
    let store = app.store();
    let p = ferroacs::store::devices::ProvisionDevice {
        id: "00D09E-ATA2-S1".into(),
        oui: "00D09E".into(),
        product_class: "ATA2".into(),
        serial_number: "S1".into(),
        cwmp_credentials: None,
        tags: Some(vec!["lab".into(), "north".into()]),
    };
    tokio::task::spawn_blocking(move || store.provision_device(&p, None, 1).unwrap())
        .await
        .unwrap();
    let app = app.restart().await;
    let store = app.store();
    let (dev, tags) = tokio::task::spawn_blocking(move || {
        (
            store.get_device("00D09E-ATA2-S1").unwrap(),
            store.tags_of(&["00D09E-ATA2-S1".into()]).unwrap(),
        )
    })
    .await
    .unwrap();
    assert_eq!(dev.unwrap().serial_number, "S1");
    assert_eq!(
        tags.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
        vec!["lab", "north"]
    );
    let res = app
        .http()
        .get(app.api_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn migrations_run_up_and_down(b: Backend) {
    tokio::task::spawn_blocking(move || {
        let db = TestDb::new(b);
        let mut cfg = ferroacs::config::Config::default();
        cfg.database.url = db.url.clone();
        let store = ferroacs::store::Store::open(&cfg.database).unwrap();
        // Open applied everything; a second run has nothing left to do.
        assert!(store.migrate().unwrap().is_empty());
        assert!(store.count_devices().unwrap() == 0);
        let reverted = store.revert_all_migrations().unwrap();
        assert!(reverted >= 1);
        assert!(
            store.count_devices().is_err(),
            "tables must be gone after down migrations"
        );
        let applied = store.migrate().unwrap();
        assert_eq!(applied.len(), reverted);
        assert_eq!(store.count_devices().unwrap(), 0);
    })
    .await
    .unwrap();
}

/// PostgreSQL going away turns /healthz into 503; it recovers when the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_health_reports_database_loss() {
    if !crate::support::postgres_enabled() {
        return;
    }
    let app = TestApp::spawn(Backend::Postgres, |c| c.database.connect_timeout_ms = 1000).await;
    let url = app.api_url("/healthz");
    let api = crate::api::Api::new(&app, "viewer").await;

    let name = app.db.url.rsplit('/').next().unwrap().to_string();
    let admin = crate::support::pg_admin_url();
    // Terminate every connection to the test database and forbid new ones.
    tokio::task::spawn_blocking({
        let name = name.clone();
        let admin = admin.clone();
        move || {
            use diesel::connection::SimpleConnection;
            use diesel::Connection;
            let mut c = diesel::PgConnection::establish(&admin).unwrap();
            c.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).unwrap();
            // Termination is asynchronous: repeat until no backend of the database is left.
            use diesel::RunQueryDsl;
            #[derive(diesel::QueryableByName)]
            struct N {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            crate::support::wait_until_blocking(
                std::time::Duration::from_secs(5),
                "every connection to the test database terminated",
                || {
                    let left: N = diesel::sql_query(format!(
                        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE datname = '{name}'"
                    ))
                    .get_result(&mut c)
                    .unwrap();
                    if left.n == 0 { Ok(()) } else { Err(left.n) }
                },
            );
        }
    })
    .await
    .unwrap();
    let res = app.http().get(&url).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    // API clients get 503 with a fixed message: nothing about the database.
    for path in ["/api/v1/devices", "/api/v1/tasks"] {
        let (status, body) = api.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert_eq!(msg, ferroacs::http::error::UNAVAILABLE_MESSAGE, "{body}");
        let text = body.to_string().to_lowercase();
        for leak in [
            name.as_str(),
            "postgres",
            "127.0.0.1",
            "connection",
            "terminat",
        ] {
            assert!(!text.contains(leak), "{leak} in {body}");
        }
    }
    // A CPE informing meanwhile is told to come back later; nothing is lost.
    let mut dev = crate::cpe::Device::synthetic(crate::cpe::Root::Igd, "OUTAGE", 10)
        .with_acs_credentials("cpe", "cpe-secret");
    let ev = dev.inform_events(&[]);
    let inform = dev.inform_envelope(&ev, "1");
    let mut c = dev.http_client(&app.cwmp_url()).unwrap();
    let resp = c.post_soap(&inform).await.unwrap();
    assert_eq!(resp.status, 503, "{}", resp.body_text());
    assert!(resp.header("Retry-After").is_some());
    c.close();
    tokio::task::spawn_blocking(move || {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        let mut c = diesel::PgConnection::establish(&admin).unwrap();
        c.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            .unwrap();
    })
    .await
    .unwrap();
    crate::support::wait_until(
        std::time::Duration::from_secs(5),
        "health recovers once the database is back",
        || async {
            let status = app.http().get(&url).send().await.unwrap().status();
            if status == 200 {
                Ok(())
            } else {
                Err(status)
            }
        },
    )
    .await;
    let r = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(r.ended_cleanly(), "sessions work again: {r:?}");
}

fn ferroacs_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferroacs"));
    // Keep the developer's environment out of these runs.
    for (k, _) in std::env::vars() {
        if k.starts_with("FERROACS_") {
            c.env_remove(k);
        }
    }
    c
}

/// Run the binary in `dir`; return (exit success, stdout, stderr).
fn run_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = ferroacs_bin();
    c.current_dir(dir).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_line_error(stderr: &str, needle: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {stderr}");
    assert!(
        lines[0].contains(needle),
        "expected `{needle}` in: {stderr}"
    );
}

fn dir_entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn bad_startup_input_exits_with_one_clear_line_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = ["serve"];
    let base = [
        ("FERROACS_CWMP_LISTEN", "127.0.0.1:0"),
        ("FERROACS_API_LISTEN", "127.0.0.1:0"),
    ];

    // Unknown config key in a file.
    std::fs::write(d.join("bad.toml"), "[cwmp]\nlisten_addr = \"0.0.0.0:1\"\n").unwrap();
    let (ok, _, err) = run_in(d, &["--config", "bad.toml", "serve"], &base);
    assert!(!ok);
    assert_one_line_error(&err, "listen_addr");

    // Unknown environment key.
    let (ok, _, err) = run_in(d, &serve, &[("FERROACS_CWMP_LISTN", "x")]);
    assert!(!ok);
    assert_one_line_error(&err, "FERROACS_CWMP_LISTN");

    // Malformed database URL.
    let (ok, _, err) = run_in(
        d,
        &serve,
        &[base[0], base[1], ("FERROACS_DATABASE_URL", "mysql://x/y")],
    );
    assert!(!ok);
    assert_one_line_error(&err, "database.url");

    // Unreachable PostgreSQL (a closed local port).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://acs:pw@127.0.0.1:{port}/acs");
    let (ok, _, err) = run_in(
        d,
        &serve,
        &[
            base[0],
            base[1],
            ("FERROACS_DATABASE_URL", &url),
            ("FERROACS_DATABASE_CONNECT_TIMEOUT_MS", "1000"),
        ],
    );
    assert!(!ok);
    assert_one_line_error(&err, "PostgreSQL");
    assert!(
        !err.contains(":pw@"),
        "the password must not be printed: {err}"
    );

    // Port already in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let (ok, _, err) = run_in(d, &serve, &[("FERROACS_CWMP_LISTEN", &busy_addr), base[1]]);
    assert!(!ok);
    assert_one_line_error(&err, "cwmp.listen");

    // Unwritable SQLite directory (a path below a regular file is never writable, even for root).
    std::fs::write(d.join("plainfile"), "x").unwrap();
    let (ok, _, err) = run_in(
        d,
        &serve,
        &[
            base[0],
            base[1],
            ("FERROACS_DATABASE_URL", "sqlite://plainfile/sub/acs.db"),
        ],
    );
    assert!(!ok);
    assert_one_line_error(&err, "database.url");

    // None of the failures created anything (no database file, no files directory).
    assert_eq!(dir_entries(d), vec!["bad.toml", "plainfile"]);
}

#[test]
fn cli_config_example_and_token_create() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, out, _) = run_in(d, &["config", "example"], &[]);
    assert!(ok);
    assert!(out.contains("[cwmp]") && out.contains("#listen = \"0.0.0.0:7547\""));
    std::fs::write(d.join("ferroacs.toml"), &out).unwrap();
    let (ok, out, err) = run_in(d, &["config", "check"], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("valid"));

    let (ok, out, _) = run_in(
        d,
        &["config", "show"],
        &[("FERROACS_DATABASE_URL", "postgres://u:topsecret@h:5432/d")],
    );
    assert!(ok);
    assert!(!out.contains("topsecret"));

    let (ok, out, err) = run_in(
        d,
        &["token", "create", "--name", "oss", "--role", "operator"],
        &[],
    );
    assert!(ok, "{err}");
    let token = out.lines().last().unwrap().trim().to_string();
    assert!(token.len() >= 32, "token on the last line: {out}");
    // Only a hash is stored.
    let db = std::fs::read(d.join("ferroacs.db")).unwrap();
    let wal = std::fs::read(d.join("ferroacs.db-wal")).unwrap_or_default();
    let hay = [db, wal].concat();
    assert!(
        !hay.windows(token.len()).any(|w| w == token.as_bytes()),
        "token stored in clear"
    );
    let (ok, out, _) = run_in(d, &["token", "list"], &[]);
    assert!(ok && out.contains("oss") && out.contains("operator"));

    // Operator accounts: argon2id hashes only; duplicates and short passwords refused.
    let (ok, out, err) = run_in(
        d,
        &[
            "user",
            "add",
            "--username",
            "alice",
            "--role",
            "admin",
            "--password",
            "correct horse",
        ],
        &[],
    );
    assert!(ok && out.contains("added user alice"), "{out}{err}");
    let (ok, _, err) = run_in(
        d,
        &[
            "user",
            "add",
            "--username",
            "alice",
            "--role",
            "viewer",
            "--password",
            "another one",
        ],
        &[],
    );
    assert!(!ok);
    assert_one_line_error(&err, "already exists");
    let (ok, _, err) = run_in(
        d,
        &[
            "user",
            "add",
            "--username",
            "bob",
            "--role",
            "viewer",
            "--password",
            "short",
        ],
        &[],
    );
    assert!(!ok);
    assert_one_line_error(&err, "at least 8");
    let store = ferroacs::store::Store::open(&ferroacs::config::DatabaseConfig {
        url: format!("sqlite://{}", d.join("ferroacs.db").display()),
        ..Default::default()
    })
    .unwrap();
    let alice = store.user_by_name("alice").unwrap().unwrap();
    assert!(
        alice.password_hash.starts_with("$argon2id$"),
        "{}",
        alice.password_hash
    );
    assert!(
        ferroacs::auth::password::verify_password("correct horse", &alice.password_hash).unwrap()
    );

    let (ok, _, err) = run_in(d, &["--version"], &[]);
    assert!(ok, "{err}");
}

/// `ferroacs serve` as an operator runs it: starts on SQLite in its working directory,
/// answers /healthz, stops cleanly on SIGTERM, and keeps its data across restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_gracefully_on_sigterm_and_keeps_data() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let start = || {
        let mut c = ferroacs_bin();
        c.current_dir(&d)
            .args(["serve", "--json-logs"])
            .env("FERROACS_CWMP_LISTEN", "127.0.0.1:0")
            .env("FERROACS_API_LISTEN", "127.0.0.1:0")
            .env("FERROACS_LOG_LEVEL", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = std::io::BufReader::new(stderr).lines();
        let api = loop {
            let line = lines.next().expect("server log").unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("JSON log line: {line}"));
            if let Some(api) = v["fields"]["api"].as_str() {
                break api.to_string();
            }
        };
        (child, api, lines)
    };
    let (child, api, lines) = start();
    ferroacs::app::install_crypto_provider();
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("http://{api}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        d.join("ferroacs.db").exists(),
        "SQLite database created in the working directory"
    );
    // Data written through the CLI while the server runs.
    let (ok, out, err) = run_in(
        &d,
        &[
            "device",
            "provision",
            "--oui",
            "A1B2C3",
            "--product-class",
            "ATA",
            "--serial",
            "S-9",
            "--tag",
            "lab",
        ],
        &[],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("A1B2C3-ATA-S%2D9"), "{out}");
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || {
        let mut child = child;
        crate::support::wait_until_blocking(
            std::time::Duration::from_secs(20),
            "the server stops after SIGTERM",
            || child.try_wait().unwrap().ok_or("still running"),
        )
    })
    .await
    .unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("shutting down")), "{rest:?}");
    // Restart: same database, same data.
    let (mut child, api, _lines) = start();
    assert_eq!(
        http.get(format!("http://{api}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (ok, out, _) = run_in(&d, &["device", "show", "A1B2C3-ATA-S%2D9"], &[]);
    assert!(ok && out.contains("S-9"), "{out}");
    let _ = child.kill();
    let _ = child.wait();
}

/// The session log is readable through the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_prints_the_session_log() {
    let app = TestApp::spawn(Backend::Sqlite, |_| {}).await;
    let mut dev = crate::cpe::Device::synthetic(crate::cpe::Root::Igd, "LOGGED", 20)
        .with_acs_credentials("cpe", "cpe-secret");
    assert!(dev
        .run_session(&app.cwmp_url(), &[])
        .await
        .unwrap()
        .ended_cleanly());
    assert!(dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap()
        .ended_cleanly());
    app.flush_session_logs().await;
    let dir = app.db.dir().unwrap();
    let url = app.db.url.clone();
    let (ok, out, err) = run_in(
        &dir,
        &["device", "sessions", &dev.identity.device_id()],
        &[
            ("FERROACS_DATABASE_URL", &url),
            ("FERROACS_SECRETS_KEY", &app.db.key),
        ],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("2 PERIODIC") && lines[0].contains("completed"),
        "{out}"
    );
    assert!(
        lines[1].contains("0 BOOTSTRAP") && lines[1].contains(">GetParameterNames"),
        "{out}"
    );
}

/// The server and command-line processes share an SQLite database. SQLite marks its use of
/// the shared memory with a read lock on one byte of the `-shm` file (the "dead man's
/// switch"); a process that finds nobody holding it truncates the memory under the others
/// (a SIGBUS there). POSIX drops every lock a process holds on a file when any descriptor
/// of that file is closed, so nothing but SQLite may open the database's files, the
/// checkpoint thread included: after it has run, another process still finds the lock held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shared_memory_stays_locked_while_the_log_is_checkpointed() {
    // The thread checkpoints every 10 pages; commits themselves only at 40.
    let app = TestApp::spawn(Backend::Sqlite, |c| {
        c.database.sqlite_wal_autocheckpoint = 10
    })
    .await;
    let mut dev = crate::cpe::Device::synthetic(crate::cpe::Root::Igd, "SHARED", 20)
        .with_acs_credentials("cpe", "cpe-secret");
    let dir = app.db.dir().unwrap();
    let url = app.db.url.clone();
    let path = std::path::PathBuf::from(url.trim_start_matches("sqlite://"));
    let written = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let r = dev
        .run_session(&app.cwmp_url(), &[("0 BOOTSTRAP", "")])
        .await
        .unwrap();
    assert!(r.ended_cleanly(), "{r:?}");
    // A few pages more, below what makes a commit checkpoint: in WAL mode only a
    // checkpoint writes the database file, so once it has been written the thread ran.
    let before = written(&path);
    for _ in 0..2 {
        let r = dev
            .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
            .await
            .unwrap();
        assert!(r.ended_cleanly(), "{r:?}");
    }
    let p = path.clone();
    crate::support::wait_until(
        std::time::Duration::from_secs(10),
        "the checkpoint thread copies the log back",
        || {
            let now = written(&p);
            async move { (now > before).then_some(()).ok_or(now) }
        },
    )
    .await;
    let probe = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "foundation::shm_lock_probe"])
        .env("FERROACS_SHM_PROBE", format!("{}-shm", path.display()))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&probe.stdout).into_owned();
    assert!(
        probe.status.success() && said.contains("1 passed"),
        "{said}{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    // And a command-line process may come and go while the server serves.
    for i in 0..5 {
        let (ok, _, err) = run_in(
            &dir,
            &["migrate"],
            &[
                ("FERROACS_DATABASE_URL", &url),
                ("FERROACS_SECRETS_KEY", &app.db.key),
                ("FERROACS_LOG_LEVEL", "error"),
            ],
        );
        assert!(ok, "ferroacs migrate, round {i}: {err}");
        let r = dev
            .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
            .await
            .unwrap();
        assert!(r.ended_cleanly(), "round {i}: {r:?}");
    }
}

/// Run in a child process by `sqlite_shared_memory_stays_locked_while_the_log_is_checkpointed`:
/// does another process hold the read lock on the dead man's switch of the `-shm` file
/// named by `FERROACS_SHM_PROBE` (byte 128: SQLite's `UNIX_SHM_DMS`)?
#[test]
#[ignore = "a helper the test above runs in a child process"]
fn shm_lock_probe() {
    use std::os::fd::AsRawFd;
    let path = std::env::var("FERROACS_SHM_PROBE").expect("FERROACS_SHM_PROBE names a -shm file");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open the -shm file");
    // SAFETY: a zeroed `flock` is a valid value; `fcntl(F_GETLK)` only fills it in.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    lock.l_start = 128;
    lock.l_len = 1;
    // SAFETY: a valid descriptor and a pointer to a live `flock`.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut lock) };
    assert_eq!(rc, 0, "fcntl: {}", std::io::Error::last_os_error());
    assert_eq!(
        i32::from(lock.l_type),
        libc::F_RDLCK,
        "nobody holds the shared memory's dead man's switch"
    );
}

async fn a_restarted_node_releases_its_own_locks_only(b: Backend) {
    tokio::task::spawn_blocking(move || {
        let db = TestDb::new(b);
        let mut cfg = ferroacs::config::Config::default();
        cfg.database.url = db.url.clone();
        let store = ferroacs::store::Store::open(&cfg.database).unwrap();
        let lock = |serial: &str, owner: &str| {
            let u = ferroacs::store::devices::InformUpdate {
                id: format!("000000-X-{serial}"),
                oui: "000000".into(),
                product_class: "X".into(),
                serial_number: serial.into(),
                ..Default::default()
            };
            let r = store
                .begin_session(&u, owner, 1, i64::MAX / 4, true, None, false)
                .unwrap();
            assert!(matches!(
                r,
                ferroacs::store::devices::BeginSession::Started { .. }
            ));
        };
        lock("A", "host_1:7547/s1");
        lock("B", "host_1:75470/s2");
        lock("C", "hostX1:7547/s3");
        assert_eq!(store.release_session_locks("host_1:7547").unwrap(), 1);
        let owner = |serial: &str| {
            store
                .get_device(&format!("000000-X-{serial}"))
                .unwrap()
                .unwrap()
                .session_owner
        };
        assert_eq!(owner("A"), None);
        assert!(
            owner("B").is_some() && owner("C").is_some(),
            "other nodes' locks stay"
        );
    })
    .await
    .unwrap();
}

/// The statement that closes a session writes the device row once: the delta, the
/// searchable values' signature, and the lock release with the drained work epoch. A
/// session whose lock was taken over meanwhile still stores what it learnt, and leaves the
/// new owner's lock and the work epoch alone.
async fn a_session_close_writes_the_device_row_and_releases_only_its_own_lock(b: Backend) {
    use ferroacs::store::devices::{BeginSession, IdentityUpdate, InformUpdate};
    use ferroacs::store::params::{SessionClose, TreeWrite};
    use ferroacs::store::search::SearchWrite;
    tokio::task::spawn_blocking(move || {
        let db = TestDb::new(b);
        let mut cfg = ferroacs::config::Config::default();
        cfg.database.url = db.url.clone();
        let store = ferroacs::store::Store::open(&cfg.database).unwrap();
        let id = "000000-X-CLOSE";
        let u = InformUpdate {
            id: id.into(),
            oui: "000000".into(),
            product_class: "X".into(),
            serial_number: "CLOSE".into(),
            ..Default::default()
        };
        let far = i64::MAX / 4;
        let begin = |owner: &str, takeover: Option<&str>, now: i64| match store
            .begin_session(&u, owner, now, far, true, takeover, false)
            .unwrap()
        {
            BeginSession::Started { device, .. } => device,
            other => panic!("{owner} did not start: {other:?}"),
        };
        let identity = IdentityUpdate::default();
        let values = vec![(
            "DeviceInfo.ProvisioningCode".to_string(),
            "site-1".to_string(),
        )];
        let close = |owner: &'static str, work_seen: Option<i64>, params, search| SessionClose {
            device_id: id,
            owner,
            work_seen,
            now: 5,
            params,
            discovered: false,
            identity: &identity,
            search,
            tasks: &[],
        };
        let row = || store.get_device(id).unwrap().unwrap();

        let first = begin("node-a/s1", None, 1);
        let seen_before = first.work_seen_epoch;
        // Another node takes the device over, then the first session closes late.
        begin("node-b/s2", Some("node-a/s1"), 2);
        let search = SearchWrite {
            values: &values,
            sig: 77,
            replace: false,
        };
        store
            .close_session(&close(
                "node-a/s1",
                Some(first.work_epoch + 1),
                Some(TreeWrite::Delta(b"delta-1")),
                Some(search),
            ))
            .unwrap();
        let d = row();
        assert_eq!(
            d.session_owner.as_deref(),
            Some("node-b/s2"),
            "the new lock stays"
        );
        assert_eq!(d.session_expires, Some(far));
        assert_eq!(d.work_seen_epoch, seen_before, "no work marked seen");
        assert_eq!(d.params_delta.as_deref(), Some(&b"delta-1"[..]));
        assert_eq!(d.search_sig, 77);
        assert_eq!(store.search_values_of(id).unwrap(), values);

        // The owner's close: nothing learnt, the lock released, the drained epoch recorded;
        // the delta and the signature stay.
        store
            .close_session(&close("node-b/s2", Some(d.work_epoch), None, None))
            .unwrap();
        let d = row();
        assert_eq!(d.session_owner, None);
        assert_eq!(d.session_expires, None);
        assert_eq!(d.work_seen_epoch, d.work_epoch);
        assert_eq!(d.params_delta.as_deref(), Some(&b"delta-1"[..]));
        assert_eq!(d.search_sig, 77);

        // A whole tree written clears the delta.
        begin("node-c/s3", None, 3);
        store
            .close_session(&close(
                "node-c/s3",
                None,
                Some(TreeWrite::Whole {
                    data: b"whole",
                    count: 1,
                    had_delta: true,
                }),
                None,
            ))
            .unwrap();
        let d = row();
        assert_eq!(d.params_delta, None);
        assert_eq!(d.session_owner, None);
        assert_eq!(
            store.load_params(id).unwrap().base.as_deref(),
            Some(&b"whole"[..])
        );
    })
    .await
    .unwrap();
}

fn open_store(b: Backend) -> (TestDb, ferroacs::store::Store) {
    let db = TestDb::new(b);
    let mut cfg = ferroacs::config::Config::default();
    cfg.database.url = db.url.clone();
    let store = ferroacs::store::Store::open(&cfg.database).unwrap();
    (db, store)
}

fn inform_of(serial: &str) -> ferroacs::store::devices::InformUpdate {
    ferroacs::store::devices::InformUpdate {
        id: format!("000000-X-{serial}"),
        oui: "000000".into(),
        product_class: "X".into(),
        serial_number: serial.into(),
        manufacturer: "Maker".into(),
        software_version: Some("1.0".into()),
        hardware_version: Some("HW1".into()),
        ..Default::default()
    }
}

/// A completed discovery's close records when it completed, and writes the identity
/// columns it is given (only those that changed: `session::identity_changes`), leaving the
/// others as the Inform left them.
async fn a_discovery_close_records_its_time_and_only_the_identity_that_changed(b: Backend) {
    use ferroacs::store::devices::{BeginSession, IdentityUpdate};
    use ferroacs::store::params::{SessionClose, TreeWrite};
    tokio::task::spawn_blocking(move || {
        let (_db, store) = open_store(b);
        let u = inform_of("DISC");
        let id = u.id.clone();
        let device = match store
            .begin_session(&u, "node-a/s1", 1, i64::MAX / 4, true, None, false)
            .unwrap()
        {
            BeginSession::Started { device, created } => {
                assert!(created);
                device
            }
            other => panic!("not started: {other:?}"),
        };
        assert_eq!(device.discovered_at, None);
        assert_eq!(device.model_name, "", "the Inform named no model");
        let identity = IdentityUpdate {
            model_name: Some("BM632w".into()),
            ..Default::default()
        };
        store
            .close_session(&SessionClose {
                device_id: &id,
                owner: "node-a/s1",
                work_seen: None,
                now: 42,
                params: Some(TreeWrite::Whole {
                    data: b"tree",
                    count: 1,
                    had_delta: false,
                }),
                discovered: true,
                identity: &identity,
                search: None,
                tasks: &[],
            })
            .unwrap();
        let d = store.get_device(&id).unwrap().unwrap();
        assert_eq!(d.discovered_at, Some(42));
        assert_eq!(d.model_name, "BM632w");
        assert_eq!(
            (
                d.manufacturer.as_str(),
                d.software_version.as_str(),
                d.hardware_version.as_str()
            ),
            ("Maker", "1.0", "HW1"),
            "the other identity columns stay"
        );
        assert_eq!(d.session_owner, None, "lock released");
        // A later close that completes no discovery leaves the time alone.
        store
            .begin_session(&u, "node-a/s2", 50, i64::MAX / 4, true, None, false)
            .unwrap();
        store
            .close_session(&SessionClose {
                device_id: &id,
                owner: "node-a/s2",
                work_seen: None,
                now: 60,
                params: Some(TreeWrite::Delta(b"d")),
                discovered: false,
                identity: &IdentityUpdate::default(),
                search: None,
                tasks: &[],
            })
            .unwrap();
        assert_eq!(
            store.get_device(&id).unwrap().unwrap().discovered_at,
            Some(42)
        );
    })
    .await
    .unwrap();
}
