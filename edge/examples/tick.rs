//! A tiny MoQT publisher/subscriber for exercising relays end to end.
//!
//!   tick publish   --url https://127.0.0.1:4443/ --namespace e2e/clock --track ticks
//!   tick subscribe --url https://127.0.0.1:4444/ --namespace e2e/clock --track ticks --count 3
//!
//! The publisher announces the namespace (PUBLISH_NAMESPACE) and writes one
//! group per interval with a single object "tick-<n>". The subscriber prints
//! each object's payload and exits 0 after --count objects. Exit codes say
//! what went wrong, for scripts: 2 = could not connect / session refused,
//! 3 = request (PUBLISH_NAMESPACE or SUBSCRIBE) rejected, 4 = timed out.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use moq_transport::coding::TrackNamespace;
use moq_transport::serve::{self, Subgroup, TrackReaderMode};
use moq_transport::session::{Publisher, Subscriber};
use moq_worker_edge::{moq_native_ietf, moq_transport};
use url::Url;

mod common;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,

    /// Relay URL, including the connection path if any (https:// or moqt://).
    #[arg(long, global = true, default_value = "https://127.0.0.1:4443/")]
    url: Url,

    /// Namespace, '/'-separated into tuple fields.
    #[arg(long, global = true, default_value = "e2e/clock")]
    namespace: String,

    #[arg(long, global = true, default_value = "ticks")]
    track: String,

    /// Local UDP address for the client socket.
    #[arg(long, global = true, default_value = "127.0.0.1:0")]
    bind: SocketAddr,

    #[command(flatten)]
    tls: moq_native_ietf::tls::Args,
}

#[derive(Subcommand)]
enum Mode {
    /// Announce the namespace and write ticks until killed (or --count).
    Publish {
        /// Milliseconds between ticks.
        #[arg(long, default_value_t = 200)]
        interval_ms: u64,
        /// Stop after this many ticks (0 = forever).
        #[arg(long, default_value_t = 0)]
        count: u64,
    },
    /// Subscribe and print objects until --count arrive.
    Subscribe {
        #[arg(long, default_value_t = 3)]
        count: u64,
        /// Give up after this many seconds. SUBSCRIBE is retried until then,
        /// so the subscriber may start before the publisher has announced.
        #[arg(long, default_value_t = 20)]
        timeout: u64,
    },
}

enum Failure {
    Connect(anyhow::Error),
    Rejected(anyhow::Error),
    Timeout(&'static str),
}

#[tokio::main]
async fn main() -> ExitCode {
    common::init_tracing();
    let cli = Cli::parse();
    let result = match cli.mode {
        Mode::Publish { interval_ms, count } => publish(&cli, interval_ms, count).await,
        Mode::Subscribe { count, timeout } => subscribe(&cli, count, timeout).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Connect(err)) => {
            eprintln!("tick: session failed: {err:#}");
            ExitCode::from(2)
        }
        Err(Failure::Rejected(err)) => {
            eprintln!("tick: rejected: {err:#}");
            ExitCode::from(3)
        }
        Err(Failure::Timeout(what)) => {
            eprintln!("tick: timed out waiting for {what}");
            ExitCode::from(4)
        }
    }
}

async fn publish(cli: &Cli, interval_ms: u64, count: u64) -> Result<(), Failure> {
    let (session, transport) = common::connect(&cli.url, cli.bind, &cli.tls)
        .await
        .map_err(Failure::Connect)?;
    let (session, mut publisher) = Publisher::connect(session, transport)
        .await
        .map_err(|e| Failure::Connect(e.into()))?;

    let (mut tracks, _requests, tracks_reader) =
        serve::Tracks::new(TrackNamespace::from_utf8_path(&cli.namespace)).produce();
    let track = tracks
        .create(cli.track.as_str())
        .context("cannot create track")
        .map_err(Failure::Rejected)?;
    let mut groups = track.subgroups().map_err(|e| Failure::Rejected(e.into()))?;

    let ticker = async {
        let mut n = 0u64;
        loop {
            let mut group = groups.create(Subgroup {
                group_id: n,
                subgroup_id: 0,
                priority: 0,
            })?;
            let payload = format!("tick-{n}");
            group.write(payload.clone().into())?;
            println!("published {payload}");
            n += 1;
            if count > 0 && n >= count {
                // Let the last object drain before the session is dropped.
                tokio::time::sleep(Duration::from_secs(1)).await;
                return Ok::<(), anyhow::Error>(());
            }
            tokio::time::sleep(Duration::from_millis(interval_ms)).await;
        }
    };

    tokio::select! {
        res = session.run() => Err(Failure::Connect(match res {
            Err(err) => err.into(),
            Ok(()) => anyhow::anyhow!("session ended"),
        })),
        // Returns only when the relay answers the PUBLISH_NAMESPACE with an
        // error (or the namespace is withdrawn).
        res = publisher.publish_namespace(tracks_reader) => match res {
            Err(err) => Err(Failure::Rejected(anyhow::anyhow!("PUBLISH_NAMESPACE: {err}"))),
            Ok(()) => Err(Failure::Rejected(anyhow::anyhow!("PUBLISH_NAMESPACE ended"))),
        },
        res = ticker => res.map_err(Failure::Connect),
    }
}

async fn subscribe(cli: &Cli, count: u64, timeout: u64) -> Result<(), Failure> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let namespace = TrackNamespace::from_utf8_path(&cli.namespace);
    let mut last_err = None;
    // One session per attempt: a refused SUBSCRIBE leaves the session usable,
    // but a fresh one also covers relays that were still starting.
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, subscribe_once(cli, &namespace, count)).await {
            Err(_) => return Err(Failure::Timeout("objects")),
            Ok(Ok(())) => return Ok(()),
            Ok(Err(Failure::Rejected(err))) => {
                eprintln!("tick: subscribe not served yet: {err:#}");
                last_err = Some(err);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok(Err(other)) => return Err(other),
        }
    }
    match last_err {
        Some(err) => Err(Failure::Rejected(err)),
        None => Err(Failure::Timeout("objects")),
    }
}

async fn subscribe_once(cli: &Cli, namespace: &TrackNamespace, count: u64) -> Result<(), Failure> {
    let (session, transport) = common::connect(&cli.url, cli.bind, &cli.tls)
        .await
        .map_err(Failure::Connect)?;
    let (session, mut subscriber) = Subscriber::connect(session, transport)
        .await
        .map_err(|e| Failure::Connect(e.into()))?;
    let (writer, reader) = serve::Track::new(namespace.clone(), cli.track.as_str()).produce();

    let receive = async {
        let TrackReaderMode::Subgroups(mut groups) = reader.mode().await? else {
            anyhow::bail!("expected a subgroup-mode track");
        };
        let mut received = 0;
        while let Some(mut group) = groups.next().await? {
            while let Some(payload) = group.read_next().await? {
                println!("received {}", String::from_utf8_lossy(&payload));
                received += 1;
                if received >= count {
                    return Ok(());
                }
            }
        }
        anyhow::bail!("track ended after {received} objects")
    };

    tokio::select! {
        res = session.run() => Err(Failure::Connect(match res {
            Err(err) => err.into(),
            Ok(()) => anyhow::anyhow!("session ended"),
        })),
        res = subscriber.subscribe(writer) => Err(Failure::Rejected(match res {
            Err(err) => anyhow::anyhow!("SUBSCRIBE: {err}"),
            Ok(()) => anyhow::anyhow!("subscription closed"),
        })),
        res = receive => res.map_err(Failure::Rejected),
    }
}
