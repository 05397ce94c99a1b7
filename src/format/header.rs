//! The fixed header at the start of every data and hint file.
//!
//! Format (20 bytes, little-endian):
//! `{ magic [8] | version u16 | kind u8 | reserved u8 = 0 | file_id u32 | crc32 u32 }`
//! The CRC covers the 16 bytes before it.

use super::{DecodeResult, FileId, Reader, verify_crc};
use crate::error::CorruptionKind;

/// PNG-style magic: a non-ASCII byte, the name, CR LF, EOF and LF catch text-mode mangling.
pub const MAGIC: [u8; 8] = *b"\x89BCK\r\n\x1a\n";

/// The format version this build writes (`docs/format.md`, "Version changes").
pub const FORMAT_VERSION: u16 = 2;

/// The oldest format version this build reads. Versions 1 and 2 differ only in how hint entries
/// are encoded; a reader decodes each hint file by the version in its header.
pub const OLDEST_READABLE_VERSION: u16 = 1;

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
    /// The format version the file was written in, from [`OLDEST_READABLE_VERSION`] to
    /// [`FORMAT_VERSION`].
    pub version: u16,
}

impl FileHeader {
    /// The header of a new file of `kind`, in this build's format version.
    pub fn new(kind: FileKind, file_id: FileId) -> Self {
        FileHeader {
            kind,
            file_id,
            version: FORMAT_VERSION,
        }
    }

    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&self.version.to_le_bytes());
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
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(CorruptionKind::UnsupportedVersion(version));
        }
        if reserved != 0 {
            return Err(CorruptionKind::UnknownValue(reserved.into()));
        }
        Ok(FileHeader {
            kind: FileKind::from_byte(kind)?,
            file_id,
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for kind in [FileKind::Data, FileKind::Merged, FileKind::Hint] {
            for version in OLDEST_READABLE_VERSION..=FORMAT_VERSION {
                let header = FileHeader {
                    version,
                    ..FileHeader::new(kind, 77)
                };
                assert_eq!(FileHeader::decode(&header.encode()), Ok(header));
            }
        }
    }

    #[test]
    fn refuses_versions_it_does_not_know() {
        for version in [0, FORMAT_VERSION + 1, u16::MAX] {
            let header = FileHeader {
                version,
                ..FileHeader::new(FileKind::Data, 1)
            };
            assert_eq!(
                FileHeader::decode(&header.encode()),
                Err(CorruptionKind::UnsupportedVersion(version))
            );
        }
    }

    #[test]
    fn rejects_every_truncation_and_bit_flip() {
        let bytes = FileHeader::new(FileKind::Data, 3).encode();
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
