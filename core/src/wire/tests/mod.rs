//! Tests of the wire format: the captured chitchat 0.13 vectors in both directions, every
//! decode error, the budgeted delta writer, cohort's envelope, and property tests (round trips
//! and "never panics" on arbitrary and mutated input).

use std::net::SocketAddr;

use super::*;
use crate::NodeId;

mod envelope;
mod errors;
mod props;
mod vectors;
mod writer;

/// Bytes from a hex string; whitespace is ignored.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len() % 2 == 0, "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// A node on 127.0.0.1.
fn local(name: &str, generation: u64, port: u16) -> NodeId {
    NodeId::new(name, generation, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn node_a() -> NodeId {
    local("node-a", 1, 41001)
}

fn node_b() -> NodeId {
    local("node-b", 2, 41002)
}

fn node_c() -> NodeId {
    local("node-c", 3, 41003)
}

fn nd(heartbeat: u64, last_gc_version: u64, max_version: u64) -> NodeDigest {
    NodeDigest {
        heartbeat,
        last_gc_version,
        max_version,
    }
}

fn kv(key: &str, value: &str, version: u64, status: DeletionStatus) -> KeyValueUpdate {
    KeyValueUpdate {
        key: key.into(),
        value: value.into(),
        version,
        status,
    }
}

/// A node delta whose `max_version` follows from its key-values (the last one's version).
fn node_delta(
    node: NodeId,
    last_gc_version: u64,
    from_version_excluded: u64,
    key_values: Vec<KeyValueUpdate>,
) -> NodeDelta {
    NodeDelta {
        node,
        last_gc_version,
        from_version_excluded,
        max_version: key_values.last().map_or(0, |kv| kv.version),
        key_values,
    }
}

fn encode(version: ProtocolVersion, message: &Message, compression: Compression) -> Vec<u8> {
    let mut out = Vec::new();
    encode_chitchat_with(version, message, compression, &mut out);
    out
}

/// The payload of the block stream at the start of `bytes`.
fn stream_payload(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    blocks::read_stream(&mut Reader::new(bytes))
}

/// A delta datagram (an Ack, V0) around a block stream of the given raw payload, as one raw
/// block (or several when it is longer than a block can hold).
fn ack_with_raw_payload(payload: &[u8]) -> Vec<u8> {
    let mut out = hex("53b00002");
    for chunk in payload.chunks(usize::from(u16::MAX)) {
        out.push(2);
        out.extend_from_slice(&u16::try_from(chunk.len()).unwrap().to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.push(0);
    out
}
