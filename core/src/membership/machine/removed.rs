//! Bounded memory of garbage-collected nodes, so that stale gossip does not bring them back
//! (and nothing brings back one removed for good: a superseded generation, or one that left).

use std::collections::{HashMap, VecDeque};

use crate::NodeId;

/// Garbage-collected nodes and their last heartbeat, the oldest forgotten first past a
/// capacity ([`MembershipConfig::removed_nodes_remembered`](crate::membership::MembershipConfig::removed_nodes_remembered)).
#[derive(Clone, Debug, Default)]
pub(super) struct Removed {
    order: VecDeque<NodeId>,
    heartbeats: HashMap<NodeId, u64>,
}

impl Removed {
    /// The heartbeat remembered for a node removed for good: no heartbeat is newer.
    pub(super) const FOR_GOOD: u64 = u64::MAX;

    pub(super) fn insert(&mut self, id: NodeId, heartbeat: u64, capacity: usize) {
        if capacity == 0 {
            return;
        }
        if self.heartbeats.insert(id.clone(), heartbeat).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > capacity {
            if let Some(old) = self.order.pop_front() {
                self.heartbeats.remove(&old);
            }
        }
    }

    /// The last heartbeat of `id` when it was removed, if it is remembered.
    pub(super) fn get(&self, id: &NodeId) -> Option<u64> {
        self.heartbeats.get(id).copied()
    }

    /// How many removed nodes are remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    pub(super) fn remove(&mut self, id: &NodeId) {
        if self.heartbeats.remove(id).is_some() {
            self.order.retain(|x| x != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn the_oldest_is_forgotten_past_the_capacity() {
        let id = |i: u16| NodeId::new("n", 1, SocketAddr::from(([127, 0, 0, 1], i)));
        let mut removed = Removed::default();
        for i in 0..4 {
            removed.insert(id(i), u64::from(i), 3);
        }
        assert_eq!(removed.get(&id(0)), None);
        assert_eq!(removed.get(&id(3)), Some(3));
        removed.remove(&id(3));
        assert_eq!(removed.get(&id(3)), None);
        removed.insert(id(9), 9, 0);
        assert_eq!(removed.get(&id(9)), None, "capacity 0 remembers nothing");
    }
}
