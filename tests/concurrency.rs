//! Writers, readers and repeated merges on one shared handle: readers never see a value older
//! than one already acknowledged, never a torn or foreign value.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bitcask::Config;

const WRITERS: u64 = 3;
const KEYS_PER_WRITER: u64 = 64;
const READERS: u64 = 3;
const MIN_MERGES: u64 = 4;
const MIN_READS: u64 = 100;
const MIN_RUN: Duration = Duration::from_secs(3);
const MAX_RUN: Duration = Duration::from_secs(60);

fn value(key: u64, version: u64) -> Vec<u8> {
    let len = 16 + (key * 7 + version * 13) % 200;
    let mut v = Vec::with_capacity(len as usize);
    v.extend_from_slice(&key.to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    v.extend((16..len).map(|i| (key ^ version ^ i) as u8));
    v
}

/// Decodes and validates a value; `None` if it is not exactly what `value()` wrote.
fn parse(bytes: &[u8], key: u64) -> Option<u64> {
    let got_key = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let version = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    (got_key == key && value(key, version) == bytes).then_some(version)
}

#[test]
fn readers_see_acknowledged_writes_during_merges() {
    let dir = tempfile::tempdir().unwrap();
    let db = Config::new(dir.path())
        .data_file_limit(16 * 1024)
        .open()
        .unwrap();
    let acked: Arc<Vec<AtomicU64>> = Arc::new(
        (0..WRITERS * KEYS_PER_WRITER)
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let merges = Arc::new(AtomicU64::new(0));
    let reads: Arc<Vec<AtomicU64>> = Arc::new((0..READERS).map(|_| AtomicU64::new(0)).collect());
    // Keys some reader checked against an acknowledged version.
    let checked: Arc<Vec<AtomicBool>> = Arc::new(
        (0..WRITERS * KEYS_PER_WRITER)
            .map(|_| AtomicBool::new(false))
            .collect(),
    );
    let mut threads = Vec::new();

    for w in 0..WRITERS {
        let (db, acked, stop) = (db.clone(), acked.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            let mut version = 1;
            while !stop.load(Ordering::Relaxed) {
                for k in w * KEYS_PER_WRITER..(w + 1) * KEYS_PER_WRITER {
                    db.write(&k.to_le_bytes(), &value(k, version)).unwrap();
                    acked[k as usize].store(version, Ordering::SeqCst);
                }
                version += 1;
            }
        }));
    }
    for r in 0..READERS {
        let (db, acked, stop) = (db.clone(), acked.clone(), stop.clone());
        let (reads, checked) = (reads.clone(), checked.clone());
        threads.push(thread::spawn(move || {
            let mut k = r;
            while !stop.load(Ordering::Relaxed) {
                // A full period over the 192 keys (Hull-Dobell: 17 is coprime to 192, and 36 is
                // divisible by 2, 3 and 4), so every reader visits every key.
                k = (k * 37 + 17) % (WRITERS * KEYS_PER_WRITER);
                let floor = acked[k as usize].load(Ordering::SeqCst);
                let (copied, mapped) = (db.read(&k.to_le_bytes()), db.get(&k.to_le_bytes()));
                if floor == 0 {
                    continue;
                }
                let copied = parse(&copied.unwrap(), k).expect("torn or foreign value (read)");
                let mapped = parse(&mapped.unwrap().unwrap(), k).expect("torn value (get)");
                assert!(
                    copied >= floor,
                    "key {k}: read version {copied} < acked {floor}"
                );
                assert!(mapped >= copied, "key {k}: get went back in time");
                reads[r as usize].fetch_add(1, Ordering::Relaxed);
                checked[k as usize].store(true, Ordering::Relaxed);
            }
        }));
    }
    {
        let (db, stop, merges) = (db.clone(), stop.clone(), merges.clone());
        threads.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                db.merge().unwrap();
                merges.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(20));
            }
        }));
    }
    // Run for at least MIN_RUN and until every thread made enough progress. Progress is awaited,
    // not assumed from a time budget: merge fsyncs, and a loaded CI disk makes that slow.
    let enough = || {
        merges.load(Ordering::Relaxed) >= MIN_MERGES
            && reads.iter().all(|n| n.load(Ordering::Relaxed) >= MIN_READS)
            && checked.iter().all(|c| c.load(Ordering::Relaxed))
    };
    let started = Instant::now();
    while started.elapsed() < MIN_RUN || (!enough() && started.elapsed() < MAX_RUN) {
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        enough(),
        "too little progress in {MAX_RUN:?}: {} merges, reads per reader {:?}, {} keys checked",
        merges.load(Ordering::Relaxed),
        reads
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect::<Vec<_>>(),
        checked.iter().filter(|c| c.load(Ordering::Relaxed)).count()
    );

    // After everything, each key holds exactly its last acknowledged version, also after reopen.
    let check = |db: &bitcask::Database| {
        for k in 0..WRITERS * KEYS_PER_WRITER {
            let want = acked[k as usize].load(Ordering::SeqCst);
            assert_eq!(parse(&db.read(&k.to_le_bytes()).unwrap(), k), Some(want));
        }
    };
    check(&db);
    db.close().unwrap();
    check(
        &Config::new(dir.path())
            .data_file_limit(16 * 1024)
            .open()
            .unwrap(),
    );
}

/// `stats()` while other threads write, remove and rotate: its key count is the sum of the
/// files' live keys, and the file it calls active is the newest, in every snapshot.
#[test]
fn stats_agree_with_themselves_while_others_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::open_small(dir.path(), 2048);
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        for writer in 0..2u64 {
            let (db, stop) = (&db, &stop);
            scope.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = ((writer << 32) | (n % 500)).to_le_bytes();
                    if n % 7 == 3 {
                        db.remove(&key).unwrap();
                    } else {
                        db.write(&key, &[n as u8; 40]).unwrap();
                    }
                    n += 1;
                }
            });
        }
        /// Stops the writers however the checks end, so that a failed one does not hang.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        for _ in 0..1000 {
            let stats = db.stats();
            let live: u64 = stats.files.iter().map(|f| f.live_keys).sum();
            assert_eq!(stats.num_keys, live, "{stats:?}");
            let active: Vec<_> = stats.files.iter().filter(|f| f.active).collect();
            assert_eq!(active.len(), 1, "{stats:?}");
            assert_eq!(
                Some(active[0].file_id),
                stats.files.iter().map(|f| f.file_id).max()
            );
        }
    });
    db.close().unwrap();
}
