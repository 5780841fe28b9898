//! How the Lambda binaries start: which stores they run on, what Lambda
//! must have given them, and how a start that cannot succeed is reported.
//!
//! - **Backends.** In AWS a function runs on DynamoDB and SQS, configured
//!   by the stack. For a local invocation (`cargo lambda watch`, `sam
//!   local`) it can run on the in-memory stores seeded from the bundled seed
//!   instead, when asked explicitly: `UFORGE_BACKEND=memory` (optionally
//!   `UFORGE_SEED=path`). Never by accident: it is not a default, and the
//!   real Lambda service (`AWS_EXECUTION_ENV=AWS_Lambda_...`) refuses it.
//! - **Init errors.** A missing or invalid setting is posted to the Runtime
//!   API's `/runtime/init/error` (type and a message naming the variable and
//!   the fix), then the process exits: Lambda shows the message in the
//!   invoke response and the logs; a local emulator does not hang.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::adapters::memory::{MemoryPublishes, MemoryQueue, MemoryUsers};
use crate::api::Api;
use crate::auth::{Authenticator, FixedKeks, Sealer};
use crate::cancel::CancelPublish;
use crate::config::{self, ConfigError};
use crate::seed::{self, Seed};

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The service on in-memory stores.
pub type MemoryApi = Api<MemoryUsers, MemoryPublishes, MemoryQueue>;

pub const ENV_BACKEND: &str = "UFORGE_BACKEND";
pub const ENV_SEED: &str = "UFORGE_SEED";

/// The stores a Lambda binary runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// DynamoDB and SQS (the default).
    Aws,
    /// In-memory stores from a seed file (`None`: the bundled one).
    Memory { seed: Option<PathBuf> },
}

impl Backend {
    pub fn from_env() -> Result<Backend, ConfigError> {
        Backend::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(var: impl Fn(&'static str) -> Option<String>) -> Result<Backend, ConfigError> {
        let set = |name| var(name).filter(|v| !v.trim().is_empty());
        match set(ENV_BACKEND).as_deref().map(str::trim) {
            None | Some("aws") => Ok(Backend::Aws),
            Some("memory") => {
                if set("AWS_EXECUTION_ENV").is_some_and(|e| e.starts_with("AWS_Lambda_")) {
                    return Err(ConfigError::Invalid(
                        ENV_BACKEND,
                        "memory is for local invocation only; in Lambda, remove it and give the \
                         function its tables and queue (the SAM template does)"
                            .into(),
                    ));
                }
                Ok(Backend::Memory {
                    seed: set(ENV_SEED).map(PathBuf::from),
                })
            }
            Some(other) => Err(ConfigError::Invalid(
                ENV_BACKEND,
                format!("{other:?} (use aws, the default, or memory for local invocation)"),
            )),
        }
    }
}

/// The seed file's text: `path`, or the bundled `seed/local.json`.
pub fn seed_text(path: Option<&std::path::Path>) -> Result<String, BoxError> {
    match path {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| format!("reading the seed file {}: {e}", p.display()).into()),
        None => Ok(seed::BUNDLED.to_owned()),
    }
}

/// The service on in-memory stores holding `seed`, with the verified-
/// credential cache. API secrets are sealed under `UFORGE_API_KEY_KEK` when
/// set, else under a random per-process KEK: either way the stores hold no
/// secret in clear. (Seeded passwords are hashed here: about 40 ms each.)
pub fn memory_api(seed: &str, base_path: &str) -> Result<MemoryApi, BoxError> {
    let sealer = match config::sealer_from_env()? {
        Some(s) => s,
        None => Sealer::random()?,
    };
    let (users, publishes) = Seed::parse(seed)?.into_memory(&sealer)?;
    Ok(Api::new(
        CancelPublish {
            users,
            publishes,
            queue: MemoryQueue::default(),
            auth: Authenticator::with_cache(Some(FixedKeks::shared(sealer))),
        },
        base_path,
    ))
}

/// What the Lambda Runtime client reads from Lambda's environment (it
/// panics on a missing one; here it is a reported init error instead).
const LAMBDA_VARIABLES: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
];

/// Checks the variables Lambda (or an emulator of it) always sets.
pub fn check_lambda_environment() -> Result<(), ConfigError> {
    for name in LAMBDA_VARIABLES {
        match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => {}
            _ => return Err(ConfigError::NotInLambda(name)),
        }
    }
    let memory = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").unwrap_or_default();
    if memory.trim().parse::<i32>().is_err() {
        return Err(ConfigError::Invalid(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            format!("{memory:?} (a number of MB)"),
        ));
    }
    Ok(())
}

/// Runs a Lambda binary: `start` (settings, clients) yields the future that
/// serves; a failed start is an init error (reported), a failed serve is
/// logged. Either way, the exit code says so.
pub async fn run<S>(start: impl std::future::Future<Output = Result<S, BoxError>>) -> ExitCode
where
    S: std::future::Future<Output = Result<(), BoxError>>,
{
    let serving = match start.await {
        Ok(serving) => serving,
        Err(e) => return init_failed(e.as_ref()),
    };
    match serving.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}

/// Reports a failed start: logs it, posts it to the Runtime API's init
/// error endpoint when there is one, and returns the failure exit code.
pub fn init_failed(error: &(dyn std::error::Error + 'static)) -> ExitCode {
    let message = crate::ErrorChain(error).to_string();
    tracing::error!(error = %message, "init failed");
    if let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") {
        if let Err(e) = post_init_error(&api, "Runtime.ConfigError", &message) {
            tracing::error!(error = %e, runtime_api = %api, "could not report the init error to the Runtime API");
        }
    }
    ExitCode::FAILURE
}

/// `POST /2018-06-01/runtime/init/error`, by hand: the Runtime client is
/// not started yet (it may be what failed), and this is one request.
fn post_init_error(api: &str, error_type: &str, message: &str) -> std::io::Result<()> {
    let body = serde_json::json!({"errorType": error_type, "errorMessage": message}).to_string();
    // `host:port` (Lambda), or `http://host:port/prefix` (cargo lambda's
    // emulator routes by function under a path prefix).
    let api = api.strip_prefix("http://").unwrap_or(api);
    let (host, prefix) = match api.find('/') {
        Some(i) => (&api[..i], api[i..].trim_end_matches('/')),
        None => (api, ""),
    };
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "POST {prefix}/2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {host}\r\n\
         Lambda-Runtime-Function-Error-Type: {error_type}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    // Wait for the answer, so the report is in before the process exits.
    let mut answer = [0u8; 64];
    let _ = stream.read(&mut answer)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(
        vars: &'a [(&'static str, &'static str)],
    ) -> impl Fn(&'static str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_memory_backend_is_explicit_and_never_in_lambda() {
        assert_eq!(Backend::from_lookup(lookup(&[])).unwrap(), Backend::Aws);
        assert_eq!(
            Backend::from_lookup(lookup(&[(ENV_BACKEND, "aws")])).unwrap(),
            Backend::Aws
        );
        assert_eq!(
            Backend::from_lookup(lookup(&[(ENV_BACKEND, "memory"), (ENV_SEED, "s.json")])).unwrap(),
            Backend::Memory {
                seed: Some("s.json".into())
            }
        );
        // cargo lambda sets a function name too; only the real service sets this.
        let in_lambda = Backend::from_lookup(lookup(&[
            (ENV_BACKEND, "memory"),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
        ]));
        assert!(matches!(
            in_lambda,
            Err(ConfigError::Invalid(ENV_BACKEND, _))
        ));
        let typo = Backend::from_lookup(lookup(&[(ENV_BACKEND, "mem")]));
        assert!(typo.unwrap_err().to_string().contains("memory"));
    }
}
