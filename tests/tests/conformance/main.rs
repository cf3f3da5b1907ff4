//! One conformance suite for both drivers: the behaviour a user of `cohort-tokio` or
//! `cohort-smol` relies on (membership, events, snapshots, selection, clock, metadata,
//! extensions, RPC semantics and errors, shutdown freeing the ports), written once in
//! `suite.rs` and compiled against each driver, so that neither can drift from the other. A
//! mixed cluster of tokio and smol nodes converges too.
//!
//! Real sockets on 127.0.0.1 only; every wait is bounded (conditions are awaited with a
//! deadline, never slept for).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use smol::Timer;
use smol::future::FutureExt as _;

mod mixed;

const WAIT: Duration = Duration::from_secs(10);
const INTERVAL: Duration = Duration::from_millis(100);

/// How long a whole test may take.
const TEST_BOUND: Duration = Duration::from_secs(60);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// `future`'s output, or a panic naming `what` after [`WAIT`]. Runtime-agnostic: smol's
/// timer runs on its own reactor thread when nothing else drives it.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    let timeout = async {
        Timer::after(WAIT).await;
        panic!("timed out waiting for {what}");
    };
    future.or(timeout).await
}

/// `test`, failing after [`TEST_BOUND`].
async fn bounded(test: impl Future<Output = ()>) {
    let timeout = async {
        Timer::after(TEST_BOUND).await;
        panic!("the test did not finish within {TEST_BOUND:?}");
    };
    test.or(timeout).await;
}

/// The cluster CA of every smol node in this binary (generated at run time; no key material
/// is committed).
static CA: LazyLock<cohort_smol::ClusterCa> =
    LazyLock::new(|| cohort_smol::ClusterCa::generate("conformance").expect("a CA"));

fn smol_tls(name: &str) -> cohort_smol::TlsConfig {
    CA.issue(name)
        .and_then(|cert| cert.tls_config(&CA))
        .expect("a node certificate")
}

/// The suite on the tokio driver: RPC on TCP.
mod tokio_driver {
    use super::*;
    use cohort_tokio as driver;

    fn run(test: impl Future<Output = ()>) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(bounded(test));
    }

    fn with_rpc(builder: NodeBuilder, _name: &str) -> NodeBuilder {
        builder
    }

    /// Whether nothing listens on `addr` any more (RPC is TCP here).
    fn rpc_port_free(addr: SocketAddr) -> bool {
        std::net::TcpListener::bind(addr).is_ok()
    }

    include!("suite.rs");
}

/// The suite on the smol driver: RPC on QUIC with mutual TLS.
mod smol_driver {
    use super::*;
    use cohort_smol as driver;

    fn run(test: impl Future<Output = ()>) {
        smol::block_on(bounded(test));
    }

    fn with_rpc(builder: NodeBuilder, name: &str) -> NodeBuilder {
        builder.tls(smol_tls(name))
    }

    /// Whether nothing listens on `addr` any more (RPC is QUIC, on UDP, here).
    fn rpc_port_free(addr: SocketAddr) -> bool {
        UdpSocket::bind(addr).is_ok()
    }

    include!("suite.rs");
}
