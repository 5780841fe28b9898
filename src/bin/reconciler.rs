//! The reconciler Lambda, run on a schedule: re-sends stop messages that a
//! cancel could not confirm (see `publish_cancel::reconcile`).

use std::process::ExitCode;
use std::time::Duration;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use publish_cancel::adapters::memory::{MemoryPublishes, MemoryQueue};
use publish_cancel::cancel::CancelKey;
use publish_cancel::config::{sdk, Env, ReconcilerBackend, ReconcilerSettings};
use publish_cancel::domain::Timestamp;
use publish_cancel::frontdoor::{invocation_deadline, RawEvent};
use publish_cancel::metrics::{now_ms, Metrics};
use publish_cancel::ports::{Publishes, StopQueue};
use publish_cancel::reconcile::{reconcile, ReconcileReport};
use publish_cancel::startup::{self, BoxError, Serving};
use publish_cancel::ErrorChain;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    publish_cancel::logging::init();
    startup::run(start()).await
}

async fn start() -> Result<Serving, BoxError> {
    let env = Env::process();
    startup::check_lambda_environment(&env)?;
    let settings = ReconcilerSettings::from_env(&env)?;
    let (grace, batch) = (settings.grace, settings.batch);
    Ok(match settings.backend {
        ReconcilerBackend::Aws(aws) => {
            let sdk = sdk::lambda_sdk_config(aws.tls_roots, &env)?;
            let CancelKey { publishes, queue } = startup::cancel_key_aws(&sdk, aws);
            Box::pin(serve(publishes, queue, grace, batch))
        }
        // Local invocation: nothing is ever pending in fresh stores, but the
        // invocation path is the real one.
        ReconcilerBackend::Memory => Box::pin(serve(
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
) -> Result<(), BoxError> {
    let metrics = Metrics::from_env();
    let cancel = CancelKey { publishes, queue };
    let (cancel, metrics) = (&cancel, &metrics);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<RawEvent>| async move {
        let until = invocation_deadline(&event.context);
        let report: ReconcileReport = reconcile(cancel, Timestamp::now(), grace, batch, until)
            .await
            .map_err(|e| Diagnostic {
                error_type: "UForge.BackendUnavailable".into(),
                error_message: format!("reading pending stops: {}", ErrorChain(&e)),
            })?;
        tracing::info!(
            found = report.found,
            resent = report.resent,
            failed = report.failed,
            undeliverable = report.undeliverable,
            unreadable = report.unreadable,
            cut_short = report.cut_short,
            "reconcile"
        );
        if let Some(m) = metrics {
            m.emit(&m.reconcile_line(&report, now_ms()));
        }
        if report.failed > 0 {
            // Fail the invocation so the errors alarm sees it.
            return Err(Diagnostic {
                error_type: "UForge.StopsStillPending".into(),
                error_message: format!("{} stop(s) still pending", report.failed),
            });
        }
        Ok(report)
    }))
    .await
}
