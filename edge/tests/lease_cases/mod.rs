//! The relay's lease, its liveness at the Worker: a refused token or a
//! retired epoch is fatal (the real binary exits 4), heartbeats keep it, a
//! lapse purges the relay's rows and it re-registers them on its own, a new
//! epoch or `Shutdown` drops what the old one held.

use super::*;

pub(crate) async fn bad_token_is_refused(env: &Env) -> anyhow::Result<()> {
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

pub(crate) async fn shutdown_drops_everything(env: &Env) -> anyhow::Result<()> {
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

pub(crate) async fn new_epoch_discards_old_state(env: &Env) -> anyhow::Result<()> {
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

pub(crate) async fn heartbeat_keeps_the_lease(env: &Env) -> anyhow::Result<()> {
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

pub(crate) async fn lapse_then_state_lost_reregisters_everything(env: &Env) -> anyhow::Result<()> {
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
pub(crate) async fn a_failed_beat_reregisters_on_reconnect(env: &Env) -> anyhow::Result<()> {
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

pub(crate) async fn retired_epoch_is_fatal(env: &Env) -> anyhow::Result<()> {
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

pub(crate) async fn retired_relay_process_exits_with_code_4(env: &Env) -> anyhow::Result<()> {
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
