//! The clock and the selectors, on their own: five nodes in three data centers (plain values
//! in one process, no membership and no network) exchange messages stamped by their hybrid
//! logical clocks (one node's wall clock is two seconds fast, and its messages are refused),
//! then each consistency level picks replicas, and rendezvous hashing assigns keys to owners.
//!
//! Run it with `cargo run --example clock_and_selectors`.
//!
//! Everything here runs on virtual time: the core never reads a clock, so the example passes
//! the wall time of each simulated node in, with no networking at all. `cargo run --example
//! cluster` runs a real cluster on loopback with the tokio driver; `cargo run --example
//! custom_loop` drives a membership node by hand; the `cohort-sim` crate simulates whole
//! clusters.

use std::net::SocketAddr;

use cohort_core::{
    Candidate, ClockError, Consistency, DcAwareSelector, Hlc, HlcConfig, NodeId, NodeSelector,
    NodeTag, RendezvousSelector, Timestamp, Topology, WallTime,
};
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// One simulated node: identity, data center, clock and wall-clock skew.
struct SimNode {
    id: NodeId,
    dc: &'static str,
    clock: Hlc,
    skew_ms: i64,
}

impl SimNode {
    fn wall(&self, virtual_ms: u64) -> WallTime {
        WallTime::from_unix_millis(virtual_ms.saturating_add_signed(self.skew_ms))
            .expect("simulated wall times are in range")
    }

    fn candidate(&self) -> Candidate {
        Candidate::new(self.id.clone(), self.id.gossip_addr(), self.dc)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let layout = [
        ("node-1", "eu-west", 0),
        ("node-2", "eu-west", 3),
        ("node-3", "us-east", -7),
        ("node-4", "us-east", 12),
        ("node-5", "ap-south", 2_000),
    ];
    let mut nodes: Vec<SimNode> = layout
        .iter()
        .enumerate()
        .map(|(i, &(name, dc, skew_ms))| {
            let addr = SocketAddr::from(([127, 0, 0, 1], 7001 + i as u16));
            let id = NodeId::new(name, 1, addr);
            let clock = Hlc::new(HlcConfig::new(NodeTag::from_node_id(&id)));
            SimNode {
                id,
                dc,
                clock,
                skew_ms,
            }
        })
        .collect();

    println!("== clocks: each node sends to the next, 1 ms of virtual time per message ==");
    let start_ms = 1_760_000_000_000u64;
    let mut last_accepted: Option<Timestamp> = None;
    for step in 0..10u64 {
        let now = start_ms + step;
        let from = (step as usize) % nodes.len();
        let to = (from + 1) % nodes.len();
        let wall_from = nodes[from].wall(now);
        let sent = nodes[from].clock.now(wall_from)?;
        let wall_to = nodes[to].wall(now);
        match nodes[to].clock.observe(sent, wall_to) {
            Ok(received) => {
                println!(
                    "{} -> {}: sent {sent}, received as {received}",
                    nodes[from].id.name(),
                    nodes[to].id.name()
                );
                assert!(received > sent, "causality");
                last_accepted = Some(received);
            }
            Err(ClockError::DriftExceeded { .. }) => {
                println!(
                    "{} -> {}: refused, {} runs {} ms ahead (maximum drift {} ms)",
                    nodes[from].id.name(),
                    nodes[to].id.name(),
                    nodes[from].id.name(),
                    nodes[from].skew_ms - nodes[to].skew_ms,
                    nodes[to].clock.max_drift().as_millis()
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(t) = last_accepted {
        println!(
            "last accepted receive: {t} (physical {} ms, counter {})",
            t.millis(),
            t.counter()
        );
    }

    println!();
    println!("== replica selection from node-1 (eu-west) ==");
    let topology = Topology::new(
        nodes[0].candidate(),
        nodes[1..].iter().map(SimNode::candidate),
    );
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
    for level in Consistency::ALL_LEVELS {
        match DcAwareSelector.select(&topology, level, &mut rng) {
            Ok(picked) => {
                let names: Vec<String> = picked
                    .iter()
                    .map(|m| format!("{} ({})", m.id().name(), m.data_center()))
                    .collect();
                println!("{level:<12} -> [{}]", names.join(", "));
            }
            Err(e) => println!("{level:<12} -> error: {e}"),
        }
    }

    println!();
    println!("== key owners by rendezvous hashing (2 replicas per key) ==");
    let rendezvous = RendezvousSelector;
    for key in ["orders/1", "orders/2", "users/alice", "users/bob"] {
        let owners = rendezvous.select_for_key(&topology, key.as_bytes(), 2)?;
        let names: Vec<&str> = owners.iter().map(|m| m.id().name()).collect();
        println!("{key:<12} -> {names:?}");
    }
    Ok(())
}
