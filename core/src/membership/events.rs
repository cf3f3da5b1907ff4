//! The machines' bounded queue of events for their reader.
//!
//! Owns [`EventQueue`]: past its bound the oldest event is dropped and counted, and the reader
//! is told with an [`Event::Lagged`] carrying the membership (which the machine builds), before
//! anything else. Shared by
//! both membership machines (chitchat mode and cohort mode).

use std::collections::VecDeque;

use crate::Event;

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    events: VecDeque<Event>,
    missed: u64,
}

impl EventQueue {
    /// Queues `event`, dropping (and counting) the oldest when `limit` already wait.
    pub(crate) fn push(&mut self, event: Event, limit: usize) {
        if self.events.len() >= limit.max(1) {
            self.events.pop_front();
            self.missed += 1;
        }
        self.events.push_back(event);
    }

    /// How many events were dropped since the last call, if any: the reader gets an
    /// [`Event::Lagged`] before the next event.
    pub(crate) fn take_missed(&mut self) -> Option<u64> {
        (self.missed > 0).then(|| std::mem::take(&mut self.missed))
    }

    /// The next event.
    pub(crate) fn pop(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }
}
