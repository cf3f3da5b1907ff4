//! The set of served calls, without a runtime: handlers that wait on a gate opened by the
//! test, cancellation, panics, and a service removed while its calls run.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use rkyv::util::AlignedVec;

use super::Serving;
use crate::clock::{NodeTag, Timestamp};
use crate::rpc::{
    Frame, FrameDecoder, FrameHeader, Handler, MethodId, Registry, Request, RpcService,
    ServiceRegistry, Status, StatusCode, write_frame,
};

/// A gate the test opens; handlers wait on it.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    waiters: Mutex<Vec<Waker>>,
}

impl Gate {
    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        for waker in self.waiters.lock().unwrap().drain(..) {
            waker.wake();
        }
    }

    fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.open.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            self.waiters.lock().unwrap().push(cx.waker().clone());
            Poll::Pending
        })
    }
}

/// Drops set a flag: whether a handler's future was dropped.
struct OnDrop(Arc<AtomicUsize>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

struct Slow {
    gate: Arc<Gate>,
    dropped: Arc<AtomicUsize>,
}

impl RpcService for Slow {
    fn service_name() -> &'static str {
        "slow"
    }
    fn register_handlers(registry: &mut ServiceRegistry<Self>) {
        registry.add_handler::<u64>();
        registry.add_handler::<u8>();
    }
}

impl Handler<u64> for Slow {
    const NAME: &'static str = "double";
    type Reply = u64;
    async fn on_message(&self, request: Request<'_, u64>) -> Result<u64, Status> {
        let _guard = OnDrop(Arc::clone(&self.dropped));
        self.gate.wait().await;
        Ok(request.to_native() * 2)
    }
}

impl Handler<u8> for Slow {
    const NAME: &'static str = "panic";
    type Reply = u8;
    async fn on_message(&self, request: Request<'_, u8>) -> Result<u8, Status> {
        assert!(*request != 13, "the handler met 13");
        Ok(*request)
    }
}

fn frame<T>(id: u64, message: &str, value: &T) -> Frame
where
    T: for<'a, 'b> rkyv::Serialize<crate::rpc::FrameSerializer<'a, 'b>>,
{
    let header = FrameHeader::request(
        id,
        MethodId::of("slow", message),
        Timestamp::from_packed(1 << 20, NodeTag::new(1)),
        None,
    );
    let mut bytes = AlignedVec::<16>::new();
    write_frame(&mut bytes, header, value).unwrap();
    FrameDecoder::default()
        .decode(&mut &bytes[..])
        .unwrap()
        .unwrap()
}

/// Counts wakes of the polling task.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

type Answers = Vec<(u64, Result<Vec<u8>, Status>, bool)>;

/// Polls `serving` once with `waker`; the answers as (id, reply bytes or status, frame back).
fn poll(serving: &mut Serving, waker: &Waker) -> (Poll<usize>, Answers) {
    let mut answers = Vec::new();
    let polled = serving.poll(&mut Context::from_waker(waker), |id, reply, frame| {
        let reply = reply.map(|r| {
            let mut out = AlignedVec::<16>::new();
            r.write(
                &mut out,
                FrameHeader::new(
                    crate::rpc::FrameKind::Response,
                    id,
                    Timestamp::from_packed(1 << 20, NodeTag::new(2)),
                ),
            )
            .unwrap();
            out.to_vec()
        });
        answers.push((id, reply, frame.is_some()));
    });
    (polled, answers)
}

fn setup() -> (Registry, Arc<Gate>, Arc<AtomicUsize>) {
    let gate = Arc::new(Gate::default());
    let dropped = Arc::new(AtomicUsize::new(0));
    let registry = Registry::new();
    registry
        .add_service(Slow {
            gate: Arc::clone(&gate),
            dropped: Arc::clone(&dropped),
        })
        .unwrap();
    (registry, gate, dropped)
}

#[test]
fn a_waiting_handler_wakes_the_task_and_finishes_on_a_later_poll() {
    let (registry, gate, _) = setup();
    let task = Arc::new(CountingWaker::default());
    let waker = Waker::from(Arc::clone(&task));
    let mut serving = Serving::new();
    serving.start(1, registry.start(frame(1, "double", &21u64), None));
    serving.start(2, registry.start(frame(2, "double", &5u64), None));
    assert_eq!(serving.len(), 2);
    let (polled, answers) = poll(&mut serving, &waker);
    assert_eq!(polled, Poll::Pending);
    assert!(answers.is_empty());
    assert_eq!(task.0.load(Ordering::SeqCst), 0, "nothing is ready yet");

    gate.open();
    assert!(
        task.0.load(Ordering::SeqCst) >= 1,
        "opening the gate woke the task"
    );
    let (polled, mut answers) = poll(&mut serving, &waker);
    assert_eq!(polled, Poll::Ready(2));
    answers.sort_by_key(|a| a.0);
    assert_eq!(answers.len(), 2);
    assert!(
        answers
            .iter()
            .all(|(_, reply, frame)| reply.is_ok() && *frame)
    );
    assert!(serving.is_empty());
    // Nothing more to do: pending, and no answer twice.
    let (polled, answers) = poll(&mut serving, &waker);
    assert_eq!(polled, Poll::Pending);
    assert!(answers.is_empty());
}

#[test]
fn a_cancelled_call_drops_its_handler_and_is_never_answered() {
    let (registry, gate, dropped) = setup();
    let waker = Waker::noop();
    let mut serving = Serving::new();
    serving.start(1, registry.start(frame(1, "double", &1u64), None));
    serving.start(2, registry.start(frame(2, "double", &2u64), None));
    assert_eq!(poll(&mut serving, waker).0, Poll::Pending);
    assert!(serving.cancel(1));
    assert!(!serving.cancel(1), "once");
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the handler's future was dropped"
    );
    gate.open();
    let (polled, answers) = poll(&mut serving, waker);
    assert_eq!(polled, Poll::Ready(1));
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, 2);
    // Its slot is reused by the next call, which runs normally.
    serving.start(3, registry.start(frame(3, "double", &3u64), None));
    let (_, answers) = poll(&mut serving, waker);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, 3);
    assert!(answers[0].1.is_ok());
}

#[test]
fn a_panicking_handler_is_answered_internal_and_the_others_go_on() {
    let (registry, gate, _) = setup();
    gate.open();
    let waker = Waker::noop();
    let mut serving = Serving::new();
    serving.start(1, registry.start(frame(1, "panic", &13u8), None));
    serving.start(2, registry.start(frame(2, "panic", &7u8), None));
    serving.start(3, registry.start(frame(3, "missing", &7u8), None));
    let (polled, mut answers) = poll(&mut serving, waker);
    assert_eq!(polled, Poll::Ready(3));
    answers.sort_by_key(|a| a.0);
    let status = answers[0].1.as_ref().unwrap_err();
    assert_eq!(status.code, StatusCode::Internal);
    assert_eq!(status.message, "the handler panicked");
    assert!(!answers[0].2, "the panicked call's frame is gone");
    assert!(answers[1].1.is_ok() && answers[1].2);
    assert_eq!(
        answers[2].1.as_ref().unwrap_err().code,
        StatusCode::NotFound
    );
    // The handler still serves.
    serving.start(4, registry.start(frame(4, "panic", &9u8), None));
    let (_, answers) = poll(&mut serving, waker);
    assert!(answers[0].1.is_ok());
}

#[test]
fn a_call_started_before_its_service_is_removed_finishes() {
    let (registry, gate, _) = setup();
    let waker = Waker::noop();
    let mut serving = Serving::new();
    serving.start(1, registry.start(frame(1, "double", &4u64), None));
    assert_eq!(poll(&mut serving, waker).0, Poll::Pending);
    assert!(registry.remove_service::<Slow>());
    gate.open();
    let (_, answers) = poll(&mut serving, waker);
    assert!(answers[0].1.is_ok());
    serving.start(2, registry.start(frame(2, "double", &4u64), None));
    let (_, answers) = poll(&mut serving, waker);
    assert_eq!(
        answers[0].1.as_ref().unwrap_err().code,
        StatusCode::NotFound
    );
}

#[test]
fn a_reused_request_id_replaces_the_call_and_clear_drops_everything() {
    let (registry, _gate, dropped) = setup();
    let mut serving = Serving::new();
    serving.start(1, registry.start(frame(1, "double", &1u64), None));
    assert_eq!(poll(&mut serving, Waker::noop()).0, Poll::Pending);
    serving.start(1, registry.start(frame(1, "double", &2u64), None));
    assert_eq!(serving.len(), 1);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    serving.start(2, registry.start(frame(2, "double", &2u64), None));
    assert_eq!(poll(&mut serving, Waker::noop()).0, Poll::Pending);
    serving.clear();
    assert!(serving.is_empty());
    assert_eq!(dropped.load(Ordering::SeqCst), 3);
}
