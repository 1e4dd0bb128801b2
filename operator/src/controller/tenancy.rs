//! The tenant policy's I/O: reads a ClusteredStream's Namespace (by name, cached briefly) and
//! judges what the ClusteredStream may use ([`crate::decide::tenancy`]).

use super::Context;
use crate::decide::tenancy::{self, Grants, Judgement};
use crate::resources::{ClusteredStream, StreamInstance};
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a Namespace's annotations are trusted: a change by the administrator applies
/// within this and the ClusteredStream's next reconcile.
pub const NAMESPACE_TTL: Duration = Duration::from_secs(10);

/// Who decides which AWS resources a namespace may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TenantPolicy {
    /// Any namespace may name any resource the operator's AWS role can use.
    #[default]
    Off,
    /// Annotations on each Namespace list what its ClusteredStreams may use (deny by default).
    NamespaceAnnotations,
}

/// A Namespace's grants as read, and when.
type Read = (Instant, Result<Arc<Grants>, String>);

/// Namespaces' grants, read with `get` by name.
#[derive(Default)]
pub struct NamespaceCache {
    entries: Mutex<HashMap<String, Read>>,
}

impl NamespaceCache {
    async fn grants(&self, client: &kube::Client, ns: &str) -> Result<Arc<Grants>, String> {
        if let Some((at, grants)) = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(ns)
            && at.elapsed() < NAMESPACE_TTL
        {
            return grants.clone();
        }
        let api: Api<Namespace> = Api::all(client.clone());
        let result = api
            .get(ns)
            .await
            .map(|n| Arc::new(Grants::from_annotations(n.annotations())))
            .map_err(|e| format!("cannot read Namespace {ns:?} for its allow-lists: {e}"));
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ns.to_owned(), (Instant::now(), result.clone()));
        result
    }
}

/// What `cluster` may use under the operator's policy: everything when the policy is off;
/// nothing when its Namespace cannot be read (refusing is the safe side).
pub async fn judge(
    ctx: &Context,
    cluster: &ClusteredStream,
    members: &[Arc<StreamInstance>],
) -> Option<Judgement> {
    if ctx.tenant_policy == TenantPolicy::Off {
        return None;
    }
    let ns = cluster.namespace().unwrap_or_default();
    let steering = |key: &str| match &cluster.spec.playlist {
        Some(p) => super::publish::steering_key(p, key),
        None => key.to_owned(),
    };
    Some(match ctx.namespaces.grants(&ctx.client, &ns).await {
        Ok(grants) => tenancy::judge(&grants, cluster, members, steering),
        Err(e) => {
            let mut j = tenancy::judge(&Grants::default(), cluster, members, steering);
            j.refusals.insert(0, e);
            j
        }
    })
}
