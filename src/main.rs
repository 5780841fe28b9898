//! The Lambda function: wiring only. Settings come from the environment
//! (`config::FunctionSettings`), the service from the composition root
//! (`startup`); the SDK clients are built once, at init. A start that
//! cannot succeed is reported to the Runtime API (`startup::run`).

use std::process::ExitCode;
use std::sync::Arc;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use publish_cancel::api::Api;
use publish_cancel::config::{sdk, Env, FunctionBackend, FunctionSettings};
use publish_cancel::frontdoor::{self, RawEvent};
use publish_cancel::metrics::Metrics;
use publish_cancel::ports::{Publishes, StopQueue, Users};
use publish_cancel::startup::{self, BoxError, Options, Serving};

fn main() -> ExitCode {
    publish_cancel::allocator::return_large_blocks_to_the_os();
    // Lambda sends one event at a time: a single-threaded runtime starts
    // faster and holds less; Argon2 still runs on a blocking thread.
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => startup::init_failed(&e),
    }
}

async fn run() -> ExitCode {
    // JSON when AWS_LAMBDA_LOG_FORMAT=JSON, level from AWS_LAMBDA_LOG_LEVEL / RUST_LOG.
    publish_cancel::logging::init();
    startup::run(start()).await
}

/// Builds the service on the configured backend; the future serves it.
async fn start() -> Result<Serving, BoxError> {
    let env = Env::process();
    startup::check_lambda_environment(&env)?;
    let settings = FunctionSettings::from_env(&env)?;
    let options = Options {
        metrics: Metrics::from_env(),
        ..Options::new(&settings.base_path)
    };
    Ok(match settings.backend {
        FunctionBackend::Aws(aws, roots) => {
            let sdk = sdk::lambda_sdk_config(roots, &env)?;
            Box::pin(serve(startup::aws_api(&sdk, aws, options)))
        }
        FunctionBackend::Memory { seed } => {
            let api = startup::memory_api(&startup::seed_text(seed.as_deref())?, options)?;
            tracing::warn!(
                "serving from in-memory stores (UFORGE_BACKEND=memory): local invocation only"
            );
            Box::pin(serve(api))
        }
    })
}

async fn serve<U, P, Q>(api: Api<U, P, Q>) -> Result<(), BoxError>
where
    U: Users + 'static,
    P: Publishes + 'static,
    Q: StopQueue + 'static,
{
    let api = Arc::new(api);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<RawEvent>| {
        let api = api.clone();
        // Boxed: the handler's future nested in the runtime's is otherwise
        // deeper than the compiler's default layout recursion limit.
        Box::pin(async move {
            let Some(payload) = event.payload.json() else {
                return Err(Diagnostic {
                    error_type: "UnsupportedEvent".into(),
                    error_message: "the event is not JSON this function can read".into(),
                });
            };
            frontdoor::lambda::handle(&api, &payload, &event.context.request_id)
                .await
                .map_err(|e| Diagnostic {
                    error_type: "UnsupportedEvent".into(),
                    error_message: e.to_string(),
                })
        })
    }))
    .await
}
