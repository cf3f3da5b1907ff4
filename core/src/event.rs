//! What a node tells its application: one event type for every consumer.
//!
//! Owns [`Event`]. The membership machine, the node machine, the drivers and the simulator all
//! speak it: the core produces every variant; a driver only adds [`Event::Lagged`] for a reader
//! of its own that fell behind (with the snapshot the reader rebuilds from). It never does I/O.

use std::net::SocketAddr;

use crate::clock::{ClockError, Timestamp};
use crate::members::Members;
use crate::membership::Member;
use crate::node_id::NodeId;

/// Something the application should know about the cluster.
///
/// Events about one member come in the order they happened. A reader that falls behind is
/// never left with a silently wrong view: it receives [`Event::Lagged`] with the current
/// membership instead of the events it missed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A member became live for the first time (in this node's memory).
    Joined(Member),
    /// A member that had failed or was unready is live again.
    Recovered(Member),
    /// A live member's liveness predicate stopped holding.
    Unready(Member),
    /// The failure detector declared a member dead (it crashed, or is cut off from us).
    Failed(Member),
    /// A member announced a graceful departure.
    Left(Member),
    /// A member's state was garbage collected (dead for the whole grace period, or superseded
    /// by a newer generation of the same name).
    Removed(NodeId),
    /// A key of a member changed: set, deleted (`value` is `None`), or collected when its TTL
    /// ran out. Reported for every member, the local node included (its own commands), once
    /// per change of the visible value.
    KeyChanged {
        /// The member, with its state after the change.
        member: Member,
        /// The key.
        key: String,
        /// The visible value before (`None`: the key was absent or deleted).
        old: Option<String>,
        /// The visible value now (`None`: deleted).
        value: Option<String>,
    },
    /// This node's copy of a member's state was replaced by a full copy: it had missed a
    /// garbage collection of that member's deleted keys, so its copy could no longer be
    /// patched (chitchat's reset, which its catch-up callback reports). The key changes the
    /// reset made follow as [`Event::KeyChanged`].
    Reset(Member),
    /// A datagram carried a timestamp the clock refused (too far ahead of the local wall
    /// clock); the clock did not move. The datagram's gossip was still processed.
    ClockSkew {
        /// The sender's address.
        from: SocketAddr,
        /// The timestamp it carried.
        remote: Timestamp,
        /// Why the clock refused it.
        error: ClockError,
        /// How many more refused timestamps from this sender were held back (not reported)
        /// since its last `ClockSkew` (at most one a sender per
        /// [`NodeConfig::diagnostic_interval`](crate::NodeConfig::diagnostic_interval)).
        suppressed: u64,
    },
    /// A node of another cluster contacted us, or answered us. Reported at most once per
    /// sender in a diagnostic interval: a flood costs one event a second, not one a datagram.
    BadCluster {
        /// Its address.
        from: SocketAddr,
        /// How many more messages of another cluster from this sender were held back (not
        /// reported) since its last `BadCluster` (at most one a sender per
        /// [`NodeConfig::diagnostic_interval`](crate::NodeConfig::diagnostic_interval)).
        suppressed: u64,
    },
    /// A datagram was dropped because its authentication tag was missing or wrong (a node
    /// with a keyring: [`NodeConfig::keyring`](crate::NodeConfig::keyring)). Reported at most
    /// once per sender in a diagnostic interval.
    Unauthenticated {
        /// The sender's address (as the datagram says: it may be forged).
        from: SocketAddr,
        /// How many more from this sender were held back since its last report.
        suppressed: u64,
    },
    /// A peer sent state past a bound of [`StateLimits`](crate::membership::StateLimits)
    /// (members beyond the member bounds, or a member's delta beyond its size bounds): that
    /// part was not stored, the rest of the message was. Reported at most once per sender in a
    /// diagnostic interval.
    OverLimit {
        /// The sender's address.
        from: SocketAddr,
        /// The first bound broken since the last report.
        limit: crate::membership::Limit,
        /// How many more from this sender were held back since its last report.
        suppressed: u64,
    },
    /// A datagram of the other membership protocol arrived (see
    /// [`NodeConfig::protocol`](crate::NodeConfig::protocol)): a peer configured for chitchat
    /// mode while this node runs cohort mode, or the other way round (or a real chitchat node
    /// gossiping to a cohort-mode node). It was refused, never taken for this protocol's
    /// gossip. Reported at most once per sender in a diagnostic interval, and each report is
    /// answered with a small datagram of this node's protocol, so that the sender reports the
    /// mismatch too.
    ProtocolMismatch {
        /// The sender's address.
        from: SocketAddr,
        /// The protocol the sender speaks.
        theirs: crate::node::config::Protocol,
        /// How many more from this sender were held back since its last report.
        suppressed: u64,
    },
    /// This node stopped declaring deaths for a while: it heard nothing while many peers went
    /// silent at once, or it was starved (a round ran late), so it suspects itself.
    SelfSuspected,
    /// Events were dropped because the reader (or the core's bounded queue) fell behind.
    /// `members` is the membership when the lag was reported: rebuild the view from it, so
    /// that no departure goes unseen.
    Lagged {
        /// How many events were dropped.
        missed: u64,
        /// The membership now.
        members: Members,
    },
}

impl Event {
    /// The member the event is about, if it carries one.
    #[must_use]
    pub fn member(&self) -> Option<&Member> {
        match self {
            Self::Joined(m)
            | Self::Recovered(m)
            | Self::Unready(m)
            | Self::Failed(m)
            | Self::Left(m)
            | Self::Reset(m)
            | Self::KeyChanged { member: m, .. } => Some(m),
            _ => None,
        }
    }

    /// The identity of the member the event is about, if it is about one.
    #[must_use]
    pub fn node_id(&self) -> Option<&NodeId> {
        match self {
            Self::Removed(id) => Some(id),
            other => other.member().map(|m| &m.id),
        }
    }

    /// The event's name in lower case, for logs and command-line output: `joined`,
    /// `recovered`, `unready`, `failed`, `left`, `removed`, `key`, `reset`, `skew`,
    /// `bad-cluster`, `unauthenticated`, `over-limit`, `protocol-mismatch`, `suspect` or
    /// `lagged`.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Joined(_) => "joined",
            Self::Recovered(_) => "recovered",
            Self::Unready(_) => "unready",
            Self::Failed(_) => "failed",
            Self::Left(_) => "left",
            Self::Removed(_) => "removed",
            Self::KeyChanged { .. } => "key",
            Self::Reset(_) => "reset",
            Self::ClockSkew { .. } => "skew",
            Self::BadCluster { .. } => "bad-cluster",
            Self::Unauthenticated { .. } => "unauthenticated",
            Self::OverLimit { .. } => "over-limit",
            Self::ProtocolMismatch { .. } => "protocol-mismatch",
            Self::SelfSuspected => "suspect",
            Self::Lagged { .. } => "lagged",
        }
    }

    /// The RPC address a member that left or failed published (a driver drops its connection
    /// to it; a new one is made if the member comes back and is called), for `Left` and
    /// `Failed`.
    #[must_use]
    pub fn departed_rpc_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Left(member) | Self::Failed(member) => Some(crate::members::rpc_addr(member)),
            _ => None,
        }
    }

    /// Whether the event changes what a [`Members`] snapshot holds (so a snapshot taken
    /// before it is stale).
    #[must_use]
    pub fn changes_members(&self) -> bool {
        !matches!(
            self,
            Self::BadCluster { .. }
                | Self::SelfSuspected
                | Self::ClockSkew { .. }
                | Self::Unauthenticated { .. }
                | Self::OverLimit { .. }
        )
    }
}
