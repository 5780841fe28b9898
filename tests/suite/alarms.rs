//! Every failure users feel raises the alarm meant for it, and a healthy
//! run raises none: the three functions run as Lambda runs them (`ops`),
//! each failure is injected, and the template's alarms are evaluated as
//! CloudWatch would (`common::alarms`) over what the functions wrote (their
//! EMF lines) and what Lambda and API Gateway would report of them.
//!
//! What AWS reports is modelled here, from what the test saw of each
//! invocation: Lambda's `Invocations`, `Errors` (an invocation error, a
//! crash, a timeout), `Throttles` (an invocation Lambda refused: injected
//! by the test, our code never sees it) and the account's
//! `ConcurrentExecutions`, under the dimension sets Lambda uses
//! (`FunctionName`; with `Resource` and `ExecutedVersion` for the alias);
//! API Gateway's `Count`, `5XXError`, `4XXError` (1 or 0 per request) and
//! `Latency`, by `ApiName` and `Stage`, a failed or timed-out invocation
//! answered 502. Time is in virtual minutes: what happens in a step of the
//! test is counted in that minute.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue as A;

use crate::common::alarms::{emf_points, Alarm, Point};
use crate::common::fault_proxy::Fault;
use crate::common::ops::{self, Function, Ops};
use crate::common::runtime_api::Outcome;

/// The stack the alarms are resolved for: the API is `{STACK}-uforge`.
const STACK: &str = "uforge-test";
const API: &str = "uforge-test-uforge";

/// What one scenario saw, minute by minute.
struct Watch {
    ops: Ops,
    points: Vec<Point>,
    minute: u32,
    /// Invocations in flight now, and the most this minute (the account's
    /// `ConcurrentExecutions`).
    in_flight: usize,
    peak: usize,
    next_pitid: i64,
    /// Whether publish workers take their stops off the queue each minute.
    workers_take_stops: bool,
    /// The minute the oldest stop still waiting in the queue was first seen.
    oldest_waiting: Option<u32>,
}

/// How an invocation ended, as Lambda sees it.
enum Ended {
    Answered(Outcome),
    /// No answer: the process died, or the invocation timed out.
    Nothing,
}

impl Watch {
    async fn start() -> Watch {
        Watch {
            ops: Ops::start().await,
            points: Vec::new(),
            minute: 0,
            in_flight: 0,
            peak: 0,
            next_pitid: 1000,
            workers_take_stops: true,
            oldest_waiting: None,
        }
    }

    /// A fresh rig that has served one minute of ordinary traffic (warm
    /// processes, a verified password cached).
    async fn after_an_ordinary_minute() -> Watch {
        let mut w = Watch::start().await;
        w.ordinary().await;
        w.next_minute().await;
        w
    }

    fn lambda(&mut self, function: &str, metric: &str, value: f64) {
        let m = self.minute;
        let alias = format!("{function}:live");
        let mut sets: Vec<Vec<(&str, &str)>> = vec![vec![("FunctionName", function)], vec![]];
        // The API invokes the cancel function's alias: Lambda also reports
        // by alias and by the version it ran.
        if function == "CancelFunction" {
            sets.push(vec![("FunctionName", function), ("Resource", &alias)]);
            sets.push(vec![
                ("FunctionName", function),
                ("Resource", &alias),
                ("ExecutedVersion", "7"),
            ]);
        }
        for dims in sets {
            self.points
                .push(Point::new("AWS/Lambda", metric, &dims, m, value));
        }
    }

    fn api(&mut self, status: u16, latency_ms: f64) {
        let m = self.minute;
        for dims in [
            vec![("ApiName", API), ("Stage", "prod")],
            vec![("ApiName", API)],
        ] {
            for (metric, value) in [
                ("Count", 1.0),
                ("5XXError", f64::from(u8::from(status >= 500))),
                (
                    "4XXError",
                    f64::from(u8::from((400..500).contains(&status))),
                ),
                ("Latency", latency_ms),
            ] {
                self.points
                    .push(Point::new("AWS/ApiGateway", metric, &dims, m, value));
            }
        }
    }

    /// Invokes `which` with `event` as Lambda would, counting it.
    async fn invoke(&mut self, which: Which, event: &str, wait: Duration) -> (Ended, Duration) {
        self.in_flight += 1;
        self.peak = self.peak.max(self.in_flight);
        let started = Instant::now();
        let f = self.function(which);
        let name = f.logical;
        let ended = match f.try_invoke(event, wait).await {
            Some(o) => Ended::Answered(o),
            None => Ended::Nothing,
        };
        let took = started.elapsed();
        self.in_flight -= 1;
        let failed = !matches!(ended, Ended::Answered(Outcome::Response(_)));
        self.lambda(name, "Invocations", 1.0);
        self.lambda(name, "Errors", f64::from(u8::from(failed)));
        self.lambda(name, "Duration", took.as_secs_f64() * 1000.0);
        (ended, took)
    }

    fn function(&mut self, which: Which) -> &mut Function {
        match which {
            Which::Cancel => &mut self.ops.cancel,
            Which::Automation => &mut self.ops.automation,
            Which::Reconciler => &mut self.ops.reconciler,
        }
    }

    /// An HTTP request through API Gateway: its status.
    async fn http(&mut self, event: &str) -> u16 {
        let (ended, took) = self
            .invoke(Which::Cancel, event, Duration::from_secs(30))
            .await;
        let status = match ended {
            Ended::Answered(Outcome::Response(r)) => r["statusCode"].as_u64().unwrap_or(502) as u16,
            _ => 502,
        };
        self.api(status, took.as_secs_f64() * 1000.0);
        status
    }

    /// An invocation Lambda refused (reserved concurrency, account quota).
    fn throttled(&mut self, function: &str) {
        self.lambda(function, "Throttles", 1.0);
        if function == "CancelFunction" {
            self.api(503, 5.0);
        }
    }

    async fn fresh_publish(&mut self) -> i64 {
        let pitid = self.next_pitid;
        self.next_pitid += 1;
        self.ops.publish(pitid, "publishing").await;
        pitid
    }

    /// A minute of ordinary traffic: cancels, a status read, a wrong
    /// password, an unknown publish, an automation command, a reconciler
    /// run.
    async fn ordinary(&mut self) {
        let p = self.fresh_publish().await;
        self.http(&ops::http_event("DELETE", p, "cancel", "alice-password"))
            .await;
        self.http(&ops::http_event("GET", p, "status", "alice-password"))
            .await;
        self.http(&ops::http_event("DELETE", p, "cancel", "wrong"))
            .await;
        self.http(&ops::http_event(
            "DELETE",
            424242,
            "cancel",
            "alice-password",
        ))
        .await;
        let p = self.fresh_publish().await;
        self.invoke(Which::Automation, &ops::command(p), Duration::from_secs(20))
            .await;
        self.invoke(Which::Reconciler, ops::RECONCILE, Duration::from_secs(70))
            .await;
    }

    /// `n` cancels of fresh publishes.
    async fn cancels(&mut self, n: usize) -> Vec<u16> {
        let mut statuses = Vec::new();
        for _ in 0..n {
            let p = self.fresh_publish().await;
            statuses.push(
                self.http(&ops::http_event("DELETE", p, "cancel", "alice-password"))
                    .await,
            );
        }
        statuses
    }

    /// Ends the minute: what the functions wrote in it becomes its points.
    async fn next_minute(&mut self) {
        // Until every process has printed what it had to.
        loop {
            let before = self.printed();
            tokio::time::sleep(Duration::from_millis(200)).await;
            if self.printed() == before {
                break;
            }
        }
        let m = self.minute;
        for which in [Which::Cancel, Which::Automation, Which::Reconciler] {
            let lines = self.function(which).new_lines();
            for line in lines.iter().filter(|l| l.get("_aws").is_some()) {
                self.points.extend(emf_points(line, m));
            }
        }
        let peak = self.peak as f64;
        self.points.push(Point::new(
            "AWS/Lambda",
            "ConcurrentExecutions",
            &[],
            m,
            peak,
        ));
        self.peak = self.in_flight;
        self.stop_queue_minute().await;
        self.minute += 1;
    }

    /// The stop queue at the end of a minute: workers take what is in it,
    /// or (when they do not) it ages. SQS's `ApproximateAgeOfOldestMessage`
    /// is modelled in virtual minutes: a stop first seen waiting in minute
    /// m0 is (m + 1 - m0) minutes old at the end of minute m.
    async fn stop_queue_minute(&mut self) {
        let sqs = &self.ops.stack.sqs;
        let url = self.ops.stack.queue_url.as_str();
        let mut waiting = 0;
        loop {
            let got = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(if self.workers_take_stops { 30 } else { 0 })
                .send()
                .await
                .expect("the stop queue");
            let messages = got.messages.unwrap_or_default();
            waiting += messages.len();
            if messages.is_empty() || !self.workers_take_stops {
                break;
            }
            for m in messages {
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle.unwrap_or_default())
                    .send()
                    .await
                    .expect("a worker deletes what it took");
            }
        }
        let m = self.minute;
        let age = if waiting > 0 && !self.workers_take_stops {
            let since = *self.oldest_waiting.get_or_insert(m);
            f64::from((m + 1 - since) * 60)
        } else {
            self.oldest_waiting = None;
            0.0
        };
        self.points.push(Point::new(
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            &[("QueueName", "StopQueue.QueueName")],
            m,
            age,
        ));
    }

    fn printed(&self) -> usize {
        [&self.ops.cancel, &self.ops.automation, &self.ops.reconciler]
            .iter()
            .map(|f| f.process.logs().len())
            .sum()
    }

    /// The alarms that went off, with `overrides` of threshold parameters.
    fn fired(&self, overrides: &[(&str, f64)]) -> BTreeSet<String> {
        Alarm::all(STACK)
            .into_iter()
            .map(|mut a| {
                if let Some((_, t)) = overrides
                    .iter()
                    .find(|(p, _)| a.threshold_parameter.as_deref() == Some(*p))
                {
                    a.threshold = *t;
                }
                a
            })
            .filter(|a| a.fired(&self.points, self.minute))
            .map(|a| a.name)
            .collect()
    }
}

#[derive(Clone, Copy)]
enum Which {
    Cancel,
    Automation,
    Reconciler,
}

/// The template's alarm `name`, if it has one.
fn alarm(name: &str) -> Option<Alarm> {
    Alarm::all(STACK).into_iter().find(|a| a.name == name)
}

/// `wanted` are among the alarms that fired.
fn assert_fired(watch: &Watch, wanted: &[&str], overrides: &[(&str, f64)]) {
    let fired = watch.fired(overrides);
    for w in wanted {
        let explain = alarm(w)
            .map(|a| a.explain(&watch.points, watch.minute))
            .unwrap_or_else(|| format!("{w}: no such alarm in the template"));
        assert!(
            fired.contains(*w),
            "{w} did not go off ({explain}); fired: {fired:?}"
        );
    }
}

/// Every alarm notifies the alarm topic, and a healthy run raises none.
#[tokio::test]
async fn a_healthy_run_raises_no_alarm() {
    let alarms = Alarm::all(STACK);
    assert!(alarms.len() >= 15, "{} alarms", alarms.len());
    for a in &alarms {
        assert!(a.notifies, "{} does not notify AlarmTopicArn", a.name);
    }
    // A run is healthy when no answer was a 5xx and no invocation failed:
    // on a host too loaded for the emulator to answer in time it is not,
    // and is run again (three times at most).
    let mut healthy = None;
    for _ in 0..3 {
        let mut w = Watch::start().await;
        for _ in 0..6 {
            w.ordinary().await;
            w.next_minute().await;
        }
        let failures = w
            .points
            .iter()
            .filter(|p| (p.metric == "5XXError" || p.metric == "Errors") && p.value > 0.0)
            .count();
        if failures == 0 {
            healthy = Some(w);
            break;
        }
        eprintln!("not a healthy run ({failures} failure points): again");
    }
    let w = healthy.expect("three runs in a row saw failures: the host cannot run this test");
    let fired = w.fired(&[]);
    assert!(fired.is_empty(), "a healthy run raised {fired:?}");
    // And it was seen: requests, invocations, EMF lines.
    for metric in [
        "Requests",
        "Invocations",
        "5XXError",
        "StopsResent",
        "ColdStart",
    ] {
        assert!(
            w.points.iter().any(|p| p.metric == metric),
            "no {metric} point recorded"
        );
    }
}

/// DynamoDB failing: the cancel answers 503 `unavailable` itself (no
/// Lambda error), the automation command fails.
#[tokio::test]
async fn dynamodb_down_raises_unavailable_5xx_and_automation_errors() {
    let mut w = Watch::after_an_ordinary_minute().await;
    w.ops.proxy.inject(
        "DynamoDB",
        Fault::Error(500, "com.amazonaws.dynamodb.v20120810#InternalServerError"),
        None,
    );
    for _ in 0..3 {
        let statuses = w.cancels(7).await;
        assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
        w.invoke(Which::Automation, &ops::command(1), Duration::from_secs(20))
            .await;
        w.next_minute().await;
    }
    assert_fired(
        &w,
        &["UnavailableAlarm", "Api5xxAlarm", "AutomationErrorsAlarm"],
        &[],
    );
    let fired = w.fired(&[]);
    assert!(
        !fired.contains("FunctionErrorsAlarm"),
        "the cancel function did not fail: {fired:?}"
    );
}

/// DynamoDB throttling every request: after its retries, `unavailable`.
#[tokio::test]
async fn dynamodb_throttling_raises_unavailable() {
    let mut w = Watch::after_an_ordinary_minute().await;
    w.ops.proxy.inject(
        "DynamoDB",
        Fault::Error(
            400,
            "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        ),
        None,
    );
    let statuses = w.cancels(7).await;
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    w.next_minute().await;
    assert_fired(&w, &["UnavailableAlarm"], &[]);
}

/// SQS failing: cancels are recorded but their stops are not sent (503),
/// and the reconciler cannot send them in three runs in a row.
#[tokio::test]
async fn sqs_down_raises_stop_not_sent_and_pending_stops() {
    let mut w = Watch::after_an_ordinary_minute().await;
    w.ops.proxy.inject(
        "AmazonSQS",
        Fault::Error(500, "com.amazonaws.sqs#InternalError"),
        None,
    );
    // Minute after minute until stops have stayed pending over three runs
    // (the first run finds nothing past its grace yet; on a loaded host a
    // cancel may fail at DynamoDB instead, leaving nothing pending), at
    // most ten.
    for _ in 0..10 {
        let statuses = w.cancels(2).await;
        assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
        w.invoke(Which::Reconciler, ops::RECONCILE, Duration::from_secs(70))
            .await;
        w.next_minute().await;
        if w.minute >= 5 && w.fired(&[]).contains("PendingStopsAlarm") {
            break;
        }
    }
    assert_fired(
        &w,
        &["StopNotSentAlarm", "PendingStopsAlarm", "Api5xxAlarm"],
        &[],
    );
}

/// The KEK store failing: every API-key request is a 503 `unavailable`.
#[tokio::test]
async fn the_kek_store_down_raises_unavailable() {
    let mut w = Watch::after_an_ordinary_minute().await;
    w.ops.proxy.inject(
        "secretsmanager",
        Fault::Error(500, "InternalServiceError"),
        None,
    );
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(w.http(&ops::api_key_event()).await);
    }
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    w.next_minute().await;
    assert_fired(&w, &["UnavailableAlarm"], &[]);
}

/// A function that dies mid-request: Lambda counts an error, API Gateway
/// answers 502; the next invocation is a cold start.
#[tokio::test]
async fn a_crash_raises_the_function_s_errors_alarm() {
    let mut w = Watch::after_an_ordinary_minute().await;
    for which in [Which::Cancel, Which::Automation] {
        // Held at DynamoDB while the process is killed.
        w.ops
            .proxy
            .inject("DynamoDB", Fault::Delay(Duration::from_secs(3)), None);
        let p = w.fresh_publish().await;
        let event = match which {
            Which::Cancel => ops::http_event("DELETE", p, "cancel", "alice-password"),
            _ => ops::command(p),
        };
        let killer = {
            let pid = w.function(which).process.child.id();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(800)).await;
                if let Some(pid) = pid {
                    let _ = std::process::Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status();
                }
            })
        };
        let answered = match which {
            Which::Cancel => w.http(&event).await != 502,
            _ => matches!(
                w.invoke(which, &event, Duration::from_secs(5)).await.0,
                Ended::Answered(_)
            ),
        };
        killer.await.ok();
        assert!(!answered, "the killed function answered");
        w.ops.proxy.clear();
        w.function(which).restart().await;
    }
    w.next_minute().await;
    assert_fired(&w, &["FunctionErrorsAlarm", "AutomationErrorsAlarm"], &[]);
}

/// A stop whose claim nobody finishes: held by an attempt that never
/// sends it, found busy by three reconciler runs in a row.
#[tokio::test]
async fn a_stuck_stop_raises_stops_busy() {
    let mut w = Watch::start().await;
    let now = publish_cancel::clock::now_secs();
    w.ops
        .stack
        .put_raw_publish(&[
            ("uid", A::S("alice".into())),
            ("publishKey", A::S("1/2/990".into())),
            ("state", A::S("cancelled".into())),
            ("cancelRequestId", A::S("req-990".into())),
            ("cancelledAt", A::N((now - 600).to_string())),
            ("cancelSource", A::S("http".into())),
            ("cancelledBy", A::S("alice".into())),
            ("stopPending", A::S("pending".into())),
            // Stamped ahead (within what a claimer honours): never lapses
            // during the test.
            ("stopClaimedAt", A::N((now + 250).to_string())),
            (
                "stopClaimedBy",
                A::S("0123456789abcdef0123456789abcdef".into()),
            ),
        ])
        .await;
    for _ in 0..3 {
        w.invoke(Which::Reconciler, ops::RECONCILE, Duration::from_secs(70))
            .await;
        w.next_minute().await;
    }
    assert_fired(&w, &["StopsBusyAlarm"], &[]);
}

/// Publish workers that stop taking their stops: the stops wait in the
/// queue, their cancelled publishes keep running, and once the oldest has
/// waited past the threshold for three minutes the alarm goes off (not
/// before: a queue a worker empties every minute is quiet).
#[tokio::test]
async fn workers_not_taking_stops_raise_stop_queue_age() {
    let mut w = Watch::after_an_ordinary_minute().await;
    w.workers_take_stops = false;
    let threshold_minutes = 10;
    while w.minute < threshold_minutes {
        // A cancel a loaded host answers 503 leaves its stop pending
        // instead: the alarm is then later, never wrongly early.
        w.cancels(1).await;
        w.next_minute().await;
        let fired = w.fired(&[]);
        assert!(
            !fired.contains("StopQueueAgeAlarm"),
            "went off in minute {} with stops younger than its threshold",
            w.minute
        );
    }
    // Three minutes past the threshold (more if the first stops were late).
    for _ in 0..8 {
        w.next_minute().await;
        if w.fired(&[]).contains("StopQueueAgeAlarm") {
            break;
        }
    }
    assert_fired(&w, &["StopQueueAgeAlarm"], &[]);
    // Workers back: the queue empties and the alarm clears.
    w.workers_take_stops = true;
    for _ in 0..3 {
        w.next_minute().await;
    }
    let age = alarm("StopQueueAgeAlarm").expect("the alarm");
    assert!(
        !age.in_alarm_at(&w.points, w.minute - 1),
        "still in alarm once the workers took their stops"
    );
}

/// A slow dependency: every DynamoDB call late, the API's p99 above the
/// default threshold.
#[tokio::test]
async fn a_slow_dependency_raises_api_latency() {
    let mut w = Watch::start().await;
    w.ordinary().await;
    w.ops
        .proxy
        .inject("DynamoDB", Fault::Delay(Duration::from_millis(1900)), None);
    let statuses = w.cancels(2).await;
    w.next_minute().await;
    let fired = w.fired(&[]);
    assert!(
        fired.contains("ApiLatencyAlarm"),
        "{statuses:?}; fired: {fired:?}"
    );
}

/// Lambda refusing invocations (modelled: our code never sees them), and
/// the account's concurrency near its limit (three functions busy at once
/// against a threshold of two).
#[tokio::test]
async fn throttles_and_concurrency_raise_their_alarms() {
    let mut w = Watch::start().await;
    w.ordinary().await;
    w.throttled("AutomationFunction");
    w.next_minute().await;
    assert_fired(&w, &["ThrottlesAlarm"], &[]);
    assert!(!w.fired(&[]).contains("ConcurrencyAlarm"));

    w.ops
        .proxy
        .inject("DynamoDB", Fault::Delay(Duration::from_millis(300)), None);
    for _ in 0..2 {
        let (a, b) = (w.fresh_publish().await, w.fresh_publish().await);
        // Both in flight at once.
        let cancel = ops::http_event("DELETE", a, "cancel", "alice-password");
        let command = ops::command(b);
        w.in_flight += 2;
        w.peak = w.peak.max(w.in_flight);
        let rig = &mut w.ops;
        let (x, y) = tokio::join!(
            rig.cancel.try_invoke(&cancel, Duration::from_secs(30)),
            rig.automation.try_invoke(&command, Duration::from_secs(30)),
        );
        assert!(x.is_some() && y.is_some());
        w.in_flight -= 2;
        w.next_minute().await;
    }
    assert_fired(
        &w,
        &["ConcurrencyAlarm"],
        &[("ConcurrencyAlarmThreshold", 2.0)],
    );
}
