//! The compiled Lambda binary under the real Lambda Runtime API protocol
//! (served on loopback by the tests), against DynamoDB/SQS on moto_server:
//! every sample event in, the documented answer out, the records and the
//! queue as they should be, and logs that fit Lambda and leak nothing.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use common::runtime_api::{Outcome, RuntimeApi};
use common::Stack;
use publish_cancel::adapters::dynamodb::attr;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

fn capture(
    mut from: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) {
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
}

#[tokio::test]
async fn every_event_through_the_runtime_api_against_the_emulator() {
    let stack = Stack::new().await;
    let runtime = RuntimeApi::start().await;
    let kek = base64::engine::general_purpose::STANDARD.encode(common::KEK);
    let mut child = Command::new(env!("CARGO_BIN_EXE_publish-cancel"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(stack.lambda_env(&runtime.addr))
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "DEBUG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Lambda binary");
    let logs = Arc::new(Mutex::new(Vec::new()));
    capture(child.stdout.take().unwrap(), logs.clone());
    capture(child.stderr.take().unwrap(), logs.clone());

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let mut successes = 0;
    let mut names: Vec<&String> = expected
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !k.starts_with('_'))
        .collect();
    names.sort();
    for name in names {
        let want = &expected[name.as_str()];
        let event = std::fs::read_to_string(dir.join(name)).unwrap();
        let before = stack.tables().await;
        let Outcome::Response(resp) = runtime.invoke(&event).await else {
            panic!("events/{name}: the function reported an invocation error");
        };
        let status = resp["statusCode"]
            .as_u64()
            .unwrap_or_else(|| panic!("events/{name}: {resp}"));
        assert_eq!(
            status,
            want["status"].as_u64().unwrap(),
            "events/{name}: {resp}"
        );
        // REST and ALB answers carry multiValueHeaders, HTTP API ones headers.
        let content_type = resp["headers"]["content-type"]
            .as_str()
            .or(resp["multiValueHeaders"]["content-type"][0].as_str());
        assert_eq!(
            content_type,
            want["contentType"].as_str(),
            "events/{name}: {resp}"
        );
        if status < 300 {
            successes += 1;
        } else {
            assert_eq!(
                stack.tables().await,
                before,
                "events/{name} changed a table"
            );
        }
        if status >= 400 && content_type == Some("application/xml") {
            let doc = common::xml::check_error(resp["body"].as_str().unwrap());
            assert_eq!(u64::from(doc.status), status);
        }
    }
    assert!(
        runtime.init_error().is_none(),
        "init error: {:?}",
        runtime.init_error()
    );

    // The running publish was cancelled once; every success sent a stop.
    let item = stack.publish_item("alice", "1/2/3").await.unwrap();
    assert_eq!(item[attr::STATE].as_s().unwrap(), "cancelled");
    assert!(item[attr::CANCEL_REQUEST_ID]
        .as_s()
        .unwrap()
        .starts_with("00000000-0000-4000-8000-"));
    assert_eq!(stack.drain().await.len(), successes);

    child.kill().await.ok();
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    check_logs(&logs, &kek);
}

/// JSON lines, a request id on every line of a request, one outcome line per
/// cancel, and none of the credentials the events carried.
fn check_logs(logs: &str, kek: &str) {
    let mut outcome_lines = 0;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        let text = line.to_owned();
        if v["fields"]["message"] == "cancel" {
            outcome_lines += 1;
            let id = v["fields"]["request_id"].as_str().unwrap_or_default();
            assert!(id.starts_with("00000000-0000-4000-8000-"), "{line}");
            // The runtime's span carries the same id.
            assert!(text.contains(&format!("\"requestId\":\"{id}\"")), "{line}");
            assert!(
                v["fields"]["status"].is_u64() && v["fields"]["duration_ms"].is_f64(),
                "{line}"
            );
        }
    }
    assert!(
        outcome_lines >= 20,
        "one outcome line per invocation, got {outcome_lines}:\n{logs}"
    );
    let basic =
        |u: &str, p: &str| base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
    for secret in [
        "alice-password".to_owned(),
        "not-the-password".to_owned(),
        "bob-password".to_owned(),
        basic("alice", "alice-password"),
        basic("alice", "not-the-password"),
        "SECRETKEY456".to_owned(),
        "0CrZ0HktI7YH".to_owned(),
        "signature".to_owned(),
        "Basic ".to_owned(),
        // The SDK's own SigV4 signatures.
        "AWS4-HMAC-SHA256".to_owned(),
        kek.to_owned(),
    ] {
        assert!(!logs.contains(&secret), "logs contain {secret:?}");
    }
}
