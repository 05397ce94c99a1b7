//! [`Database`]: the public handle. Cheap to clone, `Send + Sync`; every method takes `&self`.

use std::path::Path;
use std::time::SystemTime;

use crate::background::Workers;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::keydir::KeyList;
use crate::options::{Config, Options};
use crate::sync::{Arc, Ordering};
use crate::value::Value;
use crate::{merge, recovery};

/// Opens or creates the store described by the original README's [`Options`].
///
/// # Errors
///
/// As [`Config::open`].
pub fn new(options: Options) -> Result<Database> {
    Config::from(options).open()
}

/// A handle to an open store. Clones share the same store; the store closes when
/// [`close`](Database::close) is called or the last clone is dropped.
///
/// Dropping the last clone without `close` does what `close` does, and so blocks like it (an
/// fsync, stopping a running merge), but nobody hears about a failure: call `close` to see it.
/// A handle dropped while its thread panics skips that (writes are in the page cache, and synced
/// ones on disk); the directory lock is then released by the background threads as they exit,
/// a little later, so an immediate reopen may meet [`Error::Locked`] for a moment. In a child
/// process created by `fork`, every call refuses with [`Error::ForkedChild`] and dropping the
/// handle does nothing at all.
#[derive(Clone)]
pub struct Database {
    handle: Arc<Handle>,
}

/// The directory, whether the handle is closed, and the number of keys; never keys or values
/// (a handle inside an application's state must not print the store into its logs).
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let engine = self.engine();
        // Not counted in a forked child: counting takes every keydir shard's lock, which a
        // thread of the parent may have held at the fork.
        let num_keys = (!engine.origin.in_forked_child()).then(|| engine.keydir.len());
        f.debug_struct("Database")
            .field("dir", &engine.layout.dir())
            .field("closed", &engine.closed.load(Ordering::Relaxed))
            .field("num_keys", &num_keys)
            .finish_non_exhaustive()
    }
}

/// What the clones of one `Database` share; closing happens when the last one goes.
struct Handle {
    engine: Arc<Engine>,
    workers: Workers,
}

/// Figures about a store, from [`Database::stats`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Live keys.
    pub num_keys: u64,
    /// Data files, the active one included.
    pub num_data_files: u64,
    /// Bytes of records the keydir points at.
    pub live_bytes: u64,
    /// Bytes of the data files that are not live records: overwritten and removed records,
    /// tombstones (a merge keeps those while an older record of their key survives it), file
    /// headers.
    pub dead_bytes: u64,
    /// Bytes of all data files (`live_bytes + dead_bytes`). Not the store's disk usage: hint
    /// files (about key length + 4 bytes per key after a merge, unless `Config::hint_files` is
    /// off), the space allocated ahead of
    /// the active file (up to 4 MiB) and torn tails saved at open (`*.cut-*`) are not counted.
    pub total_bytes: u64,
    /// Per data file, by id.
    pub files: Vec<FileStats>,
    /// Merges completed since open (by `merge()` or the background thread).
    pub merges: u64,
    /// Data file bytes those merges removed, net of what they wrote.
    pub merge_reclaimed_bytes: u64,
    /// When the last merge completed.
    pub last_merge: Option<SystemTime>,
    /// The error of the last merge that failed, if it failed after the last success.
    pub last_merge_error: Option<String>,
    /// Merges that failed (or were refused) since open. The background thread waits longer
    /// after each failure in a row (see [`crate::MergePolicy::check_interval`]).
    pub merge_failures: u64,
    /// Why the writer refuses writes ([`Error::Poisoned`]: a failed write or fsync, the
    /// background flush's included), if it does; reads keep working, and a reopen recovers.
    /// A closed handle refuses writes with [`Error::Closed`] and shows `None` here, unless its
    /// `close` failed (then this is that failure).
    pub writes_refused: Option<String>,
}

/// Figures about one data file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileStats {
    /// The file's id (its name is the id, zero-padded).
    pub file_id: u32,
    /// Whether it is the active file (the one being appended to).
    pub active: bool,
    /// Bytes of its records and header. (The active file is longer on disk: it is allocated
    /// ahead of the writer.)
    pub total_bytes: u64,
    /// Bytes of live records in it.
    pub live_bytes: u64,
    /// `total_bytes - live_bytes`.
    pub dead_bytes: u64,
    /// Live keys whose newest record is in it.
    pub live_keys: u64,
}

/// Iterator over the live keys, from [`Database::keys`].
///
/// It walks a copy of the keys made when `keys()` was called (packed into one buffer: about the
/// key's length + 4 bytes each while the iterator lives), so writing while iterating is fine and
/// cannot deadlock. The copy is taken one keydir shard at a time, not at one instant: a key that
/// is live for the whole call is listed and one that is absent for the whole call is not, but a
/// key written or removed during the call may or may not be, whatever the order of those
/// writes. While a shard is copied, writes of keys in that shard wait (and, since writes go
/// one at a time, every write behind them): for a shard of 1/64 of the keys, about as long as
/// copying them. Each key is handed out as its own `Vec`. Order is unspecified (hash order).
#[derive(Debug)]
pub struct Keys {
    inner: KeyList,
}

impl Iterator for Keys {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        self.inner.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl ExactSizeIterator for Keys {}

impl Database {
    /// Opens or creates a store in `dir` with default settings; see [`Config`] for others.
    ///
    /// # Errors
    ///
    /// As [`Config::open`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Database> {
        Config::new(dir.as_ref()).open()
    }

    pub(crate) fn open_with(config: Config) -> Result<Database> {
        let engine = Arc::new(recovery::open(config)?);
        let workers = Workers::start(&engine).map_err(|source| Error::Io {
            context: "starting background threads for",
            path: engine.layout.dir().to_path_buf(),
            source,
        })?;
        Ok(Database {
            handle: Arc::new(Handle { engine, workers }),
        })
    }

    fn engine(&self) -> &Engine {
        &self.handle.engine
    }

    /// Stores `value` under `key`. Once this returns, every thread's `read`/`get` sees it; it is
    /// durable as the [`crate::SyncPolicy`] says.
    ///
    /// An error after the record was appended does not mean the write did not happen: under
    /// [`SyncPolicy::Always`](crate::SyncPolicy::Always) a failed fsync leaves the value readable
    /// until reopen and maybe on disk after it, and the handle then refuses writes
    /// ([`Error::Poisoned`]). Treat the outcome as unknown and read the key after a reopen. Bad
    /// input ([`Error::KeyTooLarge`], [`Error::ValueTooLarge`]) is refused before anything is
    /// written.
    ///
    /// # Errors
    ///
    /// - [`Error::KeyTooLarge`], [`Error::ValueTooLarge`]: nothing was written.
    /// - [`Error::Io`]: the append, a rotation to a new file or (under `Always`) the fsync
    ///   failed; the outcome is unknown, as above, and the handle refuses writes from then on.
    /// - [`Error::Poisoned`]: an earlier write or fsync failed; reopen the store to write again.
    /// - [`Error::SequenceExhausted`], [`Error::FileIdsExhausted`]: the store is full in a way
    ///   only a copy into a new store (or removing a stray file) mends.
    /// - [`Error::Closed`] after [`close`](Database::close), [`Error::ForkedChild`] in a child
    ///   process forked after open.
    pub fn write(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.engine().write(key, value)
    }

    /// Reads a copy of the newest value of `key`; a missing key is [`Error::KeyNotFound`].
    ///
    /// # Errors
    ///
    /// As [`get`](Database::get), and [`Error::KeyNotFound`] where `get` returns `None`.
    pub fn read(&self, key: &[u8]) -> Result<Vec<u8>> {
        self.engine().read(key)?.ok_or(Error::KeyNotFound)
    }

    /// The original README's cached read. In this engine sealed files are memory-mapped, so the
    /// OS page cache already is the cache: this is exactly [`read`](Database::read), kept for
    /// compatibility. Use [`get`](Database::get) to skip the copy.
    pub fn read_cache(&self, key: &[u8]) -> Result<Vec<u8>> {
        self.read(key)
    }

    /// The newest value of `key`, or `None`. Zero-copy wherever the file is mapped (sealed files,
    /// and the active file on file systems that can map it); see [`Value`] for what holding
    /// one costs.
    ///
    /// # Errors
    ///
    /// - [`Error::Corruption`]: the record fails its checksum or holds another key (bit rot,
    ///   say); the message names the file and offset. No bytes of it are returned, and other
    ///   keys stay readable.
    /// - [`Error::Io`]: reading the record from a file that is not mapped failed.
    /// - [`Error::Closed`] after [`close`](Database::close), [`Error::ForkedChild`] in a child
    ///   process forked after open.
    pub fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        self.engine().get(key)
    }

    /// Whether `key` has a live value (from the keydir alone: no record is read).
    ///
    /// # Errors
    ///
    /// - [`Error::Closed`] after [`close`](Database::close), [`Error::ForkedChild`] in a child
    ///   process forked after open.
    pub fn contains_key(&self, key: &[u8]) -> Result<bool> {
        self.engine().check_open()?;
        Ok(self.engine().keydir.contains(key))
    }

    /// Removes `key` (writes a tombstone). Removing a missing key writes nothing and succeeds;
    /// under [`SyncPolicy::Always`](crate::SyncPolicy::Always) it first waits until every
    /// earlier write and remove is durable (another thread's remove of the key may still be
    /// waiting for its fsync), so it can fail as they can.
    ///
    /// # Errors
    ///
    /// As [`write`](Database::write) (but for [`Error::ValueTooLarge`]).
    pub fn remove(&self, key: &[u8]) -> Result<()> {
        self.engine().remove(key)
    }

    /// Makes every write that returned before this call durable (fdatasync of the active file;
    /// sealed files and new files' directory entries were synced when they were made).
    /// Concurrent callers share one fsync. After a failed write the store refuses writes
    /// ([`Error::Poisoned`]) but `sync` still works; after a failed fsync (or a panic in a
    /// group-commit fsync round) it fails too.
    ///
    /// # Errors
    ///
    /// - [`Error::Io`]: the fsync failed. Nothing written since the last successful sync is
    ///   promised durable, and the handle refuses writes from then on.
    /// - [`Error::Poisoned`]: an earlier fsync failed (or a group-commit round panicked).
    /// - [`Error::Closed`] after [`close`](Database::close), [`Error::ForkedChild`] in a child
    ///   process forked after open.
    pub fn sync(&self) -> Result<()> {
        self.engine().sync()
    }

    /// Syncs, stops the background threads (a running merge is abandoned safely), releases the
    /// directory lock and unmaps the files once no reader uses them. It closes whatever it
    /// returns (but [`Error::ForkedChild`], which closes nothing): an error reports the final
    /// sync (or what refused it), and the directory is released all the same; a second `close`,
    /// or one racing this, returns [`Error::Closed`].
    /// Afterwards every call on
    /// this handle and its clones returns [`Error::Closed`] (`keys()` is empty, and `stats()`
    /// reports the figures as they were at the close), and the directory can be opened again at
    /// once. In a child process created by `fork` it refuses with [`Error::ForkedChild`], as
    /// every call does there: the store is the parent's.
    ///
    /// # Errors
    ///
    /// - [`Error::Io`], [`Error::Poisoned`]: the final sync failed, or an earlier failure
    ///   refused it; the store is closed all the same.
    /// - [`Error::Closed`]: the handle was already closed (or another thread is closing it).
    /// - [`Error::ForkedChild`]: in a forked child; nothing is closed.
    pub fn close(&self) -> Result<()> {
        self.handle.close()
    }

    /// Every live key; see [`Keys`]. Empty on a closed handle and in a forked child.
    pub fn keys(&self) -> Keys {
        let engine = self.engine();
        let keys = if engine.check_open().is_ok() {
            engine.keydir.keys()
        } else {
            KeyList::default()
        };
        Keys {
            inner: keys.into_iter(),
        }
    }

    /// Key count, file count, live/dead bytes overall and per file, and merge figures.
    ///
    /// The key count and the per-file figures are read while no write can land (it waits for
    /// them, as for another write), so they agree with each other (`num_keys` is the sum of the
    /// files' `live_keys`, and the active file is the newest) unless a merge is running, which
    /// moves records between files meanwhile, or finishes between them and the merge figures. In a
    /// forked child every figure is zero ([`Error::ForkedChild`]).
    pub fn stats(&self) -> Stats {
        let engine = self.engine();
        if engine.origin.in_forked_child() {
            // Not the child's store; and a thread of the parent may have held the writer at the
            // fork, whose lock the child would then wait for forever.
            return Stats::default();
        }
        // Under the writer, so that no write or rotation lands between these figures: `active`
        // is the file the usage calls active, and `num_keys` counts the same writes.
        let (active, writes_refused, usage, num_keys) = {
            let writer = engine.writer.lock();
            (
                writer.file_id(),
                writer.check_poisoned().err(),
                engine.keydir.usage(),
                engine.keydir.len() as u64,
            )
        };
        let mut files: Vec<FileStats> = usage
            .into_iter()
            .map(|(file_id, usage)| FileStats {
                file_id,
                active: file_id == active,
                total_bytes: usage.total_bytes,
                live_bytes: usage.live_bytes,
                dead_bytes: usage.dead_bytes(),
                live_keys: usage.live_keys,
            })
            .collect();
        files.sort_by_key(|f| f.file_id);
        let merges = engine.merge_counters.snapshot();
        Stats {
            num_keys,
            num_data_files: files.len() as u64,
            live_bytes: files.iter().map(|f| f.live_bytes).sum(),
            dead_bytes: files.iter().map(|f| f.dead_bytes).sum(),
            total_bytes: files.iter().map(|f| f.total_bytes).sum(),
            files,
            merges: merges.runs,
            merge_reclaimed_bytes: merges.reclaimed_bytes,
            last_merge: merges.last,
            last_merge_error: merges.last_error,
            merge_failures: merges.failures,
            writes_refused: writes_refused.map(|e| e.to_string()),
        }
    }

    /// Merges now: seals the active file and rewrites the live records of every sealed file,
    /// blocking until done. Readers and writers keep working meanwhile.
    ///
    /// It first waits for a background merge that is running. It rewrites every sealed file
    /// however little of it is dead, so calling it on a schedule rewrites the whole store each
    /// time; the background thread merges only what [`crate::MergePolicy`] chooses. It fails with
    /// [`Error::Poisoned`] while the writer refuses writes and with [`Error::MergeRefused`] after
    /// a merge that failed past its commit point or panicked (until reopen).
    ///
    /// # Errors
    ///
    /// - [`Error::Io`]: a step of the merge failed. Before its commit point nothing changed;
    ///   after it, the store is whole but further merges are refused until reopen.
    /// - [`Error::Corruption`]: a record in a file being merged fails its check (bit rot, say);
    ///   nothing changed, and merges fail until the damage is repaired (`bitcask check` finds
    ///   it, `bitcask repair` drops it).
    /// - [`Error::Poisoned`], [`Error::MergeRefused`]: as above.
    /// - [`Error::FileIdsExhausted`]: no id is left for an output file.
    /// - [`Error::Closed`] after [`close`](Database::close), [`Error::ForkedChild`] in a child
    ///   process forked after open.
    pub fn merge(&self) -> Result<()> {
        merge::merge_all(self.engine())
    }

    /// The background thread's merge, run on this thread (`sim::merge_by_policy`).
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn merge_by_policy(&self) -> Result<()> {
        merge::merge_by_policy(self.engine())
    }

    /// Whether the background merge policy would merge now (see [`crate::MergePolicy`]).
    pub fn needs_merge(&self) -> bool {
        // In a forked child: not its store, and a lock it takes may have been held at the fork.
        !self.engine().origin.in_forked_child() && merge::needs_merge(self.engine())
    }
}

impl Handle {
    fn close(&self) -> Result<()> {
        // Here process ids are compared too: closing in a child would cut the parent's files.
        self.engine.origin.check_thoroughly()?;
        self.engine.check_open()?;
        self.engine
            .closing
            .store(true, crate::sync::Ordering::Release);
        self.workers.stop(&self.engine);
        self.engine.close()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.engine.origin.in_forked_child() {
            // The lock, the files and the maps are the parent's: closing would cut the parent's
            // active file under its writer and release its lock. They are leaked instead (the
            // child's copies go when it exits); this takes no lock a parent's thread may hold.
            std::mem::forget(Arc::clone(&self.engine));
            std::mem::forget(std::mem::take(&mut self.workers));
            return;
        }
        if self.engine.check_open().is_err() {
            return;
        }
        if std::thread::panicking() {
            // While a thread unwinds from a panic, skip the orderly close: it takes locks that
            // the panic may have left in any state. Nothing acknowledged is lost (writes are in
            // the page cache, synced ones on disk). The workers are told to stop without being
            // waited for (under `SyncPolicy::Interval` the flush thread syncs once more); once
            // they have, the engine drops and releases the directory lock.
            self.engine
                .closing
                .store(true, crate::sync::Ordering::Release);
            self.engine.background.stop();
        } else {
            // Nobody is left to hear about a failure; a failed sync here loses nothing that was
            // promised durable (only `sync`, `close` and SyncPolicy::Always promise that).
            let _ = self.close();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::io::sim::{Fault, SimFs};
    use crate::{Config, SyncPolicy};

    /// Found by review: `close` on a writer poisoned by a failed append skipped its last fsync,
    /// which is what closes the fsync gate, so a group-commit leader that had read the active
    /// file before `close` could still fsync it (and on a failure write `FSYNC_FAILED`) after
    /// `close` released the directory. Now that leader's fsync is covered by close's.
    #[test]
    fn a_close_after_a_failed_write_still_closes_the_fsync_gate() {
        let fs = SimFs::new();
        let db = Config::new("/store")
            .file_system(fs.clone())
            .sync_policy(SyncPolicy::Never)
            .background_merge(false)
            .open()
            .unwrap();
        db.write(b"a", b"value-a").unwrap();
        let engine = db.engine();
        let leaders_target = engine.writer.lock().fsync_target(engine);
        fs.fail_at(fs.ops() + 1, Fault::Error(std::io::ErrorKind::StorageFull));
        assert!(db.write(b"b", b"value-b").is_err(), "the append fails");
        assert!(db.close().is_err(), "close reports the failed write");
        let at_close = fs.ops();
        engine.commits.fsync_active(&leaders_target).unwrap();
        assert_eq!(fs.ops(), at_close, "an fsync ran after close returned");
        let data = fs
            .synced_contents("/store/0000000001.data".as_ref())
            .unwrap();
        assert!(
            data.windows(7).any(|w| w == b"value-a"),
            "close synced what it could"
        );
    }
}
