//! The background merge thread: keeps an overwrite-heavy store small without `merge()` calls,
//! merges only the files its policy picks while keeping removed keys removed, reports its work
//! in `stats()`, and stops cleanly on close.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bitcask::{Config, Database, MergePolicy};
use common::files_with_ext;

fn dir_bytes(dir: &Path) -> u64 {
    files_with_ext(dir, "data")
        .iter()
        .chain(&files_with_ext(dir, "hint"))
        .map(|p| p.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// Waits (bounded) until the merge thread has nothing left to do.
fn wait_until_merged(db: &Database) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.needs_merge() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!db.needs_merge(), "the merge thread did not catch up");
}

#[test]
fn overwrite_heavy_workload_stays_within_three_times_live_plus_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 64 * 1024;
    // Default triggers and thresholds; only the timer is shortened so the test runs fast.
    let mut policy = MergePolicy::default();
    policy.check_interval = Duration::from_millis(20);
    let db = Config::new(dir.path())
        .data_file_limit(limit)
        .merge_policy(policy)
        .open()
        .unwrap();
    let mut worst = 0.0f64;
    for round in 0..40u32 {
        for k in 0..500u32 {
            db.write(&k.to_le_bytes(), &[round as u8; 100]).unwrap();
        }
        wait_until_merged(&db);
        let stats = db.stats();
        let on_disk = dir_bytes(dir.path());
        let bound = 3 * stats.live_bytes + limit;
        assert!(
            on_disk <= bound,
            "round {round}: {on_disk} bytes on disk > {bound}"
        );
        worst = worst.max(on_disk as f64 / stats.live_bytes as f64);
    }
    let stats = db.stats();
    assert!(stats.merges > 0, "{stats:?}");
    assert!(stats.merge_reclaimed_bytes > 0);
    assert!(stats.last_merge.is_some());
    assert_eq!(stats.last_merge_error, None);
    eprintln!("worst on-disk / live ratio: {worst:.2}");
}

#[test]
fn partial_merge_keeps_a_tombstone_while_an_older_put_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = MergePolicy::default();
    policy.small_file_bytes = 0; // merge only fragmented files: a partial merge
    let open = || {
        Config::new(dir.path())
            .data_file_limit(1000)
            .merge_policy(policy)
            .open()
            .unwrap()
    };
    let db = open();
    // File A: the put of `victim` among live fillers, so A stays unfragmented.
    db.write(b"victim", &[1; 100]).unwrap();
    for i in 0..7u8 {
        db.write(&[b'f', i], &[2; 100]).unwrap();
    }
    // File B: the tombstone of `victim` among overwrites, so B is fragmented.
    db.remove(b"victim").unwrap();
    for _ in 0..8 {
        db.write(b"junk", &[3; 100]).unwrap();
    }
    db.write(b"next", b"rotates B out").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.stats().merges == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = db.stats();
    assert!(stats.merges > 0, "no background merge ran: {stats:?}");
    assert!(
        stats.files.iter().all(|f| f.file_id != 2),
        "B, which holds the tombstone, was not merged: {stats:?}"
    );
    let file_a = stats.files.iter().find(|f| f.file_id == 1);
    assert!(
        file_a.is_some(),
        "file A should have survived the partial merge: {stats:?}"
    );
    db.close().unwrap();
    let db = open();
    assert!(
        db.get(b"victim").unwrap().is_none(),
        "removed key came back"
    );
    assert_eq!(db.read(b"junk").unwrap(), [3; 100]);
    for i in 0..7u8 {
        assert_eq!(db.read(&[b'f', i]).unwrap(), [2; 100]);
    }
}

/// `close` while a merge copies: the merge is abandoned (`Err(Closed)`), removes its temporary
/// files, and the store reopens whole. The close waits until the merge has sealed an output,
/// so it lands while the merge copies; a merge that still reaches its commit first finishes
/// instead, which is sound too, so the test tries up to five times and requires one abandon.
#[test]
fn close_during_a_merge_stops_it_cleanly() {
    let mut abandoned = 0;
    for _attempt in 0..5 {
        abandoned += u32::from(close_while_a_merge_copies());
        if abandoned > 0 {
            break;
        }
    }
    assert!(abandoned > 0, "no close landed while a merge copied");
}

/// `close` while the background thread merges: it stops the thread, whose merge is abandoned
/// (or, if it reached its commit first, finishes), leaves no temporary file, and releases the
/// directory at once; the store reopens whole. Up to five tries, one of which must close while
/// a merge output is being written and before any merge completed.
#[test]
fn close_during_a_background_merge_stops_it_cleanly() {
    let landed = (0..5).any(|_| close_while_the_background_thread_merges());
    assert!(landed, "no close landed while the background thread merged");
}

/// A store of 5,000 keys written four times over, 256 KiB files: 1.1 MB of live records in
/// 4.5 MB.
fn overwritten_four_times(config: &Config) {
    let db = config.clone().open().unwrap();
    for round in 0..4u8 {
        for k in 0..5000u32 {
            db.write(&k.to_le_bytes(), &[round; 200]).unwrap();
        }
    }
    db.close().unwrap();
}

/// Waits (up to 30 s, or until `done`) until a merge output is being written in `dir`: a hint
/// file being written means an output was sealed and the merge goes on to the next (about
/// 1.1 MB of live records make four or five outputs of 256 KiB). Any `.tmp` would not do:
/// rotation creates the new active file under a temporary name too. Whether it saw one.
fn wait_for_a_merge_output(dir: &Path, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() && Instant::now() < deadline {
        let names = std::fs::read_dir(dir).unwrap();
        if names
            .map_while(Result::ok)
            .any(|entry| entry.file_name().to_string_lossy().ends_with(".hint.tmp"))
        {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

/// The store as [`overwritten_four_times`] left it, once it has been opened again.
fn assert_whole(config: Config) {
    let db = config.open().unwrap();
    assert_eq!(db.stats().num_keys, 5000);
    for k in (0..5000u32).step_by(97) {
        assert_eq!(db.read(&k.to_le_bytes()).unwrap(), [3; 200]);
    }
    db.close().unwrap();
}

/// One store, reopened with its background thread checking every millisecond and taking every
/// sealed file (so that it writes the four or five outputs a full merge does), closed once the
/// thread's merge writes an output; whether the close landed before the merge completed.
fn close_while_the_background_thread_merges() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(dir.path()).data_file_limit(256 * 1024);
    overwritten_four_times(&config.clone().background_merge(false));
    // The policy takes only files with dead bytes: every 8th key written once more (with the
    // value it has) leaves none of the last round's files whole.
    let db = config.clone().background_merge(false).open().unwrap();
    for k in (0..5000u32).step_by(8) {
        db.write(&k.to_le_bytes(), &[3; 200]).unwrap();
    }
    db.close().unwrap();
    let mut policy = MergePolicy::default();
    policy.check_interval = Duration::from_millis(1);
    policy.threshold_fragmentation = 0.0;
    let db = config.clone().merge_policy(policy).open().unwrap();
    let merging = wait_for_a_merge_output(dir.path(), || db.stats().merges > 0);
    db.close().unwrap();
    // The figures as they were at the close: no merge had completed by then.
    let merged_before_close = db.stats().merges > 0;
    // Before the reopen, which would delete them: the stopped thread removed its own.
    assert!(files_with_ext(dir.path(), "tmp").is_empty());
    // Released at once: a thread still merging would hold the directory.
    assert_whole(config.background_merge(false));
    merging && !merged_before_close
}

/// One store, one merge, one close while it copies; whether the merge was abandoned.
fn close_while_a_merge_copies() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(dir.path())
        .data_file_limit(256 * 1024)
        .background_merge(false);
    overwritten_four_times(&config);
    let db = config.clone().open().unwrap();
    let merger = {
        let db = db.clone();
        std::thread::spawn(move || db.merge())
    };
    wait_for_a_merge_output(dir.path(), || merger.is_finished());
    db.close().unwrap();
    let abandoned = match merger.join().unwrap() {
        Ok(()) => false,
        Err(bitcask::Error::Closed) => true,
        Err(e) => panic!("merge failed: {e}"),
    };
    // Checked before the reopen, which would delete them: an abandoned merge removes its
    // temporary files itself.
    assert!(files_with_ext(dir.path(), "tmp").is_empty());
    assert_whole(config);
    abandoned
}

/// A policy whose trigger is looser than its threshold (merge once a file is 30% dead, take
/// files 40% dead) made the merge thread spin: a 35% dead file triggered every check, and no
/// merge took it. A merge now takes every file that triggers it, besides those its threshold
/// picks. Found by review.
#[test]
fn a_file_that_triggers_a_merge_is_merged_whatever_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = MergePolicy::default();
    policy.trigger_fragmentation = 0.3;
    policy.small_file_bytes = 0;
    policy.check_interval = Duration::from_millis(10);
    let db = Config::new(dir.path())
        .data_file_limit(1000) // 8 records of 122 bytes a file
        .merge_policy(policy)
        .open()
        .unwrap();
    for i in 0..24u8 {
        db.write(&[i], &[0; 100]).unwrap();
    }
    for i in 0..3u8 {
        db.write(&[i], &[1; 100]).unwrap(); // the first file: 3 of its 8 records dead
    }
    wait_until_merged(&db);
    assert!(db.stats().merges > 0);
    for i in 0..24u8 {
        assert_eq!(db.read(&[i]).unwrap(), [u8::from(i < 3); 100]);
    }
}

/// A panic inside a background merge (here from the file system, standing in for a bug) used to
/// end the merge thread silently. Now `stats()` reports it, later merges are refused until
/// reopen (that merge may have stopped anywhere), and reads and writes go on.
#[test]
fn a_panic_in_the_background_merge_is_reported_and_refuses_merges() {
    use bitcask::sim::{Fault, SimFs};
    let config = |fs: &SimFs, background: bool| {
        let mut policy = MergePolicy::default();
        policy.check_interval = Duration::from_millis(10);
        Config::new("/store")
            .file_system(fs.clone())
            .data_file_limit(1000)
            .merge_policy(policy)
            .background_merge(background)
    };
    let fs = SimFs::new();
    let db = config(&fs, false).open().unwrap();
    for round in 0..3u8 {
        for i in 0..20u8 {
            db.write(&[i], &[round; 100]).unwrap();
        }
    }
    db.close().unwrap();
    // How many file-system operations an open takes, so the next one after it is the merge
    // thread's.
    let probe = fs.crash_image();
    let before = probe.ops();
    let probed = config(&probe, false).open().unwrap();
    let open_ops = probe.ops() - before;
    drop(probed);
    let image = fs.crash_image();
    image.fail_at(image.ops() + open_ops + 1, Fault::Panic);
    let db = config(&image, true).open().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.stats().merge_failures == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = db.stats();
    let reported = stats.last_merge_error.unwrap_or_default();
    assert!(reported.contains("a merge panicked"), "{reported:?}");
    let refused = db.merge().unwrap_err();
    assert!(
        matches!(refused, bitcask::Error::MergeRefused(_)),
        "{refused}"
    );
    assert!(refused.to_string().contains("panicked"), "{refused}");
    db.write(b"after", b"works").unwrap();
    for i in 0..20u8 {
        assert_eq!(db.read(&[i]).unwrap(), [2; 100]);
    }
}

#[test]
fn needs_merge_follows_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::open_small(dir.path(), 1000);
    for i in 0..20u8 {
        db.write(&[i], &[0; 100]).unwrap();
    }
    assert!(!db.needs_merge(), "nothing is dead yet");
    for i in 0..20u8 {
        db.write(&[i], &[1; 100]).unwrap();
    }
    assert!(db.needs_merge(), "the first files are now fully dead");
    db.merge().unwrap();
    assert!(!db.needs_merge());
}

/// How a partial merge's input B ends for [`synced_b_then_unsynced_newer_put`].
enum InB {
    /// `remove(victim)`.
    Tombstone,
    /// `write(victim, [2; 100])`.
    Put,
}

/// File A: `victim` = [1; 100] among live fillers, so the merge leaves A alone. File B: `in_b`
/// for `victim` among overwrites, then synced. Then `victim` = [4; 100], never synced, whose
/// append seals B. Only then do overwrites of B's last live keys make B fragmented enough for
/// the merge thread's timer (B did not qualify when it was sealed, so no merge can have looked
/// at B before the newer put was in the keydir). Waits for that partial merge, and returns what
/// a power cut then leaves.
fn synced_b_then_unsynced_newer_put(in_b: InB) -> Database {
    use bitcask::SyncPolicy;
    use bitcask::sim::SimFs;

    const DIR: &str = "/store";
    let fs = SimFs::new();
    let mut policy = MergePolicy::default();
    policy.small_file_bytes = 0; // merge only fragmented files: a partial merge
    policy.trigger_fragmentation = 0.9;
    policy.check_interval = Duration::from_millis(5);
    let db = Config::new(DIR)
        .file_system(fs.clone())
        .data_file_limit(1000)
        .sync_policy(SyncPolicy::Never)
        .merge_policy(policy)
        .open()
        .unwrap();
    let file_of = |db: &Database| db.stats().files.last().unwrap().file_id;
    // Records are 21 B of header plus key and value; files start with a 20 B header.
    db.write(b"victim", &[1; 100]).unwrap(); // 127 B
    for i in 0..6u8 {
        db.write(&[b'f', i], &[2; 100]).unwrap(); // 123 B each: A ends at 885 B
    }
    assert_eq!(file_of(&db), 1);
    db.write(b"f6", &[2; 100]).unwrap(); // B starts here
    // Then overwrites up to B's last 125 B record: B ends at 920 or 895 B, under 0.9 dead.
    let overwrites = match in_b {
        InB::Tombstone => {
            db.remove(b"victim").unwrap(); // 27 B
            6
        }
        InB::Put => {
            db.write(b"victim", &[2; 100]).unwrap(); // 127 B
            5
        }
    };
    for _ in 0..overwrites {
        db.write(b"junk", &[3; 100]).unwrap(); // 125 B each
    }
    db.sync().unwrap();
    assert_eq!(file_of(&db), 2, "B is still the active file");
    db.write(b"victim", &[4; 100]).unwrap();
    assert_eq!(file_of(&db), 3, "the newer put did not seal B");
    assert_eq!(db.stats().merges, 0, "B was merged before it qualified");
    // Overwriting B's live keys makes it all dead; the timer finds it.
    db.write(b"f6", &[5; 100]).unwrap();
    db.write(b"junk", &[5; 100]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.stats().merges == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = db.stats();
    assert!(stats.merges > 0, "no background merge ran: {stats:?}");
    assert!(
        stats.files.iter().all(|f| f.file_id != 2),
        "B was not merged: {stats:?}"
    );
    assert!(
        stats.files.iter().any(|f| f.file_id == 1),
        "file A should have survived the partial merge: {stats:?}"
    );
    let rebooted = Config::new(DIR)
        .file_system(fs.crash_image())
        .background_merge(false)
        .open()
        .unwrap();
    drop(db);
    for (key, synced) in [(&b"junk"[..], [3; 100]), (b"f6", [2; 100])] {
        let now = rebooted.read(key).unwrap();
        assert!(
            now == synced || now == [5; 100],
            "{key:?} lost its synced value"
        );
    }
    rebooted
}

/// A partial merge leaves out a synced tombstone because a newer put of its key is live; that
/// put is not synced. After a power cut the key must be removed or hold the newer value, never
/// the older value from the file the merge left alone.
#[test]
fn a_partial_merge_and_a_power_cut_never_bring_back_a_synced_remove() {
    let rebooted = synced_b_then_unsynced_newer_put(InB::Tombstone);
    let victim = rebooted.get(b"victim").unwrap().map(|v| v.to_vec());
    assert!(
        victim.is_none() || victim == Some(vec![4; 100]),
        "the removed key came back with {victim:?}"
    );
}

/// The same for a synced put that the merge leaves out because a newer, unsynced put of its key
/// is live: after a power cut the key holds the synced value or the newer one, never the older
/// value from the file the merge left alone.
#[test]
fn a_partial_merge_and_a_power_cut_never_lose_a_synced_put() {
    let rebooted = synced_b_then_unsynced_newer_put(InB::Put);
    let victim = rebooted.read(b"victim").unwrap();
    assert!(
        victim == [2; 100] || victim == [4; 100],
        "the key went back to {:?}",
        &victim[..4]
    );
}

/// A merge that fails (here on a damaged record in a file loaded from its hint) is not retried
/// every check: the thread waits twice as long after each failure in a row. With a 10 ms check
/// interval, a retry at every check would fail about a hundred times in 1.5 s; the backoff
/// allows about eight.
#[test]
fn a_failing_background_merge_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<[u8; 4]> = (0..40u32).map(u32::to_le_bytes).collect();
    {
        let db = common::open_small(dir.path(), 1000);
        for key in &keys {
            db.write(key, &[7; 100]).unwrap();
        }
        db.merge().unwrap();
        db.close().unwrap();
    }
    let hinted = files_with_ext(dir.path(), "hint")[0].with_extension("data");
    let len = hinted.metadata().unwrap().len();
    let mut bytes = std::fs::read(&hinted).unwrap();
    bytes[len as usize - 5] ^= 0x40; // inside the file's last record
    std::fs::write(&hinted, bytes).unwrap();

    let mut policy = MergePolicy::default();
    policy.check_interval = Duration::from_millis(10);
    policy.trigger_fragmentation = 0.0;
    policy.threshold_fragmentation = 0.0;
    let db = Config::new(dir.path())
        .data_file_limit(1000)
        .merge_policy(policy)
        .open()
        .unwrap();
    // Dead bytes in the first merged file (its first key is overwritten): every merge takes it,
    // and meets the damaged record, which stays live.
    db.write(&keys[0], &[8; 100]).unwrap();
    let start = Instant::now();
    while db.stats().merge_failures == 0 {
        assert!(start.elapsed() < Duration::from_secs(20), "no merge failed");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let stats = db.stats();
    assert!(stats.last_merge_error.is_some(), "{stats:?}");
    assert!(
        (2..=15).contains(&stats.merge_failures),
        "{} failed merges in 1.5 s",
        stats.merge_failures
    );
}
