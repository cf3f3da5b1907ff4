//! # cohort-sim
//!
//! A deterministic cluster simulator for cohort's sans-IO core: N [`cohort_core::Node`]s on a
//! virtual network, in virtual time that jumps from one pending input to the next.
//!
//! - Network: latency = base + uniform jitter (which also reorders), loss, duplication, and
//!   partitions as blocked directed links (so asymmetric cuts work). All randomness comes from
//!   one `Xoshiro256PlusPlus` seeded with the run seed; each node's own generator is seeded from
//!   the run seed too.
//! - Faults: crashes, restarts with a higher generation, graceful leaves, paused and slow
//!   nodes, per-node wall-clock skew.
//! - Scripts read like chitchat's cluster tests: add nodes, set and delete keys, cut and heal
//!   links, crash, restart, advance time, and [`Sim::run_until`] a condition holds.
//! - Metrics ([`Metrics`]): time and rounds to convergence, crash detection time, false
//!   positives, bytes and datagrams per node, and a hash of the event trace; the same seed gives
//!   the same metrics and trace.
//!
//! ```
//! use std::time::Duration;
//! use cohort_core::membership::MemberStatus;
//! use cohort_sim::{Sim, SimConfig};
//!
//! let mut sim = Sim::new(SimConfig::new(42).with_fast_failure_detection());
//! sim.add_nodes(5);
//! sim.run_until_converged(Duration::from_secs(10))?;
//! sim.advance(Duration::from_secs(3));
//! sim.crash(3);
//! let detected = sim.run_until_detected(3, Duration::from_secs(30))?;
//! assert!(detected < Duration::from_secs(10));
//! assert_eq!(sim.status(0, 3), Some(MemberStatus::Failed));
//! assert!(sim.false_positives().is_empty());
//! # Ok::<(), cohort_sim::SimError>(())
//! ```
//!
//! Random fault schedules ([`run_schedule`]): from one seed, a small cluster, a random
//! sequence of crashes, restarts, leaves, partitions, loss, skew and key writes, then healing,
//! with the invariants (no resurrected generation, an HLC that never goes back, convergence
//! without a lost key) checked after every step; the `schedules` binary runs thousands.
//!
//! Tests run a scenario over a few seeds with [`run_seeds`]; a failure names its seed, and
//! `COHORT_SIM_SEED=<seed>` replays exactly that run.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod harness;
mod metrics;
mod network;
mod schedules;
mod sim;
mod trace;

pub use config::{ConfigureNode, NetworkConfig, SimConfig};
pub use harness::{SEED_ENV, SimError, run_seeds, seeds};
pub use metrics::{
    Convergence, Detection, FalsePositive, Metrics, NetworkCounters, NodeCounters, NodeRate,
    percentile,
};
pub use schedules::{
    CHECK_INTERVAL, CONVERGENCE_DEADLINE, SCHEDULE_SEED_ENV, SCHEDULES_ENV, STABLE_FOR,
    ScheduleFailure, ScheduleReport, Step, run_schedule, run_schedule_logged, seeds_from_env,
};
pub use sim::{GOSSIP_PORT, Sim};
pub use trace::{TraceEntry, TraceKind};
