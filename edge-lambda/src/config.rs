//! The configuration baked into the function's zip as `config.json` when the operator deploys it
//! (Lambda@Edge has no environment variables). Every number is clamped: a hand-edited or stale
//! file must never make the function wait longer than its trigger allows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The CloudFront event the function is associated with.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Runs on cache misses only, after the origin answered; a closed region's cached objects are
    /// served until their TTL. The original system's mode.
    OriginResponse,
    /// Runs on every request before the cache; a close takes effect within `cacheSeconds`.
    ViewerRequest,
}

impl Trigger {
    /// CloudFront's name for the event type (`EventType` of a LambdaFunctionAssociation).
    pub fn event_type(self) -> &'static str {
        match self {
            Trigger::OriginResponse => "origin-response",
            Trigger::ViewerRequest => "viewer-request",
        }
    }

    /// The longest a function may run for this trigger, in milliseconds (Lambda@Edge quotas).
    pub fn limit_millis(self) -> u32 {
        match self {
            Trigger::OriginResponse => 30_000,
            Trigger::ViewerRequest => 5_000,
        }
    }
}

/// Default state cache per container, seconds (`spec.copilot.tableCacheSeconds`).
pub const DEFAULT_CACHE_SECONDS: u32 = 5;
/// Default bound on one table read, milliseconds.
pub const DEFAULT_READ_TIMEOUT_MILLIS: u32 = 1_000;
/// Default bound on a read when the container knows no state for the key yet (cold), ms.
pub const DEFAULT_COLD_READ_TIMEOUT_MILLIS: u32 = 2_000;
/// Default `max-age` of the 404 answer, seconds.
pub const DEFAULT_NOT_FOUND_MAX_AGE: u32 = 2;
/// The URI suffixes answered 404 for a closed instance by default: HLS playlists and segments.
pub const DEFAULT_SUFFIXES: &[&str] = &[
    ".m3u8", ".ts", ".m4s", ".mp4", ".m4a", ".m4v", ".aac", ".ac3", ".ec3", ".mp3", ".vtt",
    ".webvtt", ".cmfv", ".cmfa", ".cmft",
];

/// What `config.json` holds. Field names are camelCase in the file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Format version of this file; only 1 is known.
    pub version: u32,
    /// State table name.
    pub table: String,
    /// The table's home region (where the operator writes).
    pub home_region: String,
    /// Regions holding a replica of the table (global table).
    #[serde(default)]
    pub replica_regions: Vec<String>,
    /// Explicit choice of the table region to read from, per edge region. Edge regions not
    /// listed use [`Config::read_region`]'s nearest-region rule.
    #[serde(default)]
    pub read_regions: BTreeMap<String, String>,
    /// How long a read state is used before it is read again, per container.
    #[serde(default = "default_cache_seconds")]
    pub cache_seconds: u32,
    /// Bound on one read; past it the last known state is served.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_millis: u32,
    /// Bound on a read when no state is known yet for the key (the container's first read pays
    /// for loading the SDK and resolving credentials); past it the event passes through.
    #[serde(default = "default_cold_read_timeout")]
    pub cold_read_timeout_millis: u32,
    /// The trigger the function is associated with.
    pub trigger: Trigger,
    /// `max-age` of the 404 answer.
    #[serde(default = "default_not_found_max_age")]
    pub not_found_max_age: u32,
    /// URI suffixes (lower case) that a closed instance answers 404 for; others pass through.
    #[serde(default = "default_suffixes")]
    pub suffixes: Vec<String>,
}

fn default_cache_seconds() -> u32 {
    DEFAULT_CACHE_SECONDS
}
fn default_read_timeout() -> u32 {
    DEFAULT_READ_TIMEOUT_MILLIS
}
fn default_cold_read_timeout() -> u32 {
    DEFAULT_COLD_READ_TIMEOUT_MILLIS
}
fn default_not_found_max_age() -> u32 {
    DEFAULT_NOT_FOUND_MAX_AGE
}
fn default_suffixes() -> Vec<String> {
    DEFAULT_SUFFIXES.iter().map(|s| (*s).to_owned()).collect()
}

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("config.json is not valid: {0}")]
    Parse(String),
    #[error("config.json version {0} is not supported (only 1)")]
    Version(u32),
    #[error("config.json: {0} must not be empty")]
    Empty(&'static str),
}

impl Config {
    /// A configuration with defaults, for the operator and tests.
    pub fn new(table: &str, home_region: &str, trigger: Trigger) -> Config {
        Config {
            version: 1,
            table: table.to_owned(),
            home_region: home_region.to_owned(),
            replica_regions: Vec::new(),
            read_regions: BTreeMap::new(),
            cache_seconds: DEFAULT_CACHE_SECONDS,
            read_timeout_millis: DEFAULT_READ_TIMEOUT_MILLIS,
            cold_read_timeout_millis: DEFAULT_COLD_READ_TIMEOUT_MILLIS,
            trigger,
            not_found_max_age: DEFAULT_NOT_FOUND_MAX_AGE,
            suffixes: default_suffixes(),
        }
    }

    /// Parses and validates `config.json`, clamping every number into its safe range.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config =
            serde_json::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        if config.version != 1 {
            return Err(ConfigError::Version(config.version));
        }
        if config.table.is_empty() {
            return Err(ConfigError::Empty("table"));
        }
        if config.home_region.is_empty() {
            return Err(ConfigError::Empty("homeRegion"));
        }
        config.cache_seconds = config.cache_seconds.clamp(1, 300);
        // Well under the trigger's limit, whatever the file says: a read that has not answered
        // by then is abandoned for the last known state.
        let ceiling = (config.trigger.limit_millis() / 5).min(3_000);
        config.read_timeout_millis = config.read_timeout_millis.clamp(50, ceiling);
        // A cold read may wait longer (passing through unknowing is the worse outcome), but
        // never past two fifths of the limit: 2 s on viewer-request, 3 s on origin-response.
        let cold_ceiling = (config.trigger.limit_millis() * 2 / 5).min(3_000);
        config.cold_read_timeout_millis = config
            .cold_read_timeout_millis
            .clamp(config.read_timeout_millis, cold_ceiling);
        config.not_found_max_age = config.not_found_max_age.min(60);
        for s in &mut config.suffixes {
            *s = s.to_ascii_lowercase();
        }
        Ok(config)
    }

    /// The table region this function reads from when it runs in `edge_region` (the `AWS_REGION`
    /// of the Lambda@Edge replica): an explicit `readRegions` entry; else the edge region itself
    /// when it holds a replica; else the first table region on the same continent (`eu-`, `us-`,
    /// `ap-`, ...); else the home region.
    pub fn read_region(&self, edge_region: &str) -> &str {
        if let Some(r) = self.read_regions.get(edge_region) {
            return r;
        }
        let regions = || std::iter::once(&self.home_region).chain(self.replica_regions.iter());
        if let Some(r) = regions().find(|r| r.as_str() == edge_region) {
            return r;
        }
        let area = |r: &str| r.split('-').next().unwrap_or("").to_owned();
        let mine = area(edge_region);
        // us-* and ca-* are one area for latency; so are the two halves of a split name.
        let near = |r: &str| {
            let theirs = area(r);
            theirs == mine
                || matches!(
                    (mine.as_str(), theirs.as_str()),
                    ("us", "ca") | ("ca", "us") | ("us", "mx") | ("mx", "us")
                )
        };
        if !mine.is_empty()
            && let Some(r) = regions().find(|r| near(r))
        {
            return r;
        }
        &self.home_region
    }

    /// Whether a closed instance answers 404 for this URI (case-insensitive suffix match).
    pub fn covers(&self, uri: &str) -> bool {
        let tail = uri.rsplit('/').next().unwrap_or(uri);
        self.suffixes.iter().any(|s| {
            tail.len() >= s.len()
                && tail.is_char_boundary(tail.len() - s.len())
                && tail[tail.len() - s.len()..].eq_ignore_ascii_case(s)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, ConfigError> {
        Config::from_json(json)
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let c = parse(
            r#"{"version":1,"table":"t","homeRegion":"us-east-1","trigger":"origin-response"}"#,
        )
        .unwrap();
        assert_eq!(c.cache_seconds, 5);
        assert_eq!(c.read_timeout_millis, 1_000);
        assert_eq!(c.cold_read_timeout_millis, 2_000);
        assert_eq!(c.not_found_max_age, 2);
        assert_eq!(c.trigger, Trigger::OriginResponse);
        assert!(c.covers("/live/720p/index.m3u8"));
    }

    #[test]
    fn numbers_are_clamped_under_the_trigger_limit() {
        let c = parse(
            r#"{"version":1,"table":"t","homeRegion":"us-east-1","trigger":"viewer-request",
                "cacheSeconds":0,"readTimeoutMillis":999999,"notFoundMaxAge":86400}"#,
        )
        .unwrap();
        assert_eq!(c.cache_seconds, 1);
        assert_eq!(
            c.read_timeout_millis, 1_000,
            "a fifth of viewer-request's 5 s"
        );
        assert_eq!(c.not_found_max_age, 60);
        let c = parse(
            r#"{"version":1,"table":"t","homeRegion":"us-east-1","trigger":"origin-response",
                "readTimeoutMillis":1,"cacheSeconds":100000,"coldReadTimeoutMillis":0}"#,
        )
        .unwrap();
        assert_eq!(c.read_timeout_millis, 50);
        assert_eq!(c.cache_seconds, 300);
        assert_eq!(
            c.cold_read_timeout_millis, 50,
            "never shorter than the warm bound"
        );
        let c = parse(
            r#"{"version":1,"table":"t","homeRegion":"us-east-1","trigger":"origin-response",
                "readTimeoutMillis":2500,"coldReadTimeoutMillis":60000}"#,
        )
        .unwrap();
        assert_eq!(
            (c.read_timeout_millis, c.cold_read_timeout_millis),
            (2_500, 3_000)
        );
    }

    #[test]
    fn bad_files_are_refused() {
        assert_eq!(
            parse(r#"{"version":2,"table":"t","homeRegion":"r","trigger":"origin-response"}"#),
            Err(ConfigError::Version(2))
        );
        assert_eq!(
            parse(r#"{"version":1,"table":"","homeRegion":"r","trigger":"origin-response"}"#),
            Err(ConfigError::Empty("table"))
        );
        assert!(matches!(
            parse(r#"{"version":1,"table":"t","homeRegion":"r","trigger":"viewer-response"}"#),
            Err(ConfigError::Parse(_))
        ));
        assert!(matches!(parse("not json"), Err(ConfigError::Parse(_))));
        assert!(matches!(
            parse(
                r#"{"version":1,"table":"t","homeRegion":"r","trigger":"origin-response","x":1}"#
            ),
            Err(ConfigError::Parse(_))
        ));
    }

    #[test]
    fn read_region_prefers_explicit_then_same_then_continent_then_home() {
        let mut c = Config::new("t", "us-east-1", Trigger::OriginResponse);
        c.replica_regions = vec!["eu-west-1".into(), "ap-northeast-1".into()];
        c.read_regions
            .insert("sa-east-1".into(), "us-east-1".into());
        assert_eq!(c.read_region("eu-west-1"), "eu-west-1");
        assert_eq!(c.read_region("eu-central-1"), "eu-west-1");
        assert_eq!(c.read_region("ap-southeast-2"), "ap-northeast-1");
        assert_eq!(c.read_region("us-west-2"), "us-east-1");
        assert_eq!(c.read_region("ca-central-1"), "us-east-1");
        assert_eq!(c.read_region("sa-east-1"), "us-east-1");
        assert_eq!(c.read_region("me-south-1"), "us-east-1");
        assert_eq!(c.read_region(""), "us-east-1");
    }

    #[test]
    fn covers_playlists_and_segments_only() {
        let c = Config::new("t", "us-east-1", Trigger::OriginResponse);
        for uri in [
            "/a/b.m3u8",
            "/A/B.M3U8",
            "/seg_001.ts",
            "/v/init.mp4",
            "/x.m4s",
            "/s.vtt",
        ] {
            assert!(c.covers(uri), "{uri}");
        }
        for uri in [
            "/",
            "/index.html",
            "/favicon.ico",
            "/steering.json",
            "/m3u8",
            "/é",
        ] {
            assert!(!c.covers(uri), "{uri}");
        }
    }
}
