//! After `merge()` returns, the files it merged away stop holding disk space soon, even when no
//! thread of the process reads afterwards (a write-only or idle store): merge deleted them, and
//! the last unmap frees their blocks. Alone in its test binary, so that no other test's reads run
//! the epoch collector for it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bitcask::Config;

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
