//! How a store is opened: the seed's two-field [`Options`], and [`Config`], the builder for
//! everything else.

use std::path::PathBuf;

use crate::{Database, Result};

/// Default size at which the active data file is sealed and a new one started.
pub const DEFAULT_DATA_FILE_LIMIT: u64 = 256 * 1024 * 1024;

/// The original README's options: a directory and a data file size limit.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory holding the store; created if missing.
    pub base_dir: PathBuf,
    /// Size in bytes at which the active data file is sealed and a new one started.
    pub data_file_limit: u64,
}

/// When writes reach stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// The OS writes data back when it chooses. A write that returned survives a crash of the
    /// process (it is in the page cache), but not a power loss unless [`Database::sync`] or
    /// [`Database::close`] returned after it.
    #[default]
    Never,
    /// Every write and remove is fsynced (fdatasync) before it returns: it survives a process
    /// crash and a power loss.
    Always,
}

/// Settings for opening a store; `Config::new(dir).open()` or [`Database::open`].
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) dir: PathBuf,
    pub(crate) data_file_limit: u64,
    pub(crate) sync: SyncPolicy,
}

impl Config {
    /// Defaults: 256 MiB data files, [`SyncPolicy::Never`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Config {
            dir: dir.into(),
            data_file_limit: DEFAULT_DATA_FILE_LIMIT,
            sync: SyncPolicy::default(),
        }
    }

    /// Seals the active data file once the next record would take it past `bytes`. A record
    /// larger than the limit gets a file of its own.
    pub fn data_file_limit(mut self, bytes: u64) -> Self {
        self.data_file_limit = bytes;
        self
    }

    /// When writes are fsynced; see [`SyncPolicy`].
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync = policy;
        self
    }

    /// Opens (or creates) the store.
    pub fn open(self) -> Result<Database> {
        Database::open_with(self)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.data_file_limit == 0 {
            return Err(crate::Error::InvalidConfig(
                "data_file_limit must be at least 1 byte".into(),
            ));
        }
        Ok(())
    }
}

impl From<Options> for Config {
    fn from(options: Options) -> Self {
        Config::new(options.base_dir).data_file_limit(options.data_file_limit)
    }
}
