//! Profiles: each organisation's schema and its records. Personal and
//! sensitive values are encrypted under a fresh record key per profile,
//! wrapped by the organisation key; searchable encrypted fields get
//! blind-index tokens; plain fields are stored in clear. What a caller sees
//! depends on the grant: sensitive values need `ReadSensitive`, and the
//! person a record belongs to (its owner) sees all of it.
//!
//! Architecture invariant: `open_record` is the one decrypt path for
//! profile values.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use crypto::{BlindIndexKey, Key256, KeyVersion};
use domain::{
    Action, Classification, FieldDef, FieldName, FieldType, FieldValue, Fields, KeyState, OrgId, ProfileId, Schema,
    UserId, Violation,
};
use serde_json::{Map, Value};
use store::{ProfileRow, SchemaRecord, Term, TermFilter};
use time::OffsetDateTime;

use crate::audit::{Pending, by, draft, org_chain, profile_target};
use crate::identity::{Authorized, Principal};
use crate::{Denied, Engine, EngineError, KeyError};

/// The most profiles one page may hold, and the default.
pub const MAX_PAGE: u32 = 200;
pub const DEFAULT_PAGE: u32 = 50;

/// The version of the record key itself: record keys are never rotated
/// (they are re-wrapped), so every field is encrypted under version 1.
const RECORD_KEY_VERSION: KeyVersion = KeyVersion::FIRST;

/// Why a profile operation failed, beyond authorisation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The input breaks the schema; every problem is listed.
    #[error("the request breaks the organisation's schema")]
    Invalid(Vec<Violation>),
    #[error("no such profile")]
    NotFound,
    /// `If-Match` named another revision than the stored one.
    #[error("the profile has changed since it was read; fetch it again")]
    Stale,
    /// Someone changed the schema at the same time.
    #[error("the schema was changed by someone else; fetch it again")]
    SchemaChanged,
    /// Stored ciphertext failed authentication: tampering or corruption.
    #[error("stored {0} failed its integrity check")]
    Integrity(&'static str),
}

/// Who wrote something, as recorded with it: never a name or address.
pub fn actor_of(p: &Principal) -> String {
    match &p.service_account {
        Some(sa) => format!("service_account:{}", sa.id),
        // The command line acts with the store and keys, not as an account.
        None if p.is_operator && p.user.as_uuid().is_nil() => "cli".to_owned(),
        // An operator acting as a user is the actor; the user is whom they
        // act for (`on_behalf_of`).
        None => format!("user:{}", p.acting_operator.unwrap_or(p.user)),
    }
}

/// How much of a record a caller sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// Every field, sensitive ones included.
    All,
    /// Plain and personal fields; sensitive ones withheld.
    Personal,
}

impl Visibility {
    pub(crate) fn of(auth: &Authorized) -> Self {
        if auth.permits(Action::ReadSensitive) { Self::All } else { Self::Personal }
    }

    pub(crate) fn shows(self, c: Classification) -> bool {
        self == Self::All || c != Classification::Sensitive
    }
}

/// A profile as a caller may see it. Holds plaintext personal data:
/// `Debug` shows identifiers only.
#[derive(Clone)]
pub struct ProfileView {
    pub id: ProfileId,
    pub revision: i64,
    pub schema_version: u32,
    pub owner: Option<UserId>,
    pub created_at: OffsetDateTime,
    pub created_by: String,
    pub updated_at: OffsetDateTime,
    pub updated_by: String,
    pub fields: Fields,
    /// Fields the record holds that this caller may not see.
    pub withheld: Vec<FieldName>,
}

impl std::fmt::Debug for ProfileView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileView").field("id", &self.id).field("revision", &self.revision).finish_non_exhaustive()
    }
}

/// How a caller reaches one profile.
#[derive(Debug)]
pub(crate) enum Reach {
    /// Through a grant of the organisation.
    Granted(Authorized),
    /// As the person the record belongs to; the row, already read.
    Owner(ProfileRow),
}

/// One page of profiles and the cursor of the next.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<ProfileView>,
    pub next: Option<ProfileId>,
}

/// A query on the list: exact matches on filterable fields (`AND`).
#[derive(Debug, Default)]
pub struct ProfileQuery {
    pub filters: Vec<(String, String)>,
    pub after: Option<ProfileId>,
    pub limit: Option<u32>,
}

/// One line of the minimisation report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldHolding {
    pub name: FieldName,
    pub kind: FieldType,
    pub classification: Classification,
    pub deprecated: bool,
    /// How many profiles hold a value for it.
    pub profiles: u64,
}

/// What personal data an organisation holds (claim 002.13).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonalDataReport {
    pub schema_version: u32,
    pub profiles: u64,
    pub fields: Vec<FieldHolding>,
}

/// A profile's values as they are stored: plain ones in clear, the rest
/// sealed.
struct Sealed {
    field_names: String,
    plain: String,
    sealed: Vec<u8>,
}

fn invalid(path: &str, rule: &'static str, message: impl Into<String>) -> EngineError {
    ProfileError::Invalid(vec![Violation { path: path.to_owned(), rule, message: message.into() }]).into()
}

fn crypto_integrity(what: &'static str) -> impl Fn(crypto::CryptoError) -> EngineError {
    move |_| ProfileError::Integrity(what).into()
}

impl Engine {
    /// The organisation's current schema (version 0 with no fields before
    /// the first one is set).
    pub async fn schema(&self, auth: &Authorized) -> Result<Arc<Schema>, EngineError> {
        self.require(auth, Action::ViewOrg)?;
        self.schema_of(auth).await
    }

    /// The organisation's current schema as authorising `auth` saw it: the
    /// version it read, parsed once and kept (a version never changes).
    pub(crate) async fn schema_of(&self, auth: &Authorized) -> Result<Arc<Schema>, EngineError> {
        match auth.seen().map(|a| (a.schema_version, a.schema_created_at)) {
            Some((None, _)) => Ok(Arc::new(Schema::empty())),
            Some((Some(version), Some(stored_at))) => match self.schemas.get(&(auth.org(), version)) {
                Some((schema, at)) if at == stored_at => Ok(schema),
                _ => self.load_schema(auth.org()).await,
            },
            _ => self.load_schema(auth.org()).await,
        }
    }

    /// The organisation's current schema, read from the store.
    pub(crate) async fn load_schema(&self, org: OrgId) -> Result<Arc<Schema>, EngineError> {
        let Some(record) = self.store.current_schema(org).await? else {
            return Ok(Arc::new(Schema::empty()));
        };
        if let Some((schema, at)) = self.schemas.get(&(org, record.version))
            && at == record.created_at
        {
            return Ok(schema);
        }
        let fields: Vec<FieldDef> = serde_json::from_str(&record.fields)
            .map_err(|e| store::StoreError::Corrupt { what: "schema", why: e.to_string() })?;
        let schema = Arc::new(
            Schema::new(record.version, fields)
                .map_err(|_| store::StoreError::Corrupt { what: "schema", why: "stored schema is invalid".into() })?,
        );
        self.schemas.put((org, record.version), (Arc::clone(&schema), record.created_at));
        Ok(schema)
    }

    /// Sets the next version of the schema. `expected_version`, when given,
    /// must be the current one. A change that would lose or mistype stored
    /// data is refused with the reasons.
    pub async fn put_schema(
        &self,
        auth: &Authorized,
        fields: Vec<FieldDef>,
        expected_version: Option<u32>,
    ) -> Result<Schema, EngineError> {
        self.require(auth, Action::ManageSchema)?;
        let org = auth.org();
        let current = self.load_schema(org).await?;
        if expected_version.is_some_and(|v| v != current.version) {
            return Err(ProfileError::SchemaChanged.into());
        }
        let has_records = self.store.has_profiles(org).await?;
        let next = current.evolve(fields, has_records).map_err(ProfileError::Invalid)?;
        let record = SchemaRecord {
            org_id: org,
            version: next.version,
            fields: serde_json::to_string(&next.fields)
                .map_err(|e| store::StoreError::Corrupt { what: "schema", why: e.to_string() })?,
            created_at: store::now(),
            created_by: actor_of(auth.principal()),
        };
        let added =
            next.fields.iter().filter(|f| current.field(&f.name) != Some(f)).map(|f| f.name.to_string()).collect();
        let target = format!("schema:{}", next.version);
        let pending = Pending::new(org_chain(org), vec![by(auth.principal(), "schema.update", target, added)]);
        self.store.insert_schema(&record, Some(&pending.append())).await.map_err(|e| match e {
            store::StoreError::Conflict { .. } => ProfileError::SchemaChanged.into(),
            e => EngineError::from(e),
        })?;
        Ok(next)
    }

    /// The caller's organisation and its schema, for creating records:
    /// refused without `WriteProfiles`, under a support session limited to
    /// some records, or before the organisation has a schema.
    async fn schema_to_write(&self, auth: &Authorized) -> Result<(OrgId, Arc<Schema>), EngineError> {
        self.require(auth, Action::WriteProfiles)?;
        crate::support::check_unlimited(auth)?;
        let org = auth.org();
        let schema = self.schema_of(auth).await?;
        if schema.fields.is_empty() {
            return Err(invalid("", "schema", "the organisation has no profile schema yet: PUT /v1/orgs/{org}/schema"));
        }
        Ok((org, schema))
    }

    /// Creates a profile from a JSON object of field values, optionally
    /// linked to the user account it describes.
    pub async fn create_profile(
        &self,
        auth: &Authorized,
        input: &Map<String, Value>,
        owner: Option<UserId>,
    ) -> Result<ProfileView, EngineError> {
        let (org, schema) = self.schema_to_write(auth).await?;
        let fields = schema.validate_new(input).map_err(ProfileError::Invalid)?;
        if let Some(owner) = owner {
            crate::support::refuse_owner_change(auth)?;
            self.check_owner(owner).await?;
        }
        let (version, org_key) = self.keys.active_org_key(org, auth.seen().and_then(|a| a.active_key)).await?;
        let sealer = Sealer::new(&schema, org, version, &org_key, actor_of(auth.principal()))?;
        let (row, terms) = sealer.seal(&fields, owner)?;
        let names = fields.keys().map(FieldName::to_string).collect();
        let pending =
            Pending::new(org_chain(org), vec![by(auth.principal(), "profile.create", profile_target(row.id), names)]);
        self.store.insert_profile(&row, &terms, Some(&pending.append())).await?;
        Ok(view_of(&schema, &row, Visibility::of(auth), fields))
    }

    /// Creates many profiles in one transaction (an import's batch). Every
    /// input is validated first: with any invalid, nothing is written. Each
    /// record is chained as `profile.create`, in the same transaction.
    /// Returns how many were written.
    pub async fn create_profiles(
        &self,
        auth: &Authorized,
        inputs: &[Map<String, Value>],
    ) -> Result<usize, EngineError> {
        let (org, schema) = self.schema_to_write(auth).await?;
        let (version, org_key) = self.keys.active_org_key(org, auth.seen().and_then(|a| a.active_key)).await?;
        let sealer = Sealer::new(&schema, org, version, &org_key, actor_of(auth.principal()))?;
        let mut rows = Vec::with_capacity(inputs.len());
        let mut drafts = Vec::with_capacity(inputs.len());
        for input in inputs {
            let fields = schema.validate_new(input).map_err(ProfileError::Invalid)?;
            let (row, terms) = sealer.seal(&fields, None)?;
            let names = fields.keys().map(FieldName::to_string).collect();
            drafts.push(by(auth.principal(), "profile.create", profile_target(row.id), names));
            rows.push((row, terms));
        }
        let refs: Vec<(&ProfileRow, &[Term])> = rows.iter().map(|(r, t)| (r, t.as_slice())).collect();
        let pending = Pending::new(org_chain(org), drafts);
        self.store.insert_profiles(&refs, Some(&pending.append())).await?;
        Ok(rows.len())
    }

    async fn check_owner(&self, owner: UserId) -> Result<(), EngineError> {
        if self.store.user_by_id(owner).await?.is_none() {
            return Err(invalid("/owner_user_id", "exists", "owner_user_id names no user account"));
        }
        Ok(())
    }

    /// Reads one profile: members whose grant reads profiles, or the
    /// person the record belongs to.
    pub async fn get_profile(
        &self,
        principal: &Principal,
        org: OrgId,
        id: ProfileId,
    ) -> Result<ProfileView, EngineError> {
        let (row, visibility, actor, schema) =
            match self.reach_profile(principal, org, id, &[Action::ReadProfiles]).await? {
                Reach::Granted(auth) => (
                    self.store.get_profile(org, id).await?.ok_or(ProfileError::NotFound)?,
                    Visibility::of(&auth),
                    auth.principal().clone(),
                    self.schema_of(&auth).await?,
                ),
                Reach::Owner(row) => (row, Visibility::All, principal.clone(), self.load_schema(org).await?),
            };
        self.open_record(&actor, &schema, &row, visibility).await
    }

    /// The one rule for reaching a single profile: a member or token whose
    /// grant allows one of `actions` (tried in order), or else the person
    /// the record belongs to (a user, never a token). A caller who is
    /// neither gets the denial of the first action.
    pub(crate) async fn reach_profile(
        &self,
        principal: &Principal,
        org: OrgId,
        id: ProfileId,
        actions: &[Action],
    ) -> Result<Reach, EngineError> {
        let mut first_denial = None;
        for &action in actions {
            match self.authorize(principal, org, action).await {
                Ok(auth) => {
                    crate::support::check_scope(&auth, id)?;
                    return Ok(Reach::Granted(auth));
                }
                Err(denied @ (Denied::NotFound | Denied::Forbidden)) => {
                    first_denial.get_or_insert(denied);
                }
                Err(e) => return Err(e.into()),
            }
        }
        match self.store.get_profile(org, id).await? {
            Some(row) if principal.service_account.is_none() && row.owner == Some(principal.user) => {
                self.authorize_record_owner(principal, org).await?;
                Ok(Reach::Owner(row))
            }
            _ => Err(first_denial.unwrap_or(Denied::NotFound).into()),
        }
    }

    /// The profiles linked to a user's own account, in any organisation.
    pub async fn my_profiles(&self, principal: &Principal) -> Result<Vec<(OrgId, ProfileId)>, EngineError> {
        if principal.service_account.is_some() {
            return Ok(Vec::new());
        }
        Ok(self.store.profiles_owned_by(principal.user).await?)
    }

    /// Applies a JSON merge patch if the profile is still at `if_match`.
    /// `owner` changes the linked account when given (`Some(None)`
    /// unlinks).
    pub async fn patch_profile(
        &self,
        auth: &Authorized,
        id: ProfileId,
        if_match: i64,
        patch: &Map<String, Value>,
        owner: Option<Option<UserId>>,
    ) -> Result<ProfileView, EngineError> {
        self.require(auth, Action::WriteProfiles)?;
        crate::support::check_scope(auth, id)?;
        let org = auth.org();
        let schema = self.schema_of(auth).await?;
        let patch = schema.validate_patch(patch).map_err(ProfileError::Invalid)?;
        if owner.is_some() {
            crate::support::refuse_owner_change(auth)?;
        }
        if let Some(Some(owner)) = owner {
            self.check_owner(owner).await?;
        }
        let row = self.store.get_profile(org, id).await?.ok_or(ProfileError::NotFound)?;
        if row.revision != if_match {
            return Err(ProfileError::Stale.into());
        }
        let record_key = self.record_key(&row).await?;
        let mut fields = self.decrypt_all(&schema, &row, &record_key)?;
        let mut changed: Vec<String> = patch.set.keys().chain(&patch.remove).map(FieldName::to_string).collect();
        changed.sort();
        changed.dedup();
        if owner.is_some() {
            changed.push("owner_user_id".into());
        }
        for name in &patch.remove {
            fields.remove(name);
        }
        fields.extend(patch.set);
        let sealed = seal_fields(&schema, org, id, &record_key, &fields)?;
        let org_key = self.keys.org_key(org, row.key_version).await?;
        let terms = terms_for(&schema, &BlindIndexKey::derive(&org_key, org).map_err(KeyError::from)?, &fields);
        let updated = ProfileRow {
            revision: row.revision + 1,
            schema_version: schema.version,
            owner: owner.unwrap_or(row.owner),
            field_names: sealed.field_names,
            plain: sealed.plain,
            sealed: sealed.sealed,
            updated_at: store::now(),
            updated_by: actor_of(auth.principal()),
            ..row
        };
        // The answer shows the whole record as it now is: only to a caller
        // who may read it, and with its read entry in the same transaction.
        let mut view = view_of(&schema, &updated, Visibility::of(auth), fields);
        let mut drafts = vec![by(auth.principal(), "profile.update", profile_target(id), changed)];
        if auth.permits(Action::ReadProfiles) {
            let shown = view.fields.keys().map(FieldName::to_string).collect();
            drafts.push(by(auth.principal(), "profile.read", profile_target(id), shown));
        } else {
            view.withheld.extend(std::mem::take(&mut view.fields).into_keys());
            view.withheld.sort();
        }
        let pending = Pending::new(org_chain(org), drafts);
        if !self.store.update_profile(&updated, if_match, Some(&terms), Some(&pending.append())).await? {
            return Err(ProfileError::Stale.into());
        }
        Ok(view)
    }

    /// Deletes a profile if it is still at `if_match`, with its
    /// attachments.
    pub async fn delete_profile(&self, auth: &Authorized, id: ProfileId, if_match: i64) -> Result<(), EngineError> {
        crate::support::check_scope(auth, id)?;
        self.require(auth, Action::WriteProfiles)?;
        let org = auth.org();
        let row = self.store.get_profile(org, id).await?.ok_or(ProfileError::NotFound)?;
        if row.revision != if_match {
            return Err(ProfileError::Stale.into());
        }
        let blobs: Vec<String> = self.store.attachments(org, id).await?.into_iter().map(|a| a.blob_key).collect();
        let pending =
            Pending::new(org_chain(org), vec![by(auth.principal(), "profile.delete", profile_target(id), Vec::new())]);
        if !self.store.delete_profile(org, id, if_match, Some(&pending.append())).await? {
            return Err(ProfileError::Stale.into());
        }
        self.forget_blobs(blobs).await;
        Ok(())
    }

    /// One page of profiles, filtered by exact matches.
    pub async fn list_profiles(&self, auth: &Authorized, query: &ProfileQuery) -> Result<Page, EngineError> {
        self.require(auth, Action::ReadProfiles)?;
        crate::support::check_unlimited(auth)?;
        let org = auth.org();
        let schema = self.schema_of(auth).await?;
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(invalid("/limit", "range", format!("limit must be 1 to {MAX_PAGE}")));
        }
        let mut filters = Vec::new();
        let mut errors = Vec::new();
        let mut index_keys = None;
        let visibility = Visibility::of(auth);
        for (name, raw) in &query.filters {
            let (def, value) = match schema.query_term(name, raw) {
                Ok(t) => t,
                Err(v) => {
                    errors.push(v);
                    continue;
                }
            };
            if !visibility.shows(def.classification) {
                // Matching on a withheld value would reveal it.
                errors.push(Violation {
                    path: format!("/{name}"),
                    rule: "searchable",
                    message: format!("{name} is sensitive and your access does not include it"),
                });
                continue;
            }
            let bytes = value.search_bytes(def.kind);
            let terms = if def.classification.is_encrypted() {
                if index_keys.is_none() {
                    index_keys = Some(self.index_keys(org).await?);
                }
                index_keys.iter().flatten().map(|k| k.token(def.name.as_str(), &bytes).as_bytes().to_vec()).collect()
            } else {
                vec![bytes]
            };
            filters.push(TermFilter { field: def.name.to_string(), terms });
        }
        if !errors.is_empty() {
            return Err(ProfileError::Invalid(errors).into());
        }
        let rows = self.store.list_profiles(org, query.after, limit + 1, &filters).await?;
        let more = rows.len() > limit as usize;
        let page = &rows[..rows.len().min(limit as usize)];
        let items = self.open_records(auth.principal(), &schema, page, visibility).await?;
        let next = if more { items.last().map(|p| p.id) } else { None };
        Ok(Page { items, next })
    }

    /// The blind-index keys of every live key version of an organisation.
    async fn index_keys(&self, org: OrgId) -> Result<Vec<BlindIndexKey>, EngineError> {
        let mut out = Vec::new();
        for record in self.store.org_keys(org).await? {
            if record.state == KeyState::Destroyed {
                continue;
            }
            let key = self.keys.org_key(org, record.version).await?;
            out.push(BlindIndexKey::derive(&key, org).map_err(KeyError::from)?);
        }
        Ok(out)
    }

    /// Which personal and sensitive fields an organisation holds, and how
    /// many profiles carry each (names and counts only).
    pub async fn personal_data_report(&self, auth: &Authorized) -> Result<PersonalDataReport, EngineError> {
        crate::support::check_unlimited(auth)?;
        self.require(auth, Action::ViewOrg)?;
        let org = auth.org();
        let schema = self.schema_of(auth).await?;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let held = self.store.profile_field_names(org).await?;
        let total = held.len() as u64;
        for names in &held {
            for name in names.split_whitespace() {
                *counts.entry(name.to_owned()).or_default() += 1;
            }
        }
        let fields = schema
            .fields
            .iter()
            .filter(|f| f.classification.is_encrypted())
            .map(|f| FieldHolding {
                name: f.name.clone(),
                kind: f.kind,
                classification: f.classification,
                deprecated: f.deprecated,
                profiles: counts.get(f.name.as_str()).copied().unwrap_or(0),
            })
            .collect();
        Ok(PersonalDataReport { schema_version: schema.version, profiles: total, fields })
    }

    /// Re-wraps every record key of an organisation still wrapped by an
    /// older organisation-key version under the current one, and rebuilds
    /// those records' blind-index tokens with the current key. Safe to
    /// repeat and to run on several instances: each row changes only if
    /// it is still at the revision read. Returns how many were re-wrapped.
    pub async fn rewrap_record_keys(&self, org: OrgId) -> Result<usize, EngineError> {
        let (current, org_key) = self.keys.current_org_key(org).await?;
        let kv = KeyVersion::new(current).ok_or(KeyError::NoKey)?;
        let index = BlindIndexKey::derive(&org_key, org).map_err(KeyError::from)?;
        let schema = self.load_schema(org).await?;
        let mut done = 0;
        loop {
            let rows = self.store.profiles_below_key_version(org, current, 100).await?;
            if rows.is_empty() {
                return Ok(done);
            }
            let mut progressed = false;
            for row in rows {
                let record_key = self.record_key(&row).await?;
                let fields = self.decrypt_all(&schema, &row, &record_key)?;
                let terms = terms_for(&schema, &index, &fields);
                let wrapped =
                    crypto::wrap_record_key(&org_key, kv, org, row.id, &record_key).map_err(KeyError::from)?;
                let revision = row.revision;
                let target = profile_target(row.id);
                let updated = ProfileRow { record_key: wrapped, key_version: current, ..row };
                let pending =
                    Pending::new(org_chain(org), vec![draft("system".into(), "record_key.rewrap", target, Vec::new())]);
                if self.store.update_profile(&updated, revision, Some(&terms), Some(&pending.append())).await? {
                    done += 1;
                    progressed = true;
                }
            }
            if !progressed {
                // Every row changed under us; the next pass picks them up.
                tokio::task::yield_now().await;
            }
        }
    }

    /// Unwraps a profile's record key with the organisation key version
    /// that wrapped it.
    pub(crate) async fn record_key(&self, row: &ProfileRow) -> Result<Key256, EngineError> {
        let org_key = self.keys.org_key(row.org_id, row.key_version).await?;
        let kv = KeyVersion::new(row.key_version).ok_or(KeyError::NoKey)?;
        crypto::unwrap_record_key(&org_key, kv, row.org_id, row.id, &row.record_key)
            .map_err(crypto_integrity("record key"))
    }

    /// The one decrypt path for profile values: unwraps the record key and
    /// decrypts the fields the caller may see. (The audit trail's decrypt
    /// entry is written here when the audit issue lands.)
    async fn open_record(
        &self,
        principal: &Principal,
        schema: &Schema,
        row: &ProfileRow,
        visibility: Visibility,
    ) -> Result<ProfileView, EngineError> {
        let mut views = self.open_records(principal, schema, std::slice::from_ref(row), visibility).await?;
        views.pop().ok_or_else(|| ProfileError::NotFound.into())
    }

    /// Decrypts records for a caller and records one `profile.read` audit
    /// entry per record (naming the fields shown) before anything is
    /// returned: no decrypt without its audit entry.
    async fn open_records(
        &self,
        principal: &Principal,
        schema: &Schema,
        rows: &[ProfileRow],
        visibility: Visibility,
    ) -> Result<Vec<ProfileView>, EngineError> {
        let Some(first) = rows.first() else { return Ok(Vec::new()) };
        let mut views = Vec::with_capacity(rows.len());
        let mut drafts = Vec::with_capacity(rows.len());
        for row in rows {
            let view = self.decrypt_for(schema, row, visibility).await?;
            let shown = view.fields.keys().map(FieldName::to_string).collect();
            drafts.push(by(principal, "profile.read", profile_target(row.id), shown));
            views.push(view);
        }
        self.record(Pending::new(org_chain(first.org_id), drafts)).await?;
        Ok(views)
    }

    /// Proves an organisation's records decrypt: opens every field of up
    /// to `sample` records (the first in id order) and drops the values at
    /// once. For restore drills on a scratch store; nothing is returned but
    /// how many records and fields opened.
    pub async fn check_decrypts(&self, org: OrgId, sample: u32) -> Result<(usize, usize), EngineError> {
        let rows = self.store.list_profiles(org, None, sample, &[]).await?;
        if rows.is_empty() {
            return Ok((0, 0));
        }
        let schema = self.load_schema(org).await?;
        let mut fields = 0;
        for row in &rows {
            let key = self.record_key(row).await?;
            fields += self.decrypt_all(&schema, row, &key)?.len();
        }
        Ok((rows.len(), fields))
    }

    /// One field of a record, decrypted if it is encrypted; for the
    /// engine's own rules (retention), never returned to a caller.
    pub(crate) async fn field_of(
        &self,
        schema: &Schema,
        row: &ProfileRow,
        def: &FieldDef,
    ) -> Result<Option<FieldValue>, EngineError> {
        if !def.classification.is_encrypted() {
            return Ok(plain_fields(schema, row)?.remove(&def.name));
        }
        let sealed: BTreeMap<String, String> =
            serde_json::from_slice(&row.sealed).map_err(|_| ProfileError::Integrity("profile"))?;
        let Some(ct) = sealed.get(def.name.as_str()) else { return Ok(None) };
        let ct = B64.decode(ct).map_err(|_| ProfileError::Integrity("profile"))?;
        let key = self.record_key(row).await?;
        let pt = crypto::decrypt_field(&key, RECORD_KEY_VERSION, row.org_id, row.id, def.name.as_str(), &ct)
            .map_err(crypto_integrity("profile field"))?;
        Ok(Some(FieldValue::from_bytes(def.kind, &pt).ok_or(ProfileError::Integrity("profile field"))?))
    }

    /// Decrypts what the caller may see of one record.
    pub(crate) async fn decrypt_for(
        &self,
        schema: &Schema,
        row: &ProfileRow,
        visibility: Visibility,
    ) -> Result<ProfileView, EngineError> {
        let present: Vec<&str> = row.field_names.split_whitespace().collect();
        let needs_key = present
            .iter()
            .filter_map(|n| schema.field_named(n))
            .any(|f| f.classification.is_encrypted() && visibility.shows(f.classification));
        let fields = if needs_key {
            let key = self.record_key(row).await?;
            self.decrypt_where(schema, row, &key, |c| visibility.shows(c))?
        } else {
            plain_fields(schema, row)?
        };
        Ok(view_of(schema, row, visibility, fields))
    }

    /// Every value of a record, decrypted. Only for re-encrypting on update
    /// or re-wrap (never returned unfiltered).
    fn decrypt_all(&self, schema: &Schema, row: &ProfileRow, record_key: &Key256) -> Result<Fields, EngineError> {
        self.decrypt_where(schema, row, record_key, |_| true)
    }

    /// A record's plain values and the encrypted ones whose classification
    /// `wanted` accepts; the others are not decrypted at all.
    fn decrypt_where(
        &self,
        schema: &Schema,
        row: &ProfileRow,
        record_key: &Key256,
        wanted: impl Fn(Classification) -> bool,
    ) -> Result<Fields, EngineError> {
        let mut fields = plain_fields(schema, row)?;
        let sealed: BTreeMap<String, String> =
            serde_json::from_slice(&row.sealed).map_err(|_| ProfileError::Integrity("profile"))?;
        for (name, ct) in sealed {
            let def = schema.field_named(&name).ok_or(ProfileError::Integrity("profile"))?;
            if !wanted(def.classification) {
                continue;
            }
            let ct = B64.decode(ct).map_err(|_| ProfileError::Integrity("profile"))?;
            let pt = crypto::decrypt_field(record_key, RECORD_KEY_VERSION, row.org_id, row.id, &name, &ct)
                .map_err(crypto_integrity("profile field"))?;
            let value = FieldValue::from_bytes(def.kind, &pt).ok_or(ProfileError::Integrity("profile field"))?;
            fields.insert(def.name.clone(), value);
        }
        Ok(fields)
    }
}

/// Seals new records of one organisation under its current key version:
/// a fresh record key each, wrapped by the organisation key, the fields
/// encrypted under it, and the blind-index terms.
struct Sealer<'a> {
    schema: &'a Schema,
    org: OrgId,
    version: u32,
    kv: KeyVersion,
    org_key: &'a Key256,
    index: BlindIndexKey,
    actor: String,
    now: OffsetDateTime,
}

impl<'a> Sealer<'a> {
    fn new(
        schema: &'a Schema,
        org: OrgId,
        version: u32,
        org_key: &'a Key256,
        actor: String,
    ) -> Result<Self, EngineError> {
        Ok(Self {
            schema,
            org,
            version,
            kv: KeyVersion::new(version).ok_or(KeyError::NoKey)?,
            org_key,
            index: BlindIndexKey::derive(org_key, org).map_err(KeyError::from)?,
            actor,
            now: store::now(),
        })
    }

    fn seal(&self, fields: &Fields, owner: Option<UserId>) -> Result<(ProfileRow, Vec<Term>), EngineError> {
        let id = ProfileId::new();
        let record_key = Key256::generate().map_err(KeyError::from)?;
        let wrapped =
            crypto::wrap_record_key(self.org_key, self.kv, self.org, id, &record_key).map_err(KeyError::from)?;
        let sealed = seal_fields(self.schema, self.org, id, &record_key, fields)?;
        let terms = terms_for(self.schema, &self.index, fields);
        let row = ProfileRow {
            org_id: self.org,
            id,
            revision: 1,
            schema_version: self.schema.version,
            owner,
            record_key: wrapped,
            key_version: self.version,
            field_names: sealed.field_names,
            plain: sealed.plain,
            sealed: sealed.sealed,
            created_at: self.now,
            created_by: self.actor.clone(),
            updated_at: self.now,
            updated_by: self.actor.clone(),
        };
        Ok((row, terms))
    }
}

/// The plain values of a stored record.
fn plain_fields(schema: &Schema, row: &ProfileRow) -> Result<Fields, EngineError> {
    let plain: Map<String, Value> = serde_json::from_str(&row.plain).map_err(|_| ProfileError::Integrity("profile"))?;
    let mut fields = Fields::new();
    for (name, value) in plain {
        let def = schema.field_named(&name).ok_or(ProfileError::Integrity("profile"))?;
        let value = match (&value, def.kind) {
            (Value::Bool(b), _) => FieldValue::Bool(*b),
            (Value::Number(n), _) => FieldValue::Number(n.as_f64().ok_or(ProfileError::Integrity("profile"))?),
            (Value::String(s), _) => FieldValue::Text(s.clone()),
            _ => return Err(ProfileError::Integrity("profile").into()),
        };
        fields.insert(def.name.clone(), value);
    }
    Ok(fields)
}

/// Splits values into the stored form: plain ones as JSON, the others
/// encrypted under the record key.
fn seal_fields(
    schema: &Schema,
    org: OrgId,
    id: ProfileId,
    record_key: &Key256,
    fields: &Fields,
) -> Result<Sealed, EngineError> {
    let mut plain = Map::new();
    let mut sealed = BTreeMap::new();
    for (name, value) in fields {
        let def = schema.field(name).ok_or(ProfileError::Integrity("profile"))?;
        if def.classification.is_encrypted() {
            let ct = crypto::encrypt_field(record_key, RECORD_KEY_VERSION, org, id, name.as_str(), &value.to_bytes())
                .map_err(KeyError::from)?;
            sealed.insert(name.as_str(), B64.encode(ct));
        } else {
            plain.insert(name.to_string(), value.to_json());
        }
    }
    let field_names = fields.keys().map(FieldName::as_str).collect::<Vec<_>>().join(" ");
    let sealed = serde_json::to_vec(&sealed).map_err(|_| ProfileError::Integrity("profile"))?;
    Ok(Sealed { field_names, plain: Value::Object(plain).to_string(), sealed })
}

/// The lookup terms of a record: a blind-index token per searchable
/// encrypted field, the normalised value of every filterable plain field.
fn terms_for(schema: &Schema, index: &BlindIndexKey, fields: &Fields) -> Vec<Term> {
    let mut terms = Vec::new();
    for (name, value) in fields {
        let Some(def) = schema.field(name) else { continue };
        if !def.is_filterable() {
            continue;
        }
        let bytes = value.search_bytes(def.kind);
        let term = if def.classification.is_encrypted() {
            index.token(name.as_str(), &bytes).as_bytes().to_vec()
        } else {
            bytes
        };
        terms.push(Term { field: name.to_string(), term });
    }
    terms
}

/// The caller's view of a record: what they may not see is dropped and
/// named in `withheld`.
fn view_of(schema: &Schema, row: &ProfileRow, visibility: Visibility, mut fields: Fields) -> ProfileView {
    let withheld = row
        .field_names
        .split_whitespace()
        .filter_map(|n| schema.field_named(n))
        .filter(|f| !visibility.shows(f.classification))
        .map(|f| f.name.clone())
        .collect();
    fields.retain(|name, _| schema.field(name).is_some_and(|f| visibility.shows(f.classification)));
    ProfileView {
        id: row.id,
        revision: row.revision,
        schema_version: row.schema_version,
        owner: row.owner,
        created_at: row.created_at,
        created_by: row.created_by.clone(),
        updated_at: row.updated_at,
        updated_by: row.updated_by.clone(),
        fields,
        withheld,
    }
}
