//! The SQS stop queue.

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::send_message::SendMessageError;
use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeNameForSends, MessageSystemAttributeValue,
    SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;

use super::breaker::Breaker;
use super::sdk_error;
use crate::ports::{BackendError, StopMessage, StopQueue, MAX_BATCH};

/// Message attribute names, so workers can filter without parsing bodies.
pub const ATTR_TYPE: &str = "type";
pub const ATTR_SCHEMA_VERSION: &str = "schemaVersion";
/// Which attempt sent this copy (`StopMessage::sent_by`).
pub const ATTR_ATTEMPT: &str = "attempt";

#[derive(Debug, Clone)]
pub struct SqsStopQueue {
    client: Client,
    queue_url: String,
    /// FIFO queues (URL ending in `.fifo`) need a group and a dedup id.
    fifo: bool,
    /// Shared by every clone: while SQS is down, sends fail fast.
    breaker: Arc<Breaker>,
}

impl SqsStopQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        let queue_url = queue_url.into();
        SqsStopQueue {
            fifo: queue_url.ends_with(".fifo"),
            client,
            queue_url,
            breaker: Arc::new(Breaker::new("sqs")),
        }
    }

    /// The same queue behind `breaker` (tests and benches set its timing).
    pub fn with_breaker(mut self, breaker: Breaker) -> Self {
        self.breaker = Arc::new(breaker);
        self
    }

    /// The message attributes every stop carries.
    fn attributes(
        stop: &StopMessage,
    ) -> Result<HashMap<String, MessageAttributeValue>, BackendError> {
        let attribute = |data_type: &str, value: String| {
            MessageAttributeValue::builder()
                .data_type(data_type)
                .string_value(value)
                .build()
                .map_err(|e| BackendError::new("building a message attribute", e))
        };
        let mut attributes = HashMap::from([
            (
                ATTR_TYPE.to_owned(),
                attribute("String", stop.kind.clone())?,
            ),
            (
                ATTR_SCHEMA_VERSION.to_owned(),
                attribute("Number", stop.schema_version.to_string())?,
            ),
        ]);
        if let Some(attempt) = &stop.sent_by {
            attributes.insert(
                ATTR_ATTEMPT.to_owned(),
                attribute("String", attempt.to_string())?,
            );
        }
        Ok(attributes)
    }
}

impl StopQueue for SqsStopQueue {
    async fn send(&self, stop: &StopMessage) -> Result<(), BackendError> {
        let mut send = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(stop.to_json())
            .set_message_attributes(Some(Self::attributes(stop)?))
            .set_message_system_attributes(trace_header());
        if self.fifo {
            // One group per publish; the dedup id is the id of the cancel
            // that made the transition, so concurrent or retried cancels of
            // one publish deliver one stop within SQS's 5-minute window.
            send = send
                .message_group_id(stop.group_id())
                .message_deduplication_id(&stop.request_id);
        }
        match self.breaker.call(send.send()).await? {
            Ok(_) => Ok(()),
            Err(e) => {
                let permanent = refuses_contents(&e);
                let error = sdk_error("sending the stop message", e);
                Err(if permanent { error.permanent() } else { error })
            }
        }
    }

    /// One `SendMessageBatch` of up to ten stops (entry ids are their
    /// positions). SQS answers per entry: an entry refused for its
    /// contents (`SenderFault`) is a permanent failure of that stop only,
    /// any other failed entry a transient one; a failed call fails every
    /// entry, transiently.
    async fn send_batch<'a>(&'a self, stops: &'a [StopMessage]) -> Vec<Result<(), BackendError>> {
        let mut entries = Vec::with_capacity(stops.len());
        let mut results: Vec<Option<Result<(), BackendError>>> =
            stops.iter().map(|_| None).collect();
        let trace = trace_header();
        for (i, stop) in stops.iter().enumerate().take(MAX_BATCH) {
            let attributes = match Self::attributes(stop) {
                Ok(a) => a,
                Err(e) => {
                    results[i] = Some(Err(e.permanent()));
                    continue;
                }
            };
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(stop.to_json())
                .set_message_attributes(Some(attributes))
                .set_message_system_attributes(trace.clone());
            if self.fifo {
                entry = entry
                    .message_group_id(stop.group_id())
                    .message_deduplication_id(&stop.request_id);
            }
            match entry.build() {
                Ok(e) => entries.push(e),
                Err(e) => {
                    results[i] = Some(Err(
                        BackendError::new("building a batch entry", e).permanent()
                    ))
                }
            }
        }
        for extra in results.iter_mut().skip(MAX_BATCH) {
            *extra = Some(Err(BackendError::msg("more stops than one batch takes")));
        }
        if !entries.is_empty() {
            let call = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send();
            match self.breaker.call(call).await {
                Err(_) => fill(&mut results, || Err(self.breaker.fast_failure())),
                Ok(Err(e)) => {
                    let text =
                        crate::ErrorChain(&sdk_error("sending a batch of stops", e)).to_string();
                    fill(&mut results, || {
                        Err(BackendError::new("sending a batch of stops", text.clone()))
                    })
                }
                Ok(Ok(out)) => {
                    for ok in out.successful() {
                        if let Some(slot) = slot(&mut results, ok.id()) {
                            *slot = Some(Ok(()));
                        }
                    }
                    for failed in out.failed() {
                        if let Some(slot) = slot(&mut results, failed.id()) {
                            let error = BackendError::new(
                                "sending a stop in a batch",
                                format!(
                                    "{}: {}",
                                    failed.code(),
                                    failed.message().unwrap_or("refused")
                                ),
                            );
                            let permanent = failed.sender_fault()
                                && matches!(
                                    failed.code(),
                                    "InvalidMessageContents"
                                        | "InvalidParameterValue"
                                        | "MessageTooLong"
                                );
                            *slot = Some(Err(if permanent { error.permanent() } else { error }));
                        }
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(BackendError::msg("SQS did not report on this batch entry"))
                })
            })
            .collect()
    }

    fn available(&self) -> bool {
        self.breaker.would_admit()
    }
}

/// The invocation's X-Ray trace as the message's `AWSTraceHeader`, so a
/// worker's segment joins the trace of the cancel (`crate::trace`).
fn trace_header() -> Option<HashMap<MessageSystemAttributeNameForSends, MessageSystemAttributeValue>>
{
    let trace = crate::trace::current()?;
    let value = MessageSystemAttributeValue::builder()
        .data_type("String")
        .string_value(trace.as_ref())
        .build()
        .ok()?;
    Some(HashMap::from([(
        MessageSystemAttributeNameForSends::AwsTraceHeader,
        value,
    )]))
}

/// The result slot of the batch entry `id` (its position).
fn slot<'r>(
    results: &'r mut [Option<Result<(), BackendError>>],
    id: &str,
) -> Option<&'r mut Option<Result<(), BackendError>>> {
    id.parse::<usize>().ok().and_then(|i| results.get_mut(i))
}

/// Every entry not decided yet gets `error()`.
fn fill(
    results: &mut [Option<Result<(), BackendError>>],
    error: impl Fn() -> Result<(), BackendError>,
) {
    for r in results.iter_mut().filter(|r| r.is_none()) {
        *r = Some(error());
    }
}

/// SQS refused the message itself (its characters, its size, a group or
/// deduplication id it does not accept, or a request the SDK could not
/// even build): the same message will be refused every time. Anything
/// else (throttling, KMS, a missing queue, the network) may pass later.
fn refuses_contents(e: &SdkError<SendMessageError>) -> bool {
    match e {
        SdkError::ConstructionFailure(_) => true,
        SdkError::ServiceError(ctx) => {
            matches!(ctx.err(), SendMessageError::InvalidMessageContents(_))
                || matches!(
                    ctx.err().code(),
                    Some("InvalidMessageContents" | "InvalidParameterValue" | "MessageTooLong")
                )
        }
        _ => false,
    }
}

/// Creates the stop queue (FIFO when the name ends in `.fifo`); returns its URL.
pub async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    queue_name: &str,
) -> Result<String, crate::ports::AdminError> {
    let mut queue = sqs.create_queue().queue_name(queue_name);
    if queue_name.ends_with(".fifo") {
        queue = queue.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
    }
    let out = queue.send().await.map_err(|e| {
        crate::ports::AdminError::Backend(super::sdk_error("creating the stop queue", e))
    })?;
    out.queue_url
        .ok_or_else(|| crate::ports::AdminError::Invalid("CreateQueue returned no URL".into()))
}
