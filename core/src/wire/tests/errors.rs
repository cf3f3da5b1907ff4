//! Every decode error path: header, primitives, block streams (tags, limits, zstd), delta
//! grouping rules, V1 digests, and the datagram size limit.

use super::*;

const TV1: &str = "53b00000020006006e6f64652d610100000000000000047f00000129a00300000000000000000000000000\
    0000010000000000000006006e6f64652d620200000000000000047f0000012aa003000000000000000000000000\
    00000001000000000000000c00746573742d636c7573746572";

const TV2: &str = "53b00001020006006e6f64652d610100000000000000047f00000129a00200000000000000000000000000\
    0000000000000000000006006e6f64652d620200000000000000047f0000012aa003000000000000000000000000\
    000000010000000000000002420000\
    06006e6f64652d620200000000000000047f0000012aa0000000000000000000000000000000000105006b65792d\
    62070076616c75652d6201000000000000000000";

/// Offset of TV-2's delta (its block tag).
const TV2_DELTA: usize = 0x64;

fn decode_err(bytes: &[u8]) -> DecodeError {
    match decode_chitchat(bytes) {
        Ok(decoded) => panic!("decoded {decoded:?}"),
        Err(e) => e,
    }
}

fn truncated_what(bytes: &[u8]) -> &'static str {
    match decode_err(bytes) {
        DecodeError::Truncated { what, needed } => {
            assert!(needed > 0);
            what
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
}

/// The raw delta payload of a Node op for node-a.
fn node_op(node: &NodeId) -> Vec<u8> {
    let mut out = Vec::new();
    codec::put_node_op(&mut out, node, 0, 0);
    out
}

fn kv_op(version: u64) -> Vec<u8> {
    let mut out = Vec::new();
    codec::put_key_value_op(&mut out, "k", "v", version, DeletionStatus::Set);
    out
}

fn set_max_op(version: u64) -> Vec<u8> {
    let mut out = Vec::new();
    codec::put_set_max_version_op(&mut out, version);
    out
}

fn malformed_delta(ops: &[Vec<u8>]) -> &'static str {
    match decode_err(&ack_with_raw_payload(&ops.concat())) {
        DecodeError::MalformedDelta(why) => why,
        other => panic!("expected MalformedDelta, got {other:?}"),
    }
}

#[test]
fn bad_magic() {
    assert_eq!(decode_err(&hex("54b00003")), DecodeError::BadMagic(0xb054));
    assert_eq!(decode_err(&hex("b05300")), DecodeError::BadMagic(0x53b0));
    assert_eq!(
        decode_datagram(&hex("0000")).unwrap_err(),
        DecodeError::BadMagic(0)
    );
}

#[test]
fn unknown_version_and_type() {
    assert_eq!(decode_err(&hex("53b00203")), DecodeError::UnknownVersion(2));
    assert_eq!(
        decode_err(&hex("53b0ff03")),
        DecodeError::UnknownVersion(255)
    );
    assert_eq!(
        decode_err(&hex("53b00004")),
        DecodeError::UnknownMessageType(4)
    );
    assert_eq!(
        decode_err(&hex("53b001ff")),
        DecodeError::UnknownMessageType(255)
    );
}

#[test]
fn every_prefix_is_truncated() {
    let tv3 = "53b0000201360028b52ffd20426d010024020006006e6f64652d610100047f00000129a0000105006b\
               65792d61070076616c7500030053190a743e002f00";
    for vector in [
        TV1,
        TV2,
        tv3,
        "53b0000200",
        "53b000000000010063",
        "53b0010000010063",
    ] {
        let bytes = hex(vector);
        assert!(decode_chitchat(&bytes).is_ok());
        for len in 0..bytes.len() {
            truncated_what(&bytes[..len]);
        }
    }
}

#[test]
fn truncation_names_each_field() {
    let tv1 = hex(TV1);
    let cases: &[(usize, &str)] = &[
        (0, "magic"),
        (1, "magic"),
        (2, "protocol version"),
        (3, "message type"),
        (5, "digest entry count"),
        (7, "node name length"),
        (10, "node name"),
        (0x0e, "generation"),
        (0x16, "IP tag"),
        (0x18, "IPv4 address"),
        (0x1b, "port"),
        (0x1d, "heartbeat"),
        (0x25, "last_gc_version"),
        (0x2d, "max_version"),
        (0x64, "cluster id length"),
        (0x67, "cluster id"),
    ];
    for &(len, what) in cases {
        assert_eq!(truncated_what(&tv1[..len]), what, "TV-1 cut at {len}");
    }

    let tv2 = hex(TV2);
    let d = TV2_DELTA;
    let p = d + 3; // the payload starts after the raw block's header
    let cases: &[(usize, &str)] = &[
        (d, "block tag"),
        (d + 1, "block length"),
        (d + 2, "block length"),
        (d + 3, "raw block"),
        (p + 66, "block tag"),
    ];
    for &(len, what) in cases {
        assert_eq!(truncated_what(&tv2[..len]), what, "TV-2 cut at {len}");
    }

    // Inside a block stream's payload: a complete stream whose payload is a cut op.
    let payload = &tv2[p..p + 66];
    let cases: &[(usize, &str)] = &[
        (0, "node name length"),
        (24, "last_gc_version"),
        (32, "from_version_excluded"),
        (41, "key length"),
        (43, "key"),
        (48, "value length"),
        (50, "value"),
        (57, "key-value version"),
        (65, "deletion status"),
    ];
    for &(cut, what) in cases {
        let mut bytes = ack_with_raw_payload(&payload[..cut]);
        if cut == 0 {
            bytes = ack_with_raw_payload(&[0]);
        }
        assert_eq!(truncated_what(&bytes), what, "payload cut at {cut}");
    }
    assert_eq!(
        truncated_what(&ack_with_raw_payload(&[2, 1, 2, 3])),
        "max_version"
    );
    assert_eq!(
        truncated_what(&hex("53b000020136000102")),
        "zstd block",
        "a zstd block shorter than its length"
    );
    // A V0 digest announcing more entries than it has.
    assert_eq!(truncated_what(&hex("53b000000300")), "node name length");
}

#[test]
fn bad_ip_tag() {
    let mut bytes = hex(TV1);
    bytes[0x16] = 5;
    assert_eq!(
        decode_err(&bytes),
        DecodeError::InvalidTag { what: "IP", tag: 5 }
    );
    bytes[0x16] = 0;
    assert_eq!(
        decode_err(&bytes),
        DecodeError::InvalidTag { what: "IP", tag: 0 }
    );
}

#[test]
fn bad_block_tag() {
    let mut bytes = hex(TV2);
    bytes[TV2_DELTA] = 3;
    assert_eq!(
        decode_err(&bytes),
        DecodeError::InvalidTag {
            what: "block",
            tag: 3
        }
    );
    let last = bytes.len() - 1;
    bytes[TV2_DELTA] = 2;
    bytes[last] = 0xff;
    assert_eq!(
        decode_err(&bytes),
        DecodeError::InvalidTag {
            what: "block",
            tag: 0xff
        }
    );
}

#[test]
fn bad_op_tag() {
    let mut bytes = hex(TV2);
    bytes[TV2_DELTA + 3] = 3;
    assert_eq!(
        decode_err(&bytes),
        DecodeError::InvalidTag {
            what: "delta op",
            tag: 3
        }
    );
}

#[test]
fn bad_status() {
    let mut bytes = hex(TV2);
    let status = bytes.len() - 2;
    assert_eq!(bytes[status], 0);
    for tag in [3, 0x80, 0xff] {
        bytes[status] = tag;
        assert_eq!(
            decode_err(&bytes),
            DecodeError::InvalidTag {
                what: "deletion status",
                tag
            }
        );
    }
}

#[test]
fn invalid_utf8() {
    let mut bytes = hex(TV1);
    bytes[0x08] = 0xff;
    assert_eq!(decode_err(&bytes), DecodeError::InvalidUtf8("node name"));

    let mut bytes = hex(TV1);
    bytes[0x66] = 0xc3; // a lead byte without its continuation
    assert_eq!(decode_err(&bytes), DecodeError::InvalidUtf8("cluster id"));

    let mut bytes = hex(TV2);
    bytes[TV2_DELTA + 3 + 43] = 0x80; // first byte of "key-b"
    assert_eq!(decode_err(&bytes), DecodeError::InvalidUtf8("key"));

    let mut bytes = hex(TV2);
    bytes[TV2_DELTA + 3 + 50] = 0xfe; // first byte of "value-b"
    assert_eq!(decode_err(&bytes), DecodeError::InvalidUtf8("value"));
}

#[test]
fn delta_grouping_rules() {
    let a = node_op(&node_a());
    let b = node_op(&node_b());
    assert_eq!(
        malformed_delta(&[kv_op(1), a.clone()]),
        "key-value op before any node op"
    );
    assert_eq!(
        malformed_delta(&[set_max_op(1), a.clone()]),
        "SetMaxVersion op before any node op"
    );
    assert_eq!(
        malformed_delta(&[a.clone(), b.clone(), a.clone()]),
        "the same node twice in one delta"
    );
    assert_eq!(
        malformed_delta(&[a.clone(), kv_op(0)]),
        "key-value version 0"
    );
    assert_eq!(
        malformed_delta(&[a.clone(), kv_op(2), kv_op(2)]),
        "key-value versions not strictly increasing"
    );
    assert_eq!(
        malformed_delta(&[a.clone(), kv_op(3), kv_op(2)]),
        "key-value versions not strictly increasing"
    );
    // A key-value after a SetMaxVersion must be above the value set.
    assert_eq!(
        malformed_delta(&[a.clone(), set_max_op(5), kv_op(5)]),
        "key-value versions not strictly increasing"
    );
    // A SetMaxVersion after key-values must not go below them.
    assert_eq!(
        malformed_delta(&[a.clone(), kv_op(5), set_max_op(4)]),
        "SetMaxVersion below a key-value version of its node"
    );
    // The same name with another generation is another node.
    let a2 = node_op(&local("node-a", 2, 41001));
    assert!(decode_chitchat(&ack_with_raw_payload(&[a.clone(), a2].concat())).is_ok());
    // Versions restart in each node delta.
    let ok = [a.clone(), kv_op(2), b.clone(), kv_op(1)].concat();
    assert!(decode_chitchat(&ack_with_raw_payload(&ok)).is_ok());
}

#[test]
fn set_max_version_mixed_with_key_values() {
    let decode_one = |ops: &[Vec<u8>]| -> NodeDelta {
        let bytes = ack_with_raw_payload(&ops.concat());
        let (_, message) = decode_chitchat(&bytes).unwrap();
        let Message::Ack { mut delta } = message else {
            panic!("not an Ack")
        };
        assert_eq!(delta.nodes.len(), 1);
        delta.nodes.remove(0)
    };
    let a = node_op(&node_a());
    // Alone: sets max_version; the last one wins.
    assert_eq!(decode_one(&[a.clone(), set_max_op(7)]).max_version, 7);
    assert_eq!(
        decode_one(&[a.clone(), set_max_op(7), set_max_op(3)]).max_version,
        3
    );
    // After key-values: moves max_version up (or keeps it).
    let n = decode_one(&[a.clone(), kv_op(2), set_max_op(9)]);
    assert_eq!((n.max_version, n.key_values.len()), (9, 1));
    assert_eq!(
        decode_one(&[a.clone(), kv_op(2), set_max_op(2)]).max_version,
        2
    );
    // Before key-values: the key-value's version wins.
    let n = decode_one(&[a.clone(), set_max_op(4), kv_op(6)]);
    assert_eq!((n.max_version, n.key_values[0].version), (6, 6));
    // No op: max_version 0.
    assert_eq!(decode_one(&[a]).max_version, 0);
}

#[test]
fn partial_v1_digest_entry() {
    let mut entry = Vec::new();
    let digest = Digest {
        entries: vec![(node_a(), nd(1, 2, 3))],
    };
    encode_digest(ProtocolVersion::V0, &digest, Compression::None, &mut entry);
    let entry = &entry[2..]; // drop the V0 count
    for cut in 1..entry.len() {
        let mut payload = entry.to_vec();
        payload.extend_from_slice(&entry[..cut]);
        let mut bytes = hex("53b00100");
        bytes.push(2);
        bytes.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_le_bytes());
        bytes.extend_from_slice(&payload);
        bytes.push(0);
        bytes.extend_from_slice(&hex("010063"));
        assert_eq!(
            decode_err(&bytes),
            DecodeError::MalformedDigest("partial entry at the end of a V1 digest"),
            "cut at {cut}"
        );
    }
    // An invalid IP tag inside a V1 digest is still reported as such.
    let mut payload = entry.to_vec();
    payload[16] = 9; // the IP tag
    let mut bytes = hex("53b00100");
    bytes.push(2);
    bytes.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_le_bytes());
    bytes.extend_from_slice(&payload);
    bytes.extend_from_slice(&hex("00010063"));
    assert_eq!(
        decode_err(&bytes),
        DecodeError::InvalidTag { what: "IP", tag: 9 }
    );
}

/// An Ack whose delta is the given zstd blocks.
fn ack_with_zstd_blocks(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = hex("53b00002");
    for frame in frames {
        out.push(1);
        out.extend_from_slice(&u16::try_from(frame.len()).unwrap().to_le_bytes());
        out.extend_from_slice(frame);
    }
    out.push(0);
    out
}

#[test]
fn zstd_garbage() {
    let garbage = ack_with_zstd_blocks(&[vec![1, 2, 3, 4, 5]]);
    assert!(matches!(decode_err(&garbage), DecodeError::Zstd(_)));
    // A real frame with a corrupted body.
    let mut frame = zstd::bulk::compress(b"hello hello hello hello hello", 3).unwrap();
    let last = frame.len() - 1;
    frame[last] ^= 0xff;
    frame.truncate(last);
    assert!(matches!(
        decode_err(&ack_with_zstd_blocks(&[frame])),
        DecodeError::Zstd(_)
    ));
    // A valid frame whose content is not a delta.
    let frame = zstd::bulk::compress(&[7; 10], 3).unwrap();
    assert_eq!(
        decode_err(&ack_with_zstd_blocks(&[frame])),
        DecodeError::InvalidTag {
            what: "delta op",
            tag: 7
        }
    );
}

#[test]
fn zstd_block_inflating_beyond_the_limit() {
    let too_large = DecodeError::TooLarge {
        what: "zstd block",
        limit: MAX_BLOCK_DECOMPRESSED,
    };
    // The frame declares its content size (70,000): refused from the header.
    let frame = zstd::bulk::compress(&[0; 70_000], 3).unwrap();
    assert!(frame.len() < 100);
    assert!(matches!(
        zstd::zstd_safe::get_frame_content_size(&frame),
        Ok(Some(70_000))
    ));
    assert_eq!(decode_err(&ack_with_zstd_blocks(&[frame])), too_large);

    // The frame does not declare its size: stopped by the output buffer's end.
    let mut compressor = zstd::bulk::Compressor::new(3).unwrap();
    compressor
        .set_parameter(zstd::stream::raw::CParameter::ContentSizeFlag(false))
        .unwrap();
    let frame = compressor.compress(&[0; 70_000]).unwrap();
    assert!(matches!(
        zstd::zstd_safe::get_frame_content_size(&frame),
        Ok(None)
    ));
    assert_eq!(decode_err(&ack_with_zstd_blocks(&[frame])), too_large);

    // Exactly the limit inflates (and then fails as a delta: zeros read as a Node op with an
    // empty name, generation 0 and IP tag 0).
    let frame = zstd::bulk::compress(&[0; MAX_BLOCK_DECOMPRESSED], 3).unwrap();
    assert_eq!(
        decode_err(&ack_with_zstd_blocks(&[frame])),
        DecodeError::InvalidTag { what: "IP", tag: 0 }
    );
}

#[test]
fn stream_inflating_beyond_the_limit() {
    let frame = zstd::bulk::compress(&[0; MAX_BLOCK_DECOMPRESSED], 3).unwrap();
    let blocks = MAX_STREAM_DECOMPRESSED / MAX_BLOCK_DECOMPRESSED + 1;
    let bytes = ack_with_zstd_blocks(&vec![frame; blocks]);
    assert!(bytes.len() < 2_000);
    assert_eq!(
        decode_err(&bytes),
        DecodeError::TooLarge {
            what: "block stream",
            limit: MAX_STREAM_DECOMPRESSED
        }
    );
    // zstd and raw blocks mix in one stream, their payloads concatenated.
    let mut mixed = hex("53b00002");
    let small = zstd::bulk::compress(&[0; 1000], 3).unwrap();
    for frame in [&small, &small] {
        mixed.push(1);
        mixed.extend_from_slice(&u16::try_from(frame.len()).unwrap().to_le_bytes());
        mixed.extend_from_slice(frame);
    }
    mixed.extend_from_slice(&[2, 1, 0, 0, 0]);
    assert_eq!(stream_payload(&mixed[4..]).unwrap(), vec![0; 2001]);
}

#[test]
fn missing_end_tag() {
    let tv2 = hex(TV2);
    assert_eq!(
        decode_err(&tv2[..tv2.len() - 1]),
        DecodeError::Truncated {
            what: "block tag",
            needed: 1
        }
    );
    // The stream of an empty Ack without its end tag.
    assert_eq!(
        decode_err(&hex("53b00002")),
        DecodeError::Truncated {
            what: "block tag",
            needed: 1
        }
    );
    // An empty V1 digest without its end tag.
    assert_eq!(truncated_what(&hex("53b00100")), "block tag");
}

#[test]
fn oversized_datagram() {
    let mut bytes = hex("53b00003");
    bytes.resize(MAX_DATAGRAM_SIZE, 0);
    // The largest datagram is accepted (and its trailing bytes ignored).
    assert_eq!(
        decode_chitchat(&bytes).unwrap(),
        (ProtocolVersion::V0, Message::BadCluster)
    );
    assert!(decode_datagram(&bytes).is_ok());
    bytes.push(0);
    assert_eq!(
        decode_err(&bytes),
        DecodeError::Oversized(MAX_DATAGRAM_SIZE + 1)
    );
    assert_eq!(
        decode_datagram(&bytes).unwrap_err(),
        DecodeError::Oversized(MAX_DATAGRAM_SIZE + 1)
    );
}

#[test]
fn decode_header_alone() {
    assert_eq!(
        decode_header(&hex("53b00101")).unwrap(),
        (ProtocolVersion::V1, MessageType::SynAck)
    );
    assert_eq!(
        decode_header(&hex("53b001")).unwrap_err(),
        DecodeError::Truncated {
            what: "message type",
            needed: 1
        }
    );
}
