//! The reconciler Lambda, run on a schedule: re-sends stop messages that a
//! cancel could not confirm (see `publish_cancel::reconcile`).

use std::process::ExitCode;

use publish_cancel::startup::{run_lambda, LambdaFunction};

fn main() -> ExitCode {
    run_lambda(LambdaFunction::Reconciler)
}
