//! The fsync failure record: which data file an fsync failed on, and how much of it an earlier
//! fsync had made durable.
//!
//! Format (little-endian), 24 bytes: `{ magic [8] | file_id u32 | durable_len u64 | crc32 u32 }`,
//! the CRC covering every byte before it.

use super::{DecodeResult, FileId, Reader, verify_crc};
use crate::error::CorruptionKind;

const FSYNC_FAILURE_MAGIC: [u8; 8] = *b"\x89BCF\r\n\x1a\n";

/// An fsync of data file `file_id` failed; its first `durable_len` bytes were made durable by an
/// earlier fsync, and whatever follows them may be readable now and gone after the next eviction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsyncFailure {
    /// The data file the fsync failed on.
    pub file_id: FileId,
    /// Bytes of it (header included) that an earlier fsync made durable; a record boundary.
    pub durable_len: u64,
}

impl FsyncFailure {
    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = FSYNC_FAILURE_MAGIC.to_vec();
        out.extend_from_slice(&self.file_id.to_le_bytes());
        out.extend_from_slice(&self.durable_len.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and validates a whole record.
    pub fn decode(bytes: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(bytes);
        if r.take(8)? != FSYNC_FAILURE_MAGIC {
            return Err(CorruptionKind::BadMagic);
        }
        let file_id = r.u32()?;
        let durable_len = r.u64()?;
        let body_len = r.position();
        verify_crc(r.u32()?, &bytes[..body_len])?;
        if !r.is_at_end() {
            return Err(CorruptionKind::BadLength);
        }
        Ok(FsyncFailure {
            file_id,
            durable_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_any_damage() {
        let failure = FsyncFailure {
            file_id: 7,
            durable_len: 4096 + 20,
        };
        let bytes = failure.encode();
        assert_eq!(bytes.len(), 24);
        assert_eq!(FsyncFailure::decode(&bytes), Ok(failure));
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(FsyncFailure::decode(&damaged).is_err(), "byte {at}");
        }
        for len in 0..bytes.len() {
            assert!(FsyncFailure::decode(&bytes[..len]).is_err(), "{len} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            FsyncFailure::decode(&longer),
            Err(CorruptionKind::BadLength)
        );
    }
}
