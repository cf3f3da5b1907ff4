//! Selection cost at 1,000 live members in 5 data centers: nanoseconds per `select` for the
//! data-center aware levels, the random selector, and a key-affinity (rendezvous) pick of 3.
//!
//! `cargo bench -p cohort-benches --bench selector`

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use cohort_core::{
    Candidate, Consistency, DcAwareSelector, NodeId, NodeSelector, RandomSelector,
    RendezvousSelector, Topology,
};
use criterion::{Criterion, criterion_group, criterion_main};
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// `members` members spread round-robin over `dcs` data centers; member 0 is the local one.
fn candidates(members: usize, dcs: usize) -> Vec<Candidate> {
    let candidate = |i: usize| {
        let addr = SocketAddr::from(([10, (i / 250) as u8, (i % 250) as u8, 1], 7000));
        Candidate::new(
            NodeId::new(format!("node-{i:04}"), 1, addr),
            addr,
            format!("dc-{}", i % dcs),
        )
    };
    (0..members).map(candidate).collect()
}

fn build_topology(members: &[Candidate]) -> Topology {
    Topology::new(members[0].clone(), members[1..].iter().cloned())
}

fn selectors(c: &mut Criterion) {
    let members = candidates(1_000, 5);
    let topology = build_topology(&members);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut g = c.benchmark_group("selector/1000-members-5-dcs");

    let levels = [
        Consistency::One,
        Consistency::Three,
        Consistency::Quorum,
        Consistency::LocalQuorum,
        Consistency::EachQuorum,
    ];
    for level in levels {
        g.bench_function(format!("DcAwareSelector {level}"), |b| {
            b.iter(|| black_box(DcAwareSelector.select(&topology, black_box(level), &mut rng)))
        });
    }
    for level in [Consistency::Three, Consistency::Quorum] {
        g.bench_function(format!("RandomSelector {level}"), |b| {
            b.iter(|| black_box(RandomSelector.select(&topology, black_box(level), &mut rng)))
        });
    }
    let rendezvous = RendezvousSelector;
    let mut key = 0u64;
    g.bench_function("RendezvousSelector select_for_key n=3", |b| {
        b.iter(|| {
            key = key.wrapping_add(1);
            black_box(rendezvous.select_for_key(&topology, &key.to_le_bytes(), 3))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("selector/build");
    g.bench_function("Topology::new 1000 members 5 dcs", |b| {
        b.iter(|| black_box(build_topology(black_box(&members))))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = selectors
}
criterion_main!(benches);
