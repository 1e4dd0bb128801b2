//! Which AWS resources a namespace may make the operator use (pure; no I/O).
//!
//! The operator acts with one AWS role for every namespace, so without a check any tenant could
//! name another team's state table, SNS topic, S3 objects, CloudFront distributions or edge
//! function (a confused deputy). With `--tenant-policy=namespace-annotations`, the cluster
//! administrator lists on each Namespace object what its ClusteredStreams may use:
//!
//! | annotation | matched against |
//! | --- | --- |
//! | `cvs.dev/allowed-state-tables` | `spec.stateTable.name` |
//! | `cvs.dev/allowed-sns-topics` | `spec.notifications.snsTopicArn` |
//! | `cvs.dev/allowed-s3-targets` | `bucket/key` of every object written: each target's master and steering manifest |
//! | `cvs.dev/allowed-distributions` | each member's `spec.cloudfront.distributionId` (the copilot attaches there) |
//! | `cvs.dev/allowed-edge-functions` | `spec.copilot.functionName` |
//!
//! Each value is a list of glob patterns separated by commas or white space (`*` matches any
//! run of characters, `?` one character). A resource kind whose annotation is absent or empty
//! is refused (deny by default): tenants cannot annotate their Namespace (that needs `patch` on
//! Namespaces, a cluster-scoped right), so an unlisted namespace can use nothing.
//!
//! A refused resource is never touched: a refused table means no table read or write for the
//! ClusteredStream (and no copilot, which would read it); a refused topic, no SNS publish; a
//! refused S3 target is skipped while the others are written; a refused distribution gets no
//! copilot association while the others do; a refused edge function, no copilot at all.

use crate::conditions::{Desired, Status};
use crate::resources::{ClusteredStream, StreamInstance};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub const ALLOWED_STATE_TABLES: &str = "cvs.dev/allowed-state-tables";
pub const ALLOWED_SNS_TOPICS: &str = "cvs.dev/allowed-sns-topics";
pub const ALLOWED_S3_TARGETS: &str = "cvs.dev/allowed-s3-targets";
pub const ALLOWED_DISTRIBUTIONS: &str = "cvs.dev/allowed-distributions";
pub const ALLOWED_EDGE_FUNCTIONS: &str = "cvs.dev/allowed-edge-functions";

/// Whether `text` matches the glob `pattern` (`*` any run, `?` one character; everything else
/// literally, case-sensitive). Iterative, linear in practice, never recursive.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The allow-lists of one namespace, from its annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    annotations: BTreeMap<String, Vec<String>>,
}

impl Grants {
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Self {
        let annotations = [
            ALLOWED_STATE_TABLES,
            ALLOWED_SNS_TOPICS,
            ALLOWED_S3_TARGETS,
            ALLOWED_DISTRIBUTIONS,
            ALLOWED_EDGE_FUNCTIONS,
        ]
        .iter()
        .filter_map(|key| {
            let patterns: Vec<String> = annotations
                .get(*key)?
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            Some(((*key).to_owned(), patterns))
        })
        .collect();
        Self { annotations }
    }

    /// Whether `value` matches a pattern of `annotation`.
    pub fn allows(&self, annotation: &str, value: &str) -> bool {
        self.annotations
            .get(annotation)
            .is_some_and(|ps| ps.iter().any(|p| glob_match(p, value)))
    }
}

/// What a ClusteredStream may use, decided once per reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Judgement {
    /// One line per refused resource, naming it and the annotation that would allow it.
    pub refusals: Vec<String>,
    pub table: bool,
    pub topic: bool,
    /// Indexes of `spec.playlist.targets` refused.
    pub targets_refused: BTreeSet<usize>,
    pub copilot: bool,
    pub distributions_refused: BTreeSet<String>,
}

impl Judgement {
    /// Everything allowed (the policy is off).
    pub fn allow_all() -> Self {
        Self {
            refusals: Vec::new(),
            table: true,
            topic: true,
            targets_refused: BTreeSet::new(),
            copilot: true,
            distributions_refused: BTreeSet::new(),
        }
    }

    /// The ClusteredStream as the stages see it: refused topic, targets and copilot left out.
    /// (A refused table is the reconciler's to skip: the table cannot be left out.)
    pub fn effective(&self, cluster: &ClusteredStream) -> ClusteredStream {
        let mut c = cluster.clone();
        if !self.topic {
            c.spec.notifications = None;
        }
        if let Some(p) = c.spec.playlist.as_mut() {
            let mut i = 0;
            p.targets.retain(|_| {
                let keep = !self.targets_refused.contains(&i);
                i += 1;
                keep
            });
            if p.targets.is_empty() {
                c.spec.playlist = None;
            }
        }
        if !self.copilot {
            c.spec.copilot = None;
        }
        c
    }

    /// The members as the edge stage sees them: refused distributions removed.
    pub fn effective_members(&self, members: &[Arc<StreamInstance>]) -> Vec<Arc<StreamInstance>> {
        members
            .iter()
            .map(|m| match &m.spec.cloudfront.distribution_id {
                Some(id) if self.distributions_refused.contains(id) => {
                    let mut m = (**m).clone();
                    m.spec.cloudfront.distribution_id = None;
                    Arc::new(m)
                }
                _ => m.clone(),
            })
            .collect()
    }

    /// The `ResourcesAllowed` condition.
    pub fn condition(&self) -> Desired {
        if self.refusals.is_empty() {
            Desired::new(
                "ResourcesAllowed",
                Status::True,
                "AllowedByNamespace",
                "every AWS resource named is allowed by the namespace's annotations",
            )
        } else {
            Desired::new(
                "ResourcesAllowed",
                Status::False,
                "NotAllowedByNamespace",
                format!(
                    "not used: {} (the cluster administrator allows resources with annotations on the Namespace)",
                    self.refusals.join("; ")
                ),
            )
        }
    }
}

/// Judges `cluster` and its `members` against `grants`; `steering_key` gives the steering
/// manifest's key for a target's key.
pub fn judge(
    grants: &Grants,
    cluster: &ClusteredStream,
    members: &[Arc<StreamInstance>],
    steering_key: impl Fn(&str) -> String,
) -> Judgement {
    let mut j = Judgement::allow_all();
    let spec = &cluster.spec;
    let mut refuse = |what: String, annotation: &str| {
        j.refusals.push(format!("{what} is not in {annotation}"));
    };
    if !grants.allows(ALLOWED_STATE_TABLES, &spec.state_table.name) {
        refuse(
            format!("state table {:?}", spec.state_table.name),
            ALLOWED_STATE_TABLES,
        );
        j.table = false;
    }
    if let Some(n) = &spec.notifications
        && !grants.allows(ALLOWED_SNS_TOPICS, &n.sns_topic_arn)
    {
        refuse(
            format!("SNS topic {:?}", n.sns_topic_arn),
            ALLOWED_SNS_TOPICS,
        );
        j.topic = false;
    }
    if let Some(p) = &spec.playlist {
        for (i, t) in p.targets.iter().enumerate() {
            let objects = [
                format!("{}/{}", t.bucket, t.key),
                format!("{}/{}", t.bucket, steering_key(&t.key)),
            ];
            if let Some(bad) = objects
                .iter()
                .find(|o| !grants.allows(ALLOWED_S3_TARGETS, o))
            {
                refuse(format!("S3 object {bad:?}"), ALLOWED_S3_TARGETS);
                j.targets_refused.insert(i);
            }
        }
    }
    if let Some(c) = spec.copilot.as_ref().filter(|c| c.enabled) {
        if !grants.allows(ALLOWED_EDGE_FUNCTIONS, &c.function_name) {
            refuse(
                format!("edge function {:?}", c.function_name),
                ALLOWED_EDGE_FUNCTIONS,
            );
            j.copilot = false;
        }
        let ids: BTreeSet<&String> = members
            .iter()
            .filter_map(|m| m.spec.cloudfront.distribution_id.as_ref())
            .collect();
        for id in ids {
            if !grants.allows(ALLOWED_DISTRIBUTIONS, id) {
                refuse(
                    format!("CloudFront distribution {id:?}"),
                    ALLOWED_DISTRIBUTIONS,
                );
                j.distributions_refused.insert(id.clone());
            }
        }
    }
    // The copilot reads the state table: never deploy one for a table the namespace may not use.
    if !j.table {
        j.copilot = false;
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("team-a-*", "team-a-state"));
        assert!(!glob_match("team-a-*", "team-b-state"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match(
            "bucket/live/*/master.m3u8",
            "bucket/live/x/y/master.m3u8"
        ));
        assert!(!glob_match("bucket/live/*", "other/live/x"));
        assert!(glob_match(
            "arn:aws:sns:*:123456789012:team-a-*",
            "arn:aws:sns:us-east-1:123456789012:team-a-events"
        ));
        assert!(!glob_match("exact", "exactly"));
        assert!(!glob_match("Team", "team"), "case-sensitive");
        // Many stars against a long text end quickly.
        let long = "a".repeat(5000);
        assert!(!glob_match(&"*a".repeat(50).replace("a", "b"), &long));
    }

    fn cluster(yaml: &str) -> ClusteredStream {
        let spec = serde_yaml::from_str(yaml).unwrap();
        ClusteredStream::new("event", spec)
    }

    fn member(distribution: Option<&str>) -> Arc<StreamInstance> {
        let spec = serde_json::from_value(serde_json::json!({
            "clusteredStream": "event", "region": "us-east-1",
            "cloudfront": {"domain": "d1.cloudfront.net", "distributionId": distribution},
            "origin": {"url": "https://o.example.com/m.m3u8"}
        }))
        .unwrap();
        Arc::new(StreamInstance::new("i", spec))
    }

    const FULL: &str = "stateTable: {name: team-a-state, region: us-east-1}\n\
        notifications: {snsTopicArn: 'arn:aws:sns:us-east-1:123456789012:team-a-events'}\n\
        playlist: {targets: [{region: us-east-1, bucket: team-a, key: live/master.m3u8}, {region: eu-west-1, bucket: team-b, key: live/master.m3u8}]}\n\
        copilot: {enabled: true, functionName: team-a-copilot, roleArn: 'arn:aws:iam::123456789012:role/r'}\n";

    fn steering(key: &str) -> String {
        key.replace(".m3u8", ".steering.json")
    }

    #[test]
    fn a_namespace_uses_only_what_its_annotations_allow() {
        let grants = Grants::from_annotations(&BTreeMap::from([
            (ALLOWED_STATE_TABLES.into(), "team-a-*".into()),
            (
                ALLOWED_SNS_TOPICS.into(),
                "arn:aws:sns:*:123456789012:team-a-*".into(),
            ),
            (
                ALLOWED_S3_TARGETS.into(),
                "team-a/live/*, team-a/vod/*".into(),
            ),
            (ALLOWED_DISTRIBUTIONS.into(), "EAAAA EAAAB".into()),
            (ALLOWED_EDGE_FUNCTIONS.into(), "team-a-copilot".into()),
        ]));
        let c = cluster(FULL);
        let members = [member(Some("EAAAA")), member(Some("EZZZZ")), member(None)];
        let j = judge(&grants, &c, &members, steering);
        assert!(j.table && j.topic && j.copilot);
        assert_eq!(j.targets_refused, BTreeSet::from([1]));
        assert_eq!(
            j.distributions_refused,
            BTreeSet::from(["EZZZZ".to_owned()])
        );
        assert_eq!(j.refusals.len(), 2, "{:?}", j.refusals);
        let cond = j.condition();
        assert_eq!(cond.status, Status::False);
        assert!(
            cond.message.contains("\"team-b/live/master.m3u8\""),
            "{}",
            cond.message
        );
        assert!(cond.message.contains(ALLOWED_DISTRIBUTIONS));
        // The stages see only what is allowed.
        let e = j.effective(&c);
        assert_eq!(e.spec.playlist.unwrap().targets.len(), 1);
        assert!(e.spec.notifications.is_some() && e.spec.copilot.is_some());
        let m = j.effective_members(&members);
        assert_eq!(
            m[0].spec.cloudfront.distribution_id.as_deref(),
            Some("EAAAA")
        );
        assert_eq!(m[1].spec.cloudfront.distribution_id, None);
    }

    #[test]
    fn an_unannotated_namespace_may_use_nothing() {
        let j = judge(
            &Grants::default(),
            &cluster(FULL),
            &[member(Some("EAAAA"))],
            steering,
        );
        assert!(!j.table && !j.topic && !j.copilot);
        assert_eq!(j.targets_refused, BTreeSet::from([0, 1]));
        assert_eq!(j.refusals.len(), 6, "{:?}", j.refusals);
        let e = j.effective(&cluster(FULL));
        assert!(
            e.spec.notifications.is_none() && e.spec.playlist.is_none() && e.spec.copilot.is_none()
        );
        // An empty annotation allows nothing either.
        let empty = Grants::from_annotations(&BTreeMap::from([(
            ALLOWED_STATE_TABLES.into(),
            " , ".into(),
        )]));
        assert!(!empty.allows(ALLOWED_STATE_TABLES, ""));
    }

    #[test]
    fn a_refused_table_refuses_the_copilot_and_the_steering_key_counts() {
        let grants = Grants::from_annotations(&BTreeMap::from([
            (ALLOWED_S3_TARGETS.into(), "team-a/live/master.m3u8".into()),
            (ALLOWED_EDGE_FUNCTIONS.into(), "*".into()),
            (ALLOWED_DISTRIBUTIONS.into(), "*".into()),
        ]));
        let j = judge(&grants, &cluster(FULL), &[], steering);
        assert!(!j.table && !j.copilot);
        // The master key alone is allowed, not the steering manifest written beside it.
        assert!(j.targets_refused.contains(&0));
        assert!(
            j.refusals
                .iter()
                .any(|r| r.contains("live/master.steering.json"))
        );
        // Everything allowed: a True condition.
        let all = Judgement::allow_all();
        assert_eq!(all.condition().status, Status::True);
        assert_eq!(all.effective(&cluster(FULL)), cluster(FULL));
    }
}
