//! The inverse of the `arbitrary` derives in this crate: turns an [`Image`], an [`OpsInput`] or a
//! [`FaultsInput`] into the fuzz input bytes that `Arbitrary::arbitrary_take_rest` parses back into it.
//!
//! This mirrors `arbitrary` 1.x's encoding of exactly the types used here: integers are
//! little-endian, `bool` is one byte (`& 1`), an enum is a `u32` tag `t` choosing variant
//! `(t * variants) >> 32`, an `Option<T>` is a `0` byte or a `1` byte and the value, a `Vec<T>`
//! is each element preceded by a `1` byte and ended by a `0` byte, and [`Bytes`] is a `u16`
//! length then the bytes. [`encode_image`], [`encode_ops`] and [`encode_faults`]
//! parse their output back and panic on any difference, so a change of encoding in a newer
//! `arbitrary` fails loudly in `make_corpus` instead of producing useless seeds.

use arbitrary::{Arbitrary, Unstructured};

use crate::ValueSpec;
use crate::{
    Bytes, Contents, Damage, FaultKind, FaultOp, FaultsInput, FileSpec, HintEntrySpec, Image,
    NameKind, Op, OpsInput, Policy, RecordSpec, Seq,
};

/// Appends the `arbitrary` encoding of a value.
pub trait Encode {
    fn encode(&self, out: &mut Vec<u8>);
}

impl Encode for u8 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl Encode for u16 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for u64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        for item in self {
            out.push(1);
            item.encode(out);
        }
        out.push(0);
    }
}

impl Encode for Bytes {
    fn encode(&self, out: &mut Vec<u8>) {
        let len = u16::try_from(self.0.len()).expect("a seed blob longer than 65535 bytes");
        len.encode(out);
        out.extend_from_slice(&self.0);
    }
}

/// The tag that makes a derived `Arbitrary` enum of `count` variants pick variant `index`.
fn tag(out: &mut Vec<u8>, index: u32, count: u32) {
    let t = (u64::from(index) << 32).div_ceil(u64::from(count));
    let t = u32::try_from(t).expect("variant index out of range");
    out.extend_from_slice(&t.to_le_bytes());
}

impl Encode for Image {
    fn encode(&self, out: &mut Vec<u8>) {
        self.files.encode(out);
    }
}

impl Encode for FileSpec {
    fn encode(&self, out: &mut Vec<u8>) {
        self.id.encode(out);
        self.name.encode(out);
        self.contents.encode(out);
    }
}

impl Encode for NameKind {
    fn encode(&self, out: &mut Vec<u8>) {
        let index = match self {
            NameKind::Data => 0,
            NameKind::Hint => 1,
            NameKind::Merge => 2,
            NameKind::DataTmp => 3,
            NameKind::HintTmp => 4,
        };
        tag(out, index, 5);
    }
}

impl Encode for Contents {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Contents::Raw(bytes) => {
                tag(out, 0, 4);
                bytes.encode(out);
            }
            Contents::Records {
                merged,
                records,
                damage,
            } => {
                tag(out, 1, 4);
                merged.encode(out);
                records.encode(out);
                damage.encode(out);
            }
            Contents::Commit {
                inputs,
                outputs,
                damage,
            } => {
                tag(out, 2, 4);
                inputs.encode(out);
                outputs.encode(out);
                damage.encode(out);
            }
            Contents::Hint {
                data_len,
                entries,
                damage,
                version_1,
            } => {
                tag(out, 3, 4);
                data_len.encode(out);
                entries.encode(out);
                damage.encode(out);
                version_1.encode(out);
            }
        }
    }
}

impl Encode for RecordSpec {
    fn encode(&self, out: &mut Vec<u8>) {
        self.seq.encode(out);
        self.tombstone.encode(out);
        self.key.encode(out);
        self.value.encode(out);
    }
}

impl Encode for HintEntrySpec {
    fn encode(&self, out: &mut Vec<u8>) {
        self.seq.encode(out);
        self.tombstone.encode(out);
        self.key.encode(out);
        self.value_len.encode(out);
        self.offset.encode(out);
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                value.encode(out);
            }
        }
    }
}

impl Encode for Seq {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Seq::Small(n) => {
                tag(out, 0, 2);
                n.encode(out);
            }
            Seq::Any(n) => {
                tag(out, 1, 2);
                n.encode(out);
            }
        }
    }
}

impl Encode for Damage {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Damage::None => tag(out, 0, 3),
            Damage::Truncate(n) => {
                tag(out, 1, 3);
                n.encode(out);
            }
            Damage::Flip { at, mask } => {
                tag(out, 2, 3);
                at.encode(out);
                mask.encode(out);
            }
        }
    }
}

impl Encode for OpsInput {
    fn encode(&self, out: &mut Vec<u8>) {
        self.data_file_limit.encode(out);
        self.ops.encode(out);
    }
}

impl Encode for Op {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 9;
        match self {
            Op::Write { key, value } => {
                tag(out, 0, N);
                key.encode(out);
                value.encode(out);
            }
            Op::Remove { key } => {
                tag(out, 1, N);
                key.encode(out);
            }
            Op::Read { key } => {
                tag(out, 2, N);
                key.encode(out);
            }
            Op::Get { key } => {
                tag(out, 3, N);
                key.encode(out);
            }
            Op::Merge => tag(out, 4, N),
            Op::Reopen => tag(out, 5, N),
            Op::Sync => tag(out, 6, N),
            Op::CrashDrop => tag(out, 7, N),
            Op::CrashCopy => tag(out, 8, N),
        }
    }
}

impl Encode for ValueSpec {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ValueSpec::Bytes(bytes) => {
                tag(out, 0, 2);
                bytes.encode(out);
            }
            ValueSpec::Fill { byte, len } => {
                tag(out, 1, 2);
                byte.encode(out);
                len.encode(out);
            }
        }
    }
}

impl Encode for FaultsInput {
    fn encode(&self, out: &mut Vec<u8>) {
        self.policy.encode(out);
        self.data_file_limit.encode(out);
        self.fault.encode(out);
        self.fault_at.encode(out);
        self.recovery_cut.encode(out);
        self.keep_handle.encode(out);
        self.ops.encode(out);
    }
}

impl Encode for Policy {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Policy::Never => tag(out, 0, 2),
            Policy::Always => tag(out, 1, 2),
        }
    }
}

impl Encode for FaultKind {
    fn encode(&self, out: &mut Vec<u8>) {
        let index = match self {
            FaultKind::None => 0,
            FaultKind::PowerCut => 1,
            FaultKind::Eio => 2,
            FaultKind::Enospc => 3,
            FaultKind::ShortWrite => 4,
        };
        tag(out, index, 5);
    }
}

impl Encode for FaultOp {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 8;
        match self {
            FaultOp::Write { key, value } => {
                tag(out, 0, N);
                key.encode(out);
                value.encode(out);
            }
            FaultOp::Remove { key } => {
                tag(out, 1, N);
                key.encode(out);
            }
            FaultOp::Read { key } => {
                tag(out, 2, N);
                key.encode(out);
            }
            FaultOp::Get { key } => {
                tag(out, 3, N);
                key.encode(out);
            }
            FaultOp::Merge => tag(out, 4, N),
            FaultOp::Sync => tag(out, 5, N),
            FaultOp::Reopen => tag(out, 6, N),
            FaultOp::DropReopen => tag(out, 7, N),
        }
    }
}

/// Encodes `value` and checks that the fuzz targets' parser gives it back.
fn encode_checked<T>(value: &T) -> Vec<u8>
where
    T: Encode + for<'a> Arbitrary<'a> + PartialEq + std::fmt::Debug,
{
    let mut out = Vec::new();
    value.encode(&mut out);
    let parsed =
        T::arbitrary_take_rest(Unstructured::new(&out)).expect("parsing an encoded seed back");
    assert_eq!(
        &parsed, value,
        "the seed encoder no longer matches `arbitrary`'s encoding"
    );
    out
}

/// The fuzz input of the `recover` target that parses to `image`.
pub fn encode_image(image: &Image) -> Vec<u8> {
    encode_checked(image)
}

/// The fuzz input of the `ops` target that parses to `input`.
pub fn encode_ops(input: &OpsInput) -> Vec<u8> {
    encode_checked(input)
}

/// The fuzz input of the `ops_faults` target that parses to `input`.
pub fn encode_faults(input: &FaultsInput) -> Vec<u8> {
    encode_checked(input)
}
