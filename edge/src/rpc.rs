//! A minimal Connect-protocol client (unary calls, binary protobuf).
//!
//! Connect unary over HTTP/1.1 or HTTP/2 is a plain POST: the body is the
//! encoded request message, a 200 reply carries the encoded response, and any
//! other status carries a JSON error `{"code": "...", "message": "..."}`.
//! That is small enough to speak directly with reqwest + prost.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use rand::Rng;
use url::Url;

/// Connect error codes (https://connectrpc.com/docs/protocol#error-codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Canceled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Code {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "canceled" => Self::Canceled,
            "unknown" => Self::Unknown,
            "invalid_argument" => Self::InvalidArgument,
            "deadline_exceeded" => Self::DeadlineExceeded,
            "not_found" => Self::NotFound,
            "already_exists" => Self::AlreadyExists,
            "permission_denied" => Self::PermissionDenied,
            "resource_exhausted" => Self::ResourceExhausted,
            "failed_precondition" => Self::FailedPrecondition,
            "aborted" => Self::Aborted,
            "out_of_range" => Self::OutOfRange,
            "unimplemented" => Self::Unimplemented,
            "internal" => Self::Internal,
            "unavailable" => Self::Unavailable,
            "data_loss" => Self::DataLoss,
            "unauthenticated" => Self::Unauthenticated,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Canceled => "canceled",
            Self::Unknown => "unknown",
            Self::InvalidArgument => "invalid_argument",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::PermissionDenied => "permission_denied",
            Self::ResourceExhausted => "resource_exhausted",
            Self::FailedPrecondition => "failed_precondition",
            Self::Aborted => "aborted",
            Self::OutOfRange => "out_of_range",
            Self::Unimplemented => "unimplemented",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::DataLoss => "data_loss",
            Self::Unauthenticated => "unauthenticated",
        }
    }

    /// The code Connect assigns to an HTTP status when the body carries none
    /// (e.g. a proxy's 502 page).
    fn from_http_status(status: u16) -> Self {
        match status {
            400 => Self::Internal,
            401 => Self::Unauthenticated,
            403 => Self::PermissionDenied,
            404 => Self::Unimplemented,
            429 | 502 | 503 | 504 => Self::Unavailable,
            _ => Self::Unknown,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The Worker answered with a Connect error.
    #[error("{method}: {code}: {message}")]
    Status {
        method: &'static str,
        code: Code,
        message: String,
    },
    /// No answer: connection refused, reset, or the per-call timeout elapsed.
    #[error("{method}: transport error: {source}")]
    Transport {
        method: &'static str,
        /// Set when the request provably never reached the server (connect
        /// failure), which makes even a non-idempotent call safe to resend.
        not_sent: bool,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method}: bad response: {message}")]
    Protocol {
        method: &'static str,
        message: String,
    },
    /// One attempt ran out of its own time (`RetryPolicy::timeout`).
    #[error("{method}: no answer within {after:?}")]
    Timeout {
        method: &'static str,
        after: Duration,
    },
    /// The call's overall deadline passed, retries included.
    #[error("{method}: deadline of {deadline:?} exceeded{}", last.as_ref().map(|l| format!(" (last error: {l})")).unwrap_or_default())]
    DeadlineExceeded {
        method: &'static str,
        deadline: Duration,
        last: Option<String>,
    },
}

impl RpcError {
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Status { code, .. } => Some(*code),
            Self::DeadlineExceeded { .. } => Some(Code::DeadlineExceeded),
            _ => None,
        }
    }

    /// Whether a retry may succeed, and may be sent without risking a
    /// duplicated side effect.
    fn retryable(&self, idempotent: bool) -> bool {
        match self {
            Self::Status { code, .. } => idempotent && *code == Code::Unavailable,
            Self::Transport { not_sent, .. } => idempotent || *not_sent,
            Self::Timeout { .. } => idempotent,
            Self::Protocol { .. } | Self::DeadlineExceeded { .. } => false,
        }
    }
}

/// Timeout and retry settings for every call.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Per-attempt deadline, covering connect, send and the whole reply.
    pub timeout: Duration,
    /// Overall deadline of a call, all attempts and backoffs included. A
    /// call never takes longer, whatever the attempt count says.
    pub deadline: Duration,
    /// Total attempts, including the first.
    pub max_attempts: u32,
    /// First backoff; doubles each retry, with jitter, up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(15),
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Client for one Connect service on one base URL, with fixed headers.
#[derive(Clone)]
pub struct ConnectClient {
    http: reqwest::Client,
    base: Url,
    service: &'static str,
    headers: Vec<(&'static str, String)>,
    policy: RetryPolicy,
}

impl ConnectClient {
    pub fn new(
        base: Url,
        service: &'static str,
        headers: Vec<(&'static str, String)>,
        policy: RetryPolicy,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            matches!(base.scheme(), "http" | "https"),
            "coordinator URL must be http(s): {base}"
        );
        // No reqwest-level total timeout: each attempt is bounded by
        // `tokio::time::timeout` in `call_encoded`, which knows the deadline.
        let http = reqwest::Client::builder()
            .connect_timeout(policy.timeout)
            .build()?;
        Ok(Self {
            http,
            base,
            service,
            headers,
            policy,
        })
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Call `method`, retrying per the policy. `idempotent` says whether the
    /// request may be resent after it might have been processed.
    pub async fn call<Req: Message, Resp: Message + Default>(
        &self,
        method: &'static str,
        request: &Req,
        idempotent: bool,
    ) -> Result<Resp, RpcError> {
        self.call_encoded(
            method,
            request.encode_to_vec().into(),
            idempotent,
            self.policy.deadline,
        )
        .await
    }

    /// [`call`](Self::call) with an already encoded request and an overall
    /// deadline of its own (capped by nothing else: callers pass the
    /// policy's deadline or a shorter one).
    pub async fn call_encoded<Resp: Message + Default>(
        &self,
        method: &'static str,
        body: Bytes,
        idempotent: bool,
        deadline: Duration,
    ) -> Result<Resp, RpcError> {
        let start = Instant::now();
        let expired = |last: Option<&RpcError>| RpcError::DeadlineExceeded {
            method,
            deadline,
            last: last.map(ToString::to_string),
        };
        let mut backoff = self.policy.initial_backoff;
        let mut attempt = 1;
        // What the last failed attempt said: a deadline that ends the call
        // names it, whichever attempt the deadline cuts.
        let mut last: Option<RpcError> = None;
        loop {
            let Some(left) = deadline
                .checked_sub(start.elapsed())
                .filter(|d| !d.is_zero())
            else {
                return Err(expired(last.as_ref()));
            };
            // Each attempt gets the smaller of its own timeout and what is
            // left of the call's, so the last one cannot overrun the deadline.
            let budget = self.policy.timeout.min(left);
            let outcome =
                match tokio::time::timeout(budget, self.call_once(method, body.clone(), budget))
                    .await
                {
                    Ok(outcome) => outcome,
                    Err(_) if budget < self.policy.timeout => return Err(expired(last.as_ref())),
                    Err(_) => Err(RpcError::Timeout {
                        method,
                        after: budget,
                    }),
                };
            match outcome {
                Ok(resp) => return Ok(resp),
                Err(err) if attempt < self.policy.max_attempts && err.retryable(idempotent) => {
                    // Full jitter keeps many relays from retrying in lockstep
                    // after a shared outage.
                    let sleep = rand::thread_rng().gen_range(backoff / 2..=backoff);
                    if start.elapsed() + sleep >= deadline {
                        return Err(expired(Some(&err)));
                    }
                    tracing::debug!(method, attempt, ?sleep, error = %err, "retrying coordinator call");
                    tokio::time::sleep(sleep).await;
                    backoff = (backoff * 2).min(self.policy.max_backoff);
                    attempt += 1;
                    last = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn call_once<Resp: Message + Default>(
        &self,
        method: &'static str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        let url = self.url_for(method);
        let mut req = self
            .http
            .post(url)
            .header("Content-Type", "application/proto")
            .header("Connect-Protocol-Version", "1")
            .header("Connect-Timeout-Ms", timeout.as_millis().to_string());
        for (name, value) in &self.headers {
            req = req.header(*name, value);
        }

        let transport = |source: reqwest::Error| RpcError::Transport {
            method,
            not_sent: source.is_connect(),
            source,
        };
        let resp = req.body(body).send().await.map_err(transport)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(transport)?;

        if status.is_success() {
            return Resp::decode(bytes).map_err(|err| RpcError::Protocol {
                method,
                message: format!("undecodable {method} response: {err}"),
            });
        }

        #[derive(serde::Deserialize)]
        struct ErrorBody {
            code: Option<String>,
            message: Option<String>,
        }
        let parsed: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        let code = parsed
            .as_ref()
            .and_then(|e| e.code.as_deref())
            .and_then(Code::parse)
            .unwrap_or_else(|| Code::from_http_status(status.as_u16()));
        let message = parsed.and_then(|e| e.message).unwrap_or_else(|| {
            format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )
        });
        Err(RpcError::Status {
            method,
            code,
            message,
        })
    }

    fn url_for(&self, method: &str) -> Url {
        // Keep any path prefix in the base URL (e.g. a Worker mounted under a
        // route) instead of replacing it.
        let mut url = self.base.clone();
        let prefix = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{prefix}/{}/{method}", self.service));
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn client(base: &str) -> ConnectClient {
        client_with(base, RetryPolicy::default())
    }

    fn client_with(base: &str, policy: RetryPolicy) -> ConnectClient {
        ConnectClient::new(
            Url::parse(base).unwrap(),
            "moqworker.v1.CoordinatorService",
            vec![],
            policy,
        )
        .unwrap()
    }

    #[test]
    fn method_urls_keep_the_base_path() {
        assert_eq!(
            client("http://127.0.0.1:8787").url_for("Lookup").as_str(),
            "http://127.0.0.1:8787/moqworker.v1.CoordinatorService/Lookup"
        );
        assert_eq!(
            client("https://x.example/api/").url_for("Lookup").as_str(),
            "https://x.example/api/moqworker.v1.CoordinatorService/Lookup"
        );
    }

    #[test]
    fn only_safe_errors_are_retried() {
        let unavailable = RpcError::Status {
            method: "Lookup",
            code: Code::Unavailable,
            message: String::new(),
        };
        assert!(unavailable.retryable(true));
        assert!(!unavailable.retryable(false));

        let exists = RpcError::Status {
            method: "RegisterNamespace",
            code: Code::AlreadyExists,
            message: String::new(),
        };
        assert!(!exists.retryable(true));
    }

    #[test]
    fn codes_round_trip() {
        for code in [
            "already_exists",
            "not_found",
            "unavailable",
            "invalid_argument",
        ] {
            assert_eq!(Code::parse(code).unwrap().as_str(), code);
        }
        assert_eq!(Code::parse("bogus"), None);
        assert_eq!(Code::from_http_status(503), Code::Unavailable);
    }

    /// A real HTTP/1.1 server on loopback that answers every request with
    /// 503 + a Connect `unavailable` error, counting requests.
    async fn always_unavailable() -> (String, Arc<AtomicUsize>) {
        unavailable_then_silent(usize::MAX).await
    }

    /// Like [`always_unavailable`] for the first `answered` requests; later
    /// ones are read and never answered (their connection stays open).
    async fn unavailable_then_silent(answered: usize) -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    // Read the head and the (small) body, then answer.
                    loop {
                        let n = sock.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&seen).to_string();
                        if let Some(head_end) = text.find("\r\n\r\n") {
                            let len = text[..head_end]
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap())
                                })
                                .unwrap_or(0);
                            if seen.len() >= head_end + 4 + len {
                                break;
                            }
                        }
                    }
                    if counter.fetch_add(1, Ordering::SeqCst) >= answered {
                        // Hold the connection until the client gives up on it.
                        let _ = sock.read(&mut buf).await;
                        return;
                    }
                    let body = r#"{"code":"unavailable","message":"try later"}"#;
                    let resp = format!(
                        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        (base, hits)
    }

    #[tokio::test]
    async fn unavailable_is_retried_only_for_idempotent_calls() {
        let (base, hits) = always_unavailable().await;
        let mut c = client(&base);
        c.policy.initial_backoff = Duration::from_millis(5);

        let err = c
            .call::<_, crate::proto::LookupResponse>(
                "Lookup",
                &crate::proto::LookupRequest::default(),
                true,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(Code::Unavailable), "{err}");
        assert_eq!(err.to_string(), "Lookup: unavailable: try later");
        assert_eq!(
            hits.load(Ordering::SeqCst),
            4,
            "idempotent: every attempt used"
        );

        hits.store(0, Ordering::SeqCst);
        let err = c
            .call::<_, crate::proto::SubscribeTrackResponse>(
                "SubscribeTrack",
                &crate::proto::SubscribeTrackRequest::default(),
                false,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(Code::Unavailable));
        assert_eq!(hits.load(Ordering::SeqCst), 1, "non-idempotent: sent once");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let c = client_with(
            &silent_server().await,
            RetryPolicy {
                timeout: Duration::from_millis(200),
                max_attempts: 2,
                ..RetryPolicy::default()
            },
        );
        let start = std::time::Instant::now();
        let err = c
            .call::<_, crate::proto::LookupResponse>(
                "Lookup",
                &crate::proto::LookupRequest::default(),
                true,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Timeout { .. }), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
    }

    /// A server that accepts connections and never answers.
    async fn silent_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        base
    }

    #[tokio::test]
    async fn the_overall_deadline_bounds_a_slow_attempt() {
        // Each attempt may take 10 s, but the call as a whole has 300 ms.
        let c = client_with(
            &silent_server().await,
            RetryPolicy {
                timeout: Duration::from_secs(10),
                deadline: Duration::from_millis(300),
                max_attempts: 10,
                ..RetryPolicy::default()
            },
        );
        let start = std::time::Instant::now();
        let err = c
            .call::<_, crate::proto::HeartbeatResponse>(
                "Heartbeat",
                &crate::proto::HeartbeatRequest::default(),
                true,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::DeadlineExceeded { .. }), "{err}");
        assert_eq!(err.code(), Some(Code::DeadlineExceeded));
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
    }

    /// An empty Lookup under the client's own deadline, which must fail.
    async fn lookup_failing(c: &ConnectClient) -> RpcError {
        c.call_encoded::<crate::proto::LookupResponse>(
            "Lookup",
            Bytes::new(),
            true,
            c.policy.deadline,
        )
        .await
        .unwrap_err()
    }

    #[tokio::test]
    async fn the_overall_deadline_cuts_retries_short() {
        // Ten attempts with 100 ms+ backoffs cannot fit in 250 ms: the call
        // stops early, says why, and names the last error it saw.
        let (base, hits) = always_unavailable().await;
        let mut c = client(&base);
        c.policy.max_attempts = 10;
        c.policy.deadline = Duration::from_millis(250);
        c.policy.initial_backoff = Duration::from_millis(100);
        let err = lookup_failing(&c).await;
        assert!(matches!(err, RpcError::DeadlineExceeded { .. }), "{err}");
        assert!(err.to_string().contains("try later"), "{err}");
        let sent = hits.load(Ordering::SeqCst);
        assert!((1..10).contains(&sent), "{sent} attempts");
    }

    #[tokio::test]
    async fn a_deadline_that_cuts_an_attempt_still_names_the_last_error() {
        // The first attempt is refused, the second never answered: the
        // deadline ends the second, and the error says what the first said.
        let (base, hits) = unavailable_then_silent(1).await;
        let mut c = client(&base);
        c.policy.deadline = Duration::from_millis(300);
        c.policy.initial_backoff = Duration::from_millis(10);
        let err = lookup_failing(&c).await;
        assert!(matches!(err, RpcError::DeadlineExceeded { .. }), "{err}");
        assert!(
            err.to_string()
                .ends_with("(last error: Lookup: unavailable: try later)"),
            "{err}"
        );
        assert_eq!(
            hits.load(Ordering::SeqCst),
            2,
            "one refused, one unanswered"
        );
    }

    #[tokio::test]
    async fn connection_refused_is_retried_then_reported() {
        // Bind then drop a listener so the port is (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = client(&format!("http://127.0.0.1:{port}"));
        c.policy.initial_backoff = Duration::from_millis(10);
        let start = std::time::Instant::now();
        let err = c
            .call::<crate::proto::ShutdownRequest, crate::proto::ShutdownResponse>(
                "Shutdown",
                &crate::proto::ShutdownRequest {},
                false,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, RpcError::Transport { not_sent: true, .. }),
            "{err}"
        );
        // Three backoffs of at least 5, 10 and 20 ms passed: it did retry.
        assert!(start.elapsed() >= Duration::from_millis(35));
    }
}
