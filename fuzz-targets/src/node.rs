//! The node machine (`cohort_core::Node`) receiving gossip datagrams.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use cohort_core::auth::{ClusterKey, Keyring};
use cohort_core::wire::{
    DecodeError, MAX_DATAGRAM_SIZE, decode_datagram, encode_envelope, split_datagram,
};
use cohort_core::{Event, Node, NodeConfig, NodeId, NodeTag, Timestamp, Transmits, WallTime};

use crate::rpc::WALL_MILLIS;

/// The peer every datagram comes from: node-a of the chitchat test vectors.
const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 41001);

/// Fuzz target `node_datagram`: a [`Node`] (node-b of the chitchat test vectors, in cluster
/// `test-cluster`, with a key of its own and node-a as its seed) receives the input as a
/// datagram from node-a, drains, receives it again (a duplicate), then lets time pass
/// (gossip rounds, failure detection, garbage collection), draining after each step.
///
/// Asserts that the node accepts exactly the datagrams [`decode_datagram`] decodes (with the
/// same error otherwise), and that every datagram it sends is at most [`MAX_DATAGRAM_SIZE`]
/// bytes and decodes.
pub fn node_datagram(data: &[u8]) {
    receive(data, None, decode_datagram(data).err());
}

/// Fuzz target `node_enveloped`: as [`node_datagram`], with the input wrapped in a valid
/// cohort envelope (no tag) stamped by node-a at the targets' wall time, so that the fuzzer
/// works on the chitchat datagram behind it.
pub fn node_enveloped(data: &[u8]) {
    let timestamp = Timestamp::new(WALL_MILLIS, 0, NodeTag::new(0x0a)).expect("in range");
    let mut datagram = Vec::with_capacity(data.len() + 20);
    encode_envelope(timestamp, None, &mut datagram).expect("no tag");
    datagram.extend_from_slice(data);
    receive(&datagram, None, decode_datagram(&datagram).err());
}

/// The key of the keyed node of [`node_keyed`].
const KEY: [u8; 32] = [0x6b; 32];

/// Fuzz target `node_keyed`: as [`node_datagram`], on a node with a cluster key. An input
/// whose first byte is even is sealed with the node's key ([`ClusterKey::seal`], stamped by
/// node-a at the targets' wall time) so that the fuzzer works on the authenticated path behind
/// the tag; an odd one arrives as it is, and is applied only if it carries a valid tag (which
/// the fuzzer cannot forge: it must be dropped as [`DecodeError::Unauthenticated`] once its
/// envelope decodes, whatever follows).
pub fn node_keyed(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = ClusterKey::from_bytes(&KEY).expect("a 32-byte key");
    if mode % 2 == 0 {
        let timestamp = Timestamp::new(WALL_MILLIS, 0, NodeTag::new(0x0a)).expect("in range");
        let mut datagram = Vec::with_capacity(rest.len() + 40);
        key.seal(timestamp, rest, &mut datagram);
        receive(
            &datagram,
            Some(Keyring::new(key)),
            decode_datagram(&datagram).err(),
        );
    } else {
        // The tag is checked before the payload is parsed.
        let expected = match split_datagram(rest) {
            Err(error) => error,
            Ok(_) => DecodeError::Unauthenticated,
        };
        receive(rest, Some(Keyring::new(key)), Some(expected));
    }
}

/// Feeds `datagram` to node-b (with `keyring`, if any), expecting `expected` from it.
fn receive(datagram: &[u8], keyring: Option<Keyring>, expected: Option<DecodeError>) {
    let start = Instant::now();
    let wall = WallTime::from_unix_millis(WALL_MILLIS).expect("a valid wall time");
    let id = NodeId::new("node-b", 2, SocketAddr::from((Ipv4Addr::LOCALHOST, 41002)));
    let mut config = NodeConfig::new(id);
    "test-cluster".clone_into(&mut config.cluster_id);
    config.rng_seed = 0x5eed;
    config.seeds = vec![PEER];
    config.keyring = keyring;
    let mut node = Node::new(config, start).expect("a valid configuration");
    node.set(start, "key-b", "value-b").expect("a valid key");
    let mut out = Output::default();
    out.drain(&mut node, wall);

    let at = start + Duration::from_millis(1);
    let result = node.handle_datagram(at, wall, PEER, datagram);
    assert_eq!(
        result.err(),
        expected,
        "the node and decode_datagram disagree"
    );
    out.drain(&mut node, wall);
    let _ = node.handle_datagram(at, wall, PEER, datagram);
    out.drain(&mut node, wall);

    for millis in [1_000, 2_000, 5_000, 30_000, 120_000, 3_600_000] {
        let elapsed = Duration::from_millis(millis);
        node.handle_timeout(start + elapsed);
        out.drain(&mut node, wall.saturating_add(elapsed));
    }
    let _ = node.members();
}

/// What a driver keeps for its loop.
#[derive(Default)]
struct Output {
    transmits: Transmits,
    events: Vec<Event>,
}

impl Output {
    /// Drains the node, checks the datagrams it sends, and forgets them.
    fn drain(&mut self, node: &mut Node, wall: WallTime) {
        let _ = node.drain(wall, &mut self.transmits, &mut self.events);
        for transmit in &self.transmits {
            let payload = &transmit.payload;
            assert!(
                payload.len() <= MAX_DATAGRAM_SIZE,
                "a {} byte datagram",
                payload.len()
            );
            if let Err(error) = decode_datagram(payload) {
                panic!("the node sent a datagram that does not decode: {error}: {payload:02x?}");
            }
        }
        self.transmits.clear();
        self.events.clear();
    }
}
