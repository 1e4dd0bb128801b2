//! Fetching and parsing playlists: the bounded HTTP client every probe shares, and the
//! translation of m3u8-rs's parse results into what the decisions need.

use super::decision::{Failure, Snapshot};
use m3u8_rs::{AlternativeMediaType, Playlist};
use reqwest::Url;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Limits of the shared HTTP client.
#[derive(Clone, Debug)]
pub struct FetchLimits {
    /// Whole-request timeout (connect, headers and body).
    pub request_timeout: Duration,
    /// Largest playlist body accepted.
    pub max_body_bytes: u64,
    /// Redirects followed per request (only to http or https URLs).
    pub max_redirects: usize,
    /// Requests in flight at once, across every probe.
    pub concurrency: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(4),
            max_body_bytes: 1 << 20,
            max_redirects: 3,
            concurrency: 256,
        }
    }
}

/// The one HTTP client every probe uses.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    permits: Arc<Semaphore>,
    max_body_bytes: u64,
}

impl Fetcher {
    pub fn new(limits: &FetchLimits) -> Result<Self, reqwest::Error> {
        let max_redirects = limits.max_redirects;
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects {
                attempt.error(format!("more than {max_redirects} redirects"))
            } else if !matches!(attempt.url().scheme(), "http" | "https") {
                let scheme = attempt.url().scheme().to_owned();
                attempt.error(format!("redirect to a {scheme}: URL"))
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .timeout(limits.request_timeout)
            .connect_timeout(limits.request_timeout.min(Duration::from_secs(2)))
            .redirect(redirect)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("cvs-operator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            permits: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            max_body_bytes: limits.max_body_bytes,
        })
    }

    /// GETs `url` and returns its body, or why not.
    pub async fn get(&self, url: &Url) -> Result<Vec<u8>, Failure> {
        // The semaphore is never closed, so acquire cannot fail.
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| Failure::Other(e.to_string()))?;
        let mut response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(classify)?;
        let status = response.status();
        if !status.is_success() {
            return Err(Failure::Http(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > self.max_body_bytes)
        {
            return Err(Failure::TooLarge(self.max_body_bytes));
        }
        let mut body =
            Vec::with_capacity(response.content_length().unwrap_or(4096).min(65536) as usize);
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if (body.len() + chunk.len()) as u64 > self.max_body_bytes {
                return Err(Failure::TooLarge(self.max_body_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn classify(e: reqwest::Error) -> Failure {
    use std::error::Error as _;
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

/// Parses a media playlist into what the freshness decision needs.
pub fn parse_media(body: &[u8]) -> Result<Snapshot, Failure> {
    check_header(body)?;
    match m3u8_rs::parse_playlist_res(body) {
        Ok(Playlist::MediaPlaylist(p)) => {
            if p.target_duration == 0 {
                return Err(Failure::Unparsable(
                    "missing or zero EXT-X-TARGETDURATION".into(),
                ));
            }
            let last_segment_ms = p
                .segments
                .last()
                .map(|s| (f64::from(s.duration) * 1000.0).round().max(0.0) as u64)
                .unwrap_or(0);
            Ok(Snapshot {
                media_sequence: p.media_sequence,
                segment_count: p.segments.len() as u64,
                target_duration_ms: p.target_duration.saturating_mul(1000),
                last_segment_ms,
                ended: p.end_list,
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
    pub uri: Url,
    /// `video`, `iframe`, `audio`, `subtitles` or `closed-captions`.
    pub kind: &'static str,
}

/// Lists every media playlist of a master playlist (variants, EXT-X-MEDIA renditions with a URI,
/// I-frame playlists), resolved against `base` and without duplicates. A media playlist given
/// as the "master" is treated as a single video rendition.
pub fn parse_master(body: &[u8], base: &Url) -> Result<Vec<Rendition>, Failure> {
    check_header(body)?;
    let resolve = |uri: &str| {
        base.join(uri)
            .map_err(|e| Failure::Unparsable(format!("bad URI {uri:?}: {e}")))
    };
    let mut out = Vec::new();
    match m3u8_rs::parse_playlist_res(body) {
        Ok(Playlist::MasterPlaylist(m)) => {
            for v in &m.variants {
                let kind = if v.is_i_frame { "iframe" } else { "video" };
                out.push(Rendition {
                    uri: resolve(&v.uri)?,
                    kind,
                });
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
                out.push(Rendition {
                    uri: resolve(uri)?,
                    kind,
                });
            }
        }
        Ok(Playlist::MediaPlaylist(_)) => out.push(Rendition {
            uri: base.clone(),
            kind: "video",
        }),
        Err(e) => return Err(Failure::Unparsable(short(e.map(|e| e.code)))),
    }
    out.sort();
    out.dedup_by(|a, b| a.uri == b.uri);
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
                ended: false
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
        let got: Vec<(String, &str)> = r.iter().map(|r| (r.uri.to_string(), r.kind)).collect();
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
        let fetcher = Fetcher::new(&FetchLimits::default()).unwrap();
        assert!(fetcher.get(&base.join("hop/2").unwrap()).await.is_ok());
        for path in ["loop", "ftp", "hop/5"] {
            let err = fetcher.get(&base.join(path).unwrap()).await.unwrap_err();
            assert!(matches!(err, Failure::Redirect(_)), "{path}: {err:?}");
        }
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_while_streaming() {
        let base = server().await;
        let fetcher = Fetcher::new(&FetchLimits {
            max_body_bytes: 64 * 1024,
            ..FetchLimits::default()
        })
        .unwrap();
        let err = fetcher.get(&base.join("big").unwrap()).await.unwrap_err();
        assert_eq!(err, Failure::TooLarge(64 * 1024));
    }
}
