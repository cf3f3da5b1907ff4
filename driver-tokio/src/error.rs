//! The driver's errors, one enum per operation ([`WaitError`](crate::WaitError), the same in
//! both drivers, is core's).

use std::net::SocketAddr;

use cohort_core::ConfigError;

/// Why [`NodeBuilder::connect`](crate::NodeBuilder::connect) failed. Nothing was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The gossip socket, or the RPC listener, could not be bound.
    #[error("cannot bind {addr}: {source}")]
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
