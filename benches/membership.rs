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
//!
//! Before the timings, the bench counts heap allocations (a counting global allocator) over
//! 1,000 warm exchanges and prints them per exchange and per datagram: the datagram buffers
//! themselves circulate between the node and the caller (`poll_transmit` swaps them), so what
//! is left is the machine's own work (digest alignment, delta ordering, key updates).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cohort_core::membership::{Membership, MembershipConfig};
use cohort_core::wire::{
    self, DeletionStatus, Delta, Digest, KeyValueUpdate, Message, NodeDelta, NodeDigest,
    ProtocolVersion,
};
use cohort_core::{Node, NodeConfig, NodeId, Transmits, WallTime};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// The system allocator, counting allocations (reallocations included).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a relaxed
// atomic that allocates nothing.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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

fn node_config(me: &NodeId, version: ProtocolVersion) -> NodeConfig {
    let mut c = NodeConfig::new(me.clone());
    c.cluster_id = "bench".into();
    c.gossip_interval = Duration::from_millis(100);
    c.protocol_version = version;
    c
}

/// Two nodes that both know the `n` nodes of `lesson`, drained.
fn taught_nodes(
    a_id: &NodeId,
    b_id: &NodeId,
    version: ProtocolVersion,
    lesson: &[u8],
    now: Instant,
    wall: WallTime,
) -> (Node, Node) {
    let teacher = SocketAddr::from(([127, 0, 0, 1], 9000));
    let mut a = Node::new(node_config(a_id, version), now).expect("valid config");
    let mut b = Node::new(node_config(b_id, version), now).expect("valid config");
    for node in [&mut a, &mut b] {
        node.handle_datagram(now, wall, teacher, lesson)
            .expect("valid");
        let _ = node.drain(wall, &mut Transmits::new(), &mut Vec::new());
    }
    (a, b)
}

/// One step of a handshake: `from` drains into the reused batch and `to` takes every datagram.
/// Returns how many there were.
fn hop(
    from: &mut Node,
    to: &mut Node,
    now: Instant,
    wall: WallTime,
    out: &mut Transmits,
    events: &mut Vec<cohort_core::Event>,
) -> usize {
    let from_addr = from.id().gossip_addr();
    let _ = from.drain(wall, out, events);
    for t in &*out {
        to.handle_datagram(now, wall, from_addr, &t.payload)
            .expect("ok");
    }
    let sent = out.len();
    out.clear();
    events.clear();
    sent
}

/// One handshake between two nodes, driven as a driver does: input, then drain into a reused
/// batch. Returns the datagrams exchanged (3: Syn, SynAck, Ack).
fn node_exchange(
    a: &mut Node,
    b: &mut Node,
    now: Instant,
    wall: WallTime,
    out: &mut Transmits,
    events: &mut Vec<cohort_core::Event>,
) -> usize {
    a.gossip_to(b.id().gossip_addr());
    hop(a, b, now, wall, out, events)
        + hop(b, a, now, wall, out, events)
        + hop(a, b, now, wall, out, events)
        + hop(b, a, now, wall, out, events)
}

/// Prints the heap allocations of warm node exchanges, per exchange and per datagram.
fn report_allocations() {
    let a_id = NodeId::new("bench-a", 1, SocketAddr::from(([127, 0, 0, 1], 9001)));
    let b_id = NodeId::new("bench-b", 1, SocketAddr::from(([127, 0, 0, 1], 9002)));
    let now = Instant::now();
    let wall = WallTime::from_unix_millis(1_760_000_000_000).expect("in range");
    for n in [100usize, 1_000] {
        for version in [ProtocolVersion::V0, ProtocolVersion::V1] {
            let lesson = teaching_synack(n, version);
            let (mut a, mut b) = taught_nodes(&a_id, &b_id, version, &lesson, now, wall);
            let (mut out, mut events) = (Transmits::new(), Vec::new());
            for _ in 0..100 {
                node_exchange(&mut a, &mut b, now, wall, &mut out, &mut events);
            }
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            let mut datagrams = 0;
            let exchanges = 1_000;
            for _ in 0..exchanges {
                datagrams += node_exchange(&mut a, &mut b, now, wall, &mut out, &mut events);
            }
            let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
            println!(
                "allocations, Node {version:?} N = {n}: {:.2} per exchange, {:.2} per datagram ({datagrams} datagrams)",
                allocations as f64 / f64::from(exchanges),
                allocations as f64 / datagrams as f64,
            );
        }
    }
}

fn exchange(c: &mut Criterion) {
    report_allocations();
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
            let mut buf = Vec::new();
            for m in [&mut a, &mut b] {
                m.handle_datagram(now, teacher, &lesson).expect("valid");
                while m.poll_transmit(&mut buf).is_some() {}
                while m.poll_event().is_some() {}
            }
            g.bench_with_input(
                BenchmarkId::new(format!("Membership {version:?}"), n),
                &n,
                |bench, _| {
                    bench.iter(|| {
                        a.gossip_to(b_id.gossip_addr());
                        a.poll_transmit(&mut buf).expect("syn");
                        b.handle_datagram(now, a_id.gossip_addr(), &buf)
                            .expect("ok");
                        b.poll_transmit(&mut buf).expect("synack");
                        a.handle_datagram(now, b_id.gossip_addr(), &buf)
                            .expect("ok");
                        a.poll_transmit(&mut buf).expect("ack");
                        b.handle_datagram(now, a_id.gossip_addr(), &buf)
                            .expect("ok");
                        black_box(&buf);
                    })
                },
            );

            // Nodes: the same plus the envelope and the clock, driven through `drain`.
            let wall = WallTime::from_unix_millis(1_760_000_000_000).expect("in range");
            let (mut a, mut b) = taught_nodes(&a_id, &b_id, version, &lesson, now, wall);
            let (mut out, mut events) = (Transmits::new(), Vec::new());
            g.bench_with_input(
                BenchmarkId::new(format!("Node (enveloped) {version:?}"), n),
                &n,
                |bench, _| {
                    bench.iter(|| {
                        black_box(node_exchange(
                            &mut a,
                            &mut b,
                            now,
                            wall,
                            &mut out,
                            &mut events,
                        ))
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
