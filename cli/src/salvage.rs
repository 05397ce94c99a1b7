//! Walking a data file past damage: unlike the library's `scan`, which stops at the first bad
//! record, [`walk`] reports the bad range and resynchronises on the next offset where a record
//! decodes. A bad record's length fields cannot be trusted, so the search goes forward byte by
//! byte. Every record carries a CRC-32 over its fields, so random bytes almost never decode; but
//! a damaged record's value may hold a whole valid record (a value that is itself a copy of a
//! store's file), which does. In a writer's file, whose seqs rise in file order, the search
//! passes over a record whose seq is not above the last good record's: such a record cannot be
//! the writer's. A merged file (seqs may fall where one input file ends and the next begins)
//! and a record with a higher seq are taken as found. The search is the library's
//! `RecordSearch`, one per walk, which gives up once the walk's decodes and searches have
//! checksummed four bytes per byte of the file (at least 64 MiB), so that bytes crafted as record
//! headers cannot make `check`, `repair` or `dump` run for hours; the rest of the file then
//! counts as damaged, and the report says the search gave up.

use bitcask::CorruptionKind;
use bitcask::format::header::{FileHeader, FileKind, HEADER_LEN};
use bitcask::format::record::{Record, RecordSearch, Search};

/// A range of a data file in which no record decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRange {
    /// Offset of the first byte that does not start a valid record.
    pub start: u64,
    /// Offset where the next valid record starts, or the file length.
    pub end: u64,
    /// Why the record at `start` failed to decode.
    pub kind: CorruptionKind,
    /// The walk gave up here, its search budget spent (on bytes crafted as record headers):
    /// the range runs to the end without the rest having been searched.
    pub gave_up: bool,
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
    /// have cut a write short and where open cuts the file. Anywhere else a bad range is damage,
    /// and so is one where the walk gave up (what lies in it is unknown).
    pub fn is_torn_tail(&self, file_len: u64, in_tail_file: bool) -> bool {
        in_tail_file && self.reaches_end(file_len) && !self.gave_up
    }

    /// For a report: what the walk did not search, if it gave up in this range.
    pub fn gave_up_note(&self) -> &'static str {
        if self.gave_up {
            "; the search for the next record gave up in it (its budget spent on bytes made of \
             record headers), so the rest of the file was not searched"
        } else {
            ""
        }
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
    let writer_file = FileHeader::decode(bytes).is_ok_and(|h| h.kind == FileKind::Data);
    Walk {
        bytes,
        search: RecordSearch::new(bytes),
        pos: HEADER_LEN.min(bytes.len()),
        seqs_rise: writer_file,
        last_seq: 0,
    }
}

/// Walks the records of a saved tail: bytes cut off a writer's file, with no header.
pub fn walk_saved_tail(bytes: &[u8]) -> Walk<'_> {
    Walk {
        bytes,
        search: RecordSearch::new(bytes),
        pos: 0,
        seqs_rise: true,
        last_seq: 0,
    }
}

/// Iterator returned by [`walk`].
#[derive(Debug)]
pub struct Walk<'a> {
    bytes: &'a [u8],
    /// Every decode and search of the walk draws on its one budget, so that bytes crafted to
    /// make each bad range cost a checksum of the rest of the file cannot make it quadratic.
    search: RecordSearch<'a>,
    pos: usize,
    /// Whether the bytes are a writer's, whose records were appended in seq order.
    seqs_rise: bool,
    /// Seq of the last valid record walked (0 before the first).
    last_seq: u64,
}

impl<'a> Iterator for Walk<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let start = self.pos;
        self.search.spend(start);
        match Record::decode(&self.bytes[start..]) {
            Ok(record) => {
                self.pos += record.encoded_len() as usize;
                self.last_seq = record.seq;
                Some(Item::Record {
                    offset: start as u64,
                    record,
                })
            }
            Err(kind) => Some(self.resync(start, kind)),
        }
    }
}

impl Walk<'_> {
    /// The bad range from `start` (where decoding failed with `kind`) up to the next offset
    /// where a record decodes that can follow the last good one, or to the end of the bytes.
    fn resync(&mut self, start: usize, kind: CorruptionKind) -> Item<'static> {
        let (seqs_rise, last_seq) = (self.seqs_rise, self.last_seq);
        let can_follow = |record: &Record| !seqs_rise || record.seq > last_seq;
        match self.search.find(start + 1, can_follow) {
            Search::Found(pos) => self.bad(start, pos, kind, false),
            Search::NotFound => self.bad(start, self.bytes.len(), kind, false),
            // The rest of the bytes: the walk ends.
            Search::GaveUp(_) => self.bad(start, self.bytes.len(), kind, true),
        }
    }

    fn bad(
        &mut self,
        start: usize,
        end: usize,
        kind: CorruptionKind,
        gave_up: bool,
    ) -> Item<'static> {
        self.pos = end;
        Item::Bad(BadRange {
            start: start as u64,
            end: end as u64,
            kind,
            gave_up,
        })
    }
}

#[cfg(test)]
mod tests {
    use bitcask::format::record::{RECORD_HEADER_LEN, RecordKind};

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

    /// Bytes made of units of a header that claims a record running to the end of the file
    /// (under a wrong checksum; with a valid seq and flags, or not, `header_seq` and `flags`)
    /// followed by a valid record with a rising seq: each unit costs the walk a checksum of the
    /// rest of the file decoding the header (decode checks the seq and flags after the
    /// checksum), and with a valid header again in the search that finds the record behind it.
    /// One budget for the whole walk, charged for every decode, bounds that: it gives up, where a
    /// budget per search, or one charged only for headers with a valid seq, never did (found by
    /// review, twice).
    #[test]
    fn a_walk_through_units_that_each_cost_the_rest_of_the_file_gives_up() {
        for (header_seq, flags) in [(None, 0), (Some(0), 0), (None, 0x80)] {
            walk_through_units_that_each_cost_the_rest_of_the_file(header_seq, flags);
        }
    }

    /// The test above with headers of seq `header_seq` (the unit's record's seq if `None`) and
    /// `flags`.
    fn walk_through_units_that_each_cost_the_rest_of_the_file(header_seq: Option<u64>, flags: u8) {
        const UNITS: usize = 6000;
        let unit = RECORD_HEADER_LEN + record(1, b"k").encoded_len() as usize;
        let mut bytes = FileHeader::new(FileKind::Data, 7).encode().to_vec();
        let len = bytes.len() + UNITS * unit;
        for seq in 1..=UNITS as u64 {
            let claims = (len - bytes.len() - RECORD_HEADER_LEN) as u32;
            let seq_there = header_seq.unwrap_or(seq);
            bytes.extend(bitcask::sim::forged_header(seq_there, flags, claims));
            record(seq, b"k").encode_into(&mut bytes);
        }
        assert_eq!(bytes.len(), len);
        let items: Vec<_> = walk(&bytes).collect();
        let Some(Item::Bad(last)) = items.last() else {
            panic!("the walk should end in a bad range");
        };
        assert!(last.gave_up, "{last:?}");
        assert!(last.reaches_end(len as u64));
        // Every decode of a header in the first half of the bytes is charged at least half of
        // them against the walk's budget (64 MiB here, its floor): so it gives up within
        // 2 * 64 MiB / len units, two items each. (Charging only headers with a valid seq and
        // flags, it went on to 1,989 items in the cases that have neither.)
        let within = 2 * (2 * (64 << 20) / len) + 1;
        assert!(
            items.len() <= within,
            "{header_seq:?}, {flags:#x}: {} items, more than {within}",
            items.len()
        );
        assert!(
            items
                .iter()
                .filter(|item| matches!(item, Item::Bad(bad) if bad.gave_up))
                .count()
                == 1
        );
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

    /// A data file of `kind` holding `records`, with a real header.
    fn file_of(kind: FileKind, records: &[Record]) -> Vec<u8> {
        let mut bytes = FileHeader::new(kind, 7).encode().to_vec();
        for r in records {
            r.encode_into(&mut bytes);
        }
        bytes
    }

    /// The keys of the valid records walked, in order.
    fn keys<'a>(items: &[Item<'a>]) -> Vec<&'a [u8]> {
        items
            .iter()
            .filter_map(|item| match item {
                Item::Record { record, .. } => Some(record.key),
                Item::Bad(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_record_inside_a_damaged_value_is_not_taken_for_the_writers() {
        // The value of "b" is a whole record, as if a store's file had been stored as a value.
        let mut inner = Vec::new();
        record(1, b"phantom").encode_into(&mut inner);
        let b = Record {
            seq: 2,
            kind: RecordKind::Put,
            key: b"b",
            value: &inner,
        };
        let mut bytes = file_of(FileKind::Data, &[record(1, b"a"), b, record(3, b"c")]);
        let b_start = HEADER_LEN + record(1, b"a").encoded_len() as usize;
        bytes[b_start] ^= 0xff; // b's checksum
        let items: Vec<_> = walk(&bytes).collect();
        assert_eq!(keys(&items), [b"a", b"c"], "{items:?}");
        let Item::Bad(bad) = &items[1] else {
            panic!("expected a bad range, got {items:?}");
        };
        assert_eq!(bad.len(), b.encoded_len());
    }

    #[test]
    fn in_a_merged_file_a_record_with_a_lower_seq_is_found_after_damage() {
        // Merge copies its inputs one after another, so seqs may fall within its output.
        let records = [record(5, b"a"), record(6, b"b"), record(2, b"c")];
        let mut bytes = file_of(FileKind::Merged, &records);
        bytes[HEADER_LEN + records[0].encoded_len() as usize] ^= 0xff;
        let items: Vec<_> = walk(&bytes).collect();
        assert_eq!(keys(&items), [b"a", b"c"], "{items:?}");
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
