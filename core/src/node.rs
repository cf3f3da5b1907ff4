//! The node-level machine: membership, clock and envelope together.
//!
//! Owns [`Node`], what a driver (or a custom event loop) drives. It wraps every outgoing
//! gossip datagram in cohort's envelope stamped with the local hybrid logical clock (or sends
//! bare chitchat datagrams in compatible mode), accepts both forms on receipt, observes the
//! sender's timestamp, and reports peers whose clocks are beyond the drift bound. It never does
//! I/O and never reads a clock: `now` (monotonic) and `wall` (wall clock) are arguments.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::{
    ClockError, DEFAULT_MAX_DRIFT, HlcConfig, NodeTag, SharedHlc, Timestamp, WallTime,
};
use crate::membership::{HandleError, Membership, MembershipConfig, MembershipEvent, Transmit};
use crate::wire::{self, DecodeError};

/// Settings of a [`Node`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The membership settings.
    pub membership: MembershipConfig,
    /// How far ahead of the local wall clock a peer's timestamp may be. Default 500 ms.
    pub max_clock_drift: Duration,
    /// Send bare chitchat datagrams (no envelope, no timestamp) so that real chitchat nodes
    /// can read them. Default `false`. Received datagrams are accepted in both forms either way.
    pub chitchat_compatible: bool,
}

impl NodeConfig {
    /// The defaults around `membership`.
    #[must_use]
    pub fn new(membership: MembershipConfig) -> Self {
        Self {
            membership,
            max_clock_drift: DEFAULT_MAX_DRIFT,
            chitchat_compatible: false,
        }
    }
}

/// Something the application should know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    /// A membership event.
    Membership(MembershipEvent),
    /// A datagram carried a timestamp the clock refused (too far ahead); the clock did not
    /// move. The datagram's gossip was still processed.
    ClockSkew {
        /// The sender's address.
        from: SocketAddr,
        /// The timestamp it carried.
        remote: Timestamp,
        /// Why the clock refused it.
        error: ClockError,
    },
}

/// Why a received datagram was not processed. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The bytes are neither a cohort envelope nor a chitchat datagram, or are malformed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl From<HandleError> for NodeError {
    fn from(e: HandleError) -> Self {
        match e {
            HandleError::Decode(d) => Self::Decode(d),
        }
    }
}

/// A cohort node's protocol state: gossip membership and the hybrid logical clock.
///
/// Drive it like [`Membership`]: feed [`handle_datagram`](Self::handle_datagram) and
/// [`handle_timeout`](Self::handle_timeout), then drain [`poll_transmit`](Self::poll_transmit)
/// (which stamps each datagram with the clock, hence its `wall` argument) and
/// [`poll_event`](Self::poll_event), and re-arm the timer from
/// [`poll_timeout`](Self::poll_timeout). The clock is shared ([`Node::clock`]) so other tasks
/// can read it without going through the loop.
#[derive(Debug)]
pub struct Node {
    membership: Membership,
    clock: Arc<SharedHlc>,
    compatible: bool,
    skew_events: VecDeque<NodeEvent>,
    max_skew_events: usize,
    missed_skew_events: u64,
}

impl Node {
    /// A node started at `now`.
    #[must_use]
    pub fn new(mut config: NodeConfig, now: Instant) -> Self {
        if !config.chitchat_compatible {
            config.membership.reserved_bytes = config
                .membership
                .reserved_bytes
                .max(wire::ENVELOPE_OVERHEAD);
            // The envelope is written in place, in front of the chitchat message.
            config.membership.transmit_headroom = wire::ENVELOPE_OVERHEAD;
        } else {
            config.membership.transmit_headroom = 0;
        }
        let tag = NodeTag::from_node_id(&config.membership.node_id);
        let clock = SharedHlc::new(HlcConfig::new(tag).with_max_drift(config.max_clock_drift));
        let max_skew_events = config.membership.max_pending_events.max(1);
        Self {
            membership: Membership::new(config.membership, now),
            clock: Arc::new(clock),
            compatible: config.chitchat_compatible,
            skew_events: VecDeque::new(),
            max_skew_events,
            missed_skew_events: 0,
        }
    }

    /// The membership machine (queries).
    #[must_use]
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The membership machine (commands: set keys, leave, ...).
    pub fn membership_mut(&mut self) -> &mut Membership {
        &mut self.membership
    }

    /// The node's clock, shareable with other tasks.
    #[must_use]
    pub fn clock(&self) -> &Arc<SharedHlc> {
        &self.clock
    }

    /// Whether this node sends bare chitchat datagrams.
    #[must_use]
    pub fn is_chitchat_compatible(&self) -> bool {
        self.compatible
    }

    /// Processes a datagram received from `from` at `now`, when the wall clock read `wall`.
    ///
    /// Accepts a cohort envelope or a bare chitchat datagram. An envelope's timestamp is
    /// observed by the clock; one too far ahead is reported as [`NodeEvent::ClockSkew`] and
    /// the gossip is processed anyway. Bytes that do not decode give an error and change
    /// nothing.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        wall: WallTime,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), NodeError> {
        let datagram = wire::decode_datagram(bytes)?;
        if let Some(envelope) = datagram.envelope {
            if let Err(error) = self.clock.observe(envelope.timestamp, wall) {
                self.push_skew(NodeEvent::ClockSkew {
                    from,
                    remote: envelope.timestamp,
                    error,
                });
            }
        }
        self.membership
            .handle_message(now, from, datagram.version, datagram.message);
        Ok(())
    }

    /// Runs the gossip round due at `now`, if any.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.membership.handle_timeout(now);
    }

    /// The next datagram to send, wrapped in cohort's envelope stamped at wall time `wall`
    /// (bare in compatible mode).
    pub fn poll_transmit(&mut self, wall: WallTime) -> Option<Transmit> {
        let mut transmit = self.membership.poll_transmit()?;
        if self.compatible {
            return Some(transmit);
        }
        // The membership left `ENVELOPE_OVERHEAD` bytes free at the front: stamp them. A clock
        // at the end of its range cannot stamp: send the datagram bare rather than drop it (it
        // is still valid gossip).
        let stamped = self.clock.now(wall).ok().map(wire::envelope_bytes);
        match (stamped, transmit.payload.get_mut(..wire::ENVELOPE_OVERHEAD)) {
            (Some(envelope), Some(front)) => front.copy_from_slice(&envelope),
            _ => {
                transmit
                    .payload
                    .drain(..wire::ENVELOPE_OVERHEAD.min(transmit.payload.len()));
            }
        }
        Some(transmit)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        if self.missed_skew_events > 0 {
            let missed = std::mem::take(&mut self.missed_skew_events);
            return Some(NodeEvent::Membership(MembershipEvent::Lagged { missed }));
        }
        if let Some(event) = self.skew_events.pop_front() {
            return Some(event);
        }
        self.membership.poll_event().map(NodeEvent::Membership)
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.membership.poll_timeout()
    }

    /// Takes every output after an input, in the order a driver must use: each pending
    /// datagram (stamped at `wall`) onto `transmits`, then each event onto `events`, then the
    /// next deadline. What a driver does with them is its own; what the outputs mean for it
    /// (a stale member snapshot, a departure announced) comes back in [`Drained`].
    pub fn drain(
        &mut self,
        wall: WallTime,
        transmits: &mut Vec<Transmit>,
        events: &mut Vec<NodeEvent>,
    ) -> Drained {
        while let Some(transmit) = self.poll_transmit(wall) {
            transmits.push(transmit);
        }
        let mut drained = Drained {
            deadline: None,
            members_changed: false,
            leave_announced: false,
        };
        while let Some(event) = self.poll_event() {
            if let NodeEvent::Membership(m) = &event {
                drained.members_changed |= crate::members::changes_members(m);
                drained.leave_announced |= matches!(m, MembershipEvent::LeaveAnnounced);
            }
            events.push(event);
        }
        drained.deadline = self.poll_timeout();
        drained
    }

    fn push_skew(&mut self, event: NodeEvent) {
        if self.skew_events.len() >= self.max_skew_events {
            self.skew_events.pop_front();
            self.missed_skew_events += 1;
        }
        self.skew_events.push_back(event);
    }
}

/// What one [`Node::drain`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drained {
    /// When [`Node::handle_timeout`] is next due.
    pub deadline: Option<Instant>,
    /// An event drained changes the member list ([`crate::members::changes_members`]): a
    /// snapshot taken before is stale.
    pub members_changed: bool,
    /// The departure started by [`Membership::leave`] has been announced
    /// ([`MembershipEvent::LeaveAnnounced`] was drained).
    pub leave_announced: bool,
}

#[cfg(test)]
mod tests;
