//! Implementations of the ports: DynamoDB, SQS and Secrets Manager for
//! production and the emulator, in-memory for the local server and tests,
//! and the seed file for the operator's tooling on a local server.

pub mod breaker;
pub mod dynamodb;
pub mod memory;
pub mod secrets_manager;
pub mod seed_file;
pub mod service_time;
pub mod sqs;

use crate::ports::BackendError;

/// An AWS SDK error as a `BackendError`, with its whole chain: the SDK's
/// plain `Display` says only "service error", `DisplayErrorContext` walks
/// the causes (the code, the message, the HTTP status).
pub fn sdk_error(
    context: &'static str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> BackendError {
    BackendError::new(
        context,
        aws_smithy_types::error::display::DisplayErrorContext(e).to_string(),
    )
}
