//! cohort's envelope: the test vectors of `docs/cohort-envelope.md` both ways, every envelope
//! error, and random round trips.

use proptest::prelude::*;

use super::*;
use crate::{NodeTag, Timestamp};

/// Vector E-1 of `docs/cohort-envelope.md`: no tag, around the empty V0 Ack.
const E1: &str = "47c00100018bcfe5680000050123456789abcdef53b0000200";
/// Vector E-2: a 4-byte tag, around a V1 BadCluster.
const E2: &str = "47c00101018bcfe5680000060123456789abcdef04deadbeef53b00103";

fn timestamp(counter: u16) -> Timestamp {
    Timestamp::new(
        1_700_000_000_000,
        counter,
        NodeTag::new(0x0123_4567_89ab_cdef),
    )
    .unwrap()
}

fn envelope_err(bytes: &[u8]) -> DecodeError {
    decode_datagram(bytes).unwrap_err()
}

#[test]
fn vector_e1_without_tag() {
    let bytes = hex(E1);
    let datagram = decode_datagram(&bytes).unwrap();
    assert_eq!(
        datagram.envelope,
        Some(EnvelopeHeader {
            timestamp: timestamp(5),
            auth_tag: None
        })
    );
    assert_eq!(datagram.chitchat, &hex("53b0000200")[..]);
    assert_eq!(datagram.version, ProtocolVersion::V0);
    assert_eq!(
        datagram.message.to_message(),
        Message::Ack {
            delta: Delta::default()
        }
    );

    let mut out = Vec::new();
    assert_eq!(
        encode_envelope(timestamp(5), None, &mut out),
        Ok(ENVELOPE_OVERHEAD)
    );
    encode_chitchat(
        ProtocolVersion::V0,
        &Message::Ack {
            delta: Delta::default(),
        },
        &mut out,
    );
    assert_eq!(out, bytes);
}

#[test]
fn vector_e2_with_tag() {
    let bytes = hex(E2);
    let tag = hex("deadbeef");
    let datagram = decode_datagram(&bytes).unwrap();
    assert_eq!(
        datagram.envelope,
        Some(EnvelopeHeader {
            timestamp: timestamp(6),
            auth_tag: Some(&tag[..])
        })
    );
    assert_eq!(datagram.chitchat, &hex("53b00103")[..]);
    assert_eq!(
        (datagram.version, datagram.message.to_message()),
        (ProtocolVersion::V1, Message::BadCluster)
    );
    let (header, rest) = decode_envelope(&bytes).unwrap();
    assert_eq!(header.auth_tag, Some(&tag[..]));
    assert_eq!(rest, &hex("53b00103")[..]);

    let mut out = Vec::new();
    assert_eq!(
        encode_envelope(timestamp(6), Some(&tag), &mut out),
        Ok(envelope_len(4))
    );
    encode_chitchat(ProtocolVersion::V1, &Message::BadCluster, &mut out);
    assert_eq!(out, bytes);
}

#[test]
fn envelope_errors() {
    let good = hex(E2);
    let with = |at: usize, byte: u8| {
        let mut bytes = good.clone();
        bytes[at] = byte;
        bytes
    };
    for version in [0, 2, 0xff] {
        assert_eq!(
            envelope_err(&with(2, version)),
            DecodeError::Envelope("unknown envelope version")
        );
    }
    for flags in [0x02, 0x03, 0x80, 0xff] {
        assert_eq!(
            envelope_err(&with(3, flags)),
            DecodeError::Envelope("unknown envelope flag bits")
        );
    }
    for len in [0, 65, 0xff] {
        assert_eq!(
            envelope_err(&with(20, len)),
            DecodeError::Envelope("authentication tag length outside 1..=64")
        );
    }
    // A tag length that runs past the end.
    assert_eq!(
        envelope_err(&with(20, 64)),
        DecodeError::Truncated {
            what: "authentication tag",
            needed: 64 - 8
        }
    );
    // Without the tag flag, the tag length byte is read as the chitchat magic.
    assert_eq!(envelope_err(&with(3, 0)), DecodeError::BadMagic(0xde04));
    // No nesting: an envelope inside an envelope is not a chitchat datagram.
    let mut nested = hex(E1)[..ENVELOPE_OVERHEAD].to_vec();
    nested.extend_from_slice(&hex(E1));
    assert_eq!(envelope_err(&nested), DecodeError::BadMagic(ENVELOPE_MAGIC));
    // The inner datagram's own errors come through.
    assert_eq!(
        envelope_err(&with(good.len() - 1, 9)),
        DecodeError::UnknownMessageType(9)
    );
    // Neither magic.
    assert_eq!(envelope_err(&hex("47c1")), DecodeError::BadMagic(0xc147));
    assert_eq!(
        decode_envelope(&hex("53b00003")).unwrap_err(),
        DecodeError::BadMagic(CHITCHAT_MAGIC)
    );
    // Every prefix is truncated.
    for vector in [E1, E2] {
        let bytes = hex(vector);
        for len in 0..bytes.len() {
            assert!(
                matches!(envelope_err(&bytes[..len]), DecodeError::Truncated { .. }),
                "{vector} cut at {len}"
            );
        }
    }
    // The size limit covers the envelope too.
    let mut big = good.clone();
    big.resize(MAX_DATAGRAM_SIZE + 1, 0);
    assert_eq!(
        envelope_err(&big),
        DecodeError::Oversized(MAX_DATAGRAM_SIZE + 1)
    );
}

#[test]
fn encode_envelope_rejects_bad_tags() {
    let mut out = vec![1, 2];
    assert_eq!(
        encode_envelope(Timestamp::MIN, Some(&[]), &mut out),
        Err(InvalidAuthTag { len: 0 })
    );
    assert_eq!(
        encode_envelope(Timestamp::MIN, Some(&[0; 65]), &mut out),
        Err(InvalidAuthTag { len: 65 })
    );
    assert_eq!(out, [1, 2], "nothing written");
    assert_eq!(
        encode_envelope(Timestamp::MIN, Some(&[7; 64]), &mut out),
        Ok(ENVELOPE_OVERHEAD + 65)
    );
    assert_eq!(out.len(), 2 + ENVELOPE_OVERHEAD + 65);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn envelope_round_trip(
        time in any::<u64>(),
        node in any::<u64>(),
        tag in prop::option::of(prop::collection::vec(any::<u8>(), 1..=MAX_AUTH_TAG_LEN)),
        trailing in prop::collection::vec(any::<u8>(), 0..4),
        v1 in any::<bool>(),
    ) {
        let timestamp = Timestamp::from_packed(time, NodeTag::new(node));
        let version = if v1 { ProtocolVersion::V1 } else { ProtocolVersion::V0 };
        let message = Message::Syn {
            digest: Digest { entries: vec![(node_a(), nd(time, 0, node))] },
            cluster_id: "cluster".into(),
        };
        let mut bytes = Vec::new();
        let header_len = encode_envelope(timestamp, tag.as_deref(), &mut bytes).unwrap();
        prop_assert_eq!(header_len, bytes.len());
        prop_assert_eq!(header_len, envelope_len(tag.as_ref().map_or(0, Vec::len)));
        encode_chitchat(version, &message, &mut bytes);
        bytes.extend_from_slice(&trailing);

        let datagram = decode_datagram(&bytes).unwrap();
        prop_assert_eq!(
            datagram.envelope,
            Some(EnvelopeHeader { timestamp, auth_tag: tag.as_deref() })
        );
        prop_assert_eq!(datagram.chitchat, &bytes[header_len..]);
        prop_assert_eq!(datagram.version, version);
        prop_assert_eq!(datagram.message.to_message(), message);
    }

    #[test]
    fn envelope_header_bytes_are_checked(
        version in any::<u8>(),
        flags in any::<u8>(),
        tag_len in any::<u8>(),
    ) {
        let mut bytes = vec![0x47, 0xc0, version, flags];
        bytes.extend_from_slice(&[0; 16]);
        bytes.push(tag_len);
        bytes.extend_from_slice(&[0xaa; 64]);
        bytes.extend_from_slice(&hex("53b00003"));
        let result = decode_envelope(&bytes);
        let tag_ok = flags & ENVELOPE_FLAG_AUTH_TAG == 0
            || (1..=MAX_AUTH_TAG_LEN).contains(&usize::from(tag_len));
        let expect_ok = version == ENVELOPE_VERSION && flags & !ENVELOPE_FLAG_AUTH_TAG == 0 && tag_ok;
        prop_assert_eq!(result.is_ok(), expect_ok);
        if let Err(e) = result {
            prop_assert!(matches!(e, DecodeError::Envelope(_)));
        }
        let _ = decode_datagram(&bytes);
    }
}
