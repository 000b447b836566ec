//! Attachments end to end over HTTPS: streamed up and down, encrypted in
//! chunks into the local blob folder or S3 (moto), served as downloads;
//! bytes altered, truncated or swapped at rest fail with a clear error and
//! never come back altered; size limits; 100 MB in bounded memory.

use std::path::PathBuf;

use bytes::Bytes;
use domain::Role;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testkit::{TestApp, UserClient, backend_tests, spawn_app, spawn_app_with};

const PW: &str = "correct horse battery staple";
const ORG: &str = "/v1/orgs/acme-files";
const SECRET_LINE: &str = "Confidential reference letter for Octavia Quisenberry-Nakamura";

struct Setup {
    editor: UserClient,
    viewer: UserClient,
    auditor: UserClient,
    profile: String,
    other: String,
}

async fn setup(app: &TestApp) -> Setup {
    let org = app.create_org("acme-files").await;
    for (email, role) in [
        ("owner@example.com", Role::Owner),
        ("editor@example.com", Role::Editor),
        ("viewer@example.com", Role::Viewer),
        ("auditor@example.com", Role::Auditor),
    ] {
        let user = app.create_user(email, PW, false).await;
        app.add_member(org.id, user.id, role).await;
    }
    let (owner, _, _) = app.login_with_mfa("owner@example.com", PW).await;
    let schema = json!({ "fields": [{ "name": "full_name", "type": "string", "required": true }] });
    assert_eq!(owner.send(Method::PUT, &format!("{ORG}/schema"), Some(schema)).await.status(), 200);
    let editor = app.login("editor@example.com", PW).await;
    let mut ids = Vec::new();
    for name in ["Octavia Quisenberry-Nakamura", "Someone Else"] {
        let res = editor
            .send(Method::POST, &format!("{ORG}/profiles"), Some(json!({ "fields": { "full_name": name } })))
            .await;
        let v: Value = res.json().await.unwrap_or_default();
        ids.push(v["id"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned());
    }
    Setup {
        viewer: app.login("viewer@example.com", PW).await,
        auditor: app.login("auditor@example.com", PW).await,
        editor,
        other: ids.pop().unwrap_or_default(),
        profile: ids.pop().unwrap_or_default(),
    }
}

async fn put(
    c: &UserClient,
    profile: &str,
    name: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let res = c
        .request(Method::PUT, &format!("{ORG}/profiles/{profile}/attachments/{name}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

async fn get(c: &UserClient, profile: &str, name: &str) -> reqwest::Response {
    c.get(&format!("{ORG}/profiles/{profile}/attachments/{name}")).await
}

/// Every blob file under the local blob folder.
fn blob_files(app: &TestApp) -> Vec<PathBuf> {
    testkit::files_under(&app.db.data_dir().join("blobs")).into_iter().map(|(p, _)| PathBuf::from(p)).collect()
}

async fn problem_type(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let v: Value = res.json().await.unwrap_or_default();
    (status, v["type"].as_str().unwrap_or("").to_owned())
}

backend_tests! {
    // claim 000.2 001.4 004.6
    async fn attachments_round_trip_and_are_served_as_downloads(backend) {
        let app = spawn_app(backend).await;
        let s = setup(&app).await;
        let (status, v) = put(&s.editor, &s.profile, "reference.txt", "text/plain", SECRET_LINE).await;
        assert_eq!(status, 201, "{v}");
        assert_eq!((v["size"].as_u64(), v["name"].as_str()), (Some(SECRET_LINE.len() as u64), Some("reference.txt")));
        let res = get(&s.viewer, &s.profile, "reference.txt").await;
        assert_eq!(res.status(), 200);
        let h = res.headers().clone();
        assert_eq!(h.get("content-disposition").and_then(|v| v.to_str().ok()), Some("attachment; filename=\"reference.txt\""));
        assert_eq!(h.get("x-content-type-options").and_then(|v| v.to_str().ok()), Some("nosniff"));
        assert_eq!(h.get("content-type").and_then(|v| v.to_str().ok()), Some("text/plain"));
        assert_eq!(res.text().await.unwrap_or_default(), SECRET_LINE);

        // Replacing keeps one attachment of that name.
        let (status, _) = put(&s.editor, &s.profile, "reference.txt", "text/html", "<b>v2</b>").await;
        assert_eq!(status, 200);
        let res = get(&s.editor, &s.profile, "reference.txt").await;
        assert_eq!(res.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/html"));
        assert_eq!(res.text().await.unwrap_or_default(), "<b>v2</b>");
        assert_eq!(blob_files(&app).len(), 1, "the replaced blob is gone");
        let (status, v) = put(&s.editor, &s.profile, "empty.bin", "application/octet-stream", Vec::<u8>::new()).await;
        assert_eq!((status, v["size"].as_u64()), (201, Some(0)));
        assert_eq!(get(&s.viewer, &s.profile, "empty.bin").await.bytes().await.map(|b| b.len()).ok(), Some(0));
        let list: Value = s.viewer.get(&format!("{ORG}/profiles/{}/attachments", s.profile)).await.json().await.unwrap_or_default();
        let names: Vec<&str> = list["attachments"].as_array().into_iter().flatten().filter_map(|a| a["name"].as_str()).collect();
        assert_eq!(names.len(), 2, "{list}");

        // Who may do what; bad names; unknown things.
        assert_eq!(put(&s.viewer, &s.profile, "x.txt", "text/plain", "x").await.0, 403);
        assert_eq!(get(&s.auditor, &s.profile, "reference.txt").await.status(), 403);
        assert_eq!(get(&s.viewer, &s.other, "reference.txt").await.status(), 404, "names are per profile");
        for bad in [".hidden", "a%2Fb", "sp%20ace"] {
            let (status, v) = put(&s.editor, &s.profile, bad, "text/plain", "x").await;
            assert_eq!(status, 422, "{bad}: {v}");
        }
        let (status, v) = put(&s.editor, &s.profile, "ok.txt", "not a type", "x").await;
        assert_eq!((status, v["errors"][0]["path"].as_str()), (422, Some("/content_type")), "{v}");
        assert_eq!(put(&s.editor, &uuid::Uuid::now_v7().to_string(), "x.txt", "text/plain", "x").await.0, 404);
        let del = s.editor.request(Method::DELETE, &format!("{ORG}/profiles/{}/attachments/reference.txt", s.profile)).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        assert_eq!(del, 204);
        assert_eq!(get(&s.viewer, &s.profile, "reference.txt").await.status(), 404);
        app.shutdown().await.ok();
    }

    // claim 000.2 000.5
    async fn altered_truncated_or_swapped_blobs_fail_clearly(backend) {
        let app = spawn_app(backend).await;
        let s = setup(&app).await;
        assert_eq!(put(&s.editor, &s.profile, "a.txt", "text/plain", SECRET_LINE).await.0, 201);
        let files = blob_files(&app);
        assert_eq!(files.len(), 1);
        let stored = std::fs::read(&files[0]).unwrap_or_default();
        assert!(!stored.windows(9).any(|w| w == b"Octavia Q"), "the blob holds ciphertext only");

        // One flipped bit.
        let mut flipped = stored.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x01;
        std::fs::write(&files[0], &flipped).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(problem_type(get(&s.viewer, &s.profile, "a.txt").await).await, (500, "urn:strongroom:problem:integrity".to_owned()));
        // Truncated.
        std::fs::write(&files[0], &stored[..stored.len() - 1]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(problem_type(get(&s.viewer, &s.profile, "a.txt").await).await.0, 500);
        // Restored, it reads again.
        std::fs::write(&files[0], &stored).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(get(&s.viewer, &s.profile, "a.txt").await.text().await.unwrap_or_default(), SECRET_LINE);

        // Swapped with another profile's attachment: both fail.
        assert_eq!(put(&s.editor, &s.other, "b.txt", "text/plain", "another file").await.0, 201);
        let files = blob_files(&app);
        assert_eq!(files.len(), 2);
        let (a, b) = if std::fs::read(&files[0]).unwrap_or_default() == stored {
            (files[0].clone(), files[1].clone())
        } else {
            (files[1].clone(), files[0].clone())
        };
        let (ba, bb) = (std::fs::read(&a).unwrap_or_default(), std::fs::read(&b).unwrap_or_default());
        std::fs::write(&a, &bb).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&b, &ba).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(problem_type(get(&s.viewer, &s.profile, "a.txt").await).await.0, 500);
        assert_eq!(problem_type(get(&s.viewer, &s.other, "b.txt").await).await.0, 500);
        app.shutdown().await.ok();
    }
}

/// Deterministic pseudo-random bytes, `n` of them, in 64 KiB pieces.
fn generated(n: u64) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let pieces = n.div_ceil(65_536);
    futures_util::stream::iter(0..pieces).map(move |i| {
        let len = if i + 1 == pieces { n - i * 65_536 } else { 65_536 };
        let mut piece = Vec::with_capacity(len as usize);
        while (piece.len() as u64) < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            piece.extend_from_slice(&state.to_le_bytes());
        }
        piece.truncate(len as usize);
        Ok(Bytes::from(piece))
    })
}

async fn digest_of(n: u64) -> Vec<u8> {
    let mut h = Sha256::new();
    let mut s = Box::pin(generated(n));
    while let Some(Ok(b)) = s.next().await {
        h.update(&b);
    }
    h.finalize().to_vec()
}

// claim 004.6
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_attachment_streams_both_ways_in_bounded_memory() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let app = spawn_app(testkit::Backend::Sqlite).await;
    let s = setup(&app).await;
    let baseline = crate::rss();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let watcher = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(crate::rss(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    let body = reqwest::Body::wrap_stream(generated(SIZE));
    let (status, v) = put(&s.editor, &s.profile, "big.bin", "application/octet-stream", body).await;
    assert_eq!((status, v["size"].as_u64()), (201, Some(SIZE)), "{v}");
    let res = get(&s.viewer, &s.profile, "big.bin").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.content_length(), Some(SIZE));
    let mut h = Sha256::new();
    let mut n = 0u64;
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("{e}"));
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    watcher.abort();
    assert_eq!(n, SIZE);
    assert_eq!(h.finalize().to_vec(), digest_of(SIZE).await, "the same bytes came back");
    let grew = peak.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(baseline);
    eprintln!("moving 100 MiB up and down raised resident memory by {:.1} MiB", grew as f64 / 1_048_576.0);
    assert!(grew < 40 * 1024 * 1024, "memory grew by {} MiB moving 100 MiB", grew / (1024 * 1024));
    app.shutdown().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_past_the_limit_are_refused_and_nothing_is_kept() {
    let app = spawn_app_with(testkit::Backend::Sqlite, |o| o.max_attachment_bytes = Some(200_000))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let s = setup(&app).await;
    // Declared too large: refused before reading.
    let (status, v) = put(&s.editor, &s.profile, "big.bin", "application/octet-stream", vec![0u8; 200_001]).await;
    assert_eq!((status, v["type"].as_str()), (413, Some("urn:strongroom:problem:payload-too-large")), "{v}");
    // Streamed without a length: cut off while streaming.
    let (status, v) = put(
        &s.editor,
        &s.profile,
        "big.bin",
        "application/octet-stream",
        reqwest::Body::wrap_stream(generated(400_000)),
    )
    .await;
    assert_eq!(status, 413, "{v}");
    assert!(v["detail"].as_str().unwrap_or("").contains("blobs.max_attachment_bytes"), "{v}");
    assert!(blob_files(&app).is_empty(), "nothing kept");
    assert_eq!(
        put(
            &s.editor,
            &s.profile,
            "ok.bin",
            "application/octet-stream",
            reqwest::Body::wrap_stream(generated(200_000))
        )
        .await
        .0,
        201
    );
    app.shutdown().await.ok();
}

/// moto's S3 endpoint, from `scripts/test`.
fn s3_endpoint() -> String {
    std::env::var("STRONGROOM_TEST_AWS_ENDPOINT")
        .unwrap_or_else(|_| panic!("STRONGROOM_TEST_AWS_ENDPOINT: run scripts/test"))
}

// claim 000.2 000.5 004.6
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_live_encrypted_in_s3_and_tampering_there_is_detected() {
    let endpoint = s3_endpoint();
    let bucket = format!("sr-att-{}", uuid::Uuid::new_v4().simple());
    let http = testkit::plain_http_client();
    let made = http.put(format!("{endpoint}/{bucket}")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(made.status().is_success(), "create bucket: {}", made.status());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("strongroom.toml");
    std::fs::write(&config, format!("[blobs]\nbackend = \"s3\"\n[blobs.s3]\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\nprefix = \"tenant-a\"\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let app = spawn_app_with(testkit::Backend::Sqlite, |o| o.config_file = Some(config.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let s = setup(&app).await;
    let big = 6 * 1024 * 1024 + 123;
    assert_eq!(put(&s.editor, &s.profile, "a.txt", "text/plain", SECRET_LINE).await.0, 201);
    assert_eq!(
        put(&s.editor, &s.profile, "big.bin", "application/octet-stream", reqwest::Body::wrap_stream(generated(big)))
            .await
            .0,
        201
    );
    assert!(blob_files(&app).is_empty(), "nothing in the local folder");
    assert_eq!(get(&s.viewer, &s.profile, "a.txt").await.text().await.unwrap_or_default(), SECRET_LINE);
    let bytes = get(&s.viewer, &s.profile, "big.bin").await.bytes().await.unwrap_or_default();
    let mut h = Sha256::new();
    h.update(&bytes);
    assert_eq!(
        (bytes.len() as u64, h.finalize().to_vec()),
        (big, digest_of(big).await),
        "multipart upload, streamed back"
    );

    // What is in the bucket: ciphertext only, under the prefix.
    let listing = http
        .get(format!("{endpoint}/{bucket}?list-type=2"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    let keys: Vec<String> =
        listing.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).map(str::to_owned).collect();
    assert_eq!(keys.len(), 2, "{listing}");
    assert!(keys.iter().all(|k| k.starts_with("tenant-a/orgs/")), "{keys:?}");
    // Read and alter objects as someone with access to the bucket would.
    let raw = store::BlobStore::open(&store::BlobConfig::S3 {
        bucket: bucket.clone(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint.clone()),
        allow_http: true,
        prefix: None,
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut small = None;
    for k in &keys {
        let key = store::BlobKey::new(k).unwrap_or_else(|e| panic!("{e}"));
        let mut body = Vec::new();
        let mut stream = raw.get(&key).await.unwrap_or_else(|e| panic!("{e}"));
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.unwrap_or_else(|e| panic!("{e}")));
        }
        assert!(!body.is_empty() && !body.windows(9).any(|w| w == b"Octavia Q"), "ciphertext only");
        if body.len() < 1024 {
            small = Some((key, body));
        }
    }
    // Flip one bit of the small object in the bucket: the download fails.
    let (key, mut body) = small.unwrap_or_else(|| panic!("no small object: {keys:?}"));
    let last = body.len() - 1;
    body[last] ^= 0x80;
    let one = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(body))]);
    raw.put(&key, one).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        problem_type(get(&s.viewer, &s.profile, "a.txt").await).await,
        (500, "urn:strongroom:problem:integrity".to_owned())
    );
    // Deleting a profile deletes its blobs.
    let res = s.editor.get(&format!("{ORG}/profiles/{}", s.profile)).await;
    let etag = res.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let del = s
        .editor
        .request(Method::DELETE, &format!("{ORG}/profiles/{}", s.profile))
        .header("if-match", etag)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(del, 204);
    let listing = http
        .get(format!("{endpoint}/{bucket}?list-type=2"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    assert!(!listing.contains("<Key>"), "{listing}");
    app.shutdown().await.ok();
}
