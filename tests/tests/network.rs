//! Network faults: partitions (symmetric and asymmetric) and their healing, loss, duplication
//! and reordering.
//!
//! Loss scenarios use a 100 ms gossip interval and state their failure detector: chitchat's
//! defaults (phi 8, prior mean interval 5 s), and the faster variant of chitchat's performance
//! tests (prior mean interval = the gossip interval, 100 ms), which is the harder test.

mod common;

use cohort_core::membership::MemberStatus;
use cohort_core::node::Protocol;
use cohort_sim::{Sim, SimConfig, run_seeds};
use common::{SEEDS, config, failed_about, ms, secs};

fn a_partition_splits_the_cluster_and_healing_merges_it(mode: Protocol) {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed, mode));
        sim.add_nodes(6);
        sim.run_until_converged(secs(5))?;
        sim.advance(secs(3));
        let (a, b) = ([0, 1, 2], [3, 4, 5]);
        sim.partition(&a, &b);
        // Each side declares the other dead, and still sees its own side live.
        sim.run_until(
            |s| {
                a.iter().all(|&x| {
                    b.iter().all(|&y| {
                        s.status(x, y) == Some(MemberStatus::Failed)
                            && s.status(y, x) == Some(MemberStatus::Failed)
                    })
                })
            },
            secs(15),
        )?;
        for side in [&a, &b] {
            for &x in side {
                for &y in side {
                    if x != y {
                        assert_eq!(sim.status(x, y), Some(MemberStatus::Live), "{x} sees {y}");
                    }
                }
            }
        }
        // Writes on both sides during the partition reach the other side after healing.
        sim.set(1, "side", "a");
        sim.set(4, "side", "b");
        sim.advance(secs(2));
        sim.heal_all();
        sim.run_until_converged(secs(10))?;
        assert_eq!(sim.value(5, 1, "side").as_deref(), Some("a"));
        assert_eq!(sim.value(0, 4, "side").as_deref(), Some("b"));
        // Every death was across the cut: none is a false positive.
        assert!(
            sim.false_positives().is_empty(),
            "{:?}",
            sim.false_positives()
        );
        assert_eq!(sim.check_views(), Ok(()));
        Ok(())
    });
}

fn a_one_way_link_cut_kills_no_one(mode: Protocol) {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed, mode));
        sim.add_nodes(5);
        sim.run_until_converged(secs(5))?;
        sim.advance(secs(2));
        // 1 cannot reach 2 (2 can reach 1): gossip through the others carries the heartbeats.
        sim.cut(1, 2);
        sim.cut(3, 0);
        sim.advance(secs(20));
        assert_eq!(sim.metrics().failed_events, 0);
        assert!(sim.is_converged());
        sim.heal_all();
        sim.advance(secs(2));
        assert!(sim.is_converged());
        Ok(())
    });
}

/// Node 4 can send but receives nothing (every link into it is cut). The others keep hearing
/// its heartbeats in its Syns, so they keep it live; node 4 hears no one, suspects itself and
/// holds its verdicts for a while; after healing everyone is live again.
fn a_deaf_node_is_kept_live_by_the_others_and_recovers_after_healing(mode: Protocol) {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed, mode));
        sim.add_nodes(5);
        sim.run_until_converged(secs(5))?;
        sim.advance(secs(3));
        let deaf = 4;
        for other in 0..4 {
            sim.cut(other, deaf);
        }
        sim.advance(secs(5));
        match mode {
            // chitchat mode: liveness is hearing a node's heartbeat, and the others hear it.
            Protocol::Chitchat => {
                assert_eq!(
                    failed_about(&sim, deaf),
                    0,
                    "the majority convicted the deaf node"
                );
                for o in 0..4 {
                    assert_eq!(sim.status(o, deaf), Some(MemberStatus::Live));
                }
            }
            // cohort mode: liveness is answering probes, which a deaf node cannot (nor RPC
            // calls): the others convict it.
            _ => {
                for o in 0..4 {
                    assert_eq!(sim.status(o, deaf), Some(MemberStatus::Failed));
                }
            }
        }
        let suspected = sim
            .events_of(deaf)
            .any(|e| e.kind == cohort_sim::TraceKind::Event(cohort_core::Event::SelfSuspected));
        assert!(suspected, "the deaf node should suspect itself");
        if mode == Protocol::Cohort {
            assert_eq!(
                common::failed_reported_by(&sim, deaf),
                0,
                "the deaf node convicts no one"
            );
        }
        sim.advance(secs(15));
        sim.heal_all();
        sim.run_until_converged(secs(10))?;
        if mode == Protocol::Chitchat {
            assert_eq!(failed_about(&sim, deaf), 0);
        }
        assert!(
            sim.false_positives().is_empty(),
            "{:?}",
            sim.false_positives()
        );
        Ok(())
    });
}

fn lossy_run(
    config: SimConfig,
    nodes: usize,
    duration: std::time::Duration,
) -> Result<Sim, cohort_sim::SimError> {
    let mut sim = Sim::new(config);
    sim.add_nodes(nodes);
    sim.run_until_converged(secs(20))?;
    sim.set(2, "k", "v");
    sim.advance(duration);
    Ok(sim)
}

fn ten_percent_loss_kills_no_one(mode: Protocol) {
    run_seeds(SEEDS, |seed| {
        for fast in [false, true] {
            let mut config = SimConfig::new(seed).with_loss(0.10).with_mode(mode);
            if fast {
                config = config.with_fast_failure_detection();
            }
            let sim = lossy_run(config, 10, secs(30))?;
            assert_eq!(sim.metrics().failed_events, 0, "fast detector: {fast}");
            assert!(sim.is_converged());
        }
        Ok(())
    });
}

/// chitchat mode only: its phi-accrual detector over heartbeats relayed by three peers a
/// round shrugs off 50% loss. Cohort mode's probes do not (a probe and its answer both arrive
/// one time in four): see [`heavy_loss_does_no_lasting_harm`].
#[test]
fn fifty_percent_loss_kills_no_one() {
    let mode = Protocol::Chitchat;
    run_seeds(SEEDS, |seed| {
        for fast in [false, true] {
            let mut config = SimConfig::new(seed).with_loss(0.50).with_mode(mode);
            if fast {
                config = config.with_fast_failure_detection();
            }
            let sim = lossy_run(config, 10, secs(30))?;
            let m = sim.metrics();
            assert!(
                m.network.dropped_loss * 5 > m.network.sent * 2,
                "about half is lost"
            );
            assert_eq!(m.failed_events, 0, "fast detector: {fast}");
            assert!(sim.all_see_value(2, "k", Some("v")));
        }
        Ok(())
    });
}

/// Cohort mode under 30% then 50% loss: members flap (a probe and its answer both get
/// through about one time in four at 50%), but no state is lost for good: once the loss stops,
/// the cluster converges, every key arrives, and no member is failed.
#[test]
fn heavy_loss_does_no_lasting_harm() {
    run_seeds(SEEDS, |seed| {
        for loss in [0.3, 0.5] {
            let config = config(seed, Protocol::Cohort).with_loss(loss);
            let network = config.network.clone();
            let mut sim = Sim::new(config);
            sim.add_nodes(10);
            sim.advance(secs(30));
            sim.set(2, "k", "v");
            sim.advance(secs(10));
            sim.set_network(cohort_sim::NetworkConfig {
                loss: 0.0,
                ..network
            });
            sim.run_until_converged(secs(30))?;
            assert!(sim.all_see_value(2, "k", Some("v")), "{loss}");
            for o in 0..10 {
                for s in 0..10 {
                    if o != s {
                        assert_eq!(sim.status(o, s), Some(MemberStatus::Live), "{loss}");
                    }
                }
            }
        }
        Ok(())
    });
}

fn duplication_and_reordering_are_harmless(mode: Protocol) {
    run_seeds(SEEDS, |seed| {
        let mut config = config(seed, mode).with_duplication(0.3).with_loss(0.05);
        // Latency 1..41 ms: datagrams overtake each other all the time.
        config.network.jitter = ms(40);
        let mut sim = Sim::new(config);
        sim.add_nodes(8);
        sim.run_until_converged(secs(10))?;
        for round in 0..20 {
            sim.set(round % 8, "counter", &round.to_string());
            sim.advance(ms(50));
        }
        sim.delete(3, "counter");
        sim.run_until_converged(secs(10))?;
        let m = sim.metrics();
        assert!(m.network.duplicated > 100);
        assert_eq!(m.network.decode_errors, 0);
        assert_eq!(m.failed_events, 0);
        assert_eq!(sim.value(0, 4, "counter").as_deref(), Some("12"));
        assert_eq!(sim.value(0, 3, "counter"), None);
        Ok(())
    });
}

in_both_modes!(
    a_partition_splits_the_cluster_and_healing_merges_it,
    a_one_way_link_cut_kills_no_one,
    a_deaf_node_is_kept_live_by_the_others_and_recovers_after_healing,
    ten_percent_loss_kills_no_one,
    duplication_and_reordering_are_harmless
);
