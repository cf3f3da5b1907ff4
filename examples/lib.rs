//! Runnable examples of cohort. Run them from the workspace root, e.g.
//! `cargo run --example cluster`.
//!
//! This library holds what the examples share and what needs no runtime, so that the tokio and
//! the smol version of an example differ only where the drivers do: [`show`] (a membership on
//! one line) and [`kv`] (the key-value store's messages, its last-writer-wins replica and the
//! RPC service serving it).

use cohort_core::Members;
use cohort_core::members::DATA_CENTER_KEY;

/// A membership on one line: `name(data center, status)` per member.
#[must_use]
pub fn show(members: &Members) -> String {
    members
        .all()
        .iter()
        .map(|m| {
            format!(
                "{}({}, {:?})",
                m.id.name(),
                m.get(DATA_CENTER_KEY).unwrap_or("?"),
                m.status
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub mod kv {
    //! The runtime-free half of the key-value examples (`kv` over TCP with tokio, `kv_quic`
    //! over QUIC with mutual TLS with smol): the messages, one node's replica (last writer
    //! wins, by HLC timestamp) and the `kv` RPC service. Services and handlers are core's
    //! traits, so both drivers serve the same [`KvService`].

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, PoisonError};

    use cohort_core::rkyv;
    use cohort_core::rpc::{Handler, Request, RpcService, ServiceRegistry, Status};
    use cohort_core::{NodeTag, Timestamp};

    /// A write: the key, the value and the writer's HLC timestamp (packed time and node tag).
    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug)]
    #[rkyv(crate = cohort_core::rkyv)]
    pub struct Put {
        /// The key.
        pub key: String,
        /// The value.
        pub value: String,
        /// The timestamp's packed time.
        pub time: u64,
        /// The timestamp's node tag.
        pub node: u64,
    }

    impl Put {
        /// `key = value`, stamped `stamp`.
        #[must_use]
        pub fn new(key: &str, value: &str, stamp: Timestamp) -> Self {
            Self {
                key: key.to_owned(),
                value: value.to_owned(),
                time: stamp.packed_time(),
                node: stamp.node().get(),
            }
        }

        /// What a replica stores for this write.
        #[must_use]
        pub fn stored(&self) -> Stored {
            Stored {
                value: self.value.clone(),
                time: self.time,
                node: self.node,
            }
        }
    }

    /// A read of one key.
    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug)]
    #[rkyv(crate = cohort_core::rkyv)]
    pub struct Get {
        /// The key.
        pub key: String,
    }

    /// A stored value with its timestamp.
    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
    #[rkyv(crate = cohort_core::rkyv)]
    pub struct Stored {
        /// The value.
        pub value: String,
        /// The timestamp's packed time.
        pub time: u64,
        /// The timestamp's node tag.
        pub node: u64,
    }

    impl Stored {
        /// The write's HLC timestamp.
        #[must_use]
        pub fn timestamp(&self) -> Timestamp {
            Timestamp::from_packed(self.time, NodeTag::new(self.node))
        }
    }

    /// The newer of two copies of a key (by timestamp), or whichever exists.
    #[must_use]
    pub fn newest(local: Option<Stored>, remote: Option<Stored>) -> Option<Stored> {
        match (local, remote) {
            (Some(l), Some(r)) => Some(if r.timestamp() > l.timestamp() { r } else { l }),
            (l, r) => l.or(r),
        }
    }

    /// One node's replica: key -> newest write.
    #[derive(Debug, Default)]
    pub struct Replica {
        data: Mutex<HashMap<String, Stored>>,
    }

    impl Replica {
        /// Keeps `stored` if it is newer than what the key holds. Returns whether it was kept.
        pub fn apply(&self, key: &str, stored: Stored) -> bool {
            let mut data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
            let newer = data
                .get(key)
                .is_none_or(|old| old.timestamp() < stored.timestamp());
            if newer {
                data.insert(key.to_owned(), stored);
            }
            newer
        }

        /// The newest write of `key` this replica holds.
        #[must_use]
        pub fn get(&self, key: &str) -> Option<Stored> {
            let data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
            data.get(key).cloned()
        }
    }

    /// The `kv` service every node serves: `put` applies a write to the replica, `get` reads
    /// it.
    #[derive(Debug)]
    pub struct KvService {
        replica: Arc<Replica>,
    }

    impl KvService {
        /// The service over `replica`.
        #[must_use]
        pub fn new(replica: Arc<Replica>) -> Self {
            Self { replica }
        }
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

    #[cfg(test)]
    mod tests {
        use super::*;

        fn stamp(time: u64) -> Timestamp {
            Timestamp::from_packed(time, NodeTag::new(1))
        }

        #[test]
        fn the_replica_keeps_the_newest_write() {
            let replica = Replica::default();
            assert!(replica.apply("k", Put::new("k", "new", stamp(20)).stored()));
            assert!(!replica.apply("k", Put::new("k", "old", stamp(10)).stored()));
            assert_eq!(replica.get("k").map(|s| s.value), Some("new".to_owned()));
            assert_eq!(replica.get("other"), None);
            let (old, new) = (
                Put::new("k", "old", stamp(10)).stored(),
                Put::new("k", "new", stamp(20)).stored(),
            );
            assert_eq!(
                newest(Some(old.clone()), Some(new.clone())),
                Some(new.clone())
            );
            assert_eq!(newest(Some(new.clone()), Some(old)), Some(new.clone()));
            assert_eq!(newest(None, Some(new.clone())), Some(new));
            assert_eq!(newest(None, None), None);
        }
    }
}
