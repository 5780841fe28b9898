//! Races, against the emulator through the real SDK: many cancels of one
//! publish make exactly one transition; a cancel racing the worker that
//! completes the publish ends in exactly one of the two outcomes.

use crate::common;

use std::sync::Arc;

use common::fault_proxy::{Fault, FaultProxy, Gate};
use common::{call, cancel_path, Req, Stack, StackOptions};
use publish_cancel::adapters::dynamodb::attr;
use publish_cancel::adapters::dynamodb::DynamoPublishes;
use publish_cancel::adapters::sqs::SqsStopQueue;
use publish_cancel::cancel::Canceller;
use publish_cancel::domain::{CancelAudit, CancelStamp, PublishRecord, PublishState, Timestamp};
use publish_cancel::ports::StopMessage;

const UPDATE: &str = "DynamoDB_20120810.UpdateItem";
const SEND: &str = "AmazonSQS.SendMessage";

const CONCURRENT: usize = 100;
const TRIALS: i64 = 20;

type AwsCanceller = Canceller<DynamoPublishes, SqsStopQueue>;

/// Alice's cancel number `id`, as the cancel route stamps it once she is
/// admitted.
fn stamp(id: usize) -> CancelStamp {
    let alice = common::alice_key(3).uid;
    CancelStamp::new(
        format!("concurrent-{id}").into(),
        Timestamp::now(),
        CancelAudit::http(&alice),
    )
}

/// Runs `CONCURRENT` cancels of alice's running publish at once.
async fn stampede(cancel: Arc<AwsCanceller>) -> Vec<bool> {
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|i| {
            let cancel = cancel.clone();
            tokio::spawn(async move { cancel.run(&common::alice_key(3), &stamp(i)).await })
        })
        .collect();
    let mut changed = Vec::new();
    for t in tasks {
        let done = t
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("a concurrent cancel failed: {e:?}"));
        changed.push(done.changed);
    }
    changed
}

/// The stack's cancel with SQS reached through a counting proxy: the
/// sends are counted where they leave, so a FIFO queue's deduplication
/// cannot hide a second one.
async fn counted(stack: &Stack) -> (Arc<AwsCanceller>, FaultProxy) {
    let moto = &common::moto::moto().endpoint;
    let sqs = FaultProxy::start(moto).await;
    (Arc::new(stack.canceller_via(&sqs.url).await), sqs)
}

/// The one stop on the queue, and its request id.
async fn the_one_stop(stack: &Stack) -> String {
    let msgs = stack.drain().await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let stop: StopMessage = serde_json::from_str(msgs[0].body().unwrap()).unwrap();
    stop.request_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_cancels_make_one_transition() {
    let stack = Stack::new().await;
    let (api, sqs) = counted(&stack).await;
    let changed = stampede(api).await;
    assert_eq!(
        changed.iter().filter(|c| **c).count(),
        1,
        "exactly one transition"
    );
    let item = stack.publish_item("alice", "1/2/3").await.unwrap();
    assert_eq!(item[attr::STATE].as_s().unwrap(), "cancelled");
    let winner = item[attr::CANCEL_REQUEST_ID].as_s().unwrap().clone();
    // Standard queue: the transition sends; repeats see the stop claimed
    // or sent and add nothing (no amplification).
    assert_eq!(sqs.count(SEND), 1, "one SendMessage in all");
    assert_eq!(the_one_stop(&stack).await, winner, "the winner's own id");
}

/// The first cancel's send fails (no queue yet): its stop stays pending.
/// Then 100 concurrent repeats: one claims the stop and sends it, the
/// others find it claimed, then sent; one message in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_repeats_of_a_pending_stop_send_one_message() {
    let stack = Stack::with(StackOptions {
        create_queue: false,
        ..StackOptions::default()
    })
    .await;
    let first = stack
        .canceller_via(&common::moto::moto().endpoint)
        .await
        .run(&common::alice_key(3), &stamp(1_000))
        .await;
    assert!(
        matches!(
            first,
            Err(publish_cancel::cancel::CancelError::StopNotSent(_))
        ),
        "{first:?}"
    );
    let item = stack.publish_item("alice", "1/2/3").await.unwrap();
    assert!(item.contains_key(attr::STOP_PENDING));
    assert!(
        !item.contains_key(attr::STOP_CLAIMED_AT),
        "a failed send gives its claim up"
    );
    stack.create_queue_now().await;
    let (api, sqs) = counted(&stack).await;
    let changed = stampede(api).await;
    assert!(changed.iter().all(|c| !c), "all repeats");
    assert_eq!(sqs.count(SEND), 1, "one SendMessage for 100 repeats");
    assert_eq!(the_one_stop(&stack).await, "concurrent-1000");
    assert!(!stack
        .publish_item("alice", "1/2/3")
        .await
        .unwrap()
        .contains_key(attr::STOP_PENDING));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_fifo_queue_exactly_one_stop_is_delivered() {
    let stack = Stack::with(StackOptions {
        fifo: true,
        ..StackOptions::default()
    })
    .await;
    let (api, sqs) = counted(&stack).await;
    let changed = stampede(api).await;
    assert_eq!(changed.iter().filter(|c| **c).count(), 1);
    // Counted at the sender: the queue's deduplication would hide a second.
    assert_eq!(sqs.count(SEND), 1, "one SendMessage");
    let winner = stack.publish_item("alice", "1/2/3").await.unwrap()[attr::CANCEL_REQUEST_ID]
        .as_s()
        .unwrap()
        .clone();
    assert_eq!(the_one_stop(&stack).await, winner);
}

/// A cancel and the worker completing the same publish, each write put
/// inside the other by synchronisation (the proxy holds one until the other
/// has committed), not by sleeping: the worker's completion landing while
/// the cancel is on its way to its write, and the worker trying while the
/// cancel has written but not yet sent. Each ends in exactly one outcome:
/// cancelled + 200 + one stop, or published + 409 + none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_racing_the_worker_ends_in_exactly_one_outcome() {
    let stack = Arc::new(Stack::new().await);
    let worker = common::worker::Worker {
        dynamo: stack.dynamo.clone(),
        table: stack.publishes_table.clone(),
    };
    let moto = &common::moto::moto().endpoint;
    for trial in 0..TRIALS {
        let pitid = 1000 + trial;
        let mut rec = PublishRecord::new(common::alice_key(pitid), PublishState::Publishing);
        rec.percentage = Some(99);
        stack.put_publish(&rec).await;
        let dynamo = FaultProxy::start(moto).await;
        let sqs = FaultProxy::start(moto).await;
        let gate = Gate::new();
        let worker_first = trial % 2 == 0;
        let (proxy, target) = if worker_first {
            (&dynamo, UPDATE)
        } else {
            (&sqs, SEND)
        };
        proxy.inject(target, Fault::Hold(gate.clone()), None);
        let api = Arc::new(stack.api_via(&dynamo.url, &sqs.url).await);
        let cancel = tokio::spawn(async move {
            let req =
                Req::delete(cancel_path("alice", 1, 2, pitid)).basic("alice", "alice-password");
            call(&api, &req).await.status().as_u16()
        });
        // The cancel is held at its write (or at its send); the worker
        // writes now; then the cancel goes on.
        gate.arrived().await;
        let worker_won = worker
            .finish(&common::alice_key(pitid), PublishState::Published)
            .await;
        gate.open();
        let status = cancel.await.unwrap();
        let state = stack
            .publish_item("alice", &format!("1/2/{pitid}"))
            .await
            .unwrap()[attr::STATE]
            .as_s()
            .unwrap()
            .clone();
        let stops = stack.drain().await.len();
        let outcome = (status, worker_won, state.as_str(), stops);
        if worker_first {
            assert_eq!(outcome, (409, true, "published", 0), "trial {trial}");
        } else {
            assert_eq!(outcome, (200, false, "cancelled", 1), "trial {trial}");
        }
    }
}

/// Issue 24 (1): EventBridge and standard SQS deliver at least once, and
/// two copies can reach two instances at the same moment (the same event
/// id, the same second), or one batch twice. Each transition has one
/// execution answering `cancelled` and one stop. Before attempt tokens,
/// the second copy passed for the first's own write whose answer was lost:
/// two stops in 5 of 10 trials for the event, 10 of 10 for the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_delivery_twice_at_once_makes_one_transition_and_one_stop() {
    use publish_cancel::adapters::dynamodb::DynamoPublishes;
    use publish_cancel::adapters::sqs::SqsStopQueue;
    use publish_cancel::cancel::Canceller;
    use publish_cancel::frontdoor::automation::{Automation, Door};
    use serde_json::{json, Value};

    let stack = Arc::new(Stack::new().await);
    let instance = || {
        Arc::new(Automation::new(Canceller {
            publishes: DynamoPublishes::new(stack.dynamo.clone(), &stack.publishes_table),
            queue: SqsStopQueue::new(stack.sqs.clone(), &stack.queue_url),
        }))
    };
    let (one, two) = (instance(), instance());
    let far = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let command = |pitid: i64| {
        json!({"type": "uforge.publish.cancel", "schemaVersion": 1, "uid": "alice", "aid": 1,
               "itid": 2, "pitid": pitid})
    };
    let mut stops = std::collections::BTreeMap::<i64, usize>::new();
    for trial in 0..10 {
        // The same event to two instances at once.
        let pitid = 500 + trial;
        stack
            .put_publish(&PublishRecord::new(
                common::alice_key(pitid),
                PublishState::Publishing,
            ))
            .await;
        let mut detail = command(pitid);
        detail.as_object_mut().unwrap().remove("type");
        let event = json!({"ruleArn": "arn:aws:events:us-east-1:1:rule/b/r", "event": {
            "id": format!("evt-{trial}"), "detail-type": "Publish Cancel Requested",
            "source": "acme", "account": "1", "detail": detail}});
        let (a, b) = tokio::join!(
            one.handle(&event, Door::EventSources, "inv-a", far),
            two.handle(&event, Door::EventSources, "inv-b", far)
        );
        let outcomes: Vec<Value> = [a, b]
            .into_iter()
            .map(|r| r.unwrap()["outcome"].clone())
            .collect();
        assert_eq!(
            outcomes.iter().filter(|o| *o == "cancelled").count(),
            1,
            "trial {trial}: {outcomes:?}"
        );
        // One batch carrying the same message twice.
        let pitid = 600 + trial;
        stack
            .put_publish(&PublishRecord::new(
                common::alice_key(pitid),
                PublishState::Queued,
            ))
            .await;
        let record = json!({"messageId": format!("m-{trial}"), "body": command(pitid).to_string(),
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:commands",
            "attributes": {"SenderId": "AIDASENDER"}});
        let batch = json!({"Records": [record.clone(), record]});
        let answer = one
            .handle(&batch, Door::EventSources, "inv-c", far)
            .await
            .unwrap();
        assert_eq!(answer["batchItemFailures"], json!([]), "trial {trial}");
    }
    for m in stack.drain().await {
        let stop: publish_cancel::ports::StopMessage =
            serde_json::from_str(m.body().unwrap()).unwrap();
        *stops.entry(stop.pitid).or_default() += 1;
    }
    assert_eq!(stops.len(), 20, "{stops:?}");
    assert!(stops.values().all(|n| *n == 1), "{stops:?}");
}
