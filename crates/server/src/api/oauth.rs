//! OAuth 2.0 for service accounts over HTTP: the token endpoint (client
//! credentials, RFC 6749 §4.4, answering errors in RFC 6749 §5.2 form as
//! OAuth clients expect), revocation (RFC 7009), the JWK Set of signing
//! keys, and the organisation routes that manage service accounts.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use domain::{Action, Scope, ServiceAccountId};
use engine::{EngineError, TokenError};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::auth::Caller;
use super::error::ApiError;
use super::orgs::authorize;
use crate::AppState;
use crate::json::RawJson;

#[derive(Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<Zeroizing<String>>,
    scope: Option<String>,
}

#[derive(Deserialize)]
pub struct RevokeForm {
    token: Option<Zeroizing<String>>,
    client_id: Option<String>,
    client_secret: Option<Zeroizing<String>>,
}

/// An RFC 6749 §5.2 error answer.
fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    let mut res =
        (status, Json(serde_json::json!({ "error": code, "error_description": description }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"strongroom\""));
    }
    res
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
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .map(Zeroizing::new);
    if let Some(pair) = basic {
        let (id, secret) = pair.split_once(':')?;
        return Some((id.to_owned(), Zeroizing::new(secret.to_owned())));
    }
    Some((form_id?, form_secret?))
}

/// `POST /v1/oauth/token`.
pub async fn token(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<TokenForm>) -> Response {
    if form.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only client_credentials is supported");
    }
    let Some((id, secret)) = client_credentials(&headers, form.client_id, form.client_secret) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    };
    match state.engine.issue_token(&id, &secret, form.scope.as_deref()).await {
        Ok(t) => Json(serde_json::json!({
            "access_token": t.access_token,
            "token_type": "Bearer",
            "expires_in": t.expires_in,
            "scope": domain::scope_list(&t.scopes),
        }))
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
pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<RevokeForm>) -> Response {
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
pub async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.engine.jwks().await?).into_response())
}

fn account_json(sa: &store::ServiceAccountRecord) -> serde_json::Value {
    serde_json::json!({
        "id": sa.id,
        "name": sa.name,
        "client_id": sa.client_id,
        "scopes": domain::scope_list(&sa.scopes),
        "created_at": sa.created_at.unix_timestamp(),
        "revoked": sa.revoked_at.is_some(),
    })
}

/// `GET /v1/orgs/{org}/service-accounts`.
pub async fn list_accounts(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageServiceAccounts).await?;
    let list = state.engine.service_accounts(&auth).await?;
    Ok(Json(serde_json::json!({ "service_accounts": list.iter().map(account_json).collect::<Vec<_>>() }))
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    name: String,
    scope: String,
}

/// `POST /v1/orgs/{org}/service-accounts`: the secret is in this answer only.
pub async fn create_account(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    body: RawJson,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageServiceAccounts).await?;
    let body: NewAccount = body.parse()?;
    let name = body.name.trim();
    let scopes = Scope::parse_list(&body.scope).filter(|s| !s.is_empty());
    let (Some(scopes), false) = (scopes, name.is_empty() || name.chars().count() > 100) else {
        return Ok(crate::problem::Problem::new(crate::problem::Kind::InvalidBody)
            .with_detail("name must be 1 to 100 characters and scope a space-separated list of known scopes")
            .into_response());
    };
    let (sa, secret) = state.engine.create_service_account(&auth, name, scopes).await?;
    let mut body = account_json(&sa);
    body["client_secret"] = serde_json::Value::String(secret.reveal().to_owned());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /v1/orgs/{org}/service-accounts/{id}`: its tokens stop working.
pub async fn revoke_account(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageServiceAccounts).await?;
    let id: ServiceAccountId = id.parse().map_err(|_| ApiError::Engine(EngineError::NoSuchUser))?;
    if state.engine.revoke_service_account(&auth, id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::Engine(EngineError::NoSuchUser))
    }
}
