//! The `storecast` command line: global flags, the subcommands, and error reporting.
//!
//! Each subcommand lives in its own file with its flags ([`clap::Args`]) and its `run`.
//! Flags that mirror a configuration key become the top layer of the configuration, so
//! `storecast config` shows their effect too. Every failure ends as one `error: ...` line on
//! stderr and exit code 1 (clap's usage errors exit with 2).

pub mod backtest;
pub mod cluster;
pub mod config;
pub mod dataset;
pub mod demo;
pub mod forecast;
pub mod load;
pub mod node;
pub mod probe;
pub mod produce;
pub mod progress;
pub mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{Config, Override, Sources};

/// Retail sales forecasting: ingest, per-store Prophet models and forecasts, one binary.
#[derive(Debug, Parser)]
#[command(name = "storecast", version, propagate_version = true)]
pub struct Cli {
    /// Config file layered over the built-in defaults (`storecast config` shows the result).
    #[arg(long, global = true, env = "STORECAST_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Database URL: `sqlite:PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB` [key: database.url].
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Log filter, e.g. `debug` or `storecast=trace` [key: log.level].
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Sets any configuration key, e.g. `--set database.max_connections=16` (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs one cluster node: joins the others through the seed list, keeps a live member
    /// view with a failure detector, and leaves cleanly on Ctrl-C or SIGTERM.
    Node(node::NodeArgs),
    /// Talks to a running cluster: member status, retrain or forecast a store on its owner.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Runs a storecast cluster on this machine on its embedded defaults: 1,115 synthetic (or
    /// given) stores in a SQLite file, an embedded broker, --nodes nodes (3) training every
    /// store, then the web page until Ctrl-C.
    Demo(demo::DemoArgs),
    /// Loads a Rossmann sales file into the `sales` table as the reference loader does: the
    /// last months, one product, replacing that product's rows; dates move by whole weeks to
    /// end within the last 7 days (the reference moves them by days to end yesterday).
    Load(load::LoadArgs),
    /// Publishes sales to Kafka as the reference producer does: seeds the database with the
    /// data's history, then "today" rows for every store every --interval seconds (or --once,
    /// or --count rows with distinct keys at --rate rows/s, for load tests).
    Produce(produce::ProduceArgs),
    /// Trains series from the database (5-split walk-forward CV, then a final fit), registers
    /// each as a new model version and writes its forecast for the days after the data.
    Train(train::TrainArgs),
    /// Forecasts the next days of one store from its latest model version, without retraining.
    Forecast(forecast::ForecastArgs),
    /// Trains on a data file up to each origin, forecasts the open days after it, writes the
    /// forecasts to a CSV file and prints RMSPE (Kaggle's metric) and the interval's
    /// coverage where actuals exist.
    Backtest(backtest::BacktestArgs),
    /// Makes or checks data files in Kaggle's Rossmann format.
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// Prints the effective configuration (defaults < --config file < STORECAST_* < flags).
    Config,
    /// Asks a node's admin listener for /health/livez (or readyz); exit 1 unless it answers
    /// 200. For container health checks.
    Probe(probe::ProbeArgs),
}

impl Command {
    /// Configuration keys set by this subcommand's own flags.
    fn config_overrides(&self) -> Vec<Override> {
        match self {
            Command::Load(args) => args.config_overrides(),
            Command::Produce(args) => args.config_overrides(),
            Command::Train(args) => args.config_overrides(),
            Command::Node(args) => args.config_overrides(),
            Command::Cluster(command) => command.config_overrides(),
            Command::Forecast(args) => args.config_overrides(),
            Command::Backtest(args) => args.config_overrides(),
            Command::Demo(_) | Command::Dataset(_) | Command::Config | Command::Probe(_) => {
                Vec::new()
            }
        }
    }
}

/// Parses the process arguments, runs the command and turns any error into one line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the configuration and runs the command on a Tokio runtime.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let mut flags = cli
        .set
        .iter()
        .map(|text| Override::parse(text))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(url) = &cli.database_url {
        flags.push(Override::new("database.url", url));
    }
    if let Some(level) = &cli.log_level {
        flags.push(Override::new("log.level", level));
    }
    flags.extend(cli.command.config_overrides());
    let config = Config::load(&Sources::from_process_env(cli.config.clone(), flags))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The trace exporter sends on this runtime.
    let telemetry = {
        let _entered = runtime.enter();
        crate::telemetry::init(
            &config.log,
            &config.telemetry,
            &node::member_name(&config.cluster),
        )?
    };
    if !config.ignored_env.is_empty() {
        tracing::warn!(
            variables = %config.ignored_env.join(", "),
            "ignoring STORECAST_* variables that are Kubernetes service links, not configuration keys"
        );
    }
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => demo::run(args, &config).await,
            Command::Load(args) => load::run(args, &config).await,
            Command::Produce(args) => produce::run(args, &config).await,
            Command::Train(args) => train::run(args, &config).await,
            Command::Node(args) => node::run(args, &config).await,
            Command::Cluster(command) => cluster::run(command, &config).await,
            Command::Forecast(args) => forecast::run(args, &config).await,
            Command::Backtest(args) => backtest::run(args, &config).await,
            Command::Dataset(command) => dataset::run(command).await,
            Command::Config => config::run(&config),
            Command::Probe(args) => probe::run(args, &config).await,
        }
    });
    // Before the runtime goes: the spans still queued leave on it.
    telemetry.shutdown();
    outcome
}

/// `1234567` as `1,234,567`, for counts people read.
pub fn thousands(value: impl Into<u64>) -> String {
    let digits = value.into().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0u32), "0");
        assert_eq!(thousands(999u32), "999");
        assert_eq!(thousands(1000u32), "1,000");
        assert_eq!(thousands(970_379u32), "970,379");
        assert_eq!(thousands(1_017_209u32), "1,017,209");
    }
}
