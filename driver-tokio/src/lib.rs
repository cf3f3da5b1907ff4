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
//! logical clock, metadata, extensions, zero-copy RPC over TCP, and a graceful shutdown.
//!
//! ## RPC
//!
//! Each node serves RPC on TCP at the address it publishes ([`RPC_ADDR_KEY`]; the gossip port
//! by default). A service names its messages; handlers read each request in place (validated
//! once with bytecheck, never copied); services are added and removed at run time; calls carry
//! a deadline and the caller's clock, and a dropped call is cancelled on the callee.
//!
//! ```
//! use std::time::Duration;
//! use cohort_tokio::{ConnectionConfig, Handler, NodeBuilder, Request, RpcService, ServiceRegistry, Status, rkyv};
//!
//! #[derive(rkyv::Archive, rkyv::Serialize)]
//! #[rkyv(crate = cohort_tokio::rkyv)]
//! struct Add {
//!     a: u64,
//!     b: u64,
//! }
//!
//! struct Calculator;
//!
//! impl RpcService for Calculator {
//!     fn service_name() -> &'static str {
//!         "calculator"
//!     }
//!     fn register_handlers(registry: &mut ServiceRegistry<Self>) {
//!         registry.add_handler::<Add>();
//!     }
//! }
//!
//! impl Handler<Add> for Calculator {
//!     const NAME: &'static str = "add";
//!     type Reply = u64;
//!     async fn on_message(&self, request: Request<'_, Add>) -> Result<u64, Status> {
//!         Ok(request.a.to_native() + request.b.to_native())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let any = "127.0.0.1:0".parse()?;
//! let server = NodeBuilder::new("server", ConnectionConfig::new(any, any, Vec::<String>::new()))
//!     .connect()
//!     .await?;
//! let client = NodeBuilder::new("client", ConnectionConfig::new(any, any, Vec::<String>::new()))
//!     .rpc_deadline(Some(Duration::from_secs(2)))
//!     .connect()
//!     .await?;
//! server.add_rpc_service(Calculator)?;
//! let sum = client
//!     .rpc_client::<Calculator>(server.rpc_addr())
//!     .call(&Add { a: 2, b: 40 })
//!     .await?;
//! assert_eq!(sum.get().to_native(), 42);
//! client.shutdown().await;
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Every type in this crate's signatures is re-exported here: depending on `cohort-tokio`
//! alone is enough. Events are read with [`MembershipEvents::next`] (or, as a stream, with the
//! re-exported [`StreamExt`]):
//!
//! ```no_run
//! # async fn run(node: cohort_tokio::Node) {
//! use cohort_tokio::Event;
//!
//! let mut events = node.membership_events();
//! while let Some(event) = events.next().await {
//!     match event {
//!         Event::Joined(member) => println!("{} joined", member.id),
//!         Event::Failed(member) | Event::Left(member) => println!("{} is gone", member.id),
//!         Event::Lagged { members, .. } => println!("resync from {} members", members.all().len()),
//!         _ => {}
//!     }
//! }
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
mod builder;
mod clock;
mod error;
mod extension;
mod node;
mod rpc_tcp;
mod runtime;
mod transport;

pub use builder::{DEFAULT_RPC_DEADLINE, NodeBuilder};
pub use clock::Clock;
/// The shared glue of both drivers, from the core: settings, event and snapshot streams,
/// waits, counters.
pub use cohort_core::handle::{
    ConnectionConfig, KeyChanges, MembershipChanges, MembershipEvents, Statistics, WaitError,
};
pub use error::ConnectError;
pub use extension::ClusterExtension;
pub use node::{Node, RpcTarget};
pub use rpc_tcp::{Response, RpcClient};
/// Stream combinators for [`MembershipEvents`] and [`MembershipChanges`] (`next`, `filter`,
/// `take`, ...), re-exported from `tokio-stream` so that no other import is needed.
pub use tokio_stream::StreamExt;
pub use transport::MemoryNetwork;

/// Authenticated gossip: a cluster's keys ([`NodeBuilder::keyring`]).
pub use cohort_core::auth::{ClusterKey, Keyring, KeyringError};
pub use cohort_core::members::{DATA_CENTER_KEY, DEFAULT_DATA_CENTER, RPC_ADDR_KEY};
pub use cohort_core::membership::{
    ENTRY_OVERHEAD, FailureDetectorConfig, Limit, LivenessPredicate, MembershipConfig, NodeState,
    RESERVED_KEY_PREFIX, StateLimits, VersionedValue,
};
pub use cohort_core::node::{
    DEFAULT_CLUSTER_ID, DEFAULT_GOSSIP_INTERVAL, DEFAULT_LEAVE_TIMEOUT, DEFAULT_PROBE_INTERVAL,
    LeaveOutcome, MAX_DURATION_SETTING, Protocol,
};
/// RPC: services, handlers, requests, statuses and limits, from the core.
pub use cohort_core::rpc::{
    self, Handler, Message, RegistryError, Request, RpcService, ServiceRegistry, Status, StatusCode,
};
pub use cohort_core::selector::DataCenterView;
pub use cohort_core::wire::{Compression, DeletionStatus, ProtocolVersion};
pub use cohort_core::{
    Candidate, ClockError, ConfigError, Consistency, DataCenter, DcAwareSelector, Event, HlcConfig,
    KeyError, Member, MemberStatus, Members, NodeConfig, NodeId, NodeSelector, NodeTag,
    RandomSelector, RendezvousSelector, SelectError, SharedHlc, Timestamp, Topology, WallClock,
    WallTime,
};
/// The `Stream` trait the event and snapshot streams implement.
pub use futures_core::Stream;
/// The random number generator traits [`NodeSelector::select`] takes: implement a selector of
/// your own with `cohort_tokio::rand_core::Rng`, no other dependency needed.
pub use rand_core;
/// rkyv, which request and reply types derive (`rkyv::Archive`, `rkyv::Serialize`).
pub use rkyv;
