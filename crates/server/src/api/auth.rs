//! Sign-in and sessions over HTTP: the session cookie (`__Host-`, HttpOnly,
//! Secure, SameSite=Strict, holding only an opaque random secret), the
//! `require_session` layer, and the caller's own account routes.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::SessionId;
use engine::Principal;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::error::{ApiError, unauthenticated};
use crate::AppState;
use crate::json::ApiJson;

/// Refuses service accounts on routes about a person's own account.
fn person(p: &Principal) -> Result<(), ApiError> {
    if p.service_account.is_some() {
        Err(ApiError::Engine(engine::EngineError::Denied(engine::Denied::Forbidden)))
    } else {
        Ok(())
    }
}

/// The session cookie. `__Host-` binds it to this host, over HTTPS, path /.
pub const SESSION_COOKIE: &str = "__Host-strongroom_session";

/// The authenticated caller, put in place by `require_session`. A handler
/// that takes it on a route without the layer always answers 401.
#[derive(Clone, Debug)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(unauthenticated)
    }
}

fn session_secret(headers: &HeaderMap) -> Option<Zeroizing<String>> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| Zeroizing::new(value.to_owned()))
}

/// The layer in front of every protected route: authenticates the session
/// cookie or answers 401.
pub async fn require_session(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")))
        .map(|(_, t)| Zeroizing::new(t.trim().to_owned()));
    let authenticated = match (bearer, session_secret(req.headers())) {
        (Some(token), _) => state.engine.authenticate_bearer(&token).await,
        (None, Some(secret)) => state.engine.authenticate(&secret).await,
        (None, None) => return unauthenticated(),
    };
    match authenticated {
        Ok(principal) => {
            req.extensions_mut().insert(Caller(principal.clone()));
            let mut res = next.run(req).await;
            support_notice(&state, &principal, &mut res).await;
            res
        }
        Err(engine::AuthError::Unauthenticated) => unauthenticated(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Tells members that a support session is active, on every answer:
/// `Strongroom-Support-Session: <id>; expires=<time>; scope=<scope>` (one
/// per active session, comma-separated): the sessions of every
/// organisation the caller belongs to, and an operator's own. Others learn
/// nothing.
async fn support_notice(state: &AppState, principal: &engine::Principal, res: &mut Response) {
    let sessions = state.engine.support_notices(principal).await.unwrap_or_default();
    if sessions.is_empty() {
        return;
    }
    let value = sessions.iter().map(super::support::notice).collect::<Vec<_>>().join(", ");
    if let Ok(value) = http::HeaderValue::from_str(&value) {
        res.headers_mut().insert("strongroom-support-session", value);
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LoginRequest)]
pub struct LoginRequest {
    email: String,
    #[schema(value_type = String, format = Password)]
    password: Zeroizing<String>,
}

/// A user account.
#[derive(Serialize, ToSchema)]
#[schema(as = User)]
pub(super) struct UserView {
    #[schema(format = Uuid)]
    id: String,
    #[schema(format = Email)]
    email: String,
    display_name: String,
    /// Platform staff: creates organisations, never sees their data.
    operator: bool,
}

impl From<&store::UserRecord> for UserView {
    fn from(u: &store::UserRecord) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.to_string(),
            display_name: u.display_name.as_str().to_owned(),
            operator: u.is_operator,
        }
    }
}

/// A signed-in session.
#[derive(Serialize, ToSchema)]
#[schema(as = Session)]
pub(super) struct SessionView {
    #[schema(format = Uuid)]
    id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    last_seen_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: time::OffsetDateTime,
    /// Whether this is the session of the request.
    current: bool,
}

/// What a session must do next about two-factor authentication.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum MfaNext {
    /// Enrolled: verify with `POST /v1/auth/mfa/verify`.
    Verify,
    /// Not enrolled: enrol with `POST /v1/auth/mfa/totp`.
    Enrol,
}

/// The answer to a successful sign-in.
#[derive(Serialize, ToSchema)]
#[schema(as = SignedIn)]
pub(super) struct LoginView {
    user: UserView,
    session: SessionView,
    mfa: MfaNext,
}

#[derive(Serialize, ToSchema)]
#[schema(as = SessionList)]
pub(super) struct SessionList {
    sessions: Vec<SessionView>,
}

/// A membership of the caller.
#[derive(Serialize, ToSchema)]
pub(super) struct Membership {
    #[schema(schema_with = crate::openapi::schemas::uuid)]
    org_id: domain::OrgId,
    /// The organisation's slug.
    #[schema(schema_with = crate::openapi::schemas::slug)]
    org: domain::OrgSlug,
    #[schema(schema_with = crate::openapi::schemas::role)]
    role: domain::Role,
}

/// Who the caller is and where they are a member.
#[derive(Serialize, ToSchema)]
#[schema(as = Me)]
pub(super) struct MeView {
    user: UserView,
    memberships: Vec<Membership>,
}

/// A plain status message.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub status: String,
}

/// A TOTP enrolment, shown once.
#[derive(Serialize, ToSchema)]
pub(super) struct TotpEnrolment {
    /// The shared secret, base32.
    #[schema(value_type = String)]
    secret: Zeroizing<String>,
    #[schema(value_type = String)]
    otpauth_uri: Zeroizing<String>,
    /// The otpauth URI as an SVG QR code.
    qr_svg: String,
}

/// Single-use recovery codes, shown once.
#[derive(Serialize, ToSchema)]
pub(super) struct RecoveryCodes {
    recovery_codes: Vec<String>,
}

fn session_view(s: &store::SessionRecord, current: Option<SessionId>) -> SessionView {
    SessionView {
        id: s.id.to_string(),
        created_at: s.created_at,
        last_seen_at: s.last_seen_at,
        expires_at: s.expires_at,
        current: Some(s.id) == current,
    }
}

/// The client's address, when the server knows it (not in-process tests).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

/// `POST /v1/auth/login`: e-mail and password in, session cookie out.
#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "auth",
    operation_id = "login",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = LoginView,
            headers(("Set-Cookie" = String, description = "`__Host-strongroom_session`: HttpOnly, Secure, SameSite=Strict"))),
        (status = 400, description = "The body is not valid JSON"),
        (status = 401, description = "Wrong e-mail address or password"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape"),
        (status = 429, description = "Too many failed sign-ins",
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    ),
)]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let (token, session, user) = state.engine.login(&body.email, &body.password, client).await?;
    let mfa_enrolled = state.engine.mfa_enrolled(user.id).await?;
    let max_age = (session.expires_at - session.created_at).whole_seconds().max(0);
    let cookie =
        format!("{SESSION_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}", token.reveal());
    let mut res = Json(LoginView {
        user: UserView::from(&user),
        session: session_view(&session, Some(session.id)),
        mfa: if mfa_enrolled { MfaNext::Verify } else { MfaNext::Enrol },
    })
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

/// A cookie that deletes the session cookie.
fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("__Host-strongroom_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// `POST /v1/auth/logout`: revokes the current session.
#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "auth",
    operation_id = "logout",
    responses(
        (status = 204, description = "Signed out; the cookie is cleared",
            headers(("Set-Cookie" = String, description = "clears the session cookie"))),
        (status = 403, description = "A service account has no session"),
    ),
)]
pub async fn logout(State(state): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    person(&p)?;
    state.engine.logout(&p).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    Ok(res)
}

/// `GET /v1/auth/sessions`: the caller's live sessions.
#[utoipa::path(
    get,
    path = "/v1/auth/sessions",
    tag = "auth",
    operation_id = "listSessions",
    responses(
        (status = 200, description = "The caller's live sessions", body = SessionList),
        (status = 403, description = "A service account has no sessions"),
    ),
)]
pub async fn list_sessions(State(state): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    person(&p)?;
    let sessions = state.engine.sessions(&p).await?;
    let views: Vec<SessionView> = sessions.iter().map(|s| session_view(s, Some(p.session))).collect();
    Ok(Json(SessionList { sessions: views }).into_response())
}

/// `DELETE /v1/auth/sessions/{id}`: revokes one of the caller's sessions.
#[utoipa::path(
    delete,
    path = "/v1/auth/sessions/{id}",
    tag = "auth",
    operation_id = "revokeSession",
    params(("id" = uuid::Uuid, Path, description = "The session's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "A service account has no sessions"),
        (status = 404, description = "No such session of the caller's"),
    ),
)]
pub async fn revoke_session(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    person(&p)?;
    let Ok(id) = id.parse::<SessionId>() else {
        return Ok(crate::problem::Problem::new(crate::problem::Kind::NotFound)
            .with_detail("no such session")
            .into_response());
    };
    if state.engine.revoke_session(&p, id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Ok(crate::problem::Problem::new(crate::problem::Kind::NotFound).with_detail("no such session").into_response())
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(value_type = String, format = Password)]
    current_password: Zeroizing<String>,
    #[schema(value_type = String, format = Password)]
    new_password: Zeroizing<String>,
}

/// `POST /v1/auth/password`: changes the caller's password; the caller's
/// other sessions are revoked.
#[utoipa::path(
    post,
    path = "/v1/auth/password",
    tag = "auth",
    operation_id = "changePassword",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; the caller's other sessions are revoked"),
        (status = 400, description = "The body is not valid JSON"),
        (status = 401, description = "The current password is wrong"),
        (status = 403, description = "A service account has no password"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape, or the new password breaks the policy"),
        (status = 429, description = "Too many failed attempts",
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    ),
)]
pub async fn change_password(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<Response, ApiError> {
    person(&p)?;
    state.engine.change_password(&p, &body.current_password, &body.new_password).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/me`: who the caller is and where they are a member.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "auth",
    operation_id = "me",
    responses(
        (status = 200, description = "The caller and their memberships", body = MeView),
        (status = 403, description = "A service account is not a person"),
    ),
)]
pub async fn me(State(state): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    person(&p)?;
    let user = state.engine.user_by_id(p.user).await?.ok_or(engine::AuthError::Unauthenticated)?;
    let mut memberships = Vec::new();
    for (org_id, role) in state.engine.memberships_of(p.user).await? {
        if let Some(org) = state.engine.org(org_id).await? {
            memberships.push(Membership { org_id: org.id, org: org.slug, role });
        }
    }
    Ok(Json(MeView { user: UserView::from(&user), memberships }).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordSetup {
    /// The single-use token.
    #[schema(value_type = String)]
    token: Zeroizing<String>,
    #[schema(value_type = String, format = Password)]
    new_password: Zeroizing<String>,
}

/// `POST /v1/auth/setup-password`: sets a new account's first password
/// with its single-use token. Public: the token is the credential.
#[utoipa::path(
    post,
    path = "/v1/auth/setup-password",
    tag = "auth",
    operation_id = "setupPassword",
    request_body = PasswordSetup,
    responses(
        (status = 204, description = "The password is set"),
        (status = 400, description = "The body is not valid JSON, or the token is unknown, used or expired"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape, or the password breaks the policy"),
    ),
)]
pub async fn setup_password(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PasswordSetup>,
) -> Result<Response, ApiError> {
    use_setup_token(&state, &body, store::SetupPurpose::Initial).await
}

/// `POST /v1/auth/password-reset/complete`: sets a new password with the
/// single-use token sent by mail; every session of the account ends.
#[utoipa::path(
    post,
    path = "/v1/auth/password-reset/complete",
    tag = "auth",
    operation_id = "completePasswordReset",
    request_body = PasswordSetup,
    responses(
        (status = 204, description = "The password is set; every session of the account ended"),
        (status = 400, description = "The body is not valid JSON, or the token is unknown, used or expired"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape, or the password breaks the policy"),
    ),
)]
pub async fn complete_reset(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PasswordSetup>,
) -> Result<Response, ApiError> {
    use_setup_token(&state, &body, store::SetupPurpose::Reset).await
}

async fn use_setup_token(
    state: &AppState,
    body: &PasswordSetup,
    purpose: store::SetupPurpose,
) -> Result<Response, ApiError> {
    match state.engine.complete_password_setup(&body.token, purpose, &body.new_password).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(engine::EngineError::Auth(engine::AuthError::Unauthenticated)) => {
            Ok(crate::problem::Problem::new(crate::problem::Kind::InvalidToken)
                .with_detail("the token is unknown, used or expired")
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    email: String,
}

/// `POST /v1/auth/password-reset`: mails a reset token to the account's
/// stored address, if there is such an account. The answer is the same
/// either way.
#[utoipa::path(
    post,
    path = "/v1/auth/password-reset",
    tag = "auth",
    operation_id = "requestPasswordReset",
    request_body = ResetRequest,
    responses(
        (status = 202, description = "Accepted, whether or not the account exists", body = Status),
        (status = 400, description = "The body is not valid JSON"),
        (status = 409, description = "Mail is not configured on this deployment"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape"),
        (status = 429, description = "Too many requests",
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    ),
)]
pub async fn request_reset(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<ResetRequest>,
) -> Result<Response, ApiError> {
    state.engine.request_password_reset(&body.email, client).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Status {
            status: "if an account has this address, a message with a reset token is on its way".to_owned(),
        }),
    )
        .into_response())
}

/// `POST /v1/auth/mfa/totp`: starts TOTP enrolment; the secret, otpauth URI
/// and QR code are shown this once.
#[utoipa::path(
    post,
    path = "/v1/auth/mfa/totp",
    tag = "auth",
    operation_id = "enrolTotp",
    responses(
        (status = 200, description = "The secret, shown once; confirm it with a first code", body = TotpEnrolment),
        (status = 403, description = "A service account has no second factor"),
        (status = 409, description = "Already enrolled"),
    ),
)]
pub async fn enrol_totp(State(state): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    person(&p)?;
    let e = state.engine.enrol_totp(&p).await?;
    Ok(Json(TotpEnrolment { secret: e.secret_base32, otpauth_uri: e.uri, qr_svg: e.qr_svg }).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Code {
    /// A TOTP code, or (to verify) a recovery code.
    #[schema(value_type = String)]
    code: Zeroizing<String>,
}

/// `POST /v1/auth/mfa/totp/confirm`: confirms enrolment with a first code;
/// answers the recovery codes, once.
#[utoipa::path(
    post,
    path = "/v1/auth/mfa/totp/confirm",
    tag = "auth",
    operation_id = "confirmTotp",
    request_body = Code,
    responses(
        (status = 200, description = "Enrolled; the recovery codes, shown once", body = RecoveryCodes),
        (status = 400, description = "The body is not valid JSON, or the code is wrong, expired or used"),
        (status = 403, description = "A service account has no second factor"),
        (status = 409, description = "Not enrolling, or already enrolled"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape"),
    ),
)]
pub async fn confirm_totp(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiJson(body): ApiJson<Code>,
) -> Result<Response, ApiError> {
    person(&p)?;
    let codes = state.engine.confirm_totp(&p, &body.code).await?;
    Ok(Json(RecoveryCodes { recovery_codes: codes }).into_response())
}

/// `POST /v1/auth/mfa/verify`: passes the second factor for this session
/// with a TOTP code or a recovery code.
#[utoipa::path(
    post,
    path = "/v1/auth/mfa/verify",
    tag = "auth",
    operation_id = "verifyMfa",
    request_body = Code,
    responses(
        (status = 204, description = "This session passed two-factor authentication"),
        (status = 400, description = "The body is not valid JSON, or the code is wrong, expired or used"),
        (status = 403, description = "A service account has no second factor"),
        (status = 409, description = "Not enrolled"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape"),
        (status = 429, description = "Too many failed attempts",
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    ),
)]
pub async fn verify_mfa(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiJson(body): ApiJson<Code>,
) -> Result<Response, ApiError> {
    person(&p)?;
    state.engine.verify_mfa(&p, &body.code).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
