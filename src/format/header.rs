//! The fixed header at the start of every data and hint file.
//!
//! Format (20 bytes, little-endian):
//! `{ magic [8] | version u16 | kind u8 | reserved u8 = 0 | file_id u32 | crc32 u32 }`
//! The CRC covers the 16 bytes before it.

use super::{DecodeResult, FileId, Reader, verify_crc};
use crate::error::CorruptionKind;

/// PNG-style magic: a non-ASCII byte, the name, CR LF, EOF and LF catch text-mode mangling.
pub const MAGIC: [u8; 8] = *b"\x89BCK\r\n\x1a\n";

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Length of the encoded header in bytes.
pub const HEADER_LEN: usize = 20;

/// What a file holds; stored in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Records appended by the writer; the newest such file may end in a torn record.
    Data = 1,
    /// Records copied by a merge; complete and synced before they were committed.
    Merged = 2,
    /// The hint file for the data file of the same id.
    Hint = 3,
}

impl FileKind {
    fn from_byte(byte: u8) -> DecodeResult<Self> {
        match byte {
            1 => Ok(FileKind::Data),
            2 => Ok(FileKind::Merged),
            3 => Ok(FileKind::Hint),
            other => Err(CorruptionKind::UnknownValue(other.into())),
        }
    }
}

/// A decoded file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// What the file holds.
    pub kind: FileKind,
    /// The id the file was created under (its name must agree).
    pub file_id: FileId,
}

impl FileHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[10] = self.kind as u8;
        out[12..16].copy_from_slice(&self.file_id.to_le_bytes());
        let crc = crc32fast::hash(&out[..16]);
        out[16..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and validates the header at the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(bytes);
        if r.take(8)? != MAGIC {
            return Err(CorruptionKind::BadMagic);
        }
        let version = r.u16()?;
        let kind = r.u8()?;
        let reserved = r.u8()?;
        let file_id = r.u32()?;
        let crc = r.u32()?;
        verify_crc(crc, &bytes[..16])?;
        if version != FORMAT_VERSION {
            return Err(CorruptionKind::UnsupportedVersion(version));
        }
        if reserved != 0 {
            return Err(CorruptionKind::UnknownValue(reserved.into()));
        }
        Ok(FileHeader {
            kind: FileKind::from_byte(kind)?,
            file_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for kind in [FileKind::Data, FileKind::Merged, FileKind::Hint] {
            let header = FileHeader { kind, file_id: 77 };
            assert_eq!(FileHeader::decode(&header.encode()), Ok(header));
        }
    }

    #[test]
    fn rejects_every_truncation_and_bit_flip() {
        let bytes = FileHeader {
            kind: FileKind::Data,
            file_id: 3,
        }
        .encode();
        for len in 0..HEADER_LEN {
            assert!(FileHeader::decode(&bytes[..len]).is_err(), "len {len}");
        }
        for bit in 0..HEADER_LEN * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(FileHeader::decode(&flipped).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn zeroes_are_not_a_header() {
        assert_eq!(
            FileHeader::decode(&[0; HEADER_LEN]),
            Err(CorruptionKind::BadMagic)
        );
    }
}
