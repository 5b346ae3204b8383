//! moq-worker-edge: a moq-relay-ietf relay whose coordinator is moq-worker.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use moq_worker_edge::moq_relay_ietf::{
    Coordinator, Relay, RelayConfig, SessionConfig, Web, WebConfig,
};
use moq_worker_edge::{
    moq_native_ietf, CacheConfig, Fatal, RetryPolicy, WatchConfig, WorkerCoordinator,
    WorkerCoordinatorConfig,
};
use url::Url;

/// A Media over QUIC relay (moq-relay-ietf) that uses a moq-worker
/// Cloudflare Worker as its coordinator: namespace and track routing, scopes
/// and permissions all come from the Worker.
#[derive(Parser)]
#[command(name = "moq-worker-edge", version)]
struct Cli {
    /// UDP address to serve QUIC (WebTransport and moqt://) on.
    #[arg(long, env = "MOQ_EDGE_BIND", default_value = "[::]:443")]
    bind: SocketAddr,

    /// This relay's public URL: what clients and other relays dial, and the
    /// URL the coordinator token was issued for. The TLS certificate must be
    /// valid for its host. Defaults to https://<bind>.
    #[arg(long, env = "MOQ_EDGE_PUBLIC_URL")]
    public_url: Option<Url>,

    /// Socket address ("ip:port") this relay is reachable at, reported to the
    /// coordinator so peers that see it only by address can recognise it.
    /// Repeatable. Defaults to --bind unless that is a wildcard address.
    #[arg(
        long = "advertise-addr",
        env = "MOQ_EDGE_ADVERTISE_ADDR",
        value_delimiter = ','
    )]
    advertise_addrs: Vec<SocketAddr>,

    /// Base URL of the moq-worker Worker, e.g. http://127.0.0.1:8787 locally
    /// or https://moq-worker.<account>.workers.dev.
    #[arg(long, env = "MOQ_COORDINATOR_URL")]
    coordinator_url: Url,

    /// Relay token from AdminService/CreateRelayToken for --public-url.
    /// Prefer the environment variable: flags are visible in `ps`.
    #[arg(long, env = "MOQ_COORDINATOR_TOKEN", hide_env_values = true)]
    coordinator_token: String,

    /// Deadline for each coordinator call attempt, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    coordinator_timeout_ms: u64,

    /// Overall deadline of a coordinator call, all attempts and backoffs
    /// included, in milliseconds. Heartbeats use a third of the lease when
    /// that is shorter.
    #[arg(long, default_value_t = 15000)]
    coordinator_deadline_ms: u64,

    /// Attempts per coordinator call (first try included). Only idempotent
    /// calls, or calls that never reached the Worker, are retried, on
    /// UNAVAILABLE or network errors, with exponential backoff.
    #[arg(long, default_value_t = 4)]
    coordinator_attempts: u32,

    /// TLS certificate/key/root options of moq-native-ietf.
    #[command(flatten)]
    tls: moq_native_ietf::tls::Args,

    /// Generate a self-signed certificate for the --public-url host,
    /// localhost and 127.0.0.1 instead of --tls-cert/--tls-key. Local
    /// development only: peers must use --tls-disable-verify.
    #[arg(long, conflicts_with_all = ["cert", "key"])]
    tls_self_signed: bool,

    /// Also treat connections from these exact socket addresses ("ip:port")
    /// as internal relay peers rather than public clients. Repeatable. Not
    /// needed for relays of the same network: the coordinator lists their
    /// advertised addresses and they are recognised automatically. Only
    /// safe where the network authenticates source addresses (e.g. a
    /// WireGuard mesh): an internal session skips token authorization.
    #[arg(long = "internal-peer", value_delimiter = ',')]
    internal_peers: Vec<SocketAddr>,

    /// Hold the lease on a WebSocket to the coordinator, sending a
    /// HeartbeatRequest (and refreshing the peer list) at least every this
    /// many milliseconds; 0 keeps the lease with Heartbeat calls only.
    #[arg(long, env = "MOQ_EDGE_LEASE_SOCKET_BEAT_MS", default_value_t = 30_000)]
    lease_socket_beat_ms: u64,

    /// Maximum request ID plus one advertised in MoQT setup (draft-16
    /// builds; default 100). Deprecated on draft-18 builds, which have no
    /// MAX_REQUEST_ID: accepted, ignored, and warned about.
    #[arg(long)]
    max_request_id: Option<u64>,

    /// Seconds to keep a cached upstream track with no subscribers before
    /// releasing it (0 keeps it for the life of the upstream session).
    #[arg(long, default_value_t = 30)]
    cache_idle_timeout: u64,

    /// Do not cache lookups: every Lookup, LookupTrack, GetScopeConfig and
    /// ResolveScope goes to the coordinator.
    #[arg(long, env = "MOQ_EDGE_NO_CACHE")]
    no_cache: bool,

    /// Most lookup answers kept in memory, over all scopes (least recently
    /// used go first).
    #[arg(long, env = "MOQ_EDGE_CACHE_ENTRIES", default_value_t = 100_000)]
    cache_entries: usize,

    /// Most scopes watched at once (one watch channel each); past it the
    /// least recently read scope's channel is closed and its cached answers
    /// dropped.
    #[arg(long, env = "MOQ_EDGE_WATCH_SCOPES", default_value_t = 1024)]
    watch_scopes: usize,

    /// A scope not read for this many milliseconds has its watch channel
    /// closed and its cached answers dropped; its next read reopens it.
    #[arg(long, env = "MOQ_EDGE_WATCH_IDLE_MS", default_value_t = 300_000)]
    watch_idle_ms: u64,

    /// Interval of the "ping" sent on each watch channel, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    watch_ping_interval_ms: u64,

    /// A watch channel whose ping has no pong within this many milliseconds
    /// is down: its scope's cache answers nothing until it resyncs. The
    /// worst-case staleness of a cached answer is interval + timeout.
    #[arg(long, default_value_t = 3000)]
    watch_ping_timeout_ms: u64,

    /// Serve Prometheus metrics over HTTP at http://<addr>/metrics (the
    /// edge's moq_edge_* and the relay's own metrics). Off when absent.
    #[arg(long, env = "MOQ_EDGE_METRICS_BIND")]
    metrics_bind: Option<SocketAddr>,

    /// Directory to write qlog files to (one per connection).
    #[arg(long)]
    qlog_dir: Option<PathBuf>,

    /// Also serve the certificate fingerprint over HTTPS (TCP, same address)
    /// at /fingerprint, for browsers using a self-signed certificate.
    #[arg(long)]
    dev: bool,
}

/// MAX_REQUEST_ID advertised when --max-request-id is not given (draft-16).
const DEFAULT_MAX_REQUEST_ID: u64 = 100;

/// What to tell an operator about flags this build accepts but does not use.
fn deprecation_warnings(cli: &Cli) -> Vec<&'static str> {
    let mut warnings = vec![];
    if cfg!(feature = "draft-18") && cli.max_request_id.is_some() {
        warnings.push(
            "--max-request-id is deprecated and ignored: MoQT draft-18 (moq-relay-ietf 0.8) has \
             no MAX_REQUEST_ID; remove the flag",
        );
    }
    warnings
}

/// Names a generated certificate covers: localhost, 127.0.0.1 and the
/// public URL's host, each once, in that order.
fn self_signed_names(public_url: &Url) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if let Some(host) = public_url.host_str() {
        // Url keeps brackets around IPv6 hosts; certificates do not.
        names.push(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        );
    }
    // Not `dedup()`: that only drops adjacent repeats.
    let mut seen = HashSet::new();
    names.retain(|name| seen.insert(name.clone()));
    names
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(err) => match err.downcast_ref::<Fatal>() {
            // Already logged, with what to do about it.
            Some(fatal) => ExitCode::from(fatal.exit_code()),
            None => {
                eprintln!("Error: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn run() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,quinn=warn")),
        )
        .init();

    let mut cli = Cli::parse();
    for warning in deprecation_warnings(&cli) {
        tracing::warn!("{warning}");
    }

    let public_url = match &cli.public_url {
        Some(url) => url.clone(),
        None => Url::parse(&format!("https://{}", cli.bind))?,
    };

    if cli.tls_self_signed {
        let names = self_signed_names(&public_url);
        let dir = std::env::temp_dir().join(format!(
            "moq-worker-edge-{}-{}",
            std::process::id(),
            moq_worker_edge::new_epoch()
        ));
        let generated = moq_worker_edge::tls::self_signed(&names, &dir)?;
        cli.tls.cert = vec![generated.cert];
        cli.tls.key = vec![generated.key];
        tracing::info!(?names, "using a generated self-signed certificate");
    }
    let tls = cli.tls.load().context("failed to load TLS configuration")?;
    if tls.server.is_none() {
        anyhow::bail!("no TLS certificate: pass --tls-cert and --tls-key, or --tls-self-signed");
    }

    let addrs = if cli.advertise_addrs.is_empty() {
        if cli.bind.ip().is_unspecified() {
            tracing::warn!(
                "--bind is a wildcard address and no --advertise-addr was given: peers that \
                 reach this relay by socket address cannot be recognised as it"
            );
            vec![]
        } else {
            vec![cli.bind]
        }
    } else {
        cli.advertise_addrs.clone()
    };

    let mut config =
        WorkerCoordinatorConfig::new(cli.coordinator_url.clone(), cli.coordinator_token.clone());
    config.addrs = addrs;
    config.retry = RetryPolicy {
        timeout: Duration::from_millis(cli.coordinator_timeout_ms),
        deadline: Duration::from_millis(cli.coordinator_deadline_ms.max(1)),
        max_attempts: cli.coordinator_attempts.max(1),
        ..RetryPolicy::default()
    };
    config.internal_peers = cli.internal_peers.clone();
    config.lease_socket_beat =
        (cli.lease_socket_beat_ms > 0).then(|| Duration::from_millis(cli.lease_socket_beat_ms));
    config.cache = CacheConfig {
        enabled: !cli.no_cache,
        entries: cli.cache_entries.max(1),
        watch_scopes: cli.watch_scopes.max(1),
        watch_idle: Duration::from_millis(cli.watch_idle_ms.max(1)),
        watch: WatchConfig {
            ping_interval: Duration::from_millis(cli.watch_ping_interval_ms.max(1)),
            ping_timeout: Duration::from_millis(cli.watch_ping_timeout_ms.max(1)),
            ..WatchConfig::default()
        },
        watch_url: None,
    };
    if let Some(addr) = cli.metrics_bind {
        moq_worker_edge::metrics::serve(addr)?;
        tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    }
    let coordinator = Arc::new(WorkerCoordinator::connect(config).await?);
    // Live peers (from heartbeats), verified relay links and --internal-peer.
    let connection_tagger = Some(coordinator.connection_tagger());

    let relay = Relay::new_with_cache_idle_timeout(
        RelayConfig {
            tls: tls.clone(),
            bind: Some(cli.bind),
            endpoints: vec![],
            qlog_dir: cli.qlog_dir.clone(),
            mlog_dir: None,
            node: Some(public_url.clone()),
            announce: None,
            coordinator: coordinator.clone() as Arc<dyn Coordinator>,
            session: SessionConfig {
                max_request_id: cli.max_request_id.unwrap_or(DEFAULT_MAX_REQUEST_ID),
            },
            connection_tagger,
        },
        Duration::from_secs(cli.cache_idle_timeout),
    )?;
    // Relay::new has bound the QUIC socket: sessions queue from here on.
    tracing::info!(bind = %cli.bind, "edge: relay listening");

    if cli.dev {
        let web = Web::new(WebConfig {
            bind: cli.bind,
            tls,
            qlog_dir: None,
            mlog_dir: None,
        });
        tokio::spawn(async move {
            if let Err(err) = web.run().await {
                tracing::error!(error = %err, "dev web server failed");
            }
        });
    }

    tracing::info!(
        %public_url,
        bind = %cli.bind,
        coordinator = %cli.coordinator_url,
        epoch = coordinator.epoch(),
        relay = moq_worker_edge::version::RELAY_LINE,
        moqt = %moq_worker_edge::version::header_value(),
        "relay starting"
    );

    let result = tokio::select! {
        res = relay.run() => res.context("relay stopped"),
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
        fatal = coordinator.fatal() => {
            // Logged already. No Shutdown call: the token is refused, or the
            // epoch belongs to a process that replaced this one.
            return Ok(ExitCode::from(fatal.exit_code()));
        }
    };

    // Leave the coordinator at once rather than waiting for the lease to lapse.
    match tokio::time::timeout(Duration::from_secs(5), coordinator.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "coordinator shutdown failed"),
        Err(_) => tracing::warn!("coordinator shutdown timed out"),
    }
    result.map(|()| ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "moq-worker-edge",
            "--bind",
            "127.0.0.1:4443",
            "--coordinator-url",
            "http://127.0.0.1:8787",
            "--coordinator-token",
            "t",
            "--tls-self-signed",
            "--internal-peer",
            "127.0.0.1:4444,127.0.0.1:4445",
        ])
        .unwrap();
        assert_eq!(cli.internal_peers.len(), 2);
        assert!(cli.tls_self_signed);
        assert_eq!(cli.coordinator_token, "t");
    }

    #[test]
    fn max_request_id_is_deprecated_on_draft_18_only() {
        let base = [
            "moq-worker-edge",
            "--coordinator-url",
            "http://127.0.0.1:8787",
            "--coordinator-token",
            "t",
        ];
        let without = Cli::try_parse_from(base).unwrap();
        assert!(deprecation_warnings(&without).is_empty());
        let with = Cli::try_parse_from(base.iter().chain(&["--max-request-id", "50"])).unwrap();
        let warnings = deprecation_warnings(&with);
        if cfg!(feature = "draft-18") {
            assert_eq!(warnings.len(), 1);
            assert!(warnings[0].contains("--max-request-id is deprecated"));
        } else {
            assert!(warnings.is_empty());
            assert_eq!(with.max_request_id, Some(50));
        }
    }

    #[test]
    fn self_signed_conflicts_with_cert() {
        let res = Cli::try_parse_from([
            "moq-worker-edge",
            "--coordinator-url",
            "http://127.0.0.1:8787",
            "--coordinator-token",
            "t",
            "--tls-self-signed",
            "--tls-cert",
            "x.pem",
        ]);
        assert!(res.is_err());
    }

    #[test]
    fn self_signed_names_are_unique_in_first_seen_order() {
        let names = |url: &str| self_signed_names(&Url::parse(url).unwrap());
        // The host repeats a name that is not adjacent to it.
        assert_eq!(names("https://localhost:4443"), ["localhost", "127.0.0.1"]);
        assert_eq!(names("https://127.0.0.1:4443"), ["localhost", "127.0.0.1"]);
        assert_eq!(
            names("https://relay.example:4443"),
            ["localhost", "127.0.0.1", "relay.example"]
        );
        assert_eq!(
            names("https://[::1]:4443"),
            ["localhost", "127.0.0.1", "::1"]
        );
    }
}
