//! The automation function's events: cancels asked for on IAM authority by
//! other AWS services (EventBridge, an SQS command queue, a direct invoke or
//! Step Functions), each shape taken only through its own door (`Door`,
//! from the invoked ARN, never the payload), anything else refused with
//! nothing changed. The shapes, the command, the answers and the errors:
//! docs/automation.md. Here: the doors and running one command within the
//! invocation's deadline; `command` is the wire format, `batch` the SQS
//! batch scheduler, `error` the error contract.

mod batch;
pub mod command;
pub mod error;

pub use command::{
    answer, parse_command, Command, COMMAND_SCHEMA_VERSION, COMMAND_TYPE, REQUEST_DETAIL_TYPE,
};
pub use error::AutomationError;

use std::time::{Duration, Instant};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde::Deserialize as _;
use serde_json::Value;

use crate::auth::AuthTrace;
use crate::cancel::{outcome_of, CancelError, Canceller};
use crate::domain::{AuditText, CancelAudit, CancelSource, CancelStamp, RequestId, Timestamp};
use crate::metrics::{now_ms, Metrics, RequestFacts};
use crate::outcome::Outcome;
use crate::ports::{CancelWrites, StopQueue};
use command::{eventbridge_event, from_eventbridge};
use error::invalid;

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
    type Answer = Value;

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
                latency_ms: crate::metrics::millis_since(started),
            };
            m.emit(m.request_line(&facts, now_ms()));
        }
    }

    /// One SQS batch: each message is a command (`batch::run`); the
    /// answer lists the failed ones, to be redelivered.
    async fn sqs_batch(&self, records: &[SqsMessage], deadline: Instant) -> SqsBatchResponse {
        batch::run(records, BATCH_CONCURRENCY, |record| async move {
            let done = self.sqs_message(record, deadline).await;
            if let Err(e) = &done {
                tracing::warn!(message_id = record.message_id.as_deref().unwrap_or_default(),
                    error = %e, retryable = e.retryable(), "command message failed");
            }
            done.is_ok()
        })
        .await
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
    use serde_json::json;

    use super::*;
    use crate::domain::PublishState;

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
        use crate::domain::fixtures::alice_key as key;
        use crate::domain::PublishRecord;
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

    /// A command is not started with less than `START_MARGIN` left, and
    /// what stops a started one comes back as its own typed error.
    #[tokio::test]
    async fn the_start_margin_and_typed_failures() {
        use crate::adapters::memory::{MemoryPublishes, ScriptedQueue};
        use crate::domain::PublishRecord;
        let key = crate::domain::fixtures::alice_key(3);
        let command = json!({"type": COMMAND_TYPE, "schemaVersion": 1, "uid": "alice",
            "aid": 1, "itid": 2, "pitid": 3});
        let automation = || {
            let publishes = MemoryPublishes::default();
            publishes.put(PublishRecord::new(key.clone(), PublishState::Publishing));
            Automation::new(Canceller {
                publishes,
                queue: ScriptedQueue::default(),
            })
        };
        let far = Instant::now() + Duration::from_secs(30);

        let late = automation();
        let soon = Instant::now() + START_MARGIN / 2;
        let err = late
            .handle(&command, Door::Direct, "inv-1", soon)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "UForge.DeadlineReached");
        let record = late.cancel.publishes.get(&key).unwrap();
        assert_eq!(record.state, PublishState::Publishing, "not started");

        let failing = automation();
        failing.cancel.queue.fail(true);
        let err = failing
            .handle(&command, Door::Direct, "inv-2", far)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "UForge.StopNotSent");

        let refusing = automation();
        refusing.cancel.queue.refuse(|_| true);
        let err = refusing
            .handle(&command, Door::Direct, "inv-3", far)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "UForge.StopUndeliverable");
    }
}
