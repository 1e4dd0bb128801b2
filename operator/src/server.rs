//! The operator's own HTTP endpoints: `/metrics` (Prometheus), `/healthz` (the process is
//! alive), `/readyz` (the controllers' caches have synced) and
//! `/steering/<namespace>/<name>.json`, the content steering manifest of a ClusteredStream as
//! last decided (for local use and tests; players load the copy published to S3 through the CDN).

use crate::controller::Readiness;
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
    readiness: Readiness,
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

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet\n")
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
    readiness: Readiness,
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
            readiness,
            steering,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
