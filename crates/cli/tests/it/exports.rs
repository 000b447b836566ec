//! Exports end to end: the API's CSV and JSON-lines downloads and
//! `strongroom export` give every record decrypted (sensitive fields only
//! to roles that read them), neutralise spreadsheet formulas, refuse bad
//! requests clearly, and are chained with their row count.

use reqwest::Method;
use serde_json::{Value, json};
use testkit::{TestApp, UserClient, backend_tests, spawn_app};

const PW: &str = "correct horse battery staple";
const ORG: &str = "/v1/orgs/acme-export";

fn schema() -> Value {
    json!({ "fields": [
        { "name": "full_name", "type": "string", "required": true, "classification": "personal" },
        { "name": "email", "type": "email", "searchable": true, "classification": "personal" },
        { "name": "diagnosis", "type": "text", "classification": "sensitive" },
        { "name": "stage", "type": "enum", "values": ["applied", "hired"], "classification": "plain" },
        { "name": "score", "type": "number", "classification": "plain" }
    ]})
}

/// Names a spreadsheet would run as formulas, and ordinary ones.
const NAMES: [&str; 6] = [
    "=HYPERLINK(\"http://evil.example\")",
    "+41 said hello",
    "-2+3",
    "@SUM(A1:A9)",
    "Ada Lovelace",
    "Zoë, \"the\" O'Neil",
];

struct Setup {
    app: TestApp,
    owner: UserClient,
    owner_id: domain::UserId,
    viewer: UserClient,
    ids: Vec<String>,
}

async fn setup(backend: testkit::Backend) -> Setup {
    let app = spawn_app(backend).await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let org = app.create_org("acme-export").await;
    let mut users = Vec::new();
    let mut owner_id = None;
    for (who, role) in [("owner", domain::Role::Owner), ("viewer", domain::Role::Viewer)] {
        let email = format!("{who}-{tag}@example.com");
        let u = app.create_user(&email, PW, false).await;
        app.add_member(org.id, u.id, role).await;
        owner_id.get_or_insert(u.id);
        users.push(email);
    }
    let owner_id = owner_id.unwrap_or_else(|| panic!("no owner"));
    let (owner, _, _) = app.login_with_mfa(&users[0], PW).await;
    let viewer = app.login(&users[1], PW).await;
    assert_eq!(owner.send(Method::PUT, &format!("{ORG}/schema"), Some(schema())).await.status(), 200);
    let mut ids = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let body = json!({ "fields": {
            "full_name": name, "email": format!("p{i}@example.org"), "diagnosis": format!("=cmd|' /C calc'!A{i}"),
            "stage": "applied", "score": -1.5 * i as f64
        }});
        let res = owner.send(Method::POST, &format!("{ORG}/profiles"), Some(body)).await;
        let v: Value = res.json().await.unwrap_or_default();
        ids.push(v["id"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned());
    }
    ids.sort();
    Setup { app, owner, owner_id, viewer, ids }
}

async fn download(c: &UserClient, format: &str) -> (u16, String, String, String) {
    let res = c.get(&format!("{ORG}/exports/profiles?format={format}")).await;
    let status = res.status().as_u16();
    let header = |h: &str| res.headers().get(h).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let (ct, cd) = (header("content-type"), header("content-disposition"));
    (status, ct, cd, res.text().await.unwrap_or_default())
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(text.as_bytes());
    r.records().map(|rec| rec.unwrap_or_else(|e| panic!("{e}")).iter().map(str::to_owned).collect()).collect()
}

backend_tests! {
    // claim 004.6
    async fn exports_stream_every_record_decrypted_and_neutralise_formulas(backend) {
        let s = setup(backend).await;
        let (status, ct, cd, text) = download(&s.owner, "csv").await;
        assert_eq!(status, 200, "{text}");
        assert!(ct.starts_with("text/csv") && cd.starts_with("attachment;") && cd.contains("acme-export-profiles.csv"), "{ct} {cd}");
        let rows = csv_rows(&text);
        assert_eq!(rows[0], ["id", "revision", "created_at", "updated_at", "full_name", "email", "diagnosis", "stage", "score"]);
        assert_eq!(rows.len(), NAMES.len() + 1);
        let ids: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
        assert_eq!(ids, s.ids.iter().map(String::as_str).collect::<Vec<_>>(), "every record, in id order");
        let names: Vec<&str> = rows[1..].iter().map(|r| r[4].as_str()).collect();
        for name in NAMES {
            let want = if name.starts_with(['=', '+', '-', '@', '\'']) { format!("'{name}") } else { name.to_owned() };
            assert!(names.contains(&want.as_str()), "{want:?} not in {names:?}");
        }
        for r in &rows[1..] {
            assert!(r[6].starts_with("'=cmd"), "sensitive formula neutralised: {:?}", r[6]);
            assert!(r[8].parse::<f64>().is_ok(), "numbers stay numbers: {:?}", r[8]);
        }

        // JSON lines: the values exactly as the API shows them.
        let (status, ct, _, text) = download(&s.owner, "jsonl").await;
        assert_eq!((status, ct.as_str()), (200, "application/x-ndjson"));
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        assert_eq!(lines.len(), NAMES.len());
        for line in &lines {
            let id = line["id"].as_str().unwrap_or_default();
            let shown: Value = s.owner.get(&format!("{ORG}/profiles/{id}")).await.json().await.unwrap_or_default();
            assert_eq!(line["fields"], shown["fields"], "{id}");
        }

        // A viewer's export leaves sensitive fields out.
        let (status, _, _, text) = download(&s.viewer, "csv").await;
        assert_eq!(status, 200);
        let rows = csv_rows(&text);
        assert!(!rows[0].contains(&"diagnosis".to_owned()), "{:?}", rows[0]);
        assert!(!text.contains("cmd|"), "a sensitive value reached a viewer");

        // Bad requests.
        let (status, _, _, body) = download(&s.owner, "xlsx").await;
        assert_eq!(status, 422, "{body}");
        assert!(body.contains("csv or jsonl"), "{body}");
        assert_eq!(s.owner.get(&format!("{ORG}/exports/profiles?format=csv&limit=1")).await.status(), 400, "unknown parameter");
        let default = s.owner.get(&format!("{ORG}/exports/profiles")).await;
        assert_eq!(default.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/csv; charset=utf-8"));
        let outsider = {
            let email = format!("out-{}@example.com", uuid::Uuid::new_v4().simple());
            s.app.create_user(&email, PW, false).await;
            s.app.login_with_mfa(&email, PW).await.0
        };
        assert_eq!(outsider.get(&format!("{ORG}/exports/profiles?format=csv")).await.status(), 404);

        // Every export is chained, with its row count.
        let trail: Value = s.owner.get(&format!("{ORG}/audit?action=profile.export.end")).await.json().await.unwrap_or_default();
        let ends = trail["entries"].as_array().cloned().unwrap_or_default();
        assert_eq!(ends.len(), 4, "{trail}");
        let rows_field = json!(format!("rows:{}", NAMES.len()));
        assert!(ends.iter().all(|e| e["fields"].as_array().is_some_and(|f| f.contains(&rows_field))), "{trail}");
        let starts: Value = s.owner.get(&format!("{ORG}/audit?action=profile.export")).await.json().await.unwrap_or_default();
        assert_eq!(starts["entries"].as_array().map(Vec::len), Some(4), "{starts}");
        assert!(!trail.to_string().contains("Ada"), "no value in the trail");

        // The CLI writes the same CSV to a new private file.
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let out = dir.path().join("acme.csv");
        let out_arg = out.to_str().unwrap_or_default();
        let (code, _, err) = crate::cli(&s.app.db, &["export", "--org", "acme-export", "--format", "csv", "--out", out_arg, "--dev"], &[]);
        assert_eq!(code, 0, "{err}");
        let written = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}"));
        let (_, _, _, api) = download(&s.owner, "csv").await;
        assert_eq!(csv_rows(&written), csv_rows(&api));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
        assert_eq!(mode, 0o600);
        let (code, _, err) = crate::cli(&s.app.db, &["export", "--org", "acme-export", "--out", out_arg, "--dev"], &[]);
        assert!(code != 0 && err.contains("must not exist"), "{err}");
        let (code, _, err) = crate::cli(&s.app.db, &["export", "--org", "acme-export", "--format", "xml", "--dev"], &[]);
        assert!(code != 0 && err.contains("--format"), "{err}");
        s.app.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
    }
}

/// The records of an export without their ids and times, sorted.
fn contents(text: &str) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = csv_rows(text).into_iter().skip(1).map(|r| r[4..].to_vec()).collect();
    rows.sort();
    rows
}

backend_tests! {
    // claim 002.14 004.6
    async fn an_export_imports_back_and_bad_rows_write_nothing_unless_skipped(backend) {
        let s = setup(backend).await;
        let (_, _, _, exported) = download(&s.owner, "csv").await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("acme.csv");
        std::fs::write(&file, &exported).unwrap_or_else(|e| panic!("{e}"));

        // Into a fresh organisation with the same schema: every record.
        let other = s.app.create_org("acme-import").await;
        s.app.add_member(other.id, s.owner_id, domain::Role::Owner).await;
        assert_eq!(s.owner.send(Method::PUT, "/v1/orgs/acme-import/schema", Some(schema())).await.status(), 200);
        let file_arg = file.to_str().unwrap_or_default();
        let (code, out, err) = crate::cli(&s.app.db, &["import", "--org", "acme-import", file_arg, "--dev"], &[]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&format!("Imported {n} of {n} rows", n = NAMES.len())), "{out}");
        let res = s.owner.get("/v1/orgs/acme-import/exports/profiles?format=csv").await;
        let imported = res.text().await.unwrap_or_default();
        assert_eq!(contents(&imported), contents(&exported), "the round trip reproduces every record");
        let (_, _, _, jsonl) = download(&s.owner, "jsonl").await;
        let names: Vec<String> = jsonl.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).map(|v| v["fields"]["full_name"].as_str().unwrap_or_default().to_owned()).collect();
        for name in NAMES {
            assert!(names.contains(&name.to_owned()), "{name:?} survives the round trip");
        }

        // Bad rows: each reported by line and field, and nothing written.
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "full_name,email,stage,score\nGood Person,good@example.org,hired,1\n,nameless@example.org,hired,2\nBad Score,not-an-email,fired,abc\n").unwrap_or_else(|e| panic!("{e}"));
        let count = |text: &str| csv_rows(text).len() - 1;
        let before = count(&s.owner.get("/v1/orgs/acme-import/exports/profiles").await.text().await.unwrap_or_default());
        let bad_arg = bad.to_str().unwrap_or_default();
        let (code, _, err) = crate::cli(&s.app.db, &["import", "--org", "acme-import", bad_arg, "--dev"], &[]);
        assert_ne!(code, 0);
        for want in ["line 3 /full_name", "line 4 /score", "line 4 /email", "line 4 /stage", "nothing was written", "--skip-invalid"] {
            assert!(err.contains(want), "{want:?} missing from: {err}");
        }
        assert!(!err.contains("not-an-email") && !err.contains("nameless"), "no value in the report: {err}");
        assert_eq!(count(&s.owner.get("/v1/orgs/acme-import/exports/profiles").await.text().await.unwrap_or_default()), before, "nothing written");
        let (code, out, err) = crate::cli(&s.app.db, &["import", "--org", "acme-import", "--skip-invalid", bad_arg, "--dev"], &[]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("Imported 1 of 3 rows") && out.contains("2 invalid rows skipped"), "{out}");
        assert_eq!(count(&s.owner.get("/v1/orgs/acme-import/exports/profiles").await.text().await.unwrap_or_default()), before + 1);

        // A column the schema does not know refuses the file.
        let odd = dir.path().join("odd.csv");
        std::fs::write(&odd, "full_name,shoe_size\nA,42\n").unwrap_or_else(|e| panic!("{e}"));
        let (code, _, err) = crate::cli(&s.app.db, &["import", "--org", "acme-import", odd.to_str().unwrap_or_default(), "--dev"], &[]);
        assert!(code != 0 && err.contains("header column 2 names no field") && !err.contains("shoe_size"), "{err}");

        // The API: the same checks, bad rows as a problem listing each.
        let bad_body = std::fs::read(&bad).unwrap_or_default();
        let post = |query: &'static str, content_type: &'static str| {
            let req = s.owner.request(Method::POST, &format!("/v1/orgs/acme-import/imports/profiles{query}"));
            req.header("content-type", content_type).body(bad_body.clone()).send()
        };
        let res = post("", "text/csv").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 422);
        assert_eq!(res.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/problem+json"));
        let problem: Value = res.json().await.unwrap_or_default();
        let paths: Vec<&str> = problem["errors"].as_array().into_iter().flatten().filter_map(|e| e["path"].as_str()).collect();
        for want in ["/lines/3/full_name", "/lines/4/score", "/lines/4/email", "/lines/4/stage"] {
            assert!(paths.contains(&want), "{want} missing: {problem}");
        }
        assert!(!problem.to_string().contains("not-an-email"), "no value in the problem: {problem}");
        assert_eq!(count(&s.owner.get("/v1/orgs/acme-import/exports/profiles").await.text().await.unwrap_or_default()), before + 1, "nothing written");
        let res = post("?skip_invalid=true", "text/csv; charset=utf-8").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 200);
        let done: Value = res.json().await.unwrap_or_default();
        assert_eq!((done["rows"].as_u64(), done["written"].as_u64(), done["problems"].as_array().map(Vec::len)), (Some(3), Some(1), Some(4)), "{done}");
        assert_eq!(count(&s.owner.get("/v1/orgs/acme-import/exports/profiles").await.text().await.unwrap_or_default()), before + 2);
        assert_eq!(post("", "application/json").await.unwrap_or_else(|e| panic!("{e}")).status(), 415);
        assert_eq!(post("?skip_invalid=maybe", "text/csv").await.unwrap_or_else(|e| panic!("{e}")).status(), 400);

        // Imports are chained with their counts, the refused ones as failures.
        let trail: Value = s.owner.get("/v1/orgs/acme-import/audit?action=profile.import").await.json().await.unwrap_or_default();
        let outcomes: Vec<&str> = trail["entries"].as_array().into_iter().flatten().filter_map(|e| e["outcome"].as_str()).collect();
        assert_eq!(outcomes, ["success", "failure", "success", "failure", "success"], "{trail}");
        s.app.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
    }
}

/// An entry as the JSON-lines audit export writes it, read back.
pub(crate) fn entry_of(line: &Value) -> audit::Entry {
    let hash = |k: &str| -> [u8; 32] {
        hex::decode(line[k].as_str().unwrap_or_default())
            .ok()
            .and_then(|v| v.try_into().ok())
            .unwrap_or_else(|| panic!("{k}: {line}"))
    };
    let text = |k: &str| line[k].as_str().map(str::to_owned);
    audit::Entry {
        chain: text("chain").unwrap_or_default(),
        seq: line["seq"].as_u64().unwrap_or_default(),
        at_micros: line["at_micros"].as_i64().unwrap_or_default(),
        actor: text("actor").unwrap_or_default(),
        on_behalf_of: text("on_behalf_of"),
        action: text("action").unwrap_or_default(),
        target: text("target").unwrap_or_default(),
        outcome: text("outcome").unwrap_or_default(),
        fields: line["fields"].as_array().into_iter().flatten().filter_map(|f| f.as_str().map(str::to_owned)).collect(),
        request_id: text("request_id"),
        prev_hash: hash("prev_hash"),
        hash: hash("hash"),
    }
}

backend_tests! {
    // claim 004.6 001.10
    async fn the_audit_trail_exports_as_csv_and_json_lines_that_verify_outside(backend) {
        let s = setup(backend).await;
        let res = s.owner.get(&format!("{ORG}/exports/audit?format=jsonl")).await;
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("content-disposition").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("acme-export-audit.jsonl")));
        let text = res.text().await.unwrap_or_default();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        // Every entry up to the export's own, each chained to the last.
        let mut verifier = audit::ChainVerifier::new([]);
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(line["seq"].as_u64(), Some(i as u64 + 1));
            assert!(verifier.push(&entry_of(line)), "entry {i} does not chain: {line}");
        }
        assert!(lines.iter().all(|l| l["action"] != "audit.export"), "it ends where the trail was when it was asked for");
        let creates = lines.iter().filter(|l| l["action"] == "profile.create").count();
        assert_eq!(creates, NAMES.len());
        assert!(!text.contains("Ada"), "no value in the trail");

        // CSV: the same entries, hashes in hex, text cells neutralised.
        let res = s.owner.get(&format!("{ORG}/exports/audit")).await;
        assert_eq!(res.status(), 200);
        let rows = csv_rows(&res.text().await.unwrap_or_default());
        assert_eq!(rows[0], ["seq", "at", "actor", "on_behalf_of", "action", "target", "outcome", "fields", "request_id", "prev_hash", "hash"]);
        assert_eq!(rows.len(), lines.len() + 3, "the header, and the JSON export's start and end");
        for (row, line) in rows[1..].iter().zip(&lines) {
            assert_eq!(row[0], line["seq"].to_string());
            assert_eq!(row[10], line["hash"].as_str().unwrap_or_default());
        }

        // Only roles that read the trail; and the command line.
        assert_eq!(s.viewer.get(&format!("{ORG}/exports/audit")).await.status(), 403);
        assert_eq!(s.owner.get(&format!("{ORG}/exports/audit?format=pdf")).await.status(), 422);
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let out = dir.path().join("trail.jsonl");
        let (code, _, err) = crate::cli(&s.app.db, &["export", "--org", "acme-export", "--audit", "--format", "jsonl", "--out", out.to_str().unwrap_or_default(), "--dev"], &[]);
        assert_eq!(code, 0, "{err}");
        let written = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}"));
        let mut verifier = audit::ChainVerifier::new([]);
        for line in written.lines() {
            let line: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}"));
            assert!(verifier.push(&entry_of(&line)));
        }
        assert!(written.lines().count() > lines.len());
        let trail: Value = s.owner.get(&format!("{ORG}/audit?action=audit.export.end")).await.json().await.unwrap_or_default();
        assert_eq!(trail["entries"].as_array().map(Vec::len), Some(3), "{trail}");
        s.app.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
    }
}

/// Rows in the flat-memory export (`STRONGROOM_TEST_EXPORT_ROWS` to
/// change). Each carries about 500 bytes, so the export is about 50 MB.
fn export_rows() -> usize {
    std::env::var("STRONGROOM_TEST_EXPORT_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

backend_tests! {
    // claim 004.6
    async fn a_100k_row_export_streams_in_flat_memory(backend) {
        let app = spawn_app(backend).await;
        let org = app.create_org("acme-bulk").await;
        let (_, _, owner) = app.signed_in_member(org.id, domain::Role::Owner, PW).await;
        let schema = json!({ "fields": [
            { "name": "full_name", "type": "string", "required": true, "classification": "personal" },
            { "name": "notes", "type": "text", "classification": "personal" },
            { "name": "team", "type": "string", "classification": "plain" }
        ]});
        assert_eq!(owner.send(Method::PUT, "/v1/orgs/acme-bulk/schema", Some(schema)).await.status(), 200);
        // Seeded through the engine as an import writes: validated, sealed
        // and chained, a batch per transaction (SQLite has one writer).
        let rows = export_rows();
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        let writers = if backend == testkit::Backend::Sqlite { 1 } else { 2 };
        for _ in 0..writers {
            let (engine, next) = (app.engine().clone(), next.clone());
            let auth = engine.authorize_local(org.id, domain::Action::WriteProfiles);
            tasks.push(tokio::spawn(async move {
                loop {
                    let start = next.fetch_add(1_000, std::sync::atomic::Ordering::Relaxed);
                    if start >= rows {
                        return;
                    }
                    let batch: Vec<serde_json::Map<String, Value>> = (start..rows.min(start + 1_000))
                        .map(|i| {
                            let input = json!({ "full_name": format!("Person {i}"), "notes": format!("{i:0>480}"), "team": format!("t{}", i % 7) });
                            let Value::Object(input) = input else { unreachable!() };
                            input
                        })
                        .collect();
                    engine.create_profiles(&auth, &batch).await.unwrap_or_else(|e| panic!("batch at {start}: {e}"));
                }
            }));
        }
        for t in tasks {
            t.await.unwrap_or_else(|e| panic!("{e}"));
        }

        // Streamed to a reader that keeps nothing: memory stays flat.
        use futures_util::StreamExt;
        let before = crate::rss();
        let mut peak = before;
        let res = owner.get("/v1/orgs/acme-bulk/exports/profiles?format=csv").await;
        assert_eq!(res.status(), 200);
        let (mut bytes, mut lines) = (0u64, 0u64);
        let mut body = res.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.unwrap_or_else(|e| panic!("{e}"));
            bytes += chunk.len() as u64;
            lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            peak = peak.max(crate::rss());
        }
        assert_eq!(lines, rows as u64 + 1, "every record and the header");
        let grew = peak.saturating_sub(before);
        assert!(bytes > 40 * (1 << 20), "the export is larger than the bound: {bytes} bytes");
        assert!(grew < 24 * (1 << 20), "memory grew by {} MiB exporting {} MiB", grew >> 20, bytes >> 20);
        app.shutdown().await.unwrap_or_else(|e| panic!("{e:#}"));
    }
}
