//! The node handle applications hold, and the state it shares with the node's task.
//!
//! The runtime-free parts of that state (the snapshot cell, the event bus, the selection, the
//! counters, the settings and seeds) are core's ([`cohort_core::handle`]); this module adds
//! the smol ones: the task, its wake-up channel and the seed resolver.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::{SocketAddr, UdpSocket};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cohort_core::WallTime;
use cohort_core::handle::{
    Counters, EventBus, KeyChanges, MembersCell, MembershipChanges, MembershipEvents, SeedSet,
    Selection, Statistics, WaitError,
};
use cohort_core::membership::NodeState;
use cohort_core::{
    Candidate, Consistency, KeyError, Member, Members, NodeId, SelectError, Topology,
};
use smol::future::FutureExt as _;
use smol::{Async, Task, Timer};

use crate::ConnectError;
use crate::builder::NodeBuilder;
use crate::clock::{Clock, wall_now};
use crate::extension::ClusterExtension;
use crate::rpc_quic::{Rpc, RpcClient, StartError};
use crate::runtime;
use cohort_core::rpc::{RpcService, RpcTarget};

type ShutdownHook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What the handles and the node's task share.
pub(crate) struct Shared {
    pub(crate) id: NodeId,
    pub(crate) listen_addr: SocketAddr,
    pub(crate) rpc_addr: SocketAddr,
    /// The core machine, locked for one input or one command, never across an await.
    pub(crate) core: Mutex<cohort_core::Node>,
    /// Wakes the task after a command changed the machine, or to make it stop (a capacity of
    /// one: a wake-up already pending is enough).
    pub(crate) signal: crate::signal::Signal,
    /// The latest snapshot; closed once the node is done.
    pub(crate) members: MembersCell,
    /// The events; closed once the node has shut down, so that event streams end.
    pub(crate) events: EventBus,
    clock: Clock,
    selection: Selection,
    hooks: Mutex<Vec<ShutdownHook>>,
    stopping: AtomicBool,
    /// Set (then the task signalled) to make the task leave and stop.
    pub(crate) stop_requested: AtomicBool,
    task: Mutex<Option<Task<()>>>,
    resolver: Mutex<Option<Task<()>>>,
    pub(crate) counters: Counters,
    /// RPC over QUIC (none without TLS).
    pub(crate) rpc: Option<Arc<Rpc>>,
    rpc_deadline: Option<Duration>,
    rpc_drain_timeout: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going with it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// A reading of the node's wall clock (the builder's
    /// [`wall_clock`](crate::NodeBuilder::wall_clock)).
    pub(crate) fn wall(&self) -> WallTime {
        self.clock.wall()
    }

    pub(crate) fn lock_core(&self) -> MutexGuard<'_, cohort_core::Node> {
        lock(&self.core)
    }

    /// Publishes the membership of `node` if it is newer than the last snapshot published.
    pub(crate) fn publish(&self, node: &cohort_core::Node) {
        self.members.publish_from(node);
    }

    /// Wakes the node's task (a wake-up already pending is enough).
    pub(crate) fn signal(&self) {
        self.signal.notify();
    }
}

/// Cancels the node's tasks when the last handle is dropped without a shutdown (a smol
/// [`Task`] is cancelled when dropped).
struct AbortOnDrop(Arc<Shared>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        drop(lock(&self.0.task).take());
        drop(lock(&self.0.resolver).take());
        // Nothing will publish or close them any more: end the streams and waits.
        self.0.events.close();
        self.0.members.close();
    }
}

/// The addresses of seed `host` now (`None`, logged, when it does not resolve in 5 s): the
/// lookup core's [`SeedSet::resolve`] runs for each host name. Resolution runs on smol's
/// blocking pool.
pub(crate) async fn lookup_seed(host: String) -> Option<Vec<SocketAddr>> {
    let lookup = async { Some(smol::net::resolve(host.as_str()).await) };
    let timeout = async {
        Timer::after(Duration::from_secs(5)).await;
        None
    };
    match lookup.or(timeout).await {
        Some(Ok(addrs)) => Some(addrs),
        Some(Err(error)) => {
            tracing::warn!(%host, %error, "seed does not resolve");
            None
        }
        None => {
            tracing::warn!(%host, "seed resolution timed out");
            None
        }
    }
}

/// A running cluster node on smol. Cheap to clone; every clone is the same node.
///
/// Queries ([`members`](Self::members), [`select_nodes`](Self::select_nodes),
/// [`clock`](Self::clock)) read state the node's task publishes and never wait for it.
/// Commands ([`set_metadata`](Self::set_metadata), ...) take effect at once and are gossiped
/// from the next round. Call [`shutdown`](Self::shutdown) to leave the cluster gracefully;
/// dropping every handle without it stops the node abruptly (peers then need the failure
/// detector to notice).
///
/// ```
/// use std::time::Duration;
/// use cohort_smol::{ConnectionConfig, MemberStatus, NodeBuilder};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// smol::block_on(async {
///     // Port 0: the system picks a free port, which the node then advertises.
///     let any = "127.0.0.1:0".parse()?;
///     let a = NodeBuilder::new("a", ConnectionConfig::new(any, any, Vec::<String>::new()))
///         .gossip_interval(Duration::from_millis(100))
///         .connect()
///         .await?;
///     let seed = a.public_addr().to_string();
///     let b = NodeBuilder::new("b", ConnectionConfig::new(any, any, [seed]))
///         .gossip_interval(Duration::from_millis(100))
///         .metadata("role", "worker")
///         .connect()
///         .await?;
///     let members = a.wait_for_members(|m| m.live_count() == 2, Duration::from_secs(10)).await?;
///     assert_eq!(members.get(b.id()).and_then(|m| m.get("role")), Some("worker"));
///
///     b.shutdown().await;
///     let left = |m: &cohort_smol::Members| {
///         m.get(b.id()).is_some_and(|m| m.status == MemberStatus::Left)
///     };
///     let members = a.wait_for_members(left, Duration::from_secs(10)).await?;
///     assert_eq!(members.live_count(), 1);
///     a.shutdown().await;
///     Ok(())
/// })
/// # }
/// ```
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
    _guard: Arc<AbortOnDrop>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.shared.id)
            .field("listen_addr", &self.shared.listen_addr)
            .finish_non_exhaustive()
    }
}

impl Node {
    pub(crate) async fn start(builder: NodeBuilder) -> Result<Self, ConnectError> {
        let NodeBuilder {
            mut settings,
            rpc: rpc_settings,
        } = builder;
        let listen = settings.connection.listen;
        let bind_error = |source| ConnectError::Bind {
            addr: listen,
            source,
        };
        let socket = Async::<UdpSocket>::bind(listen).map_err(bind_error)?;
        let listen_addr = socket.get_ref().local_addr().map_err(bind_error)?;
        // RPC's UDP socket first: the port it gets is the one published.
        let rpc_socket = match &rpc_settings.tls {
            Some(_) => {
                let port = settings.rpc_addr.map_or(0, |a| a.port());
                let rpc_listen = SocketAddr::new(listen_addr.ip(), port);
                let rpc_socket =
                    UdpSocket::bind(rpc_listen).map_err(|source| ConnectError::Bind {
                        addr: rpc_listen,
                        source,
                    })?;
                let bound = rpc_socket
                    .local_addr()
                    .map_err(|source| ConnectError::Bind {
                        addr: rpc_listen,
                        source,
                    })?;
                let ip = settings
                    .rpc_addr
                    .map_or_else(|| settings.connection.public.ip(), |a| a.ip());
                settings.rpc_addr = Some(SocketAddr::new(ip, bound.port()));
                Some(rpc_socket)
            }
            None => None,
        };
        let mut seeds = SeedSet::parse(&settings.connection.seeds);
        let resolved = seeds.resolve(lookup_seed).await;
        let wall = wall_now(&settings.wall_clock);
        // The only input the core cannot make itself: a seed drawn from the operating system.
        let os_seed = RandomState::new().hash_one(wall.as_unix_millis());
        let config = settings.node_config(listen_addr, wall, resolved, os_seed);
        let rpc_addr = config.published_rpc_addr();
        let selection = Selection::for_node(Arc::clone(&settings.selector), &config);
        let core = cohort_core::Node::new(config, Instant::now())?;
        // `configure` may have changed the identity: the core's is the one.
        let id = core.id().clone();
        let clock = Clock::new(Arc::clone(core.clock()), settings.wall_clock.clone());
        let rpc = match (rpc_socket, &rpc_settings.tls) {
            (Some(rpc_socket), Some(tls)) => {
                let rpc_listen = rpc_socket.local_addr().ok();
                let rpc = Rpc::start(
                    rpc_socket,
                    Arc::clone(core.clock()),
                    settings.wall_clock.clone(),
                    rpc_settings.connection.clone(),
                    settings.rpc_limits,
                    tls,
                    Duration::from_secs(5),
                )
                .map_err(|error| match error {
                    StartError::Bind(source) => ConnectError::Bind {
                        addr: rpc_listen.unwrap_or(listen),
                        source,
                    },
                    StartError::Tls(error) => ConnectError::Tls(error),
                })?;
                Some(rpc)
            }
            _ => None,
        };
        let members = MembersCell::new(core.members());
        let events = EventBus::new(settings.event_capacity, members.clone());
        let shared = Arc::new(Shared {
            id,
            listen_addr,
            rpc_addr,
            core: Mutex::new(core),
            signal: crate::signal::Signal::default(),
            members,
            events,
            clock,
            selection,
            hooks: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            stop_requested: AtomicBool::new(false),
            task: Mutex::new(None),
            resolver: Mutex::new(None),
            counters: Counters::new(),
            rpc,
            rpc_deadline: rpc_settings.deadline,
            rpc_drain_timeout: rpc_settings.drain_timeout,
        });
        if let Some(rpc) = &shared.rpc {
            // Every node serves its view of the membership (`cohort members`).
            let admin = cohort_core::admin::AdminService::new(shared.members.clone());
            if let Err(error) = rpc.registry.add_service(admin) {
                tracing::warn!(%error, "the admin service could not be added");
            }
        }
        let run = runtime::run(Arc::clone(&shared), socket);
        let node = shared.id.clone();
        // A panic in the loop is logged by `shutdown`, not thrown again into it.
        let task = smol::spawn(async move {
            if AssertUnwindSafe(run).catch_unwind().await.is_err() {
                tracing::error!(%node, "the node task panicked");
            }
        });
        *lock(&shared.task) = Some(task);
        if seeds.has_host_names() {
            let resolver = smol::spawn(runtime::refresh_seeds(
                Arc::clone(&shared),
                seeds,
                settings.seed_refresh_interval,
            ));
            *lock(&shared.resolver) = Some(resolver);
        }
        tracing::debug!(node = %shared.id, %listen_addr, "node started");
        Ok(Self {
            _guard: Arc::new(AbortOnDrop(Arc::clone(&shared))),
            shared,
        })
    }

    /// This node's identity (name, generation, public gossip address).
    #[must_use]
    pub fn id(&self) -> &NodeId {
        &self.shared.id
    }

    /// The address the gossip socket is bound to (the listen address, with the actual port
    /// when port 0 was asked for).
    #[must_use]
    pub fn listen_addr(&self) -> SocketAddr {
        self.shared.listen_addr
    }

    /// The address peers gossip to.
    #[must_use]
    pub fn public_addr(&self) -> SocketAddr {
        self.shared.id.gossip_addr()
    }

    /// The RPC address this node publishes ([`RPC_ADDR_KEY`](crate::RPC_ADDR_KEY)).
    #[must_use]
    pub fn rpc_addr(&self) -> SocketAddr {
        self.shared.rpc_addr
    }

    /// The membership now: every known member with its status and metadata, and a version
    /// that grows with each change.
    #[must_use]
    pub fn members(&self) -> Members {
        self.shared.members.get()
    }

    /// The raw gossiped state of `id` as this node holds it now: every key-value with its
    /// version and status (tombstones and reserved `__cohort/` keys included), the heartbeat,
    /// `max_version` and `last_gc_version`. For diagnostics and tests; applications read
    /// [`members`](Self::members).
    #[must_use]
    pub fn node_state(&self, id: &NodeId) -> Option<NodeState> {
        self.shared.lock_core().node_state(id).cloned()
    }

    /// This node as a member: its metadata and its status (`Left` once it shuts down).
    #[must_use]
    pub fn local_member(&self) -> Member {
        self.shared.lock_core().local_member()
    }

    /// Changes of keys starting with `prefix`, on every member (this one included), from now
    /// on: chitchat's key listeners as a stream. See [`KeyChanges`].
    #[must_use]
    pub fn key_changes(&self, prefix: impl Into<String>) -> KeyChanges {
        self.membership_events().with_key_prefix(prefix)
    }

    /// Member snapshots as they change: the current one first, then every newer one (a slow
    /// reader skips to the latest). See [`MembershipChanges`].
    #[must_use]
    pub fn membership_changes(&self) -> MembershipChanges {
        self.shared.members.changes()
    }

    /// A stream of membership events from now on (see [`MembershipEvents`] for what a slow
    /// reader gets). Each call gives an independent reader; after a shutdown, one that ends at
    /// once.
    #[must_use]
    pub fn membership_events(&self) -> MembershipEvents {
        self.shared.events.subscribe()
    }

    /// Waits until `predicate` holds for the membership, and returns that snapshot.
    ///
    /// # Errors
    ///
    /// [`WaitError::Timeout`] (with the last snapshot) when `timeout` passes first,
    /// [`WaitError::ShutDown`] when the node shuts down.
    pub async fn wait_for_members(
        &self,
        predicate: impl FnMut(&Members) -> bool,
        timeout: Duration,
    ) -> Result<Members, WaitError> {
        self.shared
            .members
            .wait_for_members(predicate, Timer::after(timeout))
            .await
    }

    /// Picks live members for a request at `consistency`, with the node's selector (the local
    /// node is never picked; see [`Consistency`] for the exact counts).
    ///
    /// # Errors
    ///
    /// [`SelectError::NotEnoughNodes`] when too few members are live.
    pub fn select_nodes(&self, consistency: Consistency) -> Result<Vec<Candidate>, SelectError> {
        self.shared
            .selection
            .select_nodes(&self.members(), consistency)
    }

    /// The `n` owners of `key` among the live members, the local node included, by rendezvous
    /// hashing ([`RendezvousSelector`](crate::RendezvousSelector)): every node that sees the
    /// same members computes the same owners, and a membership change moves only the keys it
    /// must. Highest score first.
    ///
    /// # Errors
    ///
    /// [`SelectError::NotEnoughNodes`] when fewer than `n` members are live.
    pub fn select_for_key(
        &self,
        key: impl AsRef<[u8]>,
        n: usize,
    ) -> Result<Vec<Candidate>, SelectError> {
        self.shared
            .selection
            .select_for_key(&self.members(), key.as_ref(), n)
    }

    /// The topology selections are made from (rebuilt once per membership change).
    #[must_use]
    pub fn topology(&self) -> Arc<Topology> {
        self.shared.selection.topology(&self.members())
    }

    /// The node's hybrid logical clock.
    #[must_use]
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// Publishes `key = value` in this node's metadata (gossiped to every member). The local
    /// snapshot ([`members`](Self::members)) shows it at once.
    ///
    /// # Errors
    ///
    /// [`KeyError::Reserved`] for keys under `__cohort/`, [`KeyError::Leaving`] once
    /// [`shutdown`](Self::shutdown) has begun. Nothing changes then.
    pub fn set_metadata(&self, key: &str, value: &str) -> Result<(), KeyError> {
        self.command(|node, now| node.set(now, key, value))
    }

    /// Publishes `key = value` for the grace period
    /// ([`NodeConfig::marked_for_deletion_grace_period`](crate::NodeConfig::marked_for_deletion_grace_period),
    /// 1 h by default, adjustable with [`NodeBuilder::configure`](crate::NodeBuilder::configure));
    /// then it is removed everywhere.
    ///
    /// # Errors
    ///
    /// As [`set_metadata`](Self::set_metadata).
    pub fn set_metadata_with_ttl(&self, key: &str, value: &str) -> Result<(), KeyError> {
        self.command(|node, now| node.set_with_ttl(now, key, value))
    }

    /// Removes `key` from this node's metadata (a tombstone is gossiped). Returns whether it
    /// existed.
    ///
    /// # Errors
    ///
    /// As [`set_metadata`](Self::set_metadata).
    pub fn delete_metadata(&self, key: &str) -> Result<bool, KeyError> {
        self.command(|node, now| node.delete(now, key))
    }

    /// Keeps `key` visible for the grace period, then removes it everywhere (a key kept alive
    /// only while its owner renews it). Returns whether it existed.
    ///
    /// # Errors
    ///
    /// As [`set_metadata`](Self::set_metadata).
    pub fn delete_metadata_after_ttl(&self, key: &str) -> Result<bool, KeyError> {
        self.command(|node, now| node.delete_after_ttl(now, key))
    }

    /// Runs a command on the core under its lock, publishes the new snapshot and wakes the
    /// node's task to send what it produced.
    fn command<T>(
        &self,
        apply: impl FnOnce(&mut cohort_core::Node, Instant) -> Result<T, KeyError>,
    ) -> Result<T, KeyError> {
        if self.shared.stopping.load(Ordering::Acquire) {
            return Err(KeyError::Leaving);
        }
        let mut locked = self.shared.lock_core();
        let out = apply(&mut locked, Instant::now())?;
        self.shared.publish(&locked);
        drop(locked);
        self.shared.signal();
        Ok(out)
    }

    /// Accepts gossip signed with `key` too: the first step of a key rotation (then
    /// [`use_cluster_key`](Self::use_cluster_key) on every node, then
    /// [`remove_cluster_key`](Self::remove_cluster_key) of the old key). Returns whether the key
    /// was new.
    ///
    /// # Errors
    ///
    /// [`KeyringError::NotKeyed`](crate::KeyringError::NotKeyed) for a node started without a
    /// [`keyring`](crate::NodeBuilder::keyring).
    pub fn install_cluster_key(&self, key: crate::ClusterKey) -> Result<bool, crate::KeyringError> {
        self.shared.lock_core().install_key(key)
    }

    /// Signs gossip with `key` (installed before) from now on.
    ///
    /// # Errors
    ///
    /// [`KeyringError::NotInstalled`](crate::KeyringError::NotInstalled) or
    /// [`NotKeyed`](crate::KeyringError::NotKeyed); nothing changed.
    pub fn use_cluster_key(&self, key: &crate::ClusterKey) -> Result<(), crate::KeyringError> {
        self.shared.lock_core().use_key(key)
    }

    /// Stops accepting gossip signed with `key`. Returns whether it was installed.
    ///
    /// # Errors
    ///
    /// [`KeyringError::InUse`](crate::KeyringError::InUse) for the key in use, or
    /// [`NotKeyed`](crate::KeyringError::NotKeyed); nothing changed.
    pub fn remove_cluster_key(&self, key: &crate::ClusterKey) -> Result<bool, crate::KeyringError> {
        self.shared.lock_core().remove_key(key)
    }

    /// Starts `extension` on this node and returns what it gives back.
    ///
    /// # Errors
    ///
    /// Whatever the extension's `init_extension` returns.
    pub async fn add_extension<E: ClusterExtension>(
        &self,
        extension: E,
    ) -> Result<E::Output, E::Error> {
        extension.init_extension(self).await
    }

    /// Registers `hook` to run when [`shutdown`](Self::shutdown) begins, before the node
    /// leaves the cluster. Hooks run one after another, the last registered first.
    pub fn on_shutdown<F, Fut>(&self, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        lock(&self.shared.hooks).push(Box::new(move || Box::pin(hook())));
    }

    /// Serves `service` over RPC from now on (every connection, at once).
    ///
    /// Handlers run on the task of the connection a call came in on: one that blocks its
    /// thread holds up that connection's other calls (use `smol::unblock` for blocking or long
    /// CPU work).
    ///
    /// # Errors
    ///
    /// A [`RegistryError`](cohort_core::rpc::RegistryError): a service of that name is
    /// already served, or two method ids collide; nothing changed. A node without
    /// [`tls`](crate::NodeBuilder::tls) has no RPC: the service is accepted but no call can
    /// reach it.
    pub fn add_rpc_service<S: RpcService>(
        &self,
        service: S,
    ) -> Result<(), cohort_core::rpc::RegistryError> {
        match &self.shared.rpc {
            Some(rpc) => rpc.registry.add_service(service),
            None => Ok(()),
        }
    }

    /// Stops serving `S`: calls already running finish, new ones get
    /// [`StatusCode::NotFound`](cohort_core::rpc::StatusCode::NotFound). Every other service
    /// stays. Returns whether it was served.
    pub fn remove_rpc_service<S: RpcService>(&self) -> bool {
        self.shared
            .rpc
            .as_ref()
            .is_some_and(|rpc| rpc.registry.remove_service::<S>())
    }

    /// A client of service `S` on `to` (a member, a candidate from a selection, or an
    /// address), with the node's default deadline
    /// ([`NodeBuilder::rpc_deadline`](crate::NodeBuilder::rpc_deadline)). Calls share one
    /// QUIC connection per member, opened on the first call.
    #[must_use]
    pub fn rpc_client<S: RpcService>(&self, to: impl RpcTarget) -> RpcClient<S> {
        RpcClient::new(
            self.shared.rpc.clone(),
            to.rpc_addr(),
            self.shared.rpc_deadline,
        )
    }

    /// The address the QUIC endpoint is bound to (`None` without TLS: no RPC).
    #[must_use]
    pub fn rpc_listen_addr(&self) -> Option<SocketAddr> {
        self.shared.rpc.as_ref().map(|rpc| rpc.local_addr())
    }

    /// Traffic counters since the node started.
    #[must_use]
    pub fn statistics(&self) -> Statistics {
        let peak = self
            .shared
            .rpc
            .as_ref()
            .map_or(0, |rpc| rpc.send_buffer_peak.load(Ordering::Relaxed));
        let diagnostics = self.shared.lock_core().diagnostics();
        self.shared.counters.statistics(peak, diagnostics)
    }

    /// Leaves the cluster gracefully and stops: runs the shutdown hooks, announces the
    /// departure to peers (waiting at most the leave timeout for it to go out), then ends every
    /// task of the node and closes its socket. Peers see this node as
    /// [`Left`](crate::MemberStatus::Left) within a round trip.
    ///
    /// Dropping the last handle without calling this stops the node abruptly instead: no
    /// departure is sent, and peers see the node fail once their failure detector times out.
    ///
    /// Calling it again, from any clone, waits for the first call to finish.
    pub async fn shutdown(&self) {
        if self.shared.stopping.swap(true, Ordering::AcqRel) {
            self.shared.members.closed().await;
            return;
        }
        let hooks: Vec<ShutdownHook> = std::mem::take(&mut *lock(&self.shared.hooks));
        for hook in hooks.into_iter().rev() {
            hook().await;
        }
        // Cancelled when dropped; `cancel` waits until it has stopped.
        let resolver = lock(&self.shared.resolver).take();
        if let Some(resolver) = resolver {
            resolver.cancel().await;
        }
        self.shared.stop_requested.store(true, Ordering::Release);
        self.shared.signal();
        let task = lock(&self.shared.task).take();
        if let Some(task) = task {
            task.await;
        }
        // Peers know we left: let the calls being served finish, then close RPC (its port is
        // free when this returns).
        if let Some(rpc) = &self.shared.rpc {
            rpc.shutdown(self.shared.rpc_drain_timeout).await;
        }
        // Ends every event stream (after what they hold), snapshot stream and wait.
        self.shared.events.close();
        self.shared.members.close();
        tracing::debug!(node = %self.shared.id, "node shut down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smol lookup: addresses and names that resolve are taken as they are now; a name
    /// that does not resolve keeps what it had (core's `SeedSet`, tested there with a fake
    /// lookup), here nothing yet.
    #[test]
    fn seed_host_names_resolve_with_smol() {
        smol::block_on(async {
            let mut seeds = SeedSet::parse(&[
                "127.0.0.1:7000".to_owned(),
                // `.invalid` never resolves (RFC 6761).
                "seed.invalid:7001".to_owned(),
                "localhost:7002".to_owned(),
            ]);
            let first = seeds.resolve(lookup_seed).await;
            assert!(first.contains(&SocketAddr::from(([127, 0, 0, 1], 7000))));
            assert!(
                !first.iter().any(|a| a.port() == 7001),
                "nothing known of it"
            );
            assert!(first.iter().any(|a| a.port() == 7002), "localhost resolves");
        });
    }
}
