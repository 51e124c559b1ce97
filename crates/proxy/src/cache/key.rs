//! Variant keys: what names one rendered output. Input: the parts that determine it (strings);
//! output: a [`VariantKey`] (hex SHA-256) and where its entry lives in a directory or bucket.
//! Uses nothing of ours.

use object_store::path::Path;
use sha2::{Digest, Sha256};

/// A cache key: the hex SHA-256 of the parts that determine an output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VariantKey(String);

impl VariantKey {
    pub fn of(parts: &[&str]) -> VariantKey {
        let mut h = Sha256::new();
        // The entry layout and the program's version: a release may render differently (as
        // the store mode's ETags say), so it starts a key space of its own; during a rolling
        // upgrade, old and new replicas sharing a bucket do not overwrite each other.
        h.update(b"v1");
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        for part in parts {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        VariantKey(hex::encode(h.finalize()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the entry lives in a directory or bucket: 256 subdirectories by the first byte.
    pub(super) fn path(&self) -> Path {
        let (dir, _) = self.0.split_at(2.min(self.0.len()));
        Path::from_iter([dir, self.0.as_str()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_their_parts() {
        assert_ne!(VariantKey::of(&["ab", "c"]), VariantKey::of(&["a", "bc"]));
        assert_eq!(VariantKey::of(&["a"]), VariantKey::of(&["a"]));
        let k = VariantKey::of(&["a"]);
        assert_eq!(k.as_str().len(), 64);
        assert_eq!(
            k.path().as_ref(),
            format!("{}/{}", &k.as_str()[..2], k.as_str())
        );
    }
}
