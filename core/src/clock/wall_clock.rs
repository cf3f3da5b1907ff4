//! Where a node's wall-clock readings come from: [`WallClock`].
//!
//! Owns the choice of source (the system clock, the system clock moved by a fixed offset, or a
//! function of the application's) and the arithmetic of the offset. It never reads a clock
//! itself: the system clock's reading is a function the caller (a driver) passes to
//! [`WallClock::read_with`], so the core stays free of clock reads.

use std::sync::Arc;
use std::time::SystemTime;

use super::WallTime;

/// A node's source of wall-clock time: the system clock (the default), the system clock moved
/// by a fixed offset, or a function of the application's.
///
/// A driver reads every wall time of a node (the hybrid logical clock's physical part, the
/// timestamps gossip and RPC frames carry, the default generation) from the node's
/// `WallClock`, set with its builder's `wall_clock`. Anything but the system clock is for
/// tests and fault injection: a node whose clock runs more than the drift bound ahead of its
/// peers' has its timestamps refused by them (reported as
/// [`Event::ClockSkew`](crate::Event::ClockSkew)), and its RPC calls are answered with
/// [`StatusCode::ClockSkew`](crate::rpc::StatusCode::ClockSkew).
///
/// Cheap to clone (a function source is shared behind an [`Arc`]).
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use cohort_core::clock::WallClock;
/// use cohort_core::WallTime;
///
/// // The caller passes the system clock in (a driver passes `SystemTime::now`); here a fixed
/// // instant, so the example is deterministic.
/// let system = || UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
///
/// assert_eq!(WallClock::system().read_with(system).as_unix_millis(), 1_700_000_000_000);
///
/// // Two seconds ahead of the system clock, or one behind.
/// let ahead = WallClock::system_offset_millis(2_000);
/// assert_eq!(ahead.read_with(system).as_unix_millis(), 1_700_000_002_000);
/// assert_eq!(ahead.offset_millis(), Some(2_000));
/// let behind = WallClock::system_offset_millis(-1_000);
/// assert_eq!(behind.read_with(system).as_unix_millis(), 1_699_999_999_000);
///
/// // A clock the test moves by hand (the system clock is then never read).
/// let manual = Arc::new(AtomicU64::new(1_000));
/// let hand = Arc::clone(&manual);
/// let clock = WallClock::from_fn(move || {
///     WallTime::from_unix_millis(hand.load(Ordering::Relaxed)).unwrap_or(WallTime::MAX)
/// });
/// assert_eq!(clock.read_with(|| unreachable!()).as_unix_millis(), 1_000);
/// manual.store(5_000, Ordering::Relaxed);
/// assert_eq!(clock.read_with(SystemTime::now).as_unix_millis(), 5_000);
/// assert_eq!(clock.offset_millis(), None);
/// ```
#[derive(Clone, Default)]
pub struct WallClock {
    source: Source,
}

#[derive(Clone, Default)]
enum Source {
    /// The system clock as it is.
    #[default]
    System,
    /// The system clock plus this many milliseconds (negative: behind).
    Offset(i64),
    /// The application's function.
    Function(Arc<dyn Fn() -> WallTime + Send + Sync>),
}

impl WallClock {
    /// The system clock, as it is (the default).
    #[must_use]
    pub const fn system() -> Self {
        Self {
            source: Source::System,
        }
    }

    /// The system clock moved `offset` milliseconds ahead (behind when negative). Readings
    /// saturate at the Unix epoch and at [`WallTime::MAX`]. An offset of 0 is the system clock.
    ///
    /// For fault tests: a node whose clock is more than the drift bound (500 ms by default)
    /// ahead of its peers' is refused by them.
    #[must_use]
    pub const fn system_offset_millis(offset: i64) -> Self {
        Self {
            source: if offset == 0 {
                Source::System
            } else {
                Source::Offset(offset)
            },
        }
    }

    /// Readings from `read`, called for every reading (it must be cheap, and never block):
    /// a clock a test moves by hand, or one of the application's. The system clock is never
    /// read.
    #[must_use]
    pub fn from_fn(read: impl Fn() -> WallTime + Send + Sync + 'static) -> Self {
        Self {
            source: Source::Function(Arc::new(read)),
        }
    }

    /// The offset from the system clock, in milliseconds: `Some(0)` for the system clock,
    /// `None` for a function's readings.
    #[must_use]
    pub const fn offset_millis(&self) -> Option<i64> {
        match self.source {
            Source::System => Some(0),
            Source::Offset(offset) => Some(offset),
            Source::Function(_) => None,
        }
    }

    /// Whether this is the system clock as it is.
    #[must_use]
    pub const fn is_system(&self) -> bool {
        matches!(self.source, Source::System)
    }

    /// A reading. `system` reads the system clock (a driver passes `SystemTime::now`); it is
    /// called only by the system sources, at most once.
    #[must_use]
    pub fn read_with(&self, system: impl FnOnce() -> SystemTime) -> WallTime {
        match &self.source {
            Source::System => WallTime::saturating_from(system()),
            Source::Offset(offset) => {
                WallTime::saturating_from(system()).saturating_offset_millis(*offset)
            }
            Source::Function(read) => read(),
        }
    }
}

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::System => f.write_str("WallClock::System"),
            Source::Offset(offset) => write!(f, "WallClock::SystemOffset({offset:+} ms)"),
            Source::Function(_) => f.write_str("WallClock::Function"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(millis: u64) -> impl Fn() -> SystemTime {
        move || UNIX_EPOCH + Duration::from_millis(millis)
    }

    #[test]
    fn offsets_move_the_system_reading_and_saturate() {
        assert_eq!(
            WallClock::system_offset_millis(250)
                .read_with(at(1_000))
                .as_unix_millis(),
            1_250
        );
        assert_eq!(
            WallClock::system_offset_millis(-250)
                .read_with(at(1_000))
                .as_unix_millis(),
            750
        );
        // Behind the epoch reads as the epoch; beyond the range as the last representable time.
        assert_eq!(
            WallClock::system_offset_millis(-5_000).read_with(at(1_000)),
            WallTime::UNIX_EPOCH
        );
        assert_eq!(
            WallClock::system_offset_millis(i64::MAX).read_with(at(1_000)),
            WallTime::MAX
        );
        assert_eq!(
            WallClock::system_offset_millis(i64::MIN).read_with(at(1_000)),
            WallTime::UNIX_EPOCH
        );
    }

    #[test]
    fn sources_say_what_they_are() {
        assert!(WallClock::default().is_system());
        assert!(WallClock::system_offset_millis(0).is_system());
        assert!(!WallClock::system_offset_millis(1).is_system());
        assert_eq!(WallClock::system().offset_millis(), Some(0));
        let f = WallClock::from_fn(|| WallTime::UNIX_EPOCH);
        assert_eq!(f.offset_millis(), None);
        assert!(!f.is_system());
        assert_eq!(
            format!("{:?}", WallClock::system_offset_millis(-3)),
            "WallClock::SystemOffset(-3 ms)"
        );
        assert_eq!(format!("{f:?}"), "WallClock::Function");
    }

    #[test]
    fn a_function_clock_never_reads_the_system_clock() {
        let f = WallClock::from_fn(|| WallTime::from_unix_millis(42).unwrap());
        let g = f.clone();
        assert_eq!(
            g.read_with(|| panic!("read the system clock"))
                .as_unix_millis(),
            42
        );
    }
}
