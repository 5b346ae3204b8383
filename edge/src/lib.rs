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
//! - [`peers`] recognises sessions from other relays (the connection tagger);
//!   `peer_list` holds the live-peer list as the Worker sends it, in parts.
//! - `upstreams` keeps the relay-to-relay links it reports in heartbeats.
//! - [`Fatal`] is how the coordinator tells its embedder to stop.

#[cfg(all(feature = "draft-18", feature = "draft-16"))]
compile_error!("features \"draft-18\" and \"draft-16\" are exclusive: build with --no-default-features --features draft-16 for moq-relay-ietf 0.7");
#[cfg(not(any(feature = "draft-18", feature = "draft-16")))]
compile_error!(
    "enable feature \"draft-18\" (moq-relay-ietf 0.8, the default) or \"draft-16\" (0.7)"
);

// The relay crates of the chosen draft, under the names the rest of the
// crate (and the binary, examples and tests) use.
#[cfg(feature = "draft-16")]
pub extern crate native_10 as moq_native_ietf;
#[cfg(feature = "draft-18")]
pub extern crate native_11 as moq_native_ietf;
#[cfg(feature = "draft-16")]
pub extern crate relay_07 as moq_relay_ietf;
#[cfg(feature = "draft-18")]
pub extern crate relay_08 as moq_relay_ietf;
#[cfg(feature = "draft-16")]
pub extern crate transport_16 as moq_transport;
#[cfg(feature = "draft-18")]
pub extern crate transport_17 as moq_transport;

pub mod cache;
pub mod coordinator;
mod fatal;
mod lease_socket;
mod liveness;
pub mod metrics;
mod peer_list;
pub mod peers;
pub mod policy;
mod reads;
mod registrations;
pub mod rpc;
pub mod tls;
mod upstreams;
pub mod version;
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
