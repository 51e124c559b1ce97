//! `[server]`: what the standalone server's listener allows a client, and where `/metrics`
//! is served. Plain data with defaults; `metrics_listener` reads the one setting that needs
//! parsing.
//!
//! Input: the `[server]` table; output: [`ServerSettings`]. Uses the section checks of
//! `config`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// What the standalone server's listener allows a client (see `listener.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Longest a client may take to send a request head (also while a keep-alive
    /// connection waits for its next request); then the connection is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection on which nothing is read or written for this long is closed (idle
    /// keep-alive, idle HTTP/2, a client that stopped reading). Keep it above the longest a
    /// request may take before its first byte: `timeouts.total` + `workers.queue_wait` +
    /// `workers.deadline` (75 s with the defaults).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Open client connections at most; a new one beyond gets `503` and is closed. Keep it
    /// below the process's file-descriptor limit.
    pub max_connections: usize,
    /// Where `/metrics` is served: `public` (on the main listener, the default), `off`, or
    /// a socket address of its own listener (`127.0.0.1:9464`), then not on the main one.
    pub metrics: String,
}

/// Where `/metrics` is served (see [`ServerSettings::metrics`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListener {
    Public,
    Off,
    Own(SocketAddr),
}

impl ServerSettings {
    pub fn metrics_listener(&self) -> Result<MetricsListener, ConfigError> {
        match self.metrics.trim() {
            "public" => Ok(MetricsListener::Public),
            "off" => Ok(MetricsListener::Off),
            addr => addr.parse().map(MetricsListener::Own).map_err(|_| {
                invalid(
                    "server.metrics",
                    "must be `public`, `off` or a socket address such as 127.0.0.1:9464",
                )
            }),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_connections: 4096,
            metrics: "public".into(),
        }
    }
}
