//! Recovery picks the newest record of each key whatever order the files load in. Keydir entries
//! keep no seq, so recovery tells records apart by offset within a writer file, by each loaded
//! file's seq range, or, when ranges overlap (a partial merge's output against a file it did not
//! take), by reading the present record's seq back. Each test builds the files by hand so that
//! exactly one of these paths decides, in both directions.

use std::path::Path;

use bitcask::format::FileId;
use bitcask::format::header::{FileHeader, FileKind};
use bitcask::format::hint::{HintBuilder, HintEntry};
use bitcask::format::record::{Record, RecordKind};
use bitcask::{Config, CorruptionKind, Database, Error};

/// One record: (seq, key, value), or a tombstone when the value is `None`.
type Rec = (u64, &'static str, Option<&'static str>);

fn write_file(dir: &Path, id: FileId, kind: FileKind, records: &[Rec]) {
    let bytes = encode_file(id, kind, records).0;
    std::fs::write(dir.join(format!("{id:010}.data")), bytes).unwrap();
}

fn record(&(seq, key, value): &Rec) -> Record<'static> {
    Record {
        seq,
        kind: match value {
            Some(_) => RecordKind::Put,
            None => RecordKind::Tombstone,
        },
        key: key.as_bytes(),
        value: value.unwrap_or_default().as_bytes(),
    }
}

/// The file's bytes, and the offset of each record.
fn encode_file(id: FileId, kind: FileKind, records: &[Rec]) -> (Vec<u8>, Vec<u64>) {
    let mut bytes = FileHeader::new(kind, id).encode().to_vec();
    let mut offsets = Vec::new();
    for rec in records {
        offsets.push(bytes.len() as u64);
        record(rec).encode_into(&mut bytes);
    }
    (bytes, offsets)
}

/// A merge output with its hint file, with one byte of the value of record `damaged` flipped
/// (the hint, which open trusts instead of scanning, stays valid).
fn write_merged_with_hint(dir: &Path, id: FileId, records: &[Rec], damaged: usize) {
    let (mut bytes, offsets) = encode_file(id, Merged, records);
    let mut hint = HintBuilder::new(id);
    for (rec, &offset) in records.iter().zip(&offsets) {
        hint.push(&HintEntry::of(&record(rec), offset));
    }
    let last = (offsets[damaged] + record(&records[damaged]).encoded_len() - 1) as usize;
    bytes[last] ^= 0xFF;
    std::fs::write(
        dir.join(format!("{id:010}.hint")),
        hint.finish(bytes.len() as u64),
    )
    .unwrap();
    std::fs::write(dir.join(format!("{id:010}.data")), bytes).unwrap();
}

/// A writer file's records: k at `seq` between puts of `a` and `c` at seqs 1 and 20, so that
/// the file's seq range is 1..=20 whatever k's seq.
fn k_among_others(seq: u64, value: Option<&'static str>) -> Vec<Rec> {
    vec![(1, "a", Some("a")), (seq, "k", value), (20, "c", Some("c"))]
}

/// Opens a store made of `files` and returns what `k` reads as.
fn k_after_open(files: &[(FileId, FileKind, &[Rec])]) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    for (id, kind, records) in files {
        write_file(dir.path(), *id, *kind, records);
    }
    let db: Database = Config::new(dir.path())
        .background_merge(false)
        .open()
        .unwrap();
    let value = db
        .get(b"k")
        .unwrap()
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    // Every other key is untouched by the choice.
    assert_eq!(db.read(b"a").unwrap(), b"a");
    db.close().unwrap();
    value
}

use FileKind::{Data, Merged};

#[test]
fn in_one_writer_file_the_later_record_wins() {
    let file: &[Rec] = &[
        (1, "a", Some("a")),
        (2, "k", Some("old")),
        (3, "k", Some("new")),
    ];
    assert_eq!(k_after_open(&[(1, Data, file)]).as_deref(), Some("new"));
    let removed: &[Rec] = &[(1, "a", Some("a")), (2, "k", Some("v")), (3, "k", None)];
    assert_eq!(k_after_open(&[(1, Data, removed)]), None);
    let revived: &[Rec] = &[(1, "a", Some("a")), (2, "k", None), (3, "k", Some("back"))];
    assert_eq!(k_after_open(&[(1, Data, revived)]).as_deref(), Some("back"));
}

#[test]
fn disjoint_seq_ranges_decide_even_when_the_older_file_has_the_higher_id() {
    // A merge output (id 3) copies records older than the writer file active at the time (id 2).
    let writer: &[Rec] = &[(10, "a", Some("a")), (11, "k", Some("new"))];
    let merged: &[Rec] = &[(3, "k", Some("old")), (4, "z", Some("z"))];
    let files = [(2, Data, writer), (3, Merged, merged)];
    assert_eq!(k_after_open(&files).as_deref(), Some("new"));
    // And the other way round: the later-loaded file holds the newer record.
    let writer: &[Rec] = &[(10, "a", Some("a")), (11, "k", Some("old"))];
    let merged: &[Rec] = &[(12, "k", Some("new"))];
    let files = [(2, Data, writer), (3, Merged, merged)];
    assert_eq!(k_after_open(&files).as_deref(), Some("new"));
}

#[test]
fn overlapping_ranges_read_the_present_seq_from_a_sealed_file() {
    // File 1 is sealed (file 2 is the newer writer file); file 3's seq falls inside file 1's
    // range, so the present record of k in file 1 is read back.
    // The next seq after file 1's last: writer files hold consecutive ranges.
    let tail: &[Rec] = &[(21, "t", Some("t"))];
    let older_present: &[Rec] = &k_among_others(8, Some("old"));
    let newer_merged: &[Rec] = &[(12, "k", Some("new"))];
    let files = [
        (1, Data, older_present),
        (2, Data, tail),
        (3, Merged, newer_merged),
    ];
    assert_eq!(k_after_open(&files).as_deref(), Some("new"));

    let newer_present: &[Rec] = &k_among_others(15, Some("new"));
    let older_merged: &[Rec] = &[(12, "k", Some("old"))];
    let files = [
        (1, Data, newer_present),
        (2, Data, tail),
        (3, Merged, older_merged),
    ];
    assert_eq!(k_after_open(&files).as_deref(), Some("new"));
}

#[test]
fn overlapping_ranges_read_the_present_seq_from_the_writer_file() {
    // File 1 is the newest writer file (read with `pread`, it is not mapped during recovery).
    let older_present: &[Rec] = &k_among_others(8, Some("old"));
    let newer_merged: &[Rec] = &[(12, "k", Some("new"))];
    let files = [(1, Data, older_present), (3, Merged, newer_merged)];
    assert_eq!(k_after_open(&files).as_deref(), Some("new"));

    let newer_present: &[Rec] = &k_among_others(15, Some("new"));
    let older_merged: &[Rec] = &[(12, "k", Some("old"))];
    let files = [(1, Data, newer_present), (3, Merged, older_merged)];
    assert_eq!(k_after_open(&files).as_deref(), Some("new"));
}

#[test]
fn a_tombstone_removes_only_an_older_put_across_overlapping_files() {
    // The next seq after file 1's last: writer files hold consecutive ranges.
    let tail: &[Rec] = &[(21, "t", Some("t"))];
    let older_put: &[Rec] = &k_among_others(8, Some("v"));
    let newer_tombstone: &[Rec] = &[(12, "k", None)];
    let files = [
        (1, Data, older_put),
        (2, Data, tail),
        (3, Merged, newer_tombstone),
    ];
    assert_eq!(k_after_open(&files), None);

    let newer_put: &[Rec] = &k_among_others(15, Some("v"));
    let older_tombstone: &[Rec] = &[(12, "k", None)];
    let files = [
        (1, Data, newer_put),
        (2, Data, tail),
        (3, Merged, older_tombstone),
    ];
    assert_eq!(k_after_open(&files).as_deref(), Some("v"));
}

#[test]
fn a_present_record_that_does_not_read_back_stays_so_that_reads_report_it() {
    // Two partial merges: file 1's k (seq 18, the newest) is damaged on disk, and file 3 holds
    // an older k (seq 12) inside file 1's seq range. Letting seq 12 win would return an older
    // value as if it were the newest; instead reading k reports the damage.
    let dir = tempfile::tempdir().unwrap();
    let newest_damaged: &[Rec] = &[
        (5, "a", Some("a")),
        (18, "k", Some("newest")),
        (20, "y", Some("y")),
    ];
    write_merged_with_hint(dir.path(), 1, newest_damaged, 1);
    write_file(dir.path(), 2, Data, &[(30, "t", Some("t"))]);
    write_file(dir.path(), 3, Merged, &[(12, "k", Some("older"))]);
    let db = Config::new(dir.path())
        .background_merge(false)
        .open()
        .unwrap();
    let err = db.read(b"k").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Corruption {
                kind: CorruptionKind::ChecksumMismatch { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(db.read(b"a").unwrap(), b"a");
    assert_eq!(db.read(b"y").unwrap(), b"y");
}

/// Older builds could seal a writer file without records: the first file, before seq 1, with a
/// data file limit no longer than a file header; or one between consecutive ranges after a
/// failed directory fsync in a rotation. Open passes over them; the seqs around them agree.
#[test]
fn empty_sealed_writer_files_that_older_builds_left_are_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), 1, Data, &[]);
    write_file(
        dir.path(),
        2,
        Data,
        &[(1, "a", Some("a")), (2, "k", Some("v"))],
    );
    write_file(dir.path(), 3, Data, &[]);
    write_file(dir.path(), 4, Data, &[(3, "k", Some("w"))]);
    let db = Config::new(dir.path())
        .background_merge(false)
        .open()
        .unwrap();
    assert_eq!(db.read(b"k").unwrap(), b"w");
    db.close().unwrap();
    // The same files with seq 3 missing are refused, naming the empty file before it.
    write_file(dir.path(), 4, Data, &[(4, "k", Some("w"))]);
    let err = Config::new(dir.path())
        .background_merge(false)
        .open()
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Corruption { path, kind: CorruptionKind::RecordsMissingAtEnd { last: None, .. }, .. }
                if path.ends_with("0000000003.data")
        ),
        "{err}"
    );
}
