//! The state one open store shares between all its handles and threads, and the operations that
//! sequence writer -> keydir and keydir -> file set.

use std::borrow::Cow;

use crossbeam_epoch::{self as epoch, Guard};

use crate::error::{CorruptionKind, Error, Result};
use crate::fileset::{FileSet, Files};
use crate::format::record::RecordKind;
use crate::format::{MAX_KEY_LEN, MAX_VALUE_LEN};
use crate::io::layout::Layout;
use crate::io::lock::DirLock;
use crate::io::mmap::pinned_value;
use crate::keydir::Keydir;
use crate::merge::MergeState;
use crate::options::Config;
use crate::sync::{AtomicBool, AtomicU32, Mutex, Ordering};
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
    /// The next data file id; rotation and merge both take ids from it.
    pub next_file_id: AtomicU32,
    pub closed: AtomicBool,
    /// Serialises merges (and close against a running merge).
    pub merge: Mutex<MergeState>,
    pub dir_lock: Mutex<Option<DirLock>>,
}

/// How often a reader retries when its keydir entry named a file that a merge just retired.
const READ_RETRIES: usize = 64;

impl Engine {
    pub(crate) fn check_open(&self) -> Result<()> {
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
        let mut writer = self.lock_writer()?;
        let loc = writer.append(self, RecordKind::Put, key, value)?;
        self.keydir.put(key, loc);
        Ok(())
    }

    pub(crate) fn remove(&self, key: &[u8]) -> Result<()> {
        check_key(key)?;
        let mut writer = self.lock_writer()?;
        // Only the writer adds keys, so under its lock this answer cannot go stale.
        if !self.keydir.contains(key) {
            return Ok(());
        }
        let loc = writer.append(self, RecordKind::Tombstone, key, b"")?;
        self.keydir.remove(key, loc);
        Ok(())
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.lock_writer()?.sync(self)
    }

    /// The writer, once the store is known to be open (checked under the writer's lock, so no
    /// write can slip in after `close`).
    pub(crate) fn lock_writer(&self) -> Result<crate::sync::MutexGuard<'_, Writer>> {
        let writer = self.writer.lock();
        self.check_open()?;
        Ok(writer)
    }

    /// Finds `key`'s newest value; it stays valid while `guard` stays pinned.
    pub(crate) fn lookup<'g>(&self, key: &[u8], guard: &'g Guard) -> Result<Option<Cow<'g, [u8]>>> {
        self.check_open()?;
        for _ in 0..READ_RETRIES {
            let Some(loc) = self.keydir.get(key) else {
                return Ok(None);
            };
            let set = self.files.load(guard);
            match set.get(loc.file_id) {
                Some(segment) => return segment.read_value(key, &loc).map(Some),
                // A merge retired the file after we read the entry; the entry has moved since.
                None => self.check_open()?,
            }
        }
        Err(Error::corruption(
            self.layout.dir(),
            0,
            CorruptionKind::KeyMismatch,
        ))
    }

    pub(crate) fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let guard = epoch::pin();
        Ok(self.lookup(key, &guard)?.map(Cow::into_owned))
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        pinned_value(|guard| self.lookup(key, guard))
    }

    /// Flushes, stops merging, unpublishes the files and releases the directory lock.
    pub(crate) fn close(&self) -> Result<()> {
        let _no_merge = self.merge.lock();
        let synced = {
            let mut writer = self.lock_writer()?;
            let synced = writer.sync(self);
            self.closed.store(true, Ordering::Release);
            synced
        };
        // Maps are dropped once no reader holds them; later reads see `Closed`.
        self.files.publish(|_| FileSet::default());
        self.dir_lock.lock().take();
        synced
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if !self.closed.load(Ordering::Acquire) {
            // Nobody is left to hear about a failure; a failed sync here loses nothing that was
            // promised durable (only `sync`, `close` and SyncPolicy::Always promise that).
            let _ = self.close();
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
