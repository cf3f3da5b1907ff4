//! Tests of the smol driver's node, on loopback UDP. Every wait is bounded: conditions are
//! awaited with a timeout, never slept for.

use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cohort_smol::{
    ClusterExtension, ConnectError, ConnectionConfig, Consistency, Event, KeyError, MemberStatus,
    Members, Node, NodeBuilder, RPC_ADDR_KEY, SelectError, WaitError,
};
use smol::Timer;
use smol::future::FutureExt as _;

const WAIT: Duration = Duration::from_secs(10);
const INTERVAL: Duration = Duration::from_millis(100);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn builder(name: &str, seeds: &[SocketAddr]) -> NodeBuilder {
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

/// `future`'s output, or a panic naming `what` after [`WAIT`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    let timeout = async {
        Timer::after(WAIT).await;
        panic!("timed out waiting for {what}");
    };
    future.or(timeout).await
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
    events: &mut cohort_smol::MembershipEvents,
    what: &str,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    within(what, async {
        while let Some(event) = events.next().await {
            if let Some(found) = pick(event) {
                return found;
            }
        }
        panic!("the stream ended before {what}");
    })
    .await
}

#[test]
fn three_nodes_converge_share_metadata_and_select_across_data_centers() {
    smol::block_on(async {
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
        assert_eq!(a.topology().data_centers().len(), 2);
        // Key owners are the same from every node that sees the same members.
        let owners = |n: &Node| -> Vec<_> {
            let owners = n.select_for_key("user:42", 2).unwrap();
            owners.iter().map(|o| o.id().clone()).collect()
        };
        assert_eq!(owners(&a), owners(&b));
        assert_eq!(owners(&a), owners(&c));

        // A key set on b reaches a and c.
        b.set_metadata("shard", "7").unwrap();
        for node in [&a, &c] {
            node.wait_for_members(
                |m| m.get(b.id()).and_then(|b| b.get("shard")) == Some("7"),
                WAIT,
            )
            .await
            .unwrap();
        }
        // Gossip carries the clock: once b has a key a set after stamping `t1`, b is past it.
        let t1 = a.clock().now();
        a.set_metadata("after", "t1").unwrap();
        b.wait_for_members(
            |m| m.get(a.id()).and_then(|a| a.get("after")).is_some(),
            WAIT,
        )
        .await
        .unwrap();
        assert!(b.clock().now() > t1);
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
fn events_arrive_joined_key_changed_and_left_on_a_graceful_shutdown_which_frees_the_port() {
    smol::block_on(async {
        let a = builder("a", &[]).connect().await.unwrap();
        let mut events = a.membership_events();
        let mut shards = a.key_changes("shard/");
        let b = builder("b", &[a.public_addr()]).connect().await.unwrap();
        let b_id = b.id().clone();
        let joined = next_matching(&mut events, "b's join", |e| match e {
            Event::Joined(m) => Some(m),
            _ => None,
        })
        .await;
        assert_eq!(joined.id, b_id);

        b.set_metadata("role", "ignored by the prefix").unwrap();
        b.set_metadata("shard/1", "x").unwrap();
        let changed = within("the key change", shards.next())
            .await
            .expect("the stream is open");
        match changed {
            Event::KeyChanged {
                member,
                key,
                old,
                value,
            } => {
                assert_eq!(member.id, b_id);
                assert_eq!(
                    (key.as_str(), old, value.as_deref()),
                    ("shard/1", None, Some("x"))
                );
            }
            other => panic!("expected the key change, got {other:?}"),
        }

        let b_addr = b.listen_addr();
        b.shutdown().await;
        assert_eq!(
            b.members().local_member().map(|m| m.status),
            Some(MemberStatus::Left),
            "the node's own snapshot shows it left"
        );
        // The socket is closed: the same address binds again at once.
        UdpSocket::bind(b_addr).expect("the gossip port is free after shutdown");
        let left = next_matching(&mut events, "b's departure", |e| match e {
            Event::Left(m) => Some(m),
            Event::Failed(m) => panic!("{} failed instead of leaving", m.id),
            _ => None,
        })
        .await;
        assert_eq!(left.id, b_id, "the Left event carries the member");
        // Commands after shutdown are refused; shutting down twice is harmless.
        assert_eq!(b.set_metadata("k", "v"), Err(KeyError::Leaving));
        b.shutdown().await;
        a.shutdown().await;
        within("the end of the streams", async {
            while events.next().await.is_some() {}
            while shards.next().await.is_some() {}
        })
        .await;
        assert!(
            a.membership_events().next().await.is_none(),
            "ended at once"
        );
    });
}

#[test]
fn a_node_dropped_without_shutdown_is_declared_failed() {
    smol::block_on(async {
        let a = builder("a", &[]).connect().await.unwrap();
        let b = builder("b", &[a.public_addr()]).connect().await.unwrap();
        all_live(&[&a, &b], 2).await;
        let b_id = b.id().clone();
        let mut b_events = b.membership_events();
        drop(b);
        within("the end of the dropped node's stream", async {
            while b_events.next().await.is_some() {}
        })
        .await;
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
fn garbage_datagrams_are_counted_and_ignored() {
    smol::block_on(async {
        let a = builder("a", &[]).connect().await.unwrap();
        let sender = UdpSocket::bind(loopback()).unwrap();
        for junk in [&b""[..], b"\x00", b"\x53\xb0\x01", &[0xff; 200][..]] {
            sender.send_to(junk, a.public_addr()).unwrap();
        }
        let b = builder("b", &[a.public_addr()]).connect().await.unwrap();
        all_live(&[&a, &b], 2).await;
        let stats = a.statistics();
        assert_eq!(stats.decode_errors, 4);
        assert!(stats.datagrams_sent > 0 && stats.datagrams_received > 4);
        assert!(stats.bytes_received >= 204);
        a.shutdown().await;
        b.shutdown().await;
    });
}

#[test]
fn a_reader_that_falls_behind_is_told_and_gets_a_snapshot() {
    smol::block_on(async {
        let a = builder("a", &[]).event_capacity(2).connect().await.unwrap();
        let mut slow = a.membership_events();
        for i in 0..20 {
            a.set_metadata(&format!("k{i}"), "v").unwrap();
        }
        let b = builder("b", &[a.public_addr()]).connect().await.unwrap();
        all_live(&[&a, &b], 2).await;
        match within("the lag", slow.next()).await {
            Some(Event::Lagged { missed, members }) => {
                assert!(missed > 0);
                assert_eq!(members.live_count(), 2, "the snapshot is current");
            }
            other => panic!("expected a lag first, got {other:?}"),
        }
        a.shutdown().await;
        b.shutdown().await;
        within("the end of the stream", async {
            while slow.next().await.is_some() {}
        })
        .await;
    });
}

#[test]
fn waiting_times_out_with_the_last_snapshot_and_ends_on_shutdown() {
    smol::block_on(async {
        let a = builder("a", &[]).connect().await.unwrap();
        let err = a
            .wait_for_members(|m| m.live_count() == 5, Duration::from_millis(300))
            .await
            .unwrap_err();
        match err {
            WaitError::Timeout { last } => {
                assert_eq!(last.live_count(), 1);
                assert_eq!(last.local(), a.id());
            }
            other => panic!("{other:?}"),
        }
        let mut changes = a.membership_changes();
        let first = within("the first snapshot", changes.next()).await.unwrap();
        assert_eq!(first.local(), a.id());
        let waiter = {
            let a = a.clone();
            smol::spawn(async move { a.wait_for_members(|m| m.live_count() == 5, WAIT).await })
        };
        a.shutdown().await;
        let result = within("the waiter", waiter).await;
        assert!(matches!(result, Err(WaitError::ShutDown)), "{result:?}");
        // The snapshot stream gives the last snapshot (the node left), then ends.
        let last = within("the snapshots", async {
            let mut last = None;
            while let Some(members) = changes.next().await {
                last = Some(members);
            }
            last
        })
        .await;
        let status = last.and_then(|m| m.local_member().map(|l| l.status));
        assert_eq!(status, Some(MemberStatus::Left));
    });
}

/// An extension that publishes a key and records its shutdown.
struct Recorder {
    stopped: Arc<AtomicBool>,
}

impl ClusterExtension for Recorder {
    type Output = usize;
    type Error = KeyError;

    async fn init_extension(self, node: &Node) -> Result<usize, KeyError> {
        node.set_metadata("extension", "recorder")?;
        let stopped = self.stopped;
        node.on_shutdown(move || async move {
            stopped.store(true, Ordering::SeqCst);
        });
        Ok(node.members().all().len())
    }
}

#[test]
fn extensions_start_on_the_node_ttl_keys_and_hooks_run_at_shutdown() {
    smol::block_on(async {
        let a = builder("a", &[]).connect().await.unwrap();
        let stopped = Arc::new(AtomicBool::new(false));
        let seen = a
            .add_extension(Recorder {
                stopped: stopped.clone(),
            })
            .await
            .unwrap();
        assert_eq!(seen, 1);
        assert_eq!(a.local_member().get("extension"), Some("recorder"));
        a.set_metadata_with_ttl("lease", "1").unwrap();
        assert_eq!(a.local_member().get("lease"), Some("1"));
        assert!(a.delete_metadata_after_ttl("lease").unwrap());
        assert!(a.delete_metadata("extension").unwrap());
        assert!(a.node_state(a.id()).is_some());
        assert!(!stopped.load(Ordering::SeqCst));
        a.shutdown().await;
        assert!(stopped.load(Ordering::SeqCst));
    });
}

#[test]
fn a_port_in_use_is_a_bind_error_and_bad_settings_a_config_error() {
    smol::block_on(async {
        let taken = UdpSocket::bind(loopback()).unwrap();
        let addr = taken.local_addr().unwrap();
        let err = NodeBuilder::new("a", ConnectionConfig::new(addr, addr, Vec::<String>::new()))
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(err, ConnectError::Bind { addr: a, .. } if a == addr),
            "{err}"
        );
        let err = NodeBuilder::new(
            "",
            ConnectionConfig::new(loopback(), loopback(), Vec::<String>::new()),
        )
        .connect()
        .await
        .unwrap_err();
        assert!(matches!(err, ConnectError::InvalidConfig(_)));
    });
}

#[test]
fn seeds_may_be_host_names() {
    smol::block_on(async {
        let a = builder("a", &[]).connect().await.unwrap();
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
    });
}
