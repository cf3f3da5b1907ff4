//! The admin service every node serves over RPC, whatever its driver: its view of the
//! membership, for tools such as `cohort members`.
//!
//! Owns [`AdminService`] and its messages. Runtime-free: it reads the node's latest snapshot
//! from a [`MembersCell`].

use crate::Members;
use crate::handle::MembersCell;
use crate::members::{DATA_CENTER_KEY, DEFAULT_DATA_CENTER, rpc_addr};
use crate::rpc::{Handler, Request, RpcService, ServiceRegistry, Status};

/// Asks a node for its view of the membership ([`AdminService`]).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct MembersRequest;

/// One member as a node sees it, for display.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MemberRow {
    /// The member's identity, `name/generation@address`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its generation.
    pub generation: u64,
    /// Its gossip address.
    pub gossip_addr: String,
    /// The address it serves RPC on.
    pub rpc_addr: String,
    /// Its data center.
    pub data_center: String,
    /// What the node believes of it (`live`, `joining`, `unready`, `failed`, `left`).
    pub status: String,
    /// How many keys it publishes.
    pub keys: u32,
    /// Whether it is the node answering.
    pub local: bool,
}

/// A node's view of the membership ([`AdminService`]'s reply).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MembersReply {
    /// The version of the snapshot.
    pub version: u64,
    /// Every member the node knows, ascending by id.
    pub members: Vec<MemberRow>,
}

impl MembersReply {
    /// The rows of `members`.
    #[must_use]
    pub fn from_members(members: &Members) -> Self {
        let local = members.local().clone();
        Self {
            version: members.version(),
            members: members
                .all()
                .iter()
                .map(|m| MemberRow {
                    id: m.id.to_string(),
                    name: m.id.name().to_owned(),
                    generation: m.id.generation(),
                    gossip_addr: m.id.gossip_addr().to_string(),
                    rpc_addr: rpc_addr(m).to_string(),
                    data_center: m
                        .get(DATA_CENTER_KEY)
                        .unwrap_or(DEFAULT_DATA_CENTER)
                        .to_owned(),
                    status: m.status.as_str().to_owned(),
                    keys: u32::try_from(m.keys.len()).unwrap_or(u32::MAX),
                    local: m.id == local,
                })
                .collect(),
        }
    }
}

/// The service every node with RPC serves (service name `cohort.admin`): `members` answers with
/// the node's membership snapshot.
///
/// Both drivers add it to every node with RPC; a call from either driver's client reads it:
///
/// ```text
/// let reply = node.rpc_client::<AdminService>(other).call(&MembersRequest).await?;
/// for row in reply.get().members.iter() {
///     println!("{} {}", row.id, row.status);
/// }
/// ```
pub struct AdminService {
    members: MembersCell,
}

impl AdminService {
    /// The service, answering from `members` (the node's snapshot cell).
    #[must_use]
    pub fn new(members: MembersCell) -> Self {
        Self { members }
    }
}

impl std::fmt::Debug for AdminService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminService").finish_non_exhaustive()
    }
}

/// The name the admin service is served under.
pub const ADMIN_SERVICE: &str = "cohort.admin";

impl RpcService for AdminService {
    fn service_name() -> &'static str {
        ADMIN_SERVICE
    }

    fn register_handlers(registry: &mut ServiceRegistry<Self>) {
        registry.add_handler::<MembersRequest>();
    }
}

impl Handler<MembersRequest> for AdminService {
    const NAME: &'static str = "members";
    type Reply = MembersReply;

    async fn on_message(&self, _: Request<'_, MembersRequest>) -> Result<MembersReply, Status> {
        Ok(MembersReply::from_members(&self.members.get()))
    }
}
