//! The stream of membership events a node hands to each reader.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cohort_core::members::ClusterEvent;
use futures_core::Stream;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::node::Shared;

/// The membership events of a node, as a [`Stream`] of [`ClusterEvent`]s
/// ([`Node::membership_events`](crate::Node::membership_events)).
///
/// Each reader has its own bounded queue
/// ([`NodeBuilder::event_capacity`](crate::NodeBuilder::event_capacity)). A reader that falls
/// further behind loses the oldest events and is told so: it receives
/// [`ClusterEvent::Lagged`] with the number lost and the current snapshot, from which it
/// rebuilds its view. A departure is therefore never lost silently. The stream ends when the
/// node shuts down.
pub struct MembershipEvents {
    inner: BroadcastStream<ClusterEvent>,
    shared: Arc<Shared>,
}

impl MembershipEvents {
    pub(crate) fn new(
        receiver: tokio::sync::broadcast::Receiver<ClusterEvent>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            inner: BroadcastStream::new(receiver),
            shared,
        }
    }
}

impl std::fmt::Debug for MembershipEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipEvents").finish_non_exhaustive()
    }
}

impl Stream for MembershipEvents {
    type Item = ClusterEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClusterEvent>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(event))) => Poll::Ready(Some(event)),
            Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(missed)))) => {
                Poll::Ready(Some(ClusterEvent::Lagged {
                    missed,
                    members: self.shared.members(),
                }))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
