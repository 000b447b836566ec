//! `ApiJson`: the JSON body extractor every API route uses, so a malformed
//! or ill-shaped body is refused as problem details that name the problem
//! but never echo a submitted value.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use http::header;
use serde::de::DeserializeOwned;

use crate::problem::{Kind, Problem};

/// A JSON request body, parsed into `T`.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        RawJson::from_request(req, state).await?.parse().map(ApiJson)
    }
}

/// A JSON body read but not yet parsed, for routes that must authorise the
/// caller before looking at what they sent (a non-member learns nothing, not
/// even that their body was ill-formed).
#[derive(Debug, Clone)]
pub struct RawJson {
    is_json: bool,
    bytes: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for RawJson {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = is_json(&req);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(Kind::PayloadTooLarge)
                    .with_detail("the request body exceeds the configured limit (http.max_body_bytes)")
            } else {
                Problem::new(Kind::MalformedJson).with_detail("the request body could not be read")
            }
        })?;
        Ok(Self { is_json, bytes })
    }
}

impl RawJson {
    /// Whether the request had no body at all (an optional body).
    pub fn is_empty(&self) -> bool {
        self.bytes.iter().all(u8::is_ascii_whitespace)
    }

    /// Parses the body, with the same problems as `ApiJson`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Problem> {
        if !self.is_json {
            return Err(Problem::new(Kind::UnsupportedMediaType)
                .with_detail("the request body must be JSON (Content-Type: application/json)"));
        }
        // serde takes a JSON array for a struct, member by member in order:
        // every body of this API is an object, so anything else is refused.
        if self.bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            serde_json::from_slice::<serde::de::IgnoredAny>(&self.bytes).map_err(describe)?;
            return Err(Problem::new(Kind::InvalidBody).with_detail("the body must be a JSON object"));
        }
        serde_json::from_slice(&self.bytes).map_err(describe)
    }
}

fn is_json(req: &Request) -> bool {
    req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).is_some_and(
        |mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json")
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        },
    )
}

/// Names what is wrong with a body without repeating any submitted value.
fn describe(e: serde_json::Error) -> Problem {
    use serde_json::error::Category;
    let at = format!("line {} column {}", e.line(), e.column());
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => Problem::new(Kind::MalformedJson)
            .with_detail(format!("the body is not valid JSON: {} at {at}", syntax_reason(&e))),
        Category::Data => {
            let message = e.to_string();
            // serde's messages for these name only fields; others (invalid
            // type, invalid value) quote the submitted value, so they get a
            // generic text.
            let safe = ["missing field", "unknown field", "duplicate field"].iter().any(|p| message.starts_with(p));
            let reason = if safe {
                message.split(" at line").next().unwrap_or("").to_owned()
            } else {
                "a value has the wrong type or is out of range".to_owned()
            };
            Problem::new(Kind::InvalidBody).with_detail(format!("{reason} ({at})"))
        }
    }
}

fn syntax_reason(e: &serde_json::Error) -> &'static str {
    if e.is_eof() { "unexpected end of input" } else { "unexpected character or token" }
}

/// A whole number however JSON spells it: JSON Schema counts `60.0` as
/// the integer 60, so the API takes it as such.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = <serde_json::Number as serde::Deserialize>::deserialize(d)?;
    if let Some(v) = n.as_u64() {
        return Ok(v);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=9.0e15).contains(&f) => Ok(f as u64),
        _ => Err(serde::de::Error::custom("a value has the wrong type or is out of range")),
    }
}

/// [`whole_number`], optional (`null` or absent: none).
pub fn optional_whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Whole(#[serde(deserialize_with = "whole_number")] u64);
    Ok(<Option<Whole> as serde::Deserialize>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use serde::Deserialize;
    use tower::ServiceExt;

    use super::ApiJson;
    use crate::config::HttpLimits;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Input {
        name: String,
        count: u32,
    }

    async fn echo(ApiJson(input): ApiJson<Input>) -> String {
        input.name
    }

    /// Sends a body to a route behind the real layers; returns the status,
    /// the content type and the problem's `type` and `detail`.
    async fn post_json(content_type: &str, body: &str) -> (StatusCode, String, String, String) {
        let app = crate::with_layers(Router::new().route("/echo", post(echo)), &HttpLimits::default());
        let req = Request::post("/echo")
            .header("content-type", content_type)
            .body(Body::from(body.to_owned()))
            .unwrap_or_default();
        let Ok(res) = app.oneshot(req).await;
        let status = res.status();
        let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let bytes = res.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
        (status, ct, field("type"), field("detail"))
    }

    #[tokio::test]
    async fn well_formed_body_is_accepted() {
        let (status, ..) = post_json("application/json", r#"{"name":"a","count":1}"#).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn malformed_json_is_a_400_problem_naming_the_position() {
        let (status, ct, ty, detail) = post_json("application/json", r#"{"name": "a",, }"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(ct, "application/problem+json");
        assert_eq!(ty, "urn:strongroom:problem:malformed-json");
        assert!(detail.contains("not valid JSON") && detail.contains("line 1 column"), "{detail}");
        let (status, _, _, detail) = post_json("application/json", r#"{"name": "a""#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(detail.contains("unexpected end"), "{detail}");
    }

    #[tokio::test]
    async fn wrong_shape_names_the_field_but_never_echoes_a_value() {
        let (status, _, ty, detail) = post_json("application/json", r#"{"count":1}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(ty, "urn:strongroom:problem:invalid-body");
        assert!(detail.contains("missing field `name`"), "{detail}");
        let (_, _, _, detail) = post_json("application/json", r#"{"name":"a","count":1,"nmae":2}"#).await;
        assert!(detail.contains("unknown field `nmae`"), "{detail}");
        let (status, _, _, detail) =
            post_json("application/json", r#"{"name":"a","count":"jane.doe@example.com"}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(!detail.contains("jane.doe"), "the submitted value is not echoed: {detail}");
    }

    #[tokio::test]
    async fn a_body_that_is_not_an_object_is_refused_even_when_serde_would_take_it() {
        // As an array, serde would fill the struct's members in order.
        for body in [r#"["a", 1]"#, " [] ", "null", "\"a\"", "3"] {
            let (status, _, ty, detail) = post_json("application/json", body).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(ty, "urn:strongroom:problem:invalid-body", "{body}");
            assert_eq!(detail, "the body must be a JSON object", "{body}");
        }
        let (status, _, ty, _) = post_json("application/json", "[1,").await;
        assert_eq!((status, ty.as_str()), (StatusCode::BAD_REQUEST, "urn:strongroom:problem:malformed-json"));
    }

    #[tokio::test]
    async fn non_json_content_type_is_a_415_problem() {
        let (status, ct, ty, _) = post_json("text/plain", r#"{"name":"a","count":1}"#).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(ct, "application/problem+json");
        assert_eq!(ty, "urn:strongroom:problem:unsupported-media-type");
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_problem_without_its_message() {
        async fn boom() -> &'static str {
            panic!("secret detail jane.doe@example.com")
        }
        let app = crate::with_layers(Router::new().route("/boom", post(boom)), &HttpLimits::default());
        let Ok(res) = app.oneshot(Request::post("/boom").body(Body::empty()).unwrap_or_default()).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = res.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("urn:strongroom:problem:internal") && !text.contains("jane.doe"), "{text}");
    }
}
