//! `storecast demo`: the whole system on its embedded defaults, in one command, as a cluster.
//!
//! Steps: take data (1,115 generated stores, or a Rossmann file given with `--data`); load it
//! into the configured database (a SQLite file by default) as `storecast load` does; start an
//! in-process Kafka broker; start `--nodes` cluster nodes on loopback from one shared seed
//! list: the first in this process (it serves the web page), the others as child processes of
//! this binary, every one hosting models and the other roles spread over them; stream today's
//! rows through the broker; run a train-all job (each series trained by its model actor
//! wherever the placement puts it, then batch forecasts); print where the series live and
//! next week's forecasts; then serve the page until Ctrl-C, streaming today's rows every
//! `--interval` seconds and reporting nodes that die and where their series went.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use ractor::{Actor, ActorRef};
use rdkafka::mocking::MockCluster;
use tokio::sync::mpsc;

use super::cluster::{describe_job, follow_job};
use super::dataset::describe_sales;
use super::load::{load_rows, read_sales_blocking, yesterday};
use super::node::shutdown_signal;
use super::node::{node_services, node_settings};
use super::produce::{publish, today_round};
use super::thousands;
use crate::actors::client::ClusterClient;
use crate::actors::node::{NodeMessage, NodeSupervisor};
use crate::cluster::member::{MemberView, Role};
use crate::config::{Config, redact_url};
use crate::dataset::SalesRow;
use crate::dataset::synth::{SynthOptions, generate};
use crate::ingest::kafka;
use crate::ingest::message::parse_sale;
use crate::store::Database;
use crate::web::random_token;

/// Longest the demo waits for its streamed rows to land.
const STREAM_PATIENCE: Duration = Duration::from_secs(60);

/// Longest the demo waits for every node to join the cluster.
const FORMATION_PATIENCE: Duration = Duration::from_secs(60);

/// Longest a node may take to stop after SIGTERM before it is killed.
const STOP_PATIENCE: Duration = Duration::from_secs(15);

/// Stores listed one by one in the summary; the rest are counted.
const STORES_SHOWN: usize = 10;

/// The most nodes one demo starts.
const MAX_NODES: u8 = 8;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Cluster nodes to start on this machine (1 to 8): the first in this process, the others
    /// as child processes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=i64::from(MAX_NODES)))]
    pub nodes: u8,
    /// Use this Rossmann sales file (`train.csv[.gz]`) instead of generated data.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Stores to generate when no `--data` is given (Rossmann has 1,115).
    #[arg(long, default_value_t = 1_115)]
    pub stores: u32,
    /// Days of history to generate.
    #[arg(long, default_value_t = 730)]
    pub days: u32,
    /// Seed of the generated data.
    #[arg(long, default_value_t = SynthOptions::default().seed)]
    pub seed: u64,
    /// Seconds between rounds of today's rows streamed while the demo serves.
    #[arg(long, default_value_t = 10.0)]
    pub interval: f64,
    /// Stop once the forecasts are shown, instead of serving the web page until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
}

pub async fn run(args: DemoArgs, config: &Config) -> anyhow::Result<()> {
    let nodes = usize::from(args.nodes);
    println!("storecast demo: a {nodes}-node cluster on this machine, on embedded defaults\n");

    let rows = match &args.data {
        Some(path) => read_sales_blocking(path.clone()).await?,
        None => {
            let options = SynthOptions {
                stores: args.stores,
                days: args.days,
                seed: args.seed,
                ..SynthOptions::default()
            };
            tokio::task::spawn_blocking(move || generate(&options))
                .await
                .context("the generator stopped unexpectedly")??
                .sales
        }
    };
    let source = match &args.data {
        Some(path) => path.display().to_string(),
        None => format!("synthetic data (seed {})", args.seed),
    };
    println!("1. data      {source}: {}", describe_sales(&rows));

    let database = Database::connect(&config.database).await?;
    println!(
        "2. database  {} (migrated)",
        redact_url(&config.database.url)
    );

    let product = &config.load.product;
    let report = load_rows(&database, rows, product, config.load.months, yesterday()).await?;
    let (first, last) = report.window.span();
    println!(
        "3. loaded    {} rows of {product}: last {} months, dates moved by whole weeks to {first}..{last} (weekdays kept)",
        thousands(report.written),
        config.load.months,
    );

    // An in-process Kafka broker (librdkafka's mock cluster, on a loopback port) carries the
    // streamed sales to the nodes' ingest actors, child processes included.
    let broker = MockCluster::new(1).context("cannot start the embedded Kafka broker")?;
    let topic = config.ingest.topic.clone();
    broker
        .create_topic(
            &topic,
            i32::try_from(config.ingest.partitions).unwrap_or(1),
            1,
        )
        .context("cannot create the demo topic")?;
    println!(
        "4. broker    embedded Kafka broker at {}, topic {topic} ({} partitions)",
        broker.bootstrap_servers(),
        config.ingest.partitions
    );

    let mut base = config.clone();
    base.ingest.brokers = broker.bootstrap_servers();
    // The demo trains now, on demand; the weekly slot must not fire a second job.
    base.scheduler.train_all_at = String::new();
    if base.gateway.token.trim().is_empty() {
        base.gateway.token = random_token().context("cannot make a gateway token")?;
    }
    let token = base.gateway.token.trim().to_string();
    let mut cluster = DemoCluster::start(&base, nodes).await?;

    let outcome = async {
        let client = ractor::call_t!(cluster.node, NodeMessage::Client, 5_000)
            .context("the demo's first node does not answer")?;
        cluster.wait_formed(&client).await?;
        stream_today(
            &database,
            config,
            &base.ingest.brokers,
            &report.window.rows,
        )
        .await?;
        train_and_show(&database, &client, config).await?;
        let gateway = &cluster.gateway;
        println!("\n10. web page http://{gateway}/#token={token}");
        println!(
            "             a chart per store with its owner node, metrics, versions and jobs; API docs at http://{gateway}/docs"
        );
        if args.exit {
            return anyhow::Ok(());
        }
        if let Some(child) = cluster.children.last() {
            println!(
                "             kill a node to watch its stores move to the others: kill {} ({})",
                child.pid, child.name
            );
        }
        println!(
            "             serving until Ctrl-C; today's rows stream every {} s",
            args.interval
        );
        cluster
            .serve(
                &client,
                config,
                &base.ingest.brokers,
                &report.window.rows,
                args.interval,
            )
            .await
    }
    .await;
    cluster.stop().await;
    outcome?;

    println!(
        "\nthe data and models are in {}; try `storecast forecast --store {}` or `storecast train --all`",
        redact_url(&config.database.url),
        report.window.rows.first().map_or(1, |row| row.store)
    );
    database.close().await;
    Ok(())
}

/// The roles of the demo's node `index` of `nodes`: every node hosts models; the first
/// serves the page; the scheduler runs on two nodes (one leads, one stands by), ingest on
/// every node but the first, batch forecasts on the first and third.
fn demo_roles(index: usize, nodes: usize) -> Vec<Role> {
    if nodes == 1 {
        return Role::ALL.to_vec();
    }
    let mut roles = vec![Role::Models];
    if index == 0 {
        roles.push(Role::Gateway);
    } else {
        roles.push(Role::Ingest);
    }
    if index < 2 {
        roles.push(Role::Scheduler);
    }
    if index == 0 || index == 2 {
        roles.push(Role::Forecast);
    }
    roles
}

fn role_names(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|role| role.name())
        .collect::<Vec<_>>()
        .join(",")
}

/// A node of the demo running as a child process.
struct ChildNode {
    name: String,
    pid: u32,
    log: PathBuf,
}

/// The demo's nodes: the first in this process, the others child processes.
struct DemoCluster {
    node: ActorRef<NodeMessage>,
    handle: tokio::task::JoinHandle<()>,
    /// The first node's gateway address.
    gateway: std::net::SocketAddr,
    children: Vec<ChildNode>,
    /// Each child's exit, as it happens: (name, how it ended).
    exits: mpsc::UnboundedReceiver<(String, std::io::Result<ExitStatus>)>,
    /// Children that have exited.
    exited: Vec<String>,
    /// Where the children's configuration and logs are.
    folder: PathBuf,
    names: Vec<String>,
}

impl DemoCluster {
    async fn start(base: &Config, nodes: usize) -> anyhow::Result<DemoCluster> {
        let folder = std::env::temp_dir().join(format!("storecast-demo-{}", std::process::id()));
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        let names: Vec<String> = (1..=nodes).map(|index| format!("demo-{index}")).collect();
        // Every node's cluster port, known before any starts: the shared seed list.
        let listeners = (0..nodes)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .context("cannot find free loopback ports for the nodes")?;
        let addresses: Vec<String> = listeners
            .iter()
            .map(|listener| listener.local_addr().map(|address| address.to_string()))
            .collect::<Result<_, _>>()?;
        let seeds = addresses.clone();
        // The configured gateway address (8080 by default), or any free port when it is taken.
        let gateway = match std::net::TcpListener::bind(&base.gateway.listen) {
            Ok(listener) => listener.local_addr()?,
            Err(_) => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?,
        };
        drop(listeners);

        let mut first = base.clone();
        first.cluster.name = names[0].clone();
        first.cluster.listen = addresses[0].clone();
        first.cluster.advertise = String::new();
        first.cluster.seeds = seeds.clone();
        first.cluster.roles = demo_roles(0, nodes)
            .iter()
            .map(|role| role.name().to_string())
            .collect();
        first.gateway.listen = gateway.to_string();
        // Admin listeners (metrics, health) on any free port: each node logs its address.
        first.admin.listen = "127.0.0.1:0".to_string();
        let mut settings = node_settings(&first, first.train.worker_count())?;
        node_services(&first, &mut settings).await?;
        let (node, handle) = Actor::spawn(None, NodeSupervisor, settings)
            .await
            .context("cannot start the demo's first node")?;
        println!(
            "5. cluster   {} (this process, {}): {}",
            names[0],
            addresses[0],
            role_names(&demo_roles(0, nodes))
        );

        // The children read the same configuration from a private file (it holds the cookie
        // and the gateway token), with their own name, address and roles as flags.
        let config_file = folder.join("config.toml");
        let mut shared = first.clone();
        shared.admin.listen = "127.0.0.1:0".to_string();
        write_private(
            &config_file,
            &toml::to_string(&shared).context("cannot write the nodes' configuration")?,
        )?;
        let (exit_sender, exits) = mpsc::unbounded_channel();
        let mut children = Vec::new();
        for index in 1..nodes {
            let roles = demo_roles(index, nodes);
            let log = folder.join(format!("{}.log", names[index]));
            let pid = spawn_node(
                &config_file,
                &names[index],
                &addresses[index],
                &seeds,
                &roles,
                &log,
                exit_sender.clone(),
            )?;
            println!(
                "             {} (pid {pid}, {}): {}; log {}",
                names[index],
                addresses[index],
                role_names(&roles),
                log.display()
            );
            children.push(ChildNode {
                name: names[index].clone(),
                pid,
                log,
            });
        }
        Ok(DemoCluster {
            node,
            handle,
            gateway,
            children,
            exits,
            exited: Vec::new(),
            folder,
            names,
        })
    }

    /// Waits until every node is in the first node's view, printing each as it joins; fails
    /// with the node's log when one exits first.
    async fn wait_formed(&mut self, client: &ClusterClient) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut seen: Vec<String> = Vec::new();
        loop {
            if let Ok((name, status)) = self.exits.try_recv() {
                let log = self.log_of(&name);
                anyhow::bail!(
                    "node {name} stopped before the cluster formed ({}); see {}",
                    describe_exit(&status),
                    log.display()
                );
            }
            let view = client.view().await?;
            for name in view.names() {
                if !seen.iter().any(|known| known == name) {
                    if !seen.is_empty() {
                        println!(
                            "             {name} joined after {:.1} s",
                            started.elapsed().as_secs_f64()
                        );
                    }
                    seen.push(name.to_string());
                }
            }
            if self.names.iter().all(|name| seen.contains(name)) {
                println!("             formed: {view}");
                return Ok(());
            }
            if started.elapsed() > FORMATION_PATIENCE {
                anyhow::bail!(
                    "the cluster did not form within {} s: {view}; the nodes' logs are in {}",
                    FORMATION_PATIENCE.as_secs(),
                    self.folder.display()
                );
            }
            // Joins happen in other processes; the view is where they show.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_of(&self, name: &str) -> PathBuf {
        self.children
            .iter()
            .find(|child| child.name == name)
            .map_or_else(|| self.folder.clone(), |child| child.log.clone())
    }

    /// Serves until Ctrl-C: streams today's rows every `interval` seconds, reports nodes that
    /// stop, and the cluster's view and series per node whenever the view changes.
    async fn serve(
        &mut self,
        client: &ClusterClient,
        config: &Config,
        brokers: &str,
        history: &[SalesRow],
        interval: f64,
    ) -> anyhow::Result<()> {
        let product = &config.load.product;
        let producer = kafka::producer(brokers)?;
        let mut rounds = tokio::time::interval(Duration::from_secs_f64(interval.max(0.1)));
        rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut looks = tokio::time::interval(Duration::from_millis(500));
        let mut last_view = client.view().await?;
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    println!("\nCtrl-C: stopping every node");
                    return Ok(());
                }
                _ = rounds.tick() => {
                    let messages = today_round(history, product);
                    if let Err(error) = publish(&producer, &config.ingest.topic, &messages, 0).await {
                        println!("             could not stream today's rows: {error:#}");
                    }
                }
                Some((name, status)) = self.exits.recv() => {
                    self.exited.push(name.clone());
                    println!(
                        "\n{name} stopped ({}); the others take over its series, the demo goes on",
                        describe_exit(&status)
                    );
                }
                _ = looks.tick() => {
                    let Ok(view) = client.view().await else { continue };
                    if view.names() != last_view.names() {
                        println!("cluster: {view}");
                        print_placement(client, product).await;
                        last_view = view;
                    }
                }
            }
        }
    }

    /// Stops every node: SIGTERM to the children (killed after [`STOP_PATIENCE`]), then the
    /// first node; removes the children's configuration file.
    async fn stop(mut self) {
        let running: Vec<&ChildNode> = self
            .children
            .iter()
            .filter(|child| !self.exited.contains(&child.name))
            .collect();
        for child in &running {
            signal(child.pid, libc::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + STOP_PATIENCE;
        let mut left = running.len();
        while left > 0 {
            match tokio::time::timeout_at(deadline, self.exits.recv()).await {
                Ok(Some((name, status))) => {
                    left -= 1;
                    if let Ok(status) = &status
                        && !status.success()
                    {
                        println!("{name} stopped ({})", describe_exit(&Ok(*status)));
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    for child in &running {
                        signal(child.pid, libc::SIGKILL);
                    }
                    println!(
                        "{left} node(s) did not stop within {} s and were killed",
                        STOP_PATIENCE.as_secs()
                    );
                    break;
                }
            }
        }
        self.node.stop(Some("demo done".to_string()));
        let _ = self.handle.await;
        let _ = std::fs::remove_file(self.folder.join("config.toml"));
    }
}

/// Starts `storecast node` for one of the demo's nodes; its exit is sent to `exits`.
fn spawn_node(
    config_file: &Path,
    name: &str,
    address: &str,
    seeds: &[String],
    roles: &[Role],
    log: &Path,
    exits: mpsc::UnboundedSender<(String, std::io::Result<ExitStatus>)>,
) -> anyhow::Result<u32> {
    let program = std::env::current_exe().context("cannot find the storecast binary")?;
    let output =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut command = tokio::process::Command::new(program);
    command
        .arg("--config")
        .arg(config_file)
        .args(["node", "--name", name, "--listen", address])
        .args(["--seeds", &seeds.join(","), "--roles", &role_names(roles)])
        .stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
        // Ctrl-C in the terminal reaches only the demo, which stops its nodes in order.
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; it makes the child die with this process, even
    // when this process is killed without a chance to stop it.
    #[cfg(target_os = "linux")]
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start node {name}"))?;
    let pid = child.id().context("the node exited at once")?;
    let name = name.to_string();
    tokio::spawn(async move {
        let status = child.wait().await;
        let _ = exits.send((name, status));
    });
    Ok(pid)
}

/// Writes `text` to a new file only this user can read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn signal(pid: u32, signal: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: a signal to a child process this demo started and has not yet reaped (its
    // exit arrives on the channel only after `wait` reaped it).
    unsafe {
        libc::kill(pid, signal);
    }
}

/// "exited with code 1", "killed by signal 9".
fn describe_exit(status: &std::io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => status.to_string(),
        },
        Err(error) => format!("its exit is unknown: {error}"),
    }
}

/// Prints how many series each model host owns now, as the placement puts them.
async fn print_placement(client: &ClusterClient, product: &str) {
    match client.routes(product).await {
        Ok(routes) => {
            let view = client.view().await.unwrap_or(MemberView {
                members: Vec::new(),
            });
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for member in view.with_role(Role::Models) {
                counts.insert(member.name.clone(), routes.owned_by(&member.name).len());
            }
            let text: Vec<String> = counts
                .iter()
                .map(|(node, count)| format!("{node} {}", thousands(*count as u64)))
                .collect();
            println!("             series per node: {}", text.join(", "));
        }
        Err(error) => println!("             placement unknown: {error}"),
    }
}

/// Publishes today's row of every store to the embedded broker and waits until the node's
/// ingest actor has stored them all.
async fn stream_today(
    database: &Database,
    config: &Config,
    brokers: &str,
    history: &[SalesRow],
) -> anyhow::Result<()> {
    let product = &config.load.product;
    let messages = today_round(history, product);
    let producer = kafka::producer(brokers)?;
    let started = Instant::now();
    publish(&producer, &config.ingest.topic, &messages, 0).await?;
    let date = messages
        .first()
        .and_then(|(_, json)| parse_sale(json.as_bytes()).ok())
        .map(|sale| sale.row.date)
        .context("no rows to stream")?;
    println!(
        "6. streaming published {} rows for {date} to topic {} on the embedded broker",
        thousands(messages.len() as u64),
        config.ingest.topic
    );
    let stores = database.stores_with_sales(product).await?;
    let mut shown = 0;
    loop {
        let arrived = database
            .last_sale_dates(product, &stores)
            .await?
            .values()
            .filter(|last| **last >= date)
            .count();
        if arrived > shown {
            println!(
                "             {} of {} arrived in the database after {:.1} s (ingest actors, consumer group {})",
                thousands(arrived as u64),
                thousands(messages.len() as u64),
                started.elapsed().as_secs_f64(),
                config.ingest.group
            );
            shown = arrived;
        }
        if arrived >= messages.len() {
            return Ok(());
        }
        if started.elapsed() > STREAM_PATIENCE {
            anyhow::bail!(
                "only {arrived} of {} streamed rows arrived within {} s",
                messages.len(),
                STREAM_PATIENCE.as_secs()
            );
        }
        // The rows land in another task of this process; their table is what shows them.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Trains every series through the node's scheduler, then shows where they live and what
/// they forecast.
async fn train_and_show(
    database: &Database,
    client: &ClusterClient,
    config: &Config,
) -> anyhow::Result<()> {
    let (job_id, _) = client.start_train_all(Duration::from_secs(30)).await?;
    println!(
        "7. training  train-all job {job_id}: the scheduler sends each series to its model actor"
    );
    let job = follow_job(database, job_id).await?;
    println!("             {}", describe_job(&job));

    println!("8. placement where the series' model actors live:");
    let view = client.view().await?;
    for member in view.with_role(Role::Models) {
        let hosted = client
            .hosted(&member.name)
            .await
            .with_context(|| format!("the model host of {} does not answer", member.name))?;
        let stores: Vec<u32> = hosted.series.iter().map(|(store, _)| *store).collect();
        println!(
            "             {}: {} series (stores {})",
            hosted.node,
            thousands(stores.len() as u64),
            describe_stores(&stores)
        );
    }

    let product = &config.load.product;
    let stores = database.stores_with_sales(product).await?;
    let mut shown = Vec::new();
    let mut forecast_stores = 0;
    for store in &stores {
        let forecast = database.latest_forecast(*store, product).await?;
        if forecast.is_empty() {
            continue;
        }
        forecast_stores += 1;
        if shown.len() < STORES_SHOWN {
            shown.push((*store, forecast));
        }
    }
    println!(
        "9. forecasts next {} days of {} of {} series, written to forecast_results by the forecasters\n",
        config.train.horizon_days,
        thousands(forecast_stores as u64),
        thousands(stores.len() as u64)
    );
    let dates: String = shown
        .first()
        .map(|(_, days)| {
            days.iter()
                .map(|day| format!("{:>7}", day.record.date.format("%a %d")))
                .collect()
        })
        .unwrap_or_default();
    println!("   store  version  {dates}");
    for (store, days) in &shown {
        let values: String = days
            .iter()
            .map(|day| format!("{:>7.0}", day.record.yhat))
            .collect();
        let version = days.first().map_or(0, |day| day.record.model_version);
        println!("   {store:>5}  {version:>7}  {values}");
    }
    if stores.len() > shown.len() {
        println!("   ... and {} more", stores.len() - shown.len());
    }
    if job.state != crate::store::JobState::Succeeded {
        anyhow::bail!("{}", describe_job(&job));
    }
    Ok(())
}

/// Ranges shown by [`describe_stores`] before it counts the rest.
const RANGES_SHOWN: usize = 6;

/// Stores as compact ranges: "1-5, 8, 10-12", the first few of them when there are many.
fn describe_stores(stores: &[u32]) -> String {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for &store in stores {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == store => *end = store,
            _ => ranges.push((store, store)),
        }
    }
    let more = ranges.len().saturating_sub(RANGES_SHOWN);
    let mut text = ranges
        .iter()
        .take(RANGES_SHOWN)
        .map(|(start, end)| {
            if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_read_as_ranges() {
        assert_eq!(describe_stores(&[1, 2, 3, 5, 7, 8]), "1-3, 5, 7-8");
        assert_eq!(describe_stores(&[]), "");
        let scattered: Vec<u32> = (1..=20).map(|store| store * 2).collect();
        assert_eq!(
            describe_stores(&scattered),
            "2, 4, 6, 8, 10, 12 and 14 more"
        );
    }

    #[test]
    fn every_node_hosts_models_and_each_role_runs_somewhere() {
        for nodes in 1..=usize::from(MAX_NODES) {
            let roles: Vec<Vec<Role>> = (0..nodes).map(|index| demo_roles(index, nodes)).collect();
            assert!(roles.iter().all(|roles| roles.contains(&Role::Models)));
            for role in Role::ALL {
                assert!(
                    roles.iter().any(|roles| roles.contains(&role)),
                    "{nodes} nodes: no {role:?}"
                );
            }
            // Only the first node, which serves the page, runs in the demo's process.
            let gateways = roles
                .iter()
                .filter(|roles| roles.contains(&Role::Gateway))
                .count();
            assert_eq!(gateways, 1);
            assert!(roles[0].contains(&Role::Gateway));
        }
    }
}
