//! Per-node versioned key-value state and the Scuttlebutt rules for exchanging it.
//!
//! Owns [`NodeState`] (one node's heartbeat, key-values, `max_version` and `last_gc_version`)
//! and [`ClusterState`] (every known node's state): writing the local node's keys, applying a
//! received delta with chitchat's reset rule, choosing what a peer lacks given its digest, and
//! garbage collecting tombstones after the grace period.
//!
//! It never reads a clock (deletion times are the `now` given), never does I/O, and never
//! trusts a delta: a delta that does not fit the local state is refused and leaves it
//! unchanged.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::KeyError;
use super::config::{ENTRY_OVERHEAD, Limit, StateLimits};
use crate::hash::{MapHasher, map_hasher};
use crate::node_id::NodeKey;
use crate::wire::{DeletionStatus, NodeDelta, NodeDigest, RawNodeId, WireId};
use crate::{NodeId, NodeIdRef};

/// A stored value with its version and status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionedValue {
    /// The value (empty for a tombstone).
    pub value: String,
    /// The owner's version of this write.
    pub version: u64,
    /// Live, deleted, or deleted after a TTL.
    pub status: DeletionStatus,
    /// When the status became a deletion here (local time), for garbage collection.
    deleted_at: Option<Instant>,
}

impl VersionedValue {
    /// Whether readers see this value (tombstones are hidden; TTL values are visible until
    /// collected).
    #[must_use]
    pub fn is_visible(&self) -> bool {
        self.status != DeletionStatus::Deleted
    }
}

/// One node's state as known locally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    heartbeat: u64,
    key_values: BTreeMap<String, VersionedValue>,
    max_version: u64,
    last_gc_version: u64,
    /// A lower bound on the deletion times of the stored entries (`None`: no deletion), so
    /// that garbage collection skips the scan while nothing can have expired.
    earliest_deletion: Option<Instant>,
    /// The bytes of the stored entries as [`StateLimits`] counts them.
    bytes: usize,
}

/// What one entry counts for in [`StateLimits`].
fn entry_size(key: &str, value: &str) -> usize {
    key.len()
        .saturating_add(value.len())
        .saturating_add(ENTRY_OVERHEAD)
}

impl Default for NodeState {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeState {
    /// An empty state (heartbeat 0, no key-values).
    #[must_use]
    pub fn new() -> Self {
        Self {
            heartbeat: 0,
            key_values: BTreeMap::new(),
            max_version: 0,
            last_gc_version: 0,
            earliest_deletion: None,
            bytes: 0,
        }
    }

    /// The bytes this state counts for in [`StateLimits`]: its keys and values, plus
    /// [`ENTRY_OVERHEAD`] per entry (tombstones included).
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Stores `entry` under `key`, keeping the byte count.
    fn store(&mut self, key: &str, entry: VersionedValue) {
        let added = entry_size(key, &entry.value);
        match self.key_values.get_mut(key) {
            Some(existing) => {
                self.bytes = self.bytes - entry_size(key, &existing.value) + added;
                *existing = entry;
            }
            None => {
                self.bytes += added;
                self.key_values.insert(key.to_owned(), entry);
            }
        }
    }

    /// Whether storing `value` under `key` (a local write) keeps this state within `limits`,
    /// given the bytes all other members' states hold.
    pub(crate) fn check_write(
        &self,
        key: &str,
        value: &str,
        limits: &StateLimits,
        others: usize,
    ) -> Result<(), (Limit, usize)> {
        if key.len() > limits.max_key_len {
            return Err((Limit::KeyLength, limits.max_key_len));
        }
        if value.len() > limits.max_value_len {
            return Err((Limit::ValueLength, limits.max_value_len));
        }
        let (keys, bytes) = match self.key_values.get(key) {
            Some(old) => (
                self.key_values.len(),
                self.bytes - old.value.len() + value.len(),
            ),
            None => (
                self.key_values.len() + 1,
                self.bytes + entry_size(key, value),
            ),
        };
        Self::within(
            (self.key_values.len(), self.bytes),
            (keys, bytes),
            limits,
            others,
        )
        .map_err(|limit| (limit, limit_value(limit, limits)))
    }

    /// Whether a state going from `before` to `after` (entries, bytes) stays within `limits`.
    /// Only growth is refused: a state already past a bound (the limits were lowered) may
    /// still shrink.
    fn within(
        before: (usize, usize),
        after: (usize, usize),
        limits: &StateLimits,
        others: usize,
    ) -> Result<(), Limit> {
        if after.0 > before.0 && after.0 > limits.max_keys_per_member {
            return Err(Limit::KeysPerMember);
        }
        if after.1 > before.1 {
            if after.1 > limits.max_bytes_per_member {
                return Err(Limit::BytesPerMember);
            }
            if others.saturating_add(after.1) > limits.max_state_bytes {
                return Err(Limit::StateBytes);
            }
        }
        Ok(())
    }

    fn note_deletion(&mut self, at: Instant) {
        self.earliest_deletion = Some(self.earliest_deletion.map_or(at, |e| e.min(at)));
    }

    /// When the earliest deletion stored here was made (`None`: none is stored), a lower
    /// bound: the entry may since have been collected or replaced.
    #[must_use]
    pub fn earliest_deletion(&self) -> Option<Instant> {
        self.earliest_deletion
    }

    /// The last heartbeat heard.
    #[must_use]
    pub fn heartbeat(&self) -> u64 {
        self.heartbeat
    }

    /// The highest version held.
    #[must_use]
    pub fn max_version(&self) -> u64 {
        self.max_version
    }

    /// The highest tombstone version garbage collected.
    #[must_use]
    pub fn last_gc_version(&self) -> u64 {
        self.last_gc_version
    }

    /// The digest entry describing this state.
    #[must_use]
    pub fn digest(&self) -> NodeDigest {
        NodeDigest {
            heartbeat: self.heartbeat,
            last_gc_version: self.last_gc_version,
            max_version: self.max_version,
        }
    }

    /// The visible value of `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.key_values
            .get(key)
            .filter(|v| v.is_visible())
            .map(|v| v.value.as_str())
    }

    /// The stored entry of `key`, tombstones included.
    #[must_use]
    pub fn get_versioned(&self, key: &str) -> Option<&VersionedValue> {
        self.key_values.get(key)
    }

    /// The visible key-values, ascending by key.
    pub fn visible(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.key_values
            .iter()
            .filter(|(_, v)| v.is_visible())
            .map(|(k, v)| (k.as_str(), v.value.as_str()))
    }

    /// Every stored key-value, tombstones included, ascending by key.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &VersionedValue)> + '_ {
        self.key_values.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The number of stored key-values, tombstones included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.key_values.len()
    }

    /// Whether no key-value is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.key_values.is_empty()
    }

    /// Raises the heartbeat to `heartbeat` if it is higher; returns whether it did.
    pub fn observe_heartbeat(&mut self, heartbeat: u64) -> bool {
        if heartbeat > self.heartbeat {
            self.heartbeat = heartbeat;
            true
        } else {
            false
        }
    }

    /// Increments the heartbeat (the local node does this every round and every message).
    pub fn bump_heartbeat(&mut self) {
        self.heartbeat = self.heartbeat.saturating_add(1);
    }

    fn next_version(&mut self) -> u64 {
        self.max_version += 1;
        self.max_version
    }

    /// Sets `key` to `value` (the local node's own state). Does nothing if the key already holds
    /// that value as a live value. Returns whether anything changed.
    pub fn set(&mut self, key: &str, value: &str) -> bool {
        if let Some(existing) = self.key_values.get(key) {
            if existing.status == DeletionStatus::Set && existing.value == value {
                return false;
            }
        }
        let version = self.next_version();
        self.store(
            key,
            VersionedValue {
                value: value.to_owned(),
                version,
                status: DeletionStatus::Set,
                deleted_at: None,
            },
        );
        true
    }

    /// Sets `key` to `value`, to be garbage collected once the grace period has passed after
    /// `now`. Visible until then. Returns whether anything changed: setting the value the key
    /// already holds with a TTL does nothing (its TTL runs on from the first set, as in
    /// chitchat).
    pub fn set_with_ttl(&mut self, key: &str, value: &str, now: Instant) -> bool {
        if self.key_values.get(key).is_some_and(|existing| {
            existing.status == DeletionStatus::DeleteAfterTtl && existing.value == value
        }) {
            // chitchat's rule: the same value with a TTL already runs its TTL; nothing changes.
            return false;
        }
        let version = self.next_version();
        self.note_deletion(now);
        self.store(
            key,
            VersionedValue {
                value: value.to_owned(),
                version,
                status: DeletionStatus::DeleteAfterTtl,
                deleted_at: Some(now),
            },
        );
        true
    }

    /// Deletes `key` (a tombstone replaces it). Returns whether the key existed (a key already
    /// deleted does not: deleting it again changes nothing).
    pub fn delete(&mut self, key: &str, now: Instant) -> bool {
        if self
            .key_values
            .get(key)
            .is_none_or(|v| v.status == DeletionStatus::Deleted)
        {
            return false;
        }
        let version = self.next_version();
        self.note_deletion(now);
        if let Some(v) = self.key_values.get_mut(key) {
            self.bytes -= v.value.len();
            v.value.clear();
            v.version = version;
            v.status = DeletionStatus::Deleted;
            v.deleted_at = Some(now);
        }
        true
    }

    /// Keeps `key` visible but schedules it for collection after the grace period. Returns
    /// whether the key existed.
    pub fn delete_after_ttl(&mut self, key: &str, now: Instant) -> bool {
        if !self.key_values.contains_key(key) {
            return false;
        }
        let version = self.next_version();
        self.note_deletion(now);
        if let Some(v) = self.key_values.get_mut(key) {
            v.version = version;
            v.status = DeletionStatus::DeleteAfterTtl;
            v.deleted_at = Some(now);
        }
        true
    }

    /// Removes the deletions older than `grace` at `now`, raising `last_gc_version`. Returns
    /// the keys removed, each with the value it still showed (a key with a TTL, collected
    /// now), or `None` for a tombstone.
    pub fn gc_tombstones(
        &mut self,
        now: Instant,
        grace: Duration,
    ) -> Vec<(String, Option<String>)> {
        let mut removed = Vec::new();
        // Nothing can have expired yet: skip the scan (this runs every round for every node).
        // chitchat's rule: collected once `now >= deleted_at + grace`.
        if self
            .earliest_deletion
            .is_none_or(|at| now.saturating_duration_since(at) < grace)
        {
            return removed;
        }
        let mut highest = self.last_gc_version;
        let mut earliest: Option<Instant> = None;
        let mut freed = 0;
        self.key_values.retain(|key, v| {
            let Some(at) = v.deleted_at else {
                return true;
            };
            if now.saturating_duration_since(at) >= grace {
                highest = highest.max(v.version);
                freed += entry_size(key, &v.value);
                removed.push((
                    key.clone(),
                    v.is_visible().then(|| std::mem::take(&mut v.value)),
                ));
                false
            } else {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
                true
            }
        });
        self.earliest_deletion = earliest;
        self.last_gc_version = highest;
        self.bytes -= freed;
        removed
    }

    /// Applies a received delta for this node, by chitchat's rules, at local time `now`, with
    /// no bound on the state's size ([`apply_delta_within`](Self::apply_delta_within) with
    /// [`StateLimits::unlimited`]).
    ///
    /// # Errors
    ///
    /// As [`apply_delta_within`](Self::apply_delta_within).
    pub fn apply_delta(&mut self, delta: &NodeDelta, now: Instant) -> Result<Applied, Refused> {
        self.apply_delta_within(delta, now, &StateLimits::unlimited(), 0)
    }

    /// Applies a received delta for this node, by chitchat's rules, at local time `now`,
    /// within `limits` (`others`: the bytes all other members' states hold).
    ///
    /// # Errors
    ///
    /// Refused (state unchanged) when the delta starts beyond what we hold, when it needs a
    /// reset but is not a full state, when it brings nothing newer, or when what it would
    /// store breaks a bound ([`Refused::OverLimit`]: a key or value too long, or the state
    /// growing past its entries or bytes, or the whole state's bytes).
    pub fn apply_delta_within(
        &mut self,
        delta: &NodeDelta,
        now: Instant,
        limits: &StateLimits,
        others: usize,
    ) -> Result<Applied, Refused> {
        // A node delta cut right after its Node op (max version 0) carries nothing; it must not
        // trigger a reset either.
        if delta.max_version == 0 {
            return Err(Refused::NothingNew);
        }
        if delta.from_version_excluded > self.max_version {
            return Err(Refused::Gap);
        }
        // After a reset cut short by a datagram budget we hold (gc, max) with max < gc: the
        // versions in (max, gc] must come from a delta written after that collection. One
        // written before it (a relay's older view, a duplicated or reordered datagram) may
        // carry values that were since replaced by a collected tombstone, so it is refused.
        // chitchat applies it, and can bring such a value back.
        if delta.last_gc_version < self.last_gc_version && self.max_version < self.last_gc_version {
            return Err(Refused::PredatesCollection);
        }
        let compatible = delta.last_gc_version <= self.last_gc_version
            || delta.last_gc_version <= self.max_version;
        let mut reset = false;
        if !compatible {
            if delta.from_version_excluded != 0 {
                return Err(Refused::NeedsReset);
            }
            reset = true;
        } else if delta.max_version <= self.max_version {
            return Err(Refused::NothingNew);
        }
        self.check_delta(delta, reset, limits, others)?;
        // Each changed key with its visible value before the delta.
        let mut changed: Vec<(String, Option<String>)> = Vec::new();
        let visible = |v: &VersionedValue| v.is_visible().then(|| v.value.clone());
        if reset {
            changed.extend(self.key_values.iter().map(|(k, v)| (k.clone(), visible(v))));
            self.key_values.clear();
            self.bytes = 0;
            self.max_version = 0;
            self.last_gc_version = delta.last_gc_version;
            self.earliest_deletion = None;
        }
        let floor = self.max_version;
        for kv in &delta.key_values {
            if kv.version <= floor {
                continue;
            }
            if kv.status != DeletionStatus::Set && kv.version <= self.last_gc_version {
                continue;
            }
            let existing = self.key_values.get(&kv.key);
            if existing.is_some_and(|existing| existing.version >= kv.version) {
                continue;
            }
            let old = existing.and_then(visible);
            let deleted_at = (kv.status != DeletionStatus::Set).then_some(now);
            if deleted_at.is_some() {
                self.note_deletion(now);
            }
            self.store(
                &kv.key,
                VersionedValue {
                    value: kv.value.clone(),
                    version: kv.version,
                    status: kv.status,
                    deleted_at,
                },
            );
            changed.push((kv.key.clone(), old));
        }
        if delta.max_version > self.max_version {
            self.max_version = delta.max_version;
        }
        // Stable: for a key dropped by the reset and set again, the value before the reset
        // comes first and is kept.
        changed.sort_by(|a, b| a.0.cmp(&b.0));
        changed.dedup_by(|later, first| later.0 == first.0);
        let (changed_keys, old_values) = changed.into_iter().unzip();
        Ok(Applied {
            reset,
            changed_keys,
            old_values,
        })
    }

    /// Whether applying `delta` (after a reset, if `reset`) keeps this state within `limits`.
    /// Counts what the apply loop would store, without storing it; a key the delta carries
    /// twice is counted twice (an over-estimate only a forged delta reaches).
    fn check_delta(
        &self,
        delta: &NodeDelta,
        reset: bool,
        limits: &StateLimits,
        others: usize,
    ) -> Result<(), Refused> {
        let (floor, gc) = if reset {
            (0, delta.last_gc_version)
        } else {
            (self.max_version, self.last_gc_version)
        };
        let (mut keys, mut bytes) = if reset {
            (0, 0)
        } else {
            (self.key_values.len(), self.bytes)
        };
        for kv in &delta.key_values {
            if kv.version <= floor || (kv.status != DeletionStatus::Set && kv.version <= gc) {
                continue;
            }
            if kv.key.len() > limits.max_key_len {
                return Err(Refused::OverLimit(Limit::KeyLength));
            }
            if kv.value.len() > limits.max_value_len {
                return Err(Refused::OverLimit(Limit::ValueLength));
            }
            match (!reset).then(|| self.key_values.get(&kv.key)).flatten() {
                Some(existing) if existing.version >= kv.version => {}
                Some(existing) => {
                    bytes = bytes - existing.value.len() + kv.value.len();
                }
                None => {
                    keys += 1;
                    bytes = bytes.saturating_add(entry_size(&kv.key, &kv.value));
                }
            }
        }
        Self::within(
            (self.key_values.len(), self.bytes),
            (keys, bytes),
            limits,
            others,
        )
        .map_err(Refused::OverLimit)
    }

    /// What a peer whose digest entry for this node is `peer` (or `(0, 0)` if it did not list
    /// the node) lacks: `None` if nothing, else the `from_version_excluded` to send from (0 when
    /// the peer must reset) and the key-values above it, ascending by version.
    #[must_use]
    pub fn stale_for(&self, peer: Option<&NodeDigest>) -> Option<Staleness<'_>> {
        let (peer_gc, peer_max) = peer.map_or((0, 0), |d| (d.last_gc_version, d.max_version));
        if self.max_version <= peer_max {
            return None;
        }
        let needs_reset = peer_gc < self.last_gc_version && peer_max < self.last_gc_version;
        let from = if needs_reset { 0 } else { peer_max };
        let mut key_values: Vec<(&str, &VersionedValue)> = self
            .key_values
            .iter()
            .filter(|(_, v)| v.version > from)
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        key_values.sort_unstable_by_key(|(_, v)| v.version);
        Some(Staleness {
            from_version_excluded: from,
            key_values,
        })
    }
}

/// What [`NodeState::stale_for`] found a peer lacks.
#[derive(Clone, Debug)]
pub struct Staleness<'a> {
    /// Send every key-value above this version (0: the whole state, the peer resets).
    pub from_version_excluded: u64,
    /// The key-values to send, ascending by version.
    pub key_values: Vec<(&'a str, &'a VersionedValue)>,
}

/// The effect of an applied delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Whether the node's state was reset (all its key-values dropped) first.
    pub reset: bool,
    /// The keys whose stored entry changed (or was dropped by the reset), ascending.
    pub changed_keys: Vec<String>,
    /// The visible value each of [`changed_keys`](Self::changed_keys) had before (`None`:
    /// absent, or a tombstone).
    pub old_values: Vec<Option<String>>,
}

/// Why a delta was refused. The state is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The delta starts above the versions we hold.
    #[error("the delta starts beyond the local max version")]
    Gap,
    /// Our state is too old for the delta, and the delta is not a full state.
    #[error("the delta needs a reset but is not a full state")]
    NeedsReset,
    /// The delta brings no version newer than what we hold.
    #[error("the delta brings nothing newer")]
    NothingNew,
    /// The delta was written before a garbage collection our state already reflects, and we
    /// still lack versions below that collection's watermark.
    #[error("the delta predates a garbage collection already applied")]
    PredatesCollection,
    /// Applying the delta would break a bound of [`StateLimits`].
    #[error("the delta would break the `{0}` limit")]
    OverLimit(Limit),
}

/// The error of a local write of `key = value` that would break `limit` (whose value is
/// `max`).
pub(crate) fn key_error((limit, max): (Limit, usize), key: &str, value: &str) -> KeyError {
    match limit {
        Limit::KeyLength => KeyError::TooLong {
            limit,
            len: key.len(),
            max,
        },
        Limit::ValueLength => KeyError::TooLong {
            limit,
            len: value.len(),
            max,
        },
        _ => KeyError::StateFull { limit, max },
    }
}

/// The value of `limit` in `limits`.
pub(crate) fn limit_value(limit: Limit, limits: &StateLimits) -> usize {
    match limit {
        Limit::Members => limits.max_members,
        Limit::UnconfirmedPerSender => limits.max_unconfirmed_per_sender,
        Limit::KeysPerMember => limits.max_keys_per_member,
        Limit::BytesPerMember => limits.max_bytes_per_member,
        Limit::StateBytes => limits.max_state_bytes,
        Limit::KeyLength => limits.max_key_len,
        Limit::ValueLength => limits.max_value_len,
    }
}

/// Every known node's state, ordered by node id, with a value of type `M` beside each (the
/// membership machine keeps its failure detection and member status there).
///
/// Stored as a vector sorted by id (for ordered iteration: digests are written in id order)
/// with a hash index beside it (for lookups by id). Inserting or removing a node costs O(n);
/// looking one up costs one hash, or none when the caller walks ids in order
/// ([`position_near`](Self::position_near)).
#[derive(Clone, Debug)]
pub struct ClusterState<M = ()> {
    entries: Vec<Entry<M>>,
    index: HashMap<NodeId, usize, MapHasher>,
}

#[derive(Clone, Debug)]
struct Entry<M> {
    id: NodeId,
    /// The id's wire encoding, kept beside it: digests write it with one copy, and matching a
    /// digest entry compares bytes without following the name's pointer (a cache miss per
    /// entry when many machines share a core).
    wire: WireId,
    state: NodeState,
    meta: M,
}

impl<M: Default> Entry<M> {
    fn new(id: NodeId) -> Self {
        Self {
            wire: WireId::new(id.as_ref()),
            id,
            state: NodeState::new(),
            meta: M::default(),
        }
    }
}

impl<M> Entry<M> {
    /// Whether `node` is this entry's id, by its kept wire bytes (`false` when none are kept:
    /// the caller compares parts then).
    #[inline]
    fn is(&self, node: RawNodeId<'_>) -> bool {
        self.wire
            .as_bytes()
            .is_some_and(|bytes| node.bytes == bytes)
    }
}

/// How many positions [`ClusterState::position_near`] steps forward before it hashes.
const NEAR_STEPS: usize = 4;

impl<M> Default for ClusterState<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> ClusterState<M> {
    /// An empty cluster state.
    #[must_use]
    pub fn new() -> Self {
        Self::with_hash_seed(0)
    }

    /// An empty cluster state whose index hashes with `seed`.
    #[must_use]
    pub fn with_hash_seed(seed: u64) -> Self {
        Self {
            entries: Vec::new(),
            index: HashMap::with_hasher(map_hasher(seed)),
        }
    }

    /// The state of `node`.
    #[must_use]
    pub fn node(&self, node: &NodeId) -> Option<&NodeState> {
        self.index.get(node).map(|&i| &self.entries[i].state)
    }

    /// The state of `node`, mutably.
    pub fn node_mut(&mut self, node: &NodeId) -> Option<&mut NodeState> {
        self.index.get(node).map(|&i| &mut self.entries[i].state)
    }

    /// The value kept beside `node`'s state.
    #[must_use]
    pub fn meta(&self, node: &NodeId) -> Option<&M> {
        self.index.get(node).map(|&i| &self.entries[i].meta)
    }

    /// The state of `node` and the value beside it, mutably.
    pub fn entry_mut(&mut self, node: &NodeId) -> Option<(&mut NodeState, &mut M)> {
        let &i = self.index.get(node)?;
        let entry = &mut self.entries[i];
        Some((&mut entry.state, &mut entry.meta))
    }

    /// The position of `node` in [`iter`](Self::iter) order, looked up without allocating.
    #[must_use]
    pub fn index_of(&self, node: NodeIdRef<'_>) -> Option<usize> {
        let key: &dyn NodeKey = &node;
        self.index.get(key).copied()
    }

    /// The position of `node`, searched first at `hint` and a few positions after it (by
    /// comparing ids, without hashing), then through the index.
    ///
    /// Walking a digest that lists ids in ascending order (as every chitchat and cohort node
    /// writes it) with `hint` one past the previous hit finds each known id at the first
    /// comparison.
    #[must_use]
    pub fn position_near(&self, hint: usize, node: NodeIdRef<'_>) -> Option<usize> {
        let wire = WireId::new(node);
        match wire.as_bytes() {
            Some(bytes) => self.position_near_raw(hint, RawNodeId { bytes }),
            // Too long to encode inline: hashing costs less than encoding it on the heap.
            None => self.index_of(node),
        }
    }

    /// [`position_near`](Self::position_near) for an id read from a validated digest. Ids
    /// kept in wire form match by their bytes; the id's parts are read (once) only when that
    /// fails, for ordering and for the index.
    pub(crate) fn position_near_raw(&self, hint: usize, node: RawNodeId<'_>) -> Option<usize> {
        let end = self.entries.len().min(hint.saturating_add(NEAR_STEPS));
        let mut parts: Option<NodeIdRef<'_>> = None;
        for i in hint..end {
            let entry = &self.entries[i];
            if entry.is(node) {
                return Some(i);
            }
            let this = match parts {
                Some(this) => this,
                None => *parts.insert(node.to_ref()?),
            };
            match entry.id.as_ref().cmp(&this) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Some(i),
                std::cmp::Ordering::Greater => {
                    return if i == hint { self.index_of(this) } else { None };
                }
            }
        }
        self.index_of(match parts {
            Some(this) => this,
            None => node.to_ref()?,
        })
    }

    /// The identity, state and value at position `index` of [`iter`](Self::iter) order.
    ///
    /// # Panics
    ///
    /// When `index >= self.len()`.
    pub fn entry_at_mut(&mut self, index: usize) -> (&NodeId, &mut NodeState, &mut M) {
        let entry = &mut self.entries[index];
        (&entry.id, &mut entry.state, &mut entry.meta)
    }

    /// The state of `node`, created empty (with `M::default()` beside it) if missing.
    pub fn node_or_insert(&mut self, node: &NodeId) -> &mut NodeState
    where
        M: Default,
    {
        let i = match self.index.get(node) {
            Some(&i) => i,
            None => {
                let at = self.entries.partition_point(|e| e.id < *node);
                self.entries.insert(at, Entry::new(node.clone()));
                self.reindex_from(at);
                at
            }
        };
        &mut self.entries[i].state
    }

    /// Adds empty states (with `M::default()` beside each) for the ids of `nodes` not yet
    /// known, in one pass: O(n + k log k) for k new ids, where inserting them one by one costs
    /// O(n) each. Returns how many were added.
    pub fn insert_many(&mut self, nodes: impl IntoIterator<Item = NodeId>) -> usize
    where
        M: Default,
    {
        let before = self.entries.len();
        let mut smallest: Option<NodeId> = None;
        for id in nodes {
            if self.index.contains_key(&id) {
                continue;
            }
            if smallest.as_ref().is_none_or(|s| id < *s) {
                smallest = Some(id.clone());
            }
            // Indexed now so that a duplicate in `nodes` is skipped; the position is fixed by
            // the reindexing below.
            self.index.insert(id.clone(), usize::MAX);
            self.entries.push(Entry::new(id));
        }
        if let Some(smallest) = smallest {
            // Two sorted runs: the stable sort merges them in linear time. Positions before
            // the smallest new id did not move.
            self.entries.sort_by(|a, b| a.id.cmp(&b.id));
            let first = self.entries.partition_point(|e| e.id < smallest);
            self.reindex_from(first);
        }
        self.entries.len() - before
    }

    /// Removes `node`'s state (and the value beside it).
    pub fn remove(&mut self, node: &NodeId) -> Option<NodeState> {
        let at = self.index.remove(node)?;
        let entry = self.entries.remove(at);
        self.reindex_from(at);
        Some(entry.state)
    }

    fn reindex_from(&mut self, at: usize) {
        for (i, entry) in self.entries.iter().enumerate().skip(at) {
            match self.index.get_mut(&entry.id) {
                Some(slot) => *slot = i,
                None => {
                    self.index.insert(entry.id.clone(), i);
                }
            }
        }
    }

    /// The known nodes named `name` (every generation and address), ascending.
    pub fn with_name<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a NodeId> + 'a {
        let start = self.entries.partition_point(|e| e.id.name() < name);
        self.entries[start..]
            .iter()
            .map(|e| &e.id)
            .take_while(move |id| id.name() == name)
    }

    /// Every node and its state, ascending by id.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&NodeId, &NodeState)> + '_ {
        self.entries.iter().map(|e| (&e.id, &e.state))
    }

    /// Every node and its state, mutably, ascending by id.
    pub fn iter_mut(&mut self) -> impl ExactSizeIterator<Item = (&NodeId, &mut NodeState)> + '_ {
        self.entries.iter_mut().map(|e| (&e.id, &mut e.state))
    }

    /// Every node, its state and the value beside it, ascending by id.
    pub fn iter_with_meta(&self) -> impl ExactSizeIterator<Item = (&NodeId, &NodeState, &M)> + '_ {
        self.entries.iter().map(|e| (&e.id, &e.state, &e.meta))
    }

    /// [`iter_with_meta`](Self::iter_with_meta), each id with its kept wire encoding.
    pub(crate) fn iter_wire_with_meta(
        &self,
    ) -> impl ExactSizeIterator<Item = (&NodeId, &WireId, &NodeState, &M)> + '_ {
        self.entries
            .iter()
            .map(|e| (&e.id, &e.wire, &e.state, &e.meta))
    }

    /// Every node, its state and the value beside it, mutably, ascending by id.
    pub fn iter_with_meta_mut(
        &mut self,
    ) -> impl ExactSizeIterator<Item = (&NodeId, &mut NodeState, &mut M)> + '_ {
        self.entries
            .iter_mut()
            .map(|e| (&e.id, &mut e.state, &mut e.meta))
    }

    /// The number of known nodes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no node is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests;
