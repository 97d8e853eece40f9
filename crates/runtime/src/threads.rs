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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How a session reaches its threads.
pub(crate) struct Threads {
    count: usize,
    /// The session's own pool, built the first time the caller's pool cannot serve it.
    own: OnceLock<Result<HotPool, String>>,
}

/// The calling thread's pool: `(threads, pool)`; `None` inside when it cannot have one.
type CallerPool = Option<(usize, Rc<HotPool>)>;

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
            return Ok(pool.run(self.count, f));
        }
        let own = self.own.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(self.count)
                .thread_name(|i| format!("runnx-{i}"))
                .build()
                .map(HotPool::new)
                .map_err(|e| format!("cannot start {} threads: {e}", self.count))
        });
        match own {
            Ok(pool) => Ok(pool.run(self.count, f)),
            Err(e) => Err(e.clone()),
        }
    }

    /// This thread's pool when it has `count` threads (building it on first use).
    fn caller_pool(&self) -> Option<Rc<HotPool>> {
        CALLER_POOL.with(|cell| {
            let mut slot = cell.borrow_mut();
            let entry = slot.get_or_insert_with(|| {
                let built = rayon::ThreadPoolBuilder::new()
                    .num_threads(self.count)
                    .use_current_thread()
                    .thread_name(|i| format!("runnx-{i}"))
                    .build()
                    .ok()?;
                Some((self.count, Rc::new(HotPool::new(built))))
            });
            match entry {
                Some((n, pool)) if *n == self.count => Some(pool.clone()),
                _ => None,
            }
        })
    }
}

/// How long a spinning worker goes on looking for work after it last found some, so that the
/// next parallel op, or the next run, finds it awake. Back-to-back runs of a small model (a
/// serving loop, a benchmark) are microseconds apart, while a sleeping rayon worker takes
/// 10-50 µs to wake. onnxruntime's workers spin between runs the same way.
const LINGER: Duration = Duration::from_micros(200);

/// A rayon pool whose other workers are kept spinning while runs come.
struct HotPool {
    pool: rayon::ThreadPool,
    /// Workers spinning now (each in one `keep_busy` job).
    spinners: Arc<AtomicUsize>,
}

impl HotPool {
    fn new(pool: rayon::ThreadPool) -> HotPool {
        HotPool {
            pool,
            spinners: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// `pool.install(f)` with the pool's other workers awake.
    ///
    /// A sleeping rayon worker takes 10-50 µs to wake, longer than many parallel sections of a
    /// small model take, so a run of many short parallel ops ran slower on two threads than on
    /// one. So each other worker runs a job that keeps looking for work until it has found none
    /// for `LINGER`; a run tops them up when some have stopped.
    fn run<R: Send>(&self, threads: usize, f: impl FnOnce() -> R + Send) -> R {
        if threads < 2 {
            return self.pool.install(f);
        }
        self.pool.install(|| {
            let caller = rayon::current_thread_index();
            let mut count = self.spinners.load(Ordering::SeqCst);
            while count + 1 < threads {
                match self.spinners.compare_exchange(
                    count,
                    count + 1,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => {
                        let spinners = self.spinners.clone();
                        rayon::spawn(move || {
                            keep_busy(caller);
                            spinners.fetch_sub(1, Ordering::SeqCst);
                        });
                        count += 1;
                    }
                    Err(now) => count = now,
                }
            }
            f()
        })
    }
}

/// Runs pending pool jobs until none has come for `LINGER`.
///
/// It does not wait for the run to end: a worker may pick this job up while it waits inside a
/// join of the run (the thread that started the run most of all, which returns at once), and
/// spinning there until the run ends would never end. Stopping when no work comes bounds that
/// case to one `LINGER`.
fn keep_busy(caller: Option<usize>) {
    if rayon::current_thread_index() == caller {
        return;
    }
    let mut last_work = Instant::now();
    loop {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            last_work = Instant::now();
        } else if last_work.elapsed() > LINGER {
            return;
        } else {
            std::hint::spin_loop();
        }
    }
}
