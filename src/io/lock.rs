//! The exclusive directory lock: one open handle per store, across threads and processes.
//!
//! The real file system's lock (`io::vfs`) also writes the holder's process id into the `LOCK`
//! file and empties it again before it unlocks, so that a refused open can say who holds the
//! store. The id is a courtesy for the error message, never trusted for exclusion: the flock
//! alone decides.

use std::path::Path;

use crate::error::{Error, IoContext, LockHolder, Result};
use crate::io::vfs::{LockGuard, Vfs};

/// Holds the `LOCK` file's exclusive lock (flock on the real file system) until dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    _guard: LockGuard,
}

impl DirLock {
    /// Takes the lock without waiting; a held lock is [`Error::Locked`] naming `dir` and, where
    /// the `LOCK` file records a live process, the holder.
    pub(crate) fn acquire(fs: &dyn Vfs, dir: &Path, lock_path: &Path) -> Result<Self> {
        match fs.lock(lock_path) {
            Ok(guard) => Ok(DirLock { _guard: guard }),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(Error::Locked {
                path: dir.to_path_buf(),
                holder: recorded_holder(fs, lock_path),
            }),
            Err(e) => Err(e).context("locking", lock_path),
        }
    }
}

/// Who the `LOCK` file says holds the store, if it names a process that is alive.
fn recorded_holder(fs: &dyn Vfs, lock_path: &Path) -> LockHolder {
    let recorded = fs.read_all(lock_path).ok().and_then(|bytes| {
        let text = String::from_utf8(bytes).ok()?;
        text.trim_end().parse::<u32>().ok()
    });
    match recorded {
        Some(pid) if pid == std::process::id() => LockHolder::ThisProcess,
        Some(pid) if process_is_alive(pid) => LockHolder::Process(pid),
        _ => LockHolder::Unknown,
    }
}

/// Whether a process with this id exists (a holder that crashed leaves its id behind).
#[cfg(target_os = "linux")]
fn process_is_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        // It exists, and belongs to another user.
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// Elsewhere the id cannot be checked, so it is not named.
#[cfg(not(target_os = "linux"))]
fn process_is_alive(_pid: u32) -> bool {
    false
}
