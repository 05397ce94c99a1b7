//! Walking a data file past damage: unlike the library's `scan`, which stops at the first bad
//! record, [`walk`] reports the bad range and resynchronises on the next offset where a record
//! decodes. A bad record's length fields cannot be trusted, so the search goes forward byte by
//! byte; every record carries a CRC-32 over its fields, so a false resync is negligible.

use bitcask::CorruptionKind;
use bitcask::format::header::HEADER_LEN;
use bitcask::format::record::Record;

/// A range of a data file in which no record decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRange {
    /// Offset of the first byte that does not start a valid record.
    pub start: u64,
    /// Offset where the next valid record starts, or the file length.
    pub end: u64,
    /// Why the record at `start` failed to decode.
    pub kind: CorruptionKind,
}

impl BadRange {
    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether no valid record follows the range.
    pub fn reaches_end(&self, file_len: u64) -> bool {
        self.end == file_len
    }

    /// Whether this range is a torn tail: the end of the newest writer file, where a crash may
    /// have cut a write short and where open cuts the file. Anywhere else a bad range is damage.
    pub fn is_torn_tail(&self, file_len: u64, in_tail_file: bool) -> bool {
        in_tail_file && self.reaches_end(file_len)
    }
}

/// One step of a [`walk`].
#[derive(Debug)]
pub enum Item<'a> {
    /// A valid record at `offset`.
    Record {
        /// Offset of the record's first byte.
        offset: u64,
        /// The decoded record.
        record: Record<'a>,
    },
    /// Bytes where no record decodes.
    Bad(BadRange),
}

/// Walks the records of a data file's bytes after its header, through any damage.
pub fn walk(bytes: &[u8]) -> Walk<'_> {
    walk_from(bytes, HEADER_LEN)
}

/// Walks records from offset `start` (0 for a saved tail, which has no header).
pub fn walk_from(bytes: &[u8], start: usize) -> Walk<'_> {
    Walk {
        bytes,
        pos: start.min(bytes.len()),
    }
}

/// Iterator returned by [`walk`].
#[derive(Debug)]
pub struct Walk<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Walk<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let start = self.pos;
        match Record::decode(&self.bytes[start..]) {
            Ok(record) => {
                self.pos += record.encoded_len() as usize;
                Some(Item::Record {
                    offset: start as u64,
                    record,
                })
            }
            Err(kind) => {
                self.pos = resync(self.bytes, start + 1);
                Some(Item::Bad(BadRange {
                    start: start as u64,
                    end: self.pos as u64,
                    kind,
                }))
            }
        }
    }
}

/// The first offset at or after `from` where a record decodes, or the length of `bytes`.
fn resync(bytes: &[u8], from: usize) -> usize {
    (from..bytes.len())
        .find(|&pos| Record::decode(&bytes[pos..]).is_ok())
        .unwrap_or(bytes.len())
}

#[cfg(test)]
mod tests {
    use bitcask::format::record::RecordKind;

    use super::*;

    fn record(seq: u64, key: &'static [u8]) -> Record<'static> {
        Record {
            seq,
            kind: RecordKind::Put,
            key,
            value: b"value",
        }
    }

    fn file(records: &[Record]) -> Vec<u8> {
        let mut bytes = vec![0u8; HEADER_LEN];
        for r in records {
            r.encode_into(&mut bytes);
        }
        bytes
    }

    #[test]
    fn resynchronises_after_a_damaged_record() {
        let mut bytes = file(&[record(1, b"a"), record(2, b"b"), record(3, b"c")]);
        let second = HEADER_LEN + record(1, b"a").encoded_len() as usize;
        bytes[second + 10] ^= 0xff;
        let items: Vec<_> = walk(&bytes).collect();
        assert_eq!(items.len(), 3);
        let Item::Bad(bad) = &items[1] else {
            panic!("expected a bad range, got {items:?}");
        };
        assert_eq!(bad.start, second as u64);
        assert_eq!(bad.len(), record(2, b"b").encoded_len());
        assert!(matches!(items[2], Item::Record { record, .. } if record.seq == 3));
    }

    #[test]
    fn garbage_at_the_end_reaches_the_end() {
        let mut bytes = file(&[record(1, b"a")]);
        bytes.extend_from_slice(&[0xAA; 7]);
        let items: Vec<_> = walk(&bytes).collect();
        let Item::Bad(bad) = items[1] else {
            panic!("expected a bad range");
        };
        assert!(bad.reaches_end(bytes.len() as u64));
        assert!(bad.is_torn_tail(bytes.len() as u64, true));
        assert!(!bad.is_torn_tail(bytes.len() as u64, false));
    }
}
