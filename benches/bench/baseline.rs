//! Against a baseline build (`UFORGE_BENCH_BASELINE`): init and CPU per event of both Lambda binaries.

use super::*;

pub(super) const BASELINE_RUNS: usize = 15;
pub(super) const BASELINE_EVENTS: usize = 2_000;

/// Init and CPU per event of this build's Lambda binaries against the same
/// binaries of another build, interleaved run by run on the in-memory
/// backend (no emulator noise): the HTTP function on a 405 (event in,
/// routing, response out: the event layer and nothing else), the
/// automation function on the SQS batch sample.
pub(super) async fn against_baseline(baseline: &Path) -> Vec<Row> {
    let http_event = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("events/apigw-rest-wrong-method.json"),
    )
    .unwrap();
    let sqs_event = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("events/automation/sqs-batch.json"),
    )
    .unwrap();
    let mut rows = Vec::new();
    for (name, event) in [("publish-cancel", &http_event), ("automation", &sqs_event)] {
        // (init ms, CPU µs per event) for [this build, baseline].
        let mut figures: [(Vec<f64>, Vec<f64>); 2] = Default::default();
        for _ in 0..BASELINE_RUNS {
            for (i, bin) in [release(name), baseline.join(name)].into_iter().enumerate() {
                let runtime = RuntimeApi::start().await;
                let started = Instant::now();
                let env = [
                    ("AWS_LAMBDA_RUNTIME_API", runtime.addr.as_str()),
                    ("AWS_LAMBDA_FUNCTION_NAME", name),
                    ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
                    ("AWS_LAMBDA_LOG_LEVEL", "ERROR"),
                    ("UFORGE_BACKEND", "memory"),
                ];
                let mut child = lambda_command(&bin, &env)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
                figures[i].0.push(ms(runtime.first_next().await - started));
                let pid = child.id().unwrap_or(0);
                // One event to warm up, then the measured ones.
                let _ = runtime.invoke(event).await;
                let before = cpu_ms(pid);
                for _ in 0..BASELINE_EVENTS {
                    let _ = runtime.invoke(event).await;
                }
                figures[i]
                    .1
                    .push((cpu_ms(pid) - before) * 1000.0 / BASELINE_EVENTS as f64);
                child.kill().await.ok();
            }
        }
        let p50 = |v: &Vec<f64>| pct(&sorted(v.clone()), 0.5);
        let (ours, base) = (&figures[0], &figures[1]);
        rows.push(Row(
            format!("{name}: init, this build vs baseline"),
            format!("{:.1} ms vs {:.1} ms", p50(&ours.0), p50(&base.0)),
            format!("{:.2}×", p50(&ours.0) / p50(&base.0)),
        ));
        rows.push(Row(
            format!("{name}: CPU per event (process CPU time), this build vs baseline"),
            format!("{:.0} µs vs {:.0} µs", p50(&ours.1), p50(&base.1)),
            format!("{:.2}×", p50(&ours.1) / p50(&base.1)),
        ));
    }
    rows
}
