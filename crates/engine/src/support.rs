//! Support sessions: an operator reaches an organisation's data only while
//! its owners or admins have granted a session, with a reason, a scope
//! (read, or read-write; optionally named records) and an end. Everyone in
//! the organisation can see that one is active; every action under it is
//! chained with the session's id; when it ends, the admins get a summary
//! of what was touched. Nothing is cached: each request looks the session
//! up, so revocation and expiry take effect at once.

use std::collections::BTreeMap;
use std::time::Duration;

use crypto::OpaqueToken;
use domain::{Action, OrgId, ProfileId, Role, SessionId};
use store::{AccountGrantRow, SessionRecord, SupportSessionRow, SupportStatus, UserRecord};

use crate::audit::{Pending, by, draft, now_micros, org_chain};
use crate::identity::{Authorized, AuthorizedPlatform, Denied, Grant, Principal};
use crate::{Engine, EngineError};

/// The longest session an operator may ask for unless configured.
pub const DEFAULT_MAX_SUPPORT: Duration = Duration::from_secs(4 * 3600);

/// What an operator asks for.
#[derive(Clone, Debug)]
pub struct SupportRequest {
    /// Why, in the operator's words (shown to the organisation; 1 to 500
    /// characters, one line).
    pub reason: String,
    pub write: bool,
    /// The records it is limited to; empty: all.
    pub profiles: Vec<ProfileId>,
    pub duration: Duration,
}

/// Why a support-session call was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SupportError {
    #[error("reason must be 1 to 500 characters on one line")]
    Reason,
    #[error("duration must be 1 minute to {max_minutes} minutes")]
    Duration { max_minutes: u64 },
    #[error("at most 100 profiles can be named")]
    TooManyProfiles,
    #[error("no such support session")]
    NotFound,
    #[error("this support session is {0}, not awaiting a decision")]
    AlreadyDecided(&'static str),
    #[error("this support session has already ended")]
    NotActive,
    #[error("outside this support session's scope")]
    OutOfScope,
    #[error("no such grant, or it has ended")]
    GrantNotActive,
    #[error("support cannot link records to accounts")]
    OwnerChange,
    #[error("an operator cannot decide their own support session")]
    OwnSession,
}

/// Refuses a record outside the records a support session names.
pub(crate) fn check_scope(auth: &Authorized, id: ProfileId) -> Result<(), EngineError> {
    match auth.profile_limit() {
        Some(limit) if !limit.contains(&id) => Err(SupportError::OutOfScope.into()),
        _ => Ok(()),
    }
}

/// Refuses linking a record to an account (or unlinking it) under a
/// support session or while acting as a user: the person a record is
/// linked to reads all of it, for good, so support must not be able to
/// point records at itself or anyone else.
pub(crate) fn refuse_owner_change(auth: &Authorized) -> Result<(), EngineError> {
    if auth.is_support() || auth.principal().acting_operator.is_some() {
        Err(SupportError::OwnerChange.into())
    } else {
        Ok(())
    }
}

/// Refuses what reaches beyond named records (lists, searches, new
/// records) to a support session limited to some.
pub(crate) fn check_unlimited(auth: &Authorized) -> Result<(), EngineError> {
    if auth.profile_limit().is_some() { Err(SupportError::OutOfScope.into()) } else { Ok(()) }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn target(id: uuid::Uuid) -> String {
    format!("support_session:{id}")
}

impl Engine {
    /// The longest session that may be requested.
    pub fn max_support_duration(&self) -> Duration {
        self.max_support
    }

    /// An operator asks for access to an organisation; its owners and
    /// admins are told by mail.
    pub async fn request_support(
        &self,
        auth: &AuthorizedPlatform,
        org: OrgId,
        req: &SupportRequest,
    ) -> Result<SupportSessionRow, EngineError> {
        let reason = req.reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control) {
            return Err(SupportError::Reason.into());
        }
        let max = self.max_support;
        if req.duration < Duration::from_secs(60) || req.duration > max {
            return Err(SupportError::Duration { max_minutes: max.as_secs() / 60 }.into());
        }
        if req.profiles.len() > 100 {
            return Err(SupportError::TooManyProfiles.into());
        }
        let organisation = self.store.get_org(org).await?.ok_or_else(|| EngineError::NoSuchOrg(org.to_string()))?;
        let row = SupportSessionRow {
            org_id: org,
            id: uuid::Uuid::now_v7(),
            operator: auth.principal().user,
            reason: reason.to_owned(),
            write: req.write,
            profiles: req.profiles.clone(),
            duration_secs: i64::try_from(req.duration.as_secs()).unwrap_or(i64::MAX),
            status: SupportStatus::Requested,
            requested_at: now_micros(),
            decided_by: None,
            decided_at: None,
            expires_at: None,
            ended_at: None,
            ended_by: None,
            summary_sent: false,
        };
        let fields = vec![
            format!("scope:{}", if row.write { "read-write" } else { "read" }),
            format!("minutes:{}", row.duration_secs / 60),
            format!("profiles:{}", row.profiles.len()),
        ];
        let entry = by(auth.principal(), "support.request", target(row.id), fields);
        let pending = Pending::new(org_chain(org), vec![entry]);
        self.store.insert_support_session(&row, &pending.append()).await?;
        let operator = self.store.user_by_id(row.operator).await?;
        let who = operator.map_or_else(|| "an operator".to_owned(), |u| u.email.to_string());
        let body = format!(
            "{who} asks for {} access to {}'s data for {} minutes{}.\n\nReason: {reason}\n\n\
             Approve or deny it: POST /v1/orgs/{}/support-sessions/{}/approve (or /deny).\n\
             Nothing is accessible until an owner or admin approves.\n",
            if row.write { "read-write" } else { "read-only" },
            organisation.name.as_str(),
            row.duration_secs / 60,
            if row.profiles.is_empty() { String::new() } else { format!(" to {} named records", row.profiles.len()) },
            organisation.slug,
            row.id,
        );
        self.mail_admins(org, "Support access requested", &body).await?;
        Ok(row)
    }

    /// An organisation's support sessions, newest first (owners, admins).
    pub async fn support_sessions(&self, auth: &Authorized) -> Result<Vec<SupportSessionRow>, EngineError> {
        self.require(auth, Action::ManageSupport)?;
        Ok(self.store.support_sessions(auth.org(), 200).await?)
    }

    /// The sessions active now in an organisation (any member may know).
    pub async fn active_support(&self, org: OrgId) -> Result<Vec<SupportSessionRow>, EngineError> {
        Ok(self.store.active_support_sessions(org, now_micros()).await?)
    }

    /// The sessions active now that this caller may see: all of them for
    /// members and the organisation's tokens; an operator's own otherwise.
    pub async fn active_support_for(&self, auth: &Authorized) -> Result<Vec<SupportSessionRow>, EngineError> {
        let all = self.active_support(auth.org()).await?;
        if auth.is_support() {
            let me = auth.principal().user;
            return Ok(all.into_iter().filter(|s| s.operator == me).collect());
        }
        Ok(all)
    }

    /// The sessions active now that the caller is told of on every answer:
    /// those of each organisation they belong to (a token: its own
    /// organisation's), and an operator's own. One indexed query.
    pub async fn support_notices(&self, principal: &Principal) -> Result<Vec<SupportSessionRow>, EngineError> {
        match &principal.service_account {
            Some(sa) => self.active_support(sa.org).await,
            None => Ok(self.store.active_support_seen_by(principal.user, now_micros()).await?),
        }
    }

    /// An owner or admin (who has passed 2FA, as `authorize` requires of
    /// them) approves a request, possibly for less time than asked, or
    /// denies it.
    pub async fn decide_support(
        &self,
        auth: &Authorized,
        id: uuid::Uuid,
        approve: bool,
        shorter: Option<Duration>,
    ) -> Result<SupportSessionRow, EngineError> {
        self.require(auth, Action::ManageSupport)?;
        let org = auth.org();
        let row = self.store.support_session(org, id).await?.ok_or(SupportError::NotFound)?;
        if auth.principal().acting_operator == Some(row.operator) || auth.principal().user == row.operator {
            return Err(SupportError::OwnSession.into());
        }
        if row.status != SupportStatus::Requested {
            return Err(SupportError::AlreadyDecided(row.status.as_str()).into());
        }
        let asked = Duration::from_secs(u64::try_from(row.duration_secs).unwrap_or(0));
        let granted = shorter.map_or(asked, |d| d.min(asked));
        if granted < Duration::from_secs(60) {
            return Err(SupportError::Duration { max_minutes: asked.as_secs() / 60 }.into());
        }
        let now = now_micros();
        let expires = approve.then(|| now.saturating_add(micros(granted)));
        let (action, fields) = if approve {
            ("support.approve", vec![format!("minutes:{}", granted.as_secs() / 60)])
        } else {
            ("support.deny", Vec::new())
        };
        let pending = Pending::new(org_chain(org), vec![by(auth.principal(), action, target(id), fields)]);
        if !self.store.decide_support_session(org, id, expires, auth.principal().user, now, &pending.append()).await? {
            return Err(SupportError::AlreadyDecided("decided").into());
        }
        Ok(self.store.support_session(org, id).await?.ok_or(SupportError::NotFound)?)
    }

    /// Ends a session at once, requested or active: by the operator who
    /// asked for it, or by the organisation's owners and admins.
    pub async fn revoke_support(&self, principal: &Principal, org: OrgId, id: uuid::Uuid) -> Result<(), EngineError> {
        let row = self.store.support_session(org, id).await?;
        let is_operator_of = row.as_ref().is_some_and(|r| principal.is_operator && r.operator == principal.user);
        if is_operator_of {
            if !principal.mfa_passed {
                return Err(EngineError::Denied(Denied::MfaRequired));
            }
        } else {
            // Owners and admins; anyone else learns nothing.
            self.authorize(principal, org, Action::ManageSupport).await?;
        }
        let row = row.ok_or(SupportError::NotFound)?;
        let entry = by(principal, "support.revoke", target(id), Vec::new());
        let pending = Pending::new(org_chain(org), vec![entry]);
        let by_whom = crate::profiles::actor_of(principal);
        if !self.store.revoke_support_session(org, row.id, &by_whom, now_micros(), &pending.append()).await? {
            return Err(SupportError::NotActive.into());
        }
        Ok(())
    }

    /// The authorisation of an operator who is not a member: only through
    /// an approved, unexpired session of theirs for this organisation,
    /// after 2FA, within its scope. Looked up on every call.
    pub(crate) async fn authorize_support(
        &self,
        principal: &Principal,
        org: OrgId,
        action: Action,
    ) -> Result<Authorized, Denied> {
        let active = self.store.active_support_sessions(org, now_micros()).await.map_err(|_| Denied::Store)?;
        let mine: Vec<SupportSessionRow> = active.into_iter().filter(|s| s.operator == principal.user).collect();
        // With more than one, the first that allows the action (read-write
        // before read, unlimited before limited).
        let Some(session) = mine
            .iter()
            .find(|s| s.profiles.is_empty() && (s.write || action != Action::WriteProfiles))
            .or_else(|| mine.iter().find(|s| s.write || action != Action::WriteProfiles))
            .or_else(|| mine.first())
            .cloned()
        else {
            return Err(Denied::NotFound);
        };
        if !principal.mfa_passed {
            return Err(Denied::MfaRequired);
        }
        let access = self.store.org_access(org).await.map_err(|_| Denied::Store)?.ok_or(Denied::NotFound)?;
        if access.status == domain::OrgStatus::Suspended {
            return Err(Denied::Suspended);
        }
        let grant = Grant::Support { session: session.id, write: session.write, profiles: session.profiles };
        if !grant.permits(action) {
            return Err(Denied::Forbidden);
        }
        let mut principal = principal.clone();
        principal.support_session = Some(session.id);
        Ok(Authorized::new(principal, org, grant, action, Some(access)))
    }

    /// Sends each ended session's summary (what was done under it, by
    /// action, and how many records) to the organisation's owners and
    /// admins, once, and chains the end of a session that expired. Returns
    /// how many summaries were sent. `serve` runs it every minute.
    pub async fn summarise_support_sessions(&self) -> Result<usize, EngineError> {
        let mut sent = 0;
        for row in self.store.support_sessions_ended(now_micros(), 100).await? {
            if !self.store.mark_support_summary_sent(row.org_id, row.id).await? {
                continue;
            }
            let chain = org_chain(row.org_id);
            if row.status == SupportStatus::Approved {
                let entry = draft("system".into(), "support.expire", target(row.id), Vec::new());
                self.record(Pending::new(chain.clone(), vec![entry])).await?;
            }
            let query = store::AuditQuery {
                on_behalf_of: Some(target(row.id)),
                from_micros: row.decided_at,
                ..store::AuditQuery::default()
            };
            let mut by_action: BTreeMap<String, usize> = BTreeMap::new();
            let mut targets = std::collections::BTreeSet::new();
            let mut after = 0;
            loop {
                let page = self.store.audit_search(&chain, &query, after, 1000).await?;
                let Some(last) = page.last().map(|r| r.seq) else { break };
                after = last;
                for r in page {
                    *by_action.entry(r.action).or_default() += 1;
                    targets.insert(r.target);
                }
            }
            let lines: Vec<String> = by_action.iter().map(|(a, n)| format!("  {a}: {n}")).collect();
            let body = format!(
                "The support session {} has ended ({}).\n\nReason given: {}\n\n\
                 Under it, {} actions touched {} records or objects:\n{}\n\n\
                 Every one is in the audit trail: GET /v1/orgs/<org>/audit?on_behalf_of=support_session:{}\n",
                row.id,
                if row.status == SupportStatus::Revoked { "revoked" } else { "expired" },
                row.reason,
                by_action.values().sum::<usize>(),
                targets.len(),
                if lines.is_empty() { "  (nothing)".to_owned() } else { lines.join("\n") },
                row.id,
            );
            self.mail_admins(row.org_id, "Support session ended: what was accessed", &body).await?;
            sent += 1;
        }
        Ok(sent)
    }

    /// A user grants support access to their own account for `duration`
    /// (at most the support maximum); they are told by mail.
    pub async fn grant_account_access(
        &self,
        principal: &Principal,
        duration: Duration,
    ) -> Result<AccountGrantRow, EngineError> {
        if principal.service_account.is_some() {
            return Err(EngineError::Denied(Denied::Forbidden));
        }
        crate::identity::refuse_acting(principal)?;
        let max = self.max_support;
        if duration < Duration::from_secs(60) || duration > max {
            return Err(SupportError::Duration { max_minutes: max.as_secs() / 60 }.into());
        }
        let now = now_micros();
        let grant = AccountGrantRow {
            id: uuid::Uuid::now_v7(),
            user: principal.user,
            created_at: now,
            expires_at: now.saturating_add(micros(duration)),
            ended_at: None,
            ended_by: None,
            end_notice_sent: false,
        };
        let fields = vec![format!("minutes:{}", duration.as_secs() / 60)];
        let entry = by(principal, "support.grant", format!("account_grant:{}", grant.id), fields);
        let pending = Pending::new(crate::audit::PLATFORM_CHAIN.to_owned(), vec![entry]);
        self.store.insert_account_grant(&grant, &pending.append()).await?;
        self.mail_user(
            principal.user,
            "You granted support access to your account",
            &format!(
                "You granted Strongroom support access to your account for {} minutes (grant {}).
                 You will be told when someone starts acting on it. End it at any time:
                 POST /v1/me/support-grants/{}/end
",
                duration.as_secs() / 60,
                grant.id,
                grant.id
            ),
        )
        .await?;
        Ok(grant)
    }

    /// A user's grants, newest first.
    pub async fn account_grants(&self, principal: &Principal) -> Result<Vec<AccountGrantRow>, EngineError> {
        if principal.service_account.is_some() {
            return Err(EngineError::Denied(Denied::Forbidden));
        }
        Ok(self.store.account_grants_of(principal.user).await?)
    }

    /// The user ends their grant: every session acting under it ends at
    /// once.
    pub async fn end_account_grant(&self, principal: &Principal, id: uuid::Uuid) -> Result<(), EngineError> {
        if principal.service_account.is_some() {
            return Err(EngineError::Denied(Denied::Forbidden));
        }
        let entry = by(principal, "support.grant_end", format!("account_grant:{id}"), Vec::new());
        let pending = Pending::new(crate::audit::PLATFORM_CHAIN.to_owned(), vec![entry]);
        let who = crate::profiles::actor_of(principal);
        if !self.store.end_account_grant(principal.user, id, &who, now_micros(), &pending.append()).await? {
            return Err(SupportError::GrantNotActive.into());
        }
        Ok(())
    }

    /// An operator (after 2FA) starts acting as the user who granted
    /// access: a session of that user's, marked with the operator and the
    /// grant, ending with the grant. The user is told by mail.
    pub async fn act_as(
        &self,
        auth: &AuthorizedPlatform,
        grant_id: uuid::Uuid,
    ) -> Result<(OpaqueToken, SessionRecord, UserRecord), EngineError> {
        let operator = auth.principal();
        let grant = self.store.account_grant(grant_id).await?.filter(|g| g.is_active(now_micros()));
        let grant = grant.ok_or(SupportError::GrantNotActive)?;
        let user = self.store.user_by_id(grant.user).await?.ok_or(SupportError::GrantNotActive)?;
        let token = OpaqueToken::generate().map_err(crate::AuthError::from)?;
        let now = store::now();
        let until = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(grant.expires_at) * 1_000)
            .map_err(|_| SupportError::GrantNotActive)?;
        let session = SessionRecord {
            id: SessionId::new(),
            user_id: user.id,
            // The operator passed 2FA to get here.
            mfa_passed: true,
            created_at: now,
            last_seen_at: now,
            expires_at: until,
            revoked_at: None,
            acting_operator: Some(operator.user),
            account_grant: Some(grant.id),
        };
        self.store.create_session(&session, &token.digest()).await?;
        let mut entry = by(operator, "support.act_as", format!("account_grant:{}", grant.id), Vec::new());
        entry.on_behalf_of = Some(format!("user:{}", user.id));
        self.record(Pending::new(crate::audit::PLATFORM_CHAIN.to_owned(), vec![entry])).await?;
        let who = self
            .store
            .user_by_id(operator.user)
            .await?
            .map_or_else(|| "An operator".to_owned(), |u| u.email.to_string());
        self.mail_user(
            user.id,
            "Support is now acting on your account",
            &format!(
                "{who} has started acting on your Strongroom account under your grant {}.
                 Everything done is recorded with both identities. End it at any time:
                 POST /v1/me/support-grants/{}/end
",
                grant.id, grant.id
            ),
        )
        .await?;
        Ok((token, session, user))
    }

    /// Tells each user whose grant ended (by them, or by expiry) that it
    /// has; once. Returns how many were told.
    pub async fn notify_ended_grants(&self) -> Result<usize, EngineError> {
        let mut told = 0;
        for g in self.store.account_grants_ended(now_micros(), 100).await? {
            if !self.store.mark_account_grant_notice_sent(g.id).await? {
                continue;
            }
            let how = if g.ended_at.is_some() { "was ended" } else { "expired" };
            self.mail_user(
                g.user,
                "Support access to your account has ended",
                &format!(
                    "Your grant {} of support access to your account {how}; nobody can act on it now.
",
                    g.id
                ),
            )
            .await?;
            told += 1;
        }
        Ok(told)
    }

    async fn mail_user(&self, user: domain::UserId, subject: &'static str, body: &str) -> Result<(), EngineError> {
        if let Some(u) = self.store.user_by_id(user).await? {
            self.mailer.send_later(u.email.to_string(), subject, body.to_owned());
        }
        Ok(())
    }

    /// Mails every owner and admin of an organisation (in the background).
    async fn mail_admins(&self, org: OrgId, subject: &'static str, body: &str) -> Result<(), EngineError> {
        for m in self.store.members(org).await? {
            if matches!(m.role, Role::Owner | Role::Admin) {
                self.mailer.send_later(m.email.to_string(), subject, body.to_owned());
            }
        }
        Ok(())
    }
}
