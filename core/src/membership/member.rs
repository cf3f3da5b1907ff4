//! What the membership says about a member, and the keys cohort reserves for itself.
//!
//! Owns the public value types of the membership ([`Member`], [`MemberStatus`]), the reserved
//! key prefix and the error a refused key command gives ([`KeyError`]). Plain data: no
//! protocol logic lives here.

use std::collections::BTreeMap;

use crate::NodeId;

/// The key a node sets on itself to announce a graceful departure. Keys under the
/// `__cohort/` prefix are reserved and hidden from [`Member::keys`].
pub const LEAVING_KEY: &str = "__cohort/leaving";

/// The prefix of keys reserved for cohort itself.
pub const RESERVED_KEY_PREFIX: &str = "__cohort/";

/// Whether `key` is one of cohort's own (under [`RESERVED_KEY_PREFIX`]).
#[must_use]
pub fn is_reserved_key(key: &str) -> bool {
    key.starts_with(RESERVED_KEY_PREFIX)
}

/// Why a command on the local node's keys was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Keys under `__cohort/` ([`RESERVED_KEY_PREFIX`]) belong to cohort.
    #[error("the key {0:?} is reserved (keys under `__cohort/` belong to cohort)")]
    Reserved(String),
    /// The node is leaving the cluster (or shutting down): its state is frozen.
    #[error("the node is leaving the cluster")]
    Leaving,
    /// The key or the value is longer than [`StateLimits`](super::StateLimits) allows
    /// (`limit` is [`Limit::KeyLength`](super::Limit::KeyLength) or
    /// [`Limit::ValueLength`](super::Limit::ValueLength)).
    #[error("the {what} is {len} bytes long, more than the {max} the `{limit}` limit allows", what = if matches!(limit, super::Limit::KeyLength) { "key" } else { "value" })]
    TooLong {
        /// Which length.
        limit: super::Limit,
        /// Its length in bytes.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// The write would take this node's state past a bound of
    /// [`StateLimits`](super::StateLimits) (its keys or bytes, or the whole state's bytes).
    /// Delete keys (their tombstones count until collected) or raise the limit.
    #[error("the node's state is full: the `{limit}` limit ({max}) would be exceeded")]
    StateFull {
        /// The bound.
        limit: super::Limit,
        /// Its value.
        max: usize,
    },
}

/// What the local node believes of a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    /// Known (through gossip, or it contacted us), but its heartbeat has not been heard to
    /// advance twice yet, so the failure detector has no verdict.
    ///
    /// For the protocol, such a node counts as dead, exactly as chitchat's failure detector
    /// calls it (in every mode, so that cohort and chitchat nodes treat it alike): it may be
    /// picked as the round's dead-node target, it leaves digests after half the dead-node
    /// grace period and is collected ([`Event::Removed`](crate::Event::Removed)) after the
    /// whole one, and its keys are gossiped meanwhile. What cohort adds is the name: a node
    /// that never was live is `Joining`, not `Failed`, so no `Failed` event is raised for a
    /// node that only ever was heard of (a join in progress, or a stale entry of a node that
    /// crashed before we heard it). [`Members::dead`](crate::Members::dead) lists what chitchat
    /// would list as dead.
    Joining,
    /// Live: the failure detector hears it and the liveness predicate (if any) holds.
    Live,
    /// The failure detector hears it, but the liveness predicate does not hold.
    Unready,
    /// The failure detector declared it dead (it crashed, or is cut off from us).
    Failed,
    /// It announced a graceful departure.
    Left,
}

impl MemberStatus {
    /// The status in lower case (`joining`, `live`, `unready`, `failed`, `left`), for logs and
    /// command-line output.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Joining => "joining",
            Self::Live => "live",
            Self::Unready => "unready",
            Self::Failed => "failed",
            Self::Left => "left",
        }
    }
}

impl std::fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A member as the local node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its identity.
    pub id: NodeId,
    /// What we believe of it.
    pub status: MemberStatus,
    /// Its last heartbeat heard.
    pub heartbeat: u64,
    /// The highest key-value version we hold of it.
    pub max_version: u64,
    /// Its visible key-values (reserved `__cohort/` keys excluded).
    pub keys: BTreeMap<String, String>,
}

impl Member {
    /// The value of `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keys.get(key).map(String::as_str)
    }

    /// The keys starting with `prefix`, with their values, in key order (chitchat's
    /// `iter_prefix`).
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use cohort_core::{Member, MemberStatus, NodeId};
    ///
    /// let member = Member {
    ///     id: NodeId::new("a", 1, "127.0.0.1:7000".parse().unwrap()),
    ///     status: MemberStatus::Live,
    ///     heartbeat: 1,
    ///     max_version: 3,
    ///     keys: BTreeMap::from([
    ///         ("shard/1".to_owned(), "leader".to_owned()),
    ///         ("shard/2".to_owned(), "follower".to_owned()),
    ///         ("zone".to_owned(), "eu".to_owned()),
    ///     ]),
    /// };
    /// let shards: Vec<(&str, &str)> = member.keys_with_prefix("shard/").collect();
    /// assert_eq!(shards, [("shard/1", "leader"), ("shard/2", "follower")]);
    /// ```
    pub fn keys_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.keys
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}
