//! `check` on clean, damaged, torn, inconsistent and busy stores.

use bitcask::format::commit::MergeCommit;
use bitcask::format::fsync_failure::FsyncFailure;
use bitcask::format::header::{FileHeader, FileKind};
use bitcask::format::hint::{HintBuilder, HintEntry, HintFile};
use bitcask::format::record::{Record, RecordKind};

use crate::support::{
    TestStore, append, build_multi_file_store, data_files, fails_to_open, files_with_ext,
    flip_byte, locate, snapshot, store_with_a_saved_tail,
};

#[test]
fn a_clean_store_with_hint_files_passes() {
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    store.with_db(|db| db.merge().expect("merge"));
    let out = store.run(&["check"]).expect(0).out();
    assert!(out.contains("1 hint file"), "{out}");
    assert!(
        out.ends_with("result: OK (0 damaged, 0 warnings)\n"),
        "{out}"
    );
}

#[test]
fn a_damaged_record_is_reported_with_its_file_and_offset() {
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    let (path, offset) = locate(&store.dir, b"k3");
    flip_byte(&path, offset + 25);
    let run = store.run(&["check"]).expect(1);
    let line = format!(
        "DAMAGE  {} @ {offset}: bad record: checksum mismatch",
        path.display()
    );
    assert!(run.out().contains(&line), "{}", run.out());
    assert!(
        run.out().contains("result: DAMAGED (1 damaged"),
        "{}",
        run.out()
    );
    assert!(run.stderr.contains("bitcask repair"), "{}", run.stderr);
}

#[test]
fn every_damaged_record_is_reported() {
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    let (path1, offset1) = locate(&store.dir, b"k1");
    let (path3, offset3) = locate(&store.dir, b"k3");
    flip_byte(&path1, offset1 + 25);
    flip_byte(&path3, offset3 + 25);
    let out = store.run(&["check"]).expect(1).out();
    assert!(out.contains(&format!("@ {offset1}: bad record")), "{out}");
    assert!(out.contains(&format!("@ {offset3}: bad record")), "{out}");
    assert_eq!(out.matches("DAMAGE ").count(), 2, "{out}");
}

#[test]
fn a_torn_tail_is_only_a_warning() {
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    let tail = data_files(&store.dir).pop().expect("a data file");
    append(&tail, &[0x01, 0x02, 0x03, 0x04, 0x05]);
    let out = store.run(&["check"]).expect(0).out();
    assert!(
        out.contains(&format!("warning {} @ ", tail.display())),
        "{out}"
    );
    assert!(out.contains("torn tail"), "{out}");
    assert!(
        out.ends_with("result: OK (0 damaged, 1 warning)\n"),
        "{out}"
    );
}

/// A torn tail in which a record decodes (inside the damaged record's value, with a seq that
/// cannot be the writer's): check calls it a torn tail and says that open saves it, and open
/// does (found by review: check said only that open cuts it off).
#[test]
fn a_torn_tail_that_open_saves_is_reported_as_saved() {
    let store = TestStore::new();
    std::fs::create_dir_all(&store.dir).expect("create store dir");
    let record = |seq, key, value| Record {
        seq,
        kind: RecordKind::Put,
        key,
        value,
    };
    let mut inner = Vec::new();
    record(1, b"x", b"phantom").encode_into(&mut inner);
    let mut bytes = FileHeader::new(FileKind::Data, 1).encode().to_vec();
    record(1, b"a", b"one").encode_into(&mut bytes);
    let damaged_at = bytes.len();
    record(2, b"b", &inner).encode_into(&mut bytes);
    bytes[damaged_at] ^= 0xff;
    std::fs::write(store.dir.join("0000000001.data"), &bytes).expect("write data file");
    let out = store.run(&["check"]).expect(0).out();
    assert!(
        out.contains("torn tail") && out.contains("saves it beside the file"),
        "{out}"
    );
    store.with_db(|db| assert_eq!(db.read(b"a").expect("a"), b"one"));
    let saved = std::fs::read_dir(&store.dir)
        .expect("list")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().contains(".cut-"))
        })
        .count();
    assert_eq!(saved, 1, "open saved the tail");
}

/// Builds a multi-file store in `store`, merges it, and returns its hint file and the bytes.
fn merged_store_hint(store: &TestStore) -> (std::path::PathBuf, Vec<u8>) {
    build_multi_file_store(&store.dir);
    store.with_db(|db| db.merge().expect("merge"));
    let hint_path = files_with_ext(&store.dir, "hint")
        .pop()
        .expect("a hint file");
    let bytes = std::fs::read(&hint_path).expect("read hint");
    (hint_path, bytes)
}

#[test]
fn a_hint_entry_that_disagrees_with_its_data_file_is_damage() {
    let store = TestStore::new();
    let (hint_path, bytes) = merged_store_hint(&store);
    let hint = HintFile::decode(&bytes).expect("a valid hint");
    let mut forged = HintBuilder::new(hint.file_id);
    for (index, entry) in hint.entries().enumerate() {
        let seq = if index == 0 {
            entry.seq + 1000
        } else {
            entry.seq
        };
        forged.push(&HintEntry { seq, ..entry });
    }
    std::fs::write(&hint_path, forged.finish(hint.data_len)).expect("write hint");
    let out = store.run(&["check"]).expect(1).out();
    let line = format!("DAMAGE  {}: hint entry 0 (key", hint_path.display());
    assert!(out.contains(&line), "{out}");
    assert!(out.contains("in the hint,"), "{out}");
}

/// A committed, unfinished merge whose output lost its hint file: open scans the output's data
/// file, so check notes the missing hint and finds no damage.
#[test]
fn a_merge_output_without_its_hint_file_is_no_damage() {
    let store = TestStore::new();
    let (hint_path, bytes) = merged_store_hint(&store);
    let output = HintFile::decode(&bytes).expect("a valid hint").file_id;
    let commit = MergeCommit {
        inputs: vec![1],
        outputs: vec![output],
    };
    std::fs::write(store.dir.join("MERGE"), commit.encode()).expect("write MERGE");
    std::fs::remove_file(&hint_path).expect("remove hint");
    let out = store.run(&["check"]).expect(0).out();
    let line = format!(
        "{}: the hint file of this output of the interrupted merge is missing",
        hint_path.display()
    );
    assert!(out.contains(&line), "{out}");
    assert!(!fails_to_open(&store.dir), "open finishes the merge");
}

/// A version 1 hint (entries state their offsets) that leaves out a middle entry: every entry
/// it has matches, and its records end where the data file does, but open does not trust it
/// (the record in the gap would be skipped), and check says so.
#[test]
fn a_version_1_hint_with_a_gap_is_damage() {
    let store = TestStore::new();
    let (hint_path, bytes) = merged_store_hint(&store);
    let hint = HintFile::decode(&bytes).expect("a valid hint");
    let mut gapped = HintBuilder::version_1(hint.file_id);
    for (index, entry) in hint.entries().enumerate() {
        if index != 1 {
            gapped.push(&entry);
        }
    }
    std::fs::write(&hint_path, gapped.finish(hint.data_len)).expect("write hint");
    let out = store.run(&["check"]).expect(1).out();
    let line = format!(
        "DAMAGE  {}: the hint's records do not lie back to back",
        hint_path.display()
    );
    assert!(out.contains(&line), "{out}");
    assert!(
        !out.contains("hint entry"),
        "the entries it has match: {out}"
    );
}

/// A hint whose records stop before the data file ends (its last entry left out) is one open
/// does not trust: check says so, though every entry it has matches.
#[test]
fn a_hint_that_does_not_reach_the_end_of_its_data_file_is_damage() {
    let store = TestStore::new();
    let (hint_path, bytes) = merged_store_hint(&store);
    let hint = HintFile::decode(&bytes).expect("a valid hint");
    let entries: Vec<_> = hint.entries().collect();
    let mut short = HintBuilder::new(hint.file_id);
    for entry in &entries[..entries.len() - 1] {
        short.push(entry);
    }
    std::fs::write(&hint_path, short.finish(hint.data_len)).expect("write hint");
    let out = store.run(&["check"]).expect(1).out();
    let line = format!(
        "DAMAGE  {}: the hint's records end at byte {}, but the data file at {}",
        hint_path.display(),
        entries[entries.len() - 1].offset,
        hint.data_len
    );
    assert!(out.contains(&line), "{out}");
    assert!(
        !out.contains("hint entry"),
        "the entries it has match: {out}"
    );
}

#[test]
fn check_changes_no_file() {
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    let tail = data_files(&store.dir).pop().expect("a data file");
    append(&tail, &[0xAA; 9]);
    let before = snapshot(&store.dir);
    store.run(&["check"]).expect(0);
    assert_eq!(snapshot(&store.dir), before);
}

#[test]
fn a_store_open_elsewhere_is_refused() {
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    let _held = store.hold();
    let run = store.run(&["check"]).expect(3);
    assert!(
        // The library's holder note names this test's process (on Linux, which can tell).
        if cfg!(target_os = "linux") {
            run.stderr
                .contains(&format!("open in process {} ", std::process::id()))
        } else {
            run.stderr.contains("open in another process")
        },
        "{}",
        run.stderr
    );
}

#[test]
fn a_store_the_library_cannot_open_is_still_checked() {
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    let first = data_files(&store.dir).remove(0);
    flip_byte(&first, 3);
    assert!(fails_to_open(&store.dir), "the store must not open");
    let out = store.run(&["check"]).expect(1).out();
    let line = format!("DAMAGE  {} @ 0: file header: ", first.display());
    assert!(out.contains(&line), "{out}");
}

/// Records an open cut off and saved beside the file are not in the store: `check` says where
/// they are and how many, as a warning.
#[test]
fn a_saved_tail_is_reported_with_its_record_count() {
    let store = TestStore::new();
    let (saved, offset) = store_with_a_saved_tail(&store.dir);
    let out = store.run(&["check"]).expect(0).out();
    assert!(
        out.contains(&format!("warning {}", saved.display())),
        "{out}"
    );
    assert!(out.contains("saved tail: 6 valid records"), "{out}");
    assert!(out.contains(&format!("at offset {offset}")), "{out}");
}

/// A failed fsync's record is a warning naming the file and the length an earlier fsync made
/// durable; one that does not decode is a warning that open removes it. `dump` shows the record
/// either way, and neither is damage.
#[test]
fn a_failed_fsyncs_record_is_reported_and_dumped() {
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    let failure = FsyncFailure {
        file_id: 3,
        durable_len: 120,
    };
    let record = store.dir.join("FSYNC_FAILED");
    std::fs::write(&record, failure.encode()).unwrap();
    let out = store.run(&["check"]).expect(0).out();
    assert!(
        out.contains(&format!("warning {}", record.display())),
        "{out}"
    );
    assert!(
        out.contains("an fsync of data file 0000000003 failed; an earlier one made its first 120 bytes durable"),
        "{out}"
    );
    let dumped = store
        .run(&["dump", record.to_str().unwrap()])
        .expect(0)
        .out();
    assert!(dumped.contains("file    0000000003.data"), "{dumped}");
    assert!(dumped.contains("durable 120 bytes"), "{dumped}");

    std::fs::write(&record, &failure.encode()[..10]).unwrap();
    let out = store.run(&["check"]).expect(0).out();
    assert!(out.contains("does not decode"), "{out}");
    let dumped = store
        .run(&["dump", record.to_str().unwrap()])
        .expect(0)
        .out();
    assert!(dumped.contains("a crash tore it"), "{dumped}");
}

/// A file that cannot be read (a bad sector; here a directory in its place) is reported as
/// damage, and the other files are still checked.
#[test]
fn an_unreadable_data_file_is_damage_and_the_rest_is_still_checked() {
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    let unreadable = store.dir.join("0000000099.data");
    std::fs::create_dir(&unreadable).unwrap();
    let (path, offset) = locate(&store.dir, b"k3");
    flip_byte(&path, offset + 25);
    let out = store.run(&["check"]).expect(1).out();
    assert!(
        out.contains(&format!("DAMAGE  {}: unreadable", unreadable.display())),
        "{out}"
    );
    assert!(
        out.contains("checksum mismatch"),
        "the other files were not checked:\n{out}"
    );
}

/// A FIFO named like a data file makes `check` fail, naming it, instead of waiting forever to
/// read it (the tool reads store files only if they are regular files). The binary is killed
/// if it has not exited in 20 s, so a regression fails the test instead of hanging it.
#[test]
fn a_fifo_named_like_a_data_file_is_an_error_not_a_hang() {
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    let fifo = store.dir.join("0000000009.data");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.expect("mkfifo runs").success());
    let mut command = crate::support::bitcask();
    command.arg("--dir").arg(&store.dir).arg("check");
    let mut child = crate::support::spawn(command);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().expect("waits").is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().expect("kills");
            panic!("check hung on a FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    let said = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{said}");
    assert!(
        said.contains("0000000009.data") && said.contains("not a regular file"),
        "{said}"
    );
}

/// A sealed writer file cut at a record boundary is damage that `check` reports as open sees it:
/// the next writer file starts past the seq after its last record.
#[test]
fn a_sealed_file_cut_at_a_record_boundary_is_reported() {
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    let (path, offset) = locate(&store.dir, b"k3");
    store.run(&["check"]).expect(0);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..offset as usize]).unwrap();
    assert!(crate::support::fails_to_open(&store.dir));
    let run = store.run(&["check"]).expect(1);
    let line = format!(
        "DAMAGE  {}: records are missing from the end of this sealed file: its last record has \
         seq ",
        path.display()
    );
    assert!(
        run.out().contains("but the next writer file (0000"),
        "{}",
        run.out()
    );
    assert!(run.out().contains(&line), "{}", run.out());
}
