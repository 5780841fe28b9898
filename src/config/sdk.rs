//! The AWS SDK's configuration: its HTTPS client and trust store, where
//! region and credentials come from, and the bounds on every call.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};

use super::{ConfigError, Env, ENV_TLS_ROOTS};

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
pub const AMAZON_TRUST_SERVICES_PEM: &str = include_str!("../../certs/amazon-trust-services.pem");

impl TlsRoots {
    /// `UFORGE_TLS_ROOTS`: `system` (default) or `amazon`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        match env.get(ENV_TLS_ROOTS).as_deref() {
            None | Some("system") => Ok(TlsRoots::System),
            Some("amazon") => Ok(TlsRoots::Amazon),
            Some(other) => Err(ConfigError::Invalid(
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
pub fn lambda_sdk_config(roots: TlsRoots, env: &Env) -> Result<SdkConfig, ConfigError> {
    let credentials = Credentials::new(
        env.required("AWS_ACCESS_KEY_ID")?,
        env.required("AWS_SECRET_ACCESS_KEY")?,
        env.get("AWS_SESSION_TOKEN"),
        None,
        "LambdaEnvironment",
    );
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(env.required("AWS_REGION")?))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(https_client(roots))
        .retry_config(retry_config())
        .timeout_config(timeout_config())
        // Every attempt is bounded by ATTEMPT_TIMEOUT, body included (no
        // operation of ours streams), which a stalled stream reaches first;
        // the SDK's throughput monitor cost ~9 k instructions a call.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
    builder.set_endpoint_url(env.get("AWS_ENDPOINT_URL"));
    builder.set_use_fips(env.flag("AWS_USE_FIPS_ENDPOINT")?);
    builder.set_use_dual_stack(env.flag("AWS_USE_DUALSTACK_ENDPOINT")?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn lambda_env(extra: &[(&'static str, &'static str)]) -> Env {
        let mut vars = vec![
            ("AWS_REGION", "eu-west-3"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ];
        vars.extend_from_slice(extra);
        Env::from_pairs(&vars)
    }

    #[tokio::test]
    async fn lambda_sdk_config_reads_lambda_s_variables() {
        use aws_sdk_dynamodb::config::ProvideCredentials as _;
        let sdk = lambda_sdk_config(
            TlsRoots::Amazon,
            &lambda_env(&[
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
            let err = lambda_sdk_config(TlsRoots::Amazon, &lambda_env(&vars)).unwrap_err();
            assert!(matches!(err, ConfigError::Missing(n) if n == name), "{err}");
        }
        let err = lambda_sdk_config(
            TlsRoots::Amazon,
            &lambda_env(&[("AWS_USE_DUALSTACK_ENDPOINT", "yes")]),
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
