//! Reconciles one ClusteredStream with all of its StreamInstances: decides each instance's
//! effective open state (see [`crate::openness`]) and summarises the group.

use super::TableOutcome;
use super::instance::up_to_date;
use super::{
    Context, Error, OPERATOR_NAME, RESYNC_PERIOD, RETRY_AFTER_ERROR, Swept, apply_status,
    count_transition, publish,
};
use crate::conditions::{self, Desired, Status};
use crate::notify::{Ack, InstanceEvent, InstanceState, RenditionDetail};
use crate::openness::{self, InstanceView, OpenDecision, OpenReason};
use crate::resources::{ClusteredStream, InstanceSummary, StreamInstance};
use crate::state::{Item, StateError, StateTable};
use futures::FutureExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Field manager for the fields this reconciler owns (on both kinds).
pub const FIELD_MANAGER: &str = "cvs-operator/cluster";
pub(crate) const CONTROLLER: &str = "cluster";

/// What the reconciler will write, decided without I/O.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterPlan {
    /// Per instance, in name order: the effective open state and its `Open` condition.
    pub instances: Vec<(OpenDecision, Desired)>,
    pub summaries: Vec<InstanceSummary>,
    pub conditions: Vec<Desired>,
    pub open: u32,
    pub healthy: u32,
    /// When to decide again even if nothing changes (a hold-down ending), unix ms.
    pub recheck_at_ms: Option<i64>,
}

/// For each instance whose verdict the ClusteredStream's status is about to record for the first
/// time (its summary's `healthy` differs from the one in `before`), the seconds from the verdict
/// being written on the instance (`healthChangedAt`) to `now`. Instances new to the summary, and
/// times that cannot be read, are left out; a time in the future counts as 0.
pub fn newly_recorded_verdicts(
    before: &[InstanceSummary],
    members: &[Arc<StreamInstance>],
    now: jiff::Timestamp,
) -> Vec<f64> {
    members
        .iter()
        .filter_map(|i| {
            let name = i.name_any();
            let previous = before.iter().find(|s| s.name == name)?;
            let healthy = health_of(i)?;
            if previous.healthy == Some(healthy) {
                return None;
            }
            let at: jiff::Timestamp = i
                .status
                .as_ref()?
                .health_changed_at
                .as_deref()?
                .parse()
                .ok()?;
            Some(now.duration_since(at).as_secs_f64().max(0.0))
        })
        .collect()
}

/// Health as the instance reconciler last recorded it in the `Healthy` condition.
pub fn health_of(instance: &StreamInstance) -> Option<bool> {
    super::instance::recorded_verdict(instance.status.as_ref()?)
}

/// When the instance last turned healthy (unix ms), if its `Healthy` condition is True now:
/// `status.healthChangedAt` (millisecond precision) when present, else the condition's
/// `lastTransitionTime` (whole seconds, rounded down). The later of the two is taken, so a
/// hold-down never ends early on a time that is older than the condition's.
pub fn healthy_since_ms(instance: &StreamInstance) -> Option<i64> {
    let status = instance.status.as_ref()?;
    let c = conditions::find(&status.conditions, "Healthy")?;
    if c.status != "True" {
        return None;
    }
    let transition = c.last_transition_time.0.as_millisecond();
    let changed = status
        .health_changed_at
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond());
    Some(changed.map_or(transition, |ms| ms.max(transition)))
}

/// A fingerprint of what this reconciler reads of a StreamInstance: its spec (by generation),
/// its deletion, labels and annotations (the take-over annotation), the effective open state,
/// when its health last changed, and each condition's type, status, reason and transition time.
/// Not the rendition detail, the lag or the conditions' messages: the instance reconciler
/// rewrites those every few seconds with nothing changed for the group, and reconciling the
/// ClusteredStream on each of them was most of its work at scale. A change only there reaches
/// the ClusteredStream at its next reconciliation, which reads the cache.
pub fn inputs_fingerprint(instance: &StreamInstance) -> u64 {
    use std::hash::{Hash, Hasher};
    // Not randomly keyed: fingerprints are compared across events within one process.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let meta = &instance.metadata;
    meta.generation.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    meta.labels.hash(&mut h);
    meta.annotations.hash(&mut h);
    if let Some(status) = &instance.status {
        status.observed_generation.hash(&mut h);
        status.open.hash(&mut h);
        status.health_changed_at.hash(&mut h);
        for c in &status.conditions {
            c.type_.hash(&mut h);
            c.status.hash(&mut h);
            c.reason.hash(&mut h);
            c.last_transition_time.0.as_millisecond().hash(&mut h);
            c.observed_generation.hash(&mut h);
        }
    }
    h.finish()
}

/// Pure stage: the effective open state of every instance and the ClusteredStream's conditions.
pub fn plan(
    cluster: &ClusteredStream,
    instances: &[Arc<StreamInstance>],
    now_ms: i64,
) -> ClusterPlan {
    let mut instances: Vec<&StreamInstance> = instances.iter().map(|i| i.as_ref()).collect();
    instances.sort_by_key(|i| i.name_any());
    let views: Vec<InstanceView> = instances
        .iter()
        .map(|i| InstanceView {
            name: i.name_any(),
            desired_open: i.spec.distro_open,
            healthy: health_of(i),
            open_now: i.status.as_ref().and_then(|s| s.open),
            healthy_since_ms: healthy_since_ms(i),
        })
        .collect();
    let decided = openness::decide(&cluster.spec, &views, now_ms);
    let decisions = decided.instances;

    let mut summaries = Vec::with_capacity(decisions.len());
    let mut per_instance = Vec::with_capacity(decisions.len());
    for ((decision, view), instance) in decisions.into_iter().zip(&views).zip(&instances) {
        summaries.push(InstanceSummary {
            name: view.name.clone(),
            region: instance.spec.region.clone(),
            domain: instance.spec.cloudfront.domain.clone(),
            desired_open: view.desired_open,
            open: decision.open,
            healthy: view.healthy,
            reason: decision.reason.as_str().to_owned(),
        });
        let condition = Desired::new(
            "Open",
            Status::from_bool(decision.open),
            decision.reason.as_str(),
            decision.message.clone(),
        );
        per_instance.push((decision, condition));
    }

    let total = summaries.len();
    let open = summaries.iter().filter(|s| s.open).count();
    let healthy = summaries.iter().filter(|s| s.healthy == Some(true)).count();
    let serving = summaries
        .iter()
        .filter(|s| s.open && s.healthy == Some(true))
        .count();
    let awaiting = summaries
        .iter()
        .filter(|s| s.open && s.healthy.is_none())
        .count();
    let needed = (cluster.spec.min_open as usize).min(total).max(1);

    let ready = if total == 0 {
        Desired::new(
            "Ready",
            Status::False,
            "NoInstances",
            "no StreamInstance names this ClusteredStream",
        )
    } else if serving >= needed {
        Desired::new(
            "Ready",
            Status::True,
            "InstancesServing",
            format!(
                "{serving} of {total} instances are open and healthy (minOpen {})",
                cluster.spec.min_open
            ),
        )
    } else if serving + awaiting >= needed {
        Desired::new(
            "Ready",
            Status::Unknown,
            "AwaitingProbe",
            format!("{awaiting} open instance(s) have no probe result yet"),
        )
    } else {
        Desired::new(
            "Ready",
            Status::False,
            "TooFewServing",
            format!("only {serving} of {total} instances are open and healthy; {needed} needed"),
        )
    };

    let mut problems = Vec::new();
    for s in &summaries {
        if !s.open {
            problems.push(format!("{} closed", s.name));
        } else if s.reason == OpenReason::HeldOpenForMinOpen.as_str() {
            problems.push(format!("{} held open for minOpen", s.name));
        }
        if s.healthy == Some(false) {
            problems.push(format!("{} unhealthy", s.name));
        }
    }
    let degraded = if !problems.is_empty() {
        Desired::new(
            "Degraded",
            Status::True,
            "InstancesImpaired",
            problems.join("; "),
        )
    } else if summaries.iter().any(|s| s.healthy.is_none()) {
        Desired::new(
            "Degraded",
            Status::Unknown,
            "AwaitingProbe",
            "some instances have no probe result yet",
        )
    } else {
        Desired::new(
            "Degraded",
            Status::False,
            "AllServing",
            "every instance is open and healthy",
        )
    };

    ClusterPlan {
        instances: per_instance,
        summaries,
        conditions: vec![ready, degraded],
        open: open as u32,
        healthy: healthy as u32,
        recheck_at_ms: decided.recheck_at_ms,
    }
}

pub async fn reconcile(cluster: Arc<ClusteredStream>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let cluster = ctx.written_clusters.newest(cluster);
    let result = reconcile_inner(&cluster, &ctx).await;
    ctx.metrics.observe_reconcile(CONTROLLER, started.elapsed());
    result
}

async fn reconcile_inner(cluster: &ClusteredStream, ctx: &Context) -> Result<Action, Error> {
    // Deciding on a partial list of instances would write a wrong summary, and could close the
    // table items of instances not listed yet.
    if ctx.instances.wait_until_ready().now_or_never().is_none() {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let name = cluster.name_any();
    let ns = cluster
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(name.clone()))?;
    // Each instance as this operator last wrote it when the cache has not caught up yet: a
    // verdict counts from the moment it is recorded, not from when the watch brings it back.
    let members: Vec<Arc<StreamInstance>> = ctx
        .instances
        .state()
        .into_iter()
        .filter(|i| {
            i.spec.clustered_stream == name && i.metadata.namespace.as_deref() == Some(ns.as_str())
        })
        .map(|i| ctx.written_instances.newest(i))
        .collect();
    // What the namespace may use (with --tenant-policy): refused resources are never touched.
    let judgement = super::tenancy::judge(ctx, cluster, &members).await;
    let edge_members = match &judgement {
        Some(j) => j.effective_members(&members),
        None => members.clone(),
    };
    if let Some(action) = super::edge::finalize(ctx, cluster, &edge_members).await? {
        return Ok(action);
    }
    let effective = judgement.as_ref().map(|j| j.effective(cluster));
    let original = cluster;
    let cluster = effective.as_ref().unwrap_or(cluster);
    // Observe.
    let now_ms = jiff::Timestamp::now().as_millisecond();
    prune(ctx);
    // Decide.
    let plan = plan(cluster, &members, now_ms);
    let duplicates = duplicate_claims(&claims_on_domains_of(
        &ctx.clusters.state(),
        &ctx.instances.state(),
        &ns,
        &members,
    ));
    let table = &cluster.spec.state_table;

    // Apply. Instances first: the ClusteredStream's summary then describes states already
    // written.
    let instance_api: Api<StreamInstance> = Api::namespaced(ctx.client.clone(), &ns);
    for (decision, condition) in &plan.instances {
        let Some(instance) = members.iter().find(|i| i.name_any() == decision.name) else {
            continue;
        };
        let key = claim_key(&table.name, &table.region, &instance.spec.cloudfront.domain);
        let unique = domain_condition(instance, &key, &duplicates);
        let conditions = [condition.clone(), unique];
        write_instance_open(ctx, &instance_api, instance, decision, &conditions).await?;
    }

    // Then the state table, and an SNS event for each change it records.
    let cluster_key = format!("{ns}/{name}");
    let synced = if judgement.as_ref().is_some_and(|j| !j.table) {
        StateSync {
            ok: true,
            condition: Desired::new(
                "StateSynced",
                Status::False,
                "NotAllowedByNamespace",
                format!(
                    "the state table {:?} is not in the namespace's {}; nothing is read or written",
                    table.name,
                    crate::decide::tenancy::ALLOWED_STATE_TABLES
                ),
            ),
            replication: None,
            retire_in: None,
        }
    } else {
        sync_state(ctx, cluster, &cluster_key, &plan, &members, &duplicates).await
    };
    let mut desired_conditions = plan.conditions.clone();
    if let Some(j) = &judgement {
        desired_conditions.push(j.condition());
    }
    desired_conditions.push(synced.condition.clone());
    // TableReplicated is decided only when the table is checked; between checks it stays as
    // written, so it is carried over from the current status.
    match &synced.replication {
        Some(c) => desired_conditions.push(c.clone()),
        None => {
            if let Some(c) = cluster
                .status
                .as_ref()
                .and_then(|s| conditions::find(&s.conditions, "TableReplicated"))
                .filter(|_| !cluster.spec.state_table.replica_regions.is_empty())
            {
                desired_conditions.push(carried_over(c));
            }
        }
    }
    let published = super::publish::stage(ctx, cluster, &cluster_key, &plan, &members).await;
    desired_conditions.extend(published.conditions.iter().cloned());
    let mut retry_soon = !synced.ok;
    if let Some(edge) = super::edge::deploy(ctx, cluster, &edge_members).await {
        retry_soon |= edge.retry;
        desired_conditions.push(edge.condition);
    } else if original.spec.copilot.as_ref().is_some_and(|c| c.enabled) {
        // Enabled, but refused by the namespace's policy.
        desired_conditions.push(Desired::new(
            "EdgeDeployed",
            Status::False,
            "NotAllowedByNamespace",
            "the copilot is not deployed: see the ResourcesAllowed condition",
        ));
    }
    if original.spec.notifications.is_some() && cluster.spec.notifications.is_none() {
        desired_conditions.push(Desired::new(
            "EventsDelivered",
            Status::False,
            "NotAllowedByNamespace",
            format!(
                "the SNS topic is not in the namespace's {}; no event is published",
                crate::decide::tenancy::ALLOWED_SNS_TOPICS
            ),
        ));
    }
    if cluster.spec.notifications.is_some() {
        let d = ctx.notifier.delivery(&cluster_key);
        retry_soon |= d.pending > 0;
        desired_conditions.push(delivery_condition(&d));
    }

    let generation = cluster.metadata.generation;
    let status = cluster.status.clone().unwrap_or_default();
    let unchanged = status.observed_generation == generation
        && status.instances == plan.summaries
        && status.total_instances as usize == plan.summaries.len()
        && status.open_instances == plan.open
        && status.healthy_instances == plan.healthy
        && status.playlist == published.status
        && up_to_date(&status.conditions, &desired_conditions, generation);
    if !unchanged {
        let recorded = newly_recorded_verdicts(&status.instances, &members, jiff::Timestamp::now());
        let next = conditions::merge(
            &status.conditions,
            desired_conditions,
            generation,
            conditions::now(),
        );
        let transitions = conditions::transitions(&status.conditions, &next);
        let status = serde_json::json!({
            "observedGeneration": generation,
            "conditions": next,
            "instances": plan.summaries,
            "totalInstances": plan.summaries.len(),
            "openInstances": plan.open,
            "healthyInstances": plan.healthy,
            "playlist": published.status,
        });
        let api: Api<ClusteredStream> = Api::namespaced(ctx.client.clone(), &ns);
        let written = apply_status(ctx, &api, &name, FIELD_MANAGER, CONTROLLER, status).await?;
        ctx.written_clusters.record(written);
        for seconds in recorded {
            ctx.metrics.verdict_to_cluster.observe(seconds);
        }
        for t in transitions {
            count_transition(ctx, "ClusteredStream", &t.type_, &t.to.status);
            if t.type_ == "ResourcesAllowed" && t.to.status == "False" {
                publish(
                    ctx,
                    original,
                    Event {
                        type_: EventType::Warning,
                        reason: "ResourceNotAllowed".into(),
                        note: Some(t.to.message.clone()),
                        action: "Reconcile".into(),
                        secondary: None,
                    },
                )
                .await;
            }
            if t.type_ == "Ready" && t.from.is_some() {
                let type_ = if t.to.status == "True" {
                    EventType::Normal
                } else {
                    EventType::Warning
                };
                publish(
                    ctx,
                    cluster,
                    Event {
                        type_,
                        reason: format!("Ready{}", t.to.status),
                        note: Some(t.to.message.clone()),
                        action: "Reconcile".into(),
                        secondary: None,
                    },
                )
                .await;
            }
        }
    }
    update_open_gauge(ctx);
    if retry_soon {
        return Ok(Action::requeue(super::RETRY_AFTER_ERROR));
    }
    // Soon enough for the items to be read again (ITEM_REREAD) and a hold-down to end.
    let recheck = plan
        .recheck_at_ms
        .map(|at| Duration::from_millis(u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0) + 50))
        .unwrap_or(RESYNC_PERIOD);
    let recheck = published.requeue.map_or(recheck, |r| r.min(recheck));
    let recheck = synced.retire_in.map_or(recheck, |r| r.min(recheck));
    Ok(Action::requeue(
        recheck.min(RESYNC_PERIOD).min(crate::state::ITEM_REREAD),
    ))
}

/// The stored `TableReplicated` condition, kept as it is between table checks (its reason is
/// mapped back to one of the reasons this operator writes).
fn carried_over(c: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition) -> Desired {
    let status = match c.status.as_str() {
        "True" => Status::True,
        "False" => Status::False,
        _ => Status::Unknown,
    };
    let reason: &'static str = match c.reason.as_str() {
        "ReplicaRequestFailed" => "ReplicaRequestFailed",
        "ReplicasPresent" => "ReplicasPresent",
        _ => "ReplicasRequested",
    };
    Desired::new("TableReplicated", status, reason, c.message.clone())
}

/// The `EventsDelivered` condition from the publisher's delivery state.
fn delivery_condition(d: &crate::notify::Delivery) -> Desired {
    if let Some(e) = &d.parked {
        return Desired::new(
            "EventsDelivered",
            Status::False,
            "TopicUnusable",
            format!(
                "SNS refuses the topic: {e}; {} event(s) waiting, tried again every {}s (other topics are not held up)",
                d.pending,
                crate::notify::PARKED_RETRY.as_secs()
            ),
        );
    }
    match (&d.last_error, d.pending) {
        (Some(e), pending) => Desired::new(
            "EventsDelivered",
            Status::False,
            "PublishFailing",
            format!("{pending} event(s) waiting; retrying with backoff; last error: {e}"),
        ),
        (None, 0) if !d.dropped_recently => Desired::new(
            "EventsDelivered",
            Status::True,
            "Delivered",
            format!("{} event(s) published", d.delivered),
        ),
        (None, 0) => Desired::new(
            "EventsDelivered",
            Status::False,
            "EventsDropped",
            format!(
                "{} event(s) dropped (queue full or refused by SNS); their changes are announced again when the items are next read",
                d.dropped
            ),
        ),
        (None, pending) => Desired::new(
            "EventsDelivered",
            Status::Unknown,
            "Publishing",
            format!("{pending} event(s) being published"),
        ),
    }
}

/// The outcome of writing a ClusteredStream's instances to its state table.
struct StateSync {
    ok: bool,
    condition: Desired,
    /// `TableReplicated`, when the table is created with replicas and was checked this time.
    replication: Option<Desired>,
    /// An unclaimed item waits out its grace (see `retire_removed`): reconcile again by then.
    retire_in: Option<Duration>,
}

/// Writes each instance's effective state to the state table (opens before closes, so the
/// table never shows fewer open instances than it must), publishing an SNS event for each
/// recorded change. An item whose domain another StreamInstance also claims in this table is
/// not written at all (see [`duplicate_claims`]). Failures become the `StateSynced` condition;
/// they never stop the status, and one item's failure (a conflict, a malformed item) does not
/// keep the others from being written. A missing, changed or malformed item is rewritten, with
/// a Warning Event saying what was wrong.
async fn sync_state(
    ctx: &Context,
    cluster: &ClusteredStream,
    cluster_key: &str,
    plan: &ClusterPlan,
    members: &[Arc<StreamInstance>],
    duplicates: &Duplicates,
) -> StateSync {
    let spec = &cluster.spec.state_table;
    let handle = ctx.table(&spec.name, &spec.region);
    let report = |e: &StateError| StateSync {
        ok: false,
        condition: Desired::new("StateSynced", Status::False, e.reason(), e.to_string()),
        replication: None,
        retire_in: None,
    };
    if let Some(e) = &handle.blocked {
        return report(e);
    }
    let fail = |e: StateError| {
        tracing::warn!(cluster = cluster_key, table = %spec.name, error = %e, "state table sync failed");
        ctx.metrics.state_errors.inc();
        let sync = report(&e);
        ctx.table_outcome(&spec.name, &spec.region, TableOutcome::Failed(e));
        sync
    };
    let table = handle.table;
    let mut replication = None;
    if handle.check_due {
        match table.ensure(spec.create, &spec.replica_regions).await {
            Ok(outcomes) => {
                replication = replication_condition(&outcomes);
                let replicas_fine = outcomes.iter().all(|o| o.result.is_ok());
                ctx.table_outcome(
                    &spec.name,
                    &spec.region,
                    TableOutcome::Checked { replicas_fine },
                );
            }
            Err(e) => return fail(e),
        }
    }
    let announce = cluster.spec.notifications.is_some();
    let mut order: Vec<&(OpenDecision, Desired)> = plan.instances.iter().collect();
    order.sort_by_key(|(d, _)| !d.open);
    let mut written = 0;
    let mut item_errors: Vec<StateError> = Vec::new();
    let mut repairs: Vec<String> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    for (decision, _) in order {
        let Some(instance) = members.iter().find(|i| i.name_any() == decision.name) else {
            continue;
        };
        let ns = instance.namespace().unwrap_or_default();
        let domain = instance.spec.cloudfront.domain.clone();
        if let Some(others) =
            duplicates.get(&(ns.clone(), claim_key(&spec.name, &spec.region, &domain)))
        {
            refused.push(format!("{domain} (claimed by {})", others.join(", ")));
            continue;
        }
        let desired = crate::state::Desired {
            domain,
            distro_open: decision.open,
            desired_open: instance.spec.distro_open,
            healthy: health_of(instance),
            region: instance.spec.region.clone(),
            cluster: cluster_key.to_owned(),
            name: format!("{ns}/{}", decision.name),
            reason: decision.reason.as_str().to_owned(),
        };
        let (cached, known) = ctx.items.get(&table, &desired.domain);
        let from_table = cached.is_none();
        let take_over = instance
            .annotations()
            .get(crate::state::TAKE_OVER_ANNOTATION)
            .is_some_and(|v| v == "true");
        match table
            .sync(&desired, cached, known.as_ref(), announce, take_over)
            .await
        {
            Ok(synced) => {
                if announce && let Some(read) = &synced.read {
                    replay_unannounced(ctx, cluster, &table, renditions_of(instance), read);
                }
                // A cached copy used again keeps its age, so it is read again in time.
                if from_table || synced.written {
                    ctx.items.remember(&table, &synced.item);
                }
                if synced.written {
                    written += 1;
                    ctx.metrics.state_writes.inc();
                    // One reason per kind of repair: Events of one reason on one object are
                    // folded into a series that keeps the first note.
                    let what = match (&synced.repaired, &synced.outside_change) {
                        (Some(m), _) => Some((
                            "StateItemMalformed",
                            format!("was malformed ({})", m.describe()),
                        )),
                        (None, Some(change)) if change.starts_with(crate::state::MISSING) => {
                            Some(("StateItemMissing", format!("had gone ({change})")))
                        }
                        (None, Some(change)) => Some((
                            "StateItemChanged",
                            format!("had been changed outside the operator ({change})"),
                        )),
                        (None, None) => None,
                    };
                    if let Some((reason, what)) = what {
                        let note = format!(
                            "state-table item {} of {} {what}; rewritten as decided (version {})",
                            desired.domain, desired.name, synced.item.version
                        );
                        tracing::warn!(cluster = cluster_key, "{note}");
                        repairs.push(note.clone());
                        publish(
                            ctx,
                            cluster,
                            Event {
                                type_: EventType::Warning,
                                reason: reason.into(),
                                note: Some(note),
                                action: "Repair".into(),
                                secondary: None,
                            },
                        )
                        .await;
                    }
                    let old = synced.previous.as_ref().map(Item::state);
                    notify(
                        ctx,
                        cluster,
                        &table,
                        renditions_of(instance),
                        old,
                        &synced.item,
                        synced.repaired.is_some(),
                    );
                }
            }
            Err(e) if e.is_per_item() => {
                ctx.items.expire(&table, &desired.domain);
                if matches!(e, StateError::NotOwner { .. }) {
                    publish(
                        ctx,
                        instance.as_ref(),
                        Event {
                            type_: EventType::Warning,
                            reason: "StateItemNotOwned".into(),
                            note: Some(e.to_string()),
                            action: "WriteStateItem".into(),
                            secondary: None,
                        },
                    )
                    .await;
                }
                ctx.metrics.state_errors.inc();
                tracing::warn!(cluster = cluster_key, domain = %desired.domain, error = %e,
                    "could not write a state-table item; writing the others");
                item_errors.push(e);
            }
            Err(e) => {
                ctx.items.expire(&table, &desired.domain);
                return fail(e);
            }
        }
    }
    let retire_in = match retire_removed(ctx, cluster, cluster_key, &table, members).await {
        Ok(wait) => wait,
        Err(e) => return fail(e),
    };
    ctx.table_outcome(&spec.name, &spec.region, TableOutcome::Synced);
    if written > 0 {
        tracing::debug!(cluster = cluster_key, written, "state table updated");
    }
    let in_sync = plan
        .instances
        .len()
        .saturating_sub(item_errors.len() + refused.len());
    let condition = if !refused.is_empty() {
        Desired::new(
            "StateSynced",
            Status::False,
            "DuplicateDomain",
            format!(
                "not written: {}; each domain must belong to one StreamInstance per table ({in_sync} item(s) in sync)",
                refused.join("; ")
            ),
        )
    } else if let Some(first) = item_errors.first() {
        Desired::new(
            "StateSynced",
            Status::False,
            first.reason(),
            item_errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    } else if !repairs.is_empty() {
        Desired::new(
            "StateSynced",
            Status::True,
            "ItemsRepaired",
            repairs.join("; "),
        )
    } else {
        Desired::new(
            "StateSynced",
            Status::True,
            "InSync",
            format!(
                "{in_sync} item(s) in sync in table {} ({})",
                spec.name, spec.region
            ),
        )
    };
    StateSync {
        ok: item_errors.is_empty(),
        replication,
        condition,
        retire_in,
    }
}

/// A state-table item's identity: table name, table region, domain.
pub type ClaimKey = (String, String, String);

fn claim_key(table: &str, region: &str, domain: &str) -> ClaimKey {
    (table.to_owned(), region.to_owned(), domain.to_owned())
}

/// Items claimed by more than one StreamInstance of one namespace, by (namespace, item), with
/// the claimants (`namespace/name`). Across namespaces, the item's owner decides (see
/// [`crate::state::Desired::may_write_over`]): an instance of another namespace cannot make the
/// owner's item stop being written.
pub type Duplicates = std::collections::BTreeMap<(String, ClaimKey), Vec<String>>;

/// Pure: which (table, domain) pairs more than one StreamInstance of the same namespace claims,
/// from every instance's claim (`namespace/name`; `None` when its ClusteredStream is unknown:
/// it writes nothing).
pub fn duplicate_claims(claims: &[(Option<ClaimKey>, String)]) -> Duplicates {
    let mut by_key: Duplicates = Default::default();
    for (key, instance) in claims {
        if let Some(key) = key {
            let ns = instance.split('/').next().unwrap_or_default().to_owned();
            by_key
                .entry((ns, key.clone()))
                .or_default()
                .push(instance.clone());
        }
    }
    by_key.retain(|_, v| {
        v.sort();
        v.len() > 1
    });
    by_key
}

/// Every StreamInstance's claim on a state-table item, from the caches.
fn claims(ctx: &Context) -> Vec<(Option<ClaimKey>, String)> {
    claims_of(&ctx.clusters.state(), &ctx.instances.state())
}

/// Pure: the claims of the instances of namespace `ns` that name a domain one of `members`
/// names: all that [`duplicate_claims`] needs to judge the members' items (a duplicate is one
/// domain claimed twice in one namespace), without cloning every instance's claim on each
/// reconcile.
fn claims_on_domains_of(
    clusters: &[Arc<ClusteredStream>],
    instances: &[Arc<StreamInstance>],
    ns: &str,
    members: &[Arc<StreamInstance>],
) -> Vec<(Option<ClaimKey>, String)> {
    let domains: BTreeSet<&str> = members
        .iter()
        .map(|m| m.spec.cloudfront.domain.as_str())
        .collect();
    let near: Vec<Arc<StreamInstance>> = instances
        .iter()
        .filter(|i| {
            i.metadata.namespace.as_deref() == Some(ns)
                && domains.contains(i.spec.cloudfront.domain.as_str())
        })
        .cloned()
        .collect();
    let clusters: Vec<Arc<ClusteredStream>> = clusters
        .iter()
        .filter(|c| c.metadata.namespace.as_deref() == Some(ns))
        .cloned()
        .collect();
    claims_of(&clusters, &near)
}

/// Pure: every instance's claim (`namespace/name`), with the item it names through its
/// ClusteredStream (`None` when that ClusteredStream is unknown). The ClusteredStreams are
/// indexed once: searching them per instance cost instances x ClusteredStreams string
/// comparisons (a million at 1,430 instances), and when every reconcile did that over every
/// instance the 10,000-playlist scale run spent half the operator's CPU here.
fn claims_of(
    clusters: &[Arc<ClusteredStream>],
    instances: &[Arc<StreamInstance>],
) -> Vec<(Option<ClaimKey>, String)> {
    let tables: HashMap<(&str, &str), &crate::resources::StateTableSpec> = clusters
        .iter()
        .filter_map(|c| {
            let ns = c.metadata.namespace.as_deref()?;
            let name = c.metadata.name.as_deref()?;
            Some(((ns, name), &c.spec.state_table))
        })
        .collect();
    instances
        .iter()
        .map(|i| {
            let ns = i.metadata.namespace.as_deref().unwrap_or_default();
            let key = tables
                .get(&(ns, i.spec.clustered_stream.as_str()))
                .map(|t| claim_key(&t.name, &t.region, &i.spec.cloudfront.domain));
            (
                key,
                format!("{ns}/{}", i.metadata.name.as_deref().unwrap_or_default()),
            )
        })
        .collect()
}

/// The `DomainUnique` condition of an instance.
fn domain_condition(instance: &StreamInstance, key: &ClaimKey, duplicates: &Duplicates) -> Desired {
    let ns = instance.namespace().unwrap_or_default();
    let me = format!("{ns}/{}", instance.name_any());
    match duplicates.get(&(ns, key.clone())) {
        Some(all) => Desired::new(
            "DomainUnique",
            Status::False,
            "DuplicateDomain",
            format!(
                "{} in table {} is also claimed by {}; the item is written for none of them until one is changed or deleted",
                key.2,
                key.0,
                all.iter()
                    .filter(|o| **o != me)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        None => Desired::new(
            "DomainUnique",
            Status::True,
            "SoleClaimant",
            format!(
                "no other StreamInstance claims {} in table {}",
                key.2, key.0
            ),
        ),
    }
}

/// How often the caches of instances, ClusteredStreams and topics that are gone are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// Forgets what the caches keep for instances, ClusteredStreams and topics that are gone (at
/// most every [`PRUNE_EVERY`]).
fn prune(ctx: &Context) {
    {
        if !ctx.items.prune_due(PRUNE_EVERY) {
            return;
        }
    }
    let claims = claims(ctx);
    let live: BTreeSet<&ClaimKey> = claims.iter().filter_map(|(k, _)| k.as_ref()).collect();
    ctx.items.retain(|k| live.contains(k));
    let clusters = ctx.clusters.state();
    let keys: BTreeSet<String> = clusters
        .iter()
        .map(|c| format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any()))
        .collect();
    let topics: BTreeSet<String> = clusters
        .iter()
        .filter_map(|c| c.spec.notifications.as_ref())
        .map(|n| n.sns_topic_arn.clone())
        .collect();
    ctx.swept
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|k, _| keys.contains(k));
    ctx.unclaimed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|k, _| keys.contains(k));
    ctx.notifier.retain(&keys, &topics);
}

/// The `TableReplicated` condition from the replica requests, if any replica is wanted.
fn replication_condition(outcomes: &[crate::state::ReplicaOutcome]) -> Option<Desired> {
    use crate::state::ReplicaState;
    if outcomes.is_empty() {
        return None;
    }
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            o.result
                .as_ref()
                .err()
                .map(|e| format!("{}: {e}", o.region))
        })
        .collect();
    if !failed.is_empty() {
        return Some(Desired::new(
            "TableReplicated",
            Status::False,
            "ReplicaRequestFailed",
            format!("could not request replica(s): {}", failed.join("; ")),
        ));
    }
    let pending: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.result == Ok(ReplicaState::Requested))
        .map(|o| o.region.as_str())
        .collect();
    Some(if pending.is_empty() {
        Desired::new(
            "TableReplicated",
            Status::True,
            "ReplicasPresent",
            "every replica region is listed",
        )
    } else {
        Desired::new(
            "TableReplicated",
            Status::Unknown,
            "ReplicasRequested",
            format!(
                "replica(s) requested, not listed yet: {}",
                pending.join(", ")
            ),
        )
    })
}

/// Closes the table items of this ClusteredStream that no instance claims any more: the
/// instance was deleted, while the operator ran or not. Runs once per ClusteredStream at
/// start-up, then only when a member leaves or the table changes, so a steady or growing
/// cluster costs no scans. Never runs with no members at all: deleting every instance (a
/// teardown, or an accident) leaves the table as it was rather than closing every region. A
/// write that meets a newer version is left to the next sweep, which re-reads.
///
/// An item is closed only once it has been unclaimed for [`crate::state::RETIRE_GRACE`], and
/// never while the ClusteredStream is being deleted: a teardown (the ClusteredStream, or the
/// CRDs, which delete every object in no fixed order) passes through moments where some
/// instances are gone and others not, and closing those regions would take them off the air
/// for nothing. Returns how long until a waiting item is due.
async fn retire_removed(
    ctx: &Context,
    cluster: &ClusteredStream,
    cluster_key: &str,
    table: &StateTable,
    members: &[Arc<StreamInstance>],
) -> Result<Option<Duration>, StateError> {
    let domains: BTreeSet<String> = members
        .iter()
        .map(|i| i.spec.cloudfront.domain.clone())
        .collect();
    if domains.is_empty() || cluster.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let sweep: Swept = (table.name().to_owned(), table.region().to_owned(), domains);
    {
        let mut swept = ctx.swept.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = swept.get_mut(cluster_key)
            && !sweep_due(last, &sweep)
        {
            // Only instances added: nothing can have been orphaned.
            *last = sweep;
            return Ok(None);
        }
    }
    let items = table.items_of_cluster(cluster_key).await?;
    let announce = cluster.spec.notifications.is_some();
    let mut complete = true;
    let candidates = crate::state::to_retire(&items, &sweep.2);
    let (due, retire_in) = {
        let mut unclaimed = ctx.unclaimed.lock().unwrap_or_else(|p| p.into_inner());
        let since = unclaimed.entry(cluster_key.to_owned()).or_default();
        let domains: Vec<&str> = candidates
            .iter()
            .map(|i| i.desired.domain.as_str())
            .collect();
        let due = crate::state::retire_due(
            since,
            &domains,
            std::time::Instant::now(),
            crate::state::RETIRE_GRACE,
        );
        if since.is_empty() {
            unclaimed.remove(cluster_key);
        }
        due
    };
    if retire_in.is_some() {
        // Sweep again when the wait is over.
        complete = false;
    }
    for item in candidates
        .into_iter()
        .filter(|i| due.contains(&i.desired.domain))
    {
        let retired = item.retired();
        if announce {
            replay_unannounced(ctx, cluster, table, Vec::new(), item);
        }
        match table
            .put(&retired, crate::state::Base::Item(item), announce)
            .await
        {
            Ok(written) => {
                ctx.metrics.state_writes.inc();
                ctx.metrics.items_retired.inc();
                tracing::info!(
                    cluster = cluster_key,
                    domain = %retired.domain,
                    instance = %retired.name,
                    "closed the state-table item of a removed instance"
                );
                ctx.items.remember(table, &written);
                notify(
                    ctx,
                    cluster,
                    table,
                    Vec::new(),
                    Some(item.state()),
                    &written,
                    false,
                );
                publish(
                    ctx,
                    cluster,
                    Event {
                        type_: EventType::Normal,
                        reason: crate::state::REMOVED_REASON.into(),
                        note: Some(format!(
                            "closed state-table item {} (was {}): no StreamInstance of this ClusteredStream claims it any more",
                            retired.domain, retired.name
                        )),
                        action: "Retire".into(),
                        secondary: None,
                    },
                )
                .await;
            }
            Err(StateError::Conflict(domain)) => {
                tracing::debug!(domain, "item changed while retiring it; sweeping again");
                complete = false;
            }
            Err(e) => return Err(e),
        }
    }
    if complete {
        ctx.swept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cluster_key.to_owned(), sweep);
    }
    Ok(retire_in)
}

/// Whether the members of a ClusteredStream changed since its `last` sweep in a way that can
/// leave an item unclaimed: another table, or a domain gone. Added instances alone cannot.
fn sweep_due(last: &Swept, now: &Swept) -> bool {
    last.0 != now.0 || last.1 != now.1 || !last.2.is_subset(&now.2)
}

/// The per-rendition detail an SNS event carries, from the instance's status.
fn renditions_of(instance: &StreamInstance) -> Vec<RenditionDetail> {
    instance
        .status
        .as_ref()
        .map(|s| {
            s.renditions
                .iter()
                .map(|r| RenditionDetail {
                    uri: r.uri.clone(),
                    fresh: r.fresh,
                    last_error: r.last_error.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Publishes the SNS event for a recorded change from `old` to what `item` records, if the
/// ClusteredStream has a topic and the change is one of health or open state. The table records
/// the delivery (`announced_version`), so a change whose event is lost with the process is
/// announced again after a restart.
fn notify(
    ctx: &Context,
    cluster: &ClusteredStream,
    table: &StateTable,
    renditions: Vec<RenditionDetail>,
    old: Option<InstanceState>,
    item: &Item,
    repaired: bool,
) {
    let new = item.state();
    let type_ = if repaired {
        "ItemRepaired"
    } else {
        match InstanceEvent::type_for(old.as_ref(), &new) {
            Some(t) => t,
            None => return,
        }
    };
    let instance = item
        .desired
        .name
        .rsplit_once('/')
        .map_or(item.desired.name.as_str(), |(_, n)| n);
    let mut entry = crate::dashboard::timeline::Entry::new(
        jiff::Timestamp::now(),
        type_,
        describe_change(old.as_ref(), &new, &item.desired.reason),
    )
    .instance(instance);
    if cluster.spec.notifications.is_some() {
        entry = entry.seq(item.sequence());
    }
    ctx.feed.record(&item.desired.cluster, entry);
    let Some(notifications) = &cluster.spec.notifications else {
        return;
    };
    let event = InstanceEvent {
        schema_version: crate::notify::SCHEMA_VERSION,
        type_,
        sequence: item.sequence(),
        cluster: item.desired.cluster.clone(),
        instance: item.desired.name.clone(),
        region: item.desired.region.clone(),
        domain: item.desired.domain.clone(),
        old,
        new,
        reason: item.desired.reason.clone(),
        renditions,
        renditions_summary: None,
        timestamp: jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string(),
    };
    let ack = Ack {
        table: table.clone(),
        domain: item.desired.domain.clone(),
        version: item.version,
    };
    ctx.notifier
        .publish(&notifications.sns_topic_arn, &event, Some(ack));
}

/// A state-table change in words, for the dashboard's timeline: `healthy -> stale; open ->
/// closed (FailedOver)`.
pub fn describe_change(old: Option<&InstanceState>, new: &InstanceState, reason: &str) -> String {
    let health = |h: Option<bool>| match h {
        Some(true) => "healthy",
        Some(false) => "stale",
        None => "not judged",
    };
    let open = |o: bool| if o { "open" } else { "closed" };
    let text = match old {
        None => format!("registered: {}, {}", health(new.healthy), open(new.open)),
        Some(old) => {
            let mut parts = Vec::new();
            if old.healthy != new.healthy {
                parts.push(format!(
                    "{} -> {}",
                    health(old.healthy),
                    health(new.healthy)
                ));
            }
            if old.open != new.open {
                parts.push(format!("{} -> {}", open(old.open), open(new.open)));
            }
            if parts.is_empty() {
                parts.push(format!("{}, {}", health(new.healthy), open(new.open)));
            }
            parts.join("; ")
        }
    };
    if reason.is_empty() {
        text
    } else {
        format!("{text} ({reason})")
    }
}

/// Announces again the last change recorded in `read` (an item as first read by this process)
/// when its event was owed and never confirmed delivered: the operator stopped with it queued.
/// Earlier changes still queued then are not recoverable; their sequence numbers are skipped.
fn replay_unannounced(
    ctx: &Context,
    cluster: &ClusteredStream,
    table: &StateTable,
    renditions: Vec<RenditionDetail>,
    read: &Item,
) {
    let Some((old, _)) = read.unannounced_change() else {
        return;
    };
    if ctx
        .notifier
        .queued(&read.desired.cluster, &read.desired.domain, read.sequence())
    {
        return;
    }
    tracing::info!(
        domain = %read.desired.domain,
        sequence = read.sequence(),
        "announcing a change whose event was not confirmed delivered before a restart"
    );
    ctx.metrics.sns_replayed.inc();
    notify(ctx, cluster, table, renditions, old, read, false);
}

async fn write_instance_open(
    ctx: &Context,
    api: &Api<StreamInstance>,
    instance: &StreamInstance,
    decision: &OpenDecision,
    desired: &[Desired],
) -> Result<(), Error> {
    let generation = instance.metadata.generation;
    let status = instance.status.clone().unwrap_or_default();
    let Some(condition) = desired.first() else {
        return Ok(());
    };
    if status.open == Some(decision.open) && up_to_date(&status.conditions, desired, generation) {
        return Ok(());
    }
    let next = conditions::merge(
        &status.conditions,
        desired.to_vec(),
        generation,
        conditions::now(),
    );
    let patch = serde_json::json!({ "open": decision.open, "conditions": next });
    let written = apply_status(
        ctx,
        api,
        &instance.name_any(),
        FIELD_MANAGER,
        CONTROLLER,
        patch,
    )
    .await?;
    ctx.written_instances.record(written);

    let before = conditions::find(&status.conditions, "Open");
    let reason_changed = before.is_none_or(|c| c.reason != condition.reason);
    if status.open != Some(decision.open) || reason_changed {
        count_transition(ctx, "StreamInstance", "Open", condition.status.as_str());
        let (type_, reason) = match decision.reason {
            OpenReason::HeldOpenForMinOpen => (EventType::Warning, "CloseRefused"),
            OpenReason::FailedOver => (EventType::Warning, "FailedOver"),
            OpenReason::HoldDown => (EventType::Normal, "HoldDown"),
            _ if decision.open => (EventType::Normal, "Opened"),
            _ => (EventType::Normal, "Closed"),
        };
        publish(
            ctx,
            instance,
            Event {
                type_,
                reason: reason.into(),
                note: Some(decision.message.clone()),
                action: "UpdateOpenState".into(),
                secondary: None,
            },
        )
        .await;
    }
    Ok(())
}

fn update_open_gauge(ctx: &Context) {
    let open: i64 = ctx
        .clusters
        .state()
        .iter()
        .filter_map(|c| c.status.as_ref())
        .map(|s| i64::from(s.open_instances))
        .sum();
    ctx.metrics.open_instances.set(open);
}

pub fn error_policy(cluster: Arc<ClusteredStream>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(
        clustered_stream = %cluster.name_any(),
        error = %error,
        "{OPERATOR_NAME}: reconciling ClusteredStream failed; retrying"
    );
    ctx.metrics.observe_error(CONTROLLER, error.kind());
    Action::requeue(RETRY_AFTER_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{ClusteredStreamSpec, StreamInstanceSpec, StreamInstanceStatus};

    fn cluster(min_open: u32) -> ClusteredStream {
        let mut spec: ClusteredStreamSpec = serde_json::from_value(serde_json::json!({
            "stateTable": {"name": "cvs-state", "region": "us-east-1"}
        }))
        .unwrap();
        spec.min_open = min_open;
        ClusteredStream::new("event", spec)
    }

    fn instance(name: &str, open: bool, healthy: Option<bool>) -> Arc<StreamInstance> {
        let spec: StreamInstanceSpec = serde_json::from_value(serde_json::json!({
            "clusteredStream": "event", "region": "us-east-1",
            "cloudfront": {"domain": format!("{name}.cloudfront.net")},
            "origin": {"url": "https://o.example.com/master.m3u8"},
            "distroOpen": open,
        }))
        .unwrap();
        let mut i = StreamInstance::new(name, spec);
        if let Some(h) = healthy {
            let c = conditions::merge(
                &[],
                vec![Desired::new("Healthy", Status::from_bool(h), "Probe", "")],
                None,
                conditions::now(),
            );
            i.status = Some(StreamInstanceStatus {
                conditions: c,
                ..Default::default()
            });
        }
        Arc::new(i)
    }

    #[test]
    fn a_verdict_is_timed_once_when_the_cluster_status_first_records_it() {
        let summary = |name: &str, healthy: Option<bool>| InstanceSummary {
            name: name.into(),
            region: "us-east-1".into(),
            domain: format!("{name}.cloudfront.net"),
            desired_open: true,
            open: true,
            healthy,
            reason: "DesiredOpen".into(),
        };
        let changed_at = |i: Arc<StreamInstance>, at: &str| {
            let mut i = Arc::unwrap_or_clone(i);
            i.status.as_mut().unwrap().health_changed_at = Some(at.into());
            Arc::new(i)
        };
        let now: jiff::Timestamp = "2026-12-02T10:00:10.000Z".parse().unwrap();
        let members = vec![
            // Went stale 2.5 s ago; the status still says healthy: timed.
            changed_at(
                instance("flipped", true, Some(false)),
                "2026-12-02T10:00:07.500Z",
            ),
            // Recorded already: not timed again.
            changed_at(
                instance("recorded", true, Some(false)),
                "2026-12-02T10:00:01.000Z",
            ),
            // Not in the summary before (new): not timed.
            changed_at(
                instance("new", true, Some(true)),
                "2026-12-02T10:00:09.000Z",
            ),
            // Its time cannot be read, or lies ahead (clock skew): left out, or 0.
            changed_at(instance("garbled", true, Some(true)), "yesterday"),
            changed_at(
                instance("ahead", true, Some(true)),
                "2026-12-02T10:00:15.000Z",
            ),
            // No verdict yet.
            instance("unjudged", true, None),
        ];
        let before = vec![
            summary("flipped", Some(true)),
            summary("recorded", Some(false)),
            summary("garbled", Some(false)),
            summary("ahead", None),
            summary("unjudged", Some(true)),
        ];
        let timed = newly_recorded_verdicts(&before, &members, now);
        assert_eq!(timed, vec![2.5, 0.0]);
    }

    #[test]
    fn only_what_the_group_reads_of_an_instance_changes_its_fingerprint() {
        use crate::resources::RenditionStatus;
        let base = Arc::unwrap_or_clone(instance("east", true, Some(true)));
        let fp = inputs_fingerprint;
        let same = fp(&base);
        assert_eq!(fp(&base.clone()), same);

        // What the instance reconciler rewrites at every refresh leaves it alone.
        let mut detail = base.clone();
        let status = detail.status.as_mut().unwrap();
        status.renditions = vec![RenditionStatus {
            uri: "https://o.example.com/v1.m3u8".into(),
            kind: "video".into(),
            fresh: false,
            ..Default::default()
        }];
        status.renditions_total = Some(7);
        status.renditions_stale = Some(1);
        status.lag_seconds = Some(2.5);
        status.conditions[0].message = "moved on".into();
        assert_eq!(fp(&detail), same, "detail alone");

        // Everything the plan, the table sync or the events read changes it.
        let mut changes: Vec<(&str, StreamInstance)> = Vec::new();
        let mut c = base.clone();
        c.status.as_mut().unwrap().conditions[0].status = "False".into();
        changes.push(("Healthy status", c));
        let mut c = base.clone();
        c.status.as_mut().unwrap().conditions[0].reason = "NoNewSegment".into();
        changes.push(("Healthy reason", c));
        let mut c = base.clone();
        let t = &mut c.status.as_mut().unwrap().conditions[0].last_transition_time;
        t.0 += jiff::SignedDuration::from_secs(1);
        changes.push(("transition time", c));
        let mut c = base.clone();
        c.status.as_mut().unwrap().open = Some(false);
        changes.push(("open", c));
        let mut c = base.clone();
        c.status.as_mut().unwrap().health_changed_at = Some("2026-12-02T10:00:00.123Z".into());
        changes.push(("healthChangedAt", c));
        let mut c = base.clone();
        c.metadata.generation = Some(2);
        changes.push(("generation", c));
        let mut c = base.clone();
        c.annotations_mut()
            .insert(crate::state::TAKE_OVER_ANNOTATION.into(), "true".into());
        changes.push(("take-over annotation", c));
        let mut c = base.clone();
        c.labels_mut().insert("team".into(), "sports".into());
        changes.push(("label", c));
        let mut c = base.clone();
        c.status.as_mut().unwrap().observed_generation = Some(3);
        changes.push(("observed generation", c));
        let mut c = base.clone();
        c.metadata.deletion_timestamp = c
            .status
            .as_ref()
            .unwrap()
            .conditions
            .first()
            .map(|c| c.last_transition_time.clone());
        changes.push(("deletion", c));
        let mut c = base.clone();
        c.status = None;
        changes.push(("no status", c));
        for (what, changed) in changes {
            assert_ne!(fp(&changed), same, "{what}");
        }
    }

    fn condition<'a>(plan: &'a ClusterPlan, type_: &str) -> &'a Desired {
        plan.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn no_instances_is_not_ready() {
        let p = plan(&cluster(1), &[], 0);
        assert_eq!(condition(&p, "Ready").reason, "NoInstances");
    }

    #[test]
    fn ready_when_enough_instances_are_open_and_healthy() {
        let p = plan(
            &cluster(1),
            &[
                instance("b", true, Some(true)),
                instance("a", false, Some(true)),
            ],
            0,
        );
        assert_eq!(condition(&p, "Ready").status, Status::True);
        assert_eq!(condition(&p, "Degraded").status, Status::True);
        assert_eq!(p.open, 1);
        assert_eq!(p.healthy, 2);
        // Summaries are sorted by name.
        assert_eq!(p.summaries[0].name, "a");
        assert!(!p.summaries[0].open);
    }

    #[test]
    fn unknown_health_gives_unknown_readiness() {
        let p = plan(&cluster(1), &[instance("a", true, None)], 0);
        assert_eq!(condition(&p, "Ready").status, Status::Unknown);
        assert_eq!(condition(&p, "Degraded").status, Status::Unknown);
    }

    #[test]
    fn last_open_instance_is_held_open() {
        let p = plan(&cluster(1), &[instance("a", false, Some(true))], 0);
        let (decision, cond) = &p.instances[0];
        assert!(decision.open);
        assert_eq!(cond.reason, "HeldOpenForMinOpen");
        assert!(condition(&p, "Degraded").message.contains("held open"));
    }

    #[test]
    fn unhealthy_open_instances_are_not_ready() {
        let p = plan(&cluster(1), &[instance("a", true, Some(false))], 0);
        assert_eq!(condition(&p, "Ready").status, Status::False);
        assert_eq!(condition(&p, "Ready").reason, "TooFewServing");
    }

    #[test]
    fn sweeps_only_when_a_domain_may_have_been_orphaned() {
        let swept = |table: &str, domains: &[&str]| -> Swept {
            (
                table.to_owned(),
                "us-east-1".to_owned(),
                domains.iter().map(|d| d.to_string()).collect(),
            )
        };
        let last = swept("t", &["a", "b"]);
        assert!(!sweep_due(&last, &swept("t", &["a", "b"])));
        assert!(
            !sweep_due(&last, &swept("t", &["a", "b", "c"])),
            "added only"
        );
        assert!(sweep_due(&last, &swept("t", &["a"])), "b removed");
        assert!(sweep_due(&last, &swept("t", &["a", "c"])), "b replaced");
        assert!(
            sweep_due(&last, &swept("other", &["a", "b"])),
            "another table"
        );
    }

    #[test]
    fn replication_condition_reports_failures_then_pending_then_present() {
        use crate::state::{ReplicaOutcome, ReplicaState};
        let o = |region: &str, result| ReplicaOutcome {
            region: region.into(),
            result,
        };
        assert_eq!(replication_condition(&[]), None);
        let c = replication_condition(&[
            o("eu-west-1", Ok(ReplicaState::Present)),
            o("ap-south-1", Err("Nothing to update".into())),
        ])
        .unwrap();
        assert_eq!(
            (c.status, c.reason),
            (Status::False, "ReplicaRequestFailed")
        );
        assert!(c.message.contains("ap-south-1: Nothing to update"));
        let c = replication_condition(&[o("eu-west-1", Ok(ReplicaState::Requested))]).unwrap();
        assert_eq!((c.status, c.reason), (Status::Unknown, "ReplicasRequested"));
        let c = replication_condition(&[o("eu-west-1", Ok(ReplicaState::Present))]).unwrap();
        assert_eq!(c.status, Status::True);
    }

    #[test]
    fn hold_down_is_measured_from_the_millisecond_health_change() {
        let i = instance("a", true, Some(true));
        let mut i = (*i).clone();
        let status = i.status.as_mut().unwrap();
        let c = &mut status.conditions[0];
        c.last_transition_time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-12-01T10:00:05Z".parse().unwrap(),
        );
        let second = 1_796_119_205_000;
        assert_eq!(healthy_since_ms(&i), Some(second), "no healthChangedAt");
        i.status.as_mut().unwrap().health_changed_at = Some("2026-12-01T10:00:05.875Z".into());
        assert_eq!(healthy_since_ms(&i), Some(second + 875));
        // An older or unreadable time never makes the hold-down end before the condition's.
        i.status.as_mut().unwrap().health_changed_at = Some("2026-12-01T09:00:00.000Z".into());
        assert_eq!(healthy_since_ms(&i), Some(second));
        i.status.as_mut().unwrap().health_changed_at = Some("yesterday".into());
        assert_eq!(healthy_since_ms(&i), Some(second));
    }

    #[test]
    fn health_without_a_verdict_is_unknown_never_fresh() {
        let mut i = (*instance("a", true, Some(true))).clone();
        let c = &mut i.status.as_mut().unwrap().conditions[0];
        c.status = "Unknown".into();
        c.reason = "AwaitingProbe".into();
        assert_eq!(health_of(&i), None);
        assert_eq!(healthy_since_ms(&i), None);
    }

    #[test]
    fn a_domain_claimed_twice_in_one_table_is_a_duplicate() {
        let k = |t: &str, d: &str| Some(claim_key(t, "us-east-1", d));
        let d = duplicate_claims(&[
            (k("t", "a.net"), "ns1/x".into()),
            (k("t", "a.net"), "ns1/y".into()),
            (k("t", "b.net"), "ns1/z".into()),
            (k("other", "b.net"), "ns1/w".into()),
            (k("t", "a.net"), "ns2/other-tenant".into()),
            (None, "ns4/orphan".into()),
        ]);
        assert_eq!(d.len(), 1, "another namespace is left to ownership");
        assert_eq!(
            d[&("ns1".to_owned(), claim_key("t", "us-east-1", "a.net"))],
            ["ns1/x", "ns1/y"]
        );
    }

    #[test]
    fn an_instance_claims_the_item_of_its_own_namespaces_clusteredstream_only() {
        let in_ns = |ns: &str, mut c: ClusteredStream| {
            c.metadata.namespace = Some(ns.into());
            Arc::new(c)
        };
        let mut other_table = cluster(1);
        other_table.spec.state_table.name = "other".into();
        let clusters = [in_ns("a", cluster(1)), in_ns("b", other_table)];
        let placed = |ns: &str, name: &str, stream: &str| {
            let mut i = (*instance(name, true, None)).clone();
            i.metadata.namespace = Some(ns.into());
            i.spec.clustered_stream = stream.into();
            Arc::new(i)
        };
        let claims = claims_of(
            &clusters,
            &[
                placed("a", "x", "event"),
                placed("b", "y", "event"),
                placed("c", "z", "event"),
                placed("a", "w", "missing"),
            ],
        );
        assert_eq!(
            claims,
            [
                (
                    Some(claim_key("cvs-state", "us-east-1", "x.cloudfront.net")),
                    "a/x".to_owned()
                ),
                (
                    Some(claim_key("other", "us-east-1", "y.cloudfront.net")),
                    "b/y".to_owned()
                ),
                (None, "c/z".to_owned()),
                (None, "a/w".to_owned()),
            ]
        );
    }

    #[test]
    fn duplicates_are_judged_on_the_members_domains_in_their_namespace_only() {
        let in_ns = |ns: &str, name: &str| {
            let mut c = cluster(1);
            c.metadata.namespace = Some(ns.into());
            c.metadata.name = Some(name.into());
            Arc::new(c)
        };
        let placed = |ns: &str, name: &str, stream: &str, domain: &str| {
            let mut i = (*instance(name, true, None)).clone();
            i.metadata.namespace = Some(ns.into());
            i.spec.clustered_stream = stream.into();
            i.spec.cloudfront.domain = domain.into();
            Arc::new(i)
        };
        let clusters = [
            in_ns("a", "event"),
            in_ns("a", "rehearsal"),
            in_ns("b", "event"),
        ];
        let members = [
            placed("a", "east", "event", "d1.net"),
            placed("a", "west", "event", "d2.net"),
        ];
        let mut all = members.to_vec();
        all.extend([
            // Same namespace and table, same domain: a duplicate of east.
            placed("a", "copy", "rehearsal", "d1.net"),
            // Another domain, another namespace: not looked at.
            placed("a", "other", "rehearsal", "d3.net"),
            placed("a", "other2", "rehearsal", "d3.net"),
            placed("b", "east", "event", "d1.net"),
        ]);
        let near = duplicate_claims(&claims_on_domains_of(&clusters, &all, "a", &members));
        let full = duplicate_claims(&claims_of(&clusters, &all));
        let key = (
            "a".to_owned(),
            claim_key("cvs-state", "us-east-1", "d1.net"),
        );
        assert_eq!(near[&key], ["a/copy", "a/east"]);
        assert_eq!(near.len(), 1, "{near:?}");
        // What the members look up is the same as from every claim.
        for m in &members {
            let k = (
                "a".to_owned(),
                claim_key("cvs-state", "us-east-1", &m.spec.cloudfront.domain),
            );
            assert_eq!(near.get(&k), full.get(&k));
        }
        assert_eq!(
            full.len(),
            2,
            "d3.net is a duplicate too, of other instances"
        );
    }

    #[test]
    fn delivery_condition_parks_and_clears_dropped_once_caught_up() {
        use crate::notify::Delivery;
        let parked = Delivery {
            pending: 2,
            parked: Some("NotFound".into()),
            ..Default::default()
        };
        assert_eq!(delivery_condition(&parked).reason, "TopicUnusable");
        let dropped = Delivery {
            dropped: 3,
            dropped_recently: true,
            ..Default::default()
        };
        assert_eq!(delivery_condition(&dropped).reason, "EventsDropped");
        let caught_up = Delivery {
            dropped: 3,
            delivered: 5,
            ..Default::default()
        };
        assert_eq!(delivery_condition(&caught_up).status, Status::True);
    }
}
