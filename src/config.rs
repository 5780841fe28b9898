//! Configuration from the environment, and the wiring of the AWS adapters.
//! The Lambda reads nothing else: no files, no flags.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};

use crate::adapters::dynamodb::{DynamoPublishes, DynamoUsers};
use crate::adapters::sqs::SqsStopQueue;
use crate::api::Api;
use crate::auth::{Authenticator, Sealer};
use crate::cancel::CancelPublish;

pub const ENV_BASE_PATH: &str = "UFORGE_BASE_PATH";
pub const ENV_USERS_TABLE: &str = "USERS_TABLE";
pub const ENV_PUBLISHES_TABLE: &str = "PUBLISHES_TABLE";
pub const ENV_STOP_QUEUE_URL: &str = "STOP_QUEUE_URL";
pub const ENV_API_KEY_KEK: &str = "UFORGE_API_KEY_KEK";
pub const ENV_TLS_ROOTS: &str = "UFORGE_TLS_ROOTS";
pub const DEFAULT_BASE_PATH: &str = "/api";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {0} is invalid: {1}")]
    Invalid(&'static str, String),
}

/// What the AWS-backed service needs to know.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub base_path: String,
    pub users_table: String,
    pub publishes_table: String,
    pub stop_queue_url: String,
    pub sealer: Option<Sealer>,
}

/// The API base path (`UFORGE_BASE_PATH`, default `/api`).
pub fn base_path_from_env() -> String {
    std::env::var(ENV_BASE_PATH).unwrap_or_else(|_| DEFAULT_BASE_PATH.to_owned())
}

/// The API-key KEK (`UFORGE_API_KEY_KEK`, base64 of 32 bytes), if set.
pub fn sealer_from_env() -> Result<Option<Sealer>, ConfigError> {
    match std::env::var(ENV_API_KEY_KEK) {
        Ok(v) if !v.trim().is_empty() => Sealer::from_base64(&v)
            .map(Some)
            .map_err(|e| ConfigError::Invalid(ENV_API_KEY_KEK, e.to_string())),
        _ => Ok(None),
    }
}

impl AwsSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        Ok(AwsSettings {
            base_path: base_path_from_env(),
            users_table: required(ENV_USERS_TABLE)?,
            publishes_table: required(ENV_PUBLISHES_TABLE)?,
            stop_queue_url: required(ENV_STOP_QUEUE_URL)?,
            sealer: sealer_from_env()?,
        })
    }
}

/// Per-call bounds: an attempt gets 2 s, a call (all its attempts) 4 s; the
/// whole request is bounded by `api::REQUEST_BUDGET` on top.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(4);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const MAX_ATTEMPTS: u32 = 3;
/// Jittered exponential backoff between attempts: short, because the whole
/// request has a 10 s budget and DynamoDB throttling clears in milliseconds.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Which root certificates the SDK's HTTPS client trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRoots {
    /// The platform's store. Loading it (a bundle of ~150 certificates, or
    /// a directory of them) is most of our cold-start cost.
    System,
    /// Only Amazon Trust Services' five roots, compiled in: every AWS
    /// endpoint in the `aws` and `aws-us-gov` partitions chains to them.
    /// Not for the China partition or custom HTTPS endpoints.
    Amazon,
}

/// The Amazon Trust Services roots (Amazon Root CA 1-4, Starfield Services
/// Root CA G2), as published by Amazon.
pub const AMAZON_TRUST_SERVICES_PEM: &str = include_str!("../certs/amazon-trust-services.pem");

impl TlsRoots {
    /// `UFORGE_TLS_ROOTS`: `system` (default) or `amazon`.
    pub fn from_env() -> Result<Self, ConfigError> {
        match std::env::var(ENV_TLS_ROOTS).as_deref() {
            Err(_) | Ok("") | Ok("system") => Ok(TlsRoots::System),
            Ok("amazon") => Ok(TlsRoots::Amazon),
            Ok(other) => Err(ConfigError::Invalid(
                ENV_TLS_ROOTS,
                format!("{other:?} (use system or amazon)"),
            )),
        }
    }
}

/// Loads the SDK configuration from the standard sources (region,
/// credentials, `AWS_ENDPOINT_URL` for an emulator) with our bounds.
pub async fn load_sdk_config(roots: TlsRoots) -> SdkConfig {
    sdk_config_loader(roots).load().await
}

/// The SDK's HTTPS client (hyper 1, rustls on ring) trusting `roots`.
/// Certificates are parsed once, when the first client validates its
/// configuration; every client of one `SdkConfig` shares the connector.
pub fn https_client(roots: TlsRoots) -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let trust = match roots {
        TlsRoots::System => TrustStore::default(),
        TlsRoots::Amazon => {
            TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES_PEM.as_bytes())
        }
    };
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .unwrap_or_default(),
        )
        .build_https()
}

/// The standard loader with our HTTPS client and retry and timeout bounds,
/// for callers (the tests) that add an endpoint or credentials of their own.
///
/// Lambda puts the region and the role's credentials in the environment.
/// The default chains would pick those first too, but merely building the
/// chains (an STS client for web identity, IMDS and profile providers, each
/// parsing the endpoint partition table) was over half of our init time.
/// So when they are there, they are used directly; elsewhere (an operator's
/// profile or SSO session) the full chains still apply.
pub fn sdk_config_loader(roots: TlsRoots) -> ConfigLoader {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).http_client(https_client(roots));
    if let Some(region) =
        non_empty_env("AWS_REGION").or_else(|| non_empty_env("AWS_DEFAULT_REGION"))
    {
        loader = loader.region(aws_config::Region::new(region));
    }
    if non_empty_env("AWS_ACCESS_KEY_ID").is_some()
        && non_empty_env("AWS_SECRET_ACCESS_KEY").is_some()
    {
        loader = loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        );
    }
    loader
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(INITIAL_BACKOFF)
                .with_max_backoff(MAX_BACKOFF),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub type AwsApi = Api<DynamoUsers, DynamoPublishes, SqsStopQueue>;

/// The endpoint on DynamoDB and SQS.
pub fn aws_api(sdk: &SdkConfig, settings: AwsSettings) -> AwsApi {
    aws_api_from_clients(
        aws_sdk_dynamodb::Client::new(sdk),
        aws_sdk_sqs::Client::new(sdk),
        settings,
    )
}

/// The same with clients built elsewhere (e.g. each on its own endpoint).
pub fn aws_api_from_clients(
    dynamo: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    settings: AwsSettings,
) -> AwsApi {
    let cancel = CancelPublish {
        users: DynamoUsers::new(dynamo.clone(), settings.users_table),
        publishes: DynamoPublishes::new(dynamo, settings.publishes_table),
        queue: SqsStopQueue::new(sqs, settings.stop_queue_url),
        auth: Authenticator::with_cache(settings.sealer),
    };
    Api::new(cancel, &settings.base_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn amazon_roots_are_five_der_certificates() {
        let mut count = 0;
        for block in AMAZON_TRUST_SERVICES_PEM
            .split("-----BEGIN CERTIFICATE-----")
            .skip(1)
        {
            let body: String = block
                .split("-----END CERTIFICATE-----")
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap();
            assert_eq!(der[0], 0x30, "a DER SEQUENCE");
            count += 1;
        }
        assert_eq!(count, 5);
    }
}
