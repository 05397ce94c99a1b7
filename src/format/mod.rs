//! Pure byte codecs for everything the engine writes: file headers, data records, hint files and
//! the merge commit record. No I/O happens here; decoders return a bare [`CorruptionKind`] and the
//! caller attaches the file and offset. `docs/format.md` is the specification these implement.

pub mod commit;
pub mod header;
pub mod hint;
pub mod record;

use crate::error::CorruptionKind;

/// Identifies a data file; files are named after it and ids only ever grow.
pub type FileId = u32;

/// The longest key the engine accepts, in bytes (64 KiB).
pub const MAX_KEY_LEN: usize = 64 * 1024;

/// The longest value the engine accepts, in bytes (1 GiB).
pub const MAX_VALUE_LEN: usize = 1024 * 1024 * 1024;

/// The largest sequence number a record may carry. `u64::MAX` is never written, so that the
/// next seq after any valid record is representable.
pub const MAX_SEQ: u64 = u64::MAX - 1;

/// Whether `seq` may appear in a record: 1 ..= [`MAX_SEQ`] (0 would let zeroed bytes decode).
pub(crate) fn valid_seq(seq: u64) -> bool {
    (1..=MAX_SEQ).contains(&seq)
}

/// Result of a decoder: the error carries no location yet.
pub type DecodeResult<T> = std::result::Result<T, CorruptionKind>;

/// Little-endian field reader over a byte slice that reports `Truncated` instead of panicking.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(CorruptionKind::Truncated)?;
        let out = self
            .bytes
            .get(self.pos..end)
            .ok_or(CorruptionKind::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> DecodeResult<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> DecodeResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

/// Compares a stored checksum against the one computed over `bytes`.
pub(crate) fn verify_crc(expected: u32, bytes: &[u8]) -> DecodeResult<()> {
    let actual = crc32fast::hash(bytes);
    if actual == expected {
        Ok(())
    } else {
        Err(CorruptionKind::ChecksumMismatch { expected, actual })
    }
}
