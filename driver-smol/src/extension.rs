//! Extensions: code that plugs into a running node, as in datacake.

use std::future::Future;

use crate::Node;

/// Something that starts on top of a running [`Node`] (a storage engine, a replication
/// service, ...), added with [`Node::add_extension`].
///
/// `init_extension` gets the node (to read members, select replicas, publish metadata, or
/// register a hook with [`Node::on_shutdown`], which runs before the node leaves) and returns
/// whatever the extension hands back to the application.
///
/// Write it as a plain `async fn` in the `impl`, as below: the trait uses Rust's native async
/// functions in traits. Datacake's extensions were written with `#[async_trait]`; drop that
/// attribute when porting one (with it the method's signature no longer matches the trait's,
/// and the compiler reports E0195, "lifetime parameters or bounds do not match").
///
/// ```
/// use cohort_smol::{ClusterExtension, Node};
///
/// /// Publishes a role and reports how many members it saw at start.
/// struct Role(&'static str);
///
/// impl ClusterExtension for Role {
///     type Output = usize;
///     type Error = cohort_smol::KeyError;
///
///     async fn init_extension(self, node: &Node) -> Result<usize, Self::Error> {
///         node.set_metadata("role", self.0)?;
///         node.on_shutdown(|| async { /* flush, stop background work */ });
///         Ok(node.members().all().len())
///     }
/// }
/// ```
pub trait ClusterExtension: Sized + Send {
    /// What the extension returns once started.
    type Output: Send;
    /// Why it could not start.
    type Error: std::error::Error + Send + 'static;

    /// Starts the extension on `node`.
    fn init_extension(
        self,
        node: &Node,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;
}
