//! The relay-to-relay links this relay uses, as the coordinator knows them:
//! every upstream URL a Lookup/LookupTrack/SubscribeNamespace answer handed
//! the relay (moq-relay-ietf dials exactly those URLs and pools one
//! connection per URL), with the tracks subscribers asked for over each.
//! Reported with every heartbeat (`HeartbeatRequest.activity`).
//!
//! What this is and is not: a link is listed from the first answer naming
//! the upstream until the upstream leaves the Worker's live peer list (and
//! has not been handed out for a lease TTL); it is the relay's *routing*,
//! not a probe of the QUIC connection, which moq-relay-ietf keeps private.
//! `subscribes` counts SUBSCRIBE requests routed to the upstream for a track
//! since this process started (each one asks LookupTrack); subscribers
//! served from the relay's own cache or a local publisher call nothing and
//! are not counted.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use url::Url;

use crate::proto;

/// Bounds of the report, as the Worker enforces them (RequestLimit).
const MAX_UPSTREAMS: usize = proto::RequestLimit::MaxUpstreams as usize;
const MAX_LINK_TRACKS: usize = proto::RequestLimit::MaxLinkTracks as usize;

/// The upstream relay's URL without the relay-link path: who the relay is.
pub(crate) fn relay_origin(url: &Url) -> String {
    let mut base = url.clone();
    base.set_path("/");
    base.set_query(None);
    base.set_fragment(None);
    base.to_string()
}

#[derive(Debug)]
struct Track {
    fields: Vec<Vec<u8>>,
    name: String,
    subscribes: u32,
    last: Instant,
}

#[derive(Debug)]
struct Link {
    last: Instant,
    tracks: Vec<Track>,
}

type Key = (String, Option<String>);

#[derive(Debug, Default)]
pub struct Upstreams {
    links: Mutex<HashMap<Key, Link>>,
}

impl Upstreams {
    /// An answer handed the relay `upstream` for `scope`; with a track, one
    /// SUBSCRIBE for it is routed there. A link new to the table is logged
    /// and counted (`moq_edge_upstream_links_opened_total`): the relay dials
    /// exactly the URL it was handed, pooling one connection per URL.
    pub(crate) fn used(
        &self,
        scope: Option<&str>,
        upstream: &Url,
        track: Option<(&[Vec<u8>], &str)>,
    ) {
        let now = Instant::now();
        let key = (relay_origin(upstream), scope.map(str::to_string));
        let mut links = self.links.lock().unwrap();
        if !links.contains_key(&key) {
            tracing::info!(upstream = %upstream, scope = scope.unwrap_or(""), "edge: upstream link opened");
            metrics::counter!("moq_edge_upstream_links_opened_total").increment(1);
        }
        if !links.contains_key(&key) && links.len() >= MAX_UPSTREAMS {
            // Full: the link used longest ago makes room.
            if let Some(oldest) = links
                .iter()
                .min_by_key(|(_, l)| l.last)
                .map(|(k, _)| k.clone())
            {
                links.remove(&oldest);
            }
        }
        let link = links.entry(key).or_insert(Link {
            last: now,
            tracks: Vec::new(),
        });
        link.last = now;
        let Some((fields, name)) = track else { return };
        match link
            .tracks
            .iter_mut()
            .find(|t| t.fields == fields && t.name == name)
        {
            Some(t) => {
                t.subscribes = t.subscribes.saturating_add(1);
                t.last = now;
            }
            None => {
                if link.tracks.len() >= MAX_LINK_TRACKS {
                    let oldest = (0..link.tracks.len()).min_by_key(|&i| link.tracks[i].last);
                    if let Some(i) = oldest {
                        link.tracks.swap_remove(i);
                    }
                }
                link.tracks.push(Track {
                    fields: fields.to_vec(),
                    name: name.to_string(),
                    subscribes: 1,
                    last: now,
                });
            }
        }
    }

    /// A heartbeat reply listed the live peers: links to relays not among
    /// them, and not handed out for `grace` (the peer list lags a new relay),
    /// are gone.
    pub(crate) fn keep_live<'a>(
        &self,
        peer_urls: impl IntoIterator<Item = &'a str>,
        grace: Duration,
    ) {
        let live: HashSet<String> = peer_urls
            .into_iter()
            .filter_map(|u| Url::parse(u).ok())
            .map(|u| relay_origin(&u))
            .collect();
        self.links
            .lock()
            .unwrap()
            .retain(|(url, _), link| live.contains(url) || link.last.elapsed() < grace);
    }

    /// The report for the next heartbeat, links and tracks most recent first.
    pub(crate) fn report(&self) -> proto::RelayActivity {
        let links = self.links.lock().unwrap();
        let mut upstreams: Vec<_> = links.iter().collect();
        upstreams.sort_by_key(|(_, l)| std::cmp::Reverse(l.last));
        proto::RelayActivity {
            upstreams: upstreams
                .into_iter()
                .map(|((url, scope), link)| {
                    let mut tracks: Vec<_> = link.tracks.iter().collect();
                    tracks.sort_by_key(|t| std::cmp::Reverse(t.last));
                    proto::UpstreamLink {
                        relay_url: url.clone(),
                        scope: scope.clone(),
                        idle_ms: link.last.elapsed().as_millis() as u64,
                        tracks: tracks
                            .into_iter()
                            .map(|t| proto::PulledTrack {
                                namespace: Some(proto::Namespace {
                                    fields: t.fields.clone(),
                                }),
                                track: t.name.clone(),
                                subscribes: t.subscribes,
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn links_are_keyed_by_relay_and_scope_without_the_link_path() {
        let u = Upstreams::default();
        let ns = vec![b"clock".to_vec()];
        u.used(
            Some("a"),
            &url("https://r1:4443/_relay/YQ/mac"),
            Some((&ns, "now")),
        );
        u.used(
            Some("a"),
            &url("https://r1:4443/_relay/YQ/mac"),
            Some((&ns, "now")),
        );
        u.used(Some("b"), &url("https://r1:4443/_relay/Yg/mac"), None);
        let report = u.report();
        assert_eq!(report.upstreams.len(), 2);
        let a = report
            .upstreams
            .iter()
            .find(|l| l.scope.as_deref() == Some("a"))
            .unwrap();
        assert_eq!(a.relay_url, "https://r1:4443/");
        assert_eq!(a.tracks.len(), 1);
        assert_eq!(a.tracks[0].subscribes, 2);
    }

    #[test]
    fn the_report_stays_within_the_workers_bounds() {
        let u = Upstreams::default();
        for i in 0..MAX_UPSTREAMS + 5 {
            u.used(None, &url(&format!("https://r{i}:4443/")), None);
        }
        let ns = vec![b"n".to_vec()];
        for i in 0..MAX_LINK_TRACKS + 5 {
            u.used(
                None,
                &url("https://r0:4443/"),
                Some((&ns, &format!("t{i}"))),
            );
        }
        let report = u.report();
        assert_eq!(report.upstreams.len(), MAX_UPSTREAMS);
        assert!(report
            .upstreams
            .iter()
            .all(|l| l.tracks.len() <= MAX_LINK_TRACKS));
        // The most recent link comes first and kept its newest tracks.
        assert_eq!(report.upstreams[0].relay_url, "https://r0:4443/");
        assert!(report.upstreams[0]
            .tracks
            .iter()
            .any(|t| t.track == format!("t{}", MAX_LINK_TRACKS + 4)));
    }

    #[test]
    fn links_to_relays_that_left_go_after_the_grace() {
        let u = Upstreams::default();
        u.used(None, &url("https://gone:4443/"), None);
        u.used(None, &url("https://live:4443/_relay/x/y"), None);
        // Within the grace the peer list may not list a new relay yet.
        u.keep_live(["https://live:4443/"], Duration::from_secs(60));
        assert_eq!(u.report().upstreams.len(), 2);
        u.keep_live(["https://live:4443/"], Duration::ZERO);
        let report = u.report();
        assert_eq!(report.upstreams.len(), 1);
        assert_eq!(report.upstreams[0].relay_url, "https://live:4443/");
    }
}
