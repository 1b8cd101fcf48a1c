//! SQLite's WAL checkpoints, run by a background thread instead of by the sessions.
//!
//! In WAL mode every commit appends pages to the `-wal` file, and a checkpoint copies them
//! back into the database file. SQLite's own rule (`PRAGMA wal_autocheckpoint`) has the
//! commit that finds the log over the limit run the checkpoint before it returns: that
//! session waits for thousands of page copies and two `fsync`s, and the 99th percentile of
//! every request that waited behind it grows with it.
//!
//! Here a thread of its own (`ferroacs-wal-ckpt`, at a lower CPU priority than the request
//! threads) looks every 50 ms at how many pages the log holds beyond the last checkpoint,
//! and runs a `PASSIVE` checkpoint, which never waits for a lock and lets writers go on
//! appending, once they reach `database.sqlite_wal_autocheckpoint`. It reads that count in
//! the WAL-index header (`mxFrame` at byte 16, `nBackfill` at byte 96, in the machine's byte
//! order: <https://sqlite.org/walformat.html>) through the shared memory its own connection
//! has mapped, as SQLite's own readers do. The sessions' connections keep SQLite's rule as
//! a backstop at [`BACKSTOP_FACTOR`] times the limit, for a server so busy that the thread
//! falls behind. Where the header cannot be read, the thread checkpoints every
//! [`BLIND_INTERVAL`] instead.
//!
//! Only SQLite opens the database's files. Opening one of them another way and closing
//! that descriptor would release every POSIX lock this process holds on the file, SQLite's
//! included (a property of `fcntl` locks), and another process could then take the shared
//! memory for unused and truncate it under this one.

use std::ffi::{c_int, c_void, CStr, CString};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use libsqlite3_sys as ffi;

/// The sessions' own checkpoint rule fires at this many times the background thread's.
pub(super) const BACKSTOP_FACTOR: u32 = 4;

/// How often the thread looks at the log.
const POLL: Duration = Duration::from_millis(50);

/// Without a readable WAL-index header: a checkpoint this often.
const BLIND_INTERVAL: Duration = Duration::from_secs(1);

/// The WAL-index format this reads (`iVersion` of its header).
const WAL_INDEX_VERSION: u32 = 3_007_000;

/// The size of a WAL-index region (SQLite's `WALINDEX_PGSZ`).
const WAL_INDEX_REGION: c_int = 32_768;

/// Kept by every clone of the store (in an `Arc`); the thread ends once the last one is
/// dropped.
pub(super) struct Checkpointer;

/// Start the thread for the database at `db`, checkpointing at `threshold` pages.
pub(super) fn start(db: &str, threshold: u32, busy_timeout_ms: u64) -> Arc<Checkpointer> {
    let alive = Arc::new(Checkpointer);
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
    alive
}

/// Whether to checkpoint now: `pending` pages in the log beyond the last checkpoint (when
/// the header could be read), `since` the last checkpoint.
fn due(pending: Option<u32>, since: Duration, threshold: u32) -> bool {
    match pending {
        Some(n) => n >= threshold,
        None => since >= BLIND_INTERVAL,
    }
}

fn run(db: &str, threshold: u32, busy_timeout_ms: u64, alive: Weak<Checkpointer>) {
    lower_priority();
    let mut conn: Option<RawConn> = None;
    let mut last = Instant::now();
    let mut warned = false;
    while alive.strong_count() > 0 {
        std::thread::sleep(POLL);
        if conn.is_none() {
            match RawConn::open(db, busy_timeout_ms) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    warn_once(&mut warned, &e);
                    continue;
                }
            }
        }
        let Some(c) = conn.as_ref() else {
            continue;
        };
        if !due(c.pending_frames(), last.elapsed(), threshold) {
            continue;
        }
        last = Instant::now();
        match c.checkpoint() {
            Ok(Some((log, done))) => {
                warned = false;
                tracing::trace!(log, done, "WAL checkpoint");
            }
            // Another connection is checkpointing (a commit's backstop, another process).
            Ok(None) => {}
            Err(e) => {
                // Opened again at the next attempt.
                conn = None;
                warn_once(&mut warned, &e);
            }
        }
    }
}

fn warn_once(warned: &mut bool, e: &str) {
    if !*warned {
        *warned = true;
        tracing::warn!(
            error = %e,
            "SQLite checkpoint failed; will retry (commits checkpoint the log themselves \
             once it is {BACKSTOP_FACTOR} times database.sqlite_wal_autocheckpoint)"
        );
    }
}

/// The thread's own connection, opened through SQLite's C API: the WAL-index header is
/// reached through the file object SQLite keeps for it, which diesel does not expose.
struct RawConn(*mut ffi::sqlite3);

// SAFETY: the connection is used by the one thread that owns it, never shared; SQLite's
// default (serialized) threading mode allows moving it between threads.
unsafe impl Send for RawConn {}

impl RawConn {
    fn open(path: &str, busy_timeout_ms: u64) -> Result<RawConn, String> {
        let name = CString::new(path).map_err(|_| "database path holds a NUL byte".to_string())?;
        let mut db = std::ptr::null_mut();
        // SAFETY: a NUL-terminated path and a place for the handle; no VFS name.
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                name.as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READWRITE,
                std::ptr::null(),
            )
        };
        // A handle is returned even on failure (to read the message) and must be closed.
        let conn = RawConn(db);
        if rc != ffi::SQLITE_OK {
            return Err(conn.message(rc));
        }
        // A read maps the WAL-index, whose header is read below.
        conn.exec(&format!(
            "PRAGMA busy_timeout = {busy_timeout_ms}; SELECT count(*) FROM sqlite_schema;"
        ))?;
        Ok(conn)
    }

    fn message(&self, rc: c_int) -> String {
        if self.0.is_null() {
            return format!("SQLite error {rc}");
        }
        // SAFETY: a live handle; SQLite returns a NUL-terminated message it owns.
        unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.0)) }
            .to_string_lossy()
            .into_owned()
    }

    fn exec(&self, sql: &str) -> Result<(), String> {
        let sql = CString::new(sql).map_err(|_| "statement holds a NUL byte".to_string())?;
        // SAFETY: a live handle and NUL-terminated SQL; no callback, no error string.
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.0,
                sql.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.message(rc))
        }
    }

    /// Pages of the log not yet copied into the database, from the WAL-index header;
    /// `None` when it is not mapped or not the documented layout.
    fn pending_frames(&self) -> Option<u32> {
        let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
        // SAFETY: a live handle; SQLITE_FCNTL_FILE_POINTER writes the main database's
        // file object (owned by SQLite, alive as long as the connection) into `file`.
        let rc = unsafe {
            ffi::sqlite3_file_control(
                self.0,
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_FILE_POINTER,
                (&mut file as *mut *mut ffi::sqlite3_file).cast::<c_void>(),
            )
        };
        if rc != ffi::SQLITE_OK || file.is_null() {
            return None;
        }
        // SAFETY: `file` is SQLite's live file object; its methods table is static.
        let methods = unsafe { (*file).pMethods };
        if methods.is_null() {
            return None;
        }
        // SAFETY: as above; version 2 and later tables have the shared-memory methods.
        let map = unsafe { ((*methods).iVersion >= 2).then_some((*methods).xShmMap) }??;
        let mut region: *mut c_void = std::ptr::null_mut();
        // SAFETY: region 0 of the WAL-index, without extending it: SQLite hands back the
        // mapping this connection already has (or none), which stays mapped until the
        // connection closes.
        let rc = unsafe { map(file, 0, WAL_INDEX_REGION, 0, &mut region) };
        if rc != ffi::SQLITE_OK || region.is_null() {
            return None;
        }
        let header = region.cast::<u32>().cast_const();
        // SAFETY: the region is WAL_INDEX_REGION bytes, aligned for u32, and shared with
        // other connections that write it: read with volatile loads; a value torn by a
        // concurrent write only delays or advances one checkpoint.
        let (version, max_frame, backfilled) = unsafe {
            (
                std::ptr::read_volatile(header),
                std::ptr::read_volatile(header.add(4)),
                std::ptr::read_volatile(header.add(24)),
            )
        };
        (version == WAL_INDEX_VERSION).then(|| max_frame.saturating_sub(backfilled))
    }

    /// One `PASSIVE` checkpoint: copies what no reader still needs, waits for nobody.
    /// Returns the pages in the log and those of them now in the database, or `None` when
    /// another connection is checkpointing.
    fn checkpoint(&self) -> Result<Option<(c_int, c_int)>, String> {
        let (mut log, mut done) = (0, 0);
        // SAFETY: a live handle, the main database, places for the two counts.
        let rc = unsafe {
            ffi::sqlite3_wal_checkpoint_v2(
                self.0,
                c"main".as_ptr(),
                ffi::SQLITE_CHECKPOINT_PASSIVE,
                &mut log,
                &mut done,
            )
        };
        match rc {
            ffi::SQLITE_OK => Ok(Some((log, done))),
            ffi::SQLITE_BUSY => Ok(None),
            _ => Err(self.message(rc)),
        }
    }
}

impl Drop for RawConn {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and used by nothing else after this; closing a null
        // handle is a no-op.
        unsafe {
            ffi::sqlite3_close(self.0);
        }
    }
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
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use std::path::{Path, PathBuf};

    /// A store checkpointing at `threshold` in a fresh directory, its database's path, and
    /// a connection of the thread's kind to read its log with.
    fn setup(threshold: u32) -> (tempfile::TempDir, Store, PathBuf, RawConn) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("t.db");
        let cfg = crate::config::DatabaseConfig {
            url: format!("sqlite://{}", db.display()),
            sqlite_wal_autocheckpoint: threshold,
            ..Default::default()
        };
        let store = Store::open(&cfg).expect("store");
        let probe = RawConn::open(&db.to_string_lossy(), 1_000).expect("raw connection");
        (dir, store, db, probe)
    }

    /// One commit that appends `pages` pages or more to the log (rows of 4,000 bytes, a
    /// page each), on a connection of its own whose own rule (SQLite's default, 1,000
    /// pages) does not fire at these sizes.
    fn append(db: &Path, pages: u32) -> SqliteConnection {
        let mut c = SqliteConnection::establish(&db.to_string_lossy()).expect("connection");
        c.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS ckpt_test (b BLOB); \
             INSERT INTO ckpt_test SELECT randomblob(4000) FROM \
             (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {pages}) \
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
    fn the_rule() {
        assert!(due(Some(2_000), Duration::ZERO, 2_000));
        assert!(
            !due(Some(1_999), Duration::from_secs(60), 2_000),
            "pages, not time"
        );
        assert!(!due(None, Duration::from_millis(900), 2_000));
        assert!(due(None, BLIND_INTERVAL, 2_000), "blind: by time");
    }

    #[test]
    fn the_header_counts_the_pages_a_checkpoint_copies() {
        // Far above what the test writes: neither the thread nor a commit checkpoints.
        let (_dir, _store, db, probe) = setup(1_000_000);
        let before = probe.pending_frames().expect("a WAL-index header");
        let mut c = append(&db, 40);
        let after = probe.pending_frames().expect("a WAL-index header");
        assert!(after >= before + 40, "{before} -> {after}");
        // What SQLite itself reports for the same log.
        #[derive(QueryableByName)]
        struct Outcome {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            log: i32,
            #[diesel(sql_type = diesel::sql_types::Integer)]
            checkpointed: i32,
        }
        let o: Outcome = diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)")
            .get_result(&mut c)
            .expect("checkpoint");
        assert_eq!(o.log, o.checkpointed, "all of it copied");
        assert_eq!(
            o.log as u32, after,
            "the header's count is SQLite's log size"
        );
        assert_eq!(probe.pending_frames(), Some(0));
    }

    #[test]
    fn the_thread_checkpoints_what_no_commit_would() {
        let threshold = 30;
        let (_dir, _store, db, probe) = setup(threshold);
        // One commit takes the log over the thread's threshold and below the sessions'
        // backstop; no commit follows, so only the thread can copy it back.
        let _c = append(&db, 2 * threshold);
        // The log file keeps its size after a checkpoint (it is reused, not truncated), so
        // this holds whether or not the thread has copied it yet: there was work to do.
        let mut wal = db.clone().into_os_string();
        wal.push("-wal");
        let wal_bytes = std::fs::metadata(&wal).expect("the log file").len();
        assert!(
            wal_bytes >= u64::from(2 * threshold) * (24 + 4096),
            "{wal_bytes} bytes of log"
        );
        wait_for(
            "the background checkpoint",
            || probe.pending_frames(),
            |n| n == 0,
        );
    }

    #[test]
    fn a_log_under_the_threshold_stays_in_the_log() {
        let (_dir, _store, db, probe) = setup(10_000);
        let _c = append(&db, 40);
        let pending = probe.pending_frames().expect("a WAL-index header");
        assert!(pending >= 40);
        // Asserting that nothing happens: give the thread several of its looks to do it.
        std::thread::sleep(POLL * 4);
        assert_eq!(
            probe.pending_frames(),
            Some(pending),
            "nothing copied early"
        );
    }

    #[test]
    fn a_database_that_cannot_be_opened_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("no-such-dir").join("t.db");
        let e = RawConn::open(&missing.to_string_lossy(), 1_000)
            .err()
            .expect("no database there");
        assert!(e.contains("unable to open"), "{e}");
    }
}
