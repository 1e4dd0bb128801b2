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
pub mod instance;
pub mod publish;

use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::probe::{InstanceKey, ProbeEngine};
use crate::resources::{ClusteredStream, StreamInstance};
use crate::state::StateTable;
use futures::{FutureExt, StreamExt};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, watcher};
use kube::{Client, Resource};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
}

impl Error {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Serialize(_) => "serialize",
            Error::MissingNamespace(_) => "missing_namespace",
        }
    }
}

/// What every reconciliation can reach.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
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
    pub notifier: Notifier,
    /// The merged master playlist and steering manifest publication stage.
    pub publisher: Arc<publish::Publisher>,
}

/// The state table (name, region) and the member domains a ClusteredStream was last swept with.
pub type Swept = (String, String, std::collections::BTreeSet<String>);

impl Context {
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
    /// Publishes the merged master playlist and the steering manifest.
    pub publisher: Arc<publish::Publisher>,
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

/// Readiness: true once both controllers' caches have synced.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
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

/// Runs both controllers until `shutdown` resolves; in-flight reconciliations finish first.
pub async fn run(
    wiring: Wiring,
    readiness: Readiness,
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
        publisher,
    } = wiring;
    let reporter = Reporter {
        controller: OPERATOR_NAME.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client.clone(), reporter);
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
    let instance_controller =
        Controller::new(instance_api.clone(), watcher::Config::default()).with_config(config());
    let cluster_controller =
        Controller::new(cluster_api.clone(), watcher::Config::default()).with_config(config());
    let instances = instance_controller.store();
    let clusters = cluster_controller.store();

    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder,
        metrics: metrics.clone(),
        instances: instances.clone(),
        clusters: clusters.clone(),
        probes: probes.clone(),
        detail_writes: Default::default(),
        detail_refresh,
        notifier: Notifier::start(aws.clone(), metrics.clone()),
        aws,
        tables: Default::default(),
        items: Default::default(),
        swept: Default::default(),
        publisher,
    });

    // Stop probing instances that are gone. Deletions need no finalizer: probes are in memory.
    {
        let (instances, probes) = (instances.clone(), probes.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                if instances.wait_until_ready().now_or_never().is_none() {
                    continue;
                }
                probes.retain(|k| {
                    instances
                        .get(&ObjectRef::new(&k.name).within(&k.namespace))
                        .is_some()
                });
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
        let (instances, clusters, readiness) =
            (instances.clone(), clusters.clone(), readiness.clone());
        tokio::spawn(async move {
            wait_synced(&instances).await;
            wait_synced(&clusters).await;
            readiness.set();
            tracing::info!("caches synced; operator is ready");
        });
    }

    // An instance is reconciled again when its ClusteredStream appears, changes or goes away.
    let instances_for_mapper = instances.clone();
    let instance_loop = instance_controller
        .watches(
            cluster_api.clone(),
            watcher::Config::default(),
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
        .run(instance::reconcile, instance::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "instance reconcile ended with an error");
            }
        });

    // A ClusteredStream is reconciled again whenever one of its instances changes.
    let cluster_loop = cluster_controller
        .watches(
            instance_api,
            watcher::Config::default(),
            |instance: StreamInstance| {
                Some(
                    kube::runtime::reflector::ObjectRef::new(&instance.spec.clustered_stream)
                        .within(instance.metadata.namespace.as_deref().unwrap_or("default")),
                )
            },
        )
        .graceful_shutdown_on(stopped(stop_rx))
        .run(cluster::reconcile, cluster::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "cluster reconcile ended with an error");
            }
        });

    tokio::join!(instance_loop, cluster_loop);
    tracing::info!("controllers stopped");
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
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    ctx.metrics
        .status_writes
        .get_or_create(&crate::metrics::ControllerLabels { controller })
        .inc();
    Ok(())
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

/// Records an Event; a failure to record is logged, never fatal to the reconciliation.
pub(crate) async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    event: kube::runtime::events::Event,
) {
    let reference = object.object_ref(&());
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(error = %e, reason = %event.reason, "could not record Event");
    }
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
