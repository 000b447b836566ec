//! Graceful shutdown: in-flight requests finish, then the server stops and
//! the store closes; the binary exits 0 on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::routing::get;
use testkit::{Backend, TestDb, backend_tests, client_trusting};

/// A route that takes a while, mounted only in this test.
async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    "finished"
}

backend_tests! {
    async fn an_in_flight_request_completes_during_shutdown(backend) {
        let db = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        let config = db.config().unwrap_or_else(|e| panic!("{e:#}"));
        let extra = axum::Router::new().route("/test/slow", get(slow));
        let running = server::start_with_routes(&config, extra).await.unwrap_or_else(|e| panic!("{e:#}"));
        let port = running.local_addr().port();
        let client = client_trusting(&db.data_dir().join("tls/ca.pem")).unwrap_or_else(|e| panic!("{e:#}"));

        let in_flight = tokio::spawn({
            let client = client.clone();
            async move { client.get(format!("https://localhost:{port}/test/slow")).send().await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        running.begin_shutdown();
        let res = in_flight.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("in-flight request failed: {e}"));
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.unwrap_or_default(), "finished");
        running.wait().await.unwrap_or_else(|e| panic!("{e:#}"));

        let after = client.get(format!("https://localhost:{port}/healthz")).send().await;
        assert!(after.is_err(), "no new connections after shutdown");
    }

    async fn the_binary_serves_and_exits_0_on_sigterm(backend) {
        let db = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        let data_dir = db.data_dir();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strongroom"));
        cmd.args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"]).arg(&data_dir);
        if let Some(url) = &db.database_url {
            cmd.env("STRONGROOM_DATABASE_URL", url);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("{e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("stdout"));
        // The banner names the bound address, the store and the CA to trust.
        // Read the banner, then keep draining the pipe as a supervisor would.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let banner: Vec<String> = lines.by_ref().take(3).collect();
            let _ = tx.send(banner);
            lines.for_each(drop);
        });
        let banner: Vec<String> = tokio::task::spawn_blocking(move || rx.recv().unwrap_or_default()).await.unwrap_or_default();
        let first = banner.first().cloned().unwrap_or_default();
        let expected_store = if backend == Backend::Sqlite { "(sqlite store)" } else { "(postgres store)" };
        assert!(first.contains(expected_store), "{banner:?}");
        let port: u16 = first
            .split("127.0.0.1:").nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in banner {banner:?}"));
        assert!(banner.iter().any(|l| l.contains("tls/ca.pem")), "{banner:?}");

        let client = client_trusting(&data_dir.join("tls/ca.pem")).unwrap_or_else(|e| panic!("{e:#}"));
        let ready = client.get(format!("https://localhost:{port}/readyz")).send().await;
        assert_eq!(ready.as_ref().map(|r| r.status().as_u16()).map_err(|e| format!("{e:?}")), Ok(200));

        let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        assert!(killed.is_ok_and(|s| s.success()));
        let status = tokio::task::spawn_blocking(move || child.wait_with_output()).await;
        let out = status.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains("\"stopped\""), "the store closed and the server said so: {stderr}");
    }
}
