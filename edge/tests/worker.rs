//! WorkerCoordinator against a real local moq-worker (`wrangler dev`).
//!
//! One Worker serves every case, so this file has its own runner
//! (harness = false): it starts the Worker, runs the cases in order, and
//! always stops the Worker's process group, even when a case fails.
//! `cargo test --test worker -- <filter>` runs the cases whose name contains
//! <filter>. Set MOQ_WORKER_URL to use a Worker that is already running.
//!
//! The cases are in one module per topic (`*_cases/mod.rs`), listed in
//! `main`; this file has what they share (`Env`, a `Relay`, polling) and the
//! runner.

// A case left out of `cases![]` in `main` is dead code: a build error.
#![deny(dead_code)]

mod auth_cases;
mod cache_cases;
mod common;
mod lease_cases;
mod registration_cases;
mod session_cases;
mod subscription_cases;

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
// Runner
// ---------------------------------------------------------------------------

type Case = for<'a> fn(&'a Env) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

/// `module::{case, ...}, ...` → each case with its name, in order.
macro_rules! cases {
    ($($module:ident::{$($name:ident),* $(,)?}),* $(,)?) => {
        vec![$($((stringify!($name), (|env| Box::pin($module::$name(env))) as Case)),*),*]
    };
}

fn main() -> std::process::ExitCode {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    // A case missing here is dead code, a build error under #![deny(dead_code)] above.
    let cases = cases![
        registration_cases::{
            register_and_lookup,
            second_relay_gets_already_exists,
            dropping_registration_unregisters,
            explicit_unregister_namespace,
            explicit_unregister_shares_the_refcount,
            scopes_are_isolated,
            tracks,
        },
        subscription_cases::{
            subscribe_namespace_excludes_caller_and_source,
            namespace_subscribers,
            track_subscriptions,
        },
        session_cases::{
            resolve_scope,
            scope_config,
            peers_arrive_from_the_heartbeat,
            long_peer_lists_arrive_in_pages_then_deltas,
            relay_link_paths_tag_sessions_internal,
        },
        lease_cases::{
            bad_token_is_refused,
            shutdown_drops_everything,
            new_epoch_discards_old_state,
            heartbeat_keeps_the_lease,
            lapse_then_state_lost_reregisters_everything,
            a_failed_beat_reregisters_on_reconnect,
            retired_epoch_is_fatal,
            retired_relay_process_exits_with_code_4,
        },
        cache_cases::{
            cache_serves_repeats,
            moved_namespace_is_never_stale,
            cut_channel_disables_cache_and_resyncs,
            read_your_writes,
            moved_path_is_never_stale,
            idle_scope_closes_its_channel_and_reopens,
        },
        auth_cases::{
            issued_tokens_pass_the_relays_verifier,
            removed_keys_and_expired_tokens_are_refused,
        },
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
