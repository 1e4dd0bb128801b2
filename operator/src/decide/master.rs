//! The merged multi-region master playlist: a pure function from every instance's master
//! playlist to one master that lists each region's variants on that region's CloudFront domain.
//!
//! Two steps, both without I/O or clock:
//! - [`parse_contribution`] checks one instance's master playlist (size, UTF-8, a master and not a
//!   media playlist, sane attribute values, resolvable URIs) and keeps it in parsed form, so the
//!   caller can hold on to an instance's last good contribution when a later fetch fails.
//! - [`merge`] turns the contributions into the merged bytes and a [`MergeReport`] of where the
//!   regions' ladders differ.
//!
//! What the merged master holds:
//! - every variant (`EXT-X-STREAM-INF`) and I-frame playlist (`EXT-X-I-FRAME-STREAM-INF`) of every
//!   instance, once per instance, with its attributes as parsed (so the same bitrate carries the
//!   same attributes in every region whose packager announced the same values), a `PATHWAY-ID`
//!   naming the instance's pathway (its region), and an absolute URI on the instance's CloudFront
//!   domain. Variants are interleaved by position (first variant of every region, then the second,
//!   ...), regions in pathway order, so the order of each region's ladder survives;
//! - every `EXT-X-MEDIA` rendition with its `GROUP-ID` suffixed by the pathway (`aac-us-east-1`),
//!   referenced only by that instance's variants;
//! - `EXT-X-INDEPENDENT-SEGMENTS` when every instance declares it; `EXT-X-START` of the first
//!   instance (in pathway order) that has one; `EXT-X-SESSION-DATA` once per DATA-ID and LANGUAGE;
//!   `EXT-X-SESSION-KEY` once per distinct key; `EXT-X-VERSION` the highest any input declares
//!   (or needs: `INSTREAM-ID="SERVICEn"` needs 7);
//! - with steering, `EXT-X-CONTENT-STEERING` with SERVER-URI and the default PATHWAY-ID.
//!
//! URIs: each URI is resolved against the URL the instance's master was fetched from. When the
//! result is on the origin's host (same scheme-less host and port), the scheme and host are
//! replaced by the CDN's (`https://` + CloudFront domain), keeping path and query: relative URIs,
//! `../` paths and absolute URIs on the origin host all end up on the CDN host. An absolute URI on
//! any *other* host (a separate key server, another CDN, `skd://` for FairPlay keys) is kept as it
//! is: the instance's CloudFront distribution fronts the origin, not that host, so rewriting it
//! would point players at objects the distribution cannot serve. The report lists such URIs.
//!
//! Ladders that differ (a bitrate missing in one region, other codecs) are merged anyway, each
//! region with its own entries, and the report names the difference. Attributes are never
//! invented or copied from another region to make ladders match: that would lie about a stream.
//!
//! Determinism: the same inputs give the same bytes. Instances are ordered by pathway ID, entries
//! keep their order within an instance, and attributes m3u8-rs keeps in a `HashMap` are written in
//! sorted order.
//!
//! Where m3u8-rs 6 could not be used as is (each is handled here):
//! - it writes the attributes it does not model (`other_attributes`: PATHWAY-ID, VIDEO-RANGE,
//!   SUPPLEMENTAL-CODECS, STABLE-VARIANT-ID, SCORE, CHARACTERISTICS of I-frames, BIT-DEPTH, ...)
//!   by iterating a `HashMap`, in an order that changes from run to run. Each entry is therefore
//!   written by m3u8-rs without them and they are appended to the tag line, sorted by name;
//! - it has no type for `EXT-X-CONTENT-STEERING` (written as an unknown tag) and drops the
//!   unmodelled attributes of `EXT-X-START` on output;
//! - a malformed `EXT-X-STREAM-INF` (say, a non-numeric BANDWIDTH) is silently parsed as an
//!   unknown tag, and its URI line then overwrites the previous variant's URI. Such input is
//!   refused here (an unknown tag with a known master tag name is an error);
//! - its master-tag scan unwraps UTF-8 and panics on invalid bytes, so input is checked to be
//!   UTF-8 before it reaches m3u8-rs;
//! - `EXT-X-DEFINE` variable substitution is not modelled; a master that uses it is refused.

use m3u8_rs::{
    AlternativeMedia, AlternativeMediaType, ClosedCaptionGroupId, ExtTag, InstreamId,
    MasterPlaylist, Playlist, QuotedOrUnquoted, SessionData, SessionDataField, SessionKey,
    VariantStream,
};
use reqwest::Url;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

/// Bounds on one instance's master playlist. Anything beyond them is refused, not truncated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest master playlist accepted, in bytes.
    pub max_bytes: usize,
    /// Most variants plus I-frame playlists in one master.
    pub max_variants: usize,
    /// Most EXT-X-MEDIA renditions in one master.
    pub max_renditions: usize,
    /// Most EXT-X-SESSION-DATA plus EXT-X-SESSION-KEY tags in one master.
    pub max_session_tags: usize,
    /// Longest URI, after resolution, and longest attribute value.
    pub max_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 20,
            max_variants: 256,
            max_renditions: 256,
            max_session_tags: 64,
            max_value_len: 4096,
        }
    }
}

/// Highest BANDWIDTH / AVERAGE-BANDWIDTH accepted (1 Tbit/s): anything above is not a stream.
const MAX_BANDWIDTH: u64 = 1_000_000_000_000;
/// Largest RESOLUTION width or height accepted.
const MAX_DIMENSION: u64 = 65_536;
/// Highest FRAME-RATE accepted.
const MAX_FRAME_RATE: f64 = 1_000.0;
/// Longest pathway ID (also the GROUP-ID suffix).
const MAX_PATHWAY_LEN: usize = 64;

/// Why one instance's master playlist cannot contribute to the merge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("master playlist is {size} bytes, more than the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("master playlist is not UTF-8 text")]
    NotText,
    #[error("not a playlist: {0}")]
    NotPlaylist(String),
    #[error("a media playlist, not a master playlist")]
    MediaPlaylist,
    #[error("master playlist lists no variant (EXT-X-STREAM-INF)")]
    NoVariants,
    #[error("{what}: {count}, more than the limit of {limit}")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("malformed {0} tag")]
    MalformedTag(String),
    #[error("EXT-X-DEFINE (variable substitution) is not supported in a merged master")]
    VariableSubstitution,
    #[error("{what} has an unusable value {value:?}")]
    BadValue { what: String, value: String },
    #[error("origin URL {0:?} is not an absolute http(s) URL")]
    BadOrigin(String),
    #[error("CDN domain {0:?} is not a host name")]
    BadCdnDomain(String),
    #[error("pathway ID {0:?} must be 1-64 characters of A-Z, a-z, 0-9, '.', '-', '_'")]
    BadPathway(String),
    #[error("pathway ID {0:?} is used by another instance")]
    DuplicatePathway(String),
}

/// One instance's master playlist, checked and parsed: what it contributes to the merge.
#[derive(Clone, Debug, PartialEq)]
pub struct Contribution {
    /// The URL the master was fetched from; relative URIs resolve against it.
    origin: Url,
    playlist: MasterPlaylist,
    /// Names of tags m3u8-rs does not model that were dropped (for the report).
    dropped_tags: Vec<String>,
}

impl Contribution {
    /// The URL the master playlist was fetched from.
    pub fn origin(&self) -> &Url {
        &self.origin
    }

    /// Variants (without I-frame playlists) in this contribution.
    pub fn variant_count(&self) -> usize {
        self.playlist
            .variants
            .iter()
            .filter(|v| !v.is_i_frame)
            .count()
    }
}

/// Checks and parses one instance's master playlist, fetched from `origin_url`.
pub fn parse_contribution(
    bytes: &[u8],
    origin_url: &str,
    limits: &Limits,
) -> Result<Contribution, InputError> {
    if bytes.len() > limits.max_bytes {
        return Err(InputError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let origin = Url::parse(origin_url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| InputError::BadOrigin(origin_url.to_owned()))?;
    let text = std::str::from_utf8(bytes).map_err(|_| InputError::NotText)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if !text.starts_with("#EXTM3U") {
        return Err(InputError::NotPlaylist(
            "does not start with #EXTM3U".into(),
        ));
    }
    let playlist = match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(Playlist::MasterPlaylist(p)) => p,
        // m3u8-rs calls a playlist without any master tag a media playlist.
        Ok(Playlist::MediaPlaylist(m)) if m.segments.is_empty() && m.target_duration == 0 => {
            return Err(InputError::NoVariants);
        }
        Ok(Playlist::MediaPlaylist(_)) => return Err(InputError::MediaPlaylist),
        Err(e) => {
            let mut msg = format!("{:?}", e.map(|e| e.code));
            truncate(&mut msg, 120);
            return Err(InputError::NotPlaylist(msg));
        }
    };
    check_playlist(playlist, origin, limits)
}

fn check_playlist(
    mut playlist: MasterPlaylist,
    origin: Url,
    limits: &Limits,
) -> Result<Contribution, InputError> {
    let mut dropped_tags = BTreeSet::new();
    for tag in &playlist.unknown_tags {
        let name = format!("EXT-{}", tag.tag);
        match name.as_str() {
            "EXT-X-STREAM-INF"
            | "EXT-X-I-FRAME-STREAM-INF"
            | "EXT-X-MEDIA"
            | "EXT-X-SESSION-DATA"
            | "EXT-X-SESSION-KEY"
            | "EXT-X-START"
            | "EXT-X-VERSION" => return Err(InputError::MalformedTag(format!("#{name}"))),
            "EXT-X-DEFINE" => return Err(InputError::VariableSubstitution),
            // The merge writes its own steering tag.
            "EXT-X-CONTENT-STEERING" => {}
            _ => {
                let mut name = name;
                truncate(&mut name, 64);
                dropped_tags.insert(name);
            }
        }
    }
    playlist.unknown_tags.clear();
    if playlist.variants.len() > limits.max_variants {
        return Err(InputError::TooMany {
            what: "variants and I-frame playlists",
            count: playlist.variants.len(),
            limit: limits.max_variants,
        });
    }
    if playlist.alternatives.len() > limits.max_renditions {
        return Err(InputError::TooMany {
            what: "EXT-X-MEDIA renditions",
            count: playlist.alternatives.len(),
            limit: limits.max_renditions,
        });
    }
    let session_tags = playlist.session_data.len() + playlist.session_key.len();
    if session_tags > limits.max_session_tags {
        return Err(InputError::TooMany {
            what: "EXT-X-SESSION-DATA and EXT-X-SESSION-KEY tags",
            count: session_tags,
            limit: limits.max_session_tags,
        });
    }
    if !playlist.variants.iter().any(|v| !v.is_i_frame) {
        return Err(InputError::NoVariants);
    }
    if let Some(v) = playlist.version
        && !(1..=12).contains(&v)
    {
        return Err(bad("EXT-X-VERSION", v));
    }
    let check = Checker { limits };
    for v in &mut playlist.variants {
        check.variant(v, &origin)?;
    }
    for a in &playlist.alternatives {
        check.rendition(a, &origin)?;
    }
    for d in &playlist.session_data {
        check.text("EXT-X-SESSION-DATA DATA-ID", &d.data_id)?;
        check.opt_text("EXT-X-SESSION-DATA LANGUAGE", &d.language)?;
        match &d.field {
            SessionDataField::Value(v) => check.text("EXT-X-SESSION-DATA VALUE", v)?,
            SessionDataField::Uri(u) => check.uri("EXT-X-SESSION-DATA URI", u, &origin)?,
        }
        check.others("EXT-X-SESSION-DATA", &d.other_attributes)?;
    }
    for k in &playlist.session_key {
        if let Some(u) = &k.0.uri {
            check.uri("EXT-X-SESSION-KEY URI", u, &origin)?;
        }
        check.unquoted("EXT-X-SESSION-KEY METHOD", &k.0.method.to_string())?;
        if let Some(iv) = &k.0.iv {
            check.unquoted("EXT-X-SESSION-KEY IV", iv)?;
        }
        check.opt_text("EXT-X-SESSION-KEY KEYFORMAT", &k.0.keyformat)?;
        check.opt_text(
            "EXT-X-SESSION-KEY KEYFORMATVERSIONS",
            &k.0.keyformatversions,
        )?;
    }
    if let Some(s) = &playlist.start
        && (!s.time_offset.is_finite() || s.time_offset.abs() > 1e9)
    {
        return Err(bad("EXT-X-START TIME-OFFSET", s.time_offset));
    }
    Ok(Contribution {
        origin,
        playlist,
        dropped_tags: dropped_tags.into_iter().collect(),
    })
}

fn bad(what: impl Into<String>, value: impl std::fmt::Display) -> InputError {
    let mut value = value.to_string();
    truncate(&mut value, 80);
    InputError::BadValue {
        what: what.into(),
        value,
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}

struct Checker<'a> {
    limits: &'a Limits,
}

impl Checker<'_> {
    /// A quoted-string value: no double quote, no control character, bounded length.
    fn text(&self, what: &str, s: &str) -> Result<(), InputError> {
        if s.len() > self.limits.max_value_len || s.chars().any(|c| c == '"' || c.is_control()) {
            return Err(bad(what, s));
        }
        Ok(())
    }

    fn opt_text(&self, what: &str, s: &Option<String>) -> Result<(), InputError> {
        s.as_deref().map_or(Ok(()), |s| self.text(what, s))
    }

    /// An unquoted value (enumerated string, number, hex): no comma, quote or white space.
    fn unquoted(&self, what: &str, s: &str) -> Result<(), InputError> {
        if s.is_empty()
            || s.len() > self.limits.max_value_len
            || s.chars()
                .any(|c| c == '"' || c == ',' || c.is_whitespace() || c.is_control())
        {
            return Err(bad(what, s));
        }
        Ok(())
    }

    fn others(
        &self,
        tag: &str,
        attrs: &Option<HashMap<String, QuotedOrUnquoted>>,
    ) -> Result<(), InputError> {
        for (name, value) in attrs.iter().flatten() {
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-');
            if !name_ok {
                return Err(bad(format!("{tag} attribute name"), name));
            }
            let what = format!("{tag} {name}");
            match value {
                QuotedOrUnquoted::Quoted(v) => self.text(&what, v)?,
                QuotedOrUnquoted::Unquoted(v) => self.unquoted(&what, v)?,
            }
        }
        Ok(())
    }

    fn uri(&self, what: &str, uri: &str, origin: &Url) -> Result<(), InputError> {
        if uri.trim().is_empty() {
            return Err(bad(what, "(empty)"));
        }
        self.text(what, uri)?;
        let resolved = origin.join(uri.trim()).map_err(|_| bad(what, uri))?;
        if resolved.as_str().len() > self.limits.max_value_len {
            return Err(bad(what, uri));
        }
        Ok(())
    }

    fn variant(&self, v: &mut VariantStream, origin: &Url) -> Result<(), InputError> {
        let tag = if v.is_i_frame {
            "EXT-X-I-FRAME-STREAM-INF"
        } else {
            "EXT-X-STREAM-INF"
        };
        if v.bandwidth == 0 || v.bandwidth > MAX_BANDWIDTH {
            return Err(bad(format!("{tag} BANDWIDTH"), v.bandwidth));
        }
        if let Some(b) = v.average_bandwidth
            && (b == 0 || b > MAX_BANDWIDTH)
        {
            return Err(bad(format!("{tag} AVERAGE-BANDWIDTH"), b));
        }
        if let Some(r) = v.resolution
            && (r.width == 0
                || r.height == 0
                || r.width > MAX_DIMENSION
                || r.height > MAX_DIMENSION)
        {
            return Err(bad(format!("{tag} RESOLUTION"), r));
        }
        if let Some(f) = v.frame_rate
            && !(f.is_finite() && f > 0.0 && f <= MAX_FRAME_RATE)
        {
            return Err(bad(format!("{tag} FRAME-RATE"), f));
        }
        if let Some(h) = &v.hdcp_level {
            self.unquoted(&format!("{tag} HDCP-LEVEL"), &h.to_string())?;
        }
        self.opt_text(&format!("{tag} CODECS"), &v.codecs)?;
        self.opt_text(&format!("{tag} AUDIO"), &v.audio)?;
        self.opt_text(&format!("{tag} VIDEO"), &v.video)?;
        self.opt_text(&format!("{tag} SUBTITLES"), &v.subtitles)?;
        match &v.closed_captions {
            None | Some(ClosedCaptionGroupId::None) => {}
            Some(ClosedCaptionGroupId::GroupId(g)) => {
                self.text(&format!("{tag} CLOSED-CAPTIONS"), g)?
            }
            Some(ClosedCaptionGroupId::Other(o)) => {
                return Err(bad(format!("{tag} CLOSED-CAPTIONS"), o));
            }
        }
        // The merge sets its own PATHWAY-ID.
        if let Some(others) = &mut v.other_attributes {
            others.remove("PATHWAY-ID");
        }
        self.others(tag, &v.other_attributes)?;
        self.uri(&format!("{tag} URI"), &v.uri, origin)
    }

    fn rendition(&self, a: &AlternativeMedia, origin: &Url) -> Result<(), InputError> {
        let tag = "EXT-X-MEDIA";
        if let AlternativeMediaType::Other(t) = &a.media_type {
            return Err(bad("EXT-X-MEDIA TYPE", t));
        }
        self.text("EXT-X-MEDIA GROUP-ID", &a.group_id)?;
        if a.group_id.is_empty() {
            return Err(bad("EXT-X-MEDIA GROUP-ID", "(empty)"));
        }
        self.text("EXT-X-MEDIA NAME", &a.name)?;
        self.opt_text("EXT-X-MEDIA LANGUAGE", &a.language)?;
        self.opt_text("EXT-X-MEDIA ASSOC-LANGUAGE", &a.assoc_language)?;
        self.opt_text("EXT-X-MEDIA CHARACTERISTICS", &a.characteristics)?;
        self.opt_text("EXT-X-MEDIA CHANNELS", &a.channels)?;
        if let Some(InstreamId::Other(o)) = &a.instream_id {
            return Err(bad("EXT-X-MEDIA INSTREAM-ID", o));
        }
        self.others(tag, &a.other_attributes)?;
        if let Some(uri) = &a.uri {
            self.uri("EXT-X-MEDIA URI", uri, origin)?;
        }
        Ok(())
    }
}

/// One instance as the merge sees it.
#[derive(Clone, Debug)]
pub struct MergeInput<'a> {
    /// Region of the instance (for messages).
    pub region: &'a str,
    /// Its pathway ID (the region, unless two instances share one): PATHWAY-ID of its entries and
    /// the suffix of its GROUP-IDs.
    pub pathway: &'a str,
    /// The CloudFront domain its entries point at (a host name, optionally with a port).
    pub cdn_domain: &'a str,
    /// Its checked master playlist.
    pub contribution: &'a Contribution,
}

/// The EXT-X-CONTENT-STEERING tag of the merged master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SteeringTag {
    /// SERVER-URI: where players load the steering manifest.
    pub server_uri: String,
    /// PATHWAY-ID: the pathway players start on before the manifest arrives. `None` leaves it out
    /// (players then start on the first variant's pathway).
    pub default_pathway: Option<String>,
}

/// Settings of the merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeSettings {
    /// Scheme of the rewritten URIs: `https` for CloudFront; `http` only for local test CDNs.
    pub cdn_scheme: String,
    /// Content steering, when enabled.
    pub steering: Option<SteeringTag>,
}

impl Default for MergeSettings {
    fn default() -> Self {
        Self {
            cdn_scheme: "https".into(),
            steering: None,
        }
    }
}

/// Why there is no merged master at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("no instance contributed a usable master playlist")]
    NothingToMerge,
    #[error("steering SERVER-URI {0:?} is not an absolute http(s) URL")]
    BadSteeringUri(String),
    #[error("cannot write the merged master: {0}")]
    Write(String),
}

/// The merged master and what the caller should know about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged {
    /// The merged master playlist.
    pub bytes: Vec<u8>,
    /// Differences and notes.
    pub report: MergeReport,
}

/// Where the inputs differ, and which inputs were left out and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// Pathways merged, in output order.
    pub pathways: Vec<String>,
    /// Instances left out of the merge (by pathway) and why.
    pub rejected: Vec<(String, String)>,
    /// How the ladders (variants, I-frame playlists, renditions) differ between pathways; empty
    /// when they are identical.
    pub ladder_differences: Vec<String>,
    /// Other facts worth a look: URIs kept on a foreign host, session tags that disagree, tags
    /// dropped.
    pub notes: Vec<String>,
}

impl MergeReport {
    /// Whether the regions' ladders differ.
    pub fn ladders_differ(&self) -> bool {
        !self.ladder_differences.is_empty()
    }

    /// One line naming what differs (at most `max` items), for a condition message.
    pub fn ladder_summary(&self, max: usize) -> String {
        let mut s = self
            .ladder_differences
            .iter()
            .take(max)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if self.ladder_differences.len() > max {
            let _ = write!(s, "; and {} more", self.ladder_differences.len() - max);
        }
        s
    }
}

/// Whether `id` is a usable pathway ID (also used as a GROUP-ID suffix).
pub fn valid_pathway(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_PATHWAY_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    host_ok && port_ok
}

/// The instance being written: how its URIs and group IDs are rewritten.
struct Rewriter<'a> {
    origin: &'a Url,
    scheme: &'a str,
    cdn: &'a str,
    pathway: &'a str,
    foreign: &'a mut BTreeSet<String>,
}

impl Rewriter<'_> {
    fn uri(&mut self, uri: &str) -> String {
        // Checked by parse_contribution: the join succeeds.
        let Ok(mut url) = self.origin.join(uri.trim()) else {
            return uri.to_owned();
        };
        let same_host = url.scheme() == "http" || url.scheme() == "https";
        let same_host = same_host
            && url.host_str() == self.origin.host_str()
            && url.port_or_known_default() == self.origin.port_or_known_default();
        if !same_host {
            self.foreign.insert(format!(
                "{}://{}",
                url.scheme(),
                url.host_str().unwrap_or("")
            ));
            return url.to_string();
        }
        let rebuilt = format!("{}://{}", self.scheme, self.cdn);
        match Url::parse(&rebuilt) {
            Ok(base) => {
                // Setting scheme and host on a parsed URL keeps path, query and fragment.
                let _ = url.set_scheme(base.scheme());
                let _ = url.set_host(base.host_str());
                let _ = url.set_port(base.port());
                url.to_string()
            }
            Err(_) => url.to_string(),
        }
    }

    fn group(&self, group: &str) -> String {
        format!("{group}-{}", self.pathway)
    }
}

/// Merges the instances' contributions into one master playlist.
///
/// Instances are taken in pathway order whatever order they come in; an instance with an invalid
/// or duplicate pathway ID or CDN domain is left out and named in the report. Fails only when no
/// instance is left, or the steering SERVER-URI is unusable.
pub fn merge(inputs: &[MergeInput<'_>], settings: &MergeSettings) -> Result<Merged, MergeError> {
    let mut report = MergeReport::default();
    let mut sorted: Vec<&MergeInput<'_>> = inputs.iter().collect();
    sorted.sort_by(|a, b| {
        (a.pathway, a.cdn_domain, a.region).cmp(&(b.pathway, b.cdn_domain, b.region))
    });
    let mut seen = BTreeSet::new();
    let mut usable = Vec::new();
    for input in sorted {
        let problem = if !valid_pathway(input.pathway) {
            Some(InputError::BadPathway(input.pathway.to_owned()))
        } else if !valid_domain(input.cdn_domain) {
            Some(InputError::BadCdnDomain(input.cdn_domain.to_owned()))
        } else if !seen.insert(input.pathway) {
            Some(InputError::DuplicatePathway(input.pathway.to_owned()))
        } else {
            None
        };
        match problem {
            Some(e) => report
                .rejected
                .push((input.pathway.to_owned(), e.to_string())),
            None => usable.push(input),
        }
    }
    if usable.is_empty() {
        return Err(MergeError::NothingToMerge);
    }
    let steering_tag = match &settings.steering {
        Some(s) => Some(steering_tag(s)?),
        None => None,
    };
    let scheme = if settings.cdn_scheme == "http" {
        "http"
    } else {
        "https"
    };

    let mut out = MasterPlaylist {
        independent_segments: usable
            .iter()
            .all(|i| i.contribution.playlist.independent_segments),
        ..Default::default()
    };
    if !out.independent_segments
        && usable
            .iter()
            .any(|i| i.contribution.playlist.independent_segments)
    {
        report
            .notes
            .push("EXT-X-INDEPENDENT-SEGMENTS left out: not every instance declares it".to_owned());
    }
    // Version: the highest declared, or needed by CEA-708 INSTREAM-IDs.
    let needs_7 = usable.iter().any(|i| {
        i.contribution
            .playlist
            .alternatives
            .iter()
            .any(|a| matches!(a.instream_id, Some(InstreamId::Service(_))))
    });
    out.version = usable
        .iter()
        .filter_map(|i| i.contribution.playlist.version)
        .chain(needs_7.then_some(7))
        .max();

    let mut foreign = BTreeSet::new();
    let mut body = String::new();
    let mut variant_lists: Vec<Vec<(String, String)>> = Vec::new();
    let mut iframe_lists: Vec<Vec<(String, String)>> = Vec::new();
    let mut rendition_sigs: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut session_data: Vec<SessionData> = Vec::new();
    let mut session_keys: Vec<SessionKey> = Vec::new();
    let mut start = None;
    let mut media_lines = String::new();

    for input in &usable {
        let c = input.contribution;
        report.pathways.push(input.pathway.to_owned());
        let mut rw = Rewriter {
            origin: &c.origin,
            scheme,
            cdn: input.cdn_domain,
            pathway: input.pathway,
            foreign: &mut foreign,
        };
        for a in &c.playlist.alternatives {
            let sig = rendition_signature(a);
            *rendition_sigs
                .entry(sig)
                .or_default()
                .entry(input.pathway.to_owned())
                .or_default() += 1;
            let mut a = a.clone();
            a.group_id = rw.group(&a.group_id);
            a.uri = a.uri.as_deref().map(|u| rw.uri(u));
            let others = a.other_attributes.take();
            let pl = MasterPlaylist {
                alternatives: vec![a],
                ..Default::default()
            };
            media_lines.push_str(&with_sorted_others(write_entries(&pl)?, others, &[]));
        }
        let mut variants = Vec::new();
        let mut iframes = Vec::new();
        for v in &c.playlist.variants {
            let sig = variant_signature(v);
            let mut v = v.clone();
            v.uri = rw.uri(&v.uri);
            v.audio = v.audio.as_deref().map(|g| rw.group(g));
            v.video = v.video.as_deref().map(|g| rw.group(g));
            v.subtitles = v.subtitles.as_deref().map(|g| rw.group(g));
            if let Some(ClosedCaptionGroupId::GroupId(g)) = &v.closed_captions {
                v.closed_captions = Some(ClosedCaptionGroupId::GroupId(rw.group(g)));
            }
            let others = v.other_attributes.take();
            let pathway = [(
                "PATHWAY-ID".to_owned(),
                QuotedOrUnquoted::Quoted(input.pathway.to_owned()),
            )];
            let pl = MasterPlaylist {
                variants: vec![v.clone()],
                ..Default::default()
            };
            let text = with_sorted_others(write_entries(&pl)?, others, &pathway);
            if v.is_i_frame {
                iframes.push((sig, text));
            } else {
                variants.push((sig, text));
            }
        }
        variant_lists.push(variants);
        iframe_lists.push(iframes);
        for d in &c.playlist.session_data {
            let mut d = d.clone();
            if let SessionDataField::Uri(u) = &d.field {
                d.field = SessionDataField::Uri(rw.uri(u));
            }
            match session_data
                .iter()
                .find(|e| e.data_id == d.data_id && e.language == d.language)
            {
                Some(e) if !same_session_field(&e.field, &d.field) => report.notes.push(format!(
                    "EXT-X-SESSION-DATA {} differs in {}; kept the one of {}",
                    d.data_id, input.pathway, report.pathways[0]
                )),
                Some(_) => {}
                None => session_data.push(d),
            }
        }
        for k in &c.playlist.session_key {
            let mut k = k.clone();
            k.0.uri = k.0.uri.as_deref().map(|u| rw.uri(u));
            if !session_keys.contains(&k) {
                session_keys.push(k);
            }
        }
        match (&start, &c.playlist.start) {
            (None, Some(s)) => start = Some((input.pathway, s.clone())),
            (Some((first, s0)), Some(s))
                if s0.time_offset != s.time_offset || s0.precise != s.precise =>
            {
                report.notes.push(format!(
                    "EXT-X-START differs in {}; kept the one of {first}",
                    input.pathway
                ))
            }
            _ => {}
        }
        if !c.dropped_tags.is_empty() {
            report.notes.push(format!(
                "{}: dropped tags the merge does not carry: {}",
                input.pathway,
                c.dropped_tags.join(", ")
            ));
        }
    }

    // Head: version and independent segments, written by m3u8-rs.
    body.push_str(&write_whole(&out)?);
    body.push_str(&media_lines);
    body.push_str(&interleave(&variant_lists));
    body.push_str(&interleave(&iframe_lists));
    // Session data carries unmodelled attributes too: each is written on its own.
    for mut d in session_data {
        let others = d.other_attributes.take();
        let pl = MasterPlaylist {
            session_data: vec![d],
            ..Default::default()
        };
        body.push_str(&with_sorted_others(write_entries(&pl)?, others, &[]));
    }
    body.push_str(&write_entries(&MasterPlaylist {
        session_key: session_keys,
        start: start.map(|(_, s)| s),
        unknown_tags: steering_tag.into_iter().collect(),
        ..Default::default()
    })?);

    report.ladder_differences = ladder_differences(
        &report.pathways,
        &variant_lists,
        &iframe_lists,
        &rendition_sigs,
    );
    for host in foreign {
        report.notes.push(format!(
            "URIs on {host} kept as they are (not the origin host)"
        ));
    }
    Ok(Merged {
        bytes: body.into_bytes(),
        report,
    })
}

/// Session data of two regions agrees when the values are equal, or the URIs differ only in
/// their host (each was rewritten onto its own CDN domain).
fn same_session_field(a: &SessionDataField, b: &SessionDataField) -> bool {
    match (a, b) {
        (SessionDataField::Uri(a), SessionDataField::Uri(b)) => {
            match (Url::parse(a), Url::parse(b)) {
                (Ok(a), Ok(b)) => a.path() == b.path() && a.query() == b.query(),
                _ => a == b,
            }
        }
        _ => a == b,
    }
}

fn steering_tag(s: &SteeringTag) -> Result<ExtTag, MergeError> {
    let ok = Url::parse(&s.server_uri)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        && !s.server_uri.contains(['"', '\n', '\r']);
    if !ok {
        return Err(MergeError::BadSteeringUri(s.server_uri.clone()));
    }
    let mut rest = format!("SERVER-URI=\"{}\"", s.server_uri);
    if let Some(p) = s.default_pathway.as_deref().filter(|p| valid_pathway(p)) {
        let _ = write!(rest, ",PATHWAY-ID=\"{p}\"");
    }
    Ok(ExtTag {
        tag: "X-CONTENT-STEERING".into(),
        rest: Some(rest),
    })
}

/// Writes a playlist with m3u8-rs and returns it without the `#EXTM3U` line.
fn write_entries(pl: &MasterPlaylist) -> Result<String, MergeError> {
    let whole = write_whole(pl)?;
    Ok(whole.strip_prefix("#EXTM3U\n").unwrap_or(&whole).to_owned())
}

fn write_whole(pl: &MasterPlaylist) -> Result<String, MergeError> {
    let mut buf = Vec::new();
    pl.write_to(&mut buf)
        .map_err(|e| MergeError::Write(e.to_string()))?;
    String::from_utf8(buf).map_err(|e| MergeError::Write(e.to_string()))
}

/// Appends `extra` and then the sorted `others` to the first line (the tag line) of `text`.
fn with_sorted_others(
    text: String,
    others: Option<HashMap<String, QuotedOrUnquoted>>,
    extra: &[(String, QuotedOrUnquoted)],
) -> String {
    let mut attrs: Vec<(String, QuotedOrUnquoted)> = extra.to_vec();
    let mut sorted: Vec<_> = others.into_iter().flatten().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    attrs.extend(sorted);
    if attrs.is_empty() {
        return text;
    }
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let mut line = first.to_owned();
    for (name, value) in attrs {
        let _ = write!(line, ",{name}={value}");
    }
    format!("{line}\n{rest}")
}

/// First entry of every pathway, then the second of every pathway, and so on.
fn interleave(lists: &[Vec<(String, String)>]) -> String {
    let longest = lists.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = String::new();
    for i in 0..longest {
        for list in lists {
            if let Some((_, text)) = list.get(i) {
                out.push_str(text);
            }
        }
    }
    out
}

/// The attributes of a variant that must match across regions (everything but its URI, group
/// names and pathway), in written form.
fn variant_signature(v: &VariantStream) -> String {
    let mut s = format!("BANDWIDTH={}", v.bandwidth);
    if let Some(b) = v.average_bandwidth {
        let _ = write!(s, ",AVERAGE-BANDWIDTH={b}");
    }
    if let Some(c) = &v.codecs {
        let _ = write!(s, ",CODECS=\"{c}\"");
    }
    if let Some(r) = &v.resolution {
        let _ = write!(s, ",RESOLUTION={r}");
    }
    if let Some(f) = v.frame_rate {
        let _ = write!(s, ",FRAME-RATE={f}");
    }
    if let Some(h) = &v.hdcp_level {
        let _ = write!(s, ",HDCP-LEVEL={h}");
    }
    let mut others: Vec<_> = v
        .other_attributes
        .iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "PATHWAY-ID")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    others.sort();
    for o in others {
        let _ = write!(s, ",{o}");
    }
    let groups = [
        ("AUDIO", v.audio.is_some()),
        ("VIDEO", v.video.is_some()),
        ("SUBTITLES", v.subtitles.is_some()),
        (
            "CLOSED-CAPTIONS",
            matches!(v.closed_captions, Some(ClosedCaptionGroupId::GroupId(_))),
        ),
    ];
    for (name, present) in groups {
        if present {
            let _ = write!(s, ",{name}=(group)");
        }
    }
    s
}

fn rendition_signature(a: &AlternativeMedia) -> String {
    // Not the GROUP-ID: each region's groups are renamed anyway.
    let mut s = format!("TYPE={}", a.media_type);
    if let Some(l) = &a.language {
        let _ = write!(s, ",LANGUAGE=\"{l}\"");
    }
    let _ = write!(s, ",NAME=\"{}\"", a.name);
    if let Some(c) = &a.channels {
        let _ = write!(s, ",CHANNELS=\"{c}\"");
    }
    if let Some(i) = &a.instream_id {
        let _ = write!(s, ",INSTREAM-ID=\"{i}\"");
    }
    if a.default {
        s.push_str(",DEFAULT=YES");
    }
    s
}

fn ladder_differences(
    pathways: &[String],
    variant_lists: &[Vec<(String, String)>],
    iframe_lists: &[Vec<(String, String)>],
    rendition_sigs: &BTreeMap<String, BTreeMap<String, usize>>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    if pathways.len() < 2 {
        return diffs;
    }
    let mut compare = |kind: &str, counts: BTreeMap<String, BTreeMap<String, usize>>| {
        for (sig, per) in counts {
            let present: Vec<&str> = pathways
                .iter()
                .filter(|p| per.contains_key(*p))
                .map(String::as_str)
                .collect();
            let missing: Vec<&str> = pathways
                .iter()
                .filter(|p| !per.contains_key(*p))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                diffs.push(format!(
                    "{kind} {sig} only in {} (not in {})",
                    present.join(", "),
                    missing.join(", ")
                ));
            } else if per.values().collect::<BTreeSet<_>>().len() > 1 {
                diffs.push(format!("{kind} {sig} appears a different number of times"));
            }
        }
    };
    let count = |lists: &[Vec<(String, String)>]| {
        let mut m: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for (p, list) in pathways.iter().zip(lists) {
            for (sig, _) in list {
                *m.entry(sig.clone())
                    .or_default()
                    .entry(p.clone())
                    .or_default() += 1;
            }
        }
        m
    };
    compare("variant", count(variant_lists));
    compare("I-frame playlist", count(iframe_lists));
    compare("rendition", rendition_sigs.clone());
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
        #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,URI=\"audio/en.m3u8\"\n\
        #EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\",AUDIO=\"aac\"\n\
        v720/index.m3u8?token=abc\n\
        #EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS=\"avc1.4d401e,mp4a.40.2\",AUDIO=\"aac\"\n\
        ../other/v360.m3u8\n\
        #EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=200000,RESOLUTION=1280x720,CODECS=\"avc1.64001f\",URI=\"https://origin-a.example.com/live/iframe.m3u8\"\n";

    fn contribution(text: &str, origin: &str) -> Contribution {
        parse_contribution(text.as_bytes(), origin, &Limits::default()).unwrap()
    }

    fn merged(inputs: &[(&str, &str, &Contribution)], steering: Option<SteeringTag>) -> Merged {
        let inputs: Vec<MergeInput<'_>> = inputs
            .iter()
            .map(|(p, d, c)| MergeInput {
                region: p,
                pathway: p,
                cdn_domain: d,
                contribution: c,
            })
            .collect();
        merge(
            &inputs,
            &MergeSettings {
                steering,
                ..Default::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn uris_end_on_the_cdn_host_keeping_path_and_query() {
        let a = contribution(
            MASTER,
            "https://origin-a.example.com/live/event/master.m3u8",
        );
        let m = merged(&[("us-east-1", "d1.cloudfront.net", &a)], None);
        let text = String::from_utf8(m.bytes).unwrap();
        assert!(
            text.contains("https://d1.cloudfront.net/live/event/v720/index.m3u8?token=abc\n"),
            "{text}"
        );
        assert!(
            text.contains("https://d1.cloudfront.net/live/other/v360.m3u8\n"),
            "{text}"
        );
        assert!(
            text.contains("URI=\"https://d1.cloudfront.net/live/iframe.m3u8\""),
            "{text}"
        );
        assert!(text.contains("URI=\"https://d1.cloudfront.net/live/event/audio/en.m3u8\""));
        assert!(!text.contains("origin-a"), "{text}");
    }

    #[test]
    fn foreign_hosts_are_kept_and_reported() {
        let text = MASTER.replace(
            "https://origin-a.example.com/live/iframe.m3u8",
            "https://keys.example.net/iframe.m3u8?sig=1",
        );
        let a = contribution(&text, "https://origin-a.example.com/live/event/master.m3u8");
        let m = merged(&[("us-east-1", "d1.cloudfront.net", &a)], None);
        let out = String::from_utf8(m.bytes).unwrap();
        assert!(out.contains("URI=\"https://keys.example.net/iframe.m3u8?sig=1\""));
        assert!(
            m.report
                .notes
                .iter()
                .any(|n| n.contains("keys.example.net"))
        );
    }

    #[test]
    fn groups_are_per_region_and_referenced_only_by_that_region() {
        let a = contribution(
            MASTER,
            "https://origin-a.example.com/live/event/master.m3u8",
        );
        let b = contribution(
            MASTER,
            "https://origin-b.example.com/live/event/master.m3u8",
        );
        let m = merged(
            &[
                ("us-west-2", "d2.cloudfront.net", &b),
                ("eu-west-1", "d1.cloudfront.net", &a),
            ],
            None,
        );
        let text = String::from_utf8(m.bytes).unwrap();
        assert_eq!(m.report.pathways, ["eu-west-1", "us-west-2"]);
        assert!(m.report.ladder_differences.is_empty(), "{:?}", m.report);
        for line in text.lines().filter(|l| l.starts_with("#EXT-X-STREAM-INF")) {
            let pathway = if line.contains("PATHWAY-ID=\"eu-west-1\"") {
                "eu-west-1"
            } else {
                "us-west-2"
            };
            assert!(line.contains(&format!("AUDIO=\"aac-{pathway}\"")), "{line}");
        }
        assert_eq!(text.matches("GROUP-ID=\"aac-eu-west-1\"").count(), 1);
        assert_eq!(text.matches("GROUP-ID=\"aac-us-west-2\"").count(), 1);
        assert_eq!(text.matches("#EXT-X-I-FRAME-STREAM-INF").count(), 2);
        assert_eq!(text.matches("#EXT-X-INDEPENDENT-SEGMENTS").count(), 1);
        assert_eq!(text.matches("#EXT-X-VERSION:3").count(), 1);
    }

    #[test]
    fn same_inputs_same_bytes_whatever_the_order() {
        let extra = MASTER.replace(
            "AUDIO=\"aac\"\nv720",
            "AUDIO=\"aac\",VIDEO-RANGE=SDR,SCORE=2.0,STABLE-VARIANT-ID=\"v720\",SUPPLEMENTAL-CODECS=\"dvh1.08.07/db4h\"\nv720",
        );
        let a = contribution(
            &extra,
            "https://origin-a.example.com/live/event/master.m3u8",
        );
        let b = contribution(
            &extra,
            "https://origin-b.example.com/live/event/master.m3u8",
        );
        let first = merged(&[("r-a", "a.example", &a), ("r-b", "b.example", &b)], None);
        for _ in 0..20 {
            // Re-parse each time: a fresh HashMap gets a fresh iteration order.
            let a = contribution(
                &extra,
                "https://origin-a.example.com/live/event/master.m3u8",
            );
            let b = contribution(
                &extra,
                "https://origin-b.example.com/live/event/master.m3u8",
            );
            let again = merged(&[("r-b", "b.example", &b), ("r-a", "a.example", &a)], None);
            assert_eq!(first.bytes, again.bytes);
        }
        let text = String::from_utf8(first.bytes).unwrap();
        assert!(
            text.contains("PATHWAY-ID=\"r-a\",SCORE=2.0,STABLE-VARIANT-ID=\"v720\",SUPPLEMENTAL-CODECS=\"dvh1.08.07/db4h\",VIDEO-RANGE=SDR"),
            "{text}"
        );
    }

    #[test]
    fn differing_ladders_are_merged_and_reported() {
        let a = contribution(
            MASTER,
            "https://origin-a.example.com/live/event/master.m3u8",
        );
        let missing = MASTER.replace(
            "#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS=\"avc1.4d401e,mp4a.40.2\",AUDIO=\"aac\"\n../other/v360.m3u8\n",
            "",
        );
        let b = contribution(
            &missing,
            "https://origin-b.example.com/live/event/master.m3u8",
        );
        let m = merged(
            &[
                ("us-east-1", "d1.example", &a),
                ("eu-west-1", "d2.example", &b),
            ],
            None,
        );
        assert!(m.report.ladders_differ());
        let summary = m.report.ladder_summary(3);
        assert!(summary.contains("BANDWIDTH=800000"), "{summary}");
        assert!(
            summary.contains("only in us-east-1 (not in eu-west-1)"),
            "{summary}"
        );
        let text = String::from_utf8(m.bytes).unwrap();
        assert_eq!(text.matches("#EXT-X-STREAM-INF").count(), 3);
    }

    #[test]
    fn steering_tag_and_pathways() {
        let a = contribution(
            MASTER,
            "https://origin-a.example.com/live/event/master.m3u8",
        );
        let m = merged(
            &[("us-east-1", "d1.example", &a)],
            Some(SteeringTag {
                server_uri: "https://cdn.example.com/steering.json".into(),
                default_pathway: Some("us-east-1".into()),
            }),
        );
        let text = String::from_utf8(m.bytes).unwrap();
        assert!(text.contains(
            "#EXT-X-CONTENT-STEERING:SERVER-URI=\"https://cdn.example.com/steering.json\",PATHWAY-ID=\"us-east-1\"\n"
        ));
        let entries = text
            .lines()
            .filter(|l| l.starts_with("#EXT-X-STREAM-INF") || l.starts_with("#EXT-X-I-FRAME"));
        for l in entries {
            assert!(l.contains("PATHWAY-ID=\"us-east-1\""), "{l}");
        }
    }

    #[test]
    fn hostile_inputs_are_errors_not_panics() {
        let origin = "https://o.example.com/m.m3u8";
        let limits = Limits::default();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "not a playlist"),
            (b"\xff\xfe#EXTM3U".to_vec(), "UTF-8"),
            (b"<html>nope</html>".to_vec(), "not a playlist"),
            (
                b"#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na.ts\n".to_vec(),
                "media playlist",
            ),
            (b"#EXTM3U\n".to_vec(), "no variant"),
            (
                b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=x\na.m3u8\n".to_vec(),
                "malformed",
            ),
            (
                b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=99999999999999999\na.m3u8\n".to_vec(),
                "BANDWIDTH",
            ),
            (
                b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=999999x1\na.m3u8\n".to_vec(),
                "RESOLUTION",
            ),
            (
                b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,FRAME-RATE=NaN\na.m3u8\n".to_vec(),
                "FRAME-RATE",
            ),
            (
                b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,FOO=a b\na.m3u8\n".to_vec(),
                "FOO",
            ),
            (
                b"#EXTM3U\n#EXT-X-DEFINE:NAME=\"x\",VALUE=\"y\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\n{$x}.m3u8\n".to_vec(),
                "EXT-X-DEFINE",
            ),
            (
                b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n".to_vec(),
                "URI",
            ),
            (vec![b'#'; limits.max_bytes + 1], "limit"),
        ];
        for (input, expect) in cases {
            let err = parse_contribution(&input, origin, &limits).unwrap_err();
            assert!(
                err.to_string().contains(expect),
                "{:?}: {err}",
                String::from_utf8_lossy(&input[..input.len().min(80)])
            );
        }
        let many = format!(
            "#EXTM3U\n{}",
            "#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n".repeat(limits.max_variants + 1)
        );
        assert!(matches!(
            parse_contribution(many.as_bytes(), origin, &limits),
            Err(InputError::TooMany { .. })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = b"#EXTM3U-:=,\"\n\r ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./?&x\xff";
        let pieces = [
            "#EXTM3U\n",
            "#EXT-X-STREAM-INF:",
            "BANDWIDTH=1",
            ",RESOLUTION=1x1",
            ",AUDIO=\"a\"",
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"n\"",
            ",URI=\"",
            "#EXT-X-I-FRAME-STREAM-INF:",
            "#EXT-X-SESSION-KEY:METHOD=AES-128",
            "#EXT-X-START:TIME-OFFSET=",
            "\n",
            "../a.m3u8",
            "http://[::1]:99999/",
        ];
        for _ in 0..3000 {
            let mut input = Vec::new();
            for _ in 0..rng.usize(0..30) {
                if rng.bool() {
                    input.extend_from_slice(pieces[rng.usize(..pieces.len())].as_bytes());
                } else {
                    input.push(alphabet[rng.usize(..alphabet.len())]);
                }
            }
            if let Ok(c) = parse_contribution(&input, "http://o.example/m.m3u8", &Limits::default())
            {
                let input = MergeInput {
                    region: "r",
                    pathway: "r",
                    cdn_domain: "cdn.example",
                    contribution: &c,
                };
                let m = merge(&[input], &MergeSettings::default()).unwrap();
                let back = m3u8_rs::parse_playlist_res(&m.bytes);
                assert!(
                    matches!(back, Ok(Playlist::MasterPlaylist(_))),
                    "{}",
                    String::from_utf8_lossy(&m.bytes)
                );
            }
        }
    }

    #[test]
    fn bad_pathways_and_domains_are_left_out() {
        let a = contribution(
            MASTER,
            "https://origin-a.example.com/live/event/master.m3u8",
        );
        let inputs = [
            MergeInput {
                region: "r",
                pathway: "bad\"id",
                cdn_domain: "d.example",
                contribution: &a,
            },
            MergeInput {
                region: "r",
                pathway: "ok",
                cdn_domain: "d.example/evil",
                contribution: &a,
            },
            MergeInput {
                region: "r",
                pathway: "ok",
                cdn_domain: "d.example",
                contribution: &a,
            },
            MergeInput {
                region: "r",
                pathway: "ok",
                cdn_domain: "e.example",
                contribution: &a,
            },
        ];
        let m = merge(&inputs, &MergeSettings::default()).unwrap();
        assert_eq!(m.report.pathways, ["ok"]);
        assert_eq!(m.report.rejected.len(), 3, "{:?}", m.report.rejected);
        assert_eq!(
            merge(&inputs[..1], &MergeSettings::default()),
            Err(MergeError::NothingToMerge)
        );
    }
}
