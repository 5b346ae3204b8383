//! Prints the namespaces a relay announces under a prefix (SUBSCRIBE_NAMESPACE),
//! for the network end-to-end tests: no third-party MoQ client for the wire
//! version moq-relay-ietf 0.7 speaks (moq-transport 0.16) sends SUBSCRIBE_NAMESPACE.
//!
//!   announced --url https://127.0.0.1:4444/S/watch --prefix e2e/peers
//!
//! Prints "subscribed <prefix>" once the relay accepts, then "added <ns>" /
//! "removed <ns>" per event, until killed. Exit 2 = could not connect or the
//! session was refused, 3 = SUBSCRIBE_NAMESPACE rejected.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use moq_transport::coding::{KeyValuePairs, TrackNamespacePrefix};
#[cfg(feature = "draft-16")]
use moq_transport::message::SubscribeOptions;
use moq_transport::session::{NamespaceEvent, Subscriber};
use moq_worker_edge::{moq_native_ietf, moq_transport};
use url::Url;

mod common;

#[derive(Parser)]
struct Cli {
    /// Relay URL, including the connection path if any.
    #[arg(long)]
    url: Url,

    /// Namespace prefix, '/'-separated into tuple fields.
    #[arg(long)]
    prefix: String,

    /// Local UDP address for the client socket.
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,

    #[command(flatten)]
    tls: moq_native_ietf::tls::Args,
}

#[tokio::main]
async fn main() -> ExitCode {
    common::init_tracing();
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("announced: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let (session, transport) = common::connect(&cli.url, cli.bind, &cli.tls).await?;
    let (session, mut subscriber) = Subscriber::connect(session, transport).await?;
    let prefix = TrackNamespacePrefix::from_utf8_path(&cli.prefix);

    let watch = async {
        // draft-18 dropped SUBSCRIBE_NAMESPACE's options (namespaces only).
        #[cfg(feature = "draft-16")]
        let request = subscriber.subscribe_namespace(
            prefix,
            SubscribeOptions::Namespace,
            KeyValuePairs::default(),
        );
        #[cfg(feature = "draft-18")]
        let request = subscriber.subscribe_namespace(prefix, KeyValuePairs::default());
        let subscription = match request.await {
            Ok(subscription) => subscription,
            Err(err) => return Ok(rejected(format!("{err}"))),
        };
        if let Err(err) = subscription.ok().await {
            return Ok(rejected(format!("{err}")));
        }
        println!("subscribed {}", cli.prefix);
        while let Some(event) = subscription.next().await? {
            match event {
                NamespaceEvent::Added(ns) => println!("added {}", ns.to_utf8_path()),
                NamespaceEvent::Removed(ns) => println!("removed {}", ns.to_utf8_path()),
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    };

    tokio::select! {
        res = session.run() => Err(match res {
            Err(err) => anyhow::Error::from(err).context("session failed"),
            Ok(()) => anyhow::anyhow!("session ended"),
        }),
        res = watch => res,
    }
}

fn rejected(err: String) -> ExitCode {
    eprintln!("announced: SUBSCRIBE_NAMESPACE rejected: {err}");
    ExitCode::from(3)
}
