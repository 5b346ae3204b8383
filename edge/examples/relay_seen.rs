//! Routing as the relay sees it: the numbers of bench/run.mjs's `relaySeen`
//! section (see bench/README.md). Each subcommand prints one JSON line.
//!
//! - `lookup`: `Coordinator::lookup_track` in-process over a hot set of
//!   tracks, closed loop, from `--concurrency` tasks: the cached
//!   WorkerCoordinator (`--system worker`), or what moq-relay-ietf's
//!   ApiCoordinator does for it (`--system moq-api`: moq-api's client GET of
//!   the same registry key, then the same NamespaceOrigin).
//! - `propagation`: a namespace moves from relay A to relay C; time from C's
//!   RegisterNamespace returning until relay B's (cached) lookup answers C.
//! - `joins`: viewer joins of one track relay B already pulls (per join the
//!   relay calls resolve_scope, get_scope_config and lookup_track); Worker
//!   CoordinatorService calls counted from the Worker's /metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::{Parser, Subcommand, ValueEnum};
use moq_relay_ietf::{Coordinator, CoordinatorContext, NamespaceOrigin};
use moq_transport::coding::TrackNamespace;
use moq_worker_edge::{moq_relay_ietf, moq_transport};
use moq_worker_edge::{WorkerCoordinator, WorkerCoordinatorConfig};
use url::Url;

#[derive(Parser)]
struct Cli {
    /// Worker base URL (or moq-api's, for `lookup --system moq-api`).
    #[arg(long)]
    url: Url,
    /// The Worker's admin token (mints relay tokens, reads /metrics).
    #[arg(long, env = "MOQ_ADMIN_TOKEN", default_value = "dev-admin-token")]
    admin_token: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Lookup {
        #[arg(long, value_enum)]
        system: System,
        /// Distinct tracks viewers join.
        #[arg(long, default_value_t = 100)]
        tracks: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    Propagation {
        #[arg(long, default_value_t = 100)]
        trials: usize,
    },
    Joins {
        #[arg(long, default_value_t = 1000)]
        joins: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum System {
    Worker,
    MoqApi,
}

/// Distinguishes this run's names on a long-lived Worker.
fn run_id() -> String {
    format!("b{:08x}", rand::random::<u32>())
}

async fn relay(cli: &Cli, name: &str) -> anyhow::Result<(WorkerCoordinator, Url)> {
    let port = 20000 + rand::random::<u16>() % 20000;
    let url = Url::parse(&format!("https://{name}-{}.bench.test:{port}", run_id()))?;
    let resp: serde_json::Value = reqwest::Client::new()
        .post(
            cli.url
                .join("/moqworker.v1.AdminService/CreateRelayToken")?,
        )
        .bearer_auth(&cli.admin_token)
        .json(&serde_json::json!({ "relayUrl": url.as_str() }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = resp["token"].as_str().context("no token")?;
    let config = WorkerCoordinatorConfig::new(cli.url.clone(), token);
    Ok((WorkerCoordinator::connect(config).await?, url))
}

/// Sum of the Worker's CoordinatorService calls, heartbeats excepted.
async fn worker_calls(cli: &Cli) -> anyhow::Result<u64> {
    let text = reqwest::Client::new()
        .get(cli.url.join("/metrics")?)
        .bearer_auth(&cli.admin_token)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("moq_worker_rpc_requests_total{"))
        .filter(|l| l.contains("CoordinatorService") && !l.contains("method=\"Heartbeat\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

type Lookup = Arc<
    dyn Fn(TrackNamespace) -> futures::future::BoxFuture<'static, anyhow::Result<NamespaceOrigin>>
        + Send
        + Sync,
>;

async fn lookup(
    cli: &Cli,
    system: System,
    tracks: usize,
    concurrency: usize,
    seconds: f64,
) -> anyhow::Result<serde_json::Value> {
    use futures::FutureExt;
    let id = run_id();
    let names: Vec<TrackNamespace> = (0..tracks)
        .map(|i| TrackNamespace::from_utf8_path(&format!("{id}/live/room-{i}")))
        .collect();
    // Kept alive for the measurement: registrations and coordinators.
    let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    let lookup: Lookup = match system {
        System::Worker => {
            let (a, _) = relay(cli, "a").await?;
            let (b, _) = relay(cli, "b").await?;
            for ns in &names {
                let reg = a
                    .register_namespace(None, ns, &CoordinatorContext::public())
                    .await?;
                keep.push(Box::new(reg));
            }
            keep.push(Box::new(a));
            let b = Arc::new(b);
            // The first lookup opens the channel; wait for its hello.
            let deadline = Instant::now() + Duration::from_secs(15);
            while !b.cache_is_up(None) {
                ensure!(Instant::now() < deadline, "watch channel never came up");
                let _ = b.lookup_track(None, &names[0], "video").await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Arc::new(move |ns: TrackNamespace| {
                let b = b.clone();
                async move { Ok(b.lookup_track(None, &ns, "video").await?.0) }.boxed()
            })
        }
        System::MoqApi => {
            let client = moq_api::Client::new(cli.url.clone());
            let origin = Url::parse("https://a.bench.test:4443")?;
            let key = |ns: &TrackNamespace| {
                // ApiCoordinator's registry key: "<scope>:<hex fields joined by .>".
                let hex: Vec<String> = ns.fields.iter().map(|f| hex::encode(&f.value)).collect();
                format!(":{}", hex.join("."))
            };
            for ns in &names {
                client
                    .set_origin(
                        &key(ns),
                        moq_api::Origin {
                            url: origin.clone(),
                        },
                    )
                    .await?;
            }
            Arc::new(move |ns: TrackNamespace| {
                let client = client.clone();
                let k = key(&ns);
                async move {
                    let found = client.get_origin(&k).await?.context("not found")?;
                    Ok(NamespaceOrigin::new(ns, found.url, None))
                }
                .boxed()
            })
        }
    };
    let names = Arc::new(names);
    // Warm-up: every track once (cache misses, connection setup).
    for ns in names.iter() {
        lookup(ns.clone()).await?;
    }
    let stop = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let (lookup, names) = (lookup.clone(), names.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = t;
                while Instant::now() < stop {
                    let at = Instant::now();
                    lookup(names[i % names.len()].clone()).await?;
                    lat.push(ms(at.elapsed()));
                    i += 7;
                }
                anyhow::Ok(lat)
            })
        })
        .collect();
    let mut lat = Vec::new();
    for task in tasks {
        lat.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    drop(keep);
    Ok(serde_json::json!({
        "system": match system { System::Worker => "worker-cached", System::MoqApi => "moq-api" },
        "ops": lat.len(),
        "opsPerSec": lat.len() as f64 / elapsed,
        "p50Ms": percentile(&lat, 0.5),
        "p99Ms": percentile(&lat, 0.99),
        "tracks": tracks,
        "concurrency": concurrency,
    }))
}

async fn propagation(cli: &Cli, trials: usize) -> anyhow::Result<serde_json::Value> {
    let (a, a_url) = relay(cli, "a").await?;
    let (b, _) = relay(cli, "b").await?;
    let (c, c_url) = relay(cli, "c").await?;
    let id = run_id();
    let mut took = Vec::new();
    let ctx = CoordinatorContext::public();
    for trial in 0..trials {
        let ns = TrackNamespace::from_utf8_path(&format!("{id}/move/{trial}"));
        let reg = a.register_namespace(None, &ns, &ctx).await?;
        // B holds A's route in its cache.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let hits = b.cache_stats().hits;
            let (origin, _) = b.lookup(None, &ns).await?;
            if origin.url().host_str() == a_url.host_str() && b.cache_stats().hits > hits {
                break;
            }
            ensure!(Instant::now() < deadline, "B never cached A's route");
        }
        a.unregister_namespace(None, &ns).await?;
        drop(reg);
        let reg = c.register_namespace(None, &ns, &ctx).await?;
        let moved = Instant::now();
        loop {
            if let Ok((origin, _)) = b.lookup(None, &ns).await {
                if origin.url().host_str() == c_url.host_str() {
                    break;
                }
            }
            ensure!(moved.elapsed() < Duration::from_secs(15), "B never saw C");
            tokio::task::yield_now().await;
        }
        took.push(ms(moved.elapsed()));
        c.unregister_namespace(None, &ns).await?;
        drop(reg);
    }
    took.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "trials": trials,
        "p50Ms": percentile(&took, 0.5),
        "p99Ms": percentile(&took, 0.99),
        "maxMs": took.last(),
    }))
}

async fn count_joins(cli: &Cli, joins: usize) -> anyhow::Result<serde_json::Value> {
    let (a, _) = relay(cli, "a").await?;
    let (b, _) = relay(cli, "b").await?;
    let ns = TrackNamespace::from_utf8_path(&format!("{}/live/popular", run_id()));
    let _reg = a
        .register_namespace(None, &ns, &CoordinatorContext::public())
        .await?;
    // The first viewer: B pulls the track (its watch channel opens).
    let deadline = Instant::now() + Duration::from_secs(15);
    while !b.cache_is_up(None) {
        ensure!(Instant::now() < deadline, "watch channel never came up");
        b.resolve_scope(None).await?;
        b.get_scope_config(None).await?;
        b.lookup_track(None, &ns, "video").await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = worker_calls(cli).await?;
    for _ in 0..joins {
        b.resolve_scope(None).await?;
        b.get_scope_config(None).await?;
        b.lookup_track(None, &ns, "video").await?;
    }
    let calls = worker_calls(cli).await? - before;
    Ok(serde_json::json!({
        "joins": joins,
        "workerCalls": calls,
        "per1000": calls as f64 * 1000.0 / joins as f64,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let out = match &cli.command {
        Command::Lookup {
            system,
            tracks,
            concurrency,
            seconds,
        } => lookup(&cli, *system, *tracks, *concurrency, *seconds).await?,
        Command::Propagation { trials } => propagation(&cli, *trials).await?,
        Command::Joins { joins } => count_joins(&cli, *joins).await?,
    };
    println!("{out}");
    Ok(())
}
