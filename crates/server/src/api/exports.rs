//! Exports and imports over HTTP: an organisation's profiles and audit
//! trail as CSV or JSON-lines downloads, streamed as they are read; and
//! profiles imported from a CSV body, all or nothing.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::response::Response;
use domain::Action;
use engine::ImportSource;
use engine::{EngineError, ExportFormat, ProfileError};
use futures_util::TryStreamExt;
use http::{HeaderValue, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::ApiError;
use super::orgs::{OrgPath, authorize};
use crate::AppState;
use crate::problem::{Kind, Problem};

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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Write the good rows and report the bad ones; by default any bad row
    /// means nothing is written.
    skip_invalid: Option<bool>,
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResult {
    /// Records in the file.
    rows: u64,
    /// Records that passed every check.
    valid: u64,
    /// Records written.
    written: u64,
    /// The bad rows' problems (first 1,000): line, field and rule, never a value.
    problems: Vec<ImportProblem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportProblem {
    /// The record's line in the file (the header is line 1).
    line: u64,
    /// The field, as a JSON pointer (`/email`); empty for the whole row.
    field: String,
    rule: &'static str,
    message: String,
}

/// `POST /v1/orgs/{org}/imports/profiles`: profiles from a CSV body (the
/// export's format: a header row of field names; `id`, `revision`,
/// `created_at` and `updated_at` columns are ignored), within
/// `http.max_body_bytes` (larger files: `strongroom import`). Every row is
/// checked against the schema first; with any bad row nothing is written
/// (422, every problem listed as `/lines/<line>/<field>`), unless
/// `skip_invalid=true`. Each record is chained as `profile.create`, the
/// import as `profile.import` with its counts.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/imports/profiles",
    tag = "profiles",
    operation_id = "importProfiles",
    params(OrgPath, ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "RFC 4180 CSV with a header row"),
    responses(
        (status = 200, description = "Imported (with skip_invalid, the good rows)", body = ImportResult),
        (status = 400, description = "A query parameter is unknown or not a boolean"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, the organisation is suspended, or a support session is limited to some records"),
        (status = 404, description = "No such organisation, or not the caller's"),
        (status = 409, description = "The organisation's keys were destroyed"),
        (status = 413, description = "The body exceeds http.max_body_bytes"),
        (status = 415, description = "The body is not text/csv"),
        (status = 422, description = "Bad rows (nothing written; each listed in `errors`), a header naming no field of the schema, CSV that does not parse, or no schema yet"),
    ),
)]
pub async fn import_profiles(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    Query(q): Query<ImportQuery>,
    headers: http::HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::WriteProfiles).await?;
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv"));
    if !csv {
        return Ok(Problem::new(Kind::UnsupportedMediaType).with_detail("the body must be text/csv").into_response());
    }
    // Read only now, once the caller may import: the size limit layer
    // bounds it (413).
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(_) => {
            return Ok(Problem::new(Kind::PayloadTooLarge)
                .with_detail("the request body exceeds the configured limit (http.max_body_bytes)")
                .into_response());
        }
    };
    let skip_invalid = q.skip_invalid.unwrap_or(false);
    let report = state.engine.import_profiles(&auth, ImportSource::Bytes(body), skip_invalid).await?;
    let invalid = report.rows - report.valid;
    if invalid > 0 && !skip_invalid {
        let errors = report
            .problems
            .iter()
            .map(|p| domain::Violation {
                path: format!("/lines/{}{}", p.line, p.field),
                rule: p.rule,
                message: format!("line {}: {}", p.line, p.message),
            })
            .collect();
        return Ok(Problem::new(Kind::ValidationFailed)
            .with_detail(format!(
                "{invalid} of {} rows are invalid; nothing was written (fix them, or pass skip_invalid=true)",
                report.rows
            ))
            .with_errors(errors)
            .into_response());
    }
    let problems = report
        .problems
        .into_iter()
        .map(|p| ImportProblem { line: p.line, field: p.field, rule: p.rule, message: p.message })
        .collect();
    Ok(Json(ImportResult { rows: report.rows, valid: report.valid, written: report.written, problems }).into_response())
}
