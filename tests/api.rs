//! The public API's contract, one behaviour per test.

mod common;

use bitcask::{Config, Database, Error, LockHolder, MAX_KEY_LEN, Options};
use common::{files_with_ext, open_small};

#[test]
fn write_read_remove_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.write(b"k", b"v1").unwrap();
    db.write(b"k", b"v2").unwrap();
    assert_eq!(db.read(b"k").unwrap(), b"v2");
    assert_eq!(db.read_cache(b"k").unwrap(), b"v2");
    assert!(db.contains_key(b"k").unwrap());
    db.remove(b"k").unwrap();
    assert!(matches!(db.read(b"k"), Err(Error::KeyNotFound)));
    assert!(db.get(b"k").unwrap().is_none());
    assert!(!db.contains_key(b"k").unwrap());
    db.remove(b"never-written").unwrap();
}

#[test]
fn empty_key_and_empty_value_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.write(b"", b"empty key").unwrap();
    db.write(b"empty value", b"").unwrap();
    db.close().unwrap();
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(db.read(b"").unwrap(), b"empty key");
    assert_eq!(db.read(b"empty value").unwrap(), b"");
}

#[test]
fn oversized_key_is_a_clear_error_and_the_store_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let key = vec![7u8; MAX_KEY_LEN + 1];
    let err = db.write(&key, b"v").unwrap_err();
    assert!(
        matches!(err, Error::KeyTooLarge { len, max } if len == MAX_KEY_LEN + 1 && max == MAX_KEY_LEN)
    );
    assert!(err.to_string().contains("65536"), "{err}");
    let key = vec![7u8; MAX_KEY_LEN];
    db.write(&key, b"v").unwrap();
    assert_eq!(db.read(&key).unwrap(), b"v");
}

#[test]
fn value_larger_than_the_file_limit_gets_a_file_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_small(dir.path(), 1024);
    db.write(b"small", b"x").unwrap();
    let big = vec![0xAB; 10_000];
    db.write(b"big", &big).unwrap();
    db.write(b"after", b"y").unwrap();
    let big_file = db
        .stats()
        .files
        .into_iter()
        .find(|f| f.live_keys == 1 && f.live_bytes > 10_000)
        .expect("a file holding just the big value");
    assert!(big_file.total_bytes < 10_100);
    assert_eq!(db.read(b"big").unwrap(), big);
    db.close().unwrap();
    let db = open_small(dir.path(), 1024);
    assert_eq!(db.read(b"big").unwrap(), big);
    assert_eq!(db.read(b"after").unwrap(), b"y");
}

#[test]
fn data_files_rotate_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_small(dir.path(), 4096);
    for i in 0..200u32 {
        db.write(&i.to_le_bytes(), &[1u8; 100]).unwrap();
    }
    let stats = db.stats();
    assert!(stats.num_data_files >= 5, "{stats:?}");
    assert!(stats.files.iter().all(|f| f.total_bytes <= 4096));
    assert_eq!(
        files_with_ext(dir.path(), "data").len() as u64,
        stats.num_data_files
    );
}

#[test]
fn get_is_zero_copy_for_sealed_and_active_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_small(dir.path(), 256);
    db.write(b"old", b"sealed value").unwrap();
    for i in 0..10u8 {
        db.write(&[i], &[0; 100]).unwrap();
    }
    db.write(b"new", b"active value").unwrap();
    let old = db.get(b"old").unwrap().unwrap();
    assert!(old.is_zero_copy());
    assert_eq!(&*old, b"sealed value");
    let new = db.get(b"new").unwrap().unwrap();
    assert!(new.is_zero_copy());
    assert_eq!(&*new, b"active value");
    // A value written after the handle was taken is visible through the same active map.
    db.write(b"newer", b"appended later").unwrap();
    assert_eq!(&*db.get(b"newer").unwrap().unwrap(), b"appended later");
    assert_eq!(&*new, b"active value");
}

#[test]
fn active_record_beyond_the_reserved_map_is_read_with_pread() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_small(dir.path(), 256);
    db.write(b"small", b"x").unwrap();
    db.write(b"huge", &[7; 4096]).unwrap();
    let huge = db.get(b"huge").unwrap().unwrap();
    assert!(
        !huge.is_zero_copy(),
        "the map is reserved at the 256 B limit"
    );
    assert_eq!(&*huge, &[7; 4096][..]);
}

#[test]
fn mapped_value_outlives_merge_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_small(dir.path(), 256);
    db.write(b"k", b"first").unwrap();
    for i in 0..10u8 {
        db.write(&[i], &[0; 100]).unwrap();
    }
    let value = db.get(b"k").unwrap().unwrap();
    assert!(value.is_zero_copy());
    db.write(b"k", b"second").unwrap();
    db.merge().unwrap();
    db.close().unwrap();
    drop(db);
    assert_eq!(&*value, b"first");
}

#[test]
fn keys_lists_every_live_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_small(dir.path(), 512);
    for i in 0..100u32 {
        db.write(format!("key{i}").as_bytes(), b"v").unwrap();
    }
    for i in 0..100u32 {
        if i % 3 == 0 {
            db.remove(format!("key{i}").as_bytes()).unwrap();
        }
    }
    let mut keys: Vec<Vec<u8>> = db.keys().collect();
    keys.sort();
    let mut expected: Vec<Vec<u8>> = (0..100u32)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("key{i}").into_bytes())
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(db.stats().num_keys, expected.len() as u64);
}

#[test]
fn writing_while_iterating_keys_does_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    for i in 0..50u32 {
        db.write(&i.to_le_bytes(), b"v").unwrap();
    }
    for key in db.keys() {
        db.write(&key, b"w").unwrap();
    }
    assert_eq!(db.read(&7u32.to_le_bytes()).unwrap(), b"w");
}

#[test]
fn stats_account_live_and_dead_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.write(b"a", &[0; 1000]).unwrap();
    let before = db.stats();
    db.write(b"a", &[1; 1000]).unwrap();
    let after = db.stats();
    assert_eq!(after.live_bytes, before.live_bytes);
    assert!(after.dead_bytes >= before.dead_bytes + 1000);
    assert_eq!(after.total_bytes, after.live_bytes + after.dead_bytes);
    let on_disk = || -> u64 {
        files_with_ext(dir.path(), "data")
            .iter()
            .map(|p| p.metadata().unwrap().len())
            .sum()
    };
    // The active file is allocated ahead of its records while it is open, and cut back to
    // them when it is sealed or closed.
    assert!(on_disk() >= after.total_bytes);
    db.close().unwrap();
    assert_eq!(after.total_bytes, on_disk());
}

#[test]
fn second_open_of_the_same_directory_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let err = Database::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Locked {
                holder: LockHolder::ThisProcess,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        // Open resolves the directory's symbolic links (`/var` to `/private/var` on macOS).
        err.to_string().contains(
            &std::fs::canonicalize(dir.path())
                .unwrap()
                .display()
                .to_string()
        ) && err.to_string().contains("in this process"),
        "{err}"
    );
    db.write(b"still", b"usable").unwrap();
}

/// A holder records its process id and host in `LOCK` while it holds the store, and empties it
/// on close.
#[test]
fn the_lock_file_names_its_holder_while_held() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let (pid, host) = holder_note(dir.path());
    assert_eq!(pid, std::process::id().to_string());
    assert!(!host.is_empty() && !host.contains(' '), "{host:?}");
    db.close().unwrap();
    let lock_file = dir.path().join("LOCK");
    assert_eq!(std::fs::read_to_string(&lock_file).unwrap(), "");
}

/// The process id and host of the note in the store's `LOCK` file.
fn holder_note(dir: &std::path::Path) -> (String, String) {
    let note = std::fs::read_to_string(dir.join("LOCK")).unwrap();
    let line = note.strip_suffix('\n').expect("a whole line");
    let (pid, host) = line.split_once(' ').expect("pid and host");
    (pid.to_string(), host.to_string())
}

/// A lock held outside this process's handles (here an flock of its own on the file) is
/// reported with the process its note names, and only if the note was written on this host
/// (and pid namespace) and that process is alive.
#[cfg(target_os = "linux")]
#[test]
fn another_process_holding_the_lock_is_named_if_alive_and_local() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let (_, host) = holder_note(dir.path());
    db.close().unwrap();
    let lock_file = dir.path().join("LOCK");
    let foreign = std::fs::File::options()
        .write(true)
        .open(&lock_file)
        .unwrap();
    foreign.try_lock().unwrap();
    let holder_named_by = |note: String| {
        std::fs::write(&lock_file, note).unwrap();
        assert_eq!(
            bitcask::recorded_lock_holder(dir.path()),
            match Database::open(dir.path()) {
                Err(Error::Locked {
                    holder: LockHolder::Process(pid),
                    ..
                }) => Some(pid),
                Err(Error::Locked {
                    holder: LockHolder::Unknown,
                    ..
                }) => None,
                other => panic!("{other:?}"),
            }
        );
        bitcask::recorded_lock_holder(dir.path())
    };

    // pid 1 (init) is always alive.
    assert_eq!(holder_named_by(format!("1 {host}\n")), Some(1));
    let err = Database::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("in process 1 "), "{err}");
    // A crashed holder leaves its note behind; an id no process has is not named.
    assert_eq!(holder_named_by(format!("{} {host}\n", i32::MAX)), None);
    // Another host's or container's process id means nothing here; nor does a note that
    // claims this very process, whose own handles the registry knows (two containers sharing
    // a volume may both run as process 1).
    assert_eq!(holder_named_by("1 elsewhere/pid:[1]\n".into()), None);
    let mine = std::process::id();
    assert_eq!(holder_named_by(format!("{mine} {host}\n")), None);
    // A note cut short (read while it was being written) or not a note at all.
    assert_eq!(holder_named_by(format!("1 {host}")), None);
    assert_eq!(holder_named_by("not a pid\n".into()), None);

    drop(foreign);
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(holder_note(dir.path()), (mine.to_string(), host));
    db.close().unwrap();
}

#[test]
fn close_releases_the_directory_while_the_handle_lives() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.write(b"k", b"v").unwrap();
    db.close().unwrap();
    let reopened = Database::open(dir.path()).unwrap();
    assert_eq!(reopened.read(b"k").unwrap(), b"v");
    assert!(matches!(db.read(b"k"), Err(Error::Closed)));
    assert!(matches!(db.write(b"k", b"x"), Err(Error::Closed)));
    assert!(matches!(db.close(), Err(Error::Closed)));
    assert!(matches!(db.merge(), Err(Error::Closed)));
    assert_eq!(db.keys().count(), 0);
    assert_eq!(reopened.read(b"k").unwrap(), b"v");
}

#[test]
fn dropping_the_last_handle_releases_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let clone = db.clone();
    db.write(b"k", b"v").unwrap();
    drop(db);
    assert!(matches!(
        Database::open(dir.path()),
        Err(Error::Locked { .. })
    ));
    drop(clone);
    assert_eq!(
        Database::open(dir.path()).unwrap().read(b"k").unwrap(),
        b"v"
    );
}

/// A thread that panics while it holds the last handle skips the orderly close, but the
/// background workers still stop, so the directory is soon free again with the data in it.
#[test]
fn dropping_the_last_handle_in_a_panic_releases_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap(); // background merge on (the default)
    db.write(b"k", b"v").unwrap();
    let panicked = std::thread::spawn(move || {
        let _held = db;
        panic!("the application fails while it holds the store");
    })
    .join();
    assert!(panicked.is_err());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let reopened = loop {
        match Database::open(dir.path()) {
            Err(Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other,
        }
    };
    assert_eq!(reopened.unwrap().read(b"k").unwrap(), b"v");
}

#[test]
fn base_dir_that_is_a_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-dir");
    std::fs::write(&path, b"hello").unwrap();
    let err = Database::open(&path).unwrap_err();
    assert!(matches!(err, Error::NotADirectory(_)), "{err}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[test]
fn missing_directories_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c");
    let db = bitcask::new(Options {
        base_dir: path.clone(),
        data_file_limit: 1 << 20,
    })
    .unwrap();
    db.write(b"k", b"v").unwrap();
    assert!(path.is_dir());
}

#[test]
fn zero_file_limit_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let err = Config::new(dir.path())
        .data_file_limit(0)
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)));
    let err = Config::new("").open().unwrap_err();
    assert!(err.to_string().contains("directory path is empty"), "{err}");
}

#[test]
fn unknown_files_in_the_directory_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    std::fs::write(dir.path().join("12.data"), b"not ours: wrong name shape").unwrap();
    // Temporary names the engine never writes: not its leftovers to delete.
    std::fs::write(dir.path().join("notes.tmp"), b"mine too").unwrap();
    std::fs::write(dir.path().join("0000000001.txt.tmp"), b"and this").unwrap();
    std::fs::create_dir(dir.path().join("scratch.tmp")).unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.write(b"k", b"v").unwrap();
    db.merge().unwrap();
    db.close().unwrap();
    drop(Database::open(dir.path()).unwrap());
    assert_eq!(
        std::fs::read(dir.path().join("notes.txt")).unwrap(),
        b"mine"
    );
    assert!(dir.path().join("12.data").exists());
    assert!(dir.path().join("notes.tmp").exists());
    assert!(dir.path().join("0000000001.txt.tmp").exists());
    assert!(dir.path().join("scratch.tmp").is_dir());
}

#[test]
fn sequence_numbers_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_small(dir.path(), 256);
    for round in 0..5u8 {
        db.write(b"k", &[round; 50]).unwrap();
        db.write(&[round], &[0; 150]).unwrap();
    }
    db.close().unwrap();
    // Newest seq must win on reopen regardless of which file holds which record.
    let db = open_small(dir.path(), 256);
    db.write(b"k", b"after reopen").unwrap();
    db.close().unwrap();
    let db = open_small(dir.path(), 256);
    assert_eq!(db.read(b"k").unwrap(), b"after reopen");
}

#[test]
fn handle_is_send_sync_and_clone() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    assert_traits::<Database>();
}

#[test]
fn out_of_range_merge_policy_and_zero_intervals_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = bitcask::MergePolicy::default();
    policy.trigger_fragmentation = 1.5;
    let err = Config::new(dir.path())
        .merge_policy(policy)
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    // The message names the setting and the value given.
    assert!(
        err.to_string().contains("trigger_fragmentation is 1.5"),
        "{err}"
    );
    // An interval under 1 ms would make a background thread spin on a core.
    let under = bitcask::MIN_BACKGROUND_INTERVAL - std::time::Duration::from_nanos(1);
    for too_short in [std::time::Duration::ZERO, under] {
        let err = Config::new(dir.path())
            .sync_policy(bitcask::SyncPolicy::Interval(too_short))
            .open()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
        let named = format!("SyncPolicy::Interval is {too_short:?}");
        assert!(err.to_string().contains(&named), "{err}");
        let mut policy = bitcask::MergePolicy::default();
        policy.check_interval = too_short;
        let err = Config::new(dir.path())
            .merge_policy(policy)
            .open()
            .unwrap_err();
        let named = format!("check_interval is {too_short:?}");
        assert!(err.to_string().contains(&named), "{err}");
    }
    // The minimum itself is fine for both.
    let mut policy = bitcask::MergePolicy::default();
    policy.check_interval = bitcask::MIN_BACKGROUND_INTERVAL;
    Config::new(dir.path())
        .merge_policy(policy)
        .sync_policy(bitcask::SyncPolicy::Interval(
            bitcask::MIN_BACKGROUND_INTERVAL,
        ))
        .open()
        .unwrap()
        .close()
        .unwrap();
    // Rejected settings take nothing: the directory opens with valid ones.
    Database::open(dir.path()).unwrap();
}

#[test]
fn a_commit_poll_past_its_maximum_is_rejected_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let err = Config::new(dir.path())
        .commit_poll(bitcask::MAX_COMMIT_POLL + std::time::Duration::from_nanos(1))
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    assert!(err.to_string().contains("commit_poll"), "{err}");
    // The maximum itself, and no polling at all, are fine.
    for poll in [bitcask::MAX_COMMIT_POLL, std::time::Duration::ZERO] {
        let db = Config::new(dir.path())
            .commit_poll(poll)
            .sync_policy(bitcask::SyncPolicy::Always)
            .open()
            .unwrap();
        db.write(b"k", b"v").unwrap();
        db.close().unwrap();
    }
}

#[test]
fn a_data_file_limit_past_4_gib_is_rejected_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let err = Config::new(dir.path())
        .data_file_limit(bitcask::MAX_DATA_FILE_LIMIT + 1)
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    let given = format!(
        "data_file_limit is {} bytes",
        bitcask::MAX_DATA_FILE_LIMIT + 1
    );
    assert!(err.to_string().contains(&given), "{err}");
    // The largest limit itself is fine.
    let db = Config::new(dir.path())
        .data_file_limit(bitcask::MAX_DATA_FILE_LIMIT)
        .open()
        .unwrap();
    db.write(b"k", b"v").unwrap();
    assert_eq!(db.read(b"k").unwrap(), b"v");
}

/// Small records are copied into the active file through its map, large ones `pwrite`n; mixed
/// in one file they read back the same before and after a reopen.
#[test]
fn small_and_large_values_interleaved_in_the_active_file_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let value = |n: u32| vec![n as u8; if n.is_multiple_of(3) { 10_000 } else { 50 }];
    let db = Database::open(dir.path()).unwrap();
    for n in 0..300u32 {
        db.write(&n.to_le_bytes(), &value(n)).unwrap();
    }
    for n in 0..300u32 {
        assert_eq!(*db.get(&n.to_le_bytes()).unwrap().unwrap(), value(n)[..]);
    }
    db.close().unwrap();
    let db = Database::open(dir.path()).unwrap();
    for n in 0..300u32 {
        assert_eq!(db.read(&n.to_le_bytes()).unwrap(), value(n));
    }
}

/// A relative directory is resolved once, at open: files go under the directory it named then,
/// even if the process changes its working directory later. (Checked on the simulated file
/// system, which keys files by the path the engine uses, so the test changes no directory.)
#[test]
fn a_relative_directory_is_resolved_at_open() {
    let fs = bitcask::sim::SimFs::new();
    let db = Config::new("relative-store")
        .file_system(fs.clone())
        .open()
        .unwrap();
    db.write(b"k", b"v").unwrap();
    let resolved = std::env::current_dir().unwrap().join("relative-store");
    let files = fs.files(&resolved);
    assert!(
        files
            .keys()
            .any(|path| path.extension().is_some_and(|e| e == "data")),
        "{files:?}"
    );
}

/// `{:?}` of a handle says which store it is and how many keys it holds, never a key or a
/// value: applications print their state, and the store must not end up in their logs.
#[test]
fn debug_of_a_handle_prints_no_key_or_value() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.write(b"secret-key", b"secret-value").unwrap();
    let printed = format!("{db:?}");
    assert!(!printed.contains("115, 101, 99"), "{printed}"); // "sec" as the bytes derive prints
    assert!(!printed.contains("secret"), "{printed}");
    assert!(printed.contains("num_keys: Some(1)"), "{printed}");
    let dir_name = dir.path().file_name().unwrap().to_string_lossy();
    assert!(printed.contains(&*dir_name), "{printed}");
    assert!(printed.contains("closed: false"), "{printed}");
    db.close().unwrap();
    assert!(format!("{db:?}").contains("closed: true"));
}

/// A value over `MAX_VALUE_LEN` is refused naming both lengths, before anything is written, and
/// the store stays usable.
#[test]
fn an_oversized_value_is_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let before = db.stats().total_bytes;
    // Zeroed, so the allocator maps it without touching its pages.
    let value = vec![0u8; bitcask::MAX_VALUE_LEN + 1];
    let err = db.write(b"k", &value).unwrap_err();
    match &err {
        Error::ValueTooLarge { len, max } => {
            assert_eq!((*len, *max), (value.len(), bitcask::MAX_VALUE_LEN));
        }
        other => panic!("expected ValueTooLarge, got {other}"),
    }
    assert!(err.to_string().contains(&value.len().to_string()), "{err}");
    assert_eq!(db.stats().total_bytes, before);
    db.write(b"k", b"v").unwrap();
    assert_eq!(db.read(b"k").unwrap(), b"v");
}

/// Removing a key that is not there appends nothing (no tombstone for a key no file holds).
#[test]
fn removing_a_missing_key_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.write(b"present", b"v").unwrap();
    let before = db.stats().total_bytes;
    db.remove(b"never-written").unwrap();
    db.remove(b"never-written").unwrap();
    assert_eq!(db.stats().total_bytes, before);
    db.remove(b"present").unwrap();
    assert!(
        db.stats().total_bytes > before,
        "a real remove appends a tombstone"
    );
    let after_remove = db.stats().total_bytes;
    db.remove(b"present").unwrap();
    assert_eq!(
        db.stats().total_bytes,
        after_remove,
        "and a second one nothing"
    );
}
