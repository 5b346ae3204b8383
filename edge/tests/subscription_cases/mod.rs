//! Subscriptions: namespace subscriptions routed upstream (never back to
//! the caller or the source, not at all for an internal session), the relays
//! that want a namespace or a track, handles that unsubscribe when the last
//! is dropped.

use super::*;

pub(crate) async fn subscribe_namespace_excludes_caller_and_source(
    env: &Env,
) -> anyhow::Result<()> {
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

pub(crate) async fn namespace_subscribers(env: &Env) -> anyhow::Result<()> {
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

pub(crate) async fn track_subscriptions(env: &Env) -> anyhow::Result<()> {
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
