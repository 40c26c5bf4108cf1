//! Log set-up: human-readable by default, JSON for log collectors.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One readable line per event.
    Human,
    /// One JSON object per line, with stable field names.
    Json,
}

/// Installs the global subscriber, writing to stderr. `RUST_LOG`, when set,
/// replaces the level chosen by `-v`.
pub fn init(format: Format, verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        Format::Human => builder.init(),
        Format::Json => builder.json().flatten_event(true).init(),
    }
}
