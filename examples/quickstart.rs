//! A tour of the engine: several threads write a few hundred thousand keys through one shared
//! handle, read them back (copying and zero-copy), overwrite half, merge, reopen, and verify.
//!
//! `cargo run --release --example quickstart [DIR]` (default: a fresh directory under the
//! system temp dir, removed at the end).

use std::path::PathBuf;
use std::thread;
use std::time::Instant;

use bitcask::{Config, Database};
use bytesize::ByteSize;

const THREADS: u64 = 4;
const KEYS_PER_THREAD: u64 = 75_000;

fn key(n: u64) -> [u8; 16] {
    let mut key = *b"user:0000000000\0";
    key[5..15].copy_from_slice(format!("{n:010}").as_bytes());
    key
}

fn value(n: u64, round: u64) -> Vec<u8> {
    format!("{{\"id\":{n},\"round\":{round},\"name\":\"Peter Nr. {n}\"}}").into_bytes()
}

/// Runs `work(thread_index)` on THREADS threads sharing `db`; returns the elapsed seconds.
fn on_threads(db: &Database, work: impl Fn(&Database, u64) + Sync) -> f64 {
    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..THREADS {
            let work = &work;
            s.spawn(move || work(db, t));
        }
    });
    start.elapsed().as_secs_f64()
}

fn keys_of(t: u64) -> std::ops::Range<u64> {
    t * KEYS_PER_THREAD..(t + 1) * KEYS_PER_THREAD
}

fn report(what: &str, ops: u64, secs: f64) {
    println!(
        "{what:<44} {ops:>8} ops in {secs:>6.3} s = {:>10.0} ops/s",
        ops as f64 / secs
    );
}

/// The lengths of the files in `dir` added up: data files (the active one with the space
/// allocated ahead of its records), hint files, the lock. What `Stats::total_bytes` leaves out.
fn bytes_of_files(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .sum()
}

fn main() -> bitcask::Result<()> {
    let (dir, temporary) = match std::env::args().nth(1) {
        Some(dir) => (PathBuf::from(dir), false),
        None => (
            std::env::temp_dir().join(format!("bitcask-quickstart-{}", std::process::id())),
            true,
        ),
    };
    let total = THREADS * KEYS_PER_THREAD;
    let config = Config::new(&dir).data_file_limit(ByteSize::mib(16).as_u64());
    let db = config.clone().open()?;
    println!("store: {}", dir.display());

    let secs = on_threads(&db, |db, t| {
        for n in keys_of(t) {
            db.write(&key(n), &value(n, 0)).unwrap();
        }
    });
    report("write (4 threads, no fsync per write)", total, secs);
    db.sync()?;

    let secs = on_threads(&db, |db, t| {
        for n in keys_of(t) {
            assert_eq!(db.read(&key(n)).unwrap(), value(n, 0));
        }
    });
    report("read, copying (4 threads)", total, secs);

    let secs = on_threads(&db, |db, t| {
        for n in keys_of(t).filter(|n| n % 2 == 0) {
            db.write(&key(n), &value(n, 1)).unwrap();
        }
    });
    report("overwrite half (4 threads)", total / 2, secs);

    let (before, files_before) = (db.stats(), bytes_of_files(&dir));
    let start = Instant::now();
    db.merge()?;
    let secs = start.elapsed().as_secs_f64();
    let after = db.stats();
    println!(
        "merge: data files {} -> {} ({} live), all files {} -> {}, in {secs:.3} s",
        ByteSize::b(before.total_bytes),
        ByteSize::b(after.total_bytes),
        ByteSize::b(after.live_bytes),
        ByteSize::b(files_before),
        ByteSize::b(bytes_of_files(&dir)),
    );

    let secs = on_threads(&db, |db, t| {
        for n in keys_of(t) {
            let got = db.get(&key(n)).unwrap().expect("key present");
            assert_eq!(&*got, &value(n, u64::from(n % 2 == 0))[..]);
        }
    });
    report("get, zero-copy after merge (4 threads)", total, secs);
    db.close()?;

    let start = Instant::now();
    let db = config.open()?;
    println!(
        "reopen: {} keys in {:.3} s (from hint files)",
        db.stats().num_keys,
        start.elapsed().as_secs_f64()
    );
    for n in (0..total).step_by(997) {
        assert_eq!(db.read(&key(n))?, value(n, u64::from(n % 2 == 0)));
    }
    assert_eq!(db.stats().num_keys, total);
    println!("verified: every sampled key holds its newest value after merge and reopen");
    db.close()?;
    if temporary {
        std::fs::remove_dir_all(&dir).ok();
    }
    Ok(())
}
