//! Authenticated gossip: a cluster's keys, and the tag every cohort envelope then carries.
//!
//! Owns [`ClusterKey`], [`Keyring`] and the tag: HMAC-SHA-256 (RustCrypto's `hmac` and
//! `sha2`), truncated to its first [`AUTH_TAG_LEN`] bytes (RFC 4868's HMAC-SHA-256-128), over
//! the whole envelope without the tag itself, then the chitchat datagram:
//! `magic ‖ version ‖ flags ‖ timestamp ‖ tag length ‖ chitchat` (`docs/cohort-envelope.md`,
//! 1.3). A node with a keyring signs with its primary key and accepts a datagram whose tag any
//! key of its ring verifies; anything else (a bare datagram, no tag, a wrong one) is dropped and
//! counted, never applied.
//!
//! Why a MAC and not an AEAD: the threat is forged or altered gossip (made-up members, keys,
//! departures), which a MAC stops; the gossip itself (names, addresses, metadata) is not
//! secret in the deployments cohort targets, stays readable in captures, and costs one hash
//! per datagram instead of a cipher pass. A timestamp inside the MAC also makes every datagram
//! unique to its send. Compatible mode (bare chitchat datagrams) has no envelope, so it cannot
//! be authenticated: asking for both is a configuration error.
//!
//! Rotation across a running cluster, with no member lost: [`install`](Keyring::install) the
//! new key on every node (each then accepts both), [`use_key`](Keyring::use_key) it on every
//! node (each signs with it; the others still accept it), then [`remove`](Keyring::remove) the
//! old one.
//!
//! ```
//! use cohort_core::auth::{ClusterKey, Keyring};
//!
//! let old = ClusterKey::from_bytes(&[7; 32])?;
//! let new = ClusterKey::from_hex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")?;
//! let mut ring = Keyring::new(old.clone());
//! assert!(ring.install(new.clone()));
//! ring.use_key(&new)?;
//! assert!(ring.remove(&old)?);
//! assert_eq!(ring.len(), 1);
//! # Ok::<(), cohort_core::auth::KeyringError>(())
//! ```

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The length of the tag a keyed node attaches (HMAC-SHA-256 truncated to 128 bits).
pub const AUTH_TAG_LEN: usize = 16;

/// The length of a cluster key.
pub const CLUSTER_KEY_LEN: usize = 32;

/// Why a key or a keyring change was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// A key must be exactly [`CLUSTER_KEY_LEN`] bytes.
    #[error("a cluster key is {CLUSTER_KEY_LEN} bytes, not {0}")]
    KeyLength(usize),
    /// A key given as text was not hexadecimal.
    #[error("a cluster key in text is {} hexadecimal digits", CLUSTER_KEY_LEN * 2)]
    NotHex,
    /// The key is not in the ring (install it first).
    #[error("that key is not installed")]
    NotInstalled,
    /// The primary key cannot be removed (use another one first).
    #[error("the key in use cannot be removed")]
    InUse,
    /// The node was started without a keyring: its gossip is not authenticated.
    #[error("this node does not authenticate gossip (it has no keyring)")]
    NotKeyed,
}

/// A cluster's shared secret. `Debug` shows a fingerprint, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; CLUSTER_KEY_LEN]);

impl ClusterKey {
    /// A key from its bytes.
    ///
    /// # Errors
    ///
    /// [`KeyringError::KeyLength`] unless there are exactly [`CLUSTER_KEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyringError> {
        <[u8; CLUSTER_KEY_LEN]>::try_from(bytes)
            .map(Self)
            .map_err(|_| KeyringError::KeyLength(bytes.len()))
    }

    /// A key from 64 hexadecimal digits (surrounding whitespace ignored: a key file may end
    /// with a newline).
    ///
    /// # Errors
    ///
    /// [`KeyringError::NotHex`] for anything else.
    pub fn from_hex(text: &str) -> Result<Self, KeyringError> {
        let text = text.trim().as_bytes();
        if text.len() != CLUSTER_KEY_LEN * 2 {
            return Err(KeyringError::NotHex);
        }
        let digit = |c: u8| char::from(c).to_digit(16).ok_or(KeyringError::NotHex);
        let mut key = [0u8; CLUSTER_KEY_LEN];
        for (byte, pair) in key.iter_mut().zip(text.chunks_exact(2)) {
            *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?)
                .map_err(|_| KeyringError::NotHex)?;
        }
        Ok(Self(key))
    }

    /// A short public fingerprint of the key (the first 4 bytes of its HMAC of a fixed
    /// label), to tell keys apart in logs without revealing them.
    #[must_use]
    pub fn fingerprint(&self) -> u32 {
        let mut mac = self.mac();
        mac.update(b"cohort cluster key fingerprint");
        let out = mac.finalize().into_bytes();
        u32::from_be_bytes([out[0], out[1], out[2], out[3]])
    }

    fn mac(&self) -> Hmac<Sha256> {
        match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes a key of any length"),
        }
    }

    /// Writes `chitchat` (a chitchat datagram) into `out` as a node holding this key sends it:
    /// behind a cohort envelope stamped `timestamp` and carrying the tag
    /// (`docs/cohort-envelope.md`, 1.3). For tools and tests that craft datagrams (a node signs
    /// its own).
    ///
    /// ```
    /// use cohort_core::auth::{AUTH_TAG_LEN, ClusterKey};
    /// use cohort_core::wire::{self, Message, ProtocolVersion};
    /// use cohort_core::{NodeTag, Timestamp};
    ///
    /// let key = ClusterKey::from_bytes(&[7; 32])?;
    /// let mut chitchat = Vec::new();
    /// wire::encode_chitchat(ProtocolVersion::V0, &Message::BadCluster, &mut chitchat);
    /// let mut datagram = Vec::new();
    /// key.seal(Timestamp::new(1_000, 0, NodeTag::new(1))?, &chitchat, &mut datagram);
    /// assert_eq!(datagram.len(), wire::envelope_len(AUTH_TAG_LEN) + chitchat.len());
    /// let decoded = wire::decode_datagram(&datagram)?;
    /// assert_eq!(decoded.envelope.unwrap().auth_tag.unwrap().len(), AUTH_TAG_LEN);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seal(&self, timestamp: crate::Timestamp, chitchat: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let placeholder = [0u8; AUTH_TAG_LEN];
        if crate::wire::encode_envelope(timestamp, Some(&placeholder), out).is_err() {
            unreachable!("AUTH_TAG_LEN is a valid tag length");
        }
        let tag_at = out.len() - AUTH_TAG_LEN;
        let tag = self.tag(&out[start..tag_at], chitchat);
        out[tag_at..].copy_from_slice(&tag);
        out.extend_from_slice(chitchat);
    }

    /// The tag of `signed` (the envelope without its tag) and `chitchat`.
    pub(crate) fn tag(&self, signed: &[u8], chitchat: &[u8]) -> [u8; AUTH_TAG_LEN] {
        let mut mac = self.mac();
        mac.update(signed);
        mac.update(chitchat);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; AUTH_TAG_LEN];
        tag.copy_from_slice(&full[..AUTH_TAG_LEN]);
        tag
    }

    /// Whether `tag` is this key's tag of `signed` and `chitchat` (constant time).
    fn verifies(&self, signed: &[u8], chitchat: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac();
        mac.update(signed);
        mac.update(chitchat);
        tag.len() == AUTH_TAG_LEN && mac.verify_truncated_left(tag).is_ok()
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKey({:08x})", self.fingerprint())
    }
}

/// The keys a node accepts, and the one it signs with (its primary). See the module
/// documentation for rotation.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    /// The primary first.
    keys: Vec<ClusterKey>,
}

impl Keyring {
    /// A ring of one key, used for signing.
    #[must_use]
    pub fn new(primary: ClusterKey) -> Self {
        Self {
            keys: vec![primary],
        }
    }

    /// The key datagrams are signed with.
    #[must_use]
    pub fn primary(&self) -> &ClusterKey {
        &self.keys[0]
    }

    /// How many keys are accepted.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a ring holds its primary key at least.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Accepts `key` too (signing is unchanged). Returns whether it was new.
    pub fn install(&mut self, key: ClusterKey) -> bool {
        if self.keys.contains(&key) {
            return false;
        }
        self.keys.push(key);
        true
    }

    /// Signs with `key` from now on (it stays accepted, and so does the previous one).
    ///
    /// # Errors
    ///
    /// [`KeyringError::NotInstalled`]; nothing changed.
    pub fn use_key(&mut self, key: &ClusterKey) -> Result<(), KeyringError> {
        let at = self
            .keys
            .iter()
            .position(|k| k == key)
            .ok_or(KeyringError::NotInstalled)?;
        self.keys.swap(0, at);
        Ok(())
    }

    /// Stops accepting `key`. Returns whether it was installed.
    ///
    /// # Errors
    ///
    /// [`KeyringError::InUse`] for the primary key; nothing changed.
    pub fn remove(&mut self, key: &ClusterKey) -> Result<bool, KeyringError> {
        if self.primary() == key {
            return Err(KeyringError::InUse);
        }
        let before = self.keys.len();
        self.keys.retain(|k| k != key);
        Ok(self.keys.len() != before)
    }

    /// Whether a key of the ring made `tag` for `signed` and `chitchat`.
    pub(crate) fn verifies(&self, signed: &[u8], chitchat: &[u8], tag: &[u8]) -> bool {
        self.keys.iter().any(|k| k.verifies(signed, chitchat, tag))
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", self.primary())
            .field("keys", &self.keys.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_keys_and_bad_ring_changes_are_typed_errors_that_change_nothing() {
        assert_eq!(
            ClusterKey::from_bytes(&[1; 31]),
            Err(KeyringError::KeyLength(31))
        );
        assert_eq!(ClusterKey::from_hex("abc"), Err(KeyringError::NotHex));
        assert_eq!(
            ClusterKey::from_hex(&"zz".repeat(32)),
            Err(KeyringError::NotHex)
        );
        assert_eq!(
            ClusterKey::from_hex(&format!(" {}\n", "0a".repeat(32))),
            ClusterKey::from_bytes(&[10; 32])
        );
        let (a, b) = (
            ClusterKey::from_bytes(&[1; 32]).unwrap(),
            ClusterKey::from_bytes(&[2; 32]).unwrap(),
        );
        let mut ring = Keyring::new(a.clone());
        let before = ring.clone();
        assert_eq!(ring.use_key(&b), Err(KeyringError::NotInstalled));
        assert_eq!(ring.remove(&a), Err(KeyringError::InUse));
        assert_eq!(ring, before, "nothing changed");
        assert!(ring.install(b.clone()));
        assert!(!ring.install(b.clone()), "once");
        assert_eq!(ring.remove(&b), Ok(true));
        assert_eq!(ring.remove(&b), Ok(false));
        // Keys never show in Debug output.
        let shown = format!("{ring:?} {a:?}");
        assert!(!shown.contains("[1, 1"), "{shown}");
        assert!(
            shown.contains(&format!("{:08x}", a.fingerprint())),
            "{shown}"
        );
    }
}
