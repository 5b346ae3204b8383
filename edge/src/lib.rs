//! moq-worker-edge: plugs the moq-worker Cloudflare Worker into
//! moq-relay-ietf as its `Coordinator`.
//!
//! - [`WorkerCoordinator`] implements every method of the relay's
//!   `Coordinator` trait with one CoordinatorService RPC each.
//! - [`cache`] decides which lookup answers may be served from memory;
//!   [`watch`] keeps them exact with one WebSocket per scope.
//! - [`rpc`] is the small Connect client it uses (binary protobuf).
//! - [`proto`] holds the types generated from `../schema` at build time.
//! - [`tls`] makes a self-signed certificate for local relays.
//! - [`peers`] recognises sessions from other relays (the connection tagger).
//! - `upstreams` keeps the relay-to-relay links it reports in heartbeats.
//! - [`Fatal`] is how the coordinator tells its embedder to stop.

pub mod cache;
pub mod coordinator;
mod fatal;
mod lease;
mod liveness;
pub mod metrics;
pub mod peers;
mod reads;
pub mod rpc;
pub mod tls;
mod upstreams;
pub mod watch;

/// Messages of `moqworker.v1`, generated from `schema/` by build.rs.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/moqworker.v1.rs"));
}

pub use coordinator::{new_epoch, Recovery, WorkerCoordinator, WorkerCoordinatorConfig};
pub use fatal::Fatal;
pub use reads::CacheConfig;
pub use rpc::{Code, ConnectClient, RetryPolicy, RpcError};
pub use watch::WatchConfig;
