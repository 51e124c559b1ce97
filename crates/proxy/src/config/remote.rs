//! `[remote]`: the remote mode's open-relay controls, all off by default so that the
//! Misskey contract holds as it is (any URL, any client). `docs/operations.md` ("A public
//! proxy") recommends a setup for a proxy on the open internet.
//!
//! Input: the `[remote]` table; output: [`RemoteSettings`]. Uses `relay` and the section
//! checks of `config`.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Who may make the remote mode fetch what, and how much of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteSettings {
    /// When not empty, only origin hosts under these domains are fetched (suffix match on
    /// whole labels: `example.com` covers `cdn.example.com`); others → 403. Every redirect
    /// hop is checked.
    #[serde(deserialize_with = "super::values::list_or_commas")]
    pub allow_hosts: Vec<String>,
    /// Origin hosts under these domains are never fetched (403); wins over `allow_hosts`.
    #[serde(deserialize_with = "super::values::list_or_commas")]
    pub deny_hosts: Vec<String>,
    /// HMAC-SHA256 keys; when any is set every remote URL needs `sig` = the hex HMAC of the
    /// `url` value (403 without). For front-ends that can sign; Misskey itself does not.
    #[serde(deserialize_with = "super::values::list_or_commas")]
    pub signing_keys: Vec<String>,
    /// Origin fetches a client may cause per minute (cache hits are free); over → 429
    /// with `Retry-After`. 0 turns the limit off.
    pub rate_limit: u32,
    /// Fetches a client may make at once before the rate applies; 0: `rate_limit`.
    pub rate_burst: u32,
    /// Where the client's address comes from: `peer` (the TCP peer), `cloudfront`
    /// (`CloudFront-Viewer-Address`), `cloudflare` (`CF-Connecting-IP`) or
    /// `x-forwarded-for` (read from the right past `trusted_proxies`). Only name a header
    /// that your CDN sets and that clients cannot reach you without.
    pub client_address: ClientAddressSource,
    /// Hops whose `X-Forwarded-For` is believed (CIDR list).
    #[serde(deserialize_with = "super::values::networks")]
    pub trusted_proxies: Vec<IpNet>,
    /// Largest original passed through unchanged, bytes; 0: `max_size`. Over → 413.
    pub passthrough_max_size: u64,
    /// Passthrough answers streaming at once; beyond → 503. 0: no cap (the connection cap
    /// still applies).
    pub passthrough_max_concurrent: usize,
    /// Name servers asked for origin hosts (`10.0.0.2`, `127.0.0.1:5353`); empty: the
    /// system's (`/etc/resolv.conf`).
    #[serde(deserialize_with = "super::values::name_servers")]
    pub dns_servers: Vec<std::net::SocketAddr>,
}

/// See [`RemoteSettings::client_address`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAddressSource {
    #[default]
    Peer,
    Cloudfront,
    Cloudflare,
    XForwardedFor,
}

impl Default for RemoteSettings {
    fn default() -> Self {
        RemoteSettings {
            allow_hosts: Vec::new(),
            deny_hosts: Vec::new(),
            signing_keys: Vec::new(),
            rate_limit: 0,
            rate_burst: 0,
            client_address: ClientAddressSource::Peer,
            trusted_proxies: Vec::new(),
            passthrough_max_size: 0,
            passthrough_max_concurrent: 0,
            dns_servers: Vec::new(),
        }
    }
}

impl RemoteSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.signing_keys.iter().any(|k| k.len() < 16) {
            return Err(invalid(
                "remote.signing_keys",
                "every key must be at least 16 bytes long",
            ));
        }
        if self.client_address == ClientAddressSource::XForwardedFor
            && self.trusted_proxies.is_empty()
        {
            return Err(invalid(
                "remote.trusted_proxies",
                "x-forwarded-for needs the networks of the hops that set it",
            ));
        }
        if self.rate_limit == 0 && self.rate_burst != 0 {
            return Err(invalid("remote.rate_burst", "needs remote.rate_limit"));
        }
        Ok(())
    }

    /// The relay's view of where the client address comes from.
    pub fn client_address(&self) -> crate::relay::ClientAddress {
        match self.client_address {
            ClientAddressSource::Peer => crate::relay::ClientAddress::Peer,
            ClientAddressSource::Cloudfront => crate::relay::ClientAddress::CloudFront,
            ClientAddressSource::Cloudflare => crate::relay::ClientAddress::Cloudflare,
            ClientAddressSource::XForwardedFor => crate::relay::ClientAddress::ForwardedFor {
                trusted: self.trusted_proxies.clone(),
            },
        }
    }
}
