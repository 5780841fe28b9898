//! Stop messages are never lost: a cancel that dies between its conditional
//! write and its send leaves a pending mark, and the reconciler delivers
//! exactly the missing stop (emulator-backed stores, real SDK clients).

use crate::common;

use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

use common::{cancel_path, Req, Stack};
use publish_cancel::adapters::dynamodb::{attr, DynamoPublishes, DynamoUsers};
use publish_cancel::adapters::sqs::SqsStopQueue;
use publish_cancel::api::ApiRequest;
use publish_cancel::cancel::Canceller;
use publish_cancel::domain::Timestamp;
use publish_cancel::ports::{BackendError, StopMessage, StopQueue};
use publish_cancel::reconcile::{reconcile, ReconcileReport};

fn far() -> std::time::Instant {
    std::time::Instant::now() + Duration::from_secs(60)
}

/// One reconciler run with a minute to go, from the oldest: `grace`
/// seconds, `page` records a query, `in_flight` at once.
async fn run<P, Q>(
    cancel: &Canceller<P, Q>,
    clock: impl Fn() -> Timestamp + Sync,
    grace: u64,
    page: usize,
    in_flight: usize,
) -> Result<ReconcileReport, BackendError>
where
    P: publish_cancel::ports::CancelWrites + publish_cancel::ports::PendingStops,
    Q: StopQueue,
{
    let plan = publish_cancel::reconcile::Plan {
        grace: Duration::from_secs(grace),
        page,
        in_flight,
    };
    reconcile(cancel, clock, plan, far(), &Default::default(), |_| {}).await
}

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

    let cancel = Canceller {
        publishes: DynamoPublishes::new(stack.dynamo.clone(), &stack.publishes_table),
        queue: SqsStopQueue::new(stack.sqs.clone(), &stack.queue_url),
    };
    // Within the grace period nothing happens (the request might still be running).
    let early = run(&cancel, Timestamp::now, 3600, 100, 64).await.unwrap();
    assert_eq!(early, ReconcileReport::default());
    // After it, exactly the missing stop is sent, with the crashed cancel's id.
    let later = Timestamp(Timestamp::now().0 + 120);
    let report = run(&cancel, || later, 60, 100, 64).await.unwrap();
    assert_eq!(
        report,
        ReconcileReport {
            found: 1,
            resent: 1,
            ..ReconcileReport::default()
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
    let again = run(&cancel, || later, 60, 100, 64).await.unwrap();
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
    let cancel = Canceller {
        publishes: DynamoPublishes::new(stack.dynamo.clone(), &stack.publishes_table),
        queue: SqsStopQueue::new(stack.sqs.clone(), &stack.queue_url),
    };
    let report = run(&cancel, || Timestamp(Timestamp::now().0 + 120), 60, 100, 64)
        .await
        .unwrap();
    assert_eq!(report.found, 0);
    assert_eq!(stack.drain().await.len(), 1);
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A pending, cancelled item under alice/1/2/`pitid`, with `extra`.
async fn put_pending(
    stack: &Stack,
    uid: &str,
    pitid: i64,
    at: i64,
    extra: &[(&str, AttributeValue)],
) {
    let mut attrs = vec![
        (attr::UID, s(uid)),
        (attr::PUBLISH_KEY, s(&format!("1/2/{pitid}"))),
        (attr::AID, n(1)),
        (attr::ITID, n(2)),
        (attr::PITID, n(pitid)),
        (attr::STATE, s("cancelled")),
        (attr::CANCELLED_AT, n(at)),
        (attr::STOP_PENDING, s(publish_cancel::domain::Shard::LEGACY)),
    ];
    attrs.extend(extra.iter().cloned());
    stack.put_raw_publish(&attrs).await;
}

/// Items no version of ours writes today, older than a good pending one,
/// more of them than a page: a legacy item without the audit fields, hand
/// edits with texts and ids SQS refuses, a state we do not know, a uid that
/// is no login. The reconciler reads what can be read with the documented
/// defaults (and sends each of those stops as SQS accepts them), skips and
/// counts the rest, and still reaches the good one.
#[tokio::test]
async fn legacy_and_hand_written_items_never_stall_the_reconciler() {
    let stack = Stack::new().await;
    let old = Timestamp::now().0 - 3_600;
    put_pending(
        &stack,
        "alice",
        101,
        old,
        &[(attr::CANCEL_REQUEST_ID, s("legacy-1"))],
    )
    .await;
    put_pending(
        &stack,
        "alice",
        102,
        old + 1,
        &[
            (attr::CANCEL_REQUEST_ID, s(&"\u{e9}".repeat(200))),
            (attr::CANCEL_SOURCE, s("sqs")),
            (attr::CANCELLED_BY, s("\u{fffe}")),
            (attr::CANCEL_REASON, s("stop \u{ffff} now")),
            (attr::CANCEL_REQUESTED_BY, s("ok")),
        ],
    )
    .await;
    put_pending(&stack, "alice", 103, old + 2, &[(attr::STATE, s("paused"))]).await;
    put_pending(&stack, "not a login", 104, old + 3, &[]).await;
    for pitid in 105..=110 {
        put_pending(&stack, "alice", pitid, old + pitid, &[]).await;
    }
    // The good one, newest of all.
    put_pending(
        &stack,
        "alice",
        200,
        old + 500,
        &[(attr::CANCEL_REQUEST_ID, s("good"))],
    )
    .await;

    let cancel = Canceller {
        publishes: DynamoPublishes::new(stack.dynamo.clone(), &stack.publishes_table),
        queue: SqsStopQueue::new(stack.sqs.clone(), &stack.queue_url),
    };
    let report = run(&cancel, Timestamp::now, 60, 3, 64).await.unwrap();
    assert_eq!(report.unreadable, 2, "{report:?}");
    assert_eq!(
        (report.resent, report.failed, report.undeliverable),
        (9, 0, 0),
        "{report:?}"
    );
    let stops: Vec<StopMessage> = stack
        .drain()
        .await
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    let mut pitids: Vec<i64> = stops.iter().map(|m| m.pitid).collect();
    pitids.sort();
    assert_eq!(pitids, [101, 102, 105, 106, 107, 108, 109, 110, 200]);
    let legacy = stops.iter().find(|m| m.pitid == 101).unwrap();
    assert_eq!(
        (
            legacy.request_id.as_str(),
            legacy.cancel_source.as_str(),
            legacy.cancelled_by.as_str()
        ),
        ("legacy-1", "http", "alice"),
        "the documented defaults"
    );
    let edited = stops.iter().find(|m| m.pitid == 102).unwrap();
    assert!(edited.request_id.starts_with("sha256:"));
    assert_eq!(
        (edited.cancelled_by.as_str(), edited.reason.as_deref()),
        ("alice", None)
    );
    assert_eq!(edited.requested_by.as_deref(), Some("ok"));

    // The unreadable ones are still there, still pending, untouched; a
    // repeat cancel of one answers a 500 uforgeError and writes nothing.
    let paused = stack.publish_item("alice", "1/2/103").await.unwrap();
    assert!(paused.contains_key(attr::STOP_PENDING));
    let before = stack.tables().await;
    let answer = stack
        .call(&Req::delete(cancel_path("alice", 1, 2, 103)).basic("alice", "alice-password"))
        .await;
    assert_eq!(answer.status(), 500);
    let body = String::from_utf8_lossy(answer.body());
    assert!(
        body.contains("cannot be read") && !body.contains("paused"),
        "{body}"
    );
    assert_eq!(stack.tables().await, before);

    // A repeat cancel of a legacy item answers 200 and sends nothing more.
    let legacy = stack
        .call(&Req::delete(cancel_path("alice", 1, 2, 101)).basic("alice", "alice-password"))
        .await;
    assert_eq!(legacy.status(), 200);
    assert_eq!(stack.queue_depth().await, 0);
}

/// A queue that refuses some stops for good, as SQS refuses contents it
/// does not accept; the rest go to SQS.
struct Refusing {
    inner: SqsStopQueue,
    refuse: fn(&StopMessage) -> bool,
}

impl StopQueue for Refusing {
    async fn send(&self, stop: &StopMessage) -> Result<(), BackendError> {
        if (self.refuse)(stop) {
            return Err(BackendError::msg("InvalidMessageContents (test)").permanent());
        }
        self.inner.send(stop).await
    }
}

/// More undeliverable stops than a page, older than a sendable one: the
/// sendable one is re-sent in the same run, the others parked in the table
/// (`stopUndeliverable`, no longer pending), and no later run touches them.
#[tokio::test]
async fn undeliverable_stops_are_parked_and_do_not_hide_the_others() {
    let stack = Stack::new().await;
    let old = Timestamp::now().0 - 3_600;
    for pitid in 300..312 {
        put_pending(&stack, "alice", pitid, old + pitid, &[]).await;
    }
    put_pending(&stack, "alice", 400, old + 500, &[]).await;
    let cancel = Canceller {
        publishes: DynamoPublishes::new(stack.dynamo.clone(), &stack.publishes_table),
        queue: Refusing {
            inner: SqsStopQueue::new(stack.sqs.clone(), &stack.queue_url),
            refuse: |m| m.pitid < 400,
        },
    };
    let report = run(&cancel, Timestamp::now, 60, 5, 64).await.unwrap();
    assert_eq!(
        (report.found, report.resent, report.undeliverable),
        (13, 1, 12),
        "{report:?}"
    );
    let msgs = stack.drain().await;
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].body().unwrap().contains("\"pitid\":400"));
    let parked = stack.publish_item("alice", "1/2/300").await.unwrap();
    assert!(!parked.contains_key(attr::STOP_PENDING));
    assert!(parked[attr::STOP_UNDELIVERABLE]
        .as_s()
        .unwrap()
        .contains("InvalidMessageContents"));
    let again = run(&cancel, Timestamp::now, 60, 5, 64).await.unwrap();
    assert_eq!(again, ReconcileReport::default());
}

/// Issue 32 (1): the upgrade, rehearsed on the previous release's items.
/// Marks that release wrote (`stopPending = pending`, no claim token) and
/// marks this release spreads over its shards (cancels killed after their
/// write) are all found by one run and each stop is sent once; the new
/// marks are spread over the shards, none on the legacy value.
#[tokio::test]
async fn previous_release_marks_and_sharded_marks_are_all_delivered() {
    use publish_cancel::domain::{PendingShards, Shard};
    let stack = Stack::new().await;
    let shards = PendingShards::new(4).unwrap();
    let old = Timestamp::now().0 - 3_600;
    for pitid in 500..505 {
        put_pending(
            &stack,
            "alice",
            pitid,
            old + pitid,
            &[
                (attr::CANCEL_REQUEST_ID, s(&format!("prev-{pitid}"))),
                // The previous release's lapsed claim: a time, no token.
                (attr::STOP_CLAIMED_AT, n(old)),
            ],
        )
        .await;
    }
    let publishes =
        DynamoPublishes::new(stack.dynamo.clone(), &stack.publishes_table).with_shards(shards);
    let crashing = Canceller {
        publishes: publishes.clone(),
        queue: Crash,
    };
    for pitid in 600..640 {
        stack
            .put_publish(&publish_cancel::domain::PublishRecord::new(
                common::alice_key(pitid),
                publish_cancel::domain::PublishState::Publishing,
            ))
            .await;
        let stamp = publish_cancel::domain::CancelStamp::new(
            format!("new-{pitid}").as_str().into(),
            Timestamp(old + pitid),
            publish_cancel::domain::CancelAudit::http(&common::alice_key(pitid).uid),
        );
        let died = tokio::time::timeout(
            Duration::from_millis(300),
            crashing.run(&common::alice_key(pitid), &stamp),
        )
        .await;
        assert!(died.is_err(), "the hook hangs after the write");
    }
    // Where the marks are: the previous release's on `pending`, ours
    // spread over every shard.
    let mut values = std::collections::BTreeMap::<String, usize>::new();
    for pitid in (500..505).chain(600..640) {
        let item = stack
            .publish_item("alice", &format!("1/2/{pitid}"))
            .await
            .unwrap();
        *values
            .entry(item[attr::STOP_PENDING].as_s().unwrap().clone())
            .or_default() += 1;
    }
    assert_eq!(values.get(Shard::LEGACY), Some(&5), "{values:?}");
    for shard in 0..4 {
        let count = values
            .get(&Shard::Numbered(shard).value())
            .copied()
            .unwrap_or(0);
        assert!((1..=20).contains(&count), "shard {shard}: {values:?}");
    }

    let cancel = Canceller {
        publishes,
        queue: SqsStopQueue::new(stack.sqs.clone(), &stack.queue_url),
    };
    let report = run(&cancel, Timestamp::now, 60, 7, 16).await.unwrap();
    assert_eq!(
        (report.found, report.resent, report.failed),
        (45, 45, 0),
        "{report:?}"
    );
    let mut ids: Vec<String> = stack
        .drain()
        .await
        .iter()
        .map(|m| {
            serde_json::from_str::<StopMessage>(m.body().unwrap())
                .unwrap()
                .request_id
        })
        .collect();
    ids.sort();
    let mut want: Vec<String> = (500..505)
        .map(|p| format!("prev-{p}"))
        .chain((600..640).map(|p| format!("new-{p}")))
        .collect();
    want.sort();
    assert_eq!(ids, want, "each stop once, with its cancel's id");
    for pitid in (500..505).chain(600..640) {
        let item = stack
            .publish_item("alice", &format!("1/2/{pitid}"))
            .await
            .unwrap();
        assert!(!item.contains_key(attr::STOP_PENDING), "{pitid}: {item:?}");
    }
}

/// Issue 33 (1): a claim nobody can win. A pending item whose
/// `stopClaimedAt` is no number (NULL, a string, a boolean: hand edits,
/// foreign tooling writing None as NULL), a number beyond i64, or a time
/// far ahead (a clock hours fast) holds nothing: the reconciler takes it
/// and sends the stop. A live claim of another attempt is still left alone.
#[tokio::test]
async fn claims_of_any_type_or_time_are_winnable_and_live_ones_are_kept() {
    let stack = Stack::new().await;
    let old = Timestamp::now().0 - 3_600;
    let other = s("0123456789abcdef0123456789abcdef");
    let odd: Vec<(i64, AttributeValue)> = vec![
        (800, AttributeValue::Null(true)),
        (801, s("1700000000")),
        (802, AttributeValue::Bool(true)),
        (803, AttributeValue::N("100000000000000000000000000".into())),
        (804, n(Timestamp::now().0 + 3 * 3_600)),
    ];
    for (pitid, claimed_at) in &odd {
        put_pending(
            &stack,
            "alice",
            *pitid,
            old,
            &[
                (attr::STOP_CLAIMED_AT, claimed_at.clone()),
                (attr::STOP_CLAIMED_BY, other.clone()),
            ],
        )
        .await;
    }
    // A live claim, taken a second ago by another attempt.
    put_pending(
        &stack,
        "alice",
        805,
        old,
        &[
            (attr::STOP_CLAIMED_AT, n(Timestamp::now().0 - 1)),
            (attr::STOP_CLAIMED_BY, other.clone()),
        ],
    )
    .await;
    let cancel = Canceller {
        publishes: DynamoPublishes::new(stack.dynamo.clone(), &stack.publishes_table),
        queue: SqsStopQueue::new(stack.sqs.clone(), &stack.queue_url),
    };
    let report = run(&cancel, Timestamp::now, 60, 100, 8).await.unwrap();
    assert_eq!((report.resent, report.busy), (5, 1), "{report:?}");
    let mut sent: Vec<i64> = stack
        .drain()
        .await
        .iter()
        .map(|m| {
            serde_json::from_str::<StopMessage>(m.body().unwrap())
                .unwrap()
                .pitid
        })
        .collect();
    sent.sort();
    assert_eq!(sent, [800, 801, 802, 803, 804]);
    let live = stack.publish_item("alice", "1/2/805").await.unwrap();
    assert!(
        live.contains_key(attr::STOP_PENDING),
        "the live claim's holder sends it"
    );
}
