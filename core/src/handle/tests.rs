//! The bus and the cell under test control: polled by hand, with counting wakers.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use super::*;
use crate::{Event, Members, Node, NodeConfig, NodeId};

fn node() -> Node {
    let id = NodeId::new("a", 1, "127.0.0.1:7000".parse().unwrap());
    Node::new(NodeConfig::new(id), Instant::now()).unwrap()
}

/// A snapshot one change newer than the node's current one.
fn changed(node: &mut Node, value: &str) -> Members {
    node.set(Instant::now(), "k", value).unwrap();
    node.members()
}

/// Event number `n`, told apart by the generation of the node it names.
fn event(n: u64) -> Event {
    Event::Removed(NodeId::new("x", n, "127.0.0.1:1".parse().unwrap()))
}

fn number(event: &Event) -> u64 {
    match event {
        Event::Removed(id) => id.generation(),
        other => panic!("unexpected {other:?}"),
    }
}

#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting() -> (Arc<CountingWaker>, Waker) {
    let count = Arc::new(CountingWaker::default());
    (Arc::clone(&count), Waker::from(Arc::clone(&count)))
}

fn poll_once<F: Future>(future: std::pin::Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(waker))
}

fn bus(capacity: usize) -> (EventBus, MembersCell, Node) {
    let node = node();
    let cell = MembersCell::new(node.members());
    (EventBus::new(capacity, cell.clone()), cell, node)
}

fn read_ready(reader: &mut MembershipEvents) -> Vec<Event> {
    std::iter::from_fn(|| reader.try_next()).collect()
}

#[test]
fn no_event_is_lost_below_capacity() {
    let (bus, _, _) = bus(4);
    let mut reader = bus.subscribe();
    bus.publish_all((0..4).map(event));
    let got: Vec<u64> = read_ready(&mut reader).iter().map(number).collect();
    assert_eq!(got, [0, 1, 2, 3]);
    assert!(!reader.is_terminated(), "nothing more yet, not ended");
    // And again, one at a time, interleaved with reads.
    for n in 4..100 {
        bus.publish(event(n));
        assert_eq!(reader.try_next().as_ref().map(number), Some(n));
    }
}

#[test]
fn a_reader_that_falls_behind_gets_lagged_with_the_count_and_the_current_snapshot() {
    let (bus, cell, mut node) = bus(3);
    let mut reader = bus.subscribe();
    bus.publish_all((0..10).map(event));
    let now = changed(&mut node, "v");
    cell.publish(now.clone());
    let got = read_ready(&mut reader);
    assert_eq!(got.len(), 4, "{got:?}");
    match &got[0] {
        Event::Lagged { missed, members } => {
            assert_eq!(*missed, 7);
            assert_eq!(members, &now, "the snapshot at the time of reading");
        }
        other => panic!("expected a lag first, got {other:?}"),
    }
    let rest: Vec<u64> = got[1..].iter().map(number).collect();
    assert_eq!(rest, [7, 8, 9], "then the newest events, in order");
    // Lagging again counts only what was lost since.
    bus.publish_all((10..15).map(event));
    let got = read_ready(&mut reader);
    assert!(matches!(got[0], Event::Lagged { missed: 2, .. }), "{got:?}");
    assert_eq!(
        got[1..].iter().map(number).collect::<Vec<_>>(),
        [12, 13, 14]
    );
}

#[test]
fn readers_are_independent() {
    let (bus, _, _) = bus(2);
    let mut fast = bus.subscribe();
    let mut slow = bus.subscribe();
    let mut fast_got = Vec::new();
    for n in 0..50 {
        bus.publish(event(n));
        fast_got.extend(read_ready(&mut fast).iter().map(number));
    }
    assert_eq!(
        fast_got,
        (0..50).collect::<Vec<_>>(),
        "the fast reader loses nothing"
    );
    let slow_got = read_ready(&mut slow);
    assert!(matches!(slow_got[0], Event::Lagged { missed: 48, .. }));
    assert_eq!(slow_got.len(), 3);
    // A reader made later sees only what comes after it.
    let mut late = bus.subscribe();
    assert!(late.try_next().is_none());
    bus.publish(event(50));
    assert_eq!(late.try_next().as_ref().map(number), Some(50));
    assert_eq!(fast.try_next().as_ref().map(number), Some(50));
}

#[test]
fn closing_ends_the_streams_after_what_they_hold() {
    let (bus, _, _) = bus(8);
    let mut reader = bus.subscribe();
    let mut keys = bus.subscribe().with_key_prefix("x");
    bus.publish_all((0..3).map(event));
    bus.close();
    bus.publish(event(99)); // ignored
    assert_eq!(
        read_ready(&mut reader)
            .iter()
            .map(number)
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(reader.is_terminated());
    assert!(reader.try_next().is_none());
    let mut next = pin!(keys.next());
    assert_eq!(poll_once(next.as_mut(), Waker::noop()), Poll::Ready(None));
    let mut late = bus.subscribe();
    assert!(late.try_next().is_none());
    assert!(
        late.is_terminated(),
        "a reader made after the close ends at once"
    );
}

#[test]
fn a_waiting_reader_is_woken_by_a_publication_and_by_the_close() {
    let (bus, _, _) = bus(8);
    let mut reader = bus.subscribe();
    let (count, waker) = counting();
    {
        let mut next = pin!(reader.next());
        assert!(poll_once(next.as_mut(), &waker).is_pending());
        // Polled twice: still one registration, woken once.
        assert!(poll_once(next.as_mut(), &waker).is_pending());
        bus.publish_all((0..3).map(event));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(matches!(
            poll_once(next.as_mut(), &waker),
            Poll::Ready(Some(_))
        ));
    }
    let _ = read_ready(&mut reader);
    let mut next = pin!(reader.next());
    assert!(poll_once(next.as_mut(), &waker).is_pending());
    bus.close();
    assert_eq!(count.0.load(Ordering::SeqCst), 2);
    assert_eq!(poll_once(next.as_mut(), &waker), Poll::Ready(None));
}

#[test]
fn dropped_readers_leave_no_waker_behind() {
    let (bus, _, _) = bus(8);
    for _ in 0..100 {
        let mut reader = bus.subscribe();
        let mut next = pin!(reader.next());
        assert!(poll_once(next.as_mut(), Waker::noop()).is_pending());
    }
    assert_eq!(bus.waiting(), 0);
}

#[test]
fn key_changes_keep_keys_under_the_prefix_and_lags() {
    let (bus, _, mut node) = bus(16);
    let mut keys = bus.subscribe().with_key_prefix("shard/");
    let member = node.local_member();
    let key = |k: &str| Event::KeyChanged {
        member: member.clone(),
        key: k.to_owned(),
        old: None,
        value: Some("1".to_owned()),
    };
    bus.publish_all([key("shard/1"), event(1), key("role"), key("shard/2")]);
    let mut next = || {
        let mut next = pin!(keys.next());
        match poll_once(next.as_mut(), Waker::noop()) {
            Poll::Ready(e) => e,
            Poll::Pending => None,
        }
    };
    let first = next();
    assert!(matches!(&first, Some(Event::KeyChanged { key, .. }) if key == "shard/1"));
    let second = next();
    assert!(matches!(&second, Some(Event::KeyChanged { key, .. }) if key == "shard/2"));
    assert!(next().is_none());
    let _ = changed(&mut node, "x");
}

#[test]
fn changes_give_the_current_snapshot_then_the_latest_then_end_after_the_close() {
    let mut node = node();
    let cell = MembersCell::new(node.members());
    let mut changes = cell.changes();
    assert_eq!(
        changes.try_next().map(|m| m.version()),
        Some(node.members_version())
    );
    assert!(changes.try_next().is_none());
    let _ = changed(&mut node, "1");
    assert!(cell.publish_from(&node));
    assert!(
        !cell.publish_from(&node),
        "nothing newer: not published again"
    );
    let _ = changed(&mut node, "2");
    assert!(cell.publish_from(&node));
    // Two publications, one read: the latest.
    assert_eq!(
        changes.try_next().map(|m| m.version()),
        Some(node.members_version())
    );
    let (count, waker) = counting();
    let last = changed(&mut node, "3");
    {
        let mut next = pin!(changes.next());
        assert!(poll_once(next.as_mut(), &waker).is_pending());
        cell.publish(last.clone());
        cell.close();
        assert!(count.0.load(Ordering::SeqCst) >= 1);
        assert_eq!(poll_once(next.as_mut(), &waker), Poll::Ready(Some(last)));
    }
    assert!(changes.try_next().is_none());
    assert!(changes.is_terminated(), "ends after the last snapshot");
    assert!(
        cell.changes().try_next().is_some(),
        "the last snapshot stays readable"
    );
}

/// A timer completed by hand.
struct Timer(Arc<AtomicUsize>);

impl Future for Timer {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0.load(Ordering::SeqCst) > 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[test]
fn waiting_for_members_holds_times_out_or_ends() {
    let mut node = node();
    let cell = MembersCell::new(node.members());
    let fired = Arc::new(AtomicUsize::new(1));
    // Already true: wins over a timer that already fired.
    let mut wait = pin!(cell.wait_for_members(|_| true, Timer(Arc::clone(&fired))));
    assert!(matches!(
        poll_once(wait.as_mut(), Waker::noop()),
        Poll::Ready(Ok(_))
    ));

    // Becomes true with a later snapshot.
    let not_fired = Arc::new(AtomicUsize::new(0));
    let has_key = |m: &Members| m.local_member().is_some_and(|l| l.get("k") == Some("2"));
    let (count, waker) = counting();
    let mut wait = pin!(cell.wait_for_members(has_key, Timer(Arc::clone(&not_fired))));
    assert!(poll_once(wait.as_mut(), &waker).is_pending());
    cell.publish(changed(&mut node, "1"));
    assert!(poll_once(wait.as_mut(), &waker).is_pending());
    let two = changed(&mut node, "2");
    cell.publish(two.clone());
    assert_eq!(count.0.load(Ordering::SeqCst), 2);
    match poll_once(wait.as_mut(), &waker) {
        Poll::Ready(Ok(members)) => assert_eq!(members, two),
        other => panic!("{other:?}"),
    }

    // Times out with the last snapshot.
    let timer = Arc::new(AtomicUsize::new(0));
    let mut wait = pin!(cell.wait_for_members(|_| false, Timer(Arc::clone(&timer))));
    assert!(poll_once(wait.as_mut(), &waker).is_pending());
    let three = changed(&mut node, "3");
    cell.publish(three.clone());
    timer.store(1, Ordering::SeqCst);
    match poll_once(wait.as_mut(), &waker) {
        Poll::Ready(Err(WaitError::Timeout { last })) => assert_eq!(last, three),
        other => panic!("{other:?}"),
    }

    // Ends when the node is done.
    let mut wait = pin!(cell.wait_for_members(|_| false, Timer(Arc::clone(&not_fired))));
    let mut closed = pin!(cell.closed());
    assert!(poll_once(wait.as_mut(), &waker).is_pending());
    assert!(poll_once(closed.as_mut(), &waker).is_pending());
    cell.close();
    assert!(matches!(
        poll_once(wait.as_mut(), &waker),
        Poll::Ready(Err(WaitError::ShutDown))
    ));
    assert!(poll_once(closed.as_mut(), &waker).is_ready());
}

#[test]
fn finished_waits_leave_no_waker_behind() {
    let node = node();
    let cell = MembersCell::new(node.members());
    for _ in 0..100 {
        let never = Arc::new(AtomicUsize::new(0));
        let mut wait = pin!(cell.wait_for_members(|_| false, Timer(never)));
        assert!(poll_once(wait.as_mut(), Waker::noop()).is_pending());
        let mut changes = cell.changes();
        let _ = changes.try_next();
        let mut next = pin!(changes.next());
        assert!(poll_once(next.as_mut(), Waker::noop()).is_pending());
    }
    assert_eq!(cell.waiting(), 0);
}

#[test]
fn seeds_keep_their_last_addresses_through_a_failed_resolution() {
    let mut seeds = SeedSet::parse(&["127.0.0.1:7000".to_owned(), "seed.example:7001".to_owned()]);
    assert!(seeds.has_host_names());
    assert_eq!(
        seeds.addresses(),
        ["127.0.0.1:7000".parse::<std::net::SocketAddr>().unwrap()]
    );
    let resolved: std::net::SocketAddr = "10.0.0.1:7001".parse().unwrap();
    let block_on = |f: &mut dyn FnMut() -> Vec<std::net::SocketAddr>| f();
    let mut run = |answer: Option<Vec<std::net::SocketAddr>>| {
        let mut future = pin!(seeds.resolve(|host| {
            assert_eq!(host, "seed.example:7001");
            std::future::ready(answer.clone())
        }));
        match poll_once(future.as_mut(), Waker::noop()) {
            Poll::Ready(addrs) => addrs,
            Poll::Pending => unreachable!("ready lookups"),
        }
    };
    let first = block_on(&mut || run(Some(vec![resolved])));
    assert_eq!(first.len(), 2);
    let again = block_on(&mut || run(None));
    assert_eq!(again, first, "kept through the failure");
    let moved: std::net::SocketAddr = "10.0.0.2:7001".parse().unwrap();
    assert!(block_on(&mut || run(Some(vec![moved]))).contains(&moved));
}

#[test]
fn settings_map_to_the_node_config() {
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut settings = NodeSettings::new("n", ConnectionConfig::new(any, any, ["127.0.0.1:1"]));
    settings.data_center = "dc-1".to_owned();
    settings.tune = Some(Box::new(|c: &mut NodeConfig| c.gossip_count = 5));
    let bound = "127.0.0.1:4242".parse().unwrap();
    let wall = crate::WallTime::from_unix_millis(1_700_000_000_000).unwrap();
    let config = settings.node_config(bound, wall, vec![], 7);
    assert_eq!(config.id.gossip_addr(), bound, "port 0: the bound port");
    assert_eq!(config.id.generation(), 1_700_000_000_000);
    assert_eq!(config.data_center, "dc-1");
    assert_eq!(config.rng_seed, 7, "no seed set: the OS one");
    assert_eq!(config.gossip_count, 5, "tuned last");
    settings.rng_seed = Some(3);
    settings.generation = Some(9);
    let config = settings.node_config(bound, wall, vec![], 7);
    assert_eq!((config.rng_seed, config.id.generation()), (3, 9));
    assert_eq!(
        config.gossip_count,
        NodeConfig::new(config.id.clone()).gossip_count,
        "tune runs once"
    );
}
