//! Data records: one put or tombstone each, appended to data files.
//!
//! Format (21-byte header, little-endian):
//! `{ crc32 u32 | seq u64 | flags u8 | key_len u32 | value_len u32 | key | value }`
//! The CRC covers every byte after itself. `seq` is in 1..=`MAX_SEQ`: never 0, so an all-zero
//! region never decodes, and never `u64::MAX`, so the next seq always exists.

use super::{DecodeResult, MAX_KEY_LEN, MAX_VALUE_LEN, Reader, valid_seq, verify_crc};
use crate::error::CorruptionKind;

/// Length of a record's fixed header.
pub const RECORD_HEADER_LEN: usize = 21;

/// Flag bit: the record removes its key; its value is empty.
const FLAG_TOMBSTONE: u8 = 0b0000_0001;
/// Bits reserved for expiry (bit 1) and batch markers (bit 2); no version writes them yet.
const KNOWN_FLAGS: u8 = FLAG_TOMBSTONE;

/// Whether a record stores a value or removes its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Stores `value` under `key`.
    Put,
    /// Removes `key`; the value is empty.
    Tombstone,
}

/// A decoded record borrowing its key and value from the input bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Sequence number: the newest seq for a key wins.
    pub seq: u64,
    /// Put or tombstone.
    pub kind: RecordKind,
    /// The key.
    pub key: &'a [u8],
    /// The value (empty for a tombstone).
    pub value: &'a [u8],
}

/// Bytes a record with these lengths occupies on disk.
pub fn encoded_len(key_len: usize, value_len: usize) -> u64 {
    (RECORD_HEADER_LEN + key_len) as u64 + value_len as u64
}

impl Record<'_> {
    /// Bytes this record occupies on disk.
    pub fn encoded_len(&self) -> u64 {
        encoded_len(self.key.len(), self.value.len())
    }

    /// Appends the encoded record to `out`. It encodes whatever it is given, so tests and tools
    /// can build damaged records; a record with a seq outside 1..=`MAX_SEQ` or a length over
    /// the limits will not decode. The writer checks all three before it encodes.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        self.push_header_and_key(out);
        out.extend_from_slice(self.value);
        let crc = crc32fast::hash(&out[start + 4..]);
        out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// Appends the record's fixed header and key to `out`, with the checksum of the whole
    /// record (the value included): followed by the value, they are the encoded record. For a
    /// writer that writes a large value from where it lies instead of copying it.
    pub fn encode_head_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        self.push_header_and_key(out);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&out[start + 4..]);
        crc.update(self.value);
        out[start..start + 4].copy_from_slice(&crc.finalize().to_le_bytes());
    }

    /// The fixed header with a zero checksum, then the key.
    fn push_header_and_key(&self, out: &mut Vec<u8>) {
        let flags = match self.kind {
            RecordKind::Put => 0,
            RecordKind::Tombstone => FLAG_TOMBSTONE,
        };
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.push(flags);
        out.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.value.len() as u32).to_le_bytes());
        out.extend_from_slice(self.key);
    }

    /// Decodes the record at the start of `bytes`; trailing bytes are ignored.
    ///
    /// Lengths are checked against the limits and against `bytes` before anything is read, so
    /// garbage can neither allocate nor read out of bounds.
    pub fn decode(bytes: &[u8]) -> DecodeResult<Record<'_>> {
        let mut r = Reader::new(bytes);
        let crc = r.u32()?;
        let seq = r.u64()?;
        let flags = r.u8()?;
        let key_len = r.u32()? as usize;
        let value_len = r.u32()? as usize;
        if key_len > MAX_KEY_LEN || value_len > MAX_VALUE_LEN {
            return Err(CorruptionKind::BadLength);
        }
        let key = r.take(key_len)?;
        let value = r.take(value_len)?;
        verify_crc(crc, &bytes[4..r.position()])?;
        if !valid_seq(seq) {
            return Err(CorruptionKind::UnknownValue(seq));
        }
        if flags & !KNOWN_FLAGS != 0 {
            return Err(CorruptionKind::UnknownValue(flags.into()));
        }
        let kind = if flags & FLAG_TOMBSTONE != 0 {
            if value_len != 0 {
                return Err(CorruptionKind::BadLength);
            }
            RecordKind::Tombstone
        } else {
            RecordKind::Put
        };
        Ok(Record {
            seq,
            kind,
            key,
            value,
        })
    }
}

/// Whether a record could start at `bytes[0]` judging by its fixed header alone: a valid seq,
/// known flags, lengths within the limits and within `bytes`. Cheap (no checksum), so a search
/// for the next record through damaged bytes can skip most offsets before [`Record::decode`]
/// checksums what the lengths claim, which can be megabytes at every offset.
pub fn could_start_record(bytes: &[u8]) -> bool {
    claimed_len(bytes).is_some()
}

/// The length of the record that could start at `bytes[0]` ([`could_start_record`]), if one
/// could.
fn claimed_len(bytes: &[u8]) -> Option<usize> {
    let (seq, flags, len) = parse_header(bytes)?;
    (valid_seq(seq) && flags & !KNOWN_FLAGS == 0).then_some(len)
}

/// How many bytes [`Record::decode`] checksums at `bytes[0]`: the length the fixed header
/// claims, if its lengths are within their limits and within `bytes` (decode checks the seq and
/// the flags only after the checksum).
fn checksummed_len(bytes: &[u8]) -> Option<usize> {
    parse_header(bytes).map(|(_, _, len)| len)
}

/// The seq, the flags and the record length a fixed header at `bytes[0]` claims, if its lengths
/// are within their limits and the record within `bytes`. (The lengths are checked against
/// their limits before they are added, so the sum cannot overflow.)
fn parse_header(bytes: &[u8]) -> Option<(u64, u8, usize)> {
    let mut r = Reader::new(bytes);
    let header = (|| Ok::<_, CorruptionKind>((r.u32()?, r.u64()?, r.u8()?, r.u32()?, r.u32()?)))();
    let (_crc, seq, flags, key_len, value_len) = header.ok()?;
    let (key_len, value_len) = (key_len as usize, value_len as usize);
    if key_len > MAX_KEY_LEN || value_len > MAX_VALUE_LEN {
        return None;
    }
    let len = RECORD_HEADER_LEN + key_len + value_len;
    (len <= bytes.len()).then_some((seq, flags, len))
}

/// A record's fixed header under a wrong checksum, with no key and `value_len` bytes of value:
/// bytes that a search for records behind damage must check (if `seq` and `flags` are valid)
/// and that never decode. For tests of damaged files (`bitcask::sim::forged_header`).
#[cfg(any(test, feature = "sim"))]
pub fn forged_header(seq: u64, flags: u8, value_len: u32) -> [u8; RECORD_HEADER_LEN] {
    let mut header = [0; RECORD_HEADER_LEN];
    header[..4].copy_from_slice(&0xDEAD_BEEF_u32.to_le_bytes());
    header[4..12].copy_from_slice(&seq.to_le_bytes());
    header[12] = flags;
    header[17..].copy_from_slice(&value_len.to_le_bytes());
    header
}

/// How many bytes a [`RecordSearch`] checksums at most: this many per byte of what it reads...
const SEARCH_CHECKSUM_PER_BYTE: usize = 4;
/// ...or this many, whichever is more.
const SEARCH_CHECKSUM_MIN: usize = 64 << 20;

/// What [`RecordSearch::find`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search {
    /// An accepted record starts at this offset.
    Found(usize),
    /// No accepted record starts anywhere searched.
    NotFound,
    /// The search stopped at this offset, its checksum budget spent: records may lie beyond.
    GaveUp(usize),
}

/// How a reader of damaged bytes finds the records behind the damage, with a bound on the work.
///
/// A record cannot start after the last non-zero byte (it would be all zeros, and seq 0 is
/// invalid), so a search stops there; one starting before it may end in zeros. Only offsets
/// whose fixed header could start a record ([`could_start_record`]) are checksummed, over the
/// length the header claims. Ordinary damage passes that filter a few times in a hundred
/// million offsets, but bytes made of back-to-back headers that each claim most of what follows
/// (a crafted value, damaged or torn by a crash) would cost a checksum of the rest at every
/// offset: quadratic, hours for a large value. So one `RecordSearch` checksums at most four
/// bytes per byte of what it reads (at least 64 MiB) over all its searches and the decodes it is
/// told of ([`RecordSearch::spend`]), and past that gives up ([`Search::GaveUp`]).
#[derive(Debug)]
pub struct RecordSearch<'a> {
    bytes: &'a [u8],
    /// No record starts after this offset.
    last_start: usize,
    /// Bytes it may still checksum.
    budget: usize,
}

impl<'a> RecordSearch<'a> {
    /// A search of `bytes`, with the budget their length gives.
    pub fn new(bytes: &'a [u8]) -> Self {
        RecordSearch {
            bytes,
            last_start: bytes.iter().rposition(|&byte| byte != 0).unwrap_or(0),
            budget: bytes
                .len()
                .saturating_mul(SEARCH_CHECKSUM_PER_BYTE)
                .max(SEARCH_CHECKSUM_MIN),
        }
    }

    /// Takes from the budget, down to nothing, what decoding at `at` checksums (whatever the
    /// seq and flags there say): for a reader that decodes there whatever the budget says (a
    /// walk, at each record start), so that its next search gives up sooner.
    /// Such decodes cost at most one pass over the bytes beyond the budget, as long as the
    /// reader stops once a search gives up.
    pub fn spend(&mut self, at: usize) {
        self.budget = self.budget.saturating_sub(self.checksummed_at(at));
    }

    /// Takes from the budget what decoding at `at` checksums; false, taking nothing, if the
    /// budget cannot pay for it.
    fn charge(&mut self, at: usize) -> bool {
        match self.budget.checked_sub(self.checksummed_at(at)) {
            Some(left) => {
                self.budget = left;
                true
            }
            None => false,
        }
    }

    fn checksummed_at(&self, at: usize) -> usize {
        self.bytes.get(at..).and_then(checksummed_len).unwrap_or(0)
    }

    /// The first offset at or after `from` where a record decodes that `accept` takes.
    pub fn find(&mut self, from: usize, mut accept: impl FnMut(&Record) -> bool) -> Search {
        let bytes = self.bytes;
        for at in from..=self.last_start {
            if claimed_len(&bytes[at..]).is_none() {
                continue;
            }
            // Charged before the decode, which checksums what the header claims.
            if !self.charge(at) {
                return Search::GaveUp(at);
            }
            if Record::decode(&bytes[at..]).is_ok_and(|record| accept(&record)) {
                return Search::Found(at);
            }
        }
        Search::NotFound
    }
}

/// Whether a record may start anywhere in `damaged` after its first byte: the test open applies
/// to the newest writer file's torn tail (which starts at its first invalid record) before it
/// cuts it, saving the tail beside the file if this holds. Where the [`RecordSearch`] gives up,
/// the answer is yes: saving a tail that holds no record costs only its bytes on disk, cutting
/// one that did would lose records.
pub fn may_hold_records(damaged: &[u8]) -> bool {
    RecordSearch::new(damaged).find(1, |_| true) != Search::NotFound
}

/// Walks the records of a data file from `start`, yielding each record with its offset.
///
/// Stops at the end of `bytes` or after yielding the first error, whose offset is where the valid
/// prefix ends (a torn tail in the active file; corruption anywhere else).
pub fn scan(bytes: &[u8], start: usize) -> impl Iterator<Item = (u64, DecodeResult<Record<'_>>)> {
    let mut pos = start;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= bytes.len() {
            return None;
        }
        let offset = pos as u64;
        let decoded = Record::decode(&bytes[pos..]);
        match &decoded {
            Ok(record) => pos += record.encoded_len() as usize,
            Err(_) => failed = true,
        }
        Some((offset, decoded))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` bytes that start a damaged record, with a fixed header every `spacing` bytes after
    /// the first byte that claims a record running to the end, under a wrong checksum: each
    /// passes [`could_start_record`], none decodes (a crafted value, torn by a crash).
    fn headers_claiming_the_rest(len: usize, spacing: usize) -> Vec<u8> {
        let mut bytes = vec![0xAB; len];
        for at in (1..len - RECORD_HEADER_LEN).step_by(spacing) {
            let value_len = (len - at - RECORD_HEADER_LEN) as u32;
            bytes[at..at + RECORD_HEADER_LEN].copy_from_slice(&forged_header(1, 0, value_len));
        }
        bytes
    }

    #[test]
    fn a_search_within_its_budget_finds_no_record_where_none_decodes() {
        // 256 candidates of at most 4 KiB each: checksummed to the end.
        let damaged = headers_claiming_the_rest(4096 * 16, 256);
        assert!(could_start_record(&damaged[1..]));
        assert!(!may_hold_records(&damaged));
    }

    #[test]
    fn a_search_that_would_checksum_past_its_budget_answers_that_records_may_follow() {
        // 512 candidates claiming 1 MiB on average: 512 MiB of checksums unbounded, over the
        // 64 MiB budget, so the search stops and the tail is saved.
        let damaged = headers_claiming_the_rest(2 << 20, 4096);
        assert!(matches!(
            RecordSearch::new(&damaged).find(1, |_| true),
            Search::GaveUp(at) if at > 1
        ));
        assert!(may_hold_records(&damaged));
    }

    #[test]
    fn a_search_returns_the_first_record_it_accepts() {
        let mut bytes = vec![0xAB; 50];
        let at = bytes.len();
        for seq in [5, 6] {
            bytes.extend(encode(&Record {
                seq,
                kind: RecordKind::Put,
                key: b"k",
                value: b"v",
            }));
        }
        let second = at + RECORD_HEADER_LEN + 2;
        let find = |from, accept: fn(&Record) -> bool| RecordSearch::new(&bytes).find(from, accept);
        assert_eq!(find(0, |_| true), Search::Found(at));
        assert_eq!(find(0, |r| r.seq > 5), Search::Found(second));
        assert_eq!(find(0, |r| r.seq > 6), Search::NotFound);
        assert_eq!(find(second + 1, |_| true), Search::NotFound);
    }

    #[test]
    fn a_record_behind_damage_is_found_and_zeros_are_not_searched() {
        let mut damaged = vec![0xAB; 100];
        damaged.extend(encode(&Record {
            seq: 9,
            kind: RecordKind::Put,
            key: b"k",
            value: b"behind",
        }));
        damaged.extend([0; 4096]);
        assert!(may_hold_records(&damaged));
        assert!(!may_hold_records(&[0xAB; 100]));
        assert!(!may_hold_records(&[0; 4096]));
    }

    #[test]
    fn the_head_then_the_value_is_the_encoded_record() {
        for (kind, value) in [
            (RecordKind::Put, &[7u8; 3000][..]),
            (RecordKind::Tombstone, &[][..]),
        ] {
            let record = Record {
                seq: 9,
                kind,
                key: b"key",
                value,
            };
            let mut whole = Vec::new();
            record.encode_into(&mut whole);
            let mut head = vec![0xAA];
            record.encode_head_into(&mut head);
            head.extend_from_slice(value);
            assert_eq!(&head[1..], &whole[..]);
            assert_eq!(Record::decode(&whole), Ok(record));
        }
    }

    /// The cheap header check lets every real record through and rules out zeros, unknown
    /// flags and lengths past the bytes.
    #[test]
    fn could_start_record_keeps_records_and_rules_out_what_cannot_decode() {
        let record = Record {
            seq: 7,
            kind: RecordKind::Put,
            key: b"key",
            value: b"value",
        };
        let bytes = encode(&record);
        assert!(could_start_record(&bytes));
        assert!(
            !could_start_record(&bytes[..bytes.len() - 1]),
            "value past the end"
        );
        assert!(!could_start_record(&[0; 64]), "seq 0");
        let mut flags = bytes.clone();
        flags[12] = 0x80;
        assert!(!could_start_record(&flags), "unknown flag");
    }

    fn encode(record: &Record) -> Vec<u8> {
        let mut out = Vec::new();
        record.encode_into(&mut out);
        out
    }

    fn samples() -> Vec<Record<'static>> {
        vec![
            Record {
                seq: 1,
                kind: RecordKind::Put,
                key: b"",
                value: b"",
            },
            Record {
                seq: crate::format::MAX_SEQ,
                kind: RecordKind::Put,
                key: b"key",
                value: b"some value bytes",
            },
            Record {
                seq: 42,
                kind: RecordKind::Tombstone,
                key: b"gone",
                value: b"",
            },
        ]
    }

    #[test]
    fn round_trips_and_ignores_trailing_bytes() {
        for record in samples() {
            let mut bytes = encode(&record);
            assert_eq!(bytes.len() as u64, record.encoded_len());
            assert_eq!(Record::decode(&bytes), Ok(record));
            bytes.extend_from_slice(b"next record");
            assert_eq!(Record::decode(&bytes), Ok(record));
        }
    }

    #[test]
    fn rejects_every_truncation() {
        for record in samples() {
            let bytes = encode(&record);
            for len in 0..bytes.len() {
                assert_eq!(
                    Record::decode(&bytes[..len]),
                    Err(CorruptionKind::Truncated),
                    "len {len}"
                );
            }
        }
    }

    #[test]
    fn rejects_every_single_bit_flip() {
        for record in samples() {
            let bytes = encode(&record);
            for bit in 0..bytes.len() * 8 {
                let mut flipped = bytes.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                let decoded = Record::decode(&flipped);
                assert!(decoded.is_err(), "bit {bit} decoded as {decoded:?}");
            }
        }
    }

    #[test]
    fn all_zero_bytes_never_decode() {
        for len in 0..64 {
            assert!(Record::decode(&vec![0; len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn scan_yields_offsets_and_stops_at_the_first_bad_record() {
        let mut bytes = vec![0xAA; 3];
        for record in samples() {
            record.encode_into(&mut bytes);
        }
        let good_len = bytes.len();
        bytes.extend_from_slice(&[0; 30]);
        let scanned: Vec<_> = scan(&bytes, 3).collect();
        assert_eq!(scanned.len(), 4);
        assert_eq!(scanned[0].0, 3);
        assert_eq!(scanned[1].0, 3 + samples()[0].encoded_len());
        assert!(scanned[..3].iter().all(|(_, r)| r.is_ok()));
        assert_eq!(scanned[3].0, good_len as u64);
        assert!(scanned[3].1.is_err());
    }

    #[test]
    fn huge_lengths_are_rejected_before_reading() {
        let mut bytes = encode(&samples()[1]);
        bytes[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Record::decode(&bytes), Err(CorruptionKind::BadLength));
    }
}
