//! When a driver may try again to connect to a peer it failed to reach: a back-off that
//! starts at [`Backoff::FIRST`] and doubles to [`Backoff::MAX`], with the reason of the last
//! failure for the callers refused meanwhile. The same rule for every transport.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::status::{Status, StatusCode};

/// The state of a peer that could not be reached. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    retry_at: Instant,
    delay: Duration,
    why: String,
}

impl Backoff {
    /// The delay after a first failure.
    pub const FIRST: Duration = Duration::from_millis(50);
    /// The longest delay.
    pub const MAX: Duration = Duration::from_secs(5);

    /// The back-off after a failure at `now` (`previous`: the back-off it followed, if the
    /// peer had failed before), for the reason `why`.
    #[must_use]
    pub fn after(previous: Option<&Self>, now: Instant, why: impl Into<String>) -> Self {
        let delay = previous.map_or(Duration::ZERO, |b| b.delay * 2);
        let delay = delay.clamp(Self::FIRST, Self::MAX);
        Self {
            retry_at: now + delay,
            delay,
            why: why.into(),
        }
    }

    /// `Ok` once a new attempt to reach `addr` may be made at `now`; before that, the
    /// [`StatusCode::Unavailable`] the caller gets, with the last failure's reason.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn check(&self, addr: SocketAddr, now: Instant) -> Result<(), Status> {
        if now < self.retry_at {
            return Err(Status::new(
                StatusCode::Unavailable,
                format!("{addr} failed recently ({}); retrying later", self.why),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_from_the_first_to_the_maximum_and_refuses_meanwhile() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 7000));
        let now = Instant::now();
        let first = Backoff::after(None, now, "refused");
        assert_eq!(first.delay, Backoff::FIRST);
        let status = first.check(addr, now).unwrap_err();
        assert_eq!(status.code, StatusCode::Unavailable);
        assert!(status.message.contains("refused"), "{status}");
        assert!(first.check(addr, now + Backoff::FIRST).is_ok());
        let second = Backoff::after(Some(&first), now, "timed out");
        assert_eq!(second.delay, Backoff::FIRST * 2);
        let mut last = second;
        for _ in 0..20 {
            last = Backoff::after(Some(&last), now, "down");
        }
        assert_eq!(last.delay, Backoff::MAX);
    }
}
