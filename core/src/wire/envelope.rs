//! cohort's envelope around a chitchat datagram (`docs/cohort-envelope.md`): magic `47 c0`,
//! envelope version 1, flags, the sender's HLC timestamp, an optional authentication tag, then
//! the complete chitchat datagram. Also the single receive entry point,
//! [`decode_datagram`], which accepts both bare chitchat datagrams and enveloped ones.
//!
//! It owns the envelope's byte layout only. It must never compute or verify the
//! authentication tag (it is carried; verification is future work and belongs to the layer
//! that holds the keys), never panic on any input, and never accept a datagram larger than
//! [`MAX_DATAGRAM_SIZE`].

use super::codec::{MessageView, Reader, decode_chitchat_view};
use super::{CHITCHAT_MAGIC, DecodeError, MAX_DATAGRAM_SIZE, ProtocolVersion};
use crate::Timestamp;

/// The envelope's magic number, `u16` little-endian: the bytes `47 c0`.
pub const ENVELOPE_MAGIC: u16 = 0xC047;

/// The only envelope version defined.
pub const ENVELOPE_VERSION: u8 = 1;

/// Flags bit 0: an authentication tag follows the timestamp. No other bit is defined.
pub const ENVELOPE_FLAG_AUTH_TAG: u8 = 0x01;

/// The envelope's length without an authentication tag: magic (2), version (1), flags (1) and
/// timestamp (16).
pub const ENVELOPE_OVERHEAD: usize = 20;

/// The longest authentication tag an envelope can carry.
pub const MAX_AUTH_TAG_LEN: usize = 64;

/// The envelope's length with an authentication tag of `auth_tag_len` bytes (0: no tag).
///
/// ```
/// use cohort_core::wire::{ENVELOPE_OVERHEAD, envelope_len};
/// assert_eq!(envelope_len(0), ENVELOPE_OVERHEAD);
/// assert_eq!(envelope_len(32), ENVELOPE_OVERHEAD + 1 + 32);
/// ```
#[must_use]
pub const fn envelope_len(auth_tag_len: usize) -> usize {
    if auth_tag_len == 0 {
        ENVELOPE_OVERHEAD
    } else {
        ENVELOPE_OVERHEAD + 1 + auth_tag_len
    }
}

/// An authentication tag was empty or longer than [`MAX_AUTH_TAG_LEN`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("authentication tag of {len} bytes; an envelope carries 1 to {max} bytes", max = MAX_AUTH_TAG_LEN)]
pub struct InvalidAuthTag {
    /// The length given.
    pub len: usize,
}

/// A decoded envelope header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvelopeHeader<'a> {
    /// The sender's HLC timestamp when it sent the datagram.
    pub timestamp: Timestamp,
    /// The authentication tag, if the sender attached one. It is not verified here.
    pub auth_tag: Option<&'a [u8]>,
}

/// A received datagram, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The envelope, if the datagram had one (`None` for a bare chitchat datagram).
    pub envelope: Option<EnvelopeHeader<'a>>,
    /// The chitchat datagram as received (the whole input for a bare one): everything after
    /// the envelope, trailing bytes included.
    pub chitchat: &'a [u8],
    /// The chitchat datagram's protocol version (to echo in a reply).
    pub version: ProtocolVersion,
    /// The message, its digest left in the received bytes ([`MessageView::to_message`] gives
    /// the owned form).
    pub message: MessageView<'a>,
}

/// The envelope header without an authentication tag, as bytes (what
/// [`encode_envelope`] writes when `auth_tag` is `None`), for writing in place.
///
/// ```
/// use cohort_core::wire::{ENVELOPE_OVERHEAD, encode_envelope, envelope_bytes};
/// use cohort_core::{NodeTag, Timestamp};
/// let t = Timestamp::new(1_700_000_000_000, 7, NodeTag::new(9))?;
/// let mut out = Vec::new();
/// encode_envelope(t, None, &mut out).unwrap();
/// assert_eq!(out, envelope_bytes(t));
/// assert_eq!(out.len(), ENVELOPE_OVERHEAD);
/// # Ok::<(), cohort_core::ClockError>(())
/// ```
#[must_use]
pub fn envelope_bytes(timestamp: Timestamp) -> [u8; ENVELOPE_OVERHEAD] {
    let mut out = [0u8; ENVELOPE_OVERHEAD];
    out[..2].copy_from_slice(&ENVELOPE_MAGIC.to_le_bytes());
    out[2] = ENVELOPE_VERSION;
    out[3] = 0;
    out[4..].copy_from_slice(&timestamp.to_bytes());
    out
}

/// Appends an envelope header; the caller appends the complete chitchat datagram after it.
/// Returns the bytes written ([`envelope_len`]).
///
/// # Errors
///
/// [`InvalidAuthTag`] if `auth_tag` is `Some` of an empty slice or of more than
/// [`MAX_AUTH_TAG_LEN`] bytes; nothing is written then. Use `None` for no tag.
///
/// ```
/// use cohort_core::wire::{
///     Message, ProtocolVersion, decode_datagram, encode_chitchat, encode_envelope,
/// };
/// use cohort_core::{NodeTag, Timestamp};
///
/// let timestamp = Timestamp::new(1_700_000_000_000, 0, NodeTag::new(7)).unwrap();
/// let mut out = Vec::new();
/// encode_envelope(timestamp, Some(b"tag"), &mut out).unwrap();
/// encode_chitchat(ProtocolVersion::V0, &Message::BadCluster, &mut out);
///
/// let datagram = decode_datagram(&out)?;
/// let envelope = datagram.envelope.unwrap();
/// assert_eq!(envelope.timestamp, timestamp);
/// assert_eq!(envelope.auth_tag, Some(&b"tag"[..]));
/// assert_eq!(datagram.message.to_message(), Message::BadCluster);
/// assert_eq!(datagram.chitchat, [0x53, 0xb0, 0x00, 0x03]);
/// # Ok::<(), cohort_core::wire::DecodeError>(())
/// ```
pub fn encode_envelope(
    timestamp: Timestamp,
    auth_tag: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> Result<usize, InvalidAuthTag> {
    let tag_len = match auth_tag {
        Some(tag) if tag.is_empty() || tag.len() > MAX_AUTH_TAG_LEN => {
            return Err(InvalidAuthTag { len: tag.len() });
        }
        Some(tag) => u8::try_from(tag.len()).map_err(|_| InvalidAuthTag { len: tag.len() })?,
        None => 0,
    };
    let Some(tag) = auth_tag else {
        out.extend_from_slice(&envelope_bytes(timestamp));
        return Ok(ENVELOPE_OVERHEAD);
    };
    let mut header = envelope_bytes(timestamp);
    header[3] = ENVELOPE_FLAG_AUTH_TAG;
    out.extend_from_slice(&header);
    out.push(tag_len);
    out.extend_from_slice(tag);
    Ok(envelope_len(usize::from(tag_len)))
}

/// Decodes an envelope header and returns it with the bytes that follow it (the chitchat
/// datagram, not decoded or checked here).
///
/// # Errors
///
/// [`DecodeError::Truncated`], [`DecodeError::BadMagic`] if the input does not start with
/// `47 c0`, and [`DecodeError::Envelope`] for an unknown envelope version, an unknown flag bit
/// or an authentication tag length outside 1 to [`MAX_AUTH_TAG_LEN`].
pub fn decode_envelope(bytes: &[u8]) -> Result<(EnvelopeHeader<'_>, &[u8]), DecodeError> {
    let mut r = Reader::new(bytes);
    let magic = r.u16("envelope magic")?;
    if magic != ENVELOPE_MAGIC {
        return Err(DecodeError::BadMagic(magic));
    }
    if r.u8("envelope version")? != ENVELOPE_VERSION {
        return Err(DecodeError::Envelope("unknown envelope version"));
    }
    let flags = r.u8("envelope flags")?;
    if flags & !ENVELOPE_FLAG_AUTH_TAG != 0 {
        return Err(DecodeError::Envelope("unknown envelope flag bits"));
    }
    let mut timestamp = [0; 16];
    timestamp.copy_from_slice(r.take(16, "envelope timestamp")?);
    let auth_tag = if flags & ENVELOPE_FLAG_AUTH_TAG != 0 {
        let len = usize::from(r.u8("authentication tag length")?);
        if len == 0 || len > MAX_AUTH_TAG_LEN {
            return Err(DecodeError::Envelope(
                "authentication tag length outside 1..=64",
            ));
        }
        Some(r.take(len, "authentication tag")?)
    } else {
        None
    };
    let header = EnvelopeHeader {
        timestamp: Timestamp::from_bytes(timestamp),
        auth_tag,
    };
    let consumed = bytes.len() - r.remaining();
    Ok((header, bytes.get(consumed..).unwrap_or_default()))
}

/// Splits a received gossip datagram into its envelope (`None` for a bare one) and what
/// follows it (a chitchat datagram, or a cohort-mode packet), checking only the envelope: the
/// payload is left to its own decoder.
///
/// # Errors
///
/// [`DecodeError::Oversized`] past [`MAX_DATAGRAM_SIZE`], [`DecodeError::BadMagic`] for bytes
/// that start with neither the envelope's magic nor chitchat's, or a malformed envelope.
pub fn split_datagram(bytes: &[u8]) -> Result<(Option<EnvelopeHeader<'_>>, &[u8]), DecodeError> {
    if bytes.len() > MAX_DATAGRAM_SIZE {
        return Err(DecodeError::Oversized(bytes.len()));
    }
    match Reader::new(bytes).u16("magic")? {
        CHITCHAT_MAGIC => Ok((None, bytes)),
        ENVELOPE_MAGIC => {
            let (header, rest) = decode_envelope(bytes)?;
            Ok((Some(header), rest))
        }
        other => Err(DecodeError::BadMagic(other)),
    }
}

/// Decodes a received datagram: a bare chitchat datagram (starting `53 b0`) or an enveloped
/// one (starting `47 c0`), told apart by the first two bytes.
///
/// The chitchat part is decoded by [`decode_chitchat_view`](super::decode_chitchat_view), so
/// trailing bytes after its body are ignored. The authentication tag is returned as carried: verifying it is future work.
///
/// # Errors
///
/// [`DecodeError::Oversized`] above [`MAX_DATAGRAM_SIZE`] bytes, [`DecodeError::BadMagic`] if
/// the datagram starts with neither magic, and every error of [`decode_envelope`] and
/// [`decode_chitchat`](super::decode_chitchat).
///
/// ```
/// use cohort_core::wire::{Message, ProtocolVersion, decode_datagram};
/// let datagram = decode_datagram(&[0x53, 0xb0, 0x00, 0x03])?;
/// assert_eq!(datagram.envelope, None);
/// assert_eq!(datagram.version, ProtocolVersion::V0);
/// assert_eq!(datagram.message.to_message(), Message::BadCluster);
/// assert_eq!(datagram.chitchat, [0x53, 0xb0, 0x00, 0x03]);
/// # Ok::<(), cohort_core::wire::DecodeError>(())
/// ```
pub fn decode_datagram(bytes: &[u8]) -> Result<Datagram<'_>, DecodeError> {
    let (envelope, chitchat) = split_datagram(bytes)?;
    let (version, message) = decode_chitchat_view(chitchat)?;
    Ok(Datagram {
        envelope,
        chitchat,
        version,
        message,
    })
}
