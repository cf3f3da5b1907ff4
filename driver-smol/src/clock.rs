//! The node's clock as applications read it: the core's lock-free hybrid logical clock plus
//! the system's wall clock.

use std::sync::Arc;
use std::time::SystemTime;

use cohort_core::{ClockError, HlcConfig, NodeId, NodeTag, SharedHlc, Timestamp, WallTime};

/// The cluster clock of a node: hybrid logical timestamps, unique across the cluster and
/// ordered after everything this node has received (gossip carries every sender's clock).
///
/// Cheap to clone and to read from any thread: no lock, no message to the node's task.
#[derive(Clone, Debug)]
pub struct Clock {
    hlc: Arc<SharedHlc>,
}

/// The system wall clock as the core takes it ([`WallTime::saturating_from`]).
pub(crate) fn wall_now() -> WallTime {
    WallTime::saturating_from(SystemTime::now())
}

impl Clock {
    pub(crate) fn new(hlc: Arc<SharedHlc>) -> Self {
        Self { hlc }
    }

    /// A clock of its own for the node `id`, without a running node (tests, tools), tagged as
    /// the node's clock would be, with the default drift bound (500 ms).
    ///
    /// ```
    /// use cohort_smol::{Clock, NodeId};
    ///
    /// let clock = Clock::for_node(&NodeId::new("a", 1, "127.0.0.1:7000".parse().unwrap()));
    /// let first = clock.now();
    /// assert!(clock.now() > first);
    /// ```
    #[must_use]
    pub fn for_node(id: &NodeId) -> Self {
        Self::with_config(HlcConfig::new(NodeTag::from_node_id(id)))
    }

    /// A clock of its own with these settings (node tag, drift bound), without a running node.
    #[must_use]
    pub fn with_config(config: HlcConfig) -> Self {
        Self::new(Arc::new(SharedHlc::new(config)))
    }

    /// A new timestamp, greater than every one this clock issued or observed before.
    ///
    /// At the end of the clock's range (the year 10889) this returns the last timestamp
    /// issued instead of a new one; use [`try_now`](Self::try_now) to see that case.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        match self.try_now() {
            Ok(t) => t,
            Err(_) => self
                .hlc
                .last()
                .unwrap_or_else(|| Timestamp::from_packed(0, self.hlc.node())),
        }
    }

    /// A new timestamp.
    ///
    /// # Errors
    ///
    /// [`ClockError::Exhausted`] at the end of the clock's range.
    pub fn try_now(&self) -> Result<Timestamp, ClockError> {
        self.hlc.now(wall_now())
    }

    /// Merges a timestamp received from elsewhere (an application message), so that later
    /// timestamps order after it.
    ///
    /// # Errors
    ///
    /// [`ClockError::DriftExceeded`] (or another [`ClockError`]) when `remote` is further ahead
    /// of the wall clock than the drift bound; the clock does not move.
    pub fn observe(&self, remote: Timestamp) -> Result<Timestamp, ClockError> {
        self.hlc.observe(remote, wall_now())
    }

    /// The core clock itself.
    #[must_use]
    pub fn hlc(&self) -> &Arc<SharedHlc> {
        &self.hlc
    }
}
