//! `storecast cluster status|retrain|forecast|train-all`: talk to a running cluster from the
//! command line. The command joins the cluster through the seeds as a client (a member with
//! no roles), sends the request through its cluster client (to the series' owner, or the
//! scheduler), prints the answer and leaves. A retrain is a job, as through the API.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use ractor::Actor;

use super::node::node_settings;
use crate::actors::client::ClusterClient;
use crate::actors::model::{ForecastRequest, VersionInfo};
use crate::actors::node::{NodeMessage, NodeSupervisor};
use crate::cluster::member::{MemberView, Role};
use crate::cluster::placement::SeriesKey;
use crate::config::{Config, Override};
use crate::store::{Database, Job, JobPhase, JobState};

use super::progress::ProgressLine;

/// How long the client waits for a cluster with a model host to show up.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

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
    let mut settings = node_settings(config, 0)?;
    // Placing a series needs the series set; the status needs no database.
    if !matches!(command, ClusterCommand::Status(_)) {
        settings.database = Some(Database::connect(&config.database).await?);
    }
    let database = settings.database.clone();
    let (node, handle) = Actor::spawn(None, NodeSupervisor, settings)
        .await
        .context("cannot start the cluster client")?;
    let outcome = async {
        let client = ractor::call_t!(node, NodeMessage::Client, 2_000)
            .context("the client node does not answer")?;
        let view = wait_for_model_hosts(&client).await?;
        match (command, database.clone()) {
            (ClusterCommand::Status(_), _) => status(&client, &view).await,
            (ClusterCommand::Retrain(series), Some(database)) => {
                retrain(config, &client, &database, &series).await
            }
            (ClusterCommand::Forecast(series), Some(_)) => forecast(config, &client, &series).await,
            (ClusterCommand::TrainAll(args), Some(database)) => {
                train_all(&client, &database, &args).await
            }
            (_, None) => anyhow::bail!("no database connected"),
        }
    }
    .await;
    node.stop(Some("client done".to_string()));
    let _ = handle.await;
    if let Some(database) = &database {
        database.close().await;
    }
    outcome
}

/// Waits until the view holds a model host and has not changed for a moment.
async fn wait_for_model_hosts(client: &ClusterClient) -> anyhow::Result<MemberView> {
    let started = Instant::now();
    let mut last: Option<(MemberView, Instant)> = None;
    loop {
        let view = client.view().await?;
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

async fn status(client: &ClusterClient, view: &MemberView) -> anyhow::Result<()> {
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
        let hosted = if member.has_role(Role::Models) {
            match client.hosted(&member.name).await {
                Ok(hosted) => format!("{} series active", hosted.series.len()),
                Err(_) => "model host not answering".to_string(),
            }
        } else {
            "no model host".to_string()
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

/// Retrains one series as a job on its owner, as `POST .../retrain` does, and follows it.
async fn retrain(
    config: &Config,
    client: &ClusterClient,
    database: &Database,
    series: &SeriesArgs,
) -> anyhow::Result<()> {
    let key = SeriesKey::new(series.store, config.load.product.clone());
    let started = client.start_retrain(key, &config.train.profile).await?;
    let (version, node) = match started.answer {
        Some(answer) => {
            eprintln!(
                "retrain job {} started on node {}",
                started.job_id, started.owner
            );
            let version = answer.await.context("the retrain's task stopped")??;
            (version, started.owner)
        }
        None => {
            eprintln!(
                "store {} is already retraining (job {}); following it",
                series.store, started.job_id
            );
            let job = follow_job(database, started.job_id).await?;
            let task = database.job_tasks(job.id).await?.into_iter().next();
            let (Some(task), JobState::Succeeded) = (task, job.state) else {
                anyhow::bail!("{}", describe_job(&job));
            };
            let number = task.model_version.context("the job recorded no version")?;
            let stored = database
                .model_version(series.store, &config.load.product, number)
                .await?
                .context("the job's version is not in the registry")?;
            let version = VersionInfo {
                store: stored.store,
                product: stored.product,
                version: stored.version,
                profile: stored.profile,
                trained_from: Some(stored.trained_from),
                trained_to: Some(stored.trained_to),
                metrics: Some(stored.metrics),
                new_data: false,
            };
            (version, task.node.unwrap_or(started.owner))
        }
    };
    println!(
        "store {} ({}): version {} trained on node {node} (profile {}, CV MAPE {:.1}%)",
        version.store,
        version.product,
        version.version,
        version.profile,
        100.0 * version.metrics.map_or(f64::NAN, |metrics| metrics.mape)
    );
    Ok(())
}

async fn forecast(
    config: &Config,
    client: &ClusterClient,
    series: &SeriesArgs,
) -> anyhow::Result<()> {
    let key = SeriesKey::new(series.store, config.load.product.clone());
    let owner = client.owner(&key).await?;
    let request = ForecastRequest::new(series.store, config.load.product.clone(), series.days);
    let forecast = client.forecast(&owner.node, request).await?;
    let version = forecast.version;
    println!(
        "store {} ({}): forecast by node {}, model {} version {}",
        version.store, version.product, owner.node, version.profile, version.version
    );
    if version.new_data {
        println!(
            "note: sales newer than this version have arrived; `storecast cluster retrain --store {}` uses them",
            version.store
        );
    }
    for point in forecast.points {
        println!(
            "{}  {:>8.0}  {:>8.0}  {:>8.0}",
            point.date, point.yhat, point.lower, point.upper
        );
    }
    Ok(())
}

async fn train_all(
    client: &ClusterClient,
    database: &Database,
    args: &TrainAllArgs,
) -> anyhow::Result<()> {
    let (job_id, created) = client.start_train_all(JOIN_TIMEOUT).await?;
    if created {
        println!("train-all job {job_id} started");
    } else {
        println!("train-all job {job_id} is already running; following it");
    }
    if args.no_wait {
        return Ok(());
    }
    let job = follow_job(database, job_id).await?;
    println!("{}", describe_job(&job));
    if job.state != JobState::Succeeded {
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
        if job.phase == JobPhase::Forecasting && !forecasting_shown {
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
