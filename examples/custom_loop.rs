//! A custom event loop: a cohort node driven by hand, with no async runtime at all.
//!
//! `cargo run --example custom_loop`
//!
//! The loop below owns a blocking `std::net::UdpSocket` and a `cohort_core::Node`, and does
//! what every driver does: feed the node each datagram and each timer expiry, drain what it
//! returns (datagrams to send, events, the next deadline), and wait for the next datagram with
//! a read timeout that ends at that deadline. To leave, it calls `Node::leave` and keeps going
//! until the drain says the leave is over.
//!
//! To have a cluster to join, the example first starts two `cohort-tokio` nodes on a tokio
//! runtime in the background; the hand-driven node joins them over loopback, sees all three
//! live, publishes a key, leaves gracefully, and the tokio nodes are checked to have seen it
//! join (with its key) and leave.

use std::error::Error;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

use cohort_core::node::generation_at;
use cohort_core::wire::MAX_DATAGRAM_SIZE;
use cohort_core::{Event, LeaveOutcome, Node, NodeConfig, NodeId, Transmits, WallTime};
use cohort_tokio::{ConnectionConfig, MemberStatus, NodeBuilder};

/// What the callback of [`run_node`] asks the loop to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Control {
    Continue,
    Leave,
}

/// The wall clock, as the core takes it.
fn wall() -> WallTime {
    WallTime::saturating_from(SystemTime::now())
}

/// Runs a node on `socket` until it has left: after every drain, `decide` sees the node and the
/// events just drained and says whether to start leaving. Returns how the leave ended.
fn run_node(
    config: NodeConfig,
    socket: &UdpSocket,
    mut decide: impl FnMut(&mut Node, &[Event]) -> Control,
) -> Result<LeaveOutcome, Box<dyn Error>> {
    let mut node = Node::new(config, Instant::now())?;
    let mut out = Transmits::new();
    let mut events = Vec::new();
    // One byte more than the largest datagram: a larger one shows up as invalid, not cut.
    let mut buf = vec![0u8; MAX_DATAGRAM_SIZE + 1];
    let mut drained = node.drain(wall(), &mut out, &mut events);
    loop {
        // 1. Send what the node produced, in order.
        for transmit in &out {
            if let Err(error) = socket.send_to(&transmit.payload, transmit.destination) {
                eprintln!("send to {} failed: {error}", transmit.destination);
            }
        }
        out.clear();
        // 2. Stop once the leave is over.
        if let Some(outcome) = drained.left {
            return Ok(outcome);
        }
        // 3. The application's turn.
        if decide(&mut node, &events) == Control::Leave && !node.is_leaving() {
            node.leave(Instant::now());
        }
        events.clear();
        // 4. Wait for a datagram, at most until the deadline; then feed the node.
        let wait = drained.deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            node.handle_timeout(Instant::now());
        } else {
            socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if let Err(error) =
                        node.handle_datagram(Instant::now(), wall(), from, &buf[..n])
                    {
                        eprintln!("ignored a datagram from {from}: {error}");
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    node.handle_timeout(Instant::now());
                }
                // An ICMP error for an earlier send: not fatal for UDP.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // 5. Drain: datagrams, events, the next deadline, whether the leave is over.
        drained = node.drain(wall(), &mut out, &mut events);
    }
}

/// What the demonstration observed.
#[derive(Debug)]
struct Report {
    /// How the hand-driven node's leave ended.
    outcome: LeaveOutcome,
    /// The most live members the hand-driven node saw.
    live_seen: usize,
    /// A tokio node saw the hand-driven node's key.
    key_seen_by_tokio: bool,
    /// The status a tokio node ended up with for the hand-driven node.
    status_seen_by_tokio: Option<MemberStatus>,
}

/// Starts two tokio nodes, runs the hand-driven node against them, and reports.
fn demo() -> Result<Report, Box<dyn Error>> {
    const INTERVAL: Duration = Duration::from_millis(100);
    const CLUSTER: &str = "custom-loop";
    const WAIT: Duration = Duration::from_secs(20);

    // The rest of the cluster: two cohort-tokio nodes, on a runtime of their own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let tokio_node = |name: &'static str, seeds: Vec<String>| {
        NodeBuilder::new(name, ConnectionConfig::new(any, any, seeds))
            .cluster_id(CLUSTER)
            .gossip_interval(INTERVAL)
            .connect()
    };
    let a = runtime.block_on(tokio_node("tokio-a", Vec::new()))?;
    let b = runtime.block_on(tokio_node("tokio-b", vec![a.public_addr().to_string()]))?;

    // The hand-driven node: a blocking socket and the core's node, nothing else.
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let id = NodeId::new("hand-loop", generation_at(wall()), socket.local_addr()?);
    let mut config = NodeConfig::new(id.clone());
    config.cluster_id = CLUSTER.into();
    config.gossip_interval = INTERVAL;
    config.seeds = vec![a.public_addr()];
    config.metadata = vec![("loop".into(), "hand-made".into())];

    let deadline = Instant::now() + WAIT;
    let mut live_seen = 0;
    let outcome = run_node(config, &socket, |node, events| {
        for event in events {
            if let Some(id) = event.node_id() {
                println!("hand-loop: {} {id}", event.kind());
            }
        }
        live_seen = live_seen.max(node.members().live_count());
        if live_seen >= 3 || Instant::now() > deadline {
            Control::Leave
        } else {
            Control::Continue
        }
    })?;
    println!("hand-loop: left ({outcome:?}) after seeing {live_seen} live members");

    // What the tokio nodes saw of it.
    let (key_seen_by_tokio, status_seen_by_tokio) = runtime.block_on(async {
        let seen = a
            .wait_for_members(
                |m| m.get(&id).is_some_and(|m| m.status == MemberStatus::Left),
                WAIT,
            )
            .await;
        let members = match seen {
            Ok(members) => members,
            Err(cohort_tokio::WaitError::Timeout { last }) => last,
            Err(e) => return Err(e),
        };
        let member = members.get(&id);
        let key = member.is_some_and(|m| m.get("loop") == Some("hand-made"));
        a.shutdown().await;
        b.shutdown().await;
        Ok((key, member.map(|m| m.status)))
    })?;
    Ok(Report {
        outcome,
        live_seen,
        key_seen_by_tokio,
        status_seen_by_tokio,
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let report = demo()?;
    println!("{report:?}");
    let joined_and_left = report.live_seen >= 3
        && report.key_seen_by_tokio
        && report.status_seen_by_tokio == Some(MemberStatus::Left)
        && report.outcome == LeaveOutcome::Announced;
    if !joined_and_left {
        return Err(format!("the hand-driven node did not join and leave: {report:?}").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-driven node joins a cluster of tokio nodes, publishes a key they see, and
    /// leaves gracefully (seen as left, not failed). Real sockets on loopback; every wait is
    /// bounded (20 s).
    #[test]
    fn a_hand_driven_node_joins_tokio_nodes_and_leaves() {
        let report = demo().expect("the demonstration runs");
        assert_eq!(report.live_seen, 3, "{report:?}");
        assert!(report.key_seen_by_tokio, "{report:?}");
        assert_eq!(
            report.status_seen_by_tokio,
            Some(MemberStatus::Left),
            "{report:?}"
        );
        assert_eq!(report.outcome, LeaveOutcome::Announced, "{report:?}");
    }
}
