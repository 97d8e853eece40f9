//! The threads a session runs on.
//!
//! Handing a run to a rayon pool and waiting for it costs 7-14 µs (two thread wake-ups), more
//! than a whole run of a small model. So the calling thread itself joins a pool: the first
//! session run on a thread builds a thread-local pool with that session's thread count whose
//! worker 0 is the calling thread (`use_current_thread`), and every later session with the same
//! count runs there, inline, with the other workers helping in parallel kernels. A session with
//! another count, or a caller that already belongs to a rayon pool, gets a pool of its own and
//! pays the hand-off.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// How a session reaches its threads.
pub(crate) struct Threads {
    count: usize,
    /// The session's own pool, built the first time the caller's pool cannot serve it.
    own: OnceLock<Result<rayon::ThreadPool, String>>,
}

/// The calling thread's pool: `(threads, pool)`; `None` inside when it cannot have one.
type CallerPool = Option<(usize, Rc<rayon::ThreadPool>)>;

thread_local! {
    static CALLER_POOL: RefCell<Option<CallerPool>> = const { RefCell::new(None) };
}

impl Threads {
    pub fn new(count: usize) -> Threads {
        Threads {
            count: count.max(1),
            own: OnceLock::new(),
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Runs `f` with the session's threads available to rayon calls inside it.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R, String> {
        if let Some(pool) = self.caller_pool() {
            return Ok(run_hot(&pool, self.count, f));
        }
        let own = self.own.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(self.count)
                .thread_name(|i| format!("runnx-{i}"))
                .build()
                .map_err(|e| format!("cannot start {} threads: {e}", self.count))
        });
        match own {
            Ok(pool) => Ok(run_hot(pool, self.count, f)),
            Err(e) => Err(e.clone()),
        }
    }

    /// This thread's pool when it has `count` threads (building it on first use).
    fn caller_pool(&self) -> Option<Rc<rayon::ThreadPool>> {
        CALLER_POOL.with(|cell| {
            let mut slot = cell.borrow_mut();
            let entry = slot.get_or_insert_with(|| {
                let built = rayon::ThreadPoolBuilder::new()
                    .num_threads(self.count)
                    .use_current_thread()
                    .thread_name(|i| format!("runnx-{i}"))
                    .build()
                    .ok()?;
                Some((self.count, Rc::new(built)))
            });
            match entry {
                Some((n, pool)) if *n == self.count => Some(pool.clone()),
                _ => None,
            }
        })
    }
}

/// `pool.install(f)` with the pool's other workers kept awake for its duration.
///
/// A sleeping rayon worker takes 10-50 µs to wake, longer than many parallel sections of a small
/// model take, so a run of many short parallel ops ran slower on two threads than on one. Like
/// onnxruntime's spinning workers, each other worker runs a job that keeps looking for work
/// until the run ends.
fn run_hot<R: Send>(pool: &rayon::ThreadPool, threads: usize, f: impl FnOnce() -> R + Send) -> R {
    if threads < 2 {
        return pool.install(f);
    }
    pool.install(|| {
        let done = Arc::new(AtomicBool::new(false));
        let caller = rayon::current_thread_index();
        for _ in 1..threads {
            let done = done.clone();
            rayon::spawn(move || keep_busy(&done, caller));
        }
        let result = f();
        done.store(true, Ordering::Release);
        result
    })
}

/// Runs pending pool jobs until `done`. Returns at once on the thread that started the run,
/// which may pick this job up itself while it waits inside a join: spinning there until the
/// run ends would never end.
fn keep_busy(done: &AtomicBool, caller: Option<usize>) {
    if rayon::current_thread_index() == caller {
        return;
    }
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            std::hint::spin_loop();
        }
    }
}
