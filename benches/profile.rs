//! Focused phases for profilers and for measurements that need two variants run alternately.
//! `cargo bench --bench profile` runs them all and prints timings; name phases to run only those:
//!
//! - `get`: random zero-copy gets from sealed files after a merge; `get_active`: the same from
//!   the active file right after a fill;
//! - `write`: no-sync writes; `open`: opening a merged store (hint files, unless deleted from a
//!   kept `BITCASK_PROFILE_DIR` store, which times a scan);
//! - `always`: fsynced writes from 1 thread and from 4 (group-commit polling on and off), in
//!   rotation, with CPU time and minor page faults per write;
//! - `stall`: the slowest get right after a merge;
//! - `huge_pages`: gets from a merged file cached in huge pages against the same file in small
//!   pages;
//! - `scaling`: gets from 1 and 2 threads sharing one handle, alternately in pairs;
//! - `fsync_device`: this disk's own `fdatasync` rate from 1, 2 and 4 threads, with no store,
//!   and simple group commits from 4 threads: rounds of 4 appends and one `fdatasync`, from
//!   1 thread and from 4 threads waiting for each other in three ways;
//! - `memory_latency`: one dependent random memory access over 8 and 200 MiB, with no store.
//!
//! `BITCASK_PROFILE_KEYS` sets the number of keys (200,000), `BITCASK_PROFILE_OPS` the operations
//! per get or write phase (500,000), and `BITCASK_PROFILE_DIR` keeps the store `open` opens
//! (filled on the first run only). To profile one phase only, run the binary
//! under callgrind and collect inside that phase's function:
//!
//! ```text
//! valgrind --tool=callgrind --dump-instr=no --toggle-collect='*get_phase*' \
//!     target/release/deps/profile-HASH get
//! callgrind_annotate --inclusive=yes callgrind.out.PID
//! ```
//!
//! (`write_phase` for writes, `open_phase` with argument `open` for opening.) `docs/benchmarks.md` has the findings.

use std::time::{Duration, Instant};

use bitcask::{Config, Database, SyncPolicy};

/// Operations per get or write phase: `BITCASK_PROFILE_OPS`, or 500,000.
fn ops() -> u64 {
    std::env::var("BITCASK_PROFILE_OPS")
        .ok()
        .and_then(|ops| ops.parse().ok())
        .unwrap_or(500_000)
}
const VALUE_LEN: usize = 100;

fn keys() -> u64 {
    std::env::var("BITCASK_PROFILE_KEYS")
        .ok()
        .and_then(|keys| keys.parse().ok())
        .unwrap_or(200_000)
}

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

/// `ops()` zero-copy gets of random existing keys.
#[inline(never)]
fn get_phase(db: &Database) -> usize {
    get_from(db, 0x9E37_79B9_7F4A_7C15)
}

/// Gets per second from `threads` threads sharing `db`, each doing `ops()` random gets from
/// its own random sequence.
fn get_rate(db: &Database, threads: u64) -> f64 {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || get_from(db, 0x9E37_79B9_7F4A_7C15 ^ (t + 1)));
        }
    });
    (threads * ops()) as f64 / start.elapsed().as_secs_f64()
}

/// `ops()` zero-copy gets of random existing keys, starting the random sequence at `state`.
fn get_from(db: &Database, mut state: u64) -> usize {
    let keys = keys();
    let mut total = 0;
    for _ in 0..ops() {
        let value = db.get(&key(next(&mut state) % keys)).unwrap().unwrap();
        total += value[0] as usize;
    }
    total
}

/// Reads from 2 threads against 1 on a merged store, run alternately so that both see the same
/// machine: 5 pairs, each pair's ratio, and the medians.
fn scaling_phase() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled(dir.path(), true);
    get_rate(&db, 1); // warm the page cache and the keydir
    let (mut one, mut two, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let (a, b) = (get_rate(&db, 1), get_rate(&db, 2));
        println!("get 1 thread {a:.0}/s, 2 threads {b:.0}/s ({:.2}x)", b / a);
        one.push(a);
        two.push(b);
        ratios.push(b / a);
    }
    println!(
        "get, medians of 5 alternating pairs: 1 thread {:.0}/s, 2 threads {:.0}/s; median ratio {:.2}x",
        median(&mut one),
        median(&mut two),
        median(&mut ratios)
    );
    db.close().unwrap();
}

/// What the disk under the temporary directory gives a log without any store: 137-byte appends
/// (a record of a 16 B key and a 100 B value), each followed by `fdatasync`, from 1, 2 and 4
/// threads appending to one file concurrently (each thread syncs its own append; no group
/// commit), into a file extended with `fallocate` as the active file is; and from 1 thread into
/// a file whose blocks were written with zeros first. Medians of 3 rounds of 1.5 s.
#[cfg(target_os = "linux")]
fn fsync_device_phase() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rates, mut zeroed): ([Vec<f64>; 3], Vec<f64>) = Default::default();
    for _ in 0..3 {
        for (slot, threads) in [1, 2, 4].into_iter().enumerate() {
            rates[slot].push(on_new_log(dir.path(), false, |f| {
                fsynced_appends(f, threads)
            }));
        }
        zeroed.push(on_new_log(dir.path(), true, |f| fsynced_appends(f, 1)));
    }
    let [one, two, four] = rates.each_mut().map(|r| median(r));
    println!(
        "fdatasync'ed 137 B appends, no store, medians of 3: fallocated file 1 thread {one:.0}/s, 2 threads {two:.0}/s ({:.2}x), 4 threads {four:.0}/s ({:.2}x); zero-filled file 1 thread {:.0}/s",
        two / one,
        four / one,
        median(&mut zeroed)
    );
    lockstep_rounds(dir.path(), one);
}

/// What simple group commits from 4 writers get on this machine, with no store: rounds of four
/// 137 B appends and one `fdatasync`, made by 1 thread appending all four itself (no
/// coordination at all), and by 4 threads appending one each, which wait for each other at a
/// `Barrier` before and after the fsync, or where the last of the four to append fsyncs and
/// wakes the others ([`last_one_syncs`]: one wake-up a round, the protocol with the least
/// coordination of these, though not a bound on every protocol). All against `one`, 1 thread's
/// rate with one fsync per append.
#[cfg(target_os = "linux")]
fn lockstep_rounds(dir: &std::path::Path, one: f64) {
    let ways: [fn(&std::fs::File) -> f64; 4] = [
        |file| rounds_of_four(file, 1),
        |file| rounds_of_four(file, 4),
        |file| last_one_syncs(file, false),
        |file| last_one_syncs(file, true),
    ];
    let mut rates: [Vec<f64>; 4] = Default::default();
    for _ in 0..3 {
        for (way, rates) in ways.iter().zip(&mut rates) {
            rates.push(on_new_log(dir, false, way));
        }
    }
    let [alone, lockstep, sleep, poll] = rates.each_mut().map(|r| median(r));
    println!(
        "rounds of 4 appends and one fdatasync, medians of 3, appends/s (x 1 thread's one per fsync): 1 thread appending all 4 {alone:.0} ({:.2}x); 4 threads at a barrier {lockstep:.0} ({:.2}x), last one syncs and wakes sleepers {sleep:.0} ({:.2}x), or pollers {poll:.0} ({:.2}x)",
        alone / one,
        lockstep / one,
        sleep / one,
        poll / one,
    );
}

/// As [`rounds_of_four`] from 4 threads, but the last of the four to append fsyncs and then
/// wakes the other three, which wait for that by `poll`ing a counter and yielding the CPU, or by
/// sleeping on a condition variable: one wake-up per round, as in group commit.
#[cfg(target_os = "linux")]
fn last_one_syncs(file: &std::fs::File, poll: bool) -> f64 {
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Condvar, Mutex};
    let (next_offset, appended) = (AtomicU64::new(0), AtomicU64::new(0));
    let (synced, stop) = (AtomicU64::new(0), AtomicBool::new(false));
    let (lock, rounds_done) = (Mutex::new(()), Condvar::new());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let mut round = 0;
                while !stop.load(Ordering::Acquire) {
                    let at = next_offset.fetch_add(137, Ordering::Relaxed);
                    file.write_at(&[0x5A; 137], at).unwrap();
                    round += 1;
                    if appended.fetch_add(1, Ordering::AcqRel) + 1 == 4 * round {
                        file.sync_data().unwrap();
                        stop.store(start.elapsed().as_secs_f64() >= 1.5, Ordering::Release);
                        let _guard = lock.lock().unwrap();
                        synced.store(round, Ordering::Release);
                        rounds_done.notify_all();
                    } else if poll {
                        while synced.load(Ordering::Acquire) < round {
                            std::thread::yield_now();
                        }
                    } else {
                        let mut guard = lock.lock().unwrap();
                        while synced.load(Ordering::Acquire) < round {
                            guard = rounds_done.wait(guard).unwrap();
                        }
                    }
                }
            });
        }
    });
    (4 * synced.load(Ordering::Relaxed)) as f64 / start.elapsed().as_secs_f64()
}

/// Appends per second over 1.5 s of rounds of four 137 B appends and one `fdatasync`, the four
/// made by `threads` threads (1 or 4) that meet at a barrier before and after each fsync.
#[cfg(target_os = "linux")]
fn rounds_of_four(file: &std::fs::File, threads: u64) -> f64 {
    use std::os::unix::fs::FileExt;
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let per_thread = 4 / threads;
    let (next_offset, rounds) = (AtomicU64::new(0), AtomicU64::new(0));
    let (barrier, stop) = (Barrier::new(threads as usize), AtomicBool::new(false));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    for _ in 0..per_thread {
                        let at = next_offset.fetch_add(137, Ordering::Relaxed);
                        file.write_at(&[0x5A; 137], at).unwrap();
                    }
                    if barrier.wait().is_leader() {
                        file.sync_data().unwrap();
                        rounds.fetch_add(1, Ordering::Relaxed);
                        stop.store(start.elapsed().as_secs_f64() >= 1.5, Ordering::Relaxed);
                    }
                    barrier.wait();
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            });
        }
    });
    (4 * rounds.load(Ordering::Relaxed)) as f64 / start.elapsed().as_secs_f64()
}

#[cfg(not(target_os = "linux"))]
fn fsync_device_phase() {
    println!("fsync_device: Linux only (it uses fallocate)");
}

/// What `measure` returns on a new log file in `dir` ([`log_file`]), which is deleted after.
#[cfg(target_os = "linux")]
fn on_new_log(
    dir: &std::path::Path,
    zero_filled: bool,
    measure: impl FnOnce(&std::fs::File) -> f64,
) -> f64 {
    let path = dir.join("log");
    let rate = measure(&log_file(&path, zero_filled));
    std::fs::remove_file(&path).unwrap();
    rate
}

/// A new 64 MiB file at `path`, allocated with `fallocate` or written with zeros, and synced.
#[cfg(target_os = "linux")]
fn log_file(path: &std::path::Path, zero_filled: bool) -> std::fs::File {
    const LEN: usize = 64 << 20;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .unwrap();
    if zero_filled {
        std::io::Write::write_all(&mut file, &vec![0; LEN]).unwrap();
    } else {
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, LEN as u64).unwrap();
    }
    file.sync_all().unwrap();
    file
}

/// Appends of 137 B, each followed by `fdatasync`, from `threads` threads into `file` for
/// 1.5 s; returns appends per second.
#[cfg(target_os = "linux")]
fn fsynced_appends(file: &std::fs::File, threads: u64) -> f64 {
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    let (next_offset, appends) = (AtomicU64::new(0), AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while start.elapsed().as_secs_f64() < 1.5 {
                    let at = next_offset.fetch_add(137, Ordering::Relaxed);
                    file.write_at(&[0x5A; 137], at).unwrap();
                    file.sync_data().unwrap();
                    appends.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    appends.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `ops()` writes of 100 B values over `keys()` keys, no sync.
#[inline(never)]
fn write_phase(db: &Database) {
    let value = [0x5A; VALUE_LEN];
    let keys = keys();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..ops() {
        db.write(&key(next(&mut state) % keys), &value).unwrap();
    }
}

/// Opens a store of `keys()` keys that `merge()` left with hint files.
#[inline(never)]
fn open_phase(dir: &std::path::Path) -> Database {
    open(dir)
}

fn open(dir: &std::path::Path) -> Database {
    Config::new(dir)
        .sync_policy(SyncPolicy::Never)
        .background_merge(false)
        .open()
        .unwrap()
}

/// A store of `keys()` keys with 100 B values, merged (every value in a sealed file) or not
/// (every value in the active file).
fn filled(dir: &std::path::Path, merged: bool) -> Database {
    let db = open(dir);
    for n in 0..keys() {
        db.write(&key(n), &[0x5A; VALUE_LEN]).unwrap();
    }
    if merged {
        db.merge().unwrap();
    }
    db
}

fn time_gets(db: &Database, what: &str) {
    let start = Instant::now();
    let total = get_phase(db);
    let took = start.elapsed();
    println!(
        "get (zero-copy, {what}, 1 thread): {:.0} ns/op (checksum {total})",
        took.as_nanos() as f64 / ops() as f64
    );
}

/// This machine's latency of one dependent random memory access, for comparison with `get`,
/// which makes two (the keydir bucket, then the record): a pointer chase through one random
/// cycle over `mb` MiB of anonymous memory, one pointer per 64-byte line, on whatever pages the
/// allocator gets (4 KiB ones where transparent huge pages are off or `madvise`).
fn memory_latency_phase() {
    const LINE_WORDS: usize = 8;
    for mb in [8usize, 200] {
        let lines = mb * (1 << 20) / 64;
        // Sattolo's algorithm: a random permutation that is one cycle through every line.
        let mut order: Vec<usize> = (0..lines).collect();
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        for i in (1..lines).rev() {
            let j = (next(&mut state) % i as u64) as usize;
            order.swap(i, j);
        }
        let mut memory = vec![[0usize; LINE_WORDS]; lines];
        for (line, &successor) in order.iter().enumerate() {
            memory[line][0] = successor;
        }
        drop(order);
        let steps = 5_000_000;
        let mut at = 0;
        let start = Instant::now();
        for _ in 0..steps {
            at = memory[at][0];
        }
        let took = start.elapsed();
        std::hint::black_box(at);
        println!(
            "dependent random access over {mb} MiB: {:.1} ns",
            took.as_nanos() as f64 / steps as f64
        );
    }
}

/// What one run of [`always_phase`] measured.
struct AlwaysRun {
    writes_per_sec: f64,
    /// CPU time of the whole process (user + system) per write.
    cpu_us_per_write: f64,
    /// Minor page faults of the whole process per write.
    faults_per_write: f64,
}

/// Writes of 100 B values under `SyncPolicy::Always` from `threads` threads sharing one handle
/// for `seconds`, with group-commit polling up to `poll` (`Config::commit_poll`).
fn always_phase(threads: u64, seconds: f64, poll: Duration) -> AlwaysRun {
    let dir = tempfile::tempdir().unwrap();
    let db = Config::new(dir.path())
        .sync_policy(SyncPolicy::Always)
        .background_merge(false)
        .commit_poll(poll)
        .open()
        .unwrap();
    let (cpu_before, faults_before) = (process_cpu_time(), process_minor_faults());
    let start = Instant::now();
    let writes: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let db = &db;
                scope.spawn(move || {
                    let mut n = 0;
                    while start.elapsed().as_secs_f64() < seconds {
                        db.write(&key((t << 32) | (n % 1000)), &[0x5A; VALUE_LEN])
                            .unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let took = start.elapsed();
    let cpu = process_cpu_time() - cpu_before;
    let faults = process_minor_faults() - faults_before;
    db.close().unwrap();
    AlwaysRun {
        writes_per_sec: writes as f64 / took.as_secs_f64(),
        cpu_us_per_write: cpu.as_secs_f64() * 1e6 / writes as f64,
        faults_per_write: faults as f64 / writes as f64,
    }
}

/// User plus system CPU time of this process so far, from `/proc/self/stat` (Linux), whose
/// fields 14 and 15 count clock ticks of 1/100 s (`USER_HZ`, 100 on every Linux ABI).
fn process_cpu_time() -> Duration {
    Duration::from_millis(process_stat_fields(14, 2) * 10)
}

/// Minor page faults of this process so far, from `/proc/self/stat` (Linux; 0 elsewhere).
fn process_minor_faults() -> u64 {
    process_stat_fields(10, 1) // minflt
}

/// The sum of `count` numeric fields of `/proc/self/stat` from field `first` (1-based, as
/// `proc(5)` numbers them; `first` > 2). 0 where there is no such file.
fn process_stat_fields(first: usize, count: usize) -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after it follow its ')'.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name
        .split_whitespace()
        .skip(first - 3) // the first field after the name is field 3
        .take(count)
        .filter_map(|field| field.parse::<u64>().ok())
        .sum()
}

/// Writes under `SyncPolicy::Always`: 1 thread, then 4 threads with group-commit polling at its
/// default and off, in rotation (5 rounds of 2 s runs), so that all three see the same disk
/// weather. Prints medians, the ratio of each 4-thread variant to 1 thread, and CPU time.
fn always_comparison() {
    let variants = [
        ("1 thread", 1, bitcask::DEFAULT_COMMIT_POLL),
        ("4 threads, polling", 4, bitcask::DEFAULT_COMMIT_POLL),
        ("4 threads, no polling", 4, Duration::ZERO),
    ];
    let mut runs: Vec<Vec<AlwaysRun>> = variants.iter().map(|_| Vec::new()).collect();
    for _ in 0..5 {
        for (runs, &(_, threads, poll)) in runs.iter_mut().zip(&variants) {
            runs.push(always_phase(threads, 2.0, poll));
        }
    }
    let mut one_thread = 0.0;
    println!("writes under SyncPolicy::Always (100 B), medians of 5 runs of 2 s each:");
    for (runs, &(name, _, _)) in runs.iter().zip(&variants) {
        let mut rates: Vec<f64> = runs.iter().map(|r| r.writes_per_sec).collect();
        let mut cpu: Vec<f64> = runs.iter().map(|r| r.cpu_us_per_write).collect();
        let mut faults: Vec<f64> = runs.iter().map(|r| r.faults_per_write).collect();
        let rate = median(&mut rates);
        if one_thread == 0.0 {
            one_thread = rate;
        }
        println!(
            "  {name}: {rate:.0}/s ({:.2}x 1 thread), CPU {:.1} µs and {:.2} minor page faults per write; runs {:?}",
            rate / one_thread,
            median(&mut cpu),
            median(&mut faults),
            rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
        );
    }
}

/// The slowest single `get` among the first `ops()` gets right after a `merge()` of `keys()`
/// keys. Whichever thread runs the epoch collector first after the swap drops the retired file
/// set; before `bitcask-retire` did that, it was a reader, which then unmapped and closed the
/// merged-away files itself.
fn stall_phase() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled(dir.path(), true);
    let keys = keys();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let (mut slowest, mut over_1ms) = (std::time::Duration::ZERO, 0);
    for _ in 0..ops() {
        let start = Instant::now();
        let value = db.get(&key(next(&mut state) % keys)).unwrap().unwrap();
        std::hint::black_box(value[0]);
        drop(value);
        let took = start.elapsed();
        slowest = slowest.max(took);
        over_1ms += u32::from(took.as_millis() >= 1);
    }
    println!(
        "slowest get right after merge(): {:.2} ms ({over_1ms} of {} gets took 1 ms or more)",
        slowest.as_secs_f64() * 1e3,
        ops()
    );
    db.close().unwrap();
}

/// Random gets from a merged store whose data file was written in 2 MiB-aligned writes, so that
/// the page cache may hold it in huge folios and map it with huge pages (ext4 on recent Linux),
/// against the same store with its data file written in 4 KiB writes (small pages). 10 blocks
/// of `ops()` gets each, alternating in one process (each store first in every other round).
/// Merge itself writes through a 1 MiB buffer: `docs/benchmarks.md` (fifth round) says why.
fn huge_pages_phase() {
    let (huge, small) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (dir, write_size) in [(&huge, 2 << 20), (&small, 4096)] {
        filled(dir.path(), true).close().unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "data") {
                rewrite_in_writes_of(&path, write_size);
            }
        }
    }
    let (huge_dir, small_dir) = (huge.path(), small.path());
    let (huge, small) = (open(huge_dir), open(small_dir));
    let (mut on_huge, mut on_small) = (Vec::new(), Vec::new());
    for round in 0..10 {
        let mut order = [(&huge, &mut on_huge), (&small, &mut on_small)];
        if round % 2 == 1 {
            order.reverse();
        }
        for (db, times) in order {
            let start = Instant::now();
            std::hint::black_box(get_phase(db));
            times.push(start.elapsed().as_nanos() as f64 / ops() as f64);
        }
    }
    println!(
        "get after merge, medians of 10 alternating blocks: 2 MiB writes {:.0} ns, 4 KiB writes {:.0} ns (huge-mapped: {} kB and {} kB)",
        median(&mut on_huge),
        median(&mut on_small),
        huge_mapped_under(huge_dir),
        huge_mapped_under(small_dir),
    );
}

/// Writes `path` again, same bytes, `write_size` bytes per write from offset 0.
fn rewrite_in_writes_of(path: &std::path::Path, write_size: usize) {
    use std::io::Write;
    let bytes = std::fs::read(path).unwrap();
    std::fs::remove_file(path).unwrap();
    let mut file = std::fs::File::create(path).unwrap();
    for block in bytes.chunks(write_size) {
        file.write_all(block).unwrap();
    }
    file.sync_all().unwrap();
}

/// `FilePmdMapped` summed over this process's maps of files under `dir` (Linux; 0 elsewhere).
fn huge_mapped_under(dir: &std::path::Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut in_dir = false;
    let mut total = 0;
    for line in smaps.lines() {
        if let Some(kb) = line.strip_prefix("FilePmdMapped:") {
            if in_dir {
                total += kb
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0);
            }
        } else if is_map_header(line) {
            // Address range, permissions, offset, device, inode, path.
            in_dir = line
                .split_whitespace()
                .nth(5)
                .is_some_and(|path| std::path::Path::new(path).starts_with(dir));
        }
    }
    total
}

/// Whether a line of `/proc/self/smaps` starts a map (`7f52...-7f52... r--s ...`).
fn is_map_header(line: &str) -> bool {
    line.split_whitespace().next().is_some_and(|range| {
        range.contains('-') && range.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
    })
}

fn main() {
    let phases: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| {
            [
                "get",
                "get_active",
                "write",
                "open",
                "always",
                "stall",
                "huge_pages",
                "scaling",
                "fsync_device",
                "memory_latency",
            ]
            .contains(&a.as_str())
        })
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
            took.as_nanos() as f64 / ops() as f64
        );
        db.close().unwrap();
    }
    if run("get") {
        let dir = tempfile::tempdir().unwrap();
        let db = filled(dir.path(), true);
        time_gets(&db, "sealed files");
        db.close().unwrap();
    }
    if run("stall") {
        stall_phase();
    }
    if run("huge_pages") {
        huge_pages_phase();
    }
    if run("scaling") {
        scaling_phase();
    }
    if run("fsync_device") {
        fsync_device_phase();
    }
    if run("memory_latency") {
        memory_latency_phase();
    }
    if run("get_active") {
        let dir = tempfile::tempdir().unwrap();
        let db = filled(dir.path(), false);
        time_gets(&db, "active file");
        db.close().unwrap();
    }
    if run("always") {
        always_comparison();
    }
    if run("open") {
        // With `BITCASK_PROFILE_DIR`, the store is filled once and kept, so that a profiler
        // started on a second run sees only the open.
        let temp = tempfile::tempdir().unwrap();
        let dir = std::env::var_os("BITCASK_PROFILE_DIR")
            .map_or_else(|| temp.path().to_path_buf(), std::path::PathBuf::from);
        if !dir.join("LOCK").exists() {
            filled(&dir, true).close().unwrap();
        }
        let start = Instant::now();
        let db = open_phase(&dir);
        let opened = start.elapsed();
        let keys = db.stats().num_keys;
        let start = Instant::now();
        db.close().unwrap();
        drop(db);
        // A store kept in `BITCASK_PROFILE_DIR` may have had its hint files deleted, to time a scan.
        let hints = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|entry| {
                entry
                    .as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|ext| ext == "hint"))
            })
            .count();
        println!(
            "open of {keys} keys, {hints} hint files: {opened:.1?} (then close: {:.1?})",
            start.elapsed()
        );
    }
}
