//! Tests of the per-node state and its exchange rules.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::wire::KeyValueUpdate;

fn node(name: &str) -> NodeId {
    NodeId::new(name, 1, std::net::SocketAddr::from(([127, 0, 0, 1], 7000)))
}

/// The delta a writer sends a peer whose digest entry is `peer`, keeping only the first
/// `keep` key-values (as a datagram budget would), `None` if the peer lacks nothing.
fn delta_for(
    writer: &NodeState,
    id: &NodeId,
    peer: Option<&NodeDigest>,
    keep: usize,
) -> Option<NodeDelta> {
    let stale = writer.stale_for(peer)?;
    let key_values: Vec<KeyValueUpdate> = stale
        .key_values
        .iter()
        .take(keep)
        .map(|(k, v)| KeyValueUpdate {
            key: (*k).to_owned(),
            value: v.value.clone(),
            version: v.version,
            status: v.status,
        })
        .collect();
    let max_version = if stale.key_values.is_empty() {
        writer.max_version()
    } else {
        key_values.last().map_or(0, |kv| kv.version)
    };
    Some(NodeDelta {
        node: id.clone(),
        last_gc_version: writer.last_gc_version(),
        from_version_excluded: stale.from_version_excluded,
        max_version,
        key_values,
    })
}

#[test]
fn local_writes_take_increasing_versions() {
    let t = Instant::now();
    let mut s = NodeState::new();
    assert!(s.set("a", "1"));
    assert!(!s.set("a", "1"), "same value: no new version");
    assert!(s.set("a", "2"));
    assert!(s.set("b", "x"));
    assert_eq!(s.max_version(), 3);
    assert_eq!(s.get("a"), Some("2"));
    assert!(s.delete("a", t));
    assert!(!s.delete("missing", t));
    assert!(!s.delete("a", t), "already deleted: nothing to do");
    assert_eq!(s.max_version(), 4, "and no new version");
    assert_eq!(s.get("a"), None, "tombstones are invisible");
    assert_eq!(
        s.get_versioned("a").unwrap().status,
        DeletionStatus::Deleted
    );
    assert_eq!(s.get_versioned("a").unwrap().value, "");
    s.set_with_ttl("c", "ttl", t);
    assert_eq!(s.get("c"), Some("ttl"), "TTL values stay visible");
    assert!(s.delete_after_ttl("b", t));
    assert_eq!(s.get("b"), Some("x"));
    assert_eq!(s.max_version(), 6);
    assert_eq!(
        s.visible().collect::<Vec<_>>(),
        vec![("b", "x"), ("c", "ttl")]
    );
    assert!(s.set("a", "back"), "a deleted key can be set again");
    assert_eq!(s.get("a"), Some("back"));
}

#[test]
fn setting_the_same_value_with_a_ttl_again_changes_nothing() {
    // chitchat's `set_with_ttl`: the same value, already with a TTL, is a no-op (no new
    // version, and the TTL runs on from the first set).
    let t = Instant::now();
    let grace = Duration::from_secs(60);
    let mut s = NodeState::new();
    assert!(s.set_with_ttl("lease", "a", t));
    assert!(!s.set_with_ttl("lease", "a", t + Duration::from_secs(30)));
    assert_eq!(s.max_version(), 1);
    assert_eq!(
        s.gc_tombstones(t + grace, grace),
        vec![("lease".to_owned(), Some("a".to_owned()))],
        "collected a grace period after the first set"
    );
    // Another value, or the same value without a TTL before, is a change.
    assert!(s.set_with_ttl("lease", "b", t + grace));
    s.set("plain", "x");
    assert!(s.set_with_ttl("plain", "x", t + grace));
    assert_eq!(s.max_version(), 4);
}

#[test]
fn tombstones_are_collected_after_the_grace_period() {
    let t = Instant::now();
    let grace = Duration::from_secs(60);
    let mut s = NodeState::new();
    s.set("keep", "1");
    s.set("gone", "1");
    s.delete("gone", t);
    s.set_with_ttl("ttl", "v", t + Duration::from_secs(30));
    assert!(
        s.gc_tombstones(t + grace - Duration::from_nanos(1), grace)
            .is_empty(),
        "younger than the grace"
    );
    // chitchat's rule (its `gc_keys_marked_for_deletion`): collected once
    // `now >= deleted_at + grace`, at the instant itself.
    assert_eq!(
        s.gc_tombstones(t + grace, grace),
        vec![("gone".to_owned(), None)]
    );
    assert_eq!(s.last_gc_version(), 3);
    assert_eq!(
        s.gc_tombstones(t + grace + Duration::from_secs(30), grace),
        vec![("ttl".to_owned(), Some("v".to_owned()))]
    );
    assert_eq!(s.last_gc_version(), 4);
    assert_eq!(s.max_version(), 4);
    assert_eq!(s.visible().collect::<Vec<_>>(), vec![("keep", "1")]);
}

#[test]
fn a_full_delta_reproduces_the_writer() {
    let t = Instant::now();
    let id = node("w");
    let mut w = NodeState::new();
    w.set("a", "1");
    w.set("b", "2");
    w.delete("a", t);
    let mut r = NodeState::new();
    let d = delta_for(&w, &id, None, usize::MAX).unwrap();
    assert_eq!(d.from_version_excluded, 0);
    let applied = r.apply_delta(&d, t).unwrap();
    assert!(!applied.reset);
    assert_eq!(applied.changed_keys, vec!["a", "b"]);
    assert_eq!(r.max_version(), 3);
    assert_eq!(r.visible().collect::<Vec<_>>(), vec![("b", "2")]);
    assert_eq!(
        r.get_versioned("a").unwrap().status,
        DeletionStatus::Deleted
    );
    // Nothing more to send; resending the same delta is refused and changes nothing.
    assert!(delta_for(&w, &id, Some(&r.digest()), usize::MAX).is_none());
    let before = r.clone();
    assert_eq!(r.apply_delta(&d, t), Err(Refused::NothingNew));
    assert_eq!(r, before);
}

#[test]
fn a_delta_starting_beyond_our_state_is_refused() {
    let t = Instant::now();
    let id = node("w");
    let mut w = NodeState::new();
    for i in 0..5 {
        w.set(&format!("k{i}"), "v");
    }
    let peer = NodeDigest {
        heartbeat: 0,
        last_gc_version: 0,
        max_version: 3,
    };
    let d = delta_for(&w, &id, Some(&peer), usize::MAX).unwrap();
    assert_eq!(d.from_version_excluded, 3);
    let mut r = NodeState::new();
    assert_eq!(r.apply_delta(&d, t), Err(Refused::Gap));
    assert_eq!(r, NodeState::new());
}

#[test]
fn reset_rule_for_a_peer_that_missed_a_gc() {
    // The f-ack-v0-reset situation: the writer's only key was deleted and collected.
    let t = Instant::now();
    let grace = Duration::from_secs(1);
    let id = node("f");
    let mut w = NodeState::new();
    w.set("k", "v");
    w.delete("k", t);
    w.gc_tombstones(t + Duration::from_secs(2), grace);
    assert_eq!((w.last_gc_version(), w.max_version(), w.len()), (2, 2, 0));

    let d = delta_for(&w, &id, Some(&NodeDigest::default()), usize::MAX).unwrap();
    assert_eq!(
        (d.last_gc_version, d.from_version_excluded, d.max_version),
        (2, 0, 2)
    );
    assert!(d.key_values.is_empty());

    // A receiver that held the key before the deletion resets and ends with nothing.
    let mut r = NodeState::new();
    r.apply_delta(
        &delta_for(
            &{
                let mut old = NodeState::new();
                old.set("k", "v");
                old
            },
            &id,
            None,
            usize::MAX,
        )
        .unwrap(),
        t,
    )
    .unwrap();
    assert_eq!(r.get("k"), Some("v"));
    // The writer's digest says gc 2; the receiver is at (gc 0, max 1): it needs a reset.
    let d = delta_for(&w, &id, Some(&r.digest()), usize::MAX).unwrap();
    assert_eq!(d.from_version_excluded, 0);
    let applied = r.apply_delta(&d, t).unwrap();
    assert!(applied.reset);
    assert_eq!(applied.changed_keys, vec!["k"]);
    assert_eq!((r.last_gc_version(), r.max_version(), r.len()), (2, 2, 0));

    // A non-full delta that would need a reset is refused.
    let mut stale = NodeState::new();
    stale.set("k", "v");
    let partial = NodeDelta {
        node: id.clone(),
        last_gc_version: 5,
        from_version_excluded: 1,
        max_version: 6,
        key_values: vec![],
    };
    let before = stale.clone();
    assert_eq!(stale.apply_delta(&partial, t), Err(Refused::NeedsReset));
    assert_eq!(stale, before);
}

#[test]
fn a_cut_delta_with_no_key_values_changes_nothing() {
    let t = Instant::now();
    let mut r = NodeState::new();
    r.set("k", "v");
    let before = r.clone();
    let cut = NodeDelta {
        node: node("w"),
        last_gc_version: 9,
        from_version_excluded: 0,
        max_version: 0,
        key_values: vec![],
    };
    assert_eq!(r.apply_delta(&cut, t), Err(Refused::NothingNew));
    assert_eq!(r, before, "no reset on an empty delta");
}

#[test]
fn old_tombstones_and_older_versions_are_skipped() {
    let t = Instant::now();
    let id = node("w");
    let mut r = NodeState::new();
    // Receiver already at gc 4, max 5.
    let base = NodeDelta {
        node: id.clone(),
        last_gc_version: 4,
        from_version_excluded: 0,
        max_version: 5,
        key_values: vec![KeyValueUpdate {
            key: "x".into(),
            value: "5".into(),
            version: 5,
            status: DeletionStatus::Set,
        }],
    };
    r.apply_delta(&base, t).unwrap();
    assert_eq!((r.last_gc_version(), r.max_version()), (4, 5));
    let next = NodeDelta {
        node: id,
        last_gc_version: 4,
        from_version_excluded: 5,
        max_version: 7,
        key_values: vec![
            KeyValueUpdate {
                key: "y".into(),
                value: "".into(),
                version: 6,
                status: DeletionStatus::Deleted,
            },
            KeyValueUpdate {
                key: "x".into(),
                value: "7".into(),
                version: 7,
                status: DeletionStatus::Set,
            },
        ],
    };
    let applied = r.apply_delta(&next, t).unwrap();
    assert_eq!(applied.changed_keys, vec!["x", "y"]);
    assert_eq!(r.get("x"), Some("7"));
    assert_eq!(r.max_version(), 7);
}

/// One step of the writer's life.
#[derive(Clone, Debug)]
enum WriterOp {
    Set(u8, u8),
    Delete(u8),
    Ttl(u8, u8),
    Gc,
    /// Deliver a delta computed against the receiver's digest, cut after `keep` key-values.
    Sync {
        keep: usize,
    },
    /// Deliver again an earlier delta (duplicate or reordered), by index.
    Replay(usize),
}

fn arb_writer_op() -> impl Strategy<Value = WriterOp> {
    prop_oneof![
        4 => (0u8..6, any::<u8>()).prop_map(|(k, v)| WriterOp::Set(k, v)),
        2 => (0u8..6).prop_map(WriterOp::Delete),
        1 => (0u8..6, any::<u8>()).prop_map(|(k, v)| WriterOp::Ttl(k, v)),
        1 => Just(WriterOp::Gc),
        3 => (0usize..4).prop_map(|keep| WriterOp::Sync { keep }),
        2 => (0usize..64).prop_map(WriterOp::Replay),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Deltas applied in any order, duplicated or truncated converge to the writer's state, and
    /// the receiver's (last_gc_version, max_version) never goes down (in lexicographic order).
    #[test]
    fn deltas_in_any_order_converge_to_the_writer(ops in proptest::collection::vec(arb_writer_op(), 1..80)) {
        let t0 = Instant::now();
        let grace = Duration::from_secs(10);
        let id = node("w");
        let mut w = NodeState::new();
        let mut r = NodeState::new();
        let mut sent: Vec<NodeDelta> = Vec::new();
        let mut clock = t0;
        for op in ops {
            clock += Duration::from_secs(3);
            let before = (r.last_gc_version(), r.max_version());
            match op {
                WriterOp::Set(k, v) => { w.set(&format!("k{k}"), &v.to_string()); }
                WriterOp::Delete(k) => { w.delete(&format!("k{k}"), clock); }
                WriterOp::Ttl(k, v) => { w.set_with_ttl(&format!("k{k}"), &v.to_string(), clock); }
                WriterOp::Gc => {
                    w.gc_tombstones(clock, grace);
                    r.gc_tombstones(clock, grace);
                }
                WriterOp::Sync { keep } => {
                    if let Some(d) = delta_for(&w, &id, Some(&r.digest()), keep) {
                        let _ = r.apply_delta(&d, clock);
                        sent.push(d);
                    }
                }
                WriterOp::Replay(i) => {
                    if !sent.is_empty() {
                        let d = sent[i % sent.len()].clone();
                        let _ = r.apply_delta(&d, clock);
                    }
                }
            }
            // Lexicographic: a reset may lower max_version, but only while raising last_gc_version.
            let after = (r.last_gc_version(), r.max_version());
            prop_assert!(after >= before, "{before:?} -> {after:?}");
        }
        // Every deletion everyone holds outlives its grace period (each node collects on its
        // own clock), then a final anti-entropy: full exchanges until nothing is left to send.
        clock += grace * 2;
        w.gc_tombstones(clock, grace);
        r.gc_tombstones(clock, grace);
        for _ in 0..4 {
            if let Some(d) = delta_for(&w, &id, Some(&r.digest()), usize::MAX) {
                r.apply_delta(&d, clock).unwrap();
            }
        }
        prop_assert!(delta_for(&w, &id, Some(&r.digest()), usize::MAX).is_none());
        prop_assert_eq!(r.max_version(), w.max_version());
        prop_assert_eq!(r.visible().collect::<Vec<_>>(), w.visible().collect::<Vec<_>>());
    }
}

#[test]
fn a_delta_older_than_an_applied_collection_cannot_bring_values_back() {
    let t = Instant::now();
    let grace = Duration::from_secs(1);
    let id = node("w");
    let mut w = NodeState::new();
    w.set("keep", "1"); // v1
    w.set("old", "x"); // v2
    let old_era = delta_for(&w, &id, None, usize::MAX).unwrap();
    w.delete("old", t); // v3, then collected: gc 3
    w.gc_tombstones(t + Duration::from_secs(2), grace);
    w.set("new", "y"); // v4

    // The receiver resets from the current era but the datagram only had room for v1.
    let mut r = NodeState::new();
    let cut = delta_for(&w, &id, None, 1).unwrap();
    assert_eq!(
        (
            cut.last_gc_version,
            cut.from_version_excluded,
            cut.max_version
        ),
        (3, 0, 1)
    );
    assert!(r.apply_delta(&cut, t).unwrap().changed_keys == vec!["keep"]);
    assert_eq!((r.last_gc_version(), r.max_version()), (3, 1));

    // The old-era datagram arrives late: it would bring back "old", which its owner deleted.
    let before = r.clone();
    assert_eq!(r.apply_delta(&old_era, t), Err(Refused::PredatesCollection));
    assert_eq!(r, before);

    // The current era completes the state.
    let rest = delta_for(&w, &id, Some(&r.digest()), usize::MAX).unwrap();
    r.apply_delta(&rest, t).unwrap();
    assert_eq!(
        r.visible().collect::<Vec<_>>(),
        w.visible().collect::<Vec<_>>()
    );
    assert_eq!(r.get("old"), None);
}

/// `ClusterState` kept by the two insertion paths, and lookups by position, must agree with a
/// plain sorted list whatever order ids arrive in.
mod cluster_state {
    use super::*;
    use crate::wire::{Compression, ProtocolVersion, decode_chitchat_view};
    use crate::wire::{NodeDigest, encode_digest_entries};

    fn id(name: &str, generation: u64, port: u16) -> NodeId {
        NodeId::new(
            name,
            generation,
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
    }

    fn check_index(state: &ClusterState<u32>) {
        for (i, (node, _)) in state.iter().enumerate() {
            assert_eq!(state.index_of(node.as_ref()), Some(i), "{node}");
        }
        let ids: Vec<&NodeId> = state.iter().map(|(id, _)| id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicate");
    }

    /// A SynAck holding `ids` in the given order, decoded, for walking its digest.
    fn digest_bytes(ids: &[NodeId]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::wire::encode_header(
            ProtocolVersion::V0,
            crate::wire::MessageType::SynAck,
            &mut out,
        );
        let entries = ids.iter().map(|id| {
            (
                id,
                NodeDigest {
                    heartbeat: 1,
                    last_gc_version: 0,
                    max_version: 0,
                },
            )
        });
        encode_digest_entries(ProtocolVersion::V0, entries, Compression::None, &mut out);
        crate::wire::DeltaWriter::with_compression(1_000, Compression::None).finish(&mut out);
        out
    }

    proptest! {
        #[test]
        fn insert_many_and_node_or_insert_agree(
            first in proptest::collection::vec((0u8..20, 1u64..3, 0u16..3), 0..30),
            second in proptest::collection::vec((0u8..20, 1u64..3, 0u16..3), 0..30),
        ) {
            let make = |v: &[(u8, u64, u16)]| -> Vec<NodeId> {
                v.iter().map(|&(n, g, p)| id(&format!("n{n}"), g, 7000 + p)).collect()
            };
            let (first, second) = (make(&first), make(&second));
            let mut batched: ClusterState<u32> = ClusterState::new();
            let mut single: ClusterState<u32> = ClusterState::new();
            batched.insert_many(first.iter().cloned());
            let added = batched.insert_many(second.iter().cloned());
            for node in first.iter().chain(&second) {
                single.node_or_insert(node);
            }
            let mut expected: Vec<NodeId> = first.iter().chain(&second).cloned().collect();
            expected.sort();
            expected.dedup();
            let before: std::collections::BTreeSet<&NodeId> = first.iter().collect();
            let fresh: std::collections::BTreeSet<&NodeId> =
                second.iter().filter(|id| !before.contains(id)).collect();
            prop_assert_eq!(added, fresh.len());
            let got: Vec<NodeId> = batched.iter().map(|(id, _)| id.clone()).collect();
            let got_single: Vec<NodeId> = single.iter().map(|(id, _)| id.clone()).collect();
            prop_assert_eq!(&got, &expected);
            prop_assert_eq!(&got_single, &expected);
            check_index(&batched);
        }

        #[test]
        fn a_digest_walk_finds_every_known_id_in_any_order(
            known in proptest::collection::btree_set((0u8..30, 1u64..3), 1..20),
            unknown in proptest::collection::btree_set((30u8..40, 1u64..3), 0..5),
            order in any::<u64>(),
        ) {
            let mut state: ClusterState<u32> = ClusterState::new();
            // Even numbers get a long name sharing its first 40 bytes with the others: the
            // inline name key cannot tell those apart alone.
            let name = |n: u8| {
                let long = "a-very-long-common-prefix-of-node-names-";
                format!("{}n{n:02}", if n % 2 == 0 { long } else { "" })
            };
            let known: Vec<NodeId> = known.iter().map(|&(n, g)| id(&name(n), g, 7000)).collect();
            state.insert_many(known.iter().cloned());
            let mut listed: Vec<NodeId> = known.clone();
            listed.extend(unknown.iter().map(|&(n, g)| id(&name(n), g, 7000)));
            // Sorted (the usual case), or shuffled by a seeded rotation and reversal.
            match order % 3 {
                0 => listed.sort(),
                1 => listed.reverse(),
                _ => {
                    let by = (order as usize / 3) % listed.len();
                    listed.rotate_left(by);
                }
            }
            let bytes = digest_bytes(&listed);
            let (_, message) = decode_chitchat_view(&bytes).unwrap();
            let crate::wire::MessageView::SynAck { digest, .. } = message else {
                panic!("a SynAck");
            };
            let mut hint = 0;
            for ((raw, _), listed_id) in digest.iter_raw().zip(&listed) {
                let found = state.position_near_raw(hint, raw);
                prop_assert_eq!(found, state.index_of(listed_id.as_ref()));
                if let Some(i) = found {
                    hint = i + 1;
                }
            }
        }
    }
}

/// Two ids that differ only in an IPv6 scope id (or flow info) share one wire encoding, which
/// cannot tell them apart: they are matched part by part, as the hash index does.
#[test]
fn ids_differing_only_in_ipv6_scope_are_never_confused() {
    use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
    let at = |scope: u32, flow: u32| {
        NodeId::new(
            "a",
            1,
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
                7000,
                flow,
                scope,
            )),
        )
    };
    let (plain, scoped, flowing) = (at(0, 0), at(3, 0), at(0, 9));
    let mut state: ClusterState<u32> = ClusterState::new();
    state.node_or_insert(&scoped);
    assert_eq!(state.position_near(0, plain.as_ref()), None);
    assert_eq!(state.index_of(plain.as_ref()), None);
    state.node_or_insert(&plain);
    state.node_or_insert(&flowing);
    for id in [&plain, &scoped, &flowing] {
        let expected = state.index_of(id.as_ref());
        assert!(expected.is_some());
        for hint in 0..3 {
            assert_eq!(
                state.position_near(hint, id.as_ref()),
                expected,
                "{id} from {hint}"
            );
        }
    }
}
