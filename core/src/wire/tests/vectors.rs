//! The test vectors of `shared/chitchat-wire.md` section 1.14, captured from real chitchat
//! 0.13.0 nodes, checked in both directions: decoding gives the listed values, and encoding the
//! values gives the captured bytes (zstd blocks included: `zstd` 0.13 with its bundled libzstd
//! at level 3 reproduces every captured frame).

use std::net::SocketAddr;

use super::*;
use crate::NodeId;

/// How the encoder is expected to reproduce a vector.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Blocks {
    /// Every block is raw: the bytes come out identical with both compression modes.
    Raw,
    /// Some block is zstd: the bytes come out identical with [`Compression::Zstd`].
    Zstd,
}

#[track_caller]
fn check(hex_bytes: &str, version: ProtocolVersion, message: &Message, blocks: Blocks) {
    let bytes = hex(hex_bytes);
    assert_eq!(
        decode_chitchat(&bytes).unwrap(),
        (version, message.clone()),
        "decoding the vector"
    );
    let datagram = decode_datagram(&bytes).unwrap();
    assert_eq!(datagram.envelope, None);
    assert_eq!(datagram.chitchat, &bytes[..]);
    assert_eq!(
        (datagram.version, &datagram.message.to_message()),
        (version, message)
    );

    let zstd = encode(version, message, Compression::Zstd);
    assert_eq!(zstd, bytes, "encoding with zstd");
    let raw = encode(version, message, Compression::None);
    if blocks == Blocks::Raw {
        assert_eq!(raw, bytes, "encoding with raw blocks");
    } else {
        assert_ne!(raw, bytes);
        assert_eq!(decode_chitchat(&raw).unwrap(), (version, message.clone()));
    }
}

fn tv1_message() -> Message {
    Message::Syn {
        digest: Digest {
            entries: vec![(node_a(), nd(3, 0, 1)), (node_b(), nd(3, 0, 1))],
        },
        cluster_id: "test-cluster".into(),
    }
}

fn tv2_message() -> Message {
    Message::SynAck {
        digest: Digest {
            entries: vec![(node_a(), nd(2, 0, 0)), (node_b(), nd(3, 0, 1))],
        },
        delta: Delta {
            nodes: vec![node_delta(
                node_b(),
                0,
                0,
                vec![kv("key-b", "value-b", 1, DeletionStatus::Set)],
            )],
        },
    }
}

const TV1: &str = "53b00000020006006e6f64652d610100000000000000047f00000129a00300000000000000000000000000\
    0000010000000000000006006e6f64652d620200000000000000047f0000012aa003000000000000000000000000\
    00000001000000000000000c00746573742d636c7573746572";

const TV2: &str = "53b00001020006006e6f64652d610100000000000000047f00000129a00200000000000000000000000000\
    0000000000000000000006006e6f64652d620200000000000000047f0000012aa003000000000000000000000000\
    000000010000000000000002420000\
    06006e6f64652d620200000000000000047f0000012aa0000000000000000000000000000000000105006b65792d\
    62070076616c75652d6201000000000000000000";

const TV3: &str = "53b0000201360028b52ffd20426d010024020006006e6f64652d610100047f00000129a0000105006b65\
    792d61070076616c7500030053190a743e002f00";

const TV5A: &str = "53b00100012f0028b52ffd205e350100b006006e6f64652d610100047f00000129a0030062022a060060\
    1180a3543984220090070348000c00746573742d636c7573746572";

const TV5B_SYNACK: &str = "53b0010101460028b52ffd208ded0100640206006e6f64652d610100047f00000129a00400620\
    22aa0090163032ba00200000000000000000900a01b80432033d039c05baa6c338900e4c100120001650028b52ffd\
    20aee50200f4030006006e6f64652d620200047f0000012aa0000105006b65792d62070076616c75652d6201006101\
    2961610106613200000301010774746c010074040000020c00400cb8e326f5871b02cd002100bcc0b10839044400\
    3d0e600e00";

const H3_ACK_V0: &str = "53b0000201450028b52ffd2052e50100b4020006006e6f64652d610100047f00000129a0000106006b\
    65792d6132000003010774746c01007404000002060040cccd8b6d92d44900c87c005e00";

const H1_SYNACK_REENCODED_V1: &str = "53b0010101380028b52ffd205e7d0100040206006e6f64652d610100047f0000\
    0129a0020062022aa00301000000000000000500a01b80a3545900ea0c0009000242000006006e6f64652d62020000\
    0000000000047f0000012aa0000000000000000000000000000000000105006b65792d62070076616c75652d620100\
    0000000000000000";

#[test]
fn tv1_syn_v0() {
    assert_eq!(hex(TV1).len(), 114);
    check(TV1, ProtocolVersion::V0, &tv1_message(), Blocks::Raw);
}

#[test]
fn tv2_synack_v0_raw_delta() {
    assert_eq!(hex(TV2).len(), 170);
    check(TV2, ProtocolVersion::V0, &tv2_message(), Blocks::Raw);
    // The delta's payload, as listed.
    let payload = hex(
        "0006006e6f64652d620200000000000000047f0000012aa000000000000000000000000000000000010500\
         6b65792d62070076616c75652d62010000000000000000",
    );
    assert_eq!(stream_payload(&hex(TV2)[0x64..]).unwrap(), payload);
}

#[test]
fn tv3_ack_v0_zstd_delta() {
    let message = Message::Ack {
        delta: Delta {
            nodes: vec![node_delta(
                node_a(),
                0,
                0,
                vec![kv("key-a", "value-a", 1, DeletionStatus::Set)],
            )],
        },
    };
    assert_eq!(hex(TV3).len(), 62);
    check(TV3, ProtocolVersion::V0, &message, Blocks::Zstd);
    let payload = hex(
        "0006006e6f64652d610100000000000000047f00000129a000000000000000000000000000000000010500\
         6b65792d61070076616c75652d61010000000000000000",
    );
    assert_eq!(stream_payload(&hex(TV3)[4..]).unwrap(), payload);
}

#[test]
fn tv3_empty_ack() {
    let message = Message::Ack {
        delta: Delta::default(),
    };
    check("53b0000200", ProtocolVersion::V0, &message, Blocks::Raw);
}

#[test]
fn tv4_bad_cluster_and_its_syn() {
    check(
        "53b00003",
        ProtocolVersion::V0,
        &Message::BadCluster,
        Blocks::Raw,
    );
    let syn = Message::Syn {
        digest: Digest {
            entries: vec![(local("node-d", 4, 41004), nd(2, 0, 0))],
        },
        cluster_id: "other-cluster".into(),
    };
    let bytes = "53b00000010006006e6f64652d640400000000000000047f0000012ca002000000000000000000000000\
                 00000000000000000000000d006f746865722d636c7573746572";
    assert_eq!(hex(bytes).len(), 68);
    check(bytes, ProtocolVersion::V0, &syn, Blocks::Raw);
}

#[test]
fn tv5a_tv1_syn_in_v1() {
    assert_eq!(hex(TV5A).len(), 69);
    check(TV5A, ProtocolVersion::V1, &tv1_message(), Blocks::Zstd);
    let payload = hex(
        "06006e6f64652d610100000000000000047f00000129a003000000000000000000000000000000010000000000\
         000006006e6f64652d620200000000000000047f0000012aa0030000000000000000000000000000000100000000\
         000000",
    );
    assert_eq!(stream_payload(&hex(TV5A)[4..]).unwrap(), payload);
}

#[test]
fn tv5b_node_c_syn_v1_raw_digest() {
    let message = Message::Syn {
        digest: Digest {
            entries: vec![(node_c(), nd(2, 0, 1))],
        },
        cluster_id: "test-cluster".into(),
    };
    let bytes = "53b00100022f0006006e6f64652d630300000000000000047f0000012ba00200000000000000000000000000\
                 00000100000000000000000c00746573742d636c7573746572";
    check(bytes, ProtocolVersion::V1, &message, Blocks::Raw);
}

#[test]
fn tv5b_synack_v1_zstd_digest_and_delta() {
    let message = Message::SynAck {
        digest: Digest {
            entries: vec![
                (node_a(), nd(4, 0, 4)),
                (node_b(), nd(9, 0, 1)),
                (node_c(), nd(2, 0, 0)),
            ],
        },
        delta: Delta {
            nodes: vec![
                node_delta(
                    node_b(),
                    0,
                    0,
                    vec![kv("key-b", "value-b", 1, DeletionStatus::Set)],
                ),
                node_delta(
                    node_a(),
                    0,
                    0,
                    vec![
                        kv("key-a", "value-a", 1, DeletionStatus::Set),
                        kv("key-a2", "", 3, DeletionStatus::Deleted),
                        kv("key-ttl", "t", 4, DeletionStatus::DeleteAfterTtl),
                    ],
                ),
            ],
        },
    };
    assert_eq!(hex(TV5B_SYNACK).len(), 183);
    check(TV5B_SYNACK, ProtocolVersion::V1, &message, Blocks::Zstd);

    let bytes = hex(TV5B_SYNACK);
    let digest_payload = hex(
        "06006e6f64652d610100000000000000047f00000129a004000000000000000000000000000000040000000000\
         000006006e6f64652d620200000000000000047f0000012aa0090000000000000000000000000000000100000000\
         00000006006e6f64652d630300000000000000047f0000012ba00200000000000000000000000000000000000000\
         00000000",
    );
    let delta_payload = hex(
        "0006006e6f64652d620200000000000000047f0000012aa000000000000000000000000000000000010500\
         6b65792d62070076616c75652d620100000000000000000006006e6f64652d610100000000000000047f000001\
         29a0000000000000000000000000000000000105006b65792d61070076616c75652d6101000000000000000001\
         06006b65792d613200000300000000000000010107006b65792d74746c010074040000000000000002",
    );
    assert_eq!(digest_payload.len(), 141);
    assert_eq!(delta_payload.len(), 174);
    // Digest: one zstd block of 0x46 = 70 bytes at offset 4, then the end tag.
    assert_eq!(stream_payload(&bytes[4..]).unwrap(), digest_payload);
    assert_eq!(
        stream_payload(&bytes[4 + 3 + 70 + 1..]).unwrap(),
        delta_payload
    );
}

#[test]
fn tv5b_node_c_ack_v1_raw_delta() {
    let message = Message::Ack {
        delta: Delta {
            nodes: vec![node_delta(
                node_c(),
                0,
                0,
                vec![kv("key-c", "value-c", 1, DeletionStatus::Set)],
            )],
        },
    };
    let bytes = "53b001020242000006006e6f64652d630300000000000000047f0000012ba00000000000000000000000000000\
                 00000105006b65792d63070076616c75652d6301000000000000000000";
    check(bytes, ProtocolVersion::V1, &message, Blocks::Raw);
}

#[test]
fn h3_ack_v0_tombstone_and_ttl() {
    let message = Message::Ack {
        delta: Delta {
            nodes: vec![node_delta(
                node_a(),
                0,
                1,
                vec![
                    kv("key-a2", "", 3, DeletionStatus::Deleted),
                    kv("key-ttl", "t", 4, DeletionStatus::DeleteAfterTtl),
                ],
            )],
        },
    };
    assert_eq!(hex(H3_ACK_V0).len(), 77);
    check(H3_ACK_V0, ProtocolVersion::V0, &message, Blocks::Zstd);
    let payload = hex(
        "0006006e6f64652d610100000000000000047f00000129a000000000000000000100000000000000010600\
         6b65792d613200000300000000000000010107006b65792d74746c010074040000000000000002",
    );
    assert_eq!(payload.len(), 82);
    assert_eq!(stream_payload(&hex(H3_ACK_V0)[4..]).unwrap(), payload);
}

#[test]
fn f_ack_v0_reset_with_set_max_version() {
    let message = Message::Ack {
        delta: Delta {
            nodes: vec![NodeDelta {
                node: local("node-f", 6, 41006),
                last_gc_version: 2,
                from_version_excluded: 0,
                max_version: 2,
                key_values: vec![],
            }],
        },
    };
    let bytes = "53b000020231000006006e6f64652d660600000000000000047f0000012ea0020000000000000000000000\
                 0000000002020000000000000000";
    assert_eq!(hex(bytes).len(), 57);
    check(bytes, ProtocolVersion::V0, &message, Blocks::Raw);
}

#[test]
fn e_syn_v0_ipv6() {
    let node_e = NodeId::new("node-e", 5, "[::1]:41005".parse::<SocketAddr>().unwrap());
    let message = Message::Syn {
        digest: Digest {
            entries: vec![(node_e, nd(2, 0, 0))],
        },
        cluster_id: "test-cluster".into(),
    };
    let bytes = "53b00000010006006e6f64652d65050000000000000006000000000000000000000000000000012da002\
                 00000000000000000000000000000000000000000000000c00746573742d636c7573746572";
    assert_eq!(hex(bytes).len(), 79);
    check(bytes, ProtocolVersion::V0, &message, Blocks::Raw);
}

#[test]
fn empty_syn_v0_and_v1() {
    let message = Message::Syn {
        digest: Digest::default(),
        cluster_id: "c".into(),
    };
    check(
        "53b000000000010063",
        ProtocolVersion::V0,
        &message,
        Blocks::Raw,
    );
    check(
        "53b0010000010063",
        ProtocolVersion::V1,
        &message,
        Blocks::Raw,
    );
}

#[test]
fn h1_synack_reencoded_v1() {
    assert_eq!(hex(H1_SYNACK_REENCODED_V1).len(), 134);
    check(
        H1_SYNACK_REENCODED_V1,
        ProtocolVersion::V1,
        &tv2_message(),
        Blocks::Zstd,
    );
}

#[test]
fn bad_cluster_v1() {
    check(
        "53b00103",
        ProtocolVersion::V1,
        &Message::BadCluster,
        Blocks::Raw,
    );
}

#[test]
fn digest_sizes_match_the_vectors() {
    let Message::Syn { digest, .. } = tv1_message() else {
        unreachable!()
    };
    // TV-1: 96 bytes in V0; TV-5a: 51 bytes in V1 (3 + 47 + 1).
    assert_eq!(
        encoded_digest_len(ProtocolVersion::V0, &digest, Compression::Zstd),
        96
    );
    assert_eq!(
        encoded_digest_len(ProtocolVersion::V1, &digest, Compression::Zstd),
        51
    );
    assert_eq!(
        encoded_digest_len(ProtocolVersion::V1, &digest, Compression::None),
        3 + 94 + 1
    );
    for version in [ProtocolVersion::V0, ProtocolVersion::V1] {
        for compression in [Compression::Zstd, Compression::None] {
            let mut out = Vec::new();
            let written = encode_digest(version, &digest, compression, &mut out);
            assert_eq!(written, out.len());
            assert_eq!(written, encoded_digest_len(version, &digest, compression));
        }
    }
}

#[test]
fn trailing_bytes_are_ignored() {
    let mut bytes = hex(TV1);
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(
        decode_chitchat(&bytes).unwrap(),
        (ProtocolVersion::V0, tv1_message())
    );
    let mut bad_cluster = hex("53b00003");
    bad_cluster.push(0xff);
    assert_eq!(
        decode_chitchat(&bad_cluster).unwrap(),
        (ProtocolVersion::V0, Message::BadCluster)
    );
}
