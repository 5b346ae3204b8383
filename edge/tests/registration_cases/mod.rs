//! Registrations: namespaces and tracks a relay publishes, found by the other
//! relays' lookups (longest prefix, exact tracks, scopes kept apart); one
//! relay per namespace; handles that unregister when dropped; explicit
//! unregisters that share the handles' reference count.

use super::*;

pub(crate) async fn register_and_lookup(env: &Env) -> anyhow::Result<()> {
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

pub(crate) async fn second_relay_gets_already_exists(env: &Env) -> anyhow::Result<()> {
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

pub(crate) async fn dropping_registration_unregisters(env: &Env) -> anyhow::Result<()> {
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

pub(crate) async fn explicit_unregister_namespace(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let ns = env.ns("explicit");
    let _reg = a
        .coord
        .register_namespace(None, &ns, &CoordinatorContext::public())
        .await?;
    a.coord.unregister_namespace(None, &ns).await?;
    assert_not_found(&a, None, &ns).await
}

pub(crate) async fn explicit_unregister_shares_the_refcount(env: &Env) -> anyhow::Result<()> {
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

pub(crate) async fn scopes_are_isolated(env: &Env) -> anyhow::Result<()> {
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

pub(crate) async fn tracks(env: &Env) -> anyhow::Result<()> {
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
