//! The automation Lambda beside the HTTP one, and an SQS batch's concurrency.

use super::*;
use publish_cancel::domain::{AttemptToken, CancelStamp, Claim, PublishKey, Timestamp};
use publish_cancel::ports::{BackendError, CancelFound, CancelWrites, PendingStops};

pub(super) const AUTOMATION_RUNS: usize = 10;
pub(super) const AUTOMATION_WARM: usize = 20;

/// One invocation of `function` on a fresh publish `pitid`: the HTTP
/// binary with the sample event's path moved there, the automation binary
/// with a bare cancel command. Both must cancel.
pub(super) async fn cancel_once(
    runtime: &RuntimeApi,
    function: &str,
    http_event: &str,
    pitid: i64,
) -> f64 {
    let event = if function == "automation" {
        serde_json::json!({"type": "uforge.publish.cancel", "schemaVersion": 1, "uid": "alice",
            "aid": 1, "itid": 2, "pitid": pitid, "reason": "benchmark"})
        .to_string()
    } else {
        http_event.replace("/pimages/3/", &format!("/pimages/{pitid}/"))
    };
    let sent = Instant::now();
    let Outcome::Response(answer) = runtime.invoke(&event).await else {
        panic!("{function}: invocation error")
    };
    let took = ms(sent.elapsed());
    if function == "automation" {
        assert_eq!(answer["outcome"], "cancelled", "{answer}");
    } else {
        assert_eq!(answer["statusCode"], 200, "{answer}");
    }
    took
}

/// Init, first and warm invocations of both Lambda binaries, interleaved,
/// on the full CPU and at each one's template memory setting (512 MB and
/// 128 MB); and the automation handler's CPU per command in memory.
pub(super) async fn automation_beside_http(stack: &Stack, http_event: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut pitid = 300_000_i64;
    for (label, settings) in [
        ("full CPU", [("publish-cancel", None), ("automation", None)]),
        (
            "template memory",
            [("publish-cancel", Some(512)), ("automation", Some(128))],
        ),
    ] {
        let mut figures: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> =
            vec![Default::default(), Default::default()];
        let shares: Vec<Option<CpuShare>> = match settings
            .iter()
            .map(|(_, mb)| mb.map(CpuShare::new).transpose())
            .collect::<Result<_, _>>()
        {
            Ok(shares) => shares,
            Err(why) => {
                rows.push(Row(
                    format!("automation vs HTTP Lambda, {label}"),
                    "not measured".into(),
                    why,
                ));
                continue;
            }
        };
        for _ in 0..AUTOMATION_RUNS {
            for (i, (name, mb)) in settings.iter().enumerate() {
                let runtime = RuntimeApi::start().await;
                let env = stack.lambda_env(&runtime.addr);
                let (mut child, init) = start_lambda(
                    shares[i].as_ref(),
                    name,
                    env,
                    mb.unwrap_or(FULL_VCPU_MB),
                    &runtime,
                )
                .await
                .expect("start a release Lambda binary");
                figures[i].0.push(init);
                for n in 0..=AUTOMATION_WARM {
                    pitid += 1;
                    let rec =
                        PublishRecord::new(common::alice_key(pitid), PublishState::Publishing);
                    stack.put_publish(&rec).await;
                    let took = cancel_once(&runtime, name, http_event, pitid).await;
                    if n == 0 {
                        &mut figures[i].1
                    } else {
                        &mut figures[i].2
                    }
                    .push(took);
                }
                child.kill().await.ok();
            }
        }
        stack.drain().await;
        let p50 = |v: &Vec<f64>| pct(&sorted(v.clone()), 0.5);
        let [(h_init, h_first, h_warm), (a_init, a_first, a_warm)] = [&figures[0], &figures[1]];
        let memory = |i: usize| match settings[i].1 {
            Some(mb) => format!(" at {mb} MB"),
            None => String::new(),
        };
        rows.push(Row(
            format!(
                "automation Lambda{}, {label}: init / first / warm event",
                memory(1)
            ),
            format!(
                "{:.1} ms / {:.1} ms / {:.1} ms",
                p50(a_init),
                p50(a_first),
                p50(a_warm)
            ),
            format!(
                "HTTP Lambda{}: {:.1} ms / {:.1} ms / {:.1} ms (Basic; first with Argon2)",
                memory(0),
                p50(h_init),
                p50(h_first),
                p50(h_warm)
            ),
        ));
    }
    // The automation handler's CPU per command, in memory: the
    // already-cancelled path (a repeat), as the HTTP CPU figures measure.
    let automation = publish_cancel::frontdoor::automation::Automation::new(
        publish_cancel::startup::canceller_memory(BUNDLED).unwrap(),
    );
    let command = serde_json::json!({"type": "uforge.publish.cancel", "schemaVersion": 1,
        "uid": "alice", "aid": 1, "itid": 2, "pitid": 3, "reason": "benchmark"});
    let far = || Instant::now() + Duration::from_secs(600);
    automation
        .handle(
            &command,
            publish_cancel::frontdoor::automation::Door::Direct,
            "warm-up",
            far(),
        )
        .await
        .unwrap();
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        let _ = automation
            .handle(
                &command,
                publish_cancel::frontdoor::automation::Door::Direct,
                "bench",
                far(),
            )
            .await;
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    rows.push(Row(
        "handler CPU, automation command (direct invoke)".into(),
        format!("{us:.1} µs/command"),
        format!("{:.0} commands/s on one core", 1e6 / us),
    ));
    rows.push(batch_row().await);
    rows
}

/// A 10-command SQS batch, each store call taking `RTT` as an in-region
/// DynamoDB or SQS call does: a FIFO batch in one message group (run in
/// order, as every batch ran before) against a standard-queue batch (run
/// concurrently). Wall time per batch, ratio in one run.
pub(super) async fn batch_row() -> Row {
    const RTT: Duration = Duration::from_millis(5);
    let batch = |fifo: bool, round: usize| {
        let records: Vec<serde_json::Value> = (0..10)
            .map(|i| {
                let body = serde_json::json!({"type": "uforge.publish.cancel", "schemaVersion": 1,
                    "uid": "bench", "aid": 1, "itid": 1, "pitid": round * 10 + i});
                serde_json::json!({"messageId": format!("m-{round}-{i}"), "body": body.to_string(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": if fifo { "arn:aws:sqs:us-east-1:1:q.fifo" } else { "arn:aws:sqs:us-east-1:1:q" },
                    "attributes": {"SenderId": "AIDABENCH", "MessageGroupId": "one"}})
            })
            .collect();
        serde_json::json!({ "Records": records })
    };
    let rounds = 20;
    let time = |fifo: bool| {
        let publishes = publish_cancel::adapters::memory::MemoryPublishes::default();
        for round in 0..rounds {
            for i in 0..10 {
                publishes.put(publish_cancel::domain::PublishRecord::new(
                    publish_cancel::domain::PublishKey {
                        uid: publish_cancel::domain::Login::parse("bench").unwrap(),
                        aid: 1.into(),
                        itid: 1.into(),
                        pitid: ((round * 10 + i) as i64).into(),
                    },
                    publish_cancel::domain::PublishState::Publishing,
                ));
            }
        }
        let automation = publish_cancel::frontdoor::automation::Automation::new(
            publish_cancel::cancel::Canceller {
                publishes: Slow(publishes, RTT),
                queue: Slow(
                    publish_cancel::adapters::memory::MemoryQueue::default(),
                    RTT,
                ),
            },
        );
        async move {
            let t = Instant::now();
            for round in 0..rounds {
                let deadline = Instant::now() + Duration::from_secs(15);
                let answer = automation
                    .handle(
                        &batch(fifo, round),
                        publish_cancel::frontdoor::automation::Door::EventSources,
                        "bench",
                        deadline,
                    )
                    .await
                    .unwrap();
                assert_eq!(answer["batchItemFailures"], serde_json::json!([]));
            }
            t.elapsed().as_secs_f64() * 1e3 / rounds as f64
        }
    };
    let sequential = time(true).await;
    let concurrent = time(false).await;
    Row(
        format!("10-command SQS batch, {} ms per store call", RTT.as_millis()),
        format!("{concurrent:.1} ms concurrent (standard) / {sequential:.1} ms in order (FIFO, one group)"),
        format!("{:.1}x", sequential / concurrent),
    )
}

/// A store whose every call first waits `.1`, as a network round trip.
pub(super) struct Slow<T>(T, Duration);

impl<T: CancelWrites> CancelWrites for Slow<T> {
    async fn cancel(
        &self,
        key: &PublishKey,
        stamp: &CancelStamp,
        attempt: &AttemptToken,
    ) -> Result<CancelFound, BackendError> {
        tokio::time::sleep(self.1).await;
        self.0.cancel(key, stamp, attempt).await
    }
    async fn claim_stop(
        &self,
        key: &PublishKey,
        claim: &Claim,
        stale: Timestamp,
        cancelled_at: Timestamp,
    ) -> Result<Option<publish_cancel::domain::PublishRecord>, BackendError> {
        tokio::time::sleep(self.1).await;
        self.0.claim_stop(key, claim, stale, cancelled_at).await
    }
    async fn release_stop(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
    ) -> Result<bool, BackendError> {
        tokio::time::sleep(self.1).await;
        self.0.release_stop(key, attempt).await
    }
    async fn stop_sent(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
    ) -> Result<bool, BackendError> {
        tokio::time::sleep(self.1).await;
        self.0.stop_sent(key, attempt).await
    }
    async fn stop_undeliverable(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
        why: &str,
    ) -> Result<bool, BackendError> {
        tokio::time::sleep(self.1).await;
        self.0.stop_undeliverable(key, attempt, why).await
    }
}

impl<T: PendingStops> PendingStops for Slow<T> {
    fn shards(&self) -> Vec<publish_cancel::domain::Shard> {
        self.0.shards()
    }

    async fn pending_stops(
        &self,
        shard: publish_cancel::domain::Shard,
        cutoff: Timestamp,
        after: Option<&publish_cancel::ports::Cursor>,
        limit: usize,
    ) -> Result<publish_cancel::ports::PendingPage, BackendError> {
        tokio::time::sleep(self.1).await;
        self.0.pending_stops(shard, cutoff, after, limit).await
    }
}

impl<T: publish_cancel::ports::StopQueue> publish_cancel::ports::StopQueue for Slow<T> {
    async fn send(
        &self,
        stop: &publish_cancel::ports::StopMessage,
    ) -> Result<(), publish_cancel::ports::BackendError> {
        tokio::time::sleep(self.1).await;
        self.0.send(stop).await
    }
}
