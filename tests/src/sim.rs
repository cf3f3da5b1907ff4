//! The simulator: nodes on a virtual network, driven in virtual time.
//!
//! Owns [`Sim`]: the slots (one per simulated node name and address, each holding the current
//! generation's [`Node`] while it is up), the queue of pending datagram deliveries and node
//! timers, the per-observer views built from the nodes' events, and the metrics. Time jumps from
//! one queued item to the next; nothing sleeps and nothing reads a clock except
//! [`Sim::wall_elapsed`], which only reports how long the simulation took to compute.

use std::collections::binary_heap::PeekMut;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::panic::Location;
use std::time::{Duration, Instant};

use cohort_core::hash::splitmix64;
use cohort_core::{
    Event, LeaveOutcome, MemberStatus, Members, Node, NodeConfig, NodeId, Transmits, WallTime,
};

use crate::config::{NetworkConfig, SimConfig};
use crate::harness::SimError;
use crate::metrics::{
    Convergence, Detection, FalsePositive, Metrics, NetworkCounters, NodeCounters, NodeRate,
};
use crate::network::{Fate, Network, nanos};
use crate::trace::{TraceEntry, TraceHash, TraceKind};

/// The port every simulated node listens on (each slot has its own IPv4 address).
pub const GOSSIP_PORT: u16 = 7280;

/// An input waiting in the queue.
#[derive(Debug)]
enum Action {
    /// A datagram reaches slot `to`.
    Deliver {
        to: usize,
        from_slot: usize,
        from: SocketAddr,
        payload: Vec<u8>,
        /// Set when the datagram arrived while the node was paused: the generation whose
        /// socket holds it. A later generation never gets it (the buffer died with the
        /// process).
        held_for: Option<u64>,
    },
    /// Slot `slot`'s timer, valid while the slot's token is still `token`.
    Timer { slot: usize, token: u64 },
}

/// A queued input, ordered by time and then by insertion (a min-heap through reversed `Ord`).
#[derive(Debug)]
struct Scheduled {
    at: u64,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.at.cmp(&self.at).then(other.seq.cmp(&self.seq))
    }
}

/// What an observer last reported about a slot (through its events).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ViewStatus {
    /// Not known, or removed.
    #[default]
    Absent,
    Live,
    Unready,
    Failed,
    Left,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct View {
    generation: u64,
    status: ViewStatus,
}

/// One simulated node name and address, across its generations.
#[derive(Debug)]
struct Slot {
    /// The current (or, when down, the last) generation's identity.
    id: NodeId,
    node: Option<Node>,
    seeds: Vec<SocketAddr>,
    leaving: bool,
    /// How the current generation's leave ended, once it has.
    left: Option<LeaveOutcome>,
    skew_ms: i64,
    /// Every input is handled this many nanoseconds late.
    slow: u64,
    /// Nothing is handled before this virtual time.
    paused_until: u64,
    timer_token: u64,
    /// The round time the queued timer was armed for.
    armed: Option<u64>,
    /// Keys the script set (`Some`) or deleted (`None`) on the current generation.
    expected: BTreeMap<String, Option<String>>,
    counters: NodeCounters,
    /// Crashed, stopped, restarted, paused or left at some point: `Failed` events about it are
    /// never false positives.
    faulted: bool,
}

#[derive(Debug)]
struct Window {
    at: u64,
    counters: Vec<NodeCounters>,
}

/// A deterministic cluster simulation.
///
/// Slots are numbered from 0 in the order nodes are added; slot `i` is the node named
/// `node-000i` (four digits at least) at address `10.0.0.(i+1):7280` (the address keeps
/// counting through the higher octets past 254), generation 1 at its first start and one more
/// at each restart. Every input a node handles (a datagram, a timer) comes from one queue
/// ordered by virtual time; the network's fate of each datagram and every other random choice
/// come from one generator seeded by [`SimConfig::seed`], and each node's own generator is
/// seeded from the run seed, its slot and its generation. The same seed and script give the same
/// run, down to the trace.
///
/// ```
/// use std::time::Duration;
/// use cohort_core::membership::MemberStatus;
/// use cohort_sim::{Sim, SimConfig};
///
/// let mut sim = Sim::new(SimConfig::new(1));
/// let nodes = sim.add_nodes(3);
/// sim.run_until_converged(Duration::from_secs(5))?;
/// sim.set(nodes[1], "role", "indexer");
/// sim.run_until(|s| s.all_see_value(1, "role", Some("indexer")), Duration::from_secs(2))?;
/// assert_eq!(sim.status(0, 2), Some(MemberStatus::Live));
/// # Ok::<(), cohort_sim::SimError>(())
/// ```
pub struct Sim {
    config: SimConfig,
    base: Instant,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    net: Network,
    slots: Vec<Slot>,
    by_addr: HashMap<SocketAddr, usize>,
    views: Vec<Vec<View>>,
    /// Bumped whenever a view, an expected key or the set of live slots changes.
    changes: u64,
    network: NetworkCounters,
    convergences: Vec<Convergence>,
    detections: Vec<Detection>,
    false_positives: Vec<FalsePositive>,
    failed_events: u64,
    self_suspected_events: u64,
    clock_skew_events: u64,
    lagged_events: u64,
    trace: Vec<TraceEntry>,
    trace_len: u64,
    trace_hash: TraceHash,
    window: Option<Window>,
    wall_start: Instant,
    scratch_transmits: Transmits,
    scratch_events: Vec<Event>,
    /// Payloads delivered, kept for the next datagrams sent (swapped into the batch).
    spare_payloads: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.config.seed)
            .field("now", &self.now())
            .field("nodes", &self.slots.len())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// An empty simulation at virtual time zero.
    #[must_use]
    pub fn new(config: SimConfig) -> Self {
        let net = Network::new(config.network.clone(), config.seed);
        Self {
            base: Instant::now(),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            net,
            slots: Vec::new(),
            by_addr: HashMap::new(),
            views: Vec::new(),
            changes: 0,
            network: NetworkCounters::default(),
            convergences: Vec::new(),
            detections: Vec::new(),
            false_positives: Vec::new(),
            failed_events: 0,
            self_suspected_events: 0,
            clock_skew_events: 0,
            lagged_events: 0,
            trace: Vec::new(),
            trace_len: 0,
            trace_hash: TraceHash::new(),
            window: None,
            wall_start: Instant::now(),
            scratch_transmits: Transmits::new(),
            scratch_events: Vec::new(),
            spare_payloads: Vec::new(),
            config,
        }
    }

    // ------------------------------------------------------------------ identity and time

    /// The run's configuration.
    #[must_use]
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The run's seed.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// Virtual time since the start of the run.
    #[must_use]
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now)
    }

    /// The virtual `Instant` the nodes are given now (a fixed base plus [`Sim::now`]).
    #[must_use]
    pub fn instant(&self) -> Instant {
        self.base + Duration::from_nanos(self.now)
    }

    /// The virtual `Instant` at virtual time zero.
    #[must_use]
    pub fn base_instant(&self) -> Instant {
        self.base
    }

    /// Slot `node`'s wall clock now: the epoch reading, plus virtual time, plus its skew.
    ///
    /// # Panics
    ///
    /// When `node` was never added.
    #[must_use]
    pub fn wall(&self, node: usize) -> WallTime {
        let ms = i128::from(self.config.wall_epoch_ms)
            + i128::from(self.now / 1_000_000)
            + i128::from(self.slots[node].skew_ms);
        let ms = u64::try_from(ms.max(0)).unwrap_or(u64::MAX);
        WallTime::from_unix_millis(ms).unwrap_or(WallTime::MAX)
    }

    /// How long (real time) this simulation has taken to compute so far.
    #[must_use]
    pub fn wall_elapsed(&self) -> Duration {
        self.wall_start.elapsed()
    }

    /// The number of slots (nodes ever added).
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no node was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The gossip address of slot `node` (the same for every generation).
    #[must_use]
    pub fn addr(node: usize) -> SocketAddr {
        let host = 0x0a00_0001_u32.wrapping_add(u32::try_from(node).unwrap_or(u32::MAX));
        SocketAddr::from((Ipv4Addr::from(host), GOSSIP_PORT))
    }

    /// The name of slot `node`.
    #[must_use]
    pub fn name(node: usize) -> String {
        format!("node-{node:04}")
    }

    /// The identity of slot `node`'s current (or, when down, last) generation.
    ///
    /// # Panics
    ///
    /// When `node` was never added.
    #[must_use]
    pub fn id(&self, node: usize) -> NodeId {
        self.slots[node].id.clone()
    }

    /// The slot of a node identity (by its address), if it is one of ours.
    #[must_use]
    pub fn slot_of(&self, id: &NodeId) -> Option<usize> {
        self.by_addr.get(&id.gossip_addr()).copied()
    }

    /// Slot `node`'s running node, if it is up.
    #[must_use]
    pub fn node(&self, node: usize) -> Option<&Node> {
        self.slots.get(node)?.node.as_ref()
    }

    /// Whether slot `node` has a running node (it may be paused or leaving).
    #[must_use]
    pub fn is_up(&self, node: usize) -> bool {
        self.slots.get(node).is_some_and(|s| s.node.is_some())
    }

    /// Whether slot `node` is up and not leaving: a node every other should see live.
    #[must_use]
    pub fn is_live(&self, node: usize) -> bool {
        self.slots
            .get(node)
            .is_some_and(|s| s.node.is_some() && !s.leaving)
    }

    /// The slots that are up and not leaving, ascending.
    #[must_use]
    pub fn live_nodes(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|&i| self.is_live(i)).collect()
    }

    // ------------------------------------------------------------------ script: nodes

    /// Adds and starts a node seeded with slot 0 (the first node seeds itself, which the core
    /// ignores). Returns its slot.
    pub fn add_node(&mut self) -> usize {
        self.add_node_with_seeds(&[0])
    }

    /// Adds and starts `count` nodes seeded with slot 0. Returns their slots.
    pub fn add_nodes(&mut self, count: usize) -> Vec<usize> {
        (0..count).map(|_| self.add_node()).collect()
    }

    /// Adds and starts a node whose seeds are the given slots (which need not exist yet).
    pub fn add_node_with_seeds(&mut self, seeds: &[usize]) -> usize {
        let slot = self.slots.len();
        let addr = Self::addr(slot);
        self.slots.push(Slot {
            id: NodeId::new(Self::name(slot), 0, addr),
            node: None,
            seeds: seeds.iter().map(|&s| Self::addr(s)).collect(),
            leaving: false,
            left: None,
            skew_ms: 0,
            slow: 0,
            paused_until: 0,
            timer_token: 0,
            armed: None,
            expected: BTreeMap::new(),
            counters: NodeCounters::default(),
            faulted: false,
        });
        self.by_addr.insert(addr, slot);
        for row in &mut self.views {
            row.push(View::default());
        }
        self.views.push(vec![View::default(); self.slots.len()]);
        self.start(slot);
        slot
    }

    /// Crashes slot `node`: its node stops at once, without a word, and every datagram to it
    /// is dropped. Its detection (every survivor sees it `Failed`) is measured from now.
    ///
    /// # Panics
    ///
    /// When the node is not up.
    #[track_caller]
    pub fn crash(&mut self, node: usize) {
        let id = self.take_down(node, true);
        self.detections.push(Detection {
            node,
            id,
            crashed_at: self.now(),
            first_after: None,
            all_after: None,
        });
        self.check_all_detections();
    }

    /// Stops slot `node` like [`Sim::crash`] (a process that exits, for instance after
    /// [`Sim::leave`]), without measuring its detection.
    ///
    /// # Panics
    ///
    /// When the node is not up.
    #[track_caller]
    pub fn stop(&mut self, node: usize) {
        self.take_down(node, false);
        self.check_all_detections();
    }

    /// Restarts slot `node` with the next generation (same name and address, a fresh node and
    /// state). A node that is up is stopped first.
    ///
    /// # Panics
    ///
    /// When `node` was never added.
    pub fn restart(&mut self, node: usize) {
        if self.is_up(node) {
            self.take_down(node, false);
        }
        self.slots[node].faulted = true;
        self.start(node);
        self.check_all_detections();
    }

    /// Starts a graceful departure of slot `node` ([`Node::leave`]). The node keeps running
    /// (answering gossip) until the script stops it, typically once its leave is over
    /// ([`Sim::leave_outcome`]).
    ///
    /// # Panics
    ///
    /// When the node is not up.
    #[track_caller]
    pub fn leave(&mut self, node: usize) {
        let instant = self.instant();
        let slot = &mut self.slots[node];
        let n = slot.node.as_mut().expect("leave: the node is not up");
        n.leave(instant);
        slot.leaving = true;
        slot.faulted = true;
        let id = slot.id.clone();
        self.changes += 1;
        self.record(node, TraceKind::LeaveStarted(id));
        self.flush(node);
        self.check_all_detections();
    }

    /// Pauses slot `node` for `duration`: it handles nothing (datagrams wait for it, its timer
    /// fires late), as a process that was stopped or starved. Inputs are handled at the end of
    /// the pause, in the order they arrived. Datagrams waiting for a paused node are lost when
    /// it is taken down (crashed, stopped or restarted): a restarted node never gets what was
    /// sent to its previous generation's socket.
    ///
    /// # Panics
    ///
    /// When `node` was never added.
    pub fn pause(&mut self, node: usize, duration: Duration) {
        let until = self.now.saturating_add(nanos(duration));
        let slot = &mut self.slots[node];
        slot.paused_until = slot.paused_until.max(until);
        slot.faulted = true;
        self.record(node, TraceKind::Paused(duration));
    }

    /// Makes slot `node` handle every later input (datagram or timer) `delay` late, so that
    /// its rounds run late and its replies are slow. `Duration::ZERO` makes it normal again.
    ///
    /// # Panics
    ///
    /// When `node` was never added.
    pub fn set_slow(&mut self, node: usize, delay: Duration) {
        self.slots[node].slow = nanos(delay);
        self.record(node, TraceKind::Slowed(delay));
    }

    /// Sets slot `node`'s wall-clock skew in milliseconds (positive: ahead).
    ///
    /// # Panics
    ///
    /// When `node` was never added.
    pub fn set_clock_skew_ms(&mut self, node: usize, skew_ms: i64) {
        self.slots[node].skew_ms = skew_ms;
    }

    // ------------------------------------------------------------------ script: keys

    /// Sets a key on slot `node` (it must then reach every live node for convergence).
    ///
    /// # Panics
    ///
    /// When the node is not up, or the core refuses the key (a reserved key, a leaving node).
    #[track_caller]
    pub fn set(&mut self, node: usize, key: &str, value: &str) {
        let instant = self.instant();
        let refused = self.running(node).set(instant, key, value).err();
        assert_eq!(refused, None, "set {key:?} on slot {node}");
        self.slots[node]
            .expected
            .insert(key.to_owned(), Some(value.to_owned()));
        self.changes += 1;
        self.flush(node);
    }

    /// Deletes a key of slot `node` (it must then be gone everywhere for convergence). Returns
    /// whether it existed.
    ///
    /// # Panics
    ///
    /// As [`Sim::set`].
    #[track_caller]
    pub fn delete(&mut self, node: usize, key: &str) -> bool {
        let instant = self.instant();
        let existed = self
            .running(node)
            .delete(instant, key)
            .unwrap_or_else(|e| panic!("delete {key:?} on slot {node}: {e}"));
        if existed {
            self.slots[node].expected.insert(key.to_owned(), None);
            self.changes += 1;
        }
        self.flush(node);
        existed
    }

    /// Sets a key that is collected everywhere once the grace period has passed
    /// ([`Node::set_with_ttl`]). It takes no part in convergence.
    ///
    /// # Panics
    ///
    /// As [`Sim::set`].
    #[track_caller]
    pub fn set_with_ttl(&mut self, node: usize, key: &str, value: &str) {
        let instant = self.instant();
        let refused = self.running(node).set_with_ttl(instant, key, value).err();
        assert_eq!(refused, None, "set_with_ttl {key:?} on slot {node}");
        self.slots[node].expected.remove(key);
        self.changes += 1;
        self.flush(node);
    }

    /// Keeps a key visible until the grace period has passed, then collects it everywhere
    /// ([`Node::delete_after_ttl`]). It takes no part in convergence any more. Returns whether
    /// it existed.
    ///
    /// # Panics
    ///
    /// As [`Sim::set`].
    #[track_caller]
    pub fn delete_after_ttl(&mut self, node: usize, key: &str) -> bool {
        let instant = self.instant();
        let existed = self
            .running(node)
            .delete_after_ttl(instant, key)
            .unwrap_or_else(|e| panic!("delete_after_ttl {key:?} on slot {node}: {e}"));
        self.slots[node].expected.remove(key);
        self.changes += 1;
        self.flush(node);
        existed
    }

    // ------------------------------------------------------------------ script: network

    /// Cuts the directed link `from -> to` (datagrams from `from` to `to` are dropped, also
    /// those already in flight).
    pub fn cut(&mut self, from: usize, to: usize) {
        self.net.cut(from, to);
    }

    /// Cuts the link between `a` and `b` both ways.
    pub fn cut_both(&mut self, a: usize, b: usize) {
        self.net.cut(a, b);
        self.net.cut(b, a);
    }

    /// Restores the directed link `from -> to`.
    pub fn heal(&mut self, from: usize, to: usize) {
        self.net.heal(from, to);
    }

    /// Restores the link between `a` and `b` both ways.
    pub fn heal_both(&mut self, a: usize, b: usize) {
        self.net.heal(a, b);
        self.net.heal(b, a);
    }

    /// Cuts every link between two groups, both ways.
    pub fn partition(&mut self, group_a: &[usize], group_b: &[usize]) {
        for &a in group_a {
            for &b in group_b {
                self.cut_both(a, b);
            }
        }
    }

    /// Cuts every link of `node` with every other slot, both ways.
    pub fn isolate(&mut self, node: usize) {
        for other in 0..self.slots.len() {
            self.cut_both(node, other);
        }
    }

    /// Restores every link.
    pub fn heal_all(&mut self) {
        self.net.heal_all();
    }

    /// The number of blocked directed links.
    #[must_use]
    pub fn blocked_links(&self) -> usize {
        self.net.blocked_links()
    }

    /// The network model now in force.
    #[must_use]
    pub fn network_config(&self) -> &NetworkConfig {
        self.net.config()
    }

    /// Makes slot `node` lose each datagram sent to it with probability `loss`, beside the
    /// network's own loss (Rapid's scenario: a node with a bad ingress link). 0 ends it.
    pub fn set_ingress_loss(&mut self, node: usize, loss: f64) {
        self.net.set_ingress_loss(node, loss);
    }

    /// Changes the network model from now on (datagrams in flight keep their fate).
    pub fn set_network(&mut self, config: NetworkConfig) {
        self.net.set_config(config);
    }

    // ------------------------------------------------------------------ running

    /// Advances virtual time by `duration`, handling every input due until then.
    pub fn advance(&mut self, duration: Duration) {
        let until = self.now.saturating_add(nanos(duration));
        self.run_to(until);
    }

    /// Runs until `predicate` holds (checked now, then every
    /// [`probe_interval`](SimConfig::probe_interval) of virtual time) and returns the virtual
    /// time it took, or fails once `deadline` (virtual, from now) has passed. The error names
    /// the seed, the caller's location and how to replay the run.
    ///
    /// # Errors
    ///
    /// [`SimError::Timeout`] when the deadline passes first.
    #[track_caller]
    pub fn run_until(
        &mut self,
        predicate: impl FnMut(&Self) -> bool,
        deadline: Duration,
    ) -> Result<Duration, SimError> {
        self.wait("condition", Location::caller(), predicate, deadline)
    }

    /// Runs until the cluster has converged ([`Sim::is_converged`]) and records the time and
    /// rounds it took in the metrics.
    ///
    /// # Errors
    ///
    /// [`SimError::Timeout`] when the deadline passes first.
    #[track_caller]
    pub fn run_until_converged(&mut self, deadline: Duration) -> Result<Convergence, SimError> {
        let started_at = self.now();
        let mut checked = None;
        let elapsed = self.wait(
            "convergence",
            Location::caller(),
            |sim| {
                // Nothing changed since the last check: the answer has not changed either.
                if checked == Some(sim.changes) {
                    return false;
                }
                checked = Some(sim.changes);
                sim.is_converged()
            },
            deadline,
        )?;
        let interval = nanos(self.config.gossip_interval).max(1);
        let convergence = Convergence {
            started_at,
            elapsed,
            rounds: nanos(elapsed).div_ceil(interval),
        };
        self.convergences.push(convergence);
        Ok(convergence)
    }

    /// Runs until every survivor sees the last crash of slot `node` as not live, and returns
    /// the time from the crash.
    ///
    /// # Errors
    ///
    /// [`SimError::Timeout`] when the deadline passes first.
    ///
    /// # Panics
    ///
    /// When `node` never crashed.
    #[track_caller]
    pub fn run_until_detected(
        &mut self,
        node: usize,
        deadline: Duration,
    ) -> Result<Duration, SimError> {
        let index = self
            .detections
            .iter()
            .rposition(|d| d.node == node)
            .expect("run_until_detected: the node never crashed");
        self.wait(
            "crash detection",
            Location::caller(),
            |sim| sim.detections[index].all_after.is_some(),
            deadline,
        )?;
        Ok(self.detections[index].all_after.unwrap_or_default())
    }

    fn wait(
        &mut self,
        condition: &str,
        location: &'static Location<'static>,
        mut predicate: impl FnMut(&Self) -> bool,
        deadline: Duration,
    ) -> Result<Duration, SimError> {
        let start = self.now;
        let end = start.saturating_add(nanos(deadline));
        let probe = nanos(self.config.probe_interval).max(1);
        loop {
            if predicate(self) {
                return Ok(Duration::from_nanos(self.now - start));
            }
            if self.now >= end {
                return Err(SimError::Timeout {
                    seed: self.config.seed,
                    condition: condition.to_owned(),
                    deadline,
                    at: self.now(),
                    location,
                });
            }
            let next = self.now.saturating_add(probe).min(end);
            self.run_to(next);
        }
    }

    fn run_to(&mut self, until: u64) {
        loop {
            let Some(top) = self.queue.peek_mut() else {
                break;
            };
            if top.at > until {
                break;
            }
            let item = PeekMut::pop(top);
            self.now = self.now.max(item.at);
            self.handle(item.action);
        }
        self.now = self.now.max(until);
    }

    fn schedule(&mut self, at: u64, action: Action) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            action,
        });
    }

    fn handle(&mut self, action: Action) {
        match action {
            Action::Deliver {
                to,
                from_slot,
                from,
                payload,
                held_for,
            } => {
                let generation = self.slots[to].id.generation();
                if self.slots[to].node.is_none() || held_for.is_some_and(|g| g != generation) {
                    self.network.dropped_down += 1;
                    return;
                }
                if self.net.is_blocked(from_slot, to) {
                    self.network.dropped_partition += 1;
                    return;
                }
                let paused_until = self.slots[to].paused_until;
                if paused_until > self.now {
                    let action = Action::Deliver {
                        to,
                        from_slot,
                        from,
                        payload,
                        held_for: Some(generation),
                    };
                    self.schedule(paused_until, action);
                    return;
                }
                self.network.delivered += 1;
                let instant = self.instant();
                let wall = self.wall(to);
                let slot = &mut self.slots[to];
                slot.counters.bytes_received += payload.len() as u64;
                slot.counters.datagrams_received += 1;
                if let Some(node) = slot.node.as_mut() {
                    if node.handle_datagram(instant, wall, from, &payload).is_err() {
                        self.network.decode_errors += 1;
                    }
                }
                if self.spare_payloads.len() < 1_024 {
                    self.spare_payloads.push(payload);
                }
                self.flush(to);
            }
            Action::Timer { slot, token } => {
                let paused_until = {
                    let s = &self.slots[slot];
                    if s.timer_token != token || s.node.is_none() {
                        return;
                    }
                    s.paused_until
                };
                if paused_until > self.now {
                    self.schedule(paused_until, Action::Timer { slot, token });
                    return;
                }
                let instant = self.instant();
                let s = &mut self.slots[slot];
                s.armed = None;
                s.counters.rounds += 1;
                if let Some(node) = s.node.as_mut() {
                    node.handle_timeout(instant);
                }
                self.flush(slot);
            }
        }
    }

    /// Drains slot `node` ([`Node::drain`]): sends its datagrams, observes its events, notes
    /// the end of its leave and re-arms its timer. The simulator does this after every input.
    fn flush(&mut self, node: usize) {
        if !self.is_up(node) {
            return;
        }
        let wall = self.wall(node);
        let mut transmits = std::mem::take(&mut self.scratch_transmits);
        let mut events = std::mem::take(&mut self.scratch_events);
        let Some(n) = self.slots[node].node.as_mut() else {
            return;
        };
        let drained = n.drain(wall, &mut transmits, &mut events);
        for t in transmits.iter_mut() {
            // The payload travels in the queue; a recycled buffer takes its place in the batch.
            let mut payload = self.spare_payloads.pop().unwrap_or_default();
            std::mem::swap(&mut payload, &mut t.payload);
            self.send(node, t.destination, payload);
        }
        transmits.clear();
        for e in events.drain(..) {
            self.observe(node, e);
        }
        self.scratch_transmits = transmits;
        self.scratch_events = events;
        if let Some(outcome) = drained.left {
            if self.slots[node].left.replace(outcome).is_none() {
                self.record(node, TraceKind::LeaveEnded(outcome));
            }
        }
        self.rearm(node, drained.deadline);
    }

    fn rearm(&mut self, node: usize, due: Instant) {
        let now = self.now;
        let base = self.base;
        let slot = &mut self.slots[node];
        let due = nanos(due.saturating_duration_since(base));
        if slot.armed == Some(due) {
            return;
        }
        slot.armed = Some(due);
        slot.timer_token += 1;
        let token = slot.timer_token;
        let at = due.max(now).saturating_add(slot.slow);
        self.schedule(at, Action::Timer { slot: node, token });
    }

    fn send(&mut self, from: usize, destination: SocketAddr, payload: Vec<u8>) {
        let len = payload.len() as u64;
        let counters = &mut self.slots[from].counters;
        counters.bytes_sent += len;
        counters.datagrams_sent += 1;
        self.network.sent += 1;
        self.network.max_datagram_bytes = self.network.max_datagram_bytes.max(len);
        let Some(&to) = self.by_addr.get(&destination) else {
            self.network.dropped_unknown += 1;
            return;
        };
        match self.net.route(from, to) {
            Fate::Blocked => self.network.dropped_partition += 1,
            Fate::Lost => self.network.dropped_loss += 1,
            Fate::Delivered { first, duplicate } => {
                let slow = self.slots[to].slow;
                let from_addr = Self::addr(from);
                if let Some(extra) = duplicate {
                    self.network.duplicated += 1;
                    let action = Action::Deliver {
                        to,
                        from_slot: from,
                        from: from_addr,
                        payload: payload.clone(),
                        held_for: None,
                    };
                    self.schedule(self.now + extra + slow, action);
                }
                let action = Action::Deliver {
                    to,
                    from_slot: from,
                    from: from_addr,
                    payload,
                    held_for: None,
                };
                self.schedule(self.now + first + slow, action);
            }
        }
    }

    // ------------------------------------------------------------------ nodes' lifecycle

    #[track_caller]
    fn running(&mut self, node: usize) -> &mut Node {
        self.slots[node]
            .node
            .as_mut()
            .unwrap_or_else(|| panic!("slot {node} is not up"))
    }

    fn start(&mut self, node: usize) {
        let generation = self.slots[node].id.generation() + 1;
        let id = NodeId::new(Self::name(node), generation, Self::addr(node));
        let mut config = NodeConfig::new(id.clone());
        config.cluster_id.clone_from(&self.config.cluster_id);
        config.seeds.clone_from(&self.slots[node].seeds);
        config.gossip_interval = self.config.gossip_interval;
        config.protocol_version = self.config.protocol_version;
        config.protocol = self.config.mode;
        config.probe_interval = self.config.gossip_interval;
        config.failure_detector = Some(self.config.failure_detector.clone());
        config.marked_for_deletion_grace_period = self.config.marked_for_deletion_grace_period;
        config.max_clock_drift = self.config.max_clock_drift;
        config.rng_seed = node_seed(self.config.seed, node, generation);
        // The simulator drains after every input; only one input's burst must fit.
        config.max_pending_events = 1 << 16;
        if let Some(configure) = self.config.configure.clone() {
            configure(node, &mut config);
        }
        let instant = self.instant();
        let phase = self.net.nanos_up_to(self.config.start_spread);
        let started = Node::new(config, instant)
            .unwrap_or_else(|e| panic!("slot {node}: the node configuration is refused: {e}"));
        // What the node publishes from the start must reach everyone for convergence.
        let expected = started
            .local_member()
            .keys
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        let slot = &mut self.slots[node];
        slot.id = id.clone();
        slot.node = Some(started);
        slot.leaving = false;
        slot.left = None;
        slot.paused_until = 0;
        slot.expected = expected;
        // The first round is due at once; run it after the start phase.
        slot.timer_token += 1;
        slot.armed = Some(self.now);
        let token = slot.timer_token;
        let at = self.now + phase + slot.slow;
        self.schedule(at, Action::Timer { slot: node, token });
        self.views[node].fill(View::default());
        self.changes += 1;
        self.record(node, TraceKind::Started(id));
        self.flush(node);
    }

    #[track_caller]
    fn take_down(&mut self, node: usize, crash: bool) -> NodeId {
        let slot = &mut self.slots[node];
        assert!(slot.node.is_some(), "slot {node} is not up");
        slot.node = None;
        slot.timer_token += 1;
        slot.armed = None;
        slot.paused_until = 0;
        slot.leaving = false;
        slot.faulted = true;
        let id = slot.id.clone();
        self.changes += 1;
        let kind = if crash {
            TraceKind::Crashed(id.clone())
        } else {
            TraceKind::Stopped(id.clone())
        };
        self.record(node, kind);
        id
    }

    // ------------------------------------------------------------------ events and views

    fn record(&mut self, node: usize, kind: TraceKind) {
        let entry = TraceEntry {
            at: self.now(),
            node,
            kind,
        };
        self.trace_hash.add(&entry);
        self.trace_len += 1;
        if self.config.record_trace {
            self.trace.push(entry);
        }
    }

    fn observe(&mut self, observer: usize, event: Event) {
        match &event {
            Event::ClockSkew { .. } => self.clock_skew_events += 1,
            Event::Joined(m) | Event::Recovered(m) => {
                self.set_view(observer, &m.id, ViewStatus::Live);
            }
            Event::Unready(m) => self.set_view(observer, &m.id, ViewStatus::Unready),
            Event::Failed(m) => {
                self.failed_events += 1;
                self.set_view(observer, &m.id, ViewStatus::Failed);
                self.judge_failure(observer, &m.id);
                self.detection_event(&m.id, true);
            }
            Event::Left(m) => {
                self.set_view(observer, &m.id, ViewStatus::Left);
                self.detection_event(&m.id, false);
            }
            Event::Removed(id) => {
                if let Some(subject) = self.slot_of(id) {
                    let view = &mut self.views[observer][subject];
                    if view.generation == id.generation() {
                        view.status = ViewStatus::Absent;
                        self.changes += 1;
                    }
                }
                self.detection_event(id, false);
            }
            Event::KeyChanged { .. } => self.changes += 1,
            Event::Lagged { members, .. } => {
                self.lagged_events += 1;
                self.resync_views(observer, members);
            }
            Event::SelfSuspected => self.self_suspected_events += 1,
            _ => {}
        }
        self.record(observer, TraceKind::Event(event));
    }

    fn set_view(&mut self, observer: usize, id: &NodeId, status: ViewStatus) {
        let Some(subject) = self.slot_of(id) else {
            return;
        };
        let view = &mut self.views[observer][subject];
        if id.generation() < view.generation {
            return;
        }
        let newer = id.generation() > view.generation;
        *view = View {
            generation: id.generation(),
            status,
        };
        self.changes += 1;
        if newer && self.detections.iter().any(|d| d.node == subject) {
            // A newer generation replaced a crashed one in this view.
            self.check_all_detections();
        }
    }

    /// Rebuilds an observer's views from the member list its lag came with.
    fn resync_views(&mut self, observer: usize, members: &Members) {
        let mut row = vec![View::default(); self.slots.len()];
        for member in members.all() {
            let Some(&subject) = self.by_addr.get(&member.id.gossip_addr()) else {
                continue;
            };
            if member.id.generation() < row[subject].generation {
                continue;
            }
            let status = match member.status {
                MemberStatus::Live => ViewStatus::Live,
                MemberStatus::Unready => ViewStatus::Unready,
                MemberStatus::Failed => ViewStatus::Failed,
                MemberStatus::Left => ViewStatus::Left,
                MemberStatus::Joining => ViewStatus::Absent,
            };
            row[subject] = View {
                generation: member.id.generation(),
                status,
            };
        }
        self.views[observer] = row;
        self.changes += 1;
    }

    /// Counts a `Failed` event as a false positive unless its subject was ever taken down,
    /// paused or leaving, is an older generation, or ever had a cut link with the observer.
    fn judge_failure(&mut self, observer: usize, subject: &NodeId) {
        let Some(slot) = self.slot_of(subject) else {
            return;
        };
        let excused = self.slots[slot].faulted
            || subject.generation() < self.slots[slot].id.generation()
            || self.net.ever_cut(observer, slot);
        if !excused {
            self.false_positives.push(FalsePositive {
                at: self.now(),
                observer,
                subject: subject.clone(),
            });
        }
    }

    fn detection_event(&mut self, subject: &NodeId, failed: bool) {
        let now = self.now();
        for i in 0..self.detections.len() {
            let d = &mut self.detections[i];
            if d.id != *subject || d.all_after.is_some() {
                continue;
            }
            if failed && d.first_after.is_none() {
                d.first_after = Some(now.saturating_sub(d.crashed_at));
            }
            self.check_detection(i);
        }
    }

    fn check_all_detections(&mut self) {
        for i in 0..self.detections.len() {
            self.check_detection(i);
        }
    }

    fn check_detection(&mut self, index: usize) {
        let d = &self.detections[index];
        if d.all_after.is_some() {
            return;
        }
        let (subject, generation) = (d.node, d.id.generation());
        let undetected = (0..self.slots.len()).any(|o| {
            o != subject && self.is_live(o) && {
                let v = self.views[o][subject];
                v.generation == generation
                    && matches!(v.status, ViewStatus::Live | ViewStatus::Unready)
            }
        });
        if !undetected {
            let now = self.now();
            let d = &mut self.detections[index];
            d.all_after = Some(now.saturating_sub(d.crashed_at));
        }
    }

    // ------------------------------------------------------------------ queries

    /// What `observer` believes of `subject`'s current generation (`None`: unknown, or the
    /// observer is down).
    #[must_use]
    pub fn status(&self, observer: usize, subject: usize) -> Option<MemberStatus> {
        self.node(observer)?.status(&self.slots.get(subject)?.id)
    }

    /// The value of `key` of `owner`'s current generation as `observer` sees it.
    #[must_use]
    pub fn value(&self, observer: usize, owner: usize, key: &str) -> Option<String> {
        let state = self
            .node(observer)?
            .node_state(&self.slots.get(owner)?.id)?;
        state.get(key).map(str::to_owned)
    }

    /// Whether every live node other than `subject` holds `status` for `subject`'s current
    /// generation.
    #[must_use]
    pub fn all_see(&self, subject: usize, status: MemberStatus) -> bool {
        (0..self.slots.len())
            .filter(|&o| o != subject && self.is_live(o))
            .all(|o| self.status(o, subject) == Some(status))
    }

    /// Whether every live node other than `owner` sees `key` of `owner` with `value`
    /// (`None`: absent or deleted).
    #[must_use]
    pub fn all_see_value(&self, owner: usize, key: &str, value: Option<&str>) -> bool {
        (0..self.slots.len())
            .filter(|&o| o != owner && self.is_live(o))
            .all(|o| self.value(o, owner, key).as_deref() == value)
    }

    /// Whether the cluster has converged: every live node (up, not leaving) sees every other
    /// live node's current generation as `Live`, and holds every key the script set on it
    /// (and the initial keys of its configuration) with its value, and none it deleted.
    #[must_use]
    pub fn is_converged(&self) -> bool {
        let live = self.live_nodes();
        for &o in &live {
            let row = &self.views[o];
            for &s in &live {
                let v = row[s];
                if o != s
                    && (v.status != ViewStatus::Live
                        || v.generation != self.slots[s].id.generation())
                {
                    return false;
                }
            }
        }
        for &o in &live {
            let Some(node) = self.slots[o].node.as_ref() else {
                continue;
            };
            for &s in &live {
                let slot = &self.slots[s];
                if o == s || slot.expected.is_empty() {
                    continue;
                }
                let state = node.node_state(&slot.id);
                for (key, value) in &slot.expected {
                    if state.and_then(|st| st.get(key)) != value.as_deref() {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Checks the simulator's event-built views against the nodes' own answers: for every
    /// live observer and every slot, the observer's last events say the slot's current
    /// generation is live exactly when `Membership::status` says `Live`. A mismatch means a
    /// status changed without the matching event.
    ///
    /// # Errors
    ///
    /// A description of the first mismatch.
    pub fn check_views(&self) -> Result<(), String> {
        for o in self.live_nodes() {
            for s in 0..self.slots.len() {
                if o == s {
                    continue;
                }
                let v = self.views[o][s];
                let by_events =
                    v.status == ViewStatus::Live && v.generation == self.slots[s].id.generation();
                let by_core = self.status(o, s) == Some(MemberStatus::Live);
                if by_events != by_core {
                    return Err(format!(
                        "at {:?}: node {o}'s events say {} is {:?} (generation {}), its membership says {:?}",
                        self.now(),
                        self.slots[s].id,
                        v.status,
                        v.generation,
                        self.status(o, s)
                    ));
                }
            }
        }
        Ok(())
    }

    /// How slot `node`'s current generation's leave ended ([`Node::drain`]'s
    /// [`left`](cohort_core::Drained::left)), once it has.
    #[must_use]
    pub fn leave_outcome(&self, node: usize) -> Option<LeaveOutcome> {
        self.slots.get(node)?.left
    }

    /// Whether slot `node`'s current generation announced its departure.
    #[must_use]
    pub fn leave_announced(&self, node: usize) -> bool {
        self.leave_outcome(node) == Some(LeaveOutcome::Announced)
    }

    // ------------------------------------------------------------------ metrics and trace

    /// The trace recorded so far (empty when [`SimConfig::record_trace`] is off).
    #[must_use]
    pub fn trace(&self) -> &[TraceEntry] {
        &self.trace
    }

    /// The trace entries of slot `node`.
    pub fn events_of(&self, node: usize) -> impl Iterator<Item = &TraceEntry> + '_ {
        self.trace.iter().filter(move |e| e.node == node)
    }

    /// The crashes and their detection so far.
    #[must_use]
    pub fn detections(&self) -> &[Detection] {
        &self.detections
    }

    /// The false positives so far.
    #[must_use]
    pub fn false_positives(&self) -> &[FalsePositive] {
        &self.false_positives
    }

    /// Slot `node`'s counters.
    #[must_use]
    pub fn counters(&self, node: usize) -> NodeCounters {
        self.slots[node].counters
    }

    /// Everything measured so far.
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        Metrics {
            seed: self.config.seed,
            virtual_time: self.now(),
            nodes: self.slots.len(),
            per_node: self.slots.iter().map(|s| s.counters).collect(),
            network: self.network,
            convergences: self.convergences.clone(),
            detections: self.detections.clone(),
            false_positives: self.false_positives.clone(),
            failed_events: self.failed_events,
            self_suspected_events: self.self_suspected_events,
            clock_skew_events: self.clock_skew_events,
            lagged_events: self.lagged_events,
            trace_len: self.trace_len,
            trace_hash: self.trace_hash.value(),
        }
    }

    /// Starts a traffic measurement window now (see [`Sim::window_rates`]).
    pub fn start_window(&mut self) {
        self.window = Some(Window {
            at: self.now,
            counters: self.slots.iter().map(|s| s.counters).collect(),
        });
    }

    /// Bytes and datagrams sent per second of virtual time by each node live now, since
    /// [`Sim::start_window`] (or since the start of the run).
    #[must_use]
    pub fn window_rates(&self) -> Vec<NodeRate> {
        let (at, before) = match &self.window {
            Some(w) => (w.at, w.counters.as_slice()),
            None => (0, &[][..]),
        };
        let secs = (self.now - at) as f64 / 1e9;
        if secs <= 0.0 {
            return Vec::new();
        }
        self.live_nodes()
            .into_iter()
            .map(|i| {
                let now = self.slots[i].counters;
                let then = before.get(i).copied().unwrap_or_default();
                NodeRate {
                    node: i,
                    bytes_per_sec: (now.bytes_sent - then.bytes_sent) as f64 / secs,
                    datagrams_per_sec: (now.datagrams_sent - then.datagrams_sent) as f64 / secs,
                }
            })
            .collect()
    }
}

/// The seed of slot `node`'s generation `generation`, derived from the run seed.
fn node_seed(seed: u64, node: usize, generation: u64) -> u64 {
    splitmix64(splitmix64(seed ^ 0x5eed_0000_0000_0000) ^ ((node as u64) << 20) ^ generation)
}
