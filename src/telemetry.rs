//! Logging: human-readable lines on stderr, filtered by `log.level`.
//!
//! Command output meant for the user (summaries, tables) goes to stdout; logs and progress go
//! to stderr, so piping a command's output stays clean.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log.level `{level}`: {reason}")]
    BadLevel { level: String, reason: String },
}

/// Installs the global logger. Calling it again (as tests may) keeps the first one.
pub fn init_logging(level: &str) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(level).map_err(|error| TelemetryError::BadLevel {
        level: level.to_string(),
        reason: error.to_string(),
    })?;
    // Fails only when a logger is already installed, which is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .compact()
        .try_init();
    Ok(())
}
