//! The peer's calls on one connection, being served: their handlers' futures, run by the
//! connection's own task without a runtime (each call wakes only itself), with no allocation
//! per call once warm.
//!
//! Owns [`Serving`]. A driver starts each request the [`Connection`](super::Connection) hands
//! it ([`Serving::start`] with a [`ServedCall`] from [`Registry::start`](super::Registry::start)),
//! cancels the ones the peer gives up on, and polls the set from its connection loop; each
//! finished call comes out through a callback, to be answered on the connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use super::frame::Frame;
use super::service::{Reply, ServedCall};
use super::status::Status;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the calls' wakers share with the set.
#[derive(Debug, Default)]
struct Shared {
    /// Entries woken since the set last polled.
    ready: Mutex<Vec<usize>>,
    /// The task polling the set.
    task: Mutex<Option<Waker>>,
}

/// The waker of one entry: queues the entry once, then wakes the polling task.
#[derive(Debug)]
struct EntryWaker {
    index: usize,
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for EntryWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            lock(&self.shared.ready).push(self.index);
        }
        if let Some(task) = lock(&self.shared.task).as_ref() {
            task.wake_by_ref();
        }
    }
}

#[derive(Debug)]
struct Entry {
    request_id: u64,
    call: Option<ServedCall>,
    flag: Arc<EntryWaker>,
    waker: Waker,
}

/// The calls being served on one connection. See the module documentation.
///
/// Handlers run on the task that polls the set: a handler that blocks that thread holds up
/// every call of its connection (move blocking or long CPU work to a thread of its own).
///
/// ```
/// use std::task::{Context, Poll, Waker};
/// use cohort_core::rpc::{FrameDecoder, FrameHeader, Handler, MethodId, Registry, Request,
///     RpcService, ServiceRegistry, Serving, Status, write_frame};
/// use cohort_core::{NodeTag, Timestamp};
///
/// struct Echo;
/// impl RpcService for Echo {
///     fn service_name() -> &'static str { "echo" }
///     fn register_handlers(registry: &mut ServiceRegistry<Self>) {
///         registry.add_handler::<u64>();
///     }
/// }
/// impl Handler<u64> for Echo {
///     const NAME: &'static str = "n";
///     type Reply = u64;
///     async fn on_message(&self, request: Request<'_, u64>) -> Result<u64, Status> {
///         Ok(request.to_native())
///     }
/// }
///
/// let registry = Registry::new();
/// registry.add_service(Echo).unwrap();
/// let header = FrameHeader::request(7, MethodId::of("echo", "n"),
///     Timestamp::from_packed(1 << 20, NodeTag::new(1)), None);
/// let mut bytes = rkyv::util::AlignedVec::<16>::new();
/// write_frame(&mut bytes, header, &42u64).unwrap();
/// let frame = FrameDecoder::default().decode(&mut &bytes[..]).unwrap().unwrap();
///
/// let mut serving = Serving::new();
/// serving.start(7, registry.start(frame, None));
/// let mut answered = Vec::new();
/// let polled = serving.poll(&mut Context::from_waker(Waker::noop()), |id, reply, _frame| {
///     answered.push((id, reply.is_ok()));
/// });
/// assert_eq!(polled, Poll::Ready(1));
/// assert_eq!(answered, [(7, true)]);
/// assert!(serving.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct Serving {
    entries: Vec<Entry>,
    free: Vec<usize>,
    by_request: HashMap<u64, usize>,
    shared: Arc<Shared>,
    /// The woken entries being polled now (swapped with `shared.ready`, so both keep their
    /// capacity).
    polling: Vec<usize>,
}

impl Serving {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The calls being served.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_request.len()
    }

    /// Whether no call is being served.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_request.is_empty()
    }

    /// Adds the peer's call `request_id`; it is polled at the next [`poll`](Self::poll) (the
    /// polling task is not woken: call `poll` after starting calls). A call already served
    /// under that id is dropped (cancelled) first.
    pub fn start(&mut self, request_id: u64, call: ServedCall) {
        self.cancel(request_id);
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = self.entries.len();
                let flag = Arc::new(EntryWaker {
                    index,
                    queued: AtomicBool::new(false),
                    shared: Arc::clone(&self.shared),
                });
                let waker = Waker::from(Arc::clone(&flag));
                self.entries.push(Entry {
                    request_id,
                    call: None,
                    flag,
                    waker,
                });
                index
            }
        };
        let entry = &mut self.entries[index];
        entry.request_id = request_id;
        entry.call = Some(call);
        self.by_request.insert(request_id, index);
        // Queued for the next poll, which the caller makes anyway: waking the polling task
        // from itself would only make the runtime poll it once more.
        if !entry.flag.queued.swap(true, Ordering::AcqRel) {
            lock(&self.shared.ready).push(index);
        }
    }

    /// Stops serving `request_id` (its handler's future is dropped). Returns whether it was
    /// being served.
    pub fn cancel(&mut self, request_id: u64) -> bool {
        let Some(index) = self.by_request.remove(&request_id) else {
            return false;
        };
        // Dropping the call recycles its slot; a late wake of this entry polls nothing.
        self.entries[index].call = None;
        self.free.push(index);
        true
    }

    /// Drops every call being served.
    pub fn clear(&mut self) {
        let ids: Vec<u64> = self.by_request.keys().copied().collect();
        for id in ids {
            self.cancel(id);
        }
    }

    /// Polls the calls woken since the last poll (registering the task in `cx` to be woken
    /// when another is ready). Each call that finished is handed to `done` with its request
    /// id, its reply or status, and its request frame (see [`ServedCall::poll_reply`]).
    /// Returns `Ready` with how many finished, or `Pending` when none did.
    pub fn poll<F>(&mut self, cx: &mut Context<'_>, mut done: F) -> Poll<usize>
    where
        F: FnMut(u64, Result<&dyn Reply, Status>, Option<Frame>),
    {
        {
            let mut task = lock(&self.shared.task);
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        std::mem::swap(&mut *lock(&self.shared.ready), &mut self.polling);
        let mut finished = 0;
        for i in 0..self.polling.len() {
            let index = self.polling[i];
            let entry = &mut self.entries[index];
            entry.flag.queued.store(false, Ordering::Release);
            let Some(call) = entry.call.as_mut() else {
                continue;
            };
            let request_id = entry.request_id;
            let mut entry_cx = Context::from_waker(&entry.waker);
            let polled = call.poll_reply(&mut entry_cx, |reply, frame| {
                done(request_id, reply, frame);
            });
            if polled.is_ready() {
                entry.call = None;
                self.by_request.remove(&request_id);
                self.free.push(index);
                finished += 1;
            }
        }
        self.polling.clear();
        if finished > 0 {
            Poll::Ready(finished)
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests;
