//! The dashboard's HTTP behaviour against a fake API server that answers TokenReview,
//! SubjectAccessReview, the patch and the Event (the real API server is in the e2e tests).

use super::*;
use std::sync::Mutex;

#[test]
fn every_response_carries_the_security_headers() {
    let mut h = HeaderMap::new();
    security_headers("/api/state", &mut h);
    assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
    assert!(CSP.contains("script-src 'self'") && !CSP.contains("unsafe-inline"));
    assert!(CSP.contains("frame-ancestors 'none'"));
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    let mut h = HeaderMap::new();
    security_headers("/assets/app.js", &mut h);
    assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
}

#[test]
fn names_are_checked_before_anything_is_asked() {
    assert!(valid_name("event-eu"));
    assert!(valid_name("a.b-c"));
    assert!(!valid_name(""));
    assert!(!valid_name("-a"));
    assert!(!valid_name("A"));
    assert!(!valid_name("a/b"));
    assert!(!valid_name(&"a".repeat(254)));
}

#[test]
fn the_access_review_asks_for_patch_on_that_instance_as_the_person() {
    let who = Identity {
        user: "alice".into(),
        uid: Some("u-1".into()),
        groups: vec!["devs".into()],
        extra: [("scopes".to_owned(), vec!["x".to_owned()])].into(),
    };
    let review = serde_json::to_value(access_review(&who, "live", "event-eu")).unwrap();
    assert_eq!(
        review["spec"],
        serde_json::json!({
            "user": "alice", "uid": "u-1", "groups": ["devs"], "extra": {"scopes": ["x"]},
            "resourceAttributes": {"verb": "patch", "group": "cvs.dev",
                "resource": "streaminstances", "namespace": "live", "name": "event-eu"}
        })
    );
}

#[test]
fn only_an_authenticated_review_with_a_name_is_an_identity() {
    use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};
    let ok = TokenReviewStatus {
        authenticated: Some(true),
        user: Some(UserInfo {
            username: Some("system:serviceaccount:ns:ops".into()),
            groups: Some(vec!["system:serviceaccounts".into()]),
            uid: Some("u".into()),
            extra: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        identity_from(&ok).unwrap().user,
        "system:serviceaccount:ns:ops"
    );
    let refused = TokenReviewStatus {
        authenticated: Some(false),
        error: Some("token expired".into()),
        ..ok.clone()
    };
    assert_eq!(
        identity_from(&refused).unwrap_err(),
        "the token was not accepted: token expired"
    );
    let nameless = TokenReviewStatus {
        user: Some(UserInfo::default()),
        ..ok
    };
    assert!(identity_from(&nameless).is_err());
}

/// What the fake API server saw.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    reviews: Mutex<Vec<serde_json::Value>>,
    patches: Mutex<Vec<(String, serde_json::Value)>>,
    events: Mutex<Vec<serde_json::Value>>,
}

async fn body_of(r: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    json(status, &body)
}

async fn fake_api_server(seen: Arc<Seen>) -> kube::Client {
    use axum::routing::{patch, post};
    let count = {
        let seen = seen.clone();
        move |req: Request, next: Next| {
            let seen = seen.clone();
            async move {
                seen.requests.fetch_add(1, Ordering::SeqCst);
                next.run(req).await
            }
        }
    };
    let app = Router::new()
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(|body: Bytes| async move {
                let mut r: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let token = r["spec"]["token"].as_str().unwrap_or_default().to_owned();
                r["status"] = match token.as_str() {
                    "alice-token" | "bob-token" => serde_json::json!({
                        "authenticated": true,
                        "user": {"username": token.trim_end_matches("-token"),
                                 "uid": "uid-1", "groups": ["system:authenticated"]}
                    }),
                    _ => {
                        serde_json::json!({"authenticated": false, "error": "invalid bearer token"})
                    }
                };
                reply(StatusCode::CREATED, r)
            }),
        )
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            post({
                let seen = seen.clone();
                move |body: Bytes| async move {
                    let mut r: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    seen.reviews.lock().unwrap().push(r.clone());
                    let allowed = r["spec"]["user"] == "alice";
                    r["status"] = serde_json::json!({"allowed": allowed});
                    reply(StatusCode::CREATED, r)
                }
            }),
        )
        .route(
            "/apis/cvs.dev/v1alpha1/namespaces/{ns}/streaminstances/{name}",
            patch({
                let seen = seen.clone();
                move |Path((ns, name)): Path<(String, String)>,
                      uri: axum::http::Uri,
                      body: Bytes| async move {
                    let manager = uri
                        .query()
                        .unwrap_or_default()
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("fieldManager="))
                        .unwrap_or_default()
                        .to_owned();
                    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    seen.patches.lock().unwrap().push((manager, body.clone()));
                    if name == "missing" {
                        return reply(
                            StatusCode::NOT_FOUND,
                            serde_json::json!({"kind": "Status", "apiVersion": "v1",
                                "status": "Failure", "reason": "NotFound", "code": 404,
                                "message": "not found"}),
                        );
                    }
                    reply(
                        StatusCode::OK,
                        serde_json::json!({
                            "apiVersion": "cvs.dev/v1alpha1", "kind": "StreamInstance",
                            "metadata": {"name": name, "namespace": ns, "uid": "x"},
                            "spec": {"clusteredStream": "ev", "region": "eu-west-1",
                                     "cloudfront": {"domain": "d.cloudfront.net"},
                                     "origin": {"url": "https://o/m.m3u8"},
                                     "distroOpen": body["spec"]["distroOpen"]}
                        }),
                    )
                }
            }),
        )
        .route(
            "/apis/events.k8s.io/v1/namespaces/{ns}/events",
            post({
                let seen = seen.clone();
                move |body: Bytes| async move {
                    let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    seen.events.lock().unwrap().push(e.clone());
                    reply(StatusCode::CREATED, e)
                }
            }),
        )
        .layer(axum::middleware::from_fn(count));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap())).unwrap()
}

struct Harness {
    base: String,
    http: reqwest::Client,
    seen: Arc<Seen>,
    feed: Feed,
    _stop: watch::Sender<bool>,
}

async fn harness(settings: Settings) -> Harness {
    let seen = Arc::new(Seen::default());
    let client = fake_api_server(seen.clone()).await;
    let feed = Feed::default();
    let (instances, mut iw) = kube::runtime::reflector::store();
    let (clusters, mut cw) = kube::runtime::reflector::store();
    use kube::runtime::watcher::Event;
    let cluster: crate::resources::ClusteredStream = serde_json::from_value(serde_json::json!({
        "apiVersion": "cvs.dev/v1alpha1", "kind": "ClusteredStream",
        "metadata": {"name": "ev", "namespace": "live"},
        "spec": {"stateTable": {"name": "t", "region": "us-east-1"}, "minOpen": 1}
    }))
    .unwrap();
    iw.apply_watcher_event(&Event::Init);
    iw.apply_watcher_event(&Event::InitDone);
    cw.apply_watcher_event(&Event::Init);
    cw.apply_watcher_event(&Event::InitApply(cluster));
    cw.apply_watcher_event(&Event::InitDone);
    feed.attach(instances, clusters, None);
    let frames = feed.start(crate::controller::leader::Status::without_election());
    let (stop, stop_rx) = watch::channel(false);
    let app = router(settings, client, feed.clone(), frames, stop_rx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, app, std::future::pending()));
    Harness {
        base,
        http: reqwest::Client::new(),
        seen,
        feed,
        _stop: stop,
    }
}

impl Harness {
    async fn sign_in(&self, token: &str) -> reqwest::Response {
        self.sign_in_as(Some("application/json"), token).await
    }

    /// Signs in with `token`, the body sent with the `content_type` given.
    async fn sign_in_as(&self, content_type: Option<&str>, token: &str) -> reqwest::Response {
        let mut r = self
            .http
            .post(format!("{}/api/session", self.base))
            .body(serde_json::json!({ "token": token }).to_string());
        if let Some(t) = content_type {
            r = r.header("content-type", t);
        }
        r.send().await.unwrap()
    }

    /// Signs in; the cookie and the CSRF token.
    async fn session(&self, token: &str) -> (String, String) {
        let r = self.sign_in(token).await;
        assert_eq!(r.status(), 200);
        let cookie = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let cookie = cookie.split(';').next().unwrap().to_owned();
        let body: serde_json::Value = body_of(r).await;
        (cookie, body["csrfToken"].as_str().unwrap().to_owned())
    }

    async fn set_open(
        &self,
        cookie: Option<&str>,
        csrf: Option<&str>,
        name: &str,
        open: bool,
    ) -> reqwest::Response {
        self.post_action(
            cookie,
            csrf,
            name,
            Some("application/json"),
            serde_json::json!({ "open": open }).to_string(),
        )
        .await
    }

    /// POSTs `body` as it is to `name`'s distro-open action, with the `content_type` given.
    async fn post_action(
        &self,
        cookie: Option<&str>,
        csrf: Option<&str>,
        name: &str,
        content_type: Option<&str>,
        body: String,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .post(format!(
                "{}/api/namespaces/live/streaminstances/{name}/distro-open",
                self.base
            ))
            .body(body);
        if let Some(t) = content_type {
            r = r.header("content-type", t);
        }
        if let Some(c) = cookie {
            r = r.header(header::COOKIE, c);
        }
        if let Some(t) = csrf {
            r = r.header("x-csrf-token", t);
        }
        r.send().await.unwrap()
    }
}

#[tokio::test]
async fn reading_needs_a_session_unless_anonymous_read() {
    let h = harness(Settings::default()).await;
    for path in ["/api/state", "/api/events", "/api/session"] {
        let r = h
            .http
            .get(format!("{}{path}", h.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        let body: serde_json::Value = body_of(r).await;
        assert!(body["error"].is_string(), "{body}");
        assert_eq!(body["anonymousRead"], false);
    }
    let r = h.sign_in("stolen").await;
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = body_of(r).await;
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("invalid bearer token"),
        "{body}"
    );
    // A made-up cookie is no session.
    let r = h
        .http
        .get(format!("{}/api/state", h.base))
        .header(header::COOKIE, format!("cvs_session={}", "0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let (cookie, csrf) = h.session("bob-token").await;
    let r = h
        .http
        .get(format!("{}/api/session", h.base))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = body_of(r).await;
    assert_eq!(body["user"], "bob");
    assert_eq!(body["csrfToken"], csrf.as_str());
    let r = h
        .http
        .get(format!("{}/api/state", h.base))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = body_of(r).await;
    assert_eq!(body["clusters"][0]["name"], "ev");
    // Signed out, the cookie is worthless.
    let r = h
        .http
        .delete(format!("{}/api/session", h.base))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = h
        .http
        .get(format!("{}/api/state", h.base))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let open = harness(Settings {
        anonymous_read: true,
        ..Default::default()
    })
    .await;
    let r = open
        .http
        .get(format!("{}/api/state", open.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Actions still need a session.
    let r = open.set_open(None, None, "event-eu", false).await;
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = body_of(r).await;
    assert_eq!(body["anonymousRead"], true);
}

#[tokio::test]
async fn the_session_cookie_is_secure_only_when_asked() {
    for secure in [false, true] {
        let h = harness(Settings {
            secure_cookies: secure,
            ..Default::default()
        })
        .await;
        let r = h.sign_in("alice-token").await;
        assert_eq!(r.status(), 200);
        let opened = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
        let (cookie, _) = h.session("alice-token").await;
        let r = h
            .http
            .delete(format!("{}/api/session", h.base))
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let cleared = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
        for c in [&opened, &cleared] {
            let attributes: Vec<&str> = c.split(';').map(str::trim).collect();
            assert_eq!(attributes.contains(&"Secure"), secure, "{c}");
            assert!(attributes.contains(&"HttpOnly"), "{c}");
        }
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
    }
}

#[tokio::test]
async fn actions_need_the_csrf_token_and_rbac_and_name_the_person() {
    let h = harness(Settings::default()).await;
    let (alice, alice_csrf) = h.session("alice-token").await;
    let (bob, bob_csrf) = h.session("bob-token").await;

    let r = h.set_open(Some(&alice), None, "event-eu", false).await;
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = body_of(r).await;
    assert_eq!(body["error"], "CSRF token missing or wrong");
    let r = h
        .set_open(Some(&alice), Some(&bob_csrf), "event-eu", false)
        .await;
    assert_eq!(r.status(), 403, "another session's CSRF token");
    assert!(
        h.seen.reviews.lock().unwrap().is_empty(),
        "refused before any review"
    );

    let r = h
        .set_open(Some(&bob), Some(&bob_csrf), "event-eu", false)
        .await;
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = body_of(r).await;
    assert_eq!(
        body["error"],
        "bob may not patch streaminstances/event-eu in live"
    );
    assert!(
        h.seen.patches.lock().unwrap().is_empty(),
        "nothing patched for bob"
    );

    let r = h
        .set_open(Some(&alice), Some(&alice_csrf), "event-eu", false)
        .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = body_of(r).await;
    assert_eq!(
        body,
        serde_json::json!({"namespace": "live", "name": "event-eu", "distroOpen": false})
    );
    let patches = h.seen.patches.lock().unwrap().clone();
    assert_eq!(
        patches,
        [(
            "cvs-dashboard".to_owned(),
            serde_json::json!({"spec": {"distroOpen": false}})
        )]
    );
    let reviews = h.seen.reviews.lock().unwrap().clone();
    assert_eq!(reviews.last().unwrap()["spec"]["user"], "alice");
    assert_eq!(
        reviews.last().unwrap()["spec"]["resourceAttributes"]["verb"],
        "patch"
    );
    // The Event is recorded after the answer; wait for it.
    let mut events = Vec::new();
    for _ in 0..100 {
        events = h.seen.events.lock().unwrap().clone();
        if !events.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(events[0]["reason"], EVENT_REASON);
    assert_eq!(
        events[0]["note"],
        "alice set distroOpen=false from the dashboard"
    );
    assert_eq!(events[0]["regarding"]["name"], "event-eu");
    // ... and the timeline of its ClusteredStream names alice.
    let entry = h.feed.timeline_of("live/ev")[0].clone();
    assert_eq!(entry.user.as_deref(), Some("alice"));
    assert_eq!(entry.instance.as_deref(), Some("event-eu"));

    let r = h
        .set_open(Some(&alice), Some(&alice_csrf), "missing", true)
        .await;
    assert_eq!(r.status(), 404);
    let r = h
        .post_action(
            Some(&alice),
            Some(&alice_csrf),
            "event-eu",
            Some("application/json"),
            "{\"open\": \"no\"}".into(),
        )
        .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn only_json_bodies_are_taken_so_another_site_cannot_post_a_form() {
    let h = harness(Settings::default()).await;
    // What a form on another site can send without a preflight: valid JSON as text/plain.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let r = h.sign_in_as(content_type, "alice-token").await;
        assert_eq!(r.status(), 415, "sign-in with {content_type:?}");
        assert!(r.headers().get(header::SET_COOKIE).is_none());
    }
    assert_eq!(
        h.seen.requests.load(Ordering::SeqCst),
        0,
        "a refused sign-in reached the API server"
    );
    // A parameter after the media type is fine.
    let r = h
        .sign_in_as(Some("Application/JSON; charset=utf-8"), "alice-token")
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        h.seen.requests.load(Ordering::SeqCst) > 0,
        "a sign-in reviews its token: the count above proves nothing"
    );
    // The action too, even with the session and its CSRF token.
    let (cookie, csrf) = h.session("alice-token").await;
    let r = h
        .post_action(
            Some(&cookie),
            Some(&csrf),
            "event-eu",
            Some("text/plain"),
            "{\"open\": false}".into(),
        )
        .await;
    assert_eq!(r.status(), 415);
    assert!(h.seen.patches.lock().unwrap().is_empty(), "patched anyway");
}

#[tokio::test]
async fn bodies_are_bounded() {
    let h = harness(Settings::default()).await;
    let r = h.sign_in(&"x".repeat(MAX_BODY_BYTES + 1)).await;
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = body_of(r).await;
    assert!(
        body["error"].as_str().unwrap().contains("larger than"),
        "{body}"
    );
}

#[tokio::test]
async fn assets_are_served_with_their_types() {
    let h = harness(Settings::default()).await;
    for (path, ty) in [
        ("/", "text/html; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/app.css", "text/css; charset=utf-8"),
    ] {
        let r = h
            .http
            .get(format!("{}{path}", h.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()[header::CONTENT_TYPE], ty);
        assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    let index = h
        .http
        .get(format!("{}/", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !index.contains("<style") && !index.contains("style="),
        "no inline style"
    );
    assert!(
        !index.contains("<script>") && !index.contains("onclick") && !index.contains("javascript:"),
        "no inline script"
    );
    assert!(
        !index.contains("http://") && !index.contains("https://"),
        "nothing from elsewhere"
    );
    let r = h
        .http
        .get(format!("{}/api/nope", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// Many live pages and many state reads cost the API server nothing.
#[tokio::test]
async fn viewers_cost_the_api_server_nothing() {
    let h = harness(Settings {
        anonymous_read: true,
        max_sse_clients: 50,
        ..Default::default()
    })
    .await;
    let before = h.seen.requests.load(Ordering::SeqCst);
    let mut streams = Vec::new();
    for _ in 0..50 {
        let r = h
            .http
            .get(format!("{}/api/events", h.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
        streams.push(r);
    }
    // One more is refused, with a reason.
    let r = h
        .http
        .get(format!("{}/api/events", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = body_of(r).await;
    assert!(
        body["error"].as_str().unwrap().contains("too many"),
        "{body}"
    );
    for r in &mut streams {
        let chunk = r.chunk().await.unwrap().unwrap();
        assert!(chunk.starts_with(b"event: state\ndata: {"), "{chunk:?}");
    }
    for _ in 0..100 {
        let r = h
            .http
            .get(format!("{}/api/state", h.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    h.feed.poke();
    for r in &mut streams {
        let chunk = r.chunk().await.unwrap().unwrap();
        assert!(chunk.starts_with(b"event: state\n"));
    }
    assert_eq!(h.seen.requests.load(Ordering::SeqCst), before);
    // A closed page frees its slot.
    streams.pop();
    let mut reopened = None;
    for _ in 0..100 {
        let r = h
            .http
            .get(format!("{}/api/events", h.base))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            reopened = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        reopened.is_some(),
        "the slot of a closed stream is given back"
    );
}

/// Updates are coalesced: a burst of changes is at most one message per [`feed::MIN_INTERVAL`].
#[tokio::test]
async fn a_burst_of_changes_is_coalesced() {
    let h = harness(Settings {
        anonymous_read: true,
        ..Default::default()
    })
    .await;
    let mut r = h
        .http
        .get(format!("{}/api/events", h.base))
        .send()
        .await
        .unwrap();
    let _first = r.chunk().await.unwrap().unwrap();
    let started = Instant::now();
    let pokes = {
        let feed = h.feed.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                feed.poke();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut messages = 0;
    while started.elapsed() < Duration::from_millis(1000) {
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(100), r.chunk()).await
        {
            messages += chunk.windows(12).filter(|w| w == b"event: state").count();
        }
    }
    pokes.await.unwrap();
    // 1 s of pokes every 5 ms: at most one message per 250 ms (plus one at the edge).
    assert!(messages <= 1000 / 250 + 1, "{messages} messages");
    assert!(messages >= 1, "{messages} messages");
}

/// A keep-alive comment goes out on its period even while snapshots keep coming.
#[tokio::test]
async fn event_streams_carry_a_keepalive_on_its_period() {
    let h = harness(Settings {
        anonymous_read: true,
        keepalive: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let mut r = h
        .http
        .get(format!("{}/api/events", h.base))
        .send()
        .await
        .unwrap();
    // Changes every 100 ms: a snapshot every 250 ms, more often than the keep-alive period.
    let pokes = {
        let feed = h.feed.clone();
        tokio::spawn(async move {
            loop {
                feed.poke();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_secs(3) {
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(200), r.chunk()).await
        {
            seen.extend_from_slice(&chunk);
        }
    }
    pokes.abort();
    let text = String::from_utf8(seen).unwrap();
    let keepalives = text.matches(": keepalive\n\n").count();
    assert!(keepalives >= 3, "{keepalives} keep-alives in 3 s at 300 ms");
    assert!(text.contains("event: state\n"), "snapshots too");
}
