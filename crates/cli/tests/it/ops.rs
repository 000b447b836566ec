//! Operations endpoints and the headers every response carries: health,
//! readiness, Prometheus metrics, request ids, HSTS.

use testkit::{backend_tests, spawn_app};

backend_tests! {
    async fn health_and_readiness_answer(backend) {
        let app = spawn_app(backend).await;
        let health = app.get("/healthz").await;
        assert_eq!(health.status(), 200);
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status(), 200);
        let body: serde_json::Value = ready.json().await.unwrap_or_default();
        assert_eq!(body["status"], "ready");
        app.shutdown().await.ok();
    }

    // claim 000.1 001.3 004.2
    async fn every_response_carries_hsts_and_a_request_id(backend) {
        let app = spawn_app(backend).await;
        for path in ["/healthz", "/readyz", "/metrics", "/no/such/route"] {
            let res = app.get(path).await;
            let hsts = res.headers().get("strict-transport-security").and_then(|v| v.to_str().ok());
            assert_eq!(hsts, Some("max-age=63072000; includeSubDomains"), "{path}");
            let id = res.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{path}: request id {id:?}");
            assert_eq!(res.headers().get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]));
        }
        app.shutdown().await.ok();
    }

    async fn a_client_supplied_request_id_is_replaced(backend) {
        let app = spawn_app(backend).await;
        let res = app.client.get(app.url("/healthz")).header("x-request-id", "injected\"text").send().await;
        let id = res.ok().and_then(|r| r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(String::from));
        assert!(id.as_deref().is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()), "{id:?}");
        app.shutdown().await.ok();
    }

    // claim 004.8
    async fn metrics_count_requests_by_route_template_and_status(backend) {
        let app = spawn_app(backend).await;
        app.get("/healthz").await;
        app.get("/no/such/route").await;
        let res = app.get("/metrics").await;
        assert_eq!(res.status(), 200);
        let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(ct.starts_with("text/plain"), "{ct}");
        let text = res.text().await.unwrap_or_default();
        assert!(
            text.lines().any(|l| l.starts_with("http_requests_total{") && l.contains("route=\"/healthz\"") && l.contains("status=\"200\"")),
            "{text}"
        );
        assert!(text.contains("route=\"unmatched\""), "unknown paths are not labelled by their raw path: {text}");
        assert!(!text.contains("/no/such/route"), "{text}");
        assert!(text.contains("http_request_duration_seconds_bucket{"), "{text}");
        app.shutdown().await.ok();
    }
}
