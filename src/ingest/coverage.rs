//! Whether every partition of the sales topic has a consumer, and when to make the group
//! start over (pure: the ingest actor feeds it what it sees).
//!
//! A consumer group is supposed to give every partition to one live member. The test broker
//! (tansu 0.6.0) can leave partitions with a member that died, for good (see
//! `tests/ingest_rebalance.rs`); a Kafka broker has had bugs of its kind too. So each ingest
//! node looks every few seconds: the topic's partitions, each one's lag (high watermark
//! minus the group's committed offset), and the partitions the live ingest nodes of the
//! cluster say they consume. A partition no live node consumes is *unassigned*; one that is
//! unassigned and has messages waiting is *stalled*. Stalled partitions that stay stalled
//! past a bound make the node leave the group and join again, which starts a new generation
//! whose assignment covers every live member. Nodes act one after another (by rank, one
//! session timeout apart), so one rejoin usually heals the group for all.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// One partition of the topic, as the group stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    /// Messages after the group's committed offset (from the low watermark when nothing is
    /// committed).
    pub lag: i64,
}

/// What one look found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Partitions no live ingest node consumes.
    pub unassigned: Vec<i32>,
    /// Unassigned partitions with messages waiting, and since when (the longest).
    pub stalled: Vec<i32>,
    pub stalled_for: Duration,
    /// Time to leave the group and join again.
    pub rejoin: bool,
}

/// The stalls seen so far, across looks.
#[derive(Debug, Default)]
pub struct Coverage {
    /// When each stalled partition was first seen stalled (since the last rejoin).
    stalled_since: BTreeMap<i32, Instant>,
}

impl Coverage {
    /// Judges one look: the topic's partitions with their lag, the partitions the live
    /// ingest nodes consume, and how long this node waits before it makes the group start
    /// over (`patience`, already offset by its rank).
    pub fn look(
        &mut self,
        now: Instant,
        partitions: &[PartitionLag],
        consumed: &BTreeSet<i32>,
        patience: Duration,
    ) -> Verdict {
        let unassigned: Vec<PartitionLag> = partitions
            .iter()
            .filter(|partition| !consumed.contains(&partition.partition))
            .copied()
            .collect();
        let stalled: Vec<i32> = unassigned
            .iter()
            .filter(|partition| partition.lag > 0)
            .map(|partition| partition.partition)
            .collect();
        self.stalled_since
            .retain(|partition, _| stalled.contains(partition));
        for partition in &stalled {
            self.stalled_since.entry(*partition).or_insert(now);
        }
        let stalled_for = self
            .stalled_since
            .values()
            .map(|since| now.saturating_duration_since(*since))
            .max()
            .unwrap_or_default();
        let rejoin = !stalled.is_empty() && stalled_for >= patience;
        if rejoin {
            // The next rejoin waits for a whole new stall.
            self.stalled_since.clear();
        }
        Verdict {
            unassigned: unassigned
                .iter()
                .map(|partition| partition.partition)
                .collect(),
            stalled,
            stalled_for,
            rejoin,
        }
    }
}

/// How long the node ranked `rank` (0 = first by name among the live ingest nodes) lets
/// partitions stay stalled before it rejoins: two session timeouts (a dead member's session
/// must expire first, and the broker gets one to rebalance by itself), plus one per rank.
pub fn patience(session_timeout: Duration, rank: usize) -> Duration {
    session_timeout * (2 + rank as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lags(lags: &[(i32, i64)]) -> Vec<PartitionLag> {
        lags.iter()
            .map(|(partition, lag)| PartitionLag {
                partition: *partition,
                lag: *lag,
            })
            .collect()
    }

    #[test]
    fn a_partition_without_a_consumer_and_with_lag_leads_to_a_rejoin_after_the_patience() {
        let mut coverage = Coverage::default();
        let start = Instant::now();
        let consumed: BTreeSet<i32> = [0, 1].into();
        let partitions = lags(&[(0, 5), (1, 0), (2, 7), (3, 0)]);
        let patience = Duration::from_secs(20);

        let first = coverage.look(start, &partitions, &consumed, patience);
        assert_eq!(first.unassigned, vec![2, 3]);
        assert_eq!(first.stalled, vec![2]);
        assert!(!first.rejoin);

        let later = coverage.look(
            start + Duration::from_secs(19),
            &partitions,
            &consumed,
            patience,
        );
        assert_eq!(later.stalled_for, Duration::from_secs(19));
        assert!(!later.rejoin);

        let due = coverage.look(
            start + Duration::from_secs(20),
            &partitions,
            &consumed,
            patience,
        );
        assert!(due.rejoin);
        // After a rejoin the clock starts again.
        let after = coverage.look(
            start + Duration::from_secs(21),
            &partitions,
            &consumed,
            patience,
        );
        assert!(!after.rejoin);
        assert_eq!(after.stalled_for, Duration::ZERO);
    }

    #[test]
    fn a_stall_that_ends_resets_its_clock() {
        let mut coverage = Coverage::default();
        let start = Instant::now();
        let patience = Duration::from_secs(10);
        let none: BTreeSet<i32> = BTreeSet::new();
        coverage.look(start, &lags(&[(0, 3)]), &none, patience);
        // Consumed again: no stall.
        let covered = coverage.look(
            start + Duration::from_secs(5),
            &lags(&[(0, 3)]),
            &[0].into(),
            patience,
        );
        assert!(covered.stalled.is_empty() && covered.unassigned.is_empty());
        let again = coverage.look(
            start + Duration::from_secs(12),
            &lags(&[(0, 3)]),
            &none,
            patience,
        );
        assert!(!again.rejoin, "{again:?}");
        // Unassigned without lag is no stall.
        let idle = coverage.look(
            start + Duration::from_secs(30),
            &lags(&[(0, 0)]),
            &none,
            patience,
        );
        assert_eq!(idle.unassigned, vec![0]);
        assert!(idle.stalled.is_empty() && !idle.rejoin);
    }

    #[test]
    fn nodes_wait_longer_by_rank() {
        let session = Duration::from_secs(10);
        assert_eq!(patience(session, 0), Duration::from_secs(20));
        assert_eq!(patience(session, 2), Duration::from_secs(40));
    }
}
