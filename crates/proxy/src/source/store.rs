//! The store mode's source: originals in an object store — a local directory, or S3 and
//! S3-compatible servers — through the `object_store` crate. Input: a key already jailed by
//! the request parser; output: a [`StoreObject`] (metadata and a body read under the size
//! cap and the time limit). One GET per request: metadata and body come from the same
//! answer. Never uses `media` or the routes.
//!
//! S3 credentials are not settings: `AmazonS3Builder::from_env` reads the standard AWS chain
//! (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, web identity, the ECS
//! container role, then the EC2 instance role) itself. That is the one place besides
//! `config` where the environment is read, and it is the AWS convention, not ours.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    ClientOptions, GetOptions, GetResultPayload, ObjectStore, ObjectStoreExt, RetryConfig,
};

use crate::breaker::Breaker;
use crate::config::{StoreKind, StoreSettings};

/// Why the store could not give us the original. Each variant's doc says whose fault it is
/// and the status the service answers with (decided in `error.rs`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object at that key (client's URL; 404).
    #[error("no object at that key")]
    NotFound,
    /// The key is not one the store accepts (client's URL; 400).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The object is larger than `store.max_size` (413).
    #[error("object larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The store did not answer in `store.timeout` (upstream; 504).
    #[error("store timed out")]
    Timeout,
    /// The store refused our credentials or permissions (configuration; 502).
    #[error("store refused access: {0}")]
    Denied(String),
    /// Any other store failure: connection, protocol, I/O (upstream; 502).
    #[error("store failed: {0}")]
    Unavailable(String),
    /// The store failed `store.breaker_failures` times in a row: it is not asked until the
    /// next probe, `retry_after` from now (upstream; 503 with Retry-After, at once).
    #[error("store not asked: it keeps failing (next try in {retry_after:?})")]
    Resting { retry_after: Duration },
    /// The object was replaced between two reads of one video (upstream; 502: asking
    /// again reads the new one).
    #[error("the object changed while it was read")]
    Changed,
    /// The memory budget has no room for the object now (503) or ever (413).
    #[error("no room in the memory budget: {0}")]
    NoRoom(super::NoRoom),
}

impl From<super::NoRoom> for StoreError {
    fn from(n: super::NoRoom) -> Self {
        StoreError::NoRoom(n)
    }
}

impl From<object_store::Error> for StoreError {
    fn from(e: object_store::Error) -> Self {
        use object_store::Error as E;
        match e {
            E::NotFound { .. } => StoreError::NotFound,
            E::InvalidPath { source } => StoreError::InvalidKey(source.to_string()),
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
                StoreError::Denied(e.to_string())
            }
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// The configured object store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// A local directory's canonical root (with the prefix): every key is resolved on disk
    /// and must stay inside it. `None` for S3.
    jail: Option<Arc<std::path::PathBuf>>,
    max_size: u64,
    timeout: Duration,
    /// Stops asking a store that keeps failing (time-outs, connection and server errors).
    breaker: Breaker,
    /// Counts every body byte read from the store (the `received_bytes` metric).
    received: prometheus_client::metrics::counter::Counter,
}

/// What identifies one version of an object, and when it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The store's ETag or version id, else the modification time and size: changes
    /// whenever the object does.
    pub version: String,
    pub last_modified: SystemTime,
    pub size: u64,
}

/// An object being read.
#[derive(Debug)]
pub struct StoreObject {
    pub meta: ObjectMeta,
    pub body: ObjectBody,
}

/// A body read under the store's size cap and deadline.
pub type ObjectBody = super::Body<StoreError>;

impl Store {
    /// Opens the store the settings describe; `None` when the store mode is off.
    /// `received` counts body bytes; `breaker_open` is the gauge of its breaker.
    pub fn new(
        settings: &StoreSettings,
        received: prometheus_client::metrics::counter::Counter,
        breaker_open: prometheus_client::metrics::gauge::Gauge,
    ) -> Result<Option<Store>, String> {
        let mut jail = None;
        let inner = match settings.kind {
            StoreKind::None => return Ok(None),
            StoreKind::Local => {
                let store = open_local(&settings.root, "store.root")?;
                let root = settings.root.join(settings.prefix.trim_matches('/'));
                let _ = std::fs::create_dir_all(&root);
                let canonical = std::fs::canonicalize(&root)
                    .map_err(|e| format!("cannot open store.root {}: {e}", root.display()))?;
                jail = Some(Arc::new(canonical));
                store
            }
            StoreKind::S3 => open_s3(&S3Location {
                bucket: &settings.bucket,
                endpoint: &settings.endpoint,
                region: &settings.region,
                allow_http: settings.allow_http,
                timeout: settings.timeout,
            })?,
        };
        Ok(Some(Store {
            inner: with_prefix(inner, &settings.prefix, "store.prefix")?,
            jail,
            max_size: settings.max_size,
            timeout: settings.timeout,
            breaker: Breaker::new(
                "store",
                settings.breaker_failures,
                settings.breaker_cooldown,
                breaker_open,
            ),
            received,
        }))
    }

    /// How long one store request may take (`store.timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the store's breaker is open (it kept failing), for `/readyz`.
    pub fn resting(&self) -> bool {
        self.breaker.is_open()
    }

    /// One store request, unless the breaker says not to ask; its outcome told to the
    /// breaker (an answer, even "not found", is a success; a time-out or a connection or
    /// server error a failure).
    async fn ask<T>(
        &self,
        request: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> Result<T, StoreError> {
        if !self.breaker.allow() {
            return Err(StoreError::Resting {
                retry_after: self.breaker.retry_after(),
            });
        }
        let outcome = match tokio::time::timeout(self.timeout, request).await {
            Err(_) => Err(StoreError::Timeout),
            Ok(result) => result.map_err(StoreError::from),
        };
        match &outcome {
            Err(e @ (StoreError::Timeout | StoreError::Unavailable(_))) => self.breaker.failure(e),
            _ => self.breaker.success(),
        }
        outcome
    }

    /// The metadata of `key` alone (S3: one HEAD; a directory: one `stat`). Larger than
    /// the cap: refused here already.
    pub async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let path = Path::parse(key).map_err(|e| StoreError::InvalidKey(e.to_string()))?;
        self.stay_inside(&path).await?;
        let meta = self.ask(self.inner.head(&path)).await?;
        if meta.size > self.max_size {
            return Err(StoreError::TooLarge {
                limit: self.max_size,
            });
        }
        Ok(object_meta(&meta))
    }

    /// Starts reading `key`: metadata now, the body as it is read. Larger than the cap:
    /// refused from the metadata, before any body byte is read.
    pub async fn get(&self, key: &str) -> Result<StoreObject, StoreError> {
        self.get_with(key, GetOptions::default()).await
    }

    /// The bytes `range` of `key` (cut at its end), of the version `version` only (an
    /// object replaced meanwhile: `StoreError::Changed`, never a splice of two versions).
    /// S3: one ranged GET; a directory: a seek.
    pub async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        version: &str,
    ) -> Result<StoreObject, StoreError> {
        let options = GetOptions {
            range: Some(object_store::GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let object = self.get_with(key, options).await?;
        if object.meta.version != version {
            return Err(StoreError::Changed);
        }
        Ok(object)
    }

    async fn get_with(&self, key: &str, options: GetOptions) -> Result<StoreObject, StoreError> {
        let path = Path::parse(key).map_err(|e| StoreError::InvalidKey(e.to_string()))?;
        self.stay_inside(&path).await?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let result = self.ask(self.inner.get_opts(&path, options)).await?;
        let meta = &result.meta;
        if meta.size > self.max_size {
            return Err(StoreError::TooLarge {
                limit: self.max_size,
            });
        }
        let announced = result.range.end.saturating_sub(result.range.start);
        let meta = object_meta(meta);
        let stream = match result.payload {
            GetResultPayload::File(file, _) => file_stream(file, result.range),
            GetResultPayload::Stream(_) => result.into_stream(),
        };
        Ok(StoreObject {
            meta,
            body: ObjectBody::new(
                deadline_chunks(stream, deadline),
                self.max_size,
                Some(announced),
                self.received.clone(),
            ),
        })
    }

    /// A local directory: resolves `path` on disk, symbolic links included, and refuses
    /// (as not found: whether something exists outside is not the client's business) what
    /// ends outside the root. `object_store` follows links anywhere, so `media/link.png` →
    /// `/etc/…` was served. A name the file system cannot hold (a segment over 255 bytes)
    /// is not found either, rather than a store failure (it was a 502). A link swapped
    /// between this check and the open is not caught: the root is the operator's, and only
    /// someone who can write there could race it.
    async fn stay_inside(&self, path: &Path) -> Result<(), StoreError> {
        let Some(jail) = self.jail.clone() else {
            return Ok(());
        };
        let on_disk = path
            .parts()
            .fold(jail.as_ref().clone(), |dir, part| dir.join(part.as_ref()));
        let resolved = tokio::task::spawn_blocking(move || std::fs::canonicalize(on_disk))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        match resolved {
            Ok(real) if real.starts_with(jail.as_ref()) => Ok(()),
            Ok(_) => Err(StoreError::NotFound),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || matches!(
                        e.raw_os_error(),
                        Some(libc::ENAMETOOLONG | libc::ENOTDIR | libc::ELOOP)
                    ) =>
            {
                Err(StoreError::NotFound)
            }
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }
}

/// Our view of the store's metadata: the version is the store's version id, else its
/// ETag, else the modification time and size (a GET and a HEAD of one object agree).
fn object_meta(meta: &object_store::ObjectMeta) -> ObjectMeta {
    let version = match (&meta.version, &meta.e_tag) {
        (Some(v), _) => format!("v:{v}"),
        (None, Some(etag)) => format!("e:{etag}"),
        (None, None) => format!(
            "m:{}:{}",
            meta.last_modified.timestamp_nanos_opt().unwrap_or_default(),
            meta.size
        ),
    };
    ObjectMeta {
        version,
        last_modified: SystemTime::from(meta.last_modified),
        size: meta.size,
    }
}

/// What an S3 (or S3-compatible) bucket is opened from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct S3Location<'a> {
    pub bucket: &'a str,
    pub endpoint: &'a str,
    pub region: &'a str,
    pub allow_http: bool,
    pub timeout: Duration,
}

/// A local directory as an object store (created if missing). `setting` names it in errors.
pub(crate) fn open_local(
    root: &std::path::Path,
    setting: &str,
) -> Result<Arc<dyn ObjectStore>, String> {
    std::fs::create_dir_all(root)
        .map_err(|e| format!("cannot create {setting} {}: {e}", root.display()))?;
    let fs = LocalFileSystem::new_with_prefix(root)
        .map_err(|e| format!("cannot open {setting} {}: {e}", root.display()))?;
    Ok(Arc::new(fs))
}

/// An S3 bucket; credentials from the standard AWS chain.
pub(crate) fn open_s3(at: &S3Location<'_>) -> Result<Arc<dyn ObjectStore>, String> {
    // The TLS stack has one crypto provider for the whole program (ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(at.bucket)
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(at.allow_http)
                .with_connect_timeout(Duration::from_secs(5))
                // Past the callers' own deadline: theirs fires first and is reported as a
                // time-out (the client's own would surface as a generic failure, a 502).
                .with_timeout(at.timeout + Duration::from_secs(1)),
        )
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: at.timeout,
            ..RetryConfig::default()
        });
    if !at.endpoint.is_empty() {
        b = b.with_endpoint(at.endpoint).with_allow_http(at.allow_http);
    }
    if !at.region.is_empty() {
        b = b.with_region(at.region);
    }
    Ok(Arc::new(
        b.build().map_err(|e| format!("cannot set up S3: {e}"))?,
    ))
}

/// `inner` seen through a key prefix (none when `prefix` is empty).
pub(crate) fn with_prefix(
    inner: Arc<dyn ObjectStore>,
    prefix: &str,
    setting: &str,
) -> Result<Arc<dyn ObjectStore>, String> {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        return Ok(inner);
    }
    let prefix = Path::parse(prefix).map_err(|e| format!("{setting}: {e}"))?;
    Ok(Arc::new(PrefixStore::new(inner, prefix)))
}

/// Read size for local files.
const FILE_CHUNK: u64 = 256 * 1024;

/// A local file as a stream of 256 KiB reads on the blocking pool. Hand-written because
/// object_store reads local files in 8 KiB pieces, one blocking-pool hop each: 64 hops for a
/// 500 KB photo, about 2 ms of CPU measured per request (`docs/benchmarks.md`).
fn file_stream(
    file: std::fs::File,
    range: std::ops::Range<u64>,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    use std::io::{Read, Seek, SeekFrom};
    let start = range.start;
    let state = (Some(file), start, range.end);
    futures_util::stream::unfold(state, move |(file, pos, end)| async move {
        let mut file = file?;
        if pos >= end {
            return None;
        }
        let want = (end - pos).min(FILE_CHUNK);
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::with_capacity(want as usize);
            if pos == start {
                // Only the first read: after it the file position follows the reads.
                file.seek(SeekFrom::Start(pos))?;
            }
            (&mut file).take(want).read_to_end(&mut buf)?;
            Ok::<_, std::io::Error>((file, buf))
        })
        .await;
        let error = |e: String| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: e.into(),
        };
        match read {
            Ok(Ok((_, buf))) if buf.is_empty() => Some((
                Err(error("file shorter than its metadata".into())),
                (None, end, end),
            )),
            Ok(Ok((file, buf))) => {
                let next = pos + buf.len() as u64;
                Some((Ok(Bytes::from(buf)), (Some(file), next, end)))
            }
            Ok(Err(e)) => Some((Err(error(e.to_string())), (None, end, end))),
            Err(e) => Some((Err(error(e.to_string())), (None, end, end))),
        }
    })
    .boxed()
}

/// An object's chunks, none after `deadline` (`store.timeout` from the GET). The stream
/// ends after the first error.
fn deadline_chunks(
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    deadline: tokio::time::Instant,
) -> BoxStream<'static, Result<Bytes, StoreError>> {
    futures_util::stream::unfold(Some(stream), move |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => Some((Err(StoreError::Timeout), None)),
            Ok(None) => None,
            Ok(Some(Err(e))) => Some((Err(e.into()), None)),
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
        }
    })
    .boxed()
}
