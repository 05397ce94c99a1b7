//! What each sync policy promises after a power cut, checked on the simulated file system:
//! only synced bytes survive in `SimFs::crash_image`.

use std::time::{Duration, Instant};

use bitcask::sim::{Fault, SimFs};
use bitcask::{Config, Database, Error, SyncPolicy};

const DIR: &str = "/db";

fn open(fs: &SimFs, policy: SyncPolicy) -> Database {
    config(fs, policy).open().unwrap()
}

/// Opens under `Always` with group-commit followers polling for `poll`.
fn open_always(fs: &SimFs, poll: Duration) -> Database {
    config(fs, SyncPolicy::Always)
        .commit_poll(poll)
        .open()
        .unwrap()
}

fn config(fs: &SimFs, policy: SyncPolicy) -> Config {
    Config::new(DIR)
        .file_system(fs.clone())
        .data_file_limit(4096)
        .sync_policy(policy)
        .background_merge(false)
}

/// Opens what a machine would find after a power cut now.
fn after_power_cut(fs: &SimFs) -> Database {
    open(&fs.crash_image(), SyncPolicy::Never)
}

/// 4 threads write to `fs` under `Always` with group-commit polling `poll`; every 20th write of
/// each thread is checked at once in a power-cut image, and all of them at the end.
fn always_makes_every_acknowledged_write_durable_across_threads(fs: SimFs, poll: Duration) {
    let db = open_always(&fs, poll);
    every_write_durable_across_threads(&fs, &db, SyncPolicy::Always);
}

/// 4 threads write to `fs` through `db`, opened with `policy`; every 20th write of each thread
/// (under `Never`, after a `sync()` of its own) is checked at once in a power-cut image, and all
/// of them at the end (under `Never`, after a last `sync()`).
fn every_write_durable_across_threads(fs: &SimFs, db: &Database, policy: SyncPolicy) {
    let sync = policy == SyncPolicy::Never;
    std::thread::scope(|s| {
        for t in 0..4u32 {
            s.spawn(move || {
                for i in 0..200u32 {
                    let key = (t * 1000 + i).to_le_bytes();
                    db.write(&key, &i.to_le_bytes()).unwrap();
                    if i % 20 == 0 {
                        if sync {
                            db.sync().unwrap();
                        }
                        let image = after_power_cut(fs);
                        assert_eq!(image.read(&key).unwrap(), i.to_le_bytes(), "{t}/{i}");
                    }
                }
            });
        }
    });
    if sync {
        db.sync().unwrap();
    }
    let recovered = after_power_cut(fs);
    for t in 0..4u32 {
        for i in 0..200u32 {
            assert_eq!(
                recovered.read(&(t * 1000 + i).to_le_bytes()).unwrap(),
                i.to_le_bytes()
            );
        }
    }
}

#[test]
fn always_with_polling_followers_makes_each_write_durable_before_it_returns() {
    let poll = bitcask::DEFAULT_COMMIT_POLL;
    always_makes_every_acknowledged_write_durable_across_threads(SimFs::new(), poll);
}

/// The same on the engine's default write path under `Always`: the active file is mapped and
/// allocated ahead, the 4 threads' records are `pwrite`n into its allocated part, and each group
/// commit's fsync must cover them.
#[test]
fn always_on_the_append_map_makes_each_write_durable_before_it_returns() {
    let poll = bitcask::DEFAULT_COMMIT_POLL;
    always_makes_every_acknowledged_write_durable_across_threads(SimFs::with_append_maps(), poll);
}

/// Under `Never` the 4 threads' records are copied into the active file's map while other
/// threads' `sync()` calls fsync it: each thread's `sync()` must cover the record it wrote just
/// before, and a last `sync()` every record.
#[test]
fn sync_through_the_append_map_covers_records_copied_while_others_sync() {
    let fs = SimFs::with_append_maps();
    let db = open(&fs, SyncPolicy::Never);
    every_write_durable_across_threads(&fs, &db, SyncPolicy::Never);
}

#[test]
fn always_with_sleeping_followers_makes_each_write_durable_before_it_returns() {
    always_makes_every_acknowledged_write_durable_across_threads(SimFs::new(), Duration::ZERO);
}

/// Under `Always` with an append map, a write is a `pwrite` and an fsync (two operations; under
/// `Never` a copy into the map, no operation), inside the part of the file allocated ahead: the
/// file's length stays, so its fsync has no new length to commit. Only the operation count
/// tells the `pwrite` from a copy; the length tells a `pwrite` inside the allocation from one
/// that extends the file.
#[test]
fn always_pwrites_records_inside_the_allocated_file() {
    // Under `Never` the record is copied into the map: no operation at all.
    for (policy, ops_per_write) in [(SyncPolicy::Always, 2), (SyncPolicy::Never, 0)] {
        let fs = SimFs::with_append_maps();
        let db = open(&fs, policy);
        db.write(b"first", b"allocates the file ahead").unwrap();
        let (ops, len) = (fs.ops(), active_file_len(&fs));
        db.write(b"second", b"lands in the allocated part").unwrap();
        assert_eq!(
            fs.ops() - ops,
            ops_per_write,
            "{policy:?}: operations per write"
        );
        assert_eq!(active_file_len(&fs), len, "{policy:?}");
        if policy == SyncPolicy::Never {
            db.sync().unwrap();
        }
        let recovered = after_power_cut(&fs);
        assert_eq!(
            recovered.read(b"second").unwrap(),
            b"lands in the allocated part"
        );
    }
}

/// The length of the newest data file.
fn active_file_len(fs: &SimFs) -> usize {
    let files = fs.files(DIR.as_ref());
    let mut data = files
        .iter()
        .filter(|(path, _)| path.extension() == Some("data".as_ref()));
    data.next_back().expect("a data file").1.len()
}

#[test]
fn never_keeps_what_sync_covered_and_only_that() {
    never_keeps_what_sync_covered(SimFs::new());
}

/// The same on the engine's default write path under `Never`: records copied into the map.
#[test]
fn never_through_the_append_map_keeps_what_sync_covered_and_only_that() {
    never_keeps_what_sync_covered(SimFs::with_append_maps());
}

fn never_keeps_what_sync_covered(fs: SimFs) {
    let db = open(&fs, SyncPolicy::Never);
    db.write(b"synced", b"1").unwrap();
    db.remove(b"nothing").unwrap();
    db.sync().unwrap();
    db.write(b"not synced", b"2").unwrap();
    let recovered = after_power_cut(&fs);
    assert_eq!(recovered.read(b"synced").unwrap(), b"1");
    assert!(recovered.get(b"not synced").unwrap().is_none());
}

#[test]
fn close_makes_everything_durable() {
    let fs = SimFs::new();
    let db = open(&fs, SyncPolicy::Never);
    db.write(b"k", b"v").unwrap();
    db.close().unwrap();
    assert_eq!(after_power_cut(&fs).read(b"k").unwrap(), b"v");
}

#[test]
fn interval_syncs_in_the_background() {
    let fs = SimFs::new();
    let db = open(&fs, SyncPolicy::Interval(Duration::from_millis(10)));
    db.write(b"k", b"v").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while after_power_cut(&fs).get(b"k").unwrap().is_none() {
        assert!(Instant::now() < deadline, "the flush thread never synced");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `Interval` is not `Always`: a write returns before any fsync covers it, and the flush thread
/// (an hour away here) or a `sync()` makes it durable. (Found by review: the test above passed
/// if `Interval` synced every write.) Closing does not wait for the hour.
#[test]
fn interval_leaves_each_write_to_the_flush_thread() {
    let fs = SimFs::new();
    let db = open(&fs, SyncPolicy::Interval(Duration::from_secs(3600)));
    db.write(b"k", b"v").unwrap();
    assert!(
        after_power_cut(&fs).get(b"k").unwrap().is_none(),
        "the write synced itself"
    );
    db.sync().unwrap();
    assert_eq!(after_power_cut(&fs).read(b"k").unwrap(), b"v");
    db.close().unwrap();
}

/// A failed append poisons the writer, but the writes that returned before it are complete in
/// the file: `sync()` makes them durable and says so. It used to refuse with `Poisoned`, which
/// left only `close` (reporting failure) to sync them. Found by review.
#[test]
fn sync_after_a_failed_append_makes_the_earlier_writes_durable() {
    let fs = SimFs::new();
    let db = open(&fs, SyncPolicy::Never);
    db.write(b"before", b"ok").unwrap();
    fs.fail_at(fs.ops() + 1, Fault::Error(std::io::ErrorKind::StorageFull));
    let err = db.write(b"during", b"unknown").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(matches!(db.write(b"after", b"x"), Err(Error::Poisoned(_))));
    db.sync().unwrap();
    db.sync().unwrap();
    assert_eq!(after_power_cut(&fs).read(b"before").unwrap(), b"ok");
    assert!(
        db.close().is_err(),
        "close reports that writes were refused"
    );
    // A failed close still closed: the handle (alive here, so `Drop` cannot close it instead)
    // refuses, and the directory opens again at once.
    assert!(matches!(db.read(b"before"), Err(Error::Closed)));
    let reopened = open(&fs, SyncPolicy::Never);
    assert_eq!(reopened.read(b"before").unwrap(), b"ok");
    drop(db);
}

/// After a failed fsync outside a group-commit round (here the one that seals the active file
/// for a merge), `sync()` refuses with `Poisoned` and the failure's reason. (Found by fuzzing
/// the change above, which had it return the fsync gate's error as a new I/O error.)
#[test]
fn sync_after_a_failed_fsync_of_a_sealed_file_is_poisoned() {
    let fs = SimFs::new();
    let db = open(&fs, SyncPolicy::Never);
    db.write(b"k", b"v").unwrap();
    // The simulated file system maps nothing, so sealing's first operation is its fsync.
    fs.fail_at(fs.ops() + 1, Fault::Error(std::io::ErrorKind::Other));
    let failed = db.merge().unwrap_err().to_string();
    assert!(failed.contains("syncing"), "{failed}");
    for _ in 0..2 {
        let refused = db.sync().unwrap_err();
        assert!(matches!(refused, Error::Poisoned(_)), "{refused}");
        let message = refused.to_string();
        assert!(message.contains("simulated"), "{message}");
        assert_eq!(message.matches("refuses writes").count(), 1, "{message}");
    }
}

/// A panic while a failed fsync is being written down (`FSYNC_FAILED`) must not leave the
/// fsync gate open: a later fsync would return Ok for pages the failure dropped, and `sync()`
/// with it. Found by review.
#[test]
fn a_panic_while_recording_a_failed_fsync_still_refuses_later_syncs() {
    let fs = SimFs::new();
    let db = open(&fs, SyncPolicy::Never);
    db.write(b"k", b"v").unwrap();
    // Sealing the active file for the merge fsyncs it first; its failure is then written down.
    let fsync = fs.ops() + 1;
    fs.fail_at(fsync, Fault::Error(std::io::ErrorKind::Other));
    fs.also_fail_at(fsync + 1, Fault::Panic);
    let merged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.merge()));
    let panic = merged.expect_err("writing the failure down panicked");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    let struck = format!("simulated panic at operation {}", fsync + 1);
    assert!(message.contains(&struck), "{message}");
    assert!(db.sync().is_err(), "a sync after the failed fsync passed");
}

#[test]
fn a_failed_fsync_poisons_the_writer_but_not_the_readers() {
    let fs = SimFs::new();
    let db = open(&fs, SyncPolicy::Always);
    db.write(b"before", b"ok").unwrap();
    // Under Always the next write is one append and one fsync: fail the fsync.
    fs.fail_at(fs.ops() + 2, Fault::Error(std::io::ErrorKind::Other));
    let err = db.write(b"during", b"unknown").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    let refused = db
        .stats()
        .writes_refused
        .expect("stats() says writes are refused");
    assert!(refused.contains(&err.to_string()), "{refused}");
    assert!(matches!(db.write(b"after", b"x"), Err(Error::Poisoned(_))));
    assert!(matches!(db.remove(b"before"), Err(Error::Poisoned(_))));
    assert!(matches!(db.sync(), Err(Error::Poisoned(_))));
    assert_eq!(db.read(b"before").unwrap(), b"ok");
    // Reopening recovers; the write whose fsync failed was not acknowledged, so either
    // outcome is allowed for it, but the store works again.
    drop(db);
    let db = open(&fs, SyncPolicy::Always);
    assert_eq!(db.read(b"before").unwrap(), b"ok");
    assert_eq!(db.stats().writes_refused, None);
    db.write(b"after", b"x").unwrap();
    assert_eq!(after_power_cut(&fs).read(b"after").unwrap(), b"x");
}

/// A store under `Always` holding `kept` and `removed`, whose remove of `removed` failed its
/// fsync, then closed (which fails too) and dropped.
fn store_whose_remove_failed_its_fsync(fs: &SimFs) {
    let db = open(fs, SyncPolicy::Always);
    db.write(b"kept", b"1").unwrap();
    db.write(b"removed", b"1").unwrap();
    // The remove is one append and one fsync: fail the fsync.
    fs.fail_at(fs.ops() + 2, Fault::Error(std::io::ErrorKind::Other));
    assert!(db.remove(b"removed").is_err());
    assert!(db.close().is_err());
}

/// Writes `later` (synced: `Always`) through `db`, then opens what a power cut now would leave.
fn write_later_then_cut_the_power(db: &Database, fs: &SimFs) -> Database {
    db.write(b"later", b"2").unwrap();
    let recovered = after_power_cut(fs);
    assert_eq!(recovered.read(b"kept").unwrap(), b"1");
    assert_eq!(recovered.read(b"later").unwrap(), b"2");
    recovered
}

/// A failed fsync leaves the records it should have written readable (Linux marks the pages
/// clean and keeps them until they are evicted; `SimFs` does the same), though they are not on
/// disk. A reopen in the same boot must not build on them: a remove whose fsync failed must not
/// hide a key that a power cut then brings back, and a write synced after the reopen must
/// survive that power cut. Open writes those bytes again, so here, where they are still
/// readable, the remove holds before and after the power cut.
#[test]
fn a_reopen_after_a_failed_fsync_builds_on_what_is_on_disk_only() {
    let dir = std::path::Path::new(DIR);
    let marker = dir.join("FSYNC_FAILED");
    let fs = SimFs::new();
    store_whose_remove_failed_its_fsync(&fs);
    assert!(fs.files(dir).contains_key(&marker));

    let db = open(&fs, SyncPolicy::Always);
    assert!(db.get(b"removed").unwrap().is_none());
    assert!(
        !fs.files(dir).contains_key(&marker),
        "open removed the record"
    );
    let recovered = write_later_then_cut_the_power(&db, &fs);
    assert!(recovered.get(b"removed").unwrap().is_none(), "came back");
}

/// As above, but the kernel evicted the dropped pages before the reopen: the file reads the
/// disk's zeros there, open finds nothing to write past the last record on disk, and recovery
/// cuts the torn tail. The remove is gone (it failed), and everything before and after holds
/// across a power cut. (This passes without the record too, as after eviction the file reads
/// what is durable; it shows the record does no harm then.)
#[test]
fn a_reopen_after_a_failed_fsync_whose_pages_were_evicted_cuts_them() {
    let fs = SimFs::new();
    store_whose_remove_failed_its_fsync(&fs);
    fs.evict_dropped_pages();
    let db = open(&fs, SyncPolicy::Always);
    assert_eq!(db.read(b"removed").unwrap(), b"1");
    let recovered = write_later_then_cut_the_power(&db, &fs);
    assert_eq!(recovered.read(b"removed").unwrap(), b"1");
}

/// Open's own fsync of the newest writer file is where a write-back error nobody has seen yet
/// (the previous process was killed before it synced) is reported. That failure is written down
/// too, or the next open, whose fsync returns Ok, would build on the dropped pages. Here an I/O
/// error strikes each step of an open in turn; after it, a reopen, a synced write and a power cut
/// agree with what the reopen showed.
#[test]
fn an_io_error_at_any_step_of_open_then_a_reopen_builds_on_what_is_on_disk() {
    let setup = SimFs::new();
    let db = open(&setup, SyncPolicy::Never);
    db.write(b"kept", b"1").unwrap();
    db.write(b"removed", b"1").unwrap();
    db.sync().unwrap();
    db.remove(b"removed").unwrap();
    // Killed: the remove is in the page cache only.
    let killed = setup.kill_image();
    drop(db);
    let (mut failed_opens, mut fault_missed_open) = (0, false);
    for op in 1..=30 {
        let fs = killed.kill_image();
        fs.fail_at(op, Fault::Error(std::io::ErrorKind::Other));
        match config(&fs, SyncPolicy::Never).open() {
            // Past open's last operation: every one before was struck.
            Ok(_) if fs.ops() < op => {
                fault_missed_open = true;
                continue;
            }
            // The open absorbed the fault: the checks below hold for it too.
            Ok(db) => drop(db),
            Err(_) => failed_opens += 1,
        }
        let db = open(&fs, SyncPolicy::Always);
        let removed = db.get(b"removed").unwrap().map(|v| v.to_vec());
        db.write(b"later", b"2").unwrap();
        let recovered = after_power_cut(&fs);
        assert_eq!(recovered.read(b"kept").unwrap(), b"1", "op {op}");
        assert_eq!(recovered.read(b"later").unwrap(), b"2", "op {op}");
        let after = recovered.get(b"removed").unwrap().map(|v| v.to_vec());
        assert_eq!(
            after, removed,
            "op {op}: the remove changed across the power cut"
        );
    }
    assert!(failed_opens > 0);
    assert!(
        fault_missed_open,
        "open has more than 30 operations: raise the bound"
    );
}

/// When the record cannot be written either (its creation, or its write, fails right after the
/// failed fsync), the error says so, and says what that risks: the one case, besides a process
/// dying in between, that the record cannot cover. No temporary file is left behind.
#[test]
fn a_failure_record_that_cannot_be_written_is_named_in_the_error() {
    let dir = std::path::Path::new(DIR);
    for (step, what) in [(1, "creation"), (2, "write")] {
        let fs = SimFs::new();
        let db = open(&fs, SyncPolicy::Always);
        db.write(b"before", b"ok").unwrap();
        // The write is one append and one fsync; the record's creation and write come next.
        let fsync = fs.ops() + 2;
        fs.fail_at(fsync, Fault::Error(std::io::ErrorKind::Other));
        fs.also_fail_at(fsync + step, Fault::Error(std::io::ErrorKind::StorageFull));
        let err = db.write(b"during", b"unknown").unwrap_err().to_string();
        assert!(
            err.contains("writing that down for the next open failed too"),
            "{what}: {err}"
        );
        assert!(
            err.contains("may take records that are not on disk"),
            "{err}"
        );
        let files = fs.files(dir);
        assert!(!files.contains_key(&dir.join("FSYNC_FAILED")), "{what}");
        assert!(!files.contains_key(&dir.join("FSYNC_FAILED.tmp")), "{what}");
        let later = db.sync().unwrap_err().to_string();
        assert!(later.contains("failed too"), "{later}");
    }
}

/// A failure record that a crash tore (it is written without waiting for its fsync) is removed
/// unread: the crash also took the pages it warned of. One naming a file that is gone is
/// removed too.
#[test]
fn a_torn_or_stale_fsync_failure_record_is_removed_and_changes_nothing() {
    let dir = std::path::Path::new(DIR);
    for (bytes, what) in [
        (vec![], "empty"),
        (vec![0x89, b'B', b'C', b'F'], "torn"),
        (
            bitcask::format::fsync_failure::FsyncFailure {
                file_id: 999,
                durable_len: 20,
            }
            .encode(),
            "names a file that is gone",
        ),
    ] {
        let fs = SimFs::new();
        let db = open(&fs, SyncPolicy::Always);
        db.write(b"k", b"v").unwrap();
        db.close().unwrap();
        let marker = dir.join("FSYNC_FAILED");
        fs.put_file(&marker, &bytes);
        let db = open(&fs, SyncPolicy::Always);
        assert_eq!(db.read(b"k").unwrap(), b"v", "{what}");
        assert!(!fs.files(dir).contains_key(&marker), "{what}");
    }
}

/// Where no page was dropped, a failure record changes nothing: open writes the bytes that are
/// there, so whatever length it names (a torn tail, a damaged record and the records behind it
/// included), the store opens with the contents and files it has without one.
#[test]
fn a_failure_record_without_dropped_pages_changes_nothing_open_finds() {
    let dir = std::path::Path::new(DIR);
    let fs = SimFs::new();
    let db = open(&fs, SyncPolicy::Never);
    for i in 0..6u8 {
        db.write(&[i], &[i; 40]).unwrap();
    }
    db.remove(&[2]).unwrap();
    db.sync().unwrap();
    // Torn: the next write stores half its bytes.
    fs.fail_at(fs.ops() + 1, Fault::ShortWrite);
    assert!(db.write(b"torn", &[9; 40]).is_err());
    let image = fs.kill_image();
    drop(db);
    let data = image
        .files(dir)
        .into_iter()
        .find(|(path, _)| path.extension().is_some_and(|ext| ext == "data"))
        .unwrap();
    let file_id: u32 = data
        .0
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let opened = |fs: &SimFs| {
        let db = open(fs, SyncPolicy::Never);
        let pairs: Vec<_> = (0..6u8)
            .map(|i| db.get(&[i]).unwrap().map(|v| v.to_vec()))
            .collect();
        drop(db);
        let mut files = fs.files(dir);
        files.retain(|path, _| path.file_name() != Some("LOCK".as_ref()));
        (pairs, files)
    };
    let expected = opened(&image.kill_image());
    for durable_len in (20..=data.1.len() as u64 + 10).step_by(7) {
        let fs = image.kill_image();
        let failure = bitcask::format::fsync_failure::FsyncFailure {
            file_id,
            durable_len,
        };
        fs.put_file(&dir.join("FSYNC_FAILED"), &failure.encode());
        assert_eq!(opened(&fs), expected, "durable length {durable_len}");
    }
}

/// A leader whose fsync panics still ends its round: the panic reaches its caller, and a later
/// write under `Always` fails instead of waiting for ever on a leader that is gone. It fails
/// before it takes effect: the panic poisons the writer (it used to append the record, so
/// readers saw a write reported as refused, and a later `close` made it durable; found by
/// review).
#[test]
fn a_panicking_fsync_fails_later_writes_instead_of_hanging() {
    let fs = SimFs::new();
    let db = open(&fs, SyncPolicy::Always);
    db.write(b"before", b"ok").unwrap();
    // Under Always the next write is one append and one fsync: the fsync panics.
    fs.fail_at(fs.ops() + 2, Fault::Panic);
    let during = db.clone();
    let panicked = std::thread::spawn(move || during.write(b"during", b"x")).join();
    assert!(panicked.is_err(), "the fsync's panic reached its caller");

    let (done, outcome) = std::sync::mpsc::channel();
    let after = db.clone();
    // Not scoped: if the write hangs, the test fails here rather than hanging with it.
    std::thread::spawn(move || done.send(after.write(b"after", b"y")));
    let outcome = outcome
        .recv_timeout(Duration::from_secs(60))
        .expect("a write after the leader's panic waited for ever");
    assert!(matches!(outcome, Err(Error::Poisoned(_))), "{outcome:?}");
    assert!(
        matches!(db.read(b"after"), Err(Error::KeyNotFound)),
        "a refused write took effect"
    );
    assert_eq!(db.read(b"before").unwrap(), b"ok");
}

/// A poisoned writer cannot make records durable before a merge's commit, so a merge is
/// refused before it copies anything (it used to copy every input and fail at the end, and the
/// background thread did so at every check), and the refusal shows in the stats.
#[test]
fn a_merge_is_refused_while_the_writer_is_poisoned() {
    let fs = SimFs::new();
    let db = open(&fs, SyncPolicy::Always);
    for i in 0..50u32 {
        db.write(&(i % 10).to_le_bytes(), &i.to_le_bytes()).unwrap();
    }
    db.merge().unwrap(); // seals the active file: the next append starts a new one
    fs.fail_at(fs.ops() + 1, Fault::Error(std::io::ErrorKind::Other));
    assert!(matches!(db.write(b"k", b"v"), Err(Error::Io { .. })));

    let ops = fs.ops();
    assert!(matches!(db.merge(), Err(Error::Poisoned(_))));
    assert_eq!(fs.ops(), ops, "the refused merge did I/O");
    let error = db.stats().last_merge_error.unwrap_or_default();
    assert!(error.contains("refuses writes"), "{error}");
}

/// 4 writers under `Always` with group-commit polling `poll`, and an I/O error at some
/// operation while they run: each writer stops at its first error, which must say I/O or
/// poisoned (a follower, polling or asleep, learns of the leader's failed fsync), and at least
/// one gets one (a failed append alone does not stop the others); nobody hangs; every write
/// that returned `Ok` is in a power-cut image; reopening works.
fn a_failed_fsync_among_waiting_writers(poll: Duration) {
    // Many fault points, so that some strike a round that followers are waiting on.
    for fault_after in (20..=300).step_by(7) {
        let fs = SimFs::new();
        let db = open_always(&fs, poll);
        fs.fail_at(
            fs.ops() + fault_after,
            Fault::Error(std::io::ErrorKind::Other),
        );
        let outcomes: Vec<(Vec<u32>, bool)> = std::thread::scope(|s| {
            let writers: Vec<_> = (0..4u32)
                .map(|t| {
                    let db = &db;
                    s.spawn(move || {
                        let mut acked = Vec::new();
                        for i in 0..1000u32 {
                            match db.write(&(t * 10_000 + i).to_le_bytes(), &i.to_le_bytes()) {
                                Ok(()) => acked.push(t * 10_000 + i),
                                Err(Error::Io { .. } | Error::Poisoned(_)) => return (acked, true),
                                Err(e) => panic!("writer {t}: unexpected error {e}"),
                            }
                        }
                        (acked, false)
                    })
                })
                .collect();
            writers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert!(
            outcomes.iter().any(|(_, failed)| *failed),
            "the fault after {fault_after} operations struck no writer"
        );
        let recovered = after_power_cut(&fs);
        for key in outcomes.iter().flat_map(|(acked, _)| acked) {
            assert_eq!(
                recovered.read(&key.to_le_bytes()).unwrap(),
                (key % 10_000).to_le_bytes(),
                "acknowledged write {key} lost (fault after {fault_after} operations)"
            );
        }
        drop(recovered);
        drop(db);
        open(&fs, SyncPolicy::Always).write(b"after", b"x").unwrap();
    }
}

#[test]
fn a_failed_fsync_fails_polling_followers_and_loses_no_acknowledged_write() {
    a_failed_fsync_among_waiting_writers(bitcask::DEFAULT_COMMIT_POLL);
}

#[test]
fn a_failed_fsync_fails_sleeping_followers_and_loses_no_acknowledged_write() {
    a_failed_fsync_among_waiting_writers(Duration::ZERO);
}

/// Values of this size: four do not fit one 4096-byte file.
const BIG: usize = 1000;

/// A store under `Always` holding keys 0, 1 and 2, each `[k; BIG]`: its active file is full, so
/// the next write of a `BIG` value rotates it.
fn three_big_records(fs: &SimFs) -> bitcask::Database {
    let db = open(fs, SyncPolicy::Always);
    for k in 0..3u8 {
        db.write(&[k], &[k; BIG]).unwrap();
    }
    db
}

/// The file-system operations (numbered as on a fresh [`three_big_records`] store) of the
/// write that rotates its active file.
fn rotating_write_steps() -> std::ops::RangeInclusive<u64> {
    let probe = SimFs::new();
    let db = three_big_records(&probe);
    let before = probe.ops();
    db.write(&[3], &[3; BIG]).unwrap();
    before + 1..=probe.ops()
}

/// An error at any step of a rotation, then a small write with a short-write fault, then the
/// process is killed or the power fails: the store reopens with every acknowledged write. Where
/// the failure may have left the new file named (its rename done, the directory fsync failed)
/// or an fsync failed, the writer is poisoned and the small write refused without I/O: no
/// record may go into the old file once a newer one may be named, or the newer (empty) file
/// would make the old file's torn tail corruption. Everywhere else the small write goes to the
/// old file and is torn (on a real disk also the zeros `fallocate` leaves past the last record).
/// Both happen.
#[test]
fn a_failed_rotation_then_more_writes_then_a_crash_loses_nothing() {
    let (mut torn, mut refused) = (0, 0);
    for op in rotating_write_steps() {
        let fs = SimFs::new();
        let db = three_big_records(&fs);
        fs.fail_at(op, Fault::Error(std::io::ErrorKind::Other));
        let mut acknowledged: Vec<(Vec<u8>, Vec<u8>)> =
            (0..3u8).map(|k| (vec![k], vec![k; BIG])).collect();
        if db.write(&[3], &[3; BIG]).is_ok() {
            acknowledged.push((vec![3], vec![3; BIG]));
        }
        fs.fail_at(fs.ops() + 1, Fault::ShortWrite);
        let ops = fs.ops();
        match db.write(b"small", b"fits") {
            Err(Error::Poisoned(_)) if fs.ops() == ops => refused += 1,
            Err(_) if fs.ops() > ops => torn += 1,
            other => panic!("fault at op {op}: the small write gave {other:?}"),
        }
        for (image, how) in [(fs.kill_image(), "kill"), (fs.crash_image(), "power cut")] {
            let reopened = open(&image, SyncPolicy::Never);
            for (key, value) in &acknowledged {
                assert_eq!(
                    reopened.read(key).unwrap(),
                    *value,
                    "fault at op {op}, then a {how}: key {key:?}"
                );
            }
        }
        drop(db);
    }
    assert!(torn > 0 && refused > 0, "torn {torn}, refused {refused}");
}

/// A panic at any step of a write that rotates the active file (a bug in I/O code; here the file
/// system panics): the panic reaches the writer's caller, every later write is refused with
/// `Poisoned` without taking effect, and a kill or power cut then loses no acknowledged write.
/// Before, a panic while the writer was held left it unpoisoned: after one between naming the
/// new file and switching to it, later records went into the old file (found by the session's
/// own review of the write path).
#[test]
fn a_panic_at_any_step_of_a_rotation_poisons_the_writer() {
    for op in rotating_write_steps() {
        let fs = SimFs::new();
        let db = three_big_records(&fs);
        fs.fail_at(op, Fault::Panic);
        let writing = db.clone();
        let panicked = std::thread::spawn(move || writing.write(&[3], &[3; BIG])).join();
        assert!(panicked.is_err(), "op {op}: the panic reached the caller");
        let later = db.write(b"later", b"refused");
        assert!(
            matches!(later, Err(Error::Poisoned(_))),
            "op {op}: {later:?}"
        );
        assert!(
            matches!(db.read(b"later"), Err(Error::KeyNotFound)),
            "op {op}"
        );
        for (image, how) in [(fs.kill_image(), "kill"), (fs.crash_image(), "power cut")] {
            let reopened = open(&image, SyncPolicy::Never);
            for k in 0..3u8 {
                assert_eq!(reopened.read(&[k]).unwrap(), [k; BIG], "op {op}, {how}");
            }
        }
    }
}

/// A write from a `Drop` that runs while its thread unwinds from a panic elsewhere succeeds and
/// poisons nothing: only a panic that starts while the writer is held does.
#[test]
fn a_write_during_another_panic_does_not_poison_the_writer() {
    struct WritesOnDrop(bitcask::Database);
    impl Drop for WritesOnDrop {
        fn drop(&mut self) {
            self.0.write(b"from drop", b"kept").unwrap();
        }
    }
    let fs = SimFs::new();
    let db = open(&fs, SyncPolicy::Always);
    let on_drop = WritesOnDrop(db.clone());
    let unwound = std::thread::spawn(move || {
        let _on_drop = on_drop;
        panic!("a panic that has nothing to do with the store");
    })
    .join();
    assert!(unwound.is_err());
    assert_eq!(db.read(b"from drop").unwrap(), b"kept");
    db.write(b"after", b"works").unwrap();
}

/// Under `Interval`, a handle dropped while its thread panics skips `close`, but the flush
/// thread syncs once more as it stops: the writes are durable once the directory is free.
#[test]
fn interval_syncs_once_more_when_a_panicking_drop_stops_the_flush_thread() {
    let fs = SimFs::new();
    let db = open(&fs, SyncPolicy::Interval(Duration::from_secs(3600)));
    db.write(b"k", b"written just before the panic").unwrap(); // hours before the next flush
    let panicked = std::thread::spawn(move || {
        let _held = db;
        panic!("the application fails while it holds the store");
    })
    .join();
    assert!(panicked.is_err());
    // No reopen to wait with: open syncs what it finds, which would hide a missing sync.
    let value = b"written just before the panic";
    let synced = || {
        fs.synced_contents(&std::path::Path::new(DIR).join("0000000001.data"))
            .is_some_and(|bytes| bytes.windows(value.len()).any(|w| w == value))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !synced() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(after_power_cut(&fs).read(b"k").unwrap(), value);
}

/// A record over 1 MiB is written in two parts (its header and key, then its value from where
/// it lies): a power cut, an error or a short write at either part, or at the fsync after them,
/// fails the write, keeps what was acknowledged before it, and leaves no torn record: after a
/// power cut the large key holds its whole value or nothing, and the store takes writes.
#[test]
fn a_fault_in_either_part_of_a_large_write_leaves_no_torn_record() {
    let big: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    let faults = [
        Fault::PowerCut,
        Fault::Error(std::io::ErrorKind::Other),
        Fault::ShortWrite,
    ];
    for fault in faults {
        // Sealing the active file and creating the next (six steps: the record is larger than
        // the data file limit), then the header and key, the value, and the fsync.
        for step in 1..=9 {
            let fs = SimFs::new();
            let db = open(&fs, SyncPolicy::Always);
            db.write(b"before", b"ok").unwrap();
            fs.fail_at(fs.ops() + step, fault);
            assert!(db.write(b"big", &big).is_err(), "{fault:?} at step {step}");
            let image = after_power_cut(&fs);
            assert_eq!(image.read(b"before").unwrap(), b"ok");
            if let Some(value) = image.get(b"big").unwrap() {
                assert!(*value == big[..], "{fault:?} at step {step}: a torn value");
            }
            image.write(b"after", b"x").unwrap();
        }
        // And with nothing failing, the value comes back whole after a power cut.
        let fs = SimFs::new();
        open(&fs, SyncPolicy::Always).write(b"big", &big).unwrap();
        assert!(*after_power_cut(&fs).get(b"big").unwrap().unwrap() == big[..]);
    }
}
