//! Attachments: the materials uploaded with a profile. Bytes stream
//! through in both directions, encrypted in chunks (crypto's STREAM
//! construction) under the profile's record key with associated data that
//! binds organisation, profile and attachment, and land in the blob store
//! under a random key; the name is stored encrypted, found again through a
//! keyed hash. A tampered, truncated or swapped blob fails to decrypt and
//! never yields altered bytes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use crypto::stream::{StreamDecryptor, StreamEncryptor};
use crypto::{Key256, KeyVersion};
use domain::{Action, OrgId, ProfileId};
use futures_util::{Stream, StreamExt};
use store::{AttachmentRow, BlobError, BlobKey, BlobStore, ProfileRow};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{Pending, by, org_chain, profile_target};
use crate::identity::{Authorized, Principal};
use crate::profiles::{ProfileError, Reach, actor_of};
use crate::{Engine, EngineError, KeyError};

/// The longest attachment name, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// Why an attachment operation failed, beyond profiles' own errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachmentError {
    #[error("no such attachment")]
    NotFound,
    /// The name breaks the naming rule.
    #[error(
        "attachment names are 1 to {MAX_NAME_LEN} bytes of letters, digits, '.', '-' and '_', not starting with '.'"
    )]
    InvalidName,
    #[error("the content type is not a valid media type")]
    InvalidContentType,
    /// The upload was larger than the configured limit; nothing was kept.
    #[error("the attachment exceeds the limit of {limit} bytes (blobs.max_attachment_bytes)")]
    TooLarge { limit: u64 },
    /// The stored bytes failed authentication: altered, truncated,
    /// reordered or swapped.
    #[error("the stored attachment failed its integrity check")]
    Tampered,
    /// The upload broke off; nothing was kept.
    #[error("the upload was interrupted; nothing was stored")]
    Interrupted,
    /// No blob store is configured for this engine.
    #[error("attachments are not configured")]
    NotConfigured,
    /// The blob store failed.
    #[error("the blob store failed: {0}")]
    Blob(#[from] BlobError),
}

/// An attachment's metadata as a caller may see it. The name may be
/// personal, so `Debug` leaves it out.
#[derive(Clone)]
pub struct AttachmentInfo {
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub created_at: OffsetDateTime,
    pub created_by: String,
}

impl std::fmt::Debug for AttachmentInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentInfo").field("size", &self.size).finish_non_exhaustive()
    }
}

/// The decrypted bytes of an attachment, as a stream of authenticated
/// chunks. An error item means the stored blob failed its integrity check
/// or the store failed; the bytes before it were authentic.
pub type PlainStream = Pin<Box<dyn Stream<Item = Result<Bytes, AttachmentError>> + Send>>;

fn check_name(name: &str) -> Result<(), AttachmentError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok { Ok(()) } else { Err(AttachmentError::InvalidName) }
}

fn check_content_type(ct: &str) -> Result<(), AttachmentError> {
    let essence = ct.split(';').next().unwrap_or("").trim();
    let token = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c));
    let ok = ct.len() <= 200
        && ct.chars().all(|c| c.is_ascii() && !c.is_ascii_control())
        && essence.split_once('/').is_some_and(|(a, b)| token(a) && token(b));
    if ok { Ok(()) } else { Err(AttachmentError::InvalidContentType) }
}

/// The associated data binding an attachment's bytes to its place.
fn stream_context(org: OrgId, profile: ProfileId, id: Uuid) -> Vec<u8> {
    crypto::canonical(&[b"strongroom/attachment/v1", org.as_bytes(), profile.as_bytes(), id.as_bytes()])
}

/// The keyed hash that finds an attachment by name within its profile.
fn name_token(record_key: &Key256, name: &str) -> Result<Vec<u8>, EngineError> {
    let info = crypto::canonical(&[b"strongroom/attachment-name/v1"]);
    let (_, mut okm) =
        crypto::hkdf_sha256(&[], record_key.expose_for_cipher(), &info, Key256::LEN).map_err(KeyError::from)?;
    let key = Key256::from_slice(&mut okm).map_err(KeyError::from)?;
    Ok(crypto::hmac_sha256(key.expose_for_cipher(), name.as_bytes()).to_vec())
}

fn name_field(id: Uuid) -> String {
    format!("attachment-name:{id}")
}

fn blob_key(org: OrgId, profile: ProfileId, id: Uuid) -> Result<BlobKey, EngineError> {
    Ok(BlobKey::new(&format!("orgs/{org}/profiles/{profile}/{id}")).map_err(AttachmentError::from)?)
}

/// Encrypts a plaintext body on its way to the blob store, counting bytes
/// and cutting it off past the limit.
struct Sealing<S> {
    body: S,
    enc: Option<StreamEncryptor>,
    size: Arc<AtomicU64>,
    limit: u64,
    too_large: Arc<AtomicBool>,
}

impl<S, E> Stream for Sealing<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.enc.is_none() {
                return Poll::Ready(None);
            }
            match self.body.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    self.enc = None;
                    return Poll::Ready(Some(Err(io::Error::other(format!("request body: {e}")))));
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    let size = self.size.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
                    if size > self.limit {
                        self.enc = None;
                        self.too_large.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(io::Error::other("attachment too large"))));
                    }
                    let Some(enc) = self.enc.as_mut() else { return Poll::Ready(None) };
                    match enc.update(&chunk) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Bytes::from(out)))),
                        Err(e) => return Poll::Ready(Some(Err(io::Error::other(e.to_string())))),
                    }
                }
                Poll::Ready(None) => {
                    let Some(enc) = self.enc.take() else { return Poll::Ready(None) };
                    return match enc.finish() {
                        Ok(out) => Poll::Ready(Some(Ok(Bytes::from(out)))),
                        Err(e) => Poll::Ready(Some(Err(io::Error::other(e.to_string())))),
                    };
                }
            }
        }
    }
}

impl Engine {
    /// The same engine storing attachments in `blobs`.
    pub fn with_blobs(mut self, blobs: BlobStore, max_attachment_bytes: u64) -> Self {
        self.blobs = Some(blobs);
        self.max_attachment_bytes = max_attachment_bytes;
        self
    }

    fn blobs(&self) -> Result<&BlobStore, EngineError> {
        Ok(self.blobs.as_ref().ok_or(AttachmentError::NotConfigured)?)
    }

    /// The profile row, for a writer of the organisation.
    async fn attachment_profile(&self, org: OrgId, profile: ProfileId) -> Result<ProfileRow, EngineError> {
        Ok(self.store.get_profile(org, profile).await?.ok_or(ProfileError::NotFound)?)
    }

    /// Stores (or replaces) an attachment, streaming and encrypting the
    /// body. Past the size limit, or if the body breaks off, nothing is
    /// kept.
    pub async fn put_attachment<S, E>(
        &self,
        auth: &Authorized,
        profile: ProfileId,
        name: &str,
        content_type: &str,
        body: S,
    ) -> Result<(AttachmentInfo, bool), EngineError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        self.require(auth, Action::WriteProfiles)?;
        crate::support::check_scope(auth, profile)?;
        check_name(name)?;
        check_content_type(content_type)?;
        let blobs = self.blobs()?;
        let org = auth.org();
        let row = self.attachment_profile(org, profile).await?;
        let record_key = self.record_key(&row).await?;
        let id = Uuid::now_v7();
        let key = blob_key(org, profile, id)?;
        let too_large = Arc::new(AtomicBool::new(false));
        let counted = Arc::new(AtomicU64::new(0));
        let sealing = Sealing {
            body,
            enc: Some(StreamEncryptor::new(&record_key, &stream_context(org, profile, id)).map_err(KeyError::from)?),
            size: Arc::clone(&counted),
            limit: self.max_attachment_bytes,
            too_large: Arc::clone(&too_large),
        };
        let size = match blobs.put(&key, sealing).await {
            Ok(_) => counted.load(Ordering::Relaxed),
            Err(BlobError::Body(_)) if too_large.load(Ordering::Relaxed) => {
                return Err(AttachmentError::TooLarge { limit: self.max_attachment_bytes }.into());
            }
            Err(BlobError::Body(_)) => return Err(AttachmentError::Interrupted.into()),
            Err(e) => return Err(AttachmentError::Blob(e).into()),
        };
        let name_sealed =
            crypto::encrypt_field(&record_key, KeyVersion::FIRST, org, profile, &name_field(id), name.as_bytes())
                .map_err(KeyError::from)?;
        let attachment = AttachmentRow {
            org_id: org,
            profile_id: profile,
            id,
            name_token: name_token(&record_key, name)?,
            name_sealed,
            content_type: content_type.to_owned(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            blob_key: key.as_str().to_owned(),
            created_at: store::now(),
            created_by: actor_of(auth.principal()),
        };
        let entry =
            by(auth.principal(), "attachment.upload", profile_target(profile), vec![format!("attachment:{id}")]);
        let pending = Pending::new(org_chain(org), vec![entry]);
        let replaced = match self.store.put_attachment(&attachment, Some(&pending.append())).await {
            Ok(replaced) => {
                let was = replaced.is_some();
                self.forget_blobs(replaced.into_iter().collect()).await;
                was
            }
            Err(e) => {
                self.forget_blobs(vec![key.as_str().to_owned()]).await;
                return Err(e.into());
            }
        };
        let info = AttachmentInfo {
            name: name.to_owned(),
            content_type: attachment.content_type,
            size,
            created_at: attachment.created_at,
            created_by: attachment.created_by,
        };
        Ok((info, replaced))
    }

    /// Who may read a profile's attachments: its readers and its owner.
    /// The profile, and the caller as the trail records them (with the
    /// support session they act under, if any).
    async fn readable_profile(
        &self,
        principal: &Principal,
        org: OrgId,
        profile: ProfileId,
    ) -> Result<(ProfileRow, Principal), EngineError> {
        match self.reach_profile(principal, org, profile, &[Action::ReadProfiles]).await? {
            Reach::Granted(auth) => Ok((
                self.store.get_profile(org, profile).await?.ok_or(ProfileError::NotFound)?,
                auth.principal().clone(),
            )),
            Reach::Owner(row) => Ok((row, principal.clone())),
        }
    }

    /// A profile readable by a caller already authorised in its
    /// organisation (the command line's handover at offboarding).
    async fn readable_as(&self, auth: &Authorized, profile: ProfileId) -> Result<(ProfileRow, Principal), EngineError> {
        self.require(auth, Action::ReadProfiles)?;
        crate::support::check_scope(auth, profile)?;
        let row = self.store.get_profile(auth.org(), profile).await?.ok_or(ProfileError::NotFound)?;
        Ok((row, auth.principal().clone()))
    }

    /// A profile's attachments, names decrypted.
    pub async fn list_attachments(
        &self,
        principal: &Principal,
        org: OrgId,
        profile: ProfileId,
    ) -> Result<Vec<AttachmentInfo>, EngineError> {
        let found = self.readable_profile(principal, org, profile).await?;
        self.list_of(found, org, profile).await
    }

    /// A profile's attachments, for a caller authorised in its organisation.
    pub async fn list_attachments_as(
        &self,
        auth: &Authorized,
        profile: ProfileId,
    ) -> Result<Vec<AttachmentInfo>, EngineError> {
        let found = self.readable_as(auth, profile).await?;
        self.list_of(found, auth.org(), profile).await
    }

    async fn list_of(
        &self,
        (row, actor): (ProfileRow, Principal),
        org: OrgId,
        profile: ProfileId,
    ) -> Result<Vec<AttachmentInfo>, EngineError> {
        let record_key = self.record_key(&row).await?;
        self.record(Pending::new(
            org_chain(org),
            vec![by(&actor, "attachment.list", profile_target(profile), Vec::new())],
        ))
        .await?;
        let mut out = Vec::new();
        for a in self.store.attachments(org, profile).await? {
            let name =
                crypto::decrypt_field(&record_key, KeyVersion::FIRST, org, profile, &name_field(a.id), &a.name_sealed)
                    .map_err(|_| ProfileError::Integrity("attachment name"))?;
            out.push(AttachmentInfo {
                name: String::from_utf8_lossy(&name).into_owned(),
                content_type: a.content_type,
                size: u64::try_from(a.size).unwrap_or(0),
                created_at: a.created_at,
                created_by: a.created_by,
            });
        }
        Ok(out)
    }

    /// Opens an attachment for download: its metadata and a stream of its
    /// decrypted bytes. The first chunk is authenticated before this
    /// returns, so a tampered small file is an error here, not a broken
    /// download.
    pub async fn get_attachment(
        &self,
        principal: &Principal,
        org: OrgId,
        profile: ProfileId,
        name: &str,
    ) -> Result<(AttachmentInfo, PlainStream), EngineError> {
        check_name(name).map_err(|_| AttachmentError::NotFound)?;
        let found = self.readable_profile(principal, org, profile).await?;
        self.open_attachment(found, org, profile, name).await
    }

    /// Opens an attachment for a caller authorised in its organisation.
    pub async fn get_attachment_as(
        &self,
        auth: &Authorized,
        profile: ProfileId,
        name: &str,
    ) -> Result<(AttachmentInfo, PlainStream), EngineError> {
        check_name(name).map_err(|_| AttachmentError::NotFound)?;
        let found = self.readable_as(auth, profile).await?;
        self.open_attachment(found, auth.org(), profile, name).await
    }

    async fn open_attachment(
        &self,
        (row, actor): (ProfileRow, Principal),
        org: OrgId,
        profile: ProfileId,
        name: &str,
    ) -> Result<(AttachmentInfo, PlainStream), EngineError> {
        let blobs = self.blobs()?;
        let record_key = self.record_key(&row).await?;
        let a = self
            .store
            .attachment(org, profile, &name_token(&record_key, name)?)
            .await?
            .ok_or(AttachmentError::NotFound)?;
        let key = BlobKey::new(&a.blob_key).map_err(AttachmentError::from)?;
        let cipher = match blobs.get(&key).await {
            Ok(s) => s,
            Err(BlobError::NotFound) => return Err(ProfileError::Integrity("attachment").into()),
            Err(e) => return Err(AttachmentError::Blob(e).into()),
        };
        let dec = StreamDecryptor::new(&record_key, &stream_context(org, profile, a.id));
        let mut plain = opening(cipher, dec);
        // Authenticate the first chunk (for most files: all of them) now.
        let mut first = Vec::new();
        loop {
            match plain.next().await {
                Some(Ok(b)) if b.is_empty() => continue,
                Some(Ok(b)) => {
                    first.push(Ok(b));
                    break;
                }
                Some(Err(AttachmentError::Blob(e))) => return Err(AttachmentError::Blob(e).into()),
                Some(Err(_)) => return Err(ProfileError::Integrity("attachment").into()),
                None => break,
            }
        }
        let entry = by(&actor, "attachment.download", profile_target(profile), vec![format!("attachment:{}", a.id)]);
        self.record(Pending::new(org_chain(org), vec![entry])).await?;
        let stream: PlainStream = Box::pin(futures_util::stream::iter(first).chain(plain));
        let info = AttachmentInfo {
            name: name.to_owned(),
            content_type: a.content_type,
            size: u64::try_from(a.size).unwrap_or(0),
            created_at: a.created_at,
            created_by: a.created_by,
        };
        Ok((info, stream))
    }

    /// Deletes an attachment.
    pub async fn delete_attachment(
        &self,
        auth: &Authorized,
        profile: ProfileId,
        name: &str,
    ) -> Result<(), EngineError> {
        self.require(auth, Action::WriteProfiles)?;
        crate::support::check_scope(auth, profile)?;
        check_name(name).map_err(|_| AttachmentError::NotFound)?;
        let org = auth.org();
        let row = self.attachment_profile(org, profile).await?;
        let record_key = self.record_key(&row).await?;
        let entry = by(auth.principal(), "attachment.delete", profile_target(profile), Vec::new());
        let pending = Pending::new(org_chain(org), vec![entry]);
        let key = self
            .store
            .delete_attachment(org, profile, &name_token(&record_key, name)?, Some(&pending.append()))
            .await?
            .ok_or(AttachmentError::NotFound)?;
        self.forget_blobs(vec![key]).await;
        Ok(())
    }

    /// Removes blobs whose rows are gone. A failure leaves an orphan blob,
    /// still encrypted and unreadable without its row; it is logged by key.
    pub(crate) async fn forget_blobs(&self, keys: Vec<String>) -> usize {
        let Some(blobs) = &self.blobs else { return 0 };
        let mut deleted = 0;
        for key in keys {
            let result = match BlobKey::new(&key) {
                Ok(k) => blobs.delete(&k).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => deleted += 1,
                Err(e) => tracing::warn!(blob = %key, error = %e, "could not delete a blob whose row is gone"),
            }
        }
        deleted
    }
}

/// Decrypts a ciphertext stream chunk by chunk; only authenticated bytes
/// come out, and a failure ends the stream with an error.
fn opening(
    cipher: futures_util::stream::BoxStream<'static, Result<Bytes, BlobError>>,
    dec: StreamDecryptor,
) -> PlainStream {
    let state = (cipher, Some(dec));
    Box::pin(futures_util::stream::unfold(state, |(mut cipher, mut dec)| async move {
        loop {
            let d = dec.as_mut()?;
            match cipher.next().await {
                Some(Ok(bytes)) => match d.update(&bytes) {
                    Ok(out) if out.is_empty() => continue,
                    Ok(out) => return Some((Ok(Bytes::from(out)), (cipher, dec))),
                    Err(_) => return Some((Err(AttachmentError::Tampered), (cipher, None))),
                },
                Some(Err(e)) => return Some((Err(AttachmentError::Blob(e)), (cipher, None))),
                None => {
                    let d = dec.take()?;
                    return match d.finish() {
                        Ok(out) => Some((Ok(Bytes::from(out)), (cipher, None))),
                        Err(_) => Some((Err(AttachmentError::Tampered), (cipher, None))),
                    };
                }
            }
        }
    }))
}
