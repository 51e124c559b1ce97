//! The guarded HTTP client. Input: a URL (and optionally an absolute byte range); output: a
//! [`Fetched`] head whose [`Body`] is read chunk by chunk under the size cap and the idle and
//! total deadlines.
//!
//! Safety comes from where the checks sit:
//! - every DNS answer goes through [`GuardedResolver`], which refuses the whole name if any
//!   address it resolves to is not allowed; reqwest only ever dials addresses that resolver
//!   returned, so the check is on the address actually dialled, before a byte is sent;
//! - IP-literal hosts never reach a resolver, so each hop checks them itself (the `url`
//!   crate has already normalised spellings such as `2130706433` or `0x7f.1`);
//! - redirects are followed here, hop by hop, never inside reqwest, so each hop gets the same
//!   checks; through a forward proxy (which does its own DNS) each hop's name is resolved
//!   and checked here first.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use hickory_resolver::TokioResolver;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{self, HeaderMap};
use tokio::time::Instant;
use url::{Host, Url};

use super::guard::IpPolicy;
use super::{Body, SourceError};
use crate::config::Timeouts;

/// What the fetcher needs from the configuration.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub policy: IpPolicy,
    pub max_size: u64,
    pub user_agent: String,
    pub proxy: Option<Url>,
    pub max_redirects: u8,
    pub timeouts: Timeouts,
    /// Origin hosts allowed and denied (`remote.allow_hosts`, `remote.deny_hosts`).
    pub hosts: crate::relay::HostRules,
    /// Name servers for origin hosts (`remote.dns_servers`); empty: the system's.
    pub dns_servers: Vec<SocketAddr>,
    /// Counts every body byte received from origins (the `received_bytes` metric).
    pub received: prometheus_client::metrics::counter::Counter,
}

/// An absolute byte range `first..=last` (`last` open when `None`) to ask an origin for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginRange {
    pub first: u64,
    pub last: Option<u64>,
}

/// A parsed `Content-Range: bytes first-last/total` (total `None` for `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub first: u64,
    pub last: u64,
    pub total: Option<u64>,
}

/// A successful (200 or 206) origin response, body not yet read.
#[derive(Debug)]
pub struct Fetched {
    /// 200, or 206 when a range was asked for and granted.
    pub partial: Option<ContentRange>,
    /// Length of the body as it will be read (after decompression); `None` if unknown.
    pub content_length: Option<u64>,
    /// The origin's `Content-Disposition`, for the download name.
    pub content_disposition: Option<String>,
    /// A strong validator (ETag, else Last-Modified) usable in `If-Range`.
    pub validator: Option<String>,
    pub body: Body<SourceError>,
}

/// The `reqwest` DNS hook: async lookups through hickory, answers filtered by the policy.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    resolver: TokioResolver,
    policy: IpPolicy,
    /// The forward proxy's own host: the operator named it, so it may be private.
    exempt_host: Option<String>,
    /// The longest one lookup may take.
    lookup_timeout: Duration,
}

/// Why a lookup gave no usable address. Travels through reqwest's error chain as the source
/// of a connect error and is recovered by [`classify`].
#[derive(Debug, Clone, thiserror::Error)]
enum ResolveFailure {
    #[error("{host} resolves to {ip}, which is not allowed")]
    Blocked { host: String, ip: IpAddr },
    /// NXDOMAIN, or a name with no address records: the name does not exist (as an origin).
    #[error("{host} has no address")]
    NoAddress { host: String },
    /// SERVFAIL, REFUSED, a broken answer: the DNS is in trouble, not the name.
    #[error("lookup of {host} failed: {reason}")]
    Failed { host: String, reason: String },
    /// No name server answered in time.
    #[error("lookup of {host} timed out")]
    TimedOut { host: String },
}

impl From<ResolveFailure> for SourceError {
    fn from(f: ResolveFailure) -> Self {
        match f {
            ResolveFailure::Blocked { ip, .. } => SourceError::Blocked { ip },
            ResolveFailure::NoAddress { host } => SourceError::Unresolvable { host },
            ResolveFailure::Failed { host, reason } => SourceError::Dns { host, reason },
            ResolveFailure::TimedOut { host } => SourceError::DnsTimeout { host },
        }
    }
}

impl GuardedResolver {
    /// `servers`: the name servers to ask (empty: the system's); `lookup_timeout`: how long
    /// one lookup may take, within the connect time-out, so a silent DNS is told apart
    /// from a silent origin.
    pub fn new(
        policy: IpPolicy,
        exempt_host: Option<String>,
        servers: &[SocketAddr],
        lookup_timeout: Duration,
    ) -> Result<Self, String> {
        use hickory_resolver::config::{NameServerConfig, ResolverConfig};
        let provider = hickory_resolver::net::runtime::TokioRuntimeProvider::default();
        let mut builder = if servers.is_empty() {
            // A machine without a readable resolv.conf still resolves `localhost` and
            // literal addresses; real names then fail cleanly as unresolvable.
            TokioResolver::builder(provider.clone()).unwrap_or_else(|_| {
                TokioResolver::builder_with_config(ResolverConfig::default(), provider)
            })
        } else {
            let servers = servers
                .iter()
                .map(|addr| {
                    let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                    for connection in &mut server.connections {
                        connection.port = addr.port();
                    }
                    server
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let options = builder.options_mut();
        options.timeout = lookup_timeout;
        options.attempts = 1;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
        Ok(GuardedResolver {
            resolver,
            policy,
            exempt_host,
            lookup_timeout,
        })
    }

    /// Resolves `host` and returns its addresses only if every one of them is allowed.
    /// `dialling`: the address is about to be connected to by reqwest itself, which (with a
    /// forward proxy) only ever dials the proxy, so the proxy's own host is exempt. A
    /// *target* that merely shares the proxy's host name (`http://localhost:6379/` with
    /// `proxy = "http://localhost:3128"`) is checked like any other (`dialling` false).
    async fn lookup_checked(
        &self,
        host: &str,
        dialling: bool,
    ) -> Result<Vec<IpAddr>, ResolveFailure> {
        // Our own bound on the whole lookup: hickory's time-out is per query, and it may
        // try another transport after one.
        let lookup = tokio::time::timeout(self.lookup_timeout, self.resolver.lookup_ip(host))
            .await
            .map_err(|_| ResolveFailure::TimedOut {
                host: host.to_owned(),
            })?;
        let lookup = lookup.map_err(|e| {
            if e.is_nx_domain() || e.is_no_records_found() {
                ResolveFailure::NoAddress {
                    host: host.to_owned(),
                }
            } else if matches!(e, hickory_resolver::net::NetError::Timeout) {
                ResolveFailure::TimedOut {
                    host: host.to_owned(),
                }
            } else {
                ResolveFailure::Failed {
                    host: host.to_owned(),
                    reason: e.to_string(),
                }
            }
        })?;
        let addrs: Vec<IpAddr> = lookup.iter().collect();
        if addrs.is_empty() {
            return Err(ResolveFailure::NoAddress {
                host: host.to_owned(),
            });
        }
        if dialling && self.exempt_host.as_deref() == Some(host) {
            return Ok(addrs);
        }
        if let Some(&ip) = addrs.iter().find(|ip| !self.policy.permits(**ip)) {
            return Err(ResolveFailure::Blocked {
                host: host.to_owned(),
                ip,
            });
        }
        Ok(addrs)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let addrs = this.lookup_checked(name.as_str(), true).await?;
            let iter: Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(iter)
        })
    }
}

/// The client every remote fetch goes through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    resolver: Arc<GuardedResolver>,
    settings: Arc<FetchSettings>,
}

impl Fetcher {
    pub fn new(settings: FetchSettings) -> Result<Fetcher, String> {
        // reqwest is built without a bundled crypto provider so that one TLS backend (ring)
        // serves the whole program; an `Err` here means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exempt = settings
            .proxy
            .as_ref()
            .and_then(|p| p.host_str())
            .map(str::to_owned);
        // Half the connect time-out for the lookup: the rest is for the TCP and TLS
        // handshakes, and a DNS that does not answer is then reported as such.
        let resolver = Arc::new(GuardedResolver::new(
            settings.policy.clone(),
            exempt,
            &settings.dns_servers,
            settings.timeouts.connect / 2,
        )?);
        let mut builder = reqwest::Client::builder()
            .user_agent(settings.user_agent.clone())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.timeouts.connect)
            .dns_resolver(resolver.clone())
            .gzip(true)
            .brotli(true)
            .deflate(true)
            .zstd(true)
            .pool_idle_timeout(Duration::from_secs(60));
        builder = match &settings.proxy {
            Some(proxy) => builder
                .proxy(reqwest::Proxy::all(proxy.as_str()).map_err(|e| format!("proxy: {e}"))?),
            None => builder.no_proxy(),
        };
        Ok(Fetcher {
            client: builder
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))?,
            resolver,
            settings: Arc::new(settings),
        })
    }

    /// How long one origin exchange may take (`timeouts.total`).
    pub fn total_timeout(&self) -> Duration {
        self.settings.timeouts.total
    }

    /// GETs `url`, following redirects, and returns once the response head is in.
    /// `range` asks the origin for part of the body; `if_range` makes that conditional.
    pub async fn fetch(
        &self,
        url: &Url,
        range: Option<OriginRange>,
        if_range: Option<&str>,
    ) -> Result<Fetched, SourceError> {
        let deadline = Instant::now() + self.settings.timeouts.total;
        let mut url = url.clone();
        for _hop in 0..=self.settings.max_redirects {
            self.check_destination(&url).await?;
            let mut request = self.client.get(url.clone());
            if let Some(r) = range {
                let value = match r.last {
                    Some(last) => format!("bytes={}-{}", r.first, last),
                    None => format!("bytes={}-", r.first),
                };
                // Byte offsets must refer to the file itself, not to a compressed form of it;
                // an explicit value also stops the decompression layer adding its own.
                request = request
                    .header(header::RANGE, value)
                    .header(header::ACCEPT_ENCODING, "identity");
                if let Some(v) = if_range {
                    request = request.header(header::IF_RANGE, v);
                }
            }
            let response = self.within(deadline, request.send()).await?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| SourceError::Redirect(format!("{status} without a Location")))?;
                url = url
                    .join(location)
                    .map_err(|e| SourceError::Redirect(format!("bad Location: {e}")))?;
                continue;
            }
            if status.is_client_error() || status.is_server_error() {
                return Err(SourceError::Status(status.as_u16()));
            }
            if status != reqwest::StatusCode::OK && status != reqwest::StatusCode::PARTIAL_CONTENT {
                return Err(SourceError::Unreachable(format!(
                    "unexpected status {status}"
                )));
            }
            return self.fetched(response, deadline);
        }
        Err(SourceError::Redirect(format!(
            "more than {} redirects",
            self.settings.max_redirects
        )))
    }

    /// Scheme, host list, literal-address and (through a proxy) DNS checks for one hop.
    async fn check_destination(&self, url: &Url) -> Result<(), SourceError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SourceError::InvalidUrl(format!(
                "scheme `{}` is not http or https",
                url.scheme()
            )));
        }
        if let Some(host) = url.host_str() {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if !self.settings.hosts.permits(host) {
                return Err(SourceError::HostNotAllowed {
                    host: host.to_owned(),
                });
            }
        }
        let ip = match url.host() {
            None => return Err(SourceError::InvalidUrl("no host".into())),
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(Host::Domain(domain)) => {
                if self.settings.proxy.is_some() {
                    // The proxy resolves the name itself; check what it will find. The
                    // proxy's own host gets no exemption here: this is a target.
                    self.resolver.lookup_checked(domain, false).await?;
                }
                return Ok(());
            }
        };
        if self.settings.policy.permits(ip) {
            Ok(())
        } else {
            Err(SourceError::Blocked { ip })
        }
    }

    async fn within<F>(&self, deadline: Instant, send: F) -> Result<reqwest::Response, SourceError>
    where
        F: std::future::Future<Output = Result<reqwest::Response, reqwest::Error>>,
    {
        let idle = Instant::now() + self.settings.timeouts.idle;
        match tokio::time::timeout_at(idle.min(deadline), send).await {
            Ok(result) => result.map_err(classify),
            Err(_) if deadline <= idle => Err(SourceError::Timeout("total")),
            Err(_) => Err(SourceError::Timeout("idle")),
        }
    }

    fn fetched(
        &self,
        response: reqwest::Response,
        deadline: Instant,
    ) -> Result<Fetched, SourceError> {
        let headers = response.headers();
        let partial = if response.status() == reqwest::StatusCode::PARTIAL_CONTENT {
            Some(parse_content_range(headers).ok_or_else(|| {
                SourceError::Unreachable("206 without a valid Content-Range".into())
            })?)
        } else {
            None
        };
        let content_length = response.content_length();
        let limit = self.settings.max_size;
        let announced = partial.and_then(|p| p.total).or(content_length);
        if announced.is_some_and(|n| n > limit) {
            return Err(SourceError::TooLarge { limit });
        }
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let validator = text(header::ETAG)
            .filter(|etag| !etag.starts_with("W/"))
            .or_else(|| text(header::LAST_MODIFIED));
        Ok(Fetched {
            partial,
            content_length,
            content_disposition: text(header::CONTENT_DISPOSITION),
            validator,
            body: Body::new(
                response_chunks(response, deadline, self.settings.timeouts.idle),
                limit,
                content_length,
                self.settings.received.clone(),
            ),
        })
    }
}

fn parse_content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let range = ContentRange {
        first: first.trim().parse().ok()?,
        last: last.trim().parse().ok()?,
        total,
    };
    (range.first <= range.last && total.is_none_or(|t| range.last < t)).then_some(range)
}

/// Finds our own resolver verdict inside reqwest's error chain, else classifies by kind.
fn classify(error: reqwest::Error) -> SourceError {
    let mut source: Option<&(dyn StdError + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(failure) = e.downcast_ref::<ResolveFailure>() {
            return failure.clone().into();
        }
        source = e.source();
    }
    if error.is_timeout() {
        return SourceError::Timeout("connect");
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    if error.is_body() || error.is_decode() {
        SourceError::BodyBroken(text)
    } else if is_tls(&error) {
        SourceError::Tls(text)
    } else {
        SourceError::Unreachable(text)
    }
}

/// Whether a rustls error is in the chain (a handshake refused, a certificate not trusted).
/// hyper's connector wraps it in an `io::Error`, whose `source()` skips the wrapped error
/// itself, so each `io::Error` is opened with `get_ref`.
fn is_tls(error: &(dyn StdError + 'static)) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if is_tls(inner) {
                return true;
            }
        }
        source = e.source();
    }
    false
}

/// An origin's body as chunks under its deadlines: no silence longer than `idle`, nothing
/// after `deadline`. The stream ends after the first error.
fn response_chunks(
    response: reqwest::Response,
    deadline: Instant,
    idle: Duration,
) -> BoxStream<'static, Result<Bytes, SourceError>> {
    futures_util::stream::unfold(Some(response), move |response| async move {
        let mut response = response?;
        let quiet = Instant::now() + idle;
        let next = match tokio::time::timeout_at(quiet.min(deadline), response.chunk()).await {
            Ok(result) => result.map_err(classify),
            Err(_) if deadline <= quiet => Err(SourceError::Timeout("total")),
            Err(_) => Err(SourceError::Timeout("idle")),
        };
        match next {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn content_range_parsing() {
        let mut h = HeaderMap::new();
        let cases = [
            ("bytes 0-99/1000", Some((0, 99, Some(1000)))),
            ("bytes 5-5/*", Some((5, 5, None))),
            ("bytes 10-5/100", None),
            ("bytes 0-100/100", None),
            ("items 0-1/2", None),
            ("bytes */100", None),
        ];
        for (text, want) in cases {
            h.insert(header::CONTENT_RANGE, HeaderValue::from_static(text));
            let got = parse_content_range(&h).map(|r| (r.first, r.last, r.total));
            assert_eq!(got, want, "{text}");
        }
    }
}
