//! Identity and access: sign-in, sessions, users, memberships, and the one
//! authorisation function every caller goes through. `Authorized` can only
//! be made by `Engine::authorize`: holding one proves the check happened.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crypto::{OpaqueToken, PasswordPolicy, PolicyViolation};
use domain::{Action, DisplayName, Email, OrgId, PlatformAction, Role, SessionId, UserId, role_permits};
use store::{MemberRecord, MembershipChange, MembershipOutcome, SessionRecord, UserRecord, UserStatus};
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::{Engine, EngineError};

/// How long sessions live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Signed out after this long without a request.
    pub idle: Duration,
    /// Signed out this long after signing in, whatever happens.
    pub absolute: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self { idle: Duration::from_secs(30 * 60), absolute: Duration::from_secs(12 * 3600) }
    }
}

/// Identity settings of a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentitySettings {
    pub sessions: SessionPolicy,
    pub password_policy: PasswordPolicy,
    /// The most of the machine's CPU, in percent, that password hashing
    /// (Argon2id) may take: a storm of sign-ins waits its turn instead of
    /// starving the requests that serve data.
    pub hashing_cpu_percent: u8,
}

/// The default [`IdentitySettings::hashing_cpu_percent`].
pub const DEFAULT_HASHING_CPU_PERCENT: u8 = 15;

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            sessions: SessionPolicy::default(),
            password_policy: PasswordPolicy::default(),
            hashing_cpu_percent: DEFAULT_HASHING_CPU_PERCENT,
        }
    }
}

/// Why a caller could not be identified. Messages are the same whether or
/// not an account exists.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("wrong e-mail address or password")]
    InvalidCredentials,
    #[error("too many failed sign-ins; try again in {} seconds", retry_after.as_secs().max(1))]
    Throttled { retry_after: Duration },
    /// Password hashing is at its CPU budget and the wait for a turn ran out.
    #[error("too many sign-ins at once; try again in {} seconds", retry_after.as_secs().max(1))]
    Busy { retry_after: Duration },
    #[error("not signed in, or the session has ended")]
    Unauthenticated,
    #[error(transparent)]
    Policy(#[from] PolicyViolation),
    /// A token could not be made (a signing or encryption failure).
    #[error("token error: {0}")]
    Token(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
}

/// Why an authenticated caller may not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// The organisation does not exist or the caller has no access to it;
    /// the two are indistinguishable on purpose.
    #[error("no such organisation")]
    NotFound,
    /// The caller is a member, but their role does not allow this.
    #[error("your role does not allow this")]
    Forbidden,
    /// The action needs a session that passed two-factor authentication.
    #[error("this needs two-factor authentication")]
    MfaRequired,
    /// The organisation is suspended by the platform.
    #[error("this organisation is suspended")]
    Suspended,
    #[error("store error")]
    Store,
}

/// Why a second factor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MfaError {
    #[error("the code is wrong, expired or already used")]
    InvalidCode,
    #[error("two-factor authentication is already set up for this account")]
    AlreadyEnrolled,
    #[error("two-factor authentication is not set up for this account")]
    NotEnrolled,
}

/// What a user needs to add Strongroom to an authenticator app. Shown once.
#[derive(Debug)]
pub struct TotpEnrolment {
    pub secret_base32: zeroize::Zeroizing<String>,
    pub uri: zeroize::Zeroizing<String>,
    pub qr_svg: String,
}

/// How long an invitation lives.
const INVITATION_TTL: Duration = Duration::from_secs(7 * 86_400);

/// How long a password-reset token lives.
const RESET_TTL: Duration = Duration::from_secs(30 * 60);

/// The issuer name authenticator apps show.
const TOTP_ISSUER: &str = "Strongroom";
const RECOVERY_CODES: usize = 10;

fn totp_aad(user: UserId, version: u32) -> Vec<u8> {
    crypto::canonical(&[b"strongroom/totp/v1", user.as_bytes(), &version.to_be_bytes()])
}

/// A recovery code as typed: lower-case hex, dashes and spaces ignored.
fn normalise_recovery_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

/// An authenticated caller: a user with a session, or a service account
/// with an access token (then `user` and `session` are nil).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user: UserId,
    pub is_operator: bool,
    pub session: SessionId,
    pub mfa_passed: bool,
    pub service_account: Option<ServiceAccountGrant>,
    /// The support session an operator is acting under, once authorised
    /// through one (set by `authorize`, never by authentication).
    pub support_session: Option<uuid::Uuid>,
    /// The operator acting as this user, under the user's own grant.
    pub acting_operator: Option<UserId>,
}

/// What a service account's access token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountGrant {
    pub id: domain::ServiceAccountId,
    pub org: OrgId,
    pub scopes: Vec<domain::Scope>,
    pub jti: String,
    /// The organisation as read with the token, in the same statement and
    /// the same request (a principal lives for one request).
    pub org_access: store::OrgAccess,
}

/// What an authorisation rests on: a member's role, a token's scopes, or
/// an operator's approved support session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    Role(Role),
    Scopes(Vec<domain::Scope>),
    /// Read (profiles' plain and personal fields), and write when `write`;
    /// limited to `profiles` unless empty.
    Support {
        session: uuid::Uuid,
        write: bool,
        profiles: Vec<domain::ProfileId>,
    },
}

impl Grant {
    pub fn permits(&self, action: Action) -> bool {
        match self {
            Self::Role(r) => role_permits(*r, action),
            Self::Scopes(s) => s.iter().any(|s| s.permits(action)),
            Self::Support { write, .. } => {
                matches!(action, Action::ViewOrg | Action::ReadProfiles) || (*write && action == Action::WriteProfiles)
            }
        }
    }
}

/// Proof that `principal` may take `action` in `org`. Only
/// `Engine::authorize` makes one.
#[derive(Clone, Debug)]
pub struct Authorized {
    principal: Principal,
    org: OrgId,
    grant: Grant,
    action: Action,
    /// The organisation as read while authorising (this request's view of
    /// its current schema and key versions); `None` for local CLI access.
    seen: Option<store::OrgAccess>,
}

impl Authorized {
    pub(crate) fn new(
        principal: Principal,
        org: OrgId,
        grant: Grant,
        action: Action,
        seen: Option<store::OrgAccess>,
    ) -> Self {
        Self { principal, org, grant, action, seen }
    }
    /// The organisation as read while authorising, if it was.
    pub(crate) fn seen(&self) -> Option<&store::OrgAccess> {
        self.seen.as_ref()
    }
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
    pub fn org(&self) -> OrgId {
        self.org
    }
    /// The member's role; `None` for a service account or a support
    /// session.
    pub fn role(&self) -> Option<Role> {
        match self.grant {
            Grant::Role(r) => Some(r),
            Grant::Scopes(_) | Grant::Support { .. } => None,
        }
    }
    /// Whether this rests on an operator's support session.
    pub fn is_support(&self) -> bool {
        matches!(self.grant, Grant::Support { .. })
    }
    /// The records a support session is limited to; `None`: no limit.
    pub fn profile_limit(&self) -> Option<&[domain::ProfileId]> {
        match &self.grant {
            Grant::Support { profiles, .. } if !profiles.is_empty() => Some(profiles),
            _ => None,
        }
    }
    /// Whether the same grant also allows another action.
    pub fn permits(&self, action: Action) -> bool {
        self.grant.permits(action)
    }
    pub fn action(&self) -> Action {
        self.action
    }
}

/// Proof that an operator may take a platform action.
#[derive(Clone, Debug)]
pub struct AuthorizedPlatform {
    principal: Principal,
    action: PlatformAction,
}

impl AuthorizedPlatform {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
    pub fn action(&self) -> PlatformAction {
        self.action
    }
}

/// A new account.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub email: Email,
    pub display_name: DisplayName,
    pub is_operator: bool,
}

/// Failed sign-ins per account and per client address, with exponential
/// back-off after a few free attempts. In memory, per instance.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    entries: Mutex<HashMap<String, (u32, Instant)>>,
}

const FREE_ATTEMPTS: u32 = 5;
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
const MAX_TRACKED: usize = 100_000;

impl Throttle {
    fn keys(email: &str, client: Option<IpAddr>) -> Vec<String> {
        let mut keys = vec![format!("account:{}", email.trim().to_lowercase())];
        if let Some(ip) = client {
            keys.push(format!("address:{ip}"));
        }
        keys
    }

    /// How long the caller must still wait, if at all.
    fn wait(&self, keys: &[String]) -> Option<Duration> {
        let entries = self.entries.lock().ok()?;
        keys.iter()
            .filter_map(|k| entries.get(k))
            .filter_map(|(failures, last)| {
                let backoff = backoff(*failures)?;
                backoff.checked_sub(last.elapsed())
            })
            .max()
    }

    fn failed(&self, keys: &[String]) {
        let Ok(mut entries) = self.entries.lock() else { return };
        if entries.len() >= MAX_TRACKED {
            entries.retain(|_, (_, last)| last.elapsed() < MAX_BACKOFF);
        }
        for k in keys {
            let e = entries.entry(k.clone()).or_insert((0, Instant::now()));
            e.0 = e.0.saturating_add(1);
            e.1 = Instant::now();
        }
    }

    fn succeeded(&self, account_key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(account_key);
        }
    }
}

fn backoff(failures: u32) -> Option<Duration> {
    let over = failures.checked_sub(FREE_ATTEMPTS)?;
    let secs = 1u64.checked_shl(over.min(20)).unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_BACKOFF))
}

/// Shared identity machinery held by the engine.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) settings: IdentitySettings,
    pub(crate) throttle: Throttle,
    /// Bounds concurrent Argon2 hashes (memory-hard: 19 MiB each) and,
    /// with `rest_factor`, their share of the CPU.
    pub(crate) hashing: Arc<Semaphore>,
    /// After a hash that took `t`, its permit rests `t × rest_factor`
    /// before the next hash may take it, so hashing keeps each permit busy
    /// for at most `1 / (1 + rest_factor)` of the time.
    rest_factor: f64,
    /// The threads that hash, one per permit, started on first use. The
    /// same few threads do every hash, so the allocator keeps at most one
    /// 19 MiB block per thread instead of one in every thread that ever
    /// hashed.
    hashers: std::sync::OnceLock<std::sync::mpsc::SyncSender<HashJob>>,
    permits: usize,
}

/// A hash for one of the hashing threads.
type HashJob = Box<dyn FnOnce() + Send>;

impl Identity {
    pub(crate) fn new(settings: IdentitySettings) -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let (permits, rest_factor) = hashing_budget(cores, settings.hashing_cpu_percent);
        Self {
            settings,
            throttle: Throttle::default(),
            hashing: Arc::new(Semaphore::new(permits)),
            rest_factor,
            hashers: std::sync::OnceLock::new(),
            permits,
        }
    }

    /// Runs `f` on a hashing thread, within the budget, and returns its
    /// result. The turn (a `hashing` permit) goes with the job: the thread
    /// keeps it through the hash and the rest after it, so a caller that
    /// gives up (a request timed out) neither frees it early nor breaks the
    /// budget. A caller that waits `HASHING_WAIT` for a turn is told to come
    /// back later.
    async fn on_hasher<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, AuthError> {
        let permit = tokio::time::timeout(HASHING_WAIT, Arc::clone(&self.hashing).acquire_owned())
            .await
            .map_err(|_| AuthError::Busy { retry_after: Duration::from_secs(1) })?
            .map_err(|_| AuthError::Unauthenticated)?;
        let rest_factor = self.rest_factor;
        let queue = self.hashers.get_or_init(|| {
            // Every job in the queue or on a thread holds a permit, so the
            // queue never holds more than there are permits.
            let (tx, rx) = std::sync::mpsc::sync_channel::<HashJob>(self.permits);
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..self.permits {
                let rx = Arc::clone(&rx);
                let spawned = std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
                if spawned.is_err() {
                    tracing::error!("could not start a password hashing thread");
                }
            }
            tx
        });
        let (done, answer) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move || {
            let started = std::time::Instant::now();
            let _ = done.send(f());
            std::thread::sleep(started.elapsed().mul_f64(rest_factor));
            drop(permit);
        });
        queue.try_send(job).map_err(|_| AuthError::Unauthenticated)?;
        answer.await.map_err(|_| AuthError::Unauthenticated)
    }
}

/// The longest a sign-in waits for its turn to hash before it is told to
/// come back (429 with Retry-After), well within a request's time limit.
const HASHING_WAIT: Duration = Duration::from_secs(5);

/// How many hashes may run at once and how long each permit rests after a
/// hash, for hashing to use at most `percent` of `cores`: as many permits
/// as whole cores that share allows (at least one), each busy for the
/// share's remainder.
fn hashing_budget(cores: usize, percent: u8) -> (usize, f64) {
    let share = f64::from(percent.clamp(1, 100)) / 100.0 * cores as f64;
    let permits = (share.floor() as usize).clamp(1, cores.max(1));
    let duty = (share / permits as f64).min(1.0);
    (permits, (1.0 / duty) - 1.0)
}

/// Who a membership change is chained as.
enum Actor<'a> {
    /// An authenticated caller (with whom they act for, if anyone).
    Caller(&'a Principal),
    /// A named actor, such as the invitee accepting.
    Named(String),
}

/// Refuses account-security changes to an operator acting as a user: the
/// grant covers using the account, not taking it over.
pub(crate) fn refuse_acting(principal: &Principal) -> Result<(), EngineError> {
    if principal.acting_operator.is_some() { Err(EngineError::Denied(Denied::Forbidden)) } else { Ok(()) }
}

fn to_time(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

impl Engine {
    /// Runs a password check on a hashing thread, within the hashing budget.
    async fn check_password(&self, password: &str, hash: Option<&str>) -> Result<crypto::Verified, AuthError> {
        let password = zeroize::Zeroizing::new(password.to_owned());
        let hash = hash.map(str::to_owned);
        self.identity
            .on_hasher(move || match hash {
                Some(h) => crypto::verify_password(&password, &h),
                None => {
                    crypto::verify_dummy(&password);
                    crypto::Verified { ok: false, needs_rehash: false }
                }
            })
            .await
    }

    /// Hashes a new password on a hashing thread, within the same budget as
    /// password checks: a burst of password changes cannot stall the
    /// runtime or take the CPU from data requests.
    async fn hash_new_password(&self, password: &str) -> Result<String, AuthError> {
        let password = zeroize::Zeroizing::new(password.to_owned());
        self.identity.on_hasher(move || crypto::hash_password(&password)).await?.map_err(AuthError::from)
    }

    /// Signs in with e-mail and password. Returns the session's secret
    /// (for the cookie, once), the session and the user.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<(OpaqueToken, SessionRecord, UserRecord), AuthError> {
        let keys = Throttle::keys(email, client);
        if let Some(retry_after) = self.identity.throttle.wait(&keys) {
            metrics::counter!("strongroom_signin_throttled_total").increment(1);
            return Err(AuthError::Throttled { retry_after });
        }
        let user = match Email::parse(email) {
            Ok(e) => self.store.user_by_email(&e).await?,
            Err(_) => None,
        };
        let hash = user.as_ref().filter(|u| u.status == UserStatus::Active).and_then(|u| u.password_hash.as_deref());
        let verified = self.check_password(password, hash).await?;
        let user = match user {
            Some(u) if verified.ok && u.status == UserStatus::Active => u,
            other => {
                self.identity.throttle.failed(&keys);
                metrics::counter!("strongroom_signin_failures_total").increment(1);
                // The attempted address is personal: only a known account's
                // id is recorded.
                let target = other.map_or_else(|| "user:unknown".to_owned(), |u| format!("user:{}", u.id));
                let mut entry = crate::audit::draft("anonymous".into(), "signin", target, Vec::new());
                entry.outcome = "failure".into();
                self.signin_audit(entry).await;
                return Err(AuthError::InvalidCredentials);
            }
        };
        self.identity.throttle.succeeded(&keys[0]);
        if verified.needs_rehash {
            let new_hash = self.hash_new_password(password).await?;
            self.store.set_password_hash(user.id, &new_hash).await?;
        }
        let token = OpaqueToken::generate()?;
        let now = store::now();
        let session = SessionRecord {
            id: SessionId::new(),
            user_id: user.id,
            mfa_passed: false,
            created_at: now,
            last_seen_at: now,
            expires_at: now + to_time(self.identity.settings.sessions.absolute),
            revoked_at: None,
            acting_operator: None,
            account_grant: None,
        };
        self.store.create_session(&session, &token.digest()).await?;
        let entry =
            crate::audit::draft(format!("user:{}", user.id), "signin", format!("session:{}", session.id), Vec::new());
        self.signin_audit(entry).await;
        Ok((token, session, user))
    }

    /// Records a sign-in on the platform chain. A failure to record is
    /// logged, not fatal: refusing every sign-in while the store hiccups
    /// would lock everyone out.
    async fn signin_audit(&self, entry: audit::Draft) {
        if let Err(e) = self.platform_audit(entry).await {
            tracing::warn!(error = %e, "could not record a sign-in in the audit trail");
        }
    }

    /// Identifies the caller from a session secret: it must exist, be
    /// unrevoked, within its absolute and idle limits, and its user active.
    pub async fn authenticate(&self, secret: &str) -> Result<Principal, AuthError> {
        let session =
            self.store.session_by_secret(&OpaqueToken::digest_of(secret)).await?.ok_or(AuthError::Unauthenticated)?;
        let now = store::now();
        let idle = to_time(self.identity.settings.sessions.idle);
        if session.revoked_at.is_some() || session.expires_at <= now || session.last_seen_at + idle <= now {
            return Err(AuthError::Unauthenticated);
        }
        let user = self.store.user_by_id(session.user_id).await?.ok_or(AuthError::Unauthenticated)?;
        if user.status != UserStatus::Active {
            return Err(AuthError::Unauthenticated);
        }
        // A session acting under a user's grant works only while the grant
        // does (looked up every time: ending it takes effect at once).
        if let Some(grant) = session.account_grant {
            let active = self
                .store
                .account_grant(grant)
                .await?
                .is_some_and(|g| g.user == user.id && g.is_active(crate::audit::now_micros()));
            if !active || session.acting_operator.is_none() {
                return Err(AuthError::Unauthenticated);
            }
        }
        // ...and while the operator is still an active operator.
        if let Some(op) = session.acting_operator {
            let still =
                self.store.user_by_id(op).await?.is_some_and(|u| u.is_operator && u.status == UserStatus::Active);
            if !still {
                return Err(AuthError::Unauthenticated);
            }
        }
        if now - session.last_seen_at > time::Duration::seconds(30) {
            self.store.touch_session(session.id, now).await?;
        }
        Ok(Principal {
            user: user.id,
            // Acting as a user never brings that user's platform powers.
            is_operator: user.is_operator && session.acting_operator.is_none(),
            session: session.id,
            mfa_passed: session.mfa_passed,
            service_account: None,
            support_session: None,
            acting_operator: session.acting_operator,
        })
    }

    /// Ends the caller's current session.
    pub async fn logout(&self, principal: &Principal) -> Result<(), EngineError> {
        self.store.revoke_session(principal.user, principal.session).await?;
        Ok(())
    }

    /// The caller's live sessions.
    pub async fn sessions(&self, principal: &Principal) -> Result<Vec<SessionRecord>, EngineError> {
        Ok(self.store.live_sessions_of(principal.user).await?)
    }

    /// Revokes one of the caller's own sessions; false if no such session.
    pub async fn revoke_session(&self, principal: &Principal, id: SessionId) -> Result<bool, EngineError> {
        let revoked = self.store.revoke_session(principal.user, id).await?;
        if revoked {
            self.platform_audit(crate::audit::by(principal, "session.revoke", format!("session:{id}"), Vec::new()))
                .await?;
        }
        Ok(revoked)
    }

    /// Records an account event on the platform chain.
    pub(crate) async fn platform_audit(&self, entry: audit::Draft) -> Result<(), EngineError> {
        self.record(crate::audit::Pending::new(crate::audit::PLATFORM_CHAIN.to_owned(), vec![entry])).await
    }

    /// Chains one entry in an organisation's trail, in a transaction of its
    /// own (for changes that are not profile data).
    pub(crate) async fn org_audit(&self, org: OrgId, entry: audit::Draft) -> Result<(), EngineError> {
        self.record(crate::audit::Pending::new(crate::audit::org_chain(org), vec![entry])).await
    }

    /// The one authorisation decision for organisation actions: the caller
    /// must be a member whose role permits the action. Operators are not
    /// members and get nothing (support sessions will grant them access).
    /// Deny by default: anything else is refused.
    pub async fn authorize(&self, principal: &Principal, org: OrgId, action: Action) -> Result<Authorized, Denied> {
        if let Some(sa) = &principal.service_account {
            if sa.org != org {
                return Err(Denied::NotFound);
            }
            // Read with the token in this request: no second round trip.
            let access = sa.org_access;
            if access.status == domain::OrgStatus::Suspended {
                return Err(Denied::Suspended);
            }
            if !sa.scopes.iter().any(|s| s.permits(action)) {
                return Err(Denied::Forbidden);
            }
            return Ok(Authorized::new(principal.clone(), org, Grant::Scopes(sa.scopes.clone()), action, Some(access)));
        }
        // An operator acting as a user uses the account; they do not run its
        // organisations (no members, owners, tokens, settings, schema or
        // support decisions), so nothing they do outlives the grant.
        if principal.acting_operator.is_some() && runs_the_organisation(action) {
            return Err(Denied::Forbidden);
        }
        let role = self.store.membership_role(org, principal.user).await.map_err(|_| Denied::Store)?;
        if role.is_none() && principal.is_operator {
            return self.authorize_support(principal, org, action).await;
        }
        let role = match role {
            None => return Err(Denied::NotFound),
            Some(role) if role_permits(role, action) => role,
            Some(_) => return Err(Denied::Forbidden),
        };
        let access = self.store.org_access(org).await.map_err(|_| Denied::Store)?.ok_or(Denied::NotFound)?;
        if access.status == domain::OrgStatus::Suspended {
            return Err(Denied::Suspended);
        }
        // Owners and admins need a second factor, and so does everyone where
        // the organisation says so.
        let needs_mfa = matches!(role, Role::Owner | Role::Admin) || access.requires_mfa;
        if needs_mfa && !principal.mfa_passed {
            return Err(Denied::MfaRequired);
        }
        Ok(Authorized::new(principal.clone(), org, Grant::Role(role), action, Some(access)))
    }

    /// The person a record belongs to reaches it without membership, but
    /// not past the organisation's suspension or its 2FA rule.
    pub(crate) async fn authorize_record_owner(&self, principal: &Principal, org: OrgId) -> Result<(), Denied> {
        let access = self.store.org_access(org).await.map_err(|_| Denied::Store)?.ok_or(Denied::NotFound)?;
        if access.status == domain::OrgStatus::Suspended {
            return Err(Denied::Suspended);
        }
        if access.requires_mfa && !principal.mfa_passed {
            return Err(Denied::MfaRequired);
        }
        Ok(())
    }

    /// The one authorisation decision for platform actions: operators only.
    pub fn authorize_platform(
        &self,
        principal: &Principal,
        action: PlatformAction,
    ) -> Result<AuthorizedPlatform, Denied> {
        match (principal.is_operator, principal.mfa_passed) {
            (true, true) => Ok(AuthorizedPlatform { principal: principal.clone(), action }),
            (true, false) => Err(Denied::MfaRequired),
            (false, _) => Err(Denied::Forbidden),
        }
    }

    /// Platform authority for the command line, which acts on a deployment
    /// by holding its store and keys (`strongroom user|member ...`). There is
    /// no session behind it; the audit trail records it as the local
    /// administrator.
    pub fn authorize_local_admin(&self, action: PlatformAction) -> AuthorizedPlatform {
        AuthorizedPlatform { principal: local_admin(), action }
    }

    /// Organisation authority for the command line (`strongroom export`,
    /// `import`, offboarding): whoever runs it holds the deployment's keys
    /// already. It acts as an owner would; the trail names it `cli`.
    pub fn authorize_local(&self, org: OrgId, action: Action) -> Authorized {
        Authorized::new(local_admin(), org, Grant::Role(Role::Owner), action, None)
    }

    /// Renames, suspends or resumes an organisation (operators and the
    /// command line). A suspended organisation refuses its members and
    /// service accounts until resumed; nothing is deleted.
    pub async fn update_org(
        &self,
        auth: &AuthorizedPlatform,
        org: OrgId,
        name: Option<&domain::OrgName>,
        status: Option<domain::OrgStatus>,
    ) -> Result<domain::Organisation, EngineError> {
        let updated =
            self.store.update_org(org, name, status).await?.ok_or_else(|| EngineError::NoSuchOrg(org.to_string()))?;
        let mut changed: Vec<String> = name.map(|_| "name".to_owned()).into_iter().collect();
        changed.extend(status.map(|s| format!("status:{}", s.as_str())));
        let entry = crate::audit::by(&auth.principal, "org.update", format!("org:{org}"), changed);
        // Both the platform's trail and the organisation's own show it.
        self.platform_audit(entry.clone()).await?;
        self.org_audit(org, entry).await?;
        Ok(updated)
    }

    /// Removes a member on behalf of the platform (the command line).
    pub async fn remove_member_as_operator(
        &self,
        auth: &AuthorizedPlatform,
        org: OrgId,
        user: UserId,
    ) -> Result<bool, EngineError> {
        self.change_membership(Actor::Caller(&auth.principal), org, user, MembershipChange::Remove, true).await
    }

    /// The members of an organisation, on behalf of the platform.
    pub async fn members_as_operator(
        &self,
        _auth: &AuthorizedPlatform,
        org: OrgId,
    ) -> Result<Vec<MemberRecord>, EngineError> {
        Ok(self.store.members(org).await?)
    }

    /// Creates an account, with a password checked against the policy when
    /// one is given.
    pub async fn create_user(&self, new: &NewUser, password: Option<&str>) -> Result<UserRecord, EngineError> {
        let password_hash = match password {
            Some(p) => {
                self.identity
                    .settings
                    .password_policy
                    .check(p, &[new.email.as_str(), new.display_name.as_str()])
                    .map_err(AuthError::from)?;
                Some(self.hash_new_password(p).await?)
            }
            None => None,
        };
        let now = store::now();
        let user = UserRecord {
            id: UserId::new(),
            email: new.email.clone(),
            display_name: new.display_name.clone(),
            password_hash,
            is_operator: new.is_operator,
            status: UserStatus::Active,
            created_at: now,
            updated_at: now,
        };
        self.store.create_user(&user).await?;
        Ok(user)
    }

    /// Changes the caller's password after checking the current one;
    /// every other session of theirs is revoked.
    pub async fn change_password(&self, principal: &Principal, current: &str, new: &str) -> Result<(), EngineError> {
        refuse_acting(principal)?;
        let user = self.store.user_by_id(principal.user).await?.ok_or(AuthError::Unauthenticated)?;
        if !self.check_password(current, user.password_hash.as_deref()).await?.ok {
            return Err(AuthError::InvalidCredentials.into());
        }
        self.identity
            .settings
            .password_policy
            .check(new, &[user.email.as_str(), user.display_name.as_str()])
            .map_err(AuthError::from)?;
        let hash = self.hash_new_password(new).await?;
        self.store.set_password_hash(user.id, &hash).await?;
        for s in self.store.live_sessions_of(user.id).await? {
            if s.id != principal.session {
                self.store.revoke_session(user.id, s.id).await?;
            }
        }
        self.platform_audit(crate::audit::by(principal, "password.change", format!("user:{}", user.id), Vec::new()))
            .await?;
        Ok(())
    }

    /// Issues a single-use password-setup token for a user, valid for `ttl`.
    /// Only its SHA-256 is stored; the token goes to the user once.
    pub async fn issue_password_setup(
        &self,
        user: UserId,
        purpose: store::SetupPurpose,
        ttl: Duration,
    ) -> Result<OpaqueToken, EngineError> {
        let token = OpaqueToken::generate().map_err(AuthError::from)?;
        self.store.create_password_setup(&token.digest(), user, purpose, store::now() + to_time(ttl)).await?;
        Ok(token)
    }

    /// Sets a password with a single-use setup token. The new password is
    /// checked against the policy before the token is used up, so a refused
    /// password leaves the token valid; then the token is consumed
    /// atomically and every session of the account is revoked.
    pub async fn complete_password_setup(
        &self,
        token: &str,
        purpose: store::SetupPurpose,
        new_password: &str,
    ) -> Result<UserId, EngineError> {
        let digest = OpaqueToken::digest_of(token);
        let user = self.store.peek_password_setup(&digest, purpose).await?.ok_or(AuthError::Unauthenticated)?;
        let record = self.store.user_by_id(user).await?.ok_or(AuthError::Unauthenticated)?;
        self.identity
            .settings
            .password_policy
            .check(new_password, &[record.email.as_str(), record.display_name.as_str()])
            .map_err(AuthError::from)?;
        let hash = self.hash_new_password(new_password).await?;
        match self.store.take_password_setup(&digest, purpose).await? {
            Some(taken) if taken == user => {}
            _ => return Err(AuthError::Unauthenticated.into()),
        }
        self.store.set_password_hash(user, &hash).await?;
        self.store.revoke_all_sessions(user).await?;
        let action = match purpose {
            store::SetupPurpose::Reset => "password.reset",
            store::SetupPurpose::Initial => "password.setup",
        };
        self.platform_audit(crate::audit::draft(format!("user:{user}"), action, format!("user:{user}"), Vec::new()))
            .await?;
        Ok(user)
    }

    /// Starts TOTP enrolment: a fresh seed, encrypted under the platform
    /// key, replacing any unconfirmed one. Refused once confirmed.
    pub async fn enrol_totp(&self, principal: &Principal) -> Result<TotpEnrolment, EngineError> {
        refuse_acting(principal)?;
        let user = self.store.user_by_id(principal.user).await?.ok_or(AuthError::Unauthenticated)?;
        if self.store.totp(user.id).await?.is_some_and(|t| t.confirmed) {
            return Err(MfaError::AlreadyEnrolled.into());
        }
        let secret = crypto::TotpSecret::generate().map_err(AuthError::from)?;
        let (version, key) = self.keys.platform_key().await?;
        let sealed =
            crypto::seal(&key, &totp_aad(user.id, version), secret.expose_for_storage()).map_err(AuthError::from)?;
        self.store.put_totp(user.id, &sealed, version).await?;
        let uri = secret.uri(TOTP_ISSUER, user.email.as_str()).map_err(AuthError::from)?;
        let qr_svg = crypto::qr_svg(&uri).map_err(AuthError::from)?;
        Ok(TotpEnrolment { secret_base32: secret.base32(), uri, qr_svg })
    }

    async fn totp_secret(&self, user: UserId) -> Result<(store::TotpRecord, crypto::TotpSecret), EngineError> {
        let record = self.store.totp(user).await?.ok_or(MfaError::NotEnrolled)?;
        let key = self.keys.platform_key_version(record.key_version).await?;
        let seed = crypto::open(&key, &totp_aad(user, record.key_version), &record.seed).map_err(AuthError::from)?;
        Ok((record, crypto::TotpSecret::from_bytes(seed)))
    }

    /// Accepts a TOTP code once: the step must be valid now and later than
    /// any accepted before.
    async fn accept_code(&self, user: UserId, code: &str) -> Result<bool, EngineError> {
        let (_, secret) = self.totp_secret(user).await?;
        let now = u64::try_from(store::now().unix_timestamp()).unwrap_or(0);
        let Some(step) = secret.check(code, now) else { return Ok(false) };
        Ok(self.store.accept_totp_step(user, i64::try_from(step).unwrap_or(i64::MAX)).await?)
    }

    /// Confirms enrolment with a first code; returns the recovery codes
    /// (shown once, stored hashed) and marks this session as 2FA-passed.
    pub async fn confirm_totp(&self, principal: &Principal, code: &str) -> Result<Vec<String>, EngineError> {
        refuse_acting(principal)?;
        let record = self.store.totp(principal.user).await?.ok_or(MfaError::NotEnrolled)?;
        if record.confirmed {
            return Err(MfaError::AlreadyEnrolled.into());
        }
        self.throttled_mfa(principal, code, |e, c| Box::pin(e.accept_code(principal.user, c))).await?;
        let mut codes = Vec::with_capacity(RECOVERY_CODES);
        let mut hashes = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            let mut raw = [0u8; 8];
            crypto::random_bytes(&mut raw).map_err(AuthError::from)?;
            let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            let shown = format!("{}-{}-{}-{}", &hex[0..4], &hex[4..8], &hex[8..12], &hex[12..16]);
            hashes.push(crypto::sha256(normalise_recovery_code(&shown).as_bytes()));
            codes.push(shown);
        }
        self.store.replace_recovery_codes(principal.user, &hashes).await?;
        self.store.set_session_mfa(principal.session).await?;
        let target = format!("user:{}", principal.user);
        self.platform_audit(crate::audit::by(principal, "mfa.enable", target, vec!["totp".into()])).await?;
        Ok(codes)
    }

    /// Passes the second factor for this session, with a TOTP code or a
    /// single-use recovery code.
    pub async fn verify_mfa(&self, principal: &Principal, code: &str) -> Result<(), EngineError> {
        if !self.store.totp(principal.user).await?.is_some_and(|t| t.confirmed) {
            return Err(MfaError::NotEnrolled.into());
        }
        let outcome = self
            .throttled_mfa(principal, code, |e, c| {
                Box::pin(async move {
                    let normalised = normalise_recovery_code(c);
                    if normalised.len() == 16 {
                        Ok(e.store.use_recovery_code(principal.user, &crypto::sha256(normalised.as_bytes())).await?)
                    } else {
                        e.accept_code(principal.user, c).await
                    }
                })
            })
            .await;
        if let Err(EngineError::Mfa(MfaError::InvalidCode)) = &outcome {
            let mut entry = crate::audit::by(principal, "mfa.verify", format!("user:{}", principal.user), Vec::new());
            entry.outcome = "failure".into();
            self.platform_audit(entry).await?;
        }
        outcome?;
        self.store.set_session_mfa(principal.session).await?;
        Ok(())
    }

    /// Runs a code check under the per-account throttle.
    async fn throttled_mfa<'a, F>(&'a self, principal: &Principal, code: &'a str, check: F) -> Result<(), EngineError>
    where
        F: FnOnce(
            &'a Engine,
            &'a str,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, EngineError>> + Send + 'a>>,
    {
        let keys = vec![format!("mfa:{}", principal.user)];
        if let Some(retry_after) = self.identity.throttle.wait(&keys) {
            return Err(AuthError::Throttled { retry_after }.into());
        }
        if check(self, code).await? {
            self.identity.throttle.succeeded(&keys[0]);
            Ok(())
        } else {
            self.identity.throttle.failed(&keys);
            Err(MfaError::InvalidCode.into())
        }
    }

    /// Whether a user has confirmed two-factor authentication.
    pub async fn mfa_enrolled(&self, user: UserId) -> Result<bool, EngineError> {
        Ok(self.store.totp(user).await?.is_some_and(|t| t.confirmed))
    }

    /// Changes whether an organisation requires 2FA of every member.
    pub async fn set_require_mfa(&self, auth: &Authorized, required: bool) -> Result<(), EngineError> {
        self.require(auth, Action::ManageSettings)?;
        self.store.set_org_requires_mfa(auth.org(), required).await?;
        let setting = format!("require_mfa:{}", if required { "on" } else { "off" });
        let entry = crate::audit::by(auth.principal(), "org.settings", format!("org:{}", auth.org()), vec![setting]);
        self.org_audit(auth.org(), entry).await
    }

    /// Whether an organisation requires 2FA of every member.
    pub async fn requires_mfa(&self, auth: &Authorized) -> Result<bool, EngineError> {
        Ok(self.store.org_requires_mfa(auth.org()).await?)
    }

    /// Starts a password reset: if an active account has this address, a
    /// single-use token valid for 30 minutes goes to that address by mail.
    /// The answer is the same either way, and the mail leaves in the
    /// background, so neither the answer nor its timing reveals whether the
    /// account exists. Requests per address are throttled.
    pub async fn request_password_reset(&self, email: &str, client: Option<IpAddr>) -> Result<(), EngineError> {
        let keys = Throttle::keys(&format!("reset:{email}"), client);
        if self.identity.throttle.wait(&keys).is_some() {
            return Ok(());
        }
        self.identity.throttle.failed(&keys);
        let Ok(email) = Email::parse(email) else { return Ok(()) };
        let Some(user) = self.store.user_by_email(&email).await? else { return Ok(()) };
        if user.status != UserStatus::Active {
            return Ok(());
        }
        if !self.mailer.is_configured() {
            tracing::warn!("a password reset was requested but no SMTP relay is configured");
            return Ok(());
        }
        let token = self.issue_password_setup(user.id, store::SetupPurpose::Reset, RESET_TTL).await?;
        let body = format!(
            "Someone asked to reset the password of your Strongroom account.\n\n\
             If it was you, set a new password within 30 minutes\n\
             with this single-use token:\n\n    {}\n\n\
             (POST /v1/auth/password-reset/complete\n\
             with the token and your new_password.)\n\n\
             If it was not you, ignore this message:\n\
             your password has not changed.\n",
            token.reveal()
        );
        self.mailer.send_later(user.email.to_string(), "Reset your Strongroom password", body);
        Ok(())
    }

    /// Invites an address to the organisation with a role: a single-use
    /// token valid for 7 days goes to that address. Inviting an owner needs
    /// the owner permission.
    pub async fn invite(
        &self,
        auth: &Authorized,
        email: &Email,
        role: Role,
    ) -> Result<store::InvitationRecord, EngineError> {
        self.require(auth, Action::ManageMembers)?;
        if role == Role::Owner && !auth.permits(Action::ManageOwners) {
            return Err(EngineError::Denied(Denied::Forbidden));
        }
        if !self.mailer.is_configured() {
            return Err(EngineError::MailNotConfigured);
        }
        let token = OpaqueToken::generate().map_err(AuthError::from)?;
        let now = store::now();
        let inv = store::InvitationRecord {
            org_id: auth.org(),
            id: uuid::Uuid::now_v7(),
            email: email.clone(),
            role,
            created_at: now,
            expires_at: now + to_time(INVITATION_TTL),
            accepted_at: None,
        };
        self.store.create_invitation(&inv, &token.digest()).await?;
        let entry = crate::audit::by(
            auth.principal(),
            "invitation.create",
            format!("invitation:{}", inv.id),
            vec![format!("role:{}", role.as_str())],
        );
        self.org_audit(auth.org(), entry).await?;
        let org = self.store.get_org(auth.org()).await?.ok_or(EngineError::Denied(Denied::NotFound))?;
        let body = format!(
            "You are invited to join {} on Strongroom as {}.\n\n\
             Accept within 7 days with this single-use token:\n\n    {}\n\n\
             (POST /v1/invitations/accept with the token;\n\
             new accounts add display_name and password.)\n",
            org.name.as_str(),
            role.as_str(),
            token.reveal()
        );
        self.mailer.send_later(email.to_string(), "Your Strongroom invitation", body);
        Ok(inv)
    }

    /// An organisation's pending invitations.
    pub async fn invitations(&self, auth: &Authorized) -> Result<Vec<store::InvitationRecord>, EngineError> {
        self.require(auth, Action::ListMembers)?;
        Ok(self.store.pending_invitations(auth.org()).await?)
    }

    /// Accepts an invitation: its token proves control of the invited
    /// address. An existing account with that address joins; otherwise an
    /// account is made with the given name and password (policy-checked).
    /// The token works once.
    pub async fn accept_invitation(
        &self,
        token: &str,
        new_account: Option<(DisplayName, &str)>,
    ) -> Result<(UserId, OrgId, Role), EngineError> {
        let digest = OpaqueToken::digest_of(token);
        let inv = self.store.peek_invitation(&digest).await?.ok_or(AuthError::Unauthenticated)?;
        let existing = self.store.user_by_email(&inv.email).await?;
        let user = match (existing, new_account) {
            (Some(user), _) => user,
            (None, Some((name, password))) => {
                let new = NewUser { email: inv.email.clone(), display_name: name, is_operator: false };
                self.identity
                    .settings
                    .password_policy
                    .check(password, &[new.email.as_str(), new.display_name.as_str()])
                    .map_err(AuthError::from)?;
                if !self.store.accept_invitation(&digest).await? {
                    return Err(AuthError::Unauthenticated.into());
                }
                // If the account cannot be made (the address was taken
                // meanwhile, the store failed), the invitation stays usable.
                let user = match self.create_user(&new, Some(password)).await {
                    Ok(user) => user,
                    Err(e) => {
                        if let Err(reopen) = self.store.reopen_invitation(&digest).await {
                            tracing::warn!(error = %reopen, "could not reopen an invitation after a failed acceptance");
                        }
                        return Err(e);
                    }
                };
                let actor = Actor::Named(format!("user:{}", user.id));
                self.change_membership(actor, inv.org_id, user.id, MembershipChange::Put(inv.role), true).await?;
                return Ok((user.id, inv.org_id, inv.role));
            }
            (None, None) => return Err(EngineError::AccountDetailsNeeded),
        };
        if !self.store.accept_invitation(&digest).await? {
            return Err(AuthError::Unauthenticated.into());
        }
        // Never lower an existing role by accepting an invitation.
        if self.store.membership_role(inv.org_id, user.id).await?.is_none() {
            let actor = Actor::Named(format!("user:{}", user.id));
            self.change_membership(actor, inv.org_id, user.id, MembershipChange::Put(inv.role), true).await?;
        }
        Ok((user.id, inv.org_id, inv.role))
    }

    /// Every account (operators' view).
    pub async fn list_users(&self) -> Result<Vec<UserRecord>, EngineError> {
        Ok(self.store.list_users().await?)
    }

    pub async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>, EngineError> {
        Ok(self.store.user_by_id(id).await?)
    }

    pub async fn user_by_email(&self, email: &Email) -> Result<Option<UserRecord>, EngineError> {
        Ok(self.store.user_by_email(email).await?)
    }

    /// The organisations a user belongs to.
    pub async fn memberships_of(&self, user: UserId) -> Result<Vec<(OrgId, Role)>, EngineError> {
        Ok(self.store.memberships_of(user).await?)
    }

    /// The members of an organisation, for a caller allowed to list them.
    pub async fn members(&self, auth: &Authorized) -> Result<Vec<MemberRecord>, EngineError> {
        self.require(auth, Action::ListMembers)?;
        Ok(self.store.members(auth.org()).await?)
    }

    /// Adds a member or changes their role. Making or unmaking an owner
    /// needs the owner permission; the last owner cannot be demoted.
    pub async fn put_member(&self, auth: &Authorized, user: UserId, role: Role) -> Result<(), EngineError> {
        self.require(auth, Action::ManageMembers)?;
        self.store.user_by_id(user).await?.ok_or(EngineError::NoSuchUser)?;
        let may_touch_owners = auth.permits(Action::ManageOwners);
        self.change_membership(
            Actor::Caller(auth.principal()),
            auth.org(),
            user,
            MembershipChange::Put(role),
            may_touch_owners,
        )
        .await
        .map(|_| ())
    }

    /// Removes a member, keeping at least one owner.
    pub async fn remove_member(&self, auth: &Authorized, user: UserId) -> Result<bool, EngineError> {
        self.require(auth, Action::ManageMembers)?;
        let may_touch_owners = auth.permits(Action::ManageOwners);
        self.change_membership(
            Actor::Caller(auth.principal()),
            auth.org(),
            user,
            MembershipChange::Remove,
            may_touch_owners,
        )
        .await
    }

    /// Adds a member on behalf of the platform (the CLI or an operator
    /// creating an organisation's first owner).
    pub async fn put_member_as_operator(
        &self,
        auth: &AuthorizedPlatform,
        org: OrgId,
        user: UserId,
        role: Role,
    ) -> Result<(), EngineError> {
        self.store.user_by_id(user).await?.ok_or(EngineError::NoSuchUser)?;
        self.store.get_org(org).await?.ok_or_else(|| EngineError::NoSuchOrg(org.to_string()))?;
        self.change_membership(Actor::Caller(&auth.principal), org, user, MembershipChange::Put(role), true)
            .await
            .map(|_| ())
    }

    /// One membership change, checked and chained in the organisation's
    /// trail inside the store transaction that makes it. True if it
    /// changed anything.
    async fn change_membership(
        &self,
        actor: Actor<'_>,
        org: OrgId,
        user: UserId,
        change: MembershipChange,
        may_touch_owners: bool,
    ) -> Result<bool, EngineError> {
        let (action, fields) = match change {
            MembershipChange::Put(role) => ("member.put", vec![format!("role:{}", role.as_str())]),
            MembershipChange::Remove => ("member.remove", Vec::new()),
        };
        let entry = match actor {
            Actor::Caller(p) => crate::audit::by(p, action, format!("user:{user}"), fields),
            Actor::Named(name) => crate::audit::draft(name, action, format!("user:{user}"), fields),
        };
        let pending = crate::audit::Pending::new(crate::audit::org_chain(org), vec![entry]);
        match self.store.change_membership(org, user, change, may_touch_owners, Some(&pending.append())).await? {
            MembershipOutcome::Done { .. } => Ok(true),
            MembershipOutcome::NotMember => Ok(false),
            MembershipOutcome::OwnerPermissionNeeded => Err(EngineError::Denied(Denied::Forbidden)),
            MembershipOutcome::LastOwner => Err(EngineError::LastOwner),
        }
    }

    /// Checks that an authorisation also covers `action` (a use case that
    /// does more than the action it was authorised for).
    pub(crate) fn require(&self, auth: &Authorized, action: Action) -> Result<(), EngineError> {
        if auth.action() == action {
            // `authorize` decided this very action.
            return Ok(());
        }
        // A witness for another action must not carry an operator acting
        // as a user into running the organisation.
        if auth.principal().acting_operator.is_some() && runs_the_organisation(action) {
            return Err(EngineError::Denied(Denied::Forbidden));
        }
        if auth.permits(action) { Ok(()) } else { Err(EngineError::Denied(Denied::Forbidden)) }
    }

    /// The time as the engine sees it (for session answers).
    pub fn now(&self) -> OffsetDateTime {
        store::now()
    }
}

/// The principal of the command line: no account, no session.
fn local_admin() -> Principal {
    Principal {
        user: UserId::from_uuid(uuid::Uuid::nil()),
        is_operator: true,
        session: SessionId::from_uuid(uuid::Uuid::nil()),
        mfa_passed: true,
        service_account: None,
        support_session: None,
        acting_operator: None,
    }
}

/// Actions that run an organisation (members, owners, schema, service
/// accounts, settings, support decisions): never for an operator acting as
/// a user, so nothing they do outlives the user's grant.
fn runs_the_organisation(action: Action) -> bool {
    matches!(
        action,
        Action::ManageMembers
            | Action::ManageOwners
            | Action::ManageSchema
            | Action::ManageServiceAccounts
            | Action::ManageSettings
            | Action::ManageSupport
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_after_the_free_attempts_and_is_capped() {
        assert_eq!(backoff(5), Some(Duration::from_secs(1)));
        assert_eq!(backoff(4), None);
        assert_eq!(backoff(7), Some(Duration::from_secs(4)));
        assert_eq!(backoff(40), Some(MAX_BACKOFF));
    }

    #[test]
    fn password_hashing_keeps_to_its_share_of_the_cpu() {
        // 15 % of 2 cores: one hash at a time, busy 30 % of the time.
        let (permits, rest) = hashing_budget(2, 15);
        assert_eq!(permits, 1);
        assert!((1.0 / (1.0 + rest) - 0.3).abs() < 1e-9, "{rest}");
        // 50 % of 16 cores: eight at a time, never resting.
        assert_eq!(hashing_budget(16, 50), (8, 0.0));
        // 100 % of 4: every core, no rest; 1 % of 1: one permit, mostly resting.
        assert_eq!(hashing_budget(4, 100), (4, 0.0));
        let (permits, rest) = hashing_budget(1, 1);
        assert_eq!(permits, 1);
        assert!((rest - 99.0).abs() < 1e-6, "{rest}");
    }

    #[test]
    fn throttle_counts_accounts_and_addresses_and_forgets_on_success() {
        let t = Throttle::default();
        let keys = Throttle::keys("Jane@Example.com", "127.0.0.1".parse().ok());
        for _ in 0..5 {
            assert_eq!(t.wait(&keys), None);
            t.failed(&keys);
        }
        t.failed(&keys);
        assert!(t.wait(&keys).is_some());
        let other_account_same_address = Throttle::keys("john@example.com", "127.0.0.1".parse().ok());
        assert!(t.wait(&other_account_same_address).is_some(), "the address is throttled too");
        t.succeeded(&keys[0]);
        assert!(t.wait(&Throttle::keys("jane@example.com", None)).is_none());
    }
}
