//! The AWS KMS backend (feature `aws`): the root key is a KMS symmetric key
//! that never leaves AWS; wrapping calls `Encrypt` and `Decrypt` with the
//! encryption context as KMS EncryptionContext. Credentials come from the
//! SDK's default provider chain (environment, web identity, instance role),
//! never from Strongroom's configuration.

use std::collections::HashMap;

use aws_config::BehaviorVersion;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::SdkError;
use aws_sdk_kms::primitives::Blob;
use crypto::{Key256, KeyContext};
use zeroize::Zeroizing;

use crate::{KmsError, KmsInfo, WrappedKey};

const BACKEND: &str = "aws-kms";

/// Which KMS key, and an optional endpoint (a VPC endpoint, or a test
/// server).
#[derive(Clone, Debug)]
pub struct AwsKmsConfig {
    /// Key id, ARN or alias.
    pub key_id: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

#[derive(Debug)]
pub struct AwsKms {
    config: AwsKmsConfig,
    client: Client,
}

fn map_err<E: std::error::Error + 'static, R>(e: SdkError<E, R>) -> KmsError
where
    R: std::fmt::Debug,
{
    match &e {
        SdkError::ServiceError(se) => {
            let text = se.err().to_string();
            if text.contains("InvalidCiphertext") || text.contains("IncorrectKey") {
                KmsError::Refused { backend: BACKEND }
            } else if text.contains("NotFound") || text.contains("AccessDenied") || text.contains("Disabled") {
                KmsError::Config { setting: "kms.aws.key_id", reason: text }
            } else {
                KmsError::Unavailable { backend: BACKEND, reason: text }
            }
        }
        other => KmsError::Unavailable { backend: BACKEND, reason: other.to_string() },
    }
}

fn context_map(context: &KeyContext) -> HashMap<String, String> {
    context.as_map().into_iter().collect()
}

impl AwsKms {
    /// Loads credentials from the default chain and checks the key.
    pub async fn open(config: AwsKmsConfig) -> Result<Self, KmsError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint.clone());
        }
        let client = Client::new(&loader.load().await);
        let kms = Self { config, client };
        kms.health().await?;
        Ok(kms)
    }

    pub(crate) async fn wrap(&self, key: &Key256, context: &KeyContext) -> Result<WrappedKey, KmsError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.config.key_id)
            .plaintext(Blob::new(key.expose_for_cipher().to_vec()))
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(map_err)?;
        let blob = out
            .ciphertext_blob
            .ok_or_else(|| KmsError::Unavailable { backend: BACKEND, reason: "no ciphertext in answer".into() })?;
        Ok(WrappedKey(blob.into_inner()))
    }

    pub(crate) async fn unwrap(&self, wrapped: &WrappedKey, context: &KeyContext) -> Result<Key256, KmsError> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.config.key_id)
            .ciphertext_blob(Blob::new(wrapped.0.clone()))
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(map_err)?;
        let mut pt = Zeroizing::new(out.plaintext.map(Blob::into_inner).ok_or(KmsError::Refused { backend: BACKEND })?);
        Ok(Key256::from_slice(&mut pt)?)
    }

    pub(crate) async fn health(&self) -> Result<(), KmsError> {
        self.client.describe_key().key_id(&self.config.key_id).send().await.map(drop).map_err(map_err)
    }

    pub(crate) fn info(&self) -> KmsInfo {
        KmsInfo { backend: BACKEND, key_id: self.config.key_id.clone() }
    }

    /// AWS keeps the versions of a KMS key itself (same key id, old
    /// ciphertexts keep decrypting); this asks for an on-demand rotation.
    /// AWS exposes no version number, so the answer is 0.
    pub(crate) async fn rotate_root(&self) -> Result<u32, KmsError> {
        self.client.rotate_key_on_demand().key_id(&self.config.key_id).send().await.map_err(map_err)?;
        Ok(0)
    }
}
