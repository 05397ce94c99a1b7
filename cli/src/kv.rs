//! The scripting commands: `put`, `get`, `delete` and `keys`.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{CliError, CliResult};
use crate::output::{parse_key, show_key, write_stdout};
use crate::sorted_keys::SortedKeys;
use crate::store;

/// `put KEY VALUE`: stores VALUE (or stdin when VALUE is `-`) under KEY.
pub fn put(dir: &Path, key: &OsStr, value: &OsStr, hex: bool) -> CliResult {
    let key = parse_key(key, hex)?;
    let value = if value == "-" {
        read_stdin()?
    } else {
        value.as_bytes().to_vec()
    };
    let db = store::open_or_create(dir)?;
    db.write(&key, &value).map_err(|e| match e {
        // The command line asked for more than a store holds: a usage error, not the store's.
        bitcask::Error::KeyTooLarge { .. } | bitcask::Error::ValueTooLarge { .. } => {
            CliError::Usage(e.to_string())
        }
        e => CliError::store("writing the key")(e),
    })?;
    store::close(&db)
}

fn read_stdin() -> CliResult<Vec<u8>> {
    let mut value = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut value)
        .map_err(|source| CliError::Io {
            doing: "reading the value from".into(),
            target: "standard input".into(),
            source,
        })?;
    Ok(value)
}

/// `get KEY`: writes the raw value to stdout; a missing key is [`CliError::KeyNotFound`].
pub fn get(dir: &Path, key: &OsStr, hex: bool) -> CliResult {
    let key = parse_key(key, hex)?;
    let db = store::open_existing(dir)?;
    let value = db
        .get(&key)
        .map_err(CliError::store("reading the key"))?
        .ok_or_else(|| CliError::KeyNotFound(show_key(&key, hex)))?;
    write_stdout(&value)
}

/// `delete KEY`: removes KEY; a missing key is [`CliError::KeyNotFound`] and writes nothing.
pub fn delete(dir: &Path, key: &OsStr, hex: bool) -> CliResult {
    let key = parse_key(key, hex)?;
    let db = store::open_existing(dir)?;
    let present = db
        .contains_key(&key)
        .map_err(CliError::store("looking up the key"))?;
    if !present {
        return Err(CliError::KeyNotFound(show_key(&key, hex)));
    }
    db.remove(&key)
        .map_err(CliError::store("removing the key"))?;
    store::close(&db)
}

/// `keys [--prefix P]`: the live keys in byte order, one per line, escaped (or hex).
pub fn keys(dir: &Path, prefix: Option<&OsStr>, hex: bool) -> CliResult {
    let prefix = prefix.map(|p| parse_key(p, hex)).transpose()?;
    let db = store::open_existing(dir)?;
    let keys = SortedKeys::new(
        db.keys()
            .filter(|k| prefix.as_deref().is_none_or(|p| k.starts_with(p))),
    );
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for key in keys.iter() {
        writeln!(stdout, "{}", show_key(key, hex)).map_err(CliError::stdout)?;
    }
    stdout.flush().map_err(CliError::stdout)
}
