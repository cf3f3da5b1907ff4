//! Tests of the tokio driver. Those about sockets run on loopback UDP (`udp_builder`); the
//! rest run their nodes on an in-memory network (`builder`), the driver's own `MemoryNetwork`.
//! Every wait is bounded.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use cohort_tokio::{
    ClusterExtension, ConnectionConfig, Consistency, Event, KeyError, MemberStatus, Members,
    MemoryNetwork, Node, NodeBuilder, RPC_ADDR_KEY, SelectError, WaitError,
};

const WAIT: Duration = Duration::from_secs(10);
const INTERVAL: Duration = Duration::from_millis(100);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// One in-memory network for every test of this binary (addresses never collide: each node
/// takes a free port of 127.0.0.1 on it).
static NETWORK: std::sync::LazyLock<MemoryNetwork> = std::sync::LazyLock::new(MemoryNetwork::new);

/// A node of the in-memory network.
fn builder(name: &str, seeds: &[SocketAddr]) -> NodeBuilder {
    udp_builder(name, seeds).memory_network(&NETWORK)
}

/// A node on loopback UDP.
fn udp_builder(name: &str, seeds: &[SocketAddr]) -> NodeBuilder {
    NodeBuilder::new(
        name,
        ConnectionConfig::new(
            loopback(),
            loopback(),
            seeds.iter().map(ToString::to_string),
        ),
    )
    .cluster_id("test")
    .gossip_interval(INTERVAL)
    .leave_timeout(Duration::from_secs(1))
}

fn live_names(members: &Members) -> Vec<String> {
    members.live().map(|m| m.id.name().to_owned()).collect()
}

async fn all_live(nodes: &[&Node], n: usize) {
    for node in nodes {
        node.wait_for_members(|m| m.live_count() == n, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{} did not see {n} live: {e}", node.id()));
    }
}

#[tokio::test]
async fn three_nodes_converge_share_metadata_and_select_across_data_centers() {
    let a = builder("a", &[])
        .data_center("east")
        .connect()
        .await
        .unwrap();
    let seeds = [a.public_addr()];
    let b = builder("b", &seeds)
        .data_center("west")
        .connect()
        .await
        .unwrap();
    let c = builder("c", &seeds)
        .data_center("west")
        .metadata("role", "indexer")
        .connect()
        .await
        .unwrap();
    all_live(&[&a, &b, &c], 3).await;

    let members = a.members();
    assert_eq!(live_names(&members), ["a", "b", "c"]);
    let c_seen = members.get(c.id()).expect("c is known");
    assert_eq!(c_seen.get("role"), Some("indexer"));
    assert_eq!(c_seen.get("data_center"), Some("west"));
    assert_eq!(
        c_seen.get(RPC_ADDR_KEY),
        Some(c.rpc_addr().to_string().as_str()),
        "the RPC address is published"
    );

    // DC-aware: from "east", one replica comes from the other data center.
    let picked = a.select_nodes(Consistency::One).unwrap();
    assert_eq!(picked.len(), 1);
    assert_eq!(picked[0].data_center().as_str(), "west");
    assert_eq!(a.select_nodes(Consistency::All).unwrap().len(), 2);
    assert!(matches!(
        a.select_nodes(Consistency::Three),
        Err(SelectError::NotEnoughNodes {
            live: 2,
            required: 3
        })
    ));

    // A key set on b reaches a, and so does its deletion; a's stream says so.
    let mut events = a.membership_events();
    b.set_metadata("shard", "7").unwrap();
    a.wait_for_members(
        |m| m.get(b.id()).and_then(|b| b.get("shard")) == Some("7"),
        WAIT,
    )
    .await
    .unwrap();
    assert!(b.delete_metadata("shard").unwrap());
    assert!(!b.delete_metadata("shard").unwrap(), "already deleted");
    a.wait_for_members(
        |m| m.get(b.id()).is_some_and(|b| b.get("shard").is_none()),
        WAIT,
    )
    .await
    .unwrap();
    let mut saw_set = false;
    let mut saw_delete = false;
    while !(saw_set && saw_delete) {
        let event = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("events arrive")
            .expect("the stream is open");
        if let Event::KeyChanged {
            member, key, value, ..
        } = event
        {
            if member.id == *b.id() && key == "shard" {
                saw_set |= value.as_deref() == Some("7");
                saw_delete |= value.is_none();
            }
        }
    }

    // The clock moves forward, and gossip carries it: once b has seen a key a set after
    // stamping `t1`, b's clock is past `t1` too (causality without extra messages).
    let t1 = a.clock().now();
    assert!(a.clock().now() > t1);
    a.set_metadata("after", "t1").unwrap();
    b.wait_for_members(
        |m| m.get(a.id()).and_then(|a| a.get("after")).is_some(),
        WAIT,
    )
    .await
    .unwrap();
    assert!(b.clock().now() > t1);

    // Reserved keys are refused with a typed error.
    assert_eq!(
        a.set_metadata("__cohort/leaving", "1"),
        Err(KeyError::Reserved("__cohort/leaving".to_owned()))
    );
    for node in [&a, &b, &c] {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn a_graceful_shutdown_is_seen_as_left_quickly_and_frees_the_port() {
    let a = udp_builder("a", &[]).connect().await.unwrap();
    let b = udp_builder("b", &[a.public_addr()])
        .connect()
        .await
        .unwrap();
    all_live(&[&a, &b], 2).await;
    let mut events = a.membership_events();
    let b_addr = b.listen_addr();
    let b_id = b.id().clone();
    let started = std::time::Instant::now();
    b.shutdown().await;
    assert_eq!(
        b.members().local_member().map(|m| m.status),
        Some(MemberStatus::Left),
        "the node's own snapshot shows it left"
    );
    // The socket is closed: the same address binds again at once.
    UdpSocket::bind(b_addr).expect("the gossip port is free after shutdown");
    a.wait_for_members(
        |m| m.get(&b_id).is_some_and(|b| b.status == MemberStatus::Left),
        WAIT,
    )
    .await
    .expect("b is seen as left");
    // Left, not Failed: the departure was announced, not found by the failure detector (which
    // would have taken its timeout and said Failed).
    eprintln!(
        "b seen as left {:?} after its shutdown began",
        started.elapsed()
    );
    let left = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            if let Event::Left(member) = event {
                return member;
            }
        }
        panic!("stream ended");
    })
    .await
    .expect("a Left event arrives");
    assert_eq!(left.id, b_id, "the Left event carries the member");
    // Commands after shutdown are refused; shutting down twice is harmless.
    assert_eq!(b.set_metadata("k", "v"), Err(KeyError::Leaving));
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_node_dropped_without_shutdown_is_declared_failed() {
    let a = builder("a", &[]).connect().await.unwrap();
    let b = builder("b", &[a.public_addr()]).connect().await.unwrap();
    all_live(&[&a, &b], 2).await;
    let b_id = b.id().clone();
    drop(b);
    a.wait_for_members(
        |m| {
            m.get(&b_id)
                .is_some_and(|b| b.status == MemberStatus::Failed)
        },
        WAIT,
    )
    .await
    .expect("b is declared failed");
    a.shutdown().await;
}

#[tokio::test]
async fn listening_on_every_interface_with_a_loopback_public_address() {
    let a = NodeBuilder::new(
        "a",
        ConnectionConfig::new(
            SocketAddr::from(([0, 0, 0, 0], 0)),
            loopback(),
            Vec::<String>::new(),
        ),
    )
    .cluster_id("test")
    .gossip_interval(INTERVAL)
    .connect()
    .await
    .unwrap();
    assert!(a.listen_addr().ip().is_unspecified());
    assert_eq!(a.public_addr().ip(), std::net::Ipv4Addr::LOCALHOST);
    assert_eq!(a.public_addr().port(), a.listen_addr().port());
    // b reaches a by its public address, a answers to b's: both converge.
    let b = udp_builder("b", &[a.public_addr()])
        .connect()
        .await
        .unwrap();
    all_live(&[&a, &b], 2).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn seeds_may_be_host_names() {
    let a = udp_builder("a", &[]).connect().await.unwrap();
    let seed = format!("localhost:{}", a.public_addr().port());
    let b = NodeBuilder::new("b", ConnectionConfig::new(loopback(), loopback(), [seed]))
        .cluster_id("test")
        .gossip_interval(INTERVAL)
        .connect()
        .await
        .unwrap();
    all_live(&[&a, &b], 2).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_reader_that_falls_behind_is_told_and_gets_a_snapshot() {
    let a = builder("a", &[]).event_capacity(2).connect().await.unwrap();
    let mut slow = a.membership_events();
    for i in 0..20 {
        a.set_metadata(&format!("k{i}"), "v").unwrap();
    }
    let b = builder("b", &[a.public_addr()]).connect().await.unwrap();
    all_live(&[&a, &b], 2).await;
    // Plenty happened (b joined, its keys arrived) while nobody read.
    let first = tokio::time::timeout(WAIT, slow.next())
        .await
        .unwrap()
        .unwrap();
    match first {
        Event::Lagged { missed, members } => {
            assert!(missed > 0);
            assert_eq!(members.live_count(), 2, "the snapshot is current");
        }
        other => panic!("expected a lag first, got {other:?}"),
    }
    a.shutdown().await;
    b.shutdown().await;
    // The stream ends after shutdown.
    let end = tokio::time::timeout(WAIT, async { while slow.next().await.is_some() {} }).await;
    assert!(
        end.is_ok(),
        "the event stream ends once the node is shut down"
    );
}

#[tokio::test]
async fn waiting_times_out_with_the_last_snapshot_and_ends_on_shutdown() {
    let a = builder("a", &[]).connect().await.unwrap();
    let err = a
        .wait_for_members(|m| m.live_count() == 5, Duration::from_millis(300))
        .await
        .unwrap_err();
    match err {
        WaitError::Timeout { last } => assert_eq!(last.live_count(), 1),
        other => panic!("{other:?}"),
    }
    let waiter = {
        let a = a.clone();
        tokio::spawn(async move { a.wait_for_members(|m| m.live_count() == 5, WAIT).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.shutdown().await;
    let result = tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap();
    assert!(matches!(result, Err(WaitError::ShutDown)), "{result:?}");
}

/// An extension that publishes a key and records its shutdown.
struct Recorder {
    stopped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ClusterExtension for Recorder {
    type Output = usize;
    type Error = KeyError;

    async fn init_extension(self, node: &Node) -> Result<usize, KeyError> {
        node.set_metadata("extension", "recorder")?;
        let stopped = self.stopped;
        node.on_shutdown(move || async move {
            stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        Ok(node.members().all().len())
    }
}

#[tokio::test]
async fn extensions_start_on_the_node_and_their_hooks_run_at_shutdown() {
    let a = builder("a", &[]).connect().await.unwrap();
    let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = a
        .add_extension(Recorder {
            stopped: stopped.clone(),
        })
        .await
        .unwrap();
    assert_eq!(seen, 1);
    assert_eq!(
        a.members().local_member().and_then(|m| m.get("extension")),
        Some("recorder")
    );
    assert!(!stopped.load(std::sync::atomic::Ordering::SeqCst));
    a.shutdown().await;
    assert!(stopped.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test]
async fn a_port_in_use_is_a_bind_error() {
    let taken = UdpSocket::bind(loopback()).unwrap();
    let addr = taken.local_addr().unwrap();
    let err = NodeBuilder::new("a", ConnectionConfig::new(addr, addr, Vec::<String>::new()))
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(err, cohort_tokio::ConnectError::Bind { addr: a, .. } if a == addr),
        "{err}"
    );
    let err = NodeBuilder::new(
        "",
        ConnectionConfig::new(loopback(), loopback(), Vec::<String>::new()),
    )
    .connect()
    .await
    .unwrap_err();
    assert!(matches!(err, cohort_tokio::ConnectError::InvalidConfig(_)));
}

#[tokio::test]
async fn garbage_datagrams_are_counted_and_ignored() {
    let a = udp_builder("a", &[]).connect().await.unwrap();
    let sender = UdpSocket::bind(loopback()).unwrap();
    for junk in [&b""[..], b"\x00", b"\x53\xb0\x01", &[0xff; 200][..]] {
        sender.send_to(junk, a.public_addr()).unwrap();
    }
    let b = udp_builder("b", &[a.public_addr()])
        .connect()
        .await
        .unwrap();
    all_live(&[&a, &b], 2).await;
    assert_eq!(a.statistics().decode_errors, 4);
    assert!(a.statistics().datagrams_sent > 0);
    a.shutdown().await;
    b.shutdown().await;
}

/// Nodes shut down one after the other (c, then b as soon as a saw c leave): b takes in what
/// already arrived (c's departure) before leaving, so it does not send its own departure to
/// c, which is gone and would never answer (b would then wait out its leave timeout, here
/// far longer than the test's bound). It failed that way before the fix.
#[tokio::test]
async fn shutting_down_right_after_a_peer_left_does_not_wait_for_it() {
    let slow_leave = |b: NodeBuilder| b.leave_timeout(Duration::from_secs(120));
    let a = slow_leave(builder("a", &[])).connect().await.unwrap();
    let b = slow_leave(builder("b", &[a.public_addr()]))
        .connect()
        .await
        .unwrap();
    let c = slow_leave(builder("c", &[a.public_addr()]))
        .connect()
        .await
        .unwrap();
    all_live(&[&a, &b, &c], 3).await;
    let all = async {
        c.shutdown().await;
        a.wait_for_members(|m| m.live_count() == 2, WAIT)
            .await
            .expect("a sees c leave");
        b.shutdown().await;
        a.shutdown().await;
    };
    tokio::time::timeout(WAIT, all)
        .await
        .expect("every shutdown ended without waiting for its leave timeout");
}

#[tokio::test]
async fn the_local_member_ttl_metadata_key_owners_and_snapshot_changes() {
    // Keys with a TTL (and tombstones) live 300 ms.
    let short_grace = |name: &str, seeds: &[SocketAddr]| {
        builder(name, seeds).configure(|c| {
            c.marked_for_deletion_grace_period = Duration::from_millis(300);
        })
    };
    let a = short_grace("a", &[]).connect().await.unwrap();
    let b = short_grace("b", &[a.public_addr()])
        .connect()
        .await
        .unwrap();
    let c = short_grace("c", &[a.public_addr()])
        .connect()
        .await
        .unwrap();
    all_live(&[&a, &b, &c], 3).await;

    // The local member, with what it publishes.
    let local = a.local_member();
    assert_eq!(&local.id, a.id());
    assert_eq!(local.status, MemberStatus::Live);
    assert_eq!(
        local.get(RPC_ADDR_KEY),
        Some(a.public_addr().to_string().as_str())
    );

    // Snapshots as they change: the current one first, then a newer one after a change.
    let mut changes = b.membership_changes();
    let first = tokio::time::timeout(WAIT, changes.next())
        .await
        .unwrap()
        .unwrap();
    a.set_metadata_with_ttl("lease", "held").unwrap();
    assert_eq!(
        a.local_member().get("lease"),
        Some("held"),
        "seen locally at once"
    );
    let seen = tokio::time::timeout(WAIT, async {
        while let Some(members) = changes.next().await {
            assert!(members.version() > first.version());
            if members.get(a.id()).and_then(|m| m.get("lease")) == Some("held") {
                return members;
            }
        }
        panic!("the stream ended");
    })
    .await
    .expect("b sees a's key through its snapshot stream");
    assert_eq!(seen.live_count(), 3);
    // The grace period passes: the key is gone everywhere, and the snapshot stream says so.
    tokio::time::timeout(WAIT, async {
        while let Some(members) = changes.next().await {
            if members
                .get(a.id())
                .is_some_and(|m| m.get("lease").is_none())
            {
                return;
            }
        }
        panic!("the stream ended");
    })
    .await
    .expect("b's snapshots show the key expired");
    assert_eq!(a.local_member().get("lease"), None);

    // Key owners agree across nodes and include the local node as a candidate.
    let owners = |node: &Node| -> Vec<String> {
        node.select_for_key("user:42", 2)
            .unwrap()
            .iter()
            .map(|c| c.id().name().to_owned())
            .collect()
    };
    b.wait_for_members(|m| m.live_count() == 3, WAIT)
        .await
        .unwrap();
    assert_eq!(owners(&a), owners(&b));
    assert_eq!(owners(&a), owners(&c));
    assert_eq!(
        a.select_for_key("user:42", 4),
        Err(SelectError::NotEnoughNodes {
            live: 3,
            required: 4
        })
    );

    for node in [&a, &b, &c] {
        node.shutdown().await;
    }
    // The stream ends once b has shut down, after a last snapshot showing b as left.
    let last = tokio::time::timeout(WAIT, async {
        let mut last = None;
        while let Some(members) = changes.next().await {
            last = Some(members);
        }
        last
    })
    .await
    .expect("the stream ends after the shutdown");
    let last = last.unwrap_or(seen);
    assert_eq!(
        last.local_member().map(|m| m.status),
        Some(MemberStatus::Left)
    );
}

#[tokio::test]
async fn a_reserved_or_setting_key_in_the_metadata_is_a_config_error() {
    let err = builder("a", &[])
        .metadata("__cohort/x", "1")
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            cohort_tokio::ConnectError::InvalidConfig(cohort_tokio::ConfigError::Key(KeyError::Reserved(ref k)))
                if k == "__cohort/x"
        ),
        "{err}"
    );
    let err = builder("a", &[])
        .metadata(cohort_tokio::DATA_CENTER_KEY, "eu")
        .connect()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("data_center"), "{err}");
}

/// A node that shuts down right after its seed sees it live (while it may still see the seed
/// as joining) is seen to leave, never to fail. Before the fix, 7 runs in 27 ended with the
/// seed marking it failed 7 s later. Five rounds of it, each bounded.
#[tokio::test]
async fn a_node_leaving_right_after_joining_is_seen_left() {
    for round in 0..5 {
        let a = builder("a", &[]).connect().await.unwrap();
        let b = builder("b", &[a.public_addr()]).connect().await.unwrap();
        let b_id = b.id().clone();
        a.wait_for_members(
            |m| m.get(&b_id).is_some_and(|m| m.status == MemberStatus::Live),
            WAIT,
        )
        .await
        .unwrap();
        b.shutdown().await;
        let members = a
            .wait_for_members(
                |m| {
                    m.get(&b_id).is_some_and(|m| {
                        matches!(m.status, MemberStatus::Left | MemberStatus::Failed)
                    })
                },
                WAIT,
            )
            .await
            .unwrap();
        assert_eq!(
            members.get(&b_id).map(|m| m.status),
            Some(MemberStatus::Left),
            "round {round}"
        );
        a.shutdown().await;
    }
}

#[tokio::test]
async fn key_changes_under_a_prefix_arrive_from_every_member_with_old_values() {
    let a = builder("a", &[]).connect().await.unwrap();
    let b = builder("b", &[a.public_addr()]).connect().await.unwrap();
    all_live(&[&a, &b], 2).await;
    let mut shards = a.key_changes("shard/");
    b.set_metadata("other", "ignored").unwrap();
    b.set_metadata("shard/1", "leader").unwrap();
    a.set_metadata("shard/2", "follower").unwrap();
    b.set_metadata("shard/1", "follower").unwrap();
    let mut seen: Vec<(String, String, Option<String>, Option<String>)> = Vec::new();
    let own = (
        "a".to_owned(),
        "shard/2".to_owned(),
        None,
        Some("follower".to_owned()),
    );
    let done = |seen: &[(String, String, Option<String>, Option<String>)]| {
        seen.contains(&own)
            && seen
                .iter()
                .any(|(n, k, _, v)| n == "b" && k == "shard/1" && v.as_deref() == Some("follower"))
    };
    // b's two sets may arrive in one round (then only the last is seen) or in two.
    while !done(&seen) {
        let event = tokio::time::timeout(WAIT, shards.next())
            .await
            .unwrap_or_else(|_| panic!("changes arrive; so far {seen:?}"))
            .expect("the stream is open");
        match event {
            Event::KeyChanged {
                member,
                key,
                old,
                value,
            } => seen.push((member.id.name().to_owned(), key, old, value)),
            other => panic!("only key changes under the prefix: {other:?}"),
        }
    }
    assert!(seen.iter().all(|(_, k, _, _)| k.starts_with("shard/")));
    // Prefix iteration over a member's keys.
    let members = a
        .wait_for_members(
            |m| m.get(b.id()).and_then(|b| b.get("shard/1")) == Some("follower"),
            WAIT,
        )
        .await
        .unwrap();
    let b_shards: Vec<(&str, &str)> = members
        .get(b.id())
        .unwrap()
        .keys_with_prefix("shard/")
        .collect();
    assert_eq!(b_shards, [("shard/1", "follower")]);
    a.shutdown().await;
    b.shutdown().await;
}

/// The in-memory network behaves as UDP where the node can tell: garbage is counted and
/// ignored, a taken address is a bind error, a node that is gone loses what is sent to it,
/// and a shut-down node gives its address back.
#[tokio::test]
async fn the_memory_network_behaves_as_udp() {
    let net = MemoryNetwork::new();
    let addr = |last: u8| SocketAddr::from(([10, 9, 9, last], 7000));
    let node = |name: &'static str, at: SocketAddr, seeds: Vec<SocketAddr>| {
        NodeBuilder::new(name, ConnectionConfig::new(at, at, seeds))
            .memory_network(&net)
            .cluster_id("mem")
            .gossip_interval(INTERVAL)
            .connect()
    };
    let a = node("a", addr(1), vec![]).await.unwrap();
    assert_eq!(a.listen_addr(), addr(1));
    assert!(net.is_bound(addr(1)));
    let taken = node("x", addr(1), vec![]).await.unwrap_err();
    assert!(
        matches!(taken, cohort_tokio::ConnectError::Bind { .. }),
        "{taken}"
    );
    for junk in [&b""[..], b"\x00", b"\x53\xb0\x01"] {
        assert!(net.send(addr(9), addr(1), junk));
    }
    assert!(!net.send(addr(9), addr(8), b"nobody there"));
    let b = node("b", addr(2), vec![addr(1)]).await.unwrap();
    all_live(&[&a, &b], 2).await;
    assert_eq!(a.statistics().decode_errors, 3);
    b.shutdown().await;
    assert!(!net.is_bound(addr(2)), "the address is given back");
    let members = a
        .wait_for_members(
            |m| {
                m.get(b.id())
                    .is_some_and(|b| b.status == MemberStatus::Left)
            },
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(members.live_count(), 1);
    // Port 0 takes a free port of the IP.
    let c = node("c", SocketAddr::from(([10, 9, 9, 3], 0)), vec![addr(1)])
        .await
        .unwrap();
    assert_ne!(c.listen_addr().port(), 0);
    all_live(&[&a, &c], 2).await;
    a.shutdown().await;
    c.shutdown().await;
}
