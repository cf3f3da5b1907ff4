//! Node-wide bounds on the RPC a node serves, beside each connection's own
//! ([`ConnectionConfig`](super::ConnectionConfig)).

/// How much RPC a node serves at once, over all its connections. A driver refuses connections
/// past [`max_connections`](Self::max_connections) (closed at once) and answers calls past
/// [`max_calls_in_flight`](Self::max_calls_in_flight) with
/// [`StatusCode::Unavailable`](super::StatusCode::Unavailable) without running them
/// ([`Registry::set_max_in_flight`](super::Registry::set_max_in_flight)).
///
/// With [`ConnectionConfig`](super::ConnectionConfig)'s bounds per connection, a node's RPC
/// memory is bounded however many peers call it and however they behave.
///
/// ```
/// use cohort_core::rpc::ServerLimits;
///
/// let mut limits = ServerLimits::default();
/// limits.max_connections = 256;
/// assert_eq!(limits.max_calls_in_flight, 4_096);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// The most connections from peers served at once. Default 1,024.
    pub max_connections: usize,
    /// The most calls served at once, all connections together. Default 4,096.
    pub max_calls_in_flight: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1_024,
            max_calls_in_flight: 4_096,
        }
    }
}
