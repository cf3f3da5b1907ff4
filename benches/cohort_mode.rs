//! cohort mode's machine (`CohortMembership`) at scale, on an in-memory network with virtual
//! time: cold start, steady-state traffic per node, crash to dead at every live node, and a
//! join's spread. Full machines, every packet encoded and decoded.
//!
//! ```sh
//! cargo bench -p cohort-benches --bench cohort_mode -- 100 1000
//! ```
//!
//! Arguments: cluster sizes (default 100 and 1,000). After the cold start, 30 s pass (the
//! gossip of every join drains) before the 10 s of steady state are measured. First step of cohort mode: no key-values
//! yet, not behind `Node` yet, so no side-by-side with chitchat mode in this binary (that comes
//! with the simulator in cohort mode).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cohort_core::membership::cohort_mode::wire::{self, Body};
use cohort_core::membership::cohort_mode::{CohortConfig, CohortMembership};
use cohort_core::{MemberStatus, NodeId};

const STEP: Duration = Duration::from_millis(5);
const INTERVAL: Duration = Duration::from_millis(100);

fn addr(i: usize) -> SocketAddr {
    let i = u32::try_from(i).expect("a small cluster");
    SocketAddr::from((
        std::net::Ipv4Addr::from(0x0a00_0000 + (i >> 14)),
        7000 + u16::try_from(i & 0x3fff).unwrap_or(0),
    ))
}

struct Cluster {
    nodes: Vec<CohortMembership>,
    at: HashMap<SocketAddr, usize>,
    down: Vec<bool>,
    now: Instant,
    /// Bytes and packets sent by each node since the last reset.
    bytes: Vec<u64>,
    packets: Vec<u64>,
    largest: usize,
    /// `Failed` events since the last reset (false positives while nothing crashed).
    failed: u64,
    /// One shared identity per member for the whole simulation (as every real node holds its
    /// own): decoded packets carry these clones, so that 10,000 tables of 10,000 members
    /// share 10,000 identities.
    interned: HashMap<NodeId, NodeId>,
    /// Packets lost, per thousand, and the generator that picks them.
    loss_per_mille: u64,
    rng: u64,
    /// Per node: packets to it lost, per thousand (Rapid's scenario).
    ingress_loss: Vec<u64>,
    /// `Failed` events about each node since the last reset, by observer.
    failed_about: HashMap<NodeId, Vec<usize>>,
}

impl Cluster {
    fn new(n: usize) -> Self {
        let now = Instant::now();
        let mut cluster = Self {
            nodes: Vec::with_capacity(n),
            at: HashMap::new(),
            down: Vec::new(),
            now,
            bytes: Vec::new(),
            packets: Vec::new(),
            largest: 0,
            failed: 0,
            interned: HashMap::new(),
            loss_per_mille: 0,
            rng: 0x5eed_1055,
            ingress_loss: Vec::new(),
            failed_about: HashMap::new(),
        };
        for i in 0..n {
            cluster.add(i, 1);
        }
        cluster
    }

    fn add(&mut self, i: usize, generation: u64) {
        let id = NodeId::new(format!("node-{i:05}"), generation, addr(i));
        let id = self.intern(&id);
        let mut config = CohortConfig::new(id, "bench");
        config.seeds = vec![addr(0)];
        config.rng_seed = (i as u64 + 1) * 0x9e37_79b9 + generation;
        config.probe_interval = INTERVAL;
        let node = CohortMembership::new(config, self.now);
        if i < self.nodes.len() {
            self.nodes[i] = node;
            self.down[i] = false;
        } else {
            self.nodes.push(node);
            self.down.push(false);
            self.bytes.push(0);
            self.packets.push(0);
            self.ingress_loss.push(0);
        }
        self.at.insert(addr(i), i);
    }

    fn intern(&mut self, id: &NodeId) -> NodeId {
        self.interned
            .entry(id.clone())
            .or_insert_with(|| id.clone())
            .clone()
    }

    fn step(&mut self) {
        self.now += STEP;
        for i in 0..self.nodes.len() {
            if !self.down[i] && self.nodes[i].poll_timeout() <= self.now {
                let now = self.now;
                self.nodes[i].handle_timeout(now);
            }
        }
        let mut buf = Vec::new();
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(to) = self.nodes[i].poll_transmit(&mut buf) {
                    moved = true;
                    if self.down[i] {
                        continue;
                    }
                    self.bytes[i] += buf.len() as u64;
                    self.packets[i] += 1;
                    self.largest = self.largest.max(buf.len());
                    if self.loss_per_mille > 0 {
                        self.rng ^= self.rng << 13;
                        self.rng ^= self.rng >> 7;
                        self.rng ^= self.rng << 17;
                        if self.rng % 1000 < self.loss_per_mille {
                            continue;
                        }
                    }
                    let Some(&j) = self.at.get(&to) else { continue };
                    if self.down[j] {
                        continue;
                    }
                    if self.ingress_loss[j] > 0 {
                        self.rng ^= self.rng << 13;
                        self.rng ^= self.rng >> 7;
                        self.rng ^= self.rng << 17;
                        if self.rng % 1000 < self.ingress_loss[j] {
                            continue;
                        }
                    }
                    let from = addr(i);
                    let now = self.now;
                    let mut packet = wire::decode(&buf).expect("a valid packet");
                    packet.from = self.intern(&packet.from);
                    for update in &mut packet.updates {
                        update.id = self.intern(&update.id);
                    }
                    if let Body::PingReq { target, .. } = &mut packet.body {
                        *target = self.intern(target);
                    }
                    self.nodes[j].handle_packet(now, from, packet);
                }
                while let Some(event) = self.nodes[i].poll_event() {
                    if let cohort_core::Event::Failed(member) = event {
                        self.failed += 1;
                        self.failed_about.entry(member.id).or_default().push(i);
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Steps until `done`, for at most `limit`; the time it took.
    fn until(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) -> Option<Duration> {
        let start = self.now;
        while self.now - start < limit {
            if done(self) {
                return Some(self.now - start);
            }
            self.step();
        }
        done(self).then(|| self.now - start)
    }

    fn up(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| !self.down[i])
    }

    /// How many up nodes see `id` with `status`.
    fn seen(&self, id: &NodeId, status: MemberStatus) -> usize {
        self.up()
            .filter(|&i| self.nodes[i].status(id) == Some(status))
            .count()
    }

    fn reset_traffic(&mut self) {
        self.bytes.iter_mut().for_each(|b| *b = 0);
        self.packets.iter_mut().for_each(|p| *p = 0);
        self.failed = 0;
        self.failed_about.clear();
    }
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let at = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[at.min(values.len() - 1)]
}

fn run(n: usize) {
    let wall = Instant::now();
    let mut cluster = Cluster::new(n);
    let cold = cluster.until(Duration::from_secs(120), |c| {
        c.up().all(|i| c.nodes[i].live_peers() + 1 == n)
    });
    let cold = cold.map_or_else(
        || "not within 120 s".to_owned(),
        |d| format!("{:.2} s", d.as_secs_f64()),
    );

    let differing = |c: &Cluster| -> f64 {
        let base = c.nodes[0].table_summary();
        let others = (1..c.nodes.len()).step_by((c.nodes.len() / 50).max(1));
        let counts: Vec<usize> = others
            .map(|i| {
                let s = c.nodes[i].table_summary();
                s.iter().zip(&base).filter(|(a, b)| a != b).count()
            })
            .collect();
        counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64
    };
    if std::env::var_os("COHORT_BENCH_DEBUG").is_some() {
        eprintln!(
            "buckets differing from node 0's at the start of the steady state: {:.1}",
            differing(&cluster)
        );
    }
    // The news of the start (every join) drains from the gossip queues: 30 s.
    cluster.until(Duration::from_secs(30), |_| false);
    // Steady state: 10 s.
    cluster.reset_traffic();
    let steady = Duration::from_secs(10);
    cluster.until(steady, |_| false);
    let secs = steady.as_secs_f64();
    let mut bytes: Vec<f64> = cluster.bytes.iter().map(|b| *b as f64 / secs).collect();
    let mut packets: Vec<f64> = cluster.packets.iter().map(|p| *p as f64 / secs).collect();
    if std::env::var_os("COHORT_BENCH_DEBUG").is_some() {
        eprintln!(
            "buckets differing from node 0's at the end of the steady state: {:.1}",
            differing(&cluster)
        );
        let mut top: Vec<(u64, usize)> = cluster.bytes.iter().copied().zip(0..).collect();
        top.sort_unstable_by(|a, b| b.cmp(a));
        eprintln!(
            "top senders (bytes in 10 s, node): {:?}",
            &top[..top.len().min(8)]
        );
    }
    let false_positives = cluster.failed;
    let refutations: u64 = cluster.nodes.iter().map(|n| n.counts().refutations).sum();

    // A crash, seen failed by every live node.
    let victim = n / 2;
    let id = cluster.nodes[victim].node_id().clone();
    cluster.down[victim] = true;
    let live = n - 1;
    let dead = cluster.until(Duration::from_secs(60), |c| {
        c.seen(&id, MemberStatus::Failed) == live
    });
    let dead = dead.map_or_else(
        || "not within 60 s".to_owned(),
        |d| format!("{:.2} s", d.as_secs_f64()),
    );

    // A join (a new node), seen live by 99% and by every node.
    let joiner = n;
    cluster.add(joiner, 1);
    let joined = cluster.nodes[joiner].node_id().clone();
    let others = cluster.up().count() - 1;
    let p99 = cluster.until(Duration::from_secs(60), |c| {
        c.seen(&joined, MemberStatus::Live) * 100 >= others * 99
    });
    let all = cluster.until(Duration::from_secs(60), |c| {
        c.seen(&joined, MemberStatus::Live) >= others
    });
    let rounds = |d: Option<Duration>, extra: Duration| {
        d.map_or_else(
            || "-".to_owned(),
            |d| format!("{:.1}", (d + extra).as_secs_f64() / INTERVAL.as_secs_f64()),
        )
    };
    let p99_rounds = rounds(p99, Duration::ZERO);
    let all_rounds = rounds(all, p99.unwrap_or_default());

    println!(
        "| {n} | {cold} | {:.0} / {:.0} | {:.1} / {:.1} | {} | {false_positives} ({refutations}) | {dead} | {p99_rounds} | {all_rounds} | {:.1} s |",
        percentile(&mut bytes, 0.5),
        percentile(&mut bytes, 0.99),
        percentile(&mut packets, 0.5),
        percentile(&mut packets, 0.99),
        cluster.largest,
        wall.elapsed().as_secs_f64(),
    );
}

/// False positives under random loss: N nodes, converged, then `minutes` of virtual time at
/// `per_mille` loss on every packet.
fn lossy(n: usize, per_mille: u64, minutes: u64) {
    let wall = Instant::now();
    let mut cluster = Cluster::new(n);
    cluster.until(Duration::from_secs(120), |c| {
        c.up().all(|i| c.nodes[i].live_peers() + 1 == n)
    });
    cluster.until(Duration::from_secs(30), |_| false);
    cluster.reset_traffic();
    cluster.loss_per_mille = per_mille;
    let refuted_before: u64 = cluster.nodes.iter().map(|n| n.counts().refutations).sum();
    cluster.until(Duration::from_secs(60 * minutes), |_| false);
    let refuted: u64 = cluster
        .nodes
        .iter()
        .map(|n| n.counts().refutations)
        .sum::<u64>()
        - refuted_before;
    let all_live = cluster.up().all(|i| cluster.nodes[i].live_peers() + 1 == n);
    println!(
        "| {n} | {:.1}% | {minutes} min | {} | {refuted} | {all_live} | {:.1} s |",
        per_mille as f64 / 10.0,
        cluster.failed,
        wall.elapsed().as_secs_f64()
    );
}

/// Converges `n` nodes and lets the gossip of the start drain.
fn converged(n: usize) -> Cluster {
    let mut cluster = Cluster::new(n);
    cluster.until(Duration::from_secs(120), |c| {
        c.up().all(|i| c.nodes[i].live_peers() + 1 == n)
    });
    cluster.until(Duration::from_secs(30), |_| false);
    cluster.reset_traffic();
    cluster
}

/// Churn: for a minute, 1% of the nodes leave (gracefully) and as many new ones join, spread
/// evenly; traffic per node over that minute.
fn churn(n: usize) {
    let wall = Instant::now();
    let mut cluster = converged(n);
    let changes = (n / 100).max(1);
    let every = Duration::from_secs(60) / u32::try_from(changes).unwrap_or(1);
    for k in 0..changes {
        let leaving = (k * 97 + 13) % n;
        let now = cluster.now;
        cluster.nodes[leaving].leave(now);
        cluster.add(n + k, 1);
        cluster.until(Duration::from_millis(200), |_| false);
        cluster.down[leaving] = true;
        cluster.until(every.saturating_sub(Duration::from_millis(200)), |_| false);
    }
    let secs = 60.0;
    let up: Vec<usize> = cluster.up().collect();
    let mut bytes: Vec<f64> = up.iter().map(|&i| cluster.bytes[i] as f64 / secs).collect();
    let mut packets: Vec<f64> = up
        .iter()
        .map(|&i| cluster.packets[i] as f64 / secs)
        .collect();
    let all_live = up
        .iter()
        .all(|&i| cluster.nodes[i].live_peers() + 1 == up.len());
    println!(
        "| {n} | {changes} left, {changes} joined | {:.0} / {:.0} | {:.1} / {:.1} | {} | {all_live} | {:.1} s |",
        percentile(&mut bytes, 0.5),
        percentile(&mut bytes, 0.99),
        percentile(&mut packets, 0.5),
        percentile(&mut packets, 0.99),
        cluster.failed,
        wall.elapsed().as_secs_f64()
    );
}

/// Rapid's scenario: 1% of the nodes lose 80% of what is sent to them, for a minute. Which
/// nodes end up failed in most views, and how many times healthy ones were declared failed.
fn rapid(n: usize) {
    let wall = Instant::now();
    let mut cluster = converged(n);
    let lossy: Vec<usize> = (0..(n / 100).max(1)).map(|k| (k * 89 + 7) % n).collect();
    for &i in &lossy {
        cluster.ingress_loss[i] = 800;
    }
    cluster.until(Duration::from_secs(60), |_| false);
    let healthy: Vec<usize> = cluster.up().filter(|i| !lossy.contains(i)).collect();
    let failed_in_most = |id: &NodeId| {
        healthy
            .iter()
            .filter(|&&i| cluster.nodes[i].status(id) == Some(MemberStatus::Failed))
            .count()
            * 2
            > healthy.len()
    };
    let lossy_removed = lossy
        .iter()
        .filter(|&&i| failed_in_most(cluster.nodes[i].node_id()))
        .count();
    let healthy_removed = healthy
        .iter()
        .filter(|&&i| failed_in_most(cluster.nodes[i].node_id()))
        .count();
    let failed_at = |about: &[usize], by_healthy: bool| -> usize {
        about
            .iter()
            .map(|&i| {
                cluster
                    .failed_about
                    .get(cluster.nodes[i].node_id())
                    .map_or(0, |observers| {
                        observers
                            .iter()
                            .filter(|o| lossy.contains(o) != by_healthy)
                            .count()
                    })
            })
            .sum()
    };
    println!(
        "| {n} | {} | {lossy_removed} | {healthy_removed} | {} | {} / {} | {:.1} s |",
        lossy.len(),
        failed_at(&lossy, true),
        failed_at(&healthy, true),
        failed_at(&healthy, false),
        wall.elapsed().as_secs_f64()
    );
}

fn main() {
    let mode = std::env::args().nth(1);
    let sizes = || -> Vec<usize> {
        let sizes: Vec<usize> = std::env::args()
            .skip(2)
            .filter_map(|a| a.parse().ok())
            .collect();
        if sizes.is_empty() {
            vec![100, 1_000]
        } else {
            sizes
        }
    };
    if mode.as_deref() == Some("churn") {
        println!(
            "| N | in the minute | bytes/s per node, p50 / p99 | packets/s per node, p50 / p99 | `Failed` events | all live at the end | wall time |"
        );
        println!("| ---: | --- | ---: | ---: | ---: | --- | ---: |");
        for n in sizes() {
            churn(n);
        }
        return;
    }
    if mode.as_deref() == Some("rapid") {
        println!(
            "| N | lossy nodes | lossy nodes failed in most views after 60 s | healthy nodes failed in most views | `Failed` events about lossy nodes, seen by healthy ones | about healthy nodes, seen by healthy / by lossy ones | wall time |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for n in sizes() {
            rapid(n);
        }
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("loss") {
        let args: Vec<u64> = std::env::args()
            .skip(2)
            .filter_map(|a| a.parse().ok())
            .collect();
        let (n, per_mille, minutes) = match args[..] {
            [n, p, m] => (usize::try_from(n).unwrap_or(100), p, m),
            _ => (100, 10, 30),
        };
        println!(
            "| N | loss | virtual time | false positives (`Failed` events) | refutations | all live at the end | wall time |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | --- | ---: |");
        lossy(n, per_mille, minutes);
        return;
    }
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 1_000]
    } else {
        sizes
    };
    println!(
        "| N | cold start (all see all) | bytes/s per node, p50 / p99 | packets/s per node, p50 / p99 | largest packet (B) | false positives in the 10 s (refutations since start) | crash to dead at every live node | join: rounds to 99% | join: rounds to 100% | wall time |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for n in sizes {
        run(n);
    }
}
