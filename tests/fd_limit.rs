//! A store with far more data files than the process may open file descriptors: sealed files
//! need no descriptor once mapped, so opening, reading, writing and merging still work; with a
//! limit too low for even that, open fails with a clear error instead of a panic. The work runs
//! in a child process started under `ulimit -n`.

use std::path::Path;
use std::process::Command;

use bitcask::Config;

const FILES: u32 = 300;

fn config(dir: &Path) -> Config {
    Config::new(dir)
        .data_file_limit(256)
        .background_merge(false)
}

#[test]
#[ignore = "the child process of the fd-limit tests"]
fn fd_limit_child() {
    let Ok(dir) = std::env::var("BITCASK_FD_DIR") else {
        return;
    };
    match config(Path::new(&dir)).open() {
        Ok(db) => {
            for i in 0..FILES {
                assert_eq!(db.read(&i.to_le_bytes()).unwrap(), [i as u8; 200]);
            }
            db.write(b"more", &[1; 200]).unwrap();
            db.merge().unwrap();
            assert_eq!(db.read(b"more").unwrap(), [1; 200]);
            db.close().unwrap();
            println!("outcome: ok");
        }
        Err(e) => println!("outcome: error: {e}"),
    }
}

/// Runs the child under `ulimit -n limit`; returns its outcome line.
fn child_outcome(dir: &Path, limit: u32) -> String {
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n {limit} && exec \"$0\" --ignored --exact fd_limit_child --nocapture --test-threads=1"
        ))
        .arg(exe)
        .env("BITCASK_FD_DIR", dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed (panic?): {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|l| Some(&l[l.find("outcome: ")? + "outcome: ".len()..]))
        .unwrap_or_else(|| panic!("no outcome in: {stdout}"))
        .to_string()
}

fn build_store(dir: &Path) {
    let db = config(dir).open().unwrap();
    for i in 0..FILES {
        db.write(&i.to_le_bytes(), &[i as u8; 200]).unwrap();
    }
    assert!(db.stats().num_data_files >= u64::from(FILES));
    db.close().unwrap();
}

#[test]
fn many_more_files_than_descriptors_work() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path());
    assert_eq!(child_outcome(dir.path(), 64), "ok");
}

#[test]
fn too_few_descriptors_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path());
    // stdin, stdout and stderr take three; the lock file takes the fourth.
    let outcome = child_outcome(dir.path(), 4);
    assert!(outcome.starts_with("error: "), "{outcome}");
    assert!(outcome.contains("Too many open files"), "{outcome}");
}
