//! Replica selection.
//!
//! Owns the [`NodeSelector`] trait, the [`Consistency`] levels, the [`Topology`] snapshot that
//! selectors read, and the built-in selectors: [`DcAwareSelector`], [`RendezvousSelector`] and
//! [`RandomSelector`]. Selection is a pure function of a snapshot and a caller-supplied random
//! number generator: this module never reads membership state itself, never caches results
//! and never draws OS randomness.
//!
//! # Semantics shared by every level
//!
//! A selection names the *other* members a request should go to. The local node is never part
//! of the result: the caller handles its own copy and counts it as one replica. Counts are
//! taken over the members in the [`Topology`], which is the live view the caller built; they are
//! fan-out counts over that view, not quorum-intersection guarantees over a fixed replica set.
//!
//! ```
//! use cohort_core::{Candidate, Consistency, DcAwareSelector, NodeId, NodeSelector, Topology};
//! use rand_xoshiro::Xoshiro256PlusPlus;
//! use rand_core::SeedableRng;
//!
//! let member = |name: &str, port: u16, dc: &str| {
//!     let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
//!     Candidate::new(NodeId::new(name, 1, addr), addr, dc)
//! };
//! let topology = Topology::new(
//!     member("a", 7000, "eu"),
//!     [member("b", 7001, "eu"), member("c", 7002, "us"), member("d", 7003, "ap")],
//! );
//! let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
//! let picked = DcAwareSelector::default().select(&topology, Consistency::Two, &mut rng)?;
//! // Two replicas, both outside the local data center "eu", in two different data centers.
//! assert_eq!(picked.len(), 2);
//! assert!(picked.iter().all(|m| m.data_center().as_str() != "eu"));
//! assert_ne!(picked[0].data_center(), picked[1].data_center());
//! # Ok::<(), cohort_core::SelectError>(())
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use rand_core::Rng;

use crate::NodeId;

mod dc_aware;
mod random;
mod rendezvous;
#[cfg(test)]
mod tests;

pub use dc_aware::DcAwareSelector;
pub use random::RandomSelector;
pub use rendezvous::RendezvousSelector;

/// How many replicas a request needs, and where.
///
/// Every count below is a number of *other* members: the local node is never selected and
/// counts as one replica on its own. `n` is the number of members in the [`Topology`]
/// (the local node included), `d` the number in one data center (the local node included when
/// it is the local data center).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Consistency {
    /// No other member: the request is handled locally only. Always succeeds with an empty
    /// selection.
    None,
    /// Exactly 1 other member. Fails with [`SelectError::NotEnoughNodes`] when there is none.
    One,
    /// Exactly 2 other members. Fails when fewer than 2 exist.
    Two,
    /// Exactly 3 other members. Fails when fewer than 3 exist.
    Three,
    /// A majority of all members counting the local node: exactly `n / 2` others (so that,
    /// with the local node, `n / 2 + 1` of `n` hold the data). Never fails on a non-empty
    /// topology.
    Quorum,
    /// A majority of the local data center counting the local node: exactly `d / 2` other
    /// members of the local data center, none elsewhere. Never fails (a local data center of
    /// one gives an empty selection).
    LocalQuorum,
    /// A majority in every data center: `d / 2` others in the local data center (the local
    /// node being the `+ 1`) and `d / 2 + 1` in each remote data center. Never fails.
    EachQuorum,
    /// Every other member. Never fails.
    All,
}

impl Consistency {
    /// Every level, in declaration order.
    pub const ALL_LEVELS: [Self; 8] = [
        Self::None,
        Self::One,
        Self::Two,
        Self::Three,
        Self::Quorum,
        Self::LocalQuorum,
        Self::EachQuorum,
        Self::All,
    ];

    /// The number of other members this level requires in `topology`, as documented on each
    /// variant.
    ///
    /// A selector that returns `Ok` returns exactly this many members; a level that cannot be
    /// met gives [`SelectError::NotEnoughNodes`] with this number as `required`.
    #[must_use]
    pub fn required(self, topology: &Topology) -> usize {
        match self {
            Self::None => 0,
            Self::One => 1,
            Self::Two => 2,
            Self::Three => 3,
            Self::Quorum => topology.len() / 2,
            Self::LocalQuorum => topology.local_data_center_len() / 2,
            Self::EachQuorum => topology
                .data_centers()
                .map(|dc| {
                    if dc.is_local() {
                        dc.len_with_local() / 2
                    } else {
                        dc.len_with_local() / 2 + 1
                    }
                })
                .sum(),
            Self::All => topology.len() - 1,
        }
    }
}

impl Consistency {
    /// The level's name, as written in this enum (`"Quorum"`, `"LocalQuorum"`, ...).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::One => "One",
            Self::Two => "Two",
            Self::Three => "Three",
            Self::Quorum => "Quorum",
            Self::LocalQuorum => "LocalQuorum",
            Self::EachQuorum => "EachQuorum",
            Self::All => "All",
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Why a selection failed. Selection never changes any state, so an error leaves nothing to
/// undo.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// The topology has fewer eligible members than the level needs.
    #[error("not enough nodes: {live} eligible, {required} required")]
    NotEnoughNodes {
        /// How many eligible members there were: for a [`NodeSelector`], the members other
        /// than the local node; for [`RendezvousSelector::select_for_key`], every member.
        live: usize,
        /// How many the level needed.
        required: usize,
    },
}

/// The name of a data center (or availability zone, rack: any failure domain).
///
/// Cheap to clone; compares and orders as its string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataCenter(Arc<str>);

impl DataCenter {
    /// The name as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for DataCenter {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl From<String> for DataCenter {
    fn from(s: String) -> Self {
        Self(s.into())
    }
}

impl From<Arc<str>> for DataCenter {
    fn from(s: Arc<str>) -> Self {
        Self(s)
    }
}

impl fmt::Debug for DataCenter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for DataCenter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A live member as selectors see it: its identity, the address requests go to, and its data
/// center.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Candidate {
    id: NodeId,
    addr: SocketAddr,
    data_center: DataCenter,
}

impl Candidate {
    /// A member with identity `id`, reachable for requests at `addr`, located in `data_center`.
    pub fn new(id: NodeId, addr: SocketAddr, data_center: impl Into<DataCenter>) -> Self {
        Self {
            id,
            addr,
            data_center: data_center.into(),
        }
    }

    /// The member's identity.
    #[must_use]
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// The address requests to this member go to (its RPC address).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The member's data center.
    #[must_use]
    pub fn data_center(&self) -> &DataCenter {
        &self.data_center
    }
}

/// One data center's group inside a [`Topology`].
#[derive(Clone, Debug)]
struct Group {
    name: DataCenter,
    /// Indices into `Topology::members`, ascending, the local node excluded.
    others: Vec<usize>,
    /// Whether the local node belongs to this data center.
    local: bool,
}

/// A snapshot of the live members, indexed for selection.
///
/// Built once per membership change and then shared by every selection, so that selecting is
/// cheap. It holds the local member and every other live member, deduplicated by [`NodeId`] and
/// ordered by it, grouped by data center (groups ordered by name). A member whose id equals the
/// local member's is ignored: the local node is always the one given as `local`.
#[derive(Clone, Debug)]
pub struct Topology {
    /// Every member, ascending by id, the local one included.
    members: Vec<Candidate>,
    /// `NodeId::stable_hash` of each member, parallel to `members`.
    hashes: Vec<u64>,
    /// Index of the local member in `members`.
    local: usize,
    /// Groups ascending by data-center name.
    groups: Vec<Group>,
    /// Index of the local data center in `groups`.
    local_group: usize,
}

impl Topology {
    /// Indexes `local` and `others` for selection.
    ///
    /// Duplicate ids among `others` keep their first occurrence; an entry with the local id is
    /// dropped.
    pub fn new(local: Candidate, others: impl IntoIterator<Item = Candidate>) -> Self {
        let mut members: Vec<Candidate> = others.into_iter().collect();
        members.push(local.clone());
        // Stable sort keeps the first occurrence of a duplicate first; the local entry was
        // pushed last, so it must win over any same-id entry: handle it explicitly.
        members.sort_by(|a, b| a.id.cmp(&b.id));
        members.dedup_by(|later, earlier| later.id == earlier.id);
        let local_index = members
            .binary_search_by(|m| m.id.cmp(&local.id))
            .expect("the local member was inserted above");
        members[local_index] = local;

        let hashes = members.iter().map(|m| m.id.stable_hash()).collect();

        let mut names: Vec<&DataCenter> = members.iter().map(|m| &m.data_center).collect();
        names.sort();
        names.dedup();
        let mut groups: Vec<Group> = names
            .into_iter()
            .map(|name| Group {
                name: name.clone(),
                others: Vec::new(),
                local: false,
            })
            .collect();
        for (i, m) in members.iter().enumerate() {
            let g = groups
                .binary_search_by(|g| g.name.cmp(&m.data_center))
                .expect("every data center has a group");
            if i == local_index {
                groups[g].local = true;
            } else {
                groups[g].others.push(i);
            }
        }
        let local_group = groups
            .iter()
            .position(|g| g.local)
            .expect("the local member has a group");
        Self {
            members,
            hashes,
            local: local_index,
            groups,
            local_group,
        }
    }

    /// The local member.
    #[must_use]
    pub fn local(&self) -> &Candidate {
        &self.members[self.local]
    }

    /// Every member, the local one included, ascending by id.
    #[must_use]
    pub fn members(&self) -> &[Candidate] {
        &self.members
    }

    /// Every member other than the local one, ascending by id.
    pub fn others(&self) -> impl Iterator<Item = &Candidate> + '_ {
        self.members
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i != self.local)
            .map(|(_, m)| m)
    }

    /// The number of members, the local one included (always at least 1).
    #[must_use]
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always `false`: a topology holds at least the local member.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The number of members other than the local one.
    #[must_use]
    pub fn others_len(&self) -> usize {
        self.members.len() - 1
    }

    /// The number of members in the local data center, the local node included.
    #[must_use]
    pub fn local_data_center_len(&self) -> usize {
        self.groups[self.local_group].others.len() + 1
    }

    /// The data centers, ascending by name.
    pub fn data_centers(&self) -> impl ExactSizeIterator<Item = DataCenterView<'_>> + '_ {
        self.groups.iter().map(move |group| DataCenterView {
            topology: self,
            group,
        })
    }

    /// The local node's data center.
    #[must_use]
    pub fn local_data_center(&self) -> DataCenterView<'_> {
        DataCenterView {
            topology: self,
            group: &self.groups[self.local_group],
        }
    }

    /// The stable hash ([`NodeId::stable_hash`]) of `members()[index]`.
    ///
    /// # Panics
    ///
    /// When `index >= self.len()`.
    #[must_use]
    pub fn member_hash(&self, index: usize) -> u64 {
        self.hashes[index]
    }

    /// The index of the local member in [`members`](Self::members).
    #[must_use]
    pub fn local_index(&self) -> usize {
        self.local
    }
}

/// A view of one data center of a [`Topology`].
#[derive(Clone, Copy, Debug)]
pub struct DataCenterView<'a> {
    topology: &'a Topology,
    group: &'a Group,
}

impl<'a> DataCenterView<'a> {
    /// The data center's name.
    #[must_use]
    pub fn name(&self) -> &'a DataCenter {
        &self.group.name
    }

    /// Whether the local node is in this data center.
    #[must_use]
    pub fn is_local(&self) -> bool {
        self.group.local
    }

    /// The number of members in this data center, the local node included if it is here.
    #[must_use]
    pub fn len_with_local(&self) -> usize {
        self.group.others.len() + usize::from(self.group.local)
    }

    /// The number of members in this data center other than the local node.
    #[must_use]
    pub fn others_len(&self) -> usize {
        self.group.others.len()
    }

    /// The `i`-th member of this data center other than the local node (ascending by id).
    ///
    /// # Panics
    ///
    /// When `i >= self.others_len()`.
    #[must_use]
    pub fn other(&self, i: usize) -> &'a Candidate {
        &self.topology.members[self.group.others[i]]
    }

    /// The members of this data center other than the local node, ascending by id.
    pub fn others(&self) -> impl ExactSizeIterator<Item = &'a Candidate> + 'a {
        let members = &self.topology.members;
        self.group.others.iter().map(move |&i| &members[i])
    }
}

/// Picks the members a request goes to.
///
/// Implementations must be pure: the result depends only on `topology`, `consistency`, the
/// selector's own configuration and the numbers drawn from `rng`. They must return exactly
/// [`Consistency::required`] members, all distinct, none of them the local node, or
/// [`SelectError::NotEnoughNodes`]. The trait is object safe, so a node can hold a
/// `Box<dyn NodeSelector>`.
///
/// ```
/// use cohort_core::{Candidate, Consistency, NodeSelector, SelectError, Topology};
/// use cohort_core::rand_core::Rng; // re-exported (also as `cohort_tokio::rand_core`)
///
/// /// Always the lowest ids: a (bad) selector written outside the crate.
/// struct Lowest;
///
/// impl NodeSelector for Lowest {
///     fn select<'a>(
///         &self,
///         topology: &'a Topology,
///         consistency: Consistency,
///         _rng: &mut dyn Rng,
///     ) -> Result<Vec<&'a Candidate>, SelectError> {
///         let required = consistency.required(topology);
///         if topology.others_len() < required {
///             return Err(SelectError::NotEnoughNodes { live: topology.others_len(), required });
///         }
///         Ok(topology.others().take(required).collect())
///     }
/// }
/// ```
pub trait NodeSelector {
    /// The members `consistency` asks for, drawn from `topology`.
    fn select<'a>(
        &self,
        topology: &'a Topology,
        consistency: Consistency,
        rng: &mut dyn Rng,
    ) -> Result<Vec<&'a Candidate>, SelectError>;
}

impl<S: NodeSelector + ?Sized> NodeSelector for Box<S> {
    fn select<'a>(
        &self,
        topology: &'a Topology,
        consistency: Consistency,
        rng: &mut dyn Rng,
    ) -> Result<Vec<&'a Candidate>, SelectError> {
        (**self).select(topology, consistency, rng)
    }
}

pub(crate) use crate::random::index_below;

/// Fails with `NotEnoughNodes` unless `available >= required`.
pub(crate) fn ensure_enough(available: usize, required: usize) -> Result<(), SelectError> {
    if available < required {
        Err(SelectError::NotEnoughNodes {
            live: available,
            required,
        })
    } else {
        Ok(())
    }
}
