//! Memory and disk footprint of a store of 1M keys (16 B keys, 100 B values), and open times.
//! `cargo bench --bench footprint` (a plain bench binary that prints a report; run it alone, since
//! it reads this process's RSS). `BITCASK_FOOTPRINT_KEY_LEN=32 cargo bench --bench footprint`
//! measures another key length.
//!
//! - Keydir memory: `RssAnon` from `/proc/self/status` (anonymous resident memory: the heap, not
//!   the mapped data files) before opening and after writing 1M keys, divided by the key count.
//!   The values are in the data files, so the anonymous growth is the keydir (plus allocator
//!   slack and the engine's small fixed buffers).
//! - Disk: the store directory's allocated bytes (st_blocks * 512) and `stats()` after the fill,
//!   after overwriting every key once, and after `merge()`.
//! - `keys()`: `RssAnon` growth while its snapshot is held, and the time to take and walk it.
//! - Open: median of 7 opens (+close) with hint files (after merge), of the same store merged
//!   with `Config::hint_files(false)` (whose disk it also reports), and of a never-merged copy.

use std::path::Path;
use std::time::{Duration, Instant};

use bitcask::{Config, Database};

const KEYS: u64 = 1_000_000;
const VALUE_LEN: usize = 100;
/// Key length: `BITCASK_FOOTPRINT_KEY_LEN` (8 to 1024), or 16.
fn key_len() -> usize {
    std::env::var("BITCASK_FOOTPRINT_KEY_LEN")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|len| (8..=1024).contains(len))
        .unwrap_or(16)
}

fn key(n: u64) -> Vec<u8> {
    let mut key = vec![0u8; key_len()];
    key[..8].copy_from_slice(&n.to_be_bytes());
    key
}

/// A field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// (allocated bytes, apparent bytes) of the files in `dir`.
fn dir_bytes(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut allocated = 0;
    let mut apparent = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        if meta.is_file() {
            allocated += meta.blocks() * 512;
            apparent += meta.len();
        }
    }
    (allocated, apparent)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn disk_line(label: &str, dir: &Path, db: &Database) {
    let (allocated, apparent) = dir_bytes(dir);
    let stats = db.stats();
    println!(
        "{label:<28} dir allocated {:>10} ({allocated} B), apparent {:>10}; stats: total {}, \
         live {}, dead {}, {} data files; allocated/live = {:.3}",
        mib(allocated),
        mib(apparent),
        stats.total_bytes,
        stats.live_bytes,
        stats.dead_bytes,
        stats.num_data_files,
        allocated as f64 / stats.live_bytes as f64,
    );
}

fn median_open(dir: &Path) -> Duration {
    let mut times: Vec<Duration> = (0..7)
        .map(|_| {
            let start = Instant::now();
            let db = Config::new(dir).background_merge(false).open().unwrap();
            let took = start.elapsed();
            assert_eq!(db.stats().num_keys, KEYS);
            db.close().unwrap();
            took
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// What `keys()` costs: the snapshot's resident memory (`RssAnon` growth while it is held),
/// the time to take it, and the time to walk it.
fn keys_line(db: &Database) {
    let anon_before = status_bytes("RssAnon");
    let start = Instant::now();
    let keys = db.keys();
    let taken = start.elapsed();
    let anon_held = status_bytes("RssAnon");
    let start = Instant::now();
    let (count, bytes) = keys.fold((0u64, 0usize), |(n, b), key| (n + 1, b + key.len()));
    let walked = start.elapsed();
    assert_eq!(count, KEYS);
    println!(
        "keys(): snapshot +{} resident ({:.1} B/key for {bytes} B of keys), taken in {taken:.2?}, walked in {walked:.2?}",
        mib(anon_held.saturating_sub(anon_before)),
        anon_held.saturating_sub(anon_before) as f64 / count as f64,
    );
}

fn main() {
    let user_bytes = KEYS * (key_len() + VALUE_LEN) as u64;
    println!(
        "{KEYS} keys of {} B with values of {VALUE_LEN} B ({user_bytes} B of keys+values)",
        key_len()
    );
    let dir = tempfile::tempdir().unwrap();
    let anon_before = status_bytes("RssAnon");
    let db = Config::new(dir.path())
        .background_merge(false)
        .open()
        .unwrap();
    let start = Instant::now();
    for n in 0..KEYS {
        db.write(&key(n), &[0x5A; VALUE_LEN]).unwrap();
    }
    let fill = start.elapsed();
    let anon_after = status_bytes("RssAnon");
    println!(
        "fill: {:.2?} ({:.0} writes/s)",
        fill,
        KEYS as f64 / fill.as_secs_f64()
    );
    println!(
        "memory: RssAnon {} -> {} (+{}), {:.1} B/key (key length {} B; target <= {} B/key); \
         VmHWM {}, RssFile {}",
        mib(anon_before),
        mib(anon_after),
        mib(anon_after - anon_before),
        (anon_after - anon_before) as f64 / KEYS as f64,
        key_len(),
        key_len() + 64,
        mib(status_bytes("VmHWM")),
        mib(status_bytes("RssFile")),
    );
    keys_line(&db);
    db.sync().unwrap();
    disk_line("after fill", dir.path(), &db);
    for n in 0..KEYS {
        db.write(&key(n), &[0xA5; VALUE_LEN]).unwrap();
    }
    db.sync().unwrap();
    disk_line("after overwriting all keys", dir.path(), &db);
    let start = Instant::now();
    db.merge().unwrap();
    let merge = start.elapsed();
    disk_line("after merge()", dir.path(), &db);
    println!(
        "merge of {KEYS} live of {} records: {:.2?} ({:.0} live records/s)",
        2 * KEYS,
        merge,
        KEYS as f64 / merge.as_secs_f64()
    );
    db.close().unwrap();
    println!(
        "open with hint files: median of 7 = {:.2?}",
        median_open(dir.path())
    );

    // The same store merged with `hint_files(false)`: its data files alone, and open reads them.
    let unhinted_dir = tempfile::tempdir().unwrap();
    let db = Config::new(unhinted_dir.path())
        .background_merge(false)
        .hint_files(false)
        .open()
        .unwrap();
    for fill in [0x5A, 0xA5] {
        for n in 0..KEYS {
            db.write(&key(n), &[fill; VALUE_LEN]).unwrap();
        }
    }
    db.merge().unwrap();
    disk_line("merged without hint files", unhinted_dir.path(), &db);
    db.close().unwrap();
    println!(
        "open merged without hint files (scan): median of 7 = {:.2?}",
        median_open(unhinted_dir.path())
    );

    let scan_dir = tempfile::tempdir().unwrap();
    let db = Config::new(scan_dir.path())
        .background_merge(false)
        .open()
        .unwrap();
    for n in 0..KEYS {
        db.write(&key(n), &[0x5A; VALUE_LEN]).unwrap();
    }
    db.close().unwrap();
    println!(
        "open never merged (scan): median of 7 = {:.2?}",
        median_open(scan_dir.path())
    );
}
