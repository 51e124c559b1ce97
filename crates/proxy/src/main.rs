//! The `media-proxy` binary: parse the command line, load the settings, run the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use media_proxy::{telemetry, Application, Settings};

/// A fast, safe media proxy for Misskey and an on-demand image resizer.
///
/// Settings come from embedded defaults, then the optional TOML file, then environment
/// variables named MEDIA_PROXY__<KEY> (nested keys joined by `__`, e.g.
/// MEDIA_PROXY__TIMEOUTS__IDLE=45s). See docs/configuration.md for every key.
#[derive(Debug, Parser)]
#[command(name = "media-proxy", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (the default when no command is given).
    ///
    /// Settings come from embedded defaults, then the optional --config TOML file, then
    /// environment variables named MEDIA_PROXY__<KEY> (nested keys joined by `__`, e.g.
    /// MEDIA_PROXY__TIMEOUTS__IDLE=45s, MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS=10.0.0.0/8).
    /// Invalid settings stop the program with exit code 2. See docs/configuration.md.
    Serve(ServeArgs),
}

#[derive(Debug, Default, clap::Args)]
struct ServeArgs {
    /// A TOML configuration file (keys as in docs/configuration.md).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, overriding the `listen` setting (e.g. 0.0.0.0:3003).
    #[arg(long, short = 'l', value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

fn main() -> ExitCode {
    media_proxy::memory::configure();
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command.unwrap_or(Command::Serve(ServeArgs::default()));
    let mut settings = match Settings::load(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("media-proxy: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    telemetry::init(&settings.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("media-proxy: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let app = match Application::build(&settings).await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        match app.local_addr() {
            Ok(addr) => tracing::info!(%addr, "media-proxy listening"),
            Err(e) => tracing::warn!("listening, address unknown: {e}"),
        }
        match app.run_until_stopped().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("server error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
