//! Disk space and memory a store gives back. After `merge()` returns, the files it merged away
//! stop holding disk space soon, even when no thread of the process reads or rotates afterwards
//! (an idle store): merge deleted them, and the last unmap frees their blocks. A large
//! write makes no copy of its value. These tests have their binary to themselves and
//! run one at a time: no other test's reads may run the epoch collector for the first, or
//! allocate while the second measures.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bitcask::{Config, SyncPolicy};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Files under `dir` that this process still maps although they were deleted.
fn deleted_but_mapped(dir: &Path) -> Vec<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter(|line| line.ends_with(" (deleted)"))
        .filter_map(|line| line.split_whitespace().nth(5).map(PathBuf::from))
        .filter(|path| path.starts_with(dir))
        .collect()
}

#[test]
fn merged_away_files_are_unmapped_without_later_reads() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let db = Config::new(&dir)
        .data_file_limit(4096)
        .background_merge(false)
        .open()
        .unwrap();
    for round in 0..3u8 {
        for i in 0..200u32 {
            db.write(&i.to_le_bytes(), &[round; 100]).unwrap();
        }
    }
    assert!(db.stats().num_data_files > 10);
    db.merge().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mapped = deleted_but_mapped(&dir);
        if mapped.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "10 s after merge returned, {} deleted files are still mapped: {mapped:?}",
            mapped.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Writes still go on, and nothing was lost.
    db.write(b"after", b"merge").unwrap();
    for i in 0..200u32 {
        assert_eq!(db.read(&i.to_le_bytes()).unwrap(), [2; 100]);
    }
    db.close().unwrap();
}

/// A figure of this process's from `/proc/self/status`, in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A large value is written from where it lies: the write makes no second copy of it (the
/// process's peak resident memory, reset just before, stays within a quarter of the value's
/// size above where it was), and keeps nothing of its size afterwards.
#[test]
fn a_large_write_makes_no_copy_of_its_value() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const BIG: usize = 64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let db = Config::new(dir.path())
        .sync_policy(SyncPolicy::Never)
        .background_merge(false)
        .open()
        .unwrap();
    db.write(b"small", b"warm up").unwrap();
    let value = vec![7u8; BIG];
    // Resets the peak (`VmHWM`) to the present resident size (Linux 4.0 and later).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_bytes("VmRSS:");
    db.write(b"big", &value).unwrap();
    let peak = status_bytes("VmHWM:");
    assert!(
        peak < before + (BIG / 4) as u64,
        "a {BIG}-byte write raised the peak resident memory by {} bytes",
        peak.saturating_sub(before)
    );
    drop(value);
    assert!(db.get(b"big").unwrap().unwrap().iter().all(|&b| b == 7));
    assert_eq!(db.get(b"big").unwrap().unwrap().len(), BIG);
    db.close().unwrap();
    let db = Config::new(dir.path()).open().unwrap();
    assert_eq!(db.read(b"big").unwrap().len(), BIG);
    db.close().unwrap();
}
