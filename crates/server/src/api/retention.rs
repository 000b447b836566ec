//! Retention over HTTP: an organisation's policy, and sweeps run now, for
//! real or as a dry run.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use domain::{Action, DateRule, RetentionPolicy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::ApiError;
use super::orgs::{OrgPath, authorize};
use crate::AppState;
use crate::json::RawJson;

/// When profiles expire. Both rules may be given; a profile expires when
/// either says so. `{}` removes the policy (nothing expires).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Delete a profile this many days (1 to 36,500) after its last change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 36500)]
    after_update_days: Option<u32>,
    /// Delete a profile this many days after the date in one of its date
    /// fields; profiles without the field are kept by this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after_date: Option<DateAfter>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DateAfter {
    /// A `date` field of the schema.
    field: String,
    #[schema(minimum = 1, maximum = 36500)]
    days: u32,
}

impl From<RetentionPolicy> for Policy {
    fn from(p: RetentionPolicy) -> Self {
        Self {
            after_update_days: p.after_update_days,
            after_date: p.after_date.map(|r| DateAfter { field: r.field, days: r.days }),
        }
    }
}

impl From<Policy> for RetentionPolicy {
    fn from(p: Policy) -> Self {
        Self {
            after_update_days: p.after_update_days,
            after_date: p.after_date.map(|r| DateRule { field: r.field, days: r.days }),
        }
    }
}

/// The policy in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionView {
    policy: Policy,
    /// When it was last set (RFC 3339), absent if never.
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<String>,
    /// Who set it (`user:<id>` or `service_account:<id>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_by: Option<String>,
}

/// How to sweep.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// List what would be deleted, and delete nothing.
    #[serde(default)]
    dry_run: bool,
}

/// What a sweep found and did.
#[derive(Debug, Serialize, ToSchema)]
pub struct SweepResult {
    dry_run: bool,
    /// Profiles looked at.
    checked: u64,
    /// Profiles the policy expires.
    expired: u64,
    /// Profiles deleted (none on a dry run).
    deleted: u64,
    /// The first 1,000 expired profiles' ids, in id order.
    profiles: Vec<String>,
}

async fn view(state: &AppState, auth: &engine::Authorized) -> Result<RetentionView, ApiError> {
    Ok(match state.engine.retention(auth).await? {
        Some(s) => RetentionView {
            policy: s.policy.into(),
            updated_at: Some(engine::rfc3339_micros(s.updated_at)),
            updated_by: Some(s.updated_by),
        },
        None => RetentionView { policy: RetentionPolicy::default().into(), updated_at: None, updated_by: None },
    })
}

/// `GET /v1/orgs/{org}/retention`: the organisation's retention policy.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/retention",
    tag = "orgs",
    operation_id = "getRetention",
    params(OrgPath),
    responses(
        (status = 200, description = "The policy in force (`{}` when nothing expires)", body = RetentionView),
        (status = 403, description = "Two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
    ),
)]
pub async fn get_retention(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ViewOrg).await?;
    Ok(Json(view(&state, &auth).await?).into_response())
}

/// `PUT /v1/orgs/{org}/retention`: owners and admins set the policy,
/// checked against the schema. Audited as `retention.policy`.
#[utoipa::path(
    put,
    path = "/v1/orgs/{org}/retention",
    tag = "orgs",
    operation_id = "setRetention",
    params(OrgPath),
    request_body = Policy,
    responses(
        (status = 200, description = "The policy now in force", body = RetentionView),
        (status = 400, description = "The body is not valid JSON"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape, a number of days is out of range, or the date rule names no date field"),
    ),
)]
pub async fn set_retention(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    body: RawJson,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageSettings).await?;
    let policy: Policy = body.parse()?;
    state.engine.set_retention(&auth, &policy.into()).await?;
    Ok(Json(view(&state, &auth).await?).into_response())
}

/// `POST /v1/orgs/{org}/retention/sweep`: runs the policy now. Each
/// deletion is chained as `profile.delete` (`retention:<rule>`), and the
/// sweep as `retention.sweep` with its counts; a dry run deletes nothing.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/retention/sweep",
    tag = "orgs",
    operation_id = "sweepRetention",
    params(OrgPath),
    request_body = Sweep,
    responses(
        (status = 200, description = "What the sweep found and did", body = SweepResult),
        (status = 400, description = "The body is not valid JSON"),
        (status = 403, description = "The role does not allow this, two-factor authentication is required, or the organisation is suspended"),
        (status = 404, description = "No such organisation, or not the caller's"),
        (status = 409, description = "The organisation's keys were destroyed"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "The body has the wrong shape"),
    ),
)]
pub async fn sweep(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(org): Path<String>,
    body: RawJson,
) -> Result<Response, ApiError> {
    let auth = authorize(&state, &p, &org, Action::ManageSettings).await?;
    let sweep: Sweep = body.parse()?;
    let r = state.engine.sweep_retention(&auth, sweep.dry_run).await?;
    Ok(Json(SweepResult {
        dry_run: r.dry_run,
        checked: r.checked,
        expired: r.expired,
        deleted: r.deleted,
        profiles: r.profiles.iter().map(ToString::to_string).collect(),
    })
    .into_response())
}
