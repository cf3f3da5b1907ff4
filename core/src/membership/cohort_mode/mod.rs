//! cohort mode: a membership protocol for clusters of cohort nodes whose per-node cost does
//! not grow with the cluster (`docs/cohort-mode.md`): SWIM probes with indirect probes,
//! Lifeguard's local health and confirmed suspicion, refutation by the suspected node, updates
//! and key-value deltas piggybacked with a retransmit budget that grows with log N, push-pull
//! table syncs for joins and a rare reconciliation, pulls of missed key versions, the
//! self-suspicion guard and the merge of healed partitions. Behind [`Node`](crate::Node) when
//! [`NodeConfig::protocol`](crate::NodeConfig::protocol) is
//! [`Protocol::Cohort`](crate::node::Protocol::Cohort); it can also be driven on its own.
//!
//! Owns [`CohortMembership`] and its settings ([`CohortConfig`]); the packets are in [`wire`].
//! Nothing here does I/O, reads a clock or draws OS randomness.

pub mod wire;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use self::wire::{Body, KeyEntry, MAX_PACKET, Packet, Update, UpdateKind};
use super::Diagnostics;
use super::diagnostics::{DiagnosticKind, DiagnosticLimiter};
use super::events::EventQueue;
use super::machine::normalize_seeds;
use super::state::{NodeState, Refused, key_error};
use super::transmit::TransmitQueue;
use super::{KeyError, LivenessPredicate, Member, MemberStatus, StateLimits, is_reserved_key};
use crate::members::Members;
use crate::wire::{DecodeError, NodeDelta, NodeDigest};
use crate::{Event, NodeId};

/// Settings of a [`CohortMembership`]. Every one has a default.
#[derive(Clone)]
#[non_exhaustive]
pub struct CohortConfig {
    /// This node's identity.
    pub node_id: NodeId,
    /// Only nodes with the same cluster id talk; packets of another are dropped and counted.
    pub cluster_id: String,
    /// Addresses contacted to join.
    pub seeds: Vec<SocketAddr>,
    /// Time between probes (one member probed each). Default 100 ms.
    pub probe_interval: Duration,
    /// How long a probe waits for its `Ack` before asking others to probe. Default 40 ms.
    pub probe_timeout: Duration,
    /// Members asked to probe an unanswered target. Default 3.
    pub indirect_probes: usize,
    /// Members sent the pending updates at every probe, beside the probe itself. Default 2.
    pub gossip_fanout: usize,
    /// An update is sent `retransmit_mult × ⌈log10(N + 1)⌉` times. Default 4 (memberlist's).
    pub retransmit_mult: u32,
    /// The shortest suspicion is `suspicion_alpha × max(1, log10 N)` probe intervals.
    /// Default 3 (memberlist's is 4; with 2, a refutation lost its race with the suspicion's
    /// timers 20 times in 30 minutes at 1% loss among 100 nodes; with 3, never in an hour at
    /// 1% nor at 5%, since refutations are also answered to each suspecter, and crashes are
    /// seen dead everywhere sooner than by chitchat mode's detector at 10 and 100 nodes).
    pub suspicion_alpha: u32,
    /// The longest suspicion (no confirmation) is `suspicion_beta` times the shortest.
    /// Default 6 (memberlist's).
    pub suspicion_beta: u32,
    /// Independent suspicions that bring the suspicion timeout down to its shortest. Default 3.
    pub suspicion_confirmations: u32,
    /// Time between push-pull table syncs with a random member. Default 10 s.
    pub sync_interval: Duration,
    /// How long a failed or departed member is kept before it is collected. Default 60 s.
    pub dead_node_grace_period: Duration,
    /// Peers told at once of a departure. Default 8.
    pub leave_fanout: usize,
    /// The largest packet written (without the envelope). Default [`MAX_PACKET`].
    pub max_packet: usize,
    /// The most events kept for the reader. Default 1,024.
    pub max_pending_events: usize,
    /// The most packets kept for the driver. Default 1,024.
    pub max_pending_transmits: usize,
    /// How long at most the self-suspicion guard holds this node's verdicts while it hears
    /// nothing. Default 10 s.
    pub self_suspicion_hold: Duration,
    /// A timer that fires this many probe intervals late means this node was paused or
    /// starved: it suspects itself rather than the others. Default 3.
    pub late_round_factor: u32,
    /// Zero bytes left at the front of every packet for a wrapper the caller writes in place
    /// (cohort's envelope, behind [`Node`](crate::Node)); not counted in `max_packet`.
    /// Default 0.
    pub transmit_headroom: usize,
    /// Bad input (another cluster, deltas past the bounds) is reported at most once per
    /// sender and kind in this interval. Default 1 s.
    pub diagnostic_interval: Duration,
    /// Bounds on the members and key-values kept (the defaults of [`StateLimits`]). A key and
    /// its value together are also bounded by what one packet carries
    /// ([`wire::max_entry_len`]: about 1 KB with names of up to 64 bytes).
    pub limits: StateLimits,
    /// This node's key-values at start.
    pub initial_key_values: Vec<(String, String)>,
    /// How long tombstones and keys set with a TTL are kept before they are collected.
    /// Default 1 hour (chitchat's).
    pub marked_for_deletion_grace_period: Duration,
    /// When set, a live member whose key-values fail it is [`MemberStatus::Unready`].
    pub liveness_predicate: Option<LivenessPredicate>,
    /// Seed of the machine's random choices.
    pub rng_seed: u64,
}

impl std::fmt::Debug for CohortConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CohortConfig")
            .field("node_id", &self.node_id)
            .field("cluster_id", &self.cluster_id)
            .field("seeds", &self.seeds)
            .field("probe_interval", &self.probe_interval)
            .field("probe_timeout", &self.probe_timeout)
            .field("indirect_probes", &self.indirect_probes)
            .field("gossip_fanout", &self.gossip_fanout)
            .field("retransmit_mult", &self.retransmit_mult)
            .field("suspicion_alpha", &self.suspicion_alpha)
            .field("suspicion_beta", &self.suspicion_beta)
            .field("suspicion_confirmations", &self.suspicion_confirmations)
            .field("sync_interval", &self.sync_interval)
            .field("dead_node_grace_period", &self.dead_node_grace_period)
            .field("leave_fanout", &self.leave_fanout)
            .field("max_packet", &self.max_packet)
            .field("max_pending_events", &self.max_pending_events)
            .field("max_pending_transmits", &self.max_pending_transmits)
            .field("late_round_factor", &self.late_round_factor)
            .field("self_suspicion_hold", &self.self_suspicion_hold)
            .field("transmit_headroom", &self.transmit_headroom)
            .field("diagnostic_interval", &self.diagnostic_interval)
            .field("limits", &self.limits)
            .field("initial_key_values", &self.initial_key_values)
            .field(
                "marked_for_deletion_grace_period",
                &self.marked_for_deletion_grace_period,
            )
            .field("liveness_predicate", &self.liveness_predicate.is_some())
            .field("rng_seed", &self.rng_seed)
            .finish()
    }
}

impl CohortConfig {
    /// The defaults for `node_id` in `cluster_id`.
    #[must_use]
    pub fn new(node_id: NodeId, cluster_id: impl Into<String>) -> Self {
        Self {
            node_id,
            cluster_id: cluster_id.into(),
            seeds: Vec::new(),
            probe_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(40),
            indirect_probes: 3,
            gossip_fanout: 2,
            retransmit_mult: 4,
            suspicion_alpha: 3,
            suspicion_beta: 6,
            suspicion_confirmations: 3,
            sync_interval: Duration::from_secs(10),
            dead_node_grace_period: Duration::from_secs(60),
            leave_fanout: 8,
            max_packet: MAX_PACKET,
            max_pending_events: 1_024,
            max_pending_transmits: 1_024,
            late_round_factor: 3,
            self_suspicion_hold: Duration::from_secs(10),
            transmit_headroom: 0,
            diagnostic_interval: Duration::from_secs(1),
            limits: StateLimits::default(),
            initial_key_values: Vec::new(),
            marked_for_deletion_grace_period: Duration::from_secs(3_600),
            liveness_predicate: None,
            rng_seed: 0,
        }
    }
}

/// What this node believes of a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Alive,
    Suspect,
    Dead,
    Left,
}

/// A suspicion in progress (Lifeguard): its deadline shrinks with each independent
/// confirmation, from the longest timeout toward the shortest.
#[derive(Clone, Debug)]
struct Suspicion {
    started: Instant,
    /// Senders that reported the suspicion (at most `suspicion_confirmations`).
    confirmations: Vec<SocketAddr>,
}

#[derive(Clone, Debug)]
struct Entry {
    id: NodeId,
    incarnation: u64,
    state: State,
    /// When `state` last changed.
    since: Instant,
    suspicion: Option<Box<Suspicion>>,
    /// Where it is in the live list (`NOT_LISTED` when it is not there).
    live_pos: u32,
    /// Whether it was ever alive here (a member only heard of as failed is not `Failed`).
    was_alive: bool,
    /// Whether it is in the collection queue for its deleted keys.
    gc_queued: bool,
    /// Its key-values.
    keys: NodeState,
}

/// What the table summary hashes of a member: its state, incarnation and key-value version.
type Record = (State, u64, u64);

/// A member's status for users: its liveness, and the liveness predicate on its keys.
fn member_status(entry: &Entry, predicate: Option<&LivenessPredicate>) -> MemberStatus {
    match entry.status() {
        MemberStatus::Live if predicate.is_some_and(|p| !p(&entry.keys)) => MemberStatus::Unready,
        status => status,
    }
}

impl Entry {
    fn new(id: NodeId, incarnation: u64, state: State, now: Instant) -> Self {
        Self {
            id,
            incarnation,
            state,
            since: now,
            suspicion: None,
            live_pos: NOT_LISTED,
            was_alive: matches!(state, State::Alive | State::Suspect),
            gc_queued: false,
            keys: NodeState::new(),
        }
    }

    fn record(&self) -> Record {
        (self.state, self.incarnation, self.keys.max_version())
    }

    /// Its liveness alone (the liveness predicate aside).
    fn status(&self) -> MemberStatus {
        match self.state {
            State::Alive | State::Suspect => MemberStatus::Live,
            State::Dead if self.was_alive => MemberStatus::Failed,
            State::Dead => MemberStatus::Joining,
            State::Left => MemberStatus::Left,
        }
    }

    fn update(&self, kind: UpdateKind) -> Update {
        Update {
            kind,
            id: self.id.clone(),
            incarnation: self.incarnation,
        }
    }

    fn current_update(&self) -> Update {
        self.update(match self.state {
            State::Alive => UpdateKind::Alive,
            State::Suspect => UpdateKind::Suspect,
            State::Dead => UpdateKind::Dead,
            State::Left => UpdateKind::Left,
        })
    }
}

/// The probe of the current period.
#[derive(Clone, Debug)]
struct Probe {
    target: NodeId,
    seq: u32,
    sent_at: Instant,
    acked: bool,
    indirect_sent: bool,
    /// Relays asked, and how many answered `Nack`.
    relays: usize,
    nacks: usize,
}

/// A probe made for another member's `PingReq`.
#[derive(Clone, Debug)]
struct Relay {
    requester: SocketAddr,
    their_seq: u32,
    deadline: Instant,
}

/// What a queued piece of news is.
#[derive(Clone, Debug)]
enum News {
    /// Membership news.
    Member(Update),
    /// A member's key-values changed: its versions above the `from` kept in
    /// `CohortMembership::queued_keys`, written when the packet is.
    Keys(NodeId),
}

/// An update waiting to be sent, and how many times it was.
#[derive(Clone, Debug)]
struct Queued {
    news: News,
    transmits: u32,
    /// Matches `CohortMembership::queued` (or `queued_keys`) while this is the newest news of
    /// its kind about its member.
    stamp: u64,
}

/// Counts of what this machine dropped or refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CohortCounts {
    /// Members not added because the table was full.
    pub refused_members: u64,
    /// Packets dropped because the driver's queue was full.
    pub dropped_transmits: u64,
    /// Suspicions of this node refuted.
    pub refutations: u64,
    /// Chitchat datagrams received (a chitchat-mode peer, or a real chitchat node): refused as
    /// [`DecodeError::BadMagic`] with chitchat's magic, never taken for cohort-mode packets.
    pub chitchat_datagrams: u64,
    /// Probes sent (one per probe interval while there is a member to probe).
    pub probes: u64,
    /// Requests for missing key-values sent (a delta that could not be applied, or a table
    /// sync that showed a member's keys behind).
    pub key_pulls: u64,
}

/// `Entry::live_pos` of a member that is not in the live list.
const NOT_LISTED: u32 = u32::MAX;

/// The most relays kept at once (a flood of `PingReq`s cannot grow memory).
const MAX_RELAYS: usize = 256;

/// While a table sync teaches new members, the next sync comes after this many probe
/// intervals instead of a whole sync interval.
const SYNC_SOON_INTERVALS: u32 = 10;

/// The most packets sent in answer to one `KeysRequest`.
const MAX_PULL_PACKETS: usize = 16;

/// The most key-value requests awaiting an answer (one per member).
const MAX_PENDING_PULLS: usize = 4_096;

/// How many probe intervals a key-value request waits for its answer before another may be
/// sent for the same member.
const PULL_WAIT_INTERVALS: u32 = 10;

/// The most Lifeguard local-health score (timeouts and intervals stretch up to 1 + this).
const MAX_LOCAL_HEALTH: u32 = 8;

/// cohort mode's membership machine: see the module documentation and
/// `docs/cohort-mode.md`. Drive it like [`Membership`](super::Membership): feed every packet
/// to [`handle_datagram`](Self::handle_datagram), call [`handle_timeout`](Self::handle_timeout)
/// when [`poll_timeout`](Self::poll_timeout) passes, and drain
/// [`poll_transmit`](Self::poll_transmit) and [`poll_event`](Self::poll_event) after every
/// input.
///
/// ```
/// use std::time::{Duration, Instant};
/// use cohort_core::{MemberStatus, NodeId};
/// use cohort_core::membership::cohort_mode::{CohortConfig, CohortMembership};
///
/// let (a_id, b_id) = (
///     NodeId::new("a", 1, "127.0.0.1:7001".parse().unwrap()),
///     NodeId::new("b", 1, "127.0.0.1:7002".parse().unwrap()),
/// );
/// let mut now = Instant::now();
/// let mut a = CohortMembership::new(CohortConfig::new(a_id.clone(), "demo"), now);
/// let mut config = CohortConfig::new(b_id.clone(), "demo");
/// config.seeds = vec![a_id.gossip_addr()];
/// let mut b = CohortMembership::new(config, now);
/// let mut buf = Vec::new();
/// for _ in 0..20 {
///     for node in [&mut a, &mut b] {
///         if node.poll_timeout() <= now {
///             node.handle_timeout(now);
///         }
///     }
///     // An instant network: deliver until nothing is left to send.
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
///     now += Duration::from_millis(50);
/// }
/// assert_eq!(a.status(&b_id), Some(MemberStatus::Live));
/// assert_eq!(b.status(&a_id), Some(MemberStatus::Live));
/// ```
#[derive(Debug)]
pub struct CohortMembership {
    config: CohortConfig,
    cluster: u64,
    incarnation: u64,
    /// Ordered by identity, so that the generations of a name are neighbours.
    members: BTreeMap<NodeId, Entry>,
    /// The members known live (alive or suspected), this node excepted, and where each is in
    /// `live` (random picks and counts in O(1)).
    live: Vec<NodeId>,
    /// The suspected members (their deadlines are the only ones scanned).
    suspects: std::collections::HashSet<NodeId>,
    /// Failed and departed members in the order they became so (entries that changed since
    /// are skipped when met), for their collection.
    departed: VecDeque<(Instant, NodeId)>,
    /// The table summary by bucket, kept as records change
    /// ([`table_summary`](Self::table_summary)).
    buckets: Vec<u64>,
    /// Collected members and the incarnation they had, so that stale news does not bring them
    /// back (the oldest forgotten first past `max_members`).
    removed: HashMap<NodeId, u64>,
    removed_order: VecDeque<NodeId>,
    /// The probe order: every member once per pass, shuffled at the start of a pass.
    order: Vec<NodeId>,
    next_in_order: usize,
    probe: Option<Probe>,
    relays: HashMap<u32, Relay>,
    /// Updates to send: the least sent at the front (new ones go there, sent ones to the
    /// back), so that a packet takes the least sent first without sorting.
    queue: VecDeque<Queued>,
    /// The stamp of the update queued for each member: an older one met in the queue is
    /// dropped (replacing one costs nothing at once).
    queued: HashMap<NodeId, u64>,
    /// For each member whose key-values are queued: the stamp of the newest `News::Keys` and
    /// the version above which its keys are sent.
    queued_keys: HashMap<NodeId, (u64, u64)>,
    /// Members whose deleted keys are due for collection, earliest first.
    gc_due: BinaryHeap<Reverse<(Instant, NodeId)>>,
    /// Members whose key-values were asked for, and until when no new request is sent.
    pulls: HashMap<NodeId, Instant>,
    /// The bytes of every member's key-values, as [`StateLimits`] counts them.
    state_bytes: usize,
    stamp: u64,
    seq: u32,
    local_health: u32,
    next_probe: Instant,
    next_sync: Instant,
    /// The earliest the next gossip of pending updates may go.
    next_gossip: Instant,
    transmits: TransmitQueue,
    events: EventQueue,
    counts: CohortCounts,
    diagnostics: DiagnosticLimiter,
    /// When a packet of this cluster last arrived (the start, before any).
    last_received: Instant,
    /// Since when this node has heard nothing while it should (the self-suspicion guard).
    silent_since: Option<Instant>,
    leaving: bool,
    version: u64,
    rng: Xoshiro256PlusPlus,
}

impl CohortMembership {
    /// A machine for `config.node_id`, started at `now`.
    #[must_use]
    pub fn new(mut config: CohortConfig, now: Instant) -> Self {
        normalize_seeds(&mut config.seeds, config.node_id.gossip_addr());
        let mut own = Entry::new(config.node_id.clone(), 0, State::Alive, now);
        for (key, value) in &config.initial_key_values {
            own.keys.set(key, value);
        }
        let state_bytes = own.keys.bytes();
        let mut members = BTreeMap::new();
        members.insert(config.node_id.clone(), own);
        let mut machine = Self {
            cluster: wire::cluster_hash(&config.cluster_id),
            incarnation: 0,
            members,
            removed: HashMap::new(),
            removed_order: VecDeque::new(),
            live: Vec::new(),
            suspects: std::collections::HashSet::new(),
            departed: VecDeque::new(),
            buckets: vec![0; wire::SYNC_BUCKETS],
            order: Vec::new(),
            next_in_order: 0,
            probe: None,
            relays: HashMap::new(),
            queue: VecDeque::new(),
            queued: HashMap::new(),
            queued_keys: HashMap::new(),
            gc_due: BinaryHeap::new(),
            pulls: HashMap::new(),
            state_bytes,
            stamp: 0,
            seq: 0,
            local_health: 0,
            next_probe: now,
            next_sync: now + config.sync_interval,
            next_gossip: now,
            transmits: TransmitQueue::default(),
            events: EventQueue::default(),
            counts: CohortCounts::default(),
            diagnostics: DiagnosticLimiter::new(config.diagnostic_interval),
            last_received: now,
            silent_since: None,
            leaving: false,
            version: 1,
            rng: Xoshiro256PlusPlus::seed_from_u64(config.rng_seed),
            config,
        };
        let me = machine.config.node_id.clone();
        machine.indexed(&me, None);
        let alive = machine.own_update(UpdateKind::Alive);
        machine.enqueue(alive);
        if machine.state_bytes > 0 {
            machine.enqueue_keys(&me, 0);
        }
        machine
    }

    /// Keeps the indexes (live list, suspects, departed queue, names, table summary) in step
    /// with `id`'s entry, which was `before` (state and incarnation; `None`: just added) and is
    /// now whatever the table holds (nothing: just removed).
    fn indexed(&mut self, id: &NodeId, before: Option<Record>) {
        let now_entry = self.members.get(id).map(|e| (e.record(), e.since));
        let bucket = bucket_of(id);
        if let Some(record) = before {
            self.buckets[bucket] = self.buckets[bucket].wrapping_sub(record_hash(id, record));
        }
        let is_self = *id == self.config.node_id;
        let was_live = before.is_some_and(|(s, _, _)| matches!(s, State::Alive | State::Suspect));
        match now_entry {
            Some((record, since)) => {
                let state = record.0;
                self.buckets[bucket] = self.buckets[bucket].wrapping_add(record_hash(id, record));
                let is_live = matches!(state, State::Alive | State::Suspect);
                if !is_self && is_live && !was_live {
                    let at = u32::try_from(self.live.len()).unwrap_or(NOT_LISTED);
                    if let Some(entry) = self.members.get_mut(id) {
                        entry.live_pos = at;
                    }
                    self.live.push(id.clone());
                } else if !is_self && !is_live && was_live {
                    self.unlist(id);
                }
                if state == State::Suspect {
                    self.suspects.insert(id.clone());
                } else {
                    self.suspects.remove(id);
                }
                let state_changed = before.map(|b| b.0) != Some(state);
                if !is_self && !is_live && state_changed {
                    self.departed.push_back((since, id.clone()));
                }
            }
            None => {
                // `remove` took it out of the live list before removing it.
                self.suspects.remove(id);
            }
        }
    }

    /// Checks that the indexes agree with the table (tests).
    #[cfg(test)]
    pub(crate) fn check_indexes(&self) {
        let mut buckets = vec![0u64; wire::SYNC_BUCKETS];
        for e in self.members.values() {
            let b = &mut buckets[bucket_of(&e.id)];
            *b = b.wrapping_add(record_hash(&e.id, e.record()));
        }
        assert_eq!(buckets, self.buckets, "the table summary");
        let bytes: usize = self.members.values().map(|e| e.keys.bytes()).sum();
        assert_eq!(bytes, self.state_bytes, "the key-value bytes");
        let mut live: Vec<&NodeId> = self
            .members
            .values()
            .filter(|e| {
                e.id != self.config.node_id && matches!(e.state, State::Alive | State::Suspect)
            })
            .map(|e| &e.id)
            .collect();
        let mut listed: Vec<&NodeId> = self.live.iter().collect();
        live.sort();
        listed.sort();
        assert_eq!(live, listed, "the live list");
        for (at, id) in self.live.iter().enumerate() {
            let pos = self.members.get(id).map(|e| e.live_pos);
            assert_eq!(pos, u32::try_from(at).ok(), "the live positions");
        }
        let suspects = self
            .members
            .values()
            .filter(|e| e.state == State::Suspect)
            .count();
        assert_eq!(suspects, self.suspects.len(), "the suspects");
        for e in self.members.values() {
            if matches!(e.state, State::Dead | State::Left) && e.id != self.config.node_id {
                assert!(
                    self.departed.contains(&(e.since, e.id.clone())),
                    "{} is queued for collection",
                    e.id
                );
            }
        }
    }

    /// Takes `id` out of the live list.
    fn unlist(&mut self, id: &NodeId) {
        let Some(entry) = self.members.get_mut(id) else {
            return;
        };
        let at = std::mem::replace(&mut entry.live_pos, NOT_LISTED);
        let Ok(at) = usize::try_from(at) else {
            return;
        };
        if at >= self.live.len() {
            return;
        }
        self.live.swap_remove(at);
        if let Some(moved) = self.live.get(at).cloned() {
            if let Some(entry) = self.members.get_mut(&moved) {
                entry.live_pos = u32::try_from(at).unwrap_or(NOT_LISTED);
            }
        }
    }

    /// The other generations of `id`'s name that are known.
    fn generations_of<'a>(&'a self, id: &'a NodeId) -> impl Iterator<Item = &'a NodeId> + 'a {
        let low = NodeId::new(id.name(), 0, SocketAddr::new(IpAddr::V4(0.into()), 0));
        let high = NodeId::new(
            id.name(),
            u64::MAX,
            SocketAddr::V6(std::net::SocketAddrV6::new(
                Ipv6Addr::from(u128::MAX),
                u16::MAX,
                u32::MAX,
                u32::MAX,
            )),
        );
        self.members
            .range(low..=high)
            .map(|(k, _)| k)
            .filter(move |k| *k != id)
    }

    // ------------------------------------------------------------------------- queries

    /// This node's identity.
    #[must_use]
    pub fn node_id(&self) -> &NodeId {
        &self.config.node_id
    }

    /// This node's incarnation (raised each time it refutes a suspicion).
    #[must_use]
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// What this node believes of `id`.
    #[must_use]
    pub fn status(&self, id: &NodeId) -> Option<MemberStatus> {
        self.members.get(id).map(|e| self.status_of(e))
    }

    fn status_of(&self, entry: &Entry) -> MemberStatus {
        member_status(entry, self.config.liveness_predicate.as_ref())
    }

    /// The key-values of `id` as stored (tombstones and reserved keys included).
    #[must_use]
    pub fn node_state(&self, id: &NodeId) -> Option<&NodeState> {
        self.members.get(id).map(|e| &e.keys)
    }

    /// Whether `id` is suspected (still live for users; a suspicion is not a verdict).
    #[must_use]
    pub fn is_suspected(&self, id: &NodeId) -> bool {
        self.members
            .get(id)
            .is_some_and(|e| e.state == State::Suspect)
    }

    /// The number of members known, this node included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether only this node is known. Never true of a running machine, which always knows
    /// itself; kept for the `len` convention.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// A snapshot of the membership. A member's `heartbeat` is its incarnation here.
    #[must_use]
    pub fn members(&self) -> Members {
        let all: Vec<Member> = self.members.values().map(|e| self.snapshot(e)).collect();
        Members::new(self.version, self.config.node_id.clone(), all)
    }

    /// The version of the membership: it grows with every change (a member first seen, a
    /// status, a key, a member removed).
    #[must_use]
    pub fn members_version(&self) -> u64 {
        self.version
    }

    /// This node as a member.
    #[must_use]
    pub fn local_member(&self) -> Member {
        // The table always holds this node (`remove` never takes it out).
        self.member(&self.config.node_id).unwrap_or_else(|| Member {
            id: self.config.node_id.clone(),
            status: MemberStatus::Live,
            heartbeat: self.incarnation,
            max_version: 0,
            keys: BTreeMap::new(),
        })
    }

    /// Whether [`leave`](Self::leave) was called.
    #[must_use]
    pub fn is_leaving(&self) -> bool {
        self.leaving
    }

    fn snapshot(&self, e: &Entry) -> Member {
        Member {
            id: e.id.clone(),
            status: self.status_of(e),
            heartbeat: e.incarnation,
            max_version: e.keys.max_version(),
            keys: e
                .keys
                .visible()
                .filter(|(k, _)| !is_reserved_key(k))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// What was dropped or refused so far.
    #[must_use]
    pub fn counts(&self) -> CohortCounts {
        CohortCounts {
            dropped_transmits: self.transmits.dropped(),
            ..self.counts
        }
    }

    /// Counts of bad input since the start (every occurrence, reported or held back).
    #[must_use]
    pub fn diagnostics(&self) -> Diagnostics {
        self.diagnostics.counts()
    }

    /// Reports bad input from `from` as the event `make` builds, at most once per sender and
    /// kind per diagnostic interval (counted either way).
    /// Returns whether it was reported.
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

    /// Answers a datagram of the other membership protocol (once reported) with a packet of
    /// this protocol's (its header alone), so that the sender learns of the mismatch too.
    pub(crate) fn answer_mismatch(&mut self, to: SocketAddr) {
        let (out, _) = self.new_packet(&Body::Gossip);
        self.push_transmit(to, out);
    }

    /// The order-independent summary of the table that table syncs compare: equal summaries
    /// mean equal tables (up to a 64-bit hash collision).
    #[must_use]
    pub fn table_digest(&self) -> u64 {
        self.buckets.iter().fold(0u64, |a, b| a.wrapping_add(*b))
    }

    /// The table summary by bucket ([`wire::SYNC_BUCKETS`] values: the wrapping sum of the
    /// record hashes of the members that fall in each), which table syncs compare.
    #[must_use]
    pub fn table_summary(&self) -> Vec<u64> {
        self.buckets.clone()
    }

    /// The number of live members other than this node.
    #[must_use]
    pub fn live_peers(&self) -> usize {
        self.live.len()
    }

    /// How many times an update is sent: `retransmit_mult × ⌈log10(N + 1)⌉`.
    fn retransmit_limit(&self) -> u32 {
        let digits = decimal_digits(self.members.len() + 1);
        self.config.retransmit_mult.saturating_mul(digits.max(1))
    }

    /// The shortest and longest suspicion timeouts for the current cluster size.
    fn suspicion_bounds(&self) -> (Duration, Duration) {
        let log10 = decimal_digits(self.members.len().max(1)).max(2) - 1;
        let min = self.config.probe_interval * self.config.suspicion_alpha * log10.max(1);
        (min, min * self.config.suspicion_beta.max(1))
    }

    fn suspicion_deadline(&self, suspicion: &Suspicion) -> Instant {
        let (min, max) = self.suspicion_bounds();
        let k = f64::from(self.config.suspicion_confirmations.max(1));
        let c = suspicion.confirmations.len() as f64;
        let fraction = ((c + 1.0).ln() / (k + 1.0).ln()).min(1.0);
        let span = max.saturating_sub(min).as_secs_f64() * (1.0 - fraction);
        suspicion.started + min + Duration::from_secs_f64(span)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        let mut due = self.next_probe.min(self.next_sync);
        if self.has_news() && !self.live.is_empty() {
            due = due.min(self.next_gossip);
        }
        if let Some(probe) = &self.probe {
            if !probe.acked && !probe.indirect_sent {
                due = due.min(probe.sent_at + self.scaled(self.config.probe_timeout));
            }
        }
        for relay in self.relays.values() {
            due = due.min(relay.deadline);
        }
        for id in &self.suspects {
            if let Some(suspicion) = self.members.get(id).and_then(|e| e.suspicion.as_ref()) {
                due = due.min(self.suspicion_deadline(suspicion));
            }
        }
        if let Some((since, _)) = self.departed.front() {
            due = due.min(*since + self.config.dead_node_grace_period);
        }
        if let Some(Reverse((at, _))) = self.gc_due.peek() {
            due = due.min(*at);
        }
        due
    }

    fn scaled(&self, base: Duration) -> Duration {
        base * (1 + self.local_health)
    }

    // ------------------------------------------------------------------------- outputs

    /// The next packet to send, and where to: `out` is swapped for the packet's buffer (its
    /// own buffer is kept for a later packet), so that no packet is copied.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<SocketAddr> {
        self.transmits.pop_into(out)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(missed) = self.events.take_missed() {
            return Some(Event::Lagged {
                missed,
                members: self.members(),
            });
        }
        self.events.pop()
    }

    fn push_event(&mut self, event: Event) {
        if event.changes_members() {
            self.version += 1;
        }
        self.events.push(event, self.config.max_pending_events);
    }

    /// One member, as this node sees it.
    #[must_use]
    pub fn member(&self, id: &NodeId) -> Option<Member> {
        self.members.get(id).map(|e| self.snapshot(e))
    }

    /// Writes a packet of `body` to `to`, with as many pending updates as fit (fewest
    /// transmissions first; an update sent its limit is dropped from the queue).
    fn send(&mut self, to: SocketAddr, body: &Body) {
        self.send_with(to, body, None);
    }

    /// As [`send`](Self::send), with `notice` first (news the receiver must hear about
    /// itself).
    fn send_with(&mut self, to: SocketAddr, body: &Body, notice: Option<Update>) {
        let (mut out, at) = self.new_packet(body);
        let (_, limit) = self.packet_bounds();
        // Lifeguard's buddy system: a packet to a suspected member tells it first, so that it
        // refutes at once rather than when the gossip reaches it.
        let buddy = notice.or_else(|| {
            self.suspects
                .iter()
                .find(|id| id.gossip_addr() == to)
                .and_then(|id| self.members.get(id))
                .map(|e| e.update(UpdateKind::Suspect))
        });
        if let Some(suspicion) = &buddy {
            wire::push_update(&mut out, at, suspicion, limit);
        }
        let retransmits = self.retransmit_limit();
        // At most one pass over the queue: updates sent go to its back, behind the ones this
        // pass has not reached.
        for _ in 0..self.queue.len() {
            let Some(mut queued) = self.queue.pop_front() else {
                break;
            };
            let fit = match &queued.news {
                News::Member(update) => {
                    if self.queued.get(&update.id) != Some(&queued.stamp) {
                        continue; // replaced by a newer update about the same member
                    }
                    if wire::push_update(&mut out, at, update, limit) {
                        Fit::Sent
                    } else {
                        Fit::Full
                    }
                }
                News::Keys(id) => match self.queued_keys.get(id) {
                    Some(&(stamp, from)) if stamp == queued.stamp => {
                        self.push_keys_of(&mut out, at, id, from, limit)
                    }
                    _ => continue,
                },
            };
            match fit {
                Fit::Full => {
                    self.queue.push_front(queued);
                    break;
                }
                Fit::Gone => {
                    self.forget_queued(&queued.news);
                    continue;
                }
                Fit::Sent => {}
            }
            queued.transmits += 1;
            if queued.transmits < retransmits {
                self.queue.push_back(queued);
            } else {
                self.forget_queued(&queued.news);
            }
        }
        self.push_transmit(to, out);
    }

    fn forget_queued(&mut self, news: &News) {
        match news {
            News::Member(update) => self.queued.remove(&update.id),
            News::Keys(id) => self.queued_keys.remove(id).map(|(stamp, _)| stamp),
        };
    }

    /// Writes `id`'s key-values above version `from` into a packet begun at `at`: whole, or,
    /// into a packet that carries nothing else yet, as many as fit (the rest reaches the
    /// others by table syncs).
    fn push_keys_of(
        &self,
        out: &mut Vec<u8>,
        at: usize,
        id: &NodeId,
        from: u64,
        limit: usize,
    ) -> Fit {
        let Some(entry) = self.members.get(id) else {
            return Fit::Gone;
        };
        let keys = &entry.keys;
        if keys.max_version() <= from {
            return Fit::Gone;
        }
        let entries = entries_above(keys, from);
        let (len, count) = (out.len(), out[at]);
        match wire::push_keys(
            out,
            at,
            id,
            keys.last_gc_version(),
            from,
            keys.max_version(),
            &entries,
            limit,
        ) {
            Some(n) if n == entries.len() || count == 0 => Fit::Sent,
            Some(_) => {
                out.truncate(len);
                out[at] = count;
                Fit::Full
            }
            None => Fit::Full,
        }
    }

    /// A packet buffer with this node's header for `body` written (after the headroom), and
    /// where its update count is.
    fn new_packet(&mut self, body: &Body) -> (Vec<u8>, usize) {
        let (headroom, limit) = self.packet_bounds();
        let keys = self.own_keys_version();
        let head = wire::Head {
            cluster: self.cluster,
            from: &self.config.node_id,
            incarnation: self.incarnation,
            keys,
        };
        start_packet(&mut self.transmits, &head, headroom, limit, body)
    }

    fn own_keys_version(&self) -> u64 {
        self.members
            .get(&self.config.node_id)
            .map_or(0, |e| e.keys.max_version())
    }

    /// The headroom left at the front of every packet, and the length no packet passes (the
    /// headroom included).
    fn packet_bounds(&self) -> (usize, usize) {
        let headroom = self.config.transmit_headroom;
        (headroom, headroom + self.config.max_packet.min(MAX_PACKET))
    }

    fn push_transmit(&mut self, to: SocketAddr, payload: Vec<u8>) {
        self.transmits
            .push(to, payload, self.config.max_pending_transmits);
    }

    /// Queues `update` for dissemination, replacing an older one about the same member.
    fn enqueue(&mut self, update: Update) {
        self.stamp += 1;
        self.queued.insert(update.id.clone(), self.stamp);
        self.queue.push_front(Queued {
            news: News::Member(update),
            transmits: 0,
            stamp: self.stamp,
        });
    }

    /// Queues `id`'s key-values above version `from` for dissemination (from the lower
    /// version when some of them are queued already).
    fn enqueue_keys(&mut self, id: &NodeId, from: u64) {
        self.stamp += 1;
        let from = self
            .queued_keys
            .get(id)
            .map_or(from, |&(_, queued)| queued.min(from));
        self.queued_keys.insert(id.clone(), (self.stamp, from));
        self.queue.push_front(Queued {
            news: News::Keys(id.clone()),
            transmits: 0,
            stamp: self.stamp,
        });
    }

    fn own_update(&self, kind: UpdateKind) -> Update {
        Update {
            kind,
            id: self.config.node_id.clone(),
            incarnation: self.incarnation,
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn random_index(&mut self, n: usize) -> usize {
        crate::random::index_below(&mut self.rng, n)
    }

    /// Up to `count` random live members other than this node and `except`.
    fn random_live(&mut self, count: usize, except: Option<&NodeId>) -> Vec<SocketAddr> {
        let excluded = usize::from(except.is_some_and(|e| {
            self.members
                .get(e)
                .is_some_and(|e| e.live_pos != NOT_LISTED)
        }));
        let want = count.min(self.live.len() - excluded);
        let mut chosen: Vec<usize> = Vec::with_capacity(want);
        // Rejection sampling: `want` is small (a few), the live list large.
        let mut attempts = 0;
        while chosen.len() < want && attempts < 64 * (want + 1) {
            attempts += 1;
            let i = self.random_index(self.live.len());
            if chosen.contains(&i) || except == Some(&self.live[i]) {
                continue;
            }
            chosen.push(i);
        }
        chosen
            .into_iter()
            .map(|i| self.live[i].gossip_addr())
            .collect()
    }

    // ------------------------------------------------------------------------- commands

    /// Announces a graceful departure: this node is `Left` for every peer that hears it, at
    /// once for up to [`CohortConfig::leave_fanout`] of them.
    pub fn leave(&mut self, now: Instant) {
        if self.leaving {
            return;
        }
        self.leaving = true;
        let me = self.config.node_id.clone();
        if let Some(entry) = self.members.get_mut(&me) {
            let before = entry.record();
            entry.state = State::Left;
            entry.since = now;
            self.indexed(&me, Some(before));
        }
        self.version += 1;
        let update = self.own_update(UpdateKind::Left);
        self.enqueue(update);
        let fanout = self.config.leave_fanout.max(1);
        for to in self.random_live(fanout, None) {
            self.send(to, &Body::Gossip);
        }
    }

    /// Whether the departure started by [`leave`](Self::leave) was handed out: it is queued
    /// at once, for up to [`CohortConfig::leave_fanout`] peers (at once too when no peer is
    /// known: nobody to tell).
    #[must_use]
    pub fn leave_announced(&self) -> bool {
        self.leaving
    }

    /// Replaces the seed addresses; used while this node knows no live member.
    pub fn set_seeds(&mut self, mut seeds: Vec<SocketAddr>) {
        normalize_seeds(&mut seeds, self.config.node_id.gossip_addr());
        self.config.seeds = seeds;
    }

    /// Starts a push-pull table sync with `addr` now, outside the regular ones.
    pub fn gossip_to(&mut self, addr: SocketAddr) {
        let buckets = self.table_summary();
        self.send(
            addr,
            &Body::SyncRequest {
                buckets,
                answer_back: true,
            },
        );
    }

    /// Sets one of this node's keys (gossiped to every member). Setting the value a key
    /// already holds changes nothing. `now` is when the command is given.
    ///
    /// # Errors
    ///
    /// [`KeyError::Reserved`] for keys under `__cohort/`, [`KeyError::Leaving`] once the node
    /// is leaving, [`KeyError::TooLong`] for a key and value longer than one packet carries
    /// ([`wire::max_entry_len`]) or than [`StateLimits`] allows, [`KeyError::StateFull`] past
    /// the other bounds. Nothing changes then.
    pub fn set(&mut self, now: Instant, key: &str, value: &str) -> Result<(), KeyError> {
        self.check_write(key, value)?;
        self.own_write(now, key, |keys| keys.set(key, value));
        Ok(())
    }

    /// Sets a key that is collected everywhere once
    /// [`CohortConfig::marked_for_deletion_grace_period`] has passed since `now`. The value
    /// the key already holds with a TTL changes nothing (its TTL is not restarted).
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn set_with_ttl(&mut self, now: Instant, key: &str, value: &str) -> Result<(), KeyError> {
        self.check_write(key, value)?;
        self.own_write(now, key, |keys| keys.set_with_ttl(key, value, now));
        Ok(())
    }

    /// Deletes one of this node's keys (a tombstone is gossiped). Returns whether it existed.
    ///
    /// # Errors
    ///
    /// [`KeyError::Reserved`] or [`KeyError::Leaving`], as [`set`](Self::set).
    pub fn delete(&mut self, now: Instant, key: &str) -> Result<bool, KeyError> {
        self.check_key(key)?;
        Ok(self.own_write(now, key, |keys| keys.delete(key, now)))
    }

    /// Keeps a key visible until the grace period has passed since `now`, then collects it
    /// everywhere. Returns whether it existed.
    ///
    /// # Errors
    ///
    /// As [`delete`](Self::delete).
    pub fn delete_after_ttl(&mut self, now: Instant, key: &str) -> Result<bool, KeyError> {
        self.check_key(key)?;
        Ok(self.own_write(now, key, |keys| keys.delete_after_ttl(key, now)))
    }

    fn check_key(&self, key: &str) -> Result<(), KeyError> {
        if is_reserved_key(key) {
            return Err(KeyError::Reserved(key.to_owned()));
        }
        if self.leaving {
            return Err(KeyError::Leaving);
        }
        Ok(())
    }

    fn check_write(&self, key: &str, value: &str) -> Result<(), KeyError> {
        self.check_key(key)?;
        let me = &self.config.node_id;
        let fits = wire::max_entry_len(me);
        if key.len() + value.len() > fits {
            return Err(KeyError::TooLong {
                limit: super::Limit::ValueLength,
                len: value.len(),
                max: fits.saturating_sub(key.len()),
            });
        }
        let Some(own) = self.members.get(me) else {
            return Ok(());
        };
        let others = self.state_bytes - own.keys.bytes();
        own.keys
            .check_write(key, value, &self.config.limits, others)
            .map_err(|broken| key_error(broken, key, value))
    }

    /// Applies a write to this node's own key-values; reports and queues what changed.
    fn own_write(
        &mut self,
        now: Instant,
        key: &str,
        write: impl FnOnce(&mut NodeState) -> bool,
    ) -> bool {
        let _ = now;
        let me = self.config.node_id.clone();
        let Some(entry) = self.members.get_mut(&me) else {
            return false;
        };
        let before = entry.record();
        let old = entry.keys.get(key).map(str::to_owned);
        let from = entry.keys.max_version();
        let bytes = entry.keys.bytes();
        if !write(&mut entry.keys) {
            return false;
        }
        self.state_bytes = self.state_bytes - bytes + entry.keys.bytes();
        self.indexed(&me, Some(before));
        self.version += 1;
        self.schedule_gc(&me);
        self.enqueue_keys(&me, from);
        self.report_keys(&me, std::iter::once((key.to_owned(), old)));
        true
    }

    // ------------------------------------------------------------------------- inputs

    /// Processes a received packet (without its envelope).
    ///
    /// # Errors
    ///
    /// A packet that does not decode is refused with a [`DecodeError`] and changes nothing.
    /// One of another cluster decodes but is dropped (and counted).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), DecodeError> {
        let packet = self.decode(bytes)?;
        self.handle_packet(now, from, packet);
        Ok(())
    }

    /// Decodes a packet as [`handle_datagram`](Self::handle_datagram) does (counting a
    /// chitchat datagram), without processing it.
    ///
    /// # Errors
    ///
    /// As [`handle_datagram`](Self::handle_datagram).
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Packet, DecodeError> {
        wire::decode(bytes).inspect_err(|error| {
            if *error == DecodeError::BadMagic(crate::wire::CHITCHAT_MAGIC) {
                self.counts.chitchat_datagrams += 1;
            }
        })
    }

    /// Processes a decoded packet (see [`handle_datagram`](Self::handle_datagram)).
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, packet: Packet) {
        if packet.cluster != self.cluster {
            self.report_diagnostic(now, from, DiagnosticKind::BadCluster, |suppressed| {
                Event::BadCluster { from, suppressed }
            });
            return;
        }
        if packet.from == self.config.node_id {
            return;
        }
        self.last_received = now;
        // A packet from a member proves it alive at its incarnation.
        self.apply(
            now,
            from,
            Update {
                kind: UpdateKind::Alive,
                id: packet.from.clone(),
                incarnation: packet.incarnation,
            },
        );
        // A member we believe failed (or collected after failing) is talking to us: tell it,
        // so that it refutes and comes back everywhere (a healed partition).
        let notice = match self.members.get(&packet.from) {
            Some(e) if e.state == State::Dead => Some(e.update(UpdateKind::Dead)),
            Some(_) => None,
            None => self.dead_notice(&packet.from),
        };
        if let Some(notice) = notice {
            self.send_with(from, &Body::Gossip, Some(notice));
        }
        // A table sync's records are reconciliation, not news: what they teach is not gossiped
        // on (the joins and changes in them spread from where they happened). Otherwise a
        // node that joins a large cluster would queue a thousand updates for gossip.
        let spread = packet.body != Body::SyncResponse;
        let known = self.members.len();
        for update in packet.updates {
            self.learn(now, from, update, spread);
        }
        if packet.body == Body::KeysRequest {
            self.answer_keys(from, &packet.deltas);
        } else {
            let mut behind: Vec<NodeId> = packet
                .deltas
                .iter()
                .filter_map(|delta| self.learn_keys(now, from, delta, spread))
                .collect();
            // The sender's own keys moved past our copy (a change whose deltas we missed, or
            // a member first heard of from itself): ask it.
            if self
                .members
                .get(&packet.from)
                .is_some_and(|e| e.keys.max_version() < packet.keys_version)
            {
                behind.push(packet.from.clone());
            }
            if !behind.is_empty() {
                // The sender holds what we lack (it applied, or wrote, the versions it sent).
                self.pull_keys(now, from, behind);
            }
        }
        if !spread && self.members.len() > known {
            // The table is growing (a join, or a cluster starting): sync again soon, with
            // another member, rather than in a whole sync interval.
            let soon = now + self.config.probe_interval * SYNC_SOON_INTERVALS;
            self.next_sync = self.next_sync.min(soon);
        }
        match packet.body {
            Body::Ping {
                seq,
                target_generation,
            } => {
                if target_generation == self.config.node_id.generation() && !self.leaving {
                    self.send(from, &Body::Ack { seq });
                }
            }
            Body::Ack { seq } => {
                if let Some(probe) = &mut self.probe {
                    if probe.seq == seq && !probe.acked {
                        probe.acked = true;
                        self.local_health = self.local_health.saturating_sub(1);
                        return;
                    }
                }
                if let Some(relay) = self.relays.remove(&seq) {
                    self.send(
                        relay.requester,
                        &Body::Ack {
                            seq: relay.their_seq,
                        },
                    );
                }
            }
            Body::PingReq { seq, target } => {
                if self.relays.len() < MAX_RELAYS && target != self.config.node_id {
                    let ours = self.next_seq();
                    self.relays.insert(
                        ours,
                        Relay {
                            requester: from,
                            their_seq: seq,
                            deadline: now + self.scaled(self.config.probe_timeout),
                        },
                    );
                    self.send(
                        target.gossip_addr(),
                        &Body::Ping {
                            seq: ours,
                            target_generation: target.generation(),
                        },
                    );
                }
            }
            Body::Nack { seq } => {
                if let Some(probe) = &mut self.probe {
                    if probe.seq == seq {
                        probe.nacks += 1;
                    }
                }
            }
            Body::Gossip | Body::SyncResponse | Body::KeysRequest => {}
            Body::SyncRequest {
                buckets,
                answer_back,
            } => {
                let differ: Vec<bool> = self
                    .buckets
                    .iter()
                    .zip(buckets.iter().chain(std::iter::repeat(&0)))
                    .map(|(ours, theirs)| ours != theirs)
                    .collect();
                if differ.iter().any(|d| *d) {
                    self.send_table(from, &differ);
                    if answer_back {
                        let buckets = self.table_summary();
                        self.send(
                            from,
                            &Body::SyncRequest {
                                buckets,
                                answer_back: false,
                            },
                        );
                    }
                }
            }
        }
    }

    /// Sends the records of this node's table that fall in the buckets marked in `buckets`
    /// to `to`, in as many packets as it takes. A member with key-values has its versions
    /// beside its record (a delta without key-values): a receiver behind asks for the rest.
    fn send_table(&mut self, to: SocketAddr, buckets: &[bool]) {
        let mut records: Vec<(Update, u64, u64)> = self
            .members
            .values()
            .filter(|e| buckets.get(bucket_of(&e.id)).copied().unwrap_or(true))
            .map(|e| {
                (
                    e.current_update(),
                    e.keys.last_gc_version(),
                    e.keys.max_version(),
                )
            })
            .collect();
        records.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let (_, limit) = self.packet_bounds();
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let (mut out, at) = self.new_packet(&Body::SyncResponse);
            let mut written = 0;
            while let Some((record, gc, max)) = records.peek() {
                let (len, count) = (out.len(), out[at]);
                let fits = wire::push_update(&mut out, at, record, limit)
                    && (*max == 0
                        || wire::push_keys(&mut out, at, &record.id, *gc, *max, *max, &[], limit)
                            .is_some());
                if !fits {
                    out.truncate(len);
                    out[at] = count;
                    break;
                }
                records.next();
                written += 1;
            }
            if written == 0 {
                // A record that cannot fit alone (never with names of at most 255 bytes).
                records.next();
                continue;
            }
            self.push_transmit(to, out);
        }
    }

    /// Answers a `KeysRequest` from `to`: for each member it names, the key-values beyond what
    /// the request says it holds, as chained deltas in `SyncResponse` packets (at most
    /// [`MAX_PULL_PACKETS`] in all).
    fn answer_keys(&mut self, to: SocketAddr, wanted: &[NodeDelta]) {
        let (headroom, limit) = self.packet_bounds();
        let head = wire::Head {
            cluster: self.cluster,
            from: &self.config.node_id,
            incarnation: self.incarnation,
            keys: self.own_keys_version(),
        };
        let mut packets = 0;
        let mut out: Option<(Vec<u8>, usize)> = None;
        for request in wanted {
            let Some(entry) = self.members.get(&request.node) else {
                continue;
            };
            let keys = &entry.keys;
            let held = NodeDigest {
                heartbeat: 0,
                last_gc_version: request.last_gc_version,
                max_version: request.max_version,
            };
            let Some(stale) = keys.stale_for(Some(&held)) else {
                continue;
            };
            let entries: Vec<KeyEntry<'_>> = stale
                .key_values
                .iter()
                .map(|(key, v)| KeyEntry::of(key, v))
                .collect();
            let (gc, max) = (keys.last_gc_version(), keys.max_version());
            let mut from = stale.from_version_excluded;
            let mut sent = 0;
            // Chained: each delta starts where the one before ended.
            loop {
                if out.is_none() {
                    out = Some(start_packet(
                        &mut self.transmits,
                        &head,
                        headroom,
                        limit,
                        &Body::SyncResponse,
                    ));
                }
                let Some((buf, at)) = out.as_mut() else {
                    break;
                };
                let fresh = buf[*at] == 0;
                match wire::push_keys(
                    buf,
                    *at,
                    &request.node,
                    gc,
                    from,
                    max,
                    &entries[sent..],
                    limit,
                ) {
                    Some(n) => {
                        sent += n;
                        if sent == entries.len() {
                            break;
                        }
                        from = entries[sent - 1].version;
                    }
                    // An entry that fits no packet (never for writes within the bounds).
                    None if fresh => break,
                    None => {}
                }
                // The packet is full: send it, and go on in a new one.
                if let Some((buf, _)) = out.take() {
                    self.transmits
                        .push(to, buf, self.config.max_pending_transmits);
                }
                packets += 1;
                if packets >= MAX_PULL_PACKETS {
                    return;
                }
            }
        }
        if let Some((buf, at)) = out {
            if buf[at] > 0 {
                self.push_transmit(to, buf);
            }
        }
    }

    /// Asks `to` for the key-values of `ids` beyond what this node holds, unless asked
    /// recently.
    fn pull_keys(&mut self, now: Instant, to: SocketAddr, ids: Vec<NodeId>) {
        let wait = self.config.probe_interval * PULL_WAIT_INTERVALS;
        if self.pulls.len() >= MAX_PENDING_PULLS {
            self.pulls.retain(|_, until| *until > now);
        }
        let (_, limit) = self.packet_bounds();
        let (mut out, at) = self.new_packet(&Body::KeysRequest);
        for id in ids {
            if self.pulls.get(&id).is_some_and(|until| *until > now)
                || self.pulls.len() >= MAX_PENDING_PULLS
            {
                continue;
            }
            let Some(entry) = self.members.get(&id) else {
                continue;
            };
            let (gc, max) = (entry.keys.last_gc_version(), entry.keys.max_version());
            if wire::push_keys(&mut out, at, &id, gc, max, max, &[], limit).is_none() {
                break;
            }
            self.pulls.insert(id, now + wait);
        }
        if out[at] > 0 {
            self.counts.key_pulls += 1;
            self.push_transmit(to, out);
        }
    }

    /// Applies a key-value delta heard from a member; gossips it on if `spread`. Returns the
    /// member when the delta could not be applied because this node lacks versions before it
    /// (they are to be asked for).
    fn learn_keys(
        &mut self,
        now: Instant,
        from: SocketAddr,
        delta: &NodeDelta,
        spread: bool,
    ) -> Option<NodeId> {
        if delta.node == self.config.node_id {
            return None;
        }
        let limits = self.config.limits;
        let predicate = self.config.liveness_predicate.as_ref();
        let entry = self.members.get_mut(&delta.node)?;
        let before = member_status(entry, predicate);
        let before_record = entry.record();
        let others = self.state_bytes - entry.keys.bytes();
        let applied = match entry.keys.apply_delta_within(delta, now, &limits, others) {
            Ok(applied) => applied,
            Err(Refused::Gap | Refused::NeedsReset | Refused::PredatesCollection) => {
                return Some(delta.node.clone());
            }
            Err(Refused::NothingNew) => return None,
            Err(Refused::OverLimit(limit)) => {
                self.report_diagnostic(now, from, DiagnosticKind::OverLimit, |suppressed| {
                    Event::OverLimit {
                        from,
                        limit,
                        suppressed,
                    }
                });
                return None;
            }
        };
        self.state_bytes = others + entry.keys.bytes();
        let after = member_status(entry, predicate);
        let id = entry.id.clone();
        self.pulls.remove(&id);
        self.indexed(&id, Some(before_record));
        self.version += 1;
        self.schedule_gc(&id);
        if applied.reset {
            if let Some(member) = self.member(&id) {
                self.push_event(Event::Reset(member));
            }
        }
        self.report_keys(
            &id,
            applied.changed_keys.into_iter().zip(applied.old_values),
        );
        self.report(&id, before, after);
        if spread {
            self.enqueue_keys(&id, delta.from_version_excluded);
        }
        None
    }

    /// `KeyChanged` for each key of `id` whose visible value is no longer the one given.
    fn report_keys(
        &mut self,
        id: &NodeId,
        changed: impl Iterator<Item = (String, Option<String>)>,
    ) {
        let mut member: Option<Member> = None;
        for (key, old) in changed {
            if is_reserved_key(&key) {
                continue;
            }
            if member.is_none() {
                member = self.member(id);
            }
            let Some(snapshot) = &member else {
                return;
            };
            let value = snapshot.get(&key).map(str::to_owned);
            if value != old {
                let member = snapshot.clone();
                self.push_event(Event::KeyChanged {
                    member,
                    key,
                    old,
                    value,
                });
            }
        }
    }

    /// Puts `id` in the collection queue if it holds deletions and is not queued.
    fn schedule_gc(&mut self, id: &NodeId) {
        let grace = self.config.marked_for_deletion_grace_period;
        let Some(entry) = self.members.get_mut(id) else {
            return;
        };
        if entry.gc_queued {
            return;
        }
        if let Some(at) = entry.keys.earliest_deletion() {
            entry.gc_queued = true;
            let due = at.checked_add(grace).unwrap_or(at);
            self.gc_due.push(Reverse((due, id.clone())));
        }
    }

    /// Collects the tombstones and TTL keys whose grace period is over.
    fn collect_keys(&mut self, now: Instant) {
        let grace = self.config.marked_for_deletion_grace_period;
        while let Some(Reverse((at, _))) = self.gc_due.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, id))) = self.gc_due.pop() else {
                break;
            };
            let Some(entry) = self.members.get_mut(&id) else {
                continue;
            };
            entry.gc_queued = false;
            let bytes = entry.keys.bytes();
            let removed = entry.keys.gc_tombstones(now, grace);
            self.state_bytes = self.state_bytes - bytes + entry.keys.bytes();
            if !removed.is_empty() {
                self.version += 1;
            }
            self.report_keys(&id, removed.into_iter());
            self.schedule_gc(&id);
        }
    }

    /// Applies one piece of news, heard from `from`, by SWIM's precedence rules; passes on
    /// what was news.
    fn apply(&mut self, now: Instant, from: SocketAddr, update: Update) {
        self.learn(now, from, update, true);
    }

    /// As [`apply`](Self::apply); what was news is gossiped on only if `spread`.
    fn learn(&mut self, now: Instant, from: SocketAddr, update: Update, spread: bool) {
        if update.id == self.config.node_id {
            self.about_self(from, update);
            return;
        }
        let Some(entry) = self.members.get(&update.id) else {
            self.add(now, update, spread);
            return;
        };
        if !spread
            && update.kind == UpdateKind::Dead
            && matches!(entry.state, State::Alive | State::Suspect)
            && update.incarnation >= entry.incarnation
        {
            // A death heard in a table sync may be stale (the verdict of the other side of a
            // healed partition): here it is a suspicion, which the member has its time to
            // refute.
            let suspect = Update {
                kind: UpdateKind::Suspect,
                ..update
            };
            let own = self.config.node_id.gossip_addr();
            self.learn(now, own, suspect, true);
            return;
        }
        let confirmations = self.config.suspicion_confirmations as usize;
        let predicate = self.config.liveness_predicate.as_ref();
        let Some(entry) = self.members.get_mut(&update.id) else {
            return;
        };
        let before = member_status(entry, predicate);
        let before_record = entry.record();
        let newer = update.incarnation > entry.incarnation;
        let changed = match (update.kind, entry.state) {
            (_, State::Left) => false,
            (UpdateKind::Left, _) => {
                entry.state = State::Left;
                true
            }
            (UpdateKind::Alive, _) if newer => {
                entry.state = State::Alive;
                true
            }
            (UpdateKind::Suspect, State::Alive) if update.incarnation >= entry.incarnation => {
                entry.state = State::Suspect;
                entry.suspicion = Some(Box::new(Suspicion {
                    started: now,
                    confirmations: vec![from],
                }));
                true
            }
            (UpdateKind::Suspect, State::Suspect) if newer => {
                entry.suspicion = Some(Box::new(Suspicion {
                    started: now,
                    confirmations: vec![from],
                }));
                true
            }
            (UpdateKind::Suspect, State::Suspect) if update.incarnation == entry.incarnation => {
                // A confirmation from another sender shortens the suspicion (not news).
                if let Some(s) = &mut entry.suspicion {
                    if s.confirmations.len() < confirmations && !s.confirmations.contains(&from) {
                        s.confirmations.push(from);
                    }
                }
                false
            }
            (UpdateKind::Dead, State::Alive | State::Suspect)
                if update.incarnation >= entry.incarnation =>
            {
                entry.state = State::Dead;
                true
            }
            (UpdateKind::Dead, State::Dead) if newer => true,
            _ => false,
        };
        if !changed {
            return;
        }
        entry.incarnation = entry.incarnation.max(update.incarnation);
        entry.since = now;
        if entry.state != State::Suspect {
            entry.suspicion = None;
        }
        if entry.state == State::Alive {
            entry.was_alive = true;
        }
        let after = member_status(entry, predicate);
        let id = entry.id.clone();
        self.version += 1;
        self.indexed(&id, Some(before_record));
        self.report(&id, before, after);
        if spread {
            self.enqueue(update);
        }
    }

    /// The event for a member going from `before` to `after`, if any.
    fn report(&mut self, id: &NodeId, before: MemberStatus, after: MemberStatus) {
        if before == after {
            return;
        }
        let Some(member) = self.member(id) else {
            return;
        };
        // As in chitchat mode: a member first seen unready is reported `Unready`, and
        // `Recovered` once ready.
        let event = match (before, after) {
            (MemberStatus::Joining, MemberStatus::Live) => Event::Joined(member),
            (_, MemberStatus::Live) => Event::Recovered(member),
            (_, MemberStatus::Unready) => Event::Unready(member),
            (_, MemberStatus::Failed) => Event::Failed(member),
            (_, MemberStatus::Left) => Event::Left(member),
            _ => return,
        };
        self.push_event(event);
    }

    /// A member heard of for the first time.
    fn add(&mut self, now: Instant, update: Update, spread: bool) {
        // Collected: only news of a later incarnation brings it back.
        if let Some(&incarnation) = self.removed.get(&update.id) {
            if update.incarnation <= incarnation || update.kind != UpdateKind::Alive {
                return;
            }
            self.removed.remove(&update.id);
            self.removed_order.retain(|id| *id != update.id);
        }
        // A newer generation of the name is known: this one is over.
        if self
            .generations_of(&update.id)
            .any(|k| k.generation() > update.id.generation())
        {
            return;
        }
        if self.members.len() >= self.config.limits.max_members {
            self.counts.refused_members += 1;
            return;
        }
        let older: Vec<NodeId> = self
            .generations_of(&update.id)
            .filter(|k| k.generation() < update.id.generation() && **k != self.config.node_id)
            .cloned()
            .collect();
        let state = match update.kind {
            UpdateKind::Alive => State::Alive,
            UpdateKind::Suspect => State::Suspect,
            UpdateKind::Dead => State::Dead,
            UpdateKind::Left => State::Left,
        };
        let mut entry = Entry::new(update.id.clone(), update.incarnation, state, now);
        if state == State::Suspect {
            entry.suspicion = Some(Box::new(Suspicion {
                started: now,
                confirmations: Vec::new(),
            }));
        }
        let status = self.status_of(&entry);
        self.members.insert(update.id.clone(), entry);
        self.indexed(&update.id, None);
        self.version += 1;
        for old in older {
            self.remove(&old);
        }
        self.report(&update.id, MemberStatus::Joining, status);
        if spread {
            self.enqueue(update);
        }
    }

    fn remove(&mut self, id: &NodeId) {
        if id == &self.config.node_id {
            return;
        }
        self.unlist(id);
        if let Some(entry) = self.members.remove(id) {
            self.indexed(id, Some(entry.record()));
            self.state_bytes -= entry.keys.bytes();
            self.queued_keys.remove(id);
            self.pulls.remove(id);
            // Departed and superseded generations never come back.
            let superseded = self
                .generations_of(id)
                .any(|k| k.generation() > id.generation());
            let incarnation = if entry.state == State::Left || superseded {
                u64::MAX
            } else {
                entry.incarnation
            };
            if self.removed.insert(id.clone(), incarnation).is_none() {
                self.removed_order.push_back(id.clone());
            }
            while self.removed_order.len() > self.config.limits.max_members {
                if let Some(old) = self.removed_order.pop_front() {
                    self.removed.remove(&old);
                }
            }
            self.version += 1;
            self.push_event(Event::Removed(id.clone()));
        }
    }

    /// News about this node: a suspicion or a death notice at our incarnation is refuted by a
    /// higher one (unless we are leaving).
    fn about_self(&mut self, from: SocketAddr, update: Update) {
        if self.leaving || !matches!(update.kind, UpdateKind::Suspect | UpdateKind::Dead) {
            return;
        }
        let own = self.config.node_id.gossip_addr();
        if update.incarnation < self.incarnation {
            // Refuted already, but `from` has not heard: answer it directly (it is one of the
            // suspecters, racing its timer).
            if from != own {
                let alive = self.own_update(UpdateKind::Alive);
                self.send_with(from, &Body::Gossip, Some(alive));
            }
            return;
        }
        {
            self.incarnation = update.incarnation + 1;
            self.counts.refutations += 1;
            let me = self.config.node_id.clone();
            if let Some(entry) = self.members.get_mut(&me) {
                let before = entry.record();
                entry.incarnation = self.incarnation;
                self.indexed(&me, Some(before));
            }
            let alive = self.own_update(UpdateKind::Alive);
            self.enqueue(alive);
            // The refutation races the suspicion's timers: it goes out at once, to more
            // members than a round's gossip.
            // The member that told us first.
            let burst = self.config.gossip_fanout.max(1) * 2;
            let mut targets = self.random_live(burst, None);
            if from != own && !targets.contains(&from) {
                targets.insert(0, from);
            }
            for to in targets {
                self.send(to, &Body::Gossip);
            }
        }
    }

    /// Advances the machine to `now`: probes, suspicions, syncs and collection.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_relays(now);
        self.check_probe(now);
        self.expire_suspicions(now);
        self.collect(now);
        self.collect_keys(now);
        let late = self.config.probe_interval * self.config.late_round_factor.max(1);
        if now > self.next_probe + late {
            self.starved(now);
        }
        if now >= self.next_probe {
            self.finish_probe(now);
            self.start_probe(now);
            self.ask_seeds();
            // The schedule keeps its rate when a round runs a little late; a round missed
            // whole is skipped.
            let interval = self.scaled(self.config.probe_interval);
            let next = self.next_probe + interval;
            self.next_probe = if next > now { next } else { now + interval };
        }
        self.gossip(now);
        if now >= self.next_sync {
            self.sync();
            self.reconnect();
            self.next_sync = now + self.config.sync_interval;
        }
    }

    /// This node's timer fired far too late (its process was paused or starved): what it
    /// waited for meanwhile may be waiting in its own socket. It suspects itself
    /// ([`Event::SelfSuspected`]), drops the probe in flight, and gives every suspicion in
    /// progress its whole time again, so that it convicts no one for its own stall.
    fn starved(&mut self, now: Instant) {
        self.push_event(Event::SelfSuspected);
        self.probe = None;
        self.restart_suspicions(now);
    }

    fn restart_suspicions(&mut self, now: Instant) {
        let suspects: Vec<NodeId> = self.suspects.iter().cloned().collect();
        for id in suspects {
            if let Some(suspicion) = self.members.get_mut(&id).and_then(|e| e.suspicion.as_mut()) {
                suspicion.started = now;
            }
        }
    }

    /// The self-suspicion guard: whether this node, with at least two live peers, has heard
    /// nothing for three probe intervals (for at most
    /// [`CohortConfig::self_suspicion_hold`]): then it is the likely culprit (cut off, or
    /// deaf), and it neither suspects nor convicts anyone. Reported once per silence as
    /// [`Event::SelfSuspected`].
    fn self_suspected(&mut self, now: Instant) -> bool {
        let silent_for = now.saturating_duration_since(self.last_received);
        if self.live.len() < 2 || silent_for <= self.config.probe_interval * 3 {
            self.silent_since = None;
            return false;
        }
        let begins = self.silent_since.is_none();
        let since = *self.silent_since.get_or_insert(now);
        if begins {
            self.push_event(Event::SelfSuspected);
        }
        now.saturating_duration_since(since) < self.config.self_suspicion_hold
    }

    /// Reaches out to one member believed failed (or collected after failing), with a
    /// table sync that tells it so: if it is alive after all (a partition healed) it refutes,
    /// and the two sides merge again (serf's reconnect). One packet per sync interval.
    fn reconnect(&mut self) {
        let total = self.departed.len() + self.removed_order.len();
        if total == 0 || self.leaving {
            return;
        }
        for _ in 0..4 {
            let i = self.random_index(total);
            let notice = if i < self.departed.len() {
                self.departed.get(i).and_then(|(_, id)| {
                    self.members
                        .get(id)
                        .filter(|e| e.state == State::Dead)
                        .map(|e| e.update(UpdateKind::Dead))
                })
            } else {
                self.removed_order
                    .get(i - self.departed.len())
                    .and_then(|id| self.dead_notice(id))
            };
            if let Some(notice) = notice {
                let buckets = self.table_summary();
                let to = notice.id.gossip_addr();
                let body = Body::SyncRequest {
                    buckets,
                    answer_back: true,
                };
                self.send_with(to, &body, Some(notice));
                return;
            }
        }
    }

    /// The death notice of a member collected after failing (not one that left or was
    /// superseded: those never come back).
    fn dead_notice(&self, id: &NodeId) -> Option<Update> {
        let incarnation = *self.removed.get(id)?;
        (incarnation != u64::MAX).then(|| Update {
            kind: UpdateKind::Dead,
            id: id.clone(),
            incarnation,
        })
    }

    fn expire_relays(&mut self, now: Instant) {
        let expired: Vec<u32> = self
            .relays
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in expired {
            if let Some(relay) = self.relays.remove(&seq) {
                self.send(
                    relay.requester,
                    &Body::Nack {
                        seq: relay.their_seq,
                    },
                );
            }
        }
    }

    /// The probe went unanswered past its timeout: others are asked to probe.
    fn check_probe(&mut self, now: Instant) {
        let Some(probe) = &self.probe else {
            return;
        };
        if probe.acked
            || probe.indirect_sent
            || now < probe.sent_at + self.scaled(self.config.probe_timeout)
        {
            return;
        }
        let (target, seq) = (probe.target.clone(), probe.seq);
        let relays = self.random_live(self.config.indirect_probes, Some(&target));
        for relay in &relays {
            self.send(
                *relay,
                &Body::PingReq {
                    seq,
                    target: target.clone(),
                },
            );
        }
        if let Some(probe) = &mut self.probe {
            probe.indirect_sent = true;
            probe.relays = relays.len();
        }
    }

    /// The period is over: an unanswered target is suspected. Lifeguard: a missed answer, or a
    /// relay that did not even answer `Nack`, counts against this node's own health.
    fn finish_probe(&mut self, now: Instant) {
        let Some(probe) = self.probe.take() else {
            return;
        };
        if probe.acked {
            return;
        }
        let missing_nacks = probe.relays.saturating_sub(probe.nacks);
        self.local_health =
            (self.local_health + 1 + u32::from(missing_nacks > 0)).min(MAX_LOCAL_HEALTH);
        if self.self_suspected(now) {
            return;
        }
        let Some(entry) = self.members.get(&probe.target) else {
            return;
        };
        if entry.state != State::Alive {
            return;
        }
        let suspect = entry.update(UpdateKind::Suspect);
        let own = self.config.node_id.gossip_addr();
        self.apply(now, own, suspect);
    }

    fn start_probe(&mut self, now: Instant) {
        if self.leaving {
            return;
        }
        let Some(target) = self.next_target() else {
            return;
        };
        let seq = self.next_seq();
        self.counts.probes += 1;
        self.send(
            target.gossip_addr(),
            &Body::Ping {
                seq,
                target_generation: target.generation(),
            },
        );
        self.probe = Some(Probe {
            target,
            seq,
            sent_at: now,
            acked: false,
            indirect_sent: false,
            relays: 0,
            nacks: 0,
        });
    }

    /// The next member to probe: round-robin over a shuffled list of live members, shuffled
    /// again at every pass (SWIM's bound on the time to first detection).
    fn next_target(&mut self) -> Option<NodeId> {
        for _ in 0..2 {
            while self.next_in_order < self.order.len() {
                let id = self.order[self.next_in_order].clone();
                self.next_in_order += 1;
                if self
                    .members
                    .get(&id)
                    .is_some_and(|e| matches!(e.state, State::Alive | State::Suspect))
                {
                    return Some(id);
                }
            }
            let me = self.config.node_id.clone();
            let mut order: Vec<NodeId> = self
                .members
                .values()
                .filter(|e| e.id != me && matches!(e.state, State::Alive | State::Suspect))
                .map(|e| e.id.clone())
                .collect();
            order.sort_unstable();
            for i in (1..order.len()).rev() {
                let j = self.random_index(i + 1);
                order.swap(i, j);
            }
            self.order = order;
            self.next_in_order = 0;
            if self.order.is_empty() {
                return None;
            }
        }
        None
    }

    /// While this node knows no live member, it asks its seeds for the table.
    fn ask_seeds(&mut self) {
        if !self.live.is_empty() {
            return;
        }
        for seed in self.config.seeds.clone() {
            let buckets = self.table_summary();
            self.send(
                seed,
                &Body::SyncRequest {
                    buckets,
                    answer_back: true,
                },
            );
        }
    }

    /// Whether updates wait to be sent.
    fn has_news(&self) -> bool {
        !self.queued.is_empty() || !self.queued_keys.is_empty()
    }

    /// Pending updates go to a few random live members: at most once per probe interval, and
    /// at once when news arrives in an interval that had none (so that news does not wait
    /// for the next tick at every hop).
    fn gossip(&mut self, now: Instant) {
        if !self.has_news() || now < self.next_gossip || self.live.is_empty() {
            return;
        }
        self.next_gossip = now + self.scaled(self.config.probe_interval);
        for to in self.random_live(self.config.gossip_fanout, None) {
            self.send(to, &Body::Gossip);
        }
    }

    /// A push-pull table sync with one random member: the rare full reconciliation.
    fn sync(&mut self) {
        let Some(to) = self.random_live(1, None).pop() else {
            return;
        };
        let buckets = self.table_summary();
        self.send(
            to,
            &Body::SyncRequest {
                buckets,
                answer_back: true,
            },
        );
    }

    fn expire_suspicions(&mut self, now: Instant) {
        if self.self_suspected(now) {
            // Hearing nothing, this node is the likely culprit: its suspicions wait, with
            // their whole time again once it hears from the cluster.
            self.restart_suspicions(now);
            return;
        }
        let expired: Vec<NodeId> = self
            .suspects
            .iter()
            .filter(|id| {
                self.members
                    .get(*id)
                    .and_then(|e| e.suspicion.as_ref())
                    .is_some_and(|s| self.suspicion_deadline(s) <= now)
            })
            .cloned()
            .collect();
        let own = self.config.node_id.gossip_addr();
        for id in expired {
            let Some(entry) = self.members.get(&id) else {
                continue;
            };
            let dead = entry.update(UpdateKind::Dead);
            self.apply(now, own, dead);
        }
    }

    fn collect(&mut self, now: Instant) {
        let grace = self.config.dead_node_grace_period;
        while let Some((since, _)) = self.departed.front() {
            if now.saturating_duration_since(*since) < grace {
                break;
            }
            let Some((since, id)) = self.departed.pop_front() else {
                break;
            };
            // Still failed or departed since then (not recovered, not changed again).
            let over = self
                .members
                .get(&id)
                .is_some_and(|e| matches!(e.state, State::Dead | State::Left) && e.since == since);
            if over {
                self.remove(&id);
            }
        }
    }
}

/// The number of decimal digits of `n` (`⌈log10(n + 1)⌉`, at least 1).
fn decimal_digits(n: usize) -> u32 {
    n.checked_ilog10().map_or(1, |d| d + 1)
}

/// A record's contribution to the table summary.
fn record_hash(id: &NodeId, (state, incarnation, max_version): Record) -> u64 {
    let addr = id.gossip_addr();
    let ip = match addr.ip() {
        IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
        IpAddr::V6(ip) => ip.octets(),
    };
    let kind = match state {
        State::Alive => UpdateKind::Alive,
        State::Suspect => UpdateKind::Suspect,
        State::Dead => UpdateKind::Dead,
        State::Left => UpdateKind::Left,
    };
    crate::hash::mix64(
        crate::hash::Fnv1a64::new()
            .write(id.name().as_bytes())
            .write(&id.generation().to_le_bytes())
            .write(&ip)
            .write(&addr.port().to_le_bytes())
            .write(&incarnation.to_le_bytes())
            .write(&[kind as u8])
            .write(&max_version.to_le_bytes())
            .finish(),
    )
}

/// The table-summary bucket of a member (by its identity only, so that both sides agree).
fn bucket_of(id: &NodeId) -> usize {
    let addr = id.gossip_addr();
    let hash = crate::hash::mix64(
        crate::hash::Fnv1a64::new()
            .write(id.name().as_bytes())
            .write(&id.generation().to_le_bytes())
            .write(&addr.port().to_le_bytes())
            .finish(),
    );
    usize::try_from(hash % wire::SYNC_BUCKETS as u64).unwrap_or(0)
}

/// A packet buffer from `transmits` with `head` and `body` written after `headroom` zero
/// bytes, and where its update count is.
fn start_packet(
    transmits: &mut TransmitQueue,
    head: &wire::Head<'_>,
    headroom: usize,
    limit: usize,
    body: &Body,
) -> (Vec<u8>, usize) {
    let mut out = transmits.buffer(headroom, limit);
    let at = wire::encode_head(head, body, &mut out);
    (out, at)
}

/// Whether a packet took a piece of news.
enum Fit {
    Sent,
    /// No room left: the packet is done.
    Full,
    /// The news is about nothing any more (its member was collected).
    Gone,
}

/// `keys`' entries above version `from`, ascending by version, as a delta writes them.
fn entries_above(keys: &NodeState, from: u64) -> Vec<KeyEntry<'_>> {
    let mut entries: Vec<KeyEntry<'_>> = keys
        .entries()
        .filter(|(_, v)| v.version > from)
        .map(|(key, v)| KeyEntry::of(key, v))
        .collect();
    entries.sort_unstable_by_key(|e| e.version);
    entries
}
