//! The background workers of one open store: the merge thread (checks fragmentation when woken
//! by a rotation or by its timer, and merges the files that qualify; after failed merges it
//! backs off, [`failure_backoff`]) and, under `SyncPolicy::Interval`, the flush thread. Both
//! stop when the store closes.

use std::thread::JoinHandle;
use std::time::Duration;

use crate::engine::Engine;
use crate::merge;
use crate::options::SyncPolicy;
use crate::sync::{Arc, Condvar, Mutex, Ordering};

/// Wakes the workers: `poke` asks the merge thread to look now, `stop` ends both.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    state: Mutex<SignalState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct SignalState {
    stopped: bool,
    poked: bool,
}

impl Signal {
    pub(crate) fn poke(&self) {
        self.state.lock().poked = true;
        self.changed.notify_all();
    }

    pub(crate) fn stop(&self) {
        self.state.lock().stopped = true;
        self.changed.notify_all();
    }

    /// Waits up to `timeout` for a poke; returns false once stopped.
    fn wait(&self, timeout: Duration) -> bool {
        let mut state = self.state.lock();
        if !state.stopped && !state.poked {
            self.changed.wait_for(&mut state, timeout);
        }
        state.poked = false;
        !state.stopped
    }

    /// Waits for `timeout` ignoring pokes (until stopped, if the deadline is past what `Instant`
    /// can hold); returns false once stopped.
    fn wait_timer(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now().checked_add(timeout);
        let mut state = self.state.lock();
        while !state.stopped {
            match deadline {
                Some(deadline) if std::time::Instant::now() >= deadline => break,
                Some(deadline) => {
                    self.changed.wait_until(&mut state, deadline);
                }
                None => self.changed.wait(&mut state),
            }
        }
        !state.stopped
    }
}

/// The threads started for one store.
#[derive(Debug, Default)]
pub(crate) struct Workers {
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Workers {
    /// Starts the workers the configuration asks for. If one cannot be started, those already
    /// running are stopped again, so none keeps the engine (and its directory lock) alive.
    pub(crate) fn start(engine: &Arc<Engine>) -> std::io::Result<Workers> {
        let workers = Workers::default();
        if let Err(e) = workers.spawn_all(engine) {
            workers.stop(engine);
            return Err(e);
        }
        Ok(workers)
    }

    fn spawn_all(&self, engine: &Arc<Engine>) -> std::io::Result<()> {
        if engine.config.background_merge {
            self.spawn("bitcask-merge", engine, merge_loop)?;
        }
        if let SyncPolicy::Interval(every) = engine.config.sync {
            self.spawn("bitcask-flush", engine, move |engine| {
                flush_loop(engine, every)
            })?;
        }
        Ok(())
    }

    fn spawn(
        &self,
        name: &str,
        engine: &Arc<Engine>,
        work: impl FnOnce(&Engine) + Send + 'static,
    ) -> std::io::Result<()> {
        let engine = Arc::clone(engine);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || work(&engine))?;
        self.threads.lock().push(thread);
        Ok(())
    }

    /// Stops the workers and waits for them (a running merge abandons its work safely).
    pub(crate) fn stop(&self, engine: &Engine) {
        engine.background.stop();
        for thread in self.threads.lock().drain(..) {
            // A worker that panicked has nothing left to clean up; its panic was printed.
            let _ = thread.join();
        }
    }
}

/// Merges in a row allowed before waiting again: writes that land during a merge can leave new
/// fragmentation without sealing a file (no poke), so the thread looks again right away; the cap
/// keeps a merge that cannot reduce fragmentation from spinning.
const MERGES_PER_WAKEUP: usize = 8;

/// The longest the merge thread waits after failed merges (see [`failure_backoff`]).
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(600);

fn merge_loop(engine: &Engine) {
    let check_interval = engine.config.merge_policy.check_interval;
    let mut failures_in_a_row = 0;
    loop {
        let running = match failures_in_a_row {
            0 => engine.background.wait(check_interval),
            failures => engine
                .background
                .wait_timer(failure_backoff(check_interval, failures)),
        };
        if !running {
            break;
        }
        for _ in 0..MERGES_PER_WAKEUP {
            if engine.closing.load(Ordering::Relaxed) || !merge::needs_merge(engine) {
                // Nothing to merge any more: the next merge needed starts from a clean slate.
                failures_in_a_row = 0;
                break;
            }
            // The outcome (including errors) is recorded in the merge figures of `stats()`. A
            // panic (a bug) ends this thread, but not silently: the merge records it there
            // first, and refuses merges until reopen (`merge::refusing_after_panic`).
            if merge::merge_by_policy(engine).is_err() {
                failures_in_a_row += 1;
                break;
            }
            failures_in_a_row = 0;
        }
    }
}

/// How long to wait, seals ignored, after `failures` failed merges in a row (instead of the check
/// interval): the check interval doubled for each failure after the first, at most [`MAX_FAILURE_BACKOFF`]. A merge that
/// fails (a full disk, a damaged record) would fail again, and each attempt writes outputs up to
/// the failure: on a full disk, the space the writer needs.
fn failure_backoff(check_interval: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    check_interval
        .saturating_mul(1 << doublings)
        .min(MAX_FAILURE_BACKOFF.max(check_interval))
}

fn flush_loop(engine: &Engine, every: Duration) {
    while engine.background.wait_timer(every) {
        // A failed sync poisons the writer, and every later write reports it.
        let _ = engine.sync();
    }
    // Once more when stopped: a handle dropped in a panic skips the sync of `close`, and the
    // writes of the last interval are still owed one.
    let _ = engine.sync();
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_failure_backoff_doubles_up_to_its_cap_and_never_undercuts_the_interval() {
        let second = Duration::from_secs(1);
        let waits: Vec<_> = (1..=4).map(|n| failure_backoff(second, n)).collect();
        assert_eq!(waits, [1, 2, 4, 8].map(Duration::from_secs));
        assert_eq!(failure_backoff(second, 11), MAX_FAILURE_BACKOFF);
        assert_eq!(failure_backoff(second, u32::MAX), MAX_FAILURE_BACKOFF);
        let hour = Duration::from_secs(3600);
        assert_eq!(failure_backoff(hour, 3), hour);
    }
}
