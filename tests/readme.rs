//! README.md's commands are run: each command of its `sh` blocks is either run here, as
//! written, or named in [`WHERE_RUN`] with the test or CI step that runs it (checked to exist).
//! A command added to the README that nothing runs fails
//! `every_readme_command_is_run_by_a_test_or_by_ci`.
//!
//! "As written" means the README's text through `bash`, with `storecast` on the PATH as this
//! build's binary; only addresses change, to free loopback ports (and the example hosts of a
//! cluster by hand to loopback), since tests share this machine.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::node::{NodeProcess, PATIENCE};
use support::ports::free_port;

/// One command of the README: the line it starts on, its text with `\` continuations joined
/// and a trailing `# comment` removed.
#[derive(Debug, Clone)]
struct ReadmeCommand {
    line: usize,
    text: String,
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md")
}

/// Every command of the README's ```` ```sh ```` blocks, in order.
fn readme_commands() -> Vec<ReadmeCommand> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending: Option<ReadmeCommand> = None;
    for (index, raw) in readme().lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with("```") {
            in_sh = !in_sh && trimmed == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let code = without_comment(raw).trim_end();
        let (code, continues) = match code.strip_suffix('\\') {
            Some(head) => (head.trim_end(), true),
            None => (code, false),
        };
        let command = match pending.take() {
            Some(mut command) => {
                command.text.push(' ');
                command.text.push_str(code.trim());
                command
            }
            None => ReadmeCommand {
                line: index + 1,
                text: code.trim().to_string(),
            },
        };
        if continues {
            pending = Some(command);
        } else if !command.text.is_empty() {
            commands.push(command);
        }
    }
    assert!(pending.is_none(), "README.md ends inside a continued line");
    commands
}

/// `line` without a shell comment: a `#` at the start of a word, outside quotes.
fn without_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (at, char) in line.char_indices() {
        match (quote, char) {
            (None, '"' | '\'') => quote = Some(char),
            (Some(open), _) if char == open => quote = None,
            (None, '#') if previous.is_whitespace() => return &line[..at],
            _ => {}
        }
        previous = char;
    }
    line
}

/// Where a README command runs.
enum Runner {
    /// A test of this file.
    Here(&'static str),
    /// Another test: the file and a text it contains (its function's name, or the command's
    /// flags).
    Test(&'static str, &'static str),
    /// The CI entry point `.ci/run` (`scripts/test`).
    Ci(&'static str),
    /// Only the forge workflow, `.github/workflows/ci.yml`, which has a container engine and
    /// Helm: the step's text. The reason says what of the command it runs.
    Forge(&'static str, &'static str),
}

/// Each README command, by the start of its text, and where it runs.
const WHERE_RUN: &[(&str, Runner)] = &[
    (
        "cargo run --release -- demo",
        Runner::Test(
            "tests/cli.rs",
            "fn demo_forms_a_three_node_cluster_and_forecasts_every_store",
        ),
    ),
    ("./scripts/test", Runner::Ci("exec ./scripts/test")),
    ("storecast node --name a ", Runner::Here(ONE_MACHINE)),
    ("storecast node --name b ", Runner::Here(ONE_MACHINE)),
    ("storecast node --name c ", Runner::Here(ONE_MACHINE)),
    ("storecast cluster status ", Runner::Here(ONE_MACHINE)),
    ("storecast cluster retrain ", Runner::Here(ONE_MACHINE)),
    ("storecast cluster forecast ", Runner::Here(ONE_MACHINE)),
    ("storecast cluster train-all ", Runner::Here(ONE_MACHINE)),
    ("curl -X POST ", Runner::Here(ONE_MACHINE)),
    (
        "storecast node --set telemetry.otlp_endpoint=",
        Runner::Test("tests/traces.rs", "telemetry.otlp_endpoint="),
    ),
    (
        "cd deploy/compose",
        Runner::Forge(
            "working-directory: deploy/compose",
            "the compose steps run in that folder",
        ),
    ),
    (
        "cp .env.example .env",
        Runner::Forge("cp .env.example .env", "as written"),
    ),
    (
        "docker compose up -d",
        Runner::Forge(
            "docker compose config --quiet && docker compose --profile admin config --quiet",
            "the files it starts, both profiles, are checked by `docker compose config`; nothing here can start containers",
        ),
    ),
    (
        "kubectl create secret generic storecast-secrets",
        Runner::Forge(
            "--set secret.existingSecret=storecast-secrets",
            "the chart is rendered and validated with the secret it names; no Kubernetes cluster runs anywhere",
        ),
    ),
    (
        "helm install storecast deploy/helm/storecast",
        Runner::Forge(
            "--set secret.existingSecret=storecast-secrets --set config.ingest.brokers=kafka:9092 --set config.telemetry.otlp_endpoint=http://tempo:4318",
            "the chart is linted, rendered with the README's values and its manifests validated",
        ),
    ),
    ("export STORECAST_", Runner::Here(BY_HAND)),
    ("SEEDS=", Runner::Here(BY_HAND)),
    ("storecast node --name n1 ", Runner::Here(BY_HAND)),
    ("storecast node --name n2 ", Runner::Here(BY_HAND)),
    ("storecast node --name n3 ", Runner::Here(BY_HAND)),
    ("storecast produce --stores 50", Runner::Here(BY_HAND)),
];

const ONE_MACHINE: &str = "three_nodes_on_one_machine_as_the_readme_says";
const BY_HAND: &str = "a_cluster_by_hand_on_postgres_and_a_broker_as_the_readme_says";

fn read_project_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|error| panic!("read {path}: {error}"))
}

#[test]
fn every_readme_command_is_run_by_a_test_or_by_ci() {
    let commands = readme_commands();
    assert!(
        commands.len() >= 20,
        "the README's sh blocks were not read: {commands:?}"
    );
    let this_file = read_project_file("tests/readme.rs");
    let mut unrun = Vec::new();
    for command in &commands {
        let Some((_, runner)) = WHERE_RUN
            .iter()
            .find(|(start, _)| command.text.starts_with(start))
        else {
            unrun.push(format!("README.md:{}: {}", command.line, command.text));
            continue;
        };
        let (file, needle) = match runner {
            Runner::Here(test) => ("tests/readme.rs", *test),
            Runner::Test(file, needle) => (*file, *needle),
            Runner::Ci(needle) => (".ci/run", *needle),
            Runner::Forge(needle, what) => {
                eprintln!(
                    "README.md:{}: `{}`: the forge workflow only: {what}",
                    command.line, command.text
                );
                (".github/workflows/ci.yml", *needle)
            }
        };
        let text = if file == "tests/readme.rs" {
            this_file.clone()
        } else {
            read_project_file(file)
        };
        let found = match runner {
            Runner::Here(test) => text.contains(&format!("fn {test}()")),
            _ => text.contains(needle),
        };
        assert!(
            found,
            "README.md:{}: `{}` is said to run in {file}, which has no `{needle}`",
            command.line, command.text
        );
        // `.ci/run` must run the README's test command itself, not another one.
        if let Runner::Ci(_) = runner {
            assert!(text.contains(command.text.trim_start_matches("./")));
        }
    }
    assert!(
        unrun.is_empty(),
        "README commands that no test or CI step runs (add them to WHERE_RUN in tests/readme.rs, with what runs them):\n{}",
        unrun.join("\n")
    );
}

/// The README's commands that start with `start`, in order; at least one.
fn commands_starting(start: &str) -> Vec<ReadmeCommand> {
    let found: Vec<ReadmeCommand> = readme_commands()
        .into_iter()
        .filter(|command| command.text.starts_with(start))
        .collect();
    assert!(!found.is_empty(), "README.md has no command `{start}...`");
    found
}

fn the_command(start: &str) -> ReadmeCommand {
    let mut found = commands_starting(start);
    assert_eq!(found.len(), 1, "README.md has several `{start}...`");
    found.remove(0)
}

/// A folder whose `storecast` is this build's binary, for `PATH`.
fn bin_dir(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_storecast"), bin.join("storecast")).unwrap();
    bin
}

/// `bash -c "exec TEXT"` in `dir`, with `bin` first on the PATH, `env` set and the caller's
/// storecast settings removed.
fn shell(dir: &Path, bin: &Path, text: &str, env: &BTreeMap<String, String>) -> Command {
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!("exec {text}"))
        .current_dir(dir);
    support::without_callers_settings(&mut command);
    let path = std::env::var("PATH").unwrap_or_default();
    command.env("PATH", format!("{}:{path}", bin.display()));
    command.envs(env);
    command
}

/// `text` with every `from` replaced by its `to`.
fn remapped(text: &str, addresses: &[(String, String)]) -> String {
    addresses
        .iter()
        .fold(text.to_string(), |text, (from, to)| text.replace(from, to))
}

fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs a README command to its end and checks that it succeeded and printed `needles`.
fn run_as_written(command: Command, what: &ReadmeCommand, needles: &[&str]) -> String {
    let mut command = command;
    let output = support::run_within(&mut command, Duration::from_secs(300));
    let printed = printed(&output);
    assert!(
        output.status.success(),
        "README.md:{}: `{}` failed ({}):\n{printed}",
        what.line,
        what.text,
        output.status
    );
    for needle in needles {
        assert!(
            printed.contains(needle),
            "README.md:{}: `{}` did not print {needle:?}:\n{printed}",
            what.line,
            what.text
        );
    }
    printed
}

/// "`storecast node` ... e.g. three on one machine": nodes a, b and c as written (ports moved
/// to free ones) find each other and log the view the README quotes; then the
/// `storecast cluster` commands and the `curl` retrains of the README run against them, on
/// the default database (a SQLite file in the working folder) with six synthetic stores.
#[test]
fn three_nodes_on_one_machine_as_the_readme_says() {
    let dir = tempfile::tempdir().unwrap();
    let bin = bin_dir(dir.path());
    support::load_synthetic(dir.path(), "sqlite:storecast.db?mode=rwc", 6, 500);

    // The README's addresses, and node a's defaults (gateway 8080, admin 9400), on free ports.
    let mut addresses = Vec::new();
    for port in [7401, 7402, 7403, 8080, 8082, 8083, 9402, 9403] {
        let free = free_port();
        for host in ["127.0.0.1", "localhost"] {
            addresses.push((format!("{host}:{port}"), format!("{host}:{free}")));
        }
    }
    let gateway_of_a = remapped("127.0.0.1:8080", &addresses);
    let mut env = BTreeMap::new();
    env.insert("STORECAST_GATEWAY_LISTEN".to_string(), gateway_of_a.clone());
    env.insert(
        "STORECAST_ADMIN_LISTEN".to_string(),
        format!("127.0.0.1:{}", free_port()),
    );

    let mut nodes: Vec<NodeProcess> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let command = the_command(&format!("storecast node --name {name} "));
            let text = remapped(&command.text, &addresses);
            NodeProcess::spawn(name, "", shell(dir.path(), &bin, &text, &env))
        })
        .collect();
    for node in &mut nodes {
        node.wait_for(&["cluster view: 3 members [a, b, c]"]);
    }
    let page = nodes[0].wait_for_line("web page: http://").unwrap();
    let token = page
        .split_once("#token=")
        .map(|(_, token)| token.trim().to_string())
        .unwrap_or_else(|| panic!("node a printed no token: {page}"));
    env.insert("TOKEN".to_string(), token.clone());
    env.insert("STORECAST_GATEWAY_TOKEN".to_string(), token);

    for (start, needles) in [
        (
            "storecast cluster status ",
            &["3 nodes", "scheduler: led by a", "  b at ", "  c at "][..],
        ),
        (
            "storecast cluster retrain ",
            &["store 5 (product_A): version 1 trained on node "][..],
        ),
        (
            "storecast cluster forecast ",
            &["store 5 (product_A): forecast by node ", "version 1"][..],
        ),
        (
            "storecast cluster train-all ",
            &["succeeded", "6 of 6 series trained, 0 failed"][..],
        ),
    ] {
        let command = the_command(start);
        let text = remapped(&command.text, &addresses);
        run_as_written(shell(dir.path(), &bin, &text, &env), &command, needles);
    }
    // Both curl retrains of the README (the one-machine and the compose example) reach node
    // a's gateway with the token it printed; each starts a retrain job of store 5.
    let curls = commands_starting("curl -X POST ");
    assert_eq!(curls.len(), 2, "{curls:?}");
    for command in curls {
        let text = remapped(&command.text, &addresses);
        assert_ne!(
            text, command.text,
            "the address of {command:?} was not moved"
        );
        let printed = run_as_written(shell(dir.path(), &bin, &text, &env), &command, &[]);
        assert!(
            printed.contains("\"job\"") || printed.contains("\"job_id\""),
            "README.md:{}: the retrain did not answer with a job:\n{printed}",
            command.line
        );
    }
}

/// "A cluster by hand": the README's exports, seed list, three nodes and producer, with the
/// example hosts on loopback, a real PostgreSQL and a real broker. The nodes form one
/// cluster with the README's cookie, the producer seeds the history of 50 stores and
/// streams today's rows, and the ingest nodes store them.
#[test]
fn a_cluster_by_hand_on_postgres_and_a_broker_as_the_readme_says() {
    let test = "a_cluster_by_hand_on_postgres_and_a_broker_as_the_readme_says";
    let Some(url) = support::postgres::fresh_database(test) else {
        return;
    };
    let Some(broker) = support::kafka::Broker::start(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bin = bin_dir(dir.path());

    let mut addresses = vec![
        (
            "postgres://storecast:PASSWORD@db.example:5432/storecast".to_string(),
            url.clone(),
        ),
        ("kafka.example:9092".to_string(), broker.address.clone()),
    ];
    for machine in 1..=3 {
        addresses.push((
            format!("10.0.0.{machine}:7400"),
            format!("127.0.0.1:{}", free_port()),
        ));
    }
    let mut env = BTreeMap::new();
    for command in commands_starting("export STORECAST_")
        .into_iter()
        .chain(commands_starting("SEEDS="))
    {
        let text = remapped(&command.text, &addresses);
        let assignment = text.trim_start_matches("export ");
        let (name, value) = assignment
            .split_once('=')
            .unwrap_or_else(|| panic!("README.md:{}: not NAME=VALUE", command.line));
        env.insert(name.to_string(), value.to_string());
    }
    assert_eq!(env.get("STORECAST_DATABASE_URL"), Some(&url));
    assert_eq!(env.get("STORECAST_INGEST_BROKERS"), Some(&broker.address));

    let mut nodes: Vec<NodeProcess> = (1..=3)
        .map(|machine| {
            let name = format!("n{machine}");
            let command = the_command(&format!("storecast node --name {name} "));
            let advertised = format!("10.0.0.{machine}:7400");
            assert!(command.text.contains(&format!("--advertise {advertised}")));
            // Each machine's own ports: the cluster port as its advertised one, the gateway
            // and admin listeners on free loopback ports (all machines use the same ones).
            let cluster_port = remapped(&advertised, &addresses).replace("127.0.0.1", "0.0.0.0");
            let own = [
                ("0.0.0.0:7400".to_string(), cluster_port),
                (
                    "0.0.0.0:8080".to_string(),
                    format!("127.0.0.1:{}", free_port()),
                ),
                (
                    "0.0.0.0:9400".to_string(),
                    format!("127.0.0.1:{}", free_port()),
                ),
            ];
            let text = remapped(&remapped(&command.text, &addresses), &own);
            let mut env = env.clone();
            // A node without a gateway of its own would bind the default 8080.
            env.insert(
                "STORECAST_GATEWAY_LISTEN".to_string(),
                format!("127.0.0.1:{}", free_port()),
            );
            NodeProcess::spawn(&name, "", shell(dir.path(), &bin, &text, &env))
        })
        .collect();
    for node in &mut nodes {
        node.wait_for(&["cluster view: 3 members [n1, n2, n3]"]);
    }

    let command = the_command("storecast produce --stores 50");
    let text = remapped(&command.text, &addresses);
    // The producer reports on stdout; NodeProcess reads stderr, so stdout goes there.
    let mut producer = NodeProcess::spawn(
        "producer",
        "",
        shell(dir.path(), &bin, &format!("{text} 1>&2"), &env),
    );
    producer.wait_for(&["seeded ", " (50 stores) into "]);
    let round = producer
        .wait_for_line("round 1: published 50 rows for ")
        .unwrap();
    let day: chrono::NaiveDate = round
        .rsplit(' ')
        .next()
        .and_then(|day| day.parse().ok())
        .unwrap_or_else(|| panic!("no day in {round:?}"));
    assert_eq!(
        wait_for_rows_of(&url, day, 50),
        50,
        "stores with a row of {day}"
    );
}

/// Waits until the sales table holds a row of `day` for `stores` stores (ingest writes them);
/// returns how many it holds then.
fn wait_for_rows_of(url: &str, day: chrono::NaiveDate, stores: i64) -> i64 {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let pool = sqlx::PgPool::connect(url)
            .await
            .expect("connect to the test database");
        let started = Instant::now();
        loop {
            let count: i64 =
                sqlx::query_scalar("SELECT count(DISTINCT store) FROM sales WHERE date = $1")
                    .bind(day)
                    .fetch_one(&pool)
                    .await
                    .unwrap_or(0);
            if count >= stores {
                return count;
            }
            assert!(
                started.elapsed() < PATIENCE * 4,
                "after {:?}, rows of {day} of {count} of {stores} stores are stored",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// The benchmark commands of the README's table (inline code, run by hand in release builds)
/// name benchmarks that exist: a `[[bench]]` of Cargo.toml, or an executable script.
#[test]
fn every_benchmark_command_of_the_readme_names_a_benchmark_that_exists() {
    let readme = readme();
    let section = readme
        .split_once("\n## Benchmarks\n")
        .map(|(_, rest)| rest)
        .expect("README.md has a Benchmarks section");
    let manifest = read_project_file("Cargo.toml");
    let commands: Vec<&str> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|code| code.starts_with("cargo bench") || code.ends_with(".sh"))
        .collect();
    assert!(commands.len() >= 6, "{commands:?}");
    for command in commands {
        if let Some(name) = command.strip_prefix("cargo bench --bench ") {
            assert!(
                manifest.contains(&format!("[[bench]]\nname = \"{name}\"")),
                "README.md: `{command}`: Cargo.toml has no benchmark {name}"
            );
        } else {
            use std::os::unix::fs::PermissionsExt as _;
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(command);
            let mode = std::fs::metadata(&path)
                .unwrap_or_else(|error| panic!("README.md: `{command}`: {error}"))
                .permissions()
                .mode();
            assert!(
                mode & 0o111 != 0,
                "README.md: `{command}` is not executable"
            );
        }
    }
}
