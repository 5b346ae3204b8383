//! The cached read path of [`crate::WorkerCoordinator`]: Lookup,
//! LookupTrack, GetScopeConfig and ResolveScope answers served from the
//! [`Cache`] when it can prove them current, identical misses sharing one
//! Worker call, and the watch channel of a scope opened on its first
//! cacheable read and closed when the scope is released (not read for
//! `watch_idle`, or the least recently read past `watch_scopes`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::task::JoinHandle;

use crate::cache::{
    Cache, Invalidation, Key, ReleaseReason, Scope, ScopeLimits, Stats, Ticket, Touched,
};
use crate::proto;
use crate::rpc::RpcError;
use crate::watch::{self, Endpoint, WatchConfig};

/// Cache settings (`--no-cache`, `--cache-entries`, `--watch-scopes`,
/// `--watch-idle-ms`, the ping flags).
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Most answers kept, over all scopes; the least recently used go first.
    pub entries: usize,
    /// Most scopes watched at once; past it the least recently read scope's
    /// channel is closed and its state dropped.
    pub watch_scopes: usize,
    /// A scope not read for this long has its channel closed and its state
    /// dropped (checked every quarter of it, at least every 10 s).
    pub watch_idle: Duration,
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
            watch_scopes: 1024,
            watch_idle: Duration::from_secs(300),
            watch: WatchConfig::default(),
            watch_url: None,
        }
    }
}

/// A cacheable answer, as the cache keeps it: one variant per kind of read
/// (see [`AnswerKind`]).
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    Route(Route),
    Config(proto::ScopeConfig),
    Resolved(proto::ResolveScopeResponse),
}

/// The answer to Lookup and LookupTrack. NOT_FOUND is an answer too (while
/// watched).
#[derive(Debug, Clone)]
pub(crate) enum Route {
    Origin(proto::NamespaceOrigin),
    NotFound,
}

/// A kind of [`Answer`]: what a read asks for and gets back, while the cache
/// and the flights hold it as an [`Answer`].
pub(crate) trait AnswerKind: Sized + Send + 'static {
    /// Its name, for the error should the cache ever hold another kind
    /// under a key of this one.
    const NAME: &'static str;
    fn into_answer(self) -> Answer;
    fn from_answer(answer: Answer) -> Option<Self>;
}

impl AnswerKind for Route {
    const NAME: &'static str = "route";
    fn into_answer(self) -> Answer {
        Answer::Route(self)
    }
    fn from_answer(answer: Answer) -> Option<Self> {
        match answer {
            Answer::Route(route) => Some(route),
            _ => None,
        }
    }
}

impl AnswerKind for proto::ScopeConfig {
    const NAME: &'static str = "scope config";
    fn into_answer(self) -> Answer {
        Answer::Config(self)
    }
    fn from_answer(answer: Answer) -> Option<Self> {
        match answer {
            Answer::Config(config) => Some(config),
            _ => None,
        }
    }
}

impl AnswerKind for proto::ResolveScopeResponse {
    const NAME: &'static str = "scope resolution";
    fn into_answer(self) -> Answer {
        Answer::Resolved(self)
    }
    fn from_answer(answer: Answer) -> Option<Self> {
        match answer {
            Answer::Resolved(resp) => Some(resp),
            _ => None,
        }
    }
}

impl Answer {
    fn kind(&self) -> &'static str {
        match self {
            Self::Route(_) => Route::NAME,
            Self::Config(_) => proto::ScopeConfig::NAME,
            Self::Resolved(_) => proto::ResolveScopeResponse::NAME,
        }
    }

    /// The one place an answer of the wrong kind is handled: each key holds
    /// one kind (`Key::Route` routes, `Key::Config` configs, `Key::Path`
    /// resolutions), so this is a bug, reported as a bad response.
    fn into_kind<T: AnswerKind>(self, method: &'static str) -> Fetched<T> {
        let kind = self.kind();
        T::from_answer(self).ok_or_else(|| {
            Arc::new(RpcError::Protocol {
                method,
                message: format!("the cache held a {kind} answer for a {} read", T::NAME),
            })
        })
    }
}

/// What a read yields: the answer (an [`Answer`] in the cache and the
/// flights, one [`AnswerKind`] to the caller) or the Worker call's error,
/// shared by every caller of one flight.
pub(crate) type Fetched<T = Answer> = Result<T, Arc<RpcError>>;
type Flight = Shared<BoxFuture<'static, Fetched>>;

/// Invalidations remembered per scope to judge answers still in flight: far
/// more than can arrive during one call at any realistic change rate.
const LOG_CAPACITY: usize = 4096;

type SharedCache = Arc<StdMutex<Cache<Answer, Flight>>>;

pub(crate) struct Reads {
    config: CacheConfig,
    cache: SharedCache,
    channels: Arc<Channels>,
    /// Releases idle scopes.
    sweeper: StdMutex<Option<JoinHandle<()>>>,
    next_flight: AtomicU64,
}

/// The watch tasks, one per watched scope, with the channel id the cache
/// gave each. Changed only with the cache's lock held, so the cache's
/// watched scopes and these tasks never disagree.
struct Channels {
    endpoint: Endpoint,
    config: WatchConfig,
    tasks: StdMutex<HashMap<Scope, (u64, JoinHandle<()>)>>,
}

impl Channels {
    /// Start the channel a read opened and close the ones it released
    /// (called with `shared`'s lock held).
    fn apply(&self, shared: &SharedCache, scope: &Scope, touched: Touched) {
        self.close(touched.released, Some(ReleaseReason::Cap));
        if let Some(channel) = touched.opened {
            metrics::gauge!("moq_edge_watch_channels").increment(1.0);
            let task = tokio::spawn(watch::run(
                shared.clone(),
                self.endpoint.clone(),
                scope.clone(),
                channel,
                self.config.clone(),
            ));
            if let Some((_, old)) = self
                .tasks
                .lock()
                .unwrap()
                .insert(scope.clone(), (channel, task))
            {
                old.abort();
            }
        }
    }

    /// Close the channels of released scopes (`reason` is `None` at stop).
    fn close(&self, released: Vec<(Scope, u64)>, reason: Option<ReleaseReason>) {
        if released.is_empty() {
            return;
        }
        let mut tasks = self.tasks.lock().unwrap();
        for (scope, channel) in released {
            metrics::gauge!("moq_edge_watch_channels").decrement(1.0);
            if let Some(reason) = reason {
                metrics::counter!("moq_edge_watch_released_total", "reason" => reason.label())
                    .increment(1);
            }
            if tasks.get(&scope).is_some_and(|(id, _)| *id == channel) {
                let (_, task) = tasks.remove(&scope).expect("checked");
                task.abort();
            }
        }
    }
}

/// A ticket taken for a request in flight: settled when the request ends,
/// or when it is dropped (a cancelled caller), so the invalidation logs
/// never keep entries for a request that is gone.
struct Pending {
    cache: SharedCache,
    ticket: Option<Ticket>,
}

impl Pending {
    /// Made where the cache's lock is not held: dropping it takes the lock.
    fn new(cache: SharedCache, ticket: Ticket) -> Self {
        Self {
            cache,
            ticket: Some(ticket),
        }
    }

    /// Settle it with the lock held (`cache`), to judge the answer.
    fn settle(mut self, cache: &mut Cache<Answer, Flight>) -> Ticket {
        let ticket = self.ticket.take().expect("settled once");
        cache.settle(ticket);
        ticket
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            if let Ok(mut cache) = self.cache.lock() {
                cache.settle(ticket);
            }
        }
    }
}

impl Reads {
    /// Must run inside the Tokio runtime (it starts the idle sweeper).
    pub(crate) fn new(config: CacheConfig, endpoint: Endpoint) -> Self {
        let limits = ScopeLimits {
            max_scopes: config.watch_scopes,
            idle: config.watch_idle,
        };
        let cache: SharedCache = Arc::new(StdMutex::new(Cache::new(
            config.entries,
            LOG_CAPACITY,
            limits,
        )));
        let channels = Arc::new(Channels {
            endpoint,
            config: config.watch.clone(),
            tasks: StdMutex::new(HashMap::new()),
        });
        let sweeper = config.enabled.then(|| {
            let every =
                (config.watch_idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(10));
            let (cache, channels) = (cache.clone(), channels.clone());
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(every);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    interval.tick().await;
                    let mut cache = cache.lock().unwrap();
                    let released = cache.release_idle(Instant::now());
                    channels.close(released, Some(ReleaseReason::Idle));
                }
            })
        });
        Self {
            cache,
            config,
            channels,
            sweeper: StdMutex::new(sweeper),
            next_flight: AtomicU64::new(0),
        }
    }

    /// Note a read of `scope` (opening its channel if it is not watched),
    /// with the cache's lock held.
    fn touch(&self, cache: &mut Cache<Answer, Flight>, scope: &Scope) {
        let touched = cache.touch(scope, Instant::now());
        self.channels.apply(&self.cache, scope, touched);
    }

    pub(crate) fn stats(&self) -> Stats {
        self.cache.lock().unwrap().stats()
    }

    pub(crate) fn is_up(&self, scope: &Scope) -> bool {
        self.cache.lock().unwrap().is_up(scope)
    }

    /// Answer from the cache, or by `fetch`: shared with an identical call
    /// in flight, and stored when the rules allow.
    pub(crate) async fn read<T: AnswerKind>(
        &self,
        method: &'static str,
        scope: Scope,
        key: Key,
        fetch: impl FnOnce() -> BoxFuture<'static, Fetched<T>>,
    ) -> Fetched<T> {
        let fetch = move || fetch().map(|fetched| fetched.map(T::into_answer)).boxed();
        self.read_answer(method, scope, key, fetch)
            .await?
            .into_kind(method)
    }

    /// [`Reads::read`], with the answer as the cache holds it.
    async fn read_answer(
        &self,
        method: &'static str,
        scope: Scope,
        key: Key,
        fetch: impl FnOnce() -> BoxFuture<'static, Fetched>,
    ) -> Fetched {
        if !self.config.enabled {
            return fetch().await;
        }
        let mut fetch = Some(fetch);
        let flight = {
            let mut cache = self.cache.lock().unwrap();
            self.touch(&mut cache, &scope);
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
                            // Wrapped once running, not here: a runtime that is
                            // shutting down drops the task inside spawn, with the
                            // lock held, and Pending's drop takes the lock. Such
                            // a ticket stays unsettled; the log's capacity bounds it.
                            let ticket = Pending::new(shared.clone(), ticket);
                            let fetched = call.await;
                            let mut cache = shared.lock().unwrap();
                            cache.end_flight(&s, &k, id);
                            let ticket = ticket.settle(&mut cache);
                            if let Ok(answer) = &fetched {
                                cache.insert(&s, k, ticket, answer.clone());
                            }
                            fetched
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
            // Not up (yet): nothing to share or keep.
            None => fetch.take().expect("not called yet")().await,
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
        fetch: impl FnOnce() -> BoxFuture<'static, Fetched<proto::ResolveScopeResponse>>,
    ) -> Fetched<proto::ResolveScopeResponse> {
        let method = "ResolveScope";
        if !self.config.enabled {
            return fetch().await;
        }
        let key = Key::Path(path.to_string());
        let ticket = {
            let mut cache = self.cache.lock().unwrap();
            if let Some(scope) = cache.path_scope(path) {
                if let Some(answer) = cache.get(&scope, &key) {
                    self.touch(&mut cache, &scope);
                    metrics::counter!("moq_edge_cache_hits_total", "method" => method).increment(1);
                    return answer.into_kind(method);
                }
            }
            metrics::counter!("moq_edge_cache_misses_total", "method" => method).increment(1);
            cache.ticket()
        };
        let ticket = Pending::new(self.cache.clone(), ticket);
        let fetched = fetch().await;
        let mut cache = self.cache.lock().unwrap();
        let ticket = ticket.settle(&mut cache);
        if let Ok(resp) = &fetched {
            let scope = match (&resp.scope, path.is_empty()) {
                _ if resp.relay_link => None,
                (Some(scope), false) => Some(Some(scope.scope_id.clone())),
                (None, true) => Some(None),
                _ => None,
            };
            if let Some(scope) = scope {
                self.touch(&mut cache, &scope);
                cache.insert(&scope, key, ticket, resp.clone().into_answer());
            }
        }
        fetched
    }

    /// This relay's own write finished: its next read must see it, even
    /// before the push about it arrives.
    pub(crate) fn invalidate(&self, scope: &Scope, inv: Invalidation) {
        if self.config.enabled {
            self.cache.lock().unwrap().invalidate(scope, inv);
        }
    }

    /// Close every channel and forget every answer.
    pub(crate) fn stop(&self) {
        if let Some(sweeper) = self.sweeper.lock().unwrap().take() {
            sweeper.abort();
        }
        let mut cache = self.cache.lock().unwrap();
        let released = cache.clear();
        self.channels.close(released, None);
        for (_, (_, task)) in self.channels.tasks.lock().unwrap().drain() {
            task.abort();
        }
    }
}

impl Drop for Reads {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::net::TcpListener;
    use tokio::time::sleep;

    fn config(watch_scopes: usize, watch_idle: Duration) -> CacheConfig {
        CacheConfig {
            watch_scopes,
            watch_idle,
            watch: WatchConfig {
                ping_interval: Duration::from_secs(60),
                ping_timeout: Duration::from_secs(60),
                initial_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
            },
            ..CacheConfig::default()
        }
    }

    fn endpoint(listener: &TcpListener) -> Endpoint {
        let addr = listener.local_addr().unwrap();
        Endpoint {
            base: url::Url::parse(&format!("http://{addr}")).unwrap(),
            token: "t".into(),
            epoch: "e".into(),
        }
    }

    fn s(name: &str) -> Scope {
        Some(name.to_string())
    }

    fn key() -> Key {
        Key::Config
    }

    /// A Worker call that counts itself and answers the default.
    fn fetch<T: AnswerKind + Default>(
        calls: &Arc<AtomicUsize>,
    ) -> impl FnOnce() -> BoxFuture<'static, Fetched<T>> {
        let calls = calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok(T::default()) }.boxed()
        }
    }

    /// GetScopeConfig of `scope` through `reads`, answered by `fetch`.
    async fn get(reads: &Reads, scope: &str, calls: &Arc<AtomicUsize>) {
        reads
            .read(
                "GetScopeConfig",
                s(scope),
                key(),
                fetch::<proto::ScopeConfig>(calls),
            )
            .await
            .unwrap();
    }

    /// Say hello on `scope`'s current channel, as its watch task would
    /// (the peer in these tests never answers the upgrade).
    fn hello(reads: &Reads, scope: &Scope) {
        let channel = reads.channels.tasks.lock().unwrap()[scope].0;
        assert!(reads.cache.lock().unwrap().hello(scope, channel, 1));
    }

    fn watched(reads: &Reads) -> Vec<Scope> {
        let mut scopes: Vec<Scope> = reads
            .channels
            .tasks
            .lock()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        scopes.sort();
        scopes
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        let limit = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < limit, "timed out waiting for {what}");
            sleep(Duration::from_millis(5)).await;
        }
    }

    /// Each key holds one kind of answer; should the cache ever hand back
    /// another, the read fails with a bad response rather than a panic.
    #[test]
    fn an_answer_of_another_kind_is_a_bad_response() {
        let config = Answer::Config(proto::ScopeConfig::default());
        let err = config.into_kind::<Route>("Lookup").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Lookup: bad response: the cache held a scope config answer for a route read"
        );
        let route = Route::NotFound.into_answer().into_kind::<Route>("Lookup");
        assert!(matches!(route, Ok(Route::NotFound)));
    }

    /// A channel the Worker refuses is retried only while its scope is read:
    /// once idle, its task is gone and no more connections are made.
    #[tokio::test]
    async fn a_refused_channel_stops_retrying_once_its_scope_is_idle() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let reads = Reads::new(config(10, Duration::from_millis(150)), endpoint(&listener));
        let attempts = Arc::new(AtomicUsize::new(0));
        let counter = attempts.clone();
        let refuser = tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                drop(tcp);
            }
        });
        let calls = Arc::new(AtomicUsize::new(0));
        get(&reads, "a", &calls).await;
        assert_eq!(watched(&reads), vec![s("a")]);
        until("retries", || attempts.load(Ordering::SeqCst) >= 2).await;
        until("released when idle", || reads.stats().watched == 0).await;
        assert!(watched(&reads).is_empty());
        assert_eq!(reads.stats().released, 1);
        let after = attempts.load(Ordering::SeqCst);
        sleep(Duration::from_millis(300)).await;
        assert!(
            attempts.load(Ordering::SeqCst) <= after + 1,
            "still retrying after release"
        );
        // The next read opens it again.
        get(&reads, "a", &calls).await;
        assert_eq!(watched(&reads), vec![s("a")]);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        refuser.abort();
    }

    #[tokio::test]
    async fn past_the_cap_the_least_recently_read_scope_is_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let reads = Reads::new(config(2, Duration::from_secs(3600)), endpoint(&listener));
        let calls = Arc::new(AtomicUsize::new(0));
        for scope in ["a", "b", "a", "c"] {
            reads
                .read(
                    "GetScopeConfig",
                    s(scope),
                    key(),
                    fetch::<proto::ScopeConfig>(&calls),
                )
                .await
                .unwrap();
        }
        assert_eq!(
            watched(&reads),
            vec![s("a"), s("c")],
            "b was read least recently"
        );
        assert_eq!(reads.stats().watched, 2);
        assert_eq!(reads.stats().released, 1);
        // A cached hit counts as a read: a up and answering from memory,
        // then read again, so c goes next.
        hello(&reads, &s("a"));
        get(&reads, "a", &calls).await;
        let before = calls.load(Ordering::SeqCst);
        get(&reads, "c", &calls).await;
        get(&reads, "a", &calls).await;
        assert_eq!(calls.load(Ordering::SeqCst), before + 1, "a from memory");
        get(&reads, "b", &calls).await;
        assert_eq!(watched(&reads), vec![s("a"), s("b")]);
    }

    #[tokio::test]
    async fn after_release_the_next_read_asks_the_worker_and_reopens() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let reads = Reads::new(config(1, Duration::from_secs(3600)), endpoint(&listener));
        let calls = Arc::new(AtomicUsize::new(0));
        get(&reads, "a", &calls).await;
        hello(&reads, &s("a"));
        get(&reads, "a", &calls).await;
        get(&reads, "a", &calls).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "stored, then from memory");
        let old = reads.channels.tasks.lock().unwrap()[&s("a")].0;
        // b takes the only slot: a's channel and answers go.
        get(&reads, "b", &calls).await;
        assert_eq!(watched(&reads), vec![s("b")]);
        get(&reads, "a", &calls).await;
        assert_eq!(calls.load(Ordering::SeqCst), 4, "a asked the Worker again");
        let new = reads.channels.tasks.lock().unwrap()[&s("a")].0;
        assert_ne!(old, new, "a new channel");
        // The released channel cannot bring a back up; the new one can.
        assert!(!reads.cache.lock().unwrap().hello(&s("a"), old, 1));
        get(&reads, "a", &calls).await;
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        hello(&reads, &s("a"));
        get(&reads, "a", &calls).await;
        get(&reads, "a", &calls).await;
        assert_eq!(calls.load(Ordering::SeqCst), 6);
    }

    /// A miss whose scope is released (and reopened, up again) while the
    /// Worker call is in flight: its answer is returned but not stored.
    #[tokio::test]
    async fn a_miss_in_flight_across_a_release_is_not_stored() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let reads = Arc::new(Reads::new(
            config(1, Duration::from_secs(3600)),
            endpoint(&listener),
        ));
        let calls = Arc::new(AtomicUsize::new(0));
        get(&reads, "a", &calls).await;
        hello(&reads, &s("a"));
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        let slow = {
            let (reads, calls) = (reads.clone(), calls.clone());
            tokio::spawn(async move {
                reads
                    .read("GetScopeConfig", s("a"), key(), move || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        async move {
                            answered.await.unwrap();
                            Ok(proto::ScopeConfig::default())
                        }
                        .boxed()
                    })
                    .await
            })
        };
        until("the miss is in flight", || {
            calls.load(Ordering::SeqCst) == 2
        })
        .await;
        get(&reads, "b", &calls).await;
        get(&reads, "a", &calls).await;
        hello(&reads, &s("a"));
        let refused = reads.stats().refused;
        answer.send(()).unwrap();
        slow.await.unwrap().unwrap();
        assert_eq!(reads.stats().refused, refused + 1);
        assert_eq!(reads.stats().entries, 0);
        let before = calls.load(Ordering::SeqCst);
        get(&reads, "a", &calls).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            before + 1,
            "not served from memory"
        );
        assert_eq!(reads.cache.lock().unwrap().pending_tickets(), 0);
    }

    /// Every ticket is settled, also a cancelled caller's: otherwise the
    /// invalidation logs would keep entries for it.
    #[tokio::test]
    async fn tickets_are_settled_when_requests_end_or_are_cancelled() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let reads = Reads::new(config(10, Duration::from_secs(3600)), endpoint(&listener));
        let calls = Arc::new(AtomicUsize::new(0));
        reads
            .read(
                "GetScopeConfig",
                None,
                key(),
                fetch::<proto::ScopeConfig>(&calls),
            )
            .await
            .unwrap();
        hello(&reads, &None);
        reads
            .read(
                "GetScopeConfig",
                None,
                key(),
                fetch::<proto::ScopeConfig>(&calls),
            )
            .await
            .unwrap();
        reads.resolve("", fetch(&calls)).await.unwrap();
        let never = || futures::future::pending::<Fetched<proto::ResolveScopeResponse>>().boxed();
        let cancelled = tokio::time::timeout(Duration::from_millis(20), reads.resolve("/p", never));
        assert!(cancelled.await.is_err());
        assert_eq!(reads.cache.lock().unwrap().pending_tickets(), 0);
    }
}
