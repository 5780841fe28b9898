//! The composition root: how every binary, and every test, builds the
//! service. `service` puts a use case and its HTTP layer together on any
//! stores; `aws_api` and `memory_api` are that on DynamoDB/SQS and on the
//! in-memory stores. Then how a Lambda binary starts: what Lambda must have
//! given it, and how a start that cannot succeed is reported (a missing or
//! invalid setting is posted to the Runtime API's `/runtime/init/error`,
//! naming the variable and the fix, and the process exits: Lambda shows the
//! message in the invoke response and the logs; a local emulator does not
//! hang).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;

use crate::adapters::dynamodb::{DynamoPublishes, DynamoUsers};
use crate::adapters::memory::{MemoryPublishes, MemoryQueue, MemoryUsers};
use crate::adapters::sqs::SqsStopQueue;
use crate::api::{Api, REQUEST_BUDGET};
use crate::auth::{Authenticator, FixedKeks, KekSource, Sealer};
use crate::cancel::{CancelKey, CancelPublish};
use crate::config::{AwsSettings, ConfigError, Env};
use crate::metrics::Metrics;
use crate::ports::{Publishes, StopQueue, Users};
use crate::seed::{self, Seed};

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a Lambda binary's start yields: the future that serves events.
pub type Serving = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BoxError>>>>;

/// The service on DynamoDB and SQS.
pub type AwsApi = Api<DynamoUsers, DynamoPublishes, SqsStopQueue>;
/// The service on in-memory stores.
pub type MemoryApi = Api<MemoryUsers, MemoryPublishes, MemoryQueue>;

/// How the service behaves, whatever its stores.
#[derive(Debug, Clone)]
pub struct Options {
    /// The API base path, e.g. `/api`.
    pub base_path: String,
    /// Keep recently verified passwords (production: yes).
    pub credential_cache: bool,
    /// Every request answers within this.
    pub budget: Duration,
    /// One EMF line per request (Lambda only).
    pub metrics: Option<Metrics>,
}

impl Options {
    /// Production behaviour under `base_path`.
    pub fn new(base_path: &str) -> Options {
        Options {
            base_path: base_path.to_owned(),
            credential_cache: true,
            budget: REQUEST_BUDGET,
            metrics: None,
        }
    }
}

/// The service on any stores: the one place the use case, its
/// authenticator and the HTTP layer are put together.
pub fn service<U: Users, P: Publishes, Q: StopQueue>(
    users: U,
    publishes: P,
    queue: Q,
    keks: Option<Arc<dyn KekSource>>,
    options: Options,
) -> Api<U, P, Q> {
    let auth = if options.credential_cache {
        Authenticator::with_cache(keks)
    } else {
        Authenticator::new(keks)
    };
    Api::new(
        CancelPublish {
            users,
            auth,
            cancel: CancelKey { publishes, queue },
        },
        &options.base_path,
    )
    .with_budget(options.budget)
    .with_metrics(options.metrics)
}

/// The service on DynamoDB and SQS, clients built from `sdk`.
pub fn aws_api(sdk: &SdkConfig, settings: AwsSettings, options: Options) -> AwsApi {
    let keks = settings.keks.source(sdk);
    aws_api_from_clients(
        aws_sdk_dynamodb::Client::new(sdk),
        aws_sdk_sqs::Client::new(sdk),
        keks,
        settings,
        options,
    )
}

/// The same with clients built elsewhere (e.g. each on its own endpoint).
pub fn aws_api_from_clients(
    dynamo: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    keks: Option<Arc<dyn KekSource>>,
    settings: AwsSettings,
    options: Options,
) -> AwsApi {
    service(
        DynamoUsers::new(dynamo.clone(), settings.users_table),
        DynamoPublishes::new(dynamo, settings.publishes_table),
        SqsStopQueue::new(sqs, settings.stop_queue_url),
        keks,
        options,
    )
}

/// Cancelling keys on DynamoDB and SQS, on the caller's own authority (the
/// reconciler, the automation function): no users table, no KEK.
pub fn cancel_key_aws(
    sdk: &SdkConfig,
    aws: crate::config::PublishesAndQueue,
) -> CancelKey<DynamoPublishes, SqsStopQueue> {
    CancelKey {
        publishes: DynamoPublishes::new(aws_sdk_dynamodb::Client::new(sdk), aws.publishes_table),
        queue: SqsStopQueue::new(aws_sdk_sqs::Client::new(sdk), aws.stop_queue_url),
    }
}

/// The same on in-memory stores holding `seed`'s publishes.
pub fn cancel_key_memory(seed: &str) -> Result<CancelKey<MemoryPublishes, MemoryQueue>, BoxError> {
    let publishes = MemoryPublishes::default();
    for record in Seed::parse(seed)?.publishes()? {
        publishes.put(record);
    }
    Ok(CancelKey {
        publishes,
        queue: MemoryQueue::default(),
    })
}

/// The seed file's text: `path`, or the bundled `seed/local.json`.
pub fn seed_text(path: Option<&std::path::Path>) -> Result<String, BoxError> {
    match path {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| format!("reading the seed file {}: {e}", p.display()).into()),
        None => Ok(seed::BUNDLED.to_owned()),
    }
}

/// The service on in-memory stores holding `seed`. API secrets are sealed
/// under `UFORGE_API_KEY_KEK` when set, else under a random per-process
/// KEK: either way the stores hold no secret in clear. (Seeded passwords
/// are hashed here: about 40 ms each.)
pub fn memory_api(seed: &str, options: Options) -> Result<MemoryApi, BoxError> {
    let sealer = match Env::process().inline_kek()? {
        Some(s) => s,
        None => Sealer::random()?,
    };
    let (users, publishes) = Seed::parse(seed)?.into_memory(&sealer)?;
    Ok(service(
        users,
        publishes,
        MemoryQueue::default(),
        Some(FixedKeks::shared(sealer)),
        options,
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
pub fn check_lambda_environment(env: &Env) -> Result<(), ConfigError> {
    for name in LAMBDA_VARIABLES {
        if env.get(name).is_none() {
            return Err(ConfigError::NotInLambda(name));
        }
    }
    let memory = env
        .get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .unwrap_or_default();
    if memory.parse::<i32>().is_err() {
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
    if let Some(api) = Env::process().get("AWS_LAMBDA_RUNTIME_API") {
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
