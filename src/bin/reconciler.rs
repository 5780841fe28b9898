//! The reconciler Lambda, run on a schedule: re-sends stop messages that a
//! cancel could not confirm (see `publish_cancel::reconcile`).

use std::process::ExitCode;

use publish_cancel::startup::{lambda, run_lambda};

fn main() -> ExitCode {
    run_lambda(lambda::reconciler)
}
