//! The OpenAPI 3.1 document of the API, served at `GET /v1/openapi.json`.
//! It is generated from the code: each handler's `#[utoipa::path]`
//! annotation, and the types the handlers serialise. The router is built
//! from the same annotations (`api::mod`'s `routes!` lists), so a route
//! cannot exist undocumented. What every route shares is added here, where
//! the layers that cause it are: the session requirement and its 401 on
//! protected routes, 413 on routes with a body, 503 (timeout, unavailable
//! backend) everywhere, and problem details as the body of every error
//! response that does not name another.

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use utoipa::OpenApi;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::Response as DocResponse;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Content, Ref, RefOr, Schema};

use crate::api;
use crate::problem::{self, Kind, Problem, ProblemBody, ViolationSchema};

/// The name of the session-cookie security scheme.
pub const SESSION_SCHEME: &str = "session";
/// The name of the bearer-token security scheme.
pub const BEARER_SCHEME: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strongroom",
        description = "A self-hosted, multi-tenant vault for personal data. Errors are RFC 9457 problem details \
                       (`application/problem+json`); the OAuth token and revocation endpoints answer RFC 6749 errors.",
        license(name = "AGPL-3.0-only", identifier = "AGPL-3.0-only"),
    ),
    components(schemas(ProblemBody, ViolationSchema)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "ops", description = "Health, readiness, metrics and this document"),
        (name = "auth", description = "Sign-in, sessions, passwords and two-factor authentication"),
        (name = "orgs", description = "Organisations, members, invitations and settings"),
        (name = "oauth", description = "OAuth 2.0 client credentials, service accounts and signing keys"),
        (name = "profiles", description = "Schemas, profiles, search and attachments"),
        (name = "audit", description = "The audit trail"),
    ),
)]
struct ApiDoc;

#[derive(Debug)]
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SESSION_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                api::SESSION_COOKIE,
                "The session cookie set by `POST /v1/auth/login`",
            ))),
        );
        components.add_security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A service account's access token from `POST /v1/oauth/token`"))
                    .build(),
            ),
        );
    }
}

/// The operations of a path, with their methods.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
}

fn problem_content() -> RefOr<Content> {
    RefOr::T(Content::new(Some(Ref::from_schema_name("Problem"))))
}

fn add_response(op: &mut Operation, status: &str, description: &str) {
    op.responses.responses.entry(status.to_owned()).or_insert_with(|| RefOr::T(DocResponse::new(description)));
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let (public, mut protected) = api::documented();
    for item in protected.paths.paths.values_mut() {
        for op in operations(item) {
            op.security = Some(vec![
                SecurityRequirement::new(SESSION_SCHEME, Vec::<String>::new()),
                SecurityRequirement::new(BEARER_SCHEME, Vec::<String>::new()),
            ]);
            add_response(op, "401", "No valid session or token");
            if let Some(RefOr::T(res)) = op.responses.responses.get_mut("401") {
                res.headers.entry("WWW-Authenticate".to_owned()).or_insert_with(|| {
                    RefOr::T(
                        HeaderBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                            .description(Some(format!("`{}`", api::CHALLENGE)))
                            .build(),
                    )
                });
            }
        }
    }
    let mut doc = ApiDoc::openapi();
    doc.merge(public);
    doc.merge(protected);
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            if op.request_body.is_some() {
                add_response(op, "413", "The request body exceeds the configured limit");
            }
            add_response(op, "503", "The request timed out, or the store, key service or blob store is unavailable");
            for (status, response) in &mut op.responses.responses {
                let RefOr::T(response) = response else { continue };
                if status.as_str() >= "400" && response.content.is_empty() {
                    response.content.insert(problem::CONTENT_TYPE.to_owned(), problem_content());
                }
            }
        }
    }
    doc
}

/// The document as JSON, for tests and tools.
pub fn document_json() -> serde_json::Value {
    serde_json::to_value(document()).unwrap_or_default()
}

static DOCUMENT: LazyLock<Vec<u8>> = LazyLock::new(|| serde_json::to_vec(&document()).unwrap_or_default());

/// `GET /v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "ops",
    operation_id = "openapi",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object, content_type = "application/json")),
)]
pub async fn openapi_json() -> Response {
    if DOCUMENT.is_empty() {
        return Problem::new(Kind::Internal).into_response();
    }
    let mut res = DOCUMENT.as_slice().into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// Schemas for values whose Rust types live in `domain`, built from the
/// same constants their parsers use.
pub mod schemas {
    use super::*;

    fn string() -> ObjectBuilder {
        ObjectBuilder::new().schema_type(Type::String)
    }

    /// `schema`, or `null` (which the parsers take as absent).
    fn or_null(schema: Schema) -> Schema {
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(schema)
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .into()
    }

    pub fn email_or_null() -> Schema {
        or_null(email())
    }

    pub fn org_name_or_null() -> Schema {
        or_null(org_name())
    }

    pub fn org_status_or_null() -> Schema {
        or_null(org_status())
    }

    pub fn display_name_or_null() -> Schema {
        or_null(display_name())
    }

    pub fn uuid_or_null() -> Schema {
        or_null(uuid())
    }

    pub fn uuid() -> Schema {
        string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))).into()
    }

    pub fn date_time() -> Schema {
        string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))).into()
    }

    /// Seconds since the Unix epoch.
    pub fn unix_time() -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .description(Some("seconds since the Unix epoch"))
            .into()
    }

    fn values_of(types: &[Type]) -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(
                ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::from_iter(types.iter().cloned())),
            ))
            .description(Some("values by field name, as the organisation's schema defines them"))
            .into()
    }

    /// A profile's values by field name.
    pub fn field_values() -> Schema {
        values_of(&[Type::String, Type::Number, Type::Boolean])
    }

    /// A merge patch of a profile's values: `null` removes one.
    pub fn field_values_or_null() -> Schema {
        values_of(&[Type::String, Type::Number, Type::Boolean, Type::Null])
    }

    /// A member's role.
    pub fn role() -> Schema {
        string().enum_values(Some(domain::Role::ALL.map(domain::Role::as_str))).into()
    }

    /// A member's role, or `null` for a service account.
    pub fn role_or_null() -> Schema {
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
            .enum_values(Some(domain::Role::ALL.map(|r| Some(r.as_str())).into_iter().chain([None])))
            .into()
    }

    pub fn org_status() -> Schema {
        string().enum_values(Some([domain::OrgStatus::Active, domain::OrgStatus::Suspended].map(|s| s.as_str()))).into()
    }

    /// An organisation's slug.
    pub fn slug() -> Schema {
        string()
            .min_length(Some(domain::OrgSlug::MIN))
            .max_length(Some(domain::OrgSlug::MAX))
            .pattern(Some("^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"))
            .into()
    }

    /// Up to `max` characters, not all whitespace, no control characters.
    fn printable(max: usize) -> Schema {
        const NOT_CONTROL: &str = r"[^\u0000-\u001f\u007f-\u009f]";
        const VISIBLE: &str = r"[^\s\u0000-\u001f\u007f-\u009f]";
        string()
            .min_length(Some(1))
            .max_length(Some(max))
            .pattern(Some(format!("^{NOT_CONTROL}*{VISIBLE}{NOT_CONTROL}*$")))
            .into()
    }

    /// A service account's name.
    pub fn account_name() -> Schema {
        printable(100)
    }

    /// An organisation's display name.
    pub fn org_name() -> Schema {
        printable(domain::OrgName::MAX)
    }

    /// A person's display name.
    pub fn display_name() -> Schema {
        printable(200)
    }

    /// An e-mail address.
    pub fn email() -> Schema {
        string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Email))).max_length(Some(domain::Email::MAX)).into()
    }

    /// A space-separated list of service-account scopes.
    pub fn scopes() -> Schema {
        let one = domain::Scope::ALL.map(|s| s.as_str().replace('-', "\\-")).join("|");
        string()
            .pattern(Some(format!("^\\s*({one})(\\s+({one}))*\\s*$")))
            .description(Some(format!(
                "space-separated scopes, from: {}",
                domain::Scope::ALL.map(domain::Scope::as_str).join(", ")
            )))
            .into()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

    /// Every (method, path) the document lists.
    fn documented() -> BTreeSet<(String, String)> {
        let doc = super::document_json();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for m in METHODS {
                if item.get(m).is_some() {
                    out.insert((m.to_owned(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn the_document_is_openapi_3_1_and_every_error_is_described() {
        let doc = super::document_json();
        assert_eq!(doc["openapi"], "3.1.0");
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for m in METHODS {
                let Some(op) = item.get(m) else { continue };
                let protected = !crate::api::PUBLIC.contains(&path.as_str());
                assert_eq!(op.get("security").is_some(), protected, "{m} {path}: security iff protected");
                assert!(op["operationId"].is_string() && op["tags"].is_array(), "{m} {path}: id and tag");
                for (status, res) in op["responses"].as_object().into_iter().flatten() {
                    assert!(res["description"].as_str().is_some_and(|d| !d.is_empty()), "{m} {path} {status}");
                    if status.as_str() >= "400" {
                        assert!(res["content"].is_object(), "{m} {path} {status}: error body");
                    }
                }
                assert!(op["responses"]["503"].is_object(), "{m} {path}: 503");
            }
        }
    }

    /// No route is added beside the annotated handlers: the router is built
    /// from the same `routes!` lists as the document. (The integration test
    /// `openapi::the_document_lists_exactly_the_routes_of_the_router` probes
    /// the running server for the rest.)
    #[test]
    fn every_route_goes_through_the_annotations() {
        let src = include_str!("api/mod.rs");
        assert!(!src.contains(".route("), "api/mod.rs adds a route without routes!(...)");
        assert!(documented().len() >= 40, "{:?}", documented());
    }
}
