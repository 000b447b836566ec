//! Erasure end to end: deleting a profile removes its values, its
//! blind-index terms, its attachments' rows and their encrypted blobs, and
//! leaves one audit entry without a value; the chain still verifies.

use reqwest::Method;
use serde_json::{Value, json};
use testkit::{backend_tests, files_under, spawn_app};

const PW: &str = "correct horse battery staple";
const ORG: &str = "/v1/orgs/acme-erase";

backend_tests! {
    async fn deleting_a_profile_erases_its_values_terms_and_attachments(backend) {
        let app = spawn_app(backend).await;
        let org = app.create_org("acme-erase").await;
        let (_, _, owner) = app.signed_in_member(org.id, domain::Role::Owner, PW).await;
        let schema = json!({ "fields": [
            { "name": "full_name", "type": "string", "required": true, "classification": "personal" },
            { "name": "email", "type": "email", "searchable": true, "classification": "personal" }
        ]});
        assert_eq!(owner.send(Method::PUT, &format!("{ORG}/schema"), Some(schema)).await.status(), 200);
        let mut ids = Vec::new();
        for (name, mail) in [("Erasmus Forgotten", "erasmus@example.org"), ("Keeper Stays", "keeper@example.org")] {
            let res = owner.send(Method::POST, &format!("{ORG}/profiles"), Some(json!({ "fields": { "full_name": name, "email": mail } }))).await;
            let v: Value = res.json().await.unwrap_or_default();
            ids.push(v["id"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned());
        }
        let (gone, kept) = (&ids[0], &ids[1]);
        let res = owner
            .request(Method::PUT, &format!("{ORG}/profiles/{gone}/attachments/letter.txt"))
            .header("content-type", "text/plain")
            .body("a letter about Erasmus")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 201);
        let blobs = app.db.data_dir().join("blobs");
        assert_eq!(files_under(&blobs).len(), 1);

        let res = owner.get(&format!("{ORG}/profiles/{gone}")).await;
        let etag = res.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let res = owner.request(Method::DELETE, &format!("{ORG}/profiles/{gone}")).header("if-match", etag).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 204);

        // Gone from every place Strongroom keeps it.
        assert_eq!(owner.get(&format!("{ORG}/profiles/{gone}")).await.status(), 404);
        let found: Value = owner.get(&format!("{ORG}/profiles?email=erasmus%40example.org")).await.json().await.unwrap_or_default();
        assert_eq!(found["profiles"].as_array().map(Vec::len), Some(0), "{found}");
        let literal = app.db.uuid_literal(gone);
        for table in ["profiles", "profile_terms", "attachments"] {
            let column = if table == "profiles" { "id" } else { "profile_id" };
            let left = app.db.raw_sql(&format!("DELETE FROM {table} WHERE {column} = {literal}")).await;
            assert_eq!(left, 0, "{table} still holds rows of the erased profile");
        }
        assert!(files_under(&blobs).is_empty(), "the attachment's blob is gone");
        // The other record is untouched.
        assert_eq!(owner.get(&format!("{ORG}/profiles/{kept}")).await.status(), 200);

        // One entry without a value, and the chain verifies.
        let trail: Value = owner.get(&format!("{ORG}/audit?action=profile.delete")).await.json().await.unwrap_or_default();
        let entries = trail["entries"].as_array().cloned().unwrap_or_default();
        assert_eq!(entries.len(), 1, "{trail}");
        assert_eq!(entries[0]["target"], format!("profile:{gone}"));
        let all: Value = owner.get(&format!("{ORG}/audit?limit=1000")).await.json().await.unwrap_or_default();
        assert!(!all.to_string().contains("Erasmus") && !all.to_string().contains("erasmus@"), "no value in the trail");
        let (code, out, err) = crate::cli(&app.db, &["audit", "verify", "--org", "acme-erase", "--dev"], &[]);
        assert_eq!(code, 0, "{out}{err}");
        app.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
    }
}

const RORG: &str = "/v1/orgs/acme-retain";

/// A config file with only a `[retention]` table.
fn retention_conf(dir: &std::path::Path, every: &str) -> std::path::PathBuf {
    let path = dir.join("strongroom.toml");
    std::fs::write(&path, format!("[retention]\nsweep_every = \"{every}\"\n")).unwrap_or_else(|e| panic!("{e}"));
    path
}

backend_tests! {
    // claim 002.15 002.14
    async fn retention_sweeps_delete_exactly_the_expired_profiles_and_dry_runs_nothing(backend) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let conf = retention_conf(dir.path(), "off");
        let mut app = testkit::spawn_app_with(backend, |o| o.config_file = Some(conf.clone())).await.unwrap_or_else(|e| panic!("{e:#}"));
        let org = app.create_org("acme-retain").await;
        let email = format!("owner-{}@example.com", uuid::Uuid::new_v4().simple());
        let u = app.create_user(&email, PW, false).await;
        app.add_member(org.id, u.id, domain::Role::Owner).await;
        let editor_email = format!("editor-{}@example.com", uuid::Uuid::new_v4().simple());
        let e = app.create_user(&editor_email, PW, false).await;
        app.add_member(org.id, e.id, domain::Role::Editor).await;
        let (owner, _, _) = app.login_with_mfa(&email, PW).await;
        let (editor, _, _) = app.login_with_mfa(&editor_email, PW).await;
        let schema = json!({ "fields": [
            { "name": "full_name", "type": "string", "required": true, "classification": "personal" },
            { "name": "leaving_date", "type": "date", "classification": "personal" },
            { "name": "team", "type": "string", "classification": "plain" }
        ]});
        assert_eq!(owner.send(Method::PUT, &format!("{RORG}/schema"), Some(schema)).await.status(), 200);
        let create = |fields: Value| {
            let owner = &owner;
            async move {
                let res = owner.send(Method::POST, &format!("{RORG}/profiles"), Some(json!({ "fields": fields }))).await;
                let v: Value = res.json().await.unwrap_or_default();
                v["id"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned()
            }
        };
        // Left in 2020: expired by the date rule.
        let left = create(json!({ "full_name": "Lefty Longgone", "leaving_date": "2020-01-31", "team": "a" })).await;
        // Leaving in the future: kept.
        let staying = create(json!({ "full_name": "Stella Stays", "leaving_date": "2099-12-31" })).await;
        // Not changed since 2020: expired by the update rule.
        let stale = create(json!({ "full_name": "Stanley Stale" })).await;
        // Recent and no date: kept.
        let fresh = create(json!({ "full_name": "Fresh Prince" })).await;
        // Left in 2019, with an attachment that must go too.
        let attached = create(json!({ "full_name": "Atticus Attached", "leaving_date": "2019-06-01" })).await;
        let res = owner
            .request(Method::PUT, &format!("{RORG}/profiles/{attached}/attachments/cv.txt"))
            .header("content-type", "text/plain")
            .body("the CV of Atticus")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 201);
        let stale_at = app.db.raw_sql(&format!("UPDATE profiles SET updated_at = '2020-01-01T00:00:00Z' WHERE id = {}", app.db.uuid_literal(&stale))).await;
        assert_eq!(stale_at, 1);
        let blobs = app.db.data_dir().join("blobs");
        assert_eq!(files_under(&blobs).len(), 1);

        // Bad policies are refused, naming what is wrong; editors may not set one.
        let bad = json!({ "after_update_days": 0, "after_date": { "field": "full_name", "days": 30 } });
        let res = owner.send(Method::PUT, &format!("{RORG}/retention"), Some(bad)).await;
        assert_eq!(res.status(), 422);
        let problem: Value = res.json().await.unwrap_or_default();
        let paths: Vec<&str> = problem["errors"].as_array().into_iter().flatten().filter_map(|e| e["path"].as_str()).collect();
        assert_eq!(paths, ["/after_update_days", "/after_date/field"], "{problem}");
        let res = owner.send(Method::PUT, &format!("{RORG}/retention"), Some(json!({ "after_days": 3 }))).await;
        assert_eq!(res.status(), 422, "an unknown member");
        let policy = json!({ "after_update_days": 365, "after_date": { "field": "leaving_date", "days": 30 } });
        assert_eq!(editor.send(Method::PUT, &format!("{RORG}/retention"), Some(policy.clone())).await.status(), 403);
        let empty: Value = owner.get(&format!("{RORG}/retention")).await.json().await.unwrap_or_default();
        assert_eq!(empty["policy"], json!({}), "no policy yet: {empty}");
        let res = owner.send(Method::PUT, &format!("{RORG}/retention"), Some(policy.clone())).await;
        assert_eq!(res.status(), 200);
        let set: Value = editor.get(&format!("{RORG}/retention")).await.json().await.unwrap_or_default();
        assert_eq!(set["policy"], policy, "{set}");
        assert_eq!(set["updated_by"], format!("user:{}", u.id));

        let mut expired = vec![left.clone(), stale.clone(), attached.clone()];
        expired.sort();
        let listed = |v: &Value| {
            let mut ids: Vec<String> = v["profiles"].as_array().into_iter().flatten().filter_map(|i| i.as_str().map(str::to_owned)).collect();
            ids.sort();
            ids
        };
        let all = [&left, &staying, &stale, &fresh, &attached];

        // Dry runs, over the API and the command line, list and keep.
        assert_eq!(editor.send(Method::POST, &format!("{RORG}/retention/sweep"), Some(json!({ "dry_run": true }))).await.status(), 403);
        let res = owner.send(Method::POST, &format!("{RORG}/retention/sweep"), Some(json!({ "dry_run": true }))).await;
        assert_eq!(res.status(), 200);
        let dry: Value = res.json().await.unwrap_or_default();
        assert_eq!((dry["checked"].as_u64(), dry["expired"].as_u64(), dry["deleted"].as_u64()), (Some(5), Some(3), Some(0)), "{dry}");
        assert_eq!(listed(&dry), expired);
        let (code, out, err) = crate::cli(&app.db, &["retention", "sweep", "--org", "acme-retain", "--dry-run", "--dev"], &[]);
        assert_eq!(code, 0, "{out}{err}");
        let mut cli_listed: Vec<String> = out.lines().map(str::to_owned).collect();
        cli_listed.sort();
        assert_eq!(cli_listed, expired, "{err}");
        assert!(err.contains("3 of 5 profiles would be deleted"), "{err}");
        for id in all {
            assert_eq!(owner.get(&format!("{RORG}/profiles/{id}")).await.status(), 200, "a dry run deletes nothing");
        }
        assert_eq!(files_under(&blobs).len(), 1);

        // The sweep deletes exactly the expired ones, attachments and all.
        let res = owner.send(Method::POST, &format!("{RORG}/retention/sweep"), Some(json!({}))).await;
        assert_eq!(res.status(), 200);
        let swept: Value = res.json().await.unwrap_or_default();
        assert_eq!((swept["expired"].as_u64(), swept["deleted"].as_u64()), (Some(3), Some(3)), "{swept}");
        for id in &expired {
            assert_eq!(owner.get(&format!("{RORG}/profiles/{id}")).await.status(), 404);
            let left_rows = app.db.raw_sql(&format!("DELETE FROM profile_terms WHERE profile_id = {}", app.db.uuid_literal(id))).await;
            assert_eq!(left_rows, 0);
        }
        for id in [&staying, &fresh] {
            assert_eq!(owner.get(&format!("{RORG}/profiles/{id}")).await.status(), 200);
        }
        assert!(files_under(&blobs).is_empty(), "the expired profile's attachment is gone");

        // The trail says so, with identifiers and rules only.
        let trail: Value = owner.get(&format!("{RORG}/audit?action=profile.delete")).await.json().await.unwrap_or_default();
        let mut reasons: Vec<(String, String)> = trail["entries"].as_array().into_iter().flatten()
            .map(|e| (e["target"].as_str().unwrap_or("").to_owned(), e["fields"][0].as_str().unwrap_or("").to_owned()))
            .collect();
        reasons.sort();
        let mut want = vec![
            (format!("profile:{left}"), "retention:after_date".to_owned()),
            (format!("profile:{stale}"), "retention:after_update".to_owned()),
            (format!("profile:{attached}"), "retention:after_date".to_owned()),
        ];
        want.sort();
        assert_eq!(reasons, want, "{trail}");
        let sweeps: Value = owner.get(&format!("{RORG}/audit?action=retention.sweep")).await.json().await.unwrap_or_default();
        let sweeps = sweeps["entries"].as_array().cloned().unwrap_or_default();
        assert_eq!(sweeps.len(), 3, "two dry runs and one sweep");
        assert!(sweeps.iter().any(|s| s["fields"] == json!(["checked:5", "expired:3", "deleted:3", "decrypted:leaving_date:3"])), "{sweeps:?}");
        let everything: Value = owner.get(&format!("{RORG}/audit?limit=1000")).await.json().await.unwrap_or_default();
        let text = everything.to_string();
        assert!(!text.contains("Lefty") && !text.contains("2020-01-31"), "no value in the trail");

        // Scheduled: a newly expired profile goes without anyone asking.
        let later = create(json!({ "full_name": "Leona Later", "leaving_date": "2018-03-03" })).await;
        retention_conf(dir.path(), "1s");
        app.restart_with(|o| o.config_file = Some(conf.clone())).await.unwrap_or_else(|e| panic!("{e:#}"));
        let owner = owner.on(&app);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while owner.get(&format!("{RORG}/profiles/{later}")).await.status() != 404 {
            assert!(std::time::Instant::now() < deadline, "the scheduled sweep did not delete the expired profile");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        for id in [&staying, &fresh] {
            assert_eq!(owner.get(&format!("{RORG}/profiles/{id}")).await.status(), 200);
        }
        let trail: Value = owner.get(&format!("{RORG}/audit?action=profile.delete")).await.json().await.unwrap_or_default();
        let by_job = trail["entries"].as_array().into_iter().flatten().find(|e| e["target"] == format!("profile:{later}")).cloned().unwrap_or_default();
        assert_eq!(by_job["actor"], "system:retention", "{trail}");

        // Clearing the policy keeps everything from then on.
        let cleared = owner.send(Method::PUT, &format!("{RORG}/retention"), Some(json!({}))).await;
        assert_eq!(cleared.status(), 200);
        let (code, out, err) = crate::cli(&app.db, &["retention", "show", "--org", "acme-retain", "--dev"], &[]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("nothing expires"), "{out}");
        let (code, _, err) = crate::cli(&app.db, &["retention", "set", "--org", "acme-retain", "--after-date", "full_name:10", "--dev"], &[]);
        assert_ne!(code, 0);
        assert!(err.contains("/after_date/field") && err.contains("not a date field"), "{err}");
        let (code, out, err) = crate::cli(&app.db, &["audit", "verify", "--org", "acme-retain", "--dev"], &[]);
        assert_eq!(code, 0, "{out}{err}");
        app.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
    }
}

const PORG: &str = "/v1/orgs/acme-pseudo";

/// People whose every personal value is distinctive enough to search for.
const PEOPLE: [(&str, &str, &str, &str, &str, &str, f64); 4] = [
    (
        "Quintessa Marlowbright",
        "quintessa.m@realmail.test",
        "+44 20 7946 0111",
        "1983-04-17",
        "Wolverhampton",
        "Chronic quibblitis",
        51234.0,
    ),
    (
        "Bartholomew Zinkerdale",
        "bart.zinkerdale@realmail.test",
        "+44 20 7946 0222",
        "1975-11-02",
        "Wolverhampton",
        "Acute snorfle syndrome",
        48000.5,
    ),
    (
        "Ottoline Ferncastle",
        "o.ferncastle@realmail.test",
        "+44 20 7946 0333",
        "1990-01-30",
        "Kirkcudbright",
        "Mild grumbleosis",
        60500.0,
    ),
    (
        "Quintessa Marlowbright",
        "quintessa.m@realmail.test",
        "+44 20 7946 0111",
        "1983-04-17",
        "Kirkcudbright",
        "Chronic quibblitis",
        51234.0,
    ),
];

fn pseudo_schema() -> Value {
    json!({ "fields": [
        { "name": "full_name", "type": "string", "required": true, "classification": "personal" },
        { "name": "email", "type": "email", "searchable": true, "classification": "personal" },
        { "name": "phone", "type": "phone", "classification": "personal" },
        { "name": "birth_date", "type": "date", "classification": "personal" },
        { "name": "city", "type": "string", "classification": "personal" },
        { "name": "diagnosis", "type": "text", "classification": "sensitive" },
        { "name": "salary", "type": "number", "classification": "sensitive" },
        { "name": "team", "type": "string", "classification": "plain" },
        { "name": "stage", "type": "enum", "values": ["applied", "hired"], "classification": "plain" }
    ]})
}

/// The data rows of a CSV export, as header name → cell maps.
fn csv_rows(bytes: &[u8]) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_reader(bytes);
    let header: Vec<String> = reader.headers().unwrap_or_else(|e| panic!("{e}")).iter().map(str::to_owned).collect();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap_or_else(|e| panic!("{e}"));
            header.iter().cloned().zip(r.iter().map(str::to_owned)).collect()
        })
        .collect()
}

backend_tests! {
    // claim 001.14 002.1
    async fn a_pseudonymised_dataset_keeps_structure_and_no_original_value(backend) {
        let app = spawn_app(backend).await;
        let org = app.create_org("acme-pseudo").await;
        app.create_org("acme-devdata").await;
        let (u, _, owner) = app.signed_in_member(org.id, domain::Role::Owner, PW).await;
        assert_eq!(owner.send(Method::PUT, &format!("{PORG}/schema"), Some(pseudo_schema())).await.status(), 200);
        let mut ids = Vec::new();
        for (i, (name, mail, phone, born, city, diagnosis, salary)) in PEOPLE.iter().enumerate() {
            let fields = json!({
                "full_name": name, "email": mail, "phone": phone, "birth_date": born, "city": city,
                "diagnosis": diagnosis, "salary": salary, "team": format!("team-{}", i % 2),
                "stage": if i % 2 == 0 { "applied" } else { "hired" }
            });
            let res = owner.send(Method::POST, &format!("{PORG}/profiles"), Some(json!({ "fields": fields }))).await;
            let v: Value = res.json().await.unwrap_or_default();
            ids.push(v["id"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned());
        }

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let run = |name: &str| {
            let path = dir.path().join(name);
            let (code, out, err) = crate::cli(&app.db, &["pseudonymise", "--org", "acme-pseudo", "--out", path.to_str().unwrap_or(""), "--dev"], &[]);
            assert_eq!(code, 0, "{out}{err}");
            (path.clone(), std::fs::read(&path).unwrap_or_else(|e| panic!("{e}")))
        };
        let (path, bytes) = run("dev.csv");

        // No original personal or sensitive value, nor an id, anywhere in it.
        let mut originals: Vec<String> = ids.clone();
        for (name, mail, phone, born, city, diagnosis, salary) in PEOPLE {
            originals.extend([name, mail, phone, born, city, diagnosis].map(str::to_owned));
            originals.extend(name.split(' ').map(str::to_owned));
            originals.push(salary.to_string());
        }
        let lower = String::from_utf8_lossy(&bytes).to_lowercase();
        for value in &originals {
            assert!(!lower.contains(&value.to_lowercase()), "{value:?} is in the pseudonymised dataset");
        }

        // The structure and the plain values are kept; fakes look right and
        // equal values map to equal fakes.
        let rows = csv_rows(&bytes);
        assert_eq!(rows.len(), PEOPLE.len());
        let mut teams: Vec<&str> = rows.iter().map(|r| r["team"].as_str()).collect();
        teams.sort_unstable();
        assert_eq!(teams, ["team-0", "team-0", "team-1", "team-1"]);
        for r in &rows {
            assert!(domain::Email::parse(&r["email"]).is_ok(), "{:?}", r["email"]);
            assert!(domain::parse_date(&r["birth_date"]).is_some(), "{:?}", r["birth_date"]);
            assert_eq!(r["full_name"].split(' ').count(), 2, "{:?}", r["full_name"]);
            assert!(r["salary"].parse::<f64>().is_ok_and(|s| (38_000.0..=73_000.0).contains(&s)), "{:?}", r["salary"]);
            assert!(!r["diagnosis"].is_empty());
        }
        let names: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["full_name"].as_str()).collect();
        assert_eq!(names.len(), 3, "four records of three people: {names:?}");
        let cities: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["city"].as_str()).collect();
        assert_eq!(cities.len(), 2, "two cities: {cities:?}");
        for r in &rows {
            let twin = rows.iter().filter(|o| o["full_name"] == r["full_name"]).count();
            if twin == 2 {
                let pair: Vec<_> = rows.iter().filter(|o| o["full_name"] == r["full_name"]).collect();
                assert_eq!(pair[0]["email"], pair[1]["email"]);
                assert_eq!(pair[0]["birth_date"], pair[1]["birth_date"]);
                assert_eq!(pair[0]["diagnosis"], pair[1]["diagnosis"]);
                assert_eq!(pair[0]["salary"], pair[1]["salary"]);
            }
        }
        // Nothing links a row back to its record: one revision, one time.
        assert!(rows.iter().all(|r| r["revision"] == "1" && r["created_at"] == rows[0]["created_at"] && r["updated_at"] == rows[0]["created_at"]));
        let mut stages: Vec<&str> = rows.iter().map(|r| r["stage"].as_str()).collect();
        stages.sort_unstable();
        assert_eq!(stages, ["applied", "applied", "hired", "hired"]);

        // It imports into another organisation.
        let owner_dev = app.engine().org_by_slug(&domain::OrgSlug::parse("acme-devdata").unwrap_or_else(|e| panic!("{e}"))).await.unwrap_or_else(|e| panic!("{e}"));
        app.add_member(owner_dev.id, u.id, domain::Role::Owner).await;
        assert_eq!(owner.send(Method::PUT, "/v1/orgs/acme-devdata/schema", Some(pseudo_schema())).await.status(), 200);
        let (code, out, err) = crate::cli(&app.db, &["import", "--org", "acme-devdata", path.to_str().unwrap_or(""), "--dev"], &[]);
        assert_eq!(code, 0, "{out}{err}");
        let listed: Value = owner.get("/v1/orgs/acme-devdata/profiles?limit=50").await.json().await.unwrap_or_default();
        assert_eq!(listed["profiles"].as_array().map(Vec::len), Some(PEOPLE.len()), "{listed}");

        // The key is not kept: another run gives other fakes.
        let (_, again) = run("again.csv");
        let again_names: std::collections::BTreeSet<String> = csv_rows(&again).iter().map(|r| r["full_name"].clone()).collect();
        assert_ne!(again_names, names.iter().map(|s| (*s).to_owned()).collect(), "fakes must not repeat across runs");

        // Chained with its row count.
        let trail: Value = owner.get(&format!("{PORG}/audit?action=profile.pseudonymise.end")).await.json().await.unwrap_or_default();
        let ends = trail["entries"].as_array().cloned().unwrap_or_default();
        assert_eq!(ends.len(), 2, "{trail}");
        assert_eq!(ends[0]["fields"], json!(["rows:4"]));
        app.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
    }
}

backend_tests! {
    // claim 004.6
    async fn offboarding_hands_over_then_shreds_and_removes_with_a_report(backend) {
        let app = spawn_app(backend).await;
        let leaving = app.create_org("acme-leaving").await;
        let staying = app.create_org("acme-staying").await;
        let email = format!("owner-{}@example.com", uuid::Uuid::new_v4().simple());
        let u = app.create_user(&email, PW, false).await;
        app.add_member(leaving.id, u.id, domain::Role::Owner).await;
        app.add_member(staying.id, u.id, domain::Role::Owner).await;
        let (owner, _, _) = app.login_with_mfa(&email, PW).await;
        let schema = json!({ "fields": [{ "name": "full_name", "type": "string", "required": true }] });
        let mut ids = Vec::new();
        for (org, name) in [("acme-leaving", "Leaver One"), ("acme-leaving", "Leaver Two"), ("acme-leaving", "Leaver Three"), ("acme-staying", "Stayer")] {
            if ids.is_empty() || name == "Stayer" {
                assert_eq!(owner.send(Method::PUT, &format!("/v1/orgs/{org}/schema"), Some(schema.clone())).await.status(), 200);
            }
            let res = owner.send(Method::POST, &format!("/v1/orgs/{org}/profiles"), Some(json!({ "fields": { "full_name": name } }))).await;
            let v: Value = res.json().await.unwrap_or_default();
            ids.push(v["id"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned());
        }
        let res = owner
            .request(Method::PUT, &format!("/v1/orgs/acme-leaving/profiles/{}/attachments/contract.pdf", ids[0]))
            .header("content-type", "application/pdf")
            .body("%PDF the contract of Leaver One")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 201);
        let blobs = app.db.data_dir().join("blobs");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let handover = dir.path().join("handover");
        let handover_arg = handover.to_str().unwrap_or("");

        // Not without confirmation, and never into an existing directory.
        let (code, _, err) = crate::cli(&app.db, &["org", "offboard", "--org", "acme-leaving", "--export-dir", handover_arg, "--dev"], &[]);
        assert!(code != 0 && err.contains("--confirm acme-leaving"), "{err}");
        let (code, _, err) = crate::cli(&app.db, &["org", "offboard", "--org", "acme-leaving", "--export-dir", dir.path().to_str().unwrap_or(""), "--confirm", "acme-leaving", "--dev"], &[]);
        assert!(code != 0 && err.contains("must not exist"), "{err}");
        assert_eq!(owner.get(&format!("/v1/orgs/acme-leaving/profiles/{}", ids[0])).await.status(), 200, "nothing happened yet");

        let (code, out, err) = crate::cli(&app.db, &["org", "offboard", "--org", "acme-leaving", "--export-dir", handover_arg, "--confirm", "acme-leaving", "--dev"], &[]);
        assert_eq!(code, 0, "{out}{err}");

        // The handover holds every record, the attachment and the trail.
        let csv = std::fs::read_to_string(handover.join("profiles.csv")).unwrap_or_else(|e| panic!("{e}"));
        for name in ["Leaver One", "Leaver Two", "Leaver Three"] {
            assert!(csv.contains(name), "{csv}");
        }
        assert!(!csv.contains("Stayer"));
        let attachment = std::fs::read(handover.join("attachments").join(&ids[0]).join("000-contract.pdf")).unwrap_or_default();
        assert_eq!(attachment, b"%PDF the contract of Leaver One");
        assert!(std::fs::read_to_string(handover.join("attachments.csv")).unwrap_or_default().contains("contract.pdf"));
        let mut verifier = audit::ChainVerifier::new([]);
        let trail = std::fs::read_to_string(handover.join("audit.jsonl")).unwrap_or_default();
        assert!(trail.lines().count() > 3);
        for line in trail.lines() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}"));
            let e = crate::exports::entry_of(&v);
            assert!(verifier.push(&e), "the handed-over trail verifies: {line}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
        assert_eq!((mode(&handover), mode(&handover.join("profiles.csv"))), (0o700, 0o600));

        // The report: keys destroyed, a sample shown unreadable, rows counted.
        let report: Value = serde_json::from_slice(&std::fs::read(handover.join("offboarding-report.json")).unwrap_or_default()).unwrap_or_default();
        assert_eq!(report["keys"]["versions_destroyed"], 1, "{report}");
        assert_eq!(report["keys"]["unwrappable"], false);
        assert_eq!((report["ciphertext_sample"]["records"].as_u64(), report["ciphertext_sample"]["no_longer_decrypt"].as_u64()), (Some(3), Some(3)), "{report}");
        assert_eq!(report["rows_removed"]["profiles"], 3);
        assert_eq!(report["rows_removed"]["attachments"], 1);
        assert_eq!(report["rows_removed"]["memberships"], 1);
        assert_eq!(report["attachment_blobs"], json!({ "rows_removed": 1, "deleted": 1 }));
        assert!(out.contains("3 of 3 sampled records no longer decrypt"), "{out}");

        // Gone from the store, suspended; the other organisation untouched.
        for table in store::PURGED {
            let left = app.db.raw_sql(&format!("DELETE FROM {table} WHERE org_id = {}", app.db.uuid_literal(&leaving.id.to_string()))).await;
            assert_eq!(left, 0, "{table} still holds rows of the offboarded organisation");
        }
        assert!(files_under(&blobs).is_empty(), "its attachment blob is deleted");
        assert_ne!(owner.get(&format!("/v1/orgs/acme-leaving/profiles/{}", ids[0])).await.status(), 200);
        let kept: Value = owner.get(&format!("/v1/orgs/acme-staying/profiles/{}", ids[3])).await.json().await.unwrap_or_default();
        assert_eq!(kept["fields"]["full_name"], "Stayer", "{kept}");

        // Run again (as after a crash past the destruction), it finishes the
        // removal without a handover.
        let again = dir.path().join("again");
        let (code, out, err) = crate::cli(&app.db, &["org", "offboard", "--org", "acme-leaving", "--export-dir", again.to_str().unwrap_or(""), "--confirm", "acme-leaving", "--dev"], &[]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(err.contains("already destroyed") && !again.join("profiles.csv").exists(), "{err}");

        // Its chain survives it, verifies, and records the offboarding.
        let (code, out, err) = crate::cli(&app.db, &["audit", "verify", "--org", "acme-leaving", "--dev"], &[]);
        assert_eq!(code, 0, "{out}{err}");
        let (code, out, err) = crate::cli(&app.db, &["export", "--org", "acme-leaving", "--audit", "--format", "jsonl", "--dev"], &[]);
        assert_eq!(code, 0, "{err}");
        let last: Value = out.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|l| l["action"] == "org.offboard").unwrap_or_default();
        assert_eq!(last["outcome"], "success", "{out}");
        assert!(last["fields"].as_array().is_some_and(|f| f.contains(&json!("profiles:3")) && f.contains(&json!("sample_unreadable:3/3"))), "{last}");
        assert!(!out.contains("Leaver"), "no value in the trail");
        app.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
    }
}
