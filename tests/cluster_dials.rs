//! Dialling never holds a node up: seeds that accept and never answer, and closed ports,
//! beside real peers, in plain TCP and over TLS. For 30 seconds no peer is declared down and
//! readiness stays 200; a dial to a silent address is closed once its handshake time is up
//! (so connections to it do not pile up); and the address of a peer that went away for good
//! is forgotten after a bounded number of failed dials.

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::http::get;
use support::node::{NodeProcess, free_address};
use support::tls::make_authority;

/// How long readiness is watched.
const WATCH: Duration = Duration::from_secs(30);

/// A port that accepts connections and never says a word; it counts them.
struct BlackHole {
    address: String,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
}

impl BlackHole {
    fn new() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let hole = BlackHole {
            address: listener.local_addr().unwrap().to_string(),
            accepted: Arc::default(),
            open: Arc::default(),
            most_open: Arc::default(),
        };
        let (accepted, open, most_open) = (
            hole.accepted.clone(),
            hole.open.clone(),
            hole.most_open.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                accepted.fetch_add(1, Ordering::SeqCst);
                let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                most_open.fetch_max(now_open, Ordering::SeqCst);
                let open = open.clone();
                // Read (and ignore) until the dialler closes.
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 4096];
                    while matches!(stream.read(&mut buffer), Ok(read) if read > 0) {}
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        hole
    }
}

fn watch_dials(tls: bool) {
    let test = if tls { "dials_tls" } else { "dials_plain" };
    let Some(url) = support::postgres::fresh_database(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let names = ["alpha", "bravo", "charlie"];
    if tls {
        make_authority(dir.path(), "cluster-ca", &names);
    }
    let addresses: Vec<String> = names.iter().map(|_| free_address()).collect();
    let admins: Vec<String> = names.iter().map(|_| free_address()).collect();
    let holes = [BlackHole::new(), BlackHole::new()];
    let closed = [free_address(), free_address()];
    // Silent and closed addresses first: a node that dialled in turn would meet them first.
    let mut seeds: Vec<&str> = holes.iter().map(|hole| hole.address.as_str()).collect();
    seeds.extend(closed.iter().map(String::as_str));
    seeds.extend([addresses[0].as_str(), addresses[1].as_str()]);

    let start = |index: usize, seeds: &[&str]| {
        let mut settings = vec![
            "cluster.heartbeat_ms=200".to_string(),
            "cluster.failure_timeout_ms=2500".to_string(),
            "cluster.reconnect_min_ms=200".to_string(),
            "cluster.reconnect_max_ms=1000".to_string(),
            "cluster.handshake_timeout_ms=1000".to_string(),
            "cluster.roles=models".to_string(),
            "scheduler.train_all_at=".to_string(),
            format!("admin.listen={}", admins[index]),
        ];
        if tls {
            let path = |file: String| dir.path().join(file).display().to_string();
            settings.extend([
                format!("cluster.tls_cert={}", path(format!("{}.pem", names[index]))),
                format!("cluster.tls_key={}", path(format!("{}.key", names[index]))),
                format!("cluster.tls_ca={}", path("cluster-ca.pem".to_string())),
            ]);
        }
        let settings: Vec<String> = settings
            .into_iter()
            .flat_map(|setting| ["--set".to_string(), setting])
            .collect();
        let global = vec!["--database-url".to_string(), url.clone()];
        NodeProcess::start(
            dir.path(),
            &global,
            names[index],
            &addresses[index],
            seeds,
            &settings,
        )
    };
    let mut alpha = start(0, &seeds);
    let mut bravo = start(1, &seeds);
    // Charlie is in nobody's seed list: once gone, only the others' memory of it remains.
    let mut charlie = start(2, &[&addresses[0]]);
    let full = "cluster view: 3 members [alpha, bravo, charlie]";
    for node in [&mut alpha, &mut bravo, &mut charlie] {
        node.wait_for(&[full]);
    }
    charlie.signal(libc::SIGKILL);

    let began = Instant::now();
    let mut answers = 0;
    while began.elapsed() < WATCH {
        for admin in &admins[..2] {
            let ready = get(admin, "/health/readyz");
            assert_eq!(
                ready.status,
                200,
                "{admin} not ready after {:?}: {}",
                began.elapsed(),
                ready.body
            );
            answers += 1;
        }
        // The watch's pace, not a synchronisation: readiness is sampled 4 times a second.
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(answers > 100);
    for node in [&mut alpha, &mut bravo] {
        // Charlie is gone; alpha and bravo never doubt each other.
        node.wait_for(&["cluster view: 2 members [alpha, bravo]"]);
        let log = node.log_so_far().to_vec();
        for other in ["alpha", "bravo"] {
            let doubted = log.iter().any(|line| {
                line.contains("member down") && line.contains(&format!("member={other} "))
            });
            assert!(!doubted, "{other} was declared down:\n{}", log.join("\n"));
        }
        // Charlie's address is given up after a bounded number of tries.
        let forgotten = |line: &String| line.contains("forgetting") && line.contains(&addresses[2]);
        if !node.log_so_far().iter().any(forgotten) {
            node.wait_for(&["forgetting", &addresses[2]]);
        }
    }
    for hole in &holes {
        let (accepted, most_open) = (
            hole.accepted.load(Ordering::SeqCst),
            hole.most_open.load(Ordering::SeqCst),
        );
        assert!(
            accepted >= 4,
            "the silent seed was dialled {accepted} times"
        );
        // One dial in flight per node at a time, each closed when its time is up.
        assert!(
            most_open <= 4,
            "{most_open} connections to a silent seed were open at once ({accepted} dialled)"
        );
    }
}

#[test]
fn silent_and_closed_seeds_never_hold_plain_tcp_nodes_up() {
    watch_dials(false);
}

#[test]
fn silent_and_closed_seeds_never_hold_tls_nodes_up() {
    watch_dials(true);
}
