//! The watch channel client: one WebSocket per scope (GET /v1/watch, see
//! `schema/moqworker/v1/watch.proto`), feeding hello and invalidations into
//! the [`Cache`] and taking the scope down whenever the channel may have
//! missed a change: closed, a sequence gap, or no pong in time.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use prost::Message as _;
use rand::Rng;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use url::Url;

use crate::cache::{Cache, Invalidation, Scope};
use crate::proto;

/// Liveness and reconnect settings of the watch channels.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// A "ping" is sent this often.
    pub ping_interval: Duration,
    /// The channel counts as down when a ping has no pong within this
    /// (also the limit for connecting and for the hello).
    pub ping_timeout: Duration,
    /// First reconnect delay; doubles (with jitter) up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(1),
            ping_timeout: Duration::from_secs(3),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Where and as whom to open the channels.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub base: Url,
    pub token: String,
    pub epoch: String,
}

/// `ws(s)://<base><path>`: a WebSocket route of the Worker (the watch
/// channel, the lease socket), wss when the Worker is reached over https.
pub(crate) fn socket_url(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let scheme = if base.scheme() == "https" {
        "wss"
    } else {
        "ws"
    };
    url.set_scheme(scheme)
        .expect("ws and wss are valid schemes");
    url.set_path(path);
    url.set_query(None);
    url
}

/// `ws(s)://<base>/v1/watch?scope=<scope>`.
pub(crate) fn watch_url(base: &Url, scope: &Scope) -> Url {
    let mut url = socket_url(base, "/v1/watch");
    if let Some(scope) = scope {
        url.query_pairs_mut().append_pair("scope", scope);
    }
    url
}

/// Why a channel ended; the label of the resync that follows.
#[derive(Debug, Clone, Copy)]
enum Ended {
    /// Never said hello (refused, unreachable, or silent).
    Failed,
    Gap,
    Closed,
    Silent,
}

impl Ended {
    fn label(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Gap => "gap",
            Self::Closed => "closed",
            Self::Silent => "silent",
        }
    }
}

/// Keep `scope`'s channel open for as long as the task lives (it is aborted
/// when its scope is released or the coordinator stops), reconnecting with
/// backoff. `channel` is the id the cache gave it: once the scope is
/// released its events change nothing, and the loop ends at its next hello
/// (or is aborted first).
pub(crate) async fn run<V: Clone, F: Clone>(
    cache: Arc<StdMutex<Cache<V, F>>>,
    endpoint: Endpoint,
    scope: Scope,
    channel: u64,
    config: WatchConfig,
) {
    let label = scope.clone().unwrap_or_default();
    let mut backoff = config.initial_backoff;
    let mut said_hello = false;
    let mut reported = false;
    let me = Channel {
        scope: &scope,
        id: channel,
    };
    loop {
        let ended = session(&cache, &endpoint, me, &config, &mut said_hello).await;
        if !cache.lock().unwrap().down(&scope, channel) {
            // Released meanwhile: nobody reads this scope any more.
            return;
        }
        metrics::counter!("moq_edge_watch_ended_total", "reason" => ended.label()).increment(1);
        match ended {
            Ended::Failed => {
                if !reported {
                    reported = true;
                    tracing::warn!(scope = %label, "watch channel unavailable; lookups in this scope go to the coordinator until it opens");
                }
                backoff = (backoff * 2).min(config.max_backoff);
            }
            _ => {
                reported = false;
                tracing::info!(scope = %label, reason = ended.label(), "watch channel lost; resyncing");
                backoff = config.initial_backoff;
            }
        }
        let jitter = rand::thread_rng().gen_range(0.5..1.0);
        sleep(backoff.mul_f64(jitter)).await;
    }
}

/// Decrements the up-channel gauge however the session ends.
struct UpGauge(bool);

impl UpGauge {
    fn set_up(&mut self) {
        if !self.0 {
            self.0 = true;
            metrics::gauge!("moq_edge_watch_channels_up").increment(1.0);
        }
    }
}

impl Drop for UpGauge {
    fn drop(&mut self) {
        if self.0 {
            metrics::gauge!("moq_edge_watch_channels_up").decrement(1.0);
        }
    }
}

/// A scope's channel as the cache knows it.
#[derive(Clone, Copy)]
struct Channel<'a> {
    scope: &'a Scope,
    id: u64,
}

async fn session<V: Clone, F: Clone>(
    cache: &StdMutex<Cache<V, F>>,
    endpoint: &Endpoint,
    channel: Channel<'_>,
    config: &WatchConfig,
    said_hello: &mut bool,
) -> Ended {
    let scope = channel.scope;
    let url = watch_url(&endpoint.base, scope);
    let Ok(mut request) = url.as_str().into_client_request() else {
        return Ended::Failed;
    };
    let headers = request.headers_mut();
    for (name, value) in [
        ("authorization", format!("Bearer {}", endpoint.token)),
        ("moq-relay-epoch", endpoint.epoch.clone()),
    ] {
        match HeaderValue::from_str(&value) {
            Ok(value) => {
                headers.insert(name, value);
            }
            Err(_) => return Ended::Failed,
        }
    }
    let mut ws = match timeout(
        config.ping_timeout,
        tokio_tungstenite::connect_async(request),
    )
    .await
    {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(WsError::Http(resp))) => {
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            tracing::debug!(%url, status = %resp.status(), %body, "watch refused");
            return Ended::Failed;
        }
        Ok(Err(err)) => {
            tracing::debug!(%url, error = %err, "watch connect failed");
            return Ended::Failed;
        }
        Err(_) => return Ended::Failed,
    };

    let mut up = UpGauge(false);
    let mut interval = tokio::time::interval(config.ping_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Before hello, the hello itself is what we wait for.
    let mut deadline = Some(Instant::now() + config.ping_timeout);
    loop {
        tokio::select! {
            msg = ws.next() => {
                let msg = match msg {
                    Some(Ok(msg)) => msg,
                    Some(Err(err)) => {
                        tracing::debug!(error = %err, "watch channel error");
                        return if up.0 { Ended::Closed } else { Ended::Failed };
                    }
                    None => return if up.0 { Ended::Closed } else { Ended::Failed },
                };
                match msg {
                    Message::Text(text) if text.as_str() == "pong" && up.0 => {
                        deadline = None;
                    }
                    Message::Binary(bytes) => {
                        let Ok(event) = proto::WatchEvent::decode(bytes) else {
                            tracing::warn!("undecodable watch event; resyncing");
                            return Ended::Gap;
                        };
                        match event.event {
                            Some(proto::watch_event::Event::Hello(_)) if !up.0 => {
                                if !cache.lock().unwrap().hello(scope, channel.id, event.seq) {
                                    return Ended::Closed;
                                }
                                if *said_hello {
                                    metrics::counter!("moq_edge_cache_resyncs_total").increment(1);
                                }
                                *said_hello = true;
                                up.set_up();
                                deadline = None;
                            }
                            Some(proto::watch_event::Event::Invalidate(inv)) if up.0 => {
                                let inv = invalidation_from(inv);
                                if let Err(gap) = cache.lock().unwrap().event(scope, channel.id, event.seq, inv) {
                                    tracing::info!(?gap, "watch sequence gap");
                                    return Ended::Gap;
                                }
                                metrics::counter!("moq_edge_cache_invalidation_events_total").increment(1);
                            }
                            // A second hello, an event before hello, or one
                            // of a kind this build does not know: we cannot
                            // tell what it covers.
                            _ => return if up.0 { Ended::Gap } else { Ended::Failed },
                        }
                    }
                    Message::Close(_) => return if up.0 { Ended::Closed } else { Ended::Failed },
                    _ => {}
                }
            }
            _ = interval.tick(), if up.0 && deadline.is_none() => {
                if ws.send(Message::text("ping")).await.is_err() {
                    return Ended::Closed;
                }
                deadline = Some(Instant::now() + config.ping_timeout);
            }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                return if up.0 { Ended::Silent } else { Ended::Failed };
            }
        }
    }
}

pub(crate) fn invalidation_from(inv: proto::WatchInvalidate) -> Invalidation {
    Invalidation {
        namespaces: inv.namespaces.into_iter().map(|n| n.fields).collect(),
        tracks: inv
            .tracks
            .into_iter()
            .map(|t| (t.namespace.map(|n| n.fields).unwrap_or_default(), t.name))
            .collect(),
        config: inv.config,
        paths: inv.paths,
        all: inv.all,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Key, ScopeLimits};
    use tokio::net::TcpListener;

    type Shared = Arc<StdMutex<Cache<u8, u8>>>;

    fn hello(seq: u64) -> Message {
        let event = proto::WatchEvent {
            seq,
            event: Some(proto::watch_event::Event::Hello(proto::WatchHello {
                stream: "s".into(),
            })),
        };
        Message::binary(event.encode_to_vec())
    }

    fn invalidate(seq: u64) -> Message {
        let event = proto::WatchEvent {
            seq,
            event: Some(proto::watch_event::Event::Invalidate(
                proto::WatchInvalidate {
                    config: true,
                    ..Default::default()
                },
            )),
        };
        Message::binary(event.encode_to_vec())
    }

    async fn until(cache: &Shared, what: &str, check: impl Fn(&Cache<u8, u8>) -> bool) {
        let limit = Instant::now() + Duration::from_secs(5);
        while !check(&cache.lock().unwrap()) {
            assert!(Instant::now() < limit, "timed out waiting for {what}");
            sleep(Duration::from_millis(5)).await;
        }
    }

    /// A peer speaking the watch protocol: the client's side is real, the
    /// server side is the few frames each case needs.
    #[tokio::test]
    async fn gap_and_silence_take_the_scope_down_and_it_resyncs() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let cache: Shared = Arc::new(StdMutex::new(Cache::new(
            10,
            10,
            ScopeLimits {
                max_scopes: 10,
                idle: Duration::from_secs(60),
            },
        )));
        let config = WatchConfig {
            ping_interval: Duration::from_millis(100),
            ping_timeout: Duration::from_millis(300),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        };
        let endpoint = Endpoint {
            base,
            token: "t".into(),
            epoch: "e".into(),
        };
        let scope: Scope = Some("s".into());
        let channel = cache
            .lock()
            .unwrap()
            .touch(&scope, std::time::Instant::now())
            .opened
            .unwrap();
        let client = tokio::spawn(run(cache.clone(), endpoint, scope.clone(), channel, config));

        // 1. hello, one event in sequence, then a gap.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(hello(5)).await.unwrap();
        until(&cache, "up", |c| c.is_up(&scope)).await;
        let t = cache.lock().unwrap().ticket();
        assert!(cache.lock().unwrap().insert(&scope, Key::Config, t, 1));
        ws.send(invalidate(6)).await.unwrap();
        until(&cache, "event", |c| c.stats().events == 1).await;
        assert_eq!(cache.lock().unwrap().stats().entries, 0);
        ws.send(invalidate(8)).await.unwrap();
        until(&cache, "down after the gap", |c| !c.is_up(&scope)).await;

        // 2. It reconnects by itself; hello makes it up again. Pings are
        // answered for a while, then not: down within interval + timeout.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(hello(8)).await.unwrap();
        until(&cache, "up again", |c| c.is_up(&scope)).await;
        for _ in 0..3 {
            let msg = ws.next().await.unwrap().unwrap();
            assert_eq!(msg, Message::text("ping"));
            ws.send(Message::text("pong")).await.unwrap();
        }
        assert!(cache.lock().unwrap().is_up(&scope));
        let silent = Instant::now();
        until(&cache, "down when silent", |c| !c.is_up(&scope)).await;
        // Interval + timeout (400 ms), with room for a loaded machine; a
        // client that never timed out would fail the wait above instead.
        let took = silent.elapsed();
        eprintln!("silent channel taken down after {took:?} (interval 100 ms + timeout 300 ms)");
        assert!(took < Duration::from_secs(2));

        // 3. A closed socket is down too, and reconnects.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(hello(8)).await.unwrap();
        until(&cache, "up a third time", |c| c.is_up(&scope)).await;
        drop(ws);
        until(&cache, "down when closed", |c| !c.is_up(&scope)).await;

        // 4. Released while reconnecting: its hello changes nothing and the
        // task ends by itself.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        cache.lock().unwrap().clear();
        ws.send(hello(8)).await.unwrap();
        timeout(Duration::from_secs(5), client)
            .await
            .expect("the task of a released scope ends")
            .unwrap();
        assert_eq!(cache.lock().unwrap().stats().watched, 0);
        assert!(!cache.lock().unwrap().is_up(&scope));
    }

    #[test]
    fn urls() {
        let base = Url::parse("https://w.example.dev/").unwrap();
        assert_eq!(
            watch_url(&base, &Some("a b/c".into())).as_str(),
            "wss://w.example.dev/v1/watch?scope=a+b%2Fc"
        );
        let base = Url::parse("http://127.0.0.1:8787").unwrap();
        assert_eq!(
            watch_url(&base, &None).as_str(),
            "ws://127.0.0.1:8787/v1/watch"
        );
    }
}
