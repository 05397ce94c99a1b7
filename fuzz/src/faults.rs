//! Target `ops_faults`: operation sequences on the simulated file system (`bitcask::sim`) with
//! one injected fault, against a `BTreeMap` model that knows what was acknowledged and what was
//! made durable.
//!
//! The rules are those of `tests/power_cut.rs`, for fuzzer-chosen workloads:
//!
//! - The *logical* operations are writes and removes. One is *acknowledged* when it returns
//!   `Ok`, and *durable* when it was acknowledged under [`SyncPolicy::Always`], or before a
//!   `sync()` or `close()` that returned `Ok` (under [`SyncPolicy::Never`]).
//! - Before the fault strikes, every operation succeeds and every read agrees with the model.
//! - After a **power cut**, what a rebooted machine finds ([`SimFs::crash_image`]) opens and
//!   holds exactly the model after some prefix of the issued logical operations that contains
//!   every durable one. After a **kill** of the process ([`SimFs::kill_image`], checked at every
//!   `sync` and at the end while the power is on), the prefix contains every acknowledged one. Optionally the power is cut again while that image recovers, and the
//!   twice-crashed image must recover to the same contents.
//! - After an **injected error** (EIO, ENOSPC, a short write) the call fails with an error (or
//!   succeeds, if the engine could work around it), reads on the handle still agree with the
//!   model with or without the failed operation, and reopening the same (not crashed) file
//!   system succeeds with one of those two states. With `keep_handle`, after an error that
//!   left the handle open and was not in a write or remove, the run first goes on with that
//!   handle: later calls succeed or return `Error::Poisoned` or, for a merge,
//!   `Error::MergeRefused` (then the store is reopened).
//! - Either way a write then succeeds, the rest of the operations run without faults on the
//!   recovered store, and at the end the store closes and its crash image is exactly the model.

use std::collections::BTreeMap;
use std::io::ErrorKind;

use arbitrary::Arbitrary;
use bitcask::sim::{Fault, SimFs};
use bitcask::{Config, Database, Error, MergePolicy, SyncPolicy};

use crate::{Bytes, KEYS, ValueSpec, check_all, check_key, key};

/// Where the store lives on the simulated file system.
pub const SIM_DIR: &str = "/fuzz";

/// The fault strikes at mutating I/O operation `1..=MAX_FAULT_AT`, counted after the first open.
pub const MAX_FAULT_AT: u64 = 400;

/// What is written after recovering from the fault (a write must work again).
pub const AFTER_FAULT: (u8, &[u8]) = (1, b"written after the fault");

/// One `ops_faults` input.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct FaultsInput {
    pub policy: Policy,
    /// Mapped into 64..=4096 bytes, as in `ops`.
    pub data_file_limit: u16,
    pub fault: FaultKind,
    /// Mapped into `1..=MAX_FAULT_AT`: which mutating I/O operation after the first open fails.
    pub fault_at: u16,
    /// After a power cut: 0 = no second cut; else the power is cut again while the crash image
    /// recovers, at mutating operation `1 + (n - 1) % (operations the recovery takes)`.
    pub recovery_cut: u8,
    /// After an injected error in an operation other than a write or remove (a merge, a sync, a
    /// close) that leaves the handle open: go on with that handle instead of reopening. Later
    /// operations must succeed or fail with `Error::Poisoned` or `Error::MergeRefused` (then the
    /// store is reopened).
    pub keep_handle: bool,
    pub ops: Vec<FaultOp>,
}

/// The sync policy of the store (`Interval` is left out: it needs a background thread).
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Never,
    Always,
}

/// The fault injected with [`SimFs::fail_at`].
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    None,
    PowerCut,
    /// `Fault::Error(ErrorKind::Other)`.
    Eio,
    /// `Fault::Error(ErrorKind::StorageFull)`.
    Enospc,
    ShortWrite,
}

/// One operation of `ops_faults`. Keys are indices into [`KEYS`].
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum FaultOp {
    Write {
        key: u8,
        value: ValueSpec,
    },
    Remove {
        key: u8,
    },
    Read {
        key: u8,
    },
    Get {
        key: u8,
    },
    Merge,
    Sync,
    /// `close()`, then open again.
    Reopen,
    /// Drop the handle without `close()` (its `Drop` closes and ignores errors), then open
    /// again.
    DropReopen,
}

impl FaultOp {
    fn is_logical(&self) -> bool {
        matches!(self, FaultOp::Write { .. } | FaultOp::Remove { .. })
    }
}

impl FaultsInput {
    pub fn limit(&self) -> u64 {
        64 + u64::from(self.data_file_limit) % (4096 - 64 + 1)
    }

    /// Whether merges write hint files: not for a quarter of the limits (`Config::hint_files`),
    /// taken from the limit so that the input format (and the corpus) stays as it was.
    pub fn hint_files(&self) -> bool {
        self.limit() % 4 != 1
    }

    /// Whether `Merge` is the background thread's kind, of the files the merge policy picks
    /// (run on the fuzzing thread, `sim::merge_by_policy`), which leaves older files in place so
    /// that kept tombstones and the pre-commit sync matter: for a third of the limits, taken
    /// from the limit like [`FaultsInput::hint_files`] (and independent of it).
    pub fn partial_merges(&self) -> bool {
        self.limit() % 3 == 2
    }

    /// Whether the simulated file system maps active files for appending and allocates them
    /// ahead (`SimFs::with_append_maps`), as ext4 does, so that faults strike the engine's
    /// default write path (the allocation, the trim before sealing; under `Never` records
    /// copied into the map, which a power cut loses unless synced; under `Always` records
    /// `pwrite`n into the allocated file): for two fifths of the limits, taken from the limit like
    /// [`FaultsInput::hint_files`] (and independent of it and of the partial merges). The two
    /// regression inputs (limits 64 and 562) keep the `pwrite` path they were found on.
    pub fn append_maps(&self) -> bool {
        matches!(self.limit() % 5, 1 | 3)
    }

    /// A policy that takes files at 30% fragmentation, and no small file for its size alone.
    fn merge_policy() -> MergePolicy {
        let mut policy = MergePolicy::default();
        policy.trigger_fragmentation = 0.3;
        policy.threshold_fragmentation = 0.3;
        policy.small_file_bytes = 0;
        policy
    }

    pub fn sync_policy(&self) -> SyncPolicy {
        match self.policy {
            Policy::Never => SyncPolicy::Never,
            Policy::Always => SyncPolicy::Always,
        }
    }

    /// The fault and the operation it strikes at, counted after the first open.
    pub fn fault(&self) -> Option<(u64, Fault)> {
        let fault = match self.fault {
            FaultKind::None => return None,
            FaultKind::PowerCut => Fault::PowerCut,
            FaultKind::Eio => Fault::Error(ErrorKind::Other),
            FaultKind::Enospc => Fault::Error(ErrorKind::StorageFull),
            FaultKind::ShortWrite => Fault::ShortWrite,
        };
        Some((1 + u64::from(self.fault_at) % MAX_FAULT_AT, fault))
    }

    fn open(&self, fs: &SimFs) -> bitcask::Result<Database> {
        Config::new(SIM_DIR)
            .file_system(fs.clone())
            .data_file_limit(self.limit())
            .sync_policy(self.sync_policy())
            .background_merge(false)
            .hint_files(self.hint_files())
            .merge_policy(Self::merge_policy())
            .open()
    }
}

type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// A logical operation as issued.
#[derive(Debug)]
enum Logical {
    Put(&'static [u8], Vec<u8>),
    Delete(&'static [u8]),
}

/// The logical operations issued so far (the last one possibly failed), how many were
/// acknowledged and how many are durable.
#[derive(Debug, Default)]
struct History {
    issued: Vec<Logical>,
    acked: usize,
    durable: usize,
}

impl History {
    /// The contents after the first `n` logical operations.
    fn state(&self, n: usize) -> State {
        let mut state = State::new();
        for op in &self.issued[..n] {
            apply(&mut state, op);
        }
        state
    }

    /// A prefix length in `from..=to` after which the contents are `state`.
    fn find(&self, state: &State, from: usize, to: usize) -> Option<usize> {
        let mut model = State::new();
        for n in 0..=to {
            if n > 0 {
                apply(&mut model, &self.issued[n - 1]);
            }
            if n >= from && model == *state {
                return Some(n);
            }
        }
        None
    }

    /// The recovered store holds the state after `n` operations: forget the rest.
    fn settle(&mut self, n: usize) {
        self.issued.truncate(n);
        self.acked = n;
        self.durable = self.durable.min(n);
    }

    fn describe(&self) -> String {
        format!(
            "{} logical ops issued, {} acknowledged, {} durable",
            self.issued.len(),
            self.acked,
            self.durable
        )
    }
}

fn apply(state: &mut State, op: &Logical) {
    match op {
        Logical::Put(k, v) => {
            state.insert(k.to_vec(), v.clone());
        }
        Logical::Delete(k) => {
            state.remove(*k);
        }
    }
}

/// A state, readable: `{"key": "value", ...}` with bytes escaped.
fn show(state: &State) -> String {
    let pairs: Vec<String> = state
        .iter()
        .map(|(k, v)| format!("\"{}\": \"{}\"", k.escape_ascii(), v.escape_ascii()))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Everything `keys()` lists, read with `read` (every listed key must read).
fn contents(db: &Database, ctx: &str) -> State {
    db.keys()
        .map(|k| match db.read(&k) {
            Ok(v) => (k, v),
            Err(e) => panic!(
                "{ctx}: keys() lists {:?} but read fails: {e}",
                k.escape_ascii().to_string()
            ),
        })
        .collect()
}

/// Checks every way of reading `db` against `model`.
fn check_store(db: &Database, model: &State, ctx: &str) {
    for k in KEYS {
        check_key(db, model, k, ctx);
    }
    check_all(db, model, ctx);
}

/// The run of one input: the file system and handle in use, the model and the armed fault.
struct Run<'a> {
    input: &'a FaultsInput,
    fs: SimFs,
    db: Option<Database>,
    history: History,
    model: State,
    /// The absolute operation number of the fault, until the fault has been dealt with.
    armed: Option<(u64, Fault)>,
    /// The run goes on with the handle that saw the error (`keep_handle`).
    kept_handle: bool,
    /// What failed when the fault struck, for the messages of later checks.
    struck: Option<String>,
}

impl Run<'_> {
    fn ctx(&self, what: &str) -> String {
        let struck = match &self.struck {
            Some(struck) => format!("; the fault struck: {struck}"),
            None => String::new(),
        };
        format!(
            "{what} ({:?}, limit {}, fault {:?}; {}; fs ops {}{struck})",
            self.input.policy,
            self.input.limit(),
            self.input.fault(),
            self.history.describe(),
            self.fs.ops()
        )
    }

    fn db(&self) -> &Database {
        self.db.as_ref().expect("an open handle")
    }

    /// Whether the armed fault has struck (it may have been swallowed by the engine).
    fn fault_struck(&self) -> bool {
        self.armed.is_some_and(|(at, _)| self.fs.ops() >= at)
    }

    /// Runs one operation; `Err` means it failed.
    fn step(&mut self, op: &FaultOp) -> bitcask::Result<()> {
        match op {
            FaultOp::Write { key: k, value } => {
                let (k, value) = (key(*k), value.bytes());
                self.history.issued.push(Logical::Put(k, value.clone()));
                self.db().write(k, &value)?;
                self.acknowledge();
            }
            FaultOp::Remove { key: k } => {
                let k = key(*k);
                self.history.issued.push(Logical::Delete(k));
                self.db().remove(k)?;
                self.acknowledge();
            }
            FaultOp::Read { .. } | FaultOp::Get { .. } => {}
            FaultOp::Merge if self.input.partial_merges() => {
                bitcask::sim::merge_by_policy(self.db())?;
            }
            FaultOp::Merge => self.db().merge()?,
            FaultOp::Sync => {
                self.db().sync()?;
                self.history.durable = self.history.acked;
            }
            FaultOp::Reopen => {
                let db = self.db.take().expect("an open handle");
                if let Err(e) = db.close() {
                    self.db = Some(db); // reads of the failed handle are checked
                    return Err(e);
                }
                self.history.durable = self.history.acked;
                drop(db);
                self.db = Some(self.input.open(&self.fs)?);
            }
            FaultOp::DropReopen => {
                drop(self.db.take());
                self.db = Some(self.input.open(&self.fs)?);
            }
        }
        Ok(())
    }

    fn acknowledge(&mut self) {
        let op = self.history.issued.last().expect("an issued op");
        apply(&mut self.model, op);
        self.history.acked += 1;
        if self.input.policy == Policy::Always {
            self.history.durable = self.history.acked;
        }
    }

    /// Runs one operation and every check after it.
    fn run_op(&mut self, label: &str, op: &FaultOp) {
        let result = self.step(op);
        let ctx = self.ctx(&format!("{label}: {op:?}"));
        match result {
            Err(e) if !self.fault_struck() => panic!("{ctx}: failed without a fault: {e}"),
            Err(e)
                if self.kept_handle
                    && !matches!(e, Error::Poisoned(_) | Error::MergeRefused(_)) =>
            {
                panic!(
                    "{ctx}: failed on the handle kept after the fault with {e}, not \
                     Error::Poisoned or MergeRefused"
                )
            }
            Err(e) => {
                if self.struck.is_none() {
                    self.struck = Some(format!("{label}: {op:?} failed: {e}"));
                }
                self.recover_from_fault(op.is_logical(), &format!("{ctx}: failed: {e}"));
            }
            Ok(()) if self.fs.is_powered_off() => {
                // The power went off during this operation (or an earlier one that swallowed
                // the error) and it still succeeded: check what that promise is worth.
                assert!(self.fault_struck(), "{ctx}: powered off without a fault");
                if self.struck.is_none() {
                    self.struck = Some(format!("{label}: {op:?} succeeded, power off"));
                }
                self.recover_from_fault(false, &format!("{ctx}: succeeded after a power cut"));
            }
            Ok(()) => {
                if matches!(op, FaultOp::Reopen | FaultOp::DropReopen) {
                    // The handle kept after the fault is gone: the new one owes no excuse.
                    self.kept_handle = false;
                }
                if self.fault_struck() && !self.kept_handle {
                    // The engine swallowed the fault (a `Drop` that ignores close's error, say)
                    // and the operation succeeded: later operations must succeed as if no
                    // fault had been planned, not be excused by it. (On a handle kept after
                    // the fault, later errors must be `Poisoned` or `MergeRefused`, above.)
                    self.armed = None;
                }
                let db = self.db();
                for k in KEYS {
                    check_key(db, &self.model, k, &ctx);
                }
                match op {
                    FaultOp::Merge | FaultOp::Reopen | FaultOp::DropReopen => {
                        check_all(db, &self.model, &ctx);
                    }
                    FaultOp::Sync => {
                        self.check_crash_image(&ctx);
                        self.check_kill_image(&ctx);
                    }
                    _ => {}
                }
            }
        }
    }

    /// A power cut now: the crash image holds a prefix from the durable ones to the issued
    /// ones (checked on a copy; the run goes on).
    fn check_crash_image(&self, ctx: &str) {
        let image = self.fs.crash_image();
        let db = self
            .input
            .open(&image)
            .unwrap_or_else(|e| panic!("{ctx}: a power cut now: the image does not open: {e}"));
        let state = contents(&db, ctx);
        let (from, to) = (self.history.durable, self.history.issued.len());
        assert!(
            self.history.find(&state, from, to).is_some(),
            "{ctx}: a power cut now: the image holds {}, not the state after {from}..={to} \
             logical ops",
            show(&state)
        );
    }

    /// The process is killed now (kill -9): the page cache survives, so the image holds a prefix
    /// with every acknowledged operation, whatever the sync policy (checked on a copy; the run
    /// goes on). Not checked once the power is off: then the crash image is what counts.
    fn check_kill_image(&self, ctx: &str) {
        if self.fs.is_powered_off() {
            return;
        }
        let db = self
            .input
            .open(&self.fs.kill_image())
            .unwrap_or_else(|e| panic!("{ctx}: a kill now: the image does not open: {e}"));
        let state = contents(&db, ctx);
        let (from, to) = (self.history.acked, self.history.issued.len());
        assert!(
            self.history.find(&state, from, to).is_some(),
            "{ctx}: a kill now: the image holds {}, not the state after {from}..={to} logical ops",
            show(&state)
        );
    }

    /// The armed fault struck and the operation failed (or the power is off): check the failed
    /// handle, then go on with it (`keep_handle`, after an error that left it open), or recover
    /// as the fault allows and write once.
    fn recover_from_fault(&mut self, in_flight: bool, ctx: &str) {
        let (acked, issued) = (self.history.acked, self.history.issued.len());
        assert_eq!(
            acked + usize::from(in_flight),
            issued,
            "{ctx}: harness bookkeeping"
        );
        // Reads on the handle that saw the error: the model with or without the failed op
        // (unless a failed reopen left it closed).
        if let Some(db) = &self.db
            && !matches!(db.contains_key(b""), Err(bitcask::Error::Closed))
        {
            let state = contents(db, ctx);
            let Some(n) = self.history.find(&state, acked, issued) else {
                panic!(
                    "{ctx}: the failed handle reads {}, not the state after \
                     {acked}..={issued} logical ops",
                    show(&state)
                );
            };
            check_store(
                db,
                &self.history.state(n),
                &format!("{ctx}: the failed handle"),
            );
            if self.input.keep_handle
                && !self.kept_handle
                && !in_flight
                && !self.fs.is_powered_off()
            {
                // Go on with this handle (an application whose merge failed keeps working).
                self.kept_handle = true;
                return;
            }
        }
        drop(self.db.take());
        self.kept_handle = false;

        if self.fs.is_powered_off() {
            self.recover_from_power_cut(ctx);
        } else {
            // The process goes on (nothing is lost from the page cache): reopen the same disk.
            let db = self.input.open(&self.fs).unwrap_or_else(|e| {
                let files: Vec<_> = self
                    .fs
                    .files(std::path::Path::new(SIM_DIR))
                    .into_iter()
                    .map(|(path, data)| (path, data.len()))
                    .collect();
                panic!("{ctx}: reopening after the error failed: {e}; files {files:?}")
            });
            let state = contents(&db, ctx);
            let Some(n) = self.history.find(&state, acked, issued) else {
                panic!(
                    "{ctx}: reopened after the error with {}, not the state after \
                     {acked}..={issued} logical ops",
                    show(&state)
                );
            };
            self.settle(db, n, state, &format!("{ctx}, reopened"));
        }
        self.armed = None;

        // Writing works again.
        let ctx = format!("{ctx}, recovered");
        self.run_op(
            &format!("{ctx}; then"),
            &FaultOp::Write {
                key: AFTER_FAULT.0,
                value: ValueSpec::Bytes(Bytes(AFTER_FAULT.1.to_vec())),
            },
        );
        assert_eq!(
            self.db().read(key(AFTER_FAULT.0)).ok().as_deref(),
            Some(AFTER_FAULT.1),
            "{ctx}: the write after the fault"
        );
    }

    /// After a power cut: the crash image opens to a prefix that holds every durable op; so does
    /// the image left by cutting the power again during that recovery. The run goes on on the
    /// recovered image.
    fn recover_from_power_cut(&mut self, ctx: &str) {
        let (durable, issued) = (self.history.durable, self.history.issued.len());
        let image = self.fs.crash_image();
        let fs = image.crash_image();
        let db = self
            .input
            .open(&fs)
            .unwrap_or_else(|e| panic!("{ctx}: the crash image does not open: {e}"));
        let recovery_ops = fs.ops();
        let state = contents(&db, ctx);
        let Some(n) = self.history.find(&state, durable, issued) else {
            panic!(
                "{ctx}: the crash image holds {}, not the state after {durable}..={issued} \
                 logical ops",
                show(&state)
            );
        };

        if self.input.recovery_cut != 0 && recovery_ops > 0 {
            let cut = 1 + (u64::from(self.input.recovery_cut) - 1) % recovery_ops;
            let ctx = format!("{ctx}; power cut again at op {cut}/{recovery_ops} of the recovery");
            let again = image.crash_image();
            again.fail_at(cut, Fault::PowerCut);
            drop(self.input.open(&again));
            if again.is_powered_off() {
                let db = self
                    .input
                    .open(&again.crash_image())
                    .unwrap_or_else(|e| panic!("{ctx}: the image does not open: {e}"));
                let twice = contents(&db, &ctx);
                assert!(
                    self.history.find(&twice, durable, issued).is_some(),
                    "{ctx}: the image holds {}, not the state after {durable}..={issued} \
                     logical ops",
                    show(&twice)
                );
                assert!(
                    twice == state,
                    "{ctx}: recovering the same image gives {} when cut short, {} when not",
                    show(&twice),
                    show(&state)
                );
            }
        }

        self.fs = fs;
        self.settle(db, n, state, &format!("{ctx}, recovered the crash image"));
        // Everything the recovered store holds was on the disk the machine rebooted with.
        self.history.durable = n;
    }

    /// Continues with `db`, which holds the state after `n` logical ops.
    fn settle(&mut self, db: Database, n: usize, state: State, ctx: &str) {
        self.history.settle(n);
        self.model = state;
        check_store(&db, &self.model, ctx);
        self.db = Some(db);
    }
}

/// Runs the operations on a [`SimFs`] with the input's fault and checks the engine against the
/// model throughout; see the module documentation.
pub fn check_ops_faults(input: &FaultsInput) {
    run_checked(input);
}

/// The mutating I/O operations that `input`'s operations and the last reopen take after the
/// first open when no fault strikes: the range worth choosing `fault_at` from (for seeds).
pub fn io_ops(input: &FaultsInput) -> u64 {
    let input = FaultsInput {
        fault: FaultKind::None,
        ..input.clone()
    };
    run_checked(&input)
}

/// [`check_ops_faults`]; returns the I/O operations from the end of the first open to the end
/// of the last reopen, on the file system the run ended on.
fn run_checked(input: &FaultsInput) -> u64 {
    let fs = if input.append_maps() {
        SimFs::with_append_maps()
    } else {
        SimFs::new()
    };
    let db = input
        .open(&fs)
        .unwrap_or_else(|e| panic!("the first open failed: {e}"));
    let first_open = fs.ops();
    let armed = input.fault().map(|(at, fault)| {
        let at = first_open + at;
        fs.fail_at(at, fault);
        (at, fault)
    });
    let mut run = Run {
        input,
        fs,
        db: Some(db),
        history: History::default(),
        model: State::new(),
        armed,
        kept_handle: false,
        struck: None,
    };
    for (index, op) in input.ops.iter().enumerate() {
        run.run_op(&format!("step {index}"), op);
    }
    let ctx = run.ctx("the end of the operations");
    run.check_crash_image(&ctx);
    run.check_kill_image(&ctx);
    // A last reopen, with the fault still armed: close can fail too.
    run.run_op("the last reopen", &FaultOp::Reopen);
    let ops = run.fs.ops().saturating_sub(first_open);
    // Disarm a fault that never struck.
    run.fs.fail_at(u64::MAX, Fault::PowerCut);
    run.armed = None;
    let ctx = run.ctx("the last reopen and close");
    let db = run.db.take().expect("an open handle");
    check_store(&db, &run.model, &ctx);
    db.close()
        .unwrap_or_else(|e| panic!("{ctx}: the last close failed: {e}"));
    let image = input
        .open(&run.fs.crash_image())
        .unwrap_or_else(|e| panic!("{ctx}: the crash image does not open: {e}"));
    check_store(&image, &run.model, &format!("{ctx}: the crash image"));
    ops
}
