//! The node-level machine: what a driver, the simulator or a custom event loop drives.
//!
//! Owns [`Node`]: the membership machine, the hybrid logical clock and cohort's envelope
//! together, the node's set-up ([`NodeConfig`], in [`config`]) and its leave. It wraps every
//! outgoing gossip datagram in cohort's envelope stamped with the local clock (or sends bare
//! chitchat datagrams in compatible mode), accepts both forms on receipt, observes the sender's
//! timestamp and reports peers whose clocks are beyond the drift bound. It never does I/O and
//! never reads a clock: `now` (monotonic) and `wall` (wall clock) are arguments.

pub mod config;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use self::config::{
    ConfigError, DEFAULT_CLUSTER_ID, DEFAULT_GOSSIP_INTERVAL, DEFAULT_LEAVE_TIMEOUT,
    DEFAULT_PROBE_INTERVAL, MAX_DURATION_SETTING, NodeConfig, Protocol, generation_at,
};
use crate::auth::{AUTH_TAG_LEN, ClusterKey, Keyring, KeyringError};
use crate::clock::{HlcConfig, NodeTag, SharedHlc, WallTime};
use crate::members::Members;
use crate::membership::cohort_mode::{self, CohortMembership};
use crate::membership::diagnostics::DiagnosticKind;
use crate::membership::{
    Diagnostics, KeyError, Member, MemberStatus, Membership, NodeState, Transmits,
};
use crate::wire::{self, DecodeError};
use crate::{Event, NodeId};

/// How a leave ended ([`Drained::left`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaveOutcome {
    /// The departure was sent to every peer contacted, or to at least one and a gossip
    /// interval passed: peers see this node as [`MemberStatus::Left`].
    Announced,
    /// [`NodeConfig::leave_timeout`] passed first (no peer answered). Peers that did not hear
    /// of the departure will see this node fail instead.
    TimedOut,
}

/// What one [`Node::drain`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Drained {
    /// When [`Node::handle_timeout`] is next due: arm the timer for it.
    pub deadline: Instant,
    /// The member list changed since the previous drain (a member first seen, a status, a key,
    /// this node's own commands, a member removed): a snapshot taken before is stale;
    /// [`Node::members`] gives the new one.
    pub members_changed: bool,
    /// Once the leave started by [`Node::leave`] is over, how it ended (reported by every
    /// drain from then on): the driver can close its sockets.
    pub left: Option<LeaveOutcome>,
}

/// A cohort node's protocol state: gossip membership, the hybrid logical clock and the leave.
///
/// # The loop
///
/// 1. Build it: [`Node::new`] from a [`NodeConfig`].
/// 2. Feed it: every datagram received on the gossip socket
///    ([`handle_datagram`](Self::handle_datagram)), and the timer when it fires
///    ([`handle_timeout`](Self::handle_timeout); early or repeated calls are harmless).
///    Commands ([`set`](Self::set), [`delete`](Self::delete), [`leave`](Self::leave), ...) are
///    inputs too.
/// 3. After each input, [`drain`](Self::drain): send the datagrams it gives (in order), hand
///    the events to the application, and arm the timer for [`Drained::deadline`].
/// 4. To stop: [`leave`](Self::leave), then keep feeding and draining until
///    [`Drained::left`] is set; then close the socket.
///
/// The crate root shows this loop in full. The clock is shared ([`Node::clock`]) so that other
/// tasks can read it without going through the loop.
#[derive(Debug)]
pub struct Node {
    machine: Machine,
    clock: Arc<SharedHlc>,
    compatible: bool,
    /// Signs outgoing datagrams and checks incoming ones, when gossip is authenticated.
    keyring: Option<Keyring>,
    leave_timeout: Duration,
    leave_deadline: Option<Instant>,
    left: Option<LeaveOutcome>,
    /// The members version the last drain saw.
    drained_version: u64,
}

/// The membership machine of the protocol chosen ([`NodeConfig::protocol`]).
#[derive(Debug)]
enum Machine {
    Chitchat(Box<Membership>),
    Cohort(Box<CohortMembership>),
}

/// Runs `$body` with `$m` bound to whichever machine `$machine` holds (both have the method).
macro_rules! with_machine {
    ($machine:expr, $m:ident => $body:expr) => {
        match $machine {
            Machine::Chitchat($m) => $body,
            Machine::Cohort($m) => $body,
        }
    };
}

impl Node {
    /// A node started at `now`, as `config` says. Its first gossip round (or probe) is due at
    /// once.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the settings are unusable ([`NodeConfig::validate`]).
    pub fn new(config: NodeConfig, now: Instant) -> Result<Self, ConfigError> {
        let machine = match config.protocol {
            Protocol::Chitchat => {
                Machine::Chitchat(Box::new(Membership::new(config.membership_config()?, now)))
            }
            Protocol::Cohort => Machine::Cohort(Box::new(CohortMembership::new(
                config.cohort_config()?,
                now,
            ))),
        };
        let tag = NodeTag::from_node_id(&config.id);
        let clock = SharedHlc::new(HlcConfig::new(tag).with_max_drift(config.max_clock_drift));
        Ok(Self {
            machine,
            clock: Arc::new(clock),
            compatible: config.chitchat_compatible,
            keyring: config.keyring,
            leave_timeout: config.leave_timeout,
            leave_deadline: None,
            left: None,
            drained_version: 0,
        })
    }

    // ---------------------------------------------------------------- queries

    /// This node's identity.
    #[must_use]
    pub fn id(&self) -> &NodeId {
        with_machine!(&self.machine, m => m.node_id())
    }

    /// The protocol this node speaks.
    #[must_use]
    pub fn protocol(&self) -> Protocol {
        match self.machine {
            Machine::Chitchat(_) => Protocol::Chitchat,
            Machine::Cohort(_) => Protocol::Cohort,
        }
    }

    /// The chitchat-mode membership machine, for queries beyond the ones here (`None` in
    /// cohort mode).
    #[must_use]
    pub fn membership(&self) -> Option<&Membership> {
        match &self.machine {
            Machine::Chitchat(m) => Some(m),
            Machine::Cohort(_) => None,
        }
    }

    /// The cohort-mode membership machine, for queries beyond the ones here (`None` in
    /// chitchat mode).
    #[must_use]
    pub fn cohort_membership(&self) -> Option<&CohortMembership> {
        match &self.machine {
            Machine::Chitchat(_) => None,
            Machine::Cohort(m) => Some(m),
        }
    }

    /// A snapshot of every known member (this node included), at
    /// [`members_version`](Self::members_version).
    #[must_use]
    pub fn members(&self) -> Members {
        with_machine!(&self.machine, m => m.members())
    }

    /// The version of the membership: it grows with every change of the member list (a member
    /// first seen, a status, a key, a member removed), not with heartbeats.
    #[must_use]
    pub fn members_version(&self) -> u64 {
        with_machine!(&self.machine, m => m.members_version())
    }

    /// One member, as this node sees it.
    #[must_use]
    pub fn member(&self, id: &NodeId) -> Option<Member> {
        with_machine!(&self.machine, m => m.member(id))
    }

    /// This node as a member (its status is [`MemberStatus::Left`] once it leaves).
    #[must_use]
    pub fn local_member(&self) -> Member {
        with_machine!(&self.machine, m => m.local_member())
    }

    /// What this node believes of `id`.
    #[must_use]
    pub fn status(&self, id: &NodeId) -> Option<MemberStatus> {
        with_machine!(&self.machine, m => m.status(id))
    }

    /// The raw state of `id` (tombstones and reserved keys included).
    #[must_use]
    pub fn node_state(&self, id: &NodeId) -> Option<&NodeState> {
        with_machine!(&self.machine, m => m.node_state(id))
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

    /// Whether [`leave`](Self::leave) was called.
    #[must_use]
    pub fn is_leaving(&self) -> bool {
        with_machine!(&self.machine, m => m.is_leaving())
    }

    // ---------------------------------------------------------------- commands

    /// Publishes `key = value` in this node's metadata (gossiped to every member). Setting the
    /// value a key already holds changes nothing.
    ///
    /// # Errors
    ///
    /// [`KeyError::Reserved`] for keys under `__cohort/`, [`KeyError::Leaving`] once the node
    /// is leaving; nothing changes then.
    pub fn set(&mut self, now: Instant, key: &str, value: &str) -> Result<(), KeyError> {
        with_machine!(&mut self.machine, m => m.set(now, key, value))
    }

    /// Publishes `key = value` until the grace period
    /// ([`NodeConfig::marked_for_deletion_grace_period`]) has passed since `now`; then it is
    /// collected everywhere.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn set_with_ttl(&mut self, now: Instant, key: &str, value: &str) -> Result<(), KeyError> {
        with_machine!(&mut self.machine, m => m.set_with_ttl(now, key, value))
    }

    /// Removes `key` from this node's metadata (a tombstone is gossiped). Returns whether it
    /// existed.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn delete(&mut self, now: Instant, key: &str) -> Result<bool, KeyError> {
        with_machine!(&mut self.machine, m => m.delete(now, key))
    }

    /// Keeps `key` visible until the grace period has passed since `now`, then collects it
    /// everywhere. Returns whether it existed.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn delete_after_ttl(&mut self, now: Instant, key: &str) -> Result<bool, KeyError> {
        with_machine!(&mut self.machine, m => m.delete_after_ttl(now, key))
    }

    /// Starts a graceful departure at `now`: the node shows as [`MemberStatus::Left`] at once
    /// and sends its departure to the peers it can reach. Keep feeding and draining: once the
    /// departure has been announced, or [`NodeConfig::leave_timeout`] has passed (its deadline
    /// is part of [`Drained::deadline`]), [`Drained::left`] says how it ended. A second call
    /// does nothing.
    pub fn leave(&mut self, now: Instant) {
        if self.is_leaving() {
            return;
        }
        with_machine!(&mut self.machine, m => m.leave(now));
        // A timeout too far to represent is no timeout.
        self.leave_deadline = now.checked_add(self.leave_timeout);
    }

    /// Replaces the seed addresses (a driver re-resolving seed host names calls this); from
    /// the next round on.
    pub fn set_seeds(&mut self, seeds: Vec<SocketAddr>) {
        with_machine!(&mut self.machine, m => m.set_seeds(seeds));
    }

    /// Starts one handshake with `addr` now, outside the regular rounds.
    pub fn gossip_to(&mut self, addr: SocketAddr) {
        with_machine!(&mut self.machine, m => m.gossip_to(addr));
    }

    // ---------------------------------------------------------------- inputs

    /// Processes a datagram received from `from` at `now`, when the wall clock read `wall`.
    ///
    /// Accepts a cohort envelope or, in chitchat mode, a bare chitchat datagram. An
    /// envelope's timestamp is observed by the clock; one too far ahead is reported as
    /// [`Event::ClockSkew`] and the gossip is processed anyway. A datagram of the other
    /// protocol ([`NodeConfig::protocol`]) is refused and reported as
    /// [`Event::ProtocolMismatch`].
    ///
    /// # Errors
    ///
    /// Bytes that are not a datagram of this node's protocol, or are malformed, give a
    /// [`DecodeError`] and change nothing (beyond the counts of
    /// [`diagnostics`](Self::diagnostics)). The other protocol's datagrams are refused as
    /// [`DecodeError::BadMagic`] with that protocol's magic number.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        wall: WallTime,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), DecodeError> {
        let (envelope, payload) = wire::split_datagram(bytes)?;
        if let Some(keyring) = &self.keyring {
            // The tag covers the envelope up to its length byte, then the payload.
            let signed = bytes.get(..wire::ENVELOPE_OVERHEAD + 1).unwrap_or_default();
            let verified = envelope
                .as_ref()
                .and_then(|e| e.auth_tag)
                .is_some_and(|tag| keyring.verifies(signed, payload, tag));
            if !verified {
                self.report_diagnostic(now, from, DiagnosticKind::Unauthenticated, |suppressed| {
                    Event::Unauthenticated { from, suppressed }
                });
                return Err(DecodeError::Unauthenticated);
            }
        }
        let magic = match payload {
            [a, b, ..] => u16::from_le_bytes([*a, *b]),
            _ => 0,
        };
        let theirs = match magic {
            wire::CHITCHAT_MAGIC => Some(Protocol::Chitchat),
            cohort_mode::wire::COHORT_MODE_MAGIC => Some(Protocol::Cohort),
            _ => None,
        };
        if let Some(theirs) = theirs.filter(|theirs| *theirs != self.protocol()) {
            let reported =
                self.report_diagnostic(now, from, DiagnosticKind::ProtocolMismatch, |suppressed| {
                    Event::ProtocolMismatch {
                        from,
                        theirs,
                        suppressed,
                    }
                });
            if reported {
                with_machine!(&mut self.machine, m => m.answer_mismatch(from));
            }
            return Err(DecodeError::BadMagic(magic));
        }
        // Decoded whole before anything changes (the clock included).
        let clock = &self.clock;
        match &mut self.machine {
            Machine::Chitchat(m) => {
                let (version, message) = wire::decode_chitchat_view(payload)?;
                if let Some(skew) = Self::observe(clock, wall, from, envelope.as_ref()) {
                    m.report_diagnostic(now, from, DiagnosticKind::ClockSkew, skew);
                }
                m.handle_message(now, from, version, message);
            }
            Machine::Cohort(m) => {
                let packet = m.decode(payload)?;
                if let Some(skew) = Self::observe(clock, wall, from, envelope.as_ref()) {
                    m.report_diagnostic(now, from, DiagnosticKind::ClockSkew, skew);
                }
                m.handle_packet(now, from, packet);
            }
        }
        Ok(())
    }

    /// Observes an envelope's timestamp: for one the clock refuses, how to report it.
    fn observe(
        clock: &SharedHlc,
        wall: WallTime,
        from: SocketAddr,
        envelope: Option<&wire::EnvelopeHeader<'_>>,
    ) -> Option<impl FnOnce(u64) -> Event + use<>> {
        let remote = envelope?.timestamp;
        let error = clock.observe(remote, wall).err()?;
        Some(move |suppressed| Event::ClockSkew {
            from,
            remote,
            error,
            suppressed,
        })
    }

    fn report_diagnostic(
        &mut self,
        now: Instant,
        from: SocketAddr,
        kind: DiagnosticKind,
        make: impl FnOnce(u64) -> Event,
    ) -> bool {
        with_machine!(&mut self.machine, m => m.report_diagnostic(now, from, kind, make))
    }

    /// Counts of bad input received since the start: messages of other clusters, refused
    /// timestamps, and how many of those were held back rather than reported as events (see
    /// [`NodeConfig::diagnostic_interval`]).
    #[must_use]
    pub fn diagnostics(&self) -> Diagnostics {
        with_machine!(&self.machine, m => m.diagnostics())
    }

    /// The cluster's keys, when gossip is authenticated ([`NodeConfig::keyring`]).
    #[must_use]
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    /// Accepts datagrams signed with `key` too (the first step of a rotation; see
    /// [`crate::auth`]). Returns whether it was new.
    ///
    /// # Errors
    ///
    /// [`KeyringError::NotKeyed`] on a node started without a keyring (authentication is
    /// chosen at start, for every node of a cluster at once).
    pub fn install_key(&mut self, key: ClusterKey) -> Result<bool, KeyringError> {
        let keyring = self.keyring.as_mut().ok_or(KeyringError::NotKeyed)?;
        Ok(keyring.install(key))
    }

    /// Signs with `key` from now on (installed before; see [`crate::auth`]).
    ///
    /// # Errors
    ///
    /// [`KeyringError::NotInstalled`], or [`KeyringError::NotKeyed`]; nothing changed.
    pub fn use_key(&mut self, key: &ClusterKey) -> Result<(), KeyringError> {
        self.keyring
            .as_mut()
            .ok_or(KeyringError::NotKeyed)?
            .use_key(key)
    }

    /// Stops accepting `key` (the last step of a rotation). Returns whether it was installed.
    ///
    /// # Errors
    ///
    /// [`KeyringError::InUse`] for the key in use, or [`KeyringError::NotKeyed`]; nothing
    /// changed.
    pub fn remove_key(&mut self, key: &ClusterKey) -> Result<bool, KeyringError> {
        self.keyring
            .as_mut()
            .ok_or(KeyringError::NotKeyed)?
            .remove(key)
    }

    /// Runs what is due at `now`: a gossip round, a liveness check, the end of a leave.
    pub fn handle_timeout(&mut self, now: Instant) {
        with_machine!(&mut self.machine, m => m.handle_timeout(now));
        self.settle_leave(Some(now));
    }

    /// Ends a leave in progress once its departure was announced, or, given `now`, once its
    /// timeout passed.
    fn settle_leave(&mut self, now: Option<Instant>) {
        let Some(deadline) = self.leave_deadline.filter(|_| self.left.is_none()) else {
            return;
        };
        if with_machine!(&self.machine, m => m.leave_announced()) {
            self.left = Some(LeaveOutcome::Announced);
        } else if now.is_some_and(|now| now >= deadline) {
            self.left = Some(LeaveOutcome::TimedOut);
        }
    }

    // ---------------------------------------------------------------- outputs

    /// Moves the next datagram into `out` (replacing its contents; the old buffer is reused
    /// for a later datagram), wrapped in cohort's envelope stamped at wall time `wall` (bare
    /// in compatible mode), and returns where to send it.
    pub fn poll_transmit(&mut self, wall: WallTime, out: &mut Vec<u8>) -> Option<SocketAddr> {
        let destination = with_machine!(&mut self.machine, m => m.poll_transmit(out))?;
        if self.compatible {
            return Some(destination);
        }
        // The membership left `ENVELOPE_OVERHEAD` bytes free at the front: stamp them. A clock
        // at the end of its range cannot stamp: send the datagram bare rather than drop it (it
        // is still valid gossip).
        let stamped = self.clock.now(wall).ok().map(wire::envelope_bytes);
        let Some(keyring) = &self.keyring else {
            match (stamped, out.get_mut(..wire::ENVELOPE_OVERHEAD)) {
                (Some(envelope), Some(front)) => front.copy_from_slice(&envelope),
                _ => {
                    out.drain(..wire::ENVELOPE_OVERHEAD.min(out.len()));
                }
            }
            return Some(destination);
        };
        // Authenticated: the membership left room for the envelope with its tag.
        let tag_at = wire::ENVELOPE_OVERHEAD + 1;
        let body_at = tag_at + AUTH_TAG_LEN;
        match stamped {
            Some(mut envelope) if out.len() >= body_at => {
                envelope[3] = wire::ENVELOPE_FLAG_AUTH_TAG;
                out[..wire::ENVELOPE_OVERHEAD].copy_from_slice(&envelope);
                out[wire::ENVELOPE_OVERHEAD] = AUTH_TAG_LEN as u8;
                let (signed, rest) = out.split_at_mut(tag_at);
                let (tag, chitchat) = rest.split_at_mut(AUTH_TAG_LEN);
                tag.copy_from_slice(&keyring.primary().tag(signed, chitchat));
            }
            // A clock at the end of its range cannot stamp: the datagram goes bare, and peers
            // drop it as unauthenticated (nothing else can be sent for it).
            _ => {
                out.drain(..body_at.min(out.len()));
            }
        }
        Some(destination)
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        with_machine!(&mut self.machine, m => m.poll_event())
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        let at = with_machine!(&self.machine, m => m.poll_timeout());
        match self.leave_deadline {
            Some(leave) if self.left.is_none() => at.min(leave),
            _ => at,
        }
    }

    /// Takes every output after an input, in the order a driver must use: each pending
    /// datagram (stamped at `wall`) into `transmits` (appended; [`Transmits::clear`] it once
    /// sent), then each event onto `events`; and says when the timer is next due, whether the
    /// member list changed and whether the leave is over.
    pub fn drain(
        &mut self,
        wall: WallTime,
        transmits: &mut Transmits,
        events: &mut Vec<Event>,
    ) -> Drained {
        while transmits.push_with(|buf| self.poll_transmit(wall, buf)) {}
        while let Some(event) = self.poll_event() {
            events.push(event);
        }
        self.settle_leave(None);
        let version = self.members_version();
        let members_changed = version != self.drained_version;
        self.drained_version = version;
        Drained {
            deadline: self.poll_timeout(),
            members_changed,
            left: self.left,
        }
    }
}

#[cfg(test)]
mod tests;
