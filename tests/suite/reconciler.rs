//! Stop messages are never lost: a cancel that dies between its conditional
//! write and its send leaves a pending mark, and the reconciler delivers
//! exactly the missing stop (emulator-backed stores, real SDK clients).

use crate::common;

use std::future::Future;
use std::time::Duration;

use common::{cancel_path, Req, Stack};
use publish_cancel::adapters::dynamodb::{attr, DynamoPublishes, DynamoUsers};
use publish_cancel::adapters::sqs::SqsStopQueue;
use publish_cancel::api::ApiRequest;
use publish_cancel::domain::Timestamp;
use publish_cancel::ports::{BackendError, StopMessage, StopQueue};
use publish_cancel::reconcile::{reconcile, ReconcileReport};

/// The fault hook: a queue whose send never returns, as if the function
/// were killed right after the DynamoDB write.
struct Crash;

impl StopQueue for Crash {
    fn send(&self, _: &StopMessage) -> impl Future<Output = Result<(), BackendError>> + Send {
        std::future::pending()
    }
}

#[tokio::test]
async fn a_crash_between_write_and_send_is_repaired_by_the_reconciler() {
    let stack = Stack::new().await;
    // A normal cancel first: its stop is sent and confirmed.
    let ok = stack
        .call(&Req::delete(cancel_path("alice", 1, 2, 3)).basic("alice", "alice-password"))
        .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(stack.drain().await.len(), 1);

    // Now a cancel that "crashes" after its write.
    let crashing = publish_cancel::startup::service(
        DynamoUsers::new(stack.dynamo.clone(), &stack.users_table),
        DynamoPublishes::new(stack.dynamo.clone(), &stack.publishes_table),
        Crash,
        Some(publish_cancel::auth::FixedKeks::shared(common::sealer())),
        publish_cancel::startup::Options::new("/api"),
    );
    let req = Req::delete(cancel_path("alice", 1, 2, 4)).basic("alice", "alice-password");
    let died = tokio::time::timeout(
        Duration::from_secs(3),
        crashing.handle(ApiRequest {
            method: &req.method,
            path: &req.uri,
            query: "",
            headers: &req.headers,
            request_id: &req.request_id,
        }),
    )
    .await;
    assert!(died.is_err(), "the hook should have hung the request");
    let item = stack.publish_item("alice", "1/2/4").await.unwrap();
    assert_eq!(item[attr::STATE].as_s().unwrap(), "cancelled");
    assert!(
        item.contains_key(attr::STOP_PENDING),
        "the mark survives the crash"
    );
    assert!(!stack
        .publish_item("alice", "1/2/3")
        .await
        .unwrap()
        .contains_key(attr::STOP_PENDING));
    assert_eq!(stack.queue_depth().await, 0, "no stop reached the queue");

    let publishes = DynamoPublishes::new(stack.dynamo.clone(), &stack.publishes_table);
    let queue = SqsStopQueue::new(stack.sqs.clone(), &stack.queue_url);
    // Within the grace period nothing happens (the request might still be running).
    let early = reconcile(
        &publishes,
        &queue,
        Timestamp::now(),
        Duration::from_secs(3600),
        100,
    )
    .await
    .unwrap();
    assert_eq!(early, ReconcileReport::default());
    // After it, exactly the missing stop is sent, with the crashed cancel's id.
    let later = Timestamp(Timestamp::now().0 + 120);
    let report = reconcile(&publishes, &queue, later, Duration::from_secs(60), 100)
        .await
        .unwrap();
    assert_eq!(
        report,
        ReconcileReport {
            found: 1,
            resent: 1,
            failed: 0
        }
    );
    let msgs = stack.drain().await;
    assert_eq!(msgs.len(), 1);
    let stop: StopMessage = serde_json::from_str(msgs[0].body().unwrap()).unwrap();
    assert_eq!(
        (stop.pitid, stop.request_id.as_str()),
        (4, req.request_id.as_str())
    );
    assert!(!stack
        .publish_item("alice", "1/2/4")
        .await
        .unwrap()
        .contains_key(attr::STOP_PENDING));
    // And a second run finds nothing.
    let again = reconcile(&publishes, &queue, later, Duration::from_secs(60), 100)
        .await
        .unwrap();
    assert_eq!(again, ReconcileReport::default());
}

#[tokio::test]
async fn a_failed_send_answers_503_and_the_client_retry_clears_the_mark() {
    let stack = Stack::with(common::StackOptions {
        create_queue: false,
        ..Default::default()
    })
    .await;
    let req = || Req::delete(cancel_path("alice", 1, 2, 3)).basic("alice", "alice-password");
    assert_eq!(stack.call(&req()).await.status(), 503);
    assert!(stack
        .publish_item("alice", "1/2/3")
        .await
        .unwrap()
        .contains_key(attr::STOP_PENDING));
    stack.create_queue_now().await;
    assert_eq!(stack.call(&req()).await.status(), 200);
    assert!(!stack
        .publish_item("alice", "1/2/3")
        .await
        .unwrap()
        .contains_key(attr::STOP_PENDING));
    // Nothing left for the reconciler.
    let publishes = DynamoPublishes::new(stack.dynamo.clone(), &stack.publishes_table);
    let queue = SqsStopQueue::new(stack.sqs.clone(), &stack.queue_url);
    let report = reconcile(
        &publishes,
        &queue,
        Timestamp(Timestamp::now().0 + 120),
        Duration::from_secs(60),
        100,
    )
    .await
    .unwrap();
    assert_eq!(report.found, 0);
    assert_eq!(stack.drain().await.len(), 1);
}
