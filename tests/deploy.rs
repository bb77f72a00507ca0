//! The deploy files agree with the binary, checked without a container engine or Helm:
//! - every YAML and JSON file in `deploy/` parses (Helm's templates excepted: they are Go
//!   templates until `helm template` renders them, which the forge workflow does);
//! - the compose stack's storecast services use only configuration keys and types the binary
//!   knows (their environment and the mounted config file load as a configuration), share
//!   one seed list that names every node, spread the roles, publish the gateway, and are
//!   scraped by Prometheus on their admin listener;
//! - `promtool check config` and `check rules` pass on the Prometheus files;
//! - every metric a dashboard panel or alert rule names is exported by a running node;
//! - the Helm chart's `values.yaml` validates against `values.schema.json`, and every
//!   `.Values.x.y` a template reads exists in `values.yaml`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_yaml_ng::Value as Yaml;
use storecast::cli::produce::publish;
use storecast::config::{Config, LogFormat, Sources};
use support::http::{get, request_with};
use support::node::{NodeProcess, free_address};
use support::streaming;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, found);
        } else {
            found.push(path);
        }
    }
}

fn yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap();
    let mut value: Yaml = serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    // Compose files share settings through YAML merge keys (`<<: *storecast`).
    value
        .apply_merge()
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    value
}

#[test]
fn every_yaml_and_json_file_parses() {
    let mut files = Vec::new();
    files_under(&deploy(), &mut files);
    let mut checked = 0;
    for file in files {
        let in_templates = file
            .components()
            .any(|part| part.as_os_str() == "templates");
        match file.extension().and_then(|extension| extension.to_str()) {
            Some("yml" | "yaml") if !in_templates => {
                yaml(&file);
                checked += 1;
            }
            Some("json") => {
                let text = std::fs::read_to_string(&file).unwrap();
                serde_json::from_str::<serde_json::Value>(&text)
                    .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked >= 12, "only {checked} files checked");
}

/// The compose file's storecast services (those built from deploy/Dockerfile), by name.
fn storecast_services(compose: &Yaml) -> BTreeMap<String, Yaml> {
    compose["services"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, service)| service["build"]["dockerfile"].as_str() == Some("deploy/Dockerfile"))
        .map(|(name, service)| (name.as_str().unwrap().to_string(), service.clone()))
        .collect()
}

/// A service's environment with compose's `${VAR:?message}` interpolations filled in.
fn environment(service: &Yaml) -> Vec<(String, String)> {
    service["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(name, value)| {
            let text = match value {
                Yaml::String(text) => text.clone(),
                other => serde_yaml_ng::to_string(other).unwrap().trim().to_string(),
            };
            let mut filled = String::new();
            let mut rest = text.as_str();
            while let Some(start) = rest.find("${") {
                filled.push_str(&rest[..start]);
                let end = rest[start..].find('}').expect("a closed ${...}") + start;
                filled.push_str("secret");
                rest = &rest[end + 1..];
            }
            filled.push_str(rest);
            (name.as_str().unwrap().to_string(), filled)
        })
        .collect()
}

fn port_of(address: &str) -> &str {
    address.rsplit_once(':').unwrap().1
}

#[test]
fn compose_agrees_with_the_binarys_configuration() {
    let compose_dir = deploy().join("compose");
    let compose = yaml(&compose_dir.join("docker-compose.yml"));
    let services = storecast_services(&compose);
    let config_file = compose_dir.join("storecast.toml");
    let mut nodes: BTreeMap<String, Config> = BTreeMap::new();
    for (name, service) in &services {
        let env = environment(service);
        assert!(
            env.iter().any(|(key, value)| key == "STORECAST_CONFIG"
                && value == "/etc/storecast/storecast.toml"),
            "{name} reads the mounted config file"
        );
        assert!(
            service["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|volume| volume.as_str()
                    == Some("./storecast.toml:/etc/storecast/storecast.toml:ro")),
            "{name} mounts storecast.toml"
        );
        // Every variable is a key (or STORECAST_CONFIG) with a value of its type, and the
        // file's keys too: an unknown one fails here.
        let config = Config::load(&Sources {
            file: Some(config_file.clone()),
            env,
            flags: Vec::new(),
        })
        .unwrap_or_else(|error| panic!("service {name}: {error}"));
        assert!(
            !config.cluster.cookie.is_empty(),
            "{name}: the cookie comes from .env"
        );
        if service["command"][0].as_str() == Some("node") {
            nodes.insert(name.clone(), config);
        }
    }
    assert_eq!(nodes.len(), 3, "three nodes: {:?}", nodes.keys());

    // One seed list naming every node, each advertising its own service name.
    let cluster_port = port_of(&nodes.values().next().unwrap().cluster.listen).to_string();
    let expected_seeds: BTreeSet<String> = nodes
        .keys()
        .map(|name| format!("{name}:{cluster_port}"))
        .collect();
    for (name, config) in &nodes {
        let seeds: BTreeSet<String> = config.cluster.seeds.iter().cloned().collect();
        assert_eq!(seeds, expected_seeds, "{name}'s seeds");
        assert_eq!(config.cluster.name, *name);
        assert_eq!(config.cluster.advertise, format!("{name}:{cluster_port}"));
        assert!(
            config.cluster.listen.starts_with("0.0.0.0:"),
            "{name} listens on all interfaces"
        );
        assert!(config.admin.listen.starts_with("0.0.0.0:"));
        assert!(!config.ingest.brokers.is_empty());
        assert!(config.telemetry.otlp_endpoint.starts_with("http://tempo:"));
    }
    // Roles spread: each is somewhere, models on more than one node.
    let roles = |role: &str| {
        nodes
            .values()
            .filter(|config| config.cluster.roles.iter().any(|name| name == role))
            .count()
    };
    for role in ["ingest", "scheduler", "models", "forecast", "gateway"] {
        assert!(roles(role) >= 1, "no node has the {role} role");
    }
    assert!(roles("models") >= 2 && roles("scheduler") >= 2);
    // The gateway's port is published on the host.
    for (name, config) in &nodes {
        if config.cluster.roles.iter().any(|role| role == "gateway") {
            let port = port_of(&config.gateway.listen);
            let published = services[name]["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|mapping| mapping.as_str() == Some(&format!("{port}:{port}")));
            assert!(published, "{name} publishes its gateway port {port}");
        }
    }
    // Start in order: the database and the broker healthy first.
    for dependency in ["postgres", "kafka"] {
        assert_eq!(
            services["storecast-1"]["depends_on"][dependency]["condition"].as_str(),
            Some("service_healthy")
        );
        assert!(compose["services"][dependency]["healthcheck"]["test"].is_sequence());
    }
    // Prometheus scrapes every node's admin listener.
    let prometheus = yaml(&compose_dir.join("prometheus/prometheus.yml"));
    let targets: BTreeSet<String> = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|job| job["job_name"].as_str() == Some("storecast"))
        .flat_map(|job| {
            job["static_configs"][0]["targets"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|target| target.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let expected: BTreeSet<String> = nodes
        .iter()
        .map(|(name, config)| format!("{name}:{}", port_of(&config.admin.listen)))
        .collect();
    assert_eq!(targets, expected);
    // The image's health check is a real subcommand.
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("CMD [\"storecast\", \"probe\"]"));
    let help = Command::new(env!("CARGO_BIN_EXE_storecast"))
        .args(["probe", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
}

/// `promtool`, or `None` after saying so when it is missing and services are not required.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        if support::postgres::services_required() {
            panic!("promtool is required (STORECAST_REQUIRE_SERVICES=1) but not on PATH");
        }
        support::skipped("promtool checks", "no promtool on PATH");
    }
    found
}

#[test]
fn promtool_accepts_the_prometheus_files() {
    let Some(promtool) = promtool() else {
        return;
    };
    let dir = deploy().join("compose/prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "alerts.yml"],
    ] {
        let output = Command::new(&promtool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Metric names (`storecast_*`, `process_*`) in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["storecast_", "process_"] {
        let mut rest = text;
        while let Some(start) = rest.find(prefix) {
            let before = rest[..start].chars().next_back();
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                names.insert(tail[..end].to_string());
            }
            rest = &tail[end..];
        }
    }
    names
}

/// The sample names a scrape holds, from its `# TYPE` lines (a family is exported even
/// before it has a sample).
fn exported(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_count", "_sum"],
            "info" => &["_info"],
            _ => &[""],
        };
        for suffix in suffixes {
            names.insert(format!("{name}{suffix}"));
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_in_the_dashboards_and_alerts_is_exported() {
    // A node with every role: it consumes sales from a broker (ingest and lag metrics),
    // serves a retrain (fit and job metrics) and runs a train-all (its metrics).
    let Some(stream) = streaming::stream("deploy_metrics", 1, false).await else {
        return;
    };
    let (gateway, admin) = (free_address(), free_address());
    let settings: Vec<String> = [
        format!("gateway.listen={gateway}"),
        format!("admin.listen={admin}"),
        "gateway.token=deploy-test".to_string(),
        format!("ingest.brokers={}", stream.broker.address),
        "ingest.batch_ms=100".to_string(),
        "scheduler.train_all_at=".to_string(),
        "train.profile=reference".to_string(),
        "profiles.reference.yearly_order=0".to_string(),
    ]
    .into_iter()
    .flat_map(|setting| ["--set".to_string(), setting])
    .collect();
    let global = vec!["--database-url".to_string(), stream.setup.url.clone()];
    let mut node = NodeProcess::start(
        stream.dir.path(),
        &global,
        "solo",
        &free_address(),
        &[],
        &settings,
    );
    node.wait_for(&["admin listening on", &admin]);
    node.wait_for(&["ingest partitions assigned"]);

    let messages: Vec<(String, String)> = stream
        .setup
        .templates
        .distinct("product_A", stream.setup.today, 40)
        .collect();
    let producer = storecast::ingest::kafka::producer(&stream.broker.address).unwrap();
    publish(&producer, streaming::TOPIC, &messages, 0)
        .await
        .unwrap();
    streaming::wait_for_rows(&stream.setup.database, stream.setup.today, 40).await;

    let token = ["Authorization: Bearer deploy-test".to_string()];
    for path in ["/api/stores/1/products/product_A/retrain", "/api/train"] {
        let started = request_with(&gateway, "POST", path, &token, None);
        assert_eq!(started.status, 202, "{path}: {}", started.body);
        let job = started.json()["job_id"].as_i64().unwrap();
        let begun = Instant::now();
        // The job runs in the node; its row is the thing to watch.
        loop {
            let state = get(&gateway, &format!("/api/jobs/{job}")).json()["state"].clone();
            if state == "succeeded" {
                break;
            }
            assert!(state != "failed", "{path}: job {job} failed");
            assert!(
                begun.elapsed() < Duration::from_secs(300),
                "{path}: job {job}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let compose = deploy().join("compose");
    let mut named: BTreeMap<String, String> = BTreeMap::new();
    let mut files = Vec::new();
    files_under(&compose.join("grafana/dashboards"), &mut files);
    files.push(compose.join("prometheus/alerts.yml"));
    files.push(compose.join("grafana/provisioning/datasources/datasources.yml"));
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for name in metric_names(&text) {
            named.insert(name, file.display().to_string());
        }
    }
    assert!(named.len() > 15, "{named:?}");
    // The consumer's lag comes from librdkafka's statistics, every few seconds: scrape until
    // every name is there or the patience is spent.
    let begun = Instant::now();
    loop {
        let scrape = get(&admin, "/metrics");
        assert_eq!(scrape.status, 200);
        let exported = exported(&scrape.body);
        let missing: Vec<String> = named
            .iter()
            .filter(|(name, _)| !exported.contains(*name))
            .map(|(name, file)| format!("{name} (in {file})"))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(30),
            "metrics named in the deploy files but not exported: {missing:?}\nexported: {exported:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn chart() -> PathBuf {
    deploy().join("helm/storecast")
}

/// The value at a dotted path (`image.repository`) of a YAML mapping.
fn lookup<'a>(values: &'a Yaml, path: &str) -> Option<&'a Yaml> {
    path.split('.')
        .try_fold(values, |value, key| value.as_mapping()?.get(key))
}

/// Every `.Values.a.b` path the chart's templates read.
fn values_paths_used() -> BTreeSet<String> {
    let mut templates = Vec::new();
    files_under(&chart().join("templates"), &mut templates);
    let mut paths = BTreeSet::new();
    for template in &templates {
        let text = std::fs::read_to_string(template).unwrap();
        let mut rest = text.as_str();
        while let Some(start) = rest.find(".Values.") {
            let tail = &rest[start + ".Values.".len()..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(tail.len());
            paths.insert(tail[..end].trim_end_matches('.').to_string());
            rest = &tail[end..];
        }
    }
    paths
}

fn values_as_json() -> serde_json::Value {
    let values = yaml(&chart().join("values.yaml"));
    serde_json::to_value(&values).unwrap()
}

#[test]
fn the_charts_values_match_its_schema_and_its_templates() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json")).unwrap())
            .unwrap();
    let values = values_as_json();
    let errors = support::schema::errors(&schema, &values);
    assert!(
        errors.is_empty(),
        "values.yaml against the schema: {errors:?}"
    );

    // The schema says no to what the binary would refuse or the chart cannot render.
    for (path, bad) in [
        ("/replicaCount", serde_json::json!(0)),
        ("/roles", serde_json::json!(["models", "trainer"])),
        ("/ports/admin", serde_json::json!(70000)),
        ("/image/pullPolicy", serde_json::json!("Sometimes")),
        ("/secret/tokn", serde_json::json!("x")),
    ] {
        let mut broken = values.clone();
        let (parent, key) = path.rsplit_once('/').unwrap();
        broken
            .pointer_mut(if parent.is_empty() { "" } else { parent })
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.to_string(), bad.clone());
        assert!(
            !support::schema::errors(&schema, &broken).is_empty(),
            "the schema accepts {path} = {bad}"
        );
    }

    // Every value a template reads is declared (a typo renders as empty, silently).
    let values_yaml = yaml(&chart().join("values.yaml"));
    let used = values_paths_used();
    assert!(used.len() > 20, "{used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|path| lookup(&values_yaml, path).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "templates read undeclared values: {missing:?}"
    );
    // And every top-level value is read by some template (or it does nothing).
    let unused: Vec<String> = values_yaml
        .as_mapping()
        .unwrap()
        .keys()
        .map(|key| key.as_str().unwrap().to_string())
        .filter(|key| {
            !used
                .iter()
                .any(|path| path == key || path.starts_with(&format!("{key}.")))
        })
        .collect();
    assert!(unused.is_empty(), "values no template reads: {unused:?}");
}

/// The environment the StatefulSet gives pod `name`, as the template writes it.
fn statefulset_environment(values: &Yaml, pod: &str) -> Vec<(String, String)> {
    let template = std::fs::read_to_string(chart().join("templates/statefulset.yaml")).unwrap();
    let port = |name: &str| {
        lookup(values, &format!("ports.{name}"))
            .unwrap()
            .as_u64()
            .unwrap()
    };
    let replicas = values["replicaCount"].as_u64().unwrap();
    let headless = "storecast-nodes.default.svc.cluster.local";
    let seeds: Vec<String> = (0..replicas)
        .map(|index| format!("storecast-{index}.{headless}:{}", port("cluster")))
        .collect();
    let roles: Vec<&str> = values["roles"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|role| role.as_str().unwrap())
        .collect();
    // What each variable renders to for release `storecast` in namespace `default`.
    let rendered = |name: &str| -> String {
        match name {
            "STORECAST_CONFIG" => "/etc/storecast/storecast.toml".to_string(),
            "STORECAST_CLUSTER_NAME" => pod.to_string(),
            "STORECAST_CLUSTER_ADVERTISE" => format!("{pod}.{headless}:{}", port("cluster")),
            "STORECAST_CLUSTER_LISTEN" => format!("0.0.0.0:{}", port("cluster")),
            "STORECAST_CLUSTER_SEEDS" => seeds.join(","),
            "STORECAST_CLUSTER_ROLES" => roles.join(","),
            "STORECAST_GATEWAY_LISTEN" => format!("0.0.0.0:{}", port("gateway")),
            "STORECAST_ADMIN_LISTEN" => format!("0.0.0.0:{}", port("admin")),
            "STORECAST_CLUSTER_COOKIE" | "STORECAST_GATEWAY_TOKEN" => "secret".to_string(),
            "STORECAST_DATABASE_URL" => {
                "postgres://storecast:secret@postgres:5432/storecast".to_string()
            }
            other => panic!("the StatefulSet sets {other}: teach this test what it renders to"),
        }
    };
    template
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- name: "))
        .filter(|name| name.starts_with("STORECAST_"))
        .map(|name| (name.to_string(), rendered(name)))
        .collect()
}

#[test]
fn the_charts_config_and_environment_load_in_the_binary() {
    let values = yaml(&chart().join("values.yaml"));
    // `toToml` of `config`, as the ConfigMap renders it.
    let config: toml::Value =
        serde_json::from_value(serde_json::to_value(&values["config"]).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("storecast.toml");
    std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
    let env = statefulset_environment(&values, "storecast-1");
    assert!(env.len() >= 10, "{env:?}");
    let loaded = Config::load(&Sources {
        file: Some(file),
        env,
        flags: Vec::new(),
    })
    .unwrap_or_else(|error| panic!("the chart's configuration: {error}"));
    assert_eq!(loaded.cluster.name, "storecast-1");
    assert_eq!(
        loaded.cluster.seeds.len() as u64,
        values["replicaCount"].as_u64().unwrap(),
        "the seed list follows replicaCount"
    );
    assert!(loaded.cluster.seeds.contains(&loaded.cluster.advertise));
    assert_eq!(loaded.log.format, LogFormat::Json);

    // Probes ask the admin listener's health routes, which the binary serves.
    let template = std::fs::read_to_string(chart().join("templates/statefulset.yaml")).unwrap();
    for path in ["/health/livez", "/health/readyz"] {
        assert!(template.contains(&format!("path: {path}")), "{path}");
    }
    assert!(template.contains("enableServiceLinks: false"));
}

/// `0.0.0.0` and the port of a loopback address with a free port.
fn all_interfaces(address: &str) -> String {
    format!("0.0.0.0:{}", port_of(address))
}

#[test]
fn nodes_run_as_in_a_pod_and_the_image_health_check_answers() {
    // As Kubernetes starts them: listening on every interface, the cookie from a Secret in
    // the environment, and service-link variables that are not configuration keys.
    let environment = [
        ("STORECAST_CLUSTER_COOKIE", "cookie-from-a-secret"),
        ("STORECAST_PORT", "tcp://10.96.0.12:8080"),
        ("STORECAST_SERVICE_HOST", "10.96.0.12"),
        ("STORECAST_PORT_8080_TCP_ADDR", "10.96.0.12"),
        ("STORECAST_NODES_SERVICE_PORT_CLUSTER", "7400"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (alpha, bravo) = (free_address(), free_address());
    let alpha_admin = free_address();
    let start = |name: &str, address: &str, seeds: &[&str], admin: &str| {
        let settings: Vec<String> = [
            format!("cluster.advertise={address}"),
            "cluster.roles=gateway".to_string(),
            format!("admin.listen={}", all_interfaces(admin)),
        ]
        .into_iter()
        .flat_map(|setting| ["--set".to_string(), setting])
        .collect();
        NodeProcess::start_with_env(
            dir.path(),
            &[],
            name,
            &all_interfaces(address),
            seeds,
            &settings,
            &environment,
        )
    };
    let mut a = start("alpha", &alpha, &[], &alpha_admin);
    let mut b = start("bravo", &bravo, &[&alpha], &free_address());
    for node in [&mut a, &mut b] {
        node.wait_for(&["cluster view: 2 members [alpha, bravo]"]);
        let warning = node.wait_for_line("Kubernetes service links").unwrap();
        for (name, _) in &environment[1..] {
            assert!(warning.contains(name), "{name} not in {warning}");
        }
        assert!(!warning.contains("STORECAST_CLUSTER_COOKIE"), "{warning}");
    }

    // The image's HEALTHCHECK: `storecast probe` with the image's admin.listen (all
    // interfaces) asks loopback.
    a.wait_for_line("admin listening on");
    let probe = support::storecast(dir.path())
        .env("STORECAST_ADMIN_LISTEN", all_interfaces(&alpha_admin))
        .arg("probe")
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let ready = support::storecast(dir.path())
        .args(["probe", "--check", "readyz", "--admin", &alpha_admin])
        .output()
        .unwrap();
    // Readiness needs a model host somewhere; these nodes are gateways only.
    assert_eq!(ready.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&ready.stderr);
    assert!(
        stderr.contains("503") && stderr.contains("no model host"),
        "{stderr}"
    );

    // Nothing listening: exit 1, naming the address.
    let nobody = free_address();
    let probe = support::storecast(dir.path())
        .args(["probe", "--admin", &nobody])
        .output()
        .unwrap();
    assert_eq!(probe.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&probe.stderr);
    assert!(stderr.contains(&nobody), "{stderr}");
}
