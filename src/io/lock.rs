//! The exclusive directory lock: one open handle per store, across threads and processes.

use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::io::vfs::{LockGuard, Vfs};

/// Holds the `LOCK` file's exclusive lock (flock on the real file system) until dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    _guard: LockGuard,
}

impl DirLock {
    /// Takes the lock without waiting; a held lock is [`Error::Locked`] naming `dir`.
    pub(crate) fn acquire(fs: &dyn Vfs, dir: &Path, lock_path: &Path) -> Result<Self> {
        match fs.lock(lock_path) {
            Ok(guard) => Ok(DirLock { _guard: guard }),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Err(Error::Locked(dir.to_path_buf()))
            }
            Err(e) => Err(e).context("locking", lock_path),
        }
    }
}
