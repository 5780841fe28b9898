//! "Publish Cancelled" events: template.yaml's pipe turns the publishes
//! table's stream into events on the automation bus. Pipes is not in moto,
//! so `stack.py pipe-check` plays it: the table's real stream records (moto
//! DynamoDB Streams), the pipe's own filter (moto's EventBridge matcher)
//! and its input template. Here every kind of write the system makes goes
//! to one table, and exactly the committed transitions to `cancelled` are
//! announced, once each, with every field the template promises.

use publish_cancel::config::PublishesAndQueue;
use publish_cancel::domain::{PublishRecord, PublishState};
use publish_cancel::frontdoor::automation;
use serde_json::{json, Value};

use crate::common::template::stack_py;
use crate::common::worker::Worker;
use crate::common::{self, cancel_path, Req, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_committed_cancel_is_announced_once_and_nothing_else() {
    // The bundled seed: seven INSERTs, one of them already `cancelled`.
    let stack = Stack::new().await;
    let cancel = |pitid: i64| {
        Req::delete(cancel_path("alice", 1, 2, pitid)).basic("alice", "alice-password")
    };

    // HTTP: publishing -> cancelled (then the stop is confirmed, a MODIFY
    // from cancelled to cancelled), the same again, a finished publish, an
    // already cancelled one, a stranger's.
    assert_eq!(stack.call(&cancel(3)).await.status(), 200);
    assert_eq!(stack.call(&cancel(3)).await.status(), 200);
    assert_eq!(stack.call(&cancel(5)).await.status(), 409);
    assert_eq!(stack.call(&cancel(7)).await.status(), 200);
    let bob = Req::delete(cancel_path("bob", 10, 20, 30)).basic("alice", "alice-password");
    assert_eq!(stack.call(&bob).await.status(), 403);

    // Automation, on its own authority: queued -> cancelled.
    let key = publish_cancel::startup::canceller_aws(
        &common::sdk_config().await,
        PublishesAndQueue {
            publishes_table: stack.publishes_table.clone(),
            stop_queue_url: stack.queue_url.clone(),
            pending_shards: Default::default(),
        },
    );
    let command = json!({"type": "uforge.publish.cancel", "schemaVersion": 1, "uid": "alice",
        "aid": 1, "itid": 2, "pitid": 4, "reason": "budget exceeded", "requestedBy": "watchdog"});
    let far = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let answer = automation::Automation::new(key)
        .handle(&command, automation::Door::Direct, "invoke-1", far)
        .await
        .unwrap();
    assert_eq!(answer["outcome"], "cancelled", "{answer}");

    // A worker finishes bob's publish; an operator re-puts a cancelled
    // record (MODIFY, cancelled to cancelled) and adds a new one (INSERT).
    let worker = Worker {
        dynamo: stack.dynamo.clone(),
        table: stack.publishes_table.clone(),
    };
    let bob_key = publish_cancel::domain::PublishKey {
        uid: publish_cancel::domain::Login::parse("bob").unwrap(),
        aid: 10.into(),
        itid: 20.into(),
        pitid: 30.into(),
    };
    assert!(worker.finish(&bob_key, PublishState::Published).await);
    stack
        .put_publish(&PublishRecord::new(
            common::alice_key(7),
            PublishState::Cancelled,
        ))
        .await;
    stack
        .put_publish(&PublishRecord::new(
            common::alice_key(8),
            PublishState::Cancelled,
        ))
        .await;
    // Stops: both transitions; the repeats add none (their stops were sent).
    assert_eq!(stack.drain().await.len(), 2);

    let rows = stack_py(&[
        "pipe-check",
        "--endpoint",
        &common::moto::moto().endpoint,
        "--table",
        &stack.publishes_table,
    ]);
    let rows = rows.as_array().unwrap();
    let count = |name: &str| rows.iter().filter(|r| r["eventName"] == name).count();
    // The pipe saw everything that was written, and only that.
    assert_eq!((count("INSERT"), count("MODIFY")), (8, 6), "{rows:#?}");
    let announced: Vec<&Value> = rows
        .iter()
        .filter(|r| r["matched"] == true)
        .map(|r| &r["event"])
        .collect();
    assert_eq!(announced.len(), 2, "{rows:#?}");
    for (event, pitid, previous, source, by) in [
        (announced[0], "3", "publishing", "http", "alice"),
        (
            announced[1],
            "4",
            "queued",
            "invoke",
            automation::INVOKE_PRINCIPAL,
        ),
    ] {
        let missing = rows.iter().find(|r| &r["event"] == event).unwrap()["missing"].clone();
        assert_eq!(missing, json!([]), "{event}");
        assert_eq!(event["schemaVersion"], 1);
        assert_eq!(
            (
                &event["uid"],
                &event["aid"],
                &event["itid"],
                &event["pitid"]
            ),
            (&json!("alice"), &json!("1"), &json!("2"), &json!(pitid)),
            "{event}"
        );
        assert_eq!(event["previousState"], previous, "{event}");
        assert_eq!(event["cancelSource"], source, "{event}");
        assert_eq!(event["cancelledBy"], by, "{event}");
        assert!(
            event["cancelledAt"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .is_ok(),
            "{event}"
        );
        assert!(
            !event["cancelRequestId"].as_str().unwrap().is_empty(),
            "{event}"
        );
        // The fixed projection and nothing else of the record (a reason,
        // progress, what a worker adds: never broadcast).
        let mut keys: Vec<&str> = event
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "aid",
                "cancelRequestId",
                "cancelSource",
                "cancelledAt",
                "cancelledBy",
                "itid",
                "pitid",
                "previousState",
                "schemaVersion",
                "uid"
            ],
            "{event}"
        );
    }
}
