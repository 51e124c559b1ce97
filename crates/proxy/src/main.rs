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
    /// Validate a configuration and print the effective settings (TOML, secrets masked).
    ///
    /// Reads the embedded defaults, then FILE if given, then the MEDIA_PROXY__ environment
    /// variables, exactly as `serve` does. Exit code 0 when valid, 2 (with the reason)
    /// when not.
    CheckConfig {
        /// A TOML configuration file.
        file: Option<PathBuf>,
    },
    /// Run the image engine on a local file, as the server would for the same options.
    ///
    /// With a Misskey flag (--emoji, --avatar, --static, --preview, --badge) the output is
    /// that transform's (WebP; PNG for the badge). Otherwise --width/--height/--fit/
    /// --format/--quality mean the store mode's w, h, fit, format and q; without --format
    /// the output file's extension picks it (.webp .avif .jpg .png .gif; any other: the
    /// input's own family). Limits come from the settings (defaults, --config, env).
    Convert(ConvertArgs),
    /// Serve AWS Lambda invocations (function URL events, streamed responses) instead of
    /// listening on a port. The default when AWS_LAMBDA_RUNTIME_API is set.
    ///
    /// Settings as for `serve`, over Lambda's own defaults (JSON logs, the cache under /tmp,
    /// memory from AWS_LAMBDA_FUNCTION_MEMORY_SIZE). See docs/deploy-aws.md.
    Lambda {
        /// A TOML configuration file (for example one packaged beside `bootstrap`).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct ConvertArgs {
    /// The input image.
    input: PathBuf,
    /// Where to write the output.
    output: PathBuf,
    #[arg(long)]
    emoji: bool,
    #[arg(long)]
    avatar: bool,
    /// The first frame only (alone: a still WebP, as `static`).
    #[arg(long = "static")]
    still: bool,
    #[arg(long)]
    preview: bool,
    #[arg(long)]
    badge: bool,
    /// Output width (store mode `w`).
    #[arg(long)]
    width: Option<u32>,
    /// Output height (store mode `h`).
    #[arg(long)]
    height: Option<u32>,
    /// inside, cover, fill or contain.
    #[arg(long)]
    fit: Option<String>,
    /// auto, webp, avif, jpeg, png, gif or original.
    #[arg(long)]
    format: Option<String>,
    /// 1–100.
    #[arg(long)]
    quality: Option<u8>,
    /// A TOML configuration file (for the limits and default qualities).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
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
    let default = if media_proxy::lambda::Environment::detected() {
        Command::Lambda { config: None }
    } else {
        Command::Serve(ServeArgs::default())
    };
    match cli.command.unwrap_or(default) {
        Command::Serve(args) => serve(args),
        Command::Lambda { config } => lambda(config),
        Command::CheckConfig { file } => check_config(file),
        Command::Convert(args) => convert(args),
    }
}

fn check_config(file: Option<PathBuf>) -> ExitCode {
    match Settings::load(file.as_deref()).and_then(|s| {
        s.to_masked_toml()
            .map_err(|e| media_proxy::config::ConfigError::Invalid {
                key: "(all)",
                reason: e,
            })
    }) {
        Ok(text) => {
            print!("{text}");
            eprintln!("media-proxy: configuration is valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("media-proxy: configuration error: {e}");
            ExitCode::from(2)
        }
    }
}

fn convert(args: ConvertArgs) -> ExitCode {
    let settings = match Settings::load(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("media-proxy: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let flags = [
        (args.emoji, "emoji"),
        (args.avatar, "avatar"),
        (args.still, "static"),
        (args.preview, "preview"),
        (args.badge, "badge"),
    ];
    let options = media_proxy::convert::Options {
        flags: flags
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, f)| *f)
            .collect(),
        width: args.width,
        height: args.height,
        fit: args.fit,
        format: args.format,
        quality: args.quality,
    };
    let input = match std::fs::read(&args.input) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("media-proxy: cannot read {}: {e}", args.input.display());
            return ExitCode::FAILURE;
        }
    };
    let name = args.output.to_string_lossy();
    match media_proxy::convert::convert(&input, &name, &options, &settings) {
        Ok(rendered) => match std::fs::write(&args.output, &rendered.bytes) {
            Ok(()) => {
                eprintln!(
                    "media-proxy: wrote {} ({}, {} bytes)",
                    args.output.display(),
                    rendered.format.mime(),
                    rendered.bytes.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("media-proxy: cannot write {}: {e}", args.output.display());
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("media-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
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
    let runtime = match async_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
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

fn lambda(config: Option<PathBuf>) -> ExitCode {
    let environment = match media_proxy::lambda::Environment::from_env() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("media-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    let defaults = environment.runtime_defaults();
    let settings = match Settings::load_over(config.as_deref(), Some(&defaults)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("media-proxy: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log);
    let settings = environment.impose_limits(settings);
    let runtime = match async_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        tracing::info!(
            function = %environment.function_name,
            version = %environment.function_version,
            memory_mib = environment.memory_mib,
            "media-proxy serving Lambda invocations"
        );
        match media_proxy::lambda::run(&settings).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// The multi-threaded async runtime both `serve` and `lambda` run on.
fn async_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("media-proxy: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}
