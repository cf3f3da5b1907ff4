//! Data-center aware selection.
//!
//! Owns [`DcAwareSelector`], the default selector: it spreads replicas over data centers,
//! preferring data centers other than the local one, and spreads load over the members of each
//! data center with a random starting offset.
//!
//! It must never select the local node, never return more or fewer members than
//! [`Consistency::required`], never select a member twice, never read anything but the
//! [`Topology`] it is given, never draw randomness other than from the caller's generator, and
//! never panic.

use rand_core::Rng;

use super::{
    Candidate, Consistency, Group, NodeSelector, SelectError, Topology, ensure_enough, index_below,
};

/// Spreads replicas over data centers, preferring those other than the local one.
///
/// The levels behave as follows (counts are those of [`Consistency::required`]):
///
/// - [`One`](Consistency::One), [`Two`](Consistency::Two), [`Three`](Consistency::Three) and
///   [`Quorum`](Consistency::Quorum) pick `n` other members. When at least `n` members live
///   outside the local data center, only remote data centers are used; otherwise every data
///   center is (the local one contributing its members other than the local node). The picks
///   go round-robin over those data centers, starting at a randomly chosen one, one member per
///   data center per round, skipping the data centers that run out: the picks are spread over
///   data centers as evenly as possible. The result lists each data center's picks together,
///   data centers in visiting order (so when `n` does not exceed the number of eligible data
///   centers, each pick is in a different one).
/// - [`LocalQuorum`](Consistency::LocalQuorum) picks only in the local data center,
///   [`EachQuorum`](Consistency::EachQuorum) picks its count in every data center (in data
///   center name order).
/// - [`All`](Consistency::All) returns every other member, ascending by id;
///   [`None`](Consistency::None) returns nothing.
///
/// Within one data center the members are taken consecutively (in id order, wrapping around)
/// from an offset drawn at random for each data center on each call, so that repeated
/// selections spread load over every member. A selection of `n` members over `d` data
/// centers costs `O(n + d log n)` and allocates nothing but the result.
///
/// ```
/// use cohort_core::{Candidate, Consistency, DcAwareSelector, NodeId, NodeSelector, Topology};
/// use rand_core::SeedableRng;
/// use rand_xoshiro::Xoshiro256PlusPlus;
///
/// let member = |name: &str, port: u16, dc: &str| {
///     let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
///     Candidate::new(NodeId::new(name, 1, addr), addr, dc)
/// };
/// let topology = Topology::new(
///     member("a", 7000, "eu"),
///     [member("b", 7001, "eu"), member("c", 7002, "eu"), member("d", 7003, "us")],
/// );
/// let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
/// let selector = DcAwareSelector::default();
///
/// // Only one member lives outside "eu", so `Two` also uses the local data center.
/// let two = selector.select(&topology, Consistency::Two, &mut rng)?;
/// assert_eq!(two.len(), 2);
/// assert!(two.iter().any(|m| m.data_center().as_str() == "us"));
///
/// // A local quorum of the three members of "eu" is the local node plus one other.
/// let local = selector.select(&topology, Consistency::LocalQuorum, &mut rng)?;
/// assert_eq!(local.len(), 1);
/// assert_eq!(local[0].data_center().as_str(), "eu");
/// # Ok::<(), cohort_core::SelectError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct DcAwareSelector;

impl NodeSelector for DcAwareSelector {
    fn select<'a>(
        &self,
        topology: &'a Topology,
        consistency: Consistency,
        rng: &mut dyn Rng,
    ) -> Result<Vec<&'a Candidate>, SelectError> {
        match consistency {
            Consistency::None => Ok(Vec::new()),
            Consistency::One | Consistency::Two | Consistency::Three | Consistency::Quorum => {
                select_n(topology, consistency.required(topology), rng)
            }
            Consistency::LocalQuorum => {
                let group = &topology.groups[topology.local_group];
                let count = topology.local_data_center_len() / 2;
                let mut out = Vec::with_capacity(count);
                take_window(topology, group, count, rng, &mut out);
                Ok(out)
            }
            Consistency::EachQuorum => {
                let mut out = Vec::with_capacity(consistency.required(topology));
                for group in &topology.groups {
                    take_window(topology, group, each_quorum_count(group), rng, &mut out);
                }
                Ok(out)
            }
            Consistency::All => Ok(all_others(topology)),
        }
    }
}

/// Every member but the local one, ascending by id.
pub(super) fn all_others(topology: &Topology) -> Vec<&Candidate> {
    let (before, rest) = topology.members.split_at(topology.local);
    let after = rest.get(1..).unwrap_or_default();
    let mut out = Vec::with_capacity(before.len() + after.len());
    out.extend(before.iter().chain(after));
    out
}

/// The number of other members [`Consistency::EachQuorum`] needs in `group`: a majority of the
/// data center, the local node counting as one in its own.
pub(super) fn each_quorum_count(group: &Group) -> usize {
    let len_with_local = group.others.len() + usize::from(group.local);
    if group.local {
        len_with_local / 2
    } else {
        len_with_local / 2 + 1
    }
}

/// Appends `count` members of `group` (clamped to its size) to `out`: consecutive in id order
/// from a random offset, wrapping around.
fn take_window<'a>(
    topology: &'a Topology,
    group: &'a Group,
    count: usize,
    rng: &mut dyn Rng,
    out: &mut Vec<&'a Candidate>,
) {
    let size = group.others.len();
    let count = count.min(size);
    if count == 0 {
        return;
    }
    let start = index_below(rng, size);
    // Two slices instead of a modulo per member: from the offset to the end, then from the
    // beginning.
    let (head, tail) = group.others.split_at(start);
    out.extend(
        tail.iter()
            .chain(head)
            .take(count)
            .map(|&i| &topology.members[i]),
    );
}

/// `n` other members, spread round-robin over the eligible data centers (see
/// [`DcAwareSelector`]).
///
/// The round-robin is computed rather than stepped through: after `t` full rounds a data
/// center of `s` eligible members has given `min(s, t)`; the last, partial round gives one more
/// to the first data centers (in visiting order) that still have members. Each data center's
/// share is then taken in one stretch, so the cost is `O(n + d log n)` with no allocation but
/// the result.
fn select_n<'a>(
    topology: &'a Topology,
    n: usize,
    rng: &mut dyn Rng,
) -> Result<Vec<&'a Candidate>, SelectError> {
    ensure_enough(topology.others_len(), n)?;
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return Ok(out);
    }
    let local_others = topology.groups[topology.local_group].others.len();
    let remote = topology.others_len() - local_others;
    // Prefer replicas outside the local data center; the local data center is eligible only
    // when the remote ones cannot supply `n` members, and only if it has anyone but us.
    let skip_local = remote >= n || local_others == 0;
    let eligible = topology.groups.len() - usize::from(skip_local);
    if eligible == 0 {
        // Unreachable: `others_len >= n >= 1` means some data center has other members.
        return Ok(out);
    }
    // The `e`-th eligible data center, `e` in `0..eligible`.
    let eligible_group = |e: usize| {
        let g = if skip_local && e >= topology.local_group {
            e + 1
        } else {
            e
        };
        &topology.groups[g]
    };
    // How many picks `rounds` full rounds give.
    let picked_after = |rounds: usize| -> usize {
        (0..eligible)
            .map(|e| eligible_group(e).others.len().min(rounds))
            .sum()
    };
    // The number of full rounds: the largest `t` with `picked_after(t) <= n`, found by binary
    // search (no more rounds than the largest data center has members, nor than `n`). The
    // eligible data centers hold at least `n` members, so the partial round that follows has
    // enough data centers left to finish.
    let largest = (0..eligible)
        .map(|e| eligible_group(e).others.len())
        .max()
        .unwrap_or(0);
    let (mut low, mut high) = (0, n.min(largest));
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if picked_after(mid) <= n {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    let full_rounds = low;
    let mut extra = n - picked_after(full_rounds);

    let first = index_below(rng, eligible);
    for step in 0..eligible {
        let mut e = first + step;
        if e >= eligible {
            e -= eligible;
        }
        let group = eligible_group(e);
        let size = group.others.len();
        let mut count = size.min(full_rounds);
        if extra > 0 && size > full_rounds {
            count += 1;
            extra -= 1;
        }
        take_window(topology, group, count, rng, &mut out);
    }
    debug_assert_eq!(out.len(), n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use rand_core::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    use super::*;
    use crate::selector::tests::{dc_of, sized_topology};

    fn rng(seed: u64) -> Xoshiro256PlusPlus {
        Xoshiro256PlusPlus::seed_from_u64(seed)
    }

    /// Picks per data center name.
    fn per_dc(picked: &[&Candidate]) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for m in picked {
            *counts.entry(m.data_center().to_string()).or_insert(0) += 1;
        }
        counts
    }

    fn assert_distinct_not_local(topology: &Topology, picked: &[&Candidate]) {
        let ids: HashSet<_> = picked.iter().map(|m| m.id()).collect();
        assert_eq!(ids.len(), picked.len(), "duplicates in {picked:?}");
        assert!(!ids.contains(topology.local().id()), "local node selected");
    }

    /// Datacake's test topology: dc0 holds nodes 0, 1, 2 (the local one is node 0), dc1 two
    /// nodes, dc2 one node.
    fn datacake_topology() -> Topology {
        sized_topology(&[3, 2, 1], 0, 0)
    }

    #[test]
    fn two_picks_one_node_in_each_remote_dc() {
        let topology = datacake_topology();
        for seed in 0..200 {
            let picked = DcAwareSelector
                .select(&topology, Consistency::Two, &mut rng(seed))
                .unwrap();
            assert_distinct_not_local(&topology, &picked);
            let expected = BTreeMap::from([("dc1".to_owned(), 1), ("dc2".to_owned(), 1)]);
            assert_eq!(per_dc(&picked), expected, "seed {seed}");
        }
    }

    #[test]
    fn three_picks_every_remote_node() {
        let topology = datacake_topology();
        for seed in 0..200 {
            let picked = DcAwareSelector
                .select(&topology, Consistency::Three, &mut rng(seed))
                .unwrap();
            assert_distinct_not_local(&topology, &picked);
            let expected = BTreeMap::from([("dc1".to_owned(), 2), ("dc2".to_owned(), 1)]);
            assert_eq!(per_dc(&picked), expected, "seed {seed}");
        }
    }

    #[test]
    fn local_quorum_picks_one_other_local_node() {
        let topology = datacake_topology();
        for seed in 0..200 {
            let picked = DcAwareSelector
                .select(&topology, Consistency::LocalQuorum, &mut rng(seed))
                .unwrap();
            assert_distinct_not_local(&topology, &picked);
            let expected = BTreeMap::from([("dc0".to_owned(), 1)]);
            assert_eq!(per_dc(&picked), expected, "seed {seed}");
        }
    }

    #[test]
    fn each_quorum_picks_a_majority_of_every_dc() {
        let topology = datacake_topology();
        for seed in 0..200 {
            let picked = DcAwareSelector
                .select(&topology, Consistency::EachQuorum, &mut rng(seed))
                .unwrap();
            assert_distinct_not_local(&topology, &picked);
            let expected = BTreeMap::from([
                ("dc0".to_owned(), 1),
                ("dc1".to_owned(), 2),
                ("dc2".to_owned(), 1),
            ]);
            assert_eq!(per_dc(&picked), expected, "seed {seed}");
        }
    }

    #[test]
    fn one_fails_on_a_lone_node() {
        let topology = sized_topology(&[1], 0, 0);
        for seed in 0..200 {
            assert_eq!(
                DcAwareSelector.select(&topology, Consistency::One, &mut rng(seed)),
                Err(SelectError::NotEnoughNodes {
                    live: 0,
                    required: 1
                })
            );
        }
        // Levels that never fail give empty selections.
        for level in [
            Consistency::None,
            Consistency::Quorum,
            Consistency::LocalQuorum,
            Consistency::EachQuorum,
            Consistency::All,
        ] {
            assert_eq!(
                DcAwareSelector.select(&topology, level, &mut rng(0)),
                Ok(Vec::new())
            );
        }
    }

    #[test]
    fn too_few_nodes_reports_live_and_required() {
        let topology = sized_topology(&[2, 1], 0, 0);
        assert_eq!(
            DcAwareSelector.select(&topology, Consistency::Three, &mut rng(3)),
            Err(SelectError::NotEnoughNodes {
                live: 2,
                required: 3
            })
        );
        // Two is met by using the local data center as well.
        let picked = DcAwareSelector
            .select(&topology, Consistency::Two, &mut rng(3))
            .unwrap();
        assert_eq!(picked.len(), 2);
        assert_distinct_not_local(&topology, &picked);
    }

    #[test]
    fn data_centers_missing_from_the_topology_are_never_selected() {
        let full = sized_topology(&[3, 2, 2], 0, 0);
        // The same members without dc2.
        let without = Topology::new(
            full.local().clone(),
            full.others()
                .filter(|m| m.data_center().as_str() != "dc2")
                .cloned(),
        );
        assert_eq!(without.len(), 5);
        for seed in 0..200 {
            for level in Consistency::ALL_LEVELS {
                let Ok(picked) = DcAwareSelector.select(&without, level, &mut rng(seed)) else {
                    continue;
                };
                assert_eq!(picked.len(), level.required(&without));
                assert!(
                    picked.iter().all(|m| m.data_center().as_str() != "dc2"),
                    "{level}: {picked:?}"
                );
            }
        }
    }

    #[test]
    fn one_spreads_load_over_every_remote_member() {
        // Two remote data centers of five members each.
        let topology = sized_topology(&[2, 5, 5], 0, 0);
        let mut rng = rng(42);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..3_000 {
            let picked = DcAwareSelector
                .select(&topology, Consistency::One, &mut rng)
                .unwrap();
            assert_eq!(picked.len(), 1);
            assert_ne!(picked[0].data_center().as_str(), "dc0");
            *counts.entry(picked[0].id().name().to_owned()).or_insert(0) += 1;
        }
        assert_eq!(
            counts.len(),
            10,
            "every remote member is chosen: {counts:?}"
        );
        let max = counts.values().copied().max().unwrap();
        let min = counts.values().copied().min().unwrap();
        assert!(max <= 2 * min, "uneven load: {counts:?}");
    }

    #[test]
    fn quorum_picks_exactly_half() {
        let topology = sized_topology(&[4, 4, 4], 1, 2);
        for seed in 0..200 {
            let picked = DcAwareSelector
                .select(&topology, Consistency::Quorum, &mut rng(seed))
                .unwrap();
            assert_eq!(picked.len(), 6);
            assert_distinct_not_local(&topology, &picked);
            // Eight members live outside dc1: only they are used, three in each.
            let expected = BTreeMap::from([("dc0".to_owned(), 3), ("dc2".to_owned(), 3)]);
            assert_eq!(per_dc(&picked), expected, "seed {seed}");
        }
    }

    #[test]
    fn quorum_falls_back_to_the_local_dc() {
        // 10 members, quorum 5; only 3 live outside dc0.
        let topology = sized_topology(&[7, 3], 0, 4);
        for seed in 0..200 {
            let picked = DcAwareSelector
                .select(&topology, Consistency::Quorum, &mut rng(seed))
                .unwrap();
            assert_eq!(picked.len(), 5);
            assert_distinct_not_local(&topology, &picked);
            let counts = per_dc(&picked);
            // Round-robin over dc0 (6 others) and dc1 (3): dc1 is exhausted or they tie.
            let local = counts.get("dc0").copied().unwrap_or(0);
            let remote = counts.get("dc1").copied().unwrap_or(0);
            assert!(remote == 3 || local.abs_diff(remote) <= 1, "{counts:?}");
        }
    }

    #[test]
    fn all_and_none() {
        let topology = sized_topology(&[3, 2, 1], 1, 1);
        let all = DcAwareSelector
            .select(&topology, Consistency::All, &mut rng(0))
            .unwrap();
        let expected: Vec<_> = topology.others().collect();
        assert_eq!(all, expected);
        assert!(
            DcAwareSelector
                .select(&topology, Consistency::None, &mut rng(0))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn same_seed_same_selection() {
        let topology = sized_topology(&[5, 7, 3, 9], 2, 1);
        for level in Consistency::ALL_LEVELS {
            for seed in 0..50 {
                let a = DcAwareSelector.select(&topology, level, &mut rng(seed));
                let b = DcAwareSelector.select(&topology, level, &mut rng(seed));
                assert_eq!(a, b, "{level} seed {seed}");
            }
        }
    }

    #[test]
    fn different_seeds_pick_different_members() {
        let topology = sized_topology(&[5, 7, 3, 9], 2, 1);
        let distinct: HashSet<Vec<String>> = (0..50)
            .map(|seed| {
                DcAwareSelector
                    .select(&topology, Consistency::Three, &mut rng(seed))
                    .unwrap()
                    .iter()
                    .map(|m| m.id().name().to_owned())
                    .collect()
            })
            .collect();
        assert!(distinct.len() > 10, "{distinct:?}");
    }

    #[test]
    fn within_a_dc_picks_are_consecutive() {
        // A single remote data center of 6: `Three` takes 3 consecutive members (wrapping).
        let topology = sized_topology(&[1, 6], 0, 0);
        let remote: Vec<_> = topology.others().map(|m| m.id().clone()).collect();
        for seed in 0..100 {
            let picked = DcAwareSelector
                .select(&topology, Consistency::Three, &mut rng(seed))
                .unwrap();
            let start = remote.iter().position(|id| id == picked[0].id()).unwrap();
            for (k, m) in picked.iter().enumerate() {
                assert_eq!(m.id(), &remote[(start + k) % remote.len()]);
                assert_eq!(dc_of(m), 1);
            }
        }
    }
}
