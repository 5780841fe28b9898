//! The API-key KEKs in AWS Secrets Manager: the secret's `AWSCURRENT`
//! version seals, its `AWSPREVIOUS` version (present after a rotation) still
//! opens. Each version's `SecretString` is a base64 32-byte key.
//!
//! Read at run time, never through the function's configuration, where
//! anyone allowed `lambda:GetFunctionConfiguration` could read it; and only
//! when an API-key request first needs it: the client itself is built then,
//! so a cold start that serves HTTP Basic pays nothing for it.

use std::sync::{Arc, OnceLock};

use aws_config::SdkConfig;
use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::Client;

use super::sdk_error;
use crate::auth::keks::{KekCache, KekFuture, KekSource};
use crate::auth::sealed::{decode_kek, KeyId};
use crate::auth::Sealer;
use crate::ports::BackendError;

const CURRENT: &str = "AWSCURRENT";
const PREVIOUS: &str = "AWSPREVIOUS";

#[derive(Debug)]
pub struct SecretsManagerKeks {
    sdk: SdkConfig,
    client: OnceLock<Client>,
    /// The secret's name or ARN.
    secret_id: String,
    cache: KekCache,
}

impl SecretsManagerKeks {
    pub fn new(sdk: &SdkConfig, secret_id: impl Into<String>) -> Self {
        SecretsManagerKeks {
            sdk: sdk.clone(),
            client: OnceLock::new(),
            secret_id: secret_id.into(),
            cache: KekCache::default(),
        }
    }

    pub fn shared(sdk: &SdkConfig, secret_id: impl Into<String>) -> Arc<dyn KekSource> {
        Arc::new(Self::new(sdk, secret_id))
    }

    fn client(&self) -> &Client {
        self.client.get_or_init(|| Client::new(&self.sdk))
    }

    /// One version's key, `None` when the secret has no such version.
    async fn version(&self, stage: &str) -> Result<Option<[u8; 32]>, BackendError> {
        let answer = self
            .client()
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage(stage)
            .send()
            .await;
        let value = match answer {
            Ok(v) => v,
            // No AWSPREVIOUS before the first rotation.
            Err(SdkError::ServiceError(e))
                if stage == PREVIOUS && e.err().is_resource_not_found_exception() =>
            {
                return Ok(None)
            }
            Err(e) => return Err(sdk_error("reading the API-key KEK from Secrets Manager", e)),
        };
        let text = value.secret_string().ok_or(BackendError::msg(
            "the API-key KEK secret has no SecretString",
        ))?;
        decode_kek(text)
            .map(Some)
            .map_err(|e| BackendError::new("the API-key KEK secret is not usable", e))
    }

    async fn read(&self) -> Result<Sealer, BackendError> {
        let (current, previous) = tokio::join!(self.version(CURRENT), self.version(PREVIOUS));
        let current = current?.ok_or(BackendError::msg("the API-key KEK secret has no value"))?;
        let sealer = Sealer::new(&current);
        // A broken previous version must not take the current one down.
        Ok(match previous {
            Ok(Some(previous)) => sealer.with_previous(&previous),
            Ok(None) => sealer,
            Err(e) => {
                tracing::warn!(error = %crate::ErrorChain(&e), "previous API-key KEK unreadable");
                sealer
            }
        })
    }
}

impl KekSource for SecretsManagerKeks {
    fn sealer(&self, wanted: Option<KeyId>) -> KekFuture<'_> {
        Box::pin(self.cache.get(wanted, self.read()))
    }
}
