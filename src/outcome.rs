//! What a request, a command or a run came to: the one vocabulary of logs,
//! metrics (the `Outcome` dimension) and automation answers. Each error type
//! says which of these it is (`CancelError::outcome`, `api::error::Refusal`);
//! nothing else names outcomes.

/// One outcome, by its fixed name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This request made the transition to `cancelled`.
    Cancelled,
    /// An earlier cancel did.
    AlreadyCancelled,
    /// A publish's status was read.
    StatusRead,
    /// The publish had already ended (a cancel's 409).
    Finished,
    NotFound,
    Unauthenticated,
    Forbidden,
    Unavailable,
    StopNotSent,
    StopUndeliverable,
    UnreadableRecord,
    /// The invocation's deadline came first (automation).
    DeadlineReached,
    /// A front door could not read the request.
    BadRequest,
    NoRoute,
    MethodNotAllowed,
    NotAcceptable,
}

impl Outcome {
    /// The name in logs and metrics (a small, fixed set).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Cancelled => "cancelled",
            Outcome::AlreadyCancelled => "already_cancelled",
            Outcome::StatusRead => "status_read",
            Outcome::Finished => "finished",
            Outcome::NotFound => "not_found",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Forbidden => "forbidden",
            Outcome::Unavailable => "unavailable",
            Outcome::StopNotSent => "stop_not_sent",
            Outcome::StopUndeliverable => "stop_undeliverable",
            Outcome::UnreadableRecord => "unreadable_record",
            Outcome::DeadlineReached => "deadline_reached",
            Outcome::BadRequest => "bad_request",
            Outcome::NoRoute => "no_route",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::NotAcceptable => "not_acceptable",
        }
    }

    /// The name in an automation answer, for the outcomes that are answers
    /// rather than errors there; `None` for the others.
    pub fn answer_name(self) -> Option<&'static str> {
        match self {
            Outcome::Cancelled => Some("cancelled"),
            Outcome::AlreadyCancelled => Some("alreadyCancelled"),
            Outcome::Finished => Some("finished"),
            Outcome::NotFound => Some("notFound"),
            _ => None,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logs, metrics' `Outcome` dimension and automation answers use these
    /// names (docs/operating.md, docs/automation.md): dashboards, alarms and
    /// callers match on them, so they are pinned here.
    #[test]
    fn the_names_are_the_documented_ones() {
        use Outcome::*;
        let all = [
            (Cancelled, "cancelled", Some("cancelled")),
            (
                AlreadyCancelled,
                "already_cancelled",
                Some("alreadyCancelled"),
            ),
            (StatusRead, "status_read", None),
            (Finished, "finished", Some("finished")),
            (NotFound, "not_found", Some("notFound")),
            (Unauthenticated, "unauthenticated", None),
            (Forbidden, "forbidden", None),
            (Unavailable, "unavailable", None),
            (StopNotSent, "stop_not_sent", None),
            (StopUndeliverable, "stop_undeliverable", None),
            (UnreadableRecord, "unreadable_record", None),
            (DeadlineReached, "deadline_reached", None),
            (BadRequest, "bad_request", None),
            (NoRoute, "no_route", None),
            (MethodNotAllowed, "method_not_allowed", None),
            (NotAcceptable, "not_acceptable", None),
        ];
        for (outcome, name, answer) in all {
            assert_eq!(outcome.as_str(), name);
            assert_eq!(outcome.to_string(), name);
            assert_eq!(outcome.answer_name(), answer, "{name}");
        }
    }
}
