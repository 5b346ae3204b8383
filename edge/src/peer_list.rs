//! The live-peer list the edge holds, and what each Heartbeat answer does to
//! it (coordinator.proto, HeartbeatResponse): nothing (`peers_unchanged`),
//! the changes since the version the request said it held (`peers_delta`),
//! a first page whose rest ListPeers gives (`peers_more`), or the whole list.
//!
//! Pure: [`Held::take`] says which paging to run, if any, and the caller
//! (liveness.rs) reads the pages and hands the result to [`Held::paged`].
//! Until every page is in, the old list and version stay, so the next beat
//! still names what the edge really holds.

use std::collections::BTreeMap;

use crate::proto;

/// A version of the peer list: each relay's addrs by its URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PeerList {
    /// The Worker's name for it (HeartbeatResponse.peers_version; 0: none).
    pub(crate) version: u64,
    peers: BTreeMap<String, Vec<String>>,
}

impl PeerList {
    pub(crate) fn whole(version: u64, peers: &[proto::PeerRelay]) -> Self {
        let mut list = Self {
            version,
            peers: BTreeMap::new(),
        };
        list.upsert(peers);
        list
    }

    fn upsert(&mut self, peers: &[proto::PeerRelay]) {
        for peer in peers {
            self.peers.insert(peer.url.clone(), peer.addrs.clone());
        }
    }

    /// This list turned into `version` by a delta: `changed` relays are new
    /// or have new addrs, `gone` URLs left.
    pub(crate) fn with_delta(
        &self,
        version: u64,
        changed: &[proto::PeerRelay],
        gone: &[String],
    ) -> Self {
        let mut next = self.clone();
        next.version = version;
        for url in gone {
            next.peers.remove(url);
        }
        next.upsert(changed);
        next
    }

    pub(crate) fn urls(&self) -> impl Iterator<Item = &str> {
        self.peers.keys().map(String::as_str)
    }

    pub(crate) fn addrs(&self) -> impl Iterator<Item = &str> {
        self.peers.values().flatten().map(String::as_str)
    }

    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }
}

/// A list being read a page at a time: the first from a Heartbeat answer,
/// the rest from ListPeers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pages {
    list: PeerList,
    /// The last URL received: where the next page starts.
    after: String,
}

impl Pages {
    pub(crate) fn first(version: u64, page: &[proto::PeerRelay]) -> Self {
        Self {
            list: PeerList::whole(version, page),
            after: page.last().map(|p| p.url.clone()).unwrap_or_default(),
        }
    }

    /// The ListPeers request for the next page.
    pub(crate) fn next_request(&self) -> proto::ListPeersRequest {
        proto::ListPeersRequest {
            peers_version: self.list.version,
            after: self.after.clone(),
        }
    }

    /// Adds the next page: the whole list when it was the last one. A page
    /// that says more follows but adds nothing would be asked for forever.
    pub(crate) fn add(mut self, page: proto::ListPeersResponse) -> Result<Next, &'static str> {
        if let Some(last) = page.peers.last() {
            self.after = last.url.clone();
        } else if page.more {
            return Err("an empty page that says more follows");
        }
        self.list.upsert(&page.peers);
        Ok(if page.more {
            Next::More(self)
        } else {
            Next::Done(self.list)
        })
    }

    pub(crate) fn version(&self) -> u64 {
        self.list.version
    }
}

/// Where a paging stands after a page.
#[derive(Debug)]
pub(crate) enum Next {
    More(Pages),
    Done(PeerList),
}

/// A paging to run: its pages so far, and its number, which
/// [`Held::paged`] needs to install the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Paging {
    pub(crate) id: u64,
    pub(crate) pages: Pages,
}

/// The list held, and the one paging in progress.
#[derive(Debug, Default)]
pub(crate) struct Held {
    pub(crate) list: PeerList,
    /// The paging in progress (its id and version). Any list installed in
    /// the meantime ends it, so a slow paging cannot install an older list.
    paging: Option<(u64, u64)>,
    pagings: u64,
}

impl Held {
    /// Takes in a Heartbeat answer to a request that said it held `base`;
    /// returns the paging it begins, if any.
    pub(crate) fn take(&mut self, base: u64, resp: &proto::HeartbeatResponse) -> Option<Paging> {
        if resp.peers_unchanged {
            return None;
        }
        // Version 0 names no list: the Worker had none to give, which says
        // nothing about the network.
        if resp.peers_version == 0 {
            return None;
        }
        if resp.peers_delta {
            // Changes since `base`: on any other list they would be wrong
            // (another answer was installed meanwhile); the next beat
            // asks again from the list held.
            if base == self.list.version {
                self.install(self.list.with_delta(
                    resp.peers_version,
                    &resp.peers,
                    &resp.peers_gone,
                ));
            }
            return None;
        }
        if resp.peers_more {
            let version = resp.peers_version;
            let in_progress = self.paging.is_some_and(|(_, v)| v == version);
            if in_progress || self.list.version == version {
                return None;
            }
            self.pagings += 1;
            self.paging = Some((self.pagings, version));
            return Some(Paging {
                id: self.pagings,
                pages: Pages::first(version, &resp.peers),
            });
        }
        self.install(PeerList::whole(resp.peers_version, &resp.peers));
        None
    }

    /// Paging `id` ended: with the whole list, or failed (`None`: its pages
    /// are dropped). Returns whether it installed a list: not when a newer
    /// answer came meanwhile.
    pub(crate) fn paged(&mut self, id: u64, list: Option<PeerList>) -> bool {
        if self.paging.is_none_or(|(current, _)| current != id) {
            return false;
        }
        self.paging = None;
        match list {
            Some(list) => {
                self.list = list;
                true
            }
            None => false,
        }
    }

    fn install(&mut self, list: PeerList) {
        self.list = list;
        self.paging = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(url: &str, addr: &str) -> proto::PeerRelay {
        proto::PeerRelay {
            url: url.into(),
            addrs: vec![addr.into()],
        }
    }

    fn urls(list: &PeerList) -> Vec<&str> {
        list.urls().collect()
    }

    fn whole(version: u64, peers: Vec<proto::PeerRelay>) -> proto::HeartbeatResponse {
        proto::HeartbeatResponse {
            peers_version: version,
            peers,
            ..Default::default()
        }
    }

    fn delta(
        version: u64,
        peers: Vec<proto::PeerRelay>,
        gone: &[&str],
    ) -> proto::HeartbeatResponse {
        proto::HeartbeatResponse {
            peers_version: version,
            peers,
            peers_delta: true,
            peers_gone: gone.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    fn first_page(version: u64, peers: Vec<proto::PeerRelay>) -> proto::HeartbeatResponse {
        proto::HeartbeatResponse {
            peers_version: version,
            peers,
            peers_more: true,
            ..Default::default()
        }
    }

    fn page(peers: Vec<proto::PeerRelay>, more: bool) -> proto::ListPeersResponse {
        proto::ListPeersResponse { peers, more }
    }

    #[test]
    fn a_delta_adds_changes_and_removes_by_url() {
        let mut held = Held::default();
        held.take(0, &whole(1, vec![peer("a", "1:1"), peer("b", "2:2")]));
        let resp = delta(2, vec![peer("b", "2:3"), peer("c", "3:3")], &["a", "z"]);
        assert_eq!(held.take(1, &resp), None);
        assert_eq!(held.list.version, 2);
        assert_eq!(urls(&held.list), ["b", "c"]);
        assert_eq!(held.list.addrs().collect::<Vec<_>>(), ["2:3", "3:3"]);
    }

    #[test]
    fn a_delta_from_another_version_is_not_applied() {
        let mut held = Held::default();
        held.take(0, &whole(3, vec![peer("a", "1:1")]));
        // The request was sent while version 2 was held.
        held.take(2, &delta(4, vec![], &["a"]));
        assert_eq!(held.list.version, 3);
        assert_eq!(urls(&held.list), ["a"]);
    }

    #[test]
    fn an_answer_naming_no_list_keeps_the_list() {
        let mut held = Held::default();
        held.take(0, &whole(1, vec![peer("a", "1:1")]));
        // Version 0: the Worker had no list to give (its shard unreachable).
        assert_eq!(held.take(1, &whole(0, vec![])), None);
        assert_eq!(held.list.version, 1);
        assert_eq!(urls(&held.list), ["a"]);
    }

    #[test]
    fn unchanged_keeps_the_list() {
        let mut held = Held::default();
        held.take(0, &whole(1, vec![peer("a", "1:1")]));
        let unchanged = proto::HeartbeatResponse {
            peers_version: 1,
            peers_unchanged: true,
            ..Default::default()
        };
        assert_eq!(held.take(1, &unchanged), None);
        assert_eq!(urls(&held.list), ["a"]);
    }

    #[test]
    fn pages_assemble_into_the_whole_list() {
        let pages = Pages::first(7, &[peer("a", "1:1"), peer("b", "2:2")]);
        assert_eq!(pages.next_request().after, "b");
        assert_eq!(pages.next_request().peers_version, 7);
        let Ok(Next::More(pages)) = pages.add(page(vec![peer("c", "3:3"), peer("d", "4:4")], true))
        else {
            panic!("more to come");
        };
        assert_eq!(pages.next_request().after, "d");
        let Ok(Next::Done(list)) = pages.add(page(vec![peer("e", "5:5")], false)) else {
            panic!("the last page");
        };
        assert_eq!(list.version, 7);
        assert_eq!(urls(&list), ["a", "b", "c", "d", "e"]);
        // An empty last page ends it too; an empty page saying more is refused.
        let pages = Pages::first(8, &[peer("a", "1:1")]);
        assert!(matches!(
            pages.clone().add(page(vec![], false)),
            Ok(Next::Done(_))
        ));
        assert!(pages.add(page(vec![], true)).is_err());
    }

    #[test]
    fn the_old_list_stays_until_every_page_is_in() {
        let mut held = Held::default();
        held.take(0, &whole(1, vec![peer("a", "1:1")]));
        let paging = held
            .take(1, &first_page(2, vec![peer("b", "2:2")]))
            .expect("a paging begins");
        assert_eq!(paging.pages.version(), 2);
        assert_eq!(held.list.version, 1, "still the old version");
        assert_eq!(urls(&held.list), ["a"]);
        // The next beat's answer repeats the first page: the paging goes on.
        assert_eq!(held.take(1, &first_page(2, vec![peer("b", "2:2")])), None);
        let Ok(Next::Done(list)) = paging.pages.add(page(vec![peer("c", "3:3")], false)) else {
            panic!("the last page");
        };
        assert!(held.paged(paging.id, Some(list)));
        assert_eq!(held.list.version, 2);
        assert_eq!(urls(&held.list), ["b", "c"]);
    }

    #[test]
    fn a_failed_paging_keeps_the_old_list_and_the_next_beat_starts_over() {
        let mut held = Held::default();
        held.take(0, &whole(1, vec![peer("a", "1:1")]));
        let paging = held
            .take(1, &first_page(2, vec![peer("b", "2:2")]))
            .unwrap();
        assert!(!held.paged(paging.id, None));
        assert_eq!(held.list.version, 1);
        let again = held.take(1, &first_page(2, vec![peer("b", "2:2")]));
        assert!(again.is_some_and(|p| p.id != paging.id));
    }

    #[test]
    fn a_stale_paging_cannot_install_its_list() {
        let mut held = Held::default();
        let old = held
            .take(0, &first_page(2, vec![peer("a", "1:1")]))
            .unwrap();
        // A newer first page replaces it ...
        let new = held
            .take(0, &first_page(3, vec![peer("b", "2:2")]))
            .unwrap();
        assert!(!held.paged(old.id, Some(PeerList::whole(2, &[peer("a", "1:1")]))));
        assert_eq!(held.list.version, 0);
        // ... and so does a whole list.
        held.take(0, &whole(4, vec![peer("c", "3:3")]));
        assert!(!held.paged(new.id, Some(PeerList::whole(3, &[peer("b", "2:2")]))));
        assert_eq!(held.list.version, 4);
        assert_eq!(urls(&held.list), ["c"]);
    }
}
