//! The benchmark: `scripts/bench` builds the release binaries, then runs
//! this (harness-less) and prints a Markdown table for the README. Every
//! figure is a median (or percentile) over repeated runs and, where there is
//! a reference, a ratio to it measured in the same run.

// The tests' fixtures; the benchmark uses a part of them.
#[allow(dead_code)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::runtime_api::{Outcome, RuntimeApi};
use common::{cancel_path, Req, Stack};
use publish_cancel::adapters::dynamodb::{DynamoPublishes, DynamoUsers};
use publish_cancel::adapters::sqs::SqsStopQueue;
use publish_cancel::domain::{CancelStamp, Login, PublishRecord, PublishState, Timestamp};
use publish_cancel::ports::{Publishes, StopMessage, StopQueue, Users};
use publish_cancel::seed::{Seed, BUNDLED};

const INIT_RUNS: usize = 15;
const WARM_REQUESTS: usize = 300;
const RSS_REQUESTS: usize = 10_000;

fn release(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/release")
        .join(name)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Row(String, String, String);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == ARGON2_CHILD) {
        return argon2_child();
    }
    if std::env::args().any(|a| a == "--test") || !release("publish-cancel").exists() {
        eprintln!("the benchmark needs the release binaries: run scripts/bench");
        return;
    }
    let stack = Stack::new().await;
    let event = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("events/apigw-rest-cancel-basic.json"),
    )
    .unwrap();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:alice-password")
    );
    // UFORGE_BENCH_ONLY=baseline,sizes,...: only the sections named (a
    // quick before/after); every section otherwise.
    let only = std::env::var("UFORGE_BENCH_ONLY").ok();
    let run = |section: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|s| s == section))
    };
    let mut rows = Vec::new();
    if run("init") {
        rows.extend(init_and_first_request(&stack, &event).await);
    }
    if run("kek") {
        rows.extend(kek_costs(&stack).await);
    }
    if run("warm") {
        rows.extend(warm_latency(&stack, &auth).await);
    }
    if run("cpu") {
        rows.extend(handler_cpu().await);
        rows.extend(metric_line_cost());
    }
    if run("timing") {
        rows.extend(unauthorised_timing().await);
    }
    if run("sizes") {
        rows.extend(binary_sizes());
    }
    if run("rss") {
        rows.extend(local_server_rss(&auth).await);
    }
    if run("automation") {
        rows.extend(automation_beside_http(&stack, &event).await);
    }
    if let Some(baseline) = std::env::var_os("UFORGE_BENCH_BASELINE") {
        rows.extend(against_baseline(Path::new(&baseline)).await);
    }
    let settings = if run("memory") {
        lambda_memory_settings(&stack, &event).await
    } else {
        Err("not asked for (UFORGE_BENCH_ONLY)".into())
    };

    println!("| measure | figure | reference |\n| --- | --- | --- |");
    for Row(a, b, c) in rows {
        println!("| {a} | {b} | {c} |");
    }
    println!();
    match settings {
        Ok(lines) => {
            println!(
                "| Lambda memory (CPU share) | Argon2 verify, p50 | init, p50 | \
                 first invocation, p50 | warm invocation, p50 |"
            );
            println!("| --- | --- | --- | --- | --- |");
            for line in lines {
                println!("{line}");
            }
        }
        Err(why) => println!("Lambda memory settings: not measured ({why})"),
    }
}

/// Init time and first request, vs a hello-world lambda_runtime.
async fn init_and_first_request(stack: &Stack, event: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let (mut ours, mut hello, mut first, mut system) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..INIT_RUNS {
        for (reference, roots) in [(false, "amazon"), (true, "amazon"), (false, "system")] {
            let runtime = RuntimeApi::start().await;
            let bin = if reference {
                release("examples/hello_lambda")
            } else {
                release("publish-cancel")
            };
            let started = Instant::now();
            let mut child = tokio::process::Command::new(bin)
                .env_clear()
                .envs(stack.lambda_env(&runtime.addr))
                .env("UFORGE_TLS_ROOTS", roots)
                .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("run `scripts/bench`, which builds the release binaries first");
            while runtime.first_next().is_none() {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let init = ms(runtime.first_next().unwrap() - started);
            if reference {
                hello.push(init);
            } else if roots == "system" {
                system.push(init);
            } else {
                ours.push(init);
                let sent = Instant::now();
                let Outcome::Response(_) = runtime.invoke(event).await else {
                    panic!("invocation error")
                };
                first.push(ms(sent.elapsed()));
            }
            child.kill().await.ok();
        }
    }
    let (ours, hello, first, system) = (sorted(ours), sorted(hello), sorted(first), sorted(system));
    rows.push(Row(
        "init: process start → first `/next` (ours, Amazon roots)".into(),
        format!("{:.1} ms", pct(&ours, 0.5)),
        format!(
            "{:.2}× hello-world ({:.1} ms); target ≤ 1.3×",
            pct(&ours, 0.5) / pct(&hello, 0.5),
            pct(&hello, 0.5)
        ),
    ));
    rows.push(Row(
        "init with the system's root certificates".into(),
        format!("{:.1} ms", pct(&system, 0.5)),
        format!(
            "{:.2}× hello-world (`UFORGE_TLS_ROOTS=system`)",
            pct(&system, 0.5) / pct(&hello, 0.5)
        ),
    ));
    rows.push(Row(
        "first invocation (Argon2 + new connections)".into(),
        format!("{:.1} ms", pct(&first, 0.5)),
        "p50 of cold processes".into(),
    ));
    rows
}

/// Warm latency through the local HTTP front door vs the SDK floor.
async fn warm_latency(stack: &Stack, auth: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let fresh = |offset: i64| async move {
        for i in 0..WARM_REQUESTS as i64 {
            let rec = PublishRecord::new(common::alice_key(offset + i), PublishState::Publishing);
            stack.put_publish(&rec).await;
        }
    };
    fresh(10_000).await;
    fresh(20_000).await;
    let api = Arc::new(
        stack
            .api_via(
                &common::moto::moto().endpoint,
                &common::moto::moto().endpoint,
            )
            .await,
    );
    let addr = common::serve_locally(api.clone()).await;
    // Warm the credential cache and the connections.
    common::http_client::send(
        &addr,
        "DELETE",
        &cancel_path("alice", 1, 2, 4),
        &[("Authorization", auth)],
    )
    .await;
    let (mut front, mut floor) = (Vec::new(), Vec::new());
    let users = DynamoUsers::new(stack.dynamo.clone(), &stack.users_table);
    let publishes = DynamoPublishes::new(stack.dynamo.clone(), &stack.publishes_table);
    let queue = SqsStopQueue::new(stack.sqs.clone(), &stack.queue_url);
    let alice = Login::parse("alice").unwrap();
    for i in 0..WARM_REQUESTS as i64 {
        // Interleaved, so both see the same machine noise.
        let t = Instant::now();
        let r = common::http_client::send(
            &addr,
            "DELETE",
            &cancel_path("alice", 1, 2, 10_000 + i),
            &[("Authorization", auth)],
        )
        .await;
        front.push(ms(t.elapsed()));
        assert_eq!(r.status, 200);
        let t = Instant::now();
        let stamp = CancelStamp {
            request_id: format!("floor-{i}").into(),
            at: Timestamp::now(),
            audit: publish_cancel::domain::CancelAudit::http(&alice),
        };
        users.get(&alice).await.unwrap().unwrap();
        let k = common::alice_key(20_000 + i);
        publishes.cancel(&k, &stamp).await.unwrap();
        queue.send(&StopMessage::new(&k, &stamp)).await.unwrap();
        publishes.stop_sent(&k).await.unwrap();
        floor.push(ms(t.elapsed()));
    }
    let (front, floor) = (sorted(front), sorted(floor));
    rows.push(Row(
        "warm cancel via local HTTP front door, p50".into(),
        format!("{:.2} ms", pct(&front, 0.5)),
        format!(
            "{:.2}× SDK floor ({:.2} ms); target ≤ 1.10×",
            pct(&front, 0.5) / pct(&floor, 0.5),
            pct(&floor, 0.5)
        ),
    ));
    rows.push(Row(
        "warm cancel via local HTTP front door, p99".into(),
        format!("{:.2} ms", pct(&front, 0.99)),
        format!(
            "{:.2}× SDK floor p99 ({:.2} ms)",
            pct(&front, 0.99) / pct(&floor, 0.99),
            pct(&floor, 0.99)
        ),
    ));
    rows
}

/// Handler CPU per request, in-memory adapters.
async fn handler_cpu() -> Vec<Row> {
    let mut rows = Vec::new();
    for (label, n, cached, signed) in [
        ("cache-hit Basic", 20_000, true, false),
        ("Argon2 Basic (no cache)", 40, false, false),
        ("API-key signed URL", 20_000, true, true),
    ] {
        let api = memory_api(cached);
        let req = if signed {
            Req::delete(cancel_path("alice", 1, 2, 3)).signed("PUBKEY123", "SECRETKEY456")
        } else {
            Req::delete(cancel_path("alice", 1, 2, 3)).basic("alice", "alice-password")
        };
        assert_eq!(common::call(&api, &req).await.status(), 200);
        let t = Instant::now();
        for _ in 0..n {
            let _ = common::call(&api, &req).await;
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        rows.push(Row(
            format!("handler CPU, {label}"),
            format!("{us:.1} µs/request"),
            format!("{:.0} requests/s on one core", 1e6 / us),
        ));
    }
    rows
}

/// One EMF metric line per request.
fn metric_line_cost() -> Vec<Row> {
    let mut rows = Vec::new();
    {
        use publish_cancel::auth::{AuthTrace, Check, Denied, Scheme};
        use publish_cancel::metrics::{Metrics, RequestFacts};
        let m = Metrics::new("bench-CancelFunction-0123456789AB");
        let auth = AuthTrace {
            scheme: Scheme::Basic,
            check: Check::Argon2,
            denied: Some(Denied::WrongPassword),
        };
        let n = 50_000;
        let t = Instant::now();
        let mut bytes = 0;
        for _ in 0..n {
            let line = m.request_line(
                &RequestFacts {
                    request_id: "00000000-0000-4000-8000-000000000001",
                    outcome: "unauthenticated",
                    auth,
                    stop_not_sent: false,
                    stop_undeliverable: false,
                    latency_ms: 12.5,
                },
                1_795_718_847_000,
            );
            bytes += line.to_string().len();
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        rows.push(Row(
            "EMF metric line per request (build + serialise)".into(),
            format!("{us:.1} µs/request"),
            format!("{} bytes of log per request", bytes / n),
        ));
    }
    rows
}

/// 401 timing: unknown login vs wrong password.
async fn unauthorised_timing() -> Vec<Row> {
    let mut rows = Vec::new();
    let api = memory_api(false);
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for _ in 0..60 {
        for (login, out) in [("nobody", &mut unknown), ("alice", &mut wrong)] {
            let req = Req::delete(cancel_path(login, 1, 2, 3)).basic(login, "not-the-password");
            let t = Instant::now();
            assert_eq!(common::call(&api, &req).await.status(), 401);
            out.push(ms(t.elapsed()));
        }
    }
    let (unknown, wrong) = (sorted(unknown), sorted(wrong));
    rows.push(Row(
        "401 unknown login, p50 [p10–p90]".into(),
        format!(
            "{:.1} ms [{:.1}–{:.1}]",
            pct(&unknown, 0.5),
            pct(&unknown, 0.1),
            pct(&unknown, 0.9)
        ),
        format!(
            "{:.3}× the wrong-password 401",
            pct(&unknown, 0.5) / pct(&wrong, 0.5)
        ),
    ));
    rows.push(Row(
        "401 wrong password, p50 [p10–p90]".into(),
        format!(
            "{:.1} ms [{:.1}–{:.1}]",
            pct(&wrong, 0.5),
            pct(&wrong, 0.1),
            pct(&wrong, 0.9)
        ),
        "both verify one Argon2id hash".into(),
    ));
    rows
}

/// Binary sizes.
fn binary_sizes() -> Vec<Row> {
    let mut rows = Vec::new();
    for (label, bin) in [
        ("publish-cancel", "publish-cancel"),
        ("hello-world reference", "examples/hello_lambda"),
    ] {
        let size = std::fs::metadata(release(bin))
            .map(|m| m.len())
            .unwrap_or(0);
        rows.push(Row(
            format!("release binary, x86_64, stripped: {label}"),
            format!("{:.2} MB", size as f64 / 1e6),
            String::new(),
        ));
    }
    // The deployed artefact (scripts/bench builds it with scripts/build-arm64).
    for name in ["publish-cancel", "reconciler", "automation"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/arm64/aarch64-unknown-linux-gnu/release")
            .join(name);
        if let Ok(m) = std::fs::metadata(&path) {
            rows.push(Row(
                format!("release binary, arm64 (deployed), stripped: {name}"),
                format!("{:.2} MB", m.len() as f64 / 1e6),
                "target ≤ 6 MB (checked by tests/suite/rehearsal.rs)".into(),
            ));
        }
    }
    rows
}

/// Memory over 10 000 requests, release local server.
async fn local_server_rss(auth: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let (hwm, rss_after, rss_idle) = local_server_memory(auth).await;
    rows.push(Row(
        format!("peak RSS over {RSS_REQUESTS} requests (local server, release)"),
        format!("{hwm:.1} MB"),
        "VmHWM; includes Argon2's 19 MiB during seeding/first verify".into(),
    ));
    rows.push(Row(
        "RSS after the requests / idle after start".into(),
        format!("{rss_after:.1} MB / {rss_idle:.1} MB"),
        "steady state without Argon2's working memory".into(),
    ));
    rows
}

/// Init and the first API-key request of a cold process, with the KEK
/// inline (`UFORGE_API_KEY_KEK`) and from Secrets Manager
/// (`UFORGE_API_KEY_KEK_SECRET`, read on that first request): the
/// difference is what run-time KEK reading costs.
async fn kek_costs(stack: &Stack) -> Vec<Row> {
    let secrets = aws_sdk_secretsmanager::Client::new(&common::sdk_config().await);
    let secret = format!("bench-kek-{}", std::process::id());
    secrets
        .create_secret()
        .name(&secret)
        .secret_string(base64::engine::general_purpose::STANDARD.encode(common::KEK))
        .send()
        .await
        .expect("create the KEK secret");
    let event = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("events/apigw-rest-cancel-apikey.json"),
    )
    .unwrap();
    let mut out = Vec::new();
    let mut medians = Vec::new();
    for (label, from_secret) in [("inline KEK", false), ("KEK from Secrets Manager", true)] {
        let (mut init, mut first) = (Vec::new(), Vec::new());
        for _ in 0..INIT_RUNS {
            let runtime = RuntimeApi::start().await;
            let mut command = tokio::process::Command::new(release("publish-cancel"));
            command
                .env_clear()
                .envs(stack.lambda_env(&runtime.addr))
                .env("AWS_LAMBDA_LOG_LEVEL", "WARN");
            if from_secret {
                command
                    .env_remove("UFORGE_API_KEY_KEK")
                    .env("UFORGE_API_KEY_KEK_SECRET", &secret);
            }
            let started = Instant::now();
            let mut child = command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            while runtime.first_next().is_none() {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            init.push(ms(runtime.first_next().unwrap() - started));
            let sent = Instant::now();
            let Outcome::Response(r) = runtime.invoke(&event).await else {
                panic!("invocation error")
            };
            assert!(r["statusCode"] == 200, "{r}");
            first.push(ms(sent.elapsed()));
            child.kill().await.ok();
        }
        let (init, first) = (sorted(init), sorted(first));
        medians.push((pct(&init, 0.5), pct(&first, 0.5)));
        out.push(Row(
            format!("API-key request in a cold process, {label}: init / first request"),
            format!("{:.1} ms / {:.1} ms", pct(&init, 0.5), pct(&first, 0.5)),
            if from_secret {
                format!(
                    "init {:.2}×, first request +{:.1} ms (client + GetSecretValue ×2) vs inline",
                    medians[1].0 / medians[0].0,
                    medians[1].1 - medians[0].1
                )
            } else {
                "no Argon2 on this path".into()
            },
        ));
    }
    out
}

fn memory_api(cached: bool) -> common::MemoryApi {
    common::memory_api(&Seed::parse(BUNDLED).unwrap(), cached)
}

/// Returns (VmHWM, VmRSS after, VmRSS idle) in MB.
async fn local_server_memory(auth: &str) -> (f64, f64, f64) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(release("uforge-local"))
        .args(["--port", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = lines.next_line().await.unwrap().unwrap();
    let addr = banner
        .split("http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let pid = child.id().unwrap();
    let status = |field: &str| {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    let idle = status("VmRSS:");
    for _ in 0..RSS_REQUESTS {
        let r = common::http_client::send(
            &addr,
            "DELETE",
            &cancel_path("alice", 1, 2, 3),
            &[("Authorization", auth)],
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let out = (status("VmHWM:"), status("VmRSS:"), idle);
    child.kill().await.ok();
    out
}

// --- Lambda memory settings, approximated with a CFS bandwidth limit ---

/// Lambda gives one vCPU at 1769 MB and a proportional share below.
const LAMBDA_MEMORY_MB: [u64; 5] = [128, 256, 512, 1024, 1769];
const FULL_VCPU_MB: u64 = 1769;
/// Lambda does not publish its scheduling period; with 20 ms, a share of
/// 7 % still runs every 20 ms (1.4 ms at a time) rather than in 7 ms bursts
/// per 100 ms, the kernel default. Jobs of many periods (Argon2) barely care.
const CFS_PERIOD_US: u64 = 20_000;
const SETTING_RUNS: usize = 5;
const SETTING_WARM: usize = 10;
const ARGON2_CHILD: &str = "--argon2-child";
const ARGON2_VERIFIES: usize = 9;

/// Run as a child inside a limited cgroup: times Argon2 verifications of
/// the production parameters and prints their median in ms.
fn argon2_child() {
    let stored = publish_cancel::auth::password::hash("correct horse").unwrap();
    let mut times = Vec::new();
    for _ in 0..ARGON2_VERIFIES {
        let t = Instant::now();
        assert!(publish_cancel::auth::password::verify(
            "correct horse",
            Some(&stored)
        ));
        times.push(ms(t.elapsed()));
    }
    println!("{:.1}", pct(&sorted(times), 0.5));
}

/// A cgroup (v1 `cpu` controller, or v2 with `cpu` enabled) whose CPU
/// bandwidth is a Lambda memory setting's share of one core.
struct CpuShare {
    dir: PathBuf,
    procs: PathBuf,
}

impl CpuShare {
    fn new(memory_mb: u64) -> Result<CpuShare, String> {
        let quota = (CFS_PERIOD_US * memory_mb / FULL_VCPU_MB).max(1_000);
        let name = format!("uforge-bench-{}-{memory_mb}", std::process::id());
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let v2 = Path::new("/sys/fs/cgroup");
        let (dir, files) = if v1.join("cpu.cfs_quota_us").exists() {
            let dir = v1.join(name);
            let files = vec![
                ("cpu.cfs_period_us", CFS_PERIOD_US.to_string()),
                ("cpu.cfs_quota_us", quota.to_string()),
            ];
            (dir, files)
        } else {
            let dir = v2.join(name);
            (dir, vec![("cpu.max", format!("{quota} {CFS_PERIOD_US}"))])
        };
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot create a cgroup under {}: {e}", dir.display()))?;
        let share = CpuShare {
            procs: dir.join("cgroup.procs"),
            dir,
        };
        for (file, value) in files {
            std::fs::write(share.dir.join(file), value)
                .map_err(|e| format!("cannot limit the cgroup's CPU ({file}): {e}"))?;
        }
        Ok(share)
    }

    /// `program` started inside the cgroup: a shell joins it, prints the
    /// wall-clock time (ns) on stderr, then execs. Joining took 10-15 ms
    /// here, which is not Lambda's init, so init is timed from that stamp.
    fn command(&self, program: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(r#"echo $$ > "$0" && date +%s%N >&2 && exec "$@""#)
            .arg(&self.procs)
            .arg(program)
            .kill_on_drop(true);
        cmd
    }
}

impl Drop for CpuShare {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Per memory setting: Argon2 verify time, and the Lambda binary's init,
/// first invocation and warm invocations, all under that CPU share
/// (moto, like DynamoDB, runs outside it). One Markdown row per setting.
async fn lambda_memory_settings(stack: &Stack, event: &str) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    let mut next_pitid = 100_000_i64;
    for memory_mb in LAMBDA_MEMORY_MB {
        let share = CpuShare::new(memory_mb)?;
        let out = share
            .command(&std::env::current_exe().map_err(|e| e.to_string())?)
            .arg(ARGON2_CHILD)
            .output()
            .await
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let argon2 = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let (mut init, mut first, mut warm) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..SETTING_RUNS {
            let runtime = RuntimeApi::start().await;
            let env = stack.lambda_env(&runtime.addr);
            let (mut child, started) =
                start_lambda(Some(&share), "publish-cancel", env, memory_mb, &runtime).await?;
            init.push(started);
            for i in 0..=SETTING_WARM {
                let pitid = next_pitid;
                next_pitid += 1;
                let rec = PublishRecord::new(common::alice_key(pitid), PublishState::Publishing);
                stack.put_publish(&rec).await;
                let event = event.replace("/pimages/3/", &format!("/pimages/{pitid}/"));
                let sent = Instant::now();
                let Outcome::Response(response) = runtime.invoke(&event).await else {
                    panic!("invocation error")
                };
                assert_eq!(response["statusCode"], 200, "{response}");
                if i == 0 { &mut first } else { &mut warm }.push(ms(sent.elapsed()));
            }
            child.kill().await.ok();
        }
        let (init, first, warm) = (sorted(init), sorted(first), sorted(warm));
        lines.push(format!(
            "| {memory_mb} MB ({:.3} vCPU) | {argon2} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            memory_mb as f64 / FULL_VCPU_MB as f64,
            pct(&init, 0.5),
            pct(&first, 0.5),
            pct(&warm, 0.5),
        ));
    }
    Ok(lines)
}

/// Starts the release Lambda binary `name` with `env` (and the memory
/// setting) under `runtime`, inside `share` when given; returns it once it
/// has polled `/next`, with its init time in ms.
async fn start_lambda(
    share: Option<&CpuShare>,
    name: &str,
    env: Vec<(&'static str, String)>,
    memory_mb: u64,
    runtime: &RuntimeApi,
) -> Result<(tokio::process::Child, f64), String> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut cmd = match share {
        Some(share) => share.command(&release(name)),
        None => tokio::process::Command::new(release(name)),
    };
    let spawned = Instant::now();
    let mut child = cmd
        .env_clear()
        .envs(env)
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
        .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = if share.is_some() {
        let stamp = match stderr.next_line().await {
            Ok(Some(line)) => line.trim().parse::<u128>().ok(),
            _ => None,
        }
        .ok_or("the shell did not join the cgroup")?;
        // The stamp is wall-clock; turn it into an Instant.
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_nanos();
        Instant::now() - Duration::from_nanos(now_ns.saturating_sub(stamp).try_into().unwrap_or(0))
    } else {
        spawned
    };
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    while runtime.first_next().is_none() {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Ok((child, ms(runtime.first_next().unwrap() - started)))
}

// --- The automation function beside the HTTP one ---

const AUTOMATION_RUNS: usize = 10;
const AUTOMATION_WARM: usize = 20;

/// One invocation of `function` on a fresh publish `pitid`: the HTTP
/// binary with the sample event's path moved there, the automation binary
/// with a bare cancel command. Both must cancel.
async fn cancel_once(runtime: &RuntimeApi, function: &str, http_event: &str, pitid: i64) -> f64 {
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
async fn automation_beside_http(stack: &Stack, http_event: &str) -> Vec<Row> {
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
async fn batch_row() -> Row {
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
struct Slow<T>(T, Duration);

impl<T: publish_cancel::ports::Publishes> publish_cancel::ports::Publishes for Slow<T> {
    async fn cancel(
        &self,
        key: &publish_cancel::domain::PublishKey,
        stamp: &publish_cancel::domain::CancelStamp,
    ) -> Result<publish_cancel::ports::CancelOutcome, publish_cancel::ports::BackendError> {
        tokio::time::sleep(self.1).await;
        self.0.cancel(key, stamp).await
    }
    async fn claim_stop(
        &self,
        key: &publish_cancel::domain::PublishKey,
        now: publish_cancel::domain::Timestamp,
        stale: publish_cancel::domain::Timestamp,
    ) -> Result<bool, publish_cancel::ports::BackendError> {
        tokio::time::sleep(self.1).await;
        self.0.claim_stop(key, now, stale).await
    }
    async fn release_stop(
        &self,
        key: &publish_cancel::domain::PublishKey,
    ) -> Result<(), publish_cancel::ports::BackendError> {
        tokio::time::sleep(self.1).await;
        self.0.release_stop(key).await
    }
    async fn stop_sent(
        &self,
        key: &publish_cancel::domain::PublishKey,
    ) -> Result<(), publish_cancel::ports::BackendError> {
        tokio::time::sleep(self.1).await;
        self.0.stop_sent(key).await
    }
    async fn stop_undeliverable(
        &self,
        key: &publish_cancel::domain::PublishKey,
        why: &str,
    ) -> Result<(), publish_cancel::ports::BackendError> {
        tokio::time::sleep(self.1).await;
        self.0.stop_undeliverable(key, why).await
    }
    async fn pending_stops(
        &self,
        cutoff: publish_cancel::domain::Timestamp,
        after: Option<&publish_cancel::ports::Cursor>,
        limit: usize,
    ) -> Result<publish_cancel::ports::PendingPage, publish_cancel::ports::BackendError> {
        tokio::time::sleep(self.1).await;
        self.0.pending_stops(cutoff, after, limit).await
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

// --- Against a baseline build (UFORGE_BENCH_BASELINE=<its target/release>) ---

const BASELINE_RUNS: usize = 15;
const BASELINE_EVENTS: usize = 2_000;

/// User+system CPU time of process `pid` so far, in ms (Linux /proc).
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after ')'.
    let hz = 100.0; // USER_HZ on Linux
    (ticks(11) + ticks(12)) * 1000.0 / hz
}

/// Init and CPU per event of this build's Lambda binaries against the same
/// binaries of another build, interleaved run by run on the in-memory
/// backend (no emulator noise): the HTTP function on a 405 (event in,
/// routing, response out: the event layer and nothing else), the
/// automation function on the SQS batch sample.
async fn against_baseline(baseline: &Path) -> Vec<Row> {
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
                let mut child = tokio::process::Command::new(&bin)
                    .env_clear()
                    .env("AWS_LAMBDA_RUNTIME_API", &runtime.addr)
                    .env("AWS_LAMBDA_FUNCTION_NAME", name)
                    .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                    .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
                    .env("AWS_LAMBDA_LOG_LEVEL", "ERROR")
                    .env("UFORGE_BACKEND", "memory")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
                while runtime.first_next().is_none() {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                figures[i]
                    .0
                    .push(ms(runtime.first_next().unwrap() - started));
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
