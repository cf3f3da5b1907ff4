//! Tests of what only the tokio driver has: its in-memory network. The behaviour both drivers
//! share (membership, events, snapshots, selection, clock, metadata, extensions, RPC,
//! shutdown) is tested once for both, by the conformance suite in `tests/tests/conformance/`.
//! Every wait is bounded.

use std::net::SocketAddr;
use std::time::Duration;

use cohort_tokio::{ConnectionConfig, MemberStatus, MemoryNetwork, Node, NodeBuilder};

const WAIT: Duration = Duration::from_secs(10);
const INTERVAL: Duration = Duration::from_millis(100);

async fn all_live(nodes: &[&Node], n: usize) {
    for node in nodes {
        node.wait_for_members(|m| m.live_count() == n, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{} did not see {n} live: {e}", node.id()));
    }
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
