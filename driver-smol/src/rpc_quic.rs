//! RPC on QUIC: the node's endpoint (a listener of mutually authenticated connections, a task
//! per connection, which also runs the handlers of the calls it serves) and its clients (one
//! connection per peer), around core's connection machine, registry, served calls and
//! waiting replies.
//!
//! Each QUIC connection carries one bidirectional stream, opened by the caller, on which
//! core's frames flow exactly as on TCP: calls are multiplexed by request id, with core's
//! deadlines, cancellation, bounds, keep-alive and clock. QUIC adds mutual TLS (every peer
//! proves membership of the cluster with a certificate signed by the cluster CA) and needs no
//! second port kind (UDP only). One stream per connection rather than one per call keeps
//! every rule in core and costs no stream set-up per call; its cost, head-of-line blocking
//! between calls when a packet is lost, is the one TCP has too.
//!
//! Owns the endpoint and the tasks; nothing of the protocol.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use cohort_core::rpc::{
    Backoff, CallId, Connection, ConnectionConfig as RpcConnectionConfig, Frame, Handler, Message,
    Registry, Replies, Reply, RpcService, ServerLimits, Serving, Status, StatusCode, method_id,
};
use cohort_core::{SharedHlc, WallClock, WallTime};
use rkyv::util::AlignedVec;
use smol::Timer;
use smol::lock::Mutex as AsyncMutex;

use crate::clock::wall_now;
use crate::signal::Signal;
use crate::tls::{self, TlsConfig, TlsError};

/// A reply ([`RpcClient::call`]), from the core.
pub use cohort_core::rpc::Response;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the connection task and the callers share of one connection.
struct ConnState {
    conn: Connection,
    replies: Replies,
    /// Shutting down: read nothing more, close once everything is written.
    closing: bool,
}

struct Conn {
    state: Mutex<ConnState>,
    wake: Signal,
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
            wake: Signal::default(),
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
        self.wake.notify();
    }

    fn close_after_flush(&self) {
        lock(&self.state).closing = true;
        self.wake.notify();
    }
}

/// What woke the connection's loop.
enum Step {
    Timer,
    Wrote(Result<usize, quinn::WriteError>),
    Served,
    Read(Result<Option<usize>, quinn::ReadError>),
    Woken,
}

fn dispatch(state: &mut ConnState, serving: &mut Serving, registry: &Registry) {
    let ConnState { conn, replies, .. } = state;
    if let Some(reason) = conn.dispatch(replies, serving, registry) {
        tracing::debug!(?reason, "RPC connection closed");
    }
}

/// Runs one connection's stream until it closes: reads feed the machine, its bytes are
/// written, its timer is served, its events carried out (the peer's calls served here).
async fn run_connection(
    quic: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    conn: Arc<Conn>,
    registry: Registry,
    max_buffered: usize,
    peak: Arc<AtomicU64>,
) {
    let mut read_buf = vec![0u8; 256 * 1024];
    let mut writing = AlignedVec::<16>::new();
    let mut written = 0;
    let mut serving = Serving::new();
    let mut timer = Timer::never();
    let mut armed: Option<Instant> = None;
    loop {
        let can_read = {
            let mut state = lock(&conn.state);
            dispatch(&mut state, &mut serving, &registry);
            if state.conn.is_closed() {
                break;
            }
            if written == writing.len() {
                written = 0;
                state.conn.swap_transmit(&mut writing);
                if state.closing && writing.is_empty() {
                    state.conn.close();
                    dispatch(&mut state, &mut serving, &registry);
                    break;
                }
            }
            // A peer that sends but does not read: stop reading while too much waits to be
            // written (QUIC's flow control then pushes back on it).
            let waiting = writing.len() - written + state.conn.buffered();
            peak.fetch_max(waiting as u64, Ordering::Relaxed);
            let deadline = state.conn.poll_timeout();
            if deadline != armed {
                match deadline {
                    Some(at) => timer.set_at(at),
                    None => timer = Timer::never(),
                }
                armed = deadline;
            }
            waiting < max_buffered && !state.closing
        };
        // In order: the timer, writing, the calls served (before reading more, so that a
        // flood of requests cannot hold back the answers to those already started), reading,
        // then a wake-up from a caller.
        let step = std::future::poll_fn(|cx| {
            if Pin::new(&mut timer).poll(cx).is_ready() {
                return Poll::Ready(Step::Timer);
            }
            if written < writing.len() {
                if let Poll::Ready(result) = Pin::new(&mut send).poll_write(cx, &writing[written..])
                {
                    return Poll::Ready(Step::Wrote(result));
                }
            }
            let served = serving.poll(cx, |request_id, reply, frame| {
                answer(&conn, request_id, reply, frame);
            });
            if served.is_ready() {
                return Poll::Ready(Step::Served);
            }
            if can_read {
                if let Poll::Ready(result) = recv.poll_read(cx, &mut read_buf) {
                    return Poll::Ready(Step::Read(result.map(|n| (n > 0).then_some(n))));
                }
            }
            if conn.wake.poll(cx).is_ready() {
                return Poll::Ready(Step::Woken);
            }
            Poll::Pending
        })
        .await;
        match step {
            Step::Timer => {
                armed = None;
                timer = Timer::never();
                lock(&conn.state)
                    .conn
                    .handle_timeout(Instant::now(), conn.wall());
            }
            Step::Wrote(Ok(n)) => written += n,
            Step::Wrote(Err(error)) => {
                tracing::debug!(%error, "RPC write failed");
                lock(&conn.state).conn.close();
            }
            Step::Served | Step::Woken => {}
            Step::Read(Ok(Some(n))) => {
                let mut state = lock(&conn.state);
                if let Err(error) =
                    state
                        .conn
                        .handle_bytes(Instant::now(), conn.wall(), &read_buf[..n])
                {
                    tracing::debug!(%error, "RPC peer sent bytes that are not frames");
                }
            }
            Step::Read(Ok(None)) => lock(&conn.state).conn.close(),
            Step::Read(Err(error)) => {
                tracing::debug!(%error, "RPC read failed");
                lock(&conn.state).conn.close();
            }
        }
    }
    {
        let mut state = lock(&conn.state);
        dispatch(&mut state, &mut serving, &registry);
        serving.clear();
        state.replies.fail_all(&Status::new(
            StatusCode::Unavailable,
            "the connection closed",
        ));
    }
    let _ = send.finish();
    // Let what was written reach the peer before the connection goes (bounded).
    let _ = smol::future::or(
        async {
            let _ = send.stopped().await;
        },
        async {
            Timer::after(Duration::from_millis(200)).await;
        },
    )
    .await;
    quic.close(0u32.into(), b"closed");
}

/// Answers a served call on its connection and gives the request's buffer back.
fn answer(conn: &Conn, request_id: u64, reply: Result<&dyn Reply, Status>, frame: Option<Frame>) {
    let mut state = lock(&conn.state);
    if let Err(error) = state.conn.answer(conn.wall(), request_id, reply, frame) {
        tracing::debug!(%error, "an RPC reply did not serialize");
    }
}

/// A peer's client connection, or why there is none for now.
enum Peer {
    Connected(Arc<Conn>),
    /// Connecting failed: no new attempt before the back-off allows it.
    Backoff(Backoff),
}

/// Why the RPC endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// The UDP socket could not be bound.
    #[error(transparent)]
    Bind(#[from] io::Error),
    /// The TLS configuration was refused.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The node's RPC: its registry, endpoint and connections.
pub(crate) struct Rpc {
    pub(crate) registry: Registry,
    clock: Arc<SharedHlc>,
    wall: WallClock,
    config: RpcConnectionConfig,
    limits: ServerLimits,
    connect_timeout: Duration,
    /// Taken at shutdown: the endpoint (and its UDP socket) goes once its last handle does.
    endpoint: Mutex<Option<quinn::Endpoint>>,
    peers: Mutex<HashMap<SocketAddr, Arc<AsyncMutex<Option<Peer>>>>>,
    server: Mutex<Vec<(Arc<Conn>, smol::Task<()>)>>,
    clients: Mutex<Vec<smol::Task<()>>>,
    listener: Mutex<Option<smol::Task<()>>>,
    local_addr: SocketAddr,
    /// The most bytes any connection held waiting to be written.
    pub(crate) send_buffer_peak: Arc<AtomicU64>,
    shutting_down: AtomicBool,
}

impl Rpc {
    /// Starts the QUIC endpoint on `socket` (bound by the caller) and accepts connections from
    /// members of the cluster (certificates signed by `tls`'s CA).
    pub(crate) fn start(
        socket: std::net::UdpSocket,
        clock: Arc<SharedHlc>,
        wall: WallClock,
        config: RpcConnectionConfig,
        limits: ServerLimits,
        tls: &TlsConfig,
        connect_timeout: Duration,
    ) -> Result<Arc<Self>, StartError> {
        let mut endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(tls.quinn_server_config()?),
            socket,
            Arc::new(quinn::SmolRuntime),
        )?;
        endpoint.set_default_client_config(tls.quinn_client_config()?);
        let local_addr = endpoint.local_addr()?;
        let registry = Registry::new();
        registry.set_max_in_flight(limits.max_calls_in_flight);
        let rpc = Arc::new(Self {
            registry,
            clock,
            wall,
            config,
            limits,
            connect_timeout,
            endpoint: Mutex::new(Some(endpoint.clone())),
            peers: Mutex::new(HashMap::new()),
            server: Mutex::new(Vec::new()),
            clients: Mutex::new(Vec::new()),
            listener: Mutex::new(None),
            local_addr,
            send_buffer_peak: Arc::new(AtomicU64::new(0)),
            shutting_down: AtomicBool::new(false),
        });
        let accepting = Arc::downgrade(&rpc);
        let task = smol::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let Some(rpc) = accepting.upgrade() else {
                    return;
                };
                let from = incoming.remote_address();
                let mut server = lock(&rpc.server);
                server.retain(|(c, t)| !c.is_closed() && !t.is_finished());
                if server.len() >= rpc.limits.max_connections {
                    // Refused before the handshake: the peer's call fails and it tries again
                    // later.
                    tracing::debug!(%from, max = rpc.limits.max_connections, "RPC connection refused: too many connections");
                    incoming.refuse();
                    continue;
                }
                drop(server);
                let conn = Conn::new(Arc::clone(&rpc.clock), rpc.wall.clone(), rpc.config.clone());
                let registry = rpc.registry.clone();
                let max_buffered = rpc.config.max_buffered;
                let peak = Arc::clone(&rpc.send_buffer_peak);
                let served = Arc::clone(&conn);
                let task = smol::spawn(async move {
                    // The handshake refuses a peer without a certificate of the cluster (and
                    // logs why); the caller opens the stream with its first call.
                    let Ok(quic) = tls::accept(incoming).await else {
                        return;
                    };
                    tracing::debug!(%from, "RPC connection accepted");
                    match quic.accept_bi().await {
                        Ok((send, recv)) => {
                            run_connection(quic, send, recv, served, registry, max_buffered, peak)
                                .await;
                        }
                        Err(error) => {
                            tracing::debug!(%from, reason = %tls::connection_failure_reason(&error), "RPC connection ended before its stream");
                        }
                    }
                });
                let mut server = lock(&rpc.server);
                server.retain(|(c, t)| !c.is_closed() && !t.is_finished());
                server.push((conn, task));
            }
        });
        *lock(&rpc.listener) = Some(task);
        Ok(rpc)
    }

    /// The address the endpoint is bound to.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The connection to `addr`, connecting (once, shared by concurrent callers) if needed.
    async fn connection(&self, addr: SocketAddr) -> Result<Arc<Conn>, Status> {
        let slot = Arc::clone(
            lock(&self.peers)
                .entry(addr)
                .or_insert_with(|| Arc::new(AsyncMutex::new(None))),
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
        let Some(endpoint) = lock(&self.endpoint).clone() else {
            return Err(Status::new(
                StatusCode::Unavailable,
                "the node is shutting down",
            ));
        };
        let connect = async {
            let quic = tls::connect(&endpoint, addr)
                .await
                .map_err(|e| e.to_string())?;
            let (send, recv) = quic.open_bi().await.map_err(|e| {
                format!(
                    "connection to {addr} failed: {}",
                    tls::connection_failure_reason(&e)
                )
            })?;
            Ok::<_, String>((quic, send, recv))
        };
        let timeout = async {
            Timer::after(self.connect_timeout).await;
            Err(format!("connecting to {addr} timed out"))
        };
        match smol::future::or(connect, timeout).await {
            Ok((quic, send, recv)) => {
                let conn = Conn::new(
                    Arc::clone(&self.clock),
                    self.wall.clone(),
                    self.config.clone(),
                );
                let task = smol::spawn(run_connection(
                    quic,
                    send,
                    recv,
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
            Err(why) => {
                *peer = Some(Peer::Backoff(Backoff::after(
                    previous.as_ref(),
                    Instant::now(),
                    why.clone(),
                )));
                Err(Status::new(StatusCode::Unavailable, why))
            }
        }
    }

    /// Drops the client connection to `addr` (its member left or failed).
    pub(crate) fn forget_peer(&self, addr: SocketAddr) {
        let mut peers = lock(&self.peers);
        let Some(slot) = peers.get(&addr) else {
            return;
        };
        let Some(peer) = slot.try_lock() else {
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
            Some(limit) => {
                let expired = async {
                    Timer::after(limit).await;
                    Err(Status::new(
                        StatusCode::DeadlineExceeded,
                        format!("the deadline passed while connecting to {addr}"),
                    ))
                };
                smol::future::or(self.connection(addr), expired).await?
            }
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
        conn.wake.notify();
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
    /// `drain`), then closes every connection and the endpoint (its UDP port is then free).
    pub(crate) async fn shutdown(&self, drain: Duration) {
        self.shutting_down.store(true, Ordering::Release);
        let Some(endpoint) = lock(&self.endpoint).take() else {
            return;
        };
        // Refuse new connections; the listener task ends when the endpoint closes.
        endpoint.set_server_config(None);
        let until = Instant::now().checked_add(drain);
        loop {
            let busy = lock(&self.server)
                .iter()
                .any(|(c, _)| lock(&c.state).conn.incoming_in_flight() > 0);
            if !busy || until.is_some_and(|u| Instant::now() >= u) {
                break;
            }
            Timer::after(Duration::from_millis(5)).await;
        }
        let server: Vec<(Arc<Conn>, smol::Task<()>)> = std::mem::take(&mut *lock(&self.server));
        for (conn, _) in &server {
            conn.close_after_flush();
        }
        let left = until
            .map_or(Duration::ZERO, |u| {
                u.saturating_duration_since(Instant::now())
            })
            .max(Duration::from_millis(100));
        for (conn, task) in server {
            let finished = smol::future::or(
                async {
                    task.await;
                    true
                },
                async {
                    Timer::after(left).await;
                    false
                },
            )
            .await;
            if !finished {
                conn.close();
            }
        }
        let slots: Vec<_> = lock(&self.peers).drain().map(|(_, p)| p).collect();
        for slot in slots {
            let peer = slot.lock().await;
            if let Some(Peer::Connected(conn)) = &*peer {
                conn.close();
            }
        }
        let clients: Vec<smol::Task<()>> = std::mem::take(&mut *lock(&self.clients));
        for task in clients {
            let _ = smol::future::or(
                async {
                    task.await;
                    true
                },
                async {
                    Timer::after(Duration::from_secs(1)).await;
                    false
                },
            )
            .await;
        }
        endpoint.close(0u32.into(), b"shutdown");
        let _ = smol::future::or(endpoint.wait_idle(), async {
            Timer::after(Duration::from_secs(1)).await;
        })
        .await;
        // The listener's handle goes with its task (its accept ends with the endpoint), ours
        // here; quinn's endpoint task then ends and closes the socket.
        let listener = lock(&self.listener).take();
        if let Some(listener) = listener {
            let _ = smol::future::or(
                async {
                    listener.await;
                    true
                },
                async {
                    Timer::after(Duration::from_secs(1)).await;
                    false
                },
            )
            .await;
        }
        drop(endpoint);
        // Return once the port is free (that task runs on another thread): a node restarted
        // on the same address must be able to bind it. Bounded.
        for _ in 0..400 {
            if std::net::UdpSocket::bind(self.local_addr).is_ok() {
                return;
            }
            Timer::after(Duration::from_millis(5)).await;
        }
        tracing::warn!(addr = %self.local_addr, "the RPC port was still bound 2 s after shutdown");
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
            self.conn.wake.notify();
        }
    }
}

/// A client of service `S` on one member.
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
    /// connect, refused certificate, connection lost, too many calls),
    /// [`StatusCode::InvalidPayload`] (a reply that does not validate as `Reply`), ...
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
                    "this node has no RPC: it was started without TLS (NodeBuilder::tls)",
                )
            })?;
            let frame = rpc.call::<S, M>(addr, message, deadline).await?;
            Response::new(frame)
        }
    }
}

#[cfg(test)]
mod tests;
