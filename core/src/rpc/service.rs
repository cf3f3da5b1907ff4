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
use std::sync::{Arc, PoisonError, RwLock};
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

/// The future of a served call.
pub type ServeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Box<dyn Reply>, Status>> + Send + 'a>>;

/// A handler, type-erased: validates the frame as its message, runs, boxes the reply.
trait ErasedHandler: Send + Sync {
    fn serve<'a>(self: Arc<Self>, frame: &'a Frame, deadline: Option<Instant>) -> ServeFuture<'a>;
}

struct Typed<S, M> {
    service: Arc<S>,
    _message: std::marker::PhantomData<fn(M)>,
}

impl<S, M> ErasedHandler for Typed<S, M>
where
    S: Handler<M>,
    M: Message,
{
    fn serve<'a>(self: Arc<Self>, frame: &'a Frame, deadline: Option<Instant>) -> ServeFuture<'a> {
        Box::pin(async move {
            let archived = frame
                .access::<M::Archived>()
                .map_err(|e| Status::new(StatusCode::InvalidPayload, e.to_string()))?;
            let header = frame.header();
            let request = Request::<M> {
                archived,
                method: header.method,
                timestamp: header.timestamp,
                deadline,
            };
            let reply = self.service.on_message(request).await?;
            Ok(Box::new(reply) as Box<dyn Reply>)
        })
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
        let handler: Arc<dyn ErasedHandler> = Arc::new(Typed::<S, M> {
            service: Arc::clone(&self.service),
            _message: std::marker::PhantomData,
        });
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
#[derive(Clone, Default)]
pub struct Registry {
    methods: Arc<RwLock<HashMap<MethodId, Entry>>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("methods", &self.read().len())
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

    /// Serves the request in `frame` (a request frame): finds its handler now (a service
    /// removed after this call does not stop it), then, in the future returned, validates the
    /// body as its message and runs the handler. `deadline` is the call's, in local time.
    ///
    /// The future's error is the status the caller gets: [`StatusCode::NotFound`] for an
    /// unknown or removed method, [`StatusCode::InvalidPayload`] for a body that does not
    /// validate, or the handler's own.
    pub fn serve<'a>(&self, frame: &'a Frame, deadline: Option<Instant>) -> ServeFuture<'a> {
        let method = frame.header().method;
        let handler = self.read().get(&method).map(|e| Arc::clone(&e.handler));
        match handler {
            Some(handler) => handler.serve(frame, deadline),
            None => Box::pin(std::future::ready(Err(Status::new(
                StatusCode::NotFound,
                format!("no method {:#018x}", method.0),
            )))),
        }
    }
}

#[cfg(test)]
mod tests;
