//! Reconciles one StreamInstance: its own observations, and a clear condition when the
//! ClusteredStream it names does not exist.

use super::{
    Context, Error, OPERATOR_NAME, RETRY_AFTER_ERROR, apply_status, count_transition, publish,
};
use crate::conditions::{self, Desired, Status};
use crate::probe::credentials::{CredentialsError, OriginCredentials};
use crate::probe::decision::Policy;
use crate::probe::engine::LagTarget;
use crate::probe::engine::RenditionHealth;
use crate::probe::{InstanceHealth, InstanceKey, ProbeTarget};
use crate::resources::{RenditionStatus, StreamInstance, StreamInstanceStatus};
use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use reqwest::Url;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

/// Field manager for the fields this reconciler owns.
pub const FIELD_MANAGER: &str = "cvs-operator/instance";
pub(crate) const CONTROLLER: &str = "instance";

/// Most renditions listed in a StreamInstance's status. Beyond it the list keeps the stale
/// renditions first (then fresh ones, each group by URI) and `renditionsTotal`/`renditionsStale`
/// count them all: a master with thousands of variants must not make a status patch larger than
/// the API server accepts.
pub const MAX_STATUS_RENDITIONS: usize = 50;
/// Longest rendition URI written to status, in bytes; longer ones are cut and end in `…`.
pub const MAX_STATUS_URI_BYTES: usize = 512;
/// Longest rendition error or condition message written to status, in bytes.
pub const MAX_STATUS_TEXT_BYTES: usize = 1024;
/// How soon an instance whose origin credentials cannot be used is looked at again.
const CREDENTIALS_RETRY: Duration = Duration::from_secs(10);

/// The part of a StreamInstance's status this reconciler decides, before timestamps.
#[derive(Clone, Debug, PartialEq)]
pub struct InstancePlan {
    pub conditions: Vec<Desired>,
    /// Conditions recorded by an earlier verdict and kept as they are (status, reason, message
    /// and `lastTransitionTime`) because no new verdict exists yet, for example after a restart.
    pub kept: Vec<Condition>,
    pub renditions: Vec<RenditionStatus>,
    pub renditions_total: Option<u32>,
    pub renditions_stale: Option<u32>,
    /// `healthChangedAt` to write: the recorded value unless the verdict flipped.
    pub health_changed_at: Option<String>,
    /// `lagSeconds` to write (see [`add_lag`]).
    pub lag_seconds: Option<f64>,
}

/// `healthChangedAt` format: RFC 3339, UTC, milliseconds.
pub fn format_millis(t: jiff::Timestamp) -> String {
    format!("{:.3}", t)
}

/// The verdict recorded in status: the `Healthy` condition when it is True or False.
pub fn recorded_verdict(status: &StreamInstanceStatus) -> Option<bool> {
    match conditions::find(&status.conditions, "Healthy")?
        .status
        .as_str()
    {
        "True" => Some(true),
        "False" => Some(false),
        _ => None,
    }
}

/// `healthChangedAt` after this round: moved to `at` only when the planned verdict differs from
/// the recorded one (or none was recorded); otherwise the recorded value, filled in from the
/// `Healthy` condition's `lastTransitionTime` for a status written before the field existed.
pub fn health_changed_at(
    recorded: &StreamInstanceStatus,
    planned: Option<bool>,
    at: jiff::Timestamp,
) -> Option<String> {
    let before = recorded_verdict(recorded);
    match planned {
        Some(p) if before != Some(p) => Some(format_millis(at)),
        Some(_) => recorded.health_changed_at.clone().or_else(|| {
            conditions::find(&recorded.conditions, "Healthy")
                .map(|c| format_millis(c.last_transition_time.0))
        }),
        None => recorded.health_changed_at.clone(),
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, ending in `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// What of the probe's renditions goes into status: at most [`MAX_STATUS_RENDITIONS`], stale
/// ones first, strings bounded, every number within the API's int64 range; with the counts of
/// all renditions and of the stale ones.
pub fn bounded_renditions(all: &[RenditionHealth]) -> (Vec<RenditionStatus>, u32, u32) {
    let total = u32::try_from(all.len()).unwrap_or(u32::MAX);
    let stale = u32::try_from(all.iter().filter(|r| !r.fresh).count()).unwrap_or(u32::MAX);
    let mut order: Vec<&RenditionHealth> = all.iter().collect();
    order.sort_by(|a, b| a.fresh.cmp(&b.fresh).then_with(|| a.uri.cmp(&b.uri)));
    let mut seen = std::collections::HashSet::new();
    let shown = order
        .into_iter()
        .map(rendition_status)
        // A URI cut short can collide with another one; the list is keyed by URI.
        .filter(|r| seen.insert(r.uri.clone()))
        .take(MAX_STATUS_RENDITIONS)
        .collect();
    (shown, total, stale)
}

/// Pure stage: the instance's own conditions and rendition detail, from the latest probe result
/// and what the status recorded before. Without a verdict for this instance (after a restart,
/// until the probe engine has judged it again) the recorded verdict stands; only an instance
/// never judged is `AwaitingProbe`.
pub fn plan(
    cluster_exists: bool,
    clustered_stream: &str,
    origin: Result<(), String>,
    health: Option<&InstanceHealth>,
    recorded: &StreamInstanceStatus,
    now: jiff::Timestamp,
) -> InstancePlan {
    let mut kept = Vec::new();
    let mut renditions = Vec::new();
    let (mut renditions_total, mut renditions_stale) = (None, None);
    let mut planned = None;
    let mut verdict_at = now;
    let verdict = health.and_then(|h| h.verdict.healthy.map(|healthy| (h, healthy)));
    let mut conditions = match (origin, verdict) {
        (Err(e), _) => {
            let msg = truncate(
                &format!("spec.origin.url cannot be probed: {e}"),
                MAX_STATUS_TEXT_BYTES,
            );
            planned = Some(false);
            vec![
                Desired::new("Healthy", Status::False, "InvalidOriginUrl", msg.clone()),
                Desired::new("Stale", Status::True, "InvalidOriginUrl", msg),
            ]
        }
        // No verdict: none yet (after a restart), or the probe has not judged the instance yet
        // (a partial picture, no evidence of freshness yet). Either way, no new verdict.
        (Ok(()), None) => {
            let healthy = conditions::find(&recorded.conditions, "Healthy");
            let judged = recorded_verdict(recorded).is_some()
                && healthy.is_some_and(|c| c.reason != "InvalidOriginUrl");
            if judged {
                kept.extend(healthy.cloned());
                kept.extend(conditions::find(&recorded.conditions, "Stale").cloned());
                renditions = recorded.renditions.clone();
                renditions_total = recorded.renditions_total;
                renditions_stale = recorded.renditions_stale;
                Vec::new()
            } else {
                let (reason, message) = match health {
                    Some(h) => {
                        let (shown, total, stale) = bounded_renditions(&h.renditions);
                        renditions = shown;
                        renditions_total = Some(total);
                        renditions_stale = Some(stale);
                        (
                            h.verdict.reason,
                            truncate(&h.verdict.message, MAX_STATUS_TEXT_BYTES),
                        )
                    }
                    None => (
                        "AwaitingProbe",
                        "no probe result for this instance yet".to_owned(),
                    ),
                };
                vec![
                    Desired::new("Healthy", Status::Unknown, reason, message.clone()),
                    Desired::new("Stale", Status::Unknown, reason, message),
                ]
            }
        }
        (Ok(()), Some((h, healthy))) => {
            let v = &h.verdict;
            let message = truncate(&v.message, MAX_STATUS_TEXT_BYTES);
            planned = Some(healthy);
            verdict_at = h.at;
            let (shown, total, stale) = bounded_renditions(&h.renditions);
            renditions = shown;
            renditions_total = Some(total);
            renditions_stale = Some(stale);
            vec![
                Desired::new(
                    "Healthy",
                    Status::from_bool(healthy),
                    v.reason,
                    message.clone(),
                ),
                Desired::new("Stale", Status::from_bool(!healthy), v.reason, message),
            ]
        }
    };
    // `Bound`, not `Open`: the cluster reconciler owns `Open`, and two field managers sharing
    // one condition can leave it half-owned (and invalid) when one of them lets go of it.
    conditions.push(if cluster_exists {
        Desired::new(
            "Bound",
            Status::True,
            "ClusteredStreamFound",
            format!("part of ClusteredStream {clustered_stream:?}"),
        )
    } else {
        Desired::new(
            "Bound",
            Status::False,
            "ClusteredStreamNotFound",
            format!(
                "ClusteredStream {clustered_stream:?} does not exist in this namespace; the \
                 instance is not served"
            ),
        )
    });
    InstancePlan {
        conditions,
        kept,
        renditions,
        renditions_total,
        renditions_stale,
        health_changed_at: health_changed_at(recorded, planned, verdict_at),
        lag_seconds: None,
    }
}

/// Pure stage: the `Lagging` condition and `lagSeconds`, from the probe's lag verdict (see
/// [`crate::decide::lag`]). With `unhealthy` (`spec.health.lag.unhealthy`), a lagging instance
/// whose playlists are fresh is `Healthy=False` with reason `Lagging`, so it goes through
/// everything an unhealthy verdict does (failover, minOpen, the state table, SNS). While a
/// recorded verdict stands (no new one yet), the recorded lag stands with it.
pub fn add_lag(
    plan: &mut InstancePlan,
    health: Option<&InstanceHealth>,
    recorded: &StreamInstanceStatus,
    unhealthy: bool,
) {
    if plan.kept.iter().any(|c| c.type_ == "Healthy") {
        plan.kept
            .extend(conditions::find(&recorded.conditions, "Lagging").cloned());
        plan.lag_seconds = recorded.lag_seconds;
        return;
    }
    let lag = health.and_then(|h| h.lag.as_ref());
    let (status, reason, message) = match lag {
        Some(l) => (
            l.lagging.map_or(Status::Unknown, Status::from_bool),
            l.reason,
            truncate(&l.message, MAX_STATUS_TEXT_BYTES),
        ),
        None => (
            Status::Unknown,
            "NotCompared",
            "not compared with other instances yet".to_owned(),
        ),
    };
    // Tenths of a second: what the message shows.
    plan.lag_seconds = lag
        .and_then(|l| l.lag_ms)
        .map(|ms| (ms.min(1 << 50) / 100) as f64 / 10.0);
    if unhealthy
        && let (Some(h), Some(l)) = (health, lag)
        && l.lagging == Some(true)
        && let Some(c) = plan
            .conditions
            .iter_mut()
            .find(|c| c.type_ == "Healthy" && c.status == Status::True)
    {
        // Worded without the lag itself, which moves at every sample: `Lagging` has it.
        c.status = Status::False;
        c.reason = "Lagging";
        c.message = truncate(
            &format!(
                "running behind {} by more than the limit (spec.health.lag.unhealthy is true); \
                 see the Lagging condition",
                l.leader.as_deref().unwrap_or("the leading instance")
            ),
            MAX_STATUS_TEXT_BYTES,
        );
        plan.health_changed_at = health_changed_at(recorded, Some(false), h.at);
    }
    plan.conditions
        .push(Desired::new("Lagging", status, reason, message));
}

/// Pure stage: the `CredentialsReady` condition, when the ClusteredStream names origin
/// credentials. While they cannot be used the instance is not probed: an instance never judged
/// shows `Healthy=Unknown` (reason `CredentialsUnavailable`) instead of `AwaitingProbe`, and a
/// recorded verdict stands, so a configuration error never flips health or moves an audience.
pub fn add_credentials(
    plan: &mut InstancePlan,
    credentials: Option<Result<&OriginCredentials, &CredentialsError>>,
    secret_name: &str,
) {
    let Some(result) = credentials else {
        return;
    };
    match result {
        Ok(c) => plan.conditions.push(Desired::new(
            "CredentialsReady",
            Status::True,
            "SecretRead",
            format!(
                "Secret {secret_name:?}: {} credentials in the {} header",
                c.scheme, c.name
            ),
        )),
        Err(e) => {
            let message = truncate(
                &format!(
                    "{e}; the instance is not probed until it is fixed, and its recorded health stands"
                ),
                MAX_STATUS_TEXT_BYTES,
            );
            for c in plan.conditions.iter_mut() {
                if matches!(c.type_, "Healthy" | "Stale") && c.reason == "AwaitingProbe" {
                    c.reason = "CredentialsUnavailable";
                    c.message = message.clone();
                }
            }
            plan.conditions.push(Desired::new(
                "CredentialsReady",
                Status::False,
                e.reason(),
                message,
            ));
        }
    }
}

fn rendition_status(r: &RenditionHealth) -> RenditionStatus {
    RenditionStatus {
        uri: truncate(&r.uri, MAX_STATUS_URI_BYTES),
        kind: r.kind.to_owned(),
        fresh: r.fresh,
        media_sequence: r.media_sequence.map(crate::resources::api_int),
        target_duration_ms: r.target_duration_ms.map(crate::resources::api_int),
        last_change: r.last_change.map(Time),
        last_error: r
            .detail
            .as_deref()
            .map(|d| truncate(d, MAX_STATUS_TEXT_BYTES)),
    }
}

/// The fields of a rendition's status that only change on a real event (not every segment).
fn shape(r: &[RenditionStatus]) -> Vec<(&str, &str, bool, Option<&str>)> {
    r.iter()
        .map(|r| {
            (
                r.uri.as_str(),
                r.kind.as_str(),
                r.fresh,
                r.last_error.as_deref(),
            )
        })
        .collect()
}

/// How much of a recorded condition has to equal the desired one: its status (and generation)
/// only, its reason too, or its message too.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Recorded {
    Status,
    Reason,
    Message,
}

/// True when `desired` is in `current` for this generation, equal up to `depth`.
fn recorded(
    current: &[Condition],
    desired: &Desired,
    generation: Option<i64>,
    depth: Recorded,
) -> bool {
    conditions::find(current, desired.type_).is_some_and(|c| {
        c.status == desired.status.as_str()
            && c.observed_generation == generation
            && (depth < Recorded::Reason || c.reason == desired.reason)
            && (depth < Recorded::Message || c.message == desired.message)
    })
}

/// True when every desired condition is already in `current` with the same status, reason,
/// message and generation, so no write is needed.
pub(crate) fn up_to_date(
    current: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
) -> bool {
    desired
        .iter()
        .all(|d| recorded(current, d, generation, Recorded::Message))
}

/// What a reconciliation has to write to an instance's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusWrite {
    /// Nothing: the status says what it should, or only detail changed and is not due.
    None,
    /// A condition's status or reason changed (a verdict, a binding, credentials), or when
    /// health last changed: what the ClusteredStream and the state table act on. Written at
    /// once, always.
    Verdict,
    /// Only how the status describes it changed: a condition's message, or the shape of the
    /// rendition list (renditions added, removed, gone stale one by one after the first).
    /// Written as soon as it can be, but never ahead of a verdict (see
    /// [`StatusWrite::may_wait`]).
    Description,
    /// Only rendition detail (sequence numbers, ages, the lag figure) changed and is due.
    DetailOnly,
}

impl StatusWrite {
    /// Whether this write takes one of the few detail slots, or waits for a later round when
    /// none is free or a verdict is being written: everything but a verdict.
    pub fn may_wait(self) -> bool {
        matches!(self, StatusWrite::Description | StatusWrite::DetailOnly)
    }

    /// The `write` label of `cvs_instance_status_writes_total`.
    pub fn label(self) -> &'static str {
        match self {
            StatusWrite::None => "none",
            StatusWrite::Verdict => "verdict",
            StatusWrite::Description => "description",
            StatusWrite::DetailOnly => "detail",
        }
    }
}

/// The condition that reports the lag behind the other instances. It is not a verdict the
/// ClusteredStream acts on: with `lag.unhealthy` a lag makes `Healthy` False, and that is the
/// verdict. So a change of its status or reason is a description. When a whole region fails,
/// every instance of the other region loses its peer (`NoPeer`) and every failed one stops
/// being compared (`InstanceStale`): written as verdicts, those doubled the writes that went
/// ahead of everything else, and the other region's 715 took turns with the 715 `Healthy` flips.
const LAGGING: &str = "Lagging";

/// Which write an instance's recorded status and the plan for it call for: a verdict when a
/// condition's status changed (`Lagging` aside, see [`LAGGING`]), `healthChangedAt` moved or
/// the generation is new; a description when a reason, a message, the `Lagging` verdict or the
/// rendition list's shape changed; detail when only rendition detail or the lag figure did
/// (written when `details_due`).
pub fn write_for(
    status: &StreamInstanceStatus,
    plan: &InstancePlan,
    generation: Option<i64>,
    details_due: bool,
) -> StatusWrite {
    // The `Lagging` message carries the lag, which moves at every sample: a change of it alone
    // is written at the detail cadence, like rendition detail.
    let (lagging, steady): (Vec<&Desired>, Vec<&Desired>) =
        plan.conditions.iter().partition(|d| d.type_ == LAGGING);
    let all_recorded = |desired: &[&Desired], depth: Recorded| {
        desired
            .iter()
            .all(|d| recorded(&status.conditions, d, generation, depth))
    };
    // A reason that changes while the status stays is a description too: the ClusteredStream
    // acts on statuses (and `healthChangedAt`), and as a refused region's renditions are judged
    // one by one an instance's `Healthy=False` reason moves (the master unreachable, then
    // `NoNewSegment`, then `RenditionsStale` when causes mix), a verdict write each time.
    let verdict_current = status.observed_generation == generation
        && status.health_changed_at == plan.health_changed_at
        && all_recorded(&steady, Recorded::Status);
    let described_current = all_recorded(&steady, Recorded::Message)
        && all_recorded(&lagging, Recorded::Reason)
        && shape(&status.renditions) == shape(&plan.renditions)
        && status.renditions_total == plan.renditions_total
        && status.renditions_stale == plan.renditions_stale;
    let details_current = status.renditions == plan.renditions
        && status.lag_seconds == plan.lag_seconds
        && all_recorded(&lagging, Recorded::Message);
    status_write(
        verdict_current,
        described_current,
        details_current,
        details_due,
    )
}

/// Which write the comparison of an instance's status with its plan calls for.
pub fn status_write(
    verdict_current: bool,
    described_current: bool,
    details_current: bool,
    details_due: bool,
) -> StatusWrite {
    if !verdict_current {
        StatusWrite::Verdict
    } else if !described_current {
        StatusWrite::Description
    } else if !details_current && details_due {
        StatusWrite::DetailOnly
    } else {
        StatusWrite::None
    }
}

/// Counts a verdict's status write in flight (see `Context::verdict_writes`) until dropped.
struct VerdictWrite<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> VerdictWrite<'a> {
    fn start(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for VerdictWrite<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A detail write put off for want of a slot is tried again after this long (milliseconds, at
/// random within the range so the instances put off together do not come back together).
const DETAIL_RETRY_MS: (u64, u64) = (3_000, 7_000);

pub async fn reconcile(instance: Arc<StreamInstance>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let instance = ctx.written_instances.newest(instance);
    let result = reconcile_inner(&instance, &ctx).await;
    ctx.metrics.observe_reconcile(CONTROLLER, started.elapsed());
    result
}

/// The hosts besides the master's own that a ClusteredStream's probes may connect to.
pub fn allowed_hosts(spec: &crate::resources::ClusteredStreamSpec) -> Vec<String> {
    spec.health
        .allowed_hosts
        .iter()
        .map(|h| h.0.clone())
        .collect()
}

async fn reconcile_inner(instance: &StreamInstance, ctx: &Context) -> Result<Action, Error> {
    let name = instance.name_any();
    let ns = instance
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(name.clone()))?;
    let cluster_ref = ObjectRef::new(&instance.spec.clustered_stream).within(&ns);
    // Before the ClusteredStream cache has its first full list, "not found" means nothing yet.
    if ctx.clusters.wait_until_ready().now_or_never().is_none() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let cluster = ctx.clusters.get(&cluster_ref);
    let policy = cluster
        .as_ref()
        .map(|c| Policy {
            staleness_multiplier: c.spec.health.staleness_multiplier,
            recovery_updates: c.spec.health.recovery_updates,
            failure_threshold: c.spec.health.failure_threshold,
            check_segments: c.spec.health.segment_checks,
            part_staleness_multiplier: c.spec.health.part_staleness_multiplier,
        })
        .unwrap_or_default();

    let key = InstanceKey {
        namespace: ns.clone(),
        name: name.clone(),
    };
    let allowed_hosts = cluster
        .as_ref()
        .map(|c| allowed_hosts(&c.spec))
        .unwrap_or_default();
    let credentials_spec = cluster
        .as_ref()
        .and_then(|c| c.spec.health.origin_credentials.clone());
    let credentials = ctx
        .secrets
        .credentials(&ctx.client, &ns, credentials_spec.as_ref())
        .await;
    let origin = match Url::parse(&instance.spec.origin.url) {
        Err(e) => {
            ctx.probes.retain(|k| k != &key);
            Err(e.to_string())
        }
        // Credentials named but unusable: a configuration error, not the origin's. The
        // instance is not probed (a probe without them would see 401s and call the origin
        // stale), so no verdict is made and the recorded one stands.
        Ok(_) if credentials.is_err() => {
            ctx.probes.retain(|k| k != &key);
            Ok(())
        }
        Ok(master_url) => {
            let lag = cluster.as_ref().map(|c| LagTarget {
                cluster: instance.spec.clustered_stream.clone(),
                policy: c.spec.health.lag.policy(),
            });
            // Renditions and redirects may be on the master's own host and the hosts the
            // ClusteredStream allows, nowhere else.
            let target = ProbeTarget {
                master_url,
                policy,
                allowed_hosts,
                credentials: credentials.clone().ok().flatten(),
                lag,
            };
            ctx.probes.ensure(&key, target);
            Ok(())
        }
    };
    let health = ctx.probes.health(&key);
    let status = instance.status.clone().unwrap_or_default();
    let mut plan = plan(
        cluster.is_some(),
        &instance.spec.clustered_stream,
        origin,
        health.as_ref(),
        &status,
        jiff::Timestamp::now(),
    );
    let shown = match &credentials {
        Ok(Some(c)) => Some(Ok(c.as_ref())),
        Ok(None) => None,
        Err(e) => Some(Err(e)),
    };
    let secret_name = credentials_spec
        .as_ref()
        .map(|c| c.secret_name.as_str())
        .unwrap_or_default();
    add_credentials(&mut plan, shown, secret_name);
    let lag_unhealthy = cluster
        .as_ref()
        .is_some_and(|c| c.spec.health.lag.unhealthy);
    add_lag(&mut plan, health.as_ref(), &status, lag_unhealthy);
    // A configuration error is looked at again soon, so a fixed Secret is picked up quickly.
    let requeue = if credentials.is_err() {
        ctx.detail_refresh.min(CREDENTIALS_RETRY)
    } else {
        ctx.detail_refresh
    };

    let generation = instance.metadata.generation;
    let details_due = ctx
        .detail_writes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .is_none_or(|at| at.elapsed() >= ctx.detail_refresh);
    // A write that is not a verdict takes one of a few slots, or waits for a later round:
    // when the API server is slow, 1,400 instances' detail refreshes would otherwise fill every
    // reconcile slot, and a verdict (a region going stale) would queue behind them for as long
    // as the backlog lasts, even past the end of the fault it should have reported. It also
    // waits while any verdict is being written: when a whole region fails, each of its
    // instances is rewritten as each of its renditions goes stale, and in a soak at 10,010
    // playlists those descriptions took three of every four status writes while the region's
    // verdicts reached the API server at 20 a second.
    let write = write_for(&status, &plan, generation, details_due);
    if write == StatusWrite::None {
        return Ok(Action::requeue(requeue));
    }
    let _verdict_write =
        (write == StatusWrite::Verdict).then(|| VerdictWrite::start(&ctx.verdict_writes));
    let _detail_slot = if write.may_wait() {
        let verdict_in_flight = ctx
            .verdict_writes
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0;
        let slot = if verdict_in_flight {
            None
        } else {
            ctx.detail_slots.try_acquire().ok()
        };
        let Some(slot) = slot else {
            ctx.metrics.detail_writes_deferred.inc();
            let retry = Duration::from_millis(fastrand::u64(DETAIL_RETRY_MS.0..=DETAIL_RETRY_MS.1));
            return Ok(Action::requeue(retry.min(requeue)));
        };
        Some(slot)
    } else {
        None
    };

    let mut next = conditions::merge(
        &status.conditions,
        plan.conditions,
        generation,
        conditions::now(),
    );
    next.extend(plan.kept);
    let transitions = conditions::transitions(&status.conditions, &next);
    let api: Api<StreamInstance> = Api::namespaced(ctx.client.clone(), &ns);
    let mut status = serde_json::json!({
        "observedGeneration": generation,
        "conditions": next,
        "renditions": plan.renditions,
    });
    // Absent, not null: a field this manager does not apply is one it no longer owns.
    for (field, value) in [
        (
            "renditionsTotal",
            plan.renditions_total.map(serde_json::Value::from),
        ),
        (
            "renditionsStale",
            plan.renditions_stale.map(serde_json::Value::from),
        ),
        (
            "healthChangedAt",
            plan.health_changed_at.map(serde_json::Value::from),
        ),
        ("lagSeconds", plan.lag_seconds.map(serde_json::Value::from)),
    ] {
        if let Some(v) = value {
            status[field] = v;
        }
    }
    let written = apply_status(ctx, &api, &name, FIELD_MANAGER, CONTROLLER, status).await?;
    ctx.written_instances.record(written);
    ctx.metrics
        .instance_status_writes
        .get_or_create(&crate::metrics::WriteLabels {
            write: write.label(),
        })
        .inc();
    if write == StatusWrite::Verdict && cluster.is_some() {
        // The ClusteredStream reads this verdict from `written_instances` at once; the watch
        // may bring it back many seconds later when the API server is busy. The receiver
        // lives as long as the cluster controller; after it stopped nothing needs telling.
        let _ = ctx
            .cluster_triggers
            .send(ObjectRef::new(&instance.spec.clustered_stream).within(&ns));
    }
    ctx.detail_writes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, Instant::now());

    for t in transitions {
        count_transition(ctx, "StreamInstance", &t.type_, &t.to.status);
        let event = match (t.type_.as_str(), t.to.status.as_str()) {
            ("Bound", "False") => Some((EventType::Warning, "ClusteredStreamNotFound")),
            // The `Lagging` Event tells it.
            ("Healthy", "False") if t.to.reason == "Lagging" => None,
            ("Healthy", "False") => Some((EventType::Warning, "Stale")),
            ("Lagging", "True") => Some((EventType::Warning, "Lagging")),
            ("Lagging", "False") if t.from.as_deref() == Some("True") => {
                Some((EventType::Normal, "CaughtUp"))
            }
            ("Healthy", "True") if t.from.is_some() => Some((EventType::Normal, "Healthy")),
            ("CredentialsReady", "False") => {
                Some((EventType::Warning, "OriginCredentialsUnavailable"))
            }
            ("CredentialsReady", "True") if t.from.is_some() => {
                Some((EventType::Normal, "OriginCredentialsRead"))
            }
            _ => None,
        };
        if let Some((type_, reason)) = event {
            publish(
                ctx,
                instance,
                Event {
                    type_,
                    reason: reason.into(),
                    note: Some(t.to.message.clone()),
                    action: "Probe".into(),
                    secondary: None,
                },
            )
            .await;
        }
    }
    Ok(Action::requeue(requeue))
}

pub fn error_policy(instance: Arc<StreamInstance>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(
        instance = %instance.name_any(),
        error = %error,
        "{OPERATOR_NAME}: reconciling StreamInstance failed; retrying"
    );
    ctx.metrics.observe_error(CONTROLLER, error.kind());
    Action::requeue(RETRY_AFTER_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::decision::InstanceVerdict;

    fn rendition(uri: &str, fresh: bool) -> RenditionHealth {
        RenditionHealth {
            uri: uri.into(),
            kind: "video",
            fresh,
            judged: true,
            starved: false,
            media_sequence: Some(7),
            target_duration_ms: Some(2000),
            last_change: None,
            detail: (!fresh).then(|| "no new segment".into()),
        }
    }

    fn health(healthy: bool) -> InstanceHealth {
        InstanceHealth {
            verdict: InstanceVerdict {
                healthy: Some(healthy),
                reason: if healthy {
                    "AllRenditionsFresh"
                } else {
                    "NoNewSegment"
                },
                message: "m".into(),
            },
            renditions: vec![rendition("http://o/720p.m3u8", healthy)],
            starved: 0,
            at: ts(1_000),
            lag: None,
        }
    }

    fn ts(second: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(second).unwrap()
    }

    fn none() -> StreamInstanceStatus {
        StreamInstanceStatus::default()
    }

    fn cond<'a>(p: &'a InstancePlan, t: &str) -> &'a Desired {
        p.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    /// The status a reconcile writes for `plan`, as the API server would store it.
    fn written(plan: InstancePlan, at: jiff::Timestamp) -> StreamInstanceStatus {
        let mut conditions = conditions::merge(&[], plan.conditions, Some(1), Time(at));
        conditions.extend(plan.kept);
        StreamInstanceStatus {
            observed_generation: Some(1),
            conditions,
            renditions: plan.renditions,
            health_changed_at: plan.health_changed_at,
            renditions_total: plan.renditions_total,
            renditions_stale: plan.renditions_stale,
            lag_seconds: plan.lag_seconds,
            ..Default::default()
        }
    }

    #[test]
    fn orphan_instance_is_reported_closed() {
        let p = plan(false, "event", Ok(()), None, &none(), ts(1));
        let bound = cond(&p, "Bound");
        assert_eq!(bound.status, Status::False);
        assert_eq!(bound.reason, "ClusteredStreamNotFound");
        assert!(bound.message.contains("\"event\""));
        let p = plan(true, "event", Ok(()), None, &none(), ts(1));
        assert_eq!(cond(&p, "Bound").status, Status::True);
        // The Open condition belongs to the cluster reconciler alone.
        assert!(p.conditions.iter().all(|c| c.type_ != "Open"));
    }

    #[test]
    fn probe_results_become_healthy_and_stale_conditions() {
        let p = plan(true, "event", Ok(()), None, &none(), ts(1));
        assert_eq!(cond(&p, "Healthy").status, Status::Unknown);
        assert_eq!(cond(&p, "Healthy").reason, "AwaitingProbe");
        let p = plan(true, "event", Ok(()), Some(&health(false)), &none(), ts(1));
        assert_eq!(cond(&p, "Healthy").status, Status::False);
        assert_eq!(cond(&p, "Stale").status, Status::True);
        assert_eq!(cond(&p, "Stale").reason, "NoNewSegment");
        assert_eq!(p.renditions[0].media_sequence, Some(7));
        let p = plan(true, "event", Ok(()), Some(&health(true)), &none(), ts(1));
        assert_eq!(cond(&p, "Healthy").status, Status::True);
        assert_eq!(cond(&p, "Stale").status, Status::False);
        let p = plan(
            true,
            "event",
            Err("relative URL without a base".into()),
            None,
            &none(),
            ts(1),
        );
        assert_eq!(cond(&p, "Healthy").reason, "InvalidOriginUrl");
    }

    /// After a restart the probe engine has no verdict yet: the recorded one stands, conditions,
    /// transition times and rendition detail alike, instead of flipping to Unknown and back.
    #[test]
    fn a_recorded_verdict_stands_until_the_probe_judges_again() {
        let stale = written(
            plan(true, "event", Ok(()), Some(&health(false)), &none(), ts(5)),
            ts(100),
        );
        let p = plan(true, "event", Ok(()), None, &stale, ts(200));
        assert!(p.conditions.iter().all(|c| c.type_ == "Bound"), "{p:?}");
        let after = written(p, ts(200));
        for type_ in ["Healthy", "Stale"] {
            assert_eq!(
                conditions::find(&after.conditions, type_),
                conditions::find(&stale.conditions, type_),
                "{type_}"
            );
        }
        assert_eq!(after.renditions, stale.renditions);
        assert_eq!(after.renditions_total, Some(1));
        assert_eq!(after.health_changed_at, stale.health_changed_at);
        // Nothing flips, so no Event and no transition is counted.
        assert!(
            conditions::transitions(&stale.conditions, &after.conditions)
                .iter()
                .all(|t| t.type_ == "Bound")
        );

        // A recorded InvalidOriginUrl is no verdict about the origin now in the spec.
        let invalid = written(
            plan(true, "event", Err("bad".into()), None, &none(), ts(5)),
            ts(100),
        );
        let p = plan(true, "event", Ok(()), None, &invalid, ts(200));
        assert_eq!(cond(&p, "Healthy").reason, "AwaitingProbe");
        // Neither is a recorded Unknown.
        let awaiting = written(plan(true, "event", Ok(()), None, &none(), ts(5)), ts(100));
        let p = plan(true, "event", Ok(()), None, &awaiting, ts(200));
        assert_eq!(cond(&p, "Healthy").reason, "AwaitingProbe");
        assert!(p.kept.is_empty());
    }

    /// A probe result that judges nothing yet (a partial picture, no evidence of freshness
    /// yet) is no verdict: it never replaces a recorded one, and an instance never judged shows
    /// the probe's reason with Unknown.
    #[test]
    fn a_verdict_not_judged_yet_is_no_verdict() {
        let mut pending = health(true);
        pending.verdict = InstanceVerdict {
            healthy: None,
            reason: "AwaitingEvidence",
            message: "1 of 1 renditions not judged yet".into(),
        };
        pending.renditions[0].judged = false;
        let stale = written(
            plan(true, "e", Ok(()), Some(&health(false)), &none(), ts(5)),
            ts(100),
        );
        let p = plan(true, "e", Ok(()), Some(&pending), &stale, ts(200));
        assert!(p.conditions.iter().all(|c| c.type_ == "Bound"), "{p:?}");
        let after = written(p, ts(200));
        for type_ in ["Healthy", "Stale"] {
            assert_eq!(
                conditions::find(&after.conditions, type_),
                conditions::find(&stale.conditions, type_)
            );
        }
        let p = plan(true, "e", Ok(()), Some(&pending), &none(), ts(200));
        assert_eq!(cond(&p, "Healthy").status, Status::Unknown);
        assert_eq!(cond(&p, "Healthy").reason, "AwaitingEvidence");
        assert_eq!(p.renditions.len(), 1);
        assert_eq!(p.health_changed_at, None);
    }

    /// Unusable origin credentials are a configuration error: a `CredentialsReady=False`
    /// condition naming the Secret; an instance never judged is Unknown for that reason, and a
    /// recorded verdict stands (no flip, so no failover).
    #[test]
    fn unusable_credentials_never_flip_health() {
        let missing = CredentialsError::NotFound("origin-auth".into());
        let mut p = plan(true, "e", Ok(()), None, &none(), ts(1));
        add_credentials(&mut p, Some(Err(&missing)), "origin-auth");
        let c = cond(&p, "CredentialsReady");
        assert_eq!((c.status, c.reason), (Status::False, "SecretNotFound"));
        assert!(c.message.contains("\"origin-auth\""), "{}", c.message);
        let h = cond(&p, "Healthy");
        assert_eq!(
            (h.status, h.reason),
            (Status::Unknown, "CredentialsUnavailable")
        );
        assert_eq!(cond(&p, "Stale").status, Status::Unknown);

        let healthy = written(
            plan(true, "e", Ok(()), Some(&health(true)), &none(), ts(5)),
            ts(100),
        );
        let mut p = plan(true, "e", Ok(()), None, &healthy, ts(200));
        add_credentials(&mut p, Some(Err(&missing)), "origin-auth");
        assert!(p.conditions.iter().all(|c| c.type_ != "Healthy"));
        let after = written(p, ts(200));
        assert_eq!(
            conditions::find(&after.conditions, "Healthy"),
            conditions::find(&healthy.conditions, "Healthy")
        );
        assert_eq!(after.health_changed_at, healthy.health_changed_at);

        let ok = OriginCredentials {
            name: reqwest::header::AUTHORIZATION,
            value: reqwest::header::HeaderValue::from_static("Basic c2VjcmV0"),
            scheme: "Basic",
        };
        let mut p = plan(true, "e", Ok(()), None, &none(), ts(1));
        add_credentials(&mut p, Some(Ok(&ok)), "origin-auth");
        let c = cond(&p, "CredentialsReady");
        assert_eq!(c.status, Status::True);
        assert!(!c.message.contains("c2VjcmV0"), "{}", c.message);
        // Without credentials named, no condition.
        let mut p = plan(true, "e", Ok(()), None, &none(), ts(1));
        add_credentials(&mut p, None, "");
        assert!(p.conditions.iter().all(|c| c.type_ != "CredentialsReady"));
    }

    fn lagging(healthy: bool, lagging: Option<bool>, lag_ms: Option<u64>) -> InstanceHealth {
        let mut h = health(healthy);
        h.lag = Some(crate::decide::lag::LagVerdict {
            lagging,
            reason: match lagging {
                Some(true) => "Lagging",
                Some(false) => "WithinLimit",
                None => "NoPeer",
            },
            message: "31.0 s behind east by EXT-X-PROGRAM-DATE-TIME (limit 20.0 s)".into(),
            lag_ms,
            leader: lag_ms.map(|_| "east".to_owned()),
        });
        h
    }

    fn lag_plan(
        h: &InstanceHealth,
        recorded: &StreamInstanceStatus,
        unhealthy: bool,
    ) -> InstancePlan {
        let mut p = plan(true, "e", Ok(()), Some(h), recorded, ts(9));
        add_lag(&mut p, Some(h), recorded, unhealthy);
        p
    }

    #[test]
    fn only_a_status_is_a_verdict_and_the_lag_verdict_is_a_description() {
        let none = none();
        // Healthy and within the limit, recorded.
        let recorded = written(
            lag_plan(&lagging(true, Some(false), Some(1_000)), &none, false),
            ts(9),
        );
        let write = |h: &InstanceHealth, unhealthy: bool| {
            write_for(
                &recorded,
                &lag_plan(h, &recorded, unhealthy),
                Some(1),
                false,
            )
        };
        assert_eq!(
            write(&lagging(true, Some(false), Some(1_000)), false),
            StatusWrite::None
        );
        // The other region failed: nothing to compare with. The instance's health is unchanged.
        assert_eq!(
            write(&lagging(true, None, None), false),
            StatusWrite::Description
        );
        // Lagging, but lag does not make it unhealthy: still a description.
        assert_eq!(
            write(&lagging(true, Some(true), Some(31_049)), false),
            StatusWrite::Description
        );
        // Lag makes it unhealthy: Healthy flips, and that is a verdict.
        assert_eq!(
            write(&lagging(true, Some(true), Some(31_049)), true),
            StatusWrite::Verdict
        );
        // The instance itself went stale: a verdict, whatever the lag says.
        assert_eq!(
            write(&lagging(false, None, None), false),
            StatusWrite::Verdict
        );
        // Stale already, for another reason now (causes mixed): a description.
        let stale = written(
            lag_plan(&lagging(false, None, None), &recorded, false),
            ts(12),
        );
        let mut mixed = lagging(false, None, None);
        mixed.verdict.reason = "RenditionsStale";
        assert_eq!(
            write_for(&stale, &lag_plan(&mixed, &stale, false), Some(1), false),
            StatusWrite::Description
        );
        assert_eq!(
            write_for(
                &stale,
                &lag_plan(&lagging(false, None, None), &stale, false),
                Some(1),
                false
            ),
            StatusWrite::None
        );
        // Only the lag figure moved: detail, written when due.
        assert_eq!(
            write(&lagging(true, Some(false), Some(2_000)), false),
            StatusWrite::None
        );
        assert_eq!(
            write_for(
                &recorded,
                &lag_plan(&lagging(true, Some(false), Some(2_000)), &recorded, false),
                Some(1),
                true
            ),
            StatusWrite::DetailOnly
        );
        // A new generation is always a verdict.
        assert_eq!(
            write_for(
                &recorded,
                &lag_plan(&lagging(true, Some(false), Some(1_000)), &recorded, false),
                Some(2),
                false
            ),
            StatusWrite::Verdict
        );
    }

    /// A lagging instance gets `Lagging=True` with the lag and the leader; its health changes
    /// only when `spec.health.lag.unhealthy` says so, and then with reason `Lagging`.
    #[test]
    fn lag_is_reported_and_makes_an_instance_unhealthy_only_when_asked() {
        let h = lagging(true, Some(true), Some(31_049));
        let p = lag_plan(&h, &none(), false);
        let c = cond(&p, "Lagging");
        assert_eq!((c.status, c.reason), (Status::True, "Lagging"));
        assert!(c.message.contains("31.0 s behind east"), "{}", c.message);
        assert_eq!(p.lag_seconds, Some(31.0));
        assert_eq!(cond(&p, "Healthy").status, Status::True);

        let p = lag_plan(&h, &none(), true);
        let healthy = cond(&p, "Healthy");
        assert_eq!((healthy.status, healthy.reason), (Status::False, "Lagging"));
        assert!(healthy.message.contains("east"), "{}", healthy.message);
        // Fresh playlists: not stale.
        assert_eq!(cond(&p, "Stale").status, Status::False);
        assert_eq!(
            p.health_changed_at.as_deref(),
            Some("1970-01-01T00:16:40.000Z")
        );
        // The Healthy message does not move with the lag (no write at every sample).
        let h2 = lagging(true, Some(true), Some(45_000));
        assert_eq!(
            cond(&lag_plan(&h2, &none(), true), "Healthy").message,
            healthy.message
        );

        // Within the limit, or unknown: health is the freshness verdict.
        for (l, status) in [(Some(false), Status::False), (None, Status::Unknown)] {
            let h = lagging(true, l, l.map(|_| 3_000));
            let p = lag_plan(&h, &none(), true);
            assert_eq!(cond(&p, "Lagging").status, status);
            assert_eq!(cond(&p, "Healthy").status, Status::True);
        }
        // A stale instance stays stale for its own reason.
        let h = lagging(false, None, None);
        let p = lag_plan(&h, &none(), true);
        assert_eq!(cond(&p, "Healthy").reason, "NoNewSegment");
        assert_eq!(cond(&p, "Lagging").status, Status::Unknown);
        assert_eq!(p.lag_seconds, None);
        // Without a lag verdict at all (no ClusteredStream): Unknown.
        let mut p = plan(true, "e", Ok(()), Some(&health(true)), &none(), ts(9));
        add_lag(&mut p, Some(&health(true)), &none(), true);
        assert_eq!(cond(&p, "Lagging").reason, "NotCompared");
    }

    /// After a restart the recorded lag stands with the recorded verdict.
    #[test]
    fn a_recorded_lag_stands_with_the_recorded_verdict() {
        let h = lagging(true, Some(true), Some(31_000));
        let before = written(lag_plan(&h, &none(), true), ts(100));
        let mut p = plan(true, "e", Ok(()), None, &before, ts(200));
        add_lag(&mut p, None, &before, true);
        assert!(p.conditions.iter().all(|c| c.type_ == "Bound"), "{p:?}");
        let after = written(p, ts(200));
        for type_ in ["Healthy", "Lagging"] {
            assert_eq!(
                conditions::find(&after.conditions, type_),
                conditions::find(&before.conditions, type_),
                "{type_}"
            );
        }
        assert_eq!(after.lag_seconds, Some(31.0));
    }

    #[test]
    fn health_changed_at_moves_only_when_the_verdict_flips() {
        let mut h = health(false);
        h.at = jiff::Timestamp::from_millisecond(1_700_000_000_123).unwrap();
        let first = written(plan(true, "e", Ok(()), Some(&h), &none(), ts(9)), ts(9));
        assert_eq!(
            first.health_changed_at.as_deref(),
            Some("2023-11-14T22:13:20.123Z")
        );
        // Same verdict later (new message, new publish time): unchanged.
        let mut later = health(false);
        later.verdict.message = "2 of 2 renditions stale".into();
        later.at = h.at + jiff::SignedDuration::from_secs(30);
        let same = plan(true, "e", Ok(()), Some(&later), &first, ts(99));
        assert_eq!(same.health_changed_at, first.health_changed_at);
        // A flip moves it, to the verdict's time.
        let mut healthy = health(true);
        healthy.at = jiff::Timestamp::from_millisecond(1_700_000_100_007).unwrap();
        let flipped = plan(true, "e", Ok(()), Some(&healthy), &first, ts(99));
        assert_eq!(
            flipped.health_changed_at.as_deref(),
            Some("2023-11-14T22:15:00.007Z")
        );
        // No verdict: kept.
        let p = plan(true, "e", Ok(()), None, &first, ts(99));
        assert_eq!(p.health_changed_at, first.health_changed_at);
        // A status written before the field existed gets it from the condition, not from now.
        let mut old = first.clone();
        old.health_changed_at = None;
        let p = plan(true, "e", Ok(()), Some(&later), &old, ts(99));
        assert_eq!(
            p.health_changed_at.as_deref(),
            Some("1970-01-01T00:00:09.000Z")
        );
    }

    #[test]
    fn status_holds_a_bounded_summary_of_many_renditions() {
        let mut all: Vec<RenditionHealth> = (0..20_000)
            .map(|i| rendition(&format!("http://o/v{i:05}.m3u8"), i % 1000 != 7))
            .collect();
        all[3].fresh = false;
        all[3].media_sequence = Some(u64::MAX);
        all[3].uri = format!("http://o/{}.m3u8", "x".repeat(5000));
        all[3].detail = Some("é".repeat(5000));
        let (shown, total, stale) = bounded_renditions(&all);
        assert_eq!((total, stale), (20_000, 21));
        assert_eq!(shown.len(), MAX_STATUS_RENDITIONS);
        assert!(shown[..21].iter().all(|r| !r.fresh), "stale ones first");
        assert!(shown[21..].iter().all(|r| r.fresh));
        let long = shown.iter().find(|r| r.uri.contains("xxx")).unwrap();
        assert!(long.uri.len() <= MAX_STATUS_URI_BYTES && long.uri.ends_with('…'));
        assert!(long.last_error.as_ref().unwrap().len() <= MAX_STATUS_TEXT_BYTES);
        assert_eq!(long.media_sequence, Some(i64::MAX));
        let bytes = serde_json::to_vec(&shown).unwrap().len();
        assert!(bytes < 64 * 1024, "{bytes} bytes");
        // URIs cut to the same prefix stay unique keys.
        let twins = vec![
            rendition(&format!("http://o/{}a", "y".repeat(600)), true),
            rendition(&format!("http://o/{}b", "y".repeat(600)), true),
        ];
        assert_eq!(bounded_renditions(&twins).0.len(), 1);
    }

    #[test]
    fn numbers_beyond_int64_are_clamped_for_the_api() {
        let mut r = rendition("http://o/a.m3u8", true);
        r.media_sequence = Some(1 << 63);
        r.target_duration_ms = Some(u64::MAX);
        let s = serde_json::to_value(rendition_status(&r)).unwrap();
        assert_eq!(s["mediaSequence"], serde_json::json!(i64::MAX));
        assert_eq!(s["targetDurationMs"], serde_json::json!(i64::MAX));
        assert_eq!(crate::resources::api_int(42), 42);
    }

    #[test]
    fn only_a_verdict_is_never_put_off() {
        use StatusWrite::*;
        // (verdict current, description current, details current, details due)
        let cases = [
            ((false, true, true, false), Verdict),
            ((false, false, false, true), Verdict),
            ((true, false, true, false), Description),
            ((true, false, false, true), Description),
            ((true, true, false, true), DetailOnly),
            ((true, true, false, false), None),
            ((true, true, true, true), None),
            ((true, true, true, false), None),
        ];
        for ((c, s, d, due), want) in cases {
            assert_eq!(status_write(c, s, d, due), want, "{c} {s} {d} {due}");
            assert_eq!(want.may_wait(), matches!(want, Description | DetailOnly));
        }
        assert_eq!(super::super::detail_slots(16), 8);
        assert_eq!(super::super::detail_slots(1), 1);
    }

    #[test]
    fn a_verdict_write_is_counted_while_it_lasts() {
        let count = std::sync::atomic::AtomicUsize::new(0);
        let first = VerdictWrite::start(&count);
        let second = VerdictWrite::start(&count);
        assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 2);
        drop(first);
        assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 1);
        drop(second);
        assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("abc", 3), "abc");
        let cut = truncate(&"é".repeat(10), 8);
        assert!(cut.len() <= 8 && cut.ends_with('…'), "{cut}");
    }

    #[test]
    fn up_to_date_needs_same_reason_message_and_generation() {
        let p = plan(true, "event", Ok(()), None, &none(), ts(1));
        let current = conditions::merge(&[], p.conditions.clone(), Some(3), conditions::now());
        assert!(up_to_date(&current, &p.conditions, Some(3)));
        assert!(!up_to_date(&current, &p.conditions, Some(4)));
        assert!(!up_to_date(
            &current,
            &plan(false, "event", Ok(()), None, &none(), ts(1)).conditions,
            Some(3)
        ));
    }
}
