//! RPC frames (`cohort_core::rpc`): the streaming decoder and the connection machine.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cohort_core::rpc::{
    CloseReason, Connection, ConnectionConfig, ConnectionEvent, DEFAULT_MAX_FRAME_SIZE, Frame,
    FrameDecoder, FrameError, FrameHeader, HEADER_LEN, MethodId, Status, StatusCode,
};
use cohort_core::{HlcConfig, NodeTag, SharedHlc, WallTime};

use crate::archive::check_frame_body;

/// The wall clock of every target: the time of the test vectors of `docs/rpc-frames.md`
/// (1,760,000,000,000 ms), so that their timestamps are within the drift bound.
pub(crate) const WALL_MILLIS: u64 = 1_760_000_000_000;

/// What a decoder made of a stream: its frames (header and body), the error that ended it, if
/// any, and the bytes it held at the end (a partial frame).
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    frames: Vec<(FrameHeader, Vec<u8>)>,
    error: Option<FrameError>,
    buffered: usize,
}

/// Fuzz target `rpc_frames`: a [`FrameDecoder`] fed a byte stream.
///
/// Input: two bytes (little endian) choose where the stream is split, the third the maximum
/// frame size (`48 + 64 × byte`, or the default 16 MiB for `ff`), and the rest is the stream.
///
/// Asserts that
///
/// - the stream fed whole, in two parts split there, and one byte at a time gives the same
///   frames (headers and bodies), the same error and the same partial frame left over;
/// - the decoder stops only once its input is used up, and its error is sticky;
/// - its buffer never exceeds the maximum frame size (rounded up to a power of two, the
///   buffer's growth step) even when bodies are recycled into it; without recycling, it never
///   holds more than the body bytes received, or 64 KiB for a header alone (both rounded up
///   likewise): a header claiming a large body does not make it allocate;
/// - every frame respects its header (body length, no body for bodiless kinds, the size
///   limit), its header round-trips through [`FrameHeader::to_bytes`] and
///   [`FrameHeader::from_bytes`], and [`FrameHeader::from_bytes`] on the first 48 bytes
///   agrees with the decoder's first frame or error;
/// - reading each frame's body as every built-in message type ([`Frame::access`]) does not
///   panic.
pub fn rpc_frames(data: &[u8]) {
    let Some((&[s0, s1, m], stream)) = data.split_first_chunk::<3>() else {
        return;
    };
    let max = if m == u8::MAX {
        DEFAULT_MAX_FRAME_SIZE
    } else {
        HEADER_LEN + usize::from(m) * 64
    };
    let split = usize::from(u16::from_le_bytes([s0, s1])) % (stream.len() + 1);
    let (first, second) = stream.split_at(split);

    let whole = decode(max, [stream], false);
    let in_two = decode(max, [first, second], true);
    let bytewise = decode(max, stream.chunks(1), false);
    assert_eq!(whole, in_two, "split at {split}");
    assert_eq!(whole, bytewise, "fed byte by byte");

    if let Some(bytes) = stream.first_chunk::<HEADER_LEN>() {
        match FrameHeader::from_bytes(bytes, max) {
            Ok(header) => assert_eq!(whole.frames.first().map_or(header, |f| f.0), header),
            Err(error) => {
                assert!(whole.frames.is_empty());
                assert_eq!(whole.error, Some(error));
            }
        }
    }
}

/// Decodes the chunks in order with a decoder of maximum frame size `max`, giving each frame's
/// body back to it if `recycle`.
fn decode<'a>(max: usize, chunks: impl IntoIterator<Item = &'a [u8]>, recycle: bool) -> Decoded {
    let mut decoder = FrameDecoder::new(max);
    let mut frames = Vec::new();
    for chunk in chunks {
        let mut input = chunk;
        loop {
            let result = decoder.decode(&mut input);
            check_allocation(&decoder, max, recycle);
            match result {
                Ok(Some(frame)) => {
                    check_frame(&frame, max);
                    frames.push((*frame.header(), frame.body().to_vec()));
                    if recycle {
                        decoder.recycle(frame.into_body());
                    }
                }
                Ok(None) => {
                    assert!(input.is_empty(), "the decoder stopped with input left");
                    break;
                }
                Err(error) => {
                    let again = decoder.decode(&mut &[0u8; HEADER_LEN][..]);
                    assert_eq!(again.err(), Some(error.clone()), "the error is not sticky");
                    return Decoded {
                        frames,
                        error: Some(error),
                        buffered: 0,
                    };
                }
            }
        }
    }
    Decoded {
        frames,
        error: None,
        buffered: decoder.buffered(),
    }
}

/// The decoder's buffer stays within the maximum frame size, and, without recycling, within
/// what was received (or 64 KiB reserved for a header alone).
fn check_allocation(decoder: &FrameDecoder, max: usize, recycle: bool) {
    let allocated = decoder.allocated();
    assert!(
        allocated <= max.next_power_of_two(),
        "{allocated} bytes allocated with a maximum frame size of {max}"
    );
    if !recycle {
        let received = decoder.buffered().saturating_sub(HEADER_LEN);
        let bound = received.max(64 * 1024).next_power_of_two();
        assert!(
            allocated <= bound,
            "{allocated} bytes allocated for {received} body bytes received"
        );
    }
}

/// A frame is what its header says, and its header round-trips.
fn check_frame(frame: &Frame, max: usize) {
    let header = *frame.header();
    assert_eq!(frame.body().len(), header.body_len as usize, "body length");
    assert!(
        HEADER_LEN + frame.body().len() <= max,
        "frame over the maximum"
    );
    if !header.kind.has_body() {
        assert!(
            frame.body().is_empty(),
            "a {:?} frame with a body",
            header.kind
        );
    }
    assert_eq!(FrameHeader::from_bytes(&header.to_bytes(), max), Ok(header));
    check_frame_body(frame);
}

/// Fuzz target `rpc_connection`: a [`Connection`] that has made seven calls (request ids 1 to
/// 7, odd ones with a 250 ms deadline) receives the input as the bytes of its stream, then
/// lets time pass (deadlines, a keep-alive ping, the idle timeout).
///
/// Every peer request is answered once all events of an input are drained: even ids with a
/// reply, odd ids with an error status (the RPC service's two ways to answer).
///
/// Asserts that
///
/// - a stream that is not frames is reported as an error and closes the connection, with a
///   [`ConnectionEvent::Closed`] event;
/// - each of our calls ends at most once ([`ConnectionEvent::Response`] or
///   [`ConnectionEvent::Failed`]), only calls we made end, and every one has ended once the
///   connection closed (the idle timeout closes it at the latest);
/// - a peer's request is announced at most once while in flight, only announced requests are
///   cancelled, no more are in flight than the configured bound, and an announced request can
///   be answered (until the connection closes);
/// - everything the connection writes is well-formed frames;
/// - reading each received body as every built-in message type does not panic.
pub fn rpc_connection(data: &[u8]) {
    let start = Instant::now();
    let wall = WallTime::from_unix_millis(WALL_MILLIS).expect("a valid wall time");
    let clock = Arc::new(SharedHlc::new(HlcConfig::new(NodeTag::new(0x0a0b))));
    let mut config = ConnectionConfig::default();
    config.max_frame_size = 64 * 1024;
    config.max_calls_in_flight = 16;
    config.max_incoming_in_flight = 4;
    let max_frame = config.max_frame_size;
    let max_incoming = config.max_incoming_in_flight;
    let mut connection = Connection::new(config, clock, start);
    let mut state = State {
        calls: BTreeSet::new(),
        serving: BTreeSet::new(),
        closed: None,
        sent: Vec::new(),
    };

    let method = MethodId::of("kv", "get");
    for id in 1..=7_u64 {
        let deadline = (id % 2 == 1).then(|| Duration::from_millis(250));
        let call = connection
            .call(start, wall, method, &0xdead_beef_u32, deadline)
            .expect("a call on a fresh connection");
        assert_eq!(call.0, id);
        state.calls.insert(id);
    }
    state.take_transmit(&mut connection);

    let now = start + Duration::from_millis(1);
    let result = connection.handle_bytes(now, wall, data);
    if result.is_err() {
        assert!(
            connection.is_closed(),
            "a protocol error leaves the connection open"
        );
    }
    state.drain(&mut connection, wall, max_incoming);
    if let Err(error) = result {
        assert_eq!(state.closed, Some(CloseReason::Protocol(error)));
    }
    // More of the stream (the same bytes again) is handled alike; after a close, it is ignored.
    let was_closed = connection.is_closed();
    let again = connection.handle_bytes(now, wall, data);
    if was_closed {
        assert_eq!(again, Ok(()), "bytes after the close were not ignored");
    } else if let Err(error) = again {
        assert!(
            connection.is_closed(),
            "a protocol error leaves the connection open"
        );
        state.drain(&mut connection, wall, max_incoming);
        assert_eq!(state.closed, Some(CloseReason::Protocol(error)));
    }
    state.drain(&mut connection, wall, max_incoming);

    for after in [300, 11_000, 31_000, 62_000] {
        connection.handle_timeout(start + Duration::from_millis(after), wall);
        state.drain(&mut connection, wall, max_incoming);
    }
    assert!(
        connection.is_closed(),
        "the idle timeout did not close the connection"
    );
    assert!(
        state.calls.is_empty(),
        "calls never ended: {:?}",
        state.calls
    );
    assert_eq!(connection.calls_in_flight(), 0);
    assert_eq!(connection.incoming_in_flight(), 0);

    // Everything written was frames.
    let sent = decode(max_frame, [&state.sent[..]], false);
    assert_eq!(sent.error, None, "the connection wrote a malformed frame");
    assert_eq!(sent.buffered, 0, "the connection wrote a partial frame");
}

/// What the fuzz target knows of a connection.
struct State {
    /// Our calls still waiting.
    calls: BTreeSet<u64>,
    /// The peer's calls announced and not yet answered or cancelled.
    serving: BTreeSet<u64>,
    /// Why the connection closed, once it did.
    closed: Option<CloseReason>,
    /// Every byte the connection wrote.
    sent: Vec<u8>,
}

impl State {
    /// Handles every pending event, then answers the requests announced.
    fn drain(&mut self, connection: &mut Connection, wall: WallTime, max_incoming: usize) {
        while let Some(event) = connection.poll_event() {
            assert!(self.closed.is_none(), "an event after Closed: {event:?}");
            match event {
                ConnectionEvent::Request {
                    request_id, frame, ..
                } => {
                    check_frame_body(&frame);
                    assert!(
                        self.serving.insert(request_id),
                        "request {request_id} twice"
                    );
                    assert!(self.serving.len() <= max_incoming, "too many calls served");
                    connection.recycle(frame.into_body());
                }
                ConnectionEvent::Response { call, frame } => {
                    check_frame_body(&frame);
                    assert!(self.calls.remove(&call.0), "a response to {call:?}");
                }
                ConnectionEvent::Failed { call, status } => {
                    let _ = status.to_string();
                    assert!(self.calls.remove(&call.0), "a failure of {call:?}");
                }
                ConnectionEvent::Cancelled { request_id } => {
                    assert!(self.serving.remove(&request_id), "{request_id} cancelled");
                }
                ConnectionEvent::Closed(reason) => {
                    assert!(
                        self.calls.is_empty(),
                        "calls left at close: {:?}",
                        self.calls
                    );
                    self.serving.clear();
                    self.closed = Some(reason);
                }
                _ => {}
            }
        }
        for id in std::mem::take(&mut self.serving) {
            let answered = if id % 2 == 0 {
                connection
                    .respond(wall, id, &(id as u32))
                    .expect("a u32 reply serializes")
            } else {
                connection.respond_error(wall, id, &Status::new(StatusCode::NotFound, "no kv"))
            };
            assert_eq!(
                answered,
                !connection.is_closed(),
                "request {id} not answered"
            );
        }
        self.take_transmit(connection);
    }

    /// Takes what the connection has to write.
    fn take_transmit(&mut self, connection: &mut Connection) {
        let bytes = connection.transmit();
        let n = bytes.len();
        self.sent.extend_from_slice(bytes);
        connection.advance_transmit(n);
    }
}
