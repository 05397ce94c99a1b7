//! Group commit: makes appended records durable with as few fsyncs as possible.
//!
//! Writers append under the writer lock and then wait here, outside it, until their seq is durable.
//! The first waiter becomes the leader: it reads the active file and the last appended seq, fsyncs
//! outside the writer lock (through the fsync gate, [`GroupCommit::fsync_active`], which every
//! fsync of the active file by an open handle passes), and publishes the new durable seq; everyone
//! who appended before that read is covered by the one fsync, and writers that arrive meanwhile
//! queue for the next one. Records in earlier files are already durable: rotation fsyncs a file
//! before sealing it.
//!
//! Gathering: when the last fsync covered several records, the next leader first waits (a
//! bounded spin that yields the CPU) until as many records are waiting, so that the writers the
//! last fsync released can append again and share this one. Without it, batches alternate
//! between "the one writer that arrived during the fsync" and "everyone else": 4 writers got
//! only 2.3x one writer's rate. The wait is capped at half the last fsync's duration, and a
//! lone writer never waits (its batch is 1).
//!
//! Polling: a follower (any thread waiting for a round another thread leads: a writer, a
//! `sync()` call, merge, the flush thread) polls for the round's end, yielding the CPU, instead
//! of sleeping on the condition variable, when the last round (gathering and fsync) took at most
//! `Config::commit_poll`. Waking a sleeping thread took tens of microseconds on a virtual
//! machine whose CPUs went idle during the fsync, time in which the disk sat idle too: 4 writers
//! waited 46 µs between fsyncs of 3.3-3.6 records, against 11 µs between fsyncs of 4.0 records
//! with polling (`docs/benchmarks.md`, seventh round). A poll ends when the round does, or after
//! the limit; the follower then rechecks under the lock, and if the round is still running it
//! sleeps (it polls each round at most once).

use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::error::{Error, IoContext, Result};
use crate::format::FileId;
use crate::format::fsync_failure::FsyncFailure;
use crate::format::header::HEADER_LEN;
use crate::io::layout::Layout;
use crate::io::vfs::{FileHandle, Vfs};
use crate::recovery::fsync_failure;
use crate::sync::{Condvar, Mutex, MutexGuard, Ordering, ProtocolBreak, broken, yield_now};

#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    synced: Condvar,
    /// The highest seq any writer is waiting for (read by a gathering leader without the lock;
    /// not part of the protocol, so not modelled by loom).
    waiting_upto: std::sync::atomic::AtomicU64,
    /// Mirrors `State::rounds`, for polling followers (read without the lock).
    rounds: crate::sync::AtomicU64,
    /// Held around every fsync of the active file (see [`GroupCommit::fsync_active`]).
    active_fsync: Mutex<FsyncGate>,
}

/// What the fsync gate knows.
#[derive(Debug, Default)]
struct FsyncGate {
    /// The first failed fsync's error.
    failed: Option<String>,
    /// `close` ran its fsync, the last one (see [`GroupCommit::fsync_active_last`]).
    closed: bool,
    /// The newest data file an fsync succeeded on, and how many of its bytes that fsync covered.
    durable: Option<(FileId, u64)>,
}

impl FsyncGate {
    fn synced(&mut self, id: FileId, len: u64) {
        match &mut self.durable {
            Some((durable_id, durable_len)) if *durable_id == id => {
                *durable_len = (*durable_len).max(len);
            }
            Some((durable_id, _)) if *durable_id > id => {}
            _ => self.durable = Some((id, len)),
        }
    }

    /// What to write down after a failed fsync of file `id`: how much of it the last fsync of
    /// it covered, or its header (synced when the file was created) if none did. Nothing if a
    /// newer file was synced: rotation fsynced all of this one before that.
    fn failure(&self, id: FileId) -> Option<FsyncFailure> {
        let durable_len = match self.durable {
            Some((durable_id, len)) if durable_id == id => len,
            Some((durable_id, _)) if durable_id > id => return None,
            _ => HEADER_LEN as u64,
        };
        Some(FsyncFailure {
            file_id: id,
            durable_len,
        })
    }
}

/// One fsync of the active file: the file, how much of it had been written when the fsync was
/// asked for, and where a failure is written down for the next open.
pub(crate) struct ActiveFsync<'a> {
    pub file: FileHandle,
    pub id: FileId,
    pub len: u64,
    pub fs: &'a dyn Vfs,
    pub layout: &'a Layout,
}

#[derive(Debug, Default)]
struct State {
    /// Every record with a seq up to this is durable.
    durable_seq: u64,
    /// A leader is fsyncing now.
    leader_active: bool,
    /// An fsync failed: nothing later can be promised durable.
    failed: Option<String>,
    /// Records the last fsync made durable, and how long the fsync took: what the next leader
    /// gathers, and for how long at most.
    last_batch: u64,
    last_sync: Duration,
    /// How long the last successful round took from the leader's start to the end of its fsync
    /// (gathering included): what a polling follower may have to wait. `None` until one ran.
    last_round: Option<Duration>,
    /// Rounds finished so far, whether their fsync succeeded or failed.
    rounds: u64,
}

impl GroupCommit {
    /// Group commit for a store whose records up to `seq` are all durable (open syncs what it
    /// recovers), as are the first `active_len` bytes of the active file `active`.
    pub(crate) fn durable_up_to(seq: u64, active: FileId, active_len: u64) -> Self {
        GroupCommit {
            state: Mutex::new(State {
                durable_seq: seq,
                ..State::default()
            }),
            active_fsync: Mutex::new(FsyncGate {
                failed: None,
                closed: false,
                durable: Some((active, active_len)),
            }),
            ..GroupCommit::default()
        }
    }

    /// Returns once every record up to `seq` is durable.
    pub(crate) fn wait_durable(&self, engine: &Engine, seq: u64) -> Result<()> {
        self.waiting_upto.fetch_max(seq, Ordering::Relaxed);
        let poll_limit = engine.config.commit_poll;
        let mut polled_round = None;
        let mut state = self.state.lock();
        loop {
            if state.durable_seq >= seq {
                return Ok(());
            }
            if let Some(reason) = &state.failed {
                return Err(Error::Poisoned(reason.clone()));
            }
            if !state.leader_active {
                self.lead(engine, &mut state)?;
                continue;
            }
            if broken(ProtocolBreak::FollowerSkipsWait) {
                return Ok(());
            }
            let round = state.rounds;
            if polled_round != Some(round) && should_poll(&state, poll_limit) {
                polled_round = Some(round);
                MutexGuard::unlocked(&mut state, || self.poll_round(round, poll_limit));
                if broken(ProtocolBreak::PolledFsyncCountsAsOwn) {
                    return Ok(());
                }
            } else {
                self.synced.wait(&mut state);
            }
        }
    }

    /// Runs one round as its leader: gathers, fsyncs the active file outside the lock, publishes
    /// the new durable seq (or the failure) and wakes every waiter.
    fn lead(&self, engine: &Engine, state: &mut MutexGuard<'_, State>) -> Result<()> {
        state.leader_active = true;
        let (durable, batch, budget) = (state.durable_seq, state.last_batch, state.last_sync / 2);
        let round = MutexGuard::unlocked(state, || {
            let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let round_started = Instant::now();
                self.gather(durable, batch, budget);
                let sync_started = Instant::now();
                let synced = sync_active(engine);
                (synced, (sync_started.elapsed(), round_started.elapsed()))
            }));
            if round.is_err() {
                // Nothing says what the fsync did: no write may take effect any more.
                engine
                    .writer
                    .lock()
                    .poison("a group-commit leader panicked".into());
            }
            round
        });
        state.leader_active = false;
        let (synced, timing) = match round {
            Ok(round) => round,
            // A round that ends in a panic still ends: waiters learn that it failed instead of
            // waiting for a leader that is gone.
            Err(panic) => {
                state
                    .failed
                    .get_or_insert_with(|| "a group-commit leader panicked".into());
                state.rounds += 1;
                self.rounds.store(state.rounds, Ordering::Release);
                self.synced.notify_all();
                std::panic::resume_unwind(panic);
            }
        };
        match &synced {
            Ok(upto) => {
                state.last_batch = upto.saturating_sub(state.durable_seq);
                (state.last_sync, state.last_round) = (timing.0, Some(timing.1));
                state.durable_seq = state.durable_seq.max(*upto);
            }
            Err(e) => {
                state.failed.get_or_insert_with(|| failure_reason(e));
            }
        }
        state.rounds += 1;
        self.rounds.store(state.rounds, Ordering::Release);
        self.synced.notify_all();
        synced.map(|_| ())
    }

    /// Polls (yielding) until the fsync of round `round` has finished or the poll expires
    /// ([`poll_expired`]). The caller then checks under the lock whether that fsync covered its
    /// record, and sleeps if the round is still running.
    fn poll_round(&self, round: u64, limit: Duration) {
        let start = Instant::now();
        let mut polls = 0;
        while self.rounds.load(Ordering::Acquire) == round && !poll_expired(start, limit, polls) {
            yield_now();
            polls += 1;
        }
    }

    /// Spins (yielding) for up to `budget` until `batch` records past `durable` are waiting.
    fn gather(&self, durable: u64, batch: u64, budget: Duration) {
        if cfg!(loom) || batch <= 1 {
            return;
        }
        let start = Instant::now();
        while self
            .waiting_upto
            .load(Ordering::Relaxed)
            .saturating_sub(durable)
            < batch
            && start.elapsed() < budget
        {
            std::thread::yield_now();
        }
    }
}

/// Whether a follower polls for the running round's end rather than sleep: only if the last
/// round, gathering and fsync, took no longer than `limit`, so that this one is likely to end
/// while it polls (and not before any round was timed). Under loom, whose fsyncs take no time
/// worth measuring, whenever polling is on.
fn should_poll(state: &State, limit: Duration) -> bool {
    !limit.is_zero() && (cfg!(loom) || state.last_round.is_some_and(|round| round <= limit))
}

/// Whether a poll that started at `start` and checked `polls` times has run out: after `limit`;
/// under loom, which has no time, after 2 yields, so that the models reach both ends of a poll.
fn poll_expired(start: Instant, limit: Duration, polls: u32) -> bool {
    if cfg!(loom) {
        polls >= 2
    } else {
        start.elapsed() >= limit
    }
}

impl GroupCommit {
    /// Fsyncs `file`, the active file (or the one rotation seals), as the only fsync of it in
    /// flight, and fails if any earlier one failed. Every fsync of the active file goes through
    /// here (the leader's, rotation's, close's; open's fsync of the file it recovers records a
    /// failure the same way, `recovery::fsync_failure::sync_tail`): Linux reports a failed
    /// writeback to one fsync of a file description only and drops the pages, so a later fsync of
    /// it returns Ok with the records lost; the one that met the failure must record it before
    /// another can pass.
    ///
    /// The failed pages stay readable too, so the first failure is also written down for the
    /// next open (`FSYNC_FAILED`, `recovery::fsync_failure`) before the gate opens again: a
    /// reopen in the same boot must not take them for records on disk.
    pub(crate) fn fsync_active(&self, sync: &ActiveFsync<'_>) -> std::io::Result<()> {
        self.fsync_gated(sync, false)
    }

    /// Whether an fsync of the active file failed (the gate then refuses every later one).
    pub(crate) fn an_fsync_failed(&self) -> bool {
        self.active_fsync.lock().failed.is_some()
    }

    /// `close`'s fsync of the active file, the last one: an fsync asked for after it (by a
    /// group-commit leader that read the active file before `close` took the writer) is covered
    /// by it and returns at once. So nothing fsyncs, or on a failure writes `FSYNC_FAILED`,
    /// after `close` released the directory lock.
    pub(crate) fn fsync_active_last(&self, sync: &ActiveFsync<'_>) -> std::io::Result<()> {
        self.fsync_gated(sync, true)
    }

    fn fsync_gated(&self, sync: &ActiveFsync<'_>, last: bool) -> std::io::Result<()> {
        let mut gate = self.active_fsync.lock();
        if let Some(reason) = &gate.failed {
            return Err(std::io::Error::other(format!(
                "an earlier fsync of the active file failed: {reason}"
            )));
        }
        if gate.closed && !broken(ProtocolBreak::FsyncAfterClose) {
            return Ok(());
        }
        gate.closed = last;
        let failed = match sync.file.sync() {
            Ok(()) => {
                gate.synced(sync.id, sync.len);
                return Ok(());
            }
            Err(e) => e,
        };
        let remember = !broken(ProtocolBreak::GateForgetsFailure);
        // Shut before anything else can fail or panic, so that no later fsync passes whatever
        // happens; then again with what writing the failure down gave.
        if remember {
            gate.failed = Some(failed.to_string());
        }
        let failed = match gate.failure(sync.id) {
            Some(failure) => fsync_failure::record_failure(sync.fs, sync.layout, failure, failed),
            None => failed,
        };
        if remember {
            gate.failed = Some(failed.to_string());
        }
        Err(failed)
    }
}

/// Why a round failed, as `Error::Poisoned` will carry it to every later waiter: a refusal that
/// already is `Poisoned` passes its own reason on, not a message about a message.
fn failure_reason(error: &Error) -> String {
    match error {
        Error::Poisoned(reason) => reason.clone(),
        other => other.to_string(),
    }
}

/// Fsyncs the active file; returns the seq up to which records are now durable.
///
/// A writer that refuses writes still syncs: what poisoned it (a failed append, trim or
/// rotation, a panic) left every record before it complete in the file, and those are what a
/// sync promises. After a failed fsync (which poisons it too) it refuses, with its reason.
fn sync_active(engine: &Engine) -> Result<u64> {
    let (sync, upto, path) = {
        let writer = engine.writer.lock();
        if engine.commits.an_fsync_failed() {
            writer.check_poisoned()?;
        }
        let path = engine.layout.data_path(writer.file_id());
        (writer.fsync_target(engine), writer.last_seq(), path)
    };
    let synced = engine.commits.fsync_active(&sync).context("syncing", &path);
    if let Err(e) = &synced {
        engine.writer.lock().poison(e.to_string());
    }
    synced.map(|()| upto)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::io::sim::{Fault, SimFs};
    use crate::io::vfs::{OpenMode, Vfs};
    use crate::sync::Arc;

    /// A simulated store directory with data file `id` created in it.
    fn directory_with_file(id: FileId) -> (SimFs, Layout, FileHandle) {
        let (fs, layout) = (SimFs::new(), Layout::new("/d".into()));
        fs.create_dir_all(layout.dir()).unwrap();
        let file = fs
            .open(&layout.data_path(id), OpenMode::CreateTruncate)
            .unwrap();
        (fs, layout, file)
    }

    /// An fsync of `file` as data file `id`, covering `len` bytes.
    fn fsync_of<'a>(
        fs: &'a SimFs,
        layout: &'a Layout,
        file: &FileHandle,
        id: FileId,
        len: u64,
    ) -> ActiveFsync<'a> {
        ActiveFsync {
            file: Arc::clone(file),
            id,
            len,
            fs,
            layout,
        }
    }

    /// Once one fsync of the active file failed, every later one fails too, even where the file
    /// system would now return Ok: Linux reports a failed writeback to one fsync only and drops
    /// the pages, so a later Ok would acknowledge records that are gone (a leader's fsync racing
    /// rotation's, say).
    #[test]
    fn an_fsync_after_a_failed_one_fails_too() {
        let (fs, layout, file) = directory_with_file(1);
        let sync = |len| fsync_of(&fs, &layout, &file, 1, len);
        let commits = GroupCommit::default();
        commits.fsync_active(&sync(0)).unwrap();
        file.write_at(b"record", 0).unwrap();
        fs.fail_at(fs.ops() + 1, Fault::Error(std::io::ErrorKind::Other));
        assert!(commits.fsync_active(&sync(6)).is_err());
        let later = commits.fsync_active(&sync(6)).unwrap_err();
        assert!(later.to_string().contains("earlier fsync"), "{later}");
        assert!(
            file.sync().is_ok(),
            "the file system itself reports Ok again"
        );
    }

    /// The first failure is written down for the next open, with what the last successful
    /// fsync of that file covered; a failure on a file a newer file's fsync followed (rotation
    /// fsynced all of it) needs no cut.
    #[test]
    fn a_failed_fsync_is_written_down_with_the_durable_length() {
        let (fs, layout, file) = directory_with_file(3);
        let sync = |id, len| fsync_of(&fs, &layout, &file, id, len);
        let recorded = || {
            let bytes = fs.read_all(&layout.fsync_failure_path()).ok()?;
            Some(FsyncFailure::decode(&bytes).unwrap())
        };
        let commits = GroupCommit::durable_up_to(0, 3, 20);
        commits.fsync_active(&sync(3, 100)).unwrap();
        commits.fsync_active(&sync(3, 60)).unwrap();
        fs.fail_at(fs.ops() + 1, Fault::Error(std::io::ErrorKind::Other));
        assert!(commits.fsync_active(&sync(3, 140)).is_err());
        let expected = FsyncFailure {
            file_id: 3,
            durable_len: 100,
        };
        assert_eq!(recorded(), Some(expected));
        assert!(commits.fsync_active(&sync(3, 180)).is_err());
        assert_eq!(recorded(), Some(expected), "only the first failure");

        let failure_of = |gate: &FsyncGate, id| gate.failure(id).map(|f| f.durable_len);
        let gate = FsyncGate {
            durable: Some((5, 300)),
            ..FsyncGate::default()
        };
        assert_eq!(failure_of(&gate, 5), Some(300));
        assert_eq!(failure_of(&gate, 6), Some(HEADER_LEN as u64));
        assert_eq!(failure_of(&gate, 4), None);
    }

    /// After close's fsync, the last one, a later fsync (a leader that read the active file
    /// before close) is covered by it: it returns Ok without touching the file system, which
    /// a new handle may own by then.
    #[test]
    fn nothing_fsyncs_after_the_last_fsync() {
        let (fs, layout, file) = directory_with_file(1);
        let sync = |len| fsync_of(&fs, &layout, &file, 1, len);
        let commits = GroupCommit::default();
        commits.fsync_active_last(&sync(40)).unwrap();
        let operations = fs.ops();
        fs.fail_at(operations + 1, Fault::Error(std::io::ErrorKind::Other));
        commits.fsync_active(&sync(30)).unwrap();
        assert_eq!(fs.ops(), operations);
        assert!(fs.read_all(&layout.fsync_failure_path()).is_err());
    }
}
