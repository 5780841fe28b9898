//! The Lambda function: wiring only. Configuration comes from the
//! environment; the SDK clients are built once, at init.

use std::sync::Arc;

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use publish_cancel::config::{self, AwsSettings};
use publish_cancel::frontdoor;
use publish_cancel::metrics::Metrics;
use serde_json::Value;

fn main() -> Result<(), Error> {
    publish_cancel::memory::return_large_blocks_to_the_os();
    // Lambda sends one event at a time: a single-threaded runtime starts
    // faster and holds less; Argon2 still runs on a blocking thread.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), Error> {
    // JSON when AWS_LAMBDA_LOG_FORMAT=JSON, level from AWS_LAMBDA_LOG_LEVEL / RUST_LOG.
    publish_cancel::logging::init();
    let settings = AwsSettings::from_env()?;
    let sdk = config::lambda_sdk_config(config::TlsRoots::from_env()?)?;
    // One EMF metric line per request (src/metrics.rs).
    let api = Arc::new(config::aws_api(&sdk, settings).with_metrics(Metrics::from_env()));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let api = api.clone();
        // Boxed: the handler's future nested in the runtime's is otherwise
        // deeper than the compiler's default layout recursion limit.
        Box::pin(async move {
            frontdoor::lambda::handle(&api, &event.payload, &event.context.request_id)
                .await
                .map_err(|e| Diagnostic {
                    error_type: "UnsupportedEvent".into(),
                    error_message: e.to_string(),
                })
        })
    }))
    .await
}
