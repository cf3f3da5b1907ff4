//! Tests of the clock's guarantees (see the module documentation).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const T0: u64 = 1_700_000_000_000;

fn wall(millis: u64) -> WallTime {
    WallTime::from_unix_millis(millis).unwrap()
}

fn clock(node: u64) -> Hlc {
    Hlc::new(HlcConfig::new(NodeTag::new(node)))
}

fn ts(millis: u64, counter: u16, node: u64) -> Timestamp {
    Timestamp::new(millis, counter, NodeTag::new(node)).unwrap()
}

#[test]
fn first_timestamp_is_the_wall_time() {
    let mut c = clock(1);
    assert_eq!(c.last(), None);
    assert_eq!(c.now(wall(T0)).unwrap(), ts(T0, 0, 1));
    assert_eq!(c.last(), Some(ts(T0, 0, 1)));
}

#[test]
fn monotonic_when_the_wall_clock_stalls_repeats_or_steps_back() {
    let mut c = clock(1);
    let walls = [
        T0,
        T0,
        T0,
        T0 + 5,
        T0 + 5,
        T0 - 1_000,
        T0 - 1_000,
        0,
        T0 + 6,
        T0 + 3,
    ];
    let mut previous = None;
    for w in walls {
        let t = c.now(wall(w)).unwrap();
        if let Some(p) = previous {
            assert!(t > p, "{t} after {p} at wall {w}");
        }
        assert!(t.millis() >= w, "never behind the wall clock");
        previous = Some(t);
    }
    // The step back did not move the physical part back; it counted instead.
    assert_eq!(previous.unwrap().millis(), T0 + 6);
}

#[test]
fn counter_resets_when_the_wall_clock_moves_on() {
    let mut c = clock(1);
    c.now(wall(T0)).unwrap();
    assert_eq!(c.now(wall(T0)).unwrap().counter(), 1);
    let t = c.now(wall(T0 + 1)).unwrap();
    assert_eq!((t.millis(), t.counter()), (T0 + 1, 0));
}

#[test]
fn receive_rule_every_branch() {
    // l == l' == l_m: counter = max(c, c_m) + 1.
    let mut c = clock(1);
    c.now(wall(T0)).unwrap(); // (T0, 0)
    c.now(wall(T0)).unwrap(); // (T0, 1)
    let t = c.observe(ts(T0, 7, 2), wall(T0)).unwrap();
    assert_eq!((t.millis(), t.counter()), (T0, 8));
    let t = c.observe(ts(T0, 3, 2), wall(T0)).unwrap();
    assert_eq!((t.millis(), t.counter()), (T0, 9), "local counter larger");

    // l == l' only (remote behind): counter + 1.
    let t = c.observe(ts(T0 - 10, 500, 2), wall(T0 - 20)).unwrap();
    assert_eq!((t.millis(), t.counter()), (T0, 10));

    // l == l_m only (remote ahead of both): counter = c_m + 1.
    let t = c.observe(ts(T0 + 100, 4, 2), wall(T0 + 1)).unwrap();
    assert_eq!((t.millis(), t.counter()), (T0 + 100, 5));

    // Wall ahead of both: counter 0.
    let t = c.observe(ts(T0 + 50, 9, 2), wall(T0 + 200)).unwrap();
    assert_eq!((t.millis(), t.counter()), (T0 + 200, 0));
}

#[test]
fn receive_orders_later_events_after_the_message() {
    let mut sender = clock(1);
    let mut receiver = clock(2);
    // The sender's wall clock runs 300 ms ahead of the receiver's.
    let sent = sender.now(wall(T0 + 300)).unwrap();
    receiver.now(wall(T0)).unwrap();
    let received = receiver.observe(sent, wall(T0)).unwrap();
    assert!(received > sent);
    let later = receiver.now(wall(T0 + 1)).unwrap();
    assert!(later > sent && later > received);
}

#[test]
fn drift_bound_is_inclusive_and_rejection_changes_nothing() {
    let mut c = clock(1);
    c.now(wall(T0)).unwrap();
    let limit = DEFAULT_MAX_DRIFT.as_millis() as u64;

    let before = c.clone();
    let err = c.observe(ts(T0 + limit + 1, 0, 2), wall(T0)).unwrap_err();
    assert_eq!(
        err,
        ClockError::DriftExceeded {
            remote_millis: T0 + limit + 1,
            wall_millis: T0,
            max_drift_millis: limit
        }
    );
    assert_eq!(
        c, before,
        "a rejected timestamp leaves the clock bit-identical"
    );
    assert!(err.to_string().contains("501 ms ahead"), "{err}");

    // Exactly max_drift ahead is accepted.
    let t = c.observe(ts(T0 + limit, 0, 2), wall(T0)).unwrap();
    assert_eq!((t.millis(), t.counter()), (T0 + limit, 1));

    // The same for the shared clock.
    let s = SharedHlc::new(HlcConfig::new(NodeTag::new(1)));
    s.now(wall(T0)).unwrap();
    let before = s.last();
    assert!(s.observe(ts(T0 + limit + 1, 0, 2), wall(T0)).is_err());
    assert_eq!(s.last(), before);
    assert!(s.observe(ts(T0 + limit, 0, 2), wall(T0)).is_ok());
}

#[test]
fn max_drift_is_configurable() {
    let mut c = Hlc::new(HlcConfig::new(NodeTag::new(1)).with_max_drift(Duration::from_millis(10)));
    assert_eq!(c.max_drift(), Duration::from_millis(10));
    assert!(c.observe(ts(T0 + 11, 0, 2), wall(T0)).is_err());
    assert!(c.observe(ts(T0 + 10, 0, 2), wall(T0)).is_ok());
    let mut zero = Hlc::new(HlcConfig::new(NodeTag::new(1)).with_max_drift(Duration::ZERO));
    assert!(zero.observe(ts(T0 + 1, 0, 2), wall(T0)).is_err());
    assert!(zero.observe(ts(T0, 0, 2), wall(T0)).is_ok());
}

#[test]
fn counter_overflow_carries_without_panicking() {
    let mut c = clock(1);
    let w = wall(T0);
    let mut previous = c.now(w).unwrap();
    for _ in 0..(u64::from(u16::MAX) + 10) {
        let t = c.now(w).unwrap();
        assert!(t > previous);
        previous = t;
    }
    // 1 + 65,545 events in one millisecond: counters 0..=65535 fill it, and the last ten
    // carried into the next millisecond (counters 0..=9).
    assert_eq!(previous.millis(), T0 + 1);
    assert_eq!(previous.counter(), 9);

    // A remote at the top of the counter carries too.
    let mut c = clock(1);
    let t = c.observe(ts(T0, u16::MAX, 2), wall(T0)).unwrap();
    assert_eq!((t.millis(), t.counter()), (T0 + 1, 0));

    // And the shared clock, through plain addition.
    let s = SharedHlc::new(HlcConfig::new(NodeTag::new(1)));
    let mut previous = s.now(w).unwrap();
    for _ in 0..(u64::from(u16::MAX) + 10) {
        let t = s.now(w).unwrap();
        assert!(t > previous);
        previous = t;
    }
    assert_eq!((previous.millis(), previous.counter()), (T0 + 1, 9));
}

#[test]
fn end_of_range_is_an_error_not_a_panic() {
    // Wall times beyond 48 bits cannot even be constructed.
    assert!(matches!(
        WallTime::from_unix_millis(MAX_PHYSICAL_MILLIS + 1),
        Err(ClockError::WallTimeOutOfRange { .. })
    ));
    // The top of the range is refused by both clocks, leaving them unchanged.
    let mut c = clock(1);
    c.now(wall(T0)).unwrap();
    let before = c.clone();
    assert_eq!(c.now(WallTime::MAX), Err(ClockError::Exhausted));
    assert_eq!(c, before);
    let s = SharedHlc::new(HlcConfig::new(NodeTag::new(1)));
    assert_eq!(s.now(WallTime::MAX), Err(ClockError::Exhausted));
    assert_eq!(s.last(), None);

    // The last usable millisecond still works, and its counters run out into Exhausted.
    let top = (LIMIT >> COUNTER_BITS) - 1;
    let mut c = clock(1);
    let mut last = c.now(wall(top)).unwrap();
    let mut steps = 0u64;
    loop {
        match c.now(wall(top)) {
            Ok(t) => {
                assert!(t > last);
                last = t;
                steps += 1;
            }
            Err(e) => {
                assert_eq!(e, ClockError::Exhausted);
                break;
            }
        }
        assert!(steps < 1 << 20, "must exhaust");
    }
    assert_eq!(
        c.last(),
        Some(last),
        "exhaustion leaves the clock unchanged"
    );

    // A hostile remote timestamp at the very top, with an unbounded drift setting.
    let mut trusting = Hlc::new(HlcConfig::new(NodeTag::new(1)).with_max_drift(Duration::MAX));
    let hostile = Timestamp::from_packed(u64::MAX, NodeTag::new(9));
    assert_eq!(
        trusting.observe(hostile, wall(T0)),
        Err(ClockError::Exhausted)
    );
    assert_eq!(trusting.last(), None);
    let shared = SharedHlc::new(HlcConfig::new(NodeTag::new(1)).with_max_drift(Duration::MAX));
    assert_eq!(
        shared.observe(hostile, wall(T0)),
        Err(ClockError::Exhausted)
    );
    assert_eq!(shared.last(), None);
}

#[test]
fn observing_an_own_or_stale_timestamp_only_moves_forward() {
    let mut c = clock(1);
    let a = c.now(wall(T0)).unwrap();
    let b = c.now(wall(T0)).unwrap();
    let again = c.observe(a, wall(T0)).unwrap();
    assert!(again > b);
    let stale = c.observe(ts(1, 0, 2), wall(T0)).unwrap();
    assert!(stale > again);
}

#[test]
fn uniqueness_across_nodes_exchanging_thousands_of_timestamps() {
    // Four clocks, 10,000 events each, exchanging every other event, on skewed wall clocks.
    let skews = [0u64, 3, 250, 499];
    let mut clocks: Vec<Hlc> = (0..4).map(|i| clock(100 + i)).collect();
    let mut streams: Vec<Vec<Timestamp>> = vec![Vec::new(); 4];
    let mut mailbox: Vec<Option<Timestamp>> = vec![None; 4];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for step in 0..10_000u64 {
        for i in 0..4 {
            // A wall clock that advances every 8 steps, so many events share a millisecond.
            let w = wall(T0 + step / 8 + skews[i]);
            rng = crate::hash::mix64(rng.wrapping_add(1));
            let t = match mailbox[i].take() {
                Some(m) if rng % 2 == 0 => clocks[i].observe(m, w).unwrap(),
                _ => clocks[i].now(w).unwrap(),
            };
            mailbox[(i + 1 + (rng as usize >> 8) % 3) % 4] = Some(t);
            streams[i].push(t);
        }
    }
    let mut all = HashSet::new();
    for stream in &streams {
        assert!(
            stream.windows(2).all(|w| w[0] < w[1]),
            "each stream is sorted"
        );
        for t in stream {
            assert!(all.insert(*t), "duplicate {t}");
        }
    }
    assert_eq!(all.len(), 40_000);
}

#[test]
fn shared_clock_is_unique_and_monotonic_across_threads() {
    let shared = Arc::new(SharedHlc::new(HlcConfig::new(NodeTag::new(1))));
    let threads = 4;
    let per_thread = 50_000u64;
    let handles: Vec<_> = (0..threads)
        .map(|k| {
            let clock = Arc::clone(&shared);
            std::thread::spawn(move || {
                let mut out = Vec::with_capacity(per_thread as usize);
                for i in 0..per_thread {
                    // Wall clocks that disagree between threads and sometimes step back.
                    let w =
                        wall(T0 + i / 1_000 + (k as u64 * 7) % 5 - if i % 97 == 0 { 3 } else { 0 });
                    let t = if i % 10 == 0 {
                        let remote = ts(T0 + i / 1_000, (i % 500) as u16, 2);
                        clock.observe(remote, w).unwrap()
                    } else {
                        clock.now(w).unwrap()
                    };
                    out.push(t);
                }
                out
            })
        })
        .collect();
    let mut all = HashSet::new();
    for h in handles {
        let stream = h.join().unwrap();
        assert!(
            stream.windows(2).all(|w| w[0] < w[1]),
            "per-thread monotonic"
        );
        for t in stream {
            assert!(all.insert(t), "duplicate {t}");
        }
    }
    assert_eq!(all.len(), threads * per_thread as usize);
    assert_eq!(shared.last(), all.iter().max().copied());
}

#[test]
fn shared_clock_continues_an_owned_one() {
    let mut owned = clock(3);
    let last = owned.now(wall(T0)).unwrap();
    let shared = SharedHlc::from(owned);
    assert_eq!(shared.last(), Some(last));
    assert!(shared.now(wall(T0)).unwrap() > last);
    assert_eq!(shared.node(), NodeTag::new(3));
    assert_eq!(shared.max_drift(), DEFAULT_MAX_DRIFT);
}

/// One operation of a random schedule.
#[derive(Clone, Debug)]
enum Op {
    /// Node `node` issues a local or send event; if `send`, the timestamp is put in flight.
    Local { node: usize, send: bool },
    /// The oldest message in flight to anyone is delivered to `node`.
    Deliver { node: usize },
    /// Node `node`'s wall clock moves by `delta` ms (may be negative: an NTP step).
    Tick { node: usize, delta: i64 },
}

fn arb_op(nodes: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..nodes, any::<bool>()).prop_map(|(node, send)| Op::Local { node, send }),
        3 => (0..nodes).prop_map(|node| Op::Deliver { node }),
        2 => (0..nodes, -5i64..40).prop_map(|(node, delta)| Op::Tick { node, delta }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random schedules of sends and receives among nodes whose wall clocks are skewed (some
    /// beyond the drift bound) and sometimes step back.
    #[test]
    fn random_schedules_keep_every_guarantee(
        skews in proptest::collection::vec(0u64..800, 2..6),
        ops in proptest::collection::vec(arb_op(6), 1..400),
    ) {
        let n = skews.len();
        let max_drift = 500;
        let mut clocks: Vec<Hlc> = (0..n as u64).map(clock).collect();
        let mut walls: Vec<u64> = skews.iter().map(|s| T0 + s).collect();
        // The highest wall time each node has seen: the drift bound holds against it.
        let mut high: Vec<u64> = walls.clone();
        let mut streams: Vec<Vec<Timestamp>> = vec![Vec::new(); n];
        let mut in_flight: std::collections::VecDeque<Timestamp> = Default::default();
        let mut all = HashSet::new();
        for op in ops {
            match op {
                Op::Local { node, send } => {
                    let node = node % n;
                    let t = clocks[node].now(wall(walls[node])).unwrap();
                    prop_assert!(t.millis() >= walls[node]);
                    streams[node].push(t);
                    prop_assert!(all.insert(t));
                    if send {
                        in_flight.push_back(t);
                    }
                }
                Op::Deliver { node } => {
                    let node = node % n;
                    let Some(m) = in_flight.pop_front() else { continue };
                    let before = clocks[node].clone();
                    match clocks[node].observe(m, wall(walls[node])) {
                        Ok(t) => {
                            prop_assert!(m.millis() <= walls[node] + max_drift);
                            prop_assert!(t > m, "causality: {} after {}", t, m);
                            prop_assert!(t.millis() >= walls[node]);
                            streams[node].push(t);
                            prop_assert!(all.insert(t));
                        }
                        Err(ClockError::DriftExceeded { .. }) => {
                            prop_assert!(m.millis() > walls[node] + max_drift);
                            prop_assert_eq!(&clocks[node], &before);
                        }
                        Err(e) => prop_assert!(false, "unexpected error {e}"),
                    }
                }
                Op::Tick { node, delta } => {
                    let node = node % n;
                    walls[node] = walls[node].saturating_add_signed(delta);
                    high[node] = high[node].max(walls[node]);
                }
            }
        }
        for (node, stream) in streams.iter().enumerate() {
            prop_assert!(stream.windows(2).all(|w| w[0] < w[1]), "monotonic");
            // Bounded drift: nothing ran further ahead of the node's own clock than the bound
            // (no counter carries happen at these rates).
            if let Some(last) = stream.last() {
                prop_assert!(last.millis() <= high[node] + max_drift);
            }
        }
    }

    /// The shared clock computes exactly what the owned clock computes, call for call.
    #[test]
    fn shared_and_owned_clocks_agree(
        calls in proptest::collection::vec((any::<bool>(), 0u64..100, 0u64..700, any::<u16>()), 1..300),
    ) {
        let mut owned = clock(5);
        let shared = SharedHlc::new(HlcConfig::new(NodeTag::new(5)));
        for (observe, w, remote_offset, counter) in calls {
            let w = wall(T0 + w);
            if observe {
                let remote = ts(T0 + remote_offset, counter, 9);
                prop_assert_eq!(owned.observe(remote, w), shared.observe(remote, w));
            } else {
                prop_assert_eq!(owned.now(w), shared.now(w));
            }
            prop_assert_eq!(owned.last(), shared.last());
        }
    }
}
