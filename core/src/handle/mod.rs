//! What the handles of a running node share with the node's task, without a runtime.
//!
//! A driver (cohort-tokio, cohort-smol, or a loop of your own) runs [`Node`](crate::Node) in
//! one task and gives applications cheap handles that read what that task publishes. Every
//! piece of that glue that needs no runtime lives here, once, so that the drivers keep only
//! sockets, timers and tasks:
//!
//! - [`EventBus`]: the fan-out of [`Event`](crate::Event)s to any number of readers
//!   ([`MembershipEvents`], [`KeyChanges`]), each with its own bounded window; a reader that
//!   falls behind is told so with [`Event::Lagged`](crate::Event::Lagged) and a fresh snapshot.
//! - [`MembersCell`]: the latest [`Members`](crate::Members) snapshot, readers that await a
//!   newer one ([`MembershipChanges`], [`MembersCell::wait_for_members`]) and the end of the
//!   node.
//! - [`Selection`]: the node's selector, its seeded generator and the topology cache behind a
//!   driver's `select_nodes`, `select_for_key` and `topology`.
//! - [`Counters`] and [`Statistics`]: a node's traffic counters.
//! - [`NodeSettings`] and [`ConnectionConfig`]: a driver builder's settings and their mapping
//!   to a [`NodeConfig`](crate::NodeConfig); [`SeedSet`]: seeds as configured and the
//!   addresses last resolved for them (the resolution itself is the driver's).
//!
//! Wake-ups use [`std::task::Waker`]s and a `std` mutex, held for a few instructions and never
//! across an await or a wake. Nothing here does I/O, reads a clock, spawns or sleeps: a
//! timeout is a timer future the driver passes in.

mod bus;
mod cell;
mod selection;
mod settings;
mod stats;
mod wakers;

pub use bus::{EventBus, KeyChanges, MembershipEvents};
pub use cell::{MembersCell, MembershipChanges, WaitError};
pub use selection::Selection;
pub use settings::{ConnectionConfig, NodeSettings, Seed, SeedSet, TuneNode, parse_seeds};
pub use stats::{Counters, Statistics};

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`; a panic while it was held left plain data behind, which stays usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
