//! Offboarding an organisation: suspended, its keys destroyed (crypto-
//! shredding), a sample of its ciphertext shown not to decrypt any more,
//! then every row of its data removed and its attachments' blobs deleted.
//! The organisation row, its destroyed key versions and its audit chain
//! stay as the record of what was done. The handover export comes first,
//! from the caller (the command line), while the keys still exist.

use domain::{OrgId, OrgStatus, PlatformAction};

use crate::audit::by;
use crate::identity::AuthorizedPlatform;
use crate::{Denied, Engine, EngineError, KeyError};

/// Records whose ciphertext is tried after the keys are gone.
pub const SAMPLE: u32 = 20;

/// What an offboarding destroyed, and the proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffboardReport {
    pub org: OrgId,
    pub versions_destroyed: u64,
    /// No version of the organisation key can be unwrapped any more.
    pub keys_unreadable: bool,
    /// Records whose ciphertext was tried after the destruction.
    pub sample: usize,
    /// Of those, how many failed to decrypt (all of them, or the
    /// offboarding fails).
    pub sample_unreadable: usize,
    /// Rows removed per table.
    pub rows: Vec<(&'static str, u64)>,
    /// Attachment blobs deleted (a failure to delete one is logged).
    pub blobs: usize,
    /// Attachment blobs whose rows went.
    pub blob_rows: usize,
}

impl Engine {
    /// The first step of offboarding: the organisation is suspended (and
    /// its retention sweeps stop), so its data cannot change while it is
    /// handed over.
    pub async fn suspend_for_offboarding(&self, auth: &AuthorizedPlatform, org: OrgId) -> Result<(), EngineError> {
        if auth.action() != PlatformAction::OffboardOrgs {
            return Err(Denied::Forbidden.into());
        }
        self.store
            .update_org(org, None, Some(OrgStatus::Suspended))
            .await?
            .ok_or_else(|| EngineError::NoSuchOrg(org.to_string()))?;
        let entry = by(
            auth.principal(),
            "org.update",
            format!("org:{org}"),
            vec!["status:suspended".into(), "offboarding".into()],
        );
        self.platform_audit(entry.clone()).await?;
        self.org_audit(org, entry).await
    }
}

impl Engine {
    /// Offboards an organisation. Irreversible: the caller hands over the
    /// export first. Fails without removing any row if the key could still
    /// be unwrapped or a sample record still decrypts.
    pub async fn offboard_org(&self, auth: &AuthorizedPlatform, org: OrgId) -> Result<OffboardReport, EngineError> {
        if auth.action() != PlatformAction::OffboardOrgs {
            return Err(Denied::Forbidden.into());
        }
        // Suspended before the handover (see `suspend_for_offboarding`), so
        // nothing changed after it was exported.
        let current = self.store.get_org(org).await?.ok_or_else(|| EngineError::NoSuchOrg(org.to_string()))?;
        if current.status != OrgStatus::Suspended {
            return Err(EngineError::Offboard("the organisation must be suspended before its handover".into()));
        }
        let sample = self.store.list_profiles(org, None, SAMPLE, &[]).await?;
        let destroyed = self.keys.destroy_org(org).await?;
        let mut sample_unreadable = 0;
        for row in &sample {
            // Only "destroyed" counts: any other failure proves nothing.
            if let Err(EngineError::Key(KeyError::Destroyed)) = self.record_key(row).await {
                sample_unreadable += 1;
            }
        }
        let proven = destroyed.verified_unreadable && sample_unreadable == sample.len();
        let fields = vec![
            format!("versions_destroyed:{}", destroyed.versions_destroyed),
            format!("sample_unreadable:{sample_unreadable}/{}", sample.len()),
        ];
        if !proven {
            let mut entry = by(auth.principal(), "org.offboard", format!("org:{org}"), fields);
            entry.outcome = "failure".to_owned();
            self.platform_audit(entry.clone()).await?;
            self.org_audit(org, entry).await?;
            return Err(EngineError::Offboard(
                "the organisation's data still decrypts after its keys were destroyed; nothing was removed".into(),
            ));
        }
        let purged = self.store.purge_org_data(org).await?;
        let blob_rows = purged.blob_keys.len();
        let blobs = self.forget_blobs(purged.blob_keys).await;
        let mut fields = fields;
        fields.extend(purged.rows.iter().map(|(table, n)| format!("{table}:{n}")));
        fields.push(format!("blobs:{blobs}/{blob_rows}"));
        let entry = by(auth.principal(), "org.offboard", format!("org:{org}"), fields);
        // The organisation's own chain survives it, and the platform's shows it.
        self.platform_audit(entry.clone()).await?;
        self.org_audit(org, entry).await?;
        Ok(OffboardReport {
            org,
            versions_destroyed: destroyed.versions_destroyed,
            keys_unreadable: destroyed.verified_unreadable,
            sample: sample.len(),
            sample_unreadable,
            rows: purged.rows,
            blobs,
            blob_rows,
        })
    }
}
