//! Reports of bad input at a bounded rate: one event per sender and kind per interval, with the
//! count of those held back since; every occurrence counted.
//!
//! Owns [`Diagnostics`] (the counts a node exposes) and the limiter the membership machine runs
//! its diagnostic events through. Its memory is bounded: senders beyond a fixed number share one
//! bucket per kind, so a flood from many (spoofed) addresses costs no more than one from a few.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Counts of bad input since the node started (every occurrence, reported or not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Diagnostics {
    /// Messages from nodes of another cluster (a `Syn` with another cluster id, or a
    /// `BadCluster` answer).
    pub bad_cluster: u64,
    /// Timestamps the clock refused (too far ahead).
    pub clock_skew: u64,
    /// Datagrams dropped because their authentication tag was missing or wrong (a node with a
    /// keyring).
    pub unauthenticated: u64,
    /// Messages part of which was not stored because it broke a bound of
    /// [`StateLimits`](super::StateLimits) (new members past the member bounds, a member's
    /// delta past its size bounds); each message counts once.
    pub over_limit: u64,
    /// Datagrams of the other membership protocol (a chitchat-mode peer of a cohort-mode
    /// node, or the other way round), refused.
    pub protocol_mismatch: u64,
    /// Occurrences not reported as an event of their own (counted in the next event of the
    /// same sender and kind instead, or lost with its bucket).
    pub suppressed: u64,
}

/// The kinds of bad input that are reported as events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum DiagnosticKind {
    BadCluster,
    ClockSkew,
    Unauthenticated,
    OverLimit,
    ProtocolMismatch,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    reported_at: Instant,
    held_back: u64,
}

impl Bucket {
    /// Whether to report now (then with how many were held back before it).
    fn admit(&mut self, now: Instant, interval: Duration) -> Option<u64> {
        if now.saturating_duration_since(self.reported_at) >= interval {
            let held_back = std::mem::take(&mut self.held_back);
            self.reported_at = now;
            Some(held_back)
        } else {
            self.held_back += 1;
            None
        }
    }
}

/// The number of (sender, kind) buckets kept; more senders share an overflow bucket per kind.
pub(crate) const MAX_DIAGNOSTIC_SENDERS: usize = 1_024;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct DiagnosticLimiter {
    interval: Duration,
    buckets: HashMap<(SocketAddr, DiagnosticKind), Bucket>,
    overflow: HashMap<DiagnosticKind, Bucket>,
    last_purge: Option<Instant>,
    counts: Diagnostics,
}

impl DiagnosticLimiter {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            buckets: HashMap::new(),
            overflow: HashMap::new(),
            last_purge: None,
            counts: Diagnostics::default(),
        }
    }

    pub(crate) fn counts(&self) -> Diagnostics {
        self.counts
    }

    /// Counts one occurrence of `kind` from `from` at `now`. `Some(held_back)` when it is to be
    /// reported as an event (carrying how many of the same were held back since the last), or
    /// `None` when it is held back.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        from: SocketAddr,
        kind: DiagnosticKind,
    ) -> Option<u64> {
        match kind {
            DiagnosticKind::BadCluster => self.counts.bad_cluster += 1,
            DiagnosticKind::ClockSkew => self.counts.clock_skew += 1,
            DiagnosticKind::Unauthenticated => self.counts.unauthenticated += 1,
            DiagnosticKind::OverLimit => self.counts.over_limit += 1,
            DiagnosticKind::ProtocolMismatch => self.counts.protocol_mismatch += 1,
        }
        let interval = self.interval;
        let admitted = if let Some(bucket) = self.buckets.get_mut(&(from, kind)) {
            bucket.admit(now, interval)
        } else {
            if self.buckets.len() >= MAX_DIAGNOSTIC_SENDERS {
                self.purge(now);
            }
            if self.buckets.len() < MAX_DIAGNOSTIC_SENDERS {
                self.buckets.insert(
                    (from, kind),
                    Bucket {
                        reported_at: now,
                        held_back: 0,
                    },
                );
                Some(0)
            } else {
                match self.overflow.get_mut(&kind) {
                    Some(bucket) => bucket.admit(now, interval),
                    None => {
                        self.overflow.insert(
                            kind,
                            Bucket {
                                reported_at: now,
                                held_back: 0,
                            },
                        );
                        Some(0)
                    }
                }
            }
        };
        if admitted.is_none() {
            self.counts.suppressed += 1;
        }
        admitted
    }

    /// Drops the buckets that hold nothing back and whose interval is over (at most once an
    /// interval: a flood of new senders does not make every datagram scan the table).
    fn purge(&mut self, now: Instant) {
        if self
            .last_purge
            .is_some_and(|at| now.saturating_duration_since(at) < self.interval)
        {
            return;
        }
        self.last_purge = Some(now);
        let interval = self.interval;
        self.buckets.retain(|_, bucket| {
            bucket.held_back > 0 || now.saturating_duration_since(bucket.reported_at) < interval
        });
    }

    /// How many (sender, kind) buckets are kept (for tests of the bound).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.buckets.len() + self.overflow.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 7000))
    }

    #[test]
    fn one_report_per_sender_and_kind_per_interval_with_the_count_held_back() {
        let start = Instant::now();
        let mut limiter = DiagnosticLimiter::new(Duration::from_secs(1));
        let ms = |n: u64| start + Duration::from_millis(n);
        assert_eq!(
            limiter.admit(ms(0), addr(1), DiagnosticKind::BadCluster),
            Some(0)
        );
        for i in 1..=999 {
            assert_eq!(
                limiter.admit(ms(i), addr(1), DiagnosticKind::BadCluster),
                None
            );
        }
        // Another kind and another sender have buckets of their own.
        assert_eq!(
            limiter.admit(ms(5), addr(1), DiagnosticKind::ClockSkew),
            Some(0)
        );
        assert_eq!(
            limiter.admit(ms(5), addr(2), DiagnosticKind::BadCluster),
            Some(0)
        );
        // The interval is over: reported, with the 999 held back.
        assert_eq!(
            limiter.admit(ms(1_000), addr(1), DiagnosticKind::BadCluster),
            Some(999)
        );
        assert_eq!(
            limiter.admit(ms(1_001), addr(1), DiagnosticKind::BadCluster),
            None
        );
        let counts = limiter.counts();
        assert_eq!(counts.bad_cluster, 1_003);
        assert_eq!(counts.clock_skew, 1);
        assert_eq!(counts.suppressed, 1_000);
    }

    #[test]
    fn many_senders_share_an_overflow_bucket_and_memory_stays_bounded() {
        let start = Instant::now();
        let mut limiter = DiagnosticLimiter::new(Duration::from_secs(1));
        let mut reported = 0;
        for i in 0..50_000 {
            if limiter
                .admit(start, addr(i), DiagnosticKind::ClockSkew)
                .is_some()
            {
                reported += 1;
            }
        }
        assert!(limiter.tracked() <= MAX_DIAGNOSTIC_SENDERS + 2);
        // One report per tracked sender, and one for all the others together.
        assert_eq!(reported, MAX_DIAGNOSTIC_SENDERS + 1);
        // Later, idle buckets make room for new senders again.
        let later = start + Duration::from_secs(2);
        assert_eq!(
            limiter.admit(later, addr(99_999), DiagnosticKind::ClockSkew),
            Some(0)
        );
        assert!(limiter.tracked() <= MAX_DIAGNOSTIC_SENDERS + 2);
    }
}
