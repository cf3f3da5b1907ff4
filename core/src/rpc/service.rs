//! Services: what a node serves over RPC, declared by name, added and removed at run time.
//!
//! Owns [`RpcService`], [`Handler`], [`Request`], the [`Message`] bound every request and reply
//! type meets, and the [`Registry`] that maps method ids to handlers. A handler's future is
//! runtime-agnostic (`async fn` in the impl); the driver runs it. Nothing here does I/O.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;

use super::frame::{Frame, FrameError, FrameHeader, MethodId, write_frame};
use super::status::{Status, StatusCode};
use crate::clock::Timestamp;

/// The serializer a [`Message`] is written with: straight into a connection's send buffer.
pub type FrameSerializer<'a, 'b> =
    HighSerializer<&'b mut AlignedVec<16>, ArenaHandle<'a>, rancor::Error>;

/// What a request or reply type must be: archivable with rkyv into a frame, and its archive
/// checkable (bytecheck) so that it can be validated when it arrives. Implemented for every
/// type that qualifies; derive `rkyv::Archive` and `rkyv::Serialize` on yours.
pub trait Message:
    rkyv::Archive<
        Archived: rkyv::Portable
                      + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                      + Send
                      + Sync
                      + 'static,
    > + for<'a, 'b> rkyv::Serialize<FrameSerializer<'a, 'b>>
    + Send
    + Sync
    + 'static
{
}

impl<T> Message for T where
    T: rkyv::Archive<
            Archived: rkyv::Portable
                          + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                          + Send
                          + Sync
                          + 'static,
        > + for<'a, 'b> rkyv::Serialize<FrameSerializer<'a, 'b>>
        + Send
        + Sync
        + 'static
{
}

/// A request as a handler gets it: the archived message, validated once and read in place
/// (it derefs to `&Archived<M>`), and the call's context.
pub struct Request<'a, M: Message> {
    archived: &'a M::Archived,
    method: MethodId,
    timestamp: Timestamp,
    deadline: Option<Instant>,
}

impl<M: Message> Request<'_, M> {
    /// The method called.
    #[must_use]
    pub fn method(&self) -> MethodId {
        self.method
    }

    /// The caller's hybrid logical clock when it sent the request.
    #[must_use]
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// When the caller gives up (local time), if it set a deadline.
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

impl<M: Message> Deref for Request<'_, M> {
    type Target = M::Archived;

    fn deref(&self) -> &M::Archived {
        self.archived
    }
}

impl<M: Message> fmt::Debug for Request<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

/// A service: a name, and the messages it handles ([`Handler`]s), each under a declared name
/// ([`Handler::NAME`]) so that its method id is `MethodId::of(service_name, NAME)`: the same
/// in every build, and known to callers from the types alone.
///
/// ```
/// use cohort_core::rpc::{Handler, Request, RpcService, ServiceRegistry, Status};
///
/// #[derive(rkyv::Archive, rkyv::Serialize)]
/// pub struct Add {
///     pub a: u64,
///     pub b: u64,
/// }
///
/// pub struct Calculator;
///
/// impl RpcService for Calculator {
///     fn service_name() -> &'static str {
///         "calculator"
///     }
///     fn register_handlers(registry: &mut ServiceRegistry<Self>) {
///         registry.add_handler::<Add>();
///     }
/// }
///
/// impl Handler<Add> for Calculator {
///     const NAME: &'static str = "add";
///     type Reply = u64;
///     async fn on_message(&self, request: Request<'_, Add>) -> Result<u64, Status> {
///         Ok(request.a.to_native() + request.b.to_native())
///     }
/// }
/// ```
pub trait RpcService: Send + Sync + 'static {
    /// The service's name on the wire (part of every method id). Must not contain `/`.
    fn service_name() -> &'static str
    where
        Self: Sized;

    /// Registers the messages the service handles.
    fn register_handlers(registry: &mut ServiceRegistry<Self>)
    where
        Self: Sized;
}

/// How a service handles one message type `M`.
///
/// Write `on_message` as an `async fn`; its future must be `Send` (it runs on the driver's
/// runtime, any thread). Do not use `#[async_trait]`.
pub trait Handler<M: Message>: RpcService {
    /// The message's name in the service (with the service's name, it makes the method id).
    /// Must not be empty or contain `/`.
    const NAME: &'static str;

    /// The reply.
    type Reply: Message;

    /// Serves one request. An `Err` reaches the caller as that status.
    fn on_message(
        &self,
        request: Request<'_, M>,
    ) -> impl Future<Output = Result<Self::Reply, Status>> + Send;
}

/// The method id of message `M` of service `S`: `MethodId::of(S::service_name(),
/// <S as Handler<M>>::NAME)`.
#[must_use]
pub fn method_id<S: Handler<M>, M: Message>() -> MethodId {
    MethodId::of(S::service_name(), <S as Handler<M>>::NAME)
}

/// A reply, type-erased, ready to be written into a frame.
pub trait Reply: Send {
    /// Writes the reply as the body of a frame with `header` into `out`.
    ///
    /// # Errors
    ///
    /// [`FrameError::Serialize`] when it cannot be serialized.
    fn write(&self, out: &mut AlignedVec<16>, header: FrameHeader) -> Result<(), FrameError>;
}

impl<T: Message> Reply for T {
    fn write(&self, out: &mut AlignedVec<16>, header: FrameHeader) -> Result<(), FrameError> {
        write_frame(out, header, self)
    }
}

/// How many idle slots a handler keeps for its next calls (each holds one handler future's
/// memory); slots beyond it are freed when their call ends.
const MAX_POOLED_SLOTS: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the handler of `M` on a request: validates the body as `M`, calls the handler, and
/// gives the frame back with the result (its buffer is then reused for another frame).
async fn serve_owned<S, M>(
    service: Arc<S>,
    frame: Frame,
    deadline: Option<Instant>,
) -> (Result<<S as Handler<M>>::Reply, Status>, Frame)
where
    S: Handler<M>,
    M: Message,
{
    let result = match frame.access::<M::Archived>() {
        Ok(archived) => {
            let header = frame.header();
            let request = Request::<M> {
                archived,
                method: header.method,
                timestamp: header.timestamp,
                deadline,
            };
            service.on_message(request).await
        }
        Err(error) => Err(Status::new(StatusCode::InvalidPayload, error.to_string())),
    };
    (result, frame)
}

/// What a finished slot hands out: the reply or the status, and the request's frame (none
/// when the handler panicked).
type Respond<'r> = dyn FnMut(Result<&dyn Reply, Status>, Option<Frame>) + 'r;

/// One handler future's memory, reused from call to call.
trait ErasedSlot: Send {
    /// Starts serving `frame` (the slot is empty).
    fn start(&mut self, frame: Frame, deadline: Option<Instant>);
    /// Polls the handler; when it finished, hands its outcome to `respond` and empties.
    fn poll(&mut self, cx: &mut Context<'_>, respond: &mut Respond<'_>) -> Poll<()>;
    /// Drops the handler's future, if any (the call is cancelled).
    fn clear(&mut self);
}

struct Slot<S, G, F> {
    service: Arc<S>,
    serve: G,
    /// Pinned once, on the heap; `Pin::set` puts each call's future in place.
    future: Pin<Box<Option<F>>>,
}

impl<S, G, F, R> ErasedSlot for Slot<S, G, F>
where
    S: Send + Sync + 'static,
    G: Fn(Arc<S>, Frame, Option<Instant>) -> F + Send + Sync + 'static,
    F: Future<Output = (Result<R, Status>, Frame)> + Send + 'static,
    R: Message,
{
    fn start(&mut self, frame: Frame, deadline: Option<Instant>) {
        let future = (self.serve)(Arc::clone(&self.service), frame, deadline);
        self.future.set(Some(future));
    }

    fn poll(&mut self, cx: &mut Context<'_>, respond: &mut Respond<'_>) -> Poll<()> {
        let Some(future) = self.future.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        let (result, frame) = std::task::ready!(future.poll(cx));
        self.future.set(None);
        match &result {
            Ok(reply) => respond(Ok(reply), Some(frame)),
            Err(status) => respond(Err(status.clone()), Some(frame)),
        }
        Poll::Ready(())
    }

    fn clear(&mut self) {
        self.future.set(None);
    }
}

/// A handler, type-erased: starts calls in slots of its own, kept for reuse.
trait ErasedHandler: Send + Sync {
    fn start(&self, frame: Frame, deadline: Option<Instant>) -> Box<dyn ErasedSlot>;
    fn recycle(&self, slot: Box<dyn ErasedSlot>);
}

struct Pooled<S, G, F> {
    service: Arc<S>,
    serve: G,
    idle: Mutex<Vec<Box<dyn ErasedSlot>>>,
    _future: std::marker::PhantomData<fn() -> F>,
}

impl<S, G, F, R> ErasedHandler for Pooled<S, G, F>
where
    S: Send + Sync + 'static,
    G: Fn(Arc<S>, Frame, Option<Instant>) -> F + Copy + Send + Sync + 'static,
    F: Future<Output = (Result<R, Status>, Frame)> + Send + 'static,
    R: Message,
{
    fn start(&self, frame: Frame, deadline: Option<Instant>) -> Box<dyn ErasedSlot> {
        let idle = lock(&self.idle).pop();
        let mut slot = idle.unwrap_or_else(|| {
            Box::new(Slot {
                service: Arc::clone(&self.service),
                serve: self.serve,
                future: Box::pin(None),
            })
        });
        slot.start(frame, deadline);
        slot
    }

    fn recycle(&self, mut slot: Box<dyn ErasedSlot>) {
        slot.clear();
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_POOLED_SLOTS {
            idle.push(slot);
        }
    }
}

fn pooled<S, G, F, R>(service: Arc<S>, serve: G) -> Arc<dyn ErasedHandler>
where
    S: Send + Sync + 'static,
    G: Fn(Arc<S>, Frame, Option<Instant>) -> F + Copy + Send + Sync + 'static,
    F: Future<Output = (Result<R, Status>, Frame)> + Send + 'static,
    R: Message,
{
    Arc::new(Pooled {
        service,
        serve,
        idle: Mutex::new(Vec::new()),
        _future: std::marker::PhantomData,
    })
}

/// A call being served ([`Registry::start`]): its handler's future, in memory the handler
/// reuses from call to call (no allocation per call once warm). Poll it with
/// [`poll_reply`](Self::poll_reply); dropping it stops the handler (the call is cancelled).
pub struct ServedCall {
    state: CallState,
    /// Counts the call in its node's calls in flight while it lives.
    _permit: Option<Permit>,
}

/// The calls a node serves at once, across its connections, and the most it may.
#[derive(Debug)]
struct InFlight {
    count: AtomicUsize,
    max: AtomicUsize,
}

impl InFlight {
    /// A permit for one more call, unless the node serves its most already.
    fn acquire(self: &Arc<Self>) -> Option<Permit> {
        let max = self.max.load(Ordering::Relaxed);
        let mut count = self.count.load(Ordering::Relaxed);
        loop {
            if count >= max {
                return None;
            }
            match self.count.compare_exchange_weak(
                count,
                count + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Permit(Arc::clone(self))),
                Err(now) => count = now,
            }
        }
    }
}

/// One call counted in [`InFlight`]; dropping it releases the count.
#[derive(Debug)]
struct Permit(Arc<InFlight>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
    }
}

enum CallState {
    Running {
        handler: Arc<dyn ErasedHandler>,
        slot: Box<dyn ErasedSlot>,
    },
    NotFound {
        method: MethodId,
        frame: Frame,
    },
    /// The node serves its most calls already.
    Busy {
        frame: Frame,
        max: usize,
    },
    Done,
}

impl ServedCall {
    /// Polls the handler. When it finished, `respond` gets the reply (to write with
    /// [`Connection::respond`](super::Connection::respond)) or the status (for
    /// [`Connection::respond_error`](super::Connection::respond_error)), and the request's
    /// frame (to give its buffer back with [`Connection::recycle`](super::Connection::recycle);
    /// none if the handler panicked), and this returns `Ready`. Polled again after that, it
    /// stays `Ready` and calls nothing.
    ///
    /// A handler that panics is answered [`StatusCode::Internal`] ("the handler panicked");
    /// the panic does not reach the caller of this method.
    pub fn poll_reply<F>(&mut self, cx: &mut Context<'_>, respond: F) -> Poll<()>
    where
        F: FnOnce(Result<&dyn Reply, Status>, Option<Frame>),
    {
        let mut respond = Some(respond);
        let mut once = |result: Result<&dyn Reply, Status>, frame: Option<Frame>| {
            if let Some(respond) = respond.take() {
                respond(result, frame);
            }
        };
        match &mut self.state {
            CallState::Done => Poll::Ready(()),
            CallState::NotFound { .. } => {
                if let CallState::NotFound { method, frame } =
                    std::mem::replace(&mut self.state, CallState::Done)
                {
                    let status = Status::new(
                        StatusCode::NotFound,
                        format!("no method {:#018x}", method.0),
                    );
                    once(Err(status), Some(frame));
                }
                Poll::Ready(())
            }
            CallState::Busy { .. } => {
                if let CallState::Busy { frame, max } =
                    std::mem::replace(&mut self.state, CallState::Done)
                {
                    let status = Status::new(
                        StatusCode::Unavailable,
                        format!("the node serves its most calls at once ({max})"),
                    );
                    once(Err(status), Some(frame));
                }
                Poll::Ready(())
            }
            CallState::Running { slot, .. } => {
                let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    slot.poll(cx, &mut once)
                }));
                match polled {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(())) => {}
                    Err(_) => once(
                        Err(Status::new(StatusCode::Internal, "the handler panicked")),
                        None,
                    ),
                }
                self.finish(polled.is_ok());
                Poll::Ready(())
            }
        }
    }

    /// Ends the call: its slot goes back to its handler (not a slot whose handler panicked).
    fn finish(&mut self, reuse: bool) {
        if let CallState::Running { handler, mut slot } =
            std::mem::replace(&mut self.state, CallState::Done)
        {
            if reuse {
                handler.recycle(slot);
            } else {
                // Whatever the panic left in it goes now; a second panic there is contained.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| slot.clear()));
            }
        }
    }
}

impl Drop for ServedCall {
    fn drop(&mut self) {
        if let CallState::Running { slot, .. } = &mut self.state {
            // The handler's future is dropped here; a panic in its drop must not unwind out
            // of the driver's loop.
            let cleared =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| slot.clear())).is_ok();
            self.finish(cleared);
        }
    }
}

impl fmt::Debug for ServedCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            CallState::Running { .. } => "running",
            CallState::NotFound { .. } => "not found",
            CallState::Busy { .. } => "busy",
            CallState::Done => "done",
        };
        f.debug_struct("ServedCall").field("state", &state).finish()
    }
}

/// What [`RpcService::register_handlers`] fills in.
pub struct ServiceRegistry<S> {
    service: Arc<S>,
    handlers: Vec<(MethodId, &'static str, Arc<dyn ErasedHandler>)>,
}

impl<S: RpcService> ServiceRegistry<S> {
    /// Registers the handler of `M` (method id [`method_id::<S, M>()`](method_id)).
    pub fn add_handler<M: Message>(&mut self)
    where
        S: Handler<M>,
    {
        let message_name = <S as Handler<M>>::NAME;
        let id = method_id::<S, M>();
        let handler = pooled(Arc::clone(&self.service), serve_owned::<S, M>);
        self.handlers.push((id, message_name, handler));
    }
}

impl<S> fmt::Debug for ServiceRegistry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceRegistry")
            .field("handlers", &self.handlers.len())
            .finish()
    }
}

/// Why a service could not be added. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A service of that name is already registered.
    #[error("a service named {0:?} is already registered")]
    AlreadyRegistered(&'static str),
    /// Two names hash to the same method id (with a service already registered, or within
    /// the service): rename one.
    #[error("method {service}/{message} has the id {id:#018x} of another method")]
    Collision {
        /// The service added.
        service: &'static str,
        /// Its message whose id collides.
        message: &'static str,
        /// The id.
        id: u64,
    },
    /// The service's name or a message name contains `/`, or is empty.
    #[error("invalid service or message name {0:?}")]
    InvalidName(&'static str),
}

#[derive(Clone)]
struct Entry {
    service: &'static str,
    handler: Arc<dyn ErasedHandler>,
}

/// The services a node serves: added and removed at run time, shared by every connection.
/// A call already running keeps its handler when its service is removed; later calls get
/// [`StatusCode::NotFound`].
#[derive(Clone)]
pub struct Registry {
    methods: Arc<RwLock<HashMap<MethodId, Entry>>>,
    in_flight: Arc<InFlight>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            methods: Arc::default(),
            in_flight: Arc::new(InFlight {
                count: AtomicUsize::new(0),
                max: AtomicUsize::new(usize::MAX),
            }),
        }
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("methods", &self.read().len())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<MethodId, Entry>> {
        self.methods.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `service` with every message it registers.
    ///
    /// # Errors
    ///
    /// A [`RegistryError`] (a name taken, a colliding method id, a bad name); nothing changed.
    pub fn add_service<S: RpcService>(&self, service: S) -> Result<(), RegistryError> {
        let name = S::service_name();
        if name.is_empty() || name.contains('/') {
            return Err(RegistryError::InvalidName(name));
        }
        let mut registry = ServiceRegistry {
            service: Arc::new(service),
            handlers: Vec::new(),
        };
        S::register_handlers(&mut registry);
        let mut methods = self.methods.write().unwrap_or_else(PoisonError::into_inner);
        if methods.values().any(|e| e.service == name) {
            return Err(RegistryError::AlreadyRegistered(name));
        }
        let mut ids: Vec<MethodId> = Vec::with_capacity(registry.handlers.len());
        for (id, message, _) in &registry.handlers {
            if message.is_empty() || message.contains('/') {
                return Err(RegistryError::InvalidName(message));
            }
            if id.0 == 0 || methods.contains_key(id) || ids.contains(id) {
                return Err(RegistryError::Collision {
                    service: name,
                    message,
                    id: id.0,
                });
            }
            ids.push(*id);
        }
        for (id, _, handler) in registry.handlers {
            methods.insert(
                id,
                Entry {
                    service: name,
                    handler,
                },
            );
        }
        Ok(())
    }

    /// Removes the service `S` (its methods only: every other service stays). Returns whether
    /// it was registered.
    pub fn remove_service<S: RpcService>(&self) -> bool {
        self.remove_service_named(S::service_name())
    }

    /// Removes the service named `name`. Returns whether it was registered.
    pub fn remove_service_named(&self, name: &str) -> bool {
        let mut methods = self.methods.write().unwrap_or_else(PoisonError::into_inner);
        let before = methods.len();
        methods.retain(|_, e| e.service != name);
        methods.len() != before
    }

    /// The names of the services registered, sorted.
    #[must_use]
    pub fn services(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.read().values().map(|e| e.service).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Starts serving the request in `frame` (a request frame): finds its handler now (a
    /// service removed after this call does not stop it); the [`ServedCall`] then validates
    /// the body as the handler's message and runs the handler. `deadline` is the call's, in
    /// local time.
    ///
    /// Its outcome is the reply, or the status the caller gets: [`StatusCode::NotFound`] for
    /// an unknown or removed method, [`StatusCode::InvalidPayload`] for a body that does not
    /// validate, or the handler's own.
    ///
    /// Past [`set_max_in_flight`](Self::set_max_in_flight) calls being served at once (by
    /// every connection of the node together), the call is answered
    /// [`StatusCode::Unavailable`] at once, without running its handler.
    #[must_use]
    pub fn start(&self, frame: Frame, deadline: Option<Instant>) -> ServedCall {
        let method = frame.header().method;
        let handler = self.read().get(&method).map(|e| Arc::clone(&e.handler));
        let Some(handler) = handler else {
            return ServedCall {
                state: CallState::NotFound { method, frame },
                _permit: None,
            };
        };
        let Some(permit) = self.in_flight.acquire() else {
            let max = self.in_flight.max.load(Ordering::Relaxed);
            return ServedCall {
                state: CallState::Busy { frame, max },
                _permit: None,
            };
        };
        ServedCall {
            state: CallState::Running {
                slot: handler.start(frame, deadline),
                handler,
            },
            _permit: Some(permit),
        }
    }

    /// Serves at most `max` calls at once, across every connection sharing this registry
    /// (a node's); more are answered [`StatusCode::Unavailable`]. Default: no bound (a
    /// driver sets [`ServerLimits::max_calls_in_flight`](super::ServerLimits::max_calls_in_flight)).
    pub fn set_max_in_flight(&self, max: usize) {
        self.in_flight.max.store(max.max(1), Ordering::Relaxed);
    }

    /// The calls being served now (their handlers running).
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
