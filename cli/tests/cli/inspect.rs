//! `stats`, `merge` and `dump`.

use std::ffi::OsStr;

use serde_json::Value;

use crate::support::{
    TestStore, build_multi_file_store, expected_pairs, files_with_ext, flip_byte, locate,
    store_with_a_saved_tail,
};

fn stats_json(store: &TestStore) -> Value {
    let run = store.run(&["stats", "--json"]).expect(0);
    serde_json::from_slice(&run.stdout).expect("stats --json prints JSON")
}

#[test]
fn stats_prints_a_table_with_the_key_count() {
    let store = TestStore::new();
    store.fill(&[(b"a", b"1"), (b"b", b"2"), (b"a", b"3")]);
    let out = store.run(&["stats"]).expect(0).out();
    let keys_line = out
        .lines()
        .find(|l| l.starts_with("keys"))
        .expect("a keys row");
    assert_eq!(keys_line.split_whitespace().nth(1), Some("2"), "{out}");
    assert!(out.contains("data files"), "{out}");
    assert!(out.contains("0000000001"), "a row per data file: {out}");
}

#[test]
fn stats_json_reports_the_library_figures() {
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    let expected = store.with_db(|db| db.stats());
    let json = stats_json(&store);
    assert_eq!(json["num_keys"], expected.num_keys);
    assert_eq!(json["num_data_files"], expected.num_data_files);
    assert_eq!(json["dead_bytes"], expected.dead_bytes);
    assert_eq!(
        json["files"].as_array().map(Vec::len),
        Some(expected.files.len())
    );
}

#[test]
fn merge_reclaims_dead_bytes_and_keeps_every_value() {
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    let dead_before = stats_json(&store)["dead_bytes"].as_u64().expect("a number");
    let run = store.run(&["merge"]).expect(0);
    assert!(run.out().starts_with("merged: "), "{}", run.out());
    let dead_after = stats_json(&store)["dead_bytes"].as_u64().expect("a number");
    assert!(dead_after < dead_before, "{dead_before} -> {dead_after}");
    assert_eq!(store.pairs(), expected_pairs(&[]));
}

#[test]
fn merge_no_hints_writes_no_hint_files_and_the_store_still_opens() {
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    let hint_files = || {
        std::fs::read_dir(&store.dir)
            .expect("the store directory")
            .map(|entry| entry.expect("an entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "hint"))
            .count()
    };
    let run = store.run(&["merge", "--no-hints"]).expect(0);
    assert!(run.out().starts_with("merged: "), "{}", run.out());
    assert_eq!(hint_files(), 0, "hint files after merge --no-hints");
    assert_eq!(store.pairs(), expected_pairs(&[]));
    // Without the flag, merge writes them.
    store.run(&["merge"]).expect(0);
    assert!(hint_files() > 0);
}

#[test]
fn dump_lists_the_records_of_a_data_file_by_offset() {
    let store = TestStore::new();
    store.fill(&[(b"alpha", b"one")]);
    store.with_db(|db| db.remove(b"alpha").expect("remove"));
    let run = store.run(&["dump", "0000000001.data"]).expect(0);
    let lines: Vec<String> = run
        .out()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        lines.contains(&"20 1 put \"alpha\" = (3 bytes) \"one\"".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"49 2 tombstone \"alpha\"".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"total 2 records, 0 damaged ranges".to_string()),
        "{lines:#?}"
    );
}

#[test]
fn dump_of_more_than_one_output_chunk_lists_every_record_once_in_order() {
    // 3,000 records of about 90 bytes of output each: over 256 KiB, written in 64 KiB chunks.
    let store = TestStore::new();
    store.with_db(|db| {
        for n in 0..3000u32 {
            db.write(format!("key-{n:05}").as_bytes(), &[b'v'; 40])
                .expect("write");
        }
    });
    let run = store.run(&["dump", "0000000001.data"]).expect(0);
    let out = run.out();
    assert!(out.len() > 256 << 10, "{} bytes", out.len());
    let keys: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter(|word| word.starts_with("\"key-"))
        .collect();
    let expected: Vec<String> = (0..3000).map(|n| format!("\"key-{n:05}\"")).collect();
    assert_eq!(keys, expected);
    assert!(
        out.ends_with("total   3000 records, 0 damaged ranges\n"),
        "{}",
        &out[out.len() - 200..]
    );
}

#[test]
fn dump_lists_the_entries_of_a_hint_file() {
    let store = TestStore::new();
    store.fill(&[(b"alpha", b"one"), (b"beta", b"two")]);
    store.with_db(|db| db.merge().expect("merge"));
    let hint = files_with_ext(&store.dir, "hint")
        .pop()
        .expect("merge writes a hint file");
    let run = store.run(&[OsStr::new("dump"), hint.as_os_str()]).expect(0);
    let out = run.out();
    assert!(out.contains("hint for data file"), "{out}");
    assert!(
        out.contains("\"alpha\"") && out.contains("\"beta\""),
        "{out}"
    );
    assert!(out.contains("total   2 entries"), "{out}");
    assert!(out.contains("format version 2"), "{out}");
}

/// A store written in format version 1 (`tests/fixtures/format-v1` of the library) checks clean,
/// and `dump` lists its version 1 hint with the offsets its data file has.
#[test]
fn check_and_dump_read_a_format_version_1_store() {
    let store = TestStore::new();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/format-v1");
    std::fs::create_dir(&store.dir).expect("store dir");
    for entry in std::fs::read_dir(&fixture).expect("the fixture") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, store.dir.join(path.file_name().expect("name"))).expect("copy");
    }
    store.run(&["check"]).expect(0);
    let hint = store.dir.join("0000000007.hint");
    let out = store
        .run(&[OsStr::new("dump"), hint.as_os_str()])
        .expect(0)
        .out();
    assert!(out.contains("format version 1"), "{out}");
    let data = store.dir.join("0000000007.data");
    let records = store
        .run(&[OsStr::new("dump"), data.as_os_str()])
        .expect(0)
        .out();
    let offsets = |listing: &str| -> Vec<String> {
        listing
            .lines()
            .filter(|line| line.contains("\"key-"))
            .map(|line| line.split_whitespace().next().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(offsets(&out), offsets(&records), "{out}\n{records}");
    assert!(!offsets(&out).is_empty());
}

#[test]
fn dump_marks_damaged_bytes_with_their_offset_and_exits_1() {
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    let (path, offset) = locate(&store.dir, b"k3");
    flip_byte(&path, offset + 25);
    let run = store.run(&[OsStr::new("dump"), path.as_os_str()]).expect(1);
    let damaged = format!("{offset:>10}  DAMAGED: checksum mismatch");
    assert!(run.out().contains(&damaged), "{}", run.out());
    assert!(
        run.out().contains("\"k4\""),
        "records after the damage are listed"
    );
    assert!(run.stderr.contains("do not decode"), "{}", run.stderr);
}

/// A saved tail has no header: `dump` walks it from its first byte and shows each record at its
/// offset in the data file it was cut from.
#[test]
fn dump_lists_a_saved_tail_at_its_offsets_in_the_data_file() {
    let store = TestStore::new();
    let (saved, offset) = store_with_a_saved_tail(&store.dir);
    let run = store.run(&[OsStr::new("dump"), saved.as_os_str()]);
    let out = run.out();
    assert!(
        out.contains(&format!("cut off data file 0000000001 at offset {offset}")),
        "{out}"
    );
    // k3's damaged record first, then k4..k9 intact.
    assert!(out.contains(&format!("{offset:>10}  DAMAGED")), "{out}");
    for i in 4..10 {
        let line = format!("\"k{i}\" = (7 bytes) \"value-{i}\"");
        assert!(out.contains(&line), "k{i} missing:\n{out}");
    }
    assert!(out.contains("total   6 records, 1 damaged range"), "{out}");
    assert_eq!(run.code, 1, "the damaged record makes dump exit 1");
}

/// A saved tail renamed to an offset near 2^64 (found by review: adding its records' offsets
/// overflowed, a panic in debug builds): dump says so and shows offsets within the file.
#[test]
fn dump_of_a_saved_tail_named_with_an_impossible_offset_does_not_overflow() {
    let store = TestStore::new();
    let (saved, _) = store_with_a_saved_tail(&store.dir);
    let renamed = store.dir.join(format!("0000000001.data.cut-{}", u64::MAX));
    std::fs::rename(&saved, &renamed).expect("rename");
    let run = store.run(&[OsStr::new("dump"), renamed.as_os_str()]);
    let out = run.out();
    assert!(out.contains("offsets below are within this file"), "{out}");
    assert!(out.contains(&format!("{:>10}  DAMAGED", 0)), "{out}");
    assert!(out.contains("total   6 records, 1 damaged range"), "{out}");
}
