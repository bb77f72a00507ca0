//! `storecast config`: prints the effective configuration.

use crate::config::Config;

/// Prints `config` as TOML, secrets masked.
pub fn run(config: &Config) -> anyhow::Result<()> {
    print!("{}", config.to_display_toml());
    Ok(())
}
