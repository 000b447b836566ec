//! Service accounts and their access tokens (OAuth 2.0 client credentials,
//! RFC 6749 §4.4): a client id and a secret shown once and stored as its
//! SHA-256; short-lived EdDSA-signed JWTs (RFC 7519) whose signing keys are
//! wrapped by the root key and published as a JWKS; nested in a `dir` +
//! A256GCM JWE (RFC 7516) when the organisation asks for encrypted tokens.
//! Every call verifies the signature with pinned algorithms, `iss`, `aud`,
//! `exp`, `nbf`, that the token was not revoked and that its service
//! account still exists.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crypto::jose::{self, JweKey, SigningKey, VerifyingKeyEntry};
use crypto::{Key256, KeyContext, KeyPurpose, OpaqueToken};
use domain::{Action, OrgId, Scope, ServiceAccountId, SessionId, UserId};
use kms::WrappedKey;
use serde_json::{Value, json};
use store::{ServiceAccountRecord, SigningKeyRecord};

use crate::identity::{AuthError, Authorized, Principal, ServiceAccountGrant};
use crate::{Engine, EngineError, KeyError};

/// Who issues tokens and for whom, and how long they live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self { issuer: "strongroom".into(), audience: "strongroom-api".into(), ttl: Duration::from_secs(15 * 60) }
    }
}

/// Why a token request failed, in RFC 6749 §5.2 terms.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Unknown client, wrong secret or revoked account (one answer for all).
    #[error("invalid_client")]
    InvalidClient,
    /// A scope the account does not hold.
    #[error("invalid_scope")]
    InvalidScope,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// A token as handed to the client.
#[derive(Debug)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
    pub scopes: Vec<Scope>,
}

/// Signing keys unwrapped: the newest signs, all verify.
struct SigningMaterial {
    current: SigningKey,
    verifying: Vec<VerifyingKeyEntry>,
    jwks: Vec<Value>,
}

/// Cached token keys of an engine.
#[derive(Default)]
pub(crate) struct TokenState {
    signing: Mutex<Option<(Instant, Arc<SigningMaterial>)>>,
    /// When a refused client-credentials grant was last chained, per
    /// client: refusals are chained at most once a minute per client, so
    /// a flood of bad secrets cannot grow the trail without bound.
    refusals: Mutex<std::collections::HashMap<String, Instant>>,
}

/// How often a refused grant for one client is chained.
const REFUSAL_CHAIN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl std::fmt::Debug for TokenState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenState")
    }
}

const CACHE_FOR: Duration = Duration::from_secs(60);
const LEEWAY_SECS: i64 = 30;

fn signing_context(kid: &str) -> KeyContext {
    KeyContext { purpose: KeyPurpose::TokenSigning, scope: kid.to_owned(), version: 1 }
}

fn unix(t: time::OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

impl Engine {
    async fn signing_material(&self) -> Result<Arc<SigningMaterial>, EngineError> {
        if let Ok(guard) = self.tokens.signing.lock()
            && let Some((at, m)) = guard.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return Ok(Arc::clone(m));
        }
        let kms = self.keys.kms();
        let mut records = self.store.live_signing_keys().await?;
        if records.is_empty() {
            let seed = Key256::generate().map_err(AuthError::from)?;
            let key = SigningKey::from_seed(seed.expose_for_cipher());
            let wrapped = kms.wrap(&seed, &signing_context(key.kid())).await.map_err(KeyError::from)?;
            let record = SigningKeyRecord {
                kid: key.kid().to_owned(),
                seed_wrapped: wrapped.0,
                kms_key_id: kms.info().key_id,
                created_at: store::now(),
            };
            match self.store.insert_signing_key(&record).await {
                Ok(()) | Err(store::StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            records = self.store.live_signing_keys().await?;
        }
        let mut keys = Vec::new();
        for r in &records {
            let seed = kms
                .unwrap(&WrappedKey(r.seed_wrapped.clone()), &signing_context(&r.kid))
                .await
                .map_err(KeyError::from)?;
            keys.push(SigningKey::from_seed(seed.expose_for_cipher()));
        }
        let verifying = keys.iter().map(SigningKey::verifying_entry).collect();
        let jwks = keys.iter().map(SigningKey::public_jwk).collect();
        let current = keys.into_iter().next().ok_or(EngineError::Key(KeyError::NoKey))?;
        let material = Arc::new(SigningMaterial { current, verifying, jwks });
        if let Ok(mut guard) = self.tokens.signing.lock() {
            *guard = Some((Instant::now(), Arc::clone(&material)));
        }
        Ok(material)
    }

    /// Adds a signing key that signs from now on. Older keys keep verifying
    /// until every token they signed has expired, then are retired. Returns
    /// the new key id.
    pub async fn rotate_signing_key(&self) -> Result<String, EngineError> {
        let kms = self.keys.kms();
        let seed = Key256::generate().map_err(AuthError::from)?;
        let key = SigningKey::from_seed(seed.expose_for_cipher());
        let wrapped = kms.wrap(&seed, &signing_context(key.kid())).await.map_err(KeyError::from)?;
        let now = store::now();
        self.store
            .insert_signing_key(&SigningKeyRecord {
                kid: key.kid().to_owned(),
                seed_wrapped: wrapped.0,
                kms_key_id: kms.info().key_id,
                created_at: now,
            })
            .await?;
        // A key whose successor has signed for longer than a token lives
        // signed nothing still valid.
        let grace = time::Duration::try_from(self.token_settings.ttl).unwrap_or(time::Duration::HOUR)
            + time::Duration::minutes(1);
        let live = self.store.live_signing_keys().await?;
        for pair in live.windows(2) {
            let (newer, older) = (&pair[0], &pair[1]);
            if now - newer.created_at > grace {
                self.store.retire_signing_key(&older.kid).await?;
            }
        }
        if let Ok(mut guard) = self.tokens.signing.lock() {
            *guard = None;
        }
        let entry =
            crate::audit::draft("cli".into(), "signing_key.rotate", format!("signing_key:{}", key.kid()), Vec::new());
        self.platform_audit(entry).await?;
        Ok(key.kid().to_owned())
    }

    /// The key of encrypted tokens: derived from the platform key.
    async fn token_jwe_key(&self) -> Result<JweKey, EngineError> {
        let (_, platform) = self.keys.platform_key().await?;
        let (_, mut okm) = crypto::hkdf_sha256(&[], platform.expose_for_cipher(), b"strongroom/token-jwe/v1", 32)
            .map_err(AuthError::from)?;
        Ok(JweKey::Dir(Key256::from_slice(&mut okm).map_err(AuthError::from)?))
    }

    /// The public signing keys, as a JWK Set.
    pub async fn jwks(&self) -> Result<Value, EngineError> {
        Ok(json!({ "keys": self.signing_material().await?.jwks }))
    }

    /// Creates a service account; its secret is returned this once.
    pub async fn create_service_account(
        &self,
        auth: &Authorized,
        name: &str,
        scopes: Vec<Scope>,
    ) -> Result<(ServiceAccountRecord, OpaqueToken), EngineError> {
        self.require(auth, Action::ManageServiceAccounts)?;
        let secret = OpaqueToken::generate().map_err(AuthError::from)?;
        let id = ServiceAccountId::new();
        let record = ServiceAccountRecord {
            org_id: auth.org(),
            id,
            name: name.to_owned(),
            client_id: format!("sa_{}", id.as_uuid().simple()),
            secret_hash: secret.digest(),
            scopes,
            created_at: store::now(),
            revoked_at: None,
        };
        self.store.create_service_account(&record).await?;
        let scopes = record.scopes.iter().map(|s| format!("scope:{}", s.as_str())).collect();
        let entry =
            crate::audit::by(auth.principal(), "service_account.create", format!("service_account:{id}"), scopes);
        self.org_audit(auth.org(), entry).await?;
        Ok((record, secret))
    }

    pub async fn service_accounts(&self, auth: &Authorized) -> Result<Vec<ServiceAccountRecord>, EngineError> {
        self.require(auth, Action::ManageServiceAccounts)?;
        Ok(self.store.service_accounts(auth.org()).await?)
    }

    /// Revokes a service account: its tokens stop working at once.
    pub async fn revoke_service_account(&self, auth: &Authorized, id: ServiceAccountId) -> Result<bool, EngineError> {
        self.require(auth, Action::ManageServiceAccounts)?;
        let revoked = self.store.revoke_service_account(auth.org(), id).await?;
        if revoked {
            let entry = crate::audit::by(
                auth.principal(),
                "service_account.revoke",
                format!("service_account:{id}"),
                Vec::new(),
            );
            self.org_audit(auth.org(), entry).await?;
        }
        Ok(revoked)
    }

    /// Turns encrypted (JWE) tokens on or off for an organisation.
    pub async fn set_encrypted_tokens(&self, auth: &Authorized, on: bool) -> Result<(), EngineError> {
        self.require(auth, Action::ManageSettings)?;
        self.store.set_org_encrypts_tokens(auth.org(), on).await?;
        let setting = format!("encrypted_tokens:{}", if on { "on" } else { "off" });
        let entry = crate::audit::by(auth.principal(), "org.settings", format!("org:{}", auth.org()), vec![setting]);
        self.org_audit(auth.org(), entry).await
    }

    pub async fn encrypted_tokens(&self, auth: &Authorized) -> Result<bool, EngineError> {
        Ok(self.store.org_encrypts_tokens(auth.org()).await?)
    }

    /// Authenticates a client by id and secret (constant-time comparison).
    async fn client(&self, client_id: &str, secret: &str) -> Result<ServiceAccountRecord, TokenError> {
        let presented = OpaqueToken::digest_of(secret);
        // Every client id issued is `sa_` and 32 hex digits; anything else
        // (a NUL byte, which PostgreSQL cannot even compare) is unknown.
        let well_formed = client_id.len() == 35
            && client_id.strip_prefix("sa_").is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !well_formed {
            return Err(TokenError::InvalidClient);
        }
        let sa = self.store.service_account_by_client_id(client_id).await.map_err(EngineError::from)?;
        match sa {
            Some(sa) if sa.revoked_at.is_none() && crypto::ct_eq(&sa.secret_hash, &presented) => Ok(sa),
            _ => Err(TokenError::InvalidClient),
        }
    }

    /// Whether a refusal for this client should be chained now (not within
    /// the last minute); remembers that it was.
    fn chain_refusal_now(&self, client_id: &str) -> bool {
        let Ok(mut last) = self.tokens.refusals.lock() else { return true };
        let now = Instant::now();
        last.retain(|_, at| now.duration_since(*at) < REFUSAL_CHAIN_EVERY);
        if last.contains_key(client_id) {
            return false;
        }
        last.insert(client_id.to_owned(), now);
        true
    }

    /// The client-credentials grant: a short-lived access token for the
    /// account's scopes (or the requested subset).
    pub async fn issue_token(
        &self,
        client_id: &str,
        secret: &str,
        scope: Option<&str>,
    ) -> Result<IssuedToken, TokenError> {
        let sa = match self.client(client_id, secret).await {
            Ok(sa) => sa,
            Err(e) => {
                metrics::counter!("strongroom_token_refusals_total").increment(1);
                // Only refusals for a real service account are chained, at
                // most once a minute each (the metric counts them all).
                if let Ok(Some(sa)) = self.store.service_account_by_client_id(client_id).await
                    && self.chain_refusal_now(&sa.client_id)
                {
                    let target = format!("service_account:{}", sa.id);
                    let mut entry = crate::audit::draft("anonymous".into(), "token.issue", target, Vec::new());
                    entry.outcome = "failure".into();
                    self.platform_audit(entry).await?;
                }
                return Err(e);
            }
        };
        let scopes = match scope {
            None => sa.scopes.clone(),
            Some(s) => {
                let asked = Scope::parse_list(s).ok_or(TokenError::InvalidScope)?;
                if asked.iter().any(|a| !sa.scopes.contains(a)) {
                    return Err(TokenError::InvalidScope);
                }
                asked
            }
        };
        let now = unix(store::now());
        let ttl = self.token_settings.ttl.as_secs();
        let claims = json!({
            "iss": self.token_settings.issuer,
            "aud": self.token_settings.audience,
            "sub": sa.id,
            "client_id": sa.client_id,
            "org": sa.org_id,
            "scope": domain::scope_list(&scopes),
            "iat": now,
            "nbf": now,
            "exp": now + i64::try_from(ttl).unwrap_or(900),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
        let material = self.signing_material().await?;
        let jws = material.current.sign(&claims).map_err(|e| EngineError::Auth(AuthError::Token(e.to_string())))?;
        let access_token = if self.store.org_encrypts_tokens(sa.org_id).await.map_err(EngineError::from)? {
            let key = self.token_jwe_key().await?;
            jose::encrypt_jwe(jws.as_bytes(), &key, "token-jwe-1", Some("JWT"))
                .map_err(|e| EngineError::Auth(AuthError::Token(e.to_string())))?
        } else {
            jws
        };
        let fields = scopes.iter().map(|s| format!("scope:{}", s.as_str())).collect();
        let entry =
            crate::audit::draft(format!("service_account:{}", sa.id), "token.issue", format!("token:{jti}"), fields);
        self.org_audit(sa.org_id, entry).await?;
        Ok(IssuedToken { access_token, expires_in: ttl, scopes })
    }

    /// Signs arbitrary claims with the current key. Only for tests that
    /// show tampered, expired or misaddressed tokens are refused.
    #[doc(hidden)]
    pub async fn danger_sign_claims(&self, claims: &Value) -> Result<String, EngineError> {
        let material = self.signing_material().await?;
        material.current.sign(claims).map_err(|e| EngineError::Auth(AuthError::Token(e.to_string())))
    }

    /// Verifies a bearer token and returns the service account's principal.
    pub async fn authenticate_bearer(&self, token: &str) -> Result<Principal, AuthError> {
        let unauth = |_| AuthError::Unauthenticated;
        let (jws, encrypted) = if token.split('.').count() == 5 {
            let key = self.token_jwe_key().await.map_err(|_| AuthError::Unauthenticated)?;
            let inner = jose::decrypt_jwe(token, &key).map_err(unauth)?;
            (String::from_utf8(inner.to_vec()).map_err(|_| AuthError::Unauthenticated)?, true)
        } else {
            (token.to_owned(), false)
        };
        let material = self.signing_material().await.map_err(|_| AuthError::Unauthenticated)?;
        let claims = jose::verify_jws(&jws, &material.verifying).map_err(unauth)?;
        let now = unix(store::now());
        jose::check_claims(&claims, &self.token_settings.issuer, &self.token_settings.audience, now, LEEWAY_SECS)
            .map_err(unauth)?;
        let text = |k: &str| claims[k].as_str().map(str::to_owned).ok_or(AuthError::Unauthenticated);
        let jti = text("jti")?;
        let client_id = text("client_id")?;
        let org: OrgId = text("org")?.parse().map_err(|_| AuthError::Unauthenticated)?;
        let sub: ServiceAccountId = text("sub")?.parse().map_err(|_| AuthError::Unauthenticated)?;
        let scopes = Scope::parse_list(&text("scope")?).ok_or(AuthError::Unauthenticated)?;
        // One round trip: the account, its organisation's token setting, the
        // token's revocation, and what authorising the call will need.
        let facts = self.store.bearer_facts(&client_id, &jti).await?.ok_or(AuthError::Unauthenticated)?;
        let sa = facts.account;
        if facts.jti_revoked
            || sa.revoked_at.is_some()
            || sa.id != sub
            || sa.org_id != org
            || scopes.iter().any(|s| !sa.scopes.contains(s))
        {
            return Err(AuthError::Unauthenticated);
        }
        if !encrypted && facts.org_encrypts_tokens {
            return Err(AuthError::Unauthenticated);
        }
        Ok(Principal {
            user: UserId::from_uuid(uuid::Uuid::nil()),
            is_operator: false,
            session: SessionId::from_uuid(uuid::Uuid::nil()),
            mfa_passed: true,
            service_account: Some(ServiceAccountGrant { id: sa.id, org, scopes, jti, org_access: facts.org }),
            support_session: None,
            acting_operator: None,
        })
    }

    /// Token revocation (RFC 7009), by the client that holds it.
    pub async fn revoke_token(&self, client_id: &str, secret: &str, token: &str) -> Result<(), TokenError> {
        let sa = self.client(client_id, secret).await?;
        // An invalid token, or another client's, is answered like a success
        // (RFC 7009 §2.2) and changes nothing.
        if let Ok(p) = self.authenticate_bearer(token).await
            && let Some(grant) = p.service_account
            && grant.id == sa.id
        {
            let exp = store::now() + time::Duration::try_from(self.token_settings.ttl).unwrap_or(time::Duration::HOUR);
            self.store.revoke_jti(&grant.jti, exp).await.map_err(EngineError::from)?;
            let actor = format!("service_account:{}", sa.id);
            let entry = crate::audit::draft(actor, "token.revoke", format!("token:{}", grant.jti), Vec::new());
            self.org_audit(sa.org_id, entry).await?;
        }
        Ok(())
    }
}
