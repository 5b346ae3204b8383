//! The relay's lease held on one WebSocket to its RelayObject
//! (coordinator.proto, "The lease socket"), instead of a Heartbeat call per
//! interval: the Worker hears the relay by its pings, which the runtime
//! answers without waking or billing the object, and a relay that dies is
//! withdrawn about a second after its socket closes.
//!
//! Rules:
//! - The first message on a new socket is a HeartbeatRequest; its answer is
//!   applied as a heartbeat reply (peers, `state_lost`). Another follows at
//!   least every [`SOCKET_BEAT`] (the peer-list refresh) and whenever the
//!   activity report changed.
//! - "ping" every [`PING_EVERY`]; no "pong" within [`PONG_WITHIN`] and the
//!   socket is given up and opened again.
//! - While the socket is up the HTTP heartbeat loop stands aside; while it is
//!   down (Worker unreachable, an older Worker without the route) the loop
//!   beats as before, so the lease never depends on the socket alone.
//! - A closed socket is opened again after a jitter of up to [`RECONNECT`]
//!   (a whole fleet reconnecting after a runtime restart spreads out, and
//!   each relay is back well within the Worker's close grace), backing off
//!   while the Worker refuses or is unreachable.
//! - A refusal (close code 4000 + a Connect code: revoked token, retired
//!   epoch) makes the HTTP loop beat now, whose answer decides [`Fatal`](crate::Fatal).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use prost::Message as _;
use rand::Rng;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use url::Url;

use crate::coordinator::Inner;
use crate::proto;

/// How often the relay pings: the Worker counts the relay heard at each.
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// A ping with no pong within this gives the socket up.
pub const PONG_WITHIN: Duration = Duration::from_secs(3);
/// A HeartbeatRequest at least this often by default (coordinator.proto:
/// SOCKET_BEAT_MS, which the Worker's directory counts on).
pub const SOCKET_BEAT: Duration = Duration::from_secs(30);
/// Longest jitter before opening a closed socket again.
pub const RECONNECT: Duration = Duration::from_millis(500);
/// Longest wait between attempts while the Worker refuses or is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// `ws(s)://<coordinator>/v1/lease`.
pub(crate) fn lease_url(base: &Url) -> Url {
    crate::watch::socket_url(base, "/v1/lease")
}

/// How a socket ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Closed or silent after it was up: open it again soon.
    Lost,
    /// Closed because the lease lapsed (4004): open it again; its state is gone.
    Lapsed,
    /// Never came up (unreachable, refused at the upgrade).
    Failed,
    /// The Worker has no lease socket (an older Worker): HTTP heartbeats only.
    Unsupported,
    /// Closed with a refusal (4000 + Connect code).
    Refused(u16),
}

/// Holds the lease on the socket until the relay shuts down or is refused
/// for good; a HeartbeatRequest at least every `beat`.
pub(crate) async fn hold(inner: Arc<Inner>, base: Url, token: String, beat: Duration) {
    let url = lease_url(&base);
    let mut failures = 0u32;
    loop {
        if inner.is_fatal() || inner.shut_down.load(Ordering::Acquire) {
            return;
        }
        let mut unanswered = false;
        let ended = session(&inner, &url, &token, beat, &mut unanswered).await;
        if unanswered {
            // A lost answer may have carried state_lost (reported once): re-register, as
            // the HTTP loop does after a failed beat (idempotent).
            inner.recover.notify_one();
        }
        let was_up = inner.lease_socket_up.swap(false, Ordering::AcqRel);
        metrics::gauge!("moq_edge_lease_socket_up").set(0.0);
        if was_up {
            // The Worker ends a closed socket's lease within a second: the HTTP loop beats now.
            inner.beat_now.notify_one();
        }
        let wait = match ended {
            Ended::Unsupported => {
                tracing::info!(%url, "the coordinator has no lease socket: the lease is kept by Heartbeat calls");
                return;
            }
            Ended::Refused(code) => {
                tracing::warn!(code, "lease socket refused; asking over HTTP");
                // A refusal for good sets Fatal; an answer is applied as any beat's.
                if let Ok((base, resp)) = inner.heartbeat(inner.rpc.policy().deadline).await {
                    inner.apply_beat(base, &resp);
                }
                failures += 1;
                backoff(failures)
            }
            Ended::Lost => {
                failures = 0;
                tracing::info!("edge: lease socket lost; opening it again");
                jitter(RECONNECT)
            }
            Ended::Lapsed => {
                failures = 0;
                tracing::warn!("edge: the coordinator ended this relay's lease; re-registering");
                inner.recover.notify_one();
                jitter(RECONNECT)
            }
            Ended::Failed => {
                failures += 1;
                backoff(failures)
            }
        };
        sleep(wait).await;
    }
}

/// The Worker's close when the lease lapsed (4000 + DEADLINE_EXCEEDED).
const LAPSED: u16 = 4004;

/// A close that refuses this relay (4000 + a Connect code: invalid argument,
/// permission denied, failed precondition, unauthenticated), as opposed to a
/// lapse (4000 + deadline exceeded), after which the relay simply comes back.
fn refusal(code: u16) -> bool {
    matches!(code.checked_sub(4000), Some(3 | 7 | 9 | 16))
}

fn jitter(max: Duration) -> Duration {
    rand::thread_rng().gen_range(Duration::ZERO..=max)
}

fn backoff(failures: u32) -> Duration {
    jitter(
        RECONNECT
            .saturating_mul(1 << failures.min(8))
            .min(MAX_BACKOFF),
    )
}

/// One socket, until it ends; `unanswered` says whether a HeartbeatRequest
/// sent on it had no answer then.
async fn session(
    inner: &Arc<Inner>,
    url: &Url,
    token: &str,
    beat: Duration,
    unanswered: &mut bool,
) -> Ended {
    let Ok(mut request) = url.as_str().into_client_request() else {
        return Ended::Unsupported;
    };
    let headers = request.headers_mut();
    for (name, value) in [
        ("authorization", format!("Bearer {token}")),
        ("moq-relay-epoch", inner.epoch.clone()),
        (crate::version::HEADER, crate::version::header_value()),
    ] {
        match HeaderValue::from_str(&value) {
            Ok(value) => {
                headers.insert(name, value);
            }
            Err(_) => return Ended::Unsupported,
        }
    }
    let mut ws = match timeout(PONG_WITHIN, tokio_tungstenite::connect_async(request)).await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(WsError::Http(resp))) => {
            let status = resp.status().as_u16();
            tracing::debug!(%url, status, "lease socket refused at the upgrade");
            return match status {
                404 | 405 => Ended::Unsupported,
                401 | 400 | 403 => Ended::Refused(status),
                _ => Ended::Failed,
            };
        }
        Ok(Err(err)) => {
            tracing::debug!(%url, error = %err, "lease socket: connect failed");
            return Ended::Failed;
        }
        Err(_) => return Ended::Failed,
    };

    let mut sent = inner.beat_request(false);
    *unanswered = true;
    if ws
        .send(Message::binary(sent.encode_to_vec()))
        .await
        .is_err()
    {
        return Ended::Failed;
    }
    let mut up = false;
    let mut last_beat = Instant::now();
    // Until the first answer, that answer is what we wait for.
    let mut deadline = Some(Instant::now() + PONG_WITHIN);
    let mut pings = tokio::time::interval(PING_EVERY);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = ws.next() => {
                let msg = match msg {
                    Some(Ok(msg)) => msg,
                    Some(Err(_)) | None => return if up { Ended::Lost } else { Ended::Failed },
                };
                match msg {
                    Message::Text(text) if text.as_str() == "pong" => deadline = None,
                    Message::Binary(bytes) => {
                        let Ok(resp) = proto::HeartbeatResponse::decode(bytes) else {
                            tracing::warn!("lease socket: undecodable HeartbeatResponse; opening it again");
                            return Ended::Lost;
                        };
                        // At most one request is unanswered: this answers `sent`.
                        inner.apply_beat(sent.peers_version, &resp);
                        *unanswered = false;
                        deadline = None;
                        if !up {
                            up = true;
                            inner.lease_socket_up.store(true, Ordering::Release);
                            metrics::gauge!("moq_edge_lease_socket_up").set(1.0);
                            tracing::info!(state_lost = resp.state_lost, "edge: lease socket open");
                        }
                    }
                    Message::Close(frame) => {
                        let code = frame.as_ref().map(|f| u16::from(f.code)).unwrap_or(1005);
                        return if code == LAPSED {
                            Ended::Lapsed
                        } else if refusal(code) {
                            Ended::Refused(code)
                        } else if up {
                            Ended::Lost
                        } else {
                            Ended::Failed
                        };
                    }
                    _ => {}
                }
            }
            _ = pings.tick(), if up && deadline.is_none() => {
                if inner.shut_down.load(Ordering::Acquire) {
                    let _ = ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                        code: CloseCode::Normal,
                        reason: "the relay shut down".into(),
                    })).await;
                    return Ended::Lost;
                }
                let mut now = inner.beat_request(false);
                // A new peer list is no reason to beat: the version rides on the next beat.
                let fresh_list = now.peers_version;
                now.peers_version = sent.peers_version;
                let frame = if now != sent || last_beat.elapsed() >= beat {
                    now.peers_version = fresh_list;
                    sent = now;
                    last_beat = Instant::now();
                    *unanswered = true;
                    Message::binary(sent.encode_to_vec())
                } else {
                    Message::text("ping")
                };
                if ws.send(frame).await.is_err() {
                    return Ended::Lost;
                }
                deadline = Some(Instant::now() + PONG_WITHIN);
            }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                tracing::debug!(up, "lease socket: no answer in time");
                return if up { Ended::Lost } else { Ended::Failed };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_url_is_the_coordinators_with_a_websocket_scheme() {
        let url = |s: &str| lease_url(&Url::parse(s).unwrap()).to_string();
        assert_eq!(
            url("http://127.0.0.1:8787/"),
            "ws://127.0.0.1:8787/v1/lease"
        );
        assert_eq!(url("https://w.example/x?y=1"), "wss://w.example/v1/lease");
    }

    #[test]
    fn a_lapse_is_not_a_refusal() {
        assert!(refusal(4016) && refusal(4009) && refusal(4003) && refusal(4007));
        assert!(!refusal(4004) && !refusal(1000) && !refusal(1006));
    }

    #[test]
    fn reconnects_are_jittered_and_bounded() {
        for failures in 0..40 {
            assert!(backoff(failures) <= MAX_BACKOFF);
        }
        for _ in 0..100 {
            assert!(jitter(RECONNECT) <= RECONNECT);
        }
    }
}
