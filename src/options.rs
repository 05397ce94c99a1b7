//! How a store is opened: the seed's two-field [`Options`], and [`Config`], the builder for
//! everything else.

use std::path::PathBuf;
use std::time::Duration;

use crate::io::vfs::{StdFs, Vfs};
use crate::sync::Arc;
use crate::{Database, Result};

/// Default size at which the active data file is sealed and a new one started.
pub const DEFAULT_DATA_FILE_LIMIT: u64 = 256 * 1024 * 1024;

/// The largest data file limit: 4 GiB. The keydir holds 32-bit record offsets (4 bytes a key
/// less than 64-bit ones), and every record starts below the limit.
pub const MAX_DATA_FILE_LIMIT: u64 = 1 << 32;

/// The original README's options: a directory and a data file size limit.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory holding the store; created if missing.
    pub base_dir: PathBuf,
    /// Size in bytes at which the active data file is sealed and a new one started; at most
    /// [`MAX_DATA_FILE_LIMIT`] (4 GiB).
    pub data_file_limit: u64,
}

/// When writes reach stable storage. Under every policy a write that returned survives a crash
/// of the process (it is in the OS page cache); the policies differ in what survives a power
/// loss or kernel crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// The OS writes data back when it chooses: after a power loss, only writes that returned
    /// before a [`Database::sync`] or [`Database::close`] that returned are guaranteed.
    #[default]
    Never,
    /// Every write and remove is fsynced (fdatasync) before it returns, so it survives a power
    /// loss as soon as it returns. Concurrent writers share fsyncs (group commit). Another
    /// thread may read a value a moment before its write returns, that is before it is durable.
    Always,
    /// A background thread calls [`Database::sync`], waiting this long after each sync finishes:
    /// after a power loss, writes that returned more than one interval plus a few fsyncs
    /// earlier survive (a write that just missed a sync waits for it, the interval, and the
    /// next one).
    /// The interval must be at least [`MIN_BACKGROUND_INTERVAL`] (1 ms).
    Interval(Duration),
}

/// When the background merge thread merges, and which files it takes.
///
/// A file's *fragmentation* is the share of its record bytes that no key points at any more,
/// tombstones excluded for the trigger (they can only go once older files are merged too) and
/// included for the threshold. The defaults are Bitcask's.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct MergePolicy {
    /// Merge once any sealed file is at least this fragmented (0.0..=1.0). Default 0.6.
    pub trigger_fragmentation: f64,
    /// ... or once any sealed file holds this many dead bytes. Default 512 MiB.
    pub trigger_dead_bytes: u64,
    /// When merging, take every sealed file at least this fragmented (and every file that
    /// triggered the merge, whatever this says). Default 0.4.
    pub threshold_fragmentation: f64,
    /// ... or holding this many dead bytes. Default 128 MiB.
    pub threshold_dead_bytes: u64,
    /// ... and every sealed file smaller than this and than half the data file limit, to
    /// consolidate small files. Default 10 MiB.
    pub small_file_bytes: u64,
    /// How often the merge thread checks the trigger. It also checks whenever a data file is
    /// sealed; overwrites alone make sealed files fragmented without sealing one. After a failed
    /// merge it waits this long, then twice as long after each further failure in a row, up to
    /// 10 minutes, ignoring seals, until a merge succeeds or a check finds nothing to merge (a
    /// failing merge, say on a full disk, is not retried every second).
    /// Default 1 s; must be at least [`MIN_BACKGROUND_INTERVAL`] (1 ms) when the merge thread
    /// runs.
    pub check_interval: Duration,
}

impl Default for MergePolicy {
    fn default() -> Self {
        MergePolicy {
            trigger_fragmentation: 0.6,
            trigger_dead_bytes: 512 << 20,
            threshold_fragmentation: 0.4,
            threshold_dead_bytes: 128 << 20,
            small_file_bytes: 10 << 20,
            check_interval: Duration::from_secs(1),
        }
    }
}

/// Settings for opening a store; `Config::new(dir).open()` or [`Database::open`].
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) dir: PathBuf,
    pub(crate) data_file_limit: u64,
    pub(crate) sync: SyncPolicy,
    pub(crate) background_merge: bool,
    pub(crate) merge_policy: MergePolicy,
    pub(crate) commit_poll: Duration,
    pub(crate) hint_files: bool,
    pub(crate) fs: Arc<dyn Vfs>,
}

/// Default of [`Config::commit_poll`].
pub const DEFAULT_COMMIT_POLL: Duration = Duration::from_micros(250);

/// The shortest [`SyncPolicy::Interval`] and [`MergePolicy::check_interval`]: a background thread
/// waking more often would keep a core busy (fsyncing, or checking the merge trigger under a lock
/// every write takes) for nothing that [`SyncPolicy::Always`] would not do better.
pub const MIN_BACKGROUND_INTERVAL: Duration = Duration::from_millis(1);

/// The longest [`Config::commit_poll`]: a disk whose fsyncs take longer gains nothing from a
/// follower that skips one wake-up, and a poll keeps a CPU busy for its whole length.
pub const MAX_COMMIT_POLL: Duration = Duration::from_millis(10);

impl Config {
    /// Defaults: 256 MiB data files, [`SyncPolicy::Never`], background merge on with the
    /// default [`MergePolicy`], group-commit polling up to [`DEFAULT_COMMIT_POLL`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Config {
            dir: dir.into(),
            data_file_limit: DEFAULT_DATA_FILE_LIMIT,
            sync: SyncPolicy::default(),
            background_merge: true,
            merge_policy: MergePolicy::default(),
            commit_poll: DEFAULT_COMMIT_POLL,
            hint_files: true,
            fs: Arc::new(StdFs),
        }
    }

    /// Seals the active data file once the next record would take it past `bytes`. A record
    /// larger than the limit gets a file of its own. At most [`MAX_DATA_FILE_LIMIT`] (4 GiB).
    ///
    /// Small limits cost: each rotation fsyncs the file and creates the next one (even under
    /// `SyncPolicy::Never`), and every data file stays mapped while the store is open, so a
    /// store of many small files can reach the kernel's limit on maps per process
    /// (`vm.max_map_count`, 65,530 by default). A limit under a few MiB is for tests.
    pub fn data_file_limit(mut self, bytes: u64) -> Self {
        self.data_file_limit = bytes;
        self
    }

    /// When writes are fsynced; see [`SyncPolicy`].
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync = policy;
        self
    }

    /// Whether a background thread merges files as `merge_policy` says (default on). With it
    /// off, space is reclaimed only by [`Database::merge`].
    pub fn background_merge(mut self, enabled: bool) -> Self {
        self.background_merge = enabled;
        self
    }

    /// When the background merge thread merges; see [`MergePolicy`].
    pub fn merge_policy(mut self, policy: MergePolicy) -> Self {
        self.merge_policy = policy;
        self
    }

    /// How long a thread that waits for an fsync another thread is running (group commit: a
    /// writer under [`SyncPolicy::Always`], a [`Database::sync`] call, merge or the flush
    /// thread) polls for its end, yielding the CPU between checks, before it sleeps. It polls
    /// only when the group commit's last round (gathering and fsync) took no longer than this,
    /// so on a disk whose fsyncs take longer nobody polls. Polling spends CPU time
    /// (at most this much per waiting thread and fsync) to spare the waiter a wake-up from
    /// sleep, during which the disk would sit idle: on a virtual machine whose fsyncs took
    /// 135-177 µs, 4 writers wrote 1.12-1.33x as fast with it, for about 30 µs more CPU time per
    /// write (`docs/benchmarks.md`). Default [`DEFAULT_COMMIT_POLL`] (250 µs), at most
    /// [`MAX_COMMIT_POLL`] (10 ms; more is `Error::InvalidConfig` at open); `Duration::ZERO`
    /// turns polling off.
    pub fn commit_poll(mut self, limit: Duration) -> Self {
        self.commit_poll = limit;
        self
    }

    /// Whether merge writes a hint file beside each file it writes (default on). A hint file
    /// holds every key of its data file with its record's length, so that open loads those keys
    /// without reading the records: it costs about the key's length plus 4 bytes a key on disk,
    /// a large share of a store whose keys are long and values short. Off, merge writes none and
    /// open reads every merged record. Measured after a full merge of 1M keys with 100 B values
    /// (`cargo bench --bench footprint`): with 16 B keys, 1.000x the live records' bytes on disk
    /// instead of 1.146x, and open in 220-253 ms instead of 105-127 ms; with 64 B keys, 1.000x
    /// instead of 1.368x, and 405 ms instead of 248 ms. Without a hint file, damage anywhere in
    /// a merged file fails open (as in any file open scans) instead of failing only the read of
    /// the damaged record. Hint files already there are kept and used either way. The setting
    /// is not stored: a merge by a handle with it on (the CLI's `merge` without `--no-hints`,
    /// say) writes them.
    pub fn hint_files(mut self, enabled: bool) -> Self {
        self.hint_files = enabled;
        self
    }

    /// Runs the store on a simulated file system (crash and fault-injection tests).
    #[cfg(any(test, feature = "sim"))]
    pub fn file_system(mut self, fs: crate::sim::SimFs) -> Self {
        self.fs = Arc::new(fs);
        self
    }

    /// Opens (or creates) the store.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidConfig`](crate::Error::InvalidConfig): a setting out of range (the
    ///   message names it).
    /// - [`Error::NotADirectory`](crate::Error::NotADirectory): the path, or a parent of it, is
    ///   not a directory.
    /// - [`Error::Locked`](crate::Error::Locked): another handle or process has the store open.
    /// - [`Error::UnsupportedFormat`](crate::Error::UnsupportedFormat): a data file was written
    ///   in a format this build does not read (by a newer build); nothing was changed.
    /// - [`Error::SharedFile`](crate::Error::SharedFile): the newest data file, which open
    ///   appends to, is a symbolic link or one of several hard links; nothing was changed.
    /// - [`Error::Corruption`](crate::Error::Corruption): a data file's header is damaged, a
    ///   record in a data file other than the newest is, or files a committed merge needs are
    ///   missing; the message says what to do. (A damaged tail of the newest data file is cut off
    ///   instead, and saved beside it when records may follow the damage.)
    /// - [`Error::Io`](crate::Error::Io): the file system refused (creating the directory, a
    ///   read-only mount, no space, a file that cannot be read or mapped); the message names the
    ///   step and the path.
    /// - [`Error::FileIdsExhausted`](crate::Error::FileIdsExhausted): no data file id is left.
    pub fn open(self) -> Result<Database> {
        Database::open_with(self)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |why: String| Err(crate::Error::InvalidConfig(why));
        let policy = &self.merge_policy;
        if self.dir.as_os_str().is_empty() {
            return invalid("the store directory path is empty".into());
        }
        if self.data_file_limit == 0 {
            return invalid("data_file_limit is 0; it must be at least 1 byte".into());
        }
        if self.data_file_limit > MAX_DATA_FILE_LIMIT {
            return invalid(format!(
                "data_file_limit is {} bytes; it must be at most 4 GiB (MAX_DATA_FILE_LIMIT)",
                self.data_file_limit
            ));
        }
        for (name, fraction) in [
            ("trigger_fragmentation", policy.trigger_fragmentation),
            ("threshold_fragmentation", policy.threshold_fragmentation),
        ] {
            if !(0.0..=1.0).contains(&fraction) {
                return invalid(format!(
                    "MergePolicy::{name} is {fraction}; it must be within 0.0..=1.0"
                ));
            }
        }
        if let SyncPolicy::Interval(every) = self.sync
            && every < MIN_BACKGROUND_INTERVAL
        {
            return invalid(format!(
                "SyncPolicy::Interval is {every:?}; it must be at least 1 ms \
                 (MIN_BACKGROUND_INTERVAL; for a sync after every write, use SyncPolicy::Always)"
            ));
        }
        if self.background_merge && policy.check_interval < MIN_BACKGROUND_INTERVAL {
            return invalid(format!(
                "MergePolicy::check_interval is {:?}; it must be at least 1 ms \
                 (MIN_BACKGROUND_INTERVAL)",
                policy.check_interval
            ));
        }
        if self.commit_poll > MAX_COMMIT_POLL {
            return invalid(format!(
                "commit_poll is {:?}; it must be at most 10 ms (MAX_COMMIT_POLL)",
                self.commit_poll
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
