//! `WorkerCoordinator`: the moq-relay-ietf `Coordinator` trait, answered by
//! the moq-worker CoordinatorService over Connect RPC.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use moq_relay_ietf::{
    ConnectionTagger, Coordinator, CoordinatorContext, CoordinatorError, CoordinatorResult,
    NamespaceOrigin, NamespaceRegistration, NamespaceSubscription, RelayInfo, ScopeConfig,
    ScopeInfo, ScopePermissions, SessionInterface, TrackEntry, TrackRegistration,
    TrackSubscription,
};
use moq_transport::coding::{TrackNamespace, TrackNamespacePrefix, TupleField};
use prost::Message;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use url::Url;

/// What `lookup`/`lookup_track` may hand the relay to dial with (always
/// `None` here: the relay dials from its own endpoint, so peers recognise its
/// source address).
#[cfg(feature = "draft-16")]
type UpstreamClient = crate::moq_native_ietf::quic::Client;
#[cfg(feature = "draft-18")]
type UpstreamClient = crate::moq_native_ietf::Client;

use crate::cache::{Invalidation, Key, Stats};
use crate::fatal::Fatal;
use crate::liveness;
use crate::peers::{PathNote, PeerTagger, Peers};
use crate::proto;
use crate::reads::{AnswerKind, CacheConfig, Fetched, Reads, Route};
use crate::registrations::{Holders, Kind, RegistrationKey, Release};
use crate::rpc::{Code, ConnectClient, RetryPolicy, RpcError};
use crate::upstreams::Upstreams;
use crate::watch::Endpoint;

pub const COORDINATOR_SERVICE: &str = "moqworker.v1.CoordinatorService";
/// Header carrying the relay's boot epoch on every call.
pub const EPOCH_HEADER: &str = "Moq-Relay-Epoch";

/// How to reach the Worker and who this relay is.
#[derive(Debug, Clone)]
pub struct WorkerCoordinatorConfig {
    /// Base URL of the Worker, e.g. `http://127.0.0.1:8787`.
    pub coordinator_url: Url,
    /// Relay token from AdminService.CreateRelayToken. It is bound to one
    /// relay URL, which is this relay's identity as far as the Worker knows.
    pub token: String,
    /// Socket addresses this relay serves from (`Heartbeat.addrs`), so that
    /// peers that know it only by socket address can be recognised.
    pub addrs: Vec<SocketAddr>,
    /// Boot epoch; a fresh random one when `None`.
    pub epoch: Option<String>,
    pub retry: RetryPolicy,
    /// Socket addresses always treated as internal relay peers, on top of
    /// the live peers the Worker reports (`--internal-peer`).
    pub internal_peers: Vec<SocketAddr>,
    /// The lookup cache and its watch channels (on by default).
    pub cache: CacheConfig,
    /// The lease held on a WebSocket ([`crate::lease_socket`]), sending a
    /// HeartbeatRequest (and so refreshing the peer list) at least this
    /// often; `None`: Heartbeat calls only.
    pub lease_socket_beat: Option<Duration>,
}

impl WorkerCoordinatorConfig {
    pub fn new(coordinator_url: Url, token: impl Into<String>) -> Self {
        Self {
            coordinator_url,
            token: token.into(),
            addrs: Vec::new(),
            epoch: None,
            retry: RetryPolicy::default(),
            internal_peers: Vec::new(),
            cache: CacheConfig::default(),
            lease_socket_beat: Some(crate::lease_socket::SOCKET_BEAT),
        }
    }
}

/// A fresh boot epoch: 64 random bits, hex.
pub fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Coordinator backed by the moq-worker Worker.
///
/// Create it with [`WorkerCoordinator::connect`] inside a Tokio runtime; it
/// heartbeats in the background until [`Coordinator::shutdown`] or drop,
/// re-registers every live handle when a heartbeat reply says the Worker
/// lost this relay's state, and keeps the set of live peers that
/// [`WorkerCoordinator::connection_tagger`] tags as internal. When the
/// Worker refuses the relay for good (token rejected, epoch retired),
/// [`WorkerCoordinator::fatal`] resolves and the heartbeat stops: the
/// embedder should exit.
pub struct WorkerCoordinator {
    inner: Arc<Inner>,
    tasks: StdMutex<Vec<JoinHandle<()>>>,
    lease_ttl: Duration,
}

pub(crate) struct Inner {
    pub(crate) rpc: ConnectClient,
    pub(crate) epoch: String,
    addrs: Vec<String>,
    /// The lease is held on the socket now ([`crate::lease_socket`]): the
    /// HTTP heartbeat loop stands aside.
    pub(crate) lease_socket_up: AtomicBool,
    /// Wakes the HTTP heartbeat loop at once (the lease socket was lost).
    pub(crate) beat_now: Notify,
    /// Local holders of each remote registration/subscription (see
    /// [`crate::registrations`]): only the last local holder may withdraw a key.
    pub(crate) registrations: StdMutex<HashMap<RegistrationKey, Slot>>,
    runtime: tokio::runtime::Handle,
    pub(crate) shut_down: AtomicBool,
    pub(crate) peers: Arc<Peers>,
    /// Set once, by the first fatal answer; never cleared.
    fatal: watch::Sender<Option<Fatal>>,
    /// Wakes the recovery task (a heartbeat reply said `state_lost`).
    pub(crate) recover: Notify,
    pub(crate) recoveries: StdMutex<Vec<Recovery>>,
    /// Upstream links handed to the relay, reported with each heartbeat.
    pub(crate) upstreams: Upstreams,
    /// Lookup answers kept exact by the watch channels.
    pub(crate) reads: Reads,
    /// Scopes the relay may hold "no policy" for (policy.rs).
    pub(crate) opening: crate::policy::Opening,
    /// When a heartbeat asking for fresh peers last ended (refresh_peers);
    /// held across that heartbeat, so concurrent sessions share it.
    fresh_peers_at: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// The peer list as last received and its version, sent back with each
    /// heartbeat so that only what changed is sent again.
    pub(crate) held_peers: StdMutex<crate::peer_list::Held>,
    /// ListPeers pages read (for tests; `moq_edge_peer_pages_total`).
    pub(crate) peer_pages: std::sync::atomic::AtomicU64,
}

/// One re-registration after the Worker lost this relay's state.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// Live handles re-registered.
    pub handles: usize,
    /// Handles the Worker refused (e.g. another relay took the namespace
    /// meanwhile); each is logged.
    pub refused: usize,
    /// From the reply that said `state_lost` to the last re-registration.
    pub took: Duration,
}

/// A key's holders, locked across the Worker call that changes them, so
/// calls for one key are serialized while different keys proceed in parallel.
pub(crate) type Slot = Arc<tokio::sync::Mutex<Holders>>;

/// RAII handle: on drop, releases its reference in a spawned task (never
/// blocks the dropping thread, which may be a relay task on the hot path).
struct RegistrationHandle {
    inner: Arc<Inner>,
    key: RegistrationKey,
    slot: Slot,
    id: u64,
}

impl Drop for RegistrationHandle {
    fn drop(&mut self) {
        let inner = self.inner.clone();
        let key = self.key.clone();
        // Move the slot out so the release task's ownership count is exact.
        let slot = std::mem::take(&mut self.slot);
        let id = self.id;
        // A handle can be dropped after its runtime is gone (process exit):
        // then the Worker's lease expiry cleans up instead.
        // Detached: the JoinHandle is not needed.
        drop(inner.runtime.clone().spawn(async move {
            if let Err(err) = inner.release(&key, slot, Some(id)).await {
                tracing::warn!(?key, error = %err, "coordinator cleanup failed; the Worker drops it when our lease lapses");
            }
        }));
    }
}

impl Inner {
    fn slot(&self, key: &RegistrationKey) -> Slot {
        self.registrations
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// Every CoordinatorService call is idempotent by contract, so each is
    /// retried (within the policy's overall deadline).
    pub(crate) async fn call<Resp: prost::Message + Default>(
        &self,
        method: &'static str,
        body: Bytes,
    ) -> Result<Resp, RpcError> {
        self.call_within(method, body, self.rpc.policy().deadline)
            .await
    }

    /// A call with its own overall deadline. Any answer that retires this
    /// process (see [`Fatal::of`]) is recorded before it is returned.
    pub(crate) async fn call_within<Resp: prost::Message + Default>(
        &self,
        method: &'static str,
        body: Bytes,
        deadline: Duration,
    ) -> Result<Resp, RpcError> {
        let started = std::time::Instant::now();
        let result = self.rpc.call_encoded(method, body, true, deadline).await;
        let code = match &result {
            Ok(_) => "ok",
            Err(err) => err.code().map_or("unavailable", |c| c.as_str()),
        };
        metrics::counter!("moq_edge_coordinator_calls_total", "method" => method, "code" => code)
            .increment(1);
        metrics::histogram!("moq_edge_coordinator_call_seconds", "method" => method)
            .record(started.elapsed().as_secs_f64());
        if let Err(err) = &result {
            if let Some(fatal) = Fatal::of(err, method == "Heartbeat") {
                self.set_fatal(fatal);
            }
        }
        result
    }

    fn set_fatal(&self, fatal: Fatal) {
        let first = self.fatal.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(fatal.clone());
            true
        });
        if first {
            tracing::error!(exit_code = fatal.exit_code(), "{fatal}");
            self.recover.notify_one(); // lets the recovery task see it and end
        }
    }

    pub(crate) fn is_fatal(&self) -> bool {
        self.fatal.borrow().is_some()
    }

    async fn call_msg<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        method: &'static str,
        req: &Req,
    ) -> Result<Resp, RpcError> {
        self.call(method, req.encode_to_vec().into()).await
    }

    /// The Worker call behind a cached read: `method` with `req`, its result
    /// made an answer by `answer`.
    fn fetch<Resp: prost::Message + Default + 'static, T>(
        self: &Arc<Self>,
        method: &'static str,
        req: impl prost::Message + 'static,
        answer: impl FnOnce(Result<Resp, RpcError>) -> Fetched<T> + Send + 'static,
    ) -> impl FnOnce() -> BoxFuture<'static, Fetched<T>> + Send + 'static {
        let inner = self.clone();
        move || {
            let body = req.encode_to_vec().into();
            async move { answer(inner.call(method, body).await) }.boxed()
        }
    }

    /// A cached read ([`Reads::read`]) of `key` in `scope`: from the cache,
    /// or by [`Inner::fetch`].
    async fn read<Resp: prost::Message + Default + 'static, T: AnswerKind>(
        self: &Arc<Self>,
        method: &'static str,
        scope: Option<&str>,
        key: Key,
        req: impl prost::Message + 'static,
        answer: impl FnOnce(Result<Resp, RpcError>) -> Fetched<T> + Send + 'static,
    ) -> Fetched<T> {
        let fetch = self.fetch(method, req, answer);
        self.reads.read(method, scope_of(scope), key, fetch).await
    }

    /// Takes a reference on `key`, asserting it with the Worker. Always asks
    /// the Worker, even when the key is already held: the call also returns
    /// data (upstream relays) and re-asserts a row the Worker may have lost.
    async fn hold<Resp: prost::Message + Default>(
        self: &Arc<Self>,
        key: RegistrationKey,
        context: &CoordinatorContext,
    ) -> CoordinatorResult<(Resp, RegistrationHandle)> {
        let slot = self.slot(&key);
        let mut holders = slot.lock().await;
        let request = key.register_request(context_of(context));
        match self.call(key.kind.register_method(), request.clone()).await {
            Ok(resp) => {
                self.wrote(&key);
                holders.request = request;
                let id = holders.add();
                drop(holders);
                Ok((
                    resp,
                    RegistrationHandle {
                        inner: self.clone(),
                        key,
                        slot,
                        id,
                    },
                ))
            }
            Err(err) => {
                self.forget_if_idle(&key, &slot, &holders);
                Err(map_err(err))
            }
        }
    }

    /// Releases one reference on `key`: handle `handle`'s when it is
    /// dropped, or one holder's on an explicit unregister (`None`). The
    /// Worker is told only when no local holder is left.
    async fn release(
        &self,
        key: &RegistrationKey,
        slot: Slot,
        handle: Option<u64>,
    ) -> Result<(), RpcError> {
        let mut holders = slot.lock().await;
        let release = match handle {
            Some(id) => holders.drop_handle(id),
            None => holders.release_explicitly(),
        };
        let result = if release == Release::Withdraw && !self.shut_down.load(Ordering::Acquire) {
            let result = self
                .call::<()>(key.kind.unregister_method(), key.unregister_request())
                .await;
            // Even a failed call may have taken effect.
            self.wrote(key);
            result
        } else {
            Ok(())
        };
        self.forget_if_idle(key, &slot, &holders);
        result
    }

    /// Read-your-writes: a lookup after this relay's own register or
    /// unregister returned must not be answered from before it.
    fn wrote(&self, key: &RegistrationKey) {
        let inv = match key.kind {
            Kind::Namespace => Invalidation {
                namespaces: vec![key.fields.clone()],
                ..Default::default()
            },
            Kind::Track => Invalidation {
                tracks: vec![(key.fields.clone(), key.track.clone())],
                ..Default::default()
            },
            // Subscriptions change no answer the cache holds.
            Kind::NamespaceSub | Kind::TrackSub => return,
        };
        self.reads.invalidate(&key.scope, inv);
    }

    /// Drop the map entry for `key` when no handle refers to it and no other
    /// task has the slot (then the map and the caller are its only owners).
    /// Called with the slot's lock held, which `holders` comes from.
    fn forget_if_idle(&self, key: &RegistrationKey, slot: &Slot, holders: &Holders) {
        let mut registrations = self.registrations.lock().unwrap();
        if holders.idle() && Arc::strong_count(slot) == 2 {
            if let Some(current) = registrations.get(key) {
                if Arc::ptr_eq(current, slot) {
                    registrations.remove(key);
                }
            }
        }
    }

    /// An explicit `unregister_*`/`unsubscribe_*` of the trait.
    async fn release_explicitly(&self, key: RegistrationKey) -> CoordinatorResult<()> {
        let slot = self.slot(&key);
        self.release(&key, slot, None).await.map_err(map_err)
    }

    pub(crate) async fn heartbeat(&self, deadline: Duration) -> Result<Beat, RpcError> {
        self.beat(deadline, false).await
    }

    /// One heartbeat; `fresh_peers`: ask for the network's peer list as it is now.
    async fn beat(&self, deadline: Duration, fresh_peers: bool) -> Result<Beat, RpcError> {
        let req = self.beat_request(fresh_peers);
        let resp = self
            .call_within("Heartbeat", req.encode_to_vec().into(), deadline)
            .await?;
        Ok((req.peers_version, resp))
    }

    /// This relay's HeartbeatRequest now, for a call or the lease socket.
    pub(crate) fn beat_request(&self, fresh_peers: bool) -> proto::HeartbeatRequest {
        proto::HeartbeatRequest {
            epoch: self.epoch.clone(),
            addrs: self.addrs.clone(),
            activity: Some(self.upstreams.report()),
            fresh_peers,
            peers_version: self.held_peers.lock().unwrap().list.version,
            peers_in_parts: true,
        }
    }
}

impl Inner {
    /// A heartbeat asking for the peer list as the network has it now, at
    /// most once per FRESH_PEERS_EVERY after the last one ended: sessions
    /// arriving while one is in flight wait for it and use its list, and
    /// for the pages it began, if any. A failure is logged: the session is
    /// then tagged from the list held.
    async fn refresh_peers(self: &Arc<Self>) {
        let mut last = self.fresh_peers_at.lock().await;
        if last.is_some_and(|t| t.elapsed() < FRESH_PEERS_EVERY) {
            return;
        }
        let started = tokio::time::Instant::now();
        match self.beat(FRESH_PEERS_DEADLINE, true).await {
            Ok((base, resp)) => {
                if let Some(paging) = self.apply_beat(base, &resp) {
                    // Not aborted on timeout: the list is installed when it is in.
                    let until = started + FRESH_PEERS_DEADLINE;
                    let _ = tokio::time::timeout_at(until, paging).await;
                }
            }
            Err(err) => tracing::warn!(error = %err, "fresh peer list not fetched"),
        }
        *last = Some(std::time::Instant::now());
    }
}

/// A Heartbeat answer, with the peers_version its request said the relay
/// held (what a `peers_delta` applies to).
pub(crate) type Beat = (u64, proto::HeartbeatResponse);

/// How often a relay-link session may make the edge ask for fresh peers.
const FRESH_PEERS_EVERY: Duration = Duration::from_secs(1);
/// How long a session waits for them at most.
const FRESH_PEERS_DEADLINE: Duration = Duration::from_secs(2);

impl WorkerCoordinator {
    /// The scope's config as the Worker answers it (from the cache when it can).
    async fn config_answer(&self, scope: Option<&str>) -> CoordinatorResult<proto::ScopeConfig> {
        let req = proto::GetScopeConfigRequest {
            scope: scope_of(scope),
        };
        let answer = |result: Result<proto::GetScopeConfigResponse, _>| {
            Ok(result?.config.unwrap_or_default())
        };
        self.inner
            .read("GetScopeConfig", scope, Key::Config, req, answer)
            .await
            .map_err(|err| CoordinatorError::Other(anyhow::Error::new(err)))
    }

    /// Where Lookup (`track` `None`) or LookupTrack leads, read through the
    /// cache: `req` asks the Worker, `origin_in` finds the origin in its answer.
    async fn route<Resp: prost::Message + Default + 'static>(
        &self,
        method: &'static str,
        scope: Option<&str>,
        namespace: &TrackNamespace,
        track: Option<&str>,
        req: impl prost::Message + 'static,
        origin_in: fn(Resp) -> Option<proto::NamespaceOrigin>,
    ) -> CoordinatorResult<NamespaceOrigin> {
        let key = Key::Route {
            ns: fields_of(namespace),
            track: track.map(str::to_string),
        };
        let answer = move |result: Result<Resp, _>| route_answer(result.map(origin_in));
        match self.inner.read(method, scope, key, req, answer).await {
            Ok(Route::Origin(origin)) => origin_from(Some(origin)),
            Ok(Route::NotFound) => Err(CoordinatorError::NamespaceNotFound),
            Err(err) => Err(match err.code() {
                Some(Code::AlreadyExists) => CoordinatorError::NamespaceAlreadyRegistered,
                _ => CoordinatorError::Other(anyhow::Error::new(err)),
            }),
        }
    }

    /// Refuses a client session in a scope whose token policy is on (the
    /// caller checked) while the relay may still hold "no policy" for it
    /// (policy.rs): such a session would be admitted without a token.
    fn refuse_while_policy_opens(&self, scope: &str) -> CoordinatorResult<()> {
        let Some(until) = self.inner.opening.cached_none_until(Some(scope)) else {
            return Ok(());
        };
        let left = until.saturating_duration_since(std::time::Instant::now());
        tracing::warn!(
            scope,
            refused_for_s = left.as_secs(),
            "edge: session refused: the scope's token policy was turned on while this relay \
             held \"no policy\" for it; new sessions are refused until that expires"
        );
        metrics::counter!("moq_edge_sessions_refused_total").increment(1);
        Err(other(format!(
            "scope {scope:?} turned token authorization on; this relay refuses new sessions \
             in it for {}s more, until its cached \"no policy\" expires",
            left.as_secs()
        )))
    }

    /// Build the coordinator, send the first Heartbeat (so a wrong URL or
    /// token fails here, loudly, rather than on the first publisher), and
    /// start the background heartbeat and recovery tasks. A [`Fatal`] answer
    /// to the first heartbeat is in the error's chain (`downcast_ref`).
    pub async fn connect(config: WorkerCoordinatorConfig) -> anyhow::Result<Self> {
        let epoch = config.epoch.clone().unwrap_or_else(new_epoch);
        let inner_epoch = epoch.clone();
        let rpc = ConnectClient::new(
            config.coordinator_url.clone(),
            COORDINATOR_SERVICE,
            vec![
                ("Authorization", format!("Bearer {}", config.token)),
                (EPOCH_HEADER, epoch.clone()),
                (crate::version::HEADER, crate::version::header_value()),
            ],
            config.retry.clone(),
        )?;
        let inner = Arc::new(Inner {
            rpc,
            epoch,
            addrs: config.addrs.iter().map(|a| a.to_string()).collect(),
            registrations: StdMutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
            shut_down: AtomicBool::new(false),
            lease_socket_up: AtomicBool::new(false),
            beat_now: Notify::new(),
            peers: Arc::new(Peers::new(config.internal_peers.iter().copied())),
            fatal: watch::Sender::new(None),
            recover: Notify::new(),
            recoveries: StdMutex::new(Vec::new()),
            upstreams: Upstreams::default(),
            opening: crate::policy::Opening::default(),
            fresh_peers_at: tokio::sync::Mutex::new(None),
            held_peers: StdMutex::default(),
            peer_pages: Default::default(),
            reads: Reads::new(
                config.cache.clone(),
                Endpoint {
                    base: config
                        .cache
                        .watch_url
                        .clone()
                        .unwrap_or_else(|| config.coordinator_url.clone()),
                    token: config.token.clone(),
                    epoch: inner_epoch,
                },
            ),
        });

        let deadline = inner.rpc.policy().deadline;
        let (base, first) = match inner.heartbeat(deadline).await {
            Ok(first) => first,
            Err(err) => {
                let context = format!(
                    "first heartbeat to coordinator {} failed",
                    config.coordinator_url
                );
                return Err(match Fatal::of(&err, true) {
                    Some(fatal) => anyhow::Error::new(fatal).context(context),
                    None => anyhow::Error::new(err).context(context),
                });
            }
        };
        tracing::info!(
            coordinator = %config.coordinator_url,
            epoch = %inner.epoch,
            lease_ttl_ms = first.lease_ttl_ms,
            interval_ms = first.interval_ms,
            peers = first.peers.len(),
            "registered with coordinator"
        );
        let lease_ttl = Duration::from_millis(first.lease_ttl_ms as u64);
        let mut tasks = vec![
            tokio::spawn(liveness::recover_on_demand(inner.clone())),
            tokio::spawn(liveness::heartbeat(inner.clone(), base, first)),
        ];
        if let Some(beat) = config.lease_socket_beat {
            tasks.push(tokio::spawn(crate::lease_socket::hold(
                inner.clone(),
                config.coordinator_url.clone(),
                config.token.clone(),
                beat,
            )));
        }
        Ok(Self {
            inner,
            tasks: StdMutex::new(tasks),
            lease_ttl,
        })
    }

    /// Resolves when the Worker has refused this relay for good (see
    /// [`Fatal`]); the error has been logged. The relay should stop: exit
    /// with [`Fatal::exit_code`]. Do not call `shutdown` then: after an
    /// epoch retirement it would act for the process that replaced this one.
    pub async fn fatal(&self) -> Fatal {
        let mut rx = self.inner.fatal.subscribe();
        let fatal = rx
            .wait_for(Option::is_some)
            .await
            .expect("the sender lives in self")
            .clone();
        fatal.expect("waited for Some")
    }

    /// The tagger to hand moq-relay-ietf (`RelayConfig.connection_tagger`):
    /// live peers, verified relay-link paths and `internal_peers` are
    /// internal sessions.
    pub fn connection_tagger(&self) -> Arc<dyn ConnectionTagger> {
        Arc::new(PeerTagger(self.inner.peers.clone()))
    }

    /// The peers this relay currently recognises.
    pub fn peers(&self) -> &Peers {
        &self.inner.peers
    }

    /// ListPeers pages read so far: peer lists too long for one answer.
    pub fn peer_pages_read(&self) -> u64 {
        self.inner.peer_pages.load(Ordering::Relaxed)
    }

    /// Every re-registration so far, oldest first.
    pub fn recoveries(&self) -> Vec<Recovery> {
        self.inner.recoveries.lock().unwrap().clone()
    }

    /// This relay's boot epoch, as sent to the Worker.
    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    /// Lease length the Worker granted at the first heartbeat.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// Number of distinct keys with live local handles (for tests/metrics).
    pub fn active_registrations(&self) -> usize {
        self.inner.registrations.lock().unwrap().len()
    }

    /// Counts of the lookup cache (for tests and metrics).
    pub fn cache_stats(&self) -> Stats {
        self.inner.reads.stats()
    }

    /// Whether `scope`'s watch channel is up, so its answers may be cached.
    pub fn cache_is_up(&self, scope: Option<&str>) -> bool {
        self.inner.reads.is_up(&scope_of(scope))
    }

    fn stop_heartbeat(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        self.inner.reads.stop();
    }
}

impl Drop for WorkerCoordinator {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

// ---------------------------------------------------------------------------
// Conversions between moq-transport / moq-relay-ietf types and the schema.
// ---------------------------------------------------------------------------

fn fields_of(ns: &TrackNamespace) -> Vec<Vec<u8>> {
    ns.fields.iter().map(|f| f.value.clone()).collect()
}

fn prefix_fields_of(prefix: &TrackNamespacePrefix) -> Vec<Vec<u8>> {
    prefix.fields.iter().map(|f| f.value.clone()).collect()
}

fn namespace_from(ns: Option<proto::Namespace>) -> TrackNamespace {
    let mut out = TrackNamespace::new();
    for value in ns.map(|n| n.fields).unwrap_or_default() {
        out.add(TupleField { value });
    }
    out
}

fn context_of(ctx: &CoordinatorContext) -> proto::Context {
    let interface = match ctx.interface {
        SessionInterface::Public => proto::Interface::Public,
        SessionInterface::Internal => proto::Interface::Internal,
    };
    proto::Context {
        interface: interface as i32,
        source_url: ctx.source.as_ref().map(|s| s.url.to_string()),
        source_addr: ctx
            .source
            .as_ref()
            .and_then(|s| s.addr)
            .map(|a| a.to_string()),
    }
}

fn relay_from(relay: proto::RelayInfo) -> CoordinatorResult<RelayInfo> {
    let url = Url::parse(&relay.url).map_err(|e| {
        other(format!(
            "coordinator returned a bad relay URL {:?}: {e}",
            relay.url
        ))
    })?;
    match relay.addr.filter(|a| !a.is_empty()) {
        None => Ok(RelayInfo::new(url)),
        Some(addr) => {
            let addr: SocketAddr = addr.parse().map_err(|e| {
                other(format!(
                    "coordinator returned a bad relay address {addr:?}: {e}"
                ))
            })?;
            Ok(RelayInfo::with_addr(url, addr))
        }
    }
}

fn origin_from(origin: Option<proto::NamespaceOrigin>) -> CoordinatorResult<NamespaceOrigin> {
    let origin = origin.ok_or_else(|| other("coordinator returned no origin"))?;
    let relay = relay_from(
        origin
            .relay
            .ok_or_else(|| other("coordinator returned an origin without a relay"))?,
    )?;
    Ok(NamespaceOrigin::new(
        namespace_from(origin.namespace),
        relay.url,
        relay.addr,
    ))
}

fn other(message: impl Into<String>) -> CoordinatorError {
    CoordinatorError::Other(anyhow::anyhow!(message.into()))
}

/// ALREADY_EXISTS and NOT_FOUND are the two outcomes the relay acts on;
/// everything else is an internal error it logs.
fn map_err(err: RpcError) -> CoordinatorError {
    match err.code() {
        Some(Code::AlreadyExists) => CoordinatorError::NamespaceAlreadyRegistered,
        Some(Code::NotFound) => CoordinatorError::NamespaceNotFound,
        _ => CoordinatorError::Other(err.into()),
    }
}

/// A route lookup's result as a cacheable answer: NOT_FOUND is one.
fn route_answer(result: Result<Option<proto::NamespaceOrigin>, RpcError>) -> Fetched<Route> {
    match result {
        Ok(Some(origin)) => Ok(Route::Origin(origin)),
        Ok(None) => Err(Arc::new(RpcError::Protocol {
            method: "Lookup",
            message: "coordinator returned no origin".into(),
        })),
        Err(err) if err.code() == Some(Code::NotFound) => Ok(Route::NotFound),
        Err(err) => Err(Arc::new(err)),
    }
}

fn scope_of(scope: Option<&str>) -> Option<String> {
    scope.map(str::to_string)
}

#[async_trait]
impl Coordinator for WorkerCoordinator {
    async fn resolve_scope(
        &self,
        connection_path: Option<&str>,
    ) -> CoordinatorResult<Option<ScopeInfo>> {
        let req = proto::ResolveScopeRequest {
            connection_path: connection_path.map(str::to_string),
        };
        let fetch = self
            .inner
            .fetch("ResolveScope", req, |result| result.map_err(Arc::new));
        // Keyed as the Worker normalises it (path invalidations name that
        // form): trailing slashes go, so "", "/" and no path are alike.
        let key = connection_path.unwrap_or_default().trim_end_matches('/');
        // Any error rejects the session, so keep the reason readable in the
        // relay log (NOT_FOUND here is an unknown path, not a namespace).
        let resp = match self.inner.reads.resolve(key, fetch).await {
            Ok(resp) => resp,
            Err(err) => {
                // Logged here too: moq-relay-ietf 0.8 redacts paths in its own line.
                tracing::warn!(
                    path = ?connection_path.unwrap_or(""),
                    error = %err,
                    "edge: session refused at scope resolution"
                );
                metrics::counter!("moq_edge_sessions_refused_total").increment(1);
                return Err(other(format!(
                    "connection path {connection_path:?} rejected: {err}"
                )));
            }
        };
        let Some(scope) = resp.scope else {
            if let Some(path) = connection_path {
                let note = PathNote {
                    relay_link: resp.relay_link,
                    enforced: false,
                };
                self.inner.peers.note_path(path, note);
            }
            return Ok(None);
        };
        // Read from the cache (the relay asks for it next anyway).
        let enforced = self
            .config_answer(Some(&scope.scope_id))
            .await?
            .auth
            .is_some();
        if let Some(path) = connection_path {
            // The tagger runs right after this for the same session.
            if enforced && resp.relay_link {
                // Only a live relay's address makes this session internal:
                // know a relay that just started before the tagger looks.
                self.inner.refresh_peers().await;
            }
            let note = PathNote {
                relay_link: resp.relay_link,
                enforced,
            };
            self.inner.peers.note_path(path, note);
        }
        let permissions = match proto::Permissions::try_from(scope.permissions) {
            Ok(proto::Permissions::ReadWrite) => ScopePermissions::ReadWrite,
            Ok(proto::Permissions::ReadOnly) => ScopePermissions::ReadOnly,
            // Fail closed: an unknown grant is not a licence to publish.
            _ => {
                return Err(other(format!(
                    "coordinator returned unknown permissions {} for {connection_path:?}",
                    scope.permissions
                )))
            }
        };
        if enforced && !resp.relay_link {
            self.refuse_while_policy_opens(&scope.scope_id)?;
        }
        Ok(Some(ScopeInfo {
            scope_id: scope.scope_id,
            permissions,
        }))
    }

    /// Kept on (the relay's default): answers come from the push-kept cache,
    /// so a failed fetch means the Worker is unreachable and the channel is
    /// down; an enforced scope then keeps its last policy for 12 of its TTLs
    /// (one minute at the Worker's 5 s) before refusing new sessions, rather
    /// than refusing them at once on a blip. A key removed meanwhile cannot be
    /// learnt either way until the Worker is back (SECURITY.md).
    fn reuse_scope_config_on_error(&self) -> bool {
        true
    }

    async fn get_scope_config(&self, scope: Option<&str>) -> CoordinatorResult<ScopeConfig> {
        let wire = self.config_answer(scope).await?;
        let mut config = ScopeConfig::default();
        config.auth = crate::policy::auth_config(wire.auth);
        if config.auth.is_none() {
            self.inner.opening.answered_none(scope);
        }
        config.lingering_subscribe = wire.lingering_subscribe;
        config.origin_fallback = match wire.origin_fallback.filter(|s| !s.is_empty()) {
            None => None,
            Some(url) => Some(Url::parse(&url).map_err(|e| {
                other(format!(
                    "scope {scope:?} has a bad origin_fallback {url:?}: {e}"
                ))
            })?),
        };
        Ok(config)
    }

    async fn register_namespace(
        &self,
        scope: Option<&str>,
        namespace: &TrackNamespace,
        context: &CoordinatorContext,
    ) -> CoordinatorResult<NamespaceRegistration> {
        let key = RegistrationKey::new(Kind::Namespace, scope, fields_of(namespace), "");
        let (resp, handle) = self
            .inner
            .hold::<proto::RegisterNamespaceResponse>(key, context)
            .await?;
        Ok(NamespaceRegistration::new(handle)
            .with_metadata(vec![("registration_id".into(), resp.registration_id)]))
    }

    async fn unregister_namespace(
        &self,
        scope: Option<&str>,
        namespace: &TrackNamespace,
    ) -> CoordinatorResult<()> {
        let key = RegistrationKey::new(Kind::Namespace, scope, fields_of(namespace), "");
        self.inner.release_explicitly(key).await
    }

    async fn lookup(
        &self,
        scope: Option<&str>,
        namespace: &TrackNamespace,
    ) -> CoordinatorResult<(NamespaceOrigin, Option<UpstreamClient>)> {
        let req = proto::LookupRequest {
            scope: scope_of(scope),
            namespace: Some(proto::Namespace {
                fields: fields_of(namespace),
            }),
        };
        let origin_in = |resp: proto::LookupResponse| resp.origin;
        let origin = self
            .route("Lookup", scope, namespace, None, req, origin_in)
            .await?;
        // The relay dials this URL next (a FETCH).
        self.inner.upstreams.used(scope, &origin.url(), None);
        // No dedicated client: the relay dials with its own endpoint.
        Ok((origin, None))
    }

    async fn lookup_track(
        &self,
        scope: Option<&str>,
        namespace: &TrackNamespace,
        track: &str,
    ) -> CoordinatorResult<(NamespaceOrigin, Option<UpstreamClient>)> {
        let req = proto::LookupTrackRequest {
            scope: scope_of(scope),
            namespace: Some(proto::Namespace {
                fields: fields_of(namespace),
            }),
            track: track.to_string(),
        };
        let origin_in = |resp: proto::LookupTrackResponse| resp.origin;
        let origin = self
            .route("LookupTrack", scope, namespace, Some(track), req, origin_in)
            .await?;
        // moq-relay-ietf asks this once per SUBSCRIBE it routes upstream.
        let fields = fields_of(namespace);
        self.inner
            .upstreams
            .used(scope, &origin.url(), Some((&fields, track)));
        Ok((origin, None))
    }

    async fn shutdown(&self) -> CoordinatorResult<()> {
        // Also closes the watch channels and empties the cache.
        self.stop_heartbeat();
        // Set first so handles dropped from now on do not race the Worker's
        // purge with individual unregisters.
        self.inner.shut_down.store(true, Ordering::Release);
        self.inner
            .call_msg::<_, proto::ShutdownResponse>("Shutdown", &proto::ShutdownRequest {})
            .await
            .map_err(|e| CoordinatorError::Other(e.into()))?;
        tracing::info!(epoch = %self.inner.epoch, "left the coordinator");
        Ok(())
    }

    async fn subscribe_namespace(
        &self,
        scope: Option<&str>,
        prefix: &TrackNamespacePrefix,
        context: &CoordinatorContext,
    ) -> CoordinatorResult<NamespaceSubscription> {
        let key = RegistrationKey::new(Kind::NamespaceSub, scope, prefix_fields_of(prefix), "");
        let (resp, handle) = self
            .inner
            .hold::<proto::SubscribeNamespaceResponse>(key, context)
            .await?;
        let upstream = resp
            .upstream_relays
            .into_iter()
            .map(relay_from)
            .collect::<CoordinatorResult<Vec<_>>>()?;
        for relay in &upstream {
            tracing::info!(
                prefix = %prefix.to_utf8_path(),
                upstream = %relay.url,
                "edge: SUBSCRIBE_NAMESPACE routed upstream"
            );
            self.inner.upstreams.used(scope, &relay.url, None);
        }
        Ok(NamespaceSubscription::new(upstream, handle))
    }

    async fn unsubscribe_namespace(
        &self,
        scope: Option<&str>,
        prefix: &TrackNamespacePrefix,
    ) -> CoordinatorResult<()> {
        let key = RegistrationKey::new(Kind::NamespaceSub, scope, prefix_fields_of(prefix), "");
        self.inner.release_explicitly(key).await
    }

    async fn lookup_namespace_subscribers(
        &self,
        scope: Option<&str>,
        namespace: &TrackNamespace,
        context: &CoordinatorContext,
    ) -> CoordinatorResult<Vec<RelayInfo>> {
        let req = proto::LookupNamespaceSubscribersRequest {
            scope: scope_of(scope),
            namespace: Some(proto::Namespace {
                fields: fields_of(namespace),
            }),
            context: Some(context_of(context)),
        };
        let resp: proto::LookupNamespaceSubscribersResponse = self
            .inner
            .call_msg("LookupNamespaceSubscribers", &req)
            .await
            .map_err(map_err)?;
        resp.relays.into_iter().map(relay_from).collect()
    }

    async fn register_track(
        &self,
        scope: Option<&str>,
        namespace: &TrackNamespace,
        track: &str,
    ) -> CoordinatorResult<TrackRegistration> {
        let key = RegistrationKey::new(Kind::Track, scope, fields_of(namespace), track);
        let (_, handle) = self
            .inner
            .hold::<proto::RegisterTrackResponse>(key, &CoordinatorContext::public())
            .await?;
        Ok(TrackRegistration::new(handle))
    }

    async fn unregister_track(
        &self,
        scope: Option<&str>,
        namespace: &TrackNamespace,
        track: &str,
    ) -> CoordinatorResult<()> {
        let key = RegistrationKey::new(Kind::Track, scope, fields_of(namespace), track);
        self.inner.release_explicitly(key).await
    }

    async fn list_tracks(
        &self,
        scope: Option<&str>,
        namespace: &TrackNamespace,
    ) -> CoordinatorResult<Vec<TrackEntry>> {
        let req = proto::ListTracksRequest {
            scope: scope_of(scope),
            namespace: Some(proto::Namespace {
                fields: fields_of(namespace),
            }),
        };
        let resp: proto::ListTracksResponse = self
            .inner
            .call_msg("ListTracks", &req)
            .await
            .map_err(map_err)?;
        Ok(resp
            .tracks
            .into_iter()
            .map(|t| TrackEntry::new(namespace_from(t.namespace), t.name))
            .collect())
    }

    async fn subscribe_track(
        &self,
        scope: Option<&str>,
        namespace: &TrackNamespace,
        track: &str,
    ) -> CoordinatorResult<TrackSubscription> {
        let key = RegistrationKey::new(Kind::TrackSub, scope, fields_of(namespace), track);
        let (_, handle) = self
            .inner
            .hold::<proto::SubscribeTrackResponse>(key, &CoordinatorContext::public())
            .await?;
        Ok(TrackSubscription::new(handle))
    }

    async fn unsubscribe_track(
        &self,
        scope: Option<&str>,
        namespace: &TrackNamespace,
        track: &str,
    ) -> CoordinatorResult<()> {
        let key = RegistrationKey::new(Kind::TrackSub, scope, fields_of(namespace), track);
        self.inner.release_explicitly(key).await
    }

    async fn lookup_track_subscribers(
        &self,
        scope: Option<&str>,
        namespace: &TrackNamespace,
        track: &str,
    ) -> CoordinatorResult<Vec<RelayInfo>> {
        let req = proto::LookupTrackSubscribersRequest {
            scope: scope_of(scope),
            namespace: Some(proto::Namespace {
                fields: fields_of(namespace),
            }),
            track: track.to_string(),
        };
        let resp: proto::LookupTrackSubscribersResponse = self
            .inner
            .call_msg("LookupTrackSubscribers", &req)
            .await
            .map_err(map_err)?;
        resp.relays.into_iter().map(relay_from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_convert_both_ways() {
        let ns = TrackNamespace::from_utf8_path("live/room-1");
        let fields = fields_of(&ns);
        assert_eq!(fields, vec![b"live".to_vec(), b"room-1".to_vec()]);
        assert_eq!(namespace_from(Some(proto::Namespace { fields })), ns);
    }

    #[test]
    fn errors_map_to_trait_variants() {
        let status = |code| RpcError::Status {
            method: "X",
            code,
            message: "m".into(),
        };
        assert!(matches!(
            map_err(status(Code::AlreadyExists)),
            CoordinatorError::NamespaceAlreadyRegistered
        ));
        assert!(matches!(
            map_err(status(Code::NotFound)),
            CoordinatorError::NamespaceNotFound
        ));
        assert!(matches!(
            map_err(status(Code::PermissionDenied)),
            CoordinatorError::Other(_)
        ));
    }

    #[test]
    fn context_carries_source_url_and_addr() {
        let addr: SocketAddr = "127.0.0.1:4444".parse().unwrap();
        let ctx = CoordinatorContext::internal(Some(RelayInfo::from_socket_addr(addr)));
        let wire = context_of(&ctx);
        assert_eq!(wire.interface, proto::Interface::Internal as i32);
        assert_eq!(wire.source_url.as_deref(), Some("https://127.0.0.1:4444/"));
        assert_eq!(wire.source_addr.as_deref(), Some("127.0.0.1:4444"));

        let public = context_of(&CoordinatorContext::public());
        assert_eq!(public.interface, proto::Interface::Public as i32);
        assert_eq!(public.source_url, None);
    }

    #[test]
    fn relay_info_requires_valid_url_and_addr() {
        let ok = relay_from(proto::RelayInfo {
            url: "https://127.0.0.1:4443".into(),
            addr: Some("127.0.0.1:4443".into()),
        })
        .unwrap();
        assert_eq!(ok.addr, Some("127.0.0.1:4443".parse().unwrap()));
        assert!(relay_from(proto::RelayInfo {
            url: "not a url".into(),
            addr: None
        })
        .is_err());
        assert!(relay_from(proto::RelayInfo {
            url: "https://a".into(),
            addr: Some("nope".into())
        })
        .is_err());
    }
}
