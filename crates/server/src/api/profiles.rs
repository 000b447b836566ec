//! Profiles over HTTP: the organisation's schema, its records (create,
//! read, merge-patch, delete, list and exact-match search), the
//! minimisation report, and a user's own records. Reads carry an `ETag`
//! (the record's revision); updates and deletes need it in `If-Match`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use domain::{Action, FieldDef, OrgId, ProfileId, UserId};
use engine::{EngineError, PersonalDataReport, ProfileError, ProfileQuery, ProfileView};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;

use super::auth::Caller;
use super::error::ApiError;
use super::orgs::{authorize, resolve};
use crate::AppState;
use crate::json::RawJson;
use crate::problem::{Kind, Problem};

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A profile as JSON. `fields` holds what the caller may see; `withheld`
/// names the fields it holds that the caller may not.
pub(super) fn profile_json(p: &ProfileView) -> Value {
    let fields: Map<String, Value> = p.fields.iter().map(|(k, v)| (k.to_string(), v.to_json())).collect();
    json!({
        "id": p.id,
        "revision": p.revision,
        "schema_version": p.schema_version,
        "owner_user_id": p.owner,
        "created_at": rfc3339(p.created_at),
        "created_by": p.created_by,
        "updated_at": rfc3339(p.updated_at),
        "updated_by": p.updated_by,
        "fields": fields,
        "withheld": p.withheld,
    })
}

fn etag(revision: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{revision}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn with_etag(status: StatusCode, p: &ProfileView) -> Response {
    let mut res = (status, Json(profile_json(p))).into_response();
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
pub async fn get_schema(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ViewOrg).await?;
    let schema = state.engine.schema(&auth).await?;
    let mut res = Json(json!({ "version": schema.version, "fields": schema.fields })).into_response();
    res.headers_mut().insert(header::ETAG, etag(i64::from(schema.version)));
    Ok(res)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutSchema {
    fields: Vec<FieldDef>,
}

/// `PUT /v1/orgs/{org}/schema`: the next version. `If-Match` (the current
/// version's ETag) is optional here; with it, a concurrent change is a 412.
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
        true => Some(u32::try_from(if_match(&headers)?).map_err(|_| Problem::new(Kind::PreconditionFailed))?),
        false => None,
    };
    let schema = state.engine.put_schema(&auth, body.fields, expected).await.map_err(|e| match e {
        EngineError::Profile(ProfileError::SchemaChanged) if expected.is_some() => ApiError::Problem(
            Problem::new(Kind::PreconditionFailed).with_detail("the schema has changed since you read it"),
        ),
        e => ApiError::Engine(e),
    })?;
    let mut res = Json(json!({ "version": schema.version, "fields": schema.fields })).into_response();
    res.headers_mut().insert(header::ETAG, etag(i64::from(schema.version)));
    Ok(res)
}

/// `GET /v1/orgs/{org}/schema/personal-data`: which personal and sensitive
/// fields the organisation holds, and in how many profiles.
pub async fn personal_data(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ViewOrg).await?;
    let PersonalDataReport { schema_version, profiles, fields } = state.engine.personal_data_report(&auth).await?;
    let fields: Vec<_> = fields
        .iter()
        .map(|f| {
            json!({
                "name": f.name, "type": f.kind, "classification": f.classification,
                "deprecated": f.deprecated, "profiles": f.profiles,
            })
        })
        .collect();
    Ok(Json(json!({ "schema_version": schema_version, "profiles": profiles, "fields": fields })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProfile {
    fields: Map<String, Value>,
    #[serde(default)]
    owner_user_id: Option<UserId>,
}

/// `POST /v1/orgs/{org}/profiles`.
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilePatch {
    #[serde(default)]
    fields: Map<String, Value>,
    #[serde(default, deserialize_with = "double_option")]
    owner_user_id: Option<Option<UserId>>,
}

/// `PATCH /v1/orgs/{org}/profiles/{id}`: a JSON merge patch (RFC 7396) of
/// the profile; `null` removes a field.
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
    let items: Vec<_> = page.items.iter().map(profile_json).collect();
    Ok(Json(json!({ "profiles": items, "next_cursor": page.next })).into_response())
}

/// `GET /v1/me/profiles`: the records linked to the caller's own account.
pub async fn mine(State(state): State<AppState>, Caller(p): Caller) -> Result<Response, ApiError> {
    let list: Vec<_> = state
        .engine
        .my_profiles(&p)
        .await?
        .into_iter()
        .map(|(org, id)| json!({ "org_id": org, "profile_id": id }))
        .collect();
    Ok(Json(json!({ "profiles": list })).into_response())
}

fn attachment_json(a: &engine::AttachmentInfo) -> Value {
    json!({
        "name": a.name,
        "content_type": a.content_type,
        "size": a.size,
        "created_at": rfc3339(a.created_at),
        "created_by": a.created_by,
    })
}

/// `PUT /v1/orgs/{org}/profiles/{id}/attachments/{name}`: stores the body,
/// streamed and encrypted; 201 when new, 200 when it replaced one.
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
    Ok((status, Json(attachment_json(&info))).into_response())
}

/// `GET /v1/orgs/{org}/profiles/{id}/attachments`: names, types, sizes.
pub async fn list_attachments(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let org = resolve(&state, &org).await?;
    let id = profile_id(&id)?;
    let list = state.engine.list_attachments(&p, org, id).await?;
    Ok(Json(json!({ "attachments": list.iter().map(attachment_json).collect::<Vec<_>>() })).into_response())
}

/// `GET /v1/orgs/{org}/profiles/{id}/attachments/{name}`: the bytes,
/// streamed as they are decrypted, always as a download.
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
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(res)
}

/// `DELETE /v1/orgs/{org}/profiles/{id}/attachments/{name}`.
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
