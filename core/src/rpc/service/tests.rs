//! The registry and handlers, served through a pair of connections in memory. Handlers here
//! complete without waiting, so one poll with a no-op waker runs them (the core has no
//! runtime).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Waker};
use std::time::Instant;

use super::*;
use crate::clock::{HlcConfig, NodeTag, SharedHlc, WallTime};
use crate::rpc::{Connection, ConnectionConfig, ConnectionEvent};

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Add {
    a: u64,
    b: u64,
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Div {
    a: u64,
    b: u64,
}

struct Calculator {
    calls: AtomicU64,
}

impl RpcService for Calculator {
    fn service_name() -> &'static str {
        "calculator"
    }
    fn register_handlers(registry: &mut ServiceRegistry<Self>) {
        registry.add_handler::<Add>();
        registry.add_handler::<Div>();
    }
}

impl Handler<Add> for Calculator {
    const NAME: &'static str = "add";
    type Reply = u64;
    async fn on_message(&self, request: Request<'_, Add>) -> Result<u64, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(request.a.to_native() + request.b.to_native())
    }
}

impl Handler<Div> for Calculator {
    const NAME: &'static str = "div";
    type Reply = u64;
    async fn on_message(&self, request: Request<'_, Div>) -> Result<u64, Status> {
        let b = request.b.to_native();
        if b == 0 {
            return Err(Status::new(StatusCode::Internal, "division by zero"));
        }
        Ok(request.a.to_native() / b)
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

/// A service that registers one message twice (a collision within the service).
struct Twice;

impl RpcService for Twice {
    fn service_name() -> &'static str {
        "twice"
    }
    fn register_handlers(registry: &mut ServiceRegistry<Self>) {
        registry.add_handler::<String>();
        registry.add_handler::<String>();
    }
}

impl Handler<String> for Twice {
    const NAME: &'static str = "same";
    type Reply = ();
    async fn on_message(&self, _: Request<'_, String>) -> Result<(), Status> {
        Ok(())
    }
}

fn wall() -> WallTime {
    WallTime::from_unix_millis(1_760_000_000_000).unwrap()
}

/// A client connection and a server connection with a registry, in memory.
struct Served {
    client: Connection,
    server: Connection,
    registry: Registry,
}

impl Served {
    fn new() -> Self {
        let now = Instant::now();
        let clock = |t| Arc::new(SharedHlc::new(HlcConfig::new(NodeTag::new(t))));
        Self {
            client: Connection::new(ConnectionConfig::default(), clock(1), now),
            server: Connection::new(ConnectionConfig::default(), clock(2), now),
            registry: Registry::new(),
        }
    }

    fn call<T: Message>(
        &mut self,
        service: &str,
        message: &str,
        request: &T,
    ) -> Result<Frame, Status> {
        let now = Instant::now();
        let call = self
            .client
            .call(now, wall(), MethodId::of(service, message), request, None)
            .unwrap();
        let bytes = self.client.transmit().to_vec();
        self.client.advance_transmit(bytes.len());
        self.server.handle_bytes(now, wall(), &bytes).unwrap();
        while let Some(event) = self.server.poll_event() {
            if let ConnectionEvent::Request {
                request_id,
                deadline,
                frame,
                ..
            } = event
            {
                let mut call = self.registry.start(frame, deadline);
                let server = &mut self.server;
                let polled =
                    call.poll_reply(&mut Context::from_waker(Waker::noop()), |reply, frame| {
                        match reply {
                            Ok(reply) => {
                                assert!(server.respond(wall(), request_id, reply).unwrap())
                            }
                            Err(status) => {
                                assert!(server.respond_error(wall(), request_id, &status))
                            }
                        }
                        server.recycle(frame.expect("no handler here panics").into_body());
                    });
                assert!(polled.is_ready(), "the handlers here never wait");
            }
        }
        let bytes = self.server.transmit().to_vec();
        self.server.advance_transmit(bytes.len());
        self.client.handle_bytes(now, wall(), &bytes).unwrap();
        match self.client.poll_event() {
            Some(ConnectionEvent::Response { call: c, frame }) if c == call => Ok(frame),
            Some(ConnectionEvent::Failed { call: c, status }) if c == call => Err(status),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn as_u64(frame: &Frame) -> u64 {
    frame.access::<rkyv::Archived<u64>>().unwrap().to_native()
}

#[test]
fn calls_reach_their_handlers_and_errors_come_back_typed() {
    let mut s = Served::new();
    s.registry
        .add_service(Calculator {
            calls: AtomicU64::new(0),
        })
        .unwrap();
    s.registry.add_service(Greeter).unwrap();
    assert_eq!(s.registry.services(), vec!["calculator", "greeter"]);
    assert_eq!(
        as_u64(&s.call("calculator", "add", &Add { a: 2, b: 40 }).unwrap()),
        42
    );
    assert_eq!(
        as_u64(&s.call("calculator", "div", &Div { a: 9, b: 3 }).unwrap()),
        3
    );
    let reply = s.call("greeter", "hello", &"ada".to_owned()).unwrap();
    assert_eq!(
        reply
            .access::<rkyv::string::ArchivedString>()
            .unwrap()
            .as_str(),
        "hello, ada"
    );
    let status = s
        .call("calculator", "div", &Div { a: 1, b: 0 })
        .unwrap_err();
    assert_eq!(
        status,
        Status::new(StatusCode::Internal, "division by zero")
    );
    assert_eq!(
        s.call("calculator", "mul", &Add { a: 1, b: 1 })
            .unwrap_err()
            .code,
        StatusCode::NotFound
    );
    // A body that is not the method's message: a 1-byte archive where `Add` needs 16.
    assert_eq!(
        s.call("calculator", "add", &7u8).unwrap_err().code,
        StatusCode::InvalidPayload
    );
}

#[test]
fn removing_a_service_removes_only_its_methods_and_running_calls_finish() {
    let mut s = Served::new();
    s.registry
        .add_service(Calculator {
            calls: AtomicU64::new(0),
        })
        .unwrap();
    s.registry.add_service(Greeter).unwrap();
    // A call that started before the removal keeps its handler.
    let mut out = AlignedVec::<16>::new();
    let header = FrameHeader::request(
        1,
        method_id::<Calculator, Add>(),
        Timestamp::from_packed(0, NodeTag::new(1)),
        None,
    );
    write_frame(&mut out, header, &Add { a: 1, b: 2 }).unwrap();
    let frame = crate::rpc::FrameDecoder::default()
        .decode(&mut &out[..])
        .unwrap()
        .unwrap();
    let mut running = s.registry.start(frame, None);
    assert!(s.registry.remove_service::<Calculator>());
    assert!(!s.registry.remove_service::<Calculator>(), "once");
    let mut reply = AlignedVec::<16>::new();
    let polled = running.poll_reply(&mut Context::from_waker(Waker::noop()), |result, _| {
        result
            .expect("the running call keeps its handler")
            .write(
                &mut reply,
                FrameHeader::new(crate::rpc::FrameKind::Response, 1, header.timestamp),
            )
            .unwrap();
    });
    assert!(polled.is_ready());
    assert!(!reply.is_empty(), "the reply was written");
    // Later calls to it are not found; the other service still serves (datacake's
    // `remove_service` removed every other one).
    assert_eq!(
        s.call("calculator", "add", &Add { a: 1, b: 1 })
            .unwrap_err()
            .code,
        StatusCode::NotFound
    );
    assert!(s.call("greeter", "hello", &"bob".to_owned()).is_ok());
    assert_eq!(s.registry.services(), vec!["greeter"]);
    // And it can come back.
    s.registry
        .add_service(Calculator {
            calls: AtomicU64::new(0),
        })
        .unwrap();
    assert_eq!(
        as_u64(&s.call("calculator", "add", &Add { a: 1, b: 1 }).unwrap()),
        2
    );
}

#[test]
fn names_and_ids_are_checked_at_registration() {
    let registry = Registry::new();
    registry.add_service(Greeter).unwrap();
    assert_eq!(
        registry.add_service(Greeter),
        Err(RegistryError::AlreadyRegistered("greeter"))
    );
    assert!(matches!(
        registry.add_service(Twice),
        Err(RegistryError::Collision {
            service: "twice",
            message: "same",
            ..
        })
    ));
    assert_eq!(
        registry.services(),
        vec!["greeter"],
        "nothing of `twice` was added"
    );
}
