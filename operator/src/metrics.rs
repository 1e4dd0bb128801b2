//! Prometheus metrics, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `verdict`, `description` or `detail` (see `controller::instance::StatusWrite`).
    pub write: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub kind: &'static str,
    pub condition: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthLabels {
    pub to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub playlist: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlaylistLabels {
    pub playlist: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    pub namespace: String,
    pub instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    /// `instance` (one per probed StreamInstance) or `rendition` (one per media playlist).
    pub kind: &'static str,
}

/// Every metric the operator exports.
pub struct Metrics {
    pub registry: Registry,
    pub reconciliations: Family<ControllerLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    pub status_writes: Family<ControllerLabels, Counter>,
    /// Status writes of an instance that are not a verdict (rendition detail, or a changed
    /// description) put off because every slot for them was taken or a verdict was being
    /// written (the API server slow, the operator busy, or a region failing): verdicts go
    /// first.
    pub detail_writes_deferred: Counter,
    /// Kubernetes Events waiting to be sent (see `controller::events`).
    pub events_queued: Gauge,
    /// Instance status writes by the instance reconciler, by what they carry.
    pub instance_status_writes: Family<WriteLabels, Counter>,
    /// From an instance's verdict written (`healthChangedAt`) to its ClusteredStream's status
    /// recording it.
    pub verdict_to_cluster: Histogram,
    /// Writes of this operator that stopped standing in for the cached object because the cache
    /// had not reached them within `controller::written::KEEP_FOR`, by controller.
    pub written_expired: Family<ControllerLabels, Counter>,
    pub condition_transitions: Family<ConditionLabels, Counter>,
    pub open_instances: Gauge,
    pub probe_requests: Family<ProbeLabels, Counter>,
    pub probe_duration: Family<PlaylistLabels, Histogram>,
    pub staleness_age: Histogram,
    pub probed_playlists: Gauge,
    pub stale_renditions: Gauge,
    pub health_transitions: Family<HealthLabels, Counter>,
    /// Time a probe waited for the operator's own concurrency limits before its request.
    pub probe_queue_wait: Histogram,
    /// Probes waiting for the operator's own concurrency limits right now.
    pub probes_queued: Gauge,
    /// Staleness deadlines that passed while the probe waited for the operator's own limits
    /// (not declared stale: the operator, not the origin, was late).
    pub probe_starved: Counter,
    /// Master playlists read again in the background (behind the media playlists at their
    /// host) that waited a whole rediscover interval and were then raised in their host's queue.
    pub master_reads_promoted: Counter,
    /// Playlist reads (media or master) of instances already judged unhealthy, asked for behind
    /// the other instances at their host, that waited their bound and were then raised in their
    /// host's queue.
    pub judged_polls_promoted: Counter,
    /// LL-HLS renditions that left blocking playlist reload because the server misbehaved.
    pub probe_blocking_fallbacks: Counter,
    /// Rendition probe tasks that ended unexpectedly (a panic) and were restarted.
    pub probe_task_restarts: Counter,
    /// Probe tasks alive right now, by kind (`instance`, `rendition`): counted from the task's
    /// start to the moment its future is dropped, so a task that outlives its instance shows.
    pub probe_tasks: Family<TaskLabels, Gauge>,
    /// Second requests sent to confirm a failed, hanging or suspicious answer, by playlist and
    /// outcome (`recovered`: the glitch was absorbed; `confirmed`: the failure counts; `hedged`:
    /// sent beside a slow first request, which then answered well first).
    pub probe_retries: Family<ProbeLabels, Counter>,
    /// Segment availability checks (HEAD of the newest segment or the init segment), by kind
    /// (`segment`, `init`) and outcome (`ok` or the failure kind).
    pub segment_checks: Family<ProbeLabels, Counter>,
    pub state_writes: Counter,
    pub state_errors: Counter,
    pub sns_published: Counter,
    pub sns_failures: Counter,
    pub sns_dropped: Counter,
    pub sns_replayed: Counter,
    pub items_retired: Counter,
    /// 1 while this process leads (holds the leader election Lease, or runs without election).
    pub leader: Gauge,
    /// How far each compared instance runs behind the leading instance of its ClusteredStream,
    /// in seconds; an instance not compared (stale, alone, no common clock) has no series.
    pub instance_lag: Family<InstanceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// The allocator's figures, refreshed at each scrape; only in a process that allocates
    /// through jemalloc ([`Metrics::with_heap_stats`]).
    heap: Option<HeapGauges>,
}

/// jemalloc's statistics as gauges (see [`crate::heap`]).
struct HeapGauges {
    allocated: Gauge,
    active: Gauge,
    resident: Gauge,
    retained: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cvs");
        let reconciliations = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "reconciliations",
            "Reconciliations run",
            reconciliations.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by error kind",
            reconcile_errors.clone(),
        );
        let reconcile_duration =
            Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            });
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation",
            reconcile_duration.clone(),
        );
        let detail_writes_deferred = Counter::default();
        registry.register(
            "status_detail_writes_deferred",
            "Status writes of an instance that are not a verdict (rendition detail, a changed message or rendition list) put off because every slot for them was taken or a verdict was being written (verdicts go first)",
            detail_writes_deferred.clone(),
        );
        let events_queued = Gauge::default();
        registry.register(
            "events_queued",
            "Kubernetes Events waiting to be sent; a few are sent at once, after the status writes that caused them",
            events_queued.clone(),
        );
        let instance_status_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "instance_status_writes",
            "StreamInstance status writes by the instance reconciler, by what they carry: a verdict (written at once), a description or rendition detail (put off while verdicts are written)",
            instance_status_writes.clone(),
        );
        let verdict_to_cluster = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        registry.register(
            "verdict_to_cluster_seconds",
            "From an instance's verdict being written (healthChangedAt) to its ClusteredStream's status recording it (the state table is written in the same reconciliation)",
            verdict_to_cluster.clone(),
        );
        let written_expired = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "written_expired",
            "Writes of this operator that the controller's cache had not brought back within a minute, after which the cache was trusted again (a watch that far behind, or etcd restored from an older snapshot)",
            written_expired.clone(),
        );
        let status_writes = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "status_writes",
            "Status patches sent to the API server",
            status_writes.clone(),
        );
        let condition_transitions = Family::<ConditionLabels, Counter>::default();
        registry.register(
            "condition_transitions",
            "Condition status flips, by kind, condition and new status",
            condition_transitions.clone(),
        );
        let open_instances = Gauge::default();
        registry.register(
            "open_instances",
            "Instances effectively open, summed over every ClusteredStream",
            open_instances.clone(),
        );
        let probe_requests = Family::<ProbeLabels, Counter>::default();
        registry.register(
            "probe_requests",
            "Playlist fetches, by playlist kind and outcome (ok or the failure kind)",
            probe_requests.clone(),
        );
        let probe_duration = Family::<PlaylistLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "probe_duration_seconds",
            "Time to fetch and parse one playlist",
            probe_duration.clone(),
        );
        let staleness_age = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        registry.register(
            "staleness_age_seconds",
            "Age of a media playlist's newest segment (as the prober saw it) at each poll",
            staleness_age.clone(),
        );
        let probed_playlists = Gauge::default();
        registry.register(
            "probed_playlists",
            "Media playlists being probed",
            probed_playlists.clone(),
        );
        let stale_renditions = Gauge::default();
        registry.register(
            "stale_renditions",
            "Media playlists currently stale",
            stale_renditions.clone(),
        );
        let health_transitions = Family::<HealthLabels, Counter>::default();
        registry.register(
            "health_transitions",
            "Instance health flips, by new state",
            health_transitions.clone(),
        );
        let probe_queue_wait = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "probe_queue_wait_seconds",
            "Time a probe waited for the operator's own concurrency limits (global, per host, per instance)",
            probe_queue_wait.clone(),
        );
        let probes_queued = Gauge::default();
        registry.register(
            "probes_queued",
            "Probes waiting for the operator's own concurrency limits",
            probes_queued.clone(),
        );
        let master_reads_promoted = Counter::default();
        registry.register(
            "probe_master_reads_promoted",
            "Master playlists read again behind the media playlists at their host that waited a rediscover interval and were then raised in their host's queue",
            master_reads_promoted.clone(),
        );
        let judged_polls_promoted = Counter::default();
        registry.register(
            "probe_judged_polls_promoted",
            "Playlist reads (media or master) of instances already judged unhealthy, waiting behind the other instances at their host, that waited one target duration and were then raised in their host's queue",
            judged_polls_promoted.clone(),
        );
        let probe_starved = Counter::default();
        registry.register(
            "probe_starved",
            "Staleness deadlines that passed while a probe waited for the operator's own concurrency limits (not counted as stale)",
            probe_starved.clone(),
        );
        let probe_blocking_fallbacks = Counter::default();
        registry.register(
            "probe_blocking_fallbacks",
            "LL-HLS renditions that fell back from blocking playlist reload to plain polling because the server misbehaved (answered early, refused the parameters, or held requests past the part deadline or the RFC limit)",
            probe_blocking_fallbacks.clone(),
        );
        let probe_task_restarts = Counter::default();
        registry.register(
            "probe_task_restarts",
            "Rendition probe tasks that ended unexpectedly and were restarted",
            probe_task_restarts.clone(),
        );
        let probe_tasks = Family::<TaskLabels, Gauge>::default();
        registry.register(
            "probe_tasks",
            "Probe tasks alive, by kind (instance: one per probed StreamInstance; rendition: one per media playlist)",
            probe_tasks.clone(),
        );
        let probe_retries = Family::<ProbeLabels, Counter>::default();
        registry.register(
            "probe_retries",
            "Second requests sent to confirm a failed, hanging or suspicious answer, by outcome (recovered, confirmed, hedged)",
            probe_retries.clone(),
        );
        let segment_checks = Family::<ProbeLabels, Counter>::default();
        registry.register(
            "segment_checks",
            "Checks that the newest segment (or the init segment) is served, by kind and outcome",
            segment_checks.clone(),
        );
        let state_writes = Counter::default();
        registry.register(
            "state_writes",
            "State-table items written",
            state_writes.clone(),
        );
        let state_errors = Counter::default();
        registry.register(
            "state_errors",
            "State-table requests that failed",
            state_errors.clone(),
        );
        let sns_published = Counter::default();
        registry.register(
            "sns_published",
            "Events published to SNS",
            sns_published.clone(),
        );
        let sns_failures = Counter::default();
        registry.register(
            "sns_failures",
            "SNS publish attempts that failed (each is retried)",
            sns_failures.clone(),
        );
        let sns_dropped = Counter::default();
        registry.register(
            "sns_dropped",
            "Events dropped because the SNS queue was full",
            sns_dropped.clone(),
        );
        let sns_replayed = Counter::default();
        registry.register(
            "sns_replayed",
            "Events published again after a restart because their delivery was never recorded",
            sns_replayed.clone(),
        );
        let items_retired = Counter::default();
        registry.register(
            "state_items_retired",
            "State-table items closed because their StreamInstance was deleted",
            items_retired.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this process is the leader (the only replica that probes and acts), else 0",
            leader.clone(),
        );
        let instance_lag =
            Family::<InstanceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "instance_lag_seconds",
            "How far the instance runs behind the leading instance of its ClusteredStream",
            instance_lag.clone(),
        );
        Self {
            heap: None,
            leader,
            instance_lag,
            sns_replayed,
            items_retired,
            state_writes,
            state_errors,
            sns_published,
            sns_failures,
            sns_dropped,
            registry,
            probe_requests,
            probe_duration,
            staleness_age,
            probed_playlists,
            stale_renditions,
            health_transitions,
            probe_queue_wait,
            probes_queued,
            probe_starved,
            probe_blocking_fallbacks,
            probe_task_restarts,
            master_reads_promoted,
            judged_polls_promoted,
            detail_writes_deferred,
            events_queued,
            instance_status_writes,
            verdict_to_cluster,
            written_expired,
            probe_tasks,
            probe_retries,
            segment_checks,
            reconciliations,
            reconcile_errors,
            reconcile_duration,
            status_writes,
            condition_transitions,
            open_instances,
        }
    }
}

impl Metrics {
    /// Adds `cvs_heap_*_bytes`, read from jemalloc at each scrape. Only for a process whose
    /// global allocator is jemalloc: anywhere else its figures would describe an idle heap.
    pub fn with_heap_stats(mut self) -> Self {
        let gauges = HeapGauges {
            allocated: Gauge::default(),
            active: Gauge::default(),
            resident: Gauge::default(),
            retained: Gauge::default(),
        };
        for (name, help, gauge) in [
            (
                "heap_allocated_bytes",
                "Bytes the operator holds on its heap (jemalloc stats.allocated): grows only with a leak or more work",
                &gauges.allocated,
            ),
            (
                "heap_active_bytes",
                "Bytes in the heap's pages that hold at least one live block (jemalloc stats.active)",
                &gauges.active,
            ),
            (
                "heap_resident_bytes",
                "Bytes of the heap resident in RAM, allocator metadata included (jemalloc stats.resident)",
                &gauges.resident,
            ),
            (
                "heap_retained_bytes",
                "Bytes of address space the allocator keeps mapped after returning the pages (jemalloc stats.retained)",
                &gauges.retained,
            ),
        ] {
            self.registry.register(name, help, gauge.clone());
        }
        self.heap = Some(gauges);
        self
    }

    pub fn observe_reconcile(&self, controller: &'static str, took: Duration) {
        let labels = ControllerLabels { controller };
        self.reconciliations.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn observe_error(&self, controller: &'static str, error: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels { controller, error })
            .inc();
    }

    pub fn observe_probe(
        &self,
        playlist: &'static str,
        took: Duration,
        failure: Option<&crate::probe::decision::Failure>,
    ) {
        let outcome = failure.map(|f| f.kind()).unwrap_or("ok");
        self.probe_requests
            .get_or_create(&ProbeLabels { playlist, outcome })
            .inc();
        self.probe_duration
            .get_or_create(&PlaylistLabels { playlist })
            .observe(took.as_secs_f64());
    }

    /// Counts the second request of a confirmed fetch, if one was sent.
    pub fn observe_retry(&self, playlist: &'static str, attempts: crate::probe::confirm::Attempts) {
        if attempts.retried {
            let outcome = if attempts.hedged {
                "hedged"
            } else if attempts.recovered {
                "recovered"
            } else {
                "confirmed"
            };
            self.probe_retries
                .get_or_create(&ProbeLabels { playlist, outcome })
                .inc();
        }
    }

    /// Counts a live probe task of `kind` until the returned guard is dropped.
    pub fn probe_task(&self, kind: &'static str) -> TaskGuard {
        let gauge = self.probe_tasks.get_or_create(&TaskLabels { kind }).clone();
        gauge.inc();
        TaskGuard(gauge)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        if let Some(heap) = &self.heap {
            match crate::heap::jemalloc_stats() {
                Ok(stats) => {
                    let set = |gauge: &Gauge, bytes: u64| {
                        gauge.set(i64::try_from(bytes).unwrap_or(i64::MAX));
                    };
                    set(&heap.allocated, stats.allocated);
                    set(&heap.active, stats.active);
                    set(&heap.resident, stats.resident);
                    set(&heap.retained, stats.retained);
                }
                // The gauges keep their last figures; a scrape is no place to fail.
                Err(e) => tracing::debug!(error = %e, "reading jemalloc's statistics failed"),
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One live task in `cvs_probe_tasks`; dropping it (the task's future ended or was aborted)
/// takes it off.
pub struct TaskGuard(Gauge);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
