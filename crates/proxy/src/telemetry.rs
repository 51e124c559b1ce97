//! Logging setup: `tracing` to stderr, human-readable or JSON; colours only when stderr is
//! a terminal (a file or the journal gets plain text). Input: the log settings and
//! `RUST_LOG` (read by `config`, both checked there by `config::log_filter`), which
//! overrides the configured filter. Uses `config`.
//!
//! Output: the global subscriber.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber and a panic hook that logs through it. Calling it twice
/// is harmless (the second does nothing).
pub fn init(settings: &LogSettings, rust_log: Option<&str>) {
    // Codec panics are caught and answered 422; the default hook would still print them
    // raw to stderr, breaking one-object-per-line JSON logs. Log them as events instead.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        tracing::error!(target: "panic", location = location.as_deref(), "{message}");
    }));
    // Both were checked by `config::log_filter` before this is called; `info` only if a
    // caller skipped that.
    let filter = EnvFilter::try_new(rust_log.unwrap_or(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
