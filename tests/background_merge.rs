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

#[test]
fn close_during_a_merge_stops_it_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(dir.path())
        .data_file_limit(256 * 1024)
        .background_merge(false);
    let db = config.clone().open().unwrap();
    for round in 0..4u8 {
        for k in 0..5000u32 {
            db.write(&k.to_le_bytes(), &[round; 200]).unwrap();
        }
    }
    let merger = {
        let db = db.clone();
        std::thread::spawn(move || db.merge())
    };
    std::thread::sleep(Duration::from_millis(2));
    db.close().unwrap();
    // The merge finished or was abandoned; either way it says so and leaves a sound store.
    match merger.join().unwrap() {
        Ok(()) | Err(bitcask::Error::Closed) => {}
        Err(e) => panic!("merge failed: {e}"),
    }
    let db = config.open().unwrap();
    assert_eq!(db.stats().num_keys, 5000);
    for k in (0..5000u32).step_by(97) {
        assert_eq!(db.read(&k.to_le_bytes()).unwrap(), [3; 200]);
    }
    assert!(files_with_ext(dir.path(), "tmp").is_empty());
}

#[test]
fn needs_merge_follows_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let db = Config::new(dir.path())
        .data_file_limit(1000)
        .background_merge(false)
        .open()
        .unwrap();
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

/// A partial merge must not drop a durable tombstone just because a newer put of its key is
/// live: that put may not be durable yet, and after a power cut the older put in a file the
/// merge left alone would come back.
#[test]
fn partial_merge_keeps_a_synced_tombstone_whose_newer_put_is_not_durable() {
    use bitcask::SyncPolicy;
    use bitcask::sim::SimFs;

    const DIR: &str = "/store";
    let fs = SimFs::new();
    let mut policy = MergePolicy::default();
    policy.small_file_bytes = 0; // merge only fragmented files: a partial merge
    policy.check_interval = Duration::from_millis(5);
    let db = Config::new(DIR)
        .file_system(fs.clone())
        .data_file_limit(1000)
        .sync_policy(SyncPolicy::Never)
        .merge_policy(policy)
        .open()
        .unwrap();
    // File A: the old put of `victim` among live fillers, so the merge leaves A alone.
    db.write(b"victim", &[1; 100]).unwrap();
    for i in 0..7u8 {
        db.write(&[b'f', i], &[2; 100]).unwrap();
    }
    // File B: the tombstone of `victim` among overwrites, so B is fragmented; then synced.
    db.remove(b"victim").unwrap();
    for _ in 0..8 {
        db.write(b"junk", &[3; 100]).unwrap();
    }
    db.sync().unwrap();
    // A newer put of `victim`, never synced; appending it rotates B out, so the merge may pick B.
    db.write(b"victim", &[4; 100]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.stats().merges == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = db.stats();
    assert!(stats.merges > 0, "no background merge ran: {stats:?}");
    assert!(
        stats.files.iter().any(|f| f.file_id == 1),
        "file A should have survived the partial merge: {stats:?}"
    );
    // The power goes: the unsynced put is lost, the synced remove must hold.
    let rebooted = Config::new(DIR)
        .file_system(fs.crash_image())
        .background_merge(false)
        .open()
        .unwrap();
    assert!(
        rebooted.get(b"victim").unwrap().is_none(),
        "the removed key came back with its old value after a partial merge and a power cut"
    );
    assert_eq!(rebooted.read(b"junk").unwrap(), [3; 100]);
    drop(db);
}
