//! Whether this process is a child that `fork` created after a store was opened.
//!
//! A forked child inherits its parent's lock, files and maps, and a copy of the writer's state:
//! a write from the child would append at the parent's offset, through the shared map, over
//! records the parent acknowledged. So a handle refuses every call in a forked child
//! ([`Error::ForkedChild`]); dropping it there leaks it (`db.rs`).
//!
//! Comparing process ids on every call would cost a `getpid` system call each time (242 ns on
//! this project's VM, `perf bench syscall basic`, against about 460 ns for a whole unsynced
//! write). So the calls on the hot paths ([`Origin::check`]) read a fork count that a
//! `pthread_atfork` child handler keeps: one relaxed load of a static the parent never writes.
//! That sees children made by `fork()`, which runs the handlers. A child made without them (raw
//! `clone`, glibc's `_Fork`) is seen by [`Origin::in_forked_child`], which also compares
//! process ids, on the cold paths that would harm the parent: `close`, drop, `stats` and
//! `needs_merge`.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Forks made since this process started, counted in the child (so a parent's count stays 0).
static FORKS: AtomicU64 = AtomicU64::new(0);

/// Where registering the fork counter stands: [`UNREGISTERED`], [`REGISTERING`] (by one
/// thread), [`COUNTING`] or [`NOT_COUNTING`] (registration failed).
static REGISTRATION: AtomicU8 = AtomicU8::new(UNREGISTERED);
const UNREGISTERED: u8 = 0;
const REGISTERING: u8 = 1;
const COUNTING: u8 = 2;
const NOT_COUNTING: u8 = 3;

/// Where a store was opened: the process, and the fork count there if forks were counted.
#[derive(Debug)]
pub(crate) struct Origin {
    pid: u32,
    /// `None` while the counter is not registered: then only process ids tell.
    forks: Option<u64>,
}

impl Origin {
    /// This process, now.
    pub(crate) fn here() -> Self {
        let counting = count_forks();
        Origin {
            pid: std::process::id(),
            forks: counting.then(|| FORKS.load(Ordering::Relaxed)),
        }
    }

    /// Whether a `fork()` (at any depth) made this process after `self` was taken. Cheap;
    /// blind to children made without the atfork handlers.
    fn seen_fork(&self) -> bool {
        match self.forks {
            Some(forks) => FORKS.load(Ordering::Relaxed) != forks,
            None => std::process::id() != self.pid,
        }
    }

    /// Whether this is a process other than the one that took `self`: a `getpid` call.
    pub(crate) fn in_forked_child(&self) -> bool {
        self.seen_fork() || std::process::id() != self.pid
    }

    /// [`Error::ForkedChild`] in a child made by `fork()`; for the hot paths.
    pub(crate) fn check(&self) -> Result<()> {
        self.refuse_if(self.seen_fork())
    }

    /// [`Error::ForkedChild`] in any other process; for the cold paths.
    pub(crate) fn check_thoroughly(&self) -> Result<()> {
        self.refuse_if(self.in_forked_child())
    }

    fn refuse_if(&self, forked: bool) -> Result<()> {
        if forked {
            Err(Error::ForkedChild {
                opened_by: self.pid,
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(unix)]
extern "C" fn count_fork_in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// Registers the fork counter, once per process; whether forks are counted. Never waits: a
/// thread that finds another registering goes without the counter (process ids tell), so a child
/// forked while a thread of its parent registered cannot hang here, as it would on a `Once`.
fn count_forks() -> bool {
    let claimed = REGISTRATION.compare_exchange(
        UNREGISTERED,
        REGISTERING,
        Ordering::Acquire,
        Ordering::Acquire,
    );
    match claimed {
        Ok(_) => {
            let counting = register();
            let state = if counting { COUNTING } else { NOT_COUNTING };
            REGISTRATION.store(state, Ordering::Release);
            counting
        }
        Err(state) => state == COUNTING,
    }
}

#[cfg(unix)]
fn register() -> bool {
    // SAFETY: `pthread_atfork` only records the handler. The handler runs in the child right
    // after `fork`, where only async-signal-safe work is allowed; it does one lock-free atomic
    // add on a static, which is, and it cannot unwind. (This crate is not unloaded while the
    // process lives, so the handler's code stays mapped.)
    #[allow(unsafe_code)]
    let status = unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
    // It fails only without memory for the entry; process ids are compared then.
    status == 0
}

#[cfg(not(unix))]
fn register() -> bool {
    false
}
