//! The node's task: one loop that feeds the core machine and carries out what it returns.
//!
//! It is the only place that touches the gossip socket. Each turn it drains the machine in the
//! order the core documents (datagrams to send, then events), re-arms its single timer only
//! when the machine's deadline moved, and waits for the next input: a datagram, the timer, a
//! command from a handle, or the request to stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cohort_core::clock::WallTime;
use cohort_core::handle::SeedSet;
use cohort_core::wire::MAX_DATAGRAM_SIZE;
use cohort_core::{Drained, Event, Transmits};
use tokio::sync::mpsc;

use crate::node::{Shared, lookup_seed};
use crate::transport::GossipSocket;

/// At most this many datagrams already received are taken in before a leave starts.
const MAX_DRAIN_BEFORE_LEAVE: usize = 256;

/// One turn of the machine, under one lock: `input` feeds it (given the monotonic and wall
/// time read once for the turn); then every output is drained (core's
/// [`Node::drain`](cohort_core::Node::drain)), the snapshot republished if the member list
/// changed, and, once the lock is released, the events published on the bus.
fn turn(
    shared: &Shared,
    out: &mut Transmits,
    pending: &mut Vec<Event>,
    input: impl FnOnce(&mut cohort_core::Node, Instant, WallTime),
) -> Drained {
    let mut locked = shared.lock_core();
    let (now, wall) = (Instant::now(), shared.wall());
    input(&mut locked, now, wall);
    let drained = locked.drain(wall, out, pending);
    if drained.members_changed {
        shared.publish(&locked);
    }
    drop(locked);
    if let Some(rpc) = &shared.rpc {
        // A member that left or failed: its RPC connection goes (a new one is made if it
        // comes back and is called).
        for addr in pending.iter().filter_map(Event::departed_rpc_addr) {
            rpc.forget_peer(addr);
        }
    }
    shared.events.publish_all(pending.drain(..));
    drained
}

async fn send_all(shared: &Shared, socket: &GossipSocket, out: &mut Transmits) {
    for transmit in &*out {
        match socket
            .send_to(&transmit.payload, transmit.destination)
            .await
        {
            Ok(n) => shared.counters.sent(n),
            Err(error) => {
                shared.counters.send_failed();
                tracing::debug!(to = %transmit.destination, %error, "gossip send failed");
            }
        }
    }
    out.clear();
}

fn receive(
    shared: &Shared,
    locked: &mut cohort_core::Node,
    now: Instant,
    wall: WallTime,
    from: SocketAddr,
    bytes: &[u8],
) {
    shared.counters.received(bytes.len());
    if let Err(error) = locked.handle_datagram(now, wall, from, bytes) {
        shared.counters.decode_failed();
        tracing::debug!(%from, %error, "ignored a datagram that does not decode");
    }
}

/// The node's loop. Ends when a stop is requested, once the core says the leave is over
/// (announced, or its timeout passed); dropping every handle aborts it instead.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut socket: GossipSocket,
    mut signals: mpsc::Receiver<()>,
) {
    // One byte more than the largest datagram: a larger one shows as truncated, not valid.
    let mut buf = vec![0u8; MAX_DATAGRAM_SIZE + 1];
    let mut out = Transmits::new();
    let mut pending: Vec<Event> = Vec::new();
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    let mut leaving = false;
    let mut drained = turn(&shared, &mut out, &mut pending, |_, _, _| {});
    loop {
        send_all(&shared, &socket, &mut out).await;
        if let Some(outcome) = drained.left {
            tracing::debug!(node = %shared.id, ?outcome, "left the cluster");
            break;
        }
        if armed != Some(drained.deadline) {
            timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(drained.deadline));
            armed = Some(drained.deadline);
        }
        tokio::select! {
            biased;
            _ = signals.recv(), if !leaving => {
                // A command changed the machine (its outputs are drained now), or a stop was
                // asked for.
                if !shared.stop_requested.load(Ordering::Acquire) {
                    drained = turn(&shared, &mut out, &mut pending, |_, _, _| {});
                    continue;
                }
                // Take in what already arrived first (a bounded number of datagrams): a peer
                // that left just before us is then known to be gone, and the departure is
                // not sent to it (it would never answer, and the leave would wait for its
                // timeout). Best effort: tokio reads only what its reactor has seen arrive,
                // and a datagram that came in since its last poll waits for the next turn.
                for _ in 0..MAX_DRAIN_BEFORE_LEAVE {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => {
                            let mut locked = shared.lock_core();
                            receive(&shared, &mut locked, Instant::now(), shared.wall(), from, &buf[..n]);
                        }
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(error) => tracing::debug!(%error, "gossip receive failed"),
                    }
                }
                // The local node is Left at once: readers of the snapshot see it too. The core
                // ends the leave (announced, or at its timeout, a deadline it arms).
                drained = turn(&shared, &mut out, &mut pending, |locked, now, _| {
                    locked.leave(now);
                });
                leaving = true;
            }
            // Before the socket: a flood of datagrams must not hold rounds, liveness checks or
            // the end of a leave back.
            () = &mut timer => {
                drained = turn(&shared, &mut out, &mut pending, |locked, now, _| {
                    locked.handle_timeout(now);
                });
            }
            received = socket.recv_from(&mut buf) => {
                match received {
                    // One datagram per turn: its replies go out before the next read, and the
                    // next read is tried at once (tokio keeps the socket marked readable until
                    // a read finds nothing), so a busy socket costs no extra wake-up. Draining
                    // it eagerly instead costs an empty read and an epoll round trip per
                    // datagram (measured with strace: twice the failed reads, 8x the waits).
                    Ok((n, from)) => {
                        drained = turn(&shared, &mut out, &mut pending, |locked, now, wall| {
                            receive(&shared, locked, now, wall, from, &buf[..n]);
                        });
                    }
                    // ICMP errors for earlier sends surface here on some systems: not fatal.
                    Err(error) => tracing::debug!(%error, "gossip receive failed"),
                }
            }
        }
    }
}

/// Resolves the seed host names again every `every`, for as long as the node runs, starting
/// from each seed's addresses at start.
pub(crate) async fn refresh_seeds(shared: Arc<Shared>, mut seeds: SeedSet, every: Duration) {
    let every = every.max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        let resolved = seeds.resolve(lookup_seed).await;
        shared.lock_core().set_seeds(resolved);
    }
}
