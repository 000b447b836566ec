//! Organisations and their members over HTTP. Every handler resolves the
//! `{org}` path segment (an id or a slug) and asks the engine to authorise
//! the action; a caller with no access sees exactly what a missing
//! organisation looks like.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use domain::{Action, Email, NewOrganisation, OrgId, OrgName, OrgSlug, PlatformAction, Role, UserId};
use engine::{Authorized, Denied, EngineError, Principal};
use http::StatusCode;
use serde::Deserialize;

use super::auth::Caller;
use super::error::ApiError;
use crate::AppState;
use crate::json::{ApiJson, RawJson};

/// The organisation a path segment names, by id or slug; an unknown one
/// looks like one the caller may not see.
pub(super) async fn resolve(state: &AppState, org: &str) -> Result<OrgId, ApiError> {
    if let Ok(id) = org.parse::<OrgId>() {
        return Ok(id);
    }
    let slug = OrgSlug::parse(org).map_err(|_| EngineError::Denied(Denied::NotFound))?;
    Ok(state.engine.org_by_slug(&slug).await.map_err(|_| EngineError::Denied(Denied::NotFound))?.id)
}

/// Finds the organisation named by a path segment and authorises the
/// action on it.
pub(super) async fn authorize(
    state: &AppState,
    p: &Principal,
    org: &str,
    action: Action,
) -> Result<Authorized, ApiError> {
    let id = resolve(state, org).await?;
    Ok(state.engine.authorize(p, id, action).await.map_err(EngineError::Denied)?)
}

fn org_json(org: &domain::Organisation) -> serde_json::Value {
    serde_json::json!({ "id": org.id, "slug": org.slug, "name": org.name, "status": org.status, "created_at": org.created_at.unix_timestamp() })
}

/// `GET /v1/orgs`: operators see every organisation (names only, never
/// data); members see theirs.
pub async fn list(State(state): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    let orgs = if state.engine.authorize_platform(&p, PlatformAction::ListOrgs).is_ok() {
        state.engine.list_orgs().await?
    } else {
        let mut orgs = Vec::new();
        for (id, _) in state.engine.memberships_of(p.user).await? {
            orgs.extend(state.engine.org(id).await?);
        }
        orgs
    };
    Ok(Json(serde_json::json!({ "orgs": orgs.iter().map(org_json).collect::<Vec<_>>() })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    slug: OrgSlug,
    name: OrgName,
    /// An existing user to make the first owner.
    owner_email: Option<Email>,
}

/// `POST /v1/orgs`: operators create organisations (with their key).
pub async fn create(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiJson(body): ApiJson<CreateOrg>,
) -> Result<Response, ApiError> {
    let auth = state.engine.authorize_platform(&p, PlatformAction::CreateOrg).map_err(EngineError::Denied)?;
    let owner = match &body.owner_email {
        Some(email) => Some(state.engine.user_by_email(email).await?.ok_or(EngineError::NoSuchUser)?),
        None => None,
    };
    let org = state.engine.create_org(&NewOrganisation { slug: body.slug, name: body.name }).await?;
    if let Some(owner) = owner {
        state.engine.put_member_as_operator(&auth, org.id, owner.id, Role::Owner).await?;
    }
    Ok((StatusCode::CREATED, Json(org_json(&org))).into_response())
}

/// `GET /v1/orgs/{org}`.
pub async fn show(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ViewOrg).await?;
    let org = state.engine.org(auth.org()).await?.ok_or(EngineError::Denied(Denied::NotFound))?;
    Ok(Json(serde_json::json!({ "org": org_json(&org), "role": auth.role() })).into_response())
}

/// `GET /v1/orgs/{org}/members`.
pub async fn members(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ListMembers).await?;
    let members = state.engine.members(&auth).await?;
    let list: Vec<_> = members
        .iter()
        .map(|m| serde_json::json!({ "user_id": m.user_id, "email": m.email, "display_name": m.display_name, "role": m.role }))
        .collect();
    Ok(Json(serde_json::json!({ "members": list })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    email: Email,
    role: Role,
}

/// `POST /v1/orgs/{org}/members`: adds an existing user by e-mail.
pub async fn add_member(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    body: RawJson,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageMembers).await?;
    let body: AddMember = body.parse()?;
    let user = state.engine.user_by_email(&body.email).await?.ok_or(EngineError::NoSuchUser)?;
    state.engine.put_member(&auth, user.id, body.role).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "user_id": user.id, "role": body.role }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    role: Role,
}

fn user_id(s: &str) -> Result<UserId, ApiError> {
    s.parse::<UserId>().map_err(|_| ApiError::Engine(EngineError::NoSuchUser))
}

/// `PUT /v1/orgs/{org}/members/{user}`: changes a member's role.
pub async fn set_member_role(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((org, user)): Path<(String, String)>,
    body: RawJson,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageMembers).await?;
    let body: SetRole = body.parse()?;
    let user = user_id(&user)?;
    if state.engine.memberships_of(user).await?.iter().all(|(o, _)| *o != auth.org()) {
        return Err(ApiError::Engine(EngineError::NoSuchUser));
    }
    state.engine.put_member(&auth, user, body.role).await?;
    Ok(Json(serde_json::json!({ "user_id": user, "role": body.role })).into_response())
}

/// `DELETE /v1/orgs/{org}/members/{user}`.
pub async fn remove_member(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((org, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageMembers).await?;
    if state.engine.remove_member(&auth, user_id(&user)?).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::Engine(EngineError::NoSuchUser))
    }
}

/// `GET /v1/orgs/{org}/settings`.
pub async fn settings(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ViewOrg).await?;
    let require_mfa = state.engine.requires_mfa(&auth).await?;
    let encrypted_tokens = state.engine.encrypted_tokens(&auth).await?;
    Ok(Json(serde_json::json!({ "require_mfa": require_mfa, "encrypted_tokens": encrypted_tokens })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    require_mfa: Option<bool>,
    encrypted_tokens: Option<bool>,
}

/// `PUT /v1/orgs/{org}/settings`: owners and admins set the organisation's
/// policies.
pub async fn set_settings(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    body: RawJson,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageSettings).await?;
    let body: Settings = body.parse()?;
    if let Some(on) = body.require_mfa {
        state.engine.set_require_mfa(&auth, on).await?;
    }
    if let Some(on) = body.encrypted_tokens {
        state.engine.set_encrypted_tokens(&auth, on).await?;
    }
    let require_mfa = state.engine.requires_mfa(&auth).await?;
    let encrypted_tokens = state.engine.encrypted_tokens(&auth).await?;
    Ok(Json(serde_json::json!({ "require_mfa": require_mfa, "encrypted_tokens": encrypted_tokens })).into_response())
}

/// `GET /v1/orgs/{org}/invitations`: pending invitations.
pub async fn invitations(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ListMembers).await?;
    let list: Vec<_> = state
        .engine
        .invitations(&auth)
        .await?
        .iter()
        .map(|i| serde_json::json!({ "id": i.id, "email": i.email, "role": i.role, "expires_at": i.expires_at.unix_timestamp() }))
        .collect();
    Ok(Json(serde_json::json!({ "invitations": list })).into_response())
}

/// `POST /v1/orgs/{org}/invitations`: mails a single-use invitation.
pub async fn invite(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    body: RawJson,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageMembers).await?;
    let body: AddMember = body.parse()?;
    let inv = state.engine.invite(&auth, &body.email, body.role).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": inv.id, "email": inv.email, "role": inv.role, "expires_at": inv.expires_at.unix_timestamp() })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acceptance {
    token: zeroize::Zeroizing<String>,
    display_name: Option<domain::DisplayName>,
    password: Option<zeroize::Zeroizing<String>>,
}

/// `POST /v1/invitations/accept`: public; the token is the credential.
pub async fn accept_invitation(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Acceptance>,
) -> Result<Response, ApiError> {
    let new_account = match (body.display_name, &body.password) {
        (Some(name), Some(pw)) => Some((name, pw.as_str())),
        _ => None,
    };
    match state.engine.accept_invitation(&body.token, new_account).await {
        Ok((user, org, role)) => {
            Ok(Json(serde_json::json!({ "user_id": user, "org_id": org, "role": role })).into_response())
        }
        Err(EngineError::Auth(engine::AuthError::Unauthenticated)) => {
            Ok(crate::problem::Problem::new(crate::problem::Kind::InvalidToken)
                .with_detail("the invitation is unknown, used or expired")
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgChange {
    name: Option<OrgName>,
    status: Option<domain::OrgStatus>,
}

/// `PATCH /v1/orgs/{org}`: operators rename, suspend or resume an
/// organisation.
pub async fn update(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    body: RawJson,
) -> Result<Response, ApiError> {
    let auth = state.engine.authorize_platform(&p, PlatformAction::ManageOrgs).map_err(EngineError::Denied)?;
    let id = resolve(&state, &org).await?;
    let body: OrgChange = body.parse()?;
    let updated = state.engine.update_org(&auth, id, body.name.as_ref(), body.status).await?;
    Ok(Json(org_json(&updated)).into_response())
}
