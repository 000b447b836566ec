//! RFC 9457 problem details: every API error, whether raised by a handler
//! or by the HTTP layers (404, 405, 413, timeouts, panics), goes out as
//! `application/problem+json` with a stable `type`.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of problem details.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// The kinds of problem the API reports. Each has a stable `type` URI,
/// `urn:strongroom:problem:<slug>`, that clients may match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    MalformedJson,
    InvalidBody,
    Timeout,
    NotReady,
    /// The key backend cannot be reached; nothing falls back to plaintext.
    KmsUnavailable,
    /// No valid session or token.
    Unauthenticated,
    /// Wrong e-mail address or password (the same answer either way).
    InvalidCredentials,
    /// Too many failed sign-ins; `Retry-After` says when to try again.
    TooManyAttempts,
    /// A new password breaks the password policy.
    PasswordPolicy,
    /// Authenticated, but the role does not allow this.
    Forbidden,
    /// A single-use token that is unknown, used or expired.
    InvalidToken,
    /// The action needs a session that passed two-factor authentication.
    MfaRequired,
    /// A two-factor code that is wrong, expired or already used.
    InvalidCode,
    /// The organisation is suspended.
    OrgSuspended,
    /// The change conflicts with what exists (a taken slug, the last owner).
    Conflict,
    /// The body is well-formed but breaks the organisation's schema; the
    /// `errors` member lists every problem by JSON pointer and rule.
    ValidationFailed,
    /// `If-Match` names another version than the stored one.
    PreconditionFailed,
    /// An update or delete without `If-Match`.
    PreconditionRequired,
    /// Stored data failed its integrity check (tampering or corruption).
    Integrity,
    /// The blob store cannot be reached.
    StorageUnavailable,
    Internal,
    /// Any other client or server error status raised by a layer.
    Other(StatusCode),
}

impl Kind {
    fn parts(self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::NotFound => (S::NOT_FOUND, "not-found", "Not found"),
            Self::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed"),
            Self::PayloadTooLarge => (S::PAYLOAD_TOO_LARGE, "payload-too-large", "Request body too large"),
            Self::UnsupportedMediaType => {
                (S::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
            }
            Self::MalformedJson => (S::BAD_REQUEST, "malformed-json", "Malformed JSON"),
            Self::InvalidBody => (S::UNPROCESSABLE_ENTITY, "invalid-body", "Invalid request body"),
            Self::Timeout => (S::SERVICE_UNAVAILABLE, "timeout", "Request timed out"),
            Self::NotReady => (S::SERVICE_UNAVAILABLE, "not-ready", "Service not ready"),
            Self::KmsUnavailable => (S::SERVICE_UNAVAILABLE, "kms-unavailable", "Key service unavailable"),
            Self::Unauthenticated => (S::UNAUTHORIZED, "unauthenticated", "Not signed in"),
            Self::InvalidCredentials => (S::UNAUTHORIZED, "invalid-credentials", "Sign-in failed"),
            Self::TooManyAttempts => (S::TOO_MANY_REQUESTS, "too-many-attempts", "Too many attempts"),
            Self::PasswordPolicy => (S::UNPROCESSABLE_ENTITY, "password-policy", "Password refused"),
            Self::Forbidden => (S::FORBIDDEN, "forbidden", "Forbidden"),
            Self::InvalidToken => (S::BAD_REQUEST, "invalid-token", "Invalid or expired token"),
            Self::MfaRequired => (S::FORBIDDEN, "mfa-required", "Two-factor authentication required"),
            Self::InvalidCode => (S::BAD_REQUEST, "invalid-code", "Invalid code"),
            Self::OrgSuspended => (S::FORBIDDEN, "org-suspended", "Organisation suspended"),
            Self::Conflict => (S::CONFLICT, "conflict", "Conflict"),
            Self::ValidationFailed => (S::UNPROCESSABLE_ENTITY, "validation-failed", "Validation failed"),
            Self::PreconditionFailed => (S::PRECONDITION_FAILED, "precondition-failed", "Precondition failed"),
            Self::PreconditionRequired => (S::PRECONDITION_REQUIRED, "precondition-required", "Precondition required"),
            Self::Integrity => (S::INTERNAL_SERVER_ERROR, "integrity", "Stored data failed its integrity check"),
            Self::StorageUnavailable => (S::SERVICE_UNAVAILABLE, "storage-unavailable", "Storage unavailable"),
            Self::Internal => (S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
            Self::Other(status) => (
                status,
                if status.is_client_error() { "client-error" } else { "server-error" },
                status.canonical_reason().unwrap_or("Error"),
            ),
        }
    }

    pub fn status(self) -> StatusCode {
        self.parts().0
    }

    /// The stable `type` URI.
    pub fn type_uri(self) -> String {
        format!("urn:strongroom:problem:{}", self.parts().1)
    }

    /// The problem a bare error status stands for.
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            // The timeout layer is the only source of a bare 503; readiness
            // failures are already problem details.
            StatusCode::SERVICE_UNAVAILABLE => Self::Timeout,
            StatusCode::INTERNAL_SERVER_ERROR => Self::Internal,
            other => Self::Other(other),
        }
    }
}

/// One problem response. `detail` is for the client and must never carry a
/// secret, a personal value or an internal error chain.
#[derive(Debug, Clone)]
pub struct Problem {
    kind: Kind,
    detail: Option<String>,
    errors: Vec<domain::Violation>,
}

/// The body of every problem response. It is also the `Problem` schema of
/// the OpenAPI document, so the document describes what is sent.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Problem, title = "Problem", description = "RFC 9457 problem details")]
pub struct ProblemBody<'a> {
    /// A stable URI, `urn:strongroom:problem:<slug>`, that clients may match on.
    #[serde(rename = "type")]
    #[schema(example = "urn:strongroom:problem:not-found", pattern = "^urn:strongroom:problem:[a-z-]+$")]
    type_uri: String,
    title: &'static str,
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    /// Every problem with the input, by JSON pointer and rule; never the
    /// offending value. Present only on `validation-failed`.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    #[schema(value_type = Option<Vec<ViolationSchema>>)]
    errors: &'a [domain::Violation],
}

/// One problem with the input (the schema of `domain::Violation`).
#[derive(Debug, ToSchema)]
#[schema(as = Violation, title = "Violation")]
#[allow(dead_code)]
pub struct ViolationSchema {
    /// A JSON pointer to the offending member, such as `/fields/email`.
    path: String,
    /// The rule it breaks, such as `required` or `format`.
    rule: String,
    message: String,
}

impl Problem {
    pub fn new(kind: Kind) -> Self {
        Self { kind, detail: None, errors: Vec::new() }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_errors(mut self, errors: Vec<domain::Violation>) -> Self {
        self.errors = errors;
        self
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    fn body(&self) -> Vec<u8> {
        let (status, _, title) = self.kind.parts();
        let body = ProblemBody {
            type_uri: self.kind.type_uri(),
            title,
            status: status.as_u16(),
            detail: self.detail.as_deref(),
            errors: &self.errors,
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut res = Response::new(Body::from(self.body()));
        *res.status_mut() = self.kind.status();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        res
    }
}

/// Middleware: turns any error response that is not already problem
/// details (from routing, body limits, timeouts) into problem details,
/// keeping headers such as `Allow` and `Retry-After`.
pub async fn problemise(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    // Only bare errors from layers (empty or plain text) are rewritten; a
    // JSON answer (problem details, or an OAuth error) is the handler's own.
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim() == "application/json" || m.trim().ends_with("+json"));
    if is_json {
        return res;
    }
    let (mut parts, _) = res.into_parts();
    let kind = Kind::from_status(status);
    let detail = match kind {
        Kind::NotFound => Some("no such resource"),
        Kind::MethodNotAllowed => Some("the resource does not support this method; see the Allow header"),
        Kind::PayloadTooLarge => Some("the request body exceeds the configured limit (http.max_body_bytes)"),
        Kind::Timeout => Some("the request took longer than the configured limit (http.request_timeout_secs)"),
        _ => None,
    };
    let problem = detail.map_or(Problem::new(kind), |d| Problem::new(kind).with_detail(d));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Response::from_parts(parts, Body::from(problem.body()))
}

/// The response when a handler panics: a bare 500, with nothing of the
/// panic's message, which could carry data.
pub fn from_panic(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    Problem::new(Kind::Internal).into_response()
}
