//! The key-value store of the `kv` example on the smol driver, with RPC over QUIC and mutual
//! TLS: a `ClusterExtension` where every node serves a `kv` RPC service; a write is stamped with the cluster clock (HLC) and sent to the
//! local store and a quorum of replicas picked by the data-center aware selector; each replica
//! keeps the newest write per key (last writer wins, by HLC timestamp); a read asks one other
//! replica and takes the newer of its copy and the local one.
//!
//! Run it with `cargo run --example kv_quic`: three nodes on loopback write concurrently to the
//! same key, and every read agrees on the newest value. No tokio runtime: `smol::block_on`.
//!
//! Mutual TLS: a cluster CA is generated at start ([`ClusterCa`]), and each node gets a
//! certificate it signed ([`NodeBuilder::tls`]); nothing is written to disk. Every RPC
//! connection is then authenticated both ways (a node whose certificate another CA signed is
//! refused, calling or called). The QUIC endpoint takes a UDP port of its own, published in
//! the membership so that peers find it.
//!
//! The messages, the replica and the service need no runtime and live in the examples' library
//! (`cohort_examples::kv`), shared with `kv` (the same store over TCP, on tokio); what is here
//! is the smol side: the extension, the client and the demonstration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cohort_examples::kv::{Get, KvService, Put, Replica, Stored, newest};
use cohort_smol::{
    ClusterCa, ClusterExtension, ConnectionConfig, Consistency, Node, NodeBuilder, Status,
    StatusCode, Timestamp,
};

/// The extension: registers the service and hands back the store's client side.
struct KvExtension;

/// A node's key-value store: writes to a quorum, reads from one replica.
#[derive(Clone)]
pub struct Kv {
    node: Node,
    replica: Arc<Replica>,
}

impl ClusterExtension for KvExtension {
    type Output = Kv;
    type Error = cohort_smol::RegistryError;

    async fn init_extension(self, node: &Node) -> Result<Kv, Self::Error> {
        let replica = Arc::new(Replica::default());
        node.add_rpc_service(KvService::new(Arc::clone(&replica)))?;
        Ok(Kv {
            node: node.clone(),
            replica,
        })
    }
}

impl Kv {
    /// Writes `key = value` stamped with the cluster clock, here and on a quorum of replicas.
    pub async fn put(&self, key: &str, value: &str) -> Result<Timestamp, Status> {
        let stamp = self.node.clock().now();
        let put = Put::new(key, value, stamp);
        self.replica.apply(key, put.stored());
        let replicas = self
            .node
            .select_nodes(Consistency::Quorum)
            .map_err(|e| Status::new(StatusCode::Unavailable, e.to_string()))?;
        for replica in &replicas {
            self.node
                .rpc_client::<KvService>(replica)
                .call(&put)
                .await?;
        }
        Ok(stamp)
    }

    /// Reads `key`: the local copy and one other replica's (the selector's pick), newest wins.
    /// With three nodes a write reaches two (itself and a quorum of one other) and a read sees
    /// two: 2 + 2 > 3, so every read sees the newest write.
    pub async fn get(&self, key: &str) -> Result<Option<Stored>, Status> {
        let local = self.replica.get(key);
        let one = self
            .node
            .select_nodes(Consistency::One)
            .map_err(|e| Status::new(StatusCode::Unavailable, e.to_string()))?;
        let Some(replica) = one.first() else {
            return Ok(local);
        };
        let remote: Option<Stored> = self
            .node
            .rpc_client::<KvService>(replica)
            .call(&Get {
                key: key.to_owned(),
            })
            .await?
            .deserialize()?;
        Ok(newest(local, remote))
    }
}

/// Starts a node certified by `ca`.
async fn start(
    name: &str,
    ca: &ClusterCa,
    seeds: &[SocketAddr],
) -> Result<Node, Box<dyn std::error::Error>> {
    let tls = ca.issue(name)?.tls_config(ca)?;
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let node = NodeBuilder::new(name, ConnectionConfig::new(any, any, seeds))
        .cluster_id("kv-example")
        .gossip_interval(Duration::from_millis(100))
        .tls(tls)
        .connect()
        .await?;
    Ok(node)
}

/// Three nodes; two writes to one key from different nodes; every node's read agrees.
async fn demo() -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    // The cluster's CA, made now and kept in memory: it certifies the three nodes.
    let ca = ClusterCa::generate("kv-example")?;
    let a = start("kv-a", &ca, &[]).await?;
    let seeds = [a.public_addr()];
    let b = start("kv-b", &ca, &seeds).await?;
    let c = start("kv-c", &ca, &seeds).await?;
    for node in [&a, &b, &c] {
        println!(
            "{} gossips on {}, serves RPC over QUIC on {}",
            node.id().name(),
            node.public_addr(),
            node.rpc_addr()
        );
    }
    let mut stores = Vec::new();
    for node in [&a, &b, &c] {
        stores.push(node.add_extension(KvExtension).await?);
        node.wait_for_members(|m| m.live_count() == 3, Duration::from_secs(10))
            .await?;
    }
    let first = stores[0].put("color", "red").await?;
    // kv-c reads before it writes (read, then write): the reply's frame carries a clock that
    // has seen kv-a's write, so kv-c's write is stamped after it whichever replicas the
    // selector picked. Without that, two writes in the same millisecond from nodes that never
    // heard of each other's would be ordered by their node tags, not by when they were made.
    let _ = stores[2].get("color").await?;
    let second = stores[2].put("color", "blue").await?;
    println!("kv-a wrote red at {first}; kv-c wrote blue at {second} (later: it wins)");
    let mut reads = Vec::new();
    for (name, store) in ["kv-a", "kv-b", "kv-c"].iter().zip(&stores) {
        let value = store
            .get("color")
            .await?
            .map_or_else(|| "(none)".to_owned(), |s| s.value);
        println!("{name} reads color = {value}");
        reads.push(((*name).to_owned(), value));
    }
    for node in [&a, &b, &c] {
        node.shutdown().await;
    }
    Ok(reads)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    smol::block_on(demo())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Concurrent writes from two nodes: every node reads the later one (real sockets on
    /// loopback, QUIC with mutual TLS, bounded waits).
    #[test]
    fn the_last_writer_wins_everywhere() {
        let reads = smol::block_on(super::demo()).expect("the demonstration runs");
        assert_eq!(reads.len(), 3);
        assert!(reads.iter().all(|(_, value)| value == "blue"), "{reads:?}");
    }
}
