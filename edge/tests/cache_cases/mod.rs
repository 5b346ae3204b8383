//! Lookup-cache cases: answers served from memory, kept exact by the
//! Worker's watch channel (schema/moqworker/v1/watch.proto).

use super::*;

fn same_url(url: &Url, relay: &Relay) -> bool {
    url.host_str() == relay.url.host_str() && url.port() == relay.url.port()
}

/// Open `relay`'s watch channel for `scope` (the first cacheable lookup in
/// it does) and wait until it said hello.
pub(crate) async fn watched(env: &Env, relay: &Relay, scope: Option<&str>) -> anyhow::Result<()> {
    within(Duration::from_secs(15), "watch channel up", || async {
        let _ = relay.coord.lookup(scope, &env.ns("watch-probe")).await;
        ensure!(relay.coord.cache_is_up(scope), "channel not up");
        Ok(())
    })
    .await
}

/// `relay` answers `ns` with `expect`'s URL and served it from its cache.
async fn cached_answer(
    relay: &Relay,
    scope: Option<&str>,
    ns: &TrackNamespace,
    expect: &Relay,
) -> anyhow::Result<()> {
    for _ in 0..2 {
        let (origin, _) = relay.coord.lookup_track(scope, ns, "video").await?;
        ensure!(same_url(&origin.url(), expect), "answered {}", origin.url());
    }
    let hits = relay.coord.cache_stats().hits;
    let (origin, _) = relay.coord.lookup_track(scope, ns, "video").await?;
    ensure!(same_url(&origin.url(), expect), "answered {}", origin.url());
    ensure!(
        relay.coord.cache_stats().hits > hits,
        "not served from cache"
    );
    Ok(())
}

/// Repeated lookups, NOT_FOUND and scope config are served from memory;
/// identical concurrent misses make one Worker call.
pub(crate) async fn cache_serves_repeats(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let b = env.relay("b").await?;
    let scope = env.scope("hits");
    let ns = env.ns("hits/live");
    let _reg = a
        .coord
        .register_namespace(Some(&scope), &ns, &CoordinatorContext::public())
        .await?;
    watched(env, &b, Some(&scope)).await?;
    cached_answer(&b, Some(&scope), &ns, &a).await?;

    let missing = env.ns("hits/nobody");
    assert_not_found(&b, Some(&scope), &missing).await?;
    let hits = b.coord.cache_stats().hits;
    assert_not_found(&b, Some(&scope), &missing).await?;
    ensure!(
        b.coord.cache_stats().hits == hits + 1,
        "NOT_FOUND not cached"
    );

    b.coord.get_scope_config(Some(&scope)).await?;
    let hits = b.coord.cache_stats().hits;
    b.coord.get_scope_config(Some(&scope)).await?;
    ensure!(b.coord.cache_stats().hits == hits + 1, "config not cached");

    // Fifty viewers of one uncached track at once: one Worker call.
    let flights = b.coord.cache_stats().flights;
    let joins = (0..50).map(|_| b.coord.lookup_track(Some(&scope), &ns, "audio"));
    for answer in futures::future::join_all(joins).await {
        let (origin, _) = answer?;
        ensure!(same_url(&origin.url(), &a));
    }
    let started = b.coord.cache_stats().flights - flights;
    ensure!(
        started == 1,
        "{started} Worker calls for 50 identical misses"
    );
    Ok(())
}

/// A namespace moves between relays: once the push about the move reached
/// B, B never answers the old relay.
pub(crate) async fn moved_namespace_is_never_stale(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let b = env.relay("b").await?;
    let c = env.relay("c").await?;
    let scope = env.scope("move");
    let ns = env.ns("move/live");
    watched(env, &b, Some(&scope)).await?;
    let mut reg = Some(
        a.coord
            .register_namespace(Some(&scope), &ns, &CoordinatorContext::public())
            .await?,
    );
    let (mut from, mut to) = (&a, &c);
    cached_answer(&b, Some(&scope), &ns, from).await?;
    for _ in 0..4 {
        let events = b.coord.cache_stats().events;
        from.coord.unregister_namespace(Some(&scope), &ns).await?;
        drop(reg.take());
        reg = Some(
            to.coord
                .register_namespace(Some(&scope), &ns, &CoordinatorContext::public())
                .await?,
        );
        // Both changes were pushed: from now on only `to` is right.
        within(Duration::from_secs(5), "both pushes arrived", || async {
            ensure!(b.coord.cache_stats().events >= events + 2);
            Ok(())
        })
        .await?;
        ensure!(b.coord.cache_is_up(Some(&scope)), "channel went down");
        cached_answer(&b, Some(&scope), &ns, to).await?;
        std::mem::swap(&mut from, &mut to);
    }
    Ok(())
}

/// The channel is cut: the cache stops answering at once, changes made
/// meanwhile are not missed, and it resyncs when the Worker is back.
pub(crate) async fn cut_channel_disables_cache_and_resyncs(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let c = env.relay("c").await?;
    let (b, gate) = env.gated_relay("b").await?;
    let scope = env.scope("cut");
    let ns = env.ns("cut/live");
    let _a_reg = a
        .coord
        .register_namespace(Some(&scope), &ns, &CoordinatorContext::public())
        .await?;
    watched(env, &b, Some(&scope)).await?;
    cached_answer(&b, Some(&scope), &ns, &a).await?;

    gate.cut();
    within(
        Duration::from_secs(5),
        "cache off after the cut",
        || async {
            ensure!(!b.coord.cache_is_up(Some(&scope)));
            Ok(())
        },
    )
    .await?;
    ensure!(
        b.coord.cache_stats().entries == 0,
        "entries kept while down"
    );
    // Missed by B: A leaves, C takes the namespace.
    a.coord.unregister_namespace(Some(&scope), &ns).await?;
    drop(_a_reg);
    let _c_reg = c
        .coord
        .register_namespace(Some(&scope), &ns, &CoordinatorContext::public())
        .await?;
    gate.restore();

    // Every answer from now on is C's, first by RPC, then from the cache.
    within(Duration::from_secs(15), "resynced", || async {
        let (origin, _) = b.coord.lookup_track(Some(&scope), &ns, "video").await?;
        ensure!(same_url(&origin.url(), &c), "stale answer {}", origin.url());
        ensure!(b.coord.cache_is_up(Some(&scope)), "not up yet");
        Ok(())
    })
    .await?;
    cached_answer(&b, Some(&scope), &ns, &c).await
}

/// After this relay's own register or unregister returns, its next lookup
/// reflects it, even if it had the opposite answer cached. B's watch channel
/// runs through a gate the test pauses, so no push can help: only B's own
/// bookkeeping can.
pub(crate) async fn read_your_writes(env: &Env) -> anyhow::Result<()> {
    let gate = Gate::new(&env.worker.url).await?;
    let b = env
        .relay_with("b", &env.worker.url, |config| {
            config.cache.watch_url = Some(gate.url.clone());
            // Held pongs must not take the channel down during the test.
            config.cache.watch.ping_timeout = Duration::from_secs(60);
        })
        .await?;
    let scope = env.scope("ryw");
    watched(env, &b, Some(&scope)).await?;
    gate.pause();
    for round in 0..3 {
        let ns = env.ns(&format!("ryw/{round}"));
        assert_not_found(&b, Some(&scope), &ns).await?;
        let hits = b.coord.cache_stats().hits;
        assert_not_found(&b, Some(&scope), &ns).await?;
        ensure!(b.coord.cache_stats().hits > hits, "NOT_FOUND not cached");
        let reg = b
            .coord
            .register_namespace(Some(&scope), &ns, &CoordinatorContext::public())
            .await?;
        let (origin, _) = b.coord.lookup(Some(&scope), &ns).await?;
        ensure!(same_url(&origin.url(), &b), "own registration not seen");
        let (origin, _) = b.coord.lookup(Some(&scope), &ns).await?;
        ensure!(same_url(&origin.url(), &b));
        b.coord.unregister_namespace(Some(&scope), &ns).await?;
        assert_not_found(&b, Some(&scope), &ns)
            .await
            .context("own unregistration not seen")?;
        drop(reg);
    }
    ensure!(
        b.coord.cache_is_up(Some(&scope)),
        "the channel went down, so the cache was not tested"
    );
    gate.resume();
    Ok(())
}

/// A connection path moved to another scope is never resolved to the old
/// one once the push arrived, however the relay spells the path.
pub(crate) async fn moved_path_is_never_stale(env: &Env) -> anyhow::Result<()> {
    let b = env.relay("b").await?;
    let (one, two) = (env.scope("path-1"), env.scope("path-2"));
    let path = format!("/{}/moving", env.run);
    env.admin
        .put_path(&path, &one, proto::Permissions::ReadWrite)
        .await?;
    // The answer names scope one; its channel opens, then answers are kept.
    within(Duration::from_secs(15), "path answer cached", || async {
        let hits = b.coord.cache_stats().hits;
        let info = b
            .coord
            .resolve_scope(Some(&path))
            .await?
            .context("scoped")?;
        ensure!(info.scope_id == one);
        ensure!(b.coord.cache_stats().hits > hits, "not from the cache yet");
        Ok(())
    })
    .await?;
    let with_slash = format!("{path}/");
    let hits = b.coord.cache_stats().hits;
    b.coord.resolve_scope(Some(&with_slash)).await?;
    ensure!(
        b.coord.cache_stats().hits > hits,
        "trailing slash is another key"
    );

    let events = b.coord.cache_stats().events;
    env.admin
        .put_path(&path, &two, proto::Permissions::ReadOnly)
        .await?;
    within(
        Duration::from_secs(5),
        "the path's push arrived",
        || async {
            ensure!(b.coord.cache_stats().events > events);
            Ok(())
        },
    )
    .await?;
    for spelling in [&path, &with_slash] {
        let info = b
            .coord
            .resolve_scope(Some(spelling))
            .await?
            .context("scoped")?;
        ensure!(
            info.scope_id == two && info.permissions == ScopePermissions::ReadOnly,
            "stale path answer {} for {spelling}",
            info.scope_id
        );
    }
    Ok(())
}

/// A scope nobody reads releases its watch channel after `watch_idle` (the
/// Worker sees the socket close), and its next read reopens it.
pub(crate) async fn idle_scope_closes_its_channel_and_reopens(env: &Env) -> anyhow::Result<()> {
    let scope = env.scope("idle");
    // DescribeScope reports watchers of a scope that has state.
    env.admin
        .put_scope_config(&scope, proto::ScopeConfig::default())
        .await?;
    let b = env
        .relay_with("b", &env.worker.url, |config| {
            config.cache.watch_idle = Duration::from_millis(500);
        })
        .await?;
    for round in 0..2 {
        watched(env, &b, Some(&scope)).await?;
        eventually("the Worker sees the watch socket", || async {
            // Reading keeps it from going idle meanwhile.
            let _ = b.coord.lookup(Some(&scope), &env.ns("watch-probe")).await;
            let n = env.admin.watchers(&scope).await?;
            ensure!(n == 1, "{n} watchers");
            Ok(())
        })
        .await
        .with_context(|| format!("round {round}"))?;
        // Nobody reads the scope now.
        eventually("the idle scope's socket closed", || async {
            ensure!(b.coord.cache_stats().watched == 0, "still watched");
            let n = env.admin.watchers(&scope).await?;
            ensure!(n == 0, "{n} watchers");
            Ok(())
        })
        .await
        .with_context(|| format!("round {round}"))?;
        ensure!(!b.coord.cache_is_up(Some(&scope)));
        ensure!(b.coord.cache_stats().released == round + 1);
        // The next read goes to the Worker (nothing is kept) and reopens it.
        let hits = b.coord.cache_stats().hits;
        assert_not_found(&b, Some(&scope), &env.ns("idle/nobody")).await?;
        ensure!(b.coord.cache_stats().hits == hits, "answered from memory");
    }
    Ok(())
}
