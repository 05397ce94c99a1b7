//! [`Value`]: a value returned by [`crate::Database::get`], zero-copy where the file allows.

use std::fmt;
use std::ops::Deref;

use crate::io::mmap::MappedBytes;

/// A value read from the store. Derefs to `[u8]`.
///
/// Values borrow straight from their file's memory map: sealed files, and the active file too,
/// which is mapped while it grows. A value is copied only where the active file has no map (a
/// file system that cannot map it) or the record lies past the map's reserved size, and is
/// read with `pread`. A mapped value keeps the calling thread's crossbeam-epoch pinned. While it
/// lives, the global epoch cannot advance, so nothing deferred through crossbeam-epoch in the
/// whole process is freed: for every store this process has open, files that a merge retired
/// stay mapped, and their disk space and page cache are not given back, nor the address space
/// reserved for each active file the writer has since sealed (`data_file_limit` each; map
/// counts too, against `vm.max_map_count`). So do not hoard values;
/// `to_vec()` when you need to keep the bytes. (That pin is also why `Value` is not `Send`.)
pub struct Value(Repr);

enum Repr {
    Mapped(MappedBytes),
    Owned(Vec<u8>),
}

impl Value {
    pub(crate) fn mapped(bytes: MappedBytes) -> Self {
        Value(Repr::Mapped(bytes))
    }

    pub(crate) fn owned(bytes: Vec<u8>) -> Self {
        Value(Repr::Owned(bytes))
    }

    /// Whether the bytes are borrowed from a memory map rather than copied.
    pub fn is_zero_copy(&self) -> bool {
        matches!(self.0, Repr::Mapped(_))
    }
}

impl Deref for Value {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Mapped(bytes) => bytes.as_slice(),
            Repr::Owned(bytes) => bytes,
        }
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq<[u8]> for Value {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl PartialEq<&[u8]> for Value {
    fn eq(&self, other: &&[u8]) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("len", &self.len())
            .field("zero_copy", &self.is_zero_copy())
            .finish()
    }
}
