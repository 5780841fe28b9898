//! The automation function: cancels asked for by EventBridge, an SQS
//! command queue, Step Functions or a direct invoke, on the caller's IAM
//! authority (no users table, no KEK, no Argon2). Events:
//! `frontdoor::automation`.

use std::process::ExitCode;

use aws_config::SdkConfig;
use publish_cancel::adapters::dynamodb::DynamoPublishes;
use publish_cancel::adapters::memory::{MemoryPublishes, MemoryQueue};
use publish_cancel::adapters::sqs::SqsStopQueue;
use publish_cancel::config::{Env, PublishesAndQueue};
use publish_cancel::frontdoor::automation::Automation;
use publish_cancel::metrics::Metrics;
use publish_cancel::startup::{self, run_lambda, BoxError, LambdaFunction};

struct AutomationFunction;

impl LambdaFunction for AutomationFunction {
    type Settings = ();
    type Resources = PublishesAndQueue;
    type OnAws = Automation<DynamoPublishes, SqsStopQueue>;
    type InMemory = Automation<MemoryPublishes, MemoryQueue>;

    fn on_aws(
        (): (),
        aws: PublishesAndQueue,
        sdk: &SdkConfig,
        metrics: Option<Metrics>,
    ) -> Result<Self::OnAws, BoxError> {
        Ok(Automation {
            cancel: startup::canceller_aws(sdk, aws),
            metrics,
            local: false,
        })
    }

    fn in_memory(
        (): (),
        seed: &str,
        _: &Env,
        metrics: Option<Metrics>,
    ) -> Result<Self::InMemory, BoxError> {
        Ok(Automation {
            cancel: startup::canceller_memory(seed)?,
            metrics,
            local: true,
        })
    }
}

fn main() -> ExitCode {
    run_lambda::<AutomationFunction>()
}
