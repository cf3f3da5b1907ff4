//! The single-owner hybrid logical clock.

use std::time::Duration;

use super::{
    ClockError, DEFAULT_MAX_DRIFT, NodeTag, Timestamp, WallTime, check_drift, duration_millis,
    step_local, step_receive,
};

/// Configuration of a clock.
///
/// ```
/// use std::time::Duration;
/// use cohort_core::{HlcConfig, NodeTag};
/// let config = HlcConfig::new(NodeTag::new(7)).with_max_drift(Duration::from_millis(250));
/// assert_eq!(config.max_drift, Duration::from_millis(250));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HlcConfig {
    /// The tag stamped on every timestamp this clock issues; must be unique in the cluster.
    pub node: NodeTag,
    /// How far ahead of the local wall clock a remote timestamp may be and still be accepted
    /// (inclusive). Default: [`DEFAULT_MAX_DRIFT`] (500 ms). Counted in whole milliseconds.
    pub max_drift: Duration,
}

impl HlcConfig {
    /// The default configuration for the node with tag `node`.
    #[must_use]
    pub fn new(node: NodeTag) -> Self {
        Self {
            node,
            max_drift: DEFAULT_MAX_DRIFT,
        }
    }

    /// This configuration with another maximum drift.
    #[must_use]
    pub fn with_max_drift(mut self, max_drift: Duration) -> Self {
        self.max_drift = max_drift;
        self
    }
}

/// A hybrid logical clock owned by one state machine (`&mut self`).
///
/// Each call is a few nanoseconds and never allocates. See the [module](super) for the
/// guarantees. For a clock shared between threads, use [`SharedHlc`](super::SharedHlc).
///
/// ```
/// use cohort_core::{Hlc, HlcConfig, NodeTag, WallTime};
/// let mut clock = Hlc::new(HlcConfig::new(NodeTag::new(1)));
/// let wall = WallTime::from_unix_millis(1_000)?;
/// let a = clock.now(wall)?;
/// let b = clock.now(wall)?; // same millisecond: the counter orders them
/// assert!(b > a);
/// assert_eq!((b.millis(), b.counter()), (1_000, 1));
/// // The wall clock steps back by a second: timestamps still go forward.
/// let c = clock.now(WallTime::from_unix_millis(0)?)?;
/// assert!(c > b);
/// # Ok::<(), cohort_core::ClockError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hlc {
    /// The last packed time handed out (0 before the first).
    last: u64,
    node: NodeTag,
    max_drift_millis: u64,
}

impl Hlc {
    /// A clock that has issued nothing yet.
    #[must_use]
    pub fn new(config: HlcConfig) -> Self {
        Self {
            last: 0,
            node: config.node,
            max_drift_millis: duration_millis(config.max_drift),
        }
    }

    /// A timestamp for a local or send event at wall time `wall`.
    ///
    /// Strictly greater than every timestamp this clock issued before. Fails only with
    /// [`ClockError::Exhausted`], at the end of the 48-bit range.
    #[inline]
    pub fn now(&mut self, wall: WallTime) -> Result<Timestamp, ClockError> {
        let next = step_local(self.last, wall)?;
        self.last = next;
        Ok(Timestamp::from_packed(next, self.node))
    }

    /// Records the receipt of `remote` at wall time `wall` and returns the receive event's
    /// timestamp, which is greater than `remote` and than every timestamp issued before.
    ///
    /// Fails with [`ClockError::DriftExceeded`] when `remote` is more than the maximum drift
    /// ahead of `wall`, and with [`ClockError::Exhausted`] at the end of the range. On error
    /// the clock is unchanged.
    #[inline]
    pub fn observe(&mut self, remote: Timestamp, wall: WallTime) -> Result<Timestamp, ClockError> {
        check_drift(remote, wall, self.max_drift_millis)?;
        let next = step_receive(self.last, remote, wall)?;
        self.last = next;
        Ok(Timestamp::from_packed(next, self.node))
    }

    /// The last timestamp this clock issued, if any.
    #[must_use]
    pub fn last(&self) -> Option<Timestamp> {
        (self.last != 0).then(|| Timestamp::from_packed(self.last, self.node))
    }

    /// This clock's node tag.
    #[must_use]
    pub fn node(&self) -> NodeTag {
        self.node
    }

    /// The maximum accepted drift of remote timestamps.
    #[must_use]
    pub fn max_drift(&self) -> Duration {
        Duration::from_millis(self.max_drift_millis)
    }
}
