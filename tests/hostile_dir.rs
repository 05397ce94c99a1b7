//! Open of a directory that holds things a store does not put there: a FIFO with a store file's
//! name, data files shared with another directory (symbolic or hard links), a store directory
//! reached through a symbolic link that is later pointed elsewhere, and a `base_dir` under a
//! file. Each gets a clear error naming the problem (and never a hang), or works safely.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use bitcask::{Database, Error, Sharing};
use common::{files_with_ext, open_small};

/// Opens `dir` on another thread; the result, or a panic if open has not returned in 20 s.
fn open_within_time(dir: &Path) -> bitcask::Result<Database> {
    let (sent, received) = mpsc::channel();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || sent.send(Database::open(dir)));
    received
        .recv_timeout(Duration::from_secs(20))
        .expect("open hung")
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status();
    assert!(made.expect("mkfifo runs").success());
}

/// A store with two data files (`0000000001.data` sealed, `0000000002.data` the newest).
fn two_file_store(dir: &Path) {
    let db = open_small(dir, 100);
    db.write(b"first", &[1; 60]).unwrap();
    db.write(b"second", &[2; 60]).unwrap();
    db.close().unwrap();
    assert_eq!(files_with_ext(dir, "data").len(), 2);
}

/// A FIFO named like a data file or a merge record used to block open forever (opening a FIFO
/// for reading waits for a writer), holding the store's lock all the while. Found by review.
#[test]
fn a_fifo_with_a_store_files_name_is_an_error_not_a_hang() {
    for name in ["0000000003.data", "MERGE", "FSYNC_FAILED"] {
        let dir = tempfile::tempdir().unwrap();
        two_file_store(dir.path());
        mkfifo(&dir.path().join(name));
        let err = open_within_time(dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(name) && message.contains("not a regular file"),
            "{name}: {message}"
        );
        // Without the FIFO the store opens, and the lock was released.
        std::fs::remove_file(dir.path().join(name)).unwrap();
        let db = Database::open(dir.path()).unwrap();
        assert_eq!(db.read(b"first").unwrap(), [1; 60]);
    }
}

/// A FIFO named like a hint file is ignored like any unusable hint: its data file is scanned.
#[test]
fn a_fifo_named_like_a_hint_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    two_file_store(dir.path());
    mkfifo(&dir.path().join("0000000001.hint"));
    let db = open_within_time(dir.path()).unwrap();
    assert_eq!(db.read(b"first").unwrap(), [1; 60]);
    assert_eq!(db.read(b"second").unwrap(), [2; 60]);
}

/// A newest data file that is a symbolic link or has another hard link (a store copied with
/// `cp -s` or `cp -al`) is refused before anything changes: open would append to it and could
/// cut its tail, changing the other copy. It used to be adopted and written. Sealed files are
/// never written, so shared ones are fine (a backup of hard links, say). Found by review.
#[test]
fn a_newest_data_file_shared_with_another_directory_is_refused_unchanged() {
    for link in ["symbolic", "hard"] {
        for newest_too in [true, false] {
            let original = tempfile::tempdir().unwrap();
            two_file_store(original.path());
            let copy = tempfile::tempdir().unwrap();
            for data in files_with_ext(original.path(), "data") {
                let name = copy.path().join(data.file_name().unwrap());
                match link {
                    _ if !newest_too && name.ends_with("0000000002.data") => {
                        std::fs::copy(&data, &name).map(|_| ()).unwrap()
                    }
                    "symbolic" => std::os::unix::fs::symlink(&data, &name).unwrap(),
                    _ => std::fs::hard_link(&data, &name).unwrap(),
                }
            }
            let before = common::snapshot(original.path());
            let opened = Database::open(copy.path());
            let what = format!("{link} links, newest shared too: {newest_too}");
            if newest_too {
                let err = opened.unwrap_err();
                let how = match link {
                    "symbolic" => Sharing::SymbolicLink,
                    _ => Sharing::HardLinks(2),
                };
                assert!(
                    matches!(&err, Error::SharedFile { how: found, .. } if *found == how),
                    "{what}: {err}"
                );
                assert!(err.to_string().contains("0000000002.data"), "{err}");
            } else {
                let db = opened.unwrap_or_else(|e| panic!("{what}: {e}"));
                db.write(b"third", b"v").unwrap();
                assert_eq!(db.read(b"first").unwrap(), [1; 60]);
                db.close().unwrap();
            }
            assert_eq!(common::snapshot(original.path()), before, "{what}");
        }
    }
}

/// A store opened through a symbolic link keeps writing into the directory it locked when the
/// link is later pointed elsewhere (it used to follow the link anew for every new file).
#[test]
fn a_store_opened_through_a_symbolic_link_stays_in_its_directory() {
    let parent = tempfile::tempdir().unwrap();
    let (real, other, link) = (
        parent.path().join("real"),
        parent.path().join("other"),
        parent.path().join("current"),
    );
    std::fs::create_dir(&other).unwrap();
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let db = open_small(&link, 100);
    db.write(b"first", &[1; 60]).unwrap();
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&other, &link).unwrap();
    db.write(b"second", &[2; 60]).unwrap(); // rotates: a new data file
    db.close().unwrap();
    assert_eq!(files_with_ext(&real, "data").len(), 2);
    assert!(std::fs::read_dir(&other).unwrap().next().is_none());
}

/// A `base_dir` under a file names the file (it used to be a bare I/O error about the path).
#[test]
fn a_base_dir_under_a_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, b"not a directory").unwrap();
    let err = Database::open(file.join("store")).unwrap_err();
    assert!(
        matches!(&err, Error::NotADirectory(path) if *path == file),
        "{err:?}"
    );
}
