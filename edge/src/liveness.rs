//! Staying known to the Worker: the heartbeat loop, and re-registration of
//! every live handle when a heartbeat reply says the Worker lost this
//! relay's state (its lease lapsed and was purged, or it never knew it).
//!
//! Rules:
//! - A beat has an overall deadline of a third of the lease, retries
//!   included, so a slow Worker cannot keep a beat in flight while the lease
//!   runs out unnoticed; a relay with no beat accepted for a whole lease
//!   says so once.
//! - Worker unreachable: keep serving, keep beating with backoff (from
//!   250 ms up to the normal interval), and recover on the first reply.
//! - `state_lost`: re-register every live handle with its normal,
//!   idempotent call (the request it last succeeded with), without
//!   touching sessions. Handles the Worker then refuses are logged.
//! - Token rejected or epoch retired: [`Fatal`](crate::Fatal), the loop ends.
//! - While the lease socket is up ([`crate::lease_socket`]) no beat is sent:
//!   the socket keeps the lease, and this loop takes over when it is down.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use prost::Message as _;
use rand::Rng;
use tokio::task::JoinHandle;

use crate::coordinator::{Inner, Recovery, Slot};
use crate::peer_list::{Next, Paging, PeerList};
use crate::proto;
use crate::registrations::RegistrationKey;
use crate::rpc::{Code, RpcError};

/// Used when a reply gives no interval and no lease.
const FALLBACK_HEARTBEAT: Duration = Duration::from_secs(5);
/// Bounds on the Worker-supplied interval, so a bad reply can neither spin
/// the loop nor let the lease lapse for minutes.
const MIN_HEARTBEAT: Duration = Duration::from_millis(200);
const MAX_HEARTBEAT: Duration = Duration::from_secs(60);
/// First retry after a failed beat; doubles up to the normal interval.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Re-registration calls in flight at once.
const REREGISTER_CONCURRENCY: usize = 16;

pub(crate) fn beat_interval(resp: &proto::HeartbeatResponse) -> Duration {
    let ms = if resp.interval_ms > 0 {
        resp.interval_ms
    } else {
        // No interval given: stay well inside the lease.
        resp.lease_ttl_ms / 3
    };
    if ms == 0 {
        return FALLBACK_HEARTBEAT;
    }
    Duration::from_millis(ms as u64).clamp(MIN_HEARTBEAT, MAX_HEARTBEAT)
}

/// Overall deadline of one beat, retries included: a third of the lease,
/// never more than the policy's deadline for any call.
pub(crate) fn beat_deadline(lease: Duration, policy_deadline: Duration) -> Duration {
    (lease / 3).clamp(MIN_HEARTBEAT, policy_deadline.max(MIN_HEARTBEAT))
}

/// Wait before beat number `failures` + 1 after that many failures in a row.
fn retry_after(failures: u32, interval: Duration) -> Duration {
    let backoff = FIRST_RETRY.saturating_mul(1 << failures.saturating_sub(1).min(16));
    let backoff = backoff.min(interval);
    rand::thread_rng().gen_range(backoff / 2..=backoff)
}

impl Inner {
    /// Take in a heartbeat reply to a request that said it held peer list
    /// `base`: peers, and recovery if state was lost. Returns the paging it
    /// began (a list longer than one answer), which installs the list when
    /// every page is in.
    pub(crate) fn apply_beat(
        self: &Arc<Self>,
        base: u64,
        resp: &proto::HeartbeatResponse,
    ) -> Option<JoinHandle<()>> {
        let grace = Duration::from_millis(resp.lease_ttl_ms as u64);
        let (peers, paging, installed) = {
            let mut held = self.held_peers.lock().unwrap();
            let before = held.list.version;
            let paging = held.take(base, resp);
            let installed = held.list.version != before;
            (held.list.clone(), paging, installed)
        };
        // Once per list taken (or begun in pages), not on every beat.
        if resp.peers_truncated && (installed || paging.is_some()) {
            tracing::warn!(
                version = resp.peers_version,
                "the Worker lists only part of the live relays (MAX_PEERS): \
                 sessions from the others are not recognised by address"
            );
        }
        self.use_peers(&peers, grace);
        if resp.state_lost {
            self.recover.notify_one();
        }
        paging.map(|paging| tokio::spawn(self.clone().read_pages(paging, grace)))
    }

    /// Hand the list held to the upstream links and the connection tagger.
    fn use_peers(&self, peers: &PeerList, grace: Duration) {
        // Links to relays that left are not reported any more; a lease's
        // grace covers a new relay the peer list does not show yet.
        self.upstreams.keep_live(peers.urls(), grace);
        if self.peers.set_live(peers.addrs()) {
            // Sessions from these addresses are tagged internal from now on
            // (a session keeps the tag it got when it was accepted).
            tracing::info!(peers = ?self.peers.live(), "live relay peers changed");
        }
    }

    /// Reads the rest of a peer list (ListPeers) and installs it, unless a
    /// newer answer came meanwhile. On any failure (ABORTED: the Worker has
    /// moved on from that version) the pages are dropped and the old list
    /// stays: the next heartbeat starts over.
    async fn read_pages(self: Arc<Self>, paging: Paging, grace: Duration) {
        let deadline = self.rpc.policy().deadline;
        let mut pages = paging.pages;
        let version = pages.version();
        let outcome = loop {
            if self.is_fatal() || self.shut_down.load(Ordering::Acquire) {
                break Err("the relay is stopping".to_string());
            }
            let req = pages.next_request().encode_to_vec().into();
            let page: proto::ListPeersResponse =
                match self.call_within("ListPeers", req, deadline).await {
                    Ok(page) => page,
                    Err(err) => break Err(err.to_string()),
                };
            self.peer_pages.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("moq_edge_peer_pages_total").increment(1);
            match pages.add(page) {
                Ok(Next::More(more)) => pages = more,
                Ok(Next::Done(list)) => break Ok(list),
                Err(err) => break Err(err.to_string()),
            }
        };
        let (list, error) = match outcome {
            Ok(list) => (Some(list), None),
            Err(err) => (None, Some(err)),
        };
        let installed = {
            let mut held = self.held_peers.lock().unwrap();
            held.paged(paging.id, list).then(|| held.list.clone())
        };
        match (installed, error) {
            (Some(peers), _) => {
                tracing::debug!(version, peers = peers.len(), "peer list read in pages");
                self.use_peers(&peers, grace);
            }
            (None, Some(error)) => {
                tracing::info!(version, %error, "peer list pages dropped; the next heartbeat starts over")
            }
            (None, None) => {
                tracing::debug!(version, "peer list pages superseded by a newer answer")
            }
        }
    }
}

/// The heartbeat loop; `first` is the reply to the beat `connect` sent.
pub(crate) async fn heartbeat(inner: Arc<Inner>, base: u64, first: proto::HeartbeatResponse) {
    let policy_deadline = inner.rpc.policy().deadline;
    let mut lease = Duration::from_millis(first.lease_ttl_ms as u64);
    let mut interval = beat_interval(&first);
    inner.apply_beat(base, &first);
    let mut last_ok = Instant::now();
    let mut failures = 0u32;
    let mut lapse_reported = false;
    let mut next = interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            // The lease socket was lost: beat now, the Worker ends a closed socket's lease soon.
            _ = inner.beat_now.notified() => {}
        }
        if inner.is_fatal() || inner.shut_down.load(Ordering::Acquire) {
            return;
        }
        if inner.lease_socket_up.load(Ordering::Acquire) {
            // The socket holds the lease; beat again when it is down.
            last_ok = Instant::now();
            failures = 0;
            next = interval;
            continue;
        }
        let sent = Instant::now();
        match inner.heartbeat(beat_deadline(lease, policy_deadline)).await {
            Ok((base, resp)) => {
                if failures > 0 {
                    tracing::info!(
                        failed_beats = failures,
                        unreachable_for_ms = sent.duration_since(last_ok).as_millis() as u64,
                        state_lost = resp.state_lost,
                        "coordinator reachable again"
                    );
                    // The Worker reports `state_lost` once; a failed beat may
                    // be one whose reply carried it and was lost on the way.
                    // Re-registering is idempotent, so do it whenever a beat
                    // failed rather than risk serving what the Worker forgot.
                    inner.recover.notify_one();
                }
                failures = 0;
                lapse_reported = false;
                last_ok = sent;
                if resp.lease_ttl_ms > 0 {
                    lease = Duration::from_millis(resp.lease_ttl_ms as u64);
                }
                interval = beat_interval(&resp);
                next = interval;
                inner.apply_beat(base, &resp);
            }
            Err(_) if inner.is_fatal() => return, // logged by set_fatal
            Err(err) => {
                failures += 1;
                let silent = last_ok.elapsed();
                if silent >= lease && !lapse_reported {
                    lapse_reported = true;
                    tracing::warn!(
                        silent_for_ms = silent.as_millis() as u64,
                        lease_ms = lease.as_millis() as u64,
                        "no heartbeat accepted for longer than the lease: the coordinator has \
                         probably dropped this relay's registrations; still serving local \
                         sessions, and everything is re-registered when it answers again"
                    );
                } else if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(error = %err, failed_beats = failures, "heartbeat failed; still serving, retrying with backoff");
                } else {
                    tracing::debug!(error = %err, failed_beats = failures, "heartbeat failed");
                }
                next = retry_after(failures, interval);
            }
        }
    }
}

/// Runs a re-registration each time a heartbeat reply says `state_lost`
/// (a notification that arrives during one starts another after it).
pub(crate) async fn recover_on_demand(inner: Arc<Inner>) {
    loop {
        inner.recover.notified().await;
        if inner.is_fatal() || inner.shut_down.load(Ordering::Acquire) {
            return;
        }
        reregister_all(&inner).await;
    }
}

/// Whether a failed re-registration may succeed later on its own.
fn transient(err: &RpcError) -> bool {
    if rate_limited(err) {
        return true;
    }
    match err.code() {
        None => true,
        Some(code) => matches!(
            code,
            // Not RESOURCE_EXHAUSTED: a quota refusal stays refused until a
            // handle is released, so retrying it would never end.
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Internal
                | Code::Unknown
                | Code::Aborted
        ),
    }
}

/// A refusal by the Worker's rate limit (coordinator.proto: RESOURCE_EXHAUSTED,
/// "rate limit exceeded"): it lifts when the window ends, unlike a quota's,
/// so the re-registration backs off and tries again.
fn rate_limited(err: &RpcError) -> bool {
    matches!(err, RpcError::Status { code: Code::ResourceExhausted, message, .. } if message.starts_with("rate limit exceeded"))
}

/// Re-asserts one key if a local holder still wants it; `Ok(false)` when
/// none does (released meanwhile). Under the key's lock, so it cannot race
/// a register or release of the same key.
async fn reassert(inner: &Inner, key: &RegistrationKey, slot: &Slot) -> Result<bool, RpcError> {
    let holders = slot.lock().await;
    if !holders.held() {
        return Ok(false);
    }
    inner
        .call::<()>(key.kind.register_method(), holders.request.clone())
        .await?;
    Ok(true)
}

async fn reregister_all(inner: &Inner) {
    let start = Instant::now();
    let mut pending: Vec<(RegistrationKey, Slot)> = inner
        .registrations
        .lock()
        .unwrap()
        .iter()
        .map(|(k, s)| (k.clone(), s.clone()))
        .collect();
    let (mut handles, mut refused) = (0, 0);
    let mut backoff = Duration::from_millis(500);
    loop {
        let results: Vec<_> = futures::stream::iter(pending)
            .map(|(key, slot)| async move {
                let result = reassert(inner, &key, &slot).await;
                (key, slot, result)
            })
            .buffer_unordered(REREGISTER_CONCURRENCY)
            .collect()
            .await;
        pending = Vec::new();
        for (key, slot, result) in results {
            match result {
                Ok(true) => handles += 1,
                Ok(false) => {}
                Err(err) if transient(&err) => pending.push((key, slot)),
                Err(err) => {
                    refused += 1;
                    tracing::warn!(?key, error = %err, "the coordinator refused a re-registration after losing this relay's state");
                }
            }
        }
        if pending.is_empty() || inner.is_fatal() || inner.shut_down.load(Ordering::Acquire) {
            break;
        }
        tracing::warn!(
            left = pending.len(),
            retry_in_ms = backoff.as_millis() as u64,
            "re-registration incomplete (coordinator unreachable?); retrying"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    let recovery = Recovery {
        handles,
        refused,
        took: start.elapsed(),
    };
    if handles + refused > 0 {
        tracing::info!(
            handles,
            refused,
            took_ms = recovery.took.as_millis() as u64,
            "coordinator had lost this relay's state: re-registered its live handles"
        );
    } else {
        tracing::debug!("coordinator reported no state for this relay; nothing to re-register");
    }
    inner.recoveries.lock().unwrap().push(recovery);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_interval_is_bounded() {
        let resp = |interval_ms, lease_ttl_ms| proto::HeartbeatResponse {
            lease_ttl_ms,
            interval_ms,
            ..Default::default()
        };
        assert_eq!(beat_interval(&resp(3000, 9000)), Duration::from_secs(3));
        assert_eq!(beat_interval(&resp(0, 9000)), Duration::from_secs(3));
        assert_eq!(beat_interval(&resp(1, 9000)), MIN_HEARTBEAT);
        assert_eq!(beat_interval(&resp(0, 0)), FALLBACK_HEARTBEAT);
    }

    #[test]
    fn a_beat_ends_well_inside_the_lease() {
        let policy = Duration::from_secs(15);
        assert_eq!(
            beat_deadline(Duration::from_secs(9), policy),
            Duration::from_secs(3)
        );
        // A long lease is still bounded by the policy's deadline.
        assert_eq!(beat_deadline(Duration::from_secs(600), policy), policy);
        assert_eq!(beat_deadline(Duration::ZERO, policy), MIN_HEARTBEAT);
    }

    #[test]
    fn retries_back_off_up_to_the_interval() {
        let interval = Duration::from_secs(3);
        for failures in 1..40 {
            let wait = retry_after(failures, interval);
            assert!(wait <= interval, "{failures}: {wait:?}");
        }
        assert!(retry_after(1, interval) <= FIRST_RETRY);
        assert!(retry_after(20, interval) >= interval / 2);
    }

    #[test]
    fn only_outages_are_retried() {
        let status = |code| RpcError::Status {
            method: "RegisterNamespace",
            code,
            message: String::new(),
        };
        assert!(transient(&status(Code::Unavailable)));
        assert!(!transient(&status(Code::AlreadyExists)));
        assert!(!transient(&status(Code::PermissionDenied)));
        // A quota refusal stays; a rate-limit refusal lifts with its window.
        assert!(!transient(&status(Code::ResourceExhausted)));
        assert!(transient(&RpcError::Status {
            method: "RegisterNamespace",
            code: Code::ResourceExhausted,
            message: "rate limit exceeded: too many calls from relay https://r.example/ (relay bucket); retry after 10 s".into(),
        }));
        assert!(transient(&RpcError::Timeout {
            method: "RegisterNamespace",
            after: Duration::from_secs(1)
        }));
    }
}
