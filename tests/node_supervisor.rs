//! The node supervisor in-process: a role actor that stops is started again (with backoff),
//! so the node keeps its roles; stopping the node hands the scheduler's lease over.

mod support;

use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, pg};
use storecast::actors::{forecaster, model_host, scheduler};
use storecast::cli::node::{node_services, node_settings};
use storecast::config::Config;
use storecast::store::Database;
use storecast::store::SCHEDULER_LEASE;
use support::node::PATIENCE;

/// The only member of a process group, once it has one that is not `old`.
async fn member_other_than(group: &str, old: Option<&ActorCell>) -> ActorCell {
    let started = Instant::now();
    loop {
        let members = pg::get_members(&group.to_string());
        if let Some(member) = members
            .into_iter()
            .find(|member| old.is_none_or(|old| old.get_id() != member.get_id()))
        {
            return member;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "no new member of {group} within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_role_actors_come_back_and_stopping_hands_the_lease_over() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}?mode=rwc", dir.path().join("node.db").display());
    let mut config = Config::defaults().unwrap();
    config.database.url = url.clone();
    config.cluster.name = "solo".to_string();
    config.cluster.listen = "127.0.0.1:0".to_string();
    config.gateway.listen = "127.0.0.1:0".to_string();
    config.admin.listen = "127.0.0.1:0".to_string();
    config.scheduler.train_all_at = String::new();
    let mut settings = node_settings(&config, 1).unwrap();
    node_services(&config, &mut settings).await.unwrap();
    let (node, handle) = Actor::spawn(None, storecast::actors::node::NodeSupervisor, settings)
        .await
        .unwrap();

    for group in [
        scheduler::GROUP.to_string(),
        forecaster::GROUP.to_string(),
        model_host::group("solo"),
    ] {
        let first = member_other_than(&group, None).await;
        first.stop(Some("test: role stopped".to_string()));
        let second = member_other_than(&group, Some(&first)).await;
        assert_ne!(first.get_id(), second.get_id(), "{group}");
    }

    // The restarted scheduler leads (it is alone) and holds the lease ...
    let database = Database::connect(&support::database_config(&url))
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let lease = database.lease(SCHEDULER_LEASE).await.unwrap();
        if let Some((holder, _, true)) = &lease {
            assert!(holder.starts_with("solo#"), "{holder}");
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the scheduler never took its lease: {lease:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and hands it over when the node stops, without waiting for it to expire.
    node.stop(Some("test done".to_string()));
    handle.await.unwrap();
    assert!(
        database
            .acquire_lease(SCHEDULER_LEASE, "someone-else", Duration::from_secs(60))
            .await
            .unwrap()
            .is_some(),
        "the lease is free once the node stopped"
    );
}
