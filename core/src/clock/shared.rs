//! The lock-free shared hybrid logical clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{
    ClockError, Hlc, HlcConfig, LIMIT, NodeTag, Timestamp, WallTime, check_drift, duration_millis,
    packed_wall, step_receive,
};

/// A hybrid logical clock readable from many threads at once (`&self`), in one atomic word.
///
/// Same guarantees as [`Hlc`], with every timestamp unique across all threads using the clock.
/// Issuing a timestamp within the current millisecond is one atomic increment (no lock, no
/// retry loop); moving to a new millisecond is one compare-and-swap.
///
/// All operations on the clock act on a single atomic, so they are totally ordered; relaxed
/// memory ordering is enough, because any causal chain between two calls (a channel, a lock,
/// a spawned task) already makes the later call see the earlier value (cache coherence).
///
/// ```
/// use std::sync::Arc;
/// use cohort_core::{HlcConfig, NodeTag, SharedHlc, WallTime};
/// let clock = Arc::new(SharedHlc::new(HlcConfig::new(NodeTag::new(1))));
/// let wall = WallTime::from_unix_millis(5_000)?;
/// let handles: Vec<_> = (0..2)
///     .map(|_| {
///         let clock = clock.clone();
///         std::thread::spawn(move || (0..100).map(|_| clock.now(wall).unwrap()).collect::<Vec<_>>())
///     })
///     .collect();
/// let mut all: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
/// all.sort();
/// all.dedup();
/// assert_eq!(all.len(), 200); // unique across threads
/// # Ok::<(), cohort_core::ClockError>(())
/// ```
#[derive(Debug)]
pub struct SharedHlc {
    /// The last packed time handed out (0 before the first).
    last: AtomicU64,
    node: NodeTag,
    max_drift_millis: u64,
}

impl SharedHlc {
    /// A clock that has issued nothing yet.
    #[must_use]
    pub fn new(config: HlcConfig) -> Self {
        Self {
            last: AtomicU64::new(0),
            node: config.node,
            max_drift_millis: duration_millis(config.max_drift),
        }
    }

    /// A timestamp for a local or send event at wall time `wall`; see [`Hlc::now`].
    #[inline]
    pub fn now(&self, wall: WallTime) -> Result<Timestamp, ClockError> {
        let wall_packed = packed_wall(wall);
        let mut current = self.last.load(Ordering::Relaxed);
        loop {
            if wall_packed > current {
                // The wall clock moved past the clock: jump to it (counter 0).
                if wall_packed > LIMIT {
                    return Err(ClockError::Exhausted);
                }
                match self.last.compare_exchange_weak(
                    current,
                    wall_packed,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(Timestamp::from_packed(wall_packed, self.node)),
                    Err(seen) => current = seen,
                }
            } else {
                // Within the clock's current millisecond (or behind it): count. A full counter
                // carries into the milliseconds by plain addition.
                if current >= LIMIT {
                    return Err(ClockError::Exhausted);
                }
                let previous = self.last.fetch_add(1, Ordering::Relaxed);
                return Ok(Timestamp::from_packed(previous + 1, self.node));
            }
        }
    }

    /// Records the receipt of `remote` at wall time `wall`; see [`Hlc::observe`]. On error the
    /// clock is unchanged.
    #[inline]
    pub fn observe(&self, remote: Timestamp, wall: WallTime) -> Result<Timestamp, ClockError> {
        check_drift(remote, wall, self.max_drift_millis)?;
        let mut current = self.last.load(Ordering::Relaxed);
        loop {
            let next = step_receive(current, remote, wall)?;
            match self.last.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Timestamp::from_packed(next, self.node)),
                Err(seen) => current = seen,
            }
        }
    }

    /// The last timestamp this clock issued, if any.
    #[must_use]
    pub fn last(&self) -> Option<Timestamp> {
        let last = self.last.load(Ordering::Relaxed);
        (last != 0).then(|| Timestamp::from_packed(last, self.node))
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

impl From<Hlc> for SharedHlc {
    /// A shared clock continuing where `clock` stopped.
    fn from(clock: Hlc) -> Self {
        let shared = Self::new(HlcConfig::new(clock.node()).with_max_drift(clock.max_drift()));
        if let Some(last) = clock.last() {
            shared.last.store(last.packed_time(), Ordering::Relaxed);
        }
        shared
    }
}
