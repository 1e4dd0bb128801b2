//! The probe engine: one task per StreamInstance, each with a child task per media playlist,
//! all sharing one bounded HTTP client. Results go to an in-memory health table the instance
//! reconciler reads, to a reconcile trigger for instances whose verdict changed, and to a
//! broadcast stream of transitions for the state-table and SNS work.

use super::decision::{self, Failure, InstanceVerdict, Policy, Tracker};
use super::fetch::{self, FetchLimits, Fetcher, Rendition};
use crate::metrics::Metrics;
use prometheus_client::metrics::gauge::Gauge;
use reqwest::Url;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

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
}

/// Settings of the whole engine.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub limits: FetchLimits,
    /// Longest wait between polls of a failing playlist.
    pub max_backoff: Duration,
    /// How often the master playlist is fetched again to find added or removed renditions.
    pub rediscover_every: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            limits: FetchLimits::default(),
            max_backoff: Duration::from_secs(30),
            rediscover_every: Duration::from_secs(10),
        }
    }
}

/// One rendition as last seen, for status.
#[derive(Clone, Debug, PartialEq)]
pub struct RenditionHealth {
    pub uri: String,
    pub kind: &'static str,
    pub fresh: bool,
    pub media_sequence: Option<u64>,
    pub target_duration_ms: Option<u64>,
    pub last_change: Option<jiff::Timestamp>,
    /// The reason it is stale, or the last error.
    pub detail: Option<String>,
}

/// The latest health of one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceHealth {
    pub verdict: InstanceVerdict,
    pub renditions: Vec<RenditionHealth>,
    pub at: jiff::Timestamp,
}

/// A flip of an instance's health (or its first verdict).
#[derive(Clone, Debug)]
pub struct HealthTransition {
    pub key: InstanceKey,
    pub previous: Option<bool>,
    pub health: InstanceHealth,
}

struct Shared {
    fetcher: Fetcher,
    settings: EngineSettings,
    metrics: Arc<Metrics>,
    health: RwLock<HashMap<InstanceKey, InstanceHealth>>,
    changed: mpsc::UnboundedSender<InstanceKey>,
    transitions: broadcast::Sender<HealthTransition>,
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
            .checked_add(jiff::SignedDuration::from_millis(ms as i64))
            .unwrap_or(self.epoch_wall)
    }
    fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
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
        let (transitions, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            fetcher: Fetcher::new(&settings.limits)?,
            settings,
            metrics,
            health: RwLock::new(HashMap::new()),
            changed,
            transitions,
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
        let handle = tokio::spawn(run_instance(key.clone(), rx, self.shared.clone()));
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

    /// The latest health of `key`, if a verdict exists yet.
    pub fn health(&self, key: &InstanceKey) -> Option<InstanceHealth> {
        self.shared
            .health
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// A stream of every health flip, for the state table and SNS.
    pub fn subscribe(&self) -> broadcast::Receiver<HealthTransition> {
        self.shared.transitions.subscribe()
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
    uri: Url,
    tracker: Tracker,
    flipped: bool,
}

struct RenditionTask {
    kind: &'static str,
    tracker: Tracker,
    handle: JoinHandle<()>,
}

impl Drop for RenditionTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

async fn run_instance(
    key: InstanceKey,
    mut target_rx: watch::Receiver<ProbeTarget>,
    shared: Arc<Shared>,
) {
    let (report_tx, mut report_rx) = mpsc::channel::<Report>(256);
    let mut target = target_rx.borrow_and_update().clone();
    let (policy_tx, _) = watch::channel(target.policy);
    let mut renditions: BTreeMap<Url, RenditionTask> = BTreeMap::new();
    let mut master_error: Option<Failure> = None;
    let mut master_failures: u32 = 0;
    let mut next_master = Instant::now();
    let mut last: Option<InstanceVerdict> = None;
    let mut dirty = false;
    // Publish rendition details (sequence numbers, ages) at most this often without a flip.
    let mut next_publish = Instant::now();
    const PUBLISH_EVERY: Duration = Duration::from_secs(5);

    loop {
        tokio::select! {
            _ = sleep_until(next_master) => {
                match fetch_master(&shared, &target.master_url).await {
                    Ok(found) => {
                        master_error = None;
                        master_failures = 0;
                        let wanted: BTreeMap<Url, &'static str> =
                            found.into_iter().map(|r| (r.uri, r.kind)).collect();
                        renditions.retain(|uri, _| wanted.contains_key(uri));
                        for (uri, kind) in wanted {
                            renditions.entry(uri.clone()).or_insert_with(|| RenditionTask {
                                kind,
                                tracker: Tracker::new(),
                                handle: tokio::spawn(run_rendition(
                                    uri,
                                    policy_tx.subscribe(),
                                    shared.clone(),
                                    report_tx.clone(),
                                )),
                            });
                        }
                        next_master = Instant::now() + shared.settings.rediscover_every;
                    }
                    Err(e) => {
                        master_failures = master_failures.saturating_add(1);
                        master_error = Some(e);
                        let backoff = Duration::from_millis(500)
                            .saturating_mul(1 << master_failures.min(8))
                            .min(shared.settings.max_backoff);
                        next_master = Instant::now() + backoff.min(shared.settings.rediscover_every);
                    }
                }
                dirty = true;
            }
            Some(report) = report_rx.recv() => {
                if let Some(task) = renditions.get_mut(&report.uri) {
                    task.tracker = report.tracker;
                    dirty = true;
                    if report.flipped {
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
                    master_error = None;
                    last = None;
                    next_master = Instant::now();
                }
                if new.policy != target.policy {
                    let _ = policy_tx.send(new.policy);
                }
                target = new;
                continue;
            }
        }
        if !dirty {
            continue;
        }
        // The first verdict waits until every rendition found so far has been fetched once, so
        // it never describes a partial picture.
        let pending = renditions
            .values()
            .any(|t| t.tracker.stale == Some(decision::StaleReason::NeverFetched));
        if last.is_none() && master_error.is_none() && pending {
            continue;
        }
        let Some(verdict) = decision::aggregate(
            master_error.as_ref(),
            renditions.iter().map(|(uri, t)| (uri.as_str(), &t.tracker)),
        ) else {
            continue;
        };
        let flipped = last.as_ref().is_none_or(|l| l.healthy != verdict.healthy);
        let verdict_changed = last.as_ref() != Some(&verdict);
        if verdict_changed || Instant::now() >= next_publish {
            let health = InstanceHealth {
                renditions: renditions
                    .iter()
                    .map(|(uri, t)| rendition_health(&shared, uri, t))
                    .collect(),
                verdict: verdict.clone(),
                at: jiff::Timestamp::now(),
            };
            shared
                .health
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), health.clone());
            if verdict_changed {
                let _ = shared.changed.send(key.clone());
            }
            if flipped {
                shared
                    .metrics
                    .health_transitions
                    .get_or_create(&crate::metrics::HealthLabels {
                        to: if verdict.healthy { "healthy" } else { "stale" },
                    })
                    .inc();
                tracing::info!(instance = %key, healthy = verdict.healthy, reason = verdict.reason, message = %verdict.message, "instance health changed");
                let _ = shared.transitions.send(HealthTransition {
                    key: key.clone(),
                    previous: last.as_ref().map(|l| l.healthy),
                    health,
                });
            }
            last = Some(verdict);
            dirty = false;
            next_publish = Instant::now() + PUBLISH_EVERY;
        }
    }
}

fn rendition_health(shared: &Shared, uri: &Url, task: &RenditionTask) -> RenditionHealth {
    let t = &task.tracker;
    RenditionHealth {
        uri: uri.to_string(),
        kind: task.kind,
        fresh: t.is_fresh(),
        media_sequence: t.last.map(|s| s.media_sequence),
        target_duration_ms: t.last.map(|s| s.target_duration_ms),
        last_change: t.last_change_ms.map(|ms| shared.wall(ms)),
        detail: t
            .stale
            .as_ref()
            .map(|r| r.to_string())
            .or_else(|| t.last_error.as_ref().map(|e| e.to_string())),
    }
}

async fn fetch_master(shared: &Shared, url: &Url) -> Result<Vec<Rendition>, Failure> {
    let started = Instant::now();
    let result = match shared.fetcher.get(url).await {
        Ok(body) => fetch::parse_master(&body, url),
        Err(e) => Err(e),
    };
    shared
        .metrics
        .observe_probe("master", started.elapsed(), result.as_ref().err());
    result
}

async fn run_rendition(
    uri: Url,
    mut policy_rx: watch::Receiver<Policy>,
    shared: Arc<Shared>,
    reports: mpsc::Sender<Report>,
) {
    let mut tracker = Tracker::new();
    let mut rng = fastrand::Rng::new();
    // Spread the first polls of many renditions over a second, so a restart is not a stampede.
    let mut next_poll = Instant::now() + Duration::from_millis(rng.u64(0..1000));
    let mut gauges = RenditionGauges::new(&shared.metrics);

    loop {
        let policy = *policy_rx.borrow_and_update();
        let deadline = tracker
            .deadline_ms(&policy)
            .filter(|_| tracker.is_fresh())
            .map(|ms| shared.instant(ms + 1));
        tokio::select! {
            _ = sleep_until(next_poll) => {}
            _ = async { sleep_until(deadline.unwrap()).await }, if deadline.is_some() => {
                let v = tracker.tick(shared.now_ms(), &policy);
                gauges.set_stale(!tracker.is_fresh());
                if v.flipped && report(&reports, &uri, &tracker, true).await.is_err() {
                    return;
                }
                continue;
            }
            changed = policy_rx.changed() => {
                if changed.is_err() { return; }
                continue;
            }
        }

        // Poll, but declare staleness on time even while a slow request is in flight.
        let started = Instant::now();
        let fetch = shared.fetcher.get(&uri);
        tokio::pin!(fetch);
        let result = loop {
            let deadline = tracker
                .deadline_ms(&policy)
                .filter(|_| tracker.is_fresh())
                .map(|ms| shared.instant(ms + 1));
            tokio::select! {
                r = &mut fetch => break r,
                _ = async { sleep_until(deadline.unwrap()).await }, if deadline.is_some() => {
                    let v = tracker.tick(shared.now_ms(), &policy);
                    gauges.set_stale(!tracker.is_fresh());
                    if v.flipped && report(&reports, &uri, &tracker, true).await.is_err() {
                        return;
                    }
                }
            }
        };
        let now = shared.now_ms();
        let outcome = result.and_then(|body| fetch::parse_media(&body));
        shared
            .metrics
            .observe_probe("media", started.elapsed(), outcome.as_ref().err());
        let verdict = match outcome {
            Ok(snapshot) => {
                if let Some(change) = tracker.last_change_ms {
                    shared
                        .metrics
                        .staleness_age
                        .observe(now.saturating_sub(change) as f64 / 1000.0);
                }
                tracker.observe(snapshot, now, &policy)
            }
            Err(failure) => tracker.fail(failure, now),
        };
        gauges.set_stale(!tracker.is_fresh());
        if report(&reports, &uri, &tracker, verdict.flipped)
            .await
            .is_err()
        {
            return;
        }
        let delay = tracker.next_poll_in_ms(
            verdict.advanced,
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
        next_poll = shared.instant(now) + Duration::from_millis(delay.max(decision::MIN_POLL_MS));
    }
}

async fn report(
    reports: &mpsc::Sender<Report>,
    uri: &Url,
    tracker: &Tracker,
    flipped: bool,
) -> Result<(), mpsc::error::SendError<Report>> {
    reports
        .send(Report {
            uri: uri.clone(),
            tracker: tracker.clone(),
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
