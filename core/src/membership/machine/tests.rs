//! Unit tests of the membership machine, on an instant in-memory network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::membership::FailureDetectorConfig;
use crate::membership::KeyError;
use crate::wire::{self, ProtocolVersion};

const INTERVAL: Duration = Duration::from_millis(100);

fn id(name: &str, generation: u64, port: u16) -> NodeId {
    NodeId::new(name, generation, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn config(me: &NodeId, seed: Option<&NodeId>) -> MembershipConfig {
    let mut c = MembershipConfig::new(me.clone(), "test");
    c.gossip_interval = INTERVAL;
    c.seeds = seed.map(|s| vec![s.gossip_addr()]).unwrap_or_default();
    c.rng_seed = u64::from(me.gossip_addr().port()) ^ me.generation();
    c.failure_detector = FailureDetectorConfig {
        initial_interval: INTERVAL,
        ..FailureDetectorConfig::default()
    };
    c
}

/// `n` nodes `n0`, `n1`, ... on ports from `base_port`, every one but the first seeded with the
/// first.
fn seeded_by_first(n: u16, base_port: u16) -> (Vec<NodeId>, Net) {
    let ids: Vec<NodeId> = (0..n)
        .map(|i| id(&format!("n{i}"), 1, base_port + i))
        .collect();
    let configs = ids
        .iter()
        .map(|me| config(me, (me != &ids[0]).then_some(&ids[0])))
        .collect();
    let net = Net::new(configs);
    (ids, net)
}

/// Nodes on an instant network; `down` nodes neither send nor receive.
struct Net {
    nodes: Vec<Membership>,
    down: Vec<bool>,
    now: Instant,
    events: Vec<Vec<Event>>,
}

impl Net {
    fn new(configs: Vec<MembershipConfig>) -> Self {
        let now = Instant::now();
        let n = configs.len();
        Self {
            nodes: configs
                .into_iter()
                .map(|c| Membership::new(c, now))
                .collect(),
            down: vec![false; n],
            now,
            events: vec![Vec::new(); n],
        }
    }

    fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.node_id().gossip_addr() == addr)
    }

    fn flush(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                let mut buf = Vec::new();
                while let Some(destination) = self.nodes[i].poll_transmit(&mut buf) {
                    moved = true;
                    if self.down[i] {
                        continue;
                    }
                    let from = self.nodes[i].node_id().gossip_addr();
                    if let Some(j) = self.index_of(destination) {
                        if !self.down[j] {
                            self.nodes[j].handle_datagram(self.now, from, &buf).unwrap();
                        }
                    }
                }
            }
            if !moved {
                break;
            }
        }
        for (i, node) in self.nodes.iter_mut().enumerate() {
            while let Some(e) = node.poll_event() {
                self.events[i].push(e);
            }
        }
    }

    fn round(&mut self) {
        for i in 0..self.nodes.len() {
            if !self.down[i] {
                self.nodes[i].handle_timeout(self.now);
            }
        }
        self.flush();
        self.now += INTERVAL;
    }

    fn rounds(&mut self, n: usize) {
        for _ in 0..n {
            self.round();
        }
    }
}

#[test]
fn nodes_join_through_a_seed_and_share_keys() {
    let ids: Vec<NodeId> = (0..5).map(|i| id(&format!("n{i}"), 1, 7000 + i)).collect();
    let mut configs: Vec<_> = ids
        .iter()
        .map(|me| config(me, (me != &ids[0]).then_some(&ids[0])))
        .collect();
    configs[3].initial_key_values = vec![("role".into(), "indexer".into())];
    let mut net = Net::new(configs);
    net.rounds(30);
    for node in &net.nodes {
        let live: Vec<NodeId> = node.members().live().map(|m| m.id.clone()).collect();
        assert_eq!(live, ids, "{} sees {live:?}", node.node_id());
        assert_eq!(node.member(&ids[3]).unwrap().get("role"), Some("indexer"));
    }
    // Joined events for every peer, with the member's state.
    let joined: Vec<&NodeId> = net.events[0]
        .iter()
        .filter_map(|e| match e {
            Event::Joined(m) => Some(&m.id),
            _ => None,
        })
        .collect();
    assert_eq!(joined.len(), 4);
    // A key set later propagates, with a KeyChanged event.
    net.nodes[1].set(net.now, "shard", "7").unwrap();
    net.rounds(10);
    assert_eq!(
        net.nodes[4].member(&ids[1]).unwrap().get("shard"),
        Some("7")
    );
    assert!(net.events[4].iter().any(|e| matches!(e,
        Event::KeyChanged { member, key, old: None, value }
            if member.id == ids[1] && key == "shard" && value.as_deref() == Some("7"))));
    // The writer reports its own change too.
    assert!(net.events[1].iter().any(|e| matches!(e,
        Event::KeyChanged { member, key, old: None, value }
            if member.id == ids[1] && key == "shard" && value.as_deref() == Some("7"))));
    // A new value carries the old one; a delete too.
    net.nodes[1].set(net.now, "shard", "8").unwrap();
    net.rounds(10);
    assert!(net.events[4].iter().any(|e| matches!(e,
        Event::KeyChanged { key, old, value, .. }
            if key == "shard" && old.as_deref() == Some("7") && value.as_deref() == Some("8"))));
    assert_eq!(net.nodes[1].delete(net.now, "shard"), Ok(true));
    net.rounds(10);
    assert_eq!(net.nodes[4].member(&ids[1]).unwrap().get("shard"), None);
    assert!(net.events[4].iter().any(|e| matches!(e,
        Event::KeyChanged { key, old, value: None, .. }
            if key == "shard" && old.as_deref() == Some("8"))));
    // One event per change of the visible value: node 4 heard of "7", "8" and the delete.
    let changes = net.events[4]
        .iter()
        .filter(|e| matches!(e, Event::KeyChanged { key, .. } if key == "shard"))
        .count();
    assert_eq!(changes, 3);
}

#[test]
fn a_crashed_node_is_failed_and_a_graceful_leave_is_left() {
    let (ids, mut net) = seeded_by_first(4, 7100);
    net.rounds(40);
    assert!(net.nodes.iter().all(|n| n.members().live_count() == 4));

    // Node 3 leaves gracefully: announced within a round, seen as Left at once.
    let now = net.now;
    net.nodes[3].leave(now);
    net.flush();
    assert!(net.nodes[3].leave_announced());
    net.down[3] = true;
    net.rounds(2);
    for i in 0..3 {
        assert_eq!(
            net.nodes[i].status(&ids[3]),
            Some(MemberStatus::Left),
            "node {i}"
        );
        assert!(
            net.events[i]
                .iter()
                .any(|e| matches!(e, Event::Left(m) if m.id == ids[3]))
        );
    }

    // Node 2 crashes: the detector fails it after its timeout, not before.
    net.down[2] = true;
    let timeout = net.nodes[0].failure_timeout(&ids[2]).unwrap();
    let crashed_at = net.now;
    while net.nodes[0].status(&ids[2]) == Some(MemberStatus::Live) {
        net.round();
        assert!(net.now - crashed_at < timeout * 3, "never detected");
    }
    assert!(net.now - crashed_at >= timeout);
    net.rounds(3);
    for i in 0..2 {
        assert_eq!(net.nodes[i].status(&ids[2]), Some(MemberStatus::Failed));
        assert!(
            net.events[i]
                .iter()
                .any(|e| matches!(e, Event::Failed(m) if m.id == ids[2]))
        );
    }
    assert_eq!(net.nodes[0].status(&ids[1]), Some(MemberStatus::Live));
    assert!(
        !net.events[0]
            .iter()
            .any(|e| matches!(e, Event::Failed(m) if m.id != ids[2]))
    );
}

#[test]
fn a_restart_with_a_higher_generation_retires_the_old_one() {
    let a = id("a", 1, 7200);
    let b1 = id("b", 1, 7201);
    let mut net = Net::new(vec![config(&a, None), config(&b1, Some(&a))]);
    net.rounds(30);
    assert_eq!(net.nodes[0].status(&b1), Some(MemberStatus::Live));
    // b restarts: same name and address, generation 2.
    let b2 = id("b", 2, 7201);
    net.nodes[1] = Membership::new(config(&b2, Some(&a)), net.now);
    net.rounds(30);
    assert_eq!(net.nodes[0].status(&b2), Some(MemberStatus::Live));
    assert_eq!(net.nodes[0].member(&b1), None, "old generation gone");
    assert!(net.events[0].contains(&Event::Removed(b1.clone())));
    let members: Vec<NodeId> = net.nodes[0]
        .members()
        .all()
        .iter()
        .map(|m| m.id.clone())
        .collect();
    assert_eq!(members, vec![a, b2]);
}

#[test]
fn another_cluster_gets_bad_cluster_and_changes_nothing() {
    let a = id("a", 1, 7300);
    let mut other = config(&id("x", 1, 7301), Some(&a));
    other.cluster_id = "elsewhere".into();
    let mut net = Net::new(vec![config(&a, None), other]);
    net.rounds(5);
    assert_eq!(
        net.nodes[0].members().all().len(),
        1,
        "the stranger is not a member"
    );
    assert!(
        net.events[0]
            .iter()
            .any(|e| matches!(e, Event::BadCluster { .. }))
    );
    assert!(
        net.events[1]
            .iter()
            .any(|e| matches!(e, Event::BadCluster { .. }))
    );
}

#[test]
fn malformed_datagrams_are_refused_without_effect() {
    let a = id("a", 1, 7400);
    let mut m = Membership::new(config(&a, None), Instant::now());
    let before = m.node_state(&a).unwrap().clone();
    let from = SocketAddr::from(([127, 0, 0, 1], 9));
    for bad in [
        &b""[..],
        b"\x53\xb0",
        b"\x53\xb0\x07\x00",
        b"\x53\xb0\x00\x00\x01\x00\x01",
    ] {
        assert!(m.handle_datagram(Instant::now(), from, bad).is_err());
    }
    assert_eq!(m.node_state(&a).unwrap(), &before);
    assert!(m.poll_transmit(&mut Vec::new()).is_none());
    assert!(m.poll_event().is_none());
}

#[test]
fn reserved_keys_are_refused_and_hidden() {
    let a = id("a", 1, 7500);
    let now = Instant::now();
    let mut m = Membership::new(config(&a, None), now);
    let reserved = |k: &str| Err(KeyError::Reserved(k.to_owned()));
    assert_eq!(m.set(now, LEAVING_KEY, "1"), reserved(LEAVING_KEY));
    assert_eq!(
        m.set(now, "__cohort/anything", "1"),
        reserved("__cohort/anything")
    );
    assert_eq!(
        m.set_with_ttl(now, "__cohort/x", "1"),
        reserved("__cohort/x")
    );
    assert_eq!(
        m.delete(now, LEAVING_KEY),
        reserved(LEAVING_KEY).map(|()| false)
    );
    assert_eq!(
        m.delete_after_ttl(now, LEAVING_KEY),
        reserved(LEAVING_KEY).map(|()| false)
    );
    assert_eq!(m.members_version(), 1, "refused commands change nothing");
    m.leave(now);
    assert_eq!(m.set(now, "role", "x"), Err(KeyError::Leaving));
    assert!(m.is_leaving());
    assert!(m.node_state(&a).unwrap().get(LEAVING_KEY).is_some());
    assert!(
        m.member(&a).unwrap().keys.is_empty(),
        "reserved keys are not shown"
    );
    assert!(m.leave_announced(), "no peer to tell");
}

#[test]
fn a_starved_node_suspects_itself_instead_of_failing_everyone() {
    let (_, mut net) = seeded_by_first(5, 7600);
    net.rounds(40);
    assert_eq!(net.nodes[0].members().live_count(), 5);
    net.events[0].clear();
    // Node 0 is paused for 5 s while the others go on without it.
    net.down[0] = true;
    for _ in 0..50 {
        net.round();
    }
    net.down[0] = false;
    net.rounds(10);
    assert!(net.events[0].contains(&Event::SelfSuspected));
    assert!(
        !net.events[0].iter().any(|e| matches!(e, Event::Failed(_))),
        "{:?}",
        net.events[0]
    );
    assert_eq!(net.nodes[0].members().live_count(), 5);
}

#[test]
fn the_liveness_predicate_gates_live() {
    let a = id("a", 1, 7700);
    let b = id("b", 1, 7701);
    let mut ca = config(&a, None);
    ca.liveness_predicate = Some(Arc::new(|s: &NodeState| s.get("ready").is_some()));
    let mut net = Net::new(vec![ca, config(&b, Some(&a))]);
    net.rounds(30);
    assert_eq!(net.nodes[0].status(&b), Some(MemberStatus::Unready));
    net.nodes[1].set(net.now, "ready", "yes").unwrap();
    net.rounds(5);
    assert_eq!(net.nodes[0].status(&b), Some(MemberStatus::Live));
    assert!(
        net.events[0]
            .iter()
            .any(|e| matches!(e, Event::Recovered(m) if m.id == b))
    );
}

#[test]
fn queues_are_bounded_and_a_slow_reader_is_told_it_lagged() {
    let a = id("a", 1, 7800);
    let mut c = config(&a, None);
    c.max_pending_events = 2;
    c.max_pending_transmits = 2;
    let now = Instant::now();
    let mut m = Membership::new(c, now);
    for port in 0..5 {
        m.gossip_to(SocketAddr::from(([127, 0, 0, 2], port)));
    }
    assert_eq!(m.dropped_transmits(), 3);
    // Five senders (one sender's reports are limited to one an interval).
    for port in 1..=5 {
        let from = SocketAddr::from(([127, 0, 0, 3], port));
        let mut bad = Vec::new();
        wire::encode_chitchat(ProtocolVersion::V0, &wire::Message::BadCluster, &mut bad);
        m.handle_datagram(now, from, &bad).unwrap();
    }
    assert!(matches!(
        m.poll_event(),
        Some(Event::Lagged { missed: 3, members }) if members.all().len() == 1
    ));
    assert!(matches!(m.poll_event(), Some(Event::BadCluster { .. })));
    assert!(matches!(m.poll_event(), Some(Event::BadCluster { .. })));
    assert_eq!(m.poll_event(), None);
}

/// A flood from another cluster costs one event per sender and interval, each saying how many
/// it stands for, and every message is counted.
#[test]
fn bad_input_is_reported_at_a_bounded_rate_and_counted() {
    let c = config(&id("a", 1, 7950), None);
    let interval = c.diagnostic_interval;
    let now = Instant::now();
    let mut m = Membership::new(c, now);
    let mut bad = Vec::new();
    wire::encode_chitchat(ProtocolVersion::V0, &wire::Message::BadCluster, &mut bad);
    let flooder = SocketAddr::from(([127, 0, 0, 4], 1));
    let other = SocketAddr::from(([127, 0, 0, 4], 2));
    for i in 0..1_000u32 {
        let at = now + Duration::from_micros(u64::from(i));
        m.handle_datagram(at, flooder, &bad).unwrap();
    }
    m.handle_datagram(now, other, &bad).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| m.poll_event()).collect();
    assert_eq!(
        events,
        [
            Event::BadCluster {
                from: flooder,
                suppressed: 0
            },
            Event::BadCluster {
                from: other,
                suppressed: 0
            }
        ]
    );
    let counts = m.diagnostics();
    assert_eq!((counts.bad_cluster, counts.suppressed), (1_001, 999));
    // The interval over, the next one is reported with the 999 it stands for.
    m.handle_datagram(now + interval, flooder, &bad).unwrap();
    assert_eq!(
        m.poll_event(),
        Some(Event::BadCluster {
            from: flooder,
            suppressed: 999
        })
    );
}

#[test]
fn replies_echo_the_version_of_the_request() {
    let a = id("a", 1, 7900);
    let b = id("b", 1, 7901);
    let mut cb = config(&b, Some(&a));
    cb.protocol_version = ProtocolVersion::V1;
    let now = Instant::now();
    let mut ma = Membership::new(config(&a, None), now);
    let mut mb = Membership::new(cb, now);
    mb.handle_timeout(now);
    let (mut syn, mut synack, mut ack) = (Vec::new(), Vec::new(), Vec::new());
    mb.poll_transmit(&mut syn).unwrap();
    assert_eq!(syn[2], 1, "b sends V1");
    ma.handle_datagram(now, b.gossip_addr(), &syn).unwrap();
    let to = ma.poll_transmit(&mut synack).unwrap();
    assert_eq!(to, b.gossip_addr());
    assert_eq!(&synack[..4], &[0x53, 0xb0, 1, 1], "a (V0) answers in V1");
    mb.handle_datagram(now, a.gossip_addr(), &synack).unwrap();
    mb.poll_transmit(&mut ack).unwrap();
    assert_eq!(&ack[..4], &[0x53, 0xb0, 1, 2]);
}

#[test]
fn the_only_peer_of_a_two_node_cluster_is_failed_when_it_crashes() {
    // The local node is not a peer of its own: with one peer, its silence is one death, not a
    // mass death that would make the node suspect itself.
    let ids: Vec<NodeId> = (0..2).map(|i| id(&format!("n{i}"), 1, 7300 + i)).collect();
    let configs = vec![config(&ids[0], None), config(&ids[1], Some(&ids[0]))];
    let mut net = Net::new(configs);
    net.rounds(30);
    assert_eq!(net.nodes[0].members().live_count(), 2);
    net.down[1] = true;
    net.rounds(30);
    assert_eq!(net.nodes[0].status(&ids[1]), Some(MemberStatus::Failed));
    assert!(!net.events[0].contains(&Event::SelfSuspected));
}

#[test]
fn a_crash_is_declared_at_its_deadline_not_at_the_next_round() {
    let (ids, mut net) = seeded_by_first(3, 7400);
    net.rounds(40);
    assert_eq!(net.nodes[0].members().live_count(), 3);
    // The last exchange happened one interval ago; node 2 crashes now. Its last heartbeats may
    // still reach node 0 through node 1 for a round or two.
    let last_exchange = net.now - INTERVAL;
    let timeout = net.nodes[0].failure_timeout(&ids[2]).unwrap();
    net.down[2] = true;
    // Drive the survivors by their own timers, as a driver does; rounds stay on the
    // interval grid (every node started at the same instant).
    let mut detected = None;
    for _ in 0..10_000 {
        if detected.is_some() {
            break;
        }
        let next = (0..2).map(|i| net.nodes[i].poll_timeout()).min().unwrap();
        net.now = next.max(net.now);
        for i in 0..2 {
            net.nodes[i].handle_timeout(net.now);
        }
        net.flush();
        if net.nodes[0].status(&ids[2]) == Some(MemberStatus::Failed) {
            detected = Some(net.now);
        }
        assert!(
            net.now < last_exchange + timeout + INTERVAL * 4,
            "never detected"
        );
    }
    let detected = detected.expect("detected within 10,000 timer events");
    assert!(
        detected > last_exchange + timeout,
        "not before the detector's timeout"
    );
    // Declared when the deadline passed, between two rounds: a check at rounds only would
    // have waited for the next multiple of the interval.
    let into_round = (detected - last_exchange).as_nanos() % INTERVAL.as_nanos();
    assert_ne!(into_round, 0, "detected on a round boundary");
    assert_eq!(
        net.events[0]
            .iter()
            .filter(|e| matches!(e, Event::Failed(m) if m.id == ids[2]))
            .count(),
        1
    );
}

#[test]
fn rounds_keep_a_fixed_rate_and_skip_a_long_pause() {
    let me = id("solo", 1, 7500);
    let start = Instant::now();
    let mut node = Membership::new(config(&me, None), start);
    assert_eq!(node.poll_timeout(), start);
    // Each round runs 3 ms late (a busy driver): the schedule stays on the interval grid
    // instead of sliding by 3 ms a round.
    for k in 0..10u32 {
        let due = start + INTERVAL * k;
        node.handle_timeout(due + Duration::from_millis(3));
        assert_eq!(node.poll_timeout(), start + INTERVAL * (k + 1));
    }
    // A pause longer than an interval: the missed rounds are skipped, not run back to back.
    let resumed = start + INTERVAL * 10 + INTERVAL * 5 / 2;
    node.handle_timeout(resumed);
    assert_eq!(node.poll_timeout(), resumed + INTERVAL);
}

#[test]
fn a_leave_is_announced_without_contacted_peers_that_are_gone() {
    let (ids, mut net) = seeded_by_first(4, 7600);
    net.rounds(40);
    assert!(net.nodes.iter().all(|n| n.members().live_count() == 4));
    // The rounds due now run, then nodes 2 and 3 crash and node 1 leaves at once, while
    // they still look live to it: it contacts nodes 0, 2 and 3.
    let start = net.now;
    for i in 0..4 {
        net.nodes[i].handle_timeout(start);
    }
    net.flush();
    net.down[2] = true;
    net.down[3] = true;
    net.nodes[1].leave(start);
    net.flush();
    let announced = |net: &Net| net.nodes[1].leave_announced();
    // Node 0 answered; 2 and 3 never will. Not announced yet, but the machine asks to be
    // woken when the wait for them ends.
    assert!(!announced(&net));
    // More answers from node 0 alone (as many as peers were contacted) are not answers from
    // every contacted peer.
    let n0 = ids[0].gossip_addr();
    for _ in 0..2 {
        net.nodes[1].send_syn(n0);
        net.flush();
    }
    assert!(!announced(&net));
    assert!(net.nodes[1].poll_timeout() <= start + INTERVAL);
    net.nodes[1].handle_timeout(start + INTERVAL - Duration::from_millis(1));
    net.flush();
    assert!(!announced(&net));
    // One interval on: announced, though the round then (which node 0 answers again) still
    // leaves fewer answers than peers contacted.
    net.now = start + INTERVAL;
    net.nodes[1].handle_timeout(net.now);
    net.flush();
    assert!(announced(&net));
    assert_eq!(net.nodes[0].status(&ids[1]), Some(MemberStatus::Left));
}

/// A node that leaves soon after joining, while it still sees its seed as `Joining` (its
/// detector has not heard two heartbeats yet) though the seed sees it live, tells the seed:
/// the seed sees it leave, not fail. Before, the departure went to detector-live peers only,
/// and with none it was "announced" to nobody.
#[test]
fn a_node_leaving_right_after_joining_tells_the_peers_it_still_sees_joining() {
    let a = id("a", 1, 8100);
    let b = id("b", 1, 8101);
    // b's detector never finds a on time (no phi is below a negative threshold): a stays
    // Joining to b, as it does in the first rounds after a real join, while a sees b live.
    let mut cb = config(&b, Some(&a));
    cb.failure_detector.phi_threshold = -1.0;
    let mut net = Net::new(vec![config(&a, None), cb]);
    let mut reached = false;
    for _ in 0..20 {
        net.round();
        if net.nodes[0].status(&b) == Some(MemberStatus::Live)
            && net.nodes[1].status(&a) == Some(MemberStatus::Joining)
        {
            reached = true;
            break;
        }
    }
    assert!(reached, "a sees b live while b still sees a joining");
    let now = net.now;
    net.nodes[1].leave(now);
    net.flush();
    assert!(net.nodes[1].leave_announced(), "a answered the departure");
    assert_eq!(net.nodes[0].status(&b), Some(MemberStatus::Left));
    assert!(
        net.events[0]
            .iter()
            .any(|e| matches!(e, Event::Left(m) if m.id == b))
    );
    // b is gone; a never declares it failed.
    net.down[1] = true;
    net.rounds(50);
    assert!(
        !net.events[0]
            .iter()
            .any(|e| matches!(e, Event::Failed(m) if m.id == b))
    );
}

/// A node heard of only through gossip, whose heartbeat never advances (it crashed before we
/// heard it): `Joining` to us, never `Failed`; for the protocol it is dead from first sight,
/// as chitchat's detector has it: out of our digests after half the dead-node grace period,
/// collected after the whole one.
#[test]
fn a_node_never_heard_heartbeating_is_joining_and_collected_as_chitchat_does() {
    use crate::wire::{
        DeletionStatus, Delta, Digest, KeyValueUpdate, Message, NodeDelta, NodeDigest,
    };
    let a = id("a", 1, 8200);
    let c = id("c", 1, 8202);
    let grace = Duration::from_secs(2);
    let mut ca = config(&a, None);
    ca.failure_detector.dead_node_grace_period = grace;
    let start = Instant::now();
    let mut m = Membership::new(ca, start);
    let teaching = Message::SynAck {
        digest: Digest {
            entries: vec![(
                c.clone(),
                NodeDigest {
                    heartbeat: 7,
                    last_gc_version: 0,
                    max_version: 1,
                },
            )],
        },
        delta: Delta {
            nodes: vec![NodeDelta {
                node: c.clone(),
                last_gc_version: 0,
                from_version_excluded: 0,
                max_version: 1,
                key_values: vec![KeyValueUpdate {
                    key: "k".into(),
                    value: "v".into(),
                    version: 1,
                    status: DeletionStatus::Set,
                }],
            }],
        },
    };
    let mut bytes = Vec::new();
    wire::encode_chitchat(ProtocolVersion::V0, &teaching, &mut bytes);
    let teacher = SocketAddr::from(([127, 0, 0, 1], 8201));
    m.handle_datagram(start, teacher, &bytes).unwrap();
    assert_eq!(m.status(&c), Some(MemberStatus::Joining));
    let digest_has_c = |m: &mut Membership| {
        m.gossip_to(teacher);
        let mut syn = Vec::new();
        while m.poll_transmit(&mut syn).is_some() {
            if let Ok((_, Message::Syn { digest, .. })) = wire::decode_chitchat(&syn) {
                return digest.entries.iter().any(|(id, _)| *id == c);
            }
        }
        panic!("no Syn");
    };
    let mut events = Vec::new();
    let mut now = start;
    let mut left_digests_at = None;
    while now < start + grace * 2 && m.status(&c).is_some() {
        m.handle_timeout(now);
        while m.poll_transmit(&mut Vec::new()).is_some() {}
        if m.status(&c).is_some() {
            assert_eq!(m.status(&c), Some(MemberStatus::Joining));
            if left_digests_at.is_none() && !digest_has_c(&mut m) {
                left_digests_at = Some(now - start);
            }
        }
        while let Some(e) = m.poll_event() {
            events.push(e);
        }
        now += INTERVAL;
    }
    let removed_at = now - INTERVAL - start;
    assert!(m.status(&c).is_none(), "collected");
    let left_digests_at = left_digests_at.expect("left the digests before");
    assert!(left_digests_at > grace / 2 && left_digests_at <= grace / 2 + INTERVAL * 2);
    assert!(
        removed_at >= grace && removed_at <= grace + INTERVAL * 2,
        "{removed_at:?}"
    );
    assert!(events.contains(&Event::Removed(c.clone())));
    assert!(
        !events.iter().any(|e| matches!(e, Event::Failed(_))),
        "never Failed: it never was live"
    );
}

/// A SynAck from `teacher` carrying node `c`'s digest entry and the given delta of it.
fn synack_about(c: &NodeId, heartbeat: u64, delta: crate::wire::NodeDelta) -> Vec<u8> {
    use crate::wire::{Delta, Digest, Message, NodeDigest};
    let message = Message::SynAck {
        digest: Digest {
            entries: vec![(
                c.clone(),
                NodeDigest {
                    heartbeat,
                    last_gc_version: delta.last_gc_version,
                    max_version: delta.max_version,
                },
            )],
        },
        delta: Delta { nodes: vec![delta] },
    };
    let mut bytes = Vec::new();
    wire::encode_chitchat(ProtocolVersion::V0, &message, &mut bytes);
    bytes
}

/// When our copy of a node is too old to patch (it missed a garbage collection of that node's
/// keys) and a full state arrives, the copy is replaced: `Reset` is reported (chitchat's
/// catch-up callback), then each visible change as `KeyChanged` with its old value.
#[test]
fn a_state_replaced_by_a_full_copy_is_reported_as_a_reset() {
    use crate::wire::{DeletionStatus, KeyValueUpdate, NodeDelta};
    let a = id("a", 1, 8300);
    let c = id("c", 1, 8302);
    let teacher = SocketAddr::from(([127, 0, 0, 1], 8301));
    let now = Instant::now();
    let mut m = Membership::new(config(&a, None), now);
    let kv = |key: &str, value: &str, version: u64| KeyValueUpdate {
        key: key.into(),
        value: value.into(),
        version,
        status: DeletionStatus::Set,
    };
    // a learns c with two keys (versions 1 and 2).
    let first = NodeDelta {
        node: c.clone(),
        last_gc_version: 0,
        from_version_excluded: 0,
        max_version: 2,
        key_values: vec![kv("old", "1", 1), kv("kept", "x", 2)],
    };
    m.handle_datagram(now, teacher, &synack_about(&c, 10, first))
        .unwrap();
    while m.poll_event().is_some() {}
    // c deleted "old" and collected the tombstone (last_gc_version 5), then wrote more: a's
    // copy cannot be patched, and a full state comes.
    let full = NodeDelta {
        node: c.clone(),
        last_gc_version: 5,
        from_version_excluded: 0,
        max_version: 7,
        key_values: vec![kv("kept", "x", 2), kv("new", "2", 7)],
    };
    m.handle_datagram(now, teacher, &synack_about(&c, 20, full))
        .unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| m.poll_event()).collect();
    assert!(
        matches!(&events[0], Event::Reset(member) if member.id == c),
        "{events:?}"
    );
    let changes: Vec<(&str, Option<&str>, Option<&str>)> = events
        .iter()
        .filter_map(|e| match e {
            Event::KeyChanged {
                key, old, value, ..
            } => Some((key.as_str(), old.as_deref(), value.as_deref())),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        vec![("new", None, Some("2")), ("old", Some("1"), None)],
        "\"kept\" did not change"
    );
    let member = m.member(&c).unwrap();
    assert_eq!(member.get("kept"), Some("x"));
    assert_eq!(member.get("old"), None);
}

/// A digest-only SynAck about `c` at `heartbeat` (a delta that carries no key).
fn heartbeat_of(c: &NodeId, heartbeat: u64) -> Vec<u8> {
    let empty = crate::wire::NodeDelta {
        node: c.clone(),
        last_gc_version: 0,
        from_version_excluded: 0,
        max_version: 0,
        key_values: Vec::new(),
    };
    synack_about(c, heartbeat, empty)
}

/// Feeds `m` ever newer heartbeats of `c` (gossip from a peer that still hears it, or stale
/// gossip) for 3 s, one round at a time, and asserts that `c` never reappears.
fn assert_never_back(m: &mut Membership, c: &NodeId, from_heartbeat: u64, mut now: Instant) {
    let teacher = SocketAddr::from(([127, 0, 0, 1], 9999));
    for heartbeat in from_heartbeat..from_heartbeat + 30 {
        m.handle_datagram(now, teacher, &heartbeat_of(c, heartbeat))
            .unwrap();
        m.handle_timeout(now);
        while m.poll_transmit(&mut Vec::new()).is_some() {}
        assert_eq!(m.member(c), None, "back at heartbeat {heartbeat}");
        now += INTERVAL;
    }
    while let Some(e) = m.poll_event() {
        assert!(
            !matches!(&e, Event::Joined(x) | Event::Recovered(x) if x.id == *c),
            "{e:?}"
        );
    }
}

/// Runs rounds until `c` is collected (within three grace periods).
fn until_collected(m: &mut Membership, c: &NodeId, start: Instant, grace: Duration) -> Instant {
    let mut now = start;
    while m.member(c).is_some() {
        assert!(now < start + grace * 3, "never collected");
        m.handle_timeout(now);
        while m.poll_transmit(&mut Vec::new()).is_some() {}
        now += INTERVAL;
    }
    now
}

/// A node that left and was then collected is gone for good: newer heartbeats of it (its
/// process still running after the leave, or stale gossip) do not bring it back. Before, the
/// collected node was remembered only with its last heartbeat, so a newer one re-added it and
/// the observer reported the departed node `Joined` (live) again before its leaving key
/// arrived. Found by the fault schedules of cohort-sim (seeds 2431 and 5029).
#[test]
fn a_departed_node_once_collected_never_comes_back() {
    use crate::membership::LEAVING_KEY;
    use crate::wire::{DeletionStatus, KeyValueUpdate, NodeDelta};
    let a = id("a", 1, 8300);
    let c = id("c", 1, 8302);
    let grace = Duration::from_secs(2);
    let mut ca = config(&a, None);
    ca.failure_detector.dead_node_grace_period = grace;
    let start = Instant::now();
    let mut m = Membership::new(ca, start);
    let leaving = NodeDelta {
        node: c.clone(),
        last_gc_version: 0,
        from_version_excluded: 0,
        max_version: 1,
        key_values: vec![KeyValueUpdate {
            key: LEAVING_KEY.into(),
            value: "1".into(),
            version: 1,
            status: DeletionStatus::Set,
        }],
    };
    let teacher = SocketAddr::from(([127, 0, 0, 1], 8301));
    m.handle_datagram(start, teacher, &synack_about(&c, 10, leaving))
        .unwrap();
    assert_eq!(m.status(&c), Some(MemberStatus::Left));
    let now = until_collected(&mut m, &c, start, grace);
    assert_never_back(&mut m, &c, 11, now);
}

/// A generation superseded by a newer one is gone for good, also once the newer one was
/// collected in turn: stale gossip with a newer heartbeat of the old generation does not bring
/// it back (before, it came back once the newer generation was no longer there to supersede
/// it).
#[test]
fn a_superseded_generation_never_comes_back_after_the_newer_one_is_collected() {
    let a = id("a", 1, 8400);
    let b1 = id("b", 1, 8402);
    let b2 = id("b", 2, 8402);
    let grace = Duration::from_secs(2);
    let mut ca = config(&a, None);
    ca.failure_detector.dead_node_grace_period = grace;
    let start = Instant::now();
    let mut m = Membership::new(ca, start);
    let teacher = SocketAddr::from(([127, 0, 0, 1], 8401));
    m.handle_datagram(start, teacher, &heartbeat_of(&b1, 10))
        .unwrap();
    assert!(m.member(&b1).is_some());
    m.handle_datagram(start, teacher, &heartbeat_of(&b2, 3))
        .unwrap();
    assert_eq!(m.member(&b1), None, "superseded");
    // b2 never heartbeats (it crashed too): it is collected.
    let now = until_collected(&mut m, &b2, start, grace);
    assert_never_back(&mut m, &b1, 11, now);
}
