//! Reconciles one StreamInstance: its own observations, and a clear condition when the
//! ClusteredStream it names does not exist.

use super::{Context, Error, OPERATOR_NAME, RESYNC_PERIOD, RETRY_AFTER_ERROR};
use crate::conditions::{self, Desired, Status};
use crate::resources::StreamInstance;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use std::sync::Arc;
use std::time::Instant;

/// Field manager for the fields this reconciler owns.
pub const FIELD_MANAGER: &str = "cvs-operator/instance";
const CONTROLLER: &str = "instance";

/// The part of a StreamInstance's status this reconciler decides, before timestamps.
#[derive(Clone, Debug, PartialEq)]
pub struct InstancePlan {
    pub conditions: Vec<Desired>,
}

/// Pure stage: what the instance's own conditions should be.
pub fn plan(cluster_exists: bool, clustered_stream: &str) -> InstancePlan {
    let mut conditions = vec![
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
    ];
    if !cluster_exists {
        conditions.push(Desired::new(
            "Open",
            Status::False,
            "ClusteredStreamNotFound",
            format!("ClusteredStream {clustered_stream:?} does not exist in this namespace; the instance is not served"),
        ));
    }
    InstancePlan { conditions }
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
    let cluster_exists = ctx.clusters.get(&cluster_ref).is_some();
    let plan = plan(cluster_exists, &instance.spec.clustered_stream);

    let generation = instance.metadata.generation;
    let status = instance.status.clone().unwrap_or_default();
    if status.observed_generation == generation
        && up_to_date(&status.conditions, &plan.conditions, generation)
    {
        return Ok(Action::requeue(RESYNC_PERIOD));
    }

    let next = conditions::merge(
        &status.conditions,
        plan.conditions,
        generation,
        conditions::now(),
    );
    let transitions = conditions::transitions(&status.conditions, &next);
    let patch = serde_json::json!({
        "apiVersion": StreamInstance::api_version(&()),
        "kind": StreamInstance::kind(&()),
        "status": {
            "observedGeneration": generation,
            "conditions": next,
        }
    });
    let api: Api<StreamInstance> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    ctx.metrics
        .status_writes
        .get_or_create(&crate::metrics::ControllerLabels {
            controller: CONTROLLER,
        })
        .inc();

    for t in transitions {
        ctx.metrics
            .condition_transitions
            .get_or_create(&crate::metrics::ConditionLabels {
                kind: "StreamInstance",
                condition: t.type_.clone(),
                status: t.to.status.clone(),
            })
            .inc();
        if t.type_ == "Open" && t.to.reason == "ClusteredStreamNotFound" {
            publish(
                ctx,
                instance,
                Event {
                    type_: EventType::Warning,
                    reason: "ClusteredStreamNotFound".into(),
                    note: Some(t.to.message.clone()),
                    action: "Reconcile".into(),
                    secondary: None,
                },
            )
            .await;
        }
    }
    Ok(Action::requeue(RESYNC_PERIOD))
}

/// Records an Event; a failure to record is logged, never fatal to the reconciliation.
pub(crate) async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    event: Event,
) {
    let reference = object.object_ref(&());
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(error = %e, reason = %event.reason, "could not record Event");
    }
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

    #[test]
    fn orphan_instance_is_reported_closed() {
        let p = plan(false, "event");
        let open = p.conditions.iter().find(|c| c.type_ == "Open").unwrap();
        assert_eq!(open.status, Status::False);
        assert_eq!(open.reason, "ClusteredStreamNotFound");
        assert!(open.message.contains("\"event\""));
        assert!(
            plan(true, "event")
                .conditions
                .iter()
                .all(|c| c.type_ != "Open")
        );
    }

    #[test]
    fn up_to_date_needs_same_reason_message_and_generation() {
        let p = plan(true, "event");
        let current = conditions::merge(&[], p.conditions.clone(), Some(3), conditions::now());
        assert!(up_to_date(&current, &p.conditions, Some(3)));
        assert!(!up_to_date(&current, &p.conditions, Some(4)));
        assert!(!up_to_date(
            &current,
            &plan(false, "event").conditions,
            Some(3)
        ));
    }
}
