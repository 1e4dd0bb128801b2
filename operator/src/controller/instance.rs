//! Reconciles one StreamInstance: its own observations, and a clear condition when the
//! ClusteredStream it names does not exist.

use super::{
    Context, Error, OPERATOR_NAME, RETRY_AFTER_ERROR, apply_status, count_transition, publish,
};
use crate::conditions::{self, Desired, Status};
use crate::probe::decision::Policy;
use crate::probe::engine::RenditionHealth;
use crate::probe::{InstanceHealth, InstanceKey, ProbeTarget};
use crate::resources::{RenditionStatus, StreamInstance};
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
const CONTROLLER: &str = "instance";

/// The part of a StreamInstance's status this reconciler decides, before timestamps.
#[derive(Clone, Debug, PartialEq)]
pub struct InstancePlan {
    pub conditions: Vec<Desired>,
    pub renditions: Vec<RenditionStatus>,
}

/// Pure stage: the instance's own conditions and rendition detail, from the latest probe result.
pub fn plan(
    cluster_exists: bool,
    clustered_stream: &str,
    origin: Result<(), String>,
    health: Option<&InstanceHealth>,
) -> InstancePlan {
    let (mut conditions, renditions) = match (origin, health) {
        (Err(e), _) => {
            let msg = format!("spec.origin.url cannot be probed: {e}");
            (
                vec![
                    Desired::new("Healthy", Status::False, "InvalidOriginUrl", msg.clone()),
                    Desired::new("Stale", Status::True, "InvalidOriginUrl", msg),
                ],
                Vec::new(),
            )
        }
        (Ok(()), None) => (
            vec![
                Desired::new(
                    "Healthy",
                    Status::Unknown,
                    "AwaitingProbe",
                    "no probe result for this instance yet",
                ),
                Desired::new(
                    "Stale",
                    Status::Unknown,
                    "AwaitingProbe",
                    "no probe result for this instance yet",
                ),
            ],
            Vec::new(),
        ),
        // Not judged yet (a partial picture, or no evidence of freshness yet) is no verdict.
        (Ok(()), Some(h)) if h.verdict.healthy.is_none() => (
            vec![
                Desired::new(
                    "Healthy",
                    Status::Unknown,
                    h.verdict.reason,
                    h.verdict.message.clone(),
                ),
                Desired::new(
                    "Stale",
                    Status::Unknown,
                    h.verdict.reason,
                    h.verdict.message.clone(),
                ),
            ],
            h.renditions.iter().map(rendition_status).collect(),
        ),
        (Ok(()), Some(h)) => {
            let v = &h.verdict;
            let healthy = v.healthy.unwrap_or(false);
            (
                vec![
                    Desired::new(
                        "Healthy",
                        Status::from_bool(healthy),
                        v.reason,
                        v.message.clone(),
                    ),
                    Desired::new(
                        "Stale",
                        Status::from_bool(!healthy),
                        v.reason,
                        v.message.clone(),
                    ),
                ],
                h.renditions.iter().map(rendition_status).collect(),
            )
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
        renditions,
    }
}

fn rendition_status(r: &RenditionHealth) -> RenditionStatus {
    RenditionStatus {
        uri: r.uri.clone(),
        kind: r.kind.to_owned(),
        fresh: r.fresh,
        media_sequence: r.media_sequence,
        target_duration_ms: r.target_duration_ms,
        last_change: r.last_change.map(Time),
        last_error: r.detail.clone(),
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

/// True when every desired condition is already in `current` with the same status, reason,
/// message and generation, so no write is needed.
pub(crate) fn up_to_date(
    current: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
) -> bool {
    desired.iter().all(|d| {
        conditions::find(current, d.type_).is_some_and(|c| {
            c.status == d.status.as_str()
                && c.reason == d.reason
                && c.message == d.message
                && c.observed_generation == generation
        })
    })
}

pub async fn reconcile(instance: Arc<StreamInstance>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&instance, &ctx).await;
    ctx.metrics.observe_reconcile(CONTROLLER, started.elapsed());
    result
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
        })
        .unwrap_or_default();

    let key = InstanceKey {
        namespace: ns.clone(),
        name: name.clone(),
    };
    let origin = match Url::parse(&instance.spec.origin.url) {
        Ok(master_url) => {
            // Renditions and redirects may only be on the master's own host until the
            // ClusteredStream names others.
            let target = ProbeTarget {
                master_url,
                policy,
                allowed_hosts: Vec::new(),
            };
            ctx.probes.ensure(&key, target);
            Ok(())
        }
        Err(e) => {
            ctx.probes.retain(|k| k != &key);
            Err(e.to_string())
        }
    };
    let health = ctx.probes.health(&key);
    let plan = plan(
        cluster.is_some(),
        &instance.spec.clustered_stream,
        origin,
        health.as_ref(),
    );

    let generation = instance.metadata.generation;
    let status = instance.status.clone().unwrap_or_default();
    let conditions_current = status.observed_generation == generation
        && up_to_date(&status.conditions, &plan.conditions, generation);
    let shape_current = shape(&status.renditions) == shape(&plan.renditions);
    let details_current = status.renditions == plan.renditions;
    let details_due = ctx
        .detail_writes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .is_none_or(|at| at.elapsed() >= ctx.detail_refresh);
    if conditions_current && shape_current && (details_current || !details_due) {
        return Ok(Action::requeue(ctx.detail_refresh));
    }

    let next = conditions::merge(
        &status.conditions,
        plan.conditions,
        generation,
        conditions::now(),
    );
    let transitions = conditions::transitions(&status.conditions, &next);
    let api: Api<StreamInstance> = Api::namespaced(ctx.client.clone(), &ns);
    let status = serde_json::json!({
        "observedGeneration": generation,
        "conditions": next,
        "renditions": plan.renditions,
    });
    apply_status(ctx, &api, &name, FIELD_MANAGER, CONTROLLER, status).await?;
    ctx.detail_writes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, Instant::now());

    for t in transitions {
        count_transition(ctx, "StreamInstance", &t.type_, &t.to.status);
        let event = match (t.type_.as_str(), t.to.status.as_str()) {
            ("Bound", "False") => Some((EventType::Warning, "ClusteredStreamNotFound")),
            ("Healthy", "False") => Some((EventType::Warning, "Stale")),
            ("Healthy", "True") if t.from.is_some() => Some((EventType::Normal, "Healthy")),
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
    Ok(Action::requeue(ctx.detail_refresh))
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
            renditions: vec![RenditionHealth {
                uri: "http://o/720p.m3u8".into(),
                kind: "video",
                fresh: healthy,
                judged: true,
                starved: false,
                media_sequence: Some(7),
                target_duration_ms: Some(2000),
                last_change: None,
                detail: None,
            }],
            starved: 0,
            at: jiff::Timestamp::now(),
        }
    }

    fn cond<'a>(p: &'a InstancePlan, t: &str) -> &'a Desired {
        p.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn orphan_instance_is_reported_closed() {
        let p = plan(false, "event", Ok(()), None);
        let bound = cond(&p, "Bound");
        assert_eq!(bound.status, Status::False);
        assert_eq!(bound.reason, "ClusteredStreamNotFound");
        assert!(bound.message.contains("\"event\""));
        let p = plan(true, "event", Ok(()), None);
        assert_eq!(cond(&p, "Bound").status, Status::True);
        // The Open condition belongs to the cluster reconciler alone.
        assert!(p.conditions.iter().all(|c| c.type_ != "Open"));
    }

    #[test]
    fn probe_results_become_healthy_and_stale_conditions() {
        let p = plan(true, "event", Ok(()), None);
        assert_eq!(cond(&p, "Healthy").status, Status::Unknown);
        let p = plan(true, "event", Ok(()), Some(&health(false)));
        assert_eq!(cond(&p, "Healthy").status, Status::False);
        assert_eq!(cond(&p, "Stale").status, Status::True);
        assert_eq!(cond(&p, "Stale").reason, "NoNewSegment");
        assert_eq!(p.renditions[0].media_sequence, Some(7));
        let p = plan(true, "event", Ok(()), Some(&health(true)));
        assert_eq!(cond(&p, "Healthy").status, Status::True);
        assert_eq!(cond(&p, "Stale").status, Status::False);
        let p = plan(
            true,
            "event",
            Err("relative URL without a base".into()),
            None,
        );
        assert_eq!(cond(&p, "Healthy").reason, "InvalidOriginUrl");
    }

    #[test]
    fn up_to_date_needs_same_reason_message_and_generation() {
        let p = plan(true, "event", Ok(()), None);
        let current = conditions::merge(&[], p.conditions.clone(), Some(3), conditions::now());
        assert!(up_to_date(&current, &p.conditions, Some(3)));
        assert!(!up_to_date(&current, &p.conditions, Some(4)));
        assert!(!up_to_date(
            &current,
            &plan(false, "event", Ok(()), None).conditions,
            Some(3)
        ));
    }
}
