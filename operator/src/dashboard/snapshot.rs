//! The dashboard's snapshot: every ClusteredStream with its instances, built without I/O from
//! what the operator already holds in memory (the controllers' caches of both kinds, the probe
//! engine's per-rendition state, the timeline). The JSON shape is the dashboard's contract:
//! fields may be added, never renamed.

use super::timeline::{Entry, Timeline};
use crate::conditions;
use crate::probe::{InstanceHealth, InstanceKey};
use crate::resources::{ClosedVariants, ClusteredStream, FailoverMode, StreamInstance};
use kube::ResourceExt;
use serde::Serialize;
use std::sync::Arc;

/// RFC 3339, UTC, with milliseconds.
pub fn millis(t: jiff::Timestamp) -> String {
    crate::controller::instance::format_millis(t)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub generated_at: String,
    pub operator: OperatorInfo,
    pub clusters: Vec<ClusterView>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorInfo {
    pub version: String,
    /// This replica leads: it probes, and `renditions` are live. A standby shows what the
    /// leader last wrote to status.
    pub leader: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    pub namespace: String,
    pub name: String,
    pub failover: &'static str,
    pub min_open: u32,
    pub steering: bool,
    pub closed_variants: &'static str,
    pub desired_open_count: u32,
    pub effective_open_count: u32,
    /// `Ready` condition: status, reason, message.
    pub ready: ConditionView,
    pub publication: Publication,
    pub edge: EdgeView,
    pub instances: Vec<InstanceView>,
    pub timeline: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl ConditionView {
    fn of(
        conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
        t: &str,
    ) -> Self {
        match conditions::find(conditions, t) {
            Some(c) => Self {
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            },
            None => Self {
                status: "Unknown".into(),
                reason: "NotReported".into(),
                message: String::new(),
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Publication {
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_published_at: Option<String>,
    pub master_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeView {
    pub status: String,
    pub reason: String,
    pub message: String,
    pub function_version: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    pub name: String,
    pub region: String,
    pub domain: String,
    pub desired_open: bool,
    pub effective_open: bool,
    /// The `Open` condition's reason (`DesiredOpen`, `DesiredClosed`, `HeldOpenForMinOpen`,
    /// `FailedOver`, `HoldDown`), or `NotDecidedYet`.
    pub open_reason: String,
    pub open_message: String,
    pub healthy: Option<bool>,
    pub health_reason: String,
    pub health_message: String,
    pub health_changed_at: Option<String>,
    /// Not measured yet: always null.
    pub lagging: Option<Lagging>,
    /// Renditions the probe follows (the listed ones may be fewer on a standby).
    pub renditions_total: u32,
    pub renditions: Vec<RenditionView>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lagging {
    pub status: bool,
    pub lag_seconds: f64,
    pub reason: String,
    pub message: String,
}

/// The lag verdict: the probe's own when it compares this instance, else what status records
/// (a standby, or before the first comparison). `None` when neither has a verdict.
fn lagging(
    live: Option<&crate::decide::lag::LagVerdict>,
    status: &crate::resources::StreamInstanceStatus,
) -> Option<Lagging> {
    if let Some(v) = live {
        let lagging = v.lagging?;
        return Some(Lagging {
            status: lagging,
            lag_seconds: v.lag_ms.map_or(0.0, |ms| ms as f64 / 1000.0),
            reason: v.reason.to_owned(),
            message: v.message.clone(),
        });
    }
    let c = crate::conditions::find(&status.conditions, "Lagging")?;
    let lagging = match c.status.as_str() {
        "True" => true,
        "False" => false,
        _ => return None,
    };
    Some(Lagging {
        status: lagging,
        lag_seconds: status
            .lag_seconds
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(0.0),
        reason: c.reason.clone(),
        message: c.message.clone(),
    })
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenditionView {
    pub uri: String,
    pub kind: String,
    /// Judged fresh. False while not judged yet (`judged` false).
    pub fresh: bool,
    pub judged: bool,
    pub reason: String,
    /// Since the playlist last gained a segment.
    pub age_ms: Option<u64>,
    /// The staleness bound: target duration times the staleness multiplier.
    pub bound_ms: Option<u64>,
    pub media_sequence: Option<u64>,
}

/// Everything a snapshot is built from.
pub struct Inputs<'a> {
    pub clusters: &'a [Arc<ClusteredStream>],
    pub instances: &'a [Arc<StreamInstance>],
    /// The probe engine's live state of an instance (the leader only).
    pub probe: &'a dyn Fn(&InstanceKey) -> Option<InstanceHealth>,
    pub timeline: &'a Timeline,
    pub leader: bool,
    pub now: jiff::Timestamp,
}

/// Longest list of renditions shown per instance (stale ones first).
pub const MAX_RENDITIONS: usize = 200;

/// Builds the snapshot. Clusters by namespace/name, instances by name, renditions stale first
/// then by URI.
pub fn build(inputs: &Inputs<'_>) -> Snapshot {
    let mut clusters: Vec<ClusterView> = inputs
        .clusters
        .iter()
        .map(|c| cluster_view(c, inputs))
        .collect();
    clusters.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Snapshot {
        generated_at: millis(inputs.now),
        operator: OperatorInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            leader: inputs.leader,
        },
        clusters,
    }
}

fn cluster_view(cluster: &ClusteredStream, inputs: &Inputs<'_>) -> ClusterView {
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let spec = &cluster.spec;
    let mut instances: Vec<InstanceView> = inputs
        .instances
        .iter()
        .filter(|i| {
            i.spec.clustered_stream == name
                && i.metadata.namespace.as_deref() == Some(namespace.as_str())
        })
        .map(|i| instance_view(cluster, i, inputs))
        .collect();
    instances.sort_by(|a, b| a.name.cmp(&b.name));
    let status = cluster.status.clone().unwrap_or_default();
    let published = ConditionView::of(&status.conditions, "Published");
    let edge = ConditionView::of(&status.conditions, "EdgeDeployed");
    let playlist = spec.playlist.as_ref();
    ClusterView {
        failover: match spec.failover.mode {
            FailoverMode::Automatic => "Automatic",
            FailoverMode::Manual => "Manual",
        },
        min_open: spec.min_open,
        steering: spec.steering.as_ref().is_some_and(|s| s.enabled),
        closed_variants: match playlist.map(|p| p.closed_variants).unwrap_or_default() {
            ClosedVariants::Keep => "Keep",
            ClosedVariants::Omit => "Omit",
        },
        desired_open_count: count(instances.iter().filter(|i| i.desired_open)),
        effective_open_count: count(instances.iter().filter(|i| i.effective_open)),
        ready: ConditionView::of(&status.conditions, "Ready"),
        publication: Publication {
            status: published.status,
            reason: published.reason,
            message: published.message,
            last_published_at: status
                .playlist
                .as_ref()
                .and_then(|p| {
                    p.targets
                        .iter()
                        .filter_map(|t| t.written_at.as_ref())
                        .map(|t| t.0)
                        .max()
                        .or(p.changed_at.as_ref().map(|t| t.0))
                })
                .map(millis),
            master_url: playlist
                .and_then(|p| p.targets.first())
                .map(|t| format!("s3://{}/{}", t.bucket, t.key)),
        },
        edge: EdgeView {
            function_version: function_version(&edge.message),
            status: edge.status,
            reason: edge.reason,
            message: edge.message,
        },
        timeline: inputs.timeline.of(&format!("{namespace}/{name}")),
        namespace,
        name,
        instances,
    }
}

fn count<T>(it: impl Iterator<Item = T>) -> u32 {
    u32::try_from(it.count()).unwrap_or(u32::MAX)
}

/// The version of the copilot's Lambda function, from the `EdgeDeployed` message, which starts
/// with the versioned function ARN (`arn:aws:lambda:us-east-1:123:function:name:7 on ...`).
pub fn function_version(message: &str) -> Option<String> {
    let arn = message.split_whitespace().next()?;
    if !arn.starts_with("arn:") || arn.split(':').count() < 8 {
        return None;
    }
    let version = arn.rsplit(':').next()?;
    (!version.is_empty() && version.len() <= 16).then(|| version.to_owned())
}

fn instance_view(
    cluster: &ClusteredStream,
    instance: &StreamInstance,
    inputs: &Inputs<'_>,
) -> InstanceView {
    let key = InstanceKey {
        namespace: instance.namespace().unwrap_or_default(),
        name: instance.name_any(),
    };
    let status = instance.status.clone().unwrap_or_default();
    let open = conditions::find(&status.conditions, "Open");
    let recorded = conditions::find(&status.conditions, "Healthy");
    let live = (inputs.probe)(&key);
    let multiplier = cluster.spec.health.staleness_multiplier;
    let bound = |td: Option<u64>| {
        td.map(|td| {
            let b = td as f64 * multiplier;
            if b.is_finite() && b > 0.0 {
                b.min(u64::MAX as f64) as u64
            } else {
                0
            }
        })
    };
    let age = |at: Option<jiff::Timestamp>| {
        at.map(|at| u64::try_from(inputs.now.duration_since(at).as_millis()).unwrap_or(0))
    };
    // The live verdict wins over the recorded one while it has judged; before it has, what
    // status recorded stands (as the controllers treat it).
    let (healthy, health_reason, health_message) = match &live {
        Some(h) if h.verdict.healthy.is_some() => (
            h.verdict.healthy,
            h.verdict.reason.to_owned(),
            h.verdict.message.clone(),
        ),
        _ => match recorded {
            Some(c) => (
                crate::controller::instance::recorded_verdict(&status),
                c.reason.clone(),
                c.message.clone(),
            ),
            None => (None, "NotProbedYet".into(), String::new()),
        },
    };
    let (mut renditions, total): (Vec<RenditionView>, usize) = match &live {
        Some(h) => (
            h.renditions
                .iter()
                .map(|r| RenditionView {
                    uri: r.uri.clone(),
                    kind: r.kind.to_owned(),
                    fresh: r.fresh && r.judged,
                    judged: r.judged,
                    reason: rendition_reason(r.fresh, r.judged, r.starved, r.detail.as_deref()),
                    age_ms: age(r.last_change),
                    bound_ms: bound(r.target_duration_ms),
                    media_sequence: r.media_sequence,
                })
                .collect(),
            h.renditions.len(),
        ),
        None => (
            status
                .renditions
                .iter()
                .map(|r| RenditionView {
                    uri: r.uri.clone(),
                    kind: r.kind.clone(),
                    fresh: r.fresh,
                    judged: true,
                    reason: rendition_reason(r.fresh, true, false, r.last_error.as_deref()),
                    age_ms: age(r.last_change.as_ref().map(|t| t.0)),
                    bound_ms: bound(r.target_duration_ms.and_then(|v| u64::try_from(v).ok())),
                    media_sequence: r.media_sequence.and_then(|v| u64::try_from(v).ok()),
                })
                .collect(),
            status
                .renditions_total
                .map_or(status.renditions.len(), |t| t as usize),
        ),
    };
    renditions.sort_by(|a, b| (a.fresh, &a.uri).cmp(&(b.fresh, &b.uri)));
    renditions.truncate(MAX_RENDITIONS);
    InstanceView {
        name: key.name,
        region: instance.spec.region.clone(),
        domain: instance.spec.cloudfront.domain.clone(),
        desired_open: instance.spec.distro_open,
        effective_open: status.open.unwrap_or(false),
        open_reason: open.map_or_else(|| "NotDecidedYet".to_owned(), |c| c.reason.clone()),
        open_message: open.map(|c| c.message.clone()).unwrap_or_default(),
        healthy,
        health_reason,
        health_message,
        health_changed_at: status.health_changed_at.clone(),
        lagging: lagging(live.as_ref().and_then(|h| h.lag.as_ref()), &status),
        renditions_total: u32::try_from(total).unwrap_or(u32::MAX),
        renditions,
    }
}

fn rendition_reason(fresh: bool, judged: bool, starved: bool, detail: Option<&str>) -> String {
    let text = match (judged, fresh, detail) {
        (false, _, Some(d)) => format!("not judged yet: {d}"),
        (false, _, None) => "not judged yet".to_owned(),
        (true, true, _) if starved => "Fresh (probe delayed by the operator's own limits)".into(),
        (true, true, _) => "Fresh".to_owned(),
        (true, false, Some(d)) => d.to_owned(),
        (true, false, None) => "Stale".to_owned(),
    };
    crate::controller::instance::truncate(&text, 500)
}

/// What changed between two observations of a ClusteredStream's status that the timeline
/// shows and no Event reports: a new publication of the merged master or steering manifest, and
/// a change of the copilot's deployment.
pub fn status_transitions(
    before: &ClusteredStream,
    after: &ClusteredStream,
    now: jiff::Timestamp,
) -> Vec<Entry> {
    let mut out = Vec::new();
    let (b, a) = (
        before.status.clone().unwrap_or_default(),
        after.status.clone().unwrap_or_default(),
    );
    let (bp, ap) = (
        b.playlist.unwrap_or_default(),
        a.playlist.unwrap_or_default(),
    );
    if ap.hash.is_some() && ap.hash != bp.hash {
        let targets = ap.targets.len();
        out.push(Entry::new(
            now,
            "Published",
            format!(
                "merged master playlist {} published to {targets} target(s)",
                short_hash(ap.hash.as_deref())
            ),
        ));
    }
    if ap.steering_hash.is_some() && ap.steering_hash != bp.steering_hash {
        out.push(Entry::new(
            now,
            "SteeringPublished",
            format!(
                "steering manifest {} published",
                short_hash(ap.steering_hash.as_deref())
            ),
        ));
    }
    let (be, ae) = (
        conditions::find(&b.conditions, "EdgeDeployed"),
        conditions::find(&a.conditions, "EdgeDeployed"),
    );
    if let Some(ae) = ae {
        let changed = be.is_none_or(|be| {
            be.status != ae.status
                || be.reason != ae.reason
                || function_version(&be.message) != function_version(&ae.message)
        });
        if changed {
            let kind = if ae.status == "True" {
                "EdgeDeployed"
            } else {
                "EdgeDeployFailed"
            };
            out.push(Entry::new(now, kind, ae.message.clone()));
        }
    }
    out
}

fn short_hash(hash: Option<&str>) -> String {
    hash.map(|h| h.chars().take(12).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::decision::InstanceVerdict;
    use crate::probe::engine::RenditionHealth;

    fn cluster(ns: &str, name: &str) -> Arc<ClusteredStream> {
        let mut c: ClusteredStream = serde_json::from_value(serde_json::json!({
            "apiVersion": "cvs.dev/v1alpha1", "kind": "ClusteredStream",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "stateTable": {"name": "t", "region": "us-east-1"},
                "failover": {"mode": "Automatic"},
                "minOpen": 1,
                "steering": {"enabled": true},
                "playlist": {"targets": [{"region": "us-east-1", "bucket": "bkt", "key": "live/m.m3u8"}],
                             "closedVariants": "Omit"}
            },
            "status": {
                "conditions": [
                    cond("Published", "True", "Published", "merged master of 2 instance(s) written to 1 target(s)"),
                    cond("EdgeDeployed", "True", "Deployed", "arn:aws:lambda:us-east-1:123456789012:function:cvs-copilot:7 on origin-response for t; distributions done: E1"),
                    cond("Ready", "True", "InstancesServing", "2 of 2")
                ],
                "playlist": {"hash": "abcdef0123456789", "targets": [
                    {"region": "us-east-1", "bucket": "bkt", "inSync": true, "writtenAt": "2026-01-01T00:00:05Z"}
                ]}
            }
        }))
        .unwrap();
        c.metadata.namespace = Some(ns.into());
        Arc::new(c)
    }

    fn cond(t: &str, s: &str, r: &str, m: &str) -> serde_json::Value {
        serde_json::json!({"type": t, "status": s, "reason": r, "message": m,
            "lastTransitionTime": "2026-01-01T00:00:00Z"})
    }

    fn instance(
        ns: &str,
        name: &str,
        cluster: &str,
        desired: bool,
        open: Option<bool>,
    ) -> Arc<StreamInstance> {
        let mut status = serde_json::json!({
            "conditions": [
                cond("Healthy", "True", "Fresh", "all renditions fresh"),
                cond("Open", if open == Some(true) {"True"} else {"False"},
                     if desired {"DesiredOpen"} else {"DesiredClosed"}, "as asked")
            ],
            "healthChangedAt": "2026-01-01T00:00:00.123Z",
            "renditions": [
                {"uri": "https://o/b.m3u8", "kind": "video", "fresh": true, "mediaSequence": 10,
                 "targetDurationMs": 4000, "lastChange": "2026-01-01T00:00:08Z"},
                {"uri": "https://o/a.m3u8", "kind": "video", "fresh": true, "mediaSequence": 10,
                 "targetDurationMs": 4000, "lastChange": "2026-01-01T00:00:08Z"},
                {"uri": "https://o/z.m3u8", "kind": "audio", "fresh": false, "mediaSequence": 3,
                 "targetDurationMs": 4000, "lastChange": "2026-01-01T00:00:00Z",
                 "lastError": "no new segment for 9.0 s"}
            ],
            "renditionsTotal": 3
        });
        if let Some(o) = open {
            status["open"] = o.into();
        }
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "cvs.dev/v1alpha1", "kind": "StreamInstance",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"clusteredStream": cluster, "region": "eu-west-1",
                         "cloudfront": {"domain": format!("{name}.cloudfront.net")},
                         "origin": {"url": "https://o/master.m3u8"}, "distroOpen": desired},
                "status": status
            }))
            .unwrap(),
        )
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:00:10Z".parse().unwrap()
    }

    #[test]
    fn a_snapshot_from_cached_objects() {
        let clusters = vec![cluster("ns", "b"), cluster("ns", "a"), cluster("aa", "z")];
        let instances = vec![
            instance("ns", "a-us", "a", true, Some(true)),
            instance("ns", "a-eu", "a", false, Some(false)),
            instance("other", "a-x", "a", true, Some(true)),
            instance("ns", "b-1", "b", true, None),
        ];
        let timeline = {
            let mut t = Timeline::default();
            t.record(
                "ns/a",
                Entry::new(now(), "HealthChanged", "a-eu stale")
                    .instance("a-eu")
                    .seq(17),
            );
            t
        };
        let snap = build(&Inputs {
            clusters: &clusters,
            instances: &instances,
            probe: &|_| None,
            timeline: &timeline,
            leader: false,
            now: now(),
        });
        let names: Vec<_> = snap
            .clusters
            .iter()
            .map(|c| format!("{}/{}", c.namespace, c.name))
            .collect();
        assert_eq!(names, ["aa/z", "ns/a", "ns/b"]);
        let a = &snap.clusters[1];
        assert_eq!(a.failover, "Automatic");
        assert!(a.steering);
        assert_eq!(a.closed_variants, "Omit");
        assert_eq!((a.desired_open_count, a.effective_open_count), (1, 1));
        let inst: Vec<_> = a.instances.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            inst,
            ["a-eu", "a-us"],
            "other namespaces' instances are not members"
        );
        let eu = &a.instances[0];
        assert!(!eu.desired_open && !eu.effective_open);
        assert_eq!(eu.open_reason, "DesiredClosed");
        assert_eq!(eu.healthy, Some(true));
        assert_eq!(
            eu.health_changed_at.as_deref(),
            Some("2026-01-01T00:00:00.123Z")
        );
        let uris: Vec<_> = eu.renditions.iter().map(|r| r.uri.as_str()).collect();
        assert_eq!(
            uris,
            ["https://o/z.m3u8", "https://o/a.m3u8", "https://o/b.m3u8"]
        );
        let z = &eu.renditions[0];
        assert!(!z.fresh);
        assert_eq!(z.reason, "no new segment for 9.0 s");
        assert_eq!(z.age_ms, Some(10_000));
        assert_eq!(z.bound_ms, Some(6_000), "1.5 x target duration by default");
        assert_eq!(z.media_sequence, Some(3));
        assert_eq!(a.publication.status, "True");
        assert_eq!(
            a.publication.last_published_at.as_deref(),
            Some("2026-01-01T00:00:05.000Z")
        );
        assert_eq!(
            a.publication.master_url.as_deref(),
            Some("s3://bkt/live/m.m3u8")
        );
        assert_eq!(a.edge.function_version.as_deref(), Some("7"));
        assert_eq!(a.timeline.len(), 1);
        assert_eq!(a.timeline[0].event_seq, Some(17));
        // An instance without a decided open state is shown closed, and says so.
        let b1 = &snap.clusters[2].instances[0];
        assert!(!b1.effective_open);
        assert_eq!(b1.open_reason, "DesiredOpen");

        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["generatedAt"], "2026-01-01T00:00:10.000Z");
        assert_eq!(json["operator"]["leader"], false);
        let i = &json["clusters"][1]["instances"][0];
        for field in [
            "desiredOpen",
            "effectiveOpen",
            "openReason",
            "healthy",
            "healthReason",
            "healthMessage",
            "healthChangedAt",
            "renditions",
        ] {
            assert!(i.get(field).is_some(), "{field} missing: {i}");
        }
        assert!(i["lagging"].is_null());
        assert_eq!(i["renditions"][0]["ageMs"], 10_000);
        assert_eq!(i["renditions"][0]["boundMs"], 6_000);
        let c = &json["clusters"][1];
        for field in [
            "minOpen",
            "desiredOpenCount",
            "effectiveOpenCount",
            "closedVariants",
            "timeline",
        ] {
            assert!(c.get(field).is_some(), "{field} missing");
        }
        assert_eq!(c["timeline"][0]["eventSeq"], 17);
        assert!(c["timeline"][0]["user"].is_null());
    }

    #[test]
    fn the_leader_shows_the_probe_engines_live_renditions() {
        let clusters = vec![cluster("ns", "a")];
        let instances = vec![instance("ns", "a-us", "a", true, Some(true))];
        let last_change: jiff::Timestamp = "2026-01-01T00:00:03.500Z".parse().unwrap();
        let live = InstanceHealth {
            verdict: InstanceVerdict {
                healthy: Some(false),
                reason: "RenditionStale",
                message: "1 of 2 renditions stale".into(),
            },
            renditions: vec![
                RenditionHealth {
                    uri: "https://o/fresh.m3u8".into(),
                    kind: "video",
                    fresh: true,
                    judged: true,
                    starved: false,
                    media_sequence: Some(u64::MAX),
                    target_duration_ms: Some(u64::MAX),
                    last_change: Some(last_change),
                    detail: None,
                },
                RenditionHealth {
                    uri: "https://o/frozen.m3u8".into(),
                    kind: "video",
                    fresh: false,
                    judged: true,
                    starved: false,
                    media_sequence: Some(5),
                    target_duration_ms: Some(2000),
                    last_change: Some(last_change),
                    detail: Some("no new segment".into()),
                },
                RenditionHealth {
                    uri: "https://o/new.m3u8".into(),
                    kind: "audio",
                    fresh: false,
                    judged: false,
                    starved: false,
                    media_sequence: None,
                    target_duration_ms: None,
                    last_change: None,
                    detail: None,
                },
            ],
            starved: 0,
            at: now(),
            lag: None,
        };
        let snap = build(&Inputs {
            clusters: &clusters,
            instances: &instances,
            probe: &|k| (k.name == "a-us").then(|| live.clone()),
            timeline: &Timeline::default(),
            leader: true,
            now: now(),
        });
        let i = &snap.clusters[0].instances[0];
        assert_eq!(i.healthy, Some(false), "the live verdict wins over status");
        assert_eq!(i.health_reason, "RenditionStale");
        assert_eq!(i.renditions_total, 3);
        let r: Vec<_> = i
            .renditions
            .iter()
            .map(|r| (r.uri.as_str(), r.fresh, r.judged))
            .collect();
        assert_eq!(
            r,
            [
                ("https://o/frozen.m3u8", false, true),
                ("https://o/new.m3u8", false, false),
                ("https://o/fresh.m3u8", true, true),
            ]
        );
        assert_eq!(i.renditions[0].age_ms, Some(6500));
        assert_eq!(i.renditions[0].bound_ms, Some(3000));
        assert_eq!(i.renditions[1].reason, "not judged yet");
        assert_eq!(i.renditions[1].age_ms, None);
        // A hostile target duration saturates instead of overflowing.
        assert_eq!(i.renditions[2].bound_ms, Some(u64::MAX));
        assert_eq!(i.renditions[2].media_sequence, Some(u64::MAX));
    }

    #[test]
    fn publications_and_edge_changes_become_timeline_entries() {
        let before = cluster("ns", "a");
        let mut after = (*before).clone();
        assert!(status_transitions(&before, &after, now()).is_empty());
        let status = after.status.as_mut().unwrap();
        status.playlist.as_mut().unwrap().hash = Some("fedcba9876543210".into());
        let edge = status
            .conditions
            .iter_mut()
            .find(|c| c.type_ == "EdgeDeployed")
            .unwrap();
        edge.message = edge.message.replace("cvs-copilot:7", "cvs-copilot:8");
        let entries = status_transitions(&before, &after, now());
        let kinds: Vec<_> = entries.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["Published", "EdgeDeployed"]);
        assert!(
            entries[0].message.contains("fedcba987654"),
            "{}",
            entries[0].message
        );
    }

    #[test]
    fn function_versions_are_read_from_versioned_arns_only() {
        assert_eq!(
            function_version("arn:aws:lambda:us-east-1:1:function:f:12 on viewer-request"),
            Some("12".into())
        );
        assert_eq!(
            function_version("arn:aws:lambda:us-east-1:1:function:f"),
            None
        );
        assert_eq!(function_version("cannot deploy"), None);
        assert_eq!(function_version(""), None);
    }

    #[test]
    fn lag_comes_from_the_probe_else_from_recorded_status() {
        let status: crate::resources::StreamInstanceStatus = serde_json::from_value(serde_json::json!({
            "lagSeconds": 12.5,
            "conditions": [{"type": "Lagging", "status": "True", "reason": "Lagging",
                            "message": "12.5 s behind a-us", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        }))
        .unwrap();
        let recorded = lagging(None, &status).unwrap();
        assert!(recorded.status);
        assert_eq!(recorded.lag_seconds, 12.5);
        assert_eq!(recorded.message, "12.5 s behind a-us");
        let live = crate::decide::lag::LagVerdict {
            lagging: Some(false),
            reason: "Leading",
            message: "leading instance".into(),
            lag_ms: Some(0),
            leader: None,
        };
        let shown = lagging(Some(&live), &status).unwrap();
        assert!(
            !shown.status,
            "the probe's own verdict wins over the recorded one"
        );
        let unknown = crate::decide::lag::LagVerdict {
            lagging: None,
            ..live
        };
        assert_eq!(lagging(Some(&unknown), &status), None);
        let none = crate::resources::StreamInstanceStatus::default();
        assert_eq!(lagging(None, &none), None);
        let hostile: crate::resources::StreamInstanceStatus =
            serde_json::from_value(serde_json::json!({
                "lagSeconds": -3.0,
                "conditions": [{"type": "Lagging", "status": "False", "reason": "CaughtUp",
                                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
            }))
            .unwrap();
        assert_eq!(lagging(None, &hostile).unwrap().lag_seconds, 0.0);
    }
}
