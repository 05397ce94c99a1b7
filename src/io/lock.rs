//! The exclusive directory lock: one open handle per store, across threads and processes.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// Holds the `LOCK` file's exclusive advisory lock (flock) until dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock without waiting; a held lock is [`Error::Locked`] naming `dir`.
    pub(crate) fn acquire(dir: &Path, lock_path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path)
            .context("opening lock file", lock_path)?;
        // flock locks belong to the open file description, so a second open in this same process
        // conflicts too.
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(Error::Locked(dir.to_path_buf())),
            Err(TryLockError::Error(e)) => Err(e).context("locking", lock_path),
        }
    }
}
