//! The two drivers behind one face: [`AgentNode`] is what `cohort agent` and `cohort members`
//! need of a running node, implemented for `cohort_tokio::Node` and `cohort_smol::Node` by one
//! macro (their methods have the same names and, being core's, the same types), and
//! [`builder!`] applies the agent's settings to either driver's `NodeBuilder`. Everything
//! printed is then the same code whichever driver runs the node.

use std::net::SocketAddr;

use cohort_tokio::admin::MembersReply;
use cohort_tokio::{Members, MembershipEvents, NodeId, Status};

/// A running node of either driver, as the command uses it.
pub(crate) trait AgentNode {
    /// Its identity.
    fn id(&self) -> &NodeId;
    /// The address its gossip socket is bound to.
    fn listen_addr(&self) -> SocketAddr;
    /// The RPC address it publishes, if it serves RPC (a smol node without TLS does not).
    fn rpc(&self) -> Option<SocketAddr>;
    /// The membership now.
    fn members(&self) -> Members;
    /// Its membership events from now on (core's stream, the same type for both drivers).
    fn membership_events(&self) -> MembershipEvents;
    /// Asks the node at `target` for its members (the admin service).
    fn admin_members(
        &self,
        target: SocketAddr,
    ) -> impl Future<Output = Result<MembersReply, Status>>;
    /// Leaves the cluster gracefully and stops.
    fn shutdown(&self) -> impl Future<Output = ()>;
}

/// Implements [`AgentNode`] for the `Node` of the driver crate `$driver`.
macro_rules! agent_node {
    ($driver:ident) => {
        impl AgentNode for $driver::Node {
            fn id(&self) -> &NodeId {
                $driver::Node::id(self)
            }

            fn listen_addr(&self) -> SocketAddr {
                $driver::Node::listen_addr(self)
            }

            fn rpc(&self) -> Option<SocketAddr> {
                self.rpc_listen_addr().map(|_| self.rpc_addr())
            }

            fn members(&self) -> Members {
                $driver::Node::members(self)
            }

            fn membership_events(&self) -> MembershipEvents {
                $driver::Node::membership_events(self)
            }

            async fn admin_members(&self, target: SocketAddr) -> Result<MembersReply, Status> {
                use $driver::admin::{AdminService, MembersRequest};
                self.rpc_client::<AdminService>(target)
                    .call(&MembersRequest)
                    .await?
                    .deserialize()
            }

            async fn shutdown(&self) {
                $driver::Node::shutdown(self).await;
            }
        }
    };
}

agent_node!(cohort_tokio);
agent_node!(cohort_smol);

/// `$driver::NodeBuilder` for `cohort agent`'s settings (`$args: AgentArgs`), everything but
/// TLS: the same calls on either driver's builder.
macro_rules! builder {
    ($driver:ident, $args:expr) => {{
        let args: &$crate::args::AgentArgs = $args;
        let public = args.public.unwrap_or(args.listen);
        let seeds: Vec<String> = args.seeds().map(str::to_owned).collect();
        let mut builder = $driver::NodeBuilder::new(
            args.name.clone(),
            $driver::ConnectionConfig::new(args.listen, public, seeds),
        )
        .cluster_id(args.cluster.clone())
        .data_center(args.dc.clone())
        .gossip_interval(std::time::Duration::from_millis(args.interval_ms))
        .protocol(args.mode.into())
        .probe_interval(std::time::Duration::from_millis(args.probe_interval_ms))
        .chitchat_compatible(args.chitchat_compatible);
        if let Some(protocol) = args.protocol {
            builder = builder.protocol_version(protocol.into());
        }
        if let Some(generation) = args.generation {
            builder = builder.generation(generation);
        }
        for (key, value) in &args.meta {
            builder = builder.metadata(key.clone(), value.clone());
        }
        if let Some(offset) = args.dangerous_clock_offset_ms {
            builder = builder.wall_clock($driver::WallClock::system_offset_millis(offset));
        }
        if let Some(key) = $crate::drivers::cluster_key(args)? {
            builder = builder.keyring($driver::Keyring::new(key));
        }
        builder
    }};
}

pub(crate) use builder;

/// The environment variable a cluster key may come from (64 hexadecimal digits).
pub(crate) const CLUSTER_KEY_ENV: &str = "COHORT_CLUSTER_KEY";

/// The cluster key of `--cluster-key-file`, or of [`CLUSTER_KEY_ENV`], or none.
pub(crate) fn cluster_key(
    args: &crate::args::AgentArgs,
) -> Result<Option<cohort_tokio::ClusterKey>, String> {
    let (text, origin) = match &args.cluster_key_file {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the cluster key file {}: {e}", path.display()))?,
            path.display().to_string(),
        ),
        None => match std::env::var(CLUSTER_KEY_ENV) {
            Ok(text) => (text, CLUSTER_KEY_ENV.to_owned()),
            Err(_) => return Ok(None),
        },
    };
    cohort_tokio::ClusterKey::from_hex(&text)
        .map(Some)
        .map_err(|e| format!("the cluster key in {origin}: {e}"))
}
