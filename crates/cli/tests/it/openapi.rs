//! The OpenAPI document end to end: it is served at `/v1/openapi.json`
//! without a session, it lists exactly the routes the server answers, and
//! schemathesis, generating requests from it against a seeded organisation,
//! finds no server error and no response that breaks it.

use std::collections::BTreeSet;
use std::time::Duration;

use domain::Role;
use reqwest::Method;
use serde_json::{Value, json};
use testkit::{TestApp, UserClient, backend_tests, spawn_app};

const PW: &str = "correct horse battery staple";
const ORG: &str = "/v1/orgs/acme-people";
const METHODS: [Method; 5] = [Method::GET, Method::PUT, Method::POST, Method::DELETE, Method::PATCH];

/// The schemathesis executable that `scripts/test` installs.
fn schemathesis() -> String {
    std::env::var("STRONGROOM_TEST_SCHEMATHESIS")
        .unwrap_or_else(|_| panic!("STRONGROOM_TEST_SCHEMATHESIS: run scripts/test"))
}

/// Every (method, path) of a document.
fn operations(doc: &Value) -> BTreeSet<(Method, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for m in METHODS {
            if item.get(m.as_str().to_lowercase()).is_some() {
                out.insert((m, path.clone()));
            }
        }
    }
    out
}

/// An organisation with a schema, three profiles (one with an attachment),
/// an editor and a service account; its owner passed two-factor
/// authentication.
async fn seed(app: &TestApp) -> (UserClient, Vec<String>) {
    let org = app.create_org("acme-people").await;
    for (email, role) in [("owner@example.com", Role::Owner), ("editor@example.com", Role::Editor)] {
        let user = app.create_user(email, PW, false).await;
        app.add_member(org.id, user.id, role).await;
    }
    let (owner, _, _) = app.login_with_mfa("owner@example.com", PW).await;
    let schema = json!({ "fields": [
        { "name": "full_name", "type": "string", "required": true, "classification": "personal" },
        { "name": "email", "type": "email", "searchable": true },
        { "name": "birth_date", "type": "date", "classification": "sensitive" },
        { "name": "stage", "type": "enum", "values": ["applied", "hired"], "classification": "plain" },
        { "name": "score", "type": "number", "classification": "plain" },
        { "name": "remote", "type": "boolean", "classification": "plain" }
    ]});
    let res = owner.send(Method::PUT, &format!("{ORG}/schema"), Some(schema)).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    let mut ids = Vec::new();
    for (i, name) in ["Ada Quill", "Bo Ferrante", "Cy Okafor"].into_iter().enumerate() {
        let body = json!({ "fields": {
            "full_name": name, "email": format!("person{i}@example.org"), "birth_date": "1990-04-01",
            "stage": "applied", "score": 3.5, "remote": i % 2 == 0
        }});
        let res = owner.send(Method::POST, &format!("{ORG}/profiles"), Some(body)).await;
        let status = res.status();
        let created: Value = res.json().await.unwrap_or_default();
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().unwrap_or_default().to_owned());
    }
    let res = owner
        .request(Method::PUT, &format!("{ORG}/profiles/{}/attachments/cv.pdf", ids[0]))
        .header("content-type", "application/pdf")
        .body(b"%PDF-1.7 not really".to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 201);
    let res = owner
        .send(
            Method::POST,
            &format!("{ORG}/service-accounts"),
            Some(json!({ "name": "crm sync", "scope": "org:read profiles:read" })),
        )
        .await;
    assert_eq!(res.status(), 201);
    (owner, ids)
}

/// The schemathesis configuration: the owner's session for the `session`
/// scheme, path parameters drawn mostly from the seeded data, and the
/// statuses this API gives by design where schemathesis' defaults expect
/// others.
fn config(cookie: &str, ids: &[String]) -> String {
    let secret = cookie.trim_start_matches(&format!("{}=", server::api::SESSION_COOKIE));
    let list = |items: &[&str]| items.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>().join(", ");
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    format!(
        r#"
[auth.openapi.session]
api_key = "{secret}"

[dictionaries.ids]
values = [{ids}]
[dictionaries.names]
values = ["cv.pdf"]
[dictionaries.people]
values = ["Dee Ngata", "Eli Varga"]
[dictionaries.roles]
values = ["admin", "editor", "viewer", "auditor"]

[parameters]
"path.org" = "acme-people"
"path.id" = {{ dictionary = "ids", probability = 0.7 }}
"path.name" = {{ dictionary = "names", probability = 0.5 }}

# A missing If-Match is 428 Precondition Required (RFC 6585).
[checks.missing_required_header]
expected-statuses = ["400", "401", "403", "406", "415", "422", "428"]

# Profiles and schemas are checked against the organisation's own schema
# and stored data (required fields, enum values, safe evolution), which a
# static document cannot express: such data is a 422 naming every problem.
# An If-Match that is not the current ETag, well-formed or not, is a 412
# (RFC 9110 §13.1.1), whatever else is wrong with the request.
[[operations]]
include-operation-id = ["putSchema", "createProfile", "patchProfile", "deleteProfile", "listProfiles", "importProfiles", "setRetention"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "412", "422", "428"]
checks.negative_data_rejection.expected-statuses = ["400", "401", "403", "404", "405", "409", "412", "415", "422", "428"]

# New profiles mostly carry the required field, so some are created.
[[operations]]
include-operation-id = ["createProfile"]
parameters = {{ "body.fields.full_name" = {{ dictionary = "people", probability = 0.8 }} }}

# Nobody else becomes an owner, so the caller stays the last owner, whom
# the API never demotes or removes (409): the run cannot lock itself out.
[[operations]]
include-operation-id = ["addMember", "setMemberRole", "invite"]
parameters = {{ "body.role" = {{ dictionary = "roles", probability = 1.0 }} }}

# A made-up token or code is refused as invalid (400 invalid-token or
# invalid-code): a document cannot describe which secrets exist.
[[operations]]
include-operation-id = ["verifyMfa", "setupPassword", "completePasswordReset", "acceptInvitation", "token"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "422", "429"]
"#,
        ids = list(&ids),
    )
}

backend_tests! {
    async fn the_document_is_served_without_a_session(backend) {
        let app = spawn_app(backend).await;
        let res = app.get("/v1/openapi.json").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
        let doc: Value = res.json().await.unwrap_or_default();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc, server::openapi::document_json(), "the served document is the generated one");
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["session"]["in"], "cookie");
        assert_eq!(schemes["session"]["name"], server::api::SESSION_COOKIE);
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        // A 401 carries the challenge the document names.
        let res = app.get("/v1/me").await;
        assert_eq!(res.status(), 401);
        let challenge = res.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert_eq!(challenge, server::api::CHALLENGE);
        assert!(doc["paths"]["/v1/me"]["get"]["responses"]["401"]["headers"]["WWW-Authenticate"].is_object());
        // A path that does not decode to UTF-8 names nothing.
        let res = app.get("/v1/orgs/%FF").await;
        assert_eq!(res.status(), 404);
        app.shutdown().await.ok();
    }

    // Every documented (method, path) is routed, and any other method on a
    // documented path is 405 with `Allow` naming exactly the documented
    // ones. (The server's unit test shows no route is added outside the
    // annotations.) Protected paths are probed with a session: without one,
    // any method on them is 401 before routing says more.
    async fn the_document_lists_exactly_the_routes_of_the_router(backend) {
        let app = spawn_app(backend).await;
        app.create_user("jane@example.com", PW, false).await;
        let jane = app.login("jane@example.com", PW).await;
        let doc = server::openapi::document_json();
        let ops = operations(&doc);
        assert!(ops.len() >= 40, "{ops:?}");
        let paths: BTreeSet<&String> = ops.iter().map(|(_, p)| p).collect();
        for path in paths {
            let filled = path
                .split('/')
                .map(|s| if s.starts_with('{') { "7f1e3c52-1d1a-4c4e-9b44-2d0f6f0e9a11" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let public = server::api::PUBLIC.contains(&path.as_str());
            let documented: BTreeSet<String> =
                METHODS.iter().filter(|m| ops.contains(&((*m).clone(), path.clone()))).map(|m| m.to_string()).collect();
            for m in METHODS {
                // Logging out would end the session the probe uses.
                if path == "/v1/auth/logout" && m == Method::POST {
                    continue;
                }
                let req = if public { app.client.request(m.clone(), app.url(&filled)) } else { jane.request(m.clone(), &filled) };
                let res = req.send().await.unwrap_or_else(|e| panic!("{e}"));
                let status = res.status().as_u16();
                if documented.contains(m.as_str()) {
                    assert_ne!(status, 405, "{m} {path} is documented but not routed");
                } else {
                    assert_eq!(status, 405, "{m} {path} is routed but not documented");
                    let allow: BTreeSet<String> = res
                        .headers()
                        .get("allow")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty() && s != "HEAD")
                        .collect();
                    assert_eq!(allow, documented, "{m} {path}: Allow names the documented methods");
                    let body: Value = res.json().await.unwrap_or_default();
                    assert_eq!(body["type"], "urn:strongroom:problem:method-not-allowed");
                }
            }
        }
        app.shutdown().await.ok();
    }

    // schemathesis generates requests from the served document (valid and
    // invalid ones, then sequences that follow its links) and checks every
    // answer: no 5xx, only documented statuses, content types and headers,
    // bodies that match their schemas, invalid input refused, 405 with
    // Allow for undocumented methods, and 401 without the session.
    async fn schemathesis_finds_no_server_error_and_no_response_that_breaks_the_document(backend) {
        let st = schemathesis();
        let app = spawn_app(backend).await;
        let (owner, ids) = seed(&app).await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let config_file = dir.path().join("schemathesis.toml");
        std::fs::write(&config_file, config(&owner.cookie, &ids)).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = tokio::process::Command::new(&st);
        cmd.current_dir(dir.path())
            .arg("--config-file").arg(&config_file)
            .arg("--no-color")
            .arg("run").arg(app.url("/v1/openapi.json"))
            .args(["--checks", "all"])
            .args(["--max-examples", "20"])
            .args(["--seed", "20261122"])
            .args(["--workers", "1"])
            .args(["--generation-database", "none"])
            .args(["--request-timeout", "20"])
            .arg("--tls-verify").arg(app.ca_file())
            // Operations that would end the session or lock the caller out.
            .args(["--exclude-operation-id", "logout"])
            .args(["--exclude-operation-id", "revokeSession"])
            .args(["--exclude-operation-id", "changePassword"])
            .args(["--exclude-operation-id", "enrolTotp"])
            .args(["--exclude-operation-id", "confirmTotp"])
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("schemathesis ran longer than 300 s"))
            .unwrap_or_else(|e| panic!("cannot run {st}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "schemathesis failed ({}):\n{stdout}\n{stderr}", out.status);
        // The session survived the run, and nothing locked the owner out.
        let org: Value = owner.get(ORG).await.json().await.unwrap_or_default();
        assert_eq!(org["role"], "owner", "{org}");
        app.shutdown().await.ok();
    }
}
