//! The reconciler Lambda, run on a schedule: re-sends stop messages that a
//! cancel could not confirm (see `publish_cancel::reconcile`).

use std::time::Duration;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use publish_cancel::adapters::dynamodb::DynamoPublishes;
use publish_cancel::adapters::sqs::SqsStopQueue;
use publish_cancel::config::{self, ConfigError};
use publish_cancel::domain::Timestamp;
use publish_cancel::metrics::{now_ms, Metrics};
use publish_cancel::reconcile::{reconcile, ReconcileReport};

/// Seconds a stop may stay pending before it is re-sent: longer than a
/// cancel's own bounded send, so in-flight requests are left alone.
const ENV_GRACE: &str = "RECONCILE_GRACE_SECONDS";
const ENV_BATCH: &str = "RECONCILE_BATCH";

fn env_number(name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| ConfigError::Invalid(name, v)),
        Err(_) => Ok(default),
    }
}

fn required(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name).map_err(|_| ConfigError::Missing(name))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    publish_cancel::logging::init();
    let grace = Duration::from_secs(env_number(ENV_GRACE, 60)?);
    let batch = usize::try_from(env_number(ENV_BATCH, 100)?).unwrap_or(100);
    let sdk = config::lambda_sdk_config(config::TlsRoots::from_env()?)?;
    let publishes = DynamoPublishes::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        required(config::ENV_PUBLISHES_TABLE)?,
    );
    let queue = SqsStopQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        required(config::ENV_STOP_QUEUE_URL)?,
    );
    let metrics = Metrics::from_env();
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| async {
        let report: ReconcileReport =
            reconcile(&publishes, &queue, Timestamp::now(), grace, batch).await?;
        tracing::info!(
            found = report.found,
            resent = report.resent,
            failed = report.failed,
            "reconcile"
        );
        if let Some(m) = &metrics {
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
    }))
    .await
}
