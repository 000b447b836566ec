//! Errors on the real listener: unknown routes, wrong methods and oversized
//! bodies all answer RFC 9457 problem details with a stable type. (Malformed
//! JSON bodies are covered beside the extractor, in `server::json`.)

use std::time::Duration;

use axum::routing::get;
use testkit::{TestDb, backend_tests, client_trusting, spawn_app, spawn_app_with};

/// Asserts a response is problem details of the given type and status.
async fn assert_problem(res: reqwest::Response, status: u16, kind: &str) -> reqwest::header::HeaderMap {
    assert_eq!(res.status().as_u16(), status);
    let headers = res.headers().clone();
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(ct, "application/problem+json");
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    assert_eq!(body["type"], format!("urn:strongroom:problem:{kind}"), "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["title"].is_string(), "{body}");
    headers
}

backend_tests! {
    // A body refused before it was read (here by the session layer) is read
    // and discarded before the answer, so the connection stays usable: the
    // answer does not close it, and the next request on the client works.
    // (The limits of that are shown beside the middleware, in `server::drain`.)
    async fn a_body_refused_unread_leaves_the_connection_usable(backend) {
        let app = spawn_app(backend).await;
        let url = app.url("/v1/orgs/acme/profiles/7f1e3c52-1d1a-4c4e-9b44-2d0f6f0e9a11/attachments/cv.pdf");
        for _ in 0..3 {
            let res = app.client.put(&url).body(vec![b'x'; 256 * 1024]).send().await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(res.status(), 401);
            assert_eq!(res.headers().get("connection"), None);
            assert_eq!(app.get("/healthz").await.status(), 200);
        }
        app.shutdown().await.ok();
    }

    async fn unknown_route_is_a_404_problem(backend) {
        let app = spawn_app(backend).await;
        assert_problem(app.get("/v1/nothing-here").await, 404, "not-found").await;
        app.shutdown().await.ok();
    }

    async fn wrong_method_is_a_405_problem_with_allow(backend) {
        let app = spawn_app(backend).await;
        let res = app.client.delete(app.url("/healthz")).send().await;
        let headers = match res {
            Ok(res) => assert_problem(res, 405, "method-not-allowed").await,
            Err(e) => panic!("{e}"),
        };
        let allow = headers.get("allow").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(allow.contains("GET"), "Allow: {allow:?}");
        app.shutdown().await.ok();
    }

    async fn oversized_body_is_a_413_problem(backend) {
        let app = spawn_app_with(backend, |o| o.max_body_bytes = Some(4096)).await;
        let app = match app { Ok(a) => a, Err(e) => panic!("{e:#}") };
        for path in ["/healthz", "/v1/anything"] {
            let res = app.client.post(app.url(path)).body(vec![b'x'; 10_000]).send().await;
            match res {
                Ok(res) => { assert_problem(res, 413, "payload-too-large").await; }
                Err(e) => panic!("{path}: {e}"),
            }
        }
        app.shutdown().await.ok();
    }
}

backend_tests! {
    async fn a_request_over_the_time_limit_is_a_503_problem(backend) {
        async fn slow() -> &'static str {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "too late"
        }
        let db = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        let mut overrides = db.overrides();
        overrides.request_timeout_secs = Some(1);
        let config = server::config::Config::load(&overrides).unwrap_or_else(|e| panic!("{e}"));
        let extra = axum::Router::new().route("/test/slow", get(slow));
        let running = server::start_with_routes(&config, extra).await.unwrap_or_else(|e| panic!("{e:#}"));
        let client = client_trusting(&db.data_dir().join("tls/ca.pem")).unwrap_or_else(|e| panic!("{e:#}"));
        let res = client.get(format!("https://localhost:{}/test/slow", running.local_addr().port())).send().await;
        match res {
            Ok(res) => { assert_problem(res, 503, "timeout").await; }
            Err(e) => panic!("{e}"),
        }
        running.shutdown().await.ok();
    }
}
