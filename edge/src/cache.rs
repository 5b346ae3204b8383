//! The lookup cache's state machine: which answers may be served from
//! memory, per the rules of `schema/moqworker/v1/watch.proto`. Pure and
//! synchronous (no I/O, no clock): the coordinator holds it under a mutex,
//! the watch task feeds it events, and the tests drive it directly.
//!
//! Exactness rests on one logical clock shared by every scope. Each event
//! (hello, invalidation, local write, channel down) ticks it. A request
//! takes a [`Ticket`] (the clock) before it is sent; its answer is stored
//! only if the scope's hello came before the ticket and no event after the
//! ticket covers the answer's key. Each scope keeps a short log of recent
//! invalidations for that check; an answer older than the log is dropped.
//! The log keeps only what a ticket still outstanding may need (a request
//! settles its ticket when it ends), and never more than `log_capacity`.
//!
//! A scope has state only while it is watched: its first read opens it
//! ([`Cache::touch`], which names the channel that may feed it), and it is
//! released with everything it holds when it has not been read for the idle
//! period or when more scopes than the cap are watched (least recently read
//! first). Events from a channel that is not the scope's current one change
//! nothing, so a released channel's task cannot revive its scope.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `None` is the unscoped space.
pub type Scope = Option<String>;
/// A namespace as its tuple fields.
pub type Fields = Vec<Vec<u8>>;

/// What an answer is about, within one scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// Lookup (`track: None`) or LookupTrack of a namespace. Ordered by
    /// namespace first, so a prefix's entries are one contiguous range.
    Route { ns: Fields, track: Option<String> },
    /// GetScopeConfig.
    Config,
    /// ResolveScope of a connection path that resolved to this scope.
    Path(String),
}

/// What changed (a `WatchInvalidate`, or this relay's own write).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Invalidation {
    /// Route answers for namespaces starting with one of these.
    pub namespaces: Vec<Fields>,
    /// Route answers for these exact tracks.
    pub tracks: Vec<(Fields, String)>,
    pub config: bool,
    pub paths: Vec<String>,
    pub all: bool,
}

impl Invalidation {
    fn covers(&self, key: &Key) -> bool {
        if self.all {
            return true;
        }
        match key {
            Key::Route { ns, track } => {
                self.namespaces.iter().any(|p| ns.starts_with(p))
                    || track
                        .as_ref()
                        .is_some_and(|t| self.tracks.iter().any(|(tns, tt)| tns == ns && tt == t))
            }
            Key::Config => self.config,
            Key::Path(path) => self.paths.iter().any(|p| p == path),
        }
    }
}

/// The clock when a request started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// A watch event did not follow the last one: the scope was reset and must
/// resync from a new hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub expected: u64,
    pub got: u64,
}

/// Counts for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: usize,
    pub up_scopes: usize,
    pub hits: u64,
    /// Invalidations received in sequence on watch channels.
    pub events: u64,
    /// Worker calls started for misses that could be stored (identical
    /// misses meanwhile share them).
    pub flights: u64,
    /// Entries dropped by invalidations (pushed or local).
    pub invalidated: u64,
    /// Entries dropped because the bound was reached.
    pub evicted: u64,
    /// Answers not stored because an event may have made them stale.
    pub refused: u64,
    /// Scopes watched now (each has a channel, up or not).
    pub watched: usize,
    /// Scopes released (idle or over the cap) with their channel and state.
    pub released: u64,
}

/// Why a watched scope was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseReason {
    /// Not read for the idle period.
    Idle,
    /// More scopes than the cap; this one was read least recently.
    Cap,
}

impl ReleaseReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Cap => "cap",
        }
    }
}

/// What noting a read changed: a channel to open (its id), and scopes
/// released to stay within the cap (their channels to close).
#[derive(Debug, Default, PartialEq)]
pub struct Touched {
    pub opened: Option<u64>,
    pub released: Vec<(Scope, u64)>,
}

/// How many scopes may be watched and for how long unread.
#[derive(Debug, Clone, Copy)]
pub struct ScopeLimits {
    pub max_scopes: usize,
    pub idle: Duration,
}

struct ScopeState<V> {
    /// The channel (watch task) that feeds this scope.
    channel: u64,
    /// Last read: logical stamp (key in `scope_recency`) and time.
    read_stamp: u64,
    read_at: Instant,
    /// Clock at the hello of the live channel; `None` while down.
    up_since: Option<u64>,
    seq: u64,
    /// The key is shared with `recency` (one allocation per entry).
    entries: BTreeMap<Arc<Key>, (V, u64)>,
    /// Invalidations after `log_floor`, oldest first, with their clock.
    log: VecDeque<(u64, Invalidation)>,
    /// Events at or before this clock are not in `log`.
    log_floor: u64,
}

impl<V> ScopeState<V> {
    fn new(clock: u64, channel: u64, read_at: Instant) -> Self {
        Self {
            channel,
            read_stamp: clock,
            read_at,
            up_since: None,
            seq: 0,
            entries: BTreeMap::new(),
            log: VecDeque::new(),
            log_floor: clock,
        }
    }
}

/// Bounded cache of answers per scope, with least-recently-used eviction,
/// plus the in-flight requests (`F`) that identical misses share.
pub struct Cache<V, F> {
    clock: u64,
    capacity: usize,
    log_capacity: usize,
    limits: ScopeLimits,
    scopes: HashMap<Scope, ScopeState<V>>,
    /// Last read → scope; the first is released first over the cap.
    scope_recency: BTreeMap<u64, Scope>,
    /// Tickets of requests still in flight (clock → how many).
    pending: BTreeMap<u64, usize>,
    next_channel: u64,
    /// Last use → entry; the first is the eviction victim.
    recency: BTreeMap<u64, (Scope, Arc<Key>)>,
    /// Which scope a cached path resolved to.
    paths: HashMap<String, Scope>,
    flights: HashMap<(Scope, Key), (u64, F)>,
    stats: Stats,
}

impl<V: Clone, F: Clone> Cache<V, F> {
    /// `capacity` entries at most over all scopes; each scope remembers its
    /// last `log_capacity` invalidations to judge answers still in flight;
    /// `limits` bounds the scopes watched.
    pub fn new(capacity: usize, log_capacity: usize, limits: ScopeLimits) -> Self {
        Self {
            clock: 0,
            capacity: capacity.max(1),
            log_capacity: log_capacity.max(1),
            limits: ScopeLimits {
                max_scopes: limits.max_scopes.max(1),
                ..limits
            },
            scopes: HashMap::new(),
            scope_recency: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_channel: 0,
            recency: BTreeMap::new(),
            paths: HashMap::new(),
            flights: HashMap::new(),
            stats: Stats::default(),
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Take before sending the request whose answer may be stored, and
    /// [`settle`](Self::settle) when it ended (stored or not): until then
    /// the invalidation logs keep what judging its answer needs.
    pub fn ticket(&mut self) -> Ticket {
        *self.pending.entry(self.clock).or_default() += 1;
        Ticket(self.clock)
    }

    /// Tickets not settled yet.
    #[cfg(test)]
    pub(crate) fn pending_tickets(&self) -> usize {
        self.pending.values().sum()
    }

    /// The request of `ticket` ended; its answer will not be offered.
    pub fn settle(&mut self, ticket: Ticket) {
        if let Some(n) = self.pending.get_mut(&ticket.0) {
            *n -= 1;
            if *n == 0 {
                self.pending.remove(&ticket.0);
            }
        }
    }

    /// Whether `scope`'s channel has said hello and is not known to be down.
    pub fn is_up(&self, scope: &Scope) -> bool {
        self.scopes.get(scope).is_some_and(|s| s.up_since.is_some())
    }

    pub fn stats(&self) -> Stats {
        Stats {
            entries: self.recency.len(),
            up_scopes: self
                .scopes
                .values()
                .filter(|s| s.up_since.is_some())
                .count(),
            watched: self.scopes.len(),
            ..self.stats
        }
    }

    /// Note a read of `scope` at `now`: opens the scope (a new channel id
    /// for the caller to start) if it is not watched, and releases the least
    /// recently read scopes beyond the cap.
    pub fn touch(&mut self, scope: &Scope, now: Instant) -> Touched {
        let stamp = self.tick_for_use();
        let mut touched = Touched::default();
        match self.scopes.get_mut(scope) {
            Some(state) => {
                self.scope_recency.remove(&state.read_stamp);
                state.read_stamp = stamp;
                state.read_at = now;
            }
            None => {
                self.next_channel += 1;
                let channel = self.next_channel;
                self.scopes
                    .insert(scope.clone(), ScopeState::new(stamp, channel, now));
                touched.opened = Some(channel);
            }
        }
        self.scope_recency.insert(stamp, scope.clone());
        while self.scope_recency.len() > self.limits.max_scopes {
            let (_, victim) = self.scope_recency.pop_first().expect("non-empty");
            if let Some(channel) = self.release(&victim) {
                touched.released.push((victim, channel));
            }
        }
        touched
    }

    /// Release every scope not read for the idle period before `now`;
    /// returns them with their channel ids (to close).
    pub fn release_idle(&mut self, now: Instant) -> Vec<(Scope, u64)> {
        let mut released = Vec::new();
        while let Some((_, scope)) = self.scope_recency.first_key_value() {
            let idle = self
                .scopes
                .get(scope)
                .is_none_or(|s| now.saturating_duration_since(s.read_at) >= self.limits.idle);
            if !idle {
                // Read order is time order: the rest were read later.
                break;
            }
            let (_, scope) = self.scope_recency.pop_first().expect("non-empty");
            if let Some(channel) = self.release(&scope) {
                released.push((scope, channel));
            }
        }
        released
    }

    /// Forget `scope` entirely (entries, log, flights, channel), as if it had
    /// never been read. An answer in flight for it is refused when it lands:
    /// the scope is gone, or reopened with a hello after its ticket.
    fn release(&mut self, scope: &Scope) -> Option<u64> {
        self.reset(scope);
        let state = self.scopes.remove(scope)?;
        self.scope_recency.remove(&state.read_stamp);
        self.stats.released += 1;
        Some(state.channel)
    }

    /// Whether `channel` is the one feeding `scope` (not released since).
    pub fn is_current(&self, scope: &Scope, channel: u64) -> bool {
        self.scopes.get(scope).is_some_and(|s| s.channel == channel)
    }

    /// A cached answer, only while the scope's channel is up.
    pub fn get(&mut self, scope: &Scope, key: &Key) -> Option<V> {
        let now = self.tick_for_use();
        let state = self.scopes.get_mut(scope)?;
        state.up_since?;
        let (value, used) = state.entries.get_mut(key)?;
        let old = std::mem::replace(used, now);
        let value = value.clone();
        self.stats.hits += 1;
        let entry = self.recency.remove(&old).expect("recency tracks entries");
        self.recency.insert(now, entry);
        Some(value)
    }

    /// Uses share the event clock so recency stamps are unique; a use is
    /// not an event, but ticking for it only makes tickets more recent,
    /// which never lets an answer through that the rules would refuse.
    fn tick_for_use(&mut self) -> u64 {
        self.tick()
    }

    /// The scope of a cached ResolveScope answer for `path`, if any.
    pub fn path_scope(&self, path: &str) -> Option<Scope> {
        self.paths.get(path).cloned()
    }

    /// Store an answer to a request sent at `ticket`, if the rules allow.
    /// Returns whether it was stored.
    pub fn insert(&mut self, scope: &Scope, key: Key, ticket: Ticket, value: V) -> bool {
        let Some(state) = self.scopes.get(scope) else {
            self.stats.refused += 1;
            return false;
        };
        let current = match state.up_since {
            // Hello arrived before the request started (rule 1), the log
            // reaches back to the request, and nothing since covers it (3).
            Some(hello) => {
                hello <= ticket.0
                    && state.log_floor <= ticket.0
                    && !state
                        .log
                        .iter()
                        .rev()
                        .take_while(|(at, _)| *at > ticket.0)
                        .any(|(_, inv)| inv.covers(&key))
            }
            None => false,
        };
        if !current {
            self.stats.refused += 1;
            return false;
        }
        let now = self.tick_for_use();
        let state = self.scopes.get_mut(scope).expect("checked above");
        if let Key::Path(path) = &key {
            self.paths.insert(path.clone(), scope.clone());
        }
        let key = Arc::new(key);
        if let Some((_, old)) = state.entries.insert(key.clone(), (value, now)) {
            self.recency.remove(&old);
        }
        self.recency.insert(now, (scope.clone(), key));
        while self.recency.len() > self.capacity {
            let (_, (victim_scope, victim)) = self.recency.pop_first().expect("non-empty");
            self.remove_entry(&victim_scope, &victim);
            self.stats.evicted += 1;
        }
        true
    }

    /// Removes an entry from its scope and the path index (not from
    /// `recency`, which the caller handles).
    fn remove_entry(&mut self, scope: &Scope, key: &Key) {
        if let Some(state) = self.scopes.get_mut(scope) {
            state.entries.remove(key);
        }
        if let Key::Path(path) = key {
            if self.paths.get(path) == Some(scope) {
                self.paths.remove(path);
            }
        }
    }

    /// The first event on a (re)connected channel. Everything cached for the
    /// scope from before is dropped: changes may have been missed meanwhile.
    /// Returns false (and changes nothing) if `channel` no longer feeds the
    /// scope: its task should stop.
    pub fn hello(&mut self, scope: &Scope, channel: u64, seq: u64) -> bool {
        if !self.is_current(scope, channel) {
            return false;
        }
        self.reset(scope);
        let now = self.clock;
        let state = self.scopes.get_mut(scope).expect("checked above");
        state.up_since = Some(now);
        state.seq = seq;
        true
    }

    /// The channel closed, went silent or is not wanted: stop answering.
    /// Returns false if `channel` no longer feeds the scope.
    pub fn down(&mut self, scope: &Scope, channel: u64) -> bool {
        if !self.is_current(scope, channel) {
            return false;
        }
        self.reset(scope);
        true
    }

    fn reset(&mut self, scope: &Scope) {
        let now = self.tick();
        let Some(state) = self.scopes.get_mut(scope) else {
            return;
        };
        state.up_since = None;
        state.log.clear();
        state.log_floor = now;
        let entries = std::mem::take(&mut state.entries);
        for (key, (_, used)) in entries {
            self.recency.remove(&used);
            if let Key::Path(path) = key.as_ref() {
                if self.paths.get(path) == Some(scope) {
                    self.paths.remove(path);
                }
            }
        }
        self.flights.retain(|(s, _), _| s != scope);
    }

    /// An invalidation received on `scope`'s channel with sequence `seq`.
    /// A gap resets the scope (it answers nothing until a new hello).
    pub fn event(
        &mut self,
        scope: &Scope,
        channel: u64,
        seq: u64,
        inv: Invalidation,
    ) -> Result<(), Gap> {
        let Some(state) = self
            .scopes
            .get(scope)
            .filter(|s| s.up_since.is_some() && s.channel == channel)
        else {
            // Not after a hello, or a released channel: nothing is cached
            // from it, nothing to check.
            return Ok(());
        };
        let expected = state.seq + 1;
        if seq != expected {
            self.reset(scope);
            return Err(Gap { expected, got: seq });
        }
        self.scopes.get_mut(scope).expect("checked").seq = seq;
        self.stats.events += 1;
        self.invalidate(scope, inv);
        Ok(())
    }

    /// Drop every answer `inv` covers and remember it for answers in
    /// flight. Also used for this relay's own writes (read-your-writes).
    /// A scope not watched holds nothing, and any answer in flight for it
    /// is refused (its hello, if it reopens, comes after the ticket).
    pub fn invalidate(&mut self, scope: &Scope, inv: Invalidation) {
        let now = self.tick();
        let Some(state) = self.scopes.get_mut(scope) else {
            return;
        };
        let covered: Vec<Key> = if inv.all {
            state.entries.keys().map(|k| Key::clone(k)).collect()
        } else {
            let mut keys = Vec::new();
            for prefix in &inv.namespaces {
                let start = Key::Route {
                    ns: prefix.clone(),
                    track: None,
                };
                keys.extend(
                    state
                        .entries
                        .range(start..)
                        .map(|(k, _)| k)
                        .take_while(
                            |k| matches!(k.as_ref(), Key::Route { ns, .. } if ns.starts_with(prefix)),
                        )
                        .map(|k| Key::clone(k)),
                );
            }
            for (ns, track) in &inv.tracks {
                keys.push(Key::Route {
                    ns: ns.clone(),
                    track: Some(track.clone()),
                });
            }
            if inv.config {
                keys.push(Key::Config);
            }
            keys.extend(inv.paths.iter().cloned().map(Key::Path));
            keys
        };
        for key in covered {
            if let Some((_, used)) = state.entries.remove(&key) {
                self.recency.remove(&used);
                self.stats.invalidated += 1;
                if let Key::Path(path) = &key {
                    if self.paths.get(path) == Some(scope) {
                        self.paths.remove(path);
                    }
                }
            }
        }
        // Identical misses from now on must not share an older request.
        self.flights
            .retain(|(s, key), _| s != scope || !inv.covers(key));
        state.log.push_back((now, inv));
        // An entry matters only to tickets older than it. Dropping one only
        // raises the floor, which refuses answers: it is always safe.
        let needed_after = self
            .pending
            .first_key_value()
            .map_or(self.clock, |(oldest, _)| *oldest);
        while state
            .log
            .front()
            .is_some_and(|(at, _)| *at <= needed_after || state.log.len() > self.log_capacity)
        {
            let (at, _) = state.log.pop_front().expect("non-empty");
            state.log_floor = at;
        }
    }

    /// The request in flight for this key, to share instead of sending one.
    pub fn flight(&self, scope: &Scope, key: &Key) -> Option<F> {
        self.flights
            .get(&(scope.clone(), key.clone()))
            .map(|(_, f)| f.clone())
    }

    /// Record a request in flight; `id` tells it apart from a later one for
    /// the same key when it ends.
    pub fn start_flight(&mut self, scope: &Scope, key: Key, id: u64, flight: F) {
        self.stats.flights += 1;
        self.flights.insert((scope.clone(), key), (id, flight));
    }

    pub fn end_flight(&mut self, scope: &Scope, key: &Key, id: u64) {
        let k = (scope.clone(), key.clone());
        if self.flights.get(&k).is_some_and(|(i, _)| *i == id) {
            self.flights.remove(&k);
        }
    }

    /// Release every scope (shutdown); returns their channel ids.
    pub fn clear(&mut self) -> Vec<(Scope, u64)> {
        let scopes: Vec<Scope> = self.scopes.keys().cloned().collect();
        scopes
            .into_iter()
            .filter_map(|scope| self.release(&scope).map(|channel| (scope, channel)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type C = Cache<&'static str, u32>;

    fn s(name: &str) -> Scope {
        Some(name.to_string())
    }
    fn ns(path: &str) -> Fields {
        path.split('/').map(|f| f.as_bytes().to_vec()).collect()
    }
    fn route(path: &str, track: Option<&str>) -> Key {
        Key::Route {
            ns: ns(path),
            track: track.map(str::to_string),
        }
    }
    const LIMITS: ScopeLimits = ScopeLimits {
        max_scopes: 100,
        idle: Duration::from_secs(60),
    };
    /// Watch `scope` (a read) and say hello on its channel.
    fn up(c: &mut C, scope: &Scope) -> u64 {
        c.touch(scope, Instant::now());
        let channel = chan(c, scope);
        assert!(c.hello(scope, channel, 10));
        channel
    }
    fn chan(c: &C, scope: &Scope) -> u64 {
        c.scopes[scope].channel
    }
    fn ev(c: &mut C, scope: &Scope, seq: u64, inv: Invalidation) -> Result<(), Gap> {
        let channel = chan(c, scope);
        c.event(scope, channel, seq, inv)
    }

    #[test]
    fn nothing_is_cached_before_hello() {
        let mut c = C::new(10, 10, LIMITS);
        let t = c.ticket();
        assert!(!c.insert(&s("a"), route("x", None), t, "A"));
        c.touch(&s("a"), Instant::now());
        assert!(!c.insert(&s("a"), route("x", None), t, "A"));
        assert_eq!(c.get(&s("a"), &route("x", None)), None);
    }

    #[test]
    fn a_request_sent_before_hello_is_not_cached() {
        let mut c = C::new(10, 10, LIMITS);
        let t = c.ticket();
        up(&mut c, &s("a"));
        assert!(!c.insert(&s("a"), route("x", None), t, "A"));
        let t = c.ticket();
        assert!(c.insert(&s("a"), route("x", None), t, "A"));
        assert_eq!(c.get(&s("a"), &route("x", None)), Some("A"));
        // Scopes are separate.
        assert_eq!(c.get(&None, &route("x", None)), None);
    }

    #[test]
    fn seq_gap_resets_and_needs_a_new_hello() {
        let mut c = C::new(10, 10, LIMITS);
        up(&mut c, &s("a"));
        let t = c.ticket();
        c.insert(&s("a"), route("x", Some("t")), t, "A");
        assert_eq!(ev(&mut c, &s("a"), 11, Invalidation::default()), Ok(()));
        assert_eq!(c.get(&s("a"), &route("x", Some("t"))), Some("A"));
        assert_eq!(
            ev(&mut c, &s("a"), 13, Invalidation::default()),
            Err(Gap {
                expected: 12,
                got: 13
            })
        );
        assert!(!c.is_up(&s("a")));
        assert_eq!(c.get(&s("a"), &route("x", Some("t"))), None);
        let t = c.ticket();
        assert!(!c.insert(&s("a"), route("x", Some("t")), t, "A"));
        c.hello(&s("a"), chan(&c, &s("a")), 13);
        assert_eq!(
            c.get(&s("a"), &route("x", Some("t"))),
            None,
            "resync drops all"
        );
        let t = c.ticket();
        assert!(c.insert(&s("a"), route("x", Some("t")), t, "A"));
        assert_eq!(ev(&mut c, &s("a"), 14, Invalidation::default()), Ok(()));
    }

    #[test]
    fn an_invalidation_during_a_miss_keeps_its_answer_out() {
        let mut c = C::new(10, 10, LIMITS);
        up(&mut c, &s("a"));
        let t = c.ticket();
        let inv = Invalidation {
            tracks: vec![(ns("x"), "t".into())],
            ..Default::default()
        };
        ev(&mut c, &s("a"), 11, inv).unwrap();
        assert!(!c.insert(&s("a"), route("x", Some("t")), t, "old"));
        // An invalidation of something else does not matter.
        assert!(c.insert(&s("a"), route("x", Some("u")), t, "U"));
        // A local write counts the same as a pushed one.
        let t = c.ticket();
        c.invalidate(
            &s("a"),
            Invalidation {
                namespaces: vec![ns("x")],
                ..Default::default()
            },
        );
        assert!(!c.insert(&s("a"), route("x/y", None), t, "old"));
        assert_eq!(c.get(&s("a"), &route("x", Some("u"))), None);
    }

    #[test]
    fn an_answer_older_than_the_log_is_not_cached() {
        let mut c = C::new(10, 2, LIMITS);
        up(&mut c, &s("a"));
        let t = c.ticket();
        for seq in 11..14 {
            let inv = Invalidation {
                tracks: vec![(ns("other"), "t".into())],
                ..Default::default()
            };
            ev(&mut c, &s("a"), seq, inv).unwrap();
        }
        assert!(!c.insert(&s("a"), route("x", None), t, "A"));
    }

    #[test]
    fn prefix_invalidation_drops_the_namespace_and_below_only() {
        let mut c = C::new(100, 10, LIMITS);
        up(&mut c, &s("a"));
        let t = c.ticket();
        for (path, track) in [
            ("live", None),
            ("live/room", None),
            ("live/room", Some("video")),
            ("live/room/sub", Some("audio")),
            ("live/roomy", None),
            ("lives", None),
            ("other", Some("video")),
        ] {
            assert!(c.insert(&s("a"), route(path, track), t, "v"));
        }
        c.insert(&s("a"), Key::Config, t, "cfg");
        ev(
            &mut c,
            &s("a"),
            11,
            Invalidation {
                namespaces: vec![ns("live/room")],
                ..Default::default()
            },
        )
        .unwrap();
        let mut left: Vec<Key> = c.scopes[&s("a")]
            .entries
            .keys()
            .map(|k| Key::clone(k))
            .collect();
        left.sort();
        let mut want = vec![
            route("live", None),
            route("live/roomy", None),
            route("lives", None),
            route("other", Some("video")),
            Key::Config,
        ];
        want.sort();
        assert_eq!(left, want);
        ev(
            &mut c,
            &s("a"),
            12,
            Invalidation {
                config: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.get(&s("a"), &Key::Config), None);
        ev(
            &mut c,
            &s("a"),
            13,
            Invalidation {
                all: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.stats().entries, 0);
        assert_eq!(c.stats().invalidated, 8);
    }

    #[test]
    fn the_bound_is_respected_and_least_recently_used_goes_first() {
        let mut c = C::new(3, 10, LIMITS);
        up(&mut c, &s("a"));
        up(&mut c, &None);
        let t = c.ticket();
        c.insert(&s("a"), route("1", None), t, "1");
        c.insert(&None, route("2", None), t, "2");
        c.insert(&s("a"), route("3", None), t, "3");
        assert_eq!(c.get(&s("a"), &route("1", None)), Some("1"));
        c.insert(&s("a"), route("4", None), t, "4");
        assert_eq!(c.stats().entries, 3);
        assert_eq!(c.get(&None, &route("2", None)), None, "least recently used");
        assert_eq!(c.get(&s("a"), &route("1", None)), Some("1"));
        for i in 0..100 {
            c.insert(&s("a"), route(&format!("n{i}"), None), t, "n");
        }
        assert_eq!(c.stats().entries, 3);
        assert_eq!(c.scopes[&s("a")].entries.len(), 3);
        assert_eq!(c.stats().evicted, 1 + 100);
    }

    #[test]
    fn paths_are_found_across_scopes_and_dropped_with_them() {
        let mut c = C::new(10, 10, LIMITS);
        up(&mut c, &s("a"));
        let t = c.ticket();
        assert!(c.insert(&s("a"), Key::Path("/p".into()), t, "a"));
        assert_eq!(c.path_scope("/p"), Some(s("a")));
        ev(
            &mut c,
            &s("a"),
            11,
            Invalidation {
                paths: vec!["/p".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.path_scope("/p"), None);
        let t = c.ticket();
        assert!(c.insert(&s("a"), Key::Path("/p".into()), t, "a"));
        c.down(&s("a"), chan(&c, &s("a")));
        assert_eq!(c.path_scope("/p"), None);
    }

    #[test]
    fn flights_end_on_invalidation_and_reset() {
        let mut c = C::new(10, 10, LIMITS);
        up(&mut c, &s("a"));
        c.start_flight(&s("a"), route("x", Some("t")), 1, 7);
        c.start_flight(&s("a"), route("y", Some("t")), 2, 8);
        assert_eq!(c.flight(&s("a"), &route("x", Some("t"))), Some(7));
        c.invalidate(
            &s("a"),
            Invalidation {
                tracks: vec![(ns("x"), "t".into())],
                ..Default::default()
            },
        );
        assert_eq!(c.flight(&s("a"), &route("x", Some("t"))), None);
        assert_eq!(c.flight(&s("a"), &route("y", Some("t"))), Some(8));
        // An older flight ending does not remove a newer one.
        c.start_flight(&s("a"), route("x", Some("t")), 3, 9);
        c.end_flight(&s("a"), &route("x", Some("t")), 1);
        assert_eq!(c.flight(&s("a"), &route("x", Some("t"))), Some(9));
        c.down(&s("a"), chan(&c, &s("a")));
        assert_eq!(c.flight(&s("a"), &route("y", Some("t"))), None);
    }

    #[test]
    fn a_scope_not_read_for_the_idle_period_is_released_whole() {
        let mut c = C::new(10, 10, LIMITS);
        let t0 = Instant::now();
        let a = c.touch(&s("a"), t0).opened.expect("first read opens");
        assert!(c.hello(&s("a"), a, 10));
        let t = c.ticket();
        assert!(c.insert(&s("a"), Key::Path("/p".into()), t, "A"));
        assert!(c.insert(&s("a"), route("x", None), t, "X"));
        ev(&mut c, &s("a"), 11, Invalidation::default()).unwrap();
        c.start_flight(&s("a"), route("y", None), 1, 7);
        // A read refreshes the idle clock; b is read later.
        assert_eq!(
            c.touch(&s("a"), t0 + Duration::from_secs(30)),
            Touched::default()
        );
        c.touch(&s("b"), t0 + Duration::from_secs(50));
        assert_eq!(c.release_idle(t0 + Duration::from_secs(89)), vec![]);
        assert_eq!(
            c.release_idle(t0 + Duration::from_secs(90)),
            vec![(s("a"), a)],
            "a was last read 60 s before"
        );
        assert_eq!(c.stats().watched, 1);
        assert_eq!(c.stats().released, 1);
        assert_eq!(c.stats().entries, 0);
        assert_eq!(c.path_scope("/p"), None);
        assert_eq!(c.flight(&s("a"), &route("y", None)), None);
        assert!(!c.scopes.contains_key(&s("a")), "log and stream state gone");
        // The released channel's task cannot revive it.
        assert!(!c.is_current(&s("a"), a));
        assert!(!c.hello(&s("a"), a, 12));
        assert!(!c.down(&s("a"), a));
        assert_eq!(c.event(&s("a"), a, 12, Invalidation::default()), Ok(()));
        c.invalidate(&s("a"), Invalidation::default());
        assert!(!c.scopes.contains_key(&s("a")));
        assert_eq!(c.stats().watched, 1);
        assert_eq!(
            c.release_idle(t0 + Duration::from_secs(110)),
            vec![(s("b"), 2)]
        );
        assert_eq!(c.stats().watched, 0);
    }

    #[test]
    fn past_the_cap_the_least_recently_read_scope_is_released() {
        let limits = ScopeLimits {
            max_scopes: 2,
            ..LIMITS
        };
        let mut c = C::new(10, 10, limits);
        let now = Instant::now();
        let a = c.touch(&s("a"), now).opened.unwrap();
        let b = c.touch(&s("b"), now).opened.unwrap();
        assert_ne!(a, b);
        let _ = c.hello(&s("b"), b, 1);
        let t = c.ticket();
        assert!(c.insert(&s("b"), route("x", None), t, "B"));
        // a is read again, so b is now the least recently read.
        assert_eq!(c.touch(&s("a"), now), Touched::default());
        let touched = c.touch(&None, now);
        let unscoped = touched.opened.unwrap();
        assert_eq!(touched.released, vec![(s("b"), b)]);
        assert_eq!(c.stats().watched, 2);
        assert_eq!(c.stats().entries, 0, "b's answers went with it");
        // A hit counts as a read too: the order follows every touch.
        assert_eq!(c.touch(&s("a"), now), Touched::default());
        let touched = c.touch(&s("b"), now);
        assert_eq!(touched.released, vec![(None, unscoped)]);
        let reopened = touched.opened.expect("b reopens with a new channel");
        assert!(reopened != b && c.is_current(&s("b"), reopened));
        assert!(!c.hello(&s("b"), b, 1), "the old channel is not b's");
        assert!(!c.is_up(&s("b")));
        assert_eq!(c.stats().released, 2);
    }

    #[test]
    fn after_release_and_reopen_nothing_old_is_served() {
        let mut c = C::new(10, 10, LIMITS);
        let t0 = Instant::now();
        let old = up(&mut c, &s("a"));
        let t = c.ticket();
        assert!(c.insert(&s("a"), route("x", None), t, "old"));
        c.release_idle(t0 + Duration::from_secs(3600));
        assert_eq!(c.get(&s("a"), &route("x", None)), None);
        let new = c
            .touch(&s("a"), t0 + Duration::from_secs(3600))
            .opened
            .unwrap();
        assert_eq!(c.get(&s("a"), &route("x", None)), None, "down until hello");
        // A late hello from the released channel does not bring it up.
        assert!(!c.hello(&s("a"), old, 10));
        assert!(!c.is_up(&s("a")));
        assert!(c.hello(&s("a"), new, 20));
        assert_eq!(c.get(&s("a"), &route("x", None)), None);
        let t = c.ticket();
        assert!(c.insert(&s("a"), route("x", None), t, "new"));
        assert_eq!(c.get(&s("a"), &route("x", None)), Some("new"));
        // The old channel's events are ignored, the new one's apply.
        assert_eq!(c.event(&s("a"), old, 99, Invalidation::default()), Ok(()));
        assert!(c.is_up(&s("a")));
        assert!(c.event(&s("a"), new, 22, Invalidation::default()).is_err());
    }

    #[test]
    fn an_answer_in_flight_across_a_release_is_not_stored() {
        let mut c = C::new(10, 10, LIMITS);
        let t0 = Instant::now();
        up(&mut c, &s("a"));
        let t = c.ticket();
        c.release_idle(t0 + Duration::from_secs(3600));
        assert!(!c.insert(&s("a"), route("x", None), t, "stale"), "released");
        // Released and reopened (up again) while the answer was in flight.
        let t = c.ticket();
        c.release_idle(t0 + Duration::from_secs(3600));
        let new = c
            .touch(&s("a"), t0 + Duration::from_secs(3600))
            .opened
            .unwrap();
        assert!(c.hello(&s("a"), new, 1));
        assert!(!c.insert(&s("a"), route("x", None), t, "stale"), "reopened");
        assert_eq!(c.get(&s("a"), &route("x", None)), None);
        assert_eq!(c.stats().refused, 2);
    }

    #[test]
    fn the_log_keeps_only_what_requests_in_flight_need() {
        let mut c = C::new(10, 100, LIMITS);
        up(&mut c, &s("a"));
        let some = |t: &str| Invalidation {
            tracks: vec![(ns("x"), t.into())],
            ..Default::default()
        };
        for seq in 11..21 {
            ev(&mut c, &s("a"), seq, some("t")).unwrap();
        }
        assert_eq!(c.scopes[&s("a")].log.len(), 0, "nothing in flight");
        let t1 = c.ticket();
        ev(&mut c, &s("a"), 21, some("t")).unwrap();
        let t2 = c.ticket();
        ev(&mut c, &s("a"), 22, some("u")).unwrap();
        assert_eq!(c.scopes[&s("a")].log.len(), 2);
        assert!(!c.insert(&s("a"), route("x", Some("t")), t1, "stale"));
        c.settle(t1);
        ev(&mut c, &s("a"), 23, some("v")).unwrap();
        assert_eq!(c.scopes[&s("a")].log.len(), 2, "t2 needs the last two");
        assert!(c.insert(&s("a"), route("x", Some("t")), t2, "T"));
        assert!(!c.insert(&s("a"), route("x", Some("u")), t2, "stale"));
        c.settle(t2);
        ev(&mut c, &s("a"), 24, some("w")).unwrap();
        assert_eq!(c.scopes[&s("a")].log.len(), 0);
        let t3 = c.ticket();
        assert!(c.insert(&s("a"), route("x", Some("u")), t3, "U"));
    }
}
