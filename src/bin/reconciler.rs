//! The reconciler, run on a schedule: re-sends stop messages that a
//! cancel could not confirm (`publish_cancel::reconcile`).

use std::process::ExitCode;

use aws_config::SdkConfig;
use publish_cancel::adapters::dynamodb::DynamoPublishes;
use publish_cancel::adapters::memory::{MemoryPublishes, MemoryQueue};
use publish_cancel::adapters::sqs::SqsStopQueue;
use publish_cancel::config::{Env, PublishesAndQueue, ReconcilerSettings};
use publish_cancel::frontdoor::schedule::Reconciler;
use publish_cancel::metrics::Metrics;
use publish_cancel::startup::{self, run_lambda, BoxError, LambdaFunction};

struct ReconcilerFunction;

impl LambdaFunction for ReconcilerFunction {
    type Settings = ReconcilerSettings;
    type Resources = PublishesAndQueue;
    type OnAws = Reconciler<DynamoPublishes, SqsStopQueue>;
    type InMemory = Reconciler<MemoryPublishes, MemoryQueue>;

    fn on_aws(
        settings: ReconcilerSettings,
        aws: PublishesAndQueue,
        sdk: &SdkConfig,
        metrics: Option<Metrics>,
    ) -> Result<Self::OnAws, BoxError> {
        Ok(Reconciler {
            cancel: startup::canceller_aws(sdk, aws),
            plan: settings.plan(),
            resume: Default::default(),
            metrics,
        })
    }

    /// The seed's publishes: none of its stops is pending, but the
    /// invocation path is the real one.
    fn in_memory(
        settings: ReconcilerSettings,
        seed: &str,
        _: &Env,
        metrics: Option<Metrics>,
    ) -> Result<Self::InMemory, BoxError> {
        Ok(Reconciler {
            cancel: startup::canceller_memory(seed)?,
            plan: settings.plan(),
            resume: Default::default(),
            metrics,
        })
    }
}

fn main() -> ExitCode {
    run_lambda::<ReconcilerFunction>()
}
