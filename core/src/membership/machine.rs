//! The membership state machine: chitchat's Scuttlebutt exchange and its inputs and outputs.
//!
//! Owns [`Membership`]: its state, the handling of each message, the rounds, the commands on the
//! local node's keys, and the queues of datagrams and events. The leave sub-protocol
//! ([`leave`]), the memory of removed nodes ([`removed`]), the choice of round targets
//! ([`targets`]), the delta order ([`delta`]) and liveness with the self-suspicion guard
//! ([`liveness`]) each live in a module of their own. Nothing here does I/O.

mod admission;
mod delta;
mod leave;
mod liveness;
mod removed;
mod targets;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use self::admission::Admission;
use self::leave::Leaving;
use self::removed::Removed;
use super::diagnostics::{DiagnosticKind, DiagnosticLimiter, Diagnostics};
use super::events::EventQueue;
use super::transmit::TransmitQueue;
use super::{
    ClusterState, KeyError, LEAVING_KEY, Limit, Member, MemberStatus, MembershipConfig,
    NodeDetector, NodeState, Refused, is_reserved_key,
};
use crate::members::Members;
use crate::wire::{
    self, DecodeError, Delta, DigestView, MessageType, MessageView, NodeDigest, ProtocolVersion,
    WireId,
};
use crate::{Event, NodeId};

/// Seed addresses as the machine keeps them: without `own`, sorted, each once.
pub(super) fn normalize_seeds(seeds: &mut Vec<SocketAddr>, own: SocketAddr) {
    seeds.retain(|a| *a != own);
    seeds.sort_unstable();
    seeds.dedup();
}

/// What the machine tracks of a known node beside its gossiped state.
#[derive(Clone, Debug)]
struct Peer {
    status: MemberStatus,
    detector: NodeDetector,
}

impl Default for Peer {
    fn default() -> Self {
        Self {
            status: MemberStatus::Joining,
            detector: NodeDetector::new(),
        }
    }
}

/// The gossip membership of one node: chitchat's Scuttlebutt protocol and failure detector,
/// as a state machine with no I/O.
///
/// # Driving it
///
/// This is the bare chitchat protocol; most users drive a [`Node`](crate::Node), which wraps
/// it with the clock, cohort's envelope and the node's set-up and leave.
///
/// Feed it every datagram received on the gossip socket ([`handle_datagram`]) and call
/// [`handle_timeout`] when [`poll_timeout`] passes (early or repeated calls are harmless).
/// After every input, drain [`poll_transmit`] (send each datagram) and [`poll_event`], then
/// re-arm the timer from [`poll_timeout`]. Time is whatever `now` the caller passes; it must not
/// go backwards.
///
/// [`handle_datagram`]: Self::handle_datagram
/// [`handle_timeout`]: Self::handle_timeout
/// [`poll_timeout`]: Self::poll_timeout
/// [`poll_transmit`]: Self::poll_transmit
/// [`poll_event`]: Self::poll_event
///
/// ```
/// use std::time::{Duration, Instant};
/// use cohort_core::NodeId;
/// use cohort_core::membership::{Membership, MembershipConfig};
///
/// let a_id = NodeId::new("a", 1, "127.0.0.1:7001".parse().unwrap());
/// let b_id = NodeId::new("b", 1, "127.0.0.1:7002".parse().unwrap());
/// let start = Instant::now();
/// let mut b_config = MembershipConfig::new(b_id.clone(), "demo");
/// b_config.seeds = vec![a_id.gossip_addr()];
/// let mut a = Membership::new(MembershipConfig::new(a_id.clone(), "demo"), start);
/// let mut b = Membership::new(b_config, start);
///
/// // A tiny in-memory network: deliver everything instantly, step time by rounds.
/// let mut now = start;
/// let mut buf = Vec::new();
/// for _ in 0..20 {
///     a.handle_timeout(now);
///     b.handle_timeout(now);
///     loop {
///         let mut moved = false;
///         while a.poll_transmit(&mut buf).is_some() {
///             b.handle_datagram(now, a_id.gossip_addr(), &buf).unwrap();
///             moved = true;
///         }
///         while b.poll_transmit(&mut buf).is_some() {
///             a.handle_datagram(now, b_id.gossip_addr(), &buf).unwrap();
///             moved = true;
///         }
///         if !moved { break; }
///     }
///     now += Duration::from_secs(1);
/// }
/// assert!(a.member(&b_id).is_some_and(|m| m.status == cohort_core::membership::MemberStatus::Live));
/// assert_eq!(b.members().live_count(), 2);
/// ```
pub struct Membership {
    config: MembershipConfig,
    state: ClusterState<Peer>,
    rng: Xoshiro256PlusPlus,
    removed: Removed,
    /// Members believed on a sender's word that have not contacted this node yet.
    admission: Admission,
    /// The peer's digest entries aligned with `state`, reused from message to message.
    aligned: Vec<Option<NodeDigest>>,
    next_round: Instant,
    /// When liveness must be evaluated again before the next round: the earliest instant a
    /// live peer's silence can cross the detector's threshold, or now when a joining or failed
    /// peer was just heard (so that deaths and recoveries are seen when they happen, not at
    /// the next round).
    next_liveness_check: Option<Instant>,
    last_round: Option<Instant>,
    last_received: Option<Instant>,
    /// No death is declared before this instant (self-suspicion after a late round).
    deaths_held_until: Option<Instant>,
    /// When deaths started being held for lack of any incoming gossip.
    silent_hold_since: Option<Instant>,
    transmits: TransmitQueue,
    events: EventQueue,
    /// Bad input, reported at a bounded rate.
    diagnostics: DiagnosticLimiter,
    /// Grows by one with every change of what a [`Members`] snapshot holds.
    members_version: u64,
    leaving: Option<Leaving>,
}

impl Membership {
    /// A machine for `config.node_id`, started at `now`. Its first gossip round is due at once.
    pub fn new(mut config: MembershipConfig, now: Instant) -> Self {
        normalize_seeds(&mut config.seeds, config.node_id.gossip_addr());
        // Hash seeds derived from the configured seed: reproducible, unknown to peers.
        let hash_seed = crate::hash::mix64(config.rng_seed ^ 0x6a09_e667_f3bc_c909);
        let mut state: ClusterState<Peer> = ClusterState::with_hash_seed(hash_seed);
        let own = state.node_or_insert(&config.node_id);
        own.bump_heartbeat();
        for (k, v) in &config.initial_key_values {
            own.set(k, v);
        }
        if let Some((_, peer)) = state.entry_mut(&config.node_id) {
            peer.status = MemberStatus::Live;
        }
        Self {
            rng: Xoshiro256PlusPlus::seed_from_u64(config.rng_seed),
            state,
            removed: Removed::default(),
            admission: Admission::default(),
            aligned: Vec::new(),
            next_round: now,
            next_liveness_check: None,
            last_round: None,
            last_received: None,
            deaths_held_until: None,
            silent_hold_since: None,
            transmits: TransmitQueue::default(),
            events: EventQueue::default(),
            diagnostics: DiagnosticLimiter::new(config.diagnostic_interval),
            members_version: 1,
            leaving: None,
            config,
        }
    }

    // ---------------------------------------------------------------- queries

    /// This node's identity.
    #[must_use]
    pub fn node_id(&self) -> &NodeId {
        &self.config.node_id
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &MembershipConfig {
        &self.config
    }

    /// A snapshot of every known member (this node included), ascending by id, at the current
    /// [`members_version`](Self::members_version).
    #[must_use]
    pub fn members(&self) -> Members {
        let list: Vec<Member> = self
            .state
            .iter_with_meta()
            .map(|(id, state, peer)| Self::snapshot(id, state, peer.status))
            .collect();
        Members::new(self.members_version, self.config.node_id.clone(), list)
    }

    /// The version of what [`members`](Self::members) returns: it starts at 1 and grows with
    /// every change of the member list (a member first seen, a status, a key, a member
    /// removed). Heartbeats alone do not count: a snapshot's [`Member::heartbeat`] and
    /// [`Member::max_version`] may lag the machine's without its version being lower.
    #[must_use]
    pub fn members_version(&self) -> u64 {
        self.members_version
    }

    /// This node as a member.
    #[must_use]
    pub fn local_member(&self) -> Member {
        let id = &self.config.node_id;
        match (self.state.node(id), self.state.meta(id)) {
            (Some(state), Some(peer)) => Self::snapshot(id, state, peer.status),
            // The local node is inserted at construction and never removed; an empty member
            // rather than a panic if that ever changed.
            _ => Member {
                id: id.clone(),
                status: MemberStatus::Joining,
                heartbeat: 0,
                max_version: 0,
                keys: std::collections::BTreeMap::new(),
            },
        }
    }

    /// One member.
    #[must_use]
    pub fn member(&self, id: &NodeId) -> Option<Member> {
        let state = self.state.node(id)?;
        let status = self.status(id).unwrap_or(MemberStatus::Joining);
        Some(Self::snapshot(id, state, status))
    }

    /// What we believe of `id`.
    #[must_use]
    pub fn status(&self, id: &NodeId) -> Option<MemberStatus> {
        self.state.meta(id).map(|peer| peer.status)
    }

    /// The raw state of `id` (tombstones and reserved keys included).
    #[must_use]
    pub fn node_state(&self, id: &NodeId) -> Option<&NodeState> {
        self.state.node(id)
    }

    /// How long `id` may stay silent before the failure detector declares it dead, given its
    /// heartbeat history; `None` before enough heartbeats.
    #[must_use]
    pub fn failure_timeout(&self, id: &NodeId) -> Option<Duration> {
        self.state
            .meta(id)?
            .detector
            .failure_timeout(&self.config.failure_detector)
    }

    /// The number of datagrams dropped because the driver did not drain them in time.
    #[must_use]
    pub fn dropped_transmits(&self) -> u64 {
        self.transmits.dropped()
    }

    fn snapshot(id: &NodeId, state: &NodeState, status: MemberStatus) -> Member {
        Member {
            id: id.clone(),
            status,
            heartbeat: state.heartbeat(),
            max_version: state.max_version(),
            keys: state
                .visible()
                .filter(|(k, _)| !is_reserved_key(k))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    // ---------------------------------------------------------------- commands

    fn own_state(&mut self) -> &mut NodeState {
        self.state.node_or_insert(&self.config.node_id)
    }

    /// Whether a key command may run: not a reserved key, and not leaving.
    fn check_key(&self, key: &str) -> Result<(), KeyError> {
        if is_reserved_key(key) {
            return Err(KeyError::Reserved(key.to_owned()));
        }
        if self.leaving.is_some() {
            return Err(KeyError::Leaving);
        }
        Ok(())
    }

    /// Whether storing `value` under the local node's `key` keeps the state within the limits.
    fn check_write(&self, key: &str, value: &str) -> Result<(), KeyError> {
        let Some(own) = self.state.node(&self.config.node_id) else {
            return Ok(());
        };
        let others = self.state_bytes() - own.bytes();
        own.check_write(key, value, &self.config.limits, others)
            .map_err(|broken| super::state::key_error(broken, key, value))
    }

    /// The bytes all members' states hold, as [`StateLimits`](super::StateLimits) counts them.
    fn state_bytes(&self) -> usize {
        self.state.iter().map(|(_, state)| state.bytes()).sum()
    }

    /// Reports a change of the local node's key `key` from `old` (the visible value before),
    /// if its visible value changed; passes `changed` (whether anything was stored) on.
    fn own_key_changed(&mut self, key: &str, old: Option<String>, changed: bool) -> bool {
        if changed {
            self.members_version += 1;
            let member = self.local_member();
            let value = member.get(key).map(str::to_owned);
            if value != old {
                self.push_event(Event::KeyChanged {
                    member,
                    key: key.to_owned(),
                    old,
                    value,
                });
            }
        }
        changed
    }

    /// The local node's visible value of `key`.
    fn own_value(&self, key: &str) -> Option<String> {
        self.state
            .node(&self.config.node_id)
            .and_then(|s| s.get(key))
            .map(str::to_owned)
    }

    /// Sets one of this node's keys (gossiped to every member). Setting the value a key already
    /// holds changes nothing. `now` is when the command is given (no timer depends on it; it
    /// keeps every command's signature alike).
    ///
    /// # Errors
    ///
    /// [`KeyError::Reserved`] for keys under `__cohort/`, [`KeyError::Leaving`] once the node
    /// is leaving. Nothing changes then.
    pub fn set(&mut self, now: Instant, key: &str, value: &str) -> Result<(), KeyError> {
        let _ = now;
        self.check_key(key)?;
        self.check_write(key, value)?;
        let old = self.own_value(key);
        let changed = self.own_state().set(key, value);
        self.own_key_changed(key, old, changed);
        Ok(())
    }

    /// Sets a key that is garbage collected (everywhere) once the grace period
    /// ([`MembershipConfig::marked_for_deletion_grace_period`]) has passed since `now`. The
    /// value the key already holds with a TTL changes nothing: its TTL is not restarted (as in
    /// chitchat).
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn set_with_ttl(&mut self, now: Instant, key: &str, value: &str) -> Result<(), KeyError> {
        self.check_key(key)?;
        self.check_write(key, value)?;
        let old = self.own_value(key);
        let changed = self.own_state().set_with_ttl(key, value, now);
        self.own_key_changed(key, old, changed);
        Ok(())
    }

    /// Deletes one of this node's keys (a tombstone is gossiped). Returns whether it existed.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn delete(&mut self, now: Instant, key: &str) -> Result<bool, KeyError> {
        self.check_key(key)?;
        let old = self.own_value(key);
        let existed = self.own_state().delete(key, now);
        Ok(self.own_key_changed(key, old, existed))
    }

    /// Keeps a key visible until the grace period has passed since `now`, then collects it
    /// everywhere. Returns whether it existed.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn delete_after_ttl(&mut self, now: Instant, key: &str) -> Result<bool, KeyError> {
        self.check_key(key)?;
        let old = self.own_value(key);
        let existed = self.own_state().delete_after_ttl(key, now);
        Ok(self.own_key_changed(key, old, existed))
    }

    /// Replaces the seed addresses (a driver re-resolving seed host names calls this). Takes
    /// effect from the next round. Kept, as at [`new`](Self::new), without this node's own
    /// address, sorted and each once.
    pub fn set_seeds(&mut self, mut seeds: Vec<SocketAddr>) {
        normalize_seeds(&mut seeds, self.config.node_id.gossip_addr());
        self.config.seeds = seeds;
    }

    /// Starts one handshake with `addr` now, outside the regular rounds.
    pub fn gossip_to(&mut self, addr: SocketAddr) {
        self.send_syn(addr);
    }

    // ---------------------------------------------------------------- outputs

    /// Moves the next datagram to send into `out` (replacing what it held; its old buffer is
    /// kept for reuse) and returns where to send it. The datagram starts with
    /// [`MembershipConfig::transmit_headroom`] zero bytes (none by default) for a wrapper the
    /// caller writes in place, then the chitchat message.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<SocketAddr> {
        self.transmits.pop_into(out)
    }

    /// The next event. An [`Event::Lagged`] comes first when events were dropped.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(missed) = self.events.take_missed() {
            return Some(Event::Lagged {
                missed,
                members: self.members(),
            });
        }
        self.events.pop()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        let mut at = self
            .next_liveness_check
            .map_or(self.next_round, |check| check.min(self.next_round));
        if let Some(leave) = self.leave_deadline() {
            at = at.min(leave);
        }
        at
    }

    /// An empty datagram buffer: [`MembershipConfig::transmit_headroom`] zero bytes, with room
    /// for `capacity` more.
    fn payload_buffer(&mut self, capacity: usize) -> Vec<u8> {
        self.transmits
            .buffer(self.config.transmit_headroom, capacity)
    }

    fn push_transmit(&mut self, destination: SocketAddr, payload: Vec<u8>) {
        self.transmits
            .push(destination, payload, self.config.max_pending_transmits);
    }

    /// Queues `event` for the reader (dropping the oldest, and counting it, when the queue is
    /// full).
    /// Counts bad input of `kind` from `from`, and reports it as the event `make` builds
    /// (given how many of the same were held back since the last report) unless one was
    /// reported for that sender and kind within the diagnostic interval.
    pub(crate) fn report_diagnostic(
        &mut self,
        now: Instant,
        from: SocketAddr,
        kind: DiagnosticKind,
        make: impl FnOnce(u64) -> Event,
    ) -> bool {
        let admitted = self.diagnostics.admit(now, from, kind);
        if let Some(suppressed) = admitted {
            self.push_event(make(suppressed));
        }
        admitted.is_some()
    }

    /// Answers a datagram of the other membership protocol (once reported) with a
    /// `BadCluster` message (4 bytes), so that the sender learns of the mismatch too.
    pub(crate) fn answer_mismatch(&mut self, to: SocketAddr) {
        let mut out = self.payload_buffer(wire::HEADER_LEN);
        wire::encode_header(ProtocolVersion::V0, MessageType::BadCluster, &mut out);
        self.push_transmit(to, out);
    }

    /// Counts of bad input since the start (every occurrence, reported or held back).
    #[must_use]
    pub fn diagnostics(&self) -> Diagnostics {
        self.diagnostics.counts()
    }

    pub(crate) fn push_event(&mut self, event: Event) {
        if event.changes_members() {
            self.members_version += 1;
        }
        self.events.push(event, self.config.max_pending_events);
    }

    // ---------------------------------------------------------------- inputs

    /// Runs a gossip round if one is due at `now`, or re-evaluates liveness if that is due
    /// (see [`poll_timeout`](Self::poll_timeout)). Early or repeated calls do nothing more.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.maybe_announce_left(now);
        if now < self.next_round {
            if self.next_liveness_check.is_some_and(|at| now >= at) {
                self.update_liveness(now, true);
            }
            return;
        }
        if let Some(last) = self.last_round {
            let late = self
                .config
                .gossip_interval
                .saturating_mul(self.config.late_round_factor.max(1));
            if now.saturating_duration_since(last) > self.config.gossip_interval + late {
                // We were starved or paused: everyone looks silent. Hold deaths until fresh
                // heartbeats had time to arrive.
                self.deaths_held_until = Some(now + late);
                self.push_event(Event::SelfSuspected);
            }
        }
        self.last_round = Some(now);
        // Rounds keep a fixed rate, as a tokio interval does: the next one is due one interval
        // after the one just due, not after the moment it ran, so lateness does not add up
        // round after round. A whole interval missed (a pause) is skipped, not made up in a
        // burst.
        let next = self.next_round + self.config.gossip_interval;
        self.next_round = if next > now {
            next
        } else {
            now + self.config.gossip_interval
        };
        self.gossip_round(now);
        self.update_liveness(now, false);
        self.collect_dead(now);
    }

    /// Processes one datagram received from `from` at `now`.
    ///
    /// # Errors
    ///
    /// A datagram that does not decode is refused with a [`DecodeError`] and changes nothing.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), DecodeError> {
        let (version, message) = wire::decode_chitchat_view(bytes)?;
        self.handle_message(now, from, version, message);
        Ok(())
    }

    /// Processes one decoded message (see [`handle_datagram`](Self::handle_datagram)).
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        version: ProtocolVersion,
        message: MessageView<'_>,
    ) {
        self.own_state().bump_heartbeat();
        // Only gossip from our own cluster proves we are not cut off.
        let from_our_cluster = match &message {
            MessageView::Syn { cluster_id, .. } => *cluster_id == self.config.cluster_id,
            MessageView::SynAck { .. } | MessageView::Ack { .. } => true,
            MessageView::BadCluster => false,
        };
        if from_our_cluster {
            self.last_received = Some(now);
            self.silent_hold_since = None;
            // A member at this address has now spoken for itself.
            self.admission.confirm(from);
        }
        match message {
            MessageView::Syn { digest, cluster_id } => {
                if cluster_id != self.config.cluster_id {
                    let mut out = self.payload_buffer(wire::HEADER_LEN);
                    wire::encode_header(version, MessageType::BadCluster, &mut out);
                    self.push_transmit(from, out);
                    self.report_diagnostic(now, from, DiagnosticKind::BadCluster, |suppressed| {
                        Event::BadCluster { from, suppressed }
                    });
                    return;
                }
                self.report_heartbeats(&digest, now, from);
                let mut out = self.payload_buffer(64 + self.state.len() * 64);
                wire::encode_header(version, MessageType::SynAck, &mut out);
                let digest_len = wire::encode_digest_keyed(
                    version,
                    self.digest_entries(Some(now)),
                    self.config.compression,
                    &mut out,
                );
                let budget = wire::delta_budget(digest_len + self.config.reserved_bytes);
                self.write_delta(budget, now, &mut out);
                self.push_transmit(from, out);
            }
            MessageView::SynAck { digest, delta } => {
                self.report_heartbeats(&digest, now, from);
                self.apply_delta(delta, now, from);
                let mut out = self.payload_buffer(1_024);
                wire::encode_header(version, MessageType::Ack, &mut out);
                let budget = wire::delta_budget(self.config.reserved_bytes);
                self.write_delta(budget, now, &mut out);
                self.push_transmit(from, out);
                self.note_leave_answer(from, now);
            }
            MessageView::Ack { delta } => self.apply_delta(delta, now, from),
            MessageView::BadCluster => {
                self.report_diagnostic(now, from, DiagnosticKind::BadCluster, |suppressed| {
                    Event::BadCluster { from, suppressed }
                });
            }
        }
    }

    // ---------------------------------------------------------------- protocol

    /// chitchat's round: a Syn to each of the round's targets, after the heartbeat and the
    /// tombstone collection.
    fn gossip_round(&mut self, now: Instant) {
        let targets = self.round_targets();
        self.own_state().bump_heartbeat();
        self.collect_expired_keys(now);
        // One Syn for every target of the round, encoded once.
        if let Some((last, rest)) = targets.split_last() {
            let syn = self.encode_syn(Some(now));
            for addr in rest {
                let mut copy = self.payload_buffer(syn.len());
                copy.clear();
                copy.extend_from_slice(&syn);
                self.push_transmit(*addr, copy);
            }
            self.push_transmit(*last, syn);
        }
    }

    /// Collects the tombstones and the keys whose TTL ran out, on every node; a key that was
    /// still visible is reported gone ([`Event::KeyChanged`] with no value).
    fn collect_expired_keys(&mut self, now: Instant) {
        let grace = self.config.marked_for_deletion_grace_period;
        let mut gone: Vec<(NodeId, String, String)> = Vec::new();
        for (id, state) in self.state.iter_mut() {
            for (key, value) in state.gc_tombstones(now, grace) {
                if let Some(value) = value.filter(|_| !is_reserved_key(&key)) {
                    gone.push((id.clone(), key, value));
                }
            }
        }
        for (id, key, value) in gone {
            if let Some(member) = self.member(&id) {
                self.push_event(Event::KeyChanged {
                    member,
                    key,
                    old: Some(value),
                    value: None,
                });
            }
        }
    }

    fn send_syn(&mut self, addr: SocketAddr) {
        let syn = self.encode_syn(self.last_round);
        self.push_transmit(addr, syn);
    }

    /// A Syn carrying our digest (nodes scheduled for deletion at `now` left out).
    fn encode_syn(&mut self, now: Option<Instant>) -> Vec<u8> {
        let mut out = self.payload_buffer(64 + self.state.len() * 64);
        wire::encode_syn_keyed(
            self.config.protocol_version,
            self.digest_entries(now),
            &self.config.cluster_id,
            self.config.compression,
            &mut out,
        );
        out
    }

    /// Our digest, in id order: every node not scheduled for deletion at `now`.
    fn digest_entries(
        &self,
        now: Option<Instant>,
    ) -> impl Iterator<Item = ((&NodeId, &WireId), NodeDigest)> + '_ {
        let fd = &self.config.failure_detector;
        self.state
            .iter_wire_with_meta()
            .filter(move |(_, _, _, peer)| {
                now.is_none_or(|now| !peer.detector.is_scheduled_for_deletion(now, fd))
            })
            .map(|(id, wire, state, _)| ((id, wire), state.digest()))
    }

    /// Records the heartbeats a peer's digest carries (chitchat's rules, plus: an older
    /// generation of a name we know a newer generation of is ignored), and leaves the peer's
    /// digest entries in `self.aligned`, aligned with our state's order (for
    /// [`Self::write_delta`]).
    ///
    /// Members heard of for the first time are added within the limits: the members known,
    /// and those `from` introduced without their having contacted us
    /// ([`StateLimits`](super::StateLimits)); the others are ignored and reported.
    fn report_heartbeats(&mut self, digest: &DigestView<'_>, now: Instant, from: SocketAddr) {
        let mut aligned = std::mem::take(&mut self.aligned);
        aligned.clear();
        aligned.resize(self.state.len(), None);
        let mut new: Vec<(NodeId, u64)> = Vec::new();
        let limits = self.config.limits;
        let mut introduced = self.admission.introduced_by(from);
        let mut refused: Option<Limit> = None;
        // Digests list ids in ascending order, as our state does: walk both together.
        let mut hint = 0;
        for (raw, entry) in digest.iter_raw() {
            if let Some(i) = self.state.position_near_raw(hint, raw) {
                // Known (the common case): no hash, no allocation.
                hint = i + 1;
                if let Some(slot) = aligned.get_mut(i) {
                    *slot = Some(entry);
                }
                let (id, state, peer) = self.state.entry_at_mut(i);
                if *id == self.config.node_id {
                    continue;
                }
                let first = state.heartbeat() == 0;
                if state.observe_heartbeat(entry.heartbeat) && !first {
                    peer.detector
                        .report_heartbeat(now, &self.config.failure_detector);
                    if matches!(peer.status, MemberStatus::Joining | MemberStatus::Failed)
                        && peer.detector.samples() > 0
                    {
                        // It may be live now: look at once rather than at the next round.
                        self.next_liveness_check = Some(now);
                    }
                }
                continue;
            }
            let Some(id_ref) = raw.to_ref() else {
                continue;
            };
            let id = id_ref.to_owned();
            // Unknown. A removed node comes back only with a newer heartbeat, and never when
            // it was removed for good (superseded, or departed); a known node was not
            // superseded when it was added (a newer generation removes the older ones when it
            // appears), so only unknown ids need that check.
            if let Some(remembered) = self.removed.get(&id) {
                if entry.heartbeat <= remembered {
                    continue;
                }
                self.removed.remove(&id);
            }
            if self.superseded(&id) {
                continue;
            }
            if self.state.len() + new.len() >= limits.max_members {
                refused.get_or_insert(Limit::Members);
                continue;
            }
            if id.gossip_addr() != from {
                if introduced >= limits.max_unconfirmed_per_sender {
                    refused.get_or_insert(Limit::UnconfirmedPerSender);
                    continue;
                }
                introduced += 1;
            }
            new.push((id, entry.heartbeat));
        }
        if !new.is_empty() {
            // First sightings, added together: the heartbeat is stored but not reported
            // (chitchat's rule), and each starts as Joining.
            self.state.insert_many(new.iter().map(|(id, _)| id.clone()));
            // New members (Joining) are part of the snapshot.
            self.members_version += 1;
            for (id, heartbeat) in &new {
                if let Some(state) = self.state.node_mut(id) {
                    state.observe_heartbeat(*heartbeat);
                }
            }
            for (id, _) in &new {
                if self.state.node(id).is_some() {
                    self.admission.introduce(id.clone(), from);
                    self.retire_older_generations(id, now);
                }
            }
            // Nodes were added (and maybe removed), so positions moved: align again.
            aligned.clear();
            aligned.resize(self.state.len(), None);
            let mut hint = 0;
            for (raw, entry) in digest.iter_raw() {
                if let Some(i) = self.state.position_near_raw(hint, raw) {
                    hint = i + 1;
                    aligned[i] = Some(entry);
                }
            }
        }
        self.aligned = aligned;
        if let Some(limit) = refused {
            self.report_over_limit(now, from, limit);
        }
    }

    /// Reports (at a bounded rate) that what `from` sent broke `limit` and was not stored.
    fn report_over_limit(&mut self, now: Instant, from: SocketAddr, limit: Limit) {
        self.report_diagnostic(now, from, DiagnosticKind::OverLimit, |suppressed| {
            Event::OverLimit {
                from,
                limit,
                suppressed,
            }
        });
    }

    /// Whether a newer generation of `id`'s name is known.
    fn superseded(&self, id: &NodeId) -> bool {
        self.state
            .with_name(id.name())
            .any(|other| other.generation() > id.generation())
    }

    /// A newer generation of a name appeared: older generations of it are dead for good.
    fn retire_older_generations(&mut self, id: &NodeId, _now: Instant) {
        let older: Vec<NodeId> = self
            .state
            .with_name(id.name())
            .filter(|other| other.generation() < id.generation())
            .filter(|other| **other != self.config.node_id)
            .cloned()
            .collect();
        for old in older {
            self.remove_node(&old, true);
        }
    }

    /// Removes `id` and remembers it: `for_good` (a superseded generation, or one that left)
    /// so that no gossip brings it back, else with its last heartbeat so that only a newer
    /// one does (a node collected while cut off, which is still running).
    pub(super) fn remove_node(&mut self, id: &NodeId, for_good: bool) {
        self.admission.forget(id);
        if let Some(state) = self.state.remove(id) {
            let heartbeat = if for_good {
                Removed::FOR_GOOD
            } else {
                state.heartbeat()
            };
            self.removed
                .insert(id.clone(), heartbeat, self.config.removed_nodes_remembered);
        }
        self.push_event(Event::Removed(id.clone()));
    }

    fn apply_delta(&mut self, delta: Delta, now: Instant, from: SocketAddr) {
        let limits = self.config.limits;
        // The whole state's bytes, kept up to date as node deltas apply (only when bounded).
        let mut total = if limits.max_state_bytes == usize::MAX {
            0
        } else {
            self.state_bytes()
        };
        let mut refused: Option<Limit> = None;
        for node_delta in delta.nodes {
            if node_delta.node == self.config.node_id {
                continue;
            }
            let Some((state, peer)) = self.state.entry_mut(&node_delta.node) else {
                continue;
            };
            let before = state.bytes();
            let others = total.saturating_sub(before);
            let applied = match state.apply_delta_within(&node_delta, now, &limits, others) {
                Ok(applied) => applied,
                Err(Refused::OverLimit(limit)) => {
                    refused.get_or_insert(limit);
                    continue;
                }
                Err(_) => continue,
            };
            total = others + state.bytes();
            let id = node_delta.node;
            let newly_left = state.get(LEAVING_KEY).is_some() && peer.status != MemberStatus::Left;
            if newly_left {
                peer.status = MemberStatus::Left;
            }
            let changed: Vec<(String, Option<String>, Option<String>)> = applied
                .changed_keys
                .into_iter()
                .zip(applied.old_values)
                .filter(|(k, _)| !is_reserved_key(k))
                .filter_map(|(k, old)| {
                    let value = state.get(&k).map(str::to_owned);
                    (value != old).then_some((k, old, value))
                })
                .collect();
            if applied.reset || newly_left || !changed.is_empty() {
                let Some(member) = self.member(&id) else {
                    continue;
                };
                if applied.reset {
                    self.push_event(Event::Reset(member.clone()));
                }
                if newly_left {
                    self.push_event(Event::Left(member.clone()));
                }
                for (key, old, value) in changed {
                    self.push_event(Event::KeyChanged {
                        member: member.clone(),
                        key,
                        old,
                        value,
                    });
                }
            }
        }
        if let Some(limit) = refused {
            self.report_over_limit(now, from, limit);
        }
    }
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("node_id", &self.config.node_id)
            .field("nodes", &self.state.len())
            .field(
                "live",
                &self
                    .state
                    .iter_with_meta()
                    .filter(|(_, _, peer)| peer.detector.is_live())
                    .count(),
            )
            .field("pending_transmits", &self.transmits.len())
            .field("pending_events", &self.events.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod limit_tests;
#[cfg(test)]
mod tests;
