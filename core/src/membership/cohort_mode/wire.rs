//! cohort mode's datagrams: probes, their answers, gossip and table syncs, each with the
//! membership updates it carries, in at most [`MAX_PACKET`] bytes (`docs/cohort-mode.md`).
//!
//! Owns [`Packet`], [`Body`], [`Update`] and their encoding. Decoding checks every length
//! against the input, allocates only what the input holds, and never panics.

use std::net::IpAddr;

use crate::NodeId;
use crate::wire::{
    DecodeError, DeletionStatus, KeyValueUpdate, NodeDelta, Reader, put_socket_addr,
};

/// The first two bytes of a cohort-mode packet (`4d c0`), after the envelope.
pub const COHORT_MODE_MAGIC: u16 = 0xC04D;

/// The format version this code writes and reads.
pub const COHORT_MODE_VERSION: u8 = 1;

/// The largest packet (without its envelope): with the envelope and its tag, a datagram stays
/// under 1,400 bytes, which no real network fragments.
pub const MAX_PACKET: usize = 1_400 - 64;

/// How many buckets a table summary has: a sync sends only the records of the buckets whose
/// summaries differ.
pub const SYNC_BUCKETS: usize = 64;

/// The longest node name a packet carries.
pub const MAX_NAME_LEN: usize = 255;

/// What a member is, as an update says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpdateKind {
    /// Alive at the incarnation (a refutation when the incarnation is new).
    Alive = 1,
    /// Suspected of having failed at the incarnation.
    Suspect = 2,
    /// Declared failed at the incarnation.
    Dead = 3,
    /// Left the cluster (final for this generation).
    Left = 4,
}

impl UpdateKind {
    fn from_byte(byte: u8) -> Result<Self, DecodeError> {
        Ok(match byte {
            1 => Self::Alive,
            2 => Self::Suspect,
            3 => Self::Dead,
            4 => Self::Left,
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "update",
                    tag,
                });
            }
        })
    }
}

/// One piece of membership news.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// What it says.
    pub kind: UpdateKind,
    /// About whom.
    pub id: NodeId,
    /// At which incarnation of that member (raised by the member to refute a suspicion).
    pub incarnation: u64,
}

impl Update {
    /// Its encoded length.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        1 + 8 + id_len(&self.id)
    }
}

/// What a packet is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// A probe of the receiver's generation `target_generation` (another generation at that
    /// address does not answer).
    Ping {
        /// The prober's sequence number, echoed by the answer.
        seq: u32,
        /// The generation probed.
        target_generation: u64,
    },
    /// The answer to a `Ping` (or one relayed for a `PingReq`).
    Ack {
        /// The `Ping`'s (or `PingReq`'s) sequence number.
        seq: u32,
    },
    /// Asks the receiver to probe `target` and relay its `Ack`.
    PingReq {
        /// The requester's sequence number, echoed by the relayed `Ack` or the `Nack`.
        seq: u32,
        /// The member to probe.
        target: NodeId,
    },
    /// The relay's probe of a `PingReq` went unanswered (the requester's own links work).
    Nack {
        /// The `PingReq`'s sequence number.
        seq: u32,
    },
    /// Nothing but the updates carried.
    Gossip,
    /// A summary of the sender's table; the receiver sends the records of every bucket whose
    /// summary differs from its own.
    SyncRequest {
        /// The sender's table summary, [`SYNC_BUCKETS`] values
        /// ([`table_summary`](super::CohortMembership::table_summary)).
        buckets: Vec<u64>,
        /// Whether the receiver should send its own summary back (a push-pull exchange).
        answer_back: bool,
    },
    /// Part of the sender's table: the updates carried are its records, and the key-value
    /// deltas what the receiver asked for (or, with no key-values, the versions a member's
    /// keys reached: a receiver behind asks for the rest with `KeysRequest`).
    SyncResponse,
    /// Asks for the key-values of the members its deltas name: each delta carries no
    /// key-values and states what the sender holds of that member (`last_gc_version`, and
    /// `from_version_excluded` = `max_version` = its max version). The receiver answers with
    /// what it has beyond that, in `SyncResponse` packets.
    KeysRequest,
}

impl Body {
    fn kind(&self) -> u8 {
        match self {
            Self::Ping { .. } => 1,
            Self::Ack { .. } => 2,
            Self::PingReq { .. } => 3,
            Self::Nack { .. } => 4,
            Self::Gossip => 5,
            Self::SyncRequest { .. } => 6,
            Self::SyncResponse => 7,
            Self::KeysRequest => 8,
        }
    }
}

/// A whole packet: the cluster, the sender, what it is for, and the updates it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// A hash of the sender's cluster id ([`cluster_hash`]).
    pub cluster: u64,
    /// The sender.
    pub from: NodeId,
    /// The sender's incarnation (a packet from it proves it alive at this incarnation).
    pub incarnation: u64,
    /// The sender's own key-value version: a receiver whose copy is behind asks it for the
    /// rest.
    pub keys_version: u64,
    /// What the packet is for.
    pub body: Body,
    /// Membership news carried along.
    pub updates: Vec<Update>,
    /// Key-value deltas carried along (after the membership news, whatever their order in the
    /// packet).
    pub deltas: Vec<NodeDelta>,
}

/// The hash of a cluster id that packets carry (FNV-1a, 64 bits).
#[must_use]
pub fn cluster_hash(cluster_id: &str) -> u64 {
    crate::hash::Fnv1a64::new()
        .write(cluster_id.as_bytes())
        .finish()
}

fn id_len(id: &NodeId) -> usize {
    let ip = match id.gossip_addr().ip() {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    };
    1 + id.name().len().min(MAX_NAME_LEN) + 8 + 1 + ip + 2
}

fn put_id(id: &NodeId, out: &mut Vec<u8>) {
    let name = id.name().as_bytes();
    let name = &name[..name.len().min(MAX_NAME_LEN)];
    out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(name);
    out.extend_from_slice(&id.generation().to_le_bytes());
    put_socket_addr(out, id.gossip_addr());
}

/// What every packet says of its sender.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Head<'a> {
    pub(crate) cluster: u64,
    pub(crate) from: &'a NodeId,
    pub(crate) incarnation: u64,
    pub(crate) keys: u64,
}

/// Writes the packet without its updates; returns where the update count byte is (the caller
/// appends updates with [`push_update`] and counts them there).
pub(crate) fn encode_head(head: &Head<'_>, body: &Body, out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(&COHORT_MODE_MAGIC.to_le_bytes());
    out.push(COHORT_MODE_VERSION);
    out.push(body.kind());
    out.extend_from_slice(&head.cluster.to_le_bytes());
    put_id(head.from, out);
    out.extend_from_slice(&head.incarnation.to_le_bytes());
    out.extend_from_slice(&head.keys.to_le_bytes());
    match body {
        Body::Ping {
            seq,
            target_generation,
        } => {
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&target_generation.to_le_bytes());
        }
        Body::Ack { seq } | Body::Nack { seq } => out.extend_from_slice(&seq.to_le_bytes()),
        Body::PingReq { seq, target } => {
            out.extend_from_slice(&seq.to_le_bytes());
            put_id(target, out);
        }
        Body::Gossip | Body::SyncResponse | Body::KeysRequest => {}
        Body::SyncRequest {
            buckets,
            answer_back,
        } => {
            for i in 0..SYNC_BUCKETS {
                out.extend_from_slice(&buckets.get(i).copied().unwrap_or(0).to_le_bytes());
            }
            out.push(u8::from(*answer_back));
        }
    }
    out.push(0);
    out.len() - 1
}

/// Appends `update` to a packet begun with [`encode_head`] if it fits in `limit` bytes (and
/// the count stays below 256); returns whether it did.
pub(crate) fn push_update(
    out: &mut Vec<u8>,
    count_at: usize,
    update: &Update,
    limit: usize,
) -> bool {
    if out[count_at] == u8::MAX || out.len() + update.encoded_len() > limit {
        return false;
    }
    out.push(update.kind as u8);
    out.extend_from_slice(&update.incarnation.to_le_bytes());
    put_id(&update.id, out);
    out[count_at] += 1;
    true
}

/// The bytes a key-value delta takes before its entries.
fn keys_head_len(id: &NodeId) -> usize {
    1 + id_len(id) + 8 + 8 + 8 + 1
}

/// The bytes one entry of a key-value delta takes.
fn entry_len(key: &str, value: &str) -> usize {
    2 + key.len() + 2 + value.len() + 8 + 1
}

/// The longest `key` + `value` a member named `id` can publish: a delta holding that one
/// entry must fit a [`Body::Gossip`] packet of [`MAX_PACKET`] bytes sent by a member with a
/// name of the longest length.
#[must_use]
pub fn max_entry_len(id: &NodeId) -> usize {
    let longest_sender = NodeId::new(
        "n".repeat(MAX_NAME_LEN),
        0,
        std::net::SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
    );
    let head = 2 + 1 + 1 + 8 + id_len(&longest_sender) + 8 + 1;
    MAX_PACKET.saturating_sub(head + keys_head_len(id) + entry_len("", ""))
}

/// Appends a key-value delta about `id` to a packet begun with [`encode_head`]: its collection
/// watermark `last_gc`, then as many of `entries` (the key-values above version `from`,
/// ascending by version) as fit in `limit` bytes. The delta's max version is that of the last
/// entry written, or `max` when all of them are. Returns how many entries were written, or
/// `None` when the delta did not fit at all (nothing appended).
#[allow(clippy::too_many_arguments)]
pub(crate) fn push_keys(
    out: &mut Vec<u8>,
    count_at: usize,
    id: &NodeId,
    last_gc: u64,
    from: u64,
    max: u64,
    entries: &[KeyEntry<'_>],
    limit: usize,
) -> Option<usize> {
    if out[count_at] == u8::MAX || out.len() + keys_head_len(id) > limit {
        return None;
    }
    let start = out.len();
    out.push(KEYS_ITEM);
    put_id(id, out);
    out.extend_from_slice(&last_gc.to_le_bytes());
    out.extend_from_slice(&from.to_le_bytes());
    let max_at = out.len();
    out.extend_from_slice(&max.to_le_bytes());
    let n_at = out.len();
    out.push(0);
    let mut written = 0usize;
    for entry in entries.iter().take(usize::from(u8::MAX)) {
        let (Ok(key_len), Ok(value_len)) = (
            u16::try_from(entry.key.len()),
            u16::try_from(entry.value.len()),
        ) else {
            break;
        };
        if out.len() + entry_len(entry.key, entry.value) > limit {
            break;
        }
        out.extend_from_slice(&key_len.to_le_bytes());
        out.extend_from_slice(entry.key.as_bytes());
        out.extend_from_slice(&value_len.to_le_bytes());
        out.extend_from_slice(entry.value.as_bytes());
        out.extend_from_slice(&entry.version.to_le_bytes());
        out.push(status_byte(entry.status));
        written += 1;
    }
    if written == 0 && !entries.is_empty() {
        out.truncate(start);
        return None;
    }
    if written < entries.len() {
        let last = entries[written - 1].version;
        out[max_at..max_at + 8].copy_from_slice(&last.to_le_bytes());
    }
    out[n_at] = u8::try_from(written).unwrap_or(u8::MAX);
    out[count_at] += 1;
    Some(written)
}

/// One key-value to write in a delta.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyEntry<'a> {
    pub(crate) key: &'a str,
    pub(crate) value: &'a str,
    pub(crate) version: u64,
    pub(crate) status: DeletionStatus,
}

impl<'a> KeyEntry<'a> {
    /// A stored entry under `key`.
    pub(crate) fn of(key: &'a str, v: &'a crate::membership::VersionedValue) -> Self {
        Self {
            key,
            value: &v.value,
            version: v.version,
            status: v.status,
        }
    }
}

/// The item tag of a key-value delta (membership updates use 1 to 4).
const KEYS_ITEM: u8 = 5;

fn status_byte(status: DeletionStatus) -> u8 {
    match status {
        DeletionStatus::Set => 0,
        DeletionStatus::Deleted => 1,
        DeletionStatus::DeleteAfterTtl => 2,
    }
}

/// A key-value delta's entries: versions strictly increasing above its `from`, none above its
/// max.
fn read_delta(r: &mut Reader<'_>) -> Result<NodeDelta, DecodeError> {
    let node = read_id(r)?;
    let last_gc_version = r.u64("last gc version")?;
    let from_version_excluded = r.u64("from version")?;
    let max_version = r.u64("max version")?;
    if from_version_excluded > max_version {
        return Err(DecodeError::MalformedDelta("starts above its max version"));
    }
    let count = r.u8("key-value count")?;
    // Each entry is at least 13 bytes: no allocation beyond what the input can hold.
    let mut key_values = Vec::with_capacity(usize::from(count).min(r.remaining() / 13));
    let mut last = from_version_excluded;
    for _ in 0..count {
        let key_len = usize::from(r.u16("key length")?);
        let key = std::str::from_utf8(r.take(key_len, "key")?)
            .map_err(|_| DecodeError::InvalidUtf8("key"))?;
        let value_len = usize::from(r.u16("value length")?);
        let value = std::str::from_utf8(r.take(value_len, "value")?)
            .map_err(|_| DecodeError::InvalidUtf8("value"))?;
        let version = r.u64("version")?;
        let status = match r.u8("deletion status")? {
            0 => DeletionStatus::Set,
            1 => DeletionStatus::Deleted,
            2 => DeletionStatus::DeleteAfterTtl,
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "deletion status",
                    tag,
                });
            }
        };
        if version <= last || version > max_version {
            return Err(DecodeError::MalformedDelta(
                "versions not increasing within the delta's range",
            ));
        }
        last = version;
        key_values.push(KeyValueUpdate {
            key: key.to_owned(),
            value: value.to_owned(),
            version,
            status,
        });
    }
    Ok(NodeDelta {
        node,
        last_gc_version,
        from_version_excluded,
        max_version,
        key_values,
    })
}

/// Encodes a whole packet: its membership updates, then its key-value deltas, as far as
/// [`MAX_PACKET`] allows (the others are left out). Returns how many items (updates and
/// deltas) were written.
pub fn encode(packet: &Packet, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    let head = Head {
        cluster: packet.cluster,
        from: &packet.from,
        incarnation: packet.incarnation,
        keys: packet.keys_version,
    };
    let at = encode_head(&head, &packet.body, out);
    let written = packet
        .updates
        .iter()
        .take_while(|u| push_update(out, at, u, start + MAX_PACKET))
        .count();
    let mut written = written;
    if written == packet.updates.len() {
        for delta in &packet.deltas {
            let entries: Vec<KeyEntry<'_>> = delta
                .key_values
                .iter()
                .map(|kv| KeyEntry {
                    key: &kv.key,
                    value: &kv.value,
                    version: kv.version,
                    status: kv.status,
                })
                .collect();
            let pushed = push_keys(
                out,
                at,
                &delta.node,
                delta.last_gc_version,
                delta.from_version_excluded,
                delta.max_version,
                &entries,
                start + MAX_PACKET,
            );
            if pushed != Some(entries.len()) {
                break; // not at all, or in part: not counted
            }
            written += 1;
        }
    }
    written
}

/// A node id: its name (a `u8` length, then UTF-8), generation and address.
fn read_id(r: &mut Reader<'_>) -> Result<NodeId, DecodeError> {
    let len = usize::from(r.u8("node name length")?);
    let name = std::str::from_utf8(r.take(len, "node name")?)
        .map_err(|_| DecodeError::InvalidUtf8("node name"))?;
    let generation = r.u64("generation")?;
    let addr = r.socket_addr()?;
    Ok(NodeId::new(name, generation, addr))
}

/// Decodes a packet (without its envelope).
///
/// # Errors
///
/// A [`DecodeError`] for anything but a whole, valid packet: another magic number or version,
/// an unknown kind or tag, a name that is not UTF-8, missing bytes, or bytes left over.
pub fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
    if bytes.len() > crate::wire::MAX_DATAGRAM_SIZE {
        return Err(DecodeError::Oversized(bytes.len()));
    }
    let mut r = Reader::new(bytes);
    let magic = r.u16("magic")?;
    if magic != COHORT_MODE_MAGIC {
        return Err(DecodeError::BadMagic(magic));
    }
    let version = r.u8("version")?;
    if version != COHORT_MODE_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let kind = r.u8("packet kind")?;
    let cluster = r.u64("cluster")?;
    let from = read_id(&mut r)?;
    let incarnation = r.u64("incarnation")?;
    let keys_version = r.u64("keys version")?;
    let body = match kind {
        1 => Body::Ping {
            seq: r.u32("sequence")?,
            target_generation: r.u64("target generation")?,
        },
        2 => Body::Ack {
            seq: r.u32("sequence")?,
        },
        3 => Body::PingReq {
            seq: r.u32("sequence")?,
            target: read_id(&mut r)?,
        },
        4 => Body::Nack {
            seq: r.u32("sequence")?,
        },
        5 => Body::Gossip,
        6 => Body::SyncRequest {
            buckets: (0..SYNC_BUCKETS)
                .map(|_| r.u64("table summary"))
                .collect::<Result<_, _>>()?,
            answer_back: match r.u8("answer back")? {
                0 => false,
                1 => true,
                tag => {
                    return Err(DecodeError::InvalidTag {
                        what: "answer back",
                        tag,
                    });
                }
            },
        },
        7 => Body::SyncResponse,
        8 => Body::KeysRequest,
        other => return Err(DecodeError::UnknownMessageType(other)),
    };
    let count = r.u8("update count")?;
    // Each update is at least 21 bytes: no allocation beyond what the input can hold.
    let mut updates = Vec::with_capacity(usize::from(count).min(r.remaining() / 21));
    let mut deltas = Vec::new();
    for _ in 0..count {
        let tag = r.u8("update kind")?;
        if tag == KEYS_ITEM {
            deltas.push(read_delta(&mut r)?);
            continue;
        }
        let kind = UpdateKind::from_byte(tag)?;
        let incarnation = r.u64("update incarnation")?;
        let id = read_id(&mut r)?;
        updates.push(Update {
            kind,
            id,
            incarnation,
        });
    }
    if !r.is_empty() {
        return Err(DecodeError::TrailingBytes(r.remaining()));
    }
    Ok(Packet {
        cluster,
        from,
        incarnation,
        keys_version,
        body,
        updates,
        deltas,
    })
}
