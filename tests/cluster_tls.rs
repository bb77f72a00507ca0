//! Nodes over mutual TLS: three nodes form one cluster from a partial seed list (the
//! membership actors dial the peers they learn of, over TLS), and a node without a
//! certificate the CA signed is turned away.

mod support;

use std::path::Path;

use std::time::{Duration, Instant};

use support::node::{NodeProcess, closed_by_peer, free_address, idle_sockets};
use support::tls::make_authority;

fn settings(dir: &Path, cert: &str, ca: &str) -> Vec<String> {
    let path = |file: String| dir.join(file).display().to_string();
    [
        "cluster.heartbeat_ms=200".to_string(),
        "cluster.failure_timeout_ms=2500".to_string(),
        "cluster.reconnect_max_ms=1000".to_string(),
        "cluster.roles=gateway".to_string(),
        format!("cluster.tls_cert={}", path(format!("{cert}.pem"))),
        format!("cluster.tls_key={}", path(format!("{cert}.key"))),
        format!("cluster.tls_ca={}", path(format!("{ca}.pem"))),
    ]
    .into_iter()
    .flat_map(|setting| ["--set".to_string(), setting])
    .collect()
}

#[test]
fn nodes_form_over_tls_and_strangers_are_turned_away() {
    let dir = tempfile::tempdir().unwrap();
    make_authority(dir.path(), "cluster-ca", &["alpha", "bravo", "charlie"]);
    make_authority(dir.path(), "other-ca", &["stranger"]);

    let names = ["alpha", "bravo", "charlie"];
    let addresses: Vec<String> = names.iter().map(|_| free_address()).collect();
    let start = |index: usize, seeds: &[&str]| {
        NodeProcess::start(
            dir.path(),
            &[],
            names[index],
            &addresses[index],
            seeds,
            &settings(dir.path(), names[index], "cluster-ca"),
        )
    };
    // charlie knows only bravo, bravo only alpha: alpha and charlie find each other through
    // bravo's heartbeat answers, and dial over TLS.
    let mut nodes = vec![
        start(0, &[]),
        start(1, &[&addresses[0]]),
        start(2, &[&addresses[1]]),
    ];
    for node in &mut nodes {
        node.wait_for(&["cluster view: 3 members [alpha, bravo, charlie]"]);
    }

    // A node whose certificate another CA signed is refused by the TLS handshake.
    let stranger_address = free_address();
    let mut stranger = NodeProcess::start(
        dir.path(),
        &[],
        "stranger",
        &stranger_address,
        &[&addresses[0]],
        &settings(dir.path(), "stranger", "other-ca"),
    );
    stranger.wait_for(&["cannot reach", &addresses[0]]);
    nodes[0].wait_for(&["cluster connection refused: the TLS handshake failed"]);
    // And a plain-TCP node is refused too.
    let plain_address = free_address();
    let mut plain = NodeProcess::start(
        dir.path(),
        &[],
        "plain",
        &plain_address,
        &[&addresses[0]],
        &["--set".to_string(), "cluster.roles=gateway".to_string()],
    );
    plain.wait_for(&["node started"]);
    nodes[0].wait_for(&["cluster connection refused: the TLS handshake failed"]);
    // Neither ever joined: alpha's views, in order, go from three members to charlie
    // leaving, never through a stranger arriving.
    nodes[2].signal(libc::SIGTERM);
    nodes[0].wait_for(&["cluster view: 2 members [alpha, bravo]"]);
    for stranger_name in ["stranger", "plain"] {
        assert!(
            !nodes[0].logged(&format!("member up member={stranger_name}")),
            "{stranger_name} joined"
        );
    }
    drop((stranger, plain));
}

/// Over TLS too, a node whose certificate the CA signed but whose `cluster.cookie` differs is
/// refused after the TLS handshake, and both ends say why (once the handshake time is up: a
/// refused TLS session leaves its socket open).
#[test]
fn a_node_with_another_cookie_is_refused_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    make_authority(dir.path(), "cluster-ca", &["alpha", "bravo"]);
    let (a_address, b_address) = (free_address(), free_address());
    let start = |name: &str, address: &str, seeds: &[&str], cookie: &str| {
        let mut settings = settings(dir.path(), name, "cluster-ca");
        settings.extend(["--set".to_string(), format!("cluster.cookie={cookie}")]);
        NodeProcess::start(dir.path(), &[], name, address, seeds, &settings)
    };
    let mut alpha = start("alpha", &a_address, &[], "the-cluster-cookie");
    alpha.wait_for(&["cluster view: 1 members [alpha]"]);
    let mut bravo = start("bravo", &b_address, &[&a_address], "another-cookie");
    bravo.wait_for(&["cannot reach", &a_address, "cluster.cookie differs"]);
    alpha.wait_for(&[
        "not authenticated in time after its TLS handshake",
        "cluster.cookie differs",
    ]);
    assert!(
        !alpha
            .log_so_far()
            .iter()
            .any(|line| line.contains("TLS handshake failed") || line.contains("member up")),
        "the TLS handshake is not what refused bravo, and bravo never joined"
    );
}

#[test]
fn idle_sockets_never_keep_peers_out() {
    let dir = tempfile::tempdir().unwrap();
    make_authority(dir.path(), "cluster-ca", &["alpha", "bravo", "charlie"]);
    let names = ["alpha", "bravo", "charlie"];
    let addresses: Vec<String> = names.iter().map(|_| free_address()).collect();
    let start = |index: usize, seeds: &[&str]| {
        let mut settings = settings(dir.path(), names[index], "cluster-ca");
        settings.extend([
            "--set".to_string(),
            "cluster.handshake_timeout_ms=1500".to_string(),
        ]);
        NodeProcess::start(
            dir.path(),
            &[],
            names[index],
            &addresses[index],
            seeds,
            &settings,
        )
    };
    let mut alpha = start(0, &[]);
    alpha.wait_for(&["cluster view: 1 members [alpha]"]);

    // Sockets that never start the TLS handshake, opened before a peer comes...
    let mut idle = idle_sockets(&addresses[0], 16);
    let began = Instant::now();
    let mut bravo = start(1, &[&addresses[0]]);
    bravo.wait_for(&["cluster view: 2 members [alpha, bravo]"]);
    let joined = began.elapsed();
    // ...and while one is joining.
    let mut charlie = start(2, &[&addresses[0]]);
    idle.extend(idle_sockets(&addresses[0], 16));
    let began = Instant::now();
    charlie.wait_for(&["cluster view: 3 members [alpha, bravo, charlie]"]);
    let joined_later = began.elapsed();
    alpha.wait_for(&["cluster view: 3 members [alpha, bravo, charlie]"]);
    // A join takes well under a second on loopback; a node that waited for one idle
    // handshake would wait forever.
    for took in [joined, joined_later] {
        assert!(took < Duration::from_secs(10), "joined after {took:?}");
    }
    // The node closes each idle socket once its handshake time is up.
    for socket in &mut idle {
        assert!(
            closed_by_peer(socket, Duration::from_secs(10)),
            "an idle socket stays open"
        );
    }
    drop((bravo, charlie));
}
