//! `stats`: key count and live/dead bytes, overall and per data file, as a table or as JSON.

use std::path::Path;

use bitcask::Stats;
use serde_json::json;

use crate::error::CliResult;
use crate::output::{human_bytes, write_stdout};
use crate::store;

/// Prints the store's figures to stdout.
pub fn run(dir: &Path, as_json: bool) -> CliResult {
    let db = store::open_existing(dir)?;
    let stats = db.stats();
    store::close(&db)?;
    let text = if as_json {
        to_json(dir, &stats)
    } else {
        table(dir, &stats)
    };
    write_stdout(text.as_bytes())
}

/// The JSON document: the library's [`Stats`] fields, with `files` as an array of objects.
fn to_json(dir: &Path, stats: &Stats) -> String {
    let files: Vec<_> = stats
        .files
        .iter()
        .map(|f| {
            json!({
                "file_id": f.file_id,
                "active": f.active,
                "total_bytes": f.total_bytes,
                "live_bytes": f.live_bytes,
                "dead_bytes": f.dead_bytes,
                "live_keys": f.live_keys,
            })
        })
        .collect();
    let doc = json!({
        "dir": dir.display().to_string(),
        "num_keys": stats.num_keys,
        "num_data_files": stats.num_data_files,
        "live_bytes": stats.live_bytes,
        "dead_bytes": stats.dead_bytes,
        "total_bytes": stats.total_bytes,
        "files": files,
    });
    format!("{doc:#}\n")
}

fn table(dir: &Path, stats: &Stats) -> String {
    let mut out = String::new();
    let row = |out: &mut String, name: &str, value: String| {
        out.push_str(&format!("{name:<12} {value}\n"));
    };
    row(&mut out, "store", dir.display().to_string());
    row(&mut out, "keys", stats.num_keys.to_string());
    row(&mut out, "data files", stats.num_data_files.to_string());
    row(&mut out, "live bytes", sized(stats.live_bytes));
    row(&mut out, "dead bytes", sized(stats.dead_bytes));
    row(&mut out, "total bytes", sized(stats.total_bytes));
    out.push_str(&format!(
        "\n{:<10}  {:>6}  {:>10}  {:>10}  {:>10}  {:>9}\n",
        "file", "active", "total", "live", "dead", "live keys"
    ));
    for f in &stats.files {
        out.push_str(&format!(
            "{:010}  {:>6}  {:>10}  {:>10}  {:>10}  {:>9}\n",
            f.file_id,
            if f.active { "yes" } else { "no" },
            human_bytes(f.total_bytes),
            human_bytes(f.live_bytes),
            human_bytes(f.dead_bytes),
            f.live_keys
        ));
    }
    out
}

fn sized(bytes: u64) -> String {
    format!("{} ({bytes} bytes)", human_bytes(bytes))
}
