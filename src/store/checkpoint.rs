//! SQLite's WAL checkpoints, run by a background thread instead of by the sessions.
//!
//! In WAL mode every commit appends pages to the `-wal` file, and a checkpoint copies them
//! back into the database file. SQLite's own rule (`PRAGMA wal_autocheckpoint`) has the
//! commit that finds the log over the limit run the checkpoint before it returns: that
//! session waits for thousands of page copies and two `fsync`s, and the 99th percentile of
//! every request that waited behind it grows with it.
//!
//! Here a thread of its own (`ferroacs-wal-ckpt`, on its own connection, at a lower CPU
//! priority than the request threads) runs a `PASSIVE` checkpoint, which never waits for a
//! lock and lets writers go on appending, about every `database.sqlite_wal_autocheckpoint`
//! pages: each checkpoint reports how far the log has grown, and the thread sets the time
//! to the next one from that rate ([`next_interval`], between [`MIN_INTERVAL`] and
//! [`MAX_INTERVAL`]). The sessions' connections keep SQLite's rule as a backstop at
//! [`BACKSTOP_FACTOR`] times the limit, for a burst that comes faster than the thread looks
//! and for a server so busy that the thread falls behind.
//!
//! Only SQLite's own API touches the database's files. Opening any of them another way and
//! closing that descriptor would release every POSIX lock this process holds on the file,
//! SQLite's included (a property of `fcntl` locks), and another process could then take the
//! shared memory for unused and truncate it under this one.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Integer;
use diesel::SqliteConnection;

/// The sessions' own checkpoint rule fires at this many times the background thread's.
pub(super) const BACKSTOP_FACTOR: u32 = 4;

/// The shortest time between two checkpoints of the thread.
pub(super) const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// The longest: a burst of writes is noticed within this.
pub(super) const MAX_INTERVAL: Duration = Duration::from_secs(1);

/// How often the thread looks whether its store is gone.
const TICK: Duration = Duration::from_millis(50);

/// Kept by every clone of the store; the thread ends once the last one is dropped.
pub(super) struct Checkpointer {
    _alive: Arc<()>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checkpointer")
    }
}

/// Start the thread for the database at `db`, checkpointing about every `threshold` pages.
pub(super) fn start(db: &str, threshold: u32, busy_timeout_ms: u64) -> Checkpointer {
    let alive = Arc::new(());
    let watch = Arc::downgrade(&alive);
    let db = db.to_string();
    let spawned = std::thread::Builder::new()
        .name("ferroacs-wal-ckpt".into())
        .spawn(move || run(&db, threshold.max(1), busy_timeout_ms, watch));
    if let Err(e) = spawned {
        tracing::warn!(
            error = %e,
            "cannot start the SQLite checkpoint thread: commits will checkpoint the log \
             themselves, at {BACKSTOP_FACTOR} times database.sqlite_wal_autocheckpoint"
        );
    }
    Checkpointer { _alive: alive }
}

/// The time to the next checkpoint: the time the log takes to grow by `threshold` pages at
/// the rate just seen (`grown` pages in `elapsed`), within [`MIN_INTERVAL`, `MAX_INTERVAL`].
pub(super) fn next_interval(grown: u32, elapsed: Duration, threshold: u32) -> Duration {
    if grown == 0 {
        return MAX_INTERVAL;
    }
    let per_page = elapsed.as_secs_f64() / f64::from(grown);
    let t = Duration::from_secs_f64((per_page * f64::from(threshold)).min(3600.0));
    t.clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Pages appended since the last checkpoint, from the log's size then (`before`, and
/// whether that checkpoint copied all of it) and now. After a complete checkpoint the next
/// writer starts the log again from its beginning.
fn grown(before: Option<(u32, bool)>, log: u32) -> u32 {
    match before {
        None => log,
        Some((prev, complete)) if complete && log < prev => log,
        Some((prev, _)) => log.saturating_sub(prev),
    }
}

fn run(db: &str, threshold: u32, busy_timeout_ms: u64, alive: Weak<()>) {
    lower_priority();
    let mut conn: Option<SqliteConnection> = None;
    let mut interval = MAX_INTERVAL;
    let mut last: Option<(u32, bool)> = None;
    let mut last_at = Instant::now();
    let mut warned = false;
    loop {
        let due = Instant::now() + interval;
        while Instant::now() < due {
            if alive.strong_count() == 0 {
                return;
            }
            std::thread::sleep(TICK.min(due.saturating_duration_since(Instant::now())));
        }
        match checkpoint(db, &mut conn, busy_timeout_ms) {
            Ok((log, done)) => {
                warned = false;
                let now = Instant::now();
                let log = u32::try_from(log).unwrap_or(0);
                let done = u32::try_from(done).unwrap_or(0);
                interval = next_interval(grown(last, log), now - last_at, threshold);
                tracing::trace!(log, done, ?interval, "WAL checkpoint");
                last = Some((log, done >= log));
                last_at = now;
            }
            Err(e) => {
                // A broken connection is opened again at the next attempt.
                conn = None;
                interval = MAX_INTERVAL;
                if !warned {
                    warned = true;
                    tracing::warn!(
                        error = %e,
                        "SQLite checkpoint failed; will retry (commits checkpoint the log \
                         themselves once it is {BACKSTOP_FACTOR} times \
                         database.sqlite_wal_autocheckpoint)"
                    );
                }
            }
        }
    }
}

#[derive(QueryableByName)]
struct Outcome {
    #[diesel(sql_type = Integer)]
    log: i32,
    #[diesel(sql_type = Integer)]
    checkpointed: i32,
}

/// One `PASSIVE` checkpoint: copies what no reader still needs, waits for nobody. Returns
/// the pages in the log and those of them now in the database (-1 and -1 outside WAL mode).
fn checkpoint(
    db: &str,
    conn: &mut Option<SqliteConnection>,
    busy_timeout_ms: u64,
) -> std::result::Result<(i32, i32), Box<dyn std::error::Error>> {
    if conn.is_none() {
        let mut c = SqliteConnection::establish(db)?;
        c.batch_execute(&format!(
            "PRAGMA busy_timeout = {busy_timeout_ms}; PRAGMA wal_autocheckpoint = 0;"
        ))?;
        *conn = Some(c);
    }
    let Some(c) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let o: Outcome = diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result(c)?;
    Ok((o.log, o.checkpointed))
}

/// The copying is not urgent: let the request threads have the CPU first. On Linux the
/// nice value is per thread.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on this thread's own id; no memory is passed.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use std::path::Path;

    fn open(dir: &Path, threshold: u32) -> Store {
        let cfg = crate::config::DatabaseConfig {
            url: format!("sqlite://{}", dir.join("t.db").display()),
            sqlite_wal_autocheckpoint: threshold,
            ..Default::default()
        };
        Store::open(&cfg).expect("store")
    }

    #[test]
    fn the_interval_follows_the_write_rate() {
        let s = Duration::from_secs(1);
        // 2,000 pages a second, a checkpoint every 2,000 pages: once a second.
        assert_eq!(next_interval(2_000, s, 2_000), Duration::from_secs(1));
        assert_eq!(
            next_interval(8_000, s, 2_000),
            Duration::from_millis(250),
            "four times the rate, a quarter of the time"
        );
        assert_eq!(next_interval(1_000_000, s, 2_000), MIN_INTERVAL);
        assert_eq!(next_interval(3, s, 2_000), MAX_INTERVAL, "a trickle");
        assert_eq!(next_interval(0, s, 2_000), MAX_INTERVAL, "nothing written");
        assert_eq!(next_interval(10, Duration::ZERO, 2_000), MIN_INTERVAL);
    }

    #[test]
    fn growth_counts_from_where_the_log_starts_again() {
        assert_eq!(grown(None, 70), 70);
        assert_eq!(grown(Some((100, false)), 130), 30, "the same log, grown");
        assert_eq!(
            grown(Some((100, true)), 40),
            40,
            "restarted after a full copy"
        );
        assert_eq!(grown(Some((100, true)), 130), 30);
        assert_eq!(grown(Some((100, false)), 90), 0, "never negative");
    }

    #[test]
    fn the_thread_copies_the_log_back_without_any_commit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path(), 2_000);
        let db = dir.path().join("t.db");
        let size = || std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        let before = size();
        // One commit of 60 pages or more, on a connection of its own whose own rule
        // (SQLite's default, 1,000 pages) does not fire; no commit follows, so only the
        // thread can bring those pages into the database file.
        let mut c = SqliteConnection::establish(&db.to_string_lossy()).expect("connection");
        c.batch_execute(
            "CREATE TABLE ckpt_test (b BLOB); \
             INSERT INTO ckpt_test SELECT randomblob(4000) FROM \
             (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60) \
             SELECT i FROM n);",
        )
        .expect("append");
        let deadline = Instant::now() + MAX_INTERVAL * 10;
        while size() < before + 60 * 4096 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            size() >= before + 60 * 4096,
            "the database file grew from {before} to {} bytes only",
            size()
        );
        let n: i64 =
            diesel::dsl::sql::<diesel::sql_types::BigInt>("SELECT count(*) FROM ckpt_test")
                .get_result(&mut c)
                .expect("count");
        assert_eq!(n, 60);
        assert_eq!(
            store.setting("absent").expect("the store still reads"),
            None
        );
    }
}
