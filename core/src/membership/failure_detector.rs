//! Phi-accrual failure detection, as chitchat 0.13 computes it.
//!
//! Owns, per remote node, a bounded window of heartbeat arrival intervals and whether the node
//! is live or dead ([`NodeDetector`]), and a keyed collection of them ([`FailureDetector`]). It
//! never reads a clock (every call takes `now`) and never grows without bound: each window holds
//! at most `sampling_window_size` intervals, and a node leaves the detector when it is garbage
//! collected.
//!
//! The detector follows chitchat exactly so that cohort and chitchat nodes agree on timing:
//! phi is the time since the last heartbeat divided by the smoothed mean interval
//! (`(sum + 5 × initial_interval) / (count + 5)`), and a node is live while phi is at most
//! `phi_threshold`. A node with no interval yet is dead.
//!
//! The membership machine keeps one [`NodeDetector`] beside each node's state, so that a
//! heartbeat costs no lookup of its own; [`FailureDetector`] is the same logic keyed by
//! [`NodeId`], for embedders that track nodes themselves.

use std::collections::{HashMap, VecDeque};
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

/// One node's failure detection: its heartbeat history and whether it is live.
///
/// Intervals are kept in microseconds (`u32`, enough for the 10 s `max_interval` and any value
/// up to 71 minutes): four bytes a sample, so a full window of 1,000 samples for each of 1,000
/// peers is 4 MB. A new detector is neither live nor dead until its first
/// [`update_liveness`](Self::update_liveness).
#[derive(Clone, Debug, Default)]
pub struct NodeDetector {
    intervals: VecDeque<u32>,
    sum_micros: u64,
    last_heartbeat: Option<Instant>,
    live: bool,
    /// When it was first found dead (kept until it is live again).
    dead_since: Option<Instant>,
}

impl NodeDetector {
    /// A detector that heard no heartbeat yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that a newer heartbeat arrived at `now`.
    pub fn report_heartbeat(&mut self, now: Instant, config: &FailureDetectorConfig) {
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

    /// Phi at `now`, if at least one interval was sampled.
    #[must_use]
    pub fn phi(&self, now: Instant, config: &FailureDetectorConfig) -> Option<f64> {
        Some(Self::phi_of(self.mean(config)?, self.last_heartbeat?, now))
    }

    /// Whether phi at `now` is at most the threshold, and the silence deadline: both from one
    /// computation of the mean (`(false, None)` before the first interval).
    fn assess(&self, now: Instant, config: &FailureDetectorConfig) -> (bool, Option<Instant>) {
        let (Some(mean), Some(last)) = (self.mean(config), self.last_heartbeat) else {
            return (false, None);
        };
        let on_time = Self::phi_of(mean, last, now) <= config.phi_threshold;
        (
            on_time,
            Some(last + mean.mul_f64(config.phi_threshold.max(0.0))),
        )
    }

    fn phi_of(mean: Duration, last: Instant, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(last);
        if mean.is_zero() {
            // Heartbeats reported at the same instant: any delay at all is infinitely late,
            // none is on time.
            return if elapsed.is_zero() {
                0.0
            } else {
                f64::INFINITY
            };
        }
        elapsed.as_secs_f64() / mean.as_secs_f64()
    }

    /// Whether phi at `now` is at most the threshold.
    #[must_use]
    pub fn is_on_time(&self, now: Instant, config: &FailureDetectorConfig) -> bool {
        self.phi(now, config)
            .is_some_and(|phi| phi <= config.phi_threshold)
    }

    /// How long the node may stay silent before it is declared dead, given its history so far
    /// (`phi_threshold × smoothed mean interval`); `None` before its first interval.
    #[must_use]
    pub fn failure_timeout(&self, config: &FailureDetectorConfig) -> Option<Duration> {
        let mean = self.mean(config)?;
        Some(mean.mul_f64(config.phi_threshold.max(0.0)))
    }

    /// The instant after which, without a newer heartbeat, the node's phi exceeds the
    /// threshold (`last heartbeat + failure timeout`); `None` before its first interval. A
    /// newer heartbeat only moves it later.
    #[must_use]
    pub fn silence_deadline(&self, config: &FailureDetectorConfig) -> Option<Instant> {
        Some(self.last_heartbeat? + self.failure_timeout(config)?)
    }

    /// The number of sampled intervals held.
    #[must_use]
    pub fn samples(&self) -> usize {
        self.intervals.len()
    }

    /// Re-evaluates the node at `now`.
    ///
    /// A node going dead stops being live, is recorded as dead since `now` (only the first
    /// time) and loses its sampled intervals (its last heartbeat time is kept). A dead node
    /// whose phi is back under the threshold is live again.
    pub fn update_liveness(&mut self, now: Instant, config: &FailureDetectorConfig) -> Liveness {
        self.update(now, config).0
    }

    /// [`update_liveness`](Self::update_liveness), with the node's
    /// [`silence_deadline`](Self::silence_deadline) afterwards when it is live (the mean is
    /// computed once for both).
    pub fn update(
        &mut self,
        now: Instant,
        config: &FailureDetectorConfig,
    ) -> (Liveness, Option<Instant>) {
        let (on_time, deadline) = self.assess(now, config);
        let liveness = self.apply(on_time, now);
        (liveness, deadline.filter(|_| on_time))
    }

    fn apply(&mut self, on_time: bool, now: Instant) -> Liveness {
        if on_time {
            self.dead_since = None;
            if std::mem::replace(&mut self.live, true) {
                Liveness::Live
            } else {
                Liveness::BecameLive
            }
        } else {
            self.intervals.clear();
            self.sum_micros = 0;
            self.dead_since.get_or_insert(now);
            if std::mem::replace(&mut self.live, false) {
                Liveness::BecameDead
            } else {
                Liveness::Dead
            }
        }
    }

    /// Whether the node is live (as of the last [`update_liveness`](Self::update_liveness)).
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// When the node was found dead, if it is dead.
    #[must_use]
    pub fn dead_since(&self) -> Option<Instant> {
        self.dead_since
    }

    /// Whether the node has been dead for more than half the grace period: it is no longer
    /// gossiped, though still kept.
    #[must_use]
    pub fn is_scheduled_for_deletion(&self, now: Instant, config: &FailureDetectorConfig) -> bool {
        self.dead_since.is_some_and(|since| {
            now.saturating_duration_since(since) > config.dead_node_grace_period / 2
        })
    }

    /// Whether the node has been dead for the whole grace period: it is to be removed (at
    /// `now >= dead_since + grace`, chitchat's rule).
    #[must_use]
    pub fn is_expired(&self, now: Instant, config: &FailureDetectorConfig) -> bool {
        self.dead_since.is_some_and(|since| {
            now.saturating_duration_since(since) >= config.dead_node_grace_period
        })
    }
}

/// Tracks heartbeat arrivals of many nodes, keyed by id, and decides which are live.
#[derive(Clone, Debug)]
pub struct FailureDetector {
    config: FailureDetectorConfig,
    nodes: HashMap<NodeId, NodeDetector, MapHasher>,
}

impl FailureDetector {
    /// A detector that knows no node.
    #[must_use]
    pub fn new(config: FailureDetectorConfig) -> Self {
        Self::with_hash_seed(config, 0)
    }

    /// A detector whose map hashes with `seed`.
    #[must_use]
    pub fn with_hash_seed(config: FailureDetectorConfig, seed: u64) -> Self {
        Self {
            config,
            nodes: HashMap::with_hasher(map_hasher(seed)),
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
        match self.nodes.get_mut(node) {
            Some(detector) => detector.report_heartbeat(now, config),
            None => {
                let mut detector = NodeDetector::new();
                detector.report_heartbeat(now, config);
                self.nodes.insert(node.clone(), detector);
            }
        }
    }

    /// Phi of `node` at `now`, if it has at least one sampled interval.
    #[must_use]
    pub fn phi(&self, node: &NodeId, now: Instant) -> Option<f64> {
        self.nodes.get(node)?.phi(now, &self.config)
    }

    /// How long `node` may stay silent before it is declared dead, given its history so far
    /// (`phi_threshold × smoothed mean interval`); `None` before its first interval.
    #[must_use]
    pub fn failure_timeout(&self, node: &NodeId) -> Option<Duration> {
        self.nodes.get(node)?.failure_timeout(&self.config)
    }

    /// Re-evaluates `node` at `now` and returns whether it is live (see
    /// [`NodeDetector::update_liveness`]). An unknown node starts being tracked, as dead.
    pub fn update_liveness(&mut self, node: &NodeId, now: Instant) -> Liveness {
        let config = &self.config;
        if let Some(detector) = self.nodes.get_mut(node) {
            return detector.update_liveness(now, config);
        }
        let mut detector = NodeDetector::new();
        let liveness = detector.update_liveness(now, config);
        self.nodes.insert(node.clone(), detector);
        liveness
    }

    /// Whether `node` is currently live.
    #[must_use]
    pub fn is_live(&self, node: &NodeId) -> bool {
        self.nodes.get(node).is_some_and(NodeDetector::is_live)
    }

    /// The live nodes, in no particular order.
    pub fn live_nodes(&self) -> impl Iterator<Item = &NodeId> + '_ {
        self.nodes.iter().filter(|(_, d)| d.live).map(|(id, _)| id)
    }

    /// The dead nodes, in no particular order, with the time each was found dead.
    pub fn dead_nodes(&self) -> impl Iterator<Item = (&NodeId, Instant)> + '_ {
        self.nodes
            .iter()
            .filter_map(|(id, d)| d.dead_since.map(|at| (id, at)))
    }

    /// Whether `node` has been dead for more than half the grace period: it is no longer
    /// gossiped, though still kept.
    #[must_use]
    pub fn is_scheduled_for_deletion(&self, node: &NodeId, now: Instant) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|d| d.is_scheduled_for_deletion(now, &self.config))
    }

    /// Forgets the nodes dead for more than the grace period and returns them, ascending.
    pub fn garbage_collect(&mut self, now: Instant) -> Vec<NodeId> {
        let mut expired: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, d)| d.is_expired(now, &self.config))
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
        self.nodes.remove(node);
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
        assert_eq!(fd.nodes[&a].samples(), 4);
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
        // chitchat's rule: collected at `now >= time_of_death + grace`, the instant itself.
        assert!(
            fd.garbage_collect(t0 + Duration::from_secs(100) - Duration::from_nanos(1))
                .is_empty()
        );
        assert_eq!(
            fd.garbage_collect(t0 + Duration::from_secs(100)),
            vec![a.clone()]
        );
        assert_eq!(fd.dead_nodes().count(), 0);
        assert_eq!(fd.phi(&a, t0), None);
    }
}
