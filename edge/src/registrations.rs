//! What the relay holds at the Worker, its registrations (namespaces and
//! tracks it publishes, namespace and track subscriptions): one
//! [`RegistrationKey`] per registration or subscription, the RPCs that assert
//! and withdraw it, and the local count of holders that decides when it may
//! be withdrawn. The relay's lease (its own liveness at the Worker, kept by
//! heartbeats) is `liveness.rs`; when it lapses, the Worker drops these.
//!
//! The four kinds (namespace, track, namespace subscription, track
//! subscription) differ only in their request messages and RPC names, so
//! everything else (reference counting, explicit release, re-registration
//! after a lapse) is written once, over [`RegistrationKey`].

use std::collections::{BTreeSet, HashSet};

use bytes::Bytes;
use prost::Message;

use crate::proto;

/// The four things a relay registers with the Worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Namespace,
    Track,
    NamespaceSub,
    TrackSub,
}

impl Kind {
    /// The RPC that asserts a key of this kind. Every one is idempotent by
    /// contract: the same relay repeating it gets its existing row.
    pub(crate) const fn register_method(self) -> &'static str {
        match self {
            Self::Namespace => "RegisterNamespace",
            Self::Track => "RegisterTrack",
            Self::NamespaceSub => "SubscribeNamespace",
            Self::TrackSub => "SubscribeTrack",
        }
    }

    /// The RPC that withdraws it (withdrawing what is not held succeeds).
    pub(crate) const fn unregister_method(self) -> &'static str {
        match self {
            Self::Namespace => "UnregisterNamespace",
            Self::Track => "UnregisterTrack",
            Self::NamespaceSub => "UnsubscribeNamespace",
            Self::TrackSub => "UnsubscribeTrack",
        }
    }
}

/// One row the relay holds at the Worker. Several local sessions may hold
/// the same key (two viewers subscribing to one prefix); the Worker keeps one
/// row per relay and key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RegistrationKey {
    pub kind: Kind,
    pub scope: Option<String>,
    /// Namespace fields (the prefix, for a namespace subscription).
    pub fields: Vec<Vec<u8>>,
    /// The track name, for the two track kinds; empty otherwise.
    pub track: String,
}

impl RegistrationKey {
    pub(crate) fn new(kind: Kind, scope: Option<&str>, fields: Vec<Vec<u8>>, track: &str) -> Self {
        Self {
            kind,
            scope: scope.map(str::to_string),
            fields,
            track: track.to_string(),
        }
    }

    fn namespace(&self) -> Option<proto::Namespace> {
        Some(proto::Namespace {
            fields: self.fields.clone(),
        })
    }

    /// The encoded request of [`Kind::register_method`]. `context` is sent
    /// where the message has one (namespaces and namespace subscriptions).
    pub(crate) fn register_request(&self, context: proto::Context) -> Bytes {
        let (scope, context, track) = (self.scope.clone(), Some(context), self.track.clone());
        let body = match self.kind {
            Kind::Namespace => proto::RegisterNamespaceRequest {
                scope,
                namespace: self.namespace(),
                context,
            }
            .encode_to_vec(),
            Kind::Track => proto::RegisterTrackRequest {
                scope,
                namespace: self.namespace(),
                track,
            }
            .encode_to_vec(),
            Kind::NamespaceSub => proto::SubscribeNamespaceRequest {
                scope,
                prefix: self.namespace(),
                context,
            }
            .encode_to_vec(),
            Kind::TrackSub => proto::SubscribeTrackRequest {
                scope,
                namespace: self.namespace(),
                track,
            }
            .encode_to_vec(),
        };
        body.into()
    }

    /// The encoded request of [`Kind::unregister_method`].
    pub(crate) fn unregister_request(&self) -> Bytes {
        let (scope, track) = (self.scope.clone(), self.track.clone());
        let body = match self.kind {
            Kind::Namespace => proto::UnregisterNamespaceRequest {
                scope,
                namespace: self.namespace(),
            }
            .encode_to_vec(),
            Kind::Track => proto::UnregisterTrackRequest {
                scope,
                namespace: self.namespace(),
                track,
            }
            .encode_to_vec(),
            Kind::NamespaceSub => proto::UnsubscribeNamespaceRequest {
                scope,
                prefix: self.namespace(),
            }
            .encode_to_vec(),
            Kind::TrackSub => proto::UnsubscribeTrackRequest {
                scope,
                namespace: self.namespace(),
                track,
            }
            .encode_to_vec(),
        };
        body.into()
    }
}

/// Local holders of one key, by handle id. A handle is `live` until it is
/// dropped or until an explicit `unregister_*`/`unsubscribe_*` releases a
/// reference on behalf of one holder (the oldest: handles of one key are
/// interchangeable); that handle moves to `released`, so its later drop
/// releases nothing twice, while a handle taken afterwards counts afresh.
#[derive(Debug, Default)]
pub(crate) struct Holders {
    live: BTreeSet<u64>,
    released: HashSet<u64>,
    next_id: u64,
    /// The last register request that succeeded: what re-registration
    /// after a lapse sends again (it carries the session context).
    pub request: Bytes,
}

/// What releasing one reference means for the Worker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Release {
    /// Others still hold the key, or this reference was already released.
    Kept,
    /// That was the last holder: withdraw the key from the Worker.
    Withdraw,
}

impl Holders {
    /// A new holder; returns its handle id.
    pub(crate) fn add(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.live.insert(id);
        id
    }

    /// Whether any holder still wants the key at the Worker.
    pub(crate) fn held(&self) -> bool {
        !self.live.is_empty()
    }

    /// Handle `id` is dropped.
    pub(crate) fn drop_handle(&mut self, id: u64) -> Release {
        if self.released.remove(&id) || !self.live.remove(&id) {
            return Release::Kept;
        }
        self.withdraw_if_unheld()
    }

    /// An explicit unregister/unsubscribe: one holder is done, although its
    /// handle may live on. With no local holder the Worker is asked anyway
    /// (withdrawing is idempotent, and the caller wants it gone).
    pub(crate) fn release_explicitly(&mut self) -> Release {
        let Some(id) = self.live.pop_first() else {
            return Release::Withdraw;
        };
        self.released.insert(id);
        self.withdraw_if_unheld()
    }

    fn withdraw_if_unheld(&self) -> Release {
        if self.held() {
            Release::Kept
        } else {
            Release::Withdraw
        }
    }

    /// No handle refers to the key any more: its map entry may go.
    pub(crate) fn idle(&self) -> bool {
        self.live.is_empty() && self.released.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: Kind) -> RegistrationKey {
        RegistrationKey::new(kind, Some("s"), vec![b"a".to_vec(), b"b".to_vec()], "t")
    }

    #[test]
    fn every_kind_builds_its_own_messages() {
        let ctx = proto::Context {
            interface: proto::Interface::Internal as i32,
            source_url: Some("https://peer/".into()),
            source_addr: None,
        };
        let ns = Some(proto::Namespace {
            fields: vec![b"a".to_vec(), b"b".to_vec()],
        });
        let scope = Some("s".to_string());

        let k = key(Kind::Namespace);
        assert_eq!(
            proto::RegisterNamespaceRequest::decode(k.register_request(ctx.clone())).unwrap(),
            proto::RegisterNamespaceRequest {
                scope: scope.clone(),
                namespace: ns.clone(),
                context: Some(ctx.clone()),
            }
        );
        assert_eq!(
            proto::UnregisterNamespaceRequest::decode(k.unregister_request()).unwrap(),
            proto::UnregisterNamespaceRequest {
                scope: scope.clone(),
                namespace: ns.clone(),
            }
        );

        let k = key(Kind::Track);
        assert_eq!(
            proto::RegisterTrackRequest::decode(k.register_request(ctx.clone())).unwrap(),
            proto::RegisterTrackRequest {
                scope: scope.clone(),
                namespace: ns.clone(),
                track: "t".into(),
            }
        );
        assert_eq!(
            proto::UnregisterTrackRequest::decode(k.unregister_request()).unwrap(),
            proto::UnregisterTrackRequest {
                scope: scope.clone(),
                namespace: ns.clone(),
                track: "t".into(),
            }
        );

        let k = key(Kind::NamespaceSub);
        assert_eq!(
            proto::SubscribeNamespaceRequest::decode(k.register_request(ctx.clone())).unwrap(),
            proto::SubscribeNamespaceRequest {
                scope: scope.clone(),
                prefix: ns.clone(),
                context: Some(ctx.clone()),
            }
        );
        assert_eq!(
            proto::UnsubscribeNamespaceRequest::decode(k.unregister_request()).unwrap(),
            proto::UnsubscribeNamespaceRequest {
                scope: scope.clone(),
                prefix: ns.clone(),
            }
        );

        let k = key(Kind::TrackSub);
        assert_eq!(
            proto::SubscribeTrackRequest::decode(k.register_request(ctx)).unwrap(),
            proto::SubscribeTrackRequest {
                scope: scope.clone(),
                namespace: ns.clone(),
                track: "t".into(),
            }
        );
        assert_eq!(
            proto::UnsubscribeTrackRequest::decode(k.unregister_request()).unwrap(),
            proto::UnsubscribeTrackRequest {
                scope,
                namespace: ns,
                track: "t".into(),
            }
        );
    }

    #[test]
    fn kinds_name_distinct_rpcs() {
        let kinds = [
            Kind::Namespace,
            Kind::Track,
            Kind::NamespaceSub,
            Kind::TrackSub,
        ];
        let mut names: Vec<_> = kinds
            .iter()
            .flat_map(|k| [k.register_method(), k.unregister_method()])
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 8);
    }

    #[test]
    fn the_last_drop_withdraws() {
        let mut h = Holders::default();
        let (a, b) = (h.add(), h.add());
        assert_eq!(h.drop_handle(a), Release::Kept);
        assert_eq!(h.drop_handle(b), Release::Withdraw);
        assert!(h.idle());
    }

    #[test]
    fn explicit_release_counts_once_per_holder() {
        // Two sessions hold the key; one unregisters explicitly.
        let mut h = Holders::default();
        let (a, b) = (h.add(), h.add());
        assert_eq!(h.release_explicitly(), Release::Kept);
        // Its handle is dropped later: nothing more is released.
        assert_eq!(h.drop_handle(a), Release::Kept);
        assert!(h.held());
        // The other holder unregisters explicitly: now it goes.
        assert_eq!(h.release_explicitly(), Release::Withdraw);
        assert!(!h.idle(), "its handle is still alive");
        assert_eq!(h.drop_handle(b), Release::Kept);
        assert!(h.idle());
    }

    #[test]
    fn a_holder_taken_after_an_explicit_release_counts_afresh() {
        let mut h = Holders::default();
        let old = h.add();
        assert_eq!(h.release_explicitly(), Release::Withdraw);
        let new = h.add();
        // The new holder's drop withdraws, although the old handle lives on.
        assert_eq!(h.drop_handle(new), Release::Withdraw);
        assert_eq!(h.drop_handle(old), Release::Kept);
        assert!(h.idle());
    }

    #[test]
    fn explicit_release_of_an_unheld_key_still_withdraws() {
        let mut h = Holders::default();
        assert_eq!(h.release_explicitly(), Release::Withdraw);
        assert!(h.idle());
    }
}
