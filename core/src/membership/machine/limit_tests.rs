//! The bounds of [`StateLimits`]: what peers send past them is not stored (and is reported at
//! a bounded rate), and the local node's own writes are held to them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::membership::{ENTRY_OVERHEAD, StateLimits};
use crate::wire::{
    self, DeletionStatus, Delta, Digest, KeyValueUpdate, Message, NodeDelta, ProtocolVersion,
};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn id(name: &str, port: u16) -> NodeId {
    NodeId::new(name, 1, addr(port))
}

fn machine(limits: StateLimits) -> Membership {
    let mut config = MembershipConfig::new(id("a", 1000), "test");
    config.limits = limits;
    Membership::new(config, Instant::now())
}

/// A Syn of cluster `test` whose digest lists `ids`, each with heartbeat 5.
fn syn(ids: &[NodeId]) -> Vec<u8> {
    let mut entries: Vec<(NodeId, NodeDigest)> = ids
        .iter()
        .map(|id| {
            let digest = NodeDigest {
                heartbeat: 5,
                last_gc_version: 0,
                max_version: 0,
            };
            (id.clone(), digest)
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let message = Message::Syn {
        cluster_id: "test".into(),
        digest: Digest { entries },
    };
    let mut bytes = Vec::new();
    wire::encode_chitchat(ProtocolVersion::V0, &message, &mut bytes);
    bytes
}

/// An Ack carrying `delta`.
fn ack(delta: NodeDelta) -> Vec<u8> {
    let message = Message::Ack {
        delta: Delta { nodes: vec![delta] },
    };
    let mut bytes = Vec::new();
    wire::encode_chitchat(ProtocolVersion::V0, &message, &mut bytes);
    bytes
}

fn kv(key: &str, value: &str, version: u64) -> KeyValueUpdate {
    KeyValueUpdate {
        key: key.into(),
        value: value.into(),
        version,
        status: DeletionStatus::Set,
    }
}

/// A delta of `node` carrying `key_values` above `from`.
fn delta(node: &NodeId, from: u64, key_values: Vec<KeyValueUpdate>) -> NodeDelta {
    NodeDelta {
        node: node.clone(),
        last_gc_version: 0,
        from_version_excluded: from,
        max_version: key_values.iter().map(|kv| kv.version).max().unwrap_or(from),
        key_values,
    }
}

fn over_limit_events(m: &mut Membership) -> Vec<(SocketAddr, Limit)> {
    std::iter::from_fn(|| m.poll_event())
        .filter_map(|event| match event {
            Event::OverLimit { from, limit, .. } => Some((from, limit)),
            _ => None,
        })
        .collect()
}

/// Introduces `node` (heard of through its own Syn, so confirmed) to `m`.
fn learn(m: &mut Membership, node: &NodeId) {
    m.handle_datagram(
        Instant::now(),
        node.gossip_addr(),
        &syn(std::slice::from_ref(node)),
    )
    .unwrap();
}

#[test]
fn members_past_the_bound_are_not_added_and_reported_once_per_message() {
    let mut m = machine(StateLimits {
        max_members: 5,
        ..StateLimits::default()
    });
    let sender = id("b", 2000);
    let mut listed = vec![sender.clone()];
    listed.extend((0..19).map(|i| id(&format!("m{i:02}"), 3000 + i)));
    m.handle_datagram(Instant::now(), sender.gossip_addr(), &syn(&listed))
        .unwrap();
    assert_eq!(m.state.len(), 5, "this node and 4 of the 20 listed");
    assert!(
        m.member(&sender).is_some(),
        "the sender, listed first, is in"
    );
    assert_eq!(
        over_limit_events(&mut m),
        [(sender.gossip_addr(), Limit::Members)]
    );
    assert_eq!(m.diagnostics().over_limit, 1);
    // Again: nothing more is added, and the refusal is counted (not reported again yet).
    m.handle_datagram(Instant::now(), sender.gossip_addr(), &syn(&listed))
        .unwrap();
    assert_eq!(m.state.len(), 5);
    assert_eq!(m.diagnostics().over_limit, 2);
    assert!(over_limit_events(&mut m).is_empty());
}

#[test]
fn a_sender_is_believed_for_so_many_members_until_they_speak_for_themselves() {
    let mut m = machine(StateLimits {
        max_unconfirmed_per_sender: 3,
        ..StateLimits::default()
    });
    let now = Instant::now();
    let sender = id("b", 2000);
    let others: Vec<NodeId> = (0..10).map(|i| id(&format!("m{i:02}"), 3000 + i)).collect();
    let mut listed = vec![sender.clone()];
    listed.extend(others.iter().cloned());
    m.handle_datagram(now, sender.gossip_addr(), &syn(&listed))
        .unwrap();
    // The sender speaks for itself; three more are believed on its word.
    assert_eq!(m.state.len(), 1 + 1 + 3);
    assert_eq!(
        over_limit_events(&mut m),
        [(sender.gossip_addr(), Limit::UnconfirmedPerSender)]
    );
    assert_eq!(m.admission.unconfirmed(), 3);
    // One of them contacts this node itself: it is confirmed, and the sender is believed for
    // one more.
    let first = others
        .iter()
        .find(|o| m.member(o).is_some())
        .expect("one was added")
        .clone();
    m.handle_datagram(now, first.gossip_addr(), &syn(std::slice::from_ref(&first)))
        .unwrap();
    assert_eq!(m.admission.unconfirmed(), 2);
    m.handle_datagram(now, sender.gossip_addr(), &syn(&listed))
        .unwrap();
    assert_eq!(m.state.len(), 1 + 1 + 4);
    // Another sender has a bound of its own.
    let relay = id("c", 2001);
    let mut relayed = vec![relay.clone()];
    relayed.extend(others.iter().cloned());
    m.handle_datagram(now, relay.gossip_addr(), &syn(&relayed))
        .unwrap();
    assert_eq!(m.state.len(), 1 + 2 + 4 + 3);
    assert_eq!(m.admission.unconfirmed(), 6);
}

#[test]
fn a_member_delta_past_its_bounds_is_refused_whole_and_changes_nothing() {
    let limits = StateLimits {
        max_keys_per_member: 3,
        max_key_len: 8,
        max_value_len: 8,
        max_bytes_per_member: 3 * ENTRY_OVERHEAD + 20,
        ..StateLimits::default()
    };
    let mut m = machine(limits);
    let c = id("c", 2002);
    learn(&mut m, &c);
    let now = Instant::now();
    m.handle_datagram(
        now,
        c.gossip_addr(),
        &ack(delta(&c, 0, vec![kv("k1", "v", 1), kv("k2", "v", 2)])),
    )
    .unwrap();
    let before = m.node_state(&c).unwrap().clone();
    assert_eq!(before.len(), 2);
    while m.poll_event().is_some() {}
    let refused = [
        (
            delta(&c, 2, vec![kv("k3", "v", 3), kv("k4", "v", 4)]),
            Limit::KeysPerMember,
        ),
        (
            delta(&c, 2, vec![kv("k1", "123456789", 3)]),
            Limit::ValueLength,
        ),
        (
            delta(&c, 2, vec![kv("123456789", "v", 3)]),
            Limit::KeyLength,
        ),
        (
            delta(
                &c,
                2,
                vec![
                    kv("k1", "12345678", 3),
                    kv("k2", "12345678", 4),
                    kv("k3", "12345678", 5),
                ],
            ),
            Limit::BytesPerMember,
        ),
    ];
    for (i, (refused, limit)) in refused.into_iter().enumerate() {
        // A sender of its own each time, so that every refusal is reported.
        let from = addr(4000 + u16::try_from(i).unwrap());
        m.handle_datagram(now, from, &ack(refused)).unwrap();
        assert_eq!(m.node_state(&c), Some(&before), "{limit}: unchanged");
        assert_eq!(over_limit_events(&mut m), [(from, limit)]);
    }
    assert_eq!(m.diagnostics().over_limit, 4);
    // A delta within the bounds still applies.
    m.handle_datagram(
        now,
        c.gossip_addr(),
        &ack(delta(&c, 2, vec![kv("k3", "12345678", 3)])),
    )
    .unwrap();
    assert_eq!(m.node_state(&c).unwrap().get("k3"), Some("12345678"));
    assert_eq!(
        m.node_state(&c).unwrap().bytes(),
        3 * ENTRY_OVERHEAD + 3 * 2 + 1 + 1 + 8
    );
}

#[test]
fn the_whole_state_is_bounded_in_bytes() {
    let per_entry = ENTRY_OVERHEAD + 2;
    let mut m = machine(StateLimits {
        max_state_bytes: 3 * per_entry,
        ..StateLimits::default()
    });
    let (c, d) = (id("c", 2002), id("d", 2003));
    learn(&mut m, &c);
    learn(&mut m, &d);
    let now = Instant::now();
    m.handle_datagram(
        now,
        c.gossip_addr(),
        &ack(delta(&c, 0, vec![kv("x", "1", 1), kv("y", "1", 2)])),
    )
    .unwrap();
    m.handle_datagram(
        now,
        d.gossip_addr(),
        &ack(delta(&d, 0, vec![kv("x", "1", 1), kv("y", "1", 2)])),
    )
    .unwrap();
    assert_eq!(m.node_state(&c).unwrap().len(), 2);
    assert!(
        m.node_state(&d).unwrap().is_empty(),
        "d's delta was refused"
    );
    assert_eq!(
        over_limit_events(&mut m),
        [(d.gossip_addr(), Limit::StateBytes)]
    );
    // The local node's writes count in the same budget.
    assert_eq!(m.set(now, "z", "1"), Ok(()), "one more entry fits exactly");
    assert_eq!(
        m.set(now, "w", "1"),
        Err(KeyError::StateFull {
            limit: Limit::StateBytes,
            max: 3 * per_entry
        })
    );
}

#[test]
fn local_writes_past_the_bounds_are_refused_and_change_nothing() {
    let mut config = MembershipConfig::new(id("a", 1000), "test");
    config.limits = StateLimits {
        max_keys_per_member: 2,
        max_key_len: 4,
        max_value_len: 4,
        ..StateLimits::default()
    };
    let grace = config.marked_for_deletion_grace_period;
    let now = Instant::now();
    let mut m = Membership::new(config, now);
    assert_eq!(
        m.set(now, "long-key", "v"),
        Err(KeyError::TooLong {
            limit: Limit::KeyLength,
            len: 8,
            max: 4
        })
    );
    assert_eq!(
        m.set_with_ttl(now, "k", "12345"),
        Err(KeyError::TooLong {
            limit: Limit::ValueLength,
            len: 5,
            max: 4
        })
    );
    m.set(now, "k1", "v").unwrap();
    m.set(now, "k2", "v").unwrap();
    // Replacing a value is no new entry.
    m.set(now, "k2", "vv").unwrap();
    let version = m.members_version();
    let full = Err(KeyError::StateFull {
        limit: Limit::KeysPerMember,
        max: 2,
    });
    assert_eq!(m.set(now, "k3", "v"), full);
    // A tombstone still counts until it is collected.
    assert_eq!(m.delete(now, "k2"), Ok(true));
    assert_eq!(m.set(now, "k3", "v"), full);
    assert!(m.local_member().get("k3").is_none());
    assert!(
        m.members_version() > version,
        "the delete changed the member"
    );
    m.handle_timeout(now + grace + Duration::from_secs(1));
    assert_eq!(
        m.set(now + grace + Duration::from_secs(1), "k3", "v"),
        Ok(())
    );
    assert_eq!(m.local_member().get("k3"), Some("v"));
}

#[test]
fn collected_nodes_are_remembered_up_to_the_bound() {
    let mut config = MembershipConfig::new(id("a", 1000), "test");
    config.removed_nodes_remembered = 3;
    let now = Instant::now();
    let mut m = Membership::new(config, now);
    for i in 0..10u16 {
        let name = format!("n{i}");
        let old = NodeId::new(name.as_str(), 1, addr(5000 + i));
        let new = NodeId::new(name.as_str(), 2, addr(5000 + i));
        learn(&mut m, &old);
        // A newer generation retires the older one (which is remembered as removed).
        learn(&mut m, &new);
        assert!(m.member(&old).is_none());
    }
    assert_eq!(m.removed.len(), 3);
    assert_eq!(m.state.len(), 11);
}
