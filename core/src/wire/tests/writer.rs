//! The budgeted delta writer: chitchat's fitting rule, the budget as a hard limit, refused ops
//! leaving no trace, block cutting (items straddling blocks) and large deltas.

use std::net::SocketAddr;

use proptest::prelude::*;

use super::*;
use crate::NodeId;

/// One op offered to a writer.
#[derive(Clone, Debug)]
enum Op {
    Node(NodeId, u64, u64),
    Kv(KeyValueUpdate),
    SetMax(u64),
}

fn offer(writer: &mut DeltaWriter, op: &Op) -> bool {
    match op {
        Op::Node(node, gc, from) => writer.add_node(node, *gc, *from),
        Op::Kv(kv) => writer.add_key_value_update(kv),
        Op::SetMax(v) => writer.add_set_max_version(*v),
    }
}

/// The delta a decoder builds from `ops` (which follow the grouping rules).
fn expected(ops: &[Op]) -> Delta {
    let mut nodes: Vec<NodeDelta> = Vec::new();
    for op in ops {
        match op {
            Op::Node(node, gc, from) => nodes.push(NodeDelta {
                node: node.clone(),
                last_gc_version: *gc,
                from_version_excluded: *from,
                max_version: 0,
                key_values: vec![],
            }),
            Op::Kv(kv) => {
                let current = nodes.last_mut().unwrap();
                current.max_version = kv.version;
                current.key_values.push(kv.clone());
            }
            Op::SetMax(v) => nodes.last_mut().unwrap().max_version = *v,
        }
    }
    Delta { nodes }
}

/// Offers `ops` until the first refusal (chitchat's behaviour) and returns the finished delta
/// with the ops accepted.
fn write(budget: usize, compression: Compression, ops: &[Op]) -> (Vec<u8>, Vec<Op>) {
    let mut writer = DeltaWriter::with_compression(budget, compression);
    let mut accepted = Vec::new();
    for op in ops {
        if !offer(&mut writer, op) {
            break;
        }
        accepted.push(op.clone());
    }
    assert_eq!(writer.op_count(), accepted.len());
    let bound = writer.len_bound();
    let mut out = Vec::new();
    let written = writer.finish(&mut out);
    assert_eq!(written, out.len());
    assert!(out.len() <= bound);
    if compression == Compression::None {
        assert_eq!(out.len(), bound, "with raw blocks the bound is exact");
    }
    (out, accepted)
}

/// Decodes a delta (of any size: the datagram size limit is not checked here), which must use
/// all the bytes.
fn decode_delta(delta: &[u8]) -> Delta {
    let mut reader = Reader::new(delta);
    let decoded = codec::read_delta(&mut reader).unwrap();
    assert!(reader.is_empty());
    if delta.len() <= delta_budget(0) {
        let mut bytes = hex("53b00002");
        bytes.extend_from_slice(delta);
        assert_eq!(
            decode_chitchat(&bytes).unwrap(),
            (
                ProtocolVersion::V0,
                Message::Ack {
                    delta: decoded.clone()
                }
            )
        );
    }
    decoded
}

/// A deterministic pseudo-random string of `len` bytes: compressible (few distinct letters) or
/// not (printable ASCII drawn uniformly).
fn text(seed: u64, len: usize, compressible: bool) -> String {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            if compressible {
                char::from(b'a' + (z % 3) as u8)
            } else {
                char::from(b' ' + (z % 95) as u8)
            }
        })
        .collect()
}

fn kv_op(key: &str, value: String, version: u64) -> Op {
    Op::Kv(KeyValueUpdate {
        key: key.into(),
        value,
        version,
        status: DeletionStatus::Set,
    })
}

#[test]
fn writer_can_move_between_threads() {
    fn send<T: Send + Sync>() {}
    send::<DeltaWriter>();
}

#[test]
fn empty_delta_is_the_end_tag() {
    let writer = DeltaWriter::new(delta_budget(0));
    assert!(writer.is_empty());
    assert_eq!(writer.len_bound(), 1);
    assert_eq!(writer.budget(), 65_503);
    let mut out = vec![0xaa];
    assert_eq!(writer.finish(&mut out), 1);
    assert_eq!(out, [0xaa, 0]);

    let mut writer = DeltaWriter::new(0);
    assert!(!writer.add_set_max_version(1));
    assert!(!writer.add_node(&node_a(), 0, 0));
}

#[test]
fn budget_uses_chitchats_bound() {
    // Node op for node-a: 1 + 23 + 16 = 40 bytes; bound = 3 + 40 + 1.
    assert!(!DeltaWriter::new(43).add_node(&node_a(), 0, 0));
    let mut writer = DeltaWriter::with_compression(44, Compression::None);
    assert!(writer.add_node(&node_a(), 0, 0));
    assert_eq!(writer.len_bound(), 44);
    // KeyValue "key-a" = "value-a": 14 + 5 + 7 = 26 bytes.
    assert!(!writer.add_key_value("key-a", "value-a", 1, DeletionStatus::Set));
    let mut writer = DeltaWriter::with_compression(70, Compression::None);
    assert!(writer.add_node(&node_a(), 0, 0));
    assert!(writer.add_key_value("key-a", "value-a", 1, DeletionStatus::Set));
    assert!(!writer.add_set_max_version(1)); // 70 + 9 > 70
    let mut out = Vec::new();
    writer.finish(&mut out);
    assert_eq!(out.len(), 70);
    assert_eq!(&out[..3], &[2, 66, 0]); // one raw block of 40 + 26 bytes
}

#[test]
fn an_op_starting_a_new_block_costs_three_more_bytes() {
    // Node (40) + KeyValue "k" with a 16,329-byte value (14 + 1 + 16,329 = 16,344): exactly one
    // full block pending.
    let value = text(1, 16_329, false);
    let ops = [
        Op::Node(node_a(), 0, 0),
        kv_op("k", value.clone(), 1),
        Op::SetMax(1),
    ];
    let mut writer = DeltaWriter::with_compression(usize::MAX, Compression::None);
    assert!(offer(&mut writer, &ops[0]) && offer(&mut writer, &ops[1]));
    assert_eq!(writer.len_bound(), 3 + BLOCK_THRESHOLD + 1);
    // The SetMaxVersion (9 bytes) goes past the block: 3 + 16,384 + 9 + 1 + 3.
    let (bytes, accepted) = write(16_399, Compression::None, &ops);
    assert_eq!((bytes.len(), accepted.len()), (16_388, 2));
    let (bytes, accepted) = write(16_400, Compression::None, &ops);
    assert_eq!((bytes.len(), accepted.len()), (16_400, 3));
    // Two raw blocks: exactly 16,384 bytes, then 9.
    assert_eq!(&bytes[..3], &[2, 0x00, 0x40]);
    assert_eq!(
        &bytes[3 + BLOCK_THRESHOLD..3 + BLOCK_THRESHOLD + 3],
        &[2, 9, 0]
    );
    assert_eq!(decode_delta(&bytes), expected(&ops));
}

#[test]
fn compressed_blocks_free_budget_for_later_ops() {
    // A compressible first block is written compressed as soon as the next op starts another
    // block; the bound then counts its compressed size, so more ops fit than with raw blocks.
    let value = "a".repeat(16_329);
    let mut ops = vec![Op::Node(node_a(), 0, 0), kv_op("k", value, 1)];
    for version in 2..2_000 {
        ops.push(kv_op("k", text(version, 20, false), version));
    }
    let budget = 20_000;
    let (zstd, zstd_ops) = write(budget, Compression::Zstd, &ops);
    let (raw, raw_ops) = write(budget, Compression::None, &ops);
    assert!(zstd.len() <= budget && raw.len() <= budget);
    assert!(zstd_ops.len() > raw_ops.len() + 50);
    assert_eq!(decode_delta(&zstd), expected(&zstd_ops));
    assert_eq!(decode_delta(&raw), expected(&raw_ops));
}

#[test]
fn refused_ops_leave_the_writer_unchanged() {
    let big = text(9, 30_000, false);
    for compression in [Compression::Zstd, Compression::None] {
        let mut plain = DeltaWriter::with_compression(10_000, compression);
        let mut probed = DeltaWriter::with_compression(10_000, compression);
        let mut version = 0;
        for n in 0..40u16 {
            let node = local(&format!("node-{n}"), 1, n);
            assert_eq!(plain.add_node(&node, 0, 0), probed.add_node(&node, 0, 0));
            assert!(!probed.add_key_value("big", &big, 1, DeletionStatus::Set));
            version += 1;
            let value = text(u64::from(n), 100, n % 2 == 0);
            assert_eq!(
                plain.add_key_value("k", &value, version, DeletionStatus::Set),
                probed.add_key_value("k", &value, version, DeletionStatus::Set)
            );
            assert_eq!(plain.len_bound(), probed.len_bound());
            assert_eq!(plain.op_count(), probed.op_count());
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        plain.finish(&mut a);
        probed.finish(&mut b);
        assert_eq!(a, b);
    }
}

#[test]
fn items_straddling_blocks_decode() {
    // 3,000 ops of 14 + 2 + 17 = 33 bytes after a 40-byte Node op: about 99 kB, so six blocks,
    // and since 33 does not divide 16,384 ops straddle the boundaries.
    let mut ops = vec![Op::Node(node_a(), 3, 0)];
    for version in 1..=3_000u64 {
        ops.push(kv_op("kk", text(version, 17, version % 3 == 0), version));
    }
    for compression in [Compression::Zstd, Compression::None] {
        let (bytes, accepted) = write(usize::MAX, compression, &ops);
        assert_eq!(accepted.len(), ops.len());
        assert_eq!(decode_delta(&bytes), expected(&ops));
        if compression == Compression::None {
            // Walk the blocks: all 16,384 bytes but the last.
            let mut at = 0;
            let mut lens = Vec::new();
            while bytes[at] != 0 {
                assert_eq!(bytes[at], 2);
                let len = usize::from(u16::from_le_bytes([bytes[at + 1], bytes[at + 2]]));
                lens.push(len);
                at += 3 + len;
            }
            assert_eq!(at + 1, bytes.len());
            let total = 40 + 3_000 * 33;
            assert_eq!(lens.iter().sum::<usize>(), total);
            assert!(lens[..lens.len() - 1].iter().all(|&l| l == BLOCK_THRESHOLD));
            assert_eq!(lens.len(), total.div_ceil(BLOCK_THRESHOLD));
        }
    }
}

#[test]
fn zstd_blocks_match_one_shot_compression() {
    // The writer reuses one zstd context; its blocks must be what a fresh one-shot
    // `compress_to_buffer` (level 0, buffer as long as the chunk) gives for each chunk, as
    // chitchat does it.
    let mut payload = Vec::new();
    let mut writer = DeltaWriter::unbounded(Compression::Zstd);
    codec::put_node_op(&mut payload, &node_a(), 0, 0);
    assert!(writer.add_node(&node_a(), 0, 0));
    for version in 1..=2_500u64 {
        let value = text(version, 20, version % 5 != 0);
        codec::put_key_value_op(&mut payload, "key", &value, version, DeletionStatus::Set);
        assert!(writer.add_key_value("key", &value, version, DeletionStatus::Set));
    }
    // One chunk does not compress: random bytes of a raw block are fine as a payload here.
    let mut expected_stream = Vec::new();
    for chunk in payload.chunks(BLOCK_THRESHOLD) {
        let mut buffer = vec![0; chunk.len()];
        match zstd::bulk::compress_to_buffer(chunk, &mut buffer, 0) {
            Ok(len) => {
                expected_stream.push(1);
                expected_stream.extend_from_slice(&u16::try_from(len).unwrap().to_le_bytes());
                expected_stream.extend_from_slice(&buffer[..len]);
            }
            Err(_) => {
                expected_stream.push(2);
                expected_stream
                    .extend_from_slice(&u16::try_from(chunk.len()).unwrap().to_le_bytes());
                expected_stream.extend_from_slice(chunk);
            }
        }
    }
    expected_stream.push(0);
    assert!(payload.len() > 3 * BLOCK_THRESHOLD);
    let mut out = Vec::new();
    writer.finish(&mut out);
    assert_eq!(out, expected_stream);
}

#[test]
fn many_node_deltas_round_trip() {
    let mut nodes = Vec::new();
    for n in 0..1_500u16 {
        let node = if n % 7 == 0 {
            NodeId::new(
                format!("node-{n:05}"),
                u64::from(n),
                SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, n], n)),
            )
        } else {
            local(&format!("node-{n:05}"), u64::from(n), n)
        };
        let key_values = (1..=u64::from(n % 4))
            .map(|v| {
                kv(
                    &format!("key-{v}"),
                    &format!("value-{n}-{v}"),
                    v * 3,
                    DeletionStatus::Set,
                )
            })
            .collect::<Vec<_>>();
        let mut delta = node_delta(node, u64::from(n % 3), 0, key_values);
        if delta.key_values.is_empty() {
            delta.max_version = u64::from(n % 5);
        }
        nodes.push(delta);
    }
    let message = Message::Ack {
        delta: Delta { nodes },
    };
    let Message::Ack { delta } = &message else {
        unreachable!()
    };
    for compression in [Compression::Zstd, Compression::None] {
        // Unbounded (more than a datagram holds), through `encode_chitchat_with`.
        let bytes = encode(ProtocolVersion::V0, &message, compression);
        assert_eq!(&decode_delta(&bytes[HEADER_LEN..]), delta);
        // Through a budgeted writer: a prefix that fits one datagram.
        let mut ops = Vec::new();
        for node in &delta.nodes {
            ops.push(Op::Node(node.node.clone(), node.last_gc_version, 0));
            ops.extend(node.key_values.iter().cloned().map(Op::Kv));
            if node.key_values.is_empty() && node.max_version > 0 {
                ops.push(Op::SetMax(node.max_version));
            }
        }
        let (bytes, accepted) = write(delta_budget(0), compression, &ops);
        assert!(bytes.len() <= delta_budget(0));
        assert!(accepted.len() > 500);
        assert_eq!(decode_delta(&bytes), expected(&accepted));
    }
}

#[test]
fn strings_longer_than_the_wire_allows_are_cut() {
    let node = local(&"n".repeat(70_000), 1, 1);
    let value = "é".repeat(40_000); // 80,000 bytes; cut at 65,534 (a char boundary)
    let message = Message::Ack {
        delta: Delta {
            nodes: vec![node_delta(
                node,
                0,
                0,
                vec![kv(&"k".repeat(65_536), &value, 1, DeletionStatus::Set)],
            )],
        },
    };
    let bytes = encode(ProtocolVersion::V0, &message, Compression::Zstd);
    let delta = decode_delta(&bytes[HEADER_LEN..]);
    let node = &delta.nodes[0];
    assert_eq!(node.node.name().len(), 65_535);
    assert_eq!(node.key_values[0].key.len(), 65_535);
    assert_eq!(node.key_values[0].value.len(), 65_534);
    assert!(node.key_values[0].value.chars().all(|c| c == 'é'));

    let syn = Message::Syn {
        digest: Digest::default(),
        cluster_id: "c".repeat(65_536),
    };
    let bytes = encode(ProtocolVersion::V1, &syn, Compression::None);
    assert_eq!(bytes.len(), HEADER_LEN + 1 + 2 + 65_535);
    assert_eq!(&bytes[HEADER_LEN..HEADER_LEN + 3], &[0, 0xff, 0xff]);
}

/// A sequence of ops that follows the grouping rules: nodes, each with strictly increasing
/// key-value versions or a SetMaxVersion; values of every size up to about two blocks.
fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
    let node = (0u16..2_000, 0u64..4, 0u64..4, 0usize..30);
    let kvs = prop::collection::vec(
        (0usize..40, 0usize..3_000, any::<bool>(), 1u64..5, 0u8..3),
        0..12,
    );
    let big = prop::option::weighted(0.1, 0usize..33_000);
    prop::collection::vec((node, kvs, big, 0u64..10), 0..40).prop_map(|nodes| {
        let mut ops = Vec::new();
        for (i, ((port, gc, from, name_len), kvs, big, set_max)) in nodes.into_iter().enumerate() {
            let name = format!("{i}-{}", "x".repeat(name_len));
            ops.push(Op::Node(local(&name, gc, port), gc, from));
            let mut version = from;
            for (j, (key_len, value_len, compressible, step, status)) in kvs.iter().enumerate() {
                version += step;
                let value_len = if j == 0 {
                    big.unwrap_or(*value_len)
                } else {
                    *value_len
                };
                ops.push(Op::Kv(KeyValueUpdate {
                    key: "k".repeat(*key_len),
                    value: text(version ^ (i as u64) << 32, value_len, *compressible),
                    version,
                    status: match status {
                        0 => DeletionStatus::Set,
                        1 => DeletionStatus::Deleted,
                        _ => DeletionStatus::DeleteAfterTtl,
                    },
                }));
            }
            if kvs.is_empty() && set_max > 0 {
                ops.push(Op::SetMax(set_max));
            }
        }
        ops
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn budget_is_never_exceeded(
        ops in arb_ops(),
        budget in prop_oneof![1usize..2_000, 1usize..70_000, Just(delta_budget(0))],
        raw in any::<bool>(),
    ) {
        let compression = if raw { Compression::None } else { Compression::Zstd };
        let (bytes, accepted) = write(budget, compression, &ops);
        prop_assert!(bytes.len() <= budget);
        prop_assert_eq!(decode_delta(&bytes), expected(&accepted));
    }
}
