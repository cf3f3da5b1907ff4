//! Property tests: random messages round-trip in both versions and both compression modes, and
//! no input (random bytes, or valid datagrams with flipped bits, cuts and insertions) makes a
//! decoder panic; what a decoder accepts, the encoder writes back to the same values.

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;

use super::*;
use crate::{NodeId, Timestamp};

fn arb_node_id() -> impl Strategy<Value = NodeId> {
    (
        "[a-z0-9é-]{0,12}",
        any::<u64>(),
        any::<bool>(),
        any::<[u8; 16]>(),
        any::<u16>(),
    )
        .prop_map(|(name, generation, v6, ip, port)| {
            let ip = if v6 {
                IpAddr::from(ip)
            } else {
                IpAddr::from([ip[0], ip[1], ip[2], ip[3]])
            };
            NodeId::new(name, generation, SocketAddr::new(ip, port))
        })
}

fn arb_digest() -> impl Strategy<Value = Digest> {
    prop::collection::vec(
        (arb_node_id(), any::<(u64, u64, u64)>()).prop_map(|(node, (h, g, m))| (node, nd(h, g, m))),
        0..10,
    )
    .prop_map(|entries| Digest { entries })
}

fn arb_status() -> impl Strategy<Value = DeletionStatus> {
    prop_oneof![
        Just(DeletionStatus::Set),
        Just(DeletionStatus::Deleted),
        Just(DeletionStatus::DeleteAfterTtl),
    ]
}

fn arb_node_delta() -> impl Strategy<Value = NodeDelta> {
    let kvs = prop::collection::vec(
        ("[a-z:._]{0,10}", ".{0,20}", 1u64..1_000, arb_status()),
        0..6,
    );
    (
        arb_node_id(),
        any::<u64>(),
        any::<u64>(),
        0u64..=u64::MAX / 2,
        kvs,
        any::<u64>(),
    )
        .prop_map(|(node, last_gc_version, from, base, kvs, max_if_empty)| {
            let mut version = base;
            let key_values: Vec<KeyValueUpdate> = kvs
                .into_iter()
                .map(|(key, value, step, status)| {
                    version += step;
                    KeyValueUpdate {
                        key,
                        value,
                        version,
                        status,
                    }
                })
                .collect();
            NodeDelta {
                node,
                last_gc_version,
                from_version_excluded: from,
                max_version: key_values.last().map_or(max_if_empty, |kv| kv.version),
                key_values,
            }
        })
}

fn arb_delta() -> impl Strategy<Value = Delta> {
    prop::collection::vec(arb_node_delta(), 0..6).prop_map(|candidates| {
        let mut nodes: Vec<NodeDelta> = Vec::new();
        for candidate in candidates {
            if !nodes.iter().any(|n| n.node == candidate.node) {
                nodes.push(candidate);
            }
        }
        Delta { nodes }
    })
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (arb_digest(), ".{0,16}")
            .prop_map(|(digest, cluster_id)| Message::Syn { digest, cluster_id }),
        (arb_digest(), arb_delta()).prop_map(|(digest, delta)| Message::SynAck { digest, delta }),
        arb_delta().prop_map(|delta| Message::Ack { delta }),
        Just(Message::BadCluster),
    ]
}

fn version(v1: bool) -> ProtocolVersion {
    if v1 {
        ProtocolVersion::V1
    } else {
        ProtocolVersion::V0
    }
}

fn compression(raw: bool) -> Compression {
    if raw {
        Compression::None
    } else {
        Compression::Zstd
    }
}

/// A change to a valid datagram.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(usize, u8),
    Overwrite(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, bit)| Mutation::FlipBit(i, bit)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Overwrite(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, bytes)| Mutation::Insert(i, bytes)),
        (any::<usize>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match mutation {
        Mutation::FlipBit(i, bit) if !bytes.is_empty() => {
            let i = at(*i, bytes.len());
            bytes[i] ^= 1 << bit;
        }
        Mutation::Overwrite(i, b) if !bytes.is_empty() => {
            let i = at(*i, bytes.len());
            bytes[i] = *b;
        }
        Mutation::Truncate(i) => bytes.truncate(at(*i, bytes.len() + 1)),
        Mutation::Insert(i, new) => {
            let i = at(*i, bytes.len() + 1);
            bytes.splice(i..i, new.iter().copied());
        }
        Mutation::Remove(i, n) if !bytes.is_empty() => {
            let i = at(*i, bytes.len());
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
        _ => {}
    }
}

/// `message` as the decoder would see it after a round trip: a node delta's `max_version` is
/// implied by its last key-value when it has any (a SetMaxVersion after key-values is not
/// re-encoded).
fn normalized(mut message: Message) -> Message {
    if let Message::SynAck { delta, .. } | Message::Ack { delta } = &mut message {
        for node in &mut delta.nodes {
            if let Some(last) = node.key_values.last() {
                node.max_version = last.version;
            }
        }
    }
    message
}

/// Calls every decoder on `bytes`; returns what `decode_chitchat` gave.
fn decode_all_ways(bytes: &[u8]) -> Result<(ProtocolVersion, Message), DecodeError> {
    let _ = decode_header(bytes);
    let _ = decode_envelope(bytes);
    if let Ok(datagram) = decode_datagram(bytes) {
        if datagram.envelope.is_none() {
            assert_eq!(datagram.chitchat, bytes);
        }
    }
    let decoded = decode_chitchat(bytes);
    if let Ok((version, message)) = &decoded {
        // Whatever is accepted re-encodes to the same values.
        let again = encode(*version, message, Compression::Zstd);
        if again.len() <= MAX_DATAGRAM_SIZE {
            assert_eq!(
                decode_chitchat(&again).unwrap(),
                (*version, normalized(message.clone()))
            );
        }
    }
    decoded
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn messages_round_trip(message in arb_message(), v1 in any::<bool>(), raw in any::<bool>()) {
        let (version, compression) = (version(v1), compression(raw));
        let bytes = encode(version, &message, compression);
        prop_assert_eq!(decode_chitchat(&bytes).unwrap(), (version, message.clone()));
        let datagram = decode_datagram(&bytes).unwrap();
        prop_assert_eq!(datagram.message.to_message(), message.clone());
        prop_assert_eq!(datagram.version, version);
        if let Message::Syn { digest, .. } | Message::SynAck { digest, .. } = &message {
            let mut out = Vec::new();
            let written = encode_digest(version, digest, compression, &mut out);
            prop_assert_eq!(written, out.len());
            prop_assert_eq!(written, encoded_digest_len(version, digest, compression));
            prop_assert_eq!(&bytes[HEADER_LEN..HEADER_LEN + written], &out[..]);
        }
    }

    #[test]
    fn kept_wire_ids_encode_and_match_as_the_fields_do(
        digest in arb_digest(),
        long in "[a-z]{30,60}",
        v1 in any::<bool>(),
        raw in any::<bool>(),
    ) {
        // Names long enough not to fit inline too (written field by field).
        let mut digest = digest;
        digest.entries.push((
            NodeId::new(long, 1, SocketAddr::from(([10, 0, 0, 1], 9))),
            NodeDigest { heartbeat: 1, last_gc_version: 0, max_version: 2 },
        ));
        digest.entries.sort_by(|a, b| a.0.cmp(&b.0));
        let (version, compression) = (version(v1), compression(raw));
        let wires: Vec<WireId> = digest.entries.iter().map(|(id, _)| WireId::new(id.as_ref())).collect();
        let mut plain = Vec::new();
        encode_digest(version, &digest, compression, &mut plain);
        let mut kept = Vec::new();
        encode_digest_keyed(
            version,
            digest.entries.iter().zip(&wires).map(|((id, d), w)| ((id, w), *d)),
            compression,
            &mut kept,
        );
        prop_assert_eq!(&plain, &kept);
        // The raw walk hands out each id's encoded bytes: the kept bytes, when kept.
        let mut syn = Vec::new();
        encode_syn_keyed(
            version,
            digest.entries.iter().zip(&wires).map(|((id, d), w)| ((id, w), *d)),
            "c",
            compression,
            &mut syn,
        );
        let (_, message) = decode_chitchat_view(&syn).unwrap();
        let MessageView::Syn { digest: view, .. } = message else {
            return Err(TestCaseError::fail("not a Syn"));
        };
        let walked: Vec<_> = view.iter_raw().collect();
        prop_assert_eq!(walked.len(), digest.entries.len());
        for ((raw_id, entry), ((id, d), wire)) in walked.iter().zip(digest.entries.iter().zip(&wires)) {
            prop_assert_eq!(raw_id.name(), id.name().as_bytes());
            prop_assert_eq!(raw_id.to_ref(), Some(id.as_ref()));
            prop_assert_eq!(entry, d);
            if let Some(bytes) = wire.as_bytes() {
                prop_assert_eq!(raw_id.bytes, bytes);
            } else {
                prop_assert!(id.name().len() > 27);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(
        prefix in prop_oneof![
            Just(vec![]),
            (0u8..2, 0u8..4).prop_map(|(v, t)| vec![0x53, 0xb0, v, t]),
            (0u8..2, 0u8..4, 0u8..3).prop_map(|(v, t, b)| vec![0x53, 0xb0, v, t, b]),
            (0u8..4, any::<[u8; 16]>()).prop_map(|(flags, ts)| {
                let mut p = vec![0x47, 0xc0, 1, flags];
                p.extend_from_slice(&ts);
                p
            }),
        ],
        body in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut bytes = prefix;
        bytes.extend_from_slice(&body);
        let _ = decode_all_ways(&bytes);
    }

    #[test]
    fn mutated_datagrams_never_panic(
        message in arb_message(),
        v1 in any::<bool>(),
        raw in any::<bool>(),
        envelope in prop::option::of(prop::collection::vec(any::<u8>(), 1..=MAX_AUTH_TAG_LEN)),
        mutations in prop::collection::vec(arb_mutation(), 1..4),
    ) {
        let mut bytes = Vec::new();
        if let Some(tag) = &envelope {
            let tag = if tag.len() % 2 == 0 { Some(&tag[..]) } else { None };
            encode_envelope(Timestamp::MIN, tag, &mut bytes).unwrap();
        }
        encode_chitchat_with(version(v1), &message, compression(raw), &mut bytes);
        for mutation in &mutations {
            mutate(&mut bytes, mutation);
        }
        let _ = decode_all_ways(&bytes);
    }

    #[test]
    fn mutated_vectors_never_panic(
        which in 0usize..4,
        mutations in prop::collection::vec(arb_mutation(), 1..4),
    ) {
        // Captured chitchat datagrams with zstd blocks (TV-3, TV-5a, the TV-5b SynAck, h3).
        let vectors = [
            "53b0000201360028b52ffd20426d010024020006006e6f64652d610100047f00000129a0000105006b65792d61070076616c7500030053190a743e002f00",
            "53b00100012f0028b52ffd205e350100b006006e6f64652d610100047f00000129a0030062022a0600601180a3543984220090070348000c00746573742d636c7573746572",
            "53b0010101460028b52ffd208ded0100640206006e6f64652d610100047f00000129a0040062022aa0090163032ba00200000000000000000900a01b80432033d039c05baa6c338900e4c100120001650028b52ffd20aee50200f4030006006e6f64652d620200047f0000012aa0000105006b65792d62070076616c75652d620100610129616101066132000003010107747\
             46c010074040000020c00400cb8e326f5871b02cd002100bcc0b108390444003d0e600e00",
            "53b0000201450028b52ffd2052e50100b4020006006e6f64652d610100047f00000129a0000106006b65792d6132000003010774746c01007404000002060040cccd8b6d92d44900c87c005e00",
        ];
        let mut bytes = hex(vectors[which]);
        prop_assert!(decode_chitchat(&bytes).is_ok());
        for mutation in &mutations {
            mutate(&mut bytes, mutation);
        }
        let _ = decode_all_ways(&bytes);
    }
}
