//! Network faults: partitions (symmetric and asymmetric) and their healing, loss, duplication
//! and reordering.
//!
//! Loss scenarios use a 100 ms gossip interval and state their failure detector: chitchat's
//! defaults (phi 8, prior mean interval 5 s), and the faster variant of chitchat's performance
//! tests (prior mean interval = the gossip interval, 100 ms), which is the harder test.

mod common;

use cohort_core::membership::MemberStatus;
use cohort_sim::{Sim, SimConfig, run_seeds};
use common::{SEEDS, config, failed_about, ms, secs};

#[test]
fn a_partition_splits_the_cluster_and_healing_merges_it() {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed));
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

#[test]
fn a_one_way_link_cut_kills_no_one() {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed));
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
#[test]
fn a_deaf_node_is_kept_live_by_the_others_and_recovers_after_healing() {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed));
        sim.add_nodes(5);
        sim.run_until_converged(secs(5))?;
        sim.advance(secs(3));
        let deaf = 4;
        for other in 0..4 {
            sim.cut(other, deaf);
        }
        sim.advance(secs(5));
        assert_eq!(
            failed_about(&sim, deaf),
            0,
            "the majority convicted the deaf node"
        );
        for o in 0..4 {
            assert_eq!(sim.status(o, deaf), Some(MemberStatus::Live));
        }
        let suspected = sim
            .events_of(deaf)
            .any(|e| e.kind == cohort_sim::TraceKind::Event(cohort_core::Event::SelfSuspected));
        assert!(suspected, "the deaf node should suspect itself");
        sim.advance(secs(15));
        sim.heal_all();
        sim.run_until_converged(secs(10))?;
        assert_eq!(failed_about(&sim, deaf), 0);
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

#[test]
fn ten_percent_loss_kills_no_one() {
    run_seeds(SEEDS, |seed| {
        for fast in [false, true] {
            let mut config = SimConfig::new(seed).with_loss(0.10);
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

#[test]
fn fifty_percent_loss_kills_no_one() {
    run_seeds(SEEDS, |seed| {
        for fast in [false, true] {
            let mut config = SimConfig::new(seed).with_loss(0.50);
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

#[test]
fn duplication_and_reordering_are_harmless() {
    run_seeds(SEEDS, |seed| {
        let mut config = config(seed).with_duplication(0.3).with_loss(0.05);
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
