//! The cancel function (`publish-cancel`): UForge's HTTP endpoint behind
//! API Gateway. Run as every Lambda binary is (`startup::run_lambda`):
//! settings from `config::CancelSettings`, the handler
//! `frontdoor::lambda::HttpFunction`.

use std::process::ExitCode;

use publish_cancel::startup::{lambda, run_lambda};

fn main() -> ExitCode {
    run_lambda(lambda::cancel)
}
