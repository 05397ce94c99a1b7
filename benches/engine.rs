//! Single-thread throughput of the basic operations (the comparison with other stores lives in
//! the benchmarks issue). `cargo bench --bench engine`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use bitcask::Config;

const KEYS: u64 = 100_000;

fn key(n: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&n.to_be_bytes());
    key
}

fn bench_write(c: &mut Criterion) {
    let mut group = c.benchmark_group("write");
    for value_len in [100usize, 1024, 16 * 1024] {
        let dir = tempfile::tempdir().unwrap();
        let db = Config::new(dir.path()).open().unwrap();
        let value = vec![0x5A; value_len];
        let mut n = 0u64;
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{value_len}B/no-sync"), |b| {
            b.iter(|| {
                n += 1;
                db.write(&key(n % KEYS), &value).unwrap();
            })
        });
    }
    group.finish();
}

fn bench_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = Config::new(dir.path())
        .data_file_limit(16 << 20)
        .open()
        .unwrap();
    for n in 0..KEYS {
        db.write(&key(n), &[0x5A; 100]).unwrap();
    }
    db.merge().unwrap();
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    group.bench_function("get/zero-copy", |b| {
        b.iter_batched(
            || {
                n = (n + 7919) % KEYS;
                key(n)
            },
            |k| db.get(&k).unwrap().unwrap().len(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("read/copy", |b| {
        b.iter_batched(
            || {
                n = (n + 7919) % KEYS;
                key(n)
            },
            |k| db.read(&k).unwrap().len(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_write, bench_read);
criterion_main!(benches);
