//! Configuration: built-in defaults < config file < `STORECAST_*` environment < flags.
//!
//! `config/default.toml` is compiled in and lists every key storecast understands, with its
//! documentation. Each later layer may only set keys that exist there, with a value of the
//! same type; anything else is an error naming the key and where it came from. The merged
//! table is then deserialised into [`Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::forecast::profile::Profile;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// The compiled-in defaults; the single place where keys are declared and documented.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Prefix of the environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "STORECAST_";

/// `STORECAST_*` variables that are not configuration keys (test and tool switches).
const ENV_NOT_KEYS: &[&str] = &[
    "STORECAST_CONFIG",
    "STORECAST_REQUIRE_SERVICES",
    "STORECAST_ROSSMANN_DIR",
    "STORECAST_PG_BIN",
    "STORECAST_KAFKA_DEBUG",
    "STORECAST_SKIP_LOG",
];

/// The effective configuration of one storecast process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub load: LoadConfig,
    pub log: LogConfig,
    pub train: TrainConfig,
    pub cluster: ClusterConfig,
    pub scheduler: SchedulerConfig,
    pub ingest: IngestConfig,
    pub gateway: GatewayConfig,
    pub admin: AdminConfig,
    pub telemetry: TelemetryConfig,
    /// Model profiles by name.
    pub profiles: BTreeMap<String, Profile>,
    /// `STORECAST_*` variables ignored because they look like Kubernetes service links, not
    /// keys; the process warns about them once logging is up.
    #[serde(skip)]
    pub ignored_env: Vec<String>,
}

/// `[database]`: which database and how to connect to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    pub reader_connections: u32,
    pub connect_timeout_secs: u64,
}

/// `[load]`: how `storecast load` turns a data file into rows of `sales`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    pub product: String,
    pub months: u32,
}

/// `[log]`: what the process logs to stderr.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    /// `text` (human-readable lines) or `json` (one object per line, with trace ids).
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[train]`: how series are trained and their batch forecasts written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub profile: String,
    pub horizon_days: u32,
    pub workers: u32,
    pub seed: u64,
    pub timeout_secs: u64,
}

impl TrainConfig {
    /// Longest one training may take, wherever it is asked for.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs.max(1))
    }

    /// Threads to fit with: the configured number, or one per core.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |cores| cores.get()),
            workers => workers as usize,
        }
    }
}

/// `[cluster]`: how this node joins the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub name: String,
    pub listen: String,
    pub advertise: String,
    pub seeds: Vec<String>,
    pub cookie: String,
    pub tls_cert: String,
    pub tls_key: String,
    pub tls_ca: String,
    pub require_tls: bool,
    pub roles: Vec<String>,
    pub heartbeat_ms: u64,
    pub failure_timeout_ms: u64,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    pub handshake_timeout_ms: u64,
}

/// `[scheduler]`: the weekly train-all job and how the cluster runs jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    pub train_all_at: String,
    pub lease_ms: u64,
    pub in_flight_per_worker: u32,
    pub max_attempts: u32,
}

/// `[ingest]`: the Kafka topic of sales and how ingest nodes consume it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    pub partitions: u32,
    pub batch_rows: u32,
    pub batch_ms: u64,
    pub session_timeout_ms: u64,
    pub reject_payload_bytes: u32,
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    pub retrain_on_new_data: bool,
}

/// `[gateway]`: the HTTP gateway of nodes with the `gateway` role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub listen: String,
    pub token: String,
    pub protect_reads: bool,
    pub request_timeout_ms: u64,
    pub max_connections: u32,
    pub header_read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_event_streams: u32,
    pub event_stream_max_secs: u64,
    pub forecast_max_days: u32,
    pub forecast_concurrency: u32,
}

/// `[admin]`: the admin listener every node runs: metrics and health, whatever its roles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: String,
    pub stop_notice_ms: u64,
}

/// `[telemetry]`: traces exported over OTLP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub otlp_endpoint: String,
    pub sample_ratio: f64,
}

/// Why a configuration could not be built. Every variant names the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    ReadFile {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("unknown configuration key `{key}` in {origin} (see config/default.toml for the keys)")]
    UnknownKey { key: String, origin: String },
    #[error("configuration key `{key}` in {origin} must be {expected}, found {found}")]
    WrongType {
        key: String,
        origin: String,
        expected: &'static str,
        found: String,
    },
    #[error("override `{0}` must look like KEY=VALUE, e.g. database.max_connections=16")]
    BadOverride(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A value set for one key by a layer above the config file (environment or flag).
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Dotted key, e.g. `database.url`.
    pub key: String,
    /// The value as text; it is parsed according to the key's type in the defaults.
    pub value: String,
}

impl Override {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }

    /// Parses `KEY=VALUE` as written after `--set`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        match text.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(Self::new(key.trim(), value.trim())),
            _ => Err(ConfigError::BadOverride(text.to_string())),
        }
    }
}

/// Everything a configuration is built from, in increasing priority.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `--config FILE`, if given.
    pub file: Option<PathBuf>,
    /// The process environment (only `STORECAST_*` variables are looked at).
    pub env: Vec<(String, String)>,
    /// Command-line flags, in the order given; later ones win.
    pub flags: Vec<Override>,
}

impl Sources {
    /// Sources with the real process environment.
    pub fn from_process_env(file: Option<PathBuf>, flags: Vec<Override>) -> Self {
        Self {
            file,
            env: std::env::vars().collect(),
            flags,
        }
    }
}

impl Config {
    /// The compiled-in defaults alone.
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::load(&Sources::default())
    }

    /// Builds the effective configuration from its layers.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let mut merged = default_table()?;
        let known_keys = flatten(&merged);

        if let Some(path) = &sources.file {
            let text = std::fs::read_to_string(path).map_err(|error| ConfigError::ReadFile {
                path: path.clone(),
                error,
            })?;
            let table: Table =
                text.parse()
                    .map_err(|error: toml::de::Error| ConfigError::ParseFile {
                        path: path.clone(),
                        message: error.to_string().trim().replace('\n', " "),
                    })?;
            let origin = format!("config file {}", path.display());
            for (key, value) in flatten(&table) {
                let default = known_keys
                    .get(&key)
                    .ok_or_else(|| ConfigError::UnknownKey {
                        key: key.clone(),
                        origin: origin.clone(),
                    })?;
                let value = coerce_toml(&key, &origin, default, value)?;
                set_dotted(&mut merged, &key, value);
            }
        }

        let env_keys: BTreeMap<String, &String> =
            known_keys.keys().map(|key| (env_name(key), key)).collect();
        let mut env: Vec<&(String, String)> = sources
            .env
            .iter()
            .filter(|(name, _)| {
                name.starts_with(ENV_PREFIX) && !ENV_NOT_KEYS.contains(&name.as_str())
            })
            .collect();
        env.sort();
        let mut ignored_env = Vec::new();
        for (name, text) in env {
            let origin = format!("environment variable {name}");
            let Some(key) = env_keys.get(name) else {
                if is_service_link(name) {
                    ignored_env.push(name.clone());
                    continue;
                }
                return Err(ConfigError::UnknownKey {
                    key: name.clone(),
                    origin,
                });
            };
            let value = parse_text(key, &origin, &known_keys[*key], text)?;
            set_dotted(&mut merged, key, value);
        }

        for flag in &sources.flags {
            let origin = format!("flag setting {}", flag.key);
            let default = known_keys
                .get(&flag.key)
                .ok_or_else(|| ConfigError::UnknownKey {
                    key: flag.key.clone(),
                    origin: "command-line flags".to_string(),
                })?;
            let value = parse_text(&flag.key, &origin, default, &flag.value)?;
            set_dotted(&mut merged, &flag.key, value);
        }

        let mut config: Config = merged
            .try_into()
            .map_err(|error: toml::de::Error| ConfigError::Invalid(error.message().to_string()))?;
        config.ignored_env = ignored_env;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.database.max_connections == 0 || self.database.reader_connections == 0 {
            return Err(ConfigError::Invalid(
                "database.max_connections and database.reader_connections must be at least 1"
                    .to_string(),
            ));
        }
        let gateway = &self.gateway;
        if gateway.max_connections == 0
            || gateway.header_read_timeout_ms == 0
            || gateway.idle_timeout_ms == 0
            || gateway.max_event_streams == 0
            || gateway.event_stream_max_secs == 0
            || gateway.forecast_max_days == 0
            || gateway.forecast_concurrency == 0
        {
            return Err(ConfigError::Invalid(
                "gateway.max_connections, header_read_timeout_ms, idle_timeout_ms, \
                 max_event_streams, event_stream_max_secs, forecast_max_days and \
                 forecast_concurrency must be at least 1"
                    .to_string(),
            ));
        }
        if self.load.product.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "load.product must not be empty".to_string(),
            ));
        }
        self.profile(&self.train.profile)?;
        if self.cluster.heartbeat_ms == 0
            || self.cluster.failure_timeout_ms <= self.cluster.heartbeat_ms
        {
            return Err(ConfigError::Invalid(
                "cluster.failure_timeout_ms must be larger than cluster.heartbeat_ms (> 0)"
                    .to_string(),
            ));
        }
        crate::schedule::WeeklySlot::parse(&self.scheduler.train_all_at)
            .map_err(|error| ConfigError::Invalid(format!("scheduler.train_all_at: {error}")))?;
        if self.scheduler.lease_ms < 1_000 {
            return Err(ConfigError::Invalid(
                "scheduler.lease_ms must be at least 1000".to_string(),
            ));
        }
        if self.scheduler.in_flight_per_worker == 0 || self.scheduler.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "scheduler.in_flight_per_worker and scheduler.max_attempts must be at least 1"
                    .to_string(),
            ));
        }
        if self.ingest.topic.trim().is_empty() || self.ingest.group.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "ingest.topic and ingest.group must not be empty".to_string(),
            ));
        }
        if self.ingest.partitions == 0 || self.ingest.batch_rows == 0 || self.ingest.batch_ms == 0 {
            return Err(ConfigError::Invalid(
                "ingest.partitions, ingest.batch_rows and ingest.batch_ms must be at least 1"
                    .to_string(),
            ));
        }
        for (name, profile) in &self.profiles {
            profile
                .validate()
                .map_err(|error| ConfigError::Invalid(format!("profiles.{name}: {error}")))?;
        }
        Ok(())
    }

    /// The profile called `name`.
    pub fn profile(&self, name: &str) -> Result<&Profile, ConfigError> {
        self.profiles.get(name).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "unknown profile `{name}` (known: {})",
                self.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The configuration as TOML, with secrets (database password, cookie, API token)
    /// masked.
    pub fn to_display_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database.url = redact_url(&self.database.url);
        for secret in [&mut shown.cluster.cookie, &mut shown.gateway.token] {
            if !secret.is_empty() {
                *secret = "***".to_string();
            }
        }
        // Serialising plain structs of strings and numbers cannot fail.
        toml::to_string_pretty(&shown).unwrap_or_else(|error| format!("# cannot print: {error}"))
    }
}

/// Whether `name` has the shape of a variable Kubernetes injects for a Service whose name
/// starts with `storecast` (service links: `STORECAST_PORT=tcp://10.0.0.1:8080`,
/// `STORECAST_NODES_SERVICE_HOST`, `STORECAST_PORT_8080_TCP_ADDR`, ...). Such names are not
/// keys and a pod cannot avoid them unless `enableServiceLinks` is off, so they are ignored
/// with a warning rather than fatal; any other unknown `STORECAST_*` name stays an error.
fn is_service_link(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
        return false;
    };
    // `rest` is `<SERVICE>_SERVICE_HOST`, `<SERVICE>_SERVICE_PORT[_<PORT NAME>]`,
    // `<SERVICE>_PORT` or `<SERVICE>_PORT_<N>_<PROTO>[_PROTO|_PORT|_ADDR]`, where `<SERVICE>`
    // is what follows `storecast` in the service name: empty or `_NODES`, `_GATEWAY`...
    let words: Vec<&str> = std::iter::once("").chain(rest.split('_')).collect();
    (0..words.len()).any(|start| {
        let tail = &words[start + 1..];
        match tail {
            ["SERVICE", "HOST"] | ["SERVICE", "PORT", ..] | ["PORT"] => true,
            ["PORT", number, protocol, suffix @ ..] => {
                !number.is_empty()
                    && number.bytes().all(|byte| byte.is_ascii_digit())
                    && matches!(*protocol, "TCP" | "UDP" | "SCTP")
                    && matches!(suffix, [] | ["PROTO"] | ["PORT"] | ["ADDR"])
            }
            _ => false,
        }
    })
}

/// The environment variable that sets `key`: `database.url` -> `STORECAST_DATABASE_URL`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_uppercase())
}

/// Masks the password of a URL such as `postgres://user:secret@host/db`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

fn default_table() -> Result<Table, ConfigError> {
    DEFAULT_TOML
        .parse()
        .map_err(|error: toml::de::Error| ConfigError::ParseFile {
            path: PathBuf::from("config/default.toml (built in)"),
            message: error.to_string(),
        })
}

/// Leaf values of a table by dotted key.
fn flatten(table: &Table) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, table: &Table, out: &mut BTreeMap<String, Value>) {
        for (name, value) in table {
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match value {
                Value::Table(inner) => walk(&key, inner, out),
                leaf => {
                    out.insert(key, leaf.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", table, &mut out);
    out
}

fn set_dotted(table: &mut Table, key: &str, value: Value) {
    let mut parts = key.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            current.insert(part.to_string(), value);
            return;
        }
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        match entry {
            Value::Table(inner) => current = inner,
            // Keys come from the defaults, whose inner nodes are tables.
            other => {
                *other = Value::Table(Table::new());
                let Value::Table(inner) = other else { return };
                current = inner;
            }
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "a non-negative integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
    }
}

/// Checks a TOML value from a config file against the default's type.
fn coerce_toml(
    key: &str,
    origin: &str,
    default: &Value,
    value: Value,
) -> Result<Value, ConfigError> {
    let matches = match (default, &value) {
        (Value::Float(_), Value::Integer(number)) => return Ok(Value::Float(*number as f64)),
        // Every integer key is a count, a size or a duration.
        (Value::Integer(_), Value::Integer(number)) => *number >= 0,
        // Helm reads every number of its values as a float and its `toToml` writes `4.0`.
        (Value::Integer(_), Value::Float(number))
            if number.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(number) =>
        {
            return Ok(Value::Integer(*number as i64));
        }
        (Value::Array(_), Value::Array(items)) => items.iter().all(Value::is_str),
        (default, value) => std::mem::discriminant(default) == std::mem::discriminant(value),
    };
    if matches {
        Ok(value)
    } else {
        Err(ConfigError::WrongType {
            key: key.to_string(),
            origin: origin.to_string(),
            expected: type_name(default),
            found: value.to_string(),
        })
    }
}

/// Parses text from the environment or a flag according to the default's type.
fn parse_text(key: &str, origin: &str, default: &Value, text: &str) -> Result<Value, ConfigError> {
    let wrong = || ConfigError::WrongType {
        key: key.to_string(),
        origin: origin.to_string(),
        expected: type_name(default),
        found: format!("{text:?}"),
    };
    Ok(match default {
        Value::String(_) => Value::String(text.to_string()),
        Value::Integer(_) => {
            let number: u32 = text.trim().parse().map_err(|_| wrong())?;
            Value::Integer(i64::from(number))
        }
        Value::Float(_) => Value::Float(text.trim().parse().map_err(|_| wrong())?),
        Value::Boolean(_) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Value::Boolean(true),
            "false" | "0" | "no" | "off" => Value::Boolean(false),
            _ => return Err(wrong()),
        },
        Value::Array(_) => Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_string()))
                .collect(),
        ),
        Value::Datetime(_) | Value::Table(_) => return Err(wrong()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn defaults_parse_into_config() {
        let config = Config::defaults().expect("built-in defaults are valid");
        assert_eq!(config.load.product, "product_A");
        assert_eq!(config.load.months, 5);
        assert!(config.database.url.starts_with("sqlite:"));
        assert_eq!(config.profile("reference").unwrap(), &Profile::reference());
        assert!(config.profile("default").is_ok());
        assert!(
            config
                .profile("fancy")
                .unwrap_err()
                .to_string()
                .contains("unknown profile `fancy`")
        );
    }

    #[test]
    fn profiles_are_configurable_and_checked() {
        let config = Config::load(&Sources {
            env: env(&[(
                "STORECAST_PROFILES_DEFAULT_FEATURES",
                "promo,school_holiday",
            )]),
            flags: vec![Override::new("profiles.reference.history_open_days", "90")],
            ..Sources::default()
        })
        .unwrap();
        assert_eq!(config.profiles["reference"].history_open_days, 90);
        assert_eq!(config.profiles["default"].features.len(), 2);

        let error = Config::load(&Sources {
            flags: vec![Override::new("profiles.default.features", "promo,weather")],
            ..Sources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("weather"), "{error}");

        let error = Config::load(&Sources {
            flags: vec![Override::new("profiles.default.interval_width", "1.5")],
            ..Sources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("profiles.default") && error.contains("interval_width"),
            "{error}"
        );
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("storecast.toml");
        std::fs::write(
            &file,
            "[database]\nurl = \"postgres://file/db\"\nmax_connections = 3\n[load]\nmonths = 2\n",
        )
        .unwrap();
        let sources = Sources {
            file: Some(file),
            env: env(&[
                ("STORECAST_DATABASE_MAX_CONNECTIONS", "4"),
                ("STORECAST_LOAD_MONTHS", "7"),
                ("PATH", "/bin"),
            ]),
            flags: vec![Override::new("load.months", "9")],
        };
        let config = Config::load(&sources).unwrap();
        assert_eq!(
            config.database.url, "postgres://file/db",
            "file beats default"
        );
        assert_eq!(config.database.max_connections, 4, "env beats file");
        assert_eq!(config.load.months, 9, "flag beats env");
        assert_eq!(
            config.log.level,
            "info,ractor=warn,ractor_cluster=warn,ractor_cluster::node::node_session=error",
            "untouched keys keep defaults"
        );
    }

    #[test]
    fn whole_floats_in_a_file_set_integer_keys() {
        // What Helm's `toToml` writes for `workers: 4` in a values file.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("helm.toml");
        std::fs::write(&file, "[train]\nworkers = 4.0\n").unwrap();
        let config = Config::load(&Sources {
            file: Some(file.clone()),
            ..Sources::default()
        })
        .unwrap();
        assert_eq!(config.train.workers, 4);
        for bad in ["4.5", "-1.0"] {
            std::fs::write(&file, format!("[train]\nworkers = {bad}\n")).unwrap();
            let error = Config::load(&Sources {
                file: Some(file.clone()),
                ..Sources::default()
            })
            .unwrap_err()
            .to_string();
            assert!(error.contains("train.workers"), "{error}");
        }
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[database]\nurll = \"x\"\n").unwrap();
        let error = Config::load(&Sources {
            file: Some(file),
            ..Sources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("`database.urll`"), "{error}");
        assert!(error.contains("bad.toml"), "{error}");
    }

    #[test]
    fn unknown_env_and_flag_keys_are_named() {
        let error = Config::load(&Sources {
            env: env(&[("STORECAST_DATABASE_URLL", "x")]),
            ..Sources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("STORECAST_DATABASE_URLL"), "{error}");

        let error = Config::load(&Sources {
            flags: vec![Override::new("nope.key", "1")],
            ..Sources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("`nope.key`"), "{error}");
    }

    #[test]
    fn kubernetes_service_links_are_ignored_not_fatal() {
        // What a pod gets for Services named `storecast` and `storecast-nodes`.
        let links = [
            ("STORECAST_PORT", "tcp://10.96.0.12:8080"),
            ("STORECAST_SERVICE_HOST", "10.96.0.12"),
            ("STORECAST_SERVICE_PORT", "8080"),
            ("STORECAST_SERVICE_PORT_HTTP", "8080"),
            ("STORECAST_PORT_8080_TCP", "tcp://10.96.0.12:8080"),
            ("STORECAST_PORT_8080_TCP_PROTO", "tcp"),
            ("STORECAST_PORT_8080_TCP_PORT", "8080"),
            ("STORECAST_PORT_8080_TCP_ADDR", "10.96.0.12"),
            ("STORECAST_NODES_SERVICE_HOST", "10.96.0.13"),
            ("STORECAST_NODES_PORT_4697_UDP_ADDR", "10.96.0.13"),
        ];
        let config = Config::load(&Sources {
            env: env(&links),
            ..Sources::default()
        })
        .unwrap();
        let mut expected: Vec<String> = links.iter().map(|(name, _)| name.to_string()).collect();
        expected.sort();
        assert_eq!(config.ignored_env, expected);
        assert_eq!(
            Config {
                ignored_env: Vec::new(),
                ..config
            },
            Config::defaults().unwrap()
        );
    }

    #[test]
    fn names_near_service_links_stay_fatal() {
        for name in [
            "STORECAST_PORTS",
            "STORECAST_PORT_HTTP",
            "STORECAST_PORT_80_HTTP",
            "STORECAST_PORT_80_TCP_HOST",
            "STORECAST_SERVICE",
            "STORECAST_SERVICE_HOSTS",
            "STORECAST_GATEWAY_LISTENN",
        ] {
            let error = Config::load(&Sources {
                env: env(&[(name, "x")]),
                ..Sources::default()
            })
            .unwrap_err()
            .to_string();
            assert!(error.contains(name), "{name}: {error}");
        }
    }

    #[test]
    fn non_key_switches_are_not_keys() {
        let config = Config::load(&Sources {
            env: env(&[("STORECAST_REQUIRE_SERVICES", "1")]),
            ..Sources::default()
        });
        assert!(config.is_ok());
    }

    #[test]
    fn wrong_types_are_errors() {
        let error = Config::load(&Sources {
            env: env(&[("STORECAST_DATABASE_MAX_CONNECTIONS", "many")]),
            ..Sources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("database.max_connections"), "{error}");
        assert!(error.contains("integer"), "{error}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("typed.toml");
        std::fs::write(&file, "[load]\nmonths = \"five\"\n").unwrap();
        let error = Config::load(&Sources {
            file: Some(file),
            ..Sources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("load.months"), "{error}");
    }

    #[test]
    fn negative_numbers_for_unsigned_keys_are_rejected() {
        let error = Config::load(&Sources {
            flags: vec![Override::new("load.months", "-1")],
            ..Sources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("months"), "{error}");
    }

    #[test]
    fn invalid_toml_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broken.toml");
        std::fs::write(&file, "[database\n").unwrap();
        let error = Config::load(&Sources {
            file: Some(file),
            ..Sources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("broken.toml"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
    }

    #[test]
    fn overrides_parse_key_value() {
        assert_eq!(
            Override::parse("load.months = 3").unwrap(),
            Override::new("load.months", "3")
        );
        assert!(Override::parse("load.months").is_err());
        assert!(Override::parse("=3").is_err());
    }

    #[test]
    fn display_masks_passwords() {
        assert_eq!(
            redact_url("postgres://app:secret@db:5432/sales"),
            "postgres://app:***@db:5432/sales"
        );
        assert_eq!(redact_url("sqlite:x.db"), "sqlite:x.db");
        let mut config = Config::defaults().unwrap();
        config.database.url = "postgres://app:secret@db/sales".to_string();
        let shown = config.to_display_toml();
        assert!(!shown.contains("secret"));
        assert!(shown.contains("[database]"));
    }

    #[test]
    fn env_names_follow_keys() {
        assert_eq!(env_name("database.url"), "STORECAST_DATABASE_URL");
        assert_eq!(
            env_name("database.connect_timeout_secs"),
            "STORECAST_DATABASE_CONNECT_TIMEOUT_SECS"
        );
    }
}
