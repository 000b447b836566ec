//! Service accounts end to end: created by admins with scopes, a secret
//! shown once; client-credentials tokens (JWS, or JWE when the organisation
//! asks) that work only within their organisation and scopes; verified
//! against the published JWKS by jwcrypto; tampered, unsigned, expired and
//! misaddressed tokens refused; revocation of a token and of an account.

use domain::Role;
use reqwest::Method;
use testkit::{TestApp, UserClient, backend_tests, spawn_app};

const PW: &str = "correct horse battery staple";

struct Setup {
    admin: UserClient,
    client_id: String,
    secret: String,
}

async fn setup(app: &TestApp, scope: &str) -> Setup {
    let org = app.create_org("alpha-care").await;
    let beta = app.create_org("beta-learn").await;
    let user = app.create_user("admin@example.com", PW, false).await;
    app.add_member(org.id, user.id, Role::Admin).await;
    let _ = beta;
    let (admin, _, _) = app.login_with_mfa("admin@example.com", PW).await;
    let res = admin
        .send(
            Method::POST,
            "/v1/orgs/alpha-care/service-accounts",
            Some(serde_json::json!({"name": "crm sync", "scope": scope})),
        )
        .await;
    assert_eq!(res.status(), 201);
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    let secret = body["client_secret"].as_str().unwrap_or("").to_owned();
    assert_eq!(secret.len(), 43, "{body}");
    Setup { admin, client_id: body["client_id"].as_str().unwrap_or("").to_owned(), secret }
}

async fn token(app: &TestApp, id: &str, secret: &str, scope: Option<&str>) -> (u16, serde_json::Value) {
    let mut form = vec![("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret)];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let res = app.client.post(app.url("/v1/oauth/token")).form(&form).send().await.unwrap_or_else(|e| panic!("{e}"));
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

async fn bearer(app: &TestApp, method: Method, path: &str, token: &str) -> u16 {
    app.client
        .request(method, app.url(path))
        .bearer_auth(token)
        .json(&serde_json::json!({"role": "viewer", "email": "x@example.com"}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn jwcrypto(args: &[&str]) -> (bool, String) {
    let python = std::env::var("STRONGROOM_TEST_JWCRYPTO_PYTHON")
        .unwrap_or_else(|_| panic!("STRONGROOM_TEST_JWCRYPTO_PYTHON: run scripts/test"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/jose_interop.py");
    let out = std::process::Command::new(python).arg(script).args(args).output().unwrap_or_else(|e| panic!("{e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

backend_tests! {
    // claim 003.3 003.9 004.6
    async fn a_service_account_reaches_its_organisation_within_its_scopes(backend) {
        let app = spawn_app(backend).await;
        let s = setup(&app, "org:read members:read").await;
        let list: serde_json::Value = s.admin.get("/v1/orgs/alpha-care/service-accounts").await.json().await.unwrap_or_default();
        assert!(!list.to_string().contains(&s.secret), "the secret is shown once only");
        let (status, t) = token(&app, &s.client_id, &s.secret, None).await;
        assert_eq!(status, 200, "{t}");
        assert_eq!(t["token_type"], "Bearer");
        assert_eq!(t["expires_in"], 900);
        let access = t["access_token"].as_str().unwrap_or("").to_owned();
        assert_eq!(access.split('.').count(), 3, "a JWS");
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care", &access).await, 200);
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care/members", &access).await, 200);
        assert_eq!(bearer(&app, Method::POST, "/v1/orgs/alpha-care/members", &access).await, 403, "no scope manages members");
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care/service-accounts", &access).await, 403);
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/beta-learn", &access).await, 404, "another organisation");
        assert_eq!(bearer(&app, Method::GET, "/v1/me", &access).await, 403, "not a person");
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs", &access).await, 200);
        let lower = app.client.get(app.url("/v1/orgs/alpha-care")).header("authorization", format!("bearer {access}")).send().await;
        assert_eq!(lower.map(|r| r.status().as_u16()).unwrap_or(0), 200, "the scheme is case-insensitive");

        let (status, narrow) = token(&app, &s.client_id, &s.secret, Some("org:read")).await;
        assert_eq!(status, 200);
        let narrow = narrow["access_token"].as_str().unwrap_or("").to_owned();
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care/members", &narrow).await, 403, "narrowed scope");
        let asked = token(&app, &s.client_id, &s.secret, Some("profiles:write")).await;
        assert_eq!(asked.1["error"], "invalid_scope", "{asked:?}");
        assert_eq!(token(&app, &s.client_id, "wrong-secret", None).await, (401, serde_json::json!({"error": "invalid_client", "error_description": "client authentication failed"})));
        let basic = app.client.post(app.url("/v1/oauth/token")).basic_auth(&s.client_id, Some(&s.secret)).form(&[("grant_type", "client_credentials")]).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        assert_eq!(basic, 200, "HTTP Basic client authentication");
        let grant = app.client.post(app.url("/v1/oauth/token")).form(&[("grant_type", "password")]).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(grant.status(), 400);
        app.shutdown().await.ok();
    }

    // claim 003.2
    async fn jwcrypto_verifies_our_tokens_against_the_jwks(backend) {
        let app = spawn_app(backend).await;
        let s = setup(&app, "org:read").await;
        let (_, t) = token(&app, &s.client_id, &s.secret, None).await;
        let access = t["access_token"].as_str().unwrap_or("").to_owned();
        let jwks: serde_json::Value = app.get("/.well-known/jwks.json").await.json().await.unwrap_or_default();
        let key = jwks["keys"][0].clone();
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["alg"], "EdDSA");
        assert!(key.get("d").is_none(), "no private part is published");
        let (ok, claims) = jwcrypto(&["verify-jws", "--jwk", &key.to_string(), "--token", &access]);
        assert!(ok, "jwcrypto verified the token");
        let claims: serde_json::Value = serde_json::from_str(&claims).unwrap_or_default();
        assert_eq!(claims["client_id"], s.client_id.as_str());
        assert_eq!(claims["aud"], "strongroom-api");
        assert_eq!(claims["iss"], "strongroom");
        app.shutdown().await.ok();
    }

    // claim 003.2 003.10
    async fn forged_tampered_expired_and_misaddressed_tokens_are_refused(backend) {
        let app = spawn_app(backend).await;
        let s = setup(&app, "org:read").await;
        let (_, t) = token(&app, &s.client_id, &s.secret, None).await;
        let access = t["access_token"].as_str().unwrap_or("").to_owned();
        let claims = {
            let payload = access.split('.').nth(1).unwrap_or("");
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap_or_default();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default()
        };
        let mut tampered = access.clone();
        let last = tampered.pop().unwrap_or('A');
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care", &tampered).await, 401, "tampered signature");
        let parts: Vec<&str> = access.split('.').collect();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care", &none).await, 401, "alg none");
        let hs = format!("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{}.{}", parts[1], parts[2]);
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care", &hs).await, 401, "algorithm confusion");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for (field, value, why) in [
            ("exp", serde_json::json!(now - 120), "expired"),
            ("nbf", serde_json::json!(now + 600), "not yet valid"),
            ("aud", serde_json::json!("someone-else"), "wrong audience"),
            ("iss", serde_json::json!("evil"), "wrong issuer"),
            ("scope", serde_json::json!("org:read audit:read"), "scope beyond the account's"),
        ] {
            let mut c = claims.clone();
            c[field] = value;
            let forged = app.engine().danger_sign_claims(&c).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care", &forged).await, 401, "{why}");
        }
        // Signed by a key that is not ours (jwcrypto, another kid).
        let foreign = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let (ok, foreign_token) = jwcrypto(&["make-jws", "--jwk", &foreign.to_string(), "--claims", &claims.to_string()]);
        assert!(ok);
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care", &foreign_token).await, 401, "unknown signer");
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care", &access).await, 200, "the genuine token still works");
        app.shutdown().await.ok();
    }

    // claim 003.3
    async fn revoked_tokens_and_accounts_stop_working_at_once(backend) {
        let app = spawn_app(backend).await;
        let s = setup(&app, "org:read").await;
        let issue = || token(&app, &s.client_id, &s.secret, None);
        let one = issue().await.1["access_token"].as_str().unwrap_or("").to_owned();
        let two = issue().await.1["access_token"].as_str().unwrap_or("").to_owned();
        let res = app.client.post(app.url("/v1/oauth/revoke")).basic_auth(&s.client_id, Some(&s.secret)).form(&[("token", one.as_str())]).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        assert_eq!(res, 200);
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care", &one).await, 401, "revoked token");
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care", &two).await, 200, "its sibling still works");
        let list: serde_json::Value = s.admin.get("/v1/orgs/alpha-care/service-accounts").await.json().await.unwrap_or_default();
        let id = list["service_accounts"][0]["id"].as_str().unwrap_or("").to_owned();
        assert_eq!(s.admin.send(Method::DELETE, &format!("/v1/orgs/alpha-care/service-accounts/{id}"), None).await.status(), 204);
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care", &two).await, 401, "revoked account");
        assert_eq!(issue().await.0, 401, "no new tokens");
        app.shutdown().await.ok();
    }

    async fn signing_keys_rotate_and_old_tokens_keep_verifying(backend) {
        let app = spawn_app(backend).await;
        let s = setup(&app, "org:read").await;
        let old = token(&app, &s.client_id, &s.secret, None).await.1["access_token"].as_str().unwrap_or("").to_owned();
        let kid = app.engine().rotate_signing_key().await.unwrap_or_else(|e| panic!("{e}"));
        let jwks: serde_json::Value = app.get("/.well-known/jwks.json").await.json().await.unwrap_or_default();
        let kids: Vec<&str> = jwks["keys"].as_array().into_iter().flatten().filter_map(|k| k["kid"].as_str()).collect();
        assert_eq!(kids.len(), 2, "{jwks}");
        assert_eq!(kids[0], kid, "the new key is listed first");
        let new = token(&app, &s.client_id, &s.secret, None).await.1["access_token"].as_str().unwrap_or("").to_owned();
        let header = {
            use base64::Engine as _;
            let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(new.split('.').next().unwrap_or("")).unwrap_or_default();
            serde_json::from_slice::<serde_json::Value>(&h).unwrap_or_default()
        };
        assert_eq!(header["kid"], kid.as_str(), "new tokens use the new key");
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care", &new).await, 200);
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care", &old).await, 200, "tokens signed before rotation still verify");

        // A root rotation re-wraps the signing seeds; tokens keep working.
        app.engine().keys().rotate_root().await.unwrap_or_else(|e| panic!("{e}"));
        let status = app.engine().keys().status().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status.pending_root_rewrap, 0);
        let after = token(&app, &s.client_id, &s.secret, None).await.1["access_token"].as_str().unwrap_or("").to_owned();
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care", &after).await, 200);
        app.shutdown().await.ok();
    }

    // claim 003.2
    async fn an_organisation_can_require_encrypted_tokens(backend) {
        let app = spawn_app(backend).await;
        let s = setup(&app, "org:read").await;
        let plain = token(&app, &s.client_id, &s.secret, None).await.1["access_token"].as_str().unwrap_or("").to_owned();
        let res = s.admin.send(Method::PUT, "/v1/orgs/alpha-care/settings", Some(serde_json::json!({"encrypted_tokens": true}))).await;
        assert_eq!(res.status(), 200);
        let jwe = token(&app, &s.client_id, &s.secret, None).await.1["access_token"].as_str().unwrap_or("").to_owned();
        assert_eq!(jwe.split('.').count(), 5, "a JWE");
        let header = {
            use base64::Engine as _;
            let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwe.split('.').next().unwrap_or("")).unwrap_or_default();
            serde_json::from_slice::<serde_json::Value>(&h).unwrap_or_default()
        };
        assert_eq!(header["alg"], "dir");
        assert_eq!(header["enc"], "A256GCM");
        assert!(!jwe.contains(&s.client_id), "claims are not readable");
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care", &jwe).await, 200);
        assert_eq!(bearer(&app, Method::GET, "/v1/orgs/alpha-care", &plain).await, 401, "plain tokens are refused once encryption is required");
        app.shutdown().await.ok();
    }
}
