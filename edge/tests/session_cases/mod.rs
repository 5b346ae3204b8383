//! What a session meets: its connection path resolved to a scope and
//! permissions, the scope's config, and relay sessions tagged internal (live
//! peers from heartbeats, verified relay-link paths).

use super::*;

pub(crate) async fn resolve_scope(env: &Env) -> anyhow::Result<()> {
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

pub(crate) async fn scope_config(env: &Env) -> anyhow::Result<()> {
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

pub(crate) async fn peers_arrive_from_the_heartbeat(env: &Env) -> anyhow::Result<()> {
    // Peers refresh with each HeartbeatRequest on the lease socket (every 30 s
    // by default): sooner here, so the test stays short.
    let quick = |c: &mut moq_worker_edge::WorkerCoordinatorConfig| {
        c.lease_socket_beat = Some(Duration::from_secs(1));
    };
    let a = env.relay_with("a", &env.worker.url, quick).await?;
    let b = env.relay_with("b", &env.worker.url, quick).await?;
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

pub(crate) async fn long_peer_lists_arrive_in_pages_then_deltas(env: &Env) -> anyhow::Result<()> {
    let quick = |c: &mut moq_worker_edge::WorkerCoordinatorConfig| {
        c.lease_socket_beat = Some(Duration::from_secs(1));
    };
    // More relays than one answer lists (the test Worker's PEER_PAGE_SIZE).
    let mut others = Vec::new();
    for i in 0..5 {
        others.push(
            env.relay_with(&format!("p{i}"), &env.worker.url, quick)
                .await?,
        );
    }
    let limit = others[0].coord.lease_ttl() * 2 + Duration::from_secs(5);
    let knows = |a: &Relay, others: &[Relay]| -> anyhow::Result<()> {
        let unknown: Vec<_> = others
            .iter()
            .filter(|o| !a.coord.peers().is_live(o.addr))
            .map(|o| o.url.as_str())
            .collect();
        ensure!(
            unknown.is_empty(),
            "A knows {} peers, not {unknown:?}",
            a.coord.peers().live_count()
        );
        Ok(())
    };
    // A's first answer can hold only the first page: the rest is read with ListPeers.
    let a = env.relay_with("a", &env.worker.url, quick).await?;
    within(limit, "every relay known to A", || async {
        knows(&a, &others)
    })
    .await?;
    let pages = a.coord.peer_pages_read();
    ensure!(
        pages > 0,
        "{} others known without reading a page",
        others.len()
    );

    // One leaves: A drops it, the others stay. A change this small comes as
    // a delta: no more pages.
    let gone = others.remove(0);
    gone.coord.shutdown().await?;
    within(limit, "the relay that left gone from A's peers", || async {
        ensure!(!a.coord.peers().is_live(gone.addr));
        knows(&a, &others)
    })
    .await?;

    // One joins: A gains it, by a delta too.
    others.push(env.relay_with("p5", &env.worker.url, quick).await?);
    within(limit, "the relay that joined known to A", || async {
        knows(&a, &others)
    })
    .await?;
    ensure!(
        a.coord.peer_pages_read() == pages,
        "{} more pages read for a leave and a join",
        a.coord.peer_pages_read() - pages
    );
    ensure!(
        !a.coord.peers().is_live(a.addr),
        "a relay is not its own peer"
    );
    Ok(())
}

pub(crate) async fn relay_link_paths_tag_sessions_internal(env: &Env) -> anyhow::Result<()> {
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
