//! `put`, `get`, `delete`, `keys`, and keys given or printed in hex or escaped.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::support::TestStore;

#[test]
fn put_then_get_prints_the_raw_value() {
    let store = TestStore::new();
    store.run(&["put", "user:1", "Peter"]).expect(0);
    let run = store.run(&["get", "user:1"]).expect(0);
    assert_eq!(run.stdout, b"Peter");
}

#[test]
fn put_dash_reads_a_binary_value_from_stdin() {
    let store = TestStore::new();
    let value = b"bin\x00ary\xff\n";
    store.run_with_stdin(&["put", "blob", "-"], value).expect(0);
    assert_eq!(store.pairs(), vec![(b"blob".to_vec(), value.to_vec())]);
}

#[test]
fn get_of_a_missing_key_exits_1_with_one_line_on_stderr() {
    let store = TestStore::new();
    store.fill(&[(b"present", b"x")]);
    let run = store.run(&["get", "absent"]).expect(1);
    assert!(run.stdout.is_empty());
    assert_eq!(run.stderr, "bitcask: key not found: absent\n");
}

#[test]
fn delete_removes_the_key() {
    let store = TestStore::new();
    store.fill(&[(b"a", b"1"), (b"b", b"2")]);
    store.run(&["delete", "a"]).expect(0);
    assert_eq!(store.pairs(), vec![(b"b".to_vec(), b"2".to_vec())]);
}

#[test]
fn delete_of_a_missing_key_exits_1() {
    let store = TestStore::new();
    store.fill(&[(b"a", b"1")]);
    let run = store.run(&["delete", "zzz"]).expect(1);
    assert!(run.stderr.contains("key not found: zzz"), "{}", run.stderr);
}

#[test]
fn keys_prints_every_key_sorted_one_per_line() {
    let store = TestStore::new();
    store.fill(&[(b"pear", b""), (b"apple", b""), (b"fig", b"")]);
    let run = store.run(&["keys"]).expect(0);
    assert_eq!(run.out(), "apple\nfig\npear\n");
}

#[test]
fn keys_prefix_keeps_only_matching_keys() {
    let store = TestStore::new();
    store.fill(&[(b"user:2", b""), (b"order:1", b""), (b"user:1", b"")]);
    let run = store.run(&["keys", "--prefix", "user:"]).expect(0);
    assert_eq!(run.out(), "user:1\nuser:2\n");
}

#[test]
fn hex_flag_and_0x_prefix_name_the_same_binary_key() {
    let store = TestStore::new();
    store.run(&["put", "0x00ff10", "v"]).expect(0);
    let run = store.run(&["--hex", "get", "00FF10"]).expect(0);
    assert_eq!(run.stdout, b"v");
    assert_eq!(store.pairs(), vec![(vec![0x00, 0xff, 0x10], b"v".to_vec())]);
}

#[test]
fn keys_escapes_keys_that_are_not_plain_utf8() {
    let store = TestStore::new();
    store.fill(&[
        (b"\xffbin", b""),
        (b"two\nlines", b""),
        (b"back\\slash", b""),
    ]);
    let run = store.run(&["keys"]).expect(0);
    assert_eq!(run.out(), "back\\\\slash\ntwo\\nlines\n\\xffbin\n");
}

#[test]
fn keys_with_hex_prints_every_key_as_hex() {
    let store = TestStore::new();
    store.fill(&[(b"\xffbin", b""), (b"a", b"")]);
    let run = store.run(&["--hex", "keys"]).expect(0);
    assert_eq!(run.out(), "0x61\n0xff62696e\n");
}

#[test]
fn a_non_utf8_argument_is_used_byte_for_byte() {
    let store = TestStore::new();
    let key = OsStr::from_bytes(b"k\xfe");
    store
        .run(&[OsStr::new("put"), key, OsStr::new("v")])
        .expect(0);
    assert_eq!(store.pairs(), vec![(b"k\xfe".to_vec(), b"v".to_vec())]);
}

/// A key over the library's limit is a usage error (exit 2) naming the limit, not a store
/// error, and the store stays usable.
#[test]
fn put_of_an_oversized_key_is_a_usage_error() {
    let store = TestStore::new();
    let key = "k".repeat(bitcask::MAX_KEY_LEN + 1);
    let run = store.run(&["put", key.as_str(), "v"]).expect(2);
    assert!(run.stderr.contains("more than the limit"), "{}", run.stderr);
    store.run(&["put", "k", "v"]).expect(0);
}

/// A store whose files its user may write but whose directory it may not (so rotation and
/// merge could not create files) is refused at open, naming the directory, instead of taking
/// writes until its newest file fills. Skipped unless the tests run as root with `setpriv`.
#[test]
fn a_store_in_a_directory_its_user_may_not_write_is_refused_at_open() {
    use std::os::unix::fs::PermissionsExt;
    let store = TestStore::new();
    store.fill(&[(b"k", b"v")]);
    if crate::support::run_as_nobody(&store.dir, &["--version"]).is_none() {
        return;
    }
    let nobody = Some(65534);
    std::fs::set_permissions(store.parent(), std::fs::Permissions::from_mode(0o777)).unwrap();
    for (path, _) in crate::support::snapshot(&store.dir) {
        std::os::unix::fs::chown(&path, nobody, nobody).unwrap();
    }
    // The directory stays root's (0755): nobody may read it, not create files in it.
    let run = crate::support::run_as_nobody(&store.dir, &["put", "k2", "v2"]).unwrap();
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("checking that files can be created in")
            && run.stderr.contains(&*store.dir.to_string_lossy())
            && run.stderr.contains("Permission denied"),
        "{}",
        run.stderr
    );
    assert_eq!(store.pairs(), vec![(b"k".to_vec(), b"v".to_vec())]);
    // Once the directory is the user's, the same store opens and takes the write.
    std::os::unix::fs::chown(&store.dir, nobody, nobody).unwrap();
    let run = crate::support::run_as_nobody(&store.dir, &["put", "k2", "v2"]).unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(store.pairs().len(), 2);
}
