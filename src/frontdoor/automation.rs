//! The automation function's events: cancels asked for on IAM authority by
//! other AWS services, not by UForge users. Three shapes, told apart by
//! explicit fields; anything else (an HTTP event included) is refused and
//! changes nothing:
//!
//! - **EventBridge**: a `Publish Cancel Requested` event on the automation
//!   bus, delivered by the template's rule wrapped as
//!   `{"ruleArn": <the rule>, "event": <the event>}` (its input transformer
//!   adds the rule, the principal the service can name). The event's `id`
//!   is the cancel's request id: a retried delivery is the same cancel.
//! - **SQS**: a batch from the command queue; each body is a bare command or
//!   an EventBridge envelope. Failed messages are reported
//!   (`batchItemFailures`) so one bad message does not fail its batch; on a
//!   FIFO queue processing stops at the first failure and reports the rest,
//!   to keep the order. The message id is the request id (stable across
//!   redeliveries), the queue's `SenderId` the principal.
//! - **Direct invoke / Step Functions**: a bare command, answered with its
//!   result; `finished` and `notFound` are results, not errors.
//!
//! A command: `{"type": "uforge.publish.cancel", "schemaVersion": 1, "uid",
//! "aid", "itid", "pitid", "reason"?, "requestedBy"?}` (in an EventBridge
//! event the `detail`, without `type`). Errors carry a stable type a Step
//! Functions `Retry`/`Catch` can match: `UForge.BackendUnavailable` and
//! `UForge.StopNotSent` are worth retrying, `UForge.InvalidCommand` and
//! `UForge.UnsupportedEvent` are not.

use serde_json::{json, Value};

use crate::cancel::{CancelError, CancelKey, Cancelled};
use crate::domain::{
    AuditText, CancelAudit, CancelSource, CancelStamp, Login, PublishKey, Timestamp,
};
use crate::ports::{Publishes, StopQueue};

pub const COMMAND_TYPE: &str = "uforge.publish.cancel";
pub const COMMAND_SCHEMA_VERSION: u64 = 1;
pub const REQUEST_DETAIL_TYPE: &str = "Publish Cancel Requested";
/// `cancelledBy` of a direct invocation: IAM decided who may invoke, but
/// Lambda does not tell the function who did.
pub const INVOKE_PRINCIPAL: &str = "lambda:invoke";

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
}

impl AutomationError {
    pub fn error_type(&self) -> &'static str {
        match self {
            AutomationError::Unsupported(_) => "UForge.UnsupportedEvent",
            AutomationError::Invalid(_) => "UForge.InvalidCommand",
            AutomationError::BackendUnavailable(_) => "UForge.BackendUnavailable",
            AutomationError::StopNotSent(_) => "UForge.StopNotSent",
        }
    }

    /// Worth retrying as it is.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            AutomationError::BackendUnavailable(_) | AutomationError::StopNotSent(_)
        )
    }
}

/// A validated cancel command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub key: PublishKey,
    pub reason: Option<AuditText>,
    pub requested_by: Option<AuditText>,
}

fn invalid(why: impl Into<String>) -> AutomationError {
    AutomationError::Invalid(why.into())
}

/// Reads a command; `typed`: it must say `"type": "uforge.publish.cancel"`
/// (bare commands do; an EventBridge event's `detail-type` says it instead).
pub fn parse_command(v: &Value, typed: bool) -> Result<Command, AutomationError> {
    if !v.is_object() {
        return Err(invalid("a command is a JSON object"));
    }
    if typed && v.get("type").and_then(Value::as_str) != Some(COMMAND_TYPE) {
        return Err(invalid(format!("\"type\" must be \"{COMMAND_TYPE}\"")));
    }
    match v.get("schemaVersion").and_then(Value::as_u64) {
        Some(COMMAND_SCHEMA_VERSION) => {}
        _ => return Err(invalid("\"schemaVersion\" must be 1")),
    }
    let uid = v
        .get("uid")
        .and_then(Value::as_str)
        .and_then(|u| Login::parse(u).ok())
        .ok_or_else(|| invalid("\"uid\" must be a UForge login"))?;
    let id = |name: &'static str| {
        v.get(name)
            .and_then(Value::as_i64)
            .ok_or_else(|| invalid(format!("\"{name}\" must be an integer (xs:long)")))
    };
    let text = |name: &'static str| match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => AuditText::parse(s)
            .map(Some)
            .map_err(|e| invalid(format!("\"{name}\": {e}"))),
        Some(_) => Err(invalid(format!("\"{name}\" must be a string"))),
    };
    Ok(Command {
        key: PublishKey {
            uid,
            aid: id("aid")?.into(),
            itid: id("itid")?.into(),
            pitid: id("pitid")?.into(),
        },
        reason: text("reason")?,
        requested_by: text("requestedBy")?,
    })
}

/// The command inside an EventBridge event (`detail-type` must be the
/// request's), and its id.
fn from_eventbridge(event: &Value) -> Result<(Command, String), AutomationError> {
    if event.get("detail-type").and_then(Value::as_str) != Some(REQUEST_DETAIL_TYPE) {
        return Err(invalid(format!(
            "an EventBridge event here must have detail-type \"{REQUEST_DETAIL_TYPE}\""
        )));
    }
    let id = event
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid("an EventBridge event without an id"))?;
    let detail = event.get("detail").ok_or_else(|| invalid("no detail"))?;
    Ok((parse_command(detail, false)?, id.to_owned()))
}

/// A principal as the service received it, bounded for the record.
fn principal(text: Option<&str>, fallback: &str) -> AuditText {
    text.and_then(|t| AuditText::parse(t).ok())
        .or_else(|| AuditText::parse(fallback).ok())
        .unwrap_or_else(|| unreachable!("the fallbacks are valid texts"))
}

/// What a command did, as the caller sees it.
pub fn result_json(result: &Result<Cancelled, CancelError>) -> Option<Value> {
    let stamp_fields = |out: &mut Value, stamp: &CancelStamp| {
        out["cancelRequestId"] = json!(stamp.request_id);
        out["cancelledAt"] = json!(stamp.at.to_rfc3339());
        out["cancelSource"] = json!(stamp.audit.source.as_str());
        out["cancelledBy"] = json!(stamp.audit.cancelled_by.as_str());
        out["reason"] = json!(stamp.audit.reason.as_ref().map(AuditText::as_str));
        out["requestedBy"] = json!(stamp.audit.requested_by.as_ref().map(AuditText::as_str));
    };
    Some(match result {
        Ok(done) => {
            let mut out = json!({
                "outcome": if done.changed { "cancelled" } else { "alreadyCancelled" },
                "state": done.record.state.as_str(),
            });
            if let Some(stamp) = &done.record.cancel {
                stamp_fields(&mut out, stamp);
            }
            out
        }
        Err(CancelError::Finished(state)) => {
            json!({"outcome": "finished", "state": state.as_str()})
        }
        Err(CancelError::NotFound) => json!({"outcome": "notFound", "state": Value::Null}),
        Err(_) => return None,
    })
}

/// Runs one command on its authority.
async fn run<P: Publishes, Q: StopQueue>(
    cancel: &CancelKey<P, Q>,
    command: Command,
    request_id: String,
    source: CancelSource,
    cancelled_by: AuditText,
) -> Result<Value, AutomationError> {
    let stamp = CancelStamp {
        request_id,
        at: Timestamp::now(),
        audit: CancelAudit {
            source,
            cancelled_by,
            reason: command.reason,
            requested_by: command.requested_by,
        },
    };
    let result = cancel.run(&command.key, &stamp).await;
    let outcome = result_json(&result);
    tracing::info!(
        request_id = %stamp.request_id,
        source = %stamp.audit.source,
        principal = %stamp.audit.cancelled_by,
        reason = stamp.audit.reason.as_ref().map(AuditText::as_str),
        requested_by = stamp.audit.requested_by.as_ref().map(AuditText::as_str),
        publish = %command.key,
        result = outcome.as_ref().and_then(|o| o["outcome"].as_str()).unwrap_or("failed"),
        "automation cancel"
    );
    match (outcome, result) {
        (Some(outcome), _) => Ok(outcome),
        (None, Err(e @ CancelError::StopNotSent(_))) => Err(AutomationError::StopNotSent(e)),
        (None, Err(e)) => Err(AutomationError::BackendUnavailable(e)),
        (None, Ok(_)) => unreachable!("every success has a result"),
    }
}

/// Serves one event of any of the three shapes. `request_id` is the Lambda
/// invocation's, the id of a directly invoked command.
pub async fn handle<P: Publishes, Q: StopQueue>(
    cancel: &CancelKey<P, Q>,
    event: &Value,
    request_id: &str,
) -> Result<Value, AutomationError> {
    let refuse = |e: AutomationError| {
        tracing::warn!(request_id, error = %e, "refused automation event");
        e
    };
    // An EventBridge delivery, wrapped by the template's rule.
    if let (Some(rule), Some(inner)) = (event.get("ruleArn"), event.get("event")) {
        let (command, id) = from_eventbridge(inner).map_err(refuse)?;
        let by = principal(rule.as_str(), "eventbridge");
        return run(cancel, command, id, CancelSource::EventBridge, by).await;
    }
    // An SQS batch.
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        if records
            .iter()
            .all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"))
            && !records.is_empty()
        {
            return Ok(sqs_batch(cancel, records).await);
        }
        return Err(refuse(AutomationError::Unsupported(
            "Records that are not all SQS messages",
        )));
    }
    // A bare command (direct invoke, Step Functions).
    if event.get("type").is_some() {
        let command = parse_command(event, true).map_err(refuse)?;
        let by = principal(None, INVOKE_PRINCIPAL);
        return run(
            cancel,
            command,
            request_id.to_owned(),
            CancelSource::Invoke,
            by,
        )
        .await;
    }
    Err(refuse(AutomationError::Unsupported(
        "this function takes cancel commands (EventBridge, SQS, direct invoke), not HTTP requests",
    )))
}

/// One SQS batch: each message is a command; the answer lists the failed
/// ones (`ReportBatchItemFailures`).
async fn sqs_batch<P: Publishes, Q: StopQueue>(
    cancel: &CancelKey<P, Q>,
    records: &[Value],
) -> Value {
    let fifo = records.iter().any(|r| {
        r.get("eventSourceARN")
            .and_then(Value::as_str)
            .is_some_and(|a| a.ends_with(".fifo"))
    });
    let mut failures = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let id = record
            .get("messageId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let done = sqs_message(cancel, record).await;
        if let Err(e) = done {
            tracing::warn!(message_id = id, error = %e, retryable = e.retryable(), "command message failed");
            if fifo {
                // Keep the queue's order: nothing after a failure runs now.
                failures.extend(records[i..].iter().map(|r| r["messageId"].clone()));
                break;
            }
            failures.push(json!(id));
        }
    }
    json!({
        "batchItemFailures": failures
            .into_iter()
            .map(|id| json!({"itemIdentifier": id}))
            .collect::<Vec<_>>()
    })
}

async fn sqs_message<P: Publishes, Q: StopQueue>(
    cancel: &CancelKey<P, Q>,
    record: &Value,
) -> Result<Value, AutomationError> {
    let message_id = record
        .get("messageId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid("an SQS message without a messageId"))?;
    let body: Value = record
        .get("body")
        .and_then(Value::as_str)
        .and_then(|b| serde_json::from_str(b).ok())
        .ok_or_else(|| invalid("the message body is not JSON"))?;
    let command = if body.get("detail-type").is_some() {
        from_eventbridge(&body)?.0
    } else {
        parse_command(&body, true)?
    };
    let sender = record
        .get("attributes")
        .and_then(|a| a.get("SenderId"))
        .and_then(Value::as_str);
    let by = principal(sender, "sqs");
    run(
        cancel,
        command,
        message_id.to_owned(),
        CancelSource::Sqs,
        by,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PublishState;

    fn command() -> Value {
        json!({"type": COMMAND_TYPE, "schemaVersion": 1, "uid": "alice", "aid": 1, "itid": 2, "pitid": 3,
               "reason": "budget exceeded", "requestedBy": "watchdog"})
    }

    #[test]
    fn commands_are_validated_field_by_field() {
        let c = parse_command(&command(), true).unwrap();
        assert_eq!(c.key.to_string(), "alice/1/2/3");
        assert_eq!(c.reason.unwrap().as_str(), "budget exceeded");
        let mut no_type = command();
        no_type.as_object_mut().unwrap().remove("type");
        assert!(parse_command(&no_type, true).is_err());
        assert!(
            parse_command(&no_type, false).is_ok(),
            "an EventBridge detail has no type"
        );
        for (field, bad) in [
            ("schemaVersion", json!(2)),
            ("schemaVersion", json!("1")),
            ("uid", json!("al ice")),
            ("uid", json!(7)),
            ("aid", json!("1")),
            ("pitid", json!(1.5)),
            ("pitid", json!(null)),
            ("reason", json!("a\nb")),
            ("reason", json!("x".repeat(300))),
            ("requestedBy", json!(["x"])),
        ] {
            let mut c = command();
            c[field] = bad.clone();
            let err = parse_command(&c, true).unwrap_err();
            assert_eq!(err.error_type(), "UForge.InvalidCommand", "{field} {bad}");
            assert!(!err.retryable());
        }
        assert!(parse_command(&json!([1]), true).is_err());
    }

    #[test]
    fn eventbridge_events_must_be_cancel_requests() {
        let event = json!({"id": "e-1", "detail-type": REQUEST_DETAIL_TYPE, "source": "acme.watchdog",
                           "detail": {"schemaVersion": 1, "uid": "bob", "aid": 10, "itid": 20, "pitid": 30}});
        let (c, id) = from_eventbridge(&event).unwrap();
        assert_eq!(
            (c.key.to_string(), id.as_str()),
            ("bob/10/20/30".to_owned(), "e-1")
        );
        let mut other = event.clone();
        other["detail-type"] = json!("Publish Cancelled");
        assert!(
            from_eventbridge(&other).is_err(),
            "our own outbound events are not requests"
        );
    }

    #[test]
    fn error_types_are_stable_and_say_what_to_retry() {
        let backend = AutomationError::BackendUnavailable(CancelError::NotFound);
        assert_eq!(backend.error_type(), "UForge.BackendUnavailable");
        assert!(backend.retryable());
        let unsupported = AutomationError::Unsupported("x");
        assert_eq!(unsupported.error_type(), "UForge.UnsupportedEvent");
        assert!(!unsupported.retryable());
        assert_eq!(
            result_json(&Err(CancelError::Finished(PublishState::Published))),
            Some(json!({"outcome": "finished", "state": "published"}))
        );
        assert_eq!(
            result_json(&Err(CancelError::NotFound)),
            Some(json!({"outcome": "notFound", "state": null}))
        );
    }
}
