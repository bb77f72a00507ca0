//! Nodes over mutual TLS: three nodes form one cluster from a partial seed list (the
//! membership actors dial the peers they learn of, over TLS), and a node without a
//! certificate the CA signed is turned away.

mod support;

use std::path::Path;
use std::process::Command;

use support::node::{NodeProcess, free_address};

/// Runs `openssl` with `args` in `dir`, failing loudly.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect(
            "the openssl command is needed to make test certificates (scripts/test installs it)",
        );
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA and a certificate it signs for `name`, valid for 127.0.0.1 as server and client.
fn make_authority(dir: &Path, ca: &str, nodes: &[&str]) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "30",
            "-subj",
            &format!("/CN={ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    std::fs::write(
        dir.join("node.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    for node in nodes {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={node}"),
                "-keyout",
                &format!("{node}.key"),
                "-out",
                &format!("{node}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{node}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "30",
                "-sha256",
                "-extfile",
                "node.ext",
                "-out",
                &format!("{node}.pem"),
            ],
        );
    }
}

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
    nodes[0].wait_for(&["Error establishing secure socket"]);
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
    nodes[0].wait_for(&["Error establishing secure socket"]);
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
