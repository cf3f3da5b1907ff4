//! RPC on TCP: the node's server (a listener and a task per connection, which also runs the
//! handlers of the calls it serves) and its clients (one multiplexed connection per peer),
//! around core's connection machine, registry and set of served calls.
//!
//! Owns the sockets and tasks of RPC, nothing of the protocol: framing, request ids,
//! deadlines, cancellation, bounds, keep-alive and the clock are core's
//! [`Connection`](cohort_core::rpc::Connection); services and dispatch are core's
//! [`Registry`](cohort_core::rpc::Registry).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A reply ([`RpcClient::call`]), from the core.
pub use cohort_core::rpc::Response;
use cohort_core::rpc::{
    Backoff, CallId, Connection, ConnectionConfig as RpcConnectionConfig, Frame, Handler, Message,
    Registry, Replies, RpcService, ServerLimits, Serving, Status, StatusCode, method_id,
};
use cohort_core::{SharedHlc, WallClock, WallTime};
use rkyv::util::AlignedVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::clock::wall_now;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the connection task and the callers share of one connection.
struct ConnState {
    conn: Connection,
    /// Our calls waiting for their replies.
    replies: Replies,
    /// Shutting down: read nothing more, close once everything is written.
    closing: bool,
}

struct Conn {
    state: Mutex<ConnState>,
    wake: Notify,
    /// The node's wall clock, for the timestamps of this connection's frames.
    wall: WallClock,
}

impl Conn {
    fn new(clock: Arc<SharedHlc>, wall: WallClock, config: RpcConnectionConfig) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(ConnState {
                conn: Connection::new(config, clock, Instant::now()),
                replies: Replies::new(),
                closing: false,
            }),
            wake: Notify::new(),
            wall,
        })
    }

    /// A reading of the node's wall clock.
    fn wall(&self) -> WallTime {
        wall_now(&self.wall)
    }

    fn is_closed(&self) -> bool {
        lock(&self.state).conn.is_closed()
    }

    fn close(&self) {
        lock(&self.state).conn.close();
        self.wake.notify_one();
    }

    /// Stops reading, and closes once everything waiting is written (replies included).
    fn close_after_flush(&self) {
        lock(&self.state).closing = true;
        self.wake.notify_one();
    }
}

/// Runs one connection until it closes: reads feed the machine, its bytes are written, its
/// timer is served, its events are carried out (requests started in the connection's set of
/// served calls, which this task polls; replies handed to their callers).
async fn run_connection(
    stream: TcpStream,
    conn: Arc<Conn>,
    registry: Registry,
    max_buffered: usize,
    peak: Arc<AtomicU64>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut read_buf = vec![0u8; 256 * 1024];
    // Bytes taken from the machine (by swapping buffers, no copy) and not yet written.
    let mut writing = AlignedVec::<16>::new();
    let mut written = 0;
    let mut serving = Serving::new();
    loop {
        let (deadline, can_read) = {
            let mut state = lock(&conn.state);
            dispatch_events(&mut state, &mut serving, &registry);
            if state.conn.is_closed() {
                break;
            }
            if written == writing.len() {
                written = 0;
                state.conn.swap_transmit(&mut writing);
                if state.closing && writing.is_empty() {
                    state.conn.close();
                    dispatch_events(&mut state, &mut serving, &registry);
                    break;
                }
            }
            // A peer that sends but does not read would make our replies pile up: stop reading
            // (TCP then pushes back on it) while too much waits to be written.
            let waiting = writing.len() - written + state.conn.buffered();
            peak.fetch_max(waiting as u64, Ordering::Relaxed);
            (
                state.conn.poll_timeout(),
                waiting < max_buffered && !state.closing,
            )
        };
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = sleep => {
                lock(&conn.state).conn.handle_timeout(Instant::now(), conn.wall());
            }
            result = writer.write(&writing[written..]), if written < writing.len() => {
                match result {
                    Ok(n) => written += n,
                    Err(error) => {
                        tracing::debug!(%error, "RPC write failed");
                        lock(&conn.state).conn.close();
                    }
                }
            }
            // Handlers run here, before reading more: a peer's flood of requests cannot hold
            // back the answers to the calls already started.
            _ = std::future::poll_fn(|cx| serving.poll(cx, |request_id, reply, frame| {
                answer(&conn, request_id, reply, frame);
            })) => {}
            read = reader.read(&mut read_buf), if can_read => {
                let mut state = lock(&conn.state);
                match read {
                    Ok(0) | Err(_) => state.conn.close(),
                    Ok(n) => {
                        if let Err(error) = state.conn.handle_bytes(Instant::now(), conn.wall(), &read_buf[..n]) {
                            tracing::debug!(%error, "RPC peer sent bytes that are not frames");
                        }
                    }
                }
            }
            () = conn.wake.notified() => {}
        }
    }
    // Closed: every call of ours failed (events dispatched above); stop serving.
    {
        let mut state = lock(&conn.state);
        dispatch_events(&mut state, &mut serving, &registry);
        serving.clear();
        state.replies.fail_all(&Status::new(
            StatusCode::Unavailable,
            "the connection closed",
        ));
    }
    let _ = writer.shutdown().await;
}

/// Answers a served call on its connection (nothing is sent if the peer cancelled it or its
/// deadline passed) and gives the request's buffer back.
fn answer(
    conn: &Conn,
    request_id: u64,
    reply: Result<&dyn cohort_core::rpc::Reply, Status>,
    frame: Option<Frame>,
) {
    let mut state = lock(&conn.state);
    if let Err(error) = state.conn.answer(conn.wall(), request_id, reply, frame) {
        tracing::debug!(%error, "an RPC reply did not serialize");
    }
}

fn dispatch_events(state: &mut ConnState, serving: &mut Serving, registry: &Registry) {
    let ConnState { conn, replies, .. } = state;
    if let Some(reason) = conn.dispatch(replies, serving, registry) {
        tracing::debug!(?reason, "RPC connection closed");
    }
}

/// A peer's client connection, or why there is none for now.
enum Peer {
    Connected(Arc<Conn>),
    /// Connecting failed: no new attempt before the back-off allows it.
    Backoff(Backoff),
}

/// The node's RPC: its registry, server and client connections.
pub(crate) struct Rpc {
    pub(crate) registry: Registry,
    clock: Arc<SharedHlc>,
    wall: WallClock,
    config: RpcConnectionConfig,
    limits: ServerLimits,
    connect_timeout: Duration,
    peers: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<Option<Peer>>>>>,
    server: Mutex<Vec<(Arc<Conn>, JoinHandle<()>)>>,
    clients: Mutex<Vec<JoinHandle<()>>>,
    listener: Mutex<Option<JoinHandle<()>>>,
    local_addr: SocketAddr,
    /// The most bytes any connection held waiting to be written.
    pub(crate) send_buffer_peak: Arc<AtomicU64>,
    /// Set when shutdown begins: no new client connection is made.
    shutting_down: AtomicBool,
}

impl Rpc {
    /// Starts accepting on `listener` (bound by the node with its gossip socket).
    pub(crate) fn start(
        listener: TcpListener,
        clock: Arc<SharedHlc>,
        wall: WallClock,
        config: RpcConnectionConfig,
        limits: ServerLimits,
        connect_timeout: Duration,
    ) -> io::Result<Arc<Self>> {
        let local_addr = listener.local_addr()?;
        let registry = Registry::new();
        registry.set_max_in_flight(limits.max_calls_in_flight);
        let rpc = Arc::new(Self {
            registry,
            clock,
            wall,
            config,
            limits,
            connect_timeout,
            peers: Mutex::new(HashMap::new()),
            server: Mutex::new(Vec::new()),
            clients: Mutex::new(Vec::new()),
            listener: Mutex::new(None),
            local_addr,
            send_buffer_peak: Arc::new(AtomicU64::new(0)),
            shutting_down: AtomicBool::new(false),
        });
        let accepting = Arc::downgrade(&rpc);
        let task = tokio::spawn(async move {
            loop {
                let (stream, from) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors, for instance: wait rather than spin.
                        tracing::warn!(%error, "RPC accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(rpc) = accepting.upgrade() else {
                    return;
                };
                let mut server = lock(&rpc.server);
                server.retain(|(c, _)| !c.is_closed());
                if server.len() >= rpc.limits.max_connections {
                    // Closed at once: the peer's call fails and it tries again later.
                    tracing::debug!(%from, max = rpc.limits.max_connections, "RPC connection refused: too many connections");
                    drop(stream);
                    continue;
                }
                tracing::debug!(%from, "RPC connection accepted");
                let conn = Conn::new(Arc::clone(&rpc.clock), rpc.wall.clone(), rpc.config.clone());
                let task = tokio::spawn(run_connection(
                    stream,
                    Arc::clone(&conn),
                    rpc.registry.clone(),
                    rpc.config.max_buffered,
                    Arc::clone(&rpc.send_buffer_peak),
                ));
                server.push((conn, task));
            }
        });
        *lock(&rpc.listener) = Some(task);
        Ok(rpc)
    }

    /// The address the listener is bound to.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The connection to `addr`, connecting (once, shared by concurrent callers) if needed.
    async fn connection(&self, addr: SocketAddr) -> Result<Arc<Conn>, Status> {
        let slot = Arc::clone(
            lock(&self.peers)
                .entry(addr)
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(None))),
        );
        let mut peer = slot.lock().await;
        let previous = match &*peer {
            Some(Peer::Connected(conn)) if !conn.is_closed() => return Ok(Arc::clone(conn)),
            Some(Peer::Backoff(backoff)) => {
                backoff.check(addr, Instant::now())?;
                Some(backoff.clone())
            }
            _ => None,
        };
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(Status::new(
                StatusCode::Unavailable,
                "the node is shutting down",
            ));
        }
        let connected = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await;
        match connected {
            Ok(Ok(stream)) => {
                let conn = Conn::new(
                    Arc::clone(&self.clock),
                    self.wall.clone(),
                    self.config.clone(),
                );
                let task = tokio::spawn(run_connection(
                    stream,
                    Arc::clone(&conn),
                    self.registry.clone(),
                    self.config.max_buffered,
                    Arc::clone(&self.send_buffer_peak),
                ));
                let mut clients = lock(&self.clients);
                clients.retain(|t| !t.is_finished());
                clients.push(task);
                *peer = Some(Peer::Connected(Arc::clone(&conn)));
                Ok(conn)
            }
            failed => {
                let why = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => "connect timed out".to_owned(),
                };
                *peer = Some(Peer::Backoff(Backoff::after(
                    previous.as_ref(),
                    Instant::now(),
                    why.clone(),
                )));
                Err(Status::new(
                    StatusCode::Unavailable,
                    format!("cannot connect to {addr}: {why}"),
                ))
            }
        }
    }

    /// Drops the client connection to `addr` (its member left or failed). A connection being
    /// made right now stays (it is closed at shutdown, or dropped when that member goes again).
    pub(crate) fn forget_peer(&self, addr: SocketAddr) {
        let mut peers = lock(&self.peers);
        let Some(slot) = peers.get(&addr) else {
            return;
        };
        let Ok(peer) = slot.try_lock() else {
            return;
        };
        if let Some(Peer::Connected(conn)) = &*peer {
            conn.close();
        }
        drop(peer);
        peers.remove(&addr);
    }

    /// One call of `M` to `addr`, within `deadline`.
    pub(crate) async fn call<S, M>(
        &self,
        addr: SocketAddr,
        message: &M,
        deadline: Option<Duration>,
    ) -> Result<Frame, Status>
    where
        S: Handler<M>,
        M: Message,
    {
        // The deadline covers connecting too; what is left of it goes with the request.
        let started = Instant::now();
        let conn = match deadline {
            Some(limit) => tokio::time::timeout(limit, self.connection(addr))
                .await
                .map_err(|_| {
                    Status::new(
                        StatusCode::DeadlineExceeded,
                        format!("the deadline passed while connecting to {addr}"),
                    )
                })??,
            None => self.connection(addr).await?,
        };
        let deadline = deadline.map(|limit| limit.saturating_sub(started.elapsed()));
        let call = {
            let mut state = lock(&conn.state);
            let call = state
                .conn
                .call(
                    Instant::now(),
                    conn.wall(),
                    method_id::<S, M>(),
                    message,
                    deadline,
                )
                .map_err(|e| Status::new(StatusCode::Unavailable, e.to_string()))?;
            state.replies.insert(call);
            call
        };
        conn.wake.notify_one();
        let guard = CancelOnDrop {
            conn: &conn,
            call,
            armed: true,
        };
        let result =
            std::future::poll_fn(|cx| lock(&conn.state).replies.poll_reply(call, cx)).await;
        guard.disarm();
        result
    }

    /// Stops accepting, lets the calls being served finish and their replies go out (up to
    /// `drain`), then closes every connection and ends every task.
    pub(crate) async fn shutdown(&self, drain: Duration) {
        self.shutting_down.store(true, Ordering::Release);
        let listener = lock(&self.listener).take();
        if let Some(listener) = listener {
            listener.abort();
            let _ = listener.await;
        }
        let until = Instant::now().checked_add(drain);
        loop {
            let busy = lock(&self.server)
                .iter()
                .any(|(c, _)| lock(&c.state).conn.incoming_in_flight() > 0);
            if !busy || until.is_some_and(|u| Instant::now() >= u) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Server connections: stop reading, write what is left (the replies just made), close.
        let server: Vec<(Arc<Conn>, JoinHandle<()>)> = std::mem::take(&mut *lock(&self.server));
        for (conn, _) in &server {
            conn.close_after_flush();
        }
        let left = until.map_or(Duration::ZERO, |u| {
            u.saturating_duration_since(Instant::now())
        });
        for (conn, mut task) in server {
            if tokio::time::timeout(left.max(Duration::from_millis(100)), &mut task)
                .await
                .is_err()
            {
                conn.close();
                task.abort();
                let _ = task.await;
            }
        }
        // Client connections: every slot, including one being connected right now.
        let slots: Vec<_> = lock(&self.peers).drain().map(|(_, p)| p).collect();
        for slot in slots {
            let peer = slot.lock().await;
            if let Some(Peer::Connected(conn)) = &*peer {
                conn.close();
            }
        }
        let clients: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&self.clients));
        for task in clients {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// Cancels a call whose caller stopped waiting (the call's future was dropped).
struct CancelOnDrop<'a> {
    conn: &'a Arc<Conn>,
    call: CallId,
    armed: bool,
}

impl CancelOnDrop<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut state = lock(&self.conn.state);
        if state.replies.remove(self.call) {
            state.conn.cancel(self.conn.wall(), self.call);
            drop(state);
            self.conn.wake.notify_one();
        }
    }
}

/// A client of service `S` on one member ([`Node::rpc_client`](crate::Node::rpc_client)).
pub struct RpcClient<S> {
    rpc: Option<Arc<Rpc>>,
    addr: SocketAddr,
    deadline: Option<Duration>,
    _service: PhantomData<fn() -> S>,
}

impl<S> Clone for RpcClient<S> {
    fn clone(&self) -> Self {
        Self {
            rpc: self.rpc.clone(),
            addr: self.addr,
            deadline: self.deadline,
            _service: PhantomData,
        }
    }
}

impl<S> std::fmt::Debug for RpcClient<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("addr", &self.addr)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl<S: RpcService> RpcClient<S> {
    pub(crate) fn new(rpc: Option<Arc<Rpc>>, addr: SocketAddr, deadline: Option<Duration>) -> Self {
        Self {
            rpc,
            addr,
            deadline,
            _service: PhantomData,
        }
    }

    /// The member's RPC address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// This client with another deadline for its calls (`None`: none).
    #[must_use]
    pub fn with_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Calls the member's handler of `M` with `message` (serialized straight into the
    /// connection's send buffer) and waits for the reply. Dropping the future cancels the call
    /// on the member.
    ///
    /// # Errors
    ///
    /// The [`Status`] of the failure: the handler's, [`StatusCode::NotFound`] (no such
    /// service there), [`StatusCode::DeadlineExceeded`], [`StatusCode::Unavailable`] (cannot
    /// connect, connection lost, too many calls), [`StatusCode::InvalidPayload`] (a reply
    /// that does not validate as `Reply`), ...
    pub fn call<'m, M>(
        &self,
        message: &'m M,
    ) -> impl Future<Output = Result<Response<<S as Handler<M>>::Reply>, Status>> + Send + 'm
    where
        S: Handler<M>,
        M: Message,
    {
        self.call_with_deadline(message, self.deadline)
    }

    /// [`call`](Self::call) with a deadline of its own (`None`: none) instead of the client's.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn call_with_deadline<'m, M>(
        &self,
        message: &'m M,
        deadline: Option<Duration>,
    ) -> impl Future<Output = Result<Response<<S as Handler<M>>::Reply>, Status>> + Send + 'm
    where
        S: Handler<M>,
        M: Message,
    {
        let rpc = self.rpc.clone();
        let addr = self.addr;
        async move {
            let rpc = rpc.ok_or_else(|| {
                Status::new(
                    StatusCode::Unavailable,
                    "this node runs on a memory network: it has no RPC",
                )
            })?;
            let frame = rpc.call::<S, M>(addr, message, deadline).await?;
            Response::new(frame)
        }
    }
}
