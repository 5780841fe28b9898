//! The automation function, the compiled binary under the Runtime API,
//! against DynamoDB and SQS on moto: every entry shape against every state
//! a publish can be in, redeliveries, batches with bad messages and backend
//! faults, cross-wired events, and the sample events.

use aws_sdk_dynamodb::types::AttributeValue;
use publish_cancel::adapters::dynamodb::attr;
use publish_cancel::domain::{PublishRecord, PublishState};
use publish_cancel::ports::StopMessage;
use serde_json::{json, Value};

use crate::common::fault_proxy::{Fault, FaultProxy};
use crate::common::runtime_api::{Outcome, RuntimeApi};
use crate::common::sample_events::{lambda_binary, LambdaProcess};
use crate::common::{self, Stack};

const RULE: &str = "arn:aws:events:us-east-1:123456789012:rule/uforge-automation/cancel-requests";
const SENDER: &str = "AROAEXAMPLEROLEID:budget-watchdog";

/// The automation binary on `stack`, reaching AWS at `endpoint`.
async fn automation(stack: &Stack, endpoint: &str) -> (RuntimeApi, LambdaProcess) {
    let runtime = RuntimeApi::start().await;
    let env: Vec<(String, String)> = [
        ("AWS_LAMBDA_RUNTIME_API", runtime.addr.as_str()),
        ("AWS_LAMBDA_FUNCTION_NAME", "automation"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("PUBLISHES_TABLE", stack.publishes_table.as_str()),
        ("STOP_QUEUE_URL", stack.queue_url.as_str()),
        ("UFORGE_TLS_ROOTS", "amazon"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let function = LambdaProcess::spawn(&lambda_binary("automation"), &env);
    (runtime, function)
}

const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:automation";

/// Invokes `function` through the door Lambda would use for `event`: the
/// events alias for the rule's and the queue's shapes, else directly.
async fn invoke(function: &mut LambdaProcess, runtime: &RuntimeApi, event: &str) -> Outcome {
    let shape: Value = serde_json::from_str(event).unwrap_or_default();
    if shape.get("ruleArn").is_some() || shape.get("Records").is_some() {
        runtime.set_invoked_arn(&format!("{FUNCTION_ARN}:events"));
    } else {
        runtime.set_invoked_arn(FUNCTION_ARN);
    }
    function.invoke(runtime, event).await
}

fn command(pitid: i64, reason: &str) -> Value {
    json!({"type": "uforge.publish.cancel", "schemaVersion": 1, "uid": "alice", "aid": 1, "itid": 2,
           "pitid": pitid, "reason": reason, "requestedBy": "budget-watchdog"})
}

fn eventbridge(pitid: i64, id: &str) -> Value {
    let mut detail = command(pitid, "via eventbridge");
    detail.as_object_mut().unwrap().remove("type");
    json!({"ruleArn": RULE, "event": {"version": "0", "id": id, "detail-type": "Publish Cancel Requested",
           "source": "acme.watchdog", "account": "123456789012", "time": "2026-11-27T09:00:00Z",
           "region": "us-east-1", "resources": [], "detail": detail}})
}

fn sqs_record(id: &str, body: &str, queue: &str) -> Value {
    json!({"messageId": id, "receiptHandle": format!("rh-{id}"), "body": body,
           "attributes": {"ApproximateReceiveCount": "1", "SenderId": SENDER},
           "messageAttributes": {}, "eventSource": "aws:sqs",
           "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{queue}"), "awsRegion": "us-east-1"})
}

fn sqs(records: Vec<Value>) -> Value {
    json!({ "Records": records })
}

async fn put(stack: &Stack, pitid: i64, state: PublishState) {
    let mut record = PublishRecord::new(common::alice_key(pitid), state);
    record.percentage = Some(40);
    stack.put_publish(&record).await;
}

fn s(item: &std::collections::HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn stops(msgs: &[aws_sdk_sqs::types::Message]) -> Vec<StopMessage> {
    msgs.iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect()
}

/// Every entry shape × every state a publish can be in: the answer, the
/// record (state and audit) and the stop message.
#[tokio::test]
async fn every_entry_shape_against_every_state() {
    let stack = Stack::new().await;
    let (runtime, mut function) = automation(&stack, &common::moto::moto().endpoint).await;
    let states = [
        (Some(PublishState::Publishing), "cancelled"),
        (Some(PublishState::Queued), "cancelled"),
        (Some(PublishState::Cancelled), "alreadyCancelled"),
        (Some(PublishState::Published), "finished"),
        (Some(PublishState::Failed), "finished"),
        (None, "notFound"),
    ];
    let mut pitid = 500;
    for shape in ["eventbridge", "sqs", "invoke"] {
        for (state, want) in states {
            pitid += 1;
            if let Some(state) = state {
                put(&stack, pitid, state).await;
            }
            let id = format!("{shape}-{pitid}");
            let event = match shape {
                "eventbridge" => eventbridge(pitid, &id),
                "sqs" => sqs(vec![sqs_record(
                    &id,
                    &command(pitid, "via sqs").to_string(),
                    "uforge-commands",
                )]),
                _ => command(pitid, "via invoke"),
            };
            let Outcome::Response(answer) =
                invoke(&mut function, &runtime, &event.to_string()).await
            else {
                panic!("{shape} {state:?}: an error\n{}", function.logs());
            };
            let case = format!("{shape} on {state:?}: {answer}");
            if shape == "sqs" {
                assert_eq!(answer["batchItemFailures"], json!([]), "{case}");
            } else {
                assert_eq!(answer["outcome"], want, "{case}");
            }
            let item = stack.publish_item("alice", &format!("1/2/{pitid}")).await;
            let sent = stops(&stack.drain().await);
            match want {
                "cancelled" => {
                    let item = item.unwrap();
                    assert_eq!(
                        s(&item, attr::STATE).as_deref(),
                        Some("cancelled"),
                        "{case}"
                    );
                    assert_eq!(
                        s(&item, attr::CANCEL_SOURCE).as_deref(),
                        Some(shape),
                        "{case}"
                    );
                    let principal = match shape {
                        "eventbridge" => RULE,
                        "sqs" => SENDER,
                        _ => "lambda:invoke",
                    };
                    assert_eq!(
                        s(&item, attr::CANCELLED_BY).as_deref(),
                        Some(principal),
                        "{case}"
                    );
                    assert_eq!(
                        s(&item, attr::CANCEL_REASON),
                        Some(format!("via {shape}")),
                        "{case}"
                    );
                    assert_eq!(
                        s(&item, attr::CANCEL_REQUESTED_BY).as_deref(),
                        Some("budget-watchdog")
                    );
                    let request_id = s(&item, attr::CANCEL_REQUEST_ID).unwrap();
                    if shape != "invoke" {
                        assert_eq!(request_id, id, "the event's or message's id: {case}");
                    }
                    assert_eq!(sent.len(), 1, "{case}");
                    assert_eq!(sent[0].request_id, request_id);
                    assert_eq!(
                        (
                            sent[0].cancel_source.as_str(),
                            sent[0].cancelled_by.as_str()
                        ),
                        (shape, principal)
                    );
                    assert_eq!(
                        sent[0].reason.as_deref(),
                        Some(format!("via {shape}").as_str())
                    );
                }
                "alreadyCancelled" => {
                    // A record cancelled before (no stamp of ours, no stop
                    // pending): nothing is re-sent, nothing rewritten.
                    assert!(sent.is_empty(), "{case}");
                    assert!(s(&item.unwrap(), attr::CANCEL_SOURCE).is_none(), "{case}");
                }
                "finished" => {
                    let item = item.unwrap();
                    assert_eq!(
                        s(&item, attr::STATE).as_deref(),
                        state.map(|s| s.as_str()),
                        "{case}"
                    );
                    assert!(sent.is_empty(), "{case}");
                    if shape != "sqs" {
                        assert_eq!(answer["state"], json!(state.unwrap().as_str()), "{case}");
                    }
                }
                _ => {
                    assert!(item.is_none(), "notFound creates nothing: {case}");
                    assert!(sent.is_empty(), "{case}");
                }
            }
        }
    }
    function.child.kill().await.ok();
    let logs = function.logs();
    assert!(
        logs.contains("\"source\":\"eventbridge\"") && logs.contains("budget-watchdog"),
        "{logs}"
    );
}

/// A redelivered event or message makes no second transition and sends no
/// second stop (the first was sent), and the first audit stays.
#[tokio::test]
async fn redelivery_makes_no_second_transition() {
    let stack = Stack::new().await;
    let (runtime, mut function) = automation(&stack, &common::moto::moto().endpoint).await;
    put(&stack, 600, PublishState::Publishing).await;
    put(&stack, 601, PublishState::Publishing).await;
    for (event, pitid, id) in [
        (eventbridge(600, "eb-600"), 600, "eb-600"),
        (
            sqs(vec![sqs_record(
                "m-601",
                &command(601, "first").to_string(),
                "q",
            )]),
            601,
            "m-601",
        ),
    ] {
        for delivery in 0..2 {
            let Outcome::Response(answer) =
                invoke(&mut function, &runtime, &event.to_string()).await
            else {
                panic!("{}", function.logs());
            };
            if event.get("ruleArn").is_some() {
                let want = if delivery == 0 {
                    "cancelled"
                } else {
                    "alreadyCancelled"
                };
                assert_eq!(answer["outcome"], want);
                assert_eq!(answer["cancelRequestId"], id);
            }
            let sent = stops(&stack.drain().await);
            if delivery == 0 {
                assert_eq!(sent.len(), 1);
                assert_eq!(sent[0].request_id, id);
            } else {
                assert!(sent.is_empty(), "its stop was sent: not again");
            }
        }
        let item = stack
            .publish_item("alice", &format!("1/2/{pitid}"))
            .await
            .unwrap();
        assert_eq!(s(&item, attr::CANCEL_REQUEST_ID).as_deref(), Some(id));
    }
    // A later cancel through another door reports the first audit unchanged.
    let Outcome::Response(answer) =
        invoke(&mut function, &runtime, &command(600, "second").to_string()).await
    else {
        panic!();
    };
    assert_eq!(answer["outcome"], "alreadyCancelled");
    assert_eq!(answer["cancelSource"], "eventbridge");
    assert_eq!(answer["cancelledBy"], RULE);
    assert_eq!(answer["reason"], "via eventbridge");
}

/// One malformed message and one backend fault in a batch: exactly those
/// two are reported, the rest done. On a FIFO queue nothing after the first
/// failure runs, and everything from it on is reported.
#[tokio::test]
async fn a_batch_reports_exactly_its_failed_messages() {
    let stack = Stack::new().await;
    let proxy = FaultProxy::start(&common::moto::moto().endpoint).await;
    let (runtime, mut function) = automation(&stack, &proxy.url).await;
    for pitid in [700, 701, 702, 710, 711] {
        put(&stack, pitid, PublishState::Publishing).await;
    }
    // The first command's write fails (all three attempts), the others
    // pass (they run concurrently: the fault is keyed to its item).
    proxy.inject_for(
        "DynamoDB_20120810.UpdateItem",
        "1/2/700",
        Fault::Error(500, "InternalServerError"),
        Some(3),
    );
    let batch = sqs(vec![
        sqs_record("faulted", &command(700, "x").to_string(), "q"),
        sqs_record("ok-1", &command(701, "x").to_string(), "q"),
        sqs_record(
            "malformed",
            "{\"type\": \"uforge.publish.cancel\", \"schemaVersion\": 1}",
            "q",
        ),
        sqs_record("ok-2", &command(702, "x").to_string(), "q"),
    ]);
    let Outcome::Response(answer) = invoke(&mut function, &runtime, &batch.to_string()).await
    else {
        panic!("{}", function.logs());
    };
    let mut failed: Vec<&str> = answer["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    failed.sort();
    assert_eq!(failed, ["faulted", "malformed"], "{answer}");
    let state = |pitid: i64| {
        let stack = &stack;
        async move {
            s(
                &stack
                    .publish_item("alice", &format!("1/2/{pitid}"))
                    .await
                    .unwrap(),
                attr::STATE,
            )
            .unwrap()
        }
    };
    assert_eq!(
        state(700).await,
        "publishing",
        "the faulted one is left for the redelivery"
    );
    assert_eq!(
        (state(701).await.as_str(), state(702).await.as_str()),
        ("cancelled", "cancelled")
    );
    assert_eq!(stack.drain().await.len(), 2);

    // FIFO: the queue's order holds within a message group; another
    // group goes on.
    put(&stack, 712, PublishState::Publishing).await;
    let grouped = |id: &str, body: &str, group: &str| {
        let mut r = sqs_record(id, body, "q.fifo");
        r["attributes"]["MessageGroupId"] = json!(group);
        r
    };
    let fifo = sqs(vec![
        grouped("f-1", &command(710, "x").to_string(), "a"),
        grouped("f-bad", "not json", "a"),
        grouped("g-1", &command(712, "x").to_string(), "b"),
        grouped("f-3", &command(711, "x").to_string(), "a"),
    ]);
    let Outcome::Response(answer) = invoke(&mut function, &runtime, &fifo.to_string()).await else {
        panic!();
    };
    assert_eq!(
        answer["batchItemFailures"],
        json!([{"itemIdentifier": "f-bad"}, {"itemIdentifier": "f-3"}]),
        "{answer}"
    );
    assert_eq!(state(710).await, "cancelled");
    assert_eq!(state(711).await, "publishing", "not run out of order");
    assert_eq!(state(712).await, "cancelled", "the other group went on");
}

/// A batch runs within its invocation's deadline: a command stuck on a
/// slow backend is cut off and reported (to be redelivered), the others
/// are done, and the answer comes before Lambda's deadline.
#[tokio::test]
async fn a_batch_answers_within_its_deadline() {
    let stack = Stack::new().await;
    let proxy = FaultProxy::start(&common::moto::moto().endpoint).await;
    let (runtime, function) = automation(&stack, &proxy.url).await;
    for pitid in [720, 721, 722] {
        put(&stack, pitid, PublishState::Publishing).await;
    }
    proxy.inject_for(
        "DynamoDB_20120810.UpdateItem",
        "1/2/720",
        Fault::Delay(std::time::Duration::from_secs(30)),
        None,
    );
    let timeout = std::time::Duration::from_secs(3);
    runtime.set_timeout(timeout);
    let batch = sqs(vec![
        sqs_record("slow", &command(720, "x").to_string(), "q"),
        sqs_record("ok-1", &command(721, "x").to_string(), "q"),
        sqs_record("ok-2", &command(722, "x").to_string(), "q"),
    ]);
    runtime.set_invoked_arn(&format!("{FUNCTION_ARN}:events"));
    // Timed as Lambda times it: from handing the event over to the answer.
    let Some((Outcome::Response(answer), ran)) = runtime
        .try_invoke_timed(&batch.to_string(), None, std::time::Duration::from_secs(30))
        .await
    else {
        panic!("{}", function.logs());
    };
    assert!(ran < timeout, "answered after the deadline: {ran:?}");
    assert_eq!(
        answer["batchItemFailures"],
        json!([{"itemIdentifier": "slow"}]),
        "{answer}"
    );
    assert_eq!(stops(&stack.drain().await).len(), 2);
    assert!(
        function.logs().contains("UForge.DeadlineReached") || function.logs().contains("deadline")
    );
}

/// Issue 24 (4): a lone command (a direct invoke) is bounded by the
/// invocation's deadline too. The repeat of a cancel whose stop is still
/// pending is four calls (the write, a claim, the send, the clearing), each
/// under its own timeouts but together longer than the function's: it ends
/// with the typed, retryable `UForge.DeadlineReached` within the deadline,
/// never with Lambda's untyped timeout.
#[tokio::test]
async fn a_lone_command_answers_within_its_deadline() {
    let stack = Stack::new().await;
    let proxy = FaultProxy::start(&common::moto::moto().endpoint).await;
    let (runtime, _function) = automation(&stack, &proxy.url).await;
    // Cancelled long ago, its stop never sent.
    let mut record = PublishRecord::new(common::alice_key(730), PublishState::Publishing);
    let stamp = publish_cancel::domain::CancelStamp::new(
        "crashed".into(),
        publish_cancel::domain::Timestamp(publish_cancel::domain::Timestamp::now().0 - 300),
        publish_cancel::domain::CancelAudit::http(&record.key.uid),
    );
    record = record
        .cancelled(&stamp, &publish_cancel::cancel::new_attempt())
        .unwrap();
    stack.put_publish(&record).await;
    // Every call slow, each within its own 2 s attempt timeout.
    let slow = Fault::Delay(std::time::Duration::from_millis(1_900));
    proxy.inject("DynamoDB_20120810.UpdateItem", slow.clone(), None);
    proxy.inject("AmazonSQS.SendMessage", slow, None);
    let timeout = std::time::Duration::from_secs(5);
    runtime.set_timeout(timeout);
    let answer = runtime
        .try_invoke_timed(
            &command(730, "x").to_string(),
            Some(FUNCTION_ARN),
            std::time::Duration::from_secs(30),
        )
        .await;
    let Some((Outcome::Error(e), took)) = answer else {
        panic!("expected a typed error, got {answer:?}");
    };
    assert_eq!(e["errorType"], "UForge.DeadlineReached", "{e}");
    assert!(
        took < timeout,
        "answered after {took:?}, past its {timeout:?}"
    );
}

/// Backend faults are the retryable error types, and a retry recovers.
#[tokio::test]
async fn backend_faults_are_retryable_errors_and_a_retry_recovers() {
    let stack = Stack::new().await;
    let proxy = FaultProxy::start(&common::moto::moto().endpoint).await;
    let (runtime, mut function) = automation(&stack, &proxy.url).await;
    put(&stack, 800, PublishState::Publishing).await;
    let cmd = command(800, "x").to_string();

    proxy.inject("DynamoDB", Fault::Drop, None);
    let Outcome::Error(e) = invoke(&mut function, &runtime, &cmd).await else {
        panic!("DynamoDB down must be an error");
    };
    assert_eq!(e["errorType"], "UForge.BackendUnavailable", "{e}");
    proxy.clear();

    proxy.inject(
        "AmazonSQS.SendMessage",
        Fault::Error(500, "InternalError"),
        None,
    );
    let Outcome::Error(e) = invoke(&mut function, &runtime, &cmd).await else {
        panic!("SQS down must be an error");
    };
    assert_eq!(e["errorType"], "UForge.StopNotSent", "{e}");
    proxy.clear();

    let Outcome::Response(answer) = invoke(&mut function, &runtime, &cmd).await else {
        panic!("{}", function.logs());
    };
    assert_eq!(
        answer["outcome"], "alreadyCancelled",
        "the retry finds it cancelled"
    );
    let sent = stops(&stack.drain().await);
    assert_eq!(sent.len(), 1, "and sends the stop");
    assert_eq!(
        sent[0].request_id,
        answer["cancelRequestId"].as_str().unwrap()
    );
}

/// An HTTP event sent to the automation function, and an automation event
/// sent to the HTTP function, are refused with a clear error and change
/// nothing.
#[tokio::test]
async fn cross_wired_events_are_refused() {
    let stack = Stack::new().await;
    let before = stack.tables().await;
    let (runtime, mut function) = automation(&stack, &common::moto::moto().endpoint).await;
    let http = std::fs::read_to_string(
        common::sample_events::events_dir().join("apigw-rest-cancel-basic.json"),
    )
    .unwrap();
    let Outcome::Error(e) = invoke(&mut function, &runtime, &http).await else {
        panic!("an HTTP event must be refused");
    };
    assert_eq!(e["errorType"], "UForge.UnsupportedEvent", "{e}");
    assert!(
        e["errorMessage"]
            .as_str()
            .unwrap()
            .contains("not HTTP requests"),
        "{e}"
    );

    let runtime = RuntimeApi::start().await;
    let env = stack.lambda_env(&runtime.addr);
    let mut http_function = LambdaProcess::spawn(&lambda_binary("publish-cancel"), &env);
    let Outcome::Error(e) = http_function
        .invoke(&runtime, &command(3, "x").to_string())
        .await
    else {
        panic!("a command must be refused by the HTTP function");
    };
    assert_eq!(e["errorType"], "UnsupportedEvent", "{e}");
    assert_eq!(stack.tables().await, before);
    assert_eq!(stack.queue_depth().await, 0);
}

/// The door is what Lambda says was invoked, not the payload: the rule's
/// and the queue's shapes sent to the function itself, and a bare command
/// sent to the events alias, are refused and change nothing; the rule's
/// delivery through the alias is recorded as EventBridge, with the event's
/// account and source beside the rule.
#[tokio::test]
async fn deliveries_are_taken_only_through_their_door() {
    let stack = Stack::new().await;
    put(&stack, 900, PublishState::Publishing).await;
    let before = stack.tables().await;
    let (runtime, mut function) = automation(&stack, &common::moto::moto().endpoint).await;
    let alias = format!("{FUNCTION_ARN}:events");
    for (arn, event) in [
        (FUNCTION_ARN, eventbridge(900, "forged-eb")),
        (
            FUNCTION_ARN,
            sqs(vec![sqs_record(
                "forged-sqs",
                &command(900, "x").to_string(),
                "q",
            )]),
        ),
        (
            &format!("{FUNCTION_ARN}:$LATEST"),
            eventbridge(900, "forged-latest"),
        ),
        (alias.as_str(), command(900, "x")),
    ] {
        runtime.set_invoked_arn(arn);
        let Outcome::Error(e) = function.invoke(&runtime, &event.to_string()).await else {
            panic!("{arn} {event}: taken");
        };
        assert_eq!(e["errorType"], "UForge.UnsupportedEvent", "{arn} {e}");
    }
    assert_eq!(stack.tables().await, before, "a refused event wrote");
    assert_eq!(stack.queue_depth().await, 0);

    runtime.set_invoked_arn(&alias);
    let Outcome::Response(answer) = function
        .invoke(&runtime, &eventbridge(900, "genuine").to_string())
        .await
    else {
        panic!("{}", function.logs());
    };
    assert_eq!(answer["cancelSource"], "eventbridge", "{answer}");
    assert_eq!(answer["cancelledBy"], RULE, "{answer}");
    assert_eq!(
        answer["origin"], "account 123456789012 source acme.watchdog",
        "{answer}"
    );
    let item = stack.publish_item("alice", "1/2/900").await.unwrap();
    assert_eq!(
        s(&item, attr::CANCEL_ORIGIN).as_deref(),
        Some("account 123456789012 source acme.watchdog")
    );
    let sent = stops(&stack.drain().await);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].origin.as_deref(),
        Some("account 123456789012 source acme.watchdog")
    );
}

/// Every file in events/automation/ has its documented answer, on one
/// function instance, in name order, against the bundled seed.
#[tokio::test]
async fn every_automation_sample_has_its_documented_answer() {
    let stack = Stack::new().await;
    let (runtime, mut function) = automation(&stack, &common::moto::moto().endpoint).await;
    common::sample_events::run_every_automation_event(
        &mut function,
        &runtime,
        &stack,
        FUNCTION_ARN,
    )
    .await;
    // The batch's bulk cancel, audited with the queue's sender.
    let bob = stack.publish_item("bob", "10/20/30").await.unwrap();
    assert_eq!(s(&bob, attr::CANCEL_SOURCE).as_deref(), Some("sqs"));
    assert_eq!(s(&bob, attr::CANCELLED_BY).as_deref(), Some(SENDER));
}
