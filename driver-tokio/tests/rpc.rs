//! RPC between real nodes on loopback TCP. Every wait is bounded.

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

/// Waits (bounded) until `n` slow calls reached their handler.
async fn entered(counter: &AtomicU64, n: u64) {
    tokio::time::timeout(WAIT, async {
        while counter.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the calls reach the server");
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
async fn calls_go_to_the_right_handler_many_at_once_on_one_connection() {
    let server = node("server").await;
    let client = node("client").await;
    server.add_rpc_service(Calculator::default()).unwrap();
    server.add_rpc_service(Greeter).unwrap();
    let calc = client.rpc_client::<Calculator>(server.rpc_addr());
    let reply = tokio::time::timeout(WAIT, calc.call(&Add { a: 40, b: 2 }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.get().to_native(), 42);
    assert_eq!(reply.deserialize().unwrap(), 42);
    let echo = calc.call(&"zero copy".to_owned()).await.unwrap();
    assert_eq!(echo.get().as_str(), "zero copy");
    let greet = client.rpc_client::<Greeter>(server.rpc_addr());
    assert_eq!(
        greet.call(&"ada".to_owned()).await.unwrap().get().as_str(),
        "hello, ada"
    );
    // 200 concurrent calls multiplexed on the one connection.
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let calc = calc.clone();
        tasks.push(tokio::spawn(async move {
            let reply = calc.call(&Add { a: i, b: i }).await.unwrap();
            assert_eq!(reply.get().to_native(), 2 * i);
        }));
    }
    for task in tasks {
        tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    }
    // Errors come back typed.
    let overflow = calc.call(&Add { a: u64::MAX, b: 1 }).await.unwrap_err();
    assert_eq!(overflow, Status::new(StatusCode::Internal, "overflow"));
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn services_come_and_go_at_run_time() {
    let server = node("server").await;
    let client = node("client").await;
    let service = Calculator::default();
    let slow = Arc::clone(&service.entered);
    server.add_rpc_service(service).unwrap();
    server.add_rpc_service(Greeter).unwrap();
    assert!(
        server.add_rpc_service(Greeter).is_err(),
        "a name is served once"
    );
    let calc = client.rpc_client::<Calculator>(server.rpc_addr());
    let greet = client.rpc_client::<Greeter>(server.rpc_addr());
    // A slow call is running when its service is removed: it finishes.
    let running = tokio::spawn({
        let calc = calc.clone();
        async move { calc.call(&Sleep { millis: 300 }).await }
    });
    entered(&slow, 1).await;
    assert!(server.remove_rpc_service::<Calculator>());
    let done = tokio::time::timeout(WAIT, running).await.unwrap().unwrap();
    assert_eq!(done.unwrap().get().to_native(), 300);
    // New calls to it are not found; the other service still answers.
    let gone = calc.call(&Add { a: 1, b: 1 }).await.unwrap_err();
    assert_eq!(gone.code, StatusCode::NotFound);
    assert!(greet.call(&"bob".to_owned()).await.is_ok());
    // And back.
    server.add_rpc_service(Calculator::default()).unwrap();
    assert_eq!(
        calc.call(&Add { a: 1, b: 1 })
            .await
            .unwrap()
            .get()
            .to_native(),
        2
    );
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn deadlines_and_dropped_calls_stop_the_server_side() {
    let server = node("server").await;
    let client = node("client").await;
    let service = Calculator::default();
    let aborted = Arc::clone(&service.aborted);
    let slow = Arc::clone(&service.entered);
    server.add_rpc_service(service).unwrap();
    let calc = client
        .rpc_client::<Calculator>(server.rpc_addr())
        .with_deadline(Some(Duration::from_secs(1)));
    let late = tokio::spawn({
        let calc = calc.clone();
        async move { calc.call(&Sleep { millis: 60_000 }).await }
    });
    entered(&slow, 1).await;
    let late = tokio::time::timeout(WAIT, late)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(late.code, StatusCode::DeadlineExceeded);
    // The server's handler was aborted at the deadline, not left running.
    let was_aborted = || async {
        tokio::time::timeout(WAIT, async {
            while !aborted.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .is_ok()
    };
    assert!(
        was_aborted().await,
        "the handler is aborted at the deadline"
    );
    // A deadline per call, over the client's.
    let quick = calc
        .call_with_deadline(&Sleep { millis: 60_000 }, Some(Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert_eq!(quick.code, StatusCode::DeadlineExceeded);
    let fine = calc
        .call_with_deadline(&Sleep { millis: 10 }, None)
        .await
        .unwrap();
    assert_eq!(fine.get().to_native(), 10);
    // A call whose future is dropped is cancelled on the server.
    aborted.store(false, Ordering::SeqCst);
    let calc = calc.with_deadline(None);
    let dropped = tokio::spawn(async move { calc.call(&Sleep { millis: 60_000 }).await });
    entered(&slow, 4).await;
    dropped.abort();
    assert!(dropped.await.unwrap_err().is_cancelled());
    assert!(
        was_aborted().await,
        "the dropped call is cancelled on the server"
    );
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_services_and_unreachable_peers_are_typed_errors() {
    let server = node("server").await;
    let client = node("client").await;
    let calc = client.rpc_client::<Calculator>(server.rpc_addr());
    assert_eq!(
        calc.call(&Add { a: 1, b: 2 }).await.unwrap_err().code,
        StatusCode::NotFound
    );
    // Nobody listens there.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = free.local_addr().unwrap();
    drop(free);
    let lost = client.rpc_client::<Calculator>(nowhere);
    assert_eq!(
        lost.call(&Add { a: 1, b: 2 }).await.unwrap_err().code,
        StatusCode::Unavailable
    );
    client.shutdown().await;
    server.shutdown().await;
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

#[tokio::test]
async fn shutdown_finishes_calls_in_flight_then_frees_the_port() {
    let server = node("server").await;
    let client = node("client").await;
    let service = Calculator::default();
    let slow = Arc::clone(&service.entered);
    server.add_rpc_service(service).unwrap();
    let calc = client.rpc_client::<Calculator>(server.rpc_addr());
    let running = tokio::spawn(async move { calc.call(&Sleep { millis: 200 }).await });
    entered(&slow, 1).await;
    let rpc_addr = server.rpc_listen_addr().unwrap();
    tokio::time::timeout(WAIT, server.shutdown()).await.unwrap();
    let finished = tokio::time::timeout(WAIT, running).await.unwrap().unwrap();
    assert_eq!(
        finished.unwrap().get().to_native(),
        200,
        "served before closing"
    );
    std::net::TcpListener::bind(rpc_addr).expect("the RPC port is free after shutdown");
    client.shutdown().await;
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

/// The server restarts on the same address with a new generation: the client's connection to
/// the old one is gone, and its calls reach the new one (after a reconnection).
#[tokio::test]
async fn calls_reach_a_peer_restarted_on_the_same_address() {
    let server = node("server").await;
    server.add_rpc_service(Greeter).unwrap();
    let client = node("client").await;
    let addr = server.rpc_addr();
    let listen = server.listen_addr();
    let greet = client.rpc_client::<Greeter>(addr);
    assert!(greet.call(&"before".to_owned()).await.is_ok());
    let old_generation = server.id().generation();
    server.shutdown().await;
    let restarted = NodeBuilder::new(
        "server",
        ConnectionConfig::new(listen, listen, Vec::<String>::new()),
    )
    .cluster_id("rpc")
    .generation(old_generation + 1)
    .connect()
    .await
    .expect("the address is free again");
    restarted.add_rpc_service(Greeter).unwrap();
    let reply = tokio::time::timeout(WAIT, async {
        loop {
            match greet.call(&"after".to_owned()).await {
                Ok(reply) => return reply,
                // The old connection closed, or the back-off before reconnecting.
                Err(status) => {
                    assert_eq!(status.code, StatusCode::Unavailable, "{status}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    })
    .await
    .expect("a call reaches the restarted node");
    assert_eq!(reply.get().as_str(), "hello, after");
    client.shutdown().await;
    restarted.shutdown().await;
}

/// A handler that panics answers its caller (Internal), and the server serves on.
#[tokio::test]
async fn a_panicking_handler_answers_internal() {
    let server = node("server").await;
    server.add_rpc_service(Calculator::default()).unwrap();
    let client = node("client").await;
    let calc = client
        .rpc_client::<Calculator>(server.rpc_addr())
        .with_deadline(None);
    let failed = tokio::time::timeout(WAIT, calc.call(&Blow { size: 13 }))
        .await
        .expect("answered, not left waiting")
        .unwrap_err();
    assert_eq!(failed.code, StatusCode::Internal);
    assert_eq!(
        calc.call(&Blow { size: 3 }).await.unwrap().get().len(),
        3,
        "still serving"
    );
    client.shutdown().await;
    server.shutdown().await;
}

/// Replies made while the node shuts down still go out, large ones too.
#[tokio::test]
async fn shutdown_sends_the_replies_of_calls_it_let_finish() {
    let server = node("server").await;
    let service = Calculator::default();
    let slow = Arc::clone(&service.entered);
    server.add_rpc_service(service).unwrap();
    let client = node("client").await;
    let calc = client.rpc_client::<Calculator>(server.rpc_addr());
    let mut calls = Vec::new();
    for i in 0..6u32 {
        let calc = calc.clone();
        calls.push(tokio::spawn(async move {
            calc.call(&Blow {
                size: (1 << 20) + i * 100_000,
            })
            .await
        }));
    }
    entered(&slow, 6).await;
    tokio::time::timeout(WAIT, server.shutdown()).await.unwrap();
    for (i, call) in calls.into_iter().enumerate() {
        let reply = tokio::time::timeout(WAIT, call).await.unwrap().unwrap();
        let reply = reply.unwrap_or_else(|s| panic!("call {i}: {s}"));
        assert_eq!(reply.get().len(), (1 << 20) + i * 100_000);
    }
    client.shutdown().await;
}
