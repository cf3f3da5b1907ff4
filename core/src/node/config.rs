//! How a node is set up: what its user chooses ([`NodeConfig`]) and the policies the core
//! applies on top (the failure detector's prior, the reserved metadata keys, the envelope's
//! headroom), in one visible place ([`NodeConfig::membership_config`]).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::NodeId;
use crate::clock::{DEFAULT_MAX_DRIFT, WallTime};
use crate::hash::{Fnv1a64, splitmix64};
use crate::members::{DATA_CENTER_KEY, DEFAULT_DATA_CENTER, RPC_ADDR_KEY};
use crate::membership::cohort_mode::CohortConfig;
use crate::membership::state::key_error;
use crate::membership::{
    FailureDetectorConfig, KeyError, Limit, LivenessPredicate, MembershipConfig, NodeState,
    StateLimits, is_reserved_key,
};
use crate::wire::{self, Compression, ProtocolVersion};

/// The cluster id of a node that sets none.
pub const DEFAULT_CLUSTER_ID: &str = "cohort";

/// The time between gossip rounds of a node that sets none (datacake's interval; chitchat's
/// tests use 100 ms to 1 s).
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_secs(1);

/// How long a leave waits for its departure to be announced before giving up, unless set.
pub const DEFAULT_LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest any duration setting may be (about 100 years): longer ones would overflow the
/// time arithmetic of a running node.
pub const MAX_DURATION_SETTING: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A generation for an incarnation starting at wall time `wall`: its Unix time in
/// milliseconds, so that a restarted node (a millisecond or more later) always has a higher
/// one. Never 0.
#[must_use]
pub fn generation_at(wall: WallTime) -> u64 {
    wall.as_unix_millis().max(1)
}

/// The time between probes of a cohort-mode node that sets none.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Which membership protocol a node speaks ([`NodeConfig::protocol`]). Every node of a
/// cluster speaks the same one: a node refuses the other's datagrams and reports them
/// ([`Event::ProtocolMismatch`](crate::Event::ProtocolMismatch)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// chitchat's Scuttlebutt gossip with phi-accrual failure detection, byte for byte: it
    /// joins clusters of real chitchat nodes (quickwit, datacake). Its cost per node grows
    /// with the cluster (every round exchanges digests of every member): for clusters of up
    /// to a few hundred nodes.
    #[default]
    Chitchat,
    /// cohort mode (`docs/cohort-mode.md`): SWIM probes with Lifeguard, changes piggybacked
    /// on the probes, rare table syncs. A node's cost does not grow with the cluster, and
    /// failures are detected in about a second; cohort nodes only. A key and its value must
    /// fit one datagram (about 1 KB).
    Cohort,
}

impl Protocol {
    /// Its name on the command line: `chitchat` or `cohort`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Chitchat => "chitchat",
            Self::Cohort => "cohort",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "chitchat" => Ok(Self::Chitchat),
            "cohort" => Ok(Self::Cohort),
            other => Err(format!(
                "unknown protocol {other:?} (expected `chitchat` or `cohort`)"
            )),
        }
    }
}

/// Why a [`NodeConfig`] cannot start a node. Nothing was started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The node's name is empty.
    #[error("the node name is empty")]
    EmptyName,
    /// The gossip interval is zero.
    #[error("the gossip interval is zero")]
    ZeroGossipInterval,
    /// A metadata key is refused, as [`Node::set`](crate::Node::set) would refuse it (a
    /// reserved key).
    #[error("metadata: {0}")]
    Key(#[from] KeyError),
    /// A duration setting is longer than [`MAX_DURATION_SETTING`] (time arithmetic would
    /// overflow).
    #[error("`{setting}` is longer than {max:?}", max = MAX_DURATION_SETTING)]
    TooLong {
        /// The setting.
        setting: &'static str,
    },
    /// A metadata key is one the node sets from a setting of its own: set that instead.
    #[error("the metadata key {key:?} comes from the `{setting}` setting: set that instead")]
    KeyFromSetting {
        /// The key.
        key: String,
        /// The setting that gives it its value.
        setting: &'static str,
    },
    /// A keyring with compatible mode: bare chitchat datagrams have no envelope to carry a
    /// tag, so they cannot be authenticated.
    #[error("gossip cannot be authenticated in chitchat-compatible mode (no envelope)")]
    AuthenticatedCompatible,
    /// Cohort mode with chitchat-compatible mode: real chitchat nodes cannot read cohort
    /// mode's datagrams.
    #[error("cohort mode cannot be chitchat-compatible: choose one")]
    CohortModeCompatible,
    /// The probe interval is zero (cohort mode).
    #[error("the probe interval is zero")]
    ZeroProbeInterval,
}

/// The settings of a [`Node`](crate::Node): what its user chooses. The core turns them into
/// the membership machine's settings ([`membership_config`](Self::membership_config)),
/// applying its policies there and never overwriting a field set here.
///
/// Only the identity is required; every other field has a default and is public.
///
/// ```
/// use std::time::Duration;
/// use cohort_core::{NodeConfig, NodeId, WallTime, node::generation_at};
///
/// let wall = WallTime::from_unix_millis(1_760_000_000_000)?;
/// let id = NodeId::new("node-1", generation_at(wall), "10.0.0.5:7000".parse().unwrap());
/// let mut config = NodeConfig::new(id);
/// config.cluster_id = "orders".into();
/// config.data_center = "eu-west-1a".into();
/// config.gossip_interval = Duration::from_millis(200);
/// config.seeds = vec!["10.0.0.6:7000".parse().unwrap()];
/// config.metadata.push(("role".into(), "indexer".into()));
/// config.rng_seed = 0x5eed; // a driver draws this from the operating system
/// let membership = config.membership_config()?;
/// // The failure detector's prior follows the gossip interval, since none was set.
/// assert_eq!(membership.failure_detector.initial_interval, Duration::from_millis(200));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// This incarnation's identity: its name (unique in the cluster), its generation (higher
    /// at every restart; see [`generation_at`]) and the address peers gossip to.
    pub id: NodeId,
    /// Only nodes with the same cluster id gossip together. Default [`DEFAULT_CLUSTER_ID`].
    pub cluster_id: String,
    /// This node's data center, published as [`DATA_CENTER_KEY`]. Default
    /// [`DEFAULT_DATA_CENTER`].
    pub data_center: String,
    /// The address this node serves RPC on, published as [`RPC_ADDR_KEY`]. Default: the
    /// gossip address.
    pub rpc_addr: Option<SocketAddr>,
    /// Addresses contacted to join (resolved: a driver resolves host names). This node's own
    /// address and duplicates are ignored.
    pub seeds: Vec<SocketAddr>,
    /// The membership protocol. Default [`Protocol::Chitchat`].
    pub protocol: Protocol,
    /// Time between gossip rounds (chitchat mode). Default [`DEFAULT_GOSSIP_INTERVAL`].
    pub gossip_interval: Duration,
    /// Time between probes (cohort mode: each probes one member, so a crash is suspected
    /// within a few intervals; the probe timeout is 40% of it). Default
    /// [`DEFAULT_PROBE_INTERVAL`].
    pub probe_interval: Duration,
    /// Key-values this node publishes from the start, after the data center and RPC address.
    pub metadata: Vec<(String, String)>,
    /// Seed of the node's random choices (gossip targets, tie shuffles). Default: derived from
    /// the identity, so that two nodes never share it; a driver replaces it with one drawn
    /// from the operating system, a test fixes it.
    pub rng_seed: u64,
    /// Send bare chitchat datagrams (no envelope, no timestamp) so that real chitchat nodes
    /// can read them. Default `false`. Received datagrams are accepted in both forms either way.
    pub chitchat_compatible: bool,
    /// The protocol version of the Syns this node sends (replies echo the version they
    /// answer). Default V0, which every chitchat 0.13 node reads; V1 compresses digests.
    pub protocol_version: ProtocolVersion,
    /// How far ahead of the local wall clock a peer's timestamp may be. Default 500 ms.
    pub max_clock_drift: Duration,
    /// The failure detector's settings. Default (`None`): chitchat's, except the prior mean
    /// interval, which is the gossip interval (as datacake sets it; chitchat's 5 s prior makes
    /// detection slow during a node's first minutes).
    pub failure_detector: Option<FailureDetectorConfig>,
    /// Beside the failure detector, a member counts as live only if this holds.
    pub liveness_predicate: Option<LivenessPredicate>,
    /// How long [`Node::leave`](crate::Node::leave) waits for the departure to be announced
    /// before it ends anyway. Default [`DEFAULT_LEAVE_TIMEOUT`].
    pub leave_timeout: Duration,
    /// Peers a leaving node contacts at once. Default 8.
    pub leave_fanout: usize,
    /// Live peers contacted per round. Default 3 (chitchat's).
    pub gossip_count: usize,
    /// Whether block streams use zstd where it helps (as chitchat does) or stay raw.
    pub compression: Compression,
    /// How long a deleted key's tombstone (and a key with a TTL) is kept. Default 1 h.
    pub marked_for_deletion_grace_period: Duration,
    /// How many garbage-collected node ids are remembered. Default 5,000 (chitchat's).
    pub removed_nodes_remembered: usize,
    /// The most events kept for the reader before the oldest are dropped and it is told it
    /// lagged. Default 1,024.
    pub max_pending_events: usize,
    /// The cluster's keys: with a keyring, every datagram is signed with its primary key
    /// (HMAC-SHA-256-128 in the envelope's tag) and only datagrams a key of the ring verifies
    /// are applied; the others are dropped and counted ([`crate::auth`]). `None` (the
    /// default): gossip is not authenticated. Not with `chitchat_compatible`.
    pub keyring: Option<crate::auth::Keyring>,
    /// Bad input is reported at most once per sender and kind in this interval
    /// ([`Event::BadCluster`](crate::Event::BadCluster), [`Event::ClockSkew`](crate::Event::ClockSkew),
    /// each with the count held back since); every occurrence is counted
    /// ([`Node::diagnostics`](crate::Node::diagnostics)). Default 1 s.
    pub diagnostic_interval: Duration,
    /// The most datagrams kept for the driver; past this new ones are dropped (and counted).
    /// Default 1,024.
    pub max_pending_transmits: usize,
    /// A round this many intervals late means the process was starved: deaths are held for a
    /// while. Default 3.
    pub late_round_factor: u32,
    /// How long deaths wait at most when this node suspects it is the one cut off. Default
    /// 10 s.
    pub self_suspicion_hold: Duration,
    /// Bounds on the gossiped state this node keeps (members, keys and bytes per member, the
    /// whole state's bytes, key and value lengths). Default [`StateLimits::default`]. The
    /// node's own metadata must fit them ([`ConfigError::Key`]).
    pub limits: StateLimits,
}

impl NodeConfig {
    /// The defaults for the node `id`.
    #[must_use]
    pub fn new(id: NodeId) -> Self {
        let machine = MembershipConfig::new(id.clone(), DEFAULT_CLUSTER_ID);
        let rng_seed = seed_from_id(&id);
        Self {
            id,
            cluster_id: DEFAULT_CLUSTER_ID.to_owned(),
            data_center: DEFAULT_DATA_CENTER.to_owned(),
            rpc_addr: None,
            seeds: Vec::new(),
            protocol: Protocol::Chitchat,
            gossip_interval: DEFAULT_GOSSIP_INTERVAL,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            metadata: Vec::new(),
            rng_seed,
            chitchat_compatible: false,
            protocol_version: machine.protocol_version,
            max_clock_drift: DEFAULT_MAX_DRIFT,
            failure_detector: None,
            liveness_predicate: None,
            leave_timeout: DEFAULT_LEAVE_TIMEOUT,
            leave_fanout: machine.leave_fanout,
            gossip_count: machine.gossip_count,
            compression: machine.compression,
            marked_for_deletion_grace_period: machine.marked_for_deletion_grace_period,
            removed_nodes_remembered: machine.removed_nodes_remembered,
            max_pending_events: machine.max_pending_events,
            diagnostic_interval: machine.diagnostic_interval,
            keyring: None,
            max_pending_transmits: machine.max_pending_transmits,
            late_round_factor: machine.late_round_factor,
            self_suspicion_hold: machine.self_suspicion_hold,
            limits: machine.limits,
        }
    }

    /// The address this node publishes for RPC: [`rpc_addr`](Self::rpc_addr), or the gossip
    /// address.
    #[must_use]
    pub fn published_rpc_addr(&self) -> SocketAddr {
        self.rpc_addr.unwrap_or_else(|| self.id.gossip_addr())
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id.name().is_empty() {
            return Err(ConfigError::EmptyName);
        }
        if self.keyring.is_some() && self.chitchat_compatible {
            return Err(ConfigError::AuthenticatedCompatible);
        }
        if self.gossip_interval.is_zero() {
            return Err(ConfigError::ZeroGossipInterval);
        }
        let cohort = self.protocol == Protocol::Cohort;
        if cohort && self.chitchat_compatible {
            return Err(ConfigError::CohortModeCompatible);
        }
        if cohort && self.probe_interval.is_zero() {
            return Err(ConfigError::ZeroProbeInterval);
        }
        let fd = self.failure_detector.as_ref();
        let durations = [
            ("gossip_interval", Some(self.gossip_interval)),
            ("probe_interval", Some(self.probe_interval)),
            ("max_clock_drift", Some(self.max_clock_drift)),
            ("leave_timeout", Some(self.leave_timeout)),
            (
                "marked_for_deletion_grace_period",
                Some(self.marked_for_deletion_grace_period),
            ),
            ("self_suspicion_hold", Some(self.self_suspicion_hold)),
            (
                "failure_detector.initial_interval",
                fd.map(|f| f.initial_interval),
            ),
            ("failure_detector.max_interval", fd.map(|f| f.max_interval)),
            (
                "failure_detector.dead_node_grace_period",
                fd.map(|f| f.dead_node_grace_period),
            ),
        ];
        for (setting, value) in durations {
            if value.is_some_and(|d| d > MAX_DURATION_SETTING) {
                return Err(ConfigError::TooLong { setting });
            }
        }
        for (key, _) in &self.metadata {
            Self::check_metadata_key(key)?;
        }
        // The node's first state must fit its own limits, as its later writes must (in
        // cohort mode, each key-value must also fit a packet).
        let mut state = NodeState::new();
        let fits = cohort.then(|| crate::membership::cohort_mode::wire::max_entry_len(&self.id));
        for (key, value) in self.initial_key_values() {
            if let Some(fits) = fits.filter(|fits| key.len() + value.len() > *fits) {
                return Err(KeyError::TooLong {
                    limit: Limit::ValueLength,
                    len: value.len(),
                    max: fits.saturating_sub(key.len()),
                }
                .into());
            }
            state
                .check_write(&key, &value, &self.limits, 0)
                .map_err(|broken| key_error(broken, &key, &value))?;
            state.set(&key, &value);
        }
        Ok(())
    }

    /// The key-values the node starts with: [`DATA_CENTER_KEY`], [`RPC_ADDR_KEY`], then
    /// [`metadata`](Self::metadata).
    #[must_use]
    pub fn initial_key_values(&self) -> Vec<(String, String)> {
        let mut all = Vec::with_capacity(2 + self.metadata.len());
        all.push((DATA_CENTER_KEY.to_owned(), self.data_center.clone()));
        all.push((
            RPC_ADDR_KEY.to_owned(),
            self.published_rpc_addr().to_string(),
        ));
        all.extend(self.metadata.iter().cloned());
        all
    }

    /// The room left at the front of every datagram for cohort's envelope (none in
    /// chitchat-compatible mode; with its tag when gossip is authenticated).
    fn envelope_headroom(&self) -> usize {
        if self.chitchat_compatible {
            0
        } else if self.keyring.is_some() {
            wire::envelope_len(crate::auth::AUTH_TAG_LEN)
        } else {
            wire::ENVELOPE_OVERHEAD
        }
    }

    /// The cohort-mode machine's settings for this node ([`Protocol::Cohort`]): the probe
    /// interval and 40% of it as the probe timeout; the identity, cluster, seeds, initial
    /// key-values (as [`membership_config`](Self::membership_config) builds them), limits,
    /// leave fan-out, tombstone grace period, liveness predicate, queue bounds and seed as
    /// set here; the failure detector's `dead_node_grace_period`, when set, as the time a
    /// failed member is kept; room for the envelope.
    ///
    /// # Errors
    ///
    /// What [`validate`](Self::validate) finds.
    pub fn cohort_config(&self) -> Result<CohortConfig, ConfigError> {
        self.validate()?;
        let mut c = CohortConfig::new(self.id.clone(), self.cluster_id.as_str());
        c.seeds.clone_from(&self.seeds);
        c.probe_interval = self.probe_interval;
        c.probe_timeout = self.probe_interval * 2 / 5;
        c.initial_key_values = self.initial_key_values();
        c.limits = self.limits;
        c.leave_fanout = self.leave_fanout;
        c.marked_for_deletion_grace_period = self.marked_for_deletion_grace_period;
        if let Some(fd) = &self.failure_detector {
            c.dead_node_grace_period = fd.dead_node_grace_period;
        }
        c.liveness_predicate.clone_from(&self.liveness_predicate);
        c.max_pending_events = self.max_pending_events;
        c.max_pending_transmits = self.max_pending_transmits;
        c.diagnostic_interval = self.diagnostic_interval;
        c.late_round_factor = self.late_round_factor;
        c.self_suspicion_hold = self.self_suspicion_hold;
        c.transmit_headroom = self.envelope_headroom();
        c.rng_seed = self.rng_seed;
        Ok(c)
    }

    /// Whether `key` may be given in [`metadata`](Self::metadata): not reserved for cohort,
    /// and not one of the keys the node publishes from a setting of its own.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Key`] (a reserved key) or [`ConfigError::KeyFromSetting`].
    pub fn check_metadata_key(key: &str) -> Result<(), ConfigError> {
        if is_reserved_key(key) {
            return Err(KeyError::Reserved(key.to_owned()).into());
        }
        let setting = match key {
            DATA_CENTER_KEY => "data_center",
            RPC_ADDR_KEY => "rpc_addr",
            _ => return Ok(()),
        };
        Err(ConfigError::KeyFromSetting {
            key: key.to_owned(),
            setting,
        })
    }

    /// The membership machine's settings for this node, with the core's policies applied:
    ///
    /// - the failure detector is [`failure_detector`](Self::failure_detector) when set, else
    ///   chitchat's with its prior mean interval set to the gossip interval;
    /// - the node starts with [`DATA_CENTER_KEY`] and [`RPC_ADDR_KEY`], then
    ///   [`metadata`](Self::metadata);
    /// - unless in chitchat-compatible mode, every datagram leaves room for cohort's envelope
    ///   at its front ([`MembershipConfig::reserved_bytes`] and
    ///   [`MembershipConfig::transmit_headroom`]).
    ///
    /// # Errors
    ///
    /// What [`validate`](Self::validate) finds.
    pub fn membership_config(&self) -> Result<MembershipConfig, ConfigError> {
        self.validate()?;
        let mut m = MembershipConfig::new(self.id.clone(), self.cluster_id.as_str());
        m.seeds.clone_from(&self.seeds);
        m.gossip_interval = self.gossip_interval;
        m.gossip_count = self.gossip_count;
        m.protocol_version = self.protocol_version;
        m.compression = self.compression;
        m.failure_detector =
            self.failure_detector
                .clone()
                .unwrap_or_else(|| FailureDetectorConfig {
                    initial_interval: self.gossip_interval,
                    ..FailureDetectorConfig::default()
                });
        m.marked_for_deletion_grace_period = self.marked_for_deletion_grace_period;
        m.initial_key_values = self.initial_key_values();
        let headroom = self.envelope_headroom();
        m.reserved_bytes = headroom;
        m.transmit_headroom = headroom;
        m.removed_nodes_remembered = self.removed_nodes_remembered;
        m.max_pending_events = self.max_pending_events;
        m.diagnostic_interval = self.diagnostic_interval;
        m.max_pending_transmits = self.max_pending_transmits;
        m.late_round_factor = self.late_round_factor;
        m.self_suspicion_hold = self.self_suspicion_hold;
        m.leave_fanout = self.leave_fanout;
        m.liveness_predicate.clone_from(&self.liveness_predicate);
        m.limits = self.limits;
        m.rng_seed = self.rng_seed;
        Ok(m)
    }
}

/// A generator seed that differs between nodes: a mix of the identity's name, generation and
/// address.
fn seed_from_id(id: &NodeId) -> u64 {
    let hash = Fnv1a64::new()
        .write(id.name().as_bytes())
        .write(&id.generation().to_le_bytes())
        .write(id.gossip_addr().to_string().as_bytes())
        .finish();
    splitmix64(hash)
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("id", &self.id)
            .field("cluster_id", &self.cluster_id)
            .field("data_center", &self.data_center)
            .field("rpc_addr", &self.rpc_addr)
            .field("limits", &self.limits)
            .field("seeds", &self.seeds)
            .field("protocol", &self.protocol)
            .field("gossip_interval", &self.gossip_interval)
            .field("probe_interval", &self.probe_interval)
            .field("metadata", &self.metadata)
            .field("chitchat_compatible", &self.chitchat_compatible)
            .field("protocol_version", &self.protocol_version)
            .field("max_clock_drift", &self.max_clock_drift)
            .field("failure_detector", &self.failure_detector)
            .field(
                "liveness_predicate",
                &self.liveness_predicate.as_ref().map(|_| "<fn>"),
            )
            .field("leave_timeout", &self.leave_timeout)
            .finish_non_exhaustive()
    }
}
