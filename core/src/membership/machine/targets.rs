//! Who a gossip round contacts: chitchat's rules for choosing live peers, a dead node and a
//! seed.

use std::net::SocketAddr;

use rand_core::Rng;

use super::Membership;
use crate::membership::MemberStatus;
use crate::random::{index_below, sample};

impl Membership {
    /// The gossip addresses of the live peers, in id order (an address shared by two ids may
    /// appear twice; targets are deduplicated when sent).
    pub(super) fn live_peer_addrs(&self) -> Vec<SocketAddr> {
        let me = self.config.node_id.gossip_addr();
        self.state
            .iter_with_meta()
            .filter(|(id, _, peer)| {
                id.gossip_addr() != me
                    && peer.detector.is_live()
                    && peer.status != MemberStatus::Left
            })
            .map(|(id, _, _)| id.gossip_addr())
            .collect()
    }

    /// The gossip addresses of every known peer that has not left, whatever its detector
    /// status; sorted, each once.
    pub(super) fn known_peer_addrs(&self) -> Vec<SocketAddr> {
        let me = self.config.node_id.gossip_addr();
        let mut addrs: Vec<SocketAddr> = self
            .state
            .iter_with_meta()
            .filter(|(id, _, peer)| id.gossip_addr() != me && peer.status != MemberStatus::Left)
            .map(|(id, _, _)| id.gossip_addr())
            .collect();
        addrs.sort_unstable();
        addrs.dedup();
        addrs
    }

    /// chitchat's round targets: up to `gossip_count` live peers (any known peer while none
    /// is live), a dead node with probability dead / (live + 1), and a seed when no chosen
    /// target is one or fewer live nodes than seeds are known. Sorted, each once.
    pub(super) fn round_targets(&mut self) -> Vec<SocketAddr> {
        let me = self.config.node_id.gossip_addr();
        let live = self.live_peer_addrs();
        let mut dead: Vec<SocketAddr> = self
            .state
            .iter_with_meta()
            .filter(|(_, _, peer)| {
                peer.detector.dead_since().is_some() && peer.status != MemberStatus::Left
            })
            .map(|(id, _, _)| id.gossip_addr())
            .filter(|a| *a != me)
            .collect();
        dead.sort_unstable();
        dead.dedup();
        // Kept without our own address, sorted and deduplicated (`normalize_seeds`).
        let seeds = &self.config.seeds;

        let mut targets: Vec<SocketAddr> = if live.is_empty() {
            // No live node yet: pick among every known peer.
            let peers: Vec<SocketAddr> = self
                .state
                .iter()
                .map(|(id, _)| id.gossip_addr())
                .filter(|a| *a != me)
                .collect();
            sample(&mut self.rng, &peers, self.config.gossip_count)
        } else {
            sample(&mut self.rng, &live, self.config.gossip_count)
        };
        if !dead.is_empty() {
            let draw = self.rng.next_u64() % (live.len() as u64 + 1);
            if draw < dead.len() as u64 {
                let pick = dead[index_below(&mut self.rng, dead.len())];
                targets.push(pick);
            }
        }
        if !seeds.is_empty() {
            let has_seed = targets.iter().any(|t| seeds.contains(t));
            if !has_seed || live.len() < seeds.len() {
                let pick = seeds[index_below(&mut self.rng, seeds.len())];
                if live.is_empty() {
                    targets.push(pick);
                } else {
                    let denominator = (live.len() + dead.len()) as u64;
                    if self.rng.next_u64() % denominator.max(1) < seeds.len() as u64 {
                        targets.push(pick);
                    }
                }
            }
        }
        targets.sort_unstable();
        targets.dedup();
        targets
    }
}
