//! The chitchat 0.13 message codec: primitives (little-endian integers, length-prefixed strings,
//! socket addresses, node ids), digests in both protocol versions, delta ops and their grouping
//! rules, and whole datagrams (header and body).
//!
//! It owns the byte layout of `shared/chitchat-wire.md` sections 1.1 to 1.7. Block framing and
//! zstd belong to `blocks`, the budgeted delta encoder to `delta_writer`.
//!
//! It must never panic, index out of bounds, or allocate more than the input justifies: every
//! read is checked against the bytes left, collection capacities are bounded by those bytes,
//! and every malformed input is reported as a [`DecodeError`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::blocks::{self, StreamWriter};
use super::delta_writer::DeltaWriter;
use super::{
    CHITCHAT_MAGIC, Compression, DecodeError, DeletionStatus, Delta, Digest, HEADER_LEN,
    KeyValueUpdate, MAX_DATAGRAM_SIZE, Message, MessageType, NodeDelta, NodeDigest,
    ProtocolVersion,
};
use std::borrow::Cow;

use crate::{NodeId, NodeIdRef};

/// The longest string the wire can carry (its length is a `u16`).
const MAX_WIRE_STR: usize = u16::MAX as usize;

/// Op tags of a delta stream.
const OP_NODE: u8 = 0;
const OP_KEY_VALUE: u8 = 1;
const OP_SET_MAX_VERSION: u8 = 2;

/// The encoded size of a SetMaxVersion op (tag and `u64`).
pub(super) const SET_MAX_VERSION_OP_LEN: usize = 9;

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// A cursor over input bytes. Every read checks the bytes left and fails with
/// [`DecodeError::Truncated`] naming the field.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(DecodeError::Truncated {
                what,
                needed: n - self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A `u16` length then that many UTF-8 bytes.
    fn str(&mut self, len_what: &'static str, what: &'static str) -> Result<&'a str, DecodeError> {
        let len = usize::from(self.u16(len_what)?);
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8(what))
    }

    pub(crate) fn socket_addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip = match self.u8("IP tag")? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>("IPv4 address")?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>("IPv6 address")?)),
            tag => return Err(DecodeError::InvalidTag { what: "IP", tag }),
        };
        let port = self.u16("port")?;
        Ok(SocketAddr::new(ip, port))
    }

    fn node_id(&mut self) -> Result<NodeId, DecodeError> {
        Ok(self.node_id_ref()?.to_owned())
    }

    fn node_id_ref(&mut self) -> Result<NodeIdRef<'a>, DecodeError> {
        let name = self.str("node name length", "node name")?;
        let generation = self.u64("generation")?;
        let gossip_addr = self.socket_addr()?;
        Ok(NodeIdRef {
            name,
            generation,
            gossip_addr,
        })
    }

    /// A digest entry whose id is left as its encoded bytes: only lengths and the IP tag are
    /// read, nothing is built from the id's parts. With `CHECK_UTF8` the name is checked too,
    /// so that this validates an entry with the errors [`digest_entry`](Self::digest_entry)
    /// reports (a digest is validated once when it arrives); without, it walks an entry
    /// already validated.
    ///
    /// Building the name, generation and address here (an enum, written in small pieces and
    /// read back in wide ones) stalled on store forwarding and cost more than the rest of the
    /// walk (measured with `perf annotate` on the loopback bench).
    #[inline(always)]
    fn raw_digest_entry<const CHECK_UTF8: bool>(
        &mut self,
    ) -> Result<(RawNodeId<'a>, NodeDigest), DecodeError> {
        let start = self.rest;
        let len = usize::from(self.u16("node name length")?);
        let name = self.take(len, "node name")?;
        if CHECK_UTF8 && !name.is_ascii() && std::str::from_utf8(name).is_err() {
            return Err(DecodeError::InvalidUtf8("node name"));
        }
        self.take(8, "generation")?;
        match self.u8("IP tag")? {
            4 => self.take(4, "IPv4 address")?,
            6 => self.take(16, "IPv6 address")?,
            tag => return Err(DecodeError::InvalidTag { what: "IP", tag }),
        };
        self.take(2, "port")?;
        let bytes = start
            .get(..start.len() - self.rest.len())
            .unwrap_or_default();
        let digest = NodeDigest {
            heartbeat: self.u64("heartbeat")?,
            last_gc_version: self.u64("last_gc_version")?,
            max_version: self.u64("max_version")?,
        };
        Ok((RawNodeId { bytes }, digest))
    }

    fn digest_entry(&mut self) -> Result<(NodeIdRef<'a>, NodeDigest), DecodeError> {
        let node = self.node_id_ref()?;
        let digest = NodeDigest {
            heartbeat: self.u64("heartbeat")?,
            last_gc_version: self.u64("last_gc_version")?,
            max_version: self.u64("max_version")?,
        };
        Ok((node, digest))
    }
}

/// Decodes the 4-byte header of a chitchat datagram: magic, protocol version and message type.
///
/// # Errors
///
/// [`DecodeError::Truncated`] when fewer than 4 bytes are given, [`DecodeError::BadMagic`],
/// [`DecodeError::UnknownVersion`] or [`DecodeError::UnknownMessageType`].
///
/// ```
/// use cohort_core::wire::{MessageType, ProtocolVersion, decode_header};
/// let header = decode_header(&[0x53, 0xb0, 0x01, 0x03])?;
/// assert_eq!(header, (ProtocolVersion::V1, MessageType::BadCluster));
/// # Ok::<(), cohort_core::wire::DecodeError>(())
/// ```
pub fn decode_header(bytes: &[u8]) -> Result<(ProtocolVersion, MessageType), DecodeError> {
    read_header(&mut Reader::new(bytes))
}

fn read_header(r: &mut Reader<'_>) -> Result<(ProtocolVersion, MessageType), DecodeError> {
    let magic = r.u16("magic")?;
    if magic != CHITCHAT_MAGIC {
        return Err(DecodeError::BadMagic(magic));
    }
    let version = r.u8("protocol version")?;
    let version =
        ProtocolVersion::from_byte(version).ok_or(DecodeError::UnknownVersion(version))?;
    let kind = r.u8("message type")?;
    let kind = MessageType::from_byte(kind).ok_or(DecodeError::UnknownMessageType(kind))?;
    Ok((version, kind))
}

/// Decodes a bare chitchat datagram (`53 b0`, version, type, body).
///
/// The body follows `shared/chitchat-wire.md` section 1.4: a Syn is a digest then the cluster
/// id, a SynAck a digest then a delta, an Ack a delta, and a BadCluster has no body. Digests
/// use the encoding of the datagram's version; deltas are block streams in both versions.
///
/// **Trailing bytes after a well-formed body are ignored**, as chitchat's UDP receive path
/// ignores them. The rules for deltas (section 1.7) are checked: an op before any Node op, a
/// node twice, or key-value versions that are 0 or not strictly increasing are errors. Where the
/// spec leaves room, this decoder decides:
///
/// - A SetMaxVersion op sets the node delta's `max_version`; the last op that sets it wins (a
///   key-value op sets it to its own version).
/// - A key-value op after a SetMaxVersion must have a version above the value set.
/// - A SetMaxVersion after key-values must not be below the last key-value's version.
///
/// So a decoded [`NodeDelta`]'s key-values are strictly increasing from 1 and its
/// `max_version` is never below any of them. chitchat itself never mixes the two kinds of op.
///
/// # Errors
///
/// Any [`DecodeError`]; the datagram must then be dropped whole. Datagrams over
/// [`MAX_DATAGRAM_SIZE`] are [`DecodeError::Oversized`]. No input makes this function panic,
/// and it allocates at most about [`MAX_STREAM_DECOMPRESSED`](super::MAX_STREAM_DECOMPRESSED)
/// bytes per block stream plus the decoded values.
///
/// ```
/// use cohort_core::wire::{Delta, Message, ProtocolVersion, decode_chitchat};
/// // The empty Ack of shared/chitchat-wire.md, TV-3.
/// let (version, message) = decode_chitchat(&[0x53, 0xb0, 0x00, 0x02, 0x00])?;
/// assert_eq!(version, ProtocolVersion::V0);
/// assert_eq!(message, Message::Ack { delta: Delta::default() });
/// # Ok::<(), cohort_core::wire::DecodeError>(())
/// ```
pub fn decode_chitchat(bytes: &[u8]) -> Result<(ProtocolVersion, Message), DecodeError> {
    let (version, view) = decode_chitchat_view(bytes)?;
    Ok((version, view.to_message()))
}

/// Decodes a bare chitchat datagram like [`decode_chitchat`], leaving digests in the received
/// bytes: node names are not copied, and each entry is read on iteration
/// ([`DigestView::iter`]). Everything is validated here, so iteration cannot fail.
///
/// # Errors
///
/// The same as [`decode_chitchat`].
pub fn decode_chitchat_view(
    bytes: &[u8],
) -> Result<(ProtocolVersion, MessageView<'_>), DecodeError> {
    if bytes.len() > MAX_DATAGRAM_SIZE {
        return Err(DecodeError::Oversized(bytes.len()));
    }
    let mut r = Reader::new(bytes);
    let (version, kind) = read_header(&mut r)?;
    let message = match kind {
        MessageType::Syn => {
            let digest = read_digest(&mut r, version)?;
            let cluster_id = r.str("cluster id length", "cluster id")?;
            MessageView::Syn { digest, cluster_id }
        }
        MessageType::SynAck => {
            let digest = read_digest(&mut r, version)?;
            let delta = read_delta(&mut r)?;
            MessageView::SynAck { digest, delta }
        }
        MessageType::Ack => MessageView::Ack {
            delta: read_delta(&mut r)?,
        },
        MessageType::BadCluster => MessageView::BadCluster,
    };
    Ok((version, message))
}

/// A validated digest still in its encoded form (borrowed from the datagram in V0, the
/// decompressed payload in V1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestView<'a> {
    /// The entries back to back.
    bytes: Cow<'a, [u8]>,
    /// How many entries.
    len: usize,
}

impl DigestView<'_> {
    /// The entries, in wire order.
    #[must_use]
    pub fn iter(&self) -> DigestEntries<'_> {
        DigestEntries {
            reader: Reader::new(&self.bytes),
            remaining: self.len,
        }
    }

    /// The number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The entries, in wire order, with names as bytes: the view was validated when it was
    /// made, so a name's UTF-8 need not be checked again to compare it with a known one.
    pub(crate) fn iter_raw(&self) -> impl Iterator<Item = (RawNodeId<'_>, NodeDigest)> + '_ {
        let mut reader = Reader::new(&self.bytes);
        let mut remaining = self.len;
        std::iter::from_fn(move || {
            if remaining == 0 {
                return None;
            }
            remaining -= 1;
            // Validated when the view was made: an error cannot happen, and would end the walk.
            reader.raw_digest_entry::<false>().ok().or_else(|| {
                remaining = 0;
                None
            })
        })
    }

    /// Whether there is no entry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The owned digest.
    #[must_use]
    pub fn to_digest(&self) -> Digest {
        Digest {
            entries: self.iter().map(|(id, d)| (id.to_owned(), d)).collect(),
        }
    }
}

/// A node id read from a validated digest, left as its encoded bytes: name length, name,
/// generation, IP tag, address and port (section 1.2 of the wire format). Its parts are read
/// from the bytes only when asked for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawNodeId<'a> {
    /// The whole encoded id.
    pub(crate) bytes: &'a [u8],
}

impl<'a> RawNodeId<'a> {
    /// The parts (`None` only if the bytes are not a valid encoded id, which a validated
    /// digest rules out).
    pub(crate) fn to_ref(self) -> Option<NodeIdRef<'a>> {
        let mut reader = Reader::new(self.bytes);
        let id = reader.node_id_ref().ok()?;
        reader.is_empty().then_some(id)
    }

    /// The name's bytes (empty if the bytes are not a valid encoded id).
    #[cfg(test)]
    pub(crate) fn name(&self) -> &'a [u8] {
        let mut reader = Reader::new(self.bytes);
        reader
            .u16("node name length")
            .and_then(|len| reader.take(usize::from(len), "node name"))
            .unwrap_or_default()
    }
}

/// The entries of a [`DigestView`].
#[derive(Clone, Debug)]
pub struct DigestEntries<'a> {
    reader: Reader<'a>,
    remaining: usize,
}

impl<'a> Iterator for DigestEntries<'a> {
    type Item = (NodeIdRef<'a>, NodeDigest);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        // Validated when the view was made: an error here cannot happen, and would only end
        // the iteration.
        match self.reader.digest_entry() {
            Ok(entry) => {
                self.remaining -= 1;
                Some(entry)
            }
            Err(_) => {
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

/// A chitchat message whose digest (if any) is a [`DigestView`]. See [`decode_chitchat_view`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageView<'a> {
    /// See [`Message::Syn`].
    Syn {
        /// The initiator's digest.
        digest: DigestView<'a>,
        /// The initiator's cluster id.
        cluster_id: &'a str,
    },
    /// See [`Message::SynAck`].
    SynAck {
        /// The responder's digest.
        digest: DigestView<'a>,
        /// What the initiator lacks.
        delta: Delta,
    },
    /// See [`Message::Ack`].
    Ack {
        /// What the responder lacks.
        delta: Delta,
    },
    /// See [`Message::BadCluster`].
    BadCluster,
}

impl MessageView<'_> {
    /// The owned message.
    #[must_use]
    pub fn to_message(&self) -> Message {
        match self {
            Self::Syn { digest, cluster_id } => Message::Syn {
                digest: digest.to_digest(),
                cluster_id: (*cluster_id).to_owned(),
            },
            Self::SynAck { digest, delta } => Message::SynAck {
                digest: digest.to_digest(),
                delta: delta.clone(),
            },
            Self::Ack { delta } => Message::Ack {
                delta: delta.clone(),
            },
            Self::BadCluster => Message::BadCluster,
        }
    }

    /// Consumes the view into the owned message.
    #[must_use]
    pub fn into_message(self) -> Message {
        match self {
            Self::Syn { digest, cluster_id } => Message::Syn {
                digest: digest.to_digest(),
                cluster_id: cluster_id.to_owned(),
            },
            Self::SynAck { digest, delta } => Message::SynAck {
                digest: digest.to_digest(),
                delta,
            },
            Self::Ack { delta } => Message::Ack { delta },
            Self::BadCluster => Message::BadCluster,
        }
    }
}

fn read_digest<'a>(
    r: &mut Reader<'a>,
    version: ProtocolVersion,
) -> Result<DigestView<'a>, DecodeError> {
    match version {
        ProtocolVersion::V0 => {
            let count = usize::from(r.u16("digest entry count")?);
            let start = r.rest;
            for _ in 0..count {
                r.raw_digest_entry::<true>()?;
            }
            let used = start.len() - r.rest.len();
            Ok(DigestView {
                bytes: Cow::Borrowed(&start[..used]),
                len: count,
            })
        }
        ProtocolVersion::V1 => {
            let payload = blocks::read_stream(r)?;
            let mut p = Reader::new(&payload);
            let mut count = 0;
            while !p.is_empty() {
                p.raw_digest_entry::<true>().map_err(|e| match e {
                    DecodeError::Truncated { .. } => {
                        DecodeError::MalformedDigest("partial entry at the end of a V1 digest")
                    }
                    other => other,
                })?;
                count += 1;
            }
            Ok(DigestView {
                bytes: Cow::Owned(payload),
                len: count,
            })
        }
    }
}

fn read_status(byte: u8) -> Result<DeletionStatus, DecodeError> {
    match byte {
        0 => Ok(DeletionStatus::Set),
        1 => Ok(DeletionStatus::Deleted),
        2 => Ok(DeletionStatus::DeleteAfterTtl),
        tag => Err(DecodeError::InvalidTag {
            what: "deletion status",
            tag,
        }),
    }
}

pub(super) fn read_delta(r: &mut Reader<'_>) -> Result<Delta, DecodeError> {
    let payload = blocks::read_stream(r)?;
    let mut p = Reader::new(&payload);
    let mut nodes: Vec<NodeDelta> = Vec::new();
    while !p.is_empty() {
        match p.u8("delta op tag")? {
            OP_NODE => {
                let node = p.node_id()?;
                let last_gc_version = p.u64("last_gc_version")?;
                let from_version_excluded = p.u64("from_version_excluded")?;
                nodes.push(NodeDelta {
                    node,
                    last_gc_version,
                    from_version_excluded,
                    max_version: 0,
                    key_values: Vec::new(),
                });
            }
            OP_KEY_VALUE => {
                let key = p.str("key length", "key")?;
                let value = p.str("value length", "value")?;
                let version = p.u64("key-value version")?;
                let status = read_status(p.u8("deletion status")?)?;
                let Some(current) = nodes.last_mut() else {
                    return Err(DecodeError::MalformedDelta(
                        "key-value op before any node op",
                    ));
                };
                if version == 0 {
                    return Err(DecodeError::MalformedDelta("key-value version 0"));
                }
                if version <= current.max_version {
                    return Err(DecodeError::MalformedDelta(
                        "key-value versions not strictly increasing",
                    ));
                }
                current.max_version = version;
                current.key_values.push(KeyValueUpdate {
                    key: key.to_owned(),
                    value: value.to_owned(),
                    version,
                    status,
                });
            }
            OP_SET_MAX_VERSION => {
                let max_version = p.u64("max_version")?;
                let Some(current) = nodes.last_mut() else {
                    return Err(DecodeError::MalformedDelta(
                        "SetMaxVersion op before any node op",
                    ));
                };
                if current
                    .key_values
                    .last()
                    .is_some_and(|kv| max_version < kv.version)
                {
                    return Err(DecodeError::MalformedDelta(
                        "SetMaxVersion below a key-value version of its node",
                    ));
                }
                current.max_version = max_version;
            }
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "delta op",
                    tag,
                });
            }
        }
    }
    let mut ids: Vec<&NodeId> = nodes.iter().map(|n| &n.node).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(DecodeError::MalformedDelta(
            "the same node twice in one delta",
        ));
    }
    Ok(Delta { nodes })
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// `s`, cut to the longest prefix of at most 65,535 bytes that ends on a character boundary.
///
/// The wire's string length is a `u16`. chitchat truncates the length and corrupts the stream;
/// cohort truncates the string instead, so the datagram stays well-formed.
pub(super) fn wire_str(s: &str) -> &str {
    if s.len() <= MAX_WIRE_STR {
        return s;
    }
    let mut end = MAX_WIRE_STR;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let s = wire_str(s);
    // `wire_str` keeps at most u16::MAX bytes.
    put_u16(out, u16::try_from(s.len()).unwrap_or(u16::MAX));
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn put_socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    put_u16(out, addr.port());
}

fn put_node_id(out: &mut Vec<u8>, node: &NodeId) {
    put_str(out, node.name());
    put_u64(out, node.generation());
    put_socket_addr(out, node.gossip_addr());
}

/// The encoded size of a node id: `17 + len(name)` for IPv4, `29 + len(name)` for IPv6.
pub(super) fn node_id_len(node: &NodeId) -> usize {
    let ip = if node.gossip_addr().is_ipv4() { 4 } else { 16 };
    2 + wire_str(node.name()).len() + 8 + 1 + ip + 2
}

/// How many bytes of an encoded node id [`WireId`] keeps inline: names of up to 39 bytes with
/// an IPv4 address, 27 with an IPv6 one.
const WIRE_ID_INLINE: usize = 56;

/// A node id's wire encoding, kept inline (when it fits in [`WIRE_ID_INLINE`] bytes) by a
/// state that writes and matches the same ids in every digest: writing it is one fixed-size
/// copy, and matching a digest entry against it one comparison of bytes, with no pointer to
/// follow.
#[derive(Clone, Debug)]
pub(crate) struct WireId {
    /// The encoded length, or 0 when the encoding does not fit (never a real length: the
    /// shortest id takes 17 bytes).
    len: u8,
    bytes: [u8; WIRE_ID_INLINE],
}

impl WireId {
    /// The encoding of `node`, inline if it fits.
    pub(crate) fn new(node: NodeIdRef<'_>) -> Self {
        let mut wire = Self {
            len: 0,
            bytes: [0; WIRE_ID_INLINE],
        };
        let ip: &[u8] = match node.gossip_addr {
            SocketAddr::V4(a) => &a.ip().octets(),
            // The wire carries neither flow info nor scope id, but `NodeId` compares them:
            // two ids that differ only there share one encoding, so such an id is never
            // matched by its bytes.
            SocketAddr::V6(a) if a.flowinfo() != 0 || a.scope_id() != 0 => return wire,
            SocketAddr::V6(a) => &a.ip().octets(),
        };
        let name = node.name.as_bytes();
        let encoded = 2 + name.len() + 8 + 1 + ip.len() + 2;
        let (Some(out), Ok(name_len), Ok(len)) = (
            wire.bytes.get_mut(..encoded),
            u16::try_from(name.len()),
            u8::try_from(encoded),
        ) else {
            // Too long to keep inline.
            return wire;
        };
        let tag = if ip.len() == 4 { 4 } else { 6 };
        let parts: [&[u8]; 6] = [
            &name_len.to_le_bytes(),
            name,
            &node.generation.to_le_bytes(),
            &[tag],
            ip,
            &node.gossip_addr.port().to_le_bytes(),
        ];
        let mut at = 0;
        for part in parts {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        wire.len = len;
        wire
    }

    /// The encoded id, when kept inline.
    pub(crate) fn as_bytes(&self) -> Option<&[u8]> {
        match self.len {
            0 => None,
            n => self.bytes.get(..usize::from(n)),
        }
    }

    /// Appends the encoded id: one fixed-size copy (no call into `memcpy` for a short
    /// length), cut back to the real length. `node` is the id itself, written field by field
    /// when it was too long to keep inline.
    fn put(&self, out: &mut Vec<u8>, node: &NodeId) {
        if self.len == 0 {
            put_node_id(out, node);
            return;
        }
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        out.truncate(start + usize::from(self.len));
    }
}

/// How a digest entry's node id gets written: field by field, or from a kept [`WireId`].
pub(crate) trait DigestKey {
    /// Appends the encoded id.
    fn put_id(&self, out: &mut Vec<u8>);
}

impl DigestKey for &NodeId {
    fn put_id(&self, out: &mut Vec<u8>) {
        put_node_id(out, self);
    }
}

impl DigestKey for (&NodeId, &WireId) {
    fn put_id(&self, out: &mut Vec<u8>) {
        self.1.put(out, self.0);
    }
}

fn put_digest_entry(out: &mut Vec<u8>, node: &impl DigestKey, digest: &NodeDigest) {
    node.put_id(out);
    put_u64(out, digest.heartbeat);
    put_u64(out, digest.last_gc_version);
    put_u64(out, digest.max_version);
}

/// The encoded size of a Node op.
pub(super) fn node_op_len(node: &NodeId) -> usize {
    1 + node_id_len(node) + 16
}

pub(super) fn put_node_op(
    out: &mut Vec<u8>,
    node: &NodeId,
    last_gc_version: u64,
    from_version_excluded: u64,
) {
    out.push(OP_NODE);
    put_node_id(out, node);
    put_u64(out, last_gc_version);
    put_u64(out, from_version_excluded);
}

/// The encoded size of a KeyValue op: `14 + len(key) + len(value)`.
pub(super) fn key_value_op_len(key: &str, value: &str) -> usize {
    14 + wire_str(key).len() + wire_str(value).len()
}

pub(super) fn put_key_value_op(
    out: &mut Vec<u8>,
    key: &str,
    value: &str,
    version: u64,
    status: DeletionStatus,
) {
    out.push(OP_KEY_VALUE);
    put_str(out, key);
    put_str(out, value);
    put_u64(out, version);
    out.push(match status {
        DeletionStatus::Set => 0,
        DeletionStatus::Deleted => 1,
        DeletionStatus::DeleteAfterTtl => 2,
    });
}

pub(super) fn put_set_max_version_op(out: &mut Vec<u8>, max_version: u64) {
    out.push(OP_SET_MAX_VERSION);
    put_u64(out, max_version);
}

/// Appends the 4-byte header of a chitchat datagram: magic `53 b0`, version, message type.
///
/// ```
/// use cohort_core::wire::{MessageType, ProtocolVersion, encode_header};
/// let mut out = Vec::new();
/// encode_header(ProtocolVersion::V0, MessageType::Ack, &mut out);
/// assert_eq!(out, [0x53, 0xb0, 0x00, 0x02]);
/// ```
pub fn encode_header(version: ProtocolVersion, message_type: MessageType, out: &mut Vec<u8>) {
    put_u16(out, CHITCHAT_MAGIC);
    out.push(version.to_byte());
    out.push(message_type.to_byte());
}

/// Appends a digest in `version`'s encoding and returns the number of bytes written.
///
/// V0: a `u16` entry count, then the entries (a digest of more than 65,535 entries is cut to
/// its first 65,535, which could never fit a datagram anyway). V1: a block stream of the
/// entries, cut into 16,384-byte chunks, each written per `compression` (see [`Compression`]).
/// Entries are written in the digest's order; chitchat sorts them by [`NodeId`].
pub fn encode_digest(
    version: ProtocolVersion,
    digest: &Digest,
    compression: Compression,
    out: &mut Vec<u8>,
) -> usize {
    encode_digest_entries(
        version,
        digest.entries.iter().map(|(node, entry)| (node, *entry)),
        compression,
        out,
    )
}

/// [`encode_digest`] from any sequence of entries, so that a state machine can write its
/// digest straight from its own storage without building a [`Digest`] first. Returns the
/// number of bytes written.
pub fn encode_digest_entries<'a>(
    version: ProtocolVersion,
    entries: impl IntoIterator<Item = (&'a NodeId, NodeDigest)>,
    compression: Compression,
    out: &mut Vec<u8>,
) -> usize {
    encode_digest_keyed(version, entries, compression, out)
}

/// [`encode_digest_entries`] with each id written as its [`DigestKey`] says.
pub(crate) fn encode_digest_keyed<K: DigestKey>(
    version: ProtocolVersion,
    entries: impl IntoIterator<Item = (K, NodeDigest)>,
    compression: Compression,
    out: &mut Vec<u8>,
) -> usize {
    let start = out.len();
    match version {
        ProtocolVersion::V0 => {
            // The count comes first: write a placeholder and patch it.
            put_u16(out, 0);
            let mut count: u16 = 0;
            for (node, entry) in entries {
                if count == u16::MAX {
                    break;
                }
                put_digest_entry(out, &node, &entry);
                count += 1;
            }
            out[start..start + 2].copy_from_slice(&count.to_le_bytes());
        }
        ProtocolVersion::V1 => {
            let mut stream = StreamWriter::new(compression);
            for (node, entry) in entries {
                put_digest_entry(stream.pending_mut(), &node, &entry);
                stream.settle();
            }
            stream.finish(out);
        }
    }
    out.len() - start
}

/// The exact number of bytes [`encode_digest`] writes for this digest.
///
/// For V0 this is arithmetic. For V1 with [`Compression::Zstd`] the size depends on the
/// compressed output, so the digest is encoded into a scratch buffer: when the digest is also
/// going to be sent, calling [`encode_digest`] and using its return value is cheaper.
#[must_use]
pub fn encoded_digest_len(
    version: ProtocolVersion,
    digest: &Digest,
    compression: Compression,
) -> usize {
    let raw: usize = digest
        .entries
        .iter()
        .take(match version {
            ProtocolVersion::V0 => usize::from(u16::MAX),
            ProtocolVersion::V1 => usize::MAX,
        })
        .map(|(node, _)| node_id_len(node) + 24)
        .sum();
    match (version, compression) {
        (ProtocolVersion::V0, _) => 2 + raw,
        (ProtocolVersion::V1, Compression::None) => blocks::raw_stream_len(raw),
        (ProtocolVersion::V1, Compression::Zstd) => encode_digest(
            version,
            digest,
            compression,
            &mut Vec::with_capacity(raw + 1),
        ),
    }
}

/// Appends a complete Syn datagram whose digest is `entries` (see [`encode_digest_entries`]),
/// without building a [`Message`] first.
pub fn encode_syn<'a>(
    version: ProtocolVersion,
    entries: impl IntoIterator<Item = (&'a NodeId, NodeDigest)>,
    cluster_id: &str,
    compression: Compression,
    out: &mut Vec<u8>,
) {
    encode_syn_keyed(version, entries, cluster_id, compression, out);
}

/// [`encode_syn`] with each id written as its [`DigestKey`] says.
pub(crate) fn encode_syn_keyed<K: DigestKey>(
    version: ProtocolVersion,
    entries: impl IntoIterator<Item = (K, NodeDigest)>,
    cluster_id: &str,
    compression: Compression,
    out: &mut Vec<u8>,
) {
    encode_header(version, MessageType::Syn, out);
    encode_digest_keyed(version, entries, compression, out);
    put_str(out, cluster_id);
}

/// chitchat's `delta_mtu`: the byte budget left for a delta in a datagram whose other parts
/// (besides the 4-byte header) take `reserved` bytes. `65,507 − 4 − reserved`, saturating at 0.
///
/// For a SynAck, `reserved` is the encoded length of the digest it carries (in the version it
/// is actually encoded in), plus the envelope's length when the datagram is enveloped. For an
/// Ack it is 0 (65,503), or the envelope's length.
#[must_use]
pub const fn delta_budget(reserved: usize) -> usize {
    MAX_DATAGRAM_SIZE
        .saturating_sub(HEADER_LEN)
        .saturating_sub(reserved)
}

/// Appends `message` as a complete chitchat datagram, with zstd blocks where they help (as
/// chitchat does). See [`encode_chitchat_with`].
///
/// ```
/// use cohort_core::wire::{Message, ProtocolVersion, decode_chitchat, encode_chitchat};
/// let mut out = Vec::new();
/// encode_chitchat(ProtocolVersion::V1, &Message::BadCluster, &mut out);
/// assert_eq!(out, [0x53, 0xb0, 0x01, 0x03]);
/// assert_eq!(decode_chitchat(&out)?, (ProtocolVersion::V1, Message::BadCluster));
/// # Ok::<(), cohort_core::wire::DecodeError>(())
/// ```
pub fn encode_chitchat(version: ProtocolVersion, message: &Message, out: &mut Vec<u8>) {
    encode_chitchat_with(version, message, Compression::Zstd, out);
}

/// Appends `message` as a complete chitchat datagram, writing block streams per
/// `compression`.
///
/// Nothing is size-limited here: deltas go through an unbounded [`DeltaWriter`], and the result
/// can exceed [`MAX_DATAGRAM_SIZE`]. Use [`DeltaWriter`] with a budget to build messages that
/// must fit. Each [`NodeDelta`] is written as its Node op, its key-values in the order given,
/// and, only when it has no key-values and `max_version > 0`, a SetMaxVersion op (chitchat's
/// rule: otherwise `max_version` is implied by the last key-value and the field is not
/// written). The encoder does not check chitchat's grouping rules: values that break them
/// (duplicate nodes, non-increasing versions) encode to bytes every decoder rejects.
pub fn encode_chitchat_with(
    version: ProtocolVersion,
    message: &Message,
    compression: Compression,
    out: &mut Vec<u8>,
) {
    encode_header(version, message.message_type(), out);
    match message {
        Message::Syn { digest, cluster_id } => {
            encode_digest(version, digest, compression, out);
            put_str(out, cluster_id);
        }
        Message::SynAck { digest, delta } => {
            encode_digest(version, digest, compression, out);
            encode_delta(delta, compression, out);
        }
        Message::Ack { delta } => encode_delta(delta, compression, out),
        Message::BadCluster => {}
    }
}

fn encode_delta(delta: &Delta, compression: Compression, out: &mut Vec<u8>) {
    let mut writer = DeltaWriter::unbounded(compression);
    for node in &delta.nodes {
        writer.add_node(&node.node, node.last_gc_version, node.from_version_excluded);
        for kv in &node.key_values {
            writer.add_key_value_update(kv);
        }
        if node.key_values.is_empty() && node.max_version > 0 {
            writer.add_set_max_version(node.max_version);
        }
    }
    writer.finish(out);
}
