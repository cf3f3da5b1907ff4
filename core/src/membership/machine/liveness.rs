//! Liveness: turning the failure detector's verdicts into member statuses and events, the
//! self-suspicion guard that holds deaths when the local node is the one starved or cut off,
//! and the collection of nodes dead for the whole grace period.

use std::time::{Duration, Instant};

use super::Membership;
use crate::membership::{Liveness, MemberStatus};
use crate::{Event, NodeId};

impl Membership {
    /// Re-evaluates every peer's liveness: at each round, and `between_rounds` when a peer's
    /// deadline passes or a joining or failed peer was heard.
    pub(super) fn update_liveness(&mut self, now: Instant, between_rounds: bool) {
        let hold = if between_rounds {
            // Between rounds a death is declared only while the cluster is heard from: one peer
            // going silent among others that talk is a death, but when nothing has arrived for
            // a round the decision waits for the round and its self-suspicion guard (deaths
            // then come one deadline at a time, which the mass-death rule would not see).
            let heard = self
                .last_received
                .is_some_and(|at| now.saturating_duration_since(at) < self.config.gossip_interval);
            !heard
                || self.deaths_held_until.is_some_and(|until| now < until)
                || self.silent_hold_since.is_some()
        } else {
            let (live_before, dying) = self.census(now);
            self.deaths_held(now, dying, live_before)
        };
        let fd = &self.config.failure_detector;
        let me = &self.config.node_id;
        let predicate = self.config.liveness_predicate.as_ref();
        let mut changes: Vec<(NodeId, MemberStatus, MemberStatus)> = Vec::new();
        let mut next_check: Option<Instant> = None;
        for (id, state, peer) in self.state.iter_with_meta_mut() {
            if id == me {
                continue;
            }
            let status = peer.status;
            if status == MemberStatus::Left {
                // A departed node stays Left; the detector still tracks it for collection.
                peer.detector.update_liveness(now, fd);
                continue;
            }
            if hold && matches!(status, MemberStatus::Live | MemberStatus::Unready) {
                continue;
            }
            let (liveness, deadline) = peer.detector.update(now, fd);
            let ready = predicate.is_none_or(|predicate| predicate(state));
            let next = match (liveness.is_live(), ready) {
                (true, true) => MemberStatus::Live,
                (true, false) => MemberStatus::Unready,
                (false, _) if matches!(liveness, Liveness::BecameDead) => MemberStatus::Failed,
                (false, _) if status == MemberStatus::Joining => MemberStatus::Joining,
                (false, _) => MemberStatus::Failed,
            };
            if next != status {
                peer.status = next;
                changes.push((id.clone(), status, next));
            }
            if !hold && matches!(next, MemberStatus::Live | MemberStatus::Unready) {
                if let Some(deadline) = deadline {
                    next_check = Some(next_check.map_or(deadline, |c| c.min(deadline)));
                }
            }
        }
        // Just after the earliest deadline (phi must exceed the threshold), and never at `now`
        // again: a deadline already past (rounding) is looked at a millisecond later.
        self.next_liveness_check = next_check.map(|deadline| {
            (deadline + Duration::from_micros(1)).max(now + Duration::from_millis(1))
        });
        for (id, before, after) in changes {
            let Some(member) = self.member(&id) else {
                continue;
            };
            let event = match (before, after) {
                (MemberStatus::Joining, MemberStatus::Live) => Event::Joined(member),
                (_, MemberStatus::Live) => Event::Recovered(member),
                (_, MemberStatus::Unready) => Event::Unready(member),
                (_, MemberStatus::Failed) => Event::Failed(member),
                _ => continue,
            };
            self.push_event(event);
        }
    }

    /// What the detector says of the peers before a round acts on it (for the self-suspicion
    /// guard): how many are Live, and how many Live or Unready ones are past their time. The
    /// local node is not a peer: the detector never hears it.
    fn census(&self, now: Instant) -> (usize, usize) {
        let fd = &self.config.failure_detector;
        let me = &self.config.node_id;
        let (mut live, mut dying) = (0, 0);
        for (_, _, peer) in self.state.iter_with_meta().filter(|(id, _, _)| *id != me) {
            if peer.status == MemberStatus::Live {
                live += 1;
            }
            if matches!(peer.status, MemberStatus::Live | MemberStatus::Unready)
                && !peer.detector.is_on_time(now, fd)
            {
                dying += 1;
            }
        }
        (live, dying)
    }

    /// Whether deaths are held this round (self-suspicion).
    fn deaths_held(&mut self, now: Instant, dying: usize, live: usize) -> bool {
        if self.deaths_held_until.is_some_and(|until| now < until) {
            return true;
        }
        self.deaths_held_until = None;
        let silent_for = self
            .last_received
            .map_or(Duration::MAX, |at| now.saturating_duration_since(at));
        let quiet = silent_for > self.config.gossip_interval.saturating_mul(3);
        let mass = dying >= 2 && dying * 2 >= live;
        if quiet && mass {
            let since = *self.silent_hold_since.get_or_insert(now);
            if since == now {
                self.push_event(Event::SelfSuspected);
            }
            return now.saturating_duration_since(since) < self.config.self_suspicion_hold;
        }
        false
    }

    pub(super) fn collect_dead(&mut self, now: Instant) {
        let fd = &self.config.failure_detector;
        let me = &self.config.node_id;
        // A departed node is collected for good: that generation left and never comes back,
        // whatever heartbeat stale gossip (or the leaving process, still running) carries.
        let expired: Vec<(NodeId, bool)> = self
            .state
            .iter_with_meta()
            .filter(|(id, _, peer)| *id != me && peer.detector.is_expired(now, fd))
            .map(|(id, _, peer)| (id.clone(), peer.status == MemberStatus::Left))
            .collect();
        for (id, departed) in expired {
            self.remove_node(&id, departed);
        }
    }
}
