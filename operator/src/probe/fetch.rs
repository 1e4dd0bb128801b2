//! Fetching and parsing playlists: the bounded HTTP client every probe shares, and the
//! translation of m3u8-rs's parse results into what the decisions need.

use super::decision::{Failure, MAX_TARGET_DURATION_MS, MIN_TARGET_DURATION_MS, Snapshot};
use super::destination::{self, Destinations, GuardedResolver};
use super::engine::DEFAULT_MAX_RENDITIONS;
use super::host_queue::{Asker, HostPermit, HostQueue, Urgency};
use super::llhls;
use super::scan;
pub use super::scan::ParseLimits;
use super::segments::{self, SegmentRef};
use m3u8_rs::{AlternativeMediaType, Playlist};
use reqwest::Url;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits of the shared HTTP client.
#[derive(Clone, Debug)]
pub struct FetchLimits {
    /// Whole-request timeout (connect, headers and body).
    pub request_timeout: Duration,
    /// Largest media playlist body accepted. The body is read in chunks and the request
    /// abandoned as soon as it passes the limit (or at once when Content-Length says it will),
    /// so at most this much is held per request in flight: `concurrency` times this bounds the
    /// memory playlist bodies can take.
    pub max_body_bytes: u64,
    /// Largest master playlist body accepted, likewise.
    pub max_master_bytes: u64,
    /// Redirects followed per request (only to http or https URLs).
    pub max_redirects: usize,
    /// Requests in flight at once, across every probe.
    pub concurrency: usize,
    /// Requests in flight at once to one origin host (host and port), so one hanging origin
    /// cannot hold every global permit.
    pub per_host: usize,
    /// Requests in flight at once for one instance, so one instance with thousands of
    /// renditions cannot hold every permit of a host it shares with others.
    pub per_instance: usize,
    /// Connect to loopback and private addresses too (tests, local demos). Link-local and
    /// metadata addresses are refused regardless. See [`super::destination`].
    pub allow_private: bool,
    /// LL-HLS blocking reloads held at once, across every probe. They take no ordinary permit
    /// (a held request would idle one for up to three target durations and starve every other
    /// probe of its instance and host); this pool bounds the connections they keep open
    /// instead. A rendition that finds it full polls plainly until a slot is free.
    pub blocking_concurrency: usize,
    /// LL-HLS blocking reloads held at once to one origin host (host and port).
    pub blocking_per_host: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(4),
            max_body_bytes: DEFAULT_MAX_MEDIA_BYTES,
            max_master_bytes: DEFAULT_MAX_MASTER_BYTES,
            max_redirects: 3,
            concurrency: 256,
            per_host: 128,
            per_instance: 16,
            allow_private: false,
            blocking_concurrency: 1024,
            blocking_per_host: 256,
        }
    }
}

/// Default of [`FetchLimits::max_body_bytes`]: 2 MiB, twice a 6-hour EVENT playlist of 2 s
/// segments with a program date-time on each (10,800 segments, about 1 MiB).
pub const DEFAULT_MAX_MEDIA_BYTES: u64 = 2 << 20;
/// Default of [`FetchLimits::max_master_bytes`]: 512 KiB, four times a master listing the
/// 500 renditions probed at most with 250-byte entries.
pub const DEFAULT_MAX_MASTER_BYTES: u64 = 512 << 10;

/// The operator's own permission to send one request: held for the whole request. Waiting for
/// it is the operator's delay, never the origin's.
pub struct Permit {
    _instance: OwnedSemaphorePermit,
    host: HostPermit,
    _global: OwnedSemaphorePermit,
}

impl Permit {
    /// Whether a background wait was raised at the host (see
    /// [`Fetcher::background_permit`]).
    pub fn promoted(&self) -> bool {
        self.host.promoted()
    }
}

/// The requests one instance may have in flight at once (every probe of the instance shares
/// it), and the instance's identity in the host queues (see [`super::host_queue`]).
pub struct InstanceBudget {
    id: u64,
    permits: Arc<Semaphore>,
}

/// Permission to hold one LL-HLS blocking reload (see [`FetchLimits::blocking_concurrency`]).
pub struct BlockingPermit {
    _host: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

/// The one HTTP client every probe uses.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    permits: Arc<Semaphore>,
    hosts: Arc<Mutex<HashMap<String, Arc<HostQueue>>>>,
    blocking: Arc<Semaphore>,
    blocking_hosts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    blocking_per_host: usize,
    per_host: usize,
    per_instance: usize,
    max_body_bytes: u64,
    max_master_bytes: u64,
    max_redirects: usize,
    request_timeout: Duration,
    allow_private: bool,
}

impl Fetcher {
    pub fn new(limits: &FetchLimits) -> Result<Self, reqwest::Error> {
        // Redirects are followed by hand (see `get`), so every hop is checked against the
        // instance's destinations; the resolver checks every address connected to. No proxy:
        // a proxy would resolve (and reach) what the resolver refuses.
        let client = reqwest::Client::builder()
            .timeout(limits.request_timeout)
            .connect_timeout(limits.request_timeout.min(Duration::from_secs(2)))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: limits.allow_private,
            }))
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("cvs-operator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            permits: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            hosts: Arc::default(),
            blocking: Arc::new(Semaphore::new(limits.blocking_concurrency)),
            blocking_hosts: Arc::default(),
            blocking_per_host: limits.blocking_per_host,
            per_host: limits.per_host.max(1),
            per_instance: limits.per_instance.max(1),
            max_body_bytes: limits.max_body_bytes,
            max_master_bytes: limits.max_master_bytes,
            max_redirects: limits.max_redirects,
            request_timeout: limits.request_timeout,
            allow_private: limits.allow_private,
        })
    }

    /// A new per-instance budget, shared by every probe of one instance.
    pub fn instance_budget(&self) -> Arc<InstanceBudget> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Arc::new(InstanceBudget {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            permits: Arc::new(Semaphore::new(self.per_instance)),
        })
    }

    fn host_budget(&self, url: &Url) -> Arc<HostQueue> {
        per_host(&self.hosts, url, || HostQueue::new(self.per_host))
    }

    /// Tells `url`'s host queue, if it has one, that the host answered (see
    /// [`HostQueue::answered`]).
    fn note_answer(&self, url: &Url) {
        let queue = self
            .hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&host_key(url))
            .cloned();
        if let Some(queue) = queue {
            queue.answered();
        }
    }

    /// A slot for an LL-HLS blocking reload of `url`, if one is free now (never waits: a
    /// rendition without one polls plainly).
    pub fn try_blocking_permit(&self, url: &Url) -> Option<BlockingPermit> {
        let host = per_host(&self.blocking_hosts, url, || {
            Arc::new(Semaphore::new(self.blocking_per_host))
        })
        .try_acquire_owned()
        .ok()?;
        let global = self.blocking.clone().try_acquire_owned().ok()?;
        Some(BlockingPermit {
            _host: host,
            _global: global,
        })
    }

    /// Waits for the operator's own permission to fetch `url` for the instance whose budget is
    /// `instance`: its instance's, its host's and the global limit, in that order, so a probe
    /// never holds a scarcer permit while it waits for a more local one. The instance's and the
    /// global semaphores are first come, first served; a host's permits go to its instances in
    /// turn, by `urgency` among equals (see [`super::host_queue`]).
    pub async fn permit(&self, instance: &InstanceBudget, url: &Url, urgency: Urgency) -> Permit {
        self.permit_as(instance, url, urgency, None, None).await
    }

    /// [`Fetcher::permit`] for a poll whose rendition's staleness deadline is `deadline`: a
    /// routine poll still waiting in its host's queue then is raised to a pending verdict
    /// where it stands (see [`super::host_queue::Asker::decisive_at`]).
    pub async fn poll_permit(
        &self,
        instance: &InstanceBudget,
        url: &Url,
        urgency: Urgency,
        deadline: Option<tokio::time::Instant>,
    ) -> Permit {
        self.permit_as(instance, url, urgency, None, deadline).await
    }

    /// [`Fetcher::permit`] for a background request, raised where it stands in its
    /// host's queue once it has waited `promote_after` there (see [`Permit::promoted`]).
    pub async fn background_permit(
        &self,
        instance: &InstanceBudget,
        url: &Url,
        promote_after: Duration,
    ) -> Permit {
        self.permit_as(
            instance,
            url,
            Urgency::Background,
            Some(promote_after),
            None,
        )
        .await
    }

    async fn permit_as(
        &self,
        instance: &InstanceBudget,
        url: &Url,
        urgency: Urgency,
        promote_after: Option<Duration>,
        decisive_at: Option<tokio::time::Instant>,
    ) -> Permit {
        // The semaphores are never closed, so acquiring cannot fail.
        let closed = "probe semaphores are never closed";
        let asker = Asker {
            instance: instance.id,
            urgency,
            promote_after,
            decisive_at,
        };
        let instance = instance
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect(closed);
        let host = self.host_budget(url).acquire(asker).await;
        let global = self.permits.clone().acquire_owned().await.expect(closed);
        Permit {
            _instance: instance,
            host,
            _global: global,
        }
    }

    /// [`Fetcher::get_master`] for a caller outside the probe engine (publication, the CLI):
    /// waits for a permit of its own (host and global limits), then fetches.
    pub async fn get_with_permit(
        &self,
        url: &Url,
        destinations: &Destinations,
    ) -> Result<Vec<u8>, Failure> {
        let _permit = self
            .permit(&self.instance_budget(), url, Urgency::Routine)
            .await;
        self.get_master(url, destinations).await
    }

    /// GETs the media playlist `url` and returns its body, or why not, following at most
    /// `max_redirects` redirects to http(s) URLs that `destinations` allow, all within the
    /// request timeout, refusing a body over [`FetchLimits::max_body_bytes`]. The caller holds a
    /// [`Permit`].
    pub async fn get(&self, url: &Url, destinations: &Destinations) -> Result<Vec<u8>, Failure> {
        self.get_within(url, destinations, self.request_timeout)
            .await
    }

    /// [`Fetcher::get`] for a master playlist: a body over [`FetchLimits::max_master_bytes`]
    /// is refused.
    pub async fn get_master(
        &self,
        url: &Url,
        destinations: &Destinations,
    ) -> Result<Vec<u8>, Failure> {
        self.get_limited(
            url,
            destinations,
            self.request_timeout,
            self.max_master_bytes,
        )
        .await
    }

    /// [`Fetcher::get`] with a timeout of its own (an LL-HLS blocking reload, which the server
    /// may hold for three target durations).
    pub async fn get_within(
        &self,
        url: &Url,
        destinations: &Destinations,
        timeout: Duration,
    ) -> Result<Vec<u8>, Failure> {
        self.get_limited(url, destinations, timeout, self.max_body_bytes)
            .await
    }

    async fn get_limited(
        &self,
        url: &Url,
        destinations: &Destinations,
        timeout: Duration,
        max_bytes: u64,
    ) -> Result<Vec<u8>, Failure> {
        let get = self.get_inner(url, destinations, timeout, max_bytes);
        match tokio::time::timeout(timeout, get).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// HEADs `url` (a segment, to check it is served), following redirects as [`Fetcher::get`]
    /// does, within the request timeout. `Ok` for a 2xx answer. The caller holds a [`Permit`].
    pub async fn head(&self, url: &Url, destinations: &Destinations) -> Result<(), Failure> {
        let head = async {
            let response = self
                .send_following(
                    reqwest::Method::HEAD,
                    url,
                    destinations,
                    self.request_timeout,
                )
                .await?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(Failure::Http(status.as_u16()))
            }
        };
        match tokio::time::timeout(self.request_timeout, head).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout),
        }
    }

    async fn get_inner(
        &self,
        url: &Url,
        destinations: &Destinations,
        timeout: Duration,
        max_bytes: u64,
    ) -> Result<Vec<u8>, Failure> {
        let mut response = self
            .send_following(reqwest::Method::GET, url, destinations, timeout)
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(Failure::Http(status.as_u16()));
        }
        if response.content_length().is_some_and(|len| len > max_bytes) {
            return Err(Failure::TooLarge(max_bytes));
        }
        let mut body =
            Vec::with_capacity(response.content_length().unwrap_or(4096).min(65536) as usize);
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if (body.len() as u64).saturating_add(chunk.len() as u64) > max_bytes {
                return Err(Failure::TooLarge(max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Sends `method` to `url`, following at most `max_redirects` redirects to http(s) URLs
    /// that `destinations` allow, each request within `timeout`; returns the final response,
    /// whatever its status.
    async fn send_following(
        &self,
        method: reqwest::Method,
        url: &Url,
        destinations: &Destinations,
        timeout: Duration,
    ) -> Result<reqwest::Response, Failure> {
        let mut current = url.clone();
        let mut hops = 0;
        // Whether every hop so far stayed on the first URL's origin: credentials never follow a
        // redirect to another host (see `Destinations::credentials_for`).
        let mut same_origin = true;
        let response = loop {
            destinations
                .check(&current)
                .and_then(|()| destination::check_literal(&current, self.allow_private))
                .map_err(|r| Failure::Refused(r.0))?;
            same_origin &= destination::same_origin(url, &current);
            let mut request = self
                .client
                .request(method.clone(), current.clone())
                .timeout(timeout);
            if let Some(c) = destinations.credentials_for(url, &current, same_origin) {
                request = request.header(c.name.clone(), c.value.clone());
            }
            let response = request.send().await.map_err(classify)?;
            self.note_answer(&current);
            let status = response.status().as_u16();
            let location = response.headers().get(reqwest::header::LOCATION);
            let (true, Some(location)) = (matches!(status, 301 | 302 | 303 | 307 | 308), location)
            else {
                break response;
            };
            if hops >= self.max_redirects {
                return Err(Failure::Redirect(format!(
                    "more than {} redirects",
                    self.max_redirects
                )));
            }
            hops += 1;
            let next = location
                .to_str()
                .ok()
                .and_then(|l| current.join(l).ok())
                .ok_or_else(|| Failure::Redirect("unreadable Location".into()))?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(Failure::Redirect(format!(
                    "redirect to a {}: URL",
                    next.scheme()
                )));
            }
            current = next;
        };
        Ok(response)
    }
}

/// The key of `url`'s host in the per-host maps: host and port.
fn host_key(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// The limit of `url`'s host (host and port) in `hosts`, made by `new` on first use.
fn per_host<T>(
    hosts: &Mutex<HashMap<String, Arc<T>>>,
    url: &Url,
    new: impl FnOnce() -> Arc<T>,
) -> Arc<T> {
    let host = host_key(url);
    let mut hosts = hosts.lock().unwrap_or_else(|p| p.into_inner());
    if hosts.len() >= 1024 && !hosts.contains_key(&host) {
        // Forget hosts nobody is using, so the map follows the origins in use.
        hosts.retain(|_, s| Arc::strong_count(s) > 1);
    }
    hosts.entry(host).or_insert_with(new).clone()
}

fn classify(e: reqwest::Error) -> Failure {
    use std::error::Error as _;
    // A connection the resolver refused (see `destination`).
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(refused) = c.downcast_ref::<destination::Refused>() {
            return Failure::Refused(refused.0.clone());
        }
        cause = c.source();
    }
    if e.is_timeout() {
        return Failure::Timeout;
    }
    if e.is_redirect() {
        return Failure::Redirect(root_cause(&e));
    }
    if e.is_connect() {
        return Failure::Connect(root_cause(&e));
    }
    if e.is_body() || e.is_decode() {
        return Failure::Other(format!("body cut short: {}", root_cause(&e)));
    }
    Failure::Other(
        e.source()
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.to_string()),
    )
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn check_header(body: &[u8]) -> Result<(), Failure> {
    let trimmed = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if !trimmed.starts_with(b"#EXTM3U") {
        return Err(Failure::Unparsable("does not start with #EXTM3U".into()));
    }
    Ok(())
}

fn short(e: impl std::fmt::Debug) -> String {
    let mut s = format!("{e:?}");
    if s.len() > 120 {
        let mut cut = 120;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Parses a media playlist into what the freshness decision needs, within the default
/// [`ParseLimits`]. See [`parse_polled`].
pub fn parse_media(body: &[u8]) -> Result<Snapshot, Failure> {
    parse_polled(body, &ParseLimits::default()).map(|p| p.snapshot)
}

/// What one poll of a media playlist found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Polled {
    pub snapshot: Snapshot,
    /// Its LL-HLS tags (see [`llhls::parse`]).
    pub ll: Option<llhls::LlInfo>,
    /// Its newest segment (see [`segments::newest_segment`]).
    pub newest: Option<SegmentRef>,
}

/// Parses a media playlist into what the freshness decision needs. It is first checked against
/// `limits` by one pass over its lines, and a long one is parsed by its tail only (see
/// [`super::scan`]). Every number is hostile: an `EXT-X-TARGETDURATION` outside the accepted
/// range ([`MIN_TARGET_DURATION_MS`] to [`MAX_TARGET_DURATION_MS`]) is refused as
/// [`Failure::TargetDuration`]; segment durations that are not finite, negative or longer than
/// the target duration are taken as the target duration; program date-times are summed with
/// saturation.
pub fn parse_polled(body: &[u8], limits: &ParseLimits) -> Result<Polled, Failure> {
    parse_polled_trimmed(body, limits, true)
}

fn parse_polled_trimmed(
    body: &[u8],
    limits: &ParseLimits,
    allow_trim: bool,
) -> Result<Polled, Failure> {
    check_header(body)?;
    let mut scan = scan::scan_media(body, limits)?;
    if !allow_trim {
        scan.trim = None;
    }
    let trimmed;
    let parsed = match &scan.trim {
        Some(trim) => {
            trimmed = trim.body(body);
            &trimmed[..]
        }
        None => body,
    };
    match m3u8_rs::parse_playlist_res(parsed) {
        Ok(Playlist::MediaPlaylist(p)) => {
            if p.target_duration == 0 {
                return Err(Failure::Unparsable(
                    "missing or zero EXT-X-TARGETDURATION".into(),
                ));
            }
            let target_duration_ms = p.target_duration.saturating_mul(1000);
            if !(MIN_TARGET_DURATION_MS..=MAX_TARGET_DURATION_MS).contains(&target_duration_ms) {
                return Err(Failure::TargetDuration(p.target_duration));
            }
            let segment_ms = |d: f32| -> u64 {
                let ms = f64::from(d) * 1000.0;
                if ms.is_finite() && ms >= 0.0 {
                    (ms.round() as u64).min(target_duration_ms)
                } else {
                    target_duration_ms
                }
            };
            let last_segment_ms = p
                .segments
                .last()
                .map(|s| segment_ms(s.duration))
                .unwrap_or(0);
            // The newest segment's end by program date-time: the last dated segment's date plus
            // the durations from there to the end (those of segments left out of the parse
            // included).
            let carry = scan.trim.as_ref().map(|t| {
                (
                    t.carry_after,
                    scan::extinf_sum(&body[t.carry.clone()], segment_ms),
                )
            });
            let mut newest_end_unix_ms: Option<i64> = None;
            for (i, s) in p.segments.iter().enumerate() {
                if let Some(pdt) = s.program_date_time {
                    newest_end_unix_ms = Some(pdt.timestamp_millis());
                }
                let mut ms = segment_ms(s.duration);
                if let Some((after, sum)) = carry
                    && after == i
                {
                    ms = ms.saturating_add(sum);
                }
                newest_end_unix_ms = newest_end_unix_ms
                    .map(|end| end.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)));
            }
            let skipped = scan.trim.as_ref().map_or(0, |t| t.skipped);
            let snapshot = Snapshot {
                media_sequence: p.media_sequence,
                segment_count: (p.segments.len() as u64).saturating_add(skipped),
                target_duration_ms,
                last_segment_ms,
                ended: p.end_list,
                newest_end_unix_ms,
            };
            Ok(Polled {
                snapshot,
                ll: llhls::parse(parsed, snapshot.media_sequence, snapshot.segment_count),
                newest: segments::newest_segment(body),
            })
        }
        Ok(Playlist::MasterPlaylist(_)) => Err(Failure::Unparsable(
            "expected a media playlist, got a master playlist".into(),
        )),
        Err(e) => Err(Failure::Unparsable(short(e.map(|e| e.code)))),
    }
}

/// One media playlist listed by a master playlist.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rendition {
    /// Its identity across master re-reads: the URI without query or fragment (origins put
    /// per-request tokens there, `v.m3u8?session=N`), plus `#N` for the N-th further entry
    /// with the same such URI. It names the rendition in messages, and carries no secret a
    /// query might hold.
    pub key: String,
    /// The URI to fetch, as the master gave it last.
    pub uri: Url,
    /// `video`, `iframe`, `audio`, `subtitles` or `closed-captions`.
    pub kind: &'static str,
}

/// The part of a URL that identifies a playlist across requests: without user info, query or
/// fragment.
pub fn stable_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Lists every media playlist of a master playlist (variants, EXT-X-MEDIA renditions with a URI,
/// I-frame playlists), resolved against `base`, without duplicate URIs, sorted by key. A media
/// playlist given as the "master" is treated as a single video rendition.
pub fn parse_master(body: &[u8], base: &Url) -> Result<Vec<Rendition>, Failure> {
    parse_master_with(body, base, &ParseLimits::default(), DEFAULT_MAX_RENDITIONS)
}

/// [`parse_master`], first checked against `limits` and `max_renditions` by one pass over its
/// lines (see [`scan::scan_master`]).
pub fn parse_master_with(
    body: &[u8],
    base: &Url,
    limits: &ParseLimits,
    max_renditions: usize,
) -> Result<Vec<Rendition>, Failure> {
    check_header(body)?;
    scan::scan_master(body, limits, max_renditions)?;
    let resolve = |uri: &str| {
        base.join(uri)
            .map_err(|e| Failure::Unparsable(format!("bad URI {uri:?}: {e}")))
    };
    let mut listed: Vec<(Url, &'static str)> = Vec::new();
    match m3u8_rs::parse_playlist_res(body) {
        Ok(Playlist::MasterPlaylist(m)) => {
            for v in &m.variants {
                let kind = if v.is_i_frame { "iframe" } else { "video" };
                listed.push((resolve(&v.uri)?, kind));
            }
            for a in &m.alternatives {
                let Some(uri) = &a.uri else { continue };
                let kind = match a.media_type {
                    AlternativeMediaType::Audio => "audio",
                    AlternativeMediaType::Video => "video",
                    AlternativeMediaType::Subtitles => "subtitles",
                    AlternativeMediaType::ClosedCaptions => "closed-captions",
                    AlternativeMediaType::Other(_) => "other",
                };
                listed.push((resolve(uri)?, kind));
            }
        }
        Ok(Playlist::MediaPlaylist(_)) => listed.push((base.clone(), "video")),
        Err(e) => return Err(Failure::Unparsable(short(e.map(|e| e.code)))),
    }
    let mut seen_uris = std::collections::HashSet::new();
    let mut occurrences: std::collections::HashMap<String, usize> = Default::default();
    let mut out = Vec::with_capacity(listed.len());
    for (uri, kind) in listed {
        if !seen_uris.insert(uri.clone()) {
            continue;
        }
        let stable = stable_url(&uri);
        let n = occurrences.entry(stable.clone()).or_default();
        let key = if *n == 0 {
            stable
        } else {
            format!("{stable}#{n}")
        };
        *n += 1;
        out.push(Rendition { key, uri, kind });
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEDIA: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:1200\n#EXTINF:6.000,\n1200.ts\n#EXTINF:5.500,\n1201.ts\n";

    #[test]
    fn media_playlist_is_summarised() {
        let s = parse_media(MEDIA.as_bytes()).unwrap();
        assert_eq!(
            s,
            Snapshot {
                media_sequence: 1200,
                segment_count: 2,
                target_duration_ms: 6000,
                last_segment_ms: 5500,
                ended: false,
                newest_end_unix_ms: None,
            }
        );
        assert!(
            parse_media(format!("{MEDIA}#EXT-X-ENDLIST\n").as_bytes())
                .unwrap()
                .ended
        );
    }

    #[test]
    fn garbage_and_wrong_kinds_are_unparsable_not_panics() {
        for body in [
            &b""[..],
            b"\x00\xff\xfe garbage",
            b"<html>404</html>",
            b"#EXTM3U\n#EXT-X-TARGETDURATION:abc\n",
            b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n",
        ] {
            assert!(
                matches!(parse_media(body), Err(Failure::Unparsable(_))),
                "{body:?}"
            );
        }
        // A huge body of junk lines parses or fails, but quickly and without panicking.
        let junk = "#EXTM3U\n".to_owned() + &"#EXTINF:x\n".repeat(50_000);
        let _ = parse_media(junk.as_bytes());
    }

    /// A media playlist of `n` segments: `pdt` dates every `pdt`-th segment (0: none), with a
    /// duration pattern, optional LL-HLS tail, init segment and end.
    fn long_media(n: u64, pdt: u64, ll: bool, ended: bool) -> String {
        use std::fmt::Write as _;
        let mut s = String::from("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n");
        s.push_str("#EXT-X-MEDIA-SEQUENCE:500\n#EXT-X-PLAYLIST-TYPE:EVENT\n");
        if ll {
            s.push_str("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5\n");
            s.push_str("#EXT-X-PART-INF:PART-TARGET=0.5\n");
        }
        s.push_str("#EXT-X-MAP:URI=\"init.mp4\"\n");
        for i in 0..n {
            if pdt > 0 && i % pdt == 0 {
                let secs = i * 2;
                let _ = writeln!(
                    s,
                    "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T{:02}:{:02}:{:02}.000Z",
                    secs / 3600 % 24,
                    secs / 60 % 60,
                    secs % 60
                );
            }
            if i % 97 == 5 {
                s.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if ll && i + 1 == n {
                s.push_str("#EXT-X-PART:DURATION=0.5,URI=\"x.0.m4s\",INDEPENDENT=YES\n");
            }
            let d = [2.0, 1.968, 2.002, 7.5][(i % 4) as usize];
            let _ = writeln!(s, "#EXTINF:{d:.3},\n{}.m4s", 500 + i);
        }
        if ll {
            s.push_str("#EXT-X-PART:DURATION=0.5,URI=\"y.0.m4s\",INDEPENDENT=YES\n");
            s.push_str("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"y.1.m4s\"\n");
        }
        if ended {
            s.push_str("#EXT-X-ENDLIST\n");
        }
        s
    }

    #[test]
    fn a_long_playlist_parsed_by_its_tail_reads_as_parsed_whole() {
        let limits = ParseLimits::default();
        for n in [1, 255, 256, 257, 300, 1000, 10_800] {
            for pdt in [0, 1, 7, 1000, 20_000] {
                for (ll, ended) in [(false, false), (true, false), (false, true)] {
                    let body = long_media(n, pdt, ll, ended);
                    let tail = parse_polled(body.as_bytes(), &limits).unwrap();
                    let whole = parse_polled_trimmed(body.as_bytes(), &limits, false).unwrap();
                    assert_eq!(tail, whole, "n={n} pdt={pdt} ll={ll} ended={ended}");
                    assert_eq!(tail.snapshot.segment_count, n);
                    let trimmed = scan::scan_media(body.as_bytes(), &limits).unwrap().trim;
                    assert_eq!(trimmed.is_some(), n >= scan::TRIM_FROM_SEGMENTS, "n={n}");
                }
            }
        }
        // A playlist-level tag among the segments left out: parsed whole.
        let mut body = long_media(1000, 0, false, false);
        let at = body.find("#EXTINF:2.000,\n600.m4s").unwrap();
        body.insert_str(at, "#EXT-X-TARGETDURATION:8\n");
        assert!(
            scan::scan_media(body.as_bytes(), &limits)
                .unwrap()
                .trim
                .is_none()
        );
        assert_eq!(
            parse_polled(body.as_bytes(), &limits)
                .unwrap()
                .snapshot
                .target_duration_ms,
            8_000
        );
    }

    /// Generated long playlists of valid lines in any order the RFC allows: dates anywhere,
    /// discontinuities, keys, byte ranges, date ranges, comments, blank lines, CRLF, parts.
    #[test]
    fn generated_long_playlists_read_the_same_by_their_tail() {
        use std::fmt::Write as _;
        let limits = ParseLimits::default();
        for seed in 0..200 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let n = rng.u64(200..700);
            let nl = if rng.bool() { "\n" } else { "\r\n" };
            let mut s = format!(
                "#EXTM3U{nl}#EXT-X-VERSION:7{nl}#EXT-X-TARGETDURATION:{}{nl}#EXT-X-MEDIA-SEQUENCE:{}{nl}",
                rng.u64(1..10),
                rng.u64(0..1_000_000)
            );
            for i in 0..n {
                for _ in 0..rng.usize(0..3) {
                    match rng.u8(0..9) {
                        0 => {
                            let _ = write!(
                                s,
                                "#EXT-X-PROGRAM-DATE-TIME:2026-01-0{}T10:{:02}:{:02}.{:03}Z{nl}",
                                rng.u8(1..9),
                                rng.u8(0..60),
                                rng.u8(0..60),
                                rng.u16(0..1000)
                            );
                        }
                        1 => s.push_str(&format!("#EXT-X-DISCONTINUITY{nl}")),
                        2 => s.push_str(&format!("#EXT-X-KEY:METHOD=AES-128,URI=\"k{i}.key\"{nl}")),
                        3 => s.push_str(&format!("#EXT-X-BYTERANGE:{}@0{nl}", rng.u32(1..9999))),
                        4 => s.push_str(&format!(
                            "#EXT-X-DATERANGE:ID=\"d{i}\",START-DATE=\"2026-01-01T00:00:00Z\"{nl}"
                        )),
                        5 => s.push_str(&format!("# a comment{nl}")),
                        6 => s.push_str(nl),
                        7 => s.push_str(&format!("#EXT-X-PART:DURATION=0.5,URI=\"p{i}.mp4\"{nl}")),
                        _ => s.push_str(&format!("#EXT-X-MAP:URI=\"init{i}.mp4\"{nl}")),
                    }
                }
                let _ = write!(
                    s,
                    "#EXTINF:{}.{:03},{nl}seg{i}.ts{nl}",
                    rng.u8(0..12),
                    rng.u16(0..1000)
                );
            }
            if rng.bool() {
                s.push_str(&format!("#EXT-X-PART:DURATION=0.5,URI=\"last.mp4\"{nl}"));
            }
            if rng.bool() {
                s.push_str(&format!("#EXT-X-ENDLIST{nl}"));
            }
            let tail = parse_polled(s.as_bytes(), &limits);
            let whole = parse_polled_trimmed(s.as_bytes(), &limits, false);
            assert_eq!(tail, whole, "seed {seed}");
            assert_eq!(tail.unwrap().snapshot.segment_count, n, "seed {seed}");
        }
    }

    #[test]
    fn every_limit_passes_at_its_value_and_refuses_one_past_it() {
        let limits = ParseLimits {
            max_line_bytes: 1_000,
            max_segments: 300,
            max_parts: 20,
        };
        // Segments.
        let at = long_media(300, 1, false, false);
        assert_eq!(
            parse_polled(at.as_bytes(), &limits)
                .unwrap()
                .snapshot
                .segment_count,
            300
        );
        let past = long_media(301, 1, false, false);
        let err = parse_polled(past.as_bytes(), &limits).unwrap_err();
        assert_eq!(err, Failure::TooManySegments(301, 300));
        assert_eq!(
            err.to_string(),
            "playlist lists 301 segments, more than the limit of 300"
        );
        // Lines: the longest line (newline excluded) at the limit, then one byte more.
        let line = |len: usize| {
            let uri = format!("{}.ts", "a".repeat(len - 3));
            format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{uri}\n")
        };
        assert!(parse_polled(line(1_000).as_bytes(), &limits).is_ok());
        let err = parse_polled(line(1_001).as_bytes(), &limits).unwrap_err();
        assert_eq!(err, Failure::LineTooLong(1_000));
        assert_eq!(
            err.to_string(),
            "playlist has a line longer than 1000 bytes"
        );
        // A line without a newline at the end of the body counts too, and CRLF's CR is part of
        // the line.
        let crlf = line(999).replace('\n', "\r\n");
        assert!(parse_polled(crlf.as_bytes(), &limits).is_ok());
        let crlf = line(1_000).replace('\n', "\r\n");
        assert!(parse_polled(crlf.as_bytes(), &limits).is_err());
        // Parts.
        let parts = |n: usize| {
            let mut s =
                String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.1\n");
            s.push_str(&"#EXT-X-PART:DURATION=0.1,URI=\"p.ts\"\n".repeat(n));
            s.push_str("#EXTINF:2.0,\n1.ts\n");
            s
        };
        assert!(parse_polled(parts(20).as_bytes(), &limits).is_ok());
        let err = parse_polled(parts(21).as_bytes(), &limits).unwrap_err();
        assert_eq!(err, Failure::TooManyParts(21, 20));
        assert_eq!(
            err.to_string(),
            "playlist lists 21 LL-HLS parts, more than the limit of 20"
        );
        // Renditions of a master, counted before the parse.
        let base = Url::parse("http://127.0.0.1:9000/s1/master.m3u8").unwrap();
        let master = |n: usize| {
            let mut s = String::from(
                "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"en.m3u8\"\n\
                 #EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"cc\",NAME=\"cc\",INSTREAM-ID=\"CC1\"\n",
            );
            for i in 1..n {
                s.push_str(&format!("#EXT-X-STREAM-INF:BANDWIDTH={i}\nv{i}.m3u8\n"));
            }
            s
        };
        assert_eq!(
            parse_master_with(master(10).as_bytes(), &base, &limits, 10)
                .unwrap()
                .len(),
            10
        );
        let err = parse_master_with(master(11).as_bytes(), &base, &limits, 10).unwrap_err();
        assert_eq!(err, Failure::TooManyRenditions(11, 10));
        let long = format!("{}#X-{}\n", master(2), "x".repeat(1_000));
        let err = parse_master_with(long.as_bytes(), &base, &limits, 10).unwrap_err();
        assert_eq!(err, Failure::LineTooLong(1_000));
    }

    #[test]
    fn the_newest_date_counts_the_segments_left_out() {
        // Dated once, at the top: the newest end is that date plus every duration.
        let limits = ParseLimits::default();
        for pdt in [20_000, 1000] {
            let body = long_media(10_800, pdt, false, false);
            let p = parse_polled(body.as_bytes(), &limits).unwrap();
            let durations: u64 = (0..10_800u64)
                .skip(if pdt == 1000 { 10_000 } else { 0 })
                // Clamped to the target duration (2 s).
                .map(|i| [2000, 1968, 2000, 2000][(i % 4) as usize])
                .sum();
            let dated = if pdt == 1000 { 20_000_000 } else { 0 };
            assert_eq!(
                p.snapshot.newest_end_unix_ms,
                Some(1_767_225_600_000 + dated + durations as i64),
                "pdt={pdt}"
            );
        }
    }

    #[test]
    fn master_lists_variants_media_and_iframes_resolved() {
        let master = "#EXTM3U\n\
            #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"en\",URI=\"audio/en.m3u8\"\n\
            #EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"cc\",NAME=\"cc1\",INSTREAM-ID=\"CC1\"\n\
            #EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080,AUDIO=\"aud\"\n\
            1080p/index.m3u8\n\
            #EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,AUDIO=\"aud\"\n\
            https://other.example.com/360p/index.m3u8\n\
            #EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100000,URI=\"1080p/iframes.m3u8\"\n";
        let base = Url::parse("http://127.0.0.1:9000/s1/master.m3u8").unwrap();
        let r = parse_master(master.as_bytes(), &base).unwrap();
        let got: Vec<(String, &str)> = r.iter().map(|r| (r.key.clone(), r.kind)).collect();
        assert_eq!(
            got,
            vec![
                (
                    "http://127.0.0.1:9000/s1/1080p/iframes.m3u8".into(),
                    "iframe"
                ),
                ("http://127.0.0.1:9000/s1/1080p/index.m3u8".into(), "video"),
                ("http://127.0.0.1:9000/s1/audio/en.m3u8".into(), "audio"),
                ("https://other.example.com/360p/index.m3u8".into(), "video"),
            ]
        );
    }

    #[test]
    fn hostile_target_durations_are_refused_and_huge_extinf_is_clamped() {
        let media = |td: &str, extinf: &str| {
            format!(
                "#EXTM3U\n#EXT-X-TARGETDURATION:{td}\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:6.0,\na.ts\n#EXTINF:{extinf},\nb.ts\n"
            )
        };
        // Out of the accepted 1..=60 s: a stale reason of its own, not a number to compute with.
        for td in ["12000000000000000", "6000", "61", "18446744073709551615"] {
            let got = parse_media(media(td, "6.0").as_bytes());
            assert!(
                matches!(got, Err(Failure::TargetDuration(_))),
                "{td}: {got:?}"
            );
        }
        // Beyond u64, or not an integer: unparsable or refused, never a wrapped number.
        for td in ["1.2e16", "99999999999999999999999"] {
            let got = parse_media(media(td, "6.0").as_bytes());
            assert!(
                matches!(
                    got,
                    Err(Failure::TargetDuration(_)) | Err(Failure::Unparsable(_))
                ) || got.as_ref().is_ok_and(|s| s.target_duration_ms <= 60_000),
                "{td}: {got:?}"
            );
        }
        assert_eq!(
            parse_media(media("60", "6.0").as_bytes())
                .unwrap()
                .target_duration_ms,
            60_000
        );
        // A 60-digit EXTINF (infinite as an f32) is taken as the target duration.
        let sixty = "1".repeat(60) + ".5";
        let s = parse_media(media("6", &sixty).as_bytes()).unwrap();
        assert_eq!(s.last_segment_ms, 6_000);
        let s = parse_media(media("6", "9999.0").as_bytes()).unwrap();
        assert_eq!(s.last_segment_ms, 6_000);
    }

    #[test]
    fn the_newest_segment_is_dated_from_the_last_program_date_time() {
        let body = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
            #EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n#EXTINF:2.0,\n7.ts\n\
            #EXTINF:2.0,\n8.ts\n#EXTINF:1.5,\n9.ts\n";
        let s = parse_media(body.as_bytes()).unwrap();
        assert_eq!(s.newest_end_unix_ms, Some(1_767_225_600_000 + 5_500));
        assert_eq!(
            parse_media(MEDIA.as_bytes()).unwrap().newest_end_unix_ms,
            None
        );
        let far = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
            #EXT-X-PROGRAM-DATE-TIME:9999-12-31T23:59:59.999+14:00\n#EXTINF:2.0,\n7.ts\n";
        assert!(parse_media(far.as_bytes()).is_ok());
    }

    #[test]
    fn a_rendition_keeps_its_identity_when_its_query_changes() {
        let base = Url::parse("http://127.0.0.1:9000/s1/master.m3u8").unwrap();
        let master = |n: u32| {
            format!(
                "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhi.m3u8?session={n}\n\
                 #EXT-X-STREAM-INF:BANDWIDTH=2\nlive.m3u8?q=a&session={n}\n\
                 #EXT-X-STREAM-INF:BANDWIDTH=3\nlive.m3u8?q=b&session={n}\n"
            )
        };
        let a = parse_master(master(1).as_bytes(), &base).unwrap();
        let b = parse_master(master(2).as_bytes(), &base).unwrap();
        let keys = |r: &[Rendition]| r.iter().map(|r| r.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&a), keys(&b));
        assert_eq!(
            keys(&a),
            vec![
                "http://127.0.0.1:9000/s1/hi.m3u8",
                "http://127.0.0.1:9000/s1/live.m3u8",
                "http://127.0.0.1:9000/s1/live.m3u8#1",
            ]
        );
        // The URI to fetch is the latest one.
        assert_eq!(b[0].uri.query(), Some("session=2"));
    }

    #[test]
    fn a_media_playlist_given_as_master_is_one_rendition() {
        let base = Url::parse("http://127.0.0.1:9000/s1/720p.m3u8").unwrap();
        let r = parse_master(MEDIA.as_bytes(), &base).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].uri, base);
    }

    /// A loopback server: `/loop` redirects to itself, `/ftp` to an ftp: URL, `/hop/N` through N
    /// redirects to `/ok`, `/big` streams 2 MiB without a Content-Length.
    async fn server() -> Url {
        use axum::Router;
        use axum::body::Body;
        use axum::extract::Path;
        use axum::response::Redirect;
        use axum::routing::get;
        let app = Router::new()
            .route("/ok", get(|| async { MEDIA }))
            .route("/loop", get(|| async { Redirect::temporary("/loop") }))
            .route(
                "/ftp",
                get(|| async { Redirect::temporary("ftp://127.0.0.1/x.m3u8") }),
            )
            .route(
                "/hop/{n}",
                get(|Path(n): Path<u32>| async move {
                    if n == 0 {
                        Redirect::temporary("/ok")
                    } else {
                        Redirect::temporary(&format!("/hop/{}", n - 1))
                    }
                }),
            )
            .route(
                "/big",
                get(|| async {
                    let chunks = futures::stream::iter(
                        (0..2048).map(|_| Ok::<_, std::io::Error>(vec![b'#'; 1024])),
                    );
                    Body::from_stream(chunks)
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Url::parse(&format!("http://{addr}/")).unwrap()
    }

    #[tokio::test]
    async fn redirects_are_limited_to_http_and_a_few_hops() {
        let base = server().await;
        let fetcher = Fetcher::new(&FetchLimits {
            allow_private: true,
            ..FetchLimits::default()
        })
        .unwrap();
        let any = Destinations::any();
        assert!(
            fetcher
                .get(&base.join("hop/2").unwrap(), &any)
                .await
                .is_ok()
        );
        for path in ["loop", "ftp", "hop/5"] {
            let err = fetcher
                .get(&base.join(path).unwrap(), &any)
                .await
                .unwrap_err();
            assert!(matches!(err, Failure::Redirect(_)), "{path}: {err:?}");
        }
    }

    /// The credentials header reaches the first URL's origin (through a same-origin redirect
    /// too) and never a redirect to another host, even one the instance allows.
    #[tokio::test]
    async fn credentials_stay_on_the_origin_across_redirects() {
        use axum::Router;
        use axum::http::HeaderMap;
        use axum::response::Redirect;
        type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;
        let seen: Seen = Arc::default();
        let app = |seen: Seen, host: &'static str| {
            Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap| {
                let seen = seen.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    seen.lock()
                        .unwrap()
                        .push((format!("{host}{}", uri.path()), auth));
                    let target = uri.query().unwrap_or("").to_owned();
                    if target.is_empty() {
                        axum::response::Response::new(axum::body::Body::from(MEDIA))
                    } else {
                        axum::response::IntoResponse::into_response(Redirect::temporary(&target))
                    }
                }
            })
        };
        let bind = |ip: &'static str, seen: Seen| async move {
            let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app(seen, ip)).await });
            format!("http://{addr}")
        };
        let origin = bind("127.0.0.1", seen.clone()).await;
        let other = bind("127.0.0.2", seen.clone()).await;
        let fetcher = Fetcher::new(&FetchLimits {
            allow_private: true,
            ..FetchLimits::default()
        })
        .unwrap();
        let master = Url::parse(&format!("{origin}/master.m3u8")).unwrap();
        let creds = Arc::new(crate::probe::credentials::OriginCredentials {
            name: reqwest::header::AUTHORIZATION,
            value: reqwest::header::HeaderValue::from_static("Bearer t0k"),
            scheme: "Bearer",
        });
        let d = Destinations::new(&master, &["127.0.0.2".into()]).with_credentials(Some(creds));
        for path in [
            format!("/same?{origin}/landing-same"),
            format!("/away?{other}/landing-other"),
        ] {
            let url = Url::parse(&format!("{origin}{path}")).unwrap();
            fetcher.get(&url, &d).await.unwrap();
        }
        fetcher
            .get(&Url::parse(&format!("{other}/direct")).unwrap(), &d)
            .await
            .unwrap();
        let seen = seen.lock().unwrap().clone();
        let bearer = Some("Bearer t0k".to_owned());
        assert_eq!(
            seen,
            vec![
                ("127.0.0.1/same".into(), bearer.clone()),
                ("127.0.0.1/landing-same".into(), bearer.clone()),
                ("127.0.0.1/away".into(), bearer.clone()),
                ("127.0.0.2/landing-other".into(), None),
                ("127.0.0.2/direct".into(), bearer),
            ]
        );
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_while_streaming() {
        let base = server().await;
        let fetcher = Fetcher::new(&FetchLimits {
            max_body_bytes: 64 * 1024,
            allow_private: true,
            ..FetchLimits::default()
        })
        .unwrap();
        let err = fetcher
            .get(&base.join("big").unwrap(), &Destinations::any())
            .await
            .unwrap_err();
        assert_eq!(err, Failure::TooLarge(64 * 1024));
    }

    /// Media and master playlists have limits of their own; a body of exactly the limit passes
    /// and one byte less refuses it, while streaming (`/big` sends no Content-Length).
    #[tokio::test]
    async fn media_and_master_bodies_have_limits_of_their_own() {
        let base = server().await;
        let big = base.join("big").unwrap();
        let any = Destinations::any();
        let fetcher = |media: u64, master: u64| {
            Fetcher::new(&FetchLimits {
                max_body_bytes: media,
                max_master_bytes: master,
                allow_private: true,
                ..FetchLimits::default()
            })
            .unwrap()
        };
        let two_mib = 2 << 20;
        let f = fetcher(two_mib, 64 << 10);
        assert_eq!(f.get(&big, &any).await.unwrap().len() as u64, two_mib);
        assert_eq!(
            f.get_master(&big, &any).await.unwrap_err(),
            Failure::TooLarge(64 << 10)
        );
        let f = fetcher(two_mib - 1, two_mib);
        assert_eq!(
            f.get(&big, &any).await.unwrap_err(),
            Failure::TooLarge(two_mib - 1)
        );
        assert_eq!(
            f.get_master(&big, &any).await.unwrap().len() as u64,
            two_mib
        );
    }
}
