//! The audit trail over HTTP: an organisation's trail for its admins and
//! auditors, and one profile's history (every change and every read, with
//! who did it) for its writers, auditors and the person it describes.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use domain::Action;
use engine::{AuditFilter, AuditView, EngineError, ProfileError};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::ApiError;
use super::orgs::{authorize, resolve};
use crate::AppState;

/// One audit entry: identifiers and field names, never values.
#[derive(Serialize, ToSchema)]
pub(super) struct AuditEntryOut {
    /// Position in the organisation's chain.
    seq: u64,
    #[schema(format = DateTime)]
    at: String,
    /// `user:<uuid>`, `service_account:<uuid>`, `system` or `anonymous`.
    actor: String,
    on_behalf_of: Option<String>,
    /// Such as `profile.read` or `profile.update`.
    action: String,
    /// Such as `profile:<uuid>`.
    target: String,
    /// `success`, `failure` or `denied`.
    outcome: String,
    /// The names of the fields changed or shown.
    fields: Vec<String>,
    /// The request that caused it (the response's `x-request-id`), if it
    /// came through the API.
    request_id: Option<String>,
}

/// A page of entries.
#[derive(Serialize, ToSchema)]
pub(super) struct AuditPage {
    entries: Vec<AuditEntryOut>,
    /// Pass as `after` for the next page; null at the end.
    next_after: Option<u64>,
}

fn page(entries: Vec<AuditView>, limit: u32) -> AuditPage {
    let full = entries.len() >= limit as usize;
    let next_after = if full { entries.last().map(|e| e.seq) } else { None };
    let entries = entries
        .into_iter()
        .map(|e| AuditEntryOut {
            seq: e.seq,
            at: engine::rfc3339_micros(e.at_micros),
            actor: e.actor,
            on_behalf_of: e.on_behalf_of,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            fields: e.fields,
            request_id: e.request_id,
        })
        .collect();
    AuditPage { entries, next_after }
}

/// Paging and filters for a trail.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct TrailQuery {
    /// Entries after this position (the previous page's `next_after`).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Entries per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Only this actor, such as `user:<uuid>`.
    actor: Option<String>,
    /// Only this action, such as `profile.read`.
    action: Option<String>,
    /// Only this target, such as `profile:<uuid>`.
    target: Option<String>,
    /// Only what was done for this, such as `support_session:<uuid>`.
    on_behalf_of: Option<String>,
    /// From this time (RFC 3339), inclusive.
    #[param(format = DateTime)]
    from: Option<String>,
    /// Until this time (RFC 3339), exclusive.
    #[param(format = DateTime)]
    until: Option<String>,
}

fn micros(value: Option<&str>, member: &str) -> Result<Option<i64>, ApiError> {
    let Some(v) = value else { return Ok(None) };
    let t = time::OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
        EngineError::Profile(ProfileError::Invalid(vec![domain::Violation {
            path: format!("/{member}"),
            rule: "format",
            message: format!("{member} must be an RFC 3339 time such as 2026-01-31T09:00:00Z"),
        }]))
    })?;
    Ok(Some(i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)))
}

fn after_of(after: Option<i64>) -> Result<u64, ApiError> {
    u64::try_from(after.unwrap_or(0)).map_err(|_| {
        EngineError::Profile(ProfileError::Invalid(vec![domain::Violation {
            path: "/after".into(),
            rule: "range",
            message: "after must be 0 or more".into(),
        }]))
        .into()
    })
}

fn limit_of(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(100) {
        n @ 1..=1000 => Ok(n),
        _ => Err(EngineError::Profile(ProfileError::Invalid(vec![domain::Violation {
            path: "/limit".into(),
            rule: "range",
            message: "limit must be 1 to 1000".into(),
        }]))
        .into()),
    }
}

/// `GET /v1/orgs/{org}/audit`: the organisation's trail.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/audit",
    tag = "audit",
    operation_id = "orgAudit",
    params(super::orgs::OrgPath, TrailQuery),
    responses(
        (status = 200, description = "A page of the organisation's audit trail, oldest first", body = AuditPage),
        (status = 400, description = "A query parameter is unknown or malformed"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
        (status = 422, description = "A bad `after`, `limit`, `from` or `until`"),
    ),
)]
pub async fn org_trail(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    Query(q): Query<TrailQuery>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ReadAudit).await?;
    let limit = limit_of(q.limit)?;
    let filter = AuditFilter {
        actor: q.actor,
        action: q.action,
        target: q.target,
        on_behalf_of: q.on_behalf_of,
        from_micros: micros(q.from.as_deref(), "from")?,
        until_micros: micros(q.until.as_deref(), "until")?,
    };
    let entries = state.engine.audit_log(&auth, &filter, after_of(q.after)?, limit).await?;
    Ok(Json(page(entries, limit)).into_response())
}

/// Paging for one record's history.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    /// Entries after this position (the previous page's `next_after`).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Entries per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// `GET /v1/orgs/{org}/profiles/{id}/history`: every change and read of a
/// profile.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/profiles/{id}/history",
    tag = "audit",
    operation_id = "profileHistory",
    params(
        super::orgs::OrgPath,
        ("id" = String, Path, description = "The profile's id"),
        HistoryQuery,
    ),
    responses(
        (status = 200, description = "Every change and every read of the profile, oldest first", body = AuditPage),
        (status = 400, description = "A query parameter is unknown or malformed"),
        (status = 403, description = "Two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such profile, or not one the caller may see the history of"),
        (status = 422, description = "A bad `after` or `limit`"),
    ),
)]
pub async fn profile_history(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((org, id)): Path<(String, String)>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let org = resolve(&state, &org).await?;
    let id = id.parse().map_err(|_| EngineError::Profile(ProfileError::NotFound))?;
    let limit = limit_of(q.limit)?;
    let entries = state.engine.profile_history(&p, org, id, after_of(q.after)?, limit).await?;
    Ok(Json(page(entries, limit)).into_response())
}
