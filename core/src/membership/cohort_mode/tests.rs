//! cohort mode on an in-memory network with virtual time and seeded randomness.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::wire::{self, Body, Packet, Update, UpdateKind};
use super::*;
use crate::wire::{DeletionStatus, KeyValueUpdate};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn id(name: &str, generation: u64, port: u16) -> NodeId {
    NodeId::new(name, generation, addr(port))
}

/// Nodes on a network that delivers every packet at once, except to or from `down` nodes and
/// on `cut` links (one way), with a seeded loss rate.
struct Net {
    nodes: Vec<CohortMembership>,
    down: Vec<bool>,
    cut: HashSet<(SocketAddr, SocketAddr)>,
    loss_per_mille: u64,
    rng: u64,
    now: Instant,
    events: Vec<Vec<Event>>,
    /// The largest packet seen.
    largest: usize,
    sent: u64,
    /// Steps run (the indexes are checked every 20).
    steps: u64,
}

impl Net {
    fn new(n: u16) -> Self {
        Self::with(n, |_, _| {})
    }

    /// `n` nodes, each with its configuration adjusted by `adjust(index, config)`.
    fn with(n: u16, adjust: impl Fn(u16, &mut CohortConfig)) -> Self {
        let now = Instant::now();
        let seed = addr(9000);
        let nodes = (0..n)
            .map(|i| {
                let mut config = CohortConfig::new(id(&format!("n{i}"), 1, 9000 + i), "test");
                config.seeds = vec![seed];
                config.rng_seed = u64::from(i) + 1;
                adjust(i, &mut config);
                CohortMembership::new(config, now)
            })
            .collect();
        Self {
            nodes,
            down: vec![false; usize::from(n)],
            cut: HashSet::new(),
            loss_per_mille: 0,
            rng: 0x5eed,
            now,
            events: vec![Vec::new(); usize::from(n)],
            largest: 0,
            sent: 0,
            steps: 0,
        }
    }

    fn lost(&mut self) -> bool {
        if self.loss_per_mille == 0 {
            return false;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 1000 < self.loss_per_mille
    }

    fn index_of(&self, to: SocketAddr) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.node_id().gossip_addr() == to)
    }

    fn flush(&mut self) {
        let mut buf = Vec::new();
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(to) = self.nodes[i].poll_transmit(&mut buf) {
                    moved = true;
                    self.sent += 1;
                    self.largest = self.largest.max(buf.len());
                    let from = self.nodes[i].node_id().gossip_addr();
                    if self.down[i] || self.cut.contains(&(from, to)) || self.lost() {
                        continue;
                    }
                    let Some(j) = self.index_of(to) else { continue };
                    if self.down[j] {
                        continue;
                    }
                    let now = self.now;
                    self.nodes[j]
                        .handle_datagram(now, from, &buf)
                        .expect("a valid packet");
                }
                while let Some(event) = self.nodes[i].poll_event() {
                    self.events[i].push(event);
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Advances virtual time by `by`, in steps of 5 ms, firing every due timer.
    fn run(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            self.now += Duration::from_millis(5);
            for i in 0..self.nodes.len() {
                if !self.down[i] && self.nodes[i].poll_timeout() <= self.now {
                    let now = self.now;
                    self.nodes[i].handle_timeout(now);
                }
            }
            self.flush();
            self.steps += 1;
            if self.steps % 20 == 0 {
                for node in &self.nodes {
                    node.check_indexes();
                }
            }
        }
    }

    /// Runs until `done` holds, for at most `limit`; returns how long it took.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) -> Option<Duration> {
        let start = self.now;
        while self.now - start < limit {
            if done(self) {
                return Some(self.now - start);
            }
            self.run(Duration::from_millis(5));
        }
        done(self).then(|| self.now - start)
    }

    fn status(&self, at: usize, of: usize) -> Option<MemberStatus> {
        self.nodes[at].status(self.nodes[of].node_id())
    }

    fn all_live(&self) -> bool {
        (0..self.nodes.len()).filter(|&i| !self.down[i]).all(|i| {
            (0..self.nodes.len())
                .filter(|&j| !self.down[j])
                .all(|j| self.status(i, j) == Some(MemberStatus::Live))
        })
    }
}

#[test]
fn nodes_join_through_a_seed_and_see_each_other_live() {
    let mut net = Net::new(8);
    let took = net
        .run_until(Duration::from_secs(5), Net::all_live)
        .expect("the cluster converges");
    assert!(took < Duration::from_secs(2), "{took:?}");
    for events in &net.events {
        let joined = events
            .iter()
            .filter(|e| matches!(e, Event::Joined(_)))
            .count();
        assert_eq!(joined, 7, "each node saw the 7 others join once");
    }
    assert!(net.largest <= MAX_PACKET, "{} bytes", net.largest);
    // Steady state: nothing fails for a while.
    net.run(Duration::from_secs(30));
    assert!(net.all_live());
    assert!(
        net.events
            .iter()
            .flatten()
            .all(|e| !matches!(e, Event::Failed(_)))
    );
}

#[test]
fn a_crash_is_detected_by_every_survivor_and_collected() {
    let mut net = Net::new(10);
    net.run_until(Duration::from_secs(5), Net::all_live)
        .expect("converges");
    net.down[3] = true;
    let crashed = net.nodes[3].node_id().clone();
    let took = net
        .run_until(Duration::from_secs(10), |net| {
            (0..10)
                .filter(|&i| i != 3)
                .all(|i| net.status(i, 3) == Some(MemberStatus::Failed))
        })
        .expect("every survivor declares it failed");
    assert!(
        took < Duration::from_secs(3),
        "crash to dead everywhere in {took:?}"
    );
    let grace = net.nodes[0].config.dead_node_grace_period;
    net.run(grace + Duration::from_secs(1));
    for i in (0..10).filter(|&i| i != 3) {
        assert_eq!(net.nodes[i].status(&crashed), None, "collected at node {i}");
        assert!(net.events[i].contains(&Event::Removed(crashed.clone())));
    }
    // Stale news does not bring it back.
    assert!(net.all_live());
}

#[test]
fn a_suspected_node_that_is_alive_refutes_and_never_fails() {
    let mut net = Net::new(6);
    net.run_until(Duration::from_secs(5), Net::all_live)
        .expect("converges");
    // Everything sent to node 2 is lost for a moment: it is suspected, then refutes.
    let target = net.nodes[2].node_id().gossip_addr();
    for i in 0..6 {
        let from = net.nodes[i].node_id().gossip_addr();
        net.cut.insert((from, target));
    }
    net.run_until(Duration::from_secs(3), |net| {
        (0..6).any(|i| i != 2 && net.nodes[i].is_suspected(net.nodes[2].node_id()))
    })
    .expect("node 2 is suspected");
    net.cut.clear();
    net.run(Duration::from_secs(5));
    assert!(net.nodes[2].incarnation() > 0, "it refuted");
    assert!(net.nodes[2].counts().refutations > 0);
    assert!(net.all_live());
    assert!(
        net.events
            .iter()
            .flatten()
            .all(|e| !matches!(e, Event::Failed(_))),
        "no false positive"
    );
}

#[test]
fn no_false_positive_at_one_percent_loss() {
    let mut net = Net::new(20);
    net.run_until(Duration::from_secs(5), Net::all_live)
        .expect("converges");
    net.loss_per_mille = 10;
    net.run(Duration::from_secs(120));
    assert!(
        net.events
            .iter()
            .flatten()
            .all(|e| !matches!(e, Event::Failed(_))),
        "no member declared failed at 1% loss"
    );
    assert!(net.all_live());
}

#[test]
fn a_leave_is_seen_at_once_and_a_restart_replaces_the_old_generation() {
    let mut net = Net::new(6);
    net.run_until(Duration::from_secs(5), Net::all_live)
        .expect("converges");
    let now = net.now;
    net.nodes[4].leave(now);
    net.flush();
    net.run_until(Duration::from_secs(1), |net| {
        (0..6)
            .filter(|&i| i != 4)
            .all(|i| net.status(i, 4) == Some(MemberStatus::Left))
    })
    .expect("every node sees it left within a second");
    // Node 5 restarts with a higher generation at the same address.
    let old = net.nodes[5].node_id().clone();
    let mut config = CohortConfig::new(id("n5", 2, 9005), "test");
    config.seeds = vec![addr(9000)];
    config.rng_seed = 99;
    net.nodes[5] = CohortMembership::new(config, net.now);
    let new = net.nodes[5].node_id().clone();
    net.run_until(Duration::from_secs(5), |net| {
        (0..4).all(|i| {
            net.nodes[i].status(&new) == Some(MemberStatus::Live)
                && net.nodes[i].status(&old).is_none()
        })
    })
    .expect("the new generation replaces the old one");
    assert!(net.events[0].contains(&Event::Removed(old)));
}

#[test]
fn packets_round_trip_and_bad_bytes_are_typed_errors() {
    let from = id("a", 7, 7000);
    let target = NodeId::new("b", 9, "[::1]:7001".parse().unwrap());
    let bodies = [
        Body::Ping {
            seq: 1,
            target_generation: 9,
        },
        Body::Ack { seq: 2 },
        Body::PingReq {
            seq: 3,
            target: target.clone(),
        },
        Body::Nack { seq: 4 },
        Body::Gossip,
        Body::SyncRequest {
            buckets: (0..wire::SYNC_BUCKETS as u64).collect(),
            answer_back: true,
        },
        Body::SyncResponse,
        Body::KeysRequest,
    ];
    for body in bodies {
        let packet = Packet {
            cluster: wire::cluster_hash("test"),
            from: from.clone(),
            incarnation: 3,
            keys_version: 12,
            body,
            updates: vec![
                Update {
                    kind: UpdateKind::Suspect,
                    id: target.clone(),
                    incarnation: 1,
                },
                Update {
                    kind: UpdateKind::Left,
                    id: from.clone(),
                    incarnation: 3,
                },
            ],
            deltas: vec![NodeDelta {
                node: target.clone(),
                last_gc_version: 1,
                from_version_excluded: 2,
                max_version: 9,
                key_values: vec![
                    KeyValueUpdate {
                        key: "shard".into(),
                        value: "7".into(),
                        version: 3,
                        status: DeletionStatus::Set,
                    },
                    KeyValueUpdate {
                        key: "gone".into(),
                        value: String::new(),
                        version: 9,
                        status: DeletionStatus::Deleted,
                    },
                ],
            }],
        };
        let mut bytes = Vec::new();
        assert_eq!(wire::encode(&packet, &mut bytes), 3);
        assert_eq!(wire::decode(&bytes), Ok(packet.clone()));
        // Every strict prefix is refused; so is a byte more.
        for cut in 0..bytes.len() {
            assert!(
                wire::decode(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(wire::decode(&longer), Err(DecodeError::TrailingBytes(1)));
    }
    assert_eq!(
        wire::decode(&[0x53, 0xb0, 0, 0]),
        Err(DecodeError::BadMagic(0xb053)),
        "a chitchat datagram is not taken for a cohort-mode packet"
    );
}

#[test]
fn a_large_table_syncs_in_packets_under_the_bound() {
    let now = Instant::now();
    let mut big = CohortMembership::new(CohortConfig::new(id("big", 1, 8000), "test"), now);
    for i in 0..500u16 {
        let name = format!("member-with-a-longish-name-{i:04}");
        let update = Update {
            kind: UpdateKind::Alive,
            id: id(&name, 1, 10_000 + i),
            incarnation: 0,
        };
        big.apply(now, addr(1), update);
    }
    assert_eq!(big.len(), 501);
    let mut joiner = CohortMembership::new(CohortConfig::new(id("joiner", 1, 8001), "test"), now);
    let request = Packet {
        cluster: wire::cluster_hash("test"),
        from: joiner.node_id().clone(),
        incarnation: 0,
        keys_version: 0,
        body: Body::SyncRequest {
            buckets: joiner.table_summary(),
            answer_back: false,
        },
        updates: Vec::new(),
        deltas: Vec::new(),
    };
    big.handle_packet(now, addr(8001), request);
    let mut buf = Vec::new();
    let mut packets = 0;
    while let Some(to) = big.poll_transmit(&mut buf) {
        assert_eq!(to, addr(8001));
        assert!(buf.len() <= MAX_PACKET, "{} bytes", buf.len());
        joiner.handle_datagram(now, addr(8000), &buf).unwrap();
        packets += 1;
    }
    assert!(packets > 10, "{packets} packets");
    assert_eq!(joiner.len(), 502, "the joiner knows the whole table");
}

#[test]
fn another_clusters_packets_are_counted_and_change_nothing() {
    let now = Instant::now();
    let mut m = CohortMembership::new(CohortConfig::new(id("a", 1, 8100), "test"), now);
    let packet = Packet {
        cluster: wire::cluster_hash("other"),
        from: id("x", 1, 8101),
        incarnation: 0,
        keys_version: 0,
        body: Body::Gossip,
        updates: Vec::new(),
        deltas: Vec::new(),
    };
    let mut bytes = Vec::new();
    wire::encode(&packet, &mut bytes);
    m.handle_datagram(now, addr(8101), &bytes).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m.diagnostics().bad_cluster, 1);
    assert!(matches!(
        m.poll_event(),
        Some(Event::BadCluster { suppressed: 0, .. })
    ));
}

#[test]
fn a_chitchat_peer_is_never_taken_for_a_cohort_mode_one_and_is_counted() {
    let now = Instant::now();
    let mut m = CohortMembership::new(CohortConfig::new(id("a", 1, 8200), "test"), now);
    let mut syn = Vec::new();
    crate::wire::encode_chitchat(
        crate::wire::ProtocolVersion::V0,
        &crate::wire::Message::Syn {
            cluster_id: "test".into(),
            digest: crate::wire::Digest {
                entries: vec![(
                    id("x", 1, 8201),
                    NodeDigest {
                        heartbeat: 1,
                        last_gc_version: 0,
                        max_version: 0,
                    },
                )],
            },
        },
        &mut syn,
    );
    assert_eq!(
        m.handle_datagram(now, addr(8201), &syn),
        Err(DecodeError::BadMagic(crate::wire::CHITCHAT_MAGIC))
    );
    assert_eq!(m.counts().chitchat_datagrams, 1);
    assert_eq!(m.len(), 1, "nothing learned from it");
    // Other garbage is refused without being taken for chitchat.
    assert!(m.handle_datagram(now, addr(8201), &[0xff, 0xff]).is_err());
    assert_eq!(m.counts().chitchat_datagrams, 1);
    // The other way round: a cohort-mode packet behind the envelope is no chitchat datagram.
    let packet = Packet {
        cluster: wire::cluster_hash("test"),
        from: id("x", 1, 8201),
        incarnation: 0,
        keys_version: 0,
        body: Body::Gossip,
        updates: Vec::new(),
        deltas: Vec::new(),
    };
    let timestamp = crate::Timestamp::new(1_000, 0, crate::NodeTag::new(1)).unwrap();
    let mut datagram = Vec::new();
    crate::wire::encode_envelope(timestamp, None, &mut datagram).unwrap();
    wire::encode(&packet, &mut datagram);
    assert_eq!(
        crate::wire::decode_datagram(&datagram).err(),
        Some(DecodeError::BadMagic(wire::COHORT_MODE_MAGIC))
    );
}

impl Net {
    /// What node `at` sees of node `of`'s key `key`.
    fn key(&self, at: usize, of: usize, key: &str) -> Option<String> {
        self.nodes[at]
            .member(self.nodes[of].node_id())
            .and_then(|m| m.get(key).map(str::to_owned))
    }

    /// Whether every live node sees node `of`'s key `key` as `value`.
    fn everyone_sees(&self, of: usize, key: &str, value: Option<&str>) -> bool {
        (0..self.nodes.len())
            .filter(|&i| !self.down[i])
            .all(|i| self.key(i, of, key).as_deref() == value)
    }

    fn key_events(&self, at: usize, key: &str) -> Vec<(Option<String>, Option<String>)> {
        self.events[at]
            .iter()
            .filter_map(|e| match e {
                Event::KeyChanged {
                    key: k, old, value, ..
                } if k == key => Some((old.clone(), value.clone())),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn key_values_spread_with_events_and_deletes_follow() {
    let mut net = Net::with(12, |i, config| {
        if i == 0 {
            config.initial_key_values = vec![("role".into(), "seed".into())];
        }
    });
    net.run_until(Duration::from_secs(5), Net::all_live)
        .expect("converges");
    net.run_until(Duration::from_secs(2), |net| {
        net.everyone_sees(0, "role", Some("seed"))
    })
    .expect("initial key-values reach everyone");
    // A key set later spreads by piggybacking, well before a table sync (10 s).
    let now = net.now;
    net.nodes[3].set(now, "shard", "7").unwrap();
    let took = net
        .run_until(Duration::from_secs(5), |net| {
            net.everyone_sees(3, "shard", Some("7"))
        })
        .expect("the key reaches everyone");
    assert!(took < Duration::from_secs(2), "{took:?}");
    for i in 0..12 {
        assert_eq!(
            net.key_events(i, "shard"),
            vec![(None, Some("7".into()))],
            "node {i} saw the change once"
        );
    }
    // Setting the same value again changes nothing; a new value and a delete follow.
    let now = net.now;
    net.nodes[3].set(now, "shard", "7").unwrap();
    net.nodes[3].set(now, "shard", "8").unwrap();
    assert!(net.nodes[3].delete(now, "shard").unwrap());
    assert!(
        !net.nodes[3].delete(now, "shard").unwrap(),
        "deleted already"
    );
    net.run_until(Duration::from_secs(5), |net| {
        net.everyone_sees(3, "shard", None)
    })
    .expect("the delete reaches everyone");
    for i in 0..12 {
        let seen = net.key_events(i, "shard");
        assert_eq!(
            seen.last(),
            Some(&(seen.last().and_then(|s| s.0.clone()), None))
        );
        assert!(seen.len() >= 2, "node {i}: {seen:?}");
    }
    let max = net.nodes[3].local_member().max_version;
    assert_eq!(max, 3, "set, set again, delete");
    for node in &net.nodes {
        assert_eq!(
            node.member(net.nodes[3].node_id()).unwrap().max_version,
            max
        );
    }
}

#[test]
fn a_node_behind_asks_the_sender_for_what_it_missed() {
    // No table sync within the test: only the pull can repair.
    let mut net = Net::with(6, |_, config| {
        config.sync_interval = Duration::from_secs(600)
    });
    net.run_until(Duration::from_secs(5), Net::all_live)
        .expect("converges");
    net.run(Duration::from_secs(3));
    // Node 5 hears nothing while node 1 writes twice; its budget runs out meanwhile.
    net.down[5] = true;
    let now = net.now;
    net.nodes[1].set(now, "a", "1").unwrap();
    net.nodes[1].set(now, "b", "2").unwrap();
    net.run(Duration::from_millis(300));
    assert_eq!(net.key(5, 1, "a"), None, "node 5 missed the writes");
    let pulls = net.nodes[5].counts().key_pulls;
    net.down[5] = false;
    // The writes' deltas were sent their budget while node 5 was away; the next packet from
    // node 1 says its keys moved on, and node 5 asks it for the rest.
    let took = net
        .run_until(Duration::from_secs(5), |net| {
            ["a", "b"].iter().all(|k| net.key(5, 1, k).is_some())
        })
        .expect("node 5 catches up");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // A write it misses in part (a gap) is asked for too.
    net.down[5] = true;
    let now = net.now;
    net.nodes[1].set(now, "c", "3").unwrap();
    net.run(Duration::from_millis(300));
    net.down[5] = false;
    net.nodes[1].set(net.now, "d", "4").unwrap();
    net.run_until(Duration::from_secs(5), |net| {
        ["c", "d"].iter().all(|k| net.key(5, 1, k).is_some())
    })
    .expect("node 5 catches up again");
    assert!(net.nodes[5].counts().key_pulls > pulls, "by asking");
}

#[test]
fn table_syncs_repair_keys_missed_for_good() {
    let mut net = Net::with(5, |_, config| {
        config.sync_interval = Duration::from_secs(2);
    });
    net.run_until(Duration::from_secs(5), Net::all_live)
        .expect("converges");
    net.down[4] = true;
    let now = net.now;
    net.nodes[0].set(now, "x", "1").unwrap();
    net.run(Duration::from_secs(1));
    net.down[4] = false;
    // No further write: only a table sync can tell node 4 that node 0's keys moved on.
    net.run_until(Duration::from_secs(20), |net| {
        net.key(4, 0, "x").as_deref() == Some("1")
    })
    .expect("a sync repairs it");
    let digests: Vec<u64> = net
        .nodes
        .iter()
        .map(CohortMembership::table_digest)
        .collect();
    net.run(Duration::from_secs(5));
    let after: Vec<u64> = net
        .nodes
        .iter()
        .map(CohortMembership::table_digest)
        .collect();
    assert!(
        after.windows(2).all(|w| w[0] == w[1]),
        "tables agree: {after:?} (were {digests:?})"
    );
}

#[test]
fn collected_tombstones_force_a_reset_of_a_stale_copy() {
    let grace = Duration::from_secs(3);
    let mut net = Net::with(4, |_, config| {
        config.marked_for_deletion_grace_period = grace;
        config.sync_interval = Duration::from_secs(2);
    });
    net.run_until(Duration::from_secs(5), Net::all_live)
        .expect("converges");
    let now = net.now;
    net.nodes[0].set(now, "old", "v").unwrap();
    net.nodes[0].set_with_ttl(now, "ttl", "t").unwrap();
    net.run_until(Duration::from_secs(3), |net| {
        net.everyone_sees(0, "old", Some("v")) && net.everyone_sees(0, "ttl", Some("t"))
    })
    .expect("spread");
    // Node 3 misses the delete and its collection everywhere.
    net.down[3] = true;
    let now = net.now;
    assert!(net.nodes[0].delete(now, "old").unwrap());
    net.run(grace + Duration::from_secs(1));
    assert_eq!(
        net.nodes[0]
            .node_state(net.nodes[0].node_id())
            .unwrap()
            .get_versioned("old"),
        None,
        "collected"
    );
    for i in 0..3 {
        assert_eq!(
            net.key(i, 0, "ttl"),
            None,
            "the TTL key is collected at node {i}"
        );
        assert!(net.key_events(i, "ttl").contains(&(Some("t".into()), None)));
    }
    net.down[3] = false;
    net.run_until(Duration::from_secs(20), |net| {
        net.key(3, 0, "old").is_none()
    })
    .expect("node 3 drops the deleted key");
    assert!(
        net.events[3]
            .iter()
            .any(|e| matches!(e, Event::Reset(m) if m.id == *net.nodes[0].node_id())),
        "by a reset"
    );
    for node in &net.nodes {
        node.check_indexes();
    }
}

#[test]
fn a_state_larger_than_a_packet_reaches_everyone() {
    let mut net = Net::new(5);
    net.run_until(Duration::from_secs(5), Net::all_live)
        .expect("converges");
    let now = net.now;
    let value = "v".repeat(300);
    for k in 0..20 {
        net.nodes[2]
            .set(now, &format!("key-{k:02}"), &value)
            .unwrap();
    }
    net.run_until(Duration::from_secs(30), |net| {
        (0..20).all(|k| net.everyone_sees(2, &format!("key-{k:02}"), Some(&value)))
    })
    .expect("6 kB of keys reach everyone");
    assert!(net.largest <= MAX_PACKET, "{} bytes", net.largest);
}

#[test]
fn writes_are_checked_and_refused_ones_change_nothing() {
    let now = Instant::now();
    let mut m = CohortMembership::new(CohortConfig::new(id("a", 1, 8300), "test"), now);
    let version = m.members_version();
    assert_eq!(
        m.set(now, "__cohort/x", "1"),
        Err(KeyError::Reserved("__cohort/x".into()))
    );
    let fits = wire::max_entry_len(m.node_id());
    assert!(fits > 900, "{fits}");
    let long = "v".repeat(fits);
    assert!(matches!(
        m.set(now, "k", &long),
        Err(KeyError::TooLong { len, max, .. }) if len == fits && max == fits - 1
    ));
    assert_eq!(m.members_version(), version, "nothing changed");
    m.set(now, "k", &long[1..]).unwrap();
    assert_eq!(m.local_member().get("k").map(str::len), Some(fits - 1));
    m.leave(now);
    assert_eq!(m.set(now, "k", "1"), Err(KeyError::Leaving));
    assert_eq!(m.delete(now, "k"), Err(KeyError::Leaving));
}

#[test]
fn a_member_failing_the_liveness_predicate_is_unready_until_it_passes() {
    let predicate: LivenessPredicate =
        std::sync::Arc::new(|state: &NodeState| state.get("ready") == Some("yes"));
    let mut net = Net::with(4, |i, config| {
        config.liveness_predicate = Some(predicate.clone());
        if i != 2 {
            config.initial_key_values = vec![("ready".into(), "yes".into())];
        }
    });
    net.run_until(Duration::from_secs(5), |net| {
        (0..4).filter(|&i| i != 2).all(|i| {
            (0..4)
                .filter(|&j| j != 2 && j != i)
                .all(|j| net.status(i, j) == Some(MemberStatus::Live))
                && net.status(i, 2) == Some(MemberStatus::Unready)
        })
    })
    .expect("node 2 is unready everywhere");
    let now = net.now;
    net.nodes[2].set(now, "ready", "yes").unwrap();
    net.run_until(Duration::from_secs(3), |net| {
        (0..4).all(|i| net.status(i, 2) == Some(MemberStatus::Live))
    })
    .expect("and live once its key says so");
    assert!(
        net.events[0]
            .iter()
            .any(|e| matches!(e, Event::Unready(m) if m.id == *net.nodes[2].node_id()))
    );
    assert!(
        net.events[0]
            .iter()
            .any(|e| matches!(e, Event::Recovered(m) if m.id == *net.nodes[2].node_id()))
    );
}

#[test]
fn malformed_deltas_are_refused() {
    let delta = |from, max, versions: &[u64]| Packet {
        cluster: wire::cluster_hash("test"),
        from: id("a", 1, 7000),
        incarnation: 0,
        keys_version: 0,
        body: Body::Gossip,
        updates: Vec::new(),
        deltas: vec![NodeDelta {
            node: id("b", 1, 7001),
            last_gc_version: 0,
            from_version_excluded: from,
            max_version: max,
            key_values: versions
                .iter()
                .map(|&version| KeyValueUpdate {
                    key: format!("k{version}"),
                    value: "v".into(),
                    version,
                    status: DeletionStatus::Set,
                })
                .collect(),
        }],
    };
    let encode = |packet: &Packet| {
        let mut bytes = Vec::new();
        wire::encode(packet, &mut bytes);
        bytes
    };
    let good = delta(1, 4, &[2, 4]);
    assert_eq!(wire::decode(&encode(&good)), Ok(good));
    for bad in [
        delta(1, 4, &[4, 2]),
        delta(1, 4, &[2, 5]),
        delta(3, 4, &[2]),
        delta(5, 4, &[]),
    ] {
        assert!(
            matches!(
                wire::decode(&encode(&bad)),
                Err(DecodeError::MalformedDelta(_))
            ),
            "{bad:?}"
        );
    }
}
