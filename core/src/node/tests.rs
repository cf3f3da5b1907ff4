//! Tests of the node-level machine: envelope, clock observation, compatible mode.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::ClockError;
use crate::membership::FailureDetectorConfig;

const WALL0: u64 = 1_760_000_000_000;

fn id(name: &str, port: u16) -> NodeId {
    NodeId::new(name, 1, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn config(me: &NodeId, seeds: &[&NodeId]) -> NodeConfig {
    let mut c = NodeConfig::new(me.clone());
    c.cluster_id = "test".into();
    c.gossip_interval = Duration::from_millis(100);
    c.seeds = seeds.iter().map(|s| s.gossip_addr()).collect();
    c.rng_seed = u64::from(me.gossip_addr().port());
    c
}

fn node(config: NodeConfig, now: Instant) -> Node {
    Node::new(config, now).expect("a valid configuration")
}

/// Delivers every pending datagram instantly until the network is quiet. `walls[i]` is node
/// i's wall clock. Returns the datagrams delivered.
fn exchange(nodes: &mut [Node], now: Instant, walls: &[WallTime]) -> Vec<Vec<u8>> {
    let mut seen = Vec::new();
    loop {
        let mut moved = false;
        for i in 0..nodes.len() {
            let mut buf = Vec::new();
            while let Some(destination) = nodes[i].poll_transmit(walls[i], &mut buf) {
                moved = true;
                let from = nodes[i].id().gossip_addr();
                seen.push(buf.clone());
                if let Some(j) = nodes
                    .iter()
                    .position(|n| n.id().gossip_addr() == destination)
                {
                    nodes[j]
                        .handle_datagram(now, walls[j], from, &buf)
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
    let mut nodes = vec![node(config(&a, &[]), start), node(config(&b, &[&a]), start)];
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
    assert_eq!(nodes[0].status(&b), Some(MemberStatus::Live));
    while let Some(e) = nodes[0].poll_event() {
        assert!(!matches!(e, Event::ClockSkew { .. }), "{e:?}");
    }
}

#[test]
fn a_peer_beyond_the_drift_bound_is_reported_and_does_not_move_the_clock() {
    let start = Instant::now();
    let (a, b) = (id("a", 7001), id("b", 7002));
    let mut nodes = vec![node(config(&a, &[]), start), node(config(&b, &[&a]), start)];
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
        if let Event::ClockSkew { from, error, .. } = e {
            assert_eq!(from, b.gossip_addr());
            assert!(matches!(error, ClockError::DriftExceeded { .. }));
            skews += 1;
        }
    }
    assert!(skews > 0);
    // Gossip still works: the skewed peer is a member.
    assert_eq!(nodes[0].status(&b), Some(MemberStatus::Live));
}

#[test]
fn compatible_mode_sends_bare_chitchat_and_both_forms_interoperate() {
    let start = Instant::now();
    let (a, b) = (id("a", 7001), id("b", 7002));
    let mut compat = config(&b, &[&a]);
    compat.chitchat_compatible = true;
    let mut nodes = vec![node(config(&a, &[]), start), node(compat, start)];
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
    assert_eq!(nodes[0].status(&b), Some(MemberStatus::Live));
    assert_eq!(nodes[1].status(&a), Some(MemberStatus::Live));
    assert!(nodes[1].is_chitchat_compatible());
}

#[test]
fn garbage_is_refused_without_changing_anything() {
    let start = Instant::now();
    let a = id("a", 7001);
    let mut n = node(config(&a, &[]), start);
    let wall = WallTime::from_unix_millis(WALL0).unwrap();
    let before = n.node_state(&a).unwrap().clone();
    for bad in [
        &b""[..],
        b"\x47\xc0",
        b"\x47\xc0\x01\x00",
        b"\x53\xb0\x09\x00",
        b"hello world",
    ] {
        assert!(
            n.handle_datagram(start, wall, a.gossip_addr(), bad)
                .is_err()
        );
    }
    assert_eq!(n.node_state(&a).unwrap(), &before, "heartbeat untouched");
    assert!(n.poll_transmit(wall, &mut Vec::new()).is_none());
    assert!(n.clock().last().is_none());
}

#[test]
fn drain_takes_every_output_and_reports_what_it_means() {
    let (a, b) = (id("a", 7800), id("b", 7801));
    let start = Instant::now();
    let wall = WallTime::from_unix_millis(WALL0).unwrap();
    let mut na = node(config(&a, &[]), start);
    let mut nb = node(config(&b, &[&a]), start);
    let (mut transmits, mut events) = (Transmits::new(), Vec::new());
    // The first drain reports the initial member list as a change (nothing was seen before).
    assert!(nb.drain(wall, &mut transmits, &mut events).members_changed);
    // b's first round: one Syn to its seed, no event, the next round due in an interval.
    nb.handle_timeout(start);
    let drained = nb.drain(wall, &mut transmits, &mut events);
    assert_eq!(transmits.len(), 1);
    assert_eq!(
        transmits.iter().next().unwrap().destination,
        a.gossip_addr()
    );
    assert!(events.is_empty());
    assert_eq!(drained.deadline, nb.poll_timeout());
    assert!(!drained.members_changed && drained.left.is_none());
    assert!(
        nb.poll_transmit(wall, &mut Vec::new()).is_none(),
        "everything was taken"
    );
    let _ = na.drain(wall, &mut Transmits::new(), &mut Vec::new());
    // Gossip on until a sees b join (b's keys arrive first): every drain says whether the
    // member list changed exactly when its events do, or a member was first seen.
    let mut joined_at = None;
    let mut known = [1, 1];
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
                let now_known = nodes[i].members().all().len();
                let changed = events.iter().any(Event::changes_members) || now_known != known[i];
                known[i] = now_known;
                assert_eq!(drained.members_changed, changed);
                if i == 0
                    && events
                        .iter()
                        .any(|e| matches!(e, Event::Joined(m) if m.id == b))
                {
                    assert!(drained.members_changed);
                    joined_at.get_or_insert(round);
                }
                let from = [&a, &b][i].gossip_addr();
                for t in &transmits {
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
    na.leave(now);
    let drained = na.drain(wall, &mut transmits, &mut events);
    assert!(drained.left.is_none());
    assert!(drained.members_changed, "a shows itself as Left");
    assert!(drained.deadline <= now + DEFAULT_LEAVE_TIMEOUT);
    let syn = transmits.iter().last().expect("a Syn to b").payload.clone();
    nb.handle_datagram(now, wall, a.gossip_addr(), &syn)
        .unwrap();
    transmits.clear();
    let _ = nb.drain(wall, &mut transmits, &mut events);
    let syn_ack = transmits.iter().last().expect("b's SynAck").payload.clone();
    events.clear();
    transmits.clear();
    na.handle_datagram(now, wall, b.gossip_addr(), &syn_ack)
        .unwrap();
    let drained = na.drain(wall, &mut transmits, &mut events);
    assert_eq!(drained.left, Some(LeaveOutcome::Announced));
    assert_eq!(na.local_member().status, MemberStatus::Left);
    assert_eq!(na.set(now, "k", "v"), Err(KeyError::Leaving));
}

#[test]
fn a_leave_nobody_answers_ends_at_its_timeout() {
    let (a, b) = (id("a", 7810), id("b", 7811));
    let start = Instant::now();
    let wall = WallTime::from_unix_millis(WALL0).unwrap();
    let mut nodes = vec![node(config(&a, &[]), start), node(config(&b, &[&a]), start)];
    run(&mut nodes, start, 20, &[wall; 2]);
    assert_eq!(nodes[0].status(&b), Some(MemberStatus::Live));
    // b is gone (its datagrams are never delivered); a leaves and contacts it.
    let mut a_node = nodes.swap_remove(0);
    let now = start + Duration::from_secs(2);
    a_node.leave(now);
    let (mut transmits, mut events) = (Transmits::new(), Vec::new());
    let drained = a_node.drain(wall, &mut transmits, &mut events);
    assert!(transmits.iter().any(|t| t.destination == b.gossip_addr()));
    assert!(drained.left.is_none());
    let timeout = now + DEFAULT_LEAVE_TIMEOUT;
    assert!(drained.deadline <= timeout);
    // Follow the deadlines as a driver would: the leave ends exactly at its timeout.
    let mut at = drained.deadline;
    let outcome = loop {
        a_node.handle_timeout(at);
        transmits.clear();
        let drained = a_node.drain(wall, &mut transmits, &mut events);
        if let Some(outcome) = drained.left {
            break outcome;
        }
        assert!(drained.deadline > at && drained.deadline <= timeout);
        at = drained.deadline;
    };
    assert_eq!(outcome, LeaveOutcome::TimedOut);
    assert_eq!(at, timeout);
    // Reported by every drain from then on.
    let again = a_node.drain(wall, &mut transmits, &mut events);
    assert_eq!(again.left, Some(LeaveOutcome::TimedOut));
}

#[test]
fn a_leave_with_no_known_peer_is_over_at_once() {
    let start = Instant::now();
    let wall = WallTime::from_unix_millis(WALL0).unwrap();
    let mut alone = node(config(&id("a", 7820), &[]), start);
    alone.leave(start);
    let drained = alone.drain(wall, &mut Transmits::new(), &mut Vec::new());
    assert_eq!(drained.left, Some(LeaveOutcome::Announced));
}

#[test]
fn commands_take_effect_at_once_and_are_refused_with_a_reason() {
    let start = Instant::now();
    let wall = WallTime::from_unix_millis(WALL0).unwrap();
    let a = id("a", 7830);
    let mut n = node(config(&a, &[]), start);
    let (mut transmits, mut events) = (Transmits::new(), Vec::new());
    let _ = n.drain(wall, &mut transmits, &mut events);
    let version = n.members_version();
    n.set(start, "role", "indexer").unwrap();
    assert!(n.members_version() > version);
    assert_eq!(n.local_member().get("role"), Some("indexer"));
    assert!(n.drain(wall, &mut transmits, &mut events).members_changed);
    // The same value again changes nothing.
    n.set(start, "role", "indexer").unwrap();
    assert!(!n.drain(wall, &mut transmits, &mut events).members_changed);
    assert_eq!(n.delete(start, "role"), Ok(true));
    assert_eq!(n.delete(start, "role"), Ok(false));
    n.set_with_ttl(start, "lease", "1").unwrap();
    assert_eq!(n.delete_after_ttl(start, "lease"), Ok(true));
    let version = n.members_version();
    assert_eq!(
        n.set(start, "__cohort/leaving", "1"),
        Err(KeyError::Reserved("__cohort/leaving".into()))
    );
    assert_eq!(
        n.members_version(),
        version,
        "a refused command changes nothing"
    );
}

#[test]
fn the_config_applies_its_policies_and_keeps_what_the_user_set() {
    let me = id("a", 7840);
    let mut c = NodeConfig::new(me.clone());
    c.gossip_interval = Duration::from_millis(250);
    c.data_center = "eu".into();
    c.metadata.push(("role".into(), "indexer".into()));
    let m = c.membership_config().unwrap();
    // Policies: the detector's prior follows the interval, the envelope has room, the
    // data center and RPC address are published first.
    assert_eq!(
        m.failure_detector.initial_interval,
        Duration::from_millis(250)
    );
    assert_eq!(m.reserved_bytes, wire::ENVELOPE_OVERHEAD);
    assert_eq!(m.transmit_headroom, wire::ENVELOPE_OVERHEAD);
    assert_eq!(
        m.initial_key_values,
        vec![
            ("data_center".to_owned(), "eu".to_owned()),
            ("rpc_addr".to_owned(), me.gossip_addr().to_string()),
            ("role".to_owned(), "indexer".to_owned()),
        ]
    );
    // A detector the user set is kept as it is.
    let fd = FailureDetectorConfig {
        phi_threshold: 12.0,
        ..FailureDetectorConfig::default()
    };
    c.failure_detector = Some(fd.clone());
    c.chitchat_compatible = true;
    let m = c.membership_config().unwrap();
    assert_eq!(m.failure_detector, fd);
    assert_eq!((m.reserved_bytes, m.transmit_headroom), (0, 0));
    // Two nodes never share a generator seed by default.
    assert_ne!(
        NodeConfig::new(id("a", 7840)).rng_seed,
        NodeConfig::new(id("b", 7840)).rng_seed
    );
}

#[test]
fn unusable_configs_are_refused() {
    let start = Instant::now();
    let mut c = NodeConfig::new(NodeId::new("", 1, SocketAddr::from(([127, 0, 0, 1], 1))));
    assert_eq!(
        Node::new(c.clone(), start).err(),
        Some(ConfigError::EmptyName)
    );
    c.id = id("a", 1);
    c.gossip_interval = Duration::ZERO;
    assert_eq!(
        Node::new(c.clone(), start).err(),
        Some(ConfigError::ZeroGossipInterval)
    );
    c.gossip_interval = Duration::from_secs(1);
    c.metadata = vec![("__cohort/x".into(), "1".into())];
    assert_eq!(
        Node::new(c.clone(), start).err(),
        Some(ConfigError::Key(KeyError::Reserved("__cohort/x".into())))
    );
    c.metadata = vec![("data_center".into(), "eu".into())];
    assert!(matches!(
        Node::new(c.clone(), start).err(),
        Some(ConfigError::KeyFromSetting {
            setting: "data_center",
            ..
        })
    ));
    // The node's first state must fit its own limits.
    c.metadata = vec![("role".into(), "x".repeat(c.limits.max_value_len + 1))];
    assert_eq!(
        Node::new(c.clone(), start).err(),
        Some(ConfigError::Key(KeyError::TooLong {
            limit: crate::membership::Limit::ValueLength,
            len: c.limits.max_value_len + 1,
            max: c.limits.max_value_len,
        }))
    );
    c.limits.max_keys_per_member = 3;
    c.metadata = vec![("x".into(), "1".into()), ("y".into(), "1".into())];
    assert_eq!(
        Node::new(c.clone(), start).err(),
        Some(ConfigError::Key(KeyError::StateFull {
            limit: crate::membership::Limit::KeysPerMember,
            max: 3,
        })),
        "the data center and RPC address count"
    );
    c.limits = crate::membership::StateLimits::default();
    c.metadata.clear();
    c.leave_timeout = Duration::MAX;
    assert_eq!(
        Node::new(c.clone(), start).err(),
        Some(ConfigError::TooLong {
            setting: "leave_timeout"
        })
    );
    c.leave_timeout = MAX_DURATION_SETTING;
    let mut n = Node::new(c, start).expect("the longest timeout is accepted");
    n.leave(start); // and its deadline is computed without overflow
    assert_eq!(
        generation_at(WallTime::UNIX_EPOCH),
        1,
        "a generation is never 0"
    );
}

#[test]
fn buffers_are_reused_from_drain_to_drain() {
    let (a, b) = (id("a", 7850), id("b", 7851));
    let start = Instant::now();
    let wall = WallTime::from_unix_millis(WALL0).unwrap();
    let mut nodes = vec![node(config(&a, &[]), start), node(config(&b, &[&a]), start)];
    run(&mut nodes, start, 20, &[wall; 2]);
    // Hand the batch buffers of a capacity no datagram needs (for two rounds, as two buffers
    // circulate: one in the batch, one in the node's pool): from then on, every datagram comes
    // in one of them. A buffer allocated per datagram would be
    // sized for the datagram instead.
    const MARK: usize = 100_000;
    let mut transmits = Transmits::new();
    let mut events = Vec::new();
    let mut sent = 0;
    for round in 20..40u32 {
        let now = start + Duration::from_millis(100) * round;
        nodes[1].handle_timeout(now);
        transmits.clear();
        let _ = nodes[1].drain(wall, &mut transmits, &mut events);
        for t in transmits.iter_mut() {
            if round >= 22 {
                assert!(
                    t.payload.capacity() >= MARK,
                    "round {round}: a fresh buffer"
                );
                sent += 1;
            }
            nodes[0]
                .handle_datagram(now, wall, b.gossip_addr(), &t.payload)
                .unwrap();
            if round < 22 {
                let mut marked = Vec::with_capacity(MARK);
                marked.extend_from_slice(&t.payload);
                t.payload = marked;
            }
        }
        let _ = nodes[0].drain(wall, &mut Transmits::new(), &mut events);
    }
    assert!(sent >= 18, "{sent} datagrams checked");
}

#[test]
fn a_key_whose_ttl_ran_out_is_reported_gone_and_changes_the_members() {
    let (a, b) = (id("a", 7860), id("b", 7861));
    let start = Instant::now();
    let wall = WallTime::from_unix_millis(WALL0).unwrap();
    let grace = Duration::from_millis(500);
    let mut ca = config(&a, &[]);
    ca.marked_for_deletion_grace_period = grace;
    let mut cb = config(&b, &[&a]);
    cb.marked_for_deletion_grace_period = grace;
    let mut nodes = vec![node(ca, start), node(cb, start)];
    run(&mut nodes, start, 10, &[wall; 2]);
    let now = start + Duration::from_secs(1);
    nodes[0].set_with_ttl(now, "lease", "held").unwrap();
    run(&mut nodes, now, 2, &[wall; 2]);
    assert_eq!(
        nodes[1].member(&a).unwrap().get("lease"),
        Some("held"),
        "b has the key"
    );
    let versions: Vec<u64> = nodes.iter().map(Node::members_version).collect();
    for n in &mut nodes {
        while n.poll_event().is_some() {}
    }
    // Rounds until well past the grace period: the key goes, on both nodes, with an event.
    run(&mut nodes, now + Duration::from_millis(200), 15, &[wall; 2]);
    for (i, n) in nodes.iter_mut().enumerate() {
        let mut gone = false;
        while let Some(e) = n.poll_event() {
            gone |= matches!(&e, Event::KeyChanged { member, key, value: None, old: Some(old) }
                if member.id == a && key == "lease" && old == "held");
        }
        assert!(gone, "node {i} reports the key gone");
        assert!(
            n.members_version() > versions[i],
            "node {i}'s version moved"
        );
        assert_eq!(n.member(&a).unwrap().get("lease"), None);
    }
}

#[test]
fn a_member_first_seen_changes_the_members() {
    let (a, b) = (id("a", 7870), id("b", 7871));
    let start = Instant::now();
    let wall = WallTime::from_unix_millis(WALL0).unwrap();
    let mut na = node(config(&a, &[]), start);
    let mut nb = node(config(&b, &[&a]), start);
    let (mut out, mut events) = (Transmits::new(), Vec::new());
    let _ = na.drain(wall, &mut out, &mut events);
    nb.handle_timeout(start);
    let _ = nb.drain(wall, &mut out, &mut events);
    let syn = out.iter().next().expect("b's Syn").payload.clone();
    let before = na.members();
    na.handle_datagram(start, wall, b.gossip_addr(), &syn)
        .unwrap();
    out.clear();
    let drained = na.drain(wall, &mut out, &mut events);
    let after = na.members();
    assert_eq!(after.all().len(), 2, "b is known (joining)");
    assert!(drained.members_changed);
    assert!(after.version() > before.version());
}

// ------------------------------------------------------------------- authenticated gossip

fn key(byte: u8) -> ClusterKey {
    ClusterKey::from_bytes(&[byte; 32]).unwrap()
}

fn keyed(me: &NodeId, seeds: &[&NodeId], k: u8) -> NodeConfig {
    let mut c = config(me, seeds);
    c.keyring = Some(Keyring::new(key(k)));
    c
}

/// Delivers pending datagrams like [`exchange`], but keeps going past refused ones and counts
/// them (a node with another key, or none).
fn exchange_counting(nodes: &mut [Node], now: Instant, wall: WallTime) -> usize {
    let mut refused = 0;
    loop {
        let mut moved = false;
        for i in 0..nodes.len() {
            let mut buf = Vec::new();
            while let Some(destination) = nodes[i].poll_transmit(wall, &mut buf) {
                moved = true;
                let from = nodes[i].id().gossip_addr();
                if let Some(j) = nodes
                    .iter()
                    .position(|n| n.id().gossip_addr() == destination)
                {
                    match nodes[j].handle_datagram(now, wall, from, &buf) {
                        Ok(()) => {}
                        Err(DecodeError::Unauthenticated) => refused += 1,
                        Err(other) => panic!("{other}"),
                    }
                }
            }
        }
        if !moved {
            return refused;
        }
    }
}

fn rounds(nodes: &mut [Node], start: Instant, from: u32, to: u32) -> usize {
    let wall = WallTime::from_unix_millis(WALL0).unwrap();
    let mut refused = 0;
    for r in from..to {
        let now = start + Duration::from_millis(100) * r;
        for n in nodes.iter_mut() {
            n.handle_timeout(now);
        }
        refused += exchange_counting(nodes, now, wall);
    }
    refused
}

#[test]
fn nodes_sharing_a_key_converge_and_sign_every_datagram() {
    let start = Instant::now();
    let (a, b, c) = (id("a", 7101), id("b", 7102), id("c", 7103));
    let mut nodes = vec![
        node(keyed(&a, &[], 1), start),
        node(keyed(&b, &[&a], 1), start),
        node(keyed(&c, &[&a], 1), start),
    ];
    assert_eq!(rounds(&mut nodes, start, 0, 10), 0, "nothing refused");
    for n in &nodes {
        assert_eq!(n.members().live_count(), 3);
    }
    // Every datagram carries a 16-byte tag in its envelope.
    let mut buf = Vec::new();
    nodes[0].handle_timeout(start + Duration::from_secs(2));
    let wall = WallTime::from_unix_millis(WALL0).unwrap();
    assert!(nodes[0].poll_transmit(wall, &mut buf).is_some());
    let datagram = wire::decode_datagram(&buf).unwrap();
    assert_eq!(
        datagram.envelope.and_then(|e| e.auth_tag).map(<[u8]>::len),
        Some(AUTH_TAG_LEN)
    );
}

#[test]
fn forged_unsigned_and_tampered_datagrams_are_dropped_counted_and_never_applied() {
    let start = Instant::now();
    let wall = WallTime::from_unix_millis(WALL0).unwrap();
    let (a, b, x) = (id("a", 7111), id("b", 7112), id("x", 7113));
    // x has another key; it seeds from a.
    let mut nodes = vec![
        node(keyed(&a, &[], 1), start),
        node(keyed(&b, &[&a], 1), start),
        node(keyed(&x, &[&a], 9), start),
    ];
    let refused = rounds(&mut nodes, start, 0, 20);
    assert!(
        refused > 0,
        "x's datagrams are refused, and it refuses theirs"
    );
    for n in &nodes[..2] {
        assert_eq!(n.members().all().len(), 2, "x never appears at {}", n.id());
    }
    assert!(
        nodes[0].diagnostics().unauthenticated > 0,
        "a, x's seed, counted them"
    );
    assert_eq!(
        nodes[2].members().all().len(),
        1,
        "and x learned nothing of a's"
    );
    // One Unauthenticated event for x at a, however many it sent (within the interval).
    let mut events = Vec::new();
    let mut out = Transmits::new();
    let _ = nodes[0].drain(wall, &mut out, &mut events);
    let reports = events
        .iter()
        .filter(|e| matches!(e, Event::Unauthenticated { from, .. } if *from == x.gossip_addr()))
        .count();
    assert!(
        (1..=3).contains(&reports),
        "{reports} reports of x in 2 s of rounds (one a second)"
    );

    // A bare chitchat datagram and an envelope without a tag are refused too.
    let mut bare = Vec::new();
    wire::encode_chitchat(
        wire::ProtocolVersion::V0,
        &wire::Message::BadCluster,
        &mut bare,
    );
    let stranger = SocketAddr::from(([127, 0, 0, 9], 1));
    assert_eq!(
        nodes[0].handle_datagram(start, wall, stranger, &bare),
        Err(DecodeError::Unauthenticated)
    );
    let mut untagged = Vec::new();
    wire::encode_envelope(nodes[2].clock().now(wall).unwrap(), None, &mut untagged).unwrap();
    untagged.extend_from_slice(&bare);
    assert_eq!(
        nodes[0].handle_datagram(start, wall, stranger, &untagged),
        Err(DecodeError::Unauthenticated)
    );
    // A datagram of b's, signed, then one byte changed: refused; the original: accepted.
    nodes[1].handle_timeout(start + Duration::from_secs(3));
    let mut signed = Vec::new();
    let to = nodes[1].poll_transmit(wall, &mut signed).expect("a Syn");
    assert_eq!(to, a.gossip_addr());
    let mut tampered = signed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(
        nodes[0].handle_datagram(start, wall, b.gossip_addr(), &tampered),
        Err(DecodeError::Unauthenticated)
    );
    assert_eq!(
        nodes[0].handle_datagram(start, wall, b.gossip_addr(), &signed),
        Ok(())
    );
}

/// Install, use, remove: a key rotation across a running cluster loses no member.
#[test]
fn a_key_rotation_across_a_running_cluster_loses_no_member() {
    let start = Instant::now();
    let (a, b, c) = (id("a", 7121), id("b", 7122), id("c", 7123));
    let mut nodes = vec![
        node(keyed(&a, &[], 1), start),
        node(keyed(&b, &[&a], 1), start),
        node(keyed(&c, &[&a], 1), start),
    ];
    let mut refused = rounds(&mut nodes, start, 0, 10);
    let all_live = |nodes: &[Node]| nodes.iter().all(|n| n.members().live_count() == 3);
    assert!(all_live(&nodes));
    // Step by step, with gossip rounds between the steps (and between nodes within a step).
    for n in nodes.iter_mut() {
        assert_eq!(n.install_key(key(2)), Ok(true));
    }
    refused += rounds(&mut nodes, start, 10, 15);
    for i in 0..nodes.len() {
        nodes[i].use_key(&key(2)).unwrap();
        refused += rounds(&mut nodes, start, 15 + 3 * i as u32, 18 + 3 * i as u32);
        assert!(all_live(&nodes), "after node {i} switched");
    }
    for n in nodes.iter_mut() {
        assert_eq!(n.remove_key(&key(2)), Err(KeyringError::InUse));
        assert_eq!(n.remove_key(&key(1)), Ok(true));
    }
    refused += rounds(&mut nodes, start, 30, 40);
    assert_eq!(refused, 0, "no datagram was refused during the rotation");
    assert!(all_live(&nodes));
    for n in &nodes {
        assert_eq!(n.keyring().map(Keyring::len), Some(1));
    }
}

#[test]
fn authentication_is_refused_in_compatible_mode_and_without_a_keyring() {
    let a = id("a", 7131);
    let mut c = keyed(&a, &[], 1);
    c.chitchat_compatible = true;
    assert_eq!(
        Node::new(c, Instant::now()).err(),
        Some(ConfigError::AuthenticatedCompatible)
    );
    let mut plain = node(config(&a, &[]), Instant::now());
    assert_eq!(plain.install_key(key(1)), Err(KeyringError::NotKeyed));
}

/// Test vector E-3 of `docs/cohort-envelope.md` (1.3): the tag of E-1's datagram under the key
/// of 32 bytes `07`, checked both ways (the node accepts it, and a key makes this tag).
#[test]
fn the_authenticated_envelope_vector() {
    let vector: Vec<u8> = [
        "47c0010101 8bcfe568000005 0123456789abcdef 10",
        "d309c5ebad5a43369f1718112a9760ee",
        "53b0000200",
    ]
    .concat()
    .split_whitespace()
    .collect::<String>()
    .as_bytes()
    .chunks(2)
    .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
    .collect();
    assert_eq!(vector.len(), 42);
    assert_eq!(
        key(7).tag(&vector[..21], &vector[37..]),
        vector[21..37],
        "the tag is HMAC-SHA-256 of the envelope up to its length byte, then the datagram"
    );
    // `seal` writes the same bytes.
    let timestamp = wire::decode_datagram(&vector)
        .unwrap()
        .envelope
        .unwrap()
        .timestamp;
    let mut sealed = Vec::new();
    key(7).seal(timestamp, &vector[37..], &mut sealed);
    assert_eq!(sealed, vector);
    let start = Instant::now();
    let mut n = node(keyed(&id("a", 7141), &[], 7), start);
    let wall = WallTime::from_unix_millis(WALL0).unwrap();
    let from = SocketAddr::from(([127, 0, 0, 1], 7142));
    assert_eq!(n.handle_datagram(start, wall, from, &vector), Ok(()));
    let mut other = node(keyed(&id("b", 7143), &[], 8), start);
    assert_eq!(
        other.handle_datagram(start, wall, from, &vector),
        Err(DecodeError::Unauthenticated)
    );
}

// ------------------------------------------------------------------ cohort mode behind `Node`

fn cohort(me: &NodeId, seeds: &[&NodeId]) -> NodeConfig {
    let mut c = config(me, seeds);
    c.protocol = Protocol::Cohort;
    c.probe_interval = Duration::from_millis(100);
    c
}

#[test]
fn cohort_mode_nodes_converge_with_their_keys_behind_the_envelope() {
    let start = Instant::now();
    let (a, b, c) = (id("a", 7101), id("b", 7102), id("c", 7103));
    let mut with_meta = cohort(&c, &[&a]);
    with_meta.metadata.push(("role".into(), "indexer".into()));
    let mut nodes = vec![
        node(cohort(&a, &[]), start),
        node(cohort(&b, &[&a]), start),
        node(with_meta, start),
    ];
    assert_eq!(nodes[0].protocol(), Protocol::Cohort);
    assert!(nodes[0].membership().is_none() && nodes[0].cohort_membership().is_some());
    // b's wall clock runs 300 ms ahead: within the drift bound.
    let walls = [
        WallTime::from_unix_millis(WALL0).unwrap(),
        WallTime::from_unix_millis(WALL0 + 300).unwrap(),
        WallTime::from_unix_millis(WALL0).unwrap(),
    ];
    let seen = run(&mut nodes, start, 40, &walls);
    for datagram in &seen {
        assert!(datagram.len() <= 1_400, "{} bytes", datagram.len());
        let (envelope, payload) = wire::split_datagram(datagram).unwrap();
        assert!(envelope.is_some(), "always enveloped");
        assert!(cohort_mode::wire::decode(payload).is_ok());
    }
    for n in &nodes {
        for other in [&a, &b, &c] {
            assert_eq!(
                n.status(other),
                Some(MemberStatus::Live),
                "{other} at {}",
                n.id()
            );
        }
        let member = n.member(&c).unwrap();
        assert_eq!(member.get("role"), Some("indexer"));
        assert_eq!(
            member.get(crate::members::RPC_ADDR_KEY),
            Some("127.0.0.1:7103"),
            "the keys a node publishes from its settings"
        );
    }
    // The clock observed the envelopes: a's clock moved past b's wall clock.
    let a_last = nodes[0].clock().last().unwrap();
    assert!(a_last.millis() >= WALL0 + 300, "{a_last}");
    // A key set later reaches the others, with its event.
    let later = start + Duration::from_secs(5);
    nodes[1].set(later, "shard", "3").unwrap();
    let mut events = Vec::new();
    for r in 0..10 {
        let now = later + Duration::from_millis(100) * r;
        for n in &mut nodes {
            n.handle_timeout(now);
        }
        exchange(&mut nodes, now, &walls);
        while let Some(e) = nodes[2].poll_event() {
            events.push(e);
        }
    }
    assert_eq!(nodes[2].member(&b).unwrap().get("shard"), Some("3"));
    assert!(events.iter().any(
        |e| matches!(e, Event::KeyChanged { key, value: Some(v), .. } if key == "shard" && v == "3")
    ));
}

#[test]
fn cohort_mode_gossip_is_authenticated_with_a_keyring() {
    let start = Instant::now();
    let (a, b) = (id("a", 7111), id("b", 7112));
    let keyed = |me: &NodeId, seeds: &[&NodeId]| {
        let mut c = cohort(me, seeds);
        c.keyring = Some(Keyring::new(key(7)));
        c
    };
    let mut nodes = vec![node(keyed(&a, &[]), start), node(keyed(&b, &[&a]), start)];
    let walls = [WallTime::from_unix_millis(WALL0).unwrap(); 2];
    let seen = run(&mut nodes, start, 20, &walls);
    assert_eq!(nodes[0].status(&b), Some(MemberStatus::Live));
    assert!(seen.iter().all(|d| d.len() <= 1_400));
    // A datagram altered in its payload is refused, and counted.
    let mut forged = seen.last().unwrap().clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(
        nodes[0].handle_datagram(start, walls[0], b.gossip_addr(), &forged),
        Err(DecodeError::Unauthenticated)
    );
    assert_eq!(nodes[0].diagnostics().unauthenticated, 1);
}

#[test]
fn a_chitchat_mode_and_a_cohort_mode_node_refuse_each_other_and_say_so() {
    let start = Instant::now();
    let (a, b) = (id("a", 7121), id("b", 7122));
    let mut nodes = [
        node(config(&a, &[&b]), start),
        node(cohort(&b, &[&a]), start),
    ];
    let walls = [WallTime::from_unix_millis(WALL0).unwrap(); 2];
    let mut refused = [0u32; 2];
    for r in 0..20 {
        let now = start + Duration::from_millis(100) * r;
        for n in &mut nodes {
            n.handle_timeout(now);
        }
        for i in 0..2 {
            let mut buf = Vec::new();
            while nodes[i].poll_transmit(walls[i], &mut buf).is_some() {
                let from = nodes[i].id().gossip_addr();
                let j = 1 - i;
                let result = nodes[j].handle_datagram(now, walls[j], from, &buf);
                assert!(
                    matches!(result, Err(DecodeError::BadMagic(_))),
                    "{result:?}"
                );
                refused[j] += 1;
            }
        }
    }
    assert!(refused.iter().all(|r| *r > 0), "{refused:?}");
    // Neither took the other for a member.
    assert_eq!(nodes[0].status(&b), None);
    assert_eq!(nodes[1].status(&a), None);
    for (i, theirs) in [(0, Protocol::Cohort), (1, Protocol::Chitchat)] {
        let events: Vec<Event> = std::iter::from_fn(|| nodes[i].poll_event()).collect();
        let reports: Vec<&Event> = events
            .iter()
            .filter(|e| matches!(e, Event::ProtocolMismatch { .. }))
            .collect();
        assert!(
            matches!(reports.first(), Some(Event::ProtocolMismatch { theirs: t, .. }) if *t == theirs),
            "node {i}: {events:?}"
        );
        // At most one report per diagnostic interval (1 s) over the 2 s run.
        assert!(reports.len() <= 2, "node {i}: {reports:?}");
        assert_eq!(
            u32::try_from(nodes[i].diagnostics().protocol_mismatch).unwrap(),
            refused[i]
        );
    }
}

#[test]
fn a_cohort_mode_leave_is_announced_and_seen() {
    let start = Instant::now();
    let (a, b) = (id("a", 7131), id("b", 7132));
    let mut nodes = vec![node(cohort(&a, &[]), start), node(cohort(&b, &[&a]), start)];
    let walls = [WallTime::from_unix_millis(WALL0).unwrap(); 2];
    run(&mut nodes, start, 20, &walls);
    let now = start + Duration::from_secs(3);
    nodes[1].leave(now);
    let mut transmits = Transmits::new();
    let mut events = Vec::new();
    let drained = nodes[1].drain(walls[1], &mut transmits, &mut events);
    assert_eq!(drained.left, Some(LeaveOutcome::Announced));
    for t in transmits.iter() {
        nodes[0]
            .handle_datagram(now, walls[0], b.gossip_addr(), &t.payload)
            .unwrap();
    }
    assert_eq!(nodes[0].status(&b), Some(MemberStatus::Left));
}

#[test]
fn cohort_mode_settings_are_checked() {
    let a = id("a", 7141);
    let mut c = cohort(&a, &[]);
    c.chitchat_compatible = true;
    assert_eq!(
        Node::new(c, Instant::now()).err(),
        Some(ConfigError::CohortModeCompatible)
    );
    let mut c = cohort(&a, &[]);
    c.probe_interval = Duration::ZERO;
    assert_eq!(
        Node::new(c, Instant::now()).err(),
        Some(ConfigError::ZeroProbeInterval)
    );
    // A key-value must fit one packet in cohort mode (chitchat mode takes it).
    let mut c = cohort(&a, &[]);
    c.metadata.push(("big".into(), "v".repeat(2_000)));
    assert!(matches!(
        Node::new(c.clone(), Instant::now()).err(),
        Some(ConfigError::Key(KeyError::TooLong { .. }))
    ));
    c.protocol = Protocol::Chitchat;
    assert!(Node::new(c, Instant::now()).is_ok());
    assert_eq!("cohort".parse::<Protocol>(), Ok(Protocol::Cohort));
    assert!("swim".parse::<Protocol>().is_err());
}
