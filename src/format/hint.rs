//! Hint files: the keydir entries of one data file, so open can skip scanning it.
//!
//! Format (little-endian):
//! `{ file header (kind Hint, id of its data file) | entry* | trailer }`
//! entry: `{ seq u64 | flags u8 | key_len u32 | value_len u32 | offset u64 | key }`
//! trailer: `{ entry_count u64 | data_len u64 | crc32 u32 }`, the CRC covering every byte of the
//! file before it. `data_len` is the length of the data file the hint describes; a hint whose
//! data file has another length is stale and ignored.

use super::header::{FileHeader, FileKind, HEADER_LEN};
use super::record::{Record, RecordKind};
use super::{DecodeResult, FileId, MAX_KEY_LEN, MAX_VALUE_LEN, Reader, valid_seq, verify_crc};
use crate::error::CorruptionKind;

/// Length of an entry's fixed part.
pub const HINT_ENTRY_HEADER_LEN: usize = 25;
/// Length of the trailer.
pub const HINT_TRAILER_LEN: usize = 20;

/// Where one record of the data file sits, and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintEntry<'a> {
    /// The record's sequence number.
    pub seq: u64,
    /// Put or tombstone.
    pub kind: RecordKind,
    /// The record's key.
    pub key: &'a [u8],
    /// Length of the record's value.
    pub value_len: u32,
    /// Offset of the record in the data file.
    pub offset: u64,
}

impl<'a> HintEntry<'a> {
    /// The entry that describes `record`, found at `offset` in its data file.
    pub fn of(record: &Record<'a>, offset: u64) -> Self {
        HintEntry {
            seq: record.seq,
            kind: record.kind,
            key: record.key,
            value_len: record.value.len() as u32,
            offset,
        }
    }
}

/// Builds a hint file in memory, entry by entry.
pub struct HintBuilder {
    buf: Vec<u8>,
    count: u64,
}

impl HintBuilder {
    /// Starts the hint file for data file `file_id`.
    pub fn new(file_id: FileId) -> Self {
        let header = FileHeader {
            kind: FileKind::Hint,
            file_id,
        };
        HintBuilder {
            buf: header.encode().to_vec(),
            count: 0,
        }
    }

    /// Adds one entry.
    pub fn push(&mut self, entry: &HintEntry) {
        let flags = u8::from(entry.kind == RecordKind::Tombstone);
        self.buf.extend_from_slice(&entry.seq.to_le_bytes());
        self.buf.push(flags);
        self.buf
            .extend_from_slice(&(entry.key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&entry.value_len.to_le_bytes());
        self.buf.extend_from_slice(&entry.offset.to_le_bytes());
        self.buf.extend_from_slice(entry.key);
        self.count += 1;
    }

    /// Appends the trailer for a data file of `data_len` bytes and returns the file's bytes.
    pub fn finish(mut self, data_len: u64) -> Vec<u8> {
        self.buf.extend_from_slice(&self.count.to_le_bytes());
        self.buf.extend_from_slice(&data_len.to_le_bytes());
        let crc = crc32fast::hash(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// A hint file whose checksum, header and every entry have been validated.
#[derive(Debug, Clone, Copy)]
pub struct HintFile<'a> {
    /// The data file this hint describes.
    pub file_id: FileId,
    /// Length of that data file when the hint was written.
    pub data_len: u64,
    entries: &'a [u8],
}

impl<'a> HintFile<'a> {
    /// Validates the whole file: trailer checksum, header, and every entry.
    pub fn decode(bytes: &'a [u8]) -> DecodeResult<Self> {
        if bytes.len() < HEADER_LEN + HINT_TRAILER_LEN {
            return Err(CorruptionKind::Truncated);
        }
        let trailer_at = bytes.len() - HINT_TRAILER_LEN;
        let mut trailer = Reader::new(&bytes[trailer_at..]);
        let count = trailer.u64()?;
        let data_len = trailer.u64()?;
        verify_crc(trailer.u32()?, &bytes[..bytes.len() - 4])?;
        let header = FileHeader::decode(bytes)?;
        if header.kind != FileKind::Hint {
            return Err(CorruptionKind::WrongFile);
        }
        let hint = HintFile {
            file_id: header.file_id,
            data_len,
            entries: &bytes[HEADER_LEN..trailer_at],
        };
        let mut parsed = 0u64;
        let mut r = Reader::new(hint.entries);
        while r.position() < hint.entries.len() {
            decode_entry(&mut r)?;
            parsed += 1;
        }
        if parsed != count {
            return Err(CorruptionKind::BadLength);
        }
        Ok(hint)
    }

    /// The entries, in the order they were pushed.
    pub fn entries(&self) -> impl Iterator<Item = HintEntry<'a>> + use<'a> {
        self.positioned_entries().map(|(_, entry)| entry)
    }

    /// The entries, each with the position of its first byte among the entry bytes: the
    /// boundaries [`HintFile::part`] splits at.
    pub fn positioned_entries(&self) -> impl Iterator<Item = (usize, HintEntry<'a>)> + use<'a> {
        let mut r = Reader::new(self.entries);
        // Every entry was validated by `decode`, so parsing cannot fail here.
        std::iter::from_fn(move || {
            let at = r.position();
            decode_entry(&mut r).ok().map(|entry| (at, entry))
        })
    }

    /// The entries from position `start` up to `end` (both entry boundaries from
    /// [`HintFile::positioned_entries`], or the length of the entry bytes) as a hint of their own,
    /// so that parts of one hint can be loaded on different threads.
    pub fn part(&self, start: usize, end: usize) -> HintFile<'a> {
        HintFile {
            entries: &self.entries[start..end],
            ..*self
        }
    }

    /// Length of the entry bytes: the end of the last part.
    pub fn entries_len(&self) -> usize {
        self.entries.len()
    }
}

fn decode_entry<'a>(r: &mut Reader<'a>) -> DecodeResult<HintEntry<'a>> {
    let seq = r.u64()?;
    let flags = r.u8()?;
    let key_len = r.u32()? as usize;
    let value_len = r.u32()?;
    let offset = r.u64()?;
    if key_len > MAX_KEY_LEN || value_len as usize > MAX_VALUE_LEN {
        return Err(CorruptionKind::BadLength);
    }
    let kind = match flags {
        0 => RecordKind::Put,
        1 if value_len == 0 => RecordKind::Tombstone,
        other => return Err(CorruptionKind::UnknownValue(other.into())),
    };
    if !valid_seq(seq) {
        return Err(CorruptionKind::UnknownValue(seq));
    }
    Ok(HintEntry {
        seq,
        kind,
        key: r.take(key_len)?,
        value_len,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut builder = HintBuilder::new(9);
        builder.push(&HintEntry {
            seq: 5,
            kind: RecordKind::Put,
            key: b"alpha",
            value_len: 300,
            offset: 20,
        });
        builder.push(&HintEntry {
            seq: 6,
            kind: RecordKind::Tombstone,
            key: b"",
            value_len: 0,
            offset: 346,
        });
        builder.finish(367)
    }

    #[test]
    fn round_trips() {
        let bytes = sample();
        let hint = HintFile::decode(&bytes).unwrap();
        assert_eq!((hint.file_id, hint.data_len), (9, 367));
        let entries: Vec<_> = hint.entries().collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].key, b"alpha");
        assert_eq!(entries[1].kind, RecordKind::Tombstone);
        let mut rebuilt = HintBuilder::new(hint.file_id);
        for entry in &entries {
            rebuilt.push(entry);
        }
        assert_eq!(rebuilt.finish(hint.data_len), bytes);
    }

    #[test]
    fn parts_at_entry_boundaries_hold_exactly_their_entries() {
        let bytes = sample();
        let hint = HintFile::decode(&bytes).unwrap();
        let starts: Vec<usize> = hint.positioned_entries().map(|(at, _)| at).collect();
        assert_eq!(starts[0], 0);
        let first = hint.part(0, starts[1]);
        let second = hint.part(starts[1], hint.entries_len());
        assert_eq!(
            first.entries().map(|e| e.key).collect::<Vec<_>>(),
            [b"alpha"]
        );
        assert_eq!(second.entries().map(|e| e.seq).collect::<Vec<_>>(), [6]);
        assert_eq!((second.file_id, second.data_len), (9, 367));
    }

    #[test]
    fn rejects_every_truncation_and_bit_flip() {
        let bytes = sample();
        for len in 0..bytes.len() {
            assert!(HintFile::decode(&bytes[..len]).is_err(), "len {len}");
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(HintFile::decode(&flipped).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn empty_hint_is_valid() {
        let bytes = HintBuilder::new(1).finish(20);
        assert_eq!(HintFile::decode(&bytes).unwrap().entries().count(), 0);
    }
}
