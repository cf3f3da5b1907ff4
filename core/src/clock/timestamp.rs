//! Timestamps and node tags.

use std::fmt;
use std::str::FromStr;

use super::{COUNTER_BITS, ClockError, MAX_PHYSICAL_MILLIS};
use crate::NodeId;

/// The identity a clock stamps on its timestamps, making them unique across nodes.
///
/// Usually [`NodeTag::from_node_id`], a stable 64-bit hash of the node's name, generation and
/// address, so every incarnation of every node has its own tag.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Hash), compare(PartialEq))]
pub struct NodeTag(u64);

impl NodeTag {
    /// A tag with the given value.
    #[must_use]
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The tag of a node identity: [`NodeId::stable_hash`].
    #[must_use]
    pub fn from_node_id(id: &NodeId) -> Self {
        Self(id.stable_hash())
    }

    /// The tag's value.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl ArchivedNodeTag {
    /// The native tag.
    #[must_use]
    pub fn to_native(&self) -> NodeTag {
        NodeTag(self.0.to_native())
    }
}

impl PartialOrd for ArchivedNodeTag {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ArchivedNodeTag {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.to_native().cmp(&other.0.to_native())
    }
}

/// A hybrid logical clock timestamp: physical milliseconds, a logical counter and the tag of
/// the node that issued it.
///
/// Timestamps order by physical time, then counter, then node tag: a total order in which
/// timestamps from different nodes never compare equal. The archived form
/// ([`ArchivedTimestamp`]) orders the same way, and so do the 16 bytes of
/// [`to_bytes`](Self::to_bytes) compared lexicographically.
///
/// The text form is `<millis>-<counter, 4 hex digits>-<node tag, 16 hex digits>`:
///
/// ```
/// use cohort_core::{NodeTag, Timestamp};
/// let t = Timestamp::new(1_700_000_000_000, 3, NodeTag::new(0xabc))?;
/// assert_eq!(t.to_string(), "1700000000000-0003-0000000000000abc");
/// assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
/// # Ok::<(), cohort_core::ClockError>(())
/// ```
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Hash))]
pub struct Timestamp {
    // Field order is the ordering: packed time (millis << 16 | counter), then the node tag.
    time: u64,
    node: NodeTag,
}

impl Timestamp {
    /// The smallest timestamp: the Unix epoch, counter 0, node tag 0.
    pub const MIN: Self = Self {
        time: 0,
        node: NodeTag(0),
    };

    /// A timestamp from its parts. Fails with [`ClockError::WallTimeOutOfRange`] when `millis`
    /// does not fit in 48 bits.
    pub const fn new(millis: u64, counter: u16, node: NodeTag) -> Result<Self, ClockError> {
        if millis > MAX_PHYSICAL_MILLIS {
            return Err(ClockError::WallTimeOutOfRange { millis });
        }
        Ok(Self {
            time: (millis << COUNTER_BITS) | counter as u64,
            node,
        })
    }

    /// A timestamp from its packed time value (`millis << 16 | counter`) and node tag. Every
    /// `u64` is a valid packed time.
    #[must_use]
    pub const fn from_packed(time: u64, node: NodeTag) -> Self {
        Self { time, node }
    }

    /// The physical part, in milliseconds since the Unix epoch.
    #[must_use]
    pub const fn millis(self) -> u64 {
        self.time >> COUNTER_BITS
    }

    /// The logical counter.
    #[must_use]
    pub const fn counter(self) -> u16 {
        self.time as u16
    }

    /// The tag of the node that issued this timestamp.
    #[must_use]
    pub const fn node(self) -> NodeTag {
        self.node
    }

    /// The packed time value: physical milliseconds in the high 48 bits, the counter in the
    /// low 16.
    #[must_use]
    pub const fn packed_time(self) -> u64 {
        self.time
    }

    /// A 16-byte encoding (packed time then node tag, both big endian) whose lexicographic
    /// byte order is the timestamp order. Used where timestamps travel outside rkyv.
    #[must_use]
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.time.to_be_bytes());
        out[8..].copy_from_slice(&self.node.0.to_be_bytes());
        out
    }

    /// Decodes [`to_bytes`](Self::to_bytes). Every 16-byte string is a valid timestamp.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let (time, node) = bytes.split_at(8);
        Self {
            time: u64::from_be_bytes(time.try_into().expect("8 bytes")),
            node: NodeTag(u64::from_be_bytes(node.try_into().expect("8 bytes"))),
        }
    }
}

impl ArchivedTimestamp {
    /// The native timestamp.
    #[must_use]
    pub fn to_native(&self) -> Timestamp {
        Timestamp {
            time: self.time.to_native(),
            node: self.node.to_native(),
        }
    }
}

impl PartialOrd for ArchivedTimestamp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ArchivedTimestamp {
    /// The same order as [`Timestamp`]'s, whatever the byte order of the archive.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.to_native().cmp(&other.to_native())
    }
}

impl PartialEq<Timestamp> for ArchivedTimestamp {
    fn eq(&self, other: &Timestamp) -> bool {
        self.to_native() == *other
    }
}

impl PartialOrd<Timestamp> for ArchivedTimestamp {
    fn partial_cmp(&self, other: &Timestamp) -> Option<std::cmp::Ordering> {
        Some(self.to_native().cmp(other))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{:04x}-{:016x}",
            self.millis(),
            self.counter(),
            self.node.0
        )
    }
}

/// Why a string is not a [`Timestamp`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {input:?}: {reason}")]
pub struct ParseTimestampError {
    input: String,
    reason: &'static str,
}

impl ParseTimestampError {
    fn new(input: &str, reason: &'static str) -> Self {
        // Keep the error small whatever the input was.
        let input = input.chars().take(64).collect();
        Self { input, reason }
    }
}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('-');
        let (Some(millis), Some(counter), Some(node), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ParseTimestampError::new(
                s,
                "expected <millis>-<counter hex>-<node hex>",
            ));
        };
        let decimal = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        let hex = |p: &str, len: usize| p.len() == len && p.bytes().all(|b| b.is_ascii_hexdigit());
        if !decimal(millis) {
            return Err(ParseTimestampError::new(
                s,
                "milliseconds must be decimal digits",
            ));
        }
        if !hex(counter, 4) {
            return Err(ParseTimestampError::new(s, "counter must be 4 hex digits"));
        }
        if !hex(node, 16) {
            return Err(ParseTimestampError::new(
                s,
                "node tag must be 16 hex digits",
            ));
        }
        let millis = millis
            .parse::<u64>()
            .ok()
            .filter(|&m| m <= MAX_PHYSICAL_MILLIS)
            .ok_or_else(|| ParseTimestampError::new(s, "milliseconds out of range"))?;
        let counter = u16::from_str_radix(counter, 16)
            .map_err(|_| ParseTimestampError::new(s, "counter out of range"))?;
        let node = u64::from_str_radix(node, 16)
            .map_err(|_| ParseTimestampError::new(s, "node tag out of range"))?;
        Ok(Self {
            time: (millis << COUNTER_BITS) | u64::from(counter),
            node: NodeTag(node),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(millis: u64, counter: u16, node: u64) -> Timestamp {
        Timestamp::new(millis, counter, NodeTag::new(node)).unwrap()
    }

    #[test]
    fn orders_by_time_then_counter_then_node() {
        assert!(ts(1, 0, 9) < ts(2, 0, 0));
        assert!(ts(1, 0, 9) < ts(1, 1, 0));
        assert!(ts(1, 1, 0) < ts(1, 1, 1));
        assert_eq!(ts(1, 1, 1), ts(1, 1, 1));
    }

    #[test]
    fn parts_round_trip() {
        let t = ts(MAX_PHYSICAL_MILLIS, u16::MAX, u64::MAX);
        assert_eq!(t.millis(), MAX_PHYSICAL_MILLIS);
        assert_eq!(t.counter(), u16::MAX);
        assert_eq!(t.node(), NodeTag::new(u64::MAX));
        assert_eq!(t.packed_time(), u64::MAX);
        assert!(matches!(
            Timestamp::new(MAX_PHYSICAL_MILLIS + 1, 0, NodeTag::new(0)),
            Err(ClockError::WallTimeOutOfRange { .. })
        ));
    }

    #[test]
    fn parse_rejects_malformed_input_without_panicking() {
        for bad in [
            "",
            "1",
            "1-0000",
            "1-0000-0000000000000000-1",
            "x-0000-0000000000000000",
            "1-000g-0000000000000000",
            "1-00000-0000000000000000",
            "1-0000-000000000000000",
            "+1-0000-0000000000000000",
            "281474976710656-0000-0000000000000000",
            "99999999999999999999999-0000-0000000000000000",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            "281474976710655-ffff-ffffffffffffffff"
                .parse::<Timestamp>()
                .unwrap(),
            ts(MAX_PHYSICAL_MILLIS, u16::MAX, u64::MAX)
        );
    }

    fn archive(t: Timestamp) -> rkyv::util::AlignedVec {
        rkyv::to_bytes::<rkyv::rancor::Error>(&t).unwrap()
    }

    fn arb_ts() -> impl Strategy<Value = Timestamp> {
        (any::<u64>(), any::<u64>()).prop_map(|(t, n)| Timestamp::from_packed(t, NodeTag::new(n)))
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(t in arb_ts()) {
            prop_assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<Timestamp>();
        }

        #[test]
        fn bytes_round_trip_and_keep_order(a in arb_ts(), b in arb_ts()) {
            prop_assert_eq!(Timestamp::from_bytes(a.to_bytes()), a);
            prop_assert_eq!(a.to_bytes().cmp(&b.to_bytes()), a.cmp(&b));
        }

        #[test]
        fn archived_order_matches_native_order(a in arb_ts(), b in arb_ts()) {
            let (ba, bb) = (archive(a), archive(b));
            let aa = rkyv::access::<ArchivedTimestamp, rkyv::rancor::Error>(&ba).unwrap();
            let ab = rkyv::access::<ArchivedTimestamp, rkyv::rancor::Error>(&bb).unwrap();
            prop_assert_eq!(aa.cmp(ab), a.cmp(&b));
            prop_assert_eq!(aa.partial_cmp(&b), Some(a.cmp(&b)));
            prop_assert!(*aa == a);
            let back: Timestamp = rkyv::deserialize::<Timestamp, rkyv::rancor::Error>(aa).unwrap();
            prop_assert_eq!(back, a);
        }
    }

    #[test]
    fn archived_order_matches_on_edge_values() {
        // Values whose little-endian bytes order differently from their numeric order.
        let values = [
            ts(0, 0, 0),
            ts(0, 1, 0),
            ts(0, 0x100, 0),
            ts(1, 0, 0),
            ts(0x100, 0, 0),
            ts(0, 0, 0x100),
        ];
        for a in values {
            for b in values {
                let (ba, bb) = (archive(a), archive(b));
                let aa = rkyv::access::<ArchivedTimestamp, rkyv::rancor::Error>(&ba).unwrap();
                let ab = rkyv::access::<ArchivedTimestamp, rkyv::rancor::Error>(&bb).unwrap();
                assert_eq!(aa.cmp(ab), a.cmp(&b), "{a} vs {b}");
            }
        }
    }
}
