//! `loopback`: chitchat 0.13, cohort-tokio and cohort-smol, side by side, as real nodes on
//! loopback UDP.
//!
//! For each cluster size N and each system (one run at a time, never overlapping), it starts
//! N nodes in this process (chitchat and cohort-tokio on one multi-threaded tokio runtime;
//! cohort-smol on smol's global executor, whose thread count is `SMOL_THREADS`, 1 unless set,
//! plus its I/O reactor thread), each on its own UDP port on
//! 127.0.0.1, gossiping every 100 ms, every node seeded with node 0, each publishing one key
//! from the start. Both use chitchat's failure detector defaults (phi threshold 8, a window of
//! 1,000 samples, 10 s max interval, 24 h dead-node grace period) except the prior mean
//! interval (`initial_interval`), 100 ms for both. It measures:
//!
//! - `all_live_s`: from the start until every node sees all N nodes live (polled every 10 ms, or
//!   `--poll-ms`); `cohort-mode` is cohort-tokio in cohort mode (probes every 100 ms instead of
//!   gossip rounds; the failure detector settings do not apply);
//! - `all_keys_s`: from the start until every node holds every other node's key;
//! - `cpu_s` and `cores`: the process's CPU time (user + system, from `/proc/self/stat`) over
//!   the steady-state window that follows convergence, and that divided by the window;
//! - `bytes_per_node_per_s` and `datagrams_per_node_per_s`: UDP payload bytes and datagrams
//!   sent over that window, per node and per second (cohort: `Node::statistics`; chitchat: a
//!   thin wrapper around its `UdpTransport` counting what each `Socket::send` reports);
//! - `detect_dead_s`: a node (the last one, never node 0) is killed `--kill-after-s` after
//!   convergence (chitchat: its handle shut down; cohort: every handle dropped, which aborts
//!   the node without a leave), and this is the time until every survivor marks it dead
//!   (cohort: `Failed`; chitchat: out of the live set and in the dead set).
//!
//! Every wait is bounded (`--timeout-s`, default 60 s); a wait that times out prints
//! `timeout`. Each metric is printed as a `key=value` line as soon as it is known, and a run
//! ends with one line holding them all.
//!
//! ```sh
//! cargo run --release -p cohort-benches --bin loopback -- --systems chitchat,cohort \
//!     --nodes 10,50,100 --window-s 30 --kill-after-s 35
//! ```

use std::fmt::Write as _;
use std::future::Future;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpTransport};
use chitchat::{
    ChitchatConfig, ChitchatEnvelope, ChitchatHandle, ChitchatId, ProtocolVersion, spawn_chitchat,
};
use tokio::time::{Instant, MissedTickBehavior};

/// The gossip interval of every node, and the failure detector's prior mean interval.
const GOSSIP_INTERVAL: Duration = Duration::from_millis(100);
/// How often the conditions are checked while waiting, unless `--poll-ms` says otherwise.
const POLL: Duration = Duration::from_millis(10);
/// The phi threshold of both failure detectors (chitchat's default).
const PHI_THRESHOLD: f64 = 8.0;
/// How long a dead node is kept (chitchat's default): far longer than a run.
const DEAD_NODE_GRACE_PERIOD: Duration = Duration::from_secs(24 * 3600);
/// The key every node publishes.
const KEY: &str = "key";
/// The cluster id of every run.
const CLUSTER_ID: &str = "loopback";
/// The pause between two runs.
const BETWEEN_RUNS: Duration = Duration::from_secs(2);
/// The bound on shutting a whole cluster down.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Clock ticks per second of `/proc/self/stat` (`USER_HZ`, 100 on every Linux architecture
/// this runs on; `getconf CLK_TCK` says 100 here).
const USER_HZ: f64 = 100.0;

/// The system a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    Chitchat,
    Cohort,
    /// cohort on the smol driver (gossip only: no TLS, so no RPC endpoint).
    Smol,
    /// cohort-tokio in cohort mode (`Protocol::Cohort`, probes every 100 ms).
    CohortMode,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            Self::Chitchat => "chitchat",
            Self::Cohort => "cohort",
            Self::Smol => "smol",
            Self::CohortMode => "cohort-mode",
        }
    }
}

/// The command line.
struct Options {
    systems: Vec<System>,
    nodes: Vec<usize>,
    window: Duration,
    kill_after: Duration,
    timeout: Duration,
    poll: Duration,
}

const USAGE: &str = "usage: loopback [--systems chitchat,cohort,smol,cohort-mode] [--nodes 10,50,100] \
                     [--window-s 30] [--kill-after-s 35] [--timeout-s 60] [--poll-ms 10]";

fn parse_secs(value: &str, flag: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{flag}: not a number of seconds: {value}"))
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        systems: vec![System::Chitchat, System::Cohort],
        nodes: vec![10, 50, 100],
        window: Duration::from_secs(30),
        kill_after: Duration::from_secs(35),
        timeout: Duration::from_secs(60),
        poll: POLL,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_owned());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--systems" => {
                options.systems = value
                    .split(',')
                    .map(|s| match s.trim() {
                        "chitchat" => Ok(System::Chitchat),
                        "cohort" => Ok(System::Cohort),
                        "smol" => Ok(System::Smol),
                        "cohort-mode" => Ok(System::CohortMode),
                        other => Err(format!("--systems: unknown system {other}")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--nodes" => {
                options.nodes = value
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<usize>()
                            .ok()
                            .filter(|n| *n >= 2)
                            .ok_or_else(|| format!("--nodes: need integers >= 2, got {s}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--window-s" => options.window = parse_secs(&value, &flag)?,
            "--kill-after-s" => options.kill_after = parse_secs(&value, &flag)?,
            "--timeout-s" => options.timeout = parse_secs(&value, &flag)?,
            "--poll-ms" => {
                options.poll = parse_secs(&value, &flag)
                    .map(|d| d / 1_000)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| format!("--poll-ms: need a positive number, got {value}"))?;
            }
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if options.kill_after < options.window {
        return Err(
            "--kill-after-s must be at least --window-s (the kill comes after the \
                    measurement window)"
                .to_owned(),
        );
    }
    Ok(options)
}

/// The process's CPU time so far (user + system, every thread), from `/proc/self/stat`.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: fields after the
    // last ')' start at field 3 (state); utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// Traffic sent by a whole cluster since it started.
#[derive(Clone, Copy, Debug, Default)]
struct Traffic {
    bytes: u64,
    datagrams: u64,
}

/// What a benchmark needs from a running cluster of either system.
trait Cluster: Sized {
    /// Starts `n` nodes (node 0 first; every other node seeded with node 0).
    async fn start(n: usize) -> Result<Self, String>;
    /// Whether every running node sees every running node live.
    async fn all_live(&self) -> bool;
    /// Whether every running node holds every other node's key.
    async fn all_keys(&self) -> bool;
    /// What every node sent so far.
    fn traffic(&self) -> Traffic;
    /// Stops node `index` abruptly (no departure announced).
    async fn kill(&mut self, index: usize);
    /// Whether every node still running marks node `index` dead.
    async fn dead_seen_by_all(&self, index: usize) -> bool;
    /// Stops every node still running.
    async fn shutdown(self);
}

fn generation() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn value_of(index: usize) -> String {
    format!("value-{index}")
}

// ---------------------------------------------------------------------------------------------
// chitchat

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Datagrams and bytes one chitchat node sent.
#[derive(Debug, Default)]
struct SendCounters {
    datagrams: AtomicU64,
    bytes: AtomicU64,
}

/// chitchat's `UdpTransport`, with a count of what its sockets send.
///
/// chitchat's UDP transport keeps no counters, but every datagram a chitchat server sends goes
/// through `Socket::send`, which reports the bytes handed to the socket (the UDP payload).
/// The traits are `async_trait`s; their methods are written out here as boxed futures.
struct CountingTransport {
    counters: Arc<SendCounters>,
}

impl Transport for CountingTransport {
    fn open<'a, 'b>(
        &'a self,
        listen_addr: SocketAddr,
    ) -> BoxFuture<'b, anyhow::Result<Box<dyn Socket>>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let inner = UdpTransport.open(listen_addr).await?;
            let socket: Box<dyn Socket> = Box::new(CountingSocket {
                inner,
                counters: Arc::clone(&self.counters),
            });
            Ok(socket)
        })
    }
}

/// A chitchat UDP socket that counts what it sends.
struct CountingSocket {
    inner: Box<dyn Socket>,
    counters: Arc<SendCounters>,
}

impl Socket for CountingSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn send<'a, 'b>(
        &'a mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> BoxFuture<'b, anyhow::Result<SendOutcome>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let outcome = self.inner.send(to, envelope).await?;
            self.counters.datagrams.fetch_add(1, Ordering::Relaxed);
            self.counters
                .bytes
                .fetch_add(outcome.num_bytes_sent as u64, Ordering::Relaxed);
            Ok(outcome)
        })
    }

    fn recv<'a, 'b>(&'a mut self) -> BoxFuture<'b, anyhow::Result<RecvOutcome>>
    where
        'a: 'b,
        Self: 'b,
    {
        // The same (cancellable) future as the inner socket's.
        self.inner.recv()
    }
}

/// N chitchat nodes.
struct ChitchatCluster {
    handles: Vec<Option<ChitchatHandle>>,
    ids: Vec<ChitchatId>,
    values: Vec<String>,
    counters: Vec<Arc<SendCounters>>,
}

/// `n` distinct free UDP ports on 127.0.0.1 (held together while they are picked, so that
/// they differ, then released for the nodes to bind).
fn free_loopback_addrs(n: usize) -> Result<Vec<SocketAddr>, String> {
    let sockets = (0..n)
        .map(|_| StdUdpSocket::bind(("127.0.0.1", 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot pick free ports: {e}"))?;
    sockets
        .iter()
        .map(|s| s.local_addr().map_err(|e| e.to_string()))
        .collect()
}

impl Cluster for ChitchatCluster {
    async fn start(n: usize) -> Result<Self, String> {
        // chitchat's identity carries the advertised address, so the ports are chosen first.
        let addrs = free_loopback_addrs(n)?;
        let seed = addrs[0].to_string();
        let mut cluster = Self {
            handles: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            values: Vec::with_capacity(n),
            counters: Vec::with_capacity(n),
        };
        for (i, addr) in addrs.into_iter().enumerate() {
            let id = ChitchatId::new(format!("node-{i}"), generation(), addr);
            let config = ChitchatConfig {
                chitchat_id: id.clone(),
                cluster_id: CLUSTER_ID.to_owned(),
                gossip_interval: GOSSIP_INTERVAL,
                listen_addr: addr,
                seed_nodes: if i == 0 {
                    Vec::new()
                } else {
                    vec![seed.clone()]
                },
                failure_detector_config: chitchat::FailureDetectorConfig {
                    phi_threshold: PHI_THRESHOLD,
                    initial_interval: GOSSIP_INTERVAL,
                    dead_node_grace_period: DEAD_NODE_GRACE_PERIOD,
                    ..Default::default()
                },
                // cohort's default; nothing is deleted in these runs.
                marked_for_deletion_grace_period: Duration::from_secs(3600),
                catchup_callback: None,
                extra_liveness_predicate: None,
                protocol_version: ProtocolVersion::V0,
            };
            let counters = Arc::new(SendCounters::default());
            let transport = CountingTransport {
                counters: Arc::clone(&counters),
            };
            let value = value_of(i);
            let handle = spawn_chitchat(config, vec![(KEY.to_owned(), value.clone())], &transport)
                .await
                .map_err(|e| format!("chitchat node {i} did not start: {e:#}"))?;
            cluster.handles.push(Some(handle));
            cluster.ids.push(id);
            cluster.values.push(value);
            cluster.counters.push(counters);
        }
        Ok(cluster)
    }

    async fn all_live(&self) -> bool {
        let running = self.handles.iter().flatten().count();
        for handle in self.handles.iter().flatten() {
            let chitchat = handle.chitchat();
            let guard = chitchat.lock().await;
            if guard.live_nodes().count() != running {
                return false;
            }
        }
        true
    }

    async fn all_keys(&self) -> bool {
        for (i, handle) in self.handles.iter().enumerate() {
            let Some(handle) = handle else { continue };
            let chitchat = handle.chitchat();
            let guard = chitchat.lock().await;
            for (j, (id, value)) in self.ids.iter().zip(&self.values).enumerate() {
                if i != j && guard.node_state(id).and_then(|s| s.get(KEY)) != Some(value.as_str()) {
                    return false;
                }
            }
        }
        true
    }

    fn traffic(&self) -> Traffic {
        self.counters
            .iter()
            .fold(Traffic::default(), |t, c| Traffic {
                bytes: t.bytes + c.bytes.load(Ordering::Relaxed),
                datagrams: t.datagrams + c.datagrams.load(Ordering::Relaxed),
            })
    }

    async fn kill(&mut self, index: usize) {
        // chitchat has no departure message: stopping its server is all a crash is to peers.
        // The server ends at its next turn (dropping the handle would end it the same way),
        // closing its socket.
        if let Some(handle) = self.handles[index].take() {
            if let Err(error) = handle.shutdown().await {
                println!("# chitchat node {index} stopped with an error: {error:#}");
            }
        }
    }

    async fn dead_seen_by_all(&self, index: usize) -> bool {
        let dead = &self.ids[index];
        for handle in self.handles.iter().flatten() {
            let chitchat = handle.chitchat();
            let guard = chitchat.lock().await;
            if guard.live_nodes().any(|id| id == dead) || !guard.dead_nodes().any(|id| id == dead) {
                return false;
            }
        }
        true
    }

    async fn shutdown(self) {
        for handle in self.handles.into_iter().flatten() {
            let _ = handle.shutdown().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cohort

/// N cohort nodes of one driver (`$driver`), as `$name`.
macro_rules! cohort_cluster {
    ($name:ident, $driver:ident, $protocol:expr) => {
        struct $name {
            nodes: Vec<Option<$driver::Node>>,
            ids: Vec<$driver::NodeId>,
            values: Vec<String>,
        }

        impl Cluster for $name {
            async fn start(n: usize) -> Result<Self, String> {
                let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
                let mut failure_detector = $driver::FailureDetectorConfig::default();
                failure_detector.phi_threshold = PHI_THRESHOLD;
                failure_detector.initial_interval = GOSSIP_INTERVAL;
                failure_detector.dead_node_grace_period = DEAD_NODE_GRACE_PERIOD;
                let mut cluster = Self {
                    nodes: Vec::with_capacity(n),
                    ids: Vec::with_capacity(n),
                    values: Vec::with_capacity(n),
                };
                let mut seeds: Vec<String> = Vec::new();
                for i in 0..n {
                    let value = value_of(i);
                    // Each node binds its own ephemeral port (distinct), and advertises it.
                    let node = $driver::NodeBuilder::new(
                        format!("node-{i}"),
                        $driver::ConnectionConfig::new(any_port, any_port, seeds.iter().cloned()),
                    )
                    .cluster_id(CLUSTER_ID)
                    .gossip_interval(GOSSIP_INTERVAL)
                    .protocol($protocol)
                    .probe_interval(GOSSIP_INTERVAL)
                    .failure_detector(failure_detector.clone())
                    .metadata(KEY, value.as_str())
                    .connect()
                    .await
                    .map_err(|e| format!("{} node {i} did not start: {e}", stringify!($driver)))?;
                    if i == 0 {
                        seeds.push(node.public_addr().to_string());
                    }
                    cluster.ids.push(node.id().clone());
                    cluster.nodes.push(Some(node));
                    cluster.values.push(value);
                }
                Ok(cluster)
            }

            async fn all_live(&self) -> bool {
                let running = self.nodes.iter().flatten().count();
                self.nodes
                    .iter()
                    .flatten()
                    .all(|node| node.members().live_count() == running)
            }

            async fn all_keys(&self) -> bool {
                self.nodes.iter().enumerate().all(|(i, node)| {
                    let Some(node) = node else { return true };
                    let members = node.members();
                    self.ids
                        .iter()
                        .zip(&self.values)
                        .enumerate()
                        .all(|(j, (id, value))| {
                            i == j
                                || members.get(id).and_then(|m| m.get(KEY)) == Some(value.as_str())
                        })
                })
            }

            fn traffic(&self) -> Traffic {
                // Only taken while every node runs, so no node's counters are lost.
                self.nodes
                    .iter()
                    .flatten()
                    .fold(Traffic::default(), |t, node| {
                        let s = node.statistics();
                        Traffic {
                            bytes: t.bytes + s.bytes_sent,
                            datagrams: t.datagrams + s.datagrams_sent,
                        }
                    })
            }

            async fn kill(&mut self, index: usize) {
                // Dropping the only handle aborts the node's task (and closes its socket) without the
                // leave that `shutdown` would announce: a crash, as far as peers can tell.
                drop(self.nodes[index].take());
            }

            async fn dead_seen_by_all(&self, index: usize) -> bool {
                let dead = &self.ids[index];
                self.nodes.iter().flatten().all(|node| {
                    node.members()
                        .get(dead)
                        .is_some_and(|m| m.status == $driver::MemberStatus::Failed)
                })
            }

            async fn shutdown(self) {
                let tasks: Vec<_> = self
                    .nodes
                    .into_iter()
                    .flatten()
                    .map(|node| tokio::spawn(async move { node.shutdown().await }))
                    .collect();
                for task in tasks {
                    let _ = task.await;
                }
            }
        }
    };
}

cohort_cluster!(
    CohortCluster,
    cohort_tokio,
    cohort_tokio::Protocol::Chitchat
);
cohort_cluster!(SmolCluster, cohort_smol, cohort_smol::Protocol::Chitchat);
cohort_cluster!(
    CohortModeCluster,
    cohort_tokio,
    cohort_tokio::Protocol::Cohort
);

// ---------------------------------------------------------------------------------------------
// The measurement

/// A duration in seconds, or `timeout`.
fn secs(d: Option<Duration>) -> String {
    d.map_or_else(
        || "timeout".to_owned(),
        |d| format!("{:.3}", d.as_secs_f64()),
    )
}

/// Prints metrics as they come, and all of them at the end of a run.
struct Report {
    prefix: String,
    all: String,
}

impl Report {
    fn new(system: System, n: usize) -> Self {
        Self {
            prefix: format!("system={} n={n}", system.name()),
            all: String::new(),
        }
    }

    fn metric(&mut self, key: &str, value: impl std::fmt::Display) {
        println!("{} {key}={value}", self.prefix);
        let _ = write!(self.all, " {key}={value}");
    }

    fn finish(self) {
        println!("{}{}", self.prefix, self.all);
    }
}

/// Polls `check` every `poll` until it holds or `deadline` passes.
async fn wait_until<F: Future<Output = bool>>(
    poll: Duration,
    deadline: Instant,
    mut check: impl FnMut() -> F,
) -> bool {
    let mut ticks = tokio::time::interval(poll);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

async fn run<C: Cluster>(system: System, n: usize, options: &Options) {
    let mut report = Report::new(system, n);
    let start = Instant::now();
    let mut cluster = match C::start(n).await {
        Ok(cluster) => cluster,
        Err(error) => {
            report.metric("error", format!("{error:?}"));
            report.finish();
            return;
        }
    };

    report.metric("start_s", format!("{:.4}", start.elapsed().as_secs_f64()));

    // 1 and 2: convergence, each condition timed from the start at the first poll it holds.
    let deadline = start + options.timeout;
    let mut all_live = None;
    let mut all_keys = None;
    let mut ticks = tokio::time::interval(options.poll);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if all_live.is_none() && cluster.all_live().await {
            all_live = Some(start.elapsed());
        }
        if all_keys.is_none() && cluster.all_keys().await {
            all_keys = Some(start.elapsed());
        }
        if (all_live.is_some() && all_keys.is_some()) || Instant::now() >= deadline {
            break;
        }
    }
    report.metric("all_live_s", secs(all_live));
    report.metric("all_keys_s", secs(all_keys));
    let converged = Instant::now();

    // 3 and 4: a quiet steady-state window (nothing polls the nodes during it).
    let cpu_before = process_cpu_seconds();
    let traffic_before = cluster.traffic();
    let window_start = Instant::now();
    tokio::time::sleep_until(converged + options.window).await;
    let elapsed = window_start.elapsed().as_secs_f64();
    let cpu_after = process_cpu_seconds();
    let traffic_after = cluster.traffic();
    match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => {
            let cpu = after - before;
            report.metric("cpu_s", format!("{cpu:.2}"));
            report.metric("cores", format!("{:.3}", cpu / elapsed));
        }
        _ => {
            report.metric("cpu_s", "unavailable");
            report.metric("cores", "unavailable");
        }
    }
    let per_node_per_s = |total: u64| total as f64 / n as f64 / elapsed;
    report.metric(
        "bytes_per_node_per_s",
        format!(
            "{:.0}",
            per_node_per_s(traffic_after.bytes - traffic_before.bytes)
        ),
    );
    report.metric(
        "datagrams_per_node_per_s",
        format!(
            "{:.1}",
            per_node_per_s(traffic_after.datagrams - traffic_before.datagrams)
        ),
    );

    // 5: crash detection.
    tokio::time::sleep_until(converged + options.kill_after).await;
    let victim = n - 1;
    cluster.kill(victim).await;
    let killed = Instant::now();
    let detected = wait_until(options.poll, killed + options.timeout, || {
        cluster.dead_seen_by_all(victim)
    })
    .await;
    report.metric("detect_dead_s", secs(detected.then(|| killed.elapsed())));

    if tokio::time::timeout(SHUTDOWN_TIMEOUT, cluster.shutdown())
        .await
        .is_err()
    {
        // The remaining handles are dropped here, which stops those nodes too.
        report.metric("shutdown", "timeout");
    }
    report.finish();
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "# loopback: gossip {} ms, window {} s, kill after {} s, timeout {} s, polls every {} ms, \
         {workers} runtime workers",
        GOSSIP_INTERVAL.as_millis(),
        options.window.as_secs_f64(),
        options.kill_after.as_secs_f64(),
        options.timeout.as_secs_f64(),
        options.poll.as_secs_f64() * 1_000.0,
    );
    let mut first = true;
    for &n in &options.nodes {
        for &system in &options.systems {
            if !first {
                tokio::time::sleep(BETWEEN_RUNS).await;
            }
            first = false;
            match system {
                System::Chitchat => run::<ChitchatCluster>(system, n, &options).await,
                System::Cohort => run::<CohortCluster>(system, n, &options).await,
                System::Smol => run::<SmolCluster>(system, n, &options).await,
                System::CohortMode => run::<CohortModeCluster>(system, n, &options).await,
            }
        }
    }
}
