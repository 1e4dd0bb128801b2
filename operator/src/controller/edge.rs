//! The edge stage of the cluster reconciler: deploys the copilot (a published Lambda@Edge
//! version whose zip carries this ClusteredStream's configuration) and associates it with every
//! member instance's CloudFront distribution, reported as the `EdgeDeployed` condition. A
//! finalizer (`cvs.dev/copilot`) makes deleting the ClusteredStream, or disabling the copilot,
//! remove only its own associations first; function versions are left alone (Lambda@Edge
//! replicas take hours to delete).
//!
//! The reconciler calls [`deploy`] once per round and [`finalize`] before anything else. Work
//! is done only when its inputs changed (the zip's hash, the set of distributions) or every
//! [`REDEPLOY_PERIOD`]; failures are retried with backoff (5 s doubling to 5 min) and shown in
//! the condition.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::{Context, Error};
use crate::aws::edge::{self, EdgeDeployer, EdgeError};
use crate::conditions::{Desired, Status};
use crate::resources::{ClusteredStream, CopilotSpec, StreamInstance};

/// Finalizer that removes this ClusteredStream's copilot associations before it goes.
pub const FINALIZER: &str = "cvs.dev/copilot";
/// Work is repeated this often even when nothing changed, to repair associations changed by hand.
pub const REDEPLOY_PERIOD: Duration = Duration::from_secs(600);
const MIN_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What the stage reports to the reconciler.
pub struct EdgeStage {
    pub condition: Desired,
    /// Work failed: reconcile again soon (the stage itself holds off until its backoff ends).
    pub retry: bool,
}

/// What was last done for one ClusteredStream.
struct Memo {
    inputs: (String, BTreeSet<String>),
    condition: Desired,
    ok: bool,
    at: Instant,
    failures: u32,
}

static MEMO: LazyLock<Mutex<HashMap<String, Memo>>> = LazyLock::new(Default::default);

fn key(cluster: &ClusteredStream) -> String {
    format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    )
}

fn enabled(cluster: &ClusteredStream) -> Option<&CopilotSpec> {
    cluster.spec.copilot.as_ref().filter(|c| c.enabled)
}

/// The distributions of the member instances, and the members that have none.
fn distributions(members: &[Arc<StreamInstance>]) -> (BTreeSet<String>, Vec<String>) {
    let mut ids = BTreeSet::new();
    let mut missing = Vec::new();
    for m in members {
        match &m.spec.cloudfront.distribution_id {
            Some(id) => {
                ids.insert(id.clone());
            }
            None => missing.push(m.name_any()),
        }
    }
    missing.sort();
    (ids, missing)
}

/// Backoff after `failures` consecutive failures.
pub fn backoff(failures: u32) -> Duration {
    MIN_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(10))
        .min(MAX_BACKOFF)
}

/// Deploys and associates the copilot when `spec.copilot.enabled`; `None` when it is not (no
/// `EdgeDeployed` condition).
pub async fn deploy(
    ctx: &Context,
    cluster: &ClusteredStream,
    members: &[Arc<StreamInstance>],
) -> Option<EdgeStage> {
    let copilot = enabled(cluster)?;
    let role = copilot.role_arn.clone().unwrap_or_default();
    let config = edge::edge_config(&cluster.spec, copilot);
    let json = edge::config_json(&config);
    let name = edge::function_name(&copilot.function_name, &json);
    let zip = edge::build_zip(&json);
    let (ids, missing) = distributions(members);
    let inputs = (edge::code_sha256(&zip), ids.clone());
    let key = key(cluster);

    if let Some(m) = MEMO.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        let wait = if m.ok {
            REDEPLOY_PERIOD
        } else {
            backoff(m.failures)
        };
        if m.inputs == inputs && m.at.elapsed() < wait {
            return Some(EdgeStage {
                condition: m.condition.clone(),
                retry: !m.ok,
            });
        }
    }

    if let Err(e) = add_finalizer(ctx, cluster).await {
        return Some(record(
            &key,
            inputs,
            Err(format!("cannot add the finalizer: {e}")),
            "FinalizerFailed",
        ));
    }
    let deployer = EdgeDeployer::new(&ctx.aws);
    let event = edge::event_type(copilot.trigger);
    let result: Result<String, EdgeError> = async {
        let arn = deployer
            .ensure_function(&name, &role, copilot.trigger, &zip)
            .await?;
        for id in &ids {
            deployer
                .attach(id, Some((&arn, &event)), &copilot.function_name)
                .await?;
        }
        Ok(arn)
    }
    .await;
    let outcome = match result {
        Ok(arn) => {
            let mut message = format!(
                "{arn} on {} for {}; distributions done: {}",
                event.as_str(),
                config.table,
                if ids.is_empty() {
                    "none".to_owned()
                } else {
                    ids.iter().cloned().collect::<Vec<_>>().join(", ")
                }
            );
            if !missing.is_empty() {
                message.push_str(&format!(
                    "; without spec.cloudfront.distributionId: {}",
                    missing.join(", ")
                ));
            }
            tracing::info!(cluster = key, %message, "copilot deployed");
            Ok(message)
        }
        Err(e) => {
            tracing::warn!(cluster = key, error = %e, "copilot deployment failed");
            return Some(record(&key, inputs, Err(e.to_string()), e.reason()));
        }
    };
    Some(record(&key, inputs, outcome, "Deployed"))
}

fn record(
    key: &str,
    inputs: (String, BTreeSet<String>),
    outcome: Result<String, String>,
    reason: &'static str,
) -> EdgeStage {
    let mut memo = MEMO.lock().unwrap_or_else(|p| p.into_inner());
    let failures = memo.get(key).map(|m| m.failures).unwrap_or(0);
    let (ok, condition, failures) = match outcome {
        Ok(message) => (
            true,
            Desired::new("EdgeDeployed", Status::True, reason, message),
            0,
        ),
        Err(message) => {
            let failures = failures.saturating_add(1);
            let message = format!(
                "{message}; retrying in {}",
                humantime::format_duration(backoff(failures))
            );
            (
                false,
                Desired::new("EdgeDeployed", Status::False, reason, message),
                failures,
            )
        }
    };
    memo.insert(
        key.to_owned(),
        Memo {
            inputs,
            condition: condition.clone(),
            ok,
            at: Instant::now(),
            failures,
        },
    );
    EdgeStage {
        condition,
        retry: !ok,
    }
}

fn has_finalizer(cluster: &ClusteredStream) -> bool {
    cluster.finalizers().iter().any(|f| f == FINALIZER)
}

async fn add_finalizer(ctx: &Context, cluster: &ClusteredStream) -> Result<(), kube::Error> {
    if has_finalizer(cluster) {
        return Ok(());
    }
    let mut finalizers = cluster.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    patch_finalizers(ctx, cluster, finalizers).await
}

async fn patch_finalizers(
    ctx: &Context,
    cluster: &ClusteredStream,
    finalizers: Vec<String>,
) -> Result<(), kube::Error> {
    let api: Api<ClusteredStream> =
        Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    // The resourceVersion makes the merge patch fail rather than drop a finalizer added meanwhile.
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": cluster.meta().resource_version,
        }
    });
    api.patch(
        &cluster.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// When the ClusteredStream is being deleted, or its copilot was disabled, and it still has the
/// finalizer: removes its associations from the members' distributions, then the finalizer.
/// Returns the action to end this round with, or `None` to go on reconciling.
pub async fn finalize(
    ctx: &Context,
    cluster: &ClusteredStream,
    members: &[Arc<StreamInstance>],
) -> Result<Option<Action>, Error> {
    let deleting = cluster.meta().deletion_timestamp.is_some();
    if !has_finalizer(cluster) || (!deleting && enabled(cluster).is_some()) {
        return Ok(None);
    }
    let base = cluster
        .spec
        .copilot
        .as_ref()
        .map(|c| c.function_name.clone())
        .unwrap_or_else(|| "cvs-copilot".to_owned());
    let deployer = EdgeDeployer::new(&ctx.aws);
    let (ids, _) = distributions(members);
    for id in &ids {
        if let Err(e) = deployer.attach(id, None, &base).await {
            tracing::warn!(cluster = key(cluster), error = %e, "removing the copilot association failed");
            return Ok(Some(Action::requeue(MIN_BACKOFF)));
        }
    }
    let rest: Vec<String> = cluster
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(ctx, cluster, rest).await?;
    MEMO.lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key(cluster));
    tracing::info!(
        cluster = key(cluster),
        distributions = ids.len(),
        "copilot associations removed"
    );
    Ok(deleting.then(Action::await_change))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_5s_to_5min() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(7), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
