//! RPC between members, the runtime-free part: the frame format and its streaming decoder
//! ([`frame`]), the typed status that travels back ([`Status`]) and stable method ids
//! ([`MethodId`]).
//!
//! Frames carry an rkyv archive at a 16-byte aligned offset, behind a fixed 48-byte header
//! with the sender's hybrid logical clock timestamp and the call's remaining deadline; the
//! format is specified byte by byte, with test vectors, in `docs/rpc-frames.md`. Nothing here
//! does I/O: a transport feeds bytes in and writes the bytes it is given.
//!
//! What is built so far: the wire layer, the connection machine ([`Connection`]: calls
//! multiplexed with ids, deadlines, cancellation, bounds both ways, keep-alive) and services
//! ([`RpcService`], [`Handler`], [`Request`] read in place, a [`Registry`] changed at run
//! time), the set of calls a connection serves ([`Serving`]: handlers run by the
//! connection's task, no allocation per call once warm), and the calls it waits on
//! ([`Replies`], each answered as a validated [`Response`]). `cohort-tokio` runs them on TCP.
//!
//! ```
//! use cohort_core::rpc::{FrameDecoder, FrameHeader, FrameKind, MethodId, write_frame};
//! use cohort_core::{NodeTag, Timestamp};
//!
//! let method = MethodId::of("kv", "get");
//! let header = FrameHeader::request(7, method, Timestamp::from_packed(1 << 20, NodeTag::new(1)), None);
//! let mut out = rkyv::util::AlignedVec::<16>::new();
//! write_frame(&mut out, header, &"user:42".to_owned())?;
//!
//! // Any split of the stream gives the same frame.
//! let mut decoder = FrameDecoder::new(1 << 20);
//! let (first, rest) = out.split_at(10);
//! assert!(decoder.decode(&mut &first[..])?.is_none());
//! let frame = decoder.decode(&mut &rest[..])?.expect("a whole frame");
//! assert_eq!(frame.header().kind, FrameKind::Request);
//! assert_eq!(frame.header().method, method);
//! let key = frame.access::<rkyv::string::ArchivedString>()?;
//! assert_eq!(key.as_str(), "user:42");
//! # Ok::<(), cohort_core::rpc::FrameError>(())
//! ```

mod backoff;
mod connection;
mod dispatch;
pub mod frame;
mod limits;
mod replies;
mod service;
mod serving;
mod status;

pub use backoff::Backoff;
pub use connection::{
    CallError, CallId, CloseReason, Connection, ConnectionConfig, ConnectionEvent,
};
pub use frame::{
    DEFAULT_MAX_FRAME_SIZE, FRAME_MAGIC, FRAME_VERSION, Frame, FrameDecoder, FrameError,
    FrameHeader, FrameKind, HEADER_LEN, MethodId, NO_DEADLINE, write_frame,
};
pub use limits::ServerLimits;
pub use replies::{Replies, Response};
pub use service::{
    FrameSerializer, Handler, Message, Registry, RegistryError, Reply, Request, RpcService,
    ServedCall, ServiceRegistry, method_id,
};
pub use serving::Serving;
pub use status::{ArchivedStatus, ArchivedStatusCode, Status, StatusCode};

/// What an RPC client can be made for: a member (the address it publishes under
/// [`RPC_ADDR_KEY`](crate::members::RPC_ADDR_KEY)), a selection candidate, or an address.
pub trait RpcTarget {
    /// The address RPC calls go to.
    fn rpc_addr(&self) -> std::net::SocketAddr;
}

impl RpcTarget for std::net::SocketAddr {
    fn rpc_addr(&self) -> std::net::SocketAddr {
        *self
    }
}

impl RpcTarget for &crate::Member {
    fn rpc_addr(&self) -> std::net::SocketAddr {
        crate::members::rpc_addr(self)
    }
}

impl RpcTarget for &crate::Candidate {
    fn rpc_addr(&self) -> std::net::SocketAddr {
        self.addr()
    }
}

#[cfg(test)]
mod tests;
