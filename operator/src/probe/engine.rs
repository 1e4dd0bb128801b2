//! The probe engine: one task per StreamInstance, each with a supervised child task per media
//! playlist, all sharing one bounded HTTP client. Results go to an in-memory health table the
//! instance reconciler reads, and to a reconcile trigger for instances whose verdict changed.
//!
//! The operator's own limits never look like an origin's failure: a probe first waits for its
//! instance's, its host's and the global concurrency permit ([`FetchLimits`]), and a staleness
//! deadline that passes during that wait is not a verdict (the rendition is reported
//! `starved`, and counted in `cvs_probe_starved_total`); only time spent on the request itself
//! counts against the origin.

use super::confirm::{self, Confirm};
use super::credentials::OriginCredentials;
use super::decision::{self, Failure, InstanceVerdict, Policy, Tracker};
use super::destination::Destinations;
use super::fetch::{self, FetchLimits, Fetcher, InstanceBudget, ParseLimits, Polled, Rendition};
use super::host_queue::Urgency;
use super::llhls;
use super::redact::{redact_text, redact_url};
use super::segments::{self, SegmentCheck, SegmentRef};
use crate::decide::lag::{self, Edge, LagPolicy, LagTracker, LagVerdict, RenditionEdge, Standing};
use crate::metrics::{InstanceLabels, Metrics};
use prometheus_client::metrics::gauge::Gauge;
use reqwest::Url;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};

/// Identifies an instance: namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What to probe for one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeTarget {
    pub master_url: Url,
    pub policy: Policy,
    /// Hosts besides the master's own that renditions and redirects may be on (`host` for any
    /// port, or `host:port`). See [`super::destination`].
    pub allowed_hosts: Vec<String>,
    /// The header sent to the master's host and the allowed hosts (never on a redirect to
    /// another host), from the Secret the ClusteredStream names.
    pub credentials: Option<Arc<OriginCredentials>>,
    /// The ClusteredStream whose instances this one's live edge is compared with, and how
    /// (see [`crate::decide::lag`]); `None`: not compared.
    pub lag: Option<LagTarget>,
}

/// What an instance's lag is judged against.
#[derive(Clone, Debug, PartialEq)]
pub struct LagTarget {
    /// The ClusteredStream's name (in the instance's namespace).
    pub cluster: String,
    pub policy: LagPolicy,
}

impl ProbeTarget {
    fn destinations(&self) -> Arc<Destinations> {
        Arc::new(
            Destinations::new(&self.master_url, &self.allowed_hosts)
                .with_credentials(self.credentials.clone()),
        )
    }
}

/// Settings of the whole engine.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub limits: FetchLimits,
    /// Longest wait between polls of a failing playlist.
    pub max_backoff: Duration,
    /// How often the master playlist is fetched again to find added or removed renditions.
    pub rediscover_every: Duration,
    /// Most media playlists probed for one instance. A master listing more is not probed at
    /// all: the instance is stale (`TooManyRenditions`), and costs the others nothing.
    pub max_renditions: usize,
    /// How a failed (or hanging, or suspicious) fetch is confirmed before it counts.
    pub confirm: Confirm,
    /// Limits on what a playlist may hold (line length, segments, parts).
    pub parse: ParseLimits,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            limits: FetchLimits::default(),
            max_backoff: Duration::from_secs(30),
            rediscover_every: Duration::from_secs(10),
            max_renditions: DEFAULT_MAX_RENDITIONS,
            confirm: Confirm::default(),
            parse: ParseLimits::default(),
        }
    }
}

/// Default of [`EngineSettings::max_renditions`]: ten times a rich ladder (variants, I-frame
/// playlists, audio and subtitle languages).
pub const DEFAULT_MAX_RENDITIONS: usize = 500;

/// One rendition as last seen, for status.
#[derive(Clone, Debug, PartialEq)]
pub struct RenditionHealth {
    /// The URI last fetched, redacted (no user info, query values replaced).
    pub uri: String,
    pub kind: &'static str,
    /// Judged fresh. False while not judged yet: see `judged`.
    pub fresh: bool,
    /// False while there is no verdict yet (not fetched, or awaiting a new segment).
    pub judged: bool,
    /// Its staleness deadline passed while its probe waited for the operator's own concurrency
    /// limits: the verdict is older than it should be, through no fault of the origin.
    pub starved: bool,
    pub media_sequence: Option<u64>,
    pub target_duration_ms: Option<u64>,
    pub last_change: Option<jiff::Timestamp>,
    /// The reason it is stale (or not judged), or the last error, with URLs redacted.
    pub detail: Option<String>,
}

/// The latest health of one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceHealth {
    /// `verdict.healthy` is `None` while the instance is not judged yet: treat that as "no new
    /// verdict", never as healthy.
    pub verdict: InstanceVerdict,
    pub renditions: Vec<RenditionHealth>,
    /// Renditions whose probes are starved by the operator's own concurrency limits (see
    /// [`RenditionHealth::starved`]); non-zero means the operator is overloaded, not the origin.
    pub starved: usize,
    pub at: jiff::Timestamp,
    /// How far it runs behind the other instances of its ClusteredStream; `None` when it is
    /// not compared at all (no ClusteredStream).
    pub lag: Option<LagVerdict>,
}

/// The live edges of the instances of each ClusteredStream, by namespace and name.
type EdgeTable = HashMap<(String, String), BTreeMap<String, Edge>>;

struct Shared {
    fetcher: Fetcher,
    settings: EngineSettings,
    metrics: Arc<Metrics>,
    health: RwLock<HashMap<InstanceKey, InstanceHealth>>,
    /// Each instance's live edge, written by its task at every probe result and read by the
    /// tasks of the other instances of its ClusteredStream.
    edges: RwLock<EdgeTable>,
    changed: mpsc::UnboundedSender<InstanceKey>,
    /// Counts every publication to `health`, for readers that follow it (the dashboard).
    updates: watch::Sender<u64>,
    /// Monotonic origin of the millisecond clock the decisions use, and the wall time it maps to.
    epoch: Instant,
    epoch_wall: jiff::Timestamp,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
    fn wall(&self, ms: u64) -> jiff::Timestamp {
        self.epoch_wall
            .checked_add(jiff::SignedDuration::from_millis(
                i64::try_from(ms).unwrap_or(i64::MAX),
            ))
            .unwrap_or(self.epoch_wall)
    }
    fn instant(&self, ms: u64) -> Instant {
        // Far-off deadlines (hostile numbers) are capped at a day rather than overflowing.
        self.epoch + Duration::from_millis(ms.min(self.now_ms().saturating_add(86_400_000)))
    }
}

struct InstanceTask {
    target: watch::Sender<ProbeTarget>,
    handle: JoinHandle<()>,
}

/// The probe engine. Cheap to share behind an `Arc`.
pub struct ProbeEngine {
    shared: Arc<Shared>,
    tasks: Mutex<HashMap<InstanceKey, InstanceTask>>,
}

impl ProbeEngine {
    /// Creates the engine; the receiver yields instances whose verdict changed.
    pub fn new(
        settings: EngineSettings,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<InstanceKey>), reqwest::Error> {
        let (changed, changed_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            fetcher: Fetcher::new(&settings.limits)?,
            settings,
            metrics,
            health: RwLock::new(HashMap::new()),
            edges: RwLock::new(HashMap::new()),
            changed,
            updates: watch::Sender::new(0),
            epoch: Instant::now(),
            epoch_wall: jiff::Timestamp::now(),
        });
        Ok((
            Self {
                shared,
                tasks: Mutex::new(HashMap::new()),
            },
            changed_rx,
        ))
    }

    /// Starts probing `key`, or updates what is probed. Idempotent.
    pub fn ensure(&self, key: &InstanceKey, target: ProbeTarget) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = tasks.get(key)
            && !task.handle.is_finished()
        {
            task.target.send_if_modified(|current| {
                let differs = *current != target;
                if differs {
                    *current = target;
                }
                differs
            });
            return;
        }
        let (tx, rx) = watch::channel(target);
        let alive = self.shared.metrics.probe_task("instance");
        // Boxed, like a rendition's probe (see `spawn_rendition`).
        let probe = Box::pin(run_instance(key.clone(), rx, self.shared.clone()));
        let handle = tokio::spawn(async move {
            let _alive = alive;
            probe.await
        });
        tasks.insert(key.clone(), InstanceTask { target: tx, handle });
    }

    /// Stops probing every instance for which `keep` is false, and forgets its health.
    pub fn retain(&self, keep: impl Fn(&InstanceKey) -> bool) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|key, task| {
            let k = keep(key);
            if !k {
                task.handle.abort();
                self.shared
                    .health
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(key);
            }
            k
        });
    }

    /// The latest health of `key`: `None` until its probe has judged it once (healthy or
    /// stale); later, `verdict.healthy` is `None` while it is not judged again yet (renditions
    /// added to the master).
    pub fn health(&self, key: &InstanceKey) -> Option<InstanceHealth> {
        self.shared
            .health
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Changes (to a counter) every time an instance's health is published, changed or not:
    /// a reader wakes on it and reads [`ProbeEngine::health`].
    pub fn subscribe_updates(&self) -> watch::Receiver<u64> {
        self.shared.updates.subscribe()
    }

    /// Number of instances being probed.
    pub fn instances(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for ProbeEngine {
    fn drop(&mut self) {
        for (_, task) in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            task.handle.abort();
        }
    }
}

/// A rendition task's report to its instance task.
struct Report {
    key: String,
    tracker: Tracker,
    starved: bool,
    flipped: bool,
}

struct RenditionTask {
    kind: &'static str,
    uri: watch::Sender<Url>,
    tracker: Tracker,
    starved: bool,
    handle: JoinHandle<()>,
}

impl Drop for RenditionTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// What a rendition task needs from its instance.
#[derive(Clone)]
struct RenditionCtx {
    shared: Arc<Shared>,
    policy: watch::Receiver<Policy>,
    reports: mpsc::Sender<Report>,
    budget: Arc<InstanceBudget>,
    destinations: watch::Receiver<Arc<Destinations>>,
    /// Media playlists of the instance, which spaces the segment checks (see `segments`).
    renditions: Arc<std::sync::atomic::AtomicUsize>,
    /// The instance's last verdict was unhealthy: its polls wait behind the other instances'
    /// at a busy host (see [`judged_poll_wait`]).
    judged_unhealthy: Arc<std::sync::atomic::AtomicBool>,
}

fn spawn_rendition(
    ctx: &RenditionCtx,
    key: &str,
    uri: watch::Receiver<Url>,
    tracker: Tracker,
) -> JoinHandle<()> {
    let (run_ctx, k) = (ctx.clone(), key.to_owned());
    let alive = ctx.shared.metrics.probe_task("rendition");
    // Boxed: a future awaited inside the spawned block is stored in it twice (captured, and
    // again as the value being awaited), so every rendition's task held its probe twice, about
    // 8 KiB. Growing the probe by 56 bytes (the block by 112) added 18 MiB to the heap at
    // 10,010 playlists, most likely by crossing one of the allocator's size classes. Boxed,
    // the probe (about 4 KiB) has an allocation of its own and the task stays small: 161 MiB
    // held at rest at that scale, against 196 MiB before (RELIABILITY.md).
    let probe = Box::pin(supervise(
        key.to_owned(),
        ctx.shared.metrics.clone(),
        ctx.reports.clone(),
        tracker,
        move |tracker| run_rendition(k.clone(), uri.clone(), run_ctx.clone(), tracker),
    ));
    tokio::spawn(async move {
        let _alive = alive;
        probe.await
    })
}

/// Runs a rendition's probe (`run`, from a starting tracker) and restarts it if it panics,
/// reporting the rendition stale until the restarted probe has seen it recover. Returns when
/// the probe returns (its instance went away).
async fn supervise<F, Fut>(
    key: String,
    metrics: Arc<Metrics>,
    reports: mpsc::Sender<Report>,
    mut tracker: Tracker,
    run: F,
) where
    F: Fn(Tracker) -> Fut,
    Fut: Future<Output = ()>,
{
    use futures::FutureExt;
    loop {
        let ran = std::panic::AssertUnwindSafe(run(tracker))
            .catch_unwind()
            .await;
        if ran.is_ok() {
            return;
        }
        metrics.probe_task_restarts.inc();
        tracing::error!(rendition = %key, "rendition probe task panicked; restarting it");
        tracker = Tracker::restarted("the rendition's probe failed and was restarted");
        let report = Report {
            key: key.clone(),
            tracker: tracker.clone(),
            starved: false,
            flipped: true,
        };
        if reports.send(report).await.is_err() {
            return;
        }
        sleep(Duration::from_secs(1)).await;
    }
}

/// A master-playlist fetch in flight.
type MasterFetch = Pin<Box<dyn Future<Output = Result<Vec<Rendition>, Failure>> + Send>>;

async fn run_instance(
    key: InstanceKey,
    mut target_rx: watch::Receiver<ProbeTarget>,
    shared: Arc<Shared>,
) {
    let (report_tx, mut report_rx) = mpsc::channel::<Report>(256);
    let mut target = target_rx.borrow_and_update().clone();
    let (policy_tx, policy_rx) = watch::channel(target.policy);
    let (destinations_tx, destinations_rx) = watch::channel(target.destinations());
    let ctx = RenditionCtx {
        shared: shared.clone(),
        policy: policy_rx,
        reports: report_tx,
        budget: shared.fetcher.instance_budget(),
        destinations: destinations_rx,
        renditions: Arc::default(),
        judged_unhealthy: Arc::default(),
    };
    let mut renditions: BTreeMap<String, RenditionTask> = BTreeMap::new();
    let mut master_error: Option<Failure> = None;
    let mut master_failures: u32 = 0;
    let mut master_answered = false;
    let mut rng = fastrand::Rng::new();
    let mut next_master = Instant::now();
    // The master fetch runs beside the loop, so verdicts are aggregated while it is in flight.
    let mut master_fetch: Option<MasterFetch> = None;
    let mut last: Option<InstanceVerdict> = None;
    let mut last_lag: Option<LagVerdict> = None;
    let mut lag_tracker = LagTracker::default();
    // Removes this instance's live edge and lag series however the task ends.
    let mut edge_slot = EdgeSlot {
        shared: shared.clone(),
        key: key.clone(),
        group: None,
    };
    let mut last_judged: Option<bool> = None;
    let mut dirty = false;
    // Publish rendition details (sequence numbers, ages) at most this often without a flip.
    let mut next_publish = Instant::now();
    const PUBLISH_EVERY: Duration = Duration::from_secs(5);

    loop {
        tokio::select! {
            _ = sleep_until(next_master), if master_fetch.is_none() => {
                // A working master with renditions known only follows added or removed ones:
                // it waits behind the media playlists at a busy host (see `host_queue`). One
                // that failed is not: its next answer sets or clears `MasterUnavailable`. Any
                // read of an instance already judged unhealthy waits behind the instances not
                // judged yet (see `judged_poll_wait`).
                let priority = if ctx.judged_unhealthy.load(std::sync::atomic::Ordering::Relaxed) {
                    let min_target = known_min_target_ms(&renditions)
                        .unwrap_or(decision::DEFAULT_TARGET_DURATION_MS);
                    MasterPriority::Judged(judged_poll_wait(min_target))
                } else if renditions.is_empty() || master_error.is_some() || master_failures > 0 {
                    MasterPriority::Routine
                } else {
                    MasterPriority::FollowRenditions
                };
                master_fetch = Some(Box::pin(fetch_master(
                    shared.clone(),
                    ctx.budget.clone(),
                    target.master_url.clone(),
                    destinations_tx.borrow().clone(),
                    priority,
                )));
                continue;
            }
            found = async { master_fetch.as_mut().expect("guarded").await }, if master_fetch.is_some() => {
                master_fetch = None;
                // Whether this answer ends a run in step with the region's other instances.
                let spread = !master_answered || master_failures > 0;
                match found {
                    Ok(found) if found.len() > shared.settings.max_renditions => {
                        master_error = Some(Failure::TooManyRenditions(
                            found.len(),
                            shared.settings.max_renditions,
                        ));
                        master_failures = 0;
                        renditions.clear();
                        master_answered = true;
                        next_master =
                            Instant::now() + master_reread(&shared.settings, spread, &mut rng);
                    }
                    Ok(found) => {
                        master_error = None;
                        master_failures = 0;
                        let wanted: BTreeMap<String, Rendition> =
                            found.into_iter().map(|r| (r.key.clone(), r)).collect();
                        renditions.retain(|k, _| wanted.contains_key(k));
                        for (k, r) in wanted {
                            match renditions.get_mut(&k) {
                                Some(task) => {
                                    // Same rendition, perhaps a new per-request token.
                                    task.uri.send_if_modified(|u| {
                                        let differs = *u != r.uri;
                                        if differs {
                                            *u = r.uri.clone();
                                        }
                                        differs
                                    });
                                    if task.handle.is_finished() {
                                        // Ended without the supervisor restarting it.
                                        task.tracker = Tracker::restarted(
                                            "the rendition's probe ended and was restarted",
                                        );
                                        task.handle = spawn_rendition(
                                            &ctx,
                                            &k,
                                            task.uri.subscribe(),
                                            task.tracker.clone(),
                                        );
                                        shared.metrics.probe_task_restarts.inc();
                                    }
                                }
                                None => {
                                    let (uri_tx, uri_rx) = watch::channel(r.uri);
                                    let tracker = Tracker::new();
                                    let handle = spawn_rendition(&ctx, &k, uri_rx, tracker.clone());
                                    renditions.insert(k, RenditionTask {
                                        kind: r.kind,
                                        uri: uri_tx,
                                        tracker,
                                        starved: false,
                                        handle,
                                    });
                                }
                            }
                        }
                        master_answered = true;
                        next_master =
                            Instant::now() + master_reread(&shared.settings, spread, &mut rng);
                    }
                    Err(e) => {
                        // Like a media playlist: a transient failure (already confirmed by a
                        // retry) counts only once the threshold of failures in a row is reached.
                        master_failures = master_failures.saturating_add(1);
                        if !e.is_transient()
                            || master_failures >= target.policy.failure_threshold()
                        {
                            master_error = Some(e);
                        }
                        let min_target = known_min_target_ms(&renditions);
                        next_master = Instant::now()
                            + master_retry(master_failures, min_target, &shared.settings);
                    }
                }
                dirty = true;
            }
            Some(report) = report_rx.recv() => {
                if let Some(task) = renditions.get_mut(&report.key) {
                    // A new segment moves the rendition's age back to zero. The published copy
                    // is refreshed every PUBLISH_EVERY for status; a live reader (the
                    // dashboard, subscribed to `updates`) would meanwhile see a fresh rendition
                    // ageing past its bound, so it gets every advance.
                    let progressed = task.tracker.last_change_ms != report.tracker.last_change_ms
                        && shared.updates.receiver_count() > 0;
                    task.tracker = report.tracker;
                    task.starved = report.starved;
                    dirty = true;
                    if report.flipped || progressed {
                        next_publish = Instant::now();
                    }
                }
            }
            changed = target_rx.changed() => {
                if changed.is_err() {
                    return; // The engine dropped this instance.
                }
                let new = target_rx.borrow_and_update().clone();
                if new.master_url != target.master_url {
                    renditions.clear();
                    master_answered = false;
                    master_error = None;
                    master_failures = 0;
                    master_fetch = None;
                    last = None;
                    last_judged = None;
                    next_master = Instant::now();
                }
                if new.policy != target.policy {
                    let _ = policy_tx.send(new.policy);
                }
                if new.lag.as_ref().map(|l| &l.cluster) != target.lag.as_ref().map(|l| &l.cluster) {
                    edge_slot.leave();
                    lag_tracker = LagTracker::default();
                    dirty = true;
                }
                if new.master_url != target.master_url
                    || new.allowed_hosts != target.allowed_hosts
                    || new.credentials != target.credentials
                {
                    let _ = destinations_tx.send(new.destinations());
                }
                target = new;
                continue;
            }
        }
        ctx.renditions
            .store(renditions.len(), std::sync::atomic::Ordering::Relaxed);
        if !dirty {
            continue;
        }
        if master_error.is_none() && master_failures > 0 && renditions.is_empty() {
            // The master has failed fewer times than the threshold and nothing is known of the
            // renditions yet: no verdict (not "no renditions").
            dirty = false;
            continue;
        }
        let mut verdict = decision::aggregate(
            master_error.as_ref(),
            renditions.iter().map(|(k, t)| (k.as_str(), &t.tracker)),
        );
        ctx.judged_unhealthy.store(
            verdict.healthy == Some(false),
            std::sync::atomic::Ordering::Relaxed,
        );
        // Renditions are named by their keys (no user info, no query); error texts may still
        // quote a URL.
        verdict.message = redact_text(&verdict.message);
        let lag = target.lag.as_ref().map(|lt| {
            let standing = match verdict.healthy {
                Some(true) => Standing::Fresh,
                Some(false) => Standing::Stale,
                None => Standing::NotJudged,
            };
            let wall = jiff::Timestamp::now().as_millisecond();
            let edge = Edge::of(
                standing,
                renditions.values().map(|t| RenditionEdge {
                    fresh: t.tracker.is_fresh() && !t.starved,
                    pdt_end_unix_ms: t.tracker.last.and_then(|s| s.newest_end_unix_ms),
                    head: t.tracker.last.map_or(0, |s| s.head()),
                    target_duration_ms: t.tracker.target_duration_ms(),
                }),
                wall,
            );
            let comparison = edge_slot.publish(&lt.cluster, edge, |siblings| {
                lag::compare(&key.name, siblings, &lt.policy, wall)
            });
            lag_tracker.observe(&comparison, &lt.policy, shared.now_ms())
        });
        if verdict.healthy.is_none() && last_judged.is_none() {
            // Nothing judged yet since this instance's probe started: publish nothing, so a
            // cold start costs one status write per instance (its first verdict), not two, and
            // a consumer keeps what it knew before (after a restart: the recorded verdict).
            dirty = false;
            continue;
        }
        let lag_changed = match (&last_lag, &lag) {
            (Some(a), Some(b)) => !a.same_standing(b),
            (a, b) => a.is_some() != b.is_some(),
        };
        let verdict_changed = last.as_ref() != Some(&verdict) || lag_changed;
        if verdict_changed || Instant::now() >= next_publish {
            edge_slot.set_lag_metric(lag.as_ref().and_then(|l| l.lag_ms));
            if lag_changed && let Some(l) = &lag {
                tracing::info!(instance = %key, lagging = ?l.lagging, reason = l.reason, message = %l.message, "instance lag verdict changed");
            }
            let health = InstanceHealth {
                renditions: renditions
                    .values()
                    .map(|t| rendition_health(&shared, t))
                    .collect(),
                starved: renditions.values().filter(|t| t.starved).count(),
                verdict: verdict.clone(),
                at: jiff::Timestamp::now(),
                lag: lag.clone(),
            };
            shared
                .health
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), health);
            shared.updates.send_modify(|n| *n = n.wrapping_add(1));
            if verdict_changed {
                let _ = shared.changed.send(key.clone());
            }
            // A flip is a change of judged health; "not judged yet" in between is none.
            if let Some(healthy) = verdict.healthy
                && last_judged != Some(healthy)
            {
                shared
                    .metrics
                    .health_transitions
                    .get_or_create(&crate::metrics::HealthLabels {
                        to: if healthy { "healthy" } else { "stale" },
                    })
                    .inc();
                tracing::info!(instance = %key, healthy, reason = verdict.reason, message = %verdict.message, "instance health changed");
                last_judged = Some(healthy);
            }
            last = Some(verdict);
            last_lag = lag;
            dirty = false;
            next_publish = Instant::now() + PUBLISH_EVERY;
        }
    }
}

/// An instance's place in the live-edge table and its lag series, given back when its task
/// ends (instance deleted, shutdown) or it moves to another ClusteredStream.
struct EdgeSlot {
    shared: Arc<Shared>,
    key: InstanceKey,
    /// The ClusteredStream it is entered under.
    group: Option<(String, String)>,
}

impl EdgeSlot {
    /// Records this instance's edge under `cluster` and gives `compare` the edges of every
    /// instance of that ClusteredStream (under the table's lock: keep it short).
    fn publish<R>(
        &mut self,
        cluster: &str,
        edge: Edge,
        compare: impl FnOnce(&BTreeMap<String, Edge>) -> R,
    ) -> R {
        let group = (self.key.namespace.clone(), cluster.to_owned());
        if self.group.as_ref() != Some(&group) {
            self.leave();
        }
        let mut table = self.shared.edges.write().unwrap_or_else(|p| p.into_inner());
        let edges = table.entry(group.clone()).or_default();
        edges.insert(self.key.name.clone(), edge);
        let compared = compare(edges);
        self.group = Some(group);
        compared
    }

    fn leave(&mut self) {
        if let Some(group) = self.group.take() {
            let mut table = self.shared.edges.write().unwrap_or_else(|p| p.into_inner());
            if let Some(edges) = table.get_mut(&group) {
                edges.remove(&self.key.name);
                if edges.is_empty() {
                    table.remove(&group);
                }
            }
        }
        self.set_lag_metric(None);
    }

    fn labels(&self) -> InstanceLabels {
        InstanceLabels {
            namespace: self.key.namespace.clone(),
            instance: self.key.name.clone(),
        }
    }

    fn set_lag_metric(&self, lag_ms: Option<u64>) {
        let family = &self.shared.metrics.instance_lag;
        match lag_ms {
            Some(ms) => {
                family.get_or_create(&self.labels()).set(ms as f64 / 1000.0);
            }
            None => {
                family.remove(&self.labels());
            }
        }
    }
}

impl Drop for EdgeSlot {
    fn drop(&mut self) {
        self.leave();
    }
}

/// When a master that answered is read again. Every re-read lands at a random point in the last
/// fifth of `rediscover_every`. After its first answer, and after an answer that ended failures,
/// the next read lands anywhere in the interval's last nine tenths instead: every instance of a
/// region starts together and recovers together (its origin answers again for all of them at
/// once), and 700 masters of one host falling due in the same second take its permits from the
/// media playlists the next time that host hangs (RELIABILITY.md, "the third outage").
fn master_reread(settings: &EngineSettings, spread: bool, rng: &mut fastrand::Rng) -> Duration {
    let per_mille = if spread {
        rng.u32(100..=1000)
    } else {
        rng.u32(800..=1000)
    };
    settings.rediscover_every * per_mille / 1000
}

/// How long to wait before fetching a failing master again: exponential from 500 ms, but never
/// longer than the HLS reload interval of its renditions (half the smallest target duration
/// known, or of the default), so a master that answers again is noticed as a player would.
fn master_retry(failures: u32, min_target_ms: Option<u64>, settings: &EngineSettings) -> Duration {
    let td = min_target_ms.unwrap_or(decision::DEFAULT_TARGET_DURATION_MS);
    let reload = Duration::from_millis((td / 2).max(decision::MIN_POLL_MS));
    Duration::from_millis(500)
        .saturating_mul(1 << failures.min(8))
        .min(reload)
        .min(settings.max_backoff)
        .min(settings.rediscover_every)
}

fn rendition_health(shared: &Shared, task: &RenditionTask) -> RenditionHealth {
    let t = &task.tracker;
    RenditionHealth {
        uri: redact_url(&task.uri.borrow()),
        kind: task.kind,
        fresh: t.is_fresh(),
        judged: t.is_judged(),
        starved: task.starved,
        media_sequence: t.last.map(|s| s.media_sequence),
        target_duration_ms: t.last.map(|s| s.target_duration_ms),
        last_change: t.last_change_ms.map(|ms| shared.wall(ms)),
        detail: t
            .stale
            .as_ref()
            .map(|r| r.to_string())
            .or_else(|| t.last_error.as_ref().map(|e| e.to_string()))
            .map(|d| redact_text(&d)),
    }
}

/// The smallest target duration among the renditions whose playlist has been read.
fn known_min_target_ms(renditions: &BTreeMap<String, RenditionTask>) -> Option<u64> {
    renditions
        .values()
        .filter_map(|t| t.tracker.last.map(|_| t.tracker.target_duration_ms()))
        .min()
}

/// A permit for a read of an instance already judged unhealthy: behind the instances not
/// judged yet at its host, for at most `wait` (see [`judged_poll_wait`]).
async fn judged_permit(
    shared: &Shared,
    budget: &InstanceBudget,
    url: &Url,
    wait: Duration,
) -> fetch::Permit {
    let permit = shared.fetcher.background_permit(budget, url, wait).await;
    if permit.promoted() {
        shared.metrics.judged_polls_promoted.inc();
    }
    permit
}

/// A permit for one of a rendition's requests (its playlist, or a check of its newest
/// segment), asked for at `urgency`: behind the instances not judged yet when its instance is
/// judged unhealthy (see [`judged_permit`]); otherwise raised to a pending verdict where it
/// stands once the rendition's staleness deadline passes while it waits, as its answer then
/// decides the verdict (see `host_queue::Asker::decisive_at`).
///
/// A segment check asks as its poll did: as a routine request of a judged instance it would
/// hold the rendition's task behind every pending verdict at a busy host, and the instance's
/// recovery would go unseen.
async fn rendition_permit(
    ctx: &RenditionCtx,
    url: &Url,
    urgency: Urgency,
    tracker: &Tracker,
    policy: &Policy,
) -> fetch::Permit {
    let shared = &ctx.shared;
    if ctx
        .judged_unhealthy
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        let wait = judged_poll_wait(tracker.target_duration_ms());
        return judged_permit(shared, &ctx.budget, url, wait).await;
    }
    let deadline = past_deadline(shared, tracker, policy);
    shared
        .fetcher
        .poll_permit(&ctx.budget, url, urgency, deadline)
        .await
}

/// The instant just past the rendition's staleness deadline, if it has one: when a poll still
/// waiting for its permit is raised in its host's queue, and when it is reported starved.
fn past_deadline(shared: &Shared, tracker: &Tracker, policy: &Policy) -> Option<Instant> {
    tracker
        .watch_deadline_ms(policy)
        .map(|ms| shared.instant(ms.saturating_add(1)))
}

/// How a master read asks for its host's permit (see `host_queue`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MasterPriority {
    /// A routine poll: the instance's renditions are not known yet, or the master failed.
    Routine,
    /// A working master read again only to follow added or removed renditions: behind the
    /// media playlists for one rediscover interval at most.
    FollowRenditions,
    /// The instance is already judged unhealthy: behind the instances not judged yet, for at
    /// most this long (see [`judged_poll_wait`]).
    Judged(Duration),
}

async fn fetch_master(
    shared: Arc<Shared>,
    budget: Arc<InstanceBudget>,
    url: Url,
    destinations: Arc<Destinations>,
    priority: MasterPriority,
) -> Result<Vec<Rendition>, Failure> {
    let queued = Instant::now();
    let permit = match priority {
        MasterPriority::Routine => shared.fetcher.permit(&budget, &url, Urgency::Routine).await,
        // Behind the media playlists for one rediscover interval at most, then raised where it
        // stands: a host kept busy (not hung) by its media playlists still has
        // its masters read, and an origin whose rendition URIs carry expiring tokens gets
        // them refreshed.
        MasterPriority::FollowRenditions => {
            let permit = shared
                .fetcher
                .background_permit(&budget, &url, shared.settings.rediscover_every)
                .await;
            if permit.promoted() {
                shared.metrics.master_reads_promoted.inc();
            }
            permit
        }
        MasterPriority::Judged(wait) => judged_permit(&shared, &budget, &url, wait).await,
    };
    shared
        .metrics
        .probe_queue_wait
        .observe(queued.elapsed().as_secs_f64());
    let started = Instant::now();
    let (result, attempts) = confirm::confirmed(
        shared.settings.confirm,
        || async {
            let body = shared.fetcher.get_master(&url, &destinations).await?;
            fetch::parse_master_with(
                &body,
                &url,
                &shared.settings.parse,
                shared.settings.max_renditions,
            )
        },
        |r| r.as_ref().is_err_and(Failure::is_transient),
    )
    .await;
    drop(permit);
    shared
        .metrics
        .observe_probe("master", started.elapsed(), result.as_ref().err());
    shared.metrics.observe_retry("master", attempts);
    result
}

/// Probes one media playlist until the instance goes away (its report channel closes).
///
/// LL-HLS: while its playlist offers blocking reload, the next request is a blocking one for
/// the next part, sent as soon as the previous answered, holding a slot of the blocking pool
/// instead of the ordinary permits; the rules are in [`llhls`].
async fn run_rendition(
    key: String,
    mut uri_rx: watch::Receiver<Url>,
    mut ctx: RenditionCtx,
    mut tracker: Tracker,
) {
    let shared = ctx.shared.clone();
    let mut rng = fastrand::Rng::new();
    // Spread the first polls of many renditions over a second, so a restart is not a stampede.
    let mut next_poll = Instant::now() + Duration::from_millis(rng.u64(0..1000));
    let mut gauges = RenditionGauges::new(&shared.metrics);
    gauges.set_stale(!tracker.is_fresh());
    let mut starved = false;
    let mut segment_check = SegmentCheck::default();
    let turn = segments::turn_of(&key);
    // The staleness deadline a verification poll has been started for (see below).
    let mut verifying: Option<u64> = None;
    // LL-HLS: blocking-reload state, and what the last playlist said.
    let mut ll = llhls::Blocking::default();
    let mut ll_info: Option<llhls::LlInfo> = None;
    // The last body read and what it parsed to: an unchanged body is not parsed again.
    let memo = ParseMemo::default();

    loop {
        let policy = *ctx.policy.borrow_and_update();
        let deadline_ms = tracker.watch_deadline_ms(&policy);
        // A blocking reload dropped at the deadline is confirmed first: that reload decides.
        let deadline = deadline_ms
            .filter(|d| verifying != Some(*d))
            .filter(|_| !ll.confirm_owed())
            .map(|ms| shared.instant(ms.saturating_add(1)));
        tokio::select! {
            _ = sleep_until(next_poll) => {}
            _ = async { sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                // Nothing new seen by the deadline. What the prober saw before it may be late
                // (a loaded machine, a poll delayed): judge on a poll started now, which the
                // fetch below gives `verify_grace_ms` to answer.
                verifying = deadline_ms;
                next_poll = Instant::now();
                continue;
            }
            changed = ctx.policy.changed() => {
                if changed.is_err() { return; }
                continue;
            }
        }

        let uri = uri_rx.borrow_and_update().clone();
        let destinations = ctx.destinations.borrow().clone();
        let mut plan = ll.plan(
            shared.now_ms(),
            tracker.consecutive_failures == 0,
            ll_info.map(|i| i.next),
        );
        let mut pool_full = false;
        let blocking_permit = match plan {
            llhls::Plan::Blocking(_) => {
                let permit = shared.fetcher.try_blocking_permit(&uri);
                if permit.is_none() {
                    pool_full = true;
                    tracing::debug!(rendition = %key, "blocking-reload pool full; polling plainly");
                    plan = llhls::Plan::Plain { confirm: false };
                }
                permit
            }
            llhls::Plan::Plain { .. } => None,
        };
        if plan == (llhls::Plan::Plain { confirm: false }) {
            // Parts are judged on blocking reloads and their confirmations only: at the plain
            // cadence they would look late.
            tracker.parts = None;
        }

        // Wait for the operator's own permits (a blocking reload holds a slot of its own pool
        // instead). A deadline passing meanwhile is not the origin's doing: the rendition keeps
        // its verdict and is reported starved.
        let mut waited_ms = 0;
        let permit = if blocking_permit.is_some() {
            None
        } else {
            let queued = Instant::now();
            shared.metrics.probes_queued.inc();
            let permit = {
                // A rendition whose last request failed while it is still fresh goes first
                // among equals at its host: its answer can decide a verdict.
                let urgency = if tracker.consecutive_failures > 0 && tracker.is_fresh() {
                    Urgency::PendingVerdict
                } else {
                    Urgency::Routine
                };
                let mut acquire =
                    Box::pin(rendition_permit(&ctx, &uri, urgency, &tracker, &policy));
                loop {
                    let deadline = past_deadline(&shared, &tracker, &policy).filter(|_| !starved);
                    tokio::select! {
                        p = &mut acquire => break p,
                        _ = async { sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                            starved = true;
                            shared.metrics.probe_starved.inc();
                            tracing::debug!(rendition = %key, "staleness deadline passed while waiting for a probe permit");
                            if report(&ctx.reports, &key, &tracker, true, false).await.is_err() {
                                shared.metrics.probes_queued.dec();
                                return;
                            }
                        }
                    }
                }
            };
            shared.metrics.probes_queued.dec();
            let waited = queued.elapsed();
            shared
                .metrics
                .probe_queue_wait
                .observe(waited.as_secs_f64());
            waited_ms = waited.as_millis() as u64;
            Some(permit)
        };
        let was_starved = std::mem::take(&mut starved);

        // Poll, but declare staleness on time even while a slow request is in flight. The time
        // spent waiting for a permit is credited: only the origin's time counts. A blocking
        // reload still held at the deadline is dropped instead, and confirmed by a plain one:
        // a server that hangs blocking requests must not make a live stream look frozen.
        let (url, timeout) = match plan {
            llhls::Plan::Blocking(next) => (
                llhls::blocking_url(&uri, next),
                Duration::from_millis(llhls::blocking_timeout_ms(tracker.target_duration_ms())),
            ),
            llhls::Plan::Plain { .. } => (uri.clone(), shared.settings.limits.request_timeout),
        };
        // A confirmation of a dropped blocking reload gets one part bound past the deadline it
        // confirms.
        let part_grace_ms = match plan {
            llhls::Plan::Plain { confirm: true } => tracker
                .parts
                .map(|p| p.bound_ms(&policy, tracker.target_duration_ms()))
                .unwrap_or(0),
            _ => 0,
        };
        let started = Instant::now();
        let started_ms = shared.now_ms();
        let grace_ms = verify_grace_ms(tracker.target_duration_ms());
        let previous = tracker.last;
        let settings = shared.settings.confirm.for_poll(
            tracker.target_duration_ms(),
            tracker
                .watch_deadline_ms(&policy)
                .map(|d| d.saturating_add(waited_ms).saturating_sub(shared.now_ms())),
        );
        let attempt = || async {
            let body = shared
                .fetcher
                .get_within(&url, &destinations, timeout)
                .await?;
            let p = memo.parse(body, &shared.settings.parse).await?;
            Ok((p.snapshot, p.ll, p.newest))
        };
        // Boxed: a sleeping probe task then keeps only its own state, not room for the
        // largest request future (10,000 of them at the scale run).
        let mut fetch = Box::pin(async {
            match plan {
                // The server holds a blocking reload until the part exists: neither a hedge nor
                // a retry (a misbehaving server is handled by the fallback, `llhls::Blocking`).
                llhls::Plan::Blocking(_) => (attempt().await, confirm::Attempts::default()),
                // A failed, hanging or suspicious answer is confirmed by a second request before
                // it counts (see `confirm`), within the same permit.
                llhls::Plan::Plain { .. } => {
                    confirm::confirmed(settings, attempt, |r: &PolledPlaylist| match r {
                        Ok((s, _, _)) => decision::needs_confirmation(previous.as_ref(), &Ok(*s)),
                        Err(e) => e.is_transient(),
                    })
                    .await
                }
            }
        });
        let mut late = false;
        let result = loop {
            // Declared on time even while a request hangs: at the deadline, or a short grace
            // after a request started just before it (or after it, to verify).
            let deadline = tracker
                .watch_deadline_ms(&policy)
                .filter(|_| !was_starved && !late)
                .map(|ms| {
                    shared.instant(
                        ms.saturating_add(1)
                            .saturating_add(waited_ms)
                            .saturating_add(part_grace_ms)
                            .max(started_ms.saturating_add(grace_ms)),
                    )
                });
            tokio::select! {
                r = &mut fetch => break Some(r),
                _ = async { sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    if blocking_permit.is_some() {
                        break None;
                    }
                    // A timer that fires well after its instant means this process did not get
                    // the CPU meanwhile: the answer may be here unread. The operator, not the
                    // origin, is late: no verdict (counted as starved); the answer decides.
                    let lag = deadline.map_or(Duration::ZERO, |d| Instant::now().saturating_duration_since(d));
                    if lag > OWN_LAG {
                        late = true;
                        shared.metrics.probe_starved.inc();
                        tracing::debug!(rendition = %key, ?lag, "the operator was late for a staleness deadline");
                        continue;
                    }
                    let v = tracker.tick(shared.now_ms().saturating_sub(waited_ms), &policy);
                    gauges.set_stale(!tracker.is_fresh());
                    if report(&ctx.reports, &key, &tracker, false, v.flipped).await.is_err() {
                        return;
                    }
                }
            }
        };
        drop(permit);
        drop(blocking_permit);
        let now = shared.now_ms();
        let elapsed = started.elapsed();
        let label = match plan {
            llhls::Plan::Blocking(_) => "media_blocking",
            llhls::Plan::Plain { .. } => "media",
        };
        let (outcome, attempts) = match result {
            Some((outcome, attempts)) => (Some(outcome), attempts),
            None => (None, confirm::Attempts::default()),
        };
        shared.metrics.observe_probe(
            label,
            elapsed,
            outcome.as_ref().and_then(|o| o.as_ref().err()),
        );
        shared.metrics.observe_retry(label, attempts);
        let mut after = None;
        let mut verify_now = false;
        let mut newest = None;
        let verdict = match (plan, outcome) {
            (llhls::Plan::Blocking(_), outcome) => {
                let answer = match &outcome {
                    None => llhls::Answer::DeadlinePassed,
                    Some(Ok((_, info, _))) => llhls::Answer::Playlist {
                        next: info.filter(llhls::LlInfo::offers_blocking).map(|i| i.next),
                    },
                    Some(Err(failure)) => llhls::Answer::Failed(failure.clone()),
                };
                let part_target = ll_info.and_then(|i| i.part_target_ms).unwrap_or(1_000);
                let was_blocking = ll.is_blocking();
                after = Some(ll.answered(
                    &answer,
                    elapsed.as_millis() as u64,
                    tracker.target_duration_ms(),
                    part_target,
                    now,
                ));
                if was_blocking && !ll.is_blocking() {
                    shared.metrics.probe_blocking_fallbacks.inc();
                    tracing::info!(rendition = %key, ?answer, "LL-HLS blocking reload misbehaves; polling plainly");
                }
                match outcome {
                    Some(Ok((snapshot, info, segment))) => {
                        newest = segment;
                        let mut ll_state = LlState {
                            blocking: &mut ll,
                            info: &mut ll_info,
                            judge_parts: true,
                        };
                        Some(
                            apply_playlist(
                                &shared,
                                &mut tracker,
                                &mut ll_state,
                                snapshot,
                                info,
                                None,
                                now,
                                &policy,
                            )
                            .0,
                        )
                    }
                    // No verdict: a plain reload confirms at once.
                    _ => None,
                }
            }
            (llhls::Plan::Plain { confirm }, Some(Ok((snapshot, info, segment)))) => {
                newest = segment;
                if confirm {
                    let was_blocking = ll.is_blocking();
                    ll.confirmed(info.map(|i| i.next), now);
                    if was_blocking && !ll.is_blocking() {
                        shared.metrics.probe_blocking_fallbacks.inc();
                        tracing::info!(rendition = %key, "LL-HLS blocking reload held while parts arrived; polling plainly");
                    }
                }
                // Parts are judged on blocking reloads and their confirmations (and armed by
                // the reload that switches to blocking, see `apply_playlist`).
                let mut ll_state = LlState {
                    blocking: &mut ll,
                    info: &mut ll_info,
                    judge_parts: confirm,
                };
                let (v, verify) = apply_playlist(
                    &shared,
                    &mut tracker,
                    &mut ll_state,
                    snapshot,
                    info,
                    Some(started_ms),
                    now,
                    &policy,
                );
                verify_now = verify;
                Some(v)
            }
            (llhls::Plan::Plain { .. }, Some(Err(failure))) => {
                Some(tracker.fail(failure, now, &policy))
            }
            (llhls::Plan::Plain { .. }, None) => None,
        };
        if ll.fallbacks > 0 && !ll.is_blocking() {
            tracker.parts = None;
        }
        let verdict = match verdict {
            Some(verdict) => {
                let mut flipped = verdict.flipped;
                if verdict.advanced
                    && policy.check_segments
                    && let (Some(newest), Some(snapshot)) = (newest, tracker.last)
                {
                    // Boxed, like the fetch above: a sleeping probe task keeps only its own state,
                    // not room for the largest request future (10,000 of them at scale).
                    flipped |= Box::pin(check_segments(
                        &ctx,
                        &uri,
                        &destinations,
                        &newest,
                        snapshot.head(),
                        turn,
                        &mut segment_check,
                        &mut tracker,
                        &policy,
                    ))
                    .await;
                }
                Some(decision::Verdict {
                    advanced: verdict.advanced,
                    flipped,
                })
            }
            None => None,
        };
        gauges.set_stale(!tracker.is_fresh());
        if let Some(verdict) = &verdict
            && report(&ctx.reports, &key, &tracker, false, verdict.flipped)
                .await
                .is_err()
        {
            return;
        }
        // LL-HLS: the next blocking reload (or its confirmation) goes out at once; the server
        // holds it until the next part.
        let immediate = match after {
            Some(llhls::After::Pause(ms)) => Some(ms),
            Some(llhls::After::Confirm) => Some(0),
            _ if ll.is_blocking() && !pool_full && tracker.consecutive_failures == 0 => Some(0),
            _ if verify_now => Some(0),
            _ => None,
        };
        if let Some(ms) = immediate {
            next_poll = Instant::now() + Duration::from_millis(ms);
            continue;
        }
        let advanced = verdict.as_ref().is_some_and(|v| v.advanced);
        let delay = tracker.next_poll_in_ms(
            advanced,
            now,
            &policy,
            shared.settings.max_backoff.as_millis() as u64,
        );
        // Up to 10 % early (at most one catch-up interval), so renditions polled together drift
        // apart. Never late: a late poll would put the prober behind the origin's segment clock.
        // Never more than a catch-up interval early either: each early poll that finds nothing
        // new is followed by catch-up polls until the segment appears (the benchmark saw 4 polls
        // per segment at TD 6 s with 10 % early jitter).
        let spread = (delay / 10).min(decision::catch_up_ms(tracker.target_duration_ms()));
        let delay = delay.saturating_sub(rng.u64(0..=spread));
        next_poll = shared.instant(now.saturating_add(delay.max(decision::MIN_POLL_MS)));
    }
}

/// A media playlist as one poll read it: its snapshot, what it says about LL-HLS, its newest
/// segment.
type PolledPlaylist = Result<
    (
        decision::Snapshot,
        Option<llhls::LlInfo>,
        Option<SegmentRef>,
    ),
    Failure,
>;

/// Bodies at least this large are parsed on Tokio's blocking pool, so a long playlist never
/// holds a runtime worker (a 10,800-segment one takes about 12 ms when parsed whole).
const BLOCKING_PARSE_BYTES: usize = 64 << 10;

/// The last body a rendition read (by a keyed hash: 8 bytes kept, not the body) and what it
/// parsed to. Origins serve the same playlist until the next segment, and a poll that finds it
/// unchanged costs a hash instead of a parse.
#[derive(Default)]
struct ParseMemo {
    hasher: std::hash::RandomState,
    last: Mutex<Option<(u64, Result<Polled, Failure>)>>,
    /// Bodies actually parsed.
    parsed: std::sync::atomic::AtomicU64,
}

impl ParseMemo {
    async fn parse(&self, body: Vec<u8>, limits: &ParseLimits) -> Result<Polled, Failure> {
        use std::hash::BuildHasher as _;
        let hash = self.hasher.hash_one(&body[..]);
        if let Some((h, parsed)) = &*self.last.lock().unwrap_or_else(|p| p.into_inner())
            && *h == hash
        {
            return parsed.clone();
        }
        self.parsed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let parsed = if body.len() >= BLOCKING_PARSE_BYTES {
            let limits = limits.clone();
            match tokio::task::spawn_blocking(move || fetch::parse_polled(&body, &limits)).await {
                Ok(parsed) => parsed,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => Err(Failure::Other(format!(
                    "playlist parse did not finish: {e}"
                ))),
            }
        } else {
            fetch::parse_polled(&body, limits)
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((hash, parsed.clone()));
        parsed
    }
}

/// How long a poll of an instance already judged unhealthy waits behind the other instances'
/// polls at a busy host before it is raised where it stands: one target duration (0.5-10 s).
///
/// Its answer cannot make the instance any less healthy; it can only show a recovery, which
/// takes new segments anyway. Instances still to be judged need the host's permits more: when a
/// whole region hangs, every request holds its permit for the request timeout, and the judged
/// instances' polls (each of their renditions, backing off) took turns with the instances
/// still waiting for their first hung request (RELIABILITY.md, whole-region outages). At a host
/// that is busy without hanging, the bound keeps a recovery from being seen more than about a
/// segment late. At a host with free permits nothing waits.
fn judged_poll_wait(target_duration_ms: u64) -> Duration {
    Duration::from_millis(target_duration_ms.clamp(500, 10_000))
}

/// A deadline timer firing later than this after its instant shows the operator itself was
/// short of CPU (see `run_rendition`).
const OWN_LAG: Duration = Duration::from_millis(100);

/// How long a poll started around the staleness deadline may take to answer before the playlist
/// is declared stale anyway: a quarter of the target duration, at most 1 s. A poll slower than
/// that is taken as hanging; one answering within it is the evidence the verdict rests on, so a
/// slow answer (a loaded origin or operator) is not taken for a frozen playlist.
fn verify_grace_ms(target_duration_ms: u64) -> u64 {
    (target_duration_ms / 4).min(1_000)
}

/// A rendition's LL-HLS state, as [`apply_playlist`] updates it.
struct LlState<'a> {
    blocking: &'a mut llhls::Blocking,
    info: &'a mut Option<llhls::LlInfo>,
    /// The playlist came from a blocking reload or its confirmation; a plain poll at the HLS
    /// cadence (no blocking slot, or not blocking yet) never arms the part clock, whose bound
    /// is far shorter than that cadence.
    judge_parts: bool,
}

/// Applies a playlist read at `now`: follows what it offers for LL-HLS (arming or moving the
/// part clock while parts are judged, before the tracker checks the deadlines), then observes
/// its segments. `started_ms`: when a plain poll was sent; an answer to a poll sent before the
/// staleness deadline and read after it cannot tell whether a segment came by then, so it is
/// applied as of the deadline and the second value asks for another poll at once.
#[allow(clippy::too_many_arguments)]
fn apply_playlist(
    shared: &Shared,
    tracker: &mut Tracker,
    ll: &mut LlState<'_>,
    snapshot: decision::Snapshot,
    info: Option<llhls::LlInfo>,
    started_ms: Option<u64>,
    now: u64,
    policy: &Policy,
) -> (decision::Verdict, bool) {
    *ll.info = info;
    // Parts are judged on blocking reloads and their confirmations, and from the plain reload
    // that switches the rendition to blocking: a blocking request follows it at once, so a
    // stream that freezes before that request is answered is still judged on parts (the held
    // request is dropped at the part deadline and confirmed) rather than only on segments.
    let was_blocking = ll.blocking.is_blocking();
    let judged = ll.blocking.offered(info.as_ref()) && (ll.judge_parts || !was_blocking);
    match (
        judged,
        info.and_then(|i| i.part_target_ms.map(|pt| (pt, i.next))),
    ) {
        (true, Some((part_target, next))) => match &mut tracker.parts {
            Some(clock) => {
                clock.observe(part_target, next, now);
            }
            None => tracker.parts = Some(llhls::PartClock::new(part_target, next, now)),
        },
        _ => tracker.parts = None,
    }
    if let Some(change) = tracker.last_change_ms {
        shared
            .metrics
            .staleness_age
            .observe(now.saturating_sub(change) as f64 / 1000.0);
    }
    let wall = jiff::Timestamp::now().as_millisecond();
    let Some(started_ms) = started_ms else {
        return (tracker.observe_at(snapshot, now, Some(wall), policy), false);
    };
    let mut seen = tracker.clone();
    let v = seen.observe_at(snapshot, now, Some(wall), policy);
    let deadline = tracker.watch_deadline_ms(policy);
    let newly_frozen = !v.advanced
        && matches!(seen.stale, Some(decision::StaleReason::NoNewSegment { .. }))
        && !matches!(
            tracker.stale,
            Some(decision::StaleReason::NoNewSegment { .. })
        );
    match deadline {
        Some(d) if newly_frozen && started_ms <= d => {
            (tracker.observe_at(snapshot, d, Some(wall), policy), true)
        }
        _ => {
            *tracker = seen;
            (v, false)
        }
    }
}

/// Checks that the newest segment of a playlist that just advanced is served, when it is this
/// rendition's turn (see `segments`), and its init segment once; applies what was found to the
/// tracker. Returns whether the rendition's freshness flipped.
#[allow(clippy::too_many_arguments)]
async fn check_segments(
    ctx: &RenditionCtx,
    playlist: &Url,
    destinations: &Destinations,
    newest: &SegmentRef,
    head: u64,
    turn: u64,
    check: &mut SegmentCheck,
    tracker: &mut Tracker,
    policy: &Policy,
) -> bool {
    let shared = &ctx.shared;
    let renditions = ctx
        .renditions
        .load(std::sync::atomic::Ordering::Relaxed)
        .max(1);
    let mut due: Vec<(&str, bool)> = Vec::new();
    if let Some(map) = newest.map.as_deref().filter(|m| check.map_due(m)) {
        due.push((map, true));
    }
    if check.due(head, turn, renditions) {
        due.push((newest.uri.as_str(), false));
    }
    let was_fresh = tracker.is_fresh();
    for (uri, is_map) in due {
        let kind = if is_map { "init" } else { "segment" };
        let result = match playlist.join(uri) {
            Err(e) => Err(Failure::Unparsable(format!("bad segment URI: {e}"))),
            Ok(url) => {
                let permit = rendition_permit(ctx, &url, Urgency::Routine, tracker, policy).await;
                let settings = shared
                    .settings
                    .confirm
                    .for_poll(tracker.target_duration_ms(), None);
                let (result, _) = confirm::confirmed(
                    settings,
                    || shared.fetcher.head(&url, destinations),
                    |r| r.as_ref().is_err_and(Failure::is_transient),
                )
                .await;
                drop(permit);
                result
            }
        };
        shared
            .metrics
            .segment_checks
            .get_or_create(&crate::metrics::ProbeLabels {
                playlist: kind,
                outcome: result.as_ref().err().map_or("ok", Failure::kind),
            })
            .inc();
        match check.record(uri, is_map, result, policy) {
            segments::Outcome::Unchanged => {}
            segments::Outcome::Unavailable { uri, failure } => {
                tracker.segment_unavailable(redact_text(&uri), failure);
            }
            segments::Outcome::Served => tracker.segment_served(policy),
        }
    }
    was_fresh != tracker.is_fresh()
}

async fn report(
    reports: &mpsc::Sender<Report>,
    key: &str,
    tracker: &Tracker,
    starved: bool,
    flipped: bool,
) -> Result<(), mpsc::error::SendError<Report>> {
    reports
        .send(Report {
            key: key.to_owned(),
            tracker: tracker.clone(),
            starved,
            flipped,
        })
        .await
}

/// This rendition's share of the "probed playlists" and "stale renditions" gauges, given back
/// when its task ends, however it ends (renditions removed, instance deleted, shutdown).
struct RenditionGauges {
    probed: Gauge,
    stale: Gauge,
    is_stale: bool,
}

impl RenditionGauges {
    fn new(metrics: &Metrics) -> Self {
        metrics.probed_playlists.inc();
        metrics.stale_renditions.inc();
        Self {
            probed: metrics.probed_playlists.clone(),
            stale: metrics.stale_renditions.clone(),
            is_stale: true,
        }
    }

    fn set_stale(&mut self, stale: bool) {
        if stale != self.is_stale {
            if stale {
                self.stale.inc();
            } else {
                self.stale.dec();
            }
            self.is_stale = stale;
        }
    }
}

impl Drop for RenditionGauges {
    fn drop(&mut self) {
        self.probed.dec();
        if self.is_stale {
            self.stale.dec();
        }
    }
}

#[cfg(test)]
#[path = "engine_llhls_tests.rs"]
mod llhls_tests;

#[cfg(test)]
mod tests {
    /// An unchanged body is parsed once; a changed one again; a large one on the blocking pool
    /// reads the same as parsed in place.
    #[tokio::test]
    async fn an_unchanged_body_is_not_parsed_again() {
        use std::sync::atomic::Ordering::Relaxed;
        let limits = super::ParseLimits::default();
        let memo = super::ParseMemo::default();
        let body = |n: u64| {
            let mut s = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n");
            for i in 0..n {
                s.push_str(&format!("#EXTINF:2.0,\n{i}.ts\n"));
            }
            s.into_bytes()
        };
        let a = memo.parse(body(3), &limits).await.unwrap();
        assert_eq!(memo.parse(body(3), &limits).await.unwrap(), a);
        assert_eq!(memo.parsed.load(Relaxed), 1);
        let b = memo.parse(body(4), &limits).await.unwrap();
        assert_eq!(b.snapshot.segment_count, 4);
        assert_eq!(memo.parsed.load(Relaxed), 2);
        // The memo keys on the body alone (the limits are fixed for the process's life).
        let limits_low = super::ParseLimits {
            max_segments: 3,
            ..limits.clone()
        };
        assert!(
            memo.parse(body(4), &limits_low).await.is_ok(),
            "same body: remembered"
        );
        let big = body(10_000);
        assert!(big.len() >= super::BLOCKING_PARSE_BYTES);
        let blocking = memo.parse(big.clone(), &limits).await.unwrap();
        assert_eq!(blocking, super::fetch::parse_polled(&big, &limits).unwrap());
        assert_eq!(blocking.snapshot.segment_count, 10_000);
        assert_eq!(memo.parsed.load(Relaxed), 3);
    }

    use super::*;
    use axum::Router;
    use axum::extract::{RawQuery, State};
    use axum::routing::get;
    use std::sync::atomic::AtomicU32;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// A live origin on loopback: `/v.m3u8` gains a segment every second (dated by
    /// EXT-X-PROGRAM-DATE-TIME) until `frozen`; `/m.m3u8` is a master listing `v.m3u8`, with a
    /// new `?session=N` on every read when `tokens`, that hangs from its second read on when
    /// `hang_master`; `/hang/N.m3u8` never answers.
    #[derive(Default)]
    struct Origin {
        frozen: AtomicBool,
        frozen_at: AtomicU64,
        tokens: AtomicBool,
        hang_master: AtomicBool,
        master_reads: AtomicU64,
        /// `/m.m3u8` answers 500 while set.
        fail_master: AtomicBool,
        /// When each master read arrived, with the query that named its instance and whether
        /// it was answered with the master.
        master_read_log: Mutex<Vec<(Option<String>, Instant, bool)>>,
        hanging: usize,
        /// Every `fail_every`-th read of `/v.m3u8` answers 500 (0: never).
        fail_every: AtomicU64,
        media_reads: AtomicU64,
        /// Segments (`/{n}.ts`) answer 404 while set.
        segments_missing: AtomicBool,
        segment_reads: AtomicU64,
        /// Serves the stream as it was this long ago (a region behind the others).
        behind_ms: AtomicU64,
        /// Live renditions listed besides `v.m3u8` (as `v.m3u8?r=N`: the same playlist).
        live_renditions: usize,
        /// Every media playlist request is held forever while set (a hung host), and counted
        /// in `held_reads`.
        hang_media: AtomicBool,
        held_reads: AtomicU64,
        /// Every media playlist is answered this much later (a busy origin).
        media_delay_ms: AtomicU64,
        /// Reads of `/v.m3u8?gone`, the live rendition of a master read as `/m.m3u8?gone`,
        /// which lists it beside `gone/0.m3u8` (always 404) and nothing else.
        gone_live_reads: AtomicU64,
    }

    fn unix_ms() -> u64 {
        jiff::Timestamp::now().as_millisecond() as u64
    }

    fn media(o: &Origin) -> String {
        let now = if o.frozen.load(Ordering::SeqCst) {
            o.frozen_at.load(Ordering::SeqCst)
        } else {
            unix_ms() - o.behind_ms.load(Ordering::SeqCst)
        };
        let head = now / 1000; // segments end on whole seconds
        let first = head - 3;
        let pdt = jiff::Timestamp::from_millisecond((first * 1000) as i64).unwrap();
        let mut s = format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-PROGRAM-DATE-TIME:{}\n",
            pdt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        );
        for n in first..head {
            s.push_str(&format!("#EXTINF:1.000,\n{n}.ts\n"));
        }
        s
    }

    async fn serve(origin: Arc<Origin>) -> Url {
        let app = Router::new()
            .route(
                "/v.m3u8",
                get(
                    |State(o): State<Arc<Origin>>, RawQuery(query): RawQuery| async move {
                        if query.as_deref() == Some("gone") {
                            o.gone_live_reads.fetch_add(1, Ordering::SeqCst);
                        }
                        if o.hang_media.load(Ordering::SeqCst) {
                            o.held_reads.fetch_add(1, Ordering::SeqCst);
                            std::future::pending::<()>().await;
                        }
                        let delay = o.media_delay_ms.load(Ordering::SeqCst);
                        if delay > 0 {
                            sleep(Duration::from_millis(delay)).await;
                        }
                        let n = o.media_reads.fetch_add(1, Ordering::SeqCst) + 1;
                        let every = o.fail_every.load(Ordering::SeqCst);
                        if every > 0 && n % every == 0 {
                            return Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
                        }
                        Ok(media(&o))
                    },
                ),
            )
            .route(
                "/m.m3u8",
                get(
                    |State(o): State<Arc<Origin>>, RawQuery(query): RawQuery| async move {
                        let at = Instant::now();
                        let n = o.master_reads.fetch_add(1, Ordering::SeqCst);
                        if n > 0 && o.hang_master.load(Ordering::SeqCst) {
                            std::future::pending::<()>().await;
                        }
                        let fail = o.fail_master.load(Ordering::SeqCst);
                        let gone = query.as_deref() == Some("gone");
                        o.master_read_log.lock().unwrap().push((query, at, !fail));
                        if fail {
                            return Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
                        }
                        let mut m = String::from("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n");
                        if gone {
                            m.push_str("v.m3u8?gone\n#EXT-X-STREAM-INF:BANDWIDTH=2\ngone/0.m3u8\n");
                            return Ok(m);
                        }
                        if o.tokens.load(Ordering::SeqCst) {
                            m.push_str(&format!("v.m3u8?session={n}\n"));
                        } else {
                            m.push_str("v.m3u8\n");
                        }
                        for i in 0..o.hanging {
                            m.push_str(&format!("#EXT-X-STREAM-INF:BANDWIDTH=2\nhang/{i}.m3u8\n"));
                        }
                        for i in 0..o.live_renditions {
                            m.push_str(&format!("#EXT-X-STREAM-INF:BANDWIDTH=3\nv.m3u8?r={i}\n"));
                        }
                        Ok(m)
                    },
                ),
            )
            .route(
                "/{segment}",
                get(|State(o): State<Arc<Origin>>| async move {
                    o.segment_reads.fetch_add(1, Ordering::SeqCst);
                    if o.segments_missing.load(Ordering::SeqCst) {
                        Err(axum::http::StatusCode::NOT_FOUND)
                    } else {
                        Ok("ts")
                    }
                }),
            )
            .route(
                "/hang/{n}",
                get(|| async { std::future::pending::<String>().await }),
            )
            .route(
                "/gone/{n}",
                get(|| async { axum::http::StatusCode::NOT_FOUND }),
            )
            .with_state(origin);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Url::parse(&format!("http://{addr}/m.m3u8")).unwrap()
    }

    fn engine(limits: FetchLimits) -> ProbeEngine {
        engine_with(limits, Duration::from_secs(2), Duration::from_millis(300))
    }

    /// [`engine`] with its own backoff limit and rediscover interval.
    fn engine_with(
        limits: FetchLimits,
        max_backoff: Duration,
        rediscover_every: Duration,
    ) -> ProbeEngine {
        let settings = EngineSettings {
            limits,
            max_backoff,
            rediscover_every,
            max_renditions: 10,
            confirm: Confirm::default(),
            parse: Default::default(),
        };
        ProbeEngine::new(settings, Arc::new(Metrics::default()))
            .unwrap()
            .0
    }

    fn key(name: &str) -> InstanceKey {
        InstanceKey {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    fn probe(e: &ProbeEngine, name: &str, url: &Url) {
        e.ensure(
            &key(name),
            ProbeTarget {
                master_url: url.clone(),
                policy: Policy::default(),
                allowed_hosts: Vec::new(),
                credentials: None,
                lag: None,
            },
        );
    }

    /// Polls the verdict every 20 ms until `want` or `within`; every verdict seen is returned.
    async fn watch_until(
        e: &ProbeEngine,
        name: &str,
        within: Duration,
        want: impl Fn(Option<bool>) -> bool,
    ) -> (bool, Vec<Option<bool>>) {
        let end = Instant::now() + within;
        let mut seen = Vec::new();
        while Instant::now() < end {
            if let Some(h) = e.health(&key(name)) {
                if seen.last() != Some(&h.verdict.healthy) {
                    seen.push(h.verdict.healthy);
                }
                if want(h.verdict.healthy) {
                    return (true, seen);
                }
            }
            sleep(Duration::from_millis(20)).await;
        }
        (false, seen)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frozen_origin_seen_first_is_never_reported_healthy() {
        let origin = Arc::new(Origin::default());
        origin.frozen_at.store(unix_ms() - 60_000, Ordering::SeqCst);
        origin.frozen.store(true, Ordering::SeqCst);
        // A new session token on every master read must not make a new rendition each time.
        origin.tokens.store(true, Ordering::SeqCst);
        let url = serve(origin.clone()).await;
        let e = engine(FetchLimits {
            allow_private: true,
            ..FetchLimits::default()
        });
        probe(&e, "i", &url);
        let (stale, seen) =
            watch_until(&e, "i", Duration::from_secs(15), |h| h == Some(false)).await;
        assert!(stale, "{seen:?}");
        assert!(!seen.contains(&Some(true)), "{seen:?}");
        let h = e.health(&key("i")).unwrap();
        assert_eq!(h.verdict.reason, "NoNewSegment", "{h:?}");
        assert_eq!(h.renditions.len(), 1);
        assert!(origin.master_reads.load(Ordering::SeqCst) > 2);
        // It stays stale while the master keeps changing its tokens.
        sleep(Duration::from_secs(2)).await;
        assert_eq!(e.health(&key("i")).unwrap().verdict.healthy, Some(false));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_origin_is_healthy_and_a_freeze_is_seen_while_the_master_hangs() {
        let origin = Arc::new(Origin::default());
        origin.hang_master.store(true, Ordering::SeqCst);
        let url = serve(origin.clone()).await;
        let e = engine(FetchLimits {
            request_timeout: Duration::from_secs(60),
            allow_private: true,
            ..FetchLimits::default()
        });
        probe(&e, "i", &url);
        let (healthy, seen) =
            watch_until(&e, "i", Duration::from_secs(10), |h| h == Some(true)).await;
        assert!(healthy, "{seen:?}");
        // The master re-read now hangs (for up to the 60 s timeout); the freeze is reported
        // within the staleness bound regardless.
        sleep(Duration::from_millis(500)).await;
        assert!(origin.master_reads.load(Ordering::SeqCst) >= 2);
        origin.frozen_at.store(unix_ms(), Ordering::SeqCst);
        origin.frozen.store(true, Ordering::SeqCst);
        let (stale, seen) =
            watch_until(&e, "i", Duration::from_secs(15), |h| h == Some(false)).await;
        assert!(stale, "{seen:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_reader_sees_every_advance_so_a_fresh_rendition_never_looks_old() {
        // Segments of 1 s (bound 1.5 s); the published copy is otherwise refreshed every 5 s.
        let origin = Arc::new(Origin::default());
        let url = serve(origin.clone()).await;
        let e = engine(FetchLimits {
            allow_private: true,
            ..FetchLimits::default()
        });
        let _reader = e.subscribe_updates();
        probe(&e, "i", &url);
        let (healthy, seen) =
            watch_until(&e, "i", Duration::from_secs(10), |h| h == Some(true)).await;
        assert!(healthy, "{seen:?}");
        let until = Instant::now() + Duration::from_secs(7);
        let mut oldest_ms = 0;
        while Instant::now() < until {
            let h = e.health(&key("i")).unwrap();
            for r in h.renditions.iter().filter(|r| r.fresh) {
                let change = r.last_change.expect("a fresh rendition has seen a change");
                let age = jiff::Timestamp::now().duration_since(change).as_millis() as i64;
                oldest_ms = oldest_ms.max(age);
            }
            sleep(Duration::from_millis(100)).await;
        }
        // Bound 1.5 s, plus room for a loaded machine; the 5 s refresh alone gives about 6 s.
        assert!(
            oldest_ms < 3_000,
            "a fresh rendition looked {oldest_ms} ms old"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_failed_requests_never_change_the_verdict() {
        // One read in three of the media playlist fails: never two in a row.
        let origin = Arc::new(Origin::default());
        origin.fail_every.store(3, Ordering::SeqCst);
        let url = serve(origin.clone()).await;
        let e = engine(FetchLimits {
            allow_private: true,
            ..FetchLimits::default()
        });
        probe(&e, "i", &url);
        let (healthy, seen) =
            watch_until(&e, "i", Duration::from_secs(10), |h| h == Some(true)).await;
        assert!(healthy, "{seen:?}");
        let (flipped, seen) =
            watch_until(&e, "i", Duration::from_secs(8), |h| h != Some(true)).await;
        assert!(!flipped, "a single failure flipped the instance: {seen:?}");
        let absorbed = e
            .shared
            .metrics
            .probe_retries
            .get_or_create(&crate::metrics::ProbeLabels {
                playlist: "media",
                outcome: "recovered",
            })
            .get();
        assert!(
            absorbed >= 3,
            "too few failures to prove anything: {absorbed}"
        );
        // Every read failing is still reported (a threshold of three confirmed failures, or the
        // staleness bound, whichever first).
        origin.fail_every.store(1, Ordering::SeqCst);
        let (stale, seen) =
            watch_until(&e, "i", Duration::from_secs(15), |h| h == Some(false)).await;
        assert!(stale, "{seen:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_playlist_advancing_while_its_segments_404_is_stale() {
        let origin = Arc::new(Origin::default());
        let url = serve(origin.clone()).await;
        let e = engine(FetchLimits {
            allow_private: true,
            ..FetchLimits::default()
        });
        probe(&e, "i", &url);
        let (healthy, seen) =
            watch_until(&e, "i", Duration::from_secs(10), |h| h == Some(true)).await;
        assert!(healthy, "{seen:?}");
        origin.segments_missing.store(true, Ordering::SeqCst);
        let (stale, seen) =
            watch_until(&e, "i", Duration::from_secs(15), |h| h == Some(false)).await;
        assert!(stale, "{seen:?}");
        let h = e.health(&key("i")).unwrap();
        assert_eq!(h.verdict.reason, "SegmentUnavailable", "{h:?}");
        assert!(
            h.verdict.message.contains("HTTP 404"),
            "{}",
            h.verdict.message
        );
        // One rendition checks every segment: one HEAD (and its retry) per failed check.
        assert!(origin.segment_reads.load(Ordering::SeqCst) >= 6);
        // Served again: healthy after the recovery hysteresis.
        origin.segments_missing.store(false, Ordering::SeqCst);
        let (healthy, seen) =
            watch_until(&e, "i", Duration::from_secs(15), |h| h == Some(true)).await;
        assert!(healthy, "{seen:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_for_our_own_permits_is_not_staleness() {
        // One global permit, held in turn by an instance whose playlists hang for the whole
        // 1.5 s timeout; the healthy instance waits in the queue longer than its 1.5 s bound.
        let bad = Arc::new(Origin {
            hanging: 6,
            ..Origin::default()
        });
        let good = Arc::new(Origin::default());
        let (bad_url, good_url) = (serve(bad).await, serve(good).await);
        let e = engine(FetchLimits {
            request_timeout: Duration::from_millis(1_500),
            concurrency: 1,
            allow_private: true,
            ..FetchLimits::default()
        });
        probe(&e, "good", &good_url);
        let (healthy, seen) =
            watch_until(&e, "good", Duration::from_secs(10), |h| h == Some(true)).await;
        assert!(healthy, "{seen:?}");
        // Stale at its first (confirmed) failure, so the wait for its verdict stays short.
        e.ensure(
            &key("bad"),
            ProbeTarget {
                master_url: bad_url.clone(),
                policy: Policy {
                    failure_threshold: 1,
                    ..Policy::default()
                },
                allowed_hosts: Vec::new(),
                credentials: None,
                lag: None,
            },
        );
        let (flipped, seen) =
            watch_until(&e, "good", Duration::from_secs(12), |h| h != Some(true)).await;
        assert!(!flipped, "the healthy instance flipped: {seen:?}");
        let (bad_stale, _) =
            watch_until(&e, "bad", Duration::from_secs(10), |h| h == Some(false)).await;
        assert!(bad_stale);
        assert!(
            e.shared.metrics.probe_starved.get() > 0,
            "the queue never made a deadline pass: the test proves nothing"
        );
    }

    /// A host that hangs every media playlist request, shared by 8 instances of 8 renditions,
    /// with 2 permits: every request holds a permit for the whole timeout, so the order in
    /// which the host's permits are handed out decides how many requests it takes to judge
    /// every instance. Instances take turns (see `host_queue`): about one hung request (and
    /// its confirming retry) per instance. A first-come queue served the renditions in the
    /// order they asked, which is one instance's renditions after the other's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_host_is_judged_at_about_one_request_per_instance() {
        const INSTANCES: u64 = 8;
        let origin = Arc::new(Origin {
            live_renditions: 7,
            ..Origin::default()
        });
        let url = serve(origin.clone()).await;
        let e = engine(FetchLimits {
            request_timeout: Duration::from_millis(300),
            per_host: 2,
            allow_private: true,
            ..FetchLimits::default()
        });
        // Started apart within one target duration, so each instance's renditions poll
        // together and apart from the other instances', as at scale.
        for n in 0..INSTANCES {
            probe(&e, &format!("i{n}"), &url);
            sleep(Duration::from_millis(110)).await;
        }
        for n in 0..INSTANCES {
            let (healthy, seen) = watch_until(&e, &format!("i{n}"), Duration::from_secs(20), |h| {
                h == Some(true)
            })
            .await;
            assert!(healthy, "i{n}: {seen:?}");
        }
        origin.hang_media.store(true, Ordering::SeqCst);
        for n in 0..INSTANCES {
            let (stale, seen) = watch_until(&e, &format!("i{n}"), Duration::from_secs(90), |h| {
                h == Some(false)
            })
            .await;
            assert!(stale, "i{n}: {seen:?}");
        }
        let held = origin.held_reads.load(Ordering::SeqCst);
        // Each judged instance costs a hung request and its retry, plus what the two permits
        // held when the hang started and what goes out while the verdicts are read: 22 in
        // three runs. The first-come queue needed 46-61.
        assert!(
            held <= 4 * INSTANCES,
            "{held} hung requests to judge {INSTANCES} instances"
        );
        assert!(
            held >= INSTANCES,
            "{held}: fewer hung requests than instances"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn masters_that_recover_together_are_read_again_apart() {
        const INSTANCES: usize = 24;
        let origin = Arc::new(Origin::default());
        origin.fail_master.store(true, Ordering::SeqCst);
        let url = serve(origin.clone()).await;
        let every = Duration::from_secs(2);
        let e = engine_with(
            FetchLimits {
                allow_private: true,
                ..FetchLimits::default()
            },
            Duration::from_millis(400),
            every,
        );
        for n in 0..INSTANCES {
            let mut u = url.clone();
            u.set_query(Some(&format!("i={n}")));
            probe(&e, &format!("i{n}"), &u);
        }
        sleep(Duration::from_millis(1500)).await;
        origin.fail_master.store(false, Ordering::SeqCst);
        sleep(every + Duration::from_millis(1500)).await;
        let log = origin.master_read_log.lock().unwrap().clone();
        let mut gaps = Vec::new();
        for n in 0..INSTANCES {
            let name = format!("i={n}");
            let reads: Vec<Instant> = log
                .iter()
                .filter(|(q, _, answered)| *answered && q.as_deref() == Some(name.as_str()))
                .map(|(_, at, _)| *at)
                .collect();
            assert!(reads.len() >= 2, "{name}: answered {} times", reads.len());
            gaps.push(reads[1] - reads[0]);
        }
        let (min, max) = (gaps.iter().min().unwrap(), gaps.iter().max().unwrap());
        // Drawn from 0.2-2 s, 24 draws span less than 1 s about once in 60,000 runs; read
        // again after a fixed interval, the gaps differ by scheduling noise only.
        assert!(
            *max - *min >= Duration::from_secs(1),
            "re-read gaps after recovery from {min:?} to {max:?}"
        );
    }

    /// An engine with one permit per host and masters read again every `rediscover_every`,
    /// probing the instance "busy" (ten live renditions) until it is healthy; setting the
    /// origin's `media_delay_ms` then keeps that host busy.
    async fn busy_host(rediscover_every: Duration) -> (Arc<Origin>, Url, ProbeEngine) {
        let origin = Arc::new(Origin {
            live_renditions: 9,
            ..Origin::default()
        });
        let url = serve(origin.clone()).await;
        let e = engine_with(
            FetchLimits {
                per_host: 1,
                allow_private: true,
                ..FetchLimits::default()
            },
            Duration::from_secs(2),
            rediscover_every,
        );
        probe(&e, "busy", &url);
        let (healthy, seen) =
            watch_until(&e, "busy", Duration::from_secs(20), |h| h == Some(true)).await;
        assert!(healthy, "{seen:?}");
        (origin, url, e)
    }

    /// One permit at a host kept busy by its media playlists (ten renditions polled twice a
    /// second, each answered after 300 ms: six times what the permit can serve) but not hung:
    /// the master, read again behind them, still goes out once it has waited a rediscover
    /// interval (300 ms here) instead of waiting as long as the host stays busy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_master_behind_a_busy_host_is_still_read() {
        let (origin, _, e) = busy_host(Duration::from_millis(300)).await;
        origin.media_delay_ms.store(300, Ordering::SeqCst);
        sleep(Duration::from_secs(2)).await;
        let (masters, media) = (
            origin.master_reads.load(Ordering::SeqCst),
            origin.media_reads.load(Ordering::SeqCst),
        );
        sleep(Duration::from_secs(5)).await;
        let masters = origin.master_reads.load(Ordering::SeqCst) - masters;
        let media = origin.media_reads.load(Ordering::SeqCst) - media;
        // Promoted after 300 ms, it then waits behind the polls already queued as any poll
        // does (about 3 s here): 2 in 5 s. Behind the media playlists without a bound, 0 went
        // out in two runs.
        assert!(
            masters >= 1,
            "{masters} master reads, {media} media reads in 5 s"
        );
        assert!(e.shared.metrics.master_reads_promoted.get() >= 1);
    }

    /// One permit at a host kept busy by a live instance's media playlists (as in the test
    /// above) and shared with an instance already judged unhealthy (one of its two renditions
    /// answers 404): the judged instance's polls wait behind the busy instance's, but only for
    /// one target duration (1 s here), so its live rendition is still read and a recovery would
    /// be seen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_judged_instance_behind_a_busy_host_is_still_polled() {
        let (origin, url, e) = busy_host(Duration::from_secs(10)).await;
        let mut gone = url.clone();
        gone.set_query(Some("gone"));
        probe(&e, "judged", &gone);
        let (judged, seen) =
            watch_until(&e, "judged", Duration::from_secs(20), |h| h == Some(false)).await;
        assert!(judged, "{seen:?}");
        origin.media_delay_ms.store(300, Ordering::SeqCst);
        sleep(Duration::from_secs(2)).await;
        // Promoted after 1 s, a poll then waits behind those already queued (about 3 s here).
        // Counted in two windows: a request of the rendition's task stuck in the queue (as
        // its segment checks were, asked for as routine requests behind the busy instance's
        // pending verdicts) stops its reads for as long as the host stays busy.
        let mut reads = Vec::new();
        for _ in 0..2 {
            let before = origin.gone_live_reads.load(Ordering::SeqCst);
            sleep(Duration::from_secs(5)).await;
            reads.push(origin.gone_live_reads.load(Ordering::SeqCst) - before);
        }
        assert!(
            reads.iter().all(|&r| r >= 1),
            "the judged instance's live rendition was read {reads:?} times in two 5 s windows"
        );
        assert!(e.shared.metrics.judged_polls_promoted.get() >= 1);
    }

    /// A master that fails while its renditions are live makes the instance stale
    /// (`MasterUnavailable`); once it answers again it is read within the HLS reload interval,
    /// not on the 10 s rediscover schedule, so the instance is healthy again at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_master_that_answers_again_is_noticed_within_the_reload_interval() {
        let origin = Arc::new(Origin::default());
        let url = serve(origin.clone()).await;
        let e = engine_with(
            FetchLimits {
                allow_private: true,
                ..FetchLimits::default()
            },
            Duration::from_secs(2),
            Duration::from_secs(10),
        );
        probe(&e, "m", &url);
        let (healthy, seen) =
            watch_until(&e, "m", Duration::from_secs(20), |h| h == Some(true)).await;
        assert!(healthy, "{seen:?}");
        origin.fail_master.store(true, Ordering::SeqCst);
        let (stale, seen) =
            watch_until(&e, "m", Duration::from_secs(30), |h| h == Some(false)).await;
        assert!(stale, "{seen:?}");
        assert_eq!(
            e.health(&key("m")).unwrap().verdict.reason,
            "MasterUnavailable"
        );
        origin.fail_master.store(false, Ordering::SeqCst);
        // Retried every 0.5 s (half the 1 s target duration); read on the rediscover schedule
        // it would take 8-10 s.
        let (healthy, seen) =
            watch_until(&e, "m", Duration::from_secs(4), |h| h == Some(true)).await;
        assert!(healthy, "{seen:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_master_listing_more_than_the_limit_is_stale_and_not_probed() {
        let origin = Arc::new(Origin {
            hanging: 10,
            ..Origin::default()
        });
        let url = serve(origin).await;
        let e = engine(FetchLimits {
            allow_private: true,
            ..FetchLimits::default()
        });
        probe(&e, "big", &url);
        let (stale, seen) =
            watch_until(&e, "big", Duration::from_secs(10), |h| h == Some(false)).await;
        assert!(stale, "{seen:?}");
        let h = e.health(&key("big")).unwrap();
        assert_eq!(h.verdict.reason, "TooManyRenditions", "{h:?}");
        assert!(h.renditions.is_empty());
        assert_eq!(e.shared.metrics.probed_playlists.get(), 0);
    }

    /// Two instances of one ClusteredStream, one served 10 s behind: it lags the other by
    /// about 10 s and is `Lagging` after the sustained time; once the leader is no longer
    /// probed (deleted), its edge leaves the table and the other has nothing to compare with.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_instance_behind_its_peer_lags_and_a_removed_peer_leads_nobody() {
        let live = Arc::new(Origin::default());
        let behind = Arc::new(Origin::default());
        behind.behind_ms.store(10_000, Ordering::SeqCst);
        let (live_url, behind_url) = (serve(live).await, serve(behind).await);
        let e = engine(FetchLimits {
            allow_private: true,
            ..FetchLimits::default()
        });
        let lag = Some(LagTarget {
            cluster: "event".into(),
            policy: LagPolicy {
                max_seconds: 4,
                ..LagPolicy::default()
            },
        });
        for (name, url) in [("live", &live_url), ("behind", &behind_url)] {
            e.ensure(
                &key(name),
                ProbeTarget {
                    master_url: url.clone(),
                    policy: Policy::default(),
                    allowed_hosts: Vec::new(),
                    credentials: None,
                    lag: lag.clone(),
                },
            );
        }
        let lag_of = |name: &str| e.health(&key(name)).and_then(|h| h.lag);
        let end = Instant::now() + Duration::from_secs(20);
        let lagging = loop {
            if let Some(l) = lag_of("behind").filter(|l| l.lagging == Some(true)) {
                break l;
            }
            assert!(
                Instant::now() < end,
                "never lagging: {:?}",
                lag_of("behind")
            );
            sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(lagging.leader.as_deref(), Some("live"));
        let ms = lagging.lag_ms.unwrap();
        assert!((9_000..=11_000).contains(&ms), "{lagging:?}");
        let leader = lag_of("live").unwrap();
        assert_eq!((leader.lagging, leader.lag_ms), (Some(false), Some(0)));
        let metrics = e.shared.metrics.render();
        // The same range as the verdict's: the gauge follows the latest sample (9.0 s one run).
        let gauge = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("cvs_instance_lag_seconds{namespace=\"ns\",instance=\"behind\"} ")
            })
            .and_then(|v| v.parse::<f64>().ok());
        assert!(
            gauge.is_some_and(|g| (9.0..=11.0).contains(&g)),
            "{gauge:?}: {metrics}"
        );

        e.retain(|k| k.name != "live");
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let l = lag_of("behind").unwrap();
            if l.lagging.is_none() {
                assert_eq!(l.reason, "NoPeer", "{l:?}");
                break;
            }
            assert!(Instant::now() < end, "still compared: {l:?}");
            sleep(Duration::from_millis(50)).await;
        }
        let table = e.shared.edges.read().unwrap();
        let group = table.get(&("ns".to_owned(), "event".to_owned())).unwrap();
        assert_eq!(group.keys().collect::<Vec<_>>(), ["behind"]);
        drop(table);
        assert!(!e.shared.metrics.render().contains("instance=\"live\""));
    }

    #[test]
    fn a_failing_master_is_retried_within_the_hls_reload_interval() {
        let settings = EngineSettings::default();
        for failures in 1..40 {
            let d = master_retry(failures, Some(2_000), &settings);
            assert!(d <= Duration::from_secs(1), "{failures}: {d:?}");
            let d = master_retry(failures, None, &settings);
            assert!(d <= Duration::from_secs(3), "{failures}: {d:?}");
            assert!(d >= Duration::from_millis(500));
        }
        // A hostile target duration cannot stretch it past the backoff limits.
        let d = master_retry(40, Some(u64::MAX), &settings);
        assert!(d <= settings.rediscover_every);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn probe_tasks_are_counted_while_alive_and_not_after_their_instance_goes() {
        let url = serve(Arc::new(Origin::default())).await;
        let e = engine(FetchLimits {
            allow_private: true,
            ..FetchLimits::default()
        });
        let tasks = |kind: &'static str| {
            e.shared
                .metrics
                .probe_tasks
                .get_or_create(&crate::metrics::TaskLabels { kind })
                .get()
        };
        probe(&e, "a", &url);
        probe(&e, "b", &url);
        let (healthy, seen) =
            watch_until(&e, "b", Duration::from_secs(10), |h| h == Some(true)).await;
        assert!(healthy, "{seen:?}");
        assert_eq!(tasks("instance"), 2);
        // One media playlist per instance in this origin's master.
        assert_eq!(tasks("rendition"), 2);
        assert!(
            e.shared
                .metrics
                .render()
                .contains("cvs_probe_tasks{kind=\"rendition\"} 2")
        );
        // Deleted instances take their tasks with them, once the runtime has dropped them.
        e.retain(|k| k.name == "a");
        let end = Instant::now() + Duration::from_secs(10);
        while (tasks("instance"), tasks("rendition")) != (1, 1) && Instant::now() < end {
            sleep(Duration::from_millis(20)).await;
        }
        assert_eq!((tasks("instance"), tasks("rendition")), (1, 1));
        drop(e);
    }

    #[tokio::test]
    async fn a_rendition_probe_that_panics_is_restarted_and_stale_meanwhile() {
        let metrics = Arc::new(Metrics::default());
        let (tx, mut rx) = mpsc::channel(8);
        let runs = Arc::new(AtomicU32::new(0));
        let starts = Arc::new(Mutex::new(Vec::new()));
        let (r, s) = (runs.clone(), starts.clone());
        let task = tokio::spawn(supervise(
            "v".into(),
            metrics.clone(),
            tx,
            Tracker::new(),
            move |tracker: Tracker| {
                let (r, s) = (r.clone(), s.clone());
                async move {
                    s.lock().unwrap().push(tracker.stale.clone());
                    if r.fetch_add(1, Ordering::SeqCst) < 2 {
                        panic!("a hostile playlist broke the probe");
                    }
                }
            },
        ));
        // Each panic is reported as a stale rendition, and the probe runs again.
        for _ in 0..2 {
            let report = rx.recv().await.unwrap();
            assert!(report.tracker.is_judged() && !report.tracker.is_fresh());
            assert!(report.flipped);
        }
        task.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(metrics.probe_task_restarts.get(), 2);
        let starts = starts.lock().unwrap();
        assert_eq!(starts[0], Some(decision::StaleReason::NeverFetched));
        assert!(matches!(
            starts[2],
            Some(decision::StaleReason::Failed(Failure::Other(_)))
        ));
    }
}
