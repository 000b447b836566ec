//! Operations endpoints: `/healthz` (the process is alive), `/readyz` (the
//! store answers) and `/metrics` (Prometheus text).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use crate::AppState;
use crate::api::Status;
use crate::problem::{Kind, Problem};

/// `GET /healthz`: the process is alive.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    operation_id = "healthz",
    responses((status = 200, description = "Alive: `{\"status\": \"ok\"}`", body = Status)),
)]
pub async fn healthz() -> Json<Status> {
    Json(Status { status: "ok".to_owned() })
}

/// `GET /readyz`: the store and the key backend answer.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready: `{\"status\": \"ready\"}`", body = Status),
        (status = 503, description = "The store (`not-ready`) or the key backend (`kms-unavailable`) does not answer"),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.engine.readiness().await {
        Ok(()) => Json(Status { status: "ready".to_owned() }).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            let kind = match e {
                engine::NotReady::Kms { .. } => Kind::KmsUnavailable,
                _ => Kind::NotReady,
            };
            Problem::new(kind).with_detail(e.to_string()).into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition format", body = String,
        content_type = "text/plain; version=0.0.4; charset=utf-8")),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.run_upkeep();
    let mut res = state.metrics.render().into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    res
}
