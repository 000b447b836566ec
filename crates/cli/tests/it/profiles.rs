//! Profiles end to end over HTTPS: schemas and their safe evolution,
//! records with ETag/If-Match, validation that names every bad field and
//! writes nothing, what each role sees, exact-match search through blind
//! indexes, the minimisation report, ciphertext bound to its place, record
//! keys re-wrapped after rotation, and a full dump holding no seeded value.

use domain::Role;
use reqwest::Method;
use serde_json::{Value, json};
use testkit::{Backend, TestApp, UserClient, backend_tests, spawn_app};

use crate::contains;

const PW: &str = "correct horse battery staple";
const ORG: &str = "/v1/orgs/acme-people";

/// The seeded people: values that must never appear in clear at rest.
const PEOPLE: [(&str, &str, &str); 3] = [
    ("Quentin Zabriskie-Oduya", "quentin.zabriskie@example.org", "+44 7700 900123"),
    ("Marguerite Vantongeren", "m.vantongeren@example.net", "+31 6 1234 5678"),
    ("Ifeoma Okonkwo-Lindqvist", "ifeoma.ol@example.com", "+46 70 123 45 67"),
];
const DIAGNOSIS: &str = "Xerodermic-hypothetical-condition-7731";

fn schema() -> Value {
    json!({ "fields": [
        { "name": "full_name", "type": "string", "required": true, "classification": "personal" },
        { "name": "email", "type": "email", "searchable": true, "classification": "personal" },
        { "name": "phone", "type": "phone", "searchable": true },
        { "name": "birth_date", "type": "date", "classification": "sensitive", "searchable": true },
        { "name": "diagnosis", "type": "text", "classification": "sensitive" },
        { "name": "stage", "type": "enum", "values": ["applied", "interview", "hired"], "classification": "plain" },
        { "name": "score", "type": "number", "classification": "plain" },
        { "name": "remote", "type": "boolean", "classification": "plain" }
    ]})
}

struct Org {
    owner: UserClient,
    editor: UserClient,
    viewer: UserClient,
    auditor: UserClient,
    /// Not a member: the person some record belongs to.
    person: UserClient,
    person_id: String,
}

async fn setup(app: &TestApp) -> Org {
    let org = app.create_org("acme-people").await;
    let mut clients = Vec::new();
    for (email, role) in [
        ("owner@example.com", Role::Owner),
        ("editor@example.com", Role::Editor),
        ("viewer@example.com", Role::Viewer),
        ("auditor@example.com", Role::Auditor),
    ] {
        let user = app.create_user(email, PW, false).await;
        app.add_member(org.id, user.id, role).await;
    }
    let person = app.create_user("pat@example.com", PW, false).await;
    let (owner, _, _) = app.login_with_mfa("owner@example.com", PW).await;
    for email in ["editor@example.com", "viewer@example.com", "auditor@example.com"] {
        clients.push(app.login(email, PW).await);
    }
    let res = owner.send(Method::PUT, &format!("{ORG}/schema"), Some(schema())).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    let mut clients = clients.into_iter();
    let (Some(editor), Some(viewer), Some(auditor)) = (clients.next(), clients.next(), clients.next()) else {
        panic!("three clients")
    };
    let person_client = app.login("pat@example.com", PW).await;
    Org { owner, editor, viewer, auditor, person: person_client, person_id: person.id.to_string() }
}

fn person(i: usize) -> Value {
    let (name, email, phone) = PEOPLE[i];
    json!({ "fields": {
        "full_name": name, "email": email, "phone": phone, "birth_date": "1990-04-0".to_owned() + &(i + 1).to_string(),
        "diagnosis": DIAGNOSIS, "stage": "applied", "score": 3.5 + i as f64, "remote": i.is_multiple_of(2)
    }})
}

async fn json_of(res: reqwest::Response) -> (u16, Value, Option<String>) {
    let status = res.status().as_u16();
    let etag = res.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, res.json().await.unwrap_or_default(), etag)
}

async fn create(c: &UserClient, body: Value) -> (u16, Value, Option<String>) {
    json_of(c.send(Method::POST, &format!("{ORG}/profiles"), Some(body)).await).await
}

async fn count(c: &UserClient) -> usize {
    let (_, body, _) = json_of(c.get(&format!("{ORG}/profiles?limit=200")).await).await;
    body["profiles"].as_array().map_or(0, Vec::len)
}

fn rules(body: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["path"].as_str().unwrap_or("").to_owned(), e["rule"].as_str().unwrap_or("").to_owned()))
        .collect();
    out.sort();
    out
}

async fn patch(c: &UserClient, id: &str, etag: Option<&str>, body: Value) -> (u16, Value, Option<String>) {
    let mut req = c
        .request(Method::PATCH, &format!("{ORG}/profiles/{id}"))
        .header("content-type", "application/merge-patch+json")
        .body(body.to_string());
    if let Some(e) = etag {
        req = req.header("if-match", e);
    }
    json_of(req.send().await.unwrap_or_else(|e| panic!("{e}"))).await
}

backend_tests! {
    // claim 000.2 002.14 004.6
    async fn records_are_created_read_patched_and_deleted_with_etags(backend) {
        let app = spawn_app(backend).await;
        let o = setup(&app).await;
        let (status, created, etag) = create(&o.editor, person(0)).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(etag.as_deref(), Some("\"1\""));
        let id = created["id"].as_str().unwrap_or("").to_owned();
        assert_eq!(created["fields"]["email"], "quentin.zabriskie@example.org");
        assert_eq!(created["fields"]["score"], 3.5);
        assert_eq!(created["revision"], 1);
        assert!(created["created_by"].as_str().unwrap_or("").starts_with("user:"), "{created}");
        assert_eq!(created["created_at"], created["updated_at"]);

        let (status, read, etag) = json_of(o.viewer.get(&format!("{ORG}/profiles/{id}")).await).await;
        assert_eq!((status, etag.as_deref()), (200, Some("\"1\"")));
        assert_eq!(read["fields"]["full_name"], PEOPLE[0].0);

        // Updates need If-Match: missing is 428, stale is 412, and neither writes.
        let (status, body, _) = patch(&o.editor, &id, None, json!({"fields": {"stage": "hired"}})).await;
        assert_eq!(status, 428, "{body}");
        assert_eq!(body["type"], "urn:strongroom:problem:precondition-required");
        let (status, body, _) = patch(&o.editor, &id, Some("\"7\""), json!({"fields": {"stage": "hired"}})).await;
        assert_eq!(status, 412, "{body}");
        let (status, patched, etag) =
            patch(&o.editor, &id, Some("\"1\""), json!({"fields": {"stage": "hired", "diagnosis": null, "email": "Q.Z@Example.org"}})).await;
        assert_eq!(status, 200, "{patched}");
        assert_eq!(etag.as_deref(), Some("\"2\""));
        assert_eq!(patched["fields"]["stage"], "hired");
        assert_eq!(patched["fields"]["email"], "q.z@example.org");
        assert!(patched["fields"].get("diagnosis").is_none(), "null removes a field");
        assert_eq!(patched["fields"]["full_name"], PEOPLE[0].0, "untouched fields stay");
        assert!(patched["updated_at"].as_str() > created["updated_at"].as_str());
        let (status, _, _) = patch(&o.editor, &id, Some("\"1\""), json!({"fields": {"stage": "applied"}})).await;
        assert_eq!(status, 412, "the old ETag no longer matches");

        // Viewers cannot write; deletes need the current ETag too.
        let (status, _, _) = patch(&o.viewer, &id, Some("\"2\""), json!({"fields": {"stage": "applied"}})).await;
        assert_eq!(status, 403);
        let del = |etag: Option<&'static str>| {
            let mut req = o.editor.request(Method::DELETE, &format!("{ORG}/profiles/{id}"));
            if let Some(e) = etag {
                req = req.header("if-match", e);
            }
            req.send()
        };
        assert_eq!(del(None).await.map(|r| r.status().as_u16()).unwrap_or(0), 428);
        assert_eq!(del(Some("\"1\"")).await.map(|r| r.status().as_u16()).unwrap_or(0), 412);
        assert_eq!(del(Some("\"2\"")).await.map(|r| r.status().as_u16()).unwrap_or(0), 204);
        let (status, body, _) = json_of(o.viewer.get(&format!("{ORG}/profiles/{id}")).await).await;
        assert_eq!(status, 404, "{body}");
        let (status, _, _) = json_of(o.viewer.get(&format!("{ORG}/profiles/not-an-id")).await).await;
        assert_eq!(status, 404);
        app.shutdown().await.ok();
    }

    // claim 002.14
    async fn bad_input_names_every_problem_and_writes_nothing(backend) {
        let app = spawn_app(backend).await;
        let o = setup(&app).await;
        let (status, body, _) = create(&o.editor, json!({ "fields": {
            "email": "not-an-address", "birth_date": "1990-02-30", "score": "high", "remote": "yes",
            "stage": "fired", "nickname": "Q", "phone": "call me maybe",
        }})).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["type"], "urn:strongroom:problem:validation-failed");
        let want: Vec<(String, String)> = [
            ("/birth_date", "format"), ("/email", "format"), ("/full_name", "required"), ("/nickname", "unknown"),
            ("/phone", "format"), ("/remote", "type"), ("/score", "type"), ("/stage", "enum"),
        ].iter().map(|(p, r)| ((*p).to_owned(), (*r).to_owned())).collect();
        assert_eq!(rules(&body), want);
        assert!(!body.to_string().contains("not-an-address") && !body.to_string().contains("call me"), "values are not echoed: {body}");

        let huge = "x".repeat(1_001);
        let (status, body, _) = create(&o.editor, json!({ "fields": { "full_name": huge } })).await;
        assert_eq!((status, rules(&body)), (422, vec![("/full_name".to_owned(), "max_length".to_owned())]));

        let res = o.editor.request(Method::POST, &format!("{ORG}/profiles")).header("content-type", "application/json").body("{\"fields\": {\"full_name\": ").send().await.unwrap_or_else(|e| panic!("{e}"));
        let (status, body, _) = json_of(res).await;
        assert_eq!((status, body["type"].as_str()), (400, Some("urn:strongroom:problem:malformed-json")));
        let (status, body, _) = create(&o.editor, json!({ "fields": { "full_name": "A" }, "extra": 1 })).await;
        assert_eq!(status, 422, "{body}");
        let (status, _, _) = create(&o.editor, json!({ "fields": { "full_name": "A" }, "owner_user_id": uuid::Uuid::now_v7() })).await;
        assert_eq!(status, 422, "an owner must be an existing account");
        assert_eq!(count(&o.editor).await, 0, "nothing was written");

        let (_, created, _) = create(&o.editor, person(1)).await;
        let id = created["id"].as_str().unwrap_or("");
        let (status, body, _) = patch(&o.editor, id, Some("\"1\""), json!({"fields": {"full_name": null, "score": true}})).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(rules(&body), vec![("/full_name".to_owned(), "required".to_owned()), ("/score".to_owned(), "type".to_owned())]);
        let (_, after, etag) = json_of(o.editor.get(&format!("{ORG}/profiles/{id}")).await).await;
        assert_eq!((after["fields"]["full_name"].as_str(), etag.as_deref()), (Some(PEOPLE[1].0), Some("\"1\"")), "nothing half-applied");
        app.shutdown().await.ok();
    }

    // claim 000.2 001.6
    async fn each_role_sees_what_it_may(backend) {
        let app = spawn_app(backend).await;
        let o = setup(&app).await;
        let mut body = person(0);
        body["owner_user_id"] = json!(o.person_id);
        let (_, created, _) = create(&o.editor, body).await;
        let id = created["id"].as_str().unwrap_or("").to_owned();
        let path = format!("{ORG}/profiles/{id}");
        let all: Vec<&str> = vec!["birth_date", "diagnosis", "email", "full_name", "phone", "remote", "score", "stage"];
        let keys = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = v["fields"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
            k.sort();
            k
        };
        for (who, client) in [("owner", &o.owner), ("editor", &o.editor), ("record owner", &o.person)] {
            let (status, v, _) = json_of(client.get(&path).await).await;
            assert_eq!(status, 200, "{who}: {v}");
            assert_eq!(keys(&v), all, "{who} sees every field");
            assert_eq!(v["fields"]["diagnosis"], DIAGNOSIS, "{who}");
        }
        let (status, v, _) = json_of(o.viewer.get(&path).await).await;
        assert_eq!(status, 200);
        assert_eq!(keys(&v), ["email", "full_name", "phone", "remote", "score", "stage"], "viewers see no sensitive field");
        assert_eq!(v["withheld"], json!(["birth_date", "diagnosis"]));
        assert!(!v.to_string().contains(DIAGNOSIS));
        let (status, v, _) = json_of(o.viewer.get(&format!("{ORG}/profiles")).await).await;
        assert_eq!(status, 200);
        assert!(!v.to_string().contains(DIAGNOSIS), "nor in lists");
        for path in [path.clone(), format!("{ORG}/profiles")] {
            let (status, v, _) = json_of(o.auditor.get(&path).await).await;
            assert_eq!(status, 403, "auditors read no field values: {v}");
        }
        // The record owner sees their own record and nothing else.
        let (_, mine, _) = json_of(o.person.get("/v1/me/profiles").await).await;
        assert_eq!(mine["profiles"][0]["profile_id"], json!(id));
        let (_, other, _) = create(&o.editor, person(1)).await;
        let (status, _, _) = json_of(o.person.get(&format!("{ORG}/profiles/{}", other["id"].as_str().unwrap_or(""))).await).await;
        assert_eq!(status, 404, "another's record looks like none");
        let (status, _, _) = json_of(o.person.get(&format!("{ORG}/profiles")).await).await;
        assert_eq!(status, 404, "a non-member cannot list");
        // The record owner is not let past a suspension.
        let org_id = app.engine().org_by_slug(&domain::OrgSlug::parse("acme-people").unwrap_or_else(|e| panic!("{e}"))).await.unwrap_or_else(|e| panic!("{e}")).id;
        let platform = app.engine().authorize_local_admin(domain::PlatformAction::ManageOrgs);
        app.engine().update_org(&platform, org_id, None, Some(domain::OrgStatus::Suspended)).await.unwrap_or_else(|e| panic!("{e}"));
        let (status, v, _) = json_of(o.person.get(&path).await).await;
        assert_eq!((status, v["type"].as_str()), (403, Some("urn:strongroom:problem:org-suspended")), "{v}");
        app.engine().update_org(&platform, org_id, None, Some(domain::OrgStatus::Active)).await.unwrap_or_else(|e| panic!("{e}"));

        // Service accounts: profiles:read withholds sensitive fields, profiles:read-sensitive does not.
        for (scope, sees_sensitive) in [("profiles:read", false), ("profiles:read profiles:read-sensitive", true)] {
            let res = o.owner.send(Method::POST, &format!("{ORG}/service-accounts"), Some(json!({"name": scope, "scope": scope}))).await;
            let sa: Value = res.json().await.unwrap_or_default();
            let form = [("grant_type", "client_credentials"), ("client_id", sa["client_id"].as_str().unwrap_or("")), ("client_secret", sa["client_secret"].as_str().unwrap_or(""))];
            let t: Value = app.client.post(app.url("/v1/oauth/token")).form(&form).send().await.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_default();
            let token = t["access_token"].as_str().unwrap_or_else(|| panic!("{t}"));
            let res = app.client.get(app.url(&path)).bearer_auth(token).send().await.unwrap_or_else(|e| panic!("{e}"));
            let (status, v, _) = json_of(res).await;
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["fields"].get("diagnosis").is_some(), sees_sensitive, "{scope}: {v}");
            let res = app.client.post(app.url(&format!("{ORG}/profiles"))).bearer_auth(token).json(&person(2)).send().await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(res.status(), 403, "{scope} cannot write");
        }
        app.shutdown().await.ok();
    }

    // claim 002.1 003.7
    async fn search_finds_by_exact_value_and_nothing_else(backend) {
        let app = spawn_app(backend).await;
        let o = setup(&app).await;
        let mut ids = Vec::new();
        for i in 0..3 {
            let (status, created, _) = create(&o.editor, person(i)).await;
            assert_eq!(status, 201, "{created}");
            ids.push(created["id"].as_str().unwrap_or("").to_owned());
        }
        let found = |q: &'static str| {
            let c = o.viewer.clone();
            async move {
                let (status, v, _) = json_of(c.get(&format!("{ORG}/profiles?{q}")).await).await;
                assert_eq!(status, 200, "{q}: {v}");
                v["profiles"].as_array().into_iter().flatten().map(|p| p["id"].as_str().unwrap_or("").to_owned()).collect::<Vec<_>>()
            }
        };
        assert_eq!(found("email=m.vantongeren%40example.net").await, [ids[1].clone()]);
        assert_eq!(found("email=M.Vantongeren%40Example.NET").await, [ids[1].clone()], "addresses are normalised");
        assert!(found("email=m.vantongeren%40example.ne").await.is_empty(), "a prefix is not a match");
        assert_eq!(found("phone=%2B46701234567").await, [ids[2].clone()], "phones match on their digits");
        assert_eq!(found("remote=true").await, [ids[0].clone(), ids[2].clone()], "plain fields filter");
        assert_eq!(found("remote=true&score=5.5").await, [ids[2].clone()]);
        assert!(found("stage=hired").await.is_empty());
        // A sensitive field is searchable only by those who may see it: a match would reveal the value.
        let (status, v, _) = json_of(o.editor.get(&format!("{ORG}/profiles?birth_date=1990-04-02")).await).await;
        assert_eq!((status, v["profiles"][0]["id"].as_str()), (200, Some(ids[1].as_str())), "{v}");
        let (status, v, _) = json_of(o.viewer.get(&format!("{ORG}/profiles?birth_date=1990-04-02")).await).await;
        assert_eq!((status, v["errors"][0]["rule"].as_str()), (422, Some("searchable")), "{v}");
        for (q, rule) in [("full_name=Marguerite", "searchable"), ("diagnosis=x", "searchable"), ("shoe=9", "unknown"), ("score=lots", "type"), ("limit=0", "range"), ("email=vantongeren", "format")] {
            let (status, v, _) = json_of(o.viewer.get(&format!("{ORG}/profiles?{q}")).await).await;
            assert_eq!(status, 422, "{q}: {v}");
            assert_eq!(v["errors"][0]["rule"], rule, "{q}: {v}");
        }
        // Cursor pagination walks every record once.
        let (_, first, _) = json_of(o.viewer.get(&format!("{ORG}/profiles?limit=2")).await).await;
        let cursor = first["next_cursor"].as_str().unwrap_or_else(|| panic!("{first}")).to_owned();
        let (_, second, _) = json_of(o.viewer.get(&format!("{ORG}/profiles?limit=2&cursor={cursor}")).await).await;
        let mut seen: Vec<String> = [&first, &second].iter().flat_map(|v| v["profiles"].as_array().cloned().unwrap_or_default()).map(|p| p["id"].as_str().unwrap_or("").to_owned()).collect();
        assert!(second["next_cursor"].is_null());
        seen.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(seen, want);
        app.shutdown().await.ok();
    }

    // claim 002.13
    async fn schema_changes_that_would_lose_data_are_refused_and_the_report_counts_fields(backend) {
        let app = spawn_app(backend).await;
        let o = setup(&app).await;
        let (status, v, _) = json_of(o.editor.send(Method::PUT, &format!("{ORG}/schema"), Some(schema())).await).await;
        assert_eq!(status, 403, "editors do not manage the schema: {v}");
        let (_, _, _) = create(&o.editor, person(0)).await;
        let mut p = person(1);
        if let Some(m) = p["fields"].as_object_mut() {
            m.remove("phone");
        }
        let _ = create(&o.editor, p).await;

        let mut next = schema();
        let fields = next["fields"].as_array_mut().unwrap_or_else(|| panic!("fields"));
        fields.retain(|f| f["name"] != "diagnosis");
        fields[0]["type"] = json!("number");
        fields.push(json!({ "name": "city", "type": "string", "required": true }));
        let (status, v, _) = json_of(o.owner.send(Method::PUT, &format!("{ORG}/schema"), Some(next)).await).await;
        assert_eq!(status, 422, "{v}");
        let got: Vec<&str> = v["errors"].as_array().into_iter().flatten().filter_map(|e| e["rule"].as_str()).collect();
        assert_eq!(got, ["removed", "type_change", "required"], "{v}");
        assert!(v["errors"][0]["message"].as_str().unwrap_or("").contains("deprecate it instead"), "{v}");

        let mut ok = schema();
        ok["fields"][4]["deprecated"] = json!(true);
        if let Some(f) = ok["fields"].as_array_mut() {
            f.push(json!({ "name": "city", "type": "string" }));
        }
        let res = o.owner.request(Method::PUT, &format!("{ORG}/schema")).header("if-match", "\"1\"").json(&ok).send().await.unwrap_or_else(|e| panic!("{e}"));
        let (status, v, etag) = json_of(res).await;
        assert_eq!((status, etag.as_deref()), (200, Some("\"2\"")), "{v}");
        let res = o.owner.request(Method::PUT, &format!("{ORG}/schema")).header("if-match", "\"1\"").json(&ok).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 412, "a stale schema version");
        let (status, v, _) = create(&o.editor, json!({"fields": {"full_name": "A", "diagnosis": "x"}})).await;
        assert_eq!((status, v["errors"][0]["rule"].as_str()), (422, Some("deprecated")), "{v}");

        let (status, report, _) = json_of(o.auditor.get(&format!("{ORG}/schema/personal-data")).await).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["profiles"], 2);
        let counts: Vec<(String, String, u64)> = report["fields"].as_array().into_iter().flatten().map(|f| (f["name"].as_str().unwrap_or("").to_owned(), f["classification"].as_str().unwrap_or("").to_owned(), f["profiles"].as_u64().unwrap_or(99))).collect();
        let want: Vec<(String, String, u64)> = [("full_name", "personal", 2), ("email", "personal", 2), ("phone", "personal", 1), ("birth_date", "sensitive", 2), ("diagnosis", "sensitive", 2), ("city", "personal", 0)]
            .iter().map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), *c)).collect();
        assert_eq!(counts, want, "plain fields are not listed: {report}");
        app.shutdown().await.ok();
    }

    // claim 000.2 000.6
    async fn ciphertext_moved_to_another_record_fails_and_rotation_rewraps_record_keys(backend) {
        let app = spawn_app(backend).await;
        let o = setup(&app).await;
        let (_, a, _) = create(&o.editor, person(0)).await;
        let (_, b, _) = create(&o.editor, person(1)).await;
        let (a, b) = (a["id"].as_str().unwrap_or("").to_owned(), b["id"].as_str().unwrap_or("").to_owned());
        let org = app.engine().org_by_slug(&domain::OrgSlug::parse("acme-people").unwrap_or_else(|e| panic!("{e}"))).await.unwrap_or_else(|e| panic!("{e}")).id;

        // Rotation: new records use version 2, old ones are re-wrapped, search still works.
        // Through the operator's command, beside the running server.
        let (code, out, err) = crate::cli(&app.db, &["keys", "rotate", "--org", "acme-people", "--dev"], &[]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("key version 2") && out.contains("Re-wrapped 2 record keys under version 2"), "{out}");
        assert_eq!(app.engine().rewrap_record_keys(org).await.ok(), Some(0), "safe to repeat");
        let (_, found, _) = json_of(o.viewer.get(&format!("{ORG}/profiles?email=quentin.zabriskie%40example.org")).await).await;
        assert_eq!(found["profiles"][0]["id"], json!(a), "{found}");
        let (status, v, _) = json_of(o.editor.get(&format!("{ORG}/profiles/{b}")).await).await;
        assert_eq!((status, v["fields"]["full_name"].as_str()), (200, Some(PEOPLE[1].0)));

        // Copy b's sealed values onto a: a no longer decrypts.
        let raw = app.db.raw_sql(&format!(
            "UPDATE profiles SET sealed = (SELECT sealed FROM profiles WHERE id = {}) WHERE id = {}",
            app.db.uuid_literal(&b), app.db.uuid_literal(&a)
        )).await;
        assert_eq!(raw, 1);
        let (status, v, _) = json_of(o.editor.get(&format!("{ORG}/profiles/{a}")).await).await;
        assert_eq!(status, 500, "{v}");
        assert_eq!(v["type"], "urn:strongroom:problem:integrity");
        assert!(!v.to_string().contains(PEOPLE[1].0));

        // Crypto-shredded: a search on an encrypted field finds nothing, on either backend.
        app.engine().keys().destroy_org(org).await.unwrap_or_else(|e| panic!("{e}"));
        let (status, found, _) = json_of(o.viewer.get(&format!("{ORG}/profiles?email=quentin.zabriskie%40example.org")).await).await;
        assert_eq!((status, found["profiles"].as_array().map(Vec::len)), (200, Some(0)), "{found}");
        app.shutdown().await.ok();
    }

    // claim 000.5 001.4 003.7
    async fn a_full_dump_holds_none_of_the_seeded_values(backend) {
        let app = spawn_app(backend).await;
        let o = setup(&app).await;
        for i in 0..3 {
            let (status, v, _) = create(&o.editor, person(i)).await;
            assert_eq!(status, 201, "{v}");
        }
        let mut dumps: Vec<(String, Vec<u8>)> = vec![("rows".into(), app.db.dump_rows().await)];
        assert!(contains(&dumps[0].1, b"profile_terms") && contains(&dumps[0].1, b"applied"), "the dump is real: plain values are there");
        if backend == Backend::Postgres {
            let pg_dump = format!("{}/pg_dump", std::env::var("PG_TEST_BIN").unwrap_or_else(|_| panic!("PG_TEST_BIN: run scripts/test")));
            let out = std::process::Command::new(pg_dump).arg(app.db.database_url.clone().unwrap_or_default()).output().unwrap_or_else(|e| panic!("pg_dump: {e}"));
            assert!(out.status.success() && contains(&out.stdout, b"profiles"), "{}", String::from_utf8_lossy(&out.stderr));
            dumps.push(("pg_dump".into(), out.stdout));
        }
        for (file, bytes) in testkit::files_under(&app.db.data_dir()) {
            dumps.push((file, bytes));
        }
        for (name, bytes) in &dumps {
            for (full, email, phone) in PEOPLE {
                let last = full.split(' ').next_back().unwrap_or(full);
                let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
                for needle in [full, last, email, phone, &digits, DIAGNOSIS, "1990-04-0"] {
                    assert!(!contains(bytes, needle.as_bytes()), "{name} holds {needle:?}");
                }
            }
        }
        app.shutdown().await.ok();
    }
}
