//! Retention: each organisation's policy, and the sweep that deletes the
//! profiles it expires (with their attachments and lookup terms), one
//! audited deletion at a time, or lists them without deleting (dry run).

use domain::{Action, FieldDef, FieldValue, OrgId, ProfileId, RetentionPolicy, Schema};
use time::OffsetDateTime;

use crate::audit::{Pending, by, draft, org_chain, profile_target};
use crate::identity::Authorized;
use crate::profiles::ProfileError;
use crate::{Engine, EngineError};

/// Profiles read per page by a sweep.
const SWEEP_PAGE: u32 = 500;
/// The most profile ids a sweep report lists (the counts are exact).
pub const MAX_LISTED: usize = 1_000;
/// Who the scheduled sweep acts as in the trail.
pub const SWEEP_ACTOR: &str = "system:retention";

/// An organisation's policy as set, and when and by whom.
#[derive(Clone, Debug)]
pub struct RetentionSetting {
    pub policy: RetentionPolicy,
    /// Unix microseconds.
    pub updated_at: i64,
    /// The actor who set it (an identifier, never a name).
    pub updated_by: String,
}

/// What a sweep found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub dry_run: bool,
    /// Profiles looked at.
    pub checked: u64,
    /// Profiles the policy expires.
    pub expired: u64,
    /// Profiles deleted (fewer than `expired` only if some changed or
    /// went meanwhile, or on a dry run).
    pub deleted: u64,
    /// The first `MAX_LISTED` expired profiles, in id order.
    pub profiles: Vec<ProfileId>,
}

impl Engine {
    /// The organisation's retention policy, if it has one.
    pub async fn retention(&self, auth: &Authorized) -> Result<Option<RetentionSetting>, EngineError> {
        self.require(auth, Action::ViewOrg)?;
        let Some(row) = self.store.retention_policy(auth.org()).await? else { return Ok(None) };
        let policy = serde_json::from_str(&row.policy).map_err(|_| ProfileError::Integrity("retention policy"))?;
        Ok(Some(RetentionSetting { policy, updated_at: row.updated_at, updated_by: row.updated_by }))
    }

    /// Sets the organisation's retention policy, checked against its
    /// schema; an empty policy removes it. Audited as `retention.policy`
    /// with the rules (field names and days only).
    pub async fn set_retention(&self, auth: &Authorized, policy: &RetentionPolicy) -> Result<(), EngineError> {
        self.require(auth, Action::ManageSettings)?;
        crate::support::check_unlimited(auth)?;
        let org = auth.org();
        let schema = self.load_schema(org).await?;
        policy.check(&schema).map_err(ProfileError::Invalid)?;
        let mut rules = Vec::new();
        if let Some(days) = policy.after_update_days {
            rules.push(format!("after_update_days:{days}"));
        }
        if let Some(rule) = &policy.after_date {
            rules.push(format!("after_date:{}:{}", rule.field, rule.days));
        }
        if rules.is_empty() {
            rules.push("none".to_owned());
        }
        let entry = by(auth.principal(), "retention.policy", format!("org:{org}"), rules);
        let pending = Pending::new(org_chain(org), vec![entry]);
        let actor = crate::profiles::actor_of(auth.principal());
        let json = serde_json::to_string(policy).map_err(|e| EngineError::Export(e.to_string()))?;
        let stored = (!policy.is_empty()).then_some((json.as_str(), crate::now_micros(), actor.as_str()));
        self.store.put_retention_policy(org, stored, &pending.append()).await?;
        Ok(())
    }

    /// Sweeps the caller's organisation now: deletes (or, on a dry run,
    /// lists) every profile its policy expires.
    pub async fn sweep_retention(&self, auth: &Authorized, dry_run: bool) -> Result<SweepReport, EngineError> {
        self.require(auth, Action::ManageSettings)?;
        crate::support::check_unlimited(auth)?;
        let org = auth.org();
        let Some(setting) = self.retention(auth).await? else {
            return Ok(SweepReport { dry_run, ..SweepReport::default() });
        };
        let principal = auth.principal().clone();
        let make = move |action: &str, target: String, fields: Vec<String>| by(&principal, action, target, fields);
        self.sweep(org, &setting.policy, &make, dry_run, store::now()).await
    }

    /// The scheduled sweep: every organisation with a policy, in turn.
    /// One organisation's failure (its keys destroyed, say) does not stop
    /// the others.
    pub async fn sweep_all_retention(&self) -> Result<Vec<(OrgId, Result<SweepReport, EngineError>)>, EngineError> {
        let make =
            |action: &str, target: String, fields: Vec<String>| draft(SWEEP_ACTOR.to_owned(), action, target, fields);
        let mut out = Vec::new();
        for row in self.store.retention_policies().await? {
            // A suspended organisation keeps everything until resumed (or
            // offboarded, which hands its data over first).
            match self.store.get_org(row.org_id).await? {
                Some(o) if o.status == domain::OrgStatus::Active => {}
                _ => continue,
            }
            let result = match serde_json::from_str::<RetentionPolicy>(&row.policy) {
                Ok(policy) => self.sweep(row.org_id, &policy, &make, false, store::now()).await,
                Err(_) => Err(ProfileError::Integrity("retention policy").into()),
            };
            out.push((row.org_id, result));
        }
        Ok(out)
    }

    async fn sweep(
        &self,
        org: OrgId,
        policy: &RetentionPolicy,
        make: &(dyn Fn(&str, String, Vec<String>) -> ::audit::Draft + Send + Sync),
        dry_run: bool,
        now: OffsetDateTime,
    ) -> Result<SweepReport, EngineError> {
        let schema = self.load_schema(org).await?;
        // A date rule whose field left the schema keeps everything.
        let date_field: Option<FieldDef> =
            policy.after_date.as_ref().and_then(|r| Schema::field_named(&schema, &r.field)).cloned();
        let mut report = SweepReport { dry_run, ..SweepReport::default() };
        let mut decrypted = 0u64;
        let target = format!("org:{org}");
        // A date rule on an encrypted field opens that field of every record
        // holding it: chained before the first decrypt.
        if let Some(def) = date_field.as_ref().filter(|d| d.classification.is_encrypted()) {
            let start = make("retention.sweep.start", target.clone(), vec![format!("decrypts:{}", def.name)]);
            self.record(Pending::new(org_chain(org), vec![start])).await?;
        }
        let result =
            self.sweep_pages(org, policy, &schema, date_field.as_ref(), make, now, &mut report, &mut decrypted).await;
        let mut fields = vec![
            format!("checked:{}", report.checked),
            format!("expired:{}", report.expired),
            format!("deleted:{}", report.deleted),
        ];
        if let Some(def) = &date_field
            && decrypted > 0
        {
            // The date rule opened this field of that many records.
            fields.push(format!("decrypted:{}:{decrypted}", def.name));
        }
        if dry_run {
            fields.push("dry_run".to_owned());
        }
        // Written however the sweep ended, with what it did.
        let mut end = make("retention.sweep", target, fields);
        if result.is_err() {
            end.outcome = "failure".to_owned();
        }
        self.record(Pending::new(org_chain(org), vec![end])).await?;
        result?;
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    async fn sweep_pages(
        &self,
        org: OrgId,
        policy: &RetentionPolicy,
        schema: &domain::Schema,
        date_field: Option<&FieldDef>,
        make: &(dyn Fn(&str, String, Vec<String>) -> ::audit::Draft + Send + Sync),
        now: OffsetDateTime,
        report: &mut SweepReport,
        decrypted: &mut u64,
    ) -> Result<(), EngineError> {
        let mut after = None;
        loop {
            let rows = self.store.list_profiles(org, after, SWEEP_PAGE, &[]).await?;
            let Some(last) = rows.last() else { return Ok(()) };
            after = Some(last.id);
            for row in &rows {
                report.checked += 1;
                let date = match date_field {
                    Some(def) if row.field_names.split_whitespace().any(|n| n == def.name.as_str()) => {
                        if def.classification.is_encrypted() {
                            *decrypted += 1;
                        }
                        match self.field_of(schema, row, def).await? {
                            Some(FieldValue::Text(s)) => domain::parse_date(&s),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                let Some(expiry) = policy.expiry(row.updated_at, date, now) else { continue };
                report.expired += 1;
                if report.profiles.len() < MAX_LISTED {
                    report.profiles.push(row.id);
                }
                if report.dry_run {
                    continue;
                }
                let blobs: Vec<String> =
                    self.store.attachments(org, row.id).await?.into_iter().map(|a| a.blob_key).collect();
                let reason = vec![format!("retention:{}", expiry.as_str())];
                let pending =
                    Pending::new(org_chain(org), vec![make("profile.delete", profile_target(row.id), reason)]);
                // Only at the revision read: a profile changed meanwhile is
                // judged again by the next sweep.
                if self.store.delete_profile(org, row.id, row.revision, Some(&pending.append())).await? {
                    report.deleted += 1;
                    self.forget_blobs(blobs).await;
                }
            }
            if rows.len() < SWEEP_PAGE as usize {
                return Ok(());
            }
        }
    }
}
