//! UForge AppCenter's `machineImagePublish_cancel`, as an AWS Lambda function.
//!
//! The layout follows ports and adapters:
//!
//! - [`domain`]: ids, users, publishes and the publish life cycle (no I/O);
//! - [`auth`]: HTTP Basic and API-key signed URLs; [`access`]: the gate
//!   every route goes through (login, entitlement, owner);
//! - [`cancel`]: the delivery protocol, written against the traits in
//!   [`ports`]; [`outcome`]: what a request came to, named once;
//! - [`adapters`]: DynamoDB/SQS and in-memory implementations of the ports;
//! - [`api`]: HTTP request → response, shared by every front door;
//! - [`frontdoor`]: Lambda events and the local HTTP server;
//! - [`config`] and [`seed`]: wiring from the environment and seed files.

pub mod access;
pub mod adapters;
pub mod admin;
pub mod allocator;
pub mod api;
pub mod auth;
pub mod cancel;
pub mod clock;
pub mod config;
pub mod domain;
pub mod frontdoor;
pub mod logging;
pub mod metrics;
pub mod outcome;
pub mod ports;
pub mod reconcile;
pub mod seed;
pub mod startup;
pub mod trace;

/// Every binary and test of the crate allocates through [`allocator::Allocator`]
/// (the bench's `bench-mimalloc-only` builds compare it with mimalloc alone).
#[cfg(not(feature = "bench-mimalloc-only"))]
#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;
#[cfg(feature = "bench-mimalloc-only")]
#[global_allocator]
static ALLOCATOR: allocator::MimallocOnly = allocator::MimallocOnly;

/// Displays an error with its whole `source()` chain, `a: b: c`, for logs.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
