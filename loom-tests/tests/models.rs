//! loom models of the engine's concurrency protocol. Each runs the engine's real code (with
//! loom's instrumented locks, atomics and crossbeam-epoch) on the simulated file system, and
//! each has a broken twin: the same model with one ordering of the protocol removed, which loom
//! must catch, so we know the model can fail.
//!
//! A failing loom model cannot unwind cleanly (crossbeam-epoch's thread-local handle is torn
//! down outside the model and aborts the process), so each twin runs in a child process: the
//! twin test re-runs this binary on the ignored `twin_*` test and expects it to fail at one of
//! the model's assertions.
#![cfg(loom)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bitcask::loom::{ProtocolBreak, set_protocol_break};
use bitcask::sim::{Fault, SimFs};
use bitcask::{Config, Database, SyncPolicy};

const DIR: &str = "/loom";

fn open(fs: &SimFs, data_file_limit: u64, policy: SyncPolicy) -> Database {
    config(fs, data_file_limit, policy).open().unwrap()
}

fn config(fs: &SimFs, data_file_limit: u64, policy: SyncPolicy) -> Config {
    Config::new(DIR)
        .file_system(fs.clone())
        .data_file_limit(data_file_limit)
        .sync_policy(policy)
        .background_merge(false)
}

/// Runs `model` under loom with `protocol_break` switched on (in this process: a twin test's
/// child, or a correct model).
fn run_model(protocol_break: ProtocolBreak, model: fn()) {
    set_protocol_break(protocol_break);
    loom::model(model);
}

/// Runs the ignored test `twin` in a child process; true if loom failed it at an assertion of
/// a model in this file whose message holds `expected` (the failure the break must cause).
fn twin_fails(twin: &str, expected: &str) -> bool {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            twin,
            "--test-threads=1",
            "--nocapture",
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let at_model_assertion = stderr
        .lines()
        .any(|line| line.contains("panicked at tests/models.rs"))
        && stderr.contains(expected);
    if !at_model_assertion {
        eprintln!(
            "{twin} did not fail at the model assertion \"{expected}\"; its stderr:\n{stderr}"
        );
    }
    !output.status.success() && at_model_assertion
}

macro_rules! model_and_twin {
    ($model_test:ident, $twin_test:ident, $twin:ident, $model:ident, $break:ident, $expected:literal) => {
        #[test]
        fn $model_test() {
            run_model(ProtocolBreak::None, $model);
        }

        #[test]
        #[ignore = "runs in a child process of its `_is_caught` test"]
        fn $twin() {
            run_model(ProtocolBreak::$break, $model);
        }

        #[test]
        fn $twin_test() {
            assert!(
                twin_fails(stringify!($twin), $expected),
                "loom did not catch {:?}",
                ProtocolBreak::$break
            );
        }
    };
}

// 1. A reader against file rotation and a merge that swaps the file set and retires files: the
//    reader always gets the latest acknowledged value (and so never needs a retired file).
fn reader_vs_rotation_and_merge() {
    let fs = SimFs::new();
    let db = open(&fs, 64, SyncPolicy::Never);
    db.write(b"k", b"v1").unwrap();
    let other = db.clone();
    let merger = loom::thread::spawn(move || {
        // 24 + 44 bytes: the first file is full, so this write rotates it.
        other.write(b"filler", &[7; 38]).unwrap();
        other.merge().unwrap();
    });
    assert_eq!(db.read(b"k").unwrap(), b"v1");
    merger.join().unwrap();
    assert_eq!(db.read(b"k").unwrap(), b"v1");
}

model_and_twin!(
    model_1_reader_vs_rotation_and_merge,
    model_1_broken_twin_retire_before_repoint_is_caught,
    twin_1_retire_before_repoint,
    reader_vs_rotation_and_merge,
    RetireBeforeRepoint,
    "MissingFile"
);

/// A store holding `k` = `v1`: runs `during` while another thread merges it, then `after` once
/// the merge is done (models 2, 3 and 9).
fn while_merging(during: impl FnOnce(&Database), after: impl FnOnce(&Database)) {
    let fs = SimFs::new();
    let db = open(&fs, 1 << 20, SyncPolicy::Never);
    db.write(b"k", b"v1").unwrap();
    let other = db.clone();
    let merger = loom::thread::spawn(move || other.merge().unwrap());
    during(&db);
    merger.join().unwrap();
    after(&db);
}

// 2. Publish before point: a reader that sees a keydir entry can always read its bytes, also
//    while merge moves the entry to a new file.
fn reader_sees_only_published_files() {
    while_merging(
        |db| {
            let value = db.get(b"k").unwrap().expect("the key is live");
            assert_eq!(&*value, b"v1");
        },
        |_| {},
    );
}

model_and_twin!(
    model_2_publish_before_point,
    model_2_broken_twin_point_before_publish_is_caught,
    twin_2_point_before_publish,
    reader_sees_only_published_files,
    PointBeforePublish,
    "MissingFile"
);

// 3. Merge's conditional keydir update against a concurrent write of the same key: the write
//    wins.
fn write_wins_over_merge() {
    let newer = "a merge's repoint overwrote a newer write";
    let holds_v2 = |db: &Database| assert_eq!(db.read(b"k").unwrap(), b"v2", "{newer}");
    while_merging(
        |db| {
            db.write(b"k", b"v2").unwrap();
            holds_v2(db);
        },
        holds_v2,
    );
}

model_and_twin!(
    model_3_write_wins_over_merge,
    model_3_broken_twin_unconditional_repoint_is_caught,
    twin_3_unconditional_repoint,
    write_wins_over_merge,
    UnconditionalRepoint,
    "a merge's repoint overwrote a newer write"
);

// 4. Group commit: every writer's record is durable when its call returns, and no writer waits
//    forever (loom reports a deadlock if one does).
fn durable(fs: &SimFs, value: &[u8]) -> bool {
    let synced = fs
        .synced_contents(&Path::new(DIR).join("0000000001.data"))
        .unwrap_or_default();
    synced.windows(value.len()).any(|w| w == value)
}

fn group_commit() {
    group_commit_with(Duration::ZERO);
}

/// Model 4 with `poll` as `Config::commit_poll`: zero makes followers sleep on the condition
/// variable, anything else makes them poll for the running fsync's end.
fn group_commit_with(poll: Duration) {
    let fs = SimFs::new();
    let db = config(&fs, 1 << 20, SyncPolicy::Always)
        .commit_poll(poll)
        .open()
        .unwrap();
    let (other, other_fs) = (db.clone(), fs.clone());
    let writer = loom::thread::spawn(move || {
        other.write(b"a", b"value-a").unwrap();
        assert!(
            durable(&other_fs, b"value-a"),
            "a returned before it was durable"
        );
    });
    db.write(b"b", b"value-b").unwrap();
    assert!(durable(&fs, b"value-b"), "b returned before it was durable");
    writer.join().unwrap();
}

model_and_twin!(
    model_4_group_commit,
    model_4_broken_twin_follower_skips_wait_is_caught,
    twin_4_follower_skips_wait,
    group_commit,
    FollowerSkipsWait,
    "returned before it was durable"
);

// 5. A remove of a key another thread is removing: whichever call finds the key already absent
//    still returns only once the key's removal is durable.
const REMOVED: &[u8] = b"removed-key";

/// Whether the synced bytes hold the put of `REMOVED` and its tombstone.
fn removal_durable(fs: &SimFs) -> bool {
    let synced = fs
        .synced_contents(&Path::new(DIR).join("0000000001.data"))
        .unwrap_or_default();
    synced
        .windows(REMOVED.len())
        .filter(|w| *w == REMOVED)
        .count()
        >= 2
}

fn concurrent_removes() {
    let fs = SimFs::new();
    let db = open(&fs, 1 << 20, SyncPolicy::Always);
    db.write(REMOVED, b"value").unwrap();
    let (other, other_fs) = (db.clone(), fs.clone());
    let remover = loom::thread::spawn(move || {
        other.remove(REMOVED).unwrap();
        assert!(
            removal_durable(&other_fs),
            "a remove returned before the removal was durable"
        );
    });
    db.remove(REMOVED).unwrap();
    assert!(
        removal_durable(&fs),
        "a remove returned before the removal was durable"
    );
    remover.join().unwrap();
}

model_and_twin!(
    model_5_concurrent_removes,
    model_5_broken_twin_noop_remove_skips_wait_is_caught,
    twin_5_noop_remove_skips_wait,
    concurrent_removes,
    NoopRemoveSkipsWait,
    "a remove returned before the removal was durable"
);

// 6. Group commit as in model 4, with followers polling for the running fsync's end instead of
//    sleeping: a follower whose record came after the fsync began must not take that fsync for
//    its own.
fn group_commit_polling() {
    group_commit_with(Duration::from_millis(1));
}

model_and_twin!(
    model_6_group_commit_polling,
    model_6_broken_twin_polled_fsync_counts_as_own_is_caught,
    twin_6_polled_fsync_counts_as_own,
    group_commit_polling,
    PolledFsyncCountsAsOwn,
    "returned before it was durable"
);

// 7. A write racing `close` under `Always`: it fails with `Closed`, or returns Ok only once its
//    record is durable, and once `close` returned nothing fsyncs any more (a round led after it
//    would fsync, and on a failure write `FSYNC_FAILED`, in a directory whose lock was released).
fn write_vs_close() {
    let fs = SimFs::new();
    let db = open(&fs, 1 << 20, SyncPolicy::Always);
    let (other, other_fs) = (db.clone(), fs.clone());
    let writer = loom::thread::spawn(move || match other.write(b"a", b"value-a") {
        Ok(()) => assert!(
            durable(&other_fs, b"value-a"),
            "a returned before it was durable"
        ),
        Err(bitcask::Error::Closed) => {}
        Err(e) => panic!("a write racing close failed with {e}"),
    });
    db.close().unwrap();
    let operations_at_close = fs.ops();
    writer.join().unwrap();
    assert_eq!(
        fs.ops(),
        operations_at_close,
        "the file system was written after close returned"
    );
}

model_and_twin!(
    model_7_write_vs_close,
    model_7_broken_twin_fsync_after_close_is_caught,
    twin_7_fsync_after_close,
    write_vs_close,
    FsyncAfterClose,
    "the file system was written after close returned"
);

// 8. The fsync gate: two writers under `Always`, the second of which rotates the active file
//    (64-byte files hold one 29-byte record), with the second mutating file-system operation
//    failing, whichever the interleaving makes it: an append, a leader's fsync or rotation's.
//    A write that returns Ok is durable: after a failed fsync, no later fsync returns Ok for
//    the records the failure dropped (Linux reports a failed write-back to one fsync only).
fn durable_in_any_file(fs: &SimFs, value: &[u8]) -> bool {
    ["0000000001.data", "0000000002.data"].iter().any(|name| {
        fs.synced_contents(&Path::new(DIR).join(name))
            .is_some_and(|synced| synced.windows(value.len()).any(|w| w == value))
    })
}

fn fsync_gate_with_rotation() {
    let fs = SimFs::new();
    let db = open(&fs, 64, SyncPolicy::Always);
    fs.fail_at(fs.ops() + 2, Fault::Error(std::io::ErrorKind::Other));
    let (other, other_fs) = (db.clone(), fs.clone());
    let writer = loom::thread::spawn(move || {
        if other.write(b"a", b"value-a").is_ok() {
            assert!(
                durable_in_any_file(&other_fs, b"value-a"),
                "a returned Ok before it was durable"
            );
        }
    });
    if db.write(b"b", b"value-b").is_ok() {
        assert!(
            durable_in_any_file(&fs, b"value-b"),
            "b returned Ok before it was durable"
        );
    }
    writer.join().unwrap();
}

model_and_twin!(
    model_8_fsync_gate_with_rotation,
    model_8_broken_twin_gate_forgets_failure_is_caught,
    twin_8_gate_forgets_failure,
    fsync_gate_with_rotation,
    GateForgetsFailure,
    "returned Ok before it was durable"
);

// 9. Merge's conditional keydir update against a concurrent remove of the same key: the remove
//    wins, and a repoint never brings the removed key back.
fn remove_wins_over_merge() {
    let removed = |db: &Database| matches!(db.read(b"k"), Err(bitcask::Error::KeyNotFound));
    while_merging(
        |db| {
            db.remove(b"k").unwrap();
            assert!(removed(db), "a removed key reads back");
        },
        |db| assert!(removed(db), "merge brought a removed key back"),
    );
}

model_and_twin!(
    model_9_remove_wins_over_merge,
    model_9_broken_twin_repoint_revives_removed_is_caught,
    twin_9_repoint_revives_removed,
    remove_wins_over_merge,
    RepointRevivesRemoved,
    "removed key"
);

// 10. A merge against an unsynced overwrite of a key it merges, under `Never`: merge leaves the
//     old (synced) record out only where the keydir already points at the newer one, and makes
//     that one durable before its commit, so a power cut once the merge is done finds one of
//     the two values, never neither.
fn synced_anywhere(fs: &SimFs, value: &[u8]) -> bool {
    fs.crash_image()
        .files(Path::new(DIR))
        .values()
        .any(|synced| synced.windows(value.len()).any(|w| w == value))
}

fn merge_vs_unsynced_overwrite() {
    let fs = SimFs::new();
    let db = open(&fs, 1 << 20, SyncPolicy::Never);
    db.write(b"k", b"value-1").unwrap();
    db.sync().unwrap();
    let other = db.clone();
    let merger = loom::thread::spawn(move || other.merge().unwrap());
    db.write(b"k", b"value-2").unwrap();
    merger.join().unwrap();
    assert!(
        synced_anywhere(&fs, b"value-1") || synced_anywhere(&fs, b"value-2"),
        "a power cut after the merge loses the key"
    );
}

model_and_twin!(
    model_10_merge_vs_unsynced_overwrite,
    model_10_broken_twin_skip_pre_commit_sync_is_caught,
    twin_10_skip_pre_commit_sync,
    merge_vs_unsynced_overwrite,
    SkipPreCommitSync,
    "a power cut after the merge loses the key"
);

// 11. A reader against `close`: it gets the value or `Error::Closed`, never a missing file (close
//     marks the store closed before it unpublishes the files), and a value it got stays readable
//     after the close.
fn reader_vs_close() {
    let fs = SimFs::new();
    let db = open(&fs, 1 << 20, SyncPolicy::Never);
    db.write(b"k", b"v1").unwrap();
    let other = db.clone();
    let closer = loom::thread::spawn(move || other.close().unwrap());
    let got = db.get(b"k");
    assert!(
        matches!(&got, Ok(Some(v)) if **v == *b"v1") || matches!(got, Err(bitcask::Error::Closed)),
        "a read racing close returned {got:?}"
    );
    closer.join().unwrap();
    if let Ok(Some(value)) = got {
        assert_eq!(&*value, b"v1");
    }
}

model_and_twin!(
    model_11_reader_vs_close,
    model_11_broken_twin_unpublish_before_closed_is_caught,
    twin_11_unpublish_before_closed,
    reader_vs_close,
    UnpublishBeforeClosed,
    // The error names the file and the record's offset (it named the directory at offset 0).
    r#"path: "/loom/0000000001.data", offset: 20, kind: MissingFile"#
);
