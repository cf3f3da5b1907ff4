//! The budgeted delta encoder: chitchat's `DeltaSerializer`, which adds ops one at a time and
//! refuses any op that could push the encoded delta past a byte budget
//! (`shared/chitchat-wire.md` 1.8).
//!
//! It owns the op-by-op fitting rule and nothing else: which nodes and key-values to offer, in
//! which order, is the state machine's business. It must never produce a delta longer than
//! its budget (an empty delta, the single end byte, excepted), and a refused op must leave the
//! writer exactly as it was.

use super::blocks::StreamWriter;
use super::codec::{
    SET_MAX_VERSION_OP_LEN, key_value_op_len, node_op_len, put_key_value_op, put_node_op,
    put_set_max_version_op,
};
use super::{Compression, DeletionStatus, KeyValueUpdate};
use crate::NodeId;

/// Builds a delta (a block stream of ops) that fits a byte budget.
///
/// Before each op the writer computes chitchat's pessimistic bound on the finished delta,
/// assuming nothing compresses: 3 bytes of block header, the blocks already written, the
/// pending raw bytes, the new op and the end byte, plus 3 more if the op starts a new block.
/// (For an op so large that it fills more than one further block, 3 bytes are counted for every
/// block, so the bound stays true.) An op that would push the bound past the budget is refused:
/// the method returns `false` and writes nothing. Because compressed blocks are never larger
/// than their raw bytes, the finished delta is never longer than the budget.
///
/// chitchat stops at the first refusal (a refused Node op or key-value ends the delta); so
/// should a caller that wants chitchat's behaviour. The writer does not check the grouping
/// rules of `shared/chitchat-wire.md` 1.7 (a Node op first, each node once, key-value versions
/// strictly increasing from 1): a caller that breaks them produces a delta receivers reject.
///
/// Strings longer than 65,535 bytes are cut to a UTF-8 prefix of at most 65,535 bytes (the
/// wire cannot carry more), and sizes are computed on the cut string.
///
/// ```
/// use cohort_core::NodeId;
/// use cohort_core::wire::{
///     DeletionStatus, Delta, DeltaWriter, KeyValueUpdate, Message, NodeDelta, ProtocolVersion,
///     MessageType, decode_chitchat, delta_budget, encode_header,
/// };
///
/// let node = NodeId::new("node-a", 1, "127.0.0.1:41001".parse().unwrap());
/// let kv = KeyValueUpdate {
///     key: "key-a".into(),
///     value: "value-a".into(),
///     version: 1,
///     status: DeletionStatus::Set,
/// };
/// let mut writer = DeltaWriter::new(delta_budget(0));
/// assert!(writer.add_node(&node, 0, 0));
/// assert!(writer.add_key_value_update(&kv));
///
/// let mut datagram = Vec::new();
/// encode_header(ProtocolVersion::V0, MessageType::Ack, &mut datagram);
/// writer.finish(&mut datagram);
///
/// let (_, message) = decode_chitchat(&datagram)?;
/// let node_delta = NodeDelta {
///     node,
///     last_gc_version: 0,
///     from_version_excluded: 0,
///     max_version: 1,
///     key_values: vec![kv],
/// };
/// assert_eq!(message, Message::Ack { delta: Delta { nodes: vec![node_delta] } });
/// # Ok::<(), cohort_core::wire::DecodeError>(())
/// ```
pub struct DeltaWriter {
    budget: usize,
    stream: StreamWriter,
    ops: usize,
}

impl std::fmt::Debug for DeltaWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaWriter")
            .field("budget", &self.budget)
            .field("ops", &self.ops)
            .field("len_bound", &self.len_bound())
            .finish_non_exhaustive()
    }
}

impl DeltaWriter {
    /// A writer for a delta of at most `budget` bytes, compressing blocks with zstd where that
    /// helps (chitchat's behaviour). `budget` is chitchat's `delta_mtu`, see
    /// [`delta_budget`](super::delta_budget).
    #[must_use]
    pub fn new(budget: usize) -> Self {
        Self::with_compression(budget, Compression::Zstd)
    }

    /// A writer for a delta of at most `budget` bytes, writing blocks per `compression`.
    #[must_use]
    pub fn with_compression(budget: usize, compression: Compression) -> Self {
        Self {
            budget,
            stream: StreamWriter::new(compression),
            ops: 0,
        }
    }

    /// A writer without a budget: every op is accepted.
    #[must_use]
    pub fn unbounded(compression: Compression) -> Self {
        Self::with_compression(usize::MAX, compression)
    }

    /// The budget this writer was created with.
    #[must_use]
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// How many ops were accepted.
    #[must_use]
    pub fn op_count(&self) -> usize {
        self.ops
    }

    /// Whether no op was accepted (the delta would be the single end byte).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    /// An upper bound on what [`finish`](Self::finish) would write now (exact when nothing
    /// pending compresses). Never above the budget, unless no op was accepted and the budget
    /// is 0.
    #[must_use]
    pub fn len_bound(&self) -> usize {
        self.stream.len_bound()
    }

    fn try_add(&mut self, op_len: usize, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        if self.stream.len_bound_after(op_len) > self.budget {
            return false;
        }
        write(self.stream.pending_mut());
        self.stream.settle();
        self.ops += 1;
        true
    }

    /// Adds a Node op, which starts the node's delta. Returns `false`, writing nothing, if it
    /// does not fit the budget.
    pub fn add_node(
        &mut self,
        node: &NodeId,
        last_gc_version: u64,
        from_version_excluded: u64,
    ) -> bool {
        self.try_add(node_op_len(node), |out| {
            put_node_op(out, node, last_gc_version, from_version_excluded);
        })
    }

    /// Adds a KeyValue op to the current node's delta. Returns `false`, writing nothing, if it
    /// does not fit the budget.
    pub fn add_key_value(
        &mut self,
        key: &str,
        value: &str,
        version: u64,
        status: DeletionStatus,
    ) -> bool {
        self.try_add(key_value_op_len(key, value), |out| {
            put_key_value_op(out, key, value, version, status);
        })
    }

    /// [`add_key_value`](Self::add_key_value) with the parts of a [`KeyValueUpdate`].
    pub fn add_key_value_update(&mut self, kv: &KeyValueUpdate) -> bool {
        self.add_key_value(&kv.key, &kv.value, kv.version, kv.status)
    }

    /// Adds a SetMaxVersion op to the current node's delta. chitchat sends one only for a node
    /// delta without key-values, when the node's max version is above 0. Returns `false`,
    /// writing nothing, if it does not fit the budget.
    pub fn add_set_max_version(&mut self, max_version: u64) -> bool {
        self.try_add(SET_MAX_VERSION_OP_LEN, |out| {
            put_set_max_version_op(out, max_version);
        })
    }

    /// Appends the delta (its blocks and the end tag) to `out`; returns the bytes written.
    pub fn finish(self, out: &mut Vec<u8>) -> usize {
        self.stream.finish(out)
    }
}
