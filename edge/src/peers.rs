//! Which inbound sessions come from other relays of the network.
//!
//! moq-relay-ietf calls the [`ConnectionTagger`] once per accepted session,
//! right after `Coordinator::resolve_scope` returned for that session's
//! connection path, and tags nothing on its own. An internal session skips
//! the scope's token checks, so in a scope with a token policy ("enforced")
//! it takes two proofs, each useless alone: a relay-link path the Worker just
//! verified (`ResolveScopeResponse.relay_link`) and a remote socket address
//! a live relay advertised in its heartbeats (the Worker lists them in every
//! Heartbeat reply; an outgoing relay-to-relay connection leaves from the
//! relay's bound QUIC socket, so its source address is the address that
//! relay advertises). Elsewhere, where there is no token to skip, either
//! proof is enough (the link covers peers behind NAT). An address the
//! operator listed (`--internal-peer`) is always a peer.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Mutex, RwLock};

use moq_relay_ietf::{ConnectionMeta, ConnectionTagger, ConnectionTags, SessionInterface};

/// Most connection paths remembered; past it the map starts over, which only
/// costs a re-resolution by the Worker.
const MAX_PATHS: usize = 4096;

/// What resolving a connection path found: a verified relay link or a client
/// path, and whether its scope enforces tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathNote {
    pub relay_link: bool,
    pub enforced: bool,
}

#[derive(Debug, Default)]
pub struct Peers {
    /// Operator-configured internal peers (`--internal-peer`).
    fixed: HashSet<SocketAddr>,
    /// Addresses of live peers, replaced on every heartbeat.
    live: RwLock<HashSet<SocketAddr>>,
    /// What the Worker said of each connection path last resolved.
    paths: Mutex<HashMap<String, PathNote>>,
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

    /// Record the outcome of resolving `path`.
    pub fn note_path(&self, path: &str, note: PathNote) {
        let mut paths = self.paths.lock().unwrap();
        if paths.len() >= MAX_PATHS && !paths.contains_key(path) {
            paths.clear();
        }
        paths.insert(path.to_string(), note);
    }

    pub fn is_peer(&self, meta: &ConnectionMeta) -> bool {
        let addr = meta.remote_addr.map(canonical);
        if addr.is_some_and(|a| self.fixed.contains(&a)) {
            return true;
        }
        let live = addr.is_some_and(|a| self.live.read().unwrap().contains(&a));
        let note = meta
            .path
            .as_deref()
            .and_then(|path| self.paths.lock().unwrap().get(path).copied());
        match (meta.path.as_deref(), note) {
            // Token checks to skip: both proofs.
            (
                _,
                Some(PathNote {
                    enforced: true,
                    relay_link,
                }),
            ) => relay_link && live,
            (
                _,
                Some(PathNote {
                    relay_link: true, ..
                }),
            ) => true,
            // A path whose resolution is not on record (forgotten past
            // MAX_PATHS): it may be an enforced scope's, so no address alone.
            (Some(_), None) => false,
            // A client path, or no path (unscoped).
            _ => live,
        }
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

    const LINK: PathNote = PathNote {
        relay_link: true,
        enforced: false,
    };
    const CLIENT: PathNote = PathNote {
        relay_link: false,
        enforced: false,
    };

    #[test]
    fn verified_relay_link_paths_are_peers_where_no_token_is_skipped() {
        let peers = Arc::new(Peers::new([]));
        let tagger = PeerTagger(peers.clone());
        let link = "/_relay/czE/bWFj";
        let from_nat = meta("198.51.100.7:61000", Some(link));
        assert_eq!(interface(&tagger, &from_nat), SessionInterface::Public);
        peers.note_path(link, LINK);
        assert_eq!(interface(&tagger, &from_nat), SessionInterface::Internal);
        // A client path never is.
        peers.note_path("/show/watch", CLIENT);
        assert_eq!(
            interface(&tagger, &meta("198.51.100.7:61000", Some("/show/watch"))),
            SessionInterface::Public
        );
        peers.note_path(link, CLIENT);
        assert_eq!(interface(&tagger, &from_nat), SessionInterface::Public);
    }

    #[test]
    fn in_an_enforced_scope_a_link_or_an_address_alone_gains_nothing() {
        let peers = Arc::new(Peers::new(["10.0.0.9:4443".parse().unwrap()]));
        let tagger = PeerTagger(peers.clone());
        let link = "/_relay/czE/bWFj";
        let enforced_link = PathNote {
            relay_link: true,
            enforced: true,
        };
        let enforced_client = PathNote {
            relay_link: false,
            enforced: true,
        };
        peers.note_path(link, enforced_link);
        peers.note_path("/s/watch", enforced_client);
        peers.set_live(["127.0.0.1:4443"]);
        // A leaked link from an address no live relay has.
        assert_eq!(
            interface(&tagger, &meta("198.51.100.7:61000", Some(link))),
            SessionInterface::Public
        );
        // A live relay's address on a client path (spoofed, or a relay acting as a client).
        assert_eq!(
            interface(&tagger, &meta("127.0.0.1:4443", Some("/s/watch"))),
            SessionInterface::Public
        );
        // Both: a relay of the network dialling the link it was handed.
        assert_eq!(
            interface(&tagger, &meta("127.0.0.1:4443", Some(link))),
            SessionInterface::Internal
        );
        // The operator's own list still stands.
        assert_eq!(
            interface(&tagger, &meta("10.0.0.9:4443", Some("/s/watch"))),
            SessionInterface::Internal
        );
        // Unscoped (no path): the address, as before.
        assert_eq!(
            interface(&tagger, &meta("127.0.0.1:4443", None)),
            SessionInterface::Internal
        );
        // A path with no resolution on record is never internal by address alone.
        assert_eq!(
            interface(&tagger, &meta("127.0.0.1:4443", Some("/forgotten"))),
            SessionInterface::Public
        );
    }
}
