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
        let email = format!("owner-{}@example.com", uuid::Uuid::new_v4().simple());
        let u = app.create_user(&email, PW, false).await;
        app.add_member(org.id, u.id, domain::Role::Owner).await;
        let (owner, _, _) = app.login_with_mfa(&email, PW).await;
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
