//! The SQS stop queue.

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::send_message::SendMessageError;
use aws_sdk_sqs::types::MessageAttributeValue;
use aws_sdk_sqs::Client;

use super::sdk_error;
use crate::ports::{BackendError, StopMessage, StopQueue};

/// Message attribute names, so workers can filter without parsing bodies.
pub const ATTR_TYPE: &str = "type";
pub const ATTR_SCHEMA_VERSION: &str = "schemaVersion";

#[derive(Debug, Clone)]
pub struct SqsStopQueue {
    client: Client,
    queue_url: String,
    /// FIFO queues (URL ending in `.fifo`) need a group and a dedup id.
    fifo: bool,
}

impl SqsStopQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        let queue_url = queue_url.into();
        SqsStopQueue {
            fifo: queue_url.ends_with(".fifo"),
            client,
            queue_url,
        }
    }
}

impl StopQueue for SqsStopQueue {
    async fn send(&self, stop: &StopMessage) -> Result<(), BackendError> {
        let attribute = |data_type: &str, value: String| {
            MessageAttributeValue::builder()
                .data_type(data_type)
                .string_value(value)
                .build()
                .map_err(|e| BackendError::new("building a message attribute", e))
        };
        let mut send = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(stop.to_json())
            .message_attributes(ATTR_TYPE, attribute("String", stop.kind.clone())?)
            .message_attributes(
                ATTR_SCHEMA_VERSION,
                attribute("Number", stop.schema_version.to_string())?,
            );
        if self.fifo {
            // One group per publish; the dedup id is the id of the cancel
            // that made the transition, so concurrent or retried cancels of
            // one publish deliver one stop within SQS's 5-minute window.
            send = send
                .message_group_id(stop.group_id())
                .message_deduplication_id(&stop.request_id);
        }
        match send.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let permanent = refuses_contents(&e);
                let error = sdk_error("sending the stop message", e);
                Err(if permanent { error.permanent() } else { error })
            }
        }
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
