//! One data file as readers see it: sealed files through their memory map, the active file
//! through the map it grows into (both zero-copy), or with positional reads where that map is
//! missing or too short. Every read re-validates the record's checksum and key.

use std::borrow::Cow;
use std::path::PathBuf;

use crate::error::{CorruptionKind, Error, IoContext, Result};
use crate::format::FileId;
use crate::format::record::{RECORD_HEADER_LEN, Record, RecordKind};
use crate::io::mmap::{AppendMap, Mapping};
use crate::io::vfs::FileHandle;
use crate::keydir::Location;
use crate::sync::Arc;

/// How a segment's bytes are reached.
#[derive(Debug)]
pub(crate) enum Storage {
    /// Immutable: mapped once, read zero-copy.
    Sealed(Mapping),
    /// Being appended to by the writer (which shares the handle and the map): read zero-copy
    /// through the map where it has one and covers the record, else with `pread`.
    Active {
        file: FileHandle,
        map: Option<Arc<AppendMap>>,
    },
}

/// A data file in the published file set.
#[derive(Debug)]
pub(crate) struct Segment {
    pub id: FileId,
    pub path: PathBuf,
    pub storage: Storage,
}

impl Segment {
    pub(crate) fn is_sealed(&self) -> bool {
        matches!(self.storage, Storage::Sealed(_))
    }

    /// The mapped bytes of a sealed segment.
    pub(crate) fn mapped(&self) -> Option<&[u8]> {
        match &self.storage {
            Storage::Sealed(map) => Some(map),
            Storage::Active { .. } => None,
        }
    }

    /// Reads and validates the record `loc` points at and returns its value: borrowed from a
    /// map, or copied when the active file had to be read with `pread`.
    pub(crate) fn read_value(&self, key: &[u8], loc: &Location) -> Result<Cow<'_, [u8]>> {
        let len = loc.record_len(key.len()) as usize;
        match &self.storage {
            Storage::Sealed(map) => {
                let start = loc.offset as usize;
                let bytes = start
                    .checked_add(len)
                    .and_then(|end| map.get(start..end))
                    .ok_or_else(|| self.corrupt(loc, CorruptionKind::Truncated))?;
                Ok(Cow::Borrowed(self.check(key, loc, bytes)?.value))
            }
            Storage::Active { file, map } => {
                match map.as_ref().and_then(|m| m.get(loc.start(), len)) {
                    Some(bytes) => Ok(Cow::Borrowed(self.check(key, loc, bytes)?.value)),
                    None => self.pread_value(file, key, loc, len),
                }
            }
        }
    }

    fn pread_value(
        &self,
        file: &FileHandle,
        key: &[u8],
        loc: &Location,
        len: usize,
    ) -> Result<Cow<'_, [u8]>> {
        let mut bytes = vec![0; len];
        file.read_at(&mut bytes, loc.start())
            .context("reading active file", &self.path)?;
        // The value as the record itself delimits it, as on the mapped path.
        let value_len = self.check(key, loc, &bytes)?.value.len();
        let value_start = RECORD_HEADER_LEN + key.len();
        bytes.truncate(value_start + value_len);
        bytes.drain(..value_start);
        Ok(Cow::Owned(bytes))
    }

    fn check<'a>(&self, key: &[u8], loc: &Location, bytes: &'a [u8]) -> Result<Record<'a>> {
        let record = Record::decode(bytes).map_err(|kind| self.corrupt(loc, kind))?;
        // A location names one record (no file id is reused while a handle is open, and a
        // record never moves or changes within its file), so the key is all there is to check
        // beyond the checksum.
        if record.key != key || record.kind != RecordKind::Put {
            return Err(self.corrupt(loc, CorruptionKind::KeyMismatch));
        }
        Ok(record)
    }

    fn corrupt(&self, loc: &Location, kind: CorruptionKind) -> Error {
        Error::corruption(&self.path, loc.start(), kind)
    }
}
