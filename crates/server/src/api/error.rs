//! How engine errors become problem details: the client learns what kind of
//! failure it was, never internals; the log gets the cause.

use axum::response::{IntoResponse, Response};
use engine::{AttachmentError, AuthError, Denied, EngineError, KeyError, MfaError, ProfileError, SupportError};
use http::{HeaderValue, header};

use crate::problem::{Kind, Problem};

/// An API error: an engine error rendered as a problem, or a problem the
/// HTTP layer found itself (such as a body that does not parse).
#[derive(Debug)]
pub enum ApiError {
    Engine(EngineError),
    Problem(Problem),
}

impl<E: Into<EngineError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self::Engine(e.into())
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self::Problem(p)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = match self {
            Self::Problem(p) => return p.into_response(),
            Self::Engine(e) => e,
        };
        match e {
            EngineError::Auth(AuthError::Throttled { retry_after }) => {
                come_back(retry_after, "too many failed sign-ins")
            }
            EngineError::Auth(AuthError::Busy { retry_after }) => come_back(retry_after, "too many sign-ins at once"),
            EngineError::Auth(AuthError::InvalidCredentials) => {
                Problem::new(Kind::InvalidCredentials).with_detail("wrong e-mail address or password").into_response()
            }
            EngineError::Auth(AuthError::Unauthenticated) => unauthenticated(),
            EngineError::Auth(AuthError::Policy(v)) => {
                Problem::new(Kind::PasswordPolicy).with_detail(v.to_string()).into_response()
            }
            EngineError::Denied(Denied::NotFound) | EngineError::NoSuchOrg(_) => {
                Problem::new(Kind::NotFound).with_detail("no such organisation").into_response()
            }
            EngineError::Denied(Denied::MfaRequired) => Problem::new(Kind::MfaRequired)
                .with_detail("this needs two-factor authentication: enrol with POST /v1/auth/mfa/totp, or verify with POST /v1/auth/mfa/verify")
                .into_response(),
            EngineError::Denied(Denied::Suspended) => Problem::new(Kind::OrgSuspended)
                .with_detail("this organisation is suspended by the platform operator")
                .into_response(),
            EngineError::Mfa(MfaError::InvalidCode) => {
                Problem::new(Kind::InvalidCode).with_detail("the code is wrong, expired or already used").into_response()
            }
            EngineError::Mfa(e @ (MfaError::AlreadyEnrolled | MfaError::NotEnrolled)) => {
                Problem::new(Kind::Conflict).with_detail(e.to_string()).into_response()
            }
            e @ (EngineError::MailNotConfigured | EngineError::AccountDetailsNeeded) => {
                Problem::new(Kind::Conflict).with_detail(e.to_string()).into_response()
            }
            EngineError::NoSuchUser => Problem::new(Kind::NotFound).with_detail("no such user").into_response(),
            EngineError::Import(m) => Problem::new(Kind::ValidationFailed).with_detail(m).into_response(),
            EngineError::Profile(ProfileError::Invalid(errors)) => Problem::new(Kind::ValidationFailed)
                .with_detail(summary(&errors))
                .with_errors(errors)
                .into_response(),
            EngineError::Profile(ProfileError::NotFound) => {
                Problem::new(Kind::NotFound).with_detail("no such profile").into_response()
            }
            EngineError::Profile(e @ ProfileError::Stale) => {
                Problem::new(Kind::PreconditionFailed).with_detail(e.to_string()).into_response()
            }
            EngineError::Profile(e @ ProfileError::SchemaChanged) => {
                Problem::new(Kind::Conflict).with_detail(e.to_string()).into_response()
            }
            EngineError::Profile(e @ ProfileError::Integrity(_)) => {
                tracing::error!(error = %e, "integrity check failed");
                Problem::new(Kind::Integrity).with_detail(e.to_string()).into_response()
            }
            EngineError::Attachment(AttachmentError::NotFound) => {
                Problem::new(Kind::NotFound).with_detail("no such attachment").into_response()
            }
            EngineError::Attachment(e @ (AttachmentError::InvalidName | AttachmentError::InvalidContentType)) => {
                let path = if matches!(e, AttachmentError::InvalidName) { "/name" } else { "/content_type" };
                let violation = domain::Violation { path: path.to_owned(), rule: "format", message: e.to_string() };
                Problem::new(Kind::ValidationFailed).with_detail(e.to_string()).with_errors(vec![violation]).into_response()
            }
            EngineError::Attachment(e @ AttachmentError::TooLarge { .. }) => {
                Problem::new(Kind::PayloadTooLarge).with_detail(e.to_string()).into_response()
            }
            EngineError::Attachment(e @ AttachmentError::Interrupted) => {
                Problem::new(Kind::Other(http::StatusCode::BAD_REQUEST)).with_detail(e.to_string()).into_response()
            }
            EngineError::Attachment(e @ AttachmentError::Tampered) => {
                tracing::error!(error = %e, "integrity check failed");
                Problem::new(Kind::Integrity).with_detail(e.to_string()).into_response()
            }
            EngineError::Attachment(AttachmentError::Blob(e)) => {
                tracing::warn!(error = %e, "blob store failed");
                Problem::new(Kind::StorageUnavailable)
                    .with_detail("the attachment store is unavailable; try again later")
                    .into_response()
            }
            EngineError::Key(KeyError::Destroyed) => Problem::new(Kind::Conflict)
                .with_detail("this organisation's keys were destroyed: its data can no longer be read")
                .into_response(),
            EngineError::Denied(Denied::Forbidden) => {
                Problem::new(Kind::Forbidden).with_detail("your role does not allow this").into_response()
            }
            EngineError::Support(e @ (SupportError::Reason | SupportError::Duration { .. } | SupportError::TooManyProfiles)) => {
                Problem::new(Kind::InvalidBody).with_detail(e.to_string()).into_response()
            }
            EngineError::Support(e @ (SupportError::NotFound | SupportError::GrantNotActive)) => {
                Problem::new(Kind::NotFound).with_detail(e.to_string()).into_response()
            }
            EngineError::Support(e @ (SupportError::AlreadyDecided(_) | SupportError::NotActive)) => {
                Problem::new(Kind::Conflict).with_detail(e.to_string()).into_response()
            }
            EngineError::Support(e @ (SupportError::OutOfScope | SupportError::OwnerChange | SupportError::OwnSession)) => {
                Problem::new(Kind::Forbidden).with_detail(e.to_string()).into_response()
            }
            EngineError::LastOwner => {
                Problem::new(Kind::Conflict).with_detail("an organisation must keep at least one owner").into_response()
            }
            EngineError::Store(store::StoreError::Conflict { what }) => {
                Problem::new(Kind::Conflict).with_detail(format!("{what} already exists")).into_response()
            }
            EngineError::Key(KeyError::KmsUnavailable(e)) => {
                tracing::warn!(error = %e, "key backend unavailable");
                Problem::new(Kind::KmsUnavailable)
                    .with_detail("the key service is unavailable; try again later")
                    .into_response()
            }
            other => {
                tracing::error!(error = %other, "request failed");
                Problem::new(Kind::Internal).into_response()
            }
        }
    }
}

/// A 429 problem saying why and when to try again, with `Retry-After`.
fn come_back(retry_after: std::time::Duration, why: &str) -> Response {
    let secs = retry_after.as_secs().max(1);
    let mut res =
        Problem::new(Kind::TooManyAttempts).with_detail(format!("{why}; try again in {secs} seconds")).into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

/// One line naming how many problems there are and the first of them.
fn summary(errors: &[domain::Violation]) -> String {
    match errors {
        [] => "the input breaks the schema".to_owned(),
        [one] => format!("{}: {}", one.path, one.message),
        [first, rest @ ..] => {
            format!("{}: {} (and {} more problems, listed in `errors`)", first.path, first.message, rest.len())
        }
    }
}

/// The challenge a 401 for a missing or ended session carries (RFC 9110
/// §11.6.1 requires one): a bearer token is the one HTTP scheme accepted.
pub const CHALLENGE: &str = "Bearer realm=\"strongroom\"";

/// 401: no valid session.
pub fn unauthenticated() -> Response {
    let mut res =
        Problem::new(Kind::Unauthenticated).with_detail("sign in first, or the session has ended").into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
    res
}
