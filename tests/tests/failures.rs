//! Node failures: crash detection, restarts with a higher generation, graceful leave.

mod common;

use cohort_core::Event;
use cohort_core::membership::MemberStatus;
use cohort_core::node::Protocol;
use cohort_sim::{Sim, TraceKind, run_seeds};
use common::{SEEDS, config, failed_about, ms, secs};

fn a_crash_is_detected_by_every_survivor(mode: Protocol) {
    run_seeds(&[1, 2, 3, 4, 5], |seed| {
        let mut sim = Sim::new(config(seed, mode));
        sim.add_nodes(10);
        sim.run_until_converged(secs(5))?;
        sim.advance(secs(5));
        sim.crash(4);
        let detected = sim.run_until_detected(4, secs(20))?;
        // phi 8 over a mean heartbeat interval of about one gossip interval (or less).
        assert!(detected <= secs(3), "{detected:?}");
        assert!(sim.all_see(4, MemberStatus::Failed));
        let d = &sim.detections()[0];
        assert!(d.first_after.is_some_and(|first| first <= detected));
        // The others are still live, and nobody was falsely convicted.
        sim.advance(secs(5));
        assert!(
            sim.false_positives().is_empty(),
            "{:?}",
            sim.false_positives()
        );
        assert!(sim.is_converged());
        assert_eq!(sim.check_views(), Ok(()));
        Ok(())
    });
}

fn two_simultaneous_crashes_are_detected(mode: Protocol) {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed, mode));
        sim.add_nodes(12);
        sim.run_until_converged(secs(5))?;
        sim.advance(secs(3));
        sim.crash(3);
        sim.crash(8);
        sim.run_until_detected(3, secs(20))?;
        sim.run_until_detected(8, secs(20))?;
        assert!(sim.false_positives().is_empty());
        Ok(())
    });
}

fn a_restart_with_a_higher_generation_replaces_the_old_one_for_good(mode: Protocol) {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed, mode));
        sim.add_nodes(6);
        sim.set(3, "role", "old");
        sim.run_until_converged(secs(5))?;
        sim.advance(secs(2));
        let old = sim.id(3);
        let restarted_at = sim.now();
        sim.restart(3);
        let new = sim.id(3);
        assert_eq!(new.generation(), old.generation() + 1);
        assert_eq!(
            (new.name(), new.gossip_addr()),
            (old.name(), old.gossip_addr())
        );
        sim.set(3, "role", "new");
        sim.run_until_converged(secs(5))?;
        // The old generation is gone from every view, and its Removed event was reported.
        let gone = |s: &Sim| {
            (0..6)
                .filter(|&o| o != 3)
                .all(|o| s.node(o).is_some_and(|n| n.member(&old).is_none()))
        };
        sim.run_until(gone, secs(5))?;
        assert!(
            sim.trace()
                .iter()
                .any(|e| e.kind == TraceKind::Event(Event::Removed(old.clone())))
        );
        assert_eq!(sim.value(0, 3, "role").as_deref(), Some("new"));
        // It never comes back, however long they gossip.
        sim.advance(secs(10));
        assert!(gone(&sim));
        let back = sim.trace().iter().any(|e| {
            e.at > restarted_at
                && matches!(&e.kind, TraceKind::Event(Event::Joined(m) | Event::Recovered(m)) if m.id == old)
        });
        assert!(!back, "the old generation came back");
        assert!(sim.all_see(3, MemberStatus::Live));
        assert!(sim.false_positives().is_empty());
        Ok(())
    });
}

fn a_crashed_node_restarted_later_is_detected_then_replaced(mode: Protocol) {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed, mode));
        sim.add_nodes(6);
        sim.run_until_converged(secs(5))?;
        sim.advance(secs(2));
        let old = sim.id(2);
        sim.crash(2);
        sim.run_until_detected(2, secs(10))?;
        sim.advance(secs(3));
        sim.restart(2);
        sim.run_until_converged(secs(5))?;
        sim.run_until(
            |s| {
                (0..6)
                    .filter(|&o| o != 2)
                    .all(|o| s.node(o).is_some_and(|n| n.member(&old).is_none()))
            },
            secs(5),
        )?;
        assert!(sim.false_positives().is_empty());
        Ok(())
    });
}

fn a_graceful_leave_is_seen_within_a_few_rounds(mode: Protocol) {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed, mode));
        sim.add_nodes(8);
        sim.run_until_converged(secs(5))?;
        sim.advance(secs(3));
        let leaver = 5;
        // How long the failure detector would have taken: chitchat mode's phi-accrual timeout,
        // cohort mode's shortest suspicion plus a probe interval.
        let detector_timeout = match mode {
            Protocol::Cohort => ms(400 + 100),
            _ => sim
                .node(0)
                .and_then(|n| n.membership()?.failure_timeout(&sim.id(leaver)))
                .expect("node 0 has a heartbeat history of the leaver"),
        };
        sim.leave(leaver);
        // The driver waits for the announcement, then stops the process.
        sim.run_until(|s| s.leave_announced(leaver), ms(500))?;
        sim.stop(leaver);
        let took = sim.run_until(|s| s.all_see(leaver, MemberStatus::Left), secs(2))?;
        // A few rounds, much sooner than the failure detector would have noticed.
        assert!(took <= ms(500), "{took:?}");
        assert!(
            took * 2 <= detector_timeout,
            "{took:?} vs {detector_timeout:?}"
        );
        // It stays Left: never reported Failed.
        sim.advance(secs(10));
        assert!(sim.all_see(leaver, MemberStatus::Left));
        assert_eq!(failed_about(&sim, leaver), 0);
        assert!(sim.is_converged());
        assert!(sim.false_positives().is_empty());
        Ok(())
    });
}

in_both_modes!(
    a_crash_is_detected_by_every_survivor,
    two_simultaneous_crashes_are_detected,
    a_restart_with_a_higher_generation_replaces_the_old_one_for_good,
    a_crashed_node_restarted_later_is_detected_then_replaced,
    a_graceful_leave_is_seen_within_a_few_rounds
);
