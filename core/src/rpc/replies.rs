//! The caller's side of a connection: our calls waiting for their replies, each awaited by
//! its caller's task, without a runtime and without an allocation per call once warm.
//!
//! Owns [`Replies`] and [`Response`]. A driver registers each call it makes on a
//! [`Connection`](super::Connection) ([`Replies::insert`]), hands the connection's
//! [`Response`](super::ConnectionEvent::Response) and [`Failed`](super::ConnectionEvent::Failed)
//! events to [`Replies::complete`], and the caller's future polls [`Replies::poll_reply`];
//! a caller that gives up [`remove`](Replies::remove)s its call and cancels it on the
//! connection.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::task::{Context, Poll, Waker};

use super::connection::CallId;
use super::frame::Frame;
use super::service::Message;
use super::status::{Status, StatusCode};

enum Waiting {
    /// No reply yet; the caller's task, once it polled.
    Pending(Option<Waker>),
    /// The reply or the failure, for the caller to take.
    Done(Result<Frame, Status>),
}

/// Our calls on one connection waiting for their replies. See the module documentation.
///
/// ```
/// use std::task::{Context, Poll, Waker};
/// use cohort_core::rpc::{CallId, Replies, Status, StatusCode};
///
/// let mut replies = Replies::new();
/// replies.insert(CallId(1));
/// let mut cx = Context::from_waker(Waker::noop());
/// assert!(replies.poll_reply(CallId(1), &mut cx).is_pending());
/// // The connection reported the call failed (or answered it).
/// replies.complete(CallId(1), Err(Status::new(StatusCode::Internal, "boom")));
/// let Poll::Ready(Err(status)) = replies.poll_reply(CallId(1), &mut cx) else { panic!() };
/// assert_eq!(status.message, "boom");
/// assert!(replies.is_empty());
/// ```
#[derive(Default)]
pub struct Replies {
    waiting: HashMap<CallId, Waiting>,
}

impl fmt::Debug for Replies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replies")
            .field("waiting", &self.waiting.len())
            .finish()
    }
}

impl Replies {
    /// No call waiting.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The calls waiting (answered ones not yet taken included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether no call is waiting.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Registers `call`, just made on the connection.
    pub fn insert(&mut self, call: CallId) {
        self.waiting.insert(call, Waiting::Pending(None));
    }

    /// The outcome of `call` once known (it is then forgotten), or `Pending` with the task in
    /// `cx` to be woken when it is. A call not registered (or already taken) gets
    /// [`StatusCode::Unavailable`].
    pub fn poll_reply(
        &mut self,
        call: CallId,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Frame, Status>> {
        match self.waiting.get_mut(&call) {
            None => Poll::Ready(Err(Status::new(
                StatusCode::Unavailable,
                "the connection closed",
            ))),
            Some(Waiting::Pending(waker)) => {
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Some(Waiting::Done(_)) => match self.waiting.remove(&call) {
                Some(Waiting::Done(outcome)) => Poll::Ready(outcome),
                _ => unreachable!("matched as done just above"),
            },
        }
    }

    /// Records the outcome of `call` (from the connection's events) and wakes its caller.
    /// Returns whether the call was waiting (a caller that gave up is not).
    pub fn complete(&mut self, call: CallId, outcome: Result<Frame, Status>) -> bool {
        match self.waiting.get_mut(&call) {
            Some(entry @ Waiting::Pending(_)) => {
                if let Waiting::Pending(Some(waker)) =
                    std::mem::replace(entry, Waiting::Done(outcome))
                {
                    waker.wake();
                }
                true
            }
            _ => false,
        }
    }

    /// Forgets `call` (its caller gave up). Returns whether it was still waiting for its
    /// outcome: then cancel it on the connection too.
    pub fn remove(&mut self, call: CallId) -> bool {
        matches!(self.waiting.remove(&call), Some(Waiting::Pending(_)))
    }

    /// Fails every waiting call with `status` (the connection closed) and wakes its caller.
    pub fn fail_all(&mut self, status: &Status) {
        for entry in self.waiting.values_mut() {
            if let Waiting::Pending(waker) = entry {
                let waker = waker.take();
                *entry = Waiting::Done(Err(status.clone()));
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
        }
    }
}

/// A reply: its archive, validated when it arrived, read in place with [`get`](Self::get).
pub struct Response<R: Message> {
    frame: Frame,
    _reply: PhantomData<fn() -> R>,
}

impl<R: Message> Response<R> {
    /// Validates `frame`'s body as an archived `R` (bytecheck).
    ///
    /// # Errors
    ///
    /// [`StatusCode::InvalidPayload`] when it is not one.
    pub fn new(frame: Frame) -> Result<Self, Status> {
        frame
            .access::<R::Archived>()
            .map_err(|e| Status::new(StatusCode::InvalidPayload, e.to_string()))?;
        Ok(Self {
            frame,
            _reply: PhantomData,
        })
    }

    /// The archived reply, read in place (no copy; the check it passes again is a walk over
    /// its pointers).
    ///
    /// # Panics
    ///
    /// Never: the archive was validated when the reply arrived and is not changed since.
    #[must_use]
    pub fn get(&self) -> &R::Archived {
        match self.frame.access::<R::Archived>() {
            Ok(archived) => archived,
            Err(error) => unreachable!("validated on arrival: {error}"),
        }
    }

    /// The reply, deserialized into an owned value.
    ///
    /// # Errors
    ///
    /// [`StatusCode::InvalidPayload`] when it does not deserialize.
    pub fn deserialize(&self) -> Result<R, Status>
    where
        R::Archived: rkyv::Deserialize<R, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        rkyv::deserialize::<R, rkyv::rancor::Error>(self.get())
            .map_err(|e| Status::new(StatusCode::InvalidPayload, e.to_string()))
    }

    /// The frame the reply came in (its header: the callee's timestamp, ...).
    #[must_use]
    pub fn frame(&self) -> &Frame {
        &self.frame
    }
}

impl<R: Message> fmt::Debug for Response<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("bytes", &self.frame.body().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn failed(message: &str) -> Result<Frame, Status> {
        Err(Status::new(StatusCode::Internal, message))
    }

    #[test]
    fn a_caller_is_woken_once_its_outcome_is_known_and_takes_it_once() {
        let count = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut replies = Replies::new();
        replies.insert(CallId(1));
        replies.insert(CallId(2));
        assert!(replies.poll_reply(CallId(1), &mut cx).is_pending());
        assert!(replies.complete(CallId(1), failed("one")));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(
            !replies.complete(CallId(1), failed("again")),
            "answered once"
        );
        match replies.poll_reply(CallId(1), &mut cx) {
            Poll::Ready(Err(status)) => assert_eq!(status.message, "one"),
            other => panic!("{other:?}"),
        }
        // Taken: asked again, it is unknown.
        match replies.poll_reply(CallId(1), &mut cx) {
            Poll::Ready(Err(status)) => assert_eq!(status.code, StatusCode::Unavailable),
            other => panic!("{other:?}"),
        }
        assert_eq!(replies.len(), 1);
    }

    #[test]
    fn a_caller_that_gave_up_gets_nothing_and_closing_fails_the_rest() {
        let count = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut replies = Replies::new();
        for id in 1..=3 {
            replies.insert(CallId(id));
            assert!(replies.poll_reply(CallId(id), &mut cx).is_pending());
        }
        assert!(replies.remove(CallId(1)), "still waiting: cancel it");
        assert!(!replies.remove(CallId(1)));
        assert!(!replies.complete(CallId(1), failed("late")));
        replies.fail_all(&Status::new(StatusCode::Unavailable, "closed"));
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        for id in 2..=3 {
            match replies.poll_reply(CallId(id), &mut cx) {
                Poll::Ready(Err(status)) => assert_eq!(status.message, "closed"),
                other => panic!("{other:?}"),
            }
        }
        assert!(replies.is_empty());
    }
}
