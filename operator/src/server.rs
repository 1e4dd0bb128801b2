//! The operator's own HTTP endpoints: `/metrics` (Prometheus), `/healthz` (the controllers and
//! the probe engine are running and not stuck, and the leader election loop goes round),
//! `/readyz` (a leader: the caches have synced and no watch is failing; a standby: it can read
//! the leader election Lease; both answer 503 with the reason when they fail) and
//! `/steering/<namespace>/<name>.json`, the content steering manifest of a ClusteredStream as
//! last decided (for local use and tests; players load the copy published to S3 through the CDN).

use crate::controller::Health;
use crate::controller::leader;
use crate::controller::publish::SteeringStore;
use crate::metrics::Metrics;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
    election: leader::Status,
    steering: SteeringStore,
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn healthz(State(state): State<AppState>) -> (StatusCode, String) {
    let now = std::time::Instant::now();
    match state
        .election
        .liveness(now)
        .and_then(|()| state.health.liveness(now))
    {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

/// A standby is ready while it follows the Lease: readiness must not keep it out of a rollout
/// or a PodDisruptionBudget's count, and it is what takes over. A leader is ready once its
/// caches have synced.
async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    match state.election.standby_readiness(std::time::Instant::now()) {
        Some(Ok(what)) => return (StatusCode::OK, format!("ready ({what})\n")),
        Some(Err(why)) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        None => {}
    }
    match state.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn steering(
    State(state): State<AppState>,
    Path((namespace, file)): Path<(String, String)>,
) -> axum::response::Response {
    let found = file
        .strip_suffix(".json")
        .and_then(|name| state.steering.get(&namespace, name));
    match found {
        Some(bytes) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes.as_ref().clone(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no steering manifest for this ClusteredStream\n",
        )
            .into_response(),
    }
}

/// Binds the listener; returns it so the caller can log the real address (port 0 picks one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
    election: leader::Status,
    steering: SteeringStore,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(self::metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/steering/{namespace}/{file}", get(self::steering))
        .with_state(AppState {
            metrics,
            health,
            election,
            steering,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
