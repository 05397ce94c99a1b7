//! Which of two records of one key is newer, while open rebuilds the keydir.
//!
//! Files are loaded in any order and one hint file on several threads, so a record may meet a
//! key that is already present, and the newer of the two must win (the higher seq; on a tie,
//! which only the same record found twice can produce, the higher file id). Keydir entries do not
//! keep their seq (8 bytes a key), so the present entry's seq comes from the cheapest of:
//!
//! 1. **The same writer file:** the later offset is newer (the writer appends in seq order).
//! 2. **Another file, already loaded whole:** its seq range, when the new seq lies outside it.
//!    Writer files hold disjoint ranges, and a merge output holds only records older than the
//!    writer file that was active when the merge began, so this settles nearly every case.
//! 3. **Otherwise** (a partial merge's output against a file it did not take): the present
//!    record is read and its checksum checked. A present record that cannot be read stays, so
//!    that reading the key reports the damage: its seq is unknown, and letting the other record
//!    win could return an older value as if it were the newest.

use std::collections::HashMap;

use crate::format::FileId;
use crate::format::header::FileKind;
use crate::format::record::Record;
use crate::format::seq_ranges::WriterFile;
use crate::io::vfs::FileHandle;
use crate::keydir::{FileUsage, Location};
use crate::segment::Segment;
use crate::sync::Arc;

/// A record's seq and where it is.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stamped {
    pub seq: u64,
    pub loc: Location,
}

/// What recovery knows of every file it has started loading.
#[derive(Default)]
pub(super) struct RecordOrder {
    files: HashMap<FileId, Source>,
}

struct Source {
    kind: FileKind,
    /// Smallest and largest seq in the file, once it is loaded whole.
    seqs: Option<(u64, u64)>,
    bytes: Bytes,
}

/// How to read one of the file's records.
pub(super) enum Bytes {
    Mapped(Arc<Segment>),
    File(FileHandle),
}

impl RecordOrder {
    /// `id` is about to be loaded; its records can be read through `bytes`.
    pub(super) fn loading(&mut self, id: FileId, kind: FileKind, bytes: Bytes) {
        let source = Source {
            kind,
            seqs: None,
            bytes,
        };
        self.files.insert(id, source);
    }

    /// `id` is loaded whole, and `usage` saw all its seqs.
    pub(super) fn loaded(&mut self, id: FileId, usage: &FileUsage) {
        if let Some(source) = self.files.get_mut(&id) {
            source.seqs = Some((usage.min_seq, usage.max_seq));
        }
    }

    /// Every writer file loaded, with its seq range, sorted by id.
    pub(super) fn writer_files(&self) -> Vec<WriterFile> {
        let mut writers: Vec<WriterFile> = (self.files.iter())
            .filter(|(_, source)| source.kind == FileKind::Data)
            .map(|(&id, source)| WriterFile {
                id,
                seqs: source.seqs.filter(|(min, max)| min <= max),
            })
            .collect();
        writers.sort_by_key(|w| w.id);
        writers
    }

    /// Whether `new` (a put or a tombstone of `key`) is newer than the key's present entry.
    pub(super) fn is_newer(&self, key: &[u8], new: Stamped, present: &Location) -> bool {
        let Some(source) = self.files.get(&present.file_id) else {
            return false; // unreachable: every file is registered before its records load
        };
        if present.file_id == new.loc.file_id {
            if source.kind == FileKind::Data {
                return new.loc.offset > present.offset;
            }
        } else if let Some((min, max)) = source.seqs {
            if max < new.seq {
                return true;
            }
            if min > new.seq {
                return false;
            }
        }
        match source.seq_at(key, present) {
            Some(seq) => (new.seq, new.loc.file_id) > (seq, present.file_id),
            None => false,
        }
    }
}

impl Source {
    /// The seq of `key`'s record at `loc`, if it reads back whole.
    fn seq_at(&self, key: &[u8], loc: &Location) -> Option<u64> {
        let len = usize::try_from(loc.record_len(key.len())).ok()?;
        let start = loc.offset as usize;
        let read;
        let bytes = match &self.bytes {
            Bytes::Mapped(segment) => segment.mapped()?.get(start..start.checked_add(len)?)?,
            Bytes::File(file) => {
                let mut buf = vec![0; len];
                file.read_at(&mut buf, loc.start()).ok()?;
                read = buf;
                &read
            }
        };
        let record = Record::decode(bytes).ok()?;
        (record.key == key).then_some(record.seq)
    }
}
