//! The single writer: encodes records, appends them to the active file, and rotates it.
//!
//! Only one thread at a time holds the writer (behind the engine's mutex), so records, seqs and
//! keydir updates happen in one order. Syncing is done by `group_commit`, outside the writer's
//! lock, except the fsync of a file being sealed by `rotate` (through the same fsync gate,
//! `GroupCommit::fsync_active`). A failed write or fsync poisons the writer: the file's tail is then
//! unknown, so it refuses further writes until the store is reopened.

use std::path::Path;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::header::{FileHeader, FileKind, HEADER_LEN};
use crate::format::record::{Record, RecordKind, encoded_len};
use crate::format::{FileId, MAX_SEQ};
use crate::group_commit::ActiveFsync;
use crate::io;
use crate::io::mmap::AppendWriter;
use crate::io::vfs::FileHandle;
use crate::keydir::{FileUsage, Location};
use crate::options::SyncPolicy;
use crate::segment::{Segment, Storage};
use crate::sync::Arc;

/// Records longer than this are not encoded into the writer's buffer: their header and key are,
/// and the value is written from where it lies (two `pwrite`s). So a 1 GiB value needs no second
/// gigabyte while it is written, and the buffer, kept between appends, stays about this small.
const LARGE_RECORD: u64 = 1 << 20;

/// The writer's state: the active file and the next sequence number.
#[derive(Debug)]
pub(crate) struct Writer {
    file: FileHandle,
    /// The map of `file` that readers read zero-copy, and small records are copied into (except
    /// under `SyncPolicy::Always`, see `write_buf`); advanced past each record once it is
    /// written.
    map: Option<AppendWriter>,
    file_id: FileId,
    /// Bytes in the active file; the next record goes here.
    len: u64,
    next_seq: u64,
    /// Reused encode buffer (a record up to [`LARGE_RECORD`], or a larger one's header and key).
    buf: Vec<u8>,
    poisoned: Option<String>,
}

impl Writer {
    /// The writer of the active `file`, which holds `len` finished bytes and will hold at most
    /// about `limit` (the map is reserved that large).
    pub(crate) fn new(
        file: FileHandle,
        file_id: FileId,
        len: u64,
        limit: u64,
        next_seq: u64,
    ) -> Self {
        Writer {
            map: map_active(&file, limit, len),
            file,
            file_id,
            len,
            next_seq,
            buf: Vec::new(),
            poisoned: None,
        }
    }

    /// A read-side view of the active file for the file set.
    pub(crate) fn segment(&self, engine: &Engine) -> Arc<Segment> {
        Arc::new(Segment {
            id: self.file_id,
            path: engine.layout.data_path(self.file_id),
            storage: Storage::Active {
                file: Arc::clone(&self.file),
                map: self.map.as_ref().map(|map| Arc::clone(map.shared())),
            },
        })
    }

    pub(crate) fn file_id(&self) -> FileId {
        self.file_id
    }

    /// An fsync of the active file covering every record appended so far.
    pub(crate) fn fsync_target<'e>(&self, engine: &'e Engine) -> ActiveFsync<'e> {
        ActiveFsync {
            file: Arc::clone(&self.file),
            id: self.file_id,
            len: self.len,
            fs: engine.fs(),
            layout: &engine.layout,
        }
    }

    /// The seq of the last record appended (0 if none ever was).
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Whether the active file holds no record yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.len <= HEADER_LEN as u64
    }

    /// Appends one record and returns where it is and its seq. The caller updates the keydir
    /// while it still holds the writer, so keydir order is seq order.
    pub(crate) fn append(
        &mut self,
        engine: &Engine,
        kind: RecordKind,
        key: &[u8],
        value: &[u8],
    ) -> Result<(Location, u64)> {
        self.check_poisoned()?;
        let len = encoded_len(key.len(), value.len());
        if !self.is_empty() && self.len + len > engine.config.data_file_limit {
            self.rotate(engine)?;
        }
        let seq = self.next_seq;
        if seq > MAX_SEQ {
            return Err(Error::SequenceExhausted);
        }
        // Every record starts below the data file limit, which is at most 4 GiB.
        let loc = Location::new(self.file_id, self.len, value.len()).ok_or_else(|| {
            Error::InvalidConfig(format!("record offset {} past 4 GiB", self.len))
        })?;
        self.buf.clear();
        let record = Record {
            seq,
            kind,
            key,
            value,
        };
        if len > LARGE_RECORD {
            self.write_large(engine, &record)?;
        } else {
            record.encode_into(&mut self.buf);
            self.write_buf(engine)?;
        }
        // The record is complete in the file: readers may have it through the map.
        if let Some(map) = &mut self.map {
            map.advance(self.len + len);
        }
        self.next_seq += 1;
        self.len += len;
        Ok((loc, seq))
    }

    /// Puts the encoded record in `buf` at the end of the active file: copied through the map
    /// where it can be, else `pwrite`n.
    ///
    /// Under [`SyncPolicy::Always`] it is always `pwrite`n, into the part of the file the map
    /// allocated ahead: every write is fsynced at once, and writing back a page through
    /// `fdatasync` write-protects it in the map, so the next copy into it would take a page
    /// fault, which costs more than the `pwrite` (`docs/benchmarks.md`, fourteenth round).
    fn write_buf(&mut self, engine: &Engine) -> Result<()> {
        let at = self.len;
        let copied = match self.map.as_mut() {
            Some(map) if engine.config.sync == SyncPolicy::Always => {
                // Where the file cannot be allocated, the `pwrite` extends it instead.
                map.reserve(&*self.file, at, self.buf.len());
                false
            }
            Some(map) => map.append(&*self.file, at, &self.buf),
            None => false,
        };
        if !copied {
            let written = self.file.write_at(&self.buf, at);
            self.poison_on_error(written, "appending to", engine)?;
        }
        Ok(())
    }

    /// Puts a record over [`LARGE_RECORD`] at the end of the active file: its header and key
    /// (encoded into `buf`), then its value from where it lies. A failure between the two leaves
    /// a torn record, as any failed append may.
    fn write_large(&mut self, engine: &Engine, record: &Record) -> Result<()> {
        let at = self.len;
        record.encode_head_into(&mut self.buf);
        let head = self.file.write_at(&self.buf, at);
        self.poison_on_error(head, "appending to", engine)?;
        let value = self.file.write_at(record.value, at + self.buf.len() as u64);
        self.poison_on_error(value, "appending to", engine)
    }

    /// Seals the active file (fsynced and mapped) and starts a new one.
    pub(crate) fn rotate(&mut self, engine: &Engine) -> Result<()> {
        self.check_poisoned()?;
        self.trim(engine)?;
        let synced = engine.commits.fsync_active(&self.fsync_target(engine));
        self.poison_on_error(synced, "syncing", engine)?;
        let fs = engine.fs();
        let sealed_path = engine.layout.data_path(self.file_id);
        let map = self.file.map(&sealed_path)?;
        let new_id = engine.file_ids.take()?;
        let new_path = engine.layout.data_path(new_id);
        let header = FileHeader::new(FileKind::Data, new_id);
        let file = io::create_data_file(fs, engine.layout.dir(), &new_path, &header.encode())
            .map_err(|e| self.poison_if_named(engine, &new_path, e))?;
        engine
            .keydir
            .track_file(new_id, FileUsage::new(HEADER_LEN as u64));
        let sealed = Arc::new(Segment {
            id: self.file_id,
            path: sealed_path,
            storage: Storage::Sealed(map),
        });
        self.map = map_active(&file, engine.config.data_file_limit, HEADER_LEN as u64);
        self.file = file;
        self.file_id = new_id;
        self.len = HEADER_LEN as u64;
        let active = self.segment(engine);
        // The new active file is published before any keydir entry can point into it.
        engine.files.publish(|set| set.with([sealed, active]));
        engine.background.poke();
        Ok(())
    }

    /// Cuts what the active file was allocated past its records (before sealing or closing it).
    pub(crate) fn trim(&mut self, engine: &Engine) -> Result<()> {
        if let Some(map) = &mut self.map {
            let trimmed = map.trim(&*self.file);
            self.poison_on_error(trimmed, "trimming", engine)?;
        }
        Ok(())
    }

    /// A rotation failed to create its new file `path`. If the file has its name already (the
    /// rename was done, the directory fsync then failed), no record may go into the old file
    /// any more: after a crash, recovery takes the newest file as the one that may end in a torn
    /// record, and the old file would end in an unfinished tail. So the writer refuses writes
    /// until the store is reopened, which starts from a consistent pair of files.
    fn poison_if_named(&mut self, engine: &Engine, path: &Path, error: Error) -> Error {
        if !matches!(io::exists(engine.fs(), path), Ok(false)) {
            self.poison(format!("creating the next data file failed: {error}"));
        }
        error
    }

    pub(crate) fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(Error::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    pub(crate) fn poison(&mut self, reason: String) {
        self.poisoned.get_or_insert(reason);
    }

    fn poison_on_error(
        &mut self,
        result: std::io::Result<()>,
        context: &'static str,
        engine: &Engine,
    ) -> Result<()> {
        // The path is built only on failure: this runs on every append.
        result
            .map_err(|source| Error::Io {
                context,
                path: engine.layout.data_path(self.file_id),
                source,
            })
            .inspect_err(|e| self.poison(e.to_string()))
    }
}

/// The map readers see the active file through. It is reserved at the size limit (at most
/// 4 GiB; a file goes past it only by one oversized record, which readers then `pread`).
fn map_active(file: &FileHandle, limit: u64, written: u64) -> Option<AppendWriter> {
    let map = file.map_appending(limit.max(written), written)?;
    Some(AppendWriter::new(map, written))
}
