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

use cohort_core::NodeEvent;
use cohort_core::members::{ClusterEvent, changes_members};
use cohort_core::membership::{MembershipEvent, Transmit};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};

use crate::clock::wall_now;
use crate::node::{Seed, Shared, resolve_seeds};

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

/// At most this many datagrams already received are taken in before a leave starts.
const MAX_DRAIN_BEFORE_LEAVE: usize = 256;

/// What one drain of the machine found.
struct Drained {
    deadline: Option<Instant>,
    leave_announced: bool,
}

/// Takes the machine's pending datagrams into `out` and publishes its events.
fn drain(
    shared: &Shared,
    events: &broadcast::Sender<ClusterEvent>,
    out: &mut Vec<Transmit>,
) -> Drained {
    let mut locked = shared.lock_core();
    let wall = wall_now();
    while let Some(transmit) = locked.node.poll_transmit(wall) {
        out.push(transmit);
    }
    let mut pending = Vec::new();
    let mut changed = false;
    let mut leave_announced = false;
    while let Some(event) = locked.node.poll_event() {
        if let NodeEvent::Membership(m) = &event {
            changed |= changes_members(m);
            leave_announced |= matches!(m, MembershipEvent::LeaveAnnounced);
        }
        pending.push(event);
    }
    if changed {
        shared.publish(&mut locked);
    }
    let deadline = locked.node.poll_timeout();
    drop(locked);
    for event in pending {
        if let Some(event) = ClusterEvent::from_node_event(event, || shared.members()) {
            // No reader is not an error.
            let _ = events.send(event);
        }
    }
    Drained {
        deadline,
        leave_announced,
    }
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

fn receive(shared: &Shared, locked: &mut crate::node::Locked, from: SocketAddr, bytes: &[u8]) {
    shared
        .counters
        .datagrams_received
        .fetch_add(1, Ordering::Relaxed);
    shared
        .counters
        .bytes_received
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    if let Err(error) = locked
        .node
        .handle_datagram(Instant::now(), wall_now(), from, bytes)
    {
        shared
            .counters
            .decode_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%from, %error, "ignored a datagram that does not decode");
    }
}

/// The node's loop. Ends when a stop is requested (after the departure went out or the leave
/// timeout passed), or when every handle is gone.
pub(crate) async fn run(
    shared: Arc<Shared>,
    socket: UdpSocket,
    mut signals: mpsc::Receiver<()>,
    events: broadcast::Sender<ClusterEvent>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out: Vec<Transmit> = Vec::new();
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    let mut leave_by: Option<tokio::time::Instant> = None;
    let leave_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(leave_timer);
    let mut announced = false;
    loop {
        let drained = drain(&shared, &events, &mut out);
        send_all(&shared, &socket, &mut out).await;
        announced |= drained.leave_announced;
        if leave_by.is_some() && announced {
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
            signal = signals.recv(), if leave_by.is_none() => {
                // A command changed the machine (its outputs are drained at the top), or a stop
                // was asked for (or every handle is gone).
                if signal.is_some() && !shared.stop_requested.load(Ordering::Acquire) {
                    continue;
                }
                // Take in what already arrived first (a bounded number of datagrams): a peer
                // that left just before us is then known to be gone, and the departure is
                // not sent to it (it would never answer, and the leave would wait for its
                // timeout). Best effort: tokio reads only what its reactor has seen arrive,
                // and a datagram that came in since its last poll waits for the next turn.
                for _ in 0..MAX_DRAIN_BEFORE_LEAVE {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => receive(&shared, &mut shared.lock_core(), from, &buf[..n]),
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(error) => tracing::debug!(%error, "gossip receive failed"),
                    }
                }
                let mut locked = shared.lock_core();
                locked.node.membership_mut().leave(Instant::now());
                // The local node is Left now: readers of the snapshot see it too.
                shared.publish(&mut locked);
                drop(locked);
                let by = tokio::time::Instant::now() + shared.leave_timeout;
                leave_timer.as_mut().reset(by);
                leave_by = Some(by);
            }
            () = &mut leave_timer, if leave_by.is_some() => {
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
                    Ok((n, from)) => receive(&shared, &mut shared.lock_core(), from, &buf[..n]),
                    // ICMP errors for earlier sends surface here on some systems: not fatal.
                    Err(error) => tracing::debug!(%error, "gossip receive failed"),
                }
            }
            () = &mut timer, if armed.is_some() => {
                shared.lock_core().node.handle_timeout(Instant::now());
            }
        }
    }
    // What the last input produced (the final Acks of the departure).
    drain(&shared, &events, &mut out);
    send_all(&shared, &socket, &mut out).await;
}

/// Resolves the seed host names again every `every`, for as long as the node runs.
pub(crate) async fn refresh_seeds(
    shared: Arc<Shared>,
    seeds: Vec<Seed>,
    own: SocketAddr,
    every: Duration,
) {
    let every = every.max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        let resolved = resolve_seeds(&seeds, own).await;
        shared.lock_core().node.membership_mut().set_seeds(resolved);
    }
}
