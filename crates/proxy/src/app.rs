//! The only wiring: builds the state (fetcher, pipeline, fallback image) and the router from
//! [`Settings`], binds the listener, and runs the server (`listener.rs`) until a shutdown
//! signal.
//!
//! Input: [`Settings`]; output: the router, or the running [`Application`]. Uses every room
//! (it is the wiring).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use bytes::Bytes;
use tokio::net::TcpListener;

use axum::http::HeaderName;

use crate::config::{MetricsListener, Settings};
use crate::metrics::Metrics;
use crate::pipeline::store::{OutputPolicy, StorePipeline};
use crate::pipeline::{Pipeline, RelayControls, Reuse};
use crate::relay::{FetchLimiter, HostRules};
use crate::request::resize::Rules;
use crate::response::store::SuccessCaching;
use crate::response::ErrorCaching;
use crate::response::{self, CommonHeaders};
use crate::routes;
use crate::source::guard::IpPolicy;
use crate::source::http::FetchSettings;
use crate::source::store::Store;
use crate::source::Fetcher;
use crate::workers::Workers;

pub use crate::routes::state::{AppState, Shared, StoreMode};

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

/// The main router and, when `server.metrics` names an address, that address and a router
/// with `/metrics` alone, over one state.
type MetricsRouter = Option<(SocketAddr, Router)>;

fn routers(settings: &Settings) -> Result<(Router, MetricsRouter), BuildError> {
    let metrics = Metrics::new();
    let fetcher = Fetcher::new(FetchSettings {
        policy: IpPolicy::new(settings.allowed_private_networks.clone()),
        max_size: settings.max_size,
        user_agent: settings.user_agent.clone(),
        proxy: settings.proxy.clone(),
        max_redirects: settings.max_redirects,
        timeouts: settings.timeouts,
        hosts: HostRules::new(&settings.remote.allow_hosts, &settings.remote.deny_hosts),
        dns_servers: settings.remote.dns_servers.clone(),
        received: metrics.bytes_received.clone(),
    })
    .map_err(BuildError::Setup)?;
    let fallback_png = media::placeholder::png()
        .map_err(|e| BuildError::Setup(format!("cannot draw the fallback image: {e}")))?;
    let workers = Workers::new(&settings.workers, metrics.clone());
    // The worker processes start now, not with the first request.
    if let (Some(sandbox), Ok(runtime)) = (
        workers.sandbox().cloned(),
        tokio::runtime::Handle::try_current(),
    ) {
        runtime.spawn(async move { sandbox.fill().await });
    }
    let reuse = Reuse::new(&settings.cache, metrics.clone()).map_err(BuildError::Setup)?;
    let store = Store::new(
        &settings.store,
        metrics.bytes_received.clone(),
        metrics.breaker_gauge("store"),
    )
    .map_err(BuildError::Setup)?
    .map(|store| Arc::new(store_mode(settings, store, workers.clone(), reuse.clone())));
    let cache_header = (!settings.cache.header.is_empty())
        .then(|| HeaderName::from_bytes(settings.cache.header.as_bytes()))
        .transpose()
        .map_err(|e| BuildError::Setup(format!("cache.header: {e}")))?;
    let r = &settings.remote;
    let relay = RelayControls {
        limiter: FetchLimiter::new(r.rate_limit, r.rate_burst).map(Arc::new),
        passthrough: (r.passthrough_max_concurrent > 0)
            .then(|| Arc::new(tokio::sync::Semaphore::new(r.passthrough_max_concurrent))),
        passthrough_max_size: r.passthrough_max_size,
    };
    let state = AppState::new(Shared {
        pipeline: Pipeline::new(
            fetcher,
            workers.clone(),
            settings.limits.into(),
            reuse,
            relay,
        ),
        remote_keys: r
            .signing_keys
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect(),
        client_address: r.client_address(),
        workers,
        fallback_png: Bytes::from(fallback_png),
        store,
        metrics,
        cache_header,
    });
    let common = Arc::new(CommonHeaders::new(&settings.headers));
    let metrics_at = settings
        .server
        .metrics_listener()
        .map_err(|e| BuildError::Setup(e.to_string()))?;
    let mut routes = Router::new()
        .route("/healthz", axum::routing::get(routes::healthz))
        .route("/readyz", axum::routing::get(routes::readyz));
    if metrics_at == MetricsListener::Public {
        routes = routes.route("/metrics", axum::routing::get(routes::metrics));
    }
    let main = routes
        .fallback(routes::handle)
        .with_state(state.clone())
        .layer(axum::middleware::from_fn(
            routes::deadline::enforce_deadline,
        ))
        .layer(axum::middleware::map_response_with_state(
            common,
            response::add_common_headers,
        ))
        .layer(axum::middleware::from_fn(routes::request_id::middleware));
    let metrics_only = match metrics_at {
        MetricsListener::Own(addr) => Some((
            addr,
            Router::new()
                .route("/metrics", axum::routing::get(routes::metrics))
                .with_state(state),
        )),
        MetricsListener::Public | MetricsListener::Off => None,
    };
    Ok((main, metrics_only))
}

/// Builds the router for `settings`: the same one serves the standalone server and the
/// Lambda runtime (`lambda.rs`). `/metrics` is on it when `server.metrics = "public"`.
pub fn router(settings: &Settings) -> Result<Router, BuildError> {
    routers(settings).map(|(main, _)| main)
}

fn store_mode(settings: &Settings, store: Store, workers: Workers, reuse: Reuse) -> StoreMode {
    let r = &settings.resize;
    StoreMode {
        pipeline: StorePipeline::new(
            store,
            workers,
            settings.limits.into(),
            OutputPolicy::from(r),
            reuse,
        ),
        rules: Rules {
            max_side: r.max_output_dimension,
            allowed_sizes: r.allowed_sizes.clone(),
            signing_keys: r
                .signing_keys
                .iter()
                .map(|k| k.as_bytes().to_vec())
                .collect(),
        },
        success: SuccessCaching {
            max_age: r.cache_max_age,
        },
        errors: ErrorCaching::Store {
            not_found: r.not_found_max_age,
            client_error: r.error_max_age,
        },
    }
}

/// A bound, ready-to-run server.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// `/metrics` on a listener of its own (`server.metrics` = an address).
    metrics: Option<(TcpListener, Router)>,
    shutdown_grace: std::time::Duration,
    server: crate::config::ServerSettings,
}

impl Application {
    /// Binds `settings.listen` (port 0 picks a free port) and builds the router.
    pub async fn build(settings: &Settings) -> Result<Application, BuildError> {
        let (router, metrics_router) = routers(settings)?;
        let metrics = match metrics_router {
            Some((addr, router)) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| BuildError::Bind { addr, source })?;
                Some((listener, router))
            }
            None => None,
        };
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| BuildError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        Ok(Application {
            listener,
            router,
            metrics,
            shutdown_grace: settings.shutdown_grace,
            server: settings.server.clone(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of the `/metrics` listener, when it has its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until SIGINT or SIGTERM, then stops accepting and lets in-flight requests
    /// finish for up to `shutdown_grace`.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        if let Some((listener, router)) = self.metrics {
            // Internal: no client bounds of its own beyond the defaults; ends with the process.
            let settings = self.server.clone();
            tokio::spawn(crate::listener::serve(
                listener,
                router,
                settings,
                std::future::pending(),
            ));
        }
        let (signalled, on_signal) = tokio::sync::oneshot::channel();
        let serve = crate::listener::serve(self.listener, self.router, self.server, async move {
            shutdown_signal().await;
            let _ = signalled.send(());
        });
        let grace = self.shutdown_grace;
        let deadline = async move {
            match on_signal.await {
                Ok(()) => tokio::time::sleep(grace).await,
                // The server ended on its own: nothing to wait for.
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            () = serve => Ok(()),
            () = deadline => {
                tracing::warn!(?grace, "shutdown grace period over: exiting with requests in flight");
                Ok(())
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
}
