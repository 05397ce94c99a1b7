//! Throughput of the engine's operations, in elements (operations, keys or records) per second.
//! `cargo bench --bench engine` (all of it takes a few minutes); one group:
//! `cargo bench --bench engine -- read`. `docs/benchmarks.md` has the results and the comparison
//! with other stores (`benches/compare.rs`).
//!
//! Keys are 16 bytes. Multi-threaded benches share one `Database` handle between scoped threads
//! and count the operations of all of them (`iter_custom`: the time from spawning the threads to
//! joining them).
//!
//! - `write`: 100 B, 1 KiB and 16 KiB values, `SyncPolicy::Never` from 1 thread and
//!   `SyncPolicy::Always` from 1 and 4 threads. Each sample writes into a new empty store (so a
//!   long run does not fill the disk); each thread overwrites its own 100,000 keys.
//! - `read`: random reads of existing keys from 1, 2 and 4 threads, `get` (zero-copy) and `read`
//!   (copies into a `Vec`), on 1M keys of 100 B that `merge()` moved into sealed, mapped files.
//! - `mixed`: 90% `get`, 10% `write` (overwrites of random keys) on 2 threads, same store.
//! - `open`: open a store of 1M keys of 100 B, with hint files (after `merge()`) and without
//!   (never merged: the data file is scanned). Only the open is timed, not the close.
//! - `merge`: `merge()` of 1M live keys of 100 B after overwriting half of them; counts the live
//!   records rewritten.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

use bitcask::{Config, Database, SyncPolicy};

/// Keys each writer thread cycles through.
const WRITE_KEYS: u64 = 100_000;
/// Keys of the read, mixed, open and merge stores.
const STORE_KEYS: u64 = 1_000_000;
const VALUE_LEN: usize = 100;

fn key(n: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&n.to_be_bytes());
    key
}

/// xorshift64*: a cheap random key index per operation.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `iters` operations split over `threads` threads sharing `db`; `op(db, thread, i)` does one.
/// Returns the time from before spawning to after joining.
fn run_threads(
    db: &Database,
    threads: u64,
    iters: u64,
    op: impl Fn(&Database, u64, &mut Rng, u64) + Sync,
) -> Duration {
    static SAMPLES: AtomicU64 = AtomicU64::new(0);
    let seed = SAMPLES.fetch_add(1, Ordering::Relaxed);
    let share = |t: u64| iters / threads + u64::from(t < iters % threads);
    let start = Instant::now();
    if threads == 1 {
        let mut rng = Rng::new(seed);
        for i in 0..iters {
            op(db, 0, &mut rng, i);
        }
    } else {
        std::thread::scope(|s| {
            for t in 0..threads {
                let op = &op;
                s.spawn(move || {
                    let mut rng = Rng::new(seed ^ ((t + 1) << 32));
                    for i in 0..share(t) {
                        op(db, t, &mut rng, i);
                    }
                });
            }
        });
    }
    start.elapsed()
}

fn open_fresh(dir: &Path, policy: SyncPolicy) -> Database {
    Config::new(dir)
        .sync_policy(policy)
        .background_merge(false)
        .open()
        .unwrap()
}

fn bench_write(c: &mut Criterion) {
    let mut group = c.benchmark_group("write");
    group.throughput(Throughput::Elements(1));
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    let cases = [
        ("no-sync", SyncPolicy::Never, 1u64),
        ("always", SyncPolicy::Always, 1),
        ("always", SyncPolicy::Always, 4),
    ];
    for value_len in [100usize, 1024, 16 * 1024] {
        let value = vec![0x5A; value_len];
        for (name, policy, threads) in cases {
            if policy == SyncPolicy::Always {
                group.sampling_mode(SamplingMode::Flat).sample_size(10);
            } else {
                group.sampling_mode(SamplingMode::Auto).sample_size(20);
            }
            let id = format!("{value_len}B/{name}/{threads}t");
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let dir = tempfile::tempdir().unwrap();
                    let db = open_fresh(dir.path(), policy);
                    let took = run_threads(&db, threads, iters, |db, t, _, i| {
                        db.write(&key((t << 40) | (i % WRITE_KEYS)), &value)
                            .unwrap();
                    });
                    db.close().unwrap();
                    took
                })
            });
        }
    }
    group.finish();
}

/// A store of `STORE_KEYS` keys of `VALUE_LEN` bytes; merged (sealed, mapped, hint files) or not.
fn preload(dir: &Path, merged: bool) -> Database {
    let db = open_fresh(dir, SyncPolicy::Never);
    for n in 0..STORE_KEYS {
        db.write(&key(n), &[0x5A; VALUE_LEN]).unwrap();
    }
    if merged {
        db.merge().unwrap();
    }
    db
}

fn bench_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = preload(dir.path(), true);
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(1));
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.sample_size(20);
    for threads in [1u64, 2, 4] {
        group.bench_function(format!("get/{threads}t"), |b| {
            b.iter_custom(|iters| {
                run_threads(&db, threads, iters, |db, _, rng, _| {
                    let value = db.get(&key(rng.below(STORE_KEYS))).unwrap().unwrap();
                    std::hint::black_box(value[0]);
                })
            })
        });
        group.bench_function(format!("read/{threads}t"), |b| {
            b.iter_custom(|iters| {
                run_threads(&db, threads, iters, |db, _, rng, _| {
                    let value = db.read(&key(rng.below(STORE_KEYS))).unwrap();
                    std::hint::black_box(value[0]);
                })
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("mixed");
    group.throughput(Throughput::Elements(1));
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.sample_size(20);
    let value = [0xA5; VALUE_LEN];
    group.bench_function("90get-10write/2t", |b| {
        b.iter_custom(|iters| {
            run_threads(&db, 2, iters, |db, _, rng, _| {
                let r = rng.next();
                let k = key((r >> 8) % STORE_KEYS);
                if r % 10 == 0 {
                    db.write(&k, &value).unwrap();
                } else {
                    let value = db.get(&k).unwrap().unwrap();
                    std::hint::black_box(value[0]);
                }
            })
        })
    });
    group.finish();
    db.close().unwrap();
}

fn bench_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("open");
    group.throughput(Throughput::Elements(STORE_KEYS));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for (name, merged) in [("1M-keys/hints", true), ("1M-keys/scan", false)] {
        let dir = tempfile::tempdir().unwrap();
        let db = preload(dir.path(), merged);
        db.close().unwrap();
        // Only the open is timed; the close (and freeing the keydir) is not.
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut opening = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let db = Config::new(dir.path())
                        .background_merge(false)
                        .open()
                        .unwrap();
                    opening += start.elapsed();
                    assert_eq!(db.stats().num_keys, STORE_KEYS);
                    db.close().unwrap();
                }
                opening
            })
        });
    }
    group.finish();
}

fn bench_merge(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = preload(dir.path(), true);
    let stats = db.stats();
    let mut group = c.benchmark_group("merge");
    // Every merge rewrites all live records (`stats.live_bytes` bytes of them).
    group.throughput(Throughput::Elements(stats.num_keys));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    let value = [0xA5; VALUE_LEN];
    group.bench_function("1M-keys/half-overwritten", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                for n in (0..STORE_KEYS).step_by(2) {
                    db.write(&key(n), &value).unwrap();
                }
                let start = Instant::now();
                db.merge().unwrap();
                took += start.elapsed();
            }
            took
        })
    });
    group.finish();
    let after = db.stats();
    println!(
        "merge: {} live records, {} live bytes rewritten per merge; on disk after the last merge: \
         {} bytes in {} files",
        after.num_keys, after.live_bytes, after.total_bytes, after.num_data_files
    );
    db.close().unwrap();
}

criterion_group!(benches, bench_write, bench_read, bench_open, bench_merge);
criterion_main!(benches);
