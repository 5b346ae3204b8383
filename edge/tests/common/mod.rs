//! Test support: a real local moq-worker (started by test/e2e/lib/worker.mjs) and admin calls.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use moq_worker_edge::{proto, ConnectClient, RetryPolicy};
use url::Url;

/// Lease of the Worker the tests start (a `MOQ_WORKER_URL` one has its own).
pub const TEST_LEASE_TTL_MS: u32 = 5000;

/// Most peers per Heartbeat answer or ListPeers page of the Worker the tests
/// start, so that a few relays already take pages and deltas.
pub const TEST_PEER_PAGE_SIZE: u32 = 2;

/// Local development admin token (documented; never accepted when deployed).
pub const DEV_ADMIN_TOKEN: &str = "dev-admin-token";

/// A Worker to test against: either one a script already started
/// (`MOQ_WORKER_URL`), or our own through the Node launcher, stopped on drop.
pub struct Worker {
    pub url: Url,
    pub admin_token: String,
    child: Option<Child>,
    _state: Option<tempfile::TempDir>,
    log: Option<PathBuf>,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The project's one Worker launcher (`test/e2e/lib/worker.mjs`), run with
/// the project's Node: `npm start`'s Worker on our port and state directory,
/// with a short lease so the cases that let it lapse finish quickly, and
/// small peer pages.
fn launcher(port: u16, state: &std::path::Path) -> Command {
    let root = repo_root();
    let node = root.join("node_modules/.bin/node");
    let mut cmd = Command::new(if node.exists() {
        node
    } else {
        PathBuf::from("node")
    });
    cmd.arg(root.join("test/e2e/lib/worker.mjs"))
        .arg("--port")
        .arg(port.to_string())
        .arg("--persist-to")
        .arg(state)
        .arg("--var")
        .arg(format!("LEASE_TTL_MS:{TEST_LEASE_TTL_MS}"))
        .arg("--var")
        .arg(format!("PEER_PAGE_SIZE:{TEST_PEER_PAGE_SIZE}"))
        .current_dir(&root);
    cmd
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Worker {
    pub async fn start() -> anyhow::Result<Self> {
        let admin_token =
            std::env::var("MOQ_ADMIN_TOKEN").unwrap_or_else(|_| DEV_ADMIN_TOKEN.to_string());
        if let Ok(url) = std::env::var("MOQ_WORKER_URL") {
            let worker = Self {
                url: Url::parse(&url).context("MOQ_WORKER_URL")?,
                admin_token,
                child: None,
                _state: None,
                log: None,
            };
            worker.wait_ready(Duration::from_secs(30)).await?;
            return Ok(worker);
        }

        let state = tempfile::tempdir()?;
        let port = free_tcp_port();
        let log = std::env::temp_dir().join(format!("moq-edge-worker-{port}.log"));
        let out = std::fs::File::create(&log)?;
        // The launcher stops wrangler and workerd when it gets SIGTERM (drop).
        let child = launcher(port, state.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .context("failed to run test/e2e/lib/worker.mjs (run `npm ci` in the repo root)")?;
        let worker = Self {
            url: Url::parse(&format!("http://127.0.0.1:{port}"))?,
            admin_token,
            child: Some(child),
            _state: Some(state),
            log: Some(log.clone()),
        };
        worker
            .wait_ready(Duration::from_secs(90))
            .await
            .with_context(|| format!("the Worker did not come up; see {}", log.display()))?;
        Ok(worker)
    }

    async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let health = self.url.join("/healthz")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(resp) = http.get(health.clone()).send().await {
                if resp.status().is_success() {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{health} not healthy after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub fn admin(&self) -> Admin {
        Admin {
            rpc: ConnectClient::new(
                self.url.clone(),
                "moqworker.v1.AdminService",
                vec![("Authorization", format!("Bearer {}", self.admin_token))],
                RetryPolicy::default(),
            )
            .unwrap(),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = child.id();
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{pgid}")])
                .status();
            // The launcher gives wrangler 5 s before SIGKILL; wait a little longer.
            let deadline = Instant::now() + Duration::from_secs(8);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
            let _ = child.wait();
        }
        if let Some(log) = &self.log {
            let _ = std::fs::remove_file(log);
        }
    }
}

pub struct Admin {
    rpc: ConnectClient,
}

impl Admin {
    pub async fn relay_token(&self, relay_url: &str) -> anyhow::Result<String> {
        let resp: proto::CreateRelayTokenResponse = self
            .rpc
            .call(
                "CreateRelayToken",
                &proto::CreateRelayTokenRequest {
                    relay_url: relay_url.to_string(),
                    ..Default::default()
                },
                false,
            )
            .await?;
        Ok(resp.token)
    }

    pub async fn put_path(
        &self,
        path: &str,
        scope: &str,
        permissions: proto::Permissions,
    ) -> anyhow::Result<()> {
        let _: proto::PutPathResponse = self
            .rpc
            .call(
                "PutPath",
                &proto::PutPathRequest {
                    path: path.to_string(),
                    scope: scope.to_string(),
                    permissions: permissions as i32,
                },
                true,
            )
            .await?;
        Ok(())
    }

    /// Watch sockets open on `scope` now, as DescribeScope reports them.
    pub async fn watchers(&self, scope: &str) -> anyhow::Result<u32> {
        let resp: proto::DescribeScopeResponse = self
            .rpc
            .call(
                "DescribeScope",
                &proto::DescribeScopeRequest {
                    scope: Some(scope.to_string()),
                    page_size: 1,
                    ..Default::default()
                },
                true,
            )
            .await?;
        Ok(resp.watchers)
    }

    /// Any AdminService call (not retried).
    pub async fn call<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        method: &'static str,
        req: &Req,
    ) -> anyhow::Result<Resp> {
        Ok(self.rpc.call(method, req, false).await?)
    }

    pub async fn put_scope_config(
        &self,
        scope: &str,
        config: proto::ScopeConfig,
    ) -> anyhow::Result<()> {
        let _: proto::PutScopeConfigResponse = self
            .rpc
            .call(
                "PutScopeConfig",
                &proto::PutScopeConfigRequest {
                    scope: scope.to_string(),
                    config: Some(config),
                },
                true,
            )
            .await?;
        Ok(())
    }
}

/// A TCP forwarder in front of the Worker that a test can cut, to make the
/// Worker unreachable for one relay (its lease lapses) and then reachable
/// again, without touching the Worker or the relay.
pub struct Gate {
    pub url: Url,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// While set, open connections carry nothing (bytes wait), but stay open.
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Gate {
    pub async fn new(target: &Url) -> anyhow::Result<Self> {
        use std::sync::atomic::Ordering;
        let upstream = format!(
            "{}:{}",
            target.host_str().context("target host")?,
            target.port_or_known_default().context("target port")?
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = Url::parse(&format!("http://{}", listener.local_addr()?))?;
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let paused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (gate_open, gate_conns, gate_paused) = (open.clone(), conns.clone(), paused.clone());
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !gate_open.load(Ordering::SeqCst) {
                    continue; // dropped: connection reset
                }
                let upstream = upstream.clone();
                let paused = gate_paused.clone();
                let task = tokio::spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        tokio::join!(
                            pump(in_read, out_write, paused.clone()),
                            pump(out_read, in_write, paused),
                        );
                    }
                });
                gate_conns.lock().unwrap().push(task.abort_handle());
            }
        });
        Ok(Self {
            url,
            open,
            paused,
            conns,
            accept,
        })
    }

    /// Hold every byte on open connections (they stay open) until `resume`.
    pub fn pause(&self) {
        self.paused.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.paused
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Refuse new connections and reset the open ones.
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies one direction of a gated connection, holding bytes while paused.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let held = || paused.load(std::sync::atomic::Ordering::SeqCst);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while held() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
