//! WorkerCoordinator against a real local moq-worker (`wrangler dev`).
//!
//! One Worker serves every case, so this file has its own runner
//! (harness = false): it starts the Worker, runs the cases in order, and
//! always stops the Worker's process group, even when a case fails.
//! `cargo test --test worker -- <filter>` runs the cases whose name contains
//! <filter>. Set MOQ_WORKER_URL to use a Worker that is already running.

mod auth_cases;
mod cache_cases;
mod common;

use auth_cases::{
    issued_tokens_pass_the_relays_verifier, removed_keys_and_expired_tokens_are_refused,
};
use cache_cases::{
    cache_serves_repeats, cut_channel_disables_cache_and_resyncs,
    idle_scope_closes_its_channel_and_reopens, moved_namespace_is_never_stale,
    moved_path_is_never_stale, read_your_writes,
};

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use anyhow::{ensure, Context};
use futures::FutureExt;
use moq_relay_ietf::{
    Coordinator, CoordinatorContext, CoordinatorError, RelayInfo, ScopePermissions,
};
use moq_transport::coding::{TrackNamespace, TrackNamespacePrefix};
use moq_worker_edge::{moq_relay_ietf, moq_transport};
use moq_worker_edge::{proto, Fatal, WorkerCoordinator, WorkerCoordinatorConfig};
use url::Url;

use common::{Admin, Gate, Worker};

struct Env {
    worker: Worker,
    admin: Admin,
    /// Distinguishes this run's names on a long-lived Worker.
    run: String,
}

/// A relay as the Worker knows it: a token-bound URL and a socket address.
struct Relay {
    coord: WorkerCoordinator,
    url: Url,
    addr: SocketAddr,
    token: String,
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(20000);

impl Env {
    fn ns(&self, path: &str) -> TrackNamespace {
        TrackNamespace::from_utf8_path(&format!("{}/{path}", self.run))
    }

    fn prefix(&self, path: &str) -> TrackNamespacePrefix {
        TrackNamespacePrefix::from_utf8_path(&format!("{}/{path}", self.run))
    }

    fn scope(&self, name: &str) -> String {
        format!("{}-{name}", self.run)
    }

    /// A new relay identity (fresh URL and token) with its own coordinator.
    async fn relay(&self, name: &str) -> anyhow::Result<Relay> {
        self.relay_with(name, &self.worker.url, |_| {}).await
    }

    /// A relay named `name` whose coordinator reaches the Worker at `via`
    /// (the Worker itself, or a [`Gate`]), its config adjusted by `tweak`.
    async fn relay_with(
        &self,
        name: &str,
        via: &Url,
        tweak: impl FnOnce(&mut WorkerCoordinatorConfig),
    ) -> anyhow::Result<Relay> {
        let port = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let url = Url::parse(&format!("https://{name}-{}.relay.test:{port}", self.run))?;
        let token = self.admin.relay_token(url.as_str()).await?;
        let mut config = WorkerCoordinatorConfig::new(via.clone(), &token);
        config.addrs = vec![addr];
        tweak(&mut config);
        Ok(Relay {
            coord: WorkerCoordinator::connect(config).await?,
            url,
            addr,
            token,
        })
    }

    async fn coordinator(
        &self,
        token: &str,
        addr: SocketAddr,
    ) -> anyhow::Result<WorkerCoordinator> {
        self.coordinator_via(&self.worker.url, token, addr).await
    }

    /// A relay that reaches the Worker only through a gate the test can cut.
    async fn gated_relay(&self, name: &str) -> anyhow::Result<(Relay, Gate)> {
        let gate = Gate::new(&self.worker.url).await?;
        let relay = self.relay_with(name, &gate.url, |_| {}).await?;
        Ok((relay, gate))
    }

    async fn coordinator_via(
        &self,
        url: &Url,
        token: &str,
        addr: SocketAddr,
    ) -> anyhow::Result<WorkerCoordinator> {
        let mut config = WorkerCoordinatorConfig::new(url.clone(), token);
        config.addrs = vec![addr];
        WorkerCoordinator::connect(config).await
    }
}

fn same_relay(info: &RelayInfo, relay: &Relay) -> bool {
    info.url.host_str() == relay.url.host_str() && info.url.port() == relay.url.port()
}

/// Poll `check` until it returns Ok, for effects of spawned (RAII) cleanup.
async fn eventually<F, Fut>(what: &str, check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    within(Duration::from_secs(10), what, check).await
}

/// [`eventually`] with a time limit of its own.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match check().await {
            Ok(()) => return Ok(()),
            Err(err) if tokio::time::Instant::now() >= deadline => {
                return Err(err.context(format!("{what}: still failing after {limit:?}")))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn assert_not_found(
    relay: &Relay,
    scope: Option<&str>,
    ns: &TrackNamespace,
) -> anyhow::Result<()> {
    match relay.coord.lookup(scope, ns).await {
        Err(CoordinatorError::NamespaceNotFound) => Ok(()),
        Ok((origin, _)) => anyhow::bail!("expected NOT_FOUND for {ns}, found {}", origin.url()),
        Err(err) => anyhow::bail!("expected NOT_FOUND for {ns}, got {err}"),
    }
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

async fn bad_token_is_refused(env: &Env) -> anyhow::Result<()> {
    let err = env
        .coordinator("not-a-token", "127.0.0.1:1".parse()?)
        .await
        .err()
        .context("a forged token must not connect")?;
    let text = format!("{err:#}");
    ensure!(
        text.contains("unauthenticated") || text.contains("permission_denied"),
        "unexpected error: {text}"
    );
    // The binary exits with the token's own code, not a generic failure.
    let fatal = err
        .downcast_ref::<Fatal>()
        .context("not reported as fatal")?;
    ensure!(matches!(fatal, Fatal::TokenRejected { .. }) && fatal.exit_code() == 3);
    Ok(())
}

async fn register_and_lookup(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let b = env.relay("b").await?;
    let ns = env.ns("live/room");
    let _reg = a
        .coord
        .register_namespace(None, &ns, &CoordinatorContext::public())
        .await?;

    // Another relay finds A, with its socket address.
    let (origin, client) = b.coord.lookup(None, &ns).await?;
    ensure!(client.is_none());
    ensure!(origin.namespace() == &ns, "matched {}", origin.namespace());
    ensure!(
        origin.url().host_str() == a.url.host_str(),
        "origin {}",
        origin.url()
    );
    ensure!(origin.addr() == Some(a.addr), "addr {:?}", origin.addr());

    // Longest registered prefix answers for a deeper namespace.
    let (origin, _) = b.coord.lookup(None, &env.ns("live/room/cam-1")).await?;
    ensure!(
        origin.namespace() == &ns,
        "prefix match gave {}",
        origin.namespace()
    );

    // lookup_track without a track registration falls back to the namespace.
    let (origin, _) = b.coord.lookup_track(None, &ns, "video").await?;
    ensure!(origin.url().host_str() == a.url.host_str());

    assert_not_found(&b, None, &env.ns("live/other")).await
}

async fn second_relay_gets_already_exists(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let b = env.relay("b").await?;
    let ns = env.ns("contested");
    let _reg = a
        .coord
        .register_namespace(None, &ns, &CoordinatorContext::public())
        .await?;
    match b
        .coord
        .register_namespace(None, &ns, &CoordinatorContext::public())
        .await
    {
        Err(CoordinatorError::NamespaceAlreadyRegistered) => {}
        Ok(_) => anyhow::bail!("B registered a namespace A holds"),
        Err(err) => anyhow::bail!("expected ALREADY_EXISTS, got {err}"),
    }
    // A refused registration leaves nothing behind locally.
    ensure!(
        b.coord.active_registrations() == 0,
        "{} registrations",
        b.coord.active_registrations()
    );
    // The same relay registering again is a success (idempotent retry).
    let _again = a
        .coord
        .register_namespace(None, &ns, &CoordinatorContext::public())
        .await?;
    Ok(())
}

async fn dropping_registration_unregisters(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let b = env.relay("b").await?;
    let ns = env.ns("ephemeral");
    let reg = a
        .coord
        .register_namespace(None, &ns, &CoordinatorContext::public())
        .await?;
    b.coord.lookup(None, &ns).await?;
    drop(reg);
    eventually("drop unregisters", || assert_not_found(&b, None, &ns)).await?;
    // And the local bookkeeping is gone too.
    eventually("registration forgotten", || async {
        ensure!(
            a.coord.active_registrations() == 0,
            "{} registrations left",
            a.coord.active_registrations()
        );
        Ok(())
    })
    .await
}

async fn explicit_unregister_namespace(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let ns = env.ns("explicit");
    let _reg = a
        .coord
        .register_namespace(None, &ns, &CoordinatorContext::public())
        .await?;
    a.coord.unregister_namespace(None, &ns).await?;
    assert_not_found(&a, None, &ns).await
}

async fn explicit_unregister_shares_the_refcount(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let b = env.relay("b").await?;
    let ns = env.ns("shared");
    // Two sessions on A publish the same namespace.
    let first = a
        .coord
        .register_namespace(None, &ns, &CoordinatorContext::public())
        .await?;
    let second = a
        .coord
        .register_namespace(None, &ns, &CoordinatorContext::public())
        .await?;
    // One of them sends PUBLISH_NAMESPACE_DONE: the other still publishes.
    a.coord.unregister_namespace(None, &ns).await?;
    b.coord
        .lookup(None, &ns)
        .await
        .context("one explicit unregister removed a namespace another session holds")?;
    // Its handle goes away later; that must not count a second time.
    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.coord
        .lookup(None, &ns)
        .await
        .context("an explicitly released handle released again on drop")?;
    // The last holder unregisters: now it is gone.
    a.coord.unregister_namespace(None, &ns).await?;
    assert_not_found(&b, None, &ns).await?;
    drop(second);
    eventually("registration forgotten", || async {
        ensure!(
            a.coord.active_registrations() == 0,
            "{} registrations",
            a.coord.active_registrations()
        );
        Ok(())
    })
    .await?;

    // The same path serves subscriptions.
    let prefix = env.prefix("shared-sub");
    let watched = env.ns("shared-sub/x");
    let _s1 = b
        .coord
        .subscribe_namespace(None, &prefix, &CoordinatorContext::public())
        .await?;
    let _s2 = b
        .coord
        .subscribe_namespace(None, &prefix, &CoordinatorContext::public())
        .await?;
    b.coord.unsubscribe_namespace(None, &prefix).await?;
    let found = a
        .coord
        .lookup_namespace_subscribers(None, &watched, &CoordinatorContext::public())
        .await?;
    ensure!(
        found.len() == 1,
        "interest lost with a holder left: {found:?}"
    );
    b.coord.unsubscribe_namespace(None, &prefix).await?;
    let found = a
        .coord
        .lookup_namespace_subscribers(None, &watched, &CoordinatorContext::public())
        .await?;
    ensure!(found.is_empty(), "still {found:?}");
    Ok(())
}

async fn scopes_are_isolated(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let (s1, s2) = (env.scope("iso-1"), env.scope("iso-2"));
    let ns = env.ns("scoped");
    let _reg = a
        .coord
        .register_namespace(Some(&s1), &ns, &CoordinatorContext::public())
        .await?;
    a.coord.lookup(Some(&s1), &ns).await?;
    assert_not_found(&a, Some(&s2), &ns).await?;
    assert_not_found(&a, None, &ns).await
}

async fn tracks(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let b = env.relay("b").await?;
    let ns = env.ns("match-42");
    let hd = a.coord.register_track(None, &ns, "video-1080p").await?;
    let _sd = a.coord.register_track(None, &ns, "video-480p").await?;

    let mut names: Vec<String> = b
        .coord
        .list_tracks(None, &ns)
        .await?
        .into_iter()
        .map(|t| {
            assert_eq!(t.namespace, ns);
            t.name
        })
        .collect();
    names.sort();
    ensure!(names == ["video-1080p", "video-480p"], "tracks {names:?}");

    // An exact track registration routes even with no namespace registration.
    let (origin, _) = b.coord.lookup_track(None, &ns, "video-1080p").await?;
    ensure!(origin.url().host_str() == a.url.host_str());
    ensure!(matches!(
        b.coord.lookup_track(None, &ns, "audio").await,
        Err(CoordinatorError::NamespaceNotFound)
    ));

    drop(hd);
    eventually("track drop unregisters", || async {
        let left = b.coord.list_tracks(None, &ns).await?;
        ensure!(
            left.len() == 1 && left[0].name == "video-480p",
            "left {left:?}"
        );
        Ok(())
    })
    .await?;

    a.coord.unregister_track(None, &ns, "video-480p").await?;
    ensure!(b.coord.list_tracks(None, &ns).await?.is_empty());
    Ok(())
}

async fn subscribe_namespace_excludes_caller_and_source(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let b = env.relay("b").await?;
    let c = env.relay("c").await?;
    let _ra = a
        .coord
        .register_namespace(None, &env.ns("room/alice"), &CoordinatorContext::public())
        .await?;
    let _rc = c
        .coord
        .register_namespace(None, &env.ns("room/carol"), &CoordinatorContext::public())
        .await?;
    let prefix = env.prefix("room");

    // B (hosting nothing) is told to pull from A and C.
    let sub = b
        .coord
        .subscribe_namespace(None, &prefix, &CoordinatorContext::public())
        .await?;
    ensure!(
        sub.upstream_relays.len() == 2,
        "upstreams {:?}",
        sub.upstream_relays
    );
    ensure!(sub.upstream_relays.iter().any(|r| same_relay(r, &a)));
    ensure!(sub.upstream_relays.iter().any(|r| same_relay(r, &c)));
    ensure!(sub.upstream_relays.iter().all(|r| r.addr.is_some()));

    // A never pulls from itself.
    let sub_a = a
        .coord
        .subscribe_namespace(None, &prefix, &CoordinatorContext::public())
        .await?;
    ensure!(
        sub_a.upstream_relays.len() == 1 && same_relay(&sub_a.upstream_relays[0], &c),
        "A's upstreams {:?}",
        sub_a.upstream_relays
    );

    // The source peer is excluded: by URL ...
    let mut from_c = CoordinatorContext::public();
    from_c.source = Some(RelayInfo::new(c.url.clone()));
    let sub_b2 = b.coord.subscribe_namespace(None, &prefix, &from_c).await?;
    ensure!(
        sub_b2.upstream_relays.len() == 1 && same_relay(&sub_b2.upstream_relays[0], &a),
        "excluding C by URL: {:?}",
        sub_b2.upstream_relays
    );
    // ... and by socket address, as the relay reports inbound peers.
    let mut from_c_addr = CoordinatorContext::public();
    from_c_addr.source = Some(RelayInfo::from_socket_addr(c.addr));
    let sub_b3 = b
        .coord
        .subscribe_namespace(None, &prefix, &from_c_addr)
        .await?;
    ensure!(
        sub_b3.upstream_relays.len() == 1 && same_relay(&sub_b3.upstream_relays[0], &a),
        "excluding C by address: {:?}",
        sub_b3.upstream_relays
    );

    // Internal sessions never fan out upstream.
    let internal = CoordinatorContext::internal(Some(RelayInfo::from_socket_addr(c.addr)));
    let sub_internal = b
        .coord
        .subscribe_namespace(None, &prefix, &internal)
        .await?;
    ensure!(
        sub_internal.upstream_relays.is_empty(),
        "{:?}",
        sub_internal.upstream_relays
    );
    Ok(())
}

async fn namespace_subscribers(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let b = env.relay("b").await?;
    let prefix = env.prefix("sports");
    let ns = env.ns("sports/match-1");

    let sub1 = b
        .coord
        .subscribe_namespace(None, &prefix, &CoordinatorContext::public())
        .await?;
    // A second local subscriber to the same prefix on the same relay.
    let sub2 = b
        .coord
        .subscribe_namespace(None, &prefix, &CoordinatorContext::public())
        .await?;
    let _own = a
        .coord
        .subscribe_namespace(None, &prefix, &CoordinatorContext::public())
        .await?;

    // A publishing under the prefix must push to B, not to itself.
    let found = a
        .coord
        .lookup_namespace_subscribers(None, &ns, &CoordinatorContext::public())
        .await?;
    ensure!(
        found.len() == 1 && same_relay(&found[0], &b),
        "subscribers {found:?}"
    );
    ensure!(found[0].addr == Some(b.addr), "addr {:?}", found[0].addr);

    // Never echoed back to the source, by URL or by address.
    let internal_from_b = CoordinatorContext::internal(Some(RelayInfo::from_socket_addr(b.addr)));
    ensure!(a
        .coord
        .lookup_namespace_subscribers(None, &ns, &internal_from_b)
        .await?
        .is_empty());
    let by_url = CoordinatorContext::internal(Some(RelayInfo::new(b.url.clone())));
    ensure!(a
        .coord
        .lookup_namespace_subscribers(None, &ns, &by_url)
        .await?
        .is_empty());

    // A namespace outside the prefix has no subscribers.
    ensure!(a
        .coord
        .lookup_namespace_subscribers(None, &env.ns("news/x"), &CoordinatorContext::public())
        .await?
        .is_empty());

    // Dropping one of B's two handles keeps B's interest ...
    drop(sub1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let found = a
        .coord
        .lookup_namespace_subscribers(None, &ns, &CoordinatorContext::public())
        .await?;
    ensure!(
        found.len() == 1,
        "interest lost with a handle still held: {found:?}"
    );

    // ... dropping the last removes it.
    drop(sub2);
    eventually("last handle unsubscribes", || async {
        let found = a
            .coord
            .lookup_namespace_subscribers(None, &ns, &CoordinatorContext::public())
            .await?;
        ensure!(found.is_empty(), "still {found:?}");
        Ok(())
    })
    .await?;

    // Explicit unsubscribe.
    let _sub3 = b
        .coord
        .subscribe_namespace(None, &prefix, &CoordinatorContext::public())
        .await?;
    b.coord.unsubscribe_namespace(None, &prefix).await?;
    ensure!(a
        .coord
        .lookup_namespace_subscribers(None, &ns, &CoordinatorContext::public())
        .await?
        .is_empty());
    Ok(())
}

async fn track_subscriptions(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let b = env.relay("b").await?;
    let ns = env.ns("pregame");
    let sub = b.coord.subscribe_track(None, &ns, "video-720p").await?;
    let waiting = a
        .coord
        .lookup_track_subscribers(None, &ns, "video-720p")
        .await?;
    ensure!(
        waiting.len() == 1 && same_relay(&waiting[0], &b),
        "waiting {waiting:?}"
    );
    ensure!(a
        .coord
        .lookup_track_subscribers(None, &ns, "audio-es")
        .await?
        .is_empty());

    drop(sub);
    eventually("track subscription drop", || async {
        let waiting = a
            .coord
            .lookup_track_subscribers(None, &ns, "video-720p")
            .await?;
        ensure!(waiting.is_empty(), "still {waiting:?}");
        Ok(())
    })
    .await?;

    let _sub = b.coord.subscribe_track(None, &ns, "video-720p").await?;
    b.coord.unsubscribe_track(None, &ns, "video-720p").await?;
    ensure!(a
        .coord
        .lookup_track_subscribers(None, &ns, "video-720p")
        .await?
        .is_empty());
    Ok(())
}

async fn resolve_scope(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let scope = env.scope("paths");
    let live = format!("/{}/live", env.run);
    let watch = format!("/{}/watch", env.run);
    env.admin
        .put_path(&live, &scope, proto::Permissions::ReadWrite)
        .await?;
    env.admin
        .put_path(&watch, &scope, proto::Permissions::ReadOnly)
        .await?;

    let rw = a
        .coord
        .resolve_scope(Some(&live))
        .await?
        .context("scoped")?;
    ensure!(rw.scope_id == scope && rw.permissions == ScopePermissions::ReadWrite);
    let ro = a
        .coord
        .resolve_scope(Some(&watch))
        .await?
        .context("scoped")?;
    ensure!(ro.scope_id == scope && ro.permissions == ScopePermissions::ReadOnly);

    // No path: unscoped (the local Worker allows unscoped sessions).
    ensure!(a.coord.resolve_scope(None).await?.is_none());

    // Unknown and invalid paths are errors, which make the relay refuse the session.
    let unknown = format!("/{}/nobody-mapped-this", env.run);
    ensure!(a.coord.resolve_scope(Some(&unknown)).await.is_err());
    ensure!(a.coord.resolve_scope(Some("/a/../b")).await.is_err());
    Ok(())
}

async fn scope_config(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let scope = env.scope("cfg");
    env.admin
        .put_scope_config(
            &scope,
            proto::ScopeConfig {
                origin_fallback: Some("https://origin.example:4443".into()),
                lingering_subscribe: true,
                rendezvous_timeout_ms: Some(5000),
                auth: None,
            },
        )
        .await?;
    let config = a.coord.get_scope_config(Some(&scope)).await?;
    ensure!(config.lingering_subscribe);
    ensure!(
        config.origin_fallback.as_ref().map(Url::as_str) == Some("https://origin.example:4443/"),
        "fallback {:?}",
        config.origin_fallback
    );
    ensure!(config.auth.is_none());

    let defaults = a.coord.get_scope_config(Some(&env.scope("unset"))).await?;
    ensure!(!defaults.lingering_subscribe && defaults.origin_fallback.is_none());
    Ok(())
}

async fn shutdown_drops_everything(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let b = env.relay("b").await?;
    let ns = env.ns("leaving");
    let _reg = a
        .coord
        .register_namespace(None, &ns, &CoordinatorContext::public())
        .await?;
    let _track = a.coord.register_track(None, &ns, "t").await?;
    a.coord.shutdown().await?;
    assert_not_found(&b, None, &ns).await?;
    ensure!(b.coord.list_tracks(None, &ns).await?.is_empty());
    Ok(())
}

async fn new_epoch_discards_old_state(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let b = env.relay("b").await?;
    let ns = env.ns("before-restart");
    let reg = a
        .coord
        .register_namespace(None, &ns, &CoordinatorContext::public())
        .await?;
    b.coord.lookup(None, &ns).await?;
    // The same relay boots again (same token, new epoch).
    let restarted = env.coordinator(&a.token, a.addr).await?;
    ensure!(restarted.epoch() != a.coord.epoch());
    eventually("old epoch purged", || assert_not_found(&b, None, &ns)).await?;
    std::mem::forget(reg); // its cleanup would race the point being made
    Ok(())
}

async fn heartbeat_keeps_the_lease(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let gone = env.relay("gone").await?;
    let ttl = a.coord.lease_ttl();
    ensure!(
        ttl > Duration::ZERO && ttl <= Duration::from_secs(30),
        "lease ttl {ttl:?}"
    );
    let kept = env.ns("kept");
    let lapsed = env.ns("lapsed");
    let _kept = a
        .coord
        .register_namespace(None, &kept, &CoordinatorContext::public())
        .await?;
    let lapsed_reg = gone
        .coord
        .register_namespace(None, &lapsed, &CoordinatorContext::public())
        .await?;
    // Stop `gone`'s heartbeat without Shutdown, as if the process hung; its
    // registration handle stays alive so nothing unregisters explicitly.
    let Relay { coord, .. } = gone;
    drop(coord);

    tokio::time::sleep(ttl + ttl / 2).await;
    a.coord
        .lookup(None, &kept)
        .await
        .context("heartbeating relay lost its namespace")?;
    eventually("lapsed lease purged", || {
        assert_not_found(&a, None, &lapsed)
    })
    .await?;
    drop(lapsed_reg);
    Ok(())
}

/// What B sees of everything A holds: its namespace (scoped), its track,
/// its namespace subscription and its track subscription.
async fn sees_all_of(
    env: &Env,
    b: &Relay,
    a: &Relay,
    scope: &str,
    ns: &TrackNamespace,
) -> anyhow::Result<()> {
    let (origin, _) = b.coord.lookup(Some(scope), ns).await?;
    ensure!(
        origin.addr() == Some(a.addr),
        "namespace at {:?}",
        origin.addr()
    );
    let tracks = b.coord.list_tracks(None, &env.ns("lapse/tracks")).await?;
    ensure!(
        tracks.len() == 1 && tracks[0].name == "video",
        "tracks {tracks:?}"
    );
    let subs = b
        .coord
        .lookup_namespace_subscribers(None, &env.ns("lapse/sub/x"), &CoordinatorContext::public())
        .await?;
    ensure!(
        subs.len() == 1 && same_relay(&subs[0], a),
        "namespace subscribers {subs:?}"
    );
    let waiting = b
        .coord
        .lookup_track_subscribers(None, &env.ns("lapse/wanted"), "audio")
        .await?;
    ensure!(
        waiting.len() == 1 && same_relay(&waiting[0], a),
        "track subscribers {waiting:?}"
    );
    Ok(())
}

async fn lapse_then_state_lost_reregisters_everything(env: &Env) -> anyhow::Result<()> {
    // A reaches the Worker through a gate the test can cut.
    let (a, gate) = env.gated_relay("lapse").await?;
    let b = env.relay("b").await?;
    let ttl = a.coord.lease_ttl();
    let scope = env.scope("lapse");
    let ns = env.ns("lapse/live");

    let _ns = a
        .coord
        .register_namespace(Some(&scope), &ns, &CoordinatorContext::public())
        .await?;
    let _track = a
        .coord
        .register_track(None, &env.ns("lapse/tracks"), "video")
        .await?;
    let _sub = a
        .coord
        .subscribe_namespace(
            None,
            &env.prefix("lapse/sub"),
            &CoordinatorContext::public(),
        )
        .await?;
    let _wants = a
        .coord
        .subscribe_track(None, &env.ns("lapse/wanted"), "audio")
        .await?;
    sees_all_of(env, &b, &a, &scope, &ns).await?;
    // B caches the route to A: only the purge's push can correct it.
    cache_cases::watched(env, &b, Some(&scope)).await?;
    b.coord.lookup(Some(&scope), &ns).await?;
    let hits = b.coord.cache_stats().hits;
    b.coord.lookup(Some(&scope), &ns).await?;
    ensure!(b.coord.cache_stats().hits > hits, "B's route is not cached");
    let before = a.coord.recoveries().len();

    // The Worker becomes unreachable for A: its lease lapses and is purged.
    gate.cut();
    within(
        ttl * 3 + Duration::from_secs(10),
        "A's lapsed state purged",
        || assert_not_found(&b, Some(&scope), &ns),
    )
    .await?;
    ensure!(
        b.coord.cache_is_up(Some(&scope)),
        "B's channel went down, so the purge was not seen by push"
    );
    ensure!(
        b.coord
            .list_tracks(None, &env.ns("lapse/tracks"))
            .await?
            .is_empty(),
        "purge kept A's track"
    );

    // Reachable again: A recovers on its own, every handle comes back.
    gate.restore();
    within(
        ttl + Duration::from_secs(10),
        "A re-registered everything",
        || sees_all_of(env, &b, &a, &scope, &ns),
    )
    .await?;
    let recoveries = a.coord.recoveries();
    let last = recoveries
        .get(before..)
        .and_then(<[_]>::last)
        .context("no recovery recorded")?;
    ensure!(last.handles == 4 && last.refused == 0, "recovery {last:?}");
    ensure!(
        tokio::time::timeout(Duration::ZERO, a.coord.fatal())
            .await
            .is_err(),
        "an outage is not fatal"
    );
    Ok(())
}

/// The Worker says `state_lost` once; if a beat fails, its reply may have
/// carried it. So once the Worker answers again the relay re-registers
/// whatever that answer says: here a row removed while A could not reach the
/// Worker (its lease still open, so nothing says `state_lost`) comes back.
async fn a_failed_beat_reregisters_on_reconnect(env: &Env) -> anyhow::Result<()> {
    let (a, gate) = env.gated_relay("blip").await?;
    let b = env.relay("b").await?;
    let scope = env.scope("blip");
    let ns = env.ns("blip/live");
    let _ns = a
        .coord
        .register_namespace(Some(&scope), &ns, &CoordinatorContext::public())
        .await?;
    ensure!(b.coord.lookup(Some(&scope), &ns).await.is_ok());

    // A loses the Worker for about one heartbeat interval, well inside its lease.
    gate.cut();
    // Meanwhile its row goes, with no purge: A's own token, straight to the Worker.
    let raw = moq_worker_edge::ConnectClient::new(
        env.worker.url.clone(),
        "moqworker.v1.CoordinatorService",
        vec![("Authorization", format!("Bearer {}", a.token))],
        moq_worker_edge::RetryPolicy::default(),
    )?;
    let fields = ns.fields.iter().map(|f| f.value.clone()).collect();
    raw.call::<_, proto::UnregisterNamespaceResponse>(
        "UnregisterNamespace",
        &proto::UnregisterNamespaceRequest {
            scope: Some(scope.clone()),
            namespace: Some(proto::Namespace { fields }),
        },
        true,
    )
    .await?;
    assert_not_found(&b, Some(&scope), &ns).await?;
    tokio::time::sleep(a.coord.lease_ttl() / 2).await;

    gate.restore();
    within(
        a.coord.lease_ttl() + Duration::from_secs(10),
        "A re-registered after its failed beats",
        || async {
            b.coord.lookup(Some(&scope), &ns).await?;
            Ok(())
        },
    )
    .await
}

async fn retired_epoch_is_fatal(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    // The same relay URL starts again elsewhere: A's epoch is retired.
    let replacement = env.coordinator(&a.token, a.addr).await?;
    let fatal = tokio::time::timeout(a.coord.lease_ttl() * 2, a.coord.fatal())
        .await
        .context("the retired process was not told to stop")?;
    ensure!(matches!(fatal, Fatal::EpochRetired { .. }), "{fatal}");
    ensure!(fatal.exit_code() == 4);
    ensure!(
        fatal.to_string().contains("--public-url"),
        "message says what to do: {fatal}"
    );
    // The replacement keeps working.
    let _reg = replacement
        .register_namespace(None, &env.ns("replaced"), &CoordinatorContext::public())
        .await?;
    ensure!(
        tokio::time::timeout(Duration::from_millis(100), replacement.fatal())
            .await
            .is_err()
    );
    Ok(())
}

async fn retired_relay_process_exits_with_code_4(env: &Env) -> anyhow::Result<()> {
    // The real binary, as an operator runs it.
    let port = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
    let url = format!("https://127.0.0.1:{port}");
    let token = env.admin.relay_token(&url).await?;
    let log = tempfile::NamedTempFile::new()?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_moq-worker-edge"))
        .args(["--bind", &format!("127.0.0.1:{port}"), "--public-url", &url])
        .args([
            "--coordinator-url",
            env.worker.url.as_str(),
            "--tls-self-signed",
        ])
        .env("MOQ_COORDINATOR_TOKEN", &token)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen()?)
        .kill_on_drop(true)
        .spawn()?;
    let logged = |what: &'static str| {
        let path = log.path().to_path_buf();
        move || {
            let path = path.clone();
            async move {
                let text = std::fs::read_to_string(&path)?;
                ensure!(text.contains(what), "no {what:?} in the relay's log yet");
                Ok(())
            }
        }
    };
    within(
        Duration::from_secs(30),
        "relay up",
        logged("relay starting"),
    )
    .await?;

    // Another process takes over the same relay URL with the same token.
    let _replacement = env
        .coordinator(&token, format!("127.0.0.1:{port}").parse()?)
        .await?;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .context("the retired relay kept running")??;
    let text = std::fs::read_to_string(log.path())?;
    ensure!(
        status.code() == Some(4),
        "exit status {status}; log:\n{text}"
    );
    ensure!(
        text.contains("retired this process's epoch"),
        "log does not say why:\n{text}"
    );
    Ok(())
}

async fn peers_arrive_from_the_heartbeat(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let b = env.relay("b").await?;
    let limit = a.coord.lease_ttl() * 2 + Duration::from_secs(5);
    within(limit, "B known to A as a live peer", || async {
        ensure!(
            a.coord.peers().is_live(b.addr),
            "A knows {} peers",
            a.coord.peers().live_count()
        );
        Ok(())
    })
    .await?;
    // ... and tagged internal by A's connection tagger, with no static list.
    let tagger = a.coord.connection_tagger();
    let meta = moq_relay_ietf::ConnectionMeta::new(Some(b.addr), None, None);
    ensure!(tagger.tag(&meta).interface() == moq_relay_ietf::SessionInterface::Internal);
    let stranger = moq_relay_ietf::ConnectionMeta::new(Some("127.0.0.1:9".parse()?), None, None);
    ensure!(tagger.tag(&stranger).interface() == moq_relay_ietf::SessionInterface::Public);
    ensure!(
        !a.coord.peers().is_live(a.addr),
        "a relay is not its own peer"
    );

    // B leaves: it drops out of A's peers.
    b.coord.shutdown().await?;
    within(limit, "B gone from A's peers", || async {
        ensure!(!a.coord.peers().is_live(b.addr));
        Ok(())
    })
    .await
}

async fn relay_link_paths_tag_sessions_internal(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let b = env.relay("b").await?;
    let scope = env.scope("link");
    let ns = env.ns("linked");
    let _reg = a
        .coord
        .register_namespace(Some(&scope), &ns, &CoordinatorContext::public())
        .await?;
    // B is told to dial A at A's relay-link URL for the scope ...
    let (origin, _) = b.coord.lookup(Some(&scope), &ns).await?;
    let path = origin.url().path().to_string();
    ensure!(
        path.starts_with("/_relay/"),
        "scoped answer URL {}",
        origin.url()
    );
    // ... which A resolves to the same scope, as a relay link ...
    let info = a
        .coord
        .resolve_scope(Some(&path))
        .await?
        .context("scoped")?;
    ensure!(info.scope_id == scope && info.permissions == ScopePermissions::ReadWrite);
    // ... and tags internal even from an address it does not know.
    let tagger = a.coord.connection_tagger();
    let nat = "203.0.113.9:50000".parse()?;
    let meta = moq_relay_ietf::ConnectionMeta::new(Some(nat), None, Some(path));
    ensure!(tagger.tag(&meta).interface() == moq_relay_ietf::SessionInterface::Internal);
    // A forged link is refused and tags nothing.
    let forged = format!("{}x", origin.url().path().trim_end_matches('/'));
    ensure!(a.coord.resolve_scope(Some(&forged)).await.is_err());
    let meta = moq_relay_ietf::ConnectionMeta::new(Some(nat), None, Some(forged));
    ensure!(tagger.tag(&meta).interface() == moq_relay_ietf::SessionInterface::Public);
    Ok(())
}

// ---------------------------------------------------------------------------
// Runner
// ---------------------------------------------------------------------------

type Case = for<'a> fn(&'a Env) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), (|env| Box::pin($name(env))) as Case)),*]
    };
}

fn main() -> std::process::ExitCode {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cases = cases![
        bad_token_is_refused,
        register_and_lookup,
        second_relay_gets_already_exists,
        dropping_registration_unregisters,
        explicit_unregister_namespace,
        explicit_unregister_shares_the_refcount,
        scopes_are_isolated,
        tracks,
        subscribe_namespace_excludes_caller_and_source,
        namespace_subscribers,
        track_subscriptions,
        resolve_scope,
        scope_config,
        shutdown_drops_everything,
        new_epoch_discards_old_state,
        heartbeat_keeps_the_lease,
        lapse_then_state_lost_reregisters_everything,
        a_failed_beat_reregisters_on_reconnect,
        retired_epoch_is_fatal,
        retired_relay_process_exits_with_code_4,
        peers_arrive_from_the_heartbeat,
        relay_link_paths_tag_sessions_internal,
        cache_serves_repeats,
        moved_namespace_is_never_stale,
        cut_channel_disables_cache_and_resyncs,
        read_your_writes,
        moved_path_is_never_stale,
        idle_scope_closes_its_channel_and_reopens,
        issued_tokens_pass_the_relays_verifier,
        removed_keys_and_expired_tokens_are_refused,
    ];
    let selected: Vec<_> = cases
        .into_iter()
        .filter(|(name, _)| filter.as_deref().is_none_or(|f| name.contains(f)))
        .collect();
    if selected.is_empty() {
        println!("no cases match");
        return std::process::ExitCode::SUCCESS;
    }

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let failures = runtime.block_on(async {
        let worker = match Worker::start().await {
            Ok(worker) => worker,
            Err(err) => {
                eprintln!("could not start the Worker: {err:#}");
                return usize::MAX;
            }
        };
        let env = Env {
            admin: worker.admin(),
            worker,
            run: format!("t{:08x}", rand::random::<u32>()),
        };
        println!(
            "running {} cases against {}",
            selected.len(),
            env.worker.url
        );
        let mut failures = 0;
        for (name, case) in &selected {
            let outcome = tokio::time::timeout(
                Duration::from_secs(90),
                AssertUnwindSafe(case(&env)).catch_unwind(),
            )
            .await;
            match outcome {
                Ok(Ok(Ok(()))) => println!("test {name} ... ok"),
                Ok(Ok(Err(err))) => {
                    failures += 1;
                    println!("test {name} ... FAILED: {err:#}");
                }
                Ok(Err(_)) => {
                    failures += 1;
                    println!("test {name} ... FAILED (panicked)");
                }
                Err(_) => {
                    failures += 1;
                    println!("test {name} ... FAILED (timed out)");
                }
            }
        }
        failures
        // `env` (and the Worker process group) is dropped here.
    });
    match failures {
        0 => {
            println!("test result: ok. {} passed", selected.len());
            std::process::ExitCode::SUCCESS
        }
        usize::MAX => std::process::ExitCode::FAILURE,
        n => {
            println!("test result: FAILED. {n} of {} failed", selected.len());
            std::process::ExitCode::FAILURE
        }
    }
}
