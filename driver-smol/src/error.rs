//! The driver's errors ([`WaitError`](crate::WaitError), the same in both drivers, is core's).

use std::net::SocketAddr;

use cohort_core::ConfigError;

/// Why [`NodeBuilder::connect`](crate::NodeBuilder::connect) failed. Nothing was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The gossip socket, or RPC's QUIC socket, could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The listen address.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The TLS configuration was refused by the QUIC stack.
    #[error("the TLS configuration is unusable: {0}")]
    Tls(crate::TlsError),
    /// A setting is unusable.
    #[error("invalid node configuration: {0}")]
    InvalidConfig(#[from] ConfigError),
}
