//! The store mode's validators: the strong ETag of an answer (from the source's version, the
//! canonical transform and the output) and the `304` decision against the request's
//! [`Conditions`]. Input: the object's metadata and the output; output: [`Validators`].
//! Pure; uses `request` and `source::store` (its `ObjectMeta`).

use std::time::SystemTime;

use media::Output;
use sha2::{Digest, Sha256};

use crate::request::Conditions;
use crate::source::store::ObjectMeta;

/// The response validators and caching facts of one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// A strong ETag, quoted.
    pub etag: String,
    pub last_modified: SystemTime,
    /// The URL is signed or versioned: `immutable`.
    pub immutable: bool,
    /// The answer was chosen by `Accept`.
    pub vary_accept: bool,
}

/// A strong ETag from the source's version, the canonical transform and the output: any
/// change to one of them changes it; the same request for the same object gives the same.
pub(super) fn validators(
    meta: &ObjectMeta,
    canonical: &str,
    output: Option<Output>,
    vary_accept: bool,
) -> Validators {
    let mut h = Sha256::new();
    for part in [
        env!("CARGO_PKG_VERSION"),
        &meta.version,
        canonical,
        &format!("{output:?}"),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let etag = format!("\"{}\"", hex::encode(digest.get(..16).unwrap_or_default()));
    Validators {
        etag,
        last_modified: meta.last_modified,
        // Set from the request's plan by the caller.
        immutable: false,
        vary_accept,
    }
}

/// Whether the client's copy is current (`304`): `If-None-Match` against the ETag, else
/// `If-Modified-Since` against the modification time (HTTP dates have whole seconds).
pub(super) fn not_modified(cond: &Conditions, v: &Validators) -> bool {
    if let Some(tags) = &cond.if_none_match {
        return tags.matches(&v.etag);
    }
    match cond.if_modified_since {
        Some(since) => v
            .last_modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .zip(since.duration_since(SystemTime::UNIX_EPOCH).ok())
            .is_some_and(|(modified, since)| modified.as_secs() <= since.as_secs()),
        None => false,
    }
}
