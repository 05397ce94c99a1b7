//! The merge commit record: which files a merge replaced with which.
//!
//! Format (little-endian): `{ magic [8] | input_count u32 | input_id u32 * input_count |
//! output_count u32 | output_id u32 * output_count | crc32 u32 }`, the CRC covering every byte
//! before it. Its presence under its final name is the merge's commit point.

use super::{DecodeResult, FileId, Reader, verify_crc};
use crate::error::CorruptionKind;

const COMMIT_MAGIC: [u8; 8] = *b"\x89BCM\r\n\x1a\n";

/// The files one merge replaced (`inputs`) and produced (`outputs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeCommit {
    /// Data files whose live records were copied; deleted after the commit.
    pub inputs: Vec<FileId>,
    /// Data files holding the copies (each with a hint file, unless the merge wrote none:
    /// `Config::hint_files(false)`).
    pub outputs: Vec<FileId>,
}

impl MergeCommit {
    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = COMMIT_MAGIC.to_vec();
        for ids in [&self.inputs, &self.outputs] {
            out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
            for id in ids {
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and validates a whole commit record.
    pub fn decode(bytes: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(bytes);
        if r.take(8)? != COMMIT_MAGIC {
            return Err(CorruptionKind::BadMagic);
        }
        let inputs = read_ids(&mut r)?;
        let outputs = read_ids(&mut r)?;
        let body_len = r.position();
        verify_crc(r.u32()?, &bytes[..body_len])?;
        if r.position() != bytes.len() {
            return Err(CorruptionKind::BadLength);
        }
        Ok(MergeCommit { inputs, outputs })
    }
}

fn read_ids(r: &mut Reader) -> DecodeResult<Vec<FileId>> {
    let count = r.u32()? as usize;
    // Bound the allocation by the bytes actually present.
    let bytes = r.take(count.checked_mul(4).ok_or(CorruptionKind::BadLength)?)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let commit = MergeCommit {
            inputs: vec![1, 2, 5],
            outputs: vec![9],
        };
        let bytes = commit.encode();
        assert_eq!(MergeCommit::decode(&bytes), Ok(commit));
        for len in 0..bytes.len() {
            assert!(MergeCommit::decode(&bytes[..len]).is_err());
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(MergeCommit::decode(&flipped).is_err(), "bit {bit}");
        }
    }
}
