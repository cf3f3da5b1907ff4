//! Which members heard of for the first time are believed: the members a sender introduced
//! that never contacted this node themselves are counted against that sender
//! ([`StateLimits::max_unconfirmed_per_sender`](crate::membership::StateLimits::max_unconfirmed_per_sender)).
//!
//! A real member gossips: sooner or later it sends this node a datagram from its own gossip
//! address, which confirms it. A made-up member never does, so a peer that makes members up
//! (or relays a forger's) is believed only up to the bound. Memory: one entry per unconfirmed
//! member, and members are bounded.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::NodeId;

/// See the module documentation.
#[derive(Clone, Debug, Default)]
pub(super) struct Admission {
    /// Each unconfirmed member and the sender that introduced it.
    introducer: HashMap<NodeId, SocketAddr>,
    /// The unconfirmed members at each gossip address (one name may have several
    /// generations there).
    at_addr: HashMap<SocketAddr, Vec<NodeId>>,
    /// How many unconfirmed members each sender introduced.
    introduced: HashMap<SocketAddr, usize>,
}

impl Admission {
    /// A datagram came from `from`: the members at that address are confirmed.
    pub(super) fn confirm(&mut self, from: SocketAddr) {
        if self.at_addr.is_empty() {
            return;
        }
        if let Some(ids) = self.at_addr.remove(&from) {
            for id in ids {
                if let Some(sender) = self.introducer.remove(&id) {
                    self.release(sender);
                }
            }
        }
    }

    /// How many unconfirmed members `sender` introduced.
    pub(super) fn introduced_by(&self, sender: SocketAddr) -> usize {
        self.introduced.get(&sender).copied().unwrap_or(0)
    }

    /// `id` was added on `sender`'s word, and has not contacted this node.
    pub(super) fn introduce(&mut self, id: NodeId, sender: SocketAddr) {
        if id.gossip_addr() == sender || self.introducer.contains_key(&id) {
            return;
        }
        self.at_addr
            .entry(id.gossip_addr())
            .or_default()
            .push(id.clone());
        self.introducer.insert(id, sender);
        *self.introduced.entry(sender).or_default() += 1;
    }

    /// `id` was collected: it no longer counts.
    pub(super) fn forget(&mut self, id: &NodeId) {
        let Some(sender) = self.introducer.remove(id) else {
            return;
        };
        self.release(sender);
        if let Some(ids) = self.at_addr.get_mut(&id.gossip_addr()) {
            ids.retain(|other| other != id);
            if ids.is_empty() {
                self.at_addr.remove(&id.gossip_addr());
            }
        }
    }

    /// The number of unconfirmed members.
    #[cfg(test)]
    pub(super) fn unconfirmed(&self) -> usize {
        self.introducer.len()
    }

    fn release(&mut self, sender: SocketAddr) {
        if let Some(count) = self.introduced.get_mut(&sender) {
            *count -= 1;
            if *count == 0 {
                self.introduced.remove(&sender);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, port: u16) -> NodeId {
        NodeId::new(name, 1, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn members_count_against_their_introducer_until_they_speak_or_are_collected() {
        let sender: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let mut admission = Admission::default();
        admission.introduce(id("a", 1), sender);
        admission.introduce(id("b", 2), sender);
        admission.introduce(id("b", 2), sender);
        // The sender itself is never unconfirmed on its own word.
        admission.introduce(NodeId::new("s", 1, sender), sender);
        assert_eq!(admission.introduced_by(sender), 2);
        admission.confirm("127.0.0.1:1".parse().unwrap());
        assert_eq!(admission.introduced_by(sender), 1);
        admission.forget(&id("b", 2));
        assert_eq!(admission.introduced_by(sender), 0);
        assert_eq!(admission.unconfirmed(), 0);
        assert!(admission.at_addr.is_empty() && admission.introduced.is_empty());
    }
}
