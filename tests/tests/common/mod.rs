//! Helpers shared by the scenario tests.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use cohort_core::Event;
use cohort_core::node::Protocol;
use cohort_sim::{Sim, SimConfig, TraceKind};

/// The seeds every scenario runs with, unless `COHORT_SIM_SEED` says otherwise.
pub const SEEDS: &[u64] = &[1, 2, 3];

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The configuration most scenarios use: 100 ms gossip, 1 ms + [0, 1] ms latency, and the
/// failure detector of chitchat's performance tests (chitchat's defaults, prior mean interval
/// = gossip interval).
///
/// In cohort mode the probe interval is the gossip interval (100 ms).
pub fn config(seed: u64, mode: Protocol) -> SimConfig {
    SimConfig::new(seed)
        .with_fast_failure_detection()
        .with_mode(mode)
}

/// Runs each scenario named (a function of the [`Protocol`]) in both membership protocols, as
/// the tests `chitchat_mode::<name>` and `cohort_mode::<name>`.
#[macro_export]
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        mod chitchat_mode {
            $(
                #[test]
                fn $name() {
                    super::$name(cohort_core::node::Protocol::Chitchat);
                }
            )*
        }
        mod cohort_mode {
            $(
                #[test]
                fn $name() {
                    super::$name(cohort_core::node::Protocol::Cohort);
                }
            )*
        }
    };
}

/// How many `Failed` events `observer` reported (about anyone).
pub fn failed_reported_by(sim: &Sim, observer: usize) -> usize {
    sim.events_of(observer)
        .filter(|e| e.kind.is_failed())
        .count()
}

/// How many `Failed` events anyone reported about slot `subject`.
pub fn failed_about(sim: &Sim, subject: usize) -> usize {
    sim.trace()
        .iter()
        .filter(|e| matches!(&e.kind, TraceKind::Event(Event::Failed(m)) if sim.slot_of(&m.id) == Some(subject)))
        .count()
}
