//! Settings: the environment, read one way (`Env`), into one settings type
//! per binary. The Lambda binaries read nothing else: no files, no flags.
//! How the SDK is configured from them is `sdk`; how the service is built
//! from them is `crate::startup`.

pub mod sdk;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Sealer;
use crate::domain::PendingShards;
pub use sdk::TlsRoots;

pub const ENV_BACKEND: &str = "UFORGE_BACKEND";
pub const ENV_SEED: &str = "UFORGE_SEED";
pub const ENV_BASE_PATH: &str = "UFORGE_BASE_PATH";
pub const ENV_USERS_TABLE: &str = "USERS_TABLE";
pub const ENV_PUBLISHES_TABLE: &str = "PUBLISHES_TABLE";
pub const ENV_STOP_QUEUE_URL: &str = "STOP_QUEUE_URL";
pub const ENV_API_KEY_KEK: &str = "UFORGE_API_KEY_KEK";
pub const ENV_API_KEY_KEK_SECRET: &str = "UFORGE_API_KEY_KEK_SECRET";
pub const ENV_TLS_ROOTS: &str = "UFORGE_TLS_ROOTS";
pub const ENV_RECONCILE_GRACE: &str = "RECONCILE_GRACE_SECONDS";
pub const ENV_RECONCILE_BATCH: &str = "RECONCILE_BATCH";
pub const ENV_RECONCILE_IN_FLIGHT: &str = "RECONCILE_IN_FLIGHT";
pub const ENV_PENDING_SHARDS: &str = "PENDING_SHARDS";
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

type Lookup = Box<dyn Fn(&'static str) -> Option<String> + Send + Sync>;

/// The one way configuration is read: a variable that is unset, empty or
/// blank is absent; values are trimmed.
pub struct Env {
    lookup: Lookup,
}

impl Env {
    /// This process's environment.
    pub fn process() -> Env {
        Env::from_lookup(|name| std::env::var(name).ok())
    }

    /// Any other source of variables (tests).
    pub fn from_lookup(
        lookup: impl Fn(&'static str) -> Option<String> + Send + Sync + 'static,
    ) -> Env {
        Env {
            lookup: Box::new(lookup),
        }
    }

    /// Fixed pairs; the last one of a name wins (tests).
    pub fn from_pairs(pairs: &[(&'static str, &str)]) -> Env {
        let pairs: Vec<(&'static str, String)> =
            pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        Env::from_lookup(move |name| {
            pairs
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        })
    }

    pub fn get(&self, name: &'static str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing(name))
    }

    /// A stack resource's name or URL (the AWS backend's tables and queue).
    pub fn resource(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::MissingResource(name))
    }

    pub fn number(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| ConfigError::Invalid(name, format!("{v:?} (a whole number)"))),
        }
    }

    pub fn flag(&self, name: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ConfigError::Invalid(
                name,
                format!("{v:?} (use true or false)"),
            )),
        }
    }

    /// `PENDING_SHARDS`: how the pending-stop index's marks are spread
    /// (every writer and the reconciler must agree; the template sets it
    /// for all), default 16.
    pub fn pending_shards(&self) -> Result<PendingShards, ConfigError> {
        let n = self.number(ENV_PENDING_SHARDS, u64::from(PendingShards::DEFAULT.get()))?;
        PendingShards::new(n).map_err(|e| ConfigError::Invalid(ENV_PENDING_SHARDS, e.to_string()))
    }

    /// `UFORGE_BASE_PATH`, default `/api`.
    pub fn base_path(&self) -> String {
        self.get(ENV_BASE_PATH)
            .unwrap_or_else(|| DEFAULT_BASE_PATH.to_owned())
    }

    /// `UFORGE_API_KEY_KEK`: the KEK itself, if set.
    pub fn inline_kek(&self) -> Result<Option<Sealer>, ConfigError> {
        self.get(ENV_API_KEY_KEK)
            .map(|v| {
                Sealer::from_base64(&v)
                    .map_err(|e| ConfigError::Invalid(ENV_API_KEY_KEK, e.to_string()))
            })
            .transpose()
    }
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
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        match (env.inline_kek()?, env.get(ENV_API_KEY_KEK_SECRET)) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid(
                ENV_API_KEY_KEK_SECRET,
                format!("set either it or {ENV_API_KEY_KEK}, not both"),
            )),
            (Some(sealer), None) => Ok(KekSetting::Inline(Arc::new(sealer))),
            (None, Some(id)) => Ok(KekSetting::Secret(id)),
            (None, None) => Ok(KekSetting::Off),
        }
    }
}

/// What the service needs on DynamoDB and SQS.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub users_table: String,
    pub publishes_table: String,
    pub stop_queue_url: String,
    pub keks: KekSetting,
    pub pending_shards: PendingShards,
}

impl AwsSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(AwsSettings {
            users_table: env.resource(ENV_USERS_TABLE)?,
            publishes_table: env.resource(ENV_PUBLISHES_TABLE)?,
            stop_queue_url: env.resource(ENV_STOP_QUEUE_URL)?,
            keks: KekSetting::from_env(env)?,
            pending_shards: env.pending_shards()?,
        })
    }
}

/// Which stores a Lambda binary runs on: `UFORGE_BACKEND`.
///
/// In AWS, DynamoDB and SQS. For a local invocation (`cargo lambda watch`,
/// `sam local`) the in-memory stores seeded from the bundled seed, when
/// asked explicitly: `UFORGE_BACKEND=memory` (optionally `UFORGE_SEED`).
/// Never by accident, and never in the Lambda service, whatever its
/// configuration says: see `Host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Aws,
    /// `None`: the bundled seed.
    Memory {
        seed: Option<PathBuf>,
    },
}

/// Where a Lambda binary runs, told from variables the function's
/// configuration cannot set (docs/security.md, "The memory backend
/// never serves in AWS"; the exact variable sets of each are in
/// tests/fixtures/lambda-env/ and tested there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// The Lambda service: it sets reserved variables that no local tool
    /// but SAM's emulator sets, and that a configuration can neither set
    /// nor remove.
    LambdaService,
    /// `sam local`: the service's variables, emulated, plus
    /// `AWS_SAM_LOCAL=true` and a log stream named `$LATEST`, which the
    /// service never names one (its streams are `YYYY/MM/DD/[version]id`,
    /// and the variable is reserved).
    SamLocal,
    /// None of the service's marks: `cargo lambda`, the tests' Runtime
    /// API, a shell.
    Elsewhere,
}

/// Reserved variables the Lambda service sets for every runtime
/// (`AWS_EXECUTION_ENV` for managed runtimes only, not `provided.al2023`).
const SERVICE_MARKS: [&str; 5] = [
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "_HANDLER",
    "AWS_EXECUTION_ENV",
];

impl Host {
    pub fn of(env: &Env) -> Host {
        if !SERVICE_MARKS.iter().any(|name| env.get(name).is_some()) {
            return Host::Elsewhere;
        }
        let sam = env.get("AWS_SAM_LOCAL").as_deref() == Some("true")
            && env.get("AWS_LAMBDA_LOG_STREAM_NAME").as_deref() == Some("$LATEST");
        if sam {
            Host::SamLocal
        } else {
            Host::LambdaService
        }
    }
}

impl Backend {
    pub fn from_env(env: &Env) -> Result<Backend, ConfigError> {
        match env.get(ENV_BACKEND).as_deref() {
            None | Some("aws") => Ok(Backend::Aws),
            Some("memory") => {
                if Host::of(env) == Host::LambdaService {
                    return Err(ConfigError::Invalid(
                        ENV_BACKEND,
                        "memory is for local invocation only (cargo lambda, sam local) and is \
                         refused in the Lambda service; remove it and give the function its \
                         tables and queue (the SAM template does)"
                            .into(),
                    ));
                }
                Ok(Backend::Memory {
                    seed: env.get(ENV_SEED).map(PathBuf::from),
                })
            }
            Some(other) => Err(ConfigError::Invalid(
                ENV_BACKEND,
                format!("{other:?} (use aws, the default, or memory for local invocation)"),
            )),
        }
    }
}

/// Settings a Lambda function reads from the environment, whatever its
/// stores (`startup::lambda::LambdaFunction::Settings`), and what it needs
/// on DynamoDB and SQS (`::Resources`).
pub trait FromEnv: Sized {
    fn from_env(env: &Env) -> Result<Self, ConfigError>;
}

impl FromEnv for AwsSettings {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        AwsSettings::from_env(env)
    }
}

/// Nothing to read.
impl FromEnv for () {
    fn from_env(_: &Env) -> Result<Self, ConfigError> {
        Ok(())
    }
}

/// The cancel function's own settings (`publish-cancel`).
#[derive(Debug, Clone)]
pub struct CancelSettings {
    /// `UFORGE_BASE_PATH`, default `/api`.
    pub base_path: String,
}

impl FromEnv for CancelSettings {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(CancelSettings {
            base_path: env.base_path(),
        })
    }
}

/// The publishes table and the stop queue: all that cancelling a key on its
/// own authority needs (the reconciler, the automation function).
#[derive(Debug, Clone)]
pub struct PublishesAndQueue {
    pub publishes_table: String,
    pub stop_queue_url: String,
    pub pending_shards: PendingShards,
}

impl FromEnv for PublishesAndQueue {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(PublishesAndQueue {
            publishes_table: env.resource(ENV_PUBLISHES_TABLE)?,
            stop_queue_url: env.resource(ENV_STOP_QUEUE_URL)?,
            pending_shards: env.pending_shards()?,
        })
    }
}

/// The reconciler's own settings (`reconciler`).
#[derive(Debug, Clone)]
pub struct ReconcilerSettings {
    /// A stop may stay pending this long before it is re-sent: longer
    /// than a cancel's own bounded send, so in-flight requests are left
    /// alone (`RECONCILE_GRACE_SECONDS`, 60).
    pub grace: Duration,
    /// Records read per query of one shard (`RECONCILE_BATCH`, 100).
    pub batch: usize,
    /// Records claimed, sent or settled at once over every shard
    /// (`RECONCILE_IN_FLIGHT`, 64).
    pub in_flight: usize,
}

impl ReconcilerSettings {
    /// How each run works.
    pub fn plan(&self) -> crate::reconcile::Plan {
        crate::reconcile::Plan {
            grace: self.grace,
            page: self.batch,
            in_flight: self.in_flight,
        }
    }
}

impl FromEnv for ReconcilerSettings {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let grace = Duration::from_secs(env.number(ENV_RECONCILE_GRACE, 60)?);
        let count = |name, default, max: u64| {
            let n = env.number(name, default)?;
            if (1..=max).contains(&n) {
                Ok(n as usize)
            } else {
                Err(ConfigError::Invalid(name, format!("{n} (1 to {max})")))
            }
        };
        // A DynamoDB query returns at most 1 MB, whatever the limit.
        let batch = count(ENV_RECONCILE_BATCH, 100, 1_000)?;
        let in_flight = count(
            ENV_RECONCILE_IN_FLIGHT,
            crate::reconcile::Plan::DEFAULT_IN_FLIGHT as u64,
            4_096,
        )?;
        Ok(ReconcilerSettings {
            grace,
            batch,
            in_flight,
        })
    }
}

/// `uforge-admin setup`: the tables and queue to create on an emulator or
/// a scratch account, named by the usual variables or by default.
#[derive(Debug, Clone)]
pub struct SetupSettings {
    pub users_table: String,
    pub publishes_table: String,
    pub tls_roots: TlsRoots,
}

impl SetupSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(SetupSettings {
            users_table: env
                .get(ENV_USERS_TABLE)
                .unwrap_or_else(|| "uforge-users".into()),
            publishes_table: env
                .get(ENV_PUBLISHES_TABLE)
                .unwrap_or_else(|| "uforge-publishes".into()),
            tls_roots: TlsRoots::from_env(env)?,
        })
    }
}

/// The operator CLI on DynamoDB (`uforge-admin` without `--seed`).
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub users_table: String,
    pub publishes_table: String,
    /// Where `publish put --force` sends a pending stop before replacing a
    /// cancelled record (`STOP_QUEUE_URL`, only needed then).
    pub stop_queue_url: Option<String>,
    pub keks: KekSetting,
    pub tls_roots: TlsRoots,
    pub pending_shards: PendingShards,
}

impl AdminSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(AdminSettings {
            users_table: env.required(ENV_USERS_TABLE)?,
            publishes_table: env.required(ENV_PUBLISHES_TABLE)?,
            stop_queue_url: env.get(ENV_STOP_QUEUE_URL),
            keks: KekSetting::from_env(env)?,
            tls_roots: TlsRoots::from_env(env)?,
            pending_shards: env.pending_shards()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_is_unset_and_values_are_trimmed() {
        let env = Env::from_pairs(&[("A", " x "), ("B", "  "), ("C", "")]);
        assert_eq!(env.get("A").as_deref(), Some("x"));
        assert_eq!(env.get("B"), None);
        assert_eq!(env.get("C"), None);
        assert!(matches!(env.required("B"), Err(ConfigError::Missing("B"))));
        assert!(matches!(
            env.resource("B"),
            Err(ConfigError::MissingResource("B"))
        ));
        let n = Env::from_pairs(&[("N", "12"), ("M", "x")]);
        assert_eq!(n.number("N", 1).unwrap(), 12);
        assert_eq!(n.number("Z", 1).unwrap(), 1);
        assert!(n.number("M", 1).is_err());
    }

    #[test]
    fn the_memory_backend_is_explicit_and_never_in_lambda() {
        let backend = |pairs: &[(&'static str, &str)]| Backend::from_env(&Env::from_pairs(pairs));
        assert_eq!(backend(&[]).unwrap(), Backend::Aws);
        assert_eq!(backend(&[(ENV_BACKEND, "aws")]).unwrap(), Backend::Aws);
        assert_eq!(
            backend(&[(ENV_BACKEND, "memory"), (ENV_SEED, "s.json")]).unwrap(),
            Backend::Memory {
                seed: Some("s.json".into())
            }
        );
        // Any one of the service's marks is enough to refuse it; saying
        // one is SAM (AWS_SAM_LOCAL, which a configuration can set) is not.
        for mark in SERVICE_MARKS {
            for extra in [&[][..], &[("AWS_SAM_LOCAL", "true")][..]] {
                let mut pairs = vec![(ENV_BACKEND, "memory"), (mark, "x")];
                pairs.extend_from_slice(extra);
                pairs.push((
                    "AWS_LAMBDA_LOG_STREAM_NAME",
                    "2026/12/06/[$LATEST]0123456789abcdef0123456789abcdef",
                ));
                assert!(
                    matches!(backend(&pairs), Err(ConfigError::Invalid(ENV_BACKEND, _))),
                    "{pairs:?}"
                );
            }
        }
        // SAM's emulator: its own marks, which the service cannot have.
        let sam = backend(&[
            (ENV_BACKEND, "memory"),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
            ("AWS_SAM_LOCAL", "true"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "$LATEST"),
        ]);
        assert!(matches!(sam, Ok(Backend::Memory { .. })));
        assert!(backend(&[(ENV_BACKEND, "mem")])
            .unwrap_err()
            .to_string()
            .contains("memory"));
    }

    #[test]
    fn each_binary_s_settings_name_what_is_missing() {
        let err = <AwsSettings as FromEnv>::from_env(&Env::from_pairs(&[])).unwrap_err();
        assert!(
            matches!(err, ConfigError::MissingResource(ENV_USERS_TABLE)),
            "{err}"
        );
        assert!(err.to_string().contains("UFORGE_BACKEND=memory"));
        let cancel = CancelSettings::from_env(&Env::from_pairs(&[])).unwrap();
        assert_eq!(cancel.base_path, "/api");
        let err = PublishesAndQueue::from_env(&Env::from_pairs(&[])).unwrap_err();
        assert!(
            matches!(err, ConfigError::MissingResource(ENV_PUBLISHES_TABLE)),
            "{err}"
        );
        let r =
            ReconcilerSettings::from_env(&Env::from_pairs(&[(ENV_RECONCILE_GRACE, "5")])).unwrap();
        assert_eq!(r.grace, Duration::from_secs(5));
        assert_eq!(r.batch, 100);
        assert!(
            ReconcilerSettings::from_env(&Env::from_pairs(&[(ENV_RECONCILE_BATCH, "x")])).is_err()
        );
        let err = AdminSettings::from_env(&Env::from_pairs(&[])).unwrap_err();
        assert!(
            matches!(err, ConfigError::Missing(ENV_USERS_TABLE)),
            "{err}"
        );
    }

    #[test]
    fn one_kek_setting_at_a_time() {
        use base64::Engine as _;
        let kek = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        let both = Env::from_pairs(&[(ENV_API_KEY_KEK, &kek), (ENV_API_KEY_KEK_SECRET, "s")]);
        assert!(KekSetting::from_env(&both).is_err());
        let secret = Env::from_pairs(&[(ENV_API_KEY_KEK_SECRET, " uforge/kek ")]);
        assert!(
            matches!(KekSetting::from_env(&secret).unwrap(), KekSetting::Secret(s) if s == "uforge/kek")
        );
        let bad = Env::from_pairs(&[(ENV_API_KEY_KEK, "short")]);
        assert!(KekSetting::from_env(&bad).is_err());
    }
}
