//! The fan-out of a node's events to its readers.
//!
//! Owns [`EventBus`] (the publishing side, held by the node's task) and its readers,
//! [`MembershipEvents`] and [`KeyChanges`]. It never blocks the publisher on a reader: each
//! reader has a bounded window and loses the oldest events when it falls behind, and is then
//! told so with [`Event::Lagged`] and the current snapshot.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_core::Stream;

use super::cell::MembersCell;
use super::lock;
use super::wakers::{Wakers, wake_all};
use crate::Event;

/// The publishing side of a node's events: the node's task [`publish`](Self::publish)es what
/// [`Node::drain`](crate::Node::drain) gave it, and every reader made by
/// [`subscribe`](Self::subscribe) receives it.
///
/// Each reader has its own bounded queue of `capacity` events: the bus keeps the last
/// `capacity` events once, and each reader reads them at its own position, so a reader's
/// delay never affects another reader or the publisher. A reader more than `capacity` events
/// behind loses the oldest ones and then receives [`Event::Lagged`] with the number it lost
/// and the membership now (from the [`MembersCell`] given at construction), from which it
/// rebuilds its view. Below that, no event is ever lost. Publishing clones nothing and
/// allocates nothing once the window is full; a reader clones each event it takes.
///
/// After [`close`](Self::close) (the node shut down), readers receive what is still in their
/// window, then their stream ends.
///
/// ```
/// use cohort_core::handle::{EventBus, MembersCell};
/// use cohort_core::{Event, Node, NodeConfig, NodeId};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let node = Node::new(NodeConfig::new(NodeId::new("a", 1, "127.0.0.1:7000".parse()?)), std::time::Instant::now())?;
/// let cell = MembersCell::new(node.members());
/// let bus = EventBus::new(2, cell.clone());
/// let mut reader = bus.subscribe();
/// bus.publish_all([Event::SelfSuspected, Event::SelfSuspected, Event::SelfSuspected]);
/// bus.close();
/// let received: Vec<Event> = std::iter::from_fn(|| reader.try_next()).collect();
/// assert!(matches!(received[0], Event::Lagged { missed: 1, .. }));
/// assert_eq!(received.len(), 3); // the lag, then the last two events
/// assert!(reader.is_terminated());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct EventBus {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    members: MembersCell,
}

struct State {
    /// The last `capacity` events, oldest first.
    window: VecDeque<Event>,
    capacity: usize,
    /// The sequence number the next event published gets (so the window holds
    /// `next_seq - window.len() .. next_seq`).
    next_seq: u64,
    closed: bool,
    wakers: Wakers,
}

impl State {
    fn first_seq(&self) -> u64 {
        self.next_seq - self.window.len() as u64
    }
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.shared.state);
        f.debug_struct("EventBus")
            .field("capacity", &state.capacity)
            .field("published", &state.next_seq)
            .field("closed", &state.closed)
            .finish_non_exhaustive()
    }
}

impl EventBus {
    /// A bus whose readers may fall `capacity` events behind (at least 1) before they lag;
    /// a lag reports the snapshot `members` holds then.
    #[must_use]
    pub fn new(capacity: usize, members: MembersCell) -> Self {
        let capacity = capacity.max(1);
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    window: VecDeque::new(),
                    capacity,
                    next_seq: 0,
                    closed: false,
                    wakers: Wakers::default(),
                }),
                members,
            }),
        }
    }

    /// How many events a reader may fall behind.
    #[must_use]
    pub fn capacity(&self) -> usize {
        lock(&self.shared.state).capacity
    }

    /// A new reader, which receives every event published from now on. After
    /// [`close`](Self::close), a reader whose stream ends at once.
    #[must_use]
    pub fn subscribe(&self) -> MembershipEvents {
        let mut state = lock(&self.shared.state);
        MembershipEvents {
            next: state.next_seq,
            id: state.wakers.new_id(),
            shared: Arc::clone(&self.shared),
            ended: false,
        }
    }

    /// Publishes one event to every reader.
    pub fn publish(&self, event: Event) {
        self.publish_all(std::iter::once(event));
    }

    /// Publishes `events`, in order, to every reader, and wakes the readers waiting once.
    /// Publishing to a closed bus does nothing.
    pub fn publish_all(&self, events: impl IntoIterator<Item = Event>) {
        let mut state = lock(&self.shared.state);
        if state.closed {
            return;
        }
        let before = state.next_seq;
        for event in events {
            if state.window.len() == state.capacity {
                state.window.pop_front();
            }
            state.window.push_back(event);
            state.next_seq += 1;
        }
        if state.next_seq == before {
            return;
        }
        self.wake(state);
    }

    /// Ends the readers' streams once they have read what their window still holds. Later
    /// publications are ignored, and later readers end at once.
    pub fn close(&self) {
        let mut state = lock(&self.shared.state);
        state.closed = true;
        self.wake(state);
    }

    /// Whether [`close`](Self::close) was called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.state).closed
    }

    fn wake(&self, mut state: std::sync::MutexGuard<'_, State>) {
        let Some(mut waiting) = state.wakers.take() else {
            return;
        };
        drop(state);
        wake_all(&mut waiting);
        lock(&self.shared.state).wakers.restore(waiting);
    }
}

#[cfg(test)]
impl EventBus {
    /// How many readers wait to be woken.
    pub(super) fn waiting(&self) -> usize {
        lock(&self.shared.state).wakers.waiting()
    }
}

/// The membership events of a node (a driver's `Node::membership_events`), from the moment it
/// was made.
///
/// Read it with its own [`next`](Self::next) (no import needed), or as a [`Stream`] of
/// [`Event`]s. Each reader has its own bounded queue (the driver's `event_capacity`, 1,024 by
/// default). A reader that falls further behind loses the oldest events and is told so: it
/// receives [`Event::Lagged`] with the number lost and the current snapshot, from which it
/// rebuilds its view. A departure is therefore never lost silently. The stream ends when the
/// node shuts down.
pub struct MembershipEvents {
    shared: Arc<Shared>,
    /// The sequence number of the next event this reader takes.
    next: u64,
    id: u64,
    ended: bool,
}

impl std::fmt::Debug for MembershipEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipEvents")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl MembershipEvents {
    /// The next event, or `None` once the node has shut down.
    pub async fn next(&mut self) -> Option<Event> {
        poll_fn(|cx| self.poll_event(Some(cx))).await
    }

    /// The next event if one is waiting, without waiting: `None` when there is none yet or
    /// the stream has ended ([`is_terminated`](Self::is_terminated) tells which).
    pub fn try_next(&mut self) -> Option<Event> {
        match self.poll_event(None) {
            Poll::Ready(event) => event,
            Poll::Pending => None,
        }
    }

    /// Whether the stream has ended (the node shut down and every event before was read).
    #[must_use]
    pub fn is_terminated(&self) -> bool {
        self.ended
    }

    /// Only the changes of keys starting with `prefix` (and lags) from now on.
    #[must_use]
    pub fn with_key_prefix(self, prefix: impl Into<String>) -> KeyChanges {
        KeyChanges::new(self, prefix)
    }

    /// Takes the next event; with `cx`, registers to be woken when there is none yet.
    fn poll_event(&mut self, cx: Option<&mut Context<'_>>) -> Poll<Option<Event>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let mut state = lock(&self.shared.state);
        let first = state.first_seq();
        if self.next < first {
            let missed = first - self.next;
            self.next = first;
            drop(state);
            return Poll::Ready(Some(Event::Lagged {
                missed,
                members: self.shared.members.get(),
            }));
        }
        if self.next < state.next_seq {
            // In the window: `next - first < window.len() <= capacity`, a `usize`.
            let at = usize::try_from(self.next - first).unwrap_or(usize::MAX);
            if let Some(event) = state.window.get(at) {
                let event = event.clone();
                self.next += 1;
                return Poll::Ready(Some(event));
            }
        }
        if state.closed {
            state.wakers.remove(self.id);
            self.ended = true;
            return Poll::Ready(None);
        }
        if let Some(cx) = cx {
            state.wakers.register(self.id, cx.waker());
        }
        Poll::Pending
    }
}

impl Drop for MembershipEvents {
    fn drop(&mut self) {
        lock(&self.shared.state).wakers.remove(self.id);
    }
}

impl Stream for MembershipEvents {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.poll_event(Some(cx))
    }
}

/// Key changes under a prefix, on every member, the local node included (a driver's
/// `Node::key_changes`): chitchat's key listeners as a stream.
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
    /// The key changes under `prefix` among `events`.
    #[must_use]
    pub fn new(events: MembershipEvents, prefix: impl Into<String>) -> Self {
        Self {
            events,
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The next change under the prefix (or lag), or `None` once the node has shut down.
    pub async fn next(&mut self) -> Option<Event> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    fn wanted(&self, event: &Event) -> bool {
        match event {
            Event::KeyChanged { key, .. } => key.starts_with(self.prefix.as_str()),
            Event::Lagged { .. } => true,
            _ => false,
        }
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
            match self.events.poll_event(Some(cx)) {
                Poll::Ready(Some(event)) => {
                    if self.wanted(&event) {
                        return Poll::Ready(Some(event));
                    }
                }
                other => return other,
            }
        }
    }
}
