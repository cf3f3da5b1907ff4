//! # cohort-tokio
//!
//! The tokio driver of cohort: a cluster node that gossips over UDP, built around the
//! runtime-free [`cohort_core::Node`]. One task per node feeds received datagrams and timer
//! expiries into the core and sends what it returns; everything else (member lists, events,
//! replica selection, the clock) is read from that task's published state without waiting on
//! it.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use cohort_tokio::{Consistency, ConnectionConfig, NodeBuilder};
//!
//! let addr = "127.0.0.1:7000".parse()?;
//! let node = NodeBuilder::new("node-1", ConnectionConfig::new(addr, addr, ["127.0.0.1:7001"]))
//!     .cluster_id("orders")
//!     .data_center("eu-west-1a")
//!     .connect()
//!     .await?;
//! // Wait until this node sees two other live members.
//! node.wait_for_members(|m| m.live_count() >= 3, Duration::from_secs(10)).await?;
//! let replicas = node.select_nodes(Consistency::One)?;
//! let stamp = node.clock().now();
//! println!("{} replicas, clock {stamp}", replicas.len());
//! node.shutdown().await; // announce the departure, stop the task, close the socket
//! # Ok(())
//! # }
//! ```
//!
//! What is here: gossip membership (chitchat's protocol, with cohort's envelope, or bare in
//! chitchat-compatible mode), member snapshots and events, replica selection, the hybrid
//! logical clock, metadata, extensions and a graceful shutdown. Each node publishes the address
//! its RPC server will listen on ([`RPC_ADDR_KEY`]); the RPC layer itself is not built yet.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod clock;
mod error;
mod events;
mod extension;
mod node;
mod runtime;

pub use builder::{ConnectionConfig, DEFAULT_CLUSTER_ID, DEFAULT_GOSSIP_INTERVAL, NodeBuilder};
pub use clock::Clock;
pub use error::{ConnectError, MetadataError, WaitError};
pub use events::MembershipEvents;
pub use extension::ClusterExtension;
pub use node::{Node, Statistics};

pub use cohort_core::members::{
    ClusterEvent, DATA_CENTER_KEY, DEFAULT_DATA_CENTER, Members, RPC_ADDR_KEY,
};
pub use cohort_core::membership::{FailureDetectorConfig, Member, MemberStatus};
pub use cohort_core::wire::ProtocolVersion;
pub use cohort_core::{
    Candidate, Consistency, DcAwareSelector, NodeId, NodeSelector, RandomSelector, SelectError,
    Timestamp, Topology,
};
