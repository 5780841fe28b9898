//! Configuration from the environment, and the wiring of the AWS adapters.
//! The Lambda reads nothing else: no files, no flags.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};

use std::sync::Arc;

use crate::adapters::dynamodb::{DynamoPublishes, DynamoUsers};
use crate::adapters::secrets_manager::SecretsManagerKeks;
use crate::adapters::sqs::SqsStopQueue;
use crate::api::Api;
use crate::auth::{Authenticator, FixedKeks, KekSource, Sealer};
use crate::cancel::CancelPublish;

pub const ENV_BASE_PATH: &str = "UFORGE_BASE_PATH";
pub const ENV_USERS_TABLE: &str = "USERS_TABLE";
pub const ENV_PUBLISHES_TABLE: &str = "PUBLISHES_TABLE";
pub const ENV_STOP_QUEUE_URL: &str = "STOP_QUEUE_URL";
pub const ENV_API_KEY_KEK: &str = "UFORGE_API_KEY_KEK";
pub const ENV_API_KEY_KEK_SECRET: &str = "UFORGE_API_KEY_KEK_SECRET";
pub const ENV_TLS_ROOTS: &str = "UFORGE_TLS_ROOTS";
pub const DEFAULT_BASE_PATH: &str = "/api";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// A resource of the stack the AWS backend needs.
    #[error(
        "environment variable {0} is not set: in AWS the stack sets it; for a local \
         invocation without AWS, set UFORGE_BACKEND=memory"
    )]
    MissingResource(&'static str),
    /// A variable Lambda always sets.
    #[error(
        "environment variable {0} is not set: this is a Lambda function; run it in Lambda or \
         under an emulator (cargo lambda watch, sam local), or run uforge-local for HTTP"
    )]
    NotInLambda(&'static str),
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
    pub keks: KekSetting,
}

/// Where the API-key KEKs come from.
#[derive(Debug, Clone, Default)]
pub enum KekSetting {
    /// API-key authentication is off (HTTP Basic only).
    #[default]
    Off,
    /// `UFORGE_API_KEY_KEK`: the key itself (local work, the emulator).
    Inline(Arc<Sealer>),
    /// `UFORGE_API_KEY_KEK_SECRET`: a Secrets Manager secret's name or ARN,
    /// read at run time (production: the key never appears in the
    /// function's configuration).
    Secret(String),
}

impl KekSetting {
    pub fn from_env() -> Result<Self, ConfigError> {
        let secret = std::env::var(ENV_API_KEY_KEK_SECRET)
            .ok()
            .filter(|v| !v.trim().is_empty());
        match (sealer_from_env()?, secret) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid(
                ENV_API_KEY_KEK_SECRET,
                format!("set either it or {ENV_API_KEY_KEK}, not both"),
            )),
            (Some(sealer), None) => Ok(KekSetting::Inline(Arc::new(sealer))),
            (None, Some(id)) => Ok(KekSetting::Secret(id.trim().to_owned())),
            (None, None) => Ok(KekSetting::Off),
        }
    }

    /// The KEKs' source; a secret is read through `sdk` when first needed.
    pub fn source(&self, sdk: &SdkConfig) -> Option<Arc<dyn KekSource>> {
        match self {
            KekSetting::Off => None,
            KekSetting::Inline(sealer) => Some(Arc::new(FixedKeks(sealer.clone()))),
            KekSetting::Secret(id) => Some(SecretsManagerKeks::shared(sdk, id)),
        }
    }
}

/// A stack resource's name or URL from the environment (empty = unset).
pub fn resource(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or(ConfigError::MissingResource(name))
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
        Ok(AwsSettings {
            base_path: base_path_from_env(),
            users_table: resource(ENV_USERS_TABLE)?,
            publishes_table: resource(ENV_PUBLISHES_TABLE)?,
            stop_queue_url: resource(ENV_STOP_QUEUE_URL)?,
            keks: KekSetting::from_env()?,
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

/// Loads the SDK configuration from aws-config's standard sources (region,
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

/// The SDK configuration of the Lambda binaries, read from the variables
/// Lambda always sets: `AWS_REGION` and the execution role's
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`; also
/// `AWS_ENDPOINT_URL` (an emulator), `AWS_USE_FIPS_ENDPOINT` and
/// `AWS_USE_DUALSTACK_ENDPOINT`. Nothing else is consulted.
///
/// Why not aws-config's loader: its provider chains (profile files, SSO,
/// web identity with its own STS client, ECS, IMDS) cannot find anything in
/// Lambda that the environment does not already hold, yet building them
/// was half of our init, and linking them about 0.3 MB of the binary.
/// `uforge-local` and `uforge-admin` keep the loader (`load_sdk_config`).
pub fn lambda_sdk_config(roots: TlsRoots) -> Result<SdkConfig, ConfigError> {
    lambda_sdk_config_from(roots, |name| std::env::var(name).ok())
}

fn lambda_sdk_config_from(
    roots: TlsRoots,
    var: impl Fn(&'static str) -> Option<String>,
) -> Result<SdkConfig, ConfigError> {
    let set = |name: &'static str| var(name).filter(|v| !v.trim().is_empty());
    let required = |name: &'static str| set(name).ok_or(ConfigError::Missing(name));
    let flag = |name: &'static str| match set(name) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(ConfigError::Invalid(
            name,
            format!("{v:?} (use true or false)"),
        )),
    };
    let credentials = Credentials::new(
        required("AWS_ACCESS_KEY_ID")?,
        required("AWS_SECRET_ACCESS_KEY")?,
        set("AWS_SESSION_TOKEN"),
        None,
        "LambdaEnvironment",
    );
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(required("AWS_REGION")?))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(https_client(roots))
        .retry_config(retry_config())
        .timeout_config(timeout_config());
    builder.set_endpoint_url(set("AWS_ENDPOINT_URL"));
    builder.set_use_fips(flag("AWS_USE_FIPS_ENDPOINT")?);
    builder.set_use_dual_stack(flag("AWS_USE_DUALSTACK_ENDPOINT")?);
    Ok(builder.build())
}

/// aws-config's standard loader (every region and credential source the
/// SDK knows) with our HTTPS client and bounds: for the local server, the
/// operator CLI and the tests, which add an endpoint or credentials.
pub fn sdk_config_loader(roots: TlsRoots) -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client(roots))
        .retry_config(retry_config())
        .timeout_config(timeout_config())
}

fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF)
}

fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

pub type AwsApi = Api<DynamoUsers, DynamoPublishes, SqsStopQueue>;

/// The endpoint on DynamoDB and SQS.
pub fn aws_api(sdk: &SdkConfig, settings: AwsSettings) -> AwsApi {
    let keks = settings.keks.source(sdk);
    aws_api_from_clients(
        aws_sdk_dynamodb::Client::new(sdk),
        aws_sdk_sqs::Client::new(sdk),
        keks,
        settings,
    )
}

/// The same with clients built elsewhere (e.g. each on its own endpoint).
pub fn aws_api_from_clients(
    dynamo: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    keks: Option<Arc<dyn KekSource>>,
    settings: AwsSettings,
) -> AwsApi {
    let cancel = CancelPublish {
        users: DynamoUsers::new(dynamo.clone(), settings.users_table),
        publishes: DynamoPublishes::new(dynamo, settings.publishes_table),
        queue: SqsStopQueue::new(sqs, settings.stop_queue_url),
        auth: Authenticator::with_cache(keks),
    };
    Api::new(cancel, &settings.base_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn lambda_env(
        extra: &[(&'static str, &'static str)],
    ) -> impl Fn(&'static str) -> Option<String> {
        let mut vars = vec![
            ("AWS_REGION", "eu-west-3"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ];
        vars.extend_from_slice(extra);
        move |name| {
            vars.iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[tokio::test]
    async fn lambda_sdk_config_reads_lambda_s_variables() {
        use aws_sdk_dynamodb::config::ProvideCredentials as _;
        let sdk = lambda_sdk_config_from(
            TlsRoots::Amazon,
            lambda_env(&[
                ("AWS_SESSION_TOKEN", "token"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
                ("AWS_USE_FIPS_ENDPOINT", "TRUE"),
            ]),
        )
        .unwrap();
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-3"));
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:5000"));
        assert_eq!(sdk.use_fips(), Some(true));
        assert_eq!(sdk.use_dual_stack(), None);
        assert_eq!(
            sdk.retry_config().map(|r| r.max_attempts()),
            Some(MAX_ATTEMPTS)
        );
        let creds = sdk
            .credentials_provider()
            .unwrap()
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(creds.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(creds.secret_access_key(), "secret");
        assert_eq!(creds.session_token(), Some("token"));
    }

    #[test]
    fn lambda_sdk_config_names_what_is_missing_or_invalid() {
        for (name, vars) in [
            ("AWS_REGION", vec![("AWS_REGION", " ")]),
            ("AWS_ACCESS_KEY_ID", vec![("AWS_ACCESS_KEY_ID", "")]),
            ("AWS_SECRET_ACCESS_KEY", vec![("AWS_SECRET_ACCESS_KEY", "")]),
        ] {
            let err = lambda_sdk_config_from(TlsRoots::Amazon, lambda_env(&vars)).unwrap_err();
            assert!(matches!(err, ConfigError::Missing(n) if n == name), "{err}");
        }
        let err = lambda_sdk_config_from(
            TlsRoots::Amazon,
            lambda_env(&[("AWS_USE_DUALSTACK_ENDPOINT", "yes")]),
        )
        .unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid("AWS_USE_DUALSTACK_ENDPOINT", _)),
            "{err}"
        );
    }

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
