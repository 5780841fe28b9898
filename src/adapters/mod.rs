//! Implementations of the ports: DynamoDB and SQS for production and the
//! emulator, in-memory for the local server and unit tests.

pub mod dynamodb;
pub mod memory;
pub mod secrets_manager;
pub mod sqs;
