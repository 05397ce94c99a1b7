//! [`SortedKeys`]: a store's live keys in byte order, for `keys` and `export`, packed so that a
//! store with many keys costs the CLI little more than the key bytes themselves.

/// Keys packed into one buffer and sorted through an index: about the key's length + 12 bytes
/// each, where a `Vec<Vec<u8>>` costs a 24-byte `Vec` and a heap allocation (at least 32 bytes
/// with glibc) per key.
#[derive(Debug, Default)]
pub struct SortedKeys {
    bytes: Vec<u8>,
    /// Where each key starts in `bytes`, in the order they were added, then the end of `bytes`.
    starts: Vec<usize>,
    /// Key indices in byte order of the keys.
    order: Vec<u32>,
}

impl SortedKeys {
    /// The keys `keys` yields, sorted.
    pub fn new(keys: impl IntoIterator<Item = Vec<u8>>) -> Self {
        let mut sorted = SortedKeys::default();
        for key in keys {
            sorted.starts.push(sorted.bytes.len());
            sorted.bytes.extend_from_slice(&key);
        }
        sorted.starts.push(sorted.bytes.len());
        let count = u32::try_from(sorted.starts.len() - 1).expect("fewer than 2^32 keys");
        let mut order: Vec<u32> = (0..count).collect();
        order.sort_unstable_by(|&a, &b| sorted.key(a).cmp(sorted.key(b)));
        sorted.order = order;
        sorted
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// The keys in byte order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.order.iter().map(|&index| self.key(index))
    }

    fn key(&self, index: u32) -> &[u8] {
        let index = index as usize;
        &self.bytes[self.starts[index]..self.starts[index + 1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_back_in_byte_order_whatever_their_lengths() {
        let keys: Vec<Vec<u8>> = vec![
            b"b".to_vec(),
            b"".to_vec(),
            b"ab".to_vec(),
            vec![0xff],
            b"a".to_vec(),
            b"abc".to_vec(),
        ];
        let sorted = SortedKeys::new(keys.clone());
        let mut expected = keys;
        expected.sort();
        assert_eq!(sorted.len(), expected.len());
        assert_eq!(
            sorted.iter().map(<[u8]>::to_vec).collect::<Vec<_>>(),
            expected
        );
        assert_eq!(SortedKeys::new(Vec::new()).iter().count(), 0);
    }
}
