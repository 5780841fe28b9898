//! What an automation event can fail with, by the stable type a Step
//! Functions `Retry`/`Catch` matches (docs/automation.md, "When it fails").

use crate::cancel::CancelError;

/// Why an automation event failed; `error_type` is what callers match on.
#[derive(Debug, thiserror::Error)]
pub enum AutomationError {
    /// Not an event of this function (an HTTP event, an unknown shape).
    #[error("unsupported event: {0}")]
    Unsupported(&'static str),
    /// An event of this function whose command is not valid.
    #[error("invalid cancel command: {0}")]
    Invalid(String),
    #[error("the publishes table is unavailable; retry")]
    BackendUnavailable(#[source] CancelError),
    #[error("the publish is cancelled but its stop message was not sent; retry to send it")]
    StopNotSent(#[source] CancelError),
    #[error(
        "the publish is cancelled but the queue refuses its stop message; parked for the operators"
    )]
    StopUndeliverable(#[source] CancelError),
    #[error("the publish record cannot be read; reported to the operators")]
    UnreadableRecord(#[source] CancelError),
    /// The invocation's deadline came before the command could run or end.
    #[error("the invocation's deadline came first; retry")]
    DeadlineReached,
}

impl AutomationError {
    pub fn error_type(&self) -> &'static str {
        match self {
            AutomationError::Unsupported(_) => "UForge.UnsupportedEvent",
            AutomationError::Invalid(_) => "UForge.InvalidCommand",
            AutomationError::BackendUnavailable(_) => "UForge.BackendUnavailable",
            AutomationError::StopNotSent(_) => "UForge.StopNotSent",
            AutomationError::StopUndeliverable(_) => "UForge.StopUndeliverable",
            AutomationError::UnreadableRecord(_) => "UForge.UnreadableRecord",
            AutomationError::DeadlineReached => "UForge.DeadlineReached",
        }
    }

    /// Worth retrying as it is.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            AutomationError::BackendUnavailable(_)
                | AutomationError::StopNotSent(_)
                | AutomationError::DeadlineReached
        )
    }
}

/// An invalid command, saying why.
pub fn invalid(why: impl Into<String>) -> AutomationError {
    AutomationError::Invalid(why.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_are_stable_and_say_what_to_retry() {
        let backend = AutomationError::BackendUnavailable(CancelError::NotFound);
        assert_eq!(backend.error_type(), "UForge.BackendUnavailable");
        assert!(backend.retryable());
        let unsupported = AutomationError::Unsupported("x");
        assert_eq!(unsupported.error_type(), "UForge.UnsupportedEvent");
        assert!(!unsupported.retryable());
        assert!(invalid("x").error_type() == "UForge.InvalidCommand" && !invalid("x").retryable());
    }
}
