//! The reconciler Lambda, run on a schedule: re-sends stop messages that a
//! cancel could not confirm (see `publish_cancel::reconcile`).

use std::process::ExitCode;
use std::time::Duration;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use publish_cancel::adapters::dynamodb::DynamoPublishes;
use publish_cancel::adapters::memory::{MemoryPublishes, MemoryQueue};
use publish_cancel::adapters::sqs::SqsStopQueue;
use publish_cancel::config::{self, ConfigError};
use publish_cancel::domain::Timestamp;
use publish_cancel::metrics::{now_ms, Metrics};
use publish_cancel::ports::{Publishes, StopQueue};
use publish_cancel::reconcile::{reconcile, ReconcileReport};
use publish_cancel::startup::{self, Backend, BoxError};

/// Seconds a stop may stay pending before it is re-sent: longer than a
/// cancel's own bounded send, so in-flight requests are left alone.
const ENV_GRACE: &str = "RECONCILE_GRACE_SECONDS";
const ENV_BATCH: &str = "RECONCILE_BATCH";

fn env_number(name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().map_err(|_| ConfigError::Invalid(name, v)),
        Err(_) => Ok(default),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    publish_cancel::logging::init();
    startup::run(start()).await
}

type Serving = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>>>>;

async fn start() -> Result<Serving, BoxError> {
    startup::check_lambda_environment()?;
    let grace = Duration::from_secs(env_number(ENV_GRACE, 60)?);
    let batch = usize::try_from(env_number(ENV_BATCH, 100)?).unwrap_or(100);
    Ok(match Backend::from_env()? {
        Backend::Aws => {
            // The stack's resources first: their absence is the likelier
            // mistake, and its message says what to do locally.
            let table = config::resource(config::ENV_PUBLISHES_TABLE)?;
            let queue_url = config::resource(config::ENV_STOP_QUEUE_URL)?;
            let sdk = config::lambda_sdk_config(config::TlsRoots::from_env()?)?;
            let publishes = DynamoPublishes::new(aws_sdk_dynamodb::Client::new(&sdk), table);
            let queue = SqsStopQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url);
            Box::pin(serve(publishes, queue, grace, batch))
        }
        // Local invocation: nothing is ever pending in fresh stores, but the
        // invocation path is the real one.
        Backend::Memory { .. } => Box::pin(serve(
            MemoryPublishes::default(),
            MemoryQueue::default(),
            grace,
            batch,
        )),
    })
}

async fn serve<P: Publishes, Q: StopQueue>(
    publishes: P,
    queue: Q,
    grace: Duration,
    batch: usize,
) -> Result<(), Error> {
    let metrics = Metrics::from_env();
    let (publishes, queue, metrics) = (&publishes, &queue, &metrics);
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            let report: ReconcileReport =
                reconcile(publishes, queue, Timestamp::now(), grace, batch).await?;
            tracing::info!(
                found = report.found,
                resent = report.resent,
                failed = report.failed,
                "reconcile"
            );
            if let Some(m) = metrics {
                m.emit(&m.reconcile_line(report.found, report.resent, report.failed, now_ms()));
            }
            if report.failed > 0 {
                // Fail the invocation so the errors alarm sees it.
                return Err(Error::from(format!(
                    "{} stop(s) still pending",
                    report.failed
                )));
            }
            Ok::<_, Error>(report)
        },
    ))
    .await
}
