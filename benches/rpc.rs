//! `rpc`: cohort-tokio's RPC, datacake-rpc 0.5.1, tarpc 0.38 and a raw TCP echo, side by side,
//! in one process on 127.0.0.1.
//!
//! Every system serves the same echo: the request is a byte payload and the reply is the same
//! bytes (cohort: `Vec<u8>` archived with rkyv 0.8, read in place and copied into the reply;
//! datacake: `Vec<u8>` archived with rkyv 0.7 over hyper's HTTP/2; tarpc: `Vec<u8>` with
//! bincode over length-delimited TCP; raw TCP: a u32 little-endian length, then the bytes).
//! The systems run one after the other, never concurrently, on one multi-threaded tokio
//! runtime with 2 workers (client and server on the same runtime; the callers are tasks on its
//! workers too), each measured in turn:
//!
//! - `latency_p50_us_*` and `latency_p99_us_*`: the round trip of one caller making one call
//!   at a time, at 64 B (2,000 warm-up calls, then 20,000 timed) and at 64 KiB (300 warm-up
//!   calls, then 3,000 timed). The warm-up stops after 2 s and the timed calls after 10 s if
//!   they are not done by then (`latency_calls_*` then says how many were timed);
//! - `calls_per_s_64B_*`: calls per second with 1, 16 and 128 concurrent callers at 64 B, each
//!   a tokio task calling in a loop, for `--secs` (default 3) after a 0.5 s warm-up. Callers
//!   share one client, so one connection, where the system multiplexes (cohort, datacake,
//!   tarpc); each raw TCP caller has its own connection;
//! - `mb_per_s_64KiB_16callers`: payload megabytes (10^6 bytes, one direction: each call also
//!   carries them back) per second with 16 callers at 64 KiB, measured like the above;
//! - `allocs_per_call_client_and_server`: heap allocations (`alloc` and `realloc` calls
//!   through a counting global allocator) of the whole process over 10,000 calls of 64 B with
//!   one caller, after 1,000 warm-up calls, divided by the calls: client and server together;
//! - `allocs_per_call_server`: the part of those made on the server's threads. For this
//!   measurement only, the server is started on a second runtime (one worker thread) whose
//!   threads set a thread-local flag when they start; the allocator counts separately what
//!   flagged threads allocate. Everything the server does for a call (its connection task, the
//!   handlers it runs, its I/O driver and timers) runs on that runtime, and nothing else does;
//! - `quic` (cohort-smol, the same echo service over QUIC with mutual TLS), `quinn` and
//!   `quinn-per-call` (quinn alone, a length-prefixed echo on a long-lived stream per caller,
//!   or a new stream per call) run on smol's executor (quinn's smol runtime, `SMOL_THREADS`
//!   threads, 1 unless set), and so do their callers, so that no call crosses between tokio
//!   and smol; the server's allocations cannot be told apart there (`n/a`);
//! - `allocs_per_call_server_u64_reply` (cohort only): the same, calling a second handler of
//!   the same service that answers the same request with the sum of its bytes (a `u64`), so
//!   that the handler allocates nothing itself (the echo's reply is a new `Vec`): what is left
//!   is cohort's own.
//!
//! TCP_NODELAY: cohort-tokio sets it on both sides of its connections; datacake-rpc sets it on
//! the client only (hyper's connector), its server leaves accepted sockets as they are; tarpc
//! sets it on neither, so this bench sets it on both sides (`Transport::get_ref`); the raw TCP
//! echo sets it on both sides. Without it on datacake's server, a 64 KiB call stalls on Nagle's
//! algorithm until the client's delayed ACK (about 44 ms a call here); with TCP_NODELAY forced
//! on the server's accepted sockets (an `LD_PRELOAD` shim around `accept4`, not part of this
//! bench) the same call took about 0.35 ms.
//!
//! Each metric is printed as a `system=... metric=... value=...` line as soon as it is known;
//! a Markdown table of all of them closes the run.
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/target-bench cargo run --release -p cohort-benches --bin rpc -- \
//!     --secs 3 --systems cohort,datacake,tarpc,tcp
//! ```

use std::alloc::{GlobalAlloc, Layout, System as SystemAllocator};
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cohort_tokio::{
    ConnectionConfig, Handler, Node, NodeBuilder, Request, RpcClient, RpcService, ServiceRegistry,
    Status,
};
use futures_util::StreamExt as _;
use tarpc::server::Channel as _;
use tarpc::tokio_serde::formats::Bincode;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::task::{JoinHandle, JoinSet};

// ---------------------------------------------------------------------------------------------
// Counting allocations

/// The system allocator, counting allocations (reallocations included): all of them, and
/// those made on server threads (threads whose `SERVER_THREAD` flag is set).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static SERVER_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the threads of the server runtime of the allocation measurement. A `const`
    /// initialized `Cell<bool>` needs no lazy initialization and no destructor, so reading it
    /// from the allocator allocates nothing.
    static SERVER_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn count_allocation() {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    if SERVER_THREAD.try_with(Cell::get).unwrap_or(false) {
        SERVER_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are relaxed
// atomics and a const thread-local `Cell`, none of which allocates.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { SystemAllocator.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { SystemAllocator.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: as above.
        unsafe { SystemAllocator.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations so far: (whole process, server threads).
fn allocations() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        SERVER_ALLOCATIONS.load(Ordering::Relaxed),
    )
}

// ---------------------------------------------------------------------------------------------
// Settings and the command line

/// Worker threads of the runtime everything runs on (the machine has 2 cores).
const WORKERS: usize = 2;
/// The small and the large payload.
const SMALL: usize = 64;
const LARGE: usize = 64 * 1024;
/// Latency: warm-up and timed calls, at 64 B and at 64 KiB.
const SMALL_WARMUP_CALLS: usize = 2_000;
const SMALL_TIMED_CALLS: usize = 20_000;
const LARGE_WARMUP_CALLS: usize = 300;
const LARGE_TIMED_CALLS: usize = 3_000;
/// Latency: the most time the warm-up and the timed calls of one payload size may take.
const WARMUP_BUDGET: Duration = Duration::from_secs(2);
const LATENCY_BUDGET: Duration = Duration::from_secs(10);
/// Throughput: concurrent callers at 64 B, and at 64 KiB.
const CALLERS: [usize; 3] = [1, 16, 128];
const LARGE_CALLERS: usize = 16;
/// Throughput: the warm-up before each measured window.
const WARMUP: Duration = Duration::from_millis(500);
/// Allocations: warm-up and counted calls (64 B, one caller).
const ALLOC_WARMUP_CALLS: usize = 1_000;
const ALLOC_COUNTED_CALLS: usize = 10_000;
/// The bound on any one phase (a hung system prints `timeout` and the run goes on).
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);
/// The pause between two systems (connections of the last one close meanwhile).
const BETWEEN_SYSTEMS: Duration = Duration::from_millis(500);
/// The largest frame the raw TCP echo accepts.
const TCP_MAX_FRAME: usize = 16 << 20;
/// The read buffer of each side of a raw TCP connection.
const TCP_READ_BUFFER: usize = 128 * 1024;

/// The system a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SystemKind {
    Cohort,
    /// cohort-smol: the same service over QUIC with mutual TLS.
    Quic,
    /// quinn alone (on smol, as cohort-smol runs it): a length-prefixed echo on one long-lived
    /// bidirectional stream per caller, over one connection. The QUIC floor.
    Quinn,
    /// quinn alone, a new bidirectional stream per call (request, finish, reply to the end):
    /// what one stream per call would cost.
    QuinnPerCall,
    Datacake,
    Tarpc,
    Tcp,
}

impl SystemKind {
    fn name(self) -> &'static str {
        match self {
            Self::Cohort => "cohort",
            Self::Quic => "quic",
            Self::Quinn => "quinn",
            Self::QuinnPerCall => "quinn-per-call",
            Self::Datacake => "datacake",
            Self::Tarpc => "tarpc",
            Self::Tcp => "tcp",
        }
    }

    fn parse(name: &str) -> Result<Self, String> {
        match name.trim() {
            "cohort" => Ok(Self::Cohort),
            "quic" => Ok(Self::Quic),
            "quinn" => Ok(Self::Quinn),
            "quinn-per-call" => Ok(Self::QuinnPerCall),
            "datacake" => Ok(Self::Datacake),
            "tarpc" => Ok(Self::Tarpc),
            "tcp" => Ok(Self::Tcp),
            other => Err(format!("--systems: unknown system {other}")),
        }
    }
}

/// The command line.
struct Options {
    systems: Vec<SystemKind>,
    window: Duration,
}

const USAGE: &str =
    "usage: rpc [--secs 3] [--systems cohort,quic,quinn,quinn-per-call,datacake,tarpc,tcp]";

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        systems: vec![
            SystemKind::Cohort,
            SystemKind::Datacake,
            SystemKind::Tarpc,
            SystemKind::Tcp,
        ],
        window: Duration::from_secs(3),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_owned());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--systems" => {
                options.systems = value
                    .split(',')
                    .map(SystemKind::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--secs" => {
                options.window = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| format!("--secs: need a positive number, got {value}"))?;
            }
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// A payload of `len` bytes (not all zeros).
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Checks that an echo came back whole.
fn check_echo(got: usize, sent: usize) -> Result<(), String> {
    if got == sent {
        Ok(())
    } else {
        Err(format!("the echo has {got} bytes, {sent} were sent"))
    }
}

// ---------------------------------------------------------------------------------------------
// What the measurements need from a system

/// One caller: a client (shared with other callers where the system multiplexes, its own
/// connection otherwise) and the payload it sends.
trait Caller: Send + 'static {
    /// One echo call of the caller's payload, the reply checked.
    fn call(&mut self) -> impl Future<Output = Result<(), String>> + Send + '_;
}

/// A running server and its client.
trait Bench: Sized {
    type Caller: Caller;

    /// Whether the server runs on the runtime given to [`start`](Self::start), so that what
    /// its threads allocate can be counted apart.
    const SERVER_ON_RUNTIME: bool = true;

    /// Starts the server on `server` (a runtime's handle; its tasks run there) and a client
    /// on the current runtime.
    async fn start(server: &Handle) -> Result<Self, String>;

    /// A new caller sending `len` bytes.
    async fn caller(&self, len: usize) -> Result<Self::Caller, String>;

    /// Stops the client and the server.
    async fn shutdown(self);
}

/// Runs `start` as a task on `server`, and waits for it.
async fn on_runtime<T, F>(server: &Handle, start: F) -> Result<T, String>
where
    F: Future<Output = Result<T, String>> + Send + 'static,
    T: Send + 'static,
{
    server
        .spawn(start)
        .await
        .map_err(|e| format!("the server did not start: {e}"))?
}

/// A free TCP port on 127.0.0.1 (for datacake's server, which does not say which port it got).
fn free_loopback_addr() -> Result<SocketAddr, String> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("cannot pick a free port: {e}"))
}

// ---------------------------------------------------------------------------------------------
// cohort

/// cohort's echo service.
struct CohortEcho;

impl RpcService for CohortEcho {
    fn service_name() -> &'static str {
        "echo"
    }

    fn register_handlers(registry: &mut ServiceRegistry<Self>) {
        registry.add_handler::<Vec<u8>>();
        registry.add_handler::<Checksum>();
    }
}

/// The same bytes as the echo's request, answered with their sum: a handler that allocates
/// nothing itself, so that what the server allocates per call is cohort's own.
#[derive(cohort_tokio::rkyv::Archive, cohort_tokio::rkyv::Serialize)]
#[rkyv(crate = cohort_tokio::rkyv)]
struct Checksum(Vec<u8>);

impl Handler<Checksum> for CohortEcho {
    const NAME: &'static str = "checksum";
    type Reply = u64;

    async fn on_message(&self, request: Request<'_, Checksum>) -> Result<u64, Status> {
        Ok(request.0.iter().map(|&b| u64::from(b)).sum())
    }
}

impl Handler<Vec<u8>> for CohortEcho {
    const NAME: &'static str = "echo";
    type Reply = Vec<u8>;

    async fn on_message(&self, request: Request<'_, Vec<u8>>) -> Result<Vec<u8>, Status> {
        Ok(request.as_slice().to_vec())
    }
}

async fn cohort_node(name: &'static str) -> Result<Node, String> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    NodeBuilder::new(name, ConnectionConfig::new(any, any, Vec::<String>::new()))
        .cluster_id("rpc-bench")
        .connect()
        .await
        .map_err(|e| format!("cohort node {name} did not start: {e}"))
}

/// A cohort server node serving the echo, and a client node.
struct CohortBench {
    server: Node,
    client: Node,
}

struct CohortCaller {
    client: RpcClient<CohortEcho>,
    payload: Vec<u8>,
}

impl Caller for CohortCaller {
    async fn call(&mut self) -> Result<(), String> {
        let reply = self
            .client
            .call(&self.payload)
            .await
            .map_err(|e| e.to_string())?;
        check_echo(reply.get().len(), self.payload.len())
    }
}

impl Bench for CohortBench {
    type Caller = CohortCaller;

    async fn start(server: &Handle) -> Result<Self, String> {
        let server = on_runtime(server, cohort_node("rpc-server")).await?;
        server
            .add_rpc_service(CohortEcho)
            .map_err(|e| e.to_string())?;
        let client = cohort_node("rpc-client").await?;
        Ok(Self { server, client })
    }

    async fn caller(&self, len: usize) -> Result<CohortCaller, String> {
        Ok(CohortCaller {
            client: self.client.rpc_client::<CohortEcho>(self.server.rpc_addr()),
            payload: payload(len),
        })
    }

    async fn shutdown(self) {
        self.client.shutdown().await;
        self.server.shutdown().await;
    }
}

/// cohort with the checksum handler instead of the echo (used for allocations only).
struct CohortChecksumBench(CohortBench);

struct CohortChecksumCaller {
    client: RpcClient<CohortEcho>,
    payload: Checksum,
    expected: u64,
}

impl Caller for CohortChecksumCaller {
    async fn call(&mut self) -> Result<(), String> {
        let reply = self
            .client
            .call(&self.payload)
            .await
            .map_err(|e| e.to_string())?;
        if reply.get().to_native() == self.expected {
            Ok(())
        } else {
            Err("the checksum came back wrong".to_owned())
        }
    }
}

impl Bench for CohortChecksumBench {
    type Caller = CohortChecksumCaller;

    async fn start(server: &Handle) -> Result<Self, String> {
        CohortBench::start(server).await.map(Self)
    }

    async fn caller(&self, len: usize) -> Result<CohortChecksumCaller, String> {
        let bytes = payload(len);
        Ok(CohortChecksumCaller {
            client: self
                .0
                .client
                .rpc_client::<CohortEcho>(self.0.server.rpc_addr()),
            expected: bytes.iter().map(|&b| u64::from(b)).sum(),
            payload: Checksum(bytes),
        })
    }

    async fn shutdown(self) {
        self.0.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// cohort over QUIC (the smol driver)

/// The cluster CA of the QUIC bench's nodes (made at run time).
static QUIC_CA: std::sync::LazyLock<cohort_smol::ClusterCa> =
    std::sync::LazyLock::new(|| cohort_smol::ClusterCa::generate("rpc-bench").expect("a CA"));

async fn quic_node(name: &'static str) -> Result<cohort_smol::Node, String> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let tls = QUIC_CA
        .issue(name)
        .and_then(|cert| cert.tls_config(&QUIC_CA))
        .map_err(|e| e.to_string())?;
    cohort_smol::NodeBuilder::new(name, ConnectionConfig::new(any, any, Vec::<String>::new()))
        .cluster_id("rpc-bench")
        .tls(tls)
        .connect()
        .await
        .map_err(|e| format!("smol node {name} did not start: {e}"))
}

/// A cohort-smol server node serving the same echo over QUIC, and a client node. Both run on
/// smol's executor (its own threads), whatever runtime the callers are on.
struct QuicBench {
    server: cohort_smol::Node,
    client: cohort_smol::Node,
}

struct QuicCaller {
    client: cohort_smol::RpcClient<CohortEcho>,
    payload: Vec<u8>,
}

impl Caller for QuicCaller {
    async fn call(&mut self) -> Result<(), String> {
        let reply = self
            .client
            .call(&self.payload)
            .await
            .map_err(|e| e.to_string())?;
        check_echo(reply.get().len(), self.payload.len())
    }
}

impl Bench for QuicBench {
    type Caller = QuicCaller;
    const SERVER_ON_RUNTIME: bool = false;

    async fn start(_server: &Handle) -> Result<Self, String> {
        let server = quic_node("rpc-server").await?;
        server
            .add_rpc_service(CohortEcho)
            .map_err(|e| e.to_string())?;
        let client = quic_node("rpc-client").await?;
        Ok(Self { server, client })
    }

    async fn caller(&self, len: usize) -> Result<QuicCaller, String> {
        Ok(QuicCaller {
            client: self.client.rpc_client::<CohortEcho>(self.server.rpc_addr()),
            payload: payload(len),
        })
    }

    async fn shutdown(self) {
        self.client.shutdown().await;
        self.server.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// quinn alone (the QUIC floor)

/// A quinn echo server and a client connection to it, on smol's executor (quinn's smol
/// runtime), server-authenticated TLS (a self-signed certificate the client trusts).
struct QuinnBench<const PER_CALL: bool> {
    server: quinn::Endpoint,
    client: quinn::Endpoint,
    connection: quinn::Connection,
    _accept: smol::Task<()>,
}

/// One caller: its own long-lived stream, or a new stream per call.
struct QuinnCaller<const PER_CALL: bool> {
    connection: quinn::Connection,
    stream: Option<(quinn::SendStream, quinn::RecvStream)>,
    frame: Vec<u8>,
    reply: Vec<u8>,
}

impl<const PER_CALL: bool> Caller for QuinnCaller<PER_CALL> {
    async fn call(&mut self) -> Result<(), String> {
        let len = self.frame.len() - 4;
        if PER_CALL {
            let (mut send, mut recv) =
                self.connection.open_bi().await.map_err(|e| e.to_string())?;
            send.write_all(&self.frame[4..])
                .await
                .map_err(|e| e.to_string())?;
            send.finish().map_err(|e| e.to_string())?;
            let reply = recv
                .read_to_end(TCP_MAX_FRAME)
                .await
                .map_err(|e| e.to_string())?;
            return check_echo(reply.len(), len);
        }
        let (send, recv) = self.stream.as_mut().ok_or("no stream")?;
        send.write_all(&self.frame)
            .await
            .map_err(|e| e.to_string())?;
        let mut header = [0u8; 4];
        recv.read_exact(&mut header)
            .await
            .map_err(|e| e.to_string())?;
        let got = u32::from_le_bytes(header) as usize;
        check_echo(got, len)?;
        self.reply.resize(got, 0);
        recv.read_exact(&mut self.reply)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Echoes one stream: length-prefixed frames until it ends, or (`per_call`) the whole stream
/// back once it is finished.
async fn quinn_echo(mut send: quinn::SendStream, mut recv: quinn::RecvStream, per_call: bool) {
    if per_call {
        if let Ok(bytes) = recv.read_to_end(TCP_MAX_FRAME).await {
            let _ = send.write_all(&bytes).await;
            let _ = send.finish();
        }
        return;
    }
    let mut frame = Vec::new();
    loop {
        let mut header = [0u8; 4];
        if recv.read_exact(&mut header).await.is_err() {
            return;
        }
        let len = u32::from_le_bytes(header) as usize;
        if len > TCP_MAX_FRAME {
            return;
        }
        frame.clear();
        frame.extend_from_slice(&header);
        frame.resize(4 + len, 0);
        if recv.read_exact(&mut frame[4..]).await.is_err() || send.write_all(&frame).await.is_err()
        {
            return;
        }
    }
}

impl<const PER_CALL: bool> Bench for QuinnBench<PER_CALL> {
    type Caller = QuinnCaller<PER_CALL>;
    const SERVER_ON_RUNTIME: bool = false;

    async fn start(_server: &Handle) -> Result<Self, String> {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .map_err(|e| e.to_string())?;
        let cert_der = cert.cert.der().clone();
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(
            rustls_pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()),
        );
        let mut server_config = quinn::ServerConfig::with_single_cert(vec![cert_der.clone()], key)
            .map_err(|e| e.to_string())?;
        // One stream per caller: up to 128 at once (quinn allows 100 by default).
        let mut transport = quinn::TransportConfig::default();
        transport.max_concurrent_bidi_streams(1_024u32.into());
        server_config.transport_config(Arc::new(transport));
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let server_socket = std::net::UdpSocket::bind(loopback).map_err(|e| e.to_string())?;
        let server = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            server_socket,
            Arc::new(quinn::SmolRuntime),
        )
        .map_err(|e| e.to_string())?;
        let addr = server.local_addr().map_err(|e| e.to_string())?;
        let accepting = server.clone();
        let accept = smol::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                smol::spawn(async move {
                    let Ok(connection) = incoming.await else {
                        return;
                    };
                    while let Ok((send, recv)) = connection.accept_bi().await {
                        smol::spawn(quinn_echo(send, recv, PER_CALL)).detach();
                    }
                })
                .detach();
            }
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert_der).map_err(|e| e.to_string())?;
        let client_config = quinn::ClientConfig::with_root_certificates(Arc::new(roots))
            .map_err(|e| e.to_string())?;
        let client_socket = std::net::UdpSocket::bind(loopback).map_err(|e| e.to_string())?;
        let mut client = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            client_socket,
            Arc::new(quinn::SmolRuntime),
        )
        .map_err(|e| e.to_string())?;
        client.set_default_client_config(client_config);
        let connection = client
            .connect(addr, "localhost")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            server,
            client,
            connection,
            _accept: accept,
        })
    }

    async fn caller(&self, len: usize) -> Result<QuinnCaller<PER_CALL>, String> {
        let mut frame = u32::try_from(len)
            .map_err(|e| e.to_string())?
            .to_le_bytes()
            .to_vec();
        frame.extend_from_slice(&payload(len));
        let stream = if PER_CALL {
            None
        } else {
            Some(self.connection.open_bi().await.map_err(|e| e.to_string())?)
        };
        Ok(QuinnCaller {
            connection: self.connection.clone(),
            stream,
            frame,
            reply: Vec::new(),
        })
    }

    async fn shutdown(self) {
        self.connection.close(0u32.into(), b"done");
        self.client.close(0u32.into(), b"done");
        self.server.close(0u32.into(), b"done");
        self.client.wait_idle().await;
        self.server.wait_idle().await;
    }
}

// ---------------------------------------------------------------------------------------------
// datacake-rpc

/// datacake's echo service.
struct DatacakeEcho;

impl datacake_rpc::RpcService for DatacakeEcho {
    fn service_name() -> &'static str {
        "echo"
    }

    fn register_handlers(registry: &mut datacake_rpc::ServiceRegistry<Self>) {
        registry.add_handler::<Vec<u8>>();
    }
}

#[datacake_rpc::async_trait]
impl datacake_rpc::Handler<Vec<u8>> for DatacakeEcho {
    type Reply = Vec<u8>;

    async fn on_message(
        &self,
        request: datacake_rpc::Request<Vec<u8>>,
    ) -> Result<Vec<u8>, datacake_rpc::Status> {
        Ok(request.as_slice().to_vec())
    }
}

/// A datacake server serving the echo, and a channel to it.
struct DatacakeBench {
    server: datacake_rpc::Server,
    channel: datacake_rpc::Channel,
}

struct DatacakeCaller {
    client: datacake_rpc::RpcClient<DatacakeEcho>,
    payload: Vec<u8>,
}

impl Caller for DatacakeCaller {
    async fn call(&mut self) -> Result<(), String> {
        let reply = self
            .client
            .send(&self.payload)
            .await
            .map_err(|e| e.to_string())?;
        check_echo(reply.len(), self.payload.len())
    }
}

impl Bench for DatacakeBench {
    type Caller = DatacakeCaller;

    async fn start(server: &Handle) -> Result<Self, String> {
        let addr = free_loopback_addr()?;
        let server = on_runtime(server, async move {
            datacake_rpc::Server::listen(addr)
                .await
                .map_err(|e| format!("datacake server did not start: {e}"))
        })
        .await?;
        server.add_service(DatacakeEcho);
        Ok(Self {
            server,
            channel: datacake_rpc::Channel::connect(addr),
        })
    }

    async fn caller(&self, len: usize) -> Result<DatacakeCaller, String> {
        Ok(DatacakeCaller {
            client: datacake_rpc::RpcClient::new(self.channel.clone()),
            payload: payload(len),
        })
    }

    async fn shutdown(self) {
        drop(self.channel);
        self.server.shutdown();
    }
}

// ---------------------------------------------------------------------------------------------
// tarpc

/// tarpc's echo service (the client and server types are generated from it).
#[tarpc::service]
trait Echo {
    /// Returns the payload.
    async fn echo(payload: Vec<u8>) -> Vec<u8>;
}

#[derive(Clone)]
struct TarpcEcho;

impl Echo for TarpcEcho {
    async fn echo(self, _: tarpc::context::Context, payload: Vec<u8>) -> Vec<u8> {
        payload
    }
}

/// A tarpc server (its accept loop) serving the echo, and one client connection to it.
struct TarpcBench {
    accept: JoinHandle<()>,
    client: EchoClient,
}

struct TarpcCaller {
    client: EchoClient,
    payload: Vec<u8>,
}

impl Caller for TarpcCaller {
    async fn call(&mut self) -> Result<(), String> {
        // tarpc's generated method takes the payload by value: a copy per call.
        let reply = self
            .client
            .echo(tarpc::context::current(), self.payload.clone())
            .await
            .map_err(|e| e.to_string())?;
        check_echo(reply.len(), self.payload.len())
    }
}

async fn tarpc_serve(listener: TcpListener) {
    let mut incoming =
        match tarpc::serde_transport::tcp::listen_on(listener, Bincode::default).await {
            Ok(incoming) => incoming,
            Err(error) => {
                println!("# tarpc server: cannot listen: {error}");
                return;
            }
        };
    // Dropped (so aborted) with the accept loop.
    let mut channels = JoinSet::new();
    while let Some(transport) = incoming.next().await {
        let Ok(transport) = transport else { continue };
        let _ = transport.get_ref().set_nodelay(true);
        channels.spawn(
            tarpc::server::BaseChannel::with_defaults(transport)
                .execute(TarpcEcho.serve())
                .for_each(|call| async {
                    tokio::spawn(call);
                }),
        );
    }
}

impl Bench for TarpcBench {
    type Caller = TarpcCaller;

    async fn start(server: &Handle) -> Result<Self, String> {
        let listener = on_runtime(server, async {
            TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(|e| format!("tarpc server cannot bind: {e}"))
        })
        .await?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("tarpc server: {e}"))?;
        let accept = server.spawn(tarpc_serve(listener));
        let transport = tarpc::serde_transport::tcp::connect(addr, Bincode::default)
            .await
            .map_err(|e| format!("tarpc client cannot connect: {e}"))?;
        transport
            .get_ref()
            .set_nodelay(true)
            .map_err(|e| format!("tarpc client: {e}"))?;
        let client = EchoClient::new(tarpc::client::Config::default(), transport).spawn();
        Ok(Self { accept, client })
    }

    async fn caller(&self, len: usize) -> Result<TarpcCaller, String> {
        Ok(TarpcCaller {
            client: self.client.clone(),
            payload: payload(len),
        })
    }

    async fn shutdown(self) {
        drop(self.client);
        self.accept.abort();
        let _ = self.accept.await;
    }
}

// ---------------------------------------------------------------------------------------------
// Raw TCP

/// A raw TCP echo server (its accept loop; one task per connection).
struct TcpBench {
    accept: JoinHandle<()>,
    addr: SocketAddr,
}

/// One raw TCP connection: its request frame (length, then payload) built once.
struct TcpCaller {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    frame: Vec<u8>,
    reply: Vec<u8>,
}

impl Caller for TcpCaller {
    async fn call(&mut self) -> Result<(), String> {
        self.writer
            .write_all(&self.frame)
            .await
            .map_err(|e| e.to_string())?;
        let mut header = [0u8; 4];
        self.reader
            .read_exact(&mut header)
            .await
            .map_err(|e| e.to_string())?;
        let len = u32::from_le_bytes(header) as usize;
        check_echo(len, self.frame.len() - 4)?;
        self.reply.resize(len, 0);
        self.reader
            .read_exact(&mut self.reply)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Echoes frames on one connection until it closes.
async fn tcp_echo(stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(TCP_READ_BUFFER, reader);
    // The frame read (length and payload) is the frame written back.
    let mut frame = Vec::new();
    loop {
        let mut header = [0u8; 4];
        match reader.read_exact(&mut header).await {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error),
        }
        let len = u32::from_le_bytes(header) as usize;
        if len > TCP_MAX_FRAME {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long"));
        }
        frame.clear();
        frame.extend_from_slice(&header);
        frame.resize(4 + len, 0);
        reader.read_exact(&mut frame[4..]).await?;
        writer.write_all(&frame).await?;
    }
}

async fn tcp_serve(listener: TcpListener) {
    // Dropped (so aborted) with the accept loop.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        connections.spawn(tcp_echo(stream));
        // Reap connections that ended.
        while connections.try_join_next().is_some() {}
    }
}

impl Bench for TcpBench {
    type Caller = TcpCaller;

    async fn start(server: &Handle) -> Result<Self, String> {
        let listener = on_runtime(server, async {
            TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(|e| format!("TCP server cannot bind: {e}"))
        })
        .await?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("TCP server: {e}"))?;
        let accept = server.spawn(tcp_serve(listener));
        Ok(Self { accept, addr })
    }

    async fn caller(&self, len: usize) -> Result<TcpCaller, String> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("TCP client cannot connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP client: {e}"))?;
        let (reader, writer) = stream.into_split();
        let header = u32::try_from(len)
            .map_err(|_| "payload too long".to_owned())?
            .to_le_bytes();
        let mut frame = header.to_vec();
        frame.extend_from_slice(&payload(len));
        Ok(TcpCaller {
            reader: BufReader::with_capacity(TCP_READ_BUFFER, reader),
            writer,
            frame,
            reply: Vec::with_capacity(len),
        })
    }

    async fn shutdown(self) {
        self.accept.abort();
        let _ = self.accept.await;
    }
}

// ---------------------------------------------------------------------------------------------
// The measurements

/// One caller's round trips: p50 and p99 in microseconds, and how many calls were timed.
/// The warm-up stops after `warmup` calls or [`WARMUP_BUDGET`], the timed calls after `timed`
/// or [`LATENCY_BUDGET`], whichever comes first (a system that stalls on each call still
/// reports its latency, over fewer calls).
async fn latency<B: Bench>(
    bench: &B,
    len: usize,
    warmup: usize,
    timed: usize,
) -> Result<(f64, f64, usize), String> {
    let caller = bench.caller(len).await?;
    if B::SERVER_ON_RUNTIME {
        latency_loop(caller, warmup, timed).await
    } else {
        // A system on smol's executor: its caller runs there too, so that each call does not
        // also cross from a tokio worker to smol's threads and back.
        smol::spawn(latency_loop(caller, warmup, timed)).await
    }
}

/// The latency phase of one caller, on whatever executor runs it (as [`latency`]).
async fn latency_loop<C: Caller>(
    mut caller: C,
    warmup: usize,
    timed: usize,
) -> Result<(f64, f64, usize), String> {
    let start = Instant::now();
    for _ in 0..warmup {
        caller.call().await?;
        if start.elapsed() >= WARMUP_BUDGET {
            break;
        }
    }
    let mut samples = Vec::with_capacity(timed);
    let start = Instant::now();
    for _ in 0..timed {
        let call = Instant::now();
        caller.call().await?;
        samples.push(call.elapsed());
        if start.elapsed() >= LATENCY_BUDGET {
            break;
        }
    }
    samples.sort_unstable();
    let at = |q: usize| samples[(samples.len() * q / 100).min(samples.len() - 1)];
    Ok((
        at(50).as_secs_f64() * 1e6,
        at(99).as_secs_f64() * 1e6,
        samples.len(),
    ))
}

/// Calls per second of `callers` concurrent callers sending `len` bytes, over `window` after
/// [`WARMUP`].
async fn throughput<B: Bench>(
    bench: &B,
    callers: usize,
    len: usize,
    window: Duration,
) -> Result<f64, String> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(callers);
    for _ in 0..callers {
        let mut caller = bench.caller(len).await?;
        let done = Arc::clone(&done);
        let stop = Arc::clone(&stop);
        let work = async move {
            while !stop.load(Ordering::Relaxed) {
                caller.call().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        };
        // Callers run where the system runs (see `latency`).
        tasks.push(if B::SERVER_ON_RUNTIME {
            tokio::spawn(work)
        } else {
            let task = smol::spawn(work);
            tokio::spawn(task)
        });
    }
    tokio::time::sleep(WARMUP).await;
    let before = done.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let calls = done.load(Ordering::Relaxed) - before;
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failure = failure.or(Some(error)),
            Err(error) => failure = failure.or_else(|| Some(error.to_string())),
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(calls as f64 / elapsed.as_secs_f64()),
    }
}

/// Allocations per call (whole process, server threads only), with the server on
/// `server_runtime`.
async fn allocations_per_call<B: Bench>(server_runtime: &Handle) -> Result<(f64, f64), String> {
    let bench = B::start(server_runtime).await?;
    let result = async {
        let mut caller = bench.caller(SMALL).await?;
        for _ in 0..ALLOC_WARMUP_CALLS {
            caller.call().await?;
        }
        let (all_before, server_before) = allocations();
        for _ in 0..ALLOC_COUNTED_CALLS {
            caller.call().await?;
        }
        let (all_after, server_after) = allocations();
        let per_call = |n: u64| n as f64 / ALLOC_COUNTED_CALLS as f64;
        Ok((
            per_call(all_after - all_before),
            per_call(server_after - server_before),
        ))
    }
    .await;
    bench.shutdown().await;
    result
}

/// Bounds a phase by [`PHASE_TIMEOUT`].
async fn bounded<T>(phase: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(PHASE_TIMEOUT, phase)
        .await
        .unwrap_or_else(|_| Err("timeout".to_owned()))
}

/// One measured value: a table row and a raw line.
struct Row {
    system: &'static str,
    measure: String,
    value: String,
}

/// Prints metrics as they come, and keeps them for the table.
#[derive(Default)]
struct Report {
    rows: Vec<Row>,
}

impl Report {
    fn metric(&mut self, system: SystemKind, key: &str, measure: &str, value: String) {
        println!("system={} metric={key} value={value}", system.name());
        self.rows.push(Row {
            system: system.name(),
            measure: measure.to_owned(),
            value,
        });
    }

    fn result<T>(
        &mut self,
        system: SystemKind,
        key: &str,
        measure: &str,
        result: &Result<T, String>,
        show: impl FnOnce(&T) -> String,
    ) {
        let value = match result {
            Ok(value) => show(value),
            Err(error) => format!("error: {error}"),
        };
        self.metric(system, key, measure, value);
    }

    fn table(&self) {
        println!();
        println!("| system | measure | value |");
        println!("| --- | --- | ---: |");
        for row in &self.rows {
            println!("| {} | {} | {} |", row.system, row.measure, row.value);
        }
    }
}

async fn run<B: Bench>(
    system: SystemKind,
    options: &Options,
    server_runtime: &Handle,
    report: &mut Report,
) {
    let started = Instant::now();
    let bench = match bounded(B::start(&Handle::current())).await {
        Ok(bench) => bench,
        Err(error) => {
            report.metric(system, "error", "start", format!("error: {error}"));
            return;
        }
    };

    for (len, size, warmup, timed) in [
        (SMALL, "64B", SMALL_WARMUP_CALLS, SMALL_TIMED_CALLS),
        (LARGE, "64KiB", LARGE_WARMUP_CALLS, LARGE_TIMED_CALLS),
    ] {
        let result = bounded(latency(&bench, len, warmup, timed)).await;
        let pretty = if len == SMALL { "64 B" } else { "64 KiB" };
        report.result(
            system,
            &format!("latency_p50_us_{size}"),
            &format!("latency p50, {pretty}, 1 caller (µs)"),
            &result,
            |(p50, _, _)| format!("{p50:.1}"),
        );
        report.result(
            system,
            &format!("latency_p99_us_{size}"),
            &format!("latency p99, {pretty}, 1 caller (µs)"),
            &result,
            |(_, p99, _)| format!("{p99:.1}"),
        );
        if let Ok((_, _, samples)) = result {
            if samples < timed {
                report.metric(
                    system,
                    &format!("latency_calls_{size}"),
                    &format!("latency calls timed, {pretty} (time budget hit)"),
                    samples.to_string(),
                );
            }
        }
    }

    for callers in CALLERS {
        let result = bounded(throughput(&bench, callers, SMALL, options.window)).await;
        let plural = if callers == 1 { "caller" } else { "callers" };
        report.result(
            system,
            &format!("calls_per_s_64B_{callers}{plural}"),
            &format!("calls/s, 64 B, {callers} {plural}"),
            &result,
            |rate| format!("{rate:.0}"),
        );
    }

    let result = bounded(throughput(&bench, LARGE_CALLERS, LARGE, options.window)).await;
    report.result(
        system,
        &format!("mb_per_s_64KiB_{LARGE_CALLERS}callers"),
        &format!("MB/s, 64 KiB, {LARGE_CALLERS} callers (payload one way, 10^6 B)"),
        &result,
        |rate| format!("{:.1}", rate * LARGE as f64 / 1e6),
    );

    if tokio::time::timeout(PHASE_TIMEOUT, bench.shutdown())
        .await
        .is_err()
    {
        println!("# {}: shutdown timed out", system.name());
    }
    tokio::time::sleep(BETWEEN_SYSTEMS).await;

    let result = bounded(allocations_per_call::<B>(server_runtime)).await;
    report.result(
        system,
        "allocs_per_call_client_and_server",
        "allocations per call, client and server together (64 B, 1 caller)",
        &result,
        |(all, _)| format!("{all:.2}"),
    );
    report.result(
        system,
        "allocs_per_call_server",
        "allocations per call, server threads only (64 B, 1 caller)",
        &result,
        |(_, server)| {
            if B::SERVER_ON_RUNTIME {
                format!("{server:.2}")
            } else {
                // Its threads are not ours to flag: not counted apart.
                "n/a".to_owned()
            }
        },
    );
    println!(
        "# {}: done in {:.1} s",
        system.name(),
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("the runtime starts");
    // The server runtime of the allocation measurement: its threads are flagged, so that the
    // allocator counts what they allocate apart.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("rpc-bench-server")
        .on_thread_start(|| SERVER_THREAD.with(|flag| flag.set(true)))
        .enable_all()
        .build()
        .expect("the server runtime starts");
    let server_handle = server_runtime.handle().clone();
    println!(
        "# rpc: {WORKERS} runtime workers (client and server on the same runtime), 127.0.0.1, \
         throughput windows {} s after {} s of warm-up; latency {SMALL_TIMED_CALLS} calls at \
         64 B ({SMALL_WARMUP_CALLS} warm-up), {LARGE_TIMED_CALLS} at 64 KiB \
         ({LARGE_WARMUP_CALLS} warm-up); allocations over {ALLOC_COUNTED_CALLS} calls at 64 B \
         ({ALLOC_WARMUP_CALLS} warm-up) with the server on its own 1-thread runtime",
        options.window.as_secs_f64(),
        WARMUP.as_secs_f64(),
    );
    println!(
        "# TCP_NODELAY: cohort sets it on both sides; datacake-rpc on its client only (hyper's \
         connector; its server does not); tarpc on neither, so this bench sets it on both sides; \
         raw TCP: this bench, both sides"
    );
    // Everything runs in a task on the runtime's workers (not on the thread that blocks on
    // the runtime), callers included.
    let report = runtime.block_on(async move {
        let task = tokio::spawn(async move {
            let mut report = Report::default();
            for &system in &options.systems {
                match system {
                    SystemKind::Cohort => {
                        run::<CohortBench>(system, &options, &server_handle, &mut report).await;
                        let result =
                            bounded(allocations_per_call::<CohortChecksumBench>(&server_handle))
                                .await;
                        report.result(
                            system,
                            "allocs_per_call_server_u64_reply",
                            "allocations per call, server threads only, a handler replying \
                             with a u64 (64 B, 1 caller)",
                            &result,
                            |(_, server)| format!("{server:.2}"),
                        );
                    }
                    SystemKind::Quic => {
                        run::<QuicBench>(system, &options, &server_handle, &mut report).await;
                    }
                    SystemKind::Quinn => {
                        run::<QuinnBench<false>>(system, &options, &server_handle, &mut report)
                            .await;
                    }
                    SystemKind::QuinnPerCall => {
                        run::<QuinnBench<true>>(system, &options, &server_handle, &mut report)
                            .await;
                    }
                    SystemKind::Datacake => {
                        run::<DatacakeBench>(system, &options, &server_handle, &mut report).await;
                    }
                    SystemKind::Tarpc => {
                        run::<TarpcBench>(system, &options, &server_handle, &mut report).await;
                    }
                    SystemKind::Tcp => {
                        run::<TcpBench>(system, &options, &server_handle, &mut report).await;
                    }
                }
            }
            report
        });
        task.await.expect("the bench task panicked")
    });
    report.table();
    runtime.shutdown_timeout(Duration::from_secs(5));
    server_runtime.shutdown_timeout(Duration::from_secs(5));
}
