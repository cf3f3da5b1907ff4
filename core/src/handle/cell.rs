//! The latest membership snapshot of a running node, and the readers that wait for a newer one.
//!
//! Owns [`MembersCell`], [`MembershipChanges`] and the predicate loop of a driver's
//! `wait_for_members` ([`MembersCell::wait_for_members`], with [`WaitError`]). It keeps one
//! snapshot (a reader never holds the publisher back) and never reads a clock: a timeout is a
//! timer future the caller passes in.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_core::Stream;

use super::lock;
use super::wakers::{Wakers, wake_all};
use crate::Members;

/// The latest [`Members`] snapshot of a node, shared by the node's task (which
/// [`publish`](Self::publish)es) and its handles (which read it, or wait for a newer one).
///
/// Cheap to clone; clones are the same cell. Once [`close`](Self::close)d (the node is done),
/// waiting readers are told so; the last snapshot stays readable.
///
/// ```
/// use cohort_core::handle::MembersCell;
/// use cohort_core::{Node, NodeConfig, NodeId};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut node = Node::new(NodeConfig::new(NodeId::new("a", 1, "127.0.0.1:7000".parse()?)), std::time::Instant::now())?;
/// let cell = MembersCell::new(node.members());
/// let mut changes = cell.changes();
/// assert!(changes.try_next().is_some(), "the current snapshot first");
/// assert!(changes.try_next().is_none(), "nothing newer yet");
/// node.set(std::time::Instant::now(), "role", "worker")?;
/// assert!(cell.publish_from(&node));
/// assert_eq!(changes.try_next().and_then(|m| m.local_member().and_then(|l| l.get("role").map(str::to_owned))), Some("worker".to_owned()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MembersCell {
    shared: Arc<Mutex<State>>,
}

struct State {
    members: Members,
    /// Grows with each publication.
    seq: u64,
    closed: bool,
    wakers: Wakers,
}

impl std::fmt::Debug for MembersCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.shared);
        f.debug_struct("MembersCell")
            .field("version", &state.members.version())
            .field("closed", &state.closed)
            .finish_non_exhaustive()
    }
}

/// Why [`MembersCell::wait_for_members`] (a driver's `Node::wait_for_members`) returned
/// without the condition holding.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The timeout passed; `last` is the membership at that moment.
    #[error("the membership did not reach the expected state in time ({} live of {} known)", last.live_count(), last.all().len())]
    Timeout {
        /// The last snapshot seen.
        last: Members,
    },
    /// The node shut down while waiting.
    #[error("the node shut down")]
    ShutDown,
}

impl MembersCell {
    /// A cell holding `first`.
    #[must_use]
    pub fn new(first: Members) -> Self {
        Self {
            shared: Arc::new(Mutex::new(State {
                members: first,
                seq: 0,
                closed: false,
                wakers: Wakers::default(),
            })),
        }
    }

    /// The latest snapshot.
    #[must_use]
    pub fn get(&self) -> Members {
        lock(&self.shared).members.clone()
    }

    /// The version of the latest snapshot.
    #[must_use]
    pub fn version(&self) -> u64 {
        lock(&self.shared).members.version()
    }

    /// Replaces the snapshot with `members` and wakes the readers waiting for a newer one.
    pub fn publish(&self, members: Members) {
        let mut state = lock(&self.shared);
        state.members = members;
        state.seq += 1;
        self.wake(state);
    }

    /// Publishes `node`'s membership if its version differs from the snapshot's (the node
    /// changed since); returns whether it did. Cheap when nothing changed: no snapshot is
    /// made.
    pub fn publish_from(&self, node: &crate::Node) -> bool {
        if node.members_version() == self.version() {
            return false;
        }
        self.publish(node.members());
        true
    }

    /// Marks the node done: [`MembershipChanges`] end once they have the latest snapshot, and
    /// waits end with [`WaitError::ShutDown`]. The last snapshot stays readable.
    pub fn close(&self) {
        let mut state = lock(&self.shared);
        state.closed = true;
        self.wake(state);
    }

    /// Whether [`close`](Self::close) was called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        lock(&self.shared).closed
    }

    /// Snapshots as they change: the current one first, then each newer one (a slow reader
    /// skips to the latest).
    #[must_use]
    pub fn changes(&self) -> MembershipChanges {
        MembershipChanges {
            waiter: Waiter::new(self.clone()),
            seen: None,
            ended: false,
        }
    }

    /// Waits until the cell is [`close`](Self::close)d.
    pub async fn closed(&self) {
        let mut waiter = Waiter::new(self.clone());
        poll_fn(|cx| {
            let mut state = lock(&self.shared);
            if state.closed {
                return Poll::Ready(());
            }
            state.wakers.register(waiter.id, cx.waker());
            Poll::Pending
        })
        .await;
        waiter.done();
    }

    /// Waits until `predicate` holds for the snapshot, and returns that snapshot: the
    /// predicate loop of a driver's `Node::wait_for_members`. `timer` is the driver's timer
    /// for the timeout (for example `tokio::time::sleep(timeout)` or
    /// `smol::Timer::after(timeout)`); it is polled after the snapshot, so a condition that
    /// already holds wins over an expired timer.
    ///
    /// # Errors
    ///
    /// [`WaitError::Timeout`] (with the snapshot at that moment) when `timer` completes first,
    /// [`WaitError::ShutDown`] when the cell is closed first.
    pub async fn wait_for_members<T: Future>(
        &self,
        mut predicate: impl FnMut(&Members) -> bool,
        timer: T,
    ) -> Result<Members, WaitError> {
        let mut timer = pin!(timer);
        let mut waiter = Waiter::new(self.clone());
        let mut seen = None;
        let result = poll_fn(|cx| {
            loop {
                let mut state = lock(&self.shared);
                if seen != Some(state.seq) {
                    seen = Some(state.seq);
                    let members = state.members.clone();
                    drop(state);
                    if predicate(&members) {
                        return Poll::Ready(Ok(members));
                    }
                    // Look again: a newer snapshot may have come while the predicate ran.
                    continue;
                }
                if state.closed {
                    return Poll::Ready(Err(WaitError::ShutDown));
                }
                state.wakers.register(waiter.id, cx.waker());
                break;
            }
            match timer.as_mut().poll(cx) {
                Poll::Ready(_) => Poll::Ready(Err(WaitError::Timeout { last: self.get() })),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        waiter.done();
        result
    }

    fn wake(&self, mut state: std::sync::MutexGuard<'_, State>) {
        let Some(mut waiting) = state.wakers.take() else {
            return;
        };
        drop(state);
        wake_all(&mut waiting);
        lock(&self.shared).wakers.restore(waiting);
    }
}

#[cfg(test)]
impl MembersCell {
    /// How many readers wait to be woken.
    pub(super) fn waiting(&self) -> usize {
        lock(&self.shared).wakers.waiting()
    }
}

/// A reader of the cell, with an id its waker is registered under; unregisters when dropped.
struct Waiter {
    cell: MembersCell,
    id: u64,
}

impl Waiter {
    fn new(cell: MembersCell) -> Self {
        let id = lock(&cell.shared).wakers.new_id();
        Self { cell, id }
    }

    fn done(&mut self) {
        lock(&self.cell.shared).wakers.remove(self.id);
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.done();
    }
}

/// Member snapshots as they change (a driver's `Node::membership_changes`): the current one
/// first, then each newer one. A slow reader skips intermediate snapshots and always gets the
/// latest (datacake's `membership_changes()` watch). Ends once the node has shut down (after
/// the last snapshot, which shows the local node as left).
pub struct MembershipChanges {
    waiter: Waiter,
    /// The publication last yielded.
    seen: Option<u64>,
    ended: bool,
}

impl std::fmt::Debug for MembershipChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipChanges")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl MembershipChanges {
    /// The next snapshot (the current one at the first call), or `None` once the node has
    /// shut down.
    pub async fn next(&mut self) -> Option<Members> {
        poll_fn(|cx| self.poll_snapshot(Some(cx))).await
    }

    /// A newer snapshot than the last one returned if there is one, without waiting: `None`
    /// when there is none yet or the stream has ended
    /// ([`is_terminated`](Self::is_terminated) tells which).
    pub fn try_next(&mut self) -> Option<Members> {
        match self.poll_snapshot(None) {
            Poll::Ready(members) => members,
            Poll::Pending => None,
        }
    }

    /// Whether the stream has ended (the node shut down).
    #[must_use]
    pub fn is_terminated(&self) -> bool {
        self.ended
    }

    fn poll_snapshot(&mut self, cx: Option<&mut Context<'_>>) -> Poll<Option<Members>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let mut state = lock(&self.waiter.cell.shared);
        if self.seen != Some(state.seq) {
            self.seen = Some(state.seq);
            return Poll::Ready(Some(state.members.clone()));
        }
        if state.closed {
            state.wakers.remove(self.waiter.id);
            self.ended = true;
            return Poll::Ready(None);
        }
        if let Some(cx) = cx {
            state.wakers.register(self.waiter.id, cx.waker());
        }
        Poll::Pending
    }
}

impl Stream for MembershipChanges {
    type Item = Members;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Members>> {
        self.poll_snapshot(Some(cx))
    }
}
