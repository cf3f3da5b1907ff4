//! The simulator itself: the same seed gives the same run, a failing scenario names its seed,
//! and the event-built views agree with the nodes.

mod common;

use cohort_sim::{Metrics, Sim, SimConfig, SimError, TraceEntry, run_seeds};
use common::{config, ms, secs};

/// A script that exercises every source of randomness and every fault.
fn eventful_run(seed: u64) -> Result<(Metrics, Vec<TraceEntry>), SimError> {
    let mut config = config(seed, cohort_core::node::Protocol::Chitchat)
        .with_loss(0.05)
        .with_duplication(0.05);
    config.network.jitter = ms(10);
    config.marked_for_deletion_grace_period = secs(2);
    let mut sim = Sim::new(config);
    sim.add_nodes(8);
    sim.run_until_converged(secs(10))?;
    sim.set(1, "a", "1");
    sim.set_with_ttl(2, "b", "2");
    sim.set_clock_skew_ms(7, 1_000);
    sim.set_slow(6, ms(30));
    sim.advance(secs(2));
    sim.delete(1, "a");
    sim.cut(0, 3);
    sim.partition(&[5], &[0, 1, 2, 3, 4, 6, 7]);
    sim.crash(4);
    sim.pause(2, secs(2));
    sim.advance(secs(4));
    sim.heal_all();
    sim.restart(4);
    sim.leave(6);
    sim.advance(secs(1));
    sim.stop(6);
    sim.run_until_converged(secs(10))?;
    sim.start_window();
    sim.advance(secs(3));
    Ok((sim.metrics(), sim.trace().to_vec()))
}

#[test]
fn the_same_seed_gives_the_same_run() {
    run_seeds(&[1, 2, 3], |seed| {
        let (m1, t1) = eventful_run(seed)?;
        let (m2, t2) = eventful_run(seed)?;
        assert_eq!(m1, m2);
        assert_eq!(t1.len(), t2.len());
        if let Some(i) = (0..t1.len()).find(|&i| t1[i] != t2[i]) {
            panic!("traces differ at entry {i}: {:?} vs {:?}", t1[i], t2[i]);
        }
        assert!(m1.trace_len > 100);
        // Another seed is another run.
        let (m3, _) = eventful_run(seed + 100)?;
        assert_ne!(m1.trace_hash, m3.trace_hash);
        Ok(())
    });
}

#[test]
fn the_trace_hash_does_not_depend_on_recording_the_trace() {
    let run = |record: bool| {
        let mut config = SimConfig::new(9).with_fast_failure_detection();
        config.record_trace = record;
        let mut sim = Sim::new(config);
        sim.add_nodes(5);
        sim.advance(secs(3));
        sim.crash(1);
        sim.advance(secs(3));
        (sim.metrics(), sim.trace().len())
    };
    let (recorded, len) = run(true);
    let (unrecorded, none) = run(false);
    assert_eq!(recorded, unrecorded);
    assert_eq!(none, 0);
    assert_eq!(len as u64, recorded.trace_len);
}

#[test]
fn a_timeout_names_the_seed_and_how_to_replay_it() {
    let mut sim = Sim::new(SimConfig::new(77));
    sim.add_nodes(3);
    let err = sim.run_until(|_| false, ms(50)).unwrap_err();
    assert_eq!(err.seed(), 77);
    let text = err.to_string();
    assert!(text.contains("seed 77"), "{text}");
    assert!(text.contains("COHORT_SIM_SEED=77"), "{text}");
    assert!(text.contains("determinism.rs"), "{text}");
    assert_eq!(sim.now(), ms(50));
}

#[test]
#[should_panic(expected = "scenario failed with seed 12")]
fn a_failing_seed_is_reported_with_a_replay_command() {
    run_seeds(&[11, 12, 13], |seed| {
        let mut sim = Sim::new(SimConfig::new(seed));
        sim.add_nodes(2);
        if seed == 12 {
            sim.run_until(|_| false, ms(10))?;
        }
        Ok(())
    });
}

#[test]
fn views_built_from_events_match_the_nodes_answers() {
    run_seeds(&[1, 2], |seed| {
        let mut sim = Sim::new(config(seed, cohort_core::node::Protocol::Chitchat).with_loss(0.2));
        sim.add_nodes(10);
        for step in 0..60 {
            sim.advance(ms(100));
            match step {
                10 => sim.crash(3),
                20 => sim.partition(&[0, 1], &[5, 6, 7]),
                30 => sim.heal_all(),
                40 => sim.restart(3),
                _ => {}
            }
            if let Err(e) = sim.check_views() {
                panic!("{e}");
            }
        }
        Ok(())
    });
}

#[test]
fn virtual_time_only_moves_when_told() {
    let mut sim = Sim::new(SimConfig::new(1));
    sim.add_nodes(4);
    assert_eq!(sim.now(), ms(0));
    sim.advance(ms(1_234));
    assert_eq!(sim.now(), ms(1_234));
    assert_eq!(sim.instant() - sim.base_instant(), ms(1_234));
    let took = sim.run_until(|s| s.now() >= ms(1_500), secs(1)).unwrap();
    assert_eq!(took, ms(266));
    assert_eq!(
        sim.wall(0).as_unix_millis(),
        sim.config().wall_epoch_ms + 1_500
    );
}
