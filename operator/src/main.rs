use anyhow::Context as _;
use clap::{Parser, Subcommand};
use cvs_operator::controller::leader;
use cvs_operator::{controller, crd, metrics::Metrics, server};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

// jemalloc rather than the C library's allocator: the image is a static musl binary, and musl's
// allocator is slow with many threads; and jemalloc reports what the program holds apart from
// what it keeps for reuse (`cvs_heap_*_bytes`), which tells a leak from fragmentation.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Kubernetes operator that keeps a multi-region live HLS event on air.
#[derive(Parser)]
#[command(name = "cvs-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers against the cluster in KUBECONFIG or the in-cluster config.
    Run(Box<RunArgs>),
    /// Print both CustomResourceDefinitions as one multi-document YAML stream.
    Crd,
    /// Merge instances' master playlists as the operator does and print the merged master (or
    /// the steering manifest) to stdout; differences and notes go to stderr.
    Merge(MergeArgs),
}

#[derive(clap::Args)]
struct MergeArgs {
    /// One instance, as REGION=CDN_DOMAIN=MASTER_FILE_OR_URL; repeat for each region. A file's
    /// relative URIs resolve against https://CDN_DOMAIN/ (give the URL to keep the origin path).
    #[arg(long = "instance", required = true)]
    instances: Vec<cvs_operator::controller::publish::CliInstance>,
    /// Add EXT-X-CONTENT-STEERING with this SERVER-URI (and PATHWAY-IDs).
    #[arg(long)]
    steering_uri: Option<String>,
    /// TTL of the steering manifest, in seconds.
    #[arg(long, default_value_t = 10)]
    steering_ttl: u32,
    /// Print the steering manifest (every instance open) instead of the master.
    #[arg(long)]
    steering_manifest: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Address for /metrics, /healthz and /readyz. Loopback by default, so a binary run by hand
    /// exposes nothing; in a pod, listen on the pod's address (the Helm chart does).
    #[arg(long, env = "CVS_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Watch only this namespace (default: every namespace).
    #[arg(long, env = "CVS_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Timeout of one playlist request.
    #[arg(long, env = "CVS_PROBE_TIMEOUT", default_value = "4s")]
    probe_timeout: humantime::Duration,
    /// Largest media playlist accepted, in bytes (64 KiB to 64 MiB). The body is read in
    /// chunks and abandoned past the limit; a larger one makes its rendition stale
    /// (PlaylistTooLarge). At most this much is held per request in flight.
    #[arg(long, env = "CVS_MAX_PLAYLIST_BYTES",
          default_value_t = cvs_operator::probe::fetch::DEFAULT_MAX_MEDIA_BYTES,
          value_parser = clap::value_parser!(u64).range(65_536..=67_108_864))]
    max_playlist_bytes: u64,
    /// Largest master playlist accepted, in bytes (4 KiB to 16 MiB); a larger one makes the
    /// instance stale (MasterTooLarge) and is not published.
    #[arg(long, env = "CVS_MAX_MASTER_PLAYLIST_BYTES",
          default_value_t = cvs_operator::probe::fetch::DEFAULT_MAX_MASTER_BYTES,
          value_parser = clap::value_parser!(u64).range(4_096..=16_777_216))]
    max_master_playlist_bytes: u64,
    /// Longest line of a playlist, in bytes (1 KiB to 1 MiB); a longer one makes the playlist
    /// stale (PlaylistLineTooLong).
    #[arg(long, env = "CVS_MAX_PLAYLIST_LINE_BYTES",
          default_value_t = cvs_operator::probe::scan::DEFAULT_MAX_LINE_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1_024..=1_048_576))]
    max_playlist_line_bytes: u64,
    /// Most segments in one media playlist (100 to 1,000,000); more make the rendition stale
    /// (TooManySegments). The default holds over 13 hours of 2 s segments.
    #[arg(long, env = "CVS_MAX_SEGMENTS_PER_PLAYLIST",
          default_value_t = cvs_operator::probe::scan::DEFAULT_MAX_SEGMENTS,
          value_parser = clap::value_parser!(u64).range(100..=1_000_000))]
    max_segments_per_playlist: u64,
    /// Most LL-HLS parts (EXT-X-PART) in one media playlist (10 to 100,000); more make the
    /// rendition stale (TooManyParts).
    #[arg(long, env = "CVS_MAX_PARTS_PER_PLAYLIST",
          default_value_t = cvs_operator::probe::scan::DEFAULT_MAX_PARTS,
          value_parser = clap::value_parser!(u64).range(10..=100_000))]
    max_parts_per_playlist: u64,
    /// Redirects followed per playlist request (http and https only).
    #[arg(long, env = "CVS_MAX_REDIRECTS", default_value_t = 3)]
    max_redirects: usize,
    /// Playlist requests in flight at once.
    #[arg(long, env = "CVS_PROBE_CONCURRENCY", default_value_t = 256)]
    probe_concurrency: usize,
    /// Playlist requests in flight at once to one origin host (host and port).
    #[arg(long, env = "CVS_PROBE_HOST_CONCURRENCY", default_value_t = 128)]
    probe_host_concurrency: usize,
    /// Also probe origins on loopback and private addresses (10/8, 172.16/12, 192.168/16,
    /// 100.64/10, fc00::/7): for tests and local demos. Link-local and metadata addresses are
    /// never probed.
    #[arg(long, env = "CVS_ALLOW_PRIVATE_ORIGINS")]
    allow_private_origins: bool,
    /// Most media playlists probed for one StreamInstance (1 to 10,000); a master listing more
    /// makes the instance stale (TooManyRenditions) without probing any of them.
    #[arg(long, env = "CVS_MAX_RENDITIONS_PER_MASTER",
          default_value_t = cvs_operator::probe::engine::DEFAULT_MAX_RENDITIONS as u64,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    max_renditions_per_master: u64,
    /// Playlist requests in flight at once for one StreamInstance.
    #[arg(long, env = "CVS_PROBE_INSTANCE_CONCURRENCY", default_value_t = 16)]
    probe_instance_concurrency: usize,
    /// LL-HLS blocking playlist reloads held at once, across every probe. They take none of the
    /// permits above; a rendition that finds this pool full polls plainly meanwhile.
    #[arg(long, env = "CVS_PROBE_BLOCKING_CONCURRENCY", default_value_t = 1024)]
    probe_blocking_concurrency: usize,
    /// LL-HLS blocking playlist reloads held at once to one origin host (host and port).
    #[arg(
        long,
        env = "CVS_PROBE_BLOCKING_HOST_CONCURRENCY",
        default_value_t = 256
    )]
    probe_blocking_host_concurrency: usize,
    /// How often each master playlist is fetched again to follow added or removed renditions.
    #[arg(long, env = "CVS_REDISCOVER_INTERVAL", default_value = "10s")]
    rediscover_interval: humantime::Duration,
    /// Longest wait between polls of a failing playlist.
    #[arg(long, env = "CVS_MAX_PROBE_BACKOFF", default_value = "30s")]
    max_probe_backoff: humantime::Duration,
    /// Reconciliations in flight at once, per controller (StreamInstance, ClusteredStream).
    /// Bounds the burst of API requests at start-up, when every object is reconciled at once.
    #[arg(long, env = "CVS_RECONCILE_CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..))]
    reconcile_concurrency: u16,
    /// How often each instance's per-rendition detail (media sequence, last change) is refreshed
    /// in its status when nothing else changed. Every refresh is one status write per instance:
    /// 1,000 instances at 30 s is 33 writes/s to the API server.
    #[arg(long, env = "CVS_STATUS_REFRESH_INTERVAL", default_value = "30s")]
    status_refresh_interval: humantime::Duration,
    /// Scheme of the URIs in the merged master playlist: `https` (CloudFront); `http` only for a
    /// local test CDN.
    #[arg(long, env = "CVS_CDN_SCHEME", default_value = "https",
          value_parser = ["https", "http"])]
    cdn_scheme: String,
    /// Who decides which AWS resources (state table, SNS topic, S3 objects, CloudFront
    /// distributions, edge function) a namespace's ClusteredStreams may use: `off` (any the
    /// operator's AWS role can use) or `namespace-annotations` (the `cvs.dev/allowed-*`
    /// annotations on the Namespace, set by the cluster administrator; deny by default). See
    /// SECURITY.md.
    #[arg(long, env = "CVS_TENANT_POLICY", value_enum, default_value_t = controller::tenancy::TenantPolicy::Off)]
    tenant_policy: controller::tenancy::TenantPolicy,
    /// Serve the live dashboard on this address (its own listener; off when absent). See the
    /// README's Dashboard section: sign-in is a Kubernetes bearer token, checked with
    /// TokenReview; closing or opening an instance needs `patch` on it (SubjectAccessReview).
    #[arg(long, env = "CVS_DASHBOARD_ADDR")]
    dashboard_addr: Option<SocketAddr>,
    /// Let anyone who reaches the dashboard read it (the state and its live updates) without
    /// signing in; actions still need a session.
    #[arg(long, env = "CVS_DASHBOARD_ANONYMOUS_READ")]
    dashboard_anonymous_read: bool,
    /// Mark the dashboard's session cookie `Secure`, so browsers send it only over HTTPS: set it
    /// when people reach the dashboard through TLS (an ingress). `kubectl port-forward` to
    /// `http://localhost` still works in current browsers, which treat localhost as secure.
    #[arg(long, env = "CVS_DASHBOARD_SECURE_COOKIE")]
    dashboard_secure_cookie: bool,
    /// Log format.
    #[arg(long, env = "CVS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    election: ElectionArgs,
}

/// Leader election: with several replicas, only the holder of a coordination.k8s.io Lease
/// probes and acts; the others stand by and take over when it goes.
#[derive(clap::Args)]
#[command(next_help_heading = "Leader election")]
struct ElectionArgs {
    /// Run as one of several replicas: act only while holding the Lease (the Helm chart turns
    /// this on). Off, the process acts alone and at once.
    #[arg(long = "leader-election", env = "CVS_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the Lease: the operator's own.
    #[arg(long = "leader-election-namespace", env = "POD_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the Lease (coordination.k8s.io/v1).
    #[arg(
        long = "leader-election-lease-name",
        env = "CVS_LEADER_ELECTION_LEASE_NAME",
        default_value = "cvs-operator"
    )]
    leader_election_lease_name: String,
    /// This replica's name in the Lease, unique per process (default: the host name and the
    /// process id).
    #[arg(long = "leader-election-identity", env = "POD_NAME")]
    leader_election_identity: Option<String>,
    /// How long a standby waits, after it last saw the leader renew, before taking over: the
    /// time a crashed leader's work stops (whole seconds in the Lease, rounded up).
    #[arg(long, env = "CVS_LEASE_DURATION", default_value = "15s")]
    lease_duration: humantime::Duration,
    /// A leader that could not renew its Lease for this long stops acting (it exits with code 4
    /// and is restarted as a standby). Shorter than --lease-duration.
    #[arg(long, env = "CVS_LEASE_RENEW_DEADLINE", default_value = "10s")]
    lease_renew_deadline: humantime::Duration,
    /// How often the leader renews the Lease and a standby reads it (a standby also watches
    /// it, so a released Lease is taken at once).
    #[arg(long, env = "CVS_LEASE_RETRY_PERIOD", default_value = "2s")]
    lease_retry_period: humantime::Duration,
}

impl ElectionArgs {
    fn settings(&self) -> Result<leader::Settings, leader::SettingsError> {
        let settings = leader::Settings {
            namespace: self.leader_election_namespace.clone().unwrap_or_default(),
            lease_name: self.leader_election_lease_name.clone(),
            identity: self
                .leader_election_identity
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(leader::default_identity),
            lease_duration: self.lease_duration.into(),
            renew_deadline: self.lease_renew_deadline.into(),
            retry_period: self.lease_retry_period.into(),
        };
        settings.validate()?;
        Ok(settings)
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Exit code when the CRDs are missing: the operator cannot do anything useful.
const EXIT_CRDS_MISSING: u8 = 3;

fn init_tracing(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("CVS_LOG").unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight work");
}

/// AWS configuration from the standard credential chain and `AWS_ENDPOINT_URL_*`, with short
/// timeouts and bounded retries so an unreachable AWS endpoint costs a reconcile seconds, not
/// minutes.
async fn load_aws_config() -> aws_config::SdkConfig {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    use std::time::Duration;
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(8))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await
}

/// A probed instance whose verdict is older than this means the probe engine is stuck: the
/// engine republishes a verdict on the first media-playlist report or master round 5 s after
/// the last (a master round comes every rediscover interval, plus up to one more while a working
/// master waits behind the media playlists at a busy host, plus a request timeout), so this
/// allows several missed rounds and never less than five minutes: a false alarm restarts the
/// operator, which costs more than a late one.
fn probe_stall_bound(
    rediscover: std::time::Duration,
    timeout: std::time::Duration,
) -> std::time::Duration {
    (rediscover.saturating_add(timeout))
        .saturating_mul(6)
        .max(std::time::Duration::from_secs(300))
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    init_tracing(args.log_format);
    let election = if args.election.leader_election {
        match args.election.settings() {
            Ok(settings) => Some(settings),
            Err(e) => {
                eprintln!("cvs-operator: {e}");
                return Ok(ExitCode::from(2));
            }
        }
    } else {
        None
    };
    let client = kube::Client::try_default()
        .await
        .context("cannot build a Kubernetes client (is KUBECONFIG set, or are we in a cluster?)")?;
    if let Err(e) = controller::check_crds(&client, args.namespace.as_deref()).await {
        tracing::error!("{e}");
        eprintln!("cvs-operator: {e}");
        return Ok(match e {
            controller::StartError::CrdMissing(_) => ExitCode::from(EXIT_CRDS_MISSING),
            controller::StartError::Unreachable(_) => ExitCode::FAILURE,
        });
    }

    let metrics = Arc::new(Metrics::default().with_heap_stats());
    let health = controller::Health::default();
    let election_status = if election.is_some() {
        leader::Status::default()
    } else {
        leader::Status::without_election()
    };
    let listener = server::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let steering = cvs_operator::controller::publish::SteeringStore::default();
    let http = tokio::spawn(server::serve(
        listener,
        metrics.clone(),
        health.clone(),
        election_status.clone(),
        steering.clone(),
        wait_stop(stop_rx.clone()),
    ));
    // The dashboard serves on every replica: a standby shows what the leader writes to status
    // (through its own two watches) until it leads and has the controllers' caches.
    let feed = cvs_operator::dashboard::Feed::default();
    let dashboard = match args.dashboard_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for the dashboard"))?;
            tracing::info!(addr = %listener.local_addr()?, anonymous_read = args.dashboard_anonymous_read, secure_cookie = args.dashboard_secure_cookie, "serving the dashboard");
            if election.is_some() {
                feed.watch_alone(client.clone(), args.namespace.as_deref());
            }
            let frames = feed.start(election_status.clone());
            let router = cvs_operator::dashboard::router(
                cvs_operator::dashboard::Settings {
                    anonymous_read: args.dashboard_anonymous_read,
                    secure_cookies: args.dashboard_secure_cookie,
                    ..Default::default()
                },
                client.clone(),
                feed.clone(),
                frames,
                stop_rx.clone(),
            );
            Some(tokio::spawn(cvs_operator::dashboard::serve(
                listener,
                router,
                wait_stop(stop_rx.clone()),
            )))
        }
        None => None,
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });

    // With election, nothing below runs until this process leads; a standby that is asked to
    // stop simply exits. Losing the Lease later ends the process (see controller::leader).
    let release = match election {
        Some(settings) => {
            let (mut leading, release) = leader::Elector::new(
                client.clone(),
                settings,
                election_status.clone(),
                metrics.clone(),
            )
            .start();
            let stopped = tokio::select! {
                led = leading.wait_for(|l| *l) => {
                    if led.is_err() {
                        anyhow::bail!("the leader election task ended");
                    }
                    false
                }
                () = wait_stop(stop_rx.clone()) => true,
            };
            if stopped {
                give_up(&release).await;
                http.await.context("HTTP server task failed")??;
                if let Some(dashboard) = dashboard {
                    dashboard.await.context("dashboard task failed")??;
                }
                tracing::info!("cvs-operator stopped cleanly (standby)");
                return Ok(ExitCode::SUCCESS);
            }
            Some(release)
        }
        None => {
            metrics.leader.set(1);
            None
        }
    };

    let settings = cvs_operator::probe::EngineSettings {
        limits: cvs_operator::probe::fetch::FetchLimits {
            request_timeout: args.probe_timeout.into(),
            max_body_bytes: args.max_playlist_bytes,
            max_master_bytes: args.max_master_playlist_bytes,
            max_redirects: args.max_redirects,
            concurrency: args.probe_concurrency,
            per_host: args.probe_host_concurrency,
            per_instance: args.probe_instance_concurrency,
            allow_private: args.allow_private_origins,
            blocking_concurrency: args.probe_blocking_concurrency,
            blocking_per_host: args.probe_blocking_host_concurrency,
        },
        rediscover_every: args.rediscover_interval.into(),
        max_backoff: args.max_probe_backoff.into(),
        max_renditions: usize::try_from(args.max_renditions_per_master).unwrap_or(usize::MAX),
        parse: cvs_operator::probe::fetch::ParseLimits {
            max_line_bytes: usize::try_from(args.max_playlist_line_bytes).unwrap_or(usize::MAX),
            max_segments: args.max_segments_per_playlist,
            max_parts: args.max_parts_per_playlist,
        },
        ..Default::default()
    };
    let publish_fetch = cvs_operator::probe::fetch::FetchLimits {
        concurrency: 64,
        ..settings.limits.clone()
    };
    let (probes, probe_changes) = cvs_operator::probe::ProbeEngine::new(settings, metrics.clone())
        .context("cannot build the probe HTTP client")?;
    let aws = load_aws_config().await;
    let publish_settings = controller::publish::PublishSettings {
        fetch: publish_fetch,
        limits: cvs_operator::decide::master::Limits {
            max_bytes: usize::try_from(args.max_master_playlist_bytes).unwrap_or(usize::MAX),
            ..Default::default()
        },
        refresh: args.rediscover_interval.into(),
        cdn_scheme: args.cdn_scheme.clone(),
    };
    let publisher = controller::publish::Publisher::new(publish_settings, aws.clone(), steering)
        .context("cannot build the publication HTTP client")?;
    let wiring = controller::Wiring {
        client,
        namespace: args.namespace.clone(),
        metrics,
        probes: Arc::new(probes),
        probe_changes,
        aws,
        publisher: Arc::new(publisher),
        reconcile_concurrency: args.reconcile_concurrency,
        detail_refresh: args.status_refresh_interval.into(),
        probe_stall: probe_stall_bound(args.rediscover_interval.into(), args.probe_timeout.into()),
        tenant_policy: args.tenant_policy,
        feed,
    };
    controller::run(wiring, health, wait_stop(stop_rx)).await;
    // Nothing acts any more: hand over at once rather than after the lease duration.
    if let Some(release) = release {
        give_up(&release).await;
    }
    http.await.context("HTTP server task failed")??;
    if let Some(dashboard) = dashboard {
        dashboard.await.context("dashboard task failed")??;
    }
    tracing::info!("cvs-operator stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// Asks the elector to release the Lease (if held) and waits for it, at most a few seconds.
async fn give_up(release: &tokio::sync::mpsc::Sender<leader::ReleaseRequest>) {
    let (done, released) = tokio::sync::oneshot::channel();
    if release.send(done).await.is_ok() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), released).await;
    }
}

async fn merge(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let (bytes, notes) = controller::publish::merge_command(
        &args.instances,
        args.steering_uri,
        args.steering_ttl,
        args.steering_manifest,
        // Run by a person on URLs of their choosing: loopback and private origins are fine.
        &cvs_operator::probe::fetch::FetchLimits {
            allow_private: true,
            ..Default::default()
        },
    )
    .await?;
    for note in notes {
        eprintln!("cvs-operator merge: {note}");
    }
    use std::io::Write as _;
    std::io::stdout().write_all(&bytes)?;
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => crd::render_yaml()
            .map(|yaml| {
                print!("{yaml}");
                ExitCode::SUCCESS
            })
            .map_err(anyhow::Error::from),
        Command::Run(args) => run(*args).await,
        Command::Merge(args) => merge(args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cvs-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary run by hand exposes its endpoints on loopback only.
    #[test]
    fn endpoints_listen_on_loopback_by_default() {
        let Command::Run(args) = Cli::try_parse_from(["cvs-operator", "run"])
            .unwrap()
            .command
        else {
            panic!("run");
        };
        if std::env::var_os("CVS_LISTEN").is_none() {
            assert!(args.listen.ip().is_loopback(), "{}", args.listen);
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// Leader election is off for a binary run by hand; on, it takes its defaults and refuses
    /// to run without a namespace for the Lease.
    #[test]
    fn leader_election_flags() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["cvs-operator", "run"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Run(args) => args,
                _ => panic!("run"),
            }
        };
        if std::env::var_os("CVS_LEADER_ELECTION").is_none() {
            assert!(!parse(&[]).election.leader_election);
        }
        let args = parse(&[
            "--leader-election",
            "--leader-election-namespace",
            "cvs-system",
            "--leader-election-identity",
            "pod-a",
        ]);
        let settings = args.election.settings().unwrap();
        assert_eq!(settings.lease_name, "cvs-operator");
        assert_eq!(settings.identity, "pod-a");
        assert_eq!(settings.lease_duration, std::time::Duration::from_secs(15));
        assert_eq!(settings.renew_deadline, std::time::Duration::from_secs(10));
        assert_eq!(settings.retry_period, std::time::Duration::from_secs(2));
        if std::env::var_os("POD_NAMESPACE").is_none() {
            assert_eq!(
                parse(&["--leader-election"])
                    .election
                    .settings()
                    .unwrap_err(),
                leader::SettingsError::NoNamespace
            );
        }
        let args = parse(&[
            "--leader-election-namespace",
            "ns",
            "--lease-duration",
            "5s",
            "--lease-renew-deadline",
            "6s",
        ]);
        assert!(matches!(
            args.election.settings(),
            Err(leader::SettingsError::Timings { .. })
        ));
    }

    #[test]
    fn probe_stall_bound_allows_several_rounds() {
        use std::time::Duration;
        assert_eq!(
            probe_stall_bound(Duration::from_secs(10), Duration::from_secs(4)),
            Duration::from_secs(300)
        );
        assert_eq!(
            probe_stall_bound(Duration::from_secs(60), Duration::from_secs(4)),
            Duration::from_secs(384)
        );
    }
}
