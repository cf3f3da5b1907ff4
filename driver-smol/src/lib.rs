//! # cohort-smol
//!
//! The smol driver of cohort: a cluster node that gossips over UDP, built around the
//! runtime-free [`cohort_core::Node`], with no tokio runtime anywhere in its tree. One task per
//! node feeds received datagrams and timer expiries into the core and sends what it returns;
//! everything else (member lists, events, replica selection, the clock) is read from what that
//! task publishes without waiting on it. The glue between the task and the handles (event
//! fan-out, snapshots, selection, counters, settings) is core's ([`cohort_core::handle`]), the
//! same as cohort-tokio's: the two drivers offer the same API.
//!
//! ```
//! use std::time::Duration;
//! use cohort_smol::{Consistency, ConnectionConfig, Event, NodeBuilder};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     let any = "127.0.0.1:0".parse()?;
//!     let a = NodeBuilder::new("a", ConnectionConfig::new(any, any, Vec::<String>::new()))
//!         .cluster_id("orders")
//!         .data_center("eu-west-1a")
//!         .gossip_interval(Duration::from_millis(100))
//!         .connect()
//!         .await?;
//!     let mut events = a.membership_events();
//!     let b = NodeBuilder::new("b", ConnectionConfig::new(any, any, [a.public_addr()]))
//!         .cluster_id("orders")
//!         .data_center("eu-west-1b")
//!         .gossip_interval(Duration::from_millis(100))
//!         .connect()
//!         .await?;
//!     // Wait until each node sees both as live.
//!     a.wait_for_members(|m| m.live_count() == 2, Duration::from_secs(10)).await?;
//!     b.wait_for_members(|m| m.live_count() == 2, Duration::from_secs(10)).await?;
//!     while let Some(event) = events.next().await {
//!         if let Event::Joined(member) = event {
//!             assert_eq!(&member.id, b.id());
//!             break;
//!         }
//!     }
//!     let replicas = a.select_nodes(Consistency::One)?;
//!     assert_eq!(replicas[0].id(), b.id());
//!     let stamp = a.clock().now();
//!     assert!(b.clock().observe(stamp)? > stamp);
//!     b.shutdown().await; // announce the departure, stop the task, close the socket
//!     a.shutdown().await;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! What is here: gossip membership (chitchat's protocol, with cohort's envelope, or bare in
//! chitchat-compatible mode), member snapshots and events, replica selection, the hybrid
//! logical clock, metadata, extensions and a graceful shutdown, with the same API as
//! cohort-tokio's (one conformance suite runs against both); and RPC over QUIC with mutual
//! TLS.
//!
//! ## RPC over QUIC, with mutual TLS
//!
//! A node given a [`TlsConfig`] ([`NodeBuilder::tls`]) serves and calls RPC over QUIC (quinn
//! on smol): one connection per peer, carrying core's frames, connection rules and services
//! exactly as cohort-tokio's TCP does. Both ends of every connection must present a
//! certificate signed by the cluster CA, within its validity period; a peer that does not is
//! refused, and both sides log why. Every node certificate carries the DNS name
//! [`CLUSTER_SERVER_NAME`], which clients use as the server name since nodes dial each other
//! by address. The [`tls` module documentation](crate::tls) has the whole trust model.
//!
//! - [`ClusterCa`] makes a cluster's certificate authority and issues node certificates
//!   ([`NodeCertificate`]), for tests, examples and `cohort certs`; keys are always generated
//!   at run time, never shipped.
//! - [`TlsConfig`] loads what a node needs (the cluster CA certificate, its certificate chain
//!   and key) from PEM bytes or files, checking it up front and naming what is wrong.
//!
//! ```
//! use std::time::Duration;
//! use cohort_smol::{
//!     ClusterCa, ConnectionConfig, Handler, NodeBuilder, Request, RpcService, ServiceRegistry,
//!     Status, rkyv,
//! };
//!
//! #[derive(rkyv::Archive, rkyv::Serialize)]
//! #[rkyv(crate = cohort_smol::rkyv)]
//! pub struct Add { pub a: u64, pub b: u64 }
//!
//! pub struct Calculator;
//!
//! impl RpcService for Calculator {
//!     fn service_name() -> &'static str { "calculator" }
//!     fn register_handlers(registry: &mut ServiceRegistry<Self>) { registry.add_handler::<Add>(); }
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
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     // A cluster CA and a certificate per node (from files in production:
//!     // `TlsConfig::from_pem_files`).
//!     let ca = ClusterCa::generate("orders")?;
//!     let tls = |name: &str| ca.issue(name).and_then(|cert| cert.tls_config(&ca));
//!     let any = "127.0.0.1:0".parse()?;
//!     let server = NodeBuilder::new("server", ConnectionConfig::new(any, any, Vec::<String>::new()))
//!         .tls(tls("server")?)
//!         .connect()
//!         .await?;
//!     let client = NodeBuilder::new("client", ConnectionConfig::new(any, any, Vec::<String>::new()))
//!         .tls(tls("client")?)
//!         .rpc_deadline(Some(Duration::from_secs(2)))
//!         .connect()
//!         .await?;
//!     server.add_rpc_service(Calculator)?;
//!     let sum = client
//!         .rpc_client::<Calculator>(server.rpc_addr())
//!         .call(&Add { a: 2, b: 40 })
//!         .await?;
//!     assert_eq!(sum.get().to_native(), 42);
//!     client.shutdown().await;
//!     server.shutdown().await;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! Every type in this crate's signatures is re-exported here: depending on `cohort-smol`
//! alone is enough. Streams are read with their own `next`, or with the re-exported
//! [`StreamExt`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod clock;
mod error;
mod extension;
mod node;
mod runtime;

pub mod tls;

mod rpc_quic;
mod signal;

pub mod admin {
    //! The admin service every node with RPC serves (core's, re-exported): its view of the
    //! membership, for tools such as `cohort members`.
    pub use cohort_core::admin::{
        ADMIN_SERVICE, AdminService, ArchivedMemberRow, ArchivedMembersReply,
        ArchivedMembersRequest, MemberRow, MembersReply, MembersRequest,
    };
}

pub use cohort_core::rpc::RpcTarget;
pub use rpc_quic::{Response, RpcClient};

pub use builder::{DEFAULT_RPC_DEADLINE, NodeBuilder};
pub use clock::Clock;
/// The shared glue of both drivers, from the core: settings, event and snapshot streams,
/// waits, counters.
pub use cohort_core::handle::{
    ConnectionConfig, KeyChanges, MembershipChanges, MembershipEvents, Statistics, WaitError,
};
pub use error::ConnectError;
pub use extension::ClusterExtension;
pub use node::Node;
/// Stream combinators for [`MembershipEvents`] and [`MembershipChanges`] (`next`, `filter`,
/// `take`, ...), re-exported from smol (futures-lite) so that no other import is needed.
pub use smol::stream::StreamExt;
pub use tls::{
    ALPN_PROTOCOL, CLUSTER_SERVER_NAME, ClusterCa, DEFAULT_CA_VALIDITY, DEFAULT_NODE_VALIDITY,
    NodeCertificate, PemInput, PemOrigin, TlsConfig, TlsError,
};

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
/// The random number generator traits [`NodeSelector::select`] takes: implement a selector of
/// your own with `cohort_smol::rand_core::Rng`, no other dependency needed.
pub use cohort_core::rand_core;
/// rkyv, which request and reply types derive (`rkyv::Archive`, `rkyv::Serialize`).
pub use cohort_core::rkyv;
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
