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
use bitcask::{Config, Database, MergePolicy, SyncPolicy};
use common::contents;

const DIR: &str = "/store";

#[derive(Debug, Clone, Copy)]
enum Step {
    Write(u8, u8),
    Remove(u8),
    /// `Database::merge`: every sealed file.
    Merge,
    /// The background thread's merge, on this thread: only the files the policy picks.
    MergeByPolicy,
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

/// [`workload`] over nine rounds, merging every third: enough for several files at
/// [`ALWAYS_MAPPED`]'s limit.
fn long_workload() -> Vec<Step> {
    let mut steps = Vec::new();
    for round in 0..9u8 {
        steps.extend((0..6u8).map(|key| Step::Write(key, round)));
        steps.push(Step::Remove(round % 6));
        steps.push(Step::Remove((round + 3) % 6));
        if round == 4 {
            steps.push(Step::Reopen);
        }
        if round % 3 == 2 {
            steps.push(Step::Merge);
        }
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

/// How a test opens the store.
#[derive(Debug, Clone, Copy)]
struct Setup {
    hint_files: bool,
    /// The simulated file system maps active files for appending and allocates them ahead
    /// (`SimFs::with_append_maps`), as ext4 does: the engine's default write path.
    append_maps: bool,
    sync: SyncPolicy,
    /// Fragmentation at which the policy merge triggers and takes a file.
    merge_fragmentation: f64,
    data_file_limit: u64,
}

/// Every write fsynced; merges write hint files.
const ALWAYS: Setup = Setup {
    hint_files: true,
    append_maps: false,
    sync: SyncPolicy::Always,
    merge_fragmentation: 0.6,
    data_file_limit: 256,
};

/// [`ALWAYS`], with merges that write no hint files (every open scans the merged files).
const NO_HINTS: Setup = Setup {
    hint_files: false,
    ..ALWAYS
};

/// For [`partial_merge_workload`]: unsynced writes, and a merge threshold that leaves its first
/// files alone.
const PARTIAL: Setup = Setup {
    hint_files: true,
    append_maps: false,
    sync: SyncPolicy::Never,
    merge_fragmentation: 0.7,
    data_file_limit: 256,
};

/// [`ALWAYS`] on the engine's default write path under that policy: active files mapped and
/// allocated ahead, records `pwrite`n into the allocated part, for [`long_workload`]. The larger
/// limit makes the allocation step (a sixteenth of it, 96 bytes) longer than a record, so
/// active files end in allocated zeros that a power cut leaves and sealing cuts off.
const ALWAYS_MAPPED: Setup = Setup {
    append_maps: true,
    data_file_limit: 1536,
    ..ALWAYS
};

/// [`ALWAYS_MAPPED`] under `Never`: small records are copied through the map, several into one
/// allocation step with no I/O operation between them, and what a power cut keeps is what the
/// reopen, the merges and the final sync of [`long_workload`] covered.
const NEVER_MAPPED: Setup = Setup {
    sync: SyncPolicy::Never,
    ..ALWAYS_MAPPED
};

/// [`PARTIAL`] on the default write path under `Never`: records copied through the active file's
/// map, where unsynced ones are what a power cut loses.
const PARTIAL_MAPPED: Setup = Setup {
    append_maps: true,
    ..PARTIAL
};

/// A new simulated file system for `setup`.
fn new_fs(setup: Setup) -> SimFs {
    if setup.append_maps {
        SimFs::with_append_maps()
    } else {
        SimFs::new()
    }
}

fn open(fs: &SimFs) -> bitcask::Result<Database> {
    open_with(fs, ALWAYS)
}

fn open_with(fs: &SimFs, setup: Setup) -> bitcask::Result<Database> {
    let mut policy = MergePolicy::default();
    policy.trigger_fragmentation = setup.merge_fragmentation;
    policy.threshold_fragmentation = setup.merge_fragmentation;
    policy.small_file_bytes = 0;
    Config::new(DIR)
        .file_system(fs.clone())
        .data_file_limit(setup.data_file_limit)
        .sync_policy(setup.sync)
        .background_merge(false)
        .merge_policy(policy)
        .hint_files(setup.hint_files)
        .open()
}

/// How far a run got: logical steps acknowledged, how many of them are durable (all of them
/// under `SyncPolicy::Always`; those before the last `sync()` or close otherwise), and whether
/// one more was in flight.
#[derive(Debug, Clone, Copy)]
struct Progress {
    acked: usize,
    durable: usize,
    in_flight: bool,
    /// The run stopped at an error (of a step, or of the first open).
    failed: bool,
}

/// Runs the workload on a store opened as `setup` says until the first error; returns the
/// progress and the open handle, if any.
fn run_with(fs: &SimFs, steps: &[Step], setup: Setup) -> (Progress, Option<Database>) {
    let open = |fs: &SimFs| open_with(fs, setup);
    let mut progress = Progress {
        acked: 0,
        durable: 0,
        in_flight: false,
        failed: true,
    };
    let Ok(mut db) = open(fs) else {
        return (progress, None);
    };
    for &step in steps {
        let result = match step {
            Step::Write(k, round) => db.write(&key(k), &value(k, round)),
            Step::Remove(k) => db.remove(&key(k)),
            Step::Merge => db.merge(),
            Step::MergeByPolicy => bitcask::sim::merge_by_policy(&db),
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
            Ok(()) => {
                progress.acked += usize::from(step.is_logical());
                let synced = matches!(step, Step::Sync | Step::Reopen);
                if synced || matches!(setup.sync, SyncPolicy::Always) {
                    progress.durable = progress.acked;
                }
            }
            Err(_) => {
                progress.in_flight = step.is_logical();
                return (progress, Some(db));
            }
        }
    }
    progress.failed = false;
    (progress, Some(db))
}

/// Asserts that `state` is the model after some prefix that holds every acknowledged step
/// (after an error, while the process lives on).
fn assert_valid_prefix(steps: &[Step], progress: Progress, state: &State, what: &str) {
    assert_prefix_from(progress.acked, steps, progress, state, what);
}

/// Asserts that `state` is the model after some prefix that holds every durable step (after a
/// power cut).
fn assert_durable_prefix(steps: &[Step], progress: Progress, state: &State, what: &str) {
    assert_prefix_from(progress.durable, steps, progress, state, what);
}

fn assert_prefix_from(first: usize, steps: &[Step], progress: Progress, state: &State, what: &str) {
    let last = progress.acked + usize::from(progress.in_flight);
    let ok = (first..=last).any(|n| model(steps, n) == *state);
    assert!(
        ok,
        "{what}: state {state:?} is not the state after {first}..={last} steps"
    );
}

fn total_ops(steps: &[Step], setup: Setup) -> u64 {
    let fs = new_fs(setup);
    let (progress, db) = run_with(&fs, steps, setup);
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
        setup.hint_files,
        "{hints} hint files after the workload's merges"
    );
    fs.ops()
}

#[test]
fn power_cut_at_every_io_step_recovers_a_synced_prefix() {
    power_cut_at_every_io_step(&workload(), ALWAYS);
}

/// The same without hint files: merge writes none, and every open scans the merged files.
#[test]
fn power_cut_at_every_io_step_without_hint_files_recovers_a_synced_prefix() {
    power_cut_at_every_io_step(&workload(), NO_HINTS);
}

/// Merges of some files only (the background thread's kind), which leave older files in place:
/// a tombstone of a key whose older put survives in such a file must be kept, and writes newer
/// than what merge copies are unsynced (`SyncPolicy::Never`), so the merge must make them
/// durable before its commit deletes the records they replace.
#[test]
fn power_cut_at_every_io_step_of_partial_merges_recovers_a_synced_prefix() {
    let steps = partial_merge_workload();
    assert_merges_leave_older_files(&steps, PARTIAL);
    power_cut_at_every_io_step(&steps, PARTIAL);
}

/// Keys 0-5 in the first three files (0-2, 3-4, 5), which stay below the merge's
/// fragmentation; overwrites of key 8 and the tombstones of keys 0 and 3 in later files, which
/// the policy merges; unsynced writes before each merge.
fn partial_merge_workload() -> Vec<Step> {
    let mut steps: Vec<Step> = (0..6).map(|k| Step::Write(k, 0)).collect();
    steps.push(Step::Sync);
    steps.extend((1..7).map(|round| Step::Write(8, round)));
    steps.extend([Step::Remove(0), Step::Remove(3)]);
    // A file of two overwrites of key 8, sealed when the third is written, unsynced: the merge
    // takes that file, so it must make the third durable before its commit.
    steps.extend([
        Step::Write(8, 7),
        Step::Write(8, 8),
        Step::Sync,
        Step::Write(8, 9),
    ]);
    steps.extend([Step::Write(9, 0), Step::MergeByPolicy, Step::Write(3, 1)]);
    steps.push(Step::Reopen);
    steps.extend((10..14).map(|round| Step::Write(8, round)));
    steps.extend([Step::Remove(9), Step::MergeByPolicy, Step::Write(4, 1)]);
    steps.extend([Step::Sync, Step::Reopen]);
    steps
}

/// Checks, without faults, that the workload's first merge is partial: the first two data files
/// (whose puts of keys 0 and 3 the tombstones cover) survive it while later files go.
fn assert_merges_leave_older_files(steps: &[Step], setup: Setup) {
    let fs = new_fs(setup);
    let before_merge = steps
        .iter()
        .position(|s| matches!(s, Step::MergeByPolicy))
        .unwrap();
    let (_, db) = run_with(&fs, &steps[..before_merge], setup);
    let data_files = |fs: &SimFs| -> Vec<std::path::PathBuf> {
        let files = fs.files(Path::new(DIR)).into_keys();
        files
            .filter(|p| p.extension().is_some_and(|e| e == "data"))
            .collect()
    };
    let before = data_files(&fs);
    bitcask::sim::merge_by_policy(&db.unwrap()).unwrap();
    let after = data_files(&fs);
    for older in ["0000000001.data", "0000000002.data"] {
        let older = Path::new(DIR).join(older);
        assert!(
            before.contains(&older) && after.contains(&older),
            "{after:?}"
        );
    }
    let merged_away = before.iter().filter(|p| !after.contains(p)).count();
    assert!(merged_away >= 2, "before {before:?}, after {after:?}");
}

fn power_cut_at_every_io_step(steps: &[Step], setup: Setup) {
    let total = total_ops(steps, setup);
    assert!(
        total > 100,
        "workload too small to be interesting: {total} ops"
    );
    for cut in 1..=total {
        let fs = new_fs(setup);
        fs.fail_at(cut, Fault::PowerCut);
        let (progress, db) = run_with(&fs, steps, setup);
        drop(db);
        assert!(fs.is_powered_off(), "cut {cut} never happened");
        let image = fs.crash_image();
        let what = format!("power cut at op {cut}/{total}");
        let db = open_with(&image, setup).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
        assert_durable_prefix(steps, progress, &contents(&db), &what);
        drop(db);
        cut_recovery_everywhere(&fs.crash_image(), steps, progress, setup, &what);
    }
}

/// Cuts the power at every I/O step of recovering `image`; each time, recovering the result
/// must give a valid state again.
fn cut_recovery_everywhere(
    image: &SimFs,
    steps: &[Step],
    progress: Progress,
    setup: Setup,
    what: &str,
) {
    for cut in 1.. {
        let fs = image.crash_image();
        fs.fail_at(cut, Fault::PowerCut);
        drop(open_with(&fs, setup));
        if !fs.is_powered_off() {
            break; // recovery needed fewer steps than `cut`
        }
        let what = format!("{what}, then during recovery at op {cut}");
        let db = open_with(&fs.crash_image(), setup)
            .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
        assert_durable_prefix(steps, progress, &contents(&db), &what);
    }
}

/// The workloads' power cuts again on the engine's default write path, where the active file is
/// mapped, allocated ahead and cut back when sealed, and records are `pwrite`n into the
/// allocated part under `Always` ([`ALWAYS_MAPPED`]) or copied through the map under `Never`
/// ([`NEVER_MAPPED`], [`PARTIAL_MAPPED`]): those steps (the allocation, the cut) are struck too, and a power cut
/// loses the records in the map that no fsync covered.
#[test]
fn power_cut_at_every_io_step_on_the_append_map_recovers_a_synced_prefix() {
    power_cut_at_every_io_step(&long_workload(), ALWAYS_MAPPED);
    power_cut_at_every_io_step(&long_workload(), NEVER_MAPPED);
    let steps = partial_merge_workload();
    assert_merges_leave_older_files(&steps, PARTIAL_MAPPED);
    power_cut_at_every_io_step(&steps, PARTIAL_MAPPED);
}

/// EIO, ENOSPC (an allocation that fails sends the writer to `pwrite`), short writes and a
/// rename that fails after taking effect, at every step of the default write path.
#[test]
fn io_errors_at_every_step_on_the_append_map_fail_cleanly_and_lose_nothing() {
    io_errors_at_every_step(&long_workload(), ALWAYS_MAPPED);
    io_errors_at_every_step(&long_workload(), NEVER_MAPPED);
    io_errors_at_every_step(&partial_merge_workload(), PARTIAL_MAPPED);
}

#[test]
fn io_errors_at_every_step_fail_cleanly_and_lose_nothing() {
    io_errors_at_every_step(&workload(), ALWAYS);
}

/// The same with merges that write no hint files, and with partial merges under
/// `SyncPolicy::Never` (a crash-safety review found both untested here).
#[test]
fn io_errors_at_every_step_of_other_merges_fail_cleanly_and_lose_nothing() {
    io_errors_at_every_step(&workload(), NO_HINTS);
    io_errors_at_every_step(&partial_merge_workload(), PARTIAL);
}

fn io_errors_at_every_step(steps: &[Step], setup: Setup) {
    let total = total_ops(steps, setup);
    let faults = [
        Fault::Error(std::io::ErrorKind::Other),
        Fault::Error(std::io::ErrorKind::StorageFull),
        Fault::ShortWrite,
        Fault::FailAfterRename,
    ];
    // Runs that stopped at an error, per fault: each kind must surface somewhere, or the checks
    // below would only ever see runs that went on as if nothing happened.
    let mut failed_runs = [0; 4];
    for at in 1..=total {
        for (kind, fault) in faults.into_iter().enumerate() {
            let fs = new_fs(setup);
            fs.fail_at(at, fault);
            let (progress, db) = run_with(&fs, steps, setup);
            failed_runs[kind] += usize::from(progress.failed);
            let what = format!("{fault:?} at op {at}/{total}");
            // A power cut now keeps every step the run made durable: a fault the engine
            // absorbed (or an error it swallowed, a failed fsync reported as success, say) must
            // not have cost one. (The reopen below keeps the page cache, so it cannot tell.)
            let cut = format!("{what}, then a power cut");
            let after_cut = open_with(&fs.crash_image(), setup)
                .unwrap_or_else(|e| panic!("{cut}: reopen failed: {e}"));
            assert_durable_prefix(steps, progress, &contents(&after_cut), &cut);
            drop(after_cut);
            if let Some(db) = db {
                // Reads keep working on the handle that saw the error (unless a failed reopen
                // left it closed).
                if !matches!(db.contains_key(b"probe"), Err(bitcask::Error::Closed)) {
                    assert_valid_prefix(steps, progress, &contents(&db), &what);
                }
                drop(db);
            }
            // The process goes on (nothing is lost from the page cache): reopen and write.
            let db = open_with(&fs, setup).unwrap_or_else(|e| {
                let files: Vec<_> = fs
                    .files(Path::new(DIR))
                    .into_iter()
                    .map(|(p, d)| (p, d.len()))
                    .collect();
                panic!("{what}: reopen failed: {e}; files {files:?}")
            });
            assert_valid_prefix(steps, progress, &contents(&db), &what);
            db.write(b"after", b"recovered").unwrap();
            assert_eq!(db.read(b"after").unwrap(), b"recovered");
        }
    }
    assert!(
        failed_runs.iter().all(|&n| n > 0),
        "runs that stopped at an error, per fault {faults:?}: {failed_runs:?}"
    );
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

/// The mapped setups do run the default write path (under `Always` a record is `pwrite`n
/// inside the allocated file, `tests/durability.rs`). At [`NEVER_MAPPED`]'s limit the file is
/// allocated 96 bytes ahead, so a second small write is a copy into the map with no I/O
/// operation at all, which a kill of the process keeps and a power cut loses (it was never
/// synced); at the small limits every write allocates first, so an error at a write's first
/// step fails that allocation and the record goes by `pwrite`, where on the plain simulated
/// file system that step is the `pwrite` itself and the write fails.
#[test]
fn the_mapped_setups_run_the_default_write_path() {
    let unsynced = NEVER_MAPPED;
    let fs = new_fs(unsynced);
    let db = open_with(&fs, unsynced).unwrap();
    db.write(b"first", b"v").unwrap();
    db.sync().unwrap();
    let before = fs.ops();
    db.write(b"second", b"v").unwrap();
    assert_eq!(fs.ops(), before, "a copy into the map is no I/O operation");
    assert_eq!(
        contents(&open_with(&fs.kill_image(), unsynced).unwrap()).len(),
        2
    );
    assert_eq!(
        contents(&open_with(&fs.crash_image(), unsynced).unwrap()).len(),
        1
    );

    for (setup, fails) in [(PARTIAL_MAPPED, false), (PARTIAL, true)] {
        let fs = new_fs(setup);
        let db = open_with(&fs, setup).unwrap();
        db.write(b"first", b"v").unwrap();
        fs.fail_at(fs.ops() + 1, Fault::Error(std::io::ErrorKind::StorageFull));
        assert_eq!(db.write(b"second", b"v").is_err(), fails, "{setup:?}");
        if !fails {
            assert_eq!(db.read(b"second").unwrap(), b"v");
            assert_eq!(
                contents(&open_with(&fs.kill_image(), setup).unwrap()).len(),
                2
            );
        }
    }
}
