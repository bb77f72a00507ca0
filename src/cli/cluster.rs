//! `storecast cluster status|retrain|forecast`: talk to a running cluster from the command
//! line. The command joins the cluster through the seeds as a client (a member with no
//! roles), routes the request to the model host of the series' owner, prints the answer and
//! leaves.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use ractor::{Actor, ActorRef};

use super::node::node_settings;
use crate::actors::model_host::{ModelHostMessage, SeriesRequest, owner_host, placement};
use crate::actors::node::{NodeMessage, NodeSupervisor};
use crate::actors::scheduler;
use crate::cluster::member::{MemberView, Role};
use crate::cluster::placement::SeriesKey;
use crate::config::{Config, Override};
use crate::store::{Database, Job};

use super::progress::ProgressLine;

/// How long the client waits for a cluster with a model host to show up.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest a retrain may take before the client gives up waiting.
const TRAIN_TIMEOUT_MS: u64 = 600_000;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Lists the live members and how many series each model host runs.
    Status(ClientArgs),
    /// Retrains one store on the node that owns it.
    Retrain(SeriesArgs),
    /// Forecasts one store on the node that owns it, from its latest model version.
    Forecast(SeriesArgs),
    /// Starts a train-all job on the cluster's scheduler and follows it to the end.
    TrainAll(TrainAllArgs),
}

#[derive(Debug, Args)]
pub struct TrainAllArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print the job id and return at once instead of following the job.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Nodes to join through, comma-separated host:port [key: cluster.seeds].
    #[arg(long, value_name = "A,B,..")]
    pub seeds: Option<String>,
}

#[derive(Debug, Args)]
pub struct SeriesArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The store.
    #[arg(long, value_name = "N")]
    pub store: u32,
    /// Days to forecast.
    #[arg(long, default_value_t = 7, value_name = "D")]
    pub days: u32,
}

impl ClusterCommand {
    pub fn config_overrides(&self) -> Vec<Override> {
        let client = match self {
            ClusterCommand::Status(client) => client,
            ClusterCommand::Retrain(series) | ClusterCommand::Forecast(series) => &series.client,
            ClusterCommand::TrainAll(train_all) => &train_all.client,
        };
        let mut overrides = vec![
            Override::new("cluster.roles", ""),
            Override::new("cluster.listen", "127.0.0.1:0"),
            Override::new("cluster.name", format!("client-{}", std::process::id())),
            // The client's own membership chatter is not what its user asked for.
            Override::new("log.level", "warn"),
        ];
        if let Some(seeds) = &client.seeds {
            overrides.push(Override::new("cluster.seeds", seeds));
        }
        overrides
    }
}

pub async fn run(command: ClusterCommand, config: &Config) -> anyhow::Result<()> {
    if config.cluster.seeds.is_empty() {
        anyhow::bail!("no seeds to join through: pass --seeds HOST:PORT (or set cluster.seeds)");
    }
    let settings = node_settings(&config.cluster, 0)?;
    let (node, handle) = Actor::spawn(None, NodeSupervisor, settings)
        .await
        .context("cannot start the cluster client")?;
    let outcome = async {
        let view = wait_for_model_hosts(&node).await?;
        match command {
            ClusterCommand::Status(_) => status(&view).await,
            ClusterCommand::Retrain(series) => retrain(config, &view, &series).await,
            ClusterCommand::Forecast(series) => forecast(config, &view, &series).await,
            ClusterCommand::TrainAll(args) => train_all(config, &args).await,
        }
    }
    .await;
    node.stop(Some("client done".to_string()));
    let _ = handle.await;
    outcome
}

/// Waits until the view holds a model host and has not changed for a moment.
async fn wait_for_model_hosts(node: &ActorRef<NodeMessage>) -> anyhow::Result<MemberView> {
    let started = Instant::now();
    let mut last: Option<(MemberView, Instant)> = None;
    loop {
        let view = ractor::call_t!(node, NodeMessage::View, 2_000)
            .context("the client node does not answer")?;
        let has_hosts = !view.with_role(Role::Models).is_empty();
        match &last {
            Some((previous, since))
                if *previous == view
                    && has_hosts
                    && since.elapsed() >= Duration::from_millis(600) =>
            {
                return Ok(view);
            }
            Some((previous, _)) if *previous == view => {}
            _ => last = Some((view, Instant::now())),
        }
        if started.elapsed() > JOIN_TIMEOUT {
            anyhow::bail!(
                "no node with the models role answered within {} s",
                JOIN_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(view: &MemberView) -> anyhow::Result<()> {
    let nodes: Vec<_> = view
        .members
        .iter()
        .filter(|member| !member.roles.is_empty())
        .collect();
    println!("{} nodes", nodes.len());
    // The rule the schedulers follow: the live scheduler-role member with the lowest name.
    match view.with_role(Role::Scheduler).first() {
        Some(leader) => println!("scheduler: led by {}", leader.name),
        None => println!("scheduler: no node has the scheduler role"),
    }
    for member in nodes {
        let roles: Vec<&str> = member.roles.iter().map(|role| role.name()).collect();
        let hosted = match pg_host(&member.name) {
            Some(host) => ractor::call_t!(
                host,
                ModelHostMessage::Hosted,
                5_000,
                SeriesRequest::default()
            )
            .map(|hosted| format!("{} series active", hosted.series.len()))
            .unwrap_or_else(|_| "model host not answering".to_string()),
            None => "no model host".to_string(),
        };
        println!(
            "  {} at {} [{}]: {hosted}",
            member.name,
            member.advertise,
            roles.join(",")
        );
    }
    Ok(())
}

fn pg_host(node: &str) -> Option<ActorRef<ModelHostMessage>> {
    ractor::pg::get_members(&crate::actors::model_host::group(node))
        .into_iter()
        .next()
        .map(Into::into)
}

/// The owner of the store's series and its host.
async fn route(
    config: &Config,
    view: &MemberView,
    store: u32,
) -> anyhow::Result<(String, ActorRef<ModelHostMessage>)> {
    let product = &config.load.product;
    let database = Database::connect(&config.database).await?;
    let stores = database.stores_with_sales(product).await?;
    database.close().await;
    let keys: Vec<SeriesKey> = stores
        .into_iter()
        .map(|store| SeriesKey::new(store, product.clone()))
        .collect();
    let key = SeriesKey::new(store, product.clone());
    owner_host(&placement(view, &keys), &key)
        .with_context(|| format!("no live model host owns store {store}"))
}

async fn retrain(config: &Config, view: &MemberView, series: &SeriesArgs) -> anyhow::Result<()> {
    let (owner, host) = route(config, view, series.store).await?;
    let request = SeriesRequest {
        store: series.store,
        product: config.load.product.clone(),
        days: series.days,
        traceparent: String::new(),
        job_id: None,
    };
    let reply = ractor::call_t!(host, ModelHostMessage::Train, TRAIN_TIMEOUT_MS, request)
        .map_err(|error| anyhow::anyhow!("node {owner} did not answer: {error}"))?;
    match (reply.version, reply.error) {
        (Some(version), _) => {
            println!(
                "store {} ({}): version {} trained on node {owner} (profile {}, CV MAPE {:.1}%)",
                version.store,
                version.product,
                version.version,
                version.profile,
                100.0 * version.metrics.map_or(f64::NAN, |metrics| metrics.mape)
            );
            Ok(())
        }
        (None, error) => anyhow::bail!(
            "store {}: {}",
            series.store,
            error.unwrap_or_else(|| "no answer".to_string())
        ),
    }
}

async fn forecast(config: &Config, view: &MemberView, series: &SeriesArgs) -> anyhow::Result<()> {
    let (owner, host) = route(config, view, series.store).await?;
    let request = SeriesRequest {
        store: series.store,
        product: config.load.product.clone(),
        days: series.days,
        traceparent: String::new(),
        job_id: None,
    };
    let reply = ractor::call_t!(host, ModelHostMessage::Forecast, 60_000, request)
        .map_err(|error| anyhow::anyhow!("node {owner} did not answer: {error}"))?;
    let Some(version) = reply.version else {
        anyhow::bail!(
            "store {}: {}",
            series.store,
            reply.error.unwrap_or_else(|| "no answer".to_string())
        );
    };
    println!(
        "store {} ({}): forecast by node {owner}, model {} version {}",
        version.store, version.product, version.profile, version.version
    );
    if version.new_data {
        println!(
            "note: sales newer than this version have arrived; `storecast cluster retrain --store {}` uses them",
            version.store
        );
    }
    for point in reply.points {
        println!(
            "{}  {:>8.0}  {:>8.0}  {:>8.0}",
            point.date, point.yhat, point.lower, point.upper
        );
    }
    Ok(())
}

async fn train_all(config: &Config, args: &TrainAllArgs) -> anyhow::Result<()> {
    let (job_id, created) = scheduler::request_train_all(JOIN_TIMEOUT).await?;
    if created {
        println!("train-all job {job_id} started");
    } else {
        println!("train-all job {job_id} is already running; following it");
    }
    if args.no_wait {
        return Ok(());
    }
    let database = Database::connect(&config.database).await?;
    let job = follow_job(&database, job_id).await;
    database.close().await;
    let job = job?;
    println!("{}", describe_job(&job));
    if job.state != "succeeded" {
        anyhow::bail!("job {job_id} {}", job.state);
    }
    Ok(())
}

/// Follows a job's rows until it ends, drawing its progress; returns the finished job.
pub async fn follow_job(database: &Database, id: i64) -> anyhow::Result<Job> {
    let mut progress = ProgressLine::new("series trained");
    let mut forecasting_shown = false;
    let mut last_finished = None;
    loop {
        let job = database
            .job(id)
            .await?
            .with_context(|| format!("job {id} does not exist"))?;
        let finished = usize::try_from(job.succeeded + job.failed).unwrap_or(0);
        if last_finished != Some(finished) {
            progress.update(
                finished,
                usize::try_from(job.failed).unwrap_or(0),
                usize::try_from(job.total).unwrap_or(0),
            );
            last_finished = Some(finished);
        }
        if job.phase == "forecasting" && !forecasting_shown {
            eprintln!("writing batch forecasts");
            forecasting_shown = true;
        }
        if !job.is_active() {
            return Ok(job);
        }
        // The job lives in other processes; its rows are the only thing to watch.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One line on how a job ended.
pub fn describe_job(job: &Job) -> String {
    let took = match (job.started_at, job.finished_at) {
        (Some(started), Some(finished)) => {
            format!(" in {:.1} s", (finished - started).as_seconds_f64())
        }
        _ => String::new(),
    };
    format!(
        "job {} {}{took}: {} of {} series trained, {} failed{}",
        job.id,
        job.state,
        job.succeeded,
        job.total,
        job.failed,
        job.error
            .as_ref()
            .map(|error| format!(" ({error})"))
            .unwrap_or_default()
    )
}
