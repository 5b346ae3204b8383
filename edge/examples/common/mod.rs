//! What the example clients share: logging and the QUIC connection.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use moq_worker_edge::{moq_native_ietf, moq_transport};
use url::Url;

/// Logs to stderr at RUST_LOG, or warnings only.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
}

/// The WebTransport session type the build's native crate hands out.
#[cfg(feature = "draft-16")]
pub type Session = web_transport::Session;
#[cfg(feature = "draft-18")]
pub type Session = moq_transport::session::transport::Session;

/// A MoQT transport session to `url` from a client socket bound at `bind`,
/// given up after 10 s.
pub async fn connect(
    url: &Url,
    bind: SocketAddr,
    tls: &moq_native_ietf::tls::Args,
) -> anyhow::Result<(Session, moq_transport::session::Transport)> {
    use moq_native_ietf::quic;
    let endpoint = quic::Endpoint::new(quic::Config::new(bind, None, tls.load()?)?)?;
    let (session, _cid, transport) =
        tokio::time::timeout(Duration::from_secs(10), endpoint.client.connect(url, None))
            .await
            .context("QUIC connect timed out")??;
    Ok((session, transport))
}
