//! Interop with real chitchat 0.13.0 nodes on loopback: chitchat's own `spawn_chitchat` and
//! `UdpTransport` next to cohort nodes in chitchat-compatible mode, in one cluster.
//!
//! chitchat 0.13 puts the version of its config (`ChitchatConfig::protocol_version`, V0 unless
//! set) in the Syns it starts and answers every message in the version of that message; cohort
//! does the same with `NodeBuilder::protocol_version`. So each cluster below also has two taps
//! (UDP relays that record the header of every datagram they pass): one in front of a chitchat
//! node, used as a seed by a cohort node, and one in front of a cohort node, used as a seed by a
//! chitchat node. They prove which version each implementation actually sent, in both
//! directions, and that a compatible cohort node sends bare chitchat datagrams.
//!
//! chitchat has no "wait until" API, so its state is polled (every 20 ms); every wait on either
//! side is bounded by [`WAIT`]. Every node is stopped at the end of each test, and aborted by
//! [`Cluster`]'s `Drop` when a test fails half-way.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chitchat::transport::UdpTransport;
use chitchat::{Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, spawn_chitchat};
use cohort_tokio::{
    ConnectionConfig, FailureDetectorConfig, MemberStatus, Members, Node, NodeBuilder, NodeId,
    ProtocolVersion,
};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

const CLUSTER: &str = "interop";
const INTERVAL: Duration = Duration::from_millis(100);
/// The bound of every wait.
const WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(20);
/// Short, so that nothing of a test outlives it, and long enough that a dead node is still
/// known (not yet removed) when a test looks at it.
const DEAD_NODE_GRACE: Duration = Duration::from_secs(10);

const V0: ProtocolVersion = ProtocolVersion::V0;
const V1: ProtocolVersion = ProtocolVersion::V1;

/// chitchat's message type bytes (offset 3 of a datagram).
const SYN: u8 = 0;
const SYN_ACK: u8 = 1;
const ACK: u8 = 2;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A loopback address whose port was free a moment ago (chitchat needs its address before it
/// binds, so it cannot take port 0).
fn free_addr() -> SocketAddr {
    let socket = std::net::UdpSocket::bind(loopback()).expect("bind an ephemeral port");
    socket.local_addr().expect("local address")
}

fn chitchat_version(version: ProtocolVersion) -> chitchat::ProtocolVersion {
    match version {
        ProtocolVersion::V0 => chitchat::ProtocolVersion::V0,
        ProtocolVersion::V1 => chitchat::ProtocolVersion::V1,
    }
}

fn to_cohort(id: &ChitchatId) -> NodeId {
    NodeId::new(
        Arc::clone(&id.node_id),
        id.generation_id,
        id.gossip_advertise_addr,
    )
}

fn to_chitchat(id: &NodeId) -> ChitchatId {
    ChitchatId::new(id.name(), id.generation(), id.gossip_addr())
}

/// Starts a chitchat node named `name` on a free loopback port (trying another port if the one
/// picked was taken in between). `tune` adjusts the config last.
async fn start_chitchat(
    name: &str,
    seeds: &[SocketAddr],
    version: ProtocolVersion,
    keys: &[(&str, &str)],
    tune: impl Fn(&mut ChitchatConfig),
) -> ChitchatHandle {
    let mut errors = Vec::new();
    for _ in 0..5 {
        let addr = free_addr();
        let mut config = ChitchatConfig {
            chitchat_id: ChitchatId::new(name, 1, addr),
            cluster_id: CLUSTER.to_owned(),
            gossip_interval: INTERVAL,
            listen_addr: addr,
            seed_nodes: seeds.iter().map(ToString::to_string).collect(),
            failure_detector_config: chitchat::FailureDetectorConfig {
                initial_interval: INTERVAL,
                dead_node_grace_period: DEAD_NODE_GRACE,
                ..Default::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3_600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat_version(version),
        };
        tune(&mut config);
        let keys = keys
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        match spawn_chitchat(config, keys, &UdpTransport).await {
            Ok(handle) => return handle,
            Err(error) => errors.push(format!("{addr}: {error:#}")),
        }
    }
    panic!("chitchat node {name} did not start: {errors:?}");
}

/// A cohort node in chitchat-compatible mode with the same timing as the chitchat nodes.
fn cohort(name: &str, seeds: &[SocketAddr], version: ProtocolVersion) -> NodeBuilder {
    let mut detector = FailureDetectorConfig::default();
    detector.initial_interval = INTERVAL;
    detector.dead_node_grace_period = DEAD_NODE_GRACE;
    NodeBuilder::new(
        name,
        ConnectionConfig::new(
            loopback(),
            loopback(),
            seeds.iter().map(ToString::to_string),
        ),
    )
    .cluster_id(CLUSTER)
    .gossip_interval(INTERVAL)
    .failure_detector(detector)
    .chitchat_compatible(true)
    .protocol_version(version)
    .leave_timeout(Duration::from_secs(1))
}

/// What a chitchat node sees, for failure messages.
fn describe(chitchat: &Chitchat) -> String {
    let live: Vec<String> = chitchat.live_nodes().map(|id| format!("{id:?}")).collect();
    let dead: Vec<String> = chitchat.dead_nodes().map(|id| format!("{id:?}")).collect();
    let states: Vec<String> = chitchat
        .node_states()
        .iter()
        .map(|(id, state)| {
            format!(
                "{id:?} (heartbeat {:?}, last_gc {}, max {}): {:?}",
                state.heartbeat(),
                state.last_gc_version(),
                state.max_version(),
                state.key_values().collect::<Vec<_>>()
            )
        })
        .collect();
    format!("live {live:?}, dead {dead:?}, states {states:#?}")
}

/// Polls `handle`'s state until `holds`, for at most [`WAIT`].
async fn wait_chitchat(
    handle: &ChitchatHandle,
    what: &str,
    mut holds: impl FnMut(&Chitchat) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    let chitchat = handle.chitchat();
    loop {
        {
            let guard = chitchat.lock().await;
            if holds(&guard) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chitchat {:?}, after {WAIT:?}: {what}; it sees {}",
                handle.chitchat_id(),
                describe(&guard)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_cohort(node: &Node, what: &str, holds: impl FnMut(&Members) -> bool) {
    if let Err(error) = node.wait_for_members(holds, WAIT).await {
        panic!("cohort {}, after {WAIT:?}: {what}; {error:?}", node.id());
    }
}

/// One datagram a [`Tap`] passed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    /// From the client to the target (else the target's reply).
    to_target: bool,
    /// The first four bytes (magic, version, type), zero-padded.
    header: [u8; 4],
}

/// A UDP relay in front of `target` that records the header of every datagram. The client is
/// whoever last sent to the tap's address (each tap has exactly one).
struct Tap {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Tap {
    async fn new(target: SocketAddr) -> Self {
        let front = UdpSocket::bind(loopback()).await.expect("bind the tap");
        let back = UdpSocket::bind(loopback()).await.expect("bind the tap");
        let addr = front.local_addr().expect("local address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let mut client = None;
            let mut request = vec![0; cohort_core::wire::MAX_DATAGRAM_SIZE + 1];
            let mut reply = vec![0; cohort_core::wire::MAX_DATAGRAM_SIZE + 1];
            let note = |to_target: bool, bytes: &[u8]| {
                let mut header = [0; 4];
                let n = bytes.len().min(4);
                header[..n].copy_from_slice(&bytes[..n]);
                record
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Seen { to_target, header });
            };
            loop {
                tokio::select! {
                    received = front.recv_from(&mut request) => {
                        // Errors are ICMP echoes of an earlier send: nothing to relay.
                        let Ok((n, from)) = received else { continue };
                        client = Some(from);
                        note(true, &request[..n]);
                        let _ = back.send_to(&request[..n], target).await;
                    }
                    received = back.recv_from(&mut reply) => {
                        let Ok((n, from)) = received else { continue };
                        if from != target {
                            continue;
                        }
                        if let Some(client) = client {
                            note(false, &reply[..n]);
                            let _ = front.send_to(&reply[..n], client).await;
                        }
                    }
                }
            }
        });
        Self { addr, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until a whole handshake went through (Syn in, SynAck out, Ack in), then checks
    /// that every datagram so far was a bare chitchat one of `version`.
    async fn check_handshakes(&self, what: &str, version: ProtocolVersion) {
        let complete = |seen: &[Seen]| {
            [(true, SYN), (false, SYN_ACK), (true, ACK)]
                .iter()
                .all(|&(to, kind)| {
                    seen.iter()
                        .any(|s| s.to_target == to && s.header[3] == kind)
                })
        };
        let deadline = Instant::now() + WAIT;
        while !complete(&self.seen()) {
            assert!(
                Instant::now() < deadline,
                "{what}: no complete handshake through the tap after {WAIT:?}: {:?}",
                self.seen()
            );
            tokio::time::sleep(POLL).await;
        }
        let expected = version.to_byte();
        for seen in self.seen() {
            assert_eq!(
                &seen.header[..3],
                &[0x53, 0xb0, expected],
                "{what}: a datagram that is not a bare chitchat {version:?} message: {seen:?}"
            );
            assert!(
                [SYN, SYN_ACK, ACK].contains(&seen.header[3]),
                "{what}: unexpected message type: {seen:?}"
            );
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Two chitchat nodes and two cohort nodes:
///
/// - chitchat-a, the seed (no seeds of its own);
/// - cohort-c, seeded with chitchat-a;
/// - chitchat-b, whose only seed is `tap_c` (in front of cohort-c);
/// - cohort-d, whose only seed is `tap_a` (in front of chitchat-a).
///
/// So `tap_a` sees cohort-d's Syns to a chitchat node and chitchat-a's replies, and `tap_c`
/// sees chitchat-b's Syns to a cohort node and cohort-c's replies. A tap must be the *only*
/// seed: both implementations gossip to a seed in their first round (nobody is live yet), but
/// once a seed is among the live peers picked for a round (with 3 live peers, always), chitchat
/// stops gossiping to its other seeds.
struct Cluster {
    /// chitchat-a, chitchat-b (`None` once stopped).
    chitchat: Vec<Option<ChitchatHandle>>,
    chitchat_ids: Vec<ChitchatId>,
    /// cohort-c, cohort-d (`None` once stopped).
    cohort: Vec<Option<Node>>,
    cohort_ids: Vec<NodeId>,
    tap_a: Tap,
    tap_c: Tap,
}

impl Cluster {
    /// Starts the cluster; `versions` are those of chitchat-a, chitchat-b, cohort-c and
    /// cohort-d. Each node publishes `from` = its name.
    async fn start(versions: [ProtocolVersion; 4]) -> Self {
        let [va, vb, vc, vd] = versions;
        let a = start_chitchat("chitchat-a", &[], va, &[("from", "chitchat-a")], |_| {}).await;
        let a_addr = a.chitchat_id().gossip_advertise_addr;
        let c = cohort("cohort-c", &[a_addr], vc)
            .metadata("from", "cohort-c")
            .connect()
            .await
            .expect("cohort-c starts");
        let tap_c = Tap::new(c.public_addr()).await;
        let tap_a = Tap::new(a_addr).await;
        let b = start_chitchat(
            "chitchat-b",
            &[tap_c.addr],
            vb,
            &[("from", "chitchat-b")],
            |_| {},
        )
        .await;
        let d = cohort("cohort-d", &[tap_a.addr], vd)
            .metadata("from", "cohort-d")
            .connect()
            .await
            .expect("cohort-d starts");
        Self {
            chitchat_ids: vec![a.chitchat_id().clone(), b.chitchat_id().clone()],
            chitchat: vec![Some(a), Some(b)],
            cohort_ids: vec![c.id().clone(), d.id().clone()],
            cohort: vec![Some(c), Some(d)],
            tap_a,
            tap_c,
        }
    }

    fn chitchat(&self, i: usize) -> &ChitchatHandle {
        self.chitchat[i].as_ref().expect("running")
    }

    fn cohort(&self, i: usize) -> &Node {
        self.cohort[i].as_ref().expect("running")
    }

    fn running_chitchat(&self) -> impl Iterator<Item = &ChitchatHandle> {
        self.chitchat.iter().flatten()
    }

    fn running_cohort(&self) -> impl Iterator<Item = &Node> {
        self.cohort.iter().flatten()
    }

    /// Every node that still runs, as chitchat identities.
    fn running_ids(&self) -> BTreeSet<ChitchatId> {
        let chitchat = self.running_chitchat().map(|h| h.chitchat_id().clone());
        let cohort = self.running_cohort().map(|n| to_chitchat(n.id()));
        chitchat.chain(cohort).collect()
    }

    /// Waits until every running node sees exactly the running nodes as live.
    async fn wait_converged(&self) {
        let expected = self.running_ids();
        let expected_cohort: BTreeSet<NodeId> = expected.iter().map(to_cohort).collect();
        for handle in self.running_chitchat() {
            wait_chitchat(handle, &format!("live = {expected:?}"), |c| {
                c.live_nodes().cloned().collect::<BTreeSet<_>>() == expected
            })
            .await;
        }
        for node in self.running_cohort() {
            wait_cohort(node, &format!("live = {expected_cohort:?}"), |m| {
                m.live().map(|m| m.id.clone()).collect::<BTreeSet<_>>() == expected_cohort
            })
            .await;
        }
    }

    /// Waits until every running node other than the owner sees `key` of the node `owner`
    /// (a chitchat identity) with `value` (`None`: absent, while the node itself is known).
    async fn wait_key(&self, owner: &ChitchatId, key: &str, value: Option<&str>) {
        let what = format!("{owner:?} has {key} = {value:?}");
        for handle in self.running_chitchat() {
            if handle.chitchat_id() == owner {
                continue;
            }
            wait_chitchat(handle, &what, |c| {
                c.node_state(owner).is_some_and(|s| s.get(key) == value)
            })
            .await;
        }
        let owner_cohort = to_cohort(owner);
        for node in self.running_cohort() {
            if *node.id() == owner_cohort {
                continue;
            }
            wait_cohort(node, &what, |m| {
                m.get(&owner_cohort).is_some_and(|o| o.get(key) == value)
            })
            .await;
        }
    }

    /// Stops every node that still runs, gracefully.
    async fn shutdown(mut self) {
        for node in self.cohort.iter_mut().filter_map(Option::take) {
            node.shutdown().await;
        }
        for handle in self.chitchat.iter_mut().filter_map(Option::take) {
            let id = handle.chitchat_id().clone();
            if let Err(error) = handle.shutdown().await {
                panic!("chitchat {id:?} did not shut down cleanly: {error:#}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Only reached with nodes left on a failed test: stop them at once. (cohort nodes stop
        // when their last handle is dropped.)
        for handle in self.chitchat.iter().flatten() {
            handle.abort();
        }
    }
}

/// Convergence, metadata in both directions (initial, set, TTL, update, delete) and the
/// versions on the wire, for a cluster of chitchat-a, chitchat-b, cohort-c, cohort-d with
/// these protocol versions.
async fn converge_and_share_keys(versions: [ProtocolVersion; 4]) {
    let started = Instant::now();
    let cluster = Cluster::start(versions).await;
    cluster.wait_converged().await;
    let converged = started.elapsed();

    // What each side put on the wire: cohort-d's Syns to chitchat-a in cohort-d's version and
    // chitchat-a's echo; chitchat-b's Syns to cohort-c in chitchat-b's version and cohort-c's
    // echo (whatever the receiver's own configured version).
    cluster
        .tap_a
        .check_handshakes("cohort-d -> chitchat-a", versions[3])
        .await;
    cluster
        .tap_c
        .check_handshakes("chitchat-b -> cohort-c", versions[1])
        .await;

    let a = cluster.chitchat_ids[0].clone();
    let b = cluster.chitchat_ids[1].clone();
    let c = to_chitchat(&cluster.cohort_ids[0]);
    let d = to_chitchat(&cluster.cohort_ids[1]);

    // Keys given at start, both ways.
    for (id, name) in [
        (&a, "chitchat-a"),
        (&b, "chitchat-b"),
        (&c, "cohort-c"),
        (&d, "cohort-d"),
    ] {
        cluster.wait_key(id, "from", Some(name)).await;
    }
    // cohort's own keys are plain keys to chitchat.
    let rpc = cluster.cohort(0).rpc_addr().to_string();
    cluster.wait_key(&c, "rpc_addr", Some(&rpc)).await;

    // Set at run time on each side.
    cluster
        .chitchat(1)
        .with_chitchat(|cc| cc.self_node_state().set("color", "blue"))
        .await;
    cluster
        .cohort(1)
        .set_metadata("color", "green")
        .expect("set on cohort-d");
    cluster.wait_key(&b, "color", Some("blue")).await;
    cluster.wait_key(&d, "color", Some("green")).await;

    // Updated values, and a chitchat TTL value (visible until its grace period ends).
    cluster
        .chitchat(1)
        .with_chitchat(|cc| {
            let state = cc.self_node_state();
            state.set("color", "red");
            state.set_with_ttl("lease", "until-gc");
        })
        .await;
    cluster
        .cohort(1)
        .set_metadata("color", "yellow")
        .expect("set on cohort-d");
    cluster.wait_key(&b, "color", Some("red")).await;
    cluster.wait_key(&b, "lease", Some("until-gc")).await;
    cluster.wait_key(&d, "color", Some("yellow")).await;

    // Deleted on each side: gone on the other.
    cluster
        .chitchat(1)
        .with_chitchat(|cc| cc.self_node_state().delete("color"))
        .await;
    assert!(
        cluster
            .cohort(1)
            .delete_metadata("color")
            .expect("delete on cohort-d"),
        "cohort-d had the key"
    );
    cluster.wait_key(&b, "color", None).await;
    cluster.wait_key(&d, "color", None).await;
    // The rest is untouched.
    cluster.wait_key(&b, "from", Some("chitchat-b")).await;
    cluster.wait_key(&d, "from", Some("cohort-d")).await;

    // Nobody was declared dead on the way.
    cluster.wait_converged().await;
    cluster.shutdown().await;
    eprintln!(
        "{versions:?}: converged in {converged:?}, done in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v0_mixed_cluster_converges_and_shares_keys() {
    converge_and_share_keys([V0, V0, V0, V0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_mixed_cluster_converges_and_shares_keys() {
    converge_and_share_keys([V1, V1, V1, V1]).await;
}

/// chitchat-a (V0) answers cohort-d's V1 Syns in V1; cohort-c (V0) answers chitchat-b's V1
/// Syns in V1; and the four still form one cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v0_and_v1_nodes_of_both_kinds_form_one_cluster() {
    converge_and_share_keys([V0, V1, V0, V1]).await;
}

/// A cohort node that leaves gracefully (its `__cohort/leaving` key is just a key to chitchat)
/// and one that is dropped without a word are both declared dead by chitchat's detector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_cohort_nodes_are_marked_dead_by_chitchat() {
    let mut cluster = Cluster::start([V0; 4]).await;
    cluster.wait_converged().await;
    let c = cluster.cohort_ids[0].clone();
    let d = cluster.cohort_ids[1].clone();

    let stopped = Instant::now();
    cluster.cohort[1]
        .take()
        .expect("cohort-d runs")
        .shutdown()
        .await;
    let d_chitchat = to_chitchat(&d);
    for handle in cluster.running_chitchat() {
        wait_chitchat(handle, "cohort-d is dead", |cc| {
            cc.dead_nodes().any(|id| *id == d_chitchat)
        })
        .await;
    }
    let detected = stopped.elapsed();
    // The other cohort node knows it left.
    wait_cohort(cluster.cohort(0), "cohort-d left", |m| {
        m.get(&d).is_some_and(|d| d.status == MemberStatus::Left)
    })
    .await;
    // Exactly the three others are still live everywhere.
    cluster.wait_converged().await;

    // Dropped: the node's task is aborted and its socket closed, no leave announced.
    let stopped = Instant::now();
    drop(cluster.cohort[0].take());
    let c_chitchat = to_chitchat(&c);
    for handle in cluster.running_chitchat() {
        wait_chitchat(handle, "cohort-c is dead", |cc| {
            cc.dead_nodes().any(|id| *id == c_chitchat)
        })
        .await;
    }
    let detected_drop = stopped.elapsed();
    cluster.wait_converged().await;
    cluster.shutdown().await;
    eprintln!("chitchat declared cohort-d dead {detected:?} after its shutdown");
    eprintln!("chitchat declared cohort-c dead {detected_drop:?} after it was dropped");
}

/// A chitchat node that shuts down (it announces nothing: chitchat has no leave) is declared
/// Failed by the cohort nodes, and dead by the other chitchat node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_chitchat_node_is_marked_failed_by_cohort() {
    let mut cluster = Cluster::start([V0; 4]).await;
    cluster.wait_converged().await;
    let b = cluster.chitchat_ids[1].clone();
    let b_cohort = to_cohort(&b);

    let stopped = Instant::now();
    let handle = cluster.chitchat[1].take().expect("chitchat-b runs");
    handle.shutdown().await.expect("chitchat-b shuts down");
    for node in cluster.running_cohort() {
        wait_cohort(node, "chitchat-b failed", |m| {
            m.get(&b_cohort)
                .is_some_and(|b| b.status == MemberStatus::Failed)
        })
        .await;
    }
    let detected = stopped.elapsed();
    wait_chitchat(cluster.chitchat(0), "chitchat-b is dead", |cc| {
        cc.dead_nodes().any(|id| *id == b)
    })
    .await;
    cluster.wait_converged().await;
    cluster.shutdown().await;
    eprintln!("cohort declared chitchat-b failed {detected:?} after its shutdown");
}

/// chitchat garbage-collects a tombstone (its `last_gc_version` rises), then a new cohort node
/// joins: it gets chitchat's "reset" delta (a Node op with `last_gc_version` > 0 from version 0,
/// then `SetMaxVersion`) and ends with the same view of the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cohort_node_joins_after_chitchat_collected_a_tombstone() {
    for version in [V0, V1] {
        let a = start_chitchat("chitchat-a", &[], version, &[("kept", "yes")], |config| {
            config.marked_for_deletion_grace_period = Duration::from_millis(100);
        })
        .await;
        a.with_chitchat(|cc| cc.self_node_state().set("gone", "soon"))
            .await;
        a.with_chitchat(|cc| cc.self_node_state().delete("gone"))
            .await;
        wait_chitchat(&a, "the tombstone is collected", |cc| {
            cc.node_state(cc.self_chitchat_id())
                .is_some_and(|s| s.last_gc_version() > 0)
        })
        .await;
        let (a_gc, a_max) = a
            .with_chitchat(|cc| {
                let state = cc.self_node_state();
                (state.last_gc_version(), state.max_version())
            })
            .await;
        let a_addr = a.chitchat_id().gossip_advertise_addr;
        let a_id = to_cohort(a.chitchat_id());
        let c = cohort("cohort-c", &[a_addr], version)
            .connect()
            .await
            .expect("cohort-c starts");
        let c_id = to_chitchat(c.id());
        wait_cohort(
            &c,
            "chitchat-a is live with kept = yes, without gone, at its max version",
            |m| {
                m.get(&a_id).is_some_and(|a| {
                    a.status == MemberStatus::Live
                        && a.get("kept") == Some("yes")
                        && a.get("gone").is_none()
                        && a.max_version == a_max
                })
            },
        )
        .await;
        wait_chitchat(&a, "cohort-c is live", |cc| {
            cc.live_nodes().any(|id| *id == c_id)
        })
        .await;
        // And later keys still flow after the reset.
        a.with_chitchat(|cc| cc.self_node_state().set("after", "reset"))
            .await;
        wait_cohort(&c, "chitchat-a has after = reset", |m| {
            m.get(&a_id)
                .is_some_and(|a| a.get("after") == Some("reset"))
        })
        .await;
        c.shutdown().await;
        a.shutdown().await.expect("chitchat-a shuts down");
        eprintln!("{version:?}: chitchat-a last_gc {a_gc}, max {a_max}: cohort-c caught up");
    }
}

/// The other way round: a cohort node collects a tombstone, then a new chitchat node joins. It
/// goes through chitchat's reset path (its catch-up callback fires) and ends with the same view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chitchat_node_joins_after_cohort_collected_a_tombstone() {
    for version in [V0, V1] {
        let c = cohort("cohort-c", &[], version)
            .metadata("kept", "yes")
            .metadata("gone", "soon")
            .configure(|config| {
                config.marked_for_deletion_grace_period = Duration::from_millis(100);
            })
            .connect()
            .await
            .expect("cohort-c starts");
        assert!(
            c.delete_metadata("gone").expect("delete"),
            "the key existed"
        );
        // Wait (bounded) until cohort-c has collected the tombstone (100 ms grace).
        let collected = tokio::time::timeout(WAIT, async {
            loop {
                let state = c.node_state(c.id()).expect("the local state");
                if state.last_gc_version() > 0 && state.get_versioned("gone").is_none() {
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        assert!(
            collected.is_ok(),
            "{version:?}: cohort-c never collected the tombstone"
        );
        let c_max = c
            .members()
            .local_member()
            .expect("the local member")
            .max_version;
        let caught_up = Arc::new(AtomicBool::new(false));
        let a = start_chitchat("chitchat-a", &[c.public_addr()], version, &[], |config| {
            let caught_up = Arc::clone(&caught_up);
            config.catchup_callback =
                Some(Box::new(move || caught_up.store(true, Ordering::SeqCst)));
        })
        .await;
        let c_id = to_chitchat(c.id());
        wait_chitchat(
            &a,
            "cohort-c is live with kept = yes, without gone, at its max version",
            |cc| {
                cc.live_nodes().any(|id| *id == c_id)
                    && cc.node_state(&c_id).is_some_and(|s| {
                        s.get("kept") == Some("yes")
                            && s.get_versioned("gone").is_none()
                            && s.max_version() == c_max
                    })
            },
        )
        .await;
        assert!(
            caught_up.load(Ordering::SeqCst),
            "{version:?}: chitchat took no reset path: cohort-c did not send a last_gc_version"
        );
        let a_gc = a
            .with_chitchat(|cc| cc.node_state(&c_id).map(|s| s.last_gc_version()))
            .await;
        let a_id = to_cohort(a.chitchat_id());
        wait_cohort(&c, "chitchat-a is live", |m| {
            m.get(&a_id).is_some_and(|a| a.status == MemberStatus::Live)
        })
        .await;
        c.set_metadata("after", "reset").expect("set");
        wait_chitchat(&a, "cohort-c has after = reset", |cc| {
            cc.node_state(&c_id)
                .is_some_and(|s| s.get("after") == Some("reset"))
        })
        .await;
        c.shutdown().await;
        a.shutdown().await.expect("chitchat-a shuts down");
        eprintln!("{version:?}: chitchat-a holds cohort-c at last_gc {a_gc:?}, max {c_max}");
    }
}
