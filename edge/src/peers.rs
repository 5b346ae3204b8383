//! Which inbound sessions come from other relays of the network.
//!
//! moq-relay-ietf calls the [`ConnectionTagger`] once per accepted session,
//! right after `Coordinator::resolve_scope` returned for that session's
//! connection path, and tags nothing on its own. A session is a relay peer
//! when:
//! - its remote socket address is one a live relay advertised in its
//!   heartbeats (the Worker lists them in every Heartbeat reply; an outgoing
//!   relay-to-relay connection leaves from the relay's bound QUIC socket, so
//!   its source address is the address that relay advertises), or
//! - its connection path is a relay-link path the Worker just verified
//!   (`ResolveScopeResponse.relay_link`), which covers peers behind NAT, or
//! - its address is one the operator listed (`--internal-peer`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Mutex, RwLock};

use moq_relay_ietf::{ConnectionMeta, ConnectionTagger, ConnectionTags, SessionInterface};

/// Most relay-link paths remembered (one per scope in use); past it the set
/// starts over, which only costs a re-verification by the Worker.
const MAX_LINK_PATHS: usize = 4096;

#[derive(Debug, Default)]
pub struct Peers {
    /// Operator-configured internal peers (`--internal-peer`).
    fixed: HashSet<SocketAddr>,
    /// Addresses of live peers, replaced on every heartbeat.
    live: RwLock<HashSet<SocketAddr>>,
    /// Connection paths the Worker verified as relay links.
    links: Mutex<HashSet<String>>,
}

/// IPv4 peers reach a dual-stack socket as `::ffff:a.b.c.d`; compare them as
/// the plain IPv4 addresses relays advertise.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl Peers {
    pub fn new(fixed: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            fixed: fixed.into_iter().map(canonical).collect(),
            ..Self::default()
        }
    }

    /// Replace the live peers' addresses (from a Heartbeat reply). Entries
    /// that do not parse as `ip:port` are skipped. Returns whether the set
    /// changed.
    pub fn set_live<'a>(&self, addrs: impl IntoIterator<Item = &'a str>) -> bool {
        let live: HashSet<SocketAddr> = addrs
            .into_iter()
            .filter_map(|a| a.parse::<SocketAddr>().ok())
            .map(canonical)
            .collect();
        let mut current = self.live.write().unwrap();
        if *current == live {
            return false;
        }
        *current = live;
        true
    }

    /// The live peers' addresses, sorted (for logs).
    pub fn live(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<_> = self.live.read().unwrap().iter().copied().collect();
        addrs.sort();
        addrs
    }

    /// Number of live peer addresses known (for logs and tests).
    pub fn live_count(&self) -> usize {
        self.live.read().unwrap().len()
    }

    pub fn is_live(&self, addr: SocketAddr) -> bool {
        self.live.read().unwrap().contains(&canonical(addr))
    }

    /// Record the outcome of resolving `path`: a verified relay link or not.
    pub fn note_path(&self, path: &str, relay_link: bool) {
        let mut links = self.links.lock().unwrap();
        if !relay_link {
            links.remove(path);
            return;
        }
        if links.len() >= MAX_LINK_PATHS && !links.contains(path) {
            links.clear();
        }
        links.insert(path.to_string());
    }

    pub fn is_peer(&self, meta: &ConnectionMeta) -> bool {
        let by_addr = meta.remote_addr.map(canonical).is_some_and(|addr| {
            self.fixed.contains(&addr) || self.live.read().unwrap().contains(&addr)
        });
        by_addr
            || meta
                .path
                .as_deref()
                .is_some_and(|path| self.links.lock().unwrap().contains(path))
    }
}

/// The relay's tagger: relay peers are [`SessionInterface::Internal`].
pub struct PeerTagger(pub std::sync::Arc<Peers>);

impl ConnectionTagger for PeerTagger {
    /// Also the edge's record of every accepted session (the relay's own log
    /// lines differ between its versions): logged with its remote address,
    /// connection path and interface, and counted in
    /// `moq_edge_sessions_accepted_total{interface}`.
    fn tag(&self, meta: &ConnectionMeta) -> ConnectionTags {
        let internal = self.0.is_peer(meta);
        let interface = if internal { "internal" } else { "public" };
        tracing::info!(
            remote_addr = %meta.remote_addr.map(|a| a.to_string()).unwrap_or_default(),
            path = ?meta.path.as_deref().unwrap_or(""),
            internal,
            "edge: session accepted"
        );
        metrics::counter!("moq_edge_sessions_accepted_total", "interface" => interface)
            .increment(1);
        if internal {
            ConnectionTags::new().with_interface(SessionInterface::Internal)
        } else {
            ConnectionTags::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn meta(addr: &str, path: Option<&str>) -> ConnectionMeta {
        ConnectionMeta::new(Some(addr.parse().unwrap()), None, path.map(str::to_string))
    }

    fn interface(tagger: &PeerTagger, m: &ConnectionMeta) -> SessionInterface {
        tagger.tag(m).interface()
    }

    #[test]
    fn live_peers_follow_the_latest_heartbeat() {
        let peers = Arc::new(Peers::new([]));
        let tagger = PeerTagger(peers.clone());
        let a = meta("127.0.0.1:4443", None);
        assert_eq!(interface(&tagger, &a), SessionInterface::Public);

        peers.set_live(["127.0.0.1:4443", "not an addr"]);
        assert_eq!(interface(&tagger, &a), SessionInterface::Internal);
        assert_eq!(
            interface(&tagger, &meta("127.0.0.1:4444", None)),
            SessionInterface::Public
        );
        // Seen through a dual-stack socket.
        assert_eq!(
            interface(&tagger, &meta("[::ffff:127.0.0.1]:4443", None)),
            SessionInterface::Internal
        );

        // The peer left: the next heartbeat no longer lists it.
        peers.set_live([]);
        assert_eq!(interface(&tagger, &a), SessionInterface::Public);
    }

    #[test]
    fn fixed_peers_stay_internal() {
        let peers = Arc::new(Peers::new(["127.0.0.1:5000".parse().unwrap()]));
        let tagger = PeerTagger(peers.clone());
        peers.set_live(["127.0.0.1:4443"]);
        assert_eq!(
            interface(&tagger, &meta("127.0.0.1:5000", None)),
            SessionInterface::Internal
        );
    }

    #[test]
    fn verified_relay_link_paths_are_peers() {
        let peers = Arc::new(Peers::new([]));
        let tagger = PeerTagger(peers.clone());
        let link = "/_relay/czE/bWFj";
        let from_nat = meta("198.51.100.7:61000", Some(link));
        assert_eq!(interface(&tagger, &from_nat), SessionInterface::Public);
        peers.note_path(link, true);
        assert_eq!(interface(&tagger, &from_nat), SessionInterface::Internal);
        // A client path never is.
        peers.note_path("/show/watch", false);
        assert_eq!(
            interface(&tagger, &meta("198.51.100.7:61000", Some("/show/watch"))),
            SessionInterface::Public
        );
        peers.note_path(link, false);
        assert_eq!(interface(&tagger, &from_nat), SessionInterface::Public);
    }
}
