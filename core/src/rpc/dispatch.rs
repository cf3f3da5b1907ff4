//! The glue every transport repeats around a [`Connection`]: its events carried to the calls
//! served ([`Serving`]) and to the callers waiting ([`Replies`]), and a finished served call
//! answered. Runtime-free, so that each driver's connection loop is only I/O and a timer.

use super::connection::{CloseReason, Connection, ConnectionEvent};
use super::frame::{Frame, FrameError};
use super::replies::Replies;
use super::service::{Registry, Reply};
use super::serving::Serving;
use super::status::Status;
use crate::clock::WallTime;

impl Connection {
    /// Carries out every pending event: the peer's requests start in `serving` (with their
    /// handler from `registry`), cancelled ones stop there, replies and failures of our calls
    /// go to `replies`. Returns why the connection closed, if it did.
    pub fn dispatch(
        &mut self,
        replies: &mut Replies,
        serving: &mut Serving,
        registry: &Registry,
    ) -> Option<CloseReason> {
        let mut closed = None;
        while let Some(event) = self.poll_event() {
            match event {
                ConnectionEvent::Request {
                    request_id,
                    deadline,
                    frame,
                    ..
                } => serving.start(request_id, registry.start(frame, deadline)),
                ConnectionEvent::Response { call, frame } => {
                    replies.complete(call, Ok(frame));
                }
                ConnectionEvent::Failed { call, status } => {
                    replies.complete(call, Err(status));
                }
                ConnectionEvent::Cancelled { request_id } => {
                    serving.cancel(request_id);
                }
                ConnectionEvent::Closed(reason) => closed = Some(reason),
            }
        }
        closed
    }

    /// Answers a finished served call (what [`Serving::poll`] hands out): its reply or status
    /// is written (not if the peer cancelled it or its deadline passed) and the request's
    /// buffer is given back. Returns whether an answer was written.
    ///
    /// # Errors
    ///
    /// [`FrameError::Serialize`] when the reply could not be serialized (the caller is then
    /// answered [`StatusCode::Internal`](super::StatusCode::Internal)).
    pub fn answer(
        &mut self,
        wall: WallTime,
        request_id: u64,
        reply: Result<&dyn Reply, Status>,
        frame: Option<Frame>,
    ) -> Result<bool, FrameError> {
        let answered = match reply {
            Ok(reply) => self.respond(wall, request_id, reply),
            Err(status) => Ok(self.respond_error(wall, request_id, &status)),
        };
        if let Some(frame) = frame {
            self.recycle(frame.into_body());
        }
        answered
    }
}
