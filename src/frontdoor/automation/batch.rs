//! An SQS batch run as Lambda's partial batch responses expect
//! (`ReportBatchItemFailures`): a standard queue's messages concurrently, a
//! FIFO queue's in order within each message group, a failure failing the
//! rest of its group (to keep the order), groups concurrently. The answer
//! lists the messages to redeliver.

use std::collections::BTreeMap;
use std::future::Future;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use futures_util::stream::{self, StreamExt as _};

/// Runs `each` on every message of `records`, at most `concurrency` lanes
/// at once; `each` says whether its message is done (`false`: redeliver).
pub async fn run<'a, F, Fut>(
    records: &'a [SqsMessage],
    concurrency: usize,
    each: F,
) -> SqsBatchResponse
where
    F: Fn(&'a SqsMessage) -> Fut,
    Fut: Future<Output = bool>,
{
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
    let each = &each;
    let failed: Vec<String> = stream::iter(lanes.into_values())
        .map(|lane| async move {
            for (i, record) in lane.iter().enumerate() {
                if !each(record).await {
                    return lane[i..]
                        .iter()
                        .map(|r| r.message_id.clone().unwrap_or_default())
                        .collect();
                }
            }
            Vec::new()
        })
        .buffer_unordered(concurrency.max(1))
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn message(id: &str, group: &str, queue: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.event_source_arn = Some(format!("arn:aws:sqs:us-east-1:1:{queue}"));
        m.attributes.insert("MessageGroupId".into(), group.into());
        m
    }

    fn failed(answer: &SqsBatchResponse) -> Vec<&str> {
        let mut ids: Vec<&str> = answer
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// FIFO: a group stops at its first failure and reports the rest of
    /// it; other groups go on; each group ran in its order.
    #[tokio::test]
    async fn a_fifo_group_keeps_its_order_and_fails_from_its_first_failure() {
        let records = [
            message("a1", "a", "q.fifo"),
            message("b1", "b", "q.fifo"),
            message("a2", "a", "q.fifo"),
            message("a3", "a", "q.fifo"),
            message("b2", "b", "q.fifo"),
        ];
        let ran = Mutex::new(Vec::new());
        let answer = run(&records, 10, |m| {
            let id = m.message_id.clone().unwrap_or_default();
            ran.lock().unwrap().push(id.clone());
            async move { id != "a2" }
        })
        .await;
        assert_eq!(failed(&answer), ["a2", "a3"]);
        let ran = ran.into_inner().unwrap();
        assert!(!ran.contains(&"a3".to_owned()), "nothing after a failure");
        let order = |g: char| {
            ran.iter()
                .filter(|id| id.starts_with(g))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(order('a'), ["a1", "a2"]);
        assert_eq!(order('b'), ["b1", "b2"]);
    }

    /// Standard: every message runs, whatever fails; only failures return.
    #[tokio::test]
    async fn a_standard_batch_runs_every_message() {
        let records = [
            message("m1", "", "q"),
            message("m2", "", "q"),
            message("m3", "", "q"),
        ];
        let ran = Mutex::new(0);
        let answer = run(&records, 2, |m| {
            *ran.lock().unwrap() += 1;
            let ok = m.message_id.as_deref() != Some("m1");
            async move { ok }
        })
        .await;
        assert_eq!(failed(&answer), ["m1"]);
        assert_eq!(ran.into_inner().unwrap(), 3);
    }
}
