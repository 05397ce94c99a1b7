//! Simulated power cuts and I/O faults at every single I/O step of a workload that rotates
//! files, merges (writing hint files and a commit record), closes and reopens.
//!
//! After a power cut at step N, what a rebooted machine finds (only synced bytes under synced
//! names) must open, and hold exactly the state after some prefix of the operations that is at
//! least as long as what was acknowledged. The recovery of that image is itself cut at every
//! step, and must recover again. After an injected error (EIO, ENOSPC, a short write) the call
//! fails cleanly, reads keep working, and after reopening the state is again a valid prefix
//! and writing works.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bitcask::sim::{Fault, SimFs};
use bitcask::{Config, Database, SyncPolicy};
use common::contents;

const DIR: &str = "/store";

#[derive(Debug, Clone, Copy)]
enum Step {
    Write(u8, u8),
    Remove(u8),
    Merge,
    Sync,
    Reopen,
}

impl Step {
    /// Whether the step changes the logical contents.
    fn is_logical(self) -> bool {
        matches!(self, Step::Write(..) | Step::Remove(_))
    }
}

fn workload() -> Vec<Step> {
    let mut steps = Vec::new();
    for round in 0..3u8 {
        for key in 0..6u8 {
            steps.push(Step::Write(key, round));
        }
        steps.push(Step::Remove(round % 6));
        steps.push(Step::Remove((round + 3) % 6));
        if round == 1 {
            steps.push(Step::Reopen);
        }
        steps.push(Step::Merge);
        steps.push(Step::Write(7, round));
    }
    steps.push(Step::Sync);
    steps
}

fn key(k: u8) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

fn value(k: u8, round: u8) -> Vec<u8> {
    vec![k.wrapping_mul(31).wrapping_add(round); 30 + 7 * k as usize]
}

type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// The contents after the first `n` logical steps.
fn model(steps: &[Step], n: usize) -> State {
    let mut state = State::new();
    for step in steps.iter().filter(|s| s.is_logical()).take(n) {
        match *step {
            Step::Write(k, round) => {
                state.insert(key(k), value(k, round));
            }
            Step::Remove(k) => {
                state.remove(&key(k));
            }
            _ => unreachable!(),
        }
    }
    state
}

fn open(fs: &SimFs) -> bitcask::Result<Database> {
    open_with_hints(fs, true)
}

/// [`open`], with merge writing hint files or not (`Config::hint_files`).
fn open_with_hints(fs: &SimFs, hint_files: bool) -> bitcask::Result<Database> {
    Config::new(DIR)
        .file_system(fs.clone())
        .data_file_limit(256)
        .sync_policy(SyncPolicy::Always)
        .background_merge(false)
        .hint_files(hint_files)
        .open()
}

/// How far a run got: logical steps acknowledged, and whether one more was in flight.
#[derive(Debug, Clone, Copy)]
struct Progress {
    acked: usize,
    in_flight: bool,
}

/// Runs the workload until the first error; returns the progress and the open handle, if any.
fn run(fs: &SimFs, steps: &[Step]) -> (Progress, Option<Database>) {
    run_with_hints(fs, steps, true)
}

/// [`run`], with merge writing hint files or not.
fn run_with_hints(fs: &SimFs, steps: &[Step], hint_files: bool) -> (Progress, Option<Database>) {
    let open = |fs: &SimFs| open_with_hints(fs, hint_files);
    let mut progress = Progress {
        acked: 0,
        in_flight: false,
    };
    let Ok(mut db) = open(fs) else {
        return (progress, None);
    };
    for &step in steps {
        let result = match step {
            Step::Write(k, round) => db.write(&key(k), &value(k, round)),
            Step::Remove(k) => db.remove(&key(k)),
            Step::Merge => db.merge(),
            Step::Sync => db.sync(),
            Step::Reopen => match db.close().and_then(|()| open(fs)) {
                Ok(reopened) => {
                    db = reopened;
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) => progress.acked += usize::from(step.is_logical()),
            Err(_) => {
                progress.in_flight = step.is_logical();
                return (progress, Some(db));
            }
        }
    }
    (progress, Some(db))
}

/// Asserts that `state` is the model after some prefix the progress allows.
fn assert_valid_prefix(steps: &[Step], progress: Progress, state: &State, what: &str) {
    let last = progress.acked + usize::from(progress.in_flight);
    let ok = (progress.acked..=last).any(|n| model(steps, n) == *state);
    assert!(
        ok,
        "{what}: state {state:?} is not the state after {}..={last} steps",
        progress.acked
    );
}

fn total_ops(steps: &[Step], hint_files: bool) -> u64 {
    let fs = SimFs::new();
    let (progress, db) = run_with_hints(&fs, steps, hint_files);
    assert_eq!(
        progress.acked,
        steps.iter().filter(|s| s.is_logical()).count()
    );
    drop(db);
    let hints = fs
        .files(std::path::Path::new(DIR))
        .keys()
        .filter(|path| path.extension().is_some_and(|ext| ext == "hint"))
        .count();
    assert_eq!(
        hints > 0,
        hint_files,
        "{hints} hint files after the workload's merges"
    );
    fs.ops()
}

#[test]
fn power_cut_at_every_io_step_recovers_a_synced_prefix() {
    power_cut_at_every_io_step(true);
}

/// The same without hint files: merge writes none, and every open scans the merged files.
#[test]
fn power_cut_at_every_io_step_without_hint_files_recovers_a_synced_prefix() {
    power_cut_at_every_io_step(false);
}

fn power_cut_at_every_io_step(hint_files: bool) {
    let steps = workload();
    let total = total_ops(&steps, hint_files);
    assert!(
        total > 100,
        "workload too small to be interesting: {total} ops"
    );
    for cut in 1..=total {
        let fs = SimFs::new();
        fs.fail_at(cut, Fault::PowerCut);
        let (progress, db) = run_with_hints(&fs, &steps, hint_files);
        drop(db);
        assert!(fs.is_powered_off(), "cut {cut} never happened");
        let image = fs.crash_image();
        let what = format!("power cut at op {cut}/{total}");
        let db = open(&image).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
        assert_valid_prefix(&steps, progress, &contents(&db), &what);
        drop(db);
        cut_recovery_everywhere(&fs.crash_image(), &steps, progress, &what);
    }
}

/// Cuts the power at every I/O step of recovering `image`; each time, recovering the result
/// must give a valid state again.
fn cut_recovery_everywhere(image: &SimFs, steps: &[Step], progress: Progress, what: &str) {
    for cut in 1.. {
        let fs = image.crash_image();
        fs.fail_at(cut, Fault::PowerCut);
        drop(open(&fs));
        if !fs.is_powered_off() {
            break; // recovery needed fewer steps than `cut`
        }
        let what = format!("{what}, then during recovery at op {cut}");
        let db = open(&fs.crash_image()).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
        assert_valid_prefix(steps, progress, &contents(&db), &what);
    }
}

#[test]
fn io_errors_at_every_step_fail_cleanly_and_lose_nothing() {
    let steps = workload();
    let total = total_ops(&steps, true);
    let faults = [
        Fault::Error(std::io::ErrorKind::Other),
        Fault::Error(std::io::ErrorKind::StorageFull),
        Fault::ShortWrite,
    ];
    for at in 1..=total {
        for fault in faults {
            let fs = SimFs::new();
            fs.fail_at(at, fault);
            let (progress, db) = run(&fs, &steps);
            let what = format!("{fault:?} at op {at}/{total}");
            if let Some(db) = db {
                // Reads keep working on the handle that saw the error (unless a failed reopen
                // left it closed).
                if !matches!(db.contains_key(b"probe"), Err(bitcask::Error::Closed)) {
                    assert_valid_prefix(&steps, progress, &contents(&db), &what);
                }
                drop(db);
            }
            // The process goes on (nothing is lost from the page cache): reopen and write.
            let db = open(&fs).unwrap_or_else(|e| {
                let files: Vec<_> = fs
                    .files(Path::new(DIR))
                    .into_iter()
                    .map(|(p, d)| (p, d.len()))
                    .collect();
                panic!("{what}: reopen failed: {e}; files {files:?}")
            });
            assert_valid_prefix(&steps, progress, &contents(&db), &what);
            db.write(b"after", b"recovered").unwrap();
            assert_eq!(db.read(b"after").unwrap(), b"recovered");
        }
    }
}

#[test]
fn disk_full_is_a_clear_error_and_writing_works_again_after_reopen() {
    let fs = SimFs::new();
    let db = open(&fs).unwrap();
    db.write(b"kept", b"safe").unwrap();
    fs.fail_at(fs.ops() + 1, Fault::Error(std::io::ErrorKind::StorageFull));
    let err = db.write(b"lost", b"never acknowledged").unwrap_err();
    let message = err.to_string();
    assert!(message.contains("/store/0000000001.data"), "{message}");
    assert!(
        matches!(&err, bitcask::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull),
        "{message}"
    );
    // The writer is poisoned; reads keep working.
    assert!(matches!(
        db.write(b"x", b"y"),
        Err(bitcask::Error::Poisoned(_))
    ));
    assert_eq!(db.read(b"kept").unwrap(), b"safe");
    drop(db);
    let db = open(&fs).unwrap();
    assert_eq!(db.read(b"kept").unwrap(), b"safe");
    db.write(b"x", b"y").unwrap();
    assert_eq!(db.read(b"x").unwrap(), b"y");
}
