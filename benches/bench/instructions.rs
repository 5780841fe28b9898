//! Side by side, in instructions (callgrind: machine load does not change
//! them): this project's `publish-cancel`, the function a user would write
//! for the same cancel (benches/anchor: `lambda_http` with the AWS SDK's
//! defaults, the project's release profile), and a hello-world
//! `lambda_runtime`. Per warm event: a repeat cancel of alice's publish,
//! the same AWS calls for both (the caller's user record, one conditional
//! `UpdateItem` that fails its condition), on one moto stack. Init: start
//! to exit on a closed runtime port (what runs before the first `/next`).

use super::*;

/// Events of the short and the long run: per event is their difference
/// over the difference of their counts, so start and exit cancel out.
const FEW: usize = 10;
const MANY: usize = 60;
/// Events before the RSS is read.
const RSS_EVENTS: usize = 320;

/// The anchor's release binary (scripts/bench builds it).
pub(crate) fn anchor() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/anchor/target/release/typical-cancel")
}

/// A function's environment on `stack`, under the Runtime API at `addr`.
fn env_of(stack: &Stack, addr: &str) -> Vec<(String, String)> {
    stack
        .lambda_env(addr)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain([("AWS_LAMBDA_LOG_LEVEL".to_owned(), "INFO".to_owned())])
        .collect()
}

/// The instructions callgrind counted for `bin` with `env`, serving
/// `events` (then stopped with SIGTERM, which callgrind survives to write
/// its counts); with no events, until it exits by itself.
async fn counted(
    bin: &Path,
    env: &[(String, String)],
    runtime: Option<&RuntimeApi>,
    event: &str,
    events: usize,
) -> u64 {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let out =
        std::env::temp_dir().join(format!("uforge-bench-{}-{n}.callgrind", std::process::id()));
    let mut command = tokio::process::Command::new("valgrind");
    command
        .args(["--tool=callgrind", "--quiet"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(bin);
    let mut child = lambda_command_with(command, env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("valgrind (apt-get install valgrind)");
    if let Some(runtime) = runtime {
        runtime.set_timeout(Duration::from_secs(120));
        for _ in 0..events {
            let Outcome::Response(_) = runtime.invoke(event).await else {
                panic!("{}: invocation error", bin.display())
            };
        }
        let pid = child.id().unwrap_or(0).to_string();
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(120), child.wait()).await;
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    // UFORGE_BENCH_CALLGRIND_DIR keeps every profile, for callgrind_annotate.
    match std::env::var_os("UFORGE_BENCH_CALLGRIND_DIR") {
        Some(dir) => {
            let name = format!(
                "{}-{events}-{n}.callgrind",
                bin.file_name().unwrap_or_default().to_string_lossy()
            );
            let _ = std::fs::rename(&out, Path::new(&dir).join(name));
        }
        None => {
            let _ = std::fs::remove_file(&out);
        }
    }
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{}: no callgrind counts", bin.display()))
}

/// Instructions per warm event of `bin` with `extra` variables as well:
/// (MANY - FEW) events' worth (the `alloc` section's binaries use it too).
pub(crate) async fn per_event_of(
    stack: &Stack,
    bin: &Path,
    event: &str,
    extra: &[(&str, &str)],
) -> f64 {
    let mut counts = Vec::new();
    for events in [FEW, MANY] {
        let runtime = RuntimeApi::start().await;
        let mut env = env_of(stack, &runtime.addr);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        counts.push(counted(bin, &env, Some(&runtime), event, events).await);
    }
    (counts[1] as f64 - counts[0] as f64) / (MANY - FEW) as f64
}

/// `per_event_of` with the stack's variables only.
async fn per_event(stack: &Stack, bin: &Path, event: &str) -> f64 {
    per_event_of(stack, bin, event, &[]).await
}

/// Instructions from start to exit on a closed runtime port.
async fn init(stack: &Stack, bin: &Path) -> u64 {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    counted(bin, &env_of(stack, &closed), None, "", 0).await
}

/// Wall time to the first `/next`, median of `INIT_RUNS`.
async fn init_ms(stack: &Stack, bin: &Path) -> f64 {
    let mut runs = Vec::new();
    for _ in 0..INIT_RUNS {
        let runtime = RuntimeApi::start().await;
        let started = Instant::now();
        let mut child = lambda_command(bin, &env_of(stack, &runtime.addr))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        runs.push(ms(runtime.first_next().await - started));
        child.kill().await.ok();
    }
    pct(&sorted(runs), 0.5)
}

/// VmRSS after `RSS_EVENTS` warm events, in MB, and each event's time
/// from being handed to the function to its answer (ms).
async fn rss_after(stack: &Stack, bin: &Path, event: &str) -> (f64, Vec<f64>) {
    let runtime = RuntimeApi::start().await;
    let mut child = lambda_command(bin, &env_of(stack, &runtime.addr))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut each = Vec::with_capacity(RSS_EVENTS);
    for _ in 0..RSS_EVENTS {
        if let Some((_, took)) = runtime
            .try_invoke_timed(event, None, Duration::from_secs(30))
            .await
        {
            each.push(ms(took));
        }
    }
    let rss = crate::status_mb(child.id().unwrap_or(0), "VmRSS:");
    child.kill().await.ok();
    (rss, each)
}

fn size_mb(bin: &Path) -> f64 {
    std::fs::metadata(bin).map_or(0.0, |m| m.len() as f64 / 1e6)
}

/// The side-by-side table, as rows.
pub(super) async fn side_by_side(stack: &Stack, event: &str) -> Vec<Row> {
    let (ours, typical, hello) = (
        release("publish-cancel"),
        anchor(),
        release("examples/hello_lambda"),
    );
    if !typical.exists() {
        return vec![Row(
            "side by side with a typical lambda_http function".into(),
            "not measured".into(),
            format!(
                "{} is not built (scripts/bench builds it)",
                typical.display()
            ),
        )];
    }
    // Alice's publish cancelled first: every event after is the warm
    // repeat both functions answer the same way.
    let cancel = Req::delete(cancel_path("alice", 1, 2, 3)).basic("alice", "alice-password");
    assert_eq!(stack.call(&cancel).await.status(), 200);
    let (ours_event, typical_event) = (
        per_event(stack, &ours, event).await,
        per_event(stack, &typical, event).await,
    );
    let (ours_init, typical_init, hello_init) = (
        init(stack, &ours).await,
        init(stack, &typical).await,
        init(stack, &hello).await,
    );
    let (ours_ms, typical_ms, hello_ms) = (
        init_ms(stack, &ours).await,
        init_ms(stack, &typical).await,
        init_ms(stack, &hello).await,
    );
    let ((ours_rss, ours_ms_each), (typical_rss, typical_ms_each)) = (
        rss_after(stack, &ours, event).await,
        rss_after(stack, &typical, event).await,
    );
    crate::plot::lines(
        "latency-side-by-side",
        "Warm repeat cancel, event in to answer out, by quantile",
        "quantile (%)",
        "ms",
        &[
            ("ours", crate::plot::quantiles(&ours_ms_each)),
            (
                "typical lambda_http",
                crate::plot::quantiles(&typical_ms_each),
            ),
        ],
    );
    crate::plot::bars(
        "instructions-side-by-side",
        "Instructions (callgrind), millions",
        "M",
        &["ours", "typical lambda_http", "hello-world"],
        &[
            (
                "per warm event".into(),
                vec![ours_event / 1e6, typical_event / 1e6],
            ),
            (
                "start to exit".into(),
                vec![
                    ours_init as f64 / 1e6,
                    typical_init as f64 / 1e6,
                    hello_init as f64 / 1e6,
                ],
            ),
        ],
    );
    let m = |n: f64| format!("{:.2} M", n / 1e6);
    let mut rows = Vec::new();
    // The same figures of another build's binary (a before/after).
    if let Some(dir) = std::env::var_os("UFORGE_BENCH_BASELINE") {
        let before = Path::new(&dir).join("publish-cancel");
        let (before_event, before_init) = (
            per_event(stack, &before, event).await,
            init(stack, &before).await,
        );
        rows.push(Row(
            format!(
                "instructions per warm repeat cancel / init: this build vs {}",
                before.display()
            ),
            format!(
                "{} / {} vs {} / {}",
                m(ours_event),
                m(ours_init as f64),
                m(before_event),
                m(before_init as f64)
            ),
            format!(
                "{:.3}× / {:.3}×",
                ours_event / before_event,
                ours_init as f64 / before_init as f64
            ),
        ));
    }
    rows.extend([
        Row(
            "instructions per warm repeat cancel: ours / typical lambda_http".into(),
            format!("{} / {}", m(ours_event), m(typical_event)),
            format!(
                "{:.2}× the typical function; target ≤ 1.0×",
                ours_event / typical_event
            ),
        ),
        Row(
            "instructions start → exit on a closed runtime port: ours / typical / hello-world"
                .into(),
            format!(
                "{} / {} / {}",
                m(ours_init as f64),
                m(typical_init as f64),
                m(hello_init as f64)
            ),
            format!(
                "{:.2}× hello-world (typical: {:.1}×); target ≤ 2×",
                ours_init as f64 / hello_init as f64,
                typical_init as f64 / hello_init as f64
            ),
        ),
        Row(
            "wall time to the first `/next`: ours / typical / hello-world".into(),
            format!("{ours_ms:.1} / {typical_ms:.1} / {hello_ms:.1} ms"),
            format!("{:.2}× hello-world", ours_ms / hello_ms),
        ),
        Row(
            "stripped size (x86_64): ours / typical / hello-world".into(),
            format!(
                "{:.2} / {:.2} / {:.2} MB",
                size_mb(&ours),
                size_mb(&typical),
                size_mb(&hello)
            ),
            format!(
                "{:.2}× the typical function",
                size_mb(&ours) / size_mb(&typical)
            ),
        ),
        Row(
            format!("RSS after {RSS_EVENTS} warm events: ours / typical"),
            format!("{ours_rss:.1} / {typical_rss:.1} MB"),
            format!("{:.2}× the typical function", ours_rss / typical_rss),
        ),
    ]);
    rows
}
