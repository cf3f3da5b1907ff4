//! The streams a node hands to its readers: membership events, and member snapshots.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cohort_core::{Event, Members};
use futures_core::Stream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};

use crate::node::Shared;

/// The membership events of a node ([`Node::membership_events`](crate::Node::membership_events)).
///
/// Read it with its own [`next`](Self::next) (no import needed), or as a [`Stream`] of
/// [`Event`]s with the combinators of [`StreamExt`](crate::StreamExt), which this crate
/// re-exports.
///
/// Each reader has its own bounded queue
/// ([`NodeBuilder::event_capacity`](crate::NodeBuilder::event_capacity)). A reader that falls
/// further behind loses the oldest events and is told so: it receives [`Event::Lagged`] with
/// the number lost and the current snapshot, from which it rebuilds its view. A departure is
/// therefore never lost silently. The stream ends when the node shuts down.
pub struct MembershipEvents {
    inner: BroadcastStream<Event>,
    shared: Arc<Shared>,
}

impl MembershipEvents {
    pub(crate) fn new(
        receiver: tokio::sync::broadcast::Receiver<Event>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            inner: BroadcastStream::new(receiver),
            shared,
        }
    }

    /// The next event, or `None` once the node has shut down.
    pub async fn next(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl std::fmt::Debug for MembershipEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipEvents").finish_non_exhaustive()
    }
}

impl Stream for MembershipEvents {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(event))) => Poll::Ready(Some(event)),
            Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(missed)))) => {
                Poll::Ready(Some(Event::Lagged {
                    missed,
                    members: self.shared.members(),
                }))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Member snapshots as they change ([`Node::membership_changes`](crate::Node::membership_changes)):
/// the current one first, then each newer one. A slow reader skips intermediate snapshots and
/// always gets the latest (datacake's `membership_changes()` watch). Ends once the node has
/// shut down (after the last snapshot, which shows the local node as left).
pub struct MembershipChanges {
    inner: WatchStream<Members>,
    done: WatchStream<bool>,
}

impl MembershipChanges {
    pub(crate) fn new(
        receiver: tokio::sync::watch::Receiver<Members>,
        done: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            inner: WatchStream::new(receiver),
            done: WatchStream::new(done),
        }
    }

    /// The next snapshot (the current one at the first call), or `None` once the node has
    /// shut down.
    pub async fn next(&mut self) -> Option<Members> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl std::fmt::Debug for MembershipChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipChanges").finish_non_exhaustive()
    }
}

impl Stream for MembershipChanges {
    type Item = Members;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Members>> {
        if let Poll::Ready(next) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(next);
        }
        loop {
            match Pin::new(&mut self.done).poll_next(cx) {
                Poll::Ready(Some(false)) => {}
                Poll::Ready(Some(true) | None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Key changes under a prefix, on every member, the local node included
/// ([`Node::key_changes`](crate::Node::key_changes)): chitchat's key listeners as a stream.
///
/// Yields [`Event::KeyChanged`] (with the member, the full key, and the old and new values)
/// for keys starting with the prefix, and [`Event::Lagged`] when the reader fell behind (then
/// rebuild from the snapshot it carries, with
/// [`Member::keys_with_prefix`](crate::Member::keys_with_prefix)). Ends when the node shuts
/// down.
pub struct KeyChanges {
    events: MembershipEvents,
    prefix: String,
}

impl KeyChanges {
    pub(crate) fn new(events: MembershipEvents, prefix: String) -> Self {
        Self { events, prefix }
    }

    /// The next change under the prefix (or lag), or `None` once the node has shut down.
    pub async fn next(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl std::fmt::Debug for KeyChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyChanges")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Stream for KeyChanges {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            match Pin::new(&mut self.events).poll_next(cx) {
                Poll::Ready(Some(event)) => {
                    let wanted = match &event {
                        Event::KeyChanged { key, .. } => key.starts_with(self.prefix.as_str()),
                        Event::Lagged { .. } => true,
                        _ => false,
                    };
                    if wanted {
                        return Poll::Ready(Some(event));
                    }
                }
                other => return other,
            }
        }
    }
}
