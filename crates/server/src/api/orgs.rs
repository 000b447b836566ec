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
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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
    match state.engine.org_id_by_slug(&slug).await {
        Ok(id) => Ok(id),
        Err(EngineError::NoSuchOrg(_)) => Err(EngineError::Denied(Denied::NotFound).into()),
        // A store failure is not "no such organisation".
        Err(e) => Err(e.into()),
    }
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

/// The `{org}` path segment.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct OrgPath {
    /// The organisation's id or slug.
    #[param(min_length = 1)]
    org: String,
}

/// An organisation.
#[derive(Serialize, ToSchema)]
#[schema(as = Organisation)]
pub(super) struct OrgView {
    #[schema(schema_with = crate::openapi::schemas::uuid)]
    id: OrgId,
    #[schema(schema_with = crate::openapi::schemas::slug)]
    slug: OrgSlug,
    #[schema(schema_with = crate::openapi::schemas::org_name)]
    name: OrgName,
    #[schema(schema_with = crate::openapi::schemas::org_status)]
    status: domain::OrgStatus,
    #[schema(schema_with = crate::openapi::schemas::unix_time)]
    created_at: i64,
}

impl From<&domain::Organisation> for OrgView {
    fn from(org: &domain::Organisation) -> Self {
        Self {
            id: org.id,
            slug: org.slug.clone(),
            name: org.name.clone(),
            status: org.status,
            created_at: org.created_at.unix_timestamp(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct OrgList {
    orgs: Vec<OrgView>,
}

/// An organisation and the caller's role in it.
#[derive(Serialize, ToSchema)]
pub(super) struct OrgWithRole {
    org: OrgView,
    /// `null` for a service account.
    #[schema(schema_with = crate::openapi::schemas::role_or_null)]
    role: Option<Role>,
}

/// A member of an organisation.
#[derive(Serialize, ToSchema)]
pub(super) struct Member {
    #[schema(schema_with = crate::openapi::schemas::uuid)]
    user_id: UserId,
    #[schema(schema_with = crate::openapi::schemas::email)]
    email: Email,
    #[schema(value_type = String)]
    display_name: domain::DisplayName,
    #[schema(schema_with = crate::openapi::schemas::role)]
    role: Role,
}

#[derive(Serialize, ToSchema)]
pub(super) struct MemberList {
    members: Vec<Member>,
}

/// A member's role.
#[derive(Serialize, ToSchema)]
pub(super) struct MemberRole {
    #[schema(schema_with = crate::openapi::schemas::uuid)]
    user_id: UserId,
    #[schema(schema_with = crate::openapi::schemas::role)]
    role: Role,
}

/// An organisation's policies.
#[derive(Serialize, ToSchema)]
pub(super) struct OrgSettings {
    /// Everyone in the organisation must pass two-factor authentication.
    require_mfa: bool,
    /// Access tokens are encrypted (JWE) rather than only signed.
    encrypted_tokens: bool,
}

/// A pending invitation.
#[derive(Serialize, ToSchema)]
pub(super) struct Invitation {
    #[schema(schema_with = crate::openapi::schemas::uuid)]
    id: uuid::Uuid,
    #[schema(schema_with = crate::openapi::schemas::email)]
    email: Email,
    #[schema(schema_with = crate::openapi::schemas::role)]
    role: Role,
    #[schema(schema_with = crate::openapi::schemas::unix_time)]
    expires_at: i64,
}

impl From<&store::InvitationRecord> for Invitation {
    fn from(i: &store::InvitationRecord) -> Self {
        Self { id: i.id, email: i.email.clone(), role: i.role, expires_at: i.expires_at.unix_timestamp() }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct InvitationList {
    invitations: Vec<Invitation>,
}

/// An accepted invitation.
#[derive(Serialize, ToSchema)]
pub(super) struct Accepted {
    #[schema(schema_with = crate::openapi::schemas::uuid)]
    user_id: UserId,
    #[schema(schema_with = crate::openapi::schemas::uuid)]
    org_id: OrgId,
    #[schema(schema_with = crate::openapi::schemas::role)]
    role: Role,
}

/// `GET /v1/orgs`: operators see every organisation (names only, never
/// data); members see theirs.
#[utoipa::path(
    get,
    path = "/v1/orgs",
    tag = "orgs",
    operation_id = "listOrgs",
    responses((status = 200, description = "The organisations the caller may see", body = OrgList)),
)]
pub async fn list(State(state): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    let operator = match state.engine.authorize_platform(&p, PlatformAction::ListOrgs) {
        Ok(_) => true,
        Err(Denied::Forbidden) => false,
        // An operator without 2FA is told so, not shown an empty list.
        Err(e) => return Err(EngineError::Denied(e).into()),
    };
    let orgs = if operator {
        state.engine.list_orgs().await?
    } else {
        let mut orgs = Vec::new();
        for (id, _) in state.engine.memberships_of(p.user).await? {
            orgs.extend(state.engine.org(id).await?);
        }
        orgs
    };
    Ok(Json(OrgList { orgs: orgs.iter().map(OrgView::from).collect() }).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    #[schema(schema_with = crate::openapi::schemas::slug)]
    slug: OrgSlug,
    #[schema(schema_with = crate::openapi::schemas::org_name)]
    name: OrgName,
    /// An existing user to make the first owner.
    #[schema(schema_with = crate::openapi::schemas::email_or_null, required = false)]
    owner_email: Option<Email>,
}

/// `POST /v1/orgs`: operators create organisations (with their key).
#[utoipa::path(
    post,
    path = "/v1/orgs",
    tag = "orgs",
    operation_id = "createOrg",
    request_body = CreateOrg,
    responses(
        (status = 201, description = "Created, with version 1 of its key", body = OrgView),
        (status = 400, description = "The body is not valid JSON"),
        (status = 403, description = "Only operators (after two-factor authentication) create organisations"),
        (status = 404, description = "No user has `owner_email`"),
        (status = 409, description = "The slug is taken"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape"),
    ),
)]
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
    Ok((StatusCode::CREATED, Json(OrgView::from(&org))).into_response())
}

/// `GET /v1/orgs/{org}`.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}",
    tag = "orgs",
    operation_id = "showOrg",
    params(OrgPath),
    responses(
        (status = 200, description = "The organisation and the caller's role", body = OrgWithRole),
        (status = 403, description = "Two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
    ),
)]
pub async fn show(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ViewOrg).await?;
    let org = state.engine.org(auth.org()).await?.ok_or(EngineError::Denied(Denied::NotFound))?;
    Ok(Json(OrgWithRole { org: OrgView::from(&org), role: auth.role() }).into_response())
}

/// `GET /v1/orgs/{org}/members`.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/members",
    tag = "orgs",
    operation_id = "listMembers",
    params(OrgPath),
    responses(
        (status = 200, description = "The members", body = MemberList),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
    ),
)]
pub async fn members(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ListMembers).await?;
    let members = state.engine.members(&auth).await?;
    let members = members
        .into_iter()
        .map(|m| Member { user_id: m.user_id, email: m.email, display_name: m.display_name, role: m.role })
        .collect();
    Ok(Json(MemberList { members }).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    #[schema(schema_with = crate::openapi::schemas::email)]
    email: Email,
    #[schema(schema_with = crate::openapi::schemas::role)]
    role: Role,
}

/// `POST /v1/orgs/{org}/members`: adds an existing user by e-mail.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/members",
    tag = "orgs",
    operation_id = "addMember",
    params(OrgPath),
    request_body = AddMember,
    responses(
        (status = 201, description = "Added (or the role changed)", body = MemberRole),
        (status = 400, description = "The body is not valid JSON"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or no such user"),
        (status = 409, description = "The organisation would lose its last owner"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape"),
    ),
)]
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
    Ok((StatusCode::CREATED, Json(MemberRole { user_id: user.id, role: body.role })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    #[schema(schema_with = crate::openapi::schemas::role)]
    role: Role,
}

/// The `{org}` and `{user}` path segments.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct MemberPath {
    /// The organisation's id or slug.
    #[param(min_length = 1)]
    org: String,
    /// The member's user id.
    user: uuid::Uuid,
}

fn user_id(s: &str) -> Result<UserId, ApiError> {
    s.parse::<UserId>().map_err(|_| ApiError::Engine(EngineError::NoSuchUser))
}

/// `PUT /v1/orgs/{org}/members/{user}`: changes a member's role.
#[utoipa::path(
    put,
    path = "/v1/orgs/{org}/members/{user}",
    tag = "orgs",
    operation_id = "setMemberRole",
    params(MemberPath),
    request_body = SetRole,
    responses(
        (status = 200, description = "The role is set", body = MemberRole),
        (status = 400, description = "The body is not valid JSON"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or no such member"),
        (status = 409, description = "The organisation would lose its last owner"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape"),
    ),
)]
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
    Ok(Json(MemberRole { user_id: user, role: body.role }).into_response())
}

/// `DELETE /v1/orgs/{org}/members/{user}`.
#[utoipa::path(
    delete,
    path = "/v1/orgs/{org}/members/{user}",
    tag = "orgs",
    operation_id = "removeMember",
    params(MemberPath),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or no such member"),
        (status = 409, description = "The organisation would lose its last owner"),
    ),
)]
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
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/settings",
    tag = "orgs",
    operation_id = "getSettings",
    params(OrgPath),
    responses(
        (status = 200, description = "The organisation's policies", body = OrgSettings),
        (status = 403, description = "Two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
    ),
)]
pub async fn settings(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ViewOrg).await?;
    let require_mfa = state.engine.requires_mfa(&auth).await?;
    let encrypted_tokens = state.engine.encrypted_tokens(&auth).await?;
    Ok(Json(OrgSettings { require_mfa, encrypted_tokens }).into_response())
}

/// The policies to change; absent ones stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    require_mfa: Option<bool>,
    encrypted_tokens: Option<bool>,
}

/// `PUT /v1/orgs/{org}/settings`: owners and admins set the organisation's
/// policies.
#[utoipa::path(
    put,
    path = "/v1/orgs/{org}/settings",
    tag = "orgs",
    operation_id = "setSettings",
    params(OrgPath),
    request_body = Settings,
    responses(
        (status = 200, description = "The policies now in force", body = OrgSettings),
        (status = 400, description = "The body is not valid JSON"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape"),
    ),
)]
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
    Ok(Json(OrgSettings { require_mfa, encrypted_tokens }).into_response())
}

/// `GET /v1/orgs/{org}/invitations`: pending invitations.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/invitations",
    tag = "orgs",
    operation_id = "listInvitations",
    params(OrgPath),
    responses(
        (status = 200, description = "Pending invitations", body = InvitationList),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
    ),
)]
pub async fn invitations(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ListMembers).await?;
    let invitations = state.engine.invitations(&auth).await?.iter().map(Invitation::from).collect();
    Ok(Json(InvitationList { invitations }).into_response())
}

/// `POST /v1/orgs/{org}/invitations`: mails a single-use invitation.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/invitations",
    tag = "orgs",
    operation_id = "invite",
    params(OrgPath),
    request_body = AddMember,
    responses(
        (status = 201, description = "Invited; the invitation is on its way", body = Invitation),
        (status = 400, description = "The body is not valid JSON"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
        (status = 409, description = "Mail is not configured on this deployment"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape"),
    ),
)]
pub async fn invite(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    body: RawJson,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageMembers).await?;
    let body: AddMember = body.parse()?;
    let inv = state.engine.invite(&auth, &body.email, body.role).await?;
    Ok((StatusCode::CREATED, Json(Invitation::from(&inv))).into_response())
}

/// An invitation's token; for a new account, also a name and a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Acceptance {
    #[schema(value_type = String)]
    token: zeroize::Zeroizing<String>,
    #[schema(schema_with = crate::openapi::schemas::display_name_or_null, required = false)]
    display_name: Option<domain::DisplayName>,
    #[schema(value_type = Option<String>, format = Password)]
    password: Option<zeroize::Zeroizing<String>>,
}

/// `POST /v1/invitations/accept`: public; the token is the credential.
#[utoipa::path(
    post,
    path = "/v1/invitations/accept",
    tag = "orgs",
    operation_id = "acceptInvitation",
    request_body = Acceptance,
    responses(
        (status = 200, description = "Accepted: the user is a member", body = Accepted),
        (status = 400, description = "The body is not valid JSON, or the invitation is unknown, used or expired"),
        (status = 409, description = "A new account needs `display_name` and `password`"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape, or the password breaks the policy"),
    ),
)]
pub async fn accept_invitation(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Acceptance>,
) -> Result<Response, ApiError> {
    let new_account = match (body.display_name, &body.password) {
        (Some(name), Some(pw)) => Some((name, pw.as_str())),
        _ => None,
    };
    match state.engine.accept_invitation(&body.token, new_account).await {
        Ok((user, org, role)) => Ok(Json(Accepted { user_id: user, org_id: org, role }).into_response()),
        Err(EngineError::Auth(engine::AuthError::Unauthenticated)) => {
            Ok(crate::problem::Problem::new(crate::problem::Kind::InvalidToken)
                .with_detail("the invitation is unknown, used or expired")
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// What to change; absent members stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgChange {
    #[schema(schema_with = crate::openapi::schemas::org_name_or_null, required = false)]
    name: Option<OrgName>,
    #[schema(schema_with = crate::openapi::schemas::org_status_or_null, required = false)]
    status: Option<domain::OrgStatus>,
}

/// `PATCH /v1/orgs/{org}`: operators rename, suspend or resume an
/// organisation.
#[utoipa::path(
    patch,
    path = "/v1/orgs/{org}",
    tag = "orgs",
    operation_id = "updateOrg",
    params(OrgPath),
    request_body = OrgChange,
    responses(
        (status = 200, description = "The organisation as changed", body = OrgView),
        (status = 400, description = "The body is not valid JSON"),
        (status = 403, description = "Only operators (after two-factor authentication) change organisations"),
        (status = 404, description = "No such organisation"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape"),
    ),
)]
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
    Ok(Json(OrgView::from(&updated)).into_response())
}
