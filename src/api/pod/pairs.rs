//! A cached pod's labels or annotations, held compactly.
//!
//! A `BTreeMap<String, String>` takes a 544-byte node however few entries it
//! holds, and an allocation per key and per value: about 1.8 KB for a pod's
//! three labels and four annotations, half of what a cached pod weighs. Here
//! the keys and values, sorted by key, are one string, and where each ends one
//! list: two allocations, and the bytes of the text.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

/// Keys and their values, sorted by key; read like the map they were.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Pairs {
    /// Each key, then its value, one after the other.
    text: Box<str>,
    /// Where each key and each value of `text` ends, in order.
    ends: Box<[u32]>,
}

impl Pairs {
    /// How many keys.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`th stored string: key `2i`, its value `2i + 1`.
    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        let mut range = 0..self.len();
        // Binary search over the sorted keys.
        while !range.is_empty() {
            let mid = range.start + range.len() / 2;
            match self.part(2 * mid).cmp(key) {
                std::cmp::Ordering::Equal => return Some(self.part(2 * mid + 1)),
                std::cmp::Ordering::Less => range.start = mid + 1,
                std::cmp::Ordering::Greater => range.end = mid,
            }
        }
        None
    }

    /// Every key and its value, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        (0..self.len()).map(|i| (self.part(2 * i), self.part(2 * i + 1)))
    }

    /// The map they were (for code that needs one, such as a selector).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// Reads a label (or an annotation) by its key, from a pod's `Pairs` or a
/// template's map alike.
pub trait Lookup {
    fn lookup(&self, key: &str) -> Option<&str>;
}

impl Lookup for Pairs {
    fn lookup(&self, key: &str) -> Option<&str> {
        self.get(key)
    }
}

impl Lookup for BTreeMap<String, String> {
    fn lookup(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl From<BTreeMap<String, String>> for Pairs {
    fn from(map: BTreeMap<String, String>) -> Self {
        let mut text = String::with_capacity(map.iter().map(|(k, v)| k.len() + v.len()).sum());
        let mut ends = Vec::with_capacity(map.len() * 2);
        // A map's keys come sorted. Labels and annotations are at most 256 KiB
        // together (the API server's limit), far below u32::MAX.
        for (key, value) in &map {
            text.push_str(key);
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
            text.push_str(value);
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
        Self {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }
}

impl fmt::Debug for Pairs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Pairs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_the_map_it_was() {
        let map: BTreeMap<String, String> = [
            ("app", "shop"),
            ("cafe.sofastack.io/cell", "cell-a"),
            ("cafe.sofastack.io/revision", "shop-6d5f8c9b7"),
            ("empty", ""),
            ("", "no key"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let pairs = Pairs::from(map.clone());
        assert_eq!(pairs.len(), 5);
        for (k, v) in &map {
            assert_eq!(pairs.get(k), Some(v.as_str()), "{k}");
        }
        assert_eq!(pairs.get("absent"), None);
        assert_eq!(
            pairs.get("cafe.sofastack.io"),
            None,
            "a prefix is not a key"
        );
        assert_eq!(pairs.to_map(), map);
        assert!(
            pairs
                .iter()
                .map(|(k, _)| k)
                .eq(map.keys().map(String::as_str))
        );
        assert_eq!(
            serde_json::to_value(&pairs).unwrap(),
            serde_json::to_value(&map).unwrap()
        );
        assert!(Pairs::default().is_empty());
        assert_eq!(Pairs::default().get(""), None);
    }

    proptest::proptest! {
        #[test]
        fn any_map_is_read_back_whole(
            map in proptest::collection::btree_map(".{0,12}", ".{0,20}", 0..24),
            probe in ".{0,12}",
        ) {
            let pairs = Pairs::from(map.clone());
            proptest::prop_assert_eq!(pairs.len(), map.len());
            proptest::prop_assert_eq!(pairs.to_map(), map.clone());
            for (k, v) in &map {
                proptest::prop_assert_eq!(pairs.get(k), Some(v.as_str()));
            }
            proptest::prop_assert_eq!(pairs.get(&probe), map.get(&probe).map(String::as_str));
        }
    }
}
