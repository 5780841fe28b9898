//! The cancel function (`publish-cancel`): UForge's HTTP endpoint behind
//! API Gateway. Run as every Lambda binary is (`startup::run_lambda`):
//! settings from `config::CancelSettings`, the handler
//! `frontdoor::lambda::HttpFunction`.

use std::process::ExitCode;

use publish_cancel::startup::{lambda, run_lambda};

fn main() -> ExitCode {
    // Before any thread: keeps Argon2's 19 MiB blocks out of the RSS once
    // freed. The other Lambda binaries verify no passwords and skip it.
    publish_cancel::allocator::return_large_blocks_to_the_os();
    run_lambda(lambda::cancel)
}
