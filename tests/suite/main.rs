//! The integration tests, as one test binary (one link of the SDK, one
//! emulator shared by all): each module is one concern. `tests/tls.rs`
//! stays its own binary because it sets the process-wide SSL_CERT_FILE.
//!
//! The emulator (moto_server) is started on first use by `common::moto`;
//! the deployment rehearsal starts a private one, since it turns IAM
//! enforcement on for the whole emulator.

#[path = "../common/mod.rs"]
mod common;

mod admin_cli;
mod alarms;
mod architecture;
mod automation;
mod concurrency;
mod contract;
mod emulator;
mod events;
mod faults;
mod hostile_input;
mod lambda_runtime;
mod local_server;
mod metrics;
mod properties;
mod publish_cancelled;
mod reconciler;
mod references;
mod rehearsal;
mod soak;
mod tracing;
mod uforge_sdk;
