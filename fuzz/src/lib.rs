//! Shared code of the bitcask fuzz targets: the structured inputs (derived with `arbitrary`), the
//! checks each target runs, and the encoder that turns structured inputs back into fuzz input
//! bytes so that `make_corpus` can write seed corpora.
//!
//! Every target in `fuzz_targets/` is a thin wrapper around one `check_*` function here, so the
//! corpus generator can run every seed it writes through exactly the checks the fuzzer runs.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use bitcask::format::FileId;
use bitcask::format::commit::MergeCommit;
use bitcask::format::header::{FORMAT_VERSION, FileHeader, FileKind, HEADER_LEN};
use bitcask::format::hint::{HintBuilder, HintEntry, HintFile};
use bitcask::format::record::{self, RECORD_HEADER_LEN, Record, RecordKind};
use bitcask::{Config, Database, Error};

pub mod faults;
pub mod seed;

pub use faults::{FaultKind, FaultOp, FaultsInput, Policy, check_ops_faults, io_ops};

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/// The keys the structured targets use: few, so that overwrites, removes and merges hit the
/// same keys often. Includes the empty key (valid) and keys with non-ASCII bytes.
pub const KEYS: [&[u8]; 8] = [
    b"",
    b"a",
    b"b",
    b"key:3",
    b"\x00\xff",
    b"user/42/profile",
    b"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
    b"\x89BCK",
];

/// The key with index `index` (modulo the alphabet).
pub fn key(index: u8) -> &'static [u8] {
    KEYS[usize::from(index) % KEYS.len()]
}

/// A scratch directory for one store, removed when dropped.
///
/// Prefers `$BITCASK_FUZZ_TMPDIR`, then `/dev/shm` (tmpfs: the engine's many fsyncs cost
/// nothing there, which multiplies executions per second), then the system temp dir.
pub fn scratch_dir() -> tempfile::TempDir {
    let base = std::env::var_os("BITCASK_FUZZ_TMPDIR")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()))
        .unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new()
        .prefix("bitcask-fuzz-")
        .tempdir_in(&base)
        .or_else(|_| tempfile::tempdir())
        .expect("creating a scratch directory")
}

/// Opens the store the `recover` and `ops` targets work on. The one place that decides how a
/// store is opened, so that a simulated-I/O layer with fault injection can be swapped in here.
///
/// The background merge thread is off: libFuzzer needs a target that behaves the same on every
/// run of an input, and `Op::CrashCopy` copies the files one by one, which is a crash snapshot
/// only while no other thread changes them. (A background merge racing the copy produces
/// states no real crash can, and with them false reports.)
pub fn open_store(dir: &Path, data_file_limit: u64) -> bitcask::Result<Database> {
    Config::new(dir)
        .data_file_limit(data_file_limit)
        .background_merge(false)
        .open()
}

/// Bytes with a little-endian `u16` length prefix (capped at what is left of the input).
///
/// `Vec<u8>`'s own `Arbitrary` impl spends a "continue?" byte per element; this spends two
/// bytes per blob, which keeps fuzz inputs (and seeds built from real files) compact.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.len() <= 64 {
            write!(f, "b\"{}\"", self.0.escape_ascii())
        } else {
            write!(
                f,
                "b\"{}\"..({} bytes)",
                self.0[..64].escape_ascii(),
                self.0.len()
            )
        }
    }
}

impl<'a> Arbitrary<'a> for Bytes {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let len = usize::from(u16::arbitrary(u)?).min(u.len());
        Ok(Bytes(u.bytes(len)?.to_vec()))
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (2, None)
    }
}

/// Every (key, value) of a valid put record found at *any* offset of any of `files`.
///
/// This is the `recover` target's oracle: whatever the engine returns for a key must be the
/// value of some valid record of that key in the files it was given. Scanning every offset (not
/// only record boundaries) keeps the oracle sound when a damaged hint file points into the
/// middle of another record's value and a valid record happens to be nested there.
pub fn put_pairs<'a>(files: impl IntoIterator<Item = &'a [u8]>) -> HashSet<(Vec<u8>, Vec<u8>)> {
    let mut pairs = HashSet::new();
    for bytes in files {
        for offset in 0..bytes.len() {
            if let Ok(rec) = Record::decode(&bytes[offset..])
                && rec.kind == RecordKind::Put
            {
                pairs.insert((rec.key.to_vec(), rec.value.to_vec()));
            }
        }
    }
    pairs
}

// ---------------------------------------------------------------------------------------------
// Target `record`: Record::decode, scan, FileHeader::decode
// ---------------------------------------------------------------------------------------------

/// Decodes `bytes` as a record, as a run of records, and as a file header; everything that
/// decodes must re-encode to exactly the bytes it came from. Then does the same on a copy whose
/// checksums were recomputed, so the fuzzer also explores the checks behind the CRC.
pub fn check_record(bytes: &[u8]) {
    check_record_bytes(bytes);
    // The bytes as a run of records with valid checksums.
    let mut fixed = bytes.to_vec();
    fix_record_crcs(&mut fixed);
    check_record_bytes(&fixed);
    // The bytes as a data file: a header with a valid checksum, then records with valid ones.
    if bytes.len() >= HEADER_LEN {
        let mut fixed = bytes.to_vec();
        fix_header_crc(&mut fixed);
        fix_record_crcs_from(&mut fixed, HEADER_LEN);
        check_record_bytes(&fixed);
        let scanned: Vec<_> = record::scan(&fixed, HEADER_LEN).collect();
        check_scan(&fixed, HEADER_LEN, &scanned);
    }
}

fn check_record_bytes(bytes: &[u8]) {
    if let Ok(rec) = Record::decode(bytes) {
        check_record_round_trip(bytes, &rec);
        // Recovery's search for records behind damage skips offsets this rejects.
        assert!(
            record::could_start_record(bytes),
            "a record that decodes was ruled out"
        );
    }
    // Inputs this small stay inside the search's checksum budget, so recovery's test for
    // records behind damage answers exactly: whether one decodes after the first byte.
    let decodes_after_first = (1..bytes.len())
        .any(|at| record::could_start_record(&bytes[at..]) && Record::decode(&bytes[at..]).is_ok());
    assert_eq!(
        record::may_hold_records(bytes),
        decodes_after_first,
        "the search for records behind damage"
    );
    let scanned: Vec<_> = record::scan(bytes, 0).collect();
    check_scan(bytes, 0, &scanned);
    // A start at or past the end yields nothing (and must not slice out of bounds).
    let start = bytes.first().map_or(0, |&b| usize::from(b));
    let scanned: Vec<_> = record::scan(bytes, start).collect();
    if start >= bytes.len() {
        assert!(scanned.is_empty(), "scan from {start} past the end yielded");
    } else {
        check_scan(bytes, start, &scanned);
    }
    if let Ok(header) = FileHeader::decode(bytes) {
        assert!(bytes.len() >= HEADER_LEN);
        assert_eq!(header.encode(), bytes[..HEADER_LEN], "{header:?}");
    }
}

fn check_record_round_trip(bytes: &[u8], rec: &Record) {
    let len = usize::try_from(rec.encoded_len()).expect("record length fits usize");
    assert!(
        len <= bytes.len(),
        "decoded {len} bytes out of {}",
        bytes.len()
    );
    assert_eq!(len, RECORD_HEADER_LEN + rec.key.len() + rec.value.len());
    assert_ne!(rec.seq, 0, "seq 0 decoded");
    if rec.kind == RecordKind::Tombstone {
        assert!(rec.value.is_empty(), "tombstone with a value");
    }
    let mut out = Vec::new();
    rec.encode_into(&mut out);
    assert_eq!(out, &bytes[..len], "re-encoding {rec:?}");
}

type Scanned<'a> = (u64, bitcask::format::DecodeResult<Record<'a>>);

fn check_scan(bytes: &[u8], start: usize, scanned: &[Scanned<'_>]) {
    let mut pos = start;
    for (i, (offset, decoded)) in scanned.iter().enumerate() {
        assert_eq!(*offset, pos as u64, "scan offsets must be contiguous");
        assert!(pos < bytes.len());
        match decoded {
            Ok(rec) => {
                check_record_round_trip(&bytes[pos..], rec);
                pos += rec.encoded_len() as usize;
            }
            Err(kind) => {
                assert_eq!(i + 1, scanned.len(), "scan went on after an error");
                assert_eq!(Record::decode(&bytes[pos..]), Err(*kind));
                return;
            }
        }
    }
    assert_eq!(
        pos,
        bytes.len().max(start),
        "scan stopped early without an error"
    );
}

/// Recomputes the checksum of the record at the start of `bytes` and of every record after it,
/// as long as the length fields fit in the buffer.
pub fn fix_record_crcs(bytes: &mut [u8]) {
    fix_record_crcs_from(bytes, 0);
}

fn fix_record_crcs_from(bytes: &mut [u8], mut pos: usize) {
    while pos + RECORD_HEADER_LEN <= bytes.len() {
        let field = |at: usize| {
            u32::from_le_bytes(bytes[pos + at..pos + at + 4].try_into().unwrap()) as usize
        };
        let (key_len, value_len) = (field(13), field(17));
        let Some(end) = (pos + RECORD_HEADER_LEN)
            .checked_add(key_len)
            .and_then(|e| e.checked_add(value_len))
            .filter(|&e| e <= bytes.len())
        else {
            return;
        };
        let crc = crc32fast::hash(&bytes[pos + 4..end]);
        bytes[pos..pos + 4].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}

/// Recomputes a file header's checksum (bytes 16..20 over bytes 0..16).
pub fn fix_header_crc(bytes: &mut [u8]) {
    if bytes.len() >= HEADER_LEN {
        let crc = crc32fast::hash(&bytes[..16]);
        bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// Target `hint`: HintFile::decode, MergeCommit::decode
// ---------------------------------------------------------------------------------------------

/// Decodes `bytes` as a hint file and as a merge commit record; whatever decodes must be rebuilt
/// by the encoders into exactly `bytes`. Also on a copy with recomputed checksums.
pub fn check_hint(bytes: &[u8]) {
    check_hint_bytes(bytes);
    if bytes.len() >= HEADER_LEN + 20 {
        let mut fixed = bytes.to_vec();
        fix_header_crc(&mut fixed);
        let body = fixed.len() - 4;
        let crc = crc32fast::hash(&fixed[..body]);
        fixed[body..].copy_from_slice(&crc.to_le_bytes());
        check_hint_bytes(&fixed);
    }
    if bytes.len() >= 12 {
        let mut fixed = bytes.to_vec();
        fix_commit_crc(&mut fixed);
        check_hint_bytes(&fixed);
    }
}

fn check_hint_bytes(bytes: &[u8]) {
    if let Ok(hint) = HintFile::decode(bytes) {
        let mut next_offset = HEADER_LEN as u64;
        let mut back_to_back = true;
        for entry in hint.entries() {
            assert_ne!(entry.seq, 0);
            if entry.kind == RecordKind::Tombstone {
                assert_eq!(entry.value_len, 0, "tombstone entry with a value length");
            }
            back_to_back &= entry.offset == next_offset;
            next_offset = entry
                .record_end()
                .expect("a decoded entry's record has an end");
        }
        check_parts(&hint);
        if hint.version() == FORMAT_VERSION {
            assert!(back_to_back, "a version 2 hint stores no offsets");
            assert_eq!(rebuild(&hint), bytes, "hint rebuilt differently");
        } else if back_to_back {
            // A version 1 hint is rebuilt in this build's version, with the same entries.
            let rebuilt = rebuild(&hint);
            let again = HintFile::decode(&rebuilt).expect("a rebuilt hint decodes");
            assert!(again.entries().eq(hint.entries()));
        }
    }
    if let Ok(commit) = MergeCommit::decode(bytes) {
        assert_eq!(commit.encode(), bytes, "{commit:?}");
    }
}

/// A part of the hint started at an entry (the first, one in the middle, the last) holds exactly
/// the entries from there on, as open's threads decode them.
fn check_parts(hint: &HintFile) {
    let positioned: Vec<_> = hint.positioned_entries().collect();
    let all: Vec<_> = positioned.iter().map(|(_, entry)| *entry).collect();
    let mut starts = vec![0, positioned.len() / 2, positioned.len().saturating_sub(1)];
    starts.dedup();
    for n in starts {
        let Some(&(start, _)) = positioned.get(n) else {
            continue;
        };
        let tail: Vec<_> = hint.part(start, None).entries().collect();
        assert_eq!(tail, all[n..], "part from entry {n}");
    }
}

/// The hint's entries written again by `HintBuilder`.
fn rebuild(hint: &HintFile) -> Vec<u8> {
    let mut rebuilt = HintBuilder::new(hint.file_id);
    for entry in hint.entries() {
        rebuilt.push(&entry);
    }
    rebuilt.finish(hint.data_len)
}

/// Makes the commit record's checksum right if its two counts fit in `bytes`, and cuts `bytes`
/// to exactly one record.
fn fix_commit_crc(bytes: &mut Vec<u8>) {
    let count_at = |at: usize, bytes: &[u8]| -> Option<usize> {
        let raw = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes(raw.try_into().unwrap()) as usize)
    };
    let Some(inputs) = count_at(8, bytes) else {
        return;
    };
    let Some(outputs_at) = inputs.checked_mul(4).and_then(|n| n.checked_add(12)) else {
        return;
    };
    let Some(outputs) = count_at(outputs_at, bytes) else {
        return;
    };
    let Some(body_len) = outputs
        .checked_mul(4)
        .and_then(|n| n.checked_add(outputs_at + 4))
    else {
        return;
    };
    if body_len + 4 > bytes.len() {
        return;
    }
    bytes.truncate(body_len + 4);
    let crc = crc32fast::hash(&bytes[..body_len]);
    bytes[body_len..].copy_from_slice(&crc.to_le_bytes());
}

// ---------------------------------------------------------------------------------------------
// Target `recover`: open an arbitrary directory image
// ---------------------------------------------------------------------------------------------

/// A store directory image: files with the engine's names and arbitrary or structured contents.
/// A later file of the same name replaces an earlier one.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub files: Vec<FileSpec>,
}

/// One file of an [`Image`].
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// File id, mapped into 1..=8.
    pub id: u8,
    pub name: NameKind,
    pub contents: Contents,
}

/// Which of the engine's file names the file gets (see `src/io/layout.rs`).
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// `{id:010}.data`
    Data,
    /// `{id:010}.hint`
    Hint,
    /// `MERGE` (the id is unused)
    Merge,
    /// `{id:010}.data.tmp`
    DataTmp,
    /// `{id:010}.hint.tmp`
    HintTmp,
}

/// What a file holds.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// These exact bytes.
    Raw(Bytes),
    /// Encoded with the engine's own encoders: for a hint name, a hint file describing these
    /// records laid out in a data file; for any other name, a data file (header, records).
    Records {
        /// Header kind `Merged` instead of `Data`.
        merged: bool,
        records: Vec<RecordSpec>,
        damage: Damage,
    },
    /// A merge commit record naming these file ids (each mapped into 1..=8).
    Commit {
        inputs: Vec<u8>,
        outputs: Vec<u8>,
        damage: Damage,
    },
    /// A hint file with a valid checksum whose entries say anything: wrong lengths, keys the
    /// data file doesn't hold, and in version 1 offsets into the middle of records and
    /// overlapping records.
    Hint {
        /// `None`: the length of the data file this hint belongs to in the image (the file of
        /// the same id; `.data.tmp` for a `.hint.tmp`), so that recovery trusts the hint.
        data_len: Option<u16>,
        entries: Vec<HintEntrySpec>,
        damage: Damage,
        /// Written in version 1, which stores each entry's offset; else in this build's
        /// version, where each record starts where the previous one ends.
        version_1: bool,
    },
}

/// One entry of [`Contents::Hint`].
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct HintEntrySpec {
    pub seq: Seq,
    /// A tombstone's value length is written as 0.
    pub tombstone: bool,
    /// Index into [`KEYS`].
    pub key: u8,
    pub value_len: u16,
    /// Used by version 1 hints only.
    pub offset: u16,
}

/// One record of [`Contents::Records`].
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct RecordSpec {
    pub seq: Seq,
    pub tombstone: bool,
    /// Index into [`KEYS`].
    pub key: u8,
    /// Ignored for a tombstone.
    pub value: Bytes,
}

/// A record's sequence number: mostly small (so records of different files collide and order
/// matters), sometimes any nonzero `u64` (edges such as `u64::MAX`).
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seq {
    /// `1 + n`
    Small(u8),
    /// `max(n, 1)`
    Any(u64),
}

impl Seq {
    pub fn get(self) -> u64 {
        match self {
            Seq::Small(n) => u64::from(n) + 1,
            Seq::Any(n) => n.max(1),
        }
    }
}

/// What happens to the encoded bytes afterwards.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    None,
    /// Cut to `n % (len + 1)` bytes: a torn write.
    Truncate(u16),
    /// XOR the byte at `at % len` with a nonzero mask: bit rot.
    Flip {
        at: u16,
        mask: u8,
    },
}

/// Maps an id byte into the file ids the images use.
pub fn image_id(id: u8) -> FileId {
    1 + FileId::from(id % 8)
}

impl FileSpec {
    /// The file's name in the store directory.
    pub fn file_name(&self) -> String {
        let id = image_id(self.id);
        match self.name {
            NameKind::Data => format!("{id:010}.data"),
            NameKind::Hint => format!("{id:010}.hint"),
            NameKind::Merge => "MERGE".to_string(),
            NameKind::DataTmp => format!("{id:010}.data.tmp"),
            NameKind::HintTmp => format!("{id:010}.hint.tmp"),
        }
    }

    /// The name of the data file a hint of this name describes.
    fn described_data_file(&self) -> String {
        let id = image_id(self.id);
        match self.name {
            NameKind::HintTmp => format!("{id:010}.data.tmp"),
            _ => format!("{id:010}.data"),
        }
    }

    /// The file's bytes; `dir` holds the other files (for [`Contents::Hint`]'s `data_len`).
    pub fn render(&self, dir: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
        let id = image_id(self.id);
        match &self.contents {
            Contents::Raw(bytes) => bytes.0.clone(),
            Contents::Records {
                merged,
                records,
                damage,
            } => {
                let hint_name = matches!(self.name, NameKind::Hint | NameKind::HintTmp);
                let kind = if *merged {
                    FileKind::Merged
                } else {
                    FileKind::Data
                };
                let mut bytes = if hint_name {
                    encode_hint(id, records)
                } else {
                    encode_data(id, kind, records)
                };
                damage.apply(&mut bytes);
                bytes
            }
            Contents::Commit {
                inputs,
                outputs,
                damage,
            } => {
                let ids = |ids: &[u8]| ids.iter().map(|&i| image_id(i)).collect();
                let mut bytes = MergeCommit {
                    inputs: ids(inputs),
                    outputs: ids(outputs),
                }
                .encode();
                damage.apply(&mut bytes);
                bytes
            }
            Contents::Hint {
                data_len,
                entries,
                damage,
                version_1,
            } => {
                let data_len = match data_len {
                    Some(len) => u64::from(*len),
                    None => dir
                        .get(&self.described_data_file())
                        .map_or(HEADER_LEN as u64, |data| data.len() as u64),
                };
                let mut hint = if *version_1 {
                    HintBuilder::version_1(id)
                } else {
                    HintBuilder::new(id)
                };
                let mut next_offset = HEADER_LEN as u64;
                for entry in entries {
                    let (kind, value_len) = if entry.tombstone {
                        (RecordKind::Tombstone, 0)
                    } else {
                        (RecordKind::Put, u32::from(entry.value_len))
                    };
                    let key = key(entry.key);
                    let offset = if *version_1 {
                        u64::from(entry.offset)
                    } else {
                        next_offset
                    };
                    hint.push(&HintEntry {
                        seq: entry.seq.get(),
                        kind,
                        key,
                        value_len,
                        offset,
                    });
                    next_offset = offset + record::encoded_len(key.len(), value_len as usize);
                }
                let mut bytes = hint.finish(data_len);
                damage.apply(&mut bytes);
                bytes
            }
        }
    }
}

impl Damage {
    pub fn apply(self, bytes: &mut Vec<u8>) {
        match self {
            Damage::None => {}
            Damage::Truncate(n) => bytes.truncate(usize::from(n) % (bytes.len() + 1)),
            Damage::Flip { at, mask } => {
                if !bytes.is_empty() {
                    let at = usize::from(at) % bytes.len();
                    bytes[at] ^= mask.max(1);
                }
            }
        }
    }
}

impl RecordSpec {
    fn record(&self) -> Record<'_> {
        let (kind, value) = if self.tombstone {
            (RecordKind::Tombstone, &[][..])
        } else {
            (RecordKind::Put, &self.value.0[..])
        };
        Record {
            seq: self.seq.get(),
            kind,
            key: key(self.key),
            value,
        }
    }
}

/// A data file: header, then the records.
pub fn encode_data(id: FileId, kind: FileKind, records: &[RecordSpec]) -> Vec<u8> {
    let mut out = FileHeader::new(kind, id).encode().to_vec();
    for spec in records {
        spec.record().encode_into(&mut out);
    }
    out
}

/// The hint file of the data file `encode_data(id, _, records)`.
pub fn encode_hint(id: FileId, records: &[RecordSpec]) -> Vec<u8> {
    let mut hint = HintBuilder::new(id);
    let mut offset = HEADER_LEN as u64;
    for spec in records {
        let rec = spec.record();
        hint.push(&HintEntry::of(&rec, offset));
        offset += rec.encoded_len();
    }
    hint.finish(offset)
}

impl Image {
    /// The directory the image describes: file name -> bytes (later files win).
    pub fn render(&self) -> BTreeMap<String, Vec<u8>> {
        // Two passes: hint files may take their `data_len` from a data file's final length.
        let empty = BTreeMap::new();
        let first: BTreeMap<String, Vec<u8>> = self
            .files
            .iter()
            .map(|file| (file.file_name(), file.render(&empty)))
            .collect();
        self.files
            .iter()
            .map(|file| (file.file_name(), file.render(&first)))
            .collect()
    }
}

/// The key and value the `recover` target writes after a successful open.
pub const RECOVER_WRITE: (&[u8], &[u8]) = (b"a", b"written after recovery");

/// Writes the image into a fresh directory and opens it. Open may fail but must not panic (a
/// writer file it refuses as cut short, `RecordsMissingAtEnd`, is left out of the image and the
/// rest opened again, so that images with arbitrary seqs still get that far); if it succeeds, every value it returns must be one that a valid put record of that key in the
/// image holds. Then a write, a merge and a close must not panic, and if all three succeed the
/// store must reopen cleanly with the written value, and after the merge and after the reopen
/// every other key must answer as it did after the first open, but for keys a lying hint can
/// misplace ([`keys_hints_may_misplace`]).
pub fn check_recover(image: &Image) {
    let mut files = image.render();
    let (dir, db) = loop {
        let dir = scratch_dir();
        for (name, bytes) in &files {
            std::fs::write(dir.path().join(name), bytes).expect("writing the image");
        }
        match open_store(dir.path(), 4096) {
            Ok(db) => break (dir, db),
            // Arbitrary seqs rarely chain from one writer file to the next, which open refuses
            // as records missing; without the file it names, the rest of the image is still
            // worth opening (its neighbours are no longer compared: an id is missing between).
            Err(bitcask::Error::Corruption {
                path,
                kind: bitcask::CorruptionKind::RecordsMissingAtEnd { .. },
                ..
            }) => {
                let name = path.file_name().expect("a data file").to_string_lossy();
                assert!(
                    files.remove(&*name).is_some(),
                    "refused a file not in the image"
                );
            }
            Err(_) => return,
        }
    };
    let mut pairs = put_pairs(files.values().map(Vec::as_slice));
    let opened = check_reads(&db, &pairs, true);
    if let Some(expected) = exact_answers(&files) {
        for key in KEYS {
            let read = Answer::of(&db.read(key));
            let newest = expected.get(key).cloned().unwrap_or(Answer::NotFound);
            assert_eq!(
                read,
                newest,
                "{:?} in a clean image",
                key.escape_ascii().to_string()
            );
        }
    }
    check_fsync_failure_record_changes_nothing(&files, &pairs, &opened);
    let misplaced = keys_hints_may_misplace(&files);

    let (wkey, wvalue) = RECOVER_WRITE;
    let written = db.write(wkey, wvalue);
    let merged = db.merge();
    if written.is_ok() {
        pairs.insert((wkey.to_vec(), wvalue.to_vec()));
        let read = db.read(wkey);
        assert!(
            matches!(&read, Ok(v) if v == wvalue),
            "read after write (merge: {merged:?}): {read:?}"
        );
    }
    check_reads(&db, &pairs, true);
    if written.is_ok() && merged.is_ok() {
        assert_nothing_lost_or_revived(&db, &opened, &misplaced, wkey, "after the merge");
    }
    let closed = db.close();
    drop(db);
    if let (Ok(()), Ok(()), Ok(())) = (&written, &merged, &closed) {
        // A successful merge rewrote every record from validated bytes, so the reopened store
        // holds no corruption and the write survives.
        let db = open_store(dir.path(), 4096)
            .unwrap_or_else(|e| panic!("reopen after a clean write, merge and close: {e}"));
        assert_eq!(db.read(wkey).ok().as_deref(), Some(wvalue), "write lost");
        check_reads(&db, &pairs, false);
        let when = "after the merge and a reopen";
        assert_nothing_lost_or_revived(&db, &opened, &misplaced, wkey, when);
        db.close().expect("closing the reopened store");
    }
}

/// A failed fsync's record (`FSYNC_FAILED`) makes open write the named file's bytes past a
/// length again; where no page was dropped (a real file system here) that changes nothing. So
/// the image with one naming its newest data file, at a length taken from the image, opens to
/// the same answers as without it.
fn check_fsync_failure_record_changes_nothing(
    files: &BTreeMap<String, Vec<u8>>,
    pairs: &HashSet<(Vec<u8>, Vec<u8>)>,
    opened: &Answers,
) {
    let Some((name, bytes)) = files.iter().rev().find(|(name, _)| name.ends_with(".data")) else {
        return;
    };
    let Ok(file_id) = name.trim_end_matches(".data").parse() else {
        return;
    };
    let durable_len = (files.len() as u64 * 37 + bytes.len() as u64 / 3) % (bytes.len() as u64 + 2);
    let failure = bitcask::format::fsync_failure::FsyncFailure {
        file_id,
        durable_len,
    };
    let dir = scratch_dir();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).expect("writing the image");
    }
    std::fs::write(dir.path().join("FSYNC_FAILED"), failure.encode()).expect("writing");
    let db = open_store(dir.path(), 4096)
        .unwrap_or_else(|e| panic!("opens without the record, not with {failure:?}: {e}"));
    let answers = check_reads(&db, pairs, true);
    assert_eq!(&answers, opened, "answers with {failure:?}");
    assert!(!dir.path().join("FSYNC_FAILED").exists(), "record left");
}

/// What a clean image must answer for each key, where that is certain: the image holds only
/// data files, each of which decodes whole (a valid header naming its own id, then records to
/// its last byte), every seq is unique, and each writer file's seqs rise (as the writer appends).
/// Then each key's newest record, by seq, decides: a put's value, or not found for a tombstone.
/// `None` for any other image, where the weaker checks of [`check_reads`] hold.
fn exact_answers(files: &BTreeMap<String, Vec<u8>>) -> Option<Answers> {
    let mut seen = BTreeSet::new();
    let mut newest: BTreeMap<Vec<u8>, (u64, Answer)> = BTreeMap::new();
    for (name, bytes) in files {
        let id: FileId = name.strip_suffix(".data")?.parse().ok()?;
        let header = FileHeader::decode(bytes).ok()?;
        if header.file_id != id || header.kind == FileKind::Hint {
            return None;
        }
        let mut previous_seq = 0;
        let mut end = HEADER_LEN as u64;
        for (offset, decoded) in record::scan(bytes, HEADER_LEN) {
            let rec = decoded.ok()?;
            let rises = header.kind != FileKind::Data || rec.seq > previous_seq;
            if !seen.insert(rec.seq) || !rises {
                return None;
            }
            previous_seq = rec.seq;
            end = offset + rec.encoded_len();
            let answer = match rec.kind {
                RecordKind::Put => Answer::Value(rec.value.to_vec()),
                RecordKind::Tombstone => Answer::NotFound,
            };
            let slot = newest
                .entry(rec.key.to_vec())
                .or_insert((0, Answer::NotFound));
            if rec.seq > slot.0 {
                *slot = (rec.seq, answer);
            }
        }
        if end != bytes.len() as u64 {
            return None;
        }
    }
    Some(
        newest
            .into_iter()
            .map(|(key, (_, answer))| (key, answer))
            .collect(),
    )
}

/// What a store answered for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Value(Vec<u8>),
    NotFound,
    Corrupt,
}

impl Answer {
    fn of(read: &Result<Vec<u8>, Error>) -> Self {
        match read {
            Ok(value) => Answer::Value(value.clone()),
            Err(Error::KeyNotFound) => Answer::NotFound,
            Err(_) => Answer::Corrupt,
        }
    }
}

/// The answer for every key `keys()` listed and every alphabet key.
type Answers = BTreeMap<Vec<u8>, Answer>;

/// After a successful merge of everything (`Database::merge`), and again after a reopen, every
/// key answers as it did after the first open, `written` and the `misplaced` keys aside: a merge
/// loses no key and brings none back. A key that read as corrupt may since read otherwise.
///
/// Why that holds: the merge copies, for each key, the record the keydir points at, found by
/// scanning its file, and drops every tombstone (no older file survives it). The keydir's
/// choice among a key's records is kept whatever seqs decided it.
fn assert_nothing_lost_or_revived(
    db: &Database,
    opened: &Answers,
    misplaced: &BTreeSet<Vec<u8>>,
    written: &[u8],
    when: &str,
) {
    let judged = |key: &[u8]| key != written && !misplaced.contains(key);
    for (key, before) in opened {
        if *before == Answer::Corrupt || !judged(key) {
            continue;
        }
        let after = Answer::of(&db.read(key));
        assert!(
            after == *before,
            "{:?} read {before:?} after the first open and {after:?} {when}",
            key.escape_ascii().to_string()
        );
    }
    for key in db.keys().filter(|key| judged(key)) {
        assert!(
            opened.contains_key(&key),
            "{:?} is listed {when}, and was neither listed nor an alphabet key after the first \
             open",
            key.escape_ascii().to_string()
        );
    }
}

/// The keys whose answers a hint can make change across a merge: those of the entries that do
/// not describe a record where a scan of the data file finds one (with the same key, seq, kind
/// and value length), and the keys of whatever records sit at such entries' offsets. Recovery
/// trusts a hint's entries without reading the records, but merge walks the data file record by
/// record, so an entry pointing into the middle of a record (possible in a version 1 hint) can
/// make a key readable at open that the merge then does not copy. A hint is checked against
/// every data file it can end up describing: a committed merge renames `X.data.tmp` over
/// `X.data` and keeps `X.hint` if there is no `X.hint.tmp`. A hint none of whose data files
/// exist counts as misplacing all its keys.
fn keys_hints_may_misplace(files: &BTreeMap<String, Vec<u8>>) -> BTreeSet<Vec<u8>> {
    let mut misplaced = BTreeSet::new();
    for (name, bytes) in files {
        let described = data_files_described_by(name);
        let Ok(hint) = HintFile::decode(bytes) else {
            continue;
        };
        if described.is_empty() {
            continue; // not a hint's name: the engine never reads it as a hint
        }
        let data: Vec<(&[u8], BTreeSet<u64>)> = described
            .iter()
            .filter_map(|data_name| files.get(data_name))
            .map(|data| (data.as_slice(), record_starts(data)))
            .collect();
        for entry in hint.entries() {
            let truthful = !data.is_empty()
                && data.iter().all(|(data, starts)| {
                    starts.contains(&entry.offset) && describes(&entry, data)
                });
            if truthful {
                continue;
            }
            misplaced.insert(entry.key.to_vec());
            for (data, _) in &data {
                if let Some(record) = record_at(data, entry.offset) {
                    misplaced.insert(record.key.to_vec());
                }
            }
        }
    }
    misplaced
}

/// The data files a file of this name can describe, if it is a hint (see
/// [`keys_hints_may_misplace`]); none for other names.
fn data_files_described_by(name: &str) -> Vec<String> {
    let stem = name
        .strip_suffix(".hint")
        .or_else(|| name.strip_suffix(".hint.tmp"));
    stem.map_or_else(Vec::new, |stem| {
        vec![format!("{stem}.data"), format!("{stem}.data.tmp")]
    })
}

/// The offsets at which a scan of a data file finds a valid record, up to the first that is not.
fn record_starts(data: &[u8]) -> BTreeSet<u64> {
    record::scan(data, HEADER_LEN)
        .map_while(|(offset, decoded)| decoded.ok().map(|_| offset))
        .collect()
}

fn record_at(data: &[u8], offset: u64) -> Option<Record<'_>> {
    let bytes = data.get(usize::try_from(offset).ok()?..)?;
    Record::decode(bytes).ok()
}

fn describes(entry: &HintEntry, data: &[u8]) -> bool {
    record_at(data, entry.offset)
        .is_some_and(|record| HintEntry::of(&record, entry.offset) == *entry)
}

/// Reads every listed key and every alphabet key with `read` and `get`: each answer must be a
/// value some record holds for that key, not-found (only for keys `keys()` does not list), or
/// corruption (only if `corruption_ok`). Also checks `stats()` against `keys()`. Returns the
/// answers.
fn check_reads(db: &Database, pairs: &HashSet<(Vec<u8>, Vec<u8>)>, corruption_ok: bool) -> Answers {
    let mut answers = Answers::new();
    let listed: BTreeSet<Vec<u8>> = db.keys().collect();
    let stats = db.stats();
    assert_eq!(stats.num_keys, listed.len() as u64, "stats vs keys()");
    let keys = listed
        .iter()
        .cloned()
        .chain(KEYS.iter().map(|k| k.to_vec()));
    for key in keys {
        let is_listed = listed.contains(&key);
        let read = db.read(&key);
        match &read {
            Ok(value) => assert!(
                pairs.contains(&(key.clone(), value.clone())),
                "read {:?} returned {} bytes no record of that key holds: {:?}",
                key.escape_ascii().to_string(),
                value.len(),
                value.escape_ascii().to_string()
            ),
            Err(Error::KeyNotFound) => assert!(!is_listed, "keys() lists a key read can't find"),
            Err(Error::Corruption { .. }) if corruption_ok => {}
            Err(e) => panic!(
                "read {:?}: unexpected error {e}",
                key.escape_ascii().to_string()
            ),
        }
        let got = db.get(&key);
        match (&read, &got) {
            (Ok(a), Ok(Some(b))) => assert_eq!(&a[..], &b[..], "read and get disagree"),
            (Err(Error::KeyNotFound), Ok(None)) => {}
            (Err(Error::Corruption { .. }), Err(Error::Corruption { .. })) => {}
            _ => panic!("read and get disagree: {read:?} vs {got:?}"),
        }
        answers.insert(key, Answer::of(&read));
    }
    answers
}

// ---------------------------------------------------------------------------------------------
// Target `ops`: operation sequences against a BTreeMap model
// ---------------------------------------------------------------------------------------------

/// An operation sequence and the data file limit to run it with.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct OpsInput {
    /// Mapped into 64..=4096.
    pub data_file_limit: u16,
    pub ops: Vec<Op>,
}

/// One operation of the `ops` target. Keys are indices into [`KEYS`].
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Write {
        key: u8,
        value: ValueSpec,
    },
    Remove {
        key: u8,
    },
    Read {
        key: u8,
    },
    Get {
        key: u8,
    },
    Merge,
    /// `close()`, then open again.
    Reopen,
    Sync,
    /// Drop the handle without `close()`, then open again.
    CrashDrop,
    /// Copy the directory's files while the store is open, open the copy, then drop the
    /// original: a process crash (every write so far is in the page cache, so in the copy).
    CrashCopy,
}

/// A value of up to [`MAX_OPS_VALUE`] bytes.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum ValueSpec {
    /// These bytes (cut to the maximum).
    Bytes(Bytes),
    /// `len % (MAX_OPS_VALUE + 1)` copies of `byte`: long values from few input bytes.
    Fill { byte: u8, len: u16 },
}

/// The longest value the `ops` target writes.
pub const MAX_OPS_VALUE: usize = 300;

impl ValueSpec {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            ValueSpec::Bytes(b) => b.0[..b.0.len().min(MAX_OPS_VALUE)].to_vec(),
            ValueSpec::Fill { byte, len } => {
                vec![*byte; usize::from(*len) % (MAX_OPS_VALUE + 1)]
            }
        }
    }
}

impl OpsInput {
    pub fn limit(&self) -> u64 {
        64 + u64::from(self.data_file_limit) % (4096 - 64 + 1)
    }
}

/// The store under test in the `ops` target with the directory it lives in.
struct Store {
    dir: tempfile::TempDir,
    db: Database,
    limit: u64,
}

impl Store {
    fn open(dir: tempfile::TempDir, limit: u64) -> Store {
        let db = open_store(dir.path(), limit)
            .unwrap_or_else(|e| panic!("opening {}: {e}", dir.path().display()));
        Store { dir, db, limit }
    }
}

/// Runs the operations against the store and a `BTreeMap`; every operation must succeed and
/// every read and get must agree with the model.
pub fn check_ops(input: &OpsInput) {
    let limit = input.limit();
    let mut store = Store::open(scratch_dir(), limit);
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (step, op) in input.ops.iter().enumerate() {
        let ctx = || format!("step {step}: {op:?}");
        match op {
            Op::Write { key: k, value } => {
                let value = value.bytes();
                store
                    .db
                    .write(key(*k), &value)
                    .unwrap_or_else(|e| panic!("{}: {e}", ctx()));
                model.insert(key(*k).to_vec(), value);
            }
            Op::Remove { key: k } => {
                store
                    .db
                    .remove(key(*k))
                    .unwrap_or_else(|e| panic!("{}: {e}", ctx()));
                model.remove(key(*k));
            }
            Op::Read { key: k } | Op::Get { key: k } => {
                check_key(&store.db, &model, key(*k), &ctx())
            }
            Op::Merge => store
                .db
                .merge()
                .unwrap_or_else(|e| panic!("{}: {e}", ctx())),
            Op::Sync => store.db.sync().unwrap_or_else(|e| panic!("{}: {e}", ctx())),
            Op::Reopen => {
                store
                    .db
                    .close()
                    .unwrap_or_else(|e| panic!("{}: {e}", ctx()));
                let Store { dir, db, limit } = store;
                drop(db);
                store = Store::open(dir, limit);
            }
            Op::CrashDrop => {
                let Store { dir, db, limit } = store;
                drop(db);
                store = Store::open(dir, limit);
            }
            Op::CrashCopy => {
                let copy = scratch_dir();
                copy_files(store.dir.path(), copy.path());
                let reopened = Store::open(copy, store.limit);
                drop(store);
                store = reopened;
            }
        }
        for k in KEYS {
            check_key(&store.db, &model, k, &ctx());
        }
        if matches!(op, Op::Merge | Op::Reopen | Op::CrashDrop | Op::CrashCopy) {
            check_all(&store.db, &model, &ctx());
        }
    }
    check_all(&store.db, &model, "at the end");
    store.db.close().expect("final close");
}

fn check_key(db: &Database, model: &BTreeMap<Vec<u8>, Vec<u8>>, k: &[u8], ctx: &str) {
    let want = model.get(k);
    let show = |v: &[u8]| format!("b\"{}\"", v.escape_ascii());
    let model_has = want.map_or("nothing".to_string(), |v| show(v));
    let read = db.read(k);
    match (&read, want) {
        (Ok(got), Some(want)) if got == want => {}
        (Err(Error::KeyNotFound), None) => {}
        _ => panic!(
            "after {ctx}: read {:?}: got {}, model has {model_has}",
            k.escape_ascii().to_string(),
            read.as_ref()
                .map_or_else(|e| format!("Err({e:?})"), |v| format!("Ok({})", show(v)))
        ),
    }
    let got = db.get(k);
    match (&got, want) {
        (Ok(Some(got)), Some(want)) if got[..] == want[..] => {}
        (Ok(None), None) => {}
        _ => panic!(
            "after {ctx}: get {:?}: got {}, model has {model_has}",
            k.escape_ascii().to_string(),
            match &got {
                Ok(Some(v)) => format!("Ok(Some({}))", show(v)),
                Ok(None) => "Ok(None)".to_string(),
                Err(e) => format!("Err({e:?})"),
            }
        ),
    }
    let contains = db.contains_key(k);
    assert_eq!(
        contains.as_ref().ok(),
        Some(&want.is_some()),
        "after {ctx}: contains_key {:?}: {contains:?}",
        k.escape_ascii().to_string()
    );
}

fn check_all(db: &Database, model: &BTreeMap<Vec<u8>, Vec<u8>>, ctx: &str) {
    let mut keys: Vec<Vec<u8>> = db.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        model.keys().cloned().collect::<Vec<_>>(),
        "after {ctx}: keys()"
    );
    let stats = db.stats();
    assert_eq!(
        stats.num_keys,
        model.len() as u64,
        "after {ctx}: stats().num_keys"
    );
    assert_eq!(
        stats.total_bytes,
        stats.live_bytes + stats.dead_bytes,
        "after {ctx}: stats byte accounting"
    );
    for (k, v) in model {
        assert_eq!(db.read(k).ok().as_ref(), Some(v), "after {ctx}");
    }
}

/// Copies every regular file of `from` into `to`, as a crash would leave them (the page cache
/// is what the copy reads).
pub fn copy_files(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("listing the store") {
        let path = entry.expect("listing the store").path();
        if path.is_file() {
            copy_retrying(&path, &to.join(path.file_name().unwrap()));
        }
    }
}

/// `std::fs::copy`, again from the start when a signal interrupts it (libFuzzer's timers do:
/// `copy_file_range` then fails with `EINTR`, which `fs::copy` passes on).
fn copy_retrying(from: &Path, to: &Path) {
    loop {
        match std::fs::copy(from, to) {
            Ok(_) => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("copying {}: {e}", from.display()),
        }
    }
}
