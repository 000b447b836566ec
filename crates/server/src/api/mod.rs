//! The REST API under `/v1`: routes split into the few public ones and the
//! protected rest, which sit behind `require_session`. Deny by default: a
//! protected handler takes `Caller`, which only exists once the session
//! layer has authenticated the request.

mod audit;
mod auth;
mod backups;
mod error;
mod exports;
mod oauth;
mod orgs;
mod profiles;
mod retention;
mod support;

use axum::Router;
use axum::middleware;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{Caller, SESSION_COOKIE, Status};
pub use error::CHALLENGE;

use crate::{AppState, openapi, ops};

/// The routes anyone may call, by path. The route inventory test keeps this
/// list honest.
pub const PUBLIC: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/openapi.json",
    "/v1/auth/login",
    "/v1/auth/setup-password",
    "/v1/auth/password-reset",
    "/v1/auth/password-reset/complete",
    "/v1/oauth/token",
    "/v1/oauth/revoke",
    "/.well-known/jwks.json",
    "/v1/invitations/accept",
];

// Every route is declared here by its handler; the method and path come
// from the handler's `#[utoipa::path]` annotation, so the router and the
// OpenAPI document are built from one table and cannot disagree. Handlers
// of one path share a `routes!(...)`.

fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(auth::login))
        .routes(routes!(auth::setup_password))
        .routes(routes!(auth::request_reset))
        .routes(routes!(auth::complete_reset))
        .routes(routes!(oauth::token))
        .routes(routes!(oauth::revoke))
        .routes(routes!(oauth::jwks))
        .routes(routes!(orgs::accept_invitation))
}

fn protected() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(auth::logout))
        .routes(routes!(auth::list_sessions))
        .routes(routes!(auth::revoke_session))
        .routes(routes!(auth::change_password))
        .routes(routes!(auth::enrol_totp))
        .routes(routes!(auth::confirm_totp))
        .routes(routes!(auth::verify_mfa))
        .routes(routes!(auth::me))
        .routes(routes!(orgs::list, orgs::create))
        .routes(routes!(orgs::show, orgs::update))
        .routes(routes!(orgs::settings, orgs::set_settings))
        .routes(routes!(retention::get_retention, retention::set_retention))
        .routes(routes!(retention::sweep))
        .routes(routes!(oauth::list_accounts, oauth::create_account))
        .routes(routes!(oauth::revoke_account))
        .routes(routes!(orgs::invitations, orgs::invite))
        .routes(routes!(orgs::members, orgs::add_member))
        .routes(routes!(orgs::set_member_role, orgs::remove_member))
        .routes(routes!(profiles::get_schema, profiles::put_schema))
        .routes(routes!(profiles::personal_data))
        .routes(routes!(profiles::list, profiles::create))
        .routes(routes!(profiles::show, profiles::update, profiles::remove))
        .routes(routes!(profiles::list_attachments))
        .routes(routes!(profiles::get_attachment, profiles::put_attachment, profiles::delete_attachment))
        .routes(routes!(profiles::mine))
        .routes(routes!(exports::export_profiles))
        .routes(routes!(exports::export_audit))
        .routes(routes!(exports::import_profiles))
        .routes(routes!(audit::org_trail))
        .routes(routes!(audit::profile_history))
        .routes(routes!(support::list, support::request))
        .routes(routes!(support::active))
        .routes(routes!(support::approve))
        .routes(routes!(support::deny))
        .routes(routes!(support::revoke))
        .routes(routes!(support::grants, support::grant))
        .routes(routes!(support::end_grant))
        .routes(routes!(support::act_as))
        .routes(routes!(backups::drills))
}

/// Every route, public and protected; the protected ones behind
/// `require_session`.
pub fn routes(state: &AppState) -> Router<AppState> {
    let (public, _) = public().split_for_parts();
    let (protected, _) = protected().split_for_parts();
    public
        .merge(protected.route_layer(middleware::from_fn_with_state(state.clone(), auth::require_session)))
        .route_layer(middleware::from_fn(decodable_path))
}

/// A path whose percent-encoding does not decode to UTF-8 names nothing:
/// 404, rather than the 400 the path extractor would give.
async fn decodable_path(req: axum::extract::Request, next: middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    if decodes_to_utf8(req.uri().path()) {
        next.run(req).await
    } else {
        crate::problem::Problem::new(crate::problem::Kind::NotFound).with_detail("no such resource").into_response()
    }
}

fn decodes_to_utf8(path: &str) -> bool {
    percent_encoding::percent_decode_str(path).decode_utf8().is_ok()
}

/// The documented operations: (public, protected).
pub(crate) fn documented() -> (utoipa::openapi::OpenApi, utoipa::openapi::OpenApi) {
    (public().into_openapi(), protected().into_openapi())
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_that_do_not_decode_to_utf8_are_told_apart() {
        assert!(super::decodes_to_utf8("/v1/orgs/acme/profiles/%C3%A9t%C3%A9"));
        assert!(super::decodes_to_utf8("/v1/orgs/100%"));
        assert!(!super::decodes_to_utf8("/v1/orgs/%FF"));
        assert!(!super::decodes_to_utf8("/v1/orgs/%C3"));
    }
}
