//! Phi-accrual failure detection, as chitchat 0.13 computes it.
//!
//! Owns, per remote node, a bounded window of heartbeat arrival intervals, and the live and dead
//! sets derived from it. It never reads a clock (every call takes `now`) and never grows without
//! bound: each window holds at most `sampling_window_size` intervals, and a node leaves the
//! detector when it is garbage collected.
//!
//! The detector follows chitchat exactly so that cohort and chitchat nodes agree on timing:
//! phi is the time since the last heartbeat divided by the smoothed mean interval
//! (`(sum + 5 × initial_interval) / (count + 5)`), and a node is live while phi is at most
//! `phi_threshold`. A node with no interval yet is dead.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::NodeId;
use crate::hash::{MapHasher, map_hasher};

/// The weight of the prior (`initial_interval`) in the smoothed mean.
const PRIOR_WEIGHT: u32 = 5;

/// Failure detector settings. The defaults are chitchat's.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FailureDetectorConfig {
    /// A node is live while phi is at most this. Default 8.0.
    pub phi_threshold: f64,
    /// How many arrival intervals each node's window keeps. Default 1,000.
    pub sampling_window_size: usize,
    /// Intervals longer than this are not sampled. Default 10 s.
    pub max_interval: Duration,
    /// The prior mean interval, weighted as 5 samples. Default 5 s.
    pub initial_interval: Duration,
    /// How long a dead node is kept before it is removed (it stops being gossiped after half
    /// of this). Default 24 h.
    pub dead_node_grace_period: Duration,
}

impl Default for FailureDetectorConfig {
    fn default() -> Self {
        Self {
            phi_threshold: 8.0,
            sampling_window_size: 1_000,
            max_interval: Duration::from_secs(10),
            initial_interval: Duration::from_secs(5),
            dead_node_grace_period: Duration::from_secs(24 * 3600),
        }
    }
}

/// One node's heartbeat history. Intervals are kept in microseconds (`u32`, enough for the
/// 10 s `max_interval` and any value up to 71 minutes): four bytes a sample, so a full window of
/// 1,000 samples for each of 1,000 peers is 4 MB.
#[derive(Clone, Debug)]
struct Window {
    intervals: VecDeque<u32>,
    sum_micros: u64,
    last_heartbeat: Option<Instant>,
}

impl Window {
    fn new() -> Self {
        Self {
            intervals: VecDeque::new(),
            sum_micros: 0,
            last_heartbeat: None,
        }
    }

    fn report(&mut self, now: Instant, config: &FailureDetectorConfig) {
        if let Some(last) = self.last_heartbeat {
            let interval = now.saturating_duration_since(last);
            if interval <= config.max_interval {
                let micros = u32::try_from(interval.as_micros()).unwrap_or(u32::MAX);
                if self.intervals.len() >= config.sampling_window_size.max(1) {
                    if let Some(oldest) = self.intervals.pop_front() {
                        self.sum_micros -= u64::from(oldest);
                    }
                }
                self.intervals.push_back(micros);
                self.sum_micros += u64::from(micros);
            }
        }
        self.last_heartbeat = Some(now);
    }

    /// The smoothed mean interval, once there is at least one sample.
    fn mean(&self, config: &FailureDetectorConfig) -> Option<Duration> {
        if self.intervals.is_empty() {
            return None;
        }
        let count = self.intervals.len() as u64;
        let prior = u64::try_from(config.initial_interval.as_micros())
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(PRIOR_WEIGHT));
        let total = self.sum_micros.saturating_add(prior);
        Some(Duration::from_micros(
            total / (count + u64::from(PRIOR_WEIGHT)),
        ))
    }

    fn phi(&self, now: Instant, config: &FailureDetectorConfig) -> Option<f64> {
        let mean = self.mean(config)?;
        let last = self.last_heartbeat?;
        let elapsed = now.saturating_duration_since(last);
        if mean.is_zero() {
            // Heartbeats reported at the same instant: any delay at all is infinitely late,
            // none is on time.
            return Some(if elapsed.is_zero() {
                0.0
            } else {
                f64::INFINITY
            });
        }
        Some(elapsed.as_secs_f64() / mean.as_secs_f64())
    }

    fn clear_samples(&mut self) {
        self.intervals.clear();
        self.sum_micros = 0;
    }
}

/// Tracks heartbeat arrivals and decides which nodes are live.
#[derive(Clone, Debug)]
pub struct FailureDetector {
    config: FailureDetectorConfig,
    windows: HashMap<NodeId, Window, MapHasher>,
    live: HashSet<NodeId, MapHasher>,
    /// Dead nodes and when they were first found dead.
    dead: HashMap<NodeId, Instant, MapHasher>,
}

impl FailureDetector {
    /// A detector that knows no node.
    #[must_use]
    pub fn new(config: FailureDetectorConfig) -> Self {
        Self::with_hash_seed(config, 0)
    }

    /// A detector whose maps hash with `seed`.
    #[must_use]
    pub fn with_hash_seed(config: FailureDetectorConfig, seed: u64) -> Self {
        Self {
            config,
            windows: HashMap::with_hasher(map_hasher(seed)),
            live: HashSet::with_hasher(map_hasher(seed)),
            dead: HashMap::with_hasher(map_hasher(seed)),
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &FailureDetectorConfig {
        &self.config
    }

    /// Records that a newer heartbeat of `node` arrived at `now`.
    pub fn report_heartbeat(&mut self, node: &NodeId, now: Instant) {
        let config = &self.config;
        match self.windows.get_mut(node) {
            Some(window) => window.report(now, config),
            None => {
                let mut window = Window::new();
                window.report(now, config);
                self.windows.insert(node.clone(), window);
            }
        }
    }

    /// Phi of `node` at `now`, if it has at least one sampled interval.
    #[must_use]
    pub fn phi(&self, node: &NodeId, now: Instant) -> Option<f64> {
        self.windows.get(node)?.phi(now, &self.config)
    }

    /// How long `node` may stay silent before it is declared dead, given its history so far
    /// (`phi_threshold × smoothed mean interval`); `None` before its first interval.
    #[must_use]
    pub fn failure_timeout(&self, node: &NodeId) -> Option<Duration> {
        let mean = self.windows.get(node)?.mean(&self.config)?;
        Some(mean.mul_f64(self.config.phi_threshold.max(0.0)))
    }

    /// Re-evaluates `node` at `now` and returns whether it is live.
    ///
    /// A node going dead leaves the live set, is recorded as dead since `now` (only the first
    /// time) and loses its sampled intervals (its last heartbeat time is kept). A dead node
    /// whose phi is back under the threshold is live again.
    pub fn update_liveness(&mut self, node: &NodeId, now: Instant) -> Liveness {
        let alive = match self.windows.get_mut(node) {
            Some(window) => {
                let alive = window
                    .phi(now, &self.config)
                    .is_some_and(|phi| phi <= self.config.phi_threshold);
                if !alive {
                    window.clear_samples();
                }
                alive
            }
            None => {
                self.windows.insert(node.clone(), Window::new());
                false
            }
        };
        if alive {
            if self.live.contains(node) {
                Liveness::Live
            } else {
                self.dead.remove(node);
                self.live.insert(node.clone());
                Liveness::BecameLive
            }
        } else {
            let was_live = self.live.remove(node);
            if !self.dead.contains_key(node) {
                self.dead.insert(node.clone(), now);
            }
            if was_live {
                Liveness::BecameDead
            } else {
                Liveness::Dead
            }
        }
    }

    /// Whether `node` is currently in the live set.
    #[must_use]
    pub fn is_live(&self, node: &NodeId) -> bool {
        self.live.contains(node)
    }

    /// The live nodes, in no particular order.
    pub fn live_nodes(&self) -> impl ExactSizeIterator<Item = &NodeId> + '_ {
        self.live.iter()
    }

    /// The dead nodes, in no particular order, with the time each was found dead.
    pub fn dead_nodes(&self) -> impl ExactSizeIterator<Item = (&NodeId, Instant)> + '_ {
        self.dead.iter().map(|(id, at)| (id, *at))
    }

    /// Whether `node` has been dead for more than half the grace period: it is no longer
    /// gossiped, though still kept.
    #[must_use]
    pub fn is_scheduled_for_deletion(&self, node: &NodeId, now: Instant) -> bool {
        self.dead.get(node).is_some_and(|&since| {
            now.saturating_duration_since(since) > self.config.dead_node_grace_period / 2
        })
    }

    /// Forgets the nodes dead for more than the grace period and returns them, ascending.
    pub fn garbage_collect(&mut self, now: Instant) -> Vec<NodeId> {
        let grace = self.config.dead_node_grace_period;
        let mut expired: Vec<NodeId> = self
            .dead
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) > grace)
            .map(|(id, _)| id.clone())
            .collect();
        expired.sort_unstable();
        for id in &expired {
            self.forget(id);
        }
        expired
    }

    /// Forgets everything about `node`.
    pub fn forget(&mut self, node: &NodeId) {
        self.windows.remove(node);
        self.live.remove(node);
        self.dead.remove(node);
    }
}

/// The result of [`FailureDetector::update_liveness`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Was live and still is.
    Live,
    /// Was not live (dead, or never seen live) and now is.
    BecameLive,
    /// Was live and is now dead.
    BecameDead,
    /// Was not live and still is not.
    Dead,
}

impl Liveness {
    /// Whether the node is live now.
    #[must_use]
    pub fn is_live(self) -> bool {
        matches!(self, Self::Live | Self::BecameLive)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn node(name: &str) -> NodeId {
        NodeId::new(name, 1, SocketAddr::from(([127, 0, 0, 1], 7000)))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_node_needs_an_interval_before_it_is_live() {
        let t0 = Instant::now();
        let mut fd = FailureDetector::new(FailureDetectorConfig::default());
        let a = node("a");
        assert_eq!(fd.update_liveness(&a, t0), Liveness::Dead);
        fd.report_heartbeat(&a, t0);
        assert_eq!(fd.phi(&a, t0), None);
        assert_eq!(fd.update_liveness(&a, t0), Liveness::Dead);
        fd.report_heartbeat(&a, t0 + ms(100));
        assert_eq!(fd.update_liveness(&a, t0 + ms(100)), Liveness::BecameLive);
        assert_eq!(fd.update_liveness(&a, t0 + ms(200)), Liveness::Live);
        assert!(fd.is_live(&a));
        assert_eq!(fd.dead_nodes().count(), 0);
    }

    #[test]
    fn smoothed_mean_and_phi_match_chitchat() {
        let t0 = Instant::now();
        let mut fd = FailureDetector::new(FailureDetectorConfig::default());
        let a = node("a");
        // 10 intervals of 100 ms: mean = (1 s + 5 × 5 s) / (10 + 5) = 26/15 s.
        for i in 0..=10 {
            fd.report_heartbeat(&a, t0 + ms(100 * i));
        }
        let timeout = fd.failure_timeout(&a).unwrap();
        let expected = Duration::from_secs(26).mul_f64(8.0) / 15;
        // Intervals and the mean are kept to the microsecond; × 8 leaves under 10 µs of error.
        assert!(
            timeout.abs_diff(expected) < Duration::from_micros(10),
            "{timeout:?}"
        );
        let phi = fd.phi(&a, t0 + ms(1_000) + ms(2_600)).unwrap();
        assert!((phi - 2.6 / (26.0 / 15.0)).abs() < 1e-5, "{phi}");
    }

    #[test]
    fn silence_longer_than_the_timeout_kills_and_a_heartbeat_revives() {
        let t0 = Instant::now();
        let config = FailureDetectorConfig {
            initial_interval: ms(100),
            ..FailureDetectorConfig::default()
        };
        let mut fd = FailureDetector::new(config);
        let a = node("a");
        for i in 0..=20 {
            fd.report_heartbeat(&a, t0 + ms(100 * i));
        }
        let last = t0 + ms(2_000);
        assert!(fd.update_liveness(&a, last).is_live());
        let timeout = fd.failure_timeout(&a).unwrap();
        assert_eq!(timeout, ms(800));
        // Exactly at the timeout phi == threshold: still live. Just after: dead.
        assert_eq!(fd.update_liveness(&a, last + timeout), Liveness::Live);
        assert_eq!(
            fd.update_liveness(&a, last + timeout + ms(1)),
            Liveness::BecameDead
        );
        assert_eq!(fd.failure_timeout(&a), None, "samples cleared on death");
        let died = last + timeout + ms(1);
        assert_eq!(fd.dead_nodes().collect::<Vec<_>>(), vec![(&a, died)]);
        // One new interval (under max_interval) brings it back.
        fd.report_heartbeat(&a, last + ms(1_500));
        assert_eq!(
            fd.update_liveness(&a, last + ms(1_500)),
            Liveness::BecameLive
        );
        assert_eq!(fd.dead_nodes().count(), 0);
    }

    #[test]
    fn intervals_over_max_interval_are_not_sampled() {
        let t0 = Instant::now();
        let mut fd = FailureDetector::new(FailureDetectorConfig::default());
        let a = node("a");
        fd.report_heartbeat(&a, t0);
        fd.report_heartbeat(&a, t0 + Duration::from_secs(11));
        assert_eq!(fd.phi(&a, t0 + Duration::from_secs(11)), None);
        fd.report_heartbeat(&a, t0 + Duration::from_secs(12));
        assert!(fd.phi(&a, t0 + Duration::from_secs(12)).is_some());
    }

    #[test]
    fn the_window_is_bounded() {
        let t0 = Instant::now();
        let config = FailureDetectorConfig {
            sampling_window_size: 4,
            initial_interval: ms(1_000),
            ..FailureDetectorConfig::default()
        };
        let mut fd = FailureDetector::new(config);
        let a = node("a");
        // Four slow intervals, then four fast ones: only the fast ones remain.
        let mut t = t0;
        fd.report_heartbeat(&a, t);
        for _ in 0..4 {
            t += ms(5_000);
            fd.report_heartbeat(&a, t);
        }
        for _ in 0..4 {
            t += ms(10);
            fd.report_heartbeat(&a, t);
        }
        // (4 × 10 ms + 5 × 1 s) / 9
        assert_eq!(
            fd.failure_timeout(&a).unwrap(),
            (ms(40) + ms(5_000)) * 8 / 9
        );
        assert_eq!(fd.windows[&a].intervals.len(), 4);
    }

    #[test]
    fn dead_nodes_are_scheduled_then_collected() {
        let t0 = Instant::now();
        let config = FailureDetectorConfig {
            dead_node_grace_period: Duration::from_secs(100),
            ..FailureDetectorConfig::default()
        };
        let mut fd = FailureDetector::new(config);
        let a = node("a");
        fd.update_liveness(&a, t0);
        assert!(!fd.is_scheduled_for_deletion(&a, t0 + Duration::from_secs(50)));
        assert!(fd.is_scheduled_for_deletion(&a, t0 + Duration::from_secs(51)));
        assert!(fd.garbage_collect(t0 + Duration::from_secs(100)).is_empty());
        assert_eq!(
            fd.garbage_collect(t0 + Duration::from_secs(101)),
            vec![a.clone()]
        );
        assert_eq!(fd.dead_nodes().count(), 0);
        assert_eq!(fd.phi(&a, t0), None);
    }
}
