//! The leave sub-protocol: a node announces its graceful departure to the peers it can reach
//! and knows when that announcement went out.

use std::net::SocketAddr;
use std::time::Instant;

use super::Membership;
use crate::membership::{LEAVING_KEY, MemberStatus};
use crate::random::shuffle;

/// A departure in progress.
#[derive(Clone, Debug)]
pub(super) struct Leaving {
    /// The contacted peers that have not answered yet (an answer is a SynAck, to which we
    /// reply with an Ack carrying the leaving key).
    pending: Vec<SocketAddr>,
    /// Whether a SynAck (from anyone) was answered since the leave began.
    answered: bool,
    pub(super) announced: bool,
    /// After this, one answer is enough (see [`Membership::leave`]).
    one_answer_after: Instant,
}

impl Membership {
    /// Announces a graceful departure: sets [`LEAVING_KEY`] and starts handshakes at once with
    /// up to `leave_fanout` of the peers this node knows (live ones first, then joining or
    /// failed ones: whatever their detector status). The departure counts as announced
    /// ([`leave_announced`](Self::leave_announced)) when it has been sent to every one of them,
    /// or to at least one once a gossip interval has passed since `now` (a contacted peer that
    /// is gone, or slow, does not hold the departure up; the others learn it by gossip), or at
    /// once when it knows no peer at all (nobody to tell). Peers see this node as [`MemberStatus::Left`] as soon
    /// as the key reaches them. A second call does nothing.
    pub fn leave(&mut self, now: Instant) {
        if self.leaving.is_some() {
            return;
        }
        self.own_state().set(LEAVING_KEY, "1");
        let me = self.config.node_id.clone();
        if let Some((_, peer)) = self.state.entry_mut(&me) {
            peer.status = MemberStatus::Left;
        }
        self.members_version += 1;
        // Every peer this node knows of is told, whatever its detector says: live peers first,
        // then the others (a peer still `Joining` here may well see this node live, and a
        // failed one may be back), each group in random order, up to the fan-out.
        let mut targets: Vec<SocketAddr> = self.live_peer_addrs();
        targets.sort_unstable();
        targets.dedup();
        shuffle(&mut self.rng, &mut targets);
        let mut others = self.known_peer_addrs();
        others.retain(|a| !targets.contains(a));
        if !others.is_empty() {
            shuffle(&mut self.rng, &mut others);
            targets.extend(others);
        }
        targets.truncate(self.config.leave_fanout.max(1));
        self.leaving = Some(Leaving {
            announced: targets.is_empty(),
            pending: targets.clone(),
            answered: false,
            one_answer_after: now + self.config.gossip_interval,
        });
        for addr in targets {
            self.send_syn(addr);
        }
    }

    /// Whether this node is leaving ([`leave`](Self::leave) was called).
    #[must_use]
    pub fn is_leaving(&self) -> bool {
        self.leaving.is_some()
    }

    /// Whether the departure started by [`leave`](Self::leave) has been announced.
    #[must_use]
    pub fn leave_announced(&self) -> bool {
        self.leaving.as_ref().is_some_and(|l| l.announced)
    }

    /// A SynAck from `from` was answered (with an Ack that carries the leaving key, if leaving).
    pub(super) fn note_leave_answer(&mut self, from: SocketAddr, now: Instant) {
        if let Some(leaving) = &mut self.leaving {
            leaving.answered = true;
            if let Some(i) = leaving.pending.iter().position(|a| *a == from) {
                leaving.pending.swap_remove(i);
            }
        }
        self.maybe_announce_left(now);
    }

    /// Marks the departure announced if it went to every contacted peer, or to one and the
    /// wait for the others is over.
    pub(super) fn maybe_announce_left(&mut self, now: Instant) {
        if let Some(leaving) = &mut self.leaving {
            let done =
                leaving.pending.is_empty() || (leaving.answered && now >= leaving.one_answer_after);
            leaving.announced |= done;
        }
    }

    /// When the departure will count as announced without another answer, if it is waiting
    /// for that.
    pub(super) fn leave_deadline(&self) -> Option<Instant> {
        self.leaving
            .as_ref()
            .filter(|l| !l.announced && l.answered)
            .map(|l| l.one_answer_after)
    }
}
