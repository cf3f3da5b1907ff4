//! The delta a peer is sent: which nodes' versions it lacks, in chitchat's order, within the
//! datagram budget.

use std::time::Instant;

use rand_core::Rng;

use super::Membership;
use crate::NodeId;
use crate::membership::{NodeState, Staleness};
use crate::wire::DeltaWriter;

impl Membership {
    /// Writes, within `budget` bytes, the delta that the peer whose digest is in `self.aligned`
    /// lacks (chitchat's order: nodes the peer must take from scratch first, fewest versions
    /// first; then the most stale; ties in random order).
    pub(super) fn write_delta(&mut self, budget: usize, now: Instant, out: &mut Vec<u8>) {
        /// A node the peer lacks something of.
        struct Pending<'a> {
            tie: u64,
            from_scratch: bool,
            id: &'a NodeId,
            state: &'a NodeState,
            stale: Staleness<'a>,
        }
        let mut pending: Vec<Pending<'_>> = Vec::new();
        let fd = &self.config.failure_detector;
        for (i, (id, state, meta)) in self.state.iter_with_meta().enumerate() {
            if meta.detector.is_scheduled_for_deletion(now, fd) {
                continue;
            }
            let peer_entry = self.aligned.get(i).copied().flatten();
            let Some(stale) = state.stale_for(peer_entry.as_ref()) else {
                continue;
            };
            pending.push(Pending {
                tie: self.rng.next_u64(),
                from_scratch: stale.from_version_excluded == 0,
                id,
                state,
                stale,
            });
        }
        // From-scratch nodes first (lowest max_version first), then the most stale first, then
        // the random tie-break.
        pending.sort_by(|a, b| {
            b.from_scratch
                .cmp(&a.from_scratch)
                .then_with(|| {
                    if a.from_scratch {
                        a.state.max_version().cmp(&b.state.max_version())
                    } else {
                        b.stale.key_values.len().cmp(&a.stale.key_values.len())
                    }
                })
                .then(a.tie.cmp(&b.tie))
        });
        let mut writer = DeltaWriter::with_compression(budget, self.config.compression);
        'nodes: for Pending {
            id, state, stale, ..
        } in pending
        {
            if !writer.add_node(id, state.last_gc_version(), stale.from_version_excluded) {
                break;
            }
            if stale.key_values.is_empty() {
                if state.max_version() > 0 && !writer.add_set_max_version(state.max_version()) {
                    break;
                }
                continue;
            }
            for (key, value) in stale.key_values {
                if !writer.add_key_value(key, &value.value, value.version, value.status) {
                    break 'nodes;
                }
            }
        }
        writer.finish(out);
    }
}
