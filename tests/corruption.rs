//! Damage a closed store byte by byte: open either fails with an error or succeeds, and then no
//! read returns bytes that were never written for that key, and a key removed in a sealed file
//! never comes back. Nothing panics. The store holds every kind of file: a merged file with its
//! hint, a sealed writer file (no hint) holding a tombstone of a key that the merged file
//! still holds, and the active file.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bitcask::{Database, Error};
use common::{copy_dir, files_with_ext, open_small};

/// Every value ever written per key.
type History = BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>>;

/// Removed after the merge, in the file that is sealed next: it must never read back.
const REMOVED_IN_A_SEALED_FILE: &[u8] = b"k\x06";

fn build_store(dir: &Path) -> History {
    let mut history = History::new();
    let db = open_small(dir, 400);
    let mut write = |db: &Database, k: &[u8], v: &[u8]| {
        db.write(k, v).unwrap();
        history.entry(k.to_vec()).or_default().insert(v.to_vec());
    };
    for round in 0..3u8 {
        for k in 0..8u8 {
            write(&db, &[b'k', k], &[round * 10 + k; 30]);
        }
    }
    db.remove(b"k\x03").unwrap();
    db.merge().unwrap();
    for k in 0..4u8 {
        write(&db, &[b'k', k], &[100 + k; 30]);
    }
    db.remove(REMOVED_IN_A_SEALED_FILE).unwrap();
    // Past the 400-byte limit: the file with the tombstone is sealed, and one more begins.
    for k in [4u8, 5, 7, 0, 1] {
        write(&db, &[b'k', k], &[110 + k; 30]);
    }
    let files = db.stats().files;
    db.close().unwrap();
    let hints = files_with_ext(dir, "hint").len();
    assert!(
        files.len() >= 3 && hints >= 1 && hints < files.len() - 1,
        "the store should hold a merged file, a sealed writer file and the active file: {files:?}"
    );
    history
}

/// What open did with a damaged store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// It opened, and every check of what it serves passed.
    Opened,
    /// It refused with `Error::Corruption` naming the damaged file.
    Refused,
}

fn check_damaged(dir: &Path, damaged: &Path, history: &History, what: &str) -> Outcome {
    let db = match Database::open(dir) {
        Ok(db) => db,
        // A refusal names the damaged file (or, for a damaged hint, its data file).
        Err(Error::Corruption { path, .. }) => {
            assert_eq!(
                path.file_stem(),
                damaged.file_stem(),
                "{what}: the error names another file"
            );
            return Outcome::Refused;
        }
        Err(other) => panic!("{what}: unexpected error kind: {other}"),
    };
    assert!(
        matches!(db.read(REMOVED_IN_A_SEALED_FILE), Err(Error::KeyNotFound)),
        "{what}: a key removed in a sealed file came back"
    );
    for key in db.keys() {
        let Some(written) = history.get(&key) else {
            panic!("{what}: invented key {key:?}");
        };
        match db.read(&key) {
            Ok(value) => assert!(written.contains(&value), "{what}: wrong bytes for {key:?}"),
            Err(Error::Corruption { .. } | Error::KeyNotFound) => {}
            Err(other) => panic!("{what}: unexpected error {other}"),
        }
    }
    // The store stays usable for writing.
    db.write(b"fresh", b"value").unwrap();
    assert_eq!(db.read(b"fresh").unwrap(), b"value");
    Outcome::Opened
}

/// For every data and hint file of a fresh store, and every damaged version of it that
/// `damage(bytes)` lists, checks a copy of the store holding that version. Both outcomes must
/// occur: a build that refused every damaged store, or opened every one, would otherwise pass
/// without checking the other half.
fn sweep(damage: impl Fn(&[u8]) -> Vec<(String, Vec<u8>)>) {
    let mut outcomes = BTreeMap::<Outcome, usize>::new();
    let original = tempfile::tempdir().unwrap();
    let history = build_store(original.path());
    let mut files = files_with_ext(original.path(), "data");
    files.extend(files_with_ext(original.path(), "hint"));
    for file in files {
        for (how, damaged) in damage(&std::fs::read(&file).unwrap()) {
            let copy = tempfile::tempdir().unwrap();
            copy_dir(original.path(), copy.path());
            std::fs::write(copy.path().join(file.file_name().unwrap()), &damaged).unwrap();
            let what = format!("{} {how}", file.display());
            *outcomes
                .entry(check_damaged(copy.path(), &file, &history, &what))
                .or_default() += 1;
        }
    }
    for outcome in [Outcome::Opened, Outcome::Refused] {
        assert!(
            outcomes.contains_key(&outcome),
            "never {outcome:?}: {outcomes:?}"
        );
    }
}

#[test]
fn single_byte_damage_anywhere_never_returns_wrong_bytes() {
    sweep(|bytes| {
        let mut versions = Vec::new();
        for pos in (0..bytes.len()).step_by(3) {
            for mask in [0x01u8, 0xFF] {
                let mut damaged = bytes.to_vec();
                damaged[pos] ^= mask;
                versions.push((format!("byte {pos} ^ {mask:#x}"), damaged));
            }
        }
        versions
    });
}

/// A sealed file cut exactly at a record boundary is caught too: the next writer file's first
/// seq shows the records missing (`bitcask::format::seq_ranges`).
#[test]
fn truncating_any_file_anywhere_never_returns_wrong_bytes() {
    sweep(|bytes| {
        (0..bytes.len())
            .step_by(5)
            .map(|len| (format!("cut at {len}"), bytes[..len].to_vec()))
            .collect()
    });
}

#[test]
fn garbage_files_with_engine_names_are_errors_not_panics() {
    for garbage in [&b""[..], b"\x89BCK\r\n\x1a\n", &[0u8; 64], &[0xFFu8; 100]] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0000000001.data"), garbage).unwrap();
        std::fs::write(dir.path().join("0000000001.hint"), garbage).unwrap();
        let err = Database::open(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Corruption { .. }), "{err}");
        assert!(err.to_string().contains("0000000001.data"), "{err}");
    }
}
