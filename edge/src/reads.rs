//! The cached read path of [`crate::WorkerCoordinator`]: Lookup,
//! LookupTrack, GetScopeConfig and ResolveScope answers served from the
//! [`Cache`] when it can prove them current, identical misses sharing one
//! Worker call, and the watch channel of a scope opened on its first
//! cacheable read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::task::JoinHandle;

use crate::cache::{Cache, Invalidation, Key, Scope, Stats};
use crate::proto;
use crate::rpc::RpcError;
use crate::watch::{self, Endpoint, WatchConfig};

/// Cache settings (`--no-cache`, `--cache-entries`, the ping flags).
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Most answers kept, over all scopes; the least recently used go first.
    pub entries: usize,
    pub watch: WatchConfig,
    /// Where the watch channels connect, when not the coordinator URL
    /// (e.g. through a proxy of their own).
    pub watch_url: Option<url::Url>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            entries: 100_000,
            watch: WatchConfig::default(),
            watch_url: None,
        }
    }
}

/// A cacheable answer. NOT_FOUND is an answer too (while watched).
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    Origin(proto::NamespaceOrigin),
    NotFound,
    Config(proto::ScopeConfig),
    Resolved(proto::ResolveScopeResponse),
}

/// What a read yields; shared by every caller of one flight.
pub(crate) type Outcome = Result<Answer, Arc<RpcError>>;
type Flight = Shared<BoxFuture<'static, Outcome>>;

/// Invalidations remembered per scope to judge answers still in flight: far
/// more than can arrive during one call at any realistic change rate.
const LOG_CAPACITY: usize = 4096;

pub(crate) struct Reads {
    config: CacheConfig,
    cache: Arc<StdMutex<Cache<Answer, Flight>>>,
    endpoint: Endpoint,
    watchers: StdMutex<HashMap<Scope, JoinHandle<()>>>,
    next_flight: AtomicU64,
}

impl Reads {
    pub(crate) fn new(config: CacheConfig, endpoint: Endpoint) -> Self {
        Self {
            cache: Arc::new(StdMutex::new(Cache::new(config.entries, LOG_CAPACITY))),
            config,
            endpoint,
            watchers: StdMutex::new(HashMap::new()),
            next_flight: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        self.cache.lock().unwrap().stats()
    }

    pub(crate) fn is_up(&self, scope: &Scope) -> bool {
        self.cache.lock().unwrap().is_up(scope)
    }

    /// Answer from the cache, or by `fetch`: shared with an identical call
    /// in flight, and stored when the rules allow.
    pub(crate) async fn read(
        &self,
        method: &'static str,
        scope: Scope,
        key: Key,
        fetch: impl FnOnce() -> BoxFuture<'static, Outcome>,
    ) -> Outcome {
        if !self.config.enabled {
            return fetch().await;
        }
        let mut fetch = Some(fetch);
        let flight = {
            let mut cache = self.cache.lock().unwrap();
            if let Some(answer) = cache.get(&scope, &key) {
                metrics::counter!("moq_edge_cache_hits_total", "method" => method).increment(1);
                return Ok(answer);
            }
            metrics::counter!("moq_edge_cache_misses_total", "method" => method).increment(1);
            if !cache.is_up(&scope) {
                None
            } else {
                Some(match cache.flight(&scope, &key) {
                    Some(flight) => flight,
                    None => {
                        let ticket = cache.ticket();
                        let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
                        let shared = self.cache.clone();
                        let (s, k) = (scope.clone(), key.clone());
                        let call = fetch.take().expect("called once")();
                        // Its own task, so a cancelled caller does not strand
                        // the callers sharing it. It cannot end before
                        // start_flight below: it needs the lock held here.
                        let task = tokio::spawn(async move {
                            let outcome = call.await;
                            let mut cache = shared.lock().unwrap();
                            cache.end_flight(&s, &k, id);
                            if let Ok(answer) = &outcome {
                                cache.insert(&s, k, ticket, answer.clone());
                            }
                            outcome
                        });
                        let flight = async move {
                            task.await.unwrap_or_else(|err| {
                                Err(Arc::new(RpcError::Protocol {
                                    method,
                                    message: format!("lookup task failed: {err}"),
                                }))
                            })
                        }
                        .boxed()
                        .shared();
                        cache.start_flight(&scope, key, id, flight.clone());
                        flight
                    }
                })
            }
        };
        match flight {
            Some(flight) => flight.await,
            // Not watched (yet): nothing to share or keep.
            None => {
                self.ensure_watch(&scope);
                fetch.take().expect("not called yet")().await
            }
        }
    }

    /// ResolveScope of `path` ("" for none): the path's scope is known only
    /// from the answer, so the answer is stored under that scope (whose
    /// channel must have been up before the call started); path changes are
    /// pushed on it. "No path → unscoped" is stored under the unscoped
    /// channel: it changes only with a new deployment, which closes every
    /// channel. "No such path" (an error) and relay links are not stored.
    pub(crate) async fn resolve(
        &self,
        path: &str,
        fetch: impl FnOnce() -> BoxFuture<'static, Outcome>,
    ) -> Outcome {
        let method = "ResolveScope";
        if !self.config.enabled {
            return fetch().await;
        }
        let key = Key::Path(path.to_string());
        let ticket = {
            let mut cache = self.cache.lock().unwrap();
            if let Some(scope) = cache.path_scope(path) {
                if let Some(answer) = cache.get(&scope, &key) {
                    metrics::counter!("moq_edge_cache_hits_total", "method" => method).increment(1);
                    return Ok(answer);
                }
            }
            metrics::counter!("moq_edge_cache_misses_total", "method" => method).increment(1);
            cache.ticket()
        };
        let outcome = fetch().await;
        if let Ok(Answer::Resolved(resp)) = &outcome {
            let scope = match (&resp.scope, path.is_empty()) {
                _ if resp.relay_link => None,
                (Some(scope), false) => Some(Some(scope.scope_id.clone())),
                (None, true) => Some(None),
                _ => None,
            };
            if let Some(scope) = scope {
                self.ensure_watch(&scope);
                self.cache
                    .lock()
                    .unwrap()
                    .insert(&scope, key, ticket, outcome.clone().unwrap());
            }
        }
        outcome
    }

    /// This relay's own write finished: its next read must see it, even
    /// before the push about it arrives.
    pub(crate) fn invalidate(&self, scope: &Scope, inv: Invalidation) {
        if self.config.enabled {
            self.cache.lock().unwrap().invalidate(scope, inv);
        }
    }

    fn ensure_watch(&self, scope: &Scope) {
        let mut watchers = self.watchers.lock().unwrap();
        if watchers.contains_key(scope) {
            return;
        }
        metrics::gauge!("moq_edge_watch_channels").increment(1.0);
        watchers.insert(
            scope.clone(),
            tokio::spawn(watch::run(
                self.cache.clone(),
                self.endpoint.clone(),
                scope.clone(),
                self.config.watch.clone(),
            )),
        );
    }

    /// Close every channel and forget every answer.
    pub(crate) fn stop(&self) {
        for (_, task) in self.watchers.lock().unwrap().drain() {
            task.abort();
            metrics::gauge!("moq_edge_watch_channels").decrement(1.0);
        }
        self.cache.lock().unwrap().clear();
    }
}

impl Drop for Reads {
    fn drop(&mut self) {
        self.stop();
    }
}
