//! Opening after a crash: torn tails are cut, corruption in sealed files is reported, and a merge
//! interrupted at any step leaves the old set or the new set, never a mix.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use bitcask::format::commit::MergeCommit;
use bitcask::{Config, CorruptionKind, Database, Error};
use common::{copy_dir, file_id, files_with_ext, open_small};

/// Where open saves the tail it cuts off `data_file` at `offset` (the first cut there).
fn saved_tail(data_file: &Path, offset: usize) -> PathBuf {
    let name = data_file.file_name().unwrap().to_str().unwrap();
    data_file.with_file_name(format!("{name}.cut-{offset}"))
}

/// How many cut tails open saved beside their data files (`NNNNNNNNNN.data.cut-OFFSET`).
fn saved_cuts(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".cut-")
        })
        .count()
}

fn newest_data_file(dir: &Path) -> PathBuf {
    files_with_ext(dir, "data").pop().unwrap()
}

#[test]
fn torn_tail_of_the_active_file_is_cut_and_writing_continues() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.write(b"a", b"1").unwrap();
    db.write(b"b", b"2").unwrap();
    db.close().unwrap();
    let active = newest_data_file(dir.path());
    let full_len = active.metadata().unwrap().len();
    // A record whose write was cut short: its header promises more bytes than exist.
    let mut file = OpenOptions::new().append(true).open(&active).unwrap();
    let mut partial = vec![0x11; 4];
    partial.extend_from_slice(&9u64.to_le_bytes());
    partial.extend_from_slice(&[0, 1, 0, 0, 0, 100, 0, 0, 0, b'c']);
    file.write_all(&partial).unwrap();
    drop(file);

    let db = Database::open(dir.path()).unwrap();
    assert_eq!(active.metadata().unwrap().len(), full_len);
    assert_eq!(db.read(b"a").unwrap(), b"1");
    assert_eq!(db.read(b"b").unwrap(), b"2");
    assert_eq!(db.keys().count(), 2);
    db.write(b"c", b"3").unwrap();
    db.close().unwrap();
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(db.read(b"c").unwrap(), b"3");
}

#[test]
fn every_truncation_of_the_active_file_keeps_a_prefix_of_the_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    for i in 0..5u8 {
        db.write(&[i], &[i; 10]).unwrap();
    }
    db.close().unwrap();
    let active = newest_data_file(dir.path());
    let bytes = std::fs::read(&active).unwrap();
    for len in 20..bytes.len() {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        std::fs::write(copy.path().join(active.file_name().unwrap()), &bytes[..len]).unwrap();
        let db = Database::open(copy.path()).unwrap();
        let present: Vec<u8> = (0..5u8)
            .filter(|i| db.contains_key(&[*i]).unwrap())
            .collect();
        // Every record is 32 bytes (21 of header, a 1-byte key, a 10-byte value) after the
        // 20-byte file header: exactly the records wholly before the cut survive.
        let whole_records = ((len - 20) / 32) as u8;
        let prefix: Vec<u8> = (0..whole_records).collect();
        assert_eq!(present, prefix, "len {len}");
        for i in present {
            assert_eq!(db.read(&[i]).unwrap(), [i; 10]);
        }
    }
}

/// Keys 0..20, each with a 100-byte value of its own byte, at a 512-byte file limit: several
/// sealed files and an active one, then closed.
fn write_twenty_records_and_close(dir: &Path) {
    let db = open_small(dir, 512);
    for i in 0..20u8 {
        db.write(&[i], &[i; 100]).unwrap();
    }
    db.close().unwrap();
}

#[test]
fn corruption_inside_a_sealed_file_fails_open_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_twenty_records_and_close(dir.path());
    let sealed = files_with_ext(dir.path(), "data").remove(0);
    let mut bytes = std::fs::read(&sealed).unwrap();
    bytes[60] ^= 0x40;
    std::fs::write(&sealed, &bytes).unwrap();
    let err = Database::open(dir.path()).unwrap_err();
    match &err {
        Error::Corruption { path, offset, kind } => {
            // Open resolves the directory's symbolic links.
            assert_eq!(path, &std::fs::canonicalize(&sealed).unwrap());
            // Byte 60 lies in the first record, right after the 20-byte file header.
            assert_eq!(*offset, 20, "the damaged record's offset");
            assert!(matches!(kind, CorruptionKind::ChecksumMismatch { .. }));
        }
        other => panic!("expected corruption, got {other}"),
    }
    assert!(err.to_string().contains(&sealed.display().to_string()));
}

/// A sealed writer file cut exactly at a record boundary (by a partial copy, say) decodes as a
/// shorter file; the next writer file's first seq shows the records missing, and open refuses
/// the store naming the file, instead of serving older values (or removed keys) in their place.
/// A sealed file cut back to its header (no records left) likewise.
#[test]
fn a_sealed_file_cut_at_a_record_boundary_fails_open_naming_it() {
    use bitcask::format::header::HEADER_LEN;
    use bitcask::format::record::Record;
    let dir = tempfile::tempdir().unwrap();
    write_twenty_records_and_close(dir.path());
    let data = files_with_ext(dir.path(), "data");
    assert!(
        data.len() >= 3,
        "two sealed files and the active one: {data:?}"
    );
    let last_boundary = |path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        let mut end = HEADER_LEN;
        let mut last = end;
        while let Ok(record) = Record::decode(&bytes[end..]) {
            last = end;
            end += record.encoded_len() as usize;
        }
        assert_eq!(end, bytes.len());
        last
    };
    // The first file loses its last record, or every record; so does the second.
    let cuts = [
        (&data[0], last_boundary(&data[0]), true),
        (&data[0], HEADER_LEN, false),
        (&data[1], last_boundary(&data[1]), true),
        (&data[1], HEADER_LEN, false),
    ];
    for (sealed, cut, records_left) in cuts {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let damaged = copy.path().join(sealed.file_name().unwrap());
        let bytes = std::fs::read(&damaged).unwrap();
        std::fs::write(&damaged, &bytes[..cut]).unwrap();
        let err = Database::open(copy.path()).unwrap_err();
        match &err {
            Error::Corruption {
                path,
                kind: CorruptionKind::RecordsMissingAtEnd { last, .. },
                ..
            } => {
                assert_eq!(path, &std::fs::canonicalize(&damaged).unwrap());
                assert_eq!(last.is_some(), records_left, "{err}");
            }
            other => panic!("cut at {cut}: expected the missing records, got {other}"),
        }
    }
    // The whole store opens.
    Database::open(dir.path()).unwrap().close().unwrap();
}

#[test]
fn a_data_file_with_a_foreign_header_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    Database::open(dir.path()).unwrap().close().unwrap();
    std::fs::write(
        dir.path().join("0000000007.data"),
        b"this is not a data file",
    )
    .unwrap();
    let err = Database::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Corruption {
                kind: CorruptionKind::BadMagic,
                ..
            }
        ),
        "{err}"
    );
}

/// A store before a merge (`before`) and the files one merge of it produced (`after`).
struct MergeStates {
    before: tempfile::TempDir,
    after: tempfile::TempDir,
    inputs: Vec<u32>,
    outputs: Vec<u32>,
}

fn merge_states() -> MergeStates {
    let before = tempfile::tempdir().unwrap();
    let db = open_small(before.path(), 1024);
    for round in 0..4u8 {
        for k in 0..20u8 {
            db.write(&[k], &[round; 40]).unwrap();
        }
    }
    for k in 0..5u8 {
        db.remove(&[k]).unwrap();
    }
    db.close().unwrap();
    let after = tempfile::tempdir().unwrap();
    copy_dir(before.path(), after.path());
    let db = open_small(after.path(), 1024);
    db.merge().unwrap();
    db.close().unwrap();
    let inputs = files_with_ext(before.path(), "data")
        .iter()
        .map(|p| file_id(p))
        .collect();
    let outputs = files_with_ext(after.path(), "hint")
        .iter()
        .map(|p| file_id(p))
        .collect();
    MergeStates {
        before,
        after,
        inputs,
        outputs,
    }
}

fn assert_merged_content(dir: &Path) {
    let db = open_small(dir, 1024);
    for k in 0..20u8 {
        match db.get(&[k]).unwrap() {
            Some(v) => {
                assert!(k >= 5, "removed key {k} came back");
                assert_eq!(&*v, &[3u8; 40]);
            }
            None => assert!(k < 5, "key {k} lost"),
        }
    }
    db.close().unwrap();
    assert!(!dir.join("MERGE").exists());
    assert!(
        std::fs::read_dir(dir)
            .unwrap()
            .all(|e| { e.unwrap().path().extension().is_none_or(|ext| ext != "tmp") })
    );
}

/// Builds the directory a crash would leave: the old files (minus `deleted` inputs), the merge
/// outputs under temporary or final names, and optionally the commit record.
fn crashed_dir(
    states: &MergeStates,
    renamed: bool,
    committed: bool,
    deleted: usize,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(states.before.path(), dir.path());
    for id in &states.inputs[..deleted] {
        std::fs::remove_file(dir.path().join(format!("{id:010}.data"))).unwrap();
    }
    for id in &states.outputs {
        for ext in ["data", "hint"] {
            let name = format!("{id:010}.{ext}");
            let target = if renamed {
                name.clone()
            } else {
                format!("{name}.tmp")
            };
            std::fs::copy(states.after.path().join(&name), dir.path().join(target)).unwrap();
        }
    }
    if committed {
        let commit = MergeCommit {
            inputs: states.inputs.clone(),
            outputs: states.outputs.clone(),
        };
        std::fs::write(dir.path().join("MERGE"), commit.encode()).unwrap();
    }
    dir
}

#[test]
fn crash_before_the_commit_point_keeps_the_old_set() {
    let states = merge_states();
    let dir = crashed_dir(&states, false, false, 0);
    assert_merged_content(dir.path());
    for id in &states.inputs {
        assert!(dir.path().join(format!("{id:010}.data")).exists());
    }
}

#[test]
fn crash_at_every_step_after_the_commit_point_yields_the_new_set() {
    let states = merge_states();
    for (renamed, deleted) in [
        (false, 0),
        (true, 0),
        (true, 1),
        (true, states.inputs.len()),
    ] {
        let dir = crashed_dir(&states, renamed, true, deleted);
        assert_merged_content(dir.path());
        for id in &states.inputs {
            assert!(!dir.path().join(format!("{id:010}.data")).exists());
        }
        for id in &states.outputs {
            assert!(dir.path().join(format!("{id:010}.hint")).exists());
        }
    }
}

#[test]
fn damaged_commit_record_fails_open_instead_of_guessing() {
    let states = merge_states();
    let dir = crashed_dir(&states, false, true, 0);
    let commit = dir.path().join("MERGE");
    let mut bytes = std::fs::read(&commit).unwrap();
    bytes[9] ^= 1;
    std::fs::write(&commit, &bytes).unwrap();
    let err = Database::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");
}

/// A committed merge whose output data file is gone under both names (deleted outside the
/// engine) fails open, naming the file and saying it is missing (it used to say the data ended
/// inside a record).
#[test]
fn a_committed_merge_whose_output_is_gone_fails_open_naming_it() {
    let states = merge_states();
    let dir = crashed_dir(&states, false, true, 0);
    let output = states.outputs[0];
    std::fs::remove_file(dir.path().join(format!("{output:010}.data.tmp"))).unwrap();
    let err = Database::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Corruption {
                kind: CorruptionKind::MissingMergeOutput,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("{output:010}.data")) && message.contains("missing"),
        "{message}"
    );
}

#[test]
fn damage_with_valid_records_behind_it_is_cut_but_saved_beside_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    for i in 0..4u8 {
        db.write(&[i], &[i; 10]).unwrap();
    }
    db.close().unwrap();
    let active = newest_data_file(dir.path());
    let mut bytes = std::fs::read(&active).unwrap();
    // Damage the second record (each is 21 + 1 + 10 bytes after the 20-byte header).
    let second = 20 + 32;
    bytes[second + 25] ^= 0xFF;
    std::fs::write(&active, &bytes).unwrap();

    let db = Database::open(dir.path()).unwrap();
    assert_eq!(db.read(&[0]).unwrap(), [0; 10]);
    for i in 1..4u8 {
        assert!(
            db.get(&[i]).unwrap().is_none(),
            "record {i} is behind the damage"
        );
    }
    let saved = saved_tail(&active, second);
    assert_eq!(std::fs::read(&saved).unwrap(), &bytes[second..]);
    // The saved file is not mistaken for a data file on the next open.
    db.close().unwrap();
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(db.stats().num_keys, 1);
}

/// A damaged record far longer than any fixed search window (a 300 KB value): the records
/// behind it are still found and saved, not cut off unseen.
#[test]
fn records_behind_a_long_damaged_record_are_saved() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + 1) as u8).collect();
    db.write(b"big", &big).unwrap();
    db.write(b"after", b"synced").unwrap();
    db.sync().unwrap();
    db.close().unwrap();
    let active = newest_data_file(dir.path());
    let mut bytes = std::fs::read(&active).unwrap();
    let big_at = 20;
    bytes[big_at + 21 + 3 + 1_000] ^= 0xFF; // in the value, near its start
    std::fs::write(&active, &bytes).unwrap();

    let db = Database::open(dir.path()).unwrap();
    assert!(
        db.get(b"after").unwrap().is_none(),
        "behind the damage: cut"
    );
    let saved = saved_tail(&active, big_at);
    let saved = std::fs::read(&saved).expect("the tail was saved");
    let after = saved.windows(b"synced".len()).position(|w| w == b"synced");
    assert!(
        after.is_some(),
        "the saved tail holds the record behind the damage"
    );
}

/// A torn record whose value is made of record headers, each claiming a record that runs to the
/// end of the file (a crafted value, say): searching it to its end would checksum the rest of the
/// file at every header, which for a large value takes hours. Open stops once the search would
/// pass its budget and saves the tail, as where records may follow (found by review).
#[test]
fn a_torn_value_of_record_headers_is_saved_without_searching_it_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.write(b"before", b"kept").unwrap();
    let len = 2 << 20;
    let mut crafted = vec![0xAB_u8; len];
    for at in (0..len - 21).step_by(4096) {
        let claims = (len - at - 21) as u32; // a record to the end of the value, and the file
        crafted[at..at + 21].copy_from_slice(&bitcask::sim::forged_header(1, 0, claims));
    }
    db.write(b"crafted", &crafted).unwrap();
    db.close().unwrap();
    let active = newest_data_file(dir.path());
    let mut bytes = std::fs::read(&active).unwrap();
    let torn_at = bytes.len() - (21 + b"crafted".len() + len);
    bytes[torn_at] ^= 0xFF; // its checksum: the record no longer decodes
    std::fs::write(&active, &bytes).unwrap();

    let db = Database::open(dir.path()).unwrap();
    assert_eq!(db.read(b"before").unwrap(), b"kept");
    assert!(
        db.get(b"crafted").unwrap().is_none(),
        "the torn record is cut"
    );
    let saved = saved_tail(&active, torn_at);
    assert_eq!(
        std::fs::read(&saved).expect("the tail was saved"),
        bytes[torn_at..],
        "saved whole"
    );
}

/// A record behind the damage whose bytes end in zeros (its value does) is found and saved
/// whole: the search only stops record *starts* at the last non-zero byte.
#[test]
fn a_record_ending_in_zeros_behind_damage_is_saved_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.write(b"a", b"x").unwrap();
    db.write(b"b", b"y").unwrap();
    db.write(b"c", &[7, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    db.close().unwrap();
    let active = newest_data_file(dir.path());
    let mut bytes = std::fs::read(&active).unwrap();
    let second = 20 + 23; // header, then a's record (21 + 1 + 1)
    bytes[second + 21] ^= 0xFF; // b's key
    std::fs::write(&active, &bytes).unwrap();

    let db = Database::open(dir.path()).unwrap();
    assert!(db.get(b"c").unwrap().is_none(), "behind the damage: cut");
    let saved = saved_tail(&active, second);
    assert_eq!(std::fs::read(saved).unwrap(), &bytes[second..]);
}

/// Writes `a`, `b` and `c` (1-byte keys and values) into a store at `dir` and closes it, then
/// flips a byte of the second record's key in the newest data file (at offset 43, after the
/// 20-byte header and the first record's 23 bytes), which it returns.
fn three_records_the_second_damaged(dir: &Path) -> PathBuf {
    let db = Database::open(dir).unwrap();
    for key in [b"a", b"b", b"c"] {
        db.write(key, b"1").unwrap();
    }
    db.close().unwrap();
    damage_second_record(dir)
}

/// Flips a byte of the key of the second record (at offset 43) of the newest data file.
fn damage_second_record(dir: &Path) -> PathBuf {
    let active = newest_data_file(dir);
    let mut bytes = std::fs::read(&active).unwrap();
    bytes[20 + 23 + 21] ^= 0xFF;
    std::fs::write(&active, &bytes).unwrap();
    active
}

/// The saved tail's name is built on the path's bytes: in a directory whose name is not UTF-8,
/// open still saves it and opens (a lossy name pointed into a directory that does not exist).
#[test]
fn a_tail_is_saved_in_a_directory_whose_name_is_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent
        .path()
        .join(std::ffi::OsStr::from_bytes(b"store-\xff"));
    three_records_the_second_damaged(&dir);

    let db = Database::open(&dir).unwrap();
    assert_eq!(db.read(b"a").unwrap(), b"1");
    assert_eq!(saved_cuts(&dir), 1);
}

/// A second cut of the same file at the same offset (the file was reused after the first, and
/// damaged there again) is saved beside the first, which stays as it was.
#[test]
fn a_second_cut_at_the_same_offset_keeps_the_first_saved_tail() {
    let dir = tempfile::tempdir().unwrap();
    let active = three_records_the_second_damaged(dir.path());
    let name = active.file_name().unwrap().to_str().unwrap().to_string();
    let first = dir.path().join(format!("{name}.cut-43"));

    let db = Database::open(dir.path()).unwrap();
    let first_bytes = std::fs::read(&first).expect("the first cut was saved");
    for key in [b"d", b"e"] {
        db.write(key, b"2").unwrap();
    }
    db.close().unwrap();
    assert_eq!(
        newest_data_file(dir.path()),
        active,
        "the cut file was reused"
    );
    damage_second_record(dir.path());

    drop(Database::open(dir.path()).unwrap());
    assert_eq!(
        std::fs::read(&first).unwrap(),
        first_bytes,
        "the first saved tail changed"
    );
    let second = dir.path().join(format!("{name}.cut-43-2"));
    assert!(
        std::fs::read(second).is_ok(),
        "the second cut was not saved"
    );
}

#[test]
fn a_torn_append_leaves_no_saved_tail() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.write(b"a", b"1").unwrap();
    db.close().unwrap();
    let active = newest_data_file(dir.path());
    let mut file = OpenOptions::new().append(true).open(&active).unwrap();
    file.write_all(&[0x42; 7]).unwrap();
    drop(file);
    Database::open(dir.path()).unwrap();
    assert_eq!(saved_cuts(dir.path()), 0);
}

/// What the store holds for key `n` of the many-parts test below.
fn expected_value(n: u32) -> Option<Vec<u8>> {
    if n.is_multiple_of(13) {
        None
    } else if n.is_multiple_of(11) {
        Some(b"newer".to_vec())
    } else if n.is_multiple_of(5) {
        Some(b"again".to_vec())
    } else if n.is_multiple_of(7) {
        None
    } else {
        Some(n.to_le_bytes().to_vec())
    }
}

/// A scan applies a file's records a chunk of 262,144 at a time, shard by shard on every core:
/// 312,500 records, in which later chunks overwrite and remove keys of earlier ones and leave a
/// quarter of the keys as the first chunk wrote them, in a sealed writer file of more than one
/// chunk (scanned: it has no hint) and the newest one (scanned and checked for a torn tail),
/// reopen to exactly the keys, values and figures they had.
#[test]
fn a_scan_of_more_records_than_one_chunk_reopens_to_the_same_keys_and_figures() {
    const KEYS: u32 = 50_000;
    const LIMIT: u64 = 8 << 20;
    let dir = tempfile::tempdir().unwrap();
    let db = open_small(dir.path(), LIMIT);
    let key = |n: u32| n.to_be_bytes();
    let mut model = std::collections::BTreeMap::new();
    for round in 0..8u32 {
        // Keys n % 4 == 0 keep what round 0 wrote.
        for n in (0..KEYS).filter(|n| round == 0 || n % 4 != 0) {
            if (n + round) % 9 == 0 {
                db.remove(&key(n)).unwrap();
                model.remove(key(n).as_slice());
            } else {
                let value = (n ^ round).to_le_bytes();
                db.write(&key(n), &value).unwrap();
                model.insert(key(n).to_vec(), value.to_vec());
            }
        }
    }
    let before = db.stats();
    // At least 29 bytes a record: the first file holds more than one chunk.
    const _: () = assert!(LIMIT / 29 > 1 << 18);
    assert_eq!(
        before.num_data_files, 2,
        "a sealed writer file and the newest"
    );
    db.close().unwrap();
    drop(db);

    let db = open_small(dir.path(), LIMIT);
    assert_eq!(common::contents(&db), model);
    let after = db.stats();
    assert_eq!(
        (after.num_keys, after.live_bytes, after.dead_bytes),
        (before.num_keys, before.live_bytes, before.dead_bytes)
    );
}

#[test]
fn a_hint_of_many_parts_loads_on_several_threads_to_the_same_keys_and_figures() {
    // More entries than one part of a parallel hint load (65,536).
    const KEYS: u32 = 150_000;
    let dir = tempfile::tempdir().unwrap();
    let db = open_small(dir.path(), 64 << 20);
    let key = |n: u32| n.to_be_bytes();
    for n in 0..KEYS {
        db.write(&key(n), &n.to_le_bytes()).unwrap();
    }
    for n in (0..KEYS).step_by(7) {
        db.remove(&key(n)).unwrap();
    }
    for n in (0..KEYS).step_by(5) {
        db.write(&key(n), b"again").unwrap();
    }
    db.merge().unwrap();
    // Newer records in a newer file, which must win over the hint's entries.
    for n in (0..KEYS).step_by(11) {
        db.write(&key(n), b"newer").unwrap();
    }
    for n in (0..KEYS).step_by(13) {
        db.remove(&key(n)).unwrap();
    }
    let before = db.stats();
    db.close().unwrap();
    drop(db);

    // Damage the last byte of the merged file (the value of its last record): a hint-loaded file
    // is not scanned, so open succeeds only if the hint was used, and the damage shows up as
    // one unreadable key.
    let hints = files_with_ext(dir.path(), "hint");
    assert_eq!(hints.len(), 1, "the merge wrote one hint file");
    let merged = dir.path().join(format!("{:010}.data", file_id(&hints[0])));
    let mut bytes = std::fs::read(&merged).unwrap();
    *bytes.last_mut().unwrap() ^= 0xFF;
    std::fs::write(&merged, bytes).unwrap();

    let db = open_small(dir.path(), 64 << 20);
    let after = db.stats();
    assert_eq!(
        (
            after.num_keys,
            after.live_bytes,
            after.dead_bytes,
            &after.files
        ),
        (
            before.num_keys,
            before.live_bytes,
            before.dead_bytes,
            &before.files
        )
    );
    let mut corrupt = 0;
    for n in 0..KEYS {
        match db.get(&key(n)) {
            Ok(value) => assert_eq!(value.map(|v| v.to_vec()), expected_value(n), "key {n}"),
            Err(Error::Corruption { .. }) => corrupt += 1,
            Err(other) => panic!("key {n}: {other}"),
        }
    }
    assert_eq!(corrupt, 1);
}

/// The writer appends through a map of the active file, which it allocates ahead of its
/// records (where the file system reserves blocks in place). A crash (here: a copy of the
/// directory taken while the store is open, which is what a killed process leaves) finds zeros
/// after the last record; open cuts them like a torn write, keeps every record, saves nothing
/// beside the file, and appends after the records.
#[test]
fn an_active_file_allocated_ahead_reopens_with_its_records_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    for n in 0..1000u32 {
        db.write(&n.to_le_bytes(), &[n as u8; 100]).unwrap();
    }
    let records = db.stats().total_bytes;
    let active = newest_data_file(dir.path());
    let allocated = active.metadata().unwrap().len();
    // ext4, XFS and tmpfs get the file allocated ahead; other file systems get `pwrite`, and
    // then the copy below is simply a crash at a record boundary.
    assert!(
        allocated >= records,
        "allocated {allocated}, records {records}"
    );
    if allocated == records {
        eprintln!("this file system does not allocate ahead: no zero tail to cut");
    }

    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    std::fs::remove_file(crashed.path().join("LOCK")).ok();
    drop(db);
    let db = Database::open(crashed.path()).unwrap();
    let reopened = crashed.path().join(active.file_name().unwrap());
    assert_eq!(reopened.metadata().unwrap().len(), records);
    assert_eq!(saved_cuts(crashed.path()), 0, "zeros are not worth saving");
    for n in 0..1000u32 {
        assert_eq!(db.read(&n.to_le_bytes()).unwrap(), [n as u8; 100]);
    }
    db.write(b"after", b"crash").unwrap();
    db.close().unwrap();
    assert_eq!(reopened.metadata().unwrap().len(), db_total(crashed.path()));
    let db = Database::open(crashed.path()).unwrap();
    assert_eq!(db.read(b"after").unwrap(), b"crash");
    assert_eq!(db.keys().count(), 1001);
}

fn db_total(dir: &Path) -> u64 {
    Database::open(dir).unwrap().stats().total_bytes
}

/// A stray file named with the largest id (4294967295) leaves no id for new data files: open
/// and rotation report it by name instead of wrapping the id around to 0 and renaming a new file
/// over an existing one.
#[test]
fn a_stray_file_with_the_largest_id_is_a_clear_error_not_a_wrapped_id() {
    let dir = tempfile::tempdir().unwrap();
    let stray = dir.path().join(format!("{}.hint", u32::MAX));
    std::fs::write(&stray, b"not a hint file").unwrap();
    let err = Database::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::FileIdsExhausted), "{err}");
    assert!(err.to_string().contains("stray file"), "{err}");
    std::fs::remove_file(&stray).unwrap();

    // One id left: open takes it for the active file; the rotation then has none.
    let config = Config::new(dir.path())
        .data_file_limit(256)
        .background_merge(false);
    std::fs::write(dir.path().join(format!("{}.hint", u32::MAX - 1)), b"stray").unwrap();
    let db = config.clone().open().unwrap();
    db.write(b"first", &[1; 200]).unwrap();
    let err = db.write(b"second", &[2; 200]).unwrap_err();
    assert!(matches!(err, Error::FileIdsExhausted), "{err}");
    assert_eq!(db.read(b"first").unwrap(), [1; 200]);
    db.close().unwrap();
    let reopened = config.open().unwrap();
    assert_eq!(reopened.read(b"first").unwrap(), [1; 200]);
}

/// With a data file limit no longer than a file header (20 bytes), every open sealed the newest
/// file, even empty, and started another: each open left one more empty data file that no merge
/// took (found by review). An empty newest file is now reused whatever the limit.
#[test]
fn reopening_with_a_tiny_limit_adds_no_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let open = || open_small(dir.path(), 10);
    let db = open();
    db.write(b"k", b"v").unwrap();
    db.close().unwrap();
    open().close().unwrap(); // seals the full file, starts an empty one
    let files = files_with_ext(dir.path(), "data").len();
    for _ in 0..3 {
        open().close().unwrap();
    }
    assert_eq!(files_with_ext(dir.path(), "data").len(), files);
    assert_eq!(open().read(b"k").unwrap(), b"v");
}
