//! The gossip wire format.
//!
//! Owns the messages of chitchat 0.13's protocol ([`Message`], [`Digest`], [`Delta`] and
//! their parts), their exact byte encoding in both protocol versions ([`ProtocolVersion`]), the
//! block stream (raw or zstd blocks) that deltas and V1 digests travel in, the budgeted delta
//! writer that keeps a datagram under its size limit, and cohort's own envelope around a
//! chitchat datagram (the sender's HLC timestamp and room for an authentication tag).
//!
//! It never does I/O, never reads a clock, and never panics or allocates without bound on input
//! from the network: every decoder returns a value or a typed [`DecodeError`].
//!
//! The format itself is specified in `shared/chitchat-wire.md` (chitchat) and
//! `docs/cohort-envelope.md` (cohort's envelope).
//!
//! # Receiving
//!
//! [`decode_datagram`] takes whatever arrived on the socket, bare chitchat or enveloped, and
//! returns the envelope (if any), the chitchat bytes, the protocol version to echo in a reply,
//! and the [`Message`]. [`decode_chitchat`] decodes a bare chitchat datagram. Trailing bytes
//! after a well-formed body are ignored, as chitchat does; see [`decode_chitchat`] for the
//! delta rules, including how SetMaxVersion ops mixed with key-values are treated.
//!
//! # Sending
//!
//! [`encode_chitchat`] writes a whole message (nothing bounded). A state machine that must fit
//! a datagram builds it in parts: [`encode_envelope`] (optional), [`encode_header`],
//! [`encode_digest`] (which returns the digest's length, to reserve with [`delta_budget`]),
//! then a [`DeltaWriter`] created with that budget, fed op by op, and finished into the same
//! buffer. Block streams are written as chitchat writes them ([`Compression::Zstd`],
//! byte-identical to chitchat 0.13) or with raw blocks only ([`Compression::None`]).
//!
//! ```
//! use cohort_core::NodeId;
//! use cohort_core::wire::{
//!     Compression, Digest, DeltaWriter, MessageType, NodeDigest, ProtocolVersion,
//!     decode_datagram, delta_budget, encode_digest, encode_header,
//! };
//!
//! let me = NodeId::new("node-b", 2, "127.0.0.1:41002".parse().unwrap());
//! let digest = Digest {
//!     entries: vec![(me.clone(), NodeDigest { heartbeat: 3, last_gc_version: 0, max_version: 1 })],
//! };
//! // A SynAck echoing the Syn's version.
//! let version = ProtocolVersion::V1;
//! let mut datagram = Vec::new();
//! encode_header(version, MessageType::SynAck, &mut datagram);
//! let digest_len = encode_digest(version, &digest, Compression::Zstd, &mut datagram);
//! let mut delta = DeltaWriter::new(delta_budget(digest_len));
//! if delta.add_node(&me, 0, 0) {
//!     delta.add_set_max_version(1);
//! }
//! delta.finish(&mut datagram);
//! assert!(datagram.len() <= cohort_core::wire::MAX_DATAGRAM_SIZE);
//!
//! let received = decode_datagram(&datagram)?;
//! assert_eq!(received.version, version);
//! # Ok::<(), cohort_core::wire::DecodeError>(())
//! ```

use crate::NodeId;

mod blocks;
mod codec;
pub(crate) use codec::{Reader, put_socket_addr};
mod delta_writer;
mod envelope;
#[cfg(test)]
mod tests;

pub use codec::{
    DigestEntries, DigestView, MessageView, decode_chitchat, decode_chitchat_view, decode_header,
    delta_budget, encode_chitchat, encode_chitchat_with, encode_digest, encode_digest_entries,
    encode_header, encode_syn, encoded_digest_len,
};
pub(crate) use codec::{RawNodeId, WireId, encode_digest_keyed, encode_syn_keyed};
pub use delta_writer::DeltaWriter;
pub use envelope::{
    Datagram, ENVELOPE_FLAG_AUTH_TAG, ENVELOPE_MAGIC, ENVELOPE_OVERHEAD, ENVELOPE_VERSION,
    EnvelopeHeader, InvalidAuthTag, MAX_AUTH_TAG_LEN, decode_datagram, decode_envelope,
    encode_envelope, envelope_bytes, envelope_len, split_datagram,
};

/// chitchat's magic number, the first two bytes of every chitchat datagram (`53 b0`).
pub const CHITCHAT_MAGIC: u16 = 0xB053;

/// The largest UDP payload (IPv4): no datagram cohort sends is larger, and this is also the
/// largest datagram it accepts.
pub const MAX_DATAGRAM_SIZE: usize = 65_507;

/// The length of a chitchat datagram's header (magic, version, message type).
pub const HEADER_LEN: usize = 4;

/// The size of the raw chunks a block stream is cut into before compression.
pub const BLOCK_THRESHOLD: usize = 16_384;

/// The most one compressed block may inflate to (chitchat decompresses into a buffer of this
/// size). A block that claims more is a decode error.
pub const MAX_BLOCK_DECOMPRESSED: usize = 65_535;

/// The most a whole block stream may inflate to. A stream that would grow past this is a decode
/// error, so a datagram can never make the decoder allocate more than this.
pub const MAX_STREAM_DECOMPRESSED: usize = 1 << 20;

/// The protocol version byte of a chitchat datagram. It selects only the digest's encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// Uncompressed digest with a `u16` entry count.
    V0 = 0,
    /// Digest as a block stream (possibly zstd-compressed), no count.
    V1 = 1,
}

impl ProtocolVersion {
    /// The version byte on the wire (offset 2 of a chitchat datagram).
    #[must_use]
    pub const fn to_byte(self) -> u8 {
        self as u8
    }

    /// The version a byte stands for, or `None` for an unknown byte.
    #[must_use]
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Self::V0),
            1 => Some(Self::V1),
            _ => None,
        }
    }
}

/// The message type byte of a chitchat datagram (offset 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// [`Message::Syn`] (wire `0`).
    Syn = 0,
    /// [`Message::SynAck`] (wire `1`).
    SynAck = 1,
    /// [`Message::Ack`] (wire `2`).
    Ack = 2,
    /// [`Message::BadCluster`] (wire `3`).
    BadCluster = 3,
}

impl MessageType {
    /// The type byte on the wire.
    #[must_use]
    pub const fn to_byte(self) -> u8 {
        self as u8
    }

    /// The type a byte stands for, or `None` for an unknown byte.
    #[must_use]
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Self::Syn),
            1 => Some(Self::SynAck),
            2 => Some(Self::Ack),
            3 => Some(Self::BadCluster),
            _ => None,
        }
    }
}

/// How the blocks of a block stream (deltas and V1 digests) are written.
///
/// Decoding always accepts both kinds of block; this only chooses what an encoder emits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    /// chitchat's behaviour: each chunk is zstd-compressed (level 3) when that makes it
    /// smaller, and stored raw otherwise. Gives byte-identical output to chitchat 0.13.
    #[default]
    Zstd,
    /// Every chunk is stored raw (block tag `2`). chitchat accepts this in both versions; it
    /// costs bandwidth but no CPU.
    None,
}

/// The three counters that describe what a node's state holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NodeDigest {
    /// The node's heartbeat as last heard.
    pub heartbeat: u64,
    /// The highest version of a tombstone the node's state has garbage collected.
    pub last_gc_version: u64,
    /// The highest key-value version the node's state holds (0: none).
    pub max_version: u64,
}

/// A digest: for each node the sender knows, its [`NodeDigest`].
///
/// Entries keep the order they were decoded or built in; chitchat writes them in [`NodeId`]
/// order, and so does cohort, to be byte-identical. A decoder keeps duplicates as they came
/// (chitchat keeps the last one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Digest {
    /// The entries, in wire order.
    pub entries: Vec<(NodeId, NodeDigest)>,
}

/// The status of a versioned key-value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeletionStatus {
    /// A live value (wire `0`).
    Set,
    /// A tombstone: the key was deleted; the value is empty (wire `1`).
    Deleted,
    /// Still visible, but garbage collected once the grace period has passed (wire `2`).
    DeleteAfterTtl,
}

/// One versioned key-value in a delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValueUpdate {
    /// The key.
    pub key: String,
    /// The value (empty for a tombstone).
    pub value: String,
    /// The version the owner gave this write (at least 1).
    pub version: u64,
    /// Live, deleted, or deleted after a TTL.
    pub status: DeletionStatus,
}

/// What a delta carries about one node.
///
/// On the wire: a Node op, then the key-values (strictly increasing versions), or, when there
/// are none and `max_version > 0`, a SetMaxVersion op. When `key_values` is not empty,
/// `max_version` is the last key-value's version: the encoder does not write it then. (A
/// decoder also accepts a SetMaxVersion op after the key-values, which chitchat never sends;
/// it may raise `max_version` above the last key-value's version, never below.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDelta {
    /// The node.
    pub node: NodeId,
    /// The sender's `last_gc_version` for the node.
    pub last_gc_version: u64,
    /// The delta holds every key-value with a version above this (0: the whole state).
    pub from_version_excluded: u64,
    /// The node's max version once this delta is applied (0: no update).
    pub max_version: u64,
    /// The key-values, ascending by version.
    pub key_values: Vec<KeyValueUpdate>,
}

/// A delta: for each node, the key-values the receiver lacks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Per-node deltas, in wire order.
    pub nodes: Vec<NodeDelta>,
}

/// A chitchat gossip message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Opens a handshake: the initiator's digest and cluster id.
    Syn {
        /// The initiator's digest.
        digest: Digest,
        /// The initiator's cluster id; a mismatch is answered with [`Message::BadCluster`].
        cluster_id: String,
    },
    /// The responder's digest and what the initiator lacks.
    SynAck {
        /// The responder's digest.
        digest: Digest,
        /// What the initiator lacks, per the Syn's digest.
        delta: Delta,
    },
    /// Closes a handshake: what the responder lacks.
    Ack {
        /// What the responder lacks, per the SynAck's digest.
        delta: Delta,
    },
    /// The Syn came from another cluster.
    BadCluster,
}

impl Message {
    /// The message's type byte.
    #[must_use]
    pub const fn message_type(&self) -> MessageType {
        match self {
            Self::Syn { .. } => MessageType::Syn,
            Self::SynAck { .. } => MessageType::SynAck,
            Self::Ack { .. } => MessageType::Ack,
            Self::BadCluster => MessageType::BadCluster,
        }
    }
}

/// Why bytes are not a valid datagram. Decoding never changes any state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before a complete value was read.
    #[error("truncated: needed {needed} more bytes while reading {what}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// How many bytes were missing.
        needed: usize,
    },
    /// The datagram does not start with a known magic number.
    #[error("unknown magic number {0:#06x}")]
    BadMagic(u16),
    /// An unknown chitchat protocol version byte.
    #[error("unknown protocol version {0}")]
    UnknownVersion(u8),
    /// An unknown message type byte.
    #[error("unknown message type {0}")]
    UnknownMessageType(u8),
    /// A byte that must be one of a few tags was not (IP tag, block tag, op tag, status).
    #[error("invalid {what} tag {tag}")]
    InvalidTag {
        /// Which tag.
        what: &'static str,
        /// The value found.
        tag: u8,
    },
    /// A string was not UTF-8.
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(&'static str),
    /// A zstd block did not decompress.
    #[error("invalid zstd block: {0}")]
    Zstd(String),
    /// A block or a block stream would inflate beyond its limit.
    #[error("{what} inflates beyond {limit} bytes")]
    TooLarge {
        /// What grew too large.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A delta broke chitchat's grouping rules (an op before any Node op, a node twice,
    /// key-value versions not strictly increasing or starting at 0, or not above a preceding
    /// SetMaxVersion; a SetMaxVersion below its node's key-values).
    #[error("malformed delta: {0}")]
    MalformedDelta(&'static str),
    /// The node authenticates gossip and the datagram's tag is missing or no key of its ring
    /// verifies it ([`crate::auth`]). Nothing of it was applied.
    #[error("unauthenticated: no valid tag for this cluster's keys")]
    Unauthenticated,
    /// A partial digest entry at the end of a V1 digest.
    #[error("malformed digest: {0}")]
    MalformedDigest(&'static str),
    /// The datagram is larger than [`MAX_DATAGRAM_SIZE`].
    #[error("datagram of {0} bytes exceeds the maximum of {max}", max = MAX_DATAGRAM_SIZE)]
    Oversized(usize),
    /// A malformed cohort envelope.
    #[error("malformed envelope: {0}")]
    Envelope(&'static str),
    /// Bytes were left over after a complete cohort-mode packet.
    #[error("{0} bytes after the end of the packet")]
    TrailingBytes(usize),
}
