//! moq-worker-edge: plugs the moq-worker Cloudflare Worker into
//! moq-relay-ietf as its `Coordinator`.
//!
//! - [`WorkerCoordinator`] implements every method of the relay's
//!   `Coordinator` trait with one CoordinatorService RPC each.
//! - [`rpc`] is the small Connect client it uses (binary protobuf).
//! - [`proto`] holds the types generated from `../schema` at build time.
//! - [`tls`] makes a self-signed certificate for local relays.

pub mod coordinator;
mod lease;
pub mod rpc;
pub mod tls;

/// Messages of `moqworker.v1`, generated from `schema/` by build.rs.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/moqworker.v1.rs"));
}

pub use coordinator::{new_epoch, WorkerCoordinator, WorkerCoordinatorConfig};
pub use rpc::{Code, ConnectClient, RetryPolicy, RpcError};
