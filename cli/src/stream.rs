//! The export stream: every live pair of a store in a self-checking, binary-safe byte stream.
//!
//! Format (integers little-endian):
//!
//! ```text
//! magic   "bitcask-export v1\n"                        18 bytes
//! pair*   'P' | key_len u32 | key | value_len u32 | value
//! end     'E' | pair_count u64 | crc32 u32
//! ```
//!
//! The CRC-32 (IEEE, as `crc32fast` computes it) covers every byte of the stream before the
//! CRC field itself, magic and end tag included. Nothing may follow the end record. Keys are at
//! most [`bitcask::MAX_KEY_LEN`] bytes and values at most [`bitcask::MAX_VALUE_LEN`] bytes, so a
//! damaged length cannot make a reader allocate more than that. A stream is valid only if it
//! ends with an end record whose count and CRC match, so a truncated export never passes.

use std::io::{self, Read, Write};

use bitcask::{MAX_KEY_LEN, MAX_VALUE_LEN};

/// The first bytes of every export stream.
pub const MAGIC: &[u8; 18] = b"bitcask-export v1\n";
const TAG_PAIR: u8 = b'P';
const TAG_END: u8 = b'E';

/// Writes an export stream.
#[derive(Debug)]
pub struct StreamWriter<W: Write> {
    inner: W,
    hasher: crc32fast::Hasher,
    count: u64,
}

impl<W: Write> StreamWriter<W> {
    /// Starts a stream by writing the magic bytes.
    pub fn new(inner: W) -> io::Result<Self> {
        let mut writer = StreamWriter {
            inner,
            hasher: crc32fast::Hasher::new(),
            count: 0,
        };
        writer.emit(MAGIC)?;
        Ok(writer)
    }

    /// Appends one pair. The library's limits guarantee both lengths fit in a `u32`.
    pub fn pair(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.emit(&[TAG_PAIR])?;
        self.emit(&(key.len() as u32).to_le_bytes())?;
        self.emit(key)?;
        self.emit(&(value.len() as u32).to_le_bytes())?;
        self.emit(value)?;
        self.count += 1;
        Ok(())
    }

    /// Writes the end record and returns the inner writer (not flushed).
    pub fn finish(mut self) -> io::Result<W> {
        self.emit(&[TAG_END])?;
        self.emit(&self.count.to_le_bytes())?;
        let crc = self.hasher.clone().finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        Ok(self.inner)
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.inner.write_all(bytes)
    }
}

/// One key-value pair, borrowed from the reader's buffers.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// Why a stream could not be read.
#[derive(Debug)]
pub enum StreamError {
    /// Reading failed.
    Io(io::Error),
    /// The bytes are not a valid stream.
    Invalid {
        /// Offset in the stream where the problem starts.
        offset: u64,
        /// What is wrong.
        problem: String,
    },
}

/// Reads an export stream pair by pair, validating as it goes.
#[derive(Debug)]
pub struct StreamReader<R: Read> {
    source: Source<R>,
    key: Vec<u8>,
    value: Vec<u8>,
    count: u64,
    done: bool,
}

impl<R: Read> StreamReader<R> {
    /// Starts reading; fails unless the stream begins with [`MAGIC`].
    pub fn new(inner: R) -> Result<Self, StreamError> {
        let mut source = Source {
            inner,
            hasher: crc32fast::Hasher::new(),
            offset: 0,
        };
        let mut magic = [0u8; MAGIC.len()];
        source.fill(&mut magic, "the magic bytes")?;
        if &magic != MAGIC {
            return Err(invalid(0, "it does not start with \"bitcask-export v1\""));
        }
        Ok(StreamReader {
            source,
            key: Vec::new(),
            value: Vec::new(),
            count: 0,
            done: false,
        })
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.source.offset
    }

    /// The next pair, or `None` after a valid end record.
    pub fn next_pair(&mut self) -> Result<Option<Pair<'_>>, StreamError> {
        if self.done {
            return Ok(None);
        }
        let at = self.source.offset;
        let mut tag = [0u8];
        self.source
            .fill(&mut tag, "the next record (no end record)")?;
        match tag[0] {
            TAG_PAIR => {
                self.source.field(&mut self.key, MAX_KEY_LEN, "key")?;
                self.source.field(&mut self.value, MAX_VALUE_LEN, "value")?;
                self.count += 1;
                Ok(Some((&self.key, &self.value)))
            }
            TAG_END => {
                self.finish()?;
                Ok(None)
            }
            other => Err(invalid(at, &format!("unknown record tag {other:#04x}"))),
        }
    }

    fn finish(&mut self) -> Result<(), StreamError> {
        let count_at = self.source.offset;
        let count = u64::from_le_bytes(self.source.array("the pair count")?);
        let computed = self.source.hasher.clone().finalize();
        let stored = u32::from_le_bytes(self.source.array("the checksum")?);
        if count != self.count {
            let problem = format!(
                "the end record counts {count} pairs, the stream holds {}",
                self.count
            );
            return Err(invalid(count_at, &problem));
        }
        if stored != computed {
            let problem =
                format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})");
            return Err(invalid(count_at + 8, &problem));
        }
        let mut extra = [0u8];
        match self.source.inner.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => return Err(invalid(self.source.offset, "bytes follow the end record")),
            Err(e) => return Err(StreamError::Io(e)),
        }
        self.done = true;
        Ok(())
    }
}

/// The reader with the running checksum and offset.
#[derive(Debug)]
struct Source<R> {
    inner: R,
    hasher: crc32fast::Hasher,
    offset: u64,
}

impl<R: Read> Source<R> {
    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), StreamError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.consumed(buf);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(truncated(self.offset, what)),
            Err(e) => Err(StreamError::Io(e)),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], StreamError> {
        let mut out = [0u8; N];
        self.fill(&mut out, what)?;
        Ok(out)
    }

    /// Reads a `u32` length (at most `max`) and that many bytes into `buf`. The buffer grows
    /// only as bytes arrive, so a damaged length cannot allocate what the stream does not hold.
    fn field(&mut self, buf: &mut Vec<u8>, max: usize, what: &str) -> Result<(), StreamError> {
        let len_at = self.offset;
        let len = u32::from_le_bytes(self.array(&format!("a {what} length"))?) as usize;
        if len > max {
            let problem = format!("{what} length {len} exceeds the limit of {max} bytes");
            return Err(invalid(len_at, &problem));
        }
        buf.clear();
        let read = (&mut self.inner)
            .take(len as u64)
            .read_to_end(buf)
            .map_err(StreamError::Io)?;
        if read < len {
            return Err(truncated(self.offset + read as u64, &format!("a {what}")));
        }
        self.consumed(buf);
        Ok(())
    }

    fn consumed(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.offset += bytes.len() as u64;
    }
}

fn invalid(offset: u64, problem: &str) -> StreamError {
    StreamError::Invalid {
        offset,
        problem: problem.to_string(),
    }
}

fn truncated(offset: u64, what: &str) -> StreamError {
    invalid(
        offset,
        &format!("the stream ends inside {what}: it is truncated"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut writer = StreamWriter::new(Vec::new()).unwrap();
        for (k, v) in pairs {
            writer.pair(k, v).unwrap();
        }
        writer.finish().unwrap()
    }

    type Owned = Vec<(Vec<u8>, Vec<u8>)>;

    fn read_all(bytes: &[u8]) -> Result<Owned, StreamError> {
        let mut reader = StreamReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some((k, v)) = reader.next_pair()? {
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    #[test]
    fn round_trips_binary_pairs() {
        let pairs: [(&[u8], &[u8]); 3] = [(b"", b""), (b"\x00\xff\n", b"E\x00P"), (b"k", b"v")];
        let read = read_all(&stream(&pairs)).unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read[1], (b"\x00\xff\n".to_vec(), b"E\x00P".to_vec()));
    }

    #[test]
    fn rejects_every_truncation_and_bit_flip() {
        let bytes = stream(&[(b"key", b"value"), (b"other", b"")]);
        for len in 0..bytes.len() {
            assert!(read_all(&bytes[..len]).is_err(), "len {len}");
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(read_all(&flipped).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut bytes = stream(&[(b"k", b"v")]);
        bytes.push(0);
        assert!(matches!(read_all(&bytes), Err(StreamError::Invalid { .. })));
    }
}
