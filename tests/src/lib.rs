//! Helpers for the end-to-end suite. Every test runs against the real servers that
//! `tests/env/up.sh` starts (kube-apiserver and etcd, DynamoDB Local, moto) and drives the
//! cluster with the real `kubectl`, as a person would.
//!
//! Tests share one API server, so each works in a namespace of its own.

pub mod soak;

use anyhow::{Context as _, bail};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use kube;

pub mod faults;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The environment `tests/env/up.sh` exported. Panics with instructions when it is missing, so
/// an e2e test can never pass vacuously.
pub fn require_env() {
    if std::env::var("CVS_ENV_UP").as_deref() != Ok("1") {
        panic!(
            "the e2e environment is not up: run `make test` (or `eval \"$(tests/env/up.sh)\"` and then \
             `cargo test -p cvs-e2e`)"
        );
    }
}

/// Path of the `kubectl` built with the control plane.
pub fn kubectl_path() -> PathBuf {
    std::env::var_os("CVS_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| "kubectl".into())
}

/// Runs kubectl with `args`, and `stdin` as standard input when given.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    require_env();
    let mut cmd = Command::new(kubectl_path());
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("kubectl starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().expect("kubectl runs")
}

/// Runs kubectl and fails with its stderr when it does not succeed; returns stdout.
pub fn kubectl_ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = kubectl(args, stdin);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `kubectl patch <kind> <name> -n <ns> --type merge -p <patch>`, failing with kubectl's stderr
/// when it does not succeed.
pub fn kubectl_merge_patch(ns: &str, kind: &str, name: &str, patch: &str) -> String {
    kubectl_ok(
        &[
            "patch", kind, name, "-n", ns, "--type", "merge", "-p", patch,
        ],
        None,
    )
}

/// Runs kubectl until it succeeds (bounded), for what the API server publishes a little after
/// a CRD is Established (its OpenAPI document, used by `kubectl explain`).
pub async fn kubectl_eventually(args: &[&str], timeout: std::time::Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let out = kubectl(args, None);
        if out.status.success() {
            return String::from_utf8(out.stdout).unwrap();
        }
        if Instant::now() > deadline {
            panic!(
                "kubectl {args:?} kept failing: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The Kubernetes Events about the object called `name` in `ns` (empty when listing fails).
pub async fn events_for(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Vec<k8s_openapi::api::core::v1::Event> {
    let api: kube::Api<k8s_openapi::api::core::v1::Event> =
        kube::Api::namespaced(client.clone(), ns);
    api.list(&kube::api::ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Installs the CRDs from `crds/` and waits until the API server serves them.
pub fn install_crds() {
    let crds = repo_root().join("crds");
    kubectl_ok(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crds.to_str().unwrap(),
        ],
        None,
    );
    kubectl_ok(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/clusteredstreams.cvs.dev",
            "crd/streaminstances.cvs.dev",
        ],
        None,
    );
}

/// Creates a namespace unique to this test process and name.
pub fn namespace(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ns = format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    kubectl_ok(&["create", "namespace", &ns], None);
    ns
}

/// A kube client for the test cluster.
pub async fn client() -> kube::Client {
    require_env();
    kube::Client::try_default()
        .await
        .expect("kube client from KUBECONFIG")
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The StreamInstance name the e2e fixtures give a region's copy of the event.
pub fn instance_name(region: &str) -> String {
    format!("event-{region}")
}

/// The event the probe tests watch: the ClusteredStream `event` (state table `cvs-state`, with
/// `spec_extra`, YAML lines indented under `spec`, appended) and one StreamInstance per region
/// of `origins` (region, master playlist URL), as one manifest for `kubectl apply`.
pub fn probed_event_manifest(spec_extra: &str, origins: &[(&str, String)]) -> String {
    let mut manifest = format!(
        "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: event\nspec:\n  stateTable: {{name: cvs-state, region: us-east-1}}\n{spec_extra}"
    );
    for (i, (region, url)) in origins.iter().enumerate() {
        manifest.push_str("---\n");
        manifest.push_str(&stream_instance_manifest(
            &instance_name(region),
            region,
            &format!("d{i}.cloudfront.net"),
            url,
        ));
    }
    manifest
}

/// `cvs-operator run` flags of the probe tests: masters read again every second, failing
/// playlists retried within 2 s, rendition detail published every 2 s, so a test sees a
/// change within seconds.
pub const PROBE_TEST_FLAGS: [&str; 6] = [
    "--rediscover-interval",
    "1s",
    "--max-probe-backoff",
    "2s",
    "--status-refresh-interval",
    "2s",
];

/// A 1.5 s request timeout, with [`PROBE_TEST_FLAGS`], so a hanging origin fails within the
/// 1.5 s staleness bound of a 1 s target duration.
pub const SHORT_PROBE_TIMEOUT: [&str; 2] = ["--probe-timeout", "1500ms"];

/// The status of `region`'s instance of the event, if it has one.
pub async fn instance_status(
    instances: &kube::Api<cvs_operator::resources::StreamInstance>,
    region: &str,
) -> Option<cvs_operator::resources::StreamInstanceStatus> {
    instances.get(&instance_name(region)).await.ok()?.status
}

/// Waits until `region`'s instance has the `Healthy` condition `healthy`, returning its status.
pub async fn wait_instance_healthy(
    instances: &kube::Api<cvs_operator::resources::StreamInstance>,
    region: &str,
    healthy: bool,
    within: Duration,
) -> cvs_operator::resources::StreamInstanceStatus {
    let want = if healthy { "True" } else { "False" };
    wait_for(&format!("{region} Healthy={want}"), within, || async {
        let s = instance_status(instances, region).await?;
        let c = s.conditions.iter().find(|c| c.type_ == "Healthy")?;
        (c.status == want).then_some(s)
    })
    .await
}

/// A StreamInstance `name` of the event in `region`, behind CloudFront `domain`, whose origin
/// is `master_url`.
pub fn stream_instance_manifest(
    name: &str,
    region: &str,
    domain: &str,
    master_url: &str,
) -> String {
    format!(
        "apiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: {name}\nspec:\n  clusteredStream: event\n  region: {region}\n  cloudfront: {{domain: {domain}}}\n  origin: {{url: \"{master_url}\"}}\n"
    )
}

/// What the state, leader-election and fault tests start from: the simulator serving one
/// stream (2 video renditions and 1 audio) in us-east-1 and eu-west-1, a namespace, an SQS
/// inbox subscribed to a new SNS topic, and the ClusteredStream `event` applied with its own
/// state table (created by the operator), `failover` and that topic. No instance yet.
pub struct StatefulEvent {
    pub sim: hls_sim::SimHandle,
    pub ns: String,
    pub table: String,
    pub inbox: EventInbox,
}

impl StatefulEvent {
    pub async fn start(test: &str, target_duration: Duration, failover: &str) -> StatefulEvent {
        install_crds();
        let sim = hls_sim::Simulator::start(hls_sim::SimConfig {
            regions: vec!["us-east-1".into(), "eu-west-1".into()],
            streams: 1,
            renditions: 2,
            audio_renditions: 1,
            target_duration,
            ..hls_sim::SimConfig::default()
        })
        .await
        .expect("simulator starts");
        let ns = namespace(test);
        let inbox = EventInbox::create(&ns)
            .await
            .expect("SNS topic and SQS inbox");
        let table = format!("{ns}-state");
        let manifest = format!(
            "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: event\nspec:\n  stateTable: {{name: {table}, region: us-east-1, create: true}}\n  failover: {failover}\n  notifications: {{snsTopicArn: \"{}\"}}\n",
            inbox.topic_arn
        );
        kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
        StatefulEvent {
            sim,
            ns,
            table,
            inbox,
        }
    }
}

/// The StreamInstance of `region` (see [`instance_name`], [`instance_domain`]) on the
/// simulator's copy of stream `s0001` there.
pub fn region_instance_manifest(sim: &hls_sim::SimHandle, region: &str) -> String {
    stream_instance_manifest(
        &instance_name(region),
        region,
        &instance_domain(region),
        &sim.master_url(region, "s0001").expect("a simulated region"),
    )
}

/// The CloudFront domain the e2e fixtures give a region's instance.
pub fn instance_domain(region: &str) -> String {
    format!("d-{region}.cloudfront.net")
}

/// A free loopback port (bound and released; good enough on a test machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `cvs-operator` binary, built by `make test` before the suite runs.
pub fn operator_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CVS_OPERATOR_BIN") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("debug").join("cvs-operator")
}

/// The operator, running as a separate process as it would in a pod.
pub struct Operator {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Operator {
    /// Starts `cvs-operator run` with its log in the state dir, and waits for `/readyz`.
    pub async fn start(name: &str, namespace: &str) -> anyhow::Result<Self> {
        Self::start_with(name, namespace, &[]).await
    }

    /// Starts the operator with extra `run` arguments.
    pub async fn start_with(name: &str, namespace: &str, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_full(name, namespace, extra, &[]).await
    }

    /// Starts the operator with extra `run` arguments and environment variables.
    pub async fn start_full(
        name: &str,
        namespace: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        require_env();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let logs = std::env::var_os("CVS_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = logs.join(format!("operator-{name}-{}.log", std::process::id()));
        // Appends, so a restarted operator's log follows the first one's.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let bin = operator_binary();
        if !bin.exists() {
            bail!(
                "{} does not exist; run `cargo build -p operator` first",
                bin.display()
            );
        }
        let child = Command::new(&bin)
            .args([
                "run",
                "--listen",
                &addr.to_string(),
                "--namespace",
                namespace,
                // The simulator and test servers listen on loopback.
                "--allow-private-origins",
            ])
            .args(extra)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("CVS_LOG", "info,cvs_operator=debug")
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut op = Operator {
            child: Some(child),
            addr,
            log,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("http://{addr}/readyz")).send().await
                && r.status().is_success()
            {
                return Ok(op);
            }
            if let Some(status) = op.child.as_mut().unwrap().try_wait()? {
                bail!(
                    "operator exited early with {status}; log:\n{}",
                    op.log_text()
                );
            }
            if Instant::now() > deadline {
                bail!("operator not ready within 30 s; log:\n{}", op.log_text());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process with SIGKILL, as a crash or an evicted pod would end.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GETs a path on the operator's HTTP endpoint.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let r = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit; returns its exit code.
    pub async fn terminate(mut self, within: Duration) -> anyhow::Result<Option<i32>> {
        // The child stays in `self` until it has exited, so `Drop` reaps it on every early return.
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait()? {
                self.child = None;
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                bail!(
                    "operator did not exit within {within:?} of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A TCP proxy on loopback in front of a real server, which a test can take down (every
/// connection, new and open, is cut) and bring back, to show an AWS service going away.
pub struct TcpProxy {
    pub addr: SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Proxies a fresh loopback port to `target` (an `http://host:port` URL or `host:port`).
    pub async fn start(target: &str) -> anyhow::Result<Self> {
        let target = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let generation = std::sync::Arc::new(generation);
        let (up2, gen2) = (up.clone(), generation.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let mut cut = gen2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            up,
            generation,
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts every open connection and refuses new ones (they are accepted and closed at once).
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

/// AWS SDK configuration for the emulators `tests/env/up.sh` started.
pub async fn aws_config() -> aws_config::SdkConfig {
    require_env();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// The state-table item of `domain` in `table`, read strongly consistent: `Ok(None)` when there
/// is none.
pub async fn state_item(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    domain: &str,
) -> anyhow::Result<
    Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
> {
    Ok(dynamodb
        .get_item()
        .table_name(table)
        .key(
            "domain",
            aws_sdk_dynamodb::types::AttributeValue::S(domain.to_owned()),
        )
        .consistent_read(true)
        .send()
        .await?
        .item)
}

/// A latency distribution in milliseconds (nearest-rank percentiles), for the benchmarks.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Dist {
    pub n: usize,
    pub min: i64,
    pub p50: i64,
    pub p90: i64,
    pub p99: i64,
    pub max: i64,
    pub mean: f64,
}

pub fn dist(values: impl IntoIterator<Item = i64>) -> Option<Dist> {
    let mut v: Vec<i64> = values.into_iter().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some(Dist {
        n: v.len(),
        min: v[0],
        p50: rank(0.50),
        p90: rank(0.90),
        p99: rank(0.99),
        max: v[v.len() - 1],
        mean: v.iter().sum::<i64>() as f64 / v.len() as f64,
    })
}

/// A minimal HTTP origin on loopback that serves fixed bodies by path (404 for anything else),
/// for playlists the HLS simulator cannot make: absurd numbers, thousands of variants.
pub struct StaticOrigin {
    pub addr: SocketAddr,
    bodies: std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StaticOrigin {
    pub async fn start() -> anyhow::Result<Self> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let bodies: std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, String>>> =
            Default::default();
        let served = bodies.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    continue;
                };
                let served = served.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                        if request.len() > 64 * 1024 {
                            return;
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let body = served.read().unwrap().get(&path).cloned();
                    let response = match body {
                        Some(b) => format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.apple.mpegurl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                            b.len()
                        ),
                        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
                    };
                    let _ = conn.write_all(response.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Ok(Self { addr, bodies, task })
    }

    /// Serves `body` at `path` (which starts with `/`).
    pub fn serve(&self, path: &str, body: impl Into<String>) {
        self.bodies
            .write()
            .unwrap()
            .insert(path.to_owned(), body.into());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for StaticOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Operator {
    /// Waits (bounded) for the process to exit by itself; returns its exit code.
    pub async fn wait_exit(mut self, within: Duration) -> anyhow::Result<Option<i32>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait()? {
                self.child = None;
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                bail!(
                    "operator did not exit within {within:?}; log:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of an unlabelled metric on `/metrics` (None when absent or unreadable).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics").await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

/// An SNS topic with an SQS queue subscribed to it, in moto: what a subscriber of the
/// operator's events receives.
pub struct EventInbox {
    pub topic_arn: String,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    received: std::sync::Mutex<Vec<serde_json::Value>>,
}

impl EventInbox {
    /// Creates topic `name`, queue `name` and the subscription.
    pub async fn create(name: &str) -> anyhow::Result<Self> {
        let aws = aws_config().await;
        let sns = aws_sdk_sns::Client::new(&aws);
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let topic_arn = sns
            .create_topic()
            .name(name)
            .send()
            .await?
            .topic_arn
            .context("no topic ARN")?;
        let queue_url = sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await?
            .queue_url
            .context("no queue URL")?;
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes
            .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .context("no queue ARN")?;
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send()
            .await?;
        Ok(Self {
            topic_arn,
            sqs,
            queue_url,
            received: Default::default(),
        })
    }

    /// Every event received so far, in arrival order: the SNS envelope's Message parsed, with
    /// the message text as sent under `_raw` and the envelope's attributes under `_attributes`.
    pub async fn events(&self) -> Vec<serde_json::Value> {
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("SQS receive");
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let envelope: serde_json::Value =
                    serde_json::from_str(m.body.as_deref().unwrap_or("{}")).unwrap();
                let raw = envelope["Message"].as_str().unwrap().to_owned();
                let mut event: serde_json::Value = serde_json::from_str(&raw).unwrap();
                event["_raw"] = raw.into();
                event["_attributes"] = envelope["MessageAttributes"].clone();
                self.received.lock().unwrap().push(event);
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle.unwrap())
                    .send()
                    .await
                    .expect("SQS delete");
            }
        }
        self.received.lock().unwrap().clone()
    }
}
