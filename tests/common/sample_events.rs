//! A compiled Lambda binary under the loopback Runtime API, fed every
//! sample event in `events/`, each checked against `events/expected.json`
//! and against the stores.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use publish_cancel::adapters::dynamodb::attr;
use publish_cancel::frontdoor::automation::EVENTS_ALIAS;

use super::runtime_api::{Outcome, RuntimeApi};
use super::Stack;

/// A Lambda binary running as its own process, its stdout and stderr
/// captured.
pub struct LambdaProcess {
    pub child: Child,
    logs: Arc<Mutex<Vec<u8>>>,
}

/// lambda-functions.txt: each Lambda function's logical id in the
/// template and the Cargo binary it runs, in the manifest's order.
pub fn lambda_functions() -> Vec<(String, String)> {
    manifest()
        .into_iter()
        .map(|(logical, binary, _)| (logical, binary))
        .collect()
}

/// lambda-functions.txt, whole: logical id, binary, and the folder of its
/// sample events under events/ (`None` for "-").
pub fn manifest() -> Vec<(String, String, Option<String>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/lambda-functions.txt");
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [logical, binary, events] => (
                logical.to_owned(),
                binary.to_owned(),
                (events != "-").then(|| events.to_owned()),
            ),
            _ => panic!("lambda-functions.txt: not `<logical id> <binary> <events>`: {l:?}"),
        })
        .collect()
}

/// The binary the template's function `logical` runs (lambda-functions.txt).
pub fn function_binary(logical: &str) -> PathBuf {
    let (_, binary) = lambda_functions()
        .into_iter()
        .find(|(l, _)| l == logical)
        .unwrap_or_else(|| panic!("{logical} is not in lambda-functions.txt"));
    lambda_binary(&binary)
}

/// A Lambda binary of this crate (lambda-functions.txt): the debug build,
/// or, when `UFORGE_ARTEFACT_DIR` names a directory of release builds
/// (scripts/test sets it to the arm64 artefacts `sam deploy` would ship),
/// that one.
pub fn lambda_binary(name: &str) -> PathBuf {
    assert!(
        lambda_functions().iter().any(|(_, b)| b == name),
        "not a Lambda binary of lambda-functions.txt: {name}"
    );
    match std::env::var_os("UFORGE_ARTEFACT_DIR") {
        Some(dir) => PathBuf::from(dir).join(name),
        // Cargo builds every binary of the package into one directory.
        None => Path::new(env!("CARGO_BIN_EXE_publish-cancel")).with_file_name(name),
    }
}

/// How to run `binary` here: directly, or under qemu-user when it is an
/// aarch64 ELF and this machine is not (the artefact `sam deploy` ships).
///
/// qemu must load the aarch64 ld.so, libc and libgcc_s of one and the same
/// glibc: with Debian's multiarch libc6:arm64 installed (libstd-rust-web-dev:
/// arm64 brings it), `-L /usr/aarch64-linux-gnu` takes ld.so from the cross
/// toolchain's libc6-arm64-cross and libgcc_s from the multiarch tree, and
/// the first `pthread_create` spins forever. So the prefix is used only
/// where the multiarch loader is absent.
pub fn command_for(binary: &Path) -> Command {
    let mut head = [0u8; 20];
    let aarch64 = std::fs::File::open(binary)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .map(|()| &head[..4] == b"\x7fELF" && u16::from_le_bytes([head[18], head[19]]) == 183)
        .unwrap_or(false);
    if aarch64 && std::env::consts::ARCH != "aarch64" {
        let mut c = Command::new("qemu-aarch64");
        if !Path::new("/lib/ld-linux-aarch64.so.1").exists() {
            c.arg("-L").arg("/usr/aarch64-linux-gnu");
        }
        c.arg(binary);
        c
    } else {
        Command::new(binary)
    }
}

/// How every Lambda process of the tests and the benchmark starts: the
/// Lambda binary `binary` (under qemu-user when it is an aarch64 ELF here)
/// with exactly `env` and PATH, killed when dropped. Callers choose stdio.
pub fn lambda_command<K: AsRef<str>, V: AsRef<str>>(binary: &Path, env: &[(K, V)]) -> Command {
    lambda_command_with(command_for(binary), env)
}

/// The same for a command that runs the binary itself (the benchmark's
/// shell that joins a cgroup, then execs it).
pub fn lambda_command_with<K: AsRef<str>, V: AsRef<str>>(
    mut command: Command,
    env: &[(K, V)],
) -> Command {
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        .kill_on_drop(true);
    command
}

impl LambdaProcess {
    /// Starts `binary` with exactly `env` (and PATH).
    pub fn spawn<K: AsRef<str>, V: AsRef<str>>(binary: &Path, env: &[(K, V)]) -> LambdaProcess {
        let mut child = lambda_command(binary, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        capture(child.stdout.take().expect("stdout"), logs.clone());
        capture(child.stderr.take().expect("stderr"), logs.clone());
        LambdaProcess { child, logs }
    }

    /// Invokes this function through `runtime`; on no answer within 60 s
    /// (time enough for Argon2 under qemu), fails with what it printed.
    pub async fn invoke(&mut self, runtime: &RuntimeApi, event: &str) -> Outcome {
        let wait = std::env::var("UFORGE_INVOKE_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60);
        match runtime
            .try_invoke(event, std::time::Duration::from_secs(wait))
            .await
        {
            Some(outcome) => outcome,
            None => panic!(
                "no answer within {wait} s; the function {}:\n{}",
                match self.child.try_wait() {
                    Ok(Some(status)) => format!("exited ({status})"),
                    _ => "is still running".to_owned(),
                },
                self.logs()
            ),
        }
    }

    /// Everything it printed so far.
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.logs.lock().unwrap()).into_owned()
    }
}

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

/// The files in `events/` that are not events: the expected outcomes, and
/// `sam local`'s environment file.
pub const NOT_EVENTS: [&str; 2] = ["expected.json", "local-env.json"];

/// The `Content-Type` of a Lambda HTTP response: REST answers carry it in
/// `multiValueHeaders`, HTTP API ones in `headers`.
pub fn content_type(resp: &serde_json::Value) -> Option<&str> {
    resp["headers"]["content-type"]
        .as_str()
        .or(resp["multiValueHeaders"]["content-type"][0].as_str())
}

pub fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("events")
}

/// The sample event files of `events/<folder>` (`""`: the HTTP ones,
/// `"automation"`), in name order.
pub fn sample_files(folder: &str) -> Vec<PathBuf> {
    let dir = events_dir().join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".json") && !NOT_EVENTS.contains(&n))
        })
        .collect();
    files.sort();
    files
}

/// `events/<folder>/expected.json`: each sample's expected outcome, by
/// file name.
pub fn expected_in(folder: &str) -> serde_json::Value {
    let path = events_dir().join(folder).join("expected.json");
    let text = std::fs::read_to_string(&path).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json is JSON")
}

/// The sample events with an expected outcome, by file name, in name order.
pub fn expected() -> Vec<(String, serde_json::Value)> {
    let all = expected_in("");
    let mut out: Vec<(String, serde_json::Value)> = all
        .as_object()
        .expect("an object")
        .iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Invokes the function behind `runtime` with every sample event, on the
/// bundled seed's data in `stack`: each answer has its expected status and
/// content type, every refusal leaves the tables as they were, every XML
/// error is a complete `uforgeError`; alice's running publish ends
/// cancelled by one of these invocations and every success sent a stop.
/// Returns how many invocations succeeded.
pub async fn run_every_event(
    function: &mut LambdaProcess,
    runtime: &RuntimeApi,
    stack: &Stack,
) -> usize {
    let mut successes = 0;
    // Successes that wrote: each must send exactly one stop.
    let mut transitions = 0;
    for (name, want) in expected() {
        let event = std::fs::read_to_string(events_dir().join(&name)).expect("event file");
        let before = stack.tables().await;
        let Outcome::Response(resp) = function.invoke(runtime, &event).await else {
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
        let content_type = content_type(&resp);
        assert_eq!(
            content_type,
            want["contentType"].as_str(),
            "events/{name}: {resp}"
        );
        if status < 300 {
            successes += 1;
            if stack.tables().await != before {
                transitions += 1;
            }
        } else {
            assert_eq!(
                stack.tables().await,
                before,
                "events/{name} changed a table"
            );
        }
        if status >= 400 && content_type == Some("application/xml") {
            let doc = super::xml::check_error(resp["body"].as_str().unwrap());
            assert_eq!(u64::from(doc.status), status);
        }
    }
    assert!(
        runtime.init_error().is_none(),
        "init error: {:?}",
        runtime.init_error()
    );
    let item = stack
        .publish_item("alice", "1/2/3")
        .await
        .expect("alice's publish");
    assert_eq!(item[attr::STATE].as_s().unwrap(), "cancelled");
    let stops = stack.drain().await;
    {
        // A repeat sends no second stop for a cancel whose stop was sent
        // (and a FIFO queue would drop it anyway): one stop per cancel,
        // carrying the record's id, whatever the queue.
        let mut seen = std::collections::BTreeSet::new();
        for stop in &stops {
            let body: serde_json::Value =
                serde_json::from_str(stop.body().unwrap_or_default()).expect("a JSON stop");
            let sort = format!("{}/{}/{}", body["aid"], body["itid"], body["pitid"]);
            let uid = body["uid"].as_str().expect("uid");
            let record = stack.publish_item(uid, &sort).await.expect("its record");
            // (A record cancelled before this service existed has no id.)
            if let Some(id) = record.get(attr::CANCEL_REQUEST_ID) {
                assert_eq!(
                    id.as_s().ok().map(String::as_str),
                    body["requestId"].as_str(),
                    "{body}"
                );
            }
            assert!(
                seen.insert((uid.to_owned(), sort)),
                "two stops for one cancel: {body}"
            );
        }
        assert_eq!(
            stops.len(),
            transitions,
            "one stop per transition, none per repeat"
        );
    }
    successes
}

/// Invokes the automation function behind `runtime` with every sample in
/// `events/automation/`, in name order, on the bundled seed's data in
/// `stack`: each answer is the one `events/automation/expected.json`
/// documents (an outcome and state, an error type, or the failed message
/// ids of a batch). Drains the stops they sent; returns how many.
/// Every automation sample in file-name order, each through the door Lambda
/// would use: `eventbridge-*` and `sqs-*` through `function_arn`'s events
/// alias (the rule, the queue's mapping), the others directly.
pub async fn run_every_automation_event(
    function: &mut LambdaProcess,
    runtime: &RuntimeApi,
    stack: &Stack,
    function_arn: &str,
) -> usize {
    let expected = expected_in("automation");
    let files = sample_files("automation");
    assert!(files.len() >= 7, "{files:?}");
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy();
        let want = expected
            .get(name.as_ref())
            .unwrap_or_else(|| panic!("events/automation/{name} has no entry in expected.json"));
        let event = std::fs::read_to_string(&path).unwrap();
        if name.starts_with("eventbridge-") || name.starts_with("sqs-") {
            runtime.set_invoked_arn(&format!("{function_arn}:{EVENTS_ALIAS}"));
        } else {
            runtime.set_invoked_arn(function_arn);
        }
        match function.invoke(runtime, &event).await {
            Outcome::Response(answer) => {
                if let Some(failures) = want.get("batchItemFailures") {
                    let ids: Vec<serde_json::Value> = answer["batchItemFailures"]
                        .as_array()
                        .unwrap_or_else(|| panic!("{name}: {answer}"))
                        .iter()
                        .map(|f| f["itemIdentifier"].clone())
                        .collect();
                    assert_eq!(&serde_json::Value::Array(ids), failures, "{name}: {answer}");
                } else {
                    assert_eq!(answer["outcome"], want["outcome"], "{name}: {answer}");
                    assert_eq!(answer["state"], want["state"], "{name}: {answer}");
                }
            }
            Outcome::Error(e) => assert_eq!(e["errorType"], want["errorType"], "{name}: {e}"),
        }
    }
    stack.drain().await.len()
}
