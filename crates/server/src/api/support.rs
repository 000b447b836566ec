//! Support sessions over HTTP: operators ask, owners and admins approve,
//! deny or revoke, any member sees whether one is active.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use domain::{Action, PlatformAction, ProfileId};
use engine::{EngineError, SupportRequest};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use store::{SupportSessionRow, SupportStatus};
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::ApiError;
use super::orgs::{OrgPath, authorize, resolve};
use crate::AppState;
use crate::json::RawJson;

/// What an operator asks for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSupportSession {
    /// Why access is needed; shown to the organisation (1 to 500
    /// characters, one line).
    reason: String,
    /// `read`, or `read-write`.
    scope: Scope,
    /// Limit the session to these profiles; absent or empty: all.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    profiles: Vec<ProfileId>,
    /// How long, from approval; at most the configured maximum (240 by
    /// default).
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "crate::json::whole_number")]
    duration_minutes: u64,
}

#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Scope {
    Read,
    ReadWrite,
}

/// An approval, possibly for less time than asked.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "crate::json::optional_whole_number")]
    duration_minutes: Option<u64>,
}

/// A support session.
#[derive(Serialize, ToSchema)]
#[schema(as = SupportSession)]
pub(super) struct SessionView {
    id: String,
    operator_id: String,
    reason: String,
    scope: Scope,
    profiles: Vec<String>,
    duration_minutes: i64,
    /// `requested`, `active`, `expired`, `denied` or `revoked`.
    status: &'static str,
    #[schema(format = DateTime)]
    requested_at: String,
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    #[schema(format = DateTime)]
    ended_at: Option<String>,
}

/// A list of support sessions.
#[derive(Serialize, ToSchema)]
#[schema(as = SupportSessionList)]
pub(super) struct SessionList {
    sessions: Vec<SessionView>,
}

fn rfc3339(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn now_micros() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

impl From<&SupportSessionRow> for SessionView {
    fn from(r: &SupportSessionRow) -> Self {
        let status = match r.status {
            SupportStatus::Requested => "requested",
            SupportStatus::Approved if r.is_active(now_micros()) => "active",
            SupportStatus::Approved => "expired",
            SupportStatus::Denied => "denied",
            SupportStatus::Revoked => "revoked",
        };
        Self {
            id: r.id.to_string(),
            operator_id: r.operator.to_string(),
            reason: r.reason.clone(),
            scope: if r.write { Scope::ReadWrite } else { Scope::Read },
            profiles: r.profiles.iter().map(ToString::to_string).collect(),
            duration_minutes: r.duration_secs / 60,
            status,
            requested_at: rfc3339(r.requested_at),
            expires_at: r.expires_at.map(rfc3339),
            ended_at: r.ended_at.map(rfc3339),
        }
    }
}

/// The value of the `Strongroom-Support-Session` header: the session, its
/// end and its scope.
pub(super) fn notice(r: &SupportSessionRow) -> String {
    format!(
        "{}; expires={}; scope={}",
        r.id,
        r.expires_at.map(rfc3339).unwrap_or_default(),
        if r.write { "read-write" } else { "read" }
    )
}

/// `{org}` and `{id}` path segments.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct SessionPath {
    /// The organisation's id or slug.
    org: String,
    /// The support session's id.
    #[param(format = Uuid)]
    id: String,
}

/// A session id from the path; anything else names no session.
fn session_id(id: &str) -> Result<uuid::Uuid, ApiError> {
    id.parse().map_err(|_| EngineError::from(engine::SupportError::NotFound).into())
}

/// `POST /v1/orgs/{org}/support-sessions`: an operator asks for access.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/support-sessions",
    tag = "support",
    operation_id = "requestSupportSession",
    params(OrgPath),
    request_body = NewSupportSession,
    responses(
        (status = 201, description = "Requested; the organisation's owners and admins are told by mail", body = SessionView),
        (status = 400, description = "The body is not valid JSON"),
        (status = 403, description = "Not an operator, or two-factor authentication is required"),
        (status = 404, description = "No such organisation"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape, or a reason or duration out of bounds"),
    ),
)]
pub async fn request(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    body: RawJson,
) -> Result<Response, ApiError> {
    let auth = state.engine.authorize_platform(&p, PlatformAction::RequestSupport).map_err(EngineError::Denied)?;
    let org = resolve(&state, &org).await?;
    let body: NewSupportSession = body.parse()?;
    let req = SupportRequest {
        reason: body.reason,
        write: body.scope == Scope::ReadWrite,
        profiles: body.profiles,
        duration: Duration::from_secs(body.duration_minutes.saturating_mul(60)),
    };
    let row = state.engine.request_support(&auth, org, &req).await?;
    Ok((StatusCode::CREATED, Json(SessionView::from(&row))).into_response())
}

/// `GET /v1/orgs/{org}/support-sessions`: every request and session, newest
/// first (owners and admins).
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/support-sessions",
    tag = "support",
    operation_id = "listSupportSessions",
    params(OrgPath),
    responses(
        (status = 200, description = "The organisation's support sessions", body = SessionList),
        (status = 403, description = "The role does not allow this, or two-factor authentication is required"),
        (status = 404, description = "No such organisation, or not the caller's"),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageSupport).await?;
    let rows = state.engine.support_sessions(&auth).await?;
    Ok(Json(SessionList { sessions: rows.iter().map(SessionView::from).collect() }).into_response())
}

/// `GET /v1/orgs/{org}/support-sessions/active`: the sessions active now,
/// for any member to show.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/support-sessions/active",
    tag = "support",
    operation_id = "activeSupportSessions",
    params(OrgPath),
    responses(
        (status = 200, description = "The sessions active now (often none)", body = SessionList),
        (status = 403, description = "Two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
    ),
)]
pub async fn active(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ViewOrg).await?;
    let rows = state.engine.active_support(auth.org()).await?;
    Ok(Json(SessionList { sessions: rows.iter().map(SessionView::from).collect() }).into_response())
}

/// `POST /v1/orgs/{org}/support-sessions/{id}/approve`: an owner or admin
/// (after 2FA) grants it, possibly for less time; it starts now.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/support-sessions/{id}/approve",
    tag = "support",
    operation_id = "approveSupportSession",
    params(SessionPath),
    request_body(content = Approval, description = "Optional: a shorter duration"),
    responses(
        (status = 200, description = "Approved and active", body = SessionView),
        (status = 403, description = "The role does not allow this, or two-factor authentication is required"),
        (status = 404, description = "No such organisation or session"),
        (status = 409, description = "Already decided"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape"),
    ),
)]
pub async fn approve(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((org, id)): Path<(String, String)>,
    body: RawJson,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageSupport).await?;
    let id = session_id(&id)?;
    let approval: Approval = if body.is_empty() { Approval::default() } else { body.parse()? };
    let shorter = approval.duration_minutes.map(|m| Duration::from_secs(m.saturating_mul(60)));
    let row = state.engine.decide_support(&auth, id, true, shorter).await?;
    Ok(Json(SessionView::from(&row)).into_response())
}

/// `POST /v1/orgs/{org}/support-sessions/{id}/deny`: an owner or admin
/// refuses it.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/support-sessions/{id}/deny",
    tag = "support",
    operation_id = "denySupportSession",
    params(SessionPath),
    responses(
        (status = 200, description = "Denied", body = SessionView),
        (status = 403, description = "The role does not allow this, or two-factor authentication is required"),
        (status = 404, description = "No such organisation or session"),
        (status = 409, description = "Already decided"),
    ),
)]
pub async fn deny(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageSupport).await?;
    let row = state.engine.decide_support(&auth, session_id(&id)?, false, None).await?;
    Ok(Json(SessionView::from(&row)).into_response())
}

/// `POST /v1/orgs/{org}/support-sessions/{id}/revoke`: the operator, or an
/// owner or admin, ends it at once.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/support-sessions/{id}/revoke",
    tag = "support",
    operation_id = "revokeSupportSession",
    params(SessionPath),
    responses(
        (status = 204, description = "Ended"),
        (status = 403, description = "Two-factor authentication is required"),
        (status = 404, description = "No such organisation or session"),
        (status = 409, description = "It had already ended"),
    ),
)]
pub async fn revoke(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let org = resolve(&state, &org).await?;
    state.engine.revoke_support(&p, org, session_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
