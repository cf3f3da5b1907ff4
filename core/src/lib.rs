//! # cohort-core
//!
//! The pure, runtime-free core of cohort, a cluster membership library: the state machines and
//! algorithms that let the nodes of a distributed system agree on a causally ordered clock and
//! pick replicas, with gossip membership and an RPC layer to follow.
//!
//! Nothing in this crate performs I/O, reads a clock, spawns a thread or draws OS randomness.
//! Time, wall-clock readings and random number generators are inputs; everything the crate
//! computes is returned to the caller. That makes every algorithm here deterministic and
//! testable with virtual time and fixed seeds, and lets any event loop (the tokio and smol
//! drivers, or your own) embed it.
//!
//! What exists today:
//!
//! - [`clock`]: a hybrid logical clock ([`Hlc`], and the lock-free [`SharedHlc`]) producing
//!   [`Timestamp`]s that are unique across nodes and respect causality.
//! - [`selector`]: replica selection over a snapshot of live members ([`Topology`]):
//!   data-center aware ([`DcAwareSelector`]), key affinity ([`RendezvousSelector`]) and random
//!   ([`RandomSelector`]), behind the public [`NodeSelector`] trait.
//! - [`membership`]: chitchat's gossip protocol and phi-accrual failure detection as a state
//!   machine ([`membership::Membership`]); [`Node`] adds the clock and cohort's envelope, and
//!   is what drivers run; [`Members`] is the snapshot they publish.
//! - [`wire`]: chitchat 0.13's gossip format and cohort's envelope.
//! - [`NodeId`]: node identity with generations.
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

pub mod clock;
mod event;
pub mod hash;
pub mod members;
pub mod membership;
pub mod node;
mod node_id;
mod random;
pub mod selector;
pub mod wire;

pub use clock::{ClockError, Hlc, HlcConfig, NodeTag, SharedHlc, Timestamp, WallTime};
pub use event::Event;
pub use members::Members;
pub use membership::{KeyError, Member, MemberStatus, Transmit, Transmits};
pub use node::{ConfigError, Drained, LeaveOutcome, Node, NodeConfig};
pub use node_id::{NodeId, NodeIdRef};
pub use selector::{
    Candidate, Consistency, DataCenter, DcAwareSelector, NodeSelector, RandomSelector,
    RendezvousSelector, SelectError, Topology,
};
