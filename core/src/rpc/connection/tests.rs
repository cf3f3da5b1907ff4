//! The connection machine in memory, with virtual time: two connections joined by a byte pipe
//! that delivers in chunks of a chosen size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::clock::{HlcConfig, NodeTag, SharedHlc, WallTime};
use crate::rpc::{HEADER_LEN, MethodId};

const WALL0: u64 = 1_760_000_000_000;
const ECHO: MethodId = MethodId::of("test", "echo");

fn wall(ms: u64) -> WallTime {
    WallTime::from_unix_millis(WALL0 + ms).unwrap()
}

/// A client and a server on an in-memory stream.
struct Pair {
    a: Connection,
    b: Connection,
    now: Instant,
    /// Wall clock offset of b relative to a, in ms.
    b_skew: u64,
    chunk: usize,
    a_events: Vec<ConnectionEvent>,
    b_events: Vec<ConnectionEvent>,
}

impl Pair {
    fn new(config: ConnectionConfig, chunk: usize) -> Self {
        let now = Instant::now();
        let clock = |tag| Arc::new(SharedHlc::new(HlcConfig::new(NodeTag::new(tag))));
        Self {
            a: Connection::new(config.clone(), clock(1), now),
            b: Connection::new(config, clock(2), now),
            now,
            b_skew: 0,
            chunk,
            a_events: Vec::new(),
            b_events: Vec::new(),
        }
    }

    fn wall_a(&self) -> WallTime {
        wall(0)
    }

    fn wall_b(&self) -> WallTime {
        wall(self.b_skew)
    }

    /// Moves bytes both ways, in chunks, until neither side has anything to send; collects the
    /// events.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for a_to_b in [true, false] {
                let (from, to) = if a_to_b {
                    (&mut self.a, &mut self.b)
                } else {
                    (&mut self.b, &mut self.a)
                };
                let to_wall = if a_to_b { wall(self.b_skew) } else { wall(0) };
                while !from.transmit().is_empty() {
                    let n = from.transmit().len().min(self.chunk);
                    let bytes = from.transmit()[..n].to_vec();
                    from.advance_transmit(n);
                    let _ = to.handle_bytes(self.now, to_wall, &bytes);
                    moved = true;
                }
            }
            while let Some(e) = self.a.poll_event() {
                self.a_events.push(e);
            }
            while let Some(e) = self.b.poll_event() {
                self.b_events.push(e);
            }
            if !moved {
                return;
            }
        }
    }

    /// b answers every request it was given with the request's own string, reversed.
    fn serve_all(&mut self) {
        let requests: Vec<(u64, String)> = self
            .b_events
            .drain(..)
            .filter_map(|e| match e {
                ConnectionEvent::Request {
                    request_id, frame, ..
                } => {
                    let text = frame.access::<rkyv::string::ArchivedString>().ok()?;
                    Some((request_id, text.as_str().chars().rev().collect()))
                }
                _ => None,
            })
            .collect();
        let w = self.wall_b();
        for (id, reply) in requests {
            assert!(self.b.respond(w, id, &reply).unwrap());
        }
        self.pump();
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        let (wa, wb) = (self.wall_a(), self.wall_b());
        self.a.handle_timeout(self.now, wa);
        self.b.handle_timeout(self.now, wb);
        self.pump();
    }

    fn replies(&mut self) -> Vec<(CallId, String)> {
        let mut out = Vec::new();
        self.a_events.retain(|e| {
            if let ConnectionEvent::Response { call, frame } = e {
                let text = frame
                    .access::<rkyv::string::ArchivedString>()
                    .unwrap()
                    .as_str()
                    .to_owned();
                out.push((*call, text));
                false
            } else {
                true
            }
        });
        out
    }

    fn failures(&self) -> Vec<(CallId, StatusCode)> {
        self.a_events
            .iter()
            .filter_map(|e| match e {
                ConnectionEvent::Failed { call, status } => Some((*call, status.code)),
                _ => None,
            })
            .collect()
    }

    fn call(&mut self, text: &str, deadline: Option<Duration>) -> CallId {
        let w = self.wall_a();
        self.a
            .call(self.now, w, ECHO, &text.to_owned(), deadline)
            .unwrap()
    }
}

#[test]
fn many_calls_share_one_connection_and_replies_find_their_call() {
    for chunk in [1, 7, 64, 1 << 20] {
        let mut p = Pair::new(ConnectionConfig::default(), chunk);
        let calls: Vec<CallId> = (0..20)
            .map(|i| p.call(&format!("call number {i}"), None))
            .collect();
        p.pump();
        assert_eq!(p.b.incoming_in_flight(), 20);
        // Answer in reverse order: replies still reach their calls.
        p.b_events.reverse();
        p.serve_all();
        let mut replies = p.replies();
        replies.sort();
        assert_eq!(replies.len(), 20, "chunk {chunk}");
        for (i, (call, text)) in replies.iter().enumerate() {
            assert_eq!(*call, calls[i]);
            assert_eq!(
                *text,
                format!("call number {i}").chars().rev().collect::<String>()
            );
        }
        assert_eq!(p.a.calls_in_flight(), 0);
        assert_eq!(p.b.incoming_in_flight(), 0);
    }
}

#[test]
fn every_frame_carries_the_clock() {
    let mut p = Pair::new(ConnectionConfig::default(), 1 << 20);
    p.b_skew = 300; // b's wall clock is 300 ms ahead: within the 500 ms bound
    p.call("tick", None);
    p.pump();
    p.serve_all();
    // a observed b's reply: its clock now runs at b's time.
    let a_now = p.a.clock.now(p.wall_a()).unwrap();
    assert!(a_now.millis() >= WALL0 + 300, "{a_now}");
}

#[test]
fn a_request_from_beyond_the_drift_bound_gets_clock_skew_and_does_not_move_the_clock() {
    let mut p = Pair::new(ConnectionConfig::default(), 1 << 20);
    // a's wall clock is 2 s ahead of b's: b refuses a's requests.
    p.b_skew = 0;
    let far = wall(2_000);
    let call = p.a.call(p.now, far, ECHO, &"x".to_owned(), None).unwrap();
    p.pump();
    assert!(
        !p.b_events
            .iter()
            .any(|e| matches!(e, ConnectionEvent::Request { .. })),
        "not delivered"
    );
    assert_eq!(p.failures(), vec![(call, StatusCode::ClockSkew)]);
    let b_last = p.b.clock.last().map(|t| t.millis()).unwrap_or(0);
    assert!(
        b_last < WALL0 + 1_000,
        "b's clock was not dragged: {b_last}"
    );
}

#[test]
fn a_call_past_its_deadline_fails_and_the_server_is_told() {
    let mut p = Pair::new(ConnectionConfig::default(), 1 << 20);
    let call = p.call("slow", Some(Duration::from_millis(100)));
    p.pump();
    let Some(ConnectionEvent::Request { deadline, .. }) = p.b_events.first() else {
        panic!("delivered");
    };
    assert_eq!(*deadline, Some(p.now + Duration::from_millis(100)));
    assert_eq!(p.a.poll_timeout(), Some(p.now + Duration::from_millis(100)));
    p.advance(Duration::from_millis(99));
    assert!(p.failures().is_empty());
    p.advance(Duration::from_millis(1));
    assert_eq!(p.failures(), vec![(call, StatusCode::DeadlineExceeded)]);
    assert!(
        p.b_events.iter().any(
            |e| matches!(e, ConnectionEvent::Cancelled { request_id } if *request_id == call.0)
        )
    );
    // A late answer is dropped on both sides.
    let w = p.wall_b();
    assert!(!p.b.respond(w, call.0, &"late".to_owned()).unwrap());
    p.pump();
    assert!(p.replies().is_empty());
}

#[test]
fn a_cancelled_call_is_dropped_and_the_server_stops() {
    let mut p = Pair::new(ConnectionConfig::default(), 3);
    let call = p.call("work", None);
    p.pump();
    let w = p.wall_a();
    assert!(p.a.cancel(w, call));
    assert!(!p.a.cancel(w, call), "once");
    p.pump();
    assert!(
        p.b_events.iter().any(
            |e| matches!(e, ConnectionEvent::Cancelled { request_id } if *request_id == call.0)
        )
    );
    assert_eq!(p.b.incoming_in_flight(), 0);
    assert_eq!(p.a.calls_in_flight(), 0);
}

#[test]
fn calls_in_flight_are_bounded_both_ways() {
    let config = ConnectionConfig {
        max_calls_in_flight: 3,
        max_incoming_in_flight: 2,
        ..ConnectionConfig::default()
    };
    let mut p = Pair::new(config, 1 << 20);
    for i in 0..3 {
        p.call(&i.to_string(), None);
    }
    let w = p.wall_a();
    assert_eq!(
        p.a.call(p.now, w, ECHO, &"four".to_owned(), None),
        Err(CallError::TooManyCalls)
    );
    p.pump();
    // b serves two at most; the third is answered Unavailable at once.
    assert_eq!(p.b.incoming_in_flight(), 2);
    assert_eq!(p.failures().len(), 1);
    assert_eq!(p.failures()[0].1, StatusCode::Unavailable);
}

#[test]
fn a_peer_that_stops_reading_cannot_grow_our_memory() {
    let config = ConnectionConfig {
        max_buffered: 4_096,
        max_calls_in_flight: 100_000,
        ..ConnectionConfig::default()
    };
    let mut p = Pair::new(config, 1 << 20);
    let w = p.wall_a();
    let body = "x".repeat(1_000);
    let mut refused = None;
    for i in 0..100 {
        match p.a.call(p.now, w, ECHO, &body, None) {
            Ok(_) => {}
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let (at, error) = refused.expect("refused at some point");
    assert_eq!(error, CallError::Backpressure);
    assert!(at <= 5);
    assert!(p.a.buffered() < 4_096 + 1_100);
    // Once the peer reads, calls go again.
    p.pump();
    assert!(p.a.call(p.now, w, ECHO, &body, None).is_ok());
}

#[test]
fn an_error_answer_fails_the_call_with_its_status() {
    let mut p = Pair::new(ConnectionConfig::default(), 5);
    let call = p.call("boom", None);
    p.pump();
    let Some(ConnectionEvent::Request { request_id, .. }) = p.b_events.pop() else {
        panic!("delivered");
    };
    let w = p.wall_b();
    assert!(p.b.respond_error(
        w,
        request_id,
        &Status::new(StatusCode::Internal, "handler failed")
    ));
    p.pump();
    let failed = p.a_events.iter().find_map(|e| match e {
        ConnectionEvent::Failed { call: c, status } if *c == call => Some(status.clone()),
        _ => None,
    });
    assert_eq!(
        failed,
        Some(Status::new(StatusCode::Internal, "handler failed"))
    );
}

#[test]
fn keep_alive_pings_hold_an_idle_connection_and_silence_closes_it() {
    let config = ConnectionConfig {
        keep_alive_interval: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(3),
        ..ConnectionConfig::default()
    };
    let mut p = Pair::new(config, 1 << 20);
    // Both sides ping when quiet and answer pings: ten quiet seconds keep it open.
    for _ in 0..10 {
        p.advance(Duration::from_secs(1));
    }
    assert!(!p.a.is_closed() && !p.b.is_closed());
    // b goes silent (its bytes are no longer delivered): a closes after the idle timeout, and
    // its call fails.
    let call = p.call("anyone?", None);
    let mut closed_after = None;
    for s in 1..=5 {
        p.now += Duration::from_secs(1);
        let w = p.wall_a();
        p.a.handle_timeout(p.now, w);
        p.a.advance_transmit(p.a.transmit().len());
        while let Some(e) = p.a.poll_event() {
            p.a_events.push(e);
        }
        if p.a.is_closed() && closed_after.is_none() {
            closed_after = Some(s);
        }
    }
    assert_eq!(closed_after, Some(3));
    assert_eq!(p.failures(), vec![(call, StatusCode::Unavailable)]);
    assert!(
        p.a_events
            .iter()
            .any(|e| matches!(e, ConnectionEvent::Closed(CloseReason::IdleTimeout)))
    );
    assert_eq!(p.a.poll_timeout(), None);
}

#[test]
fn garbage_closes_the_connection_and_fails_its_calls() {
    let mut p = Pair::new(ConnectionConfig::default(), 1 << 20);
    let call = p.call("pending", None);
    let w = p.wall_a();
    let error = p.a.handle_bytes(
        p.now,
        w,
        b"GET / HTTP/1.1\r\n\r\n plus enough bytes for a header",
    );
    assert!(matches!(error, Err(FrameError::BadMagic(_))));
    while let Some(e) = p.a.poll_event() {
        p.a_events.push(e);
    }
    assert_eq!(p.failures(), vec![(call, StatusCode::Unavailable)]);
    assert!(p.a.is_closed());
    assert_eq!(
        p.a.call(p.now, w, ECHO, &"again".to_owned(), None),
        Err(CallError::Closed)
    );
    assert!(p.a.transmit().is_empty());
}

#[test]
fn an_oversized_frame_closes_the_connection_without_allocating_it() {
    let config = ConnectionConfig {
        max_frame_size: 1_024,
        ..ConnectionConfig::default()
    };
    let mut p = Pair::new(config, 1 << 20);
    let w = p.wall_a();
    // b (default config elsewhere would accept it) sends a 4 KiB request to a.
    let mut out = AlignedVec::<16>::new();
    let header = FrameHeader::request(1, ECHO, Timestamp::from_packed(0, NodeTag::new(9)), None);
    write_frame(&mut out, header, &"y".repeat(4_000)).unwrap();
    // Only the header reaches the decoder: it is refused before any body memory is taken.
    let result = p.a.handle_bytes(p.now, w, &out[..HEADER_LEN]);
    assert!(matches!(result, Err(FrameError::TooLarge { .. })));
    assert!(p.a.is_closed());
    assert_eq!(p.a.decoder.allocated(), 0);
}

#[test]
fn a_call_or_reply_over_the_frame_size_fails_alone() {
    let config = ConnectionConfig {
        max_frame_size: 1_024,
        ..ConnectionConfig::default()
    };
    let mut p = Pair::new(config, 1 << 20);
    let w = p.wall_a();
    let big = "z".repeat(2_000);
    assert!(matches!(
        p.a.call(p.now, w, ECHO, &big, None),
        Err(CallError::Frame(FrameError::TooLarge { .. }))
    ));
    assert!(p.a.transmit().is_empty(), "nothing of it was queued");
    // A reply too large is answered Internal; the connection keeps serving.
    let call = p.call("small", None);
    p.pump();
    let Some(ConnectionEvent::Request { request_id, .. }) = p.b_events.pop() else {
        panic!("delivered");
    };
    let wb = p.wall_b();
    assert!(p.b.respond(wb, request_id, &big).is_err());
    p.pump();
    assert_eq!(p.failures(), vec![(call, StatusCode::Internal)]);
    assert!(!p.a.is_closed() && !p.b.is_closed());
    let again = p.call("still open", None);
    p.pump();
    p.serve_all();
    assert_eq!(p.replies(), vec![(again, "nepo llits".to_owned())]);
}
