//! cohort's fuzz targets: one function per target, each taking arbitrary bytes and driving the
//! public API of `cohort-core` the way a receiving node does with bytes from the network.
//!
//! Nothing from the network may panic, allocate without bound or cause undefined behaviour, so
//! every target must return normally on every input. Where a target can check more than "no
//! panic" it asserts it (a round trip, agreement between two decoders, a memory bound): a
//! failed assertion is a finding like a panic in the code under test.
//!
//! The same functions run in two places:
//!
//! - `fuzz/` (cargo-fuzz, nightly, not a workspace member): one libFuzzer binary per target,
//!   each a one-line call into this crate, and `fuzz/run.sh SECONDS` to run them all in turn.
//! - `tests/replay.rs` (stable, an ordinary test): every input of `fuzz/corpus/<target>/` and
//!   `fuzz/regressions/<target>/` through the same function, so CI replays the corpora and
//!   every crash ever found.
//!
//! [`TARGETS`] lists them by the name of their cargo-fuzz binary.

mod archive;
mod cohort_mode;
mod gossip;
mod node;
mod rpc;

pub use archive::rkyv_access;
pub use cohort_mode::cohort_mode_packet;
pub use gossip::{envelope, gossip_codec};
pub use node::{node_datagram, node_enveloped, node_keyed};
pub use rpc::{rpc_connection, rpc_frames};

/// A fuzz target: takes any bytes, and panics only on a finding.
pub type Target = fn(&[u8]);

/// Every target, by the name of its cargo-fuzz binary (`fuzz/fuzz_targets/<name>.rs`) and of
/// its corpus folder (`fuzz/corpus/<name>/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("gossip_codec", gossip_codec),
    ("envelope", envelope),
    ("rpc_frames", rpc_frames),
    ("rpc_connection", rpc_connection),
    ("node_datagram", node_datagram),
    ("node_enveloped", node_enveloped),
    ("node_keyed", node_keyed),
    ("rkyv_access", rkyv_access),
    ("cohort_mode_packet", cohort_mode_packet),
];
