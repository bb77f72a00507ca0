//! `storecast node`: one cluster node. It listens for the other nodes, joins them through
//! any seed that answers (and the peers of that seed), keeps a live member view with a
//! failure detector, and leaves cleanly on Ctrl-C or SIGTERM.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use ractor::Actor;

use std::sync::Arc;

use crate::actors::ingest::IngestSettings;
use crate::actors::node::{NodeServices, NodeSettings, NodeSupervisor};
use crate::actors::scheduler::SchedulerSettings;
use crate::cluster::member::{MemberInfo, Role};
use crate::cluster::tls::NodeTls;
use crate::config::{ClusterConfig, Config, Override};
use crate::schedule::WeeklySlot;
use crate::store::Database;
use crate::web::admin::admin_server;
use crate::web::connections::Limits;
use crate::web::server::http_server;
use crate::web::{GatewaySettings, random_token};

/// Cookie used on loopback when none is configured: nodes on one machine only.
const DEVELOPMENT_COOKIE: &str = "storecast-development";

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Address to listen on for other nodes, host:port [key: cluster.listen].
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Address other nodes dial to reach this one [key: cluster.advertise].
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Seed nodes, comma-separated host:port [key: cluster.seeds].
    #[arg(long, value_name = "A,B,..")]
    pub seeds: Option<String>,
    /// Roles: ingest,scheduler,models,forecast,gateway [key: cluster.roles].
    #[arg(long, value_name = "ROLE,..")]
    pub roles: Option<String>,
    /// This node's name, unique in the cluster [key: cluster.name].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

impl NodeArgs {
    pub fn config_overrides(&self) -> Vec<Override> {
        [
            ("cluster.listen", &self.listen),
            ("cluster.advertise", &self.advertise),
            ("cluster.seeds", &self.seeds),
            ("cluster.roles", &self.roles),
            ("cluster.name", &self.name),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.as_ref().map(|value| Override::new(key, value)))
        .collect()
    }
}

pub async fn run(_args: NodeArgs, config: &Config) -> anyhow::Result<()> {
    let mut settings = node_settings(config, config.train.worker_count())?;
    node_services(config, &mut settings).await?;
    let name = settings.me.name.clone();
    let (node, mut handle) = Actor::spawn(None, NodeSupervisor, settings)
        .await
        .context("cannot start the node")?;
    tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!(node = %name, "stopping: leaving the cluster");
            node.stop(Some("shutdown requested".to_string()));
            let _ = handle.await;
            tracing::info!(node = %name, "stopped");
            Ok(())
        }
        ended = &mut handle => {
            ended.context("the node stopped unexpectedly")?;
            anyhow::bail!("the node stopped: see the log above")
        }
    }
}

/// Connects the database and resolves the settings of the node's roles into `settings`; a
/// client (no roles) gets neither.
pub async fn node_services(config: &Config, settings: &mut NodeSettings) -> anyhow::Result<()> {
    // Every role works on the data; a member without roles is a client.
    if settings.me.roles.is_empty() {
        return Ok(());
    }
    let name = settings.me.name.clone();
    let database = Database::connect(&config.database).await?;
    let mut train = super::train::settings(config)?;
    train.node = name.clone();
    let scheduler = SchedulerSettings {
        node: name.clone(),
        holder: format!("{name}#{}", settings.me.incarnation),
        product: train.product.clone(),
        profile: train.profile_name.clone(),
        horizon_days: train.horizon_days,
        weekly: WeeklySlot::parse(&config.scheduler.train_all_at)
            .map_err(|error| anyhow::anyhow!("scheduler.train_all_at: {error}"))?,
        lease: Duration::from_millis(config.scheduler.lease_ms),
        in_flight_per_worker: config.scheduler.in_flight_per_worker,
        max_attempts: config.scheduler.max_attempts,
    };
    let ingest = &config.ingest;
    let ingest = IngestSettings {
        brokers: ingest.brokers.clone(),
        topic: ingest.topic.clone(),
        group: ingest.group.clone(),
        batch_rows: ingest.batch_rows as usize,
        batch_wait: Duration::from_millis(ingest.batch_ms),
        session_timeout: Duration::from_millis(ingest.session_timeout_ms),
        reject_payload_bytes: ingest.reject_payload_bytes as usize,
        retry_min: Duration::from_millis(ingest.retry_min_ms.max(1)),
        retry_max: Duration::from_millis(ingest.retry_max_ms.max(ingest.retry_min_ms.max(1))),
    };
    let gateway_listen = socket_address(&config.gateway.listen, "gateway.listen")?;
    let token_generated = config.gateway.token.trim().is_empty();
    let token = if token_generated {
        random_token().context("cannot make a gateway token (gateway.token is empty)")?
    } else {
        config.gateway.token.trim().to_string()
    };
    let gateway = GatewaySettings {
        listen: gateway_listen,
        token,
        token_generated,
        protect_reads: config.gateway.protect_reads,
        request_timeout: Duration::from_millis(config.gateway.request_timeout_ms.max(1)),
        profile: train.profile_name.clone(),
        limits: Limits {
            max_connections: config.gateway.max_connections as usize,
            header_read_timeout: Duration::from_millis(config.gateway.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(config.gateway.idle_timeout_ms),
            ..Limits::default()
        },
        max_event_streams: config.gateway.max_event_streams as usize,
        event_stream_lifetime: Duration::from_secs(config.gateway.event_stream_max_secs),
        forecast_max_days: config.gateway.forecast_max_days,
        forecast_concurrency: config.gateway.forecast_concurrency as usize,
    };
    // HTTP readers get a pool of their own: a flood of reads never starves the lease
    // renewal, the scheduler or ingest.
    let readers = database.readers(config.database.reader_connections);
    settings.services = Some(NodeServices {
        http: http_server(readers.clone(), name.clone(), gateway),
        train: Arc::new(train),
        scheduler,
        ingest,
    });
    let admin_listen = socket_address(&config.admin.listen, "admin.listen")?;
    settings.admin = Some(admin_server(admin_listen, Some(readers), name));
    settings.database = Some(database);
    Ok(())
}

/// `text` as one socket address, or an error naming `key`.
fn socket_address(text: &str, key: &str) -> anyhow::Result<SocketAddr> {
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .with_context(|| format!("{key} `{text}` is not a host:port address"))
}

/// Resolves the cluster configuration into what the node supervisor needs (roles' services
/// and database come from [`node_services`]).
pub fn node_settings(config: &Config, workers: usize) -> anyhow::Result<NodeSettings> {
    let cluster = &config.cluster;
    let listen: SocketAddr = cluster
        .listen
        .to_socket_addrs()
        .with_context(|| {
            format!(
                "cluster.listen `{}` is not a host:port address",
                cluster.listen
            )
        })?
        .next()
        .with_context(|| format!("cluster.listen `{}` resolves to no address", cluster.listen))?;
    let cookie = match (cluster.cookie.is_empty(), listen.ip().is_loopback()) {
        (false, _) => cluster.cookie.clone(),
        (true, true) => DEVELOPMENT_COOKIE.to_string(),
        (true, false) => anyhow::bail!(
            "refusing to listen on {listen} without a cluster cookie: set cluster.cookie (or STORECAST_CLUSTER_COOKIE)"
        ),
    };
    let advertise = if cluster.advertise.is_empty() {
        listen.to_string()
    } else {
        cluster.advertise.clone()
    };
    let name = member_name(cluster);
    let roles = cluster
        .roles
        .iter()
        .map(|role| Role::parse(role))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| anyhow::anyhow!("cluster.roles: {error}"))?;
    let tls = NodeTls::load(&cluster.tls_cert, &cluster.tls_key, &cluster.tls_ca)?;
    if tls.is_none() {
        if cluster.require_tls {
            anyhow::bail!(
                "cluster.require_tls is set but TLS is not configured: set cluster.tls_cert, \
                 cluster.tls_key and cluster.tls_ca"
            );
        }
        if !listen.ip().is_loopback() {
            tracing::warn!(
                %listen,
                "the cluster port listens beyond loopback without TLS: anyone on the network can read the cluster's traffic; set cluster.tls_cert, tls_key and tls_ca (and cluster.require_tls)"
            );
        }
    }
    let incarnation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    Ok(NodeSettings {
        me: MemberInfo {
            name,
            advertise,
            roles,
            incarnation,
            workers: u32::try_from(workers).unwrap_or(u32::MAX),
        },
        listen,
        cookie,
        seeds: cluster.seeds.clone(),
        heartbeat: Duration::from_millis(cluster.heartbeat_ms),
        failure_timeout: Duration::from_millis(cluster.failure_timeout_ms),
        reconnect_min: Duration::from_millis(cluster.reconnect_min_ms),
        reconnect_max: Duration::from_millis(
            cluster.reconnect_max_ms.max(cluster.reconnect_min_ms),
        ),
        handshake_timeout: Duration::from_millis(cluster.handshake_timeout_ms.max(1)),
        tls,
        training_timeout: config.train.timeout(),
        database: None,
        services: None,
        admin: None,
        stop_notice: Duration::from_millis(config.admin.stop_notice_ms),
    })
}

/// This member's name: `cluster.name`, or the host's name and the cluster port.
pub fn member_name(cluster: &ClusterConfig) -> String {
    if !cluster.name.is_empty() {
        return cluster.name.clone();
    }
    let port = cluster
        .listen
        .rsplit_once(':')
        .map_or("0", |(_, port)| port);
    format!("{}-{port}", crate::training::node_name())
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
