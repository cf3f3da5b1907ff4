//! CPU cost of the membership machine: one full Syn / SynAck / Ack exchange between two
//! machines that each know N nodes (steady state: both hold the same N node states, so the
//! digests are full and the deltas carry only what changed since the last exchange).
//!
//! `cargo bench -p cohort-benches --bench membership`
//!
//! Each iteration: A starts a handshake with B (encodes a Syn with its digest), B decodes it,
//! records heartbeats, computes and encodes a SynAck (digest + delta), A decodes it, applies
//! the delta, encodes an Ack, and B decodes and applies it. Both bare chitchat (V0) and
//! enveloped cohort datagrams (with the clock) are measured.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cohort_core::membership::{Membership, MembershipConfig};
use cohort_core::wire::{
    self, DeletionStatus, Delta, Digest, KeyValueUpdate, Message, NodeDelta, NodeDigest,
    ProtocolVersion,
};
use cohort_core::{Node, NodeConfig, NodeId, WallTime};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn node_id(i: usize) -> NodeId {
    let addr = SocketAddr::from(([10, (i / 250) as u8, (i % 250) as u8, 1], 7000));
    NodeId::new(format!("node-{i:04}"), 1, addr)
}

/// A SynAck from a fake peer that teaches a machine `n` nodes, each with 3 keys.
fn teaching_synack(n: usize, version: ProtocolVersion) -> Vec<u8> {
    let ids: Vec<NodeId> = (0..n).map(node_id).collect();
    let digest = Digest {
        entries: ids
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    NodeDigest {
                        heartbeat: 1_000,
                        last_gc_version: 0,
                        max_version: 3,
                    },
                )
            })
            .collect(),
    };
    let delta = Delta {
        nodes: ids
            .iter()
            .map(|id| NodeDelta {
                node: id.clone(),
                last_gc_version: 0,
                from_version_excluded: 0,
                max_version: 3,
                key_values: ["data_center", "rpc_addr", "role"]
                    .iter()
                    .enumerate()
                    .map(|(v, k)| KeyValueUpdate {
                        key: (*k).to_owned(),
                        value: format!("{k}-value-{id}"),
                        version: v as u64 + 1,
                        status: DeletionStatus::Set,
                    })
                    .collect(),
            })
            .collect(),
    };
    let mut out = Vec::new();
    wire::encode_chitchat(version, &Message::SynAck { digest, delta }, &mut out);
    out
}

fn config(me: &NodeId, version: ProtocolVersion) -> MembershipConfig {
    let mut c = MembershipConfig::new(me.clone(), "bench");
    c.gossip_interval = Duration::from_millis(100);
    c.protocol_version = version;
    c
}

fn exchange(c: &mut Criterion) {
    let mut g = c.benchmark_group("membership/exchange");
    for n in [100usize, 1_000] {
        for version in [ProtocolVersion::V0, ProtocolVersion::V1] {
            let a_id = NodeId::new("bench-a", 1, SocketAddr::from(([127, 0, 0, 1], 9001)));
            let b_id = NodeId::new("bench-b", 1, SocketAddr::from(([127, 0, 0, 1], 9002)));
            let teacher = SocketAddr::from(([127, 0, 0, 1], 9000));
            let now = Instant::now();
            let lesson = teaching_synack(n, version);

            // Bare membership machines.
            let mut a = Membership::new(config(&a_id, version), now);
            let mut b = Membership::new(config(&b_id, version), now);
            for m in [&mut a, &mut b] {
                m.handle_datagram(now, teacher, &lesson).expect("valid");
                while m.poll_transmit().is_some() {}
                while m.poll_event().is_some() {}
            }
            g.bench_with_input(
                BenchmarkId::new(format!("Membership {version:?}"), n),
                &n,
                |bench, _| {
                    bench.iter(|| {
                        a.gossip_to(b_id.gossip_addr());
                        let syn = a.poll_transmit().expect("syn");
                        b.handle_datagram(now, a_id.gossip_addr(), &syn.payload)
                            .expect("ok");
                        let synack = b.poll_transmit().expect("synack");
                        a.handle_datagram(now, b_id.gossip_addr(), &synack.payload)
                            .expect("ok");
                        let ack = a.poll_transmit().expect("ack");
                        b.handle_datagram(now, a_id.gossip_addr(), &ack.payload)
                            .expect("ok");
                        black_box(&ack);
                    })
                },
            );

            // Nodes: the same plus the envelope and the clock.
            let wall = WallTime::from_unix_millis(1_760_000_000_000).expect("in range");
            let mut a = Node::new(NodeConfig::new(config(&a_id, version)), now);
            let mut b = Node::new(NodeConfig::new(config(&b_id, version)), now);
            for node in [&mut a, &mut b] {
                node.handle_datagram(now, wall, teacher, &lesson)
                    .expect("valid");
                while node.poll_transmit(wall).is_some() {}
                while node.poll_event().is_some() {}
            }
            g.bench_with_input(
                BenchmarkId::new(format!("Node (enveloped) {version:?}"), n),
                &n,
                |bench, _| {
                    bench.iter(|| {
                        a.membership_mut().gossip_to(b_id.gossip_addr());
                        let syn = a.poll_transmit(wall).expect("syn");
                        b.handle_datagram(now, wall, a_id.gossip_addr(), &syn.payload)
                            .expect("ok");
                        let synack = b.poll_transmit(wall).expect("synack");
                        a.handle_datagram(now, wall, b_id.gossip_addr(), &synack.payload)
                            .expect("ok");
                        let ack = a.poll_transmit(wall).expect("ack");
                        b.handle_datagram(now, wall, a_id.gossip_addr(), &ack.payload)
                            .expect("ok");
                        black_box(&ack);
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = exchange
}
criterion_main!(benches);
