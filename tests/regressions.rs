//! Regression tests for bugs found by fuzzing and by review, each built from the public
//! encoders so the story stays readable. The raw fuzzing inputs are also replayed from
//! `fuzz/regressions/`.

use std::path::Path;

use bitcask::format::header::{FileHeader, FileKind, HEADER_LEN};
use bitcask::format::hint::{HintBuilder, HintEntry};
use bitcask::format::record::{Record, RecordKind, encoded_len};
use bitcask::format::{FileId, MAX_SEQ};
use bitcask::{Config, Database, Error};

fn data_file(dir: &Path, id: FileId, kind: FileKind, records: &[Record]) -> Vec<u8> {
    let mut bytes = FileHeader::new(kind, id).encode().to_vec();
    for record in records {
        record.encode_into(&mut bytes);
    }
    std::fs::write(dir.join(format!("{id:010}.data")), &bytes).unwrap();
    bytes
}

fn put<'a>(seq: u64, key: &'a [u8], value: &'a [u8]) -> Record<'a> {
    Record {
        seq,
        kind: RecordKind::Put,
        key,
        value,
    }
}

/// Writes the hint file of data file `id` (`data_len` bytes long), one put entry per
/// `(seq, key, value_len)`, whatever those say, for records that lie back to back.
fn hint_file(dir: &Path, id: FileId, data_len: u64, entries: &[(u64, &[u8], u32)]) {
    let mut offset = HEADER_LEN as u64;
    let positioned: Vec<_> = entries
        .iter()
        .map(|&(seq, key, value_len)| {
            let at = offset;
            offset += encoded_len(key.len(), value_len as usize);
            (seq, key, value_len, at)
        })
        .collect();
    write_hint(dir, id, HintBuilder::new(id), data_len, &positioned);
}

/// Writes a version 1 hint file (which stores each entry's offset) of data file `id`, one put
/// entry per `(seq, key, value_len, offset)`, whatever those say.
fn v1_hint_file(dir: &Path, id: FileId, data_len: u64, entries: &[(u64, &[u8], u32, u64)]) {
    write_hint(dir, id, HintBuilder::version_1(id), data_len, entries);
}

/// Pushes one put entry per `(seq, key, value_len, offset)` into `hint` and writes it as the
/// hint file of data file `id`.
fn write_hint(
    dir: &Path,
    id: FileId,
    mut hint: HintBuilder,
    data_len: u64,
    entries: &[(u64, &[u8], u32, u64)],
) {
    for &(seq, key, value_len, offset) in entries {
        hint.push(&HintEntry {
            seq,
            kind: RecordKind::Put,
            key,
            value_len,
            offset,
        });
    }
    std::fs::write(dir.join(format!("{id:010}.hint")), hint.finish(data_len)).unwrap();
}

fn open(dir: &Path) -> Database {
    Config::new(dir).background_merge(false).open().unwrap()
}

/// Fuzzing found a data file whose one record had seq `u64::MAX`: open computed the next seq
/// as `u64::MAX + 1`, which panicked in debug builds and wrapped to 0 in release builds, where
/// the next writes read back as corruption and were cut off at the next open. Now `u64::MAX` is
/// not a valid seq (such a record is damage), and a store at the last valid seq refuses writes
/// with a clear error instead of wrapping.
#[test]
fn a_record_with_seq_u64_max_is_damage_not_an_overflow() {
    let dir = tempfile::tempdir().unwrap();
    data_file(dir.path(), 1, FileKind::Data, &[put(u64::MAX, b"", b"")]);
    let db = open(dir.path());
    assert!(
        db.get(b"").unwrap().is_none(),
        "the invalid record was cut off"
    );
    db.write(b"k", b"v").unwrap();
    db.close().unwrap();
    assert_eq!(open(dir.path()).read(b"k").unwrap(), b"v");
}

#[test]
fn a_store_at_the_last_seq_is_readable_and_refuses_writes_clearly() {
    let dir = tempfile::tempdir().unwrap();
    data_file(dir.path(), 1, FileKind::Data, &[put(MAX_SEQ, b"k", b"v")]);
    let db = open(dir.path());
    assert_eq!(db.read(b"k").unwrap(), b"v");
    let err = db.write(b"k", b"w").unwrap_err();
    assert!(matches!(err, Error::SequenceExhausted), "{err}");
    assert_eq!(db.read(b"k").unwrap(), b"v");
}

/// Fuzzing found a hint file (valid checksum) whose entries overlapped: two keys each claiming
/// the whole data file. Open trusted it, counted more live bytes than the file had, and
/// `stats()` panicked subtracting them. Now a hint whose entries overlap, go backwards or leave
/// the file is ignored and the data file is scanned instead. (Only a version 1 hint can say
/// that entries overlap: version 2 stores no offsets.)
#[test]
fn a_hint_with_overlapping_entries_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let records = [put(1, b"a", b"one"), put(2, b"b", b"two")];
    let bytes = data_file(dir.path(), 1, FileKind::Merged, &records);
    let whole_file = (bytes.len() - 20 - 21 - 1) as u32;
    let entries = [
        (101, &b"a"[..], whole_file, 20),
        (102, b"b", whole_file, 20),
    ];
    v1_hint_file(dir.path(), 1, bytes.len() as u64, &entries);
    assert_hint_ignored(dir.path());
}

/// A version 1 hint (which states each entry's offset) that leaves a gap between two records
/// passed every check: checksum, order, no overlap, last record ending where the file does. The
/// record in the gap was never loaded; when it was a tombstone, its key came back with an older
/// value (and the next merge, seeing that value live, dropped the tombstone for good). Found by
/// review. Now entries must lie back to back, as every merge wrote them.
#[test]
fn a_version_1_hint_that_skips_a_tombstone_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    data_file(dir.path(), 1, FileKind::Data, &[put(1, b"k", b"old")]);
    let removal = Record {
        seq: 6,
        kind: RecordKind::Tombstone,
        key: b"k",
        value: b"",
    };
    let records = [put(5, b"a", b"one"), removal, put(7, b"c", b"three")];
    let bytes = data_file(dir.path(), 3, FileKind::Merged, &records);
    let c_at = HEADER_LEN as u64 + records[..2].iter().map(Record::encoded_len).sum::<u64>();
    let entries = [(5, &b"a"[..], 3, HEADER_LEN as u64), (7, b"c", 5, c_at)];
    v1_hint_file(dir.path(), 3, bytes.len() as u64, &entries);
    let db = open(dir.path());
    assert!(
        matches!(db.read(b"k"), Err(Error::KeyNotFound)),
        "the removal was skipped"
    );
    assert_eq!(db.read(b"c").unwrap(), b"three");
}

/// The same for a version 2 hint whose second record would end past the data file.
#[test]
fn a_hint_whose_records_run_past_the_data_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let records = [put(1, b"a", b"one"), put(2, b"b", b"two")];
    let bytes = data_file(dir.path(), 1, FileKind::Merged, &records);
    let entries = [(101, &b"a"[..], 3), (102, b"b", 4)];
    hint_file(dir.path(), 1, bytes.len() as u64, &entries);
    assert_hint_ignored(dir.path());
}

/// Opens the store whose file 1 holds puts of `a` ("one", seq 1) and `b` ("two", seq 2) and a
/// hint that must not be trusted: the records read back as the data file has them.
fn assert_hint_ignored(dir: &Path) {
    data_file(dir, 2, FileKind::Data, &[]);
    let db = open(dir);
    assert_eq!(db.read(b"a").unwrap(), b"one");
    assert_eq!(db.read(b"b").unwrap(), b"two");
    let stats = db.stats();
    assert_eq!(stats.total_bytes, stats.live_bytes + stats.dead_bytes);
    assert!(stats.live_bytes <= stats.total_bytes);
}

/// Fuzzing (`ops_faults`) found that an acknowledged write could vanish in a power cut: the
/// directory fsync after creating a data file failed, the file stayed, the next open adopted it
/// as the active file, and nothing ever synced the directory again, so the file's name (and
/// every write acknowledged into it) was not durable. Now open always syncs the directory.
/// Here: an I/O error at every step of a workload that creates files, then reopen, write under
/// `Always`, close, and cut the power: that write must be there, and so must every write of the
/// workload that returned before the error.
#[test]
fn after_any_io_error_and_reopen_acknowledged_writes_survive_a_power_cut() {
    use bitcask::SyncPolicy;
    use bitcask::sim::{Fault, SimFs};
    let open = |fs: &SimFs| {
        Config::new("/store")
            .file_system(fs.clone())
            .data_file_limit(64)
            .sync_policy(SyncPolicy::Always)
            .background_merge(false)
            .open()
    };
    let mut directory_sync_failures = 0;
    for at in 1..=60 {
        let fs = SimFs::new();
        let db = open(&fs).unwrap();
        fs.fail_at(fs.ops() + at, Fault::Error(std::io::ErrorKind::Other));
        let (mut acknowledged, mut failure) = (Vec::new(), None);
        for i in 0..6u8 {
            match db.write(&[i], &[i; 30]) {
                Ok(()) => acknowledged.push(i),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_some_and(|e| e.to_string().contains("syncing directory")) {
            directory_sync_failures += 1;
        }
        drop(db);
        fs.fail_at(u64::MAX, Fault::PowerCut); // disarm a fault the workload did not reach
        let db = open(&fs).unwrap();
        db.write(b"acknowledged", b"durable").unwrap();
        db.close().unwrap();
        let after_cut = open(&fs.crash_image()).unwrap();
        assert_eq!(
            after_cut.read(b"acknowledged").unwrap(),
            b"durable",
            "error at op {at}"
        );
        for i in acknowledged {
            assert_eq!(
                after_cut.read(&[i]).unwrap(),
                [i; 30],
                "error at op {at}: write {i}"
            );
        }
    }
    assert!(
        directory_sync_failures > 0,
        "the workload never failed a directory sync"
    );
}

/// Fuzzing (`recover`) found that a version 1 hint giving a record a wrong value length (its
/// offsets right) broke merge's repoint: the keydir keeps the value length in the stored key,
/// merge copied the record (its location matched) with its real length, and repointing kept the
/// hint's length. A repoint that changes the length now replaces the stored key too
/// (`sync::tests::a_repoint_to_another_value_length_stores_it`). And since version 1 entries
/// must lie back to back, as version 2's do, one wrong length no longer passes as an index at
/// all: the next entry no longer starts where the wrong length says the record ends, so the
/// hint is ignored and the data file scanned.
#[test]
fn a_version_1_hint_with_a_wrong_value_length_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let records = [put(1, b"k", b"value"), put(2, b"z", b"zz")];
    let bytes = data_file(dir.path(), 1, FileKind::Merged, &records);
    let entries = [
        (1, &b"k"[..], 3, 20), // the record's value is 5 bytes
        (2, b"z", 2, 20 + records[0].encoded_len()),
    ];
    v1_hint_file(dir.path(), 1, bytes.len() as u64, &entries);
    data_file(dir.path(), 2, FileKind::Data, &[]);

    let db = open(dir.path());
    assert_eq!(db.read(b"k").unwrap(), b"value");
    db.merge().unwrap();
    assert_eq!(db.read(b"k").unwrap(), b"value");
    assert_eq!(db.read(b"z").unwrap(), b"zz");
    let stats = db.stats();
    assert_eq!(
        stats.live_bytes,
        records.iter().map(Record::encoded_len).sum::<u64>()
    );
    db.close().unwrap();
    assert_eq!(open(dir.path()).read(b"k").unwrap(), b"value");
}

/// Review of format version 2 found that one wrong value length in a version 2 hint (valid
/// checksum) moved every later entry beside its record: open trusted the hint, the later keys
/// read as `Corruption`, and a merge left their records behind and deleted the file, so they
/// were gone. Now a hint whose records do not end exactly where the data file does is ignored,
/// and the file is scanned: every key reads, and survives a merge and a reopen.
#[test]
fn a_version_2_hint_with_one_wrong_length_is_ignored_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let records = [
        put(1, b"k", b"value"),
        put(2, b"z", b"zz"),
        put(3, b"y", b"yyy"),
    ];
    let bytes = data_file(dir.path(), 1, FileKind::Merged, &records);
    let entries = [
        (1, &b"k"[..], 3), // the record's value is 5 bytes
        (2, b"z", 2),
        (3, b"y", 3),
    ];
    hint_file(dir.path(), 1, bytes.len() as u64, &entries);
    data_file(dir.path(), 2, FileKind::Data, &[]);

    let db = open(dir.path());
    let expected: [(&[u8], &[u8]); 3] = [(b"k", b"value"), (b"z", b"zz"), (b"y", b"yyy")];
    for (key, value) in expected {
        assert_eq!(db.read(key).unwrap(), value);
    }
    db.merge().unwrap();
    db.close().unwrap();
    let db = open(dir.path());
    for (key, value) in expected {
        assert_eq!(db.read(key).unwrap(), value);
    }
}
