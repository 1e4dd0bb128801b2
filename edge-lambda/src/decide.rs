//! The decision: pass the request or response through unchanged, or answer a CloudFront 404.

use serde_json::{Value, json};

use crate::config::Config;
use crate::item::KnownState;

/// What the function does with one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Return the event's request (viewer-request) or response (origin-response) unchanged.
    PassThrough,
    /// Return [`not_found_response`] instead.
    NotFound,
}

/// The parts of a CloudFront event the decision reads.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// `cf.request.uri` (path only: CloudFront keeps the query string apart).
    pub uri: &'a str,
}

/// A closed instance answers 404 for playlists and segments (the URIs [`Config::covers`]); an
/// open or unknown one, or any other URI, passes through.
pub fn decide(config: &Config, request: Request<'_>, state: KnownState) -> Decision {
    match state {
        KnownState::Closed if config.covers(request.uri) => Decision::NotFound,
        _ => Decision::PassThrough,
    }
}

/// The 404 a closed instance answers, as CloudFront's response object: `status` as a string,
/// headers keyed by lower-case name, each a list of `{key, value}`. `Cache-Control` is short so
/// neither CloudFront (which keeps an error for the larger of this and the distribution's error
/// caching minimum TTL) nor a player keeps the 404 long after the region reopens. CORS is open so
/// a browser player sees the 404 itself rather than a network error.
pub fn not_found_response(config: &Config) -> Value {
    let age = config.not_found_max_age;
    let header = |key: &str, value: &str| json!([{ "key": key, "value": value }]);
    json!({
        "status": "404",
        "statusDescription": "Not Found",
        "headers": {
            "cache-control": header("Cache-Control", &format!("max-age={age}, s-maxage={age}")),
            "content-type": header("Content-Type", "text/plain; charset=utf-8"),
            "access-control-allow-origin": header("Access-Control-Allow-Origin", "*"),
            "x-cvs-copilot": header("X-Cvs-Copilot", "closed"),
        },
        "bodyEncoding": "text",
        "body": "This region of the stream is closed; players move to another region.\n",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Trigger;

    fn config() -> Config {
        Config::new("t", "us-east-1", Trigger::OriginResponse)
    }

    #[test]
    fn only_a_closed_instance_answers_404_and_only_for_media() {
        let c = config();
        let m3u8 = Request {
            uri: "/live/index.m3u8",
        };
        assert_eq!(decide(&c, m3u8, KnownState::Closed), Decision::NotFound);
        assert_eq!(
            decide(&c, Request { uri: "/s/1.ts" }, KnownState::Closed),
            Decision::NotFound
        );
        assert_eq!(decide(&c, m3u8, KnownState::Open), Decision::PassThrough);
        assert_eq!(decide(&c, m3u8, KnownState::Unknown), Decision::PassThrough);
        let html = Request { uri: "/index.html" };
        assert_eq!(decide(&c, html, KnownState::Closed), Decision::PassThrough);
    }

    #[test]
    fn not_found_has_cloudfront_shape() {
        let mut c = config();
        c.not_found_max_age = 3;
        let r = not_found_response(&c);
        assert_eq!(r["status"], "404", "status is a string");
        assert_eq!(r["statusDescription"], "Not Found");
        let headers = r["headers"].as_object().unwrap();
        for (name, values) in headers {
            assert_eq!(name, &name.to_ascii_lowercase(), "keys are lower case");
            let values = values.as_array().unwrap();
            assert_eq!(values.len(), 1);
            assert_eq!(
                values[0]["key"].as_str().unwrap().to_ascii_lowercase(),
                *name
            );
            assert!(values[0]["value"].is_string());
        }
        assert_eq!(
            headers["cache-control"][0]["value"],
            "max-age=3, s-maxage=3"
        );
        assert_eq!(r["bodyEncoding"], "text");
        assert!(r["body"].as_str().unwrap().len() < 200);
    }
}
