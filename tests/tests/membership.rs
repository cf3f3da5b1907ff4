//! Join and key-value scenarios: convergence, key propagation, deletes, TTLs and tombstone
//! garbage collection (also across a partition longer than the grace period).

mod common;

use cohort_core::Event;
use cohort_core::membership::MemberStatus;
use cohort_core::node::Protocol;
use cohort_core::wire::{DeletionStatus, ProtocolVersion};
use cohort_sim::{Sim, SimError, TraceKind, run_seeds};
use common::{SEEDS, config, ms, secs};

fn five_nodes_join_and_converge(mode: Protocol) {
    run_seeds(&[1, 2, 3, 4, 5], |seed| {
        let mut sim = Sim::new(config(seed, mode));
        sim.add_nodes(5);
        let c = sim.run_until_converged(secs(5))?;
        assert!(c.rounds <= 10, "{c:?}");
        for o in 0..5 {
            for s in 0..5 {
                if o != s {
                    assert_eq!(sim.status(o, s), Some(MemberStatus::Live));
                }
            }
        }
        assert_eq!(sim.check_views(), Ok(()));
        assert!(sim.false_positives().is_empty());
        assert_eq!(sim.metrics().network.decode_errors, 0);
        Ok(())
    });
}

#[test]
fn twenty_nodes_join_in_v0_and_v1() {
    run_seeds(SEEDS, |seed| {
        for version in [ProtocolVersion::V0, ProtocolVersion::V1] {
            let mut sim = Sim::new(
                config(seed, Protocol::Chitchat)
                    .with_protocol(version)
                    .with_configure(|slot, node| {
                        node.metadata = vec![("dc".into(), format!("dc-{}", slot % 3))];
                    }),
            );
            sim.add_nodes(20);
            let c = sim.run_until_converged(secs(10))?;
            assert!(c.rounds <= 15, "{version:?}: {c:?}");
            assert_eq!(sim.value(7, 5, "dc").as_deref(), Some("dc-2"));
            assert_eq!(sim.metrics().network.decode_errors, 0);
        }
        Ok(())
    });
}

fn a_late_joiner_is_seen_by_everyone(mode: Protocol) {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed, mode));
        sim.add_nodes(6);
        sim.run_until_converged(secs(5))?;
        sim.advance(secs(2));
        let late = sim.add_node();
        sim.run_until_converged(secs(5))?;
        assert!(sim.all_see(late, MemberStatus::Live));
        // Everyone reported the newcomer's arrival exactly once.
        let joined = sim
            .trace()
            .iter()
            .filter(|e| e.kind.is_joined(&sim.id(late)))
            .count();
        assert_eq!(joined, 6);
        Ok(())
    });
}

fn keys_propagate_to_every_node(mode: Protocol) {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed, mode));
        sim.add_nodes(8);
        sim.run_until_converged(secs(5))?;
        sim.set(3, "role", "indexer");
        let took = sim.run_until(|s| s.all_see_value(3, "role", Some("indexer")), secs(2))?;
        assert!(took <= ms(1_000), "{took:?}");
        // An update replaces the value everywhere; keys from several writers all arrive.
        sim.set(3, "role", "searcher");
        for node in 0..8 {
            sim.set(node, "rpc", &format!("10.1.0.{node}:7100"));
        }
        sim.run_until_converged(secs(3))?;
        assert_eq!(sim.value(0, 3, "role").as_deref(), Some("searcher"));
        assert_eq!(sim.value(5, 2, "rpc").as_deref(), Some("10.1.0.2:7100"));
        // Every node reported the update as a key change, once, the writer included (with the
        // value it replaced).
        let mut reporters: Vec<usize> = sim
            .trace()
            .iter()
            .filter(|e| {
                matches!(&e.kind, TraceKind::Event(Event::KeyChanged { key, old, value, .. })
                    if key == "role" && value.as_deref() == Some("searcher")
                        && old.as_deref() == Some("indexer"))
            })
            .map(|e| e.node)
            .collect();
        reporters.sort_unstable();
        assert_eq!(reporters, (0..8).collect::<Vec<_>>());
        Ok(())
    });
}

fn deleted_keys_disappear_and_their_tombstones_are_collected(mode: Protocol) {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed, mode).with_grace_period(secs(2)));
        sim.add_nodes(6);
        sim.set(2, "temp", "1");
        sim.run_until_converged(secs(5))?;
        sim.delete(2, "temp");
        sim.run_until(|s| s.all_see_value(2, "temp", None), secs(2))?;
        // The tombstone is still stored (it must reach everyone) ...
        let writer = sim.id(2);
        let holds_tombstone = |s: &Sim, o: usize| {
            s.node(o)
                .and_then(|n| n.node_state(&writer))
                .and_then(|st| st.get_versioned("temp"))
                .is_some_and(|v| v.status == DeletionStatus::Deleted)
        };
        assert!(holds_tombstone(&sim, 0));
        // ... and is collected everywhere once the grace period has passed.
        sim.run_until(
            |s| {
                (0..6).all(|o| {
                    s.node(o)
                        .and_then(|n| n.node_state(&writer))
                        .is_some_and(|st| st.get_versioned("temp").is_none())
                })
            },
            secs(4),
        )?;
        assert!((0..6).all(|o| sim.value(o, 2, "temp").is_none()));
        Ok(())
    });
}

fn ttl_keys_are_visible_then_collected_everywhere(mode: Protocol) {
    run_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(config(seed, mode).with_grace_period(secs(2)));
        sim.add_nodes(6);
        sim.set(1, "lease", "a");
        sim.run_until_converged(secs(5))?;
        let start = sim.now();
        sim.set_with_ttl(4, "session", "s1");
        sim.delete_after_ttl(1, "lease");
        sim.run_until(
            |s| s.all_see_value(4, "session", Some("s1")) && s.all_see_value(1, "lease", Some("a")),
            secs(1),
        )?;
        // Both stay visible during the grace period ...
        sim.advance(ms(1_500).saturating_sub(sim.now() - start));
        assert!(sim.all_see_value(4, "session", Some("s1")));
        assert!(sim.all_see_value(1, "lease", Some("a")));
        // ... and are gone everywhere (owner included) soon after it.
        sim.run_until(
            |s| {
                (0..6)
                    .all(|o| s.value(o, 4, "session").is_none() && s.value(o, 1, "lease").is_none())
            },
            secs(3),
        )?;
        assert!(sim.now() - start >= secs(2));
        Ok(())
    });
}

/// chitchat's `test_marked_for_deletion_gc_with_network_partition`: a node cut off for longer
/// than the grace period missed both the delete and the tombstone's collection. When the
/// partition heals it must take the writer's state through a reset, and the deleted key must
/// not come back anywhere.
fn tombstone_gc_across_a_long_partition_resets_the_partitioned_node(mode: Protocol) {
    run_seeds(SEEDS, |seed| -> Result<(), SimError> {
        let mut sim = Sim::new(config(seed, mode).with_grace_period(secs(2)));
        sim.add_nodes(4);
        let (writer, cut_off) = (1, 3);
        sim.set(writer, "doomed", "v");
        sim.set(writer, "kept", "k");
        sim.run_until_converged(secs(5))?;
        assert_eq!(sim.value(cut_off, writer, "doomed").as_deref(), Some("v"));

        sim.partition(&[cut_off], &[0, 1, 2]);
        sim.advance(secs(1));
        let deleted_at = sim.now();
        sim.delete(writer, "doomed");
        sim.set(writer, "after", "a");
        // Longer than the grace period: the majority collects the tombstone.
        sim.advance(secs(6));
        let writer_id = sim.id(writer);
        for o in [0, 1, 2] {
            let state = sim
                .node(o)
                .and_then(|n| n.node_state(&writer_id))
                .expect("the majority knows the writer");
            assert!(
                state.get_versioned("doomed").is_none(),
                "node {o} still holds it"
            );
            assert!(state.last_gc_version() > 0);
        }
        assert_eq!(sim.value(cut_off, writer, "doomed").as_deref(), Some("v"));

        sim.heal_all();
        let own = |s: &Sim, o: usize| {
            let state = s.node(o)?.node_state(&writer_id)?;
            let entries: Vec<(String, String, u64, DeletionStatus)> = state
                .entries()
                .map(|(k, v)| (k.to_owned(), v.value.clone(), v.version, v.status))
                .collect();
            Some((entries, state.max_version(), state.last_gc_version()))
        };
        sim.run_until(|s| own(s, cut_off) == own(s, writer), secs(10))?;
        assert_eq!(sim.value(cut_off, writer, "doomed"), None);
        assert_eq!(sim.value(cut_off, writer, "after").as_deref(), Some("a"));
        sim.run_until_converged(secs(10))?;

        // Gossip on for a while: the key never comes back, on any node.
        sim.advance(secs(5));
        for o in 0..4 {
            assert_eq!(sim.value(o, writer, "doomed"), None, "node {o}");
        }
        let resurrected = sim.trace().iter().any(|e| {
            e.at > deleted_at
                && matches!(&e.kind, TraceKind::Event(Event::KeyChanged { key, value: Some(_), .. }) if key == "doomed")
        });
        assert!(!resurrected, "the deleted key came back");
        Ok(())
    });
}

in_both_modes!(
    five_nodes_join_and_converge,
    a_late_joiner_is_seen_by_everyone,
    keys_propagate_to_every_node,
    deleted_keys_disappear_and_their_tombstones_are_collected,
    ttl_keys_are_visible_then_collected_everywhere,
    tombstone_gc_across_a_long_partition_resets_the_partitioned_node
);
