//! The operator's live dashboard, on its own listener (`--dashboard-addr`): every
//! ClusteredStream with its instances, pushed to the page by server-sent events, and the one
//! action a person takes during an event, closing or opening an instance.
//!
//! * Assets are embedded in the binary (`assets/`); nothing is loaded from elsewhere, and the
//!   Content-Security-Policy forbids inline script and style.
//! * Sign-in is the person's own Kubernetes bearer token, checked with a TokenReview; the
//!   session holds the reviewed identity, not the token. Reading needs a session unless
//!   `--dashboard-anonymous-read`; actions always do, with the session's CSRF token.
//! * An action is authorized by a SubjectAccessReview for `patch` on that StreamInstance as
//!   the person, then done as `kubectl patch` would (a merge patch of `spec.distroOpen`, field
//!   manager `cvs-dashboard`), with an Event naming the person. The cluster's RBAC decides.
//! * What the page shows comes from the operator's memory ([`feed`]); a viewer costs the API
//!   server nothing.

pub mod feed;
pub mod session;
pub mod snapshot;
pub mod timeline;

pub use feed::Feed;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use session::{Identity, Sessions};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// Field manager of the dashboard's patches.
pub const FIELD_MANAGER: &str = "cvs-dashboard";
/// Reason of the Event an action records.
pub const EVENT_REASON: &str = "DistroOpenChangedFromDashboard";
/// Largest request body accepted, in bytes (a bearer token is a few kB).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Live event streams at once, across every page.
pub const MAX_SSE_CLIENTS: usize = 2048;
/// TokenReviews in flight at once: sign-ins are the only requests that cost the API server
/// anything before a session exists.
pub const MAX_REVIEWS: usize = 8;
/// A comment on every event stream this often, so proxies keep it open.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// The Content-Security-Policy of every response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// How the dashboard is served.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// `GET /api/state` and `/api/events` without a session.
    pub anonymous_read: bool,
    /// Mark the session cookie `Secure` (served over TLS).
    pub secure_cookies: bool,
    /// Live event streams at once (0: [`MAX_SSE_CLIENTS`]).
    pub max_sse_clients: usize,
    /// Sessions at once (0: [`session::MAX_SESSIONS`]).
    pub max_sessions: usize,
    /// The keep-alive comment on event streams comes this often (zero: [`KEEPALIVE`]).
    pub keepalive: Duration,
}

struct App {
    settings: Settings,
    client: kube::Client,
    recorder: kube::runtime::events::Recorder,
    reporter: kube::runtime::events::Reporter,
    sessions: std::sync::Mutex<Sessions>,
    frames: watch::Receiver<feed::Frame>,
    feed: Feed,
    sse_clients: Arc<AtomicUsize>,
    reviews: Semaphore,
    /// True once the operator stops: event streams end, so the server can finish.
    stop: watch::Receiver<bool>,
}

type Shared = Arc<App>;

/// An error answer: `{"error": "..."}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json(status, &serde_json::json!({ "error": message.into() }))
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// The headers every response carries; API responses are never cached.
pub fn security_headers(path: &str, headers: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, CSP);
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    if path.starts_with("/api/") {
        set(headers, header::CACHE_CONTROL, "no-store");
    } else if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-cache");
    }
}

async fn headers_layer(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    security_headers(&path, response.headers_mut());
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The session a request's cookie names, if alive.
fn session_of(app: &App, headers: &HeaderMap) -> Option<(String, session::Session)> {
    let id = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| session::cookie_value(v, session::COOKIE))?
        .to_owned();
    let s = app
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .touch(&id, Instant::now())?;
    Some((id, s))
}

fn unauthenticated(app: &App) -> Response {
    json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({
            "error": "sign in with a Kubernetes bearer token first",
            "anonymousRead": app.settings.anonymous_read,
        }),
    )
}

/// Reading is allowed: a session, or anonymous read.
fn may_read(app: &App, headers: &HeaderMap) -> bool {
    app.settings.anonymous_read || session_of(app, headers).is_some()
}

async fn read_body(body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            )
        })
}

/// Whether the request says its body is JSON. Without a CORS preflight (which this server never
/// grants) another site's page can only send a form's types (`application/x-www-form-urlencoded`,
/// `multipart/form-data`, `text/plain`), so requiring JSON keeps a page elsewhere from posting
/// here from the user's browser: signing them in with the attacker's token (login CSRF), or, as
/// a second line behind the CSRF token, acting for them.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

fn not_json() -> Response {
    error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "the body must be JSON, sent with Content-Type: application/json",
    )
}

#[derive(serde::Deserialize)]
struct SignIn {
    token: String,
}

async fn post_session(State(app): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    if !is_json(&headers) {
        return not_json();
    }
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(SignIn { token }) = serde_json::from_slice::<SignIn>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the body must be {\"token\": \"<kubernetes bearer token>\"}",
        );
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return error(StatusCode::UNAUTHORIZED, "the token is empty");
    }
    let Ok(_permit) = app.reviews.try_acquire() else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many sign-ins at once; try again in a moment",
        );
    };
    let identity = match review_token(&app.client, &token).await {
        Ok(Ok(identity)) => identity,
        Ok(Err(why)) => return error(StatusCode::UNAUTHORIZED, why),
        Err(e) => {
            tracing::warn!(error = %e, "TokenReview failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the token could not be reviewed: {e}"),
            );
        }
    };
    let lifetime = session::jwt_lifetime(&token, jiff::Timestamp::now().as_second());
    drop(token);
    let (id, csrf) = match (session::random_token(), session::random_token()) {
        (Ok(id), Ok(csrf)) => (id, csrf),
        _ => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no random numbers from the operating system",
            );
        }
    };
    let opened = app
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .open(id.clone(), csrf, identity, lifetime, Instant::now())
        .map(|s| (s.identity.clone(), s.csrf.clone()));
    match opened {
        Ok((identity, csrf)) => {
            tracing::info!(user = %identity.user, "dashboard sign-in");
            let mut response = json(
                StatusCode::OK,
                &serde_json::json!({
                    "user": identity.user,
                    "groups": identity.groups,
                    "csrfToken": csrf,
                }),
            );
            if let Ok(v) =
                HeaderValue::from_str(&session::set_cookie(&id, app.settings.secure_cookies))
            {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        Err(e @ session::SessionError::Expired) => error(StatusCode::UNAUTHORIZED, e.to_string()),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn get_session(State(app): State<Shared>, headers: HeaderMap) -> Response {
    match session_of(&app, &headers) {
        Some((_, s)) => json(
            StatusCode::OK,
            &serde_json::json!({
                "user": s.identity.user,
                "groups": s.identity.groups,
                "csrfToken": s.csrf,
                "anonymousRead": app.settings.anonymous_read,
            }),
        ),
        None => unauthenticated(&app),
    }
}

async fn delete_session(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if let Some((id, _)) = session_of(&app, &headers) {
        app.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close(&id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(app.settings.secure_cookies)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn get_state(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if !may_read(&app, &headers) {
        return unauthenticated(&app);
    }
    let body = app.frames.borrow().json.clone();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Counts a live event stream while it lasts.
struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn get_events(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if !may_read(&app, &headers) {
        return unauthenticated(&app);
    }
    let max = match app.settings.max_sse_clients {
        0 => MAX_SSE_CLIENTS,
        n => n,
    };
    let taken = app
        .sse_clients
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        });
    if taken.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many live dashboard connections ({max}); try again later"),
        );
    }
    let slot = StreamSlot(app.sse_clients.clone());
    let mut frames = app.frames.clone();
    frames.mark_changed();
    let every = match app.settings.keepalive {
        d if d.is_zero() => KEEPALIVE,
        d => d,
    };
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = (frames, app.stop.clone(), keepalive, slot);
    let stream = futures::stream::unfold(
        state,
        |(mut frames, mut stop, mut keepalive, slot)| async move {
            let next = tokio::select! {
                changed = frames.changed() => match changed {
                    Ok(()) => frames.borrow_and_update().sse.clone(),
                    Err(_) => return None,
                },
                _ = keepalive.tick() => Bytes::from_static(b": keepalive\n\n"),
                _ = stop.wait_for(|s| *s) => return None,
            };
            Some((
                Ok::<Bytes, std::convert::Infallible>(next),
                (frames, stop, keepalive, slot),
            ))
        },
    );
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct SetOpen {
    open: bool,
}

/// A namespace or object name as Kubernetes allows it (a DNS subdomain).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

async fn post_distro_open(
    State(app): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some((_, session)) = session_of(&app, &headers) else {
        return unauthenticated(&app);
    };
    let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    if !session::csrf_matches(&session, sent) {
        return error(StatusCode::FORBIDDEN, "CSRF token missing or wrong");
    }
    if !is_json(&headers) {
        return not_json();
    }
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(SetOpen { open }) = serde_json::from_slice::<SetOpen>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the body must be {\"open\": true} or {\"open\": false}",
        );
    };
    if !valid_name(&namespace) || !valid_name(&name) {
        return error(
            StatusCode::NOT_FOUND,
            format!("no StreamInstance {name} in {namespace}"),
        );
    }
    let user = session.identity.user.clone();
    match may_patch(&app.client, &session.identity, &namespace, &name).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(
                user,
                namespace,
                name,
                open,
                "dashboard action refused by RBAC"
            );
            return error(
                StatusCode::FORBIDDEN,
                format!("{user} may not patch streaminstances/{name} in {namespace}"),
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "SubjectAccessReview failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the permission could not be checked: {e}"),
            );
        }
    }
    let api: kube::Api<crate::resources::StreamInstance> =
        kube::Api::namespaced(app.client.clone(), &namespace);
    let patch = serde_json::json!({ "spec": { "distroOpen": open } });
    let params = kube::api::PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let patched = match api
        .patch(&name, &params, &kube::api::Patch::Merge(&patch))
        .await
    {
        Ok(p) => p,
        Err(kube::Error::Api(s)) if s.code == 404 => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no StreamInstance {name} in {namespace}"),
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, namespace, name, "dashboard patch failed");
            return error(
                StatusCode::BAD_GATEWAY,
                format!("the API server refused the change: {e}"),
            );
        }
    };
    tracing::info!(
        user,
        namespace,
        name,
        open,
        "distroOpen set from the dashboard"
    );
    let note = format!("{user} set distroOpen={open} from the dashboard");
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Normal,
        reason: EVENT_REASON.into(),
        note: Some(note.clone()),
        action: "SetDistroOpen".into(),
        secondary: None,
    };
    crate::controller::record_event(&app.client, &app.recorder, &app.reporter, &patched, event)
        .await;
    app.feed.record(
        &format!("{namespace}/{}", patched.spec.clustered_stream),
        timeline::Entry::new(jiff::Timestamp::now(), EVENT_REASON, note)
            .instance(name.clone())
            .user(user),
    );
    json(
        StatusCode::OK,
        &serde_json::json!({ "namespace": namespace, "name": name, "distroOpen": open }),
    )
}

/// Errors talking to the API server on the dashboard's behalf.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("the API server answered without a status")]
    NoStatus,
}

/// Asks the API server who `token` belongs to: `Ok(Ok(identity))`, `Ok(Err(why))` when it is
/// not accepted, `Err` when the review itself failed.
async fn review_token(
    client: &kube::Client,
    token: &str,
) -> Result<Result<Identity, String>, ReviewError> {
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.to_owned(),
            audiences: None,
        },
        ..Default::default()
    };
    let api: kube::Api<TokenReview> = kube::Api::all(client.clone());
    let answer = api
        .create(&kube::api::PostParams::default(), &review)
        .await?;
    let status = answer.status.ok_or(ReviewError::NoStatus)?;
    Ok(identity_from(&status))
}

/// The identity a TokenReview accepted, or why it did not.
pub fn identity_from(
    status: &k8s_openapi::api::authentication::v1::TokenReviewStatus,
) -> Result<Identity, String> {
    let user = status
        .user
        .as_ref()
        .filter(|_| status.authenticated == Some(true));
    match user {
        Some(u) if u.username.as_deref().is_some_and(|n| !n.is_empty()) => Ok(Identity {
            user: u.username.clone().unwrap_or_default(),
            uid: u.uid.clone(),
            groups: u.groups.clone().unwrap_or_default(),
            extra: u.extra.clone().unwrap_or_default(),
        }),
        _ => Err(match status.error.as_deref() {
            Some(e) if !e.is_empty() => format!("the token was not accepted: {e}"),
            _ => "the token was not accepted".to_owned(),
        }),
    }
}

/// The SubjectAccessReview asking whether `who` may patch StreamInstance `namespace/name`.
pub fn access_review(
    who: &Identity,
    namespace: &str,
    name: &str,
) -> k8s_openapi::api::authorization::v1::SubjectAccessReview {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(who.user.clone()),
            uid: who.uid.clone(),
            groups: Some(who.groups.clone()),
            extra: (!who.extra.is_empty()).then(|| who.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some("patch".into()),
                group: Some("cvs.dev".into()),
                resource: Some("streaminstances".into()),
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                ..Default::default()
            }),
            non_resource_attributes: None,
        },
        ..Default::default()
    }
}

async fn may_patch(
    client: &kube::Client,
    who: &Identity,
    namespace: &str,
    name: &str,
) -> Result<bool, ReviewError> {
    use k8s_openapi::api::authorization::v1::SubjectAccessReview;
    let api: kube::Api<SubjectAccessReview> = kube::Api::all(client.clone());
    let answer = api
        .create(
            &kube::api::PostParams::default(),
            &access_review(who, namespace, name),
        )
        .await?;
    let status = answer.status.ok_or(ReviewError::NoStatus)?;
    Ok(status.allowed && status.denied != Some(true))
}

async fn not_found(request: Request) -> Response {
    if request.uri().path().starts_with("/api/") {
        error(StatusCode::NOT_FOUND, "no such endpoint")
    } else {
        (StatusCode::NOT_FOUND, "not found\n").into_response()
    }
}

/// The dashboard's routes.
pub fn router(
    settings: Settings,
    client: kube::Client,
    feed: Feed,
    frames: watch::Receiver<feed::Frame>,
    stop: watch::Receiver<bool>,
) -> Router {
    let reporter = kube::runtime::events::Reporter {
        controller: crate::controller::OPERATOR_NAME.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let sessions = match settings.max_sessions {
        0 => Sessions::default(),
        n => Sessions::new(n, session::IDLE_LIMIT),
    };
    let app = Arc::new(App {
        recorder: kube::runtime::events::Recorder::new(client.clone(), reporter.clone()),
        reporter,
        settings,
        client,
        sessions: std::sync::Mutex::new(sessions),
        frames,
        feed,
        sse_clients: Arc::new(AtomicUsize::new(0)),
        reviews: Semaphore::new(MAX_REVIEWS),
        stop,
    });
    // Expired sessions are dropped now and then, not only when the map fills.
    {
        let app = Arc::downgrade(&app);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                let Some(app) = app.upgrade() else { return };
                app.sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .sweep(Instant::now());
            }
        });
    }
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/api/session",
            post(post_session).get(get_session).delete(delete_session),
        )
        .route("/api/state", get(get_state))
        .route("/api/events", get(get_events))
        .route(
            "/api/namespaces/{namespace}/streaminstances/{name}/distro-open",
            post(post_distro_open),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn(headers_layer))
        .with_state(app)
}

/// Serves the dashboard on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests;
