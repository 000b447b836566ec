//! The TLS listener against independent clients: rustls (through reqwest)
//! and the OpenSSL command line, which can offer the old protocol versions
//! and CBC suites that Strongroom must refuse.

use std::process::{Command, Stdio};

use testkit::{backend_tests, spawn_app};

/// Runs `openssl s_client` against the app with extra flags; returns whether
/// the handshake succeeded and everything it printed.
fn s_client(port: u16, ca: &std::path::Path, flags: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost"])
        .arg("-CAfile")
        .arg(ca)
        .args(["-verify_return_error", "-brief"])
        .args(flags)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) => (
            o.status.success(),
            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        ),
        Err(e) => panic!("openssl is needed for the TLS tests (scripts/test installs it): {e}"),
    }
}

backend_tests! {
    // claim 000.1 001.3 002.8 004.2
    async fn tls_1_3_and_1_2_handshakes_succeed_and_verify(backend) {
        let app = spawn_app(backend).await;
        let port = app.addr.port();
        let ca = app.ca_file();
        let (ok, out) = tokio::task::spawn_blocking(move || s_client(port, &ca, &["-tls1_3"])).await.unwrap_or_default();
        assert!(ok && out.contains("TLSv1.3"), "{out}");
        let ca = app.ca_file();
        let (ok, out) = tokio::task::spawn_blocking(move || s_client(port, &ca, &["-tls1_2"])).await.unwrap_or_default();
        assert!(ok && out.contains("TLSv1.2"), "{out}");
        assert!(out.contains("ECDHE") || out.contains("Peer Temp Key"), "{out}");
        app.shutdown().await.ok();
    }

    // claim 000.1 002.8 004.2
    async fn tls_1_1_and_1_0_clients_are_refused(backend) {
        let app = spawn_app(backend).await;
        let port = app.addr.port();
        for version in ["-tls1_1", "-tls1"] {
            let ca = app.ca_file();
            let (ok, out) = tokio::task::spawn_blocking(move || {
                s_client(port, &ca, &[version, "-cipher", "DEFAULT:@SECLEVEL=0"])
            }).await.unwrap_or_default();
            assert!(!ok, "{version} must be refused: {out}");
            // The refusal is an alert the server sent (read by the client),
            // not the client failing to offer the version.
            assert!(
                out.contains("ssl3_read_bytes") && (out.contains("alert protocol version") || out.contains("alert handshake failure")),
                "{version}: the server must refuse with an alert: {out}"
            );
        }
        app.shutdown().await.ok();
    }

    // claim 002.8
    async fn tls_1_2_with_only_cbc_suites_is_refused(backend) {
        let app = spawn_app(backend).await;
        let port = app.addr.port();
        let ca = app.ca_file();
        let cbc = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA:AES128-SHA:AES256-SHA256";
        let (ok, out) = tokio::task::spawn_blocking(move || s_client(port, &ca, &["-tls1_2", "-cipher", cbc])).await.unwrap_or_default();
        assert!(!ok, "CBC-only client must be refused: {out}");
        assert!(out.contains("handshake failure"), "the server refused the suites: {out}");
        app.shutdown().await.ok();
    }

    // claim 000.1
    async fn there_is_no_plaintext_http(backend) {
        let app = spawn_app(backend).await;
        let plain = testkit::plain_http_client().get(format!("http://127.0.0.1:{}/healthz", app.addr.port())).send().await;
        assert!(plain.is_err() || plain.as_ref().is_ok_and(|r| !r.status().is_success()), "{plain:?}");
        app.shutdown().await.ok();
    }
}
