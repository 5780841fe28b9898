//! Front doors: ways a request reaches the service. HTTP requests reach
//! `api::Api::handle` (through `lambda` for Lambda events, `local` for the
//! local server); cancel commands reach `automation::Automation` on IAM
//! authority (EventBridge, SQS, invoke); the schedule reaches the
//! reconciler (`schedule`). Each Lambda binary's handler is a
//! `LambdaHandler`, served by `startup::run_lambda`.

pub mod automation;
mod http_fields;
pub mod lambda;
pub mod local;
pub mod schedule;

use std::future::Future;

use std::time::{Duration, Instant};

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::value::RawValue;
use serde_json::Value;

/// What a Lambda binary does with one event: its answer, or an error
/// whose `error_type` callers can match.
pub trait LambdaHandler {
    /// The answer, serialised once by the runtime (no `Value` in between).
    type Answer: serde::Serialize;

    fn call(
        &self,
        event: LambdaEvent<RawEvent>,
    ) -> impl Future<Output = Result<Self::Answer, Diagnostic>>;
}

/// What an event a handler cannot even read as JSON is told.
const UNREADABLE: &str = "the event is not JSON this function can read";

/// The error for an event a handler cannot even read as JSON.
fn unreadable(error_type: &str) -> Diagnostic {
    Diagnostic {
        error_type: error_type.into(),
        error_message: UNREADABLE.into(),
    }
}

/// A Lambda event exactly as the Runtime API delivered it. Taking it raw
/// means the runtime's own decoding never fails (skipping a JSON value has
/// no depth limit), so every event, however deep or odd, reaches our code
/// and is refused with one of our documented error types instead of the
/// runtime's `DeserializeError`.
#[derive(Debug, serde::Deserialize)]
#[serde(transparent)]
pub struct RawEvent(Box<RawValue>);

impl RawEvent {
    /// The event's text, as delivered.
    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// The event as a JSON value; `None` when `serde_json` will not build
    /// one (nested deeper than its limit of 128).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(self.0.get()).ok()
    }
}

/// Time kept back from the invocation's deadline to post the answer.
const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// The instant by which an invocation's work must be done: Lambda's
/// deadline (milliseconds since the epoch) less `ANSWER_MARGIN`.
pub fn invocation_deadline(ctx: &lambda_runtime::Context) -> Instant {
    Instant::now() + time_left(ctx.deadline, crate::metrics::now_ms()).saturating_sub(ANSWER_MARGIN)
}

/// Time left before `deadline_ms`. Lambda sends milliseconds since the
/// epoch; an emulator that sends the time left instead (cargo lambda 1.9
/// sends `600000`) is read as such: no real deadline is before 2001.
fn time_left(deadline_ms: u64, now_ms: u64) -> Duration {
    const PLAUSIBLE_EPOCH_MS: u64 = 1_000_000_000_000;
    if deadline_ms < PLAUSIBLE_EPOCH_MS {
        return Duration::from_millis(deadline_ms);
    }
    Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// A random id in UUID form, standing in for Lambda's request id where
/// there is none (the local server, an event invoked without a context).
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    // Without the OS RNG the id is still unique enough per process for
    // logs; it is never a secret.
    if getrandom::getrandom(&mut b).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = nanos.to_le_bytes();
    }
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_instants_or_what_emulators_send() {
        let now = 1_796_158_033_967;
        assert_eq!(time_left(now + 15_000, now), Duration::from_secs(15));
        assert_eq!(time_left(now - 5, now), Duration::ZERO);
        assert_eq!(
            time_left(600_000, now),
            Duration::from_secs(600),
            "cargo lambda"
        );
        assert_eq!(time_left(0, now), Duration::ZERO);
    }
}
