//! Keys in and out of the command line: hex parsing, escaping for display, and byte sizes.
//!
//! Input: a key argument is taken byte for byte (non-UTF-8 arguments included), except that a
//! `0x` prefix, or the `--hex` flag, makes it hex. Output: a key is printed as it is when it is
//! UTF-8 without control characters or backslashes; otherwise those are escaped (`\\`, `\n`,
//! `\t`, `\r`, `\0`, `\u{..}` for other control characters, `\xNN` for bytes that are not UTF-8),
//! so every key fits on one line and the escaped form is unambiguous. `--hex` prints `0x…` hex.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;

use crate::error::{CliError, CliResult};

/// Writes `bytes` to stdout and flushes; a closed pipe comes back as an error that `main`
/// treats as success.
pub fn write_stdout(bytes: &[u8]) -> CliResult {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(CliError::stdout)
}

/// Text for stdout that goes out in chunks as it grows, so that a long listing (`dump` of a
/// data file) never sits in memory whole. Formatting into it cannot fail: the first error
/// writing stdout is kept, later text is dropped, and [`StdoutText::finish`] returns the error.
#[derive(Default)]
pub struct StdoutText {
    buf: String,
    failed: Option<CliError>,
}

impl StdoutText {
    /// Bytes gathered before they are written out.
    const CHUNK: usize = 64 << 10;

    /// Whether writing stdout failed (a closed pipe, say), so that more text would be lost.
    pub fn failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Writes out what is left; the first error writing stdout, if there was one.
    pub fn finish(mut self) -> CliResult {
        self.write_out();
        self.failed.map_or(Ok(()), Err)
    }

    fn write_out(&mut self) {
        if self.failed.is_none() && !self.buf.is_empty() {
            self.failed = write_stdout(self.buf.as_bytes()).err();
        }
        self.buf.clear();
    }
}

impl std::fmt::Write for StdoutText {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        if self.failed.is_none() {
            self.buf.push_str(text);
            if self.buf.len() >= Self::CHUNK {
                self.write_out();
            }
        }
        Ok(())
    }
}

/// Reads a key from a command-line argument; see the module docs for the syntax.
pub fn parse_key(arg: &OsStr, hex: bool) -> CliResult<Vec<u8>> {
    let bytes = arg.as_bytes();
    let digits = match bytes.strip_prefix(b"0x") {
        Some(rest) => rest,
        None if hex => bytes,
        None => return Ok(bytes.to_vec()),
    };
    decode_hex(digits).map_err(|why| {
        CliError::Usage(format!(
            "the key {:?} is not valid hex: {why} (keys given with --hex or a 0x prefix need \
             an even number of hex digits)",
            arg.to_string_lossy()
        ))
    })
}

/// Decodes hex digits (either case) into bytes.
pub fn decode_hex(digits: &[u8]) -> Result<Vec<u8>, String> {
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of digits ({})", digits.len()));
    }
    digits
        .chunks_exact(2)
        .map(|pair| Ok(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?))
        .collect()
}

fn hex_digit(byte: u8) -> Result<u8, String> {
    match byte {
        b'0'..=b'9' => Ok(byte - b'0'),
        b'a'..=b'f' => Ok(byte - b'a' + 10),
        b'A'..=b'F' => Ok(byte - b'A' + 10),
        other => Err(format!("{:?} is not a hex digit", other as char)),
    }
}

/// `0x` followed by lowercase hex digits.
pub fn encode_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("0x");
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// A key for display: hex when `hex`, else escaped as the module docs say.
pub fn show_key(key: &[u8], hex: bool) -> String {
    if hex {
        encode_hex(key)
    } else {
        escape(key, false)
    }
}

/// Bytes in double quotes, escaped, with quotes inside escaped too (for `dump`).
pub fn quoted(bytes: &[u8]) -> String {
    format!("\"{}\"", escape(bytes, true))
}

/// Escapes `bytes` as the module docs say; with `quote`, `"` is escaped as well.
pub fn escape(bytes: &[u8], quote: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            escape_char(&mut out, c, quote);
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

fn escape_char(out: &mut String, c: char, quote: bool) {
    match c {
        '\\' => out.push_str("\\\\"),
        '"' if quote => out.push_str("\\\""),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        c if c.is_control() => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// `n` and the noun, with an `s` unless `n` is 1: `1 data file`, `3 data files`.
pub fn counted(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A byte count for people: `999 B`, `1.5 KiB`, `12.0 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = [0x00, 0xff, 0x10, 0xab];
        let hex = encode_hex(&bytes);
        assert_eq!(hex, "0x00ff10ab");
        assert_eq!(parse_key(OsStr::new(&hex), false).unwrap(), bytes);
        assert_eq!(parse_key(OsStr::new("00FF10ab"), true).unwrap(), bytes);
    }

    #[test]
    fn plain_keys_are_taken_as_bytes() {
        assert_eq!(parse_key(OsStr::new("user:1"), false).unwrap(), b"user:1");
    }

    #[test]
    fn bad_hex_is_a_usage_error() {
        assert!(matches!(
            parse_key(OsStr::new("0xabc"), false),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            parse_key(OsStr::new("zz"), true),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn escaping_is_unambiguous() {
        assert_eq!(escape(b"plain key", false), "plain key");
        assert_eq!(escape("caf\u{e9}".as_bytes(), false), "caf\u{e9}");
        assert_eq!(escape(b"a\\b\n\xff\x00", false), "a\\\\b\\n\\xff\\0");
        assert_eq!(escape(b"\x1b", false), "\\u{1b}");
        assert_eq!(quoted(b"say \"hi\""), "\"say \\\"hi\\\"\"");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn counts_read_well() {
        assert_eq!(counted(1u64, "data file"), "1 data file");
        assert_eq!(counted(0u64, "record"), "0 records");
    }
}
