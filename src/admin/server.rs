//! The HTTP server behind the `health_check` extension.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Telemetry;

pub fn router(t: Telemetry) -> Router {
    Router::new()
        .route(
            "/health/live",
            get(|| async { (StatusCode::OK, "{\"status\":\"alive\"}") }),
        )
        .route("/health/ready", get(ready))
        .route("/health", get(ready))
        .route("/", get(ready))
        .route("/metrics", get(metrics))
        .with_state(t)
}

async fn ready(State(t): State<Telemetry>) -> impl IntoResponse {
    let r = t.health.readiness();
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if r.ready { "ready" } else { "not ready" },
        "reasons": r.reasons,
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn metrics(State(t): State<Telemetry>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        t.metrics.render(),
    )
}
