//! Replica selection for a running node's handles.
//!
//! Owns [`Selection`]: the node's selector, the generator it draws from (seeded from the
//! node's configuration, never from the OS) and the topology cache, rebuilt once per
//! membership version. It never does I/O.

use std::sync::{Arc, Mutex};

use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::lock;
use crate::hash::splitmix64;
use crate::{
    Candidate, Consistency, Members, NodeConfig, NodeSelector, RendezvousSelector, SelectError,
    Topology,
};

/// What a driver's `select_nodes`, `select_for_key` and `topology` run on: a selector, its
/// seeded generator, and the [`Topology`] of the latest snapshot, built once per membership
/// version and shared.
///
/// ```
/// use std::sync::Arc;
/// use cohort_core::handle::Selection;
/// use cohort_core::{Consistency, DcAwareSelector, Node, NodeConfig, NodeId, SelectError};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = NodeConfig::new(NodeId::new("a", 1, "127.0.0.1:7000".parse()?));
/// let selection = Selection::for_node(Arc::new(DcAwareSelector), &config);
/// let node = Node::new(config, std::time::Instant::now())?;
/// // Alone: no other member to pick.
/// assert!(matches!(
///     selection.select_nodes(&node.members(), Consistency::One),
///     Err(SelectError::NotEnoughNodes { live: 0, required: 1 })
/// ));
/// // The local node owns every key.
/// assert_eq!(selection.select_for_key(&node.members(), b"k", 1)?[0].id(), node.id());
/// # Ok(())
/// # }
/// ```
pub struct Selection {
    selector: Arc<dyn NodeSelector + Send + Sync>,
    rng: Mutex<Xoshiro256PlusPlus>,
    topology: Mutex<Option<(u64, Arc<Topology>)>>,
}

impl std::fmt::Debug for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selection").finish_non_exhaustive()
    }
}

impl Selection {
    /// A selection with `selector`, drawing from a generator seeded with `rng_seed`.
    #[must_use]
    pub fn new(selector: Arc<dyn NodeSelector + Send + Sync>, rng_seed: u64) -> Self {
        Self {
            selector,
            rng: Mutex::new(Xoshiro256PlusPlus::seed_from_u64(rng_seed)),
            topology: Mutex::new(None),
        }
    }

    /// The selection of the node `config` sets up: its generator is derived from the node's
    /// seed ([`NodeConfig::rng_seed`]) and independent of the node's own.
    #[must_use]
    pub fn for_node(selector: Arc<dyn NodeSelector + Send + Sync>, config: &NodeConfig) -> Self {
        Self::new(selector, splitmix64(config.rng_seed))
    }

    /// The topology of `members` (the live members as candidates), cached while the
    /// membership version stays the same.
    #[must_use]
    pub fn topology(&self, members: &Members) -> Arc<Topology> {
        let mut cache = lock(&self.topology);
        if let Some((version, topology)) = &*cache {
            if *version == members.version() {
                return Arc::clone(topology);
            }
        }
        let topology = Arc::new(members.topology());
        *cache = Some((members.version(), Arc::clone(&topology)));
        topology
    }

    /// Live members of `members` for a request at `consistency`, picked by the selector (the
    /// local node is never picked; see [`Consistency`] for the exact counts).
    ///
    /// # Errors
    ///
    /// [`SelectError::NotEnoughNodes`] when too few members are live.
    pub fn select_nodes(
        &self,
        members: &Members,
        consistency: Consistency,
    ) -> Result<Vec<Candidate>, SelectError> {
        let topology = self.topology(members);
        let mut rng = lock(&self.rng);
        let picked = self.selector.select(&topology, consistency, &mut *rng)?;
        Ok(picked.into_iter().cloned().collect())
    }

    /// The `n` owners of `key` among the live members of `members`, the local node included,
    /// by rendezvous hashing ([`RendezvousSelector`]), highest score first.
    ///
    /// # Errors
    ///
    /// [`SelectError::NotEnoughNodes`] when fewer than `n` members are live.
    pub fn select_for_key(
        &self,
        members: &Members,
        key: &[u8],
        n: usize,
    ) -> Result<Vec<Candidate>, SelectError> {
        let topology = self.topology(members);
        let owners = RendezvousSelector.select_for_key(&topology, key, n)?;
        Ok(owners.into_iter().cloned().collect())
    }
}
