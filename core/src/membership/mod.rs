//! Gossip membership: chitchat's Scuttlebutt anti-entropy with phi-accrual failure detection.
//!
//! Owns the membership state machine ([`Membership`]), its configuration, its public value
//! types ([`Member`], [`MemberStatus`]), outgoing datagrams ([`Transmit`], [`Transmits`]), the
//! per-node state and its exchange rules ([`state`]) and the failure detector
//! ([`failure_detector`]). Nothing here does I/O, reads a clock or draws OS randomness: time is
//! an argument, randomness comes from a generator seeded by the configuration, and datagrams
//! and events are returned.

pub mod cohort_mode;
mod config;
pub(crate) mod diagnostics;
mod events;
pub mod failure_detector;
mod machine;
mod member;
pub mod state;
mod transmit;

pub use config::{ENTRY_OVERHEAD, Limit, LivenessPredicate, MembershipConfig, StateLimits};
pub use diagnostics::Diagnostics;
pub use failure_detector::{FailureDetector, FailureDetectorConfig, Liveness, NodeDetector};
pub use machine::Membership;
pub use member::{
    KeyError, LEAVING_KEY, Member, MemberStatus, RESERVED_KEY_PREFIX, is_reserved_key,
};
pub use state::{Applied, ClusterState, NodeState, Refused, Staleness, VersionedValue};
pub use transmit::{Transmit, Transmits};
