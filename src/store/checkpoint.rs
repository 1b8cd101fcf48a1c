//! SQLite's WAL checkpoints, run by a background thread instead of by the sessions.
//!
//! In WAL mode every commit appends pages to the `-wal` file, and a checkpoint copies them
//! back into the database file. SQLite's own rule (`PRAGMA wal_autocheckpoint`) has the
//! commit that finds the log over the limit run the checkpoint before it returns: that
//! session waits for thousands of page copies and two `fsync`s, and the 99th percentile of
//! every request that waited behind it grows with it.
//!
//! Here a thread of its own (`ferroacs-wal-ckpt`, on its own connection, at a lower CPU
//! priority than the request threads) watches how many frames the log holds that are not
//! in the database yet, and runs a `PASSIVE` checkpoint once they reach
//! `database.sqlite_wal_autocheckpoint`: it never waits for a lock, and writers go on
//! appending while it copies. The sessions' connections keep SQLite's rule as a backstop at
//! [`BACKSTOP_FACTOR`] times the limit, for a server so busy that the thread falls behind.
//!
//! How many frames are pending is read from the WAL-index header in the `-shm` file, whose
//! layout SQLite documents (<https://sqlite.org/walformat.html>, "the WAL-index header" and
//! "checkpoint information"): `mxFrame` at byte 16, `nBackfill` at byte 96, in the
//! machine's byte order. When that file cannot be read or has another layout, the thread
//! checkpoints on a timer instead.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Integer;
use diesel::SqliteConnection;

/// The sessions' own checkpoint rule fires at this many times the background thread's.
pub(super) const BACKSTOP_FACTOR: u32 = 4;

/// How often the thread looks at the log.
const POLL: Duration = Duration::from_millis(50);

/// Without a readable WAL-index header: checkpoint this often.
const BLIND_INTERVAL: Duration = Duration::from_secs(1);

/// The WAL-index format this reads (`iVersion` of its header).
const WAL_INDEX_VERSION: u32 = 3_007_000;

/// Kept by every clone of the store; the thread ends once the last one is dropped.
pub(super) struct Checkpointer {
    _alive: Arc<()>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checkpointer")
    }
}

/// Frames of the log not yet copied into the database, from the WAL-index header in the
/// `-shm` file next to `db`; `None` when it is missing or not the documented layout.
pub(super) fn pending_frames(db: &Path) -> Option<u32> {
    let mut shm = PathBuf::from(db);
    shm.as_mut_os_string().push("-shm");
    let mut buf = [0u8; 100];
    std::fs::File::open(shm).ok()?.read_exact(&mut buf).ok()?;
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
    };
    let version = u32_at(0)?;
    let is_init = *buf.get(12)?;
    if version != WAL_INDEX_VERSION || is_init != 1 {
        return None;
    }
    let max_frame = u32_at(16)?;
    let backfilled = u32_at(96)?;
    Some(max_frame.saturating_sub(backfilled))
}

/// Start the thread for the database at `db`, checkpointing at `threshold` frames.
pub(super) fn start(db: &Path, threshold: u32, busy_timeout_ms: u64) -> Checkpointer {
    let alive = Arc::new(());
    let watch = Arc::downgrade(&alive);
    let db = db.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("ferroacs-wal-ckpt".into())
        .spawn(move || run(db, threshold.max(1), busy_timeout_ms, watch));
    if let Err(e) = spawned {
        tracing::warn!(
            error = %e,
            "cannot start the SQLite checkpoint thread: commits will checkpoint the log \
             themselves, at {BACKSTOP_FACTOR} times database.sqlite_wal_autocheckpoint"
        );
    }
    Checkpointer { _alive: alive }
}

fn run(db: PathBuf, threshold: u32, busy_timeout_ms: u64, alive: Weak<()>) {
    lower_priority();
    let mut conn: Option<SqliteConnection> = None;
    let mut last = Instant::now();
    let mut warned = false;
    while alive.strong_count() > 0 {
        std::thread::sleep(POLL);
        let due = match pending_frames(&db) {
            Some(n) => n >= threshold,
            None => last.elapsed() >= BLIND_INTERVAL,
        };
        if !due {
            continue;
        }
        last = Instant::now();
        match checkpoint(&db, &mut conn, busy_timeout_ms) {
            Ok((log, done)) => {
                warned = false;
                tracing::debug!(log, done, "WAL checkpoint");
            }
            Err(e) => {
                // A broken connection is opened again at the next attempt.
                conn = None;
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
/// the frames in the log and those now in the database.
fn checkpoint(
    db: &Path,
    conn: &mut Option<SqliteConnection>,
    busy_timeout_ms: u64,
) -> std::result::Result<(i32, i32), Box<dyn std::error::Error>> {
    if conn.is_none() {
        let mut c = SqliteConnection::establish(&db.to_string_lossy())?;
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

    fn open(dir: &Path, threshold: u32) -> Store {
        let cfg = crate::config::DatabaseConfig {
            url: format!("sqlite://{}", dir.join("t.db").display()),
            sqlite_wal_autocheckpoint: threshold,
            ..Default::default()
        };
        Store::open(&cfg).expect("store")
    }

    /// One transaction that appends `frames` pages or more to the log (rows of 4,000
    /// bytes, a page each), on a connection of its own that checkpoints nothing this size.
    fn append(db: &Path, frames: u32) -> SqliteConnection {
        let mut c = SqliteConnection::establish(&db.to_string_lossy()).expect("connection");
        c.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS ckpt_test (b BLOB); \
             INSERT INTO ckpt_test SELECT randomblob(4000) FROM \
             (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {frames}) \
             SELECT i FROM n);"
        ))
        .expect("append");
        c
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> Option<u32>, ok: impl Fn(u32) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = None;
        while Instant::now() < deadline {
            seen = cond();
            if seen.is_some_and(&ok) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{what}: last seen {seen:?}");
    }

    #[test]
    fn the_header_counts_the_frames_a_checkpoint_would_copy() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Far above what the test writes: neither the thread nor a commit checkpoints.
        let _store = open(dir.path(), 1_000_000);
        let db = dir.path().join("t.db");
        let before = pending_frames(&db).expect("a WAL-index header");
        let mut c = append(&db, 40);
        let after = pending_frames(&db).expect("a WAL-index header");
        assert!(after >= before + 40, "{before} -> {after}");
        // What SQLite itself reports for the same log: every pending frame copied.
        let o: Outcome = diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)")
            .get_result(&mut c)
            .expect("checkpoint");
        assert_eq!(o.log, o.checkpointed);
        assert_eq!(
            o.log as u32, after,
            "the header's mxFrame is SQLite's log size"
        );
        assert_eq!(pending_frames(&db), Some(0));
    }

    #[test]
    fn the_thread_checkpoints_what_no_commit_would() {
        let dir = tempfile::tempdir().expect("temp dir");
        let threshold = 30;
        let store = open(dir.path(), threshold);
        let db = dir.path().join("t.db");
        // One commit takes the log over the thread's threshold, below the sessions'
        // backstop; no commit follows, so only the thread can copy it back.
        let _c = append(&db, 2 * threshold);
        let pending = pending_frames(&db).expect("a WAL-index header");
        assert!(pending >= 2 * threshold && pending < BACKSTOP_FACTOR * threshold);
        wait_for(
            "the background checkpoint",
            || pending_frames(&db),
            |n| n == 0,
        );
        assert_eq!(
            store
                .setting("schema_probe")
                .expect("the database still reads"),
            None
        );
    }

    #[test]
    fn a_log_under_the_threshold_stays_in_the_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let _store = open(dir.path(), 10_000);
        let db = dir.path().join("t.db");
        let _c = append(&db, 40);
        let pending = pending_frames(&db).expect("a WAL-index header");
        assert!(pending >= 40);
        // Asserting that nothing happens: give the thread several of its polls to do it.
        std::thread::sleep(POLL * 4);
        assert_eq!(
            pending_frames(&db),
            Some(pending),
            "nothing checkpointed early"
        );
    }

    #[test]
    fn no_header_means_no_count() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("none.db");
        assert_eq!(pending_frames(&db), None);
        std::fs::write(dir.path().join("none.db-shm"), [0u8; 200]).expect("write");
        assert_eq!(
            pending_frames(&db),
            None,
            "an uninitialised header is not read"
        );
    }
}
