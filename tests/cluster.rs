//! Real `storecast node` processes on loopback: a cluster forms from a partial seed list,
//! the failure detector declares a stopped node down within its timeout, and nodes that come
//! back (resumed, restarted) rejoin by themselves.

mod support;

use std::time::{Duration, Instant};

use support::node::{NodeProcess, closed_by_peer, free_address, idle_sockets};

const HEARTBEAT_MS: u64 = 200;
const FAILURE_TIMEOUT_MS: u64 = 2_500;

/// A node with fast timers, so failures are detected in tests within seconds.
fn start(dir: &std::path::Path, name: &str, address: &str, seeds: &[&str]) -> NodeProcess {
    let settings: Vec<String> = [
        format!("cluster.heartbeat_ms={HEARTBEAT_MS}"),
        format!("cluster.failure_timeout_ms={FAILURE_TIMEOUT_MS}"),
        "cluster.reconnect_max_ms=1000".to_string(),
        // Membership alone: no data role (models, scheduler, forecast), so no database.
        "cluster.roles=gateway".to_string(),
    ]
    .into_iter()
    .flat_map(|setting| ["--set".to_string(), setting])
    .collect();
    NodeProcess::start(dir, &[], name, address, seeds, &settings)
}

#[test]
fn nodes_form_detect_failures_and_rejoin() {
    let dir = tempfile::tempdir().unwrap();
    let (a_address, b_address, c_address) = (free_address(), free_address(), free_address());
    let mut a = start(dir.path(), "alpha", &a_address, &[]);
    let mut b = start(dir.path(), "bravo", &b_address, &[&a_address]);
    // Charlie knows only Bravo; it meets Alpha through Bravo.
    let mut c = start(dir.path(), "charlie", &c_address, &[&b_address]);
    let full = "cluster view: 3 members [alpha, bravo, charlie]";
    for node in [&mut a, &mut b, &mut c] {
        node.wait_for(&[full]);
    }

    // A stopped node is declared down within the failure timeout (plus one heartbeat).
    c.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    a.wait_for(&["member down", "member=charlie"]);
    b.wait_for(&["member down", "member=charlie"]);
    let detected = stopped.elapsed();
    assert!(
        detected <= Duration::from_millis(FAILURE_TIMEOUT_MS + 2 * HEARTBEAT_MS + 1_000),
        "declared down after {detected:?}"
    );
    assert!(
        detected >= Duration::from_millis(FAILURE_TIMEOUT_MS - HEARTBEAT_MS),
        "too eager: {detected:?}"
    );
    a.wait_for(&["cluster view: 2 members [alpha, bravo]"]);

    // Resumed, it answers again and is back.
    c.signal(libc::SIGCONT);
    a.wait_for(&[full]);
    c.wait_for(&[full]);

    // Killed outright, it leaves; restarted on its address, it rejoins by itself.
    b.signal(libc::SIGKILL);
    a.wait_for(&["cluster view: 2 members [alpha, charlie]"]);
    c.wait_for(&["cluster view: 2 members [alpha, charlie]"]);
    let (b_name, b_seed) = (b.name.clone(), b.address.clone());
    drop(b);
    let mut b = start(dir.path(), &b_name, &b_seed, &[&a_address]);
    b.wait_for(&[full]);
    a.wait_for(&[full]);
    c.wait_for(&[full]);

    // A node that is told to stop leaves cleanly: the others see it go at once, not after
    // the failure timeout.
    a.signal(libc::SIGTERM);
    a.wait_for(&["stopped", "node=alpha"]);
    let left = c.wait_for(&["cluster view: 2 members [bravo, charlie]"]);
    assert!(
        left < Duration::from_millis(FAILURE_TIMEOUT_MS),
        "took {left:?}: seen as a failure, not a departure"
    );
}

#[test]
fn a_node_refuses_to_listen_beyond_loopback_without_a_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let output = support::storecast(dir.path())
        .args(["node", "--name", "lonely", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without a cluster cookie"),
        "{stderr}"
    );

    let output = support::storecast(dir.path())
        .args([
            "node",
            "--listen",
            "127.0.0.1:0",
            "--roles",
            "models,cooking",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown role `cooking`"));
}

#[test]
fn plain_tcp_beyond_loopback_warns_once_and_require_tls_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = support::storecast(dir.path())
        .args(["node", "--name", "strict", "--listen", "127.0.0.1:0"])
        .args(["--set", "cluster.require_tls=true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cluster.require_tls is set but TLS is not configured"),
        "{stderr}"
    );

    let port = free_address().rsplit_once(':').unwrap().1.to_string();
    let settings: Vec<String> = ["cluster.cookie=open-cookie", "cluster.roles=gateway"]
        .into_iter()
        .flat_map(|setting| ["--set".to_string(), setting.to_string()])
        .collect();
    let mut open = NodeProcess::start(
        dir.path(),
        &[],
        "open",
        &format!("0.0.0.0:{port}"),
        &[],
        &settings,
    );
    open.wait_for(&["node started"]);
    let warnings = open
        .log_so_far()
        .iter()
        .filter(|line| line.contains("listens beyond loopback without TLS"))
        .count();
    assert_eq!(warnings, 1, "{}", open.log_so_far().join("\n"));
}

#[test]
fn idle_sockets_never_keep_peers_out_and_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str, address: &str, seeds: &[&str]| {
        let settings: Vec<String> = [
            format!("cluster.heartbeat_ms={HEARTBEAT_MS}"),
            format!("cluster.failure_timeout_ms={FAILURE_TIMEOUT_MS}"),
            "cluster.roles=gateway".to_string(),
            "cluster.handshake_timeout_ms=1500".to_string(),
        ]
        .into_iter()
        .flat_map(|setting| ["--set".to_string(), setting])
        .collect();
        NodeProcess::start(dir.path(), &[], name, address, seeds, &settings)
    };
    let (a_address, b_address, c_address) = (free_address(), free_address(), free_address());
    let mut a = start("alpha", &a_address, &[]);
    a.wait_for(&["cluster view: 1 members [alpha]"]);

    // Sockets that never say who they are, opened before a peer comes and while one joins.
    let mut idle = idle_sockets(&a_address, 16);
    let began = Instant::now();
    let mut b = start("bravo", &b_address, &[&a_address]);
    b.wait_for(&["cluster view: 2 members [alpha, bravo]"]);
    let joined = began.elapsed();
    let mut c = start("charlie", &c_address, &[&a_address]);
    idle.extend(idle_sockets(&a_address, 16));
    let began = Instant::now();
    c.wait_for(&["cluster view: 3 members [alpha, bravo, charlie]"]);
    let joined_later = began.elapsed();
    for took in [joined, joined_later] {
        assert!(took < Duration::from_secs(10), "joined after {took:?}");
    }
    // An unauthenticated session is closed once its handshake time is up.
    for socket in &mut idle {
        assert!(
            closed_by_peer(socket, Duration::from_secs(10)),
            "an idle socket stays open"
        );
    }
    // Nobody was declared down meanwhile.
    assert!(!a.logged("member down"), "a member was declared down");
}

/// A node with another `cluster.cookie` is refused, and both ends say why; the others go on
/// forming their cluster.
#[test]
fn a_node_with_another_cookie_is_refused_and_told_why() {
    let dir = tempfile::tempdir().unwrap();
    let with_cookie = |name: &str, address: &str, seeds: &[&str], cookie: &str| {
        let settings: Vec<String> = [
            format!("cluster.heartbeat_ms={HEARTBEAT_MS}"),
            format!("cluster.failure_timeout_ms={FAILURE_TIMEOUT_MS}"),
            "cluster.reconnect_max_ms=1000".to_string(),
            "cluster.roles=gateway".to_string(),
            format!("cluster.cookie={cookie}"),
        ]
        .into_iter()
        .flat_map(|setting| ["--set".to_string(), setting])
        .collect();
        NodeProcess::start(dir.path(), &[], name, address, seeds, &settings)
    };
    let (a_address, b_address, s_address) = (free_address(), free_address(), free_address());
    let mut alpha = with_cookie("alpha", &a_address, &[], "the-cluster-cookie");
    alpha.wait_for(&["cluster view: 1 members [alpha]"]);
    let mut stranger = with_cookie("stranger", &s_address, &[&a_address], "another-cookie");
    stranger.wait_for(&["cannot reach", &a_address, "cluster.cookie differs"]);
    alpha.wait_for(&["closed before it authenticated", "cluster.cookie differs"]);
    // A node with the right cookie still joins; the stranger never does.
    let mut bravo = with_cookie("bravo", &b_address, &[&a_address], "the-cluster-cookie");
    bravo.wait_for(&["cluster view: 2 members [alpha, bravo]"]);
    alpha.wait_for(&["cluster view: 2 members [alpha, bravo]"]);
    for node in [&mut alpha, &mut bravo] {
        assert!(
            !node
                .log_so_far()
                .iter()
                .any(|line| line.contains("member up member=stranger")),
            "{} let the stranger in",
            node.name
        );
    }
    assert!(
        !stranger
            .log_so_far()
            .iter()
            .any(|line| line.contains("member up")),
        "the stranger joined"
    );
}
