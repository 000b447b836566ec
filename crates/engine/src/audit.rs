//! The audit trail as the engine writes and reads it: drafts built from
//! the caller and the action (identifiers and field names only), sealed
//! into the organisation's chain inside the store transaction that holds
//! the chain's head; checkpoints signed with the deployment's audit key;
//! verification; and the history of one record.

use audit::{Broken, ChainVerifier, Checkpoint, Draft, Entry, Verified};
use domain::{Action, OrgId, ProfileId};
use store::{AuditAppend, AuditRow, AuditRowRef, CheckpointRow};

use crate::identity::{Authorized, Principal};
use crate::profiles::{ProfileError, actor_of};
use crate::{Denied, Engine, EngineError, KeyError};

/// The platform's chain (operators' and deployment-wide events).
pub const PLATFORM_CHAIN: &str = "platform";

/// An organisation's chain.
pub fn org_chain(org: OrgId) -> String {
    format!("org:{org}")
}

/// What an audit target string looks like for a profile.
pub fn profile_target(id: ProfileId) -> String {
    format!("profile:{id}")
}

tokio::task_local! {
    /// The id of the request being served, set by the HTTP layer.
    static REQUEST_ID: String;
}

/// Runs `f` as part of the request `id`: the audit entries it writes carry
/// the id, which the response also carries (`x-request-id`).
pub async fn with_request_id<F: std::future::Future>(id: String, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The time now, in unix microseconds (as the trail and support sessions
/// keep it).
pub fn now_micros() -> i64 {
    let t = store::now();
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// A draft of a successful action by `actor`.
pub(crate) fn draft(actor: String, action: &str, target: String, fields: Vec<String>) -> Draft {
    Draft {
        at_micros: now_micros(),
        actor,
        on_behalf_of: None,
        action: action.to_owned(),
        target,
        outcome: "success".to_owned(),
        fields,
        request_id: current_request_id(),
    }
}

/// A draft of an action by an authenticated caller.
pub(crate) fn by(principal: &Principal, action: &str, target: String, fields: Vec<String>) -> Draft {
    let mut d = draft(actor_of(principal), action, target, fields);
    // An operator acting under a support session acts for the organisation
    // that granted it: every entry names the session.
    d.on_behalf_of = match (principal.support_session, principal.acting_operator) {
        (Some(id), _) => Some(format!("support_session:{id}")),
        (None, Some(_)) => Some(format!("user:{}", principal.user)),
        (None, None) => None,
    };
    d
}

/// An entry as the store keeps it.
pub fn to_row(e: Entry) -> AuditRow {
    AuditRow {
        chain: e.chain,
        seq: i64::try_from(e.seq).unwrap_or(i64::MAX),
        at_micros: e.at_micros,
        actor: e.actor,
        on_behalf_of: e.on_behalf_of,
        action: e.action,
        target: e.target,
        outcome: e.outcome,
        fields: e.fields.join(" "),
        request_id: e.request_id,
        prev_hash: e.prev_hash.to_vec(),
        hash: e.hash.to_vec(),
    }
}

/// A stored entry as verification reads it.
pub fn from_row(r: AuditRow) -> Entry {
    let hash32 = |v: Vec<u8>| <[u8; 32]>::try_from(v).unwrap_or([0xff; 32]);
    Entry {
        chain: r.chain,
        seq: u64::try_from(r.seq).unwrap_or(0),
        at_micros: r.at_micros,
        actor: r.actor,
        on_behalf_of: r.on_behalf_of,
        action: r.action,
        target: r.target,
        outcome: r.outcome,
        fields: r.fields.split_whitespace().map(str::to_owned).collect(),
        request_id: r.request_id,
        prev_hash: hash32(r.prev_hash),
        hash: hash32(r.hash),
    }
}

/// A stored entry as the `audit` crate verifies it, still borrowed.
fn stored_of<'a>(r: &AuditRowRef<'a>) -> ::audit::StoredEntry<'a> {
    ::audit::StoredEntry {
        chain: r.chain,
        // A negative position is out of place, like any other wrong one.
        seq: u64::try_from(r.seq).unwrap_or(0),
        at_micros: r.at_micros,
        actor: r.actor,
        on_behalf_of: r.on_behalf_of,
        action: r.action,
        target: r.target,
        outcome: r.outcome,
        fields: r.fields,
        request_id: r.request_id,
        prev_hash: r.prev_hash,
        hash: r.hash,
    }
}

/// A stored checkpoint as the `audit` crate reads it.
pub(crate) fn checkpoint_of(c: CheckpointRow) -> Checkpoint {
    Checkpoint {
        chain: c.chain,
        size: u64::try_from(c.size).unwrap_or(0),
        head: <[u8; 32]>::try_from(c.head).unwrap_or([0xff; 32]),
        at_micros: c.at_micros,
        jws: c.jws,
    }
}

/// Drafts for one chain, ready to hand to the store.
#[derive(Debug)]
pub(crate) struct Pending {
    chain: String,
    drafts: Vec<Draft>,
}

impl Pending {
    pub(crate) fn new(chain: String, drafts: Vec<Draft>) -> Self {
        Self { chain, drafts }
    }

    /// The append the store makes under the chain's head, in the caller's
    /// transaction.
    pub(crate) fn append(&self) -> AuditAppend<'_> {
        // The store asks only for indexes below `count`.
        let seal = move |i: usize, seq: i64, prev| {
            to_row(self.drafts[i].seal(&self.chain, u64::try_from(seq).unwrap_or(0), prev))
        };
        AuditAppend { chain: &self.chain, count: self.drafts.len(), seal: Box::new(seal) }
    }
}

/// The most appends one transaction takes.
const MAX_BATCH: usize = 256;

/// An append waiting for the writer, and where its outcome goes.
#[derive(Debug)]
pub(crate) struct Job {
    pending: Pending,
    done: tokio::sync::oneshot::Sender<Result<(), EngineError>>,
}

/// The longest a caller waits for the writer to answer.
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Group commit for appends that stand alone (reads, sign-ins, settings):
/// one task takes every append waiting and writes them in one transaction,
/// so many requests share one commit and one fsync instead of queueing for
/// the write lock one by one. Each caller is answered only after the
/// commit. If the shared transaction fails, every caller in it gets the
/// failure: none is tried again alone, since a failure at commit may hide a
/// write that happened (and retrying would duplicate it). Appends that
/// belong to a change (a profile written with its entry) stay in that
/// change's transaction.
///
/// The task runs on the runtime of the first caller; an engine is used from
/// one runtime (a server's, or one command's).
#[derive(Debug, Default)]
pub(crate) struct Writer {
    queue: std::sync::OnceLock<tokio::sync::mpsc::Sender<Job>>,
}

impl Writer {
    /// The queue, starting the writer task on first use.
    fn queue(&self, store: &store::Store) -> &tokio::sync::mpsc::Sender<Job> {
        self.queue.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(4 * MAX_BATCH);
            tokio::spawn(write_batches(store.clone(), rx));
            tx
        })
    }
}

async fn write_batches(store: store::Store, mut rx: tokio::sync::mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        // By chain (stable: a chain's appends keep their order), so two
        // instances' batches lock chain heads in the same order.
        jobs.sort_by(|a, b| a.pending.chain.cmp(&b.pending.chain));
        let appends: Vec<_> = jobs.iter().map(|j| j.pending.append()).collect();
        let outcome = store.append_audit_batch(&appends).await;
        drop(appends);
        if jobs.len() == 1 {
            // Alone in its transaction: the store's own error.
            if let Some(job) = jobs.pop() {
                let _ = job.done.send(outcome.map_err(EngineError::from));
            }
            continue;
        }
        let failure = outcome.err().map(|e| e.to_string());
        for job in jobs.drain(..) {
            let _ = job.done.send(match &failure {
                None => Ok(()),
                Some(why) => Err(EngineError::AuditBatch(why.clone())),
            });
        }
    }
}

/// One entry as a reader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditView {
    pub seq: u64,
    pub at_micros: i64,
    pub actor: String,
    pub on_behalf_of: Option<String>,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub fields: Vec<String>,
    pub request_id: Option<String>,
}

impl From<AuditRow> for AuditView {
    fn from(r: AuditRow) -> Self {
        let e = from_row(r);
        Self {
            seq: e.seq,
            at_micros: e.at_micros,
            actor: e.actor,
            on_behalf_of: e.on_behalf_of,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            fields: e.fields,
            request_id: e.request_id,
        }
    }
}

/// Which entries of a trail to show; every set member must match (the
/// store applies it in the query).
pub type AuditFilter = store::AuditQuery;

/// The outcome of verifying one chain.
#[derive(Debug)]
pub struct ChainReport {
    pub chain: String,
    pub result: Result<Verified, Broken>,
}

impl Engine {
    /// Appends drafts to a chain in a transaction of their own, and returns
    /// once it is committed. Appends that arrive while another commits are
    /// written together in the next transaction (see [`Writer`]).
    pub(crate) async fn record(&self, pending: Pending) -> Result<(), EngineError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let job = Job { pending, done };
        match self.audit_writer.queue(&self.store).send(job).await {
            // A writer stuck behind a lock is not waited for without end:
            // the request fails (its entry may still be written later).
            Ok(()) => match tokio::time::timeout(WRITER_WAIT, answer).await {
                Ok(answer) => answer.unwrap_or(Err(EngineError::AuditWriterStopped)),
                Err(_) => Err(EngineError::AuditWriterStopped),
            },
            // The writer's runtime has gone (a test's, say): write directly.
            Err(tokio::sync::mpsc::error::SendError(job)) => {
                self.store.append_audit(&job.pending.append()).await?;
                Ok(())
            }
        }
    }

    /// An organisation's trail, oldest first, after position `after`,
    /// filtered; at most `limit` entries.
    pub async fn audit_log(
        &self,
        auth: &Authorized,
        filter: &AuditFilter,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditView>, EngineError> {
        self.require(auth, Action::ReadAudit)?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = self.store.audit_search(&org_chain(auth.org()), filter, after, limit.clamp(1, 1000)).await?;
        Ok(rows.into_iter().map(AuditView::from).collect())
    }

    /// Every change and every read of one profile, with who did it: for
    /// the organisation's writers and auditors, and for the person the
    /// record belongs to.
    pub async fn profile_history(
        &self,
        principal: &Principal,
        org: OrgId,
        id: ProfileId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditView>, EngineError> {
        // Writers and auditors see the history even of a deleted record.
        match self.reach_profile(principal, org, id, &[Action::WriteProfiles, Action::ReadAudit]).await {
            Ok(_) => {}
            Err(EngineError::Denied(Denied::NotFound | Denied::Forbidden)) => return Err(ProfileError::NotFound.into()),
            Err(e) => return Err(e),
        }
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows =
            self.store.audit_entries_for(&org_chain(org), &profile_target(id), after, limit.clamp(1, 1000)).await?;
        Ok(rows.into_iter().map(AuditView::from).collect())
    }

    /// Chains the start of an instance with the fingerprint of its
    /// effective configuration (secrets redacted), so that a change of
    /// configuration shows in the platform's trail as a new fingerprint.
    pub async fn record_config(&self, fingerprint: &str) -> Result<(), EngineError> {
        let entry = draft("system".into(), "config.apply", format!("config:{fingerprint}"), Vec::new());
        self.record(Pending::new(PLATFORM_CHAIN.to_owned(), vec![entry])).await
    }

    /// Drill reports, newest first: the evidence that restores work.
    pub async fn drills(
        &self,
        auth: &crate::AuthorizedPlatform,
        limit: u32,
    ) -> Result<Vec<store::DrillRow>, EngineError> {
        if auth.action() != domain::PlatformAction::ViewBackups {
            return Err(EngineError::Denied(crate::Denied::Forbidden));
        }
        Ok(self.store.drills(i64::from(limit.clamp(1, 1000))).await?)
    }

    /// Chains an operations event on the platform trail: a backup, prune,
    /// restore or drill, by `actor` (`cli`, `system` or a user), with its
    /// outcome. `fields` name what it touched (ids and counts, never values).
    pub async fn record_operation(
        &self,
        actor: &str,
        action: &str,
        target: String,
        success: bool,
        fields: Vec<String>,
    ) -> Result<(), EngineError> {
        let mut entry = draft(actor.to_owned(), action, target, fields);
        if !success {
            entry.outcome = "failure".to_owned();
        }
        self.record(Pending::new(PLATFORM_CHAIN.to_owned(), vec![entry])).await
    }

    /// Signs a checkpoint of every chain that grew since its last one.
    /// Returns how many were signed.
    pub async fn checkpoint_chains(&self) -> Result<usize, EngineError> {
        let key = self.keys.audit_signing_key().await?;
        let mut signed = 0;
        for (chain, size, head) in self.store.audit_chains().await? {
            if size == 0 {
                continue;
            }
            let last = self.store.checkpoints(&chain).await?.last().map_or(0, |c| c.size);
            if last >= size {
                continue;
            }
            let head = <[u8; 32]>::try_from(head)
                .map_err(|_| store::StoreError::Corrupt { what: "audit head", why: "hash is not 32 bytes".into() })?;
            let at = now_micros();
            let c = audit::sign_checkpoint(&key, &chain, u64::try_from(size).unwrap_or(0), head, at)
                .map_err(|e| KeyError::Crypto(crypto::CryptoError::Kdf(e.to_string())))?;
            self.store
                .insert_checkpoint(&CheckpointRow { chain, size, head: c.head.to_vec(), at_micros: at, jws: c.jws })
                .await?;
            signed += 1;
        }
        Ok(signed)
    }

    /// Verifies every chain (or one organisation's) against its
    /// checkpoints.
    pub async fn verify_audit(&self, org: Option<OrgId>) -> Result<Vec<ChainReport>, EngineError> {
        let key = self.keys.audit_signing_key().await?;
        let keys = [key.verifying_entry()];
        let chains: Vec<String> = match org {
            Some(org) => vec![org_chain(org)],
            None => self.store.audit_chains().await?.into_iter().map(|(c, _, _)| c).collect(),
        };
        let mut out = Vec::new();
        for chain in chains {
            let checkpoints: Vec<Checkpoint> =
                self.store.checkpoints(&chain).await?.into_iter().map(checkpoint_of).collect();
            // Read once, verifying as rows arrive; only a chain that fails
            // is read again, whole, to name its first problem.
            let mut verifier = ChainVerifier::new(checkpoints.iter().map(|c| c.size));
            let mut sound = true;
            self.store
                .scan_audit(&chain, 0, &mut |row| {
                    sound = verifier.push_stored(&stored_of(&row));
                    sound
                })
                .await?;
            let result = if sound {
                verifier.finish(&checkpoints, &keys)
            } else {
                let mut entries = Vec::new();
                self.store
                    .scan_audit(&chain, 0, &mut |row| {
                        entries.push(from_row(row.to_row()));
                        true
                    })
                    .await?;
                audit::verify(&entries, &checkpoints, &keys)
            };
            out.push(ChainReport { result, chain });
        }
        Ok(out)
    }
}
