//! The automation function: cancels asked for by EventBridge, an SQS
//! command queue, Step Functions or a direct invoke, on the caller's IAM
//! authority. It shares the HTTP function's cancel (`Canceller`: the one
//! conditional write, the stop message, the pending mark), but has no
//! users table, no KEK and no Argon2. Events: `frontdoor::automation`.

use std::process::ExitCode;

use publish_cancel::startup::{lambda, run_lambda};

fn main() -> ExitCode {
    run_lambda(lambda::automation)
}
