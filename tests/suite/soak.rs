//! The chaos soak: the delivery protocol tried as an operator would, all at
//! once. Every DynamoDB and SQS call of the service's processes goes
//! through a proxy that breaks about a quarter of them (500s, throttling,
//! delays past the SDK's attempt timeout, resets, writes committed whose
//! answer is lost, short outages); HTTP cancels reach two local servers,
//! EventBridge events, SQS batches and direct invokes reach two automation
//! processes (the same event to both at once, the same message twice in a
//! batch, redeliveries later), the reconciler runs every few seconds (its
//! runs may overlap), and the servers and automation processes are killed
//! with SIGKILL mid-request and restarted. Then the faults stop, the
//! reconciler catches up, and the invariants of docs/guarantees.md
//! ("Delivery under faults") are checked on the tables, the queue, every
//! answer and every log line.
//!
//! `cargo test --test suite soak` runs the suite's short seeded run;
//! `scripts/soak` a longer one (`UFORGE_SOAK_SEED`, `UFORGE_SOAK_SECS`,
//! `UFORGE_SOAK_FAULT_RATE`, `UFORGE_SOAK_WEIGHTS`, `UFORGE_SOAK_PUBLISHES`),
//! printing its figures as one `soak-figures` JSON line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::chaos::{self, ChaosProxy, FaultMix};
use crate::common::http_client::try_send;
use crate::common::moto::Moto;
use crate::common::runtime_api::{Outcome, RuntimeApi};
use crate::common::{self, template};
use publish_cancel::adapters::dynamodb::{attr, record_to_item, user_to_item};
use publish_cancel::domain::{Login, PublishKey, PublishRecord, PublishState};
use publish_cancel::ports::StopMessage;

/// The run's knobs, from the environment (scripts/soak) or the suite's
/// defaults: a short run, within CI's time.
#[derive(Debug, Clone)]
struct Params {
    seed: u64,
    chaos: Duration,
    mix: FaultMix,
    publishes: usize,
    http_clients: usize,
}

fn params() -> Params {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let num = |name: &str, default: u64| var(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    let mut mix = FaultMix::default();
    if let Some(rate) = var("UFORGE_SOAK_FAULT_RATE").and_then(|v| v.parse().ok()) {
        mix.rate = rate;
    }
    if let Some(weights) = var("UFORGE_SOAK_WEIGHTS") {
        let parsed: Vec<u32> = weights
            .split(',')
            .filter_map(|w| w.trim().parse().ok())
            .collect();
        if let Ok(w) = <[u32; 5]>::try_from(parsed) {
            mix.weights = w;
        }
    }
    Params {
        seed: num("UFORGE_SOAK_SEED", 24),
        chaos: Duration::from_secs(num("UFORGE_SOAK_SECS", 45)),
        mix,
        publishes: num("UFORGE_SOAK_PUBLISHES", 240) as usize,
        http_clients: num("UFORGE_SOAK_HTTP_CLIENTS", 6) as usize,
    }
}

const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:automation";
const RULE: &str = "arn:aws:events:us-east-1:123456789012:rule/uforge-automation/cancel-requests";
/// The functions' timeouts in template.yaml.
const AUTOMATION_TIMEOUT: Duration = Duration::from_secs(15);
const RECONCILER_TIMEOUT: Duration = Duration::from_secs(60);
/// The soak's reconciler: a short grace, run every few seconds.
const GRACE_SECS: u64 = 2;
const RECONCILE_EVERY: Duration = Duration::from_secs(3);

fn key(pitid: i64) -> PublishKey {
    PublishKey {
        uid: Login::parse("alice").expect("a login"),
        aid: 1.into(),
        itid: 2.into(),
        pitid: pitid.into(),
    }
}

/// The soak's publishes: alice's `1/2/{1000 + i}`; one in ten published and
/// one in ten failed (never to be touched), the rest running.
fn initial_state(i: usize) -> PublishState {
    match i % 10 {
        0 => PublishState::Published,
        1 => PublishState::Failed,
        n if n % 2 == 0 => PublishState::Queued,
        _ => PublishState::Publishing,
    }
}

/// A stop on the queue, when SQS took it (ms), the attempt that sent it.
type Queued = (StopMessage, i64, Option<String>);

fn pitid(i: usize) -> i64 {
    1000 + i as i64
}

/// A seeded random source shared by the soak's actors.
#[derive(Clone)]
struct Dice(Arc<Mutex<u64>>);

impl Dice {
    fn below(&self, n: usize) -> usize {
        (chaos::next(&mut self.0.lock().unwrap()) % n.max(1) as u64) as usize
    }

    fn chance(&self, p: f64) -> bool {
        (self.below(1_000_000) as f64) < p * 1_000_000.0
    }

    /// A publish index, half the time from a small hot set (collisions).
    fn publish(&self, n: usize) -> usize {
        if self.chance(0.5) {
            self.below(n.min(24))
        } else {
            self.below(n)
        }
    }
}

/// Everything the actors saw, for the checks and the figures.
#[derive(Default)]
struct Record {
    /// (publish index, status, Retry-After) of each HTTP answer.
    http: Vec<(usize, u16, Option<String>)>,
    /// HTTP requests whose connection failed, not excused by a kill.
    http_unexcused: Vec<String>,
    http_connection_errors: usize,
    /// Automation answers and errors by name.
    automation: BTreeMap<String, usize>,
    /// Automation invocations that got no answer, not excused by a kill.
    automation_unanswered: Vec<String>,
    /// Answered later than the function's timeout.
    automation_late: Vec<String>,
    reconciler: BTreeMap<String, usize>,
    violations: Vec<String>,
}

/// One process slot: the current process, every log line of every life,
/// and when it was killed.
struct Slot {
    name: String,
    child: Option<Child>,
    logs: Arc<Mutex<Vec<u8>>>,
    /// (killed at, restarted at)
    kills: Vec<(Instant, Option<Instant>)>,
    /// A local server's `host:port` (changes at each restart).
    addr: Option<String>,
}

impl Slot {
    fn new(name: &str) -> Slot {
        Slot {
            name: name.to_owned(),
            child: None,
            logs: Arc::default(),
            kills: Vec::new(),
            addr: None,
        }
    }

    fn killed_during(&self, from: Instant, to: Instant) -> bool {
        self.kills
            .iter()
            .any(|(at, back)| *at <= to && back.is_none_or(|b| b >= from))
    }

    fn logs(&self) -> String {
        String::from_utf8_lossy(&self.logs.lock().unwrap()).into_owned()
    }
}

fn capture(from: impl tokio::io::AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut all = into.lock().unwrap();
            all.extend_from_slice(line.as_bytes());
            all.push(b'\n');
        }
    });
}

/// Environment shared by every service process: the stack, JSON logs, AWS
/// through the slot's own proxy port.
struct Env {
    moto: String,
    users_table: String,
    publishes_table: String,
    queue_url: String,
}

impl Env {
    fn common(&self, endpoint: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("PUBLISHES_TABLE", &self.publishes_table),
            ("STOP_QUEUE_URL", &self.queue_url),
            ("UFORGE_TLS_ROOTS", "amazon"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

async fn start_server(slot: &mut Slot, env: &Env, endpoint: &str) {
    let mut vars = env.common(endpoint);
    vars.push(("USERS_TABLE".into(), env.users_table.clone()));
    vars.push((
        "UFORGE_API_KEY_KEK".into(),
        base64::engine::general_purpose::STANDARD.encode(common::KEK),
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_uforge-local"))
        .args(["--backend", "aws", "--port", "0"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start uforge-local");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let banner = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("uforge-local starts within 30 s")
        .expect("its stdout")
        .expect("a banner line");
    let addr = banner
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .and_then(|u| u.split('/').next())
        .unwrap_or_else(|| panic!("no URL in {banner:?}"))
        .to_owned();
    let logs = slot.logs.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut all = logs.lock().unwrap();
            all.extend_from_slice(line.as_bytes());
            all.push(b'\n');
        }
    });
    capture(child.stderr.take().expect("stderr"), slot.logs.clone());
    slot.child = Some(child);
    slot.addr = Some(addr);
}

fn start_lambda(slot: &mut Slot, binary: &Path, vars: Vec<(String, String)>) {
    let mut child = Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    capture(child.stdout.take().expect("stdout"), slot.logs.clone());
    capture(child.stderr.take().expect("stderr"), slot.logs.clone());
    slot.child = Some(child);
}

fn lambda_vars(env: &Env, endpoint: &str, runtime: &str, name: &str) -> Vec<(String, String)> {
    let mut vars = env.common(endpoint);
    for (k, v) in [
        ("AWS_LAMBDA_RUNTIME_API", runtime),
        ("AWS_LAMBDA_FUNCTION_NAME", name),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
    ] {
        vars.push((k.into(), v.into()));
    }
    vars
}

/// A process that exited without being killed is a violation.
fn check_alive(slot: &mut Slot, violations: &mut Vec<String>) {
    if let Some(child) = slot.child.as_mut() {
        if let Ok(Some(status)) = child.try_wait() {
            let logs = slot.logs();
            let tail: String = logs.lines().rev().take(20).collect::<Vec<_>>().join("\n");
            violations.push(format!("{} died on its own ({status}):\n{tail}", slot.name));
            slot.child = None;
        }
    }
}

/// All the soak's moving parts.
struct Rig {
    params: Params,
    dice: Dice,
    env: Env,
    proxy: ChaosProxy,
    servers: Vec<Arc<tokio::sync::Mutex<Slot>>>,
    automations: Vec<Arc<tokio::sync::Mutex<Slot>>>,
    automation_runtime: Arc<RuntimeApi>,
    reconcilers: Vec<Arc<tokio::sync::Mutex<Slot>>>,
    reconciler_runtime: Arc<RuntimeApi>,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    next_id: Arc<AtomicUsize>,
}

impl Rig {
    async fn server_addr(&self, i: usize) -> Option<String> {
        let slot = self.servers[i % self.servers.len()].lock().await;
        slot.child.as_ref().and(slot.addr.clone())
    }

    async fn any_killed(
        slots: &[Arc<tokio::sync::Mutex<Slot>>],
        from: Instant,
        to: Instant,
    ) -> bool {
        for slot in slots {
            if slot.lock().await.killed_during(from, to) {
                return true;
            }
        }
        false
    }

    /// One HTTP client: cancels at random (sometimes two at once), retries
    /// 503s after their Retry-After and dropped connections elsewhere.
    async fn http_client(self: Arc<Self>, n: usize) {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:alice-password")
        );
        while !self.stop.load(Ordering::SeqCst) {
            let i = self.dice.publish(self.params.publishes);
            let copies = if self.dice.chance(0.2) { 2 } else { 1 };
            let mut tasks = Vec::new();
            for c in 0..copies {
                let rig = self.clone();
                let auth = auth.clone();
                tasks.push(tokio::spawn(async move {
                    rig.http_cancel(i, n + c, &auth).await;
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            tokio::time::sleep(Duration::from_millis(100 + self.dice.below(300) as u64)).await;
        }
    }

    async fn http_cancel(&self, i: usize, server: usize, auth: &str) {
        let path = common::cancel_path("alice", 1, 2, pitid(i));
        let headers = [("Authorization", auth), ("Accept", "application/xml")];
        for attempt in 0..4 {
            let which = server + attempt;
            let Some(addr) = self.server_addr(which).await else {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            };
            let started = Instant::now();
            let answer = tokio::time::timeout(
                Duration::from_secs(20),
                try_send(&addr, "DELETE", &path, &headers),
            )
            .await;
            match answer {
                Ok(Ok(resp)) => {
                    let retry_after = resp.headers.get("retry-after").cloned();
                    let status = resp.status;
                    self.record
                        .lock()
                        .unwrap()
                        .http
                        .push((i, status, retry_after));
                    if status != 503 {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok(Err(e)) => {
                    let slot = &self.servers[which % self.servers.len()];
                    let excused = slot.lock().await.killed_during(started, Instant::now());
                    {
                        let mut record = self.record.lock().unwrap();
                        record.http_connection_errors += 1;
                        if !excused {
                            record
                                .http_unexcused
                                .push(format!("DELETE {path} to {addr}: {e}"));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(_) => {
                    self.record
                        .lock()
                        .unwrap()
                        .http_unexcused
                        .push(format!("DELETE {path} to {addr}: no answer within 20 s"));
                    return;
                }
            }
        }
    }

    fn command(&self, i: usize) -> Value {
        json!({"type": "uforge.publish.cancel", "schemaVersion": 1, "uid": "alice", "aid": 1,
               "itid": 2, "pitid": pitid(i), "reason": "soak", "requestedBy": "chaos"})
    }

    fn eventbridge(&self, i: usize, id: &str) -> Value {
        let mut detail = self.command(i);
        detail.as_object_mut().unwrap().remove("type");
        json!({"ruleArn": RULE, "event": {"version": "0", "id": id,
               "detail-type": "Publish Cancel Requested", "source": "acme.soak",
               "account": "123456789012", "time": "2026-12-06T09:00:00Z", "region": "us-east-1",
               "resources": [], "detail": detail}})
    }

    fn sqs_record(&self, i: usize, message_id: &str) -> Value {
        json!({"messageId": message_id, "receiptHandle": format!("rh-{message_id}"),
               "body": self.command(i).to_string(),
               "attributes": {"ApproximateReceiveCount": "1", "SenderId": "AROASOAK:watchdog"},
               "messageAttributes": {}, "eventSource": "aws:sqs",
               "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:commands", "awsRegion": "us-east-1"})
    }

    /// Invokes the automation function once; `Some(answer)` or `None` when
    /// it must be redelivered (a retryable error, no answer).
    async fn invoke_automation(&self, event: &Value, arn: &str, what: &str) -> Option<Value> {
        let started = Instant::now();
        let answer = self
            .automation_runtime
            .try_invoke_timed(
                &event.to_string(),
                Some(arn),
                AUTOMATION_TIMEOUT + Duration::from_secs(10),
            )
            .await;
        let took = answer.as_ref().map_or(started.elapsed(), |(_, ran)| *ran);
        let outcome = answer.map(|(outcome, _)| outcome);
        let killed = Self::any_killed(&self.automations, started, Instant::now()).await;
        let mut record = self.record.lock().unwrap();
        match outcome {
            None => {
                *record.automation.entry("no answer".into()).or_default() += 1;
                if !killed {
                    record
                        .automation_unanswered
                        .push(format!("{what}: no answer in {took:?}"));
                }
                None
            }
            Some(outcome) => {
                if took > AUTOMATION_TIMEOUT && !killed {
                    record
                        .automation_late
                        .push(format!("{what}: answered after {took:?}"));
                }
                match outcome {
                    Outcome::Response(v) => {
                        let name = v["outcome"]
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| "batch".into());
                        *record.automation.entry(name).or_default() += 1;
                        Some(v)
                    }
                    Outcome::Error(e) => {
                        let kind = e["errorType"].as_str().unwrap_or("untyped").to_owned();
                        let retryable = matches!(
                            kind.as_str(),
                            "UForge.BackendUnavailable"
                                | "UForge.StopNotSent"
                                | "UForge.DeadlineReached"
                        );
                        if !retryable {
                            record.violations.push(format!(
                                "{what}: error {e} is not a retryable UForge.* error"
                            ));
                        }
                        *record.automation.entry(kind).or_default() += 1;
                        None
                    }
                }
            }
        }
    }

    /// EventBridge: one event, sometimes to two instances at once, and
    /// delivered again while its invocation fails (EventBridge's retries),
    /// sometimes again later although it succeeded (at least once).
    async fn eventbridge_delivery(self: Arc<Self>, i: usize) {
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        // Some ids do not fit a request id (space, length): derived ids.
        let id = if n.is_multiple_of(7) {
            format!("soak event {n} {}", "x".repeat(130))
        } else {
            format!("eb-{}-{n}", self.params.seed)
        };
        let event = self.eventbridge(i, &id);
        let arn = format!("{FUNCTION_ARN}:events");
        let twice = self.dice.chance(0.35);
        let again = self.dice.chance(0.2);
        for round in 0..6 {
            let (a, b) = if twice && round == 0 {
                let (a, b) = tokio::join!(
                    self.invoke_automation(&event, &arn, "eventbridge"),
                    self.invoke_automation(&event, &arn, "eventbridge (twin)")
                );
                (a, b)
            } else {
                (
                    self.invoke_automation(&event, &arn, "eventbridge").await,
                    Some(Value::Null),
                )
            };
            if a.is_some() && b.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500 + self.dice.below(1500) as u64)).await;
        }
        if again {
            tokio::time::sleep(Duration::from_secs(2 + self.dice.below(4) as u64)).await;
            let _ = self
                .invoke_automation(&event, &arn, "eventbridge (later)")
                .await;
        }
    }

    /// SQS: a batch of commands (a message sometimes twice in it); failed
    /// items, and the whole batch on an error, delivered again.
    async fn sqs_delivery(self: Arc<Self>) {
        let size = 1 + self.dice.below(4);
        let mut records: Vec<Value> = Vec::new();
        for _ in 0..size {
            let n = self.next_id.fetch_add(1, Ordering::SeqCst);
            let record =
                self.sqs_record(self.dice.publish(self.params.publishes), &format!("m-{n}"));
            if self.dice.chance(0.3) {
                records.push(record.clone());
            }
            records.push(record);
        }
        let arn = format!("{FUNCTION_ARN}:events");
        for _ in 0..6 {
            if records.is_empty() || self.stop.load(Ordering::SeqCst) {
                return;
            }
            let event = json!({ "Records": records });
            if let Some(answer) = self.invoke_automation(&event, &arn, "sqs batch").await {
                let failed: HashSet<String> = answer["batchItemFailures"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                    .collect();
                records.retain(|r| failed.contains(r["messageId"].as_str().unwrap_or("")));
                records.dedup_by(|a, b| a["messageId"] == b["messageId"]);
            }
            tokio::time::sleep(Duration::from_millis(500 + self.dice.below(2000) as u64)).await;
        }
    }

    /// A direct invoke (Step Functions): retried on a retryable error as a
    /// new invocation.
    async fn direct_delivery(self: Arc<Self>, i: usize) {
        let command = self.command(i);
        for _ in 0..4 {
            if self
                .invoke_automation(&command, FUNCTION_ARN, "direct")
                .await
                .is_some()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn automation_traffic(self: Arc<Self>) {
        let mut tasks = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            let rig = self.clone();
            let i = self.dice.publish(self.params.publishes);
            tasks.push(match self.dice.below(3) {
                0 => tokio::spawn(rig.eventbridge_delivery(i)),
                1 => tokio::spawn(rig.sqs_delivery()),
                _ => tokio::spawn(rig.direct_delivery(i)),
            });
            tokio::time::sleep(Duration::from_millis(150 + self.dice.below(250) as u64)).await;
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Invokes the reconciler every few seconds; runs overlap when one is
    /// slow (two processes take turns).
    async fn reconcile_schedule(self: Arc<Self>) {
        let mut runs = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            let rig = self.clone();
            runs.push(tokio::spawn(async move { rig.reconcile_once().await }));
            tokio::time::sleep(RECONCILE_EVERY).await;
        }
        for r in runs {
            let _ = r.await;
        }
    }

    async fn reconcile_once(&self) -> Option<Value> {
        let outcome = self
            .reconciler_runtime
            .try_invoke(
                "{\"source\": \"aws.scheduler\"}",
                RECONCILER_TIMEOUT + Duration::from_secs(10),
            )
            .await;
        let mut record = self.record.lock().unwrap();
        match outcome {
            Some(Outcome::Response(v)) => {
                *record.reconciler.entry("ok".into()).or_default() += 1;
                Some(v)
            }
            Some(Outcome::Error(e)) => {
                let kind = e["errorType"].as_str().unwrap_or("untyped").to_owned();
                if !matches!(
                    kind.as_str(),
                    "UForge.StopsStillPending" | "UForge.BackendUnavailable"
                ) {
                    record
                        .violations
                        .push(format!("reconciler: error {e} is not a documented type"));
                }
                *record.reconciler.entry(kind).or_default() += 1;
                None
            }
            None => {
                record
                    .violations
                    .push("reconciler: no answer within its timeout".into());
                None
            }
        }
    }

    /// Kills a random process of `slots` now and then, restarting it soon.
    async fn killer(self: Arc<Self>, servers: bool) {
        let slots = if servers {
            &self.servers
        } else {
            &self.automations
        };
        let mut next = Instant::now() + Duration::from_secs(4 + self.dice.below(4) as u64);
        while !self.stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if Instant::now() < next {
                continue;
            }
            next = Instant::now() + Duration::from_secs(5 + self.dice.below(5) as u64);
            let slot = &slots[self.dice.below(slots.len())];
            let mut killed = slot.lock().await;
            {
                let mut record = self.record.lock().unwrap();
                check_alive(&mut killed, &mut record.violations);
            }
            if let Some(mut child) = killed.child.take() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            killed.kills.push((Instant::now(), None));
            drop(killed);
            tokio::time::sleep(Duration::from_millis(300 + self.dice.below(700) as u64)).await;
            self.restart(slot, servers).await;
        }
    }

    async fn restart(&self, slot: &Arc<tokio::sync::Mutex<Slot>>, server: bool) {
        let mut slot = slot.lock().await;
        if slot.child.is_some() {
            return;
        }
        let endpoint = self.proxy.listener(&slot.name).await;
        if server {
            start_server(&mut slot, &self.env, &endpoint).await;
        } else {
            let vars = lambda_vars(
                &self.env,
                &endpoint,
                &self.automation_runtime.addr,
                "automation",
            );
            start_lambda(&mut slot, Path::new(env!("CARGO_BIN_EXE_automation")), vars);
        }
        if let Some(kill) = slot.kills.last_mut() {
            kill.1.get_or_insert_with(Instant::now);
        }
    }
}

async fn scan(
    dynamo: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Vec<HashMap<String, AttributeValue>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = dynamo
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan");
        items.extend(out.items().iter().cloned());
        start = out.last_evaluated_key().cloned();
        if start.is_none() {
            return items;
        }
    }
}

fn s(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn n(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_soak() {
    let params = params();
    let started = Instant::now();
    // Its own emulator: the load must not slow the other tests' one.
    let moto = Moto::private(&[]);
    let sdk = common::sdk_config_at(&moto.endpoint).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let tag = std::process::id();
    let env = Env {
        moto: moto.endpoint.clone(),
        users_table: format!("soak-users-{tag}"),
        publishes_table: format!("soak-publishes-{tag}"),
        queue_url: String::new(),
    };
    template::create_table(&dynamo, "UsersTable", &env.users_table).await;
    template::create_table(&dynamo, "PublishesTable", &env.publishes_table).await;
    let queue_url = publish_cancel::admin::create_queue(&sqs, &format!("soak-stop-{tag}"))
        .await
        .expect("the stop queue");
    let env = Env { queue_url, ..env };
    let (users, _) = common::seed_data();
    for u in &users {
        dynamo
            .put_item()
            .table_name(&env.users_table)
            .set_item(Some(user_to_item(u)))
            .send()
            .await
            .expect("put user");
    }
    for i in 0..params.publishes {
        let mut record = PublishRecord::new(key(pitid(i)), initial_state(i));
        record.percentage = Some((i % 100) as i32);
        dynamo
            .put_item()
            .table_name(&env.publishes_table)
            .set_item(Some(record_to_item(&record, Default::default())))
            .send()
            .await
            .expect("put publish");
    }

    let proxy = ChaosProxy::new(&env.moto, params.seed, params.mix);
    let automation_runtime = Arc::new(RuntimeApi::start().await);
    automation_runtime.set_timeout(AUTOMATION_TIMEOUT);
    let reconciler_runtime = Arc::new(RuntimeApi::start().await);
    reconciler_runtime.set_timeout(RECONCILER_TIMEOUT);
    let slots = |prefix: &str, n: usize| -> Vec<Arc<tokio::sync::Mutex<Slot>>> {
        (0..n)
            .map(|i| Arc::new(tokio::sync::Mutex::new(Slot::new(&format!("{prefix}{i}")))))
            .collect()
    };
    let rig = Arc::new(Rig {
        dice: Dice(Arc::new(Mutex::new(params.seed))),
        params: params.clone(),
        env,
        proxy: proxy.clone(),
        servers: slots("server", 2),
        automations: slots("automation", 2),
        automation_runtime,
        reconcilers: slots("reconciler", 2),
        reconciler_runtime,
        record: Arc::default(),
        stop: Arc::default(),
        next_id: Arc::default(),
    });
    for slot in &rig.servers {
        rig.restart(slot, true).await;
    }
    for slot in &rig.automations {
        rig.restart(slot, false).await;
    }
    for slot in &rig.reconcilers {
        let mut slot = slot.lock().await;
        let endpoint = proxy.listener(&slot.name).await;
        let mut vars = lambda_vars(
            &rig.env,
            &endpoint,
            &rig.reconciler_runtime.addr,
            "reconciler",
        );
        vars.push(("RECONCILE_GRACE_SECONDS".into(), GRACE_SECS.to_string()));
        start_lambda(&mut slot, Path::new(env!("CARGO_BIN_EXE_reconciler")), vars);
    }

    // Chaos.
    proxy.set_on(true);
    let mut actors = Vec::new();
    for c in 0..params.http_clients {
        actors.push(tokio::spawn(rig.clone().http_client(c)));
    }
    actors.push(tokio::spawn(rig.clone().automation_traffic()));
    actors.push(tokio::spawn(rig.clone().reconcile_schedule()));
    actors.push(tokio::spawn(rig.clone().killer(true)));
    actors.push(tokio::spawn(rig.clone().killer(false)));
    tokio::time::sleep(params.chaos).await;
    rig.stop.store(true, Ordering::SeqCst);
    for a in actors {
        a.await.expect("an actor of the soak panicked");
    }
    let chaos_ended = Instant::now();
    let chaos_ended_ms = publish_cancel::metrics::now_ms() as i64;

    // Quiesce: no faults, every process up, the reconciler until nothing is
    // pending (a claim held by a killed process frees itself in a lease).
    proxy.set_on(false);
    for slot in rig.servers.iter().chain(&rig.automations) {
        {
            let mut s = slot.lock().await;
            let mut record = rig.record.lock().unwrap();
            check_alive(&mut s, &mut record.violations);
        }
        rig.restart(slot, rig.servers.iter().any(|x| Arc::ptr_eq(x, slot)))
            .await;
    }
    let quiet_deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let _ = rig.reconcile_once().await;
        let items = scan(&dynamo, &rig.env.publishes_table).await;
        let pending = items
            .iter()
            .filter(|i| i.contains_key(attr::STOP_PENDING))
            .count();
        if pending == 0 || Instant::now() > quiet_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let quiesced_in = chaos_ended.elapsed();
    // docs/guarantees.md: once the faults stop, every stop is on the queue
    // within grace + one reconciler period + one claim lease (a claim held
    // by a killed process lapses), plus the runs' own time.
    let bound = Duration::from_secs(
        GRACE_SECS + RECONCILE_EVERY.as_secs() + publish_cancel::cancel::STOP_CLAIM_LEASE as u64,
    ) + Duration::from_secs(10);

    // Everything on the queue: each stop, when SQS took it, and the
    // attempt that sent it.
    let mut stops: Vec<Queued> = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&rig.env.queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive");
        if out.messages().is_empty() {
            break;
        }
        for m in out.messages() {
            let stop: StopMessage = serde_json::from_str(m.body().unwrap_or_default())
                .unwrap_or_else(|e| panic!("a stop that is not a stop message ({e}): {m:?}"));
            let sent_ms = m
                .attributes()
                .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let attempt = m
                .message_attributes()
                .and_then(|a| a.get(publish_cancel::adapters::sqs::ATTR_ATTEMPT))
                .and_then(|v| v.string_value())
                .map(str::to_owned);
            stops.push((stop, sent_ms, attempt));
            sqs.delete_message()
                .queue_url(&rig.env.queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }

    // The checks.
    let items = scan(&dynamo, &rig.env.publishes_table).await;
    let record = std::mem::take(&mut *rig.record.lock().unwrap());
    let mut violations = record.violations.clone();
    violations.extend(record.http_unexcused.iter().map(|v| format!("http: {v}")));
    violations.extend(
        record
            .automation_unanswered
            .iter()
            .map(|v| format!("automation: {v}")),
    );
    violations.extend(
        record
            .automation_late
            .iter()
            .map(|v| format!("automation: {v}")),
    );
    for slot in rig
        .servers
        .iter()
        .chain(&rig.automations)
        .chain(&rig.reconcilers)
    {
        let mut s = slot.lock().await;
        check_alive(&mut s, &mut violations);
        let logs = s.logs();
        if logs.contains("panicked") {
            violations.push(format!("{} panicked:\n{logs}", s.name));
        }
        if let Some(secret) = common::secrets()
            .into_iter()
            .find(|x| logs.contains(x.as_str()))
        {
            violations.push(format!("{} logged {secret:?}", s.name));
        }
    }
    let mut by_key: HashMap<String, &HashMap<String, AttributeValue>> = HashMap::new();
    for item in &items {
        let sort = s(item, attr::PUBLISH_KEY).unwrap_or_default();
        by_key.insert(format!("alice/{sort}"), item);
    }
    let mut stops_of: BTreeMap<String, Vec<&Queued>> = BTreeMap::new();
    for stop in &stops {
        let k = format!(
            "{}/{}/{}/{}",
            stop.0.uid, stop.0.aid, stop.0.itid, stop.0.pitid
        );
        stops_of.entry(k).or_default().push(stop);
    }
    // The excuses for a stop beyond the first, per publish and attempt:
    // each send of that attempt whose outcome it could not learn (the
    // answer lost or late, or its process killed within a request's time).
    let sends = proxy.log();
    let mut excuses: HashMap<(String, String), usize> = HashMap::new();
    for seen in &sends {
        let mut unknowable = seen.fate.ambiguous();
        for slot in rig
            .servers
            .iter()
            .chain(&rig.automations)
            .chain(&rig.reconcilers)
        {
            let s = slot.lock().await;
            if s.name == seen.slot && s.killed_during(seen.at, seen.at + Duration::from_secs(12)) {
                unknowable = true;
            }
        }
        if !unknowable {
            continue;
        }
        // Every stop the send carried: one, or a reconciler's batch.
        for carried in &seen.messages {
            let (Ok(stop), Some(attempt)) = (
                serde_json::from_str::<StopMessage>(&carried.body),
                &carried.attempt,
            ) else {
                continue;
            };
            let k = format!("{}/{}/{}/{}", stop.uid, stop.aid, stop.itid, stop.pitid);
            *excuses.entry((k, attempt.clone())).or_default() += 1;
        }
    }
    // And each send whose attempt learnt it went out but could not record
    // it (the clearing write failed): it says so, naming itself. A send
    // after a lapsed claim logs otherwise, and is never excused.
    for slot in rig
        .servers
        .iter()
        .chain(&rig.automations)
        .chain(&rig.reconcilers)
    {
        for line in slot.lock().await.logs().lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let f = &v["fields"];
            if f["message"] == "stop sent, not marked sent" {
                if let (Some(k), Some(a)) = (f["publish"].as_str(), f["attempt"].as_str()) {
                    *excuses.entry((k.to_owned(), a.to_owned())).or_default() += 1;
                }
            }
        }
    }
    let mut cancelled = 0;
    let mut slow: Vec<String> = Vec::new();
    let mut latencies: Vec<f64> = Vec::new();
    let mut per_publish: BTreeMap<usize, usize> = BTreeMap::new();
    for (k, item) in &by_key {
        let state = s(item, attr::STATE).unwrap_or_default();
        let got = stops_of.get(k).map(Vec::as_slice).unwrap_or_default();
        if item.contains_key(attr::STOP_PENDING) {
            violations.push(format!("{k}: still pending after quiescing"));
        }
        if state != "cancelled" {
            if !got.is_empty() {
                violations.push(format!("{k}: {} stop(s) for a publish {state}", got.len()));
            }
            continue;
        }
        cancelled += 1;
        *per_publish.entry(got.len()).or_default() += 1;
        if got.is_empty() && !item.contains_key(attr::STOP_UNDELIVERABLE) {
            violations.push(format!("{k}: cancelled, and no stop reached its workers"));
            continue;
        }
        let id = s(item, attr::CANCEL_REQUEST_ID).unwrap_or_default();
        for (stop, _, attempt) in got {
            if attempt.is_none() {
                violations.push(format!("{k}: a stop that does not name its sender"));
            }
            if stop.request_id != id {
                violations.push(format!(
                    "{k}: a stop carries id {:?}, the record {id:?}",
                    stop.request_id
                ));
            }
        }
        // A stop beyond the first only after a send whose attempt could
        // not learn or record how it went: every copy past one is matched
        // by such a send of the attempt that sent it or of an attempt whose
        // claim it followed, and at most one attempt sent without one.
        let mut attempts: HashMap<&str, usize> = HashMap::new();
        for (_, _, attempt) in got {
            *attempts
                .entry(attempt.as_deref().unwrap_or(""))
                .or_default() += 1;
        }
        let excused = |a: &str| {
            excuses
                .get(&(k.clone(), a.to_owned()))
                .copied()
                .unwrap_or(0)
        };
        let allowed = 1 + attempts.keys().map(|a| excused(a)).sum::<usize>();
        let sure = attempts.keys().filter(|a| excused(a) == 0).count();
        if got.len() > allowed || sure > 1 {
            violations.push(format!(
                "{k}: {} stops from {} attempt(s), {sure} of which knew their send had gone, \
                 and only {} send(s) whose outcome the sender could not learn or record",
                got.len(),
                attempts.len(),
                allowed - 1
            ));
        }
        if let (Some(at), Some(first)) =
            (n(item, attr::CANCELLED_AT), got.iter().map(|s| s.1).min())
        {
            let latency = (first - at * 1000) as f64 / 1000.0;
            if latency > bound.as_secs_f64() {
                slow.push(format!("{k} {latency:.1}s"));
            }
            // docs/guarantees.md's bound, from when DynamoDB and SQS answer
            // again: the later of the cancel and the end of the faults.
            let from = (at * 1000).max(chaos_ended_ms);
            if first - from > bound.as_millis() as i64 {
                violations.push(format!(
                    "{k}: first stop {:.1}s after its cancel or the faults' end (bound {bound:?})",
                    (first - from) as f64 / 1000.0
                ));
            }
            latencies.push(latency);
        }
    }
    for k in stops_of.keys() {
        if !by_key.contains_key(k) {
            violations.push(format!("{k}: a stop for a publish that does not exist"));
        }
    }
    // One execution answers `cancelled` per transition: every log line of
    // every process, killed ones included.
    let mut cancelled_answers: HashMap<String, usize> = HashMap::new();
    for slot in rig.servers.iter().chain(&rig.automations) {
        for line in slot.lock().await.logs().lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let f = &v["fields"];
            if f["result"] != "cancelled" {
                continue;
            }
            let k = match f["message"].as_str() {
                Some("cancel") => format!(
                    "{}/{}/{}/{}",
                    f["uid"].as_str().unwrap_or(""),
                    f["aid"].as_i64().unwrap_or(-1),
                    f["itid"].as_i64().unwrap_or(-1),
                    f["pitid"].as_i64().unwrap_or(-1)
                ),
                Some("automation cancel") => f["publish"].as_str().unwrap_or("").to_owned(),
                _ => continue,
            };
            *cancelled_answers.entry(k).or_default() += 1;
        }
    }
    for (k, times) in &cancelled_answers {
        if *times > 1 {
            violations.push(format!("{k}: {times} executions answered `cancelled`"));
        }
    }
    // HTTP: 200 ⇒ cancelled, 409 ⇒ untouched, 5xx only 503 + Retry-After.
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for (i, status, retry_after) in &record.http {
        *statuses.entry(*status).or_default() += 1;
        let k = format!("alice/1/2/{}", pitid(*i));
        let state = by_key
            .get(&k)
            .and_then(|item| s(item, attr::STATE))
            .unwrap_or_default();
        match status {
            200 if state != "cancelled" => {
                violations.push(format!("{k}: HTTP 200 but the publish is {state}"))
            }
            409 => {
                let item = by_key[&k];
                if state == "cancelled" || item.contains_key(attr::CANCEL_REQUEST_ID) {
                    violations.push(format!("{k}: HTTP 409 but the publish was touched"));
                }
            }
            503 if retry_after.as_deref() != Some("1") => {
                violations.push(format!("{k}: HTTP 503 without Retry-After: 1"))
            }
            200 | 503 => {}
            other => violations.push(format!("{k}: HTTP {other}")),
        }
    }
    for i in 0..params.publishes {
        let k = format!("alice/1/2/{}", pitid(i));
        let state = by_key
            .get(&k)
            .and_then(|item| s(item, attr::STATE))
            .unwrap_or_default();
        let initial = initial_state(i);
        if !initial.can_become(PublishState::Cancelled) && state != initial.as_str() {
            violations.push(format!("{k}: was {initial}, is {state}"));
        }
    }

    if quiesced_in > bound {
        violations.push(format!(
            "stops still pending {quiesced_in:?} after the faults stopped (bound {bound:?})"
        ));
    }
    latencies.sort_by(f64::total_cmp);
    let mut server_kills = 0;
    for slot in &rig.servers {
        server_kills += slot.lock().await.kills.len();
    }
    let mut automation_kills = 0;
    for slot in &rig.automations {
        automation_kills += slot.lock().await.kills.len();
    }
    let figures = json!({
        "seed": params.seed,
        "chaos_secs": params.chaos.as_secs(),
        "fault_rate": params.mix.rate,
        "weights": params.mix.weights,
        "publishes": params.publishes,
        "cancelled": cancelled,
        "faults": proxy.fates(),
        "http": statuses,
        "http_connection_errors": record.http_connection_errors,
        "automation": record.automation,
        "reconciler": record.reconciler,
        "kills": {"servers": server_kills, "automation": automation_kills},
        "stops_per_cancelled_publish": per_publish,
        "stop_latency_secs": {
            "p50": percentile(&latencies, 0.5),
            "p99": percentile(&latencies, 0.99),
            "max": latencies.last().copied().unwrap_or(0.0),
        },
        "quiesced_in_secs": quiesced_in.as_secs_f64().round(),
        "bound_secs": bound.as_secs(),
        "total_secs": started.elapsed().as_secs_f64().round(),
        "violations": violations.len(),
    });
    println!("soak-figures {figures}");
    if let Ok(dir) = std::env::var("UFORGE_SOAK_LOGS") {
        // Everything each process printed, and the slow stops, for a look.
        for slot in rig
            .servers
            .iter()
            .chain(&rig.automations)
            .chain(&rig.reconcilers)
        {
            let s = slot.lock().await;
            let _ = std::fs::write(format!("{dir}/{}.log", s.name), s.logs());
        }
        let _ = std::fs::write(format!("{dir}/slow.txt"), slow.join("\n"));
    }
    assert!(
        cancelled > 0 && !record.http.is_empty(),
        "the soak cancelled nothing: {figures}"
    );
    assert!(
        violations.is_empty(),
        "{} violation(s):\n{}\n{figures}",
        violations.len(),
        violations.join("\n")
    );
}
