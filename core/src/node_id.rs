//! Node identity.
//!
//! Owns [`NodeId`], the identity every other part of cohort speaks of: a name chosen by the
//! operator, a generation that grows on every restart, and the gossip address peers reply to.
//! It never does I/O and never reads a clock: drivers choose the generation (typically the
//! start time in milliseconds) and pass it in.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::hash::{Fnv1a64, mix64};

/// The identity of one incarnation of a node.
///
/// Two incarnations of the same node (a restart) share the `name` and differ in
/// `generation`: the higher generation supersedes the lower one, which is then treated as
/// dead. The triple is chitchat's `ChitchatId { node_id, generation_id, gossip_advertise_addr }`.
///
/// Cloning is cheap, and a `NodeId` is one pointer wide: the three parts are reference
/// counted together (a membership table of 10,000 members holds 10,000 pointers to them).
///
/// ```
/// use cohort_core::NodeId;
/// let id = NodeId::new("node-1", 7, "127.0.0.1:7000".parse().unwrap());
/// assert_eq!(id.to_string(), "node-1/7@127.0.0.1:7000");
/// assert_eq!(id.generation(), 7);
/// ```
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct NodeId {
    parts: Arc<Parts>,
}

/// The three parts, in the order identities sort by.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Parts {
    name: Box<str>,
    generation: u64,
    gossip_addr: SocketAddr,
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeId")
            .field("name", &self.name())
            .field("generation", &self.generation())
            .field("gossip_addr", &self.gossip_addr())
            .finish()
    }
}

impl NodeId {
    /// Builds an identity from its three parts.
    pub fn new(name: impl Into<Arc<str>>, generation: u64, gossip_addr: SocketAddr) -> Self {
        let name: Arc<str> = name.into();
        Self::from_parts(&name, generation, gossip_addr)
    }

    fn from_parts(name: &str, generation: u64, gossip_addr: SocketAddr) -> Self {
        Self {
            parts: Arc::new(Parts {
                name: Box::from(name),
                generation,
                gossip_addr,
            }),
        }
    }

    /// Whether `self` and `other` are the same allocation (clones of one another): then they
    /// are equal without comparing their parts.
    #[must_use]
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.parts, &other.parts)
    }

    /// The operator-chosen name, stable across restarts.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.parts.name
    }

    /// The incarnation number; a restart must use a higher one.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.parts.generation
    }

    /// The address peers send gossip to (the advertised, public address).
    #[must_use]
    pub fn gossip_addr(&self) -> SocketAddr {
        self.parts.gossip_addr
    }

    /// A stable 64-bit hash of the whole identity.
    ///
    /// The same on every node, platform and release: it is FNV-1a over the name, the
    /// generation (little endian) and the address (IP octets, then port, big endian), passed
    /// through [`mix64`]. Used as the clock's node tag and for rendezvous hashing.
    #[must_use]
    pub fn stable_hash(&self) -> u64 {
        let mut h = Fnv1a64::new()
            .write(self.name().as_bytes())
            .write(&[0xff])
            .write(&self.generation().to_le_bytes());
        h = match self.gossip_addr() {
            SocketAddr::V4(a) => h.write(&[4]).write(&a.ip().octets()),
            SocketAddr::V6(a) => h.write(&[6]).write(&a.ip().octets()),
        };
        mix64(h.write(&self.gossip_addr().port().to_be_bytes()).finish())
    }
}

/// A node identity borrowed from a datagram: the same three parts as [`NodeId`], with the
/// name still in the received bytes. Lets the membership machine look nodes up without
/// allocating a name per digest entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeIdRef<'a> {
    /// The name.
    pub name: &'a str,
    /// The generation.
    pub generation: u64,
    /// The gossip address.
    pub gossip_addr: SocketAddr,
}

impl NodeIdRef<'_> {
    /// The owned identity.
    #[must_use]
    pub fn to_owned(&self) -> NodeId {
        NodeId::from_parts(self.name, self.generation, self.gossip_addr)
    }
}

impl NodeId {
    /// This identity, borrowed.
    #[must_use]
    pub fn as_ref(&self) -> NodeIdRef<'_> {
        NodeIdRef {
            name: &self.parts.name,
            generation: self.parts.generation,
            gossip_addr: self.parts.gossip_addr,
        }
    }
}

impl PartialEq for NodeId {
    /// Equal when every part is: the same as comparing name, generation and address in turn
    /// (as [`Ord`] does), but the cheap parts go first and a shared name is not compared byte by
    /// byte, because ids are compared on every digest entry.
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&*self.parts, &*other.parts);
        self.ptr_eq(other)
            || (a.generation == b.generation && a.gossip_addr == b.gossip_addr && a.name == b.name)
    }
}

impl PartialEq<NodeIdRef<'_>> for NodeId {
    fn eq(&self, other: &NodeIdRef<'_>) -> bool {
        self.as_ref() == *other
    }
}

/// Feeds the three parts of an identity to a hasher: the one definition of `Hash` for
/// [`NodeId`], [`NodeIdRef`] and `dyn NodeKey`, so the three always agree. Four writes (name
/// bytes, generation, IP as 128 bits, port and family), cheaper than the derived form.
fn hash_parts<H: Hasher>(key: NodeIdRef<'_>, state: &mut H) {
    state.write(key.name.as_bytes());
    state.write_u64(key.generation);
    let (ip, family) = match key.gossip_addr {
        SocketAddr::V4(a) => (u128::from(u32::from(*a.ip())), 4u32),
        SocketAddr::V6(a) => (u128::from(*a.ip()), 6u32),
    };
    state.write_u128(ip);
    state.write_u32(u32::from(key.gossip_addr.port()) | (family << 16));
}

impl Hash for NodeId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(self.as_ref(), state);
    }
}

impl Hash for NodeIdRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(*self, state);
    }
}

/// The parts of an identity, owned or borrowed, so that maps keyed by [`NodeId`] can be
/// queried with a [`NodeIdRef`] (through `Borrow<dyn NodeKey>`). Hashing and equality use the
/// three parts, exactly as `NodeId`'s `Hash` and `Eq` do.
pub(crate) trait NodeKey {
    fn key(&self) -> NodeIdRef<'_>;
}

impl NodeKey for NodeId {
    fn key(&self) -> NodeIdRef<'_> {
        self.as_ref()
    }
}

impl NodeKey for NodeIdRef<'_> {
    fn key(&self) -> NodeIdRef<'_> {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn NodeKey + 'a> for NodeId {
    fn borrow(&self) -> &(dyn NodeKey + 'a) {
        self
    }
}

impl Hash for dyn NodeKey + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(self.key(), state);
    }
}

impl PartialEq for dyn NodeKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for dyn NodeKey + '_ {}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}@{}",
            self.name(),
            self.generation(),
            self.gossip_addr()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, generation: u64, port: u16) -> NodeId {
        NodeId::new(name, generation, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn stable_hash_distinguishes_every_part() {
        let base = id("a", 1, 7000);
        assert_ne!(base.stable_hash(), id("b", 1, 7000).stable_hash());
        assert_ne!(base.stable_hash(), id("a", 2, 7000).stable_hash());
        assert_ne!(base.stable_hash(), id("a", 1, 7001).stable_hash());
        assert_eq!(base.stable_hash(), id("a", 1, 7000).stable_hash());
    }

    #[test]
    fn stable_hash_is_pinned() {
        // Computed independently (a few lines of Python implementing FNV-1a 64 and fmix64 over
        // the documented byte layout). A change to this value changes clock tags and
        // rendezvous placement across releases: it must never happen silently.
        assert_eq!(
            id("node-1", 1, 7000).stable_hash(),
            15_538_430_588_607_182_775
        );
    }

    #[test]
    fn borrowed_lookups_find_owned_keys() {
        use std::collections::HashMap;
        let mut map: HashMap<NodeId, u32, crate::hash::MapHasher> =
            HashMap::with_hasher(crate::hash::map_hasher(7));
        map.insert(id("a", 1, 7000), 1);
        map.insert(id("a", 2, 7000), 2);
        let name = String::from("a");
        let key = NodeIdRef {
            name: &name,
            generation: 2,
            gossip_addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
        };
        assert_eq!(map.get(&key as &dyn NodeKey), Some(&2));
        let other = NodeIdRef {
            generation: 3,
            ..key
        };
        assert_eq!(map.get(&other as &dyn NodeKey), None);
        assert_eq!(key.to_owned(), id("a", 2, 7000));
        assert!(id("a", 2, 7000) == key);
    }

    #[test]
    fn orders_by_name_then_generation() {
        assert!(id("a", 9, 9) < id("b", 0, 0));
        assert!(id("a", 1, 9) < id("a", 2, 0));
    }
}
