//! OAuth 2.0 for service accounts over HTTP: the token endpoint (client
//! credentials, RFC 6749 §4.4, answering errors in RFC 6749 §5.2 form as
//! OAuth clients expect), revocation (RFC 7009), the JWK Set of signing
//! keys, and the organisation routes that manage service accounts.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use domain::{Action, Scope, ServiceAccountId};
use engine::TokenError;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use zeroize::Zeroizing;

use super::auth::Caller;
use super::error::ApiError;
use super::orgs::authorize;
use crate::AppState;
use crate::json::RawJson;

/// A client-credentials token request (RFC 6749 §4.4.2). The client
/// authenticates with HTTP Basic or with `client_id` and `client_secret`.
#[derive(Deserialize, ToSchema)]
pub struct TokenForm {
    #[schema(value_type = String, pattern = "^client_credentials$")]
    grant_type: Option<String>,
    #[schema(value_type = String)]
    client_id: Option<String>,
    #[schema(value_type = String)]
    client_secret: Option<Zeroizing<String>>,
    /// The scopes wanted, space-separated; all of the account's by default.
    #[schema(schema_with = crate::openapi::schemas::scopes)]
    scope: Option<String>,
}

/// A token revocation request (RFC 7009), with the client's credentials as
/// in the token request.
#[derive(Deserialize, ToSchema)]
pub struct RevokeForm {
    #[schema(value_type = String)]
    token: Option<Zeroizing<String>>,
    #[schema(value_type = String)]
    client_id: Option<String>,
    #[schema(value_type = String)]
    client_secret: Option<Zeroizing<String>>,
}

/// An RFC 6749 §5.2 error.
#[derive(Serialize, ToSchema)]
pub(super) struct OAuthError {
    /// Such as `invalid_client`, `invalid_scope`, `unsupported_grant_type`.
    error: String,
    error_description: String,
}

/// An access token (RFC 6749 §5.1).
#[derive(Serialize, ToSchema)]
pub(super) struct TokenResponse {
    /// An EdDSA JWS, or a JWE when the organisation sets `encrypted_tokens`.
    access_token: String,
    #[schema(pattern = "^Bearer$")]
    token_type: &'static str,
    /// Seconds until it expires.
    expires_in: u64,
    /// The scopes granted, space-separated.
    scope: String,
}

/// One public signing key (RFC 8037 OKP key). Schema only: the engine
/// builds the keys.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct Jwk {
    kty: String,
    crv: String,
    x: String,
    kid: String,
    alg: String,
    #[serde(rename = "use")]
    use_: String,
}

/// The public keys that sign access tokens (RFC 7517 JWK Set). Schema only.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct Jwks {
    keys: Vec<Jwk>,
}

/// A service account.
#[derive(Serialize, ToSchema)]
pub(super) struct ServiceAccount {
    #[schema(schema_with = crate::openapi::schemas::uuid)]
    id: ServiceAccountId,
    name: String,
    client_id: String,
    #[schema(schema_with = crate::openapi::schemas::scopes)]
    scopes: String,
    #[schema(schema_with = crate::openapi::schemas::unix_time)]
    created_at: i64,
    revoked: bool,
}

/// A new service account, with its secret, shown this once.
#[derive(Serialize, ToSchema)]
pub(super) struct NewServiceAccount {
    #[serde(flatten)]
    account: ServiceAccount,
    #[schema(value_type = String)]
    client_secret: Zeroizing<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct ServiceAccountList {
    service_accounts: Vec<ServiceAccount>,
}

/// The `{org}` and `{id}` path segments.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct AccountPath {
    /// The organisation's id or slug.
    #[param(min_length = 1)]
    org: String,
    /// The service account's id.
    id: uuid::Uuid,
}

/// An RFC 6749 §5.2 error answer.
fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    let mut res = (status, Json(OAuthError { error: code.to_owned(), error_description: description.to_owned() }))
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"strongroom\""));
    }
    res
}

/// A body that is not a form, or repeats a parameter: an OAuth client
/// expects `invalid_request` (RFC 6749 §5.2), not problem details.
fn unparsable_form() -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "the body must be a form (application/x-www-form-urlencoded) naming each parameter once",
    )
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1) or the form.
fn client_credentials(
    headers: &HeaderMap,
    form_id: Option<String>,
    form_secret: Option<Zeroizing<String>>,
) -> Option<(String, Zeroizing<String>)> {
    use base64::Engine as _;
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic")))
        .and_then(|(_, b)| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .map(Zeroizing::new);
    let (id, secret) = match basic {
        Some(pair) => {
            let (id, secret) = pair.split_once(':')?;
            (id.to_owned(), Zeroizing::new(secret.to_owned()))
        }
        None => (form_id?, form_secret?),
    };
    Some((id, secret))
}

/// `POST /v1/oauth/token`.
#[utoipa::path(
    post,
    path = "/v1/oauth/token",
    tag = "oauth",
    operation_id = "token",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "An access token", body = TokenResponse),
        (status = 400, description = "A body that is not a form or repeats a parameter (`invalid_request`), \
                                     not a client-credentials request, or a scope the client does not have", body = OAuthError),
        (status = 401, description = "Client authentication failed", body = OAuthError,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"strongroom\"`"))),
        (status = 500, description = "The token could not be issued", body = OAuthError),
    ),
)]
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else { return unparsable_form() };
    if form.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only client_credentials is supported");
    }
    let Some((id, secret)) = client_credentials(&headers, form.client_id, form.client_secret) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    };
    match state.engine.issue_token(&id, &secret, form.scope.as_deref()).await {
        Ok(t) => Json(TokenResponse {
            access_token: t.access_token,
            token_type: "Bearer",
            expires_in: t.expires_in,
            scope: domain::scope_list(&t.scopes),
        })
        .into_response(),
        Err(TokenError::InvalidClient) => {
            oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed")
        }
        Err(TokenError::InvalidScope) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "a requested scope is not granted to this client")
        }
        Err(TokenError::Engine(e)) => ApiError::Engine(e).into_response(),
        Err(_) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the token could not be issued"),
    }
}

/// `POST /v1/oauth/revoke` (RFC 7009).
#[utoipa::path(
    post,
    path = "/v1/oauth/revoke",
    tag = "oauth",
    operation_id = "revokeToken",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or the token was not valid (RFC 7009 §2.2)"),
        (status = 400, description = "No token, or a body that is not a form or repeats a parameter (`invalid_request`)", body = OAuthError),
        (status = 401, description = "Client authentication failed", body = OAuthError,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"strongroom\"`"))),
        (status = 500, description = "The token could not be revoked", body = OAuthError),
    ),
)]
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<RevokeForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else { return unparsable_form() };
    let Some((id, secret)) = client_credentials(&headers, form.client_id, form.client_secret) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    };
    let Some(token) = form.token else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "token is required");
    };
    match state.engine.revoke_token(&id, &secret, &token).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(TokenError::InvalidClient) => {
            oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed")
        }
        Err(TokenError::Engine(e)) => ApiError::Engine(e).into_response(),
        Err(_) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the token could not be revoked"),
    }
}

/// `GET /.well-known/jwks.json`: the public keys that sign access tokens.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "oauth",
    operation_id = "jwks",
    responses((status = 200, description = "The JWK Set", body = Jwks)),
)]
pub async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.engine.jwks().await?).into_response())
}

impl From<&store::ServiceAccountRecord> for ServiceAccount {
    fn from(sa: &store::ServiceAccountRecord) -> Self {
        Self {
            id: sa.id,
            name: sa.name.clone(),
            client_id: sa.client_id.clone(),
            scopes: domain::scope_list(&sa.scopes),
            created_at: sa.created_at.unix_timestamp(),
            revoked: sa.revoked_at.is_some(),
        }
    }
}

/// `GET /v1/orgs/{org}/service-accounts`.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/service-accounts",
    tag = "oauth",
    operation_id = "listServiceAccounts",
    params(super::orgs::OrgPath),
    responses(
        (status = 200, description = "The organisation's service accounts", body = ServiceAccountList),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
    ),
)]
pub async fn list_accounts(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageServiceAccounts).await?;
    let list = state.engine.service_accounts(&auth).await?;
    Ok(Json(ServiceAccountList { service_accounts: list.iter().map(ServiceAccount::from).collect() }).into_response())
}

/// A service account to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// Up to 100 printable characters, not all blank; stored trimmed.
    #[schema(schema_with = crate::openapi::schemas::account_name)]
    name: String,
    #[schema(schema_with = crate::openapi::schemas::scopes)]
    scope: String,
}

/// `POST /v1/orgs/{org}/service-accounts`: the secret is in this answer only.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/service-accounts",
    tag = "oauth",
    operation_id = "createServiceAccount",
    params(super::orgs::OrgPath),
    request_body = NewAccount,
    responses(
        (status = 201, description = "Created; the client secret is shown this once", body = NewServiceAccount),
        (status = 400, description = "The body is not valid JSON"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape, a name that is blank or too long, or an unknown scope"),
    ),
)]
pub async fn create_account(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    body: RawJson,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageServiceAccounts).await?;
    let body: NewAccount = body.parse()?;
    // Up to 100 printable characters, not all blank; stored trimmed.
    let name_ok =
        body.name.chars().count() <= 100 && !body.name.chars().any(char::is_control) && !body.name.trim().is_empty();
    let name = body.name.trim();
    let scopes = Scope::parse_list(&body.scope).filter(|s| !s.is_empty());
    let (Some(scopes), true) = (scopes, name_ok) else {
        return Ok(crate::problem::Problem::new(crate::problem::Kind::InvalidBody)
            .with_detail("name must be 1 to 100 printable characters and scope a space-separated list of known scopes")
            .into_response());
    };
    let (sa, secret) = state.engine.create_service_account(&auth, name, scopes).await?;
    let body = NewServiceAccount {
        account: ServiceAccount::from(&sa),
        client_secret: Zeroizing::new(secret.reveal().to_owned()),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /v1/orgs/{org}/service-accounts/{id}`: its tokens stop working.
#[utoipa::path(
    delete,
    path = "/v1/orgs/{org}/service-accounts/{id}",
    tag = "oauth",
    operation_id = "revokeServiceAccount",
    params(AccountPath),
    responses(
        (status = 204, description = "Revoked: its tokens stop working"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or no such service account"),
    ),
)]
pub async fn revoke_account(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageServiceAccounts).await?;
    let no_such =
        || crate::problem::Problem::new(crate::problem::Kind::NotFound).with_detail("no such service account");
    let Ok(id) = id.parse::<ServiceAccountId>() else { return Err(no_such().into()) };
    if state.engine.revoke_service_account(&auth, id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(no_such().into())
    }
}
