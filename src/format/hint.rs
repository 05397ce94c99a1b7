//! Hint files: the keydir entries of one data file, so open can skip scanning it.
//!
//! Format (little-endian; `docs/format.md` has the full specification):
//! `{ file header (kind Hint, id of its data file) | entry* | trailer }`
//! entry, version 2: `{ flags u8 | key_len varint | value_len varint | seq_delta varint | key }`
//! entry, version 1: `{ seq u64 | flags u8 | key_len u32 | value_len u32 | offset u64 | key }`
//! trailer: `{ entry_count u64 | data_len u64 | crc32 u32 }`, the CRC covering every byte of the
//! file before it. `data_len` is the length of the data file the hint describes; a hint whose
//! data file has another length is stale and ignored.
//!
//! Version 2 stores no offsets: the records of a merged file lie back to back from the end of
//! its header, so each entry's record starts where the previous one's ends. Its seq is the
//! previous entry's seq (0 before the first) plus `seq_delta`, zigzag-encoded as merge does not
//! copy records in seq order. This build writes version 2 and reads both.

use super::header::{FORMAT_VERSION, FileHeader, FileKind, HEADER_LEN};
use super::record::{Record, RecordKind, encoded_len};
use super::{
    DecodeResult, FileId, MAX_KEY_LEN, MAX_VALUE_LEN, Reader, put_varint, valid_seq, verify_crc,
};
use crate::error::CorruptionKind;

// `EntryDecoder::decode` and `HintBuilder::push` know versions 1 and 2: a new version needs
// its codec there.
const _: () = assert!(FORMAT_VERSION == 2);

/// The shortest entry of a hint in `version`: 25 bytes in version 1; 4 in version 2 (an empty
/// key, every varint one byte).
pub fn min_hint_entry_len(version: u16) -> usize {
    if version == 1 { 25 } else { 4 }
}
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

    /// Offset of the first byte after the entry's record (`BadLength` past `u64::MAX`).
    pub fn record_end(&self) -> DecodeResult<u64> {
        self.offset
            .checked_add(encoded_len(self.key.len(), self.value_len as usize))
            .ok_or(CorruptionKind::BadLength)
    }
}

/// Where an entry starts among a hint's entry bytes, with what decoding it builds on: the
/// previous entry's seq and the end of its record. A part of a hint can start there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryStart {
    at: usize,
    prev_seq: u64,
    offset: u64,
}

impl EntryStart {
    /// Before the first entry.
    const FIRST: EntryStart = EntryStart {
        at: 0,
        prev_seq: 0,
        offset: HEADER_LEN as u64,
    };
}

/// Builds a hint file in memory, entry by entry.
pub struct HintBuilder {
    buf: Vec<u8>,
    version: u16,
    count: u64,
    next: EntryStart,
}

impl HintBuilder {
    /// Starts the hint file for data file `file_id`, in this build's format version.
    pub fn new(file_id: FileId) -> Self {
        Self::in_version(file_id, FORMAT_VERSION)
    }

    /// Starts a version 1 hint file for data file `file_id`: what builds before version 2 read,
    /// and the one version that can state any offset (tests use it to make hints that lie).
    pub fn version_1(file_id: FileId) -> Self {
        Self::in_version(file_id, 1)
    }

    fn in_version(file_id: FileId, version: u16) -> Self {
        let header = FileHeader {
            version,
            ..FileHeader::new(FileKind::Hint, file_id)
        };
        HintBuilder {
            buf: header.encode().to_vec(),
            version,
            count: 0,
            next: EntryStart::FIRST,
        }
    }

    /// Adds the entry of the next record in the data file.
    ///
    /// # Panics
    ///
    /// In version 2, if the record does not start where the previous one ended (the first at
    /// [`HEADER_LEN`]): that version stores no offsets, so it can only describe records that lie
    /// back to back, as merge writes them. In any version, if the record ends past `u64::MAX`.
    pub fn push(&mut self, entry: &HintEntry) {
        let flags = u8::from(entry.kind == RecordKind::Tombstone);
        if self.version == 1 {
            push_v1_entry(&mut self.buf, entry, flags);
        } else {
            debug_assert_eq!(self.version, 2, "a version without an encoder");
            assert_eq!(
                entry.offset, self.next.offset,
                "hint entries must describe back-to-back records"
            );
            self.buf.push(flags);
            put_varint(&mut self.buf, entry.key.len() as u64);
            put_varint(&mut self.buf, entry.value_len.into());
            put_varint(
                &mut self.buf,
                zigzag(entry.seq.wrapping_sub(self.next.prev_seq)),
            );
            self.buf.extend_from_slice(entry.key);
        }
        self.count += 1;
        self.next.prev_seq = entry.seq;
        self.next.offset = entry.record_end().expect("a record ends before u64::MAX");
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
    /// The format version the hint was written in; it decides how the entries decode.
    version: u16,
    entries: &'a [u8],
    start: EntryStart,
}

impl<'a> HintFile<'a> {
    /// Validates the whole file: trailer checksum, header, and every entry.
    pub fn decode(bytes: &'a [u8]) -> DecodeResult<Self> {
        Self::decode_with(bytes, |_, _| {})
    }

    /// [`HintFile::decode`], handing each entry and where it starts to `visit` as it is
    /// validated (an entry after a damaged one is never visited): one pass for callers that also
    /// check or split the entries.
    pub fn decode_with(
        bytes: &'a [u8],
        visit: impl FnMut(EntryStart, &HintEntry<'a>),
    ) -> DecodeResult<Self> {
        Self::decode_entries(bytes, Trailer::decode(bytes)?, visit)
    }

    /// [`HintFile::decode_with`] for bytes whose checksum already matched
    /// ([`HintFile::checked_entry_count`]), without checksumming them again: open checks every
    /// hint before it sizes the keydir, then loads them.
    pub(crate) fn decode_checked_with(
        bytes: &'a [u8],
        visit: impl FnMut(EntryStart, &HintEntry<'a>),
    ) -> DecodeResult<Self> {
        Self::decode_entries(bytes, Trailer::read(bytes)?.0, visit)
    }

    fn decode_entries(
        bytes: &'a [u8],
        trailer: Trailer,
        mut visit: impl FnMut(EntryStart, &HintEntry<'a>),
    ) -> DecodeResult<Self> {
        let Trailer { count, data_len } = trailer;
        let trailer_at = bytes.len() - HINT_TRAILER_LEN;
        let header = FileHeader::decode(bytes)?;
        if header.kind != FileKind::Hint {
            return Err(CorruptionKind::WrongFile);
        }
        let hint = HintFile {
            file_id: header.file_id,
            data_len,
            version: header.version,
            entries: &bytes[HEADER_LEN..trailer_at],
            start: EntryStart::FIRST,
        };
        let mut entries = hint.decoder();
        let mut parsed = 0u64;
        while let Some((start, entry)) = entries.next_entry().transpose()? {
            visit(start, &entry);
            parsed += 1;
        }
        if parsed != count {
            return Err(CorruptionKind::BadLength);
        }
        Ok(hint)
    }

    /// The number of entries the hint's trailer states, once the checksum over the whole file
    /// matched (so a damaged count is never believed); the entries are not decoded. Open sizes
    /// the keydir with it before it loads the hints.
    pub fn checked_entry_count(bytes: &[u8]) -> DecodeResult<u64> {
        Trailer::decode(bytes).map(|trailer| trailer.count)
    }

    /// The format version the hint was written in (see [`FileHeader::version`]).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The entries, in the order they were pushed.
    pub fn entries(&self) -> impl Iterator<Item = HintEntry<'a>> + use<'a> {
        self.positioned_entries().map(|(_, entry)| entry)
    }

    /// The entries, each with where it starts: the boundaries [`HintFile::part`] splits at.
    pub fn positioned_entries(
        &self,
    ) -> impl Iterator<Item = (EntryStart, HintEntry<'a>)> + use<'a> {
        let mut entries = self.decoder();
        std::iter::from_fn(move || {
            let next = entries.next_entry()?;
            // `decode` validated every entry, and a part starts where an entry did.
            Some(next.expect("hint entries were validated by `HintFile::decode`"))
        })
    }

    /// The entries from `start` up to `end` (the start of a later entry; `None` for the end of
    /// the hint), both from [`HintFile::positioned_entries`], as a hint of their own, so that
    /// parts of one hint can be loaded on different threads.
    ///
    /// # Panics
    ///
    /// If `start` lies after `end`, or either lies beyond this hint's entries. Both must come
    /// from this hint's [`HintFile::positioned_entries`]: positions from another hint give a
    /// part of wrong entries, or one whose iterators panic.
    pub fn part(&self, start: EntryStart, end: Option<EntryStart>) -> HintFile<'a> {
        let end = end.map_or(self.entries.len(), |end| end.at);
        HintFile {
            entries: &self.entries[start.at..end],
            start: EntryStart { at: 0, ..start },
            ..*self
        }
    }

    /// Whether open trusts this hint as the index of data file `file_id`, `data_len` bytes long:
    /// it names that file and length, and its entries fit the file ([`EntryFit`]).
    pub fn indexes(&self, file_id: FileId, data_len: u64) -> bool {
        if self.file_id != file_id || self.data_len != data_len {
            return false;
        }
        let mut fit = EntryFit::new(data_len);
        self.entries().for_each(|entry| fit.check(&entry));
        fit.fits()
    }

    fn decoder(&self) -> EntryDecoder<'a> {
        EntryDecoder {
            version: self.version,
            r: Reader::new(self.entries),
            next: self.start,
        }
    }
}

/// A hint file's trailer.
struct Trailer {
    count: u64,
    data_len: u64,
}

impl Trailer {
    /// The trailer, once the checksum over the whole file matched.
    fn decode(bytes: &[u8]) -> DecodeResult<Self> {
        let (trailer, crc) = Trailer::read(bytes)?;
        verify_crc(crc, &bytes[..bytes.len() - 4])?;
        Ok(trailer)
    }

    /// The trailer and the checksum it stores, unchecked.
    fn read(bytes: &[u8]) -> DecodeResult<(Self, u32)> {
        if bytes.len() < HEADER_LEN + HINT_TRAILER_LEN {
            return Err(CorruptionKind::Truncated);
        }
        let mut trailer = Reader::new(&bytes[bytes.len() - HINT_TRAILER_LEN..]);
        let count = trailer.u64()?;
        let data_len = trailer.u64()?;
        Ok((Trailer { count, data_len }, trailer.u32()?))
    }
}

/// The rule open applies, entry by entry, before it trusts a hint as its data file's index:
/// every entry lies inside the file, at an offset the keydir addresses, and starts where the
/// previous one's record ends (the first at the end of the file header), and the records end
/// exactly where the file does. That is what the merge that wrote it produced (a merged file's
/// records lie back to back, one entry each); anything else cannot be trusted as an index.
///
/// The exact end matters most for version 2 hints, which store no offsets: one wrong length
/// moves every later entry, and an index that points beside a key's record makes merge leave
/// that record behind. One wrong length cannot pass; two that cancel out still could, as a wrong
/// offset could in version 1 (the checksum only proves the hint is what was written). Version 1
/// entries, which state their offsets, must not leave a gap either: a record no entry names
/// would be skipped, and a tombstone skipped brings its key back.
#[derive(Debug, Clone)]
pub struct EntryFit {
    file_len: u64,
    next_free: u64,
    fits: bool,
}

impl EntryFit {
    /// Checks entries against a data file of `file_len` bytes.
    pub fn new(file_len: u64) -> Self {
        EntryFit {
            file_len,
            next_free: HEADER_LEN as u64,
            fits: true,
        }
    }

    /// Checks the next entry, in the hint's order.
    pub fn check(&mut self, entry: &HintEntry) {
        match entry.record_end() {
            Ok(end)
                if entry.offset == self.next_free
                    && end <= self.file_len
                    && entry.offset <= u64::from(u32::MAX) =>
            {
                self.next_free = end;
            }
            _ => self.fits = false,
        }
    }

    /// Whether every entry fitted and the records end where the file does.
    pub fn fits(&self) -> bool {
        self.fits && self.next_free == self.file_len
    }
}

/// Decodes a hint's entries one after the other, carrying what version 2's entries build on.
struct EntryDecoder<'a> {
    version: u16,
    r: Reader<'a>,
    next: EntryStart,
}

impl<'a> EntryDecoder<'a> {
    /// The next entry and where it started, or `None` at the end of the entry bytes.
    #[inline]
    fn next_entry(&mut self) -> Option<DecodeResult<(EntryStart, HintEntry<'a>)>> {
        if self.r.is_at_end() {
            return None;
        }
        let start = EntryStart {
            at: self.r.position(),
            ..self.next
        };
        Some(self.decode(start).map(|entry| (start, entry)))
    }

    #[inline]
    fn decode(&mut self, start: EntryStart) -> DecodeResult<HintEntry<'a>> {
        let entry = match self.version {
            1 => decode_v1_entry(&mut self.r)?,
            2 => decode_entry(&mut self.r, start)?,
            // The header decoder admits only the versions above.
            other => return Err(CorruptionKind::UnsupportedVersion(other)),
        };
        self.next.prev_seq = entry.seq;
        self.next.offset = entry.record_end()?;
        Ok(entry)
    }
}

#[inline]
fn decode_entry<'a>(r: &mut Reader<'a>, start: EntryStart) -> DecodeResult<HintEntry<'a>> {
    let flags = r.u8()?;
    let key_len = r.varint()?;
    let value_len = r.varint()?;
    let seq = start.prev_seq.wrapping_add(unzigzag(r.varint()?));
    let (key_len, value_len) = checked_lengths(key_len, value_len)?;
    Ok(HintEntry {
        seq: checked_seq(seq)?,
        kind: kind_of(flags, value_len)?,
        key: r.take(key_len)?,
        value_len,
        offset: start.offset,
    })
}

/// A version 1 entry, which stores its seq and offset whole.
fn decode_v1_entry<'a>(r: &mut Reader<'a>) -> DecodeResult<HintEntry<'a>> {
    let seq = r.u64()?;
    let flags = r.u8()?;
    let key_len = r.u32()?;
    let value_len = r.u32()?;
    let offset = r.u64()?;
    let (key_len, value_len) = checked_lengths(key_len.into(), value_len.into())?;
    let kind = kind_of(flags, value_len)?;
    Ok(HintEntry {
        seq: checked_seq(seq)?,
        kind,
        key: r.take(key_len)?,
        value_len,
        offset,
    })
}

fn push_v1_entry(buf: &mut Vec<u8>, entry: &HintEntry, flags: u8) {
    buf.extend_from_slice(&entry.seq.to_le_bytes());
    buf.push(flags);
    buf.extend_from_slice(&(entry.key.len() as u32).to_le_bytes());
    buf.extend_from_slice(&entry.value_len.to_le_bytes());
    buf.extend_from_slice(&entry.offset.to_le_bytes());
    buf.extend_from_slice(entry.key);
}

fn checked_lengths(key_len: u64, value_len: u64) -> DecodeResult<(usize, u32)> {
    if key_len > MAX_KEY_LEN as u64 || value_len > MAX_VALUE_LEN as u64 {
        return Err(CorruptionKind::BadLength);
    }
    Ok((key_len as usize, value_len as u32))
}

fn kind_of(flags: u8, value_len: u32) -> DecodeResult<RecordKind> {
    match flags {
        0 => Ok(RecordKind::Put),
        1 if value_len == 0 => Ok(RecordKind::Tombstone),
        other => Err(CorruptionKind::UnknownValue(other.into())),
    }
}

fn checked_seq(seq: u64) -> DecodeResult<u64> {
    if valid_seq(seq) {
        Ok(seq)
    } else {
        Err(CorruptionKind::UnknownValue(seq))
    }
}

/// Maps a wrapping difference of seqs to a small number when it is small either way:
/// 0, -1, 1, -2, ... to 0, 1, 2, 3, ...
fn zigzag(delta: u64) -> u64 {
    let delta = delta as i64;
    ((delta << 1) ^ (delta >> 63)) as u64
}

/// The inverse of [`zigzag`].
fn unzigzag(encoded: u64) -> u64 {
    (encoded >> 1) ^ (encoded & 1).wrapping_neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::MAX_SEQ;

    fn sample() -> Vec<u8> {
        sample_in(HintBuilder::new(9))
    }

    fn sample_in(mut builder: HintBuilder) -> Vec<u8> {
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

    /// The exact bytes of version 2 entries, so that the builder and the decoder cannot drift
    /// together from `docs/format.md` (field order, varints, zigzag) and still round-trip.
    #[test]
    fn version_2_entries_are_the_documented_bytes() {
        let bytes = sample();
        assert_eq!(&bytes[8..10], &[2, 0], "header version");
        let entries = &bytes[HEADER_LEN..bytes.len() - HINT_TRAILER_LEN];
        #[rustfmt::skip]
        let expected = [
            0, 5, 0xAC, 0x02, 10, b'a', b'l', b'p', b'h', b'a', // put, 300 (LEB128), seq 5 (zigzag 10)
            1, 0, 0, 2,                                         // tombstone, seq 6 (step 1: zigzag 2)
        ];
        assert_eq!(entries, expected);
        let trailer = &bytes[bytes.len() - HINT_TRAILER_LEN..bytes.len() - 4];
        assert_eq!(trailer, [2, 0, 0, 0, 0, 0, 0, 0, 0x6F, 1, 0, 0, 0, 0, 0, 0]);
    }

    /// The sample in both versions.
    fn samples() -> [Vec<u8>; 2] {
        [sample(), sample_in(HintBuilder::version_1(9))]
    }

    #[test]
    fn round_trips_in_both_versions() {
        for (bytes, version) in samples().iter().zip([FORMAT_VERSION, 1]) {
            let hint = HintFile::decode(bytes).unwrap();
            assert_eq!((hint.file_id, hint.data_len), (9, 367));
            assert_eq!(hint.version(), version);
            let entries: Vec<_> = hint.entries().collect();
            assert_eq!(entries.len(), 2);
            assert_eq!(entries[0].key, b"alpha");
            assert_eq!(entries[1].kind, RecordKind::Tombstone);
            assert_eq!(entries[1].offset, 346);
            let mut rebuilt = HintBuilder::in_version(hint.file_id, version);
            for entry in &entries {
                rebuilt.push(entry);
            }
            assert_eq!(&rebuilt.finish(hint.data_len), bytes);
        }
    }

    #[test]
    fn parts_at_entry_boundaries_hold_exactly_their_entries() {
        let bytes = sample();
        let hint = HintFile::decode(&bytes).unwrap();
        let starts: Vec<EntryStart> = hint.positioned_entries().map(|(at, _)| at).collect();
        assert_eq!(starts[0], EntryStart::FIRST);
        let first = hint.part(starts[0], Some(starts[1]));
        let second = hint.part(starts[1], None);
        assert_eq!(first.entries().collect::<Vec<_>>(), [entry(0)]);
        assert_eq!(second.entries().collect::<Vec<_>>(), [entry(1)]);
        assert_eq!((second.file_id, second.data_len), (9, 367));
    }

    fn entry(n: usize) -> HintEntry<'static> {
        let bytes = sample().leak();
        HintFile::decode(bytes).unwrap().entries().nth(n).unwrap()
    }

    #[test]
    fn seqs_are_stored_as_differences_either_way() {
        let mut builder = HintBuilder::new(1);
        let mut offset = HEADER_LEN as u64;
        let seqs = [1_000_000, 999_999, 1_000_001, MAX_SEQ, 1, 2];
        for seq in seqs {
            let entry = HintEntry {
                seq,
                kind: RecordKind::Put,
                key: b"k",
                value_len: 1,
                offset,
            };
            builder.push(&entry);
            offset = entry.record_end().unwrap();
        }
        let bytes = builder.finish(offset);
        let hint = HintFile::decode(&bytes).unwrap();
        assert_eq!(hint.entries().map(|e| e.seq).collect::<Vec<_>>(), seqs);
        // 1,000,000 takes three bytes; each step of one to three takes one, whichever way; the
        // differences wrap, so MAX_SEQ is a step of -1,000,003 (three bytes) and 1 after it +3.
        let seq_bytes: usize = 3 + 1 + 1 + 3 + 1 + 1;
        let entry_bytes = seqs.len() * (1 + 1 + 1 + 1) + seq_bytes;
        assert_eq!(bytes.len(), HEADER_LEN + entry_bytes + HINT_TRAILER_LEN);
    }

    #[test]
    #[should_panic(expected = "back-to-back")]
    fn a_gap_between_records_cannot_be_described() {
        let mut builder = HintBuilder::new(1);
        builder.push(&HintEntry {
            seq: 1,
            kind: RecordKind::Put,
            key: b"k",
            value_len: 1,
            offset: HEADER_LEN as u64 + 1,
        });
    }

    #[test]
    fn zigzag_is_a_bijection_that_keeps_small_steps_small() {
        for delta in [0, 1, 2, u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1] {
            assert_eq!(unzigzag(zigzag(delta)), delta);
            assert_eq!(zigzag(unzigzag(delta)), delta);
        }
        assert_eq!(zigzag(1u64.wrapping_neg()), 1);
        assert_eq!(zigzag(1), 2);
    }

    /// A hint merge wrote in version 1 (`tests/fixtures/format-v1`): it decodes, each entry
    /// names the record at its offset in the data file, back to back, and the data file's length
    /// is the one the trailer names.
    #[test]
    fn reads_version_1_hints() {
        let hint_bytes = include_bytes!("../../tests/fixtures/format-v1/0000000007.hint");
        let data = include_bytes!("../../tests/fixtures/format-v1/0000000007.data");
        let hint = HintFile::decode(hint_bytes).unwrap();
        assert_eq!((hint.version(), hint.file_id), (1, 7));
        assert_eq!(hint.data_len, data.len() as u64);
        let mut next = HEADER_LEN as u64;
        let mut count = 0;
        for entry in hint.entries() {
            assert_eq!(entry.offset, next);
            let record = Record::decode(&data[entry.offset as usize..]).unwrap();
            assert_eq!(HintEntry::of(&record, entry.offset), entry);
            next = entry.record_end().unwrap();
            count += 1;
        }
        assert_eq!(next, data.len() as u64);
        let mut scanned = 0;
        let mut at = HEADER_LEN;
        while at < data.len() {
            at += Record::decode(&data[at..]).unwrap().encoded_len() as usize;
            scanned += 1;
        }
        assert_eq!(count, scanned, "one entry per record");
    }

    #[test]
    fn a_version_2_hint_is_about_half_the_size_of_version_1() {
        let v1 = include_bytes!("../../tests/fixtures/format-v1/0000000007.hint");
        let hint = HintFile::decode(v1).unwrap();
        let mut v2 = HintBuilder::new(hint.file_id);
        for entry in hint.entries() {
            v2.push(&entry);
        }
        let v2 = v2.finish(hint.data_len);
        let rebuilt = HintFile::decode(&v2).unwrap();
        assert_eq!(rebuilt.version(), FORMAT_VERSION);
        assert!(hint.entries().eq(rebuilt.entries()));
        // Keys of 8 bytes: 33 bytes an entry in version 1, 12 in version 2.
        assert!(v2.len() * 2 < v1.len(), "{} against {}", v2.len(), v1.len());
    }

    #[test]
    fn rejects_every_truncation_and_bit_flip() {
        for bytes in samples() {
            for len in 0..bytes.len() {
                assert!(HintFile::decode(&bytes[..len]).is_err(), "len {len}");
            }
            for bit in 0..bytes.len() * 8 {
                let mut flipped = bytes.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                assert!(HintFile::decode(&flipped).is_err(), "bit {bit}");
            }
        }
    }

    /// With its checksums made right again, a version 2 entry whose varint is not in its
    /// shortest form, or overflows 64 bits, is refused.
    #[test]
    fn rejects_malformed_varints_with_valid_checksums() {
        let entry = |varints: &[u8]| {
            let mut bytes = FileHeader::new(FileKind::Hint, 1).encode().to_vec();
            bytes.push(0);
            bytes.extend_from_slice(varints);
            bytes.extend_from_slice(&1u64.to_le_bytes());
            bytes.extend_from_slice(&(HEADER_LEN as u64 + 21).to_le_bytes());
            let crc = crc32fast::hash(&bytes);
            bytes.extend_from_slice(&crc.to_le_bytes());
            HintFile::decode(&bytes).map(|hint| hint.entries().count())
        };
        // key_len 0, value_len 0, seq 0 + 1: one empty put.
        assert_eq!(entry(&[0, 0, 2]), Ok(1));
        assert_eq!(entry(&[0x80, 0, 0, 2]), Err(CorruptionKind::BadVarint));
        let eleven_bytes = [
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
        ];
        let mut too_long = vec![0, 0];
        too_long.extend_from_slice(&eleven_bytes);
        assert_eq!(entry(&too_long), Err(CorruptionKind::BadVarint));
        // Fuzzing found a tenth byte of 2 (bit 64) accepted and dropped by the first decoder.
        let mut past_64_bits = vec![0, 0];
        past_64_bits.extend_from_slice(&eleven_bytes[..9]);
        past_64_bits.push(0x02);
        assert_eq!(entry(&past_64_bits), Err(CorruptionKind::BadVarint));
        assert_eq!(entry(&[0, 0]), Err(CorruptionKind::Truncated));
    }

    #[test]
    fn empty_hint_is_valid() {
        let bytes = HintBuilder::new(1).finish(20);
        assert_eq!(HintFile::decode(&bytes).unwrap().entries().count(), 0);
    }
}
