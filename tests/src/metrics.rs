//! What a run measured: traffic per node, convergence, detection, false positives.
//!
//! Owns the metric types ([`Metrics`] and its parts) and [`percentile`]. Every figure here
//! derives from virtual time and the seeded run, so two runs with the same seed give equal
//! `Metrics`; the wall time a run took is deliberately not part of it (see
//! [`Sim::wall_elapsed`](crate::Sim::wall_elapsed)).

use std::time::Duration;

use cohort_core::NodeId;

/// Traffic and work counters of one slot (all its generations together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCounters {
    /// Bytes of the datagrams it sent (as encoded by the core, envelope included).
    pub bytes_sent: u64,
    /// Datagrams it sent.
    pub datagrams_sent: u64,
    /// Bytes of the datagrams it handled.
    pub bytes_received: u64,
    /// Datagrams it handled.
    pub datagrams_received: u64,
    /// Gossip rounds it ran (timer expiries handled).
    pub rounds: u64,
}

/// Network-wide datagram counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkCounters {
    /// Datagrams the nodes sent.
    pub sent: u64,
    /// Datagrams handed to a node (duplicates included).
    pub delivered: u64,
    /// Lost to the loss probability.
    pub dropped_loss: u64,
    /// Dropped on a cut link (at send time, or in flight when the link was cut).
    pub dropped_partition: u64,
    /// Sent to a node that was down when the datagram arrived, or waiting for a paused node
    /// that was then taken down (its socket died with it).
    pub dropped_down: u64,
    /// Sent to an address no slot has.
    pub dropped_unknown: u64,
    /// Extra copies made by the duplication probability.
    pub duplicated: u64,
    /// Datagrams a node refused as undecodable (always 0 unless the core has a bug).
    pub decode_errors: u64,
    /// The largest datagram sent, in bytes.
    pub max_datagram_bytes: u64,
}

/// A convergence measured by [`Sim::run_until_converged`](crate::Sim::run_until_converged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Convergence {
    /// When the measurement started (virtual time since the start of the run).
    pub started_at: Duration,
    /// How long convergence took from there.
    pub elapsed: Duration,
    /// Gossip rounds elapsed: `ceil(elapsed / gossip_interval)`.
    pub rounds: u64,
}

/// The detection of one crash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    /// The slot that crashed.
    pub node: usize,
    /// The identity that crashed.
    pub id: NodeId,
    /// When it crashed.
    pub crashed_at: Duration,
    /// Time from the crash to the first `Failed` event about it, if any yet.
    pub first_after: Option<Duration>,
    /// Time from the crash until every survivor saw it as not live (`Failed`, or removed), if
    /// reached yet.
    pub all_after: Option<Duration>,
}

/// A `Failed` event about a node that was never crashed, stopped, paused, restarted or
/// leaving, reported by a node with which it never had a cut link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FalsePositive {
    /// When it was reported.
    pub at: Duration,
    /// The slot that reported it.
    pub observer: usize,
    /// The member it declared dead.
    pub subject: NodeId,
}

/// Everything a run measured, up to the moment [`Sim::metrics`](crate::Sim::metrics) is called.
#[derive(Clone, Debug, PartialEq)]
pub struct Metrics {
    /// The run's seed.
    pub seed: u64,
    /// Virtual time elapsed.
    pub virtual_time: Duration,
    /// Slots (nodes ever added).
    pub nodes: usize,
    /// Per-slot counters, by slot.
    pub per_node: Vec<NodeCounters>,
    /// Network counters.
    pub network: NetworkCounters,
    /// Convergences measured, in order.
    pub convergences: Vec<Convergence>,
    /// Crashes and their detection, in crash order.
    pub detections: Vec<Detection>,
    /// False positives, in order.
    pub false_positives: Vec<FalsePositive>,
    /// Every `Failed` event, false or not.
    pub failed_events: u64,
    /// `SelfSuspected` events.
    pub self_suspected_events: u64,
    /// `ClockSkew` events.
    pub clock_skew_events: u64,
    /// `Lagged` events (the simulator drains after every input, so 0 unless one input produced
    /// more events than the node's queue holds).
    pub lagged_events: u64,
    /// Entries in the trace (recorded or not).
    pub trace_len: u64,
    /// FNV-1a hash of the whole trace.
    pub trace_hash: u64,
}

/// The traffic of one node over a measurement window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeRate {
    /// The slot.
    pub node: usize,
    /// Bytes sent per second of virtual time.
    pub bytes_per_sec: f64,
    /// Datagrams sent per second of virtual time.
    pub datagrams_per_sec: f64,
}

/// The `p`-th percentile (`0.0..=100.0`) of `values` by the nearest-rank method; `None` when
/// `values` is empty. `values` is sorted in place (NaNs last).
///
/// ```
/// let mut v = vec![3.0, 1.0, 2.0, 4.0];
/// assert_eq!(cohort_sim::percentile(&mut v, 50.0), Some(2.0));
/// assert_eq!(cohort_sim::percentile(&mut v, 99.0), Some(4.0));
/// assert_eq!(cohort_sim::percentile(&mut [], 50.0), None);
/// ```
#[must_use]
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let rank = ((p.clamp(0.0, 100.0) / 100.0) * n as f64).ceil() as usize;
    Some(values[rank.clamp(1, n) - 1])
}
