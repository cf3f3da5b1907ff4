//! # cohort-core
//!
//! The pure, runtime-free core of cohort, a cluster membership library: the state machines and
//! algorithms that let the nodes of a distributed system find each other, notice who is alive,
//! pick replicas and agree on a causally ordered clock.
//!
//! Nothing in this crate performs I/O, reads a clock, spawns a thread or draws OS randomness.
//! Time, wall-clock readings and random seeds are inputs; datagrams, events and deadlines are
//! outputs. That makes every algorithm here deterministic and testable with virtual time and
//! fixed seeds, and lets any event loop (the tokio driver `cohort-tokio`, the simulator, or
//! your own) embed it.
//!
//! - [`Node`]: one cluster node (gossip membership, clock, envelope, set-up and leave), the
//!   machine every loop drives; [`NodeConfig`] sets it up, [`Event`] is what it tells the
//!   application, [`Members`] is its membership snapshot.
//! - [`membership`]: chitchat's gossip protocol and phi-accrual failure detection as a state
//!   machine ([`membership::Membership`]).
//! - [`clock`]: a hybrid logical clock ([`Hlc`], and the lock-free [`SharedHlc`]) producing
//!   [`Timestamp`]s that are unique across nodes and respect causality.
//! - [`selector`]: replica selection over a snapshot of live members ([`Topology`]):
//!   data-center aware ([`DcAwareSelector`]), key affinity ([`RendezvousSelector`]) and random
//!   ([`RandomSelector`]), behind the public [`NodeSelector`] trait.
//! - [`wire`]: chitchat 0.13's gossip format and cohort's envelope.
//! - [`rpc`]: zero-copy RPC without a runtime: frames (rkyv archives behind a 48-byte header
//!   with the sender's clock and the call's deadline), the connection machine (multiplexed
//!   calls, deadlines, cancellation, bounds, keep-alive) and services
//!   ([`rpc::RpcService`], [`rpc::Handler`], a [`rpc::Registry`] changed at run time). The
//!   tokio driver runs them on TCP.
//! - [`handle`]: the runtime-free glue between a driver's node task and its handles: event
//!   fan-out ([`handle::EventBus`]), the latest snapshot ([`handle::MembersCell`]), selection,
//!   counters, builder settings and seeds.
//! - [`NodeId`]: node identity with generations.
//!
//! ## Your own event loop
//!
//! A loop owns the socket and one timer, and repeats: feed the node an input (a datagram, the
//! timer, a command), then [`Node::drain`] it (send the datagrams in order, hand over the
//! events, re-arm the timer for [`Drained::deadline`]). To stop, call [`Node::leave`] and go on
//! until [`Drained::left`] says the leave is over. The wall clock is read by the loop and
//! passed in as a [`WallTime`] (`WallTime::saturating_from(SystemTime::now())`). Here with a
//! blocking `std` socket, for a node alone that runs three rounds and leaves
//! (`examples/custom_loop.rs` joins a real cluster the same way):
//!
//! ```
//! use std::net::UdpSocket;
//! use std::time::{Duration, Instant, SystemTime};
//! use cohort_core::{Event, Node, NodeConfig, NodeId, Transmits, WallTime};
//! use cohort_core::node::generation_at;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let wall = || WallTime::saturating_from(SystemTime::now());
//! let socket = UdpSocket::bind("127.0.0.1:0")?;
//! // Build: an identity (a new generation at every start), then the settings.
//! let id = NodeId::new("node-1", generation_at(wall()), socket.local_addr()?);
//! let mut config = NodeConfig::new(id);
//! config.gossip_interval = Duration::from_millis(10);
//! config.seeds = vec!["127.0.0.1:7000".parse()?]; // nobody there: that is fine
//! let mut node = Node::new(config, Instant::now())?;
//!
//! let (mut out, mut events) = (Transmits::new(), Vec::<Event>::new());
//! let mut buf = vec![0u8; cohort_core::wire::MAX_DATAGRAM_SIZE + 1];
//! let mut drained = node.drain(wall(), &mut out, &mut events);
//! let started = Instant::now();
//! loop {
//!     // Send what the node produced, then act on its events.
//!     for t in &out {
//!         let _ = socket.send_to(&t.payload, t.destination);
//!     }
//!     out.clear();
//!     events.clear();
//!     if drained.left.is_some() {
//!         break; // the leave is over: close the socket
//!     }
//!     if started.elapsed() > Duration::from_millis(30) {
//!         node.leave(Instant::now());
//!     }
//!     // Wait for a datagram until the deadline; feed the node whichever comes first.
//!     let wait = drained.deadline.saturating_duration_since(Instant::now());
//!     socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
//!     match socket.recv_from(&mut buf) {
//!         Ok((n, from)) => {
//!             // Bad bytes are refused with an error and change nothing.
//!             let _ = node.handle_datagram(Instant::now(), wall(), from, &buf[..n]);
//!         }
//!         Err(_) => node.handle_timeout(Instant::now()),
//!     }
//!     drained = node.drain(wall(), &mut out, &mut events);
//! }
//! assert!(node.members().live_count() == 0, "a node that left is not live, even to itself");
//! # Ok(())
//! # }
//! ```
//!
//! The clock on its own:
//!
//! ```
//! use std::time::Duration;
//! use cohort_core::{Hlc, HlcConfig, NodeTag, WallTime};
//!
//! let mut a = Hlc::new(HlcConfig::new(NodeTag::new(1)));
//! let mut b = Hlc::new(HlcConfig::new(NodeTag::new(2)).with_max_drift(Duration::from_millis(500)));
//! let wall = WallTime::from_unix_millis(1_700_000_000_000)?;
//! let sent = a.now(wall)?;
//! // b's wall clock is 10 ms behind; receiving still orders b's next events after `sent`.
//! let received = b.observe(sent, WallTime::from_unix_millis(1_699_999_999_990)?)?;
//! assert!(received > sent);
//! # Ok::<(), cohort_core::ClockError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod auth;
pub mod clock;
mod event;
pub mod handle;
pub mod hash;
pub mod members;
pub mod membership;
pub mod node;
mod node_id;
mod random;
pub mod rpc;
pub mod selector;
pub mod wire;

pub use clock::{ClockError, Hlc, HlcConfig, NodeTag, SharedHlc, Timestamp, WallClock, WallTime};
pub use event::Event;
pub use members::{MemberCounts, Members, StatusCounts};
pub use membership::{KeyError, Member, MemberStatus, Transmit, Transmits};
pub use node::{ConfigError, Drained, LeaveOutcome, Node, NodeConfig};
pub use node_id::{NodeId, NodeIdRef};
/// The random number generator traits the selectors take ([`NodeSelector::select`]),
/// re-exported so that a selector of your own needs no other dependency.
pub use rand_core;
/// rkyv, the archive format of RPC messages, re-exported with the features the wire format
/// fixes.
pub use rkyv;
pub use selector::{
    Candidate, Consistency, DataCenter, DcAwareSelector, NodeSelector, RandomSelector,
    RendezvousSelector, SelectError, Topology,
};
