//! Shared test helpers and property tests for the selectors.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use proptest::prelude::*;
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::*;

/// Member `i` (named `n0000`, `n0001`, ... so that ids order as `i`) in data center `dc{dc}`.
pub(super) fn candidate(i: usize, dc: usize) -> Candidate {
    let port = u16::try_from(7000 + i).expect("test member index fits a port");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    Candidate::new(
        NodeId::new(format!("n{i:04}"), 1, addr),
        addr,
        format!("dc{dc}"),
    )
}

/// The data center number of a member made by [`candidate`].
pub(super) fn dc_of(member: &Candidate) -> usize {
    member.data_center().as_str()["dc".len()..]
        .parse()
        .expect("test data centers are named dc<number>")
}

/// Data center `d` holds `sizes[d]` members, numbered consecutively across data centers; the
/// local member is the `local_pos`-th of data center `local_dc`.
pub(super) fn sized_topology(sizes: &[usize], local_dc: usize, local_pos: usize) -> Topology {
    let mut all = Vec::new();
    let mut local = None;
    let mut next = 0;
    for (dc, &size) in sizes.iter().enumerate() {
        for pos in 0..size {
            let c = candidate(next, dc);
            next += 1;
            if dc == local_dc && pos == local_pos {
                local = Some(c);
            } else {
                all.push(c);
            }
        }
    }
    Topology::new(local.expect("the local member is in the topology"), all)
}

/// `dcs[i]` is member `i`'s data center; member `local` is the local one.
fn topology_from(dcs: &[usize], local: usize) -> Topology {
    let all: Vec<Candidate> = dcs
        .iter()
        .enumerate()
        .map(|(i, &dc)| candidate(i, dc))
        .collect();
    Topology::new(
        all[local].clone(),
        all.iter()
            .enumerate()
            .filter(|&(i, _)| i != local)
            .map(|(_, m)| m.clone()),
    )
}

/// Member data centers (1..60 members over 1..6 data centers) and a local member index.
fn arb_topology() -> impl Strategy<Value = (Vec<usize>, usize)> {
    (1usize..=6)
        .prop_flat_map(|dcs| prop::collection::vec(0..dcs, 1..=60))
        .prop_flat_map(|members| {
            let len = members.len();
            (Just(members), 0..len)
        })
}

fn arb_level() -> impl Strategy<Value = Consistency> {
    prop::sample::select(Consistency::ALL_LEVELS.to_vec())
}

/// The invariants every selector must keep; returns the per-data-center counts of a success.
fn check_common(
    topology: &Topology,
    level: Consistency,
    result: &Result<Vec<&Candidate>, SelectError>,
) -> Result<Option<BTreeMap<usize, usize>>, TestCaseError> {
    let required = level.required(topology);
    let picked = match result {
        Err(SelectError::NotEnoughNodes { live, required: r }) => {
            prop_assert_eq!(*live, topology.others_len());
            prop_assert_eq!(*r, required);
            prop_assert!(
                topology.others_len() < required,
                "{} failed needlessly",
                level
            );
            return Ok(None);
        }
        Ok(picked) => picked,
    };
    prop_assert_eq!(picked.len(), required, "{}", level);
    let ids: HashSet<&NodeId> = picked.iter().map(|m| m.id()).collect();
    prop_assert_eq!(ids.len(), picked.len(), "{}: duplicates", level);
    prop_assert!(
        !ids.contains(topology.local().id()),
        "{}: local node",
        level
    );
    let members: HashSet<&NodeId> = topology.members().iter().map(Candidate::id).collect();
    prop_assert!(ids.is_subset(&members), "{}: not a member", level);

    let mut counts = BTreeMap::new();
    for m in picked {
        *counts.entry(dc_of(m)).or_insert(0) += 1;
    }
    let local_dc = dc_of(topology.local());
    match level {
        Consistency::LocalQuorum => {
            prop_assert!(counts.keys().all(|&dc| dc == local_dc));
        }
        Consistency::EachQuorum => {
            for dc in topology.data_centers() {
                let want = if dc.is_local() {
                    dc.len_with_local() / 2
                } else {
                    dc.len_with_local() / 2 + 1
                };
                let number = dc.name().as_str()["dc".len()..]
                    .parse::<usize>()
                    .unwrap_or(0);
                prop_assert_eq!(counts.get(&number).copied().unwrap_or(0), want);
            }
        }
        _ => {}
    }
    Ok(Some(counts))
}

proptest! {
    #[test]
    fn dc_aware_invariants(
        (dcs, local) in arb_topology(),
        level in arb_level(),
        seed in any::<u64>(),
    ) {
        let topology = topology_from(&dcs, local);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let result = DcAwareSelector.select(&topology, level, &mut rng);
        let Some(counts) = check_common(&topology, level, &result)? else {
            return Ok(());
        };
        if !matches!(
            level,
            Consistency::One | Consistency::Two | Consistency::Three | Consistency::Quorum
        ) {
            return Ok(());
        }
        let n = level.required(&topology);
        let local_dc = dc_of(topology.local());
        let remote = topology.others_len() - topology.local_data_center().others_len();
        let remote_only = remote >= n;
        if remote_only {
            prop_assert!(!counts.contains_key(&local_dc), "{} used the local dc", level);
        }
        // Round-robin: among eligible data centers, no count exceeds that of a data center
        // that still had members left by more than one.
        let eligible: Vec<(usize, usize)> = topology
            .data_centers()
            .filter(|dc| !(remote_only && dc.is_local()) && dc.others_len() > 0)
            .map(|dc| {
                let number = dc_of(dc.other(0));
                (counts.get(&number).copied().unwrap_or(0), dc.others_len())
            })
            .collect();
        let max = eligible.iter().map(|&(c, _)| c).max().unwrap_or(0);
        for &(count, size) in &eligible {
            if count < size {
                prop_assert!(max <= count + 1, "{}: uneven {:?}", level, eligible);
            }
        }
        // Deterministic under the seed.
        let again = DcAwareSelector.select(&topology, level, &mut Xoshiro256PlusPlus::seed_from_u64(seed));
        prop_assert_eq!(result, again);
    }

    #[test]
    fn random_invariants(
        (dcs, local) in arb_topology(),
        level in arb_level(),
        seed in any::<u64>(),
    ) {
        let topology = topology_from(&dcs, local);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let result = RandomSelector.select(&topology, level, &mut rng);
        check_common(&topology, level, &result)?;
        let again = RandomSelector.select(&topology, level, &mut Xoshiro256PlusPlus::seed_from_u64(seed));
        prop_assert_eq!(result, again);
    }

    #[test]
    fn rendezvous_invariants(
        (dcs, local) in arb_topology(),
        other_local in any::<prop::sample::Index>(),
        n_index in any::<prop::sample::Index>(),
        key in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let a = topology_from(&dcs, local);
        let b = topology_from(&dcs, other_local.index(dcs.len()));
        let n = n_index.index(dcs.len() + 3);
        let from_a = RendezvousSelector.select_for_key(&a, &key, n);
        let from_b = RendezvousSelector.select_for_key(&b, &key, n);
        prop_assert_eq!(&from_a, &from_b);
        match from_a {
            Err(SelectError::NotEnoughNodes { live, required }) => {
                prop_assert_eq!(live, dcs.len());
                prop_assert_eq!(required, n);
                prop_assert!(n > dcs.len());
            }
            Ok(owners) => {
                prop_assert_eq!(owners.len(), n);
                let ids: HashSet<&NodeId> = owners.iter().map(|m| m.id()).collect();
                prop_assert_eq!(ids.len(), n);
                let key_hash = crate::hash::fnv1a64(&key);
                let scores: Vec<u64> = owners
                    .iter()
                    .map(|m| crate::hash::mix64(key_hash ^ m.id().stable_hash()))
                    .collect();
                prop_assert!(scores.windows(2).all(|w| w[0] >= w[1]));
                if n > 0 {
                    prop_assert_eq!(RendezvousSelector.owner(&a, &key), owners[0]);
                    prop_assert_eq!(RendezvousSelector.owner(&b, &key), owners[0]);
                }
            }
        }
    }
}
