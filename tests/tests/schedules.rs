//! Random fault schedules over small clusters, with the invariants checked after every step
//! (see `cohort_sim::run_schedule`): a bounded slice in CI.
//!
//! `COHORT_SCHEDULES=N` runs seeds `1..=N` instead of the slice (split over the four tests
//! below), and `COHORT_SCHEDULE_SEED=S` (or a comma-separated list) replays given schedules.
//! The `schedules` binary runs thousands in release:
//! `cargo run --release -p cohort-sim --bin schedules -- 10000`.

use cohort_sim::{ScheduleReport, run_schedule, seeds_from_env};

/// Schedules run in CI: seeds `1..=SLICE`.
const SLICE: u64 = 400;

/// The tests share the seeds out, so that nextest runs them side by side.
const SHARDS: u64 = 4;

/// Runs this shard's schedules and panics with every failure (seed, step, replay command).
fn run_shard(shard: u64) -> Vec<ScheduleReport> {
    let seeds: Vec<u64> = seeds_from_env(SLICE)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i as u64 % SHARDS == shard)
        .map(|(_, seed)| seed)
        .collect();
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for seed in seeds {
        match run_schedule(seed) {
            Ok(report) => reports.push(report),
            Err(failure) => failures.push(failure.to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "{} schedule(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    for r in &reports {
        // Every schedule played steps, checked its invariants and ended with survivors.
        assert!(r.steps > 0 && r.checks > 0 && r.survivors > 0, "{r:?}");
    }
    if reports.len() >= 50 {
        // The slice plays every kind of fault, not only the easy ones.
        let total = |f: fn(&ScheduleReport) -> u64| reports.iter().map(f).sum::<u64>();
        assert!(total(|r| r.crashes) > 0, "no crash");
        assert!(total(|r| r.restarts) > 0, "no restart");
        assert!(total(|r| r.leaves) > 0, "no leave");
        assert!(total(|r| r.cuts) > 0, "no partition");
        assert!(
            total(|r| r.skews_beyond_bound) > 0,
            "no skew beyond the bound"
        );
        assert!(total(|r| r.clock_skew_events) > 0, "no timestamp refused");
    }
    reports
}

#[test]
fn schedules_shard_0() {
    run_shard(0);
}

#[test]
fn schedules_shard_1() {
    run_shard(1);
}

#[test]
fn schedules_shard_2() {
    run_shard(2);
}

#[test]
fn schedules_shard_3() {
    run_shard(3);
}

/// The same seed gives the same schedule and the same run, down to the counts.
#[test]
fn a_schedule_is_deterministic() {
    let first = run_schedule(7).expect("schedule 7");
    let again = run_schedule(7).expect("schedule 7 again");
    assert_eq!(first, again);
    let other = run_schedule(8).expect("schedule 8");
    assert_ne!(first, other);
}
