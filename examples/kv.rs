//! A small replicated key-value store built on cohort, as a `ClusterExtension`: every node
//! serves a `kv` RPC service; a write is stamped with the cluster clock (HLC) and sent to the
//! local store and a quorum of replicas picked by the data-center aware selector; each replica
//! keeps the newest write per key (last writer wins, by HLC timestamp); a read asks one other
//! replica and takes the newer of its copy and the local one.
//!
//! Run it with `cargo run --example kv`: three nodes on loopback write concurrently to the same
//! key, and every read agrees on the newest value.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_tokio::{
    ClusterExtension, ConnectionConfig, Consistency, Handler, Node, NodeBuilder, NodeTag, Request,
    RpcService, ServiceRegistry, Status, StatusCode, Timestamp, rkyv,
};

/// A write: the key, the value and the writer's HLC timestamp (packed time and node tag).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug)]
#[rkyv(crate = cohort_tokio::rkyv)]
pub struct Put {
    key: String,
    value: String,
    time: u64,
    node: u64,
}

/// A read of one key.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug)]
#[rkyv(crate = cohort_tokio::rkyv)]
pub struct Get {
    key: String,
}

/// A stored value with its timestamp.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = cohort_tokio::rkyv)]
pub struct Stored {
    value: String,
    time: u64,
    node: u64,
}

impl Stored {
    fn timestamp(&self) -> Timestamp {
        Timestamp::from_packed(self.time, NodeTag::new(self.node))
    }
}

/// One node's replica: key -> newest write.
#[derive(Default)]
struct Replica {
    data: Mutex<HashMap<String, Stored>>,
}

impl Replica {
    /// Keeps `stored` if it is newer than what the key holds. Returns whether it was kept.
    fn apply(&self, key: &str, stored: Stored) -> bool {
        let mut data = self
            .data
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let newer = data
            .get(key)
            .is_none_or(|old| old.timestamp() < stored.timestamp());
        if newer {
            data.insert(key.to_owned(), stored);
        }
        newer
    }

    fn get(&self, key: &str) -> Option<Stored> {
        let data = self
            .data
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        data.get(key).cloned()
    }
}

/// The `kv` service every node serves.
struct KvService {
    replica: Arc<Replica>,
}

impl RpcService for KvService {
    fn service_name() -> &'static str {
        "kv"
    }
    fn register_handlers(registry: &mut ServiceRegistry<Self>) {
        registry.add_handler::<Put>();
        registry.add_handler::<Get>();
    }
}

impl Handler<Put> for KvService {
    const NAME: &'static str = "put";
    type Reply = bool;
    async fn on_message(&self, put: Request<'_, Put>) -> Result<bool, Status> {
        let stored = Stored {
            value: put.value.as_str().to_owned(),
            time: put.time.to_native(),
            node: put.node.to_native(),
        };
        Ok(self.replica.apply(put.key.as_str(), stored))
    }
}

impl Handler<Get> for KvService {
    const NAME: &'static str = "get";
    type Reply = Option<Stored>;
    async fn on_message(&self, get: Request<'_, Get>) -> Result<Option<Stored>, Status> {
        Ok(self.replica.get(get.key.as_str()))
    }
}

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
    type Error = cohort_tokio::RegistryError;

    async fn init_extension(self, node: &Node) -> Result<Kv, Self::Error> {
        let replica = Arc::new(Replica::default());
        node.add_rpc_service(KvService {
            replica: Arc::clone(&replica),
        })?;
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
        let put = Put {
            key: key.to_owned(),
            value: value.to_owned(),
            time: stamp.packed_time(),
            node: stamp.node().get(),
        };
        self.replica.apply(
            key,
            Stored {
                value: put.value.clone(),
                time: put.time,
                node: put.node,
            },
        );
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
        Ok(match (local, remote) {
            (Some(l), Some(r)) => Some(if r.timestamp() > l.timestamp() { r } else { l }),
            (l, r) => l.or(r),
        })
    }
}

async fn start(name: &str, seeds: &[SocketAddr]) -> Result<Node, cohort_tokio::ConnectError> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    NodeBuilder::new(name, ConnectionConfig::new(any, any, seeds))
        .cluster_id("kv-example")
        .gossip_interval(Duration::from_millis(100))
        .connect()
        .await
}

/// Three nodes; two writes to one key from different nodes; every node's read agrees.
async fn demo() -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    let a = start("kv-a", &[]).await?;
    let seeds = [a.public_addr()];
    let b = start("kv-b", &seeds).await?;
    let c = start("kv-c", &seeds).await?;
    let mut stores = Vec::new();
    for node in [&a, &b, &c] {
        stores.push(node.add_extension(KvExtension).await?);
        node.wait_for_members(|m| m.live_count() == 3, Duration::from_secs(10))
            .await?;
    }
    let first = stores[0].put("color", "red").await?;
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    demo().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Concurrent writes from two nodes: every node reads the later one (real sockets on
    /// loopback, bounded waits).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_last_writer_wins_everywhere() {
        let reads = super::demo().await.expect("the demonstration runs");
        assert_eq!(reads.len(), 3);
        assert!(reads.iter().all(|(_, value)| value == "blue"), "{reads:?}");
    }
}
