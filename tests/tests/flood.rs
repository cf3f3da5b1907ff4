//! Floods on loopback: a peer sends 100,000 garbage, oversized and forged datagrams and RPC
//! frames at a node of a three-node cluster as fast as it can. The node stays live in every
//! view, keeps serving RPC calls throughout, its heap grows by less than 10 MB (measured by a
//! counting allocator over the whole process), and no forged member appears anywhere: with a
//! cluster key none at all, without one no more than the per-sender bound lets in.
//!
//! Real sockets on 127.0.0.1; every wait is bounded.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cohort_core::rpc::{FrameHeader, FrameKind, HEADER_LEN, MethodId};
use cohort_core::wire::{self, Digest, Message, NodeDigest, ProtocolVersion};
use cohort_tokio::{
    ClusterKey, ConnectionConfig, Handler, Keyring, Node, NodeBuilder, NodeId, Request, RpcService,
    ServiceRegistry, StateLimits, Status, Timestamp,
};

// ------------------------------------------------------------------- heap accounting

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The most bytes live since [`reset_peak`].
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grow(by: isize) {
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

fn signed(size: usize) -> isize {
    isize::try_from(size).unwrap_or(isize::MAX)
}

fn reset_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only a relaxed atomic
// counter (which does not allocate) is kept beside it.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grow(signed(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(signed(layout.size()), Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grow(signed(layout.size()));
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            grow(signed(new_size) - signed(layout.size()));
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_heap() -> isize {
    LIVE.load(Ordering::Relaxed)
}

// ------------------------------------------------------------------------------ set-up

const INTERVAL: Duration = Duration::from_millis(100);
const WAIT: Duration = Duration::from_secs(20);
/// Datagrams the target must receive (not only be sent: the kernel drops what overflows its
/// socket buffer, so the flooder keeps sending until the node has taken this many in).
const DATAGRAMS: u64 = 80_000;
const FRAMES: usize = 20_000;
/// The bound on members one sender may introduce, for the unauthenticated flood.
const PER_SENDER: usize = 16;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[derive(
    cohort_tokio::rkyv::Archive,
    cohort_tokio::rkyv::Serialize,
    cohort_tokio::rkyv::Deserialize,
    Debug,
)]
#[rkyv(crate = cohort_tokio::rkyv)]
struct Ping(u64);

struct Echo;

impl RpcService for Echo {
    fn service_name() -> &'static str {
        "echo"
    }
    fn register_handlers(registry: &mut ServiceRegistry<Self>) {
        registry.add_handler::<Ping>();
    }
}

impl Handler<Ping> for Echo {
    const NAME: &'static str = "ping";
    type Reply = u64;
    async fn on_message(&self, request: Request<'_, Ping>) -> Result<u64, Status> {
        Ok(request.0.to_native())
    }
}

fn builder(name: &str, seeds: &[SocketAddr], keyring: Option<&Keyring>) -> NodeBuilder {
    let mut limits = StateLimits::default();
    limits.max_unconfirmed_per_sender = PER_SENDER;
    let builder = NodeBuilder::new(
        name,
        ConnectionConfig::new(
            loopback(),
            loopback(),
            seeds.iter().map(ToString::to_string),
        ),
    )
    .cluster_id("flood")
    .gossip_interval(INTERVAL)
    .leave_timeout(Duration::from_secs(1))
    .limits(limits);
    match keyring {
        Some(keyring) => builder.keyring(keyring.clone()),
        None => builder,
    }
}

async fn wait_all_live(nodes: &[&Node]) {
    for node in nodes {
        node.wait_for_members(|m| m.live_count() == nodes.len(), WAIT)
            .await
            .unwrap_or_else(|e| panic!("{} did not see everyone live: {e}", node.id()));
    }
}

// ----------------------------------------------------------------------------- the flood

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

/// A Syn of the cluster `flood` listing `count` made-up members (heartbeat `heartbeat`).
fn forged_syn(count: u16, heartbeat: u64) -> Vec<u8> {
    let mut entries: Vec<(NodeId, NodeDigest)> = (0..count)
        .map(|i| {
            let id = NodeId::new(
                format!("forged-{i:04}"),
                1,
                SocketAddr::from(([127, 0, 0, 9], 20_000 + i)),
            );
            let digest = NodeDigest {
                heartbeat,
                last_gc_version: 0,
                max_version: 0,
            };
            (id, digest)
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    wire::encode_chitchat(
        ProtocolVersion::V0,
        &Message::Syn {
            cluster_id: "flood".into(),
            digest: Digest { entries },
        },
        &mut out,
    );
    out
}

/// The datagrams of the flood: random bytes, forged Syns (bare, enveloped without a tag,
/// with a made-up tag), each of those mutated or truncated, huge counts, junk after the
/// envelope magic, and the largest datagram.
fn datagrams(timestamp: Timestamp, rng: &mut Rng) -> Vec<Vec<u8>> {
    let syn = forged_syn(400, 1_000);
    let enveloped = |tag: Option<&[u8]>| {
        let mut out = Vec::new();
        wire::encode_envelope(timestamp, tag, &mut out).expect("a valid tag length");
        out.extend_from_slice(&syn);
        out
    };
    let mut kinds = vec![
        syn.clone(),
        enveloped(None),
        enveloped(Some(&[0x5a; 16])),
        vec![0xff; wire::MAX_DATAGRAM_SIZE],
    ];
    // A digest claiming 4 billion entries.
    let mut huge = Vec::new();
    wire::encode_header(ProtocolVersion::V0, wire::MessageType::Syn, &mut huge);
    huge.extend_from_slice(&[0xff; 8]);
    kinds.push(huge);
    // Junk after the envelope magic.
    let mut junk = wire::ENVELOPE_MAGIC.to_le_bytes().to_vec();
    junk.extend(rng.bytes(200));
    kinds.push(junk);
    for _ in 0..64 {
        let len = 1 + rng.below(1_400);
        kinds.push(rng.bytes(len));
        // Mutated and truncated forgeries.
        let mut mutated = enveloped(Some(&[0x11; 16]));
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(mutated.len());
            mutated[at] ^= rng.bytes(1)[0] | 1;
        }
        kinds.push(mutated);
        let mut truncated = syn.clone();
        truncated.truncate(rng.below(syn.len()));
        kinds.push(truncated);
    }
    kinds
}

/// Sends datagrams at `target` from four sockets, in bursts as fast as the sockets take them,
/// until the node has received [`DATAGRAMS`] (`received` reads its count) or a minute passed.
/// Returns how many were sent.
fn flood_datagrams(target: SocketAddr, kinds: &[Vec<u8>], received: impl Fn() -> u64) -> u64 {
    let sockets: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind(loopback()).expect("a socket"))
        .collect();
    let start = received();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0u64;
    let mut i = 0usize;
    while received() - start < DATAGRAMS && Instant::now() < deadline {
        // A burst larger than the socket buffer holds, then a moment for the node to read.
        for _ in 0..256 {
            let socket = &sockets[i % sockets.len()];
            if socket.send_to(&kinds[i % kinds.len()], target).is_ok() {
                sent += 1;
            }
            i += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    sent
}

/// A frame header's bytes, with a made-up body length.
fn frame_header(kind: FrameKind, method: u64, body_len: u32) -> Vec<u8> {
    let mut header = FrameHeader::request(
        7,
        MethodId(method),
        Timestamp::from_packed(0, cohort_tokio::NodeTag::new(1)),
        None,
    );
    header.kind = kind;
    header.body_len = body_len;
    header.to_bytes().to_vec()
}

/// Sends `FRAMES` bad frames at the RPC address `target` over many connections: garbage,
/// huge lengths, unknown methods, bodies that do not validate, replies nobody asked for, and
/// connections that stop mid-frame (a new connection after every 200 frames, or when the node
/// closed one). Returns how many frames were written.
fn flood_frames(target: SocketAddr, rng: &mut Rng) -> usize {
    let mut written = 0;
    let mut connection: Option<TcpStream> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while written < FRAMES && Instant::now() < deadline {
        i += 1;
        if i % 200 == 0 || connection.is_none() {
            connection = TcpStream::connect_timeout(&target, Duration::from_secs(2)).ok();
            if let Some(stream) = &connection {
                stream
                    .set_write_timeout(Some(Duration::from_millis(200)))
                    .ok();
            }
        }
        let Some(stream) = connection.as_mut() else {
            continue;
        };
        let frame = match i % 6 {
            0 => rng.bytes(64),
            1 => frame_header(FrameKind::Request, 1, u32::MAX),
            2 => {
                let mut frame = frame_header(FrameKind::Request, rng.next(), 16);
                frame.extend(rng.bytes(16));
                frame
            }
            3 => {
                // The echo method with a body that is not a valid archive.
                let method = cohort_core::rpc::method_id::<Echo, Ping>().0;
                let mut frame = frame_header(FrameKind::Request, method, 32);
                frame.extend(rng.bytes(32));
                frame
            }
            4 => {
                let mut frame = frame_header(FrameKind::Response, 0, 8);
                frame.extend([0; 8]);
                frame
            }
            _ => frame_header(FrameKind::Request, 1, 1_000)[..HEADER_LEN / 2].to_vec(),
        };
        match stream.write_all(&frame) {
            Ok(()) => written += 1,
            Err(_) => connection = None,
        }
    }
    written
}

/// Runs the flood at `target` (of the cluster `a`, `b`, `target`) and checks what the module
/// documentation promises. Returns the members every node knows at the end.
async fn flood(a: &Node, b: &Node, target: &Node) -> Vec<Vec<String>> {
    wait_all_live(&[a, b, target]).await;
    target.add_rpc_service(Echo).unwrap();
    let client = a.rpc_client::<Echo>(target.rpc_addr());
    let reply = client
        .call(&Ping(1))
        .await
        .expect("a call before the flood");
    assert_eq!(reply.get().to_native(), 1);
    drop(reply);

    let mut rng = Rng(0x5eed_f100d);
    let kinds = datagrams(a.clock().now(), &mut rng);
    // Warm: what a node allocates once (buffers, tables) is in the baseline.
    tokio::time::sleep(INTERVAL * 5).await;
    let before = live_heap();
    reset_peak();

    // RPC calls throughout the flood.
    let flooding = Arc::new(AtomicBool::new(true));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let caller = {
        let (flooding, ok, failed) = (Arc::clone(&flooding), Arc::clone(&ok), Arc::clone(&failed));
        let client = client.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while flooding.load(Ordering::Relaxed) {
                i += 1;
                match client
                    .call_with_deadline(&Ping(i), Some(Duration::from_secs(2)))
                    .await
                {
                    Ok(reply) if reply.get().to_native() == i => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let started = Instant::now();
    let gossip = target.public_addr();
    let rpc = target.rpc_addr();
    let counted = target.clone();
    let udp = tokio::task::spawn_blocking(move || {
        flood_datagrams(gossip, &kinds, || counted.statistics().datagrams_received)
    });
    let tcp = tokio::task::spawn_blocking(move || flood_frames(rpc, &mut Rng(0xf7a3e5)));
    let (sent, written) = (udp.await.unwrap(), tcp.await.unwrap());
    let took = started.elapsed();
    flooding.store(false, Ordering::Relaxed);
    caller.await.unwrap();
    let stats = target.statistics();
    println!(
        "flood: {sent} datagrams and {written} frames in {took:?}; the target received {} \
         datagrams, {} did not decode ({} unauthenticated), {} over a limit; RPC calls during \
         the flood: {} ok, {} failed",
        stats.datagrams_received,
        stats.decode_errors,
        stats.unauthenticated,
        stats.over_limit,
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    assert!(
        stats.datagrams_received >= DATAGRAMS,
        "the target took in the flood ({} datagrams)",
        stats.datagrams_received
    );
    assert_eq!(written, FRAMES, "the frames were written");
    assert!(
        ok.load(Ordering::Relaxed) > 0,
        "RPC calls were served during the flood"
    );

    // Still live everywhere, still serving.
    tokio::time::sleep(INTERVAL * 10).await;
    for node in [a, b] {
        node.wait_for_members(
            |m| {
                m.get(target.id())
                    .is_some_and(|t| t.status == cohort_tokio::MemberStatus::Live)
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{} lost the target: {e}", node.id()));
    }
    let reply = client.call(&Ping(2)).await.expect("a call after the flood");
    assert_eq!(reply.get().to_native(), 2);
    drop(reply);

    let (grown, peak) = (live_heap() - before, PEAK.load(Ordering::Relaxed) - before);
    println!(
        "heap: {before} bytes live before the flood; at most {peak} more during it, {grown} \
         more after it"
    );
    assert!(
        peak < 10 << 20,
        "the heap grew by up to {peak} bytes during the flood (bound: 10 MB)"
    );
    assert!(
        grown < 10 << 20,
        "the heap grew by {grown} bytes (bound: 10 MB)"
    );
    [a, b, target]
        .iter()
        .map(|node| {
            node.members()
                .all()
                .iter()
                .map(|m| m.id.name().to_owned())
                .collect()
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn with_a_cluster_key_a_flood_changes_nothing() {
    runtime().block_on(async {
        let keyring = Keyring::new(ClusterKey::from_bytes(&[7; 32]).unwrap());
        let a = builder("a", &[], Some(&keyring)).connect().await.unwrap();
        let seeds = [a.public_addr()];
        let b = builder("b", &seeds, Some(&keyring))
            .connect()
            .await
            .unwrap();
        let t = builder("t", &seeds, Some(&keyring))
            .connect()
            .await
            .unwrap();
        let views = tokio::time::timeout(Duration::from_secs(120), flood(&a, &b, &t))
            .await
            .expect("the flood test ends within 2 minutes");
        for view in &views {
            assert_eq!(view, &["a", "b", "t"], "no forged member anywhere");
        }
        let stats = t.statistics();
        assert!(stats.unauthenticated > 0, "forgeries were counted");
        for node in [a, b, t] {
            node.shutdown().await;
        }
    });
}

#[test]
fn without_a_key_forged_members_stay_within_the_per_sender_bound() {
    runtime().block_on(async {
        let a = builder("a", &[], None).connect().await.unwrap();
        let seeds = [a.public_addr()];
        let b = builder("b", &seeds, None).connect().await.unwrap();
        let t = builder("t", &seeds, None).connect().await.unwrap();
        let views = tokio::time::timeout(Duration::from_secs(120), flood(&a, &b, &t))
            .await
            .expect("the flood test ends within 2 minutes");
        // The flood comes from four sockets: each is believed for at most PER_SENDER made-up
        // members at the target; each peer believes the target (and each other) for at most
        // PER_SENDER more.
        let forged = |view: &Vec<String>| view.iter().filter(|n| n.starts_with("forged-")).count();
        println!(
            "forged members known: {} at the target, {} and {} at its peers",
            forged(&views[2]),
            forged(&views[0]),
            forged(&views[1])
        );
        assert!(forged(&views[2]) <= 4 * PER_SENDER, "{:?}", views[2]);
        assert!(forged(&views[0]) <= 2 * PER_SENDER, "{:?}", views[0]);
        assert!(forged(&views[1]) <= 2 * PER_SENDER, "{:?}", views[1]);
        assert!(t.statistics().over_limit > 0, "the bound refused the rest");
        for node in [a, b, t] {
            node.shutdown().await;
        }
    });
}
