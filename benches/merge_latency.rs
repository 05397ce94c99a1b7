//! Write and read latency percentiles on one shared handle, with and without a merge running
//! concurrently, to show that merge does not stop readers or the writer.
//!
//! `cargo bench --bench merge_latency` (prints a table; a plain bench binary, not criterion,
//! because it reports percentiles of individual operations).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bitcask::{Config, Database};

const KEYS: u64 = 200_000;
const OPS: usize = 100_000;

fn key(n: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&n.to_be_bytes());
    key
}

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    format!(
        "p50 {:>8.2?}  p99 {:>8.2?}  p99.9 {:>8.2?}  max {:>8.2?}",
        at(0.5),
        at(0.99),
        at(0.999),
        samples[samples.len() - 1]
    )
}

fn prepare() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Config::new(dir.path())
        .data_file_limit(8 << 20)
        .background_merge(false)
        .open()
        .unwrap();
    for round in 0..2u8 {
        for n in 0..KEYS {
            if round == 0 || n % 2 == 0 {
                db.write(&key(n), &[round; 100]).unwrap();
            }
        }
    }
    (dir, db)
}

fn measure(db: &Database) -> (Vec<Duration>, Vec<Duration>) {
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut n = 0u64;
            (0..OPS)
                .map(|_| {
                    n = (n + 7919) % KEYS;
                    let start = Instant::now();
                    db.write(&key(n), &[7; 100]).unwrap();
                    start.elapsed()
                })
                .collect::<Vec<_>>()
        });
        let mut n = 0u64;
        let reads = (0..OPS)
            .map(|_| {
                n = (n + 104_729) % KEYS;
                let start = Instant::now();
                let value = db.get(&key(n)).unwrap().unwrap();
                std::hint::black_box(value.len());
                start.elapsed()
            })
            .collect();
        (writer.join().unwrap(), reads)
    })
}

fn main() {
    println!("{OPS} writes (1 thread) and {OPS} zero-copy reads (1 thread) on a {KEYS}-key store");
    for merging in [false, true] {
        let (_dir, db) = prepare();
        let stop = AtomicBool::new(false);
        let (writes, reads, merges) = std::thread::scope(|s| {
            let merger = s.spawn(|| {
                let mut merges = 0;
                while merging && !stop.load(Ordering::Relaxed) {
                    db.merge().unwrap();
                    merges += 1;
                }
                merges
            });
            let (writes, reads) = measure(&db);
            stop.store(true, Ordering::Relaxed);
            (writes, reads, merger.join().unwrap())
        });
        let label = if merging { "with merge" } else { "idle     " };
        println!("{label} write  {}", percentiles(writes));
        println!("{label} read   {}", percentiles(reads));
        if merging {
            println!("           ({merges} full merges completed during the run)");
        }
    }
}
