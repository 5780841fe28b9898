//! The compiled Lambda binary under the real Lambda Runtime API protocol
//! (served on loopback by the tests), against DynamoDB/SQS on moto_server:
//! every sample event in, the documented answer out, the records and the
//! queue as they should be, and logs that fit Lambda and leak nothing.

use crate::common;

use base64::Engine as _;
use common::hostile_events::Want;
use common::runtime_api::Outcome;
use common::runtime_api::RuntimeApi;
use common::sample_events::{lambda_binary, run_every_event, LambdaProcess};
use common::Stack;
use publish_cancel::adapters::dynamodb::attr;

#[tokio::test]
async fn every_event_through_the_runtime_api_against_the_emulator() {
    let stack = Stack::new().await;
    let runtime = RuntimeApi::start().await;
    let kek = base64::engine::general_purpose::STANDARD.encode(common::KEK);
    let mut env = stack.lambda_env(&runtime.addr);
    env.push(("AWS_LAMBDA_LOG_FORMAT", "JSON".into()));
    env.push(("AWS_LAMBDA_LOG_LEVEL", "DEBUG".into()));
    let mut function = LambdaProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_publish-cancel")),
        &env,
    );

    run_every_event(&mut function, &runtime, &stack).await;
    // The running publish was cancelled by one of the events, stamped with
    // the Lambda request id.
    let item = stack.publish_item("alice", "1/2/3").await.unwrap();
    assert!(item[attr::CANCEL_REQUEST_ID]
        .as_s()
        .unwrap()
        .starts_with("00000000-0000-4000-8000-"));

    function.child.kill().await.ok();
    check_logs(&function.logs(), &kek);
}

/// JSON lines, a request id on every line of a request, one outcome line per
/// cancel, and none of the credentials the events carried.
fn check_logs(logs: &str, kek: &str) {
    let mut outcome_lines = 0;
    let mut metric_lines = 0;
    let mut cold_starts = 0;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        let text = line.to_owned();
        if v.get("_aws").is_some() {
            // CloudWatch Embedded Metric Format: valid, and only bounded values.
            crate::common::emf::check_emf(&v).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(v["Function"], "publish-cancel", "{line}");
            assert!(v.get("path").is_none() && v.get("uid").is_none(), "{line}");
            if v.get("ColdStart").is_some() {
                cold_starts += 1;
            } else {
                metric_lines += 1;
            }
            continue;
        }
        // A request's line is named after its route (or "none").
        let message = v["fields"]["message"].as_str().unwrap_or_default();
        let routes = publish_cancel::api::route::ROUTES.iter().map(|r| r.name);
        if routes.chain(["none"]).any(|name| name == message) {
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
    assert_eq!(metric_lines, outcome_lines, "one metric line per request");
    assert_eq!(cold_starts, 1, "one ColdStart line per process");
    check_no_secrets("the sample events' run", logs, &[kek]);
}

fn check_no_secrets(what: &str, logs: &str, extra: &[&str]) {
    common::assert_no_secrets(what, logs, extra);
}

/// No event, of any shape or size, stops the function: each hostile event
/// gets an HTTP answer (a uforgeError) or, when it is no HTTP event at all,
/// an invocation error; none changes the stores; the same process then
/// serves a real cancel. Run on the release artefact (panic = "abort")
/// when scripts/test provides it: a panic is then the process's death.
#[tokio::test]
async fn no_event_stops_the_function_or_changes_anything() {
    let stack = Stack::new().await;
    let runtime = RuntimeApi::start().await;
    let env = stack.lambda_env(&runtime.addr);
    let mut function = LambdaProcess::spawn(&lambda_binary("publish-cancel"), &env);
    let before = stack.tables().await;
    for (name, event, want) in common::hostile_events::catalogue() {
        let answer = function.invoke(&runtime, &event).await;
        match (&answer, want) {
            (Outcome::Response(r), Want::Status(status)) => {
                assert_eq!(
                    r["statusCode"].as_u64(),
                    Some(u64::from(status)),
                    "{name}: {r}"
                );
                let body = r["body"].as_str().unwrap_or_default();
                assert_eq!(common::xml::check_error(body).status, status, "{name}");
            }
            (Outcome::Error(e), Want::NotHttp) => {
                // Ours, by its documented type: not the runtime's own
                // decoding error (which a deep event gave before RawEvent).
                assert_eq!(e["errorType"], "UnsupportedEvent", "{name}: {e}");
                assert!(e["errorMessage"].is_string(), "{name}: {e}");
            }
            _ => panic!("{name}: expected {want:?}, got {answer:?}"),
        }
        assert!(
            function.child.try_wait().expect("wait").is_none(),
            "{name}: the function died\n{}",
            function.logs()
        );
        assert_eq!(stack.tables().await, before, "{name} changed a table");
        assert_eq!(stack.queue_depth().await, 0, "{name} sent a stop");
    }
    // Still the same process, still serving.
    let ok = std::fs::read_to_string(
        common::sample_events::events_dir().join("apigw-rest-cancel-basic.json"),
    )
    .unwrap();
    let Outcome::Response(r) = function.invoke(&runtime, &ok).await else {
        panic!("the function stopped serving");
    };
    assert_eq!(r["statusCode"], 200, "{r}");
    function.child.kill().await.ok();
    let logs = function.logs();
    assert!(!logs.contains("panicked"), "a panic was caught:\n{logs}");
    // Malformed and doubled Authorization headers were refused and logged:
    // never what they held.
    check_no_secrets("the hostile events' run", &logs, &[]);
    // Each refusal was logged with its reason.
    assert!(
        logs.contains("unsupported event") && logs.contains("malformed request"),
        "{logs}"
    );
}

/// The same catalogue against the other two functions: the automation
/// function refuses every one of them with its documented type
/// (`UForge.UnsupportedEvent`: none is a cancel command, the deepest and
/// the non-JSON ones included) and writes nothing; the reconciler reads no
/// event (its schedule's content is not read) and answers each with a run.
/// Neither dies.
#[tokio::test]
async fn no_event_stops_the_automation_function_or_the_reconciler() {
    let stack = Stack::new().await;
    for binary in ["automation", "reconciler"] {
        let runtime = RuntimeApi::start().await;
        let env: Vec<(String, String)> = stack
            .lambda_env(&runtime.addr)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain([("AWS_LAMBDA_FUNCTION_NAME".to_owned(), binary.to_owned())])
            .collect();
        let mut function = LambdaProcess::spawn(&lambda_binary(binary), &env);
        let before = stack.tables().await;
        for (name, event, _) in common::hostile_events::catalogue() {
            let answer = function.invoke(&runtime, &event).await;
            match (binary, &answer) {
                ("automation", Outcome::Error(e)) => {
                    assert_eq!(
                        e["errorType"], "UForge.UnsupportedEvent",
                        "{binary} {name}: {e}"
                    )
                }
                ("reconciler", Outcome::Response(r)) => {
                    assert!(r["found"].is_u64(), "{binary} {name}: {r}")
                }
                _ => panic!("{binary} {name}: {answer:?}"),
            }
            assert!(
                function.child.try_wait().expect("wait").is_none(),
                "{binary} {name}: the function died\n{}",
                function.logs()
            );
        }
        assert_eq!(stack.tables().await, before, "{binary} changed a table");
        assert_eq!(stack.queue_depth().await, 0, "{binary} sent a stop");
        function.child.kill().await.ok();
        let logs = function.logs();
        assert!(!logs.contains("panicked"), "{binary}:\n{logs}");
        check_no_secrets(binary, &logs, &[]);
    }
}

/// The variables Lambda itself always sets, for a function named `name`.
fn lambda_variables(runtime: &RuntimeApi, name: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime.addr.as_str()),
        ("AWS_LAMBDA_FUNCTION_NAME", name),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A start that cannot succeed is posted to the Runtime API's init error
/// endpoint, naming the variable and the fix, and the process exits at once
/// (it does not hang an emulator, nor abort in a panic).
#[tokio::test]
async fn a_misconfigured_start_reports_an_init_error_and_exits() {
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
    );
    let cases: [Case; 4] = [
        // AWS backend without its tables: say which, and the local way out.
        (
            "publish-cancel",
            &[("AWS_REGION", "us-east-1")],
            &["USERS_TABLE", "UFORGE_BACKEND=memory"],
        ),
        (
            "reconciler",
            &[("AWS_REGION", "us-east-1")],
            &["PUBLISHES_TABLE", "UFORGE_BACKEND=memory"],
        ),
        (
            "publish-cancel",
            &[("UFORGE_BACKEND", "mem")],
            &["UFORGE_BACKEND", "memory"],
        ),
        // The memory backend is refused by the real Lambda service.
        (
            "publish-cancel",
            &[
                ("UFORGE_BACKEND", "memory"),
                ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
            ],
            &["UFORGE_BACKEND", "local invocation only"],
        ),
    ];
    for (binary, extra, wants) in cases {
        let runtime = RuntimeApi::start().await;
        let mut env = lambda_variables(&runtime, binary);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut function = LambdaProcess::spawn(&lambda_binary(binary), &env);
        let status =
            tokio::time::timeout(std::time::Duration::from_secs(30), function.child.wait())
                .await
                .unwrap_or_else(|_| panic!("{binary} {extra:?}: still running after 30 s"))
                .unwrap();
        assert_eq!(
            status.code(),
            Some(1),
            "{binary} {extra:?}: {status}\n{}",
            function.logs()
        );
        let reported = runtime.init_error().unwrap_or_else(|| {
            panic!(
                "{binary} {extra:?}: no init error posted\n{}",
                function.logs()
            )
        });
        let reported: serde_json::Value = serde_json::from_str(&reported).unwrap();
        assert_eq!(reported["errorType"], "Runtime.ConfigError");
        let message = reported["errorMessage"].as_str().unwrap();
        for want in wants {
            assert!(message.contains(want), "{binary} {extra:?}: {message}");
        }
    }
    // Without Lambda's own variables: a clear error and exit 1, not a panic.
    let runtime = RuntimeApi::start().await;
    let mut env = lambda_variables(&runtime, "publish-cancel");
    env.retain(|(k, _)| k != "AWS_LAMBDA_FUNCTION_NAME");
    let mut function = LambdaProcess::spawn(&lambda_binary("publish-cancel"), &env);
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), function.child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(status.code(), Some(1), "{}", function.logs());
    let reported = runtime.init_error().expect("an init error");
    assert!(reported.contains("AWS_LAMBDA_FUNCTION_NAME"), "{reported}");
    assert!(!function.logs().contains("panicked"), "{}", function.logs());
}

/// `UFORGE_BACKEND=memory` (what `cargo lambda watch` and `sam local` get
/// from Cargo.toml and events/local-env.json): no AWS at all, and every
/// sample event has its expected outcome.
#[tokio::test]
async fn the_memory_backend_answers_every_sample_event_without_aws() {
    let runtime = RuntimeApi::start().await;
    let mut env = lambda_variables(&runtime, "publish-cancel");
    env.push(("UFORGE_BACKEND".into(), "memory".into()));
    let mut function = LambdaProcess::spawn(&lambda_binary("publish-cancel"), &env);
    for (name, want) in common::sample_events::expected() {
        let event =
            std::fs::read_to_string(common::sample_events::events_dir().join(&name)).unwrap();
        let Outcome::Response(r) = function.invoke(&runtime, &event).await else {
            panic!("events/{name}: invocation error\n{}", function.logs());
        };
        assert_eq!(
            r["statusCode"].as_u64(),
            want["status"].as_u64(),
            "events/{name}: {r}"
        );
        assert_eq!(
            common::sample_events::content_type(&r),
            want["contentType"].as_str(),
            "events/{name}: {r}"
        );
    }
    assert!(runtime.init_error().is_none());
    function.child.kill().await.ok();

    // The reconciler too.
    let runtime = RuntimeApi::start().await;
    let mut env = lambda_variables(&runtime, "reconciler");
    env.push(("UFORGE_BACKEND".into(), "memory".into()));
    let mut function = LambdaProcess::spawn(&lambda_binary("reconciler"), &env);
    let Outcome::Response(report) = function.invoke(&runtime, "{}").await else {
        panic!("reconciler failed\n{}", function.logs());
    };
    assert_eq!(report["found"], 0, "{report}");
}

/// The exact variable sets each host gives a function
/// (tests/fixtures/lambda-env/; local_invoke.py and sam_local.py check
/// that the tools still set what their fixtures say).
fn host_environment(fixture: &str, runtime: &RuntimeApi) -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lambda-env/");
    std::fs::read_to_string(format!("{path}{fixture}"))
        .unwrap_or_else(|e| panic!("{fixture}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=VALUE");
            // Our Runtime API stands in for the host's.
            let v = if k == "AWS_LAMBDA_RUNTIME_API" {
                runtime.addr.as_str()
            } else {
                v
            };
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Issue 25 (1): the memory backend, and the bundled seed's known
/// passwords, never serve in the Lambda service, whatever its configuration
/// says; `cargo lambda` and `sam local` keep working. Each Lambda binary is
/// started with exactly the variables each host sets, plus
/// `UFORGE_BACKEND=memory`: the service's (provided.al2023 has no
/// `AWS_EXECUTION_ENV`, which the guard used to look for) make it refuse to
/// start, also when the configuration claims to be SAM; the local tools'
/// make it serve.
#[tokio::test]
async fn the_memory_backend_serves_only_where_it_is_local() {
    let direct = serde_json::json!({"type": "uforge.publish.cancel", "schemaVersion": 1,
        "uid": "alice", "aid": 1, "itid": 2, "pitid": 3})
    .to_string();
    let http = std::fs::read_to_string(
        common::sample_events::events_dir().join("apigw-rest-cancel-basic.json"),
    )
    .unwrap();
    type Case = (&'static str, &'static [(&'static str, &'static str)], bool);
    let cases: [Case; 6] = [
        ("lambda-provided-al2023.env", &[], false),
        (
            "lambda-provided-al2023.env",
            &[("AWS_SAM_LOCAL", "true")],
            false,
        ),
        (
            "lambda-provided-al2023.env",
            &[("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")],
            false,
        ),
        ("sam-local-1.170.0.env", &[], true),
        (
            "sam-local-1.170.0.env",
            &[
                ("LAMBDA_TASK_ROOT", "/var/task"),
                ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
            ],
            true,
        ),
        ("cargo-lambda-1.9.2.env", &[], true),
    ];
    for (fixture, extra, serves) in cases {
        for (binary, event) in [
            ("publish-cancel", http.as_str()),
            ("automation", direct.as_str()),
            ("reconciler", "{}"),
        ] {
            let runtime = RuntimeApi::start().await;
            let mut env = host_environment(fixture, &runtime);
            env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            env.push(("UFORGE_BACKEND".into(), "memory".into()));
            let mut function = LambdaProcess::spawn(&lambda_binary(binary), &env);
            let case = format!("{binary} with {fixture} {extra:?}");
            if serves {
                let Outcome::Response(answer) = function.invoke(&runtime, event).await else {
                    panic!("{case}: refused\n{}", function.logs());
                };
                match binary {
                    "publish-cancel" => assert_eq!(answer["statusCode"], 200, "{case}: {answer}"),
                    "automation" => assert_eq!(answer["outcome"], "cancelled", "{case}: {answer}"),
                    _ => assert_eq!(answer["found"], 0, "{case}: {answer}"),
                }
                function.child.kill().await.ok();
                continue;
            }
            let status =
                tokio::time::timeout(std::time::Duration::from_secs(30), function.child.wait())
                    .await
                    .unwrap_or_else(|_| panic!("{case}: still running after 30 s"))
                    .unwrap();
            assert_eq!(status.code(), Some(1), "{case}\n{}", function.logs());
            let reported = runtime
                .init_error()
                .unwrap_or_else(|| panic!("{case}: no init error\n{}", function.logs()));
            assert!(
                reported.contains("Runtime.ConfigError")
                    && reported.contains("UFORGE_BACKEND")
                    && reported.contains("refused in the Lambda service"),
                "{case}: {reported}"
            );
        }
    }
}
