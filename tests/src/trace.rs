//! The event trace of a run: what each node reported, and what the script did, in order.
//!
//! Owns [`TraceEntry`], [`TraceKind`] and the running trace hash. Two runs with the same seed
//! and script produce the same trace, entry for entry; the hash lets large runs compare traces
//! without keeping them.

use std::net::SocketAddr;
use std::time::Duration;

use cohort_core::{Event, LeaveOutcome, NodeId};

/// One entry of the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    /// Virtual time since the start of the run.
    pub at: Duration,
    /// The slot of the node that reported it (or that the script acted on).
    pub node: usize,
    /// What happened.
    pub kind: TraceKind,
}

/// What a trace entry records: an event a node reported (the core's own [`Event`], as the
/// application would get it), or a script action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceKind {
    /// The node reported this event.
    Event(Event),
    /// The node's leave ended ([`cohort_core::Drained::left`]).
    LeaveEnded(LeaveOutcome),
    /// Script: a node (generation) started in the slot.
    Started(NodeId),
    /// Script: the node crashed (it stops at once, without a word).
    Crashed(NodeId),
    /// Script: the node stopped (after a graceful leave, or as part of a restart).
    Stopped(NodeId),
    /// Script: the node was told to leave.
    LeaveStarted(NodeId),
    /// Script: the node is paused (it handles nothing) for this long.
    Paused(Duration),
    /// Script: the node handles every input late by this much.
    Slowed(Duration),
}

impl TraceKind {
    /// The event, when the entry is one a node reported.
    #[must_use]
    pub fn event(&self) -> Option<&Event> {
        match self {
            Self::Event(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the entry is a `Joined` event about `id`.
    #[must_use]
    pub fn is_joined(&self, id: &NodeId) -> bool {
        matches!(self, Self::Event(Event::Joined(m)) if m.id == *id)
    }

    /// Whether the entry is a `Failed` event (about anyone).
    #[must_use]
    pub fn is_failed(&self) -> bool {
        matches!(self, Self::Event(Event::Failed(_)))
    }
}

/// A 64-bit FNV-1a accumulator over the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TraceHash(u64);

impl TraceHash {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub(crate) fn new() -> Self {
        Self(Self::OFFSET)
    }

    pub(crate) fn value(self) -> u64 {
        self.0
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn u64(&mut self, x: u64) {
        self.bytes(&x.to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.bytes(s.as_bytes());
    }

    fn addr(&mut self, addr: SocketAddr) {
        match addr {
            SocketAddr::V4(a) => {
                self.bytes(&[4]);
                self.bytes(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                self.bytes(&[6]);
                self.bytes(&a.ip().octets());
            }
        }
        self.bytes(&addr.port().to_le_bytes());
    }

    fn id(&mut self, id: &NodeId) {
        self.str(id.name());
        self.u64(id.generation());
        self.addr(id.gossip_addr());
    }

    /// Folds one entry into the hash.
    pub(crate) fn add(&mut self, entry: &TraceEntry) {
        self.u64(u64::try_from(entry.at.as_nanos()).unwrap_or(u64::MAX));
        self.u64(entry.node as u64);
        match &entry.kind {
            TraceKind::Event(event) => self.event(event),
            TraceKind::LeaveEnded(outcome) => self.bytes(&[11, *outcome as u8]),
            TraceKind::Started(id) => self.tagged_id(13, id),
            TraceKind::Crashed(id) => self.tagged_id(14, id),
            TraceKind::Stopped(id) => self.tagged_id(15, id),
            TraceKind::LeaveStarted(id) => self.tagged_id(16, id),
            TraceKind::Paused(d) => {
                self.bytes(&[17]);
                self.u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            }
            TraceKind::Slowed(d) => {
                self.bytes(&[18]);
                self.u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            }
        }
    }

    /// Folds an event in: its kind and the identities and values it names (a member stands
    /// for its identity; a lag for its count).
    fn event(&mut self, event: &Event) {
        match event {
            Event::Joined(m) => self.tagged_id(1, &m.id),
            Event::Recovered(m) => self.tagged_id(2, &m.id),
            Event::Unready(m) => self.tagged_id(3, &m.id),
            Event::Failed(m) => self.tagged_id(4, &m.id),
            Event::Left(m) => self.tagged_id(5, &m.id),
            Event::Removed(id) => self.tagged_id(6, id),
            Event::KeyChanged {
                member,
                key,
                old,
                value,
            } => {
                self.tagged_id(7, &member.id);
                self.str(key);
                for v in [old, value] {
                    match v {
                        Some(v) => {
                            self.bytes(&[1]);
                            self.str(v);
                        }
                        None => self.bytes(&[0]),
                    }
                }
            }
            Event::Reset(m) => self.tagged_id(20, &m.id),
            Event::Lagged { missed, .. } => {
                self.bytes(&[8]);
                self.u64(*missed);
            }
            Event::BadCluster { from, .. } => {
                self.bytes(&[9]);
                self.addr(*from);
            }
            Event::SelfSuspected => self.bytes(&[10]),
            Event::ClockSkew { from, .. } => {
                self.bytes(&[12]);
                self.addr(*from);
            }
            _ => self.bytes(&[19]),
        }
    }

    fn tagged_id(&mut self, tag: u8, id: &NodeId) {
        self.bytes(&[tag]);
        self.id(id);
    }
}
