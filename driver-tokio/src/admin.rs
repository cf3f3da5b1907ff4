//! The admin service every node serves over RPC (core's, re-exported): its view of the
//! membership, for tools such as `cohort members`.
//!
//! ```no_run
//! # async fn run(node: cohort_tokio::Node, other: std::net::SocketAddr) -> Result<(), cohort_tokio::Status> {
//! use cohort_tokio::admin::{AdminService, MembersRequest};
//!
//! let reply = node.rpc_client::<AdminService>(other).call(&MembersRequest).await?;
//! for row in reply.get().members.iter() {
//!     println!("{} {}", row.id, row.status);
//! }
//! # Ok(())
//! # }
//! ```

pub use cohort_core::admin::{
    ADMIN_SERVICE, AdminService, ArchivedMemberRow, ArchivedMembersReply, ArchivedMembersRequest,
    MemberRow, MembersReply, MembersRequest,
};
