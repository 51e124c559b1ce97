//! The only wiring: builds the state (fetcher, pipeline, fallback image) and the router from
//! [`Settings`], binds the listener, and runs the server until a shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use bytes::Bytes;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::pipeline::Pipeline;
use crate::response::{self, CommonHeaders};
use crate::routes;
use crate::source::guard::IpPolicy;
use crate::source::http::FetchSettings;
use crate::source::Fetcher;
use crate::workers::Workers;

/// What every request handler shares. Cheap to clone (everything inside is shared).
#[derive(Debug, Clone)]
pub struct AppState {
    pub pipeline: Pipeline,
    /// The image pool, for `/readyz`.
    pub workers: Workers,
    /// The `fallback` placeholder, drawn once at start-up.
    pub fallback_png: Bytes,
}

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

/// Builds the router for `settings`: the same one serves the standalone server and (later)
/// the Lambda runtime.
pub fn router(settings: &Settings) -> Result<Router, BuildError> {
    let fetcher = Fetcher::new(FetchSettings {
        policy: IpPolicy::new(settings.allowed_private_networks.clone()),
        max_size: settings.max_size,
        user_agent: settings.user_agent.clone(),
        proxy: settings.proxy.clone(),
        max_redirects: settings.max_redirects,
        timeouts: settings.timeouts,
    })
    .map_err(BuildError::Setup)?;
    let fallback_png = media::placeholder::png()
        .map_err(|e| BuildError::Setup(format!("cannot draw the fallback image: {e}")))?;
    let workers = Workers::new(&settings.workers);
    let state = AppState {
        pipeline: Pipeline::new(fetcher, workers.clone(), settings.limits.into()),
        workers,
        fallback_png: Bytes::from(fallback_png),
    };
    let common = Arc::new(CommonHeaders::new(&settings.headers));
    Ok(Router::new()
        .route("/healthz", axum::routing::get(routes::healthz))
        .route("/readyz", axum::routing::get(routes::readyz))
        .fallback(routes::handle)
        .with_state(state)
        .layer(axum::middleware::map_response_with_state(
            common,
            response::add_common_headers,
        )))
}

/// A bound, ready-to-run server.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    /// Binds `settings.listen` (port 0 picks a free port) and builds the router.
    pub async fn build(settings: &Settings) -> Result<Application, BuildError> {
        let router = router(settings)?;
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| BuildError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        Ok(Application { listener, router })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGINT or SIGTERM, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown_signal())
            .await
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
    tracing::info!("shutting down: finishing in-flight requests");
}
