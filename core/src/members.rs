//! Versioned snapshots of the membership, and the metadata keys cohort gives a meaning to.
//!
//! Owns [`Members`], the snapshot a node gives its readers (a list of [`Member`]s with the
//! version of the membership it was taken at), and the conversion from members to the
//! [`Topology`] that selectors work on. Both drivers publish it, so readers of either see the
//! same shapes. It never does I/O and holds no reference into a machine: a snapshot is a copy.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::NodeId;
use crate::membership::{Member, MemberStatus};
use crate::selector::{Candidate, Topology};

/// The metadata key holding a member's data center (the key datacake-node gossips).
pub const DATA_CENTER_KEY: &str = "data_center";

/// The metadata key holding the address a member serves RPC on (`ip:port`).
pub const RPC_ADDR_KEY: &str = "rpc_addr";

/// The data center of a member that publishes none.
pub const DEFAULT_DATA_CENTER: &str = "default";

/// A snapshot of the membership as the local node sees it, at one version.
///
/// The version ([`Node::members_version`](crate::Node::members_version)) starts at 1 and grows
/// with each change of a member's status or keys, so a reader can tell whether two snapshots
/// differ without comparing them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Members {
    version: u64,
    local: NodeId,
    members: Arc<[Member]>,
}

impl Members {
    /// A snapshot of `members` (ascending by id) at `version`, seen by `local`.
    pub(crate) fn new(version: u64, local: NodeId, members: Vec<Member>) -> Self {
        debug_assert!(members.windows(2).all(|w| w[0].id < w[1].id));
        Self {
            version,
            local,
            members: members.into(),
        }
    }

    /// The version of this snapshot.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The local node's identity.
    #[must_use]
    pub fn local(&self) -> &NodeId {
        &self.local
    }

    /// The local node as a member.
    #[must_use]
    pub fn local_member(&self) -> Option<&Member> {
        self.get(&self.local)
    }

    /// Every known member (the local node included), ascending by id.
    #[must_use]
    pub fn all(&self) -> &[Member] {
        &self.members
    }

    /// The live members (the local node included unless it is leaving), ascending by id.
    pub fn live(&self) -> impl Iterator<Item = &Member> + '_ {
        self.members
            .iter()
            .filter(|m| m.status == MemberStatus::Live)
    }

    /// The number of live members.
    #[must_use]
    pub fn live_count(&self) -> usize {
        self.live().count()
    }

    /// The member with identity `id`.
    #[must_use]
    pub fn get(&self, id: &NodeId) -> Option<&Member> {
        self.members
            .binary_search_by(|m| m.id.cmp(id))
            .ok()
            .map(|i| &self.members[i])
    }

    /// The members chitchat's failure detector would call dead: [`MemberStatus::Failed`] and
    /// [`MemberStatus::Joining`] ones (see [`MemberStatus::Joining`] for why cohort names them
    /// apart), ascending by id.
    pub fn dead(&self) -> impl Iterator<Item = &Member> + '_ {
        self.members
            .iter()
            .filter(|m| matches!(m.status, MemberStatus::Failed | MemberStatus::Joining))
    }

    /// How many members have each status, overall and per data center ([`DATA_CENTER_KEY`]),
    /// as datacake's cluster statistics gave them.
    #[must_use]
    pub fn counts(&self) -> MemberCounts {
        let mut counts = MemberCounts::default();
        for member in self.members.iter() {
            let dc = member.get(DATA_CENTER_KEY).unwrap_or(DEFAULT_DATA_CENTER);
            let per_dc = counts.per_data_center.entry(dc.to_owned()).or_default();
            for c in [&mut counts.all, per_dc] {
                c.add(member.status);
            }
        }
        counts
    }

    /// The members named `name` (every generation known), ascending by generation.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Member> + 'a {
        self.members.iter().filter(move |m| m.id.name() == name)
    }

    /// The topology that selectors choose from: the local node and every other live member,
    /// each with its data center ([`DATA_CENTER_KEY`]) and its request address
    /// ([`RPC_ADDR_KEY`], or the gossip address when it publishes none or an unparsable one).
    #[must_use]
    pub fn topology(&self) -> Topology {
        let local = self.local_member().map_or_else(
            || {
                Candidate::new(
                    self.local.clone(),
                    self.local.gossip_addr(),
                    DEFAULT_DATA_CENTER,
                )
            },
            candidate,
        );
        Topology::new(
            local,
            self.live().filter(|m| m.id != self.local).map(candidate),
        )
    }
}

/// How many members have each status ([`Members::counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusCounts {
    /// [`MemberStatus::Joining`].
    pub joining: usize,
    /// [`MemberStatus::Live`].
    pub live: usize,
    /// [`MemberStatus::Unready`].
    pub unready: usize,
    /// [`MemberStatus::Failed`].
    pub failed: usize,
    /// [`MemberStatus::Left`].
    pub left: usize,
}

impl StatusCounts {
    fn add(&mut self, status: MemberStatus) {
        let count = match status {
            MemberStatus::Joining => &mut self.joining,
            MemberStatus::Live => &mut self.live,
            MemberStatus::Unready => &mut self.unready,
            MemberStatus::Failed => &mut self.failed,
            MemberStatus::Left => &mut self.left,
        };
        *count += 1;
    }

    /// Every member counted.
    #[must_use]
    pub fn total(&self) -> usize {
        self.joining + self.live + self.unready + self.failed + self.left
    }
}

/// Member counts of a snapshot, overall and per data center ([`Members::counts`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberCounts {
    /// Over every known member (the local node included).
    pub all: StatusCounts,
    /// Per data center, by name (members that publish none count under
    /// [`DEFAULT_DATA_CENTER`]).
    pub per_data_center: std::collections::BTreeMap<String, StatusCounts>,
}

/// `member` as a selection candidate (see [`Members::topology`]).
#[must_use]
pub fn candidate(member: &Member) -> Candidate {
    Candidate::new(
        member.id.clone(),
        rpc_addr(member),
        member.get(DATA_CENTER_KEY).unwrap_or(DEFAULT_DATA_CENTER),
    )
}

/// The address `member` serves RPC on: its [`RPC_ADDR_KEY`], or its gossip address when that is
/// missing or does not parse.
#[must_use]
pub fn rpc_addr(member: &Member) -> SocketAddr {
    member
        .get(RPC_ADDR_KEY)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| member.id.gossip_addr())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use super::*;
    use crate::membership::{Membership, MembershipConfig};
    use crate::selector::{Consistency, DcAwareSelector, NodeSelector};

    fn member(name: &str, port: u16, status: MemberStatus, keys: &[(&str, &str)]) -> Member {
        Member {
            id: NodeId::new(name, 1, SocketAddr::from(([127, 0, 0, 1], port))),
            status,
            heartbeat: 1,
            max_version: 0,
            keys: keys
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn a_snapshot_of_a_fresh_machine_holds_the_local_node() {
        let id = NodeId::new("a", 1, SocketAddr::from(([127, 0, 0, 1], 7000)));
        let mut config = MembershipConfig::new(id.clone(), "c");
        config.initial_key_values = vec![(DATA_CENTER_KEY.into(), "dc-1".into())];
        let membership = Membership::new(config, Instant::now());
        let members = membership.members();
        assert_eq!(members.version(), 1);
        assert_eq!(members.local(), &id);
        assert_eq!(members.live_count(), 1);
        let topology = members.topology();
        assert_eq!(topology.len(), 1);
        assert_eq!(topology.local().data_center().as_str(), "dc-1");
    }

    #[test]
    fn the_topology_holds_live_members_with_their_rpc_address_and_data_center() {
        let local = member("a", 7000, MemberStatus::Live, &[(DATA_CENTER_KEY, "east")]);
        let b = member(
            "b",
            7001,
            MemberStatus::Live,
            &[(DATA_CENTER_KEY, "west"), (RPC_ADDR_KEY, "127.0.0.1:9001")],
        );
        let c = member(
            "c",
            7002,
            MemberStatus::Failed,
            &[(DATA_CENTER_KEY, "west")],
        );
        let d = member(
            "d",
            7003,
            MemberStatus::Live,
            &[(RPC_ADDR_KEY, "not an address")],
        );
        let members = Members {
            version: 1,
            local: local.id.clone(),
            members: vec![local.clone(), b.clone(), c, d.clone()].into(),
        };
        assert_eq!(members.get(&b.id), Some(&b));
        assert_eq!(members.named("b").count(), 1);
        let counts = members.counts();
        assert_eq!(
            (counts.all.live, counts.all.failed, counts.all.total()),
            (3, 1, 4)
        );
        assert_eq!(counts.per_data_center["west"].live, 1);
        assert_eq!(counts.per_data_center["west"].failed, 1);
        assert_eq!(counts.per_data_center[DEFAULT_DATA_CENTER].live, 1);
        assert_eq!(counts.per_data_center["east"].live, 1);
        assert_eq!(
            members.dead().map(|m| m.id.name()).collect::<Vec<_>>(),
            ["c"]
        );
        let topology = members.topology();
        assert_eq!(topology.len(), 3, "the failed member is not a candidate");
        let by_id = |id: &NodeId| topology.members().iter().find(|m| m.id() == id).cloned();
        let b_candidate = by_id(&b.id).unwrap();
        assert_eq!(b_candidate.addr(), SocketAddr::from(([127, 0, 0, 1], 9001)));
        assert_eq!(b_candidate.data_center().as_str(), "west");
        let d_candidate = by_id(&d.id).unwrap();
        assert_eq!(
            d_candidate.addr(),
            d.id.gossip_addr(),
            "unparsable: gossip address"
        );
        assert_eq!(d_candidate.data_center().as_str(), DEFAULT_DATA_CENTER);
        // The DC-aware selector prefers the other data centers.
        let mut rng =
            <rand_xoshiro::Xoshiro256PlusPlus as rand_core::SeedableRng>::seed_from_u64(1);
        let picked = DcAwareSelector
            .select(&topology, Consistency::One, &mut rng)
            .unwrap();
        assert_eq!(picked.len(), 1);
    }
}
