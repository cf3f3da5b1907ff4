//! RPC over QUIC between two endpoints on loopback, with certificates made at run time. Every
//! wait is bounded.

use std::sync::atomic::AtomicUsize;

use cohort_core::rpc::{Request, ServiceRegistry};
use cohort_core::{HlcConfig, NodeTag};

use super::*;
use crate::tls::ClusterCa;

const WAIT: Duration = Duration::from_secs(20);

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Add {
    a: u64,
    b: u64,
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Hang;

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Boom;

#[derive(Default)]
struct Calculator {
    /// `Hang` handlers that started, and those dropped before finishing.
    hanging: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

impl RpcService for Calculator {
    fn service_name() -> &'static str {
        "calculator"
    }
    fn register_handlers(registry: &mut ServiceRegistry<Self>) {
        registry.add_handler::<Add>();
        registry.add_handler::<Hang>();
        registry.add_handler::<Boom>();
    }
}

impl Handler<Add> for Calculator {
    const NAME: &'static str = "add";
    type Reply = u64;
    async fn on_message(&self, request: Request<'_, Add>) -> Result<u64, Status> {
        Ok(request.a.to_native() + request.b.to_native())
    }
}

struct CountDrop(Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Handler<Hang> for Calculator {
    const NAME: &'static str = "hang";
    type Reply = ();
    async fn on_message(&self, _: Request<'_, Hang>) -> Result<(), Status> {
        let _guard = CountDrop(Arc::clone(&self.dropped));
        self.hanging.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
        Ok(())
    }
}

impl Handler<Boom> for Calculator {
    const NAME: &'static str = "boom";
    type Reply = ();
    async fn on_message(&self, _: Request<'_, Boom>) -> Result<(), Status> {
        panic!("boom")
    }
}

fn clock(tag: u64) -> Arc<SharedHlc> {
    Arc::new(SharedHlc::new(HlcConfig::new(NodeTag::new(tag))))
}

fn endpoint(ca: &ClusterCa, name: &str, tag: u64) -> Arc<Rpc> {
    let tls = ca.issue(name).unwrap().tls_config(ca).unwrap();
    Rpc::start(
        std::net::UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap(),
        clock(tag),
        WallClock::system(),
        RpcConnectionConfig::default(),
        ServerLimits::default(),
        &tls,
        Duration::from_secs(5),
    )
    .unwrap()
}

/// Runs `test` on smol, failing it if it takes longer than [`WAIT`].
fn run<F: Future<Output = ()>>(test: F) {
    smol::block_on(smol::future::or(test, async {
        Timer::after(WAIT).await;
        panic!("the test did not finish within {WAIT:?}");
    }));
}

/// Waits (bounded by the test's own bound) until `counter` reaches `n`.
async fn reach(counter: &AtomicUsize, n: usize) {
    while counter.load(Ordering::SeqCst) < n {
        Timer::after(Duration::from_millis(2)).await;
    }
}

fn client(from: &Arc<Rpc>, to: &Arc<Rpc>) -> RpcClient<Calculator> {
    RpcClient::new(Some(Arc::clone(from)), to.local_addr(), None)
}

#[test]
fn calls_are_answered_many_at_once_on_one_connection() {
    run(async {
        let ca = ClusterCa::generate("test").unwrap();
        let server = endpoint(&ca, "server", 1);
        let caller = endpoint(&ca, "caller", 2);
        server.registry.add_service(Calculator::default()).unwrap();
        let calc = client(&caller, &server);
        let sum = calc.call(&Add { a: 2, b: 40 }).await.unwrap();
        assert_eq!(sum.get().to_native(), 42);
        let calls: Vec<_> = (0..200u64)
            .map(|i| {
                let calc = calc.clone();
                smol::spawn(async move {
                    let reply = calc.call(&Add { a: i, b: 1 }).await.unwrap();
                    assert_eq!(reply.get().to_native(), i + 1);
                })
            })
            .collect();
        for call in calls {
            call.await;
        }
        assert_eq!(lock(&caller.peers).len(), 1, "one connection to the server");
        caller.shutdown(Duration::from_secs(1)).await;
        server.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn errors_are_typed_deadlines_cancel_and_panics_answer_internal() {
    run(async {
        let ca = ClusterCa::generate("test").unwrap();
        let server = endpoint(&ca, "server", 1);
        let caller = endpoint(&ca, "caller", 2);
        let calculator = Calculator::default();
        let (hanging, dropped) = (
            Arc::clone(&calculator.hanging),
            Arc::clone(&calculator.dropped),
        );
        let calc = client(&caller, &server);
        // Not served yet.
        let status = calc.call(&Add { a: 1, b: 1 }).await.unwrap_err();
        assert_eq!(status.code, StatusCode::NotFound);
        server.registry.add_service(calculator).unwrap();
        // A handler that panics.
        let status = calc.call(&Boom).await.unwrap_err();
        assert_eq!(status.code, StatusCode::Internal);
        assert_eq!(status.message, "the handler panicked");
        // A deadline: the caller gets DeadlineExceeded and the server stops the handler.
        let status = calc
            .call_with_deadline(&Hang, Some(Duration::from_millis(100)))
            .await
            .unwrap_err();
        assert_eq!(status.code, StatusCode::DeadlineExceeded);
        reach(&dropped, 1).await;
        // A dropped call is cancelled on the server.
        let call = calc.call(&Hang);
        let abandoned = smol::future::or(
            async {
                let _ = call.await;
                false
            },
            async {
                reach(&hanging, 2).await;
                true
            },
        )
        .await;
        assert!(abandoned, "the call hangs until dropped");
        reach(&dropped, 2).await;
        // The connection still serves.
        assert_eq!(
            calc.call(&Add { a: 1, b: 2 })
                .await
                .unwrap()
                .get()
                .to_native(),
            3
        );
        caller.shutdown(Duration::from_secs(1)).await;
        server.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn a_node_of_another_cluster_ca_is_refused_both_ways() {
    run(async {
        let ours = ClusterCa::generate("ours").unwrap();
        let theirs = ClusterCa::generate("theirs").unwrap();
        let server = endpoint(&ours, "server", 1);
        server.registry.add_service(Calculator::default()).unwrap();
        let stranger = endpoint(&theirs, "stranger", 2);
        stranger
            .registry
            .add_service(Calculator::default())
            .unwrap();
        // The stranger calls us: its certificate is refused.
        let status = client(&stranger, &server)
            .call(&Add { a: 1, b: 1 })
            .await
            .unwrap_err();
        assert_eq!(status.code, StatusCode::Unavailable);
        assert!(
            status.message.contains("certificate") || status.message.contains("closed"),
            "says why: {status:?}"
        );
        // We call the stranger: its certificate is refused by us.
        let status = client(&server, &stranger)
            .call(&Add { a: 1, b: 1 })
            .await
            .unwrap_err();
        assert_eq!(status.code, StatusCode::Unavailable);
        assert!(
            status.message.contains("not signed by the cluster CA"),
            "says why: {status:?}"
        );
        stranger.shutdown(Duration::from_secs(1)).await;
        server.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn shutdown_finishes_calls_then_frees_the_port() {
    run(async {
        let ca = ClusterCa::generate("test").unwrap();
        let server = endpoint(&ca, "server", 1);
        let caller = endpoint(&ca, "caller", 2);
        server.registry.add_service(Calculator::default()).unwrap();
        let addr = server.local_addr();
        assert_eq!(
            client(&caller, &server)
                .call(&Add { a: 1, b: 1 })
                .await
                .unwrap()
                .get()
                .to_native(),
            2
        );
        server.shutdown(Duration::from_secs(1)).await;
        // The port is free: a new endpoint binds it, and serves the old caller again after
        // its back-off.
        let tls = ca.issue("server").unwrap().tls_config(&ca).unwrap();
        let again = Rpc::start(
            std::net::UdpSocket::bind(addr).unwrap(),
            clock(3),
            WallClock::system(),
            RpcConnectionConfig::default(),
            ServerLimits::default(),
            &tls,
            Duration::from_secs(5),
        )
        .unwrap();
        again.registry.add_service(Calculator::default()).unwrap();
        let calc = client(&caller, &again);
        let mut answered = None;
        for _ in 0..200 {
            match calc.call(&Add { a: 2, b: 2 }).await {
                Ok(reply) => {
                    answered = Some(reply.get().to_native());
                    break;
                }
                Err(_) => {
                    Timer::after(Duration::from_millis(20)).await;
                }
            }
        }
        assert_eq!(answered, Some(4), "reconnected to the restarted server");
        caller.shutdown(Duration::from_secs(1)).await;
        again.shutdown(Duration::from_secs(1)).await;
    });
}
