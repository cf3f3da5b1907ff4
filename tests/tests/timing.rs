//! Time faults: a starved (paused) node, a slow node, and wall-clock skew.

mod common;

use cohort_core::Event;
use cohort_core::membership::MemberStatus;
use cohort_core::node::Protocol;
use cohort_sim::{Sim, TraceKind, run_seeds};
use common::{SEEDS, config, failed_about, failed_reported_by, ms, secs};

/// Datagrams that wait for a paused node die with its process: when it is restarted during
/// the pause, the new generation never gets them (they were in the old one's socket), so it
/// cannot learn stale heartbeats from them.
fn a_node_restarted_while_paused_loses_what_waited_for_it(mode: Protocol) {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed, mode));
        sim.add_nodes(4);
        sim.run_until_converged(secs(5))?;
        sim.pause(2, secs(2));
        sim.advance(secs(1));
        let before = sim.metrics().network.dropped_down;
        assert_eq!(before, 0, "no node is down");
        sim.restart(2);
        sim.advance(secs(2));
        // Nothing else is dropped: every node is up from the restart on.
        assert!(
            sim.metrics().network.dropped_down > 0,
            "the datagrams held for the old generation reached the new one"
        );
        sim.run_until_converged(secs(10))?;
        Ok(())
    });
}

/// A node whose process is stopped for 5 s (all 7 peers look silent to it when it resumes)
/// suspects itself instead of convicting everyone at once.
fn a_starved_node_suspects_itself_instead_of_convicting_everyone(mode: Protocol) {
    run_seeds(&[1, 2, 3, 4, 5], |seed| {
        let mut sim = Sim::new(config(seed, mode));
        sim.add_nodes(8);
        sim.run_until_converged(secs(5))?;
        sim.advance(secs(5));
        let starved = 2;
        sim.pause(starved, secs(5));
        // Meanwhile the others rightly find it dead (it answers nothing).
        sim.run_until(|s| s.all_see(starved, MemberStatus::Failed), secs(5))?;
        sim.advance(secs(5));
        // It resumed: it suspects itself, and convicts no one or next to no one.
        let suspected = sim
            .events_of(starved)
            .any(|e| e.kind == TraceKind::Event(Event::SelfSuspected));
        assert!(suspected, "no SelfSuspected from the starved node");
        let convictions = failed_reported_by(&sim, starved);
        assert!(
            convictions <= 1,
            "the starved node convicted {convictions} peers"
        );
        // The others see it again, and the cluster converges.
        sim.run_until_converged(secs(5))?;
        assert!(failed_about(&sim, starved) >= 7);
        assert!(
            sim.false_positives().len() <= 1,
            "{:?}",
            sim.false_positives()
        );
        Ok(())
    });
}

/// A node that handles everything late is never declared dead, and no one else is either.
/// 60 ms late (less than an interval): its rounds keep their rate, each 60 ms late, and its
/// replies are slow. 150 ms late (more than an interval): every round misses its slot and the
/// next one is skipped, so it gossips at well under the normal rate.
///
/// In cohort mode a node that answers probes later than the probe interval (150 ms against
/// 100 ms) is suspected at every probe and refutes every time; it may lose a race now and
/// then (declared failed, recovered within a round): there it must end live everywhere, with
/// at most one such flap per 10 s (seen by each of the others).
fn a_slow_node_is_not_declared_dead(mode: Protocol) {
    for (delay, fewer_rounds) in [(60, false), (150, true)] {
        run_seeds(SEEDS, |seed| {
            let mut sim = Sim::new(config(seed, mode));
            sim.add_nodes(8);
            sim.run_until_converged(secs(5))?;
            sim.set_slow(6, ms(delay));
            sim.advance(secs(20));
            if mode == Protocol::Cohort && delay > 100 {
                let flaps = sim.metrics().failed_events;
                // At most two flaps in 20 s, each seen by up to the seven others.
                assert!(flaps <= 14, "{delay} ms late: {flaps} failed events");
                assert!(sim.all_see(6, MemberStatus::Live));
            } else {
                assert_eq!(sim.metrics().failed_events, 0, "{delay} ms late");
            }
            // Rounds: chitchat mode's gossip rounds (timer firings), cohort mode's probes.
            let rounds_of = |node: usize| match mode {
                Protocol::Cohort => sim
                    .node(node)
                    .and_then(|n| n.cohort_membership())
                    .map_or(0, |m| m.counts().probes),
                _ => sim.counters(node).rounds,
            };
            let (rounds, normal) = (rounds_of(6), rounds_of(5));
            if fewer_rounds {
                assert!(
                    rounds * 10 < normal * 8,
                    "{delay} ms late: slow {rounds} vs normal {normal} rounds"
                );
            } else {
                assert!(
                    rounds * 100 >= normal * 98,
                    "{delay} ms late: slow {rounds} vs normal {normal} rounds (the rate slipped)"
                );
            }
            sim.set(6, "still", "here");
            sim.run_until_converged(secs(3))?;
            Ok(())
        });
    }
}

/// One node's wall clock is 2 s ahead: every other node refuses its timestamps (reporting
/// `ClockSkew`) and its clock is not dragged ahead; gossip still works.
fn a_clock_two_seconds_ahead_is_reported_and_does_not_drag_the_others(mode: Protocol) {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed, mode));
        sim.add_nodes(5);
        let fast = 4;
        sim.set_clock_skew_ms(fast, 2_000);
        sim.run_until_converged(secs(5))?;
        sim.advance(secs(3));
        let fast_addr = Sim::addr(fast);
        for o in 0..5 {
            let skew_reports = sim
                .events_of(o)
                .filter(|e| matches!(&e.kind, TraceKind::Event(Event::ClockSkew { from, .. }) if *from == fast_addr))
                .count();
            if o == fast {
                assert_eq!(
                    sim.events_of(o)
                        .filter(|e| matches!(e.kind, TraceKind::Event(Event::ClockSkew { .. })))
                        .count(),
                    0
                );
                continue;
            }
            assert!(skew_reports > 0, "node {o} did not report the skewed clock");
            let clock = sim
                .node(o)
                .and_then(|n| n.clock().last())
                .expect("clock used");
            let wall = sim.wall(o).as_unix_millis();
            assert!(
                clock.millis() <= wall + 50,
                "node {o}'s clock was dragged to {} (wall {wall})",
                clock.millis()
            );
        }
        // Nothing else broke.
        assert_eq!(sim.metrics().failed_events, 0);
        assert!(sim.is_converged());
        Ok(())
    });
}

/// Wall clocks spread over 300 ms (less than the 500 ms drift bound, also after the fastest
/// clock's time travels through the others' clocks) cause no report at all.
fn clocks_within_300_ms_are_fine(mode: Protocol) {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed, mode));
        sim.add_nodes(6);
        for (node, skew) in [(0, 0), (1, 300), (2, 150), (3, 75), (4, 225), (5, 10)] {
            sim.set_clock_skew_ms(node, skew);
        }
        sim.run_until_converged(secs(5))?;
        sim.advance(secs(10));
        assert_eq!(sim.metrics().clock_skew_events, 0);
        // Causality pulled the slower clocks up to the fastest one, within the bound.
        let clock = sim
            .node(0)
            .and_then(|n| n.clock().last())
            .expect("clock used");
        // chitchat mode's rounds reach 3 peers each; cohort mode's probe one, so the fastest
        // clock's time reaches node 0 in more hops (still well above its own 300 ms lag).
        let tolerance = if mode == Protocol::Cohort { 200 } else { 100 };
        assert!(clock.millis() + 5 >= sim.wall(1).as_unix_millis() - tolerance);
        Ok(())
    });
}

in_both_modes!(
    a_node_restarted_while_paused_loses_what_waited_for_it,
    a_starved_node_suspects_itself_instead_of_convicting_everyone,
    a_slow_node_is_not_declared_dead,
    a_clock_two_seconds_ahead_is_reported_and_does_not_drag_the_others,
    clocks_within_300_ms_are_fine
);
