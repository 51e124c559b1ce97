//! Open-relay controls for the remote mode: who may make us fetch what, and how often.
//! All are off by default (the Misskey contract: any URL, any client); each is a setting
//! under `remote` (see `docs/operations.md`, "A public proxy"). Pure decisions over plain
//! values: input a host name, a client address, a header's text; output allow or refuse.
//! Uses std, `ipnet` and `governor` (the keyed rate limiter); no HTTP types.
//!
//! - [`HostRules`]: origin host allow and deny lists, by domain suffix (`example.com`
//!   covers `cdn.example.com`, not `badexample.com`), checked on every redirect hop.
//! - [`ClientAddress`]: which address a request comes from — the socket's peer, or a
//!   header set by a CDN the operator trusts (`CloudFront-Viewer-Address`,
//!   `CF-Connecting-IP`, or `X-Forwarded-For` read from the right past trusted hops).
//! - [`FetchLimiter`]: origin fetches per client per minute (a GCRA token bucket from
//!   `governor`); cache hits and coalesced followers do not count, since they fetch nothing.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

/// The address a request came from, as the runtime saw it (the TCP peer; on Lambda the
/// function URL's `sourceIp`): put on the request by the listener or the Lambda adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub IpAddr);

/// Origin host allow and deny lists (suffix match on whole labels, case-insensitive).
#[derive(Debug, Clone, Default)]
pub struct HostRules {
    allow: Vec<String>,
    deny: Vec<String>,
}

impl HostRules {
    pub fn new(allow: &[String], deny: &[String]) -> HostRules {
        let clean = |v: &[String]| {
            v.iter()
                .map(|h| {
                    h.trim()
                        .trim_start_matches('.')
                        .trim_end_matches('.')
                        .to_ascii_lowercase()
                })
                .filter(|h| !h.is_empty())
                .collect()
        };
        HostRules {
            allow: clean(allow),
            deny: clean(deny),
        }
    }

    /// Whether `host` (a name or an IP literal as the URL spells it) may be fetched: not on
    /// the deny list, and on the allow list when there is one.
    pub fn permits(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let covers = |rule: &String| {
            host == *rule
                || host
                    .strip_suffix(rule.as_str())
                    .is_some_and(|rest| rest.ends_with('.'))
        };
        if self.deny.iter().any(covers) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(covers)
    }
}

/// Where the client's address is read from.
#[derive(Debug, Clone, Default)]
pub enum ClientAddress {
    /// The TCP peer (the default; behind a CDN that is the CDN's edge).
    #[default]
    Peer,
    /// `CloudFront-Viewer-Address: 198.51.100.7:46532` (CloudFront only sets it when the
    /// origin request policy forwards it).
    CloudFront,
    /// `CF-Connecting-IP: 198.51.100.7` (Cloudflare).
    Cloudflare,
    /// `X-Forwarded-For`, read from the right: the first address not in `trusted` is the
    /// client; used only when the peer itself is trusted.
    ForwardedFor { trusted: Vec<IpNet> },
}

impl ClientAddress {
    /// The header this source reads, if any.
    pub fn header(&self) -> Option<&'static str> {
        match self {
            ClientAddress::Peer => None,
            ClientAddress::CloudFront => Some("cloudfront-viewer-address"),
            ClientAddress::Cloudflare => Some("cf-connecting-ip"),
            ClientAddress::ForwardedFor { .. } => Some("x-forwarded-for"),
        }
    }

    /// The client's address from the peer's and the header's text (`None` when neither
    /// says: a request the limiter then counts under one shared key).
    pub fn resolve(&self, peer: Option<IpAddr>, header: Option<&str>) -> Option<IpAddr> {
        let peer = peer.map(|ip| ip.to_canonical());
        match self {
            ClientAddress::Peer => peer,
            ClientAddress::CloudFront => header
                .and_then(|h| {
                    let h = h.trim();
                    h.parse::<std::net::SocketAddr>()
                        .map(|s| s.ip())
                        .ok()
                        .or_else(|| h.parse().ok())
                })
                .or(peer),
            ClientAddress::Cloudflare => header.and_then(|h| h.trim().parse().ok()).or(peer),
            ClientAddress::ForwardedFor { trusted } => {
                let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
                let Some(peer) = peer.filter(is_trusted) else {
                    return peer;
                };
                let mut client = peer;
                for hop in header.unwrap_or("").rsplit(',') {
                    match hop.trim().parse::<IpAddr>() {
                        Ok(ip) if is_trusted(&ip) => client = ip,
                        Ok(ip) => return Some(ip),
                        // A hop we cannot read: stop at the last one we could.
                        Err(_) => break,
                    }
                }
                Some(client)
            }
        }
    }
}

/// The key a client is counted under: IPv4 as is (also when it arrives IPv4-mapped, as on
/// a dual-stack listener), IPv6 by its /64 (one subscriber's prefix: rotating addresses
/// within it does not buy more fetches).
fn key(ip: Option<IpAddr>) -> IpAddr {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let masked = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(masked.into())
        }
        Some(v4) => v4,
        None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    }
}

/// Origin fetches per client per minute.
#[derive(Debug)]
pub struct FetchLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    /// Checks since the table was last pruned of idle clients.
    checks: AtomicU64,
}

/// A client over its rate, and how long until it may fetch again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    pub retry_after: Duration,
}

impl FetchLimiter {
    /// `per_minute` fetches a minute, up to `burst` at once; `None` when `per_minute` is 0.
    pub fn new(per_minute: u32, burst: u32) -> Option<FetchLimiter> {
        let rate = NonZeroU32::new(per_minute)?;
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Some(FetchLimiter {
            limiter: RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        })
    }

    /// Counts one origin fetch for `client`.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), RateLimited> {
        // The table holds one small entry per client seen lately; forget the idle ones now
        // and then so an attacker's many addresses cannot grow it without bound.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(&key(client))
            .map_err(|not_until| RateLimited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_rules_match_whole_labels() {
        let rules = HostRules::new(
            &["example.com".into(), ".media.test".into()],
            &["bad.example.com".into()],
        );
        for (host, ok) in [
            ("example.com", true),
            ("cdn.Example.COM", true),
            ("example.com.", true),
            ("badexample.com", false),
            ("bad.example.com", false),
            ("x.bad.example.com", false),
            ("media.test", true),
            ("a.media.test", true),
            ("other.org", false),
            ("127.0.0.1", false),
        ] {
            assert_eq!(rules.permits(host), ok, "{host}");
        }
        let deny_only = HostRules::new(&[], &["evil.test".into()]);
        assert!(deny_only.permits("anything.org"));
        assert!(!deny_only.permits("www.evil.test"));
        assert!(HostRules::default().permits("any.where"));
    }

    #[test]
    fn the_client_address_comes_only_from_where_it_is_trusted() {
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let cf = ClientAddress::CloudFront;
        assert_eq!(
            cf.resolve(Some(peer), Some("198.51.100.7:46532")),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(
            cf.resolve(Some(peer), Some("[2001:db8::1]:443")),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(cf.resolve(Some(peer), Some("garbage")), Some(peer));
        let xff = ClientAddress::ForwardedFor {
            trusted: vec!["10.0.0.0/8".parse().unwrap()],
        };
        let header = Some("203.0.113.9, 198.51.100.7, 10.1.1.1");
        assert_eq!(
            xff.resolve(Some(peer), header),
            Some("198.51.100.7".parse().unwrap()),
            "the first untrusted hop from the right"
        );
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            xff.resolve(Some(stranger), header),
            Some(stranger),
            "an untrusted peer's header is not believed"
        );
        assert_eq!(ClientAddress::Peer.resolve(Some(peer), header), Some(peer));
    }

    #[test]
    fn the_limiter_counts_per_client_and_ipv6_per_64() {
        let limiter = FetchLimiter::new(60, 2).unwrap();
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        let b: IpAddr = "198.51.100.8".parse().unwrap();
        assert!(limiter.check(Some(a)).is_ok());
        assert!(limiter.check(Some(a)).is_ok());
        let over = limiter.check(Some(a)).unwrap_err();
        assert!(over.retry_after > Duration::ZERO && over.retry_after <= Duration::from_secs(1));
        assert!(
            limiter.check(Some(b)).is_ok(),
            "another client has its own budget"
        );
        let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(limiter.check(Some(v6a)).is_ok());
        assert!(limiter.check(Some(v6b)).is_ok());
        assert!(limiter.check(Some(v6a)).is_err(), "the same /64");
        // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: each still its own.
        let mapped = |ip: &str| {
            Some(IpAddr::V6(
                ip.parse::<std::net::Ipv4Addr>().unwrap().to_ipv6_mapped(),
            ))
        };
        assert!(limiter.check(mapped("192.0.2.10")).is_ok());
        assert!(limiter.check(mapped("192.0.2.11")).is_ok());
        assert!(limiter.check(mapped("192.0.2.12")).is_ok());
        assert!(
            limiter.check(Some(a)).is_err(),
            "mapped or not, the same client"
        );
        assert!(limiter.check(mapped("198.51.100.7")).is_err());
        assert!(FetchLimiter::new(0, 5).is_none(), "0 turns it off");
    }
}
