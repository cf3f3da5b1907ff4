//! Configuration of the membership machine.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{FailureDetectorConfig, NodeState};
use crate::NodeId;
use crate::wire::{Compression, ProtocolVersion};

/// A predicate over a member's state that must hold, beside the failure detector's verdict,
/// for the member to count as live (for example "has the key `ready`").
pub type LivenessPredicate = Arc<dyn Fn(&NodeState) -> bool + Send + Sync>;

/// A bound on what a node keeps of the cluster's state ([`StateLimits`]), named in the
/// [`Event::OverLimit`](crate::Event::OverLimit) reports and the errors of local writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// [`StateLimits::max_members`].
    Members,
    /// [`StateLimits::max_unconfirmed_per_sender`].
    UnconfirmedPerSender,
    /// [`StateLimits::max_keys_per_member`].
    KeysPerMember,
    /// [`StateLimits::max_bytes_per_member`].
    BytesPerMember,
    /// [`StateLimits::max_state_bytes`].
    StateBytes,
    /// [`StateLimits::max_key_len`].
    KeyLength,
    /// [`StateLimits::max_value_len`].
    ValueLength,
}

impl Limit {
    /// The limit's name in lower case, for logs: `members`, `unconfirmed-per-sender`,
    /// `keys-per-member`, `bytes-per-member`, `state-bytes`, `key-length` or `value-length`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Members => "members",
            Self::UnconfirmedPerSender => "unconfirmed-per-sender",
            Self::KeysPerMember => "keys-per-member",
            Self::BytesPerMember => "bytes-per-member",
            Self::StateBytes => "state-bytes",
            Self::KeyLength => "key-length",
            Self::ValueLength => "value-length",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bounds on the memory a node gives the cluster's gossiped state, so that no peer (a buggy
/// one, or a forger where gossip is not authenticated) can make it grow without end.
///
/// What goes past a bound is refused as a whole and counted: a member first heard of when the
/// table is full (or from a sender that already introduced too many members that never
/// contacted this node themselves) is not added, and a member's delta that would take it past
/// its bounds is not applied (its state stays as it was). Each refusal is reported at a bounded
/// rate as [`Event::OverLimit`](crate::Event::OverLimit) and counted in
/// [`Diagnostics::over_limit`](super::Diagnostics::over_limit). The local node's own writes
/// are held to the same bounds ([`KeyError::TooLong`](super::KeyError::TooLong),
/// [`KeyError::StateFull`](super::KeyError::StateFull)), so that it never publishes what
/// peers with the same settings refuse.
///
/// Sizes count the bytes of keys and values plus [`ENTRY_OVERHEAD`] per stored entry
/// (tombstones included). Every member's heap use is within a small factor of that, plus its
/// failure detector's window; the whole state stays within about `max_state_bytes` plus
/// `max_members` times a member's fixed cost.
///
/// ```
/// use cohort_core::membership::StateLimits;
///
/// let mut limits = StateLimits::default();
/// limits.max_members = 50_000; // a very large cluster
/// limits.max_value_len = 4_096;
/// assert!(limits.max_value_len < limits.max_bytes_per_member);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateLimits {
    /// The most members known at once (this node, live, joining, failed and left ones, until
    /// collected). Default 16,384.
    pub max_members: usize,
    /// The most members one sender may have introduced that have not yet contacted this node
    /// themselves (a member is confirmed by any datagram from its own gossip address; it
    /// stops counting then, or when it is collected). A peer that introduces more is not
    /// believed beyond this: the others are learned from other peers, or once it has been
    /// confirmed. Default 1,024.
    pub max_unconfirmed_per_sender: usize,
    /// The most entries (tombstones included) one member's state may hold. Default 4,096.
    pub max_keys_per_member: usize,
    /// The most bytes one member's state may hold (keys, values, [`ENTRY_OVERHEAD`] per
    /// entry). Default 1 MiB.
    pub max_bytes_per_member: usize,
    /// The most bytes all members' states together may hold. Default 64 MiB.
    pub max_state_bytes: usize,
    /// The longest key, in bytes. Default 1,024.
    pub max_key_len: usize,
    /// The longest value, in bytes. Default 32 KiB (a value must fit in a datagram with its
    /// member's other changes; chitchat's largest datagram is 65,507 bytes).
    pub max_value_len: usize,
}

/// The bytes each stored entry counts for beside its key and value in [`StateLimits`].
pub const ENTRY_OVERHEAD: usize = 64;

impl Default for StateLimits {
    fn default() -> Self {
        Self {
            max_members: 16_384,
            max_unconfirmed_per_sender: 1_024,
            max_keys_per_member: 4_096,
            max_bytes_per_member: 1 << 20,
            max_state_bytes: 64 << 20,
            max_key_len: 1_024,
            max_value_len: 32 << 10,
        }
    }
}

impl StateLimits {
    /// No bound at all (for tests of the bare protocol, and benchmarks).
    #[must_use]
    pub const fn unlimited() -> Self {
        Self {
            max_members: usize::MAX,
            max_unconfirmed_per_sender: usize::MAX,
            max_keys_per_member: usize::MAX,
            max_bytes_per_member: usize::MAX,
            max_state_bytes: usize::MAX,
            max_key_len: usize::MAX,
            max_value_len: usize::MAX,
        }
    }
}

/// Settings of a [`Membership`](super::Membership) machine. Every limit has a default.
///
/// ```
/// use std::time::Duration;
/// use cohort_core::NodeId;
/// use cohort_core::membership::MembershipConfig;
///
/// let me = NodeId::new("node-1", 1, "127.0.0.1:7001".parse().unwrap());
/// let mut config = MembershipConfig::new(me, "orders");
/// config.gossip_interval = Duration::from_millis(100);
/// config.seeds = vec!["127.0.0.1:7000".parse().unwrap()];
/// config.initial_key_values = vec![("dc".into(), "eu-west-1a".into())];
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct MembershipConfig {
    /// This node's identity.
    pub node_id: NodeId,
    /// Only nodes with the same cluster id gossip together; others get `BadCluster`.
    pub cluster_id: String,
    /// Addresses contacted to join (already resolved: the driver resolves host names).
    pub seeds: Vec<SocketAddr>,
    /// Time between gossip rounds. Default 1 s.
    pub gossip_interval: Duration,
    /// Live peers contacted per round. Default 3 (chitchat's `GOSSIP_COUNT`).
    pub gossip_count: usize,
    /// The protocol version of the Syns this node sends (replies echo the version they
    /// answer). Default V0, which every chitchat 0.13 node reads; V1 compresses digests.
    pub protocol_version: ProtocolVersion,
    /// Whether block streams use zstd where it helps (as chitchat does) or stay raw.
    pub compression: Compression,
    /// Failure detector settings (chitchat's defaults).
    pub failure_detector: FailureDetectorConfig,
    /// How long a deleted key's tombstone is kept before it is garbage collected. Default 1 h.
    pub marked_for_deletion_grace_period: Duration,
    /// Key-values this node starts with (versions 1, 2, ... in this order).
    pub initial_key_values: Vec<(String, String)>,
    /// Bytes every outgoing datagram must leave free for a wrapper (cohort's envelope).
    /// Default 0.
    pub reserved_bytes: usize,
    /// Bytes left free at the front of every [`Transmit`](super::Transmit) payload, for a
    /// wrapper the caller writes in place (the node's envelope). Counted in the datagram
    /// budget only through `reserved_bytes`. Default 0.
    pub transmit_headroom: usize,
    /// How many garbage-collected node ids are remembered, so that stale gossip does not bring
    /// them back. Default 5,000 (chitchat's).
    pub removed_nodes_remembered: usize,
    /// The most events kept for the reader; past this the oldest are dropped and the reader
    /// is told it lagged. Default 1,024.
    pub max_pending_events: usize,
    /// Bad input (another cluster's messages, refused timestamps) is reported at most once
    /// per sender and kind in this interval, with the count held back since; every occurrence
    /// is counted ([`Membership::diagnostics`](crate::membership::Membership::diagnostics)).
    /// Default 1 s.
    pub diagnostic_interval: Duration,
    /// The most datagrams kept for the driver; past this new ones are dropped (and counted).
    /// Default 1,024.
    pub max_pending_transmits: usize,
    /// If a gossip round runs this many intervals late, the process was starved or paused: no
    /// node is declared dead for the next `self_suspicion_hold`. Default 3.
    pub late_round_factor: u32,
    /// When the failure detector would kill at least two nodes and at least half of the live
    /// ones in one round while this node has heard nothing for `3 × gossip_interval`, this node
    /// is more likely the one cut off: those deaths wait, for at most this long. Default 10 s.
    pub self_suspicion_hold: Duration,
    /// Peers that a leaving node contacts at once to announce its departure. Default 8.
    pub leave_fanout: usize,
    /// Beside the failure detector, a member counts as live only if this holds.
    pub liveness_predicate: Option<LivenessPredicate>,
    /// Bounds on the gossiped state this node keeps. Default [`StateLimits::default`].
    pub limits: StateLimits,
    /// Seed of the machine's random number generator (peer choice, tie shuffles). Drivers
    /// seed from the OS; tests from a fixed number.
    pub rng_seed: u64,
}

impl MembershipConfig {
    /// The defaults for node `node_id` in cluster `cluster_id`.
    pub fn new(node_id: NodeId, cluster_id: impl Into<String>) -> Self {
        Self {
            node_id,
            cluster_id: cluster_id.into(),
            seeds: Vec::new(),
            gossip_interval: Duration::from_secs(1),
            gossip_count: 3,
            protocol_version: ProtocolVersion::V0,
            compression: Compression::Zstd,
            failure_detector: FailureDetectorConfig::default(),
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            initial_key_values: Vec::new(),
            reserved_bytes: 0,
            transmit_headroom: 0,
            removed_nodes_remembered: 5_000,
            max_pending_events: 1_024,
            diagnostic_interval: Duration::from_secs(1),
            max_pending_transmits: 1_024,
            late_round_factor: 3,
            self_suspicion_hold: Duration::from_secs(10),
            leave_fanout: 8,
            liveness_predicate: None,
            limits: StateLimits::default(),
            rng_seed: 0,
        }
    }
}

impl fmt::Debug for MembershipConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MembershipConfig")
            .field("node_id", &self.node_id)
            .field("cluster_id", &self.cluster_id)
            .field("seeds", &self.seeds)
            .field("gossip_interval", &self.gossip_interval)
            .field("gossip_count", &self.gossip_count)
            .field("protocol_version", &self.protocol_version)
            .field("compression", &self.compression)
            .field("failure_detector", &self.failure_detector)
            .field(
                "marked_for_deletion_grace_period",
                &self.marked_for_deletion_grace_period,
            )
            .field("initial_key_values", &self.initial_key_values)
            .field("reserved_bytes", &self.reserved_bytes)
            .field("transmit_headroom", &self.transmit_headroom)
            .field("removed_nodes_remembered", &self.removed_nodes_remembered)
            .field("max_pending_events", &self.max_pending_events)
            .field("diagnostic_interval", &self.diagnostic_interval)
            .field("max_pending_transmits", &self.max_pending_transmits)
            .field("late_round_factor", &self.late_round_factor)
            .field("self_suspicion_hold", &self.self_suspicion_hold)
            .field("leave_fanout", &self.leave_fanout)
            .field(
                "liveness_predicate",
                &self.liveness_predicate.as_ref().map(|_| "<fn>"),
            )
            .field("limits", &self.limits)
            .field("rng_seed", &self.rng_seed)
            .finish()
    }
}
