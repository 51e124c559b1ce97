//! How one setting's value may be written: the parsers `serde` uses for the values that
//! are more than their type (a list given as one comma-separated string, a CIDR network,
//! a name server, a host name to listen on, a log filter). One syntax for lists, wherever
//! they come from: a TOML array or one string `a,b` — the only form an environment
//! variable can carry (`MEDIA_PROXY__RESIZE__ALLOWED_SIZES=64,128`).
//!
//! Input: what `figment` read (TOML or environment); output: typed values or a message
//! naming the bad item. Uses nothing of ours.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use url::Url;

/// One item of a list as `figment` may hand it over: environment values that look like
/// numbers (`64`, or a key made of digits) arrive as numbers, not strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Item {
    Text(String),
    Number(u64),
}

impl Item {
    fn into_text(self) -> String {
        match self {
            Item::Text(s) => s,
            Item::Number(n) => n.to_string(),
        }
    }
}

/// A list given as a list, or as one string of comma-separated items (or one number).
#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    List(Vec<Item>),
    One(Item),
}

/// A list of strings, as a list or as one comma-separated string; items trimmed, empty ones
/// dropped.
pub(super) fn list_or_commas<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let items: Vec<String> = match Raw::deserialize(d)? {
        Raw::List(list) => list.into_iter().map(Item::into_text).collect(),
        Raw::One(one) => one.into_text().split(',').map(str::to_owned).collect(),
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

/// Sizes in pixels, as a list (`[64, 128]`) or one comma-separated string (`"64,128"`).
pub(super) fn sizes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    list_or_commas(d)?
        .iter()
        .map(|s| {
            s.parse::<u32>().map_err(|_| {
                serde::de::Error::custom(format!("`{s}` is not a size in pixels (e.g. 64,128)"))
            })
        })
        .collect()
}

/// A CIDR list, given either as a list (`["10.0.0.0/8", "fd00::/8"]`) or as one
/// comma-separated string. A bare address means a /32 or /128.
pub(super) fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    list_or_commas(d)?
        .iter()
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{s}` is not a CIDR network (expected e.g. 10.0.0.0/8 or fd00::/8)"
                    ))
                })
        })
        .collect()
}

/// Name server addresses, as a list or one comma-separated string; a bare address means
/// port 53.
pub(super) fn name_servers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    list_or_commas(d)?
        .iter()
        .map(|s| {
            s.parse::<SocketAddr>()
                .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{s}` is not a name server address (expected e.g. 10.0.0.2 or 127.0.0.1:5353)"
                    ))
                })
        })
        .collect()
}

/// An optional URL where the empty string means "none" (so an environment variable can
/// switch the proxy off).
pub(super) fn optional_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => Url::parse(s)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("`{s}` is not a URL: {e}"))),
    }
}

/// The `listen` setting, written as an address or a host name with a port.
pub(super) fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let raw = String::deserialize(d)?;
    listen_address(&raw).map_err(serde::de::Error::custom)
}

/// An address to listen on: `0.0.0.0:3003`, `[::1]:3003`, or a host name with a port
/// (`localhost:3003`), resolved once, here (the first address the system gives). The one
/// parser of both the `listen` setting and `serve --listen`.
pub fn listen_address(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let expected = "expected an address and port such as 0.0.0.0:3003, [::]:3003 or localhost:3003";
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
        _ => return Err(format!("`{text}`: {expected}")),
    }
    text.to_socket_addrs()
        .map_err(|e| format!("`{text}`: cannot resolve the host name: {e}"))?
        .next()
        .ok_or_else(|| format!("`{text}`: the host name has no address"))
}

/// Checks a `tracing` filter (`log.filter`, `RUST_LOG`) the way it will be used, and refuses
/// the forms that parse yet silence every line: a bare word that is not a level (`verbose`,
/// `inf`: a target that matches nothing) and a target with a `-` (crate targets are written
/// with `_`: `media_proxy=debug`).
pub fn log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (target, level) = match directive.rsplit_once('=') {
            Some((target, level)) => (Some(target), level),
            None => (None, directive),
        };
        let target = target.map(|t| t.split('[').next().unwrap_or(t));
        let level_ok = LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level))
            || (1..=5).any(|n| level == n.to_string());
        match target {
            None if !level_ok => {
                return Err(format!(
                    "`{directive}` is neither a level (off, error, warn, info, debug, trace) nor target=level"
                ))
            }
            Some(t) if t.contains('-') => {
                return Err(format!(
                    "`{directive}`: targets are written with `_` (e.g. {}={level})",
                    t.replace('-', "_")
                ))
            }
            Some(_) if !level_ok => {
                return Err(format!("`{directive}`: `{level}` is not a level"))
            }
            _ => {}
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map(drop)
        .map_err(|e| format!("`{filter}` is not a log filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filters_that_would_silence_the_log_are_refused() {
        for good in [
            "info",
            "warn,media_proxy=debug",
            "access=off,info",
            "DEBUG",
            "",
        ] {
            assert_eq!(log_filter(good), Ok(()), "{good}");
        }
        for (bad, needle) in [
            ("verbose", "neither a level"),
            ("media-proxy=debug", "media_proxy=debug"),
            ("media_proxy=loud", "`loud` is not a level"),
        ] {
            let e = log_filter(bad).expect_err(bad);
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn listen_takes_addresses_and_host_names() {
        assert_eq!(
            listen_address("0.0.0.0:3003"),
            Ok(SocketAddr::from(([0; 4], 3003)))
        );
        let local = listen_address("localhost:3003").expect("localhost resolves");
        assert!(local.ip().is_loopback() && local.port() == 3003, "{local}");
        for bad in ["localhost", ":3003", "localhost:http", "host:99999"] {
            assert!(listen_address(bad).is_err(), "{bad}");
        }
    }
}
