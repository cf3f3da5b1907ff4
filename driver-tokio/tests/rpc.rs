//! RPC on what only the tokio driver has: TCP. Peers that send raw bytes (garbage, truncated
//! and oversized frames, invalid archives) or stop reading. The RPC behaviour both drivers
//! share is tested once for both by the conformance suite in `tests/tests/conformance/`.
//! Every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cohort_tokio::{
    ConnectionConfig, Handler, Node, NodeBuilder, Request, RpcService, ServiceRegistry, Status,
    StatusCode, rkyv,
};

const WAIT: Duration = Duration::from_secs(10);

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
#[rkyv(crate = cohort_tokio::rkyv)]
struct Add {
    a: u64,
    b: u64,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
#[rkyv(crate = cohort_tokio::rkyv)]
struct Sleep {
    millis: u64,
}

/// Asks for a reply of `size` bytes.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
#[rkyv(crate = cohort_tokio::rkyv)]
struct Blow {
    size: u32,
}

#[derive(Default)]
struct Calculator {
    calls: AtomicU64,
    /// Set when a `Sleep` handler was dropped before it finished (aborted by a cancel).
    aborted: Arc<AtomicBool>,
    /// Slow calls (`Sleep`, large `Blow`) that reached their handler.
    entered: Arc<AtomicU64>,
}

impl RpcService for Calculator {
    fn service_name() -> &'static str {
        "calculator"
    }
    fn register_handlers(registry: &mut ServiceRegistry<Self>) {
        registry.add_handler::<Add>();
        registry.add_handler::<Sleep>();
        registry.add_handler::<String>();
        registry.add_handler::<Blow>();
    }
}

impl Handler<Blow> for Calculator {
    const NAME: &'static str = "blow";
    type Reply = Vec<u8>;
    async fn on_message(&self, request: Request<'_, Blow>) -> Result<Vec<u8>, Status> {
        let size = request.size.to_native();
        assert!(size != 13, "the test asked this handler to panic");
        if size >= 1 << 20 {
            // A slow, large reply (the shutdown test).
            self.entered.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(vec![7; size as usize])
    }
}

impl Handler<Add> for Calculator {
    const NAME: &'static str = "add";
    type Reply = u64;
    async fn on_message(&self, request: Request<'_, Add>) -> Result<u64, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        request
            .a
            .to_native()
            .checked_add(request.b.to_native())
            .ok_or_else(|| Status::new(StatusCode::Internal, "overflow"))
    }
}

/// Sets a flag when dropped unfinished.
struct AbortFlag(Arc<AtomicBool>, bool);

impl Drop for AbortFlag {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

impl Handler<Sleep> for Calculator {
    const NAME: &'static str = "sleep";
    type Reply = u64;
    async fn on_message(&self, request: Request<'_, Sleep>) -> Result<u64, Status> {
        let millis = request.millis.to_native();
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut flag = AbortFlag(Arc::clone(&self.aborted), false);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        flag.1 = true;
        Ok(millis)
    }
}

impl Handler<String> for Calculator {
    const NAME: &'static str = "echo";
    type Reply = String;
    async fn on_message(&self, request: Request<'_, String>) -> Result<String, Status> {
        Ok(request.as_str().to_owned())
    }
}

struct Greeter;

impl RpcService for Greeter {
    fn service_name() -> &'static str {
        "greeter"
    }
    fn register_handlers(registry: &mut ServiceRegistry<Self>) {
        registry.add_handler::<String>();
    }
}

impl Handler<String> for Greeter {
    const NAME: &'static str = "hello";
    type Reply = String;
    async fn on_message(&self, request: Request<'_, String>) -> Result<String, Status> {
        Ok(format!("hello, {}", request.as_str()))
    }
}

async fn node(name: &str) -> Node {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    NodeBuilder::new(name, ConnectionConfig::new(any, any, Vec::<String>::new()))
        .cluster_id("rpc")
        .gossip_interval(Duration::from_millis(100))
        .connect()
        .await
        .expect("the node starts")
}

#[tokio::test]
async fn a_peer_sending_garbage_is_dropped_and_everyone_else_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = node("server").await;
    server.add_rpc_service(Greeter).unwrap();
    let client = node("client").await;
    let greet = client.rpc_client::<Greeter>(server.rpc_addr());
    assert!(greet.call(&"first".to_owned()).await.is_ok());
    // Garbage, an oversized length, a truncated frame: the server closes those connections.
    for junk in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789012345678901234567890123456789".to_vec(),
        {
            let mut header = vec![0x52, 0xc0, 1, 1];
            header.extend_from_slice(&u32::MAX.to_le_bytes());
            header.resize(48, 0);
            header
        },
    ] {
        let mut raw = tokio::net::TcpStream::connect(server.rpc_addr())
            .await
            .unwrap();
        raw.write_all(&junk).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(WAIT, raw.read(&mut buf))
            .await
            .unwrap();
        assert!(
            matches!(n, Ok(0) | Err(_)),
            "the server closed the connection"
        );
    }
    let mut truncated = tokio::net::TcpStream::connect(server.rpc_addr())
        .await
        .unwrap();
    truncated.write_all(&[0x52, 0xc0, 1]).await.unwrap();
    drop(truncated);
    // The well-behaved client is still served.
    assert_eq!(
        greet
            .call(&"again".to_owned())
            .await
            .unwrap()
            .get()
            .as_str(),
        "hello, again"
    );
    client.shutdown().await;
    server.shutdown().await;
}

/// A peer that sends calls but never reads the replies: the server stops reading from it once
/// its replies pile up (bounded memory; TCP pushes back), and serves everyone else meanwhile.
#[tokio::test]
async fn a_peer_that_stops_reading_is_pushed_back_and_others_are_served() {
    use cohort_tokio::rpc::{FrameHeader, MethodId, write_frame};
    use cohort_tokio::{NodeTag, Timestamp};

    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = NodeBuilder::new(
        "server",
        ConnectionConfig::new(any, any, Vec::<String>::new()),
    )
    .cluster_id("rpc")
    .rpc_connection_config({
        let mut config = cohort_tokio::rpc::ConnectionConfig::default();
        config.max_buffered = 1 << 20;
        config
    })
    .connect()
    .await
    .unwrap();
    server.add_rpc_service(Calculator::default()).unwrap();
    // Small calls asking for 64 KiB replies each, sent in batches of 16 (the bound on calls in
    // flight this server is configured with) every 10 ms: 40 batches ask for 40 MB of replies.
    let blow = MethodId::of("calculator", "blow");
    let batch = |from: u64| {
        let mut batch = rkyv::util::AlignedVec::<16>::new();
        for i in from..from + 16 {
            let header =
                FrameHeader::request(i, blow, Timestamp::from_packed(0, NodeTag::new(7)), None);
            write_frame(&mut batch, header, &Blow { size: 64 * 1024 }).unwrap();
        }
        batch
    };
    // A peer with a small receive buffer (no autotuning) that never reads: the kernel holds
    // few of the replies.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    let mut raw = socket.connect(server.rpc_addr()).await.unwrap();
    for b in 0..40u64 {
        let bytes = batch(1 + b * 16);
        tokio::time::timeout(WAIT, tokio::io::AsyncWriteExt::write_all(&mut raw, &bytes))
            .await
            .expect("the calls are small enough for the kernel's buffers")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Its buffer for that peer stayed within a few times its bound (1 MiB, plus calls in flight
    // of 64 KiB each finishing after it stopped reading), not the 40 MB the calls ask for
    // (about 40 MB without the bound).
    let peak = server.statistics().rpc_send_buffer_peak;
    assert!(
        peak <= 8 << 20,
        "the server buffered {peak} bytes for a peer that does not read"
    );
    // Others are served all along.
    let client = node("client").await;
    let calc = client.rpc_client::<Calculator>(server.rpc_addr());
    assert_eq!(
        tokio::time::timeout(WAIT, calc.call(&Add { a: 2, b: 3 }))
            .await
            .unwrap()
            .unwrap()
            .get()
            .to_native(),
        5
    );
    drop(raw);
    client.shutdown().await;
    server.shutdown().await;
}
