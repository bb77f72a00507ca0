//! A stopping node keeps its HTTP listeners (admin and gateway) answering for the stop notice
//! (`admin.stop_notice_ms`), readiness saying 503 "draining" all along, and closes them once
//! it ends: a load balancer polling readiness sees the node leave before connections are
//! refused. Two notices, so the time follows the setting.

mod support;

use std::time::{Duration, Instant};

use support::http::try_get;
use support::node::{NodeProcess, PATIENCE, free_address, set_arguments};

/// Between two readiness polls of a stopping node.
const POLL: Duration = Duration::from_millis(20);

/// What a stopping node's listener was seen doing.
#[derive(Default)]
struct Listener {
    /// When its readiness first said "draining", after the signal.
    draining_after: Option<Duration>,
    /// When a connection to it first failed, after the signal.
    closed_after: Option<Duration>,
}

/// Polls `/health/readyz` once: `Some(status, state)` when it answered, `None` when the
/// connection was refused or dropped.
fn readiness(address: &str) -> Option<(u16, String)> {
    let answer = try_get(address, "/health/readyz").ok()?;
    let state = answer.json()["state"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Some((answer.status, state))
}

fn stop_with_notice(test: &str, notice: Duration) {
    let Some(url) = support::postgres::fresh_database(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let gateway = free_address();
    let admin = free_address();
    let settings = [
        "cluster.roles=gateway,models".to_string(),
        format!("gateway.listen={gateway}"),
        format!("admin.listen={admin}"),
        format!("admin.stop_notice_ms={}", notice.as_millis()),
        "scheduler.train_all_at=".to_string(),
    ];
    let global = vec!["--database-url".to_string(), url];
    let mut node = NodeProcess::start(
        dir.path(),
        &global,
        test,
        &free_address(),
        &[],
        &set_arguments(settings.iter().map(String::as_str)),
    );
    node.wait_for(&["admin listening on", &admin]);
    node.wait_for(&["gateway listening on"]);
    let listeners = [admin.as_str(), gateway.as_str()];
    // Ready on both before the stop: its model host is in the view.
    let begun = Instant::now();
    while !listeners
        .iter()
        .all(|address| readiness(address).is_some_and(|(status, _)| status == 200))
    {
        assert!(begun.elapsed() < PATIENCE, "{test} never became ready");
        std::thread::sleep(POLL);
    }

    node.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let mut seen: [Listener; 2] = Default::default();
    while seen.iter().any(|listener| listener.closed_after.is_none()) {
        for (address, listener) in listeners.iter().zip(seen.iter_mut()) {
            if listener.closed_after.is_some() {
                continue;
            }
            match readiness(address) {
                None => listener.closed_after = Some(signalled.elapsed()),
                Some((503, state)) => {
                    assert!(state.starts_with("draining"), "{address}: {state}");
                    listener.draining_after.get_or_insert(signalled.elapsed());
                }
                Some((status, state)) => {
                    assert_eq!(status, 200, "{address}: {state}");
                    assert!(
                        listener.draining_after.is_none(),
                        "{address} was ready again after it said it drains"
                    );
                }
            }
        }
        assert!(
            signalled.elapsed() < notice + PATIENCE,
            "{test}: a listener still answers {:?} after the signal",
            signalled.elapsed()
        );
        std::thread::sleep(POLL);
    }
    for (address, listener) in listeners.iter().zip(&seen) {
        let draining = listener
            .draining_after
            .unwrap_or_else(|| panic!("{address} closed before it said it drains"));
        let closed = listener.closed_after.unwrap_or_default();
        assert!(
            closed >= notice,
            "{address} closed {closed:?} after the signal, before the notice of {notice:?} ended"
        );
        assert!(
            draining < Duration::from_secs(1),
            "{address} said it drains only {draining:?} after the signal"
        );
    }
    node.wait_for(&["answering HTTP as draining until the stop notice ends"]);
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            assert!(status.success(), "{test} exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "{test} did not exit");
        std::thread::sleep(POLL);
    }
}

#[test]
fn a_stopping_node_answers_as_draining_for_a_short_notice() {
    stop_with_notice("stop_notice_short", Duration::from_millis(1500));
}

#[test]
fn a_stopping_node_answers_as_draining_for_a_long_notice() {
    stop_with_notice("stop_notice_long", Duration::from_millis(4000));
}
