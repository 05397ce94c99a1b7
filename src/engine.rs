//! The state one open store shares between all its handles and threads, and the operations that
//! sequence writer -> keydir -> group commit, and keydir -> file set.

use std::borrow::Cow;

use crossbeam_epoch::{self as epoch, Guard};

use crate::background::Signal;
use crate::error::{CorruptionKind, Error, Result};
use crate::fileset::{FileSet, Files};
use crate::fork::Origin;
use crate::format::record::RecordKind;
use crate::format::{MAX_KEY_LEN, MAX_VALUE_LEN};
use crate::group_commit::GroupCommit;
use crate::io::layout::{FileIds, Layout};
use crate::io::lock::DirLock;
use crate::io::mmap::pinned_value;
use crate::io::vfs::Vfs;
use crate::keydir::Keydir;
use crate::merge::{MergeCounters, MergeState};
use crate::options::{Config, SyncPolicy};
use crate::sync::{AtomicBool, Mutex, MutexGuard, Ordering, ProtocolBreak, broken};
use crate::value::Value;
use crate::writer::Writer;

/// One open store.
#[derive(Debug)]
pub(crate) struct Engine {
    pub layout: Layout,
    pub config: Config,
    pub keydir: Keydir,
    pub files: Files,
    pub writer: Mutex<Writer>,
    pub commits: GroupCommit,
    /// Where rotation and merge take new data file ids from.
    pub file_ids: FileIds,
    /// Set first thing in `close`: a running merge abandons its work at the next record.
    pub closing: AtomicBool,
    pub closed: AtomicBool,
    /// Serialises merges (and close against a running merge).
    pub merge: Mutex<MergeState>,
    pub merge_counters: MergeCounters,
    pub background: Signal,
    pub dir_lock: Mutex<Option<DirLock>>,
    /// The process that opened the store: a forked child must not use it.
    pub origin: Origin,
}

/// How often a reader retries when its keydir entry named a file that a merge just retired.
/// (Small under loom, where a retry loop multiplies the interleavings to explore.)
const READ_RETRIES: usize = if cfg!(loom) { 3 } else { 64 };

impl Engine {
    pub(crate) fn fs(&self) -> &dyn Vfs {
        &*self.config.fs
    }

    /// [`Error::Closed`] after `close`; [`Error::ForkedChild`] in a child forked after open.
    pub(crate) fn check_open(&self) -> Result<()> {
        self.origin.check()?;
        self.check_not_closed()
    }

    fn check_not_closed(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    pub(crate) fn write(&self, key: &[u8], value: &[u8]) -> Result<()> {
        check_key(key)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: MAX_VALUE_LEN,
            });
        }
        let seq = {
            // The key's keydir bucket is fetched while the writer's lock is taken.
            let mut writer = self.lock_writer_after(|| self.keydir.prefetch(key))?;
            let (loc, seq) = writer.append(self, RecordKind::Put, key, value)?;
            self.keydir.put(key, loc, seq);
            seq
        };
        self.commit(seq)
    }

    pub(crate) fn remove(&self, key: &[u8]) -> Result<()> {
        check_key(key)?;
        let seq = {
            let mut writer = self.lock_writer()?;
            // Only the writer adds keys, so under its lock this answer cannot go stale.
            if !self.keydir.contains(key) {
                if broken(ProtocolBreak::NoopRemoveSkipsWait) {
                    return Ok(());
                }
                // Nothing to append, but the remove that made the key absent may still be
                // waiting for its fsync: this call returns once that remove is durable too.
                writer.last_seq()
            } else {
                let (loc, seq) = writer.append(self, RecordKind::Tombstone, key, b"")?;
                self.keydir.remove(key, loc, seq);
                seq
            }
        };
        self.commit(seq)
    }

    /// Under `SyncPolicy::Always`, waits until the record of seq `seq` is durable.
    fn commit(&self, seq: u64) -> Result<()> {
        if self.config.sync == SyncPolicy::Always {
            self.commits.wait_durable(self, seq)
        } else {
            Ok(())
        }
    }

    pub(crate) fn sync(&self) -> Result<()> {
        let last = self.lock_writer()?.last_seq();
        self.commits.wait_durable(self, last)
    }

    /// The writer, once the store is known to be open (checked under the writer's lock, so no
    /// write can slip in after `close`).
    pub(crate) fn lock_writer(&self) -> Result<HeldWriter<'_>> {
        self.lock_writer_after(|| {})
    }

    /// [`Self::lock_writer`], running `prepare` first (after the fork check: `write`'s prefetch
    /// takes a keydir shard's read lock).
    fn lock_writer_after(&self, prepare: impl FnOnce()) -> Result<HeldWriter<'_>> {
        // A forked child is refused before it waits for a lock a thread of its parent held.
        self.origin.check()?;
        prepare();
        let writer = HeldWriter {
            panicking_at_lock: std::thread::panicking(),
            writer: self.writer.lock(),
        };
        self.check_not_closed()?;
        Ok(writer)
    }

    /// Finds `key`'s newest value; it stays valid while `guard` stays pinned.
    pub(crate) fn lookup<'g>(&self, key: &[u8], guard: &'g Guard) -> Result<Option<Cow<'g, [u8]>>> {
        self.check_open()?;
        let mut missing = (0, 0);
        for _ in 0..READ_RETRIES {
            let Some(loc) = self.keydir.get(key) else {
                return Ok(None);
            };
            let set = self.files.load(guard);
            match set.get(loc.file_id) {
                Some(segment) => return segment.read_value(key, &loc).map(Some),
                // A merge retired the file after we read the entry (the entry has moved since),
                // or `close` published the empty set.
                None => {
                    self.check_open()?;
                    missing = (loc.file_id, u64::from(loc.offset));
                }
            }
        }
        // Every retry found the entry pointing at a file that is not in the set: only a broken
        // protocol does that (64 merges would each have to retire the entry's file meanwhile).
        Err(Error::corruption(
            self.layout.data_path(missing.0),
            missing.1,
            CorruptionKind::MissingFile,
        ))
    }

    pub(crate) fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let guard = epoch::pin();
        Ok(self.lookup(key, &guard)?.map(Cow::into_owned))
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        pinned_value(|guard| self.lookup(key, guard))
    }

    /// Flushes, waits for a running merge, unpublishes the files and releases the directory
    /// lock. The caller stops the background workers first.
    pub(crate) fn close(&self) -> Result<()> {
        self.closing.store(true, Ordering::Release);
        let _no_merge = self.merge.lock();
        let synced = {
            let mut writer = self.lock_writer()?;
            let prepared = writer.check_poisoned().and_then(|()| writer.trim(self));
            // The last fsync runs after a failure too: it closes the fsync gate, so that a
            // group-commit leader that read the active file before `close` took the writer does
            // not fsync (or write `FSYNC_FAILED`) once the directory lock is released, and it
            // makes durable what was appended before the failure.
            let last_fsync = self
                .commits
                .fsync_active_last(&writer.fsync_target(self))
                .map_err(|source| Error::Io {
                    context: "syncing on close",
                    path: self.layout.data_path(writer.file_id()),
                    source,
                });
            let synced = prepared.and(last_fsync);
            if let Err(e) = &synced {
                writer.poison(e.to_string());
            }
            if broken(ProtocolBreak::UnpublishBeforeClosed) {
                self.files.publish(|_| FileSet::default());
            }
            // Before the files are unpublished: a reader that finds its entry's file gone must
            // then see `closed` (and return `Closed`), not retry and report a missing file.
            self.closed.store(true, Ordering::Release);
            synced
        };
        // Maps are dropped once no reader holds them; later reads see `Closed`.
        self.files.publish(|_| FileSet::default());
        self.dir_lock.lock().take();
        synced
    }
}

/// The writer, held. A panic while it is held (a bug, in I/O code say) poisons it, as a std
/// `Mutex` would be: nothing then says what the interrupted append or rotation left in the files
/// (a rotation may have named its new file), so no later write may go on from there.
pub(crate) struct HeldWriter<'a> {
    writer: MutexGuard<'a, Writer>,
    /// Whether the thread was already unwinding when it took the writer (a `Drop` that writes,
    /// during another panic): only a panic that starts while the writer is held poisons it.
    panicking_at_lock: bool,
}

impl std::ops::Deref for HeldWriter<'_> {
    type Target = Writer;

    fn deref(&self) -> &Writer {
        &self.writer
    }
}

impl std::ops::DerefMut for HeldWriter<'_> {
    fn deref_mut(&mut self) -> &mut Writer {
        &mut self.writer
    }
}

impl Drop for HeldWriter<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.panicking_at_lock {
            self.writer
                .poison("a write panicked while it held the writer".into());
        }
    }
}

pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::KeyTooLarge {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}
