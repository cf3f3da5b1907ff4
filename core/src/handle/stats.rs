//! A node's traffic counters.
//!
//! Owns [`Counters`] (atomics the node's task bumps) and [`Statistics`] (what applications
//! read). It never does I/O.

use std::sync::atomic::{AtomicU64, Ordering};

/// Traffic counters of a node since it started (a driver's `Node::statistics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Statistics {
    /// Gossip datagrams sent.
    pub datagrams_sent: u64,
    /// Bytes of gossip sent (UDP payloads).
    pub bytes_sent: u64,
    /// Gossip datagrams received.
    pub datagrams_received: u64,
    /// Bytes of gossip received (UDP payloads).
    pub bytes_received: u64,
    /// Received datagrams that did not decode (and were ignored).
    pub decode_errors: u64,
    /// Datagrams the socket refused to send.
    pub send_errors: u64,
    /// The most bytes any RPC connection held waiting to be written (its replies and calls):
    /// a connection stops reading from a peer past
    /// [`max_buffered`](crate::rpc::ConnectionConfig::max_buffered), so this stays near it
    /// however the peer behaves. 0 on a node without RPC.
    pub rpc_send_buffer_peak: u64,
    /// Messages from nodes of another cluster.
    pub bad_cluster: u64,
    /// Timestamps the clock refused (too far ahead).
    pub clock_skew: u64,
    /// Datagrams dropped for a missing or wrong authentication tag (also counted in
    /// `decode_errors`).
    pub unauthenticated: u64,
    /// Messages part of which was not stored because it broke a bound of
    /// [`NodeConfig::limits`](crate::NodeConfig::limits).
    pub over_limit: u64,
    /// Occurrences of bad input held back rather than reported as an event of their own (see
    /// [`NodeConfig::diagnostic_interval`](crate::NodeConfig::diagnostic_interval)).
    pub diagnostics_suppressed: u64,
}

/// The counters a node's task keeps, readable from any thread without a lock.
#[derive(Debug, Default)]
pub struct Counters {
    datagrams_sent: AtomicU64,
    bytes_sent: AtomicU64,
    datagrams_received: AtomicU64,
    bytes_received: AtomicU64,
    decode_errors: AtomicU64,
    send_errors: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn usize_to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Counters {
    /// Zero everywhere.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A datagram of `bytes` bytes was sent.
    pub fn sent(&self, bytes: usize) {
        add(&self.datagrams_sent, 1);
        add(&self.bytes_sent, usize_to_u64(bytes));
    }

    /// The socket refused to send a datagram.
    pub fn send_failed(&self) {
        add(&self.send_errors, 1);
    }

    /// A datagram of `bytes` bytes was received.
    pub fn received(&self, bytes: usize) {
        add(&self.datagrams_received, 1);
        add(&self.bytes_received, usize_to_u64(bytes));
    }

    /// A received datagram did not decode.
    pub fn decode_failed(&self) {
        add(&self.decode_errors, 1);
    }

    /// The counters now, with the RPC send buffer peak the driver measured and the node's
    /// counts of bad input ([`Node::diagnostics`](crate::Node::diagnostics)).
    #[must_use]
    pub fn statistics(
        &self,
        rpc_send_buffer_peak: u64,
        diagnostics: crate::membership::Diagnostics,
    ) -> Statistics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Statistics {
            datagrams_sent: get(&self.datagrams_sent),
            bytes_sent: get(&self.bytes_sent),
            datagrams_received: get(&self.datagrams_received),
            bytes_received: get(&self.bytes_received),
            decode_errors: get(&self.decode_errors),
            send_errors: get(&self.send_errors),
            rpc_send_buffer_peak,
            bad_cluster: diagnostics.bad_cluster,
            clock_skew: diagnostics.clock_skew,
            unauthenticated: diagnostics.unauthenticated,
            over_limit: diagnostics.over_limit,
            diagnostics_suppressed: diagnostics.suppressed,
        }
    }
}
