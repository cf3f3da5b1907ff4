//! Settings of a simulation run: the seed, the network model and the template every simulated
//! node's configuration is built from.
//!
//! Owns [`SimConfig`] and [`NetworkConfig`]. It only describes a run; it never runs anything.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cohort_core::NodeConfig;
use cohort_core::membership::FailureDetectorConfig;
use cohort_core::node::Protocol;
use cohort_core::wire::ProtocolVersion;

/// A hook that adjusts the configuration of the node in a slot (called with the slot index and
/// the configuration built from the [`SimConfig`], at every start and restart).
pub type ConfigureNode = Arc<dyn Fn(usize, &mut NodeConfig) + Send + Sync>;

/// The virtual network's behaviour. Every random choice comes from the run's seeded generator.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// The fixed part of every datagram's one-way latency. Default 1 ms.
    pub base_latency: Duration,
    /// A uniform random delay in `[0, jitter]` added to the base latency of each datagram (and
    /// of each duplicate, independently). It also reorders datagrams. Default 1 ms.
    pub jitter: Duration,
    /// The probability that a datagram is lost. Default 0.
    pub loss: f64,
    /// The probability that a delivered datagram is delivered a second time (with its own
    /// latency). Default 0.
    pub duplication: f64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            base_latency: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
            loss: 0.0,
            duplication: 0.0,
        }
    }
}

/// The settings of one simulation run.
///
/// Fields are public; [`SimConfig::new`] gives the defaults and the `with_*` methods chain.
///
/// ```
/// use std::time::Duration;
/// use cohort_sim::SimConfig;
///
/// let config = SimConfig::new(7)
///     .with_gossip_interval(Duration::from_millis(100))
///     .with_loss(0.1)
///     .with_fast_failure_detection();
/// assert_eq!(config.failure_detector.initial_interval, Duration::from_millis(100));
/// ```
#[derive(Clone)]
pub struct SimConfig {
    /// The run's seed: the network's generator and every node's generator derive from it.
    pub seed: u64,
    /// The cluster id every node is configured with. Default `"sim"`.
    pub cluster_id: String,
    /// Time between gossip rounds. Default 100 ms.
    pub gossip_interval: Duration,
    /// The membership protocol of every node. Default chitchat mode. In cohort mode the
    /// probe interval is the gossip interval, so that rounds compare.
    pub mode: Protocol,
    /// The protocol version of the Syns nodes send (chitchat mode). Default V0.
    pub protocol_version: ProtocolVersion,
    /// Failure detector settings. Default: the core's (chitchat's) defaults, whose prior mean
    /// interval is 5 s; see [`SimConfig::with_fast_failure_detection`].
    pub failure_detector: FailureDetectorConfig,
    /// How long tombstones (and TTL keys) live. Default: the core's default (1 h).
    pub marked_for_deletion_grace_period: Duration,
    /// How far ahead a peer's clock may be. Default 500 ms (the core's default).
    pub max_clock_drift: Duration,
    /// The network model.
    pub network: NetworkConfig,
    /// Each started node runs its first gossip round after a random delay in `[0, this)`, so
    /// that rounds are not in lock step. Default: one gossip interval.
    pub start_spread: Duration,
    /// How often (in virtual time) `run_until` evaluates its predicate. Measured times have
    /// this resolution. Default 1 ms.
    pub probe_interval: Duration,
    /// Whether every event is kept in the trace ([`Sim::trace`](crate::Sim::trace)). The trace
    /// hash is computed either way. Default `true`; large runs turn it off to save memory.
    pub record_trace: bool,
    /// The wall clock of a node without skew reads this many milliseconds since the Unix epoch
    /// at virtual time zero. Default 1,760,000,000,000 (late 2025).
    pub wall_epoch_ms: u64,
    /// Adjusts each node's configuration after the fields above were applied (for instance
    /// its initial keys or a liveness predicate). It must not change the node's identity or
    /// seeds: the simulator routes by the slot's address.
    pub configure: Option<ConfigureNode>,
}

impl SimConfig {
    /// The defaults, with `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        let interval = Duration::from_millis(100);
        Self {
            seed,
            cluster_id: "sim".to_owned(),
            gossip_interval: interval,
            mode: Protocol::Chitchat,
            protocol_version: ProtocolVersion::V0,
            failure_detector: FailureDetectorConfig::default(),
            marked_for_deletion_grace_period: Duration::from_secs(3_600),
            max_clock_drift: Duration::from_millis(500),
            network: NetworkConfig::default(),
            start_spread: interval,
            probe_interval: Duration::from_millis(1),
            record_trace: true,
            wall_epoch_ms: 1_760_000_000_000,
            configure: None,
        }
    }

    /// Sets the gossip interval (and the start spread to match).
    #[must_use]
    pub fn with_gossip_interval(mut self, interval: Duration) -> Self {
        self.gossip_interval = interval;
        self.start_spread = interval;
        self
    }

    /// Sets the membership protocol.
    #[must_use]
    pub fn with_mode(mut self, mode: Protocol) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the protocol version.
    #[must_use]
    pub fn with_protocol(mut self, version: ProtocolVersion) -> Self {
        self.protocol_version = version;
        self
    }

    /// Sets the datagram loss probability.
    #[must_use]
    pub fn with_loss(mut self, loss: f64) -> Self {
        self.network.loss = loss;
        self
    }

    /// Sets the datagram duplication probability.
    #[must_use]
    pub fn with_duplication(mut self, duplication: f64) -> Self {
        self.network.duplication = duplication;
        self
    }

    /// Sets the tombstone grace period.
    #[must_use]
    pub fn with_grace_period(mut self, grace: Duration) -> Self {
        self.marked_for_deletion_grace_period = grace;
        self
    }

    /// The failure detector of chitchat's own performance tests: chitchat's defaults (phi
    /// threshold 8, window 1,000, 10 s maximum interval) with the prior mean interval set to the
    /// gossip interval instead of 5 s, so that detection is fast from the first rounds on.
    #[must_use]
    pub fn with_fast_failure_detection(mut self) -> Self {
        self.failure_detector.initial_interval = self.gossip_interval;
        self
    }

    /// Sets the hook that adjusts each node's configuration.
    #[must_use]
    pub fn with_configure(
        mut self,
        configure: impl Fn(usize, &mut NodeConfig) + Send + Sync + 'static,
    ) -> Self {
        self.configure = Some(Arc::new(configure));
        self
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("seed", &self.seed)
            .field("cluster_id", &self.cluster_id)
            .field("gossip_interval", &self.gossip_interval)
            .field("mode", &self.mode)
            .field("protocol_version", &self.protocol_version)
            .field("failure_detector", &self.failure_detector)
            .field(
                "marked_for_deletion_grace_period",
                &self.marked_for_deletion_grace_period,
            )
            .field("max_clock_drift", &self.max_clock_drift)
            .field("network", &self.network)
            .field("start_spread", &self.start_spread)
            .field("probe_interval", &self.probe_interval)
            .field("record_trace", &self.record_trace)
            .field("wall_epoch_ms", &self.wall_epoch_ms)
            .field("configure", &self.configure.as_ref().map(|_| "<fn>"))
            .finish()
    }
}
