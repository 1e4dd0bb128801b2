//! The two reconcilers and what they share.
//!
//! * `instance` reconciles each StreamInstance: its own observations (`observedGeneration`, the
//!   `Healthy` and `Stale` conditions) and, when its ClusteredStream is missing, says so.
//! * `cluster` reconciles each ClusteredStream together with all of its instances: it decides the
//!   effective open state of every instance at once (so `minOpen` holds across the group) and
//!   writes `open` and the `Open` condition of each instance, and the ClusteredStream's status.
//!
//! Both write status only, by server-side apply, each under its own field manager, so their
//! fields never clash and `kubectl apply`/Argo CD (which own `spec`) never fight the operator.

pub mod cluster;
pub mod edge;
pub mod events;
pub mod health;
pub mod instance;
pub mod leader;
pub mod publish;
pub mod secrets;
pub mod tenancy;
pub mod written;

pub use health::Health;

use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::probe::{InstanceKey, ProbeEngine};
use crate::resources::{ClusteredStream, StreamInstance};
use crate::state::StateTable;
use futures::{FutureExt, StreamExt};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource};
use std::sync::Arc;
use std::time::Duration;

/// Name the operator reports Events and field ownership under.
pub const OPERATOR_NAME: &str = "cvs-operator";

/// Errors of one reconciliation. Each is retried by `error_policy` with a delay.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("could not serialize status: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("object has no namespace: {0}")]
    MissingNamespace(String),
    #[error("the reconciliation panicked: {0}")]
    Panicked(String),
}

impl Error {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Serialize(_) => "serialize",
            Error::MissingNamespace(_) => "missing_namespace",
            Error::Panicked(_) => "panic",
        }
    }
}

/// Status writes of rendition detail alone allowed in flight at once for a reconcile
/// concurrency of `concurrency`: half of it, at least one.
pub fn detail_slots(concurrency: u16) -> usize {
    usize::from(concurrency / 2).max(1)
}

/// What every reconciliation can reach.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    /// Who the Events are reported by.
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    /// Every StreamInstance the operator watches, kept current by the instance controller.
    pub instances: Store<StreamInstance>,
    /// Every ClusteredStream the operator watches, kept current by the cluster controller.
    pub clusters: Store<ClusteredStream>,
    /// Probes every instance's playlists.
    pub probes: Arc<ProbeEngine>,
    /// When each instance's rendition detail was last written.
    pub detail_writes: std::sync::Mutex<std::collections::HashMap<InstanceKey, std::time::Instant>>,
    /// Rendition detail (sequence numbers, last change) is written at most this often unless
    /// something meaningful changed; conditions are written as soon as they change.
    pub detail_refresh: Duration,
    /// Status writes of rendition detail alone in flight at once: half the reconcile
    /// concurrency, so a verdict never waits behind them when the API server is slow (see
    /// `instance::reconcile`).
    pub detail_slots: tokio::sync::Semaphore,
    /// Instance status writes of a verdict in flight; while any is, every other status write
    /// waits for a later round (see `instance::StatusWrite`).
    pub verdict_writes: std::sync::atomic::AtomicUsize,
    /// Each instance as its last status write left it, until the cache has it (see
    /// [`written`]).
    pub written_instances: written::Written<StreamInstance>,
    /// Each ClusteredStream as its last status write left it, until the cache has it.
    pub written_clusters: written::Written<ClusteredStream>,
    /// Asks the cluster controller to reconcile a ClusteredStream: sent after an instance's
    /// verdict is written, so the ClusteredStream acts on it without waiting for the watch to
    /// bring the write back.
    pub cluster_triggers: tokio::sync::mpsc::UnboundedSender<ObjectRef<ClusteredStream>>,
    /// AWS configuration from the standard chain (`AWS_ENDPOINT_URL_*` included).
    pub aws: aws_config::SdkConfig,
    /// State tables by (name, region), with when each was last checked.
    pub tables: std::sync::Mutex<TableCache>,
    /// The last item written or read, by (table, domain).
    pub items: crate::state::ItemCache,
    /// By ClusteredStream (`namespace/name`): the table and member domains of the last sweep for
    /// items no instance claims any more. A sweep runs again when the table changes or a domain
    /// leaves (and once at start).
    pub swept: std::sync::Mutex<std::collections::HashMap<String, Swept>>,
    /// Per ClusteredStream (`ns/name`): when each state-table item no instance claims was first
    /// found unclaimed (see `cluster::retire_removed`).
    pub unclaimed: std::sync::Mutex<
        std::collections::HashMap<String, std::collections::HashMap<String, std::time::Instant>>,
    >,
    pub notifier: Notifier,
    /// Liveness and readiness, fed by the controllers.
    pub health: Health,
    /// The merged master playlist and steering manifest publication stage.
    pub publisher: Arc<publish::Publisher>,
    /// Origin-credentials Secrets, read by name and cached briefly.
    pub secrets: secrets::SecretCache,
    /// Who decides which AWS resources a namespace may use.
    pub tenant_policy: tenancy::TenantPolicy,
    /// Namespaces' allow-lists, read by name and cached briefly.
    pub namespaces: tenancy::NamespaceCache,
    /// What the dashboard shows: its timeline is fed from here.
    pub feed: crate::dashboard::Feed,
    /// Kubernetes Events, sent in the background (see [`publish`]).
    pub events: events::EventQueue,
}

/// The state table (name, region) and the member domains a ClusteredStream was last swept with.
pub type Swept = (String, String, std::collections::BTreeSet<String>);

impl Context {
    /// Forgets what the instance reconciler kept for every instance for which `keep` is false.
    pub fn forget_instances_except(&self, keep: impl Fn(&InstanceKey) -> bool) {
        self.detail_writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| keep(k));
        self.written_instances.retain(|namespace, name| {
            keep(&InstanceKey {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
        });
    }

    /// The state table `name` in `region`: whether its existence needs checking again, and the
    /// error to report without calling DynamoDB while it is backing off after a failure.
    pub fn table(&self, name: &str, region: &str) -> TableHandle {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let entry = tables
            .entry((name.to_owned(), region.to_owned()))
            .or_insert_with(|| {
                let conf = aws_sdk_dynamodb::config::Builder::from(&self.aws)
                    .region(aws_config::Region::new(region.to_owned()))
                    .build();
                TableEntry {
                    table: StateTable::new(aws_sdk_dynamodb::Client::from_conf(conf), name, region),
                    checked_at: None,
                    failures: 0,
                    backoff_until: None,
                    last_error: None,
                }
            });
        let now = std::time::Instant::now();
        TableHandle {
            table: entry.table.clone(),
            check_due: entry
                .checked_at
                .is_none_or(|at| at.elapsed() > TABLE_RECHECK),
            blocked: entry
                .backoff_until
                .filter(|until| *until > now)
                .and(entry.last_error.clone()),
        }
    }

    /// Records how a round of table work went: a success clears the backoff (and, with
    /// `checked`, marks the table as checked); a failure doubles the backoff, from 1 s to 30 s.
    pub fn table_outcome(&self, name: &str, region: &str, outcome: TableOutcome) {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = tables.get_mut(&(name.to_owned(), region.to_owned())) else {
            return;
        };
        match outcome {
            TableOutcome::Checked { replicas_fine } => {
                // A replica that could not be requested is asked for again at the next check.
                entry.checked_at = replicas_fine.then(std::time::Instant::now);
            }
            TableOutcome::Synced => {
                entry.failures = 0;
                entry.backoff_until = None;
                entry.last_error = None;
            }
            TableOutcome::Failed(error) => {
                entry.checked_at = None;
                entry.failures = entry.failures.saturating_add(1);
                let backoff = Duration::from_secs(1)
                    .saturating_mul(1 << entry.failures.saturating_sub(1).min(5))
                    .min(TABLE_MAX_BACKOFF);
                entry.backoff_until = Some(std::time::Instant::now() + backoff);
                entry.last_error = Some(error);
            }
        }
    }
}

/// A state table as the cluster reconciler sees it for one round.
pub struct TableHandle {
    pub table: StateTable,
    pub check_due: bool,
    /// Backing off after a failure: the error to report instead of calling DynamoDB.
    pub blocked: Option<crate::state::StateError>,
}

/// How a round of work on a state table went.
pub enum TableOutcome {
    Checked { replicas_fine: bool },
    Synced,
    Failed(crate::state::StateError),
}

/// One cached state table and its health.
pub struct TableEntry {
    table: StateTable,
    checked_at: Option<std::time::Instant>,
    failures: u32,
    backoff_until: Option<std::time::Instant>,
    last_error: Option<crate::state::StateError>,
}

/// State tables by (name, region).
pub type TableCache = std::collections::HashMap<(String, String), TableEntry>;

/// Longest pause between attempts on a failing state table. Without it every reconcile of every
/// ClusteredStream would call an unreachable DynamoDB (and, when its host name cannot be
/// resolved, tie up a blocking thread per call).
const TABLE_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the controllers run with.
pub struct Wiring {
    pub client: Client,
    /// Watch only this namespace (every namespace when `None`).
    pub namespace: Option<String>,
    pub metrics: Arc<Metrics>,
    pub probes: Arc<ProbeEngine>,
    /// Instances whose probe verdict changed, from the probe engine.
    pub probe_changes: tokio::sync::mpsc::UnboundedReceiver<InstanceKey>,
    pub aws: aws_config::SdkConfig,
    /// Reconciliations in flight at once, per controller.
    pub reconcile_concurrency: u16,
    /// How often an instance's rendition detail is refreshed in its status.
    pub detail_refresh: Duration,
    /// A probed instance whose verdict is older than this means the probe engine is stuck.
    pub probe_stall: Duration,
    /// Publishes the merged master playlist and the steering manifest.
    pub publisher: Arc<publish::Publisher>,
    /// Who decides which AWS resources a namespace may use.
    pub tenant_policy: tenancy::TenantPolicy,
    /// The dashboard's inputs: given the caches and the probe engine once they run.
    pub feed: crate::dashboard::Feed,
}

/// How often a state table that checked out fine is described again.
const TABLE_RECHECK: Duration = Duration::from_secs(60);

/// Why the operator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "the CustomResourceDefinition {0} is not installed in this cluster; install the CRDs with \
         `kubectl apply -f crds/` (or `cvs-operator crd | kubectl apply -f -`) and start the operator again"
    )]
    CrdMissing(String),
    #[error("cannot reach the Kubernetes API server: {0}")]
    Unreachable(#[source] kube::Error),
}

/// Checks that both CRDs are installed and served, so the operator fails fast with a clear
/// message instead of retrying watches forever.
pub async fn check_crds(client: &Client, namespace: Option<&str>) -> Result<(), StartError> {
    async fn probe<K>(client: &Client, namespace: Option<&str>) -> Result<(), StartError>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Err(StartError::CrdMissing(
                format!("{}.{}", K::plural(&()), K::group(&())),
            )),
            Err(e) => Err(StartError::Unreachable(e)),
        }
    }
    probe::<ClusteredStream>(client, namespace).await?;
    probe::<StreamInstance>(client, namespace).await?;
    Ok(())
}

/// Waits until a store has seen its first full list. The controllers wait on the same stores,
/// and a store wakes only its most recent waiter, so this polls again every 200 ms rather than
/// waiting once (a single wait can sleep forever).
async fn wait_synced<K>(store: &Store<K>)
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    while tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready())
        .await
        .is_err()
    {}
}

/// Pause after a failed list or watch request: 250 ms, doubling to [`WATCH_MAX_BACKOFF`], back
/// to 250 ms as soon as the watch delivers an event. kube's default (0.8 s doubling to 30 s,
/// shared by every watch of a controller) kept the operator blind for minutes after its CRDs
/// were deleted and created again.
#[derive(Clone, Copy)]
struct WatchBackoff(Duration);

const WATCH_MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest pause between attempts of a failing watch.
pub const WATCH_MAX_BACKOFF: Duration = Duration::from_secs(4);

impl Default for WatchBackoff {
    fn default() -> Self {
        Self(WATCH_MIN_BACKOFF)
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let now = self.0;
        self.0 = (self.0 * 2).min(WATCH_MAX_BACKOFF);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.0 = WATCH_MIN_BACKOFF;
    }
}

/// Sees every event of a watch after the cache applied it.
type WatchTap<K> = Box<dyn FnMut(&watcher::Event<K>) + Send>;

/// One watch of `api`, for a controller: objects applied (and, with `touched`, deleted), with
/// each failure logged at WARN, shown in readiness and retried after [`WatchBackoff`]; the
/// controller itself never sees the errors, so one failing watch does not pause its others.
/// With `writer` the watch also keeps that cache, and `tap` sees each event once the cache
/// applied it. Lists read the latest state from etcd: a list from the API server's watch cache
/// could return a resourceVersion from before the CRD was re-created, and every watch from it
/// failed with 410 Gone.
fn watch_objects<K>(
    api: Api<K>,
    writer: Option<kube::runtime::reflector::store::Writer<K>>,
    name: &'static str,
    touched: bool,
    mut tap: Option<WatchTap<K>>,
    health: Health,
    feed: Option<crate::dashboard::Feed>,
) -> futures::stream::BoxStream<'static, Result<K, watcher::Error>>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let config = watcher::Config::default().list_semantic(watcher::ListSemantic::MostRecent);
    let events =
        kube::runtime::utils::StreamBackoff::new(watcher(api, config), WatchBackoff::default());
    let events = match writer {
        Some(writer) => kube::runtime::reflector(writer, events).boxed(),
        None => events.boxed(),
    };
    events
        .flat_map(move |event| {
            let objects: Vec<K> = match event {
                Ok(event) => {
                    health.watch_ok(name);
                    if let Some(feed) = &feed {
                        feed.poke();
                    }
                    // After the reflector: the cache already holds what the event says.
                    if let Some(tap) = &mut tap {
                        tap(&event);
                    }
                    match event {
                        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => vec![o],
                        watcher::Event::Delete(o) if touched => vec![o],
                        _ => Vec::new(),
                    }
                }
                Err(e) => {
                    health.watch_failed(name, &e);
                    Vec::new()
                }
            };
            futures::stream::iter(objects.into_iter().map(Ok))
        })
        .boxed()
}

/// Lets through an object of a watch only when its fingerprint differs from the one last let
/// through for the same object (namespace, name and uid: a re-created object is new). Unlike
/// kube-runtime's `predicate_filter` it is told of deletions, so it keeps an entry per live
/// object only, and the deletion itself is never filtered out.
struct ChangeFilter<K> {
    fingerprint: fn(&K) -> u64,
    seen: std::collections::HashMap<(Option<String>, String, Option<String>), u64>,
}

impl<K: Resource> ChangeFilter<K> {
    fn new(fingerprint: fn(&K) -> u64) -> Self {
        Self {
            fingerprint,
            seen: Default::default(),
        }
    }

    fn key(object: &K) -> (Option<String>, String, Option<String>) {
        let meta = object.meta();
        (
            meta.namespace.clone(),
            meta.name.clone().unwrap_or_default(),
            meta.uid.clone(),
        )
    }

    /// Whether `object` changed since it was last let through; remembers it.
    fn admit(&mut self, object: &K) -> bool {
        let print = (self.fingerprint)(object);
        self.seen.insert(Self::key(object), print) != Some(print)
    }

    fn forget(&mut self, object: &K) {
        self.seen.remove(&Self::key(object));
    }

    fn clear(&mut self) {
        self.seen.clear();
    }
}

/// Which ClusteredStream to reconcile again for an event of the instance watch that fills the
/// instance cache: the instance's, when it appeared, went away, or changed in what the cluster
/// reconciler reads ([`cluster::inputs_fingerprint`]); not when the instance reconciler only
/// refreshed its rendition detail. Taken from the cache's own watch, after the cache applied the
/// event, so the reconciliation it triggers finds the change there (a second watch could run
/// ahead of the cache, and a reconciliation that read the old state would wait for its requeue).
/// A relist is applied to the cache only when it is complete, so its triggers wait until then;
/// it triggers every ClusteredStream it lists, since an instance deleted while the watch was
/// down has no Delete event.
struct ClusterTriggers {
    changes: ChangeFilter<StreamInstance>,
    relisted: std::collections::HashSet<ObjectRef<ClusteredStream>>,
}

impl ClusterTriggers {
    fn new() -> Self {
        Self {
            changes: ChangeFilter::new(cluster::inputs_fingerprint),
            relisted: Default::default(),
        }
    }

    fn cluster_of(instance: &StreamInstance) -> ObjectRef<ClusteredStream> {
        ObjectRef::new(&instance.spec.clustered_stream)
            .within(instance.metadata.namespace.as_deref().unwrap_or("default"))
    }

    /// The ClusteredStreams to reconcile again after `event`.
    fn on(&mut self, event: &watcher::Event<StreamInstance>) -> Vec<ObjectRef<ClusteredStream>> {
        match event {
            watcher::Event::Apply(i) => {
                if self.changes.admit(i) {
                    vec![Self::cluster_of(i)]
                } else {
                    Vec::new()
                }
            }
            watcher::Event::Delete(i) => {
                self.changes.forget(i);
                vec![Self::cluster_of(i)]
            }
            watcher::Event::Init => {
                self.changes.clear();
                self.relisted.clear();
                Vec::new()
            }
            watcher::Event::InitApply(i) => {
                self.changes.admit(i);
                self.relisted.insert(Self::cluster_of(i));
                Vec::new()
            }
            watcher::Event::InitDone => std::mem::take(&mut self.relisted).into_iter().collect(),
        }
    }
}

/// The message of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Runs one reconciliation, turning a panic inside it into [`Error::Panicked`]: kube-runtime
/// polls reconciliations inside the controller's stream, so a panic there would end the whole
/// process (and, for a panic that an object's content causes, make it crash-loop).
pub async fn catch_panic<F>(reconciliation: F) -> Result<Action, Error>
where
    F: std::future::Future<Output = Result<Action, Error>>,
{
    match std::panic::AssertUnwindSafe(reconciliation)
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(payload) => Err(Error::Panicked(panic_message(payload.as_ref()))),
    }
}

/// A reconciliation as the controllers run it: timed, visible to the liveness check while in
/// flight, and a panic becomes an error (counted, logged, a Warning Event on the object, and a
/// retry after [`RETRY_AFTER_ERROR`] by the error policy) instead of the end of the process.
async fn guarded<K, F, Fut>(
    controller: &'static str,
    object: Arc<K>,
    ctx: Arc<Context>,
    reconcile: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, Error>>,
{
    let _in_flight = ctx.health.reconcile_started(controller);
    let result = catch_panic(reconcile(object.clone(), ctx.clone())).await;
    if let Err(Error::Panicked(message)) = &result {
        tracing::error!(
            controller,
            object = %object.meta().name.as_deref().unwrap_or_default(),
            panic = %message,
            "a reconciliation panicked; retrying later"
        );
        publish(
            &ctx,
            object.as_ref(),
            kube::runtime::events::Event {
                type_: kube::runtime::events::EventType::Warning,
                reason: "ReconcilePanicked".into(),
                note: Some(format!(
                    "the operator hit a bug reconciling this object: {message}"
                )),
                action: "Reconcile".into(),
                secondary: None,
            },
        )
        .await;
    }
    result
}

/// Runs both controllers until `shutdown` resolves; in-flight reconciliations finish first.
pub async fn run(
    wiring: Wiring,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let Wiring {
        client,
        namespace,
        metrics,
        probes,
        probe_changes,
        aws,
        reconcile_concurrency,
        detail_refresh,
        probe_stall,
        publisher,
        tenant_policy,
        feed,
    } = wiring;
    let reporter = Reporter {
        controller: OPERATOR_NAME.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client.clone(), reporter.clone());
    let (instance_api, cluster_api): (Api<StreamInstance>, Api<ClusteredStream>) = match &namespace
    {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };

    // One shutdown signal fans out to both controllers.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    // Bounded: at start-up every object is reconciled at once, and unbounded that meant
    // thousands of status writes in flight (API server timeouts, a memory peak).
    let config = || kube::runtime::controller::Config::default().concurrency(reconcile_concurrency);
    let (instances, instance_writer) = kube::runtime::reflector::store::<StreamInstance>();
    let (clusters, cluster_writer) = kube::runtime::reflector::store::<ClusteredStream>();
    // Unbounded, and that costs nothing: the cluster controller takes every trigger into its
    // scheduler (which merges repeats) as it arrives, without waiting for reconciliations.
    let (cluster_trigger_tx, cluster_trigger_rx) = tokio::sync::mpsc::unbounded_channel();
    let verdict_trigger_tx = cluster_trigger_tx.clone();
    let mut cluster_triggers = ClusterTriggers::new();
    // An instance is reconciled when its spec changes (a new generation), not when its own
    // status write comes back through the watch: that echo was half of all instance
    // reconciliations at 1,430 instances. The cache still sees every change; the verdicts,
    // the ClusteredStream and the heartbeat below trigger the rest. The same watch tells the
    // cluster controller which ClusteredStreams to look at again (`ClusterTriggers`).
    let instance_controller = Controller::for_stream(
        watch_objects(
            instance_api.clone(),
            Some(instance_writer),
            "streaminstances",
            false,
            Some(Box::new(move |event| {
                for cluster in cluster_triggers.on(event) {
                    // The receiver lives as long as the cluster controller; after it stopped
                    // nothing needs telling.
                    let _ = cluster_trigger_tx.send(cluster);
                }
            })),
            health.clone(),
            Some(feed.clone()),
        )
        .predicate_filter(kube::runtime::predicates::generation, Default::default())
        .boxed(),
        instances.clone(),
    )
    .with_config(config());
    let cluster_controller = Controller::for_stream(
        watch_objects(
            cluster_api.clone(),
            Some(cluster_writer),
            "clusteredstreams",
            false,
            None,
            health.clone(),
            Some(feed.clone()),
        ),
        clusters.clone(),
    )
    .with_config(config());

    // Each in a statement of its own: the family's guard lives to the end of the statement, and
    // a second `get_or_create` in the same one would wait for it forever.
    let expired_counter = |controller| {
        metrics
            .written_expired
            .get_or_create(&crate::metrics::ControllerLabels { controller })
            .clone()
    };
    let instances_expired = expired_counter(instance::CONTROLLER);
    let clusters_expired = expired_counter(cluster::CONTROLLER);
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: recorder.clone(),
        reporter: reporter.clone(),
        metrics: metrics.clone(),
        instances: instances.clone(),
        clusters: clusters.clone(),
        probes: probes.clone(),
        detail_writes: Default::default(),
        detail_refresh,
        detail_slots: tokio::sync::Semaphore::new(detail_slots(reconcile_concurrency)),
        verdict_writes: Default::default(),
        written_instances: written::Written::new(written::KEEP_FOR, instances_expired),
        written_clusters: written::Written::new(written::KEEP_FOR, clusters_expired),
        cluster_triggers: verdict_trigger_tx,
        notifier: Notifier::start(aws.clone(), metrics.clone()),
        aws,
        tables: Default::default(),
        items: Default::default(),
        swept: Default::default(),
        unclaimed: Default::default(),
        health: health.clone(),
        publisher,
        secrets: Default::default(),
        tenant_policy,
        namespaces: Default::default(),
        feed: feed.clone(),
        events: events::EventQueue::start(client.clone(), recorder, reporter, metrics.clone()),
    });
    feed.attach(instances.clone(), clusters.clone(), Some(probes.clone()));

    let (notifier, events) = (ctx.notifier.clone(), ctx.clone());
    // Stop probing instances that are gone, and forget what was kept for them. Deletions need
    // no finalizer: probes are in memory. The same round checks that the probe engine still
    // publishes verdicts, for the liveness check.
    {
        let (instances, ctx) = (instances.clone(), ctx.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(health::WATCHDOG_EVERY);
            loop {
                every.tick().await;
                if instances.wait_until_ready().now_or_never().is_none() {
                    ctx.health.watchdog_tick(std::time::Instant::now(), None);
                    continue;
                }
                let exists = |k: &InstanceKey| {
                    instances
                        .get(&ObjectRef::new(&k.name).within(&k.namespace))
                        .is_some()
                };
                ctx.probes.retain(exists);
                ctx.forget_instances_except(exists);
                ctx.written_clusters.retain(|ns, name| {
                    ctx.clusters.get(&ObjectRef::new(name).within(ns)).is_some()
                });
                let instance_count = instances.state().len();
                ctx.health.has_objects("instance", instance_count > 0);
                ctx.health
                    .has_objects("cluster", !ctx.clusters.state().is_empty());
                let now = jiff::Timestamp::now();
                let ages = instances.state().into_iter().filter_map(|i| {
                    let key = InstanceKey {
                        namespace: i.metadata.namespace.clone()?,
                        name: i.metadata.name.clone()?,
                    };
                    let at = ctx.probes.health(&key)?.at;
                    let age = now.duration_since(at).unsigned_abs();
                    Some((key.to_string(), age))
                });
                let stalled = health::stalled_probes(ages, probe_stall);
                ctx.health.watchdog_tick(std::time::Instant::now(), stalled);
            }
        });
    }
    // An instance whose probe verdict changed is reconciled at once.
    let probe_triggers = futures::stream::unfold(probe_changes, |mut rx| async move {
        rx.recv().await.map(|k| {
            (
                ObjectRef::<StreamInstance>::new(&k.name).within(&k.namespace),
                rx,
            )
        })
    });

    {
        let (instances, clusters, health) = (instances.clone(), clusters.clone(), health.clone());
        tokio::spawn(async move {
            wait_synced(&instances).await;
            wait_synced(&clusters).await;
            health.set_synced();
            tracing::info!("caches synced; operator is ready");
        });
    }

    // Heartbeats: every instance is requeued at least every `detail_refresh`, every
    // ClusteredStream at least every RESYNC_PERIOD; a controller with objects that finishes no
    // reconciliation for several of those periods is wedged.
    health.controller_started(
        "instance",
        detail_refresh
            .saturating_mul(4)
            .max(Duration::from_secs(300)),
    );
    health.controller_started("cluster", RESYNC_PERIOD.saturating_mul(3));
    let (instance_progress, cluster_progress) = (health.clone(), health.clone());

    // An instance is reconciled again when its ClusteredStream appears, changes or goes away.
    let instances_for_mapper = instances.clone();
    let instance_health = health.clone();
    let instance_loop = instance_controller
        .watches_stream(
            watch_objects(
                cluster_api.clone(),
                None,
                "clusteredstreams (for instances)",
                true,
                None,
                health.clone(),
                None,
            ),
            move |cluster: ClusteredStream| {
                let name = cluster.metadata.name.clone().unwrap_or_default();
                let ns = cluster.metadata.namespace.clone();
                instances_for_mapper
                    .state()
                    .into_iter()
                    .filter(move |i| i.spec.clustered_stream == name && i.metadata.namespace == ns)
                    .map(|i| kube::runtime::reflector::ObjectRef::from(i.as_ref()))
            },
        )
        .reconcile_on(probe_triggers)
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(
            |o, c| guarded("instance", o, c, instance::reconcile),
            instance::error_policy,
            ctx.clone(),
        )
        .for_each(|result| {
            let health = instance_progress.clone();
            async move {
                health.progressed("instance");
                if let Err(e) = result {
                    log_controller_error("instance", &e);
                }
            }
        })
        .map(move |()| instance_health.stopped("instance"));

    // A ClusteredStream is reconciled again whenever one of its instances appears, goes away or
    // changes in what the cluster reconciler reads (see `ClusterTriggers`); not on each refresh
    // of an instance's rendition detail.
    let cluster_health = health.clone();
    let cluster_loop = cluster_controller
        .reconcile_on(futures::stream::unfold(
            cluster_trigger_rx,
            |mut rx| async move { rx.recv().await.map(|cluster| (cluster, rx)) },
        ))
        .graceful_shutdown_on(stopped(stop_rx))
        .run(
            |o, c| guarded("cluster", o, c, cluster::reconcile),
            cluster::error_policy,
            ctx,
        )
        .for_each(|result| {
            let health = cluster_progress.clone();
            async move {
                health.progressed("cluster");
                if let Err(e) = result {
                    log_controller_error("cluster", &e);
                }
            }
        })
        .map(move |()| cluster_health.stopped("cluster"));

    tokio::join!(instance_loop, cluster_loop);
    // Nothing decides any more; the events already decided are sent (bounded), so that a
    // replica taking over next neither misses nor repeats them.
    if !notifier.shutdown(NOTIFIER_DRAIN).await {
        tracing::warn!(
            "SNS events were still being sent at shutdown; the changes they report stay owed in \
             the table and are announced by the next leader"
        );
    }
    if !events.events.shutdown(EVENTS_DRAIN).await {
        tracing::warn!("Kubernetes Events were still being sent at shutdown; those left are lost");
    }
    tracing::info!("controllers stopped");
}

/// Longest wait at shutdown for the SNS event being sent (and its delivery record).
const NOTIFIER_DRAIN: Duration = Duration::from_secs(2);
/// Longest wait at shutdown for the Kubernetes Events queued.
const EVENTS_DRAIN: Duration = Duration::from_secs(2);

/// A controller's own errors (its queue) are logged at WARN; a failed reconciliation was already
/// logged by its error policy, and its watches' errors by [`watch_objects`].
fn log_controller_error<E, Q>(
    controller: &'static str,
    error: &kube::runtime::controller::Error<E, Q>,
) where
    E: std::error::Error + 'static,
    Q: std::error::Error + 'static,
{
    match error {
        // An object a trigger named that does not exist (an instance naming a missing
        // ClusteredStream) is routine.
        kube::runtime::controller::Error::ReconcilerFailed(..)
        | kube::runtime::controller::Error::ObjectNotFound(..) => {
            tracing::debug!(controller, %error, "reconcile ended with an error")
        }
        _ => tracing::warn!(controller, %error, "controller error"),
    }
}

/// Writes `status` to an object's status subresource by server-side apply under `manager`.
/// Forced: each reconciler owns its own fields (conditions merge by type), so taking over a
/// field another manager of ours once wrote is intended. Counts the write.
pub(crate) async fn apply_status<K>(
    ctx: &Context,
    api: &Api<K>,
    name: &str,
    manager: &'static str,
    controller: &'static str,
    status: serde_json::Value,
) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let written = api
        .patch_status(
            name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    ctx.metrics
        .status_writes
        .get_or_create(&crate::metrics::ControllerLabels { controller })
        .inc();
    Ok(written)
}

/// Counts a condition's status flip in the metrics.
pub(crate) fn count_transition(ctx: &Context, kind: &'static str, condition: &str, status: &str) {
    ctx.metrics
        .condition_transitions
        .get_or_create(&crate::metrics::ConditionLabels {
            kind,
            condition: condition.to_owned(),
            status: status.to_owned(),
        })
        .inc();
}

/// Longest Event note the API server accepts is 1 kB; notes are cut to this many bytes.
pub const MAX_EVENT_NOTE_BYTES: usize = 1000;
/// kube's Recorder names an Event `<object name>.<16 hex digits>`, which is only a valid name
/// (at most 253 characters) for objects named with at most this many.
const RECORDER_MAX_OBJECT_NAME: usize = 253 - 17;

/// The name of an Event about the object `name`: kube's scheme, with the object's name cut short
/// enough for the result to be a valid object name (and its last label still ending in a letter
/// or digit).
pub fn event_name(name: &str, nanos: i128) -> String {
    let mut prefix = &name[..name.len().min(RECORDER_MAX_OBJECT_NAME)];
    prefix = prefix.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if prefix.is_empty() {
        prefix = OPERATOR_NAME;
    }
    format!("{prefix}.{:x}", nanos.max(0))
}

/// Records an Event; a failure to record is logged, never fatal to the reconciliation. The note
/// is cut to what the API server accepts, and an object whose name is too long for kube's
/// Recorder gets its Event under a shortened name (it still names the object in `regarding`).
/// The Event also goes to the dashboard's timeline of the ClusteredStream it concerns.
pub(crate) async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    event: kube::runtime::events::Event,
) {
    if let Some((cluster, instance)) = timeline_key(ctx, object) {
        let mut entry = crate::dashboard::timeline::Entry::new(
            jiff::Timestamp::now(),
            event.reason.clone(),
            event.note.clone().unwrap_or_default(),
        );
        if let Some(instance) = instance {
            entry = entry.instance(instance);
        }
        ctx.feed.record(&cluster, entry);
    }
    ctx.events.send(object.object_ref(&()), event).await;
}

/// The ClusteredStream (`namespace/name`) an Event about `object` belongs to, and the
/// StreamInstance's name when it is about one.
fn timeline_key<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
) -> Option<(String, Option<String>)> {
    let ns = object.meta().namespace.clone()?;
    let name = object.meta().name.clone()?;
    match K::kind(&()).as_ref() {
        "ClusteredStream" => Some((format!("{ns}/{name}"), None)),
        "StreamInstance" => {
            let instance = ctx
                .instances
                .get(&ObjectRef::<StreamInstance>::new(&name).within(&ns))?;
            Some((
                format!("{ns}/{}", instance.spec.clustered_stream),
                Some(name),
            ))
        }
        _ => None,
    }
}

/// Records an Event about `object` with the operator's recorder (what [`publish`] does, for
/// callers without a [`Context`]: the dashboard).
pub async fn record_event<K: Resource<DynamicType = ()>>(
    client: &Client,
    recorder: &Recorder,
    reporter: &Reporter,
    object: &K,
    event: kube::runtime::events::Event,
) {
    record_reference(client, recorder, reporter, object.object_ref(&()), event).await;
}

/// Records an Event about the object `reference` names (see [`record_event`]).
pub(crate) async fn record_reference(
    client: &Client,
    recorder: &Recorder,
    reporter: &Reporter,
    reference: k8s_openapi::api::core::v1::ObjectReference,
    mut event: kube::runtime::events::Event,
) {
    if let Some(note) = event.note.as_mut() {
        *note = instance::truncate(note, MAX_EVENT_NOTE_BYTES);
    }
    let long_name = reference
        .name
        .as_ref()
        .is_some_and(|n| n.len() > RECORDER_MAX_OBJECT_NAME);
    let result = if long_name {
        record_directly(client, reporter, &event, &reference).await
    } else {
        recorder.publish(&event, &reference).await
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, reason = %event.reason, "could not record Event");
    }
}

/// What kube's Recorder sends, under a name [`event_name`] shortens; without its series
/// aggregation (an Event for a 237-to-253-character name is rare enough).
async fn record_directly(
    client: &Client,
    reporter: &Reporter,
    event: &kube::runtime::events::Event,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
) -> Result<(), kube::Error> {
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    let now = jiff::Timestamp::now();
    let ns = reference
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let k8s = K8sEvent {
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        event_time: Some(MicroTime(now)),
        regarding: Some(reference.clone()),
        note: event.note.clone(),
        metadata: ObjectMeta {
            namespace: Some(ns.clone()),
            name: Some(event_name(
                reference.name.as_deref().unwrap_or_default(),
                now.as_nanosecond(),
            )),
            ..Default::default()
        },
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(
            reporter
                .instance
                .clone()
                .unwrap_or_else(|| reporter.controller.clone()),
        ),
        type_: Some(
            match event.type_ {
                kube::runtime::events::EventType::Normal => "Normal",
                kube::runtime::events::EventType::Warning => "Warning",
            }
            .into(),
        ),
        related: event.secondary.clone(),
        ..Default::default()
    };
    Api::<K8sEvent>::namespaced(client.clone(), &ns)
        .create(&kube::api::PostParams::default(), &k8s)
        .await
        .map(|_| ())
}

/// Delay before retrying a failed reconciliation.
pub(crate) const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);
/// Periodic re-reconciliation, a safety net for missed events.
pub(crate) const RESYNC_PERIOD: Duration = Duration::from_secs(300);

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;

    fn instance(
        name: &str,
        cluster: &str,
        uid: &str,
        open: Option<bool>,
        lag: Option<f64>,
    ) -> StreamInstance {
        let mut i: StreamInstance = serde_json::from_value(serde_json::json!({
            "apiVersion": "cvs.dev/v1alpha1", "kind": "StreamInstance",
            "metadata": {"name": name, "namespace": "tenant-a", "uid": uid},
            "spec": {
                "clusteredStream": cluster, "region": "us-east-1",
                "cloudfront": {"domain": format!("{name}.cloudfront.net")},
                "origin": {"url": "https://o.example.com/master.m3u8"},
                "distroOpen": true,
            },
        }))
        .unwrap();
        i.status = Some(crate::resources::StreamInstanceStatus {
            open,
            lag_seconds: lag,
            ..Default::default()
        });
        i
    }

    #[test]
    fn a_change_filter_lets_through_changes_and_new_objects() {
        let mut filter = ChangeFilter::<StreamInstance>::new(cluster::inputs_fingerprint);
        let east = |uid, open, lag| instance("east", "event", uid, open, lag);
        assert!(filter.admit(&east("u1", Some(true), None)), "first sight");
        assert!(
            !filter.admit(&east("u1", Some(true), Some(1.0))),
            "detail only"
        );
        assert!(filter.admit(&east("u1", Some(false), Some(1.0))), "closed");
        assert!(!filter.admit(&east("u1", Some(false), None)));
        // Re-created under the same name: another object.
        assert!(filter.admit(&east("u2", Some(false), None)));
        // After a deletion the same object is new again, and nothing is kept for it.
        filter.forget(&east("u2", Some(false), None));
        filter.forget(&east("u1", Some(false), None));
        assert!(filter.seen.is_empty());
        assert!(filter.admit(&east("u2", Some(false), None)));
    }

    #[test]
    fn a_cluster_is_triggered_by_its_instances_changes_not_by_their_detail() {
        use watcher::Event;
        let event = |c: &str| ObjectRef::<ClusteredStream>::new(c).within("tenant-a");
        let mut triggers = ClusterTriggers::new();
        let east = |open, lag| instance("east", "event", "u1", open, lag);
        assert_eq!(
            triggers.on(&Event::Apply(east(None, None))),
            [event("event")]
        );
        assert!(triggers.on(&Event::Apply(east(None, Some(0.5)))).is_empty());
        assert!(triggers.on(&Event::Apply(east(None, Some(2.0)))).is_empty());
        assert_eq!(
            triggers.on(&Event::Apply(east(Some(true), Some(2.0)))),
            [event("event")]
        );
        assert_eq!(
            triggers.on(&Event::Delete(east(Some(true), None))),
            [event("event")]
        );

        // A relist triggers each ClusteredStream it lists once, when it is complete (the
        // cache swaps it in then), and starts the filter afresh: what was kept for an
        // instance deleted while the watch was down is dropped.
        let gone = instance("gone", "other", "u9", Some(true), None);
        assert_eq!(triggers.on(&Event::Apply(gone)), [event("other")]);
        assert!(triggers.on(&Event::Init).is_empty());
        assert!(triggers.changes.seen.is_empty());
        for i in [
            instance("east", "event", "u1", Some(true), None),
            instance("west", "event", "u2", Some(true), None),
            instance("north", "third", "u3", None, None),
        ] {
            assert!(triggers.on(&Event::InitApply(i)).is_empty());
        }
        let relisted: std::collections::HashSet<_> =
            triggers.on(&Event::InitDone).into_iter().collect();
        assert_eq!(relisted, [event("event"), event("third")].into());
        assert_eq!(triggers.changes.seen.len(), 3);
        // The relisted state is what later events are compared with.
        assert!(
            triggers
                .on(&Event::Apply(instance(
                    "west",
                    "event",
                    "u2",
                    Some(true),
                    Some(1.0)
                )))
                .is_empty()
        );
    }

    /// A reconciliation that panics is an error the controller retries, as kube-runtime runs
    /// it; without the guard the panic unwinds through the controller's stream (and, in the
    /// operator, ends the process).
    #[tokio::test]
    async fn a_panicking_reconciliation_is_retried_and_the_controller_goes_on() {
        use k8s_openapi::api::core::v1::ConfigMap;
        use std::sync::atomic::{AtomicU32, Ordering};
        let object = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("poison".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let (reader, mut writer) = kube::runtime::reflector::store::<ConfigMap>();
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(object.clone()));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let trigger = futures::stream::iter([Ok(object)]).chain(futures::stream::pending());
        let calls = Arc::new(AtomicU32::new(0));
        let results: Vec<_> = Controller::for_stream(trigger, reader)
            .run(
                |_object, calls: Arc<AtomicU32>| async move {
                    catch_panic(async move {
                        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                            let versions: Vec<u64> = vec![u64::MAX];
                            let _ = versions[0] + 1; // overflows: panics in a debug build
                            panic!("version overflow");
                        }
                        Ok(Action::await_change())
                    })
                    .await
                },
                |_, _: &Error, _| Action::requeue(Duration::from_millis(20)),
                calls.clone(),
            )
            .take(2)
            .collect()
            .await;
        match &results[0] {
            Err(kube::runtime::controller::Error::ReconcilerFailed(Error::Panicked(m), _)) => {
                assert!(m.contains("overflow"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert!(results[1].is_ok(), "{:?}", results[1]);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// A Context whose API server address answers nothing.
    fn test_context() -> Arc<Context> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client =
            Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap())).unwrap();
        let reporter = Reporter {
            controller: OPERATOR_NAME.into(),
            instance: None,
        };
        let metrics = Arc::new(Metrics::default());
        let (probes, _) =
            ProbeEngine::new(crate::probe::EngineSettings::default(), metrics.clone()).unwrap();
        let aws = aws_config::SdkConfig::builder().build();
        Arc::new(Context {
            client: client.clone(),
            recorder: Recorder::new(client.clone(), reporter.clone()),
            reporter: reporter.clone(),
            metrics: metrics.clone(),
            instances: kube::runtime::reflector::store().0,
            clusters: kube::runtime::reflector::store().0,
            probes: Arc::new(probes),
            detail_writes: Default::default(),
            detail_refresh: Duration::from_secs(30),
            detail_slots: tokio::sync::Semaphore::new(detail_slots(16)),
            verdict_writes: Default::default(),
            written_instances: Default::default(),
            written_clusters: Default::default(),
            cluster_triggers: tokio::sync::mpsc::unbounded_channel().0,
            notifier: Notifier::start(aws.clone(), metrics.clone()),
            aws,
            tables: Default::default(),
            items: Default::default(),
            swept: Default::default(),
            unclaimed: Default::default(),
            health: Health::default(),
            publisher: Arc::new(
                publish::Publisher::new(
                    publish::PublishSettings::default(),
                    aws_config::SdkConfig::builder().build(),
                    Default::default(),
                )
                .unwrap(),
            ),
            secrets: Default::default(),
            tenant_policy: Default::default(),
            namespaces: Default::default(),
            feed: Default::default(),
            events: events::EventQueue::start(
                client.clone(),
                Recorder::new(client, reporter.clone()),
                reporter,
                metrics,
            ),
        })
    }

    #[tokio::test]
    async fn what_is_kept_for_an_instance_goes_with_it() {
        let ctx = test_context();
        let key = |name: &str| InstanceKey {
            namespace: "ns".into(),
            name: name.into(),
        };
        for name in ["kept", "deleted"] {
            ctx.detail_writes
                .lock()
                .unwrap()
                .insert(key(name), std::time::Instant::now());
        }
        ctx.forget_instances_except(|k| k.name == "kept");
        let left: Vec<_> = ctx.detail_writes.lock().unwrap().keys().cloned().collect();
        assert_eq!(left, vec![key("kept")]);
    }

    #[tokio::test]
    async fn a_guarded_panic_is_an_error_and_leaves_no_reconciliation_in_flight() {
        let ctx = test_context();
        let object = Arc::new(StreamInstance::new(
            "poison",
            serde_json::from_value(serde_json::json!({
                "clusteredStream": "e", "region": "us-east-1",
                "cloudfront": {"domain": "d.cloudfront.net"},
                "origin": {"url": "https://o.example.com/m.m3u8"}
            }))
            .unwrap(),
        ));
        let result = guarded("instance", object, ctx.clone(), |_, _| async {
            panic!("index out of bounds")
        })
        .await;
        assert!(
            matches!(&result, Err(Error::Panicked(m)) if m.contains("index out of bounds")),
            "{result:?}"
        );
        assert_eq!(result.unwrap_err().kind(), "panic");
        assert_eq!(
            ctx.health
                .liveness(std::time::Instant::now() + health::STUCK_RECONCILE * 2),
            Ok(())
        );
    }

    #[test]
    fn event_names_stay_valid_for_the_longest_object_names() {
        let longest = format!("{}.b-c", "a".repeat(249));
        let name = event_name(&longest, 0x1234_5678_9abc_def0);
        assert!(name.len() <= 253, "{}", name.len());
        assert!(name.ends_with(".123456789abcdef0"), "{name}");
        // A cut that ends in '-' or '.' would not be a valid name.
        let cut = format!("{}-{}", "a".repeat(235), "b".repeat(17));
        assert!(
            !event_name(&cut, 1).contains("-."),
            "{}",
            event_name(&cut, 1)
        );
        assert_eq!(event_name("short", 255), "short.ff");
    }

    /// An API server that knows nothing of cvs.dev answers 404 for the list; the operator must
    /// name the missing CRD rather than retry forever. (The real-cluster path is covered by e2e.)
    #[tokio::test]
    async fn missing_crds_are_named() {
        let not_found = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "the server could not find the requested resource",
            "reason": "NotFound", "code": 404
        })
        .to_string();
        let app = Router::new().fallback(get(
            move || async move { (StatusCode::NOT_FOUND, not_found) },
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let err = check_crds(&client, None).await.unwrap_err();
        assert!(
            matches!(err, StartError::CrdMissing(ref crd) if crd == "clusteredstreams.cvs.dev")
        );
        assert!(err.to_string().contains("kubectl apply -f crds/"), "{err}");
    }

    #[tokio::test]
    async fn unreachable_api_server_is_not_mistaken_for_missing_crds() {
        // Bind then drop, so the port is (almost certainly) closed.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        let client = Client::try_from(config).unwrap();
        assert!(matches!(
            check_crds(&client, None).await,
            Err(StartError::Unreachable(_))
        ));
    }
}
