//! Key affinity by rendezvous (highest-random-weight) hashing.
//!
//! Owns [`RendezvousSelector`]: the members that own a key, computed the same way on every
//! node. Its score formula is part of cohort's stable contract, because nodes running different
//! builds must agree on owners.
//!
//! It must never depend on which member is the local one, on anything but the key and the
//! members' identities (no randomness, no clock, no process-specific hashing such as `std`'s
//! `DefaultHasher`), and never panic.

use super::{Candidate, SelectError, Topology};
use crate::hash::{fnv1a64, mix64};

/// Requests for at most this many owners are served from a fixed-size buffer in one pass;
/// larger ones sort all members.
const BUFFERED: usize = 16;

/// Picks the owners of a key by rendezvous hashing.
///
/// Every member of the [`Topology`], the local one included, gets a score for the key; the
/// owners are the members with the highest scores. The score is, as a stable contract that
/// will not change between releases:
///
/// ```text
/// score(key, member) = mix64(fnv1a64(key) ^ member.id().stable_hash())
/// ```
///
/// with [`fnv1a64`](crate::hash::fnv1a64), [`mix64`](crate::hash::mix64) and
/// [`NodeId::stable_hash`](crate::NodeId::stable_hash). Equal scores are ordered by the members'
/// ids (ascending). So the owners of a key depend only on the key and the set of members: every
/// node computes the same owners whichever node it is, and when a member joins or leaves only
/// the keys it owns (or comes to own) move, about `1/n` of them.
///
/// It does not implement [`NodeSelector`](crate::NodeSelector): owners are a function of a
/// key, which that trait does not take.
///
/// ```
/// use cohort_core::{Candidate, NodeId, RendezvousSelector, Topology};
///
/// let member = |i: u16| {
///     let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 7000 + i));
///     Candidate::new(NodeId::new(format!("n{i}"), 1, addr), addr, "eu")
/// };
/// // The same five members, seen from node 0 and from node 3.
/// let from_0 = Topology::new(member(0), (1..5).map(member));
/// let from_3 = Topology::new(member(3), [0, 1, 2, 4].map(member));
///
/// let selector = RendezvousSelector;
/// let owners = selector.select_for_key(&from_0, b"user:42", 3)?;
/// assert_eq!(owners.len(), 3);
/// assert_eq!(owners, selector.select_for_key(&from_3, b"user:42", 3)?);
/// assert_eq!(selector.owner(&from_0, b"user:42"), owners[0]);
/// # Ok::<(), cohort_core::SelectError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RendezvousSelector;

impl RendezvousSelector {
    /// The `n` members with the highest scores for `key`, highest first (see the type's
    /// documentation for the score).
    ///
    /// The local member is a candidate like any other. Costs one pass over the members for
    /// `n <= 16`, a sort of all members otherwise.
    ///
    /// # Errors
    ///
    /// [`SelectError::NotEnoughNodes`] when `n` exceeds the number of members.
    pub fn select_for_key<'a>(
        &self,
        topology: &'a Topology,
        key: &[u8],
        n: usize,
    ) -> Result<Vec<&'a Candidate>, SelectError> {
        let len = topology.len();
        if n > len {
            return Err(SelectError::NotEnoughNodes {
                live: len,
                required: n,
            });
        }
        let key_hash = fnv1a64(key);
        let score = |i: usize| mix64(key_hash ^ topology.member_hash(i));
        let members = topology.members();
        if n == 0 {
            return Ok(Vec::new());
        }
        if n <= BUFFERED {
            // The best `filled` so far, best first. Members come in index order, so a later
            // member with an equal score ranks below the ones already held: it goes after them
            // and is dropped when the buffer is full.
            let mut top = [(0u64, 0usize); BUFFERED];
            let mut filled = 0;
            for i in 0..len {
                let s = score(i);
                let mut at = if filled < n {
                    filled += 1;
                    filled - 1
                } else if s > top[n - 1].0 {
                    n - 1
                } else {
                    continue;
                };
                while at > 0 && top[at - 1].0 < s {
                    top[at] = top[at - 1];
                    at -= 1;
                }
                top[at] = (s, i);
            }
            Ok(top[..n].iter().map(|&(_, i)| &members[i]).collect())
        } else {
            let mut scored: Vec<(u64, usize)> = (0..len).map(|i| (score(i), i)).collect();
            let rank = |a: &(u64, usize), b: &(u64, usize)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
            if n < len {
                scored.select_nth_unstable_by(n - 1, rank);
            }
            let best = &mut scored[..n];
            best.sort_unstable_by(rank);
            Ok(best.iter().map(|&(_, i)| &members[i]).collect())
        }
    }

    /// The member with the highest score for `key`: the first of
    /// [`select_for_key`](Self::select_for_key) with `n = 1`. Never fails, as a topology always
    /// holds at least the local member.
    #[must_use]
    pub fn owner<'a>(&self, topology: &'a Topology, key: &[u8]) -> &'a Candidate {
        let key_hash = fnv1a64(key);
        let mut best = topology.local_index();
        let mut best_score = mix64(key_hash ^ topology.member_hash(best));
        for i in 0..topology.len() {
            let s = mix64(key_hash ^ topology.member_hash(i));
            if s > best_score || (s == best_score && i < best) {
                best = i;
                best_score = s;
            }
        }
        &topology.members()[best]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::selector::tests::{candidate, sized_topology};

    /// `count` members in 3 data centers, seen from member `local`.
    fn members(count: usize) -> Vec<Candidate> {
        (0..count).map(|i| candidate(i, i % 3)).collect()
    }

    fn seen_from(all: &[Candidate], local: usize) -> Topology {
        Topology::new(
            all[local].clone(),
            all.iter()
                .enumerate()
                .filter(|&(i, _)| i != local)
                .map(|(_, m)| m.clone()),
        )
    }

    fn ids(picked: &[&Candidate]) -> Vec<String> {
        picked.iter().map(|m| m.id().name().to_owned()).collect()
    }

    fn key(i: usize) -> Vec<u8> {
        format!("key-{i}").into_bytes()
    }

    #[test]
    fn score_formula_is_the_documented_one() {
        let topology = sized_topology(&[4, 3], 0, 0);
        for k in 0..100 {
            let key = key(k);
            let kh = fnv1a64(&key);
            let mut expected: Vec<&Candidate> = topology.members().iter().collect();
            expected.sort_by(|a, b| {
                let sa = mix64(kh ^ a.id().stable_hash());
                let sb = mix64(kh ^ b.id().stable_hash());
                sb.cmp(&sa).then(a.id().cmp(b.id()))
            });
            for n in 0..=topology.len() {
                let picked = RendezvousSelector
                    .select_for_key(&topology, &key, n)
                    .unwrap();
                assert_eq!(picked, expected[..n]);
            }
            assert_eq!(RendezvousSelector.owner(&topology, &key), expected[0]);
        }
    }

    #[test]
    fn buffered_and_sorted_paths_agree() {
        let all = members(40);
        let topology = seen_from(&all, 7);
        for k in 0..200 {
            let key = key(k);
            let long = RendezvousSelector
                .select_for_key(&topology, &key, 30)
                .unwrap();
            for n in [1, 2, 3, 8, 16] {
                let short = RendezvousSelector
                    .select_for_key(&topology, &key, n)
                    .unwrap();
                assert_eq!(short, long[..n], "n = {n}");
            }
            let every = RendezvousSelector
                .select_for_key(&topology, &key, 40)
                .unwrap();
            assert_eq!(every[..30], long);
        }
    }

    #[test]
    fn owners_do_not_depend_on_the_local_member() {
        let all = members(12);
        let views: Vec<Topology> = (0..all.len()).map(|l| seen_from(&all, l)).collect();
        for k in 0..500 {
            let key = key(k);
            for n in [1, 3, 12] {
                let reference = ids(&RendezvousSelector
                    .select_for_key(&views[0], &key, n)
                    .unwrap());
                assert_eq!(reference.len(), n);
                assert_eq!(reference.iter().collect::<HashSet<_>>().len(), n);
                for view in &views[1..] {
                    let picked = RendezvousSelector.select_for_key(view, &key, n).unwrap();
                    assert_eq!(ids(&picked), reference);
                }
            }
            let owner = RendezvousSelector.owner(&views[0], &key).id().clone();
            for view in &views {
                assert_eq!(RendezvousSelector.owner(view, &key).id(), &owner);
            }
        }
    }

    #[test]
    fn too_many_owners_is_an_error() {
        let topology = sized_topology(&[2, 1], 0, 0);
        assert_eq!(
            RendezvousSelector.select_for_key(&topology, b"k", 4),
            Err(SelectError::NotEnoughNodes {
                live: 3,
                required: 4
            })
        );
        assert_eq!(
            RendezvousSelector.select_for_key(&topology, b"k", 0),
            Ok(Vec::new())
        );
        // A lone node owns everything.
        let lone = sized_topology(&[1], 0, 0);
        assert_eq!(RendezvousSelector.owner(&lone, b"k"), lone.local());
        assert_eq!(
            RendezvousSelector.select_for_key(&lone, b"k", 1),
            Ok(vec![lone.local()])
        );
    }

    #[test]
    fn a_departure_moves_only_the_keys_it_owned() {
        const N: usize = 20;
        const KEYS: usize = 10_000;
        let all = members(N);
        let before = seen_from(&all, 0);
        let departed = all[13].id().clone();
        let after = Topology::new(
            all[0].clone(),
            all[1..].iter().filter(|m| m.id() != &departed).cloned(),
        );
        assert_eq!(after.len(), N - 1);

        let mut moved = 0;
        for k in 0..KEYS {
            let key = key(k);
            let old = RendezvousSelector.owner(&before, &key);
            let new = RendezvousSelector.owner(&after, &key);
            if old.id() == &departed {
                moved += 1;
            } else {
                assert_eq!(old.id(), new.id(), "key {k} moved though its owner stayed");
            }
            // Top-3: unchanged unless the departed member was among them, in which case the
            // survivors keep their order and one newcomer is appended.
            let old3 = ids(&RendezvousSelector.select_for_key(&before, &key, 3).unwrap());
            let new3 = ids(&RendezvousSelector.select_for_key(&after, &key, 3).unwrap());
            if old3.iter().any(|name| name == departed.name()) {
                let survivors: Vec<_> = old3.iter().filter(|n| *n != departed.name()).collect();
                assert_eq!(new3[..2].iter().collect::<Vec<_>>(), survivors);
            } else {
                assert_eq!(old3, new3);
            }
        }
        let fraction = moved as f64 / KEYS as f64;
        let expected = 1.0 / N as f64;
        assert!(
            fraction > 0.5 * expected && fraction < 2.0 * expected,
            "{moved} of {KEYS} keys moved"
        );
    }

    #[test]
    fn an_arrival_takes_about_its_share() {
        const N: usize = 20;
        const KEYS: usize = 10_000;
        let all = members(N + 1);
        let before = seen_from(&all[..N], 0);
        let after = seen_from(&all, 0);
        let newcomer = all[N].id();
        let mut moved = 0;
        for k in 0..KEYS {
            let key = key(k);
            let old = RendezvousSelector.owner(&before, &key);
            let new = RendezvousSelector.owner(&after, &key);
            if old.id() != new.id() {
                assert_eq!(new.id(), newcomer, "key {k} moved to an old member");
                moved += 1;
            }
        }
        let fraction = moved as f64 / KEYS as f64;
        let expected = 1.0 / (N + 1) as f64;
        assert!(
            fraction > 0.5 * expected && fraction < 2.0 * expected,
            "{moved} of {KEYS} keys moved"
        );
    }

    #[test]
    fn owners_are_spread_over_members() {
        let all = members(10);
        let topology = seen_from(&all, 0);
        let mut counts = std::collections::BTreeMap::new();
        for k in 0..10_000 {
            *counts
                .entry(RendezvousSelector.owner(&topology, &key(k)).id().clone())
                .or_insert(0usize) += 1;
        }
        assert_eq!(counts.len(), 10);
        for (id, &c) in &counts {
            assert!(c.abs_diff(1_000) < 200, "{id} owns {c} keys");
        }
    }
}
