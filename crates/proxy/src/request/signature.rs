//! URL signing. The remote mode (with `remote.signing_keys`): `sig` is the lowercase hex
//! HMAC-SHA256 of the `url` parameter's value, percent-decoded, nothing else. The store
//! mode: `sig` is the lowercase hex HMAC-SHA256, under one of the configured keys, of the
//! message
//!
//! ```text
//! /<key>?<name>=<value>&<name>=<value>…
//! ```
//!
//! where `<key>` is the percent-decoded object key and the pairs are every parameter except
//! `sig`, percent-decoded, sorted by name and joined with `&` (`?` alone when there are none).
//! Any configured key may match, so keys can be rotated. Input: the decoded key, the pairs
//! and `sig`; output: accepted, or why not. `docs/store-mode.md` shows how to sign in shell
//! and JavaScript.
//!
//! Input: the signed text, `sig` and the keys; output: whether it verifies. Uses nothing of
//! ours.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a signed request was refused (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing `sig`: this server only serves signed URLs")]
    Missing,
    #[error("invalid `sig`")]
    Invalid,
}

/// The text that is signed.
pub fn message(key: &str, pairs: &[(&str, &str)]) -> String {
    let mut sorted = pairs.to_vec();
    sorted.sort_unstable();
    let query: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("/{key}?{}", query.join("&"))
}

/// The signature of `message` under `secret`, as lowercase hex.
pub fn sign(secret: &[u8], message: &str) -> Option<String> {
    Some(hex::encode(mac(secret, message)?.finalize().into_bytes()))
}

/// `None` only if the HMAC refused the key, which HMAC-SHA256 never does (any length).
fn mac(secret: &[u8], message: &str) -> Option<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).ok()?;
    mac.update(message.as_bytes());
    Some(mac)
}

/// Checks `sig` against every key, in constant time for each.
pub fn verify(
    secrets: &[Vec<u8>],
    key: &str,
    pairs: &[(&str, &str)],
    sig: Option<&str>,
) -> Result<(), SignatureError> {
    verify_text(secrets, &message(key, pairs), sig)
}

/// Checks `sig` over `text` itself against every key (the remote mode signs the `url`
/// value as it is).
pub fn verify_text(
    secrets: &[Vec<u8>],
    text: &str,
    sig: Option<&str>,
) -> Result<(), SignatureError> {
    let sig = sig.ok_or(SignatureError::Missing)?;
    let raw = hex::decode(sig.to_ascii_lowercase()).map_err(|_| SignatureError::Invalid)?;
    if secrets
        .iter()
        .filter_map(|secret| mac(secret, text))
        .any(|mac| mac.verify_slice(&raw).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_sorted_and_decoded() {
        assert_eq!(
            message(
                "photos/猫 1.jpg",
                &[("w", "100"), ("format", "webp"), ("d", "1x2")]
            ),
            "/photos/猫 1.jpg?d=1x2&format=webp&w=100"
        );
        assert_eq!(message("a.jpg", &[]), "/a.jpg?");
    }

    #[test]
    fn a_known_vector() {
        // printf '%s' '/a.jpg?w=100' | openssl dgst -sha256 -hmac 'an-example-secret-key'
        assert_eq!(
            sign(b"an-example-secret-key", "/a.jpg?w=100").as_deref(),
            Some("bab7326f56019e85e4931974bc85961f0f87d3750bedab8ac089d629b7f2cf49")
        );
    }

    #[test]
    fn any_configured_key_verifies_and_nothing_else_does() {
        let keys = vec![
            b"old-key-0123456789".to_vec(),
            b"new-key-0123456789".to_vec(),
        ];
        let pairs = [("w", "100")];
        for secret in &keys {
            let sig = sign(secret, &message("a.jpg", &pairs)).unwrap();
            assert_eq!(verify(&keys, "a.jpg", &pairs, Some(&sig)), Ok(()));
            assert_eq!(
                verify(&keys, "a.jpg", &pairs, Some(&sig.to_uppercase())),
                Ok(())
            );
            assert_eq!(
                verify(&keys, "b.jpg", &pairs, Some(&sig)),
                Err(SignatureError::Invalid),
                "another key"
            );
            assert_eq!(
                verify(&keys, "a.jpg", &[("w", "101")], Some(&sig)),
                Err(SignatureError::Invalid),
                "another width"
            );
        }
        let other = sign(b"unknown-key-012345", &message("a.jpg", &pairs)).unwrap();
        assert_eq!(
            verify(&keys, "a.jpg", &pairs, Some(&other)),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify(&keys, "a.jpg", &pairs, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(&keys, "a.jpg", &pairs, Some("zz")),
            Err(SignatureError::Invalid)
        );
    }
}
