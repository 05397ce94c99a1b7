//! The original README's example (docs/seed-README.md), kept verbatim below this header;
//! tests/seed_example.rs checks that it stays so. Receivers are `&self` now, so its
//! `let mut db` no longer needs `mut`, and `use bitcask;` is redundant in edition 2018+.
#![allow(unused_mut, clippy::single_component_path_imports)]

use bitcask;
use bytesize::ByteSize;

fn main() {
    let options = bitcask::Options {
        base_dir: std::path::PathBuf::from("./db1"),
        data_file_limit: ByteSize::mb(10).as_u64(),
    };

    let db = bitcask::new(options);
    if let Err(err_msg) = db {
        println!("{}", err_msg);
        std::process::exit(1);
    }
    let mut db = db.unwrap();

    for n in 0..1000 {
        let name = format!("Peter Nr. {}", n);
        let key = format!("name:{}", n);

        db.write(key.as_bytes(), name.as_bytes()).unwrap();
    }

    db.close().unwrap();
}
