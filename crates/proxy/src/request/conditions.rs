//! The headers that decide a store-mode answer besides the URL: `If-None-Match`,
//! `If-Modified-Since` and `Accept`, parsed once into typed values. Input: the raw header
//! texts; output: [`Conditions`]. Uses nothing of ours; no HTTP framework types.

use std::time::SystemTime;

/// What the client's headers say that matters to the store mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    /// `If-None-Match`, parsed.
    pub if_none_match: Option<EntityTags>,
    /// `If-Modified-Since`, parsed (ignored when `If-None-Match` is present, as RFC 9110 says;
    /// an unparsable date is no condition).
    pub if_modified_since: Option<SystemTime>,
    /// What `Accept` lists explicitly (wildcards do not count).
    pub accept: Accepted,
}

impl Conditions {
    /// From the raw header values (`None`: absent or not text).
    pub fn parse(
        if_none_match: Option<&str>,
        if_modified_since: Option<&str>,
        accept: Option<&str>,
    ) -> Conditions {
        Conditions {
            if_none_match: if_none_match.map(EntityTags::parse),
            if_modified_since: if_modified_since.and_then(|d| httpdate::parse_http_date(d).ok()),
            accept: accept.map(Accepted::parse).unwrap_or_default(),
        }
    }

    /// The request carries a validator: a `304` may be the answer.
    pub fn is_revalidation(&self) -> bool {
        self.if_none_match.is_some() || self.if_modified_since.is_some()
    }
}

/// The entity tags of an `If-None-Match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityTags {
    /// `*`: any current representation.
    Any,
    /// The listed tags, quoted, their `W/` dropped: `If-None-Match` compares weakly.
    Listed(Vec<String>),
}

impl EntityTags {
    pub fn parse(header: &str) -> EntityTags {
        let mut tags = Vec::new();
        for tag in header.split(',').map(str::trim) {
            if tag == "*" {
                return EntityTags::Any;
            }
            tags.push(tag.strip_prefix("W/").unwrap_or(tag).to_owned());
        }
        EntityTags::Listed(tags)
    }

    /// Whether `etag` (quoted) is among them (the weak comparison of RFC 9110).
    pub fn matches(&self, etag: &str) -> bool {
        match self {
            EntityTags::Any => true,
            EntityTags::Listed(tags) => tags.iter().any(|t| t == etag),
        }
    }
}

/// Image types a client's `Accept` names (with a quality above zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepted {
    pub avif: bool,
    pub webp: bool,
}

impl Accepted {
    pub fn parse(header: &str) -> Accepted {
        let mut accepted = Accepted::default();
        for item in header.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            match media.as_str() {
                "image/avif" => accepted.avif = !refused,
                "image/webp" => accepted.webp = !refused,
                _ => {}
            }
        }
        accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_lists_only_explicit_types_with_a_positive_quality() {
        let a = Accepted::parse("image/avif,image/webp,image/apng,image/*,*/*;q=0.8");
        assert_eq!(
            a,
            Accepted {
                avif: true,
                webp: true
            }
        );
        let a = Accepted::parse("image/webp;q=0, image/*");
        assert_eq!(a, Accepted::default());
        let a = Accepted::parse("IMAGE/WEBP; q=0.5");
        assert_eq!(
            a,
            Accepted {
                avif: false,
                webp: true
            }
        );
        assert_eq!(Accepted::parse("*/*"), Accepted::default());
    }

    #[test]
    fn entity_tags_compare_weakly_and_star_matches_anything() {
        let tags = EntityTags::parse(r#""a", W/"b" ,"c""#);
        assert!(tags.matches(r#""a""#) && tags.matches(r#""b""#) && tags.matches(r#""c""#));
        assert!(!tags.matches(r#""d""#));
        assert!(EntityTags::parse(r#""x", *"#).matches(r#""anything""#));
        let c = Conditions::parse(None, Some("Sun, 06 Nov 1994 08:49:37 GMT"), None);
        assert!(c.is_revalidation());
        assert!(!Conditions::parse(None, Some("yesterday"), None).is_revalidation());
    }
}
