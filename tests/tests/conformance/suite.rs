// The conformance suite, included once per driver (`driver` names the driver's crate; `run`,
// `with_rpc` and `rpc_port_free` are the driver module's). Written only against what both
// drivers offer under the same names.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use driver::{
    ClusterExtension, ConnectionConfig, Consistency, Event, Handler, KeyError, MemberStatus,
    Members, Node, NodeBuilder, RPC_ADDR_KEY, Request, RpcService, SelectError, ServiceRegistry,
    Status, StatusCode, WaitError,
};

/// A node on loopback UDP, with RPC (TLS for smol), in the cluster `test`.
fn builder(name: &str, seeds: &[SocketAddr]) -> NodeBuilder {
    let builder = NodeBuilder::new(
        name,
        ConnectionConfig::new(
            loopback(),
            loopback(),
            seeds.iter().map(ToString::to_string),
        ),
    )
    .cluster_id("test")
    .gossip_interval(INTERVAL)
    .leave_timeout(Duration::from_secs(1));
    with_rpc(builder, name)
}

async fn node(name: &str, seeds: &[SocketAddr]) -> Node {
    builder(name, seeds).connect().await.expect("the node starts")
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

/// The next event of `events` that `pick` keeps.
async fn next_matching<T>(
    events: &mut driver::MembershipEvents,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    within("an event", async {
        loop {
            let event = events.next().await.expect("the stream is open");
            if let Some(found) = pick(event) {
                return found;
            }
        }
    })
    .await
}

// ------------------------------------------------------------------------------- membership

#[test]
fn three_nodes_converge_share_metadata_and_select_across_data_centers() {
    run(async {
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
        // Rendezvous owners: every node that sees the same members picks the same ones.
        let owners = |n: &Node| {
            n.select_for_key("user:42", 2)
                .unwrap()
                .iter()
                .map(|c| c.addr())
                .collect::<Vec<_>>()
        };
        assert_eq!(owners(&a), owners(&b));
        assert_eq!(owners(&b), owners(&c));

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
        let b_id = b.id().clone();
        let (mut saw_set, mut saw_delete) = (false, false);
        while !(saw_set && saw_delete) {
            let value = next_matching(&mut events, |event| match event {
                Event::KeyChanged {
                    member, key, value, ..
                } if member.id == b_id && key == "shard" => Some(value),
                _ => None,
            })
            .await;
            saw_set |= value.as_deref() == Some("7");
            saw_delete |= value.is_none();
        }

        // The clock moves forward, and gossip carries it.
        let t1 = a.clock().now();
        assert!(a.clock().now() > t1);
        a.set_metadata("after", "t1").unwrap();
        b.wait_for_members(
            |m| m.get(a.id()).and_then(|a| a.get("after")).is_some(),
            WAIT,
        )
        .await
        .unwrap();
        assert!(b.clock().now() > t1, "b's clock is past what a stamped");

        // Reserved keys are refused with a typed error.
        assert_eq!(
            a.set_metadata("__cohort/leaving", "1"),
            Err(KeyError::Reserved("__cohort/leaving".to_owned()))
        );
        for node in [&a, &b, &c] {
            node.shutdown().await;
        }
    });
}

#[test]
fn a_graceful_shutdown_is_seen_as_left_quickly_and_frees_the_ports() {
    run(async {
        let a = node("a", &[]).await;
        let mut events = a.membership_events();
        let b = node("b", &[a.public_addr()]).await;
        let joined = next_matching(&mut events, |event| match event {
            Event::Joined(member) => Some(member),
            _ => None,
        })
        .await;
        assert_eq!(&joined.id, b.id(), "the Joined event carries the member");
        all_live(&[&a, &b], 2).await;
        let (b_addr, b_rpc) = (b.listen_addr(), b.rpc_listen_addr().expect("RPC"));
        let b_id = b.id().clone();
        b.shutdown().await;
        assert_eq!(
            b.members().local_member().map(|m| m.status),
            Some(MemberStatus::Left),
            "the node's own snapshot shows it left"
        );
        UdpSocket::bind(b_addr).expect("the gossip port is free after shutdown");
        assert!(rpc_port_free(b_rpc), "the RPC port is free after shutdown");
        a.wait_for_members(
            |m| m.get(&b_id).is_some_and(|b| b.status == MemberStatus::Left),
            WAIT,
        )
        .await
        .expect("b is seen as left");
        let left = next_matching(&mut events, |event| match event {
            Event::Left(member) => Some(member),
            _ => None,
        })
        .await;
        assert_eq!(left.id, b_id, "the Left event carries the member");
        // Commands after shutdown are refused; shutting down twice is harmless.
        assert_eq!(b.set_metadata("k", "v"), Err(KeyError::Leaving));
        b.shutdown().await;
        a.shutdown().await;
    });
}

#[test]
fn a_node_dropped_without_shutdown_is_declared_failed() {
    run(async {
        let a = node("a", &[]).await;
        let b = node("b", &[a.public_addr()]).await;
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
    });
}

#[test]
fn a_reader_that_falls_behind_is_told_and_gets_a_snapshot() {
    run(async {
        let a = builder("a", &[]).event_capacity(2).connect().await.unwrap();
        let mut slow = a.membership_events();
        for i in 0..20 {
            a.set_metadata(&format!("k{i}"), "v").unwrap();
        }
        let b = node("b", &[a.public_addr()]).await;
        all_live(&[&a, &b], 2).await;
        match within("an event", slow.next()).await.expect("open") {
            Event::Lagged { missed, members } => {
                assert!(missed > 0);
                assert_eq!(members.live_count(), 2, "the snapshot is current");
            }
            other => panic!("expected a lag first, got {other:?}"),
        }
        a.shutdown().await;
        b.shutdown().await;
        within("the stream's end", async {
            while slow.next().await.is_some() {}
        })
        .await;
    });
}

#[test]
fn waiting_times_out_with_the_last_snapshot_and_ends_on_shutdown() {
    run(async {
        let a = node("a", &[]).await;
        let err = a
            .wait_for_members(|m| m.live_count() == 5, Duration::from_millis(300))
            .await
            .unwrap_err();
        match err {
            WaitError::Timeout { last } => assert_eq!(last.live_count(), 1),
            other => panic!("{other:?}"),
        }
        // A wait in progress ends when the node shuts down.
        let waiting = a.wait_for_members(|m| m.live_count() == 5, WAIT);
        let shutting = async {
            a.shutdown().await;
            // Hold this branch open until the wait has had its answer.
            std::future::pending::<()>().await;
            unreachable!()
        };
        let result = within("the wait's end", waiting.or(shutting)).await;
        assert!(matches!(result, Err(WaitError::ShutDown)), "{result:?}");
        // The snapshot stream ends after the last snapshot, which shows the node left.
        let mut changes = a.membership_changes();
        let last = within("the last snapshot", async {
            let mut last = None;
            while let Some(snapshot) = changes.next().await {
                last = Some(snapshot);
            }
            last
        })
        .await
        .expect("one snapshot at least");
        assert_eq!(
            last.local_member().map(|m| m.status),
            Some(MemberStatus::Left)
        );
    });
}

/// An extension that publishes a key and records its shutdown hook.
struct Recorder {
    stopped: Arc<AtomicBool>,
}

impl ClusterExtension for Recorder {
    type Output = usize;
    type Error = KeyError;

    async fn init_extension(self, node: &Node) -> Result<usize, KeyError> {
        node.set_metadata("extension", "on")?;
        let stopped = self.stopped;
        node.on_shutdown(move || async move {
            stopped.store(true, Ordering::SeqCst);
        });
        Ok(node.members().all().len())
    }
}

#[test]
fn extensions_ttl_keys_key_changes_and_the_local_member() {
    run(async {
        let stopped = Arc::new(AtomicBool::new(false));
        // Keys with a TTL (and tombstones) live 500 ms; each node expires them by its own
        // setting.
        let short_grace = |name: &str, seeds: &[SocketAddr]| {
            builder(name, seeds).configure(|config| {
                config.marked_for_deletion_grace_period = Duration::from_millis(500);
            })
        };
        let a = short_grace("a", &[]).connect().await.unwrap();
        let b = short_grace("b", &[a.public_addr()]).connect().await.unwrap();
        all_live(&[&a, &b], 2).await;
        let seen = a
            .add_extension(Recorder {
                stopped: Arc::clone(&stopped),
            })
            .await
            .unwrap();
        assert_eq!(seen, 2);
        assert_eq!(a.local_member().get("extension"), Some("on"));

        // Changes under a prefix, from every member, with the old value.
        let mut shards = a.key_changes("shard/");
        b.set_metadata("other", "x").unwrap();
        b.set_metadata("shard/1", "b").unwrap();
        b.set_metadata("shard/1", "b2").unwrap();
        let b_id = b.id().clone();
        let (mut first, mut second) = (false, false);
        while !second {
            let event = within("a shard change", shards.next())
                .await
                .expect("the stream is open");
            match event {
                Event::KeyChanged {
                    member,
                    key,
                    old,
                    value,
                } => {
                    assert_eq!(member.id, b_id);
                    assert!(key.starts_with("shard/"), "{key}");
                    first |= value.as_deref() == Some("b");
                    // Two sets within a round may arrive as one change.
                    second |= value.as_deref() == Some("b2")
                        && (old.as_deref() == Some("b") || !first);
                }
                Event::Lagged { .. } => panic!("a reader keeping up does not lag"),
                _ => {}
            }
        }

        // A key with a TTL is visible, then removed everywhere.
        b.set_metadata_with_ttl("lease", "held").unwrap();
        a.wait_for_members(
            |m| m.get(&b_id).and_then(|b| b.get("lease")) == Some("held"),
            WAIT,
        )
        .await
        .unwrap();
        a.wait_for_members(
            |m| m.get(&b_id).is_some_and(|b| b.get("lease").is_none()),
            WAIT,
        )
        .await
        .expect("the TTL key expires everywhere");

        a.shutdown().await;
        assert!(stopped.load(Ordering::SeqCst), "the hook ran at shutdown");
        b.shutdown().await;
    });
}

#[test]
fn garbage_datagrams_are_counted_and_ignored() {
    run(async {
        // One report per sender for the whole test, however slow the machine.
        let a = builder("a", &[])
            .configure(|config| config.diagnostic_interval = Duration::from_secs(3_600))
            .connect()
            .await
            .unwrap();
        let b = node("b", &[a.public_addr()]).await;
        all_live(&[&a, &b], 2).await;
        let sender = UdpSocket::bind(loopback()).unwrap();
        for junk in [&b"\xff\xff garbage"[..], &[0u8; 3][..], &[7u8; 2_000][..]] {
            sender.send_to(junk, a.public_addr()).unwrap();
        }
        within("the garbage to be counted", async {
            while a.statistics().decode_errors < 3 {
                Timer::after(Duration::from_millis(5)).await;
            }
        })
        .await;
        // Still serving the cluster.
        b.set_metadata("after", "garbage").unwrap();
        a.wait_for_members(
            |m| m.get(b.id()).and_then(|b| b.get("after")) == Some("garbage"),
            WAIT,
        )
        .await
        .unwrap();
        let stats = a.statistics();
        assert!(stats.datagrams_received > 3 && stats.datagrams_sent > 0);

        // A flood of another cluster's messages from one sender: every one counted, one event.
        let mut events = a.membership_events();
        let mut bad = Vec::new();
        cohort_core::wire::encode_chitchat(
            cohort_core::wire::ProtocolVersion::V0,
            &cohort_core::wire::Message::BadCluster,
            &mut bad,
        );
        for _ in 0..200 {
            sender.send_to(&bad, a.public_addr()).unwrap();
        }
        within("the flood to be counted", async {
            while a.statistics().bad_cluster < 200 {
                Timer::after(Duration::from_millis(5)).await;
            }
        })
        .await;
        let stats = a.statistics();
        assert_eq!(stats.bad_cluster, 200);
        assert_eq!(
            stats.diagnostics_suppressed, 199,
            "one event for the sender within the interval, the rest held back"
        );
        let from = sender.local_addr().unwrap();
        let reported = next_matching(&mut events, |event| match event {
            Event::BadCluster { from: f, suppressed } if f == from => Some(suppressed),
            _ => None,
        })
        .await;
        assert_eq!(reported, 0);
        a.shutdown().await;
        b.shutdown().await;
    });
}

#[test]
fn a_port_in_use_and_bad_settings_are_typed_errors() {
    run(async {
        let taken = UdpSocket::bind(loopback()).unwrap();
        let addr = taken.local_addr().unwrap();
        let busy = with_rpc(
            NodeBuilder::new("a", ConnectionConfig::new(addr, addr, Vec::<String>::new())),
            "a",
        )
        .connect()
        .await;
        assert!(
            matches!(busy, Err(driver::ConnectError::Bind { addr: a, .. }) if a == addr),
            "{busy:?}"
        );
        let bad = builder("b", &[])
            .metadata("__cohort/mine", "x")
            .connect()
            .await;
        assert!(
            matches!(
                bad,
                Err(driver::ConnectError::InvalidConfig(driver::ConfigError::Key(
                    KeyError::Reserved(ref k)
                ))) if k == "__cohort/mine"
            ),
            "{bad:?}"
        );
        // A key a setting owns (the data center) is refused too, and says which.
        let owned = builder("c", &[])
            .metadata(driver::DATA_CENTER_KEY, "eu")
            .connect()
            .await
            .unwrap_err();
        assert!(owned.to_string().contains("data_center"), "{owned}");
    });
}

#[test]
fn listening_on_every_interface_with_a_loopback_public_address_and_host_name_seeds() {
    run(async {
        let a = with_rpc(
            NodeBuilder::new(
                "a",
                ConnectionConfig::new(
                    SocketAddr::from(([0, 0, 0, 0], 0)),
                    loopback(),
                    Vec::<String>::new(),
                ),
            )
            .cluster_id("test")
            .gossip_interval(INTERVAL),
            "a",
        )
        .connect()
        .await
        .unwrap();
        assert!(a.listen_addr().ip().is_unspecified());
        assert_eq!(a.public_addr().ip(), std::net::Ipv4Addr::LOCALHOST);
        assert_eq!(a.public_addr().port(), a.listen_addr().port());
        // b finds a through a host name.
        let seed = format!("localhost:{}", a.public_addr().port());
        let b = with_rpc(
            NodeBuilder::new("b", ConnectionConfig::new(loopback(), loopback(), [seed]))
                .cluster_id("test")
                .gossip_interval(INTERVAL),
            "b",
        )
        .connect()
        .await
        .unwrap();
        all_live(&[&a, &b], 2).await;
        a.shutdown().await;
        b.shutdown().await;
    });
}

/// Nodes shut down one after the other (c, then b as soon as a saw c leave): b takes in what
/// already arrived (c's departure) before leaving, so it does not wait for c, which is gone,
/// until its (here very long) leave timeout.
#[test]
fn shutting_down_right_after_a_peer_left_does_not_wait_for_it() {
    run(async {
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
        // Each step bounded on its own, so that a failure names the one that waited.
        within("c's shutdown", c.shutdown()).await;
        a.wait_for_members(|m| m.live_count() == 2, WAIT)
            .await
            .expect("a sees c leave");
        within("b's shutdown, without waiting out a leave timeout", b.shutdown()).await;
        within("a's shutdown, without waiting out a leave timeout", a.shutdown()).await;
    });
}

/// A node that shuts down right after its seed sees it live is seen to leave, never to fail.
/// Five rounds of it.
#[test]
fn a_node_leaving_right_after_joining_is_seen_left() {
    run(async {
        for round in 0..5 {
            let a = node("a", &[]).await;
            let b = node("b", &[a.public_addr()]).await;
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
    });
}

#[test]
fn the_local_member_and_snapshots_as_they_change() {
    run(async {
        let a = node("a", &[]).await;
        let b = node("b", &[a.public_addr()]).await;
        all_live(&[&a, &b], 2).await;
        let local = a.local_member();
        assert_eq!(&local.id, a.id());
        assert_eq!(local.status, MemberStatus::Live);
        assert_eq!(
            local.get(RPC_ADDR_KEY),
            Some(a.rpc_addr().to_string().as_str())
        );
        // The current snapshot first, then newer ones; a change on a shows on b.
        let mut changes = b.membership_changes();
        let first = within("the first snapshot", changes.next())
            .await
            .expect("open");
        a.set_metadata("color", "blue").unwrap();
        assert_eq!(a.local_member().get("color"), Some("blue"), "seen locally at once");
        let seen = within("a newer snapshot with the key", async {
            while let Some(members) = changes.next().await {
                assert!(members.version() > first.version());
                if members.get(a.id()).and_then(|m| m.get("color")) == Some("blue") {
                    return members;
                }
            }
            panic!("the stream ended");
        })
        .await;
        assert_eq!(seen.live_count(), 2);
        a.shutdown().await;
        b.shutdown().await;
    });
}

// ------------------------------------------------------------------------------------ clock

/// How far ahead of the others the skewed node's wall clock runs: ten times the drift bound.
const SKEW_MS: i64 = 5_000;

/// Asserts that `node`'s cluster clock is within the drift bound of its own wall clock: the
/// skewed node's timestamps did not drag it forward.
fn not_dragged(node: &Node, drift: Duration) {
    let now = node.clock().now().millis();
    let wall = node.clock().wall().as_unix_millis();
    let drift_ms = u64::try_from(drift.as_millis()).unwrap();
    assert!(
        now <= wall + drift_ms,
        "{}: the clock reads {now} ms, {} ms ahead of its wall clock ({wall} ms): dragged by the \
         skewed node",
        node.id(),
        now.saturating_sub(wall)
    );
}

/// A node whose wall clock (injected through the builder's clock source) runs far beyond the
/// drift bound ahead is reported by its peers (`ClockSkew` events carrying the refused
/// timestamp, the statistics' counter) and does not drag their clocks forward, during gossip
/// and RPC both; it still gossips (a live member) and its RPC exchanges fail with a typed
/// clock-skew status. The skewed node itself refuses nothing: the others are behind it.
#[test]
fn a_node_whose_clock_is_skewed_beyond_the_drift_bound_is_reported_and_drags_no_one() {
    run(async {
        let drift = Duration::from_millis(500);
        let a = builder("a", &[]).max_clock_drift(drift).connect().await.unwrap();
        let seeds = [a.public_addr()];
        let b = builder("b", &seeds).max_clock_drift(drift).connect().await.unwrap();
        all_live(&[&a, &b], 2).await;
        let (mut a_events, mut b_events) = (a.membership_events(), b.membership_events());
        let fast = builder("fast", &seeds)
            .max_clock_drift(drift)
            .wall_clock(driver::WallClock::system_offset_millis(SKEW_MS))
            .connect()
            .await
            .unwrap();
        assert_eq!(
            fast.clock().wall_clock().offset_millis(),
            Some(SKEW_MS),
            "the node reads the clock it was given"
        );
        // The injection took: the skewed node's clock is seconds ahead of the others' wall.
        let fast_ahead = fast.clock().now().millis() - a.clock().wall().as_unix_millis();
        assert!(fast_ahead >= 4_000, "only {fast_ahead} ms ahead");
        // Its gossip is still taken in: a member like any other.
        all_live(&[&a, &b, &fast], 3).await;

        // Both peers report it, twice (the reports are rate limited to one a second per
        // sender): its timestamps keep being refused while gossip goes on, and all that time
        // neither peer's clock moves past its own wall clock plus the bound.
        let fast_addr = fast.public_addr();
        for (node, events) in [(&a, &mut a_events), (&b, &mut b_events)] {
            for _ in 0..2 {
                let (remote, error) = next_matching(events, |event| match event {
                    Event::ClockSkew {
                        from,
                        remote,
                        error,
                        ..
                    } if from == fast_addr => Some((remote, error)),
                    _ => None,
                })
                .await;
                match error {
                    driver::ClockError::DriftExceeded {
                        remote_millis,
                        wall_millis,
                        max_drift_millis,
                    } => {
                        assert_eq!(remote_millis, remote.millis());
                        assert_eq!(max_drift_millis, 500);
                        assert!(
                            remote_millis >= wall_millis + 4_000,
                            "{remote_millis} is not seconds ahead of {wall_millis}"
                        );
                    }
                    other => panic!("{}: not a drift error: {other:?}", node.id()),
                }
                not_dragged(node, drift);
            }
            assert!(node.statistics().clock_skew >= 2, "{:?}", node.statistics());
        }

        // RPC: the skewed node's reply, and its request, carry timestamps beyond the bound:
        // typed clock-skew errors, and the peer's clock stays where it was.
        let status = within(
            "a call to the skewed node",
            a.rpc_client::<driver::admin::AdminService>(fast.rpc_addr())
                .call(&driver::admin::MembersRequest),
        )
        .await
        .unwrap_err();
        assert_eq!(status.code, StatusCode::ClockSkew, "{status:?}");
        let status = within(
            "a call from the skewed node",
            fast.rpc_client::<driver::admin::AdminService>(b.rpc_addr())
                .call(&driver::admin::MembersRequest),
        )
        .await
        .unwrap_err();
        assert_eq!(status.code, StatusCode::ClockSkew, "{status:?}");
        // Between the two others, RPC works as ever.
        let view = within(
            "a call between the others",
            a.rpc_client::<driver::admin::AdminService>(b.rpc_addr())
                .call(&driver::admin::MembersRequest),
        )
        .await
        .unwrap();
        assert_eq!(view.get().members.len(), 3);
        for node in [&a, &b] {
            not_dragged(node, drift);
        }
        // The others are behind the skewed node, which accepts their timestamps.
        assert_eq!(fast.statistics().clock_skew, 0);
        for node in [&fast, &a, &b] {
            node.shutdown().await;
        }
    });
}

// -------------------------------------------------------------------------------------- RPC

#[derive(driver::rkyv::Archive, driver::rkyv::Serialize, driver::rkyv::Deserialize, Debug)]
#[rkyv(crate = driver::rkyv)]
struct Add {
    a: u64,
    b: u64,
}

#[derive(driver::rkyv::Archive, driver::rkyv::Serialize, driver::rkyv::Deserialize, Debug)]
#[rkyv(crate = driver::rkyv)]
struct Sleep {
    millis: u64,
}

#[derive(driver::rkyv::Archive, driver::rkyv::Serialize, driver::rkyv::Deserialize, Debug)]
#[rkyv(crate = driver::rkyv)]
struct Boom;

/// Asks for a reply of `size` bytes, made after `millis`.
#[derive(driver::rkyv::Archive, driver::rkyv::Serialize, driver::rkyv::Deserialize, Debug)]
#[rkyv(crate = driver::rkyv)]
struct Blow {
    size: u32,
    millis: u64,
}

#[derive(Default)]
struct Calculator {
    /// `Sleep` handlers that started, and those dropped before they finished.
    entered: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

impl RpcService for Calculator {
    fn service_name() -> &'static str {
        "calculator"
    }
    fn register_handlers(registry: &mut ServiceRegistry<Self>) {
        registry.add_handler::<Add>();
        registry.add_handler::<Sleep>();
        registry.add_handler::<Boom>();
        registry.add_handler::<Blow>();
    }
}

impl Handler<Blow> for Calculator {
    const NAME: &'static str = "blow";
    type Reply = Vec<u8>;
    async fn on_message(&self, request: Request<'_, Blow>) -> Result<Vec<u8>, Status> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        Timer::after(Duration::from_millis(request.millis.to_native())).await;
        Ok(vec![7; request.size.to_native() as usize])
    }
}

impl Handler<Add> for Calculator {
    const NAME: &'static str = "add";
    type Reply = u64;
    async fn on_message(&self, request: Request<'_, Add>) -> Result<u64, Status> {
        Ok(request.a.to_native() + request.b.to_native())
    }
}

/// Counts the drops of an unfinished `Sleep` handler.
struct Unfinished(Option<Arc<AtomicU64>>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(dropped) = &self.0 {
            dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Handler<Sleep> for Calculator {
    const NAME: &'static str = "sleep";
    type Reply = u64;
    async fn on_message(&self, request: Request<'_, Sleep>) -> Result<u64, Status> {
        let mut guard = Unfinished(Some(Arc::clone(&self.dropped)));
        self.entered.fetch_add(1, Ordering::SeqCst);
        Timer::after(Duration::from_millis(request.millis.to_native())).await;
        guard.0 = None;
        Ok(request.millis.to_native())
    }
}

impl Handler<Boom> for Calculator {
    const NAME: &'static str = "boom";
    type Reply = u64;
    async fn on_message(&self, _: Request<'_, Boom>) -> Result<u64, Status> {
        panic!("the handler met a bug")
    }
}

/// Another service, to show that removing one leaves the others.
struct Greeter;

impl RpcService for Greeter {
    fn service_name() -> &'static str {
        "greeter"
    }
    fn register_handlers(registry: &mut ServiceRegistry<Self>) {
        registry.add_handler::<String>();
    }
}

impl Handler<String> for Greeter {
    const NAME: &'static str = "hello";
    type Reply = String;
    async fn on_message(&self, request: Request<'_, String>) -> Result<String, Status> {
        Ok(format!("hello, {}", request.as_str()))
    }
}

async fn reach(counter: &AtomicU64, n: u64) {
    within("calls to reach their handler", async {
        while counter.load(Ordering::SeqCst) < n {
            Timer::after(Duration::from_millis(2)).await;
        }
    })
    .await;
}

#[test]
fn calls_reach_members_many_at_once_and_the_admin_service_answers() {
    run(async {
        let a = node("a", &[]).await;
        let b = node("b", &[a.public_addr()]).await;
        all_live(&[&a, &b], 2).await;
        b.add_rpc_service(Calculator::default()).unwrap();
        // By the member, through the address it publishes.
        let members = a.members();
        let b_member = members.get(b.id()).expect("b is known");
        let calc = a.rpc_client::<Calculator>(b_member);
        assert_eq!(calc.addr(), b.rpc_addr());
        let sum = within("a call", calc.call(&Add { a: 2, b: 40 }))
            .await
            .unwrap();
        assert_eq!(sum.get().to_native(), 42);
        // Many at once on one connection, each answered by its own handler call.
        let requests: Vec<Add> = (0..200).map(|i| Add { a: i, b: 1 }).collect();
        let calls = requests.iter().map(|r| calc.call(r));
        let replies = within("200 calls", futures_util::future::join_all(calls)).await;
        for (i, reply) in replies.into_iter().enumerate() {
            assert_eq!(reply.unwrap().get().to_native(), i as u64 + 1);
        }
        // Every node serves its view of the cluster.
        let admin = a.rpc_client::<driver::admin::AdminService>(b.rpc_addr());
        let view = within("the admin call", admin.call(&driver::admin::MembersRequest))
            .await
            .unwrap();
        assert_eq!(view.get().members.len(), 2);
        assert!(view.get().members.iter().any(|row| row.local && row.name == "b"));
        a.shutdown().await;
        b.shutdown().await;
    });
}

#[test]
fn services_come_and_go_errors_are_typed_and_panics_answer_internal() {
    run(async {
        let a = node("a", &[]).await;
        let b = node("b", &[]).await;
        let calc = a.rpc_client::<Calculator>(b.rpc_addr());
        let greet = a.rpc_client::<Greeter>(b.rpc_addr());
        // Nothing served yet.
        let status = within("a call", calc.call(&Add { a: 1, b: 1 }))
            .await
            .unwrap_err();
        assert_eq!(status.code, StatusCode::NotFound);
        b.add_rpc_service(Calculator::default()).unwrap();
        b.add_rpc_service(Greeter).unwrap();
        assert!(b.add_rpc_service(Greeter).is_err(), "a name is served once");
        assert_eq!(
            within("a call", calc.call(&Add { a: 1, b: 2 }))
                .await
                .unwrap()
                .get()
                .to_native(),
            3
        );
        // A handler that panics answers Internal; the connection goes on serving.
        let status = within("a call", calc.call(&Boom)).await.unwrap_err();
        assert_eq!(status.code, StatusCode::Internal);
        // Removing one service leaves the other.
        assert!(b.remove_rpc_service::<Calculator>());
        assert!(!b.remove_rpc_service::<Calculator>());
        let status = within("a call", calc.call(&Add { a: 1, b: 1 }))
            .await
            .unwrap_err();
        assert_eq!(status.code, StatusCode::NotFound);
        let hello = within("a call", greet.call(&"ada".to_owned()))
            .await
            .unwrap();
        assert_eq!(hello.get().as_str(), "hello, ada");
        // A peer nobody serves: an error within the call's deadline, not a hang.
        let dead = {
            let socket = UdpSocket::bind(loopback()).unwrap();
            socket.local_addr().unwrap()
        };
        let started = std::time::Instant::now();
        let status = within(
            "a call to nobody",
            a.rpc_client::<Greeter>(dead)
                .with_deadline(Some(Duration::from_millis(500)))
                .call(&"x".to_owned()),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                status.code,
                StatusCode::Unavailable | StatusCode::DeadlineExceeded
            ),
            "{status:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the deadline bounds connecting too: {:?}",
            started.elapsed()
        );
        a.shutdown().await;
        b.shutdown().await;
    });
}

#[test]
fn deadlines_and_dropped_calls_stop_the_handler() {
    run(async {
        let a = node("a", &[]).await;
        let b = node("b", &[]).await;
        let calculator = Calculator::default();
        let (entered, dropped) = (
            Arc::clone(&calculator.entered),
            Arc::clone(&calculator.dropped),
        );
        b.add_rpc_service(calculator).unwrap();
        let calc = a.rpc_client::<Calculator>(b.rpc_addr());
        // The deadline passes: the caller is told, and the handler is stopped.
        let status = within(
            "a call",
            calc.call_with_deadline(&Sleep { millis: 60_000 }, Some(Duration::from_millis(200))),
        )
        .await
        .unwrap_err();
        assert_eq!(status.code, StatusCode::DeadlineExceeded);
        reach(&dropped, 1).await;
        // A caller that stops waiting cancels the call on the server.
        let request = Sleep { millis: 60_000 };
        let abandoned = calc.call(&request).or(async {
            reach(&entered, 2).await;
            Err(Status::new(StatusCode::Cancelled, "dropped by the test"))
        });
        assert!(within("the call to start", abandoned).await.is_err());
        reach(&dropped, 2).await;
        // A short one still finishes.
        let done = within("a call", calc.call(&Sleep { millis: 10 }))
            .await
            .unwrap();
        assert_eq!(done.get().to_native(), 10);
        a.shutdown().await;
        b.shutdown().await;
    });
}

/// The node-wide RPC bounds: past `max_calls_in_flight` a call is answered `Unavailable`
/// without running; past `max_connections` a peer's connection is refused (its call fails with
/// a typed error) until a slot frees.
#[test]
fn rpc_server_limits_refuse_extra_calls_and_connections_with_typed_errors() {
    run(async {
        let mut limits = driver::rpc::ServerLimits::default();
        limits.max_connections = 1;
        limits.max_calls_in_flight = 1;
        let b = builder("b", &[])
            .rpc_server_limits(limits)
            .connect()
            .await
            .expect("b starts");
        let a = node("a", &[]).await;
        let c = node("c", &[]).await;
        let calculator = Calculator::default();
        let (entered, dropped) = (
            Arc::clone(&calculator.entered),
            Arc::clone(&calculator.dropped),
        );
        b.add_rpc_service(calculator).unwrap();
        let from_a = a.rpc_client::<Calculator>(b.rpc_addr());
        // One call holds b's only slot; a second one is refused at once, without running.
        let long = Sleep { millis: 60_000 };
        let second = from_a.call(&long).or(async {
            reach(&entered, 1).await;
            let refused = within("a refused call", from_a.call(&Sleep { millis: 1 }))
                .await
                .unwrap_err();
            assert_eq!(refused.code, StatusCode::Unavailable, "{refused}");
            Err(Status::new(StatusCode::Cancelled, "dropped by the test"))
        });
        assert!(within("the calls", second).await.is_err());
        assert_eq!(entered.load(Ordering::SeqCst), 1, "the refused call never ran");
        // The long call was dropped: its slot is free again.
        reach(&dropped, 1).await;
        let done = within("a call", from_a.call(&Sleep { millis: 1 }))
            .await
            .unwrap();
        assert_eq!(done.get().to_native(), 1);
        // a's connection is b's only one: c is refused.
        let from_c = c.rpc_client::<Calculator>(b.rpc_addr());
        let refused = within("c's call", from_c.call(&Sleep { millis: 1 }))
            .await
            .unwrap_err();
        assert!(
            matches!(
                refused.code,
                StatusCode::Unavailable | StatusCode::DeadlineExceeded
            ),
            "{refused}"
        );
        // Once a is gone, c gets through (after its back-off).
        a.shutdown().await;
        within("c's call after a left", async {
            loop {
                if let Ok(reply) = from_c.call(&Sleep { millis: 1 }).await {
                    return reply;
                }
                Timer::after(Duration::from_millis(50)).await;
            }
        })
        .await;
        b.shutdown().await;
        c.shutdown().await;
    });
}

#[test]
fn shutdown_finishes_calls_in_flight_then_frees_the_rpc_port() {
    run(async {
        let a = node("a", &[]).await;
        let b = node("b", &[]).await;
        let calculator = Calculator::default();
        let entered = Arc::clone(&calculator.entered);
        b.add_rpc_service(calculator).unwrap();
        let rpc = b.rpc_listen_addr().expect("RPC");
        let calc = a.rpc_client::<Calculator>(b.rpc_addr());
        let request = Sleep { millis: 300 };
        // The call is running when b shuts down: it is let finish and answered.
        let (reply, ()) = within(
            "the call and the shutdown",
            futures_util::future::join(calc.call(&request), async {
                reach(&entered, 1).await;
                b.shutdown().await;
            }),
        )
        .await;
        assert_eq!(reply.unwrap().get().to_native(), 300);
        assert!(rpc_port_free(rpc), "the RPC port is free after shutdown");
        // After the shutdown, calls fail (within their deadline: over QUIC nothing refuses a
        // handshake to a closed port, so only the deadline ends it).
        let status = within(
            "a call",
            calc.call_with_deadline(&Add { a: 1, b: 1 }, Some(Duration::from_millis(500))),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                status.code,
                StatusCode::Unavailable | StatusCode::DeadlineExceeded
            ),
            "{status:?}"
        );
        a.shutdown().await;
    });
}

/// Large replies made while the node shuts down still go out.
#[test]
fn shutdown_sends_the_replies_of_calls_it_let_finish() {
    run(async {
        let a = node("a", &[]).await;
        let b = node("b", &[]).await;
        let calculator = Calculator::default();
        let entered = Arc::clone(&calculator.entered);
        b.add_rpc_service(calculator).unwrap();
        let calc = a.rpc_client::<Calculator>(b.rpc_addr());
        let requests: Vec<Blow> = (0..6u32)
            .map(|i| Blow {
                size: (1 << 20) + i * 100_000,
                millis: 100,
            })
            .collect();
        let calls = futures_util::future::join_all(requests.iter().map(|r| calc.call(r)));
        let (replies, ()) = within(
            "the calls and the shutdown",
            futures_util::future::join(calls, async {
                reach(&entered, 6).await;
                b.shutdown().await;
            }),
        )
        .await;
        for (i, reply) in replies.into_iter().enumerate() {
            let reply = reply.unwrap_or_else(|s| panic!("call {i}: {s}"));
            assert_eq!(reply.get().len(), (1 << 20) + i * 100_000);
        }
        a.shutdown().await;
    });
}

/// A peer restarted on the same addresses, with a new generation, is called again once the
/// old connection is gone.
#[test]
fn calls_reach_a_peer_restarted_on_the_same_address() {
    run(async {
        let a = node("a", &[]).await;
        let b = node("b", &[]).await;
        b.add_rpc_service(Greeter).unwrap();
        let (rpc, listen) = (b.rpc_addr(), b.listen_addr());
        let greet = a.rpc_client::<Greeter>(rpc);
        assert!(within("a call", greet.call(&"before".to_owned())).await.is_ok());
        let generation = b.id().generation();
        b.shutdown().await;
        let restarted = with_rpc(
            NodeBuilder::new("b", ConnectionConfig::new(listen, listen, Vec::<String>::new()))
                .cluster_id("test")
                .gossip_interval(INTERVAL)
                .rpc_addr(rpc)
                .generation(generation + 1),
            "b",
        )
        .connect()
        .await
        .expect("the addresses are free again");
        assert_eq!(restarted.rpc_addr(), rpc);
        restarted.add_rpc_service(Greeter).unwrap();
        let reply = within("a call to the restarted node", async {
            loop {
                match greet
                    .call_with_deadline(&"after".to_owned(), Some(Duration::from_secs(1)))
                    .await
                {
                    Ok(reply) => return reply,
                    // The old connection closed, or the back-off before reconnecting.
                    Err(status) => {
                        assert!(
                            matches!(
                                status.code,
                                StatusCode::Unavailable | StatusCode::DeadlineExceeded
                            ),
                            "{status}"
                        );
                        Timer::after(Duration::from_millis(20)).await;
                    }
                }
            }
        })
        .await;
        assert_eq!(reply.get().as_str(), "hello, after");
        a.shutdown().await;
        restarted.shutdown().await;
    });
}

/// Authenticated gossip: nodes sharing a key form a cluster; a node with another key never
/// appears anywhere, and what it sends is counted; a key rotation loses no member.
#[test]
fn a_cluster_key_keeps_strangers_out_and_rotates_without_losing_members() {
    run(async {
        let key = |b: u8| driver::ClusterKey::from_bytes(&[b; 32]).unwrap();
        let keyed = |name: &str, seeds: &[SocketAddr], k: u8| {
            builder(name, seeds).keyring(driver::Keyring::new(key(k)))
        };
        let a = keyed("a", &[], 1).connect().await.unwrap();
        let b = keyed("b", &[a.public_addr()], 1).connect().await.unwrap();
        let x = keyed("x", &[a.public_addr()], 9).connect().await.unwrap();
        all_live(&[&a, &b], 2).await;
        within("x's datagrams to be refused", async {
            while a.statistics().unauthenticated == 0 {
                Timer::after(Duration::from_millis(5)).await;
            }
        })
        .await;
        for node in [&a, &b] {
            assert!(node.members().get(x.id()).is_none(), "x is not a member");
        }
        assert_eq!(x.members().all().len(), 1, "x learned nothing");
        // Rotation: install everywhere, use everywhere, remove the old key everywhere.
        for node in [&a, &b] {
            assert_eq!(node.install_cluster_key(key(2)), Ok(true));
        }
        for node in [&a, &b] {
            node.use_cluster_key(&key(2)).unwrap();
        }
        for node in [&a, &b] {
            assert_eq!(node.remove_cluster_key(&key(1)), Ok(true));
        }
        // Still one cluster: a key set now reaches the other side.
        b.set_metadata("rotated", "yes").unwrap();
        a.wait_for_members(
            |m| m.get(b.id()).and_then(|m| m.get("rotated")) == Some("yes"),
            WAIT,
        )
        .await
        .expect("gossip flows after the rotation");
        assert_eq!(a.members().live_count(), 2);
        for node in [&a, &b, &x] {
            node.shutdown().await;
        }
    });
}
