//! UForge's own Python client against the service on the emulator: the
//! SDK hammr uses (uforge_python_sdk 3.8.13 on Python 2.7, installed by
//! scripts/uforge-sdk) parses every answer itself. hammr's publish loop
//! polls the status while automation cancels, and ends "canceled"; after a
//! cancel from every way in, the SDK reads `cancelled`; its errors parse.

use crate::common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Stack;
use publish_cancel::domain::{PublishRecord, PublishState};
use publish_cancel::frontdoor::automation::{Automation, Door, COMMAND_TYPE, REQUEST_DETAIL_TYPE};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The SDK's interpreter and the directory its packages are in.
fn sdk() -> (String, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(format!("{root}/scripts/uforge-sdk"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/uforge-sdk");
    assert!(out.status.success(), "scripts/uforge-sdk failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let python = lines.next().expect("the interpreter").to_owned();
    let site = lines.next().expect("the SDK's directory").to_owned();
    (python, site)
}

fn command(args: &[&str]) -> tokio::process::Command {
    let (python, site) = sdk();
    let mut c = tokio::process::Command::new(python);
    c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/uforge_sdk.py"))
        .args(args)
        .env("PYTHONPATH", site)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// One SDK call's printed line.
async fn once(args: &[&str]) -> Value {
    let out = command(args).output().await.expect("run the SDK");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("SDK {args:?}: {stdout}"))
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hammr_s_publish_loop_ends_canceled_by_a_cancel_from_every_way_in() {
    let stack = Stack::new().await;
    let moto = &common::moto::moto().endpoint;
    let addr = common::serve_locally(Arc::new(stack.api_via(moto, moto).await)).await;
    let base = format!("http://{addr}/api");
    let automation = Automation::new(stack.canceller_via(moto).await);

    // hammr polls alice's running publish; automation (a direct invoke)
    // cancels it while it does.
    let mut poll = command(&[
        "poll",
        &base,
        "alice",
        "alice-password",
        "alice",
        "1",
        "2",
        "3",
        "0.2",
        "300",
    ])
    .spawn()
    .expect("start the SDK's poll");
    let mut lines = BufReader::new(poll.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the SDK polls")
            .unwrap()
            .expect("the poll goes on");
        seen.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    for status in &seen {
        assert_eq!(status["type"], "OpStatus", "parsed by the SDK: {status}");
        assert_eq!(status["cancelled"], false, "{status}");
        assert_eq!(status["percentage"], 40, "{status}");
    }
    let command_json = json!({"type": COMMAND_TYPE, "schemaVersion": 1, "uid": "alice",
        "aid": 1, "itid": 2, "pitid": 3, "reason": "over budget"});
    let answer = automation
        .handle(&command_json, Door::Direct, "inv-sdk", far())
        .await
        .unwrap();
    assert_eq!(answer["outcome"], "cancelled", "{answer}");
    let mut rest = Vec::new();
    while let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the loop ends")
        .unwrap()
    {
        rest.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    let exit = poll.wait().await.unwrap();
    let stderr = {
        use tokio::io::AsyncReadExt as _;
        let mut s = String::new();
        let _ = poll.stderr.take().unwrap().read_to_string(&mut s).await;
        s
    };
    assert!(exit.success(), "{rest:?}\n{stderr}");
    let end = rest.last().expect("an end line");
    assert_eq!(
        end,
        &json!({"end": "canceled", "message": PublishRecord::CANCELLED_MESSAGE}),
        "{rest:?}"
    );
    assert_eq!(rest[rest.len() - 2]["cancelled"], true);

    // The other ways in: an SQS batch, an EventBridge delivery, HTTP (the
    // SDK's own cancel); each read back by the SDK.
    let mut bare = json!({"type": COMMAND_TYPE, "schemaVersion": 1, "uid": "alice",
        "aid": 1, "itid": 2, "pitid": 4});
    let sqs = json!({"Records": [{"messageId": "m-sdk", "body": bare.to_string(),
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:commands",
        "attributes": {"SenderId": "AIDASENDER"}}]});
    let batch = automation
        .handle(&sqs, Door::EventSources, "inv-sqs", far())
        .await
        .unwrap();
    assert_eq!(batch["batchItemFailures"], json!([]), "{batch}");
    bare.as_object_mut().unwrap().remove("type");
    bare["uid"] = json!("bob");
    (bare["aid"], bare["itid"], bare["pitid"]) = (json!(10), json!(20), json!(30));
    let eventbridge = json!({"ruleArn": "arn:aws:events:us-east-1:123456789012:rule/bus/cancel",
        "event": {"id": "e-sdk", "detail-type": REQUEST_DETAIL_TYPE, "source": "acme.watchdog",
                  "account": "123456789012", "detail": bare}});
    let answer = automation
        .handle(&eventbridge, Door::EventSources, "inv-eb", far())
        .await
        .unwrap();
    assert_eq!(answer["outcome"], "cancelled", "{answer}");
    stack
        .put_publish(&PublishRecord::new(
            common::alice_key(40),
            PublishState::Publishing,
        ))
        .await;
    let cancelled = once(&[
        "cancel",
        &base,
        "alice",
        "alice-password",
        "alice",
        "1",
        "2",
        "40",
    ])
    .await;
    assert_eq!(cancelled["cancelled"], true, "{cancelled}");
    for (login, password, uid, ids) in [
        ("alice", "alice-password", "alice", ["1", "2", "4"]),
        ("bob", "bob-password", "bob", ["10", "20", "30"]),
        ("alice", "alice-password", "alice", ["1", "2", "40"]),
    ] {
        let [aid, itid, pitid] = ids;
        let status = once(&["status", &base, login, password, uid, aid, itid, pitid]).await;
        assert_eq!(status["type"], "OpStatus", "{status}");
        assert_eq!(status["cancelled"], true, "{uid}/{pitid}: {status}");
        assert_eq!(
            status["uri"],
            format!("users/{uid}/appliances/{aid}/images/{itid}/pimages/{pitid}/status")
        );
    }
    let signed = once(&[
        "status-apikey",
        &base,
        "PUBKEY123",
        "SECRETKEY456",
        "alice",
        "1",
        "2",
        "3",
    ])
    .await;
    assert_eq!(signed["cancelled"], true, "{signed}");

    // Refusals reach the SDK as the uforgeErrors it parses.
    for (args, status, message_id) in [
        (
            ["status", "alice", "alice-password", "alice", "1", "2", "99"],
            404,
            "publish.status.notFound",
        ),
        (
            ["status", "alice", "wrong", "alice", "1", "2", "3"],
            401,
            "error.unauthorized",
        ),
        (
            ["status", "bob", "bob-password", "alice", "1", "2", "3"],
            403,
            "error.forbidden.user",
        ),
        (
            ["cancel", "alice", "alice-password", "alice", "1", "2", "5"],
            409,
            "publish.cancel.finished",
        ),
    ] {
        let mut full = vec![args[0], &base];
        full.extend(&args[1..]);
        let error = once(&full).await;
        assert_eq!(error["error"], status, "{args:?}: {error}");
        assert_eq!(error["messageId"], message_id, "{args:?}: {error}");
    }
}
