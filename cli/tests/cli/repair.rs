//! `repair` of a store with a damaged record in a sealed data file.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use bitcask::format::header::{FORMAT_VERSION, FileHeader, HEADER_LEN};

use crate::support::{
    TestStore, build_multi_file_store, data_files, expected_pairs, flip_byte, locate, pairs_of,
    run_as_nobody, snapshot, store_with_a_saved_tail,
};

/// A multi-file store whose record of `k3` is damaged; returns the damaged file and offset.
fn damaged_store(store: &TestStore) -> (PathBuf, u64) {
    build_multi_file_store(&store.dir);
    let (path, offset) = locate(&store.dir, b"k3");
    flip_byte(&path, offset + 25);
    (path, offset)
}

fn repaired_dir(store: &TestStore) -> PathBuf {
    store.parent().join("db.repaired")
}

#[test]
fn repair_copies_every_valid_record_into_a_store_beside_the_original() {
    let store = TestStore::new();
    damaged_store(&store);
    store.run(&["repair"]).expect(0);
    assert_eq!(pairs_of(&repaired_dir(&store)), expected_pairs(&["k3"]));
}

#[test]
fn repair_reports_the_dropped_byte_range() {
    let store = TestStore::new();
    let (path, offset) = damaged_store(&store);
    let out = store.run(&["repair"]).expect(0).out();
    let record_len = 21 + 2 + 7; // header, "k3", "value-3"
    let range = format!("{} bytes {offset}..{}", path.display(), offset + record_len);
    assert!(out.contains("damaged   1 range, 30 B unreadable"), "{out}");
    assert!(out.contains(&range), "{out}");
    assert!(out.contains("kept      8 live keys"), "{out}");
}

#[test]
fn repair_leaves_the_original_untouched() {
    let store = TestStore::new();
    damaged_store(&store);
    let before = snapshot(&store.dir);
    let out = store.run(&["repair"]).expect(0).out();
    assert_eq!(snapshot(&store.dir), before);
    assert!(out.contains("original  left untouched"), "{out}");
}

#[test]
fn repair_in_place_swaps_the_copy_in_and_keeps_the_original_aside() {
    let store = TestStore::new();
    damaged_store(&store);
    let original = snapshot(&store.dir);
    store.run(&["repair", "--in-place"]).expect(0);
    assert_eq!(pairs_of(&store.dir), expected_pairs(&["k3"]));
    let aside: Vec<PathBuf> = std::fs::read_dir(store.parent())
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains("db.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let moved: Vec<_> = snapshot(&aside[0])
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    let kept: Vec<_> = original.into_iter().map(|(_, bytes)| bytes).collect();
    assert_eq!(moved, kept, "the original's files are kept as they were");
    assert!(!repaired_dir(&store).exists());
}

#[test]
fn repair_out_writes_the_copy_where_asked() {
    let store = TestStore::new();
    damaged_store(&store);
    let out = store.parent().join("elsewhere");
    store
        .run(&[OsStr::new("repair"), OsStr::new("--out"), out.as_os_str()])
        .expect(0);
    assert_eq!(pairs_of(&out), expected_pairs(&["k3"]));
}

#[test]
fn repair_refuses_an_existing_output_directory() {
    let store = TestStore::new();
    damaged_store(&store);
    let taken = repaired_dir(&store);
    std::fs::create_dir(&taken).expect("mkdir");
    std::fs::write(taken.join("keep-me"), b"x").expect("write");
    let run = store.run(&["repair"]).expect(3);
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
    assert_eq!(snapshot(&taken).len(), 1, "nothing written into it");
}

/// A directory without data files (the store's parent, mistyped) is refused before anything is
/// locked, copied or swapped.
#[test]
fn repair_refuses_a_directory_that_holds_no_store() {
    let store = TestStore::new();
    damaged_store(&store);
    let parent = store.parent().to_path_buf();
    let names = |dir: &std::path::Path| -> Vec<_> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        names
    };
    let (parent_before, store_before) = (names(&parent), snapshot(&store.dir));
    let mut command = crate::support::bitcask();
    command
        .arg("--dir")
        .arg(&parent)
        .args(["repair", "--in-place"]);
    let run = crate::support::run(command, b"").expect(3);
    assert!(run.stderr.contains("holds no data files"), "{}", run.stderr);
    assert_eq!(
        names(&parent),
        parent_before,
        "no LOCK file, no copy, nothing moved"
    );
    assert_eq!(snapshot(&store.dir), store_before);
}

#[test]
fn repair_refuses_an_output_inside_the_store() {
    let store = TestStore::new();
    damaged_store(&store);
    let inside = store.dir.join("copy");
    // The store itself exists: it used to be refused as an existing output, with advice to
    // remove it (the damaged original) and exit code 3 (found by review).
    for out in [&inside, &store.dir] {
        let run = store
            .run(&[OsStr::new("repair"), OsStr::new("--out"), out.as_os_str()])
            .expect(2);
        assert!(
            run.stderr.contains("lies inside the store") && !run.stderr.contains("remove it"),
            "{}",
            run.stderr
        );
    }
    assert!(!inside.exists());
}

/// A saved tail's records are listed in the report but not copied: nothing tells whether they
/// are older or newer than what the store holds.
#[test]
fn repair_names_a_saved_tail_and_does_not_copy_it() {
    let store = TestStore::new();
    let (saved, _) = store_with_a_saved_tail(&store.dir);
    let out = store.run(&["repair"]).expect(0).out();
    assert!(
        out.contains(&format!("saved     {}", saved.display())),
        "{out}"
    );
    // The command it points to is one the CLI accepts.
    let hint = format!("`bitcask --dir {} check`", store.dir.display());
    assert!(out.contains(&hint), "{out}");
    let repaired = pairs_of(&repaired_dir(&store));
    let keys: Vec<&[u8]> = repaired.iter().map(|(k, _)| &k[..]).collect();
    assert_eq!(keys, [&b"k0"[..], b"k1", b"k2"]);
}

/// The multi-file store plus a "data file" that cannot be read (a directory in its place, as a
/// stand-in for a bad sector); returns its path.
fn store_with_an_unreadable_file(store: &TestStore) -> PathBuf {
    build_multi_file_store(&store.dir);
    let unreadable = store.dir.join("0000000099.data");
    std::fs::create_dir(&unreadable).unwrap();
    unreadable
}

/// A data file that cannot be read is reported, and every other file is still salvaged.
#[test]
fn repair_salvages_the_other_files_when_one_cannot_be_read() {
    let store = TestStore::new();
    let unreadable = store_with_an_unreadable_file(&store);
    let out = store.run(&["repair"]).expect(0).out();
    assert!(
        out.contains(&format!("unread    {}", unreadable.display())),
        "{out}"
    );
    assert_eq!(pairs_of(&repaired_dir(&store)), expected_pairs(&[]));
}

/// With a file it could not read, the copy may hold older values than the original: `--in-place`
/// refuses to swap it in, and the original stays where it was.
#[test]
fn repair_in_place_refuses_to_swap_when_a_file_could_not_be_read() {
    let store = TestStore::new();
    let unreadable = store_with_an_unreadable_file(&store);
    let run = store.run(&["repair", "--in-place"]).expect(3);
    assert!(run.stderr.contains("not swapped in"), "{}", run.stderr);
    assert!(unreadable.is_dir(), "the original was moved");
    let moved_aside = std::fs::read_dir(store.parent())
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().contains("damaged"));
    assert!(!moved_aside, "the original was moved aside");
    assert_eq!(pairs_of(&repaired_dir(&store)), expected_pairs(&[]));
}

/// The swapped-in copy has the original's permission bits and, where repair may change owners
/// (as root), its owner: the directory's own, and for every file those of the newest data file
/// (the one the service last wrote; sealed files may be read-only), so the service can still
/// open the store and a private store stays private. (The copy used to get the defaults of
/// whoever ran repair.) The modes are ones the umask would not give. Found by review.
#[test]
fn repair_in_place_keeps_the_stores_permissions_and_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    let mode_of = |path: &Path| std::fs::metadata(path).unwrap().mode() & 0o7777;
    let probe = store.parent().join("probe");
    std::fs::create_dir(&probe).unwrap();
    std::fs::write(probe.join("file"), b"").unwrap();
    let unlike = |default: u32, a: u32, b: u32| if default == a { b } else { a };
    let dir_mode = unlike(mode_of(&probe), 0o750, 0o710);
    let file_mode = unlike(mode_of(&probe.join("file")), 0o640, 0o620);
    let as_root = std::fs::metadata(store.parent()).unwrap().uid() == 0;
    let (dir_owner, file_owner) = ((4242, 4343), (4545, 4646));
    let data = data_files(&store.dir);
    assert!(data.len() >= 2, "{data:?}");
    let newest = data.last().unwrap().clone();
    for path in data.iter().chain([&store.dir.join("LOCK")]) {
        let mode = if *path == newest { file_mode } else { 0o444 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        if as_root {
            std::os::unix::fs::chown(path, Some(file_owner.0), Some(file_owner.1)).unwrap();
        }
    }
    std::fs::set_permissions(&store.dir, std::fs::Permissions::from_mode(dir_mode)).unwrap();
    if as_root {
        std::os::unix::fs::chown(&store.dir, Some(dir_owner.0), Some(dir_owner.1)).unwrap();
    }
    store.run(&["repair", "--in-place"]).expect(0);
    assert_eq!(mode_of(&store.dir), dir_mode);
    let swapped: Vec<PathBuf> = snapshot(&store.dir).into_iter().map(|(p, _)| p).collect();
    assert!(swapped.len() > 1, "{swapped:?}");
    for path in &swapped {
        assert_eq!(mode_of(path), file_mode, "{}", path.display());
    }
    if as_root {
        let owner = |path: &Path| {
            let meta = std::fs::metadata(path).unwrap();
            (meta.uid(), meta.gid())
        };
        assert_eq!(owner(&store.dir), dir_owner);
        for path in &swapped {
            assert_eq!(owner(path), file_owner, "{}", path.display());
        }
    }
}

/// Run as a user who may not give the copy the store's owner (`nobody`, through `setpriv`), a
/// plain `repair` still finishes and lists what it could not give under `access`, and
/// `--in-place` refuses to swap the copy in, leaving the store as it was. Skipped unless the
/// tests run as root with `setpriv` at hand.
#[test]
fn repair_as_another_user_reports_the_owner_and_refuses_to_swap() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    let as_nobody = |args: &[&str]| run_as_nobody(&store.dir, args);
    if as_nobody(&["--version"]).is_none() {
        return;
    }
    // The store belongs to a service user; nobody may read it and write beside it.
    let world = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    world(store.parent(), 0o777);
    for (path, _) in snapshot(&store.dir) {
        world(&path, 0o644);
        std::os::unix::fs::chown(&path, Some(4545), Some(4646)).unwrap();
    }
    world(&store.dir, 0o755);
    std::os::unix::fs::chown(&store.dir, Some(4545), Some(4646)).unwrap();
    let before = snapshot(&store.dir);

    let run = as_nobody(&["repair", "--in-place"]).unwrap();
    assert_eq!(run.code, 3, "{}{}", run.out(), run.stderr);
    assert!(
        run.stderr
            .contains("could not all be given the store's permissions and owner"),
        "{}",
        run.stderr
    );
    assert!(run.out().contains("access    "), "{}", run.out());
    assert_eq!(snapshot(&store.dir), before, "the store changed");
    assert_eq!(std::fs::metadata(&store.dir).unwrap().uid(), 4545);

    std::fs::remove_dir_all(store.parent().join("db.repaired")).unwrap();
    let run = as_nobody(&["repair"]).unwrap();
    assert_eq!(run.code, 0, "{}{}", run.out(), run.stderr);
    assert!(
        run.out().contains("the store's owner 4545:4646"),
        "{}",
        run.out()
    );
}

/// An `--out` that is a symbolic link to an empty directory is resolved where the user named
/// it: the copy goes into the directory, and `--in-place` swaps that directory in, not the link.
/// (Reaching the copy's files without following links used to fail on it after the copy.)
#[test]
fn repair_into_an_out_that_is_a_symbolic_link_uses_its_directory() {
    let store = TestStore::new();
    damaged_store(&store);
    let target = store.parent().join("target");
    std::fs::create_dir(&target).unwrap();
    let link = store.parent().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = [OsStr::new("repair"), OsStr::new("--out"), link.as_os_str()];
    store.run(&out).expect(0);
    assert_eq!(pairs_of(&target), expected_pairs(&["k3"]));
    std::fs::remove_dir_all(&target).unwrap();
    std::fs::create_dir(&target).unwrap();
    let in_place = [&out[..], &[OsStr::new("--in-place")]].concat();
    store.run(&in_place).expect(0);
    assert!(!std::fs::symlink_metadata(&store.dir).unwrap().is_symlink());
    assert_eq!(pairs_of(&store.dir), expected_pairs(&["k3"]));
}

/// A copy on another file system (`--out` on tmpfs) cannot be renamed into the store's place:
/// `--in-place` says so before it moves the original at all, so the store's directory is never
/// missing. (It used to move the original aside first, then back.) Skipped where `/dev/shm` is
/// not another file system.
#[test]
fn repair_in_place_with_the_copy_on_another_file_system_leaves_the_original_in_place() {
    use std::os::unix::fs::MetadataExt;
    let store = TestStore::new();
    damaged_store(&store);
    let shm = Path::new("/dev/shm");
    let device = |path: &Path| std::fs::metadata(path).map(|m| m.dev()).ok();
    if device(shm).is_none() || device(shm) == device(store.parent()) {
        eprintln!("skipped: /dev/shm is missing or on the store's file system");
        return;
    }
    let Ok(elsewhere) = tempfile::tempdir_in(shm) else {
        eprintln!("skipped: /dev/shm is not writable");
        return;
    };
    let out = elsewhere.path().join("copy");
    let original = snapshot(&store.dir);
    let run = store
        .run(&[
            OsStr::new("repair"),
            OsStr::new("--in-place"),
            OsStr::new("--out"),
            out.as_os_str(),
        ])
        .expect(3);
    assert!(run.stderr.contains("nothing was swapped"), "{}", run.stderr);
    assert_eq!(snapshot(&store.dir), original, "the original moved");
    assert_eq!(pairs_of(&out), expected_pairs(&["k3"]));
}

/// After `--in-place`, a saved tail is named where it now is: in the moved-aside original.
#[test]
fn repair_in_place_names_a_saved_tail_in_the_moved_original() {
    let store = TestStore::new();
    let (saved, _) = store_with_a_saved_tail(&store.dir);
    let out = store.run(&["repair", "--in-place"]).expect(0).out();
    let line = out
        .lines()
        .find(|l| l.starts_with("saved"))
        .unwrap_or_else(|| panic!("{out}"));
    let named = std::path::PathBuf::from(line.split_whitespace().nth(1).unwrap());
    assert!(named.exists(), "{line}");
    assert_eq!(named.file_name(), saved.file_name());
    assert!(!saved.exists(), "the original was not moved");
}

/// A multi-file store in which the data file holding `k3` says it is in the next format
/// version; returns that file.
fn store_with_a_newer_file(store: &TestStore) -> PathBuf {
    build_multi_file_store(&store.dir);
    let (path, _) = locate(&store.dir, b"k3");
    let mut bytes = std::fs::read(&path).expect("read");
    let header = FileHeader {
        version: FORMAT_VERSION + 1,
        ..FileHeader::decode(&bytes).expect("a header")
    };
    bytes[..HEADER_LEN].copy_from_slice(&header.encode());
    std::fs::write(&path, bytes).expect("write");
    path
}

/// A data file in a newer format version: this build cannot read its records, so a repair
/// would drop them. It refuses, naming the file and the version, and writes nothing.
#[test]
fn repair_refuses_a_store_with_a_newer_format_version() {
    let store = TestStore::new();
    let path = store_with_a_newer_file(&store);
    let before = snapshot(&store.dir);

    let err = store.run(&["repair"]).expect(3).stderr;
    assert!(
        err.contains(&format!("format version {}", FORMAT_VERSION + 1)),
        "{err}"
    );
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(!repaired_dir(&store).exists());
    assert_eq!(snapshot(&store.dir), before);
}

/// `check` does not call a newer format damage or advise `repair`: it lists the file as newer,
/// judges none of its records, and fails with exit 3 saying to use the bitcask that wrote it.
#[test]
fn check_reports_a_newer_format_version_without_calling_it_damage() {
    let store = TestStore::new();
    let path = store_with_a_newer_file(&store);
    let run = store.run(&["check"]).expect(3);
    let out = run.out();
    let newer = format!(
        "NEWER   {}: format version {}",
        path.display(),
        FORMAT_VERSION + 1
    );
    assert!(out.contains(&newer), "{out}");
    assert!(!out.contains("DAMAGE "), "{out}");
    assert!(out.contains("NOT CHECKED (newer format)"), "{out}");
    assert!(run.stderr.contains("newer bitcask"), "{}", run.stderr);
    assert!(!run.stderr.contains("repair` copies"), "{}", run.stderr);
}
