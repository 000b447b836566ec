//! Profiles over HTTP: the organisation's schema, its records (create,
//! read, merge-patch, delete, list and exact-match search), the
//! minimisation report, and a user's own records. Reads carry an `ETag`
//! (the record's revision); updates and deletes need it in `If-Match`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use domain::{Action, Classification, FieldDef, FieldType, OrgId, ProfileId, UserId};
use engine::{EngineError, PersonalDataReport, ProfileError, ProfileQuery, ProfileView};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::ApiError;
use super::orgs::{authorize, resolve};
use crate::AppState;
use crate::json::RawJson;
use crate::problem::{Kind, Problem};

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A profile. `fields` holds what the caller may see; `withheld` names the
/// fields it holds that the caller may not.
#[derive(Serialize, ToSchema)]
#[schema(as = Profile)]
pub(super) struct ProfileOut {
    #[schema(schema_with = crate::openapi::schemas::uuid)]
    id: ProfileId,
    /// Also the `ETag`: increases with every change.
    revision: i64,
    schema_version: u32,
    /// The person the record belongs to, who may read it.
    #[schema(schema_with = crate::openapi::schemas::uuid_or_null)]
    owner_user_id: Option<UserId>,
    #[schema(schema_with = crate::openapi::schemas::date_time)]
    created_at: String,
    /// Who created it: `user:<id>` or `service-account:<id>`.
    created_by: String,
    #[schema(schema_with = crate::openapi::schemas::date_time)]
    updated_at: String,
    updated_by: String,
    #[schema(schema_with = crate::openapi::schemas::field_values)]
    fields: Map<String, Value>,
    #[schema(value_type = Vec<String>)]
    withheld: Vec<domain::FieldName>,
}

impl From<&ProfileView> for ProfileOut {
    fn from(p: &ProfileView) -> Self {
        Self {
            id: p.id,
            revision: p.revision,
            schema_version: p.schema_version,
            owner_user_id: p.owner,
            created_at: rfc3339(p.created_at),
            created_by: p.created_by.clone(),
            updated_at: rfc3339(p.updated_at),
            updated_by: p.updated_by.clone(),
            fields: p.fields.iter().map(|(k, v)| (k.to_string(), v.to_json())).collect(),
            withheld: p.withheld.clone(),
        }
    }
}

/// A page of profiles.
#[derive(Serialize, ToSchema)]
#[schema(as = ProfilePage)]
pub(super) struct ProfilePage {
    profiles: Vec<ProfileOut>,
    /// Pass as `cursor` for the next page; `null` on the last.
    #[schema(schema_with = crate::openapi::schemas::uuid_or_null)]
    next_cursor: Option<ProfileId>,
}

/// What kind of value a field holds.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = FieldType)]
pub(super) enum FieldKind {
    /// One line of text, up to `max_length` (default 1,000) characters.
    String,
    /// Free text up to 65,536 characters; never searchable.
    Text,
    Email,
    /// Digits, spaces and `+ - ( ) .`, 4 to 32 characters.
    Phone,
    /// `YYYY-MM-DD`.
    Date,
    Number,
    Boolean,
    /// One of the field's `values`.
    Enum,
}

impl From<FieldType> for FieldKind {
    fn from(t: FieldType) -> Self {
        match t {
            FieldType::String => Self::String,
            FieldType::Text => Self::Text,
            FieldType::Email => Self::Email,
            FieldType::Phone => Self::Phone,
            FieldType::Date => Self::Date,
            FieldType::Number => Self::Number,
            FieldType::Boolean => Self::Boolean,
            FieldType::Enum => Self::Enum,
        }
    }
}

/// How a field's values are protected.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Classification)]
pub(super) enum Protection {
    /// Not personal: stored in clear, filterable.
    Plain,
    /// Identifies a person: encrypted.
    Personal,
    /// Special category data: encrypted, shown only to roles that may read sensitive fields.
    Sensitive,
}

impl From<Classification> for Protection {
    fn from(c: Classification) -> Self {
        match c {
            Classification::Plain => Self::Plain,
            Classification::Personal => Self::Personal,
            Classification::Sensitive => Self::Sensitive,
        }
    }
}

/// One field of a schema. Reading, every member but `values` and
/// `max_length` is present; writing, only `name` and `type` are required.
#[derive(Serialize, ToSchema)]
#[schema(as = FieldDef)]
pub(super) struct FieldDefinition {
    /// Lowercase letters, digits and `_`, starting with a letter; not a
    /// reserved name (`id`, `created_at`, `cursor`, ...).
    #[schema(value_type = String, pattern = "^[a-z][a-z0-9_]{0,62}$")]
    name: domain::FieldName,
    #[serde(rename = "type")]
    kind: FieldKind,
    /// The allowed values of an `enum` field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    values: Vec<String>,
    #[schema(required = false)]
    required: bool,
    /// `personal` unless given.
    #[schema(required = false)]
    classification: Protection,
    /// Exact-match search: a blind index for encrypted fields.
    #[schema(required = false)]
    searchable: bool,
    /// No longer written; stored values stay readable.
    #[schema(required = false)]
    deprecated: bool,
    /// For `string` fields: the most characters (default 1,000, at most 10,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = u32, minimum = 1, maximum = 10_000)]
    max_length: Option<u32>,
}

impl From<&FieldDef> for FieldDefinition {
    fn from(f: &FieldDef) -> Self {
        Self {
            name: f.name.clone(),
            kind: f.kind.into(),
            values: f.values.clone(),
            required: f.required,
            classification: f.classification.into(),
            searchable: f.searchable,
            deprecated: f.deprecated,
            max_length: f.max_length,
        }
    }
}

/// A version of an organisation's schema.
#[derive(Serialize, ToSchema)]
#[schema(as = Schema)]
pub(super) struct SchemaView {
    /// Also the `ETag`; 0 before the first `PUT`.
    version: u32,
    fields: Vec<FieldDefinition>,
}

impl From<&domain::Schema> for SchemaView {
    fn from(s: &domain::Schema) -> Self {
        Self { version: s.version, fields: s.fields.iter().map(FieldDefinition::from).collect() }
    }
}

/// One line of the personal-data report.
#[derive(Serialize, ToSchema)]
pub(super) struct FieldHolding {
    #[schema(value_type = String)]
    name: domain::FieldName,
    #[serde(rename = "type")]
    kind: FieldKind,
    classification: Protection,
    deprecated: bool,
    /// How many profiles hold a value for it.
    profiles: u64,
}

/// Which personal and sensitive fields an organisation holds.
#[derive(Serialize, ToSchema)]
pub(super) struct PersonalData {
    schema_version: u32,
    /// How many profiles there are.
    profiles: u64,
    fields: Vec<FieldHolding>,
}

/// A profile linked to the caller's account.
#[derive(Serialize, ToSchema)]
pub(super) struct MyProfile {
    #[schema(schema_with = crate::openapi::schemas::uuid)]
    org_id: OrgId,
    #[schema(schema_with = crate::openapi::schemas::uuid)]
    profile_id: ProfileId,
}

#[derive(Serialize, ToSchema)]
pub(super) struct MyProfiles {
    profiles: Vec<MyProfile>,
}

/// An attachment's description.
#[derive(Serialize, ToSchema)]
pub(super) struct Attachment {
    name: String,
    content_type: String,
    /// Bytes.
    size: u64,
    #[schema(schema_with = crate::openapi::schemas::date_time)]
    created_at: String,
    created_by: String,
}

impl From<&engine::AttachmentInfo> for Attachment {
    fn from(a: &engine::AttachmentInfo) -> Self {
        Self {
            name: a.name.clone(),
            content_type: a.content_type.clone(),
            size: a.size,
            created_at: rfc3339(a.created_at),
            created_by: a.created_by.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct AttachmentList {
    attachments: Vec<Attachment>,
}

/// The `{org}` and `{id}` path segments.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct ProfilePath {
    /// The organisation's id or slug.
    #[param(min_length = 1)]
    org: String,
    /// The profile's id.
    id: uuid::Uuid,
}

/// The `{org}`, `{id}` and `{name}` path segments.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct AttachmentPath {
    /// The organisation's id or slug.
    #[param(min_length = 1)]
    org: String,
    /// The profile's id.
    id: uuid::Uuid,
    /// The attachment's name: letters, digits, `.`, `-` and `_`, not starting with `.`.
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")]
    name: String,
}

fn etag(revision: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{revision}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn with_etag(status: StatusCode, p: &ProfileView) -> Response {
    let mut res = (status, Json(ProfileOut::from(p))).into_response();
    res.headers_mut().insert(header::ETAG, etag(p.revision));
    res
}

/// The revision an `If-Match` header names. Missing: 428. Anything but one
/// strong ETag of ours: 412.
fn if_match(headers: &HeaderMap) -> Result<i64, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Err(Problem::new(Kind::PreconditionRequired)
            .with_detail("send If-Match with the ETag of the version you read")
            .into());
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .and_then(|v| v.strip_prefix('"'))
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or_else(|| {
            Problem::new(Kind::PreconditionFailed)
                .with_detail("If-Match must be exactly the ETag you read, such as \"3\"")
                .into()
        })
}

fn profile_id(id: &str) -> Result<ProfileId, ApiError> {
    id.parse().map_err(|_| EngineError::Profile(ProfileError::NotFound).into())
}

/// `GET /v1/orgs/{org}/schema`.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/schema",
    tag = "profiles",
    operation_id = "getSchema",
    params(super::orgs::OrgPath),
    responses(
        (status = 200, description = "The current schema", body = SchemaView,
            headers(("ETag" = String, description = "the version, quoted"))),
        (status = 403, description = "Two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
    ),
)]
pub async fn get_schema(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ViewOrg).await?;
    let schema = state.engine.schema(&auth).await?;
    let mut res = Json(SchemaView::from(schema.as_ref())).into_response();
    res.headers_mut().insert(header::ETAG, etag(i64::from(schema.version)));
    Ok(res)
}

/// The next version of a schema: every field, old and new.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PutSchema {
    #[schema(value_type = Vec<FieldDefinition>)]
    fields: Vec<FieldDef>,
}

/// An optional `If-Match` header.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(super) struct OptionalIfMatch {
    /// The `ETag` of the version read; a concurrent change is then a 412.
    #[serde(rename = "If-Match")]
    if_match: Option<String>,
}

/// A required `If-Match` header.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(super) struct IfMatch {
    /// The `ETag` of the version read, such as `"3"`.
    #[serde(rename = "If-Match")]
    if_match: String,
}

/// `PUT /v1/orgs/{org}/schema`: the next version. `If-Match` (the current
/// version's ETag) is optional here; with it, a concurrent change is a 412.
#[utoipa::path(
    put,
    path = "/v1/orgs/{org}/schema",
    tag = "profiles",
    operation_id = "putSchema",
    params(super::orgs::OrgPath, OptionalIfMatch),
    request_body = PutSchema,
    responses(
        (status = 200, description = "The new version", body = SchemaView,
            headers(("ETag" = String, description = "the version, quoted"))),
        (status = 400, description = "The body is not valid JSON"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
        (status = 409, description = "The schema changed meanwhile, or the organisation's keys were destroyed"),
        (status = 412, description = "`If-Match` names another version"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape, or the change would lose or mistype stored data; `errors` lists every problem"),
    ),
)]
pub async fn put_schema(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: RawJson,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageSchema).await?;
    let body: PutSchema = body.parse()?;
    let expected = match headers.contains_key(header::IF_MATCH) {
        true => Some(u32::try_from(if_match(&headers)?).map_err(|_| {
            Problem::new(Kind::PreconditionFailed).with_detail("If-Match names no version of the schema")
        })?),
        false => None,
    };
    let schema = state.engine.put_schema(&auth, body.fields, expected).await.map_err(|e| match e {
        EngineError::Profile(ProfileError::SchemaChanged) if expected.is_some() => ApiError::Problem(
            Problem::new(Kind::PreconditionFailed).with_detail("the schema has changed since you read it"),
        ),
        e => ApiError::Engine(e),
    })?;
    let mut res = Json(SchemaView::from(&schema)).into_response();
    res.headers_mut().insert(header::ETAG, etag(i64::from(schema.version)));
    Ok(res)
}

/// `GET /v1/orgs/{org}/schema/personal-data`: which personal and sensitive
/// fields the organisation holds, and in how many profiles.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/schema/personal-data",
    tag = "profiles",
    operation_id = "personalData",
    params(super::orgs::OrgPath),
    responses(
        (status = 200, description = "The personal and sensitive fields held, and in how many profiles", body = PersonalData),
        (status = 403, description = "Two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
    ),
)]
pub async fn personal_data(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ViewOrg).await?;
    let PersonalDataReport { schema_version, profiles, fields } = state.engine.personal_data_report(&auth).await?;
    let fields = fields
        .into_iter()
        .map(|f| FieldHolding {
            name: f.name,
            kind: f.kind.into(),
            classification: f.classification.into(),
            deprecated: f.deprecated,
            profiles: f.profiles,
        })
        .collect();
    Ok(Json(PersonalData { schema_version, profiles, fields }).into_response())
}

/// A new profile: values by field name, checked against the schema.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewProfile {
    #[schema(schema_with = crate::openapi::schemas::field_values)]
    fields: Map<String, Value>,
    /// The person the record belongs to, who may read it.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::schemas::uuid_or_null, required = false)]
    owner_user_id: Option<UserId>,
}

/// `POST /v1/orgs/{org}/profiles`.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/profiles",
    tag = "profiles",
    operation_id = "createProfile",
    params(super::orgs::OrgPath),
    request_body = NewProfile,
    responses(
        (status = 201, description = "Created", body = ProfileOut, headers(
            ("ETag" = String, description = "the revision, quoted"),
            ("Location" = String, description = "the new profile's URL"),
        )),
        (status = 400, description = "The body is not valid JSON"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
        (status = 409, description = "The organisation's keys were destroyed"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape or breaks the schema; `errors` lists every problem"),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    body: RawJson,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::WriteProfiles).await?;
    let body: NewProfile = body.parse()?;
    let view = state.engine.create_profile(&auth, &body.fields, body.owner_user_id).await?;
    let mut res = with_etag(StatusCode::CREATED, &view);
    let location = format!("/v1/orgs/{}/profiles/{}", auth.org(), view.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// `GET /v1/orgs/{org}/profiles/{id}`: readers of the organisation, or
/// the person the record belongs to.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/profiles/{id}",
    tag = "profiles",
    operation_id = "getProfile",
    params(ProfilePath),
    responses(
        (status = 200, description = "The profile, as far as the caller may see it", body = ProfileOut,
            headers(("ETag" = String, description = "the revision, quoted"))),
        (status = 403, description = "Two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such profile, or not visible to the caller"),
        (status = 409, description = "The organisation's keys were destroyed"),
        (status = 500, description = "The stored record failed its integrity check"),
    ),
)]
pub async fn show(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let org: OrgId = resolve(&state, &org).await?;
    let id = profile_id(&id)?;
    let view = state.engine.get_profile(&p, org, id).await?;
    Ok(with_etag(StatusCode::OK, &view))
}

/// Distinguishes a member that is absent from one that is `null`.
fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A JSON merge patch of a profile: `null` removes a field.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ProfilePatch {
    #[serde(default)]
    #[schema(schema_with = crate::openapi::schemas::field_values_or_null, required = false)]
    fields: Map<String, Value>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(schema_with = crate::openapi::schemas::uuid_or_null, required = false)]
    owner_user_id: Option<Option<UserId>>,
}

/// `PATCH /v1/orgs/{org}/profiles/{id}`: a JSON merge patch (RFC 7396) of
/// the profile; `null` removes a field.
#[utoipa::path(
    patch,
    path = "/v1/orgs/{org}/profiles/{id}",
    tag = "profiles",
    operation_id = "patchProfile",
    params(ProfilePath, IfMatch),
    request_body(content(
        (ProfilePatch = "application/merge-patch+json"),
        (ProfilePatch = "application/json"),
    )),
    responses(
        (status = 200, description = "The profile as changed", body = ProfileOut,
            headers(("ETag" = String, description = "the new revision, quoted"))),
        (status = 400, description = "The body is not valid JSON"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such profile"),
        (status = 409, description = "The organisation's keys were destroyed"),
        (status = 412, description = "`If-Match` is not the current revision"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape or breaks the schema; `errors` lists every problem"),
        (status = 428, description = "`If-Match` is missing"),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: RawJson,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::WriteProfiles).await?;
    let id = profile_id(&id)?;
    let body: ProfilePatch = body.parse()?;
    let revision = if_match(&headers)?;
    let view = state.engine.patch_profile(&auth, id, revision, &body.fields, body.owner_user_id).await?;
    Ok(with_etag(StatusCode::OK, &view))
}

/// `DELETE /v1/orgs/{org}/profiles/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/orgs/{org}/profiles/{id}",
    tag = "profiles",
    operation_id = "deleteProfile",
    params(ProfilePath, IfMatch),
    responses(
        (status = 204, description = "Deleted, with its attachments"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such profile"),
        (status = 412, description = "`If-Match` is not the current revision"),
        (status = 428, description = "`If-Match` is missing"),
    ),
)]
pub async fn remove(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::WriteProfiles).await?;
    let id = profile_id(&id)?;
    let revision = if_match(&headers)?;
    state.engine.delete_profile(&auth, id, revision).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/orgs/{org}/profiles?cursor=&limit=&<field>=<value>...`: a page
/// of profiles; every other parameter is an exact match on a field.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/profiles",
    tag = "profiles",
    operation_id = "listProfiles",
    params(
        super::orgs::OrgPath,
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Profiles per page (default 50)"),
        ("cursor" = Option<uuid::Uuid>, Query, description = "The `next_cursor` of the previous page"),
        ("filters" = Option<Object>, Query, style = Form, explode,
            description = "Exact matches, `<field>=<value>`, on plain fields and searchable ones"),
    ),
    responses(
        (status = 200, description = "A page of profiles", body = ProfilePage),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
        (status = 409, description = "The organisation's keys were destroyed"),
        (status = 422, description = "A bad `limit` or `cursor`, or a filter on a field that is unknown or not searchable"),
        (status = 500, description = "A stored record failed its integrity check"),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ReadProfiles).await?;
    let mut query = ProfileQuery::default();
    let bad = |path: &str, message: &str| {
        EngineError::Profile(ProfileError::Invalid(vec![domain::Violation {
            path: path.to_owned(),
            rule: "format",
            message: message.to_owned(),
        }]))
    };
    for (name, value) in params {
        match name.as_str() {
            "cursor" => query.after = Some(value.parse().map_err(|_| bad("/cursor", "cursor is not one we gave"))?),
            "limit" => query.limit = Some(value.parse().map_err(|_| bad("/limit", "limit must be a whole number"))?),
            _ => query.filters.push((name, value)),
        }
    }
    let page = state.engine.list_profiles(&auth, &query).await?;
    let profiles = page.items.iter().map(ProfileOut::from).collect();
    Ok(Json(ProfilePage { profiles, next_cursor: page.next }).into_response())
}

/// `GET /v1/me/profiles`: the records linked to the caller's own account.
#[utoipa::path(
    get,
    path = "/v1/me/profiles",
    tag = "profiles",
    operation_id = "myProfiles",
    responses((status = 200, description = "The profiles linked to the caller's account", body = MyProfiles)),
)]
pub async fn mine(State(state): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    let profiles = state
        .engine
        .my_profiles(&p)
        .await?
        .into_iter()
        .map(|(org_id, profile_id)| MyProfile { org_id, profile_id })
        .collect();
    Ok(Json(MyProfiles { profiles }).into_response())
}

/// `PUT /v1/orgs/{org}/profiles/{id}/attachments/{name}`: stores the body,
/// streamed and encrypted; 201 when new, 200 when it replaced one.
#[utoipa::path(
    put,
    path = "/v1/orgs/{org}/profiles/{id}/attachments/{name}",
    tag = "profiles",
    operation_id = "putAttachment",
    params(AttachmentPath),
    request_body(description = "The bytes, of any media type (stored as given in `Content-Type`)", content(
        ("application/octet-stream"),
        ("*/*"),
    )),
    responses(
        (status = 200, description = "Replaced an attachment of that name", body = Attachment),
        (status = 201, description = "Stored", body = Attachment),
        (status = 400, description = "The upload broke off; nothing was stored"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such profile"),
        (status = 409, description = "The organisation's keys were destroyed"),
        (status = 413, description = "The attachment exceeds the configured limit"),
        (status = 422, description = "The name or the content type is not valid"),
    ),
)]
pub async fn put_attachment(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((org, id, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::WriteProfiles).await?;
    let id = profile_id(&id)?;
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream");
    let (info, replaced) = state.engine.put_attachment(&auth, id, &name, content_type, body.into_data_stream()).await?;
    let status = if replaced { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(Attachment::from(&info))).into_response())
}

/// `GET /v1/orgs/{org}/profiles/{id}/attachments`: names, types, sizes.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/profiles/{id}/attachments",
    tag = "profiles",
    operation_id = "listAttachments",
    params(ProfilePath),
    responses(
        (status = 200, description = "The profile's attachments", body = AttachmentList),
        (status = 403, description = "Two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such profile, or not visible to the caller"),
        (status = 409, description = "The organisation's keys were destroyed"),
    ),
)]
pub async fn list_attachments(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let org = resolve(&state, &org).await?;
    let id = profile_id(&id)?;
    let list = state.engine.list_attachments(&p, org, id).await?;
    Ok(Json(AttachmentList { attachments: list.iter().map(Attachment::from).collect() }).into_response())
}

/// `GET /v1/orgs/{org}/profiles/{id}/attachments/{name}`: the bytes,
/// streamed as they are decrypted, always as a download.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/profiles/{id}/attachments/{name}",
    tag = "profiles",
    operation_id = "getAttachment",
    params(AttachmentPath),
    responses(
        (status = 200, description = "The bytes, with the media type they were stored with", content(("*/*")),
            headers(("Content-Disposition" = String, description = "always `attachment`"))),
        (status = 403, description = "Two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such profile or attachment, or not visible to the caller"),
        (status = 409, description = "The organisation's keys were destroyed"),
        (status = 422, description = "The name is not valid"),
        (status = 500, description = "The stored attachment failed its integrity check"),
    ),
)]
pub async fn get_attachment(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((org, id, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    use futures_util::TryStreamExt;
    let org = resolve(&state, &org).await?;
    let id = profile_id(&id)?;
    let (info, stream) = state.engine.get_attachment(&p, org, id, &name).await?;
    let body = axum::body::Body::from_stream(stream.map_err(|e| {
        tracing::error!(error = %e, "attachment download broke off");
        std::io::Error::other(e.to_string())
    }));
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&info.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    // The name's characters are restricted to [A-Za-z0-9._-]: safe to quote.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", info.name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // `X-Content-Type-Options: nosniff` comes with every response (lib.rs).
    Ok(res)
}

/// `DELETE /v1/orgs/{org}/profiles/{id}/attachments/{name}`.
#[utoipa::path(
    delete,
    path = "/v1/orgs/{org}/profiles/{id}/attachments/{name}",
    tag = "profiles",
    operation_id = "deleteAttachment",
    params(AttachmentPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such profile or attachment"),
        (status = 409, description = "The organisation's keys were destroyed"),
        (status = 422, description = "The name is not valid"),
    ),
)]
pub async fn delete_attachment(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((org, id, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::WriteProfiles).await?;
    let id = profile_id(&id)?;
    state.engine.delete_attachment(&auth, id, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
