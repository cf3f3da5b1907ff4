//! What a driver's builder holds before a node starts, and how it becomes a [`NodeConfig`].
//!
//! Owns [`ConnectionConfig`], [`NodeSettings`] (the settings both drivers' builders share,
//! with their defaults) and the seeds ([`Seed`], [`SeedSet`]: parsing, and keeping each host
//! name's last addresses through a failed resolution). It never resolves a name, binds a
//! socket or reads a clock: the driver passes the bound address, the wall time and an
//! OS-drawn seed in, and resolves names with a lookup function of its runtime.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{DEFAULT_MAX_DRIFT, WallClock, WallTime};
use crate::members::DEFAULT_DATA_CENTER;
use crate::membership::{FailureDetectorConfig, LivenessPredicate};
use crate::node::{
    DEFAULT_CLUSTER_ID, DEFAULT_GOSSIP_INTERVAL, DEFAULT_LEAVE_TIMEOUT, DEFAULT_PROBE_INTERVAL,
    Protocol, generation_at,
};
use crate::wire::ProtocolVersion;
use crate::{DcAwareSelector, NodeConfig, NodeId, NodeSelector};

/// Where a node listens, the address peers reach it at, and where it finds the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// The address the gossip socket binds (for example `0.0.0.0:7000`).
    pub listen: SocketAddr,
    /// The address peers send to: part of the node's identity and advertised to everyone. It
    /// may differ from `listen` (behind a NAT, or listening on every interface). With port 0,
    /// the port the listen socket got.
    pub public: SocketAddr,
    /// Peers to contact first, as `host:port` or `ip:port`. Host names are resolved at start
    /// and again every [`NodeSettings::seed_refresh_interval`]. No seed needs to be up.
    pub seeds: Vec<String>,
}

impl ConnectionConfig {
    /// A connection listening on `listen`, reached at `public`, joining through `seeds`: any
    /// list of things that print as `host:port` or `ip:port` (`&["10.0.0.1:7000"]`,
    /// `vec![String]`, `[SocketAddr]`, ...).
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use cohort_core::handle::ConnectionConfig;
    ///
    /// let listen: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    /// let a = ConnectionConfig::new(listen, listen, &["127.0.0.1:7000", "seed.example:7000"]);
    /// let b = ConnectionConfig::new(listen, listen, [SocketAddr::from(([127, 0, 0, 1], 7000))]);
    /// let none = ConnectionConfig::new(listen, listen, Vec::<String>::new());
    /// assert_eq!(a.seeds[0], b.seeds[0]);
    /// assert!(none.seeds.is_empty());
    /// ```
    pub fn new(
        listen: SocketAddr,
        public: SocketAddr,
        seeds: impl IntoIterator<Item = impl ToString>,
    ) -> Self {
        Self {
            listen,
            public,
            seeds: seeds.into_iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// A last adjustment of a node's [`NodeConfig`] ([`NodeSettings::tune`]).
pub type TuneNode = Box<dyn FnOnce(&mut NodeConfig) + Send>;

/// The settings a driver's `NodeBuilder` collects, with the defaults both drivers document,
/// and [`node_config`](Self::node_config), which turns them into the core node's settings
/// once the socket is bound. Driver-only settings (RPC, an in-memory network) stay in the
/// driver's builder.
#[non_exhaustive]
pub struct NodeSettings {
    /// The node's name, unique in the cluster.
    pub name: String,
    /// Addresses and seeds.
    pub connection: ConnectionConfig,
    /// Default [`DEFAULT_CLUSTER_ID`].
    pub cluster_id: String,
    /// Default [`DEFAULT_DATA_CENTER`].
    pub data_center: String,
    /// The selector of `select_nodes`. Default [`DcAwareSelector`].
    pub selector: Arc<dyn NodeSelector + Send + Sync>,
    /// The membership protocol. Default [`Protocol::Chitchat`].
    pub protocol: Protocol,
    /// Time between probes in cohort mode. Default [`DEFAULT_PROBE_INTERVAL`].
    pub probe_interval: Duration,
    /// Default [`DEFAULT_GOSSIP_INTERVAL`].
    pub gossip_interval: Duration,
    /// Default `None` (the core's policy: chitchat's, with the gossip interval as prior).
    pub failure_detector: Option<FailureDetectorConfig>,
    /// Key-values published from the start.
    pub metadata: Vec<(String, String)>,
    /// Default `false`.
    pub chitchat_compatible: bool,
    /// Default V0.
    pub protocol_version: ProtocolVersion,
    /// Default `None`: [`generation_at`] the start's wall time.
    pub generation: Option<u64>,
    /// Default `None`: the public gossip address.
    pub rpc_addr: Option<SocketAddr>,
    /// How often seed host names are resolved again. Default 60 s.
    pub seed_refresh_interval: Duration,
    /// How far an event reader may fall behind before it lags. Default 1,024.
    pub event_capacity: usize,
    /// Default [`DEFAULT_LEAVE_TIMEOUT`].
    pub leave_timeout: Duration,
    /// Default [`DEFAULT_MAX_DRIFT`].
    pub max_clock_drift: Duration,
    /// Where the node's wall-clock readings come from (the driver reads every wall time
    /// through it). Default [`WallClock::system`].
    pub wall_clock: WallClock,
    /// Default `None`: gossip is not authenticated ([`NodeConfig::keyring`]).
    pub keyring: Option<crate::auth::Keyring>,
    /// Default [`StateLimits::default`](crate::membership::StateLimits::default)
    /// ([`NodeConfig::limits`]).
    pub limits: crate::membership::StateLimits,
    /// Default [`ServerLimits::default`](crate::rpc::ServerLimits::default): the RPC
    /// connections and calls the node serves at once.
    pub rpc_limits: crate::rpc::ServerLimits,
    /// Default `None`.
    pub liveness_predicate: Option<LivenessPredicate>,
    /// Default `None`: drawn from the operating system by the driver.
    pub rng_seed: Option<u64>,
    /// Applied last to the [`NodeConfig`]. Default `None`.
    pub tune: Option<TuneNode>,
}

impl std::fmt::Debug for NodeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSettings")
            .field("name", &self.name)
            .field("connection", &self.connection)
            .field("cluster_id", &self.cluster_id)
            .field("data_center", &self.data_center)
            .field("protocol", &self.protocol)
            .field("gossip_interval", &self.gossip_interval)
            .field("probe_interval", &self.probe_interval)
            .field("chitchat_compatible", &self.chitchat_compatible)
            .field("protocol_version", &self.protocol_version)
            .field("wall_clock", &self.wall_clock)
            .finish_non_exhaustive()
    }
}

impl NodeSettings {
    /// The defaults for a node named `name`, connected as `connection` says.
    #[must_use]
    pub fn new(name: impl Into<String>, connection: ConnectionConfig) -> Self {
        Self {
            name: name.into(),
            connection,
            cluster_id: DEFAULT_CLUSTER_ID.to_owned(),
            data_center: DEFAULT_DATA_CENTER.to_owned(),
            selector: Arc::new(DcAwareSelector),
            gossip_interval: DEFAULT_GOSSIP_INTERVAL,
            protocol: Protocol::Chitchat,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            failure_detector: None,
            metadata: Vec::new(),
            chitchat_compatible: false,
            protocol_version: ProtocolVersion::V0,
            generation: None,
            rpc_addr: None,
            seed_refresh_interval: Duration::from_secs(60),
            event_capacity: 1_024,
            leave_timeout: DEFAULT_LEAVE_TIMEOUT,
            max_clock_drift: DEFAULT_MAX_DRIFT,
            wall_clock: WallClock::system(),
            keyring: None,
            limits: crate::membership::StateLimits::default(),
            rpc_limits: crate::rpc::ServerLimits::default(),
            liveness_predicate: None,
            rng_seed: None,
            tune: None,
        }
    }

    /// The address peers reach the node at once its socket is bound to `bound`: the public
    /// address, with `bound`'s port when the public port is 0 (an ephemeral port).
    #[must_use]
    pub fn public_addr(&self, bound: SocketAddr) -> SocketAddr {
        let mut public = self.connection.public;
        if public.port() == 0 {
            public.set_port(bound.port());
        }
        public
    }

    /// The core node's settings: the identity (the [`public_addr`](Self::public_addr) of
    /// `bound`, the set generation or [`generation_at`] `wall`, which the driver reads from
    /// [`wall_clock`](Self::wall_clock)), `seeds` (resolved by the
    /// driver), every setting here, the set RNG seed or `os_seed` (which the driver draws from
    /// the operating system), and finally [`tune`](Self::tune), which this takes.
    pub fn node_config(
        &mut self,
        bound: SocketAddr,
        wall: WallTime,
        seeds: Vec<SocketAddr>,
        os_seed: u64,
    ) -> NodeConfig {
        let generation = self.generation.unwrap_or_else(|| generation_at(wall));
        let id = NodeId::new(self.name.as_str(), generation, self.public_addr(bound));
        let mut config = NodeConfig::new(id);
        config.cluster_id.clone_from(&self.cluster_id);
        config.data_center.clone_from(&self.data_center);
        config.rpc_addr = self.rpc_addr;
        config.seeds = seeds;
        config.gossip_interval = self.gossip_interval;
        config.protocol = self.protocol;
        config.probe_interval = self.probe_interval;
        config.failure_detector.clone_from(&self.failure_detector);
        config.metadata.clone_from(&self.metadata);
        config.protocol_version = self.protocol_version;
        config.chitchat_compatible = self.chitchat_compatible;
        config.max_clock_drift = self.max_clock_drift;
        config.keyring.clone_from(&self.keyring);
        config.limits = self.limits;
        config
            .liveness_predicate
            .clone_from(&self.liveness_predicate);
        config.leave_timeout = self.leave_timeout;
        config.rng_seed = self.rng_seed.unwrap_or(os_seed);
        if let Some(tune) = self.tune.take() {
            tune(&mut config);
        }
        config
    }
}

/// A seed as configured: an address, or a host name (with its port) to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seed {
    /// An `ip:port`.
    Addr(SocketAddr),
    /// A `host:port` to resolve.
    Host(String),
}

/// Each of `seeds` as an address when it is one, else as a host name.
#[must_use]
pub fn parse_seeds(seeds: &[String]) -> Vec<Seed> {
    seeds
        .iter()
        .map(|s| match s.parse::<SocketAddr>() {
            Ok(addr) => Seed::Addr(addr),
            Err(_) => Seed::Host(s.clone()),
        })
        .collect()
}

/// A node's seeds and each one's addresses from the last resolution.
///
/// [`resolve`](Self::resolve) runs the driver's lookup for every host name; one that does not
/// resolve this time keeps its previous addresses, so a passing DNS failure does not drop a
/// seed.
#[derive(Clone, Debug, Default)]
pub struct SeedSet {
    seeds: Vec<Seed>,
    last: Vec<Vec<SocketAddr>>,
}

impl SeedSet {
    /// The seeds `seeds` ([`parse_seeds`]), none resolved yet.
    #[must_use]
    pub fn parse(seeds: &[String]) -> Self {
        let seeds = parse_seeds(seeds);
        let last = seeds
            .iter()
            .map(|seed| match seed {
                Seed::Addr(addr) => vec![*addr],
                Seed::Host(_) => Vec::new(),
            })
            .collect();
        Self { seeds, last }
    }

    /// The seeds as configured.
    #[must_use]
    pub fn seeds(&self) -> &[Seed] {
        &self.seeds
    }

    /// Whether any seed is a host name (then the driver re-resolves them periodically).
    #[must_use]
    pub fn has_host_names(&self) -> bool {
        self.seeds.iter().any(|s| matches!(s, Seed::Host(_)))
    }

    /// Every seed's addresses as last resolved (the node drops its own address and
    /// duplicates).
    #[must_use]
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.last.iter().flatten().copied().collect()
    }

    /// Resolves every host name (`host:port`) with `lookup` (the driver's: `Some(addresses)`,
    /// or `None` when the name did not resolve, which the driver logs) and returns
    /// [`addresses`](Self::addresses).
    pub async fn resolve<F, Fut>(&mut self, mut lookup: F) -> Vec<SocketAddr>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Option<Vec<SocketAddr>>>,
    {
        for (seed, known) in self.seeds.iter().zip(self.last.iter_mut()) {
            if let Seed::Host(host) = seed {
                if let Some(addrs) = lookup(host.clone()).await {
                    *known = addrs;
                }
            }
        }
        self.addresses()
    }
}
