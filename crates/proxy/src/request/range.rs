//! The client's `Range` header, reduced to what we serve: one byte range. Multiple ranges
//! and anything malformed are ignored (RFC 9110 allows answering 200 with the whole body).
//!
//! Input: the `Range` header; output: a [`RangeSpec`], resolved against a length. Uses
//! nothing of ours.

/// One requested byte range, not yet resolved against a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=first-last`
    FromTo(u64, u64),
    /// `bytes=first-`
    From(u64),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// A range resolved against the full length: `first..=last`, always non-empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub first: u64,
    pub last: u64,
}

impl Resolved {
    #[allow(clippy::len_without_is_empty)] // never empty: first <= last by construction
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }
}

impl RangeSpec {
    pub fn parse(header: &str) -> Option<RangeSpec> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (first, last) = spec.split_once('-')?;
        let (first, last) = (first.trim(), last.trim());
        match (first.is_empty(), last.is_empty()) {
            (true, false) => {
                let n: u64 = last.parse().ok()?;
                (n > 0).then_some(RangeSpec::Suffix(n))
            }
            (false, true) => Some(RangeSpec::From(first.parse().ok()?)),
            (false, false) => {
                let (a, b): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
                (a <= b).then_some(RangeSpec::FromTo(a, b))
            }
            (true, true) => None,
        }
    }

    /// Against a known total length: `None` when unsatisfiable (416).
    pub fn resolve(self, total: u64) -> Option<Resolved> {
        let (first, last) = match self {
            RangeSpec::FromTo(a, b) => (a, b.min(total.checked_sub(1)?)),
            RangeSpec::From(a) => (a, total.checked_sub(1)?),
            RangeSpec::Suffix(n) => (total.saturating_sub(n), total.checked_sub(1)?),
        };
        (first <= last && first < total).then_some(Resolved { first, last })
    }

    /// The first byte, when it does not depend on the length.
    pub fn first(self) -> Option<u64> {
        match self {
            RangeSpec::FromTo(a, _) | RangeSpec::From(a) => Some(a),
            RangeSpec::Suffix(_) => None,
        }
    }

    /// The last byte, when it does not depend on the length.
    pub fn last(self) -> Option<u64> {
        match self {
            RangeSpec::FromTo(_, b) => Some(b),
            RangeSpec::From(_) | RangeSpec::Suffix(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_range_and_ignores_the_rest() {
        let cases = [
            ("bytes=0-1", Some(RangeSpec::FromTo(0, 1))),
            ("bytes=100-", Some(RangeSpec::From(100))),
            ("bytes=-500", Some(RangeSpec::Suffix(500))),
            ("bytes= 5 - 9 ", Some(RangeSpec::FromTo(5, 9))),
            ("bytes=9-5", None),
            ("bytes=-0", None),
            ("bytes=0-1,5-6", None),
            ("items=0-1", None),
            ("bytes=a-b", None),
            ("bytes=-", None),
        ];
        for (text, want) in cases {
            assert_eq!(RangeSpec::parse(text), want, "{text}");
        }
    }

    #[test]
    fn resolves_against_length() {
        let r = |first, last| Some(Resolved { first, last });
        assert_eq!(RangeSpec::FromTo(0, 1).resolve(10), r(0, 1));
        assert_eq!(RangeSpec::FromTo(5, 100).resolve(10), r(5, 9));
        assert_eq!(RangeSpec::From(9).resolve(10), r(9, 9));
        assert_eq!(RangeSpec::From(10).resolve(10), None);
        assert_eq!(RangeSpec::Suffix(3).resolve(10), r(7, 9));
        assert_eq!(RangeSpec::Suffix(30).resolve(10), r(0, 9));
        assert_eq!(RangeSpec::FromTo(0, 0).resolve(0), None);
    }
}
