//! Where the node's gossip travels: a UDP socket, or an in-memory network for nodes in one
//! process ([`MemoryNetwork`]), which lets applications test their extensions and logic with
//! real nodes and no sockets (as chitchat's `ChannelTransport` did for its users).
//!
//! Owns the socket abstraction of the node's loop. It does no protocol work.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Datagrams waiting for one in-memory endpoint at most; more are dropped, as a full socket
/// buffer drops them.
const MEMORY_QUEUE: usize = 1_024;

/// The first port handed out for port 0 on an in-memory network.
const FIRST_EPHEMERAL_PORT: u16 = 49_152;

type Datagram = (SocketAddr, Vec<u8>);

#[derive(Default)]
struct Endpoints {
    senders: HashMap<SocketAddr, mpsc::Sender<Datagram>>,
    next_port: u16,
}

/// An in-memory network: nodes built with
/// [`NodeBuilder::memory_network`](crate::NodeBuilder::memory_network) on the same
/// `MemoryNetwork` gossip with each other
/// through it, in one process, with the same API and behaviour as over UDP (addresses,
/// seeds, a datagram to an address nobody holds is lost), and no socket at all.
///
/// Cheap to clone; clones are the same network.
///
/// ```
/// use std::time::Duration;
/// use cohort_tokio::{ConnectionConfig, MemoryNetwork, NodeBuilder};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let net = MemoryNetwork::new();
/// let (a_addr, b_addr) = ("10.0.0.1:7000".parse()?, "10.0.0.2:7000".parse()?);
/// let a = NodeBuilder::new("a", ConnectionConfig::new(a_addr, a_addr, Vec::<String>::new()))
///     .memory_network(&net)
///     .gossip_interval(Duration::from_millis(50))
///     .connect()
///     .await?;
/// let b = NodeBuilder::new("b", ConnectionConfig::new(b_addr, b_addr, [a_addr]))
///     .memory_network(&net)
///     .gossip_interval(Duration::from_millis(50))
///     .connect()
///     .await?;
/// a.wait_for_members(|m| m.live_count() == 2, Duration::from_secs(10)).await?;
/// b.shutdown().await;
/// a.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    endpoints: Arc<Mutex<Endpoints>>,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryNetwork")
            .field("endpoints", &self.lock().senders.len())
            .finish()
    }
}

impl MemoryNetwork {
    /// An empty network.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Endpoints> {
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `payload` to `to` as if from `from` (to feed a node anything, in tests). Returns
    /// whether an endpoint holds `to` and had room for it.
    pub fn send(&self, from: SocketAddr, to: SocketAddr, payload: &[u8]) -> bool {
        let sender = self.lock().senders.get(&to).cloned();
        sender.is_some_and(|s| s.try_send((from, payload.to_vec())).is_ok())
    }

    /// Whether a node (an endpoint) holds `addr` now.
    #[must_use]
    pub fn is_bound(&self, addr: SocketAddr) -> bool {
        self.lock().senders.contains_key(&addr)
    }

    /// Takes `addr` (a free port of its IP when its port is 0).
    pub(crate) fn bind(&self, mut addr: SocketAddr) -> io::Result<MemoryEndpoint> {
        let mut endpoints = self.lock();
        if addr.port() == 0 {
            let start = endpoints.next_port.max(FIRST_EPHEMERAL_PORT);
            let free = (start..=u16::MAX)
                .chain(FIRST_EPHEMERAL_PORT..start)
                .find(|&p| {
                    !endpoints
                        .senders
                        .contains_key(&SocketAddr::new(addr.ip(), p))
                })
                .ok_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, "no free port"))?;
            endpoints.next_port = free.wrapping_add(1);
            addr.set_port(free);
        }
        if endpoints.senders.contains_key(&addr) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is taken on this memory network"),
            ));
        }
        let (tx, rx) = mpsc::channel(MEMORY_QUEUE);
        endpoints.senders.insert(addr, tx);
        Ok(MemoryEndpoint {
            addr,
            rx,
            network: self.clone(),
        })
    }
}

/// One node's place on a [`MemoryNetwork`]; gives its address back when dropped.
pub(crate) struct MemoryEndpoint {
    addr: SocketAddr,
    rx: mpsc::Receiver<Datagram>,
    network: MemoryNetwork,
}

impl Drop for MemoryEndpoint {
    fn drop(&mut self) {
        self.network.lock().senders.remove(&self.addr);
    }
}

/// The node's gossip socket.
pub(crate) enum GossipSocket {
    Udp(UdpSocket),
    Memory(MemoryEndpoint),
}

impl GossipSocket {
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Udp(socket) => socket.local_addr(),
            Self::Memory(endpoint) => Ok(endpoint.addr),
        }
    }

    /// The next datagram (cut to `buf`'s length, as UDP cuts it).
    pub(crate) async fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match self {
            Self::Udp(socket) => socket.recv_from(buf).await,
            Self::Memory(endpoint) => match endpoint.rx.recv().await {
                Some((from, payload)) => Ok((copy_cut(buf, &payload), from)),
                // The network holds the sender while the endpoint lives: not reached.
                None => std::future::pending().await,
            },
        }
    }

    /// A datagram already received, or `WouldBlock`.
    pub(crate) fn try_recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match self {
            // tokio's own `try_recv_from` reads only once its reactor has seen the socket
            // readable: a datagram that arrived since its last poll would wait for the next
            // turn (a peer's departure, just before our own leave, would go unseen). A
            // duplicate of the descriptor reads what the kernel holds now (the socket is
            // non-blocking: `WouldBlock` when it holds nothing). Not a hot path: used before a
            // leave only.
            #[cfg(unix)]
            Self::Udp(socket) => {
                use std::os::fd::AsFd;
                let now = std::net::UdpSocket::from(socket.as_fd().try_clone_to_owned()?);
                now.recv_from(buf)
            }
            #[cfg(not(unix))]
            Self::Udp(socket) => socket.try_recv_from(buf),
            Self::Memory(endpoint) => match endpoint.rx.try_recv() {
                Ok((from, payload)) => Ok((copy_cut(buf, &payload), from)),
                Err(_) => Err(io::ErrorKind::WouldBlock.into()),
            },
        }
    }

    /// Sends `payload` to `to`. On the memory network a datagram to an address nobody holds,
    /// or to a full queue, is lost without an error, as UDP loses it.
    pub(crate) async fn send_to(&self, payload: &[u8], to: SocketAddr) -> io::Result<usize> {
        match self {
            Self::Udp(socket) => socket.send_to(payload, to).await,
            Self::Memory(endpoint) => {
                endpoint.network.send(endpoint.addr, to, payload);
                Ok(payload.len())
            }
        }
    }
}

fn copy_cut(buf: &mut [u8], payload: &[u8]) -> usize {
    let n = payload.len().min(buf.len());
    buf[..n].copy_from_slice(&payload[..n]);
    n
}
