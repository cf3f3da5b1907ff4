//! How a node is described before it starts: [`NodeBuilder`] (over core's
//! [`NodeSettings`], which holds the settings both drivers share, and
//! [`ConnectionConfig`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cohort_core::handle::{ConnectionConfig, NodeSettings};
use cohort_core::membership::{FailureDetectorConfig, NodeState};
use cohort_core::wire::ProtocolVersion;
use cohort_core::{NodeConfig, NodeSelector};

use crate::{ConnectError, MemoryNetwork, Node};
use cohort_core::rpc::ConnectionConfig as RpcConnectionConfig;

/// The deadline of an RPC call unless its client sets another (tarpc's default).
pub const DEFAULT_RPC_DEADLINE: Duration = Duration::from_secs(10);

/// The settings of a node, and [`connect`](Self::connect) to start it.
///
/// Every setting has a default; only the name and the addresses are required.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use cohort_tokio::{ConnectionConfig, NodeBuilder};
///
/// let listen = "127.0.0.1:7001".parse()?;
/// let node = NodeBuilder::new("node-1", ConnectionConfig::new(listen, listen, ["127.0.0.1:7000"]))
///     .cluster_id("orders")
///     .data_center("eu-west-1a")
///     .gossip_interval(Duration::from_millis(500))
///     .metadata("role", "indexer")
///     .connect()
///     .await?;
/// node.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct NodeBuilder {
    /// The settings both drivers share (core's), mapped to the core node's at start.
    pub(crate) settings: NodeSettings,
    pub(crate) memory_network: Option<MemoryNetwork>,
    pub(crate) rpc_deadline: Option<Duration>,
    pub(crate) rpc_connection: RpcConnectionConfig,
    pub(crate) rpc_drain_timeout: Duration,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("settings", &self.settings)
            .field("memory_network", &self.memory_network.is_some())
            .finish_non_exhaustive()
    }
}

impl NodeBuilder {
    /// A node named `name` (unique in the cluster; a restart keeps the name and takes a new
    /// generation), connected as `connection` says.
    pub fn new(name: impl Into<String>, connection: ConnectionConfig) -> Self {
        Self {
            settings: NodeSettings::new(name, connection),
            memory_network: None,
            rpc_deadline: Some(DEFAULT_RPC_DEADLINE),
            rpc_connection: RpcConnectionConfig::default(),
            rpc_drain_timeout: Duration::from_secs(5),
        }
    }

    /// The cluster to join (nodes of other clusters are refused). Default
    /// [`DEFAULT_CLUSTER_ID`](crate::DEFAULT_CLUSTER_ID).
    pub fn cluster_id(mut self, id: impl Into<String>) -> Self {
        self.settings.cluster_id = id.into();
        self
    }

    /// This node's data center, published as
    /// [`DATA_CENTER_KEY`](cohort_core::members::DATA_CENTER_KEY). Default `"default"`.
    pub fn data_center(mut self, dc: impl Into<String>) -> Self {
        self.settings.data_center = dc.into();
        self
    }

    /// The replica selector of [`Node::select_nodes`]. Default
    /// [`DcAwareSelector`](crate::DcAwareSelector). A selector of your own needs nothing
    /// beyond this crate:
    ///
    /// ```
    /// use cohort_tokio::rand_core::Rng;
    /// use cohort_tokio::{Candidate, Consistency, NodeSelector, SelectError, Topology};
    ///
    /// /// The first members in id order.
    /// struct First;
    ///
    /// impl NodeSelector for First {
    ///     fn select<'a>(
    ///         &self,
    ///         topology: &'a Topology,
    ///         consistency: Consistency,
    ///         _rng: &mut dyn Rng,
    ///     ) -> Result<Vec<&'a Candidate>, SelectError> {
    ///         let required = consistency.required(topology);
    ///         let live = topology.others_len();
    ///         if live < required {
    ///             return Err(SelectError::NotEnoughNodes { live, required });
    ///         }
    ///         Ok(topology.others().take(required).collect())
    ///     }
    /// }
    ///
    /// let any = "127.0.0.1:0".parse().unwrap();
    /// let builder = cohort_tokio::NodeBuilder::new(
    ///     "a",
    ///     cohort_tokio::ConnectionConfig::new(any, any, Vec::<String>::new()),
    /// )
    /// .selector(First);
    /// ```
    pub fn selector(mut self, selector: impl NodeSelector + Send + Sync + 'static) -> Self {
        self.settings.selector = Arc::new(selector);
        self
    }

    /// The membership protocol: [`Protocol::Chitchat`](crate::Protocol::Chitchat) (the
    /// default; joins real chitchat clusters) or [`Protocol::Cohort`](crate::Protocol::Cohort)
    /// (cohort nodes only; per-node cost independent of the cluster's size, for large
    /// clusters). Every node of a cluster must use the same one: a node refuses the other
    /// protocol's datagrams and reports them as
    /// [`Event::ProtocolMismatch`](crate::Event::ProtocolMismatch).
    ///
    /// In cohort mode a key and its value together must fit one datagram (about 1 KB; longer
    /// writes are refused with [`KeyError::TooLong`](crate::KeyError::TooLong)), and
    /// [`probe_interval`](Self::probe_interval) sets the pace instead of the gossip interval.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cohort_tokio::{ConnectionConfig, NodeBuilder, Protocol};
    ///
    /// let addr = "127.0.0.1:7000".parse().unwrap();
    /// let builder = NodeBuilder::new("node-1", ConnectionConfig::new(addr, addr, ["10.0.0.6:7000"]))
    ///     .protocol(Protocol::Cohort)
    ///     .probe_interval(Duration::from_millis(100));
    /// ```
    pub fn protocol(mut self, protocol: crate::Protocol) -> Self {
        self.settings.protocol = protocol;
        self
    }

    /// Time between probes in cohort mode (each probes one member). Default
    /// [`DEFAULT_PROBE_INTERVAL`](crate::DEFAULT_PROBE_INTERVAL) (100 ms).
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.settings.probe_interval = interval;
        self
    }

    /// How often a gossip round runs. Default
    /// [`DEFAULT_GOSSIP_INTERVAL`](crate::DEFAULT_GOSSIP_INTERVAL) (1 s, datacake's interval;
    /// chitchat's tests use 100 ms to 1 s).
    pub fn gossip_interval(mut self, interval: Duration) -> Self {
        self.settings.gossip_interval = interval;
        self
    }

    /// The failure detector's settings. Default: chitchat's, except the prior mean interval
    /// (`initial_interval`), which is the gossip interval (as datacake sets it; chitchat's 5 s
    /// prior makes detection slow during a node's first minutes).
    pub fn failure_detector(mut self, config: FailureDetectorConfig) -> Self {
        self.settings.failure_detector = Some(config);
        self
    }

    /// A key-value this node publishes from the start (see also [`Node::set_metadata`]).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.metadata.push((key.into(), value.into()));
        self
    }

    /// Send bare chitchat datagrams (no cohort envelope), so that real chitchat nodes of the
    /// same protocol version understand this node. Default `false`. Both forms are always
    /// accepted.
    pub fn chitchat_compatible(mut self, compatible: bool) -> Self {
        self.settings.chitchat_compatible = compatible;
        self
    }

    /// The protocol version of the Syns this node starts (replies always use the version of
    /// the message they answer). Default V0, which every chitchat 0.13 node reads.
    pub fn protocol_version(mut self, version: ProtocolVersion) -> Self {
        self.settings.protocol_version = version;
        self
    }

    /// This incarnation's generation. Default: the wall clock in milliseconds at
    /// [`connect`](Self::connect), so that a restarted node always has a higher one.
    pub fn generation(mut self, generation: u64) -> Self {
        self.settings.generation = Some(generation);
        self
    }

    /// The address this node serves RPC on, published as
    /// [`RPC_ADDR_KEY`](cohort_core::members::RPC_ADDR_KEY). Default: the public gossip
    /// address (RPC listens on the same port, over TCP). The TCP listener binds the listen
    /// IP at this address's port.
    pub fn rpc_addr(mut self, addr: SocketAddr) -> Self {
        self.settings.rpc_addr = Some(addr);
        self
    }

    /// How often seed host names are resolved again. Default 60 s.
    pub fn seed_refresh_interval(mut self, interval: Duration) -> Self {
        self.settings.seed_refresh_interval = interval;
        self
    }

    /// How many events a reader of [`Node::membership_events`] may fall behind before it is
    /// told it lagged. Default 1,024.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.settings.event_capacity = capacity.max(1);
        self
    }

    /// How long [`Node::shutdown`] waits for the departure to reach peers. Default
    /// [`DEFAULT_LEAVE_TIMEOUT`](crate::DEFAULT_LEAVE_TIMEOUT) (2 s).
    pub fn leave_timeout(mut self, timeout: Duration) -> Self {
        self.settings.leave_timeout = timeout;
        self
    }

    /// Authenticates gossip with `keyring`: every datagram is signed with its primary key and
    /// only datagrams a key of the ring verifies are applied (others are dropped and counted,
    /// [`Event::Unauthenticated`](crate::Event::Unauthenticated)). Every node of the cluster needs
    /// a key in common; rotate with the node's `install_cluster_key`, `use_cluster_key` and
    /// `remove_cluster_key`. Not with [`chitchat_compatible`](Self::chitchat_compatible).
    pub fn keyring(mut self, keyring: crate::Keyring) -> Self {
        self.settings.keyring = Some(keyring);
        self
    }

    /// Bounds on the gossiped state the node keeps: members (in all, and believed on one
    /// peer's word), keys and bytes per member, the whole state's bytes, key and value
    /// lengths. What a peer sends past them is not stored, and is counted and reported
    /// ([`Event::OverLimit`](crate::Event::OverLimit)); the node's own writes past them are
    /// refused ([`KeyError`](crate::KeyError)). Default [`StateLimits::default`](crate::StateLimits::default).
    ///
    /// ```
    /// use cohort_tokio::{ConnectionConfig, NodeBuilder, StateLimits, rpc::ServerLimits};
    ///
    /// let mut limits = StateLimits::default();
    /// limits.max_members = 50_000;
    /// let mut server = ServerLimits::default();
    /// server.max_connections = 256;
    /// let addr = "127.0.0.1:7000".parse().unwrap();
    /// let builder = NodeBuilder::new("node-1", ConnectionConfig::new(addr, addr, Vec::<String>::new()))
    ///     .limits(limits)
    ///     .rpc_server_limits(server);
    /// # drop(builder);
    /// ```
    pub fn limits(mut self, limits: crate::StateLimits) -> Self {
        self.settings.limits = limits;
        self
    }

    /// How far ahead of the local wall clock a peer's timestamp may be. Default 500 ms.
    pub fn max_clock_drift(mut self, drift: Duration) -> Self {
        self.settings.max_clock_drift = drift;
        self
    }

    /// Where the node reads wall-clock time: the physical part of its hybrid logical clock,
    /// the timestamps its gossip and RPC frames carry, the default
    /// [`generation`](Self::generation). Default [`WallClock::system`](crate::WallClock::system).
    ///
    /// For tests and fault injection: a node whose wall clock runs more than the drift bound
    /// ([`max_clock_drift`](Self::max_clock_drift)) ahead of its peers' has its timestamps
    /// refused by them ([`Event::ClockSkew`](crate::Event::ClockSkew)) and cannot drag their
    /// clocks forward.
    ///
    /// ```
    /// use cohort_tokio::{ConnectionConfig, NodeBuilder, WallClock};
    ///
    /// let any = "127.0.0.1:0".parse().unwrap();
    /// // This node's clock runs two seconds ahead of the system clock.
    /// let builder = NodeBuilder::new("skewed", ConnectionConfig::new(any, any, Vec::<String>::new()))
    ///     .wall_clock(WallClock::system_offset_millis(2_000));
    /// ```
    pub fn wall_clock(mut self, clock: crate::WallClock) -> Self {
        self.settings.wall_clock = clock;
        self
    }

    /// An extra condition for a member to count as live (for example "has published the key
    /// `ready`"). Members the detector hears but that fail it are `Unready`.
    pub fn liveness_predicate(
        mut self,
        predicate: impl Fn(&NodeState) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.settings.liveness_predicate = Some(Arc::new(predicate));
        self
    }

    /// The seed of the node's random choices (gossip targets, selections). Default: drawn from
    /// the operating system. Fix it to make a node's choices reproducible.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.settings.rng_seed = Some(seed);
        self
    }

    /// Adjusts any other setting of the core node ([`NodeConfig`]: queue bounds, grace
    /// periods, the leave fan-out, ...) just before the node starts, after the settings above
    /// were applied to it.
    pub fn configure(mut self, tune: impl FnOnce(&mut NodeConfig) + Send + 'static) -> Self {
        self.settings.tune = Some(Box::new(tune));
        self
    }

    /// Gossip over `network`, in this process, instead of UDP: the listen address is taken on
    /// that network (a free port for port 0), and everything else is as over UDP. For tests
    /// of applications and extensions that need real nodes and no sockets.
    pub fn memory_network(mut self, network: &MemoryNetwork) -> Self {
        self.memory_network = Some(network.clone());
        self
    }

    /// The deadline of RPC calls from this node's clients, unless a client sets its own
    /// ([`RpcClient::with_deadline`](crate::RpcClient::with_deadline)). Default
    /// [`DEFAULT_RPC_DEADLINE`] (10 s); `None` for none.
    pub fn rpc_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.rpc_deadline = deadline;
        self
    }

    /// The limits of every RPC connection (frame size, calls in flight each way, send buffer,
    /// keep-alive, idle timeout). Default: core's
    /// [`ConnectionConfig::default`](cohort_core::rpc::ConnectionConfig::default).
    pub fn rpc_connection_config(mut self, config: RpcConnectionConfig) -> Self {
        self.rpc_connection = config;
        self
    }

    /// The RPC the node serves at once, over all its connections: connections from peers
    /// past [`max_connections`](cohort_core::rpc::ServerLimits::max_connections) are closed at
    /// once, calls past [`max_calls_in_flight`](cohort_core::rpc::ServerLimits::max_calls_in_flight)
    /// are answered `Unavailable` without running. Default: core's
    /// [`ServerLimits::default`](cohort_core::rpc::ServerLimits::default).
    pub fn rpc_server_limits(mut self, limits: cohort_core::rpc::ServerLimits) -> Self {
        self.settings.rpc_limits = limits;
        self
    }

    /// How long [`Node::shutdown`] lets the calls being served finish before closing the RPC
    /// connections. Default 5 s.
    pub fn rpc_drain_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_drain_timeout = timeout;
        self
    }

    /// Binds the gossip socket and starts the node.
    ///
    /// Returns once the socket is bound; joining happens in the background (use
    /// [`Node::wait_for_members`] to wait for peers).
    ///
    /// # Errors
    ///
    /// [`ConnectError::Bind`] when the listen address cannot be bound,
    /// [`ConnectError::InvalidConfig`] when the core refuses the settings (an empty name, a
    /// zero gossip interval, a reserved metadata key, ...).
    pub async fn connect(self) -> Result<Node, ConnectError> {
        Node::start(self).await
    }
}
