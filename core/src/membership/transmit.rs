//! Outgoing datagrams and the buffers they live in.
//!
//! Owns [`Transmit`] and [`Transmits`] (what a driver receives) and the machine's bounded
//! queue of datagrams with its pool of spare buffers. Buffers circulate between the machine
//! and the caller by swapping, so that a node in steady state allocates no buffer per
//! datagram. It never sends anything.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The datagram's bytes.
    pub payload: Vec<u8>,
}

/// A batch of datagrams to send, filled by [`Node::drain`](crate::Node::drain), and reusable:
/// [`clear`](Self::clear) forgets the datagrams but keeps their buffers, which the next drain
/// hands back to the node in exchange for new datagrams. A driver that keeps one `Transmits`
/// for its loop allocates no buffer per datagram once warm.
///
/// ```
/// use cohort_core::Transmits;
///
/// let mut out = Transmits::new();
/// assert!(out.is_empty());
/// for transmit in &out {
///     // socket.send_to(&transmit.payload, transmit.destination)
///     let _ = transmit;
/// }
/// out.clear();
/// ```
#[derive(Debug, Default)]
pub struct Transmits {
    items: Vec<Transmit>,
    len: usize,
}

impl Transmits {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many datagrams the batch holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no datagram.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The datagrams, in the order they must be sent.
    pub fn iter(&self) -> std::slice::Iter<'_, Transmit> {
        self.items[..self.len].iter()
    }

    /// The datagrams, mutably (a caller that needs to own a payload swaps it out for a buffer
    /// of its own, which then circulates in its place).
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Transmit> {
        self.items[..self.len].iter_mut()
    }

    /// Forgets the datagrams, keeping their buffers for the next batch (at most
    /// 64 of them, none larger than 128 KiB: a rare burst does not pin its memory).
    pub fn clear(&mut self) {
        self.len = 0;
        self.items.truncate(MAX_SPARE_BUFFERS);
        for item in &mut self.items {
            if item.payload.capacity() > MAX_SPARE_CAPACITY {
                item.payload = Vec::new();
            }
        }
    }

    /// Fills the next slot with `fill` (which writes a datagram into the buffer it is given and
    /// returns its destination, or `None` when there is none). Returns whether a datagram was
    /// added.
    pub(crate) fn push_with(
        &mut self,
        fill: impl FnOnce(&mut Vec<u8>) -> Option<SocketAddr>,
    ) -> bool {
        if self.len == self.items.len() {
            self.items.push(Transmit {
                destination: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                payload: Vec::new(),
            });
        }
        let slot = &mut self.items[self.len];
        match fill(&mut slot.payload) {
            Some(destination) => {
                slot.destination = destination;
                self.len += 1;
                true
            }
            None => false,
        }
    }
}

impl<'a> IntoIterator for &'a Transmits {
    type Item = &'a Transmit;
    type IntoIter = std::slice::Iter<'a, Transmit>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Spare buffers kept for reuse at most.
const MAX_SPARE_BUFFERS: usize = 64;

/// A spare buffer larger than this is dropped rather than kept (a rare huge datagram does not
/// pin its memory).
const MAX_SPARE_CAPACITY: usize = 1 << 17;

/// The machine's queue of datagrams waiting for the driver, bounded, with a pool of buffers.
#[derive(Debug, Default)]
pub(crate) struct TransmitQueue {
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    spare: Vec<Vec<u8>>,
    dropped: u64,
}

impl TransmitQueue {
    /// An empty buffer (from the pool when it has one) with `headroom` zero bytes at the front
    /// and room for `capacity` more.
    pub(crate) fn buffer(&mut self, headroom: usize, capacity: usize) -> Vec<u8> {
        let mut out = self.spare.pop().unwrap_or_default();
        out.clear();
        out.reserve(headroom + capacity);
        out.resize(headroom, 0);
        out
    }

    /// Queues `payload` for `destination`, unless `limit` datagrams already wait (then it is
    /// dropped and counted).
    pub(crate) fn push(&mut self, destination: SocketAddr, payload: Vec<u8>, limit: usize) {
        if self.queue.len() >= limit.max(1) {
            self.dropped += 1;
            self.recycle(payload);
            return;
        }
        self.queue.push_back((destination, payload));
    }

    /// Moves the next datagram into `out` (whose old buffer joins the pool).
    pub(crate) fn pop_into(&mut self, out: &mut Vec<u8>) -> Option<SocketAddr> {
        let (destination, mut payload) = self.queue.pop_front()?;
        std::mem::swap(out, &mut payload);
        self.recycle(payload);
        Some(destination)
    }

    fn recycle(&mut self, buffer: Vec<u8>) {
        if self.spare.len() < MAX_SPARE_BUFFERS
            && buffer.capacity() > 0
            && buffer.capacity() <= MAX_SPARE_CAPACITY
        {
            self.spare.push(buffer);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_circulate_between_the_queue_and_the_batch() {
        let to = SocketAddr::from(([127, 0, 0, 1], 9));
        let mut queue = TransmitQueue::default();
        let mut batch = Transmits::new();
        for round in 0..3u8 {
            for i in 0..4u8 {
                let mut b = queue.buffer(2, 8);
                b.extend_from_slice(&[round, i]);
                queue.push(to, b, 16);
            }
            while batch.push_with(|buf| queue.pop_into(buf)) {}
            assert_eq!(batch.len(), 4);
            let payloads: Vec<&[u8]> = batch.iter().map(|t| t.payload.as_slice()).collect();
            assert_eq!(payloads[3], &[0, 0, round, 3]);
            batch.clear();
        }
        // From the second round on, every buffer came from the pool or the batch: the four the
        // batch gave back wait in the pool, and no other was made.
        assert_eq!(queue.spare.len(), 4);
    }

    #[test]
    fn a_cleared_batch_keeps_a_bounded_number_of_bounded_buffers() {
        let mut batch = Transmits::new();
        let to = SocketAddr::from(([127, 0, 0, 1], 9));
        for i in 0..100 {
            let size = if i == 0 { MAX_SPARE_CAPACITY + 1 } else { 16 };
            assert!(batch.push_with(|buf| {
                buf.resize(size, 0);
                Some(to)
            }));
        }
        batch.clear();
        assert!(batch.is_empty());
        assert_eq!(batch.items.len(), MAX_SPARE_BUFFERS);
        assert_eq!(
            batch.items[0].payload.capacity(),
            0,
            "the huge one was dropped"
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let to = SocketAddr::from(([127, 0, 0, 1], 9));
        let mut queue = TransmitQueue::default();
        for _ in 0..3 {
            let b = queue.buffer(0, 1);
            queue.push(to, b, 2);
        }
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.dropped(), 1);
    }
}
