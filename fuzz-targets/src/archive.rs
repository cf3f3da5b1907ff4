//! The rkyv access path of the built-in messages that arrive in RPC frames.

use std::fmt::Debug;
use std::marker::PhantomData;

use cohort_core::Timestamp;
use cohort_core::rpc::{Frame, Status};
use cohort_tokio::admin::{MembersReply, MembersRequest};
use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor::Error;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Portable, Serialize};

/// A built-in message type that travels as an rkyv archive.
trait Wire:
    Archive<
        Archived: Portable
                      + for<'a> CheckBytes<HighValidator<'a, Error>>
                      + Deserialize<Self, HighDeserializer<Error>>,
    > + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, Error>>
    + PartialEq
    + Debug
    + Sized
{
}

impl<T> Wire for T where
    T: Archive<
            Archived: Portable
                          + for<'a> CheckBytes<HighValidator<'a, Error>>
                          + Deserialize<T, HighDeserializer<Error>>,
        > + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, Error>>
        + PartialEq
        + Debug
{
}

/// Fuzz target `rkyv_access`: the input as the archive of each built-in message type that
/// arrives from the network: an error frame's [`Status`], the admin service's
/// [`MembersRequest`] and [`MembersReply`], a [`Timestamp`], and a plain `String`, `Vec<u8>`
/// and `u32` (as applications send them).
///
/// The input is copied into a 16-byte aligned buffer, as a frame's body is, and validated with
/// `rkyv::access` (bytecheck). Asserts that an archive that validates deserializes (every
/// field read), and that the value serializes to an archive that validates and deserializes to
/// the same value.
pub fn rkyv_access(data: &[u8]) {
    let mut buffer = AlignedVec::<16>::with_capacity(data.len());
    buffer.extend_from_slice(data);
    each_type(|check| check.bytes(&buffer));
}

/// Reads a received frame's body as every built-in message type, through [`Frame::access`],
/// with the checks of [`rkyv_access`].
pub(crate) fn check_frame_body(frame: &Frame) {
    each_type(|check| check.frame(frame));
}

/// Runs `f` for every built-in message type.
fn each_type(mut f: impl FnMut(&dyn Check)) {
    f(&Of::<Status>(PhantomData));
    f(&Of::<MembersRequest>(PhantomData));
    f(&Of::<MembersReply>(PhantomData));
    f(&Of::<Timestamp>(PhantomData));
    f(&Of::<String>(PhantomData));
    f(&Of::<Vec<u8>>(PhantomData));
    f(&Of::<u32>(PhantomData));
}

/// The checks, for one type (object safe, so that the types can be listed).
trait Check {
    /// Validates and reads `bytes` (16-byte aligned) as the type's archive.
    fn bytes(&self, bytes: &[u8]);
    /// Validates and reads a frame's body as the type's archive.
    fn frame(&self, frame: &Frame);
}

/// The checks for `T` (the type only).
struct Of<T>(PhantomData<fn() -> T>);

impl<T: Wire> Check for Of<T> {
    fn bytes(&self, bytes: &[u8]) {
        if let Ok(archived) = rkyv::access::<T::Archived, Error>(bytes) {
            read::<T>(archived);
        }
    }

    fn frame(&self, frame: &Frame) {
        if let Ok(archived) = frame.access::<T::Archived>() {
            read::<T>(archived);
        }
    }
}

/// Deserializes a validated archive, and checks that the value round-trips.
fn read<T: Wire>(archived: &T::Archived) {
    let value = rkyv::deserialize::<T, Error>(archived)
        .unwrap_or_else(|e| panic!("a validated archive does not deserialize: {e}"));
    let bytes = rkyv::to_bytes::<Error>(&value).expect("a value serializes");
    let again = rkyv::access::<T::Archived, Error>(&bytes)
        .unwrap_or_else(|e| panic!("{value:?} serializes to an archive that fails: {e}"));
    let copy = rkyv::deserialize::<T, Error>(again).expect("its own archive deserializes");
    assert_eq!(copy, value, "the value does not round-trip");
}
