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
use cohort_core::members::ClusterEvent;
use cohort_core::membership::Transmit;
use cohort_core::{Drained, NodeEvent};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};

use crate::clock::wall_now;
use crate::node::{Locked, Seed, Shared, resolve_seeds};

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

/// At most this many datagrams already received are taken in before a leave starts.
const MAX_DRAIN_BEFORE_LEAVE: usize = 256;

/// One turn of the machine, under one lock: `input` feeds it (given the monotonic and wall
/// time read once for the turn) and says whether the member snapshot must be published
/// regardless of events; then every output is drained (core's [`Node::drain`](cohort_core::Node::drain)),
/// the snapshot republished if the member list changed, and, once the lock is released, the
/// events broadcast.
fn turn(
    shared: &Shared,
    events: &broadcast::Sender<ClusterEvent>,
    out: &mut Vec<Transmit>,
    pending: &mut Vec<NodeEvent>,
    input: impl FnOnce(&mut Locked, Instant, WallTime) -> bool,
) -> Drained {
    let mut locked = shared.lock_core();
    let (now, wall) = (Instant::now(), wall_now());
    let publish = input(&mut locked, now, wall);
    let drained = locked.node.drain(wall, out, pending);
    if publish || drained.members_changed {
        shared.publish(&mut locked);
    }
    drop(locked);
    for event in pending.drain(..) {
        if let Some(event) = ClusterEvent::from_node_event(event, || shared.members()) {
            // No reader is not an error.
            let _ = events.send(event);
        }
    }
    drained
}

async fn send_all(shared: &Shared, socket: &UdpSocket, out: &mut Vec<Transmit>) {
    for transmit in out.drain(..) {
        match socket
            .send_to(&transmit.payload, transmit.destination)
            .await
        {
            Ok(n) => {
                shared
                    .counters
                    .datagrams_sent
                    .fetch_add(1, Ordering::Relaxed);
                shared
                    .counters
                    .bytes_sent
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(error) => {
                shared.counters.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(to = %transmit.destination, %error, "gossip send failed");
            }
        }
    }
}

fn receive(
    shared: &Shared,
    locked: &mut Locked,
    now: Instant,
    wall: WallTime,
    from: SocketAddr,
    bytes: &[u8],
) {
    shared
        .counters
        .datagrams_received
        .fetch_add(1, Ordering::Relaxed);
    shared
        .counters
        .bytes_received
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    if let Err(error) = locked.node.handle_datagram(now, wall, from, bytes) {
        shared
            .counters
            .decode_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%from, %error, "ignored a datagram that does not decode");
    }
}

/// The node's loop. Ends when a stop is requested, after the departure went out or the leave
/// timeout passed (dropping every handle aborts it instead).
pub(crate) async fn run(
    shared: Arc<Shared>,
    socket: UdpSocket,
    mut signals: mpsc::Receiver<()>,
    events: broadcast::Sender<ClusterEvent>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out: Vec<Transmit> = Vec::new();
    let mut pending: Vec<NodeEvent> = Vec::new();
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    let mut leaving = false;
    let leave_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(leave_timer);
    let mut announced = false;
    let mut drained = turn(&shared, &events, &mut out, &mut pending, |_, _, _| false);
    loop {
        send_all(&shared, &socket, &mut out).await;
        announced |= drained.leave_announced;
        if leaving && announced {
            break;
        }
        if drained.deadline != armed {
            if let Some(deadline) = drained.deadline {
                timer
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(deadline));
            }
            armed = drained.deadline;
        }
        tokio::select! {
            biased;
            _ = signals.recv(), if !leaving => {
                // A command changed the machine (its outputs are drained now), or a stop was
                // asked for.
                if !shared.stop_requested.load(Ordering::Acquire) {
                    drained = turn(&shared, &events, &mut out, &mut pending, |_, _, _| false);
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
                            receive(&shared, &mut locked, Instant::now(), wall_now(), from, &buf[..n]);
                        }
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(error) => tracing::debug!(%error, "gossip receive failed"),
                    }
                }
                // The local node is Left at once: readers of the snapshot see it too.
                drained = turn(&shared, &events, &mut out, &mut pending, |locked, now, _| {
                    locked.node.membership_mut().leave(now);
                    true
                });
                leave_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + shared.leave_timeout);
                leaving = true;
            }
            () = &mut leave_timer, if leaving => {
                tracing::debug!(node = %shared.id, "leave timeout: stopping without confirmation");
                break;
            }
            received = socket.recv_from(&mut buf) => {
                match received {
                    // One datagram per turn: its replies go out before the next read, and the
                    // next read is tried at once (tokio keeps the socket marked readable until
                    // a read finds nothing), so a busy socket costs no extra wake-up. Draining
                    // it eagerly instead costs an empty read and an epoll round trip per
                    // datagram (measured with strace: twice the failed reads, 8x the waits).
                    Ok((n, from)) => {
                        drained = turn(&shared, &events, &mut out, &mut pending, |locked, now, wall| {
                            receive(&shared, locked, now, wall, from, &buf[..n]);
                            false
                        });
                    }
                    // ICMP errors for earlier sends surface here on some systems: not fatal.
                    Err(error) => tracing::debug!(%error, "gossip receive failed"),
                }
            }
            () = &mut timer, if armed.is_some() => {
                drained = turn(&shared, &events, &mut out, &mut pending, |locked, now, _| {
                    locked.node.handle_timeout(now);
                    false
                });
            }
        }
    }
}

/// Resolves the seed host names again every `every`, for as long as the node runs, starting
/// from each seed's addresses at start (`resolved_each`).
pub(crate) async fn refresh_seeds(
    shared: Arc<Shared>,
    seeds: Vec<Seed>,
    mut resolved_each: Vec<Vec<SocketAddr>>,
    every: Duration,
) {
    let every = every.max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        let resolved = resolve_seeds(&seeds, &mut resolved_each).await;
        shared.lock_core().node.membership_mut().set_seeds(resolved);
    }
}
