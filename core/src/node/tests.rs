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

#[test]
fn drain_takes_every_output_and_reports_what_it_means() {
    let (a, b) = (id("a", 7800), id("b", 7801));
    let start = Instant::now();
    let wall = WallTime::from_unix_millis(WALL0).unwrap();
    let mut na = Node::new(config(&a, &[]), start);
    let mut nb = Node::new(config(&b, &[&a]), start);
    let (mut transmits, mut events) = (Vec::new(), Vec::new());
    // b's first round: one Syn to its seed, no event, the next round due in an interval.
    nb.handle_timeout(start);
    let drained = nb.drain(wall, &mut transmits, &mut events);
    assert_eq!(transmits.len(), 1);
    assert_eq!(transmits[0].destination, a.gossip_addr());
    assert!(events.is_empty());
    assert_eq!(drained.deadline, nb.poll_timeout());
    assert!(!drained.members_changed && !drained.leave_announced);
    assert!(nb.poll_transmit(wall).is_none(), "everything was taken");
    // Gossip on until a sees b join: that drain says the member list changed, and no drain
    // before it did.
    let mut joined_at = None;
    for round in 0..30u32 {
        let now = start + Duration::from_millis(100) * round;
        let mut nodes = [&mut na, &mut nb];
        for n in nodes.iter_mut() {
            n.handle_timeout(now);
        }
        loop {
            let mut moved = false;
            for i in 0..2 {
                transmits.clear();
                events.clear();
                let drained = nodes[i].drain(wall, &mut transmits, &mut events);
                let changed = events.iter().any(
                    |e| matches!(e, NodeEvent::Membership(m) if crate::members::changes_members(m)),
                );
                assert_eq!(drained.members_changed, changed);
                if i == 0 && changed && joined_at.is_none() {
                    assert!(events.iter().any(|e| matches!(
                        e,
                        NodeEvent::Membership(MembershipEvent::Joined(m)) if m.id == b
                    )));
                    joined_at = Some(round);
                }
                let from = [&a, &b][i].gossip_addr();
                for t in transmits.drain(..) {
                    moved = true;
                    let j = usize::from(t.destination == b.gossip_addr());
                    nodes[j]
                        .handle_datagram(now, wall, from, &t.payload)
                        .unwrap();
                }
            }
            if !moved {
                break;
            }
        }
    }
    assert!(joined_at.is_some(), "a never saw b join");
    // a leaves: its Syn goes to b, b's SynAck comes back, and the drain after it reports
    // the departure announced (b, the only peer contacted, has answered).
    let now = start + Duration::from_secs(3);
    events.clear();
    transmits.clear();
    na.membership_mut().leave(now);
    assert!(!na.drain(wall, &mut transmits, &mut events).leave_announced);
    let syn = transmits.pop().expect("a Syn to b");
    nb.handle_datagram(now, wall, a.gossip_addr(), &syn.payload)
        .unwrap();
    transmits.clear();
    nb.drain(wall, &mut transmits, &mut events);
    let syn_ack = transmits.pop().expect("b's SynAck");
    events.clear();
    na.handle_datagram(now, wall, b.gossip_addr(), &syn_ack.payload)
        .unwrap();
    let drained = na.drain(wall, &mut transmits, &mut events);
    assert!(drained.leave_announced);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, NodeEvent::Membership(MembershipEvent::LeaveAnnounced)))
    );
}
