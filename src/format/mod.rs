//! Pure byte codecs for everything the engine writes: file headers, data records, hint files, the
//! merge commit record and the fsync failure record. No I/O happens here; decoders return a bare
//! [`CorruptionKind`] and the caller attaches the file and offset. `docs/format.md` is the
//! specification these implement.

pub mod commit;
pub mod fsync_failure;
pub mod header;
pub mod hint;
pub mod record;
pub mod seq_ranges;

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

    pub(crate) fn is_at_end(&self) -> bool {
        self.pos == self.bytes.len()
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

    /// An unsigned LEB128 varint: 7 bits a byte, least significant first, the high bit set on
    /// every byte but the last. Only the shortest encoding of a value within 64 bits is
    /// accepted, so every value has exactly one.
    ///
    /// Written out rather than taken from a crate: `unsigned-varint` 0.8 accepts a tenth byte
    /// above 1 and drops the bits past 64 (fuzzing found it), and LEB128 readers generally
    /// accept encodings padded with `0x80` bytes.
    #[inline(always)]
    pub(crate) fn varint(&mut self) -> DecodeResult<u64> {
        // Most hint fields fit in one byte (and open decodes millions of them).
        match self.bytes.get(self.pos) {
            Some(&byte) if byte < 0x80 => {
                self.pos += 1;
                Ok(byte.into())
            }
            _ => self.long_varint(),
        }
    }

    #[inline(never)]
    fn long_varint(&mut self) -> DecodeResult<u64> {
        let mut value = 0u64;
        for index in 0..VARINT_MAX_LEN {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7F);
            if index == VARINT_MAX_LEN - 1 && bits > 1 {
                return Err(CorruptionKind::BadVarint); // past 64 bits
            }
            value |= bits << (7 * index);
            if byte & 0x80 == 0 {
                if byte == 0 && index > 0 {
                    return Err(CorruptionKind::BadVarint); // a shorter form exists
                }
                return Ok(value);
            }
        }
        Err(CorruptionKind::BadVarint) // longer than any 64-bit value needs
    }
}

/// The longest varint of a 64-bit value: 64 bits at 7 a byte.
const VARINT_MAX_LEN: usize = 10;

/// Appends `value` as an unsigned LEB128 varint in its shortest form (what [`Reader::varint`]
/// reads).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, value);
        out
    }

    fn decoded(bytes: &[u8]) -> DecodeResult<(u64, usize)> {
        let mut r = Reader::new(bytes);
        let value = r.varint()?;
        Ok((value, r.position()))
    }

    #[test]
    fn varints_round_trip_in_their_shortest_form() {
        let mut values = vec![
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            1 << 63,
            u64::MAX,
            u64::MAX - 1,
        ];
        values.extend((0..64).map(|bit| 1u64 << bit));
        values.extend((0..64).map(|bit| (1u64 << bit) - 1));
        for value in values {
            let bytes = encoded(value);
            let bits = 64 - value.leading_zeros() as usize;
            assert_eq!(bytes.len(), bits.div_ceil(7).max(1), "{value}");
            assert_eq!(decoded(&bytes), Ok((value, bytes.len())), "{value}");
        }
    }

    #[test]
    fn varints_past_64_bits_or_not_shortest_are_refused() {
        let nine_full = [0xFF; 9];
        for last in 2..=0x7F {
            let mut bytes = nine_full.to_vec();
            bytes.push(last);
            assert_eq!(decoded(&bytes), Err(CorruptionKind::BadVarint), "{last}");
        }
        let mut eleven = [0xFF; 11];
        eleven[10] = 0x01;
        assert_eq!(decoded(&eleven), Err(CorruptionKind::BadVarint));
        // A tenth byte within 64 bits that still says more follows.
        for tenth in [0x80, 0x81] {
            let mut bytes = nine_full.to_vec();
            bytes.extend_from_slice(&[tenth, 0x01]);
            assert_eq!(
                decoded(&bytes),
                Err(CorruptionKind::BadVarint),
                "{tenth:#x}"
            );
        }
        let mut largest = nine_full.to_vec();
        largest.push(0x01);
        assert_eq!(decoded(&largest), Ok((u64::MAX, 10)));
        assert_eq!(decoded(&[0x80, 0x00]), Err(CorruptionKind::BadVarint));
        assert_eq!(decoded(&[0x81, 0x80, 0x00]), Err(CorruptionKind::BadVarint));
        assert_eq!(decoded(&[0x80]), Err(CorruptionKind::Truncated));
        assert_eq!(decoded(&[]), Err(CorruptionKind::Truncated));
    }
}
