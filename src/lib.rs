//! `bitcask`: an embedded key-value store in the Bitcask design (a log-structured hash table).
//!
//! Writes append to one active data file; a concurrent in-memory hash map (the *keydir*) points
//! every key at its newest record; sealed data files are memory-mapped and read zero-copy; a
//! merge rewrites live records into new files and retires the old ones through epoch-based
//! reclamation. One [`Database`] handle is shared by any number of threads.
//!
//! ```
//! # fn main() -> bitcask::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let db = bitcask::Database::open(dir.path())?;
//! db.write(b"name:1", b"Peter")?;
//! assert_eq!(db.read(b"name:1")?, b"Peter");
//! assert_eq!(db.get(b"name:2")?.as_deref(), None);
//! db.remove(b"name:1")?;
//! assert!(matches!(db.read(b"name:1"), Err(bitcask::Error::KeyNotFound)));
//! db.close()?;
//! # Ok(())
//! # }
//! ```
//!
//! `docs/design.md` describes the write and read paths, recovery, merge and the concurrency
//! protocol; `docs/format.md` the bytes on disk.

mod background;
mod db;
mod engine;
mod error;
mod fileset;
mod fork;
pub mod format;
mod group_commit;
mod io;
mod keydir;
mod merge;
mod options;
mod recovery;
mod segment;
mod sync;
mod value;
mod writer;

pub use db::{Database, FileStats, Keys, Stats, new};
pub use error::{CorruptionKind, Error, ErrorResult, LockHolder, Result, Sharing};
pub use format::{MAX_KEY_LEN, MAX_VALUE_LEN};
pub use io::lock::recorded_lock_holder;
pub use options::{
    Config, DEFAULT_COMMIT_POLL, DEFAULT_DATA_FILE_LIMIT, MAX_COMMIT_POLL, MAX_DATA_FILE_LIMIT,
    MIN_BACKGROUND_INTERVAL, MergePolicy, Options, SyncPolicy,
};
pub use value::Value;

/// Switches for the loom models' broken twins (`--cfg loom` builds only).
#[cfg(loom)]
pub mod loom {
    pub use crate::sync::{ProtocolBreak, set_protocol_break};
}

/// The simulated file system for crash and fault-injection tests (cargo feature `sim`).
#[cfg(any(test, feature = "sim"))]
pub mod sim {
    pub use crate::format::record::forged_header;
    pub use crate::io::sim::{Fault, SimFs};

    /// Runs the merge the background thread would run now (the files [`crate::MergePolicy`]
    /// picks, if any file triggers it) on the calling thread, so that crash tests can cut the
    /// power at every step of a merge that leaves older files in place.
    pub fn merge_by_policy(db: &crate::Database) -> crate::Result<()> {
        db.merge_by_policy()
    }
}
