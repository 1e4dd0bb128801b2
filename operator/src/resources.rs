//! The two custom resources, `ClusteredStream` and `StreamInstance` (group `cvs.dev`, version
//! `v1alpha1`), as Rust types. The CustomResourceDefinitions in `crds/` are generated from these
//! types (`cvs-operator crd`), so every doc comment here becomes `kubectl explain` text and every
//! `pattern`, `range` and CEL rule is enforced by the API server before the operator sees an object.
//!
//! People (or Git, through Argo CD) write `spec`; the operator only ever writes `status`.

// Several `printcolumn(...)` entries repeat `type_ = ...`; clippy mistakes them for duplicated
// attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of both kinds.
pub const GROUP: &str = "cvs.dev";
/// API version of both kinds.
pub const VERSION: &str = "v1alpha1";

/// An AWS region name such as `us-east-1`, `eu-west-2` or `us-gov-west-1`.
const REGION_PATTERN: &str = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}$";
/// A DNS host name, lower case, with an optional port (a port only makes sense for local origins).
const HOST_PATTERN: &str =
    r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:[0-9]{1,5})?$";
/// A Kubernetes object name (RFC 1123 subdomain).
const OBJECT_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// CEL: an absolute http or https URL with a host.
const HTTP_URL_RULE: &str =
    "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''";
const HTTP_URL_MESSAGE: &str = "must be an absolute http:// or https:// URL with a host";

// ---------------------------------------------------------------------------------------------
// ClusteredStream
// ---------------------------------------------------------------------------------------------

/// One live event as the audience sees it: the set of regional StreamInstances that carry it,
/// how their health is judged, when a region is closed, and where the merged multi-region master
/// playlist is published.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cvs.dev",
    version = "v1alpha1",
    kind = "ClusteredStream",
    plural = "clusteredstreams",
    namespaced,
    status = "ClusteredStreamStatus",
    shortname = "cstream",
    category = "cvs",
    derive = "PartialEq",
    doc = "A live event carried by several regional StreamInstances and watched by the Clustered Video Streams operator.",
    printcolumn(
        name = "Failover",
        type_ = "string",
        json_path = ".spec.failover.mode",
        description = "Failover policy"
    ),
    printcolumn(
        name = "Instances",
        type_ = "integer",
        json_path = ".status.totalInstances",
        description = "StreamInstances that name this ClusteredStream"
    ),
    printcolumn(
        name = "Open",
        type_ = "integer",
        json_path = ".status.openInstances",
        description = "Instances that are effectively open"
    ),
    printcolumn(
        name = "Healthy",
        type_ = "integer",
        json_path = ".status.healthyInstances",
        description = "Instances whose playlists are fresh"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "At least minOpen instances are open and healthy"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusteredStreamSpec {
    /// The DynamoDB global table that records the state of every instance, read by the copilot
    /// edge function in each region.
    pub state_table: StateTableSpec,

    /// How the freshness of each instance's playlists is judged.
    #[serde(default)]
    pub health: HealthPolicy,

    /// When instances are closed and reopened without a person asking.
    #[serde(default)]
    pub failover: FailoverPolicy,

    /// The fewest instances that must stay open. A change (a patch or an automatic failover) that
    /// would leave fewer open is not applied, and the reason shows as a condition and an Event.
    #[serde(default = "default_min_open")]
    #[schemars(range(min = 1, max = 64))]
    pub min_open: u32,

    /// Where the merged multi-region master playlist is published. Without it the playlist is
    /// not published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playlist: Option<PlaylistSpec>,

    /// HLS Content Steering (EXT-X-CONTENT-STEERING) settings for the merged master playlist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steering: Option<SteeringSpec>,

    /// Where state changes are announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationsSpec>,

    /// The copilot edge function that answers 404 for a closed instance so players move to
    /// another region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copilot: Option<CopilotSpec>,
}

fn default_min_open() -> u32 {
    1
}

/// The DynamoDB global table holding one item per StreamInstance, keyed by CloudFront domain.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.create || !has(self.replicaRegions) || size(self.replicaRegions) == 0").message("replicaRegions can only be set when create is true"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.replicaRegions) || !self.replicaRegions.exists(r, r == self.region)").message("replicaRegions must not contain the table's own region"))]
pub struct StateTableSpec {
    /// Table name.
    #[schemars(length(min = 3, max = 255), regex(pattern = r"^[a-zA-Z0-9_.-]+$"))]
    pub name: String,

    /// The region the operator reads and writes the table in.
    #[schemars(length(max = 32), regex(pattern = REGION_PATTERN))]
    pub region: String,

    /// Create the table (and its replicas) when it does not exist. When false, the operator only
    /// checks that the table exists with the expected key and reports a condition when it does not.
    #[serde(default)]
    pub create: bool,

    /// Further regions to replicate the table to, as a global table. Only with `create: true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 32), regex(pattern = REGION_PATTERN)))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub replica_regions: Vec<String>,
}

/// How the freshness of each rendition's media playlist is judged.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HealthPolicy {
    /// A rendition is stale when its media playlist has not gained a segment for this many target
    /// durations. RFC 8216bis 6.2.1 requires servers to update within 1.5 target durations.
    #[serde(default = "default_staleness_multiplier")]
    #[schemars(range(max = 10.0))]
    #[x_kube(validation = kube::core::Rule::new("self > 1.0").message("stalenessMultiplier must be greater than 1 (1.5 is the HLS server bound)"))]
    pub staleness_multiplier: f64,

    /// Recovery hysteresis: consecutive fresh playlist updates a stale rendition must show before
    /// it counts as fresh again.
    #[serde(default = "default_recovery_updates")]
    #[schemars(range(min = 1, max = 20))]
    pub recovery_updates: u32,

    /// Consecutive failed fetches of one playlist before it counts as failed (default 3). Every
    /// failure that can be a passing glitch (an HTTP error status, a timeout, a refused or reset
    /// connection, an unparsable or cut body) is first confirmed by a second request within a
    /// second, so one failed request never changes an instance's health. Failures that give the
    /// same answer every time (too large, bad redirect, target duration out of range, refused
    /// destination) count at once. Whatever the threshold, a playlist without a new segment
    /// within the staleness bound is stale.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 10))]
    pub failure_threshold: u32,

    /// Check that each instance's playlists point at segments that are served (default true): on
    /// each new segment, about one rendition per instance sends a HEAD for it (every rendition
    /// in turn), and the `EXT-X-MAP` initialisation segment once. `failureThreshold` failed
    /// checks in a row of one rendition make it stale (`SegmentUnavailable`).
    #[serde(default = "default_true")]
    pub segment_checks: bool,

    /// LL-HLS: a rendition whose media playlist offers blocking reload
    /// (`EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES` and `EXT-X-PART-INF`) is probed with
    /// `_HLS_msn`/`_HLS_part` requests and is stale when no new part arrives within this many
    /// `PART-TARGET`s (never more than the segment bound). The default 3 is the smallest
    /// `PART-HOLD-BACK` RFC 8216bis allows: a player that close to the live edge stalls after that.
    #[serde(default = "default_part_staleness_multiplier")]
    #[schemars(range(min = 1.5, max = 20.0))]
    pub part_staleness_multiplier: f64,

    /// Hosts besides each instance's master playlist host that rendition URIs and redirects may
    /// point to (`host` for any port, or `host:port`), for example a CDN the origin redirects to.
    /// Every other host is refused (`DestinationRefused`), and so are internal addresses whatever
    /// the host (see SECURITY.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub allowed_hosts: Vec<AllowedHost>,

    /// Credentials the origins need, from a Secret in this ClusteredStream's namespace. They are
    /// sent to each instance's master host and to `allowedHosts`, never on a redirect to another
    /// host, and never appear in status, Events, logs, metrics or SNS. Without them, put nothing
    /// secret in `origin.url` either: it is readable by anyone who can read the StreamInstance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_credentials: Option<OriginCredentialsSpec>,

    /// Cross-region lag: how far an instance may run behind the leading instance of this
    /// ClusteredStream before it gets `Lagging=True`, and whether that makes it unhealthy.
    #[serde(default)]
    pub lag: LagSpec,
}

/// Cross-region lag. Each fresh instance's live edge (the end of its newest segment by
/// `EXT-X-PROGRAM-DATE-TIME`) is compared with the newest of the other fresh instances; one more
/// than `maxSeconds` behind for a few target durations gets `Lagging=True`, and loses it once
/// it has stayed under the limit minus a margin for as long. Stale instances neither lag nor
/// lead. Without program date-times there is no verdict (`Lagging=Unknown`) unless
/// `sharedMediaSequence` is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LagSpec {
    /// Largest lag behind the leading instance, in seconds (default 20; 2 to 600). A lag is
    /// only known to within about a target duration: keep this a few target durations long.
    #[serde(default = "default_max_lag_seconds")]
    #[schemars(range(min = 2, max = 600))]
    pub max_seconds: u32,

    /// A lagging instance counts as unhealthy (`Healthy=False`, reason `Lagging`), with every
    /// consequence of an unhealthy verdict (failover, the state table, SNS). Default false: lag
    /// is only reported.
    #[serde(default)]
    pub unhealthy: bool,

    /// The regions number their segments alike (one encoder, or epoch-locked packagers), so
    /// live edges may be compared by media sequence x target duration when playlists carry no
    /// `EXT-X-PROGRAM-DATE-TIME`. Default false.
    #[serde(default)]
    pub shared_media_sequence: bool,
}

impl Default for LagSpec {
    fn default() -> Self {
        Self {
            max_seconds: default_max_lag_seconds(),
            unhealthy: false,
            shared_media_sequence: false,
        }
    }
}

impl LagSpec {
    /// The policy the decisions use.
    pub fn policy(&self) -> crate::decide::lag::LagPolicy {
        crate::decide::lag::LagPolicy {
            max_seconds: self.max_seconds,
            unhealthy: self.unhealthy,
            shared_media_sequence: self.shared_media_sequence,
        }
    }
}

fn default_max_lag_seconds() -> u32 {
    crate::decide::lag::DEFAULT_MAX_SECONDS
}

/// Where the origin credentials are. The Secret must carry the label
/// `cvs.dev/origin-credentials: "true"` and hold `username` and `password` (type
/// `kubernetes.io/basic-auth`: `Authorization: Basic`), or `bearer-token` (`Authorization:
/// Bearer`), or, with `headerName`, `header-value`. A missing or malformed Secret is a
/// configuration error (`CredentialsReady=False` on each instance): the instances are not
/// probed meanwhile, and their recorded health stands.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OriginCredentialsSpec {
    /// Name of the Secret, in the ClusteredStream's own namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub secret_name: String,

    /// Send the Secret's `header-value` in this header instead of `Authorization`, for
    /// example `X-MediaPackage-CDNIdentifier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    )]
    pub header_name: Option<String>,
}

/// A host name, lower case, with an optional port.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
pub struct AllowedHost(
    #[schemars(length(min = 1, max = 259), regex(pattern = HOST_PATTERN))] pub String,
);

fn default_staleness_multiplier() -> f64 {
    1.5
}

fn default_part_staleness_multiplier() -> f64 {
    crate::probe::llhls::DEFAULT_PART_STALENESS_MULTIPLIER
}

fn default_recovery_updates() -> u32 {
    2
}

fn default_true() -> bool {
    true
}

fn default_failure_threshold() -> u32 {
    crate::probe::decision::DEFAULT_FAILURE_THRESHOLD
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            staleness_multiplier: default_staleness_multiplier(),
            recovery_updates: default_recovery_updates(),
            failure_threshold: default_failure_threshold(),
            segment_checks: true,
            part_staleness_multiplier: default_part_staleness_multiplier(),
            allowed_hosts: Vec::new(),
            origin_credentials: None,
            lag: LagSpec::default(),
        }
    }
}

/// Whether the operator closes and reopens instances on its own.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailoverMode {
    /// Only `spec.distroOpen` of each StreamInstance decides (the default).
    #[default]
    Manual,
    /// A stale instance is closed while stale and reopened after it has stayed healthy for
    /// `holdDownSeconds`.
    Automatic,
}

/// When instances are closed and reopened without a person asking.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailoverPolicy {
    /// `Manual` (default) or `Automatic`.
    #[serde(default)]
    pub mode: FailoverMode,

    /// With `Automatic`, how long an instance must stay healthy before it is reopened.
    #[serde(default = "default_hold_down_seconds")]
    #[schemars(range(max = 86400))]
    pub hold_down_seconds: u32,
}

fn default_hold_down_seconds() -> u32 {
    60
}

/// Where the merged multi-region master playlist is published.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlaylistSpec {
    /// S3 objects the playlist is written to, at most one per region.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["region".into()]))]
    pub targets: Vec<PublicationTarget>,

    /// Cache-Control header stored with the playlist object.
    #[serde(default = "default_cache_control")]
    #[schemars(length(min = 1, max = 256))]
    pub cache_control: String,

    /// What happens to the variants of a closed instance: `Keep` them in the master (the default:
    /// players already on them move by content steering and the copilot's 404s, and the master
    /// does not change when a region closes) or `Omit` them, so new loads of the master never
    /// see a closed region. An instance is never omitted when every instance is closed.
    #[serde(default)]
    pub closed_variants: ClosedVariants,

    /// Key of the steering manifest object, in every target's bucket. Default: the playlist key
    /// with its extension replaced by `.steering.json` (`live/event/master.m3u8` gives
    /// `live/event/master.steering.json`). `spec.steering.serverUri` should point at it through
    /// the CDN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = kube::core::Rule::new("!self.startsWith('/')").message("steeringKey must not start with '/'"))]
    pub steering_key: Option<String>,

    /// How long an instance's last good master playlist is still merged after its master stopped
    /// being fetchable or valid, in seconds. Past that age the instance is left out of the merge.
    #[serde(default = "default_max_contribution_age")]
    #[schemars(range(min = 10, max = 86400))]
    pub max_contribution_age_seconds: u32,
}

fn default_cache_control() -> String {
    "max-age=2".to_owned()
}

fn default_max_contribution_age() -> u32 {
    600
}

/// What the merged master does with the variants of a closed instance.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClosedVariants {
    /// Keep them (the default): players move by content steering and the copilot's 404s.
    #[default]
    Keep,
    /// Leave them out of the master, for new loads; players already on them move by steering.
    Omit,
}

/// One S3 object the merged master playlist is written to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PublicationTarget {
    /// Region of the bucket.
    #[schemars(length(max = 32), regex(pattern = REGION_PATTERN))]
    pub region: String,

    /// Bucket name.
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
    )]
    pub bucket: String,

    /// Object key, without a leading slash, for example `live/event/master.m3u8`.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = kube::core::Rule::new("!self.startsWith('/')").message("key must not start with '/'"))]
    pub key: String,
}

/// HLS Content Steering for the merged master playlist.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!self.enabled || has(self.serverUri)").message("serverUri is required when steering is enabled"))]
pub struct SteeringSpec {
    /// Add EXT-X-CONTENT-STEERING and a PATHWAY-ID per region to the master playlist.
    #[serde(default)]
    pub enabled: bool,

    /// URL of the steering manifest players reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = kube::core::Rule::new(HTTP_URL_RULE).message(HTTP_URL_MESSAGE))]
    pub server_uri: Option<String>,

    /// TTL of the steering manifest, in seconds.
    #[serde(default = "default_steering_ttl")]
    #[schemars(range(min = 1, max = 3600))]
    pub ttl_seconds: u32,
}

fn default_steering_ttl() -> u32 {
    10
}

/// Where state changes are announced.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsSpec {
    /// ARN of the SNS topic that receives one message per change of health or open state.
    #[schemars(
        length(max = 512),
        regex(
            pattern = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$"
        )
    )]
    pub sns_topic_arn: String,
}

/// The copilot edge function.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!self.enabled || has(self.roleArn)").message("roleArn is required when the copilot is enabled"))]
pub struct CopilotSpec {
    /// Deploy the copilot and attach it to each instance's CloudFront distribution.
    #[serde(default)]
    pub enabled: bool,

    /// Lambda function name (in us-east-1, as Lambda@Edge requires).
    #[serde(default = "default_function_name")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-zA-Z0-9_-]+$"))]
    pub function_name: String,

    /// IAM role the function runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 2048),
        regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$")
    )]
    pub role_arn: Option<String>,

    /// How long the function caches a table read, in seconds.
    #[serde(default = "default_table_cache_seconds")]
    #[schemars(range(max = 300))]
    pub table_cache_seconds: u32,

    /// The CloudFront event the function runs on. `origin-response` (default) runs on cache
    /// misses only, so a closed region's cached objects are served until their TTL;
    /// `viewer-request` runs on every request, so a close takes effect within
    /// `tableCacheSeconds`, at the cost of one invocation per request. See edge-lambda/README.md.
    #[serde(default)]
    pub trigger: CopilotTrigger,
}

/// The CloudFront event type the copilot is associated with.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CopilotTrigger {
    /// On cache misses, after the origin answered (the original system's mode).
    #[default]
    OriginResponse,
    /// On every request, before the CloudFront cache.
    ViewerRequest,
}

fn default_function_name() -> String {
    "cvs-copilot".to_owned()
}

fn default_table_cache_seconds() -> u32 {
    5
}

/// What the operator observed of a ClusteredStream and its instances.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusteredStreamStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Degraded`, and as their features run, `Published` and `EdgeDeployed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Every StreamInstance that names this ClusteredStream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub instances: Vec<InstanceSummary>,

    /// Number of instances.
    #[serde(default)]
    pub total_instances: u32,

    /// Number of instances that are effectively open.
    #[serde(default)]
    pub open_instances: u32,

    /// Number of instances whose playlists are fresh.
    #[serde(default)]
    pub healthy_instances: u32,

    /// The merged master playlist and steering manifest as last published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playlist: Option<PlaylistStatus>,
}

/// The merged master playlist and steering manifest as last published.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlaylistStatus {
    /// SHA-256 (hex) of the merged master playlist last built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// When the merged master playlist last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<Time>,
    /// SHA-256 (hex) of the steering manifest last built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steering_hash: Option<String>,
    /// When the steering manifest last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steering_changed_at: Option<Time>,
    /// Each publication target's last result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetStatus>,
    /// Each instance's contribution to the merge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contributions: Vec<ContributionStatus>,
}

/// One publication target's last result.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// Region of the bucket.
    pub region: String,
    /// Bucket name.
    pub bucket: String,
    /// Whether both objects hold the current bytes.
    pub in_sync: bool,
    /// SHA-256 (hex) of the master playlist the bucket holds, as far as the operator knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// When an object was last written to this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_at: Option<Time>,
    /// The last write error, while the target is failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One instance's contribution to the merged master.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContributionStatus {
    /// StreamInstance name.
    pub name: String,
    /// Whether its variants are in the merged master.
    pub merged: bool,
    /// When its master playlist was last fetched and found valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good: Option<Time>,
    /// Why it is left out, or why an older copy of its master is used.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// One instance as its ClusteredStream sees it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSummary {
    /// StreamInstance name.
    pub name: String,
    /// Region of the instance.
    pub region: String,
    /// CloudFront domain of the instance.
    pub domain: String,
    /// What `spec.distroOpen` asks for.
    pub desired_open: bool,
    /// The effective open state after the failover policy and minOpen.
    pub open: bool,
    /// Whether the instance's playlists are fresh; absent until the first probe result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// Why the effective state is what it is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

// ---------------------------------------------------------------------------------------------
// StreamInstance
// ---------------------------------------------------------------------------------------------

/// One region's copy of a live event: an origin fronted by its own CloudFront distribution.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cvs.dev",
    version = "v1alpha1",
    kind = "StreamInstance",
    plural = "streaminstances",
    namespaced,
    status = "StreamInstanceStatus",
    shortname = "sinst",
    category = "cvs",
    derive = "PartialEq",
    doc = "One region's copy of a live event, watched by the Clustered Video Streams operator.",
    printcolumn(
        name = "Stream",
        type_ = "string",
        json_path = ".spec.clusteredStream",
        description = "The ClusteredStream this instance belongs to"
    ),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
    printcolumn(
        name = "Desired",
        type_ = "boolean",
        json_path = ".spec.distroOpen",
        description = "What spec.distroOpen asks for"
    ),
    printcolumn(
        name = "Open",
        type_ = "boolean",
        json_path = ".status.open",
        description = "Effective open state"
    ),
    printcolumn(
        name = "Healthy",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Healthy\")].status"
    ),
    printcolumn(
        name = "Lag",
        type_ = "number",
        json_path = ".status.lagSeconds",
        description = "Seconds behind the leading instance of the ClusteredStream",
        priority = 1
    ),
    printcolumn(
        name = "Domain",
        type_ = "string",
        json_path = ".spec.cloudfront.domain",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct StreamInstanceSpec {
    /// Name of the ClusteredStream (in the same namespace) this instance belongs to. Immutable.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("clusteredStream is immutable; create a new StreamInstance instead"))]
    pub clustered_stream: String,

    /// AWS region of this copy, for example `us-east-1`.
    #[schemars(length(max = 32), regex(pattern = REGION_PATTERN))]
    pub region: String,

    /// The CloudFront distribution in front of this copy.
    pub cloudfront: CloudFrontSpec,

    /// The origin whose master playlist is probed.
    pub origin: OriginSpec,

    /// Whether a person wants this instance to serve players. Closing it (false) makes the copilot
    /// answer 404 so players move to another region, unless that would leave fewer than the
    /// ClusteredStream's minOpen instances open.
    #[serde(default = "default_distro_open")]
    pub distro_open: bool,
}

fn default_distro_open() -> bool {
    true
}

/// The CloudFront distribution in front of an instance.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CloudFrontSpec {
    /// Domain of the distribution, for example `d111111abcdef8.cloudfront.net`. It keys the
    /// instance's item in the state table, so it is immutable.
    #[schemars(length(min = 1, max = 253), regex(pattern = HOST_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("cloudfront.domain is immutable: it keys the state table item"))]
    pub domain: String,

    /// Distribution ID, for example `EDFDVBD6EXAMPLE`; needed to attach the copilot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 6, max = 32), regex(pattern = r"^[A-Z0-9]+$"))]
    pub distribution_id: Option<String>,
}

/// The origin of an instance.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OriginSpec {
    /// URL of the instance's master playlist (http or https), for example
    /// `https://origin.example.com/live/event/master.m3u8`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new(HTTP_URL_RULE).message(HTTP_URL_MESSAGE))]
    pub url: String,
}

/// What the operator observed of a StreamInstance.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StreamInstanceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Healthy`, `Stale`, `Lagging` (behind the leading instance, see `spec.health.lag` of the
    /// ClusteredStream), `Open`, `Bound` (whether the named ClusteredStream exists) and
    /// `DomainUnique` (whether another StreamInstance of the namespace claims the same domain in
    /// the same state table), each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The effective open state: what the copilot enforces after the failover policy and minOpen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<bool>,

    /// Freshness of the rendition playlists found in the master playlist: at most 50, the stale
    /// ones first; `renditionsTotal` and `renditionsStale` count them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["uri".into()]))]
    pub renditions: Vec<RenditionStatus>,

    /// When the probe's verdict last changed between healthy and unhealthy (or was first
    /// reached), as RFC 3339 with milliseconds. Condition times have one-second resolution; the
    /// failover hold-down is measured from this instead. A restart of the operator keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_changed_at: Option<String>,

    /// Number of renditions the probe follows. `renditions` lists at most 50 of them, the stale
    /// ones first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renditions_total: Option<u32>,

    /// Number of stale renditions, all of them, listed or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renditions_stale: Option<u32>,

    /// How far this instance runs behind the leading instance of its ClusteredStream, in
    /// seconds (0 when it leads); absent when it is not compared (see the `Lagging` condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
}

/// A count or sequence number from outside, as the API server can store it: its integers are
/// int64, and a larger value would make the whole status write fail.
pub fn api_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Freshness of one rendition's media playlist.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RenditionStatus {
    /// Absolute URL of the media playlist.
    pub uri: String,
    /// `video`, `audio`, `subtitles`, `closed-captions` or `iframe`.
    pub kind: String,
    /// Whether a new segment arrived within the staleness bound.
    pub fresh: bool,
    /// Last EXT-X-MEDIA-SEQUENCE seen (HLS allows up to 2^64-1; values beyond the API's int64
    /// range are shown as 9223372036854775807).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub media_sequence: Option<i64>,
    /// EXT-X-TARGETDURATION, in milliseconds (at most 9223372036854775807).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub target_duration_ms: Option<i64>,
    /// When the playlist last gained a segment (whole seconds: Kubernetes times carry no
    /// fraction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<Time>,
    /// The last probe error, if the last probe failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl StreamInstance {
    /// Namespace of the instance; instances are namespaced, so it is always set once stored.
    pub fn namespace_or_default(&self) -> String {
        self.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    fn schema_of<T: CustomResourceExt>() -> serde_json::Value {
        let crd = serde_json::to_value(T::crd()).unwrap();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    #[test]
    fn every_property_is_documented() {
        fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
            if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
                for (name, prop) in props {
                    let here = format!("{path}.{name}");
                    let top_level = matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
                    if !top_level && prop.get("description").is_none() {
                        missing.push(here.clone());
                    }
                    walk(&here, prop, missing);
                }
            }
            if let Some(items) = schema.get("items") {
                walk(&format!("{path}[]"), items, missing);
            }
        }
        let mut missing = Vec::new();
        walk(
            "ClusteredStream",
            &schema_of::<ClusteredStream>(),
            &mut missing,
        );
        walk(
            "StreamInstance",
            &schema_of::<StreamInstance>(),
            &mut missing,
        );
        assert!(
            missing.is_empty(),
            "fields without a description: {missing:?}"
        );
    }

    #[test]
    fn defaults_match_the_design() {
        let spec: StreamInstanceSpec = serde_json::from_value(serde_json::json!({
            "clusteredStream": "event", "region": "us-east-1",
            "cloudfront": {"domain": "d1.cloudfront.net"},
            "origin": {"url": "https://o.example.com/master.m3u8"}
        }))
        .unwrap();
        assert!(spec.distro_open);
        let cs: ClusteredStreamSpec = serde_json::from_value(serde_json::json!({
            "stateTable": {"name": "cvs-state", "region": "us-east-1"}
        }))
        .unwrap();
        assert_eq!(cs.health.staleness_multiplier, 1.5);
        assert_eq!(cs.health.failure_threshold, 3);
        assert_eq!(cs.min_open, 1);
        assert_eq!(cs.failover.mode, FailoverMode::Manual);
    }
}
