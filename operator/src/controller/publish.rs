//! The publication stage of the cluster reconciler: fetch each instance's master playlist,
//! merge them ([`crate::decide::master`]), decide the steering manifest
//! ([`crate::decide::steering`]) and write both to every publication target.
//!
//! - Each instance's master is fetched again when the last attempt is older than the refresh
//!   interval (bounded size and timeout). A fetch that fails, or returns garbage, an oversized
//!   body or a media playlist, keeps the instance's last good contribution in the merge until it
//!   is older than `spec.playlist.maxContributionAgeSeconds`; the reason shows in
//!   `status.playlist.contributions`. An instance never fetched successfully is left out, with a
//!   reason.
//! - The steering manifest is decided and published first, from what is already known, so a
//!   state change reaches players without waiting for any origin.
//! - Each object is written to a target only when its bytes differ from what that target last
//!   accepted. A failing target is retried with exponential backoff (1 s doubling to 60 s) and
//!   never holds back the others; it shows in the `Published` condition and in
//!   `status.playlist.targets`.
//! - The steering manifest of each ClusteredStream is also served by the operator's HTTP server
//!   at `/steering/<namespace>/<name>.json` (see [`SteeringStore`]), for local use.

use super::Context;
use super::cluster::ClusterPlan;
use crate::aws::s3::{Buckets, Object};
use crate::conditions::{Desired, Status};
use crate::decide::master::{Contribution, Limits, parse_contribution};
use crate::decide::{ComposeInstance, ComposeSettings, Composed, compose};
use crate::probe::destination::Destinations;
use crate::probe::fetch::{FetchLimits, Fetcher};
use crate::resources::{
    ClosedVariants, ClusteredStream, ContributionStatus, PlaylistSpec, PlaylistStatus,
    StreamInstance, TargetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use sha2::Digest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Content-Type of the master playlist object.
pub const PLAYLIST_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";
/// Content-Type of the steering manifest object.
pub const STEERING_CONTENT_TYPE: &str = "application/json";
/// The origin credentials of a ClusteredStream, or why they cannot be used.
type Credentials = Result<Option<Arc<crate::probe::credentials::OriginCredentials>>, String>;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Settings of the publication stage.
#[derive(Clone, Debug)]
pub struct PublishSettings {
    /// Limits of the master playlist fetches.
    pub fetch: FetchLimits,
    /// Limits of one master playlist.
    pub limits: Limits,
    /// How often each instance's master playlist is fetched again.
    pub refresh: Duration,
    /// Scheme of the merged URIs (`https`; `http` only for a local test CDN).
    pub cdn_scheme: String,
}

impl Default for PublishSettings {
    fn default() -> Self {
        Self {
            fetch: FetchLimits::default(),
            limits: Limits::default(),
            refresh: Duration::from_secs(10),
            cdn_scheme: "https".into(),
        }
    }
}

/// The steering manifest of every ClusteredStream, by `namespace/name`, as last decided: what the
/// HTTP server answers at `/steering/<namespace>/<name>.json`.
#[derive(Clone, Default)]
pub struct SteeringStore(Arc<RwLock<HashMap<String, Arc<Vec<u8>>>>>);

impl SteeringStore {
    /// The manifest of ClusteredStream `namespace/name`, if one was decided.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Vec<u8>>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&format!("{namespace}/{name}"))
            .cloned()
    }

    fn set(&self, key: &str, bytes: Vec<u8>) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        if map.get(key).is_none_or(|b| **b != bytes) {
            map.insert(key.to_owned(), Arc::new(bytes));
        }
    }

    fn remove(&self, key: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// The publication stage's memory across reconciles, and its clients.
pub struct Publisher {
    fetcher: Fetcher,
    settings: PublishSettings,
    buckets: Buckets,
    memory: Mutex<HashMap<String, ClusterMemory>>,
    steering: SteeringStore,
}

#[derive(Default)]
struct ClusterMemory {
    /// By instance name.
    instances: HashMap<String, InstanceMemory>,
    /// By (region, bucket, key).
    targets: HashMap<(String, String, String), TargetMemory>,
    master: Option<(String, Time)>,
    steering: Option<(String, Time)>,
    /// Each instance's open state as last offered to players (see [`crate::decide::reopen`]).
    reopen: HashMap<String, crate::decide::reopen::Memo>,
}

struct InstanceMemory {
    origin_url: String,
    last_attempt: Instant,
    good: Option<Good>,
    /// Why the last fetch did not give a usable master.
    last_error: Option<String>,
}

struct Good {
    contribution: Contribution,
    at: Time,
    at_instant: Instant,
}

#[derive(Default)]
struct TargetMemory {
    master_written: Option<String>,
    steering_written: Option<String>,
    written_at: Option<Time>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
}

/// What the stage reports to the reconciler.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// `Published`, when a playlist is configured.
    pub conditions: Vec<Desired>,
    /// `status.playlist`.
    pub status: Option<PlaylistStatus>,
    /// When to reconcile again (the next master refresh or target retry).
    pub requeue: Option<Duration>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The steering manifest's object key for a playlist spec.
pub fn steering_key(spec: &PlaylistSpec, target_key: &str) -> String {
    if let Some(k) = &spec.steering_key {
        return k.clone();
    }
    let stem = match target_key.rsplit_once('.') {
        Some((stem, ext)) if !ext.contains('/') => stem,
        _ => target_key,
    };
    format!("{stem}.steering.json")
}

impl Publisher {
    pub fn new(
        settings: PublishSettings,
        aws: aws_config::SdkConfig,
        steering: SteeringStore,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            fetcher: Fetcher::new(&settings.fetch)?,
            settings,
            buckets: Buckets::new(aws),
            memory: Mutex::new(HashMap::new()),
            steering,
        })
    }

    fn take_memory(&self, key: &str) -> ClusterMemory {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)
            .unwrap_or_default()
    }

    fn put_memory(&self, key: &str, memory: ClusterMemory) {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), memory);
    }
}

/// Runs the stage for one ClusteredStream. Reconciles of one object never overlap (the
/// controller serializes them), so its memory is taken out for the duration and put back.
pub async fn stage(
    ctx: &Context,
    cluster: &ClusteredStream,
    cluster_key: &str,
    plan: &ClusterPlan,
    members: &[Arc<StreamInstance>],
) -> Outcome {
    let publisher = &ctx.publisher;
    let steering_on = cluster
        .spec
        .steering
        .as_ref()
        .is_some_and(|s| s.enabled && s.server_uri.is_some());
    if cluster.spec.playlist.is_none() && !steering_on {
        publisher.steering.remove(cluster_key);
        publisher
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(cluster_key);
        return Outcome::default();
    }
    forget_deleted(ctx);
    // The same origin credentials as the probe, sent to the same hosts.
    let credentials = ctx
        .secrets
        .credentials(
            &ctx.client,
            &cluster.namespace().unwrap_or_default(),
            cluster.spec.health.origin_credentials.as_ref(),
        )
        .await
        .map_err(|e| e.to_string());
    let mut memory = publisher.take_memory(cluster_key);
    let outcome = run(
        publisher,
        cluster,
        cluster_key,
        plan,
        members,
        &credentials,
        &mut memory,
    )
    .await;
    publisher.put_memory(cluster_key, memory);
    outcome
}

/// Forgets the memory and the served steering manifest of ClusteredStreams that were deleted
/// (their published objects stay where they are). Checked only when the memory holds more
/// entries than there are ClusteredStreams, so a steady fleet pays one length comparison.
fn forget_deleted(ctx: &Context) {
    let publisher = &ctx.publisher;
    let remembered = publisher
        .memory
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len();
    let clusters = ctx.clusters.state();
    if remembered <= clusters.len() {
        return;
    }
    let live: std::collections::HashSet<String> = clusters
        .iter()
        .map(|c| format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any()))
        .collect();
    let mut memory = publisher.memory.lock().unwrap_or_else(|p| p.into_inner());
    memory.retain(|key, _| live.contains(key));
    publisher
        .steering
        .0
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|key, _| live.contains(key));
}

async fn run(
    publisher: &Publisher,
    cluster: &ClusteredStream,
    cluster_key: &str,
    plan: &ClusterPlan,
    members: &[Arc<StreamInstance>],
    credentials: &Credentials,
    memory: &mut ClusterMemory,
) -> Outcome {
    // Forget instances that left, and origins that changed.
    memory.instances.retain(|name, m| {
        members
            .iter()
            .any(|i| i.name_any() == *name && i.spec.origin.url == m.origin_url)
    });

    // A reopened instance is offered to players only once the copilot's cache has let it
    // through everywhere (decide::reopen).
    let pathways: Vec<(&str, bool)> = plan
        .summaries
        .iter()
        .filter(|s| members.iter().any(|m| m.name_any() == s.name))
        .map(|s| (s.name.as_str(), s.open))
        .collect();
    let offers = crate::decide::reopen::offers(
        &pathways,
        &memory.reopen,
        Instant::now(),
        crate::decide::reopen::settle_time(&cluster.spec),
    );
    memory.reopen = offers.memo.clone();

    // 1. Publish from what is known (a state change must not wait for origins).
    let composed = compose_now(publisher, cluster, plan, members, memory, &offers.offered);
    let mut written = publish(publisher, cluster, cluster_key, &composed, memory).await;

    // 2. Refresh the masters that are due, and publish again if a contribution changed.
    let allowed = super::instance::allowed_hosts(&cluster.spec);
    if refresh(publisher, members, &allowed, credentials, memory).await {
        let again = compose_now(publisher, cluster, plan, members, memory, &offers.offered);
        written |= publish(publisher, cluster, cluster_key, &again, memory).await;
        let outcome = report(publisher, cluster, &again, memory);
        log_written(cluster_key, written);
        return recheck_for_reopen(outcome, offers.recheck);
    }
    log_written(cluster_key, written);
    recheck_for_reopen(
        report(publisher, cluster, &composed, memory),
        offers.recheck,
    )
}

/// Comes back when a reopened instance has settled, so it is offered without waiting for the
/// next master refresh.
fn recheck_for_reopen(mut outcome: Outcome, recheck: Option<Duration>) -> Outcome {
    if let Some(r) = recheck {
        let r = r.max(Duration::from_millis(200));
        outcome.requeue = Some(outcome.requeue.map_or(r, |q| q.min(r)));
    }
    outcome
}

fn log_written(cluster_key: &str, written: bool) {
    if written {
        tracing::debug!(cluster = cluster_key, "published playlist objects");
    }
}

fn max_age(cluster: &ClusteredStream) -> Duration {
    Duration::from_secs(u64::from(
        cluster
            .spec
            .playlist
            .as_ref()
            .map_or(600, |p| p.max_contribution_age_seconds),
    ))
}

fn compose_now(
    publisher: &Publisher,
    cluster: &ClusteredStream,
    plan: &ClusterPlan,
    members: &[Arc<StreamInstance>],
    memory: &ClusterMemory,
    offered: &HashMap<String, bool>,
) -> Composed {
    let max_age = max_age(cluster);
    let instances: Vec<ComposeInstance<'_>> = plan
        .summaries
        .iter()
        .filter(|s| members.iter().any(|m| m.name_any() == s.name))
        .map(|s| ComposeInstance {
            name: &s.name,
            region: &s.region,
            pathway: &s.region,
            cdn_domain: &s.domain,
            // Open, and settled if it just reopened.
            open: s.open && offered.get(&s.name).copied().unwrap_or(true),
            healthy: s.healthy,
            contribution: memory
                .instances
                .get(&s.name)
                .and_then(|m| m.good.as_ref())
                .filter(|g| g.at_instant.elapsed() <= max_age)
                .map(|g| &g.contribution),
        })
        .collect();
    let steering = cluster
        .spec
        .steering
        .as_ref()
        .filter(|s| s.enabled)
        .and_then(|s| s.server_uri.clone().map(|u| (u, s.ttl_seconds)));
    let settings = ComposeSettings {
        omit_closed: cluster
            .spec
            .playlist
            .as_ref()
            .is_some_and(|p| p.closed_variants == ClosedVariants::Omit),
        steering,
        cdn_scheme: publisher.settings.cdn_scheme.clone(),
    };
    compose(&instances, &settings)
}

/// Fetches every master that is due; returns whether any contribution changed.
async fn refresh(
    publisher: &Publisher,
    members: &[Arc<StreamInstance>],
    allowed: &[String],
    credentials: &Credentials,
    memory: &mut ClusterMemory,
) -> bool {
    let due: Vec<&Arc<StreamInstance>> = members
        .iter()
        .filter(|i| {
            memory
                .instances
                .get(&i.name_any())
                .is_none_or(|m| m.last_attempt.elapsed() >= publisher.settings.refresh)
        })
        .collect();
    if due.is_empty() {
        return false;
    }
    let fetches = due.iter().map(|i| async move {
        let url = i.spec.origin.url.clone();
        let result = match (reqwest::Url::parse(&url), credentials) {
            // Unusable credentials: the origin is not asked (it would refuse), and the last
            // good master stays in the merge.
            (Ok(_), Err(e)) => Err(format!("origin credentials unavailable: {e}")),
            // The same destination checks as the probe: the master's own host, public
            // addresses unless the operator allows private ones.
            (Ok(parsed), Ok(credentials)) => match publisher
                .fetcher
                .get_with_permit(
                    &parsed,
                    &Destinations::new(&parsed, allowed).with_credentials(credentials.clone()),
                )
                .await
            {
                Ok(body) => parse_contribution(&body, &url, &publisher.settings.limits)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            (Err(e), _) => Err(format!("bad origin URL: {e}")),
        }
        // The reason goes to status, Events and logs: no credentials or token values.
        .map_err(|e| crate::probe::redact_text(&e));
        (i.name_any(), url, result)
    });
    let mut changed = false;
    for (name, url, result) in futures::future::join_all(fetches).await {
        let entry = memory
            .instances
            .entry(name.clone())
            .or_insert_with(|| InstanceMemory {
                origin_url: url.clone(),
                last_attempt: Instant::now(),
                good: None,
                last_error: None,
            });
        entry.last_attempt = Instant::now();
        match result {
            Ok(contribution) => {
                let same = entry
                    .good
                    .as_ref()
                    .is_some_and(|g| g.contribution == contribution);
                changed |= !same || entry.last_error.is_some();
                let at = if same {
                    entry
                        .good
                        .as_ref()
                        .map(|g| g.at.clone())
                        .unwrap_or_else(crate::conditions::now)
                } else {
                    crate::conditions::now()
                };
                entry.good = Some(Good {
                    contribution,
                    at,
                    at_instant: Instant::now(),
                });
                entry.last_error = None;
            }
            Err(e) => {
                if entry.last_error.as_deref() != Some(e.as_str()) {
                    tracing::info!(instance = name, error = %e, "master playlist unusable; keeping the last good copy");
                }
                changed |= entry.last_error.is_none();
                entry.last_error = Some(e);
            }
        }
    }
    changed
}

/// Writes whatever changed to every target; returns whether anything was written.
async fn publish(
    publisher: &Publisher,
    cluster: &ClusteredStream,
    cluster_key: &str,
    composed: &Composed,
    memory: &mut ClusterMemory,
) -> bool {
    let steering_on = cluster
        .spec
        .steering
        .as_ref()
        .is_some_and(|s| s.enabled && s.server_uri.is_some());
    let steering_bytes = steering_on.then(|| composed.steering.manifest.to_bytes());
    match &steering_bytes {
        Some(b) => publisher.steering.set(cluster_key, b.clone()),
        None => publisher.steering.remove(cluster_key),
    }
    let master_bytes = composed.master.as_ref().ok().map(|m| m.bytes.as_slice());
    let now = crate::conditions::now;
    let master_hash = master_bytes.map(sha256_hex);
    let steering_hash = steering_bytes.as_deref().map(sha256_hex);
    if let Some(h) = &master_hash
        && memory.master.as_ref().is_none_or(|(old, _)| old != h)
    {
        memory.master = Some((h.clone(), now()));
    }
    if let Some(h) = &steering_hash
        && memory.steering.as_ref().is_none_or(|(old, _)| old != h)
    {
        memory.steering = Some((h.clone(), now()));
    }
    let Some(spec) = &cluster.spec.playlist else {
        return false;
    };
    memory.targets.retain(|(region, bucket, key), _| {
        spec.targets
            .iter()
            .any(|t| &t.region == region && &t.bucket == bucket && &t.key == key)
    });
    let started = Instant::now();
    let mut jobs = Vec::new();
    for t in &spec.targets {
        let id = (t.region.clone(), t.bucket.clone(), t.key.clone());
        let mem = memory.targets.remove(&id).unwrap_or_default();
        let steering_key = steering_key(spec, &t.key);
        let master_hash = master_hash.clone();
        let steering_hash = steering_hash.clone();
        let steering_bytes = steering_bytes.as_deref();
        jobs.push(async move {
            let mut mem = mem;
            let mut wrote = false;
            if mem.retry_at.is_some_and(|at| at > started) {
                return (id, mem, wrote);
            }
            let mut error = None;
            // Steering first: it is what moves players.
            if let (Some(bytes), Some(hash)) = (steering_bytes, &steering_hash)
                && mem.steering_written.as_ref() != Some(hash)
            {
                let object = Object {
                    bucket: &t.bucket,
                    key: &steering_key,
                    body: bytes,
                    content_type: STEERING_CONTENT_TYPE,
                    cache_control: &spec.cache_control,
                };
                match publisher.buckets.put(&t.region, object).await {
                    Ok(()) => {
                        mem.steering_written = Some(hash.clone());
                        wrote = true;
                    }
                    Err(e) => error = Some(e.to_string()),
                }
            }
            if error.is_none()
                && let (Some(bytes), Some(hash)) = (master_bytes, &master_hash)
                && mem.master_written.as_ref() != Some(hash)
            {
                let object = Object {
                    bucket: &t.bucket,
                    key: &t.key,
                    body: bytes,
                    content_type: PLAYLIST_CONTENT_TYPE,
                    cache_control: &spec.cache_control,
                };
                match publisher.buckets.put(&t.region, object).await {
                    Ok(()) => {
                        mem.master_written = Some(hash.clone());
                        wrote = true;
                    }
                    Err(e) => error = Some(e.to_string()),
                }
            }
            if wrote {
                mem.written_at = Some(crate::conditions::now());
            }
            match error {
                Some(e) => {
                    mem.failures = mem.failures.saturating_add(1);
                    let backoff = FIRST_RETRY
                        .saturating_mul(1 << mem.failures.saturating_sub(1).min(6))
                        .min(MAX_RETRY);
                    mem.retry_at = Some(Instant::now() + backoff);
                    if mem.last_error.as_deref() != Some(e.as_str()) {
                        tracing::warn!(error = %e, "publication target failing; retrying with backoff");
                    }
                    mem.last_error = Some(e);
                }
                None => {
                    mem.failures = 0;
                    mem.retry_at = None;
                    mem.last_error = None;
                }
            }
            (id, mem, wrote)
        });
    }
    let mut any = false;
    for (id, mem, wrote) in futures::future::join_all(jobs).await {
        any |= wrote;
        memory.targets.insert(id, mem);
    }
    any
}

/// The `Published` condition, `status.playlist` and when to come back.
fn report(
    publisher: &Publisher,
    cluster: &ClusteredStream,
    composed: &Composed,
    memory: &ClusterMemory,
) -> Outcome {
    let max_age = max_age(cluster);
    let mut contributions: Vec<ContributionStatus> = Vec::new();
    let mut names: Vec<&String> = memory.instances.keys().collect();
    for (name, _) in &composed.left_out {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.sort();
    for name in names {
        let left_out = composed.left_out.iter().find(|(n, _)| n == name);
        let m = memory.instances.get(name);
        let mut reason = String::new();
        if let Some(m) = m
            && let Some(e) = &m.last_error
        {
            reason = match &m.good {
                Some(g) if g.at_instant.elapsed() <= max_age => {
                    format!("using the last good master playlist: {e}")
                }
                Some(_) => format!("left out: last good master playlist is too old: {e}"),
                None => format!("left out: never fetched a usable master playlist: {e}"),
            };
        } else if let Some((_, why)) = left_out {
            reason = format!("left out: {why}");
        }
        let merged = left_out.is_none()
            && m.and_then(|m| m.good.as_ref())
                .is_some_and(|g| g.at_instant.elapsed() <= max_age);
        contributions.push(ContributionStatus {
            name: name.clone(),
            merged,
            last_good: m
                .filter(|m| m.last_error.is_some())
                .and_then(|m| m.good.as_ref())
                .map(|g| g.at.clone()),
            reason,
        });
    }

    let mut targets = Vec::new();
    let mut failing = Vec::new();
    let mut next_retry: Option<Instant> = None;
    let steering_on = memory.steering.is_some()
        && cluster
            .spec
            .steering
            .as_ref()
            .is_some_and(|s| s.enabled && s.server_uri.is_some());
    if let Some(spec) = &cluster.spec.playlist {
        for t in &spec.targets {
            let id = (t.region.clone(), t.bucket.clone(), t.key.clone());
            let mem = memory.targets.get(&id);
            let master_ok = memory
                .master
                .as_ref()
                .is_none_or(|(h, _)| mem.and_then(|m| m.master_written.as_ref()) == Some(h));
            let steering_ok = !steering_on
                || memory
                    .steering
                    .as_ref()
                    .is_none_or(|(h, _)| mem.and_then(|m| m.steering_written.as_ref()) == Some(h));
            if let Some(e) = mem.and_then(|m| m.last_error.as_ref()) {
                failing.push(format!("{}/{} ({}): {e}", t.bucket, t.key, t.region));
            }
            if let Some(at) = mem.and_then(|m| m.retry_at) {
                next_retry = Some(next_retry.map_or(at, |n| n.min(at)));
            }
            targets.push(TargetStatus {
                region: t.region.clone(),
                bucket: t.bucket.clone(),
                in_sync: master_ok && steering_ok,
                hash: mem.and_then(|m| m.master_written.clone()),
                written_at: mem.and_then(|m| m.written_at.clone()),
                last_error: mem.and_then(|m| m.last_error.clone()),
            });
        }
    }

    let status = PlaylistStatus {
        hash: memory.master.as_ref().map(|(h, _)| h.clone()),
        changed_at: memory.master.as_ref().map(|(_, t)| t.clone()),
        steering_hash: memory.steering.as_ref().map(|(h, _)| h.clone()),
        steering_changed_at: memory.steering.as_ref().map(|(_, t)| t.clone()),
        targets,
        contributions,
    };

    let mut conditions = Vec::new();
    if cluster.spec.playlist.is_some() {
        let ladders = composed
            .master
            .as_ref()
            .ok()
            .filter(|m| m.report.ladders_differ())
            .map(|m| m.report.ladder_summary(3));
        let condition = if !failing.is_empty() {
            Desired::new(
                "Published",
                Status::False,
                "TargetFailing",
                format!(
                    "retrying with backoff: {}{}",
                    failing.join("; "),
                    ladders
                        .map(|l| format!("; ladders differ: {l}"))
                        .unwrap_or_default()
                ),
            )
        } else if let Err(e) = &composed.master {
            Desired::new("Published", Status::False, "NothingToMerge", e.to_string())
        } else if let Some(l) = ladders {
            Desired::new(
                "Published",
                Status::True,
                "LaddersDiffer",
                format!("published; the regions' ladders differ: {l}"),
            )
        } else {
            let n = composed
                .master
                .as_ref()
                .map_or(0, |m| m.report.pathways.len());
            Desired::new(
                "Published",
                Status::True,
                "Published",
                format!(
                    "merged master of {n} instance(s) written to {} target(s)",
                    status.targets.len()
                ),
            )
        };
        conditions.push(condition);
    }
    let until_retry = next_retry.map(|at| at.saturating_duration_since(Instant::now()));
    let requeue = Some(
        until_retry
            .map_or(publisher.settings.refresh, |r| {
                r.min(publisher.settings.refresh)
            })
            .max(Duration::from_millis(200)),
    );
    Outcome {
        conditions,
        status: Some(status),
        requeue,
    }
}

/// One `--instance` of `cvs-operator merge`: `REGION=CDN_DOMAIN=MASTER_FILE_OR_URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliInstance {
    pub region: String,
    pub cdn_domain: String,
    pub source: String,
}

impl std::str::FromStr for CliInstance {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.splitn(3, '=');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(r), Some(d), Some(src)) if !r.is_empty() && !d.is_empty() && !src.is_empty() => {
                Ok(Self {
                    region: r.to_owned(),
                    cdn_domain: d.to_owned(),
                    source: src.to_owned(),
                })
            }
            _ => Err(format!(
                "{s:?}: expected REGION=CDN_DOMAIN=MASTER_FILE_OR_URL"
            )),
        }
    }
}

/// `cvs-operator merge`: fetches or reads each instance's master, merges them exactly as the
/// publication stage does (every instance open, health unknown) and returns the merged master
/// (or, with `manifest`, the steering manifest) and the report lines for stderr.
///
/// A file has no origin URL: its relative URIs resolve against `https://CDN_DOMAIN/` (the root
/// of the CDN host). Give the URL to keep the origin's path.
pub async fn merge_command(
    instances: &[CliInstance],
    steering_uri: Option<String>,
    steering_ttl: u32,
    manifest: bool,
    fetch: &FetchLimits,
) -> anyhow::Result<(Vec<u8>, Vec<String>)> {
    let fetcher = Fetcher::new(fetch)?;
    let limits = Limits::default();
    let mut contributions = Vec::new();
    let mut notes = Vec::new();
    for i in instances {
        let (bytes, origin) = if i.source.starts_with("http://") || i.source.starts_with("https://")
        {
            let url = reqwest::Url::parse(&i.source)?;
            let body = fetcher
                .get_with_permit(&url, &Destinations::new(&url, &[]))
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", i.source))?;
            (body, i.source.clone())
        } else {
            let body =
                std::fs::read(&i.source).map_err(|e| anyhow::anyhow!("{}: {e}", i.source))?;
            let name = std::path::Path::new(&i.source)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (body, format!("https://{}/{name}", i.cdn_domain))
        };
        match parse_contribution(&bytes, &origin, &limits) {
            Ok(c) => contributions.push(Some(c)),
            Err(e) => {
                notes.push(format!("{}: left out: {e}", i.region));
                contributions.push(None);
            }
        }
    }
    let composed_instances: Vec<ComposeInstance<'_>> = instances
        .iter()
        .zip(&contributions)
        .map(|(i, c)| ComposeInstance {
            name: &i.region,
            region: &i.region,
            pathway: &i.region,
            cdn_domain: &i.cdn_domain,
            open: true,
            healthy: None,
            contribution: c.as_ref(),
        })
        .collect();
    let settings = ComposeSettings {
        omit_closed: false,
        steering: steering_uri.map(|u| (u, steering_ttl)),
        cdn_scheme: "https".into(),
    };
    let composed = compose(&composed_instances, &settings);
    if manifest {
        return Ok((composed.steering.manifest.to_bytes(), notes));
    }
    let merged = composed.master?;
    for (p, why) in &merged.report.rejected {
        notes.push(format!("{p}: left out: {why}"));
    }
    for d in &merged.report.ladder_differences {
        notes.push(format!("ladders differ: {d}"));
    }
    notes.extend(merged.report.notes.iter().cloned());
    Ok((merged.bytes, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steering_key_follows_the_playlist_key() {
        let spec: PlaylistSpec = serde_json::from_value(serde_json::json!({
            "targets": [{"region": "us-east-1", "bucket": "b-1", "key": "live/event/master.m3u8"}]
        }))
        .unwrap();
        assert_eq!(
            steering_key(&spec, "live/event/master.m3u8"),
            "live/event/master.steering.json"
        );
        assert_eq!(
            steering_key(&spec, "live.v2/master"),
            "live.v2/master.steering.json"
        );
        let spec = PlaylistSpec {
            steering_key: Some("s.json".into()),
            ..spec
        };
        assert_eq!(steering_key(&spec, "x.m3u8"), "s.json");
    }

    #[test]
    fn cli_instances_parse() {
        let i: CliInstance = "us-east-1=d1.cloudfront.net=https://o.example/a=b.m3u8"
            .parse()
            .unwrap();
        assert_eq!(i.region, "us-east-1");
        assert_eq!(i.cdn_domain, "d1.cloudfront.net");
        assert_eq!(i.source, "https://o.example/a=b.m3u8");
        assert!("us-east-1=d1".parse::<CliInstance>().is_err());
    }
}
