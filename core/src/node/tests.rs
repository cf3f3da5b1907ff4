//! Tests of the node-level machine: envelope, clock observation, compatible mode.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::NodeId;
use crate::membership::MemberStatus;

const WALL0: u64 = 1_760_000_000_000;

fn id(name: &str, port: u16) -> NodeId {
    NodeId::new(name, 1, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn config(me: &NodeId, seeds: &[&NodeId]) -> NodeConfig {
    let mut m = MembershipConfig::new(me.clone(), "test");
    m.gossip_interval = Duration::from_millis(100);
    m.seeds = seeds.iter().map(|s| s.gossip_addr()).collect();
    m.rng_seed = u64::from(me.gossip_addr().port());
    NodeConfig::new(m)
}

/// Delivers every pending datagram instantly until the network is quiet. `walls[i]` is node
/// i's wall clock. Returns the datagrams delivered.
fn exchange(nodes: &mut [Node], now: Instant, walls: &[WallTime]) -> Vec<Vec<u8>> {
    let mut seen = Vec::new();
    loop {
        let mut moved = false;
        for i in 0..nodes.len() {
            while let Some(t) = nodes[i].poll_transmit(walls[i]) {
                moved = true;
                let from = nodes[i].membership().node_id().gossip_addr();
                seen.push(t.payload.clone());
                if let Some(j) = nodes
                    .iter()
                    .position(|n| n.membership().node_id().gossip_addr() == t.destination)
                {
                    nodes[j]
                        .handle_datagram(now, walls[j], from, &t.payload)
                        .expect("valid datagram");
                }
            }
        }
        if !moved {
            return seen;
        }
    }
}

fn run(nodes: &mut [Node], start: Instant, rounds: u32, walls: &[WallTime]) -> Vec<Vec<u8>> {
    let mut seen = Vec::new();
    for r in 0..rounds {
        let now = start + Duration::from_millis(100) * r;
        for n in nodes.iter_mut() {
            n.handle_timeout(now);
        }
        seen.extend(exchange(nodes, now, walls));
    }
    seen
}

#[test]
fn envelope_carries_the_clock_and_orders_the_receiver_after_the_sender() {
    let start = Instant::now();
    let (a, b) = (id("a", 7001), id("b", 7002));
    let mut nodes = vec![
        Node::new(config(&a, &[]), start),
        Node::new(config(&b, &[&a]), start),
    ];
    // b's wall clock is 300 ms ahead of a's: within the drift bound.
    let walls = [
        WallTime::from_unix_millis(WALL0).unwrap(),
        WallTime::from_unix_millis(WALL0 + 300).unwrap(),
    ];
    let seen = run(&mut nodes, start, 10, &walls);
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|d| d[..2] == [0x47, 0xc0]),
        "every datagram enveloped"
    );
    // a observed b's timestamps: its clock runs at b's time.
    let a_last = nodes[0].clock().last().unwrap();
    assert!(a_last.millis() >= WALL0 + 300, "{a_last}");
    assert_eq!(nodes[0].membership().status(&b), Some(MemberStatus::Live));
    while let Some(e) = nodes[0].poll_event() {
        assert!(!matches!(e, NodeEvent::ClockSkew { .. }), "{e:?}");
    }
}

#[test]
fn a_peer_beyond_the_drift_bound_is_reported_and_does_not_move_the_clock() {
    let start = Instant::now();
    let (a, b) = (id("a", 7001), id("b", 7002));
    let mut nodes = vec![
        Node::new(config(&a, &[]), start),
        Node::new(config(&b, &[&a]), start),
    ];
    // b's wall clock is 2 s ahead.
    let walls = [
        WallTime::from_unix_millis(WALL0).unwrap(),
        WallTime::from_unix_millis(WALL0 + 2_000).unwrap(),
    ];
    run(&mut nodes, start, 10, &walls);
    let a_last = nodes[0].clock().last().unwrap();
    assert!(
        a_last.millis() < WALL0 + 1_000,
        "a's clock was not dragged: {a_last}"
    );
    let mut skews = 0;
    while let Some(e) = nodes[0].poll_event() {
        if let NodeEvent::ClockSkew { from, error, .. } = e {
            assert_eq!(from, b.gossip_addr());
            assert!(matches!(error, ClockError::DriftExceeded { .. }));
            skews += 1;
        }
    }
    assert!(skews > 0);
    // Gossip still works: the skewed peer is a member.
    assert_eq!(nodes[0].membership().status(&b), Some(MemberStatus::Live));
}

#[test]
fn compatible_mode_sends_bare_chitchat_and_both_forms_interoperate() {
    let start = Instant::now();
    let (a, b) = (id("a", 7001), id("b", 7002));
    let mut compat = config(&b, &[&a]);
    compat.chitchat_compatible = true;
    let mut nodes = vec![Node::new(config(&a, &[]), start), Node::new(compat, start)];
    let walls = [WallTime::from_unix_millis(WALL0).unwrap(); 2];
    let seen = run(&mut nodes, start, 10, &walls);
    assert!(
        seen.iter().any(|d| d[..2] == [0x53, 0xb0]),
        "bare chitchat from b"
    );
    assert!(
        seen.iter().any(|d| d[..2] == [0x47, 0xc0]),
        "enveloped from a"
    );
    assert_eq!(nodes[0].membership().status(&b), Some(MemberStatus::Live));
    assert_eq!(nodes[1].membership().status(&a), Some(MemberStatus::Live));
    assert!(nodes[1].is_chitchat_compatible());
}

#[test]
fn garbage_is_refused_without_changing_anything() {
    let start = Instant::now();
    let a = id("a", 7001);
    let mut node = Node::new(config(&a, &[]), start);
    let wall = WallTime::from_unix_millis(WALL0).unwrap();
    let before = node.membership().node_state(&a).unwrap().clone();
    for bad in [
        &b""[..],
        b"\x47\xc0",
        b"\x47\xc0\x01\x00",
        b"\x53\xb0\x09\x00",
        b"hello world",
    ] {
        assert!(
            node.handle_datagram(start, wall, a.gossip_addr(), bad)
                .is_err()
        );
    }
    assert_eq!(
        node.membership().node_state(&a).unwrap(),
        &before,
        "heartbeat untouched"
    );
    assert!(node.poll_transmit(wall).is_none());
    assert!(node.clock().last().is_none());
}
