//! The automation function: cancels asked for by EventBridge, an SQS
//! command queue, Step Functions or a direct invoke, on the caller's IAM
//! authority. It shares the HTTP function's cancel (`CancelKey`: the one
//! conditional write, the stop message, the pending mark), but has no
//! users table, no KEK and no Argon2. Events: `frontdoor::automation`.

use std::process::ExitCode;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use publish_cancel::cancel::CancelKey;
use publish_cancel::config::{sdk, AutomationSettings, Env};
use publish_cancel::frontdoor::automation::{Automation, Door};
use publish_cancel::frontdoor::{invocation_deadline, RawEvent};
use publish_cancel::metrics::Metrics;
use publish_cancel::ports::{Publishes, StopQueue};
use publish_cancel::startup::{self, BoxError, Serving};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    publish_cancel::logging::init();
    startup::run(start()).await
}

async fn start() -> Result<Serving, BoxError> {
    let env = Env::process();
    startup::check_lambda_environment(&env)?;
    Ok(match AutomationSettings::from_env(&env)? {
        AutomationSettings::Aws(aws) => {
            let sdk = sdk::lambda_sdk_config(aws.tls_roots, &env)?;
            Box::pin(serve(startup::cancel_key_aws(&sdk, aws), false))
        }
        AutomationSettings::Memory { seed } => {
            let cancel = startup::cancel_key_memory(&startup::seed_text(seed.as_deref())?)?;
            tracing::warn!(
                "cancelling in in-memory stores (UFORGE_BACKEND=memory): local invocation only"
            );
            Box::pin(serve(cancel, true))
        }
    })
}

/// `local`: the in-memory stores, under a tool that cannot invoke an
/// alias (every event shape is taken; `automation::Door`).
async fn serve<P: Publishes + 'static, Q: StopQueue + 'static>(
    cancel: CancelKey<P, Q>,
    local: bool,
) -> Result<(), BoxError> {
    let automation = Automation {
        cancel,
        metrics: Metrics::from_env(),
    };
    let automation = &automation;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<RawEvent>| async move {
        let deadline = invocation_deadline(&event.context);
        let Some(payload) = event.payload.json() else {
            return Err(Diagnostic {
                error_type: "UForge.UnsupportedEvent".into(),
                error_message: "the event is not JSON this function can read".into(),
            });
        };
        let door = if local {
            Door::Local
        } else {
            Door::of(&event.context.invoked_function_arn)
        };
        automation
            .handle(&payload, door, &event.context.request_id, deadline)
            .await
            .map_err(|e| Diagnostic {
                error_type: e.error_type().into(),
                error_message: e.to_string(),
            })
    }))
    .await
}
