//! The REST API under `/v1`: routes split into the few public ones and the
//! protected rest, which sit behind `require_session`. Deny by default: a
//! protected handler takes `Caller`, which only exists once the session
//! layer has authenticated the request.

mod auth;
mod error;
mod oauth;
mod orgs;
mod profiles;

use axum::Router;
use axum::middleware;
use axum::routing::{delete, get, post, put};

pub use auth::{Caller, SESSION_COOKIE};

use crate::{AppState, ops};

/// The routes anyone may call, by path. The route inventory test keeps this
/// list honest.
pub const PUBLIC: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/auth/login",
    "/v1/auth/setup-password",
    "/v1/auth/password-reset",
    "/v1/auth/password-reset/complete",
    "/v1/oauth/token",
    "/v1/oauth/revoke",
    "/.well-known/jwks.json",
    "/v1/invitations/accept",
];

/// Every route, public and protected.
pub fn routes(state: &AppState) -> Router<AppState> {
    let public = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/auth/login", post(auth::login))
        .route("/v1/auth/setup-password", post(auth::setup_password))
        .route("/v1/auth/password-reset", post(auth::request_reset))
        .route("/v1/auth/password-reset/complete", post(auth::complete_reset))
        .route("/v1/oauth/token", post(oauth::token))
        .route("/v1/oauth/revoke", post(oauth::revoke))
        .route("/.well-known/jwks.json", get(oauth::jwks))
        .route("/v1/invitations/accept", post(orgs::accept_invitation));
    let protected = Router::new()
        .route("/v1/auth/logout", post(auth::logout))
        .route("/v1/auth/sessions", get(auth::list_sessions))
        .route("/v1/auth/sessions/{id}", delete(auth::revoke_session))
        .route("/v1/auth/password", post(auth::change_password))
        .route("/v1/auth/mfa/totp", post(auth::enrol_totp))
        .route("/v1/auth/mfa/totp/confirm", post(auth::confirm_totp))
        .route("/v1/auth/mfa/verify", post(auth::verify_mfa))
        .route("/v1/me", get(auth::me))
        .route("/v1/orgs", get(orgs::list).post(orgs::create))
        .route("/v1/orgs/{org}", get(orgs::show).patch(orgs::update))
        .route("/v1/orgs/{org}/settings", get(orgs::settings).put(orgs::set_settings))
        .route("/v1/orgs/{org}/service-accounts", get(oauth::list_accounts).post(oauth::create_account))
        .route("/v1/orgs/{org}/service-accounts/{id}", delete(oauth::revoke_account))
        .route("/v1/orgs/{org}/invitations", get(orgs::invitations).post(orgs::invite))
        .route("/v1/orgs/{org}/members", get(orgs::members).post(orgs::add_member))
        .route("/v1/orgs/{org}/members/{user}", put(orgs::set_member_role).delete(orgs::remove_member))
        .route("/v1/orgs/{org}/schema", get(profiles::get_schema).put(profiles::put_schema))
        .route("/v1/orgs/{org}/schema/personal-data", get(profiles::personal_data))
        .route("/v1/orgs/{org}/profiles", get(profiles::list).post(profiles::create))
        .route("/v1/orgs/{org}/profiles/{id}", get(profiles::show).patch(profiles::update).delete(profiles::remove))
        .route("/v1/orgs/{org}/profiles/{id}/attachments", get(profiles::list_attachments))
        .route(
            "/v1/orgs/{org}/profiles/{id}/attachments/{name}",
            get(profiles::get_attachment).put(profiles::put_attachment).delete(profiles::delete_attachment),
        )
        .route("/v1/me/profiles", get(profiles::mine))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_session));
    public.merge(protected)
}
