//! A child created by `fork` shares the parent's open store: its lock (an `flock` belongs to the
//! open file description), its files and its maps. A child that drops its copy of the handle,
//! as one that returns or unwinds does, must leave the parent's store working: not cut the
//! parent's active file under its writer, not release the parent's lock. A child that uses the
//! handle is refused: its writes would land at the parent's offset, through the shared map.
//! (Its own test binary, so that fewer threads are running when it forks.)

// fork, _exit and waitpid are what this test is about.
#![allow(unsafe_code)]

use bitcask::{Config, Database, Error};

/// Forks; the child runs `child` and exits with its code, without running anything else. Returns
/// the child's exit code.
fn in_child(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child runs only `child`, then `_exit`s; the parent waits for it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = child();
        // SAFETY: ends the child without running destructors or atexit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "the child did not exit normally");
    libc::WEXITSTATUS(status)
}

/// 0 if the store's `LOCK` is still locked (by the parent), 1 if this process could take it.
fn lock_is_held(dir: &std::path::Path) -> i32 {
    let file = std::fs::File::open(dir.join("LOCK")).unwrap();
    match file.try_lock() {
        Ok(()) => 1,
        Err(_) => 0,
    }
}

#[test]
fn a_child_that_drops_the_handle_leaves_the_parents_store_working() {
    let dir = tempfile::tempdir().unwrap();
    let db = Config::new(dir.path())
        .background_merge(false)
        .open()
        .unwrap();
    db.write(b"before", &[1; 100]).unwrap();
    let code = in_child(|| {
        // What a child returning from `main` does to the handle it inherited: drops it.
        // SAFETY: the child takes the parent's handle by value and `_exit`s without touching the
        // original again, so it is dropped once in this process.
        drop(unsafe { std::ptr::read(&db) });
        lock_is_held(dir.path())
    });
    assert_eq!(code, 0, "the child released the parent's lock");
    let code = in_child(|| i32::from(!matches!(db.close(), Err(Error::ForkedChild { .. }))));
    assert_eq!(code, 0, "close in the child was not refused");
    // The parent's writer appends past the mark it had at the fork, through its map of the space
    // allocated ahead: had the child cut the file there, this would fault (SIGBUS).
    for i in 0..2000u32 {
        db.write(&i.to_le_bytes(), &[2; 100]).unwrap();
    }
    assert_eq!(db.read(b"before").unwrap(), [1; 100]);
    assert_eq!(in_child(|| lock_is_held(dir.path())), 0);
    db.close().unwrap();
    let reopened = Database::open(dir.path()).unwrap();
    assert_eq!(reopened.read(&1999u32.to_le_bytes()).unwrap(), [2; 100]);
}

/// Found by review: only `close` and drop checked the process, so a child's `write` appended at
/// the offset the parent's writer had at the fork, through the map both share: the parent's next
/// record went over it, or it over a record the parent had acknowledged meanwhile.
#[test]
fn a_child_that_uses_the_handle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Config::new(dir.path())
        .background_merge(false)
        .open()
        .unwrap();
    db.write(b"parent", b"before the fork").unwrap();
    let refused = |result: bitcask::Result<()>| matches!(result, Err(Error::ForkedChild { .. }));
    let code = in_child(|| {
        let calls = [
            refused(db.write(b"child", b"over the parent's next record")),
            refused(db.remove(b"parent")),
            refused(db.read(b"parent").map(drop)),
            refused(db.get(b"parent").map(drop)),
            refused(db.sync()),
            refused(db.merge()),
            db.keys().next().is_none(),
            db.stats().num_keys == 0,
        ];
        // Bit i set: call i was not refused.
        calls
            .iter()
            .enumerate()
            .map(|(i, &was_refused)| i32::from(!was_refused) << i)
            .sum()
    });
    assert_eq!(code, 0, "calls in the child that were not refused (bits)");
    db.write(b"parent 2", b"after the fork").unwrap();
    db.close().unwrap();
    let reopened = Database::open(dir.path()).unwrap();
    assert_eq!(reopened.read(b"parent").unwrap(), b"before the fork");
    assert_eq!(reopened.read(b"parent 2").unwrap(), b"after the fork");
    assert!(matches!(reopened.read(b"child"), Err(Error::KeyNotFound)));
}
