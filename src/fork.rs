//! Whether this process is a child that `fork` created after a store was opened.
//!
//! A forked child inherits its parent's lock, files and maps, and a copy of the writer's state:
//! a write from the child would append at the parent's offset, through the shared map, over
//! records the parent acknowledged. So a handle refuses every call in a forked child
//! ([`Error::ForkedChild`]); dropping it there leaks it (`db.rs`).
//!
//! Comparing process ids on every call would cost a `getpid` system call each time (242 ns on
//! this project's VM, `perf bench syscall basic`, against about 460 ns for a whole unsynced
//! write). Instead a `pthread_atfork` child handler counts the forks in a static, and a handle
//! compares the count it saw at open with a plain load.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Forks made since this process started, counted in the child (so a parent's count stays 0).
static FORKS: AtomicU64 = AtomicU64::new(0);
/// Whether the handler that counts forks is registered; if not, handles compare process ids.
static COUNTING: AtomicBool = AtomicBool::new(false);

/// Where a store was opened: the process and the fork count there.
#[derive(Debug)]
pub(crate) struct Origin {
    pid: u32,
    forks: u64,
}

impl Origin {
    /// This process, now.
    pub(crate) fn here() -> Self {
        count_forks();
        Origin {
            pid: std::process::id(),
            forks: FORKS.load(Ordering::Relaxed),
        }
    }

    /// Whether this is a child forked (at any depth) after `self` was taken.
    pub(crate) fn in_forked_child(&self) -> bool {
        if COUNTING.load(Ordering::Relaxed) {
            FORKS.load(Ordering::Relaxed) != self.forks
        } else {
            std::process::id() != self.pid
        }
    }

    /// [`Error::ForkedChild`] in a forked child.
    pub(crate) fn check(&self) -> Result<()> {
        if self.in_forked_child() {
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

/// Registers the fork counter, once per process.
fn count_forks() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        #[cfg(unix)]
        {
            // SAFETY: `pthread_atfork` only records the handler. The handler runs in the child
            // right after `fork`, where only async-signal-safe work is allowed; it does one
            // atomic add on a static, which is.
            #[allow(unsafe_code)]
            let status = unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
            // It fails only without memory for the entry; process ids are compared then.
            COUNTING.store(status == 0, Ordering::Relaxed);
        }
    });
}
