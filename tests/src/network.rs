//! The virtual network: which links are cut, and what happens to each datagram sent.
//!
//! Owns the run's random number generator (seeded from the run seed) and the set of blocked
//! directed links. It decides a datagram's fate (lost, delivered once or twice, and when); it
//! never holds datagrams or nodes (the simulator's queue does).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::config::NetworkConfig;

/// What becomes of one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// The link is cut.
    Blocked,
    /// Lost at random.
    Lost,
    /// Delivered after `first` (nanoseconds of latency), and again after `duplicate` if set.
    Delivered { first: u64, duplicate: Option<u64> },
}

/// Links, randomness and the latency model.
#[derive(Debug)]
pub(crate) struct Network {
    config: NetworkConfig,
    rng: Xoshiro256PlusPlus,
    /// Blocked directed links `(from, to)`.
    blocked: HashSet<(usize, usize)>,
    /// Unordered pairs `(low, high)` that were ever cut in either direction.
    ever_cut: HashSet<(usize, usize)>,
    /// Extra loss on what a slot receives.
    ingress_loss: HashMap<usize, f64>,
}

impl Network {
    pub(crate) fn new(config: NetworkConfig, seed: u64) -> Self {
        Self {
            config,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            blocked: HashSet::new(),
            ever_cut: HashSet::new(),
            ingress_loss: HashMap::new(),
        }
    }

    /// Sets the loss probability of what slot `to` receives, beside the network's own
    /// (0: none).
    pub(crate) fn set_ingress_loss(&mut self, to: usize, loss: f64) {
        if loss > 0.0 {
            self.ingress_loss.insert(to, loss);
        } else {
            self.ingress_loss.remove(&to);
        }
    }

    pub(crate) fn config(&self) -> &NetworkConfig {
        &self.config
    }

    pub(crate) fn set_config(&mut self, config: NetworkConfig) {
        self.config = config;
    }

    /// A uniform number in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform number of nanoseconds in `[0, max]`.
    pub(crate) fn nanos_up_to(&mut self, max: Duration) -> u64 {
        let max = nanos(max);
        if max == 0 {
            return 0;
        }
        ((u128::from(self.rng.next_u64()) * (u128::from(max) + 1)) >> 64) as u64
    }

    fn latency(&mut self) -> u64 {
        let jitter = self.config.jitter;
        nanos(self.config.base_latency) + self.nanos_up_to(jitter)
    }

    /// The fate of a datagram sent now from slot `from` to slot `to`.
    pub(crate) fn route(&mut self, from: usize, to: usize) -> Fate {
        if self.is_blocked(from, to) {
            return Fate::Blocked;
        }
        if self.config.loss > 0.0 && self.unit() < self.config.loss {
            return Fate::Lost;
        }
        if let Some(&loss) = self.ingress_loss.get(&to) {
            if self.unit() < loss {
                return Fate::Lost;
            }
        }
        let first = self.latency();
        let duplicate = if self.config.duplication > 0.0 && self.unit() < self.config.duplication {
            Some(self.latency())
        } else {
            None
        };
        Fate::Delivered { first, duplicate }
    }

    pub(crate) fn is_blocked(&self, from: usize, to: usize) -> bool {
        !self.blocked.is_empty() && self.blocked.contains(&(from, to))
    }

    pub(crate) fn cut(&mut self, from: usize, to: usize) {
        if from == to {
            return;
        }
        self.blocked.insert((from, to));
        self.ever_cut.insert((from.min(to), from.max(to)));
    }

    pub(crate) fn heal(&mut self, from: usize, to: usize) {
        self.blocked.remove(&(from, to));
    }

    pub(crate) fn heal_all(&mut self) {
        self.blocked.clear();
    }

    pub(crate) fn blocked_links(&self) -> usize {
        self.blocked.len()
    }

    /// Whether a link between `a` and `b` was ever cut, in either direction.
    pub(crate) fn ever_cut(&self, a: usize, b: usize) -> bool {
        !self.ever_cut.is_empty() && self.ever_cut.contains(&(a.min(b), a.max(b)))
    }
}

/// A duration in nanoseconds (saturating).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_stays_in_bounds_and_loss_is_near_its_rate() {
        let config = NetworkConfig {
            base_latency: Duration::from_millis(2),
            jitter: Duration::from_millis(3),
            loss: 0.25,
            duplication: 0.1,
        };
        let mut net = Network::new(config, 42);
        let (mut lost, mut dup) = (0, 0);
        for _ in 0..10_000 {
            match net.route(0, 1) {
                Fate::Lost => lost += 1,
                Fate::Delivered { first, duplicate } => {
                    assert!((2_000_000..=5_000_000).contains(&first));
                    if let Some(d) = duplicate {
                        assert!((2_000_000..=5_000_000).contains(&d));
                        dup += 1;
                    }
                }
                Fate::Blocked => unreachable!("no cut link"),
            }
        }
        assert!((2_200..2_800).contains(&lost), "{lost}");
        assert!((500..1_000).contains(&dup), "{dup}");
    }

    #[test]
    fn cuts_are_directed_and_remembered() {
        let mut net = Network::new(NetworkConfig::default(), 1);
        net.cut(1, 2);
        assert_eq!(net.route(1, 2), Fate::Blocked);
        assert!(matches!(net.route(2, 1), Fate::Delivered { .. }));
        net.heal(1, 2);
        assert!(matches!(net.route(1, 2), Fate::Delivered { .. }));
        assert!(net.ever_cut(2, 1));
        assert!(!net.ever_cut(0, 1));
    }
}
