//! A scope's token policy (`ScopeConfig.auth`, coordinator.proto `ScopeAuth`)
//! as moq-relay-ietf takes it, and the one gap the relay leaves open: it
//! caches "this scope has no policy" for a fixed [`NO_POLICY_CACHED`] whatever
//! the coordinator says, so a policy turned on meanwhile would not apply on
//! this relay until that entry expired. [`Opening`] closes the gap: for a
//! scope this relay answered "no policy" for within that time, once the scope
//! has a policy, new public sessions are refused until the relay's entry has
//! expired (fail closed, never a tokenless admission).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::moq_relay_ietf::{AuthPublicKey, ScopeAuthConfig, DEFAULT_SCOPE_AUTH_TTL};
use crate::proto;

/// How long moq-relay-ietf reuses a "no policy" answer, plus a margin: the
/// relay stores its entry a moment after this edge answered.
pub const NO_POLICY_CACHED: Duration =
    DEFAULT_SCOPE_AUTH_TTL.saturating_add(Duration::from_secs(5));

/// The relay's policy for the Worker's answer; `None` when the scope has none.
pub fn auth_config(wire: Option<proto::ScopeAuth>) -> Option<ScopeAuthConfig> {
    let wire = wire?;
    let keys = wire
        .keys
        .into_iter()
        .map(|k| AuthPublicKey::es256(k.pem).with_kid(k.kid))
        .collect();
    let mut config = ScopeAuthConfig::new(keys)
        .with_issuers(wire.issuers)
        .with_audiences(wire.audiences);
    if let Some(skew) = wire.clock_skew_seconds {
        // 0 means no tolerance to the Worker; the relay reads 0 as its default,
        // so the smallest tolerance it honours stands in for it.
        config = config.with_clock_skew(Duration::from_secs(u64::from(skew.max(1))));
    }
    if let Some(ttl) = wire.ttl_seconds {
        config = config.with_ttl(Duration::from_secs(u64::from(ttl.max(1))));
    }
    Some(config)
}

/// When this relay last answered "no policy" for each scope, within
/// [`NO_POLICY_CACHED`].
#[derive(Debug, Default)]
pub struct Opening {
    answered: Mutex<HashMap<Option<String>, Instant>>,
}

impl Opening {
    /// The relay was told `scope` has no policy (it caches that from now on).
    pub fn answered_none(&self, scope: Option<&str>) {
        let mut answered = self.answered.lock().unwrap();
        let now = Instant::now();
        answered.retain(|_, at| now.duration_since(*at) < NO_POLICY_CACHED);
        answered.insert(scope.map(str::to_string), now);
    }

    /// Until when the relay may still hold "no policy" for `scope`, if it may.
    pub fn cached_none_until(&self, scope: Option<&str>) -> Option<Instant> {
        let answered = self.answered.lock().unwrap();
        let until = *answered.get(&scope.map(str::to_string))? + NO_POLICY_CACHED;
        (until > Instant::now()).then_some(until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_workers_policy() {
        assert!(auth_config(None).is_none());
        let config = auth_config(Some(proto::ScopeAuth {
            keys: vec![proto::AuthKey {
                kid: "k1".into(),
                pem: "pem".into(),
                ..Default::default()
            }],
            issuers: vec!["i".into()],
            audiences: vec!["a".into()],
            clock_skew_seconds: Some(0),
            ttl_seconds: Some(5),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(config.keys.len(), 1);
        assert_eq!(config.keys[0].kid.as_deref(), Some("k1"));
        assert_eq!(config.issuers, ["i"]);
        assert_eq!(config.audiences, ["a"]);
        assert_eq!(config.clock_skew, Duration::from_secs(1));
        assert_eq!(config.ttl, Duration::from_secs(5));
    }

    #[test]
    fn remembers_no_policy_answers_for_the_relays_cache_time() {
        let opening = Opening::default();
        assert!(opening.cached_none_until(Some("s")).is_none());
        opening.answered_none(Some("s"));
        let until = opening.cached_none_until(Some("s")).unwrap();
        assert!(until > Instant::now() + NO_POLICY_CACHED - Duration::from_secs(5));
        assert!(opening.cached_none_until(None).is_none());
        assert!(opening.cached_none_until(Some("t")).is_none());
    }
}
