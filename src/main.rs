//! The cancel function (`publish-cancel`): UForge's HTTP routes behind API
//! Gateway, declared here and run as every Lambda binary is
//! (`startup::run_lambda`).

use std::process::ExitCode;

use aws_config::SdkConfig;
use publish_cancel::adapters::dynamodb::{DynamoPublishes, DynamoUsers};
use publish_cancel::adapters::memory::{MemoryPublishes, MemoryQueue, MemoryUsers};
use publish_cancel::adapters::sqs::SqsStopQueue;
use publish_cancel::config::{AwsSettings, CancelSettings, Env};
use publish_cancel::frontdoor::lambda::HttpFunction;
use publish_cancel::metrics::Metrics;
use publish_cancel::seed::Seed;
use publish_cancel::startup::{self, run_lambda, BoxError, LambdaFunction, Options};

/// Users' requests: the access gate, then the route's endpoint.
struct Cancel;

impl LambdaFunction for Cancel {
    type Settings = CancelSettings;
    type Resources = AwsSettings;
    type OnAws = HttpFunction<DynamoUsers, DynamoPublishes, SqsStopQueue>;
    type InMemory = HttpFunction<MemoryUsers, MemoryPublishes, MemoryQueue>;

    fn on_aws(
        settings: CancelSettings,
        aws: AwsSettings,
        sdk: &SdkConfig,
        metrics: Option<Metrics>,
    ) -> Result<Self::OnAws, BoxError> {
        let options = Options {
            metrics,
            ..Options::new(&settings.base_path)
        };
        Ok(HttpFunction(startup::aws_api(sdk, aws, options)))
    }

    fn in_memory(
        settings: CancelSettings,
        seed: &str,
        env: &Env,
        metrics: Option<Metrics>,
    ) -> Result<Self::InMemory, BoxError> {
        let options = Options {
            metrics,
            ..Options::new(&settings.base_path)
        };
        let service = startup::memory_service(&Seed::parse(seed)?, options, env)?;
        Ok(HttpFunction(service.api))
    }
}

fn main() -> ExitCode {
    // Before any thread: keeps Argon2's 19 MiB blocks out of the RSS once
    // freed. The other Lambda binaries verify no passwords and skip it.
    publish_cancel::allocator::return_large_blocks_to_the_os();
    run_lambda::<Cancel>()
}
