//! [`ChunkedAppender`]: writes a new file in whole huge-page chunks at aligned offsets, so that
//! the kernel can cache and map the file with huge pages.

use std::io::Result;

use super::vfs::FileHandle;

/// The chunk: one huge page on x86-64 and on arm64 with 4 KiB pages.
pub(crate) const CHUNK: usize = 2 << 20;

/// Writes a file from offset 0 in whole chunks of [`CHUNK`] bytes, each at a multiple of
/// [`CHUNK`], and the tail last.
///
/// Why: a file system with large folios (ext4 and XFS on recent Linux) caches what one such
/// write covers as one 2 MiB folio, and a read-only map of the file then maps each folio with
/// one page-table entry instead of 512, so random reads stop missing the TLB. Merged files are
/// written this way. A `BufWriter` would not do: it flushes whatever it holds when the next
/// write does not fit, and its writes are unaligned from then on.
pub(crate) struct ChunkedAppender {
    file: FileHandle,
    /// Where `pending` starts: a multiple of [`CHUNK`].
    offset: u64,
    /// Bytes not written yet: always less than a chunk, so a large record (values go up to
    /// 1 GiB) is written straight from the caller's slice, not copied.
    pending: Vec<u8>,
}

impl ChunkedAppender {
    /// Writes into `file` from offset 0.
    pub(crate) fn new(file: FileHandle) -> Self {
        ChunkedAppender {
            file,
            offset: 0,
            pending: Vec::with_capacity(CHUNK),
        }
    }

    pub(crate) fn write_all(&mut self, mut bytes: &[u8]) -> Result<()> {
        if !self.pending.is_empty() {
            let fill = bytes.len().min(CHUNK - self.pending.len());
            self.pending.extend_from_slice(&bytes[..fill]);
            bytes = &bytes[fill..];
            if self.pending.len() < CHUNK {
                return Ok(());
            }
            self.file.write_at(&self.pending, self.offset)?;
            self.offset += CHUNK as u64;
            self.pending.clear();
        }
        let whole = bytes.len() / CHUNK * CHUNK;
        if whole > 0 {
            self.file.write_at(&bytes[..whole], self.offset)?;
            self.offset += whole as u64;
        }
        self.pending.extend_from_slice(&bytes[whole..]);
        Ok(())
    }

    /// Writes the tail and returns the file (not synced).
    pub(crate) fn finish(self) -> Result<FileHandle> {
        self.file.write_at(&self.pending, self.offset)?;
        Ok(self.file)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::io::mmap::Mapping;
    use crate::io::vfs::VfsFile;
    use crate::sync::{Arc, Mutex};

    /// A file in memory that remembers where each write went.
    #[derive(Debug, Default)]
    struct Recording {
        bytes: Mutex<Vec<u8>>,
        writes: Mutex<Vec<(u64, usize)>>,
    }

    impl VfsFile for Recording {
        fn read_at(&self, _: &mut [u8], _: u64) -> Result<()> {
            unimplemented!("not read")
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
            let mut bytes = self.bytes.lock();
            let end = offset as usize + buf.len();
            let len = bytes.len().max(end);
            bytes.resize(len, 0);
            bytes[offset as usize..end].copy_from_slice(buf);
            self.writes.lock().push((offset, buf.len()));
            Ok(())
        }
        fn sync(&self) -> Result<()> {
            Ok(())
        }
        fn len(&self) -> Result<u64> {
            Ok(self.bytes.lock().len() as u64)
        }
        fn set_len(&self, _: u64) -> Result<()> {
            unimplemented!("not truncated")
        }
        fn map(&self, _: &Path) -> crate::error::Result<Mapping> {
            unimplemented!("not mapped")
        }
    }

    #[test]
    fn writes_whole_aligned_chunks_then_the_tail_and_loses_no_byte() {
        let file = Arc::new(Recording::default());
        let mut appender = ChunkedAppender::new(file.clone());
        let mut expected = Vec::new();
        // Small records, records larger than two chunks (one of them with nothing pending),
        // and a record ending on a chunk boundary exactly.
        let sizes = (0..40_000).map(|n| 37 + n % 101).chain([2 * CHUNK + 5]);
        for (n, size) in sizes.enumerate() {
            let record = vec![n as u8; size];
            appender.write_all(&record).unwrap();
            expected.extend_from_slice(&record);
        }
        let to_boundary = CHUNK - expected.len() % CHUNK;
        appender.write_all(&vec![3; to_boundary]).unwrap();
        expected.extend(std::iter::repeat_n(3, to_boundary));
        appender.write_all(&vec![5; 3 * CHUNK + 1]).unwrap();
        expected.extend(std::iter::repeat_n(5, 3 * CHUNK + 1));
        assert!(
            appender.pending.capacity() <= CHUNK,
            "large records are not copied"
        );
        let to_boundary = CHUNK - expected.len() % CHUNK;
        appender.write_all(&vec![7; to_boundary]).unwrap();
        expected.extend(std::iter::repeat_n(7, to_boundary));
        appender.write_all(b"tail").unwrap();
        expected.extend_from_slice(b"tail");
        appender.finish().unwrap();

        assert_eq!(*file.bytes.lock(), expected);
        let writes = file.writes.lock();
        let (last, whole) = writes.split_last().unwrap();
        assert!(whole.len() >= 3, "{writes:?}");
        for &(offset, len) in whole {
            assert_eq!((offset % CHUNK as u64, len % CHUNK), (0, 0), "{writes:?}");
        }
        assert_eq!(*last, (expected.len() as u64 - 4, 4));
    }
}
