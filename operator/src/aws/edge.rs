//! Deploying the copilot (`edge-lambda/`) to Lambda@Edge and attaching it to each instance's
//! CloudFront distribution.
//!
//! Pure decisions first (the baked configuration, the function name, the zip, whether to
//! publish, the new `LambdaFunctionAssociations`), then [`EdgeDeployer`], a thin shell over the
//! Lambda and CloudFront APIs. See edge-lambda/README.md for what the function does and why one
//! function serves one configuration.

use std::io::Write;

use aws_sdk_cloudfront::types::{
    DistributionConfig, EventType, LambdaFunctionAssociation, LambdaFunctionAssociations,
};
use base64::Engine;
use edge_lambda::{Config as EdgeConfig, Trigger};
use sha2::{Digest, Sha256};

use crate::resources::{ClusteredStreamSpec, CopilotSpec, CopilotTrigger};

/// Lambda@Edge functions live in us-east-1.
pub const LAMBDA_REGION: &str = "us-east-1";

/// The code part of the zip, built by edge-lambda/build.sh and committed (drift-checked by
/// `make edge-drift`), so building the operator needs no WebAssembly toolchain.
pub const BUNDLE: [(&str, &[u8]); 3] = [
    (
        "edge_lambda.js",
        include_bytes!("../../../edge-lambda/bundle/edge_lambda.js"),
    ),
    (
        "edge_lambda_bg.wasm",
        include_bytes!("../../../edge-lambda/bundle/edge_lambda_bg.wasm"),
    ),
    (
        "index.js",
        include_bytes!("../../../edge-lambda/bundle/index.js"),
    ),
];

/// The configuration baked into the zip for a ClusteredStream.
pub fn edge_config(spec: &ClusteredStreamSpec, copilot: &CopilotSpec) -> EdgeConfig {
    let table = &spec.state_table;
    let mut config = EdgeConfig::new(&table.name, &table.region, trigger(copilot.trigger));
    config.replica_regions = table.replica_regions.clone();
    config.replica_regions.sort();
    config.cache_seconds = copilot.table_cache_seconds.max(1);
    config
}

fn trigger(t: CopilotTrigger) -> Trigger {
    match t {
        CopilotTrigger::OriginResponse => Trigger::OriginResponse,
        CopilotTrigger::ViewerRequest => Trigger::ViewerRequest,
    }
}

/// `config.json` as written into the zip: compact JSON in the fields' declared order.
pub fn config_json(config: &EdgeConfig) -> Vec<u8> {
    serde_json::to_vec(config).expect("the edge configuration always serializes")
}

/// The function for a configuration: `<base>-<10 hex digits of its hash>` (64 characters at
/// most), so ClusteredStreams with the same configuration share a function and different ones
/// never overwrite each other's.
pub fn function_name(base: &str, config_json: &[u8]) -> String {
    let digest = Sha256::digest(config_json);
    let hash: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let base: String = base.chars().take(64 - 1 - hash.len()).collect();
    format!("{base}-{hash}")
}

/// Whether `arn` (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:VERSION]`) is a version of a
/// function this base name deploys (any configuration's).
pub fn is_ours(arn: &str, base: &str) -> bool {
    let Some(name) = arn.split(':').nth(6) else {
        return false;
    };
    let prefix: String = base.chars().take(53).collect();
    name.strip_prefix(&prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|h| h.len() == 10 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The deployment zip: the committed bundle plus `config.json`. Deterministic: fixed order,
/// timestamps and permissions, so the same bundle and configuration give the same bytes (and the
/// same `CodeSha256`).
pub fn build_zip(config_json: &[u8]) -> Vec<u8> {
    let mut files: Vec<(&str, &[u8])> = BUNDLE.to_vec();
    files.push(("config.json", config_json));
    files.sort_by_key(|(name, _)| *name);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9))
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    for (name, bytes) in files {
        zip.start_file(name, options).expect("writing to memory");
        zip.write_all(bytes).expect("writing to memory");
    }
    zip.finish().expect("writing to memory").into_inner()
}

/// Lambda's `CodeSha256` of a zip: base64 of its SHA-256.
pub fn code_sha256(zip: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(zip))
}

/// What Lambda holds for the function, as far as deploying it goes.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionFacts {
    /// `CodeSha256` of `$LATEST`.
    pub code_sha256: String,
    /// The highest published version and its `CodeSha256`.
    pub latest_published: Option<(u64, String)>,
}

/// What to do to have a published version running the wanted code.
#[derive(Clone, Debug, PartialEq)]
pub enum FunctionPlan {
    /// No function yet: create it and publish version 1.
    Create,
    /// The code differs: upload it and publish a new version.
    UpdateCode,
    /// `$LATEST` has the code but no published version does: publish one.
    Publish,
    /// The newest published version already runs this code: use it.
    Reuse(u64),
}

/// A new version is published only when the code or the baked configuration (both in the zip)
/// changed.
pub fn plan_function(current: Option<&FunctionFacts>, wanted_sha256: &str) -> FunctionPlan {
    match current {
        None => FunctionPlan::Create,
        Some(f) if f.code_sha256 != wanted_sha256 => FunctionPlan::UpdateCode,
        Some(f) => match &f.latest_published {
            Some((version, sha)) if sha == wanted_sha256 => FunctionPlan::Reuse(*version),
            _ => FunctionPlan::Publish,
        },
    }
}

/// Another function already holds the event type on a cache behaviour (CloudFront allows one).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("cache behaviour {behaviour} already runs {arn} on {event_type}")]
pub struct AssociationConflict {
    pub behaviour: String,
    pub event_type: String,
    pub arn: String,
}

/// The associations of one cache behaviour after the change: every association that is not ours
/// unchanged, ours (if `want` is given) for its event type. `None` when nothing changes.
pub fn plan_associations(
    behaviour: &str,
    existing: &[LambdaFunctionAssociation],
    want: Option<(&str, &EventType)>,
    base: &str,
) -> Result<Option<Vec<LambdaFunctionAssociation>>, AssociationConflict> {
    let mut next: Vec<LambdaFunctionAssociation> = existing
        .iter()
        .filter(|a| !is_ours(&a.lambda_function_arn, base))
        .cloned()
        .collect();
    if let Some((arn, event_type)) = want {
        if let Some(other) = next.iter().find(|a| &a.event_type == event_type) {
            return Err(AssociationConflict {
                behaviour: behaviour.to_owned(),
                event_type: event_type.as_str().to_owned(),
                arn: other.lambda_function_arn.clone(),
            });
        }
        next.push(
            LambdaFunctionAssociation::builder()
                .lambda_function_arn(arn)
                .event_type(event_type.clone())
                .include_body(false)
                .build()
                .expect("arn and event type are set"),
        );
    }
    let same = next.len() == existing.len() && next.iter().all(|a| existing.contains(a));
    Ok((!same).then_some(next))
}

fn associations(items: Vec<LambdaFunctionAssociation>) -> LambdaFunctionAssociations {
    LambdaFunctionAssociations::builder()
        .quantity(items.len() as i32)
        .set_items(Some(items))
        .build()
        .expect("quantity is set")
}

/// The distribution's configuration with our association on every cache behaviour (the default
/// one and each path pattern: the function passes through anything but playlists and segments),
/// or, with `want` None, with only ours removed. `None` when nothing changes.
pub fn associate(
    config: &DistributionConfig,
    want: Option<(&str, &EventType)>,
    base: &str,
) -> Result<Option<DistributionConfig>, AssociationConflict> {
    let mut next = config.clone();
    let mut changed = false;
    let items = |a: &Option<LambdaFunctionAssociations>| {
        a.as_ref().and_then(|a| a.items.clone()).unwrap_or_default()
    };
    if let Some(default) = next.default_cache_behavior.as_mut() {
        let existing = items(&default.lambda_function_associations);
        if let Some(new) = plan_associations("default (*)", &existing, want, base)? {
            default.lambda_function_associations = Some(associations(new));
            changed = true;
        }
    }
    if let Some(behaviours) = next.cache_behaviors.as_mut().and_then(|b| b.items.as_mut()) {
        for b in behaviours {
            let existing = items(&b.lambda_function_associations);
            if let Some(new) = plan_associations(&b.path_pattern, &existing, want, base)? {
                b.lambda_function_associations = Some(associations(new));
                changed = true;
            }
        }
    }
    Ok(changed.then_some(next))
}

/// The CloudFront event type for a trigger.
pub fn event_type(t: CopilotTrigger) -> EventType {
    EventType::from(trigger(t).event_type())
}

/// Why a deployment step failed.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("Lambda {op} failed: {message}")]
    Lambda { op: &'static str, message: String },
    #[error("CloudFront {op} on distribution {distribution} failed: {message}")]
    CloudFront {
        op: &'static str,
        distribution: String,
        message: String,
    },
    #[error("distribution {distribution}: {conflict}")]
    Conflict {
        distribution: String,
        conflict: AssociationConflict,
    },
    #[error("distribution {0} kept changing under us (PreconditionFailed {1} times)")]
    Contended(String, u32),
}

impl EdgeError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            EdgeError::Lambda { .. } => "LambdaFailed",
            EdgeError::CloudFront { .. } => "CloudFrontFailed",
            EdgeError::Conflict { .. } => "AssociationConflict",
            EdgeError::Contended(..) => "DistributionContended",
        }
    }
}

fn lambda_err<E: std::error::Error>(op: &'static str, e: E) -> EdgeError {
    EdgeError::Lambda {
        op,
        message: aws_message(&e),
    }
}

fn cf_err<E: std::error::Error>(op: &'static str, distribution: &str, e: E) -> EdgeError {
    EdgeError::CloudFront {
        op,
        distribution: distribution.to_owned(),
        message: aws_message(&e),
    }
}

/// The innermost message of an SDK error chain (the service's own words).
fn aws_message(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

/// How many times an UpdateDistribution refused for a stale ETag is retried from a fresh read.
pub const PRECONDITION_RETRIES: u32 = 5;

/// The thin shell over Lambda (us-east-1) and CloudFront.
#[derive(Clone)]
pub struct EdgeDeployer {
    lambda: aws_sdk_lambda::Client,
    cloudfront: aws_sdk_cloudfront::Client,
}

impl EdgeDeployer {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        let region = aws_config::Region::new(LAMBDA_REGION);
        let lambda = aws_sdk_lambda::config::Builder::from(sdk)
            .region(region.clone())
            .build();
        let cloudfront = aws_sdk_cloudfront::config::Builder::from(sdk)
            .region(region)
            .build();
        EdgeDeployer {
            lambda: aws_sdk_lambda::Client::from_conf(lambda),
            cloudfront: aws_sdk_cloudfront::Client::from_conf(cloudfront),
        }
    }

    async fn facts(&self, name: &str) -> Result<Option<(FunctionFacts, String)>, EdgeError> {
        use aws_sdk_lambda::operation::get_function::GetFunctionError;
        let out = match self.lambda.get_function().function_name(name).send().await {
            Ok(out) => out,
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(GetFunctionError::ResourceNotFoundException(_))
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(lambda_err("GetFunction", e)),
        };
        let Some(conf) = out.configuration else {
            return Err(EdgeError::Lambda {
                op: "GetFunction",
                message: "the answer had no configuration".into(),
            });
        };
        let arn = conf.function_arn.unwrap_or_default();
        let mut latest_published: Option<(u64, String)> = None;
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .lambda
                .list_versions_by_function()
                .function_name(name)
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| lambda_err("ListVersionsByFunction", e))?;
            for v in page.versions.unwrap_or_default() {
                let Some(n) = v.version.as_deref().and_then(|v| v.parse::<u64>().ok()) else {
                    continue; // $LATEST
                };
                if latest_published.as_ref().is_none_or(|(m, _)| n > *m) {
                    latest_published = Some((n, v.code_sha256.unwrap_or_default()));
                }
            }
            marker = page.next_marker.filter(|m| !m.is_empty());
            if marker.is_none() {
                break;
            }
        }
        let facts = FunctionFacts {
            code_sha256: conf.code_sha256.unwrap_or_default(),
            latest_published,
        };
        Ok(Some((facts, unqualified(&arn))))
    }

    /// Makes sure a published version of `name` runs `zip`; returns its version ARN. Publishes
    /// only when the zip (code or configuration) changed.
    pub async fn ensure_function(
        &self,
        name: &str,
        role_arn: &str,
        trigger: CopilotTrigger,
        zip: &[u8],
    ) -> Result<String, EdgeError> {
        use aws_sdk_lambda::primitives::Blob;
        use aws_sdk_lambda::types::{FunctionCode, Runtime};
        let wanted = code_sha256(zip);
        let current = self.facts(name).await?;
        let plan = plan_function(current.as_ref().map(|(f, _)| f), &wanted);
        tracing::debug!(function = name, ?plan, "copilot function");
        let (arn, version) = match plan {
            FunctionPlan::Create => {
                let timeout = match trigger {
                    CopilotTrigger::ViewerRequest => 5,
                    CopilotTrigger::OriginResponse => 10,
                };
                let out = self
                    .lambda
                    .create_function()
                    .function_name(name)
                    .runtime(Runtime::Nodejs20x)
                    .role(role_arn)
                    .handler("index.handler")
                    .code(FunctionCode::builder().zip_file(Blob::new(zip)).build())
                    .description("cvs-operator copilot: 404 for closed regions")
                    .timeout(timeout)
                    .memory_size(128)
                    .publish(true)
                    .send()
                    .await
                    .map_err(|e| lambda_err("CreateFunction", e))?;
                (out.function_arn, out.version)
            }
            FunctionPlan::UpdateCode => {
                let out = self
                    .lambda
                    .update_function_code()
                    .function_name(name)
                    .zip_file(Blob::new(zip))
                    .publish(true)
                    .send()
                    .await
                    .map_err(|e| lambda_err("UpdateFunctionCode", e))?;
                (out.function_arn, out.version)
            }
            FunctionPlan::Publish => {
                let out = self
                    .lambda
                    .publish_version()
                    .function_name(name)
                    .code_sha256(&wanted)
                    .send()
                    .await
                    .map_err(|e| lambda_err("PublishVersion", e))?;
                (out.function_arn, out.version)
            }
            FunctionPlan::Reuse(v) => (current.map(|(_, arn)| arn), Some(v.to_string())),
        };
        let (Some(arn), Some(version)) = (arn, version) else {
            return Err(EdgeError::Lambda {
                op: "PublishVersion",
                message: "the answer had no function ARN or version".into(),
            });
        };
        if version == "$LATEST" {
            return Err(EdgeError::Lambda {
                op: "PublishVersion",
                message: "no version was published".into(),
            });
        }
        Ok(format!("{}:{version}", unqualified(&arn)))
    }

    /// Associates `want` (version ARN, event type) with every cache behaviour of the
    /// distribution, or with `want` None removes only this base name's associations. Reads the
    /// configuration and its ETag, updates with `IfMatch`, and starts again from a fresh read
    /// when CloudFront answers PreconditionFailed. Returns whether the distribution changed.
    pub async fn attach(
        &self,
        distribution: &str,
        want: Option<(&str, &EventType)>,
        base: &str,
    ) -> Result<bool, EdgeError> {
        use aws_sdk_cloudfront::operation::update_distribution::UpdateDistributionError;
        for _ in 0..PRECONDITION_RETRIES {
            let got = self
                .cloudfront
                .get_distribution_config()
                .id(distribution)
                .send()
                .await
                .map_err(|e| cf_err("GetDistributionConfig", distribution, e))?;
            let (Some(config), Some(etag)) = (got.distribution_config, got.e_tag) else {
                return Err(EdgeError::CloudFront {
                    op: "GetDistributionConfig",
                    distribution: distribution.to_owned(),
                    message: "no configuration or ETag in the answer".into(),
                });
            };
            let next = associate(&config, want, base).map_err(|conflict| EdgeError::Conflict {
                distribution: distribution.to_owned(),
                conflict,
            })?;
            let Some(next) = next else {
                return Ok(false);
            };
            match self
                .cloudfront
                .update_distribution()
                .id(distribution)
                .if_match(etag)
                .distribution_config(next)
                .send()
                .await
            {
                Ok(_) => return Ok(true),
                Err(e)
                    if matches!(
                        e.as_service_error(),
                        Some(UpdateDistributionError::PreconditionFailed(_))
                    ) =>
                {
                    tracing::debug!(
                        distribution,
                        "distribution changed meanwhile; reading again"
                    );
                }
                Err(e) => return Err(cf_err("UpdateDistribution", distribution, e)),
            }
        }
        Err(EdgeError::Contended(
            distribution.to_owned(),
            PRECONDITION_RETRIES,
        ))
    }
}

/// `arn:...:function:NAME` without a `:VERSION` suffix.
fn unqualified(arn: &str) -> String {
    arn.split(':').take(7).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudfront::types::{CacheBehavior, CacheBehaviors, DefaultCacheBehavior};

    const BASE: &str = "cvs-copilot";

    fn spec() -> ClusteredStreamSpec {
        serde_json::from_value(serde_json::json!({
            "stateTable": {"name": "cvs-state", "region": "us-east-1", "create": true,
                            "replicaRegions": ["eu-west-1", "ap-northeast-1"]},
            "copilot": {"enabled": true, "roleArn": "arn:aws:iam::123456789012:role/edge",
                        "tableCacheSeconds": 7, "trigger": "viewer-request"}
        }))
        .unwrap()
    }

    fn assoc(arn: &str, event: &str) -> LambdaFunctionAssociation {
        LambdaFunctionAssociation::builder()
            .lambda_function_arn(arn)
            .event_type(EventType::from(event))
            .include_body(false)
            .build()
            .unwrap()
    }

    fn ours(version: u32) -> String {
        format!("arn:aws:lambda:us-east-1:123456789012:function:{BASE}-0123456789:{version}")
    }
    const OTHER: &str = "arn:aws:lambda:us-east-1:123456789012:function:auth:3";

    #[test]
    fn baked_config_follows_the_spec() {
        let spec = spec();
        let c = edge_config(&spec, spec.copilot.as_ref().unwrap());
        assert_eq!(c.table, "cvs-state");
        assert_eq!(c.home_region, "us-east-1");
        assert_eq!(c.replica_regions, vec!["ap-northeast-1", "eu-west-1"]);
        assert_eq!(c.cache_seconds, 7);
        assert_eq!(c.trigger, Trigger::ViewerRequest);
        // What the operator writes is what the function accepts.
        let json = config_json(&c);
        assert_eq!(
            EdgeConfig::from_json(std::str::from_utf8(&json).unwrap()).unwrap(),
            c
        );
    }

    #[test]
    fn function_name_is_per_configuration_and_fits_lambda() {
        let a = function_name(BASE, b"{\"table\":\"a\"}");
        let b = function_name(BASE, b"{\"table\":\"b\"}");
        assert_ne!(a, b);
        assert_eq!(a, function_name(BASE, b"{\"table\":\"a\"}"));
        assert!(is_ours(
            &format!("arn:aws:lambda:us-east-1:1:function:{a}:4"),
            BASE
        ));
        let long = function_name(&"x".repeat(64), b"{}");
        assert_eq!(long.len(), 64);
        assert!(is_ours(
            &format!("arn:aws:lambda:us-east-1:1:function:{long}:1"),
            &"x".repeat(64)
        ));
    }

    #[test]
    fn only_our_functions_are_ours() {
        assert!(is_ours(&ours(3), BASE));
        assert!(!is_ours(OTHER, BASE));
        assert!(!is_ours(
            "arn:aws:lambda:us-east-1:1:function:cvs-copilot:1",
            BASE
        ));
        assert!(!is_ours(
            "arn:aws:lambda:us-east-1:1:function:cvs-copilot-x-0123456789:1",
            BASE
        ));
        assert!(!is_ours("not an arn", BASE));
    }

    #[test]
    fn zip_is_deterministic_and_holds_bundle_and_config() {
        let a = build_zip(b"{\"version\":1}");
        assert_eq!(a, build_zip(b"{\"version\":1}"));
        assert_ne!(code_sha256(&a), code_sha256(&build_zip(b"{\"version\":2}")));
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(a)).unwrap();
        let names: Vec<String> = archive
            .file_names()
            .map(|n| n.unwrap().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "config.json",
                "edge_lambda.js",
                "edge_lambda_bg.wasm",
                "index.js"
            ]
        );
        let mut config = String::new();
        std::io::Read::read_to_string(&mut archive.by_name("config.json").unwrap(), &mut config)
            .unwrap();
        assert_eq!(config, "{\"version\":1}");
    }

    #[test]
    fn a_version_is_published_only_when_the_zip_changed() {
        let facts = |latest: &str, published: Option<(u64, &str)>| FunctionFacts {
            code_sha256: latest.into(),
            latest_published: published.map(|(v, s)| (v, s.to_owned())),
        };
        assert_eq!(plan_function(None, "A"), FunctionPlan::Create);
        assert_eq!(
            plan_function(Some(&facts("A", Some((4, "A")))), "A"),
            FunctionPlan::Reuse(4)
        );
        assert_eq!(
            plan_function(Some(&facts("A", Some((4, "A")))), "B"),
            FunctionPlan::UpdateCode
        );
        assert_eq!(
            plan_function(Some(&facts("B", Some((4, "A")))), "B"),
            FunctionPlan::Publish
        );
        assert_eq!(
            plan_function(Some(&facts("B", None)), "B"),
            FunctionPlan::Publish
        );
    }

    #[test]
    fn associating_keeps_other_functions_and_replaces_only_ours() {
        let origin = EventType::OriginResponse;
        let existing = vec![
            assoc(OTHER, "viewer-request"),
            assoc(&ours(1), "origin-response"),
        ];
        let next = plan_associations("*", &existing, Some((&ours(2), &origin)), BASE)
            .unwrap()
            .unwrap();
        assert_eq!(
            next,
            vec![
                assoc(OTHER, "viewer-request"),
                assoc(&ours(2), "origin-response")
            ]
        );
        // Already there: nothing to do.
        assert_eq!(
            plan_associations("*", &next, Some((&ours(2), &origin)), BASE).unwrap(),
            None
        );
        // Removal takes only ours.
        assert_eq!(
            plan_associations("*", &next, None, BASE).unwrap(),
            Some(vec![assoc(OTHER, "viewer-request")])
        );
        assert_eq!(
            plan_associations("*", &[assoc(OTHER, "viewer-request")], None, BASE).unwrap(),
            None
        );
    }

    #[test]
    fn switching_trigger_moves_our_association() {
        let existing = vec![assoc(&ours(1), "origin-response")];
        let next = plan_associations(
            "*",
            &existing,
            Some((&ours(1), &EventType::ViewerRequest)),
            BASE,
        )
        .unwrap()
        .unwrap();
        assert_eq!(next, vec![assoc(&ours(1), "viewer-request")]);
    }

    #[test]
    fn another_function_on_the_event_type_is_a_conflict_not_overwritten() {
        let existing = vec![assoc(OTHER, "viewer-request")];
        let err = plan_associations(
            "/live/*",
            &existing,
            Some((&ours(1), &EventType::ViewerRequest)),
            BASE,
        )
        .unwrap_err();
        assert_eq!(err.arn, OTHER);
        assert_eq!(err.behaviour, "/live/*");
    }

    fn distribution(default_assocs: Vec<LambdaFunctionAssociation>) -> DistributionConfig {
        let mut config = DistributionConfig::builder()
            .caller_reference("x")
            .comment("")
            .enabled(true)
            .build()
            .unwrap();
        let mut default = DefaultCacheBehavior::builder()
            .target_origin_id("o")
            .viewer_protocol_policy(aws_sdk_cloudfront::types::ViewerProtocolPolicy::AllowAll)
            .build()
            .unwrap();
        default.lambda_function_associations = Some(associations(default_assocs));
        config.default_cache_behavior = Some(default);
        let b = |pattern: &str| {
            CacheBehavior::builder()
                .path_pattern(pattern)
                .target_origin_id("o")
                .viewer_protocol_policy(aws_sdk_cloudfront::types::ViewerProtocolPolicy::AllowAll)
                .build()
                .unwrap()
        };
        config.cache_behaviors = Some(
            CacheBehaviors::builder()
                .quantity(2)
                .items(b("*.m3u8"))
                .items(b("*.ts"))
                .build()
                .unwrap(),
        );
        config
    }

    #[test]
    fn every_cache_behaviour_gets_the_association_and_loses_only_ours() {
        let config = distribution(vec![assoc(OTHER, "viewer-request")]);
        let arn = ours(2);
        let next = associate(&config, Some((&arn, &EventType::OriginResponse)), BASE)
            .unwrap()
            .unwrap();
        let default = next.default_cache_behavior.as_ref().unwrap();
        let lfa = default.lambda_function_associations.as_ref().unwrap();
        assert_eq!(lfa.quantity, 2);
        for b in next
            .cache_behaviors
            .as_ref()
            .unwrap()
            .items
            .as_ref()
            .unwrap()
        {
            let lfa = b.lambda_function_associations.as_ref().unwrap();
            assert_eq!(lfa.quantity, 1);
            assert_eq!(lfa.items.as_ref().unwrap()[0].lambda_function_arn, arn);
        }
        assert_eq!(
            associate(&next, Some((&arn, &EventType::OriginResponse)), BASE).unwrap(),
            None
        );
        let removed = associate(&next, None, BASE).unwrap().unwrap();
        let default = removed.default_cache_behavior.as_ref().unwrap();
        assert_eq!(
            default.lambda_function_associations.as_ref().unwrap().items,
            Some(vec![assoc(OTHER, "viewer-request")])
        );
        for b in removed
            .cache_behaviors
            .as_ref()
            .unwrap()
            .items
            .as_ref()
            .unwrap()
        {
            assert_eq!(b.lambda_function_associations.as_ref().unwrap().quantity, 0);
        }
    }

    #[test]
    fn bundle_is_the_committed_one() {
        for (name, bytes) in BUNDLE {
            assert!(!bytes.is_empty(), "{name}");
        }
        assert_eq!(&BUNDLE[1].1[..4], b"\0asm");
    }
}
