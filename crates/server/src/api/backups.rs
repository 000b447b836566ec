//! Backup evidence over HTTP: the drill reports operators show auditors.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use domain::PlatformAction;
use engine::EngineError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::ApiError;
use crate::AppState;

/// One drill: which backup was restored into a scratch store, how long it
/// took, and what was checked.
#[derive(Serialize, ToSchema)]
pub struct DrillView {
    id: String,
    /// The archive restored; absent if none could be found.
    backup_id: Option<String>,
    target: String,
    /// RFC 3339.
    started_at: String,
    restore_seconds: f64,
    total_seconds: f64,
    from_scratch: bool,
    /// `success` or `failure`.
    outcome: String,
    /// Counts per table, audit chains verified, records decrypted, the
    /// failure if any (identifiers and counts only).
    #[schema(value_type = Object)]
    report: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct DrillList {
    drills: Vec<DrillView>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DrillQuery {
    /// At most this many, newest first (1 to 1000; 100 by default).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// Drill reports, newest first. Operators only, after 2FA.
#[utoipa::path(
    get,
    path = "/v1/platform/drills",
    tag = "backups",
    operation_id = "listDrills",
    params(DrillQuery),
    responses(
        (status = 200, description = "Drill reports, newest first", body = DrillList),
        (status = 400, description = "A query parameter is not valid"),
        (status = 403, description = "Not an operator, or two-factor authentication is required"),
    ),
)]
pub async fn drills(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<DrillQuery>,
) -> Result<Response, ApiError> {
    let auth = state.engine.authorize_platform(&p, PlatformAction::ViewBackups).map_err(EngineError::Denied)?;
    let rows = state.engine.drills(&auth, q.limit.unwrap_or(100)).await?;
    let drills = rows
        .into_iter()
        .map(|d| DrillView {
            id: d.id.to_string(),
            backup_id: d.backup_id.map(|b| b.to_string()),
            target: d.target,
            started_at: engine::rfc3339_micros(d.started_at),
            restore_seconds: d.restore_millis as f64 / 1000.0,
            total_seconds: d.total_millis as f64 / 1000.0,
            from_scratch: d.from_scratch,
            outcome: d.outcome,
            report: serde_json::from_str(&d.report).unwrap_or(serde_json::Value::Null),
        })
        .collect();
    Ok(Json(DrillList { drills }).into_response())
}
