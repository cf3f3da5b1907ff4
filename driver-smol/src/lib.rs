//! # cohort-smol
//!
//! The smol driver of cohort: gossip on UDP and RPC on QUIC (quinn with its smol runtime, no
//! tokio runtime), with mutual TLS between the nodes of a cluster.
//!
//! **Under construction.** What is here so far is the first building block, mutual TLS for
//! the RPC connections:
//!
//! - [`ClusterCa`] makes a cluster's certificate authority and issues node certificates
//!   ([`NodeCertificate`]); it is meant for tests, examples and a command that makes
//!   certificates, and keys are always generated at run time, never shipped.
//! - [`TlsConfig`] loads what a node needs (the cluster CA certificate, its certificate chain
//!   and key) from PEM bytes or files, checking it up front and naming what is wrong.
//!
//! Both ends of every connection must present a certificate signed by the cluster CA, within
//! its validity period; every node certificate carries the DNS name
//! [`CLUSTER_SERVER_NAME`], which clients use as the server name since nodes dial each other
//! by address. The [`tls` module documentation](crate::tls) has the whole trust model.

pub mod tls;

#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the QUIC endpoint waits for the driver's node to start it"
    )
)]
mod rpc_quic;

pub use rpc_quic::{Response, RpcClient};

pub use tls::{
    ALPN_PROTOCOL, CLUSTER_SERVER_NAME, ClusterCa, DEFAULT_CA_VALIDITY, DEFAULT_NODE_VALIDITY,
    NodeCertificate, PemInput, PemOrigin, TlsConfig, TlsError,
};
