//! The `media-proxy` binary: read the environment, parse the command line, load the
//! settings, run the command; why it stopped is said once, in `main`.
//!
//! Input: the command line and the environment; output: the exit code. Uses `config`,
//! `app`, `lambda`, `memory`, `telemetry`, `convert`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use media_proxy::config::{listen_address, log_filter, ConfigError, ProcessEnv};
use media_proxy::{telemetry, Application, Settings};

/// A fast, safe media proxy for Misskey and an on-demand image resizer.
///
/// Settings come from embedded defaults, then the optional TOML file, then environment
/// variables named MEDIA_PROXY__<KEY> (nested keys joined by `__`, e.g.
/// MEDIA_PROXY__TIMEOUTS__IDLE=45s). See docs/configuration.md for every key.
#[derive(Debug, Parser)]
#[command(
    name = "media-proxy",
    version,
    about,
    long_about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `serve`'s options, accepted without the word `serve` (it is the default command).
    #[command(flatten)]
    serve: ServeArgs,
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
        /// Also fill in what `0` and empty settings resolve to on this machine (image
        /// threads, memory budget, S3 region), each explained in a comment.
        #[arg(long)]
        resolved: bool,
        /// Show the settings a Lambda function of MIB megabytes would use (Lambda's own
        /// defaults under the file and the environment, its limits imposed); implies
        /// --resolved.
        #[arg(long, value_name = "MIB")]
        lambda: Option<u64>,
    },
    /// Run the image engine on a local file, as the server would for the same options.
    ///
    /// With a Misskey flag (--emoji, --avatar, --thumbnail, --static, --preview, --badge)
    /// the output is that transform's (WebP; PNG for the badge; an output file named for
    /// another image format is refused). Otherwise --width/--height/
    /// --fit/--format/--quality/--time mean the store mode's w, h, fit, format, q and t;
    /// without --format the output file's extension picks it (.webp .avif .jpg .png .gif;
    /// any other: the input's own family). A video (MP4/MOV) gives the still of one frame:
    /// --thumbnail (5 %, as Misskey's) or a poster at --time. Limits come from the settings
    /// (defaults, --config, env).
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
    /// A sandboxed image worker, started by the server itself: reads jobs on stdin.
    #[command(hide = true)]
    Worker {
        /// Bytes it may map beyond what it maps at start.
        #[arg(long)]
        memory: u64,
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
    /// A video's frame at 5 % of its duration (an image: as --static).
    #[arg(long)]
    thumbnail: bool,
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
    /// A video's poster time: seconds (2.5) or a percentage (10%) (store mode `t`).
    #[arg(long)]
    time: Option<String>,
    /// A TOML configuration file (for the limits and default qualities).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Default, clap::Args)]
struct ServeArgs {
    /// A TOML configuration file (keys as in docs/configuration.md).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, overriding the `listen` setting (0.0.0.0:3003, [::]:3003,
    /// localhost:3003).
    #[arg(long, short = 'l', value_name = "ADDR", value_parser = listen_address)]
    listen: Option<SocketAddr>,
}

fn main() -> ExitCode {
    // The environment is read once, here, before any thread starts.
    let env = ProcessEnv::read();
    media_proxy::memory::configure(&env.allocator);
    let cli = Cli::parse();
    let default = if env.lambda.detected() {
        Command::Lambda {
            config: cli.serve.config.clone(),
        }
    } else {
        Command::Serve(cli.serve)
    };
    let outcome = match cli.command.unwrap_or(default) {
        Command::Serve(args) => serve(args, &env),
        Command::Lambda { config } => lambda(config, &env),
        Command::CheckConfig {
            file,
            resolved,
            lambda,
        } => check_config(file, resolved, lambda, &env),
        Command::Convert(args) => convert(args),
        Command::Worker { memory } => return media_proxy::sandbox::worker::main(memory),
    };
    outcome.unwrap_or_else(|stop| {
        eprintln!("media-proxy: {stop}");
        match stop {
            // Settings (or the Lambda variables) the program cannot start with: code 2.
            Stop::Config(_) | Stop::Environment(_) => ExitCode::from(2),
            Stop::Failed(_) => ExitCode::FAILURE,
        }
    })
}

/// Why a command stopped before it could do its work: said once, in `main`.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Environment(String),
    #[error("{0}")]
    Failed(String),
}

fn check_config(
    file: Option<PathBuf>,
    resolved: bool,
    lambda_mib: Option<u64>,
    env: &ProcessEnv,
) -> Result<ExitCode, Stop> {
    check_rust_log(env)?;
    let (mut settings, lambda) = match lambda_mib {
        Some(mib) => {
            let environment =
                media_proxy::lambda::Environment::of_size(mib).map_err(Stop::Environment)?;
            let settings =
                Settings::load_over(file.as_deref(), Some(&environment.runtime_defaults()))?;
            (environment.impose_limits(settings), Some(environment))
        }
        None => (Settings::load(file.as_deref())?, None),
    };
    let how = if resolved || lambda.is_some() {
        media_proxy::inspect::resolve(&mut settings, env.aws_region.as_deref(), lambda.as_ref())
    } else {
        Vec::new()
    };
    let text = settings
        .to_masked_toml()
        .map_err(|e| ConfigError::Invalid {
            key: "(all)",
            reason: e,
        })?;
    if let Some(mib) = lambda_mib {
        println!("# as a Lambda function of {mib} MB would use them");
    }
    for line in &how {
        println!("# {line}");
    }
    print!("{text}");
    eprintln!("media-proxy: configuration is valid");
    Ok(ExitCode::SUCCESS)
}

/// `RUST_LOG` replaces `log.filter`: refused by the same rules, so a typo cannot silence
/// the log.
fn check_rust_log(env: &ProcessEnv) -> Result<(), Stop> {
    match env.log_filter.as_deref().map(log_filter) {
        Some(Err(e)) => Err(Stop::Environment(format!("RUST_LOG: {e}"))),
        _ => Ok(()),
    }
}

fn convert(args: ConvertArgs) -> Result<ExitCode, Stop> {
    let settings = Settings::load(args.config.as_deref())?;
    let flags = [
        (args.emoji, "emoji"),
        (args.avatar, "avatar"),
        (args.thumbnail, "thumbnail"),
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
        time: args.time,
    };
    let input = std::fs::read(&args.input)
        .map_err(|e| Stop::Failed(format!("cannot read {}: {e}", args.input.display())))?;
    let name = args.output.to_string_lossy();
    let rendered = media_proxy::convert::convert(&input, &name, &options, &settings)
        .map_err(|e| Stop::Failed(e.to_string()))?;
    std::fs::write(&args.output, &rendered.bytes)
        .map_err(|e| Stop::Failed(format!("cannot write {}: {e}", args.output.display())))?;
    eprintln!(
        "media-proxy: wrote {} ({}, {} bytes)",
        args.output.display(),
        rendered.format.mime(),
        rendered.bytes.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn serve(args: ServeArgs, env: &ProcessEnv) -> Result<ExitCode, Stop> {
    check_rust_log(env)?;
    let mut settings = Settings::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    allocate_for(&settings, env);
    telemetry::init(&settings.log, env.log_filter.as_deref());
    let runtime = async_runtime()?;
    Ok(runtime.block_on(async move {
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
    }))
}

/// The server's allocator settings once it is known where decoding runs.
fn allocate_for(settings: &Settings, env: &ProcessEnv) {
    if settings.workers.isolation == media_proxy::config::Isolation::Process {
        media_proxy::memory::decoding_elsewhere(&env.allocator);
    }
}

fn lambda(config: Option<PathBuf>, env: &ProcessEnv) -> Result<ExitCode, Stop> {
    check_rust_log(env)?;
    let environment =
        media_proxy::lambda::Environment::from_vars(&env.lambda).map_err(Stop::Environment)?;
    let settings = Settings::load_over(config.as_deref(), Some(&environment.runtime_defaults()))?;
    telemetry::init(&settings.log, env.log_filter.as_deref());
    // After the logger: a lowered limit is logged.
    let settings = environment.impose_limits(settings);
    allocate_for(&settings, env);
    let runtime = async_runtime()?;
    Ok(runtime.block_on(async move {
        tracing::info!(
            function = %environment.function_name,
            version = %environment.function_version,
            memory_mib = environment.memory_mib,
            "media-proxy serving Lambda invocations"
        );
        match media_proxy::lambda::run(&settings, &environment).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        }
    }))
}

/// The multi-threaded async runtime both `serve` and `lambda` run on.
fn async_runtime() -> Result<tokio::runtime::Runtime, Stop> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Stop::Failed(format!("cannot start the async runtime: {e}")))
}
