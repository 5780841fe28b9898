//! The automation function's events: cancels asked for on IAM authority by
//! other AWS services, not by UForge users. Three shapes, each accepted
//! only through its own door; anything else (an HTTP event included) is
//! refused and changes nothing:
//!
//! - **EventBridge**: a `Publish Cancel Requested` event on the automation
//!   bus, delivered by the template's rule wrapped as
//!   `{"ruleArn": <the rule>, "event": <the event>}` (its input transformer
//!   adds the rule, the principal the service can name). The event's `id`
//!   is the cancel's request id: a retried delivery is the same cancel.
//!   The event's `account` and `source` are recorded beside the rule.
//! - **SQS**: a batch from the command queue; each body is a bare command or
//!   an EventBridge envelope. Failed messages are reported
//!   (`batchItemFailures`) so one bad message does not fail its batch; on a
//!   FIFO queue processing stops at the first failure and reports the rest,
//!   to keep the order. The message id is the request id (stable across
//!   redeliveries), the queue's `SenderId` the principal.
//! - **Direct invoke / Step Functions**: a bare command, answered with its
//!   result; `finished` and `notFound` are results, not errors.
//!
//! The door is what Lambda says was invoked (`Door::of`), never the
//! payload: the rule and the queue's mapping invoke the `events` alias,
//! which nobody else is granted, and direct callers are granted the
//! function itself. So a direct invoker who writes an EventBridge or SQS
//! shape is refused (`UForge.UnsupportedEvent`) rather than recorded as the
//! rule or a queue sender. Local tools cannot invoke an alias: on the
//! in-memory stores (`Door::Local`) every shape is taken.
//!
//! A command: `{"type": "uforge.publish.cancel", "schemaVersion": 1, "uid",
//! "aid", "itid", "pitid", "reason"?, "requestedBy"?}` (in an EventBridge
//! event the `detail`, without `type`). Errors carry a stable type a Step
//! Functions `Retry`/`Catch` can match: `UForge.BackendUnavailable` and
//! `UForge.StopNotSent` are worth retrying; `UForge.InvalidCommand`,
//! `UForge.UnsupportedEvent`, `UForge.StopUndeliverable` and
//! `UForge.UnreadableRecord` are not.
//!
//! Request ids from outside (an event `id`, a `messageId`, the invocation's
//! id) become `RequestId`s: kept when they fit SQS's deduplication ids,
//! else replaced by a digest of themselves. An SQS batch runs within the
//! invocation's deadline: no command starts when too little time is left,
//! none runs past it, and those are reported as failed items (redelivered).
//! A standard queue's commands run concurrently; a FIFO queue's in order
//! within each message group.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::stream::{self, StreamExt as _};
use serde::Deserialize as _;
use serde_json::{json, Value};

use crate::auth::AuthTrace;
use crate::cancel::{outcome_of, CancelError, Cancelled, Canceller};
use crate::domain::{
    AuditText, CancelAudit, CancelSource, CancelStamp, Login, PublishKey, RequestId, Timestamp,
};
use crate::metrics::{now_ms, Metrics, RequestFacts};
use crate::outcome::Outcome;
use crate::ports::{CancelWrites, StopQueue};

pub const COMMAND_TYPE: &str = "uforge.publish.cancel";
pub const COMMAND_SCHEMA_VERSION: u64 = 1;
pub const REQUEST_DETAIL_TYPE: &str = "Publish Cancel Requested";
/// `cancelledBy` of a direct invocation: IAM decided who may invoke, but
/// Lambda does not tell the function who did.
pub const INVOKE_PRINCIPAL: &str = "lambda:invoke";

/// The `Route` of the automation's metric lines.
pub const AUTOMATION_ROUTE: &str = "automation";

/// The alias the template's event sources invoke (`AutoPublishAlias`).
pub const EVENTS_ALIAS: &str = "events";

/// How an invocation reached the function, from what Lambda says was
/// invoked (`invoked_function_arn`), which the caller cannot write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// Through the `events` alias: the EventBridge rule or the command
    /// queue's mapping, the only principals granted it.
    EventSources,
    /// The function itself (unqualified, `$LATEST` or a version): a direct
    /// invoker or Step Functions.
    Direct,
    /// The in-memory stores under a local tool (`cargo lambda`, `sam
    /// local`), which cannot invoke an alias: every shape is taken.
    Local,
}

impl Door {
    /// The door of an invocation of `invoked_function_arn`
    /// (`arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]`).
    pub fn of(invoked_function_arn: &str) -> Door {
        match invoked_function_arn.split(':').nth(7) {
            Some(EVENTS_ALIAS) => Door::EventSources,
            _ => Door::Direct,
        }
    }
}

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
fn from_eventbridge(
    event: &EventBridgeEvent<Value>,
) -> Result<(Command, RequestId), AutomationError> {
    if event.detail_type != REQUEST_DETAIL_TYPE {
        return Err(invalid(format!(
            "an EventBridge event here must have detail-type \"{REQUEST_DETAIL_TYPE}\""
        )));
    }
    let id = event
        .id
        .as_deref()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid("an EventBridge event without an id"))?;
    Ok((
        parse_command(&event.detail, false)?,
        RequestId::from_external(id),
    ))
}

/// An EventBridge event, typed (`aws_lambda_events`).
fn eventbridge_event(v: &Value) -> Result<EventBridgeEvent<Value>, AutomationError> {
    EventBridgeEvent::deserialize(v).map_err(|e| invalid(format!("not an EventBridge event: {e}")))
}

/// A direct invoker wrote an EventBridge or SQS shape: refused, never
/// recorded as the rule or a queue's sender.
const NOT_DIRECT: AutomationError = AutomationError::Unsupported(
    "EventBridge and SQS deliveries are taken only through the function's events alias, which only the rule and the command queue may invoke",
);

/// A principal as the service received it, made valid for the record.
fn principal(text: Option<&str>, fallback: &'static str) -> AuditText {
    text.and_then(AuditText::lossy)
        .or_else(|| AuditText::lossy(fallback))
        .unwrap_or_else(|| unreachable!("the fallbacks are valid texts"))
}

/// What EventBridge says of an event's sender: its `account` (set by
/// EventBridge) and `source` (the sender's).
fn origin_of(event: &EventBridgeEvent<Value>) -> Option<AuditText> {
    let account = event.account.as_deref().unwrap_or("?");
    let source = if event.source.is_empty() {
        "?"
    } else {
        &event.source
    };
    AuditText::lossy(&format!("account {account} source {source}"))
}

/// What a command did, as the caller sees it: an answer for the outcomes
/// that are answers (`Outcome::answer_name`), else the cancel's error.
pub fn answer(result: Result<Cancelled, CancelError>) -> Result<Value, CancelError> {
    let Some(outcome) = outcome_of(&result).answer_name() else {
        return result.map(|_| Value::Null);
    };
    let mut out = json!({"outcome": outcome, "state": Value::Null});
    match result {
        Ok(done) => {
            out["state"] = json!(done.record.state.as_str());
            if let Some(stamp) = &done.record.cancel {
                out["cancelRequestId"] = json!(stamp.request_id.as_str());
                out["cancelledAt"] = json!(stamp.at.to_rfc3339());
                out["cancelSource"] = json!(stamp.audit.source.as_str());
                out["cancelledBy"] = json!(stamp.audit.cancelled_by.as_str());
                let text = |t: &Option<AuditText>| json!(t.as_ref().map(AuditText::as_str));
                out["reason"] = text(&stamp.audit.reason);
                out["requestedBy"] = text(&stamp.audit.requested_by);
                out["origin"] = text(&stamp.audit.origin);
            }
        }
        Err(CancelError::Finished(state)) => out["state"] = json!(state.as_str()),
        Err(_) => {}
    }
    Ok(out)
}

/// Commands are not started with less than this left before the deadline:
/// one command is usually milliseconds, and one started late is cut off at
/// the deadline anyway.
pub const START_MARGIN: Duration = Duration::from_secs(1);
/// At most this many commands of a standard-queue batch at once.
pub const BATCH_CONCURRENCY: usize = 10;

/// The automation function's handler: the cancel on its IAM authority, and
/// one metric line per command (Lambda only).
#[derive(Debug)]
pub struct Automation<P, Q> {
    pub cancel: Canceller<P, Q>,
    pub metrics: Option<Metrics>,
    /// On the in-memory stores, under a tool that cannot invoke an alias:
    /// every shape is taken (`Door::Local`).
    pub local: bool,
}

impl<P: CancelWrites, Q: StopQueue> super::LambdaHandler for Automation<P, Q> {
    async fn call(
        &self,
        event: lambda_runtime::LambdaEvent<super::RawEvent>,
    ) -> Result<Value, lambda_runtime::Diagnostic> {
        let deadline = super::invocation_deadline(&event.context);
        let payload = event
            .payload
            .json()
            .ok_or_else(|| super::unreadable("UForge.UnsupportedEvent"))?;
        let door = if self.local {
            Door::Local
        } else {
            Door::of(&event.context.invoked_function_arn)
        };
        self.handle(&payload, door, &event.context.request_id, deadline)
            .await
            .map_err(|e| lambda_runtime::Diagnostic {
                error_type: e.error_type().into(),
                error_message: e.to_string(),
            })
    }
}

impl<P: CancelWrites, Q: StopQueue> Automation<P, Q> {
    /// Without metrics, doors decided by the invoked ARN.
    pub fn new(cancel: Canceller<P, Q>) -> Self {
        Automation {
            cancel,
            metrics: None,
            local: false,
        }
    }

    /// Serves one event of the shapes `door` takes. `request_id` is the
    /// Lambda invocation's, the id of a directly invoked command; no
    /// command of a batch runs past `deadline`.
    pub async fn handle(
        &self,
        event: &Value,
        door: Door,
        request_id: &str,
        deadline: Instant,
    ) -> Result<Value, AutomationError> {
        let refuse = |e: AutomationError| {
            tracing::warn!(request_id, ?door, error = %e, "refused automation event");
            e
        };
        let from_event_sources = door != Door::Direct;
        let direct = door != Door::EventSources;
        // An EventBridge delivery, wrapped by the template's rule.
        if let (Some(rule), Some(inner)) = (event.get("ruleArn"), event.get("event")) {
            if !from_event_sources {
                return Err(refuse(NOT_DIRECT));
            }
            let inner = eventbridge_event(inner).map_err(refuse)?;
            let (command, id) = from_eventbridge(&inner).map_err(refuse)?;
            let by = principal(rule.as_str(), "eventbridge");
            let origin = origin_of(&inner);
            return self
                .run(command, id, CancelSource::EventBridge, by, origin, deadline)
                .await;
        }
        // An SQS batch.
        if event.get("Records").is_some_and(Value::is_array) {
            if !from_event_sources {
                return Err(refuse(NOT_DIRECT));
            }
            let batch = SqsEvent::deserialize(event).map_err(|_| {
                refuse(AutomationError::Unsupported(
                    "Records that are not SQS messages",
                ))
            })?;
            if batch
                .records
                .iter()
                .all(|r| r.event_source.as_deref() == Some("aws:sqs"))
                && !batch.records.is_empty()
            {
                let answer = self.sqs_batch(&batch.records, deadline).await;
                // A struct of strings: it serialises.
                return Ok(serde_json::to_value(answer).unwrap_or_default());
            }
            return Err(refuse(AutomationError::Unsupported(
                "Records that are not all SQS messages",
            )));
        }
        // A bare command (direct invoke, Step Functions).
        if event.get("type").is_some() {
            if !direct {
                return Err(refuse(AutomationError::Unsupported(
                    "the events alias takes EventBridge and SQS deliveries only; invoke the function itself",
                )));
            }
            let command = parse_command(event, true).map_err(refuse)?;
            let by = principal(None, INVOKE_PRINCIPAL);
            let id = RequestId::from_external(request_id);
            return self
                .run(command, id, CancelSource::Invoke, by, None, deadline)
                .await;
        }
        Err(refuse(AutomationError::Unsupported(
            "this function takes cancel commands (EventBridge, SQS, direct invoke), not HTTP requests",
        )))
    }

    /// Runs one command on its authority, within the invocation's
    /// `deadline`: a cancel is up to five SDK calls of at most 4 s each
    /// (the write, a claim, two sends, the clearing), more than a
    /// function's 15 s, so the deadline, not the calls' own bounds, ends
    /// it. One cut off is `DeadlineReached` (retryable): if its write was
    /// made, its stop is pending, and its claim lapses within a lease.
    async fn run(
        &self,
        command: Command,
        request_id: RequestId,
        source: CancelSource,
        cancelled_by: AuditText,
        origin: Option<AuditText>,
        deadline: Instant,
    ) -> Result<Value, AutomationError> {
        let started = Instant::now();
        if started + START_MARGIN > deadline {
            return Err(AutomationError::DeadlineReached);
        }
        let audit = CancelAudit {
            source,
            cancelled_by,
            reason: command.reason,
            requested_by: command.requested_by,
            origin,
        };
        let stamp = CancelStamp::new(request_id, Timestamp::now(), audit);
        let result =
            tokio::time::timeout_at(deadline.into(), self.cancel.run(&command.key, &stamp)).await;
        let Ok(result) = result else {
            // Cut off: if the write was made, its stop is pending and the
            // redelivery (or the reconciler) sends it.
            self.record(&stamp, Outcome::DeadlineReached, started);
            return Err(AutomationError::DeadlineReached);
        };
        let outcome = outcome_of(&result);
        tracing::info!(
            request_id = %stamp.request_id,
            source = %stamp.audit.source,
            principal = %stamp.audit.cancelled_by,
            reason = stamp.audit.reason.as_ref().map(AuditText::as_str),
            requested_by = stamp.audit.requested_by.as_ref().map(AuditText::as_str),
            origin = stamp.audit.origin.as_ref().map(AuditText::as_str),
            publish = %command.key,
            result = outcome.as_str(),
            "automation cancel"
        );
        self.record(&stamp, outcome, started);
        answer(result).map_err(|e| match e {
            CancelError::StopNotSent(_) => AutomationError::StopNotSent(e),
            CancelError::StopUndeliverable(_) => AutomationError::StopUndeliverable(e),
            CancelError::Unreadable(_) => AutomationError::UnreadableRecord(e),
            // Every other error of a cancel on IAM authority is the store's.
            _ => AutomationError::BackendUnavailable(e),
        })
    }

    /// One metric line per command, the HTTP function's request line.
    fn record(&self, stamp: &CancelStamp, outcome: Outcome, started: Instant) {
        if let Some(m) = &self.metrics {
            let facts = RequestFacts {
                request_id: stamp.request_id.as_str(),
                route: AUTOMATION_ROUTE,
                outcome,
                auth: AuthTrace::default(),
                latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            };
            m.emit(&m.request_line(&facts, now_ms()));
        }
    }

    /// One SQS batch: each message is a command; the answer lists the
    /// failed ones (`ReportBatchItemFailures`). A standard queue's commands
    /// run concurrently; a FIFO queue's run in order within each message
    /// group (a failure fails the rest of its group), groups concurrently.
    async fn sqs_batch(&self, records: &[SqsMessage], deadline: Instant) -> SqsBatchResponse {
        let fifo = records.iter().any(|r| {
            r.event_source_arn
                .as_deref()
                .is_some_and(|a| a.ends_with(".fifo"))
        });
        // Lanes: each runs its messages in order; lanes run concurrently.
        let mut lanes: BTreeMap<String, Vec<&SqsMessage>> = BTreeMap::new();
        for (i, record) in records.iter().enumerate() {
            let lane = if fifo {
                record
                    .attributes
                    .get("MessageGroupId")
                    .cloned()
                    .unwrap_or_default()
            } else {
                format!("{i:05}")
            };
            lanes.entry(lane).or_default().push(record);
        }
        let failed: Vec<String> = stream::iter(lanes.into_values())
            .map(|lane| self.sqs_lane(lane, deadline))
            .buffer_unordered(BATCH_CONCURRENCY)
            .flat_map(stream::iter)
            .collect()
            .await;
        let mut answer = SqsBatchResponse::default();
        answer.batch_item_failures = failed
            .into_iter()
            .map(|id| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                failure
            })
            .collect();
        answer
    }

    /// Messages in order; the ids of the failed one and all after it.
    async fn sqs_lane(&self, lane: Vec<&SqsMessage>, deadline: Instant) -> Vec<String> {
        for (i, record) in lane.iter().enumerate() {
            if let Err(e) = self.sqs_message(record, deadline).await {
                tracing::warn!(message_id = record.message_id.as_deref().unwrap_or_default(),
                    error = %e, retryable = e.retryable(), "command message failed");
                return lane[i..]
                    .iter()
                    .map(|r| r.message_id.clone().unwrap_or_default())
                    .collect();
            }
        }
        Vec::new()
    }

    async fn sqs_message(
        &self,
        record: &SqsMessage,
        deadline: Instant,
    ) -> Result<Value, AutomationError> {
        let message_id = record
            .message_id
            .as_deref()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| invalid("an SQS message without a messageId"))?;
        let body: Value = record
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok())
            .ok_or_else(|| invalid("the message body is not JSON"))?;
        let command = if body.get("detail-type").is_some() {
            from_eventbridge(&eventbridge_event(&body)?)?.0
        } else {
            parse_command(&body, true)?
        };
        let sender = record.attributes.get("SenderId").map(String::as_str);
        let by = principal(sender, "sqs");
        self.run(
            command,
            RequestId::from_external(message_id),
            CancelSource::Sqs,
            by,
            None,
            deadline,
        )
        .await
    }
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
        let typed = |e: &Value| eventbridge_event(e).unwrap();
        let (c, id) = from_eventbridge(&typed(&event)).unwrap();
        assert_eq!(
            (c.key.to_string(), id.as_str()),
            ("bob/10/20/30".to_owned(), "e-1")
        );
        let mut long = event.clone();
        long["id"] = json!("\u{ffff}".repeat(200));
        let (_, id) = from_eventbridge(&typed(&long)).unwrap();
        assert!(id.as_str().starts_with("sha256:"), "mapped to a valid id");
        let mut other = event.clone();
        other["detail-type"] = json!("Publish Cancelled");
        assert!(
            from_eventbridge(&typed(&other)).is_err(),
            "our own outbound events are not requests"
        );
    }

    #[test]
    fn the_door_is_the_invoked_qualifier() {
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:stack-automation";
        assert_eq!(Door::of(arn), Door::Direct);
        assert_eq!(Door::of(&format!("{arn}:events")), Door::EventSources);
        assert_eq!(Door::of(&format!("{arn}:$LATEST")), Door::Direct);
        assert_eq!(Door::of(&format!("{arn}:7")), Door::Direct);
        assert_eq!(Door::of(&format!("{arn}:eventsx")), Door::Direct);
        assert_eq!(
            Door::of("arn:aws-cn:lambda:cn-north-1:1:function:f:events"),
            Door::EventSources
        );
        assert_eq!(Door::of(""), Door::Direct);
    }

    /// Each shape through each door: what is refused changes nothing;
    /// what is taken is recorded as the door says.
    #[tokio::test]
    async fn shapes_are_taken_only_through_their_door() {
        use crate::adapters::memory::{MemoryPublishes, MemoryQueue};
        use crate::domain::PublishRecord;
        let key = |pitid: i64| PublishKey {
            uid: Login::parse("alice").unwrap(),
            aid: 1.into(),
            itid: 2.into(),
            pitid: pitid.into(),
        };
        let detail = json!({"schemaVersion": 1, "uid": "alice", "aid": 1, "itid": 2, "pitid": 3});
        let rule = "arn:aws:events:us-east-1:123456789012:rule/bus/cancel";
        let eventbridge = json!({"ruleArn": rule, "event": {"id": "e-1",
            "detail-type": REQUEST_DETAIL_TYPE, "source": "acme.watchdog", "account": "210987654321",
            "detail": detail}});
        let mut bare = detail.clone();
        bare["type"] = json!(COMMAND_TYPE);
        let sqs = json!({"Records": [{"messageId": "m-1", "body": bare.to_string(),
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
            "attributes": {"SenderId": "AIDAFORGED"}}]});
        let far = Instant::now() + Duration::from_secs(30);
        for (event, door, taken) in [
            (&eventbridge, Door::EventSources, true),
            (&eventbridge, Door::Direct, false),
            (&eventbridge, Door::Local, true),
            (&sqs, Door::EventSources, true),
            (&sqs, Door::Direct, false),
            (&sqs, Door::Local, true),
            (&bare, Door::EventSources, false),
            (&bare, Door::Direct, true),
            (&bare, Door::Local, true),
        ] {
            let publishes = MemoryPublishes::default();
            publishes.put(PublishRecord::new(key(3), PublishState::Publishing));
            let automation = Automation::new(Canceller {
                publishes,
                queue: MemoryQueue::default(),
            });
            let answer = automation.handle(event, door, "inv-1", far).await;
            let record = automation.cancel.publishes.get(&key(3)).unwrap();
            let sent = automation.cancel.queue.sent();
            if !taken {
                let err = answer.unwrap_err();
                assert_eq!(
                    err.error_type(),
                    "UForge.UnsupportedEvent",
                    "{door:?} {event}"
                );
                assert_eq!(record.state, PublishState::Publishing, "{door:?} {event}");
                assert!(sent.is_empty());
                continue;
            }
            assert_eq!(record.state, PublishState::Cancelled, "{door:?} {event}");
            let audit = &record.cancel.unwrap().audit;
            match audit.source {
                CancelSource::EventBridge => {
                    assert_eq!(audit.cancelled_by.as_str(), rule);
                    assert_eq!(
                        audit.origin.as_ref().map(AuditText::as_str),
                        Some("account 210987654321 source acme.watchdog")
                    );
                    assert_eq!(
                        sent[0].origin.as_deref(),
                        audit.origin.as_ref().map(AuditText::as_str)
                    );
                }
                CancelSource::Sqs => assert_eq!(audit.cancelled_by.as_str(), "AIDAFORGED"),
                _ => assert_eq!(audit.cancelled_by.as_str(), INVOKE_PRINCIPAL),
            }
            assert_eq!(sent.len(), 1);
        }
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
            answer(Err(CancelError::Finished(PublishState::Published))).ok(),
            Some(json!({"outcome": "finished", "state": "published"}))
        );
        assert_eq!(
            answer(Err(CancelError::NotFound)).ok(),
            Some(json!({"outcome": "notFound", "state": null}))
        );
    }
}
