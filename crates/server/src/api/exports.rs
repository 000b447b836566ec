//! Exports over HTTP: an organisation's profiles as a CSV or JSON-lines
//! download, streamed as it is decrypted.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use domain::Action;
use engine::{EngineError, ExportFormat, ProfileError};
use futures_util::TryStreamExt;
use http::{HeaderValue, header};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::error::ApiError;
use super::orgs::{OrgPath, authorize};
use crate::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `csv` (the default: RFC 4180, a header row from the schema,
    /// formula-like text cells prefixed with `'`) or `jsonl` (one JSON
    /// object per line).
    #[param(pattern = "^(csv|jsonl)$")]
    format: Option<String>,
}

/// `GET /v1/orgs/{org}/exports/profiles`: every profile the caller may see,
/// decrypted, as a download. Sensitive fields only for roles that read
/// them. The export is chained (`profile.export`) before the first byte,
/// and its row count when it ends (`profile.export.end`).
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/exports/profiles",
    tag = "profiles",
    operation_id = "exportProfiles",
    params(OrgPath, ExportQuery),
    responses(
        (status = 200, description = "The export, streamed", content(("text/csv"), ("application/x-ndjson")),
            headers(("Content-Disposition" = String, description = "always `attachment`"))),
        (status = 400, description = "A query parameter is unknown"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, the organisation is suspended, or a support session is limited to some records"),
        (status = 404, description = "No such organisation, or not the caller's"),
        (status = 409, description = "The organisation's keys were destroyed"),
        (status = 422, description = "The format is not csv or jsonl"),
    ),
)]
pub async fn export_profiles(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ReadProfiles).await?;
    let format = format_of(&q)?;
    let stream = state.engine.export_profiles(&auth, format).await?;
    download(&state, &auth, format, "profiles", stream).await
}

/// `GET /v1/orgs/{org}/exports/audit`: the organisation's audit trail up
/// to its head when the export began, oldest first, as a download: CSV
/// (hashes in hex) or JSON lines (the records the audit sinks ship), so
/// the chain can be checked outside Strongroom. Chained as `audit.export`
/// and `audit.export.end` with the row count.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/exports/audit",
    tag = "audit",
    operation_id = "exportAudit",
    params(OrgPath, ExportQuery),
    responses(
        (status = 200, description = "The trail, streamed", content(("text/csv"), ("application/x-ndjson")),
            headers(("Content-Disposition" = String, description = "always `attachment`"))),
        (status = 400, description = "A query parameter is unknown"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, the organisation is suspended, or a support session is limited to some records"),
        (status = 404, description = "No such organisation, or not the caller's"),
        (status = 422, description = "The format is not csv or jsonl"),
    ),
)]
pub async fn export_audit(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ReadAudit).await?;
    let format = format_of(&q)?;
    let stream = state.engine.export_audit(&auth, format).await?;
    download(&state, &auth, format, "audit", stream).await
}

fn format_of(q: &ExportQuery) -> Result<ExportFormat, ApiError> {
    Ok(ExportFormat::parse(q.format.as_deref().unwrap_or("csv")).ok_or_else(|| {
        EngineError::Profile(ProfileError::Invalid(vec![domain::Violation {
            path: "/format".into(),
            rule: "enum",
            message: "format must be csv or jsonl".into(),
        }]))
    })?)
}

/// The streamed body as a private download named after the organisation.
async fn download(
    state: &AppState,
    auth: &engine::Authorized,
    format: ExportFormat,
    what: &str,
    stream: engine::ExportStream,
) -> Result<Response, ApiError> {
    let slug = state.engine.org(auth.org()).await?.map_or_else(|| auth.org().to_string(), |o| o.slug.to_string());
    let body = axum::body::Body::from_stream(stream.map_err(|e| {
        tracing::error!(error = %e, "an export broke off");
        std::io::Error::other("export failed")
    }));
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.media_type()));
    let disposition = format!("attachment; filename=\"{slug}-{what}.{}\"", format.as_str());
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(res)
}
