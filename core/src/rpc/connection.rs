//! One RPC connection as a state machine: calls multiplexed on a byte stream, each with a
//! request id, a deadline and cancellation; a bound on calls in flight both ways; keep-alive
//! pings and an idle timeout. The hybrid logical clock stamps every frame and observes every
//! frame received.
//!
//! Owns [`Connection`]. It never does I/O: the driver feeds it the bytes the stream delivered
//! ([`Connection::handle_bytes`]) and writes the bytes it hands out
//! ([`Connection::transmit`], then [`Connection::advance_transmit`] with what the stream took),
//! calls [`Connection::handle_timeout`] at [`Connection::poll_timeout`], and drains
//! [`Connection::poll_event`] after every input. Calls go both ways on one connection.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rkyv::api::high::HighSerializer;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;

use super::frame::{
    DEFAULT_MAX_FRAME_SIZE, Frame, FrameDecoder, FrameError, FrameHeader, FrameKind, MethodId,
    write_frame,
};
use super::service::Reply;
use super::status::{Status, StatusCode};
use crate::clock::{SharedHlc, Timestamp, WallTime};

/// Settings of a [`Connection`]. Every limit has a default.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// The largest frame accepted (header and body). Default 16 MiB.
    pub max_frame_size: usize,
    /// Calls of ours waiting for their reply at most; more are refused
    /// ([`CallError::TooManyCalls`]). Default 1,024.
    pub max_calls_in_flight: usize,
    /// The peer's calls being served at most; more are answered
    /// [`StatusCode::Unavailable`] at once. Default 1,024.
    pub max_incoming_in_flight: usize,
    /// Bytes waiting to be written at most before new calls are refused
    /// ([`CallError::Backpressure`]); a driver also stops reading from the peer past it (the
    /// tokio driver does). A connection's memory then stays within a small multiple of this
    /// (the driver's write buffer and this one), plus the `max_incoming_in_flight` calls being
    /// served (each its request and its reply, each at most `max_frame_size`, some finishing
    /// after reading stopped), plus one frame being read: a peer that stops reading cannot
    /// grow it further. Default 8 MiB.
    pub max_buffered: usize,
    /// After this long without receiving anything, a ping is sent. Default 10 s.
    pub keep_alive_interval: Duration,
    /// After this long without receiving anything (pings unanswered too), the connection is
    /// closed. Default 30 s.
    pub idle_timeout: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_calls_in_flight: 1_024,
            max_incoming_in_flight: 1_024,
            max_buffered: 8 << 20,
            keep_alive_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// A call of ours on a connection (its request id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// Why a call could not start. Nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// [`ConnectionConfig::max_calls_in_flight`] calls already wait for replies.
    #[error("too many calls in flight on this connection")]
    TooManyCalls,
    /// The peer is not reading: [`ConnectionConfig::max_buffered`] bytes already wait.
    #[error("the connection's send buffer is full (the peer is not reading)")]
    Backpressure,
    /// The connection is closed.
    #[error("the connection is closed")]
    Closed,
    /// The request could not be serialized.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Why a connection closed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Nothing was received for [`ConnectionConfig::idle_timeout`].
    IdleTimeout,
    /// The peer sent bytes that are not frames.
    Protocol(FrameError),
    /// [`Connection::close`] was called.
    Local,
}

/// What the connection tells its driver.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The peer calls `method`: serve it and answer with [`Connection::respond`] or
    /// [`Connection::respond_error`] (unless [`ConnectionEvent::Cancelled`] comes first).
    Request {
        /// The call's id, to answer it.
        request_id: u64,
        /// The method called.
        method: MethodId,
        /// When the caller gives up, if it set a deadline (in local time).
        deadline: Option<Instant>,
        /// The request (its body is the message's archive, still to validate).
        frame: Frame,
    },
    /// The reply to one of our calls.
    Response {
        /// The call.
        call: CallId,
        /// The reply (its body is the reply's archive, still to validate).
        frame: Frame,
    },
    /// One of our calls failed: the peer's error, its deadline, or the connection closing.
    Failed {
        /// The call.
        call: CallId,
        /// Why.
        status: Status,
    },
    /// The peer no longer wants the answer to `request_id` (it cancelled, or its deadline
    /// passed): stop serving it. An answer sent anyway is dropped.
    Cancelled {
        /// The peer's call.
        request_id: u64,
    },
    /// The connection closed; every call of ours failed before this event.
    Closed(CloseReason),
}

/// An RPC connection's protocol state. See the module documentation for the driving order.
#[derive(Debug)]
pub struct Connection {
    config: ConnectionConfig,
    clock: Arc<SharedHlc>,
    decoder: FrameDecoder,
    /// Frames to write, from `out_start` on.
    out: AlignedVec<16>,
    out_start: usize,
    next_request_id: u64,
    /// Our calls waiting for a reply, with their deadline.
    calls: HashMap<u64, Option<Instant>>,
    call_deadlines: BTreeSet<(Instant, u64)>,
    /// The peer's calls we serve, with their deadline.
    incoming: HashMap<u64, Option<Instant>>,
    incoming_deadlines: BTreeSet<(Instant, u64)>,
    last_received: Instant,
    /// The nonce and send time of the ping waiting for its pong.
    ping: Option<(u64, Instant)>,
    events: VecDeque<ConnectionEvent>,
    closed: bool,
}

impl Connection {
    /// A connection opened at `now`, stamping and observing with `clock`.
    #[must_use]
    pub fn new(config: ConnectionConfig, clock: Arc<SharedHlc>, now: Instant) -> Self {
        Self {
            decoder: FrameDecoder::new(config.max_frame_size),
            config,
            clock,
            out: AlignedVec::new(),
            out_start: 0,
            next_request_id: 1,
            calls: HashMap::new(),
            call_deadlines: BTreeSet::new(),
            incoming: HashMap::new(),
            incoming_deadlines: BTreeSet::new(),
            last_received: now,
            ping: None,
            events: VecDeque::new(),
            closed: false,
        }
    }

    /// Whether the connection is closed (nothing more is sent or delivered).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Our calls waiting for a reply.
    #[must_use]
    pub fn calls_in_flight(&self) -> usize {
        self.calls.len()
    }

    /// The peer's calls being served.
    #[must_use]
    pub fn incoming_in_flight(&self) -> usize {
        self.incoming.len()
    }

    // ------------------------------------------------------------------ commands

    /// Calls `method` with `request` (serialized straight into the send buffer), to be answered
    /// within `deadline` if given.
    ///
    /// # Errors
    ///
    /// A [`CallError`]; nothing was sent then.
    pub fn call<T>(
        &mut self,
        now: Instant,
        wall: WallTime,
        method: MethodId,
        request: &T,
        deadline: Option<Duration>,
    ) -> Result<CallId, CallError>
    where
        T: for<'a, 'b> rkyv::Serialize<
                HighSerializer<&'b mut AlignedVec<16>, ArenaHandle<'a>, rancor::Error>,
            >,
    {
        if self.closed {
            return Err(CallError::Closed);
        }
        if self.calls.len() >= self.config.max_calls_in_flight.max(1) {
            return Err(CallError::TooManyCalls);
        }
        if self.buffered() >= self.config.max_buffered {
            return Err(CallError::Backpressure);
        }
        let id = self.next_request_id;
        let header = FrameHeader::request(id, method, self.stamp(wall), deadline);
        self.write_bounded(|out| write_frame(out, header, request))?;
        self.next_request_id += 1;
        let at = deadline.and_then(|d| now.checked_add(d));
        self.calls.insert(id, at);
        if let Some(at) = at {
            self.call_deadlines.insert((at, id));
        }
        Ok(CallId(id))
    }

    /// Gives up on `call`: the peer is told (a cancel frame) and a late reply is dropped.
    /// Returns whether the call was still waiting.
    pub fn cancel(&mut self, wall: WallTime, call: CallId) -> bool {
        if !self.forget_call(call.0) {
            return false;
        }
        self.send_bodiless(FrameKind::Cancel, call.0, wall);
        true
    }

    /// Answers the peer's call `request_id` with `reply` (any [`Message`](super::Message), or a
    /// [`Reply`] from a [`ServedCall`](super::ServedCall)), serialized straight
    /// into the send buffer. Returns whether it was sent (not if the call was cancelled, timed
    /// out or unknown).
    ///
    /// # Errors
    ///
    /// [`FrameError::Serialize`] when the reply cannot be serialized; the call is then answered
    /// with [`StatusCode::Internal`] instead.
    pub fn respond(
        &mut self,
        wall: WallTime,
        request_id: u64,
        reply: &dyn Reply,
    ) -> Result<bool, FrameError> {
        if !self.forget_incoming(request_id) || self.closed {
            return Ok(false);
        }
        let header = FrameHeader::new(FrameKind::Response, request_id, self.stamp(wall));
        if let Err(error) = self.write_bounded(|out| reply.write(out, header)) {
            let status = Status::new(StatusCode::Internal, error.to_string());
            self.write_error(wall, request_id, &status);
            return Err(error);
        }
        Ok(true)
    }

    /// Answers the peer's call `request_id` with an error. Returns whether it was sent.
    pub fn respond_error(&mut self, wall: WallTime, request_id: u64, status: &Status) -> bool {
        if !self.forget_incoming(request_id) || self.closed {
            return false;
        }
        self.write_error(wall, request_id, status);
        true
    }

    /// Closes the connection: every call of ours fails ([`StatusCode::Unavailable`]), and
    /// nothing more is sent or delivered.
    pub fn close(&mut self) {
        self.shut(CloseReason::Local);
    }

    // ------------------------------------------------------------------ inputs

    /// Takes bytes the stream delivered at `now` (wall clock `wall`): every whole frame in
    /// them is handled; a partial one waits for more.
    ///
    /// # Errors
    ///
    /// The [`FrameError`] of bytes that are not frames: the connection is then closed (the
    /// event says so) and the driver should drop the stream.
    pub fn handle_bytes(
        &mut self,
        now: Instant,
        wall: WallTime,
        mut bytes: &[u8],
    ) -> Result<(), FrameError> {
        if self.closed {
            return Ok(());
        }
        if !bytes.is_empty() {
            self.last_received = now;
        }
        loop {
            match self.decoder.decode(&mut bytes) {
                Ok(Some(frame)) => self.handle_frame(now, wall, frame),
                Ok(None) => return Ok(()),
                Err(error) => {
                    self.shut(CloseReason::Protocol(error.clone()));
                    return Err(error);
                }
            }
            if self.closed {
                return Ok(());
            }
        }
    }

    fn handle_frame(&mut self, now: Instant, wall: WallTime, frame: Frame) {
        let header = *frame.header();
        let skewed = self.clock.observe(header.timestamp, wall).is_err();
        let id = header.request_id;
        match header.kind {
            FrameKind::Request => {
                if skewed {
                    let status = Status::new(
                        StatusCode::ClockSkew,
                        "the request's timestamp is beyond the drift bound",
                    );
                    self.write_error(wall, id, &status);
                    return;
                }
                if self.incoming.contains_key(&id) {
                    // A request id still in use: the peer broke the protocol; ignore it.
                    return;
                }
                if self.incoming.len() >= self.config.max_incoming_in_flight.max(1) {
                    let status = Status::new(StatusCode::Unavailable, "too many calls in flight");
                    self.write_error(wall, id, &status);
                    return;
                }
                if header.deadline() == Some(Duration::ZERO) {
                    let status = Status::new(StatusCode::DeadlineExceeded, "no time left");
                    self.write_error(wall, id, &status);
                    return;
                }
                // A deadline too far to represent is no deadline.
                let deadline = header.deadline().and_then(|d| now.checked_add(d));
                self.incoming.insert(id, deadline);
                if let Some(at) = deadline {
                    self.incoming_deadlines.insert((at, id));
                }
                self.events.push_back(ConnectionEvent::Request {
                    request_id: id,
                    method: header.method,
                    deadline,
                    frame,
                });
            }
            FrameKind::Response | FrameKind::Error => {
                if !self.forget_call(id) {
                    return; // cancelled or timed out: a late answer
                }
                let event = if skewed {
                    ConnectionEvent::Failed {
                        call: CallId(id),
                        status: Status::new(
                            StatusCode::ClockSkew,
                            "the reply's timestamp is beyond the drift bound",
                        ),
                    }
                } else if header.kind == FrameKind::Response {
                    ConnectionEvent::Response {
                        call: CallId(id),
                        frame,
                    }
                } else {
                    let status = match frame.access::<super::status::ArchivedStatus>() {
                        Ok(archived) => rkyv::deserialize::<Status, rancor::Error>(archived)
                            .unwrap_or_else(|e| Status::new(StatusCode::Internal, e.to_string())),
                        Err(error) => Status::new(StatusCode::Internal, error.to_string()),
                    };
                    ConnectionEvent::Failed {
                        call: CallId(id),
                        status,
                    }
                };
                self.events.push_back(event);
            }
            FrameKind::Cancel => {
                if self.forget_incoming(id) {
                    self.events
                        .push_back(ConnectionEvent::Cancelled { request_id: id });
                }
            }
            FrameKind::Ping => self.send_bodiless(FrameKind::Pong, id, wall),
            FrameKind::Pong => {
                if self.ping.is_some_and(|(nonce, _)| nonce == id) {
                    self.ping = None;
                }
            }
        }
    }

    /// Runs what is due at `now`: deadlines of calls both ways, the keep-alive ping, the idle
    /// timeout. Early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant, wall: WallTime) {
        if self.closed {
            return;
        }
        if now.saturating_duration_since(self.last_received) >= self.config.idle_timeout {
            self.shut(CloseReason::IdleTimeout);
            return;
        }
        while let Some(&(at, id)) = self.call_deadlines.first() {
            if at > now {
                break;
            }
            self.forget_call(id);
            // The peer stops serving it at its own deadline; tell it now all the same.
            self.send_bodiless(FrameKind::Cancel, id, wall);
            self.events.push_back(ConnectionEvent::Failed {
                call: CallId(id),
                status: Status::new(StatusCode::DeadlineExceeded, ""),
            });
        }
        while let Some(&(at, id)) = self.incoming_deadlines.first() {
            if at > now {
                break;
            }
            self.forget_incoming(id);
            self.events
                .push_back(ConnectionEvent::Cancelled { request_id: id });
        }
        let quiet = now.saturating_duration_since(self.last_received);
        if quiet >= self.config.keep_alive_interval && self.ping.is_none() {
            let nonce = self.next_request_id;
            self.next_request_id += 1;
            self.send_bodiless(FrameKind::Ping, nonce, wall);
            self.ping = Some((nonce, now));
        }
    }

    // ------------------------------------------------------------------ outputs

    /// The bytes to write to the stream now (whole frames, possibly several).
    #[must_use]
    pub fn transmit(&self) -> &[u8] {
        &self.out[self.out_start..]
    }

    /// The stream took `n` bytes of [`transmit`](Self::transmit).
    pub fn advance_transmit(&mut self, n: usize) {
        self.out_start = (self.out_start + n).min(self.out.len());
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
        }
    }

    /// Hands every byte waiting to be written over in `buf` (whose old contents are dropped;
    /// its allocation becomes the connection's next send buffer): the same as copying
    /// [`transmit`](Self::transmit) and calling [`advance_transmit`](Self::advance_transmit)
    /// with its length, without the copy.
    pub fn swap_transmit(&mut self, buf: &mut AlignedVec<16>) {
        buf.clear();
        if self.out_start == 0 {
            std::mem::swap(&mut self.out, buf);
        } else {
            buf.extend_from_slice(&self.out[self.out_start..]);
            self.out.clear();
            self.out_start = 0;
        }
    }

    /// Gives a received frame's body buffer back (once done with the frame), so that a later
    /// frame lands in it without an allocation.
    pub fn recycle(&mut self, body: AlignedVec<16>) {
        self.decoder.recycle(body);
    }

    /// Bytes waiting to be written.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.out.len() - self.out_start
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ConnectionEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due (`None` once closed).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        // A setting too long to add to an instant is "never".
        let far = |d: Duration| self.last_received.checked_add(d);
        let idle = far(self.config.idle_timeout);
        let ping = if self.ping.is_none() {
            far(self.config.keep_alive_interval)
        } else {
            idle
        };
        let mut at = match (idle, ping) {
            (Some(i), Some(p)) => i.min(p),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => self.last_received + Duration::from_secs(24 * 3600),
        };
        for deadlines in [&self.call_deadlines, &self.incoming_deadlines] {
            if let Some(&(first, _)) = deadlines.first() {
                at = at.min(first);
            }
        }
        Some(at)
    }

    // ------------------------------------------------------------------ internals

    fn stamp(&self, wall: WallTime) -> Timestamp {
        // At the end of the clock's range, the last timestamp issued (the frame still goes).
        self.clock.now(wall).unwrap_or_else(|_| {
            self.clock
                .last()
                .unwrap_or_else(|| Timestamp::from_packed(0, self.clock.node()))
        })
    }

    /// Appends one frame with `write`, refusing it (and leaving the buffer as it was) when it
    /// is larger than [`ConnectionConfig::max_frame_size`]: the peer, configured alike, would
    /// close the whole connection on it, failing every call it carries.
    fn write_bounded(
        &mut self,
        write: impl FnOnce(&mut AlignedVec<16>) -> Result<(), FrameError>,
    ) -> Result<(), FrameError> {
        let start = self.out.len();
        write(&mut self.out)?;
        let len = self.out.len() - start;
        if len > self.config.max_frame_size {
            self.out.resize(start, 0);
            return Err(FrameError::TooLarge {
                len: len as u64,
                max: self.config.max_frame_size,
            });
        }
        Ok(())
    }

    fn send_bodiless(&mut self, kind: FrameKind, id: u64, wall: WallTime) {
        if self.closed {
            return;
        }
        let header = FrameHeader::new(kind, id, self.stamp(wall));
        // A frame without a body cannot fail to write.
        let _ = write_frame(&mut self.out, header, &());
    }

    fn write_error(&mut self, wall: WallTime, id: u64, status: &Status) {
        let header = FrameHeader::new(FrameKind::Error, id, self.stamp(wall));
        if write_frame(&mut self.out, header, status).is_err() {
            let plain = Status::new(status.code, "");
            let _ = write_frame(&mut self.out, header, &plain);
        }
    }

    fn forget_call(&mut self, id: u64) -> bool {
        match self.calls.remove(&id) {
            Some(deadline) => {
                if let Some(at) = deadline {
                    self.call_deadlines.remove(&(at, id));
                }
                true
            }
            None => false,
        }
    }

    fn forget_incoming(&mut self, id: u64) -> bool {
        match self.incoming.remove(&id) {
            Some(deadline) => {
                if let Some(at) = deadline {
                    self.incoming_deadlines.remove(&(at, id));
                }
                true
            }
            None => false,
        }
    }

    fn shut(&mut self, reason: CloseReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        let mut ids: Vec<u64> = self.calls.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.forget_call(id);
            self.events.push_back(ConnectionEvent::Failed {
                call: CallId(id),
                status: Status::new(StatusCode::Unavailable, "the connection closed"),
            });
        }
        self.incoming.clear();
        self.incoming_deadlines.clear();
        self.out.clear();
        self.out_start = 0;
        self.events.push_back(ConnectionEvent::Closed(reason));
    }
}

#[cfg(test)]
mod tests;
