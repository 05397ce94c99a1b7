//! The original README's example runs unchanged as `examples/simple.rs`, and what it wrote reads
//! back after a reopen. `cargo test` builds the examples, so the test runs the built binary.

use std::path::PathBuf;
use std::process::Command;

fn example_binary(name: &str) -> PathBuf {
    // The test runs from target/<profile>/deps/; examples are built into target/<profile>/examples/.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    profile_dir.join("examples").join(name)
}

#[test]
fn seed_example_is_verbatim_runs_and_reads_back() {
    let seed = include_str!("../docs/seed-README.md");
    let start = seed.find("```rust\n").unwrap() + "```rust\n".len();
    let end = start + seed[start..].find("```").unwrap();
    let example = include_str!("../examples/simple.rs");
    assert!(
        example.contains(&seed[start..end]),
        "examples/simple.rs drifted from the seed"
    );

    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(example_binary("simple"))
        .current_dir(dir.path())
        .status()
        .expect("examples/simple is built by `cargo test`");
    assert!(status.success());

    let db = bitcask::Database::open(dir.path().join("db1")).unwrap();
    assert_eq!(db.stats().num_keys, 1000);
    for n in 0..1000 {
        let value = db.read(format!("name:{n}").as_bytes()).unwrap();
        assert_eq!(value, format!("Peter Nr. {n}").as_bytes());
    }
}
