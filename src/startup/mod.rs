//! The composition root: how every binary, and every test, builds the
//! service. `service` puts a use case and its HTTP layer together on any
//! stores; `aws_api` and `memory_service` are that on DynamoDB/SQS and on the
//! in-memory stores; `cancel_key_*` the cancel on its own authority.
//! `lambda` runs every Lambda binary one way. The process environment is
//! read by the binaries' `main` and passed in (`config::Env`); nothing
//! here or below reads it.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;

use crate::access::Gate;
use crate::adapters::dynamodb::admin::DynamoAdmin;
use crate::adapters::dynamodb::{DynamoPublishes, DynamoUsers};
use crate::adapters::memory::{MemoryPublishes, MemoryQueue, MemoryUsers};
use crate::adapters::secrets_manager::SecretsManagerKeks;
use crate::adapters::sqs::SqsStopQueue;
use crate::api::{Api, REQUEST_BUDGET};
use crate::auth::{Authenticator, FixedKeks, KekSource, Sealer};
use crate::cancel::Canceller;
use crate::config::{AdminSettings, AwsSettings, Env, KekSetting};
use crate::metrics::Metrics;
use crate::ports::{CancelWrites, PublishReader, StopQueue, Users};
use crate::seed::{self, Seed};

pub mod lambda;

pub use lambda::{run_lambda, LambdaFunction};

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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

/// The service on any stores: the one place the access gate, the cancel
/// and the HTTP layer are put together.
pub fn service<U: Users, P: CancelWrites + PublishReader, Q: StopQueue>(
    users: U,
    publishes: P,
    queue: Q,
    keks: Option<Arc<dyn KekSource>>,
    options: Options,
) -> Api<U, P, Q> {
    let auth = authenticator(keks, &options);
    service_with(users, publishes, queue, auth, options)
}

/// The authenticator `options` ask for. A clone shares its cache and its
/// counts.
pub fn authenticator(keks: Option<Arc<dyn KekSource>>, options: &Options) -> Authenticator {
    if options.credential_cache {
        Authenticator::with_cache(keks)
    } else {
        Authenticator::new(keks)
    }
}

/// The service with an authenticator built by the caller.
pub fn service_with<U: Users, P: CancelWrites + PublishReader, Q: StopQueue>(
    users: U,
    publishes: P,
    queue: Q,
    auth: Authenticator,
    options: Options,
) -> Api<U, P, Q> {
    Api::new(
        Gate { users, auth },
        Canceller { publishes, queue },
        &options.base_path,
    )
    .with_budget(options.budget)
    .with_metrics(options.metrics)
}

/// The service on DynamoDB and SQS, clients built from `sdk`.
pub fn aws_api(sdk: &SdkConfig, settings: AwsSettings, options: Options) -> AwsApi {
    let keks = kek_source(&settings.keks, sdk);
    aws_api_from_clients(
        crate::adapters::dynamodb::client(sdk),
        aws_sdk_sqs::Client::new(sdk),
        keks,
        settings,
        options,
    )
}

/// Where the KEKs come from, per the setting; a secret is read through
/// `sdk` when first needed.
pub fn kek_source(setting: &KekSetting, sdk: &SdkConfig) -> Option<Arc<dyn KekSource>> {
    match setting {
        KekSetting::Off => None,
        KekSetting::Inline(sealer) => Some(Arc::new(FixedKeks(sealer.clone()))),
        KekSetting::Secret(id) => Some(SecretsManagerKeks::shared(sdk, id)),
    }
}

/// The operator's store on DynamoDB (`uforge-admin` without `--seed`).
pub fn dynamo_admin(sdk: &SdkConfig, settings: AdminSettings) -> DynamoAdmin {
    DynamoAdmin::new(
        crate::adapters::dynamodb::client(sdk),
        settings.users_table,
        settings.publishes_table,
        kek_source(&settings.keks, sdk),
    )
    .with_shards(settings.pending_shards)
}

/// Where `uforge-admin publish put --force` sends a pending stop, when
/// `STOP_QUEUE_URL` says.
pub fn admin_stop_queue(sdk: &SdkConfig, settings: &AdminSettings) -> Option<SqsStopQueue> {
    settings
        .stop_queue_url
        .clone()
        .map(|url| SqsStopQueue::new(aws_sdk_sqs::Client::new(sdk), url))
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
        DynamoPublishes::new(dynamo, settings.publishes_table).with_shards(settings.pending_shards),
        SqsStopQueue::new(sqs, settings.stop_queue_url),
        keks,
        options,
    )
}

/// Cancelling keys on DynamoDB and SQS, on the caller's own authority (the
/// reconciler, the automation function): no users table, no KEK.
pub fn canceller_aws(
    sdk: &SdkConfig,
    aws: crate::config::PublishesAndQueue,
) -> Canceller<DynamoPublishes, SqsStopQueue> {
    let mut canceller = canceller_from_clients(
        crate::adapters::dynamodb::client(sdk),
        aws_sdk_sqs::Client::new(sdk),
        aws.publishes_table,
        aws.stop_queue_url,
    );
    canceller.publishes = canceller.publishes.with_shards(aws.pending_shards);
    canceller
}

/// The same with clients built elsewhere.
pub fn canceller_from_clients(
    dynamo: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    publishes_table: String,
    stop_queue_url: String,
) -> Canceller<DynamoPublishes, SqsStopQueue> {
    Canceller {
        publishes: DynamoPublishes::new(dynamo, publishes_table),
        queue: SqsStopQueue::new(sqs, stop_queue_url),
    }
}

/// The same on in-memory stores holding `seed`'s publishes.
pub fn canceller_memory(seed: &str) -> Result<Canceller<MemoryPublishes, MemoryQueue>, BoxError> {
    let publishes = MemoryPublishes::default();
    for record in Seed::parse(seed)?.publishes()? {
        publishes.put(record);
    }
    Ok(Canceller {
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

/// In-memory stores holding `seed`'s users (API secrets sealed by
/// `sealer`) and publishes.
pub fn memory_stores(
    seed: &Seed,
    sealer: &Sealer,
) -> Result<(MemoryUsers, MemoryPublishes), seed::SeedError> {
    Ok((
        seed.users(sealer)?.into_iter().collect(),
        seed.publishes()?.into_iter().collect(),
    ))
}

/// The service on in-memory stores, and those stores: clones that share
/// their contents, so what the service writes they show.
#[derive(Debug)]
pub struct MemoryService {
    pub api: MemoryApi,
    pub publishes: MemoryPublishes,
    pub queue: MemoryQueue,
}

/// The service on in-memory stores holding `seed`. API secrets are sealed
/// under `UFORGE_API_KEY_KEK` when set, else under a random per-process
/// KEK: either way the stores hold no secret in clear. (Seeded passwords
/// are hashed here: about 40 ms each.)
pub fn memory_service(seed: &Seed, options: Options, env: &Env) -> Result<MemoryService, BoxError> {
    let sealer = match env.inline_kek()? {
        Some(s) => s,
        None => Sealer::random()?,
    };
    let (users, publishes) = memory_stores(seed, &sealer)?;
    let queue = MemoryQueue::default();
    Ok(MemoryService {
        api: service(
            users,
            publishes.clone(),
            queue.clone(),
            Some(FixedKeks::shared(sealer)),
            options,
        ),
        publishes,
        queue,
    })
}
