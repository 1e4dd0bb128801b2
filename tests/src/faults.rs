//! Fault injection for the fault suite (`tests/tests/faults.rs`): an environment of its own
//! (state dir `.cvs-env-faults`, so restarting a component never disturbs the other e2e tests),
//! components stopped and started on the same ports (`tests/env/component.sh`), a watcher that
//! records every state-table item and StreamInstance status it sees, and an API server proxy that
//! answers 429.

use anyhow::{Context as _, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The fault suite's own environment.
pub struct FaultEnv {
    pub state_dir: PathBuf,
}

impl FaultEnv {
    /// The state dir: `$CVS_FAULTS_STATE_DIR`, else `<repo>/.cvs-env-faults`.
    pub fn state_dir() -> PathBuf {
        std::env::var_os("CVS_FAULTS_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::repo_root().join(".cvs-env-faults"))
    }

    /// Starts (or reuses) the environment with `tests/env/up.sh` and puts its variables into this
    /// process's environment, replacing those of any other environment.
    ///
    /// # Safety
    /// Sets environment variables: call it before any other thread exists.
    pub unsafe fn up() -> anyhow::Result<Self> {
        let state_dir = Self::state_dir();
        let out = Command::new(crate::repo_root().join("tests/env/up.sh"))
            .env("CVS_STATE_DIR", &state_dir)
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("running tests/env/up.sh")?;
        if !out.status.success() {
            bail!("tests/env/up.sh failed ({})", out.status);
        }
        for (k, v) in parse_exports(&String::from_utf8_lossy(&out.stdout)) {
            // SAFETY: the caller guarantees no other thread runs yet.
            unsafe { std::env::set_var(k, v) };
        }
        Ok(Self { state_dir })
    }

    /// Stops the environment (tests/env/down.sh).
    pub fn down(&self) {
        let _ = Command::new(crate::repo_root().join("tests/env/down.sh"))
            .env("CVS_STATE_DIR", &self.state_dir)
            .status();
    }
}

/// `export K=V` lines as up.sh prints them (values quoted by `printf %q` only when they hold
/// special characters, which ours do not); PATH is left alone (tests use `CVS_KUBECTL`).
fn parse_exports(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .filter(|(k, _)| *k != "PATH")
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

/// A component of the environment: `etcd`, `kube-apiserver`, `dynamodb` or `moto`.
/// `action`: stop, kill, start, pause, resume (see `tests/env/component.sh`).
pub fn component(action: &str, name: &str) -> anyhow::Result<()> {
    let status = Command::new(crate::repo_root().join("tests/env/component.sh"))
        .args([action, name])
        .status()
        .context("running tests/env/component.sh")?;
    if !status.success() {
        bail!("component.sh {action} {name} failed ({status})");
    }
    Ok(())
}

/// Starts every component that is not running (after a test that failed half-way).
pub fn ensure_all_up() -> anyhow::Result<()> {
    for name in ["etcd", "kube-apiserver", "dynamodb", "moto"] {
        let running = Command::new(crate::repo_root().join("tests/env/component.sh"))
            .args(["status", name])
            .stderr(std::process::Stdio::null())
            .status()?
            .success();
        if !running {
            let _ = component("resume", name);
            if !Command::new(crate::repo_root().join("tests/env/component.sh"))
                .args(["status", name])
                .stderr(std::process::Stdio::null())
                .status()?
                .success()
            {
                component("start", name)?;
            }
        }
    }
    Ok(())
}

/// What the watcher keeps of one state-table item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemView {
    pub version: u64,
    pub distro_open: bool,
    pub desired_open: bool,
    pub fresh: bool,
    pub stale: bool,
    pub event_seq: u64,
    pub reason: String,
}

impl ItemView {
    pub fn of(item: &HashMap<String, AttributeValue>) -> Option<Self> {
        let b = |k: &str| item.get(k).and_then(|v| v.as_bool().ok()).copied();
        let n = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
        };
        Some(Self {
            version: n("version")?,
            distro_open: b("distro_open")?,
            desired_open: b("desired_open").unwrap_or(false),
            fresh: b("playlist_fresh").unwrap_or(false),
            stale: b("stale").unwrap_or(false),
            event_seq: n("event_seq").unwrap_or(0),
            reason: item
                .get("reason")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default(),
        })
    }
}

/// Every distinct value seen of each watched item (`None`: no item, or no table), in order, with
/// when it was first seen.
#[derive(Default)]
pub struct Seen {
    pub items: HashMap<String, Vec<(Instant, Option<ItemView>)>>,
    /// (instance name, Healthy condition status) changes seen on the StreamInstances.
    pub healthy: HashMap<String, Vec<(Instant, String)>>,
}

/// Polls the items of `domains` (strongly consistent, every 150 ms) and the Healthy condition of
/// `instances` until dropped, keeping every change. Failed reads (DynamoDB or the API server
/// down) are skipped, not recorded.
pub struct Watcher {
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    pub fn start(
        dynamodb: aws_sdk_dynamodb::Client,
        table: String,
        domains: Vec<String>,
        client: kube::Client,
        ns: String,
        instances: Vec<String>,
    ) -> Self {
        let seen: Arc<Mutex<Seen>> = Default::default();
        let out = seen.clone();
        let task = tokio::spawn(async move {
            let api: kube::Api<cvs_operator::resources::StreamInstance> =
                kube::Api::namespaced(client, &ns);
            loop {
                for d in &domains {
                    let read = tokio::time::timeout(
                        Duration::from_secs(2),
                        crate::state_item(&dynamodb, &table, d),
                    )
                    .await;
                    let view = match read {
                        Ok(Ok(item)) => item.as_ref().and_then(ItemView::of),
                        Ok(Err(e)) => {
                            // A table that does not exist reads as no item; anything else is
                            // DynamoDB being away.
                            if format!("{e:?}").contains("ResourceNotFound") {
                                None
                            } else {
                                continue;
                            }
                        }
                        Err(_) => continue,
                    };
                    let mut s = out.lock().unwrap();
                    let h = s.items.entry(d.clone()).or_default();
                    if h.last().map(|(_, v)| v) != Some(&view) {
                        h.push((Instant::now(), view));
                    }
                }
                for name in &instances {
                    let Ok(Ok(i)) =
                        tokio::time::timeout(Duration::from_secs(2), api.get(name)).await
                    else {
                        continue;
                    };
                    let Some(c) = i
                        .status
                        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Healthy"))
                    else {
                        continue;
                    };
                    let mut s = out.lock().unwrap();
                    let h = s.healthy.entry(name.clone()).or_default();
                    if h.last().map(|(_, v)| v) != Some(&c.status) {
                        h.push((Instant::now(), c.status));
                    }
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
        Self { seen, task }
    }

    /// The item values seen of `domain`, in order (absences included as `None`).
    pub fn items(&self, domain: &str) -> Vec<Option<ItemView>> {
        let s = self.seen.lock().unwrap();
        s.items
            .get(domain)
            .map(|h| h.iter().map(|(_, v)| v.clone()).collect())
            .unwrap_or_default()
    }

    /// The Healthy statuses seen of instance `name`, in order.
    pub fn healthy(&self, name: &str) -> Vec<String> {
        let s = self.seen.lock().unwrap();
        s.healthy
            .get(name)
            .map(|h| h.iter().map(|(_, v)| v.clone()).collect())
            .unwrap_or_default()
    }

    /// Checks what must hold of a healthy origin's item whatever the fault: its version never
    /// goes back (not even across the item or its table being lost), it is never judged stale
    /// nor unfresh once it was fresh, and its event sequence never goes back. Returns the
    /// versions seen.
    pub fn assert_healthy_and_monotonic(&self, domain: &str) -> Vec<u64> {
        self.assert_monotonic(domain);
        let seen = self.items(domain);
        let present: Vec<&ItemView> = seen.iter().flatten().collect();
        let first_fresh = present.iter().position(|v| v.fresh);
        if let Some(i) = first_fresh {
            for v in &present[i..] {
                assert!(
                    v.fresh && !v.stale,
                    "{domain}: a healthy origin's item turned unfresh or stale: {seen:#?}"
                );
            }
        }
        present.iter().map(|v| v.version).collect()
    }

    /// The first half of [`Self::assert_healthy_and_monotonic`]: versions and event sequences
    /// only go forward. Returns the versions seen.
    pub fn assert_monotonic(&self, domain: &str) -> Vec<u64> {
        let seen = self.items(domain);
        let present: Vec<&ItemView> = seen.iter().flatten().collect();
        assert!(!present.is_empty(), "{domain}: no item seen");
        for w in present.windows(2) {
            assert!(
                w[1].version > w[0].version,
                "{domain}: version did not advance between two different items seen: {seen:#?}"
            );
            assert!(
                w[1].event_seq >= w[0].event_seq,
                "{domain}: event_seq went back: {seen:#?}"
            );
        }
        present.iter().map(|v| v.version).collect()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The operator log has no panic.
pub fn assert_no_panic(log: &str) {
    for line in log.lines() {
        assert!(
            !line.contains("panicked at") && !line.contains("RUST_BACKTRACE"),
            "the operator panicked: {line}"
        );
    }
}

/// A plain-HTTP proxy in front of kube-apiserver (it authenticates upstream as the admin user)
/// that answers `429 Too Many Requests` with `Retry-After: 1` while throttling is on, as an API
/// server under load (API Priority and Fairness) does: to every request, or to one in
/// [`ThrottlingProxy::set_one_in`]. Open responses (watches) go on streaming. Counts the requests
/// it saw and the ones it refused.
pub struct ThrottlingProxy {
    pub addr: std::net::SocketAddr,
    pub throttle: Arc<std::sync::atomic::AtomicBool>,
    pub requests: Arc<std::sync::atomic::AtomicU64>,
    pub refused: Arc<std::sync::atomic::AtomicU64>,
    one_in: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    throttle: Arc<std::sync::atomic::AtomicBool>,
    requests: Arc<std::sync::atomic::AtomicU64>,
    refused: Arc<std::sync::atomic::AtomicU64>,
    /// While throttling, refuse one request in this many (0 or 1: every one).
    one_in: Arc<std::sync::atomic::AtomicU64>,
}

impl ThrottlingProxy {
    /// Proxies to the kube-apiserver of the environment in `CVS_STATE_DIR`.
    pub async fn start() -> anyhow::Result<Self> {
        let state_dir = PathBuf::from(std::env::var("CVS_STATE_DIR")?);
        let port = std::fs::read_to_string(state_dir.join("run/kube-apiserver.port"))?;
        let pki = state_dir.join("pki");
        let mut identity = std::fs::read(pki.join("admin.crt"))?;
        identity.extend(std::fs::read(pki.join("admin.key"))?);
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(
                pki.join("ca.crt"),
            )?)?)
            .identity(reqwest::Identity::from_pem(&identity)?)
            .no_proxy()
            .build()?;
        let state = ProxyState {
            upstream: format!("https://127.0.0.1:{}", port.trim()),
            http,
            throttle: Default::default(),
            requests: Default::default(),
            refused: Default::default(),
            one_in: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (throttle, requests, refused, one_in) = (
            state.throttle.clone(),
            state.requests.clone(),
            state.refused.clone(),
            state.one_in.clone(),
        );
        let app = axum::Router::new()
            .fallback(proxy_request)
            .with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            throttle,
            requests,
            refused,
            one_in,
            task,
        })
    }

    /// A kubeconfig (written to `path`) that reaches the API server through this proxy.
    pub fn kubeconfig(&self, path: &std::path::Path) -> anyhow::Result<String> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: throttled\n  cluster: {{server: \"http://{}\"}}\nusers:\n- name: anonymous\n  user: {{}}\ncontexts:\n- name: throttled\n  context: {{cluster: throttled, user: anonymous, namespace: default}}\ncurrent-context: throttled\n",
            self.addr
        );
        std::fs::write(path, text)?;
        Ok(path.display().to_string())
    }

    pub fn set_throttle(&self, on: bool) {
        self.throttle.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// While throttling, refuse only one request in `n` (the `n`-th, `2n`-th, ... seen), as an
    /// API server shedding part of its load does; 0 or 1 refuses every one.
    pub fn set_one_in(&self, n: u64) {
        self.one_in.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// (requests seen, requests answered 429) so far.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.requests.load(SeqCst), self.refused.load(SeqCst))
    }
}

impl Drop for ThrottlingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn proxy_request(
    axum::extract::State(s): axum::extract::State<ProxyState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use std::sync::atomic::Ordering::SeqCst;
    let n = s.requests.fetch_add(1, SeqCst) + 1;
    let one_in = s.one_in.load(SeqCst).max(1);
    if s.throttle.load(SeqCst) && n.is_multiple_of(one_in) {
        s.refused.fetch_add(1, SeqCst);
        let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Too many requests, please try again later.","reason":"TooManyRequests","details":{"retryAfterSeconds":1},"code":429}"#;
        return (
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            [
                (axum::http::header::CONTENT_TYPE, "application/json"),
                (axum::http::header::RETRY_AFTER, "1"),
            ],
            body,
        )
            .into_response();
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut headers = parts.headers.clone();
    headers.remove(axum::http::header::HOST);
    let upstream = s
        .http
        .request(parts.method, format!("{}{path}", s.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await;
    match upstream {
        Ok(r) => {
            let mut out = axum::response::Response::builder().status(r.status());
            for (k, v) in r.headers() {
                out = out.header(k, v);
            }
            out.body(axum::body::Body::from_stream(r.bytes_stream()))
                .unwrap_or_else(|_| axum::http::StatusCode::BAD_GATEWAY.into_response())
        }
        Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
    }
}
