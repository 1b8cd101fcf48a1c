//! Short statements of many requests run by one blocking thread at a time.
//!
//! [`Store::run`](super::Store::run) hands every piece of work to tokio's blocking pool:
//! one wake-up of a pool thread and one wake-up of the waiting task per call. For the two
//! short statements of every CWMP session (record the Inform and take the lock; release the
//! lock) those hand-offs cost more CPU than the statements themselves. [`Combiner`] queues
//! such work instead: the first caller that finds no drainer running starts one on the
//! blocking pool, and the drainer runs every job queued until the queue is empty, so under
//! load one hand-off carries many sessions' statements. Each job still takes its own pooled
//! connection and commits on its own: nothing about transactions or locking changes.
//!
//! A drainer is started on the caller's runtime, so a store shared by several runtimes
//! (tests, the shutdown path) never waits on a runtime that is gone.
//!
//! SQLite only: there a statement is a function call and writers run one at a time anyway.
//! On PostgreSQL every statement is a network round trip, and running them one after
//! another on one thread made the sessions wait on each other.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

use super::Store;

type Job = Box<dyn FnOnce(&Store) + Send>;

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// A drainer runs (there is at most one).
    draining: bool,
}

/// The queue of short statements and its drainer.
#[derive(Default)]
pub(super) struct Combiner {
    queue: Mutex<Queue>,
}

impl Combiner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        match self.queue.lock() {
            Ok(q) => q,
            // A job never runs under this lock, so a poisoned queue is still consistent.
            Err(p) => p.into_inner(),
        }
    }

    /// Queue `f`; start a drainer when none runs.
    pub(super) async fn run<T, F>(this: &Arc<Combiner>, store: &Store, f: F) -> Result<T>
    where
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |s: &Store| {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(s)));
            // The caller may have gone away (its request was dropped): nothing to tell.
            let _ = tx.send(out);
        });
        let start = {
            let mut q = this.lock();
            q.jobs.push(job);
            let start = !q.draining;
            q.draining = true;
            start
        };
        if start {
            let slot = Drainer {
                combiner: this.clone(),
                ended: false,
            };
            let s = store.clone();
            tokio::task::spawn_blocking(move || slot.drain(&s));
        }
        match rx.await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::internal("database task panicked")),
            Err(_) => Err(Error::internal("database task was dropped")),
        }
    }
}

/// The running drainer's claim on [`Queue::draining`]. Given back when the queue is empty,
/// or when the drainer never ran (its runtime shut down first): the next caller then starts
/// another one for the jobs left.
struct Drainer {
    combiner: Arc<Combiner>,
    ended: bool,
}

impl Drainer {
    /// Run queued jobs until the queue is empty.
    fn drain(mut self, store: &Store) {
        loop {
            let batch = {
                let mut q = self.combiner.lock();
                if q.jobs.is_empty() {
                    // Under the lock: a job queued after this starts a new drainer.
                    q.draining = false;
                    self.ended = true;
                    return;
                }
                std::mem::take(&mut q.jobs)
            };
            for job in batch {
                job(store);
            }
        }
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        if !self.ended {
            self.combiner.lock().draining = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = crate::config::DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("t.db").display()),
            ..Default::default()
        };
        (dir, Store::open(&cfg).expect("store"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_queued_job_runs_once_and_answers_its_caller() {
        let (_dir, store) = store();
        let mut handles = Vec::new();
        for i in 0..200u64 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                s.run_short(move |st| {
                    st.ping()?;
                    Ok(i * 2)
                })
                .await
            }));
        }
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.await.expect("task").expect("job"), i as u64 * 2);
        }
        // The last caller may hear its answer before the drainer finds the queue empty and
        // gives its place back: wait for that, boundedly.
        let combiner = store.combiner.as_ref().expect("SQLite combines");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while combiner.lock().draining && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let q = combiner.lock();
        assert!(q.jobs.is_empty());
        assert!(!q.draining, "the drainer ended");
    }

    #[test]
    fn a_drainer_that_never_ran_gives_its_place_back() {
        let c = Arc::new(Combiner::default());
        c.lock().draining = true;
        drop(Drainer {
            combiner: c.clone(),
            ended: false,
        });
        assert!(!c.lock().draining);
    }

    #[tokio::test]
    async fn a_panicking_job_fails_only_its_caller() {
        let (_dir, store) = store();
        let bad = store.run_short(|_| -> Result<()> { panic!("boom") }).await;
        assert!(bad.is_err());
        let good = store.run_short(|st| st.ping().map(|_| 7)).await;
        assert_eq!(good.expect("second job"), 7);
    }
}
