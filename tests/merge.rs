//! Merge: space is reclaimed, values and removals survive it and a reopen, hint files are used.

mod common;

use bitcask::sim::{Fault, SimFs};
use bitcask::{Database, Error};
use common::{contents, files_with_ext, open_small};

/// Opens `/store` on the simulated file system `fs`, background merge off.
fn open_simulated(fs: &SimFs) -> bitcask::Result<Database> {
    bitcask::Config::new("/store")
        .file_system(fs.clone())
        .background_merge(false)
        .open()
}

fn overwrite_heavy(db: &Database, keys: u32, rounds: u32) {
    for round in 0..rounds {
        for k in 0..keys {
            db.write(&k.to_le_bytes(), &[round as u8; 64]).unwrap();
        }
    }
}

#[test]
fn full_merge_leaves_about_the_live_bytes_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_small(dir.path(), 8192);
    overwrite_heavy(&db, 200, 10);
    for k in 0..50u32 {
        db.remove(&k.to_le_bytes()).unwrap();
    }
    let before = db.stats();
    assert!(before.dead_bytes > before.live_bytes * 5, "{before:?}");
    db.merge().unwrap();
    let after = db.stats();
    assert_eq!(after.num_keys, 150);
    assert_eq!(after.live_bytes, before.live_bytes);
    let on_disk: u64 = files_with_ext(dir.path(), "data")
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    assert_eq!(on_disk, after.total_bytes);
    assert!(
        (on_disk as f64) < after.live_bytes as f64 * 1.1 + 2.0 * 20.0 * after.num_data_files as f64,
        "{after:?}"
    );
    for k in 50..200u32 {
        assert_eq!(db.read(&k.to_le_bytes()).unwrap(), [9u8; 64]);
    }
}

#[test]
fn removed_keys_stay_removed_after_merge_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_small(dir.path(), 1024);
    overwrite_heavy(&db, 30, 3);
    for k in (0..30u32).step_by(2) {
        db.remove(&k.to_le_bytes()).unwrap();
    }
    db.merge().unwrap();
    db.close().unwrap();
    let db = open_small(dir.path(), 1024);
    for k in 0..30u32 {
        let got = db.get(&k.to_le_bytes()).unwrap();
        if k % 2 == 0 {
            assert!(got.is_none(), "key {k} came back");
        } else {
            assert_eq!(&*got.unwrap(), &[2u8; 64]);
        }
    }
}

#[test]
fn merging_a_put_with_its_tombstone_drops_both() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_small(dir.path(), 1024);
    db.write(b"k", b"old").unwrap();
    db.remove(b"k").unwrap();
    // Merge everything: the put and its tombstone both go, nothing can resurrect it.
    db.merge().unwrap();
    db.close().unwrap();
    let db = open_small(dir.path(), 1024);
    assert!(db.get(b"k").unwrap().is_none());
    db.write(b"k", b"new").unwrap();
    db.merge().unwrap();
    assert_eq!(db.read(b"k").unwrap(), b"new");
}

#[test]
fn merge_writes_hint_files_and_open_uses_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_small(dir.path(), 4096);
    overwrite_heavy(&db, 100, 3);
    db.merge().unwrap();
    db.close().unwrap();
    let hints = files_with_ext(dir.path(), "hint");
    assert!(!hints.is_empty());
    // Damage a value inside the first merged data file. With its hint, open does not scan the
    // file, so it succeeds, and the damaged record is reported when read, never returned.
    let data = hints[0].with_extension("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&data, &bytes).unwrap();
    let db = open_small(dir.path(), 4096);
    let mut corrupt = 0;
    for k in 0..100u32 {
        match db.read(&k.to_le_bytes()) {
            Ok(v) => assert_eq!(v, [2u8; 64]),
            Err(Error::Corruption { path, .. }) => {
                // Open resolves the directory's symbolic links.
                assert_eq!(path, std::fs::canonicalize(&data).unwrap());
                corrupt += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(corrupt, 1);
}

/// With `hint_files(false)` merge writes no hint file, and open reads every merged record: a
/// removed key stays removed, every value reads back, and the data files alone are the store.
#[test]
fn merge_without_hint_files_writes_none_and_open_scans() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        bitcask::Config::new(dir.path())
            .data_file_limit(4096)
            .background_merge(false)
            .hint_files(false)
            .open()
            .unwrap()
    };
    let db = open();
    overwrite_heavy(&db, 100, 3);
    for k in 0..10u32 {
        db.remove(&k.to_le_bytes()).unwrap();
    }
    db.merge().unwrap();
    assert!(files_with_ext(dir.path(), "hint").is_empty());
    let before = contents(&db);
    db.close().unwrap();
    let db = open();
    assert_eq!(contents(&db), before);
    assert!(matches!(
        db.read(&0u32.to_le_bytes()),
        Err(Error::KeyNotFound)
    ));
    assert_eq!(db.read(&99u32.to_le_bytes()).unwrap(), [2u8; 64]);
    // Merged again with hint files on, the store has them again.
    drop(db);
    let db = open_small(dir.path(), 4096);
    db.merge().unwrap();
    assert!(!files_with_ext(dir.path(), "hint").is_empty());
}

#[test]
fn damaged_hint_file_falls_back_to_scanning() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_small(dir.path(), 4096);
    overwrite_heavy(&db, 100, 3);
    db.merge().unwrap();
    db.close().unwrap();
    for hint in files_with_ext(dir.path(), "hint") {
        let mut bytes = std::fs::read(&hint).unwrap();
        bytes[30] ^= 1;
        std::fs::write(&hint, &bytes).unwrap();
    }
    let db = open_small(dir.path(), 4096);
    for k in 0..100u32 {
        assert_eq!(db.read(&k.to_le_bytes()).unwrap(), [2u8; 64]);
    }
}

#[test]
fn merge_of_an_empty_store_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.merge().unwrap();
    assert_eq!(db.stats().num_data_files, 1);
}

#[test]
fn repeated_merges_keep_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_small(dir.path(), 2048);
    for round in 0..5u32 {
        overwrite_heavy(&db, 40, 2);
        db.write(format!("round{round}").as_bytes(), b"marker")
            .unwrap();
        db.merge().unwrap();
    }
    db.close().unwrap();
    let db = open_small(dir.path(), 2048);
    for round in 0..5u32 {
        assert_eq!(
            db.read(format!("round{round}").as_bytes()).unwrap(),
            b"marker"
        );
    }
    assert_eq!(db.stats().num_keys, 45);
}

type Contents = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;

/// Values of 2.5 and 3 MiB (larger than the 1 MiB buffer merge writes its outputs through, so
/// they bypass it, with small records buffered on either side), whose bytes differ by
/// position; key-0 is written twice, so that the merge drops a dead version first.
fn large_values() -> Vec<(Vec<u8>, Vec<u8>)> {
    let pattern = |seed: usize, len: usize| -> Vec<u8> {
        (0..len).map(|i| ((i * 7 + seed) % 253) as u8).collect()
    };
    let sizes = [100, 5 << 19, 300, 3 << 20, 77, 100, 200];
    let keys = (0..6).chain([0]);
    keys.zip(sizes)
        .enumerate()
        .map(|(seed, (key, len))| (format!("key-{key}").into_bytes(), pattern(seed, len)))
        .collect()
}

/// Writes `values` in order and syncs; returns what the store then holds.
fn write_all(db: &Database, values: &[(Vec<u8>, Vec<u8>)]) -> Contents {
    for (key, value) in values {
        db.write(key, value).unwrap();
    }
    db.sync().unwrap();
    values.iter().cloned().collect()
}

#[test]
fn values_larger_than_the_merge_buffer_survive_merge_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let expected = write_all(&db, &large_values());
    db.merge().unwrap();
    assert_eq!(contents(&db), expected);
    let on_disk: u64 = files_with_ext(dir.path(), "data")
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    assert!(on_disk > 5 << 20, "{on_disk}");
    assert_eq!(on_disk, db.stats().total_bytes);
    db.close().unwrap();
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(contents(&db), expected);
}

/// A merge of values larger than its write buffer, with a power cut, an error or a short write
/// at each of its file-system operations: the store then opens with everything.
#[test]
fn faults_during_a_merge_of_values_larger_than_its_buffer_lose_nothing() {
    let open = open_simulated;
    let values = large_values();
    let prepared = |fs: &SimFs| {
        let db = open(fs).unwrap();
        (write_all(&db, &values), db)
    };
    let fs = SimFs::new();
    let (expected, db) = prepared(&fs);
    let before = fs.ops();
    // The merge's inputs: every file, the active one sealed first.
    let inputs: Vec<u32> = db.stats().files.iter().map(|f| f.file_id).collect();
    db.merge().unwrap();
    let merge_ops = fs.ops() - before;
    assert!(merge_ops > 5, "{merge_ops}");
    let faults = [
        Fault::PowerCut,
        Fault::Error(std::io::ErrorKind::StorageFull),
        Fault::ShortWrite,
    ];
    for at in before + 1..=before + merge_ops {
        for fault in faults {
            let fs = SimFs::new();
            let (_, db) = prepared(&fs);
            assert_eq!(fs.ops(), before, "the workload is deterministic");
            fs.fail_at(at, fault);
            let merged = db.merge();
            let what = format!(
                "{fault:?} at op {at} (merge: ops {before}..{})",
                before + merge_ops
            );
            let counted = db.stats().files;
            drop(db);
            let survivor = if fault == Fault::PowerCut {
                fs.crash_image()
            } else {
                fs
            };
            let db = open(&survivor).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
            assert_eq!(contents(&db), expected, "{what}; merge returned {merged:?}");
            if fault != Fault::PowerCut {
                // The failed handle's stats count the files it reads from: the merge's inputs
                // (it failed before publishing its outputs) or its outputs, as the reopened
                // store has them, never some of both. (The active file may differ: a rotation
                // that failed half way leaves a newer empty file.)
                let reopened = db.stats().files;
                let active: Vec<u32> = counted
                    .iter()
                    .chain(&reopened)
                    .filter(|f| f.active)
                    .map(|f| f.file_id)
                    .collect();
                let sealed = |ids: &mut dyn Iterator<Item = u32>| -> Vec<u32> {
                    ids.filter(|id| !active.contains(id)).collect()
                };
                let counted = sealed(&mut counted.iter().map(|f| f.file_id));
                let outputs = sealed(&mut reopened.iter().map(|f| f.file_id));
                let inputs = sealed(&mut inputs.iter().copied());
                assert!(
                    counted == inputs || counted == outputs,
                    "{what}; merge returned {merged:?}: stats count files {counted:?}, \
                     inputs {inputs:?}, outputs {outputs:?}"
                );
            }
        }
    }
}

/// A store of 50 keys, each written three times (the last value `[2; 64]`), on `fs`.
fn overwritten_store(fs: &SimFs, data_file_limit: u64) -> Database {
    let db = bitcask::Config::new("/store")
        .file_system(fs.clone())
        .background_merge(false)
        .data_file_limit(data_file_limit)
        .open()
        .unwrap();
    overwrite_heavy(&db, 50, 3);
    db
}

/// Merges a fresh [`overwritten_store`] once per file-system operation a merge of it makes, with
/// `fault` striking that operation, and hands each run to `check`: the operation's number, the
/// file system, the handle and what `merge()` returned.
fn with_a_fault_at_each_merge_step(
    data_file_limit: u64,
    fault: Fault,
    mut check: impl FnMut(u64, &SimFs, Database, bitcask::Result<()>),
) {
    let probe = SimFs::new();
    let db = overwritten_store(&probe, data_file_limit);
    let before = probe.ops();
    db.merge().unwrap();
    for at in before + 1..=probe.ops() {
        let fs = SimFs::new();
        let db = overwritten_store(&fs, data_file_limit);
        fs.fail_at(at, fault);
        let merged = db.merge();
        check(at, &fs, db, merged);
    }
}

/// Whether `files` (a directory listing with contents) holds a `MERGE` record: the merge
/// committed, and the next open finishes it.
fn committed(files: &std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>) -> bool {
    files.contains_key(std::path::Path::new("/store/MERGE"))
}

fn assert_newest_values(db: &Database, at: u64) {
    for k in 0..50u32 {
        assert_eq!(db.read(&k.to_le_bytes()).unwrap(), [2u8; 64], "op {at}");
    }
}

/// A merge that fails before its commit point removes what it wrote, whichever step failed:
/// the store stays usable, and its directory holds no temporary file (a failed background merge
/// is retried, and on a full disk each leftover output took space the writer needed). An output
/// whose flush, fsync or hint file failed was left behind until the next open. Found by review.
#[test]
fn a_merge_that_fails_before_its_commit_leaves_no_temporary_file() {
    let mut failed = 0;
    let full = Fault::Error(std::io::ErrorKind::StorageFull);
    with_a_fault_at_each_merge_step(2048, full, |at, fs, db, merged| {
        let files = fs.files(std::path::Path::new("/store"));
        let Err(error) = merged else {
            // The merge absorbed the fault (an allocation refused, say): it is whole, and a
            // power cut now keeps it so (it synced every record before its commit).
            assert_newest_values(&db, at);
            let after_cut = open_simulated(&fs.crash_image()).unwrap();
            assert_newest_values(&after_cut, at);
            return;
        };
        if committed(&files) {
            return; // past the commit point: the next open finishes it
        }
        failed += 1;
        let left: Vec<_> = files
            .keys()
            .filter(|path| path.extension().is_some_and(|ext| ext == "tmp"))
            .collect();
        assert!(
            left.is_empty(),
            "op {at} ({error}): the failed merge left {left:?}"
        );
        assert_newest_values(&db, at);
    });
    assert!(failed > 0, "no fault made the merge fail before its commit");
}

/// A rename that fails after it took effect (a network file system's retried rename can) must
/// not be taken for "not committed" when it was the `MERGE` record's: that merge used to delete
/// its outputs while `MERGE` named them, and every later open failed on a missing file. Now the
/// merge counts as committed: merges are refused until reopen, and the reopen finishes it.
/// Found by review.
#[test]
fn a_commit_rename_that_fails_after_taking_effect_counts_as_committed() {
    let mut committed_anyway = 0;
    with_a_fault_at_each_merge_step(2048, Fault::FailAfterRename, |at, fs, db, merged| {
        let files = fs.files(std::path::Path::new("/store"));
        if !committed(&files) {
            return; // the fault struck another operation (or another rename)
        }
        committed_anyway += 1;
        assert!(merged.is_err(), "op {at}");
        assert_newest_values(&db, at);
        assert!(
            matches!(db.merge(), Err(bitcask::Error::MergeRefused(_))),
            "op {at}"
        );
        drop(db);
        let reopened = open_simulated(fs).unwrap_or_else(|e| panic!("op {at}: {e}"));
        assert_newest_values(&reopened, at);
        reopened.merge().unwrap();
        assert_newest_values(&reopened, at);
    });
    assert!(
        committed_anyway > 0,
        "no fault struck the rename of the merge record"
    );
}

/// A merge that stopped after its commit point leaves its `MERGE` record for the next open to
/// finish. If hint files were deleted meanwhile (someone treating them as a cache), open used
/// to fail on every attempt, calling the missing hint of an output corruption, though the
/// output's data file was there to scan. Now it opens with every value. Found by review.
#[test]
fn an_unfinished_merge_whose_output_lost_its_hint_file_opens() {
    let mut unfinished = 0;
    with_a_fault_at_each_merge_step(1 << 20, Fault::PowerCut, |at, fs, db, _| {
        drop(db);
        let files = fs.crash_image().files(std::path::Path::new("/store"));
        if !committed(&files) {
            return;
        }
        unfinished += 1;
        let without_hints = SimFs::new();
        for (path, bytes) in files {
            if !path.to_string_lossy().contains(".hint") {
                without_hints.put_file(&path, &bytes);
            }
        }
        let db = open_simulated(&without_hints).unwrap_or_else(|e| panic!("op {at}: {e}"));
        assert_newest_values(&db, at);
    });
    assert!(
        unfinished > 0,
        "no power cut left a committed merge unfinished"
    );
}

/// A merge that panics (a bug; here the file system panics at each of the merge's operations in
/// turn) lets the panic reach its caller, and refuses later merges on the handle, from any
/// thread, until reopen: it may have stopped past its commit point, and a later merge's `MERGE`
/// record would replace the one only recovery may finish. Reads go on, and the store reopens
/// with every value. Found by review (only the background thread's panics refused merges).
#[test]
fn a_merge_that_panics_refuses_later_merges_until_reopen() {
    let probe = SimFs::new();
    let db = overwritten_store(&probe, 1 << 20);
    let before = probe.ops();
    db.merge().unwrap();
    for at in before + 1..=probe.ops() {
        let fs = SimFs::new();
        let db = overwritten_store(&fs, 1 << 20);
        fs.fail_at(at, Fault::Panic);
        let merged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.merge()));
        assert!(merged.is_err(), "op {at}: the panic reached the caller");
        let again = db.merge().unwrap_err();
        assert!(matches!(again, Error::MergeRefused(_)), "op {at}: {again}");
        assert!(again.to_string().contains("a merge panicked"), "{again}");
        assert_newest_values(&db, at);
        drop(db);
        assert_newest_values(&open_simulated(&fs).unwrap(), at);
    }
}

/// A merge that fails after its commit point (its `MERGE` record is in place) leaves that record
/// for the next open to finish: later merges on the handle are refused with `MergeRefused`,
/// which says so, while reads and writes go on working.
#[test]
fn after_a_merge_failed_past_its_commit_merges_are_refused_and_writes_work() {
    let mut refused = 0;
    let failure = Fault::Error(std::io::ErrorKind::Other);
    with_a_fault_at_each_merge_step(1 << 20, failure, |at, fs, db, merged| {
        if merged.is_ok() || !committed(&fs.files(std::path::Path::new("/store"))) {
            return;
        }
        refused += 1;
        let again = db.merge().unwrap_err();
        assert!(matches!(again, Error::MergeRefused(_)), "op {at}: {again}");
        assert!(again.to_string().contains("writes still work"), "{again}");
        db.write(b"after", b"works").unwrap();
        assert_eq!(db.read(b"after").unwrap(), b"works");
    });
    assert!(refused > 0, "no fault left a committed merge unfinished");
}
