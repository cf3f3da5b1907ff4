//! The wakers of readers waiting for a publication (private to this module's cells).

use std::task::Waker;

/// Readers waiting for the next publication, by reader id; at most one waker per reader.
///
/// Waking happens outside the lock that guards this list: [`take`](Self::take) swaps the list
/// for a spare one (no allocation once both have grown), the caller wakes them after
/// unlocking and gives the list back with [`restore`](Self::restore).
#[derive(Debug, Default)]
pub(super) struct Wakers {
    waiting: Vec<(u64, Waker)>,
    spare: Vec<(u64, Waker)>,
    next_id: u64,
}

impl Wakers {
    /// A new reader id.
    pub(super) fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Registers (or refreshes) the waker of reader `id`.
    pub(super) fn register(&mut self, id: u64, waker: &Waker) {
        match self.waiting.iter_mut().find(|(i, _)| *i == id) {
            Some((_, w)) => w.clone_from(waker),
            None => self.waiting.push((id, waker.clone())),
        }
    }

    /// Forgets reader `id` (it was dropped).
    pub(super) fn remove(&mut self, id: u64) {
        if let Some(at) = self.waiting.iter().position(|(i, _)| *i == id) {
            self.waiting.swap_remove(at);
        }
    }

    /// Every waiting reader's waker, to wake once the lock is released; `None` when nobody
    /// waits.
    pub(super) fn take(&mut self) -> Option<Vec<(u64, Waker)>> {
        if self.waiting.is_empty() {
            return None;
        }
        Some(std::mem::replace(
            &mut self.waiting,
            std::mem::take(&mut self.spare),
        ))
    }

    /// Gives back a list returned by [`take`](Self::take), emptied, for reuse.
    pub(super) fn restore(&mut self, list: Vec<(u64, Waker)>) {
        debug_assert!(list.is_empty());
        if list.capacity() > self.spare.capacity() {
            self.spare = list;
        }
    }
}

/// Wakes every waker of `list` and empties it.
pub(super) fn wake_all(list: &mut Vec<(u64, Waker)>) {
    for (_, waker) in list.drain(..) {
        waker.wake();
    }
}

#[cfg(test)]
impl Wakers {
    /// How many readers are registered.
    pub(super) fn waiting(&self) -> usize {
        self.waiting.len()
    }
}
