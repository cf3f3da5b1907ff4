//! The hybrid logical clock.
//!
//! Owns [`Timestamp`], [`WallTime`], [`WallClock`] (where a node's wall-clock readings come
//! from), [`NodeTag`] and the two clocks: [`Hlc`] (`&mut self`, for
//! state machines that own their clock) and [`SharedHlc`] (`&self`, one atomic word, for
//! drivers that read the clock from many tasks). Both follow Kulkarni et al.'s hybrid logical
//! clock: 48 bits of physical milliseconds and a 16-bit logical counter, ordered together,
//! with a node tag as the final tie-break so timestamps are unique across nodes.
//!
//! This module never reads a clock: the wall time is always an argument (a [`WallClock`] is
//! given the system clock's reading function by its caller).
//!
//! # Guarantees
//!
//! - **Monotonic**: each clock's results strictly increase, whatever the wall clock does
//!   (stall, repeat, step backwards).
//! - **Causal**: [`Hlc::observe`] returns a timestamp greater than the remote one and than every
//!   earlier local one, so every later local event orders after the received message.
//! - **Close to physical time**: the physical part is never below the wall time given, and
//!   exceeds it only by what was observed from peers (at most `max_drift` ahead of the wall
//!   time at the moment of receipt) or by counter carries (1 ms per 65,536 events in one ms).
//! - **Bounded drift**: a remote timestamp more than `max_drift` ahead of the local wall time
//!   is rejected with [`ClockError::DriftExceeded`], and the clock is left exactly as it was.
//!   The bound is inclusive: a remote exactly `max_drift` ahead is accepted.
//! - **No overflow panics**: when the counter is full the next timestamp carries into the
//!   physical part. The only failure is reaching the end of the 48-bit range (the year 10889),
//!   reported as [`ClockError::Exhausted`].
//!
//! Observing a timestamp that carries the local node's own tag is allowed (it is treated like
//! any other, and can only move the clock forward).

use std::time::Duration;

mod hlc;
mod shared;
mod timestamp;
mod wall;
mod wall_clock;

pub use hlc::{Hlc, HlcConfig};
pub use shared::SharedHlc;
pub use timestamp::{ArchivedNodeTag, ArchivedTimestamp, NodeTag, ParseTimestampError, Timestamp};
pub use wall::WallTime;
pub use wall_clock::WallClock;

/// The default bound on how far ahead of the local wall clock a remote timestamp may be.
pub const DEFAULT_MAX_DRIFT: Duration = Duration::from_millis(500);

/// Bits of the logical counter in a packed time value.
const COUNTER_BITS: u32 = 16;

/// The largest physical time a timestamp can hold, in milliseconds since the Unix epoch.
pub const MAX_PHYSICAL_MILLIS: u64 = (1 << 48) - 1;

/// The largest packed time value a clock will hand out by its own step.
///
/// The shared clock increments with `fetch_add` after checking this bound, so concurrent
/// callers can step a little past it; the headroom below `u64::MAX` (2^32 steps) makes a
/// wrap impossible.
const LIMIT: u64 = u64::MAX - (1 << 32);

/// Why a clock operation failed. Every error leaves the clock exactly as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClockError {
    /// A wall time beyond what a timestamp can hold (48 bits of milliseconds).
    #[error("wall time {millis} ms is beyond the largest representable time ({max} ms)", max = MAX_PHYSICAL_MILLIS)]
    WallTimeOutOfRange {
        /// The offending wall time, in milliseconds since the Unix epoch (saturated to `u64`).
        millis: u64,
    },
    /// A remote timestamp was further ahead of the local wall clock than the configured
    /// maximum drift. The clock did not move.
    #[error(
        "remote timestamp at {remote_millis} ms is {} ms ahead of the local wall clock ({wall_millis} ms), more than the maximum drift of {max_drift_millis} ms",
        remote_millis.saturating_sub(*wall_millis)
    )]
    DriftExceeded {
        /// The remote timestamp's physical time.
        remote_millis: u64,
        /// The local wall time it was compared with.
        wall_millis: u64,
        /// The configured maximum drift.
        max_drift_millis: u64,
    },
    /// The clock reached the end of its 48-bit physical range and cannot advance further.
    #[error("the clock reached the end of its range")]
    Exhausted,
}

/// The packed time value (`millis << 16`) of a wall time, the counter at zero.
#[inline]
const fn packed_wall(wall: WallTime) -> u64 {
    wall.as_unix_millis() << COUNTER_BITS
}

/// One local or send event: `max(last + 1, wall)` in packed form.
///
/// A counter at its maximum carries into the milliseconds, which keeps the order and moves the
/// physical part at most 1 ms ahead per 65,536 events.
#[inline]
fn step_local(last: u64, wall: WallTime) -> Result<u64, ClockError> {
    let next = (last + 1).max(packed_wall(wall));
    if next > LIMIT {
        Err(ClockError::Exhausted)
    } else {
        Ok(next)
    }
}

/// Checks a remote timestamp against the drift bound.
#[inline]
fn check_drift(remote: Timestamp, wall: WallTime, max_drift_millis: u64) -> Result<(), ClockError> {
    let remote_millis = remote.millis();
    let wall_millis = wall.as_unix_millis();
    if remote_millis > wall_millis.saturating_add(max_drift_millis) {
        Err(ClockError::DriftExceeded {
            remote_millis,
            wall_millis,
            max_drift_millis,
        })
    } else {
        Ok(())
    }
}

/// One receive event: `max(last + 1, remote + 1, wall)` in packed form.
///
/// This is the paper's receive rule written on packed values: when the physical parts tie the
/// counter becomes one more than the larger counter, when the wall clock is ahead of both the
/// counter resets to zero.
#[inline]
fn step_receive(last: u64, remote: Timestamp, wall: WallTime) -> Result<u64, ClockError> {
    let next = (last + 1)
        .max(remote.packed_time().saturating_add(1))
        .max(packed_wall(wall));
    if next > LIMIT {
        Err(ClockError::Exhausted)
    } else {
        Ok(next)
    }
}

/// Milliseconds in `d`, saturated to `u64`.
fn duration_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
