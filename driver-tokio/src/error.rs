//! The driver's errors, one enum per operation.

use std::net::SocketAddr;

use cohort_core::{ConfigError, Members};

/// Why [`NodeBuilder::connect`](crate::NodeBuilder::connect) failed. Nothing was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The gossip socket could not be bound.
    #[error("cannot bind the gossip socket to {addr}: {source}")]
    Bind {
        /// The listen address.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A setting is unusable.
    #[error("invalid node configuration: {0}")]
    InvalidConfig(#[from] ConfigError),
}

/// Why [`Node::wait_for_members`](crate::Node::wait_for_members) returned without the
/// condition holding.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The timeout passed; `last` is the membership at that moment.
    #[error("the membership did not reach the expected state in time ({} live of {} known)", last.live_count(), last.all().len())]
    Timeout {
        /// The last snapshot seen.
        last: Members,
    },
    /// The node shut down while waiting.
    #[error("the node shut down")]
    ShutDown,
}
