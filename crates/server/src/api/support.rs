//! Support sessions over HTTP: operators ask, owners and admins approve,
//! deny or revoke, any member sees whether one is active.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use domain::{Action, PlatformAction, ProfileId};
use engine::{EngineError, SupportRequest, now_micros, rfc3339_micros as rfc3339};
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
    /// How long, from approval; at most the deployment's
    /// `support.max_duration_minutes` (240 by default).
    #[schema(minimum = 1, maximum = 240)]
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
    /// At most what was asked.
    #[schema(minimum = 1, maximum = 240)]
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
    let rows = state.engine.active_support_for(&auth).await?;
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

/// A grant of support access to one's own account.
#[derive(Serialize, ToSchema)]
#[schema(as = AccountGrant)]
pub(super) struct GrantView {
    id: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    expires_at: String,
    #[schema(format = DateTime)]
    ended_at: Option<String>,
    /// Whether an operator may act on the account now.
    active: bool,
}

impl From<&store::AccountGrantRow> for GrantView {
    fn from(g: &store::AccountGrantRow) -> Self {
        Self {
            id: g.id.to_string(),
            created_at: rfc3339(g.created_at),
            expires_at: rfc3339(g.expires_at),
            ended_at: g.ended_at.map(rfc3339),
            active: g.is_active(now_micros()),
        }
    }
}

/// A user's grants.
#[derive(Serialize, ToSchema)]
#[schema(as = AccountGrantList)]
pub(super) struct GrantList {
    grants: Vec<GrantView>,
}

/// How long a grant lasts.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    /// At most the deployment's `support.max_duration_minutes` (240 by
    /// default).
    #[schema(minimum = 1, maximum = 240)]
    #[serde(deserialize_with = "crate::json::whole_number")]
    duration_minutes: u64,
}

/// `POST /v1/me/support-grants`: the caller lets support act on their own
/// account for a while.
#[utoipa::path(
    post,
    path = "/v1/me/support-grants",
    tag = "support",
    operation_id = "grantAccountAccess",
    request_body = NewGrant,
    responses(
        (status = 201, description = "Granted; the caller is told by mail", body = GrantView),
        (status = 400, description = "The body is not valid JSON"),
        (status = 403, description = "Not for service accounts, nor for an operator acting as the user"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape, or the duration is out of bounds"),
    ),
)]
pub async fn grant(State(state): State<AppState>, Caller(p): Caller, body: RawJson) -> Result<Response, ApiError> {
    let body: NewGrant = body.parse()?;
    let duration = Duration::from_secs(body.duration_minutes.saturating_mul(60));
    let g = state.engine.grant_account_access(&p, duration).await?;
    Ok((StatusCode::CREATED, Json(GrantView::from(&g))).into_response())
}

/// `GET /v1/me/support-grants`: the caller's grants, newest first.
#[utoipa::path(
    get,
    path = "/v1/me/support-grants",
    tag = "support",
    operation_id = "listAccountGrants",
    responses(
        (status = 200, description = "The caller's grants", body = GrantList),
        (status = 403, description = "Not for service accounts"),
    ),
)]
pub async fn grants(State(state): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    let rows = state.engine.account_grants(&p).await?;
    Ok(Json(GrantList { grants: rows.iter().map(GrantView::from).collect() }).into_response())
}

/// The `{id}` of a grant.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct GrantPath {
    #[param(format = Uuid)]
    id: String,
}

/// `POST /v1/me/support-grants/{id}/end`: the caller ends a grant; anyone
/// acting under it is signed out at once.
#[utoipa::path(
    post,
    path = "/v1/me/support-grants/{id}/end",
    tag = "support",
    operation_id = "endAccountGrant",
    params(GrantPath),
    responses(
        (status = 204, description = "Ended"),
        (status = 403, description = "Not for service accounts"),
        (status = 404, description = "No such grant of the caller's, or it has already ended"),
    ),
)]
pub async fn end_grant(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: uuid::Uuid = id.parse().map_err(|_| EngineError::from(engine::SupportError::GrantNotActive))?;
    state.engine.end_account_grant(&p, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Which grant to act under.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActAs {
    #[schema(format = Uuid)]
    grant_id: String,
}

/// The session an operator acts in.
#[derive(Serialize, ToSchema)]
pub(super) struct ActingView {
    /// The account acted on.
    user_id: String,
    #[schema(format = DateTime)]
    expires_at: String,
}

/// `POST /v1/support/act-as`: an operator (after 2FA) starts acting as a
/// user who granted access; the answer sets a session cookie for that
/// account, which ends with the grant.
#[utoipa::path(
    post,
    path = "/v1/support/act-as",
    tag = "support",
    operation_id = "actAs",
    request_body = ActAs,
    responses(
        (status = 200, description = "Acting; the session cookie is set", body = ActingView,
            headers(("Set-Cookie" = String, description = "`__Host-strongroom_session` for the acted-on account"))),
        (status = 400, description = "The body is not valid JSON"),
        (status = 403, description = "Not an operator, or two-factor authentication is required"),
        (status = 404, description = "No such grant, or it has ended"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape"),
    ),
)]
pub async fn act_as(State(state): State<AppState>, Caller(p): Caller, body: RawJson) -> Result<Response, ApiError> {
    let auth = state.engine.authorize_platform(&p, PlatformAction::RequestSupport).map_err(EngineError::Denied)?;
    if p.acting_operator.is_some() {
        return Err(EngineError::Denied(engine::Denied::Forbidden).into());
    }
    let body: ActAs = body.parse()?;
    let id: uuid::Uuid = body.grant_id.parse().map_err(|_| EngineError::from(engine::SupportError::GrantNotActive))?;
    let (token, session, user) = state.engine.act_as(&auth, id).await?;
    let max_age = (session.expires_at - session.created_at).whole_seconds().max(0);
    let cookie = format!(
        "{}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}",
        super::auth::SESSION_COOKIE,
        token.reveal()
    );
    let mut res = Json(ActingView {
        user_id: user.id.to_string(),
        expires_at: session.expires_at.format(&Rfc3339).unwrap_or_default(),
    })
    .into_response();
    if let Ok(v) = http::HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(http::header::SET_COOKIE, v);
    }
    Ok(res)
}
