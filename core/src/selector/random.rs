//! Uniformly random selection.
//!
//! Owns [`RandomSelector`]: distinct members drawn uniformly at random, ignoring data centers
//! except where the level itself names them ([`Consistency::LocalQuorum`] and
//! [`Consistency::EachQuorum`]).
//!
//! It must never select the local node, never return more or fewer members than
//! [`Consistency::required`], never select a member twice, never read anything but the
//! [`Topology`] it is given, never draw randomness other than from the caller's generator, and
//! never panic.

use rand_core::Rng;

use super::dc_aware::{all_others, each_quorum_count};
use super::{
    Candidate, Consistency, NodeSelector, SelectError, Topology, ensure_enough, index_below,
};

/// Samples up to this many members without allocating (Floyd's algorithm, quadratic in the
/// sample size); larger samples use a partial Fisher-Yates shuffle over an index vector.
const SMALL_SAMPLE: usize = 16;

/// Picks other members uniformly at random, ignoring data centers.
///
/// [`One`](Consistency::One), [`Two`](Consistency::Two), [`Three`](Consistency::Three) and
/// [`Quorum`](Consistency::Quorum) return a uniformly random set of distinct other members, in
/// uniformly random order; [`LocalQuorum`](Consistency::LocalQuorum) does the same within the
/// local data center and [`EachQuorum`](Consistency::EachQuorum) within each data center (in
/// data center name order); [`All`](Consistency::All) returns every other member ascending by
/// id. A sample of `k` out of `m` members costs `O(k)` draws; samples above 16 members also take
/// `O(m)` time and memory for an index vector.
///
/// ```
/// use cohort_core::{Candidate, Consistency, NodeId, NodeSelector, RandomSelector, Topology};
/// use rand_core::SeedableRng;
/// use rand_xoshiro::Xoshiro256PlusPlus;
///
/// let member = |i: u16| {
///     let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 7000 + i));
///     Candidate::new(NodeId::new(format!("n{i}"), 1, addr), addr, "eu")
/// };
/// let topology = Topology::new(member(0), (1..10).map(member));
/// let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
/// let picked = RandomSelector.select(&topology, Consistency::Quorum, &mut rng)?;
/// assert_eq!(picked.len(), 5);
/// assert!(picked.iter().all(|m| m.id() != topology.local().id()));
/// # Ok::<(), cohort_core::SelectError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomSelector;

impl NodeSelector for RandomSelector {
    fn select<'a>(
        &self,
        topology: &'a Topology,
        consistency: Consistency,
        rng: &mut dyn Rng,
    ) -> Result<Vec<&'a Candidate>, SelectError> {
        match consistency {
            Consistency::None => Ok(Vec::new()),
            Consistency::One | Consistency::Two | Consistency::Three | Consistency::Quorum => {
                let k = consistency.required(topology);
                let m = topology.others_len();
                ensure_enough(m, k)?;
                let local = topology.local;
                let mut out = Vec::with_capacity(k);
                // Position `p` among the others is member `p`, or `p + 1` past the local one.
                sample(rng, m, k, &mut Vec::new(), &mut out, |p| {
                    &topology.members[if p < local { p } else { p + 1 }]
                });
                Ok(out)
            }
            Consistency::LocalQuorum => {
                let others = &topology.groups[topology.local_group].others;
                let k = topology.local_data_center_len() / 2;
                let mut out = Vec::with_capacity(k);
                sample(rng, others.len(), k, &mut Vec::new(), &mut out, |p| {
                    &topology.members[others[p]]
                });
                Ok(out)
            }
            Consistency::EachQuorum => {
                let mut out = Vec::with_capacity(consistency.required(topology));
                // One index vector for every data center's large sample.
                let mut scratch = Vec::new();
                for group in &topology.groups {
                    let others = &group.others;
                    let k = each_quorum_count(group);
                    sample(rng, others.len(), k, &mut scratch, &mut out, |p| {
                        &topology.members[others[p]]
                    });
                }
                Ok(out)
            }
            Consistency::All => Ok(all_others(topology)),
        }
    }
}

/// Appends `min(k, m)` distinct members to `out`: `member(p)` for a uniformly random set of
/// positions `p` in `0..m`, in uniformly random order. `scratch` is working memory for large
/// samples; its contents are irrelevant.
fn sample<'a>(
    rng: &mut dyn Rng,
    m: usize,
    k: usize,
    scratch: &mut Vec<usize>,
    out: &mut Vec<&'a Candidate>,
    member: impl Fn(usize) -> &'a Candidate,
) {
    let k = k.min(m);
    if k == 0 {
        return;
    }
    if k <= SMALL_SAMPLE {
        // Floyd's algorithm in its permutation form (Bentley and Floyd, 1987): for each `j` in
        // `m - k..m` draw `t` in `0..=j`; put `t` in front if it is new, else put `j` right
        // after `t`. The result is a uniformly random ordered `k`-sample.
        let mut picked = [0usize; SMALL_SAMPLE];
        let mut len = 0;
        for j in m - k..m {
            let t = index_below(rng, j + 1);
            match picked[..len].iter().position(|&p| p == t) {
                None => {
                    picked.copy_within(0..len, 1);
                    picked[0] = t;
                }
                Some(at) => {
                    picked.copy_within(at + 1..len, at + 2);
                    picked[at + 1] = j;
                }
            }
            len += 1;
        }
        out.extend(picked[..len].iter().map(|&p| member(p)));
    } else {
        // Partial Fisher-Yates: the first `k` slots end up a uniformly random ordered sample.
        let positions = scratch;
        positions.clear();
        positions.extend(0..m);
        for i in 0..k {
            let j = i + index_below(rng, m - i);
            positions.swap(i, j);
            out.push(member(positions[i]));
        }
    }
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

    fn check(topology: &Topology, level: Consistency, picked: &[&Candidate]) {
        assert_eq!(picked.len(), level.required(topology), "{level}");
        let ids: HashSet<_> = picked.iter().map(|m| m.id()).collect();
        assert_eq!(ids.len(), picked.len(), "{level}: duplicates in {picked:?}");
        assert!(!ids.contains(topology.local().id()), "{level}: local node");
    }

    #[test]
    fn every_level_has_the_required_count() {
        for (sizes, local_dc) in [
            (&[1][..], 0),
            (&[2][..], 0),
            (&[3, 2, 1][..], 0),
            (&[3, 2, 1][..], 2),
            (&[40, 30, 20][..], 1),
        ] {
            let topology = sized_topology(sizes, local_dc, 0);
            for level in Consistency::ALL_LEVELS {
                for seed in 0..50 {
                    match RandomSelector.select(&topology, level, &mut rng(seed)) {
                        Ok(picked) => check(&topology, level, &picked),
                        Err(SelectError::NotEnoughNodes { live, required }) => {
                            assert_eq!(live, topology.others_len());
                            assert_eq!(required, level.required(&topology));
                            assert!(live < required);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn one_fails_on_a_lone_node() {
        let topology = sized_topology(&[1], 0, 0);
        assert_eq!(
            RandomSelector.select(&topology, Consistency::One, &mut rng(0)),
            Err(SelectError::NotEnoughNodes {
                live: 0,
                required: 1
            })
        );
    }

    #[test]
    fn quorum_at_a_thousand_members() {
        let topology = sized_topology(&[200; 5], 2, 17);
        let picked = RandomSelector
            .select(&topology, Consistency::Quorum, &mut rng(9))
            .unwrap();
        assert_eq!(picked.len(), 500);
        check(&topology, Consistency::Quorum, &picked);
    }

    #[test]
    fn dc_levels_pick_in_the_right_dcs() {
        let topology = sized_topology(&[3, 2, 1], 0, 0);
        for seed in 0..200 {
            let local = RandomSelector
                .select(&topology, Consistency::LocalQuorum, &mut rng(seed))
                .unwrap();
            assert_eq!(local.len(), 1);
            assert_eq!(dc_of(local[0]), 0);
            check(&topology, Consistency::LocalQuorum, &local);

            let each = RandomSelector
                .select(&topology, Consistency::EachQuorum, &mut rng(seed))
                .unwrap();
            check(&topology, Consistency::EachQuorum, &each);
            let mut counts = [0; 3];
            for m in &each {
                counts[dc_of(m)] += 1;
            }
            assert_eq!(counts, [1, 2, 1]);
        }
    }

    #[test]
    fn picks_are_roughly_uniform() {
        // 12 others; `Two` 6,000 times picks each about 1,000 times, whatever its data center.
        let topology = sized_topology(&[3, 8, 2], 0, 0);
        for level in [Consistency::One, Consistency::Two, Consistency::Three] {
            let mut rng = rng(77);
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            let rounds = 6_000;
            for _ in 0..rounds {
                for m in RandomSelector.select(&topology, level, &mut rng).unwrap() {
                    *counts.entry(m.id().name().to_owned()).or_insert(0) += 1;
                }
            }
            assert_eq!(counts.len(), 12, "{level}: {counts:?}");
            let expected = rounds * level.required(&topology) / 12;
            for (name, &count) in &counts {
                assert!(
                    count.abs_diff(expected) * 5 < expected,
                    "{level}: {name} chosen {count} times, expected about {expected}"
                );
            }
        }
    }

    #[test]
    fn large_samples_are_roughly_uniform() {
        // 39 others, Quorum picks 20: takes the Fisher-Yates path.
        let topology = sized_topology(&[40], 0, 5);
        let mut rng = rng(5);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let rounds = 3_900;
        for _ in 0..rounds {
            for m in RandomSelector
                .select(&topology, Consistency::Quorum, &mut rng)
                .unwrap()
            {
                *counts.entry(m.id().name().to_owned()).or_insert(0) += 1;
            }
        }
        assert_eq!(counts.len(), 39);
        let expected = rounds * 20 / 39;
        for (name, &count) in &counts {
            assert!(
                count.abs_diff(expected) * 10 < expected,
                "{name} chosen {count} times, expected about {expected}"
            );
        }
    }

    #[test]
    fn small_sample_order_is_uniform() {
        // Floyd's permutation form: the first pick of `Two` among 3 is uniform too.
        let topology = sized_topology(&[4], 0, 0);
        let mut rng = rng(11);
        let mut first: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..3_000 {
            let picked = RandomSelector
                .select(&topology, Consistency::Two, &mut rng)
                .unwrap();
            *first.entry(picked[0].id().name().to_owned()).or_insert(0) += 1;
        }
        assert_eq!(first.len(), 3);
        for (name, &count) in &first {
            assert!(count.abs_diff(1_000) < 150, "{name} first {count} times");
        }
    }

    #[test]
    fn same_seed_same_selection() {
        let topology = sized_topology(&[5, 7, 3, 9], 2, 1);
        for level in Consistency::ALL_LEVELS {
            for seed in 0..50 {
                let a = RandomSelector.select(&topology, level, &mut rng(seed));
                let b = RandomSelector.select(&topology, level, &mut rng(seed));
                assert_eq!(a, b, "{level} seed {seed}");
            }
        }
    }
}
