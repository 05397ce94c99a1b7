//! Stores written by every format version still open, read and merge. Each fixture under
//! `tests/fixtures/` was written by the build its README names, all with one workload; this file
//! repeats that workload, so the expected contents are computed here, not copied from a store.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bitcask::format::commit::MergeCommit;
use bitcask::format::header::{FORMAT_VERSION, FileHeader, HEADER_LEN};
use bitcask::format::hint::HintFile;
use bitcask::{Config, Error};
use common::{contents, copy_dir, files_with_ext, open_small};

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:04}").into_bytes()
}

fn value(i: u32, round: u32) -> Vec<u8> {
    format!("value {i} of round {round}").into_bytes()
}

/// The fixture stores, each with the format version its files were written in.
const FIXTURES: [(&str, u16); 2] = [("format-v1", 1), ("format-v2", 2)];

/// What every fixture holds: the workload in `tests/fixtures/README.md`, replayed on a map.
fn fixture_contents() -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut map = BTreeMap::new();
    for i in 0..240 {
        map.insert(key(i), value(i, 0));
    }
    for i in (0..240).step_by(7) {
        map.remove(&key(i));
    }
    for i in (0..240).step_by(3) {
        map.insert(key(i), value(i, 1));
    }
    // (merge)
    for i in 200..300 {
        map.insert(key(i), value(i, 2));
    }
    for i in (0..300).step_by(11) {
        map.remove(&key(i));
    }
    map
}

/// A copy of `tests/fixtures/<name>` in a temporary directory (open may change a store).
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&Path::new("tests/fixtures").join(name), dir.path());
    dir
}

/// Rewrites the file at `path` with `edit` applied to its bytes.
fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    edit(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

/// The format versions in the headers of the files with extension `ext` in `dir`.
fn versions(dir: &Path, ext: &str) -> Vec<u16> {
    files_with_ext(dir, ext)
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).unwrap();
            FileHeader::decode(&bytes).unwrap().version
        })
        .collect()
}

#[test]
fn every_fixture_opens_with_every_key_and_removal() {
    for (name, version) in FIXTURES {
        let dir = copy_of(name);
        assert_eq!(versions(dir.path(), "hint"), [version; 3], "{name}");

        let db = open_small(dir.path(), 4096);
        let expected = fixture_contents();
        assert_eq!(contents(&db), expected, "{name}");
        assert_eq!(db.stats().num_keys, expected.len() as u64, "{name}");
        assert!(
            db.read(&key(0)).is_err(),
            "{name}: removed before the merge"
        );
        assert!(
            db.read(&key(297)).is_err(),
            "{name}: removed after the merge"
        );
    }
}

#[test]
fn every_fixture_merges_into_current_version_files_and_reopens() {
    for (name, _) in FIXTURES {
        let dir = copy_of(name);
        let mut expected = fixture_contents();
        let db = open_small(dir.path(), 4096);
        for i in (1..300).step_by(5) {
            db.write(&key(i), &value(i, 3)).unwrap();
            expected.insert(key(i), value(i, 3));
        }
        db.merge().unwrap();
        db.close().unwrap();

        let hints = versions(dir.path(), "hint");
        assert!(!hints.is_empty(), "{name}");
        assert!(
            hints.iter().all(|&v| v == FORMAT_VERSION),
            "{name}: {hints:?}"
        );
        for path in files_with_ext(dir.path(), "hint") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(HintFile::decode(&bytes).is_ok(), "{}", path.display());
        }
        let db = open_small(dir.path(), 4096);
        assert_eq!(contents(&db), expected, "{name}");
    }
}

/// Open trusts a valid hint instead of scanning its data file, so damage to a value in a merged
/// file is only found when that value is read; a scan would refuse to open the store. So a store
/// that opens with exactly that one key unreadable was indexed from its hint, in each version.
#[test]
fn every_fixtures_hints_are_used_not_just_tolerated() {
    for (name, _) in FIXTURES {
        let dir = copy_of(name);
        rewrite(&dir.path().join("0000000007.data"), |bytes| {
            *bytes.last_mut().unwrap() ^= 0xFF; // the last byte of the file's last value
        });

        let db = open_small(dir.path(), 4096);
        let unreadable: Vec<_> = db.keys().filter(|k| db.read(k).is_err()).collect();
        assert_eq!(unreadable.len(), 1, "{name}: {unreadable:?}");
        assert_eq!(
            db.stats().num_keys,
            fixture_contents().len() as u64,
            "{name}"
        );
    }
}

/// A store holding a data file of a newer format version is refused with an error that names
/// the file and the version, before open finishes a merge or deletes a temporary file: every
/// file is left as it was.
#[test]
fn a_store_in_a_newer_format_is_refused_and_left_as_it_was() {
    let dir = copy_of("format-v1");
    let newer = dir.path().join("0000000010.data");
    mark_as_next_version(&newer);
    std::fs::write(dir.path().join("0000000011.data.tmp"), b"a newer build's").unwrap();
    let before = snapshot(dir.path());

    let err = Config::new(dir.path()).open().unwrap_err();
    match &err {
        Error::UnsupportedFormat { path, version } => {
            assert_eq!((path, *version), (&newer, FORMAT_VERSION + 1));
        }
        other => panic!("{other}"),
    }
    let message = err.to_string();
    assert!(message.contains("do not `repair`"), "{message}");
    assert_eq!(snapshot(dir.path()), before);
}

/// A data file too short to hold a header does not stop the check at the files after it: the
/// newer one is still found and refused, and nothing changes.
#[test]
fn a_newer_format_is_found_past_a_file_too_short_to_read() {
    let dir = copy_of("format-v1");
    let short = dir.path().join("0000000006.data");
    rewrite(&short, |bytes| bytes.truncate(HEADER_LEN / 2));
    let newer = dir.path().join("0000000010.data");
    mark_as_next_version(&newer);
    let before = snapshot(dir.path());

    assert_refused_as_newer(dir.path(), &newer, &before);
}

/// The same when the newer file is the output of a merge a newer build committed and did not
/// finish: open must not rename it into place and delete the merge's input first.
#[test]
fn a_newer_format_merge_output_is_refused_before_the_merge_is_finished() {
    let dir = copy_of("format-v1");
    let output = dir.path().join("0000000011.data.tmp");
    let mut bytes = std::fs::read(dir.path().join("0000000007.data")).unwrap();
    let header = FileHeader {
        version: FORMAT_VERSION + 1,
        file_id: 11,
        ..FileHeader::decode(&bytes).unwrap()
    };
    bytes[..HEADER_LEN].copy_from_slice(&header.encode());
    std::fs::write(&output, bytes).unwrap();
    let commit = MergeCommit {
        inputs: vec![7],
        outputs: vec![11],
    };
    std::fs::write(dir.path().join("MERGE"), commit.encode()).unwrap();
    let before = snapshot(dir.path());

    assert_refused_as_newer(dir.path(), &output, &before);
}

/// Rewrites the header of the data file at `path` to say the next format version.
fn mark_as_next_version(path: &Path) {
    rewrite(path, |bytes| {
        let header = FileHeader {
            version: FORMAT_VERSION + 1,
            ..FileHeader::decode(bytes).unwrap()
        };
        bytes[..HEADER_LEN].copy_from_slice(&header.encode());
    });
}

/// Open refuses `dir` for `newer`, a file in the next format version, and leaves every file as
/// `before` has it.
fn assert_refused_as_newer(
    dir: &Path,
    newer: &Path,
    before: &BTreeMap<std::ffi::OsString, Vec<u8>>,
) {
    match Config::new(dir).open() {
        Err(Error::UnsupportedFormat { path, version }) => {
            assert_eq!((path.as_path(), version), (newer, FORMAT_VERSION + 1));
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened a store holding {}", newer.display()),
    }
    assert_eq!(&snapshot(dir), before);
}

/// Every file in `dir` but the lock, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<std::ffi::OsString, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| !path.ends_with("LOCK"))
        .map(|path| {
            (
                path.file_name().unwrap().to_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect()
}
