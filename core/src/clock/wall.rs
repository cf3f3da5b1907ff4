//! Wall-clock readings as values.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{ClockError, MAX_PHYSICAL_MILLIS};

/// A wall-clock reading: milliseconds since the Unix epoch, within the range a [`Timestamp`]
/// can hold.
///
/// The core never reads a clock; drivers read the system clock (once per batch of inputs is
/// enough) and pass the value in. Tests pass any value they like.
///
/// ```
/// use cohort_core::WallTime;
/// let w = WallTime::from_unix_millis(1_700_000_000_000)?;
/// assert_eq!(w.as_unix_millis(), 1_700_000_000_000);
/// assert!(WallTime::from_unix_millis(1 << 48).is_err());
/// # Ok::<(), cohort_core::ClockError>(())
/// ```
///
/// [`Timestamp`]: super::Timestamp
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WallTime(u64);

impl WallTime {
    /// The Unix epoch.
    pub const UNIX_EPOCH: Self = Self(0);

    /// The largest representable wall time.
    pub const MAX: Self = Self(MAX_PHYSICAL_MILLIS);

    /// A reading of `millis` milliseconds since the Unix epoch.
    ///
    /// Fails with [`ClockError::WallTimeOutOfRange`] beyond 2^48 - 1 ms (the year 10889).
    pub const fn from_unix_millis(millis: u64) -> Result<Self, ClockError> {
        if millis > MAX_PHYSICAL_MILLIS {
            Err(ClockError::WallTimeOutOfRange { millis })
        } else {
            Ok(Self(millis))
        }
    }

    /// A reading of `since_epoch` after the Unix epoch, truncated to whole milliseconds.
    pub fn from_unix_duration(since_epoch: Duration) -> Result<Self, ClockError> {
        Self::from_unix_millis(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    }

    /// A system-time value (read by the caller, typically `SystemTime::now()`), clamped into
    /// range: a time before the Unix epoch reads as the epoch, one beyond the year 10889 as
    /// [`WallTime::MAX`]. What a driver passes to the core when its clock must never fail.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime, UNIX_EPOCH};
    /// use cohort_core::WallTime;
    ///
    /// let now = WallTime::saturating_from(SystemTime::now());
    /// assert!(now > WallTime::UNIX_EPOCH);
    /// let before_1970 = UNIX_EPOCH - Duration::from_secs(1);
    /// assert_eq!(WallTime::saturating_from(before_1970), WallTime::UNIX_EPOCH);
    /// ```
    #[must_use]
    pub fn saturating_from(t: SystemTime) -> Self {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self::from_unix_duration(since).unwrap_or(Self::MAX)
    }

    /// Milliseconds since the Unix epoch.
    #[must_use]
    pub const fn as_unix_millis(self) -> u64 {
        self.0
    }

    /// This reading moved forward by `by` (saturating at [`WallTime::MAX`]).
    #[must_use]
    pub fn saturating_add(self, by: Duration) -> Self {
        let millis = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(millis).min(MAX_PHYSICAL_MILLIS))
    }

    /// This reading moved by `millis` milliseconds, forward when positive, back when negative
    /// (saturating at [`WallTime::UNIX_EPOCH`] and [`WallTime::MAX`]).
    ///
    /// ```
    /// use cohort_core::WallTime;
    /// let w = WallTime::from_unix_millis(1_000)?;
    /// assert_eq!(w.saturating_offset_millis(500).as_unix_millis(), 1_500);
    /// assert_eq!(w.saturating_offset_millis(-2_000), WallTime::UNIX_EPOCH);
    /// # Ok::<(), cohort_core::ClockError>(())
    /// ```
    #[must_use]
    pub const fn saturating_offset_millis(self, millis: i64) -> Self {
        let moved = self.0.saturating_add_signed(millis);
        if moved > MAX_PHYSICAL_MILLIS {
            Self::MAX
        } else {
            Self(moved)
        }
    }
}

impl TryFrom<SystemTime> for WallTime {
    type Error = ClockError;

    /// Converts a system-time value (read by the caller). Times before the Unix epoch are an
    /// error, reported as out of range with `millis = 0`.
    fn try_from(t: SystemTime) -> Result<Self, ClockError> {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self::from_unix_duration(d),
            Err(_) => Err(ClockError::WallTimeOutOfRange { millis: 0 }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_enforced() {
        assert_eq!(
            WallTime::from_unix_millis(MAX_PHYSICAL_MILLIS).unwrap(),
            WallTime::MAX
        );
        assert_eq!(
            WallTime::from_unix_millis(MAX_PHYSICAL_MILLIS + 1),
            Err(ClockError::WallTimeOutOfRange {
                millis: MAX_PHYSICAL_MILLIS + 1
            })
        );
        assert!(WallTime::from_unix_duration(Duration::MAX).is_err());
        assert_eq!(
            WallTime::MAX.saturating_add(Duration::from_secs(1)),
            WallTime::MAX
        );
    }

    #[test]
    fn converts_system_time_values() {
        let t = UNIX_EPOCH + Duration::from_millis(1_234_567);
        assert_eq!(WallTime::try_from(t).unwrap().as_unix_millis(), 1_234_567);
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert!(matches!(
            WallTime::try_from(before),
            Err(ClockError::WallTimeOutOfRange { .. })
        ));
    }
}
