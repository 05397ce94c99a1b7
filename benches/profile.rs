//! Single-thread hot loops of random `get` and of no-sync `write`, and opening a merged store
//! (hint files), for profilers. `cargo bench --bench profile` runs all three and prints timings. To profile one phase only, run the
//! binary under callgrind and collect inside that phase's function:
//!
//! ```text
//! valgrind --tool=callgrind --dump-instr=no --toggle-collect='*get_phase*' \
//!     target/release/deps/profile-HASH get
//! callgrind_annotate --inclusive=yes callgrind.out.PID
//! ```
//!
//! (`write_phase` for writes, `open_phase` with argument `open` for opening.) `docs/benchmarks.md` has the findings.

use std::time::Instant;

use bitcask::{Config, Database, SyncPolicy};

const KEYS: u64 = 200_000;
const OPS: u64 = 500_000;
const VALUE_LEN: usize = 100;

fn key(n: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&n.to_be_bytes());
    key
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// `OPS` zero-copy gets of random existing keys.
#[inline(never)]
fn get_phase(db: &Database) -> usize {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut total = 0;
    for _ in 0..OPS {
        let value = db.get(&key(next(&mut state) % KEYS)).unwrap().unwrap();
        total += value[0] as usize;
    }
    total
}

/// `OPS` writes of 100 B values over `KEYS` keys, no sync.
#[inline(never)]
fn write_phase(db: &Database) {
    let value = [0x5A; VALUE_LEN];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..OPS {
        db.write(&key(next(&mut state) % KEYS), &value).unwrap();
    }
}

/// Opens (and closes) a store of `KEYS` keys that `merge()` left with hint files.
#[inline(never)]
fn open_phase(dir: &std::path::Path) -> u64 {
    let db = open(dir);
    let keys = db.stats().num_keys;
    db.close().unwrap();
    keys
}

fn open(dir: &std::path::Path) -> Database {
    Config::new(dir)
        .sync_policy(SyncPolicy::Never)
        .background_merge(false)
        .open()
        .unwrap()
}

fn main() {
    let phases: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a == "get" || a == "write" || a == "open")
        .collect();
    let run = |phase: &str| phases.is_empty() || phases.iter().any(|p| p == phase);
    if run("write") {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let start = Instant::now();
        write_phase(&db);
        let took = start.elapsed();
        println!(
            "write (no sync, 100 B): {:.0} ns/op",
            took.as_nanos() as f64 / OPS as f64
        );
        db.close().unwrap();
    }
    if run("get") {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        for n in 0..KEYS {
            db.write(&key(n), &[0x5A; VALUE_LEN]).unwrap();
        }
        db.merge().unwrap();
        let start = Instant::now();
        let total = get_phase(&db);
        let took = start.elapsed();
        println!(
            "get (zero-copy, sealed files, 1 thread): {:.0} ns/op (checksum {total})",
            took.as_nanos() as f64 / OPS as f64
        );
        db.close().unwrap();
    }
    if run("open") {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        for n in 0..KEYS {
            db.write(&key(n), &[0x5A; VALUE_LEN]).unwrap();
        }
        db.merge().unwrap();
        db.close().unwrap();
        let start = Instant::now();
        let keys = open_phase(dir.path());
        println!(
            "open+close of {keys} keys with hint files: {:.1?}",
            start.elapsed()
        );
    }
}
