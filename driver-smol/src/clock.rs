//! The node's clock as applications read it: the core's lock-free hybrid logical clock plus
//! the node's wall clock (core's [`WallClock`]: the system clock unless the builder set
//! another), and the one place this driver reads the system clock.

use std::sync::Arc;
use std::time::SystemTime;

use cohort_core::{
    ClockError, HlcConfig, NodeId, NodeTag, SharedHlc, Timestamp, WallClock, WallTime,
};

/// The cluster clock of a node: hybrid logical timestamps, unique across the cluster and
/// ordered after everything this node has received (gossip carries every sender's clock).
///
/// Cheap to clone and to read from any thread: no lock, no message to the node's task.
#[derive(Clone, Debug)]
pub struct Clock {
    hlc: Arc<SharedHlc>,
    wall: WallClock,
}

/// A reading of `clock` (a node's wall clock), the system clock read here when it is the
/// source: every wall time this driver passes to the core comes from this function.
pub(crate) fn wall_now(clock: &WallClock) -> WallTime {
    clock.read_with(SystemTime::now)
}

impl Clock {
    pub(crate) fn new(hlc: Arc<SharedHlc>, wall: WallClock) -> Self {
        Self { hlc, wall }
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
        Self::new(Arc::new(SharedHlc::new(config)), WallClock::system())
    }

    /// This clock reading its wall time from `wall` instead (for tests of clocks that are
    /// skewed or moved by hand; a running node's clock reads the builder's
    /// [`wall_clock`](crate::NodeBuilder::wall_clock)).
    ///
    /// ```
    /// use cohort_smol::{Clock, NodeId, WallClock};
    ///
    /// let id = NodeId::new("a", 1, "127.0.0.1:7000".parse().unwrap());
    /// let ahead = Clock::for_node(&id).with_wall_clock(WallClock::system_offset_millis(60_000));
    /// let system = Clock::for_node(&id);
    /// assert!(ahead.wall().as_unix_millis() >= system.wall().as_unix_millis() + 59_000);
    /// ```
    #[must_use]
    pub fn with_wall_clock(mut self, wall: WallClock) -> Self {
        self.wall = wall;
        self
    }

    /// A reading of the node's wall clock, the one its timestamps are built from: the
    /// physical part of [`now`](Self::now) is never below it, and a peer's timestamp more than
    /// the drift bound ahead of it is refused.
    #[must_use]
    pub fn wall(&self) -> WallTime {
        wall_now(&self.wall)
    }

    /// Where the node's wall-clock readings come from.
    #[must_use]
    pub fn wall_clock(&self) -> &WallClock {
        &self.wall
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
        self.hlc.now(self.wall())
    }

    /// Merges a timestamp received from elsewhere (an application message), so that later
    /// timestamps order after it.
    ///
    /// # Errors
    ///
    /// [`ClockError::DriftExceeded`] (or another [`ClockError`]) when `remote` is further ahead
    /// of the node's wall clock than the drift bound; the clock does not move.
    pub fn observe(&self, remote: Timestamp) -> Result<Timestamp, ClockError> {
        self.hlc.observe(remote, self.wall())
    }

    /// The core clock itself.
    #[must_use]
    pub fn hlc(&self) -> &Arc<SharedHlc> {
        &self.hlc
    }
}
