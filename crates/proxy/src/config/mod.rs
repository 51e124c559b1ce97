//! `Settings`: the whole configuration, read once at start-up from three layers — embedded
//! defaults, then an optional TOML file, then environment variables `MEDIA_PROXY__<KEY>`
//! (`__` separates nested keys: `MEDIA_PROXY__TIMEOUTS__IDLE=45s`) — and validated before
//! anything starts. This is the only module that reads the environment (the platform's own
//! variables — Lambda's, the allocator's, `RUST_LOG` — in [`environment`]); every component
//! receives its own sub-struct.
//!
//! Key names follow the Node reference proxy where it has them (`allowed_private_networks`,
//! `max_size`, `user_agent`, `proxy`). `docs/configuration.md` lists every key.
//!
//! Input: the optional TOML file, the environment; output: a valid [`Settings`] or a
//! [`ConfigError`] naming the key. Uses `relay` (the client-address source).

pub mod environment;
mod remote;
mod server;
mod store;
mod values;

pub use environment::ProcessEnv;
pub use remote::{ClientAddressSource, RemoteSettings};
pub use server::{MetricsListener, ServerSettings};
use store::{check_location, Where, CACHE, STORE};
pub use store::{CacheKind, CacheSettings, ResizeSettings, StoreKind, StoreSettings};
pub use values::{listen_address, log_filter};

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use url::Url;

/// What `check-config` prints instead of a secret.
const MASK: &str = "********";

/// Prefix of the environment variables that configure the program.
pub const ENV_PREFIX: &str = "MEDIA_PROXY__";

/// Everything configurable. Constructed only through [`Settings::load`] (or
/// [`Settings::default`] plus [`Settings::validate`] in tests), so a value of this type is
/// always valid.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the standalone server listens on (a host name is resolved at start-up).
    #[serde(deserialize_with = "values::listen")]
    pub listen: SocketAddr,
    /// Networks that are reachable even though they are not global unicast (CIDR, IPv4 and
    /// IPv6 mixed). Empty by default: only public addresses are fetched.
    #[serde(deserialize_with = "values::networks")]
    pub allowed_private_networks: Vec<IpNet>,
    /// Largest remote body accepted, in bytes (after decompression).
    pub max_size: u64,
    /// `User-Agent` sent to origins.
    pub user_agent: String,
    /// Optional forward proxy for outgoing requests (`http://host:port`). The address checks
    /// still apply to every destination.
    #[serde(deserialize_with = "values::optional_url")]
    pub proxy: Option<Url>,
    /// Redirects followed per request, each hop checked.
    pub max_redirects: u8,
    /// After SIGTERM/SIGINT, how long requests in flight may take to finish before the
    /// process exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub timeouts: Timeouts,
    /// The standalone server's listener: client time-outs and the connection cap.
    pub server: ServerSettings,
    /// The remote mode's open-relay controls (all off by default).
    pub remote: RemoteSettings,
    pub limits: ImageLimits,
    pub workers: WorkerSettings,
    pub headers: HeaderSettings,
    pub log: LogSettings,
    /// Where the store mode reads originals (`GET /<key>?w=…`).
    pub store: StoreSettings,
    /// The store mode's request rules and response caching.
    pub resize: ResizeSettings,
    /// The variant cache, the negative cache and request coalescing.
    pub cache: CacheSettings,
}

/// What one image may cost, checked from its header before decoding (over → 422).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageLimits {
    /// Pixels in one frame.
    pub max_pixels: u64,
    /// Frames in an animation.
    pub max_frames: u32,
    /// Pixels summed over all frames.
    pub max_total_pixels: u64,
    /// Largest single decoder allocation, in bytes.
    pub max_alloc: u64,
    /// Elements of an SVG once every `<use>` is expanded.
    pub max_svg_elements: u64,
    /// Pixel operations an SVG render may need at its output size (what bounds its CPU:
    /// the renderer cannot be interrupted).
    pub max_svg_work: u64,
    /// Bytes of a video read for one thumbnail or poster (index and samples); over → 413.
    pub max_video_read: u64,
}

/// The pool that runs image work (never on the async workers), and its admission rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Images processed at once; 0 means one per CPU core.
    pub threads: usize,
    /// Requests allowed to wait for a worker or for memory; beyond that, 503 with Retry-After.
    pub queue: usize,
    /// Longest wait in that queue; a request still waiting then gets 503 with Retry-After.
    #[serde(with = "humantime_serde")]
    pub queue_wait: Duration,
    /// Processing deadline of one image, from the moment it starts; past it, the work is
    /// abandoned and the request answered 422.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Bytes of memory that image work may hold at once, summed over the requests being
    /// processed (each reserves its estimate from the headers before decoding). 0 means half
    /// of the memory available to the process (its cgroup limit, else the machine's RAM).
    pub memory_budget: u64,
    /// Where decoding runs: `process` (sandboxed worker processes, the default) or
    /// `thread` (inside the server, for debugging and for comparing costs).
    pub isolation: Isolation,
    /// Bytes of address space one worker process may map beyond what it maps at start
    /// (its share of the budget; a job that needs more fails with 422). 0: the whole
    /// memory budget (one job may be admitted with all of it).
    pub worker_memory: u64,
    /// The program started as a worker (`PROGRAM worker`); empty: this binary itself. Set
    /// only to run the workers from another copy of media-proxy.
    pub worker_program: std::path::PathBuf,
}

/// Where image work runs (`workers.isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Worker processes, each confined by the kernel (`sandbox`).
    Process,
    /// Threads of the server process.
    Thread,
}

impl Default for ImageLimits {
    fn default() -> Self {
        let d = media::Limits::default();
        ImageLimits {
            max_pixels: d.max_pixels,
            max_frames: d.max_frames,
            max_total_pixels: d.max_total_pixels,
            max_alloc: d.max_alloc,
            max_svg_elements: d.max_svg_elements,
            max_svg_work: d.max_svg_work,
            max_video_read: d.max_video_read,
        }
    }
}

impl From<ImageLimits> for media::Limits {
    fn from(l: ImageLimits) -> Self {
        media::Limits {
            max_pixels: l.max_pixels,
            max_frames: l.max_frames,
            max_total_pixels: l.max_total_pixels,
            max_alloc: l.max_alloc,
            max_svg_elements: l.max_svg_elements,
            max_svg_work: l.max_svg_work,
            max_video_read: l.max_video_read,
        }
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            threads: 0,
            queue: 16,
            queue_wait: Duration::from_secs(5),
            deadline: Duration::from_secs(10),
            memory_budget: 0,
            isolation: Isolation::Process,
            worker_memory: 0,
            worker_program: std::path::PathBuf::new(),
        }
    }
}

/// Limits on how long an origin may take.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// Establishing the TCP (and TLS) connection.
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// Longest silence while waiting for the response head or the next body chunk.
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
    /// Whole origin exchange, from the first connection to the last body byte.
    #[serde(with = "humantime_serde")]
    pub total: Duration,
}

/// Headers put on every response. An empty string leaves that header out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderSettings {
    pub cors_allow_origin: String,
    pub cors_allow_headers: String,
    pub cors_allow_methods: String,
    pub content_security_policy: String,
    pub content_type_options: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (human-readable) or `json` (one object per line).
    pub format: LogFormat,
    /// A `tracing` filter directive, e.g. `info` or `media_proxy=debug`. `RUST_LOG`, when
    /// set, wins (it is the tracing convention).
    pub filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 3003)),
            allowed_private_networks: Vec::new(),
            max_size: 262_144_000,
            user_agent: format!(
                "media-proxy/{} (+https://github.com/misskey-dev/media-proxy compatible)",
                env!("CARGO_PKG_VERSION")
            ),
            proxy: None,
            max_redirects: 10,
            shutdown_grace: Duration::from_secs(30),
            timeouts: Timeouts::default(),
            server: ServerSettings::default(),
            remote: RemoteSettings::default(),
            limits: ImageLimits::default(),
            workers: WorkerSettings::default(),
            headers: HeaderSettings::default(),
            log: LogSettings::default(),
            store: StoreSettings::default(),
            resize: ResizeSettings::default(),
            cache: CacheSettings::default(),
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            total: Duration::from_secs(60),
        }
    }
}

impl Default for HeaderSettings {
    fn default() -> Self {
        HeaderSettings {
            cors_allow_origin: "*".into(),
            cors_allow_headers: "*".into(),
            cors_allow_methods: "GET, HEAD, OPTIONS".into(),
            content_security_policy:
                "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'"
                    .into(),
            content_type_options: "nosniff".into(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// Why the configuration could not be used. Printed to the operator at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(String),
    #[error("{0}")]
    Parse(Box<figment::Error>),
    #[error("invalid setting `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Settings {
    /// Reads defaults, then `file` (if given; it must exist), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Settings::load_over(file, None)
    }

    /// As [`Settings::load`], with `runtime_defaults` (TOML) between the embedded defaults
    /// and the file: how a runtime (Lambda) changes a default without overriding the user.
    pub fn load_over(
        file: Option<&Path>,
        runtime_defaults: Option<&str>,
    ) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(text) = runtime_defaults {
            figment = figment.merge(Toml::string(text));
        }
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        let settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        settings.validate()
    }

    /// The settings as TOML, as `check-config` prints them: signing keys and a forward
    /// proxy's password masked.
    pub fn to_masked_toml(&self) -> Result<String, String> {
        let mut s = self.clone();
        s.resize.signing_keys = s
            .resize
            .signing_keys
            .iter()
            .map(|_| MASK.to_owned())
            .collect();
        s.remote.signing_keys = s
            .remote
            .signing_keys
            .iter()
            .map(|_| MASK.to_owned())
            .collect();
        if let Some(proxy) = &mut s.proxy {
            if proxy.password().is_some() {
                let _ = proxy.set_password(Some(MASK));
            }
        }
        toml::to_string_pretty(&s).map_err(|e| e.to_string())
    }

    /// Checks what types alone cannot say. Returns the settings unchanged when they are usable.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let invalid = |key, reason: &str| ConfigError::Invalid {
            key,
            reason: reason.to_owned(),
        };
        if self.max_size == 0 {
            return Err(invalid("max_size", "must be at least 1 byte"));
        }
        for (key, value) in [
            ("timeouts.connect", self.timeouts.connect),
            ("timeouts.idle", self.timeouts.idle),
            ("timeouts.total", self.timeouts.total),
            ("workers.queue_wait", self.workers.queue_wait),
            ("workers.deadline", self.workers.deadline),
            ("shutdown_grace", self.shutdown_grace),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        for (key, d) in [
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
            ),
            ("server.idle_timeout", self.server.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        if self.server.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be at least 1"));
        }
        self.server.metrics_listener()?;
        self.remote.validate()?;
        let l = &self.limits;
        if l.max_pixels == 0
            || l.max_frames == 0
            || l.max_total_pixels == 0
            || l.max_alloc == 0
            || l.max_svg_elements == 0
            || l.max_svg_work == 0
            || l.max_video_read == 0
        {
            return Err(invalid("limits", "every limit must be at least 1"));
        }
        if self.user_agent.trim().is_empty() {
            return Err(invalid("user_agent", "must not be empty"));
        }
        if let Some(proxy) = &self.proxy {
            if !matches!(proxy.scheme(), "http" | "https") || proxy.host().is_none() {
                return Err(invalid(
                    "proxy",
                    "must be an http:// or https:// URL with a host",
                ));
            }
        }
        for (key, value) in [
            ("user_agent", &self.user_agent),
            ("headers.cors_allow_origin", &self.headers.cors_allow_origin),
            (
                "headers.cors_allow_headers",
                &self.headers.cors_allow_headers,
            ),
            (
                "headers.cors_allow_methods",
                &self.headers.cors_allow_methods,
            ),
            (
                "headers.content_security_policy",
                &self.headers.content_security_policy,
            ),
            (
                "headers.content_type_options",
                &self.headers.content_type_options,
            ),
        ] {
            if http::HeaderValue::from_str(value).is_err() {
                return Err(invalid(key, "is not a valid HTTP header value"));
            }
        }
        values::log_filter(&self.log.filter).map_err(|e| ConfigError::Invalid {
            key: "log.filter",
            reason: e,
        })?;
        self.validate_store()?;
        self.validate_cache()?;
        Ok(self)
    }

    fn validate_cache(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| ConfigError::Invalid {
            key,
            reason: reason.to_owned(),
        };
        let c = &self.cache;
        let at = match c.kind {
            CacheKind::None => Where::Nowhere,
            CacheKind::Local => Where::Directory(&c.root),
            CacheKind::S3 => Where::Bucket(&c.bucket),
        };
        check_location(&CACHE, at, &c.prefix, &c.endpoint, c.allow_http)?;
        if c.kind == CacheKind::Local && c.max_size == 0 {
            return Err(invalid("cache.max_size", "must be at least 1 byte"));
        }
        if c.max_age.is_zero() {
            return Err(invalid("cache.max_age", "must be longer than zero"));
        }
        if c.timeout.is_zero() {
            return Err(invalid("cache.timeout", "must be longer than zero"));
        }
        if c.lookup_timeout.is_zero() {
            return Err(invalid("cache.lookup_timeout", "must be longer than zero"));
        }
        if c.breaker_failures > 0 && c.breaker_cooldown.is_zero() {
            return Err(invalid(
                "cache.breaker_cooldown",
                "must be longer than zero while the breaker is on",
            ));
        }
        if !c.header.is_empty() && http::HeaderName::from_bytes(c.header.as_bytes()).is_err() {
            return Err(invalid("cache.header", "is not a valid HTTP header name"));
        }
        Ok(())
    }

    fn validate_store(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| ConfigError::Invalid {
            key,
            reason: reason.to_owned(),
        };
        let (st, r) = (&self.store, &self.resize);
        let at = match st.kind {
            StoreKind::None => Where::Nowhere,
            StoreKind::Local => Where::Directory(&st.root),
            StoreKind::S3 => Where::Bucket(&st.bucket),
        };
        check_location(&STORE, at, &st.prefix, &st.endpoint, st.allow_http)?;
        if st.max_size == 0 {
            return Err(invalid("store.max_size", "must be at least 1 byte"));
        }
        if st.timeout.is_zero() {
            return Err(invalid("store.timeout", "must be longer than zero"));
        }
        if st.breaker_failures > 0 && st.breaker_cooldown.is_zero() {
            return Err(invalid(
                "store.breaker_cooldown",
                "must be longer than zero while the breaker is on",
            ));
        }
        if r.max_output_dimension == 0 || r.max_output_dimension > 16_384 {
            return Err(invalid(
                "resize.max_output_dimension",
                "must be between 1 and 16384",
            ));
        }
        if r.allowed_sizes
            .iter()
            .any(|&s| s == 0 || s > r.max_output_dimension)
        {
            return Err(invalid(
                "resize.allowed_sizes",
                "every size must be between 1 and max_output_dimension",
            ));
        }
        if r.signing_keys.iter().any(|k| k.len() < 16) {
            return Err(invalid(
                "resize.signing_keys",
                "every key must be at least 16 bytes long",
            ));
        }
        if r.avif_speed > 10 {
            return Err(invalid("resize.avif_speed", "must be between 0 and 10"));
        }
        for (key, q) in [
            ("resize.webp_quality", r.webp_quality),
            ("resize.avif_quality", r.avif_quality),
            ("resize.jpeg_quality", r.jpeg_quality),
        ] {
            if !(1..=100).contains(&q) {
                return Err(invalid(key, "must be between 1 and 100"));
            }
        }
        Ok(())
    }
}

/// A refused setting: its key and why.
fn invalid(key: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        settings.validate()
    }

    /// Every setting, as dotted keys (`timeouts.idle`), from the serialised defaults.
    fn keys(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in table {
            let key = format!("{prefix}{k}");
            match v {
                toml::Value::Table(t) => keys(&format!("{key}."), t, out),
                _ => out.push(key),
            }
        }
    }

    #[test]
    fn the_configuration_reference_lists_every_key_with_its_env_name() {
        let text = Settings::default().to_masked_toml().unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let mut all = Vec::new();
        keys("", &table, &mut all);
        // `proxy` is `None` by default, so not serialised; it is a key all the same.
        all.push("proxy".into());
        assert!(all.len() >= 60, "every table flattened: {all:?}");
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/configuration.md"
        ))
        .unwrap();
        for key in all {
            let env = format!("MEDIA_PROXY__{}", key.replace('.', "__").to_uppercase());
            let row = format!("| `{key}` |");
            let line = doc.lines().find(|l| l.starts_with(&row));
            let line =
                line.unwrap_or_else(|| panic!("docs/configuration.md has no row for `{key}`"));
            assert!(
                line.contains(&format!("`{env}`")),
                "the row of `{key}` names {env}"
            );
        }
    }

    #[test]
    fn defaults_are_valid_and_match_the_reference() -> Result<(), ConfigError> {
        let s = Settings::default().validate()?;
        assert_eq!(s.max_size, 262_144_000);
        assert_eq!(s.timeouts.idle, Duration::from_secs(30));
        assert_eq!(s.timeouts.total, Duration::from_secs(60));
        assert!(s.allowed_private_networks.is_empty());
        Ok(())
    }

    #[test]
    fn networks_mix_v4_and_v6_as_list_or_string() -> Result<(), ConfigError> {
        let s = from_toml(r#"allowed_private_networks = ["10.0.0.0/8", "fd00::/8", "127.0.0.2"]"#)?;
        assert_eq!(s.allowed_private_networks.len(), 3);
        let s = from_toml(r#"allowed_private_networks = "192.168.0.0/16, ::1/128""#)?;
        assert_eq!(s.allowed_private_networks.len(), 2);
        Ok(())
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                r#"allowed_private_networks = ["10.0.0.0/33"]"#,
                "10.0.0.0/33",
            ),
            (r#"proxy = "ftp://example.com""#, "proxy"),
            (r#"proxy = "not a url""#, "not a url"),
            ("max_size = 0", "max_size"),
            ("[timeouts]\nidle = \"0s\"", "timeouts.idle"),
            ("no_such_key = 1", "no_such_key"),
            ("[store]\nkind = \"s3\"", "store.bucket"),
            ("[store]\nkind = \"ftp\"", "ftp"),
            (
                "[store]\nkind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9000\"",
                "store.allow_http",
            ),
            ("[store]\nprefix = \"a/../b\"", "store.prefix"),
            ("[cache]\nkind = \"s3\"", "cache.bucket"),
            ("[cache]\nmax_age = \"0s\"", "cache.max_age"),
            ("[cache]\nheader = \"X Cache\"", "cache.header"),
            (
                "[cache]\nkind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9000\"",
                "cache.allow_http",
            ),
            (
                "[resize]\nmax_output_dimension = 0",
                "resize.max_output_dimension",
            ),
            ("[resize]\nallowed_sizes = [100, 0]", "resize.allowed_sizes"),
            (
                "[resize]\nsigning_keys = [\"short\"]",
                "resize.signing_keys",
            ),
            ("[resize]\njpeg_quality = 101", "resize.jpeg_quality"),
            (r#"listen = "localhost""#, "listen"),
            ("[log]\nfilter = \"verbose\"", "log.filter"),
            ("[resize]\nallowed_sizes = \"64,big\"", "big"),
        ];
        for (text, needle) in cases {
            match from_toml(text) {
                Ok(_) => panic!("`{text}` should be refused"),
                Err(e) => assert!(
                    e.to_string().contains(needle),
                    "error for `{text}` should mention `{needle}`: {e}"
                ),
            }
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's own error type, in a test
    fn environment_overrides_file_overrides_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "proxy.toml",
                "max_size = 1000\nuser_agent = \"from-file\"\n[timeouts]\nidle = \"5s\"\n",
            )?;
            jail.set_env("MEDIA_PROXY__MAX_SIZE", "2000");
            jail.set_env("MEDIA_PROXY__TIMEOUTS__TOTAL", "90s");
            jail.set_env(
                "MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS",
                "10.0.0.0/8,fd00::/8",
            );
            let s = Settings::load(Some(Path::new("proxy.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(s.max_size, 2000, "env beats file");
            assert_eq!(s.user_agent, "from-file", "file beats default");
            assert_eq!(s.timeouts.idle, Duration::from_secs(5), "file");
            assert_eq!(s.timeouts.total, Duration::from_secs(90), "env, nested key");
            assert_eq!(s.timeouts.connect, Duration::from_secs(10), "default kept");
            assert_eq!(s.allowed_private_networks.len(), 2, "comma list from env");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's own error type, in a test
    fn every_list_takes_one_comma_separated_env_value() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("MEDIA_PROXY__RESIZE__ALLOWED_SIZES", "64, 128");
            jail.set_env(
                "MEDIA_PROXY__RESIZE__SIGNING_KEYS",
                "0123456789abcdef0123,fedcba9876543210fedc",
            );
            jail.set_env(
                "MEDIA_PROXY__REMOTE__ALLOW_HOSTS",
                "example.com,*.example.org",
            );
            jail.set_env("MEDIA_PROXY__REMOTE__DNS_SERVERS", "127.0.0.1:5353");
            jail.set_env("MEDIA_PROXY__LISTEN", "localhost:3004");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.resize.allowed_sizes, [64, 128]);
            assert_eq!(s.resize.signing_keys.len(), 2);
            assert_eq!(s.remote.allow_hosts, ["example.com", "*.example.org"]);
            assert_eq!(s.remote.dns_servers.len(), 1);
            assert!(s.listen.ip().is_loopback() && s.listen.port() == 3004);
            // One item alone, which the environment hands over as a number; and the array
            // form, which keeps working.
            jail.set_env("MEDIA_PROXY__RESIZE__ALLOWED_SIZES", "64");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.resize.allowed_sizes, [64]);
            jail.set_env("MEDIA_PROXY__RESIZE__ALLOWED_SIZES", "[32,48]");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.resize.allowed_sizes, [32, 48]);
            Ok(())
        });
    }
}
