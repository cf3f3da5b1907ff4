//! The membership state machine.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{ClusterState, Liveness, MembershipConfig, NodeDetector, NodeState, Staleness};
use crate::NodeId;
use crate::wire::{
    self, DecodeError, Delta, DeltaWriter, DigestView, MessageType, MessageView, NodeDigest,
    ProtocolVersion, WireId,
};

/// The key a node sets on itself to announce a graceful departure. Keys under the
/// `__cohort/` prefix are reserved and hidden from [`Member::keys`].
pub const LEAVING_KEY: &str = "__cohort/leaving";

/// The prefix of keys reserved for cohort itself.
pub const RESERVED_KEY_PREFIX: &str = "__cohort/";

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The datagram: [`MembershipConfig::transmit_headroom`] bytes reserved for the caller
    /// (zeros; none by default), then a bare chitchat message.
    pub payload: Vec<u8>,
}

/// What the local node believes of a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    /// Known, but the failure detector has not heard enough heartbeats yet.
    Joining,
    /// Live: the failure detector hears it and the liveness predicate (if any) holds.
    Live,
    /// The failure detector hears it, but the liveness predicate does not hold.
    Unready,
    /// The failure detector declared it dead (it crashed, or is cut off from us).
    Failed,
    /// It announced a graceful departure.
    Left,
}

/// A member as the local node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its identity.
    pub id: NodeId,
    /// What we believe of it.
    pub status: MemberStatus,
    /// Its last heartbeat heard.
    pub heartbeat: u64,
    /// The highest key-value version we hold of it.
    pub max_version: u64,
    /// Its visible key-values (reserved `__cohort/` keys excluded).
    pub keys: BTreeMap<String, String>,
}

impl Member {
    /// The value of `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keys.get(key).map(String::as_str)
    }
}

/// Something the application should know about the membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A member became live for the first time (in this machine's memory).
    Joined(Member),
    /// A member that had failed or was unready is live again.
    Recovered(Member),
    /// A live member's liveness predicate stopped holding.
    Unready(Member),
    /// The failure detector declared a member dead.
    Failed(Member),
    /// A member announced a graceful departure.
    Left(Member),
    /// A member's state was garbage collected (dead for the whole grace period, or superseded
    /// by a newer generation of the same name).
    Removed(NodeId),
    /// A key of a member changed; `value` is `None` when it was deleted.
    KeyChanged {
        /// The member, with its state after the change.
        member: Member,
        /// The key.
        key: String,
        /// The new visible value.
        value: Option<String>,
    },
    /// Events were dropped because the reader fell behind: rebuild from
    /// [`Membership::members`].
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
    /// A node of another cluster contacted us, or answered us.
    BadCluster {
        /// Its address.
        from: SocketAddr,
    },
    /// This node stopped declaring deaths: it heard nothing while many peers went silent at
    /// once, or it was starved (a round ran late), so it suspects itself.
    SelfSuspected,
    /// The departure announced by [`Membership::leave`] reached the peers contacted.
    LeaveAnnounced,
}

/// Why a datagram was not processed. The machine's state did not change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// The bytes are not a valid chitchat datagram.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A departure in progress.
#[derive(Clone, Debug)]
struct Leaving {
    /// The contacted peers that have not answered yet (an answer is a SynAck, to which we
    /// reply with an Ack carrying the leaving key).
    pending: Vec<SocketAddr>,
    /// Whether a SynAck (from anyone) was answered since the leave began.
    answered: bool,
    announced: bool,
    /// After this, one answer is enough (see [`Membership::leave`]).
    one_answer_after: Instant,
}

/// Seed addresses as the machine keeps them: without `own`, sorted, each once.
fn normalize_seeds(seeds: &mut Vec<SocketAddr>, own: SocketAddr) {
    seeds.retain(|a| *a != own);
    seeds.sort_unstable();
    seeds.dedup();
}

/// Bounded memory of garbage-collected nodes and their last heartbeat.
#[derive(Clone, Debug, Default)]
struct Removed {
    order: VecDeque<NodeId>,
    heartbeats: HashMap<NodeId, u64>,
}

impl Removed {
    fn insert(&mut self, id: NodeId, heartbeat: u64, capacity: usize) {
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

    fn get(&self, id: &NodeId) -> Option<u64> {
        self.heartbeats.get(id).copied()
    }

    fn remove(&mut self, id: &NodeId) {
        if self.heartbeats.remove(id).is_some() {
            self.order.retain(|x| x != id);
        }
    }
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
/// for _ in 0..20 {
///     a.handle_timeout(now);
///     b.handle_timeout(now);
///     loop {
///         let mut moved = false;
///         while let Some(t) = a.poll_transmit() {
///             b.handle_datagram(now, a_id.gossip_addr(), &t.payload).unwrap();
///             moved = true;
///         }
///         while let Some(t) = b.poll_transmit() {
///             a.handle_datagram(now, b_id.gossip_addr(), &t.payload).unwrap();
///             moved = true;
///         }
///         if !moved { break; }
///     }
///     now += Duration::from_secs(1);
/// }
/// assert!(a.member(&b_id).is_some_and(|m| m.status == cohort_core::membership::MemberStatus::Live));
/// ```
pub struct Membership {
    config: MembershipConfig,
    state: ClusterState<Peer>,
    rng: Xoshiro256PlusPlus,
    removed: Removed,
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
    transmits: VecDeque<Transmit>,
    dropped_transmits: u64,
    events: VecDeque<MembershipEvent>,
    missed_events: u64,
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
            aligned: Vec::new(),
            next_round: now,
            next_liveness_check: None,
            last_round: None,
            last_received: None,
            deaths_held_until: None,
            silent_hold_since: None,
            transmits: VecDeque::new(),
            dropped_transmits: 0,
            events: VecDeque::new(),
            missed_events: 0,
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

    /// Every known member (this node included), ascending by id.
    #[must_use]
    pub fn members(&self) -> Vec<Member> {
        self.state
            .iter_with_meta()
            .map(|(id, state, peer)| Self::snapshot(id, state, peer.status))
            .collect()
    }

    /// The live members (this node included unless it is leaving), ascending by id.
    #[must_use]
    pub fn live_members(&self) -> Vec<Member> {
        self.state
            .iter_with_meta()
            .filter(|(_, _, peer)| peer.status == MemberStatus::Live)
            .map(|(id, state, peer)| Self::snapshot(id, state, peer.status))
            .collect()
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
        self.dropped_transmits
    }

    /// Whether this node announced its departure.
    #[must_use]
    pub fn is_leaving(&self) -> bool {
        self.leaving.is_some()
    }

    fn snapshot(id: &NodeId, state: &NodeState, status: MemberStatus) -> Member {
        Member {
            id: id.clone(),
            status,
            heartbeat: state.heartbeat(),
            max_version: state.max_version(),
            keys: state
                .visible()
                .filter(|(k, _)| !k.starts_with(RESERVED_KEY_PREFIX))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    // ---------------------------------------------------------------- commands

    fn own_state(&mut self) -> &mut NodeState {
        self.state.node_or_insert(&self.config.node_id)
    }

    /// Sets one of this node's keys (gossiped to every member). Reserved `__cohort/` keys are
    /// refused (returns `false`).
    pub fn set(&mut self, key: &str, value: &str) -> bool {
        if key.starts_with(RESERVED_KEY_PREFIX) {
            return false;
        }
        self.own_state().set(key, value)
    }

    /// Deletes one of this node's keys. Returns whether it existed.
    pub fn delete(&mut self, key: &str, now: Instant) -> bool {
        if key.starts_with(RESERVED_KEY_PREFIX) {
            return false;
        }
        self.own_state().delete(key, now)
    }

    /// Sets a key that is garbage collected (everywhere) once the grace period has passed.
    pub fn set_with_ttl(&mut self, key: &str, value: &str, now: Instant) -> bool {
        if key.starts_with(RESERVED_KEY_PREFIX) {
            return false;
        }
        self.own_state().set_with_ttl(key, value, now);
        true
    }

    /// Keeps a key visible until the grace period has passed, then collects it everywhere.
    pub fn delete_after_ttl(&mut self, key: &str, now: Instant) -> bool {
        if key.starts_with(RESERVED_KEY_PREFIX) {
            return false;
        }
        self.own_state().delete_after_ttl(key, now)
    }

    /// Announces a graceful departure: sets [`LEAVING_KEY`] and starts handshakes with up to
    /// `leave_fanout` live peers at once. [`MembershipEvent::LeaveAnnounced`] follows when the
    /// departure has been sent to every one of them, or to at least one once a gossip interval
    /// has passed since `now` (a contacted peer that is gone, or slow, does not hold the
    /// departure up; the others learn it by gossip), or at once when there is no live peer.
    /// Peers see this node as [`MemberStatus::Left`] as soon as the key reaches them.
    pub fn leave(&mut self, now: Instant) {
        if self.leaving.is_some() {
            return;
        }
        self.own_state().set(LEAVING_KEY, "1");
        let me = self.config.node_id.clone();
        if let Some((_, peer)) = self.state.entry_mut(&me) {
            peer.status = MemberStatus::Left;
        }
        let mut targets: Vec<SocketAddr> = self.live_peer_addrs();
        targets.sort_unstable();
        targets.dedup();
        shuffle(&mut self.rng, &mut targets);
        targets.truncate(self.config.leave_fanout.max(1));
        let none = targets.is_empty();
        self.leaving = Some(Leaving {
            pending: targets.clone(),
            answered: false,
            announced: false,
            one_answer_after: now + self.config.gossip_interval,
        });
        if none {
            self.announce_left();
        }
        for addr in targets {
            self.send_syn(addr);
        }
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

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event. A [`MembershipEvent::Lagged`] comes first when events were dropped.
    pub fn poll_event(&mut self) -> Option<MembershipEvent> {
        if self.missed_events > 0 {
            let missed = std::mem::take(&mut self.missed_events);
            return Some(MembershipEvent::Lagged { missed });
        }
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut at = self
            .next_liveness_check
            .map_or(self.next_round, |check| check.min(self.next_round));
        if let Some(leave) = self.leave_deadline() {
            at = at.min(leave);
        }
        Some(at)
    }

    /// An empty datagram buffer: [`MembershipConfig::transmit_headroom`] zero bytes, with room
    /// for `capacity` more.
    fn payload_buffer(&self, capacity: usize) -> Vec<u8> {
        let headroom = self.config.transmit_headroom;
        let mut out = Vec::with_capacity(headroom + capacity);
        out.resize(headroom, 0);
        out
    }

    fn push_transmit(&mut self, destination: SocketAddr, payload: Vec<u8>) {
        if self.transmits.len() >= self.config.max_pending_transmits.max(1) {
            self.dropped_transmits += 1;
            return;
        }
        self.transmits.push_back(Transmit {
            destination,
            payload,
        });
    }

    fn push_event(&mut self, event: MembershipEvent) {
        if self.events.len() >= self.config.max_pending_events.max(1) {
            self.events.pop_front();
            self.missed_events += 1;
        }
        self.events.push_back(event);
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
                self.push_event(MembershipEvent::SelfSuspected);
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
    /// A datagram that does not decode is refused with an error and changes nothing.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), HandleError> {
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
        }
        match message {
            MessageView::Syn { digest, cluster_id } => {
                if cluster_id != self.config.cluster_id {
                    let mut out = self.payload_buffer(wire::HEADER_LEN);
                    wire::encode_header(version, MessageType::BadCluster, &mut out);
                    self.push_transmit(from, out);
                    self.push_event(MembershipEvent::BadCluster { from });
                    return;
                }
                self.report_heartbeats(&digest, now);
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
                self.report_heartbeats(&digest, now);
                self.apply_delta(delta, now);
                let mut out = self.payload_buffer(1_024);
                wire::encode_header(version, MessageType::Ack, &mut out);
                let budget = wire::delta_budget(self.config.reserved_bytes);
                self.write_delta(budget, now, &mut out);
                self.push_transmit(from, out);
                if let Some(leaving) = &mut self.leaving {
                    leaving.answered = true;
                    if let Some(i) = leaving.pending.iter().position(|a| *a == from) {
                        leaving.pending.swap_remove(i);
                    }
                }
                self.maybe_announce_left(now);
            }
            MessageView::Ack { delta } => self.apply_delta(delta, now),
            MessageView::BadCluster => self.push_event(MembershipEvent::BadCluster { from }),
        }
    }

    /// Announces the departure if it went to every contacted peer, or to one and the wait for
    /// the others is over.
    fn maybe_announce_left(&mut self, now: Instant) {
        let Some(leaving) = &self.leaving else {
            return;
        };
        let done =
            leaving.pending.is_empty() || (leaving.answered && now >= leaving.one_answer_after);
        if done && !leaving.announced {
            self.announce_left();
        }
    }

    /// When the departure will be announced without another Ack, if it is waiting for that.
    fn leave_deadline(&self) -> Option<Instant> {
        self.leaving
            .as_ref()
            .filter(|l| !l.announced && l.answered)
            .map(|l| l.one_answer_after)
    }

    fn announce_left(&mut self) {
        if let Some(leaving) = &mut self.leaving {
            leaving.announced = true;
        }
        self.push_event(MembershipEvent::LeaveAnnounced);
    }

    // ---------------------------------------------------------------- protocol

    /// The gossip addresses of the live peers, in id order (an address shared by two ids may
    /// appear twice; targets are deduplicated when sent).
    fn live_peer_addrs(&self) -> Vec<SocketAddr> {
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

    /// chitchat's round: up to `gossip_count` live peers, maybe a dead one, maybe a seed.
    fn gossip_round(&mut self, now: Instant) {
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
        // A dead node, with probability dead / (live + 1).
        if !dead.is_empty() {
            let draw = self.rng.next_u64() % (live.len() as u64 + 1);
            if draw < dead.len() as u64 {
                let pick = dead[index_below(&mut self.rng, dead.len())];
                targets.push(pick);
            }
        }
        // A seed, when no chosen target is a seed or fewer live nodes than seeds are known.
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
        self.own_state().bump_heartbeat();
        let grace = self.config.marked_for_deletion_grace_period;
        for (_, state) in self.state.iter_mut() {
            state.gc_tombstones(now, grace);
        }
        targets.sort_unstable();
        targets.dedup();
        // One Syn for every target of the round.
        if let Some((last, rest)) = targets.split_last() {
            let syn = self.encode_syn(Some(now));
            for addr in rest {
                self.push_transmit(*addr, syn.clone());
            }
            self.push_transmit(*last, syn);
        }
    }

    fn send_syn(&mut self, addr: SocketAddr) {
        let syn = self.encode_syn(self.last_round);
        self.push_transmit(addr, syn);
    }

    /// A Syn carrying our digest (nodes scheduled for deletion at `now` left out).
    fn encode_syn(&self, now: Option<Instant>) -> Vec<u8> {
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
    fn report_heartbeats(&mut self, digest: &DigestView<'_>, now: Instant) {
        let mut aligned = std::mem::take(&mut self.aligned);
        aligned.clear();
        aligned.resize(self.state.len(), None);
        let mut new: Vec<(NodeId, u64)> = Vec::new();
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
            // Unknown. A removed node comes back only with a newer heartbeat; a known node
            // was not superseded when it was added (a newer generation removes the older
            // ones when it appears), so only unknown ids need that check.
            if let Some(remembered) = self.removed.get(&id) {
                if entry.heartbeat <= remembered {
                    continue;
                }
                self.removed.remove(&id);
            }
            if self.superseded(&id) {
                continue;
            }
            new.push((id, entry.heartbeat));
        }
        if !new.is_empty() {
            // First sightings, added together: the heartbeat is stored but not reported
            // (chitchat's rule), and each starts as Joining.
            self.state.insert_many(new.iter().map(|(id, _)| id.clone()));
            for (id, heartbeat) in &new {
                if let Some(state) = self.state.node_mut(id) {
                    state.observe_heartbeat(*heartbeat);
                }
            }
            for (id, _) in &new {
                if self.state.node(id).is_some() {
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
            self.remove_node(&old);
        }
    }

    fn remove_node(&mut self, id: &NodeId) {
        if let Some(state) = self.state.remove(id) {
            self.removed.insert(
                id.clone(),
                state.heartbeat(),
                self.config.removed_nodes_remembered,
            );
        }
        self.push_event(MembershipEvent::Removed(id.clone()));
    }

    fn apply_delta(&mut self, delta: Delta, now: Instant) {
        for node_delta in delta.nodes {
            if node_delta.node == self.config.node_id {
                continue;
            }
            let Some((state, peer)) = self.state.entry_mut(&node_delta.node) else {
                continue;
            };
            let Ok(applied) = state.apply_delta(&node_delta, now) else {
                continue;
            };
            let id = node_delta.node;
            let newly_left = state.get(LEAVING_KEY).is_some() && peer.status != MemberStatus::Left;
            if newly_left {
                peer.status = MemberStatus::Left;
            }
            let changed: Vec<(String, Option<String>)> = applied
                .changed_keys
                .into_iter()
                .filter(|k| !k.starts_with(RESERVED_KEY_PREFIX))
                .map(|k| {
                    let v = state.get(&k).map(str::to_owned);
                    (k, v)
                })
                .collect();
            if newly_left {
                if let Some(member) = self.member(&id) {
                    self.push_event(MembershipEvent::Left(member));
                }
            }
            if !changed.is_empty() {
                if let Some(member) = self.member(&id) {
                    for (key, value) in changed {
                        self.push_event(MembershipEvent::KeyChanged {
                            member: member.clone(),
                            key,
                            value,
                        });
                    }
                }
            }
        }
    }

    /// Writes, within `budget` bytes, the delta that the peer whose digest is in `self.aligned`
    /// lacks (chitchat's order: nodes the peer must take from scratch first, fewest versions
    /// first; then the most stale; ties in random order).
    fn write_delta(&mut self, budget: usize, now: Instant, out: &mut Vec<u8>) {
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

    // ---------------------------------------------------------------- liveness

    /// Re-evaluates every peer's liveness: at each round, and `between_rounds` when a peer's
    /// deadline passes or a joining or failed peer was heard.
    fn update_liveness(&mut self, now: Instant, between_rounds: bool) {
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
                (MemberStatus::Joining, MemberStatus::Live) => MembershipEvent::Joined(member),
                (_, MemberStatus::Live) => MembershipEvent::Recovered(member),
                (_, MemberStatus::Unready) => MembershipEvent::Unready(member),
                (_, MemberStatus::Failed) => MembershipEvent::Failed(member),
                _ => continue,
            };
            self.push_event(event);
        }
    }

    /// Whether deaths are held this round (self-suspicion).
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
                self.push_event(MembershipEvent::SelfSuspected);
            }
            return now.saturating_duration_since(since) < self.config.self_suspicion_hold;
        }
        false
    }

    fn collect_dead(&mut self, now: Instant) {
        let fd = &self.config.failure_detector;
        let me = &self.config.node_id;
        let expired: Vec<NodeId> = self
            .state
            .iter_with_meta()
            .filter(|(id, _, peer)| *id != me && peer.detector.is_expired(now, fd))
            .map(|(id, _, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(state) = self.state.remove(&id) {
                self.removed.insert(
                    id.clone(),
                    state.heartbeat(),
                    self.config.removed_nodes_remembered,
                );
            }
            self.push_event(MembershipEvent::Removed(id));
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

/// A uniform index below `n` (`n > 0`).
fn index_below(rng: &mut impl Rng, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

/// Up to `count` distinct positions of `from`, uniformly, as their elements.
fn sample(rng: &mut impl Rng, from: &[SocketAddr], count: usize) -> Vec<SocketAddr> {
    let count = count.min(from.len());
    if count * 4 <= from.len() {
        // Few picks from many: draw positions until `count` distinct ones (expected
        // `count × 4/3` draws at most), without copying the pool.
        let mut picked: Vec<usize> = Vec::with_capacity(count);
        while picked.len() < count {
            let i = index_below(rng, from.len());
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        return picked.into_iter().map(|i| from[i]).collect();
    }
    let mut pool = from.to_vec();
    for i in 0..count {
        let j = i + index_below(rng, pool.len() - i);
        pool.swap(i, j);
    }
    pool.truncate(count);
    pool
}

fn shuffle(rng: &mut impl Rng, items: &mut [SocketAddr]) {
    for i in (1..items.len()).rev() {
        let j = index_below(rng, i + 1);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests;
