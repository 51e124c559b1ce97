//! `[store]`, `[resize]` and `[cache]`: where the store mode reads originals, how its
//! requests are checked and its answers cached, and where rendered variants are kept.
//! Plain data with defaults, and the one check of a directory or bucket setting both
//! sections share ([`check_location`]); validated with the rest in `Settings::validate`.
//!
//! Input: the three tables; output: their settings. Uses `config`'s error type.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::ConfigError;

/// Where rendered variants are kept between requests (see `docs/caching.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    /// No persistent tier (the memory tier, the negative cache and coalescing still work).
    None,
    /// A local directory (`root`), bounded by `max_size`, least recently used evicted.
    Local,
    /// An S3 bucket and prefix shared by every replica; expiry by a lifecycle rule (and
    /// `max_age` on read).
    S3,
}

/// The variant cache. S3 credentials come from the standard AWS chain, as for the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    pub kind: CacheKind,
    /// Local directory of the cache (created if missing).
    pub root: std::path::PathBuf,
    /// S3 bucket name (may be the store's bucket, with another prefix).
    pub bucket: String,
    /// Key prefix of the entries (`variants/`).
    pub prefix: String,
    /// S3-compatible endpoint URL; empty for AWS itself.
    pub endpoint: String,
    /// S3 region; empty: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: String,
    /// Allow a plain `http://` endpoint.
    pub allow_http: bool,
    /// Bytes the local directory may hold; the least recently used entries go beyond it.
    pub max_size: u64,
    /// Entries older than this are not served (and are deleted from a local directory).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Bytes of the in-memory tier in front of the directory or bucket; 0 turns it off.
    pub memory: u64,
    /// How long an origin's 404/410, a missing key or an undecodable input is remembered.
    /// 0 turns the negative cache off.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// Longest a cache write may take before it is given up (a failure for the breaker).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest a persistent-tier lookup may take before it counts as a miss: a slow or
    /// hung cache never costs the answer more than this.
    #[serde(with = "humantime_serde")]
    pub lookup_timeout: Duration,
    /// Write entries after the answer, from a background queue (`false`: before it, as
    /// on Lambda, where a frozen function cannot write after its answer).
    pub write_behind: bool,
    /// Bytes of entries the background queue may hold; an entry beyond it is dropped
    /// (and counted), never waited for.
    pub write_queue: u64,
    /// Failures in a row (reads and writes are counted apart) after which the persistent
    /// tier is not asked for `breaker_cooldown`; 0 turns the breaker off.
    pub breaker_failures: u32,
    /// How long an open breaker skips the persistent tier before one request probes it.
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// Response header saying `HIT`, `MISS` or `COALESCED`; empty leaves it out.
    pub header: String,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            kind: CacheKind::Local,
            root: "cache".into(),
            bucket: String::new(),
            prefix: String::new(),
            endpoint: String::new(),
            region: String::new(),
            allow_http: false,
            max_size: 1 << 30,
            max_age: Duration::from_secs(30 * 86_400),
            memory: 64 << 20,
            negative_ttl: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            lookup_timeout: Duration::from_millis(300),
            write_behind: true,
            write_queue: 64 << 20,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            header: "X-Cache".into(),
        }
    }
}

/// Which object store holds the originals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// No store: every path without `url` is a 400, as in the Misskey contract.
    None,
    /// A local directory (`root`).
    Local,
    /// Amazon S3 or an S3-compatible server (`bucket`, `endpoint`, `region`).
    S3,
}

/// The object store of the store mode. Credentials for S3 are never settings: they come
/// from the standard AWS chain (environment, web identity, container or instance role).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    pub kind: StoreKind,
    /// Local directory of the originals (created if missing). Relative paths start from
    /// the working directory.
    pub root: std::path::PathBuf,
    /// S3 bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket or directory (`originals/`); requests cannot leave it.
    pub prefix: String,
    /// S3-compatible endpoint URL (`http://127.0.0.1:9000`); empty for AWS itself.
    pub endpoint: String,
    /// S3 region; empty: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: String,
    /// Allow a plain `http://` endpoint.
    pub allow_http: bool,
    /// Largest original accepted, in bytes (413 beyond).
    pub max_size: u64,
    /// Longest a store request may take, first byte to last.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Store failures in a row (time-outs, connection and server errors) after which
    /// requests are answered `503` at once for `breaker_cooldown` instead of piling up
    /// behind a dead store; 0 turns the breaker off.
    pub breaker_failures: u32,
    /// How long an open store breaker answers `503` before one request probes the store.
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
}

/// How store-mode requests are checked and their responses cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResizeSettings {
    /// Largest width or height a request may ask for (and any output side).
    pub max_output_dimension: u32,
    /// When not empty, the only sizes `d`, `w` and `h` may name (each side); others: 400.
    #[serde(deserialize_with = "super::values::sizes")]
    pub allowed_sizes: Vec<u32>,
    /// HMAC-SHA256 keys; when any is set every store request needs a valid `sig`. Several
    /// keys let a new one be rolled out before the old one is withdrawn.
    #[serde(deserialize_with = "super::values::list_or_commas")]
    pub signing_keys: Vec<String>,
    /// `Cache-Control: public, max-age` of successful responses.
    #[serde(with = "humantime_serde")]
    pub cache_max_age: Duration,
    /// `max-age` of 404 answers (a missing key may appear soon).
    #[serde(with = "humantime_serde")]
    pub not_found_max_age: Duration,
    /// `max-age` of other client errors (400, 403, 413, 422).
    #[serde(with = "humantime_serde")]
    pub error_max_age: Duration,
    /// Whether `format=auto` may pick AVIF for clients that accept it.
    pub avif: bool,
    /// Outputs with more pixels than this get WebP instead of AVIF (AVIF encoding grows
    /// costly with size); the answer says so in `X-Image-Fallback`.
    pub avif_max_pixels: u64,
    /// libaom speed, 0 (slowest, smallest) to 10 (fastest).
    pub avif_speed: u8,
    /// Default qualities when the request has no `q`.
    pub webp_quality: u8,
    pub avif_quality: u8,
    pub jpeg_quality: u8,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            kind: StoreKind::Local,
            root: "media".into(),
            bucket: String::new(),
            prefix: String::new(),
            endpoint: String::new(),
            region: String::new(),
            allow_http: false,
            max_size: 262_144_000,
            timeout: Duration::from_secs(30),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(10),
        }
    }
}

impl Default for ResizeSettings {
    fn default() -> Self {
        ResizeSettings {
            max_output_dimension: 4096,
            allowed_sizes: Vec::new(),
            signing_keys: Vec::new(),
            cache_max_age: Duration::from_secs(86_400),
            not_found_max_age: Duration::from_secs(60),
            error_max_age: Duration::from_secs(60),
            avif: true,
            avif_max_pixels: 2_000_000,
            avif_speed: 9,
            webp_quality: 80,
            avif_quality: 60,
            jpeg_quality: 82,
        }
    }
}

/// The keys of a section that names a directory or a bucket.
#[derive(Debug)]
pub(super) struct Section {
    name: &'static str,
    root: &'static str,
    bucket: &'static str,
    prefix: &'static str,
    endpoint: &'static str,
}

pub(super) const STORE: Section = Section {
    name: "store",
    root: "store.root",
    bucket: "store.bucket",
    prefix: "store.prefix",
    endpoint: "store.endpoint",
};

pub(super) const CACHE: Section = Section {
    name: "cache",
    root: "cache.root",
    bucket: "cache.bucket",
    prefix: "cache.prefix",
    endpoint: "cache.endpoint",
};

/// Where a section's objects are.
#[derive(Debug, Clone, Copy)]
pub(super) enum Where<'a> {
    Nowhere,
    Directory(&'a std::path::Path),
    Bucket(&'a str),
}

/// The one check of a directory or bucket setting, for the store's originals and the
/// cache's entries alike: a directory is named, an S3 bucket is named, the prefix cannot
/// climb out, the endpoint is a usable URL.
pub(super) fn check_location(
    section: &Section,
    at: Where<'_>,
    prefix: &str,
    endpoint: &str,
    allow_http: bool,
) -> Result<(), ConfigError> {
    let invalid = |key, reason: &str| ConfigError::Invalid {
        key,
        reason: reason.to_owned(),
    };
    match at {
        Where::Directory(root) if root.as_os_str().is_empty() => {
            return Err(invalid(section.root, "must name a directory"));
        }
        Where::Bucket(bucket) if bucket.trim().is_empty() => {
            return Err(invalid(section.bucket, "is required with kind = \"s3\""));
        }
        Where::Nowhere | Where::Directory(_) | Where::Bucket(_) => {}
    }
    check_endpoint(section, endpoint, allow_http)?;
    if prefix.split('/').any(|s| s == ".." || s == ".") || prefix.contains('\\') {
        return Err(invalid(
            section.prefix,
            "must not contain `.` or `..` segments",
        ));
    }
    Ok(())
}

/// An S3-compatible endpoint: empty, or an http(s) URL with a host (plain http only when
/// allowed).
fn check_endpoint(section: &Section, endpoint: &str, allow_http: bool) -> Result<(), ConfigError> {
    if endpoint.is_empty() {
        return Ok(());
    }
    let (key, section) = (section.endpoint, section.name);
    let reason = match Url::parse(endpoint) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            if u.scheme() == "http" && !allow_http {
                format!("is plain http: set {section}.allow_http = true to use it")
            } else {
                return Ok(());
            }
        }
        _ => "must be an http:// or https:// URL with a host".to_owned(),
    };
    Err(ConfigError::Invalid { key, reason })
}
