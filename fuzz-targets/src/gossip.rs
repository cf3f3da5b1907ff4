//! The gossip codec and cohort's envelope (`cohort_core::wire`).

use cohort_core::wire::{
    CHITCHAT_MAGIC, Compression, DecodeError, Delta, ENVELOPE_MAGIC, MAX_AUTH_TAG_LEN,
    MAX_DATAGRAM_SIZE, Message, MessageView, ProtocolVersion, decode_chitchat,
    decode_chitchat_view, decode_datagram, decode_envelope, decode_header, encode_chitchat_with,
    encode_envelope,
};

/// Fuzz target `gossip_codec`: the input as a bare chitchat datagram.
///
/// Asserts that
///
/// - [`decode_header`], [`decode_chitchat_view`] and [`decode_chitchat`] agree (the same
///   version and message, or the same error; the header of a decoded datagram is what
///   [`decode_header`] reads);
/// - a decoded digest view yields exactly [`len`](cohort_core::wire::DigestView::len) entries;
/// - a decoded message re-encoded ([`encode_chitchat_with`], in both protocol versions and
///   both compressions) decodes to the same message. The one difference allowed is the one
///   the format documents: a node delta with key-values is re-encoded without the
///   SetMaxVersion op a sender may have added after them, so its `max_version` becomes its
///   last key-value's version;
/// - encoding is deterministic: the decoded re-encoding encodes to the same bytes again.
pub fn gossip_codec(data: &[u8]) {
    let header = decode_header(data);
    let view = decode_chitchat_view(data);
    let owned = decode_chitchat(data);
    let (version, message) = match (view, owned) {
        (Ok((view_version, view)), Ok((version, message))) => {
            assert_eq!(
                view_version, version,
                "the view and the owned decoder disagree"
            );
            check_view(&view);
            assert_eq!(view.to_message(), message, "the view's message differs");
            assert_eq!(view.into_message(), message, "the view's message differs");
            let (header_version, header_type) =
                header.expect("a decoded datagram has a valid header");
            assert_eq!(header_version, version);
            assert_eq!(header_type, message.message_type());
            (version, message)
        }
        (Err(view_error), Err(error)) => {
            assert_eq!(view_error, error, "the view and the owned decoder disagree");
            return;
        }
        (view, owned) => panic!("decoders disagree: view {view:?}, owned {owned:?}"),
    };
    let expected = canonical(message);
    for to_version in [ProtocolVersion::V0, ProtocolVersion::V1] {
        for compression in [Compression::Zstd, Compression::None] {
            round_trip(version, to_version, &expected, compression);
        }
    }
}

/// The view's digest (if any) iterates over exactly its entries.
fn check_view(view: &MessageView<'_>) {
    if let MessageView::Syn { digest, .. } | MessageView::SynAck { digest, .. } = view {
        assert_eq!(digest.iter().count(), digest.len(), "digest entry count");
        assert_eq!(digest.is_empty(), digest.iter().next().is_none());
    }
}

/// `message` as an encoder writes it: a node delta with key-values carries no SetMaxVersion,
/// so its `max_version` is its last key-value's version.
fn canonical(mut message: Message) -> Message {
    let delta: Option<&mut Delta> = match &mut message {
        Message::SynAck { delta, .. } | Message::Ack { delta } => Some(delta),
        Message::Syn { .. } | Message::BadCluster => None,
    };
    for node in delta.into_iter().flat_map(|delta| delta.nodes.iter_mut()) {
        if let Some(last) = node.key_values.last() {
            node.max_version = last.version;
        }
    }
    message
}

/// Encodes `expected` (decoded from a `from` datagram) as a `to` datagram and checks that it
/// decodes back to itself, and that its encoding is deterministic.
fn round_trip(
    from: ProtocolVersion,
    to: ProtocolVersion,
    expected: &Message,
    compression: Compression,
) {
    let mut encoded = Vec::new();
    encode_chitchat_with(to, expected, compression, &mut encoded);
    if encoded.len() > MAX_DATAGRAM_SIZE {
        // The encoder does not bound sizes (a delta can inflate to 1 MiB): a datagram this
        // large is refused whole, by both decoders.
        assert_eq!(
            decode_chitchat(&encoded),
            Err(DecodeError::Oversized(encoded.len()))
        );
        return;
    }
    match decode_chitchat(&encoded) {
        Ok((version, message)) => {
            assert_eq!(version, to);
            assert_eq!(
                &message, expected,
                "{from:?} message re-encoded as {to:?} with {compression:?} decodes differently"
            );
            let mut again = Vec::new();
            encode_chitchat_with(to, &message, compression, &mut again);
            assert_eq!(again, encoded, "encoding is not deterministic");
        }
        Err(error) => panic!(
            "{from:?} message re-encoded as {to:?} with {compression:?} does not decode: {error}"
        ),
    }
}

/// Fuzz target `envelope`: the input as a received gossip datagram, enveloped or bare.
///
/// Asserts that
///
/// - a decoded envelope ([`decode_envelope`]) re-encodes ([`encode_envelope`]) to exactly the
///   bytes it was decoded from (the format has one encoding per header), carries a tag of 1 to
///   [`MAX_AUTH_TAG_LEN`] bytes, and hands back the rest of the input;
/// - [`decode_datagram`] agrees with [`decode_envelope`] followed by [`decode_chitchat_view`]
///   on the chitchat part (or with [`decode_chitchat_view`] alone for a bare datagram): the
///   same envelope, chitchat bytes, version and message, or both fail.
pub fn envelope(data: &[u8]) {
    if let Ok((header, rest)) = decode_envelope(data) {
        let consumed = data.len() - rest.len();
        assert_eq!(
            &data[consumed..],
            rest,
            "the chitchat part is not the input's tail"
        );
        if let Some(tag) = header.auth_tag {
            assert!((1..=MAX_AUTH_TAG_LEN).contains(&tag.len()), "tag length");
        }
        let mut encoded = Vec::new();
        let written = encode_envelope(header.timestamp, header.auth_tag, &mut encoded)
            .expect("a decoded tag can be encoded");
        assert_eq!(written, consumed);
        assert_eq!(
            encoded,
            data[..consumed],
            "the envelope re-encodes differently"
        );
    }

    let magic = data.get(..2).map(|m| u16::from_le_bytes([m[0], m[1]]));
    let expected = if data.len() > MAX_DATAGRAM_SIZE {
        None
    } else if magic == Some(CHITCHAT_MAGIC) {
        decode_chitchat_view(data)
            .ok()
            .map(|(version, message)| (None, data, version, message))
    } else if magic == Some(ENVELOPE_MAGIC) {
        decode_envelope(data).ok().and_then(|(header, rest)| {
            decode_chitchat_view(rest)
                .ok()
                .map(|(version, message)| (Some(header), rest, version, message))
        })
    } else {
        None
    };
    match (decode_datagram(data), expected) {
        (Ok(datagram), Some((envelope, chitchat, version, message))) => {
            assert_eq!(datagram.envelope, envelope);
            assert_eq!(datagram.chitchat, chitchat);
            assert_eq!(datagram.version, version);
            assert_eq!(datagram.message.to_message(), message.to_message());
            check_view(&datagram.message);
            assert_eq!(datagram.message, message);
        }
        (Err(_), None) => {}
        (datagram, expected) => {
            panic!("decode_datagram gives {datagram:?}, its parts give {expected:?}")
        }
    }
}
