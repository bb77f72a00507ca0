//! Placement: which live model host owns each series. A pure function of (series keys,
//! live hosts), so every node computes the same owners from the same member view.
//!
//! Rendezvous (highest-random-weight) hashing ranks the hosts for each series by a stable
//! hash of (series, host). Plain rendezvous moves only the series a joining or leaving host
//! gains or loses, but its loads are as uneven as random assignment: with 1,115 series over 16
//! hosts the busiest host carries about 30% more than the mean. storecast therefore bounds the
//! load: series are assigned in a fixed order (by their own hash), each to its best-ranked
//! host that still has room under `ceil(load_factor * mean)`. The busiest host is then at most
//! `load_factor` above the mean (10% by default), and a join or leave moves the series the
//! host gains or loses plus a handful pushed along by the bound (under 2% of the series in the
//! property tests below). Exact minimal movement and a hard load bound cannot both hold for
//! arbitrary host sets; a move costs only a model reload from the registry, an unbalanced
//! host slows every train-all.

use std::collections::HashMap;

/// The default bound on the busiest host, relative to the mean load.
pub const DEFAULT_LOAD_FACTOR: f64 = 1.10;

/// A series: one product of one store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub store: u32,
    pub product: String,
}

impl SeriesKey {
    pub fn new(store: u32, product: impl Into<String>) -> Self {
        Self {
            store,
            product: product.into(),
        }
    }

    fn hash(&self) -> u64 {
        mix(fnv1a(
            self.product.as_bytes(),
            fnv1a(&self.store.to_le_bytes(), FNV_OFFSET),
        ))
    }
}

/// Owners of a set of series over a set of hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Hosts, sorted.
    hosts: Vec<String>,
    owners: HashMap<SeriesKey, usize>,
}

impl Placement {
    /// Places `keys` over `hosts` with the busiest host at most `load_factor` times the mean.
    /// The result does not depend on the order of either list, and duplicates are ignored.
    pub fn compute(keys: &[SeriesKey], hosts: &[String], load_factor: f64) -> Self {
        let mut hosts: Vec<String> = hosts.to_vec();
        hosts.sort();
        hosts.dedup();
        let mut keys: Vec<&SeriesKey> = keys.iter().collect();
        keys.sort();
        keys.dedup();
        let mut owners = HashMap::with_capacity(keys.len());
        if hosts.is_empty() {
            return Self { hosts, owners };
        }
        let host_hashes: Vec<u64> = hosts
            .iter()
            .map(|host| fnv1a(host.as_bytes(), FNV_OFFSET))
            .collect();
        let capacity = ((load_factor.max(1.0) * keys.len() as f64 / hosts.len() as f64).ceil()
            as usize)
            .max(1);
        let mut loads = vec![0usize; hosts.len()];

        // A fixed order that every node shares: by the series' own hash (ties by key).
        let mut ordered: Vec<(u64, &SeriesKey)> =
            keys.iter().map(|key| (key.hash(), *key)).collect();
        ordered.sort();
        let mut ranking: Vec<(u64, usize)> = Vec::with_capacity(hosts.len());
        for (key_hash, key) in ordered {
            ranking.clear();
            ranking.extend(
                host_hashes
                    .iter()
                    .enumerate()
                    .map(|(index, host)| (score(key_hash, *host), index)),
            );
            // Highest score first; the host index (sorted names) breaks exact ties.
            ranking.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let chosen = ranking
                .iter()
                .map(|&(_, index)| index)
                .find(|&index| loads[index] < capacity)
                .unwrap_or(ranking[0].1);
            loads[chosen] += 1;
            owners.insert(key.clone(), chosen);
        }
        Self { hosts, owners }
    }

    /// The owner of `key`: its place in the table, or for a series the table does not know
    /// (new since the table was computed) its best-ranked host.
    pub fn owner(&self, key: &SeriesKey) -> Option<&str> {
        match self.owners.get(key) {
            Some(&index) => Some(self.hosts[index].as_str()),
            None => best_host(key, &self.hosts),
        }
    }

    /// How many series each host owns, by host.
    pub fn loads(&self) -> HashMap<&str, usize> {
        let mut loads: HashMap<&str, usize> =
            self.hosts.iter().map(|host| (host.as_str(), 0)).collect();
        for &index in self.owners.values() {
            if let Some(load) = loads.get_mut(self.hosts[index].as_str()) {
                *load += 1;
            }
        }
        loads
    }

    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }
}

/// Plain rendezvous: the best-ranked host for `key`, ignoring loads.
pub fn best_host<'a>(key: &SeriesKey, hosts: &'a [String]) -> Option<&'a str> {
    let key_hash = key.hash();
    hosts
        .iter()
        .map(|host| (score(key_hash, fnv1a(host.as_bytes(), FNV_OFFSET)), host))
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(a.1)))
        .map(|(_, host)| host.as_str())
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`, continuing from `state`: stable on every platform and version.
fn fnv1a(bytes: &[u8], state: u64) -> u64 {
    bytes.iter().fold(state, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// SplitMix64's finaliser: spreads FNV's weak low bits over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The rendezvous weight of a host for a series.
fn score(key_hash: u64, host_hash: u64) -> u64 {
    mix(key_hash ^ mix(host_hash))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rossmann_keys() -> Vec<SeriesKey> {
        (1..=1115)
            .map(|store| SeriesKey::new(store, "product_A"))
            .collect()
    }

    fn hosts(names: &[u32]) -> Vec<String> {
        names
            .iter()
            .map(|name| format!("node-{name}:7000"))
            .collect()
    }

    fn unique_names(count: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u32>> {
        proptest::collection::hash_set(any::<u32>(), count)
            .prop_map(|set| set.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn every_node_computes_the_same_owners(names in unique_names(2..17)) {
            let hosts = hosts(&names);
            let keys = rossmann_keys();
            let placement = Placement::compute(&keys, &hosts, DEFAULT_LOAD_FACTOR);
            let mut reversed_hosts = hosts.clone();
            reversed_hosts.reverse();
            let mut reversed_keys = keys.clone();
            reversed_keys.reverse();
            let elsewhere = Placement::compute(&reversed_keys, &reversed_hosts, DEFAULT_LOAD_FACTOR);
            prop_assert_eq!(&placement, &elsewhere);
            for key in &keys {
                prop_assert!(hosts.iter().any(|host| Some(host.as_str()) == placement.owner(key)));
            }
        }

        #[test]
        fn the_busiest_host_is_within_15_percent_of_the_mean(names in unique_names(2..17)) {
            let hosts = hosts(&names);
            let placement = Placement::compute(&rossmann_keys(), &hosts, DEFAULT_LOAD_FACTOR);
            let mean = 1115.0 / hosts.len() as f64;
            let busiest = *placement.loads().values().max().unwrap() as f64;
            prop_assert!(busiest <= 1.15 * mean, "busiest {} vs mean {:.1}", busiest, mean);
            prop_assert_eq!(placement.loads().values().sum::<usize>(), 1115);
        }

        #[test]
        fn a_join_or_leave_moves_what_the_host_gains_or_loses_and_little_else(
            names in unique_names(3..17),
        ) {
            let keys = rossmann_keys();
            let all = hosts(&names);
            let (without, changed) = (&all[..all.len() - 1], &all[all.len() - 1]);
            let before = Placement::compute(&keys, without, DEFAULT_LOAD_FACTOR);
            let after = Placement::compute(&keys, &all, DEFAULT_LOAD_FACTOR);
            // Joining: moved series go to the new host, apart from a few pushed by the bound.
            let moved: Vec<&SeriesKey> = keys.iter().filter(|key| before.owner(key) != after.owner(key)).collect();
            let gained = moved.iter().filter(|key| after.owner(key) == Some(changed.as_str())).count();
            prop_assert!(gained > 0);
            prop_assert!(moved.len() - gained <= keys.len() / 50, "{} moved besides {} gained", moved.len() - gained, gained);
            // Leaving: the host's series move, and only a few others.
            let lost: Vec<&SeriesKey> = keys.iter().filter(|key| after.owner(key) == Some(changed.as_str())).collect();
            let moved_back: Vec<&SeriesKey> = keys.iter().filter(|key| after.owner(key) != before.owner(key)).collect();
            prop_assert!(lost.iter().all(|key| moved_back.contains(key)));
            prop_assert!(moved_back.len() - lost.len() <= keys.len() / 50);
        }
    }

    #[test]
    fn plain_rendezvous_is_stable_for_unknown_series() {
        let hosts = hosts(&[1, 2, 3]);
        let placement = Placement::compute(&rossmann_keys(), &hosts, DEFAULT_LOAD_FACTOR);
        let newcomer = SeriesKey::new(5000, "product_B");
        let owner = placement.owner(&newcomer).unwrap();
        assert_eq!(Some(owner), best_host(&newcomer, &hosts));
        // With one host fewer, an unaffected newcomer keeps its owner.
        let remaining: Vec<String> = hosts
            .iter()
            .filter(|host| host.as_str() != owner)
            .cloned()
            .collect();
        let other = hosts.iter().find(|host| host.as_str() != owner).unwrap();
        let survivors = vec![owner.to_string(), other.clone()];
        assert_eq!(best_host(&newcomer, &survivors), Some(owner));
        assert!(best_host(&newcomer, &remaining).is_some());
    }

    #[test]
    fn no_hosts_no_owner() {
        let placement = Placement::compute(&rossmann_keys(), &[], DEFAULT_LOAD_FACTOR);
        assert_eq!(placement.owner(&SeriesKey::new(1, "product_A")), None);
    }

    #[test]
    fn hashes_never_change() {
        // Placement must agree across nodes and versions: pin the hash.
        // The value a node of an earlier version computes: a change here moves series
        // between nodes of different versions during a rolling upgrade.
        assert_eq!(SeriesKey::new(1, "product_A").hash(), 0xfd0d_3ded_a5b6_d9f6);
        assert_eq!(fnv1a(b"a", FNV_OFFSET), 0xaf63_dc4c_8601_ec8c);
    }
}
