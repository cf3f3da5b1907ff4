//! cohort mode's packets (`cohort_core::membership::cohort_mode`).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use cohort_core::NodeId;
use cohort_core::membership::cohort_mode::wire::{self, MAX_PACKET};
use cohort_core::membership::cohort_mode::{CohortConfig, CohortMembership};

/// Fuzz target `cohort_mode_packet`: the input as a cohort-mode packet.
///
/// Asserts that a packet that decodes re-encodes to a packet that decodes the same when all
/// it carries fits one packet (to the same bytes when it carries no key-value delta: the
/// decoder keeps membership news and deltas apart, so their interleaving is not kept), and
/// that a [`CohortMembership`] (with one peer, the
/// sender) takes the input as the decoder does (the same error, or accepted), then keeps
/// working: time passes (probes, suspicions, syncs, collection) and every packet it sends is
/// at most [`MAX_PACKET`] bytes and decodes.
pub fn cohort_mode_packet(data: &[u8]) {
    let decoded = wire::decode(data);
    if let Ok(packet) = &decoded {
        let mut again = Vec::new();
        let written = wire::encode(packet, &mut again);
        if written == packet.updates.len() + packet.deltas.len() {
            assert_eq!(wire::decode(&again).as_ref(), Ok(packet), "re-encoded");
            if packet.deltas.is_empty() {
                assert_eq!(again, data, "a decoded packet re-encodes to its bytes");
            }
        }
    }
    let start = Instant::now();
    let me = NodeId::new("node-b", 2, SocketAddr::from((Ipv4Addr::LOCALHOST, 41002)));
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 41001));
    let mut config = CohortConfig::new(me, "test-cluster");
    config.seeds = vec![peer];
    config.rng_seed = 0x5eed;
    let mut machine = CohortMembership::new(config, start);
    let result = machine.handle_datagram(start, peer, data);
    assert_eq!(
        result.err(),
        decoded.err(),
        "the machine and the decoder disagree"
    );
    let mut out = Vec::new();
    for millis in [0, 50, 100, 1_000, 5_000, 30_000, 120_000] {
        machine.handle_timeout(start + Duration::from_millis(millis));
        while machine.poll_transmit(&mut out).is_some() {
            assert!(out.len() <= MAX_PACKET, "a {} byte packet", out.len());
            if let Err(error) = wire::decode(&out) {
                panic!("the machine sent a packet that does not decode: {error}");
            }
        }
        while machine.poll_event().is_some() {}
    }
    let _ = machine.members();
}
