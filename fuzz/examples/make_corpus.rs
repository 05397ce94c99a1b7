//! Writes the seed corpora of the fuzz targets, then runs every seed through its target's checks.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example make_corpus [-- [--strict] [OUT_DIR]]
//! ```
//!
//! `OUT_DIR` defaults to `fuzz/corpus`; seeds go to `OUT_DIR/<target>/seed-<name>`, replacing
//! earlier seeds of the same name and leaving every other file (inputs the fuzzer found) alone.
//! Seeds are real encoder output and real store directories produced by the engine (open,
//! write, remove, rotate, merge, close), turned into each target's input format.
//!
//! Every seed is then run through its target's checks without libFuzzer. A seed that fails them
//! is a bug the fuzz run reports on its first pass over the corpus anyway, so by default it is
//! listed as a warning and the exit status stays 0 (the seeds are written either way); with
//! `--strict` the exit status is 1. A panic (exit 101) means the generator itself is broken,
//! e.g. `src/seed.rs` no longer matching the `arbitrary` version in `Cargo.lock`.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use bitcask::format::commit::MergeCommit;
use bitcask::format::header::{FileHeader, FileKind};
use bitcask::format::hint::{HintBuilder, HintEntry};
use bitcask::format::record::{Record, RecordKind};
use bitcask_fuzz::seed::{encode_faults, encode_image, encode_ops};
use bitcask_fuzz::{
    Bytes, Contents, Damage, FaultKind, FaultOp, FaultsInput, FileSpec, HintEntrySpec, Image, KEYS,
    NameKind, Op, OpsInput, Policy, RecordSpec, Seq, ValueSpec, key, open_store, scratch_dir,
};

type Seeds = Vec<(String, Vec<u8>)>;

/// A target's name, its seeds, and the checks its fuzz target runs on one input.
type Target = (&'static str, Seeds, fn(&[u8]));

fn main() {
    let mut strict = false;
    let mut out = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for arg in std::env::args_os().skip(1) {
        if arg == "--strict" {
            strict = true;
        } else if arg.to_str().is_some_and(|a| a.starts_with('-')) {
            eprintln!("usage: make_corpus [--strict] [OUT_DIR]");
            std::process::exit(2);
        } else {
            out = PathBuf::from(arg);
        }
    }
    let scenarios = engine_scenarios();
    let targets: [Target; 5] = [
        (
            "record",
            record_seeds(&scenarios),
            bitcask_fuzz::check_record,
        ),
        ("hint", hint_seeds(&scenarios), bitcask_fuzz::check_hint),
        ("recover", recover_seeds(&scenarios), check_recover_bytes),
        ("ops", ops_seeds(), check_ops_bytes),
        ("ops_faults", ops_faults_seeds(), check_ops_faults_bytes),
    ];
    let mut failed = Vec::new();
    for (target, seeds, check) in targets {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        for (name, bytes) in &seeds {
            let path = dir.join(format!("seed-{name}"));
            std::fs::write(&path, bytes)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
        println!("{target}: {} seeds in {}", seeds.len(), dir.display());
        if target == "recover" && std::env::var_os("VERBOSE").is_some() {
            for (name, bytes) in &seeds {
                println!("  {name}: {}", describe_open(bytes));
            }
        }
        for (name, bytes) in &seeds {
            if catch_unwind(AssertUnwindSafe(|| check(bytes))).is_err() {
                failed.push(format!("{target}/seed-{name}"));
            }
        }
    }
    if !failed.is_empty() {
        eprintln!(
            "\nWARNING: {} seed(s) fail their target's checks: bugs that the fuzz run will \
             report on its first pass over the corpus. Reproduce with `cargo fuzz run TARGET \
             --sanitizer none fuzz/corpus/TARGET/SEED` (from the repository root):",
            failed.len()
        );
        for seed in &failed {
            eprintln!("  {seed}");
        }
        if strict {
            std::process::exit(1);
        }
    }
}

fn check_recover_bytes(bytes: &[u8]) {
    use arbitrary::{Arbitrary, Unstructured};
    let image = Image::arbitrary_take_rest(Unstructured::new(bytes)).expect("parsing a seed");
    bitcask_fuzz::check_recover(&image);
}

/// What opening a `recover` seed's image gives (for `VERBOSE=1`).
fn describe_open(bytes: &[u8]) -> String {
    use arbitrary::{Arbitrary, Unstructured};
    let image = Image::arbitrary_take_rest(Unstructured::new(bytes)).expect("parsing a seed");
    let dir = scratch_dir();
    for (name, bytes) in image.render() {
        std::fs::write(dir.path().join(name), bytes).expect("writing the image");
    }
    match open_store(dir.path(), 4096) {
        Ok(db) => {
            let mut keys: Vec<String> = db.keys().map(|k| k.escape_ascii().to_string()).collect();
            keys.sort();
            format!("opens, keys {keys:?}")
        }
        Err(e) => format!("open fails: {e}"),
    }
}

fn check_ops_bytes(bytes: &[u8]) {
    use arbitrary::{Arbitrary, Unstructured};
    let input = OpsInput::arbitrary_take_rest(Unstructured::new(bytes)).expect("parsing a seed");
    bitcask_fuzz::check_ops(&input);
}

fn check_ops_faults_bytes(bytes: &[u8]) {
    use arbitrary::{Arbitrary, Unstructured};
    let input = FaultsInput::arbitrary_take_rest(Unstructured::new(bytes)).expect("parsing a seed");
    bitcask_fuzz::check_ops_faults(&input);
}

// ---------------------------------------------------------------------------------------------
// Real store directories
// ---------------------------------------------------------------------------------------------

/// A store directory's files (name -> bytes), `LOCK` left out.
type Dir = BTreeMap<String, Vec<u8>>;

fn read_dir(path: &Path) -> Dir {
    let mut files = Dir::new();
    for entry in std::fs::read_dir(path).expect("listing a store") {
        let path = entry.expect("listing a store").path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name != "LOCK" && path.is_file() {
            files.insert(name, std::fs::read(&path).expect("reading a store file"));
        }
    }
    files
}

fn value(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

/// Store directories made by the real engine, by name.
fn engine_scenarios() -> BTreeMap<&'static str, Dir> {
    let mut out = BTreeMap::new();

    // A fresh store: one data file holding only its header.
    let dir = scratch_dir();
    open_store(dir.path(), 4096).unwrap().close().unwrap();
    out.insert("empty", read_dir(dir.path()));

    // One data file: puts of every key, overwrites, removes.
    let dir = scratch_dir();
    let db = open_store(dir.path(), 4096).unwrap();
    for (i, k) in KEYS.iter().enumerate() {
        db.write(k, &value(i, i * 7)).unwrap();
    }
    db.write(key(1), b"overwritten").unwrap();
    db.remove(key(2)).unwrap();
    db.remove(key(0)).unwrap();
    db.write(key(0), b"back again").unwrap();
    db.close().unwrap();
    out.insert("one-file", read_dir(dir.path()));

    // Several data files (small limit), then a merge, then more writes.
    let dir = scratch_dir();
    let db = open_store(dir.path(), 300).unwrap();
    for i in 0..12 {
        db.write(key(i as u8), &value(i, 40)).unwrap();
    }
    out.insert("rotated-open", read_dir(dir.path()));
    let before_merge = read_dir(dir.path());
    db.remove(key(3)).unwrap();
    db.merge().unwrap();
    let after_merge = read_dir(dir.path());
    db.write(key(5), b"after the merge").unwrap();
    db.remove(key(6)).unwrap();
    db.close().unwrap();
    out.insert("merged", read_dir(dir.path()));

    // The merge's crash states, rebuilt from the directory before and after it: outputs still
    // under their `.tmp` names, without (before the commit point) and with (after it) `MERGE`.
    // `before_merge` lacks the tombstone of key 3 written just before the merge, which is fine:
    // these are seeds, and both states open.
    let id_of = |name: &str| name.get(..10)?.parse::<u32>().ok();
    let inputs: Vec<u32> = before_merge
        .keys()
        .filter(|n| n.ends_with(".data"))
        .filter_map(|n| id_of(n))
        .collect();
    let outputs: Vec<u32> = after_merge
        .keys()
        .filter(|n| n.ends_with(".hint"))
        .filter_map(|n| id_of(n))
        .collect();
    let mut crashed = before_merge.clone();
    for (name, bytes) in &after_merge {
        let is_output = id_of(name).is_some_and(|id| outputs.contains(&id));
        if is_output {
            crashed.insert(format!("{name}.tmp"), bytes.clone());
        } else if !before_merge.contains_key(name) {
            crashed.insert(name.clone(), bytes.clone()); // the new active file
        }
    }
    out.insert("merge-before-commit", crashed.clone());
    let commit = MergeCommit {
        inputs: inputs.clone(),
        outputs: outputs.clone(),
    };
    crashed.insert("MERGE".into(), commit.encode());
    out.insert("merge-after-commit", crashed);

    // Records larger than the limit: each gets a file of its own.
    let dir = scratch_dir();
    let db = open_store(dir.path(), 64).unwrap();
    for i in 0..4 {
        db.write(key(i), &value(i.into(), 100)).unwrap();
    }
    db.write(key(1), b"").unwrap();
    db.close().unwrap();
    out.insert("big-records", read_dir(dir.path()));

    // A torn tail: the newest data file of "one-file" loses the end of its last record.
    let mut torn = out["one-file"].clone();
    let newest = torn.keys().rfind(|n| n.ends_with(".data")).unwrap().clone();
    let bytes = torn.get_mut(&newest).unwrap();
    bytes.truncate(bytes.len() - 5);
    out.insert("torn-tail", torn);

    for (name, dir) in &out {
        for file in dir.keys() {
            if let Some(id) = id_of(file) {
                assert!(
                    (1..=8).contains(&id),
                    "scenario {name} has file {file}: ids must be 1..=8"
                );
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// record
// ---------------------------------------------------------------------------------------------

fn sample_records() -> Vec<(&'static str, Record<'static>)> {
    vec![
        (
            "empty-put",
            Record {
                seq: 1,
                kind: RecordKind::Put,
                key: b"",
                value: b"",
            },
        ),
        (
            "put",
            Record {
                seq: 42,
                kind: RecordKind::Put,
                key: b"key:3",
                value: b"a value",
            },
        ),
        (
            "tombstone",
            Record {
                seq: 7,
                kind: RecordKind::Tombstone,
                key: b"gone",
                value: b"",
            },
        ),
        (
            "max-seq",
            Record {
                seq: u64::MAX,
                kind: RecordKind::Put,
                key: b"\x00\xff",
                value: b"x",
            },
        ),
        (
            "long-value",
            Record {
                seq: 3,
                kind: RecordKind::Put,
                key: b"k",
                value: &[0xAB; 300],
            },
        ),
    ]
}

fn record_seeds(scenarios: &BTreeMap<&str, Dir>) -> Seeds {
    let mut seeds = Seeds::new();
    let mut all = Vec::new();
    for (name, rec) in sample_records() {
        let mut bytes = Vec::new();
        rec.encode_into(&mut bytes);
        all.extend_from_slice(&bytes);
        bytes.extend_from_slice(b"trailing");
        seeds.push((format!("record-{name}"), bytes));
    }
    seeds.push(("records-run".into(), all.clone()));
    let mut torn = all.clone();
    torn.truncate(all.len() - 3);
    seeds.push(("records-torn".into(), torn));
    for kind in [FileKind::Data, FileKind::Merged, FileKind::Hint] {
        let header = FileHeader::new(kind, 3).encode();
        seeds.push((format!("header-{kind:?}"), header.to_vec()));
    }
    for (scenario, dir) in scenarios {
        for (file, bytes) in dir {
            if file.ends_with(".data") && !bytes.is_empty() {
                seeds.push((format!("{scenario}-{file}"), bytes.clone()));
            }
        }
    }
    dedup(seeds)
}

// ---------------------------------------------------------------------------------------------
// hint
// ---------------------------------------------------------------------------------------------

fn hint_seeds(scenarios: &BTreeMap<&str, Dir>) -> Seeds {
    let mut seeds = Seeds::new();
    seeds.push(("hint-empty".into(), HintBuilder::new(1).finish(20)));
    let mut hint = HintBuilder::new(9);
    hint.push(&HintEntry {
        seq: 5,
        kind: RecordKind::Put,
        key: b"alpha",
        value_len: 300,
        offset: 20,
    });
    hint.push(&HintEntry {
        seq: 6,
        kind: RecordKind::Tombstone,
        key: b"",
        value_len: 0,
        offset: 346,
    });
    seeds.push(("hint-two".into(), hint.finish(367)));
    // Version 1 hints, as a merge of that version wrote them.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/format-v1");
    for entry in std::fs::read_dir(&fixture).expect("tests/fixtures/format-v1") {
        let path = entry.expect("fixture entry").path();
        if path.extension().is_some_and(|ext| ext == "hint") {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let bytes = std::fs::read(&path).expect("fixture hint");
            seeds.push((format!("format-v1-{name}"), bytes));
        }
    }
    for (name, inputs, outputs) in [
        ("commit-empty", vec![], vec![]),
        ("commit-one", vec![1], vec![2]),
        ("commit-many", vec![1, 2, 5], vec![9, 10]),
    ] {
        seeds.push((name.into(), MergeCommit { inputs, outputs }.encode()));
    }
    for (scenario, dir) in scenarios {
        for (file, bytes) in dir {
            if file.contains(".hint") || file == "MERGE" {
                seeds.push((format!("{scenario}-{file}"), bytes.clone()));
            }
        }
    }
    dedup(seeds)
}

// ---------------------------------------------------------------------------------------------
// recover
// ---------------------------------------------------------------------------------------------

fn raw_image(dir: &Dir) -> Image {
    let files = dir
        .iter()
        .map(|(name, bytes)| {
            let (id, kind) = if name == "MERGE" {
                (1, NameKind::Merge)
            } else {
                let id: u32 = name[..10].parse().expect("an engine file name");
                let kind = match &name[10..] {
                    ".data" => NameKind::Data,
                    ".hint" => NameKind::Hint,
                    ".data.tmp" => NameKind::DataTmp,
                    ".hint.tmp" => NameKind::HintTmp,
                    other => panic!("unexpected file {other}"),
                };
                (id, kind)
            };
            FileSpec {
                id: u8::try_from(id - 1).unwrap(),
                name: kind,
                contents: Contents::Raw(Bytes(bytes.clone())),
            }
        })
        .collect();
    Image { files }
}

fn rec(seq: u8, key: u8, value: &[u8]) -> RecordSpec {
    RecordSpec {
        seq: Seq::Small(seq - 1),
        tombstone: false,
        key,
        value: Bytes(value.to_vec()),
    }
}

fn tomb(seq: u8, key: u8) -> RecordSpec {
    RecordSpec {
        seq: Seq::Small(seq - 1),
        tombstone: true,
        key,
        value: Bytes::default(),
    }
}

fn file(
    id: u32,
    name: NameKind,
    merged: bool,
    records: Vec<RecordSpec>,
    damage: Damage,
) -> FileSpec {
    FileSpec {
        id: u8::try_from(id - 1).unwrap(),
        name,
        contents: Contents::Records {
            merged,
            records,
            damage,
        },
    }
}

fn recover_seeds(scenarios: &BTreeMap<&str, Dir>) -> Seeds {
    let mut seeds = Seeds::new();
    for (name, dir) in scenarios {
        seeds.push((format!("engine-{name}"), encode_image(&raw_image(dir))));
    }

    let sealed = vec![
        rec(1, 1, b"one"),
        rec(2, 2, b"two"),
        tomb(3, 1),
        rec(4, 3, b"three"),
    ];
    let tail = vec![rec(5, 1, b"one again"), rec(6, 2, b"newer two"), tomb(7, 3)];
    let two_files = |tail_damage: Damage, with_hint: bool| {
        let mut files = vec![
            file(1, NameKind::Data, false, sealed.clone(), Damage::None),
            file(2, NameKind::Data, false, tail.clone(), tail_damage),
        ];
        if with_hint {
            files.push(file(1, NameKind::Hint, false, sealed.clone(), Damage::None));
        }
        Image { files }
    };
    let structured = [
        ("two-files", two_files(Damage::None, false)),
        ("two-files-hint", two_files(Damage::None, true)),
        ("torn-tail", two_files(Damage::Truncate(80), true)),
        (
            "flipped-tail",
            two_files(Damage::Flip { at: 40, mask: 0x10 }, false),
        ),
        (
            "flipped-sealed",
            Image {
                files: vec![
                    file(
                        1,
                        NameKind::Data,
                        false,
                        sealed.clone(),
                        Damage::Flip { at: 30, mask: 1 },
                    ),
                    file(2, NameKind::Data, false, tail.clone(), Damage::None),
                ],
            },
        ),
        (
            "stale-hint",
            Image {
                files: vec![
                    file(1, NameKind::Data, false, sealed.clone(), Damage::None),
                    file(1, NameKind::Hint, false, sealed[..2].to_vec(), Damage::None),
                    file(2, NameKind::Data, false, tail.clone(), Damage::None),
                ],
            },
        ),
        (
            // Seqs out of file order: the older file id holds the newer records.
            "seq-order",
            Image {
                files: vec![
                    file(
                        3,
                        NameKind::Data,
                        true,
                        vec![rec(9, 1, b"newest"), rec(8, 2, b"b8")],
                        Damage::None,
                    ),
                    file(
                        3,
                        NameKind::Hint,
                        false,
                        vec![rec(9, 1, b"newest"), rec(8, 2, b"b8")],
                        Damage::None,
                    ),
                    file(
                        5,
                        NameKind::Data,
                        false,
                        vec![rec(2, 1, b"old"), rec(10, 4, b"d")],
                        Damage::None,
                    ),
                ],
            },
        ),
        (
            "merge-commit",
            Image {
                files: vec![
                    file(1, NameKind::Data, false, sealed.clone(), Damage::None),
                    file(
                        3,
                        NameKind::DataTmp,
                        true,
                        vec![rec(2, 2, b"two"), rec(4, 3, b"three")],
                        Damage::None,
                    ),
                    file(
                        3,
                        NameKind::HintTmp,
                        true,
                        vec![rec(2, 2, b"two"), rec(4, 3, b"three")],
                        Damage::None,
                    ),
                    file(4, NameKind::Data, false, tail.clone(), Damage::None),
                    FileSpec {
                        id: 0,
                        name: NameKind::Merge,
                        contents: Contents::Commit {
                            inputs: vec![0],
                            outputs: vec![2],
                            damage: Damage::None,
                        },
                    },
                ],
            },
        ),
        (
            "large-seqs",
            Image {
                files: vec![file(
                    1,
                    NameKind::Data,
                    false,
                    vec![
                        RecordSpec {
                            seq: Seq::Any(1 << 40),
                            tombstone: false,
                            key: 1,
                            value: Bytes(b"big".to_vec()),
                        },
                        RecordSpec {
                            seq: Seq::Any((1 << 40) + 1),
                            tombstone: true,
                            key: 2,
                            value: Bytes::default(),
                        },
                    ],
                    Damage::None,
                )],
            },
        ),
    ];
    for (name, image) in structured {
        seeds.push((format!("structured-{name}"), encode_image(&image)));
    }

    // Hint files with valid checksums whose entries are right, or point elsewhere.
    let data_1 = file(1, NameKind::Data, false, sealed.clone(), Damage::None);
    let data_2 = file(2, NameKind::Data, false, tail.clone(), Damage::None);
    let hint_1 = |entries: Vec<HintEntrySpec>, version_1: bool| FileSpec {
        id: 0,
        name: NameKind::Hint,
        contents: Contents::Hint {
            data_len: None,
            entries,
            damage: Damage::None,
            version_1,
        },
    };
    let exact = hint_entries(&sealed);
    let mut shifted = exact.clone();
    shifted[1].offset += 3; // into the middle of a record
    let mut other_key = exact.clone();
    other_key[0].key = 4; // a key the record at that offset does not hold
    let mut short_value = exact.clone();
    short_value[1].seq = Seq::Small(49); // newer than the tail's record of the key
    short_value[1].value_len = 1; // the record there holds 3 bytes
    let whole_file = encoded_records_len(&sealed) as u16;
    let overlapping = vec![
        // Newer than every record of the tail file, so the keydir takes both entries.
        HintEntrySpec {
            seq: Seq::Small(100),
            tombstone: false,
            key: 1,
            value_len: whole_file - 22,
            offset: 20,
        },
        HintEntrySpec {
            seq: Seq::Small(101),
            tombstone: false,
            key: 2,
            value_len: whole_file - 22,
            offset: 20,
        },
    ];
    // Offsets are stored in version 1 hints only: the mid-record and overlapping ones exist
    // only in that version.
    for (name, entries, versions) in [
        ("exact", exact, &[false, true][..]),
        ("mid-record", shifted, &[true]),
        ("other-key", other_key, &[false, true]),
        ("overlapping", overlapping, &[true]),
        ("short-value", short_value, &[false, true]),
    ] {
        for &version_1 in versions {
            let image = Image {
                files: vec![
                    data_1.clone(),
                    hint_1(entries.clone(), version_1),
                    data_2.clone(),
                ],
            };
            let version = if version_1 { "-v1" } else { "" };
            seeds.push((format!("hint-{name}{version}"), encode_image(&image)));
        }
    }
    dedup(seeds)
}

/// Bytes the records take in a data file, header excluded.
fn encoded_records_len(records: &[RecordSpec]) -> usize {
    bitcask_fuzz::encode_data(1, FileKind::Data, records).len() - 20
}

/// The hint entries describing `records` laid out in a data file.
fn hint_entries(records: &[RecordSpec]) -> Vec<HintEntrySpec> {
    let mut offset = 20;
    records
        .iter()
        .map(|r| {
            let value_len = if r.tombstone { 0 } else { r.value.0.len() };
            let entry = HintEntrySpec {
                seq: r.seq,
                tombstone: r.tombstone,
                key: r.key,
                value_len: value_len as u16,
                offset,
            };
            offset += (21 + key(r.key).len() + value_len) as u16;
            entry
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// ops
// ---------------------------------------------------------------------------------------------

fn w(key: u8, value: &[u8]) -> Op {
    Op::Write {
        key,
        value: ValueSpec::Bytes(Bytes(value.to_vec())),
    }
}

fn fill(key: u8, byte: u8, len: u16) -> Op {
    Op::Write {
        key,
        value: ValueSpec::Fill { byte, len },
    }
}

fn ops_seeds() -> Seeds {
    let every_key: Vec<Op> = (0..KEYS.len() as u8).map(|k| w(k, &[k; 9])).collect();
    let mut churn = every_key.clone();
    churn.extend([
        w(1, b"overwrite"),
        Op::Remove { key: 2 },
        Op::Read { key: 2 },
        Op::Get { key: 1 },
        Op::Remove { key: 2 },
        w(2, b""),
        Op::Merge,
        fill(3, b'x', 300),
        Op::Reopen,
        Op::Remove { key: 3 },
        Op::CrashDrop,
        w(4, b"after crash"),
        Op::CrashCopy,
        Op::Sync,
        Op::Merge,
        Op::Merge,
        Op::Get { key: 4 },
    ]);
    let mut big = Vec::new();
    for i in 0..6u8 {
        big.push(fill(i, i, 250));
        if i % 2 == 1 {
            big.push(Op::Remove { key: i - 1 });
        }
    }
    big.extend([
        Op::Merge,
        Op::CrashCopy,
        fill(0, 9, 300),
        Op::Reopen,
        Op::Merge,
    ]);
    let crash_after_merge = vec![
        w(1, b"a"),
        w(2, b"b"),
        Op::Remove { key: 1 },
        Op::Merge,
        Op::CrashCopy,
        w(1, b"c"),
        Op::Merge,
        Op::CrashDrop,
        Op::Read { key: 1 },
    ];
    let inputs = [
        ("every-key", 4096u16, every_key),
        ("churn-small-files", 200, churn.clone()),
        ("churn-big-files", 4096, churn),
        ("big-values-tiny-limit", 0, big),
        ("crash-after-merge", 100, crash_after_merge),
    ];
    let seeds = inputs
        .into_iter()
        .map(|(name, limit, ops)| {
            // `limit()` maps the field into 64..=4096: 64 + field % 4033.
            let input = OpsInput {
                data_file_limit: limit.saturating_sub(64),
                ops,
            };
            (name.to_string(), encode_ops(&input))
        })
        .collect();
    dedup(seeds)
}

// ---------------------------------------------------------------------------------------------
// ops_faults
// ---------------------------------------------------------------------------------------------

fn fw(key: u8, value: &[u8]) -> FaultOp {
    FaultOp::Write {
        key,
        value: ValueSpec::Bytes(Bytes(value.to_vec())),
    }
}

fn ffill(key: u8, byte: u8, len: u16) -> FaultOp {
    FaultOp::Write {
        key,
        value: ValueSpec::Fill { byte, len },
    }
}

/// Workloads, each run under both sync policies with no fault and with every fault kind at
/// the first, a middle and the last of the I/O operations it takes (found by a fault-free run).
fn ops_faults_seeds() -> Seeds {
    use FaultOp::{DropReopen, Get, Merge, Read, Remove, Reopen, Sync};
    let mut churn: Vec<FaultOp> = (0..KEYS.len() as u8).map(|k| fw(k, &[k; 9])).collect();
    churn.extend([
        fw(1, b"overwrite"),
        Remove { key: 2 },
        Read { key: 2 },
        Sync,
        fw(3, b"after sync"),
        Remove { key: 4 },
        Merge,
        ffill(5, b'x', 120),
        Reopen,
        Remove { key: 5 },
        fw(6, b"six"),
        Merge,
        Get { key: 6 },
        DropReopen,
        fw(0, b"last"),
    ]);
    let sync_points = vec![
        fw(1, b"a"),
        fw(2, b"b"),
        Sync,
        fw(1, b"c"),
        Remove { key: 2 },
        Sync,
        fw(3, b"d"),
        Remove { key: 1 },
        fw(2, b"e"),
    ];
    let mut big = Vec::new();
    for i in 0..5u8 {
        big.push(ffill(i, i, 200 + u16::from(i) * 20));
        if i % 2 == 1 {
            big.push(Remove { key: i - 1 });
        }
    }
    big.extend([Merge, ffill(0, 9, 300), DropReopen, Merge, fw(1, b"")]);
    let merges = vec![
        fw(1, b"one"),
        fw(2, b"two"),
        fw(1, b"uno"),
        Remove { key: 2 },
        Merge,
        fw(3, b"three"),
        Merge,
        Merge,
        Reopen,
        fw(2, b"dos"),
        Merge,
    ];
    let workloads = [
        ("churn", 200u16, churn),
        ("sync-points", 4096, sync_points),
        ("big-values", 64, big),
        ("merges", 120, merges),
    ];
    let faults = [
        ("power-cut", FaultKind::PowerCut),
        ("eio", FaultKind::Eio),
        ("enospc", FaultKind::Enospc),
        ("short-write", FaultKind::ShortWrite),
    ];
    let mut seeds = Seeds::new();
    for (name, limit, ops) in workloads {
        for policy in [Policy::Always, Policy::Never] {
            let input = FaultsInput {
                policy,
                // `limit()` maps the field into 64..=4096: 64 + field % 4033.
                data_file_limit: limit - 64,
                fault: FaultKind::None,
                fault_at: 0,
                recovery_cut: 0,
                keep_handle: false,
                ops: ops.clone(),
            };
            // A workload that fails without a fault is reported with the seeds' checks below.
            let total = catch_unwind(|| bitcask_fuzz::io_ops(&input)).unwrap_or(60);
            let policy_name = format!("{policy:?}").to_lowercase();
            seeds.push((format!("{name}-{policy_name}"), encode_faults(&input)));
            let mut positions = vec![1, total.div_ceil(3), total.div_ceil(3) * 2, total];
            positions.dedup();
            for (fault_name, fault) in faults {
                for (i, &at) in positions.iter().enumerate() {
                    // `fault()` maps the field into 1..=400: 1 + field % 400.
                    let at = at.clamp(1, bitcask_fuzz::faults::MAX_FAULT_AT);
                    let input = FaultsInput {
                        fault,
                        fault_at: u16::try_from(at - 1).unwrap(),
                        // Every other power cut is followed by a cut during the recovery, and
                        // every other error is followed by more operations on the same handle.
                        recovery_cut: if i % 2 == 1 { 3 } else { 0 },
                        keep_handle: i % 2 == 1,
                        ..input.clone()
                    };
                    seeds.push((
                        format!("{name}-{policy_name}-{fault_name}-at-{at}"),
                        encode_faults(&input),
                    ));
                }
            }
        }
    }
    dedup(seeds)
}

/// Drops seeds whose bytes an earlier seed already has.
fn dedup(seeds: Seeds) -> Seeds {
    let mut seen = std::collections::HashSet::new();
    seeds
        .into_iter()
        .filter(|(_, bytes)| seen.insert(bytes.clone()))
        .collect()
}
