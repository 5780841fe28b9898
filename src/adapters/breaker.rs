//! Failing fast while a dependency is down (issue 32): after a few calls
//! in a row fail the way an outage does (no answer in time, no connection,
//! a 5xx, throttling), the adapter stops calling for a cool-down and
//! answers at once with a transient `BackendError`; then one call goes
//! through as a probe, and its outcome closes the breaker or opens it for
//! twice as long (at most `MAX_COOL_DOWN`). So a request does not wait out
//! the SDK's whole operation timeout for a dependency this process knows
//! is down, the account's concurrency is not held by waiting requests,
//! and recovery is noticed by one probe per process, not a flood.
//!
//! A refusal for the request's own contents (a failed condition, a
//! validation error, an invalid message) is an answer, not an outage: it
//! counts as a success.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::ports::BackendError;

/// Outage-like failures in a row that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 3;
/// The first cool-down: what a UForge client's `Retry-After: 1` waits.
pub const COOL_DOWN: Duration = Duration::from_secs(1);
/// The longest cool-down between probes.
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(8);
/// A probe that has not reported by then (its caller gave up) no longer
/// blocks the next one: longer than any bounded SDK call (4 s).
const PROBE_LAPSES: Duration = Duration::from_secs(5);

/// One dependency's breaker, shared by every clone of its adapter.
#[derive(Debug)]
pub struct Breaker {
    name: &'static str,
    state: Mutex<State>,
    failures_to_open: u32,
    cool_down: Duration,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, cool_down: Duration },
    Probing { since: Instant, cool_down: Duration },
}

/// What a call was admitted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Call,
    Probe,
}

impl Breaker {
    pub fn new(name: &'static str) -> Breaker {
        Breaker::with(name, FAILURES_TO_OPEN, COOL_DOWN)
    }

    /// A breaker opening after `failures_to_open` failures in a row, for
    /// `cool_down` first (tests use short ones).
    pub fn with(name: &'static str, failures_to_open: u32, cool_down: Duration) -> Breaker {
        Breaker {
            name,
            state: Mutex::new(State::Closed { failures: 0 }),
            failures_to_open: failures_to_open.max(1),
            cool_down,
        }
    }

    /// `false` while open (a probe in flight counts as open).
    pub fn is_closed(&self) -> bool {
        matches!(*self.lock(), State::Closed { .. })
    }

    /// Whether `admit` would let a call through now (closed, or a probe
    /// is due), without taking the probe.
    pub fn would_admit(&self) -> bool {
        let now = Instant::now();
        match *self.lock() {
            State::Closed { .. } => true,
            State::Open { until, .. } => now >= until,
            State::Probing { since, .. } => now.duration_since(since) >= PROBE_LAPSES,
        }
    }

    /// Whether a call may go now, and as what; `None`: fail fast.
    pub fn admit(&self) -> Option<Admission> {
        let mut state = self.lock();
        if let State::Closed { .. } = *state {
            // The common case: no clock read.
            return Some(Admission::Call);
        }
        let now = Instant::now();
        match *state {
            State::Closed { .. } => Some(Admission::Call),
            State::Open { until, cool_down } if now >= until => {
                *state = State::Probing {
                    since: now,
                    cool_down,
                };
                Some(Admission::Probe)
            }
            State::Probing { since, cool_down } if now.duration_since(since) >= PROBE_LAPSES => {
                *state = State::Probing {
                    since: now,
                    cool_down,
                };
                Some(Admission::Probe)
            }
            State::Open { .. } | State::Probing { .. } => None,
        }
    }

    /// How an admitted call went: `healthy` unless it failed as an outage.
    pub fn record(&self, admission: Admission, healthy: bool) {
        let mut state = self.lock();
        let before = *state;
        if healthy && matches!(before, State::Closed { failures: 0 }) {
            // The common case: nothing changes, no clock read.
            return;
        }
        let now = Instant::now();
        *state = match (before, healthy) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.failures_to_open => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (State::Closed { .. }, false) => State::Open {
                until: now + self.cool_down,
                cool_down: self.cool_down,
            },
            (State::Probing { cool_down, .. }, false) if admission == Admission::Probe => {
                let cool_down = (cool_down * 2).min(MAX_COOL_DOWN.max(self.cool_down));
                State::Open {
                    until: now + cool_down,
                    cool_down,
                }
            }
            // A call admitted before the breaker opened, failing late:
            // already counted by the opening.
            (other, false) => other,
        };
        let opened = !matches!(before, State::Open { .. })
            && matches!(*state, State::Open { .. })
            && !matches!(before, State::Probing { .. });
        if opened {
            tracing::warn!(
                dependency = self.name,
                "failing fast: calls fail as in an outage; probing again shortly"
            );
        } else if healthy && !matches!(before, State::Closed { .. }) {
            tracing::info!(dependency = self.name, "dependency answers again");
        }
    }

    /// Runs an SDK call through the breaker: `Err` at once, without
    /// calling, while open; otherwise the call's own result, its outcome
    /// recorded.
    pub async fn call<T, E, R>(
        &self,
        call: impl std::future::Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<Result<T, SdkError<E, R>>, BackendError>
    where
        E: ProvideErrorMetadata,
        R: HttpStatus,
    {
        let Some(admission) = self.admit() else {
            return Err(self.fast_failure());
        };
        let result = call.await;
        let healthy = match &result {
            Ok(_) => true,
            Err(e) => !is_outage(e),
        };
        self.record(admission, healthy);
        Ok(result)
    }

    /// The error a call gets while the breaker is open: transient.
    pub fn fast_failure(&self) -> BackendError {
        BackendError::msg(match self.name {
            "sqs" => "the stop queue is failing: not called (fail fast)",
            "dynamodb" => "DynamoDB is failing: not called (fail fast)",
            _ => "a dependency is failing: not called (fail fast)",
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is one assignment: a poisoned lock's state is whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The HTTP status of an SDK response, whatever its type.
pub trait HttpStatus {
    fn status(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Whether a failed call failed as an outage does: no answer (timeout,
/// connection), a broken answer, a 5xx, or throttling. A 4xx refusal of
/// the request itself is an answer.
pub fn is_outage<E: ProvideErrorMetadata, R: HttpStatus>(e: &SdkError<E, R>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(ctx) => {
            ctx.raw().status() >= 500
                || matches!(
                    ctx.err().code(),
                    Some(
                        "ThrottlingException"
                            | "ProvisionedThroughputExceededException"
                            | "RequestLimitExceeded"
                            | "Throttling"
                            | "ThrottlingException.Sqs"
                            | "RequestThrottled"
                            | "KMS.ThrottlingException"
                    )
                )
        }
        // The SDK could not build the request: the request's own fault.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_a_success_resets_the_count() {
        let b = Breaker::with("test", 3, Duration::from_secs(60));
        for _ in 0..2 {
            let a = b.admit().unwrap();
            b.record(a, false);
        }
        let a = b.admit().unwrap();
        b.record(a, true);
        for _ in 0..2 {
            let a = b.admit().unwrap();
            b.record(a, false);
        }
        assert!(b.is_closed(), "two in a row since the success");
        let a = b.admit().unwrap();
        b.record(a, false);
        assert!(!b.is_closed());
        assert_eq!(b.admit(), None, "open: fail fast");
    }

    #[test]
    fn one_probe_at_a_time_after_the_cool_down() {
        let b = Breaker::with("test", 1, Duration::from_millis(20));
        let a = b.admit().unwrap();
        b.record(a, false);
        assert_eq!(b.admit(), None);
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(b.admit(), Some(Admission::Probe));
        assert_eq!(b.admit(), None, "the probe is in flight: no flood");
        b.record(Admission::Probe, false);
        assert_eq!(b.admit(), None, "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(b.admit(), None, "for twice as long");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(b.admit(), Some(Admission::Probe));
        b.record(Admission::Probe, true);
        assert!(b.is_closed());
        assert_eq!(b.admit(), Some(Admission::Call));
    }

    #[test]
    fn a_late_failure_of_a_call_admitted_before_the_opening_changes_nothing() {
        let b = Breaker::with("test", 1, Duration::from_millis(10));
        let early = b.admit().unwrap();
        let late = b.admit().unwrap();
        b.record(early, false);
        std::thread::sleep(Duration::from_millis(15));
        assert_eq!(b.admit(), Some(Admission::Probe));
        b.record(late, false);
        assert_eq!(b.admit(), None, "still probing");
        b.record(Admission::Probe, true);
        assert!(b.is_closed());
    }

    #[test]
    fn the_cool_down_never_grows_past_its_bound() {
        let b = Breaker::with("test", 1, Duration::from_millis(1));
        let a = b.admit().unwrap();
        b.record(a, false);
        for _ in 0..16 {
            let cool_down = match *b.lock() {
                State::Open { cool_down, .. } | State::Probing { cool_down, .. } => cool_down,
                State::Closed { .. } => Duration::ZERO,
            };
            *b.lock() = State::Probing {
                since: Instant::now(),
                cool_down,
            };
            b.record(Admission::Probe, false);
        }
        let State::Open { cool_down, .. } = *b.lock() else {
            panic!("open");
        };
        assert_eq!(cool_down, MAX_COOL_DOWN);
    }
}
