//! Kill -9 at random moments: a child process writes, removes and syncs (under
//! `SyncPolicy::Always`, and under `Never` with an explicit `sync()` now and then), with the
//! background merge running, and prints each operation that returned. The parent kills it with
//! SIGKILL at a random moment after it opened the store, reopens the store, and checks that its
//! contents are exactly the result of some prefix of the operations that includes every one that
//! returned: under every policy, no returned write or removal is lost (a process crash keeps the
//! page cache), no removed key comes back, nothing unwritten appears. Rounds continue on the same
//! directory, so recovery of recovered stores is tested too.
//!
//! `BITCASK_KILL9_ROUNDS` sets the number of rounds (default 200).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bitcask::{Config, MergePolicy, SyncPolicy};
use common::contents;

/// Operations between two explicit syncs in the `never` mode.
const SYNC_EVERY: u64 = 16;

/// A small deterministic generator (splitmix64): no dependency, same sequence everywhere.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

enum Op {
    Write(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
}

/// Operation number `i`: the same in parent and child.
fn op(i: u64) -> Op {
    let r = mix(i);
    let key = format!("key-{}", r % 48).into_bytes();
    if r.is_multiple_of(5) {
        Op::Remove(key)
    } else {
        let len = (r >> 8) % 300;
        let value = (0..len).map(|j| (i ^ j) as u8).collect();
        Op::Write(key, value)
    }
}

fn apply(model: &mut BTreeMap<Vec<u8>, Vec<u8>>, i: u64) {
    match op(i) {
        Op::Write(k, v) => {
            model.insert(k, v);
        }
        Op::Remove(k) => {
            model.remove(&k);
        }
    }
}

fn config(dir: &Path, policy: SyncPolicy) -> Config {
    let mut merge = MergePolicy::default();
    merge.check_interval = Duration::from_millis(2);
    Config::new(dir)
        .data_file_limit(2048)
        .sync_policy(policy)
        .merge_policy(merge)
}

#[test]
#[ignore = "the child process of kill_9_at_random_moments_loses_nothing_acknowledged"]
fn kill9_child() {
    let Ok(dir) = std::env::var("BITCASK_KILL9_DIR") else {
        return;
    };
    let always = std::env::var("BITCASK_KILL9_MODE").unwrap() == "always";
    let start: u64 = std::env::var("BITCASK_KILL9_START")
        .unwrap()
        .parse()
        .unwrap();
    let policy = if always {
        SyncPolicy::Always
    } else {
        SyncPolicy::Never
    };
    let db = config(Path::new(&dir), policy).open().unwrap();
    println!("ready");
    for i in start.. {
        match op(i) {
            Op::Write(k, v) => db.write(&k, &v).unwrap(),
            Op::Remove(k) => db.remove(&k).unwrap(),
        }
        if !always && i % SYNC_EVERY == SYNC_EVERY - 1 {
            db.sync().unwrap();
        }
        // Stdout is line-buffered: the line is in the pipe before the next operation starts.
        println!("ack {i} merges {}", db.stats().merges);
    }
}

/// What a child reported before it was killed.
struct ChildRun {
    /// The last op that returned.
    acked: Option<u64>,
    /// Merges its background thread had completed by then.
    merges: u64,
}

/// Runs one child from op `start` and kills it `delay` after it opened the store. Fails if the
/// child ended before the kill (a panic in it, say), showing its stderr.
fn run_child(dir: &Path, always: bool, start: u64, delay: Duration) -> ChildRun {
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "kill9_child", "--nocapture"])
        .env("BITCASK_KILL9_DIR", dir)
        .env(
            "BITCASK_KILL9_MODE",
            if always { "always" } else { "never" },
        )
        .env("BITCASK_KILL9_START", start.to_string())
        .stdout(Stdio::piped())
        .stderr(stderr.reopen().unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (opened, is_open) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut run = ChildRun {
            acked: None,
            merges: 0,
        };
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // At the line's end: a test harness run on one thread prints the test's name first.
            if line.ends_with("ready") {
                let _ = opened.send(());
            } else if let Some(ack) = line.strip_prefix("ack ") {
                let fields: Vec<u64> = ack
                    .split(' ')
                    .filter_map(|field| field.parse().ok())
                    .collect();
                if let [i, merges] = fields[..] {
                    (run.acked, run.merges) = (Some(i), merges);
                }
            }
        }
        run
    });
    // Timed from the open, so that a slow start on a loaded machine does not eat the delay.
    let _ = is_open.recv_timeout(Duration::from_secs(60));
    std::thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the child ended before the kill ({status}); its stderr:\n{}",
        std::fs::read_to_string(stderr.path()).unwrap_or_default()
    );
    reader.join().unwrap()
}

#[test]
fn kill_9_at_random_moments_loses_nothing_acknowledged() {
    let rounds: u64 = std::env::var("BITCASK_KILL9_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    let mut next = 0u64; // ops 0..next are in the store
    let (mut killed_with_acks, mut merges) = (0, 0);
    for round in 0..rounds {
        let always = round % 2 == 0;
        let delay = Duration::from_millis(5 + mix(round ^ 0xABCD) % 40);
        let child = run_child(dir.path(), always, next, delay);
        let acked = child.acked;
        merges += child.merges;
        // Ops up to `acked` must be there; the one the child may have started after it may be
        // too.
        let must = acked.map_or(next, |a| a + 1);
        let window = 1;
        let db = config(dir.path(), SyncPolicy::Never)
            .background_merge(false)
            .open()
            .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let found = contents(&db);
        let mut candidate = model.clone();
        for i in next..must {
            apply(&mut candidate, i);
        }
        let mut matched = None;
        for end in must..=must + window {
            if candidate == found {
                matched = Some(end);
                break;
            }
            apply(&mut candidate, end);
        }
        let Some(end) = matched else {
            panic!(
                "round {round} ({}): store is not the result of ops 0..n for any n in {must}..={}",
                if always { "always" } else { "never" },
                must + window
            );
        };
        killed_with_acks += u64::from(acked.is_some());
        model = found;
        next = end;
        db.close().unwrap();
    }
    assert!(
        killed_with_acks * 2 > rounds,
        "most children should have acknowledged something before the kill ({killed_with_acks}/{rounds})"
    );
    // Kills must also have struck stores whose background thread merges (2 ms checks, 2 KiB
    // files), not only stores that never merged.
    assert!(merges > 0, "no child completed a merge in {rounds} rounds");
}
